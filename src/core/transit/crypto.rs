//! The cryptography of one key version, with Vault's byte layouts: AEAD values are `nonce (12) ‖ ciphertext ‖ tag
//! (16)`; a derived key is HKDF-SHA256 of the version's key with no salt and the request's context as info; HMACs are
//! over the version's separate HMAC key; Ed25519 signs the input, ECDSA P-256 signs its SHA-256 (ASN.1 DER).
//!
//! Pure: nonces and key material are arguments (the edge draws them from the system's generator).

use aws_lc_rs::{aead, hkdf, hmac, signature};
use zeroize::Zeroizing;

use super::Refusal;
use super::policy::KeyType;

/// Nonce length of both AEADs.
pub const NONCE_LEN: usize = 12;
/// Length of a symmetric key and of an HMAC key.
pub const KEY_LEN: usize = 32;

/// One version's secret material: its HMAC key and its key (32 bytes, or a PKCS#8 document for signing keys).
/// Stored sealed as `hmac_key ‖ key`.
pub struct Material {
    /// The HMAC key.
    pub hmac_key: Zeroizing<Vec<u8>>,
    /// The key.
    pub key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Material([redacted])")
    }
}

impl Material {
    /// The stored form, `hmac_key ‖ key`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.hmac_key.len() + self.key.len()));
        out.extend_from_slice(&self.hmac_key);
        out.extend_from_slice(&self.key);
        out
    }

    /// Reads the stored form back.
    pub fn from_bytes(bytes: &[u8]) -> Option<Material> {
        if bytes.len() <= KEY_LEN {
            return None;
        }
        let (h, k) = bytes.split_at(KEY_LEN);
        Some(Material {
            hmac_key: Zeroizing::new(h.to_vec()),
            key: Zeroizing::new(k.to_vec()),
        })
    }
}

fn algorithm(t: KeyType) -> Result<&'static aead::Algorithm, Refusal> {
    match t {
        KeyType::Aes256Gcm96 => Ok(&aead::AES_256_GCM),
        KeyType::Chacha20Poly1305 => Ok(&aead::CHACHA20_POLY1305),
        other => Err(Refusal::invalid(format!(
            "message encryption not supported for key type {}",
            other.as_str()
        ))),
    }
}

fn auth_failed(t: KeyType) -> Refusal {
    Refusal::invalid(match t {
        KeyType::Chacha20Poly1305 => "chacha20poly1305: message authentication failed",
        _ => "cipher: message authentication failed",
    })
}

/// The key an operation uses: the version's key, or for a derived key HKDF-SHA256(key, salt none, info context).
pub fn operation_key(key: &[u8], derived: bool, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    if !derived {
        return Ok(Zeroizing::new(key.to_vec()));
    }
    if context.is_empty() {
        return Err(Refusal::invalid(
            "missing 'context' for key derivation; the key was created using a derived key, which means additional, \
             per-request information must be included in order to perform operations with the key",
        ));
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(key);
    let info = [context];
    let okm = prk
        .expand(&info, hkdf::HKDF_SHA256)
        .map_err(|_| Refusal::internal("key derivation failed"))?;
    let mut out = Zeroizing::new(vec![0u8; KEY_LEN]);
    okm.fill(&mut out)
        .map_err(|_| Refusal::internal("key derivation failed"))?;
    Ok(out)
}

/// Encrypts `plaintext` under `key` with `nonce`: `nonce ‖ ciphertext ‖ tag`.
pub fn seal(t: KeyType, key: &[u8], nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Refusal> {
    let alg = algorithm(t)?;
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key).map_err(|_| Refusal::internal("invalid key"))?);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + alg.tag_len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| Refusal::internal("encryption failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Decrypts `nonce ‖ ciphertext ‖ tag` under `key`, with Vault's messages on failure.
pub fn open(t: KeyType, key: &[u8], aad: &[u8], value: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    let alg = algorithm(t)?;
    if value.len() < NONCE_LEN {
        return Err(Refusal::invalid("invalid ciphertext length"));
    }
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key).map_err(|_| Refusal::internal("invalid key"))?);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&value[..NONCE_LEN]);
    let mut buf = Zeroizing::new(value[NONCE_LEN..].to_vec());
    let len = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| auth_failed(t))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Unwraps an imported key as Vault's BYOK flow wraps it: the first `rsa_len` bytes are an ephemeral AES-256 key
/// encrypted to the wrapping key (RSA-OAEP, SHA-256, MGF1-SHA-256), which the caller has decrypted into
/// `ephemeral`; the rest is the key wrapped under it with AES key wrap with padding (RFC 5649).
pub fn unwrap_kwp(ephemeral: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
    let kek = AesKek::new(&AES_256, ephemeral).map_err(|_| Refusal::invalid("error unwrapping the imported key"))?;
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let len = kek
        .unwrap_with_padding(wrapped, &mut out)
        .map_err(|_| Refusal::invalid("error unwrapping the imported key"))?
        .len();
    out.truncate(len);
    Ok(out)
}

/// The HMAC algorithms served, by Vault's names.
pub fn hmac_algorithm(name: &str) -> Result<hmac::Algorithm, Refusal> {
    match name {
        "sha2-256" | "sha256" => Ok(hmac::HMAC_SHA256),
        "sha2-224" | "sha224" => Ok(hmac::HMAC_SHA224),
        "sha2-384" | "sha384" => Ok(hmac::HMAC_SHA384),
        "sha2-512" | "sha512" => Ok(hmac::HMAC_SHA512),
        other => Err(Refusal::invalid(format!("unsupported algorithm {other}"))),
    }
}

