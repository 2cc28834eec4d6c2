//! FastCGI 1.0 client: protocol codec, CGI response parsing, and a pooled client on the reactor.
//!
//! * Codec: [`proto`] (constants, header), [`nv`] (name-value pairs), [`parser`] (incremental
//!   parser of what applications send), [`writer`] (record encoders), [`cgi`] (CGI response
//!   headers), [`params`] (CGI variables from an HTTP request).
//! * Client: [`Client`] with its [`Config`]; a [`Request`] is sent with a [`ResponseHandler`]
//!   and ends with exactly one [`Outcome`].
//!
//! ```no_run
//! use heisen::fcgi::{Client, Config, Outcome, Request};
//! use heisen::reactor::Reactor;
//!
//! let reactor = Reactor::new()?;
//! let mut config = Config::new();
//! config.add_backend("unix:/run/php/php8.2-fpm.sock")?;
//! config.max_conns = 5; // php-fpm's pm.max_children: it does not report it itself
//! let client = Client::new(&reactor, config).expect("a backend is configured");
//!
//! let mut req = Request::new();
//! req.params_mut()
//!     .set_cgi("GET", "/index.php?x=1", "HTTP/1.1", "/var/www", "/index.php", None)
//!     .expect("valid request line");
//! req.params_mut().add_http_header(b"Host", b"example.org").expect("small header");
//!
//! // Synchronous; `client.send(req, handler)` is the asynchronous form.
//! let resp = client.fetch(req).expect("not inside a callback");
//! match resp.outcome() {
//!     Outcome::Complete => println!("{} {} bytes", resp.status, resp.body.len()),
//!     other => eprintln!("{other}: {}", resp.reason),
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod cgi;
mod idmap;
mod client;
mod config;
pub mod nv;
pub mod params;
pub mod parser;
mod pool;
pub mod proto;
mod request;
pub mod writer;

pub use cgi::CgiHead;
pub use client::{Client, ClientError, RequestHandle, ValuesCallback, WriteStatus};
pub use config::{Balance, Config, Multiplex, Stat, Stats};
pub use params::Params;
pub use proto::{ProtocolStatus, Role};
pub use request::{End, Next, Outcome, Request, Response, ResponseHandler};

#[cfg(test)]
mod testutil;
