//! Start-up of an instance: the data folder, the store, the system KEK, the first-start bootstrap, and the checks
//! that refuse to run over a store the configured KEK cannot unwrap.
//!
//! The rule that protects data: a KEK is only ever *created* when the store is empty. If the store already holds
//! DEKs and the configured key is missing or different (a second replica started with a fresh data folder against
//! the same PostgreSQL, say), start-up stops with an error naming the key — it never makes a new key over
//! existing data, which would make every stored secret unreadable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sesame_kms::{Argon2Params, KekUri, KmsError, OpenOptions};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::core::keys::Scope;
use crate::core::tokens::AccessToken;
use crate::kek_reach::KekAllowList;
use crate::keyring::{Keyring, KeyringConfig, KeyringError};
use crate::store::{
    Bootstrap, Inserted, KekRecord, KekState, OrgRecord, Store, StoreError, TokenKind, TokenRecord, UserRecord,
};

/// The file, inside the data folder, that receives the first administrator token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// What an instance needs to start. Its `Debug` redacts the passphrase, the PIN and the database URL (which may
/// carry a password).
#[derive(Clone)]
pub struct InstanceConfig {
    /// The data folder (created 0700 if missing): SQLite database, local key files, the admin token file.
    pub data_dir: PathBuf,
    /// The store; `None` means SQLite at `<data_dir>/sesame.db`.
    pub database_url: Option<String>,
    /// The name of the first org, made on first start only.
    pub first_org: String,
    /// The system KEK's URI (`local://default` by default).
    pub system_kek: String,
    /// The passphrase for a `passphrase://` KEK (from `SESAME_PASSPHRASE`).
    pub passphrase: Option<Zeroizing<String>>,
    /// Argon2id parameters for new passphrase wraps.
    pub argon2: Argon2Params,
    /// The PIN for a `pkcs11:` KEK (from `SESAME_PKCS11_PIN`).
    pub pkcs11_pin: Option<Zeroizing<String>>,
    /// Cache settings of the keyring.
    pub keyring: KeyringConfig,
    /// The PKCS#11 modules, PIN files and KMS endpoints other KEKs may use (the system KEK's are added to it).
    pub kek_allow: KekAllowList,
    /// The clock everything in the instance reads (`Clock::system()` in the binary; no flag selects another).
    pub clock: Clock,
}

impl std::fmt::Debug for InstanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |set: bool| if set { "[redacted]" } else { "none" };
        f.debug_struct("InstanceConfig")
            .field("data_dir", &self.data_dir)
            .field("database_url", &redacted(self.database_url.is_some()))
            .field("first_org", &self.first_org)
            .field("system_kek", &self.system_kek)
            .field("passphrase", &redacted(self.passphrase.is_some()))
            .field("argon2", &self.argon2)
            .field("pkcs11_pin", &redacted(self.pkcs11_pin.is_some()))
            .field("keyring", &self.keyring)
            .field("kek_allow", &self.kek_allow)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Why an instance could not start. Messages name files, URIs and ids, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data folder could not be made or used.
    #[error("data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured system KEK URI is not valid.
    #[error("invalid system KEK URI: {0}")]
    KekUri(KmsError),
    /// The store is initialised but its KEK cannot be opened (for a local key: the key file is missing).
    #[error(
        "the store is already initialised, but its KEK {uri} cannot be opened: {cause}. Sesame never \
         creates a new key over an existing store. Restore the key (for local:// keys, the key file from the data \
         folder this store was initialised with) or point --data-dir at the folder that holds it"
    )]
    KekUnavailable {
        /// The KEK URI.
        uri: String,
        /// The adapter's classified error.
        cause: KmsError,
    },
    /// A `--kms-endpoint` is not an origin.
    #[error("{0}")]
    KekAllowList(String),
    /// A registered KEK reaches a module, PIN file or endpoint this start does not allow.
    #[error("the registered KEK {uri} cannot be opened: {refused}")]
    KekNotAllowed {
        /// The KEK URI.
        uri: String,
        /// What it reaches that is not allowed.
        refused: crate::kek_reach::KekRefused,
    },
    /// The store was initialised with another system KEK URI.
    #[error(
        "the store's system KEK is {registered}, but the server was started with {configured}; start it with \
         --system-kek {registered}"
    )]
    KekUriMismatch {
        /// What the store has.
        registered: String,
        /// What the server was given.
        configured: String,
    },
    /// The KEK opened but cannot unwrap the store's DEKs (a different key file, a wrong passphrase).
    #[error(
        "the configured KEK cannot unwrap the DEKs in this store: {0}. The key differs from the one the store was \
         initialised with; Sesame refuses to start rather than create unreadable data"
    )]
    KekCannotUnwrap(KeyringError),
    /// Writing the first administrator token failed.
    #[error("could not write {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else the keyring reported during bootstrap.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// A started instance: its store and keyring, ready to serve.
