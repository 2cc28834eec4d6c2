//! The FastCGI client's C ABI: config, client, request builder and callbacks, the synchronous
//! fetch, statistics and GET_VALUES. A thin layer over `crate::fcgi`.
// Entry points take raw pointers by the C contract (documented in the header), as in the rest
// of the ABI; they are not `unsafe fn` so that cbindgen sees plain C functions.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use super::reactor::heisen_reactor;
use super::status::*;
use super::userdata::{heisen_free_fn, UserData};
use crate::fcgi::params::{HeaderUse, ParamsError};
use crate::fcgi::{
    Balance, CgiHead, Client, ClientError, Config, End, Multiplex, Next, Outcome, Request, RequestHandle, Response,
    ResponseHandler, Role, Stat, WriteStatus,
};
use std::cell::RefCell;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};

// ------------------------------------------------------------------------------------ config

/// FastCGI client configuration (copied by heisen_fcgi_client_new).
pub struct heisen_fcgi_config {
    c: RefCell<Config>,
}

/// Option: connect timeout in ms (default 5000).
pub const HEISEN_FCGI_OPT_CONNECT_TIMEOUT_MS: i32 = 0;
/// Option: longest time the request may make no sending progress, in ms (default 30000; 0 = none).
pub const HEISEN_FCGI_OPT_SEND_TIMEOUT_MS: i32 = 1;
/// Option: longest time between bytes received, in ms (default 60000; 0 = none).
pub const HEISEN_FCGI_OPT_READ_TIMEOUT_MS: i32 = 2;
/// Option: whole request including the queue wait, in ms (default 0 = none).
pub const HEISEN_FCGI_OPT_REQUEST_TIMEOUT_MS: i32 = 3;
/// Option: 1 = FCGI_KEEP_CONN and pooled connections (default), 0 = a connection per request.
pub const HEISEN_FCGI_OPT_KEEP_ALIVE: i32 = 4;
/// Option: connections per backend (default 16); capped by FCGI_MAX_CONNS when the backend
/// reports it. Set it to the backend's worker count (php-fpm: pm.max_children).
pub const HEISEN_FCGI_OPT_MAX_CONNS: i32 = 5;
/// Option: idle connections kept per backend (default = MAX_CONNS).
pub const HEISEN_FCGI_OPT_MAX_IDLE: i32 = 6;
/// Option: idle connections are closed after this many ms (default 30000; 0 = never).
pub const HEISEN_FCGI_OPT_IDLE_TIMEOUT_MS: i32 = 7;
/// Option: requests per connection before it is retired (default 0 = unlimited).
pub const HEISEN_FCGI_OPT_MAX_REQUESTS_PER_CONN: i32 = 8;
/// Option: 0 = round-robin (default), 1 = least connections.
pub const HEISEN_FCGI_OPT_BALANCE: i32 = 9;
/// Option: backends tried when connecting fails or times out (default 3).
pub const HEISEN_FCGI_OPT_MAX_TRIES: i32 = 10;
/// Option: requests that may wait for a connection (default 4096); beyond: OVERLOADED.
pub const HEISEN_FCGI_OPT_QUEUE_LIMIT: i32 = 11;
/// Option: CGI header block limit in bytes (default 65536).
pub const HEISEN_FCGI_OPT_MAX_HEADER_BYTES: i32 = 12;
/// Option: -1 ask the backend (GET_VALUES), 0 off (default), 1 on.
pub const HEISEN_FCGI_OPT_MULTIPLEX: i32 = 13;
/// Option: 1 = ask FCGI_MAX_CONNS with GET_VALUES before first use (default 0).
pub const HEISEN_FCGI_OPT_PROBE_VALUES: i32 = 14;
/// Option: bytes buffered for a paused caller before reading stops (default 65536).
pub const HEISEN_FCGI_OPT_STDOUT_HIGH_WATER: i32 = 15;

/// A new configuration with the defaults and no backend.
#[no_mangle]
pub extern "C" fn heisen_fcgi_config_new(config_out: *mut *mut heisen_fcgi_config) -> heisen_status {
    ffi_guard! {
        let out = try_out!(config_out);
        put!(out, Box::into_raw(Box::new(heisen_fcgi_config { c: RefCell::new(Config::new()) })))
    }
}

/// Adds a backend: "unix:/path", "tcp:host:port", "tcp:[::1]:port", "/path" or "host:port"
/// (host names are resolved now).
#[no_mangle]
pub extern "C" fn heisen_fcgi_config_add_backend(
    config: *mut heisen_fcgi_config,
    address: *const c_char,
) -> heisen_status {
    ffi_guard! {
        let c = try_ref!(config);
        let a = try_str!(address);
        match c.c.borrow_mut().add_backend(a) {
            Ok(_) => HEISEN_STATUS_OK,
            Err(e) => io_status(&e),
        }
    }
}

