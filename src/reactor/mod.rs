//! The reactor: fd watchers with ordered dispatch, timers, deferred calls and cross-thread
//! wake-up/post, on top of mio (edge-triggered epoll on Linux).
//!
//! # Dispatch
//! Each epoll event goes through [`dispatch::decide`], a pure function that orders the
//! actions *read, write, hang-up, error*. The executor here adds the two things a pure function
//! cannot know:
//! * a callback's [`Flow`]: `Again` means "I did not drain, call me again"; the watcher is
//!   re-dispatched on the next iteration without waiting for a new (edge-triggered) event, and a
//!   hang-up or error of the same round waits until a read returns `Done`;
//! * a last check before a hang-up that follows a read: if the kernel still holds unread bytes
//!   (`FIONREAD`), the hang-up is held back and the watcher is read again. A hang-up is thus
//!   delivered only once the socket is empty.
//!
//! # Lifetimes
//! Callbacks are taken out of their slot while they run and put back afterwards, so a callback
//! may remove its own watcher (or any other), stop the reactor, or close it; a removed watcher
//! gets no further actions, and its callback is dropped after it returns.

pub mod dispatch;
mod slab;
mod timer;

pub use dispatch::{Action, Decider, Decision, Readiness, Sticky, READ, WRITE};

use crate::sys;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use once_cell::sync::Lazy;
use slab::{Key, Slab};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timer::Timers;

/// What a watcher callback tells the reactor after handling an action.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flow {
    /// Drained (read or wrote until `EAGAIN`), or nothing more wanted.
    Done,
    /// Did not drain: call again on the next iteration (level-triggered behaviour).
    Again,
}

/// How long [`Reactor::run`] runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunMode {
    /// Until [`Reactor::stop`] or nothing is left to watch.
    Default,
    /// One iteration, blocking until something happens.
    Once,
    /// One iteration without blocking.
    NoWait,
}

/// Why [`Reactor::run`] refused or failed.
#[derive(Debug)]
pub enum RunError {
    /// Called from inside one of this reactor's callbacks.
    Reentrant,
    /// Called in a process forked after the reactor was created.
    Forked,
    /// The reactor was closed.
    Closed,
    /// `epoll_wait` failed.
    Io(io::Error),
}

/// A watcher registration.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct WatchId(Key);

/// A timer registration.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId(Key);

/// A watcher callback.
pub type WatchFn = Box<dyn FnMut(&Reactor, WatchId, Action) -> Flow>;
/// A timer callback.
pub type TimerFn = Box<dyn FnMut(&Reactor, TimerId)>;
type Deferred = Box<dyn FnOnce(&Reactor)>;
type Posted = Box<dyn FnOnce(&Reactor) + Send>;

/// Reactor counters (see `heisen_reactor_counter`).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Epoll events received.
    pub events: u64,
    /// Callbacks invoked for fd actions.
    pub dispatches: u64,
    /// Events where readable arrived together with hang-up or error.
    pub read_with_hup: u64,
    /// Bytes read by streams after a hang-up or error had been reported.
    pub bytes_after_hup: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// Timer callbacks run.
    pub timers_fired: u64,
    /// Posted callbacks run.
    pub posts_run: u64,
    /// Hang-ups held back because unread bytes remained after a read callback.
    pub hups_held: u64,
}

#[derive(Default)]
struct CounterCells {
    events: Cell<u64>,
    dispatches: Cell<u64>,
    read_with_hup: Cell<u64>,
    bytes_after_hup: Cell<u64>,
    iterations: Cell<u64>,
    timers_fired: Cell<u64>,
    posts_run: Cell<u64>,
    hups_held: Cell<u64>,
}

struct WatchSlot {
    fd: RawFd,
    interest: u32,
    write_registered: bool,
    sticky: Sticky,
    keeps_alive: bool,
    queued: bool,
    handler: Option<WatchFn>,
}

struct Shared {
    waker: mio::Waker,
    posts: Mutex<Option<VecDeque<Posted>>>,
    has_posts: AtomicBool,
}

