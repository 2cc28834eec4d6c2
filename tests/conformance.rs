//! One test per row of the kernel table in shared/research/reactor-anchors.md §0: what Linux
//! reports for each way a peer can end a connection, and what heisen delivers for it. Each
//! test records the readiness flags the reactor saw (through its trace hook) and the actions a
//! raw watcher received, and asserts both exactly, with all data arriving before the end.

use heisen::reactor::{Action, Flow, Reactor, RunMode, READ};
use heisen::stream::{Stream, StreamHandler};
use std::cell::RefCell;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What a raw watcher saw: bytes read, "EOF" when read() returned 0, "read:ERRNO" on a read
/// error, then "HUP" / "ERROR:so_error".
#[derive(Default)]
struct Seen {
    log: Vec<String>,
    bytes: Vec<u8>,
    trace: Vec<String>,
    done: bool,
}

fn read_all(fd: RawFd, seen: &mut Seen) {
    let mut buf = [0u8; 4096];
    loop {
        let n = unsafe_read(fd, &mut buf);
        match n {
            Ok(0) => {
                seen.log.push("EOF".into());
                return;
            }
            Ok(n) => {
                seen.bytes.extend_from_slice(&buf[..n]);
                if seen.log.last().map(|s| s.as_str()) != Some("data") {
                    seen.log.push("data".into());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                seen.log.push(format!("read:{}", e.raw_os_error().unwrap_or(0)));
                return;
            }
        }
    }
}

fn unsafe_read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn so_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut err as *mut i32).cast(), &mut len) };
    err
}

fn watch_raw(r: &Reactor, fd: RawFd, interest: u32) -> (Rc<RefCell<Seen>>, heisen::reactor::WatchId) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s2 = seen.clone();
    let t2 = seen.clone();
    r.set_trace(Some(Box::new(move |line: &str| t2.borrow_mut().trace.push(line.to_string()))));
    let id = r
        .watch(fd, interest, Box::new(move |r, id, action| {
            let mut s = s2.borrow_mut();
            match action {
                Action::Read => read_all(fd, &mut s),
                Action::Write => s.log.push("WRITE".into()),
                Action::Hup => s.log.push("HUP".into()),
                Action::Error => {
                    s.log.push(format!("ERROR:{}", so_error(fd)));
                }
            }
            if matches!(action, Action::Hup | Action::Error) && !s.done {
                s.done = true;
                drop(s);
                r.defer(Box::new(move |r| r.unwatch(id)));
            }
            Flow::Done
        }))
        .unwrap();
    (seen, id)
}

fn run_until(r: &Reactor, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        r.run(RunMode::NoWait).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    r.run(RunMode::NoWait).unwrap();
}

fn nonblocking(fd: RawFd) {
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    c.set_nonblocking(true).unwrap();
    (c, s)
}

#[test]
fn unix_write_close_is_in_rdhup_hup_in_one_event() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    nonblocking(a.as_raw_fd());
    b.write_all(b"reply").unwrap();
    drop(b);
    let (seen, _) = watch_raw(&r, a.as_raw_fd(), READ);
    run_until(&r, || seen.borrow().done);
    let s = seen.borrow();
    assert_eq!(s.trace[0], format!("heisen: fd={} ready=READABLE|READ_CLOSED|WRITE_CLOSED interest=R -> READ,HUP", a.as_raw_fd()));
    assert_eq!(s.bytes, b"reply");
    assert_eq!(s.log, vec!["data", "EOF", "HUP"]);
}

#[test]
fn unix_write_close_with_unread_data_on_closer_adds_err() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    nonblocking(a.as_raw_fd());
    (&a).write_all(b"never read by b").unwrap();
    b.write_all(b"reply").unwrap();
    drop(b);
    let (seen, _) = watch_raw(&r, a.as_raw_fd(), READ);
    run_until(&r, || seen.borrow().done);
    let s = seen.borrow();
    assert_eq!(
        s.trace[0],
        format!("heisen: fd={} ready=READABLE|READ_CLOSED|WRITE_CLOSED|ERROR interest=R -> READ,HUP,ERROR", a.as_raw_fd())
    );
    // the reply first; then the kernel reports ECONNRESET from read(), and hang-up and error
    // are delivered after it (SO_ERROR is 0 by then: read() consumed it)
    assert_eq!(s.bytes, b"reply");
    assert_eq!(s.log, vec!["data".to_string(), format!("read:{}", libc::ECONNRESET), "HUP".into(), "ERROR:0".into()]);
}

