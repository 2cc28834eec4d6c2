//! Request parameters and the CGI/1.1 variables a web server sends (what nginx's
//! `fastcgi_params` file sets), built from an HTTP request line and headers.

use super::writer::{check_param, ParamTooLarge};
use std::fmt;

/// Software name sent as `SERVER_SOFTWARE`.
pub const SERVER_SOFTWARE: &str = concat!("heisen/", env!("CARGO_PKG_VERSION"));

/// Errors of the parameter builders.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ParamsError {
    /// The pair could not be sent in one PARAMS record.
    TooLarge(ParamTooLarge),
    /// An argument that cannot form a valid CGI variable.
    Invalid(&'static str),
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamsError::TooLarge(e) => e.fmt(f),
            ParamsError::Invalid(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ParamsError {}

impl From<ParamTooLarge> for ParamsError {
    fn from(e: ParamTooLarge) -> Self {
        ParamsError::TooLarge(e)
    }
}

/// What [`Params::add_http_header`] did with a header.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum HeaderUse {
    /// Stored (or joined onto an earlier header of the same name).
    Added,
    /// Dropped on purpose: an invalid name, or `Proxy` (httpoxy).
    Dropped,
}

/// An ordered set of parameters. Setting a name again replaces its value in place.
/// Every pair is checked to fit in one PARAMS record when it is set, so sending cannot fail.
///
/// Names and values live in one byte buffer (no allocation per parameter); a replaced value
/// leaves its old bytes behind until the set is dropped.
#[derive(Clone, Debug, Default)]
pub struct Params {
    bytes: Vec<u8>,
    /// Per pair: name start, name length, value start, value length (in `bytes`).
    entries: Vec<[u32; 4]>,
}

impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Params {}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn slice(&self, start: u32, len: u32) -> &[u8] {
        &self.bytes[start as usize..start as usize + len as usize]
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| e[1] as usize == name.len() && self.slice(e[0], e[1]) == name)
    }

    /// The value of `name` (exact, case-sensitive match).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.position(name).map(|i| {
            let e = self.entries[i];
            self.slice(e[2], e[3])
        })
    }

    /// Pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|e| (self.slice(e[0], e[1]), self.slice(e[2], e[3])))
    }

    fn push_bytes(&mut self, b: &[u8]) -> [u32; 2] {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(b);
        [start, b.len() as u32]
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn set(&mut self, name: &[u8], value: &[u8]) -> Result<(), ParamsError> {
        if name.is_empty() {
            return Err(ParamsError::Invalid("empty parameter name"));
        }
        check_param(name, value)?;
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(1024);
            self.entries.reserve(24);
        }
        match self.position(name) {
            Some(i) => {
                let [vs, vl] = self.push_bytes(value);
                self.entries[i][2] = vs;
                self.entries[i][3] = vl;
            }
            None => {
                let [ns, nl] = self.push_bytes(name);
                let [vs, vl] = self.push_bytes(value);
                self.entries.push([ns, nl, vs, vl]);
            }
        }
        Ok(())
    }

    /// Sets `name` unless it is already present.
    pub fn set_default(&mut self, name: &[u8], value: &[u8]) -> Result<(), ParamsError> {
        if self.get(name).is_some() {
            return Ok(());
        }
        self.set(name, value)
    }

    /// Removes `name`; true if it was present.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        match self.position(name) {
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// Adds an environ-style block `NAME=VALUE\0NAME=VALUE\0...` (the last `\0` optional;
    /// empty entries are skipped). All or nothing: on error no pair is added.
    pub fn add_block(&mut self, block: &[u8]) -> Result<(), ParamsError> {
        let mut staged = self.clone();
        for entry in block.split(|&b| b == 0).filter(|e| !e.is_empty()) {
            let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                return Err(ParamsError::Invalid("params block entry without '='"));
            };
            staged.set(&entry[..eq], &entry[eq + 1..])?;
        }
        *self = staged;
        Ok(())
    }

    /// Sets the CGI variables of nginx's `fastcgi_params` that come from the request line and
    /// the server's mapping of it: REQUEST_METHOD, REQUEST_URI, QUERY_STRING, DOCUMENT_URI,
    /// SCRIPT_NAME, SCRIPT_FILENAME (document_root + script_name), PATH_INFO and
    /// PATH_TRANSLATED (when `path_info` is given and not empty), DOCUMENT_ROOT, SERVER_PROTOCOL,
    /// GATEWAY_INTERFACE, SERVER_SOFTWARE, REDIRECT_STATUS=200 (which php-cgi needs).
    pub fn set_cgi(
        &mut self,
        method: &str,
        request_uri: &str,
        protocol: &str,
        document_root: &str,
        script_name: &str,
        path_info: Option<&str>,
    ) -> Result<(), ParamsError> {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParamsError::Invalid("invalid request method"));
        }
        if request_uri.is_empty() {
            return Err(ParamsError::Invalid("empty request URI"));
        }
        if protocol.is_empty() {
            return Err(ParamsError::Invalid("empty server protocol"));
        }
        let (path, query) = request_uri.split_once('?').unwrap_or((request_uri, ""));
        let mut staged = self.clone();
        let s = &mut staged;
        s.set(b"REQUEST_METHOD", method.as_bytes())?;
        s.set(b"REQUEST_URI", request_uri.as_bytes())?;
        s.set(b"QUERY_STRING", query.as_bytes())?;
        s.set(b"DOCUMENT_URI", path.as_bytes())?;
        s.set(b"SCRIPT_NAME", script_name.as_bytes())?;
        s.set(b"SCRIPT_FILENAME", join_path(document_root, script_name).as_bytes())?;
        match path_info {
            Some(pi) if !pi.is_empty() => {
                s.set(b"PATH_INFO", pi.as_bytes())?;
                s.set(b"PATH_TRANSLATED", join_path(document_root, pi).as_bytes())?;
            }
            Some(_) => s.set(b"PATH_INFO", b"")?,
            None => {}
        }
        s.set(b"DOCUMENT_ROOT", document_root.as_bytes())?;
        s.set(b"SERVER_PROTOCOL", protocol.as_bytes())?;
        s.set(b"GATEWAY_INTERFACE", b"CGI/1.1")?;
        s.set(b"SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes())?;
        s.set(b"REDIRECT_STATUS", b"200")?;
        *self = staged;
        Ok(())
    }

    /// Sets REMOTE_ADDR, REMOTE_PORT, SERVER_ADDR, SERVER_PORT, SERVER_NAME. `None` addresses
    /// and names are skipped; a port is set when it is not 0.
    pub fn set_peer(
        &mut self,
        remote_addr: Option<&str>,
        remote_port: u16,
        server_addr: Option<&str>,
        server_port: u16,
        server_name: Option<&str>,
    ) -> Result<(), ParamsError> {
        let mut staged = self.clone();
        if let Some(a) = remote_addr {
            staged.set(b"REMOTE_ADDR", a.as_bytes())?;
        }
        if remote_port != 0 {
            staged.set(b"REMOTE_PORT", remote_port.to_string().as_bytes())?;
        }
        if let Some(a) = server_addr {
            staged.set(b"SERVER_ADDR", a.as_bytes())?;
        }
        if server_port != 0 {
            staged.set(b"SERVER_PORT", server_port.to_string().as_bytes())?;
        }
        if let Some(n) = server_name {
            staged.set(b"SERVER_NAME", n.as_bytes())?;
        }
        *self = staged;
        Ok(())
    }

    /// Adds an HTTP request header the way nginx does: `Content-Type` and `Content-Length`
    /// become CONTENT_TYPE and CONTENT_LENGTH, others `HTTP_` + the name uppercased with `-`
    /// turned into `_`. Names with bytes other than `[A-Za-z0-9-]` are dropped (so `X_A` and
    /// `X-A` cannot collide), as is `Proxy` (httpoxy, CVE-2016-5385). A repeated header is
    /// joined to the earlier value with `", "` (`"; "` for Cookie, as HTTP/2 requires).
    pub fn add_http_header(&mut self, name: &[u8], value: &[u8]) -> Result<HeaderUse, ParamsError> {
        if name.is_empty() || !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-') {
            return Ok(HeaderUse::Dropped);
        }
        if name.eq_ignore_ascii_case(b"Proxy") {
            return Ok(HeaderUse::Dropped);
        }
        let var: Vec<u8> = if name.eq_ignore_ascii_case(b"Content-Type") {
            b"CONTENT_TYPE".to_vec()
        } else if name.eq_ignore_ascii_case(b"Content-Length") {
            b"CONTENT_LENGTH".to_vec()
        } else {
            let mut v = b"HTTP_".to_vec();
            v.extend(name.iter().map(|&b| if b == b'-' { b'_' } else { b.to_ascii_uppercase() }));
            v
        };
        let joined = match self.get(&var) {
            Some(old) if var.starts_with(b"HTTP_") => {
                let sep: &[u8] = if var == b"HTTP_COOKIE" { b"; " } else { b", " };
                [old, sep, value].concat()
            }
            _ => value.to_vec(),
        };
        self.set(&var, &joined)?;
        Ok(HeaderUse::Added)
    }
}

