//! `azurekeyvault://HOST/keys/KEY[/VERSION]`: a KEK in Azure Key Vault or Managed HSM (feature `azure`), where HOST
//! is the vault's host (`NAME.vault.azure.net`, `NAME.managedhsm.azure.net`, or a sovereign cloud's) and VERSION
//! optionally pins the key version used for new wraps. Tested against an in-repo protocol fake of the REST API.
//!
//! Wrapping is Key Vault `wrapKey`: `RSA-OAEP-256` for RSA keys, `A256KW` for the AES keys of a Managed HSM. Neither
//! takes associated data, so each wrap stores a binding tag (DESIGN.md §3): HMAC-SHA256 under a key derived from the
//! DEK by HKDF, over the wrap algorithm, the key version and the length-prefixed wrap context. It is checked after
//! every unwrap, so a wrapped DEK pasted into another row fails as [`KmsError::InvalidCiphertext`]. The `kid` that
//! Key Vault returns for each wrap (the key's URL with its exact version) is recorded as `kek_version`, and
//! `unwrapKey` is sent to that version, so a DEK wrapped before a key rotation still unwraps after it.
//!
//! Credentials come from the Azure SDK (`azure_identity`), never from the URI or the database: workload identity
//! when `AZURE_FEDERATED_TOKEN_FILE` is set, a service principal when `AZURE_CLIENT_SECRET` is set (with
//! `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`), otherwise the developer tools (`az login`, `azd auth login`) and then
//! managed identity, the first that answers being kept. Tokens are never logged or put into errors. The SDK retries
//! throttling (429) and transient failures (408, 5xx, connection errors) with exponential backoff, honouring
//! `Retry-After`; every call is bounded by an operation deadline.
//!
//! What this module does not do: create keys (make them with `az keyvault key create … --ops wrapKey unwrapKey`),
//! or rotate them (Key Vault's rotation policy does; old versions must stay enabled while wraps use them).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::{hkdf, hmac};
pub use azure_core;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::{ErrorKind, ErrorResponse};
use azure_core::http::ExponentialRetryOptions;
use azure_core::http::{ClientOptions, RequestContent, RetryOptions, Transport};
use azure_security_keyvault_keys::KeyClient;
use azure_security_keyvault_keys::KeyClientOptions;
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientGetKeyOptions, KeyClientWrapKeyOptions, KeyOperationParameters, KeyType,
};
use zeroize::Zeroizing;

use crate::Kek;
use crate::dek::{Dek, WrapContext, WrappedDek};
use crate::error::KmsError;
use crate::uri::KekUri;

/// Deadline for one Key Vault operation, retries included.
const OPERATION_DEADLINE: Duration = Duration::from_secs(15);
/// The domain label of the binding tag (HKDF salt and the MAC's first field).
const BINDING_LABEL: &[u8] = b"sesame/azure-keyvault-binding/v1";

/// The wrap algorithms, as recorded in `wrap_alg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WrapAlg {
    RsaOaep256,
    A256Kw,
}

impl WrapAlg {
    fn recorded(self) -> &'static str {
        match self {
            WrapAlg::RsaOaep256 => "AZURE-KV-RSA-OAEP-256",
            WrapAlg::A256Kw => "AZURE-KV-A256KW",
        }
    }

    fn from_recorded(s: &str) -> Option<WrapAlg> {
        [WrapAlg::RsaOaep256, WrapAlg::A256Kw]
            .into_iter()
            .find(|a| a.recorded() == s)
    }

    fn service(self) -> EncryptionAlgorithm {
        match self {
            WrapAlg::RsaOaep256 => EncryptionAlgorithm::RsaOaep256,
            WrapAlg::A256Kw => EncryptionAlgorithm::A256Kw,
        }
    }
}

/// How to reach Key Vault. The defaults are production's: the SDK's credential chain and HTTP client, exponential
/// retries, a 15-second deadline. Tests inject a credential, a transport that trusts their CA, and fast retries.
pub struct AzureKeyVaultOptions {
    /// The credential; `None` for the chain described in the module documentation.
    pub credential: Option<Arc<dyn TokenCredential>>,
    /// The HTTP transport; `None` for the SDK's default client.
    pub transport: Option<Transport>,
    /// The retry policy; `None` for exponential backoff within the deadline.
    pub retry: Option<RetryOptions>,
    /// Deadline for one operation, retries included.
    pub deadline: Duration,
}

