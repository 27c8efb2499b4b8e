//! `GET /api/sesame/v1/audit` (the instance chain, instance administrators) and `GET /api/sesame/v1/orgs/{org}/
//! audit` (one org's chain: instance administrators and the org's admins; an org the caller has no role in is 404,
//! like everywhere else): the chain as JSON lines, oldest first, each signed checkpoint as a line
//! `{"checkpoint": …}` right after the record it signs, and last a line `{"chain", "seq", "head", "signing_key"}`
//! that `sesame audit verify` checks the rest against. Before exporting, the chain's head is checkpointed if it grew
//! since its last checkpoint, so the export is signed through its end (records appended meanwhile excepted).
//!
//! A pruned chain's export starts with a line `{"anchor": …}`: the signed checkpoint through which its records were
//! deleted; its records start right after it.
//!
//! `GET /api/sesame/v1/audit/key` serves the signing key's public half and fingerprint, without authentication.
//!
//! `POST /api/sesame/v1/audit/prune` (instance administrators) deletes a chain's records through a signed checkpoint,
//! after checking the checkpoint's signature and that the records up to it still hash to the head it signed; that
//! checkpoint becomes the chain's anchor. Export and archive the chain first.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::AppState;
use super::auth::{Auth, Principal};
use super::error::ApiError;
use crate::core::audit::{AuditAction, GENESIS, INSTANCE_CHAIN, hex};
use crate::core::authz::Action;
use crate::server::auth::Caller;

const PAGE: i64 = 5_000;

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.instance_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the instance administrator can read the instance's audit log",
        ))
    }
}

/// The signing key as served and as embedded in exports.
fn key_json(app: &AppState) -> serde_json::Value {
    let signer = app.checkpoints.signer();
    serde_json::json!({
        "algorithm": "ed25519",
        "public_key": STANDARD.encode(signer.public_key()),
        "fingerprint": signer.fingerprint(),
    })
}

async fn export(app: &AppState, chain: &str) -> Result<Response, ApiError> {
    app.checkpoints.pass(Some(chain)).await;
    let anchor = app.store.audit_anchor(chain).await?;
    let start = anchor.as_ref().map_or(0, |a| a.seq);
    let checkpoints = app.store.audit_checkpoints(chain).await?;
    let mut pending = checkpoints.into_iter().filter(|c| c.seq > start).peekable();
    let mut out = String::new();
    let (mut after, mut head, mut seq) = match &anchor {
        Some(a) => {
            out.push_str(&serde_json::json!({ "anchor": a }).to_string());
            out.push('\n');
            (a.seq, a.head.clone(), a.seq)
        }
        None => (0i64, hex(&GENESIS), 0i64),
    };
    loop {
        let page = app.store.audit_records(chain, after, PAGE).await?;
        for r in &page {
            out.push_str(&serde_json::to_string(r).map_err(|e| ApiError::internal(&e))?);
            out.push('\n');
            while let Some(c) = pending.next_if(|c| c.seq <= r.seq) {
                out.push_str(&serde_json::json!({ "checkpoint": c }).to_string());
                out.push('\n');
            }
            head = r.hash.clone();
            seq = r.seq;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.seq,
            _ => break,
        }
    }
    // Checkpoints past the last record exported (none unless records were removed) still go out: verify flags them.
    for c in pending {
        out.push_str(&serde_json::json!({ "checkpoint": c }).to_string());
        out.push('\n');
    }
    out.push_str(
        &serde_json::json!({"chain": chain, "seq": seq, "head": head, "signing_key": key_json(app)}).to_string(),
    );
    out.push('\n');
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

/// `GET /api/sesame/v1/audit`
pub async fn export_instance(State(app): State<Arc<AppState>>, Auth(principal): Auth) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    // Failed authentications tallied in windows still open are written first, so the export counts them all.
    app.throttle.flush(&app.audit, true).await;
    export(&app, INSTANCE_CHAIN).await
}

