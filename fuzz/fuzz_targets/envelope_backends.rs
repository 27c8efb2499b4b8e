//! The two backends agree: for fuzzer-chosen key, nonce, associated data and plaintext, aws-lc-rs and RustCrypto
//! seal to identical bytes, and each opens the other's envelope to the same plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_envelope::{Backend, KeyId, PreparedKey, open, seal_with_nonce};

fuzz_target!(|data: &[u8]| {
    if data.len() < 64 {
        return;
    }
    let (key, rest) = data.split_at(32);
    let (nonce, rest) = rest.split_at(32);
    let split = rest.first().map_or(0, |&b| usize::from(b)).min(rest.len());
    let (aad, plaintext) = rest.split_at(split);
    let key: [u8; 32] = key.try_into().unwrap();
    let nonce: [u8; 32] = nonce.try_into().unwrap();
    let a = PreparedKey::new_with(Backend::AwsLc, KeyId([1; 16]), &key);
    let r = PreparedKey::new_with(Backend::RustCrypto, KeyId([1; 16]), &key);
    let ea = seal_with_nonce(&a, aad, plaintext, &nonce).unwrap();
    let er = seal_with_nonce(&r, aad, plaintext, &nonce).unwrap();
    assert_eq!(ea, er);
    assert_eq!(&*open(&r, aad, &ea).unwrap(), plaintext);
    assert_eq!(&*open(&a, aad, &er).unwrap(), plaintext);
});
