//! Streams and listeners.

use super::reactor::heisen_reactor;
use super::status::*;
use super::userdata::{heisen_free_fn, UserData};
use crate::stream::{Address, Listener, Stream, StreamHandler};
use std::cell::OnceCell;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::raw::{c_char, c_int, c_void};

/// A buffered byte stream (TCP, unix socket or pipe).
pub struct heisen_stream {
    s: OnceCell<Stream>,
}

/// Stream event: connected (err = 0).
pub const HEISEN_STREAM_CONNECTED: i32 = 0;
/// Stream event: orderly end of the peer's data, after every byte was delivered (err = 0).
/// The stream stays open for writing.
pub const HEISEN_STREAM_END: i32 = 1;
/// Stream event: the connection failed, after every byte before the failure was delivered
/// (err = errno; ETIMEDOUT for a connect timeout). The stream is closed; free the handle.
pub const HEISEN_STREAM_ERROR: i32 = 2;
/// Stream event: the write queue emptied after heisen_stream_write() returned HEISEN_STATUS_BUSY.
pub const HEISEN_STREAM_DRAIN: i32 = 3;

/// Bytes read; called until the socket is drained. `data` is valid during the call only.
pub type heisen_stream_data_cb =
    Option<unsafe extern "C" fn(stream: *mut heisen_stream, data: *const u8, len: usize, user_data: *mut c_void)>;
/// A HEISEN_STREAM_* event.
pub type heisen_stream_event_cb =
    Option<unsafe extern "C" fn(stream: *mut heisen_stream, event: i32, err: i32, user_data: *mut c_void)>;

struct CStream {
    handle: usize,
    on_data: heisen_stream_data_cb,
    on_event: heisen_stream_event_cb,
    ud: UserData,
}

impl CStream {
    fn event(&self, event: i32, err: i32) {
        if let Some(cb) = self.on_event {
            // SAFETY: the handle is alive while the stream can call back (freeing closes it).
            unsafe { cb(self.handle as *mut heisen_stream, event, err, self.ud.ptr()) };
        }
    }
}

impl StreamHandler for CStream {
    fn on_connect(&mut self, _s: &Stream) {
        self.event(HEISEN_STREAM_CONNECTED, 0);
    }
    fn on_data(&mut self, _s: &Stream, data: &[u8]) {
        if let Some(cb) = self.on_data {
            // SAFETY: as in `event`; `data` is valid for the call.
            unsafe { cb(self.handle as *mut heisen_stream, data.as_ptr(), data.len(), self.ud.ptr()) };
        }
    }
    fn on_end(&mut self, _s: &Stream) {
        self.event(HEISEN_STREAM_END, 0);
    }
    fn on_error(&mut self, _s: &Stream, err: io::Error) {
        self.event(HEISEN_STREAM_ERROR, err.raw_os_error().unwrap_or(libc::EIO));
    }
    fn on_drain(&mut self, _s: &Stream) {
        self.event(HEISEN_STREAM_DRAIN, 0);
    }
}

fn new_stream(
    out: *mut *mut heisen_stream,
    ud: UserData,
    on_data: heisen_stream_data_cb,
    on_event: heisen_stream_event_cb,
    make: impl FnOnce(Box<dyn StreamHandler>) -> io::Result<Stream>,
) -> heisen_status {
    let handle = Box::into_raw(Box::new(heisen_stream { s: OnceCell::new() }));
    let h = CStream { handle: handle as usize, on_data, on_event, ud };
    publish(out, handle, make(Box::new(h)), |h| &h.s)
}

/// The second half of creating a handle whose callbacks need its address: `handle` came from
/// `Box::into_raw` before the object was made; on success the object goes into the handle's
/// cell and the handle to `out`, on failure the handle is freed and the error returned.
fn publish<H, T>(
    out: *mut *mut H,
    handle: *mut H,
    made: io::Result<T>,
    cell: impl FnOnce(&H) -> &OnceCell<T>,
) -> heisen_status {
    match made {
        Ok(v) => {
            // SAFETY: `handle` comes from Box::into_raw in the caller and is still owned here.
            let _ = cell(unsafe { &*handle }).set(v);
            put!(out, handle)
        }
        Err(e) => {
            // SAFETY: as above; nobody else has seen the handle, so it is freed once.
            drop(unsafe { Box::from_raw(handle) });
            io_status(&e)
        }
    }
}

/// Connect to `address` ("unix:/path", "tcp:host:port", "tcp:[::1]:port", "/path" or
/// "host:port"; host names are resolved now). Every outcome arrives as an event:
/// HEISEN_STREAM_CONNECTED, or HEISEN_STREAM_ERROR (refused, ETIMEDOUT after `timeout_ms`;
/// 0 = no timeout). Writes made before the connection is up are queued.
#[no_mangle]
pub extern "C" fn heisen_stream_connect(
    reactor: *mut heisen_reactor,
    address: *const c_char,
    timeout_ms: u32,
    on_data: heisen_stream_data_cb,
    on_event: heisen_stream_event_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
    stream_out: *mut *mut heisen_stream,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let r = try_ref!(reactor);
        let out = try_out!(stream_out);
        let addr = match Address::parse(try_str!(address)) {
            Ok(a) => a,
            Err(e) => return io_status(&e),
        };
        if r.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        new_stream(out, ud, on_data, on_event, |h| Stream::connect(&r.r, &addr, timeout_ms as u64, h))
    }
}

