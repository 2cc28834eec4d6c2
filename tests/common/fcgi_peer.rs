//! Scripted FastCGI peers for the client tests: a listener on a unix socket or TCP port whose
//! every accepted connection runs a script in its own thread, plus a driver that keeps N
//! requests in flight on a heisen client and records every outcome.
#![allow(dead_code)]

use heisen::fcgi::nv::{self, Pair};
use heisen::fcgi::proto::{Header, ProtocolStatus, RecordType, Role, HEADER_LEN};
use heisen::fcgi::{writer, CgiHead, Client, End, Next, Outcome, Request, RequestHandle, ResponseHandler};
use heisen::reactor::{Reactor, RunMode};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tcp,
}

/// A connection as the peer sees it.
pub enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.read(buf),
            Sock::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.write(buf),
            Sock::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the peer read from the client.
#[derive(Debug, Default, Clone)]
pub struct PeerRequest {
    pub id: u16,
    pub role: u16,
    pub keep_conn: bool,
    pub params: Vec<Pair>,
    pub stdin: Vec<u8>,
    pub data: Vec<u8>,
}

impl PeerRequest {
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| &v[..])
    }

    pub fn param_str(&self, name: &str) -> String {
        String::from_utf8_lossy(self.param(name).unwrap_or(b"")).into_owned()
    }
}

/// What arrived on a connection.
#[derive(Debug)]
pub enum Incoming {
    Request(PeerRequest),
    /// GET_VALUES with the names asked.
    GetValues(Vec<Vec<u8>>),
    Abort(u16),
}

pub struct PeerConn {
    pub sock: Sock,
}

