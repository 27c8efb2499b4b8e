//! A transit key's type and policy, and Vault's rules for choosing versions and changing the policy.
//!
//! The policy is stored as JSON (serde) beside the key's latest version, which is a column of its own so that a
//! rotation can be a conditional update.

use serde::{Deserialize, Serialize};

use super::Refusal;

/// The key types served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// AES-256 in GCM with a 96-bit random nonce (Vault's default).
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    /// ChaCha20-Poly1305 with a 96-bit random nonce.
    #[serde(rename = "chacha20-poly1305")]
    Chacha20Poly1305,
    /// Ed25519 signatures.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ECDSA over P-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA-4096: only the mount's wrapping key for imports (not a type callers can make).
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    /// Every type.
    pub const ALL: [KeyType; 4] = [
        KeyType::Aes256Gcm96,
        KeyType::Chacha20Poly1305,
        KeyType::Ed25519,
        KeyType::EcdsaP256,
    ];

    /// Vault's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::Chacha20Poly1305 => "chacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// A type by Vault's name, or Vault's refusal.
    pub fn parse(name: &str) -> Result<KeyType, Refusal> {
        KeyType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| Refusal::invalid(format!("unknown key type {name}")))
    }

    /// Whether it encrypts and decrypts.
    pub fn supports_encryption(self) -> bool {
        matches!(self, KeyType::Aes256Gcm96 | KeyType::Chacha20Poly1305)
    }

    /// Whether it signs and verifies.
    pub fn supports_signing(self) -> bool {
        matches!(self, KeyType::Ed25519 | KeyType::EcdsaP256)
    }

    /// Whether it may be `derived`.
    pub fn supports_derivation(self) -> bool {
        matches!(
            self,
            KeyType::Aes256Gcm96 | KeyType::Chacha20Poly1305 | KeyType::Ed25519
        )
    }

    /// Whether it is asymmetric (its versions have a public key).
    pub fn is_asymmetric(self) -> bool {
        self.supports_signing()
    }
}

/// A key's policy (everything but its versions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicy {
    /// The key's type.
    pub key_type: KeyType,
    /// Each operation derives its key from the version's key and the request's `context` (HKDF-SHA256).
    #[serde(default)]
    pub derived: bool,
    /// The key may be exported (never unset once set).
    #[serde(default)]
    pub exportable: bool,
    /// The key may be deleted.
    #[serde(default)]
    pub deletion_allowed: bool,
    /// The oldest version that decrypts, verifies and rewraps (at least 1).
    pub min_decryption_version: u32,
    /// The oldest version that encrypts (0: any).
    #[serde(default)]
    pub min_encryption_version: u32,
    /// Rotate when the latest version is this old, seconds (0: never).
    #[serde(default)]
    pub auto_rotate_period_s: u64,
    /// The key material was imported.
    #[serde(default)]
    pub imported: bool,
}

impl KeyPolicy {
    /// A new key's policy.
    pub fn new(key_type: KeyType) -> KeyPolicy {
        KeyPolicy {
            key_type,
            derived: false,
            exportable: false,
            deletion_allowed: false,
            min_decryption_version: 1,
            min_encryption_version: 0,
            auto_rotate_period_s: 0,
            imported: false,
        }
    }

    /// The version an encryption (or signature, HMAC) with `requested` (0: the latest) uses, of a key at `latest`.
    pub fn encryption_version(&self, requested: i64, latest: u32) -> Result<u32, Refusal> {
        if requested < 0 {
            return Err(Refusal::invalid("requested version for encryption is negative"));
        }
        if requested == 0 {
            return Ok(latest);
        }
        if requested > i64::from(latest) {
            return Err(Refusal::invalid(
                "requested version for encryption is higher than the latest key version",
            ));
        }
        let v = u32::try_from(requested).unwrap_or(u32::MAX);
        if v < self.min_encryption_version {
            return Err(Refusal::invalid(
                "requested version for encryption is less than the minimum encryption key version",
            ));
        }
        Ok(v)
    }
}

/// The shortest `auto_rotate_period` other than 0 (Vault's limit).
pub const MIN_AUTO_ROTATE_S: u64 = 3600;

/// A `config` request: each field present changes that setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    pub min_decryption_version: Option<i64>,
    pub min_encryption_version: Option<i64>,
    pub deletion_allowed: Option<bool>,
    pub exportable: Option<bool>,
    pub auto_rotate_period_s: Option<i64>,
}

