//! The dispatch decision: a pure function from one event's readiness (as mio reports it) and a
//! watcher's sticky state to the ordered list of actions the reactor performs.
//!
//! This is the heart of heisen's guarantee. The order is always **read, write, hang-up, error**:
//! readable data is delivered first, and a hang-up or error is delivered once, only after a read
//! callback has drained the socket (see [`crate::reactor::Reactor`] for how the executor checks
//! that). A reactor that did it the other way round (hang-up first) loses the reply that sits in
//! the socket when a peer writes and closes at once: the bug this library exists to prevent.
//!
//! Readiness → flags, as mio derives them from the epoll mask on Linux:
//! `readable = IN|PRI`, `writable = OUT`, `read_closed = HUP || (IN && RDHUP)`,
//! `write_closed = HUP || (OUT && ERR) || mask == ERR`, `error = ERR`, `priority = PRI`.

use std::fmt;

/// Interest bit: deliver [`Action::Read`].
pub const READ: u32 = 1;
/// Interest bit: deliver [`Action::Write`].
pub const WRITE: u32 = 2;

/// One event's readiness as mio reports it.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    pub read_closed: bool,
    pub write_closed: bool,
    pub error: bool,
    pub priority: bool,
}

impl Readiness {
    /// Build from mio's event accessors.
    pub fn from_event(e: &mio::event::Event) -> Readiness {
        Readiness {
            readable: e.is_readable(),
            writable: e.is_writable(),
            read_closed: e.is_read_closed(),
            write_closed: e.is_write_closed(),
            error: e.is_error(),
            priority: e.is_priority(),
        }
    }

    /// All 64 combinations, for exhaustive tests.
    pub fn all() -> impl Iterator<Item = Readiness> {
        (0u8..64).map(|b| Readiness {
            readable: b & 1 != 0,
            writable: b & 2 != 0,
            read_closed: b & 4 != 0,
            write_closed: b & 8 != 0,
            error: b & 16 != 0,
            priority: b & 32 != 0,
        })
    }

    /// True when readable data arrived in the same event as a hang-up or error.
    pub fn readable_with_hangup(&self) -> bool {
        self.readable && (self.read_closed || self.write_closed || self.error)
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.readable, "READABLE"),
            (self.writable, "WRITABLE"),
            (self.read_closed, "READ_CLOSED"),
            (self.write_closed, "WRITE_CLOSED"),
            (self.error, "ERROR"),
            (self.priority, "PRIORITY"),
        ];
        write_flags(f, names.iter().copied())
    }
}

/// Per-watcher state that survives between events (epoll is edge-triggered under mio, so what
/// was reported once must be remembered).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Sticky {
    /// Something to read (data, EOF or a pending error) was reported and not yet drained.
    pub read_pending: bool,
    /// Writable was reported and a write callback has not yet said it hit `EAGAIN`.
    pub write_pending: bool,
    /// The read side was reported closed (RDHUP/HUP). Survives pausing and resuming reads.
    pub read_closed: bool,
    /// The whole connection was reported hung up (HUP, or write side closed).
    pub write_closed: bool,
    /// An error was reported.
    pub error: bool,
    /// The hang-up action has been delivered (it is delivered once).
    pub hup_sent: bool,
    /// The error action has been delivered (it is delivered once).
    pub err_sent: bool,
}

impl Sticky {
    /// Every combination of the sticky flags, for exhaustive tests.
    pub fn all() -> impl Iterator<Item = Sticky> {
        (0u8..128).map(|b| Sticky {
            read_pending: b & 1 != 0,
            write_pending: b & 2 != 0,
            read_closed: b & 4 != 0,
            write_closed: b & 8 != 0,
            error: b & 16 != 0,
            hup_sent: b & 32 != 0,
            err_sent: b & 64 != 0,
        })
    }
}

/// What the reactor does for a watcher, in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Readable, or something to find out by reading (EOF, pending error).
    Read,
    /// Writable.
    Write,
    /// The peer hung up. Delivered once, after reads were drained.
    Hup,
    /// The socket has an error. Delivered once, after reads were drained.
    Error,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "READ",
            Action::Write => "WRITE",
            Action::Hup => "HUP",
            Action::Error => "ERROR",
        }
    }
}

/// The decision for one event: actions in order, and the watcher's new sticky state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Decision {
    actions: [Action; 4],
    len: u8,
    pub sticky: Sticky,
}

