//! The C API driven by a byte string of calls: reactors, watches and streams on socketpairs and
//! pipes, peers that write, half-close, close (with or without unread data), stream writes,
//! pause/resume, shutdown, timers, wakers and posts (also from another thread), a TCP listener
//! and connects, frees in any order (also from inside callbacks, including the reactor), runs
//! with HEISEN_RUN_NOWAIT and a reentrant run from a callback.
//!
//! Input: operations are read from the front; what a callback does when it runs (free itself,
//! free another handle, stop, run reentrantly, free the reactor, ...) is read from the back.
//!
//! Checked on every input:
//! * no crash, no use after free (ASan), no leak (LeakSanitizer);
//! * every user_data_free runs exactly once, and never before the last callback
//!   (user_data is a heap object ASan watches); after heisen_reactor_free every registration on
//!   that reactor has released its user_data (wakers: at heisen_waker_free);
//! * no callback for a handle after it was freed, or after its reactor was freed; callbacks get
//!   their own handle, fd and exactly one event bit;
//! * THE GUARANTEE: on a watch or stream, bytes arrive in order, exactly as the peer wrote them;
//!   HEISEN_EV_HUP (with read interest) and HEISEN_STREAM_END come only after every byte the peer
//!   wrote was delivered; at the end every peer is shut down and every watch and stream must
//!   deliver all bytes and then its end;
//! * handles whose reactor is gone answer HEISEN_STATUS_CLOSED; run from inside a callback
//!   answers HEISEN_STATUS_REENTRANT; posts run in order, once each;
//! * no descriptor leaks: /proc/self/fd has the same entries after the input as before.
//!
//! The checks of the findings this target made (SECURITY.md, "Findings", all fixed) are on;
//! HEISEN_FUZZ_LAX (a comma list, or all) turns some off, to look past one if it comes back:
//! * `error` (F3): HEISEN_STREAM_ERROR also comes only after every byte the peer wrote (a write
//!   that fails with EPIPE must not drop the reply waiting in the socket);
//! * `close` (F1): heisen_reactor_free closes the streams on it and releases their user_data;
//! * `f6` (F6): the same for a stream whose connect failed at once (no socket);
//! * `free` (F2): no callback runs after heisen_reactor_free was called from an earlier
//!   callback of the same round;
//! * `write` (F4): heisen_stream_write on a stream that failed answers HEISEN_STATUS_CLOSED.
#![no_main]

use heisen::ffi::*;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

const MAGIC: u64 = 0x6865_6973_656e_5544;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Watch,
    Stream,
    Timer,
    Waker,
    Post,
    Trace,
    Listener,
}

/// The heap object behind every user_data pointer.
struct Tag {
    magic: u64,
    slot: usize,
}

struct Slot {
    kind: Kind,
    gen: u32,
    handle: usize,
    /// Handle freed (by us); its callbacks must not run any more.
    freed: bool,
    /// Our end (watches: we own it and close it after the free; streams: the stream owns it).
    fd: c_int,
    /// The peer's end, -1 once closed.
    peer: c_int,
    pipe: bool,
    peer_shut: bool,
    peer_closed: bool,
    peer_sent: Vec<u8>,
    received: Vec<u8>,
    wrote: Vec<u8>,
    peer_read: usize,
    interest: u32,
    oracle: bool,
    eof: bool,
    ended: bool,
    errored: bool,
    hup: bool,
    /// HUP came while reads were off (interest 0 or WRITE): data may follow once reads resume.
    hup_early: bool,
    lied_after_hup: bool,
    err_ev: bool,
    paused: bool,
    connecting: bool,
    /// A connect that fails at once (no socket): see finding F6.
    no_socket: bool,
    /// Timer armed (one-shot or repeating).
    active: bool,
    repeat: bool,
    post_seq: u64,
}

impl Slot {
    fn new(kind: Kind, gen: u32) -> Slot {
        Slot {
            kind,
            gen,
            handle: 0,
            freed: false,
            fd: -1,
            peer: -1,
            pipe: false,
            peer_shut: false,
            peer_closed: false,
            peer_sent: Vec::new(),
            received: Vec::new(),
            wrote: Vec::new(),
            peer_read: 0,
            interest: 0,
            oracle: false,
            eof: false,
            ended: false,
            errored: false,
            hup: false,
            hup_early: false,
            lied_after_hup: false,
            err_ev: false,
            paused: false,
            connecting: false,
            no_socket: false,
            active: false,
            repeat: false,
            post_seq: 0,
        }
    }
}

#[derive(Default)]
struct World {
    reactor: usize,
    gen: u32,
    slots: Vec<Slot>,
    script: Vec<u8>,
    in_cb: u32,
    final_phase: bool,
    post_next: u64,
    post_last_run: u64,
    byte: u8,
    port: u16,
    strict_error: bool,
    strict_close: bool,
    strict_free: bool,
    strict_write: bool,
    strict_f6: bool,
    late_callbacks: u64,
}

thread_local! {
    static W: RefCell<World> = RefCell::new(World::default());
}

/// user_data liveness, apart from the world: user_data_free may run inside any heisen call, and
/// on another thread (a refused post from a thread, the last reference to a waker).
static UD: Mutex<Vec<bool>> = Mutex::new(Vec::new());

fn ud_live(slot: usize) -> bool {
    UD.lock().unwrap()[slot]
}

fn w<R>(f: impl FnOnce(&mut World) -> R) -> R {
    W.with(|c| f(&mut c.borrow_mut()))
}

