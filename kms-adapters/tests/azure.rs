//! The Azure Key Vault adapter against a **protocol fake** of Key Vault (`fake_keyvault/`), **not Azure**: no
//! offline peer of Key Vault exists, so the fake answers the REST calls the official client makes, in the documented
//! shapes (bearer challenge, `api-version`, base64url values, `kid`s with versions, error bodies), with real
//! RSA-OAEP-256 and AES key wrap behind them. It runs in-process over TLS on a loopback port; the client reaches it
//! through an injected HTTP transport that resolves the vault's host name to that port and trusts only the fake's
//! certificate. Credentials are an injected static token. Retries are fast here so that failures do not hang.

mod fake_keyvault;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fake_keyvault::{API_VERSION, FORBIDDEN_TOKEN, FakeKeyVault, GOOD_TOKEN};
use sesame_kms::azure::azure_core;
use sesame_kms::azure::{AzureKeyVaultKek, AzureKeyVaultOptions};
use sesame_kms::{Dek, Kek, KekUri, KmsError, WrapContext, conformance};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ExponentialRetryOptions, RetryOptions, Transport};

const VAULT: &str = "sesame-test.vault.azure.net";
const HSM: &str = "sesame-test.managedhsm.azure.net";

fn fake() -> &'static FakeKeyVault {
    static FAKE: OnceLock<FakeKeyVault> = OnceLock::new();
    FAKE.get_or_init(FakeKeyVault::start)
}

/// A credential that hands out one fixed token and records the scopes asked for.
#[derive(Debug)]
struct StaticToken(&'static str);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(&self, scopes: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        // The scope comes from the challenge's resource.
        assert!(
            scopes == ["https://vault.azure.net/.default"] || scopes == ["https://managedhsm.azure.net/.default"],
            "{scopes:?}"
        );
        Ok(AccessToken::new(
            self.0,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

fn options(token: &'static str) -> AzureKeyVaultOptions {
    let f = fake();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(f.ca_pem.as_bytes()).unwrap()])
        .resolve(VAULT, f.addr)
        .resolve(HSM, f.addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    AzureKeyVaultOptions {
        credential: Some(Arc::new(StaticToken(token))),
        transport: Some(Transport::new(Arc::new(http))),
        retry: Some(RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(10),
            max_retries: 3,
            max_total_elapsed: azure_core::time::Duration::seconds(10),
            max_delay: azure_core::time::Duration::milliseconds(100),
        })),
        deadline: Duration::from_secs(20),
    }
}

fn uri(host: &str, key: &str) -> KekUri {
    // The port is part of the vault's URL here only because the fake listens on a loopback port.
    format!("azurekeyvault://{host}:{}/keys/{key}", fake().addr.port())
        .parse()
        .unwrap()
}

async fn open(key: &str) -> Result<AzureKeyVaultKek, KmsError> {
    AzureKeyVaultKek::open_with(&uri(VAULT, key), options(GOOD_TOKEN)).await
}

fn ctx() -> WrapContext {
    WrapContext::new().with("dek", "d1").with("scope", "stack:org:p/s")
}

#[tokio::test]
async fn the_fake_passes_the_suite() {
    fake().create_rsa_key("suite-a");
    fake().create_rsa_key("suite-b");
    let a = open("suite-a").await.unwrap();
    let b = open("suite-b").await.unwrap();
    conformance::run_all(&a, &b).await;
}

#[tokio::test]
async fn managed_hsm_aes_keys_wrap_with_a256kw() {
    fake().create_aes_key("hsm-a");
    fake().create_aes_key("hsm-b");
    let a = AzureKeyVaultKek::open_with(&uri(HSM, "hsm-a"), options(GOOD_TOKEN))
        .await
        .unwrap();
    let b = AzureKeyVaultKek::open_with(&uri(HSM, "hsm-b"), options(GOOD_TOKEN))
        .await
        .unwrap();
    let w = a.wrap(&Dek::generate(), &ctx()).await.unwrap();
    assert_eq!(w.wrap_alg, "AZURE-KV-A256KW");
    assert_eq!(w.ciphertext.len(), 40);
    conformance::run_all(&a, &b).await;
}

