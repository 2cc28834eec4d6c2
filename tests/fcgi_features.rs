//! Client features against scripted peers: multiplexing (GET_VALUES, interleaved responses,
//! ABORT_REQUEST), pool sizing from FCGI_MAX_CONNS, roles, raw mode, response back-pressure,
//! streamed bodies, balancing, connection limits, idle timeout, closing the client.

#[path = "common/fcgi_peer.rs"]
mod peer;

use heisen::fcgi::nv;
use heisen::fcgi::proto::{ProtocolStatus, RecordType, Role};
use heisen::fcgi::{
    writer, Balance, CgiHead, Client, ClientError, Config, End, Multiplex, Next, Outcome, Request, RequestHandle,
    ResponseHandler, Stat, WriteStatus,
};
use heisen::reactor::Reactor;
use peer::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn client(reactor: &Reactor, addrs: &[&str], f: impl FnOnce(&mut Config)) -> Client {
    let mut cfg = Config::new();
    for a in addrs {
        cfg.add_backend(a).unwrap();
    }
    f(&mut cfg);
    Client::new(reactor, cfg).unwrap()
}

#[derive(Default)]
struct MpxStats {
    aborts: AtomicUsize,
    max_concurrent: AtomicUsize,
    max_id: AtomicUsize,
    get_values: AtomicUsize,
}

/// A peer that multiplexes: it answers GET_VALUES (MPXS_CONNS=1) and closes like php-fpm;
/// otherwise it collects requests and answers every two at once, interleaving their STDOUT
/// records in reverse order. `MODE=hold` requests are answered only when aborted.
fn mpx_peer(t: Transport, stats: Arc<MpxStats>) -> Peer {
    Peer::start(t, move |mut c| {
        #[derive(Default)]
        struct Partial {
            params: Vec<u8>,
            params_done: bool,
        }
        let mut partial: HashMap<u16, Partial> = HashMap::new();
        let mut ready: Vec<(u16, String, String)> = Vec::new();
        let mut held: Vec<u16> = Vec::new();
        loop {
            let Ok(Some((h, body))) = c.read_record() else { return };
            match RecordType::from_u8(h.rtype).unwrap() {
                RecordType::GetValues => {
                    stats.get_values.fetch_add(1, Ordering::SeqCst);
                    let mut content = Vec::new();
                    nv::encode_pair(&mut content, b"FCGI_MPXS_CONNS", b"1").unwrap();
                    nv::encode_pair(&mut content, b"FCGI_MAX_REQS", b"50").unwrap();
                    let mut out = Vec::new();
                    writer::record(&mut out, RecordType::GetValuesResult, 0, &content);
                    let _ = c.write_all(&out);
                    return;
                }
                RecordType::BeginRequest => {
                    // Ids are allocated lowest-free: id 2 means id 1 was still in flight.
                    stats.max_id.fetch_max(h.request_id as usize, Ordering::SeqCst);
                    partial.insert(h.request_id, Partial::default());
                }
                RecordType::Params => {
                    let p = partial.get_mut(&h.request_id).unwrap();
                    if body.is_empty() {
                        p.params_done = true;
                    }
                    p.params.extend_from_slice(&body);
                }
                RecordType::Stdin if body.is_empty() => {
                    let p = partial.remove(&h.request_id).unwrap();
                    assert!(p.params_done);
                    let params = nv::decode_all(&p.params).unwrap();
                    let get = |n: &str| {
                        params
                            .iter()
                            .find(|(k, _)| k == n.as_bytes())
                            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default()
                    };
                    if get("MODE") == "hold" {
                        held.push(h.request_id);
                    } else {
                        ready.push((h.request_id, get("N"), get("MODE")));
                    }
                }
                RecordType::Stdin => {}
                RecordType::AbortRequest => {
                    stats.aborts.fetch_add(1, Ordering::SeqCst);
                    held.retain(|&i| i != h.request_id);
                    let mut out = Vec::new();
                    writer::end_request(&mut out, h.request_id, 99, ProtocolStatus::RequestComplete);
                    let _ = c.write_all(&out);
                }
                other => panic!("mpx peer got {other:?}"),
            }
            let concurrent = partial.len() + ready.len() + held.len();
            stats.max_concurrent.fetch_max(concurrent, Ordering::SeqCst);
            if ready.len() >= 2 || (!ready.is_empty() && partial.is_empty()) {
                let mut out = Vec::new();
                let answers: Vec<(u16, Vec<u8>)> =
                    ready.drain(..).rev().map(|(id, n, _)| (id, good_stdout(&n))).collect();
                for (id, s) in &answers {
                    writer::stream(&mut out, RecordType::Stdout, *id, &s[..s.len() / 2]);
                }
                for (id, s) in &answers {
                    writer::stream(&mut out, RecordType::Stdout, *id, &s[s.len() / 2..]);
                    writer::stream_end(&mut out, RecordType::Stdout, *id);
                    writer::end_request(&mut out, *id, 0, ProtocolStatus::RequestComplete);
                }
                if c.write_all(&out).is_err() {
                    return;
                }
            }
        }
    })
}

