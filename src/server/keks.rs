//! The KEK registry of the admin API, `/api/sesame/v1/keks`: register a KEK (bring your own key), list, make
//! default, disable. Only the instance administrator may use it until roles arrive (issue 5).
//!
//! A KEK URI may reach only the PKCS#11 modules, PIN files and KMS endpoints the operator allowed at start-up
//! ([`crate::kek_reach`]); anything else is refused with 400 before anything is opened. A KEK is registered only
//! after it proved itself: it is opened (creating the key where the backend can — a
//! local key file, a PKCS#11 key, an AWS alias), and a fresh DEK must wrap and unwrap through it. A KEK that cannot
//! be reached or does not round-trip is refused with the adapter's classified error, never registered.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sesame_kms::{Dek, KekUri, KmsError, WrapContext};

use super::AppState;
use super::ClientAddr;
use super::auth::{Auth, Principal};
use super::body::JsonBody;
use super::error::ApiError;
use crate::keyring::now_ms;
use crate::store::{Inserted, KekRecord, KekState};
use crate::wire::keks::{AddKekRequest, KekInfo, KekList};

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.instance_admin {
        return Ok(());
    }
    tracing::info!(token_id = %principal.token_id, "access denied: KEK administration");
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "only the instance administrator may manage KEKs",
    ))
}

fn kms_error(e: &KmsError) -> ApiError {
    // KmsError messages name the KEK and the failure, never key material or credentials.
    let status = match e {
        KmsError::InvalidUri { .. } | KmsError::Unsupported { .. } | KmsError::Config { .. } => StatusCode::BAD_REQUEST,
        KmsError::NotFound { .. } => StatusCode::BAD_REQUEST,
        KmsError::PermissionDenied { .. } | KmsError::Disabled { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

async fn info(app: &AppState, k: KekRecord) -> Result<KekInfo, ApiError> {
    let org = match &k.org_id {
        Some(id) => app
            .store
            .org_by_id(id)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map(|o| o.name),
        None => None,
    };
    Ok(KekInfo {
        id: k.id,
        org,
        uri: k.uri,
        state: match k.state {
            KekState::Active => "active",
            KekState::Disabled => "disabled",
        }
        .to_owned(),
        default: k.is_default,
        created_ms: k.created_ms,
    })
}

/// `POST /api/sesame/v1/keks`
pub async fn add(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<AddKekRequest>,
) -> Result<(StatusCode, Json<KekInfo>), ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    crate::core::text::check(
        "KEK URI",
        &req.uri,
        crate::core::text::MAX_KEK_URI,
        crate::core::text::Lines::Single,
    )?;
    let uri: KekUri = req.uri.parse().map_err(|e: KmsError| kms_error(&e))?;
    // Before anything is opened: no module loaded, no file read, no connection made for a URI the operator did not
    // allow.
    if let Err(refused) = app.kek_allow.check(&uri) {
        app.audit(
            Some(&principal),
            &addr,
            None,
            "kek.add",
            uri.as_str(),
            "denied",
            refused.to_string(),
        )
        .await?;
        return Err(ApiError::bad_request(refused.to_string()));
    }
    let org_id = match &req.org {
        Some(name) => Some(
            app.org_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("organization '{name}' not found")))?
                .id
                .clone(),
        ),
        None => None,
    };
    if app
        .store
        .keks()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .iter()
        .any(|k| k.org_id == org_id && k.uri == uri.as_str())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("KEK {uri} is already registered"),
        ));
    }
    let mut options = app.kek_options.clone();
    options.create_if_missing = true;
    let kek = sesame_kms::open_kek(&uri, &options).await.map_err(|e| kms_error(&e))?;
    // Prove the KEK before trusting it with DEKs.
    let probe = Dek::generate();
    let ctx = WrapContext::new().with("probe", uri.as_str());
    let wrapped = kek.wrap(&probe, &ctx).await.map_err(|e| kms_error(&e))?;
    let back = kek.unwrap(&wrapped, &ctx).await.map_err(|e| kms_error(&e))?;
    if back.as_bytes() != probe.as_bytes() {
        return Err(ApiError::bad_request(format!(
            "KEK {uri} did not give back what it wrapped"
        )));
    }
    let record = KekRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id,
        uri: uri.to_string(),
        state: KekState::Active,
        is_default: req.default,
        created_ms: now_ms(),
    };
    match app
        .store
        .insert_kek(&record)
        .await
        .map_err(|e| ApiError::internal(&e))?
    {
        Inserted::New => {}
        Inserted::AlreadyExists => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("KEK {uri} is already registered"),
            ));
        }
    }
    app.audit(
        Some(&principal),
        &addr,
        record.org_id.as_deref(),
        "kek.add",
        &record.id,
        "ok",
        format!("{uri}{}", if record.is_default { " (default)" } else { "" }),
    )
    .await?;
    app.keyring.register_kek(&record.id, kek);
    tracing::info!(kek = %uri, kek_id = %record.id, default = record.is_default, "KEK registered");
    Ok((StatusCode::CREATED, Json(info(&app, record).await?)))
}

