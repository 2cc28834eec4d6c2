//! The CGI response-header parser (`heisen::fcgi::cgi`) on arbitrary STDOUT bytes from a
//! backend (semi-trusted input).
//!
//! Input: byte 0 = limit class and split seed, rest = STDOUT.
//! Checks: no panic; the same head, body offset and error for the whole input, one byte at a
//! time and a seeded split; the block never exceeds the limit; every header that comes out is
//! safe to copy into an HTTP response: a non-empty token name, a value without CR, LF, NUL or
//! other control bytes (tab allowed), no `Status` header (it became the status), a status in
//! 100..=999; so `name: value\r\n` can never split into two headers or end the head early.
#![no_main]

use heisen::fcgi::cgi::{CgiError, CgiHead, CgiParser};
use libfuzzer_sys::fuzz_target;

type Res = Result<(CgiHead, Vec<u8>), CgiError>;

fn run(input: &[u8], limit: usize, sizes: &[usize]) -> Res {
    let mut p = CgiParser::new(limit);
    let mut pos = 0;
    let mut k = 0;
    while pos < input.len() {
        let end = (pos + sizes[k % sizes.len()].max(1)).min(input.len());
        k += 1;
        let piece = &input[pos..end];
        pos = end;
        if let Some((head, off)) = p.feed(piece)? {
            assert!(off <= piece.len());
            assert!(off > 0, "a head ends with at least its newline");
            assert!(p.is_done());
            let mut body = piece[off..].to_vec();
            body.extend_from_slice(&input[pos..]);
            return Ok((head, body));
        }
        assert!(!p.is_done());
    }
    p.finish()?;
    unreachable!("finish() said done without a head");
}

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&b0, input)) = data.split_first() else { return };
    let limit = match b0 & 3 {
        0 => 0,
        1 => 16,
        2 => 256,
        _ => 65536,
    };
    let whole = run(input, limit, &[usize::MAX]);
    assert_eq!(whole, run(input, limit, &[1]), "one byte at a time differs");
    let s = (b0 >> 2) as usize;
    assert_eq!(whole, run(input, limit, &[1 + s, 2, 13 + s % 5]), "split differs");
    match &whole {
        Ok((head, body)) => {
            assert!((100..=999).contains(&head.status), "status {}", head.status);
            assert!(input.len() - body.len() <= limit, "head larger than the limit");
            for (n, v) in &head.headers {
                assert!(!n.is_empty() && n.iter().all(|&b| tchar(b)), "bad name {n:?}");
                assert!(!n.eq_ignore_ascii_case(b"Status"));
                assert!(
                    v.iter().all(|&b| (b >= 0x20 && b != 0x7F) || b == b'\t'),
                    "control byte in value {v:?}"
                );
                assert!(v.first() != Some(&b' ') && v.last() != Some(&b' '));
            }
            if let Some(r) = &head.reason {
                assert!(r.iter().all(|&b| (b >= 0x20 && b != 0x7F) || b == b'\t'), "reason {r:?}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
