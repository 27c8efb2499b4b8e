//! `awskms://KEY?region=…&endpoint=…`: a KEK in AWS KMS (feature `aws`), where KEY is a key id, key ARN or
//! `alias/NAME`. Tested against moto in server mode.
//!
//! Wrapping is KMS `Encrypt` with an `EncryptionContext` that carries the wrap context twice: once canonically as
//! `sesame:ctx` = base64url of its length-prefixed encoding (so field boundaries can never shift, even if a KMS
//! concatenated context entries), and once per field as `sesame:NAME` = value for people reading CloudTrail. The
//! key ARN that KMS reports for each `Encrypt` is recorded as `kek_version`, and `Decrypt` is pinned to it, so an
//! alias re-pointed later cannot silently change which key unwraps. Credentials come from the SDK's usual chain
//! (environment, profile files, instance or workload identity); none is ever stored or logged. The SDK retries
//! throttling and transient failures with backoff; every call is bounded by an operation deadline.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::KeyState;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::Kek;
use crate::dek::{Dek, WrapContext, WrappedDek};
use crate::error::KmsError;
use crate::uri::KekUri;

const WRAP_ALG: &str = "AWS-KMS-SYMMETRIC_DEFAULT";
/// Deadline for one KMS operation, retries included.
const OPERATION_DEADLINE: Duration = Duration::from_secs(15);

/// A KEK in AWS KMS.
pub struct AwsKmsKek {
    uri: KekUri,
    client: Client,
    key_arn: String,
    /// Region and endpoint: keys in the same partition can `ReEncrypt` into each other.
    partition: String,
}

kek_debug!(AwsKmsKek { "uri" = uri, "key_arn" = key_arn });

/// Classifies an AWS error code (the `__type` of a KMS error response) for the edge.
pub fn classify_code(kek: &str, code: Option<&str>, message: &str) -> KmsError {
    let kek = kek.to_owned();
    let detail = format!("{}: {message}", code.unwrap_or("error"));
    match code.unwrap_or("") {
        "NotFoundException" => KmsError::NotFound { kek, detail },
        "DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException" => KmsError::Disabled { kek },
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidGrantTokenException" => KmsError::PermissionDenied { kek, detail },
        "InvalidCiphertextException" | "IncorrectKeyException" => KmsError::InvalidCiphertext { kek },
        "ThrottlingException" | "LimitExceededException" | "RequestLimitExceeded" => KmsError::Throttled { kek },
        _ => KmsError::Unavailable { kek, detail },
    }
}

fn classify<E, R>(kek: &KekUri, e: &SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            classify_code(kek.as_str(), err.code(), err.message().unwrap_or(""))
        }
        SdkError::TimeoutError(_) => KmsError::Unavailable {
            kek: kek.to_string(),
            detail: format!("no answer within {OPERATION_DEADLINE:?}"),
        },
        other => KmsError::Unavailable {
            kek: kek.to_string(),
            detail: format!("{}", aws_sdk_kms::error::DisplayErrorContext(other)),
        },
    }
}

fn encryption_context(ctx: &WrapContext) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = ctx
        .fields()
        .map(|(name, value)| (format!("sesame:{name}"), String::from_utf8_lossy(value).into_owned()))
        .collect();
    map.insert("sesame:ctx".into(), URL_SAFE_NO_PAD.encode(ctx.encode()));
    map
}

impl AwsKmsKek {
    /// Connects to KMS and resolves the key (an alias to its key ARN). With `create_if_missing`, an `alias/NAME`
    /// that does not exist yet is created with a new symmetric key.
    pub async fn open(uri: &KekUri, create_if_missing: bool) -> Result<AwsKmsKek, KmsError> {
        let (key, query) = uri.rest().split_once('?').unwrap_or((uri.rest(), ""));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(TimeoutConfig::builder().operation_timeout(OPERATION_DEADLINE).build());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("region", r)) => loader = loader.region(aws_config::Region::new(r.to_owned())),
                Some(("endpoint", e)) => loader = loader.endpoint_url(e),
                _ => {
                    return Err(KmsError::InvalidUri {
                        reason: format!("{uri}: unknown parameter {pair:?} (use region= and endpoint=)"),
                    });
                }
            }
        }
        let config = loader.load().await;
        let partition = format!(
            "{}|{}",
            config.region().map(|r| r.to_string()).unwrap_or_default(),
            query.split('&').find_map(|p| p.strip_prefix("endpoint=")).unwrap_or("")
        );
        let client = Client::new(&config);
        let key_arn = match client.describe_key().key_id(key).send().await {
            Ok(out) => {
                let meta = out.key_metadata.ok_or_else(|| KmsError::Unavailable {
                    kek: uri.to_string(),
                    detail: "DescribeKey returned no metadata".into(),
                })?;
                if !matches!(meta.key_state, Some(KeyState::Enabled) | None) {
                    return Err(KmsError::Disabled { kek: uri.to_string() });
                }
                meta.arn.unwrap_or_else(|| meta.key_id.clone())
            }
            Err(e) => {
                let err = classify(uri, &e);
                match err {
                    KmsError::NotFound { .. } if create_if_missing && key.starts_with("alias/") => {
                        let created = client
                            .create_key()
                            .description(format!("Sesame KEK {uri}"))
                            .send()
                            .await
                            .map_err(|e| classify(uri, &e))?;
                        let meta = created.key_metadata.ok_or_else(|| KmsError::Unavailable {
                            kek: uri.to_string(),
                            detail: "CreateKey returned no metadata".into(),
                        })?;
                        client
                            .create_alias()
                            .alias_name(key)
                            .target_key_id(&meta.key_id)
                            .send()
                            .await
                            .map_err(|e| classify(uri, &e))?;
                        meta.arn.unwrap_or(meta.key_id)
                    }
                    other => return Err(other),
                }
            }
        };
        Ok(AwsKmsKek {
            uri: uri.clone(),
            client,
            key_arn,
            partition,
        })
    }

    /// The resolved key ARN.
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// The wrap an Encrypt or ReEncrypt answered, recording the key that made it.
    fn wrapped(&self, blob: Option<Blob>, key_id: Option<String>, call: &str) -> Result<WrappedDek, KmsError> {
        let ciphertext = blob.map(Blob::into_inner).ok_or_else(|| KmsError::Unavailable {
            kek: self.uri.to_string(),
            detail: format!("{call} returned no ciphertext"),
        })?;
        Ok(WrappedDek {
            ciphertext,
            wrap_alg: WRAP_ALG.into(),
            kek_version: key_id.unwrap_or_else(|| self.key_arn.clone()),
            binding: None,
        })
    }
}

