use super::*;
use crate::reactor::RunMode;
use std::io::Write;
use std::os::unix::net::UnixStream;

#[derive(Default)]
struct Log {
    data: Vec<u8>,
    events: Vec<String>,
}

struct Rec(Rc<RefCell<Log>>);

impl StreamHandler for Rec {
    fn on_connect(&mut self, _s: &Stream) {
        self.0.borrow_mut().events.push("connect".into());
    }
    fn on_data(&mut self, _s: &Stream, data: &[u8]) {
        self.0.borrow_mut().data.extend_from_slice(data);
    }
    fn on_end(&mut self, s: &Stream) {
        let n = self.0.borrow().data.len();
        self.0.borrow_mut().events.push(format!("end@{n}"));
        s.close();
    }
    fn on_error(&mut self, _s: &Stream, err: io::Error) {
        let n = self.0.borrow().data.len();
        self.0.borrow_mut().events.push(format!("error:{}@{n}", err.raw_os_error().unwrap_or(0)));
    }
    fn on_drain(&mut self, _s: &Stream) {
        self.0.borrow_mut().events.push("drain".into());
    }
}

fn run_with_peer(payload: &[u8], unread_on_peer: bool) -> Rc<RefCell<Log>> {
    let r = Reactor::new().unwrap();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    if unread_on_peer {
        (&ours).write_all(b"unread").unwrap(); // the peer closes with this unread: adds EPOLLERR
    }
    peer.write_all(payload).unwrap();
    drop(peer);
    let log = Rc::new(RefCell::new(Log::default()));
    let _s = Stream::from_fd(&r, ours.into(), Box::new(Rec(log.clone()))).unwrap();
    r.run(RunMode::Default).unwrap();
    log
}

#[test]
fn write_and_close_delivers_everything_then_end() {
    let log = run_with_peer(b"hello world", false);
    assert_eq!(log.borrow().data, b"hello world");
    assert_eq!(log.borrow().events, vec!["end@11"]);
}

#[test]
fn closer_with_unread_data_gives_data_then_error() {
    let log = run_with_peer(b"reply", true);
    assert_eq!(log.borrow().data, b"reply");
    assert_eq!(log.borrow().events, vec![format!("error:{}@5", libc::ECONNRESET)]);
}

#[test]
fn exact_multiples_of_the_read_chunk_then_eof() {
    for k in [1usize, 2, 3] {
        let payload: Vec<u8> = (0..k * READ_CHUNK).map(|i| (i % 251) as u8).collect();
        let r = Reactor::new().unwrap();
        let (ours, peer) = UnixStream::pair().unwrap();
        let log = Rc::new(RefCell::new(Log::default()));
        let _s = Stream::from_fd(&r, ours.into(), Box::new(Rec(log.clone()))).unwrap();
        let p = payload.clone();
        let t = std::thread::spawn(move || {
            let mut peer = peer;
            peer.write_all(&p).unwrap();
        });
        r.run(RunMode::Default).unwrap();
        t.join().unwrap();
        assert_eq!(log.borrow().data.len(), payload.len());
        assert!(log.borrow().data == payload);
        assert_eq!(log.borrow().events, vec![format!("end@{}", payload.len())]);
    }
}

#[test]
fn zero_bytes_then_close() {
    let log = run_with_peer(b"", false);
    assert_eq!(log.borrow().data, b"");
    assert_eq!(log.borrow().events, vec!["end@0"]);
}

#[test]
fn paused_stream_holds_end_until_resumed() {
    let r = Reactor::new().unwrap();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let s = Stream::from_fd(&r, ours.into(), Box::new(Rec(log.clone()))).unwrap();
    s.pause_read();
    peer.write_all(b"abc").unwrap();
    drop(peer);
    r.run(RunMode::NoWait).unwrap();
    r.run(RunMode::NoWait).unwrap();
    assert_eq!(log.borrow().data, b"");
    assert!(log.borrow().events.is_empty());
    s.resume_read();
    r.run(RunMode::Default).unwrap();
    assert_eq!(log.borrow().data, b"abc");
    assert_eq!(log.borrow().events, vec!["end@3"]);
}

#[test]
fn high_water_and_drain() {
    let r = Reactor::new().unwrap();
    let (ours, peer) = UnixStream::pair().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let s = Stream::from_fd(&r, ours.into(), Box::new(Rec(log.clone()))).unwrap();
    s.set_high_water(1024);
    let big = vec![7u8; 4 * 1024 * 1024];
    assert!(!s.write(&big));
    assert!(s.queued() > 0);
    s.shutdown();
    let t = std::thread::spawn(move || {
        let mut peer = peer;
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut peer, &mut got).unwrap();
        got.len()
    });
    r.run(RunMode::Default).unwrap();
    assert_eq!(t.join().unwrap(), big.len());
    assert_eq!(log.borrow().events, vec!["drain", "end@0"]);
}

#[test]
fn connect_refused_and_missing_path_are_errors() {
    let r = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let _a = Stream::connect(&r, &Address::parse("unix:/nonexistent/heisen.sock").unwrap(), 1000, Box::new(Rec(log.clone()))).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let _b = Stream::connect(&r, &Address::parse(&format!("127.0.0.1:{port}")).unwrap(), 1000, Box::new(Rec(log.clone()))).unwrap();
    r.run(RunMode::Default).unwrap();
    let mut ev = log.borrow().events.clone();
    ev.sort();
    assert_eq!(ev, vec![format!("error:{}@0", libc::ECONNREFUSED), format!("error:{}@0", libc::ENOENT)]);
}

#[test]
fn tcp_connect_write_read_end() {
    let r = Reactor::new().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 4];
        std::io::Read::read_exact(&mut c, &mut buf).unwrap();
        c.write_all(&buf).unwrap();
        c.write_all(b"!").unwrap();
    });
    let log = Rc::new(RefCell::new(Log::default()));
    let s = Stream::connect(&r, &Address::parse(&format!("tcp:127.0.0.1:{port}")).unwrap(), 1000, Box::new(Rec(log.clone()))).unwrap();
    assert!(s.write(b"ping"));
    r.run(RunMode::Default).unwrap();
    t.join().unwrap();
    assert_eq!(log.borrow().data, b"ping!");
    assert_eq!(log.borrow().events, vec!["connect", "end@5"]);
}

#[test]
fn listener_accepts() {
    let r = Reactor::new().unwrap();
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    let l = Listener::bind(&r, &Address::parse("tcp:127.0.0.1:0").unwrap(), 16, false, Box::new(move |r, _fd| {
        g.set(g.get() + 1);
        if g.get() == 3 { r.stop() }
    })).unwrap();
    let port = l.port().unwrap();
    let t = std::thread::spawn(move || (0..3).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect::<Vec<_>>());
    r.run(RunMode::Default).unwrap();
    t.join().unwrap();
    assert_eq!(got.get(), 3);
}
