//! `pkcs11:token=LABEL;object=KEY?module-path=/path/to/module.so[&pin-source=file:/path]` (RFC 7512): a KEK that
//! never leaves a PKCS#11 token. Built with the `pkcs11` feature; tested against SoftHSM2.
//!
//! Wrapping is `CKM_AES_GCM` on the token over the DEK bytes, with a fresh random 96-bit IV per wrap and the wrap
//! context as GCM associated data, so no binding tag is needed. The key is generated on the token as a
//! non-extractable, sensitive AES-256 key when it does not exist and the caller allows creation; its random
//! `CKA_ID` is the `kek_version` recorded with every wrap. The PIN comes from `SESAME_PKCS11_PIN` (passed in by the
//! server) or from the file named by `pin-source=file:…`; a URI carrying `pin-value` is refused when parsed. The
//! PIN is never logged or shown.
//!
//! Sessions are pooled (a PKCS#11 session is usable by one thread at a time); every token call runs on a blocking
//! thread. SoftHSM reports a failed GCM tag check as `CKR_GENERAL_ERROR`; that, like `CKR_ENCRYPTED_DATA_INVALID`,
//! is mapped to [`KmsError::InvalidCiphertext`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::Kek;
use crate::dek::{Dek, WrapContext, WrappedDek};
use crate::error::KmsError;
use crate::uri::KekUri;

const WRAP_VERSION: u8 = 0x01;
const WRAP_ALG: &str = "PKCS11-AES-GCM";
const AAD_LABEL: &[u8] = b"sesame-kek/pkcs11/v1";
const IV_LEN: usize = 12;

pub use crate::uri::Pkcs11Uri;

/// Longest PIN file read: a PIN is a short line, so a larger file is a mistake (and is not read into memory).
const MAX_PIN_FILE: u64 = 4096;

/// The PIN in `path` without trailing ASCII whitespace. Every copy is wiped: the read buffer is allocated at its
/// largest size before reading (so it never grows and leaves an old allocation behind), and both it and the
/// returned text are `Zeroizing`.
fn read_pin_file(path: &Path) -> std::io::Result<Zeroizing<String>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_PIN_FILE {
        return Err(std::io::Error::other(format!("longer than {MAX_PIN_FILE} bytes")));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PIN_FILE as usize + 1));
    file.take(MAX_PIN_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PIN_FILE {
        return Err(std::io::Error::other(format!("longer than {MAX_PIN_FILE} bytes")));
    }
    let keep = bytes.trim_ascii_end().len();
    bytes.truncate(keep);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| std::io::Error::other("the PIN is not UTF-8 text"))?
        .to_owned();
    Ok(Zeroizing::new(text))
}

/// One initialised library per module path for the whole process: finalising a module (which dropping the last
/// handle does) would break every other user of it.
fn library(path: &Path) -> Result<Pkcs11, CkError> {
    static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut libs = LIBRARIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(lib) = libs.get(path) {
        return Ok(lib.clone());
    }
    let lib = Pkcs11::new(path)?;
    match lib.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e),
    }
    libs.insert(path.to_owned(), lib.clone());
    Ok(lib)
}

struct Token {
    lib: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    key: ObjectHandle,
    sessions: Mutex<Vec<Session>>,
}

/// A KEK on a PKCS#11 token.
pub struct Pkcs11Kek {
    uri: KekUri,
    version: String,
    token: Arc<Token>,
}

kek_debug!(Pkcs11Kek { "uri" = uri, "key_version" = version } redacted ["pin"]);

