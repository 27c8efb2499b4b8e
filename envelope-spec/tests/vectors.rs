//! Known-answer vectors (`vectors/*.json`), replayed against every backend, plus property tests: round trips,
//! never panicking on arbitrary input, every bit flip refused, and key commitment.
//!
//! The vectors were produced once by `generate_vectors` (run with `SESAME_WRITE_VECTORS=1 cargo test -p
//! sesame-envelope --test vectors -- --ignored generate`) and are committed as data: later versions of the code
//! must keep opening them byte for byte.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sesame_envelope::{
    Backend, HEADER_LEN, KeyId, OVERHEAD, OpenError, PreparedKey, from_base64, from_text, open, parse_header,
    seal_with_nonce, to_base64, to_text,
};

#[derive(Debug, Serialize, Deserialize)]
struct VectorFile {
    description: String,
    vectors: Vec<Vector>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
struct Vector {
    name: String,
    /// The DEK given to `open` (hex).
    key: String,
    /// The key id of that DEK (hex).
    key_id: String,
    /// Associated data given to `open` (hex).
    aad: String,
    /// For positive vectors: the nonce that `seal_with_nonce` uses to reproduce `envelope` exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    /// For positive vectors: the plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plaintext: Option<String>,
    /// The envelope bytes (hex). Absent when the vector is about the text form only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envelope: Option<String>,
    /// The prefixed text form (`sesame1:`) to decode first, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// The base64 form (the APIs' form) to decode first, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    /// `ok`, or the expected `OpenError::kind()`.
    result: String,
}

fn backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut v = vec![Backend::AwsLc];
    #[cfg(feature = "rustcrypto")]
    v.push(Backend::RustCrypto);
    v
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn key_of(v: &Vector, backend: Backend) -> PreparedKey {
    let key: [u8; 32] = hex::decode(&v.key).unwrap().try_into().unwrap();
    let id: [u8; 16] = hex::decode(&v.key_id).unwrap().try_into().unwrap();
    PreparedKey::new_with(backend, KeyId(id), &key)
}

fn run(v: &Vector, backend: Backend) -> Result<Vec<u8>, OpenError> {
    let key = key_of(v, backend);
    let aad = hex::decode(&v.aad).unwrap();
    let envelope = match (&v.text, &v.base64, &v.envelope) {
        (Some(text), _, _) => from_text(text)?,
        (None, Some(b64), _) => from_base64(b64)?,
        (None, None, Some(hex_env)) => hex::decode(hex_env).unwrap(),
        (None, None, None) => panic!("vector {} has neither envelope nor text", v.name),
    };
    open(&key, &aad, &envelope).map(|p| p.to_vec())
}

#[test]
fn every_vector_gives_its_known_answer_on_every_backend() {
    let mut files: Vec<_> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut count = 0;
    let mut negatives = 0;
    for file in &files {
        let parsed: VectorFile = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        for v in &parsed.vectors {
            for backend in backends() {
                let got = run(v, backend);
                if v.result == "ok" {
                    let want = hex::decode(v.plaintext.as_ref().unwrap()).unwrap();
                    assert_eq!(got.as_deref(), Ok(&want[..]), "{} on {backend:?}", v.name);
                    // Sealing with the recorded nonce reproduces the envelope byte for byte.
                    let key = key_of(v, backend);
                    let aad = hex::decode(&v.aad).unwrap();
                    let nonce: [u8; 32] = hex::decode(v.nonce.as_ref().unwrap()).unwrap().try_into().unwrap();
                    let sealed = seal_with_nonce(&key, &aad, &want, &nonce).unwrap();
                    let expected = match (&v.envelope, &v.text, &v.base64) {
                        (Some(e), _, _) => hex::decode(e).unwrap(),
                        (None, Some(t), _) => from_text(t).unwrap(),
                        (None, None, Some(b)) => from_base64(b).unwrap(),
                        (None, None, None) => unreachable!(),
                    };
                    assert_eq!(sealed, expected, "{} on {backend:?} must reseal identically", v.name);
                } else {
                    assert_eq!(
                        got.map_err(|e| e.kind()),
                        Err(v.result.as_str()),
                        "{} on {backend:?}",
                        v.name
                    );
                }
            }
            count += 1;
            negatives += usize::from(v.result != "ok");
        }
    }
    assert!(
        count >= 12 && negatives >= 8,
        "too few vectors: {count} ({negatives} negative)"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Generation (run once; the output is committed).

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

#[test]
#[ignore = "writes vectors/*.json; run explicitly with SESAME_WRITE_VECTORS=1"]
fn generate_vectors() {
    if std::env::var("SESAME_WRITE_VECTORS").as_deref() != Ok("1") {
        return;
    }
    let key_a = [0x11u8; 32];
    let mut key_b = [0x11u8; 32];
    key_b[31] = 0x12;
    let id = [0xA0u8; 16];
    let aad = sesame_envelope::context("sesame/stack-secret/v1", &[b"org-1", b"web", b"prod"]);
    let prepared_a = PreparedKey::new(KeyId(id), &key_a);
    let prepared_b = PreparedKey::new(KeyId(id), &key_b);
    let nonce = |n: u8| [n; 32];
    // `form`: how the envelope is written: "hex" (bytes), "text" (sesame1:) or "base64" (the APIs' form).
    let positive = |name: &str, plaintext: &[u8], aad: &[u8], n: u8, form: &str| {
        let env = seal_with_nonce(&prepared_a, aad, plaintext, &nonce(n)).unwrap();
        Vector {
            name: name.into(),
            key: h(&key_a),
            key_id: h(&id),
            aad: h(aad),
            nonce: Some(h(&nonce(n))),
            plaintext: Some(h(plaintext)),
            envelope: (form == "hex").then(|| h(&env)),
            text: (form == "text").then(|| to_text(&env)),
            base64: (form == "base64").then(|| to_base64(&env)),
            result: "ok".into(),
        }
    };
    let kib: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let positives = vec![
        positive("empty plaintext", b"", &aad, 1, "hex"),
        positive("short secret", b"hunter2", &aad, 2, "hex"),
        positive("no associated data", b"hunter2", b"", 3, "hex"),
        positive("one KiB", &kib, &aad, 4, "hex"),
        positive("unicode", "pässwörd 🔑 秘密".as_bytes(), &aad, 5, "hex"),
        positive("text form", b"db-password", &aad, 6, "text"),
        positive("base64 form (the APIs')", b"db-password", &aad, 7, "base64"),
    ];

    let base = seal_with_nonce(&prepared_a, &aad, b"attack at dawn", &nonce(9)).unwrap();
    let negative = |name: &str, env: Vec<u8>, key: &[u8; 32], aad: &[u8], result: &str| Vector {
        name: name.into(),
        key: h(key),
        key_id: h(&id),
        aad: h(aad),
        nonce: None,
        plaintext: None,
        envelope: Some(h(&env)),
        text: None,
        base64: None,
        result: result.into(),
    };
    let flip = |offset: usize| {
        let mut e = base.clone();
        e[offset] ^= 0x01;
        e
    };
    let last = base.len() - 1;
    // An envelope whose GCM part is valid under key B's message key, but whose header carries key A's commitment:
    // GCM alone would accept it under B; the commitment check must refuse it.
    let forged = {
        let mut e = seal_with_nonce(&prepared_b, &aad, b"attack at dawn", &nonce(9)).unwrap();
        e[50..82].copy_from_slice(&base[50..82]);
        e
    };
    let mut unknown_version = base.clone();
    unknown_version[0] = 0x02;
    let mut unknown_alg = base.clone();
    unknown_alg[1] = 0x02;
    let negatives = vec![
        negative("wrong key (same key id)", base.clone(), &key_b, &aad, "undecryptable"),
        negative("wrong associated data", base.clone(), &key_a, b"other", "undecryptable"),
        negative(
            "flipped bit in version byte",
            flip(0),
            &key_a,
            &aad,
            "unsupported_version",
        ),
        negative(
            "flipped bit in algorithm byte",
            flip(1),
            &key_a,
            &aad,
            "unsupported_algorithm",
        ),
        negative("flipped bit in key id", flip(5), &key_a, &aad, "undecryptable"),
        negative("flipped bit in nonce", flip(20), &key_a, &aad, "undecryptable"),
        negative("flipped bit in commitment", flip(60), &key_a, &aad, "undecryptable"),
        negative(
            "flipped bit in ciphertext",
            flip(HEADER_LEN + 3),
            &key_a,
            &aad,
            "undecryptable",
        ),
        negative("flipped bit in tag", flip(last), &key_a, &aad, "undecryptable"),
        negative(
            "truncated to the header",
            base[..HEADER_LEN].to_vec(),
            &key_a,
            &aad,
            "truncated",
        ),
        negative(
            "truncated by one byte",
            base[..last].to_vec(),
            &key_a,
            &aad,
            "undecryptable",
        ),
        negative("empty input", Vec::new(), &key_a, &aad, "truncated"),
        negative("unknown version", unknown_version, &key_a, &aad, "unsupported_version"),
        negative("unknown algorithm", unknown_alg, &key_a, &aad, "unsupported_algorithm"),
        negative(
            "commitment of another key (GCM-valid under the opening key)",
            forged,
            &key_b,
            &aad,
            "undecryptable",
        ),
    ];
    let mut text_negatives = Vec::new();
    for (name, text) in [
        ("text without prefix", format!("x{}", &to_text(&base)[1..])),
        (
            "text with a character outside base64url",
            format!("{}+", to_text(&base)),
        ),
    ] {
        let mut v = negative(name, Vec::new(), &key_a, &aad, "invalid_text");
        v.envelope = None;
        v.text = Some(text);
        text_negatives.push(v);
    }
    let b64 = to_base64(&base);
    assert!(b64.ends_with('='), "the base envelope's length needs padding");
    for (name, text) in [
        ("base64 without its padding", b64.trim_end_matches('=').to_owned()),
        (
            "base64 in the url-safe alphabet",
            b64.replace('+', "-").replace('/', "_"),
        ),
        ("base64 with a line break", format!("{}\n{}", &b64[..76], &b64[76..])),
        ("base64 with surrounding space", format!(" {b64}")),
        ("the prefixed form where base64 is expected", to_text(&base)),
    ] {
        let mut v = negative(name, Vec::new(), &key_a, &aad, "invalid_text");
        v.envelope = None;
        v.base64 = Some(text);
        text_negatives.push(v);
    }

    let write = |file: &str, description: &str, vectors: Vec<Vector>| {
        let doc = VectorFile {
            description: description.into(),
            vectors,
        };
        let mut json = serde_json::to_string_pretty(&doc).unwrap();
        json.push('\n');
        std::fs::write(vectors_dir().join(file), json).unwrap();
    };
    write(
        "v1-positive.json",
        "Envelope v1 known answers: opening gives the plaintext, and sealing with the nonce reproduces the envelope.",
        positives,
    );
    write(
        "v1-negative.json",
        "Envelope v1 known failures: each must fail with the named error kind and nothing else.",
        negatives,
    );
    write(
        "v1-text.json",
        "Envelope v1 text forms (SPEC.md §7: base64, and the sesame1: prefixed form): malformed text is refused \
         before any crypto.",
        text_negatives,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Properties.

fn prepared(seed: u8, backend: Backend) -> PreparedKey {
    PreparedKey::new_with(backend, KeyId([seed; 16]), &[seed; 32])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trips_and_text_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
                                        aad in proptest::collection::vec(any::<u8>(), 0..64),
                                        nonce in any::<[u8; 32]>()) {
        for backend in backends() {
            let key = prepared(3, backend);
            let env = seal_with_nonce(&key, &aad, &plaintext, &nonce).unwrap();
            prop_assert_eq!(env.len(), plaintext.len() + OVERHEAD);
            prop_assert_eq!(&open(&key, &aad, &env).unwrap()[..], &plaintext[..]);
            prop_assert_eq!(&from_text(&to_text(&env)).unwrap(), &env);
            // The base64 form is standard padded base64, as the APIs send it, and decodes to the same bytes.
            let b64 = to_base64(&env);
            prop_assert!(b64.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='));
            prop_assert_eq!(b64.len() % 4, 0);
            prop_assert_eq!(from_base64(&b64).unwrap(), env);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let key = prepared(4, Backend::AwsLc);
        let _ = parse_header(&bytes);
        prop_assert!(open(&key, b"", &bytes).is_err());
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = from_text(text);
            let _ = from_base64(text);
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_open(tail in proptest::collection::vec(any::<u8>(), 16..256)) {
        let key = prepared(5, Backend::AwsLc);
        let mut env = seal_with_nonce(&key, b"", b"", &[1; 32]).unwrap();
        env.truncate(HEADER_LEN);
        env.extend_from_slice(&tail);
        prop_assert_eq!(open(&key, b"", &env).map(|_| ()), Err(OpenError::Undecryptable));
    }

    #[test]
    fn every_single_bit_flip_is_refused(plaintext in proptest::collection::vec(any::<u8>(), 0..64),
                                        bit in any::<proptest::sample::Index>()) {
        let key = prepared(6, Backend::AwsLc);
        let env = seal_with_nonce(&key, b"ctx", &plaintext, &[2; 32]).unwrap();
        let i = bit.index(env.len() * 8);
        let mut t = env.clone();
        t[i / 8] ^= 1 << (i % 8);
        prop_assert!(open(&key, b"ctx", &t).is_err());
    }

    #[test]
    fn another_key_with_the_same_id_never_opens(seed in 7u8..255, plaintext in proptest::collection::vec(any::<u8>(), 0..64)) {
        let a = PreparedKey::new(KeyId([1; 16]), &[seed; 32]);
        let b = PreparedKey::new(KeyId([1; 16]), &[seed.wrapping_add(1); 32]);
        let env = seal_with_nonce(&a, b"", &plaintext, &[3; 32]).unwrap();
        prop_assert_eq!(open(&b, b"", &env).map(|_| ()), Err(OpenError::Undecryptable));
    }
}

#[cfg(feature = "rustcrypto")]
proptest! {
    #[test]
    fn both_backends_agree(plaintext in proptest::collection::vec(any::<u8>(), 0..1024), nonce in any::<[u8; 32]>()) {
        let a = prepared(8, Backend::AwsLc);
        let r = prepared(8, Backend::RustCrypto);
        let ea = seal_with_nonce(&a, b"x", &plaintext, &nonce).unwrap();
        let er = seal_with_nonce(&r, b"x", &plaintext, &nonce).unwrap();
        prop_assert_eq!(&ea, &er);
        prop_assert_eq!(&open(&r, b"x", &ea).unwrap()[..], &plaintext[..]);
    }
}

#[test]
fn sealing_refuses_oversized_plaintext_and_seal_is_random() {
    let key = prepared(9, Backend::AwsLc);
    let big = vec![0u8; sesame_envelope::MAX_PLAINTEXT_LEN + 1];
    assert!(sesame_envelope::seal(&key, b"", &big, &mut rand::rng()).is_err());
    let a = sesame_envelope::seal(&key, b"", b"same", &mut rand::rng()).unwrap();
    let b = sesame_envelope::seal(&key, b"", b"same", &mut rand::rng()).unwrap();
    assert_ne!(a, b, "two seals of one plaintext must differ");
}
