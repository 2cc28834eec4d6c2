//! Fault peers: each fault is served on the same backend, concurrently with good requests on
//! the same client, and every good request must still end `Complete` with its exact body.

#[path = "common/fcgi_peer.rs"]
mod peer;

use heisen::fcgi::proto::{Header, ProtocolStatus, RecordType};
use heisen::fcgi::{writer, Client, Config, Outcome, Request, Stat};
use heisen::reactor::Reactor;
use peer::*;
use std::io::Write;
use std::thread;
use std::time::Duration;

/// The fault peer: `MODE` chooses what it does; anything else is served well (keep-alive).
fn fault_peer(t: Transport) -> Peer {
    Peer::start(t, |mut c| loop {
        let with_stdin = true;
        let req = match c.read_incoming(with_stdin) {
            Ok(Some(Incoming::Request(r))) => r,
            _ => return,
        };
        let id = req.id;
        let n = req.param_str("N");
        let mode = req.param_str("MODE");
        let mut out = Vec::new();
        match mode.as_str() {
            "" => {
                out = response(id, &good_stdout(&n), 0, ProtocolStatus::RequestComplete);
                if c.write_all(&out).is_err() || !req.keep_conn {
                    return;
                }
                continue;
            }
            "close" => return,
            "garbage" => out.extend_from_slice(b"HTTP/1.1 502 Bad Gateway\r\n\r\n<html>oops</html>"),
            "short" => {
                let mut rec = Vec::new();
                writer::stream(&mut rec, RecordType::Stdout, id, b"Status: 200\r\n\r\nhello");
                out.extend_from_slice(&rec[..5]);
            }
            "truncated" => writer::stream(&mut out, RecordType::Stdout, id, b"Status: 200\r\n\r\npartial body"),
            "partial_headers" => writer::stream(&mut out, RecordType::Stdout, id, b"Status: 200\r\nX-A"),
            "end_before_headers" => writer::end_request(&mut out, id, 0, ProtocolStatus::RequestComplete),
            "big_headers" => {
                let mut s = b"Status: 200\r\n".to_vec();
                for i in 0..200 {
                    s.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(100)).as_bytes());
                }
                s.extend_from_slice(b"\r\nbody");
                out = response(id, &s, 0, ProtocolStatus::RequestComplete);
            }
            m if m.starts_with("end") => {
                let ps: u8 = m[3..].parse().unwrap();
                writer::end_request(&mut out, id, 7, ProtocolStatus::from_u8(ps));
            }
            "silence" => {
                thread::sleep(Duration::from_secs(3));
                return;
            }
            "unknown_type" => {
                writer::record_raw(&mut out, 42, id, b"from the future");
                writer::record(&mut out, RecordType::UnknownType, 0, &[200, 0, 0, 0, 0, 0, 0, 0]);
                writer::record_raw(&mut out, 99, 0, b"");
                out.extend(response(id, &good_stdout(&n), 0, ProtocolStatus::RequestComplete));
            }
            "stderr" => {
                writer::stream(&mut out, RecordType::Stderr, id, b"warning: ");
                writer::stream(&mut out, RecordType::Stdout, id, b"Status: 201\r\n\r\n");
                writer::stream(&mut out, RecordType::Stderr, id, b"something\n");
                writer::stream(&mut out, RecordType::Stdout, id, b"created");
                writer::stream_end(&mut out, RecordType::Stderr, id);
                writer::stream_end(&mut out, RecordType::Stdout, id);
                writer::end_request(&mut out, id, 0, ProtocolStatus::RequestComplete);
            }
            other => panic!("unknown mode {other}"),
        }
        let _ = c.write_all(&out);
        return; // close after every fault
    })
}

fn client_for(reactor: &Reactor, addr: &str, f: impl FnOnce(&mut Config)) -> Client {
    let mut cfg = Config::new();
    cfg.add_backend(addr).unwrap();
    cfg.max_conns = 8;
    cfg.read_timeout_ms = 600;
    f(&mut cfg);
    Client::new(reactor, cfg).unwrap()
}

