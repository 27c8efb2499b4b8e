//! Vault Transit's pure half: the `vault:v<N>:` text form of ciphertexts, signatures and HMACs
//! ([`ciphertext`]); key types, a key's policy and the rules for changing it ([`policy`]); the cryptography of one
//! key version — AES-256-GCM and ChaCha20-Poly1305 with a caller-given nonce, HKDF derivation for `derived` keys,
//! HMAC, Ed25519 and ECDSA P-256 ([`crypto`]); and how a `batch_input` is read and answered ([`batch`]).
//!
//! Rule: no I/O, no clock, no randomness of its own — nonces and keys arrive as arguments. Every refusal is a
//! [`Refusal`] whose text is Vault's own, so a client written against Vault reads the same errors.

pub mod batch;
pub mod ciphertext;
pub mod crypto;
pub mod policy;

/// A request Transit refuses, with Vault's error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What Vault answers (`400` for the caller's mistakes).
    pub kind: RefusalKind,
    /// Vault's message.
    pub message: String,
}

/// How a refusal is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The caller's input or the key's policy refuses it: 400.
    Invalid,
    /// A named thing does not exist where Vault answers 404 (a key read).
    NotFound,
    /// The server failed: 500.
    Internal,
}

impl Refusal {
    /// A 400 with `message`.
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Invalid,
            message: message.into(),
        }
    }

    /// A 500 with `message` (never a secret).
    pub fn internal(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Internal,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Vault's error when the key an operation names does not exist.
pub const KEY_NOT_FOUND: &str = "encryption key not found";

/// Standard base64 as Go's `base64.StdEncoding.DecodeString` reads it, with Go's error text (`illegal base64 data at
/// input byte N`).
pub fn decode_b64(text: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, Refusal> {
    use base64::Engine;
    if let Ok(bytes) = sesame_envelope::b64::decode(text.as_bytes()) {
        return Ok(bytes);
    }
    // Refused: the `base64` crate, which accepts exactly the same texts, names where the text went wrong.
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| {
            let unfinished = text.len() - text.len() % 4;
            let at = match e {
                // Padding followed by more text: Go reads the padded quantum whole and names what follows it.
                base64::DecodeError::InvalidByte(_, b'=') if !text.len().is_multiple_of(4) => unfinished,
                base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => at,
                // Go names the start of the unfinished last quantum, or the first misplaced '='.
                base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
                    if !text.len().is_multiple_of(4) {
                        unfinished
                    } else {
                        text.find('=').unwrap_or(0)
                    }
                }
            };
            Refusal::invalid(format!("illegal base64 data at input byte {at}"))
        })
}

/// Standard padded base64.
pub fn encode_b64(bytes: &[u8]) -> String {
    sesame_envelope::b64::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_errors_name_the_byte_like_go() {
        assert_eq!(
            decode_b64("!!").unwrap_err().message,
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            decode_b64("aGk!").unwrap_err().message,
            "illegal base64 data at input byte 3"
        );
        assert_eq!(decode_b64("aGk=").unwrap().as_slice(), b"hi");
        // What OpenBao 2.7 answers for each (Go's encoding/base64).
        for (text, at) in [
            ("aGk", 0),
            ("aG=k", 2),
            ("a", 0),
            ("aGkx!", 4),
            ("aGVsbG8", 4),
            ("aGVsbG8==", 8),
        ] {
            assert_eq!(
                decode_b64(text).unwrap_err().message,
                format!("illegal base64 data at input byte {at}"),
                "{text}"
            );
        }
        assert_eq!(decode_b64("").unwrap().len(), 0);
    }
}