/// Adopt a connected socket or pipe `fd` (for example one from a heisen_accept_cb). The stream
/// takes ownership of the fd (closed when the stream is freed, or at once if this fails).
#[no_mangle]
pub extern "C" fn heisen_stream_open_fd(
    reactor: *mut heisen_reactor,
    fd: c_int,
    on_data: heisen_stream_data_cb,
    on_event: heisen_stream_event_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
    stream_out: *mut *mut heisen_stream,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let r = try_ref!(reactor);
        let out = try_out!(stream_out);
        if fd < 0 {
            return HEISEN_STATUS_INVALID_ARGUMENT;
        }
        if r.r.is_closed() {
            return HEISEN_STATUS_CLOSED;
        }
        new_stream(out, ud, on_data, on_event, |h| {
            // SAFETY: the caller hands us ownership of an open descriptor.
            Stream::from_fd(&r.r, unsafe { OwnedFd::from_raw_fd(fd) }, h)
        })
    }
}

fn stream_of(s: &heisen_stream) -> Result<&Stream, heisen_status> {
    match s.s.get() {
        Some(st) if st.is_open() => Ok(st),
        _ => Err(HEISEN_STATUS_CLOSED),
    }
}

macro_rules! try_stream {
    ($p:expr) => {
        match stream_of(try_ref!($p)) {
            Ok(s) => s,
            Err(e) => return e,
        }
    };
}

/// Queue `len` bytes and write what the socket takes now. Returns HEISEN_STATUS_OK, or
/// HEISEN_STATUS_BUSY when the data was ACCEPTED but the queue is now at or above the
/// high-water mark: stop writing until HEISEN_STREAM_DRAIN. HEISEN_STATUS_CLOSED after an error,
/// a shutdown or close (the data is dropped).
#[no_mangle]
pub extern "C" fn heisen_stream_write(stream: *mut heisen_stream, data: *const u8, len: usize) -> heisen_status {
    ffi_guard! {
        let s = try_stream!(stream);
        let bytes = try_bytes!(data, len);
        if s.write(bytes) {
            HEISEN_STATUS_OK
        } else if s.is_open() && s.queued() > 0 {
            HEISEN_STATUS_BUSY
        } else {
            HEISEN_STATUS_CLOSED
        }
    }
}

/// Set the write queue's high-water mark (default 64 KiB).
#[no_mangle]
pub extern "C" fn heisen_stream_set_high_water(stream: *mut heisen_stream, bytes: usize) -> heisen_status {
    ffi_guard! {
        try_stream!(stream).set_high_water(bytes);
        HEISEN_STATUS_OK
    }
}

/// Bytes waiting in the write queue.
#[no_mangle]
pub extern "C" fn heisen_stream_queued(stream: *mut heisen_stream, bytes_out: *mut usize) -> heisen_status {
    ffi_guard! {
        let s = try_stream!(stream);
        let out = try_out!(bytes_out);
        put!(out, s.queued())
    }
}

/// Stop reading (back-pressure). A hang-up or error arriving meanwhile is held back until
/// reading resumes and the data before it has been delivered.
#[no_mangle]
pub extern "C" fn heisen_stream_pause_read(stream: *mut heisen_stream) -> heisen_status {
    ffi_guard! {
        try_stream!(stream).pause_read();
        HEISEN_STATUS_OK
    }
}

/// Resume reading.
#[no_mangle]
pub extern "C" fn heisen_stream_resume_read(stream: *mut heisen_stream) -> heisen_status {
    ffi_guard! {
        try_stream!(stream).resume_read();
        HEISEN_STATUS_OK
    }
}

/// Half-close: shutdown(SHUT_WR) once the queued data is written. Reading goes on.
#[no_mangle]
pub extern "C" fn heisen_stream_shutdown(stream: *mut heisen_stream) -> heisen_status {
    ffi_guard! {
        try_stream!(stream).shutdown();
        HEISEN_STATUS_OK
    }
}

/// The stream's descriptor (owned by the stream).
#[no_mangle]
pub extern "C" fn heisen_stream_fd(stream: *mut heisen_stream, fd_out: *mut c_int) -> heisen_status {
    ffi_guard! {
        let s = try_stream!(stream);
        let out = try_out!(fd_out);
        put!(out, s.fd())
    }
}

/// Close the socket now (unsent data is dropped) and free the handle. Safe inside the stream's
/// own callbacks: no further callbacks; user_data_free runs after the current one returns.
/// NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_stream_free(stream: *mut heisen_stream) {
    ffi_guard! {
        if stream.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is a stream from this library, freed once.
        let h = unsafe { Box::from_raw(stream) };
        if let Some(s) = h.s.get() {
            s.close();
        }
    }
}

// ------------------------------------------------------------------------------------ listeners

/// A listening socket.
pub struct heisen_listener {
    l: OnceCell<Listener>,
}