impl PeerConn {
    pub fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.sock.write_all(b)
    }

    pub fn shutdown_write(&self) {
        match &self.sock {
            Sock::Unix(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Sock::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }

    /// One record; `None` on a clean EOF before a header.
    pub fn read_record(&mut self) -> io::Result<Option<(Header, Vec<u8>)>> {
        let mut h = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            let n = self.sock.read(&mut h[got..])?;
            if n == 0 {
                return if got == 0 { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
            }
            got += n;
        }
        let h = Header::decode(&h);
        let mut body = vec![0u8; h.body_len()];
        self.sock.read_exact(&mut body)?;
        body.truncate(h.content_length as usize);
        Ok(Some((h, body)))
    }

    /// Reads BEGIN_REQUEST and PARAMS (and, with `with_stdin`, STDIN and DATA) of one request,
    /// or a management record. `None` on EOF.
    pub fn read_incoming(&mut self, with_stdin: bool) -> io::Result<Option<Incoming>> {
        let mut req = PeerRequest::default();
        let mut params_raw = Vec::new();
        let (mut params_done, mut stdin_done, mut data_done) = (false, !with_stdin, !with_stdin);
        loop {
            let Some((h, body)) = self.read_record()? else { return Ok(None) };
            match RecordType::from_u8(h.rtype) {
                Some(RecordType::GetValues) => {
                    let names = nv::decode_all(&body).expect("GET_VALUES pairs").into_iter().map(|(n, _)| n).collect();
                    return Ok(Some(Incoming::GetValues(names)));
                }
                Some(RecordType::AbortRequest) => return Ok(Some(Incoming::Abort(h.request_id))),
                Some(RecordType::BeginRequest) => {
                    req.id = h.request_id;
                    req.role = u16::from_be_bytes([body[0], body[1]]);
                    req.keep_conn = body[2] & 1 == 1;
                    if req.role != Role::Filter as u16 {
                        data_done = true;
                    }
                }
                Some(RecordType::Params) => {
                    if body.is_empty() {
                        params_done = true;
                        // Each record must hold whole pairs (php-fpm's rule).
                    } else {
                        nv::decode_all(&body).expect("a PARAMS record split a name-value pair");
                        params_raw.extend_from_slice(&body);
                    }
                }
                Some(RecordType::Stdin) => {
                    if body.is_empty() {
                        stdin_done = true;
                    }
                    req.stdin.extend_from_slice(&body);
                }
                Some(RecordType::Data) => {
                    if body.is_empty() {
                        data_done = true;
                    }
                    req.data.extend_from_slice(&body);
                }
                other => panic!("peer got unexpected record {other:?}"),
            }
            if params_done && stdin_done && data_done {
                req.params = nv::decode_all(&params_raw).expect("params");
                return Ok(Some(Incoming::Request(req)));
            }
        }
    }

    /// Reads a whole request (with its body); `None` on EOF.
    pub fn read_request(&mut self) -> io::Result<Option<PeerRequest>> {
        match self.read_incoming(true)? {
            Some(Incoming::Request(r)) => Ok(Some(r)),
            Some(other) => panic!("expected a request, got {other:?}"),
            None => Ok(None),
        }
    }
}

/// STDOUT records of `stdout` (headers and body), the empty STDOUT, and END_REQUEST.
pub fn response(id: u16, stdout: &[u8], app_status: u32, ps: ProtocolStatus) -> Vec<u8> {
    let mut v = Vec::new();
    writer::stream(&mut v, RecordType::Stdout, id, stdout);
    writer::stream_end(&mut v, RecordType::Stdout, id);
    writer::end_request(&mut v, id, app_status, ps);
    v
}

/// The body the good peers send for a request with `N=<n>`.
pub fn good_body(n: &str) -> Vec<u8> {
    format!("body of request {n}\n").into_bytes()
}

pub fn good_stdout(n: &str) -> Vec<u8> {
    let mut v = b"Status: 200 OK\r\nContent-Type: text/plain\r\nX-N: ".to_vec();
    v.extend_from_slice(n.as_bytes());
    v.extend_from_slice(b"\r\n\r\n");
    v.extend_from_slice(&good_body(n));
    v
}

/// A listening peer. Stops (and removes its socket) when dropped.
pub struct Peer {
    pub addr: String,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    wake: Wake,
    thread: Option<thread::JoinHandle<()>>,
    _dir: Option<TempDir>,
}

enum Wake {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "heisen-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Peer {
    /// Starts a peer; `script` runs once per accepted connection, in a thread of its own.
    pub fn start<F>(t: Transport, script: F) -> Peer
    where
        F: Fn(PeerConn) + Send + Sync + 'static,
    {
        let script = Arc::new(script);
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (addr, wake, dir, accept): (String, Wake, Option<TempDir>, Box<dyn FnMut() -> io::Result<Sock> + Send>) =
            match t {
                Transport::Unix => {
                    let dir = TempDir::new("peer");
                    let path = dir.0.join("peer.sock");
                    let l = UnixListener::bind(&path).expect("bind unix");
                    (
                        format!("unix:{}", path.display()),
                        Wake::Unix(path),
                        Some(dir),
                        Box::new(move || l.accept().map(|(s, _)| Sock::Unix(s))),
                    )
                }
                Transport::Tcp => {
                    let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
                    let a = l.local_addr().unwrap();
                    (format!("tcp:{a}"), Wake::Tcp(a), None, Box::new(move || l.accept().map(|(s, _)| Sock::Tcp(s))))
                }
            };
        let (stop2, acc2) = (stop.clone(), accepted.clone());
        let mut accept = accept;
        let thread = thread::Builder::new()
            .name("fcgi-peer".into())
            .spawn(move || loop {
                let sock = match accept() {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                acc2.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || script(PeerConn { sock }))
                    .expect("peer connection thread");
            })
            .expect("peer thread");
        Peer { addr, stop, accepted, wake, thread: Some(thread), _dir: dir }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        match &self.wake {
            Wake::Unix(p) => drop(UnixStream::connect(p)),
            Wake::Tcp(a) => drop(TcpStream::connect(a)),
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A good request answered with keep-alive semantics: serve requests until EOF, close after a
/// request without FCGI_KEEP_CONN.
pub fn serve_good(mut c: PeerConn) {
    while let Ok(Some(req)) = c.read_request() {
        let n = req.param_str("N");
        if c.write_all(&response(req.id, &good_stdout(&n), 0, ProtocolStatus::RequestComplete)).is_err() {
            return;
        }
        if !req.keep_conn {
            return;
        }
    }
}

// ------------------------------------------------------------------------------------------
// client side

/// Everything one request produced.
#[derive(Debug, Default, Clone)]
pub struct Res {
    pub head: Option<CgiHead>,
    pub body: Vec<u8>,
    pub stderr: Vec<u8>,
    pub end: Option<End>,
    /// Calls of on_headers / on_end (must end up exactly 0-1 / 1).
    pub headers_calls: usize,
    pub end_calls: usize,
    pub order_error: Option<String>,
}

impl Res {
    pub fn outcome(&self) -> Outcome {
        self.end.as_ref().expect("ended").outcome
    }

    pub fn status(&self) -> u16 {
        self.head.as_ref().map_or(0, |h| h.status)
    }
}

pub type Results = Rc<RefCell<Vec<Res>>>;

/// Records into `results[index]`; checks ordering (headers before body, end last, once).
pub struct Recorder {
    pub results: Results,
    pub index: usize,
    pub on_end: Option<Box<dyn FnMut(&RequestHandle, usize)>>,
}

impl Recorder {
    fn note(&self, f: impl FnOnce(&mut Res)) {
        let mut r = self.results.borrow_mut();
        if r.len() <= self.index {
            r.resize(self.index + 1, Res::default());
        }
        let res = &mut r[self.index];
        if res.end_calls > 0 {
            res.order_error = Some("callback after on_end".into());
        }
        f(res);
    }
}

impl ResponseHandler for Recorder {
    fn on_headers(&mut self, _req: &RequestHandle, head: &CgiHead) -> Next {
        self.note(|r| {
            if !r.body.is_empty() {
                r.order_error = Some("headers after body".into());
            }
            r.headers_calls += 1;
            r.head = Some(head.clone());
        });
        Next::Continue
    }
    fn on_body(&mut self, _req: &RequestHandle, data: &[u8]) -> Next {
        assert!(!data.is_empty());
        self.note(|r| r.body.extend_from_slice(data));
        Next::Continue
    }
    fn on_stderr(&mut self, _req: &RequestHandle, data: &[u8]) -> Next {
        self.note(|r| r.stderr.extend_from_slice(data));
        Next::Continue
    }
    fn on_end(&mut self, req: &RequestHandle, end: &End) {
        self.note(|r| {
            r.end_calls += 1;
            r.end = Some(end.clone());
        });
        if let Some(f) = self.on_end.as_mut() {
            f(req, self.index);
        }
    }
}

/// Sends `total` requests keeping `window` in flight (new ones are sent from `on_end`), runs
/// the reactor until all ended, and returns the results in request order.
pub fn run_many(
    reactor: &Reactor,
    client: &Client,
    total: usize,
    window: usize,
    make: impl Fn(usize) -> Request + 'static,
) -> Vec<Res> {
    let results: Results = Rc::new(RefCell::new(vec![Res::default(); total]));
    let next = Rc::new(RefCell::new(0usize));
    let done = Rc::new(RefCell::new(0usize));
    let make = Rc::new(make);

    fn launch(
        client: &Client,
        results: &Results,
        next: &Rc<RefCell<usize>>,
        done: &Rc<RefCell<usize>>,
        make: &Rc<dyn Fn(usize) -> Request>,
        total: usize,
    ) {
        let i = {
            let mut n = next.borrow_mut();
            if *n >= total {
                return;
            }
            *n += 1;
            *n - 1
        };
        let (c2, r2, n2, d2, m2) = (client.clone(), results.clone(), next.clone(), done.clone(), make.clone());
        let rec = Recorder {
            results: results.clone(),
            index: i,
            on_end: Some(Box::new(move |_, _| {
                *d2.borrow_mut() += 1;
                launch(&c2, &r2, &n2, &d2, &m2, total);
            })),
        };
        client.send(make(i), Box::new(rec)).expect("send");
    }

    let make_dyn: Rc<dyn Fn(usize) -> Request> = make;
    for _ in 0..window.min(total) {
        launch(client, &results, &next, &done, &make_dyn, total);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while *done.borrow() < total {
        reactor.run(RunMode::Once).expect("reactor run");
        assert!(std::time::Instant::now() < deadline, "run_many: {} of {total} ended after 120 s", done.borrow());
    }
    let out = results.borrow().clone();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.end_calls, 1, "request {i}: on_end called {} times", r.end_calls);
        assert!(r.headers_calls <= 1, "request {i}: on_headers called {} times", r.headers_calls);
        assert_eq!(r.order_error, None, "request {i}");
    }
    out
}

/// A request with N=<i> and the usual CGI parameters.
pub fn numbered(i: usize) -> Request {
    let mut r = Request::new();
    r.params_mut().set_cgi("GET", &format!("/t?n={i}"), "HTTP/1.1", "/srv", "/t", None).unwrap();
    r.param(b"N", i.to_string().as_bytes()).unwrap();
    r
}

/// Asserts request `i` completed with the good peer's exact answer.
pub fn assert_good(i: usize, r: &Res) {
    assert_eq!(r.outcome(), Outcome::Complete, "request {i}: {:?}", r.end);
    assert_eq!(r.status(), 200, "request {i}");
    let head = r.head.as_ref().unwrap();
    assert_eq!(head.get("X-N"), Some(i.to_string().as_bytes()), "request {i}");
    assert_eq!(r.body, good_body(&i.to_string()), "request {i}");
}

/// Counts outcomes.
pub fn tally(results: &[Res]) -> HashMap<Outcome, usize> {
    let mut m = HashMap::new();
    for r in results {
        *m.entry(r.outcome()).or_insert(0) += 1;
    }
    m
}

/// Runs the reactor until `cond` or the deadline.
pub fn run_until(reactor: &Reactor, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        reactor.run(RunMode::NoWait).expect("run");
        assert!(std::time::Instant::now() < deadline, "condition not met in {secs} s");
        thread::sleep(Duration::from_millis(1));
    }
}