/// HMAC of `input` under `key`.
pub fn hmac(alg: hmac::Algorithm, key: &[u8], input: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(alg, key), input).as_ref().to_vec()
}

/// Whether `mac` is the HMAC of `input` under `key` (constant time).
pub fn hmac_verify(alg: hmac::Algorithm, key: &[u8], input: &[u8], mac: &[u8]) -> bool {
    hmac::verify(&hmac::Key::new(alg, key), input, mac).is_ok()
}

/// Signs `input` with the PKCS#8 private key `pkcs8` of type `t`.
pub fn sign(
    t: KeyType,
    pkcs8: &[u8],
    input: &[u8],
    rng: &dyn aws_lc_rs::rand::SecureRandom,
) -> Result<Vec<u8>, Refusal> {
    match t {
        KeyType::Ed25519 => {
            let pair = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                .map_err(|_| Refusal::internal("invalid signing key"))?;
            Ok(pair.sign(input).as_ref().to_vec())
        }
        KeyType::EcdsaP256 => {
            let pair = signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
                .map_err(|_| Refusal::internal("invalid signing key"))?;
            pair.sign(rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Refusal::internal("signing failed"))
        }
        other => Err(Refusal::invalid(format!(
            "key type {} does not support signing",
            other.as_str()
        ))),
    }
}

/// Whether `sig` is a signature of `input` by `public_key` (raw Ed25519 key, or an uncompressed P-256 point).
pub fn verify(t: KeyType, public_key: &[u8], input: &[u8], sig: &[u8]) -> Result<bool, Refusal> {
    let alg: &dyn signature::VerificationAlgorithm = match t {
        KeyType::Ed25519 => &signature::ED25519,
        KeyType::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
        other => {
            return Err(Refusal::invalid(format!(
                "key type {} does not support verification",
                other.as_str()
            )));
        }
    };
    Ok(signature::UnparsedPublicKey::new(alg, public_key)
        .verify(input, sig)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aead_values_round_trip_and_fail_with_vaults_messages() {
        let key = [7u8; 32];
        for t in [KeyType::Aes256Gcm96, KeyType::Chacha20Poly1305] {
            let v = seal(t, &key, [1u8; 12], b"ad", b"hello").unwrap();
            assert_eq!(v.len(), 12 + 5 + 16);
            assert_eq!(&v[..12], &[1u8; 12]);
            assert_eq!(open(t, &key, b"ad", &v).unwrap().as_slice(), b"hello");
            assert!(
                open(t, &key, b"", &v)
                    .unwrap_err()
                    .message
                    .contains("message authentication failed")
            );
            assert_eq!(
                open(t, &key, b"", &v[..5]).unwrap_err().message,
                "invalid ciphertext length"
            );
            let mut bad = v.clone();
            bad[20] ^= 1;
            assert!(open(t, &key, b"ad", &bad).is_err());
        }
        assert!(seal(KeyType::Ed25519, &key, [0; 12], b"", b"x").is_err());
    }

    /// AES-256-GCM of the NIST test vector (key and nonce all zero, empty plaintext): Vault's layout around it.
    #[test]
    fn aes_gcm_matches_a_known_answer() {
        let v = seal(KeyType::Aes256Gcm96, &[0u8; 32], [0u8; 12], b"", b"").unwrap();
        let tag: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&"530f8afbc74536b9a963b4f1c4cb738b"[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(&v[12..], tag.as_slice());
    }

    #[test]
    fn derivation_needs_a_context_and_differs_per_context() {
        let k = [9u8; 32];
        assert_eq!(operation_key(&k, false, b"").unwrap().as_slice(), &k);
        assert!(
            operation_key(&k, true, b"")
                .unwrap_err()
                .message
                .starts_with("missing 'context'")
        );
        let a = operation_key(&k, true, b"a").unwrap();
        let b = operation_key(&k, true, b"b").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn material_round_trips() {
        let m = Material {
            hmac_key: Zeroizing::new(vec![1; 32]),
            key: Zeroizing::new(vec![2; 32]),
        };
        let back = Material::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(
            (back.hmac_key.as_slice(), back.key.as_slice()),
            (&[1u8; 32][..], &[2u8; 32][..])
        );
        assert!(Material::from_bytes(&[0; 32]).is_none());
        assert_eq!(format!("{m:?}"), "Material([redacted])");
    }

    #[test]
    fn kwp_round_trips() {
        use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
        let kek = AesKek::new(&AES_256, &[3u8; 32]).unwrap();
        let mut out = vec![0u8; 64];
        let wrapped = kek.wrap_with_padding(&[9u8; 32], &mut out).unwrap().to_vec();
        assert_eq!(unwrap_kwp(&[3u8; 32], &wrapped).unwrap().as_slice(), &[9u8; 32]);
        assert!(unwrap_kwp(&[4u8; 32], &wrapped).is_err());
        assert!(unwrap_kwp(&[3u8; 5], &wrapped).is_err());
    }

    #[test]
    fn hmacs_verify() {
        let alg = hmac_algorithm("sha2-256").unwrap();
        let mac = hmac(alg, b"k", b"x");
        assert!(hmac_verify(alg, b"k", b"x", &mac));
        assert!(!hmac_verify(alg, b"k", b"y", &mac));
        assert!(hmac_algorithm("md5").is_err());
    }
}