/// Runs 60 requests, every third with `MODE=mode`, 12 in flight; checks the good ones and
/// hands the faulty ones to `check`.
fn mixed(t: Transport, mode: &'static str, check: impl Fn(&Res)) -> Client {
    let peer = fault_peer(t);
    let reactor = Reactor::new().unwrap();
    let client = client_for(&reactor, &peer.addr, |_| {});
    let results = run_many(&reactor, &client, 60, 12, move |i| {
        let mut r = numbered(i);
        if i % 3 == 1 {
            r.param(b"MODE", mode.as_bytes()).unwrap();
        }
        r
    });
    for (i, r) in results.iter().enumerate() {
        if i % 3 == 1 {
            check(r);
        } else {
            assert_good(i, r);
        }
    }
    let s = client.stats();
    assert_eq!(s.get(Stat::Requests), 60);
    assert_eq!(s.get(Stat::InFlight), 0);
    assert_eq!(s.get(Stat::QueueLength), 0);
    client
}

fn both(mode: &'static str, check: impl Fn(&Res) + Copy) {
    mixed(Transport::Unix, mode, check);
    mixed(Transport::Tcp, mode, check);
}

#[test]
fn close_with_no_data_is_bad_gateway() {
    both("close", |r| {
        assert_eq!(r.outcome(), Outcome::BadGateway, "{:?}", r.end);
        assert!(r.head.is_none() && r.body.is_empty());
        assert!(r.end.as_ref().unwrap().reason.contains("before responding"), "{:?}", r.end);
    });
}

#[test]
fn garbage_is_bad_gateway() {
    both("garbage", |r| {
        assert_eq!(r.outcome(), Outcome::BadGateway, "{:?}", r.end);
        assert!(r.end.as_ref().unwrap().reason.contains("version"), "{:?}", r.end);
        assert!(r.body.is_empty());
    });
}

#[test]
fn short_record_then_close_is_bad_gateway() {
    both("short", |r| {
        assert_eq!(r.outcome(), Outcome::BadGateway, "{:?}", r.end);
        assert!(r.body.is_empty());
    });
}

#[test]
fn stdout_without_end_request_is_truncated_never_complete() {
    both("truncated", |r| {
        assert_eq!(r.outcome(), Outcome::Truncated, "{:?}", r.end);
        assert_eq!(r.status(), 200);
        assert_eq!(r.body, b"partial body");
    });
}

#[test]
fn close_inside_headers_is_bad_gateway() {
    both("partial_headers", |r| {
        assert_eq!(r.outcome(), Outcome::BadGateway, "{:?}", r.end);
        assert!(r.head.is_none());
    });
}

#[test]
fn end_request_before_headers_is_bad_gateway() {
    both("end_before_headers", |r| {
        assert_eq!(r.outcome(), Outcome::BadGateway, "{:?}", r.end);
        assert!(r.end.as_ref().unwrap().reason.contains("header block"), "{:?}", r.end);
    });
}

#[test]
fn oversized_headers_are_bad_gateway() {
    let peer = fault_peer(Transport::Unix);
    let reactor = Reactor::new().unwrap();
    let client = client_for(&reactor, &peer.addr, |c| c.max_header_bytes = 8192);
    let results = run_many(&reactor, &client, 3, 3, |i| {
        let mut r = numbered(i);
        if i == 1 {
            r.param(b"MODE", b"big_headers").unwrap();
        }
        r
    });
    assert_good(0, &results[0]);
    assert_good(2, &results[2]);
    assert_eq!(results[1].outcome(), Outcome::BadGateway);
    assert!(results[1].end.as_ref().unwrap().reason.contains("larger than 8192"), "{:?}", results[1].end);
}

#[test]
fn end_request_protocol_statuses() {
    for (ps, outcome) in
        [(1, Outcome::CantMpxConn), (2, Outcome::Overloaded), (3, Outcome::UnknownRole), (9, Outcome::BadGateway)]
    {
        let mode: &'static str = Box::leak(format!("end{ps}").into_boxed_str());
        both(mode, move |r| {
            let e = r.end.as_ref().unwrap();
            assert_eq!(e.outcome, outcome, "{e:?}");
            assert_eq!(e.app_status, 7);
            assert_eq!(e.protocol_status, Some(ProtocolStatus::from_u8(ps)));
        });
    }
}

