//! Record encoders. Every record is padded to a multiple of 8 bytes, and content plus padding
//! never exceeds 65535. Stream content is cut into records of at most 0xFFF8 bytes.
//!
//! PARAMS follow the rule real backends need: a name-value pair is never split across two
//! records (php-fpm parses each PARAMS record on its own), so one pair can be at most 0xFFF8
//! encoded bytes; a larger one is an error, never a truncated or corrupt stream.

use super::nv;
use super::proto::{
    begin_request_body, end_request_body, padding_for, Header, ProtocolStatus, RecordType, Role, FLAG_KEEP_CONN,
    MAX_CONTENT_LEN, MAX_PADDED_CONTENT, NULL_REQUEST_ID, VERSION_1,
};
use std::fmt;

/// A parameter that cannot be sent.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ParamTooLarge {
    /// The first bytes of the offending name (at most 64).
    pub name_prefix: Vec<u8>,
    /// Its encoded size (lengths plus name plus value), or `None` if a length exceeds 2^31-1.
    pub encoded_len: Option<usize>,
}

impl fmt::Display for ParamTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = String::from_utf8_lossy(&self.name_prefix);
        match self.encoded_len {
            Some(n) => write!(
                f,
                "parameter {name:?} takes {n} bytes encoded; at most {MAX_PARAM_ENCODED_LEN} fit in one PARAMS record"
            ),
            None => write!(f, "parameter {name:?} has a length beyond 2^31-1"),
        }
    }
}

impl std::error::Error for ParamTooLarge {}

/// The largest encoded name-value pair that can be sent (it must fit in one padded record).
pub const MAX_PARAM_ENCODED_LEN: usize = MAX_PADDED_CONTENT;

/// Checks that one pair can be sent; returns its encoded size.
pub fn check_param(name: &[u8], value: &[u8]) -> Result<usize, ParamTooLarge> {
    let too_large = |encoded_len| ParamTooLarge { name_prefix: name[..name.len().min(64)].to_vec(), encoded_len };
    match nv::encoded_len(name.len(), value.len()) {
        Ok(n) if n <= MAX_PARAM_ENCODED_LEN => Ok(n),
        Ok(n) => Err(too_large(Some(n))),
        Err(_) => Err(too_large(None)),
    }
}

fn header(rtype: u8, id: u16, content_len: usize, padding: u8) -> [u8; 8] {
    Header { version: VERSION_1, rtype, request_id: id, content_length: content_len as u16, padding_length: padding }
        .encode()
}

/// Appends one record. Content of up to 0xFFF8 bytes is padded to 8; 0xFFF9..=0xFFFF bytes go
/// unpadded (padding would overflow 65535).
///
/// # Panics
/// If `content` is longer than 65535 bytes (callers cut streams with [`stream`]).
pub fn record(out: &mut Vec<u8>, rtype: RecordType, id: u16, content: &[u8]) {
    record_raw(out, rtype as u8, id, content);
}

/// [`record`] with a raw type byte (for tests and peers that send undefined types).
pub fn record_raw(out: &mut Vec<u8>, rtype: u8, id: u16, content: &[u8]) {
    assert!(content.len() <= MAX_CONTENT_LEN, "record content over 65535 bytes");
    let padding = if content.len() <= MAX_PADDED_CONTENT { padding_for(content.len()) } else { 0 };
    out.extend_from_slice(&header(rtype, id, content.len(), padding));
    out.extend_from_slice(content);
    out.resize(out.len() + padding as usize, 0);
}

/// Appends `data` as stream records of at most 0xFFF8 bytes each. Empty `data` appends nothing
/// (an empty record would end the stream: use [`stream_end`]).
pub fn stream(out: &mut Vec<u8>, rtype: RecordType, id: u16, data: &[u8]) {
    out.reserve(data.len() + (data.len() / MAX_PADDED_CONTENT + 1) * 16);
    for chunk in data.chunks(MAX_PADDED_CONTENT) {
        record(out, rtype, id, chunk);
    }
}

/// Appends the empty record that ends a stream.
pub fn stream_end(out: &mut Vec<u8>, rtype: RecordType, id: u16) {
    record(out, rtype, id, &[]);
}

