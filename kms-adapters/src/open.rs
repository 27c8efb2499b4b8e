//! Opening a KEK from its URI: the options every adapter may need, and the dispatch by scheme.

use std::path::PathBuf;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::Kek;
use crate::error::KmsError;
use crate::local::LocalKek;
use crate::passphrase::PassphraseKek;
use crate::uri::KekUri;

/// Argon2id cost parameters for passphrase KEKs. Recorded with every wrap, so they can change later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Argon2Params {
    /// Memory, KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Argon2Params {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

/// What adapters need besides the URI. Secrets (the passphrase) come from the server's environment, never from
/// the URI or the database.
#[derive(Clone)]
pub struct OpenOptions {
    /// The data folder (local key files live here).
    pub data_dir: PathBuf,
    /// Whether a missing local key file may be created (only over an empty store).
    pub create_if_missing: bool,
    /// The passphrase of `passphrase://` KEKs (the server reads `SESAME_PASSPHRASE`).
    pub passphrase: Option<Zeroizing<String>>,
    /// Argon2id parameters for new passphrase wraps.
    pub argon2: Argon2Params,
    /// The PIN of `pkcs11:` KEKs (the server reads `SESAME_PKCS11_PIN`), unless the URI names a `pin-source`.
    pub pkcs11_pin: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("data_dir", &self.data_dir)
            .field("create_if_missing", &self.create_if_missing)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "[redacted]"))
            .field("argon2", &self.argon2)
            .field("pkcs11_pin", &self.pkcs11_pin.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The configuration error for a blocking open task that panicked or was cancelled.
fn task_failed(kek: &str, task: &str, e: &tokio::task::JoinError) -> KmsError {
    KmsError::Config {
        kek: kek.into(),
        reason: format!("{task} task failed: {e}"),
    }
}

/// Opens the KEK a URI names.
pub async fn open_kek(uri: &KekUri, opts: &OpenOptions) -> Result<Arc<dyn Kek>, KmsError> {
    match uri.scheme() {
        "local" => {
            let (uri, dir, create) = (uri.clone(), opts.data_dir.clone(), opts.create_if_missing);
            let kek = tokio::task::spawn_blocking(move || LocalKek::open(&uri, &dir, create))
                .await
                .map_err(|e| task_failed("local", "key file", &e))??;
            Ok(Arc::new(kek))
        }
        "passphrase" => Ok(Arc::new(PassphraseKek::new(uri.clone(), opts)?)),
        #[cfg(feature = "aws")]
        "awskms" => Ok(Arc::new(
            crate::aws::AwsKmsKek::open(uri, opts.create_if_missing).await?,
        )),
        #[cfg(feature = "azure")]
        "azurekeyvault" => Ok(Arc::new(crate::azure::AzureKeyVaultKek::open(uri).await?)),
        #[cfg(feature = "gcp")]
        "gcpkms" => Ok(Arc::new(crate::gcp::GcpKmsKek::open(uri).await?)),
        #[cfg(feature = "pkcs11")]
        "pkcs11" => {
            let (uri, pin, create) = (uri.clone(), opts.pkcs11_pin.clone(), opts.create_if_missing);
            let kek = tokio::task::spawn_blocking(move || crate::pkcs11::Pkcs11Kek::open(&uri, pin, create))
                .await
                .map_err(|e| task_failed("pkcs11", "PKCS#11 open", &e))??;
            Ok(Arc::new(kek))
        }
        scheme => Err(KmsError::Unsupported {
            scheme: scheme.to_owned(),
            feature: match scheme {
                "awskms" => "aws",
                "azurekeyvault" => "azure",
                "gcpkms" => "gcp",
                _ => "pkcs11",
            }
            .to_owned(),
        }),
    }
}
