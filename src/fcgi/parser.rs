//! Incremental parser for the records a FastCGI application sends to its client.
//!
//! Feed bytes as they arrive, in any split: the frames that come out are the same for every
//! split, except that stream content (STDOUT, STDERR) may come in more, smaller pieces.
//! Malformed input gives a specific [`ParseError`]; after an error the parser is poisoned
//! (every later call returns the same error) because the byte stream cannot be resynchronised.

use super::nv::{self, NvError, Pair};
use super::proto::{Header, ProtocolStatus, RecordType, HEADER_LEN, VERSION_1};
use super::idmap::IdMap;
use std::fmt;

/// What a record (or a piece of one) means to the client.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Frame<'a> {
    /// Response bytes (never empty).
    Stdout { id: u16, data: &'a [u8] },
    /// The empty STDOUT record that ends the stream.
    StdoutEnd { id: u16 },
    /// Error-stream bytes (never empty).
    Stderr { id: u16, data: &'a [u8] },
    /// The empty STDERR record that ends the stream.
    StderrEnd { id: u16 },
    /// The request is over; the id is no longer active.
    EndRequest { id: u16, app_status: u32, protocol_status: ProtocolStatus },
    /// Answer to GET_VALUES.
    GetValuesResult { pairs: Vec<Pair> },
    /// The application did not understand a management record of type `rtype`.
    UnknownType { rtype: u8 },
    /// A record of a type the spec does not define; its content is skipped.
    Ignored { rtype: u8, id: u16 },
}

/// Why the input is not a valid FastCGI byte stream from an application.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ParseError {
    /// Version byte other than 1.
    BadVersion(u8),
    /// An application record (STDOUT, STDERR, END_REQUEST) with request id 0.
    ZeroRequestId { rtype: u8 },
    /// A management record with a request id other than 0.
    ManagementIdNotZero { rtype: u8, id: u16 },
    /// An application record for a request that is not active on this connection.
    UnknownRequestId { rtype: u8, id: u16 },
    /// A record type an application must not send, or a stream record after that stream ended.
    UnexpectedType { rtype: u8, id: u16 },
    /// A fixed-size record with the wrong content length.
    BadLength { rtype: u8, len: u16 },
    /// GET_VALUES_RESULT content is not a sequence of name-value pairs.
    BadNameValue(NvError),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadVersion(v) => write!(f, "record with FastCGI version {v}, expected 1"),
            ParseError::ZeroRequestId { rtype } => {
                write!(f, "application record of type {rtype} with request id 0")
            }
            ParseError::ManagementIdNotZero { rtype, id } => {
                write!(f, "management record of type {rtype} with request id {id}")
            }
            ParseError::UnknownRequestId { rtype, id } => {
                write!(f, "record of type {rtype} for unknown request id {id}")
            }
            ParseError::UnexpectedType { rtype, id } => {
                write!(f, "record of type {rtype} not valid here (request id {id})")
            }
            ParseError::BadLength { rtype, len } => {
                write!(f, "record of type {rtype} with impossible content length {len}")
            }
            ParseError::BadNameValue(e) => write!(f, "malformed GET_VALUES_RESULT: {e}"),
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Default, Debug, Clone, Copy)]
struct IdState {
    stdout_ended: bool,
    stderr_ended: bool,
}

#[derive(Debug, Clone, Copy, Eq, PartialEq)]
enum Kind {
    Stdout,
    Stderr,
    EndRequest,
    GetValuesResult,
    UnknownType,
    Skip,
}

#[derive(Debug)]
struct Current {
    hdr: Header,
    kind: Kind,
    /// Content bytes still to come.
    left: usize,
}