const WAKER_TOKEN: Token = Token(usize::MAX);
const READ_BIT: u8 = READ as u8;
const WRITE_BIT: u8 = WRITE as u8;

struct Core {
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    watches: RefCell<Slab<WatchSlot>>,
    watch_refs: Cell<usize>,
    timers: RefCell<Timers<TimerFn>>,
    pending: RefCell<VecDeque<Key>>,
    deferred: RefCell<VecDeque<Deferred>>,
    shared: Arc<Shared>,
    now: Cell<u64>,
    running: Cell<bool>,
    stop: Cell<bool>,
    closed: Cell<bool>,
    holds: Cell<usize>,
    /// sys::fork_generation() when created: a different value means a forked child.
    fork_gen: u64,
    now_stale: Cell<bool>,
    start_ms: u64,
    counters: CounterCells,
    trace: RefCell<Option<Box<dyn FnMut(&str)>>>,
    trace_on: Cell<bool>,
    /// `None`: the production decision ([`dispatch::decide`], inlined).
    decider: Option<Decider>,
}

/// The event loop. Single-threaded (`!Send`); clones are further references to the same loop.
#[derive(Clone)]
pub struct Reactor {
    core: Rc<Core>,
}

/// A thread-safe handle to wake a reactor or post work to it.
#[derive(Clone)]
pub struct Remote {
    shared: Arc<Shared>,
}

static TRACE_ENV: Lazy<bool> =
    Lazy::new(|| std::env::var_os("HEISEN_TRACE").is_some_and(|v| !v.is_empty() && v != "0"));

fn token_of(key: Key) -> Token {
    Token(((key.gen as usize) << 32) | key.index as usize)
}

fn key_of(token: usize) -> Key {
    Key { index: token as u32, gen: (token >> 32) as u32 }
}

fn interest_name(i: u32) -> &'static str {
    match i & (READ | WRITE) {
        0 => "-",
        READ => "R",
        WRITE => "W",
        _ => "RW",
    }
}

impl Reactor {
    /// A new reactor with its own epoll instance.
    pub fn new() -> io::Result<Reactor> {
        Self::build(None)
    }

    /// A reactor with another dispatch decision. For tests that demonstrate what a wrong order
    /// does; not reachable from the C ABI.
    #[doc(hidden)]
    pub fn with_decider(decider: Decider) -> io::Result<Reactor> {
        Self::build(Some(decider))
    }

