//! What a caller hands to the client (a [`Request`] and a [`ResponseHandler`]) and what it
//! gets back ([`End`], or a whole [`Response`] from the synchronous call).

use super::cgi::CgiHead;
use super::params::{Params, ParamsError};
use super::proto::{ProtocolStatus, Role};
use std::fmt;

/// How a request ended. Exactly one per request.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
pub enum Outcome {
    /// END_REQUEST with protocol status REQUEST_COMPLETE, every response byte delivered.
    Complete,
    /// The response had started (headers delivered) when the backend failed or closed
    /// before END_REQUEST. Never reported as complete.
    Truncated,
    /// Refused, reset or closed before any response; malformed records; bad or oversized
    /// CGI headers; END_REQUEST before the header block ended.
    BadGateway,
    /// Connect, send, read or whole-request timeout.
    Timeout,
    /// END_REQUEST with OVERLOADED, or the client's queue is full.
    Overloaded,
    /// END_REQUEST with CANT_MPX_CONN.
    CantMpxConn,
    /// END_REQUEST with UNKNOWN_ROLE.
    UnknownRole,
    /// Aborted by the caller, or the client was closed.
    Aborted,
}

impl Outcome {
    /// The HTTP status a gateway answers with for this outcome when the backend gave none.
    pub fn http_status(self) -> Option<u16> {
        match self {
            Outcome::Complete | Outcome::Truncated | Outcome::Aborted => None,
            Outcome::BadGateway | Outcome::CantMpxConn | Outcome::UnknownRole => Some(502),
            Outcome::Overloaded => Some(503),
            Outcome::Timeout => Some(504),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Complete => "complete",
            Outcome::Truncated => "truncated",
            Outcome::BadGateway => "bad gateway",
            Outcome::Timeout => "gateway timeout",
            Outcome::Overloaded => "overloaded",
            Outcome::CantMpxConn => "backend cannot multiplex",
            Outcome::UnknownRole => "backend does not know the role",
            Outcome::Aborted => "aborted",
        })
    }
}

/// The end of a request, as given to [`ResponseHandler::on_end`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct End {
    pub outcome: Outcome,
    /// END_REQUEST's application status (0 when no END_REQUEST arrived).
    pub app_status: u32,
    /// END_REQUEST's protocol status, `None` when no END_REQUEST arrived.
    pub protocol_status: Option<ProtocolStatus>,
    /// Human-readable cause, e.g. "backend closed the connection before responding".
    pub reason: String,
}

/// What a data callback wants next.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum Next {
    Continue,
    /// Stop delivering until [`super::RequestHandle::resume`]; the connection stops being
    /// read once more than the configured high-water mark is buffered.
    Pause,
}

/// Callbacks of one request. They are called on the reactor thread, never from inside a
/// client method, and never while the client holds internal borrows, so they may call any
/// client or request method (send more requests, abort, close the client).
pub trait ResponseHandler: 'static {
    /// The CGI header block (not in raw mode). Called at most once, before any body.
    fn on_headers(&mut self, _req: &super::RequestHandle, _head: &CgiHead) -> Next {
        Next::Continue
    }
    /// Response body bytes (all of STDOUT in raw mode). Never empty.
    fn on_body(&mut self, _req: &super::RequestHandle, _data: &[u8]) -> Next {
        Next::Continue
    }
    /// STDERR bytes, never mixed into the body. Never empty. Untrusted: escape before logging.
    fn on_stderr(&mut self, _req: &super::RequestHandle, _data: &[u8]) -> Next {
        Next::Continue
    }
    /// The streamed body may take more after a write returned `Busy`.
    fn on_drain(&mut self, _req: &super::RequestHandle) {}
    /// Exactly once, last.
    fn on_end(&mut self, req: &super::RequestHandle, end: &End);
}

/// The request body.
#[derive(Clone, Debug, Default)]
pub(crate) enum Body {
    #[default]
    Empty,
    Buffer(Vec<u8>),
    /// Pushed with `RequestHandle::write` / `finish` after sending.
    Streaming,
}

/// A request under construction. Not tied to a client until sent.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub(crate) params: Params,
    pub(crate) role: Role,
    pub(crate) body: Body,
    pub(crate) data: Option<Vec<u8>>,
    pub(crate) raw: bool,
    pub(crate) timeout_ms: Option<u64>,
}

impl Request {
    pub fn new() -> Request {
        Request::default()
    }

    /// The parameters, to add to or inspect.
    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Sets a parameter (replacing an earlier value).
    pub fn param(&mut self, name: &[u8], value: &[u8]) -> Result<&mut Request, ParamsError> {
        self.params.set(name, value)?;
        Ok(self)
    }

    pub fn set_role(&mut self, role: Role) -> &mut Request {
        self.role = role;
        self
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Sets a buffered body; sets CONTENT_LENGTH unless the caller did.
    pub fn set_body(&mut self, body: Vec<u8>) -> Result<&mut Request, ParamsError> {
        self.params.set_default(b"CONTENT_LENGTH", body.len().to_string().as_bytes())?;
        self.body = Body::Buffer(body);
        Ok(self)
    }

    /// The body will be pushed after sending (`RequestHandle::write`, `finish`).
    /// The caller sets CONTENT_LENGTH (php-fpm needs it to read a body).
    pub fn set_streaming_body(&mut self, enabled: bool) -> &mut Request {
        self.body = if enabled { Body::Streaming } else { Body::Empty };
        self
    }

    pub fn is_streaming(&self) -> bool {
        matches!(self.body, Body::Streaming)
    }

    /// The FILTER role's DATA stream; sets FCGI_DATA_LENGTH unless the caller did.
    pub fn set_data(&mut self, data: Vec<u8>) -> Result<&mut Request, ParamsError> {
        self.params.set_default(b"FCGI_DATA_LENGTH", data.len().to_string().as_bytes())?;
        self.data = Some(data);
        Ok(self)
    }

    /// Raw mode: STDOUT goes to `on_body` unparsed, no `on_headers`.
    pub fn set_raw(&mut self, raw: bool) -> &mut Request {
        self.raw = raw;
        self
    }

    /// Whole-request timeout (including queue wait), overriding the client's; 0 = none.
    pub fn set_timeout_ms(&mut self, ms: u64) -> &mut Request {
        self.timeout_ms = Some(ms);
        self
    }
}

/// A whole exchange, from the synchronous [`super::Client::fetch`].
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub outcome: Option<Outcome>,
    /// HTTP status from the CGI headers (0 if none arrived or in raw mode).
    pub status: u16,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: Option<ProtocolStatus>,
    pub reason: String,
}

impl Response {
    /// The outcome (always set once `fetch` returned).
    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Aborted)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| &v[..])
    }
}
