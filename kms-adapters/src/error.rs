//! The classified errors of every KEK adapter, so the edge knows what to retry and what to tell an operator. Every
//! variant names the KEK by URI; none carries key material, a PIN or a credential.

/// Why a KEK operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The key (or key file) does not exist.
    #[error("KEK {kek}: not found: {detail}")]
    NotFound {
        /// The KEK URI.
        kek: String,
        /// What is missing.
        detail: String,
    },
    /// The credentials in use may not use the key.
    #[error("KEK {kek}: permission denied: {detail}")]
    PermissionDenied {
        /// The KEK URI.
        kek: String,
        /// What was refused.
        detail: String,
    },
    /// The KMS asked us to slow down; retryable.
    #[error("KEK {kek}: throttled by the key service")]
    Throttled {
        /// The KEK URI.
        kek: String,
    },
    /// The KMS could not be reached or failed; retryable.
    #[error("KEK {kek}: key service unavailable: {detail}")]
    Unavailable {
        /// The KEK URI.
        kek: String,
        /// What failed.
        detail: String,
    },
    /// The key exists but is disabled or scheduled for deletion.
    #[error("KEK {kek}: the key is disabled")]
    Disabled {
        /// The KEK URI.
        kek: String,
    },
    /// The wrapped DEK does not unwrap under this key and context: altered, bound to another row, or wrapped by
    /// another key. Deliberately one kind.
    #[error("KEK {kek}: the wrapped DEK does not unwrap (altered, bound to another row, or wrapped by another key)")]
    InvalidCiphertext {
        /// The KEK URI.
        kek: String,
    },
    /// The wrap names another key version than this KEK holds: a different key file or passphrase.
    #[error("KEK {kek}: the DEK was wrapped by key version {wrapped_by}, but this KEK is key version {configured}")]
    KeyMismatch {
        /// The KEK URI.
        kek: String,
        /// The version recorded with the wrap.
        wrapped_by: String,
        /// The version this KEK holds.
        configured: String,
    },
    /// The URI is malformed or carries something it must not (a PIN).
    #[error("invalid KEK URI: {reason}")]
    InvalidUri {
        /// Why (never the secret part of the URI).
        reason: String,
    },
    /// The scheme is known but its adapter was not built into this binary.
    #[error("KEK scheme {scheme}:// needs the cargo feature `{feature}`, which this build of Sesame does not have")]
    Unsupported {
        /// The URI scheme.
        scheme: String,
        /// The cargo feature that builds its adapter.
        feature: String,
    },
    /// The KEK is misconfigured locally (an unreadable key file, a missing passphrase).
    #[error("KEK {kek}: {reason}")]
    Config {
        /// The KEK URI.
        kek: String,
        /// What is wrong.
        reason: String,
    },
}

impl KmsError {
    /// Whether retrying later may succeed (throttling, an unavailable service).
    pub fn is_retryable(&self) -> bool {
        matches!(self, KmsError::Throttled { .. } | KmsError::Unavailable { .. })
    }

    /// [`KmsError::KeyMismatch`] unless `wrapped` was made by the key version this KEK holds (`configured`).
    pub(crate) fn ensure_version(
        kek: &crate::KekUri,
        wrapped: &crate::WrappedDek,
        configured: &str,
    ) -> Result<(), KmsError> {
        if wrapped.kek_version == configured {
            return Ok(());
        }
        Err(KmsError::KeyMismatch {
            kek: kek.to_string(),
            wrapped_by: wrapped.kek_version.clone(),
            configured: configured.to_owned(),
        })
    }
}
