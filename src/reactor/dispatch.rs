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

/// One event's readiness as mio reports it: a set of flags.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Readiness(u8);

impl Readiness {
    pub const READABLE: Readiness = Readiness(1);
    pub const WRITABLE: Readiness = Readiness(2);
    pub const READ_CLOSED: Readiness = Readiness(4);
    pub const WRITE_CLOSED: Readiness = Readiness(8);
    pub const ERROR: Readiness = Readiness(16);
    pub const PRIORITY: Readiness = Readiness(32);
    const NAMES: [&'static str; 6] = ["READABLE", "WRITABLE", "READ_CLOSED", "WRITE_CLOSED", "ERROR", "PRIORITY"];

    /// Build from mio's event accessors.
    #[inline]
    pub fn from_event(e: &mio::event::Event) -> Readiness {
        let mut b = 0;
        b |= e.is_readable() as u8;
        b |= (e.is_writable() as u8) << 1;
        b |= (e.is_read_closed() as u8) << 2;
        b |= (e.is_write_closed() as u8) << 3;
        b |= (e.is_error() as u8) << 4;
        b |= (e.is_priority() as u8) << 5;
        Readiness(b)
    }

    /// All 64 combinations, for exhaustive tests.
    pub fn all() -> impl Iterator<Item = Readiness> {
        (0u8..64).map(Readiness)
    }

    /// True when every flag of `other` is set.
    #[inline]
    pub fn has(self, other: Readiness) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    #[inline]
    pub fn readable(self) -> bool {
        self.0 & 1 != 0
    }
    #[inline]
    pub fn writable(self) -> bool {
        self.0 & 2 != 0
    }
    #[inline]
    pub fn read_closed(self) -> bool {
        self.0 & 4 != 0
    }
    #[inline]
    pub fn write_closed(self) -> bool {
        self.0 & 8 != 0
    }
    #[inline]
    pub fn error(self) -> bool {
        self.0 & 16 != 0
    }

    /// True when readable data arrived in the same event as a hang-up or error.
    #[inline]
    pub fn readable_with_hangup(self) -> bool {
        self.readable() && self.0 & (4 | 8 | 16) != 0
    }
}

impl std::ops::BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, o: Readiness) -> Readiness {
        Readiness(self.0 | o.0)
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_flags(f, self.0, &Readiness::NAMES)
    }
}

/// Per-watcher state that survives between events (epoll is edge-triggered under mio, so what
/// was reported once must be remembered). A set of flags.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Sticky(u8);

impl Sticky {
    /// Something to read (data, EOF or a pending error) was reported and not yet drained.
    pub const READ_PENDING: Sticky = Sticky(1);
    /// Writable was reported and a write callback has not yet said it hit `EAGAIN`.
    pub const WRITE_PENDING: Sticky = Sticky(2);
    /// The read side was reported closed (RDHUP/HUP). Survives pausing and resuming reads.
    pub const READ_CLOSED: Sticky = Sticky(4);
    /// The whole connection was reported hung up (HUP, or write side closed).
    pub const WRITE_CLOSED: Sticky = Sticky(8);
    /// An error was reported.
    pub const ERROR: Sticky = Sticky(16);
    /// The hang-up action has been delivered (it is delivered once).
    pub const HUP_SENT: Sticky = Sticky(32);
    /// The error action has been delivered (it is delivered once).
    pub const ERR_SENT: Sticky = Sticky(64);

    /// Every combination of the sticky flags, for exhaustive tests.
    pub fn all() -> impl Iterator<Item = Sticky> {
        (0u8..128).map(Sticky)
    }
    #[inline]
    pub fn has(self, f: Sticky) -> bool {
        self.0 & f.0 != 0
    }
    #[inline]
    pub fn set(&mut self, f: Sticky, on: bool) {
        if on {
            self.0 |= f.0
        } else {
            self.0 &= !f.0
        }
    }
}