#[test]
fn multiplexing_asked_with_get_values() {
    for t in [Transport::Unix, Transport::Tcp] {
        let stats = Arc::new(MpxStats::default());
        let p = mpx_peer(t, stats.clone());
        let reactor = Reactor::new().unwrap();
        let c = client(&reactor, &[&p.addr], |cfg| {
            cfg.multiplex = Multiplex::Auto;
            cfg.max_conns = 1;
        });
        let results = run_many(&reactor, &c, 200, 20, numbered);
        for (i, r) in results.iter().enumerate() {
            assert_good(i, r);
        }
        assert_eq!(stats.get_values.load(Ordering::SeqCst), 1, "asked once, on a connection of its own");
        assert!(stats.max_id.load(Ordering::SeqCst) >= 2, "requests really shared the connection");
        assert_eq!(c.stat(Stat::ConnsOpened), 1);
        assert_eq!(c.stat(Stat::Complete), 200);
    }
}

/// Aborting a request on a multiplexed connection sends ABORT_REQUEST and keeps the
/// connection for the others.
#[test]
fn abort_on_multiplexed_connection_sends_abort_request() {
    let stats = Arc::new(MpxStats::default());
    let p = mpx_peer(Transport::Unix, stats.clone());
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |cfg| {
        cfg.multiplex = Multiplex::On;
        cfg.max_conns = 1;
    });
    let results: Results = Rc::new(RefCell::new(vec![Res::default(); 3]));
    let mut held = numbered(0);
    held.param(b"MODE", b"hold").unwrap();
    let h = c.send(held, Box::new(Recorder { results: results.clone(), index: 0, on_end: None })).unwrap();
    c.send(numbered(1), Box::new(Recorder { results: results.clone(), index: 1, on_end: None })).unwrap();
    run_until(&reactor, 10, || results.borrow()[1].end.is_some());
    assert!(h.is_active());
    h.abort().unwrap();
    assert!(results.borrow()[0].end.is_none(), "on_end never runs inside abort()");
    run_until(&reactor, 10, || results.borrow()[0].end.is_some());
    assert_eq!(results.borrow()[0].outcome(), Outcome::Aborted);
    assert_eq!(h.abort(), Err(ClientError::Closed));
    // The backend's END_REQUEST for the aborted id frees it; the connection keeps working.
    run_until(&reactor, 10, || stats.aborts.load(Ordering::SeqCst) == 1);
    c.send(numbered(2), Box::new(Recorder { results: results.clone(), index: 2, on_end: None })).unwrap();
    run_until(&reactor, 10, || results.borrow()[2].end.is_some());
    assert_good(1, &results.borrow()[1]);
    assert_good(2, &results.borrow()[2]);
    assert_eq!(c.stat(Stat::ConnsOpened), 1);
    assert_eq!(c.stat(Stat::Aborted), 1);
}