fn ud_new(slot: usize) -> *mut c_void {
    {
        let mut u = UD.lock().unwrap();
        if u.len() <= slot {
            u.resize(slot + 1, false);
        }
        u[slot] = true;
    }
    Box::into_raw(Box::new(Tag { magic: MAGIC, slot })) as *mut c_void
}

unsafe extern "C" fn ud_free(p: *mut c_void) {
    let t = unsafe { Box::from_raw(p as *mut Tag) };
    assert_eq!(t.magic, MAGIC, "user_data_free with a foreign pointer");
    let mut u = UD.lock().unwrap();
    assert!(u[t.slot], "user_data_free called twice for slot {}", t.slot);
    u[t.slot] = false;
}

fn tag(ud: *mut c_void) -> usize {
    assert!(!ud.is_null());
    // A freed Tag here is a use after free that ASan reports.
    let t = unsafe { &*(ud as *const Tag) };
    assert_eq!(t.magic, MAGIC, "callback with a dead or foreign user_data");
    assert!(ud_live(t.slot), "callback after user_data_free (slot {})", t.slot);
    t.slot
}

/// Next byte of the callback script (from the back of the input).
fn script() -> u8 {
    w(|w| w.script.pop().unwrap_or(0))
}

fn pattern(n: usize) -> Vec<u8> {
    w(|w| {
        (0..n)
            .map(|_| {
                w.byte = w.byte.wrapping_add(1);
                w.byte
            })
            .collect()
    })
}

/// A connected pair (ours, peer): a unix socketpair, or a pipe (read end ours).
fn pair(pipe: bool) -> Option<(c_int, c_int)> {
    let mut fds = [0 as c_int; 2];
    let rc = unsafe {
        if pipe {
            libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC)
        } else {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        }
    };
    if rc != 0 {
        return None;
    }
    Some((fds[0], fds[1]))
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn fionread(fd: c_int) -> c_int {
    let mut n: c_int = 0;
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    n
}

fn reactor() -> *mut heisen_reactor {
    w(|w| w.reactor) as *mut heisen_reactor
}

static TRACE: AtomicBool = AtomicBool::new(false);

macro_rules! trace {
    ($($a:tt)*) => {
        if TRACE.load(Ordering::Relaxed) {
            eprintln!($($a)*);
        }
    };
}

/// Checks common to every callback; returns the slot.
fn enter(ud: *mut c_void, handle: usize, kind: Kind) -> usize {
    let id = tag(ud);
    trace!("  cb {kind:?} slot {id}");
    w(|w| {
        let s = &w.slots[id];
        assert_eq!(s.kind, kind);
        assert!(!s.freed, "{kind:?} callback after its handle was freed");
        assert_eq!(s.gen, w.gen, "callback from an older reactor");
        if w.reactor == 0 {
            // Finding F2: callbacks already queued for this round (deferred stream errors,
            // posts, timers after an fd event) still run after heisen_reactor_free.
            assert!(!w.strict_free, "{kind:?} callback after the reactor was freed in this round");
            w.late_callbacks += 1;
        }
        if handle != 0 {
            assert_eq!(s.handle, handle, "callback with another handle");
        }
        w.in_cb += 1;
    });
    id
}

fn leave() {
    w(|w| w.in_cb -= 1);
}

/// Frees slot `id`'s handle (if still held) and closes what we own. Safe anywhere.
fn free_slot(id: usize) {
    let (kind, handle, fd) = w(|w| {
        let s = &mut w.slots[id];
        if s.freed || s.handle == 0 {
            return (s.kind, 0, -1);
        }
        s.freed = true;
        let fd = if s.kind == Kind::Watch { std::mem::replace(&mut s.fd, -1) } else { -1 };
        (s.kind, s.handle, fd)
    });
    if handle == 0 {
        return;
    }
    match kind {
        Kind::Watch => heisen_watch_free(handle as *mut heisen_watch),
        Kind::Stream => heisen_stream_free(handle as *mut heisen_stream),
        Kind::Timer => heisen_timer_free(handle as *mut heisen_timer),
        Kind::Waker => heisen_waker_free(handle as *mut heisen_waker),
        Kind::Listener => heisen_listener_free(handle as *mut heisen_listener),
        Kind::Post | Kind::Trace => {}
    }
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
}

fn free_reactor() {
    let r = w(|w| std::mem::replace(&mut w.reactor, 0));
    if r != 0 {
        heisen_reactor_free(r as *mut heisen_reactor);
    }
    let gen = w(|w| w.gen);
    if w(|w| w.in_cb) == 0 {
        // Every registration on that reactor released its user_data (wakers: on waker_free).
        let live: Vec<(usize, Kind)> = w(|w| {
            w.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.gen == gen && s.kind != Kind::Waker && (w.strict_close || s.kind != Kind::Stream))
                // F6 (open): a stream whose connect failed at once keeps its user_data
                .filter(|(_, s)| w.strict_f6 || !s.no_socket)
                .map(|(i, s)| (i, s.kind))
                .collect()
        });
        for (i, k) in live {
            assert!(!ud_live(i), "{k:?} slot {i} kept its user_data after heisen_reactor_free");
        }
    }
}

