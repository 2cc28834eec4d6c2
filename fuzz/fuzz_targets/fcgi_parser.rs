//! The FastCGI record parser (`heisen::fcgi::parser`) on arbitrary bytes from an application.
//!
//! Input: byte 0 = how many request ids are active (low 3 bits) and a split seed (high 5 bits),
//! then 2 bytes per active id (big-endian), then the byte stream.
//!
//! Checks, beyond "never panics, never reads out of bounds":
//! * every call consumes at most what it was given, and a call with input either consumes a
//!   byte or returns a frame (no spinning);
//! * stream frames are never empty, and a finished request id is no longer active;
//! * the frames (stream pieces joined) and the error are the same for the whole input at once,
//!   for one byte at a time, and for a split pattern taken from the seed;
//! * after an error the parser stays poisoned with the same error.
#![no_main]

use heisen::fcgi::parser::{Frame, ParseError, Parser};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Stdout(u16, Vec<u8>),
    StdoutEnd(u16),
    Stderr(u16, Vec<u8>),
    StderrEnd(u16),
    Other(String),
}

fn push(out: &mut Vec<Out>, f: Frame<'_>) {
    match f {
        Frame::Stdout { id, data } => {
            assert!(!data.is_empty(), "empty STDOUT frame");
            if let Some(Out::Stdout(i, d)) = out.last_mut() {
                if *i == id {
                    d.extend_from_slice(data);
                    return;
                }
            }
            out.push(Out::Stdout(id, data.to_vec()));
        }
        Frame::Stderr { id, data } => {
            assert!(!data.is_empty(), "empty STDERR frame");
            if let Some(Out::Stderr(i, d)) = out.last_mut() {
                if *i == id {
                    d.extend_from_slice(data);
                    return;
                }
            }
            out.push(Out::Stderr(id, data.to_vec()));
        }
        Frame::StdoutEnd { id } => out.push(Out::StdoutEnd(id)),
        Frame::StderrEnd { id } => out.push(Out::StderrEnd(id)),
        other => out.push(Out::Other(format!("{other:?}"))),
    }
}

/// Feeds `input` in pieces whose sizes come from `sizes` (cycled); returns frames and error.
fn run(ids: &[u16], input: &[u8], sizes: &[usize]) -> (Vec<Out>, Option<ParseError>) {
    let mut p = Parser::new();
    for &id in ids {
        p.expect(id);
    }
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < input.len() {
        let end = (pos + sizes[k % sizes.len()].max(1)).min(input.len());
        k += 1;
        let mut piece = &input[pos..end];
        pos = end;
        while !piece.is_empty() {
            match p.parse(piece) {
                Ok((n, frame)) => {
                    assert!(n <= piece.len(), "consumed {n} of {}", piece.len());
                    assert!(n > 0 || frame.is_some(), "no progress");
                    if let Some(f) = frame {
                        if let Frame::EndRequest { id, .. } = f {
                            assert!(!p.is_active(id), "id {id} still active after END_REQUEST");
                        }
                        push(&mut out, f);
                    }
                    piece = &piece[n..];
                }
                Err(e) => {
                    assert_eq!(p.error(), Some(&e));
                    assert_eq!(p.parse(b"\x01\x06\x00\x01\x00\x00\x00\x00").err(), Some(e.clone()));
                    let _ = e.to_string();
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&b0, rest)) = data.split_first() else { return };
    let nids = (b0 & 7) as usize;
    if rest.len() < nids * 2 {
        return;
    }
    let ids: Vec<u16> = rest[..nids * 2]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let input = &rest[nids * 2..];
    let whole = run(&ids, input, &[usize::MAX]);
    let bytewise = run(&ids, input, &[1]);
    assert_eq!(whole, bytewise, "one byte at a time differs");
    let seed = (b0 >> 3) as usize;
    let sizes = [1 + seed, 7, 8 + seed % 3, 3, 16, 9 + seed];
    let split = run(&ids, input, &sizes);
    assert_eq!(whole, split, "split {sizes:?} differs");
});