impl Default for AzureKeyVaultOptions {
    fn default() -> Self {
        AzureKeyVaultOptions {
            credential: None,
            transport: None,
            retry: None,
            deadline: OPERATION_DEADLINE,
        }
    }
}

impl fmt::Debug for AzureKeyVaultOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultOptions")
            .field("credential", &self.credential.as_ref().map(|_| "[custom]"))
            .field("transport", &self.transport.as_ref().map(|_| "[custom]"))
            .field("retry", &self.retry)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// What an `azurekeyvault://` URI names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Location {
    /// `host[:port]`, lowercased.
    authority: String,
    key: String,
    version: Option<String>,
}

impl Location {
    fn parse(uri: &KekUri) -> Result<Location, KmsError> {
        let invalid = |why: &str| KmsError::InvalidUri {
            reason: format!("{uri}: {why} (expected azurekeyvault://NAME.vault.azure.net/keys/KEY[/VERSION])"),
        };
        let rest = uri.rest();
        if rest.contains('?') || rest.contains('#') {
            return Err(invalid("no query parameters are supported"));
        }
        let (authority, path) = rest.split_once('/').ok_or_else(|| invalid("no key path"))?;
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host_ok = host.contains('.')
            && !host.starts_with('.')
            && !host.ends_with('.')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(invalid("the vault host is not a DNS name"));
        }
        let mut parts = path.split('/');
        let (Some("keys"), Some(key), version, None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("the path must be /keys/KEY or /keys/KEY/VERSION"));
        };
        // Key Vault object names: 1-127 characters from [0-9a-zA-Z-]; versions are alphanumeric.
        if key.is_empty() || key.len() > 127 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid("the key name must be 1-127 characters from [0-9a-zA-Z-]"));
        }
        if version.is_some_and(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric())) {
            return Err(invalid("the key version must be alphanumeric"));
        }
        Ok(Location {
            authority: authority.to_ascii_lowercase(),
            key: key.to_owned(),
            version: version.map(str::to_owned),
        })
    }

    fn endpoint(&self) -> String {
        format!("https://{}/", self.authority)
    }

    /// The key's identifier without a version, as `kid`s start.
    fn key_id(&self) -> String {
        format!("https://{}/keys/{}", self.authority, self.key)
    }

    /// The version named by a `kid` of this key (`https://HOST/keys/KEY/VERSION`); `None` for another key's.
    fn version_of<'k>(&self, kid: &'k str) -> Option<&'k str> {
        let rest = kid.strip_prefix("https://")?;
        let (authority, path) = rest.split_once('/')?;
        let mut parts = path.split('/');
        let (Some("keys"), Some(key), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        // Host names and Key Vault key names are case-insensitive.
        let same = authority.eq_ignore_ascii_case(&self.authority) && key.eq_ignore_ascii_case(&self.key);
        (same && !version.is_empty() && version.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(version)
    }
}

/// The binding tag of a wrap: HMAC-SHA256 under `HKDF-SHA256(salt = label, ikm = DEK, info = "binding")`, over
/// `label || alg || kid || context`, each length-prefixed (the context's encoding prefixes its own fields).
fn binding_key(dek: &Dek) -> hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, BINDING_LABEL).extract(dek.as_bytes());
    match prk.expand(&[b"binding"], hmac::HMAC_SHA256) {
        Ok(okm) => hmac::Key::from(okm),
        // Invariant: expanding 32 bytes from SHA-256 is far below HKDF's 255 * 32-byte limit, so this is unreachable;
        // a key derived from fixed bytes would only make every binding check fail, never pass.
        Err(_) => hmac::Key::new(hmac::HMAC_SHA256, BINDING_LABEL),
    }
}

fn binding_message(alg: WrapAlg, kid: &str, ctx: &WrapContext) -> Vec<u8> {
    let mut msg = Vec::new();
    for field in [BINDING_LABEL, alg.recorded().as_bytes(), kid.as_bytes()] {
        // Labels, algorithm names and key URLs are far below 4 GiB.
        msg.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        msg.extend_from_slice(field);
    }
    msg.extend_from_slice(&ctx.encode());
    msg
}