impl std::ops::BitOr for Sticky {
    type Output = Sticky;
    fn bitor(self, o: Sticky) -> Sticky {
        Sticky(self.0 | o.0)
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
    #[inline(always)]
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
#[inline(always)]
pub fn decide(ready: Readiness, sticky: Sticky, interest: u32) -> Decision {
    // Readiness bits 2..4 (read-closed, write-closed, error) map onto the same sticky bits.
    let mut s = sticky.0 | (ready.0 & (4 | 8 | 16));
    if ready.0 & (1 | 4 | 16) != 0 {
        s |= Sticky::READ_PENDING.0;
    }
    if ready.writable() {
        s |= Sticky::WRITE_PENDING.0;
    }
    let mut d = Decision::new(Sticky(s));
    let wants_read = interest & READ != 0;
    if wants_read && s & Sticky::READ_PENDING.0 != 0 {
        d.push(Action::Read);
    }
    if interest & WRITE != 0 && s & Sticky::WRITE_PENDING.0 != 0 {
        d.push(Action::Write);
    }
    let closed = if wants_read { Sticky::READ_CLOSED.0 } else { Sticky::WRITE_CLOSED.0 };
    if s & closed != 0 && s & Sticky::HUP_SENT.0 == 0 {
        d.push(Action::Hup);
        d.sticky.0 |= Sticky::HUP_SENT.0;
    }
    if s & Sticky::ERROR.0 != 0 && s & Sticky::ERR_SENT.0 == 0 {
        d.push(Action::Error);
        d.sticky.0 |= Sticky::ERR_SENT.0;
    }
    d
}

/// The readiness and sticky bits that involve a hang-up or error (same positions in both).
const LOUD: u8 = 4 | 8 | 16;

/// [`decide`] for the common case, as a few bit operations: when no hang-up or error was ever
/// reported for the watcher, the only possible actions are read and write. Returns `None` when
/// the full decision is needed; otherwise the new sticky state and the due actions as
/// interest bits ([`READ`] = 1, [`WRITE`] = 2, both = 3, none = 0). Equal to [`decide`] on
/// every input it accepts (tested exhaustively).
#[inline(always)]
pub fn decide_quiet(ready: Readiness, sticky: Sticky, interest: u32) -> Option<(Sticky, u8)> {
    if (ready.0 | sticky.0) & LOUD != 0 {
        return None;
    }
    // READABLE/WRITABLE (bits 0, 1) map onto READ_PENDING/WRITE_PENDING, and interest's
    // READ/WRITE use the same bits.
    let s = sticky.0 | (ready.0 & 3);
    Some((Sticky(s), s & (interest as u8) & 3))
}

fn write_flags(f: &mut fmt::Formatter<'_>, bits: u8, names: &[&str]) -> fmt::Result {
    let mut first = true;
    for (i, name) in names.iter().enumerate() {
        if bits & (1 << i) != 0 {
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
                    let n = d.sticky;
                    let ctx = format!("{ready} {sticky:?} {interest}: {d}");
                    // 1. order is Read < Write < Hup < Error, no duplicates
                    assert!(acts.windows(2).all(|w| (w[0] as u8) < (w[1] as u8)), "{ctx}");
                    // interest is respected
                    if interest & READ == 0 {
                        assert!(pos(&d, Action::Read).is_none(), "{ctx}");
                    }
                    if interest & WRITE == 0 {
                        assert!(pos(&d, Action::Write).is_none(), "{ctx}");
                    }
                    // 2. with read interest, anything that may carry data produces Read, before
                    //    Hup and Error
                    let maybe_data = ready.readable() || ready.read_closed() || ready.error() || sticky.has(Sticky::READ_PENDING);
                    if interest & READ != 0 && maybe_data {
                        let r = pos(&d, Action::Read).expect(&ctx);
                        assert!(pos(&d, Action::Hup).map_or(true, |h| r < h), "{ctx}");
                        assert!(pos(&d, Action::Error).map_or(true, |e| r < e), "{ctx}");
                    }
                    // 5. once only
                    if sticky.has(Sticky::HUP_SENT) {
                        assert!(pos(&d, Action::Hup).is_none(), "{ctx}");
                    }
                    if sticky.has(Sticky::ERR_SENT) {
                        assert!(pos(&d, Action::Error).is_none(), "{ctx}");
                    }
                    // sticky flags never go back, and take up what was reported
                    for f in [Sticky::READ_CLOSED, Sticky::WRITE_CLOSED, Sticky::ERROR, Sticky::HUP_SENT, Sticky::ERR_SENT] {
                        assert!(!sticky.has(f) || n.has(f), "{ctx}");
                    }
                    assert!(!ready.read_closed() || n.has(Sticky::READ_CLOSED), "{ctx}");
                    assert!(!ready.error() || n.has(Sticky::ERROR), "{ctx}");
                    // hup/error delivered ⇔ newly recorded as sent
                    assert_eq!(pos(&d, Action::Hup).is_some(), n.has(Sticky::HUP_SENT) && !sticky.has(Sticky::HUP_SENT), "{ctx}");
                    assert_eq!(pos(&d, Action::Error).is_some(), n.has(Sticky::ERR_SENT) && !sticky.has(Sticky::ERR_SENT), "{ctx}");
                    // 6. Hup only from a reported close (never from a mere short read)
                    if pos(&d, Action::Hup).is_some() {
                        assert!(n.has(Sticky::READ_CLOSED) || n.has(Sticky::WRITE_CLOSED), "{ctx}");
                    }
                    // without read interest, a half-close alone is held back
                    if interest & READ == 0 && !n.has(Sticky::WRITE_CLOSED) {
                        assert!(pos(&d, Action::Hup).is_none(), "{ctx}");
                    }
                    // an error is always delivered once
                    if n.has(Sticky::ERROR) && !sticky.has(Sticky::ERR_SENT) {
                        assert!(pos(&d, Action::Error).is_some(), "{ctx}");
                    }
                }
            }
        }
        assert_eq!(count, 64 * 128 * 4);
    }

