//! The pooled FastCGI client on the reactor.
//!
//! One [`Client`] talks to one or more backends. Each request waits in a queue until a
//! connection of a backend is free (or multiplexing has room), is written as BEGIN_REQUEST,
//! PARAMS, STDIN (and DATA), and ends with exactly one [`Outcome`] given to its
//! [`ResponseHandler::on_end`].
//!
//! Rules that matter in production:
//! * The response is parsed from every byte the stream delivers before its end or error, so a
//!   backend that sends STDOUT, END_REQUEST and closes in one go always yields `Complete`.
//! * A request that fails on a *reused* connection before any response byte arrived is retried
//!   once on a fresh connection; a request whose response started is never retried.
//! * Idle pooled connections keep being read: a backend closing one is noticed and it is
//!   dropped, not handed to the next request.
//! * User callbacks never run while the client holds a borrow of its state: work is collected,
//!   the borrow released, then the callbacks run. Callbacks never run from inside a client
//!   method (ends caused by a method are deferred to the reactor's next iteration).

use super::cgi::{CgiHead, CgiParser};
use super::config::{Config, Multiplex, Stat, Stats};
use super::nv::Pair;
use super::params::Params;
use super::parser::{Frame, ParseError, Parser};
use super::pool::{self, BackendView};
use super::proto::{self, ProtocolStatus, RecordType, Role};
use super::request::{Body, End, Next, Outcome, Request, Response, ResponseHandler};
use super::writer;
use crate::reactor::{Reactor, RunError, RunMode, TimerId};
use crate::stream::{Stream, StreamHandler};
use std::cell::RefCell;
use super::idmap::IdMap;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::time::Instant;

type ReqId = u64;
type ConnId = u64;

/// Streamed body bytes kept for a possible retry on a fresh connection.
const REPLAY_LIMIT: usize = 64 * 1024;
/// Streamed body bytes buffered while the request waits for a connection before writes
/// report `Busy`.
const STDIN_HIGH_WATER: usize = 64 * 1024;
/// A backend whose connect failed is tried last for this long.
const DOWN_MS: u64 = 1000;
/// Requests per multiplexed connection when the backend did not say (FCGI_MAX_REQS).
const DEFAULT_MPX_REQS: usize = 64;
/// A request on a fresh connection with no response byte for this long, while a later one
/// finished, is taken as waiting in the backend's accept queue (see `starving`).
const STARVE_MS: u64 = 100;
/// How long a connection cap learned from starvation holds.
const SOFT_CAP_MS: u64 = 30_000;

/// Errors of client and request methods.
#[derive(Debug, Clone, Copy, Eq, PartialEq)]
pub enum ClientError {
    /// The client was closed, or the request already ended.
    Closed,
    /// The call does not fit the request (e.g. `write` on a request without a streamed body,
    /// or after `finish`).
    Invalid,
    /// A config without backends, or a backend index out of range.
    NoBackend,
    /// `fetch` called from inside a callback of the same reactor.
    Reentrant,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientError::Closed => "client closed or request ended",
            ClientError::Invalid => "invalid call for this request",
            ClientError::NoBackend => "no such backend",
            ClientError::Reentrant => "called from inside a callback of the same reactor",
        })
    }
}

impl std::error::Error for ClientError {}

/// Result of a streamed-body write.
#[derive(Debug, Clone, Copy, Eq, PartialEq)]
pub enum WriteStatus {
    /// Accepted; more may follow.
    Ok,
    /// Accepted, but the buffer is at its high-water mark: wait for `on_drain`.
    Busy,
}

/// Callback of [`Client::get_values`]: the pairs the backend answered, or why not.
pub type ValuesCallback = Box<dyn FnOnce(Result<Vec<Pair>, End>)>;

/// A FastCGI client. Cheap to clone (a reference); the client closes when the last clone is
/// dropped or [`Client::close`] is called, ending in-flight requests with `Aborted`.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

/// A sent request, for streaming its body, pausing and aborting. Valid until its `on_end`
/// returned; after that every method returns [`ClientError::Closed`].
#[derive(Clone)]
pub struct RequestHandle {
    inner: Weak<Inner>,
    id: ReqId,
}

// ------------------------------------------------------------------------------------------
// state

enum Phase {
    Queued,
    OnConn(ConnId, u16),
    /// Ended; buffered response bytes still to be delivered to a paused caller.
    Draining,
}

enum Pending {
    Headers(CgiHead),
    Body(Vec<u8>),
    Stderr(Vec<u8>),
}

impl Pending {
    fn len(&self) -> usize {
        match self {
            Pending::Headers(_) => 0,
            Pending::Body(b) | Pending::Stderr(b) => b.len(),
        }
    }

    fn as_item(&self) -> Item<'_> {
        match self {
            Pending::Headers(h) => Item::Headers(h),
            Pending::Body(b) => Item::Body(b),
            Pending::Stderr(b) => Item::Stderr(b),
        }
    }
}

