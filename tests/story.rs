//! The story's regression test: a peer writes its reply in two writes and closes at once, so
//! the reply and the hang-up reach the reactor in the same epoll event. 10,000 rounds over a
//! unix socket and over TCP, through a raw watcher (the way the story's server read) and through
//! a heisen stream. Every byte must arrive.
//!
//! Teeth: the same raw-watcher rounds run on a reactor whose dispatch decision is reversed
//! (hang-up before read, what the story's event library did). That reactor must lose the reply
//! in every round where the peer had finished before the poll, and the test asserts it does.
//! The coalesced event is made certain, not lucky: in 9 of 10 rounds the client waits until the
//! peer has written and closed before it lets the reactor poll.

use heisen::reactor::dispatch::{decide, Action, Decision, Readiness, Sticky};
use heisen::reactor::{Flow, Reactor, RunMode, READ};
use heisen::stream::{Address, Stream, StreamHandler};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;
use std::sync::mpsc;

const ROUNDS: usize = 10_000;
fn rounds() -> usize {
    std::env::var("HEISEN_STORY_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(ROUNDS)
}
const PART1: &[u8] = b"\x01\x06\x00\x01\x00\x1e\x02\x00Status: 200 OK\r\n\r\nok, hello!\n\x00\x00";
const PART2: &[u8] = b"\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

fn reply() -> Vec<u8> {
    [PART1, PART2].concat()
}

/// The wrong order: hang-up and error before read.
fn reversed(r: Readiness, s: Sticky, i: u32) -> Decision {
    let d = decide(r, s, i);
    let mut acts: Vec<Action> = d.actions().iter().copied().filter(|a| matches!(a, Action::Hup | Action::Error)).collect();
    acts.extend(d.actions().iter().copied().filter(|a| matches!(a, Action::Read | Action::Write)));
    Decision::from_parts(&acts, d.sticky)
}

enum Transport {
    Unix,
    Tcp,
}

trait Conn: Read + Write + AsRawFd + Send + 'static {}
impl Conn for UnixStream {}
impl Conn for TcpStream {}

/// A peer thread: for each connection, two writes then close, then a signal.
fn spawn_peer(t: &Transport, rounds: usize) -> (String, mpsc::Receiver<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let (addr, accept): (String, Box<dyn FnMut() -> Box<dyn Conn> + Send>) = match t {
        Transport::Unix => {
            let dir = std::env::temp_dir().join(format!("heisen-story-{}-{:?}", std::process::id(), std::thread::current().id()));
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join("peer.sock");
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).unwrap();
            (format!("unix:{}", path.display()), Box::new(move || Box::new(l.accept().unwrap().0)))
        }
        Transport::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            (format!("tcp:{a}"), Box::new(move || Box::new(l.accept().unwrap().0)))
        }
    };
    let mut accept = accept;
    let h = std::thread::spawn(move || {
        for _ in 0..rounds {
            let mut c = accept();
            c.write_all(PART1).unwrap();
            c.write_all(PART2).unwrap();
            drop(c);
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    (addr, rx, h)
}

fn connect_blocking(addr: &str) -> Box<dyn Conn> {
    let c: Box<dyn Conn> = if let Some(p) = addr.strip_prefix("unix:") {
        let s = UnixStream::connect(p).unwrap();
        s.set_nonblocking(true).unwrap();
        Box::new(s)
    } else {
        let s = TcpStream::connect(addr.strip_prefix("tcp:").unwrap()).unwrap();
        s.set_nonblocking(true).unwrap();
        Box::new(s)
    };
    c
}

#[derive(Default, Debug)]
struct Tally {
    complete: usize,
    lost: usize,
    coalesced_rounds: usize,
}

/// The story's server: reads on READ, and on HUP/ERROR closes the connection and answers with
/// what it has (a short reply is a 502).
fn raw_watcher_rounds(reactor: &Reactor, t: Transport) -> Tally {
    let (addr, done, peer) = spawn_peer(&t, rounds());
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let conn = Rc::new(RefCell::new(Some(connect_blocking(&addr))));
        let got = Rc::new(RefCell::new(Vec::new()));
        let finished = Rc::new(RefCell::new(false));
        let coalesce = round % 10 != 0;
        if coalesce {
            done.recv().unwrap(); // the peer has written and closed: one event will carry both
            tally.coalesced_rounds += 1;
        }
        let fd = conn.borrow().as_ref().unwrap().as_raw_fd();
        let (c2, g2, f2) = (conn.clone(), got.clone(), finished.clone());
        reactor
            .watch(fd, READ, Box::new(move |r, id, action| {
                match action {
                    Action::Read => {
                        let mut buf = [0u8; 4096];
                        let mut c = c2.borrow_mut();
                        let Some(s) = c.as_mut() else { return Flow::Done };
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => g2.borrow_mut().extend_from_slice(&buf[..n]),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(_) => break,
                            }
                        }
                    }
                    Action::Hup | Action::Error => {
                        r.unwatch(id);
                        *c2.borrow_mut() = None; // close, as the story's server did
                        *f2.borrow_mut() = true;
                    }
                    Action::Write => {}
                }
                Flow::Done
            }))
            .unwrap();
        while !*finished.borrow() {
            reactor.run(RunMode::Once).unwrap();
        }
        if !coalesce {
            done.recv().unwrap();
        }
        if *got.borrow() == reply() {
            tally.complete += 1;
        } else {
            tally.lost += 1;
        }
    }
    peer.join().unwrap();
    tally
}