fn classify(uri: &KekUri, e: &CkError) -> KmsError {
    let kek = uri.to_string();
    match e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange | RvError::PinExpired => {
                KmsError::PermissionDenied {
                    kek,
                    detail: "the token refused the PIN".into(),
                }
            }
            RvError::PinLocked => KmsError::Disabled { kek },
            RvError::GeneralError | RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange => {
                KmsError::InvalidCiphertext { kek }
            }
            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid | RvError::TokenNotPresent => KmsError::NotFound {
                kek,
                detail: format!("{rv:?}"),
            },
            RvError::DeviceRemoved | RvError::DeviceError | RvError::DeviceMemory | RvError::SessionHandleInvalid => {
                KmsError::Unavailable {
                    kek,
                    detail: format!("{rv:?}"),
                }
            }
            other => KmsError::Unavailable {
                kek,
                detail: format!("PKCS#11 error {other:?}"),
            },
        },
        CkError::LibraryLoading(_) => KmsError::Config {
            kek,
            reason: "the PKCS#11 module could not be loaded (check module-path)".into(),
        },
        other => KmsError::Unavailable {
            kek,
            detail: format!("PKCS#11: {other}"),
        },
    }
}

impl Pkcs11Kek {
    /// Opens the key `uri` names, logging in with `pin` (or the URI's `pin-source` file), and generates it on the
    /// token when it is missing and `create_if_missing` is set. Blocking: call from a blocking thread.
    pub fn open(uri: &KekUri, pin: Option<Zeroizing<String>>, create_if_missing: bool) -> Result<Pkcs11Kek, KmsError> {
        let parsed = Pkcs11Uri::parse(uri)?;
        let config = |reason: String| KmsError::Config {
            kek: uri.to_string(),
            reason,
        };
        let pin = match (&parsed.pin_file, pin) {
            (Some(file), _) => {
                read_pin_file(file).map_err(|e| config(format!("cannot read the PIN file {}: {e}", file.display())))?
            }
            (None, Some(pin)) => pin,
            (None, None) => {
                return Err(config(
                    "no PIN: set SESAME_PKCS11_PIN or add pin-source=file:PATH".into(),
                ));
            }
        };
        let ck = |e: CkError| classify(uri, &e);
        let lib = library(&parsed.module_path).map_err(ck)?;
        let mut slot = None;
        for s in lib.get_slots_with_token().map_err(ck)? {
            if lib.get_token_info(s).map_err(ck)?.label() == parsed.token {
                slot = Some(s);
                break;
            }
        }
        let slot = slot.ok_or_else(|| KmsError::NotFound {
            kek: uri.to_string(),
            detail: format!("no token labelled {:?}", parsed.token),
        })?;
        let pin = AuthPin::new(pin.as_str().into());
        let session = lib.open_rw_session(slot).map_err(ck)?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(ck(e)),
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(parsed.object.as_bytes().to_vec()),
        ];
        let found = session.find_objects(&template).map_err(ck)?;
        let key = match found.as_slice() {
            [key] => *key,
            [] if create_if_missing => {
                let mut id = [0u8; 16];
                rand::rng().fill_bytes(&mut id);
                let key_template = [
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Label(parsed.object.as_bytes().to_vec()),
                    Attribute::Id(id.to_vec()),
                ];
                session.generate_key(&Mechanism::AesKeyGen, &key_template).map_err(ck)?
            }
            [] => {
                return Err(KmsError::NotFound {
                    kek: uri.to_string(),
                    detail: format!("no secret key labelled {:?} on token {:?}", parsed.object, parsed.token),
                });
            }
            _ => {
                return Err(config(format!(
                    "several secret keys are labelled {:?}; give each KEK a unique label",
                    parsed.object
                )));
            }
        };
        let id = session
            .get_attributes(key, &[AttributeType::Id])
            .map_err(ck)?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Id(id) if !id.is_empty() => Some(id),
                _ => None,
            });
        let version = match id {
            Some(id) => id.iter().map(|b| format!("{b:02x}")).collect(),
            None => format!("label:{}", parsed.object),
        };
        Ok(Pkcs11Kek {
            uri: uri.clone(),
            version,
            token: Arc::new(Token {
                lib,
                slot,
                pin,
                key,
                sessions: Mutex::new(vec![session]),
            }),
        })
    }

    /// The key's `CKA_ID` in hex (recorded as `kek_version`).
    pub fn key_version(&self) -> &str {
        &self.version
    }

    /// Runs `op` with a pooled session on a blocking thread.
    async fn with_session<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Session, ObjectHandle) -> Result<T, CkError> + Send + 'static,
    ) -> Result<T, KmsError> {
        let token = self.token.clone();
        let uri = self.uri.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = token.sessions.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let session = match pooled {
                Some(s) => s,
                None => {
                    let s = token.lib.open_rw_session(token.slot).map_err(|e| classify(&uri, &e))?;
                    // Login is per application; a new session of a logged-in application is logged in already.
                    match s.login(UserType::User, Some(&token.pin)) {
                        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                        Err(e) => return Err(classify(&uri, &e)),
                    }
                    s
                }
            };
            let result = op(&session, token.key).map_err(|e| classify(&uri, &e));
            token.sessions.lock().unwrap_or_else(|p| p.into_inner()).push(session);
            result
        })
        .await
        .map_err(|e| KmsError::Unavailable {
            kek: self.uri.to_string(),
            detail: format!("PKCS#11 task failed: {e}"),
        })?
    }
}

