//! fcgi-client-rs: the same load as bench/fcgi/fcgi_client.c, driven by the crates.io
//! `fastcgi-client` crate on a single-threaded tokio runtime (the C clients are
//! single-threaded too). `c` tasks each send requests back to back until `n` requests
//! have been started; with -k each task keeps one connection (FCGI_KEEP_CONN), without
//! it each request connects anew. Prints one JSON line.
use fastcgi_client::{Client, Params, Request};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;
use tokio::net::UnixStream;

struct Opts {
    socket: String,
    script: String,
    n: usize,
    c: usize,
    keep_alive: bool,
}

fn usage() -> ! {
    eprintln!("usage: fcgi-client-rs -s SOCKET -f SCRIPT_FILENAME [-n REQUESTS] [-c CONCURRENCY] [-k]");
    std::process::exit(1)
}

fn parse() -> Opts {
    let mut o = Opts { socket: String::new(), script: String::new(), n: 10000, c: 1, keep_alive: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-s" => o.socket = args.next().unwrap_or_else(|| usage()),
            "-f" => o.script = args.next().unwrap_or_else(|| usage()),
            "-n" => o.n = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "-c" => o.c = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "-k" => o.keep_alive = true,
            _ => usage(),
        }
    }
    if o.socket.is_empty() || o.script.is_empty() || o.c == 0 || o.n == 0 {
        usage()
    }
    o
}

/// The CGI parameters every client in the suite sends (the set nginx's fastcgi_params gives).
///
/// fastcgi-client 0.12 writes two empty FCGI_STDIN records when the body is empty (one from
/// the copy loop, one terminator). With FCGI_KEEP_CONN the second lands after the reply, as
/// a record of no request: libfcgi drops the connection and the next request on it fails
/// with "unexpected end of file" (about 40% of requests). The work-around a user of the
/// crate needs is a non-empty body, so in keep-alive mode every request carries one byte
/// (CONTENT_LENGTH=1), unless FCGI_CLIENT_RS_EMPTY_BODY is set (to show the failure).
fn params(script: &str, body_len: usize) -> Params<'_> {
    Params::default()
        .request_method(if body_len > 0 { "POST" } else { "GET" })
        .script_name("/bench")
        .script_filename(script)
        .query_string("")
        .request_uri("/bench")
        .document_uri("/bench")
        .document_root("/")
        .server_protocol("HTTP/1.1")
        .gateway_interface("CGI/1.1")
        .server_software("bench")
        .remote_addr("127.0.0.1")
        .remote_port(40000)
        .server_addr("127.0.0.1")
        .server_port(80)
        .server_name("localhost")
        .content_type("")
        .content_length(body_len)
}

fn ok(stdout: Option<Vec<u8>>) -> bool {
    stdout.map(|s| !s.is_empty()).unwrap_or(false)
}

async fn worker(o: Rc<Opts>, started: Rc<Cell<usize>>, lat: Rc<RefCell<Vec<f64>>>, errors: Rc<Cell<usize>>) {
    let mut ka: Option<Client<_, _>> = None;
    let body: &[u8] = if o.keep_alive && std::env::var_os("FCGI_CLIENT_RS_EMPTY_BODY").is_none() { b"x" } else { b"" };
    while started.get() < o.n {
        started.set(started.get() + 1);
        let t0 = Instant::now();
        let good = if o.keep_alive {
            if ka.is_none() {
                match UnixStream::connect(&o.socket).await {
                    Ok(s) => ka = Some(Client::new_keep_alive_tokio(s)),
                    Err(_) => {
                        errors.set(errors.get() + 1);
                        continue;
                    }
                }
            }
            let client = ka.as_mut().unwrap();
            match client.execute(Request::new_tokio(params(&o.script, body.len()), body)).await {
                Ok(r) => ok(r.stdout),
                Err(e) => {
                    if std::env::var_os("FCGI_CLIENT_RS_DEBUG").is_some() {
                        eprintln!("keep-alive request failed: {e}");
                    }
                    ka = None;
                    false
                }
            }
        } else {
            match UnixStream::connect(&o.socket).await {
                Ok(s) => match Client::new_tokio(s)
                    .execute_once(Request::new_tokio(params(&o.script, body.len()), body))
                    .await
                {
                    Ok(r) => ok(r.stdout),
                    Err(_) => false,
                },
                Err(_) => false,
            }
        };
        if good {
            lat.borrow_mut().push(t0.elapsed().as_secs_f64() * 1e6);
        } else {
            errors.set(errors.get() + 1);
        }
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i.min(v.len() - 1)]
}

fn main() {
    let o = Rc::new(parse());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let started = Rc::new(Cell::new(0usize));
    let lat = Rc::new(RefCell::new(Vec::with_capacity(o.n)));
    let errors = Rc::new(Cell::new(0usize));
    let t0 = Instant::now();
    local.block_on(&rt, async {
        let mut handles = Vec::new();
        for _ in 0..o.c {
            handles.push(tokio::task::spawn_local(worker(o.clone(), started.clone(), lat.clone(), errors.clone())));
        }
        for h in handles {
            let _ = h.await;
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut v = lat.borrow_mut();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{{\"client\":\"fastcgi-client-rs\",\"requests\":{},\"ok\":{},\"errors\":{},\"seconds\":{:.4},\"rps\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        o.n,
        v.len(),
        errors.get(),
        secs,
        v.len() as f64 / secs,
        pct(&v, 50.0),
        pct(&v, 90.0),
        pct(&v, 99.0),
        pct(&v, 100.0)
    );
}