/// The client-side record parser of one connection.
#[derive(Debug, Default)]
pub struct Parser {
    hdr_buf: [u8; HEADER_LEN],
    hdr_len: usize,
    cur: Option<Current>,
    /// Content of a fixed-size or management record being collected.
    discrete: Vec<u8>,
    padding_left: usize,
    active: IdMap<u16, IdState>,
    error: Option<ParseError>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Declares request `id` active (its BEGIN_REQUEST was sent on this connection).
    pub fn expect(&mut self, id: u16) {
        self.active.insert(id, IdState::default());
    }

    /// Forgets request `id` (e.g. the caller gave up on it); later records for it are errors.
    pub fn forget(&mut self, id: u16) {
        self.active.remove(&id);
    }

    /// Whether `id` is active (END_REQUEST not yet received).
    pub fn is_active(&self, id: u16) -> bool {
        self.active.contains_key(&id)
    }

    /// Number of active requests.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// True when no partial record is buffered (a clean place for the stream to end).
    pub fn at_record_boundary(&self) -> bool {
        self.hdr_len == 0 && self.cur.is_none() && self.padding_left == 0
    }

    /// The error the parser is poisoned with, if any.
    pub fn error(&self) -> Option<&ParseError> {
        self.error.as_ref()
    }

    fn fail(&mut self, e: ParseError) -> ParseError {
        self.error = Some(e.clone());
        e
    }