/// Appends BEGIN_REQUEST.
pub fn begin_request(out: &mut Vec<u8>, id: u16, role: Role, keep_conn: bool) {
    let flags = if keep_conn { FLAG_KEEP_CONN } else { 0 };
    record(out, RecordType::BeginRequest, id, &begin_request_body(role, flags));
}

/// Appends ABORT_REQUEST.
pub fn abort_request(out: &mut Vec<u8>, id: u16) {
    record(out, RecordType::AbortRequest, id, &[]);
}

/// Appends END_REQUEST (for peers and tests).
pub fn end_request(out: &mut Vec<u8>, id: u16, app_status: u32, protocol_status: ProtocolStatus) {
    record(out, RecordType::EndRequest, id, &end_request_body(app_status, protocol_status));
}

/// Appends GET_VALUES asking for `names` (management record, id 0).
pub fn get_values(out: &mut Vec<u8>, names: &[&str]) {
    let mut content = Vec::new();
    for name in names {
        nv::encode_pair(&mut content, name.as_bytes(), b"").expect("short names");
    }
    record(out, RecordType::GetValues, NULL_REQUEST_ID, &content);
}

/// Appends the PARAMS stream: whole pairs packed into records of at most 0xFFF8 content bytes,
/// then the empty PARAMS record. On error nothing is appended.
pub fn params<'p, I>(out: &mut Vec<u8>, id: u16, pairs: I) -> Result<(), ParamTooLarge>
where
    I: IntoIterator<Item = (&'p [u8], &'p [u8])>,
{
    let start = out.len();
    // Offset of the open record's header, if a record is open.
    let mut open: Option<usize> = None;
    for (name, value) in pairs {
        let n = match check_param(name, value) {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        if let Some(h) = open {
            if out.len() - (h + 8) + n > MAX_PADDED_CONTENT {
                close_params_record(out, h, id);
                open = None;
            }
        }
        if open.is_none() {
            open = Some(out.len());
            out.extend_from_slice(&[0; 8]);
        }
        nv::encode_pair(out, name, value).expect("checked by check_param");
    }
    if let Some(h) = open {
        close_params_record(out, h, id);
    }
    stream_end(out, RecordType::Params, id);
    Ok(())
}

fn close_params_record(out: &mut Vec<u8>, h: usize, id: u16) {
    let len = out.len() - (h + 8);
    let padding = padding_for(len);
    out[h..h + 8].copy_from_slice(&header(RecordType::Params as u8, id, len, padding));
    out.resize(out.len() + padding as usize, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::proto::HEADER_LEN;
    use crate::fcgi::testutil::XorShift;

    /// Splits an encoded byte stream into (header, content) records, checking padding rules.
    fn records(mut buf: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let h = Header::decode(buf[..HEADER_LEN].try_into().unwrap());
            assert_eq!(h.version, 1);
            assert!(h.body_len() <= MAX_CONTENT_LEN, "content+padding {}", h.body_len());
            assert_eq!((HEADER_LEN + h.body_len()) % 8, 0, "record not padded to 8");
            let content = buf[HEADER_LEN..HEADER_LEN + h.content_length as usize].to_vec();
            buf = &buf[HEADER_LEN + h.body_len()..];
            out.push((h, content));
        }
        out
    }

    #[test]
    fn begin_and_abort_bytes() {
        let mut out = Vec::new();
        begin_request(&mut out, 0x0102, Role::Responder, true);
        abort_request(&mut out, 1);
        assert_eq!(
            out,
            [
                1, 1, 1, 2, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, //
                1, 2, 0, 1, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn get_values_bytes() {
        let mut out = Vec::new();
        get_values(&mut out, &["FCGI_MPXS_CONNS"]);
        let mut expect = vec![1, 9, 0, 0, 0, 17, 7, 0, 15, 0];
        expect.extend_from_slice(b"FCGI_MPXS_CONNS");
        expect.extend_from_slice(&[0; 7]);
        assert_eq!(out, expect);
    }

    #[test]
    fn stream_records_are_capped_and_padded() {
        for len in [1usize, 7, 8, 0xFFF7, 0xFFF8, 0xFFF9, 0xFFFF, 0x10000, 3 * 0xFFF8 + 5] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            stream(&mut out, RecordType::Stdin, 3, &data);
            let recs = records(&out);
            assert_eq!(recs.len(), len.div_ceil(0xFFF8));
            let mut joined = Vec::new();
            for (h, c) in &recs {
                assert_eq!(h.rtype, RecordType::Stdin as u8);
                assert_eq!(h.request_id, 3);
                assert!(!c.is_empty() && c.len() <= 0xFFF8);
                joined.extend_from_slice(c);
            }
            assert_eq!(joined, data);
        }
        let mut out = Vec::new();
        stream(&mut out, RecordType::Stdin, 3, b"");
        assert!(out.is_empty());
        stream_end(&mut out, RecordType::Stdin, 3);
        assert_eq!(out, [1, 5, 0, 3, 0, 0, 0, 0]);
    }

    #[test]
    fn unpadded_near_max() {
        let mut out = Vec::new();
        record(&mut out, RecordType::Stdout, 1, &vec![0; 0xFFFF]);
        let recs = records_unchecked(&out);
        assert_eq!(recs, vec![(0xFFFF, 0)]);
    }

    fn records_unchecked(buf: &[u8]) -> Vec<(u16, u8)> {
        let h = Header::decode(buf[..8].try_into().unwrap());
        vec![(h.content_length, h.padding_length)]
    }

    #[test]
    fn params_never_split_a_pair() {
        let mut rng = XorShift::new(5);
        for _ in 0..30 {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..1 + rng.below(40))
                .map(|_| {
                    let nl = [1, 127, 128, 1000][rng.below(4)];
                    let vl = [0, 5, 128, 9000, 30000, 0xFFF8 - 8 - nl][rng.below(6)];
                    (rng.bytes(nl), rng.bytes(vl))
                })
                .collect();
            let mut out = Vec::new();
            params(&mut out, 1, pairs.iter().map(|(n, v)| (&n[..], &v[..]))).unwrap();
            let recs = records(&out);
            let (last, body) = recs.split_last().unwrap();
            assert_eq!(last.0.content_length, 0, "ends with an empty PARAMS record");
            let mut decoded = Vec::new();
            for (h, content) in body {
                assert_eq!(h.rtype, RecordType::Params as u8);
                assert!(!content.is_empty());
                // Each record holds whole pairs.
                decoded.extend(nv::decode_all(content).expect("record holds whole pairs"));
            }
            assert_eq!(decoded, pairs);
        }
    }

    #[test]
    fn params_limits() {
        // The largest pair that fits exactly.
        let value = vec![b'v'; MAX_PARAM_ENCODED_LEN - 1 - 4 - 4];
        assert_eq!(check_param(b"NAME", &value), Ok(MAX_PARAM_ENCODED_LEN));
        let mut out = Vec::new();
        params(&mut out, 1, [(&b"NAME"[..], &value[..])]).unwrap();
        let recs = records(&out);
        assert_eq!(recs[0].0.content_length as usize, MAX_PARAM_ENCODED_LEN);
        assert_eq!(recs[0].0.padding_length, 0);

        // One byte more is an error, and nothing was appended.
        let value = vec![b'v'; MAX_PARAM_ENCODED_LEN - 8];
        let mut out = b"keep".to_vec();
        let err = params(&mut out, 1, [(&b"A"[..], &b"1"[..]), (&b"NAME"[..], &value[..])]).unwrap_err();
        assert_eq!(err, ParamTooLarge { name_prefix: b"NAME".to_vec(), encoded_len: Some(MAX_PARAM_ENCODED_LEN + 1) });
        assert_eq!(out, b"keep");
        assert!(err.to_string().contains("65529 bytes"));

        let big = vec![b'x'; 70 * 1024];
        assert!(check_param(b"BIG", &big).is_err());
    }

    #[test]
    fn empty_params() {
        let mut out = Vec::new();
        params(&mut out, 7, std::iter::empty()).unwrap();
        assert_eq!(out, [1, 4, 0, 7, 0, 0, 0, 0]);
    }
}
