//! Status codes, `heisen_strerror` and `heisen_last_errno`.

use std::cell::Cell;
use std::io;
use std::os::raw::{c_char, c_int};

/// Status codes. The values are ABI: append only, never renumber.
#[repr(i32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum heisen_status {
    /// Success.
    HEISEN_STATUS_OK = 0,
    /// A required pointer argument was NULL.
    HEISEN_STATUS_NULL_ARGUMENT = 1,
    /// An argument was out of range or malformed.
    HEISEN_STATUS_INVALID_ARGUMENT = 2,
    /// An internal bug was caught at the boundary (please report it).
    HEISEN_STATUS_PANIC = 3,
    /// Called from inside one of the same reactor's callbacks where that is not allowed.
    HEISEN_STATUS_REENTRANT = 4,
    /// The handle is closed, its reactor is gone, or the request already ended.
    HEISEN_STATUS_CLOSED = 5,
    /// A system call failed: see heisen_last_errno().
    HEISEN_STATUS_IO = 6,
    /// FastCGI: the backend did not answer in time (HTTP 504).
    HEISEN_STATUS_TIMEOUT = 7,
    /// FastCGI: refused, reset, closed before any response, malformed records, headers too large (HTTP 502).
    HEISEN_STATUS_BAD_GATEWAY = 8,
    /// FastCGI: the backend is overloaded, or the request queue is full (HTTP 503).
    HEISEN_STATUS_OVERLOADED = 9,
    /// The reactor was created by another process (used after fork()).
    HEISEN_STATUS_FORKED = 10,
    /// Out of memory.
    HEISEN_STATUS_NO_MEMORY = 11,
    /// FastCGI: the response started but the backend failed before END_REQUEST.
    HEISEN_STATUS_TRUNCATED = 12,
    /// FastCGI: aborted by the caller, or the client was freed.
    HEISEN_STATUS_ABORTED = 13,
    /// FastCGI: END_REQUEST with FCGI_CANT_MPX_CONN.
    HEISEN_STATUS_CANT_MPX_CONN = 14,
    /// FastCGI: END_REQUEST with FCGI_UNKNOWN_ROLE.
    HEISEN_STATUS_UNKNOWN_ROLE = 15,
    /// The data was accepted, but the buffer is at or above its high-water mark: wait for drain.
    HEISEN_STATUS_BUSY = 16,
    /// Not supported here.
    HEISEN_STATUS_UNSUPPORTED = 17,
}

pub(crate) use heisen_status::*;

thread_local! {
    static LAST_ERRNO: Cell<i32> = const { Cell::new(0) };
}

/// Record an I/O error's errno for heisen_last_errno() and return HEISEN_STATUS_IO.
pub(crate) fn io_status(e: &io::Error) -> heisen_status {
    let errno = e.raw_os_error().unwrap_or(libc::EIO);
    LAST_ERRNO.with(|c| c.set(errno));
    match e.kind() {
        io::ErrorKind::InvalidInput => HEISEN_STATUS_INVALID_ARGUMENT,
        io::ErrorKind::OutOfMemory => HEISEN_STATUS_NO_MEMORY,
        _ => HEISEN_STATUS_IO,
    }
}

/// A static, NUL-terminated description of a status value; never NULL. Takes any integer:
/// values this version does not know give "unknown status".
#[no_mangle]
pub extern "C" fn heisen_strerror(status: i32) -> *const c_char {
    ffi_guard! {
        let s: &'static std::ffi::CStr = match status {
            0 => c"ok",
            1 => c"a required argument was NULL",
            2 => c"invalid argument",
            3 => c"internal error (panic caught at the API boundary)",
            4 => c"not allowed from inside a callback of the same reactor",
            5 => c"handle closed or reactor gone",
            6 => c"system call failed (see heisen_last_errno)",
            7 => c"gateway timeout: the backend did not answer in time",
            8 => c"bad gateway: the backend failed or sent something invalid",
            9 => c"overloaded: the backend refused the request or the queue is full",
            10 => c"used in a forked child: create reactors after fork()",
            11 => c"out of memory",
            12 => c"truncated: the backend failed after the response had started",
            13 => c"aborted",
            14 => c"the backend cannot multiplex requests on one connection",
            15 => c"the backend does not support the requested role",
            16 => c"accepted, but the buffer is above its high-water mark: wait for drain",
            17 => c"not supported",
            _ => c"unknown status",
        };
        s.as_ptr()
    }
}

/// The errno behind the last HEISEN_STATUS_IO returned on this thread (0 if none).
#[no_mangle]
pub extern "C" fn heisen_last_errno() -> c_int {
    ffi_guard! { LAST_ERRNO.with(|c| c.get()) }
}
