//! Reactor, fd watchers, timers and wakers.

use super::status::*;
use super::userdata::{heisen_free_fn, SendUserData, UserData};
use crate::reactor::{Action, Flow, Reactor, RunError, RunMode, TimerId, WatchId, READ, WRITE};
use std::cell::Cell;
use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A single-threaded event loop. Everything registered on it belongs to the thread that runs it.
pub struct heisen_reactor {
    pub(crate) r: Reactor,
}

/// Run until heisen_reactor_stop() or until nothing is left to watch.
pub const HEISEN_RUN_DEFAULT: i32 = 0;
/// Run one iteration, blocking until something happens.
pub const HEISEN_RUN_ONCE: i32 = 1;
/// Run one iteration without blocking.
pub const HEISEN_RUN_NOWAIT: i32 = 2;

/// Counter: epoll events received.
pub const HEISEN_COUNTER_EVENTS: i32 = 0;
/// Counter: callbacks invoked for fd events.
pub const HEISEN_COUNTER_DISPATCHES: i32 = 1;
/// Counter: events where readable data arrived together with a hang-up or error.
pub const HEISEN_COUNTER_READ_WITH_HUP: i32 = 2;
/// Counter: bytes streams read after a hang-up or error had been reported.
pub const HEISEN_COUNTER_BYTES_AFTER_HUP: i32 = 3;
/// Counter: loop iterations.
pub const HEISEN_COUNTER_ITERATIONS: i32 = 4;
/// Counter: timer callbacks run.
pub const HEISEN_COUNTER_TIMERS_FIRED: i32 = 5;
/// Counter: posted callbacks run.
pub const HEISEN_COUNTER_POSTS_RUN: i32 = 6;
/// Counter: hang-ups held back because a read callback left bytes in the socket.
pub const HEISEN_COUNTER_HUPS_HELD: i32 = 7;

pub(crate) fn reactor_status(e: RunError) -> heisen_status {
    match e {
        RunError::Reentrant => HEISEN_STATUS_REENTRANT,
        RunError::Forked => HEISEN_STATUS_FORKED,
        RunError::Closed => HEISEN_STATUS_CLOSED,
        RunError::Io(e) => io_status(&e),
    }
}

/// Create a reactor (its own epoll instance).
#[no_mangle]
pub extern "C" fn heisen_reactor_new(reactor_out: *mut *mut heisen_reactor) -> heisen_status {
    ffi_guard! {
        let out = try_out!(reactor_out);
        match Reactor::new() {
            Ok(r) => put!(out, Box::into_raw(Box::new(heisen_reactor { r }))),
            Err(e) => io_status(&e),
        }
    }
}

/// Free a reactor: every watch, timer, stream, listener and FastCGI client still on it is closed
/// (their user_data_free functions run) and their handles then only return HEISEN_STATUS_CLOSED
/// until you free them. Inside one of its callbacks the reactor stops and is released when
/// heisen_reactor_run() returns. In a forked child, the parent's registrations are left alone.
/// NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_reactor_free(reactor: *mut heisen_reactor) {
    ffi_guard! {
        if reactor.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is a reactor from heisen_reactor_new, freed once.
        let handle = unsafe { Box::from_raw(reactor) };
        handle.r.close();
    }
}

/// Run the loop. `mode`: HEISEN_RUN_DEFAULT, HEISEN_RUN_ONCE or HEISEN_RUN_NOWAIT.
/// Returns HEISEN_STATUS_REENTRANT from inside one of this reactor's callbacks, and
/// HEISEN_STATUS_FORKED in a process forked after the reactor was created.
#[no_mangle]
pub extern "C" fn heisen_reactor_run(reactor: *mut heisen_reactor, mode: i32) -> heisen_status {
    ffi_guard! {
        let h = try_ref!(reactor);
        let mode = match mode {
            HEISEN_RUN_DEFAULT => RunMode::Default,
            HEISEN_RUN_ONCE => RunMode::Once,
            HEISEN_RUN_NOWAIT => RunMode::NoWait,
            _ => return HEISEN_STATUS_INVALID_ARGUMENT,
        };
        // Run on a clone: a callback may free the handle while the loop runs.
        let r = h.r.clone();
        match r.run(mode) {
            Ok(()) => HEISEN_STATUS_OK,
            Err(e) => reactor_status(e),
        }
    }
}

