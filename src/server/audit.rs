//! `GET /api/sesame/v1/audit` (the instance chain) and `GET /api/sesame/v1/orgs/{org}/audit` (one org's chain):
//! the chain as JSON lines, oldest first, ending with a line `{"head": …, "seq": …, "chain": …}` that
//! `sesame audit verify` checks the rest against. Instance administrators only, for now.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{Auth, Principal};
use super::error::ApiError;
use crate::core::audit::{GENESIS, INSTANCE_CHAIN, hex};

const PAGE: i64 = 5_000;

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.instance_admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only the instance administrator can read the audit log",
        ))
    }
}

async fn export(app: &AppState, chain: &str) -> Result<Response, ApiError> {
    let mut out = String::new();
    let (mut after, mut head, mut seq) = (0i64, hex(&GENESIS), 0i64);
    loop {
        let page = app
            .store
            .audit_records(chain, after, PAGE)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        for r in &page {
            out.push_str(&serde_json::to_string(r).map_err(|e| ApiError::internal(&e))?);
            out.push('\n');
            head = r.hash.clone();
            seq = r.seq;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.seq,
            _ => break,
        }
    }
    out.push_str(&serde_json::json!({"chain": chain, "seq": seq, "head": head}).to_string());
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
pub async fn export_org(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    let Some(org) = app.org_by_name(&org).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("organization {org:?} not found"),
        ));
    };
    export(&app, &org.id).await
}
