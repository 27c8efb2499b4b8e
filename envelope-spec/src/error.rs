//! Errors of sealing and opening. Opening has exactly one cryptographic failure, [`OpenError::Undecryptable`], so
//! that no caller can be turned into an oracle that tells a wrong key from a wrong context or from tampering.

/// Why a plaintext could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The plaintext exceeds [`crate::MAX_PLAINTEXT_LEN`].
    #[error("plaintext is larger than the envelope limit of {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The crypto backend refused a well-formed operation (it does not for valid 256-bit keys).
    #[error("the crypto backend failed")]
    Backend,
}

/// Why an envelope could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than a header and a tag.
    #[error("envelope is truncated")]
    Truncated,
    /// The version byte names no version this implementation knows.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The algorithm byte names no algorithm of this version.
    #[error("unsupported envelope algorithm {0}")]
    UnsupportedAlgorithm(u8),
    /// Larger than the largest envelope a valid plaintext can make.
    #[error("envelope is larger than the limit")]
    TooLarge,
    /// Not a valid text form (SPEC.md §7): the base64 form is not canonical padded standard base64, or the prefixed
    /// form lacks `sesame1:` or is not unpadded base64url.
    #[error("not an envelope in text form")]
    InvalidText,
    /// Wrong key, wrong associated data, or altered bytes: deliberately indistinguishable.
    #[error("envelope could not be decrypted")]
    Undecryptable,
}

impl OpenError {
    /// A stable short name of the error kind, as used by the known-answer vectors.
    pub fn kind(&self) -> &'static str {
        match self {
            OpenError::Truncated => "truncated",
            OpenError::UnsupportedVersion(_) => "unsupported_version",
            OpenError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            OpenError::TooLarge => "too_large",
            OpenError::InvalidText => "invalid_text",
            OpenError::Undecryptable => "undecryptable",
        }
    }
}