/// Query of `GET /api/sesame/v1/keks`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only this org's KEKs (`system` for the instance's).
    pub org: Option<String>,
}

/// `GET /api/sesame/v1/keks[?org=NAME]`
pub async fn list(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    Query(q): Query<ListQuery>,
) -> Result<Json<KekList>, ApiError> {
    require_admin(&principal)?;
    let filter = match q.org.as_deref() {
        None => None,
        Some("system") => Some(None),
        Some(name) => Some(Some(
            app.org_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("organization '{name}' not found")))?
                .id
                .clone(),
        )),
    };
    let mut keks = Vec::new();
    for k in app.store.keks().await.map_err(|e| ApiError::internal(&e))? {
        if filter.as_ref().is_none_or(|f| *f == k.org_id) {
            keks.push(info(&app, k).await?);
        }
    }
    Ok(Json(KekList { keks }))
}

async fn find(app: &AppState, id: &str) -> Result<KekRecord, ApiError> {
    app.store
        .keks()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| ApiError::not_found(format!("KEK {id} not found")))
}

/// `POST /api/sesame/v1/keks/{id}/default`
pub async fn make_default(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<KekInfo>, ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    let kek = find(&app, &id).await?;
    if kek.state != KekState::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("KEK {} is disabled", kek.uri),
        ));
    }
    app.store
        .set_default_kek(&id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    app.audit(
        Some(&principal),
        &addr,
        kek.org_id.as_deref(),
        "kek.default",
        &id,
        "ok",
        kek.uri.clone(),
    )
    .await?;
    tracing::info!(kek = %kek.uri, kek_id = %id, "KEK made default");
    Ok(Json(info(&app, find(&app, &id).await?).await?))
}

/// `POST /api/sesame/v1/keks/{id}/disable`
pub async fn disable(
    State(app): State<Arc<AppState>>,
    Auth(principal): Auth,
    ClientAddr(addr): ClientAddr,
    Path(id): Path<String>,
) -> Result<Json<KekInfo>, ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    let kek = find(&app, &id).await?;
    if kek.is_default {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("KEK {} is the default: make another KEK the default first", kek.uri),
        ));
    }
    app.store.disable_kek(&id).await.map_err(|e| ApiError::internal(&e))?;
    app.audit(
        Some(&principal),
        &addr,
        kek.org_id.as_deref(),
        "kek.disable",
        &id,
        "ok",
        kek.uri.clone(),
    )
    .await?;
    tracing::info!(kek = %kek.uri, kek_id = %id, "KEK disabled");
    Ok(Json(info(&app, find(&app, &id).await?).await?))
}

/// [`require_admin`], with a refusal written to the audit log.
async fn deny_unless_admin(app: &AppState, principal: &Principal, addr: &str) -> Result<(), ApiError> {
    app.audit_refusal(principal, addr, "keks", require_admin(principal))
        .await
}