/// Make heisen_reactor_run() return after the current callback. Safe inside callbacks.
#[no_mangle]
pub extern "C" fn heisen_reactor_stop(reactor: *mut heisen_reactor) -> heisen_status {
    ffi_guard! {
        try_ref!(reactor).r.stop();
        HEISEN_STATUS_OK
    }
}

/// The epoll descriptor, to drive heisen from another loop: when it is readable (or the
/// timeout from heisen_reactor_backend_timeout() expires), call
/// heisen_reactor_run(reactor, HEISEN_RUN_NOWAIT).
#[no_mangle]
pub extern "C" fn heisen_reactor_backend_fd(reactor: *mut heisen_reactor, fd_out: *mut c_int) -> heisen_status {
    ffi_guard! {
        let h = try_ref!(reactor);
        let out = try_out!(fd_out);
        if h.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        put!(out, h.r.backend_fd())
    }
}

/// Milliseconds until the reactor must run again: -1 = no timer pending, 0 = work is ready now.
#[no_mangle]
pub extern "C" fn heisen_reactor_backend_timeout(reactor: *mut heisen_reactor, ms_out: *mut i32) -> heisen_status {
    ffi_guard! {
        let h = try_ref!(reactor);
        let out = try_out!(ms_out);
        let ms = match h.r.backend_timeout() {
            None => -1,
            Some(ms) => ms.min(i32::MAX as u64) as i32,
        };
        put!(out, ms)
    }
}

/// Monotonic milliseconds since the reactor was created (cached per loop iteration).
#[no_mangle]
pub extern "C" fn heisen_reactor_now_ms(reactor: *mut heisen_reactor, ms_out: *mut u64) -> heisen_status {
    ffi_guard! {
        let h = try_ref!(reactor);
        let out = try_out!(ms_out);
        put!(out, h.r.now_ms())
    }
}

/// Read a counter (HEISEN_COUNTER_*).
#[no_mangle]
pub extern "C" fn heisen_reactor_counter(reactor: *mut heisen_reactor, which: i32, value_out: *mut u64) -> heisen_status {
    ffi_guard! {
        let h = try_ref!(reactor);
        let out = try_out!(value_out);
        let c = h.r.counters();
        let v = match which {
            HEISEN_COUNTER_EVENTS => c.events,
            HEISEN_COUNTER_DISPATCHES => c.dispatches,
            HEISEN_COUNTER_READ_WITH_HUP => c.read_with_hup,
            HEISEN_COUNTER_BYTES_AFTER_HUP => c.bytes_after_hup,
            HEISEN_COUNTER_ITERATIONS => c.iterations,
            HEISEN_COUNTER_TIMERS_FIRED => c.timers_fired,
            HEISEN_COUNTER_POSTS_RUN => c.posts_run,
            HEISEN_COUNTER_HUPS_HELD => c.hups_held,
            _ => return HEISEN_STATUS_INVALID_ARGUMENT,
        };
        put!(out, v)
    }
}

/// Receives one line per epoll event: its readiness flags and the dispatch decided for it.
pub type heisen_trace_cb = Option<unsafe extern "C" fn(line: *const c_char, user_data: *mut c_void)>;

/// Install a trace callback (NULL cb removes it). HEISEN_TRACE=1 in the environment prints the
/// same lines to stderr for every reactor, without recompiling.
#[no_mangle]
pub extern "C" fn heisen_reactor_set_trace(
    reactor: *mut heisen_reactor,
    cb: heisen_trace_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let h = try_ref!(reactor);
        match cb {
            None => h.r.set_trace(None),
            Some(cb) => h.r.set_trace(Some(Box::new(move |line: &str| {
                let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the caller registered cb for this reactor; `c` outlives the call.
                unsafe { cb(c.as_ptr(), ud.ptr()) };
            }))),
        }
        HEISEN_STATUS_OK
    }
}

// ------------------------------------------------------------------------------------ watches

/// An fd registration on a reactor.
pub struct heisen_watch {
    r: Reactor,
    id: Cell<Option<WatchId>>,
}