/// Classifies a Key Vault error response for the edge: the HTTP status, the error `code`, the `innererror` code
/// (`KeyDisabled`, `ForbiddenByRbac`, …) and the message. `unwrapping` says whether the call was `unwrapKey`, where a
/// 400 means the wrapped bytes were refused.
pub fn classify_response(
    kek: &str,
    status: u16,
    code: Option<&str>,
    inner: Option<&str>,
    message: &str,
    unwrapping: bool,
) -> KmsError {
    let kek = kek.to_owned();
    let detail = format!(
        "HTTP {status} {}{}: {message}",
        code.unwrap_or("error"),
        inner.map(|i| format!("/{i}")).unwrap_or_default()
    );
    let disabled = inner.is_some_and(|i| i.eq_ignore_ascii_case("KeyDisabled"))
        || message.to_ascii_lowercase().contains("disabled key");
    match status {
        401 => KmsError::PermissionDenied {
            kek,
            detail: format!("authentication failed: {detail}"),
        },
        403 if disabled => KmsError::Disabled { kek },
        403 => KmsError::PermissionDenied { kek, detail },
        404 => KmsError::NotFound { kek, detail },
        400 if unwrapping => KmsError::InvalidCiphertext { kek },
        400 => KmsError::Config {
            kek,
            reason: format!("Key Vault refused the request: {detail}"),
        },
        429 => KmsError::Throttled { kek },
        _ => KmsError::Unavailable { kek, detail },
    }
}

fn classify(kek: &KekUri, e: &azure_core::Error, unwrapping: bool) -> KmsError {
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let body: Option<ErrorResponse> = raw_response
                .as_ref()
                .and_then(|raw| serde_json::from_slice(raw.body().as_ref()).ok());
            let detail = body.and_then(|b| b.error);
            let code = detail
                .as_ref()
                .and_then(|d| d.code.clone())
                .or_else(|| error_code.clone());
            let inner = detail
                .as_ref()
                .and_then(|d| d.inner_error.as_ref())
                .and_then(|i| i.code.clone());
            let message = detail.and_then(|d| d.message).unwrap_or_default();
            classify_response(
                kek.as_str(),
                u16::from(*status),
                code.as_deref(),
                inner.as_deref(),
                &message,
                unwrapping,
            )
        }
        ErrorKind::Credential => KmsError::PermissionDenied {
            kek: kek.to_string(),
            detail: format!("could not get an Azure access token: {e}"),
        },
        _ => KmsError::Unavailable {
            kek: kek.to_string(),
            detail: e.to_string(),
        },
    }
}

/// A KEK in Azure Key Vault or Managed HSM.
pub struct AzureKeyVaultKek {
    uri: KekUri,
    client: KeyClient,
    location: Location,
    alg: WrapAlg,
    deadline: Duration,
}

kek_debug!(AzureKeyVaultKek { "uri" = uri, "alg" = alg });

impl AzureKeyVaultKek {
    /// Connects with the SDK's credential chain and checks that the key exists, is enabled, and can wrap.
    pub async fn open(uri: &KekUri) -> Result<AzureKeyVaultKek, KmsError> {
        AzureKeyVaultKek::open_with(uri, AzureKeyVaultOptions::default()).await
    }

