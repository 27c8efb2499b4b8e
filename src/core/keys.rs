//! Key-hierarchy rules: which DEK scope seals what, and the associated data that binds content to its owner.
//!
//! This module is pure: it names scopes and builds associated data, but never generates, wraps or stores a key
//! (that is [`crate::keyring`]'s job). Scope strings are stored in the `deks` table, so their text form is part of
//! the data format: change it only with a migration.

use std::fmt;
use std::str::FromStr;

/// A name an org, project or stack may carry: 1–100 characters of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// Pulumi names are at most this permissive, and the restriction keeps names safe inside scope strings, paths and
/// log lines.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name must not be empty")]
    Empty,
    /// The name is longer than 100 characters.
    #[error("name must be at most 100 characters")]
    TooLong,
    /// The name holds a character outside `[A-Za-z0-9._-]` or starts with `.`.
    #[error("name may contain only letters, digits, '.', '_' and '-', and must not start with '.'")]
    InvalidCharacter,
}

impl Name {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 100;

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(NameError::TooLong);
        }
        let ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok || s.starts_with('.') {
            return Err(NameError::InvalidCharacter);
        }
        Ok(Name(s.to_owned()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What a DEK seals. Each scope has its own DEK generations; content sealed under one scope never opens under
/// another, because the keyring checks the DEK's scope and the associated data names the owner.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Scope {
    /// Instance-level material; also the canary DEK that proves at start-up that the system KEK still unwraps the
    /// store.
    System,
    /// The stack-secrets DEK of one stack (Pulumi's service secrets manager contract).
    Stack {
        /// The org's immutable id.
        org_id: String,
        /// The Pulumi project name.
        project: Name,
        /// The stack name.
        stack: Name,
    },
    /// One environment's DEK: seals its `fn::secret` values at rest and its open sessions.
    Environment {
        /// The org's immutable id.
        org_id: String,
        /// The environment's immutable id (not its name, so a rename keeps every ciphertext valid).
        env_id: String,
    },
    /// The instance's audit-checkpoint signing key (an Ed25519 private key, sealed at rest; served by the system
    /// KEK).
    AuditSigning,
    /// The OIDC issuer's token-signing keys (RSA or P-256 private keys, sealed at rest; served by the system KEK).
    OidcSigning,
    /// An org's Vault-Transit keys (every version's material, sealed at rest; served by the org's KEK).
    Transit {
        /// The org's immutable id.
        org_id: String,
    },
}

impl Scope {
    /// The org whose KEK wraps this scope's DEKs, or `None` for instance scopes served by the system KEK.
    pub fn org_id(&self) -> Option<&str> {
        match self {
            Scope::System | Scope::AuditSigning | Scope::OidcSigning => None,
            Scope::Stack { org_id, .. } | Scope::Environment { org_id, .. } | Scope::Transit { org_id } => Some(org_id),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::System => f.write_str("system"),
            Scope::AuditSigning => f.write_str("audit-signing"),
            Scope::OidcSigning => f.write_str("oidc-signing"),
            Scope::Stack { org_id, project, stack } => write!(f, "stack:{org_id}:{project}/{stack}"),
            Scope::Environment { org_id, env_id } => write!(f, "env:{org_id}:{env_id}"),
            Scope::Transit { org_id } => write!(f, "transit:{org_id}"),
        }
    }
}

/// Why a scope string could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised DEK scope")]
pub struct ScopeParseError;

impl FromStr for Scope {
    type Err = ScopeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "system" {
            return Ok(Scope::System);
        }
        if s == "audit-signing" {
            return Ok(Scope::AuditSigning);
        }
        if s == "oidc-signing" {
            return Ok(Scope::OidcSigning);
        }
        if let Some(rest) = s.strip_prefix("stack:") {
            let (org_id, path) = rest.split_once(':').ok_or(ScopeParseError)?;
            let (project, stack) = path.split_once('/').ok_or(ScopeParseError)?;
            if org_id.is_empty() {
                return Err(ScopeParseError);
            }
            return Ok(Scope::Stack {
                org_id: org_id.to_owned(),
                project: project.parse().map_err(|_| ScopeParseError)?,
                stack: stack.parse().map_err(|_| ScopeParseError)?,
            });
        }
        if let Some(rest) = s.strip_prefix("env:") {
            let (org_id, env_id) = rest.split_once(':').ok_or(ScopeParseError)?;
            if org_id.is_empty() || env_id.is_empty() || env_id.contains(':') {
                return Err(ScopeParseError);
            }
            return Ok(Scope::Environment {
                org_id: org_id.to_owned(),
                env_id: env_id.to_owned(),
            });
        }
        if let Some(org_id) = s.strip_prefix("transit:") {
            if org_id.is_empty() || org_id.contains(':') {
                return Err(ScopeParseError);
            }
            return Ok(Scope::Transit {
                org_id: org_id.to_owned(),
            });
        }
        Err(ScopeParseError)
    }
}

/// Associated data for a stack secret: binds the ciphertext to org, project and stack, so a ciphertext of one stack
/// does not open under another even if the DEK lookup were bypassed.
pub fn stack_secret_aad(org_id: &str, project: &Name, stack: &Name) -> Vec<u8> {
    sesame_envelope::context(
        "sesame/stack-secret/v1",
        &[
            org_id.as_bytes(),
            project.as_str().as_bytes(),
            stack.as_str().as_bytes(),
        ],
    )
}

/// Associated data for a `fn::secret` value stored in an environment's definition: the org and the environment's
/// immutable id — not its name nor the path inside the document, so renaming the environment or moving the secret
/// within it keeps it valid, while a ciphertext pasted into another environment does not open.
pub fn env_secret_aad(org_id: &str, env_id: &str) -> Vec<u8> {
    sesame_envelope::context("sesame/env-secret/v1", &[org_id.as_bytes(), env_id.as_bytes()])
}