/// Interest / event: readable.
pub const HEISEN_EV_READ: u32 = 1;
/// Interest / event: writable.
pub const HEISEN_EV_WRITE: u32 = 2;
/// Event: the peer hung up. Delivered once, after reads were drained.
pub const HEISEN_EV_HUP: u32 = 4;
/// Event: socket error (read it with getsockopt(SO_ERROR)). Delivered once, after reads were drained.
pub const HEISEN_EV_ERROR: u32 = 8;
/// Watch callback return: drained (read or wrote until EAGAIN), or nothing more wanted.
pub const HEISEN_IO_DONE: i32 = 0;
/// Watch callback return: did not drain, call again on the next loop iteration.
pub const HEISEN_IO_AGAIN: i32 = 1;

/// Called with exactly one HEISEN_EV_* bit per call. For one epoll event the calls come in the
/// order READ, WRITE, HUP, ERROR, and HUP/ERROR only once a READ call has returned
/// HEISEN_IO_DONE with the socket empty: heisen checks FIONREAD and reads again first if bytes
/// are left. epoll runs edge-triggered: for READ and WRITE, return HEISEN_IO_DONE only after
/// reading/writing until EAGAIN (or when you want nothing more); return HEISEN_IO_AGAIN to be
/// called again on the next iteration. The return value of HUP/ERROR calls is ignored.
pub type heisen_io_cb =
    Option<unsafe extern "C" fn(watch: *mut heisen_watch, fd: c_int, events: u32, user_data: *mut c_void) -> i32>;

fn interest_of(ev: u32) -> Option<u32> {
    if ev & !(HEISEN_EV_READ | HEISEN_EV_WRITE) != 0 {
        return None;
    }
    let mut i = 0;
    if ev & HEISEN_EV_READ != 0 {
        i |= READ;
    }
    if ev & HEISEN_EV_WRITE != 0 {
        i |= WRITE;
    }
    Some(i)
}

/// Watch `fd` for `interest` (HEISEN_EV_READ | HEISEN_EV_WRITE; 0 = hang-up and error only,
/// for back-pressure: then HUP is reported for a full hang-up, while a half-close waits until
/// reads are enabled again and drained). The fd stays yours: free the watch before closing it.
#[no_mangle]
pub extern "C" fn heisen_watch_new(
    reactor: *mut heisen_reactor,
    fd: c_int,
    interest: u32,
    cb: heisen_io_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
    watch_out: *mut *mut heisen_watch,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let h = try_ref!(reactor);
        let out = try_out!(watch_out);
        let Some(cb) = cb else { return HEISEN_STATUS_NULL_ARGUMENT };
        let Some(interest) = interest_of(interest) else { return HEISEN_STATUS_INVALID_ARGUMENT };
        if fd < 0 {
            return HEISEN_STATUS_INVALID_ARGUMENT;
        }
        if h.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        let handle = Box::into_raw(Box::new(heisen_watch { r: h.r.clone(), id: Cell::new(None) }));
        let hp = handle as usize;
        let f = Box::new(move |_: &Reactor, _: WatchId, action: Action| {
            let ev = match action {
                Action::Read => HEISEN_EV_READ,
                Action::Write => HEISEN_EV_WRITE,
                Action::Hup => HEISEN_EV_HUP,
                Action::Error => HEISEN_EV_ERROR,
            };
            // SAFETY: the watch is alive while the reactor calls it (freeing it unregisters it).
            let rc = unsafe { cb(hp as *mut heisen_watch, fd, ev, ud.ptr()) };
            if rc == HEISEN_IO_AGAIN { Flow::Again } else { Flow::Done }
        });
        match h.r.watch(fd, interest, f) {
            Ok(id) => {
                // SAFETY: `handle` was just created by Box::into_raw above.
                unsafe { (*handle).id.set(Some(id)) };
                put!(out, handle)
            }
            Err(e) => {
                // SAFETY: `handle` was created above and never shared.
                drop(unsafe { Box::from_raw(handle) });
                io_status(&e)
            }
        }
    }
}