pub struct Instance {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The keyring, with the system KEK registered.
    pub keyring: Arc<Keyring>,
    /// The administrator token, only when this start bootstrapped the instance (shown once).
    pub new_admin_token: Option<AccessToken>,
    /// The file the administrator token was written to.
    pub admin_token_path: PathBuf,
    /// How KEK adapters are opened (never creating a key).
    pub kek_options: OpenOptions,
    /// What KEKs other than the system KEK may reach: the operator's allow-list and the system KEK's own reach.
    pub kek_allow: KekAllowList,
    /// The clock (the configuration's).
    pub clock: Clock,
}

fn make_data_dir(path: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        std::fs::create_dir_all(path).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, via a temporary file and a rename so a crash never leaves half a
/// token.
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Instance {
    /// Opens (and on first start, bootstraps) the instance `config` describes.
    pub async fn open(config: &InstanceConfig) -> Result<Instance, StartError> {
        make_data_dir(&config.data_dir)?;
        let url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("sesame.db").display()));
        let store = crate::store::connect(&url).await?;
        let keyring = Arc::new(Keyring::new(store.clone(), &config.keyring, config.clock.clone()));
        let uri: KekUri = config.system_kek.parse().map_err(StartError::KekUri)?;
        config.kek_allow.validate().map_err(StartError::KekAllowList)?;
        let kek_allow = config
            .kek_allow
            .clone()
            .with_system_kek(&uri)
            .map_err(StartError::KekUri)?;
        let bootstrapped = store.is_bootstrapped().await?;
        let options = OpenOptions {
            data_dir: config.data_dir.clone(),
            create_if_missing: !bootstrapped,
            passphrase: config.passphrase.clone(),
            argon2: config.argon2.clone(),
            pkcs11_pin: config.pkcs11_pin.clone(),
        };
        let kek = sesame_kms::open_kek(&uri, &options).await.map_err(|cause| {
            if bootstrapped {
                StartError::KekUnavailable {
                    uri: uri.to_string(),
                    cause,
                }
            } else {
                StartError::Keyring(KeyringError::Kms(cause))
            }
        })?;
        let admin_token_path = config.data_dir.join(ADMIN_TOKEN_FILE);
        let mut new_admin_token = None;
        if !bootstrapped {
            let kek_id = uuid::Uuid::now_v7().to_string();
            let (canary, _dek) = keyring
                .new_dek(&Scope::System.to_string(), 1, &kek_id, kek.as_ref())
                .await?;
            let (boot, token) = first_state(config, &uri, kek_id, canary);
            // The token file is written before the commit and renamed after it: a crash in between leaves at most
            // a stray temporary file, never a store whose only admin token was lost.
            let tmp = admin_token_path.with_extension("pending");
            write_private_file(&tmp, &format!("{}\n", token.expose())).map_err(|source| StartError::TokenFile {
                path: tmp.clone(),
                source,
            })?;
            match store.bootstrap(&boot).await {
                Ok(Inserted::New) => {
                    std::fs::rename(&tmp, &admin_token_path).map_err(|source| StartError::TokenFile {
                        path: admin_token_path.clone(),
                        source,
                    })?;
                    tracing::info!(org = %boot.org.name, kek = %uri, "bootstrapped a new instance");
                    new_admin_token = Some(token);
                }
                // Another replica bootstrapped the same store first: fall through to the checks below.
                Ok(Inserted::AlreadyExists) => {
                    let _ = std::fs::remove_file(&tmp);
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            }
        }
        let system = store
            .keks()
            .await?
            .into_iter()
            .find(|k| k.org_id.is_none() && k.is_default)
            .ok_or_else(|| {
                StartError::Store(StoreError::Corrupt {
                    table: "keks",
                    detail: "the instance is bootstrapped but has no default system KEK".into(),
                })
            })?;
        if system.uri != uri.to_string() {
            return Err(StartError::KekUriMismatch {
                registered: system.uri,
                configured: uri.to_string(),
            });
        }
        keyring.register_kek(&system.id, kek);
        // Every other registered KEK (org KEKs, disabled ones that still unwrap) must open too: a KEK that cannot
        // be reached stops the start with its name, rather than failing later on use or falling back to another.
        let kek_options = OpenOptions {
            create_if_missing: false,
            ..options
        };
        for row in store.keks().await? {
            if row.id == system.id {
                continue;
            }
            let other_uri: KekUri = row.uri.parse().map_err(StartError::KekUri)?;
            // Registered before the allow-list existed, or allowed by an earlier start: checked again, so a KEK
            // reaching what this start does not allow is never opened.
            kek_allow
                .check(&other_uri)
                .map_err(|refused| StartError::KekNotAllowed {
                    uri: row.uri.clone(),
                    refused,
                })?;
            let adapter =
                sesame_kms::open_kek(&other_uri, &kek_options)
                    .await
                    .map_err(|cause| StartError::KekUnavailable {
                        uri: row.uri.clone(),
                        cause,
                    })?;
            keyring.register_kek(&row.id, adapter);
        }
        keyring.verify_keks().await.map_err(StartError::KekCannotUnwrap)?;
        Ok(Instance {
            store,
            keyring,
            new_admin_token,
            admin_token_path,
            kek_options,
            kek_allow,
            clock: config.clock.clone(),
        })
    }
}