/// What a callback does besides its job, read from the script.
fn cb_action(self_id: usize) {
    let a = script();
    match a % 24 {
        10 => free_slot(self_id),
        11 => {
            let n = w(|w| w.slots.len());
            if n > 0 {
                free_slot(script() as usize % n);
            }
        }
        12 => {
            let r = reactor();
            if !r.is_null() {
                assert_eq!(heisen_reactor_stop(r), heisen_status::HEISEN_STATUS_OK);
            }
        }
        13 => {
            let r = reactor();
            if !r.is_null() {
                assert_eq!(heisen_reactor_run(r, HEISEN_RUN_NOWAIT), heisen_status::HEISEN_STATUS_REENTRANT);
            }
        }
        14 if a >= 0xF0 && !w(|w| w.final_phase) => free_reactor(),
        15 => new_timer(0, 0),
        16 => {
            let n = w(|w| w.slots.len());
            let id = script() as usize % n.max(1);
            if n > 0 && w(|w| w.slots[id].kind == Kind::Stream && !w.slots[id].freed) {
                stream_write(id, 1 + script() as usize * 17);
            }
        }
        _ => {}
    }
}

// ------------------------------------------------------------------------------- watches

/// Reads what the fd has for a watch; returns HEISEN_IO_DONE/AGAIN per the read mode.
fn watch_read(id: usize, fd: c_int) -> i32 {
    let mode = script() % 4;
    let limit = if mode == 1 || mode == 2 { 1 + script() as usize * 8 } else { usize::MAX };
    let mut got = 0usize;
    let mut buf = vec![0u8; 4096];
    let mut drained = false;
    while got < limit {
        let want = buf.len().min(limit - got);
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, want) };
        if n > 0 {
            let n = n as usize;
            got += n;
            w(|w| {
                let s = &mut w.slots[id];
                assert!(!s.eof, "data after EOF on watch {id}");
                assert!(!s.hup || s.hup_early, "data after HUP on watch {id}");
                s.received.extend_from_slice(&buf[..n]);
                if s.oracle {
                    assert!(s.peer_sent.starts_with(&s.received), "watch {id}: bytes out of order or invented");
                }
            });
        } else if n == 0 {
            w(|w| w.slots[id].eof = true);
            drained = true;
            break;
        } else {
            drained = true; // EAGAIN or an error (ECONNRESET after the data)
            break;
        }
    }
    if mode == 2 && !drained {
        // A lie ("drained" with bytes left). Before HUP the reactor must still find the bytes
        // (FIONREAD check); after HUP was delivered nothing new will come, a stall is the
        // caller's doing.
        w(|w| {
            let s = &mut w.slots[id];
            if s.hup {
                s.lied_after_hup = true;
            }
        });
    }
    match mode {
        1 if !drained => HEISEN_IO_AGAIN,
        _ => HEISEN_IO_DONE, // mode 2 lies ("drained" while bytes are left): must not stall HUP
    }
}

unsafe extern "C" fn watch_cb(watch: *mut heisen_watch, fd: c_int, events: u32, ud: *mut c_void) -> i32 {
    let id = enter(ud, watch as usize, Kind::Watch);
    trace!("    watch event {events}");
    assert!(events.count_ones() == 1, "events {events:#x}");
    let (interest, oracle) = w(|w| {
        let s = &w.slots[id];
        assert_eq!(s.fd, fd);
        (s.interest, s.oracle)
    });
    let mut rc = HEISEN_IO_DONE;
    match events {
        HEISEN_EV_READ => {
            assert!(interest & HEISEN_EV_READ != 0, "READ without read interest");
            // A READ after HUP is allowed (the fd is readable at EOF), but it must find no data
            // unless HUP came while reads were off.
            rc = watch_read(id, fd);
        }
        HEISEN_EV_WRITE => {
            assert!(interest & HEISEN_EV_WRITE != 0, "WRITE without write interest");
            let data = pattern(1 + script() as usize * 16);
            let n = unsafe { libc::write(fd, data.as_ptr() as *const c_void, data.len()) };
            if n > 0 {
                w(|w| w.slots[id].wrote.extend_from_slice(&data[..n as usize]));
            }
            if script() & 1 == 1 {
                let i = interest & HEISEN_EV_READ;
                assert_eq!(heisen_watch_set_interest(watch, i), heisen_status::HEISEN_STATUS_OK);
                w(|w| w.slots[id].interest = i);
            }
        }
        HEISEN_EV_HUP => w(|w| {
            let s = &mut w.slots[id];
            assert!(!s.hup, "HUP twice");
            s.hup = true;
            s.hup_early = interest & HEISEN_EV_READ == 0;
            assert!(s.peer_shut || s.peer_closed, "HUP but the peer did not hang up");
            if oracle && interest & HEISEN_EV_READ != 0 {
                assert_eq!(fionread(fd), 0, "HUP with unread bytes in the socket");
                assert_eq!(s.received.len(), s.peer_sent.len(), "HUP before all data was read");
            }
        }),
        HEISEN_EV_ERROR => w(|w| {
            let s = &mut w.slots[id];
            assert!(!s.err_ev, "ERROR twice");
            s.err_ev = true;
            assert!(s.peer_closed, "ERROR but the peer did not close");
            if oracle && interest & HEISEN_EV_READ != 0 {
                assert_eq!(s.received.len(), s.peer_sent.len(), "ERROR before all data was read");
            }
        }),
        _ => panic!("unknown event {events:#x}"),
    }
    cb_action(id);
    leave();
    rc
}

fn new_watch(pipe: bool, interest: u32) {
    let r = reactor();
    if r.is_null() {
        return;
    }
    let Some((fd, peer)) = pair(pipe) else { return };
    let id = w(|w| {
        let mut s = Slot::new(Kind::Watch, w.gen);
        s.fd = fd;
        s.peer = peer;
        s.pipe = pipe;
        s.interest = interest;
        s.oracle = true;
        w.slots.push(s);
        w.slots.len() - 1
    });
    let mut h: *mut heisen_watch = std::ptr::null_mut();
    let st = heisen_watch_new(r, fd, interest, Some(watch_cb), ud_new(id), Some(ud_free), &mut h);
    assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
    w(|w| w.slots[id].handle = h as usize);
}