#[test]
fn raw_watcher_unix_every_reply_arrives() {
    let r = Reactor::new().unwrap();
    let t = raw_watcher_rounds(&r, Transport::Unix);
    eprintln!("raw watcher, unix, right order: {t:?}, read_with_hup={}", r.counters().read_with_hup);
    assert_eq!((t.complete, t.lost), (rounds(), 0));
    assert!(r.counters().read_with_hup as usize >= t.coalesced_rounds);
}

#[test]
fn raw_watcher_tcp_every_reply_arrives() {
    let r = Reactor::new().unwrap();
    let t = raw_watcher_rounds(&r, Transport::Tcp);
    eprintln!("raw watcher, tcp, right order: {t:?}, read_with_hup={}", r.counters().read_with_hup);
    assert_eq!((t.complete, t.lost), (rounds(), 0));
}

#[test]
fn reversed_order_loses_replies_unix() {
    let r = Reactor::with_decider(reversed).unwrap();
    let t = raw_watcher_rounds(&r, Transport::Unix);
    eprintln!("raw watcher, unix, REVERSED order: {t:?}");
    assert!(t.lost >= t.coalesced_rounds, "the wrong order must lose every coalesced reply: {t:?}");
}

#[test]
fn reversed_order_loses_replies_tcp() {
    let r = Reactor::with_decider(reversed).unwrap();
    let t = raw_watcher_rounds(&r, Transport::Tcp);
    eprintln!("raw watcher, tcp, REVERSED order: {t:?}");
    assert!(t.lost >= t.coalesced_rounds, "the wrong order must lose every coalesced reply: {t:?}");
}

struct Collect {
    got: Rc<RefCell<Vec<u8>>>,
    end: Rc<RefCell<Option<String>>>,
}

impl StreamHandler for Collect {
    fn on_data(&mut self, _s: &Stream, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
    }
    fn on_end(&mut self, s: &Stream) {
        *self.end.borrow_mut() = Some("end".into());
        s.close();
    }
    fn on_error(&mut self, _s: &Stream, err: io::Error) {
        *self.end.borrow_mut() = Some(format!("error {err}"));
    }
}

fn stream_rounds(t: Transport) -> (Tally, u64) {
    let r = Reactor::new().unwrap();
    let (addr, done, peer) = spawn_peer(&t, rounds());
    let addr = Address::parse(&addr).unwrap();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let got = Rc::new(RefCell::new(Vec::new()));
        let end = Rc::new(RefCell::new(None));
        let s = Stream::connect(&r, &addr, 5000, Box::new(Collect { got: got.clone(), end: end.clone() })).unwrap();
        let coalesce = round % 10 != 0;
        if coalesce {
            done.recv().unwrap();
            tally.coalesced_rounds += 1;
        }
        while end.borrow().is_none() {
            r.run(RunMode::Once).unwrap();
        }
        drop(s);
        if !coalesce {
            done.recv().unwrap();
        }
        if *got.borrow() == reply() && end.borrow().as_deref() == Some("end") {
            tally.complete += 1;
        } else {
            tally.lost += 1;
        }
    }
    peer.join().unwrap();
    (tally, r.counters().read_with_hup)
}

#[test]
fn stream_unix_every_reply_arrives() {
    let (t, rwh) = stream_rounds(Transport::Unix);
    eprintln!("stream, unix: {t:?}, read_with_hup={rwh}");
    assert_eq!((t.complete, t.lost), (rounds(), 0));
}

#[test]
fn stream_tcp_every_reply_arrives() {
    let (t, rwh) = stream_rounds(Transport::Tcp);
    eprintln!("stream, tcp: {t:?}, read_with_hup={rwh}");
    assert_eq!((t.complete, t.lost), (rounds(), 0));
}