#[test]
fn silence_times_out() {
    let client = mixed(Transport::Unix, "silence", |r| {
        assert_eq!(r.outcome(), Outcome::Timeout, "{:?}", r.end);
        assert!(r.end.as_ref().unwrap().reason.contains("read timeout"), "{:?}", r.end);
    });
    assert_eq!(client.stat(Stat::Timeout), 20);
}

#[test]
fn unknown_record_types_are_ignored() {
    both("unknown_type", |r| {
        assert_eq!(r.outcome(), Outcome::Complete, "{:?}", r.end);
        let n = r.head.as_ref().unwrap().get("X-N").unwrap().to_vec();
        assert_eq!(r.body, good_body(std::str::from_utf8(&n).unwrap()));
    });
}

#[test]
fn stderr_is_its_own_channel() {
    both("stderr", |r| {
        assert_eq!(r.outcome(), Outcome::Complete, "{:?}", r.end);
        assert_eq!(r.status(), 201);
        assert_eq!(r.body, b"created");
        assert_eq!(r.stderr, b"warning: something\n");
    });
}

/// The backend closes a pooled connection while it is idle: the client notices, drops it, and
/// the next request goes out on a new connection without any failure or retry.
#[test]
fn idle_connection_closed_by_backend_is_dropped() {
    for t in [Transport::Unix, Transport::Tcp] {
        let peer = Peer::start(t, |mut c| {
            let Ok(Some(req)) = c.read_request() else { return };
            let n = req.param_str("N");
            let _ = c.write_all(&response(req.id, &good_stdout(&n), 0, ProtocolStatus::RequestComplete));
            thread::sleep(Duration::from_millis(50));
            // close while the client holds the connection idle
        });
        let reactor = Reactor::new().unwrap();
        let client = client_for(&reactor, &peer.addr, |_| {});
        let r = client.fetch(numbered(0)).unwrap();
        assert_eq!(r.outcome(), Outcome::Complete);
        run_until(&reactor, 5, || client.stat(Stat::IdleClosedByPeer) == 1);
        assert_eq!(client.stat(Stat::ConnsOpen), 0);
        let r = client.fetch(numbered(1)).unwrap();
        assert_eq!(r.outcome(), Outcome::Complete, "{}", r.reason);
        assert_eq!(r.body, good_body("1"));
        let s = client.stats();
        assert_eq!(s.get(Stat::ConnsOpened), 2);
        assert_eq!(s.get(Stat::ConnsReused), 0);
        assert_eq!(s.get(Stat::Retries), 0);
    }
}

/// The race users hit most: the backend closes a kept connection just as the next request is
/// sent on it. The request is retried once on a fresh connection and completes.
#[test]
fn stale_keep_alive_connection_is_retried_once() {
    for t in [Transport::Unix, Transport::Tcp] {
        let peer = Peer::start(t, |mut c| {
            let Ok(Some(req)) = c.read_request() else { return };
            let n = req.param_str("N");
            let _ = c.write_all(&response(req.id, &good_stdout(&n), 0, ProtocolStatus::RequestComplete));
            // The next request on this connection is read and dropped with the connection.
            let _ = c.read_request();
        });
        let reactor = Reactor::new().unwrap();
        let client = client_for(&reactor, &peer.addr, |_| {});
        for i in 0..5 {
            let r = client.fetch(numbered(i)).unwrap();
            assert_eq!(r.outcome(), Outcome::Complete, "request {i}: {}", r.reason);
            assert_eq!(r.body, good_body(&i.to_string()));
        }
        let s = client.stats();
        assert_eq!(s.get(Stat::Retries), 4, "every request after the first met a stale connection");
        assert_eq!(s.get(Stat::ConnsReused), 4);
        assert_eq!(s.get(Stat::ConnsOpened), 5);
        assert_eq!(s.get(Stat::Complete), 5);
    }
}