impl ConfigChange {
    /// The policy after this change, of a key at `latest`, or Vault's refusal (nothing changes then). Also
    /// returns Vault's warnings.
    pub fn apply(&self, policy: &KeyPolicy, latest: u32) -> Result<(KeyPolicy, Vec<String>), Refusal> {
        let mut p = policy.clone();
        let mut warnings = Vec::new();
        if let Some(v) = self.min_decryption_version {
            if v < 0 {
                return Err(Refusal::invalid("min decryption version cannot be negative"));
            }
            let v = if v == 0 {
                warnings.push("since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1".to_owned());
                1
            } else {
                v
            };
            if v != i64::from(p.min_decryption_version) {
                if v > i64::from(latest) {
                    return Err(Refusal::invalid(format!(
                        "cannot set min decryption version of {v}, latest key version is {latest}"
                    )));
                }
                p.min_decryption_version = u32::try_from(v).unwrap_or(u32::MAX);
            }
        }
        if let Some(v) = self.min_encryption_version {
            if v < 0 {
                return Err(Refusal::invalid("min encryption version cannot be negative"));
            }
            if v != i64::from(p.min_encryption_version) {
                if v > i64::from(latest) {
                    return Err(Refusal::invalid(format!(
                        "cannot set min encryption version of {v}, latest key version is {latest}"
                    )));
                }
                p.min_encryption_version = u32::try_from(v).unwrap_or(u32::MAX);
            }
        }
        if p.min_decryption_version > 0
            && p.min_encryption_version > 0
            && p.min_encryption_version < p.min_decryption_version
        {
            return Err(Refusal::invalid(format!(
                "cannot set min encryption/decryption values; min encryption version of {} must be greater than or \
                 equal to min decryption version of {}",
                p.min_encryption_version, p.min_decryption_version
            )));
        }
        if let Some(d) = self.deletion_allowed {
            p.deletion_allowed = d;
        }
        if let Some(e) = self.exportable {
            if p.exportable && !e {
                return Err(Refusal::invalid("exportable key setting cannot be disabled"));
            }
            p.exportable = e;
        }
        if let Some(s) = self.auto_rotate_period_s {
            if s != 0 && s < MIN_AUTO_ROTATE_S as i64 {
                return Err(Refusal::invalid(
                    "auto rotate period must be 0 to disable or at least an hour",
                ));
            }
            p.auto_rotate_period_s = s as u64;
        }
        Ok((p, warnings))
    }
}

/// Reads a duration as Vault does: whole seconds as a number or numeric string, or Go-style `1h30m`, `90s`, `2d`.
pub fn parse_duration_s(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: i64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
        saw_unit = true;
    }
    (num.is_empty() && saw_unit).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_by_vaults_names() {
        for t in KeyType::ALL {
            assert_eq!(KeyType::parse(t.as_str()), Ok(t));
        }
        assert_eq!(KeyType::parse("foo").unwrap_err().message, "unknown key type foo");
        assert!(KeyType::Aes256Gcm96.supports_encryption() && !KeyType::Ed25519.supports_encryption());
        assert!(!KeyType::EcdsaP256.supports_derivation());
    }

    #[test]
    fn encryption_versions_follow_vault() {
        let mut p = KeyPolicy::new(KeyType::Aes256Gcm96);
        assert_eq!(p.encryption_version(0, 3), Ok(3));
        assert_eq!(p.encryption_version(2, 3), Ok(2));
        assert!(
            p.encryption_version(4, 3)
                .unwrap_err()
                .message
                .contains("higher than the latest")
        );
        assert!(p.encryption_version(-1, 3).unwrap_err().message.contains("negative"));
        p.min_encryption_version = 3;
        assert!(
            p.encryption_version(2, 3)
                .unwrap_err()
                .message
                .contains("less than the minimum")
        );
    }

    #[test]
    fn config_changes_are_checked_like_vault() {
        let p = KeyPolicy::new(KeyType::Aes256Gcm96);
        let change = |c: ConfigChange| c.apply(&p, 2);
        let (q, _) = change(ConfigChange {
            min_decryption_version: Some(2),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.min_decryption_version, 2);
        assert_eq!(
            change(ConfigChange {
                min_decryption_version: Some(5),
                ..Default::default()
            })
            .unwrap_err()
            .message,
            "cannot set min decryption version of 5, latest key version is 2"
        );
        let (q2, _) = change(ConfigChange {
            min_decryption_version: Some(2),
            ..Default::default()
        })
        .unwrap();
        let e = ConfigChange {
            min_encryption_version: Some(1),
            ..Default::default()
        }
        .apply(&q2, 2)
        .unwrap_err();
        assert!(
            e.message.starts_with("cannot set min encryption/decryption values"),
            "{e}"
        );
        let (x, _) = change(ConfigChange {
            exportable: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert!(
            ConfigChange {
                exportable: Some(false),
                ..Default::default()
            }
            .apply(&x, 2)
            .is_err()
        );
        assert!(
            change(ConfigChange {
                auto_rotate_period_s: Some(60),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn durations_read_like_vault() {
        assert_eq!(parse_duration_s("3600"), Some(3600));
        assert_eq!(parse_duration_s("1h"), Some(3600));
        assert_eq!(parse_duration_s("1h30m"), Some(5400));
        assert_eq!(parse_duration_s("2d"), Some(172_800));
        assert_eq!(parse_duration_s("h"), None);
        assert_eq!(parse_duration_s("1x"), None);
        assert_eq!(parse_duration_s("5m3"), None);
    }
}