    /// Parses from `input`; returns the bytes consumed and at most one frame.
    ///
    /// Call again with the rest of the input until everything is consumed. Every call with
    /// non-empty input consumes at least one byte or returns a frame.
    pub fn parse<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Frame<'a>>), ParseError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut pos = 0;
        loop {
            if self.padding_left > 0 {
                let take = self.padding_left.min(input.len() - pos);
                self.padding_left -= take;
                pos += take;
            }
            if pos == input.len() {
                return Ok((pos, None));
            }
            let Some(cur) = &mut self.cur else {
                let take = (HEADER_LEN - self.hdr_len).min(input.len() - pos);
                self.hdr_buf[self.hdr_len..self.hdr_len + take].copy_from_slice(&input[pos..pos + take]);
                self.hdr_len += take;
                pos += take;
                if self.hdr_len < HEADER_LEN {
                    return Ok((pos, None));
                }
                self.hdr_len = 0;
                let hdr = Header::decode(&self.hdr_buf);
                let frame = self.start_record(hdr).map_err(|e| self.fail(e))?;
                if frame.is_some() {
                    return Ok((pos, frame));
                }
                continue;
            };
            let take = cur.left.min(input.len() - pos);
            let chunk = &input[pos..pos + take];
            pos += take;
            cur.left -= take;
            let done = cur.left == 0;
            let (kind, id) = (cur.kind, cur.hdr.request_id);
            if done {
                self.padding_left = cur.hdr.padding_length as usize;
                self.cur = None;
            }
            match kind {
                Kind::Stdout => return Ok((pos, Some(Frame::Stdout { id, data: chunk }))),
                Kind::Stderr => return Ok((pos, Some(Frame::Stderr { id, data: chunk }))),
                Kind::Skip => {}
                Kind::EndRequest | Kind::GetValuesResult | Kind::UnknownType => {
                    self.discrete.extend_from_slice(chunk);
                    if done {
                        let content = std::mem::take(&mut self.discrete);
                        let frame = self.finish_discrete(kind, id, &content)?;
                        return Ok((pos, Some(frame)));
                    }
                }
            }
        }
    }

    /// Parses all of `input`, handing every frame to `f`.
    pub fn parse_all<'a>(&mut self, mut input: &'a [u8], mut f: impl FnMut(Frame<'a>)) -> Result<(), ParseError> {
        while !input.is_empty() {
            let (n, frame) = self.parse(input)?;
            input = &input[n..];
            if let Some(frame) = frame {
                f(frame);
            }
        }
        Ok(())
    }

    /// Validates a header and sets up the record; empty records may yield a frame at once.
    fn start_record(&mut self, hdr: Header) -> Result<Option<Frame<'static>>, ParseError> {
        if hdr.version != VERSION_1 {
            return Err(ParseError::BadVersion(hdr.version));
        }
        let (rtype, id, len) = (hdr.rtype, hdr.request_id, hdr.content_length);
        let kind = match RecordType::from_u8(rtype) {
            None => Kind::Skip,
            Some(t @ (RecordType::Stdout | RecordType::Stderr | RecordType::EndRequest)) => {
                if id == 0 {
                    return Err(ParseError::ZeroRequestId { rtype });
                }
                let Some(st) = self.active.get_mut(&id) else {
                    return Err(ParseError::UnknownRequestId { rtype, id });
                };
                match t {
                    RecordType::Stdout if st.stdout_ended => return Err(ParseError::UnexpectedType { rtype, id }),
                    RecordType::Stderr if st.stderr_ended => return Err(ParseError::UnexpectedType { rtype, id }),
                    RecordType::Stdout => Kind::Stdout,
                    RecordType::Stderr => Kind::Stderr,
                    _ => {
                        if len != 8 {
                            return Err(ParseError::BadLength { rtype, len });
                        }
                        Kind::EndRequest
                    }
                }
            }
            Some(t @ (RecordType::GetValuesResult | RecordType::UnknownType)) => {
                if id != 0 {
                    return Err(ParseError::ManagementIdNotZero { rtype, id });
                }
                if t == RecordType::UnknownType {
                    if len != 8 {
                        return Err(ParseError::BadLength { rtype, len });
                    }
                    Kind::UnknownType
                } else {
                    Kind::GetValuesResult
                }
            }
            Some(_) => return Err(ParseError::UnexpectedType { rtype, id }),
        };
        let mut frame = None;
        if len == 0 {
            // Only stream records, GET_VALUES_RESULT and undefined types can be empty here.
            self.padding_left = hdr.padding_length as usize;
            frame = match kind {
                Kind::Stdout => {
                    self.active.get_mut(&id).expect("checked above").stdout_ended = true;
                    Some(Frame::StdoutEnd { id })
                }
                Kind::Stderr => {
                    self.active.get_mut(&id).expect("checked above").stderr_ended = true;
                    Some(Frame::StderrEnd { id })
                }
                Kind::GetValuesResult => Some(Frame::GetValuesResult { pairs: Vec::new() }),
                _ => Some(Frame::Ignored { rtype, id }),
            };
        } else {
            if kind == Kind::Skip {
                frame = Some(Frame::Ignored { rtype, id });
            }
            self.cur = Some(Current { hdr, kind, left: len as usize });
        }
        Ok(frame)
    }

    fn finish_discrete(&mut self, kind: Kind, id: u16, content: &[u8]) -> Result<Frame<'static>, ParseError> {
        Ok(match kind {
            Kind::EndRequest => {
                self.active.remove(&id);
                Frame::EndRequest {
                    id,
                    app_status: u32::from_be_bytes([content[0], content[1], content[2], content[3]]),
                    protocol_status: ProtocolStatus::from_u8(content[4]),
                }
            }
            Kind::UnknownType => Frame::UnknownType { rtype: content[0] },
            _ => {
                let pairs = nv::decode_all(content).map_err(|e| self.fail(ParseError::BadNameValue(e)))?;
                Frame::GetValuesResult { pairs }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::proto::{end_request_body, unknown_type_body};
    use crate::fcgi::testutil::XorShift;
    use crate::fcgi::writer;

    /// Owned, normalised frames: adjacent stream pieces of one request are merged.
    #[derive(Clone, Debug, Eq, PartialEq)]
    enum Out {
        Stdout(u16, Vec<u8>),
        Stderr(u16, Vec<u8>),
        Frame(String),
        Error(ParseError),
    }

    fn push(out: &mut Vec<Out>, f: Frame<'_>) {
        match f {
            Frame::Stdout { id, data } => {
                if let Some(Out::Stdout(i, d)) = out.last_mut() {
                    if *i == id {
                        d.extend_from_slice(data);
                        return;
                    }
                }
                out.push(Out::Stdout(id, data.to_vec()));
            }
            Frame::Stderr { id, data } => {
                if let Some(Out::Stderr(i, d)) = out.last_mut() {
                    if *i == id {
                        d.extend_from_slice(data);
                        return;
                    }
                }
                out.push(Out::Stderr(id, data.to_vec()));
            }
            other => out.push(Out::Frame(format!("{other:?}"))),
        }
    }

    fn run(ids: &[u16], pieces: &[&[u8]]) -> Vec<Out> {
        let mut p = Parser::new();
        for &id in ids {
            p.expect(id);
        }
        let mut out = Vec::new();
        for piece in pieces {
            let mut rest = *piece;
            while !rest.is_empty() {
                match p.parse(rest) {
                    Ok((n, f)) => {
                        assert!(n > 0 || f.is_some(), "no progress");
                        rest = &rest[n..];
                        if let Some(f) = f {
                            push(&mut out, f);
                        }
                    }
                    Err(e) => {
                        out.push(Out::Error(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    /// Checks the result is the same for the whole input, every two-way split and one byte at a time.
    fn check_splits(ids: &[u16], input: &[u8]) -> Vec<Out> {
        let whole = run(ids, &[input]);
        for split in 0..=input.len() {
            assert_eq!(run(ids, &[&input[..split], &input[split..]]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(ids, &bytes), whole, "one byte at a time");
        whole
    }

    fn rec(rtype: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let mut v =
            Header { version: 1, rtype, request_id: id, content_length: content.len() as u16, padding_length: padding }
                .encode()
                .to_vec();
        v.extend_from_slice(content);
        v.extend(vec![0xEE; padding as usize]);
        v
    }

    fn response(id: u16) -> Vec<u8> {
        let mut v = Vec::new();
        writer::stream(&mut v, RecordType::Stdout, id, b"Status: 200\r\n\r\nhello");
        writer::stream(&mut v, RecordType::Stderr, id, b"warning");
        writer::stream_end(&mut v, RecordType::Stdout, id);
        writer::end_request(&mut v, id, 7, ProtocolStatus::RequestComplete);
        v
    }

    #[test]
    fn simple_response_every_split() {
        let out = check_splits(&[1], &response(1));
        assert_eq!(
            out,
            vec![
                Out::Stdout(1, b"Status: 200\r\n\r\nhello".to_vec()),
                Out::Stderr(1, b"warning".to_vec()),
                Out::Frame("StdoutEnd { id: 1 }".into()),
                Out::Frame("EndRequest { id: 1, app_status: 7, protocol_status: RequestComplete }".into()),
            ]
        );
    }

    #[test]
    fn any_padding_accepted() {
        let mut input = rec(6, 1, b"abc", 255);
        input.extend(rec(6, 1, b"", 200));
        input.extend(rec(3, 1, &end_request_body(0, ProtocolStatus::Overloaded), 13));
        let out = check_splits(&[1], &input);
        assert_eq!(
            out,
            vec![
                Out::Stdout(1, b"abc".to_vec()),
                Out::Frame("StdoutEnd { id: 1 }".into()),
                Out::Frame("EndRequest { id: 1, app_status: 0, protocol_status: Overloaded }".into()),
            ]
        );
    }

    #[test]
    fn specific_errors() {
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (
                {
                    let mut v = rec(6, 1, b"x", 0);
                    v[0] = 2;
                    v
                },
                ParseError::BadVersion(2),
            ),
            (rec(6, 0, b"x", 0), ParseError::ZeroRequestId { rtype: 6 }),
            (rec(3, 0, &[0; 8], 0), ParseError::ZeroRequestId { rtype: 3 }),
            (rec(6, 9, b"x", 0), ParseError::UnknownRequestId { rtype: 6, id: 9 }),
            (rec(7, 2, b"x", 0), ParseError::UnknownRequestId { rtype: 7, id: 2 }),
            (rec(1, 1, &[0, 1, 0, 0, 0, 0, 0, 0], 0), ParseError::UnexpectedType { rtype: 1, id: 1 }),
            (rec(5, 1, b"", 0), ParseError::UnexpectedType { rtype: 5, id: 1 }),
            (rec(9, 0, b"", 0), ParseError::UnexpectedType { rtype: 9, id: 0 }),
            (rec(3, 1, &[0; 7], 0), ParseError::BadLength { rtype: 3, len: 7 }),
            (rec(3, 1, &[0; 9], 0), ParseError::BadLength { rtype: 3, len: 9 }),
            (rec(11, 0, &[0; 4], 0), ParseError::BadLength { rtype: 11, len: 4 }),
            (rec(10, 1, b"", 0), ParseError::ManagementIdNotZero { rtype: 10, id: 1 }),
            (rec(10, 0, b"\x05\x01ab", 0), ParseError::BadNameValue(NvError::Incomplete)),
            // STDOUT after its stream ended.
            (
                {
                    let mut v = rec(6, 1, b"", 0);
                    v.extend(rec(6, 1, b"x", 0));
                    v
                },
                ParseError::UnexpectedType { rtype: 6, id: 1 },
            ),
            (
                {
                    let mut v = rec(7, 1, b"", 0);
                    v.extend(rec(7, 1, b"x", 0));
                    v
                },
                ParseError::UnexpectedType { rtype: 7, id: 1 },
            ),
            // Anything for the request after its END_REQUEST.
            (
                {
                    let mut v = rec(3, 1, &[0; 8], 0);
                    v.extend(rec(6, 1, b"x", 0));
                    v
                },
                ParseError::UnknownRequestId { rtype: 6, id: 1 },
            ),
        ];
        for (input, err) in cases {
            let out = check_splits(&[1], &input);
            assert_eq!(out.last(), Some(&Out::Error(err.clone())), "input {input:?}");
            // Poisoned: the same error again.
            let mut p = Parser::new();
            p.expect(1);
            let r = p.parse_all(&input, |_| {});
            assert_eq!(r, Err(err.clone()));
            assert_eq!(p.parse(b"\x01"), Err(err.clone()));
            assert_eq!(p.error(), Some(&err));
        }
    }

    #[test]
    fn management_records() {
        let mut input = Vec::new();
        let mut content = Vec::new();
        nv::encode_pair(&mut content, b"FCGI_MAX_CONNS", b"10").unwrap();
        nv::encode_pair(&mut content, b"FCGI_MPXS_CONNS", b"0").unwrap();
        writer::record(&mut input, RecordType::GetValuesResult, 0, &content);
        writer::record(&mut input, RecordType::UnknownType, 0, &unknown_type_body(200));
        input.extend(rec(200, 0, b"whatever", 3)); // undefined type: skipped
        input.extend(rec(12, 5, b"", 0));
        let out = check_splits(&[], &input);
        assert_eq!(
            out,
            vec![
                Out::Frame(format!(
                    "{:?}",
                    Frame::GetValuesResult {
                        pairs: vec![
                            (b"FCGI_MAX_CONNS".to_vec(), b"10".to_vec()),
                            (b"FCGI_MPXS_CONNS".to_vec(), b"0".to_vec())
                        ]
                    }
                )),
                Out::Frame("UnknownType { rtype: 200 }".into()),
                Out::Frame("Ignored { rtype: 200, id: 0 }".into()),
                Out::Frame("Ignored { rtype: 12, id: 5 }".into()),
            ]
        );
    }

    #[test]
    fn multiplexed_interleaving() {
        let mut input = Vec::new();
        writer::stream(&mut input, RecordType::Stdout, 1, b"one-a");
        writer::stream(&mut input, RecordType::Stdout, 2, b"two-a");
        writer::stream(&mut input, RecordType::Stdout, 1, b"one-b");
        writer::end_request(&mut input, 2, 0, ProtocolStatus::RequestComplete);
        writer::stream_end(&mut input, RecordType::Stdout, 1);
        writer::end_request(&mut input, 1, 0, ProtocolStatus::CantMpxConn);
        let out = check_splits(&[1, 2], &input);
        assert_eq!(
            out,
            vec![
                Out::Stdout(1, b"one-a".to_vec()),
                Out::Stdout(2, b"two-a".to_vec()),
                Out::Stdout(1, b"one-b".to_vec()),
                Out::Frame("EndRequest { id: 2, app_status: 0, protocol_status: RequestComplete }".into()),
                Out::Frame("StdoutEnd { id: 1 }".into()),
                Out::Frame("EndRequest { id: 1, app_status: 0, protocol_status: CantMpxConn }".into()),
            ]
        );
    }

    #[test]
    fn boundary_tracking() {
        let mut p = Parser::new();
        p.expect(1);
        assert!(p.at_record_boundary());
        let input = rec(6, 1, b"abc", 5);
        p.parse_all(&input[..3], |_| {}).unwrap();
        assert!(!p.at_record_boundary());
        p.parse_all(&input[3..input.len() - 1], |_| {}).unwrap();
        assert!(!p.at_record_boundary());
        p.parse_all(&input[input.len() - 1..], |_| {}).unwrap();
        assert!(p.at_record_boundary());
        assert!(p.is_active(1));
        assert_eq!(p.active_count(), 1);
        p.forget(1);
        assert!(!p.is_active(1));
    }

    /// Large STDOUT streams written by the writer parse back byte for byte, in random pieces.
    #[test]
    fn random_streams_round_trip() {
        let mut rng = XorShift::new(3);
        for round in 0..40 {
            let body_len = [0, 1, 7, 8, 9, 65535, 65536, 0xFFF8, 0xFFF9, 200_000][round % 10];
            let body = rng.bytes(body_len);
            let err_len = rng.below(100);
            let err = rng.bytes(err_len);
            let mut input = Vec::new();
            writer::stream(&mut input, RecordType::Stdout, 1, &body);
            writer::stream(&mut input, RecordType::Stderr, 1, &err);
            writer::stream_end(&mut input, RecordType::Stdout, 1);
            writer::end_request(&mut input, 1, 0, ProtocolStatus::RequestComplete);
            let max_piece = 1 + rng.below(70_000);
            let pieces = rng.chunks(&input, max_piece);
            let mut p = Parser::new();
            p.expect(1);
            let (mut got, mut got_err, mut ended) = (Vec::new(), Vec::new(), false);
            for piece in pieces {
                p.parse_all(piece, |f| match f {
                    Frame::Stdout { data, .. } => got.extend_from_slice(data),
                    Frame::Stderr { data, .. } => got_err.extend_from_slice(data),
                    Frame::EndRequest { .. } => ended = true,
                    _ => {}
                })
                .unwrap();
            }
            assert!(ended);
            assert!(p.at_record_boundary());
            assert_eq!(got, body);
            assert_eq!(got_err, err);
        }
    }

    /// Random byte soup: never panics, and every split gives the same frames or the same error.
    #[test]
    fn garbage_is_split_invariant() {
        let mut rng = XorShift::new(11);
        for _ in 0..400 {
            let mut input = response(1);
            // Corrupt a few bytes.
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(input.len());
                input[i] = rng.next_u64() as u8;
            }
            let whole = run(&[1], &[&input]);
            let split = rng.below(input.len() + 1);
            assert_eq!(run(&[1], &[&input[..split], &input[split..]]), whole);
            let pieces = rng.chunks(&input, 5);
            assert_eq!(run(&[1], &pieces), whole);
        }
    }
}
