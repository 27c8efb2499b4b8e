//! The trust registry of an org, at Pulumi's paths: `POST/GET /api/orgs/{org}/oidc/issuers`,
//! `GET/PATCH/DELETE /api/orgs/{org}/oidc/issuers/{id}`, `GET /api/orgs/{org}/auth/policies/oidcissuers/{issuerId}`
//! and `PATCH /api/orgs/{org}/auth/policies/{policyId}`.
//!
//! Rules: every handler needs `ManageAccess` on the org (its admins; a caller without a role in it gets the 404 a
//! missing org gets); an issuer is registered with its policy, empty (deny all); policy lists are checked by
//! `core::trust` before they are stored (a rule value of only `*` is refused, `runner` tokens do not exist);
//! without an inline `jwks`, the issuer URL must pass the egress policy when registered (it is checked again at
//! every fetch). Every write is audited on the org's chain.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;

use crate::core::audit::AuditAction;
use crate::core::authz::{Action, Role};
use crate::core::jwt::KeySet;
use crate::core::tokens::TokenKind;
use crate::core::trust::{self, Effect, Policy};
use crate::server::AppState;
use crate::server::access::org_not_found;
use crate::server::auth::{Caller, Principal};
use crate::server::body::JsonBody;
use crate::server::error::{ApiError, Success};
use crate::store::trust::{IssuerRecord, PolicyRecord};
use crate::store::{Inserted, OrgRecord};
use crate::wire::trust::{AuthPolicy, CreateIssuer, Issuer, IssuerList, PolicyItem, UpdateAuthPolicy, UpdateIssuer};

/// The longest `maxExpiration`, seconds (30 days).
pub const MAX_EXPIRATION_LIMIT_S: i64 = 30 * 24 * 60 * 60;
/// Longest issuer name, bytes.
const MAX_NAME: usize = 256;
/// Longest issuer URL, bytes.
const MAX_URL: usize = 2048;
/// Largest inline JWKS, bytes of JSON.
const MAX_JWKS: usize = 256 * 1024;

fn issuer_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("OIDC issuer '{id}' not found"))
}

fn policy_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("policy '{id}' not found"))
}

async fn admin_org(
    app: &AppState,
    p: &Principal,
    addr: &str,
    org: &str,
) -> Result<std::sync::Arc<OrgRecord>, ApiError> {
    let (record, access) = app.org_access(p, addr, org).await?;
    app.authorize(p, addr, (&record, &access), (None, None), Action::ManageAccess, || {
        org_not_found(org)
    })
    .await?;
    Ok(record)
}

fn to_wire(i: &IssuerRecord) -> Issuer {
    Issuer {
        id: i.id.clone(),
        name: i.name.clone(),
        url: i.url.clone(),
        issuer: i.url.clone(),
        created: crate::core::timefmt::rfc3339(i.created_ms),
        modified: crate::core::timefmt::rfc3339(i.modified_ms),
        thumbprints: serde_json::from_str(&i.thumbprints).unwrap_or_default(),
        jwks: i.jwks.as_deref().and_then(|j| serde_json::from_str(j).ok()),
        max_expiration: i.max_expiration_s,
        disabled: i.disabled,
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    crate::core::text::check("issuer name", name, MAX_NAME, crate::core::text::Lines::Single)?;
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("issuer name must not be empty"));
    }
    Ok(())
}

fn check_thumbprints(list: &[String]) -> Result<String, ApiError> {
    if list.len() > 20 {
        return Err(ApiError::bad_request("at most 20 thumbprints"));
    }
    for t in list {
        let ok = matches!(t.len(), 40 | 64) && t.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(ApiError::bad_request(
                "a thumbprint is the hex SHA-1 (40 digits) or SHA-256 (64 digits) of a certificate",
            ));
        }
    }
    Ok(serde_json::to_string(list).unwrap_or_else(|_| "[]".into()))
}

fn check_jwks(jwks: &serde_json::Value) -> Result<String, ApiError> {
    let text = serde_json::to_string(jwks).map_err(|_| ApiError::bad_request("jwks is not JSON"))?;
    if text.len() > MAX_JWKS {
        return Err(ApiError::bad_request(format!("jwks is larger than {MAX_JWKS} bytes")));
    }
    KeySet::parse(jwks).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(text)
}

fn check_max_expiration(s: i64) -> Result<i64, ApiError> {
    if (trust::MIN_LIFETIME_S..=MAX_EXPIRATION_LIMIT_S).contains(&s) {
        Ok(s)
    } else {
        Err(ApiError::bad_request(format!(
            "maxExpiration must be between {} and {MAX_EXPIRATION_LIMIT_S} seconds",
            trust::MIN_LIFETIME_S
        )))
    }
}