/// Change the interest (HEISEN_EV_READ | HEISEN_EV_WRITE, or 0). Costs an epoll_ctl only when
/// write interest changes; enabling reads re-delivers what arrived while they were off.
#[no_mangle]
pub extern "C" fn heisen_watch_set_interest(watch: *mut heisen_watch, interest: u32) -> heisen_status {
    ffi_guard! {
        let w = try_ref!(watch);
        let Some(interest) = interest_of(interest) else { return HEISEN_STATUS_INVALID_ARGUMENT };
        let Some(id) = w.id.get() else { return HEISEN_STATUS_CLOSED };
        if !w.r.is_watching(id) {
            return HEISEN_STATUS_CLOSED;
        }
        match w.r.set_interest(id, interest) {
            Ok(()) => HEISEN_STATUS_OK,
            Err(e) => io_status(&e),
        }
    }
}

/// Unregister and free the watch (the fd is not closed). Safe inside its own callback: no
/// further events are delivered; user_data_free runs after the callback returns. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_watch_free(watch: *mut heisen_watch) {
    ffi_guard! {
        if watch.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is a watch from heisen_watch_new, freed once.
        let w = unsafe { Box::from_raw(watch) };
        if let Some(id) = w.id.take() {
            w.r.unwatch(id);
        }
    }
}

// ------------------------------------------------------------------------------------ timers

/// A one-shot or repeating timer.
pub struct heisen_timer {
    r: Reactor,
    id: Cell<Option<TimerId>>,
}

/// Timer callback.
pub type heisen_timer_cb = Option<unsafe extern "C" fn(timer: *mut heisen_timer, user_data: *mut c_void)>;

/// Create a stopped timer.
#[no_mangle]
pub extern "C" fn heisen_timer_new(
    reactor: *mut heisen_reactor,
    cb: heisen_timer_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
    timer_out: *mut *mut heisen_timer,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let h = try_ref!(reactor);
        let out = try_out!(timer_out);
        let Some(cb) = cb else { return HEISEN_STATUS_NULL_ARGUMENT };
        if h.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        let handle = Box::into_raw(Box::new(heisen_timer { r: h.r.clone(), id: Cell::new(None) }));
        let hp = handle as usize;
        let id = h.r.timer(Box::new(move |_, _| {
            // SAFETY: the timer handle is alive while its callback can run (freeing removes it).
            unsafe { cb(hp as *mut heisen_timer, ud.ptr()) }
        }));
        // SAFETY: `handle` was just created by Box::into_raw above.
        unsafe { (*handle).id.set(Some(id)) };
        put!(out, handle)
    }
}

/// Start or re-arm (cheap): fire after `timeout_ms`, then every `repeat_ms` (0 = once).
#[no_mangle]
pub extern "C" fn heisen_timer_start(timer: *mut heisen_timer, timeout_ms: u64, repeat_ms: u64) -> heisen_status {
    ffi_guard! {
        let t = try_ref!(timer);
        let Some(id) = t.id.get() else { return HEISEN_STATUS_CLOSED };
        if t.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        t.r.timer_start(id, timeout_ms, repeat_ms);
        HEISEN_STATUS_OK
    }
}

/// Stop the timer (it may be started again).
#[no_mangle]
pub extern "C" fn heisen_timer_stop(timer: *mut heisen_timer) -> heisen_status {
    ffi_guard! {
        let t = try_ref!(timer);
        let Some(id) = t.id.get() else { return HEISEN_STATUS_CLOSED };
        t.r.timer_stop(id);
        HEISEN_STATUS_OK
    }
}

/// Stop and free the timer. Safe inside its own callback. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_timer_free(timer: *mut heisen_timer) {
    ffi_guard! {
        if timer.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is a timer from heisen_timer_new, freed once.
        let t = unsafe { Box::from_raw(timer) };
        if let Some(id) = t.id.take() {
            t.r.timer_free(id);
        }
    }
}

// ------------------------------------------------------------------------------------ wakers

/// The thread-safe handle: wake the reactor or post callbacks to it from any thread.
pub struct heisen_waker {
    remote: crate::reactor::Remote,
    cb: heisen_wake_cb,
    ud: SendUserData,
    wake_pending: AtomicBool,
    freed: AtomicBool,
}

// SAFETY: the fields other threads touch are the Remote (Send + Sync) and atomics; `cb` and `ud`
// are only used on the reactor's thread (inside posted closures).
unsafe impl Sync for heisen_waker {}

