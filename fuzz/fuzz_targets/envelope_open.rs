//! Decode and open arbitrary bytes (binary and text form) with a fixed key whose id matches the input's, so the
//! fuzzer reaches the commitment check and GCM. Property: never panics, never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_envelope::{KeyId, PreparedKey, from_text, open, parse_header};

fuzz_target!(|data: &[u8]| {
    let key_id = match parse_header(data) {
        Ok(h) => h.key_id,
        Err(_) => KeyId([0; 16]),
    };
    let key = PreparedKey::new(key_id, &[0x42; 32]);
    assert!(open(&key, b"aad", data).is_err(), "random bytes opened");
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(bytes) = from_text(text) {
            let _ = open(&key, b"aad", &bytes);
        }
    }
});