impl Decision {
    fn new(sticky: Sticky) -> Decision {
        Decision { actions: [Action::Read; 4], len: 0, sticky }
    }
    fn push(&mut self, a: Action) {
        self.actions[self.len as usize] = a;
        self.len += 1;
    }
    /// The actions, in the order they are performed.
    pub fn actions(&self) -> &[Action] {
        &self.actions[..self.len as usize]
    }
    /// Build a decision from explicit parts (used by tests that model a wrong dispatch order).
    pub fn from_parts(actions: &[Action], sticky: Sticky) -> Decision {
        let mut d = Decision::new(sticky);
        for &a in actions {
            d.push(a);
        }
        d
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("-");
        }
        for (i, a) in self.actions().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a.name())?;
        }
        Ok(())
    }
}

/// The signature of a dispatch decision. Production code always uses [`decide`]; the type
/// exists so a test can plug in a deliberately wrong order and show that the tests catch it.
pub type Decider = fn(Readiness, Sticky, u32) -> Decision;

/// Decide what to do with one event.
///
/// * `ready`: the event's readiness; `Readiness::default()` re-evaluates sticky state alone
///   (used when a callback asked to be called again, or reads were resumed).
/// * `sticky`: the watcher's state before the event.
/// * `interest`: [`READ`] and/or [`WRITE`]; `0` asks for hang-up and error only.
///
/// Rules:
/// 1. Order: `Read`, `Write`, `Hup`, `Error`.
/// 2. With read interest, `Read` is delivered whenever there is something to read: readable,
///    read-closed or error (reading is how EOF and the data before an error are found), or a
///    pending read remembered from earlier (edge-triggered: the edge is not repeated).
/// 3. With read interest, `Hup` follows `Read` in the same round (the executor delivers it only
///    if that read drained the socket). Without read interest, `Hup` is delivered only for a full
///    hang-up (write side closed too); a half-close waits until reads resume and drain, so data
///    the peer sent before closing is never skipped.
/// 4. `Error` is delivered after `Read` (with read interest) or at once (without).
/// 5. `Hup` and `Error` are delivered once each; read-closed and error are sticky.
/// 6. A short read never implies EOF: only the peer's close (`read_closed`) produces `Hup`.
pub fn decide(ready: Readiness, sticky: Sticky, interest: u32) -> Decision {
    let mut s = sticky;
    s.read_closed |= ready.read_closed;
    s.write_closed |= ready.write_closed;
    s.error |= ready.error;
    s.read_pending |= ready.readable || ready.read_closed || ready.error;
    s.write_pending |= ready.writable;

    let mut d = Decision::new(s);
    let wants_read = interest & READ != 0;
    let wants_write = interest & WRITE != 0;

    if wants_read && s.read_pending {
        d.push(Action::Read);
    }
    if wants_write && s.write_pending {
        d.push(Action::Write);
    }
    let hup_due = if wants_read { s.read_closed } else { s.write_closed };
    if hup_due && !s.hup_sent {
        d.push(Action::Hup);
        d.sticky.hup_sent = true;
    }
    if s.error && !s.err_sent {
        d.push(Action::Error);
        d.sticky.err_sent = true;
    }
    d
}

