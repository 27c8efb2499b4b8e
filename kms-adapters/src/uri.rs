//! KEK URIs, parsed once (DESIGN.md §3): `local://NAME`, `passphrase://[NAME]`, and the cloud and HSM schemes
//! `awskms://`, `azurekeyvault://`, `gcpkms://`, `pkcs11:` (RFC 7512). A URI never carries a secret: one with a
//! `pin-value` attribute is refused.

use std::fmt;
use std::str::FromStr;

use crate::error::KmsError;

/// A parsed KEK URI. Its text form is canonical and safe to store and log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KekUri {
    text: String,
    scheme_len: usize,
}

impl KekUri {
    /// The scheme (`local`, `passphrase`, `awskms`, `azurekeyvault`, `gcpkms`, `pkcs11`).
    pub fn scheme(&self) -> &str {
        &self.text[..self.scheme_len]
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What follows `scheme://` (or `scheme:` for `pkcs11`).
    pub fn rest(&self) -> &str {
        let after = &self.text[self.scheme_len + 1..];
        after.strip_prefix("//").unwrap_or(after)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl FromStr for KekUri {
    type Err = KmsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| KmsError::InvalidUri {
            reason: reason.to_owned(),
        };
        if s.to_ascii_lowercase().contains("pin-value") {
            return Err(invalid(
                "the URI carries a PIN (pin-value); secrets never go in a KEK URI: set SESAME_PKCS11_PIN or use \
                 pin-source=file:PATH",
            ));
        }
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected SCHEME://…, e.g. local://default"))?;
        let scheme_lower = scheme.to_ascii_lowercase();
        match scheme_lower.as_str() {
            "local" => {
                let name = rest
                    .strip_prefix("//")
                    .ok_or_else(|| invalid("expected local://NAME"))?;
                if !valid_name(name) {
                    return Err(invalid(
                        "local://NAME needs a name of 1-64 characters from [A-Za-z0-9._-], not starting with '.'",
                    ));
                }
            }
            "passphrase" => {
                let name = rest
                    .strip_prefix("//")
                    .ok_or_else(|| invalid("expected passphrase:// or passphrase://NAME"))?;
                if !name.is_empty() && !valid_name(name) {
                    return Err(invalid("passphrase://NAME needs a name from [A-Za-z0-9._-]"));
                }
            }
            "awskms" | "azurekeyvault" | "gcpkms" => {
                if rest.strip_prefix("//").is_none_or(str::is_empty) {
                    return Err(invalid(&format!("expected {scheme_lower}://KEY…")));
                }
            }
            "pkcs11" => {
                if rest.is_empty() {
                    return Err(invalid("expected pkcs11:token=…;object=…"));
                }
            }
            _ => {
                return Err(invalid(&format!(
                    "unknown scheme {scheme:?}: use local://, passphrase://, awskms://, azurekeyvault://, gcpkms:// \
                     or pkcs11:"
                )));
            }
        }
        Ok(KekUri {
            text: format!("{scheme_lower}:{rest}"),
            scheme_len: scheme_lower.len(),
        })
    }
}

impl fmt::Display for KekUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for KekUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekUri({})", self.text)
    }
}