/// Sets a HEISEN_FCGI_OPT_* option. INVALID_ARGUMENT for an unknown option or a value out of
/// range (the config is then unchanged).
#[no_mangle]
pub extern "C" fn heisen_fcgi_config_set(config: *mut heisen_fcgi_config, option: i32, value: i64) -> heisen_status {
    ffi_guard! {
        let c = try_ref!(config);
        let mut c = c.c.borrow_mut();
        let ms = u64::try_from(value).ok();
        let count = usize::try_from(value).ok();
        let flag = match value {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        let ok = match option {
            HEISEN_FCGI_OPT_CONNECT_TIMEOUT_MS => ms.map(|v| c.connect_timeout_ms = v),
            HEISEN_FCGI_OPT_SEND_TIMEOUT_MS => ms.map(|v| c.send_timeout_ms = v),
            HEISEN_FCGI_OPT_READ_TIMEOUT_MS => ms.map(|v| c.read_timeout_ms = v),
            HEISEN_FCGI_OPT_REQUEST_TIMEOUT_MS => ms.map(|v| c.request_timeout_ms = v),
            HEISEN_FCGI_OPT_KEEP_ALIVE => flag.map(|v| c.keep_alive = v),
            HEISEN_FCGI_OPT_MAX_CONNS => count.filter(|&v| v >= 1).map(|v| c.max_conns = v),
            HEISEN_FCGI_OPT_MAX_IDLE => count.map(|v| c.max_idle = Some(v)),
            HEISEN_FCGI_OPT_IDLE_TIMEOUT_MS => ms.map(|v| c.idle_timeout_ms = v),
            HEISEN_FCGI_OPT_MAX_REQUESTS_PER_CONN => ms.map(|v| c.max_requests_per_conn = v),
            HEISEN_FCGI_OPT_BALANCE => match value {
                0 => Some(Balance::RoundRobin),
                1 => Some(Balance::LeastConnections),
                _ => None,
            }
            .map(|b| c.balance = b),
            HEISEN_FCGI_OPT_MAX_TRIES => u32::try_from(value).ok().filter(|&v| v >= 1).map(|v| c.max_tries = v),
            HEISEN_FCGI_OPT_QUEUE_LIMIT => count.map(|v| c.queue_limit = v),
            HEISEN_FCGI_OPT_MAX_HEADER_BYTES => count.filter(|&v| v >= 1).map(|v| c.max_header_bytes = v),
            HEISEN_FCGI_OPT_MULTIPLEX => match value {
                -1 => Some(Multiplex::Auto),
                0 => Some(Multiplex::Off),
                1 => Some(Multiplex::On),
                _ => None,
            }
            .map(|m| c.multiplex = m),
            HEISEN_FCGI_OPT_PROBE_VALUES => flag.map(|v| c.probe_values = v),
            HEISEN_FCGI_OPT_STDOUT_HIGH_WATER => count.filter(|&v| v >= 1).map(|v| c.stdout_high_water = v),
            _ => None,
        };
        match ok {
            Some(()) => HEISEN_STATUS_OK,
            None => HEISEN_STATUS_INVALID_ARGUMENT,
        }
    }
}

/// Frees a configuration. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_fcgi_config_free(config: *mut heisen_fcgi_config) {
    ffi_guard! {
        if !config.is_null() {
            // SAFETY: a non-NULL pointer is a config from heisen_fcgi_config_new, freed once.
            drop(unsafe { Box::from_raw(config) });
        }
    }
}

// ------------------------------------------------------------------------------------ client

/// A FastCGI client on a reactor.
pub struct heisen_fcgi_client {
    c: Client,
}

/// Statistic: requests sent.
pub const HEISEN_FCGI_STAT_REQUESTS: i32 = 0;
/// Statistic: requests ended complete.
pub const HEISEN_FCGI_STAT_COMPLETE: i32 = 1;
/// Statistic: requests ended truncated.
pub const HEISEN_FCGI_STAT_TRUNCATED: i32 = 2;
/// Statistic: requests ended with bad gateway.
pub const HEISEN_FCGI_STAT_BAD_GATEWAY: i32 = 3;
/// Statistic: requests ended with a timeout.
pub const HEISEN_FCGI_STAT_TIMEOUT: i32 = 4;
/// Statistic: requests ended overloaded (backend or queue full).
pub const HEISEN_FCGI_STAT_OVERLOADED: i32 = 5;
/// Statistic: requests aborted.
pub const HEISEN_FCGI_STAT_ABORTED: i32 = 6;
/// Statistic: requests ended with CANT_MPX_CONN.
pub const HEISEN_FCGI_STAT_CANT_MPX_CONN: i32 = 7;
/// Statistic: requests ended with UNKNOWN_ROLE.
pub const HEISEN_FCGI_STAT_UNKNOWN_ROLE: i32 = 8;
/// Statistic: retries on a fresh connection after a reused one failed before any response byte.
pub const HEISEN_FCGI_STAT_RETRIES: i32 = 9;
/// Statistic: connections opened.
pub const HEISEN_FCGI_STAT_CONNS_OPENED: i32 = 10;
/// Statistic: requests sent on a reused connection.
pub const HEISEN_FCGI_STAT_CONNS_REUSED: i32 = 11;
/// Statistic: most connections open at once.
pub const HEISEN_FCGI_STAT_PEAK_CONNS: i32 = 12;
/// Statistic: requests waiting for a connection now.
pub const HEISEN_FCGI_STAT_QUEUE_LENGTH: i32 = 13;
/// Statistic: total time requests waited for a connection, in microseconds.
pub const HEISEN_FCGI_STAT_QUEUE_WAIT_US_TOTAL: i32 = 14;
/// Statistic: longest time a request waited for a connection, in microseconds.
pub const HEISEN_FCGI_STAT_QUEUE_WAIT_US_MAX: i32 = 15;
/// Statistic: requests not yet ended.
pub const HEISEN_FCGI_STAT_IN_FLIGHT: i32 = 16;
/// Statistic: connections open now.
pub const HEISEN_FCGI_STAT_CONNS_OPEN: i32 = 17;
/// Statistic: failovers to another backend after a connect failure or timeout.
pub const HEISEN_FCGI_STAT_FAILOVERS: i32 = 18;
/// Statistic: idle pooled connections the backend closed.
pub const HEISEN_FCGI_STAT_IDLE_CLOSED_BY_PEER: i32 = 19;

