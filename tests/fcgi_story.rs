//! The story's case through the FastCGI client: the peer sends STDOUT and END_REQUEST in two
//! writes and closes at once, for 10,000 requests over a unix socket and over TCP. Every
//! request must end `Complete` with every body byte, with keep-alive off (the backend's close
//! is the normal end) and on (the backend closes a connection the client would have pooled).

#[path = "common/fcgi_peer.rs"]
mod peer;

use heisen::fcgi::proto::{ProtocolStatus, RecordType};
use heisen::fcgi::{writer, Client, Config, Outcome, Stat};
use heisen::reactor::Reactor;
use peer::*;
use std::io::Write;

const REQUESTS: usize = 10_000;

fn story_peer(t: Transport) -> Peer {
    Peer::start(t, |mut c| {
        let Ok(Some(req)) = c.read_request() else { return };
        let n = req.param_str("N");
        let mut stdout = Vec::new();
        writer::stream(&mut stdout, RecordType::Stdout, req.id, &good_stdout(&n));
        writer::stream_end(&mut stdout, RecordType::Stdout, req.id);
        let mut end = Vec::new();
        writer::end_request(&mut end, req.id, 0, ProtocolStatus::RequestComplete);
        // Two writes, then close at once.
        let _ = c.sock.write_all(&stdout);
        let _ = c.sock.write_all(&end);
    })
}

fn story(t: Transport, keep_alive: bool) {
    let peer = story_peer(t);
    let reactor = Reactor::new().unwrap();
    let mut cfg = Config::new();
    cfg.add_backend(&peer.addr).unwrap();
    cfg.keep_alive = keep_alive;
    cfg.max_conns = 16;
    let client = Client::new(&reactor, cfg).unwrap();
    let results = run_many(&reactor, &client, REQUESTS, 32, numbered);
    for (i, r) in results.iter().enumerate() {
        assert_good(i, r);
    }
    let s = client.stats();
    let outcomes = tally(&results);
    eprintln!(
        "story {t:?} keep_alive={keep_alive}: {REQUESTS} requests, outcomes {outcomes:?}, lost 0, conns opened {}, retries {}, idle closed by peer {}",
        s.get(Stat::ConnsOpened),
        s.get(Stat::Retries),
        s.get(Stat::IdleClosedByPeer)
    );
    assert_eq!(outcomes.get(&Outcome::Complete), Some(&REQUESTS));
    assert_eq!(s.get(Stat::Requests), REQUESTS as u64);
    assert_eq!(s.get(Stat::Complete), REQUESTS as u64);
    assert_eq!(s.get(Stat::BadGateway) + s.get(Stat::Truncated), 0);
    assert_eq!(s.get(Stat::InFlight), 0);
    if !keep_alive {
        assert_eq!(s.get(Stat::Retries), 0, "a fresh connection is never retried");
        assert_eq!(s.get(Stat::ConnsOpened), REQUESTS as u64);
    }
}

#[test]
fn story_unix_keep_alive_off() {
    story(Transport::Unix, false);
}

#[test]
fn story_tcp_keep_alive_off() {
    story(Transport::Tcp, false);
}

#[test]
fn story_unix_keep_alive_on() {
    story(Transport::Unix, true);
}

#[test]
fn story_tcp_keep_alive_on() {
    story(Transport::Tcp, true);
}
