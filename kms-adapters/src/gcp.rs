//! `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N][?endpoint=…]`: a KEK in Google
//! Cloud KMS (feature `gcp`), through the official client `google-cloud-kms-v1` (REST). Tested against an in-repo
//! protocol fake of the Cloud KMS REST API (`tests/gcp.rs`), not against Google.
//!
//! Wrapping is Cloud KMS `Encrypt` of the DEK with `additionalAuthenticatedData` = the canonical length-prefixed
//! encoding of the [`WrapContext`] (the same bytes the AWS adapter sends as `sesame:ctx`), so a wrapped DEK copied to
//! another row does not decrypt. Every call carries CRC32C checksums of what it sends, and every answer's checksums
//! are checked (`verifiedPlaintextCrc32c`, `verifiedAdditionalAuthenticatedDataCrc32c`, `ciphertextCrc32c` on
//! `Encrypt`; `plaintextCrc32c` on `Decrypt`): a mismatch means corruption in transit and fails as
//! [`KmsError::Unavailable`] (retryable), never as a wrong key.
//!
//! The CryptoKeyVersion that `Encrypt` reports (`…/cryptoKeyVersions/N`) is recorded as `kek_version`. `Decrypt`
//! takes the CryptoKey (Cloud KMS finds the version inside the ciphertext), so a DEK wrapped before a rotation still
//! unwraps once another version is primary; a wrap recorded under another CryptoKey is refused locally as
//! [`KmsError::KeyMismatch`]. A URI that names a version pins new wraps to it.
//!
//! Credentials come from the client's usual chain (Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's user credentials, the metadata server); none is stored or logged. An `endpoint=` with plain `http://`
//! (allowed to loopback only, for test servers) is called without credentials, so a token never crosses plain HTTP.
//! `RESOURCE_EXHAUSTED` (429) and `UNAVAILABLE` (503) are retried with exponential backoff, within a deadline per
//! operation. Opening makes no call (the encrypter/decrypter role cannot read key metadata); the first wrap does, and
//! registering a KEK always wraps and unwraps a test key first. Keys are never created here.

use std::time::Duration;

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::options::RequestOptionsBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt, TooManyRequests};
use google_cloud_kms_v1::client::KeyManagementService;
use zeroize::Zeroizing;

use crate::Kek;
use crate::dek::{Dek, WrapContext, WrappedDek};
use crate::error::KmsError;
use crate::uri::{GcpKeyRef, KekUri};

const WRAP_ALG: &str = "GCP-KMS-GOOGLE_SYMMETRIC_ENCRYPTION";

/// Retry and deadline settings of the Cloud KMS client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcpOptions {
    /// Deadline for one operation, retries and backoff included.
    pub deadline: Duration,
    /// The first backoff after a retryable error (jittered, doubling).
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Default for GcpOptions {
    /// 15 s per operation (as the AWS adapter), backoff from 200 ms up to 3 s.
    fn default() -> Self {
        GcpOptions {
            deadline: Duration::from_secs(15),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
        }
    }
}

/// A KEK in Google Cloud KMS.
pub struct GcpKmsKek {
    uri: KekUri,
    client: KeyManagementService,
    key: GcpKeyRef,
    deadline: Duration,
}

kek_debug!(GcpKmsKek { "uri" = uri, "key_name" = key.key_name });

/// Which call failed: `INVALID_ARGUMENT` means a bad ciphertext or context only on `Decrypt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `Encrypt`.
    Encrypt,
    /// `Decrypt`.
    Decrypt,
}

/// Classifies a `google.rpc.Status` code of a Cloud KMS answer for the edge.
pub fn classify_status(kek: &str, call: Call, code: Code, message: &str) -> KmsError {
    let kek = kek.to_owned();
    let detail = format!("{}: {message}", code.name());
    match code {
        Code::NotFound => KmsError::NotFound { kek, detail },
        Code::PermissionDenied | Code::Unauthenticated => KmsError::PermissionDenied { kek, detail },
        // Cloud KMS answers FAILED_PRECONDITION when the version is disabled, destroyed or pending destruction.
        Code::FailedPrecondition => KmsError::Disabled { kek },
        Code::ResourceExhausted => KmsError::Throttled { kek },
        // A ciphertext that does not decrypt under this key and AAD (altered, another row, another key).
        Code::InvalidArgument if call == Call::Decrypt => KmsError::InvalidCiphertext { kek },
        // On Encrypt, our own request is wrong: a checksum the service saw differently (corrupted in transit) is
        // the one case that can happen, so it is reported as retryable.
        _ => KmsError::Unavailable { kek, detail },
    }
}