/// A client on `reactor` with a copy of `config` (which must have a backend).
#[no_mangle]
pub extern "C" fn heisen_fcgi_client_new(
    reactor: *mut heisen_reactor,
    config: *const heisen_fcgi_config,
    client_out: *mut *mut heisen_fcgi_client,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(reactor);
        let cfg = try_ref!(config);
        let out = try_out!(client_out);
        if r.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        match Client::new(&r.r, cfg.c.borrow().clone()) {
            Ok(c) => put!(out, Box::into_raw(Box::new(heisen_fcgi_client { c }))),
            Err(e) => client_status(e),
        }
    }
}

/// Frees the client: connections close and in-flight requests end with HEISEN_STATUS_ABORTED
/// (their on_end runs during this call). Safe inside callbacks. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_fcgi_client_free(client: *mut heisen_fcgi_client) {
    ffi_guard! {
        if client.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is a client from heisen_fcgi_client_new, freed once.
        let c = unsafe { Box::from_raw(client) };
        c.c.close();
    }
}

/// Reads a HEISEN_FCGI_STAT_* statistic.
#[no_mangle]
pub extern "C" fn heisen_fcgi_client_stat(
    client: *mut heisen_fcgi_client,
    which: i32,
    value_out: *mut u64,
) -> heisen_status {
    ffi_guard! {
        let c = try_ref!(client);
        let out = try_out!(value_out);
        match Stat::from_i32(which) {
            Some(s) => put!(out, c.c.stat(s)),
            None => HEISEN_STATUS_INVALID_ARGUMENT,
        }
    }
}

fn client_status(e: ClientError) -> heisen_status {
    match e {
        ClientError::Closed => HEISEN_STATUS_CLOSED,
        ClientError::Invalid | ClientError::NoBackend => HEISEN_STATUS_INVALID_ARGUMENT,
        ClientError::Reentrant => HEISEN_STATUS_REENTRANT,
    }
}

/// The status a request's outcome is reported as.
pub(crate) fn outcome_status(o: Outcome) -> heisen_status {
    match o {
        Outcome::Complete => HEISEN_STATUS_OK,
        Outcome::Truncated => HEISEN_STATUS_TRUNCATED,
        Outcome::BadGateway => HEISEN_STATUS_BAD_GATEWAY,
        Outcome::Timeout => HEISEN_STATUS_TIMEOUT,
        Outcome::Overloaded => HEISEN_STATUS_OVERLOADED,
        Outcome::CantMpxConn => HEISEN_STATUS_CANT_MPX_CONN,
        Outcome::UnknownRole => HEISEN_STATUS_UNKNOWN_ROLE,
        Outcome::Aborted => HEISEN_STATUS_ABORTED,
    }
}

// ------------------------------------------------------------------------------------ requests

/// Role: RESPONDER (default).
pub const HEISEN_FCGI_ROLE_RESPONDER: i32 = 1;
/// Role: AUTHORIZER.
pub const HEISEN_FCGI_ROLE_AUTHORIZER: i32 = 2;
/// Role: FILTER (with the DATA stream, see heisen_fcgi_request_set_data).
pub const HEISEN_FCGI_ROLE_FILTER: i32 = 3;

/// The CGI header block arrived (not in raw mode). Return 0 to continue, 1 to pause delivery
/// (resume with heisen_fcgi_request_resume).
pub type heisen_fcgi_headers_cb =
    Option<unsafe extern "C" fn(req: *mut heisen_fcgi_request, http_status: i32, user_data: *mut c_void) -> i32>;
/// Body or stderr bytes (never empty; valid during the call). Return 0 to continue, 1 to pause.
pub type heisen_fcgi_data_cb = Option<
    unsafe extern "C" fn(req: *mut heisen_fcgi_request, data: *const u8, len: usize, user_data: *mut c_void) -> i32,