#[test]
fn tcp_write_close_is_in_rdhup_without_hup() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = tcp_pair();
    b.write_all(b"reply").unwrap();
    drop(b);
    std::thread::sleep(Duration::from_millis(20));
    let (seen, _) = watch_raw(&r, a.as_raw_fd(), READ);
    run_until(&r, || seen.borrow().done);
    let s = seen.borrow();
    assert_eq!(s.trace[0], format!("heisen: fd={} ready=READABLE|READ_CLOSED interest=R -> READ,HUP", a.as_raw_fd()));
    assert_eq!(s.bytes, b"reply");
    assert_eq!(s.log, vec!["data", "EOF", "HUP"]);
}

#[test]
fn tcp_fin_after_local_shut_wr_adds_hup() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = tcp_pair();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    b.write_all(b"reply").unwrap();
    drop(b);
    std::thread::sleep(Duration::from_millis(20));
    let (seen, _) = watch_raw(&r, a.as_raw_fd(), READ);
    run_until(&r, || seen.borrow().done);
    let s = seen.borrow();
    assert!(s.trace[0].contains("READ_CLOSED|WRITE_CLOSED"), "{}", s.trace[0]);
    assert!(s.trace[0].ends_with("-> READ,HUP"), "{}", s.trace[0]);
    assert_eq!(s.bytes, b"reply");
    assert_eq!(s.log, vec!["data", "EOF", "HUP"]);
}

#[test]
fn tcp_rst_after_data_delivers_data_then_error() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = tcp_pair();
    b.write_all(b"reply").unwrap();
    // SO_LINGER {on, 0}: close() sends RST instead of FIN
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    unsafe {
        libc::setsockopt(
            b.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    drop(b);
    std::thread::sleep(Duration::from_millis(20));
    let (seen, _) = watch_raw(&r, a.as_raw_fd(), READ);
    run_until(&r, || seen.borrow().done);
    let s = seen.borrow();
    assert!(s.trace[0].contains("READABLE") && s.trace[0].contains("ERROR"), "{}", s.trace[0]);
    assert!(s.trace[0].ends_with("-> READ,HUP,ERROR"), "{}", s.trace[0]);
    // the data queued before the RST is still read first
    assert_eq!(s.bytes, b"reply");
    assert_eq!(s.log, vec!["data".to_string(), format!("read:{}", libc::ECONNRESET), "HUP".into(), "ERROR:0".into()]);
}

struct Collect(Rc<RefCell<(Vec<u8>, Vec<String>)>>);
impl StreamHandler for Collect {
    fn on_data(&mut self, _s: &Stream, d: &[u8]) {
        self.0.borrow_mut().0.extend_from_slice(d);
    }
    fn on_end(&mut self, s: &Stream) {
        let n = self.0.borrow().0.len();
        self.0.borrow_mut().1.push(format!("end@{n}"));
        s.close();
    }
    fn on_error(&mut self, _s: &Stream, e: io::Error) {
        let n = self.0.borrow().0.len();
        self.0.borrow_mut().1.push(format!("error:{}@{n}", e.raw_os_error().unwrap_or(0)));
    }
}

#[test]
fn stream_tcp_rst_after_data_gives_data_then_one_error() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = tcp_pair();
    b.write_all(b"0123456789").unwrap();
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    unsafe {
        libc::setsockopt(b.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&linger as *const libc::linger).cast(), 8)
    };
    drop(b);
    std::thread::sleep(Duration::from_millis(20));
    let log = Rc::new(RefCell::new((Vec::new(), Vec::new())));
    let _s = Stream::from_fd(&r, OwnedFd::from(a), Box::new(Collect(log.clone()))).unwrap();
    r.run(RunMode::Default).unwrap();
    assert_eq!(log.borrow().0, b"0123456789");
    assert_eq!(log.borrow().1, vec![format!("error:{}@10", libc::ECONNRESET)]);
}

