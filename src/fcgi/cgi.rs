//! Incremental parser of the CGI response header block at the start of STDOUT (RFC 3875 §6).
//!
//! Lines end with `\n` or `\r\n`; the block ends with an empty line. `Status: NNN reason` sets
//! the status (and is not kept as a header); `Location:` without `Status:` gives 302; otherwise
//! 200. Repeated headers are all kept, in order. The block may be split at any byte. Bytes that
//! could split or smuggle a header downstream (CR, NUL and other controls except tab inside names
//! or values, folded lines) are errors, as is a block larger than the limit.

use std::fmt;

/// The parsed header block.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct CgiHead {
    /// HTTP status (from `Status:`, or 302 for `Location:`, else 200).
    pub status: u16,
    /// Reason phrase from the `Status:` line, if one was given.
    pub reason: Option<Vec<u8>>,
    /// Headers in the order received, without `Status:`. Values are trimmed of spaces and tabs.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl CgiHead {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| &v[..])
    }
}

/// Why a header block was rejected.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum CgiError {
    /// The block exceeded the limit (bytes) before its blank line.
    TooLarge { limit: usize },
    /// A line that is not `name: value` (line number from 1).
    Malformed { line: usize, what: &'static str },
    /// A `Status:` value that does not start with a 3-digit code 100..=999.
    BadStatus(Vec<u8>),
    /// STDOUT ended before the blank line that ends the header block.
    Incomplete,
}

impl fmt::Display for CgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgiError::TooLarge { limit } => {
                write!(f, "response header block larger than {limit} bytes")
            }
            CgiError::Malformed { line, what } => {
                write!(f, "malformed response header line {line}: {what}")
            }
            CgiError::BadStatus(v) => {
                write!(f, "invalid Status header {:?}", String::from_utf8_lossy(v))
            }
            CgiError::Incomplete => f.write_str("response ended inside the header block"),
        }
    }
}

impl std::error::Error for CgiError {}

/// Incremental header-block parser.
#[derive(Debug)]
pub struct CgiParser {
    limit: usize,
    /// The current, incomplete line.
    line: Vec<u8>,
    /// Bytes of the block consumed so far.
    seen: usize,
    lines: usize,
    head: CgiHead,
    has_status: bool,
    done: bool,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl CgiParser {
    /// `limit`: the largest header block accepted, in bytes, line terminators included.
    pub fn new(limit: usize) -> CgiParser {
        CgiParser {
            limit,
            line: Vec::new(),
            seen: 0,
            lines: 0,
            head: CgiHead::default(),
            has_status: false,
            done: false,
        }
    }

    /// True once the blank line was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds STDOUT bytes. When the block completes, returns the head and the offset in `data`
    /// where the body starts. Must not be called again after that.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(CgiHead, usize)>, CgiError> {
        assert!(!self.done, "CgiParser::feed after the header block ended");
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let (piece, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            if self.seen + piece.len() > self.limit {
                return Err(CgiError::TooLarge { limit: self.limit });
            }
            self.seen += piece.len();
            pos += piece.len();
            self.line.extend_from_slice(piece);
            if !complete {
                break;
            }
            let line = std::mem::take(&mut self.line);
            self.lines += 1;
            if self.take_line(&line)? {
                self.done = true;
                if !self.has_status && self.head.get("Location").is_some() {
                    self.head.status = 302;
                }
                if self.head.status == 0 {
                    self.head.status = 200;
                }
                return Ok(Some((std::mem::take(&mut self.head), pos)));
            }
        }
        Ok(None)
    }

    /// Called when STDOUT ended: an error unless the block was complete.
    pub fn finish(&self) -> Result<(), CgiError> {
        if self.done {
            Ok(())
        } else {
            Err(CgiError::Incomplete)
        }
    }