#[async_trait::async_trait]
impl Kek for AwsKmsKek {
    fn uri(&self) -> &KekUri {
        &self.uri
    }

    async fn wrap(&self, dek: &Dek, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_arn)
            .plaintext(Blob::new(dek.as_bytes().to_vec()))
            .set_encryption_context(Some(encryption_context(ctx)))
            .send()
            .await
            .map_err(|e| classify(&self.uri, &e))?;
        self.wrapped(out.ciphertext_blob, out.key_id, "Encrypt")
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<Dek, KmsError> {
        if wrapped.wrap_alg != WRAP_ALG {
            return Err(KmsError::InvalidCiphertext {
                kek: self.uri.to_string(),
            });
        }
        KmsError::ensure_version(&self.uri, wrapped, &self.key_arn)?;
        let out = self
            .client
            .decrypt()
            .key_id(&wrapped.kek_version)
            .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
            .set_encryption_context(Some(encryption_context(ctx)))
            .send()
            .await
            .map_err(|e| classify(&self.uri, &e))?;
        let plain = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| KmsError::InvalidCiphertext {
            kek: self.uri.to_string(),
        })?;
        Ok(Dek::from_bytes(bytes))
    }

    fn kms_partition(&self) -> Option<(&'static str, String)> {
        Some(("aws-kms", self.partition.clone()))
    }

    async fn rewrap_from(
        &self,
        source: &dyn Kek,
        wrapped: &WrappedDek,
        ctx: &WrapContext,
    ) -> Option<Result<WrappedDek, KmsError>> {
        if source.kms_partition() != self.kms_partition() || wrapped.wrap_alg != WRAP_ALG {
            return None;
        }
        let context = encryption_context(ctx);
        let result = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
            .source_key_id(&wrapped.kek_version)
            .set_source_encryption_context(Some(context.clone()))
            .destination_key_id(&self.key_arn)
            .set_destination_encryption_context(Some(context))
            .send()
            .await
            .map_err(|e| classify(&self.uri, &e))
            .and_then(|out| self.wrapped(out.ciphertext_blob, out.key_id, "ReEncrypt"));
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moto does not model key states or IAM faithfully, so the mapping of KMS's error codes is checked here.
    #[test]
    fn error_codes_are_classified() {
        let k = "awskms://alias/x";
        type Check = fn(&KmsError) -> bool;
        let cases: [(&str, Check); 9] = [
            ("NotFoundException", |e| matches!(e, KmsError::NotFound { .. })),
            ("DisabledException", |e| matches!(e, KmsError::Disabled { .. })),
            ("KMSInvalidStateException", |e| matches!(e, KmsError::Disabled { .. })),
            ("AccessDeniedException", |e| {
                matches!(e, KmsError::PermissionDenied { .. })
            }),
            ("InvalidCiphertextException", |e| {
                matches!(e, KmsError::InvalidCiphertext { .. })
            }),
            ("IncorrectKeyException", |e| {
                matches!(e, KmsError::InvalidCiphertext { .. })
            }),
            ("ThrottlingException", |e| {
                matches!(e, KmsError::Throttled { .. }) && e.is_retryable()
            }),
            ("KMSInternalException", |e| {
                matches!(e, KmsError::Unavailable { .. }) && e.is_retryable()
            }),
            ("DependencyTimeoutException", |e| e.is_retryable()),
        ];
        for (code, check) in cases {
            let e = classify_code(k, Some(code), "m");
            assert!(check(&e), "{code} -> {e:?}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn the_canonical_context_survives_field_shifts() {
        let a = encryption_context(&WrapContext::new().with("ab", "c"));
        let b = encryption_context(&WrapContext::new().with("a", "bc"));
        assert_ne!(a.get("sesame:ctx"), b.get("sesame:ctx"));
    }
}
