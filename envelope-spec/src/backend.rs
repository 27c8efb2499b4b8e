//! Prepared keys and the two crypto backends: aws-lc-rs (the default) and, behind the `rustcrypto` feature, the
//! pure-Rust RustCrypto crates. Both produce identical bytes; the vectors run against both.
//!
//! Key schedule (SPEC.md §4), all HKDF-SHA256 (RFC 5869):
//!
//! * once per DEK: `PRK = HKDF-Extract(salt = "sesame-envelope/v1/extract", IKM = DEK)`, kept as a ready HMAC key;
//! * per message: `K = HKDF-Expand(PRK, "sesame/v1/key" || version || alg || nonce, 32)` and
//!   `C = HKDF-Expand(PRK, "sesame/v1/commit" || version || alg || nonce, 32)`.
//!
//! Each expand asks for one hash length, so HKDF-Expand is exactly one HMAC over `info || 0x01`; with the HMAC key
//! state precomputed once per DEK, a message costs two HMACs of one block each (four SHA-256 compressions) plus one
//! AES key schedule, and no per-message re-keying of HMAC. `tests` check these single-block expands against the
//! backend's own HKDF.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{OpenError, SealError};
use crate::format::{ALGORITHM_HKDF_SHA256_AES256GCM, KeyId, NONCE_LEN, TAG_LEN, VERSION_1};
use crate::plaintext::Plaintext;

/// HKDF-Extract salt: a fixed label, domain-separating Sesame envelope keys from any other use of a DEK.
const EXTRACT_SALT: &[u8] = b"sesame-envelope/v1/extract";
/// Expand label of the message key.
const INFO_KEY: &[u8] = b"sesame/v1/key";
/// Expand label of the key commitment.
const INFO_COMMIT: &[u8] = b"sesame/v1/commit";
/// The GCM IV. Constant, because every message key is used for exactly one message (it is derived from a fresh
/// 256-bit nonce), so a (key, IV) pair never repeats.
const GCM_IV: [u8; 12] = [0; 12];

/// Which crypto implementation a [`PreparedKey`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// aws-lc-rs: the default, fastest here, and with a FIPS mode.
    AwsLc,
    /// RustCrypto `aes-gcm`, `hmac`, `sha2`: pure Rust.
    #[cfg(feature = "rustcrypto")]
    RustCrypto,
}

enum Inner {
    // Boxed: the HMAC state is large, and keeps the enum small for the RustCrypto variant.
    AwsLc(Box<aws_lc_rs::hmac::Key>),
    #[cfg(feature = "rustcrypto")]
    RustCrypto(Zeroizing<[u8; 32]>),
}

/// A DEK made ready to seal and open: the HKDF extract step is done once here, not per message.
///
/// Its `Debug` shows only the key id. The extracted key is zeroized on drop (the aws-lc-rs HMAC state is cleansed
/// by aws-lc when freed).
pub struct PreparedKey {
    key_id: KeyId,
    inner: Inner,
}

