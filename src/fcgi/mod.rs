//! FastCGI 1.0 client: protocol codec, CGI response parsing, and a pooled client on the reactor.
//!
//! * Codec: [`proto`] (constants, header), [`nv`] (name-value pairs), [`parser`] (incremental
//!   parser of what applications send), [`writer`] (record encoders), [`cgi`] (CGI response
//!   headers), [`params`] (CGI variables from an HTTP request).
//! * Client: [`Client`] with its [`Config`]; a [`Request`] is sent with a [`ResponseHandler`]
//!   and ends with exactly one [`Outcome`].

pub mod cgi;
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
