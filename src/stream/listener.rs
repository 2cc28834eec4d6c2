//! Listening sockets: accept until `EAGAIN`, hand each new connection to a callback; pause and
//! retry when the process runs out of descriptors.

use super::Address;
use crate::reactor::{Action, Flow, Reactor, TimerId, WatchId, READ};
use crate::sys;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

/// Accepts per readiness round before yielding to other watchers.
const ACCEPTS_PER_ROUND: usize = 64;
/// How long accepting pauses after `EMFILE`/`ENFILE`.
pub const EMFILE_RETRY_MS: u64 = 100;

/// Called with each accepted connection (non-blocking, close-on-exec).
pub type AcceptFn = Box<dyn FnMut(&Reactor, OwnedFd)>;

struct Inner {
    reactor: Reactor,
    fd: RefCell<Option<OwnedFd>>,
    raw: RawFd,
    watch: Cell<Option<WatchId>>,
    retry: Cell<Option<TimerId>>,
    paused_count: Cell<u64>,
}

/// A listening socket on the reactor.
#[derive(Clone)]
pub struct Listener {
    inner: Rc<Inner>,
}

impl Listener {
    /// Bind and listen. `tcp:127.0.0.1:0` picks a free port (see [`Listener::port`]).
    /// A unix path is not removed first: remove a stale socket file yourself.
    pub fn bind(r: &Reactor, addr: &Address, backlog: i32, reuseport: bool, f: AcceptFn) -> io::Result<Listener> {
        let backlog = if backlog <= 0 { 1024 } else { backlog };
        let fd: OwnedFd = match addr {
            Address::Tcp(sa) => sys::listen_tcp(*sa, backlog, reuseport)?,
            Address::Unix(p) => {
                let l = std::os::unix::net::UnixListener::bind(p)?;
                l.set_nonblocking(true)?;
                sys::set_backlog(l.as_raw_fd(), backlog)?;
                l.into()
            }
        };
        Listener::from_fd(r, fd, f)
    }

    /// Adopt a socket that is already listening (made non-blocking here).
    pub fn from_fd(r: &Reactor, fd: OwnedFd, mut f: AcceptFn) -> io::Result<Listener> {
        sys::set_nonblocking(fd.as_raw_fd())?;
        let raw = fd.as_raw_fd();
        let inner = Rc::new(Inner {
            reactor: r.clone(),
            fd: RefCell::new(Some(fd)),
            raw,
            watch: Cell::new(None),
            retry: Cell::new(None),
            paused_count: Cell::new(0),
        });
        let guard = CloseWithReactor(Rc::downgrade(&inner));
        let id = r.watch(
            raw,
            READ,
            Box::new(move |r, _, action| {
                let Some(inner) = guard.0.upgrade() else { return Flow::Done };
                if action != Action::Read {
                    return Flow::Done;
                }
                for _ in 0..ACCEPTS_PER_ROUND {
                    match sys::accept(inner.raw) {
                        Ok(conn) => f(r, conn),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Done,
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)) => {
                            Listener { inner }.pause_for(EMFILE_RETRY_MS);
                            // Not drained: connections wait in the backlog. `Again` keeps the
                            // pending read, delivered when the retry turns reads back on.
                            return Flow::Again;
                        }
                        Err(_) => {} // ECONNABORTED and friends: that connection is gone, go on
                    }
                    if !inner.watch.get().is_some_and(|id| r.is_watching(id)) {
                        return Flow::Done; // closed by the callback
                    }
                }
                Flow::Again
            }),
        )?;
        inner.watch.set(Some(id));
        Ok(Listener { inner })
    }

    fn pause_for(&self, ms: u64) {
        let r = &self.inner.reactor;
        let Some(id) = self.inner.watch.get() else { return };
        let _ = r.set_interest(id, 0);
        self.inner.paused_count.set(self.inner.paused_count.get() + 1);
        let t = match self.inner.retry.get() {
            Some(t) => t,
            None => {
                let weak = Rc::downgrade(&self.inner);
                let t = r.timer(Box::new(move |r, _| {
                    if let Some(inner) = weak.upgrade() {
                        if let Some(id) = inner.watch.get() {
                            let _ = r.set_interest(id, READ);
                        }
                    }
                }));
                self.inner.retry.set(Some(t));
                t
            }
        };
        r.timer_start(t, ms, 0);
    }

    /// How many times accepting paused for lack of descriptors.
    pub fn pauses(&self) -> u64 {
        self.inner.paused_count.get()
    }

    /// The bound TCP port.
    pub fn port(&self) -> io::Result<u16> {
        sys::local_port(self.inner.raw)
    }

    /// The listening descriptor.
    pub fn fd(&self) -> RawFd {
        self.inner.raw
    }

    /// Stop listening and close the socket. Idempotent; also happens when the reactor closes.
    pub fn close(&self) {
        let r = &self.inner.reactor;
        if let Some(id) = self.inner.watch.take() {
            r.unwatch(id);
        }
        if let Some(t) = self.inner.retry.take() {
            r.timer_free(t);
        }
        let fd = self.inner.fd.borrow_mut().take();
        drop(fd);
    }
}

/// Held by the accept callback: closing the reactor (which drops it) closes the listener.
struct CloseWithReactor(std::rc::Weak<Inner>);

impl Drop for CloseWithReactor {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            if inner.reactor.is_closed() {
                Listener { inner }.close();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(id) = self.watch.take() {
            self.reactor.unwatch(id);
        }
        if let Some(t) = self.retry.take() {
            self.reactor.timer_free(t);
        }
    }
}
