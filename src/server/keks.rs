//! The KEK registry of the admin API: register a KEK (bring your own key), list, make default, disable.
//!
//! Two doors, one set of rules: `/api/sesame/v1/keks…` is the instance administrator's and reaches every KEK (the
//! instance's own and every org's; anyone else is refused 403); `/api/sesame/v1/orgs/{org}/keks…` is the org's
//! admins' ([`Action::ManageKeys`]) and reaches only that org's KEKs. There, an org the caller has no role in, and
//! a KEK of another org or of the instance, answer 404 exactly like missing ones. Each action is audited on the
//! chain of the KEK's owner (the org, or the instance).
//!
//! A KEK URI may reach only the PKCS#11 modules, PIN files and KMS endpoints the operator allowed at start-up
//! ([`crate::kek_reach`]); anything else is refused with 400 before anything is opened. A KEK is registered only
//! after it proved itself: it is opened (creating the key where the backend can — a
//! local key file, a PKCS#11 key, an AWS alias), and a fresh DEK must wrap and unwrap through it. A KEK that cannot
//! be reached or does not round-trip is refused with the adapter's classified error, never registered.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use serde::Deserialize;
use sesame_kms::{Dek, KekUri, KmsError, WrapContext};

use super::AppState;
use super::auth::Principal;
use super::body::JsonBody;
use super::error::{ApiError, Success};
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::Action;
use crate::server::auth::Caller;
use crate::store::{Inserted, KekRecord, KekState, OrgRecord};
use crate::wire::keks::{AddKekRequest, KekInfo, KekList};

/// The parameters of a route that names one KEK or migration job: `{org}` on an org's routes (absent on the
/// instance administrator's) and `{id}`. One handler serves both routes.
#[derive(Deserialize)]
pub struct KeyRoute {
    org: Option<String>,
    pub(super) id: String,
}

impl KeyRoute {
    /// Whose keys the route reaches: an org's (its admins, [`Keys::of_org`]) or, without `{org}`, every key — for
    /// the instance administrator only: anyone else gets `instance_only`'s refusal, audited with `target`.
    pub(super) async fn keys(
        &self,
        app: &AppState,
        principal: &Principal,
        addr: &str,
        instance_only: fn(&Principal) -> Result<(), ApiError>,
        target: &str,
    ) -> Result<Keys, ApiError> {
        match &self.org {
            Some(org) => Keys::of_org(app, principal, addr, org).await,
            None => {
                app.audit_refusal(principal, addr, target, instance_only(principal))
                    .await?;
                Ok(Keys::Instance)
            }
        }
    }
}

/// Whose keys a request may reach: everything (the instance administrator's routes) or one org's.
pub(super) enum Keys {
    /// Every KEK and every migration.
    Instance,
    /// Only this org's KEKs and the migrations of its DEKs.
    Org(Arc<OrgRecord>),
}

impl Keys {
    /// The caller of an org's route: an admin of `org` (or the instance administrator, or an org token of it).
    /// Refusals are audited on the org's chain; an org the caller has no role in answers 404 like a missing one.
    pub(super) async fn of_org(app: &AppState, principal: &Principal, addr: &str, org: &str) -> Result<Keys, ApiError> {
        let (org, access) = app.org_access(principal, addr, org).await?;
        app.authorize(
            principal,
            addr,
            (&org, &access),
            (None, None),
            Action::ManageKeys,
            || super::access::org_not_found(&org.name),
        )
        .await?;
        Ok(Keys::Org(org))
    }

    /// Whether something owned by `org_id` (`None`: the instance) is within reach.
    pub(super) fn reach(&self, org_id: Option<&str>) -> bool {
        match self {
            Keys::Instance => true,
            Keys::Org(org) => org_id == Some(org.id.as_str()),
        }
    }

    /// Checks an org named in a request body against the org of the route (400 when they differ).
    pub(super) fn same_org(&self, named: Option<&str>) -> Result<(), ApiError> {
        match (self, named) {
            (Keys::Org(org), Some(name)) if name != org.name => Err(ApiError::bad_request(format!(
                "the body names org '{name}', the path '{}'",
                org.name
            ))),
            _ => Ok(()),
        }
    }
}

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.instance_admin {
        return Ok(());
    }
    tracing::info!(token_id = %principal.token_id, "access denied: KEK administration");
    Err(ApiError::forbidden(
        "only the instance administrator may manage KEKs here; an org's admins manage its own under \
         /api/sesame/v1/orgs/{org}/keks",
    ))
}

