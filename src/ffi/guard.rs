//! The panic guard and argument checks used by every entry point.

use super::status::heisen_status;
use std::os::raw::c_char;

/// What a function returns when a panic was caught inside it.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for heisen_status {
    fn on_panic() -> Self {
        heisen_status::HEISEN_STATUS_PANIC
    }
}
impl OnPanic for () {
    fn on_panic() {}
}
impl OnPanic for u32 {
    fn on_panic() -> Self {
        0
    }
}
impl OnPanic for i32 {
    fn on_panic() -> Self {
        -1
    }
}
impl OnPanic for *const c_char {
    fn on_panic() -> Self {
        c"internal error (panic)".as_ptr()
    }
}

/// Run the body, turning a panic into [`OnPanic::on_panic`].
macro_rules! ffi_guard {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(_) => $crate::ffi::guard::OnPanic::on_panic(),
        }
    };
}

/// `&T` from a handle pointer, or return `HEISEN_STATUS_NULL_ARGUMENT`.
macro_rules! try_ref {
    ($p:expr) => {{
        let p = $p;
        if p.is_null() {
            return $crate::ffi::status::heisen_status::HEISEN_STATUS_NULL_ARGUMENT;
        }
        // SAFETY: non-NULL handle pointers passed by the caller point to live handles this
        // library created (the C contract: no use after free).
        unsafe { &*p }
    }};
}

/// Check an out-pointer, or return `HEISEN_STATUS_NULL_ARGUMENT`.
macro_rules! try_out {
    ($p:expr) => {{
        let p = $p;
        if p.is_null() {
            return $crate::ffi::status::heisen_status::HEISEN_STATUS_NULL_ARGUMENT;
        }
        p
    }};
}

/// Write an out-parameter that [`try_out!`] checked.
macro_rules! put {
    ($p:expr, $v:expr) => {{
        // SAFETY: the pointer was checked non-NULL and the caller passes writable storage.
        unsafe { $p.write($v) };
        $crate::ffi::status::heisen_status::HEISEN_STATUS_OK
    }};
}

/// A `&str` from a C string argument, or return NULL_ARGUMENT / INVALID_ARGUMENT.
macro_rules! try_str {
    ($p:expr) => {{
        let p: *const ::std::os::raw::c_char = $p;
        if p.is_null() {
            return $crate::ffi::status::heisen_status::HEISEN_STATUS_NULL_ARGUMENT;
        }
        // SAFETY: the caller passes a NUL-terminated string valid for the duration of the call.
        match unsafe { ::std::ffi::CStr::from_ptr(p) }.to_str() {
            Ok(s) => s,
            Err(_) => return $crate::ffi::status::heisen_status::HEISEN_STATUS_INVALID_ARGUMENT,
        }
    }};
}

/// A byte slice from a pointer and a length (NULL allowed when the length is 0).
macro_rules! try_bytes {
    ($p:expr, $len:expr) => {{
        let p: *const u8 = $p;
        let len: usize = $len;
        if len == 0 {
            &[][..]
        } else if p.is_null() {
            return $crate::ffi::status::heisen_status::HEISEN_STATUS_NULL_ARGUMENT;
        } else {
            // SAFETY: the caller passes `len` readable bytes at `p`, valid during the call.
            unsafe { ::std::slice::from_raw_parts(p, len) }
        }
    }};
}