/// Without multiplexing, aborting closes the connection (the backend cannot be told).
#[test]
fn abort_without_multiplexing_closes_the_connection() {
    let p = Peer::start(Transport::Unix, |mut c| {
        let Ok(Some(_)) = c.read_request() else { return };
        // Wait for the client to go away: read returns EOF.
        let _ = c.read_record();
    });
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |_| {});
    let results: Results = Rc::new(RefCell::new(vec![Res::default(); 1]));
    let h = c.send(numbered(0), Box::new(Recorder { results: results.clone(), index: 0, on_end: None })).unwrap();
    run_until(&reactor, 5, || c.stat(Stat::ConnsOpen) == 1 && p.accepted() == 1);
    h.abort().unwrap();
    run_until(&reactor, 5, || results.borrow()[0].end.is_some());
    assert_eq!(results.borrow()[0].outcome(), Outcome::Aborted);
    assert_eq!(c.stat(Stat::ConnsOpen), 0);
}

/// A backend that reports FCGI_MAX_CONNS gets no more connections than that.
#[test]
fn pool_sized_from_fcgi_max_conns() {
    let p = Peer::start(Transport::Unix, |mut c| match c.read_incoming(true) {
        Ok(Some(Incoming::GetValues(names))) => {
            assert!(names.contains(&b"FCGI_MAX_CONNS".to_vec()));
            let mut content = Vec::new();
            nv::encode_pair(&mut content, b"FCGI_MAX_CONNS", b"2").unwrap();
            nv::encode_pair(&mut content, b"FCGI_MPXS_CONNS", b"0").unwrap();
            let mut out = Vec::new();
            writer::record(&mut out, RecordType::GetValuesResult, 0, &content);
            let _ = c.write_all(&out);
        }
        Ok(Some(Incoming::Request(req))) => {
            let n = req.param_str("N");
            thread::sleep(Duration::from_millis(2));
            let _ = c.write_all(&response(req.id, &good_stdout(&n), 0, ProtocolStatus::RequestComplete));
            serve_good(c);
        }
        _ => {}
    });
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |cfg| {
        cfg.max_conns = 16;
        cfg.probe_values = true;
    });
    let results = run_many(&reactor, &c, 60, 20, numbered);
    for (i, r) in results.iter().enumerate() {
        assert_good(i, r);
    }
    let s = c.stats();
    assert_eq!(s.get(Stat::PeakConns), 2);
    assert!(s.get(Stat::QueueWaitUsMax) > 0, "requests waited in the queue");
}

/// A peer that reports what it received: role, keep flag, stdin and data lengths and bytes.
fn echo_peer(t: Transport) -> Peer {
    Peer::start(t, |mut c| {
        while let Ok(Some(req)) = c.read_request() {
            let mut s = format!(
                "Status: 200\r\n\r\nrole={} stdin={} data={} data_len_param={}\n",
                req.role,
                req.stdin.len(),
                req.data.len(),
                req.param_str("FCGI_DATA_LENGTH")
            )
            .into_bytes();
            s.extend_from_slice(&req.stdin);
            s.extend_from_slice(&req.data);
            if c.write_all(&response(req.id, &s, 0, ProtocolStatus::RequestComplete)).is_err() || !req.keep_conn {
                return;
            }
        }
    })
}

#[test]
fn roles_and_data_stream() {
    let p = echo_peer(Transport::Unix);
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |_| {});
    let mut r = Request::new();
    r.set_role(Role::Authorizer);
    let resp = c.fetch(r).unwrap();
    assert_eq!(resp.outcome(), Outcome::Complete);
    assert_eq!(resp.body, b"role=2 stdin=0 data=0 data_len_param=\n");

    let mut r = Request::new();
    r.set_role(Role::Filter);
    r.set_body(b"the input".to_vec()).unwrap();
    r.set_data(b"the file data".to_vec()).unwrap();
    let resp = c.fetch(r).unwrap();
    assert_eq!(resp.body, b"role=3 stdin=9 data=13 data_len_param=13\nthe inputthe file data");

    let mut r = Request::new();
    r.set_body(vec![7u8; 200_000]).unwrap();
    let resp = c.fetch(r).unwrap();
    assert!(resp.body.starts_with(b"role=1 stdin=200000 data=0"));
    assert_eq!(resp.body.len(), "role=1 stdin=200000 data=0 data_len_param=\n".len() + 200_000);
}

