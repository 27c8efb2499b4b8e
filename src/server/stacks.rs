//! The stack secrets provider: Pulumi's service secrets manager contract, `POST /api/stacks/{org}/{project}/
//! {stack}/{encrypt,decrypt,batch-encrypt,batch-decrypt}`.
//!
//! Each stack has its own DEK scope, made on first use; the associated data names org id, project and stack, so a
//! ciphertext of one stack never opens under another. Values are base64 in Go's `[]byte` JSON encoding (standard
//! alphabet, padded); ciphertexts are the envelope spec's base64 form (§7.1). A batch fails whole: either every value
//! is answered or the request is refused. Plaintexts — decoded or in base64 — are held in wiping types
//! ([`SecretText`], `Zeroizing`) from the request body to the answer.
//!
//! Every call on a resolved stack is audited, aggregated ([`crate::audit::CallAudit`]): per principal, source,
//! stack, operation (`stack.encrypt`, `stack.decrypt`; a batch counts each of its values, and once as a request) and
//! outcome (`ok`, `failed` for refused input or an undecryptable value, `error` when the server failed) per second.
//! Calls refused before the stack is resolved (bad names, an oversize batch, no access) are not in the tally; a
//! refusal of access is audited on its own as `access.denied`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::Path;
use axum::response::Response;

use super::AppState;
use super::answer::{b64_field_json, json_answer, secret_body, secret_json};
use super::auth::Principal;
use super::body::{JsonBody, JsonBytes};
use super::error::ApiError;
use crate::core::audit::{AuditAction, Outcome};
use crate::core::call_tally::CallKey;
use crate::core::keys::{Name, Scope, stack_secret_aad};
use crate::server::auth::Caller;
use crate::wire::SecretText;
use crate::wire::stacks::{
    BatchDecryptRequest, BatchDecryptResponse, BatchEncryptRequest, BatchEncryptResponse, DecryptRequest,
    EncryptRequest,
};

/// Most values in one batch request.
pub const MAX_BATCH: usize = 100_000;

/// A resolved, authorised stack: its DEK scope and associated data, and what its audit records name.
struct StackTarget {
    scope: Scope,
    aad: Vec<u8>,
    org_id: String,
    /// `org/project/stack`.
    name: String,
}

/// Counts a call of `values` values on `target` in the audit tally, with the outcome of `result`.
fn tally<T>(
    app: &AppState,
    principal: &Principal,
    source: &str,
    target: &StackTarget,
    action: AuditAction,
    values: usize,
    result: &Result<T, ApiError>,
) {
    let outcome = match result {
        Ok(_) => Outcome::Ok,
        Err(e) if e.status().is_server_error() => Outcome::Error,
        Err(_) => Outcome::Failed,
    };
    app.stack_calls.add(
        CallKey {
            chain: target.org_id.clone(),
            actor: super::audit_actor(Some(principal)),
            source: source.to_owned(),
            action,
            target: target.name.clone(),
            outcome,
        },
        u64::try_from(values).unwrap_or(u64::MAX),
    );
}

async fn resolve(
    app: &AppState,
    principal: &Principal,
    source: &str,
    (org, project, stack): (String, String, String),
) -> Result<StackTarget, ApiError> {
    let project: Name = project
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid project name: {e}")))?;
    let stack: Name = stack
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid stack name: {e}")))?;
    // Unknown orgs and orgs the caller may not see get the same answer, so existence does not leak. Stack secrets
    // are the stack's project's secrets: using them (either way) needs the opener role on the project.
    let (org, access) = app.org_access(principal, source, &org).await?;
    app.authorize(
        principal,
        source,
        (&org, &access),
        (Some(project.as_str()), None),
        crate::core::authz::Action::Open,
        || super::access::org_not_found(&org.name),
    )
    .await?;
    Ok(StackTarget {
        aad: stack_secret_aad(&org.id, &project, &stack),
        org_id: org.id.clone(),
        name: [org.name.as_str(), "/", project.as_str(), "/", stack.as_str()].concat(),
        scope: Scope::Stack {
            org_id: org.id.clone(),
            project,
            stack,
        },
    })
}

fn decode_b64(field: &str, value: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    sesame_envelope::b64::decode(value.as_bytes())
        .map_err(|_| ApiError::bad_request(format!("{field} is not valid base64 (standard alphabet, padded)")))
}

/// The envelope a ciphertext field holds, in the base64 form of the envelope spec (§7.1).
fn decode_envelope(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    sesame_envelope::from_base64(value).map_err(|e| match e {
        sesame_envelope::OpenError::TooLarge => ApiError::too_large(format!("{field} is larger than any envelope")),
        _ => ApiError::bad_request(format!("{field} is not valid base64 (standard alphabet, padded)")),
    })
}