/// The rows of a first start, and the administrator token in clear (shown once, stored hashed).
fn first_state(
    config: &InstanceConfig,
    uri: &KekUri,
    kek_id: String,
    canary: crate::store::DekWithWraps,
) -> (Bootstrap, AccessToken) {
    let now = config.clock.now_ms();
    let token = AccessToken::generate(&mut rand::rng());
    let admin_id = uuid::Uuid::now_v7().to_string();
    let boot = Bootstrap {
        system_kek: KekRecord {
            id: kek_id,
            org_id: None,
            uri: uri.to_string(),
            state: KekState::Active,
            is_default: true,
            created_ms: now,
        },
        canary,
        org: OrgRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: config.first_org.clone(),
            created_ms: now,
        },
        admin: UserRecord {
            id: admin_id.clone(),
            login: "admin".into(),
            display_name: "Instance administrator".into(),
            instance_admin: true,
            created_ms: now,
        },
        admin_token: TokenRecord {
            id: uuid::Uuid::now_v7().to_string(),
            token_hash: token.hash(),
            kind: TokenKind::Personal,
            user_id: Some(admin_id),
            org_id: None,
            team_id: None,
            description: "first administrator token".into(),
            created_ms: now,
            expires_ms: None,
            revoked_ms: None,
            parent_id: None,
            confined_org_id: None,
            role_cap: None,
        },
    };
    (boot, token)
}
