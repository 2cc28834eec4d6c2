//! Buffered streams over TCP and unix sockets (and pipes), on the reactor.
//!
//! The stream reads for its user and calls [`StreamHandler::on_data`] until the socket is
//! drained; only then does it deliver exactly one of [`StreamHandler::on_end`] (orderly EOF) or
//! [`StreamHandler::on_error`]. The end of the stream is found by *reading* (`read() == 0` or an
//! error after the data), never inferred from a hang-up flag, so a reply that arrives together
//! with the peer's close is always delivered in full.
//!
//! Writes are buffered: [`Stream::write`] always accepts the data, writes what the socket takes
//! at once, and returns `false` once the queue reaches the high-water mark;
//! [`StreamHandler::on_drain`] follows when the queue empties.

mod address;
mod listener;

pub use address::Address;
pub use listener::{AcceptFn, Listener};

use crate::reactor::{Action, Flow, Reactor, TimerId, WatchId, READ, WRITE};
use crate::sys;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

/// Size of one read.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads per readiness round before yielding to other watchers.
const READS_PER_ROUND: usize = 16;
/// Default high-water mark of the write queue.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// What a stream tells its user. Called on the reactor thread, never while the stream holds an
/// internal borrow: a handler may call anything on the stream, including [`Stream::close`].
pub trait StreamHandler: 'static {
    /// A connection made by [`Stream::connect`] is established.
    fn on_connect(&mut self, _s: &Stream) {}
    /// Bytes read. Called until the socket is drained, before `on_end`/`on_error`.
    fn on_data(&mut self, s: &Stream, data: &[u8]);
    /// Orderly end of the peer's data. The stream stays open for writing.
    fn on_end(&mut self, s: &Stream);
    /// The connection failed (including connect failure and connect timeout, `ETIMEDOUT`).
    /// The last callback; the stream is closed.
    fn on_error(&mut self, s: &Stream, err: io::Error);
    /// The write queue emptied after [`Stream::write`] returned `false`.
    fn on_drain(&mut self, _s: &Stream) {}
}

#[derive(Default)]
struct State {
    wbuf: Vec<u8>,
    wpos: usize,
    high_water: usize,
    above_high_water: bool,
    connecting: bool,
    paused: bool,
    ended: bool,
    failed: bool,
    closed: bool,
    shutdown_wanted: bool,
    shut: bool,
    interest: u32,
    /// A write failed (EPIPE, ECONNRESET...): reported once the read side has been drained.
    write_error: Option<i32>,
}

struct Inner {
    reactor: Reactor,
    fd: RefCell<Option<OwnedFd>>,
    raw: RawFd,
    watch: Cell<Option<WatchId>>,
    timer: Cell<Option<TimerId>>,
    st: RefCell<State>,
    handler: RefCell<Option<Box<dyn StreamHandler>>>,
}

/// A connected (or connecting) byte stream. Clones are further references to it; the socket is
/// closed by [`Stream::close`] or when the last reference goes.
#[derive(Clone)]
pub struct Stream {
    inner: Rc<Inner>,
}