/// A reused connection that fails again on the retry is not retried a second time.
#[test]
fn retry_happens_at_most_once() {
    let peer = Peer::start(Transport::Unix, |mut c| {
        let Ok(Some(req)) = c.read_request() else { return };
        if req.param_str("N") == "0" {
            let _ = c.write_all(&response(req.id, &good_stdout("0"), 0, ProtocolStatus::RequestComplete));
            let _ = c.read_request();
        }
        // Any other request: closed unanswered, on fresh connections too.
    });
    let reactor = Reactor::new().unwrap();
    let client = client_for(&reactor, &peer.addr, |_| {});
    assert_eq!(client.fetch(numbered(0)).unwrap().outcome(), Outcome::Complete);
    let r = client.fetch(numbered(1)).unwrap();
    assert_eq!(r.outcome(), Outcome::BadGateway, "{}", r.reason);
    assert_eq!(client.stat(Stat::Retries), 1);
}

/// A response that started is never retried, even on a reused connection.
#[test]
fn started_response_is_never_retried() {
    let peer = Peer::start(Transport::Unix, |mut c| {
        let Ok(Some(req)) = c.read_request() else { return };
        let _ = c.write_all(&response(req.id, &good_stdout("0"), 0, ProtocolStatus::RequestComplete));
        let Ok(Some(req)) = c.read_request() else { return };
        let mut out = Vec::new();
        writer::stream(&mut out, RecordType::Stdout, req.id, b"Status: 200\r\n\r\nhalf");
        let _ = c.write_all(&out);
    });
    let reactor = Reactor::new().unwrap();
    let client = client_for(&reactor, &peer.addr, |_| {});
    assert_eq!(client.fetch(numbered(0)).unwrap().outcome(), Outcome::Complete);
    let r = client.fetch(numbered(1)).unwrap();
    assert_eq!(r.outcome(), Outcome::Truncated, "{}", r.reason);
    assert_eq!(r.body, b"half");
    assert_eq!(client.stat(Stat::Retries), 0);
    assert_eq!(peer.accepted(), 1);
}

/// Full duplex: the backend answers after reading only the head of a 1 MiB request and closes
/// with the body unread. The answer is delivered complete.
#[test]
fn answer_without_reading_stdin_is_delivered() {
    for t in [Transport::Unix, Transport::Tcp] {
        let peer = Peer::start(t, |mut c| {
            // BEGIN_REQUEST and PARAMS only.
            let mut params_done = false;
            while !params_done {
                let Ok(Some((h, body))) = c.read_record() else { return };
                params_done = h.rtype == RecordType::Params as u8 && body.is_empty();
            }
            let _ = c.write_all(&response(1, b"Status: 413\r\n\r\ntoo large", 0, ProtocolStatus::RequestComplete));
        });
        let reactor = Reactor::new().unwrap();
        let client = client_for(&reactor, &peer.addr, |_| {});
        let mut req = numbered(0);
        req.set_body(vec![b'x'; 1 << 20]).unwrap();
        let r = client.fetch(req).unwrap();
        assert_eq!(r.outcome(), Outcome::Complete, "{t:?}: {}", r.reason);
        assert_eq!(r.status, 413);
        assert_eq!(r.body, b"too large");
    }
}

/// Connect failures fail over to the next backend, bounded by max_tries.
#[test]
fn failover_on_connect_failure() {
    let good = fault_peer(Transport::Unix);
    let dead = TempDir::new("dead");
    let dead_addr = format!("unix:{}", dead.0.join("nobody.sock").display());
    let reactor = Reactor::new().unwrap();
    let mut cfg = Config::new();
    cfg.add_backend(&dead_addr).unwrap();
    cfg.add_backend(&good.addr).unwrap();
    let client = Client::new(&reactor, cfg).unwrap();
    let results = run_many(&reactor, &client, 40, 8, numbered);
    for (i, r) in results.iter().enumerate() {
        assert_good(i, r);
    }
    assert!(client.stat(Stat::Failovers) >= 1);

    // Only dead backends: bad gateway after max_tries connects.
    let mut cfg = Config::new();
    for i in 0..4 {
        cfg.add_backend(&format!("unix:{}", dead.0.join(format!("d{i}.sock")).display())).unwrap();
    }
    cfg.max_tries = 3;
    let client = Client::new(&reactor, cfg).unwrap();
    let r = client.fetch(numbered(0)).unwrap();
    assert_eq!(r.outcome(), Outcome::BadGateway);
    assert!(r.reason.contains("connect"), "{}", r.reason);
    assert_eq!(client.stat(Stat::Failovers), 2);
    assert_eq!(client.stat(Stat::ConnsOpened), 3);
}