    #[test]
    fn quiet_path_equals_decide() {
        let mut accepted = 0;
        for ready in Readiness::all() {
            for sticky in Sticky::all() {
                for interest in 0..4u32 {
                    let Some((s, due)) = decide_quiet(ready, sticky, interest) else { continue };
                    accepted += 1;
                    let d = decide(ready, sticky, interest);
                    let mut acts = Vec::new();
                    if due & 1 != 0 {
                        acts.push(Action::Read);
                    }
                    if due & 2 != 0 {
                        acts.push(Action::Write);
                    }
                    assert_eq!((d.actions(), d.sticky), (&acts[..], s), "{ready} {sticky:?} {interest}");
                }
            }
        }
        assert_eq!(accepted, 8 * 16 * 4); // 3 free readiness bits × 4 free sticky bits
    }

    #[test]
    fn kernel_cases() {
        use Readiness as R;
        let rd = |r: Readiness, i| decide(r, Sticky::default(), i).to_string();
        // AF_UNIX peer write()+close(): IN|RDHUP|HUP → read first, then hang-up
        let unix_close = R::READABLE | R::READ_CLOSED | R::WRITE_CLOSED;
        assert_eq!(rd(unix_close, READ), "READ,HUP");
        // ... plus ERR when the closer left unread data
        let unix_err = unix_close | R::ERROR;
        assert_eq!(rd(unix_err, READ), "READ,HUP,ERROR");
        assert_eq!(rd(unix_err, READ | WRITE), "READ,HUP,ERROR");
        // TCP write()+close(): IN|RDHUP, no HUP
        let tcp_close = R::READABLE | R::READ_CLOSED;
        assert_eq!(rd(tcp_close, READ), "READ,HUP");
        // half-close without read interest is held back, a full hang-up is not
        assert_eq!(rd(tcp_close, 0), "-");
        assert_eq!(rd(unix_close, 0), "HUP");
        assert_eq!(rd(unix_err, 0), "HUP,ERROR");
        // plain data: no hang-up implied
        assert_eq!(rd(R::READABLE, READ | WRITE), "READ");
        assert_eq!(rd(R::WRITABLE, READ | WRITE), "WRITE");
        assert_eq!(rd(R::WRITABLE, READ), "-");
    }

    #[test]
    fn hangup_survives_pause_and_resume() {
        let tcp_close = Readiness::READABLE | Readiness::READ_CLOSED;
        // reads paused: nothing delivered, but remembered
        let paused = decide(tcp_close, Sticky::default(), 0);
        assert_eq!(paused.actions(), &[] as &[Action]);
        assert!(paused.sticky.has(Sticky::READ_CLOSED) && paused.sticky.has(Sticky::READ_PENDING));
        // reads resumed: no new event will come (edge-triggered); sticky state alone decides
        let resumed = decide(Readiness::default(), paused.sticky, READ);
        assert_eq!(resumed.actions(), &[Action::Read, Action::Hup]);
        // and the hang-up is not delivered twice
        let mut s = resumed.sticky;
        s.set(Sticky::READ_PENDING, false);
        assert_eq!(decide(Readiness::default(), s, READ).actions(), &[] as &[Action]);
    }

    #[test]
    fn display() {
        assert_eq!((Readiness::READABLE | Readiness::READ_CLOSED).to_string(), "READABLE|READ_CLOSED");
        assert_eq!(Readiness::default().to_string(), "-");
    }
}
