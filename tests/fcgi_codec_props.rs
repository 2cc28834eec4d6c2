//! Randomized property tests of the FastCGI codec: record parser, name-value pairs, PARAMS
//! writer and CGI header parser. Every input gives the same result however it is split, and
//! nothing panics. Short by default; a long run:
//!
//!     HEISEN_FCGI_PROP_ITERS=200000 cargo test --release --test fcgi_codec_props
//!
//! (`HEISEN_FCGI_PROP_SEED` picks another seed.) A libFuzzer target for the parser lives in
//! fuzz/ (scripts/fuzz.sh).

use heisen::fcgi::cgi::CgiParser;
use heisen::fcgi::nv::{self, NvDecoder};
use heisen::fcgi::parser::{Frame, Parser};
use heisen::fcgi::proto::{Header, ProtocolStatus, RecordType, MAX_PADDED_CONTENT};
use heisen::fcgi::writer;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn pieces<'a>(&mut self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut max = [1, 2, 7, 64, 4096, 1 << 20][self.below(6)];
        if data.len() > 100_000 {
            max = max.max(64); // byte-at-a-time over megabytes adds time, not coverage
        }
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = 1 + self.below(max.min(rest.len()));
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }
}

fn iters(default: usize) -> usize {
    std::env::var("HEISEN_FCGI_PROP_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rng() -> Rng {
    let seed = std::env::var("HEISEN_FCGI_PROP_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED);
    Rng(seed | 1)
}

fn fnv(d: &[u8]) -> u64 {
    d.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Normalised parser output: stream pieces of one id and type merged; the error, if any, last.
fn parse(ids: &[u16], pieces: &[&[u8]]) -> Vec<String> {
    let mut p = Parser::new();
    for &id in ids {
        p.expect(id);
    }
    let mut out: Vec<String> = Vec::new();
    let mut stream: Option<(String, Vec<u8>)> = None;
    let flush = |out: &mut Vec<String>, stream: &mut Option<(String, Vec<u8>)>| {
        if let Some((k, d)) = stream.take() {
            out.push(format!("{k} len {} fnv {:x}", d.len(), fnv(&d)));
        }
    };
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            match p.parse(rest) {
                Ok((n, f)) => {
                    assert!(n > 0 || f.is_some());
                    rest = &rest[n..];
                    match f {
                        Some(Frame::Stdout { id, data }) | Some(Frame::Stderr { id, data }) => {
                            let key =
                                format!("{}{id}", if matches!(f, Some(Frame::Stdout { .. })) { "out" } else { "err" });
                            match &mut stream {
                                Some((k, d)) if *k == key => d.extend_from_slice(data),
                                _ => {
                                    flush(&mut out, &mut stream);
                                    stream = Some((key, data.to_vec()));
                                }
                            }
                        }
                        Some(other) => {
                            flush(&mut out, &mut stream);
                            out.push(format!("{other:?}"));
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    flush(&mut out, &mut stream);
                    out.push(format!("error {e:?}"));
                    return out;
                }
            }
        }
    }
    flush(&mut out, &mut stream);
    out.push(format!("boundary {}", p.at_record_boundary()));
    out
}

/// A plausible application byte stream for `ids`, with arbitrary padding and record sizes.
fn app_stream(r: &mut Rng, ids: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    let rec = |out: &mut Vec<u8>, r: &mut Rng, t: u8, id: u16, content: &[u8]| {
        let pad = if r.below(3) == 0 { r.below(256) } else { (8 - content.len() % 8) % 8 } as u8;
        out.extend_from_slice(
            &Header { version: 1, rtype: t, request_id: id, content_length: content.len() as u16, padding_length: pad }
                .encode(),
        );
        out.extend_from_slice(content);
        out.extend(r.bytes(pad as usize));
    };
    let mut open: Vec<u16> = ids.to_vec();
    while !open.is_empty() {
        let i = r.below(open.len());
        let id = open[i];
        match r.below(10) {
            0..=5 => {
                let n = [1, 5, 100, 8000, 65535][r.below(5)];
                let data = r.bytes(n);
                rec(&mut out, r, RecordType::Stdout as u8, id, &data);
            }
            6 | 7 => {
                let n = 1 + r.below(50);
                let data = r.bytes(n);
                rec(&mut out, r, RecordType::Stderr as u8, id, &data);
            }
            8 => {
                let t = 12 + r.below(200) as u8; // an undefined type: skipped
                let n = r.below(30);
                let data = r.bytes(n);
                rec(&mut out, r, t, id, &data);
            }
            _ => {
                rec(&mut out, r, RecordType::Stdout as u8, id, &[]);
                let ps = r.below(4) as u8;
                rec(&mut out, r, RecordType::EndRequest as u8, id, &[0, 0, 1, 2, ps, 9, 9, 9]);
                open.remove(i);
            }
        }
    }
    out
}

#[test]
fn record_parser_split_invariance() {
    let mut r = rng();
    for _ in 0..iters(300) {
        let ids: Vec<u16> = (1..=1 + r.below(3) as u16).collect();
        let mut input = app_stream(&mut r, &ids);
        if r.below(4) == 0 && !input.is_empty() {
            // Corrupt: the parser must still agree with itself across splits.
            for _ in 0..1 + r.below(4) {
                let i = r.below(input.len());
                input[i] = r.next() as u8;
            }
        }
        let whole = parse(&ids, &[&input]);
        let pieces = r.pieces(&input);
        assert_eq!(parse(&ids, &pieces), whole);
        if input.len() < 400 {
            for split in 0..=input.len() {
                assert_eq!(parse(&ids, &[&input[..split], &input[split..]]), whole, "split {split}");
            }
        }
    }
}

#[test]
fn record_parser_garbage_never_panics() {
    let mut r = rng();
    for _ in 0..iters(3000) {
        let n = r.below(300);
        let mut input = r.bytes(n);
        if r.below(2) == 0 && input.len() >= 8 {
            input[0] = 1; // mostly valid headers get further
            input[2] = 0;
            input[3] = 1;
        }
        let whole = parse(&[1], &[&input]);
        let pieces = r.pieces(&input);
        assert_eq!(parse(&[1], &pieces), whole);
    }
}

#[test]
fn name_value_round_trip_and_splits() {
    let mut r = rng();
    for _ in 0..iters(500) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..r.below(8))
            .map(|_| {
                let sizes = [0, 1, 127, 128, 255, 256, 5000, 70_000];
                let a = sizes[r.below(sizes.len())];
                let b = sizes[r.below(sizes.len())];
                (r.bytes(a), r.bytes(b))
            })
            .collect();
        let mut enc = Vec::new();
        for (n, v) in &pairs {
            nv::encode_pair(&mut enc, n, v).unwrap();
        }
        assert_eq!(nv::decode_all(&enc).unwrap(), pairs);
        let mut d = NvDecoder::new(usize::MAX);
        let mut out = Vec::new();
        for piece in r.pieces(&enc) {
            d.feed(piece, &mut out).unwrap();
        }
        assert!(d.at_boundary());
        assert_eq!(out, pairs);
    }
}

#[test]
fn name_value_garbage_is_consistent() {
    let mut r = rng();
    for _ in 0..iters(3000) {
        let n = r.below(64);
        let data = r.bytes(n);
        let run = |pieces: &[&[u8]]| {
            let mut d = NvDecoder::new(1000);
            let mut out = Vec::new();
            let mut err = None;
            for p in pieces {
                if let Err(e) = d.feed(p, &mut out) {
                    err = Some(e);
                    break;
                }
            }
            (out, err, d.at_boundary())
        };
        let whole = run(&[&data]);
        let pieces = r.pieces(&data);
        let split = run(&pieces);
        assert_eq!(split.1, whole.1);
        if whole.1.is_none() {
            assert_eq!(split, whole);
        }
    }
}

#[test]
fn params_writer_rules() {
    let mut r = rng();
    for _ in 0..iters(200) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..r.below(30))
            .map(|_| {
                let nl = 1 + r.below(300);
                let vl = [0, 10, 1000, 20_000, MAX_PADDED_CONTENT - 8 - nl][r.below(5)];
                (r.bytes(nl), r.bytes(vl))
            })
            .collect();
        let mut out = Vec::new();
        writer::params(&mut out, 3, pairs.iter().map(|(n, v)| (&n[..], &v[..]))).unwrap();
        let mut rest = &out[..];
        let mut decoded = Vec::new();
        loop {
            let h = Header::decode(rest[..8].try_into().unwrap());
            assert_eq!((h.version, h.rtype, h.request_id), (1, RecordType::Params as u8, 3));
            assert!(h.body_len() <= 65535);
            assert_eq!((8 + h.body_len()) % 8, 0);
            let content = &rest[8..8 + h.content_length as usize];
            rest = &rest[8 + h.body_len()..];
            if content.is_empty() {
                break;
            }
            decoded.extend(nv::decode_all(content).expect("each record holds whole pairs"));
        }
        assert!(rest.is_empty());
        assert_eq!(decoded, pairs);
    }
}