fn join_path(root: &str, path: &str) -> String {
    match (root.ends_with('/'), path.starts_with('/')) {
        (true, true) => format!("{root}{}", &path[1..]),
        (false, false) if !root.is_empty() && !path.is_empty() => format!("{root}/{path}"),
        _ => format!("{root}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &Params) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| (String::from_utf8_lossy(n).into(), String::from_utf8_lossy(v).into())).collect()
    }

    fn kv(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn cgi_like_nginx() {
        let mut p = Params::new();
        p.set_cgi(
            "GET",
            "/app/index.php/extra/path?a=1&b=2",
            "HTTP/1.1",
            "/srv/www",
            "/app/index.php",
            Some("/extra/path"),
        )
        .unwrap();
        assert_eq!(
            all(&p),
            kv(&[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/app/index.php/extra/path?a=1&b=2"),
                ("QUERY_STRING", "a=1&b=2"),
                ("DOCUMENT_URI", "/app/index.php/extra/path"),
                ("SCRIPT_NAME", "/app/index.php"),
                ("SCRIPT_FILENAME", "/srv/www/app/index.php"),
                ("PATH_INFO", "/extra/path"),
                ("PATH_TRANSLATED", "/srv/www/extra/path"),
                ("DOCUMENT_ROOT", "/srv/www"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("GATEWAY_INTERFACE", "CGI/1.1"),
                ("SERVER_SOFTWARE", SERVER_SOFTWARE),
                ("REDIRECT_STATUS", "200"),
            ])
        );
        let mut p = Params::new();
        p.set_cgi("POST", "/x.php", "HTTP/1.0", "/r/", "/x.php", None).unwrap();
        assert_eq!(p.get(b"QUERY_STRING"), Some(&b""[..]));
        assert_eq!(p.get(b"SCRIPT_FILENAME"), Some(&b"/r/x.php"[..]));
        assert_eq!(p.get(b"PATH_INFO"), None);
        assert_eq!(p.get(b"PATH_TRANSLATED"), None);
        assert_eq!(p.set_cgi("", "/", "HTTP/1.1", "/", "/", None), Err(ParamsError::Invalid("invalid request method")));
        assert_eq!(
            p.set_cgi("G T", "/", "HTTP/1.1", "/", "/", None),
            Err(ParamsError::Invalid("invalid request method"))
        );
    }

    #[test]
    fn peer() {
        let mut p = Params::new();
        p.set_peer(Some("10.0.0.1"), 51000, None, 8080, Some("example.org")).unwrap();
        assert_eq!(
            all(&p),
            kv(&[
                ("REMOTE_ADDR", "10.0.0.1"),
                ("REMOTE_PORT", "51000"),
                ("SERVER_PORT", "8080"),
                ("SERVER_NAME", "example.org"),
            ])
        );
    }

    #[test]
    fn http_headers() {
        let mut p = Params::new();
        let add = |p: &mut Params, n: &str, v: &str| p.add_http_header(n.as_bytes(), v.as_bytes()).unwrap();
        assert_eq!(add(&mut p, "Host", "example.org"), HeaderUse::Added);
        assert_eq!(add(&mut p, "content-type", "text/plain"), HeaderUse::Added);
        assert_eq!(add(&mut p, "Content-Length", "5"), HeaderUse::Added);
        assert_eq!(add(&mut p, "Proxy", "http://evil:8080"), HeaderUse::Dropped);
        assert_eq!(add(&mut p, "PROXY", "http://evil:8080"), HeaderUse::Dropped);
        assert_eq!(add(&mut p, "X_Forwarded_For", "spoof"), HeaderUse::Dropped);
        assert_eq!(add(&mut p, "Bad Name", "x"), HeaderUse::Dropped);
        assert_eq!(add(&mut p, "", "x"), HeaderUse::Dropped);
        assert_eq!(add(&mut p, "X-Forwarded-For", "1.1.1.1"), HeaderUse::Added);
        assert_eq!(add(&mut p, "x-forwarded-for", "2.2.2.2"), HeaderUse::Added);
        assert_eq!(add(&mut p, "Cookie", "a=1"), HeaderUse::Added);
        assert_eq!(add(&mut p, "Cookie", "b=2"), HeaderUse::Added);
        assert_eq!(
            all(&p),
            kv(&[
                ("HTTP_HOST", "example.org"),
                ("CONTENT_TYPE", "text/plain"),
                ("CONTENT_LENGTH", "5"),
                ("HTTP_X_FORWARDED_FOR", "1.1.1.1, 2.2.2.2"),
                ("HTTP_COOKIE", "a=1; b=2"),
            ])
        );
    }

    #[test]
    fn set_replaces_and_block() {
        let mut p = Params::new();
        p.set(b"A", b"1").unwrap();
        p.set(b"B", b"2").unwrap();
        p.set(b"A", b"3").unwrap();
        p.set_default(b"B", b"9").unwrap();
        p.set_default(b"C", b"4").unwrap();
        assert_eq!(all(&p), kv(&[("A", "3"), ("B", "2"), ("C", "4")]));
        p.add_block(b"D=x=y\0E=\0\0A=5").unwrap();
        assert_eq!(all(&p), kv(&[("A", "5"), ("B", "2"), ("C", "4"), ("D", "x=y"), ("E", "")]));
        assert_eq!(p.add_block(b"F=1\0broken\0"), Err(ParamsError::Invalid("params block entry without '='")));
        assert_eq!(p.get(b"F"), None, "all or nothing");
        assert_eq!(p.add_block(b"=v"), Err(ParamsError::Invalid("empty parameter name")));
        assert!(p.remove(b"A"));
        assert!(!p.remove(b"A"));
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn oversized_value_is_an_error() {
        let mut p = Params::new();
        let big = vec![b'x'; 70 * 1024];
        assert!(matches!(p.set(b"BIG", &big), Err(ParamsError::TooLarge(_))));
        assert!(p.is_empty());
        let ok = vec![b'x'; 60 * 1024];
        p.set(b"OK", &ok).unwrap();
        // Joining repeated headers past the limit is an error too, and leaves the old value.
        let mut p = Params::new();
        p.add_http_header(b"X-A", &ok).unwrap();
        assert!(p.add_http_header(b"X-A", &vec![b'y'; 10_000]).is_err());
        assert_eq!(p.get(b"HTTP_X_A").unwrap().len(), ok.len());
    }
}
