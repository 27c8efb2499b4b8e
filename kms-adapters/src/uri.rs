//! KEK URIs, parsed once (DESIGN.md §3): `local://NAME`, `passphrase://[NAME]`, and the cloud and HSM schemes
//! `awskms://`, `azurekeyvault://`, `gcpkms://`, `pkcs11:` (RFC 7512). A URI never carries a secret: one with a
//! `pin-value` attribute is refused.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
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
            "gcpkms" => {
                let rest = rest
                    .strip_prefix("//")
                    .ok_or_else(|| invalid("expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K"))?;
                GcpKeyRef::parse(rest).map_err(|reason| invalid(&reason))?;
            }
            "awskms" | "azurekeyvault" => {
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

/// The parts of a `gcpkms://` URI: the CryptoKey's resource name, the version it pins (if any), and a test
/// endpoint. Checked when any `gcpkms://` URI is parsed, so a build without the `gcp` feature still refuses a
/// malformed one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "gcp"), allow(dead_code))]
pub(crate) struct GcpKeyRef {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub key_name: String,
    /// `…/cryptoKeyVersions/N` when the URI pins a version.
    pub version_name: Option<String>,
    /// `endpoint=` (a test server), as given.
    pub endpoint: Option<String>,
}

impl GcpKeyRef {
    /// Parses what follows `gcpkms://`.
    pub(crate) fn parse(rest: &str) -> Result<GcpKeyRef, String> {
        const SHAPE: &str = "expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]";
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let parts: Vec<&str> = path.split('/').collect();
        let labels = ["projects", "locations", "keyRings", "cryptoKeys", "cryptoKeyVersions"];
        if !matches!(parts.len(), 8 | 10) || parts.chunks(2).zip(labels).any(|(pair, label)| pair[0] != label) {
            return Err(SHAPE.to_owned());
        }
        // Project ids may be domain-scoped (`example.com:p`); locations, key rings and keys are [A-Za-z0-9_-].
        let id_ok = |id: &str, extra: &[u8]| {
            !id.is_empty()
                && id.len() <= 100
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') || extra.contains(&b))
        };
        if !id_ok(parts[1], b".:") || !parts[3..8].iter().step_by(2).all(|id| id_ok(id, b"")) {
            return Err(format!("{SHAPE}, with ids from [A-Za-z0-9_-]"));
        }
        if parts.len() == 10 && (parts[9].is_empty() || !parts[9].bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("{SHAPE}: the version N is a number"));
        }
        let mut endpoint = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", e)) if endpoint.is_none() => {
                    check_gcp_endpoint(e)?;
                    endpoint = Some(e.to_owned());
                }
                _ => {
                    return Err(format!(
                        "unknown or repeated parameter {pair:?} (gcpkms:// takes only endpoint=)"
                    ));
                }
            }
        }
        Ok(GcpKeyRef {
            key_name: parts[..8].join("/"),
            version_name: (parts.len() == 10).then(|| path.to_owned()),
            endpoint,
        })
    }
}

/// An `endpoint=` is `https://HOST[:PORT]`, or plain `http://` to a loopback address only (a test server): bearer
/// tokens never travel over plain HTTP.
fn check_gcp_endpoint(e: &str) -> Result<(), String> {
    let (scheme, after) = e
        .split_once("://")
        .ok_or_else(|| format!("endpoint={e:?} is not http(s)://HOST[:PORT]"))?;
    let authority = after.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!("endpoint={e:?} is not http(s)://HOST[:PORT]"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "127.0.0.1" | "::1" | "localhost") => Ok(()),
        "http" => Err(format!(
            "endpoint={e:?}: plain http:// is allowed to a loopback address only (a test server)"
        )),
        _ => Err(format!("endpoint={e:?} is not http(s)://HOST[:PORT]")),
    }
}

/// The parts of a `pkcs11:` URI Sesame uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label.
    pub token: String,
    /// Key label (`object`).
    pub object: String,
    /// The PKCS#11 module to load.
    pub module_path: PathBuf,
    /// A file holding the PIN, if the URI names one.
    pub pin_file: Option<PathBuf>,
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Pkcs11Uri {
    /// Reads the attributes of a parsed `pkcs11:` URI.
    pub fn parse(uri: &KekUri) -> Result<Pkcs11Uri, KmsError> {
        let invalid = |reason: &str| KmsError::InvalidUri {
            reason: format!("{uri}: {reason}"),
        };
        let (path, query) = uri.rest().split_once('?').unwrap_or((uri.rest(), ""));
        let mut attrs: HashMap<&str, String> = HashMap::new();
        for part in path.split(';').chain(query.split('&')).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| invalid("attributes must be name=value"))?;
            let v = percent_decode(v).ok_or_else(|| invalid("bad percent-encoding"))?;
            // One meaning per attribute: a repeated one could mean one thing to a check and another to the loader.
            if attrs.insert(k, v).is_some() {
                return Err(invalid(&format!("the attribute {k:?} is repeated")));
            }
        }
        let token = attrs.remove("token").ok_or_else(|| invalid("missing token=LABEL"))?;
        let object = attrs
            .remove("object")
            .ok_or_else(|| invalid("missing object=KEY-LABEL"))?;
        let module_path = attrs
            .remove("module-path")
            .map(PathBuf::from)
            .ok_or_else(|| invalid("missing module-path=/path/to/pkcs11-module.so"))?;
        let pin_file = match attrs.remove("pin-source") {
            Some(src) => Some(PathBuf::from(
                src.strip_prefix("file:")
                    .ok_or_else(|| invalid("pin-source must be file:PATH"))?,
            )),
            None => None,
        };
        Ok(Pkcs11Uri {
            token,
            object,
            module_path,
            pin_file,
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