/// Something for a response handler, borrowed.
enum Item<'a> {
    Headers(&'a CgiHead),
    Body(&'a [u8]),
    Stderr(&'a [u8]),
}

impl Item<'_> {
    fn to_pending(&self) -> Pending {
        match *self {
            Item::Headers(h) => Pending::Headers(h.clone()),
            Item::Body(b) => Pending::Body(b.to_vec()),
            Item::Stderr(b) => Pending::Stderr(b.to_vec()),
        }
    }
}

struct Req {
    handler: Option<Box<dyn ResponseHandler>>,
    params: Params,
    role: Role,
    body: Body,
    data: Option<Vec<u8>>,
    raw: bool,
    phase: Phase,
    // streamed body
    stdin_unsent: Vec<u8>,
    stdin_done: bool,
    replay: Option<Vec<u8>>,
    want_drain: bool,
    // response
    cgi: CgiParser,
    head_done: bool,
    got_any: bool,
    started: bool,
    paused: bool,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    final_end: Option<End>,
    // retries
    tried: Vec<usize>,
    tries: u32,
    stale_retried: bool,
    fresh_only: bool,
    reused_conn: bool,
    // timing
    timer: TimerId,
    deadline: Option<u64>,
    last_recv: u64,
    last_send: u64,
    last_queued: usize,
    enqueued: Instant,
    /// When it was put on its current connection (ms).
    attached_at: u64,
    /// The starvation check (see `relieve_starving`) ran for its current connection.
    starve_checked: bool,
}

impl Req {
    fn retryable_stale(&self) -> bool {
        self.reused_conn
            && !self.got_any
            && !self.stale_retried
            && (!matches!(self.body, Body::Streaming) || self.replay.is_some())
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Probe {
    Unneeded,
    NotStarted,
    Running,
}

struct Backend {
    label: String,
    addr: crate::stream::Address,
    conns: Vec<ConnId>,
    idle: Vec<ConnId>,
    active: usize,
    /// FCGI_MAX_CONNS, when the backend told.
    max_conns: Option<usize>,
    mpx: bool,
    mpx_reqs: usize,
    probe: Probe,
    down_until: u64,
    /// Connections the backend really serves at once, learned from starvation, until when.
    soft_cap: Option<(usize, u64)>,
    /// When `starving` last scanned this backend's requests (it runs at most every
    /// `STARVE_MS / 2`: starvation takes `STARVE_MS` to show, and the scan is O(requests)).
    last_starve_scan: u64,
}

struct Mgmt {
    cb: Option<ValuesCallback>,
    /// Backend whose settings this exchange probes.
    probe: bool,
    timer: TimerId,
}

struct Conn {
    stream: Stream,
    backend: usize,
    parser: Parser,
    /// Request ids in use; `None` = given up by the caller, records dropped until END_REQUEST.
    ids: IdMap<u16, Option<ReqId>>,
    connected: bool,
    served: u64,
    mpx: bool,
    reusable: bool,
    idle: bool,
    idle_timer: Option<TimerId>,
    read_paused_for: Vec<ReqId>,
    mgmt: Option<Mgmt>,
}

/// Work for after the borrow is released.
enum Ev {
    End(ReqId, Box<dyn ResponseHandler>, End),
    Drain(ReqId),
    Flush(ReqId),
    Values(ValuesCallback, Result<Vec<Pair>, End>),
}

struct State {
    cfg: Config,
    backends: Vec<Backend>,
    reqs: IdMap<ReqId, Req>,
    conns: IdMap<ConnId, Conn>,
    queue: VecDeque<ReqId>,
    next_id: u64,
    rr: usize,
    stats: Stats,
    closed: bool,
    /// Ends of requests whose handler was out (being called) when they ended.
    orphans: IdMap<ReqId, End>,
    /// A deferred `schedule` is on its way.
    schedule_queued: bool,
}

struct Inner {
    reactor: Reactor,
    me: Weak<Inner>,
    st: RefCell<State>,
}

fn end(outcome: Outcome, reason: impl Into<String>) -> End {
    End { outcome, app_status: 0, protocol_status: None, reason: reason.into() }
}

fn stat_for(o: Outcome) -> Stat {
    match o {
        Outcome::Complete => Stat::Complete,
        Outcome::Truncated => Stat::Truncated,
        Outcome::BadGateway => Stat::BadGateway,
        Outcome::Timeout => Stat::Timeout,
        Outcome::Overloaded => Stat::Overloaded,
        Outcome::CantMpxConn => Stat::CantMpxConn,
        Outcome::UnknownRole => Stat::UnknownRole,
        Outcome::Aborted => Stat::Aborted,
    }
}

/// Why a connection went away.
enum ConnLoss {
    /// Orderly EOF from the backend.
    Eof,
    /// Connect failure or timeout, or an I/O error.
    Io(io::Error),
    /// Malformed records.
    Protocol(ParseError),
}

// ------------------------------------------------------------------------------------------
// state machine (everything here runs under the borrow and never calls user code)

impl State {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn views(&self, now: u64) -> Vec<BackendView> {
        self.backends.iter().map(|b| BackendView { active: b.active, down: b.down_until > now }).collect()
    }

    fn backend_cap(&self, b: usize, now: u64) -> usize {
        let be = &self.backends[b];
        let mut cap = match be.max_conns {
            Some(m) => self.cfg.max_conns.min(m),
            None => self.cfg.max_conns,
        };
        if let Some((soft, until)) = be.soft_cap {
            if until > now {
                cap = cap.min(soft);
            }
        }
        cap.max(1)
    }

    /// Requests of backend `b` (other than on `done`) that went out on a fresh connection no
    /// earlier than `before`, have waited `STARVE_MS` without a byte, and so are most likely
    /// still in the backend's accept queue: a process-per-connection backend (php-fpm) keeps
    /// each worker on its kept connection, so more pooled connections than workers leave the
    /// rest unserved until a connection closes.
    fn starving(&self, b: usize, done: ConnId, before: u64, now: u64) -> usize {
        self.backends[b]
            .conns
            .iter()
            .filter(|&&c| c != done)
            .filter_map(|c| self.conns.get(c))
            .filter(|c| c.connected && !c.mpx)
            .flat_map(|c| c.ids.values().flatten())
            .filter_map(|rid| self.reqs.get(rid))
            .filter(|q| !q.reused_conn && !q.got_any && q.attached_at <= before && now >= q.attached_at + STARVE_MS)
            .count()
    }

    fn data_conns(&self) -> usize {
        self.conns.values().filter(|c| c.mgmt.is_none()).count()
    }

    /// Ends a request: unhooks it from the queue or its connection, counts the outcome, and
    /// returns the event that calls `on_end` (or parks the end behind buffered data).
    fn finish(&mut self, r: &Reactor, rid: ReqId, e: End, evs: &mut Vec<Ev>) {
        let Some(req) = self.reqs.get_mut(&rid) else { return };
        if matches!(req.phase, Phase::Draining) {
            return; // already ended
        }
        let phase = std::mem::replace(&mut req.phase, Phase::Draining);
        r.timer_free(req.timer);
        match phase {
            Phase::Queued => self.queue.retain(|&q| q != rid),
            Phase::OnConn(cid, id) => {
                if let Some(b) = self.conns.get(&cid).map(|c| c.backend) {
                    self.backends[b].active = self.backends[b].active.saturating_sub(1);
                }
                if let Some(c) = self.conns.get_mut(&cid) {
                    if c.ids.get(&id) == Some(&Some(rid)) {
                        c.ids.remove(&id);
                        c.parser.forget(id);
                    }
                }
                self.unpause_conn_for(cid, rid);
            }
            Phase::Draining => {}
        }
        self.stats.add(stat_for(e.outcome), 1);
        let req = self.reqs.get_mut(&rid).expect("present");
        if !req.pending.is_empty() && e.outcome != Outcome::Aborted {
            req.final_end = Some(e);
            if !req.paused {
                evs.push(Ev::Flush(rid));
            }
            return;
        }
        let req = self.reqs.remove(&rid).expect("present");
        match req.handler {
            Some(h) => evs.push(Ev::End(rid, h, e)),
            None => {
                self.orphans.insert(rid, e);
            }
        }
    }

    fn unpause_conn_for(&mut self, cid: ConnId, rid: ReqId) {
        if let Some(c) = self.conns.get_mut(&cid) {
            let before = c.read_paused_for.len();
            c.read_paused_for.retain(|&q| q != rid);
            if before > 0 && c.read_paused_for.is_empty() {
                c.stream.resume_read();
            }
        }
    }

    /// Places queued requests on connections while there is room.
    fn schedule(&mut self, r: &Reactor, me: &Weak<Inner>, evs: &mut Vec<Ev>) {
        while let Some(&rid) = self.queue.front() {
            if !self.place(r, me, rid, evs) {
                break;
            }
        }
    }

    /// Tries to give the request at the head of the queue a connection.
    fn place(&mut self, r: &Reactor, me: &Weak<Inner>, rid: ReqId, evs: &mut Vec<Ev>) -> bool {
        let now = r.now_ms();
        let (tried, fresh_only) = {
            let req = &self.reqs[&rid];
            (req.tried.clone(), req.fresh_only)
        };
        let order = pool::order(&self.views(now), self.cfg.balance, self.rr, &tried);
        for b in order {
            if self.backends[b].probe == Probe::NotStarted {
                self.start_mgmt(r, me, b, None, evs);
            }
            if self.backends[b].probe == Probe::Running {
                continue;
            }
            if !fresh_only {
                if let Some(cid) = self.reusable_conn(b) {
                    self.attach(r, rid, cid, true, evs);
                    return true;
                }
            }
            let cap = self.backend_cap(b, now);
            if fresh_only && self.backends[b].conns.len() >= cap {
                // Make room by retiring an idle connection.
                if let Some(&old) = self.backends[b].idle.first() {
                    self.drop_conn(r, old);
                }
            }
            if self.backends[b].conns.len() < cap {
                match self.open_conn(r, me, b) {
                    Ok(cid) => self.attach(r, rid, cid, false, evs),
                    Err(e) => {
                        // No socket at all (descriptors exhausted, reactor closed): nothing
                        // would wake a waiting request, so it ends now.
                        let why = format!("cannot connect to {}: {e}", self.backends[b].label);
                        self.finish(r, rid, end(Outcome::BadGateway, why), evs);
                    }
                }
                return true;
            }
        }
        false
    }

    fn reusable_conn(&mut self, b: usize) -> Option<ConnId> {
        if self.backends[b].mpx {
            let limit = self.backends[b].mpx_reqs.max(1);
            let found = self.backends[b].conns.iter().copied().find(|cid| {
                let c = &self.conns[cid];
                c.mpx && c.reusable && !c.idle && c.ids.len() < limit
            });
            if found.is_some() {
                return found;
            }
        }
        self.backends[b].idle.pop()
    }

    /// Starts connecting to backend `b` and registers the connection. Connect errors arrive
    /// later through the handler; an error here means no socket could be made.
    fn connect(&mut self, r: &Reactor, me: &Weak<Inner>, b: usize) -> io::Result<ConnId> {
        let cid = self.new_id();
        let handler = Box::new(ConnHandler { client: me.clone(), cid });
        let stream = Stream::connect(r, &self.backends[b].addr, self.cfg.connect_timeout_ms, handler)?;
        self.conns.insert(
            cid,
            Conn {
                stream,
                backend: b,
                parser: Parser::new(),
                ids: IdMap::default(),
                connected: false,
                served: 0,
                mpx: false,
                reusable: false,
                idle: false,
                idle_timer: None,
                read_paused_for: Vec::new(),
                mgmt: None,
            },
        );
        Ok(cid)
    }

    /// A new pooled connection to backend `b`.
    fn open_conn(&mut self, r: &Reactor, me: &Weak<Inner>, b: usize) -> io::Result<ConnId> {
        let cid = self.connect(r, me, b)?;
        let conn = self.conns.get_mut(&cid).expect("just added");
        conn.mpx = self.backends[b].mpx;
        conn.reusable = true;
        self.backends[b].conns.push(cid);
        self.stats.add(Stat::ConnsOpened, 1);
        let open = self.data_conns() as u64;
        self.stats.max(Stat::PeakConns, open);
        Ok(cid)
    }

    /// Puts request `rid` (the queue's head) on connection `cid` and writes it.
    fn attach(&mut self, r: &Reactor, rid: ReqId, cid: ConnId, reused: bool, evs: &mut Vec<Ev>) {
        let now = r.now_ms();
        if self.queue.front() == Some(&rid) {
            self.queue.pop_front();
        } else {
            self.queue.retain(|&q| q != rid);
        }
        let conn = self.conns.get_mut(&cid).expect("attach to a live connection");
        let b = conn.backend;
        let id = if conn.mpx {
            (1..=u16::MAX).find(|i| !conn.ids.contains_key(i)).expect("mpx limit below 65535")
        } else {
            1
        };
        conn.ids.insert(id, Some(rid));
        conn.parser.expect(id);
        conn.served += 1;
        if conn.idle {
            conn.idle = false;
            conn.stream.set_ref(true);
            if let Some(t) = conn.idle_timer {
                r.timer_stop(t);
            }
            self.backends[b].idle.retain(|&c| c != cid);
        }
        self.backends[b].active += 1;
        if reused {
            self.stats.add(Stat::ConnsReused, 1);
        }
        if self.cfg.balance == super::config::Balance::RoundRobin {
            self.rr = (b + 1) % self.backends.len();
        }
        let req = self.reqs.get_mut(&rid).expect("attach a live request");
        let waited = req.enqueued.elapsed().as_micros() as u64;
        self.stats.add(Stat::QueueWaitUsTotal, waited);
        self.stats.max(Stat::QueueWaitUsMax, waited);
        req.phase = Phase::OnConn(cid, id);
        req.reused_conn = reused;
        req.attached_at = now;
        req.starve_checked = false;
        req.last_send = now;
        req.last_recv = now;
        req.last_queued = 0;
        self.write_request(rid, evs);
        self.arm_timer(r, rid);
    }

    fn write_request(&mut self, rid: ReqId, evs: &mut Vec<Ev>) {
        let keep = self.cfg.keep_alive;
        let req = self.reqs.get_mut(&rid).expect("live request");
        let Phase::OnConn(cid, id) = req.phase else { return };
        let mut buf = Vec::with_capacity(512);
        writer::begin_request(&mut buf, id, req.role, keep);
        writer::params(&mut buf, id, req.params.iter()).expect("params are checked when set");
        match &req.body {
            Body::Empty => writer::stream_end(&mut buf, RecordType::Stdin, id),
            Body::Buffer(b) => {
                writer::stream(&mut buf, RecordType::Stdin, id, b);
                writer::stream_end(&mut buf, RecordType::Stdin, id);
            }
            Body::Streaming => {
                if let Some(replay) = &req.replay {
                    writer::stream(&mut buf, RecordType::Stdin, id, replay);
                }
                let unsent = std::mem::take(&mut req.stdin_unsent);
                writer::stream(&mut buf, RecordType::Stdin, id, &unsent);
                keep_for_replay(&mut req.replay, &unsent);
                if req.stdin_done {
                    writer::stream_end(&mut buf, RecordType::Stdin, id);
                }
            }
        }
        if req.stdin_done || !matches!(req.body, Body::Streaming) {
            push_data_stream(&mut buf, req, id);
        }
        let below = self.conns[&cid].stream.write(&buf);
        let req = self.reqs.get_mut(&rid).expect("live request");
        if matches!(req.body, Body::Streaming) && req.want_drain && below {
            req.want_drain = false;
            evs.push(Ev::Drain(rid));
        } else if !below && matches!(req.body, Body::Streaming) && !req.stdin_done {
            req.want_drain = true;
        }
    }

    /// (Re)arms a request's timer for its next deadline.
    fn arm_timer(&mut self, r: &Reactor, rid: ReqId) {
        let now = r.now_ms();
        let (send_to, read_to) = (self.cfg.send_timeout_ms, self.cfg.read_timeout_ms);
        let Some(req) = self.reqs.get(&rid) else { return };
        let mut next: Option<u64> = req.deadline;
        if let Phase::OnConn(..) = req.phase {
            if !req.reused_conn && !req.got_any && !req.starve_checked {
                let t = req.attached_at + STARVE_MS;
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            let last = req.last_recv.max(req.last_send);
            for t in [(send_to > 0).then(|| req.last_send + send_to), (read_to > 0).then(|| last + read_to)]
                .into_iter()
                .flatten()
            {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        match next {
            Some(at) => r.timer_start(req.timer, at.saturating_sub(now).max(1), 0),
            None => r.timer_stop(req.timer),
        }
    }

    /// The request timer fired: decide whether a deadline passed.
    fn check_timeouts(&mut self, r: &Reactor, me: &Weak<Inner>, rid: ReqId, evs: &mut Vec<Ev>) {
        let now = r.now_ms();
        let (send_to, read_to) = (self.cfg.send_timeout_ms, self.cfg.read_timeout_ms);
        self.relieve_starving(r, rid, now);
        let Some(req) = self.reqs.get_mut(&rid) else { return };
        let mut why = None;
        if req.deadline.is_some_and(|d| now >= d) {
            why = Some("request timeout");
        } else if let Phase::OnConn(cid, _) = req.phase {
            let Some(conn) = self.conns.get(&cid) else { return };
            let queued = conn.stream.queued();
            if !conn.connected {
                // The stream's connect timeout covers this.
            } else if queued > 0 && send_to > 0 {
                if queued != req.last_queued {
                    req.last_queued = queued;
                    req.last_send = now;
                } else if now >= req.last_send + send_to {
                    why = Some("send timeout: the backend does not read the request");
                }
            } else if req.paused {
                req.last_recv = now;
            } else if read_to > 0 && now >= req.last_recv.max(req.last_send) + read_to {
                why = Some("read timeout: the backend sent nothing for too long");
            }
        }
        match why {
            Some(reason) => {
                self.give_up(r, rid, end(Outcome::Timeout, reason), evs);
                self.schedule(r, me, evs);
            }
            None => self.arm_timer(r, rid),
        }
    }

    /// A request on a fresh connection that got no byte for `STARVE_MS` most likely waits in
    /// the backend's accept queue while every worker sits on one of our idle kept connections
    /// (php-fpm serves one connection per worker). Close one idle connection so that a worker
    /// goes back to accepting, and cap the backend's connections for a while. `conn_request_done`
    /// does the same when a request finishes while another starves; this covers the case where
    /// no request is left to finish.
    fn relieve_starving(&mut self, r: &Reactor, rid: ReqId, now: u64) {
        let Some(req) = self.reqs.get_mut(&rid) else { return };
        let Phase::OnConn(cid, _) = req.phase else { return };
        if req.reused_conn || req.got_any || req.starve_checked || now < req.attached_at + STARVE_MS {
            return;
        }
        req.starve_checked = true;
        let Some(b) = self.conns.get(&cid).filter(|c| c.connected && !c.mpx).map(|c| c.backend) else { return };
        let Some(&idle) = self.backends[b].idle.first() else { return };
        let serving = self.backends[b].conns.len().saturating_sub(1).max(1);
        self.backends[b].soft_cap = Some((serving, now + SOFT_CAP_MS));
        self.drop_conn(r, idle);
    }

    /// Ends a request early (timeout, abort, bad headers): frees its connection as well as
    /// possible (ABORT_REQUEST on a multiplexed one, else close it).
    fn give_up(&mut self, r: &Reactor, rid: ReqId, e: End, evs: &mut Vec<Ev>) {
        let Some(req) = self.reqs.get_mut(&rid) else { return };
        if e.outcome == Outcome::Aborted {
            req.pending.clear();
            req.pending_bytes = 0;
            req.final_end = None;
        }
        if let Phase::OnConn(cid, id) = req.phase {
            let conn = self.conns.get_mut(&cid).expect("live connection");
            if conn.mpx && conn.connected {
                let mut buf = Vec::new();
                writer::abort_request(&mut buf, id);
                conn.stream.write(&buf);
                conn.ids.insert(id, None);
                self.finish(r, rid, e, evs);
            } else {
                self.finish(r, rid, e, evs);
                self.drop_conn(r, cid);
            }
            return;
        }
        if matches!(req.phase, Phase::Draining) && e.outcome == Outcome::Aborted {
            // Ended already, caller gave up on the buffered rest.
            let req = self.reqs.remove(&rid).expect("present");
            if let Some(h) = req.handler {
                evs.push(Ev::End(rid, h, e));
            } else {
                self.orphans.insert(rid, e);
            }
            return;
        }
        self.finish(r, rid, e, evs);
    }

    /// Closes a connection and forgets it (its requests must have been dealt with).
    fn drop_conn(&mut self, r: &Reactor, cid: ConnId) -> Option<Conn> {
        let conn = self.conns.remove(&cid)?;
        conn.stream.close();
        if let Some(t) = conn.idle_timer {
            r.timer_free(t);
        }
        if let Some(m) = &conn.mgmt {
            r.timer_free(m.timer);
        }
        let be = &mut self.backends[conn.backend];
        be.conns.retain(|&c| c != cid);
        be.idle.retain(|&c| c != cid);
        Some(conn)
    }

    /// A connection failed or the backend closed it: every request on it ends, is retried on
    /// a fresh connection, or fails over to the next backend.
    fn conn_lost(&mut self, r: &Reactor, me: &Weak<Inner>, cid: ConnId, loss: ConnLoss, evs: &mut Vec<Ev>) {
        let now = r.now_ms();
        let Some(mut conn) = self.drop_conn(r, cid) else { return };
        let b = conn.backend;
        let label = self.backends[b].label.clone();
        if let Some(m) = conn.mgmt.as_mut() {
            let outcome = match &loss {
                ConnLoss::Io(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => Outcome::Timeout,
                _ => Outcome::BadGateway,
            };
            let why = match &loss {
                ConnLoss::Eof => format!("{label} closed the connection before answering GET_VALUES"),
                ConnLoss::Io(e) => format!("{label}: {e}"),
                ConnLoss::Protocol(e) => format!("{label}: {e}"),
            };
            if m.probe {
                self.backends[b].probe = Probe::Unneeded;
            }
            if let Some(cb) = m.cb.take() {
                evs.push(Ev::Values(cb, Err(end(outcome, why))));
            }
            self.schedule(r, me, evs);
            return;
        }
        if conn.idle {
            if matches!(loss, ConnLoss::Eof | ConnLoss::Io(_)) {
                self.stats.add(Stat::IdleClosedByPeer, 1);
            }
            self.schedule(r, me, evs);
            return;
        }
        let connect_failed = !conn.connected;
        if connect_failed {
            self.backends[b].down_until = now + DOWN_MS;
        }
        let mut ids: Vec<(u16, ReqId)> = conn.ids.iter().filter_map(|(&i, &q)| q.map(|q| (i, q))).collect();
        ids.sort_unstable();
        let mut requeue = Vec::new();
        for (_, rid) in ids {
            let Some(req) = self.reqs.get_mut(&rid) else { continue };
            self.backends[b].active = self.backends[b].active.saturating_sub(1);
            req.phase = Phase::Queued;
            if connect_failed {
                req.tried.push(b);
                req.tries += 1;
                let untried = (0..self.backends.len()).any(|i| !req.tried.contains(&i));
                // A streamed body can be sent again only while all of it is kept.
                let replayable = !matches!(req.body, Body::Streaming) || req.replay.is_some();
                if req.tries < self.cfg.max_tries && untried && replayable {
                    self.stats.add(Stat::Failovers, 1);
                    requeue.push(rid);
                    continue;
                }
                let (outcome, why) = match &loss {
                    ConnLoss::Io(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => {
                        (Outcome::Timeout, format!("connect to {label} timed out"))
                    }
                    ConnLoss::Io(e) => (Outcome::BadGateway, format!("connect to {label} failed: {e}")),
                    _ => (Outcome::BadGateway, format!("connect to {label} failed")),
                };
                self.finish(r, rid, end(outcome, why), evs);
                continue;
            }
            if req.retryable_stale() {
                req.stale_retried = true;
                req.fresh_only = true;
                self.stats.add(Stat::Retries, 1);
                requeue.push(rid);
                continue;
            }
            let started = req.started;
            let what = match &loss {
                ConnLoss::Eof => format!("{label} closed the connection"),
                ConnLoss::Io(e) => format!("{label}: {e}"),
                ConnLoss::Protocol(e) => format!("{label} sent malformed FastCGI: {e}"),
            };
            let e = if started {
                end(Outcome::Truncated, format!("{what} after the response started, before END_REQUEST"))
            } else {
                end(Outcome::BadGateway, format!("{what} before responding"))
            };
            self.finish(r, rid, e, evs);
        }
        for rid in requeue.into_iter().rev() {
            let req = self.reqs.get_mut(&rid).expect("present");
            req.cgi = CgiParser::new(self.cfg.max_header_bytes);
            self.queue.push_front(rid);
            self.arm_timer(r, rid);
        }
        self.schedule(r, me, evs);
    }

    /// A request's END_REQUEST arrived (or it was otherwise done with its connection): pool
    /// the connection, keep it (multiplexed), or close it.
    fn conn_request_done(
        &mut self,
        r: &Reactor,
        me: &Weak<Inner>,
        cid: ConnId,
        started: Option<u64>,
        evs: &mut Vec<Ev>,
    ) {
        let now = r.now_ms();
        let max_reqs = self.cfg.max_requests_per_conn;
        let keep = self.cfg.keep_alive && !self.closed;
        let Some(conn) = self.conns.get_mut(&cid) else { return };
        if !conn.ids.is_empty() {
            if max_reqs > 0 && conn.served >= max_reqs {
                conn.reusable = false;
            }
            self.schedule(r, me, evs);
            return;
        }
        let reusable = keep
            && conn.reusable
            && conn.connected
            && conn.stream.is_open()
            && conn.stream.queued() == 0
            && (max_reqs == 0 || conn.served < max_reqs);
        let b = conn.backend;
        let scan_due = now >= self.backends[b].last_starve_scan + STARVE_MS / 2;
        let starving = match started {
            Some(t) if reusable && scan_due => {
                self.backends[b].last_starve_scan = now;
                self.starving(b, cid, t, now)
            }
            _ => 0,
        };
        if starving > 0 {
            // Close this one instead of pooling it: its worker goes back to accepting.
            let serving = self.backends[b].conns.len().saturating_sub(starving).max(1);
            self.backends[b].soft_cap = Some((serving, now + SOFT_CAP_MS));
        }
        if !reusable || starving > 0 || self.backends[b].conns.len() > self.backend_cap(b, now) {
            self.drop_conn(r, cid);
            self.schedule(r, me, evs);
            return;
        }
        let conn = self.conns.get_mut(&cid).expect("live");
        // Pool it on the next iteration, not now: a close that arrived together with this
        // response is read first, so the connection is dropped instead of carrying the next
        // request into a retry.
        conn.idle = true;
        conn.stream.set_ref(false);
        let w = me.clone();
        r.defer(Box::new(move |_| {
            if let Some(inner) = w.upgrade() {
                inner.pool_conn(cid);
            }
        }));
    }

    /// Makes an idle connection available to requests (see `conn_request_done`).
    fn pool_conn(&mut self, r: &Reactor, me: &Weak<Inner>, cid: ConnId, evs: &mut Vec<Ev>) {
        let Some(conn) = self.conns.get_mut(&cid) else { return };
        if !conn.idle || self.closed {
            return;
        }
        let b = conn.backend;
        self.backends[b].idle.push(cid);
        self.schedule(r, me, evs);
        let Some(conn) = self.conns.get_mut(&cid) else { return };
        if !conn.idle {
            return;
        }
        if self.cfg.idle_timeout_ms > 0 {
            let t = match conn.idle_timer {
                Some(t) => t,
                None => {
                    let w = me.clone();
                    let t = r.timer(Box::new(move |r, _| {
                        if let Some(inner) = w.upgrade() {
                            inner.idle_timeout(r, cid);
                        }
                    }));
                    r.timer_set_ref(t, false);
                    conn.idle_timer = Some(t);
                    t
                }
            };
            r.timer_start(t, self.cfg.idle_timeout_ms, 0);
        }
        let max_idle = self.cfg.max_idle.unwrap_or(self.cfg.max_conns);
        while self.backends[b].idle.len() > max_idle {
            let oldest = self.backends[b].idle[0];
            self.drop_conn(r, oldest);
        }
    }

    /// Opens a management connection for GET_VALUES: for the caller (`cb`) or to probe the
    /// backend's limits before its first use (`cb` = None).
    fn start_mgmt(&mut self, r: &Reactor, me: &Weak<Inner>, b: usize, cb: Option<ValuesCallback>, evs: &mut Vec<Ev>) {
        let probe = cb.is_none();
        let cid = match self.connect(r, me, b) {
            Ok(cid) => cid,
            Err(e) => {
                if let Some(cb) = cb {
                    evs.push(Ev::Values(cb, Err(end(Outcome::BadGateway, e.to_string()))));
                }
                return;
            }
        };
        let mut buf = Vec::new();
        writer::get_values(&mut buf, &[proto::MAX_CONNS, proto::MAX_REQS, proto::MPXS_CONNS]);
        let w = me.clone();
        let timer = r.timer(Box::new(move |r, _| {
            if let Some(inner) = w.upgrade() {
                inner.mgmt_timeout(r, cid);
            }
        }));
        // Connect, then the answer, each within the connect timeout.
        r.timer_start(timer, self.cfg.connect_timeout_ms.max(1) * 2, 0);
        if probe {
            self.backends[b].probe = Probe::Running;
        }
        let conn = self.conns.get_mut(&cid).expect("just added");
        conn.stream.write(&buf);
        conn.mgmt = Some(Mgmt { cb, probe, timer });
    }

    /// GET_VALUES_RESULT arrived on a management connection.
    fn mgmt_result(&mut self, r: &Reactor, me: &Weak<Inner>, cid: ConnId, pairs: Vec<Pair>, evs: &mut Vec<Ev>) {
        let Some(mut conn) = self.drop_conn(r, cid) else { return };
        let b = conn.backend;
        let m = conn.mgmt.as_mut().expect("management connection");
        if m.probe {
            let num = |name: &str| -> Option<usize> {
                pairs
                    .iter()
                    .find(|(n, _)| n == name.as_bytes())
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse().ok())
            };
            let be = &mut self.backends[b];
            if let Some(m) = num(proto::MAX_CONNS).filter(|&m| m > 0) {
                be.max_conns = Some(m);
            }
            if let Some(m) = num(proto::MAX_REQS).filter(|&m| m > 0) {
                be.mpx_reqs = m.min(u16::MAX as usize - 1);
            }
            if self.cfg.multiplex == Multiplex::Auto {
                be.mpx = num(proto::MPXS_CONNS) == Some(1);
            }
            be.probe = Probe::Unneeded;
        }
        if let Some(cb) = m.cb.take() {
            evs.push(Ev::Values(cb, Ok(pairs)));
        }
        self.schedule(r, me, evs);
    }

    /// Adds response bytes for a paused caller; stops reading the connection past the mark.
    fn buffer(&mut self, cid: ConnId, rid: ReqId, p: Pending) {
        let hw = self.cfg.stdout_high_water;
        let Some(req) = self.reqs.get_mut(&rid) else { return };
        req.pending_bytes += p.len();
        req.pending.push_back(p);
        if req.pending_bytes > hw {
            if let Some(c) = self.conns.get_mut(&cid) {
                if !c.read_paused_for.contains(&rid) {
                    if c.read_paused_for.is_empty() {
                        c.stream.pause_read();
                    }
                    c.read_paused_for.push(rid);
                }
            }
        }
    }
}

fn keep_for_replay(replay: &mut Option<Vec<u8>>, bytes: &[u8]) {
    if let Some(r) = replay {
        if r.len() + bytes.len() > REPLAY_LIMIT {
            *replay = None;
        } else {
            r.extend_from_slice(bytes);
        }
    }
}

fn push_data_stream(buf: &mut Vec<u8>, req: &Req, id: u16) {
    if req.role == Role::Filter {
        if let Some(d) = &req.data {
            writer::stream(buf, RecordType::Data, id, d);
        }
        writer::stream_end(buf, RecordType::Data, id);
    }
}

/// What one parsing step asks the caller to deliver, outside the borrow.
enum Delivery {
    Headers(ReqId, CgiHead),
    /// Body bytes: `data[start..end]` of the chunk being parsed.
    Body(ReqId, usize, usize),
    Stderr(ReqId, usize, usize),
}

struct Step {
    consumed: usize,
    deliveries: Vec<Delivery>,
    stop: bool,
}

// ------------------------------------------------------------------------------------------
// entry points: borrow, work, release, then call user code

impl Inner {
    fn handle(&self, id: ReqId) -> RequestHandle {
        RequestHandle { inner: self.me.clone(), id }
    }

    /// Runs collected events now (reactor context).
    fn run(&self, evs: Vec<Ev>) {
        for ev in evs {
            match ev {
                Ev::End(rid, mut h, e) => h.on_end(&self.handle(rid), &e),
                Ev::Drain(rid) => {
                    self.with_handler(rid, |h, req| {
                        h.on_drain(req);
                        Next::Continue
                    });
                }
                Ev::Flush(rid) => self.flush_pending(rid),
                Ev::Values(cb, res) => cb(res),
            }
        }
    }

    /// Runs collected events at the start of the reactor's next iteration (for events caused
    /// by a method call: callbacks never run inside the caller's call).
    fn run_later(&self, evs: Vec<Ev>) {
        if evs.is_empty() {
            return;
        }
        let w = self.me.clone();
        self.reactor.defer(Box::new(move |_| {
            if let Some(inner) = w.upgrade() {
                inner.run(evs);
            }
        }));
    }

    /// Calls the request's handler without holding the borrow; handles the request ending
    /// meanwhile (its `on_end` then runs right after).
    fn with_handler(
        &self,
        rid: ReqId,
        f: impl FnOnce(&mut dyn ResponseHandler, &RequestHandle) -> Next,
    ) -> Option<Next> {
        let mut h = {
            let mut st = self.st.borrow_mut();
            st.reqs.get_mut(&rid)?.handler.take()?
        };
        let handle = self.handle(rid);
        let next = f(h.as_mut(), &handle);
        let orphan = {
            let mut st = self.st.borrow_mut();
            match st.reqs.get_mut(&rid) {
                Some(req) => {
                    req.handler = Some(h);
                    if next == Next::Pause {
                        req.paused = true;
                    }
                    None
                }
                None => st.orphans.remove(&rid).map(|e| (h, e)),
            }
        };
        if let Some((mut h, e)) = orphan {
            h.on_end(&handle, &e);
        }
        Some(next)
    }

    fn deliver(&self, rid: ReqId, item: Item<'_>) {
        let _ = self.with_handler(rid, |h, req| match item {
            Item::Headers(head) => h.on_headers(req, head),
            Item::Body(b) => h.on_body(req, b),
            Item::Stderr(b) => h.on_stderr(req, b),
        });
    }

    /// Delivers buffered response data to a caller that resumed, then a parked end.
    fn flush_pending(&self, rid: ReqId) {
        loop {
            let item = {
                let mut st = self.st.borrow_mut();
                let Some(req) = st.reqs.get_mut(&rid) else { return };
                if req.paused {
                    break;
                }
                match req.pending.pop_front() {
                    Some(p) => {
                        req.pending_bytes -= p.len();
                        Some(p)
                    }
                    None => None,
                }
            };
            match item {
                Some(p) => self.deliver(rid, p.as_item()),
                None => break,
            }
        }
        let mut evs = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            let hw = st.cfg.stdout_high_water;
            let Some(req) = st.reqs.get_mut(&rid) else { return };
            let (paused, drained, bytes) = (req.paused, req.pending.is_empty(), req.pending_bytes);
            if !paused && drained {
                if let Some(e) = req.final_end.take() {
                    let req = st.reqs.remove(&rid).expect("present");
                    match req.handler {
                        Some(h) => evs.push(Ev::End(rid, h, e)),
                        None => {
                            st.orphans.insert(rid, e);
                        }
                    }
                }
            }
            if bytes <= hw {
                if let Some(Phase::OnConn(cid, _)) = st.reqs.get(&rid).map(|r| &r.phase) {
                    let cid = *cid;
                    st.unpause_conn_for(cid, rid);
                }
            }
        }
        self.run(evs);
    }

    fn conn_connected(&self, cid: ConnId) {
        let mut st = self.st.borrow_mut();
        if let Some(c) = st.conns.get_mut(&cid) {
            c.connected = true;
        }
    }

    fn conn_data(&self, cid: ConnId, data: &[u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let mut evs = Vec::new();
            let step = {
                let mut st = self.st.borrow_mut();
                self.step(&mut st, cid, &data[pos..], pos, &mut evs)
            };
            pos += step.consumed;
            for d in &step.deliveries {
                let (rid, item) = match d {
                    Delivery::Headers(rid, head) => (*rid, Item::Headers(head)),
                    Delivery::Body(rid, s, e) => (*rid, Item::Body(&data[*s..*e])),
                    Delivery::Stderr(rid, s, e) => (*rid, Item::Stderr(&data[*s..*e])),
                };
                // Deliver directly unless the caller paused meanwhile (then buffer a copy).
                let direct = {
                    let mut st = self.st.borrow_mut();
                    match st.reqs.get(&rid) {
                        None => false,
                        Some(req) if req.paused || !req.pending.is_empty() => {
                            st.buffer(cid, rid, item.to_pending());
                            false
                        }
                        Some(_) => true,
                    }
                };
                if direct {
                    self.deliver(rid, item);
                }
            }
            self.run(evs);
            if step.stop {
                break;
            }
        }
    }

    /// Parses one frame of a connection's input and updates the state.
    fn step(&self, st: &mut State, cid: ConnId, input: &[u8], base: usize, evs: &mut Vec<Ev>) -> Step {
        let r = &self.reactor;
        let now = r.now_ms();
        let mut out = Step { consumed: input.len(), deliveries: Vec::new(), stop: false };
        let Some(conn) = st.conns.get_mut(&cid) else {
            out.stop = true;
            return out;
        };
        let parsed = conn.parser.parse(input);
        let (n, frame) = match parsed {
            Ok(x) => x,
            Err(e) => {
                st.conn_lost(r, &self.me, cid, ConnLoss::Protocol(e), evs);
                out.stop = true;
                return out;
            }
        };
        out.consumed = n;
        let Some(frame) = frame else { return out };
        let is_mgmt = conn.mgmt.is_some();
        let lookup = |conn: &Conn, id: u16| conn.ids.get(&id).copied().flatten();
        // Offsets of a frame's data within the whole chunk.
        let span = |d: &[u8]| -> (usize, usize) {
            let s = base + (d.as_ptr() as usize - input.as_ptr() as usize);
            (s, s + d.len())
        };
        match frame {
            Frame::Stdout { id, data } => {
                let Some(rid) = lookup(conn, id) else { return out };
                let req = st.reqs.get_mut(&rid).expect("request of a live id");
                req.got_any = true;
                req.last_recv = now;
                req.replay = None;
                let (s, e) = span(data);
                if req.raw || req.head_done {
                    req.started = true;
                    out.deliveries.push(Delivery::Body(rid, s, e));
                    return out;
                }
                match req.cgi.feed(data) {
                    Ok(None) => {}
                    Ok(Some((head, off))) => {
                        req.head_done = true;
                        req.started = true;
                        out.deliveries.push(Delivery::Headers(rid, head));
                        if s + off < e {
                            out.deliveries.push(Delivery::Body(rid, s + off, e));
                        }
                    }
                    Err(err) => {
                        let e = end(Outcome::BadGateway, format!("invalid CGI response headers: {err}"));
                        st.give_up(r, rid, e, evs);
                        st.schedule(r, &self.me, evs);
                        out.stop = !st.conns.contains_key(&cid);
                    }
                }
            }
            Frame::Stderr { id, data } => {
                let Some(rid) = lookup(conn, id) else { return out };
                let req = st.reqs.get_mut(&rid).expect("request of a live id");
                req.got_any = true;
                req.last_recv = now;
                req.replay = None;
                let (s, e) = span(data);
                out.deliveries.push(Delivery::Stderr(rid, s, e));
            }
            Frame::StdoutEnd { .. } | Frame::StderrEnd { .. } | Frame::Ignored { .. } => {}
            Frame::EndRequest { id, app_status, protocol_status } => {
                let Some(slot) = conn.ids.get(&id).copied() else { return out };
                let Some(rid) = slot else {
                    // A request given up earlier finished: its id is free again.
                    conn.ids.remove(&id);
                    st.conn_request_done(r, &self.me, cid, None, evs);
                    out.stop = !st.conns.contains_key(&cid);
                    return out;
                };
                let b = conn.backend;
                let req = st.reqs.get_mut(&rid).expect("request of a live id");
                req.got_any = true;
                let started = req.attached_at;
                // The connection can be reused only if the backend read all we sent.
                let stdin_open = matches!(req.body, Body::Streaming) && !req.stdin_done;
                if stdin_open {
                    st.conns.get_mut(&cid).expect("live").reusable = false;
                }
                let req = st.reqs.get_mut(&rid).expect("request of a live id");
                let (outcome, reason) = match protocol_status {
                    ProtocolStatus::RequestComplete if !req.raw && !req.head_done => {
                        (Outcome::BadGateway, "END_REQUEST before the end of the CGI header block".to_string())
                    }
                    ProtocolStatus::RequestComplete => (Outcome::Complete, "complete".to_string()),
                    ProtocolStatus::CantMpxConn => {
                        st.backends[b].mpx = false;
                        st.conns.get_mut(&cid).expect("live").mpx = false;
                        (Outcome::CantMpxConn, "backend cannot multiplex connections".to_string())
                    }
                    ProtocolStatus::Overloaded => (Outcome::Overloaded, "backend overloaded".to_string()),
                    ProtocolStatus::UnknownRole => {
                        (Outcome::UnknownRole, "backend does not support the role".to_string())
                    }
                    ProtocolStatus::Other(v) => {
                        (Outcome::BadGateway, format!("END_REQUEST with unknown protocol status {v}"))
                    }
                };
                let e = End { outcome, app_status, protocol_status: Some(protocol_status), reason };
                if matches!(outcome, Outcome::Overloaded | Outcome::UnknownRole) {
                    st.conns.get_mut(&cid).expect("live").reusable = false;
                }
                st.finish(r, rid, e, evs);
                st.conn_request_done(r, &self.me, cid, Some(started), evs);
                out.stop = !st.conns.contains_key(&cid);
            }
            Frame::GetValuesResult { pairs } => {
                if is_mgmt {
                    st.mgmt_result(r, &self.me, cid, pairs, evs);
                    out.stop = true;
                }
            }
            Frame::UnknownType { rtype } => {
                if is_mgmt {
                    let e = ParseError::UnexpectedType { rtype, id: 0 };
                    st.conn_lost(r, &self.me, cid, ConnLoss::Protocol(e), evs);
                    out.stop = true;
                }
            }
        }
        out
    }

    fn conn_closed(&self, cid: ConnId, err: Option<io::Error>) {
        let mut evs = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            let loss = match err {
                Some(e) => ConnLoss::Io(e),
                None => ConnLoss::Eof,
            };
            st.conn_lost(&self.reactor, &self.me, cid, loss, &mut evs);
        }
        self.run(evs);
    }

    fn conn_drained(&self, cid: ConnId) {
        let mut evs = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            let now = self.reactor.now_ms();
            let Some(conn) = st.conns.get(&cid) else { return };
            let rids: Vec<ReqId> = conn.ids.values().flatten().copied().collect();
            for rid in rids {
                if let Some(req) = st.reqs.get_mut(&rid) {
                    req.last_send = now;
                    if req.want_drain {
                        req.want_drain = false;
                        evs.push(Ev::Drain(rid));
                    }
                }
            }
        }
        self.run(evs);
    }

    /// Schedules the queue at the start of the next iteration (once however often asked).
    fn schedule_later(&self) {
        {
            let mut st = self.st.borrow_mut();
            if st.schedule_queued {
                return;
            }
            st.schedule_queued = true;
        }
        let w = self.me.clone();
        self.reactor.defer(Box::new(move |_| {
            if let Some(inner) = w.upgrade() {
                inner.st.borrow_mut().schedule_queued = false;
                let mut evs = Vec::new();
                {
                    let mut st = inner.st.borrow_mut();
                    st.schedule(&inner.reactor, &inner.me, &mut evs);
                }
                inner.run(evs);
            }
        }));
    }

    fn pool_conn(&self, cid: ConnId) {
        let mut evs = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            st.pool_conn(&self.reactor, &self.me, cid, &mut evs);
        }
        self.run(evs);
    }

    fn idle_timeout(&self, r: &Reactor, cid: ConnId) {
        let mut st = self.st.borrow_mut();
        if st.conns.get(&cid).is_some_and(|c| c.idle) {
            st.drop_conn(r, cid);
        }
    }

    fn mgmt_timeout(&self, r: &Reactor, cid: ConnId) {
        let mut evs = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            let e = io::Error::from_raw_os_error(libc::ETIMEDOUT);
            st.conn_lost(r, &self.me, cid, ConnLoss::Io(e), &mut evs);
        }
        self.run(evs);
    }

    fn req_timer(&self, r: &Reactor, rid: ReqId) {
        let mut evs = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            st.check_timeouts(r, &self.me, rid, &mut evs);
        }
        self.run(evs);
    }

    /// Ends everything: in-flight requests get `Aborted` (now, in this call).
    fn close(&self) {
        let mut evs = Vec::new();
        {
            let mut st = self.st.borrow_mut();
            if st.closed {
                return;
            }
            st.closed = true;
            let r = &self.reactor;
            let mut rids: Vec<ReqId> = st.reqs.keys().copied().collect();
            rids.sort_unstable();
            for rid in rids {
                st.give_up(r, rid, end(Outcome::Aborted, "client closed"), &mut evs);
            }
            let cids: Vec<ConnId> = st.conns.keys().copied().collect();
            for cid in cids {
                if let Some(mut c) = st.drop_conn(r, cid) {
                    if let Some(cb) = c.mgmt.as_mut().and_then(|m| m.cb.take()) {
                        evs.push(Ev::Values(cb, Err(end(Outcome::Aborted, "client closed"))));
                    }
                }
            }
        }
        self.run(evs);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Streams and timers must not outlive the client; handlers get their Aborted end.
        let st = self.st.get_mut();
        if st.closed {
            return;
        }
        st.closed = true;
        let r = self.reactor.clone();
        let reqs: Vec<(ReqId, Req)> = st.reqs.drain().collect();
        for c in st.conns.values() {
            c.stream.close();
            if let Some(t) = c.idle_timer {
                r.timer_free(t);
            }
            if let Some(m) = &c.mgmt {
                r.timer_free(m.timer);
            }
        }
        let conns: Vec<Conn> = st.conns.drain().map(|(_, c)| c).collect();
        for (rid, req) in reqs {
            r.timer_free(req.timer);
            if let Some(mut h) = req.handler {
                let handle = RequestHandle { inner: Weak::new(), id: rid };
                st.stats.add(Stat::Aborted, 1);
                h.on_end(&handle, &end(Outcome::Aborted, "client closed"));
            }
        }
        for mut c in conns {
            if let Some(cb) = c.mgmt.as_mut().and_then(|m| m.cb.take()) {
                cb(Err(end(Outcome::Aborted, "client closed")));
            }
        }
    }
}

struct ConnHandler {
    client: Weak<Inner>,
    cid: ConnId,
}

impl StreamHandler for ConnHandler {
    fn on_connect(&mut self, _s: &Stream) {
        if let Some(c) = self.client.upgrade() {
            c.conn_connected(self.cid);
        }
    }

    fn on_data(&mut self, _s: &Stream, data: &[u8]) {
        if let Some(c) = self.client.upgrade() {
            c.conn_data(self.cid, data);
        }
    }

    fn on_end(&mut self, _s: &Stream) {
        if let Some(c) = self.client.upgrade() {
            c.conn_closed(self.cid, None);
        }
    }

    fn on_error(&mut self, _s: &Stream, err: io::Error) {
        if let Some(c) = self.client.upgrade() {
            c.conn_closed(self.cid, Some(err));
        }
    }

    fn on_drain(&mut self, _s: &Stream) {
        if let Some(c) = self.client.upgrade() {
            c.conn_drained(self.cid);
        }
    }
}

// ------------------------------------------------------------------------------------------
// public API

impl Client {
    /// A client on `reactor` with `config` (copied). Fails without backends.
    pub fn new(reactor: &Reactor, config: Config) -> Result<Client, ClientError> {
        if config.backends.is_empty() {
            return Err(ClientError::NoBackend);
        }
        let probe = config.probe_values || config.multiplex == Multiplex::Auto;
        let backends = config
            .backends
            .iter()
            .map(|(label, addr)| Backend {
                label: label.clone(),
                addr: addr.clone(),
                conns: Vec::new(),
                idle: Vec::new(),
                active: 0,
                max_conns: None,
                mpx: config.multiplex == Multiplex::On,
                mpx_reqs: DEFAULT_MPX_REQS,
                probe: if probe { Probe::NotStarted } else { Probe::Unneeded },
                down_until: 0,
                soft_cap: None,
                last_starve_scan: 0,
            })
            .collect();
        let inner = Rc::new_cyclic(|me| Inner {
            reactor: reactor.clone(),
            me: me.clone(),
            st: RefCell::new(State {
                cfg: config,
                backends,
                reqs: IdMap::default(),
                conns: IdMap::default(),
                queue: VecDeque::new(),
                next_id: 0,
                rr: 0,
                stats: Stats::default(),
                closed: false,
                orphans: IdMap::default(),
                schedule_queued: false,
            }),
        });
        Ok(Client { inner })
    }

    /// The reactor the client runs on.
    pub fn reactor(&self) -> &Reactor {
        &self.inner.reactor
    }

    /// Sends a request. `handler.on_end` will run exactly once, never inside this call.
    /// Fails only when the client is closed (then the handler is dropped uncalled).
    pub fn send(&self, req: Request, handler: Box<dyn ResponseHandler>) -> Result<RequestHandle, ClientError> {
        let inner = &self.inner;
        let r = &inner.reactor;
        let mut evs = Vec::new();
        let rid = {
            let mut st = inner.st.borrow_mut();
            if st.closed || r.is_closed() {
                return Err(ClientError::Closed);
            }
            let rid = st.new_id();
            let now = r.now_ms();
            let timeout = req.timeout_ms.unwrap_or(st.cfg.request_timeout_ms);
            let w = inner.me.clone();
            let timer = r.timer(Box::new(move |r, _| {
                if let Some(inner) = w.upgrade() {
                    inner.req_timer(r, rid);
                }
            }));
            let streaming = matches!(req.body, Body::Streaming);
            let cgi = CgiParser::new(st.cfg.max_header_bytes);
            st.reqs.insert(
                rid,
                Req {
                    handler: Some(handler),
                    params: req.params,
                    role: req.role,
                    body: req.body,
                    data: req.data,
                    raw: req.raw,
                    phase: Phase::Queued,
                    stdin_unsent: Vec::new(),
                    stdin_done: !streaming,
                    replay: streaming.then(Vec::new),
                    want_drain: false,
                    cgi,
                    head_done: false,
                    got_any: false,
                    started: false,
                    paused: false,
                    pending: VecDeque::new(),
                    pending_bytes: 0,
                    final_end: None,
                    tried: Vec::new(),
                    tries: 0,
                    stale_retried: false,
                    fresh_only: false,
                    reused_conn: false,
                    timer,
                    deadline: (timeout > 0).then(|| now + timeout),
                    last_recv: now,
                    last_send: now,
                    last_queued: 0,
                    enqueued: Instant::now(),
                    attached_at: now,
                    starve_checked: false,
                },
            );
            st.stats.add(Stat::Requests, 1);
            st.queue.push_back(rid);
            st.arm_timer(r, rid);
            if st.queue.len() > st.cfg.queue_limit {
                st.finish(r, rid, end(Outcome::Overloaded, "request queue full"), &mut evs);
            }
            rid
        };
        // Placed on the next iteration, after connections that just finished are pooled.
        inner.schedule_later();
        inner.run_later(evs);
        Ok(inner.handle(rid))
    }

    /// Sends a request and runs the reactor until it ends. Not from inside a callback.
    pub fn fetch(&self, req: Request) -> Result<Response, ClientError> {
        if self.inner.reactor.is_running() {
            return Err(ClientError::Reentrant);
        }
        let cell = Rc::new(RefCell::new((Response::default(), false)));
        self.send(req, Box::new(Collect(cell.clone())))?;
        while !cell.borrow().1 {
            match self.inner.reactor.run(RunMode::Once) {
                Ok(()) => {}
                Err(RunError::Reentrant) => return Err(ClientError::Reentrant),
                Err(_) => return Err(ClientError::Closed),
            }
        }
        let resp = std::mem::take(&mut cell.borrow_mut().0);
        Ok(resp)
    }

    /// Asks backend `index` (config order) for FCGI_MAX_CONNS, FCGI_MAX_REQS and
    /// FCGI_MPXS_CONNS on a connection of its own. `cb` runs once, never inside this call.
    pub fn get_values(&self, index: usize, cb: ValuesCallback) -> Result<(), ClientError> {
        let inner = &self.inner;
        let mut evs = Vec::new();
        {
            let mut st = inner.st.borrow_mut();
            if st.closed {
                return Err(ClientError::Closed);
            }
            if index >= st.backends.len() {
                return Err(ClientError::NoBackend);
            }
            st.start_mgmt(&inner.reactor, &inner.me, index, Some(cb), &mut evs);
        }
        inner.run_later(evs);
        Ok(())
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        let st = self.inner.st.borrow();
        let mut s = st.stats;
        s.set(Stat::QueueLength, st.queue.len() as u64);
        s.set(Stat::InFlight, st.reqs.values().filter(|r| !matches!(r.phase, Phase::Draining)).count() as u64);
        s.set(Stat::ConnsOpen, st.data_conns() as u64);
        s
    }

    pub fn stat(&self, which: Stat) -> u64 {
        self.stats().get(which)
    }

    /// Closes every connection; in-flight requests end with `Aborted` during this call.
    /// Further sends fail with `Closed`.
    pub fn close(&self) {
        self.inner.close();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.st.borrow().closed
    }
}

impl RequestHandle {
    fn with<T>(
        &self,
        f: impl FnOnce(&Rc<Inner>, &mut State, &mut Vec<Ev>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let inner = self.inner.upgrade().ok_or(ClientError::Closed)?;
        let mut evs = Vec::new();
        let res = {
            let mut st = inner.st.borrow_mut();
            f(&inner, &mut st, &mut evs)
        };
        inner.run_later(evs);
        res
    }

    /// A number unique within the client.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True until the request ended (its end may still be on its way to `on_end`).
    pub fn is_active(&self) -> bool {
        self.inner
            .upgrade()
            .is_some_and(|i| i.st.borrow().reqs.get(&self.id).is_some_and(|r| !matches!(r.phase, Phase::Draining)))
    }

    /// Streams body bytes (request sent with a streaming body). `Busy`: accepted, but wait for
    /// `on_drain` before writing more.
    pub fn write(&self, data: &[u8]) -> Result<WriteStatus, ClientError> {
        let rid = self.id;
        self.with(|_, st, _| {
            let req = st.reqs.get_mut(&rid).ok_or(ClientError::Closed)?;
            if !matches!(req.body, Body::Streaming) || req.stdin_done {
                return Err(ClientError::Invalid);
            }
            if data.is_empty() {
                return Ok(WriteStatus::Ok);
            }
            match req.phase {
                Phase::Draining => Err(ClientError::Closed),
                Phase::Queued => {
                    req.stdin_unsent.extend_from_slice(data);
                    if req.stdin_unsent.len() >= STDIN_HIGH_WATER {
                        req.want_drain = true;
                        Ok(WriteStatus::Busy)
                    } else {
                        Ok(WriteStatus::Ok)
                    }
                }
                Phase::OnConn(cid, id) => {
                    let mut buf = Vec::with_capacity(data.len() + 16);
                    writer::stream(&mut buf, RecordType::Stdin, id, data);
                    if !req.got_any {
                        keep_for_replay(&mut req.replay, data);
                    }
                    let below = st.conns[&cid].stream.write(&buf);
                    let req = st.reqs.get_mut(&rid).expect("present");
                    if below {
                        Ok(WriteStatus::Ok)
                    } else {
                        req.want_drain = true;
                        Ok(WriteStatus::Busy)
                    }
                }
            }
        })
    }

    /// Ends the streamed body (the empty STDIN record, then DATA for FILTER).
    pub fn finish(&self) -> Result<(), ClientError> {
        let rid = self.id;
        self.with(|_, st, _| {
            let req = st.reqs.get_mut(&rid).ok_or(ClientError::Closed)?;
            if !matches!(req.body, Body::Streaming) || req.stdin_done {
                return Err(ClientError::Invalid);
            }
            req.stdin_done = true;
            if let Phase::OnConn(cid, id) = req.phase {
                let mut buf = Vec::new();
                writer::stream_end(&mut buf, RecordType::Stdin, id);
                push_data_stream(&mut buf, req, id);
                st.conns[&cid].stream.write(&buf);
            }
            Ok(())
        })
    }

    /// Resumes delivery after a callback returned `Pause`.
    pub fn resume(&self) -> Result<(), ClientError> {
        let rid = self.id;
        self.with(|_, st, evs| {
            let req = st.reqs.get_mut(&rid).ok_or(ClientError::Closed)?;
            if req.paused {
                req.paused = false;
                req.last_recv = req.last_recv.max(req.last_send);
                evs.push(Ev::Flush(rid));
            }
            Ok(())
        })
    }

    /// Aborts the request: `on_end(Aborted)` follows, not inside this call.
    pub fn abort(&self) -> Result<(), ClientError> {
        let rid = self.id;
        self.with(|inner, st, evs| {
            if !st.reqs.contains_key(&rid) {
                return Err(ClientError::Closed);
            }
            let r = &inner.reactor;
            st.give_up(r, rid, end(Outcome::Aborted, "aborted by the caller"), evs);
            st.schedule(r, &inner.me, evs);
            Ok(())
        })
    }
}

/// Handler of [`Client::fetch`]: collects the whole response.
struct Collect(Rc<RefCell<(Response, bool)>>);

impl ResponseHandler for Collect {
    fn on_headers(&mut self, _req: &RequestHandle, head: &CgiHead) -> Next {
        let r = &mut self.0.borrow_mut().0;
        r.status = head.status;
        r.headers = head.headers.clone();
        Next::Continue
    }

    fn on_body(&mut self, _req: &RequestHandle, data: &[u8]) -> Next {
        self.0.borrow_mut().0.body.extend_from_slice(data);
        Next::Continue
    }

    fn on_stderr(&mut self, _req: &RequestHandle, data: &[u8]) -> Next {
        self.0.borrow_mut().0.stderr.extend_from_slice(data);
        Next::Continue
    }

    fn on_end(&mut self, _req: &RequestHandle, e: &End) {
        let mut c = self.0.borrow_mut();
        c.0.outcome = Some(e.outcome);
        c.0.app_status = e.app_status;
        c.0.protocol_status = e.protocol_status;
        c.0.reason = e.reason.clone();
        c.1 = true;
    }
}