#[test]
fn raw_mode_passes_stdout_through() {
    let p = fault_free_peer();
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |_| {});
    let mut r = numbered(5);
    r.set_raw(true);
    let results = run_many(&reactor, &c, 1, 1, move |_| r.clone());
    assert_eq!(results[0].outcome(), Outcome::Complete);
    assert!(results[0].head.is_none(), "no on_headers in raw mode");
    assert_eq!(results[0].body, good_stdout("5"));
}

fn fault_free_peer() -> Peer {
    Peer::start(Transport::Unix, serve_good)
}

/// A caller that pauses stops the connection being read: the backend's writes block, and the
/// client's buffer stays bounded. After resume every byte arrives.
#[test]
fn paused_caller_stops_reading() {
    const TOTAL: usize = 16 << 20;
    let written = Arc::new(AtomicUsize::new(0));
    let w2 = written.clone();
    let p = Peer::start(Transport::Unix, move |mut c| {
        let Ok(Some(req)) = c.read_request() else { return };
        let mut head = Vec::new();
        writer::stream(&mut head, RecordType::Stdout, req.id, b"Status: 200\r\n\r\n");
        let _ = c.write_all(&head);
        let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
        let mut sent = 0;
        while sent < TOTAL {
            let mut rec = Vec::new();
            writer::stream(&mut rec, RecordType::Stdout, req.id, &chunk[..32768]);
            if c.write_all(&rec).is_err() {
                return;
            }
            sent += 32768;
            w2.store(sent, Ordering::SeqCst);
        }
        let mut end = Vec::new();
        writer::stream_end(&mut end, RecordType::Stdout, req.id);
        writer::end_request(&mut end, req.id, 0, ProtocolStatus::RequestComplete);
        let _ = c.write_all(&end);
    });

    struct Pauser {
        got: Rc<RefCell<Vec<u8>>>,
        handle: Rc<RefCell<Option<RequestHandle>>>,
        end: Rc<RefCell<Option<End>>>,
        paused_once: bool,
    }
    impl ResponseHandler for Pauser {
        fn on_headers(&mut self, _r: &RequestHandle, _h: &CgiHead) -> Next {
            Next::Continue
        }
        fn on_body(&mut self, r: &RequestHandle, d: &[u8]) -> Next {
            self.got.borrow_mut().extend_from_slice(d);
            if !self.paused_once {
                self.paused_once = true;
                *self.handle.borrow_mut() = Some(r.clone());
                return Next::Pause;
            }
            Next::Continue
        }
        fn on_end(&mut self, _r: &RequestHandle, e: &End) {
            *self.end.borrow_mut() = Some(e.clone());
        }
    }
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |cfg| cfg.stdout_high_water = 65536);
    let got = Rc::new(RefCell::new(Vec::new()));
    let handle = Rc::new(RefCell::new(None));
    let end = Rc::new(RefCell::new(None));
    c.send(
        numbered(0),
        Box::new(Pauser { got: got.clone(), handle: handle.clone(), end: end.clone(), paused_once: false }),
    )
    .unwrap();
    run_until(&reactor, 10, || handle.borrow().is_some());
    // Let the backend push as much as it can.
    for _ in 0..100 {
        reactor.run(heisen::reactor::RunMode::NoWait).unwrap();
        thread::sleep(Duration::from_millis(3));
    }
    let at_pause = got.borrow().len();
    let pushed = written.load(Ordering::SeqCst);
    assert!(pushed < 4 << 20, "backend kept writing ({pushed} bytes): the client did not stop reading");
    assert!(end.borrow().is_none());
    handle.borrow().as_ref().unwrap().resume().unwrap();
    run_until(&reactor, 30, || end.borrow().is_some());
    assert_eq!(end.borrow().as_ref().unwrap().outcome, Outcome::Complete);
    let got = got.borrow();
    assert_eq!(got.len(), TOTAL);
    assert!(got.chunks(32768).all(|c| c.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8)));
    eprintln!("paused at {at_pause} bytes; backend had written {pushed} of {TOTAL}");
}