fn aad(ctx: &WrapContext) -> Vec<u8> {
    [AAD_LABEL, &ctx.encode()].concat()
}

#[async_trait::async_trait]
impl Kek for Pkcs11Kek {
    fn uri(&self) -> &KekUri {
        &self.uri
    }

    async fn wrap(&self, dek: &Dek, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let mut iv = [0u8; IV_LEN];
        rand::rng().fill_bytes(&mut iv);
        let aad = aad(ctx);
        let plain = Zeroizing::new(dek.as_bytes().to_vec());
        let sealed = self
            .with_session(move |session, key| {
                let mut iv_buf = iv;
                let params = GcmParams::new(&mut iv_buf, &aad, 128.into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, &plain)
            })
            .await?;
        let mut ciphertext = Vec::with_capacity(1 + IV_LEN + sealed.len());
        ciphertext.push(WRAP_VERSION);
        ciphertext.extend_from_slice(&iv);
        ciphertext.extend_from_slice(&sealed);
        Ok(WrappedDek {
            ciphertext,
            wrap_alg: WRAP_ALG.into(),
            kek_version: self.version.clone(),
            binding: None,
        })
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<Dek, KmsError> {
        KmsError::ensure_version(&self.uri, wrapped, &self.version)?;
        let invalid = || KmsError::InvalidCiphertext {
            kek: self.uri.to_string(),
        };
        let blob = &wrapped.ciphertext;
        if wrapped.wrap_alg != WRAP_ALG || blob.len() != 1 + IV_LEN + 32 + 16 || blob[0] != WRAP_VERSION {
            return Err(invalid());
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&blob[1..1 + IV_LEN]);
        let body = blob[1 + IV_LEN..].to_vec();
        let aad = aad(ctx);
        let plain = self
            .with_session(move |session, key| {
                let mut iv_buf = iv;
                let params = GcmParams::new(&mut iv_buf, &aad, 128.into())?;
                session
                    .decrypt(&Mechanism::AesGcm(params), key, &body)
                    .map(Zeroizing::new)
            })
            .await?;
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| invalid())?;
        Ok(Dek::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_file_is_read_trimmed_into_a_wiping_string() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "918273 \r\n").unwrap();
        // The type is the guarantee: `Zeroizing` wipes the PIN when it is dropped.
        let pin: Zeroizing<String> = read_pin_file(&path).unwrap();
        assert_eq!(pin.as_str(), "918273");
        std::fs::write(&path, "9".repeat(5000)).unwrap();
        let err = read_pin_file(&path).unwrap_err().to_string();
        assert!(!err.contains("999"), "{err}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_pin_file(&path).is_err());
    }
}