>;
/// The request ended (exactly once, last). `outcome`: HEISEN_STATUS_OK for complete, else
/// TRUNCATED, BAD_GATEWAY, TIMEOUT, OVERLOADED, CANT_MPX_CONN, UNKNOWN_ROLE or ABORTED.
/// `req` is freed when this returns.
pub type heisen_fcgi_end_cb =
    Option<unsafe extern "C" fn(req: *mut heisen_fcgi_request, outcome: heisen_status, user_data: *mut c_void)>;
/// A streamed body may take more (after heisen_fcgi_request_write returned BUSY).
pub type heisen_fcgi_drain_cb = Option<unsafe extern "C" fn(req: *mut heisen_fcgi_request, user_data: *mut c_void)>;

struct Callbacks {
    on_headers: heisen_fcgi_headers_cb,
    on_body: heisen_fcgi_data_cb,
    on_stderr: heisen_fcgi_data_cb,
    on_end: heisen_fcgi_end_cb,
    on_drain: heisen_fcgi_drain_cb,
    ud: UserData,
}

impl Default for Callbacks {
    fn default() -> Self {
        Callbacks {
            on_headers: None,
            on_body: None,
            on_stderr: None,
            on_end: None,
            on_drain: None,
            ud: UserData::new(std::ptr::null_mut(), None),
        }
    }
}

#[derive(Default)]
struct CReq {
    /// The request being built; taken when sent.
    builder: Option<Request>,
    cbs: Option<Callbacks>,
    sent: bool,
    handle: Option<RequestHandle>,
    head: Option<CgiHead>,
    end: Option<End>,
    reason: Option<CString>,
}

/// A FastCGI request: built, then sent (the library owns it from then on, on every path).
pub struct heisen_fcgi_request {
    st: RefCell<CReq>,
}

/// Owns the request handle while the client runs it; calls the C callbacks.
struct CHandler {
    req: Box<heisen_fcgi_request>,
    cbs: Callbacks,
}

impl CHandler {
    fn ptr(&self) -> *mut heisen_fcgi_request {
        &*self.req as *const heisen_fcgi_request as *mut heisen_fcgi_request
    }

    fn data(&self, cb: heisen_fcgi_data_cb, data: &[u8]) -> Next {
        match cb {
            // SAFETY: `req` stays alive until this handler is dropped (after on_end); `data` is
            // valid for the call.
            Some(f) => next(unsafe { f(self.ptr(), data.as_ptr(), data.len(), self.cbs.ud.ptr()) }),
            None => Next::Continue,
        }
    }
}

fn next(v: i32) -> Next {
    if v == 1 {
        Next::Pause
    } else {
        Next::Continue
    }
}

impl ResponseHandler for CHandler {
    fn on_headers(&mut self, _req: &RequestHandle, head: &CgiHead) -> Next {
        self.req.st.borrow_mut().head = Some(head.clone());
        match self.cbs.on_headers {
            // SAFETY: as in `data`.
            Some(f) => next(unsafe { f(self.ptr(), head.status as i32, self.cbs.ud.ptr()) }),
            None => Next::Continue,
        }
    }

    fn on_body(&mut self, _req: &RequestHandle, data: &[u8]) -> Next {
        self.data(self.cbs.on_body, data)
    }

    fn on_stderr(&mut self, _req: &RequestHandle, data: &[u8]) -> Next {
        self.data(self.cbs.on_stderr, data)
    }

    fn on_drain(&mut self, _req: &RequestHandle) {
        if let Some(f) = self.cbs.on_drain {
            // SAFETY: as in `data`.
            unsafe { f(self.ptr(), self.cbs.ud.ptr()) };
        }
    }

    fn on_end(&mut self, _req: &RequestHandle, end: &End) {
        {
            let mut st = self.req.st.borrow_mut();
            st.reason = Some(cstring(&end.reason));
            st.end = Some(end.clone());
        }
        if let Some(f) = self.cbs.on_end {
            // SAFETY: as in `data`.
            unsafe { f(self.ptr(), outcome_status(end.outcome), self.cbs.ud.ptr()) };
        }
    }
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// The builder of a request not yet sent, or INVALID_ARGUMENT.
macro_rules! try_builder {
    ($req:expr, |$b:ident| $body:expr) => {{
        let r = try_ref!($req);
        let mut st = r.st.borrow_mut();
        match st.builder.as_mut() {
            Some($b) => $body,
            None => HEISEN_STATUS_INVALID_ARGUMENT,
        }
    }};
}

fn params_status(r: Result<impl Sized, ParamsError>) -> heisen_status {
    match r {
        Ok(_) => HEISEN_STATUS_OK,
        Err(_) => HEISEN_STATUS_INVALID_ARGUMENT,
    }
}

/// A C string argument that may be NULL.
macro_rules! opt_str {
    ($p:expr) => {{
        let p: *const c_char = $p;
        if p.is_null() {
            None
        } else {
            Some(try_str!(p))
        }
    }};
}

/// A new, empty request (RESPONDER, no parameters, no body).
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_new(request_out: *mut *mut heisen_fcgi_request) -> heisen_status {
    ffi_guard! {
        let out = try_out!(request_out);
        let st = CReq { builder: Some(Request::new()), ..CReq::default() };
        put!(out, Box::into_raw(Box::new(heisen_fcgi_request { st: RefCell::new(st) })))
    }
}

/// Sets a parameter (replacing an earlier one of the same name). INVALID_ARGUMENT for an empty
/// name or a pair too large for one PARAMS record (name + value + lengths > 65528 bytes:
/// php-fpm cannot receive it), never a truncated one.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_add_param(
    req: *mut heisen_fcgi_request,
    name: *const u8,
    name_len: usize,
    value: *const u8,
    value_len: usize,
) -> heisen_status {
    ffi_guard! {
        let n = try_bytes!(name, name_len);
        let v = try_bytes!(value, value_len);
        try_builder!(req, |b| params_status(b.params_mut().set(n, v)))
    }
}