    /// [`AzureKeyVaultKek::open`] with explicit options (a credential, a transport, a retry policy).
    pub async fn open_with(uri: &KekUri, opts: AzureKeyVaultOptions) -> Result<AzureKeyVaultKek, KmsError> {
        let location = Location::parse(uri)?;
        let credential = match opts.credential {
            Some(c) => c,
            None => default_credential(uri)?,
        };
        let deadline = opts.deadline;
        let retry = opts.retry.unwrap_or_else(|| {
            RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_retries: 6,
                max_total_elapsed: azure_core::time::Duration::try_from(deadline)
                    .unwrap_or(azure_core::time::Duration::seconds(15)),
                max_delay: azure_core::time::Duration::seconds(5),
            })
        });
        let client_options = ClientOptions {
            retry,
            transport: opts.transport,
            ..Default::default()
        };
        let client = KeyClient::new(
            &location.endpoint(),
            credential,
            Some(KeyClientOptions {
                client_options,
                ..Default::default()
            }),
        )
        .map_err(|e| KmsError::InvalidUri {
            reason: format!("{uri}: {e}"),
        })?;
        let mut kek = AzureKeyVaultKek {
            uri: uri.clone(),
            client,
            location,
            alg: WrapAlg::RsaOaep256,
            deadline,
        };
        kek.alg = kek.inspect_key().await?;
        Ok(kek)
    }

    /// Reads the key (the pinned version, or the current one): it must exist, be enabled, and be RSA or AES.
    async fn inspect_key(&self) -> Result<WrapAlg, KmsError> {
        let options = KeyClientGetKeyOptions {
            key_version: self.location.version.clone(),
            ..Default::default()
        };
        let call = async {
            self.client
                .get_key(&self.location.key, Some(options))
                .await?
                .into_model()
        };
        let key = self.bounded(call, false).await?;
        if key.attributes.as_ref().and_then(|a| a.enabled) == Some(false) {
            return Err(KmsError::Disabled {
                kek: self.uri.to_string(),
            });
        }
        let kty = key.key.as_ref().and_then(|k| k.kty.clone());
        match kty {
            Some(KeyType::Rsa | KeyType::RsaHsm) => Ok(WrapAlg::RsaOaep256),
            Some(KeyType::Oct | KeyType::OctHsm) => Ok(WrapAlg::A256Kw),
            other => Err(KmsError::Config {
                kek: self.uri.to_string(),
                reason: format!("key type {other:?} cannot wrap keys: use an RSA key, or an AES key of a Managed HSM"),
            }),
        }
    }

    /// Runs one Key Vault call under the deadline and classifies its error.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = azure_core::Result<T>>,
        unwrapping: bool,
    ) -> Result<T, KmsError> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&self.uri, &e, unwrapping)),
            Err(_) => Err(KmsError::Unavailable {
                kek: self.uri.to_string(),
                detail: format!("no answer within {:?}", self.deadline),
            }),
        }
    }

    fn invalid(&self) -> KmsError {
        KmsError::InvalidCiphertext {
            kek: self.uri.to_string(),
        }
    }
}

fn parameters(alg: WrapAlg, value: Vec<u8>) -> Result<RequestContent<KeyOperationParameters>, azure_core::Error> {
    KeyOperationParameters {
        algorithm: Some(alg.service()),
        value: Some(value),
        ..Default::default()
    }
    .try_into()
}

#[async_trait::async_trait]
impl Kek for AzureKeyVaultKek {
    fn uri(&self) -> &KekUri {
        &self.uri
    }

    async fn wrap(&self, dek: &Dek, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let options = KeyClientWrapKeyOptions {
            key_version: self.location.version.clone(),
            ..Default::default()
        };
        let call = async {
            let params = parameters(self.alg, dek.as_bytes().to_vec())?;
            self.client
                .wrap_key(&self.location.key, params, Some(options))
                .await?
                .into_model()
        };
        let out = self.bounded(call, false).await?;
        let unexpected = |what: &str| KmsError::Unavailable {
            kek: self.uri.to_string(),
            detail: format!("wrapKey returned {what}"),
        };
        let kid = out.kid.ok_or_else(|| unexpected("no kid"))?;
        if self.location.version_of(&kid).is_none() {
            return Err(unexpected("the kid of another key"));
        }
        let ciphertext = out
            .result
            .filter(|r| !r.is_empty())
            .ok_or_else(|| unexpected("no value"))?;
        let tag = hmac::sign(&binding_key(dek), &binding_message(self.alg, &kid, ctx));
        Ok(WrappedDek {
            ciphertext,
            wrap_alg: self.alg.recorded().into(),
            kek_version: kid,
            binding: Some(tag.as_ref().to_vec()),
        })
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<Dek, KmsError> {
        let alg = WrapAlg::from_recorded(&wrapped.wrap_alg).ok_or_else(|| self.invalid())?;
        let Some(version) = self.location.version_of(&wrapped.kek_version) else {
            return Err(KmsError::KeyMismatch {
                kek: self.uri.to_string(),
                wrapped_by: wrapped.kek_version.clone(),
                configured: self.location.key_id(),
            });
        };
        let tag = wrapped.binding.as_deref().ok_or_else(|| self.invalid())?;
        if wrapped.ciphertext.is_empty() {
            return Err(self.invalid());
        }
        let call = async {
            let params = parameters(alg, wrapped.ciphertext.clone())?;
            self.client
                .unwrap_key(&self.location.key, version, params, None)
                .await?
                .into_model()
        };
        let out = self.bounded(call, true).await?;
        let plain = Zeroizing::new(out.result.unwrap_or_default());
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| self.invalid())?;
        let dek = Dek::from_bytes(bytes);
        hmac::verify(
            &binding_key(&dek),
            &binding_message(alg, &wrapped.kek_version, ctx),
            tag,
        )
        .map_err(|_| self.invalid())?;
        Ok(dek)
    }
}

