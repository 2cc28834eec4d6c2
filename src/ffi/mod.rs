//! The C ABI: every `heisen_*` symbol of `libheisen.so`, and the only place with raw pointers.
//!
//! Conventions (also stated at the top of `include/heisen.h`):
//! * Fallible functions return `heisen_status`; out-parameters are written only on
//!   `HEISEN_STATUS_OK`; a NULL handle or pointer gives `HEISEN_STATUS_NULL_ARGUMENT`.
//! * `*_free(NULL)` is a no-op. A callback may free its own handle or the reactor: memory is
//!   released after the callback returns, and a freed handle gets no more callbacks.
//! * Every registration that takes `user_data` also takes an optional `user_data_free`,
//!   called exactly once when the library is done with `user_data`, on every path (also when
//!   the registering call fails).
//! * No panic crosses the boundary: each entry point runs under [`guard::ffi_guard`] and turns
//!   a panic into `HEISEN_STATUS_PANIC` (or NULL / 0 for functions without a status).
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

#[macro_use]
mod guard;
mod status;
mod userdata;
mod version;
mod reactor;
mod stream;
mod fcgi;

pub use reactor::*;
pub use status::*;
pub use stream::*;
pub use fcgi::*;
pub use userdata::heisen_free_fn;
pub use version::*;