thread_local! {
    static READ_BUF: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

fn take_buf() -> Vec<u8> {
    READ_BUF.with(|b| b.borrow_mut().take()).unwrap_or_else(|| vec![0u8; READ_CHUNK])
}

fn give_buf(buf: Vec<u8>) {
    READ_BUF.with(|b| *b.borrow_mut() = Some(buf));
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Stream {
    /// Connect (non-blocking). Every outcome arrives through the handler: `on_connect`, or
    /// `on_error` (refused, unreachable, `ETIMEDOUT` after `timeout_ms`; 0 = no timeout).
    pub fn connect(r: &Reactor, addr: &Address, timeout_ms: u64, h: Box<dyn StreamHandler>) -> io::Result<Stream> {
        let sock: io::Result<OwnedFd> = match addr {
            Address::Unix(p) => mio::net::UnixStream::connect(p).map(|s| s.into()),
            Address::Tcp(sa) => mio::net::TcpStream::connect(*sa).map(|s| {
                let _ = s.set_nodelay(true);
                s.into()
            }),
        };
        match sock {
            Ok(fd) => {
                let s = Stream::build(r, fd, h, true)?;
                if timeout_ms > 0 {
                    let weak = Rc::downgrade(&s.inner);
                    let t = r.timer(Box::new(move |_, _| {
                        if let Some(inner) = weak.upgrade() {
                            let s = Stream { inner };
                            if s.inner.st.borrow().connecting {
                                s.fail(io::Error::from_raw_os_error(libc::ETIMEDOUT));
                            }
                        }
                    }));
                    r.timer_start(t, timeout_ms, 0);
                    s.inner.timer.set(Some(t));
                }
                Ok(s)
            }
            Err(e) => {
                // Report asynchronously, like every other outcome.
                let s = Stream::new_inner(r, None, -1, h);
                s.inner.st.borrow_mut().connecting = true;
                // The guard closes the stream if the reactor closes before this runs.
                let guard = CloseWithReactor(Rc::downgrade(&s.inner));
                r.defer(Box::new(move |_| {
                    if let Some(inner) = guard.0.upgrade() {
                        Stream { inner }.fail(e);
                    }
                }));
                Ok(s)
            }
        }
    }

    /// Adopt a connected socket or pipe (made non-blocking here). The stream owns and closes it.
    pub fn from_fd(r: &Reactor, fd: OwnedFd, h: Box<dyn StreamHandler>) -> io::Result<Stream> {
        sys::set_nonblocking(fd.as_raw_fd())?;
        Stream::build(r, fd, h, false)
    }

    fn new_inner(r: &Reactor, fd: Option<OwnedFd>, raw: RawFd, h: Box<dyn StreamHandler>) -> Stream {
        Stream {
            inner: Rc::new(Inner {
                reactor: r.clone(),
                fd: RefCell::new(fd),
                raw,
                watch: Cell::new(None),
                timer: Cell::new(None),
                st: RefCell::new(State { high_water: DEFAULT_HIGH_WATER, ..State::default() }),
                handler: RefCell::new(Some(h)),
            }),
        }
    }

    fn build(r: &Reactor, fd: OwnedFd, h: Box<dyn StreamHandler>, connecting: bool) -> io::Result<Stream> {
        let raw = fd.as_raw_fd();
        let s = Stream::new_inner(r, Some(fd), raw, h);
        let interest = if connecting { WRITE } else { READ };
        {
            let mut st = s.inner.st.borrow_mut();
            st.connecting = connecting;
            st.interest = interest;
        }
        let guard = CloseWithReactor(Rc::downgrade(&s.inner));
        let id = r.watch(
            raw,
            interest,
            Box::new(move |_, _, action| match guard.0.upgrade() {
                Some(inner) => Stream { inner }.on_action(action),
                None => Flow::Done,
            }),
        )?;
        s.inner.watch.set(Some(id));
        Ok(s)
    }

    /// The reactor this stream runs on.
    pub fn reactor(&self) -> &Reactor {
        &self.inner.reactor
    }

    /// The socket's descriptor (-1 if the connect failed before a socket existed).
    pub fn fd(&self) -> RawFd {
        self.inner.raw
    }

    /// True until the stream is closed (by the user), has failed (from the moment `on_error`
    /// is due), or its reactor was closed.
    pub fn is_open(&self) -> bool {
        let st = self.inner.st.borrow();
        !st.closed && !st.failed && !self.inner.reactor.is_closed()
    }

    /// True while a connect is in progress.
    pub fn is_connecting(&self) -> bool {
        self.inner.st.borrow().connecting
    }

    /// True when both are the same stream.
    pub fn same(&self, other: &Stream) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// Bytes queued for writing.
    pub fn queued(&self) -> usize {
        let st = self.inner.st.borrow();
        st.wbuf.len() - st.wpos
    }

    /// Set the high-water mark of the write queue.
    pub fn set_high_water(&self, bytes: usize) {
        self.inner.st.borrow_mut().high_water = bytes.max(1);
    }

    /// Whether this stream keeps the reactor's default run going (default: yes).
    pub fn set_ref(&self, keeps_alive: bool) {
        if let Some(id) = self.inner.watch.get() {
            self.inner.reactor.set_watch_ref(id, keeps_alive);
        }
    }

    /// Queue `data` and write what the socket takes now. Always accepts the data (unless the
    /// stream is closed or shut down, then it is dropped and `false` returned). Returns `false`
    /// when the queue is at or above the high-water mark: wait for `on_drain`.
    pub fn write(&self, data: &[u8]) -> bool {
        let mut st = self.inner.st.borrow_mut();
        if st.closed || st.failed || st.shutdown_wanted || st.write_error.is_some() {
            return false;
        }
        let mut rest = data;
        if st.wbuf.len() == st.wpos && !st.connecting {
            // Nothing queued: try the socket directly.
            while !rest.is_empty() {
                match sys::write(self.inner.raw, rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if would_block(&e) => break,
                    Err(e) => {
                        drop(st);
                        self.write_failed(e);
                        return false;
                    }
                }
            }
        }
        if !rest.is_empty() {
            if st.wpos > 0 && st.wpos == st.wbuf.len() {
                st.wbuf.clear();
                st.wpos = 0;
            }
            st.wbuf.extend_from_slice(rest);
        }
        let below = st.wbuf.len() - st.wpos < st.high_water;
        if !below {
            st.above_high_water = true;
        }
        drop(st);
        self.update_interest();
        below
    }

    /// Stop reading (back-pressure). A hang-up or error that arrives meanwhile is held until
    /// reading resumes and the data before it has been delivered.
    pub fn pause_read(&self) {
        self.inner.st.borrow_mut().paused = true;
        self.update_interest();
    }

    /// Resume reading; anything that arrived while paused is delivered.
    pub fn resume_read(&self) {
        self.inner.st.borrow_mut().paused = false;
        self.update_interest();
    }

    /// Half-close: `shutdown(SHUT_WR)` once the queue is flushed.
    pub fn shutdown(&self) {
        let mut st = self.inner.st.borrow_mut();
        if st.closed || st.shutdown_wanted {
            return;
        }
        st.shutdown_wanted = true;
        let flushed = st.wbuf.len() == st.wpos && !st.connecting;
        drop(st);
        if flushed {
            self.do_shutdown();
        }
    }

    fn do_shutdown(&self) {
        let mut st = self.inner.st.borrow_mut();
        if !st.shut && !st.closed {
            st.shut = true;
            let _ = sys::shutdown_write(self.inner.raw);
        }
    }

    /// Close now: unsent data is dropped, no further callbacks. Idempotent.
    pub fn close(&self) {
        let handler = {
            let mut st = self.inner.st.borrow_mut();
            if st.closed {
                return;
            }
            st.closed = true;
            st.wbuf = Vec::new();
            st.wpos = 0;
            self.inner.handler.borrow_mut().take()
        };
        self.release_os();
        drop(handler); // outside every borrow: its destructor may call back into us
    }

    fn release_os(&self) {
        let r = &self.inner.reactor;
        if let Some(id) = self.inner.watch.take() {
            r.unwatch(id);
        }
        if let Some(t) = self.inner.timer.take() {
            r.timer_free(t);
        }
        let fd = self.inner.fd.borrow_mut().take();
        drop(fd);
    }

    /// Give up the descriptor without closing it (the stream becomes closed). `None` when it
    /// was already closed.
    pub fn into_fd(self) -> Option<RawFd> {
        let fd = self.inner.fd.borrow_mut().take();
        self.close();
        fd.map(|f| f.into_raw_fd())
    }

    // ------------------------------------------------------------------ internals

    fn update_interest(&self) {
        let want = {
            let mut st = self.inner.st.borrow_mut();
            if st.closed {
                return;
            }
            let mut want = 0;
            if !st.connecting && !st.paused && !st.ended && !st.failed {
                want |= READ;
            }
            if st.connecting || st.wbuf.len() > st.wpos {
                want |= WRITE;
            }
            if want == st.interest {
                return;
            }
            st.interest = want;
            want
        };
        if let Some(id) = self.inner.watch.get() {
            if let Err(e) = self.inner.reactor.set_interest(id, want) {
                self.write_failed(e);
            }
        }
    }

    /// Call the handler (if the stream is still open), never holding a borrow across the call.
    fn call(&self, f: impl FnOnce(&mut dyn StreamHandler, &Stream)) {
        if self.inner.reactor.is_closed() {
            self.close(); // freed from an earlier callback: nothing more is delivered
            return;
        }
        let taken = self.inner.handler.borrow_mut().take();
        let Some(mut h) = taken else { return };
        f(h.as_mut(), self);
        let leftover = {
            if self.inner.st.borrow().closed {
                Some(h)
            } else {
                let mut slot = self.inner.handler.borrow_mut();
                if slot.is_none() {
                    *slot = Some(h);
                    None
                } else {
                    Some(h)
                }
            }
        };
        drop(leftover);
    }

    fn on_action(&self, action: Action) -> Flow {
        if self.inner.st.borrow().closed {
            return Flow::Done;
        }
        match action {
            Action::Read => self.read_some(),
            Action::Write => {
                if self.inner.st.borrow().connecting {
                    self.finish_connect();
                } else {
                    self.flush();
                }
                Flow::Done
            }
            Action::Hup | Action::Error => {
                let (connecting, paused, done) = {
                    let st = self.inner.st.borrow();
                    (st.connecting, st.paused, st.ended || st.failed)
                };
                if connecting {
                    self.finish_connect();
                } else if !paused && !done {
                    // Find the end by reading: data first, then EOF or the error.
                    while self.read_some() == Flow::Again && self.is_open() && !self.inner.st.borrow().paused {}
                    if action == Action::Error && self.is_open() && !self.inner.st.borrow().failed {
                        let err = sys::take_socket_error(self.inner.raw).unwrap_or(0);
                        if err != 0 && !self.inner.st.borrow().ended {
                            self.fail(io::Error::from_raw_os_error(err));
                        }
                    }
                } else if done && action == Action::Error && self.queued() > 0 {
                    self.flush(); // surfaces the write error
                }
                Flow::Done
            }
        }
    }

    fn finish_connect(&self) {
        let err = match sys::take_socket_error(self.inner.raw) {
            Ok(0) => None,
            Ok(e) => Some(io::Error::from_raw_os_error(e)),
            Err(e) => Some(e),
        };
        if let Some(e) = err {
            self.fail(e);
            return;
        }
        self.inner.st.borrow_mut().connecting = false;
        if let Some(t) = self.inner.timer.take() {
            self.inner.reactor.timer_free(t);
        }
        self.update_interest();
        self.call(|h, s| h.on_connect(s));
        if self.is_open() && self.queued() > 0 {
            self.flush();
        } else if self.is_open() && self.inner.st.borrow().shutdown_wanted {
            self.do_shutdown();
        }
    }

    fn read_some(&self) -> Flow {
        let mut buf = take_buf();
        let flow = self.read_into(&mut buf);
        give_buf(buf);
        flow
    }

    fn read_into(&self, buf: &mut [u8]) -> Flow {
        let r = &self.inner.reactor;
        for _ in 0..READS_PER_ROUND {
            {
                let st = self.inner.st.borrow();
                if st.closed || st.ended || st.failed {
                    return Flow::Done;
                }
                if st.paused {
                    return Flow::Again; // not drained: keep the pending read for resume
                }
            }
            match sys::read(self.inner.raw, buf) {
                Ok(0) => {
                    let write_error = self.inner.st.borrow().write_error;
                    if let Some(errno) = write_error {
                        // all data delivered; the failed write is the connection's outcome
                        self.fail(io::Error::from_raw_os_error(errno));
                        return Flow::Done;
                    }
                    self.inner.st.borrow_mut().ended = true;
                    self.update_interest();
                    self.call(|h, s| h.on_end(s));
                    return Flow::Done;
                }
                Ok(n) => {
                    let hup = self.inner.watch.get().is_some_and(|id| r.hangup_seen(id));
                    if hup {
                        r.note_bytes_after_hup(n as u64);
                    }
                    self.call(|h, s| h.on_data(s, &buf[..n]));
                    if n < buf.len() && !hup {
                        // A short read on a stream socket empties the queue; anything newer
                        // raises a new edge. With a hang-up seen we read on to find the EOF.
                        return Flow::Done;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => return Flow::Done,
                Err(e) => {
                    self.fail(e);
                    return Flow::Done;
                }
            }
        }
        Flow::Again
    }

    fn flush(&self) {
        let mut st = self.inner.st.borrow_mut();
        while st.wpos < st.wbuf.len() {
            let wpos = st.wpos;
            match sys::write(self.inner.raw, &st.wbuf[wpos..]) {
                Ok(n) => st.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => {
                    drop(st);
                    self.update_interest();
                    return;
                }
                Err(e) => {
                    drop(st);
                    self.write_failed(e);
                    return;
                }
            }
        }
        st.wbuf.clear();
        st.wpos = 0;
        if st.wbuf.capacity() > 4 * st.high_water {
            st.wbuf = Vec::new();
        }
        let drained = std::mem::take(&mut st.above_high_water);
        let shut = st.shutdown_wanted;
        drop(st);
        self.update_interest();
        if shut {
            self.do_shutdown();
        }
        if drained {
            self.call(|h, s| h.on_drain(s));
        }
    }

    /// A write failed. The peer may have sent a reply before it went away (a backend that
    /// answers and closes without reading all of its input), and may even still be sending
    /// (it shut down only its reading side). So the stream becomes read-only: later writes
    /// fail at once, reading goes on, and `on_error` with the write's errno comes when the read
    /// side ends, after every byte before it. Never calls the handler from inside `write`.
    fn write_failed(&self, e: io::Error) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        let ended = {
            let mut st = self.inner.st.borrow_mut();
            if st.closed || st.failed || st.write_error.is_some() {
                return;
            }
            st.write_error = Some(errno);
            st.wbuf = Vec::new();
            st.wpos = 0;
            st.ended
        };
        self.update_interest();
        if ended {
            // Nothing more to read: report it on the next iteration.
            let weak = Rc::downgrade(&self.inner);
            self.inner.reactor.defer(Box::new(move |_| {
                if let Some(inner) = weak.upgrade() {
                    let s = Stream { inner };
                    if s.is_open() {
                        s.fail(io::Error::from_raw_os_error(errno));
                    }
                }
            }));
        }
    }

    /// Deliver `on_error` once and close.
    fn fail(&self, e: io::Error) {
        {
            let mut st = self.inner.st.borrow_mut();
            if st.closed || st.failed {
                return;
            }
            st.failed = true;
            st.connecting = false;
            st.wbuf = Vec::new();
            st.wpos = 0;
        }
        self.release_os();
        self.call(|h, s| h.on_error(s, e));
        self.close();
    }
}

/// Held by a stream's watch callback: when the reactor is closed (which drops every watch
/// callback), the stream closes too: socket closed, handler (and its captured data) released.
struct CloseWithReactor(Weak<Inner>);

impl Drop for CloseWithReactor {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            if inner.reactor.is_closed() {
                Stream { inner }.close();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(id) = self.watch.take() {
            self.reactor.unwatch(id);
        }
        if let Some(t) = self.timer.take() {
            self.reactor.timer_free(t);
        }
    }
}

#[cfg(test)]
mod tests;
