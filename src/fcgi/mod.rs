//! FastCGI 1.0 client: protocol codec, CGI response parsing, and a pooled client on the reactor.

pub mod cgi;
pub mod nv;
pub mod params;
pub mod parser;
pub mod proto;
pub mod writer;

#[cfg(test)]
mod testutil;