// ------------------------------------------------------------------------------- streams

unsafe extern "C" fn stream_data(stream: *mut heisen_stream, data: *const u8, len: usize, ud: *mut c_void) {
    let id = enter(ud, stream as usize, Kind::Stream);
    assert!(len > 0 && !data.is_null(), "empty on_data");
    let bytes = unsafe { std::slice::from_raw_parts(data, len) };
    w(|w| {
        let s = &mut w.slots[id];
        assert!(!s.ended && !s.errored, "on_data after the end");
        assert!(!s.connecting, "on_data before CONNECTED");
        s.received.extend_from_slice(bytes);
        if s.oracle {
            assert!(s.peer_sent.starts_with(&s.received), "stream {id}: bytes out of order or invented");
        }
    });
    if script() % 8 == 7 && !w(|w| w.final_phase) {
        assert_eq!(heisen_stream_pause_read(stream), heisen_status::HEISEN_STATUS_OK);
        w(|w| w.slots[id].paused = true);
    }
    cb_action(id);
    leave();
}

unsafe extern "C" fn stream_event(stream: *mut heisen_stream, event: i32, err: i32, ud: *mut c_void) {
    let id = enter(ud, stream as usize, Kind::Stream);
    trace!("    stream event {event} err {err}");
    w(|w| {
        let strict = w.strict_error;
        let s = &mut w.slots[id];
        assert!(!s.errored, "event {event} after ERROR");
        match event {
            HEISEN_STREAM_CONNECTED => {
                assert!(s.connecting, "CONNECTED twice or unasked");
                assert_eq!(err, 0);
                s.connecting = false;
            }
            HEISEN_STREAM_END => {
                assert!(!s.ended, "END twice");
                assert!(!s.connecting);
                assert_eq!(err, 0);
                s.ended = true;
                if s.oracle {
                    assert!(s.peer_shut || s.peer_closed, "END but the peer did not hang up");
                    assert_eq!(s.received.len(), s.peer_sent.len(), "stream {id}: END before all data");
                }
            }
            HEISEN_STREAM_ERROR => {
                assert!(err > 0, "ERROR without errno");
                s.errored = true;
                s.connecting = false;
                if s.oracle && strict && !s.ended {
                    assert_eq!(
                        s.received.len(),
                        s.peer_sent.len(),
                        "stream {id}: ERROR (errno {err}) before all data the peer wrote was delivered"
                    );
                }
            }
            HEISEN_STREAM_DRAIN => assert!(!s.connecting),
            _ => panic!("unknown stream event {event}"),
        }
    });
    cb_action(id);
    leave();
}

fn add_stream_slot(oracle: bool, pipe: bool, peer: c_int) -> usize {
    w(|w| {
        let mut s = Slot::new(Kind::Stream, w.gen);
        s.peer = peer;
        s.pipe = pipe;
        s.oracle = oracle;
        w.slots.push(s);
        w.slots.len() - 1
    })
}

fn new_stream_fd(pipe: bool) {
    let r = reactor();
    if r.is_null() {
        return;
    }
    let Some((fd, peer)) = pair(pipe) else { return };
    let id = add_stream_slot(true, pipe, peer);
    trace!("    stream slot {id} fd {fd} peer {peer}");
    let mut h: *mut heisen_stream = std::ptr::null_mut();
    let st = heisen_stream_open_fd(r, fd, Some(stream_data), Some(stream_event), ud_new(id), Some(ud_free), &mut h);
    assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
    w(|w| {
        w.slots[id].handle = h as usize;
        w.slots[id].fd = fd;
    });
}

fn stream_write(id: usize, n: usize) {
    let (h, pipe, gone, errored) = w(|w| {
        let s = &w.slots[id];
        (s.handle, s.pipe, s.gen != w.gen || w.reactor == 0, s.errored)
    });
    if h == 0 || pipe {
        return; // writing to a pipe's read end is a caller error, not a library path
    }
    let data = pattern(n);
    let st = heisen_stream_write(h as *mut heisen_stream, data.as_ptr(), data.len());
    trace!("    stream_write slot {id} {} bytes [{}..] -> {st:?}", data.len(), data[0]);
    match st {
        heisen_status::HEISEN_STATUS_OK | heisen_status::HEISEN_STATUS_BUSY => {
            if errored {
                // Finding F4: inside (or after) HEISEN_STREAM_ERROR a write with data still
                // queued answers BUSY ("accepted") though the data is dropped.
                assert!(!w(|w| w.strict_write), "write accepted ({st:?}) on a failed stream");
                return;
            }
            if gone {
                // Finding F1 (and F6 for a connect that failed at once): a stream outlives
                // heisen_reactor_free and still accepts writes.
                let (strict, f6) = w(|w| (w.strict_close, w.strict_f6 || !w.slots[id].no_socket));
                assert!(!(strict && f6), "write accepted ({st:?}) after heisen_reactor_free");
            }
            w(|w| w.slots[id].wrote.extend_from_slice(&data));
        }
        heisen_status::HEISEN_STATUS_CLOSED => {}
        other => panic!("stream_write: {other:?}"),
    }
}

// ------------------------------------------------------------------------------- timers