    /// Handles one line including its `\n`; true for the blank line.
    fn take_line(&mut self, line: &[u8]) -> Result<bool, CgiError> {
        let line = &line[..line.len() - 1];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let bad = |what| CgiError::Malformed { line: self.lines, what };
        if line.is_empty() {
            return Ok(true);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(bad("folded (continuation) line"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(bad("no colon"));
        };
        let name = &line[..colon];
        if name.is_empty() {
            return Err(bad("empty header name"));
        }
        if !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("invalid byte in header name"));
        }
        let value = trim(&line[colon + 1..]);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7F) {
            return Err(bad("control byte in header value"));
        }
        if name.eq_ignore_ascii_case(b"Status") {
            if !self.has_status {
                let (status, reason) = parse_status(value)?;
                self.head.status = status;
                self.head.reason = reason;
                self.has_status = true;
            }
            return Ok(false);
        }
        self.head.headers.push((name.to_vec(), value.to_vec()));
        Ok(false)
    }
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn parse_status(value: &[u8]) -> Result<(u16, Option<Vec<u8>>), CgiError> {
    let bad = || CgiError::BadStatus(value.to_vec());
    if value.len() < 3 || !value[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let code = value[..3].iter().fold(0u16, |a, &d| a * 10 + (d - b'0') as u16);
    if code < 100 {
        return Err(bad());
    }
    let reason = match &value[3..] {
        [] => None,
        [b' ' | b'\t', rest @ ..] => Some(trim(rest).to_vec()).filter(|r| !r.is_empty()),
        _ => return Err(bad()),
    };
    Ok((code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::testutil::XorShift;

    /// Feeds `pieces`; returns the head and the body bytes that followed it in the input.
    fn feed(limit: usize, pieces: &[&[u8]]) -> Result<(CgiHead, Vec<u8>), CgiError> {
        let mut p = CgiParser::new(limit);
        let mut out: Option<(CgiHead, Vec<u8>)> = None;
        for piece in pieces {
            match &mut out {
                Some((_, body)) => body.extend_from_slice(piece),
                None => {
                    if let Some((head, off)) = p.feed(piece)? {
                        out = Some((head, piece[off..].to_vec()));
                    }
                }
            }
        }
        p.finish()?;
        Ok(out.unwrap())
    }

    /// The same result for the whole input, every two-way split, and one byte at a time.
    fn check(limit: usize, input: &[u8]) -> Result<(CgiHead, Vec<u8>), CgiError> {
        let whole = feed(limit, &[input]);
        for split in 0..=input.len() {
            assert_eq!(feed(limit, &[&input[..split], &input[split..]]), whole, "split {split}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(limit, &bytes), whole, "one byte at a time");
        whole
    }

    fn h(n: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (n.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn status_and_headers() {
        let (head, body) = check(
            1000,
            b"Status: 404 Not Found\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nbody\r\n\r\nmore",
        )
        .unwrap();
        assert_eq!(head.status, 404);
        assert_eq!(head.reason.as_deref(), Some(&b"Not Found"[..]));
        assert_eq!(head.headers, vec![h("Content-Type", "text/html"), h("Set-Cookie", "a=1"), h("Set-Cookie", "b=2")]);
        assert_eq!(body, b"body\r\n\r\nmore");
        assert_eq!(head.get("content-type"), Some(&b"text/html"[..]));
    }

    #[test]
    fn bare_newlines_and_mixed() {
        let (head, body) = check(1000, b"X-A: 1\nX-B:2  \r\nX-C:\t 3\t\n\nrest").unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.reason, None);
        assert_eq!(head.headers, vec![h("X-A", "1"), h("X-B", "2"), h("X-C", "3")]);
        assert_eq!(body, b"rest");
    }

    #[test]
    fn location_gives_302_unless_status() {
        let (head, _) = check(1000, b"Location: http://x/\r\n\r\n").unwrap();
        assert_eq!(head.status, 302);
        assert_eq!(head.headers, vec![h("Location", "http://x/")]);
        let (head, _) = check(1000, b"Location: /y\r\nStatus: 301\r\n\r\n").unwrap();
        assert_eq!(head.status, 301);
        let (head, _) = check(1000, b"status: 201 Created\n\n").unwrap();
        assert_eq!((head.status, head.reason), (201, Some(b"Created".to_vec())));
        // A second Status line is ignored: the first wins.
        let (head, _) = check(1000, b"Status: 500\nStatus: 200\n\n").unwrap();
        assert_eq!(head.status, 500);
        assert!(head.headers.is_empty());
    }

    #[test]
    fn empty_block_and_empty_body() {
        let (head, body) = check(1000, b"\r\n").unwrap();
        assert_eq!(head, CgiHead { status: 200, reason: None, headers: vec![] });
        assert!(body.is_empty());
        let (_, body) = check(1000, b"A: b\n\n").unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], CgiError)] = &[
            (b"Status: abc\n\n", CgiError::BadStatus(b"abc".to_vec())),
            (b"Status: 20\n\n", CgiError::BadStatus(b"20".to_vec())),
            (b"Status: 099\n\n", CgiError::BadStatus(b"099".to_vec())),
            (b"Status: 2000\n\n", CgiError::BadStatus(b"2000".to_vec())),
            (b"no colon here\n\n", CgiError::Malformed { line: 1, what: "no colon" }),
            (b"A: 1\n: v\n\n", CgiError::Malformed { line: 2, what: "empty header name" }),
            (b"Bad Name: v\n\n", CgiError::Malformed { line: 1, what: "invalid byte in header name" }),
            (b"A\rB: v\n\n", CgiError::Malformed { line: 1, what: "invalid byte in header name" }),
            (b"A: x\rSet-Cookie: evil\n\n", CgiError::Malformed { line: 1, what: "control byte in header value" }),
            (b"A: x\0y\n\n", CgiError::Malformed { line: 1, what: "control byte in header value" }),
            (b"A: x\r\r\n\n", CgiError::Malformed { line: 1, what: "control byte in header value" }),
            (b"A: 1\n folded\n\n", CgiError::Malformed { line: 2, what: "folded (continuation) line" }),
            (b"A: 1\r\n", CgiError::Incomplete),
            (b"", CgiError::Incomplete),
        ];
        for (input, err) in cases {
            assert_eq!(check(1000, input), Err(err.clone()), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn size_limit() {
        let block = b"A: 123456\r\n\r\n"; // 13 bytes
        assert!(check(13, block).is_ok());
        assert_eq!(check(12, block), Err(CgiError::TooLarge { limit: 12 }));
        // Detected without waiting for a line end.
        let mut p = CgiParser::new(100);
        assert_eq!(p.feed(&[b'x'; 101]), Err(CgiError::TooLarge { limit: 100 }));
        // Body bytes after the block do not count.
        let (_, body) = check(13, b"A: 123456\r\n\r\n0123456789").unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn random_blocks_random_pieces() {
        let mut rng = XorShift::new(21);
        for _ in 0..200 {
            let mut input = Vec::new();
            let mut expect = Vec::new();
            for i in 0..rng.below(8) {
                let name = format!("X-H{i}");
                let value: String = (0..rng.below(20)).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
                input.extend_from_slice(name.as_bytes());
                input.extend_from_slice(b": ");
                input.extend_from_slice(value.as_bytes());
                input.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
                expect.push(h(&name, &value));
            }
            input.extend_from_slice(b"\r\n");
            let body_len = rng.below(50);
            let body = rng.bytes(body_len);
            input.extend_from_slice(&body);
            let pieces = rng.chunks(&input, 7);
            let (head, got_body) = feed(10_000, &pieces).unwrap();
            assert_eq!(head.headers, expect);
            assert_eq!(got_body, body);
        }
    }
}
