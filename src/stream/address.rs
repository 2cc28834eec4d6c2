//! Socket addresses as users write them: `unix:/path`, `tcp:host:port`, `tcp:[::1]:port`, or
//! the short forms `/path` and `host:port`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where to connect or listen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

fn invalid(s: &str, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {s:?}: {why}"))
}

impl Address {
    /// Parse an address; host names are resolved now (first result).
    pub fn parse(s: &str) -> io::Result<Address> {
        if s.contains('\0') {
            return Err(invalid(s, "contains NUL"));
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(invalid(s, "empty path"));
            }
            return Ok(Address::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') || s.starts_with("./") {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        let hp = s.strip_prefix("tcp:").unwrap_or(s);
        if let Ok(sa) = hp.parse::<SocketAddr>() {
            return Ok(Address::Tcp(sa));
        }
        let Some((host, port)) = hp.rsplit_once(':') else {
            return Err(invalid(s, "expected unix:/path, /path, tcp:host:port or host:port"));
        };
        let port: u16 = port.parse().map_err(|_| invalid(s, "bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid(s, "empty host"));
        }
        (host, port)
            .to_socket_addrs()?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| invalid(s, "host has no address"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(sa) => write!(f, "tcp:{sa}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(Address::parse("unix:/run/a.sock").unwrap(), Address::Unix("/run/a.sock".into()));
        assert_eq!(Address::parse("/run/a.sock").unwrap(), Address::Unix("/run/a.sock".into()));
        assert_eq!(Address::parse("tcp:127.0.0.1:9000").unwrap(), Address::Tcp("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(Address::parse("127.0.0.1:9000").unwrap(), Address::Tcp("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(Address::parse("tcp:[::1]:9000").unwrap(), Address::Tcp("[::1]:9000".parse().unwrap()));
        assert_eq!(Address::parse("localhost:9000").unwrap().to_string().starts_with("tcp:"), true);
        for bad in ["", "unix:", "nohost", "tcp:1.2.3.4:99999", ":80", "a\0b"] {
            assert!(Address::parse(bad).is_err(), "{bad:?}");
        }
    }
}
