//! Canonical standard base64 (RFC 4648 §4: standard alphabet, padded, no whitespace, no stray bits): the encoding
//! of the envelope's base64 form, and the one Sesame's APIs use for byte values (Pulumi's and Vault's plaintexts).
//!
//! Rule: accept exactly what the `base64` crate's canonical `STANDARD` engine accepts (so `QR==`, which would
//! decode to the same byte as `QQ==`, is refused) and write exactly what it writes; the tests compare both, input
//! by input. The work is vectorised (`base64-simd` picks AVX2 or SSE4.1 at run time, a scalar loop otherwise): in
//! the scalar engine, coding a 1 KiB value cost several times more than sealing it. Decoded bytes land in a wiping
//! buffer of exactly their size, since they are usually a plaintext.

use base64_simd::{Out, STANDARD};
use zeroize::Zeroizing;

/// The text is not canonical standard base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not canonical standard base64 (alphabet A-Z a-z 0-9 + /, padded with =)")]
pub struct NotBase64;

/// The length of the encoding of `n` bytes, or `None` if it does not fit in `usize`.
pub fn encoded_len(n: usize) -> Option<usize> {
    n.div_ceil(3).checked_mul(4)
}

/// The bytes `text` encodes, in a buffer that is wiped when dropped.
pub fn decode(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, NotBase64> {
    let len = STANDARD.decoded_length(text).map_err(|_| NotBase64)?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    let written = STANDARD
        .decode(text, Out::from_slice(&mut out[..]))
        .map_err(|_| NotBase64)?
        .len();
    // The length was computed from the same text; a difference would be a bug in the codec, never a short value.
    if written != len {
        return Err(NotBase64);
    }
    Ok(out)
}

/// The buffer given to [`encode_into`] is not exactly as long as the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("base64 output buffer of the wrong size")]
pub struct WrongOutputSize;

/// Writes the encoding of `bytes` into `out`, which must be exactly [`encoded_len`] long; otherwise nothing is
/// written and the caller gets an error, never a shortened encoding.
pub fn encode_into(bytes: &[u8], out: &mut [u8]) -> Result<(), WrongOutputSize> {
    let expected = out.len();
    if encoded_len(bytes.len()) != Some(expected) {
        return Err(WrongOutputSize);
    }
    if STANDARD.encode(bytes, Out::from_slice(out)).len() != expected {
        return Err(WrongOutputSize);
    }
    Ok(())
}

/// The encoding of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode_to_string(bytes)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as REFERENCE;
    use proptest::prelude::*;

    use super::*;

    /// Both codecs' answers on `text`: the same bytes, or both refuse.
    fn agrees(text: &[u8]) {
        let ours = decode(text).map(|v| v.to_vec()).ok();
        let reference = REFERENCE.decode(text).ok();
        assert_eq!(ours, reference, "decoding {:?}", String::from_utf8_lossy(text));
    }

    #[test]
    fn every_crafted_form_is_read_as_the_reference_reads_it() {
        let cases: &[&[u8]] = &[
            b"",
            b"=",
            b"==",
            b"===",
            b"====",
            b"A",
            b"AA",
            b"AAA",
            b"AAAA",
            b"QQ==",
            b"QR==",
            b"QUI=",
            b"QUJ=",
            b"QUJD",
            b"QQ",
            b"QUI",
            b"QQ=",
            b"Q===",
            b"QQ==QQ==",
            b"QQ==AAAA",
            b"=QQ=",
            b"Q=Q=",
            b"AA=A",
            b"QUJD\n",
            b" QUJD",
            b"QU JD",
            b"QUJD\r\n",
            b"QUJD\0",
            b"QU\0D",
            b"-_-_",
            b"QUJD-",
            b"Zm9v",
            b"Zm9vYg==",
            b"Zm9vYmE=",
            b"Zm9vYmFy",
            b"Zm9vYmFy====",
            b"////",
            b"++++",
            b"+/+/",
            b"\xc3\xa9\xc3\xa9",
            b"QUJD\xff",
            "Zm9v\u{2028}".as_bytes(),
            b"Zm9vYg=\x3d",
        ];
        for text in cases {
            agrees(text);
        }
        // Every symbol before one and two pads (canonical and not), and every byte in every position of a quantum.
        for b in 0..=255u8 {
            agrees(&[b'Q', b, b'=', b'=']);
            agrees(&[b'Q', b'U', b, b'=']);
            for at in 0..4 {
                let mut q = *b"QUJD";
                q[at] = b;
                agrees(&q);
                let mut long = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=".to_vec();
                long[at * 7] = b;
                agrees(&long);
            }
        }
    }

    #[test]
    fn long_texts_agree_across_the_vector_widths() {
        // Lengths around the 16-, 32- and 64-byte blocks the vector paths take, with a bad byte in each position.
        for n in 0..200usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let text = REFERENCE.encode(&bytes);
            assert_eq!(encode(&bytes), text);
            agrees(text.as_bytes());
            for at in (0..text.len()).step_by(7) {
                let mut bad = text.clone().into_bytes();
                bad[at] = b'*';
                agrees(&bad);
            }
        }
    }

    #[test]
    fn encode_into_fills_an_exact_buffer() {
        for n in 0..100usize {
            let bytes = vec![0xa5u8; n];
            let mut out = vec![0u8; encoded_len(n).unwrap()];
            encode_into(&bytes, &mut out).unwrap();
            assert_eq!(out, REFERENCE.encode(&bytes).into_bytes());
        }
        assert_eq!(encoded_len(usize::MAX), None);
    }

    #[test]
    fn encode_into_refuses_a_buffer_of_another_size_and_writes_nothing() {
        for size in [0, 3, 5, 8] {
            let mut out = vec![b'#'; size];
            assert_eq!(encode_into(b"abc", &mut out), Err(WrongOutputSize), "{size}");
            assert!(out.iter().all(|&b| b == b'#'));
        }
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip_as_the_reference_encodes_them(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = encode(&bytes);
            prop_assert_eq!(&text, &REFERENCE.encode(&bytes));
            prop_assert_eq!(decode(text.as_bytes()).unwrap().to_vec(), bytes);
        }

        #[test]
        fn any_text_is_read_as_the_reference_reads_it(text in proptest::collection::vec(
            prop_oneof![Just(b'='), Just(b'+'), Just(b'/'), Just(b'\n'), b'A'..=b'Z', b'a'..=b'z', b'0'..=b'9', any::<u8>()],
            0..120,
        )) {
            agrees(&text);
        }
    }
}