/// `GET /api/sesame/v1/orgs/{org}/audit`
pub async fn export_org(Caller(app, principal, source): Caller, Path(org): Path<String>) -> Result<Response, ApiError> {
    let (org, access) = app.org_access(&principal, &source, &org).await?;
    app.authorize(
        &principal,
        &source,
        (&org, &access),
        (None, None),
        Action::ReadAudit,
        || super::access::org_not_found(&org.name),
    )
    .await?;
    export(&app, &org.id).await
}

/// `GET /api/sesame/v1/audit/key`
pub async fn public_key(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(key_json(&app))
}

/// The body of `POST /api/sesame/v1/audit/prune`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// The org whose chain to prune; the instance chain when absent.
    #[serde(default)]
    pub org: Option<String>,
    /// The last record to delete: a record with a signed checkpoint.
    pub through: i64,
}

/// `POST /api/sesame/v1/audit/prune`
pub async fn prune(
    Caller(app, principal, source): Caller,
    super::body::JsonBody(req): super::body::JsonBody<PruneRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !principal.instance_admin {
        return Err(ApiError::forbidden(
            "only the instance administrator can prune the audit log",
        ));
    }
    let (chain, name) = match &req.org {
        Some(o) => {
            let org = app
                .org_by_name(o)
                .await?
                .ok_or_else(|| super::access::org_not_found(o))?;
            (org.id.clone(), org.name.clone())
        }
        None => (INSTANCE_CHAIN.to_owned(), INSTANCE_CHAIN.to_owned()),
    };
    let anchor = app.store.audit_anchor(&chain).await?;
    let (from_seq, from_hash) = match &anchor {
        Some(a) => (
            a.seq,
            crate::core::audit::unhex(&a.head).ok_or_else(|| ApiError::internal(&BadAnchor))?,
        ),
        None => (0, GENESIS),
    };
    if req.through <= from_seq {
        return Err(ApiError::bad_request(format!(
            "the chain is already pruned through record {from_seq}"
        )));
    }
    let checkpoint = app
        .store
        .audit_checkpoints(&chain)
        .await?
        .into_iter()
        .find(|c| c.seq == req.through)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "record {} has no signed checkpoint: prune only through a checkpoint (the export's checkpoint lines)",
                req.through
            ))
        })?;
    let signer = app.checkpoints.signer();
    crate::core::audit::verify_signature(&checkpoint, signer.public_key())
        .map_err(|e| ApiError::conflict(format!("the checkpoint does not hold: {e}; nothing was pruned")))?;
    // The records to delete must still be the ones the checkpoint signed.
    let (mut seq, mut hash) = (from_seq, from_hash);
    while seq < req.through {
        let page = app
            .store
            .audit_records(&chain, seq, PAGE.min(req.through - seq))
            .await?;
        if page.is_empty() {
            break;
        }
        (seq, hash) = crate::core::audit::verify_from(seq, hash, &page).map_err(|e| {
            ApiError::conflict(format!(
                "the chain does not hold up to the checkpoint: {e}; nothing was pruned"
            ))
        })?;
    }
    if seq != req.through || hex(&hash) != checkpoint.head {
        return Err(ApiError::conflict(format!(
            "record {} does not have the hash its checkpoint signed; nothing was pruned",
            req.through
        )));
    }
    let event = app
        .event(Some(&principal), &source, Some(&chain), AuditAction::AuditPrune, &name)
        .detail(format!(
            "records {} to {} deleted; anchor: checkpoint of record {} (head {})",
            from_seq + 1,
            req.through,
            req.through,
            checkpoint.head
        ));
    let pruned = app.store.prune_audit(&checkpoint, &event).await?;
    Ok(Json(serde_json::json!({ "pruned": pruned, "anchor": checkpoint })))
}

#[derive(Debug, thiserror::Error)]
#[error("the chain's anchor head is not a hash")]
struct BadAnchor;