async fn info(app: &AppState, k: KekRecord) -> Result<KekInfo, ApiError> {
    let org = match &k.org_id {
        Some(id) => app.store.org_by_id(id).await?.map(|o| o.name),
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
    Caller(app, principal, addr): Caller,
    JsonBody(req): JsonBody<AddKekRequest>,
) -> Result<(StatusCode, Json<KekInfo>), ApiError> {
    deny_unless_admin(&app, &principal, &addr).await?;
    add_kek(&app, &principal, &addr, Keys::Instance, req).await
}

/// `POST /api/sesame/v1/orgs/{org}/keks`: registers a KEK of that org (`org` in the body, if any, must name it).
pub async fn org_add(
    Caller(app, principal, addr): Caller,
    Path(org): Path<String>,
    JsonBody(req): JsonBody<AddKekRequest>,
) -> Result<(StatusCode, Json<KekInfo>), ApiError> {
    let keys = Keys::of_org(&app, &principal, &addr, &org).await?;
    add_kek(&app, &principal, &addr, keys, req).await
}

async fn add_kek(
    app: &Arc<AppState>,
    principal: &Principal,
    addr: &str,
    keys: Keys,
    req: AddKekRequest,
) -> Result<(StatusCode, Json<KekInfo>), ApiError> {
    keys.same_org(req.org.as_deref())?;
    crate::core::text::check(
        "KEK URI",
        &req.uri,
        crate::core::text::MAX_KEK_URI,
        crate::core::text::Lines::Single,
    )?;
    let uri: KekUri = req.uri.parse().map_err(|e: KmsError| ApiError::kek_refused(&e))?;
    let org_id = match (&keys, &req.org) {
        (Keys::Org(org), _) => Some(org.id.clone()),
        (Keys::Instance, Some(name)) => Some(
            app.org_by_name(name)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("organization '{name}' not found")))?
                .id
                .clone(),
        ),
        (Keys::Instance, None) => None,
    };
    // Before anything is opened: no module loaded, no file read, no connection made for a URI the operator did not
    // allow — whoever asks, the instance administrator or an org's admin.
    if let Err(refused) = app.kek_allow.check(&uri) {
        let event = app
            .event(
                Some(principal),
                addr,
                org_id.as_deref(),
                AuditAction::KekAdd,
                uri.as_str(),
            )
            .outcome(Outcome::Denied)
            .detail(refused.to_string());
        app.record(event).await?;
        return Err(ApiError::bad_request(refused.to_string()));
    }
    if app
        .store
        .keks()
        .await?
        .iter()
        .any(|k| k.org_id == org_id && k.uri == uri.as_str())
    {
        return Err(ApiError::conflict(format!("KEK {uri} is already registered")));
    }
    let mut options = app.kek_options.clone();
    options.create_if_missing = true;
    let kek = sesame_kms::open_kek(&uri, &options)
        .await
        .map_err(|e| ApiError::kek_refused(&e))?;
    // Prove the KEK before trusting it with DEKs.
    let probe = Dek::generate();
    let ctx = WrapContext::new().with("probe", uri.as_str());
    let wrapped = kek.wrap(&probe, &ctx).await.map_err(|e| ApiError::kek_refused(&e))?;
    let back = kek
        .unwrap(&wrapped, &ctx)
        .await
        .map_err(|e| ApiError::kek_refused(&e))?;
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
        created_ms: app.clock.now_ms(),
    };
    let event = app
        .event(
            Some(principal),
            addr,
            record.org_id.as_deref(),
            AuditAction::KekAdd,
            &record.id,
        )
        .detail(format!("{uri}{}", if record.is_default { " (default)" } else { "" }));
    match app.store.insert_kek(&record, &event).await? {
        Inserted::New => {}
        Inserted::AlreadyExists => {
            return Err(ApiError::conflict(format!("KEK {uri} is already registered")));
        }
    }
    app.keyring.register_kek(&record.id, kek);
    tracing::info!(kek = %uri, kek_id = %record.id, default = record.is_default, "KEK registered");
    Ok(Success::Created.with(Json(info(app, record).await?)))
}