/// The per-message outputs of the key schedule.
pub(crate) struct Derived {
    pub(crate) message_key: Zeroizing<[u8; 32]>,
    pub(crate) commitment: [u8; 32],
}

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedKey")
            .field("key_id", &self.key_id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// HKDF-Extract with the fixed salt: `HMAC-SHA256(salt, dek)`.
fn extract_aws_lc(dek: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    use aws_lc_rs::hmac;
    let salt = hmac::Key::new(hmac::HMAC_SHA256, EXTRACT_SALT);
    let tag = hmac::sign(&salt, dek);
    let mut prk = Zeroizing::new([0u8; 32]);
    prk.copy_from_slice(tag.as_ref());
    prk
}

impl PreparedKey {
    /// Prepares a 256-bit DEK with the default backend.
    pub fn new(key_id: KeyId, key: &[u8; 32]) -> PreparedKey {
        Self::new_with(Backend::AwsLc, key_id, key)
    }

    /// Prepares a 256-bit DEK with the given backend.
    pub fn new_with(backend: Backend, key_id: KeyId, key: &[u8; 32]) -> PreparedKey {
        let prk = extract_aws_lc_or_rustcrypto(backend, key);
        let inner = match backend {
            Backend::AwsLc => Inner::AwsLc(Box::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &prk[..],
            ))),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => Inner::RustCrypto(prk),
        };
        PreparedKey { key_id, inner }
    }

    /// The key id written into every envelope this key seals.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// One single-block HKDF-Expand: `HMAC(PRK, label || version || alg || nonce || 0x01)`.
    fn expand(&self, label: &[u8], nonce: &[u8; NONCE_LEN]) -> Zeroizing<[u8; 32]> {
        let suffix = [VERSION_1, ALGORITHM_HKDF_SHA256_AES256GCM];
        let mut out = Zeroizing::new([0u8; 32]);
        match &self.inner {
            Inner::AwsLc(key) => {
                let mut ctx = aws_lc_rs::hmac::Context::with_key(key);
                ctx.update(label);
                ctx.update(&suffix);
                ctx.update(nonce);
                ctx.update(&[0x01]);
                out.copy_from_slice(ctx.sign().as_ref());
            }
            #[cfg(feature = "rustcrypto")]
            Inner::RustCrypto(prk) => {
                use hmac::Mac;
                // A 32-byte key is always accepted by HMAC.
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&prk[..]).expect("HMAC takes any key length");
                mac.update(label);
                mac.update(&suffix);
                mac.update(nonce);
                mac.update(&[0x01]);
                out.copy_from_slice(&mac.finalize().into_bytes());
            }
        }
        out
    }

    /// The message key and key commitment of one message.
    pub(crate) fn derive(&self, nonce: &[u8; NONCE_LEN]) -> Derived {
        let commitment = self.expand(INFO_COMMIT, nonce);
        Derived {
            message_key: self.expand(INFO_KEY, nonce),
            commitment: *commitment,
        }
    }

    /// Encrypts `buf` in place under the message key; returns the tag.
    pub(crate) fn gcm_seal(
        &self,
        message_key: &[u8; 32],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let mut tag = [0u8; TAG_LEN];
        match &self.inner {
            Inner::AwsLc(_) => {
                use aws_lc_rs::aead;
                let key = aead::UnboundKey::new(&aead::AES_256_GCM, message_key).map_err(|_| SealError::Backend)?;
                let key = aead::LessSafeKey::new(key);
                let t = key
                    .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(GCM_IV), aead::Aad::from(aad), buf)
                    .map_err(|_| SealError::Backend)?;
                tag.copy_from_slice(t.as_ref());
            }
            #[cfg(feature = "rustcrypto")]
            Inner::RustCrypto(_) => {
                use aes_gcm::aead::{AeadInPlace, KeyInit};
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(message_key).map_err(|_| SealError::Backend)?;
                let t = cipher
                    .encrypt_in_place_detached(&GCM_IV.into(), aad, buf)
                    .map_err(|_| SealError::Backend)?;
                tag.copy_from_slice(&t);
            }
        }
        Ok(tag)
    }

    /// Decrypts `ciphertext` with its `tag` under the message key.
    pub(crate) fn gcm_open(
        &self,
        message_key: &[u8; 32],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Result<Plaintext, OpenError> {
        match &self.inner {
            Inner::AwsLc(_) => {
                use aws_lc_rs::aead;
                let key =
                    aead::UnboundKey::new(&aead::AES_256_GCM, message_key).map_err(|_| OpenError::Undecryptable)?;
                let key = aead::LessSafeKey::new(key);
                // Decrypt straight from the envelope into the output buffer: no intermediate copy.
                let mut out = Plaintext::zeroed(ciphertext.len());
                key.open_separate_gather(
                    aead::Nonce::assume_unique_for_key(GCM_IV),
                    aead::Aad::from(aad),
                    ciphertext,
                    tag,
                    out.as_mut_slice(),
                )
                .map_err(|_| OpenError::Undecryptable)?;
                Ok(out)
            }
            #[cfg(feature = "rustcrypto")]
            Inner::RustCrypto(_) => {
                use aes_gcm::aead::{AeadInPlace, KeyInit};
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(message_key).map_err(|_| OpenError::Undecryptable)?;
                let mut buf = Plaintext::zeroed(ciphertext.len());
                buf.as_mut_slice().copy_from_slice(ciphertext);
                let tag = aes_gcm::Tag::from_slice(tag);
                cipher
                    .decrypt_in_place_detached(&GCM_IV.into(), aad, buf.as_mut_slice(), tag)
                    .map_err(|_| OpenError::Undecryptable)?;
                Ok(buf)
            }
        }
    }
}

/// HKDF-Extract on the chosen backend.
fn extract_aws_lc_or_rustcrypto(backend: Backend, dek: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    match backend {
        Backend::AwsLc => extract_aws_lc(dek),
        #[cfg(feature = "rustcrypto")]
        Backend::RustCrypto => {
            let (prk, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(EXTRACT_SALT), dek);
            let mut out = Zeroizing::new([0u8; 32]);
            out.copy_from_slice(&prk);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-assembled single-block expands equal the backend's own HKDF (RFC 5869) over the same inputs.
    #[test]
    fn derivation_is_standard_hkdf() {
        use aws_lc_rs::hkdf;
        let dek = [0x42u8; 32];
        let nonce = [0x07u8; NONCE_LEN];
        let prepared = PreparedKey::new(KeyId([1; 16]), &dek);
        let derived = prepared.derive(&nonce);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, EXTRACT_SALT).extract(&dek);
        for (label, got) in [
            (INFO_KEY, &derived.message_key[..]),
            (INFO_COMMIT, &derived.commitment[..]),
        ] {
            let info: [&[u8]; 3] = [label, &[VERSION_1, ALGORITHM_HKDF_SHA256_AES256GCM], &nonce];
            let okm = prk.expand(&info, hkdf::HKDF_SHA256).unwrap();
            let mut want = [0u8; 32];
            okm.fill(&mut want).unwrap();
            assert_eq!(got, want);
        }
        assert_ne!(&derived.message_key[..], &derived.commitment[..]);
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", PreparedKey::new(KeyId([9; 16]), &[0xAB; 32]));
        assert!(shown.contains("redacted") && !shown.contains("171"), "{shown}");
    }
}