/// The production credential: see the module documentation.
fn default_credential(uri: &KekUri) -> Result<Arc<dyn TokenCredential>, KmsError> {
    let config = |e: azure_core::Error| KmsError::Config {
        kek: uri.to_string(),
        reason: format!("Azure credential: {e}"),
    };
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("AZURE_FEDERATED_TOKEN_FILE") {
        return Ok(azure_identity::WorkloadIdentityCredential::new(None).map_err(config)?);
    }
    if set("AZURE_CLIENT_SECRET") {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| KmsError::Config {
                kek: uri.to_string(),
                reason: format!("AZURE_CLIENT_SECRET is set but {name} is not"),
            })
        };
        let secret = azure_core::credentials::Secret::new(var("AZURE_CLIENT_SECRET")?);
        return Ok(azure_identity::ClientSecretCredential::new(
            &var("AZURE_TENANT_ID")?,
            var("AZURE_CLIENT_ID")?,
            secret,
            None,
        )
        .map_err(config)?);
    }
    let managed =
        azure_identity::ManagedIdentityCredential::new(Some(azure_identity::ManagedIdentityCredentialOptions {
            user_assigned_id: std::env::var("AZURE_CLIENT_ID")
                .ok()
                .filter(|v| !v.is_empty())
                .map(azure_identity::UserAssignedId::ClientId),
            ..Default::default()
        }))
        .map_err(config)?;
    let tools = azure_identity::DeveloperToolsCredential::new(None).map_err(config)?;
    Ok(Arc::new(FirstThatAnswers {
        sources: vec![tools, managed],
        chosen: AtomicUsize::new(usize::MAX),
    }))
}

/// Tries its sources in order until one gives a token, then keeps using that one.
#[derive(Debug)]
struct FirstThatAnswers {
    sources: Vec<Arc<dyn TokenCredential>>,
    chosen: AtomicUsize,
}

#[async_trait::async_trait]
impl TokenCredential for FirstThatAnswers {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(source) = self.sources.get(self.chosen.load(Ordering::Relaxed)) {
            return source.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    self.chosen.store(i, Ordering::Relaxed);
                    return Ok(token);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "no Azure credential answered (set AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, run `az login`, \
                 or run with a managed identity): {}",
                failures.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> Result<Location, KmsError> {
        Location::parse(&s.parse::<KekUri>().unwrap())
    }

    #[test]
    fn uris_parse() {
        let l = loc("azurekeyvault://My-Vault.vault.azure.net/keys/kek-1").unwrap();
        assert_eq!(l.authority, "my-vault.vault.azure.net");
        assert_eq!(l.key, "kek-1");
        assert_eq!(l.version, None);
        assert_eq!(l.endpoint(), "https://my-vault.vault.azure.net/");
        let l = loc("azurekeyvault://h.managedhsm.azure.net:8443/keys/k/0123abcd").unwrap();
        assert_eq!(l.authority, "h.managedhsm.azure.net:8443");
        assert_eq!(l.version.as_deref(), Some("0123abcd"));
        for bad in [
            "azurekeyvault://vault.azure.net",
            "azurekeyvault://v.vault.azure.net/secrets/k",
            "azurekeyvault://v.vault.azure.net/keys/",
            "azurekeyvault://v.vault.azure.net/keys/k/v/x",
            "azurekeyvault://v.vault.azure.net/keys/k_1",
            "azurekeyvault://v.vault.azure.net/keys/k?endpoint=x",
            "azurekeyvault://localhost/keys/k",
            "azurekeyvault://v.vault.azure.net:x/keys/k",
        ] {
            assert!(matches!(loc(bad), Err(KmsError::InvalidUri { .. })), "{bad}");
        }
    }

