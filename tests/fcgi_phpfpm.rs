//! The client against a real php-fpm that the test starts itself (tests/common/phpfpm.rs).
//! Needs php-fpm installed (`apt-get install php-fpm`).

#[path = "common/fcgi_peer.rs"]
mod peer;
#[path = "common/phpfpm.rs"]
mod phpfpm;

use heisen::fcgi::params::ParamsError;
use heisen::fcgi::{Client, Config, Outcome, Request, Response, Stat};
use heisen::reactor::Reactor;
use peer::{run_many, Res};
use phpfpm::{sha256_hex, Options, PhpFpm};
use std::time::{Duration, Instant};

fn client(reactor: &Reactor, fpm: &PhpFpm, f: impl FnOnce(&mut Config)) -> Client {
    let mut cfg = Config::new();
    cfg.add_backend(&fpm.addr).unwrap();
    cfg.max_conns = fpm.workers;
    f(&mut cfg);
    Client::new(reactor, cfg).unwrap()
}

/// A request for `script` with `query`, the way a web server maps `/script?query`.
fn get(fpm: &PhpFpm, script: &str, query: &str) -> Request {
    let mut r = Request::new();
    let uri = if query.is_empty() { format!("/{script}") } else { format!("/{script}?{query}") };
    r.params_mut()
        .set_cgi("GET", &uri, "HTTP/1.1", &format!("{}/www", fpm.dir.display()), &format!("/{script}"), None)
        .unwrap();
    r.params_mut().set_peer(Some("127.0.0.1"), 40000, Some("127.0.0.1"), 80, Some("localhost")).unwrap();
    r.params_mut().add_http_header(b"Host", b"localhost").unwrap();
    r
}

fn fetch(c: &Client, r: Request) -> Response {
    let resp = c.fetch(r).unwrap();
    assert_eq!(resp.outcome(), Outcome::Complete, "{}", resp.reason);
    resp
}

fn header(r: &Response, name: &str) -> String {
    String::from_utf8_lossy(r.header(name).unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))).into_owned()
}

fn echo_body(method: &str, query: &str, ctype: &str, body: &[u8]) -> String {
    format!(
        "method={method}\nquery={query}\ncontent_type={ctype}\ncontent_length={}\nlength={}\nsha256={}\n",
        if method == "POST" { body.len().to_string() } else { String::new() },
        body.len(),
        sha256_hex(body)
    )
}

#[test]
fn sha256_self_check() {
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sha256_hex(b"hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
}

#[test]
fn basic_scripts() {
    for tcp in [false, true] {
        let fpm = PhpFpm::start(Options { tcp, ..Options::default() });
        let reactor = Reactor::new().unwrap();
        let c = client(&reactor, &fpm, |_| {});

        let r = fetch(&c, get(&fpm, "hello.php", ""));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, world!\n");
        assert_eq!(header(&r, "Content-Type"), "text/plain;charset=UTF-8");

        let r = fetch(&c, get(&fpm, "echo.php", "a=1&b=%20"));
        assert_eq!(String::from_utf8_lossy(&r.body), echo_body("GET", "a=1&b=%20", "", b""));

        let r = fetch(&c, get(&fpm, "info.php", ""));
        assert_eq!(r.status, 200);
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("PHP Version"), "phpinfo body of {} bytes", r.body.len());
        assert!(body.trim_end().ends_with("</html>"));

        let r = fetch(&c, get(&fpm, "redirect.php", ""));
        assert_eq!(r.status, 302);
        assert_eq!(header(&r, "Location"), "/elsewhere");
        assert_eq!(r.body, b"redirecting\n");

        let r = fetch(&c, get(&fpm, "notfound.php", ""));
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"not found\n");

        let r = fetch(&c, get(&fpm, "stderr.php", ""));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"stderr sent\n");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.starts_with("PHP message: heisen stderr test"), "stderr {err:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("PHP message"));

        let r = fetch(&c, get(&fpm, "headers.php", ""));
        let names: Vec<String> = r
            .headers
            .iter()
            .map(|(n, v)| format!("{}: {}", String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
            .collect();
        for want in ["X-Heisen-Multi: a", "X-Heisen-Multi: b", "Set-Cookie: a=1; path=/", "Set-Cookie: b=2; path=/"] {
            assert!(names.iter().any(|h| h == want), "{want} missing from {names:?}");
        }

        // The requests above ran one after another on one kept connection.
        let s = c.stats();
        assert_eq!(s.get(Stat::ConnsOpened), 1, "tcp={tcp}");
        assert_eq!(s.get(Stat::ConnsReused), s.get(Stat::Requests) - 1);
    }
}