/// Classifies an HTTP status without a `google.rpc.Status` body (a proxy or load balancer answered).
fn classify_http(kek: &str, call: Call, status: u16, detail: String) -> KmsError {
    let code = match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 | 412 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        _ => Code::Unavailable,
    };
    if code == Code::InvalidArgument && call == Call::Decrypt {
        // An empty 400 proves nothing about the ciphertext.
        return KmsError::Unavailable {
            kek: kek.to_owned(),
            detail: format!("HTTP {status}: {detail}"),
        };
    }
    classify_status(kek, call, code, &format!("HTTP {status}: {detail}"))
}

fn classify(kek: &GcpKmsKek, call: Call, e: &google_cloud_kms_v1::Error) -> KmsError {
    let uri = kek.uri.as_str();
    // The retry loop gave up (deadline or attempts): classify the last error it saw.
    if e.is_exhausted()
        && let Some(inner) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<google_cloud_kms_v1::Error>())
    {
        return classify(kek, call, inner);
    }
    if let Some(status) = e.status() {
        return classify_status(uri, call, status.code, &status.message);
    }
    if let Some(code) = e.http_status_code() {
        let body = e
            .http_payload()
            .map(|p| String::from_utf8_lossy(&p[..p.len().min(200)]).into_owned())
            .unwrap_or_default();
        return classify_http(uri, call, code, body);
    }
    if e.is_timeout() || e.is_exhausted() {
        return KmsError::Unavailable {
            kek: uri.to_owned(),
            detail: format!("no answer within {:?}", kek.deadline),
        };
    }
    if e.is_authentication() {
        // The credential chain failed to produce a token. Its message names the source, never the secret.
        return KmsError::PermissionDenied {
            kek: uri.to_owned(),
            detail: format!("no usable Google credentials: {e}"),
        };
    }
    KmsError::Unavailable {
        kek: uri.to_owned(),
        detail: e.to_string(),
    }
}

fn crc32c(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}

impl GcpKmsKek {
    /// Builds the client for the key a `gcpkms://` URI names, with [`GcpOptions::default`].
    pub async fn open(uri: &KekUri) -> Result<GcpKmsKek, KmsError> {
        GcpKmsKek::open_with(uri, &GcpOptions::default()).await
    }

    /// Builds the client with explicit retry settings. Makes no call to Cloud KMS.
    pub async fn open_with(uri: &KekUri, opts: &GcpOptions) -> Result<GcpKmsKek, KmsError> {
        let key = GcpKeyRef::parse(uri.rest()).map_err(|reason| KmsError::InvalidUri { reason })?;
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(opts.initial_backoff)
            .with_maximum_delay(opts.max_backoff)
            .with_scaling(2.0)
            .build()
            .map_err(|e| KmsError::Config {
                kek: uri.to_string(),
                reason: format!("invalid backoff settings: {e}"),
            })?;
        let mut builder = KeyManagementService::builder()
            .with_retry_policy(TooManyRequests::new(Aip194Strict).with_time_limit(opts.deadline))
            .with_backoff_policy(backoff)
            .with_attempt_timeout(opts.deadline);
        if let Some(endpoint) = &key.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
            if endpoint.starts_with("http://") {
                builder = builder.with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
            }
        }
        let client = builder.build().await.map_err(|e| KmsError::Config {
            kek: uri.to_string(),
            reason: format!("cannot set up the Cloud KMS client: {e}"),
        })?;
        Ok(GcpKmsKek {
            uri: uri.clone(),
            client,
            key,
            deadline: opts.deadline,
        })
    }

    /// The CryptoKey's resource name, `projects/…/cryptoKeys/K`.
    pub fn key_name(&self) -> &str {
        &self.key.key_name
    }

    fn integrity(&self, what: &str) -> KmsError {
        KmsError::Unavailable {
            kek: self.uri.to_string(),
            detail: format!("CRC32C integrity check failed ({what}): the message was corrupted in transit"),
        }
    }
}

#[async_trait::async_trait]
impl Kek for GcpKmsKek {
    fn uri(&self) -> &KekUri {
        &self.uri
    }