    #[test]
    fn kids_name_a_version_of_this_key_only() {
        let l = loc("azurekeyvault://v.vault.azure.net/keys/kek").unwrap();
        assert_eq!(
            l.version_of("https://V.vault.azure.net/keys/KEK/abc123"),
            Some("abc123")
        );
        for other in [
            "https://w.vault.azure.net/keys/kek/abc123",
            "https://v.vault.azure.net/keys/kek2/abc123",
            "https://v.vault.azure.net/keys/kek/",
            "https://v.vault.azure.net/keys/kek",
            "https://v.vault.azure.net/keys/kek/a/b",
            "http://v.vault.azure.net/keys/kek/abc123",
            "https://v.vault.azure.net/keys/kek/../x",
        ] {
            assert_eq!(l.version_of(other), None, "{other}");
        }
    }

    /// The fake models these, but the real service's codes are pinned here too.
    #[test]
    fn responses_are_classified() {
        let k = "azurekeyvault://v.vault.azure.net/keys/k";
        type Check = fn(&KmsError) -> bool;
        /// Status, error code, inner error code, message, whether unwrapping, and the expected class.
        type Case = (
            u16,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
            bool,
            Check,
        );
        let cases: [Case; 9] = [
            (401, Some("Unauthorized"), None, "AKV10000", false, |e| {
                matches!(e, KmsError::PermissionDenied { .. })
            }),
            (403, Some("Forbidden"), Some("ForbiddenByRbac"), "no", false, |e| {
                matches!(e, KmsError::PermissionDenied { .. })
            }),
            (403, Some("Forbidden"), Some("KeyDisabled"), "x", false, |e| {
                matches!(e, KmsError::Disabled { .. })
            }),
            (
                403,
                Some("Forbidden"),
                None,
                "Operation get is not allowed on a disabled key.",
                false,
                |e| matches!(e, KmsError::Disabled { .. }),
            ),
            (404, Some("KeyNotFound"), None, "m", false, |e| {
                matches!(e, KmsError::NotFound { .. })
            }),
            (400, Some("BadParameter"), None, "m", true, |e| {
                matches!(e, KmsError::InvalidCiphertext { .. })
            }),
            (400, Some("BadParameter"), None, "m", false, |e| {
                matches!(e, KmsError::Config { .. }) && !e.is_retryable()
            }),
            (429, Some("Throttled"), None, "m", false, |e| {
                matches!(e, KmsError::Throttled { .. }) && e.is_retryable()
            }),
            (503, Some("ServiceUnavailable"), None, "m", false, |e| {
                matches!(e, KmsError::Unavailable { .. }) && e.is_retryable()
            }),
        ];
        for (status, code, inner, message, unwrapping, check) in cases {
            let e = classify_response(k, status, code, inner, message, unwrapping);
            assert!(check(&e), "{status} {code:?} {inner:?} -> {e:?}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn the_binding_covers_every_field() {
        let dek = Dek::from_bytes([7; 32]);
        let key = binding_key(&dek);
        let ctx = WrapContext::new().with("dek", "d").with("scope", "s");
        let tag = hmac::sign(&key, &binding_message(WrapAlg::RsaOaep256, "https://v/keys/k/1", &ctx));
        for (alg, kid, c) in [
            (WrapAlg::A256Kw, "https://v/keys/k/1", ctx.clone()),
            (WrapAlg::RsaOaep256, "https://v/keys/k/2", ctx.clone()),
            (
                WrapAlg::RsaOaep256,
                "https://v/keys/k/1",
                WrapContext::new().with("dek", "d"),
            ),
        ] {
            assert!(hmac::verify(&key, &binding_message(alg, kid, &c), tag.as_ref()).is_err());
        }
        let other = binding_key(&Dek::from_bytes([8; 32]));
        let msg = binding_message(WrapAlg::RsaOaep256, "https://v/keys/k/1", &ctx);
        assert!(hmac::verify(&other, &msg, tag.as_ref()).is_err());
        assert!(hmac::verify(&key, &msg, tag.as_ref()).is_ok());
    }
}