/// Associated data for an open session's sealed result: names the session, so one session's blob cannot be served
/// as another's.
pub fn open_session_aad(org_id: &str, env_id: &str, session_id: &str) -> Vec<u8> {
    sesame_envelope::context(
        "sesame/open-session/v1",
        &[org_id.as_bytes(), env_id.as_bytes(), session_id.as_bytes()],
    )
}

/// Associated data for the claims an open session's id seals (format 1): names the org, the environment
/// (`anonymous` for an unsaved document) and the token that opened it, so an id answers only that token, only at
/// that environment.
pub fn session_id_aad(org_id: &str, env_id: &str, token_id: &str) -> Vec<u8> {
    sesame_envelope::context(
        "sesame/open-session-id/v1",
        &[org_id.as_bytes(), env_id.as_bytes(), token_id.as_bytes()],
    )
}

/// Associated data for a stored pin set: names the org, the environment and the pins' digest (hex), so one set
/// cannot be served as another's.
pub fn open_pins_aad(org_id: &str, env_id: &str, digest_hex: &str) -> Vec<u8> {
    sesame_envelope::context(
        "sesame/open-pins/v1",
        &[org_id.as_bytes(), env_id.as_bytes(), digest_hex.as_bytes()],
    )
}

/// Associated data for a session's stored provider outputs: names the org, the environment, the row, the pins
/// digest (hex) and the token that opened the session, so a row answers only the session id that names it.
pub fn open_outputs_aad(org_id: &str, env_id: &str, row_id: &str, digest_hex: &str, token_id: &str) -> Vec<u8> {
    sesame_envelope::context(
        "sesame/open-outputs/v1",
        &[
            org_id.as_bytes(),
            env_id.as_bytes(),
            row_id.as_bytes(),
            digest_hex.as_bytes(),
            token_id.as_bytes(),
        ],
    )
}

/// Associated data for the sealed audit-checkpoint signing key: names its public key, so a sealed private key
/// cannot be swapped for another one's row.
pub fn audit_signing_key_aad(public_key: &[u8]) -> Vec<u8> {
    sesame_envelope::context("sesame/audit-signing-key/v1", &[public_key])
}

/// Associated data for a sealed OIDC signing key: names its key id (a thumbprint of its public key) and algorithm,
/// so a sealed private key cannot be swapped into another key's row.
pub fn oidc_signing_key_aad(kid: &str, alg: &str) -> Vec<u8> {
    sesame_envelope::context("sesame/oidc-signing-key/v1", &[kid.as_bytes(), alg.as_bytes()])
}

/// Associated data for one sealed version of a transit key: names the org, the key's immutable id and the version,
/// so a sealed version cannot be swapped into another key's or another version's row.
pub fn transit_key_aad(org_id: &str, key_id: &str, version: u32) -> Vec<u8> {
    sesame_envelope::context(
        "sesame/transit-key/v1",
        &[org_id.as_bytes(), key_id.as_bytes(), version.to_string().as_bytes()],
    )
}

/// Associated data for the start-up canary sealed under the system DEK.
pub fn canary_aad() -> Vec<u8> {
    sesame_envelope::context("sesame/canary/v1", &[])
}

/// The context passed to a KEK when it wraps or unwraps a DEK: the DEK's id and scope, so a wrapped DEK pasted into
/// another row fails to unwrap (DESIGN.md §3, "Binding wrapped DEKs to their row").
pub fn wrap_context_fields(dek_id: &str, scope: &str) -> [(&'static str, Vec<u8>); 2] {
    [
        ("dek", dek_id.as_bytes().to_vec()),
        ("scope", scope.as_bytes().to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_pulumi_names_and_refuse_others() {
        for ok in ["dev", "my-project", "a.b_c-9", "X"] {
            assert!(ok.parse::<Name>().is_ok(), "{ok}");
        }
        assert_eq!("".parse::<Name>(), Err(NameError::Empty));
        assert_eq!("a/b".parse::<Name>(), Err(NameError::InvalidCharacter));
        assert_eq!(".hidden".parse::<Name>(), Err(NameError::InvalidCharacter));
        assert_eq!("a:b".parse::<Name>(), Err(NameError::InvalidCharacter));
        assert_eq!("x".repeat(101).parse::<Name>(), Err(NameError::TooLong));
    }

    #[test]
    fn scopes_round_trip_through_text() {
        let stack = Scope::Stack {
            org_id: "0190-org".into(),
            project: "web".parse().unwrap(),
            stack: "prod".parse().unwrap(),
        };
        let env = Scope::Environment {
            org_id: "0190-org".into(),
            env_id: "0190-env".into(),
        };
        let transit = Scope::Transit {
            org_id: "0190-org".into(),
        };
        for scope in [
            Scope::System,
            Scope::AuditSigning,
            Scope::OidcSigning,
            stack,
            env,
            transit,
        ] {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
        assert!("stack:org:web".parse::<Scope>().is_err());
        assert!("env:x".parse::<Scope>().is_err());
        assert!("transit:".parse::<Scope>().is_err());
        assert!("transit:a:b".parse::<Scope>().is_err());
    }

    #[test]
    fn stack_aad_differs_per_stack() {
        let p: Name = "p".parse().unwrap();
        let a = stack_secret_aad("o", &p, &"a".parse().unwrap());
        let b = stack_secret_aad("o", &p, &"b".parse().unwrap());
        assert_ne!(a, b);
    }
}
