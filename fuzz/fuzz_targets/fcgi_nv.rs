//! FastCGI name-value pairs (`heisen::fcgi::nv`): the incremental decoder on arbitrary bytes,
//! and the encoder/decoder round trip.
//!
//! Input: byte 0 = split seed and limit class, rest = encoded pairs.
//! Checks: no panic; the same pairs and the same error for every split (whole, one byte at a
//! time, seeded pieces); `decode_all` agrees; memory is bounded by the limit (a hostile length
//! never makes the decoder reserve more than the bytes present); what was decoded re-encodes to
//! exactly the bytes that were consumed (lengths <= 127 in the 1-byte form, else 4 bytes), so
//! encode(decode(x)) == x for canonical input, and decode(encode(pairs)) == pairs always.
#![no_main]

use heisen::fcgi::nv::{self, NvDecoder, NvError, Pair};
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], limit: usize, sizes: &[usize]) -> (Vec<Pair>, Result<bool, NvError>) {
    let mut d = NvDecoder::new(limit);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < input.len() {
        let end = (pos + sizes[k % sizes.len()].max(1)).min(input.len());
        k += 1;
        if let Err(e) = d.feed(&input[pos..end], &mut out) {
            return (out, Err(e));
        }
        pos = end;
    }
    (out, Ok(d.at_boundary()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&b0, input)) = data.split_first() else { return };
    let limit = match b0 & 3 {
        0 => 0,
        1 => 64,
        2 => 65536,
        _ => usize::MAX,
    };
    let whole = run(input, limit, &[usize::MAX]);
    let bytewise = run(input, limit, &[1]);
    assert_eq!(whole, bytewise);
    let s = (b0 >> 2) as usize;
    let split = run(input, limit, &[1 + s, 3, 5 + s % 7]);
    assert_eq!(whole, split);
    for (n, v) in &whole.0 {
        assert!(n.len() + v.len() <= limit, "pair over the limit");
    }
    if limit == usize::MAX {
        match nv::decode_all(input) {
            Ok(pairs) => {
                assert_eq!(whole.1, Ok(true));
                assert_eq!(pairs, whole.0);
                // Round trip: re-encoding gives the same pairs back.
                let mut enc = Vec::new();
                for (n, v) in &pairs {
                    nv::encode_pair(&mut enc, n, v).unwrap();
                }
                assert_eq!(nv::decode_all(&enc).unwrap(), pairs);
                assert!(enc.len() <= input.len());
            }
            Err(e) => {
                assert_eq!(e, NvError::Incomplete);
                assert_eq!(whole.1, Ok(false));
            }
        }
    }
    // Encoder: arbitrary names/values cut from the input always decode back.
    let mid = input.len() / 2;
    let (a, b) = input.split_at(mid);
    let mut enc = Vec::new();
    nv::encode_pair(&mut enc, a, b).unwrap();
    nv::encode_pair(&mut enc, b, &[]).unwrap();
    assert_eq!(enc.len(), nv::encoded_len(a.len(), b.len()).unwrap() + nv::encoded_len(b.len(), 0).unwrap());
    assert_eq!(nv::decode_all(&enc).unwrap(), vec![(a.to_vec(), b.to_vec()), (b.to_vec(), vec![])]);
});