#[test]
fn stream_n_times_read_chunk_then_fin_over_tcp() {
    let r = Reactor::new().unwrap();
    let (a, b) = tcp_pair();
    let n = 3 * heisen::stream::READ_CHUNK;
    let t = std::thread::spawn(move || {
        let mut b = b;
        b.write_all(&vec![b'x'; n]).unwrap();
    });
    let log = Rc::new(RefCell::new((Vec::new(), Vec::new())));
    let _s = Stream::from_fd(&r, OwnedFd::from(a), Box::new(Collect(log.clone()))).unwrap();
    r.run(RunMode::Default).unwrap();
    t.join().unwrap();
    assert_eq!(log.borrow().0.len(), n);
    assert_eq!(log.borrow().1, vec![format!("end@{n}")]);
}

#[test]
fn zero_bytes_then_close_is_eof_and_hup() {
    let r = Reactor::new().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    nonblocking(a.as_raw_fd());
    drop(b);
    let (seen, _) = watch_raw(&r, a.as_raw_fd(), READ);
    run_until(&r, || seen.borrow().done);
    assert_eq!(seen.borrow().log, vec!["EOF", "HUP"]);
    assert_eq!(seen.borrow().bytes, b"");
}

#[test]
fn hangup_seen_reads_stopped_then_started_again() {
    let r = Reactor::new().unwrap();
    let (a, mut b) = tcp_pair();
    let (seen, id) = watch_raw(&r, a.as_raw_fd(), 0); // reads off (back-pressure)
    b.write_all(b"late").unwrap();
    drop(b);
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..3 {
        r.run(RunMode::NoWait).unwrap();
    }
    // the half-close was seen but nothing is delivered while reads are off: the data first
    assert!(seen.borrow().trace.iter().any(|t| t.contains("READ_CLOSED") && t.ends_with("-> -")), "{:?}", seen.borrow().trace);
    assert!(seen.borrow().log.is_empty());
    r.set_interest(id, READ).unwrap();
    run_until(&r, || seen.borrow().done);
    assert_eq!(seen.borrow().bytes, b"late");
    assert_eq!(seen.borrow().log, vec!["data", "EOF", "HUP"]);
}

#[test]
fn pipe_writer_closes() {
    let r = Reactor::new().unwrap();
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut w = std::fs::File::from(wr);
    w.write_all(b"piped").unwrap();
    drop(w);
    let (seen, _) = watch_raw(&r, rd.as_raw_fd(), READ);
    run_until(&r, || seen.borrow().done);
    let s = seen.borrow();
    assert!(s.trace[0].ends_with("-> READ,HUP"), "{}", s.trace[0]);
    assert_eq!(s.bytes, b"piped");
    assert_eq!(s.log, vec!["data", "EOF", "HUP"]);
}

#[test]
fn listening_socket_registered_before_listen() {
    // An unbound, unconnected TCP socket polls as HUP (state TCP_CLOSE). The hang-up is
    // delivered once; after listen() the same watcher still gets READ for new connections.
    let r = Reactor::new().unwrap();
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let accepted = Rc::new(RefCell::new(Vec::<String>::new()));
    let acc = accepted.clone();
    r.watch(fd, READ, Box::new(move |_, _, action| {
        match action {
            Action::Read => {
                let c = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
                if c >= 0 {
                    acc.borrow_mut().push("accepted".into());
                    unsafe { libc::close(c) };
                }
            }
            other => acc.borrow_mut().push(other.name().into()),
        }
        Flow::Done
    }))
    .unwrap();
    r.run(RunMode::NoWait).unwrap();
    assert_eq!(accepted.borrow().first().map(String::as_str), Some("HUP"));
    let l = unsafe { TcpListener::from_raw_fd(fd) };
    std::mem::forget(sock);
    // bind + listen on the watched socket
    let addr: libc::sockaddr_in = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) },
        sin_zero: [0; 8],
    };
    unsafe {
        assert_eq!(libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), 16), 0);
        assert_eq!(libc::listen(fd, 16), 0);
    }
    let port = l.local_addr().unwrap().port();
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    run_until(&r, || accepted.borrow().iter().any(|s| s == "accepted"));
    assert_eq!(accepted.borrow().iter().filter(|s| *s == "HUP").count(), 1);
}