/// The whole-request timeout covers the queue wait.
#[test]
fn request_timeout_includes_queue_wait() {
    let peer = fault_peer(Transport::Unix);
    let reactor = Reactor::new().unwrap();
    let client = client_for(&reactor, &peer.addr, |c| {
        c.max_conns = 1;
        c.read_timeout_ms = 5000;
        c.request_timeout_ms = 400;
    });
    let results = run_many(&reactor, &client, 2, 2, |i| {
        let mut r = numbered(i);
        if i == 0 {
            r.param(b"MODE", b"silence").unwrap();
        }
        r
    });
    assert_eq!(results[0].outcome(), Outcome::Timeout);
    assert!(results[0].end.as_ref().unwrap().reason.contains("request timeout"));
    // The second waited behind the first for the only connection, then timed out in the queue
    // or just made it: either way it ended exactly once, and never as a failure of the peer.
    assert!(matches!(results[1].outcome(), Outcome::Timeout | Outcome::Complete));
}

/// Headers of an incomplete record header split at every byte: the client never mistakes an
/// early close for a complete response.
#[test]
fn close_at_every_byte_of_a_response_is_never_complete() {
    let full = response(1, &good_stdout("0"), 0, ProtocolStatus::RequestComplete);
    let cut_points: Vec<usize> = (0..full.len()).collect();
    for &cut in &cut_points {
        let part = full[..cut].to_vec();
        let peer = Peer::start(Transport::Unix, move |mut c| {
            let Ok(Some(_)) = c.read_request() else { return };
            let _ = c.sock.write_all(&part);
        });
        let reactor = Reactor::new().unwrap();
        let client = client_for(&reactor, &peer.addr, |c| c.keep_alive = false);
        let r = client.fetch(numbered(0)).unwrap();
        assert_ne!(r.outcome(), Outcome::Complete, "cut at {cut}");
        let header_end = Header::decode(full[..8].try_into().unwrap());
        let _ = header_end;
        if r.outcome() == Outcome::Truncated {
            assert_eq!(r.status, 200);
        } else {
            assert_eq!(r.outcome(), Outcome::BadGateway, "cut at {cut}: {}", r.reason);
        }
    }
    // And the whole response, closed at once, is complete.
    let peer = Peer::start(Transport::Unix, move |mut c| {
        let Ok(Some(_)) = c.read_request() else { return };
        let _ = c.sock.write_all(&full);
    });
    let reactor = Reactor::new().unwrap();
    let client = client_for(&reactor, &peer.addr, |c| c.keep_alive = false);
    let r = client.fetch(numbered(0)).unwrap();
    assert_eq!(r.outcome(), Outcome::Complete);
    assert_eq!(r.body, good_body("0"));
}

/// Queue full: requests beyond the limit end Overloaded; the rest complete.
#[test]
fn queue_limit_gives_overloaded() {
    let peer = fault_peer(Transport::Unix);
    let reactor = Reactor::new().unwrap();
    let client = client_for(&reactor, &peer.addr, |c| {
        c.max_conns = 2;
        c.queue_limit = 5;
    });
    let results = run_many(&reactor, &client, 10, 10, numbered);
    let t = tally(&results);
    assert_eq!(t.get(&Outcome::Overloaded), Some(&5), "{t:?}");
    assert_eq!(t.get(&Outcome::Complete), Some(&5), "{t:?}");
    for (i, r) in results.iter().enumerate().take(5) {
        assert_good(i, r);
    }
    let _ = Request::new();
}
