//! Client configuration and statistics.

use crate::stream::Address;
use std::io;

/// How a backend is chosen for each request.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConnections,
}

/// Multiplexing several requests on one connection.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Default)]
pub enum Multiplex {
    /// One request per connection (what php-fpm needs).
    #[default]
    Off,
    /// Multiplex; the backend is trusted to handle it (CANT_MPX_CONN turns it off).
    On,
    /// Ask the backend with GET_VALUES (FCGI_MPXS_CONNS) before first use.
    Auto,
}

/// Client configuration. Times in milliseconds; 0 means no limit where noted.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) backends: Vec<(String, Address)>,
    /// Connect timeout (default 5000).
    pub connect_timeout_ms: u64,
    /// Longest time the send side may make no progress (default 30000; 0 = none).
    pub send_timeout_ms: u64,
    /// Longest time between bytes received while a response is due (default 60000; 0 = none).
    pub read_timeout_ms: u64,
    /// Whole request including queue wait (default 0 = none).
    pub request_timeout_ms: u64,
    /// Send FCGI_KEEP_CONN and pool connections (default true).
    pub keep_alive: bool,
    /// Connections per backend (default 16); capped by FCGI_MAX_CONNS when probed.
    pub max_conns: usize,
    /// Idle connections kept per backend (default: `max_conns`).
    pub max_idle: Option<usize>,
    /// Idle connections are closed after this long (default 30000; 0 = never).
    pub idle_timeout_ms: u64,
    /// Requests per connection before it is retired (default 0 = unlimited).
    pub max_requests_per_conn: u64,
    pub balance: Balance,
    /// Backends tried for one request when connecting fails or times out (default 3).
    pub max_tries: u32,
    /// Requests that may wait for a connection (default 4096); beyond: Overloaded.
    pub queue_limit: usize,
    /// CGI header block limit in bytes (default 65536).
    pub max_header_bytes: usize,
    pub multiplex: Multiplex,
    /// Ask FCGI_MAX_CONNS (GET_VALUES) before first use of each backend (default false).
    pub probe_values: bool,
    /// Bytes buffered for a paused caller before the connection stops being read (default 65536).
    pub stdout_high_water: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            backends: Vec::new(),
            connect_timeout_ms: 5000,
            send_timeout_ms: 30000,
            read_timeout_ms: 60000,
            request_timeout_ms: 0,
            keep_alive: true,
            max_conns: 16,
            max_idle: None,
            idle_timeout_ms: 30000,
            max_requests_per_conn: 0,
            balance: Balance::RoundRobin,
            max_tries: 3,
            queue_limit: 4096,
            max_header_bytes: 65536,
            multiplex: Multiplex::Off,
            probe_values: false,
            stdout_high_water: 65536,
        }
    }
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Adds a backend: `unix:/path`, `tcp:host:port`, `tcp:[::1]:port`, `/path` or `host:port`.
    pub fn add_backend(&mut self, address: &str) -> io::Result<&mut Config> {
        let addr = Address::parse(address)?;
        self.backends.push((address.to_string(), addr));
        Ok(self)
    }

    /// Backend addresses as given, in order.
    pub fn backends(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|(s, _)| s.as_str())
    }
}

/// Per-client statistics (the numbers are the `HEISEN_FCGI_STAT_*` values).
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
#[repr(i32)]
pub enum Stat {
    Requests = 0,
    Complete = 1,
    Truncated = 2,
    BadGateway = 3,
    Timeout = 4,
    Overloaded = 5,
    Aborted = 6,
    CantMpxConn = 7,
    UnknownRole = 8,
    Retries = 9,
    ConnsOpened = 10,
    ConnsReused = 11,
    PeakConns = 12,
    QueueLength = 13,
    QueueWaitUsTotal = 14,
    QueueWaitUsMax = 15,
    InFlight = 16,
    ConnsOpen = 17,
    Failovers = 18,
    IdleClosedByPeer = 19,
}

impl Stat {
    pub const COUNT: usize = 20;

    pub fn from_i32(v: i32) -> Option<Stat> {
        use Stat::*;
        const ALL: [Stat; Stat::COUNT] = [
            Requests,
            Complete,
            Truncated,
            BadGateway,
            Timeout,
            Overloaded,
            Aborted,
            CantMpxConn,
            UnknownRole,
            Retries,
            ConnsOpened,
            ConnsReused,
            PeakConns,
            QueueLength,
            QueueWaitUsTotal,
            QueueWaitUsMax,
            InFlight,
            ConnsOpen,
            Failovers,
            IdleClosedByPeer,
        ];
        usize::try_from(v).ok().and_then(|i| ALL.get(i).copied())
    }
}

/// A snapshot of the statistics, indexed by [`Stat`].
#[derive(Copy, Clone, Debug, Default, Eq, PartialEq)]
pub struct Stats(pub [u64; Stat::COUNT]);

impl Stats {
    pub fn get(&self, s: Stat) -> u64 {
        self.0[s as usize]
    }

    pub(crate) fn add(&mut self, s: Stat, n: u64) {
        self.0[s as usize] += n;
    }

    pub(crate) fn set(&mut self, s: Stat, v: u64) {
        self.0[s as usize] = v;
    }

    pub(crate) fn max(&mut self, s: Stat, v: u64) {
        let slot = &mut self.0[s as usize];
        *slot = (*slot).max(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_numbers_match_the_c_api() {
        for i in 0..Stat::COUNT as i32 {
            assert_eq!(Stat::from_i32(i).unwrap() as i32, i);
        }
        assert_eq!(Stat::from_i32(20), None);
        assert_eq!(Stat::from_i32(-1), None);
        assert_eq!(Stat::IdleClosedByPeer as i32, 19);
        assert_eq!(Stat::QueueLength as i32, 13);
    }
}