/// Query of `GET /api/sesame/v1/keks`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only this org's KEKs (`system` for the instance's).
    pub org: Option<String>,
}

/// `GET /api/sesame/v1/keks[?org=NAME]`
pub async fn list(Caller(app, principal, _): Caller, Query(q): Query<ListQuery>) -> Result<Json<KekList>, ApiError> {
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
    for k in app.store.keks().await? {
        if filter.as_ref().is_none_or(|f| *f == k.org_id) {
            keks.push(info(&app, k).await?);
        }
    }
    Ok(Json(KekList { keks }))
}

/// `GET /api/sesame/v1/orgs/{org}/keks`: the org's own KEKs (not the instance's).
pub async fn org_list(
    Caller(app, principal, addr): Caller,
    Path(org): Path<String>,
) -> Result<Json<KekList>, ApiError> {
    let keys = Keys::of_org(&app, &principal, &addr, &org).await?;
    let mut keks = Vec::new();
    for k in app.store.keks().await? {
        if keys.reach(k.org_id.as_deref()) {
            keks.push(info(&app, k).await?);
        }
    }
    Ok(Json(KekList { keks }))
}

/// The KEK `id` if `keys` reaches it; a KEK out of reach answers exactly like a missing one.
async fn find(app: &AppState, keys: &Keys, id: &str) -> Result<KekRecord, ApiError> {
    app.store
        .keks()
        .await?
        .into_iter()
        .find(|k| k.id == id && keys.reach(k.org_id.as_deref()))
        .ok_or_else(|| ApiError::not_found(format!("KEK {id} not found")))
}

/// `POST /api/sesame/v1/keks/{id}/default` (the instance administrator) and `POST /api/sesame/v1/orgs/{org}/keks/{id}/default` (the org's admins)
pub async fn make_default(
    Caller(app, principal, addr): Caller,
    Path(route): Path<KeyRoute>,
) -> Result<Json<KekInfo>, ApiError> {
    let keys = route.keys(&app, &principal, &addr, require_admin, "keks").await?;
    let (app, principal, addr, id) = (&app, &*principal, addr.as_str(), route.id);
    let kek = find(app, &keys, &id).await?;
    if kek.state != KekState::Active {
        return Err(ApiError::conflict(format!("KEK {} is disabled", kek.uri)));
    }
    let event = app
        .event(
            Some(principal),
            addr,
            kek.org_id.as_deref(),
            AuditAction::KekDefault,
            &id,
        )
        .detail(kek.uri.clone());
    app.store.set_default_kek(&id, &event).await?;
    tracing::info!(kek = %kek.uri, kek_id = %id, "KEK made default");
    Ok(Json(info(app, find(app, &keys, &id).await?).await?))
}

/// `POST /api/sesame/v1/keks/{id}/disable` (the instance administrator) and `POST /api/sesame/v1/orgs/{org}/keks/{id}/disable` (the org's admins)
pub async fn disable(
    Caller(app, principal, addr): Caller,
    Path(route): Path<KeyRoute>,
) -> Result<Json<KekInfo>, ApiError> {
    let keys = route.keys(&app, &principal, &addr, require_admin, "keks").await?;
    let (app, principal, addr, id) = (&app, &*principal, addr.as_str(), route.id);
    let kek = find(app, &keys, &id).await?;
    if kek.is_default {
        return Err(ApiError::conflict(format!(
            "KEK {} is the default: make another KEK the default first",
            kek.uri
        )));
    }
    let event = app
        .event(
            Some(principal),
            addr,
            kek.org_id.as_deref(),
            AuditAction::KekDisable,
            &id,
        )
        .detail(kek.uri.clone());
    app.store.disable_kek(&id, &event).await?;
    tracing::info!(kek = %kek.uri, kek_id = %id, "KEK disabled");
    Ok(Json(info(app, find(app, &keys, &id).await?).await?))
}

/// [`require_admin`], with a refusal written to the audit log.
async fn deny_unless_admin(app: &AppState, principal: &Principal, addr: &str) -> Result<(), ApiError> {
    app.audit_refusal(principal, addr, "keks", require_admin(principal))
        .await
}
