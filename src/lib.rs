//! heisen: an epoll reactor whose dispatch never loses data, and a FastCGI client, with a
//! stable C ABI.
//!
//! Layers, each built only on the ones before it: [`reactor`] → [`stream`] → [`fcgi`] → `ffi`.
//! All but `ffi` are safe Rust that knows nothing of C.

pub mod reactor;
pub mod fcgi;
pub mod stream;
pub mod ffi;
mod sys;