/// Runs on the reactor's thread after heisen_waker_wake(); wakes that arrive before it runs
/// are coalesced into one call.
pub type heisen_wake_cb = Option<unsafe extern "C" fn(waker: *mut heisen_waker, user_data: *mut c_void)>;
/// A posted callback: runs once per post, on the reactor's thread, in posting order.
pub type heisen_post_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Create a waker on the reactor's thread. `cb` may be NULL (then wakes only interrupt the
/// wait). A live waker keeps heisen_reactor_run(HEISEN_RUN_DEFAULT) running, like uv_async_t.
#[no_mangle]
pub extern "C" fn heisen_waker_new(
    reactor: *mut heisen_reactor,
    cb: heisen_wake_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
    waker_out: *mut *mut heisen_waker,
) -> heisen_status {
    ffi_guard! {
        let ud = SendUserData(UserData::new(user_data, user_data_free));
        let h = try_ref!(reactor);
        let out = try_out!(waker_out);
        if h.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        h.r.hold();
        let w = Arc::new(heisen_waker {
            remote: h.r.remote(),
            cb,
            ud,
            wake_pending: AtomicBool::new(false),
            freed: AtomicBool::new(false),
        });
        put!(out, Arc::into_raw(w) as *mut heisen_waker)
    }
}

fn waker_arc(waker: *mut heisen_waker) -> Arc<heisen_waker> {
    // SAFETY: a non-NULL waker pointer comes from Arc::into_raw in heisen_waker_new and the
    // caller's reference is alive; we take one more count and return it.
    unsafe {
        Arc::increment_strong_count(waker as *const heisen_waker);
        Arc::from_raw(waker as *const heisen_waker)
    }
}

/// Wake the reactor (any thread). Wakes before the callback runs are coalesced.
#[no_mangle]
pub extern "C" fn heisen_waker_wake(waker: *mut heisen_waker) -> heisen_status {
    ffi_guard! {
        let _ = try_ref!(waker);
        let w = waker_arc(waker);
        if w.cb.is_none() {
            return match w.remote.wake() {
                Ok(()) => HEISEN_STATUS_OK,
                Err(e) => io_status(&e),
            };
        }
        if w.wake_pending.swap(true, Ordering::AcqRel) {
            return HEISEN_STATUS_OK;
        }
        let w2 = w.clone();
        let res = w.remote.post(Box::new(move |_| {
            w2.wake_pending.store(false, Ordering::Release);
            if !w2.freed.load(Ordering::Acquire) {
                if let Some(cb) = w2.cb {
                    // SAFETY: the Arc keeps the waker's memory alive during the call.
                    unsafe { cb(Arc::as_ptr(&w2) as *mut heisen_waker, w2.ud.0.ptr()) };
                }
            }
        }));
        match res {
            Ok(()) => HEISEN_STATUS_OK,
            Err(_) => HEISEN_STATUS_CLOSED,
        }
    }
}

/// Queue `cb(user_data)` to run on the reactor's thread (any thread; one run per post, in
/// order). Then user_data_free(user_data) runs. If the reactor is gone, returns
/// HEISEN_STATUS_CLOSED and only user_data_free runs; posts still queued when the reactor is
/// freed are dropped the same way.
#[no_mangle]
pub extern "C" fn heisen_waker_post(
    waker: *mut heisen_waker,
    cb: heisen_post_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
) -> heisen_status {
    ffi_guard! {
        let ud = SendUserData(UserData::new(user_data, user_data_free));
        let w = try_ref!(waker);
        let Some(cb) = cb else { return HEISEN_STATUS_NULL_ARGUMENT };
        let res = w.remote.post(Box::new(move |_| {
            let ud = ud;
            // SAFETY: the caller posted cb with this user_data for the reactor's thread.
            unsafe { cb(ud.0.ptr()) };
        }));
        match res {
            Ok(()) => HEISEN_STATUS_OK,
            Err(_) => HEISEN_STATUS_CLOSED,
        }
    }
}

/// Free the waker (any thread). A wake callback already queued does not run after this.
/// user_data_free runs on whichever thread drops the last internal reference. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_waker_free(waker: *mut heisen_waker) {
    ffi_guard! {
        if waker.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is the caller's reference from heisen_waker_new, freed once.
        let w = unsafe { Arc::from_raw(waker as *const heisen_waker) };
        w.freed.store(true, Ordering::Release);
        // Release the loop's hold on the reactor thread.
        let _ = w.remote.post(Box::new(|r| r.release()));
    }
}