#[test]
fn cgi_parser_split_invariance() {
    let mut r = rng();
    let alphabet = b"Ab-:\r\n \t0S";
    for _ in 0..iters(2000) {
        let mut input: Vec<u8> = (0..r.below(80)).map(|_| alphabet[r.below(alphabet.len())]).collect();
        if r.below(2) == 0 {
            input.splice(0..0, b"Status: 404 Nope\r\nX-A: 1\n".iter().copied());
            input.extend_from_slice(b"\r\n\r\nbody");
        }
        let run = |pieces: &[&[u8]]| {
            let mut p = CgiParser::new(64);
            let mut body = Vec::new();
            let mut head = None;
            for piece in pieces {
                if head.is_some() {
                    body.extend_from_slice(piece);
                    continue;
                }
                match p.feed(piece) {
                    Ok(Some((h, off))) => {
                        body.extend_from_slice(&piece[off..]);
                        head = Some(h);
                    }
                    Ok(None) => {}
                    Err(e) => return format!("error {e:?}"),
                }
            }
            format!("{head:?} {body:?}")
        };
        let whole = run(&[&input]);
        let pieces = r.pieces(&input);
        assert_eq!(run(&pieces), whole, "{:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn full_response_round_trip() {
    let mut r = rng();
    for _ in 0..iters(100) {
        let n = r.below(300_000);
        let body = r.bytes(n);
        let mut stdout = b"Status: 200\r\nX: y\r\n\r\n".to_vec();
        stdout.extend_from_slice(&body);
        let mut input = Vec::new();
        writer::stream(&mut input, RecordType::Stdout, 1, &stdout);
        writer::stream_end(&mut input, RecordType::Stdout, 1);
        writer::end_request(&mut input, 1, 0, ProtocolStatus::RequestComplete);
        let mut p = Parser::new();
        p.expect(1);
        let mut cgi = CgiParser::new(1000);
        let (mut got, mut head, mut ended) = (Vec::new(), None, false);
        for piece in r.pieces(&input) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, f) = p.parse(rest).unwrap();
                rest = &rest[n..];
                match f {
                    Some(Frame::Stdout { data, .. }) if head.is_none() => {
                        if let Some((h, off)) = cgi.feed(data).unwrap() {
                            head = Some(h);
                            got.extend_from_slice(&data[off..]);
                        }
                    }
                    Some(Frame::Stdout { data, .. }) => got.extend_from_slice(data),
                    Some(Frame::EndRequest { .. }) => ended = true,
                    _ => {}
                }
            }
        }
        assert!(ended);
        assert_eq!(head.unwrap().status, 200);
        assert_eq!(got, body);
    }
}