/// Checks an issuer URL: an absolute http(s) URL; without an inline key set, its host must resolve to addresses
/// the egress policy allows (and plain http only to listed ones), since its keys will be fetched from there.
async fn check_url(app: &AppState, url: &str, inline_jwks: bool) -> Result<(), ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::bad_request(format!("url is longer than {MAX_URL} bytes")));
    }
    let parsed = crate::egress::check_url(url).map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ApiError::bad_request("url: an issuer URL has no query or fragment"));
    }
    if !inline_jwks {
        crate::egress::check_target(&app.egress, &parsed)
            .await
            .map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
    }
    Ok(())
}

/// `POST /api/orgs/{org}/oidc/issuers`
pub async fn create(
    Caller(app, p, addr): Caller,
    Path(org): Path<String>,
    JsonBody(req): JsonBody<CreateIssuer>,
) -> Result<(StatusCode, Json<Issuer>), ApiError> {
    let org = admin_org(&app, &p, &addr, &org).await?;
    check_name(&req.name)?;
    let jwks = req.jwks.as_ref().map(check_jwks).transpose()?;
    check_url(&app, &req.url, jwks.is_some()).await?;
    let thumbprints = check_thumbprints(req.thumbprints.as_deref().unwrap_or_default())?;
    let max = check_max_expiration(req.max_expiration.unwrap_or(trust::DEFAULT_MAX_EXPIRATION_S))?;
    let now = app.clock.now_ms();
    let issuer = IssuerRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org.id.clone(),
        name: req.name.clone(),
        url: req.url.clone(),
        thumbprints,
        jwks,
        max_expiration_s: max,
        disabled: false,
        created_ms: now,
        modified_ms: now,
    };
    let policy = PolicyRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org.id.clone(),
        issuer_id: issuer.id.clone(),
        version: 1,
        policies: "[]".into(),
        modified_ms: now,
    };
    let event = app
        .event(
            Some(&p),
            &addr,
            Some(&org.id),
            AuditAction::OidcIssuerCreate,
            &issuer.id,
        )
        .detail(format!("issuer {:?} at {}", issuer.name, issuer.url));
    match app.store.insert_issuer(&issuer, &policy, &event).await? {
        Inserted::New => Ok(Success::Created.with(Json(to_wire(&issuer)))),
        Inserted::AlreadyExists => Err(ApiError::conflict(
            "the organization has an issuer with that name or URL already",
        )),
    }
}

/// `GET /api/orgs/{org}/oidc/issuers`
pub async fn list(Caller(app, p, addr): Caller, Path(org): Path<String>) -> Result<Json<IssuerList>, ApiError> {
    let org = admin_org(&app, &p, &addr, &org).await?;
    let issuers = app.store.issuers_of_org(&org.id).await?;
    Ok(Json(IssuerList {
        oidc_issuers: issuers.iter().map(to_wire).collect(),
    }))
}