fn write_flags<'a>(
    f: &mut fmt::Formatter<'_>,
    flags: impl Iterator<Item = (bool, &'a str)>,
) -> fmt::Result {
    let mut first = true;
    for (on, name) in flags {
        if on {
            if !first {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            first = false;
        }
    }
    if first {
        f.write_str("-")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(d: &Decision, a: Action) -> Option<usize> {
        d.actions().iter().position(|&x| x == a)
    }

    /// Every readiness combination × every sticky state × every interest.
    #[test]
    fn exhaustive_invariants() {
        let mut count = 0;
        for ready in Readiness::all() {
            for sticky in Sticky::all() {
                for interest in 0..4u32 {
                    count += 1;
                    let d = decide(ready, sticky, interest);
                    let acts = d.actions();
                    // 1. order is Read < Write < Hup < Error, no duplicates
                    let rank = |a: &Action| *a as u8;
                    assert!(acts.windows(2).all(|w| rank(&w[0]) < rank(&w[1])), "{ready} {sticky:?} {interest}: {d}");
                    // interest is respected
                    if interest & READ == 0 {
                        assert!(pos(&d, Action::Read).is_none());
                    }
                    if interest & WRITE == 0 {
                        assert!(pos(&d, Action::Write).is_none());
                    }
                    // 2. with read interest, anything that may carry data produces Read, and Read
                    //    comes before Hup/Error
                    if interest & READ != 0 && (ready.readable || ready.read_closed || ready.error || sticky.read_pending) {
                        let r = pos(&d, Action::Read).expect("read must be delivered");
                        if let Some(h) = pos(&d, Action::Hup) {
                            assert!(r < h);
                        }
                        if let Some(e) = pos(&d, Action::Error) {
                            assert!(r < e);
                        }
                    }
                    // 5. once only
                    if sticky.hup_sent {
                        assert!(pos(&d, Action::Hup).is_none());
                    }
                    if sticky.err_sent {
                        assert!(pos(&d, Action::Error).is_none());
                    }
                    // sticky flags never go back
                    let n = d.sticky;
                    assert!(n.read_closed >= sticky.read_closed && n.error >= sticky.error);
                    assert!(n.hup_sent >= sticky.hup_sent && n.err_sent >= sticky.err_sent);
                    assert!(n.read_closed >= ready.read_closed && n.error >= ready.error);
                    // hup/error delivered ⇔ recorded as sent
                    assert_eq!(pos(&d, Action::Hup).is_some(), n.hup_sent && !sticky.hup_sent);
                    assert_eq!(pos(&d, Action::Error).is_some(), n.err_sent && !sticky.err_sent);
                    // 6. Hup only from a reported close (never from a mere short read)
                    if pos(&d, Action::Hup).is_some() {
                        assert!(n.read_closed || n.write_closed);
                    }
                    // without read interest, a half-close alone is held back
                    if interest & READ == 0 && !n.write_closed {
                        assert!(pos(&d, Action::Hup).is_none());
                    }
                    // an error is always delivered once
                    if n.error && !sticky.err_sent {
                        assert!(pos(&d, Action::Error).is_some());
                    }
                }
            }
        }
        assert_eq!(count, 64 * 128 * 4);
    }

    #[test]
    fn kernel_cases() {
        let rd = |r: Readiness, i| decide(r, Sticky::default(), i).to_string();
        // AF_UNIX peer write()+close(): IN|RDHUP|HUP → read first, then hang-up
        let unix_close = Readiness { readable: true, read_closed: true, write_closed: true, ..Default::default() };
        assert_eq!(rd(unix_close, READ), "READ,HUP");
        // ... plus ERR when the closer left unread data
        let unix_err = Readiness { error: true, ..unix_close };
        assert_eq!(rd(unix_err, READ), "READ,HUP,ERROR");
        assert_eq!(rd(unix_err, READ | WRITE), "READ,HUP,ERROR");
        // TCP write()+close(): IN|RDHUP, no HUP
        let tcp_close = Readiness { readable: true, read_closed: true, ..Default::default() };
        assert_eq!(rd(tcp_close, READ), "READ,HUP");
        // half-close without read interest is held back, a full hang-up is not
        assert_eq!(rd(tcp_close, 0), "-");
        assert_eq!(rd(unix_close, 0), "HUP");
        assert_eq!(rd(unix_err, 0), "HUP,ERROR");
        // plain data: no hang-up implied
        let data = Readiness { readable: true, ..Default::default() };
        assert_eq!(rd(data, READ | WRITE), "READ");
        let out = Readiness { writable: true, ..Default::default() };
        assert_eq!(rd(out, READ | WRITE), "WRITE");
        assert_eq!(rd(out, READ), "-");
    }

    #[test]
    fn hangup_survives_pause_and_resume() {
        let tcp_close = Readiness { readable: true, read_closed: true, ..Default::default() };
        // reads paused: nothing delivered, but remembered
        let paused = decide(tcp_close, Sticky::default(), 0);
        assert_eq!(paused.actions(), &[] as &[Action]);
        assert!(paused.sticky.read_closed && paused.sticky.read_pending);
        // reads resumed: no new event will come (edge-triggered); sticky state alone decides
        let resumed = decide(Readiness::default(), paused.sticky, READ);
        assert_eq!(resumed.actions(), &[Action::Read, Action::Hup]);
        // and the hang-up is not delivered twice
        let mut s = resumed.sticky;
        s.read_pending = false;
        assert_eq!(decide(Readiness::default(), s, READ).actions(), &[] as &[Action]);
    }

    #[test]
    fn display() {
        let r = Readiness { readable: true, read_closed: true, ..Default::default() };
        assert_eq!(r.to_string(), "READABLE|READ_CLOSED");
        assert_eq!(Readiness::default().to_string(), "-");
    }
}