/// Streaming a body: writes report Busy at the high-water mark, on_drain follows, the backend
/// gets every byte.
#[test]
fn streamed_body_with_back_pressure() {
    struct Collector {
        drains: Rc<RefCell<usize>>,
        body: Vec<u8>,
        out: Rc<RefCell<Option<(Vec<u8>, End)>>>,
    }
    impl ResponseHandler for Collector {
        fn on_drain(&mut self, _r: &RequestHandle) {
            *self.drains.borrow_mut() += 1;
        }
        fn on_body(&mut self, _r: &RequestHandle, d: &[u8]) -> Next {
            self.body.extend_from_slice(d);
            Next::Continue
        }
        fn on_end(&mut self, _r: &RequestHandle, e: &End) {
            *self.out.borrow_mut() = Some((std::mem::take(&mut self.body), e.clone()));
        }
    }
    let p = echo_peer(Transport::Unix);
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |_| {});
    let drains = Rc::new(RefCell::new(0));
    let out = Rc::new(RefCell::new(None));
    let mut req = Request::new();
    req.set_streaming_body(true);
    let h = c.send(req, Box::new(Collector { drains: drains.clone(), body: Vec::new(), out: out.clone() })).unwrap();
    let total = 3 << 20;
    let (mut left, mut busy) = (total, 0);
    while left > 0 {
        let n = left.min(7000);
        left -= n;
        if h.write(&vec![b'z'; n]).unwrap() == WriteStatus::Busy {
            busy += 1;
            let seen = *drains.borrow();
            run_until(&reactor, 10, || *drains.borrow() > seen);
        }
    }
    h.finish().unwrap();
    assert_eq!(h.finish(), Err(ClientError::Invalid));
    run_until(&reactor, 30, || out.borrow().is_some());
    let (body, e) = out.borrow_mut().take().unwrap();
    assert_eq!(e.outcome, Outcome::Complete);
    let want_head = format!("role=1 stdin={total} data=0 data_len_param=\n");
    assert!(body.starts_with(want_head.as_bytes()), "{}", String::from_utf8_lossy(&body[..60]));
    assert_eq!(body.len(), want_head.len() + total);
    assert!(body[want_head.len()..].iter().all(|&b| b == b'z'));
    assert!(busy > 0, "back-pressure was exercised");
    assert_eq!(*drains.borrow(), busy);
    assert_eq!(h.write(b"late"), Err(ClientError::Closed));
}

#[test]
fn round_robin_and_least_connections() {
    let a = echo_peer_counting();
    let b = echo_peer_counting();
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&a.0.addr, &b.0.addr], |cfg| cfg.keep_alive = false);
    for i in 0..10 {
        assert_eq!(c.fetch(numbered(i)).unwrap().outcome(), Outcome::Complete);
    }
    assert_eq!((a.1.load(Ordering::SeqCst), b.1.load(Ordering::SeqCst)), (5, 5));

    // Least connections: backend A holds its requests for a while, so B gets the most.
    let slow = Peer::start(Transport::Unix, |mut c| {
        let Ok(Some(req)) = c.read_request() else { return };
        thread::sleep(Duration::from_millis(300));
        let _ = c.write_all(&response(req.id, &good_stdout(&req.param_str("N")), 0, ProtocolStatus::RequestComplete));
    });
    let fast = echo_peer_counting();
    let c = client(&reactor, &[&slow.addr, &fast.0.addr], |cfg| {
        cfg.keep_alive = false;
        cfg.balance = Balance::LeastConnections;
    });
    let results = run_many(&reactor, &c, 40, 4, numbered);
    assert!(results.iter().all(|r| r.outcome() == Outcome::Complete));
    assert!(slow.accepted() <= 4, "slow backend got {} requests", slow.accepted());
    assert!(fast.1.load(Ordering::SeqCst) >= 36);
}

