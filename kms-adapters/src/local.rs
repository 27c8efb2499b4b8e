//! `local://NAME`: a KEK kept in a key file in the data folder, `kek-NAME.key`, mode 0600.
//!
//! The embedded default for one node. Replicas must share the same file (or use a KMS). The file is created only
//! when the caller says so (an empty store); a missing file is otherwise an error, never a reason to make a new key.
//! A file that group or others can read is refused: a KEK readable by other users is not a KEK.
//!
//! File format (text): `sesame-local-kek v1`, then `id: <32 hex>` (a random key id, recorded as `kek_version` with
//! every wrap, so a different file is recognised as such), then `key: <base64 of 32 bytes>`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::Kek;
use crate::aead::{open_dek, seal_dek};
use crate::dek::{Dek, WrapContext, WrappedDek};
use crate::error::KmsError;
use crate::uri::KekUri;

const HEADER: &str = "sesame-local-kek v1";
const WRAP_VERSION: u8 = 0x01;
const WRAP_ALG: &str = "A256GCM";
const AAD_LABEL: &[u8] = b"sesame-kek/local/v1";

/// A KEK held in a local key file.
pub struct LocalKek {
    uri: KekUri,
    path: PathBuf,
    key_id: String,
    key: Zeroizing<[u8; 32]>,
}

kek_debug!(LocalKek { "uri" = uri, "path" = path, "key_id" = key_id } redacted ["key"]);

fn config_err(uri: &KekUri, reason: String) -> KmsError {
    KmsError::Config {
        kek: uri.to_string(),
        reason,
    }
}

impl LocalKek {
    /// The key file of `local://name` in `data_dir`.
    pub fn path_for(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join(format!("kek-{name}.key"))
    }

    /// Opens the key file of `uri` (a `local://` URI) in `data_dir`, creating it first when `create_if_missing`.
    pub fn open(uri: &KekUri, data_dir: &Path, create_if_missing: bool) -> Result<LocalKek, KmsError> {
        let path = Self::path_for(data_dir, uri.rest());
        if !path.exists() {
            if !create_if_missing {
                return Err(KmsError::NotFound {
                    kek: uri.to_string(),
                    detail: format!("key file {} does not exist", path.display()),
                });
            }
            create_key_file(uri, &path)?;
        }
        Self::load(uri, path)
    }

    fn load(uri: &KekUri, path: PathBuf) -> Result<LocalKek, KmsError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&path)
                .map_err(|e| config_err(uri, format!("cannot read key file {}: {e}", path.display())))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(config_err(
                    uri,
                    format!(
                        "key file {} has mode {mode:o}: group or others can read it; run `chmod 600` on it",
                        path.display()
                    ),
                ));
            }
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(&path)
                .map_err(|e| config_err(uri, format!("cannot read key file {}: {e}", path.display())))?,
        );
        let bad = || {
            config_err(
                uri,
                format!("key file {} is not a Sesame local key file", path.display()),
            )
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(bad());
        }
        let key_id = lines
            .next()
            .and_then(|l| l.strip_prefix("id: "))
            .ok_or_else(bad)?
            .to_owned();
        if key_id.len() != 32 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let encoded = lines.next().and_then(|l| l.strip_prefix("key: ")).ok_or_else(bad)?;
        let decoded = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| bad())?);
        let mut key = Zeroizing::new([0u8; 32]);
        if decoded.len() != 32 {
            return Err(bad());
        }
        key.copy_from_slice(&decoded);
        Ok(LocalKek {
            uri: uri.clone(),
            path,
            key_id,
            key,
        })
    }

    /// The key id (recorded as `kek_version` with every wrap).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Creates a key file atomically: written in full to a private temporary file, then linked into place. Linking
/// fails if another process created the file first, in which case theirs wins and ours is discarded — two
/// processes never end up with different keys under one name.
fn create_key_file(uri: &KekUri, path: &Path) -> Result<(), KmsError> {
    let err = |e: std::io::Error| config_err(uri, format!("cannot create key file {}: {e}", path.display()));
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut key[..]);
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let id_hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let contents = Zeroizing::new(format!("{HEADER}\nid: {id_hex}\nkey: {}\n", STANDARD.encode(&key[..])));
    // A random suffix: concurrent creators (threads or processes) never share a temporary file.
    let tmp = path.with_extension(format!("tmp-{}", &id_hex[..16]));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(err)?;
    let written = file.write_all(contents.as_bytes()).and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                // Make the new directory entry durable; failure here only weakens crash safety, so it is not fatal.
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(e)),
    }
}

#[async_trait::async_trait]
impl Kek for LocalKek {
    fn uri(&self) -> &KekUri {
        &self.uri
    }

    async fn wrap(&self, dek: &Dek, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let sealed = seal_dek(&self.key, AAD_LABEL, dek, ctx).ok_or_else(|| KmsError::Unavailable {
            kek: self.uri.to_string(),
            detail: "the crypto backend failed to wrap".into(),
        })?;
        let mut ciphertext = Vec::with_capacity(1 + sealed.len());
        ciphertext.push(WRAP_VERSION);
        ciphertext.extend_from_slice(&sealed);
        Ok(WrappedDek {
            ciphertext,
            wrap_alg: WRAP_ALG.into(),
            kek_version: self.key_id.clone(),
            binding: None,
        })
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<Dek, KmsError> {
        KmsError::ensure_version(&self.uri, wrapped, &self.key_id)?;
        let invalid = || KmsError::InvalidCiphertext {
            kek: self.uri.to_string(),
        };
        let (&version, sealed) = wrapped.ciphertext.split_first().ok_or_else(invalid)?;
        if version != WRAP_VERSION || wrapped.wrap_alg != WRAP_ALG {
            return Err(invalid());
        }
        open_dek(&self.key, AAD_LABEL, sealed, ctx).ok_or_else(invalid)
    }
}
