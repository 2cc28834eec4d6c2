//! Versions.

use std::os::raw::c_char;

/// The ABI version: the SONAME major (libheisen.so.1). Bumped only on an incompatible change.
pub const HEISEN_ABI_VERSION: u32 = 1;

fn parse(s: &str) -> u32 {
    s.parse().unwrap_or(0)
}

/// The library version as (major << 16) | (minor << 8) | patch.
#[no_mangle]
pub extern "C" fn heisen_version() -> u32 {
    ffi_guard! {
        (parse(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
            | (parse(env!("CARGO_PKG_VERSION_MINOR")) << 8)
            | parse(env!("CARGO_PKG_VERSION_PATCH"))
    }
}

/// The library version as a static string, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn heisen_version_string() -> *const c_char {
    ffi_guard! { concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast() }
}

/// The ABI version of the loaded library; compare with HEISEN_ABI_VERSION from the header.
#[no_mangle]
pub extern "C" fn heisen_abi_version() -> u32 {
    ffi_guard! { HEISEN_ABI_VERSION }
}