#[test]
fn post_one_mib_sha256_echoed() {
    let fpm = PhpFpm::start(Options::default());
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &fpm, |_| {});
    let body: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let mut r = get(&fpm, "echo.php", "x=1");
    r.params_mut().set(b"REQUEST_METHOD", b"POST").unwrap();
    r.params_mut().add_http_header(b"Content-Type", b"application/octet-stream").unwrap();
    r.set_body(body.clone()).unwrap();
    let resp = fetch(&c, r);
    assert_eq!(String::from_utf8_lossy(&resp.body), echo_body("POST", "x=1", "application/octet-stream", &body));
}

/// The same 1 MiB body pushed in pieces through the streaming API with back-pressure.
#[test]
fn post_streamed_body() {
    use heisen::fcgi::{End, Next, RequestHandle, ResponseHandler, WriteStatus};
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Pusher {
        body: Rc<Vec<u8>>,
        pos: Rc<RefCell<usize>>,
        busy: Rc<RefCell<usize>>,
        out: Rc<RefCell<(Vec<u8>, Option<End>)>>,
    }
    impl Pusher {
        fn push(&self, req: &RequestHandle) {
            loop {
                let mut pos = self.pos.borrow_mut();
                if *pos >= self.body.len() {
                    if *pos != usize::MAX {
                        *pos = usize::MAX;
                        req.finish().unwrap();
                    }
                    return;
                }
                let end = (*pos + 10_000).min(self.body.len());
                let st = req.write(&self.body[*pos..end]).unwrap();
                *pos = end;
                if st == WriteStatus::Busy {
                    *self.busy.borrow_mut() += 1;
                    return;
                }
            }
        }
    }
    impl ResponseHandler for Pusher {
        fn on_drain(&mut self, req: &RequestHandle) {
            self.push(req);
        }
        fn on_body(&mut self, _req: &RequestHandle, d: &[u8]) -> Next {
            self.out.borrow_mut().0.extend_from_slice(d);
            Next::Continue
        }
        fn on_end(&mut self, _req: &RequestHandle, e: &End) {
            self.out.borrow_mut().1 = Some(e.clone());
        }
    }

    let fpm = PhpFpm::start(Options::default());
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &fpm, |_| {});
    let body: Rc<Vec<u8>> = Rc::new((0..1u32 << 20).map(|i| (i % 251) as u8).collect());
    let mut r = get(&fpm, "echo.php", "");
    r.params_mut().set(b"REQUEST_METHOD", b"POST").unwrap();
    r.params_mut().set(b"CONTENT_LENGTH", body.len().to_string().as_bytes()).unwrap();
    r.params_mut().set(b"CONTENT_TYPE", b"application/octet-stream").unwrap();
    r.set_streaming_body(true);
    let pusher = Pusher {
        body: body.clone(),
        pos: Rc::new(RefCell::new(0)),
        busy: Rc::new(RefCell::new(0)),
        out: Rc::new(RefCell::new((Vec::new(), None))),
    };
    let (out, busy) = (pusher.out.clone(), pusher.busy.clone());
    let pos = pusher.pos.clone();
    let body2 = body.clone();
    let handle = c.send(r, Box::new(pusher)).unwrap();
    // Push until the first Busy from outside the callbacks.
    Pusher { body: body2, pos, busy: busy.clone(), out: out.clone() }.push(&handle);
    peer::run_until(&reactor, 30, || out.borrow().1.is_some());
    let (resp, e) = out.borrow().clone();
    assert_eq!(e.unwrap().outcome, Outcome::Complete);
    assert_eq!(String::from_utf8_lossy(&resp), echo_body("POST", "", "application/octet-stream", &body));
    assert!(*busy.borrow() > 0, "back-pressure was exercised");
}