/// Adds parameters from an environ-style block "NAME=VALUE\0NAME=VALUE\0..." of `len` bytes.
/// All or nothing.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_add_params_block(
    req: *mut heisen_fcgi_request,
    block: *const u8,
    len: usize,
) -> heisen_status {
    ffi_guard! {
        let blk = try_bytes!(block, len);
        try_builder!(req, |b| params_status(b.params_mut().add_block(blk)))
    }
}

/// Sets the CGI variables nginx's fastcgi_params sets from the request line: REQUEST_METHOD,
/// REQUEST_URI, QUERY_STRING, DOCUMENT_URI, SCRIPT_NAME, SCRIPT_FILENAME (document_root +
/// script_name), PATH_INFO and PATH_TRANSLATED (if path_info is not NULL), DOCUMENT_ROOT,
/// SERVER_PROTOCOL, GATEWAY_INTERFACE, SERVER_SOFTWARE, REDIRECT_STATUS=200.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_cgi(
    req: *mut heisen_fcgi_request,
    method: *const c_char,
    request_uri: *const c_char,
    protocol: *const c_char,
    document_root: *const c_char,
    script_name: *const c_char,
    path_info: *const c_char,
) -> heisen_status {
    ffi_guard! {
        let (m, u, p, d, s) = (try_str!(method), try_str!(request_uri), try_str!(protocol), try_str!(document_root), try_str!(script_name));
        let pi = opt_str!(path_info);
        try_builder!(req, |b| params_status(b.params_mut().set_cgi(m, u, p, d, s, pi)))
    }
}

/// Sets REMOTE_ADDR, REMOTE_PORT, SERVER_ADDR, SERVER_PORT, SERVER_NAME. NULL strings are
/// skipped; a port is set when it is not 0.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_peer(
    req: *mut heisen_fcgi_request,
    remote_addr: *const c_char,
    remote_port: u16,
    server_addr: *const c_char,
    server_port: u16,
    server_name: *const c_char,
) -> heisen_status {
    ffi_guard! {
        let (ra, sa, sn) = (opt_str!(remote_addr), opt_str!(server_addr), opt_str!(server_name));
        try_builder!(req, |b| params_status(b.params_mut().set_peer(ra, remote_port, sa, server_port, sn)))
    }
}

/// Adds an HTTP request header as nginx does: HTTP_NAME (uppercased, '-' to '_'), or
/// CONTENT_TYPE / CONTENT_LENGTH; `Proxy` (httpoxy) and names with bytes other than
/// [A-Za-z0-9-] are dropped (OK is returned); a repeated header is joined with ", "
/// ("; " for Cookie).
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_add_http_header(
    req: *mut heisen_fcgi_request,
    name: *const u8,
    name_len: usize,
    value: *const u8,
    value_len: usize,
) -> heisen_status {
    ffi_guard! {
        let n = try_bytes!(name, name_len);
        let v = try_bytes!(value, value_len);
        try_builder!(req, |b| match b.params_mut().add_http_header(n, v) {
            Ok(HeaderUse::Added | HeaderUse::Dropped) => HEISEN_STATUS_OK,
            Err(_) => HEISEN_STATUS_INVALID_ARGUMENT,
        })
    }
}

/// HEISEN_FCGI_ROLE_RESPONDER (default), _AUTHORIZER or _FILTER.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_role(req: *mut heisen_fcgi_request, role: i32) -> heisen_status {
    ffi_guard! {
        let Some(role) = u16::try_from(role).ok().and_then(Role::from_u16) else {
            return HEISEN_STATUS_INVALID_ARGUMENT;
        };
        try_builder!(req, |b| {
            b.set_role(role);
            HEISEN_STATUS_OK
        })
    }
}

/// The request body (copied). Sets CONTENT_LENGTH unless it was set.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_body(
    req: *mut heisen_fcgi_request,
    data: *const u8,
    len: usize,
) -> heisen_status {
    ffi_guard! {
        let d = try_bytes!(data, len);
        try_builder!(req, |b| params_status(b.set_body(d.to_vec())))
    }
}

/// The FILTER role's DATA stream (copied). Sets FCGI_DATA_LENGTH unless it was set.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_data(
    req: *mut heisen_fcgi_request,
    data: *const u8,
    len: usize,
) -> heisen_status {
    ffi_guard! {
        let d = try_bytes!(data, len);
        try_builder!(req, |b| params_status(b.set_data(d.to_vec())))
    }
}