fn check_batch(n: usize) -> Result<(), ApiError> {
    if n > MAX_BATCH {
        return Err(ApiError::too_large(format!("a batch holds at most {MAX_BATCH} values")));
    }
    Ok(())
}

/// `POST /api/stacks/{org}/{project}/{stack}/encrypt`
pub async fn encrypt(
    Caller(app, principal, source): Caller,
    Path(path): Path<(String, String, String)>,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    // The plaintext's base64 is read where it stands in the body (no copy to wipe): see `SecretStr`.
    let req: EncryptRequest<'_> = body.parse()?;
    let target = resolve(&app, &principal, &source, path).await?;
    let result: Result<Response, ApiError> = async {
        let plaintext = decode_b64("plaintext", req.plaintext.expose())?;
        let sealed = app.keyring.seal(&target.scope, &target.aad, &plaintext).await?;
        // `EncryptResponse`, written directly (the envelope's base64 form is standard base64). A ciphertext is no
        // secret: its buffer leaves as a plain body.
        let body = std::mem::take(&mut *b64_field_json("ciphertext", &sealed)?);
        Ok(json_answer(body.into()))
    }
    .await;
    tally(
        &app,
        &principal,
        &source,
        &target,
        AuditAction::StackEncrypt,
        1,
        &result,
    );
    result
}

/// `POST /api/stacks/{org}/{project}/{stack}/decrypt`
pub async fn decrypt(
    Caller(app, principal, source): Caller,
    Path(path): Path<(String, String, String)>,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    let req: DecryptRequest<'_> = body.parse()?;
    let target = resolve(&app, &principal, &source, path).await?;
    let result: Result<Response, ApiError> = async {
        let ciphertext = decode_envelope("ciphertext", &req.ciphertext)?;
        let plaintext = app.keyring.open(&target.scope, &target.aad, &ciphertext).await?;
        // `DecryptResponse`, written directly into a wiping buffer that is wiped again once sent.
        Ok(json_answer(secret_body(b64_field_json("plaintext", &plaintext)?)))
    }
    .await;
    tally(
        &app,
        &principal,
        &source,
        &target,
        AuditAction::StackDecrypt,
        1,
        &result,
    );
    result
}

/// `POST /api/stacks/{org}/{project}/{stack}/batch-encrypt`
pub async fn batch_encrypt(
    Caller(app, principal, source): Caller,
    Path(path): Path<(String, String, String)>,
    JsonBody(req): JsonBody<BatchEncryptRequest>,
) -> Result<Json<BatchEncryptResponse>, ApiError> {
    check_batch(req.plaintexts.len())?;
    let target = resolve(&app, &principal, &source, path).await?;
    let result: Result<Json<BatchEncryptResponse>, ApiError> = async {
        let plaintexts = req
            .plaintexts
            .iter()
            .map(|p| decode_b64("a plaintext", p.expose()))
            .collect::<Result<Vec<_>, _>>()?;
        let sealed = app
            .keyring
            .seal_many(&target.scope, &target.aad, plaintexts.iter().map(|p| p.as_slice()))
            .await?;
        Ok(Json(BatchEncryptResponse {
            ciphertexts: sealed.iter().map(|c| sesame_envelope::to_base64(c)).collect(),
        }))
    }
    .await;
    let values = req.plaintexts.len();
    tally(
        &app,
        &principal,
        &source,
        &target,
        AuditAction::StackEncrypt,
        values,
        &result,
    );
    result
}

/// `POST /api/stacks/{org}/{project}/{stack}/batch-decrypt`
pub async fn batch_decrypt(
    Caller(app, principal, source): Caller,
    Path(path): Path<(String, String, String)>,
    JsonBody(req): JsonBody<BatchDecryptRequest>,
) -> Result<Response, ApiError> {
    check_batch(req.ciphertexts.len())?;
    let target = resolve(&app, &principal, &source, path).await?;
    let values = req.ciphertexts.len();
    let result: Result<Response, ApiError> = async {
        let mut plaintexts = BTreeMap::new();
        for text in req.ciphertexts {
            if plaintexts.contains_key(&text) {
                continue;
            }
            let ciphertext = decode_envelope("a ciphertext", &text)?;
            let plaintext = app.keyring.open(&target.scope, &target.aad, &ciphertext).await?;
            plaintexts.insert(text, SecretText::new(sesame_envelope::b64::encode(&plaintext)));
        }
        let body = secret_json(&BatchDecryptResponse { plaintexts }).map_err(|e| ApiError::internal(&e))?;
        Ok(json_answer(secret_body(body)))
    }
    .await;
    tally(
        &app,
        &principal,
        &source,
        &target,
        AuditAction::StackDecrypt,
        values,
        &result,
    );
    result
}