unsafe extern "C" fn timer_cb(timer: *mut heisen_timer, ud: *mut c_void) {
    let id = enter(ud, timer as usize, Kind::Timer);
    w(|w| {
        let s = &mut w.slots[id];
        assert!(s.active, "timer fired while stopped");
        if !s.repeat {
            s.active = false;
        }
    });
    match script() % 6 {
        1 => {
            assert_eq!(heisen_timer_stop(timer), heisen_status::HEISEN_STATUS_OK);
            w(|w| w.slots[id].active = false);
        }
        2 => {
            assert_eq!(heisen_timer_start(timer, 0, 0), heisen_status::HEISEN_STATUS_OK);
            w(|w| {
                w.slots[id].active = true;
                w.slots[id].repeat = false;
            });
        }
        _ => {}
    }
    cb_action(id);
    leave();
}

fn new_timer(after: u64, repeat: u64) {
    let r = reactor();
    if r.is_null() {
        return;
    }
    let id = w(|w| {
        w.slots.push(Slot::new(Kind::Timer, w.gen));
        w.slots.len() - 1
    });
    let mut h: *mut heisen_timer = std::ptr::null_mut();
    assert_eq!(
        heisen_timer_new(r, Some(timer_cb), ud_new(id), Some(ud_free), &mut h),
        heisen_status::HEISEN_STATUS_OK
    );
    w(|w| w.slots[id].handle = h as usize);
    assert_eq!(heisen_timer_start(h, after, repeat), heisen_status::HEISEN_STATUS_OK);
    w(|w| {
        w.slots[id].active = true;
        w.slots[id].repeat = repeat > 0;
    });
}

// ------------------------------------------------------------------------------- wakers, posts

unsafe extern "C" fn wake_cb(waker: *mut heisen_waker, ud: *mut c_void) {
    let id = enter(ud, waker as usize, Kind::Waker);
    cb_action(id);
    leave();
}

unsafe extern "C" fn post_cb(ud: *mut c_void) {
    let id = enter(ud, 0, Kind::Post);
    w(|w| {
        let seq = w.slots[id].post_seq;
        assert!(seq >= w.post_last_run, "posts out of order ({seq} after {})", w.post_last_run);
        w.post_last_run = seq;
        assert!(!w.slots[id].active, "post ran twice");
        w.slots[id].active = true;
    });
    cb_action(id);
    leave();
}

struct SendPtr(usize);
unsafe impl Send for SendPtr {}

fn post(waker_slot: usize, from_thread: bool) {
    let h = w(|w| w.slots[waker_slot].handle);
    if h == 0 || w(|w| w.slots[waker_slot].freed) {
        return;
    }
    let gone = w(|w| w.slots[waker_slot].gen != w.gen || w.reactor == 0);
    let id = w(|w| {
        let mut s = Slot::new(Kind::Post, w.slots[waker_slot].gen);
        s.post_seq = w.post_next;
        w.post_next += 1;
        w.slots.push(s);
        w.slots.len() - 1
    });
    let ud = SendPtr(ud_new(id) as usize);
    let wp = SendPtr(h);
    let st = if from_thread {
        std::thread::spawn(move || {
            let (ud, wp) = (ud, wp);
            heisen_waker_post(wp.0 as *mut heisen_waker, Some(post_cb), ud.0 as *mut c_void, Some(ud_free))
        })
        .join()
        .unwrap()
    } else {
        heisen_waker_post(h as *mut heisen_waker, Some(post_cb), ud.0 as *mut c_void, Some(ud_free))
    };
    if gone {
        assert_eq!(st, heisen_status::HEISEN_STATUS_CLOSED);
        assert!(!ud_live(id), "refused post kept its user_data");
    } else {
        assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
    }
}

// ------------------------------------------------------------------------------- listener

unsafe extern "C" fn accept_cb(l: *mut heisen_listener, fd: c_int, ud: *mut c_void) {
    let id = enter(ud, l as usize, Kind::Listener);
    assert!(fd >= 0);
    let r = reactor();
    if script() & 1 == 0 || r.is_null() {
        unsafe { libc::close(fd) };
    } else {
        let sid = add_stream_slot(false, false, -1);
        let mut h: *mut heisen_stream = std::ptr::null_mut();
        let st = heisen_stream_open_fd(r, fd, Some(stream_data), Some(stream_event), ud_new(sid), Some(ud_free), &mut h);
        assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
        w(|w| w.slots[sid].handle = h as usize);
    }
    cb_action(id);
    leave();
}

unsafe extern "C" fn trace_cb(line: *const c_char, ud: *mut c_void) {
    let _ = tag(ud);
    assert!(!line.is_null());
    let _ = unsafe { CStr::from_ptr(line) }.to_bytes().len();
}

fn connect(to_listener: bool, timeout: u32) {
    let r = reactor();
    if r.is_null() {
        return;
    }
    let port = w(|w| w.port);
    let addr = if to_listener && port != 0 {
        format!("tcp:127.0.0.1:{port}\0")
    } else if to_listener {
        "unix:/nonexistent/heisen-fuzz.sock\0".to_string()
    } else {
        "tcp:127.0.0.1:1\0".to_string() // nothing listens: refused
    };
    let id = add_stream_slot(false, false, -1);
    let no_socket = addr.starts_with("unix:/nonexistent");
    w(|w| {
        w.slots[id].connecting = true;
        w.slots[id].no_socket = no_socket;
    });
    let mut h: *mut heisen_stream = std::ptr::null_mut();
    let st = heisen_stream_connect(
        r,
        addr.as_ptr() as *const c_char,
        timeout,
        Some(stream_data),
        Some(stream_event),
        ud_new(id),
        Some(ud_free),
        &mut h,
    );
    if st == heisen_status::HEISEN_STATUS_OK {
        w(|w| w.slots[id].handle = h as usize);
    } else {
        assert!(h.is_null(), "out-parameter written on failure");
        assert!(!ud_live(id), "failed connect kept its user_data");
        w(|w| {
            w.slots[id].freed = true;
            w.slots[id].connecting = false;
        });
    }
}

