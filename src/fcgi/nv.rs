//! FastCGI name-value pairs (spec section 3.4).
//!
//! Each length is one byte when it is at most 127, otherwise four bytes big-endian with the
//! top bit set (31-bit length). Names and values are bytes, not NUL-terminated.

use super::proto::MAX_NV_LEN;
use std::fmt;

/// Errors of name-value encoding and decoding.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum NvError {
    /// A name or value longer than 2^31-1 bytes.
    TooLong(usize),
    /// The input ended inside a pair (decode of a complete buffer).
    Incomplete,
    /// A pair larger than the decoder's limit.
    PairTooLarge { len: u64, limit: usize },
}

impl fmt::Display for NvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvError::TooLong(n) => write!(f, "name or value of {n} bytes exceeds 2^31-1"),
            NvError::Incomplete => f.write_str("name-value data ends inside a pair"),
            NvError::PairTooLarge { len, limit } => {
                write!(f, "name-value pair of {len} bytes exceeds the limit of {limit}")
            }
        }
    }
}

impl std::error::Error for NvError {}

/// Bytes the length prefix of `len` takes.
pub fn len_size(len: usize) -> usize {
    if len <= 127 {
        1
    } else {
        4
    }
}

/// Encoded size of a pair, or an error when a length cannot be expressed.
pub fn encoded_len(name_len: usize, value_len: usize) -> Result<usize, NvError> {
    for n in [name_len, value_len] {
        if n > MAX_NV_LEN {
            return Err(NvError::TooLong(n));
        }
    }
    Ok(len_size(name_len) + len_size(value_len) + name_len + value_len)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len <= 127 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// Appends one encoded pair to `out`. Nothing is appended on error.
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), NvError> {
    let total = encoded_len(name.len(), value.len())?;
    out.reserve(total);
    push_len(out, name.len());
    push_len(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    Ok(())
}

/// A decoded pair.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Decodes a buffer that holds whole pairs only (e.g. the body of GET_VALUES_RESULT).
pub fn decode_all(buf: &[u8]) -> Result<Vec<Pair>, NvError> {
    // No limit needed: memory grows only with the bytes actually present.
    let mut d = NvDecoder::new(usize::MAX);
    let mut out = Vec::new();
    d.feed(buf, &mut out)?;
    if !d.at_boundary() {
        return Err(NvError::Incomplete);
    }
    Ok(out)
}

#[derive(Debug)]
enum DState {
    NameLen,
    ValueLen { name_len: usize },
    Body { name_len: usize, value_len: usize },
}

/// Incremental decoder: the same pairs come out for every split of the input.
#[derive(Debug)]
pub struct NvDecoder {
    state: DState,
    /// Bytes of the current length prefix or pair body collected so far.
    buf: Vec<u8>,
    max_pair: usize,
}

impl NvDecoder {
    /// `max_pair`: the largest name+value length accepted (guards against hostile lengths).
    pub fn new(max_pair: usize) -> NvDecoder {
        NvDecoder { state: DState::NameLen, buf: Vec::new(), max_pair }
    }

    /// True when no partial pair is buffered.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, DState::NameLen) && self.buf.is_empty()
    }

    /// Reads a length prefix from `buf` + `input`; returns the length once complete.
    fn take_len(&mut self, input: &mut &[u8]) -> Option<usize> {
        while !input.is_empty() {
            let b = input[0];
            if self.buf.is_empty() && b & 0x80 == 0 {
                *input = &input[1..];
                return Some(b as usize);
            }
            self.buf.push(b);
            *input = &input[1..];
            if self.buf.len() == 4 {
                let v = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                self.buf.clear();
                return Some((v & 0x7FFF_FFFF) as usize);
            }
        }
        None
    }

    /// Feeds bytes; complete pairs are appended to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Pair>) -> Result<(), NvError> {
        loop {
            match self.state {
                DState::NameLen => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    match self.take_len(&mut input) {
                        Some(n) => self.state = DState::ValueLen { name_len: n },
                        None => return Ok(()),
                    }
                }
                DState::ValueLen { name_len } => {
                    let Some(value_len) = self.take_len(&mut input) else {
                        return Ok(());
                    };
                    let total = name_len as u64 + value_len as u64;
                    if total > self.max_pair as u64 {
                        return Err(NvError::PairTooLarge { len: total, limit: self.max_pair });
                    }
                    self.state = DState::Body { name_len, value_len };
                }
                DState::Body { name_len, value_len } => {
                    let need = name_len + value_len - self.buf.len();
                    let take = need.min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.buf.len() < name_len + value_len {
                        return Ok(());
                    }
                    let value = self.buf.split_off(name_len);
                    let name = std::mem::take(&mut self.buf);
                    out.push((name, value));
                    self.state = DState::NameLen;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::testutil::XorShift;

    #[test]
    fn short_and_long_forms() {
        let mut out = Vec::new();
        encode_pair(&mut out, b"AB", b"xyz").unwrap();
        assert_eq!(out, b"\x02\x03ABxyz");

        let name = vec![b'N'; 128];
        let value = vec![b'v'; 127];
        let mut out = Vec::new();
        encode_pair(&mut out, &name, &value).unwrap();
        assert_eq!(&out[..5], &[0x80, 0, 0, 128, 127]);
        assert_eq!(out.len(), 5 + 128 + 127);
        assert_eq!(encoded_len(128, 127).unwrap(), out.len());

        let value = vec![b'v'; 70000];
        let mut out = Vec::new();
        encode_pair(&mut out, b"X", &value).unwrap();
        assert_eq!(&out[..5], &[1, 0x80, 0x01, 0x11, 0x70]);
        assert_eq!(&out[5..6], b"X");
        assert_eq!(decode_all(&out).unwrap(), vec![(b"X".to_vec(), value)]);
    }

    #[test]
    fn limits() {
        assert_eq!(encoded_len(MAX_NV_LEN + 1, 0), Err(NvError::TooLong(MAX_NV_LEN + 1)));
        assert_eq!(encoded_len(0, MAX_NV_LEN).unwrap(), 1 + 4 + MAX_NV_LEN);
        // A hostile length is refused before anything is allocated.
        let mut d = NvDecoder::new(1000);
        let mut out = Vec::new();
        let err = d.feed(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01], &mut out).unwrap_err();
        assert_eq!(err, NvError::PairTooLarge { len: 0x7FFF_FFFF + 1, limit: 1000 });
        assert_eq!(decode_all(b"\x02\x03AB"), Err(NvError::Incomplete));
        assert_eq!(decode_all(b"\x80\x00"), Err(NvError::Incomplete));
    }

    #[test]
    fn empty_pairs() {
        let mut out = Vec::new();
        encode_pair(&mut out, b"", b"").unwrap();
        encode_pair(&mut out, b"FCGI_MAX_CONNS", b"").unwrap();
        assert_eq!(decode_all(&out).unwrap(), vec![(vec![], vec![]), (b"FCGI_MAX_CONNS".to_vec(), vec![])]);
    }

    /// A 4-byte length may encode a small value (non-minimal form): accepted on input.
    #[test]
    fn non_minimal_length_accepted() {
        let buf = [0x80, 0, 0, 1, 0x80, 0, 0, 2, b'a', b'b', b'c'];
        assert_eq!(decode_all(&buf).unwrap(), vec![(b"a".to_vec(), b"bc".to_vec())]);
    }

    fn random_pairs(rng: &mut XorShift) -> Vec<Pair> {
        let n = rng.below(6);
        (0..n)
            .map(|_| {
                let sizes = [0, 1, 126, 127, 128, 129, 300];
                let nl = sizes[rng.below(sizes.len())];
                let vl = sizes[rng.below(sizes.len())];
                (rng.bytes(nl), rng.bytes(vl))
            })
            .collect()
    }

    #[test]
    fn round_trip_every_split() {
        let mut rng = XorShift::new(7);
        for _ in 0..60 {
            let pairs = random_pairs(&mut rng);
            let mut enc = Vec::new();
            for (n, v) in &pairs {
                encode_pair(&mut enc, n, v).unwrap();
            }
            assert_eq!(decode_all(&enc).unwrap(), pairs);
            for split in 0..=enc.len() {
                let mut d = NvDecoder::new(usize::MAX);
                let mut out = Vec::new();
                d.feed(&enc[..split], &mut out).unwrap();
                d.feed(&enc[split..], &mut out).unwrap();
                assert!(d.at_boundary());
                assert_eq!(out, pairs, "split at {split}");
            }
            let mut d = NvDecoder::new(usize::MAX);
            let mut out = Vec::new();
            for b in &enc {
                d.feed(std::slice::from_ref(b), &mut out).unwrap();
            }
            assert_eq!(out, pairs, "byte at a time");
        }
    }

    /// Random garbage never panics, and the decoder gives the same answer for every split.
    #[test]
    fn garbage_is_split_invariant() {
        let mut rng = XorShift::new(99);
        for _ in 0..300 {
            let len = rng.below(40);
            let data = rng.bytes(len);
            let whole = {
                let mut d = NvDecoder::new(64);
                let mut out = Vec::new();
                let r = d.feed(&data, &mut out);
                (r, out, d.at_boundary())
            };
            let split = rng.below(data.len() + 1);
            let mut d = NvDecoder::new(64);
            let mut out = Vec::new();
            let r = d.feed(&data[..split], &mut out).and_then(|()| d.feed(&data[split..], &mut out));
            if whole.0.is_ok() {
                assert_eq!((r, out, d.at_boundary()), whole);
            } else {
                assert_eq!(r, whole.0);
            }
        }
    }
}