    async fn wrap(&self, dek: &Dek, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let aad = ctx.encode();
        let name = self.key.version_name.as_deref().unwrap_or(&self.key.key_name);
        let out = self
            .client
            .encrypt()
            .set_name(name)
            // The client serialises from `Bytes`, which is not zeroized; the request buffer is dropped at once.
            .set_plaintext(dek.as_bytes().to_vec())
            .set_plaintext_crc32c(crc32c(dek.as_bytes()))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .set_additional_authenticated_data(aad)
            .with_idempotency(true)
            .send()
            .await
            .map_err(|e| classify(self, Call::Encrypt, &e))?;
        if !out.verified_plaintext_crc32c {
            return Err(self.integrity("Encrypt did not verify plaintextCrc32c"));
        }
        if !out.verified_additional_authenticated_data_crc32c {
            return Err(self.integrity("Encrypt did not verify additionalAuthenticatedDataCrc32c"));
        }
        if out.ciphertext_crc32c != Some(crc32c(&out.ciphertext)) {
            return Err(self.integrity("ciphertextCrc32c does not match the ciphertext"));
        }
        let version_prefix = format!("{}/cryptoKeyVersions/", self.key.key_name);
        let pinned_ok = self.key.version_name.as_deref().is_none_or(|v| v == out.name);
        if !out.name.starts_with(&version_prefix) || !pinned_ok || out.ciphertext.is_empty() {
            return Err(KmsError::Unavailable {
                kek: self.uri.to_string(),
                detail: format!("Encrypt answered with key version {:?}", out.name),
            });
        }
        Ok(WrappedDek {
            ciphertext: out.ciphertext.to_vec(),
            wrap_alg: WRAP_ALG.into(),
            kek_version: out.name,
            binding: None,
        })
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<Dek, KmsError> {
        if wrapped.wrap_alg != WRAP_ALG || wrapped.ciphertext.is_empty() {
            return Err(KmsError::InvalidCiphertext {
                kek: self.uri.to_string(),
            });
        }
        let own_version = wrapped
            .kek_version
            .strip_prefix(&self.key.key_name)
            .and_then(|v| v.strip_prefix("/cryptoKeyVersions/"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !own_version {
            return Err(KmsError::KeyMismatch {
                kek: self.uri.to_string(),
                wrapped_by: wrapped.kek_version.clone(),
                configured: self.key.key_name.clone(),
            });
        }
        let aad = ctx.encode();
        let out = self
            .client
            .decrypt()
            .set_name(&self.key.key_name)
            .set_ciphertext(wrapped.ciphertext.clone())
            .set_ciphertext_crc32c(crc32c(&wrapped.ciphertext))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .set_additional_authenticated_data(aad)
            .with_idempotency(true)
            .send()
            .await
            .map_err(|e| classify(self, Call::Decrypt, &e))?;
        // The response's `Bytes` is not zeroized; copy into zeroizing memory at once.
        let plain = Zeroizing::new(out.plaintext.to_vec());
        if out.plaintext_crc32c != Some(crc32c(&plain)) {
            return Err(self.integrity("plaintextCrc32c does not match the plaintext"));
        }
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| KmsError::InvalidCiphertext {
            kek: self.uri.to_string(),
        })?;
        Ok(Dek::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status Cloud KMS documents for Encrypt/Decrypt lands in the class the edge acts on.
    #[test]
    fn status_codes_are_classified() {
        let k = "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k";
        type Check = fn(&KmsError) -> bool;
        let cases: [(Call, Code, Check); 11] = [
            (Call::Encrypt, Code::NotFound, |e| {
                matches!(e, KmsError::NotFound { .. })
            }),
            (Call::Decrypt, Code::PermissionDenied, |e| {
                matches!(e, KmsError::PermissionDenied { .. })
            }),
            (Call::Encrypt, Code::Unauthenticated, |e| {
                matches!(e, KmsError::PermissionDenied { .. })
            }),
            (Call::Decrypt, Code::FailedPrecondition, |e| {
                matches!(e, KmsError::Disabled { .. })
            }),
            (Call::Encrypt, Code::ResourceExhausted, |e| {
                matches!(e, KmsError::Throttled { .. }) && e.is_retryable()
            }),
            (Call::Decrypt, Code::Unavailable, |e| {
                matches!(e, KmsError::Unavailable { .. }) && e.is_retryable()
            }),
            (Call::Decrypt, Code::DeadlineExceeded, |e| e.is_retryable()),
            (Call::Encrypt, Code::Internal, |e| e.is_retryable()),
            (Call::Decrypt, Code::InvalidArgument, |e| {
                matches!(e, KmsError::InvalidCiphertext { .. })
            }),
            (Call::Encrypt, Code::InvalidArgument, |e| {
                matches!(e, KmsError::Unavailable { .. })
            }),
            (Call::Decrypt, Code::Unknown, |e| e.is_retryable()),
        ];
        for (call, code, check) in cases {
            let e = classify_status(k, call, code, "m");
            assert!(check(&e), "{call:?} {code:?} -> {e:?}");
            assert!(e.to_string().contains(k), "{e}");
        }
        assert!(matches!(
            classify_http(k, Call::Encrypt, 429, String::new()),
            KmsError::Throttled { .. }
        ));
        assert!(classify_http(k, Call::Decrypt, 400, String::new()).is_retryable());
    }

    #[test]
    fn crc32c_is_the_castagnoli_polynomial() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }
}