/// `GET /api/orgs/{org}/oidc/issuers/{id}`
pub async fn get(
    Caller(app, p, addr): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Issuer>, ApiError> {
    let org = admin_org(&app, &p, &addr, &org).await?;
    let issuer = app
        .store
        .issuer(&org.id, &id)
        .await?
        .ok_or_else(|| issuer_not_found(&id))?;
    Ok(Json(to_wire(&issuer)))
}

/// `PATCH /api/orgs/{org}/oidc/issuers/{id}`
pub async fn update(
    Caller(app, p, addr): Caller,
    Path((org, id)): Path<(String, String)>,
    JsonBody(req): JsonBody<UpdateIssuer>,
) -> Result<Json<Issuer>, ApiError> {
    let org = admin_org(&app, &p, &addr, &org).await?;
    let mut issuer = app
        .store
        .issuer(&org.id, &id)
        .await?
        .ok_or_else(|| issuer_not_found(&id))?;
    let mut changed = Vec::new();
    if let Some(name) = &req.name {
        check_name(name)?;
        issuer.name = name.clone();
        changed.push("name");
    }
    if let Some(t) = &req.thumbprints {
        issuer.thumbprints = check_thumbprints(t)?;
        changed.push("thumbprints");
    }
    if let Some(j) = &req.jwks {
        issuer.jwks = if j.is_null() { None } else { Some(check_jwks(j)?) };
        if issuer.jwks.is_none() {
            // Its keys will be fetched from now on: the URL must be reachable under the egress policy.
            check_url(&app, &issuer.url, false).await?;
        }
        changed.push("jwks");
    }
    if let Some(m) = req.max_expiration {
        issuer.max_expiration_s = check_max_expiration(m)?;
        changed.push("maxExpiration");
    }
    if let Some(d) = req.disabled {
        issuer.disabled = d;
        changed.push(if d { "disabled" } else { "enabled" });
    }
    issuer.modified_ms = app.clock.now_ms().max(issuer.modified_ms + 1);
    let event = app
        .event(
            Some(&p),
            &addr,
            Some(&org.id),
            AuditAction::OidcIssuerUpdate,
            &issuer.id,
        )
        .detail(format!("changed: {}", changed.join(", ")));
    if !app.store.update_issuer(&issuer, &event).await? {
        return match app.store.issuer(&org.id, &id).await? {
            Some(_) => Err(ApiError::conflict(
                "the organization has an issuer with that name already",
            )),
            None => Err(issuer_not_found(&id)),
        };
    }
    Ok(Json(to_wire(&issuer)))
}

/// `DELETE /api/orgs/{org}/oidc/issuers/{id}`: the issuer and its policy.
pub async fn delete(
    Caller(app, p, addr): Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let org = admin_org(&app, &p, &addr, &org).await?;
    let event = app.event(Some(&p), &addr, Some(&org.id), AuditAction::OidcIssuerDelete, &id);
    if !app.store.delete_issuer(&org.id, &id, &event).await? {
        return Err(issuer_not_found(&id));
    }
    Ok(Success::NoContent.status())
}

/// A wire policy as the core's, or why it is refused.
pub fn to_core(item: &PolicyItem) -> Result<Policy, String> {
    let effect = match item.decision.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => return Err(format!("decision must be allow or deny, not {other:?}")),
    };
    let token_type = match item.token_type.as_deref() {
        None | Some("") => None,
        Some("runner") => return Err("runner tokens do not exist in Sesame".into()),
        Some(t) => Some(
            TokenKind::parse(t)
                .ok_or_else(|| format!("tokenType must be organization, team or personal, not {t:?}"))?,
        ),
    };
    let mut cap: Option<Role> = None;
    for perm in &item.authorized_permissions {
        let role: Role = perm.parse().map_err(|_| {
            format!("authorizedPermissions: unknown permission {perm:?} (use a role: reader, opener, editor, admin)")
        })?;
        cap = Some(cap.map_or(role, |c| c.max(role)));
    }
    Ok(Policy {
        effect,
        token_type,
        team_name: item.team_name.clone().filter(|s| !s.is_empty()),
        user_login: item.user_login.clone().filter(|s| !s.is_empty()),
        cap,
        rules: item.rules.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}

/// A stored policy list as the core's (a list that no longer parses matches nothing).
pub fn stored_policies(text: &str) -> Vec<Policy> {
    let items: Vec<PolicyItem> = serde_json::from_str(text).unwrap_or_default();
    items.iter().filter_map(|i| to_core(i).ok()).collect()
}

fn policy_to_wire(r: &PolicyRecord) -> AuthPolicy {
    AuthPolicy {
        id: r.id.clone(),
        version: r.version,
        policies: serde_json::from_str(&r.policies).unwrap_or_default(),
    }
}

/// `GET /api/orgs/{org}/auth/policies/oidcissuers/{issuerId}`
pub async fn get_policy(
    Caller(app, p, addr): Caller,
    Path((org, issuer)): Path<(String, String)>,
) -> Result<Json<AuthPolicy>, ApiError> {
    let org = admin_org(&app, &p, &addr, &org).await?;
    let policy = app
        .store
        .policy_of_issuer(&org.id, &issuer)
        .await?
        .ok_or_else(|| issuer_not_found(&issuer))?;
    Ok(Json(policy_to_wire(&policy)))
}

/// `PATCH /api/orgs/{org}/auth/policies/{policyId}` with `{"policies": [...]}`: replaces the list.
pub async fn update_policy(
    Caller(app, p, addr): Caller,
    Path((org, id)): Path<(String, String)>,
    JsonBody(req): JsonBody<UpdateAuthPolicy>,
) -> Result<Json<AuthPolicy>, ApiError> {
    let org = admin_org(&app, &p, &addr, &org).await?;
    let core: Vec<Policy> = req
        .policies
        .iter()
        .enumerate()
        .map(|(i, item)| to_core(item).map_err(|e| ApiError::bad_request(format!("policy {i}: {e}"))))
        .collect::<Result<_, _>>()?;
    trust::check_policies(&core).map_err(|e| ApiError::bad_request(e.to_string()))?;
    for (i, item) in req.policies.iter().enumerate() {
        for (k, v) in &item.rules {
            crate::core::text::check("rule key", k, trust::MAX_RULE_BYTES, crate::core::text::Lines::Single)
                .map_err(|e| ApiError::bad_request(format!("policy {i}: {e}")))?;
            crate::core::text::check("rule value", v, trust::MAX_RULE_BYTES, crate::core::text::Lines::Single)
                .map_err(|e| ApiError::bad_request(format!("policy {i}: {e}")))?;
        }
    }
    let text = serde_json::to_string(&req.policies).map_err(|e| ApiError::internal(&e))?;
    let allows = core.iter().filter(|p| p.effect == Effect::Allow).count();
    let event = app
        .event(Some(&p), &addr, Some(&org.id), AuditAction::OidcPolicyUpdate, &id)
        .detail(format!(
            "{} policies ({allows} allow, {} deny)",
            core.len(),
            core.len() - allows
        ));
    let record = app
        .store
        .replace_policy(&org.id, &id, &text, app.clock.now_ms(), &event)
        .await?
        .ok_or_else(|| policy_not_found(&id))?;
    Ok(Json(policy_to_wire(&record)))
}