#[test]
fn large_parameters() {
    let fpm = PhpFpm::start(Options::default());
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &fpm, |_| {});
    // 60 KiB: fits one PARAMS record, arrives byte for byte.
    let value: Vec<u8> = (0..60 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut r = get(&fpm, "param.php", "");
    r.param(b"HEISEN_BIG", &value).unwrap();
    let resp = fetch(&c, r);
    assert_eq!(
        String::from_utf8_lossy(&resp.body),
        format!("name=HEISEN_BIG\npresent=1\nlength={}\nsha256={}\n", value.len(), sha256_hex(&value))
    );
    // 70 KiB cannot reach php-fpm (it parses each PARAMS record alone): an error to the
    // caller when the parameter is set, never a truncated or corrupt stream.
    let big = vec![b'x'; 70 * 1024];
    let mut r = get(&fpm, "param.php", "");
    match r.param(b"HEISEN_BIG", &big) {
        Err(ParamsError::TooLarge(e)) => assert_eq!(e.encoded_len, Some(1 + 4 + 10 + 70 * 1024)),
        other => panic!("70 KiB parameter accepted: {other:?}"),
    }
    // The request without it still works, on the same connection.
    let resp = fetch(&c, r);
    assert!(String::from_utf8_lossy(&resp.body).contains("present=0"));
    assert_eq!(c.stat(Stat::ConnsOpened), 1);
}

#[test]
fn keep_alive_reuse_in_stats() {
    let fpm = PhpFpm::start(Options::default());
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &fpm, |_| {});
    for i in 0..20 {
        let r = fetch(&c, get(&fpm, "echo.php", &format!("i={i}")));
        assert_eq!(String::from_utf8_lossy(&r.body), echo_body("GET", &format!("i={i}"), "", b""));
    }
    let s = c.stats();
    assert_eq!(s.get(Stat::ConnsOpened), 1);
    assert_eq!(s.get(Stat::ConnsReused), 19);
    // Keep-alive off: a connection per request.
    let c = client(&reactor, &fpm, |cfg| cfg.keep_alive = false);
    for i in 0..5 {
        fetch(&c, get(&fpm, "echo.php", &format!("i={i}")));
    }
    assert_eq!(c.stat(Stat::ConnsOpened), 5);
    assert_eq!(c.stat(Stat::ConnsReused), 0);
}

fn check_echo_results(results: &[Res]) {
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.outcome(), Outcome::Complete, "request {i}: {:?}", r.end);
        assert_eq!(String::from_utf8_lossy(&r.body), echo_body("GET", &format!("n={i}"), "", b""), "request {i}");
    }
}

/// 1,000 requests, 64 in flight, every body exact. php-fpm does not report FCGI_MAX_CONNS,
/// so the pool is configured to its worker count: the other 60 requests wait in the client's
/// queue (visible in the statistics) instead of on connections no worker serves.
#[test]
fn thousand_requests_64_in_flight() {
    for tcp in [false, true] {
        let fpm = PhpFpm::start(Options { tcp, ..Options::default() });
        let reactor = Reactor::new().unwrap();
        let c = client(&reactor, &fpm, |cfg| cfg.probe_values = true);
        let fpm_dir = fpm.dir.display().to_string();
        let results = run_many(&reactor, &c, 1000, 64, move |i| {
            let mut r = Request::new();
            r.params_mut()
                .set_cgi("GET", &format!("/echo.php?n={i}"), "HTTP/1.1", &format!("{fpm_dir}/www"), "/echo.php", None)
                .unwrap();
            r
        });
        check_echo_results(&results);
        let s = c.stats();
        assert_eq!(s.get(Stat::Complete), 1000);
        assert!(s.get(Stat::PeakConns) <= fpm.workers as u64, "peak {} > workers", s.get(Stat::PeakConns));
        assert!(s.get(Stat::ConnsReused) >= 990, "reused {}", s.get(Stat::ConnsReused));
        assert!(s.get(Stat::QueueWaitUsMax) > 0);
        eprintln!(
            "tcp={tcp}: peak conns {}, opened {}, reused {}, queue wait max {} us, total {} us",
            s.get(Stat::PeakConns),
            s.get(Stat::ConnsOpened),
            s.get(Stat::ConnsReused),
            s.get(Stat::QueueWaitUsMax),
            s.get(Stat::QueueWaitUsTotal)
        );
    }
}