/// With `enabled` != 0 the body is pushed after sending with heisen_fcgi_request_write and
/// heisen_fcgi_request_finish (set CONTENT_LENGTH yourself: php-fpm needs it).
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_streaming_body(req: *mut heisen_fcgi_request, enabled: i32) -> heisen_status {
    ffi_guard! {
        try_builder!(req, |b| {
            b.set_streaming_body(enabled != 0);
            HEISEN_STATUS_OK
        })
    }
}

/// With `raw` != 0 STDOUT goes to on_body unparsed, and on_headers is not called.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_raw(req: *mut heisen_fcgi_request, raw: i32) -> heisen_status {
    ffi_guard! {
        try_builder!(req, |b| {
            b.set_raw(raw != 0);
            HEISEN_STATUS_OK
        })
    }
}

/// Whole-request timeout in ms including the queue wait (0 = none), overriding the client's.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_timeout(
    req: *mut heisen_fcgi_request,
    request_timeout_ms: u32,
) -> heisen_status {
    ffi_guard! {
        try_builder!(req, |b| {
            b.set_timeout_ms(request_timeout_ms as u64);
            HEISEN_STATUS_OK
        })
    }
}

/// Sets the callbacks (each may be NULL), replacing earlier ones (whose user_data is released).
/// Only before sending; INVALID_ARGUMENT after (then user_data_free is called).
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_set_callbacks(
    req: *mut heisen_fcgi_request,
    on_headers: heisen_fcgi_headers_cb,
    on_body: heisen_fcgi_data_cb,
    on_stderr: heisen_fcgi_data_cb,
    on_end: heisen_fcgi_end_cb,
    on_drain: heisen_fcgi_drain_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let r = try_ref!(req);
        let old = {
            let mut st = r.st.borrow_mut();
            if st.sent {
                return HEISEN_STATUS_INVALID_ARGUMENT;
            }
            st.cbs.replace(Callbacks { on_headers, on_body, on_stderr, on_end, on_drain, ud })
        };
        drop(old); // outside the borrow: its user_data_free may call back in
        HEISEN_STATUS_OK
    }
}

fn header_at(head: &CgiHead, index: usize) -> Option<(&[u8], &[u8])> {
    head.headers.get(index).map(|(n, v)| (&n[..], &v[..]))
}

/// Number of response headers (from on_headers until on_end returns).
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_header_count(
    req: *mut heisen_fcgi_request,
    count_out: *mut usize,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(req);
        let out = try_out!(count_out);
        match &r.st.borrow().head {
            Some(h) => put!(out, h.headers.len()),
            None => HEISEN_STATUS_INVALID_ARGUMENT,
        }
    }
}

/// Response header `index` (not NUL-terminated; valid until on_end returns).
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_header(
    req: *mut heisen_fcgi_request,
    index: usize,
    name_out: *mut *const u8,
    name_len_out: *mut usize,
    value_out: *mut *const u8,
    value_len_out: *mut usize,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(req);
        let (no, nlo, vo, vlo) = (try_out!(name_out), try_out!(name_len_out), try_out!(value_out), try_out!(value_len_out));
        let st = r.st.borrow();
        let Some((n, v)) = st.head.as_ref().and_then(|h| header_at(h, index)) else {
            return HEISEN_STATUS_INVALID_ARGUMENT;
        };
        put!(no, n.as_ptr());
        put!(nlo, n.len());
        put!(vo, v.as_ptr());
        put!(vlo, v.len())
    }
}

/// END_REQUEST's application status (0 if none arrived). In on_end.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_app_status(
    req: *mut heisen_fcgi_request,
    app_status_out: *mut u32,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(req);
        let out = try_out!(app_status_out);
        match &r.st.borrow().end {
            Some(e) => put!(out, e.app_status),
            None => HEISEN_STATUS_INVALID_ARGUMENT,
        }
    }
}

/// END_REQUEST's protocol status (0 complete, 1 cannot multiplex, 2 overloaded, 3 unknown
/// role), or -1 when no END_REQUEST arrived. In on_end.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_protocol_status(
    req: *mut heisen_fcgi_request,
    protocol_status_out: *mut i32,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(req);
        let out = try_out!(protocol_status_out);
        match &r.st.borrow().end {
            Some(e) => put!(out, e.protocol_status.map_or(-1, |p| p.to_u8() as i32)),
            None => HEISEN_STATUS_INVALID_ARGUMENT,
        }
    }
}

/// Human-readable cause of the outcome (in on_end; "" before). Never NULL.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_reason(req: *mut heisen_fcgi_request) -> *const c_char {
    ffi_guard! {
        if req.is_null() {
            return c"".as_ptr();
        }
        // SAFETY: a non-NULL pointer is a live request (the C contract).
        let r = unsafe { &*req };
        match &r.st.borrow().reason {
            // The CString lives in the request until it is freed, after on_end returns.
            Some(s) => s.as_ptr(),
            None => c"".as_ptr(),
        }
    }
}