fn echo_peer_counting() -> (Peer, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let p = Peer::start(Transport::Unix, move |c| {
        n2.fetch_add(1, Ordering::SeqCst);
        serve_good(c)
    });
    (p, n)
}

#[test]
fn max_requests_per_connection_and_idle_timeout() {
    let p = fault_free_peer();
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |cfg| {
        cfg.max_requests_per_conn = 3;
        cfg.idle_timeout_ms = 100;
    });
    for i in 0..9 {
        let r = c.fetch(numbered(i)).unwrap();
        assert_eq!(r.outcome(), Outcome::Complete);
    }
    assert_eq!(c.stat(Stat::ConnsOpened), 3);
    assert_eq!(c.stat(Stat::ConnsReused), 6);
    let r = c.fetch(numbered(9)).unwrap();
    assert_eq!(r.outcome(), Outcome::Complete);
    assert_eq!(c.stat(Stat::ConnsOpen), 1);
    let t0 = std::time::Instant::now();
    run_until(&reactor, 5, || c.stat(Stat::ConnsOpen) == 0);
    assert!(t0.elapsed() >= Duration::from_millis(80));
    assert_eq!(c.stat(Stat::IdleClosedByPeer), 0);
}

/// Closing the client ends every request exactly once with Aborted; later sends fail.
#[test]
fn closing_the_client_aborts_in_flight_requests() {
    let p = Peer::start(Transport::Unix, |mut c| {
        let _ = c.read_request();
        thread::sleep(Duration::from_secs(2));
    });
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |cfg| cfg.max_conns = 2);
    let results: Results = Rc::new(RefCell::new(vec![Res::default(); 5]));
    for i in 0..5 {
        c.send(numbered(i), Box::new(Recorder { results: results.clone(), index: i, on_end: None })).unwrap();
    }
    run_until(&reactor, 5, || p.accepted() == 2);
    c.close();
    for (i, r) in results.borrow().iter().enumerate() {
        assert_eq!(r.end_calls, 1, "request {i}");
        assert_eq!(r.outcome(), Outcome::Aborted);
    }
    assert!(c.send(numbered(9), Box::new(Recorder { results: results.clone(), index: 0, on_end: None })).is_err());
    assert_eq!(c.stat(Stat::Aborted), 5);
    assert_eq!(c.stat(Stat::ConnsOpen), 0);
}

/// Callbacks may abort their own request; nothing is delivered after its end.
#[test]
fn abort_from_inside_a_callback() {
    struct AbortOnHeaders(Rc<RefCell<Vec<String>>>);
    impl ResponseHandler for AbortOnHeaders {
        fn on_headers(&mut self, r: &RequestHandle, _h: &CgiHead) -> Next {
            self.0.borrow_mut().push("headers".into());
            r.abort().unwrap();
            Next::Continue
        }
        fn on_body(&mut self, _r: &RequestHandle, _d: &[u8]) -> Next {
            self.0.borrow_mut().push("body".into());
            Next::Continue
        }
        fn on_end(&mut self, _r: &RequestHandle, e: &End) {
            self.0.borrow_mut().push(format!("end {}", e.outcome));
        }
    }
    let p = fault_free_peer();
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |_| {});
    let log = Rc::new(RefCell::new(Vec::new()));
    c.send(numbered(0), Box::new(AbortOnHeaders(log.clone()))).unwrap();
    run_until(&reactor, 5, || log.borrow().iter().any(|l| l.starts_with("end")));
    assert_eq!(*log.borrow(), vec!["headers".to_string(), "end aborted".to_string()]);
    // The client is still usable.
    assert_eq!(c.fetch(numbered(1)).unwrap().outcome(), Outcome::Complete);
}

