//! The byte layout of envelope v1 and its parsing. Parsing never panics: every length is checked before slicing.
//!
//! ```text
//! offset  size  field
//!      0     1  version      0x01
//!      1     1  algorithm    0x01 = HKDF-SHA256 per-message key + AES-256-GCM + 256-bit key commitment
//!      2    16  key id       the DEK's id (content names its DEK, never the KEK)
//!     18    32  nonce        random; the message key and commitment are derived from it
//!     50    32  commitment   HKDF-Expand(PRK, "…commit" || nonce): binds the envelope to exactly one DEK
//!     82     n  ciphertext   AES-256-GCM, IV = 0^96, AAD = header (82 bytes) || caller associated data
//!   82+n    16  tag          GCM tag
//! ```

use crate::error::OpenError;

/// The only version this crate writes.
pub const VERSION_1: u8 = 0x01;
/// Version 1's only algorithm.
pub const ALGORITHM_HKDF_SHA256_AES256GCM: u8 = 0x01;
/// Length of a key id.
pub const KEY_ID_LEN: usize = 16;
/// Length of the message nonce.
pub const NONCE_LEN: usize = 32;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of the header (everything before the ciphertext).
pub const HEADER_LEN: usize = 2 + KEY_ID_LEN + NONCE_LEN + COMMITMENT_LEN;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest plaintext sealed (64 MiB): far below GCM's 64 GiB bound, and large enough for any secret or
/// evaluated environment; larger input is refused before any work.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024 * 1024;

/// The id of the DEK that sealed an envelope (a DEK's UUID bytes in Sesame).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

/// The public part of an envelope, readable without a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u8,
    /// Algorithm id.
    pub algorithm: u8,
    /// The DEK that sealed it.
    pub key_id: KeyId,
    /// The message nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The key commitment.
    pub commitment: [u8; COMMITMENT_LEN],
    /// Length of the ciphertext (equal to the plaintext's).
    pub ciphertext_len: usize,
}

/// Reads an envelope's header, checking version, algorithm and length, without any key. Callers use the key id to
/// find the DEK before calling [`crate::open`].
pub fn parse_header(envelope: &[u8]) -> Result<Header, OpenError> {
    // Version first: a future version may have another layout, so nothing else is read until it is known.
    let (&version, rest) = envelope.split_first().ok_or(OpenError::Truncated)?;
    if version != VERSION_1 {
        return Err(OpenError::UnsupportedVersion(version));
    }
    let (&algorithm, rest) = rest.split_first().ok_or(OpenError::Truncated)?;
    if algorithm != ALGORITHM_HKDF_SHA256_AES256GCM {
        return Err(OpenError::UnsupportedAlgorithm(algorithm));
    }
    if envelope.len() < OVERHEAD {
        return Err(OpenError::Truncated);
    }
    if envelope.len() > MAX_PLAINTEXT_LEN + OVERHEAD {
        return Err(OpenError::TooLarge);
    }
    let (key_id, rest) = rest.split_at(KEY_ID_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (commitment, _) = rest.split_at(COMMITMENT_LEN);
    // The three `split_at`s above cannot panic: the length check guarantees OVERHEAD > HEADER_LEN bytes.
    let mut header = Header {
        version,
        algorithm,
        key_id: KeyId([0; KEY_ID_LEN]),
        nonce: [0; NONCE_LEN],
        commitment: [0; COMMITMENT_LEN],
        ciphertext_len: envelope.len() - OVERHEAD,
    };
    header.key_id.0.copy_from_slice(key_id);
    header.nonce.copy_from_slice(nonce);
    header.commitment.copy_from_slice(commitment);
    Ok(header)
}

/// Appends the header of a version-1 envelope.
pub(crate) fn write_header(out: &mut Vec<u8>, key_id: KeyId, nonce: &[u8; NONCE_LEN], commitment: &[u8; 32]) {
    out.push(VERSION_1);
    out.push(ALGORITHM_HKDF_SHA256_AES256GCM);
    out.extend_from_slice(&key_id.0);
    out.extend_from_slice(nonce);
    out.extend_from_slice(commitment);
}

/// The GCM associated data: the whole header (fixed length, so the concatenation is unambiguous) followed by the
/// caller's associated data.
pub(crate) fn gcm_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + aad.len());
    out.extend_from_slice(header);
    out.extend_from_slice(aad);
    out
}
