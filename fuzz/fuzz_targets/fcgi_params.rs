//! CGI parameters from hostile HTTP input (`heisen::fcgi::params`) and the PARAMS writer
//! (`heisen::fcgi::writer::params`).
//!
//! Input: lines separated by `\n`. `name:value` is an HTTP header (add_http_header);
//! `!METHOD URI ROOT SCRIPT [PATH_INFO]` calls set_cgi; `=block` calls add_block (`\x01` stands
//! for NUL); `*N:name:value` adds a header whose value is repeated N*1024 times (oversized
//! parameters).
//! Checks: no panic; a `Proxy` header never becomes HTTP_PROXY (httpoxy); every variable made
//! from a header is CONTENT_TYPE, CONTENT_LENGTH or HTTP_[A-Z0-9_]+; a header name with other
//! bytes than [A-Za-z0-9-] is dropped; errors leave the set unchanged; the PARAMS stream the
//! writer makes is well formed (version 1, type PARAMS, the request id, content+padding <=
//! 65535, padding to 8) and decodes back to exactly the pairs, with no pair split across records.
#![no_main]

use heisen::fcgi::nv;
use heisen::fcgi::params::{HeaderUse, Params};
use heisen::fcgi::proto::{Header, RecordType, HEADER_LEN};
use heisen::fcgi::writer;
use libfuzzer_sys::fuzz_target;

fn header_var_ok(name: &[u8]) -> bool {
    name == b"CONTENT_TYPE"
        || name == b"CONTENT_LENGTH"
        || (name.starts_with(b"HTTP_")
            && name.len() > 5
            && name[5..].iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
}

fn check_stream(p: &Params, id: u16) {
    let mut out = Vec::new();
    writer::params(&mut out, id, p.iter()).expect("every set pair fits one record");
    let mut pairs = Vec::new();
    let mut rest = &out[..];
    loop {
        assert!(rest.len() >= HEADER_LEN, "truncated PARAMS stream");
        let h = Header::decode(rest[..HEADER_LEN].try_into().unwrap());
        assert_eq!(h.version, 1);
        assert_eq!(h.rtype, RecordType::Params as u8);
        assert_eq!(h.request_id, id);
        let len = h.content_length as usize;
        assert!(len + h.padding_length as usize <= 65535);
        assert_eq!((len + h.padding_length as usize) % 8, 0, "unpadded PARAMS record");
        let content = &rest[HEADER_LEN..HEADER_LEN + len];
        rest = &rest[HEADER_LEN + len + h.padding_length as usize..];
        if len == 0 {
            break;
        }
        // Whole pairs only: php-fpm parses each PARAMS record on its own.
        pairs.extend(nv::decode_all(content).expect("a pair split across PARAMS records"));
    }
    assert!(rest.is_empty(), "bytes after the empty PARAMS record");
    let want: Vec<(Vec<u8>, Vec<u8>)> = p.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
    assert_eq!(pairs, want);
}

fuzz_target!(|data: &[u8]| {
    let mut p = Params::new();
    for line in data.split(|&b| b == b'\n') {
        let before = p.clone();
        let res = match line.first() {
            Some(b'!') => {
                let s = String::from_utf8_lossy(&line[1..]).into_owned();
                let f: Vec<&str> = s.split(' ').collect();
                if f.len() < 4 {
                    continue;
                }
                p.set_cgi(f[0], f[1], "HTTP/1.1", f[2], f[3], f.get(4).copied()).map(|_| ())
            }
            Some(b'=') => {
                let block: Vec<u8> = line[1..].iter().map(|&b| if b == 1 { 0 } else { b }).collect();
                p.add_block(&block)
            }
            Some(b'*') if line.len() > 2 => {
                let n = (line[1] % 80) as usize;
                let Some(c) = line[2..].iter().position(|&b| b == b':') else { continue };
                let (name, value) = (&line[2..2 + c], &line[3 + c..]);
                let big = value.repeat(n * 1024);
                let big = if big.len() > 200_000 { big[..200_000].to_vec() } else { big };
                p.add_http_header(name, &big).map(|_| ())
            }
            _ => {
                let Some(c) = line.iter().position(|&b| b == b':') else { continue };
                let (name, value) = (&line[..c], &line[c + 1..]);
                let had: Vec<Vec<u8>> = p.iter().map(|(n, _)| n.to_vec()).collect();
                match p.add_http_header(name, value) {
                    Ok(HeaderUse::Added) => {
                        assert!(!name.eq_ignore_ascii_case(b"Proxy"), "Proxy header was added");
                        assert!(name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-'));
                        for (n, _) in p.iter() {
                            if !had.iter().any(|h| h == n) {
                                assert!(header_var_ok(n), "header made variable {n:?}");
                            }
                        }
                    }
                    Ok(HeaderUse::Dropped) => assert_eq!(p, before),
                    Err(_) => assert_eq!(p, before, "a failed header changed the parameters"),
                }
                Ok(())
            }
        };
        if res.is_err() {
            assert_eq!(p, before, "a failed call changed the parameters");
        }
        assert!(p.get(b"HTTP_PROXY").is_none() || before.get(b"HTTP_PROXY").is_some() || line.first() == Some(&b'='),
            "HTTP_PROXY appeared from a header");
    }
    check_stream(&p, 1 + (data.len() as u16 % 7));
});