/// Takes ownership of `req` from the caller on every path, and sends it.
fn take_request(req: *mut heisen_fcgi_request) -> Result<Box<heisen_fcgi_request>, heisen_status> {
    if req.is_null() {
        return Err(HEISEN_STATUS_NULL_ARGUMENT);
    }
    // SAFETY: a non-NULL pointer is a live request (the C contract).
    if unsafe { &*req }.st.borrow().sent {
        return Err(HEISEN_STATUS_INVALID_ARGUMENT); // owned by the library already
    }
    // SAFETY: a request never sent is owned by the caller, who hands it to us now.
    Ok(unsafe { Box::from_raw(req) })
}

/// Sends `req`, which the library owns from now on, on every path. OK: on_end will be called
/// exactly once, never inside this call. Error: the callbacks are never called,
/// user_data_free is called and the request is freed.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_send(
    client: *mut heisen_fcgi_client,
    req: *mut heisen_fcgi_request,
) -> heisen_status {
    ffi_guard! {
        let boxed = match take_request(req) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let c = try_ref!(client);
        let (builder, cbs) = {
            let mut st = boxed.st.borrow_mut();
            st.sent = true;
            (st.builder.take().unwrap_or_default(), st.cbs.take().unwrap_or_default())
        };
        let handler = CHandler { req: boxed, cbs };
        let reqp = handler.ptr();
        match c.c.send(builder, Box::new(handler)) {
            Ok(h) => {
                // SAFETY: the handler (owner of `reqp`) lives in the client until on_end, which
                // never runs inside `send`.
                unsafe { &*reqp }.st.borrow_mut().handle = Some(h);
                HEISEN_STATUS_OK
            }
            Err(e) => client_status(e),
        }
    }
}

fn with_handle(
    req: *mut heisen_fcgi_request,
    f: impl FnOnce(&RequestHandle) -> Result<heisen_status, ClientError>,
) -> heisen_status {
    let r = try_ref!(req);
    let handle = r.st.borrow().handle.clone();
    match handle {
        // The borrow is released: the client may call back into this request.
        Some(h) => f(&h).unwrap_or_else(client_status),
        None => HEISEN_STATUS_INVALID_ARGUMENT,
    }
}

/// Pushes streamed body bytes (after send, with heisen_fcgi_request_set_streaming_body). OK, or
/// BUSY when accepted but buffered above the high-water mark: wait for on_drain.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_write(
    req: *mut heisen_fcgi_request,
    data: *const u8,
    len: usize,
) -> heisen_status {
    ffi_guard! {
        let d = try_bytes!(data, len);
        with_handle(req, |h| {
            h.write(d).map(|w| match w {
                WriteStatus::Ok => HEISEN_STATUS_OK,
                WriteStatus::Busy => HEISEN_STATUS_BUSY,
            })
        })
    }
}

/// Ends the streamed body.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_finish(req: *mut heisen_fcgi_request) -> heisen_status {
    ffi_guard! { with_handle(req, |h| h.finish().map(|()| HEISEN_STATUS_OK)) }
}

/// Resumes delivery after a callback returned 1 (pause).
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_resume(req: *mut heisen_fcgi_request) -> heisen_status {
    ffi_guard! { with_handle(req, |h| h.resume().map(|()| HEISEN_STATUS_OK)) }
}

/// Aborts the request; on_end(HEISEN_STATUS_ABORTED) runs later, not inside this call.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_abort(req: *mut heisen_fcgi_request) -> heisen_status {
    ffi_guard! { with_handle(req, |h| h.abort().map(|()| HEISEN_STATUS_OK)) }
}

/// Frees a request that was never sent (its user_data_free is called). A sent request belongs
/// to the library: this is then a no-op. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_fcgi_request_free(req: *mut heisen_fcgi_request) {
    ffi_guard! {
        if let Ok(b) = take_request(req) {
            drop(b);
        }
    }
}

// ------------------------------------------------------------------------------------ fetch

/// A whole response from heisen_fcgi_client_fetch.
pub struct heisen_fcgi_response {
    r: Response,
    reason: CString,
}

/// Sends `req` (taken on every path) and runs the client's reactor until it ends. Returns OK
/// when the exchange ran, whatever its outcome (see heisen_fcgi_response_outcome); REENTRANT
/// from inside a callback of the same reactor. The request's callbacks are not called (their
/// user_data_free is).
#[no_mangle]
pub extern "C" fn heisen_fcgi_client_fetch(
    client: *mut heisen_fcgi_client,
    req: *mut heisen_fcgi_request,
    response_out: *mut *mut heisen_fcgi_response,
) -> heisen_status {
    ffi_guard! {
        let boxed = match take_request(req) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let c = try_ref!(client);
        let out = try_out!(response_out);
        let builder = boxed.st.borrow_mut().builder.take().unwrap_or_default();
        drop(boxed);
        match c.c.fetch(builder) {
            Ok(r) => {
                let reason = cstring(&r.reason);
                put!(out, Box::into_raw(Box::new(heisen_fcgi_response { r, reason })))
            }
            Err(e) => client_status(e),
        }
    }
}