/// A client dropped with requests in flight ends them (Aborted) and closes its connections.
#[test]
fn dropping_the_client_ends_requests() {
    let p = Peer::start(Transport::Unix, |mut c| {
        let _ = c.read_request();
        let _ = c.read_record();
    });
    let reactor = Reactor::new().unwrap();
    let results: Results = Rc::new(RefCell::new(vec![Res::default(); 1]));
    {
        let c = client(&reactor, &[&p.addr], |_| {});
        c.send(numbered(0), Box::new(Recorder { results: results.clone(), index: 0, on_end: None })).unwrap();
        run_until(&reactor, 5, || p.accepted() == 1);
    }
    assert_eq!(results.borrow()[0].outcome(), Outcome::Aborted);
}

/// A TCP listener whose accept queue is full: further connects hang (SYNs are dropped).
fn black_hole() -> (std::net::TcpListener, Vec<std::net::TcpStream>, String) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) on a socket this test owns.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            fill.push(s);
        }
    }
    (l, fill, format!("tcp:{addr}"))
}

/// Connect timeouts end as Timeout, or fail over to the next backend.
#[test]
fn connect_timeout_and_failover() {
    let (_l, _fill, hole) = black_hole();
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&hole], |cfg| cfg.connect_timeout_ms = 200);
    let t0 = std::time::Instant::now();
    let r = c.fetch(numbered(0)).unwrap();
    assert_eq!(r.outcome(), Outcome::Timeout, "{}", r.reason);
    assert!(r.reason.contains("timed out"), "{}", r.reason);
    assert!(t0.elapsed() >= Duration::from_millis(180));

    let good = fault_free_peer();
    let c = client(&reactor, &[&hole, &good.addr], |cfg| cfg.connect_timeout_ms = 200);
    let results = run_many(&reactor, &c, 10, 2, numbered);
    for (i, r) in results.iter().enumerate() {
        assert_good(i, r);
    }
    assert!(c.stat(Stat::Failovers) >= 1);
}

/// END_REQUEST with CANT_MPX_CONN turns multiplexing off for that backend.
#[test]
fn cant_mpx_conn_stops_multiplexing() {
    let max_id = Arc::new(AtomicUsize::new(0));
    let m2 = max_id.clone();
    let p = Peer::start(Transport::Unix, move |mut c| {
        let mut open: Vec<(u16, String)> = Vec::new();
        loop {
            let Ok(Some(Incoming::Request(req))) = c.read_incoming(true) else { return };
            m2.fetch_max(req.id as usize, Ordering::SeqCst);
            let mut out = Vec::new();
            if req.id != 1 {
                writer::end_request(&mut out, req.id, 0, ProtocolStatus::CantMpxConn);
            } else {
                open.push((req.id, req.param_str("N")));
                thread::sleep(Duration::from_millis(20)); // let a second request arrive
                for (id, n) in open.drain(..) {
                    out.extend(response(id, &good_stdout(&n), 0, ProtocolStatus::RequestComplete));
                }
            }
            if c.write_all(&out).is_err() {
                return;
            }
        }
    });
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &[&p.addr], |cfg| {
        cfg.multiplex = Multiplex::On;
        cfg.max_conns = 4;
    });
    let results = run_many(&reactor, &c, 2, 2, numbered);
    let t = tally(&results);
    assert_eq!(t.get(&Outcome::CantMpxConn), Some(&1), "{t:?}");
    assert_eq!(t.get(&Outcome::Complete), Some(&1), "{t:?}");
    // From now on one request per connection: every request completes.
    max_id.store(0, Ordering::SeqCst);
    let results = run_many(&reactor, &c, 20, 4, numbered);
    for (i, r) in results.iter().enumerate() {
        assert_good(i, r);
    }
    assert_eq!(max_id.load(Ordering::SeqCst), 1);
}
