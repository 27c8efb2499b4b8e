//! Wire types of the stack API (`POST /api/stacks/{org}/{project}/{stack}/encrypt|decrypt|batch-…`), the calls the
//! Pulumi CLI makes. Rule: every plaintext (base64 included) is a [`SecretText`], or a [`SecretStr`] where the
//! single-value calls read it in place from the request body.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SecretStr, SecretText};

/// `POST …/encrypt` request: base64 (standard, padded) plaintext.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest<'a> {
    /// The plaintext, base64.
    #[serde(borrow)]
    pub plaintext: SecretStr<'a>,
}

/// `POST …/encrypt` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct EncryptResponse {
    /// The ciphertext, base64.
    pub ciphertext: String,
}

/// `POST …/decrypt` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptRequest<'a> {
    /// The ciphertext, base64.
    #[serde(borrow)]
    pub ciphertext: Cow<'a, str>,
}

/// `POST …/decrypt` response.
#[derive(Debug, Serialize, Deserialize)]
pub struct DecryptResponse {
    /// The plaintext, base64.
    pub plaintext: SecretText,
}

/// `POST …/batch-encrypt` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEncryptRequest {
    /// Plaintexts, base64.
    pub plaintexts: Vec<SecretText>,
}

/// `POST …/batch-encrypt` response: ciphertexts in request order.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchEncryptResponse {
    /// Ciphertexts, base64, in the order of the request.
    pub ciphertexts: Vec<String>,
}

/// `POST …/batch-decrypt` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchDecryptRequest {
    /// Ciphertexts, base64.
    pub ciphertexts: Vec<String>,
}

/// `POST …/batch-decrypt` response: each ciphertext (as sent) mapped to its plaintext.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchDecryptResponse {
    /// Base64 ciphertext → base64 plaintext.
    pub plaintexts: BTreeMap<String, SecretText>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_fields_are_secret_types() {
        // The fields holding plaintexts are of that type (this stops compiling if one goes back to `String`).
        let _: for<'a> fn(&'a EncryptRequest<'a>) -> &'a SecretStr<'a> = |r| &r.plaintext;
        let _: fn(&DecryptResponse) -> &SecretText = |r| &r.plaintext;
        let _: fn(&BatchEncryptRequest) -> &Vec<SecretText> = |r| &r.plaintexts;
        let _: fn(&BatchDecryptResponse) -> &BTreeMap<String, SecretText> = |r| &r.plaintexts;
    }

    #[test]
    fn debug_never_shows_a_plaintext() {
        let secret = "aHVudGVyMi1zZWNyZXQ="; // base64 of "hunter2-secret"
        let text = format!(r#"{{"plaintext": "{secret}"}}"#);
        let req: EncryptRequest<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(req.plaintext.expose(), secret);
        let batch: BatchEncryptRequest =
            serde_json::from_str(&format!(r#"{{"plaintexts": ["{secret}", "{secret}"]}}"#)).unwrap();
        let resp = DecryptResponse {
            plaintext: SecretText::new(secret.to_owned()),
        };
        let map = BatchDecryptResponse {
            plaintexts: [("Y3Q=".to_owned(), SecretText::new(secret.to_owned()))].into(),
        };
        for shown in [
            format!("{req:?}"),
            format!("{batch:?}"),
            format!("{resp:?}"),
            format!("{map:?}"),
        ] {
            assert!(!shown.contains(secret) && !shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
        // On the wire it is the plain string.
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            format!(r#"{{"plaintext":"{secret}"}}"#)
        );
    }
}
