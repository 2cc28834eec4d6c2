//! `user_data` with its optional destructor.

use std::os::raw::c_void;

/// Releases `user_data` once the library no longer needs it (after the last callback).
pub type heisen_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A caller's `user_data` pointer and its destructor, called exactly once on drop.
pub(crate) struct UserData {
    ptr: *mut c_void,
    free: heisen_free_fn,
}

impl UserData {
    pub fn new(ptr: *mut c_void, free: heisen_free_fn) -> UserData {
        UserData { ptr, free }
    }

    /// The pointer. A method, not a field, so that a closure calling it captures (and keeps)
    /// the whole `UserData`: a closure that named the field would capture only the pointer and
    /// the destructor would run at once.
    pub fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(f) = self.free.take() {
            // SAFETY: the caller registered `f` to release `ptr`; it runs exactly once.
            unsafe { f(self.ptr) };
        }
    }
}

/// `UserData` that may travel to the reactor thread (for cross-thread posts). The caller who
/// posts promises the pointer may be used on the reactor's thread.
pub(crate) struct SendUserData(pub UserData);
// SAFETY: posting a callback is documented as handing `user_data` to the reactor's thread.
unsafe impl Send for SendUserData {}