fn new_listener() {
    let r = reactor();
    if r.is_null() || w(|w| w.port != 0) {
        return;
    }
    let id = w(|w| {
        w.slots.push(Slot::new(Kind::Listener, w.gen));
        w.slots.len() - 1
    });
    let mut h: *mut heisen_listener = std::ptr::null_mut();
    let st = heisen_listener_new(
        r,
        c"tcp:127.0.0.1:0".as_ptr(),
        16,
        0,
        Some(accept_cb),
        ud_new(id),
        Some(ud_free),
        &mut h,
    );
    assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
    let mut port = 0u16;
    assert_eq!(heisen_listener_port(h, &mut port), heisen_status::HEISEN_STATUS_OK);
    w(|w| {
        w.slots[id].handle = h as usize;
        w.port = port;
    });
}

// ------------------------------------------------------------------------------- peers

fn peer_write(id: usize, n: usize) {
    let (peer, shut) = w(|w| (w.slots[id].peer, w.slots[id].peer_shut));
    if peer < 0 || shut {
        return;
    }
    let data = pattern(n);
    let k = unsafe { libc::write(peer, data.as_ptr() as *const c_void, data.len()) };
    if k > 0 {
        w(|w| w.slots[id].peer_sent.extend_from_slice(&data[..k as usize]));
    }
}

fn peer_hangup(id: usize, full: bool) {
    let (peer, pipe) = w(|w| (w.slots[id].peer, w.slots[id].pipe));
    if peer < 0 {
        return;
    }
    if full || pipe {
        unsafe { libc::close(peer) };
        w(|w| {
            let s = &mut w.slots[id];
            s.peer = -1;
            s.peer_closed = true;
            s.peer_shut = true;
        });
    } else {
        unsafe { libc::shutdown(peer, libc::SHUT_WR) };
        w(|w| w.slots[id].peer_shut = true);
    }
}