#[tokio::test]
async fn the_wire_follows_the_protocol() {
    let v1 = fake().create_rsa_key("wire");
    let kek = open("wire").await.unwrap();
    let dek = Dek::generate();
    let wrapped = kek.wrap(&dek, &ctx()).await.unwrap();
    assert_eq!(kek.unwrap(&wrapped, &ctx()).await.unwrap().as_bytes(), dek.as_bytes());
    let port = fake().addr.port();
    assert_eq!(wrapped.kek_version, format!("https://{VAULT}:{port}/keys/wire/{v1}"));
    assert_eq!(wrapped.wrap_alg, "AZURE-KV-RSA-OAEP-256");
    assert_eq!(wrapped.ciphertext.len(), 256);
    assert_eq!(wrapped.binding.as_ref().map(Vec::len), Some(32));
    let q = format!("api-version={API_VERSION}");
    assert_eq!(
        fake().requests_for("wire"),
        [
            // The first request goes out without a token (and without its body) to provoke the challenge.
            format!("GET /keys/wire/?{q} auth=no"),
            format!("GET /keys/wire/?{q} auth=yes"),
            // No version: the current one, through the empty path segment.
            format!("POST /keys/wire//wrapkey?{q} auth=yes"),
            // Unwrap names the version the wrap recorded.
            format!("POST /keys/wire/{v1}/unwrapkey?{q} auth=yes"),
        ]
    );
}