/// The outcome: HEISEN_STATUS_OK (complete), TRUNCATED, BAD_GATEWAY, TIMEOUT, OVERLOADED,
/// CANT_MPX_CONN, UNKNOWN_ROLE or ABORTED.
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_outcome(r: *const heisen_fcgi_response, outcome_out: *mut i32) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(r);
        let out = try_out!(outcome_out);
        put!(out, outcome_status(r.r.outcome()) as i32)
    }
}

/// HTTP status from the CGI headers (0 when none arrived, or in raw mode).
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_status(
    r: *const heisen_fcgi_response,
    http_status_out: *mut i32,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(r);
        let out = try_out!(http_status_out);
        put!(out, r.r.status as i32)
    }
}

/// END_REQUEST's application status (0 when none arrived).
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_app_status(
    r: *const heisen_fcgi_response,
    app_status_out: *mut u32,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(r);
        let out = try_out!(app_status_out);
        put!(out, r.r.app_status)
    }
}

/// Number of response headers.
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_header_count(
    r: *const heisen_fcgi_response,
    count_out: *mut usize,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(r);
        let out = try_out!(count_out);
        put!(out, r.r.headers.len())
    }
}

/// Response header `index` (not NUL-terminated; valid until the response is freed).
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_header(
    r: *const heisen_fcgi_response,
    index: usize,
    name_out: *mut *const u8,
    name_len_out: *mut usize,
    value_out: *mut *const u8,
    value_len_out: *mut usize,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(r);
        let (no, nlo, vo, vlo) = (try_out!(name_out), try_out!(name_len_out), try_out!(value_out), try_out!(value_len_out));
        let Some((n, v)) = r.r.headers.get(index) else { return HEISEN_STATUS_INVALID_ARGUMENT };
        put!(no, n.as_ptr());
        put!(nlo, n.len());
        put!(vo, v.as_ptr());
        put!(vlo, v.len())
    }
}

/// The response body (valid until the response is freed; not NUL-terminated).
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_body(
    r: *const heisen_fcgi_response,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(r);
        let (d, l) = (try_out!(data_out), try_out!(len_out));
        put!(d, r.r.body.as_ptr());
        put!(l, r.r.body.len())
    }
}

/// The STDERR stream (valid until the response is freed; not NUL-terminated; untrusted).
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_stderr(
    r: *const heisen_fcgi_response,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> heisen_status {
    ffi_guard! {
        let r = try_ref!(r);
        let (d, l) = (try_out!(data_out), try_out!(len_out));
        put!(d, r.r.stderr.as_ptr());
        put!(l, r.r.stderr.len())
    }
}

/// Human-readable cause of the outcome. Never NULL.
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_reason(r: *const heisen_fcgi_response) -> *const c_char {
    ffi_guard! {
        if r.is_null() {
            return c"".as_ptr();
        }
        // SAFETY: a non-NULL pointer is a live response (the C contract).
        unsafe { &*r }.reason.as_ptr()
    }
}

/// Frees a response. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_fcgi_response_free(r: *mut heisen_fcgi_response) {
    ffi_guard! {
        if !r.is_null() {
            // SAFETY: a non-NULL pointer is a response from heisen_fcgi_client_fetch, freed once.
            drop(unsafe { Box::from_raw(r) });
        }
    }
}

// ------------------------------------------------------------------------------------ GET_VALUES

/// The answer to heisen_fcgi_client_get_values: `values` is "NAME=VALUE\n" per variable the
/// backend answered (status OK), or "" (status BAD_GATEWAY, TIMEOUT or ABORTED). Valid during
/// the call.
pub type heisen_fcgi_values_cb =
    Option<unsafe extern "C" fn(status: heisen_status, values: *const c_char, user_data: *mut c_void)>;

/// Asks backend `backend_index` (config order) for FCGI_MAX_CONNS, FCGI_MAX_REQS and
/// FCGI_MPXS_CONNS on a connection of its own. `cb` runs once, never inside this call.
#[no_mangle]
pub extern "C" fn heisen_fcgi_client_get_values(
    client: *mut heisen_fcgi_client,
    backend_index: usize,
    cb: heisen_fcgi_values_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let c = try_ref!(client);
        let Some(cb) = cb else { return HEISEN_STATUS_NULL_ARGUMENT };
        let f = Box::new(move |res: Result<Vec<crate::fcgi::nv::Pair>, End>| {
            let (status, text) = match res {
                Ok(pairs) => {
                    let mut t = String::new();
                    for (n, v) in pairs {
                        t.push_str(&String::from_utf8_lossy(&n));
                        t.push('=');
                        t.push_str(&String::from_utf8_lossy(&v));
                        t.push('\n');
                    }
                    (HEISEN_STATUS_OK, t)
                }
                Err(e) => (outcome_status(e.outcome), String::new()),
            };
            let text = cstring(&text);
            // SAFETY: the caller registered `cb` with `ud`; `text` is valid during the call.
            unsafe { cb(status, text.as_ptr(), ud.ptr()) };
        });
        match c.c.get_values(backend_index, f) {
            Ok(()) => HEISEN_STATUS_OK,
            Err(e) => client_status(e),
        }
    }
}
