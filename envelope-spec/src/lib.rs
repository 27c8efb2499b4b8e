//! Sesame envelope v1: a versioned, key-committing AES-256-GCM envelope for secrets. Pure: no I/O, no clock; the
//! caller supplies the key, the associated data and the random generator.
//!
//! `SPEC.md` beside this crate is the normative description; this crate is its reference implementation, and
//! `vectors/*.json` are the known answers every later version must keep opening.
//!
//! ```
//! use sesame_envelope::{KeyId, PreparedKey, open, seal};
//! let key = PreparedKey::new(KeyId([7; 16]), &[42; 32]);
//! let aad = sesame_envelope::context("example", &[b"org-1", b"env-9"]);
//! let envelope = seal(&key, &aad, b"hunter2", &mut rand::rng()).unwrap();
//! assert_eq!(&*open(&key, &aad, &envelope).unwrap(), b"hunter2");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod b64;
mod backend;
mod context;
mod error;
mod format;
mod plaintext;
mod text;

pub use backend::{Backend, PreparedKey};
pub use context::context;
pub use error::{OpenError, SealError};
pub use format::{
    ALGORITHM_HKDF_SHA256_AES256GCM, HEADER_LEN, Header, KEY_ID_LEN, KeyId, MAX_PLAINTEXT_LEN, NONCE_LEN, OVERHEAD,
    TAG_LEN, VERSION_1, parse_header,
};
pub use plaintext::Plaintext;
pub use text::{TEXT_PREFIX, from_base64, from_text, to_base64, to_text};

/// Seals `plaintext` under `key`, bound to the caller's associated data `aad` (which is not stored: the same bytes
/// must be given to [`open`]). The 256-bit message nonce is drawn from `rng`, which must be a CSPRNG; a user-space
/// generator seeded from the OS (such as rand's `ThreadRng`) avoids a system call per message.
pub fn seal<R: rand_core::CryptoRng + ?Sized>(
    key: &PreparedKey,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_with_nonce(key, aad, plaintext, &nonce)
}

/// [`seal`] with a caller-chosen nonce. Only for known-answer vectors: reusing a nonce under one DEK reuses the
/// message key, which breaks GCM. Never call it with anything but fresh random bytes outside tests.
#[doc(hidden)]
pub fn seal_with_nonce(
    key: &PreparedKey,
    aad: &[u8],
    plaintext: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, SealError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(SealError::TooLarge { max: MAX_PLAINTEXT_LEN });
    }
    let derived = key.derive(nonce);
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    format::write_header(&mut out, key.key_id(), nonce, &derived.commitment);
    out.extend_from_slice(plaintext);
    let gcm_aad = format::gcm_aad(&out[..HEADER_LEN], aad);
    let tag = key.gcm_seal(&derived.message_key, &gcm_aad, &mut out[HEADER_LEN..])?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens an envelope sealed by [`seal`] under the same key and associated data.
///
/// Structural problems that reveal nothing secret (too short, unknown version or algorithm, too large) are
/// reported as such; every cryptographic failure — another key, other associated data, any change to the bytes —
/// is the one opaque [`OpenError::Undecryptable`]. The key commitment is checked before any decryption.
pub fn open(key: &PreparedKey, aad: &[u8], envelope: &[u8]) -> Result<Plaintext, OpenError> {
    let header = parse_header(envelope)?;
    if header.key_id != key.key_id() {
        return Err(OpenError::Undecryptable);
    }
    let derived = key.derive(&header.nonce);
    // Constant time: the comparison must not tell an attacker how many leading bytes of a forged commitment match.
    if aws_lc_rs::constant_time::verify_slices_are_equal(&derived.commitment, &header.commitment).is_err() {
        return Err(OpenError::Undecryptable);
    }
    let body = &envelope[HEADER_LEN..];
    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    let gcm_aad = format::gcm_aad(&envelope[..HEADER_LEN], aad);
    key.gcm_open(&derived.message_key, &gcm_aad, ciphertext, tag)
}