/// GET_VALUES for the caller. php-fpm 8.2 answers FCGI_MPXS_CONNS only.
#[test]
fn get_values_from_php_fpm() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let fpm = PhpFpm::start(Options { workers: 3, ..Options::default() });
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &fpm, |_| {});
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    c.get_values(0, Box::new(move |res| *g.borrow_mut() = Some(res))).unwrap();
    peer::run_until(&reactor, 10, || got.borrow().is_some());
    let pairs = got.borrow_mut().take().unwrap().expect("GET_VALUES answered");
    let find =
        |n: &str| pairs.iter().find(|(k, _)| k == n.as_bytes()).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    assert_eq!(find("FCGI_MPXS_CONNS").as_deref(), Some("0"), "{pairs:?}");
    assert!(c.get_values(1, Box::new(|_| {})).is_err());
}

/// php-fpm reloaded (SIGUSR2) in the middle of a run: no request is lost to a stale
/// connection (failures before the first response byte on a kept connection are retried).
#[test]
fn reload_during_run_loses_nothing() {
    let fpm = PhpFpm::start(Options::default());
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &fpm, |_| {});
    let fpm_dir = fpm.dir.display().to_string();
    let pid = fpm.pid();
    let reloaded = std::rc::Rc::new(std::cell::Cell::new(false));
    let rl = reloaded.clone();
    let total = 1500;
    let results = run_many(&reactor, &c, total, 16, move |i| {
        if i == 400 && !rl.get() {
            rl.set(true);
            let _ = std::process::Command::new("kill").arg("-USR2").arg(pid.to_string()).status();
        }
        let mut r = Request::new();
        r.params_mut()
            .set_cgi("GET", &format!("/echo.php?n={i}"), "HTTP/1.1", &format!("{fpm_dir}/www"), "/echo.php", None)
            .unwrap();
        r
    });
    assert!(reloaded.get());
    check_echo_results(&results);
    let s = c.stats();
    eprintln!(
        "reload: retries {}, conns opened {}, idle closed by peer {}",
        s.get(Stat::Retries),
        s.get(Stat::ConnsOpened),
        s.get(Stat::IdleClosedByPeer)
    );
    assert!(s.get(Stat::ConnsOpened) > c.stat(Stat::PeakConns), "the reload replaced connections");
    assert!(fpm.log().contains("reloading"), "php-fpm log:\n{}", fpm.log());
}

/// More pooled connections than php-fpm has workers: a worker stays with its kept connection,
/// so a request on a connection no worker accepted would wait for the read timeout. The client
/// notices (a later request on another connection finished first) and closes a connection
/// instead of pooling it, which frees a worker. Every request completes, none times out.
#[test]
fn more_connections_than_workers_does_not_stall() {
    let fpm = PhpFpm::start(Options { workers: 2, ..Options::default() });
    let reactor = Reactor::new().unwrap();
    let c = client(&reactor, &fpm, |cfg| {
        cfg.max_conns = 8;
        cfg.read_timeout_ms = 20_000;
    });
    let fpm_dir = fpm.dir.display().to_string();
    let t0 = Instant::now();
    let results = run_many(&reactor, &c, 300, 16, move |i| {
        let mut r = Request::new();
        r.params_mut()
            .set_cgi("GET", &format!("/echo.php?n={i}"), "HTTP/1.1", &format!("{fpm_dir}/www"), "/echo.php", None)
            .unwrap();
        r
    });
    check_echo_results(&results);
    let s = c.stats();
    eprintln!(
        "8 conns / 2 workers: {:?}, opened {}, reused {}, peak {}",
        t0.elapsed(),
        s.get(Stat::ConnsOpened),
        s.get(Stat::ConnsReused),
        s.get(Stat::PeakConns)
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "stalled: {:?}", t0.elapsed());
}
