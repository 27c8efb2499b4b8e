//! Key-encryption keys (KEKs) for Sesame: the [`Kek`] trait every backend implements, its classified errors, the
//! adapters, and (behind the `conformance` feature, for tests) the one `conformance` suite every adapter passes.
//!
//! A KEK wraps and unwraps 256-bit data-encryption keys ([`Dek`]) bound to a [`WrapContext`] (the DEK's id and
//! scope), so a wrapped DEK copied into another row does not unwrap. Adapters: `local://NAME` (a key file in the
//! data folder) and `passphrase://` (Argon2id) always; `pkcs11:`, `awskms://`, `azurekeyvault://` and `gcpkms://`
//! behind the `pkcs11`, `aws`, `azure` and `gcp` cargo features. Their URIs are recognised in every build, so that a
//! build without a feature says which one is missing.
//!
//! This crate never logs or returns key material: errors name the KEK by URI only, and `Debug` of every key type
//! prints `[redacted]`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// `impl Debug` for a KEK adapter: its non-secret fields by name (`"name" = field.path`), then each secret named
/// in `redacted` shown as `[redacted]`, so no adapter prints key material.
macro_rules! kek_debug {
    ($ty:ident { $($name:literal = $($part:ident).+),* } $(redacted [$($secret:literal),*])?) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field($name, &self$(.$part)+))*
                    $($(.field($secret, &"[redacted]"))*)?
                    .finish()
            }
        }
    };
}

mod aead;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "conformance")]
pub mod conformance;
mod dek;
mod error;
#[cfg(feature = "gcp")]
pub mod gcp;
mod local;
mod open;
mod passphrase;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod reach;
mod uri;

pub use dek::{Dek, WrapContext, WrappedDek};
pub use error::KmsError;
pub use local::LocalKek;
pub use open::{Argon2Params, OpenOptions, open_kek};
pub use passphrase::PassphraseKek;
pub use reach::{Reach, reach};
pub use uri::KekUri;

/// A key-encryption key. Implementations are cheap to share (`Arc<dyn Kek>`) and safe to call concurrently.
#[async_trait::async_trait]
pub trait Kek: Send + Sync + std::fmt::Debug {
    /// The KEK's URI (never carries a secret).
    fn uri(&self) -> &KekUri;

    /// Wraps `dek`, bound to `ctx`. The result records the exact key version used.
    async fn wrap(&self, dek: &Dek, ctx: &WrapContext) -> Result<WrappedDek, KmsError>;

    /// Unwraps a DEK wrapped by this KEK under the same `ctx`. A different context, altered bytes or another key
    /// fail with [`KmsError::InvalidCiphertext`] or [`KmsError::KeyMismatch`], never with a wrong key.
    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<Dek, KmsError>;

    /// Where this KEK lives, for KMS-side re-wrapping: the service and the partition (region and endpoint) inside
    /// which one key's ciphertext can be re-encrypted under another without the plaintext leaving the KMS.
    fn kms_partition(&self) -> Option<(&'static str, String)> {
        None
    }

    /// Re-wraps `wrapped` (made by `source` under `ctx`) under this KEK inside the KMS (AWS `ReEncrypt`), so the DEK
    /// never leaves it. `None` when this pair cannot: the caller unwraps with `source` and wraps with this KEK.
    async fn rewrap_from(
        &self,
        _source: &dyn Kek,
        _wrapped: &WrappedDek,
        _ctx: &WrapContext,
    ) -> Option<Result<WrappedDek, KmsError>> {
        None
    }
}