    fn build(decider: Option<Decider>) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let core = Core {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(1024)),
            watches: RefCell::new(Slab::new()),
            watch_refs: Cell::new(0),
            timers: RefCell::new(Timers::new()),
            pending: RefCell::new(VecDeque::new()),
            deferred: RefCell::new(VecDeque::new()),
            shared: Arc::new(Shared {
                waker,
                posts: Mutex::new(Some(VecDeque::new())),
                has_posts: AtomicBool::new(false),
            }),
            now: Cell::new(0),
            running: Cell::new(false),
            stop: Cell::new(false),
            closed: Cell::new(false),
            holds: Cell::new(0),
            fork_gen: sys::fork_generation(),
            now_stale: Cell::new(true),
            start_ms: sys::monotonic_ms(),
            counters: CounterCells::default(),
            trace: RefCell::new(None),
            trace_on: Cell::new(*TRACE_ENV),
            decider,
        };
        Ok(Reactor { core: Rc::new(core) })
    }

    /// True when `other` is the same loop.
    pub fn same(&self, other: &Reactor) -> bool {
        Rc::ptr_eq(&self.core, &other.core)
    }

    /// The epoll descriptor, for embedding heisen in another loop: when it is readable, run
    /// the reactor with [`RunMode::NoWait`].
    pub fn backend_fd(&self) -> RawFd {
        self.core.poll.borrow().as_raw_fd()
    }

    /// Milliseconds until the reactor needs to run again: `None` = no timer (wait for the
    /// backend fd), `Some(0)` = work is pending now.
    pub fn backend_timeout(&self) -> Option<u64> {
        let c = &self.core;
        if !c.pending.borrow().is_empty()
            || !c.deferred.borrow().is_empty()
            || c.shared.has_posts.load(Ordering::Acquire)
        {
            return Some(0);
        }
        let now = self.clock_ms();
        c.timers.borrow_mut().next_deadline().map(|d| d.saturating_sub(now))
    }

    /// Monotonic milliseconds since the reactor was created, cached per iteration (read from
    /// the clock at most once per iteration, and only when something asks).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        let c = &self.core;
        if c.now_stale.get() || !c.running.get() {
            c.now.set(self.clock_ms());
            c.now_stale.set(false);
        }
        c.now.get()
    }

    fn clock_ms(&self) -> u64 {
        sys::monotonic_ms().saturating_sub(self.core.start_ms)
    }

    /// The next now_ms() reads the clock again.
    #[inline]
    fn update_now(&self) {
        self.core.now_stale.set(true);
    }

    /// True after [`Reactor::close`].
    pub fn is_closed(&self) -> bool {
        self.core.closed.get()
    }

    /// True when called in the process that created the reactor.
    pub fn same_process(&self) -> bool {
        sys::fork_generation() == self.core.fork_gen
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        let c = &self.core.counters;
        Counters {
            events: c.events.get(),
            dispatches: c.dispatches.get(),
            read_with_hup: c.read_with_hup.get(),
            bytes_after_hup: c.bytes_after_hup.get(),
            iterations: c.iterations.get(),
            timers_fired: c.timers_fired.get(),
            posts_run: c.posts_run.get(),
            hups_held: c.hups_held.get(),
        }
    }

    #[inline]
    fn bump(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    /// Add to the "bytes drained after a hang-up" counter (called by the stream layer).
    pub fn note_bytes_after_hup(&self, n: u64) {
        Self::bump(&self.core.counters.bytes_after_hup, n);
    }

    /// Install (or remove, with `None`) a trace callback, called with one line per event
    /// describing its readiness and the dispatch decided for it. `HEISEN_TRACE=1` in the
    /// environment prints the same lines to stderr.
    pub fn set_trace(&self, f: Option<Box<dyn FnMut(&str)>>) {
        self.core.trace_on.set(*TRACE_ENV || f.is_some());
        let old = self.core.trace.replace(f);
        drop(old);
    }

    #[inline]
    fn tracing(&self) -> bool {
        self.core.trace_on.get()
    }

    fn emit_trace(&self, line: &str) {
        if *TRACE_ENV {
            eprintln!("{line}");
        }
        // Take the callback out so it may call back into the reactor (even set_trace).
        let taken = self.core.trace.borrow_mut().take();
        if let Some(mut f) = taken {
            f(line);
            let mut slot = self.core.trace.borrow_mut();
            if slot.is_none() {
                *slot = Some(f);
            }
        }
    }

    // ---------------------------------------------------------------- watchers

    /// Watch `fd` with `interest` ([`READ`], [`WRITE`], both, or 0 for hang-up/error only).
    /// The fd must stay open until the watch is removed.
    pub fn watch(&self, fd: RawFd, interest: u32, f: WatchFn) -> io::Result<WatchId> {
        if self.core.closed.get() {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let slot = WatchSlot {
            fd,
            interest: interest & (READ | WRITE),
            write_registered: interest & WRITE != 0,
            sticky: Sticky::default(),
            keeps_alive: true,
            queued: false,
            handler: Some(f),
        };
        let key = self.core.watches.borrow_mut().insert(slot);
        let mio_interest = if interest & WRITE != 0 { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        let res = self.core.poll.borrow().registry().register(&mut SourceFd(&fd), token_of(key), mio_interest);
        match res {
            Ok(()) => {
                self.core.watch_refs.set(self.core.watch_refs.get() + 1);
                Ok(WatchId(key))
            }
            Err(e) => {
                let slot = self.core.watches.borrow_mut().remove(key);
                drop(slot);
                Err(e)
            }
        }
    }

    /// Change a watcher's interest. Costs an `epoll_ctl` only when write interest changes;
    /// enabling reads re-delivers whatever was reported while they were off.
    pub fn set_interest(&self, id: WatchId, interest: u32) -> io::Result<()> {
        let interest = interest & (READ | WRITE);
        let mut watches = self.core.watches.borrow_mut();
        let Some(slot) = watches.get_mut(id.0) else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        let old = slot.interest;
        if old == interest {
            return Ok(());
        }
        slot.interest = interest;
        let want_write = interest & WRITE != 0;
        if want_write != slot.write_registered {
            let mio_interest = if want_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            self.core.poll.borrow().registry().reregister(&mut SourceFd(&slot.fd), token_of(id.0), mio_interest)?;
            slot.write_registered = want_write;
        }
        let s = slot.sticky;
        let newly_read = interest & READ != 0 && old & READ == 0;
        let newly_write = want_write && old & WRITE == 0;
        let due = (newly_read && (s.has(Sticky::READ_PENDING) || (s.has(Sticky::READ_CLOSED) && !s.has(Sticky::HUP_SENT)) || (s.has(Sticky::ERROR) && !s.has(Sticky::ERR_SENT))))
            || (newly_write && s.has(Sticky::WRITE_PENDING));
        if due && !slot.queued {
            slot.queued = true;
            drop(watches);
            self.core.pending.borrow_mut().push_back(id.0);
        }
        Ok(())
    }

    /// The current interest of a watcher.
    pub fn interest(&self, id: WatchId) -> Option<u32> {
        self.core.watches.borrow().get(id.0).map(|s| s.interest)
    }

    /// True when a hang-up or error has been reported for this watcher (sticky).
    pub fn hangup_seen(&self, id: WatchId) -> bool {
        self.core.watches.borrow().get(id.0).is_some_and(|s| s.sticky.has(Sticky::READ_CLOSED) || s.sticky.has(Sticky::ERROR))
    }

    /// True while the watcher exists.
    pub fn is_watching(&self, id: WatchId) -> bool {
        self.core.watches.borrow().get(id.0).is_some()
    }

    /// Whether this watcher keeps [`RunMode::Default`] running (default: yes).
    pub fn set_watch_ref(&self, id: WatchId, keeps_alive: bool) {
        let mut watches = self.core.watches.borrow_mut();
        if let Some(slot) = watches.get_mut(id.0) {
            if slot.keeps_alive != keeps_alive {
                slot.keeps_alive = keeps_alive;
                let r = self.core.watch_refs.get();
                self.core.watch_refs.set(if keeps_alive { r + 1 } else { r - 1 });
            }
        }
    }

    /// Remove a watcher. Safe inside its own callback: no further actions are delivered and the
    /// callback is dropped once it returns. Does not close the fd.
    pub fn unwatch(&self, id: WatchId) {
        let slot = self.core.watches.borrow_mut().remove(id.0);
        if let Some(slot) = slot {
            if slot.keeps_alive {
                self.core.watch_refs.set(self.core.watch_refs.get() - 1);
            }
            if self.same_process() {
                let _ = self.core.poll.borrow().registry().deregister(&mut SourceFd(&slot.fd));
            }
            drop(slot); // handler (if not running) dropped here, outside any borrow
        }
    }

    #[inline]
    fn decide(&self, ready: Readiness, sticky: Sticky, interest: u32) -> Decision {
        match self.core.decider {
            None => dispatch::decide(ready, sticky, interest),
            Some(f) => f(ready, sticky, interest),
        }
    }

    fn dispatch_event(&self, token: usize, ready: Readiness) {
        let key = key_of(token);
        if ready.readable_with_hangup() {
            Self::bump(&self.core.counters.read_with_hup, 1);
        }
        let tracing = self.tracing();
        let (decision, before, fd, interest, fast) = {
            let mut watches = self.core.watches.borrow_mut();
            let Some(slot) = watches.get_mut(key) else { return };
            let before = slot.sticky;
            // Fast path: no hang-up or error ever seen and a single read or write due, the
            // common case: a few bit operations, one borrow before the callback, one after.
            if self.core.decider.is_none() && !tracing {
                if let Some((sticky, due)) = dispatch::decide_quiet(ready, before, slot.interest) {
                    slot.sticky = sticky;
                    let action = match due {
                        0 => return,
                        READ_BIT => Action::Read,
                        WRITE_BIT => Action::Write,
                        _ => {
                            let d = dispatch::decide(ready, before, slot.interest);
                            drop(watches);
                            self.execute(key, d, before);
                            return;
                        }
                    };
                    let handler = slot.handler.take();
                    drop(watches);
                    if let Some(handler) = handler {
                        self.run_single(key, action, handler);
                    }
                    return;
                }
            }
            let d = self.decide(ready, before, slot.interest);
            slot.sticky = d.sticky;
            let fast = match d.actions() {
                [a @ (Action::Read | Action::Write)] if !tracing => slot.handler.take().map(|h| (*a, h)),
                _ => None,
            };
            (d, before, slot.fd, slot.interest, fast)
        };
        if let Some((action, handler)) = fast {
            self.run_single(key, action, handler);
            return;
        }
        if self.tracing() {
            let mut line = String::new();
            let _ = write!(line, "heisen: fd={fd} ready={ready} interest={} -> {decision}", interest_name(interest));
            if before.has(Sticky::READ_CLOSED) || before.has(Sticky::ERROR) {
                line.push_str(" (hang-up seen before)");
            }
            self.emit_trace(&line);
        }
        self.execute(key, decision, before);
    }

    /// Deliver one read or write action and put the handler back.
    #[inline]
    fn run_single(&self, key: Key, action: Action, mut handler: WatchFn) {
        Self::bump(&self.core.counters.dispatches, 1);
        let flow = handler(self, WatchId(key), action);
        let mut queue = false;
        let leftover = {
            let mut watches = self.core.watches.borrow_mut();
            match watches.get_mut(key) {
                Some(slot) => {
                    slot.handler = Some(handler);
                    let bit = if action == Action::Read { Sticky::READ_PENDING } else { Sticky::WRITE_PENDING };
                    if flow == Flow::Done {
                        slot.sticky.set(bit, false);
                    } else if !slot.queued {
                        slot.queued = true;
                        queue = true;
                    }
                    None
                }
                None => Some(handler), // removed by its own callback
            }
        };
        if queue {
            self.core.pending.borrow_mut().push_back(key);
        }
        // Dropped after the borrow ends: its destructor may call back into the reactor.
        drop(leftover);
    }

    fn run_pending(&self) {
        let n = self.core.pending.borrow().len();
        for _ in 0..n {
            let Some(key) = self.core.pending.borrow_mut().pop_front() else { break };
            let (decision, before) = {
                let mut watches = self.core.watches.borrow_mut();
                let Some(slot) = watches.get_mut(key) else { continue };
                slot.queued = false;
                let before = slot.sticky;
                let d = self.decide(Readiness::default(), before, slot.interest);
                slot.sticky = d.sticky;
                (d, before)
            };
            if self.tracing() {
                self.emit_trace(&format!("heisen: again -> {decision}"));
            }
            self.execute(key, decision, before);
        }
    }

    fn requeue(&self, key: Key) {
        let mut watches = self.core.watches.borrow_mut();
        if let Some(slot) = watches.get_mut(key) {
            if !slot.queued {
                slot.queued = true;
                drop(watches);
                self.core.pending.borrow_mut().push_back(key);
            }
        }
    }

    fn execute(&self, key: Key, decision: Decision, before: Sticky) {
        if decision.actions().is_empty() {
            return;
        }
        let handler = match self.core.watches.borrow_mut().get_mut(key) {
            Some(slot) => slot.handler.take(),
            None => return,
        };
        let Some(mut handler) = handler else { return };
        let id = WatchId(key);
        let mut hold_rest = false; // a read did not drain: hang-up/error wait
        let mut read_done = false;
        for &action in decision.actions() {
            let (interest, fd) = match self.core.watches.borrow().get(key) {
                Some(slot) => (slot.interest, slot.fd),
                None => break, // removed by an earlier callback of this round
            };
            match action {
                Action::Read | Action::Write => {
                    let bit = if action == Action::Read { READ } else { WRITE };
                    if interest & bit == 0 {
                        if action == Action::Read {
                            hold_rest = true; // reads paused mid-round: keep the hang-up for later
                        }
                        continue;
                    }
                    Self::bump(&self.core.counters.dispatches, 1);
                    let flow = handler(self, id, action);
                    let mut watches = self.core.watches.borrow_mut();
                    let Some(slot) = watches.get_mut(key) else { break };
                    match (action, flow) {
                        (Action::Read, Flow::Done) => {
                            slot.sticky.set(Sticky::READ_PENDING, false);
                            read_done = true;
                        }
                        (_, Flow::Done) => slot.sticky.set(Sticky::WRITE_PENDING, false),
                        (_, Flow::Again) => {
                            if action == Action::Read {
                                hold_rest = true;
                            }
                            drop(watches);
                            self.requeue(key);
                        }
                    }
                }
                Action::Hup | Action::Error => {
                    let unread = !hold_rest && read_done && interest & READ != 0 && sys::readable_bytes(fd) > 0;
                    if hold_rest || unread {
                        // Not drained: un-send and read again first.
                        if let Some(slot) = self.core.watches.borrow_mut().get_mut(key) {
                            if action == Action::Hup {
                                slot.sticky.set(Sticky::HUP_SENT, before.has(Sticky::HUP_SENT));
                            } else {
                                slot.sticky.set(Sticky::ERR_SENT, before.has(Sticky::ERR_SENT));
                            }
                            if unread {
                                slot.sticky.set(Sticky::READ_PENDING, true);
                            }
                        }
                        if unread {
                            Self::bump(&self.core.counters.hups_held, 1);
                            hold_rest = true;
                            self.requeue(key);
                        }
                        continue;
                    }
                    Self::bump(&self.core.counters.dispatches, 1);
                    let _ = handler(self, id, action);
                }
            }
        }
        // Put the handler back, unless the watcher was removed meanwhile (then drop it here,
        // after the last callback returned, outside any borrow).
        let leftover = match self.core.watches.borrow_mut().get_mut(key) {
            Some(slot) => {
                slot.handler = Some(handler);
                None
            }
            None => Some(handler),
        };
        drop(leftover);
    }

    // ---------------------------------------------------------------- timers

    /// A new (stopped) timer.
    pub fn timer(&self, f: TimerFn) -> TimerId {
        TimerId(self.core.timers.borrow_mut().add(f))
    }

    /// Start or re-arm: fire after `after_ms`, then every `repeat_ms` (0 = once).
    pub fn timer_start(&self, id: TimerId, after_ms: u64, repeat_ms: u64) {
        let now = self.now_ms();
        self.core.timers.borrow_mut().start(id.0, now.saturating_add(after_ms), repeat_ms);
    }

    /// Stop a timer (it can be started again).
    pub fn timer_stop(&self, id: TimerId) {
        self.core.timers.borrow_mut().stop(id.0);
    }

    /// True while the timer is armed.
    pub fn timer_active(&self, id: TimerId) -> bool {
        self.core.timers.borrow().is_active(id.0)
    }

    /// Whether an armed timer keeps [`RunMode::Default`] running (default: yes).
    pub fn timer_set_ref(&self, id: TimerId, keeps_alive: bool) {
        self.core.timers.borrow_mut().set_ref(id.0, keeps_alive);
    }

    /// Remove a timer. Safe inside its own callback.
    pub fn timer_free(&self, id: TimerId) {
        let cb = self.core.timers.borrow_mut().remove(id.0);
        drop(cb);
    }

    fn run_timers(&self) {
        if self.core.timers.borrow().is_empty() {
            return;
        }
        let now = self.now_ms();
        loop {
            let due = self.core.timers.borrow_mut().pop_due(now);
            let Some((key, mut cb)) = due else { break };
            Self::bump(&self.core.counters.timers_fired, 1);
            cb(self, TimerId(key));
            let leftover = self.core.timers.borrow_mut().restore(key, cb);
            drop(leftover);
            if self.core.stop.get() || self.core.closed.get() {
                break;
            }
        }
    }

    // ---------------------------------------------------------------- deferred and remote

    /// Run `f` at the start of the next iteration (same thread), in order.
    pub fn defer(&self, f: Box<dyn FnOnce(&Reactor)>) {
        self.core.deferred.borrow_mut().push_back(f);
    }

    fn run_deferred(&self) {
        let n = self.core.deferred.borrow().len();
        for _ in 0..n {
            if self.core.closed.get() {
                break;
            }
            let Some(f) = self.core.deferred.borrow_mut().pop_front() else { break };
            f(self);
        }
    }

    /// A thread-safe handle for [`Remote::wake`] and [`Remote::post`].
    pub fn remote(&self) -> Remote {
        Remote { shared: self.core.shared.clone() }
    }

    fn run_posts(&self) {
        let posts = &self.core.shared.has_posts;
        if !posts.load(Ordering::Acquire) || !posts.swap(false, Ordering::AcqRel) {
            return;
        }
        let batch = {
            let mut q = self.core.shared.posts.lock().unwrap_or_else(|e| e.into_inner());
            match q.as_mut() {
                Some(q) => std::mem::take(q),
                None => return,
            }
        };
        for f in batch {
            if self.core.closed.get() {
                break; // the rest of the batch is dropped (their captured data released)
            }
            Self::bump(&self.core.counters.posts_run, 1);
            f(self);
        }
    }

    /// Keep [`RunMode::Default`] running while held (for handles such as wakers).
    pub fn hold(&self) {
        self.core.holds.set(self.core.holds.get() + 1);
    }

    /// Undo one [`Reactor::hold`].
    pub fn release(&self) {
        self.core.holds.set(self.core.holds.get().saturating_sub(1));
    }

    fn alive(&self) -> bool {
        let c = &self.core;
        c.watch_refs.get() > 0
            || c.timers.borrow().active_refs() > 0
            || c.holds.get() > 0
            || !c.pending.borrow().is_empty()
            || !c.deferred.borrow().is_empty()
            || c.shared.has_posts.load(Ordering::Acquire)
    }

    // ---------------------------------------------------------------- running

    /// Ask [`Reactor::run`] to return after the current callback. Safe anywhere on the
    /// reactor's thread.
    pub fn stop(&self) {
        self.core.stop.set(true);
    }

    /// True while [`Reactor::run`] is on the stack.
    pub fn is_running(&self) -> bool {
        self.core.running.get()
    }

    /// Run the loop.
    pub fn run(&self, mode: RunMode) -> Result<(), RunError> {
        let c = &self.core;
        if c.closed.get() {
            return Err(RunError::Closed);
        }
        if c.running.get() {
            return Err(RunError::Reentrant);
        }
        if !self.same_process() {
            return Err(RunError::Forked);
        }
        struct Running<'a>(&'a Core);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.running.set(false);
            }
        }
        c.running.set(true);
        c.stop.set(false);
        let guard = Running(c);
        let result = self.run_loop(mode);
        drop(guard);
        result
    }

    fn run_loop(&self, mode: RunMode) -> Result<(), RunError> {
        let c = &self.core;
        loop {
            self.update_now();
            let did_work = self.run_ready_work();
            if c.stop.get() || c.closed.get() {
                return Ok(());
            }
            if mode == RunMode::Default && !self.alive() {
                return Ok(());
            }
            // Work done before the poll: a single iteration must not then block.
            let busy = !c.pending.borrow().is_empty()
                || !c.deferred.borrow().is_empty()
                || c.shared.has_posts.load(Ordering::Acquire);
            let timeout = if mode == RunMode::NoWait || busy || (mode == RunMode::Once && did_work) {
                Some(Duration::ZERO)
            } else {
                let next = c.timers.borrow_mut().next_deadline();
                next.map(|d| Duration::from_millis(d.saturating_sub(self.now_ms())))
            };
            self.poll_once(timeout)?;
            Self::bump(&c.counters.iterations, 1);
            if mode != RunMode::Default {
                if !c.closed.get() {
                    self.update_now();
                    if !c.timers.borrow().is_empty() {
                        self.run_timers();
                    }
                    if c.shared.has_posts.load(Ordering::Relaxed) {
                        self.run_posts();
                    }
                }
                return Ok(());
            }
        }
    }

    /// Timers due, posts, deferred calls and re-dispatches; true when any ran. The checks are
    /// inline and cheap, so an idle queue costs a load, not a call.
    #[inline]
    fn run_ready_work(&self) -> bool {
        let c = &self.core;
        let mut did = false;
        if !c.timers.borrow().is_empty() {
            let before = c.counters.timers_fired.get();
            self.run_timers();
            did |= c.counters.timers_fired.get() != before;
        }
        if c.shared.has_posts.load(Ordering::Relaxed) {
            self.run_posts();
            did = true;
        }
        if !c.deferred.borrow().is_empty() {
            self.run_deferred();
            did = true;
        }
        if !c.pending.borrow().is_empty() {
            self.run_pending();
            did = true;
        }
        did
    }

    fn poll_once(&self, timeout: Option<Duration>) -> Result<(), RunError> {
        let c = &self.core;
        let mut events = c.events.borrow_mut();
        match c.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(RunError::Io(e)),
        }
        self.update_now();
        // `events` stays borrowed while callbacks run: only this loop touches it, and a
        // callback that calls run() is refused (Reentrant) before it could.
        for e in events.iter() {
            if e.token() == WAKER_TOKEN {
                continue;
            }
            Self::bump(&c.counters.events, 1);
            self.dispatch_event(e.token().0, Readiness::from_event(e));
            if c.closed.get() {
                break; // closed by a callback: nothing more is delivered
            }
        }
        Ok(())
    }

    /// Close the reactor: every watcher, timer and queued call is dropped (their callbacks'
    /// captured data released) and later operations fail. Safe inside a callback: [`run`]
    /// then returns once that callback does, and nothing else is called meanwhile (the running
    /// callback itself is dropped after it returns).
    ///
    /// [`run`]: Reactor::run
    pub fn close(&self) {
        let c = &self.core;
        if c.closed.get() {
            return;
        }
        c.closed.set(true);
        c.stop.set(true);
        let same = self.same_process();
        let watches = c.watches.borrow_mut().drain();
        if same {
            let poll = c.poll.borrow();
            for w in &watches {
                let _ = poll.registry().deregister(&mut SourceFd(&w.fd));
            }
        }
        c.watch_refs.set(0);
        let timers = c.timers.borrow_mut().drain();
        let pending = std::mem::take(&mut *c.pending.borrow_mut());
        let deferred = std::mem::take(&mut *c.deferred.borrow_mut());
        let posts = c.shared.posts.lock().unwrap_or_else(|e| e.into_inner()).take();
        let trace = c.trace.borrow_mut().take();
        // Dropped here, outside every borrow: their destructors may call back into us.
        drop((watches, timers, pending, deferred, posts, trace));
    }
}

impl Remote {
    /// Interrupt the reactor's wait (thread-safe).
    pub fn wake(&self) -> io::Result<()> {
        self.shared.waker.wake()
    }

    /// Queue `f` to run on the reactor's thread, in order, once per post (thread-safe).
    /// Fails with `EPIPE` when the reactor is closed (then `f` is dropped here).
    pub fn post(&self, f: Box<dyn FnOnce(&Reactor) + Send>) -> io::Result<()> {
        {
            let mut q = self.shared.posts.lock().unwrap_or_else(|e| e.into_inner());
            match q.as_mut() {
                Some(q) => q.push_back(f),
                None => return Err(io::Error::from_raw_os_error(libc::EPIPE)),
            }
            self.shared.has_posts.store(true, Ordering::Release);
        }
        self.shared.waker.wake()
    }
}

#[cfg(test)]
mod tests;