fn peer_read(id: usize) {
    let (peer, pipe) = w(|w| (w.slots[id].peer, w.slots[id].pipe));
    if peer < 0 || pipe {
        return;
    }
    let mut buf = vec![0u8; 65536];
    loop {
        let n = unsafe { libc::read(peer, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if n <= 0 {
            break;
        }
        trace!("    peer_read slot {id} fd {peer} {n} bytes [{}..] wrote {} read {}", buf[0], w(|w| w.slots[id].wrote.len()), w(|w| w.slots[id].peer_read));
        w(|w| {
            let s = &mut w.slots[id];
            let n = n as usize;
            assert!(
                s.wrote.len() >= s.peer_read + n && s.wrote[s.peer_read..s.peer_read + n] == buf[..n],
                "peer {id} read bytes that were not written, or out of order"
            );
            s.peer_read += n;
        });
    }
}

// ------------------------------------------------------------------------------- driver

fn run_nowait() {
    let r = reactor();
    if !r.is_null() {
        let st = heisen_reactor_run(r, HEISEN_RUN_NOWAIT);
        assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
    }
}

fn pick(kind: Kind, b: u8) -> Option<usize> {
    w(|w| {
        let c: Vec<usize> = (0..w.slots.len())
            .filter(|&i| w.slots[i].kind == kind && !w.slots[i].freed)
            .collect();
        if c.is_empty() {
            None
        } else {
            Some(c[b as usize % c.len()])
        }
    })
}

fn pick_io(b: u8) -> Option<usize> {
    w(|w| {
        let c: Vec<usize> = (0..w.slots.len())
            .filter(|&i| matches!(w.slots[i].kind, Kind::Watch | Kind::Stream) && w.slots[i].oracle)
            .collect();
        if c.is_empty() {
            None
        } else {
            Some(c[b as usize % c.len()])
        }
    })
}

fn new_reactor() {
    if w(|w| w.reactor != 0) {
        return;
    }
    let mut r: *mut heisen_reactor = std::ptr::null_mut();
    assert_eq!(heisen_reactor_new(&mut r), heisen_status::HEISEN_STATUS_OK);
    w(|w| {
        w.reactor = r as usize;
        w.gen += 1;
        w.port = 0;
    });
}

fn op(code: u8, a: u8, b: u8) {
    trace!("op {} a={a} b={b}", code % 20);
    let r = reactor();
    match code % 20 {
        0 => new_reactor(),
        1 => new_watch(a & 4 != 0, (a & 3) as u32),
        2 => new_stream_fd(a & 4 != 0),
        3 | 4 => {
            if let Some(id) = pick_io(a) {
                peer_write(id, 1 + b as usize * (1 + (a as usize >> 5)))
            }
        }
        5 => {
            if let Some(id) = pick_io(a) {
                peer_hangup(id, b & 1 == 1)
            }
        }
        6 => {
            if let Some(id) = pick(Kind::Stream, a) {
                stream_write(id, 1 + b as usize * 257);
                if a & 0x80 != 0 {
                    let h = w(|w| w.slots[id].handle) as *mut heisen_stream;
                    let _ = heisen_stream_set_high_water(h, b as usize);
                    let mut q = 0usize;
                    let _ = heisen_stream_queued(h, &mut q);
                }
            }
        }
        7 => {
            if let Some(id) = pick(Kind::Stream, a) {
                let h = w(|w| w.slots[id].handle) as *mut heisen_stream;
                let st = if b & 1 == 0 {
                    w(|w| w.slots[id].paused = true);
                    heisen_stream_pause_read(h)
                } else {
                    w(|w| w.slots[id].paused = false);
                    heisen_stream_resume_read(h)
                };
                assert!(matches!(st, heisen_status::HEISEN_STATUS_OK | heisen_status::HEISEN_STATUS_CLOSED));
            }
        }
        8 => {
            if let Some(id) = pick(Kind::Stream, a) {
                let h = w(|w| w.slots[id].handle) as *mut heisen_stream;
                let _ = heisen_stream_shutdown(h);
                let mut fd = -1;
                let _ = heisen_stream_fd(h, &mut fd);
            }
        }
        9 => {
            let n = w(|w| w.slots.len());
            if n > 0 {
                free_slot(a as usize % n);
            }
        }
        10 => new_timer((a % 3) as u64, (b % 3) as u64),
        11 => {
            if let Some(id) = pick(Kind::Timer, a) {
                let h = w(|w| w.slots[id].handle) as *mut heisen_timer;
                let gone = w(|w| w.slots[id].gen != w.gen || w.reactor == 0);
                if b & 1 == 0 {
                    let st = heisen_timer_stop(h);
                    assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
                    w(|w| w.slots[id].active = false);
                } else {
                    let st = heisen_timer_start(h, (b % 3) as u64, (b >> 4) as u64 % 2);
                    if gone {
                        assert_eq!(st, heisen_status::HEISEN_STATUS_CLOSED);
                    } else {
                        assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
                        w(|w| {
                            w.slots[id].active = true;
                            w.slots[id].repeat = (b >> 4) % 2 == 1;
                        });
                    }
                }
            }
        }
        12 => {
            if r.is_null() {
                return;
            }
            let id = w(|w| {
                w.slots.push(Slot::new(Kind::Waker, w.gen));
                w.slots.len() - 1
            });
            let cb: heisen_wake_cb = if a & 1 == 0 { Some(wake_cb) } else { None };
            let mut h: *mut heisen_waker = std::ptr::null_mut();
            assert_eq!(
                heisen_waker_new(r, cb, ud_new(id), Some(ud_free), &mut h),
                heisen_status::HEISEN_STATUS_OK
            );
            w(|w| w.slots[id].handle = h as usize);
        }
        13 => {
            if let Some(id) = pick(Kind::Waker, a) {
                match b % 3 {
                    0 => {
                        let h = w(|w| w.slots[id].handle) as *mut heisen_waker;
                        let _ = heisen_waker_wake(h);
                    }
                    1 => post(id, false),
                    _ => post(id, b > 200),
                }
            }
        }
        14 | 15 | 16 => {
            for _ in 0..=(a % 4) {
                run_nowait();
            }
        }
        17 => {
            if let Some(id) = pick(Kind::Watch, a) {
                let (h, gone) = w(|w| (w.slots[id].handle, w.slots[id].gen != w.gen || w.reactor == 0));
                let i = (b % 4) as u32;
                let st = heisen_watch_set_interest(h as *mut heisen_watch, i);
                if gone {
                    assert_eq!(st, heisen_status::HEISEN_STATUS_CLOSED);
                } else {
                    assert_eq!(st, heisen_status::HEISEN_STATUS_OK);
                    w(|w| w.slots[id].interest = i);
                }
            } else if let Some(id) = pick_io(a) {
                peer_read(id);
            }
        }
        18 => match a % 8 {
            0 if b == 0x5A => free_reactor(),
            1 => new_listener(),
            2 => connect(true, b as u32 % 50),
            3 => connect(false, 0),
            4 => {
                if let Some(id) = pick_io(b) {
                    peer_read(id);
                }
            }
            5 if !r.is_null() => {
                let mut v = 0u64;
                let _ = heisen_reactor_counter(r, (b % 10) as i32, &mut v);
                let mut fd = 0;
                assert_eq!(heisen_reactor_backend_fd(r, &mut fd), heisen_status::HEISEN_STATUS_OK);
                let mut ms = 0i32;
                assert_eq!(heisen_reactor_backend_timeout(r, &mut ms), heisen_status::HEISEN_STATUS_OK);
                let _ = heisen_reactor_now_ms(r, &mut v);
                let _ = heisen_strerror(b as i32 - 3);
            }
            6 if !r.is_null() => {
                let id = w(|w| {
                    w.slots.push(Slot::new(Kind::Trace, w.gen));
                    w.slots.len() - 1
                });
                let cb: heisen_trace_cb = if b & 1 == 0 { Some(trace_cb) } else { None };
                assert_eq!(heisen_reactor_set_trace(r, cb, ud_new(id), Some(ud_free)), heisen_status::HEISEN_STATUS_OK);
            }
            7 => {
                // NULL and invalid arguments: statuses, never a crash.
                let mut h: *mut heisen_watch = std::ptr::null_mut();
                assert_eq!(
                    heisen_watch_new(std::ptr::null_mut(), 0, 1, Some(watch_cb), std::ptr::null_mut(), None, &mut h),
                    heisen_status::HEISEN_STATUS_NULL_ARGUMENT
                );
                if !r.is_null() {
                    assert_eq!(
                        heisen_watch_new(r, -1, 1, Some(watch_cb), std::ptr::null_mut(), None, &mut h),
                        heisen_status::HEISEN_STATUS_INVALID_ARGUMENT
                    );
                    assert_eq!(heisen_reactor_run(r, 77), heisen_status::HEISEN_STATUS_INVALID_ARGUMENT);
                }
                assert!(h.is_null());
                assert_eq!(heisen_stream_write(std::ptr::null_mut(), b"x".as_ptr(), 1), heisen_status::HEISEN_STATUS_NULL_ARGUMENT);
                heisen_watch_free(std::ptr::null_mut());
                heisen_stream_free(std::ptr::null_mut());
            }
            _ => {}
        },
        _ => run_nowait(),
    }
}

/// Shut every peer down, let every watch and stream deliver everything and its end.
fn final_phase() {
    trace!("final phase");
    if reactor().is_null() {
        return;
    }
    w(|w| {
        w.final_phase = true;
        w.script.clear();
    });
    let ids: Vec<usize> = w(|w| {
        (0..w.slots.len())
            .filter(|&i| {
                let s = &w.slots[i];
                matches!(s.kind, Kind::Watch | Kind::Stream) && s.oracle && !s.freed && s.gen == w.gen
            })
            .collect()
    });
    for &id in &ids {
        let (kind, h) = w(|w| (w.slots[id].kind, w.slots[id].handle));
        if kind == Kind::Stream {
            let _ = heisen_stream_resume_read(h as *mut heisen_stream);
            w(|w| w.slots[id].paused = false);
        } else {
            let i = w(|w| w.slots[id].interest) | HEISEN_EV_READ;
            assert_eq!(heisen_watch_set_interest(h as *mut heisen_watch, i), heisen_status::HEISEN_STATUS_OK);
            w(|w| w.slots[id].interest = i);
        }
        peer_hangup(id, false);
    }
    let done = |id: usize| {
        w(|w| {
            let s = &w.slots[id];
            s.freed || (s.kind == Kind::Stream && (s.ended || s.errored)) || (s.kind == Kind::Watch && (s.hup || s.err_ev) && (s.lied_after_hup || s.received.len() == s.peer_sent.len()))
        })
    };
    for _ in 0..4000 {
        if ids.iter().all(|&id| done(id)) || reactor().is_null() {
            break;
        }
        run_nowait();
        // Stream writes queued towards peers that nobody reads could hold nothing back, but a
        // peer buffer that is full never matters for reading: keep the peers drained anyway.
        for &id in &ids {
            peer_read(id);
        }
    }
    if reactor().is_null() {
        return;
    }
    for &id in &ids {
        w(|w| {
            let s = &w.slots[id];
            if s.freed {
                return;
            }
            match s.kind {
                Kind::Stream => {
                    assert!(s.ended || s.errored, "stream {id} never ended (got {} of {} bytes)", s.received.len(), s.peer_sent.len());
                    if !s.errored || w.strict_error {
                        assert_eq!(s.received.len(), s.peer_sent.len(), "stream {id} lost data");
                        assert!(s.received == s.peer_sent, "stream {id} garbled data");
                    }
                }
                _ => {
                    assert!(s.hup || s.err_ev, "watch {id} never saw the hang-up ({} of {} bytes)", s.received.len(), s.peer_sent.len());
                    if !s.lied_after_hup {
                        assert_eq!(s.received.len(), s.peer_sent.len(), "watch {id} lost data");
                        assert!(s.received == s.peer_sent, "watch {id} garbled data");
                    }
                }
            }
        });
    }
}

static ONCE: AtomicBool = AtomicBool::new(false);

fuzz_target!(|data: &[u8]| {
    if !ONCE.swap(true, Ordering::Relaxed) {
        // Writes to a closed socket must give EPIPE, not kill the process.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        TRACE.store(std::env::var_os("HEISEN_FUZZ_TRACE").is_some(), Ordering::Relaxed);
    }
    let lax = std::env::var("HEISEN_FUZZ_LAX").unwrap_or_default();
    let on = |name: &str| !(lax == "all" || lax.split(',').any(|s| s == name));
    let (strict_error, strict_close, strict_free) = (on("error"), on("close"), on("free"));
    let strict_write = on("write");
    let strict_f6 = on("f6");
    let fds_before = fd_count();
    let half = data.len() / 2;
    w(|w| {
        *w = World::default();
        w.script = data[half..].to_vec(); // popped from the back
        w.strict_error = strict_error;
        w.strict_close = strict_close;
        w.strict_free = strict_free;
        w.strict_write = strict_write;
        w.strict_f6 = strict_f6;
    });
    UD.lock().unwrap().clear();
    new_reactor();
    let ops = &data[..half];
    for c in ops.chunks(3) {
        let (code, a, b) = (c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0));
        op(code, a, b);
    }
    final_phase();
    // Tear down: every handle, then the reactor, then what we own.
    let n = w(|w| w.slots.len());
    let order = data.first().copied().unwrap_or(0);
    if order & 1 == 0 {
        free_reactor();
    }
    for i in 0..n {
        free_slot(i);
    }
    free_reactor();
    for i in 0..n {
        let peer = w(|w| std::mem::replace(&mut w.slots[i].peer, -1));
        if peer >= 0 {
            unsafe { libc::close(peer) };
        }
    }
    let live: Vec<usize> = UD.lock().unwrap().iter().enumerate().filter(|(_, &l)| l).map(|(i, _)| i).collect();
    assert!(live.is_empty(), "user_data never freed for slots {live:?}");
    assert_eq!(fd_count(), fds_before, "descriptor leak");
});