/// heisen_listener_new flag: set SO_REUSEPORT (one listener per thread/process on one port).
pub const HEISEN_LISTEN_REUSEPORT: u32 = 1;

/// A new connection: `fd` is non-blocking and close-on-exec, and now yours (wrap it with
/// heisen_stream_open_fd, or close it). When the process runs out of descriptors the listener
/// pauses and retries every 100 ms.
pub type heisen_accept_cb = Option<unsafe extern "C" fn(listener: *mut heisen_listener, fd: c_int, user_data: *mut c_void)>;

fn new_listener(
    r: &heisen_reactor,
    out: *mut *mut heisen_listener,
    cb: unsafe extern "C" fn(*mut heisen_listener, c_int, *mut c_void),
    ud: UserData,
    make: impl FnOnce(crate::stream::AcceptFn) -> io::Result<Listener>,
) -> heisen_status {
    if r.r.is_closed() {
        return HEISEN_STATUS_CLOSED;
    }
    let handle = Box::into_raw(Box::new(heisen_listener { l: OnceCell::new() }));
    let hp = handle as usize;
    let f = Box::new(move |_: &crate::reactor::Reactor, fd: OwnedFd| {
        // SAFETY: the listener handle is alive while it can accept (freeing stops it).
        unsafe { cb(hp as *mut heisen_listener, fd.into_raw_fd(), ud.ptr()) };
    });
    publish(out, handle, make(f), |h| &h.l)
}

/// Listen on `address` (see heisen_stream_connect; "tcp:127.0.0.1:0" picks a free port, see
/// heisen_listener_port). `backlog` <= 0 means 1024. `flags`: HEISEN_LISTEN_REUSEPORT.
/// A unix socket path must not exist yet.
#[no_mangle]
pub extern "C" fn heisen_listener_new(
    reactor: *mut heisen_reactor,
    address: *const c_char,
    backlog: i32,
    flags: u32,
    cb: heisen_accept_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
    listener_out: *mut *mut heisen_listener,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let r = try_ref!(reactor);
        let out = try_out!(listener_out);
        let Some(cb) = cb else { return HEISEN_STATUS_NULL_ARGUMENT };
        if flags & !HEISEN_LISTEN_REUSEPORT != 0 {
            return HEISEN_STATUS_INVALID_ARGUMENT;
        }
        let addr = match Address::parse(try_str!(address)) {
            Ok(a) => a,
            Err(e) => return io_status(&e),
        };
        new_listener(r, out, cb, ud, |f| {
            Listener::bind(&r.r, &addr, backlog, flags & HEISEN_LISTEN_REUSEPORT != 0, f)
        })
    }
}

/// Adopt a socket that is already listening (for example one inherited from a parent process).
/// Takes ownership of `fd` (it is closed if this fails).
#[no_mangle]
pub extern "C" fn heisen_listener_open_fd(
    reactor: *mut heisen_reactor,
    fd: c_int,
    cb: heisen_accept_cb,
    user_data: *mut c_void,
    user_data_free: heisen_free_fn,
    listener_out: *mut *mut heisen_listener,
) -> heisen_status {
    ffi_guard! {
        let ud = UserData::new(user_data, user_data_free);
        let r = try_ref!(reactor);
        let out = try_out!(listener_out);
        let Some(cb) = cb else { return HEISEN_STATUS_NULL_ARGUMENT };
        if fd < 0 {
            return HEISEN_STATUS_INVALID_ARGUMENT;
        }
        new_listener(r, out, cb, ud, |f| {
            // SAFETY: the caller hands us ownership of an open listening descriptor.
            Listener::from_fd(&r.r, unsafe { OwnedFd::from_raw_fd(fd) }, f)
        })
    }
}

/// The bound TCP port.
#[no_mangle]
pub extern "C" fn heisen_listener_port(listener: *mut heisen_listener, port_out: *mut u16) -> heisen_status {
    ffi_guard! {
        let l = try_ref!(listener);
        let out = try_out!(port_out);
        let Some(l) = l.l.get() else { return HEISEN_STATUS_CLOSED };
        match l.port() {
            Ok(p) => put!(out, p),
            Err(e) => io_status(&e),
        }
    }
}

/// The listening descriptor (owned by the listener).
#[no_mangle]
pub extern "C" fn heisen_listener_fd(listener: *mut heisen_listener, fd_out: *mut c_int) -> heisen_status {
    ffi_guard! {
        let l = try_ref!(listener);
        let out = try_out!(fd_out);
        let Some(l) = l.l.get() else { return HEISEN_STATUS_CLOSED };
        put!(out, l.fd())
    }
}

/// Stop listening, close the socket and free the handle (a unix socket file is not removed).
/// Safe inside its own accept callback. NULL is a no-op.
#[no_mangle]
pub extern "C" fn heisen_listener_free(listener: *mut heisen_listener) {
    ffi_guard! {
        if listener.is_null() {
            return;
        }
        // SAFETY: a non-NULL pointer is a listener from this library, freed once.
        let h = unsafe { Box::from_raw(listener) };
        if let Some(l) = h.l.get() {
            l.close();
        }
    }
}