#[tokio::test]
async fn a_missing_key_is_not_found() {
    let err = open("never-created").await.unwrap_err();
    assert!(matches!(err, KmsError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("KeyNotFound"), "{err}");
    // A version that does not exist is not found either.
    fake().create_rsa_key("versioned");
    let pinned: KekUri = format!("{}/0123456789abcdef0123456789abcdef", uri(VAULT, "versioned"))
        .parse()
        .unwrap();
    let err = AzureKeyVaultKek::open_with(&pinned, options(GOOD_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn a_disabled_key_is_reported_as_disabled() {
    fake().create_rsa_key("disabled");
    let kek = open("disabled").await.unwrap();
    let wrapped = kek.wrap(&Dek::generate(), &ctx()).await.unwrap();
    fake().set_enabled("disabled", None, false);
    let err = kek.wrap(&Dek::generate(), &ctx()).await.unwrap_err();
    assert!(matches!(err, KmsError::Disabled { .. }), "{err}");
    let err = kek.unwrap(&wrapped, &ctx()).await.unwrap_err();
    assert!(matches!(err, KmsError::Disabled { .. }), "{err}");
    let err = open("disabled").await.unwrap_err();
    assert!(matches!(err, KmsError::Disabled { .. }), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    fake().create_rsa_key("guarded");
    // A caller the vault knows but who may not use keys: 403.
    let err = AzureKeyVaultKek::open_with(&uri(VAULT, "guarded"), options(FORBIDDEN_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::PermissionDenied { .. }), "{err}");
    assert!(err.to_string().contains("ForbiddenByRbac"), "{err}");
    // A token the vault does not accept: 401 even after answering the challenge.
    let err = AzureKeyVaultKek::open_with(&uri(VAULT, "guarded"), options("not-a-valid-token"))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::PermissionDenied { .. }), "{err}");
    assert!(!err.is_retryable());
    // Neither message shows a token.
    assert!(!err.to_string().contains("not-a-valid-token"), "{err}");
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_reported() {
    fake().create_rsa_key("busy");
    let kek = open("busy").await.unwrap();
    // Two 429s, then success: the caller sees only the success.
    fake().throttle("busy", 2);
    let dek = Dek::generate();
    let wrapped = kek.wrap(&dek, &ctx()).await.unwrap();
    assert_eq!(kek.unwrap(&wrapped, &ctx()).await.unwrap().as_bytes(), dek.as_bytes());
    // More 429s than the retries allow: a retryable Throttled.
    fake().throttle("busy", 100);
    let err = kek.wrap(&dek, &ctx()).await.unwrap_err();
    assert!(matches!(err, KmsError::Throttled { .. }), "{err}");
    assert!(err.is_retryable());
    fake().throttle("busy", 0);
}

#[tokio::test]
async fn an_operation_past_its_deadline_is_unavailable() {
    fake().create_rsa_key("slow");
    let mut opts = options(GOOD_TOKEN);
    opts.deadline = Duration::from_millis(1500);
    let kek = AzureKeyVaultKek::open_with(&uri(VAULT, "slow"), opts).await.unwrap();
    // Each 429 asks for a one-second wait, so the retries cannot finish inside the deadline.
    fake().throttle("slow", 100);
    let err = kek.wrap(&Dek::generate(), &ctx()).await.unwrap_err();
    assert!(matches!(err, KmsError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    fake().throttle("slow", 0);
}

#[tokio::test]
async fn wraps_made_before_a_rotation_still_unwrap() {
    let v1 = fake().create_rsa_key("rotating");
    let kek = open("rotating").await.unwrap();
    let (d1, d2) = (Dek::generate(), Dek::generate());
    let w1 = kek.wrap(&d1, &ctx()).await.unwrap();
    assert!(w1.kek_version.ends_with(&v1), "{}", w1.kek_version);
    let v2 = fake().create_rsa_key("rotating");
    let w2 = kek.wrap(&d2, &ctx()).await.unwrap();
    assert!(
        w2.kek_version.ends_with(&v2),
        "new wraps use the current version: {}",
        w2.kek_version
    );
    assert_eq!(kek.unwrap(&w1, &ctx()).await.unwrap().as_bytes(), d1.as_bytes());
    assert_eq!(kek.unwrap(&w2, &ctx()).await.unwrap().as_bytes(), d2.as_bytes());
    // Unwrap really goes to the recorded version: disabling v1 stops w1, not w2.
    fake().set_enabled("rotating", Some(&v1), false);
    let err = kek.unwrap(&w1, &ctx()).await.unwrap_err();
    assert!(matches!(err, KmsError::Disabled { .. }), "{err}");
    assert_eq!(kek.unwrap(&w2, &ctx()).await.unwrap().as_bytes(), d2.as_bytes());
    // Swapping the recorded version for the other one is refused (RSA-OAEP fails, or the binding does).
    let mut swapped = w2.clone();
    swapped.kek_version = w1.kek_version.replace(&v1, &v2);
    swapped.ciphertext = w1.ciphertext.clone();
    assert!(matches!(
        kek.unwrap(&swapped, &ctx()).await,
        Err(KmsError::InvalidCiphertext { .. })
    ));
}

#[tokio::test]
async fn a_pinned_version_is_used_for_new_wraps() {
    let v1 = fake().create_rsa_key("pinned");
    fake().create_rsa_key("pinned");
    let pinned: KekUri = format!("{}/{v1}", uri(VAULT, "pinned")).parse().unwrap();
    let kek = AzureKeyVaultKek::open_with(&pinned, options(GOOD_TOKEN)).await.unwrap();
    let dek = Dek::generate();
    let w = kek.wrap(&dek, &ctx()).await.unwrap();
    assert!(w.kek_version.ends_with(&v1), "{}", w.kek_version);
    assert_eq!(kek.unwrap(&w, &ctx()).await.unwrap().as_bytes(), dek.as_bytes());
}

#[tokio::test]
async fn the_binding_tag_is_checked() {
    fake().create_rsa_key("bound");
    let kek = open("bound").await.unwrap();
    let wrapped = kek.wrap(&Dek::generate(), &ctx()).await.unwrap();
    let mut no_tag = wrapped.clone();
    no_tag.binding = None;
    let mut bad_tag = wrapped.clone();
    bad_tag.binding.as_mut().unwrap()[0] ^= 1;
    let mut short_tag = wrapped.clone();
    short_tag.binding.as_mut().unwrap().truncate(16);
    for w in [no_tag, bad_tag, short_tag] {
        let r = kek.unwrap(&w, &ctx()).await;
        assert!(matches!(r, Err(KmsError::InvalidCiphertext { .. })), "{r:?}");
    }
    // A wrap recorded under another key of the same vault names that key: a key mismatch.
    let mut elsewhere = wrapped.clone();
    elsewhere.kek_version = elsewhere.kek_version.replace("/keys/bound/", "/keys/other/");
    let r = kek.unwrap(&elsewhere, &ctx()).await;
    assert!(matches!(r, Err(KmsError::KeyMismatch { .. })), "{r:?}");
}
