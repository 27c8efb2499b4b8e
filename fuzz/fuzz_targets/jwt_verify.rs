//! Fuzz target: the inbound token-exchange verification path (`sesame::core::jwt::peek` + `verify`) against a fixed
//! JWKS (one RSA key, one P-256 key), and the trust-policy matcher on whatever claims a token carries. Arbitrary
//! bytes must never panic; nothing arbitrary may verify (no private key is known here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame::core::jwt::{Expect, KeySet, peek, verify};

const JWKS: &str = r#"{"keys": [
  {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "e": "AQAB",
   "n": "wKG5L0EV8ZcruDxCCgh0f0s2fW6sDASyrlaYNUNNZ5TgFpAfXJhvQbS1xdc01uGPnNH30ACOl68SxXstBEliCn-7ktfs4-NPW5p7ZO3xWlVm3grdLYteladI4RZ245zTBxyytkds8Y-0jD4h5KmUJPYFk02WGFIt-hsxrT4tFhfXwF3-ik9S2_XN6p-C8kk1nfAUBeVxjkKprmnfbgiqXOi3nvle1aTc0huY6R8gc__Hd2AchOIB27MFMJ5luMTQqUnlR60zzMKsGEaC0mvW_DlEP0oC33Ng-fxFFykL1IKnOD3SAODjX6tx9IRGhLduc8g_0GX4oB7g7c39XyYSfQ"},
  {"kty": "EC", "crv": "P-256", "kid": "ec-1",
   "x": "TRrN3O8-zhCZGxPZ3-6dQdED5QMYksm8YY1Ur9s71Oc", "y": "pvEwJyZV8AhlEE57FsTnPh-_6MuxJV-MWx4ENnxxDjM"}
]}"#;

static KEYS: std::sync::LazyLock<KeySet> =
    std::sync::LazyLock::new(|| KeySet::from_slice(JWKS.as_bytes()).expect("the fixed JWKS parses"));

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    let Ok(token) = std::str::from_utf8(data) else {
        // Arbitrary bytes as a key set must not panic either.
        let _ = KeySet::from_slice(data);
        return;
    };
    let _ = peek(token);
    let expect = Expect {
        issuer: "https://token.actions.githubusercontent.com",
        audience: "urn:pulumi:org:acme",
        now_s: 1_700_000_000,
    };
    assert!(verify(token, keys, &expect).is_err(), "a token verified without a private key");
    // The matcher over the payload's claims, with the text itself as a pattern.
    if let Some(payload) = token.split('.').nth(1) {
        use base64::Engine;
        if let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)
            && let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes)
        {
            let _ = sesame::core::trust::claim(&claims, token);
            let _ = sesame::core::trust::wildcard(token, payload);
        }
    }
});
