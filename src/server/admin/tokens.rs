//! Access tokens (`/api/sesame/v1/tokens`): personal ones for the caller, team and organization ones from an org's
//! administrators. A child token never outlives the token that made it, and revoking a token revokes every token
//! it made. A token's text is returned once, when it is made.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{org_for, team_in};
use crate::core::audit::{AuditAction, Outcome};
use crate::core::authz::Action;
use crate::core::text;
use crate::core::tokens::AccessToken;
use crate::server::AppState;
use crate::server::auth::Caller;
use crate::server::body::JsonBody;
use crate::server::error::{ApiError, Success};
use crate::store::identity::Revoked;
use crate::store::{TokenKind, TokenRecord};
use crate::wire::SecretText;
use crate::wire::admin::{CreateTokenRequest, CreatedToken, TokenInfo, TokenList};

/// The longest lifetime a token may be given, in days.
pub const MAX_TOKEN_DAYS: u32 = 365;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn token_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("token '{id}' not found"))
}

async fn token_info(app: &AppState, t: &TokenRecord, user_login: Option<&str>) -> Result<TokenInfo, ApiError> {
    let org = match &t.org_id {
        Some(id) => app.store.org_by_id(id).await?.map(|o| o.name),
        None => None,
    };
    let team = match &t.team_id {
        Some(id) => app.store.team_by_id(id).await?.map(|t| t.name),
        None => None,
    };
    Ok(TokenInfo {
        id: t.id.clone(),
        kind: t.kind.as_str().to_owned(),
        user: user_login.map(str::to_owned),
        org,
        team,
        description: t.description.clone(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        revoked_ms: t.revoked_ms,
        parent_id: t.parent_id.clone(),
    })
}

/// The expiry of a token made by a token expiring at `parent` (`None`: never). A child never outlives its parent:
/// with no `expiresInDays` it expires with the parent; an `expiresInDays` reaching past the parent's expiry is
/// refused (400), naming the most it may ask for.
fn child_expiry(days: Option<u32>, parent: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    let wanted = match days {
        None => return Ok(parent),
        Some(days @ 1..=MAX_TOKEN_DAYS) => now + i64::from(days) * DAY_MS,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "expiresInDays must be between 1 and {MAX_TOKEN_DAYS}"
            )));
        }
    };
    match parent {
        Some(limit) if wanted > limit => Err(ApiError::bad_request(format!(
            "a token cannot outlive the token that makes it: yours expires {}, so expiresInDays may be at most {} \
             (or leave it out to expire together)",
            crate::core::timefmt::rfc3339(limit),
            (limit - now).max(0) / DAY_MS
        ))),
        _ => Ok(Some(wanted)),
    }
}

/// `POST /api/sesame/v1/tokens`: a personal token for the caller, or (org admins) a team or organization token.
pub async fn create_token(
    Caller(app, p, addr): Caller,
    JsonBody(req): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    text::check(
        "token description",
        &req.description,
        text::MAX_DESCRIPTION,
        text::Lines::Multi,
    )?;
    let now = app.clock.now_ms();
    let expires_ms = child_expiry(req.expires_in_days, p.expires_ms(), now)?;
    let (kind, user_id, org, team) = match TokenKind::parse(&req.kind) {
        Some(TokenKind::Personal) => {
            if req.org.is_some() || req.team.is_some() {
                return Err(ApiError::bad_request("a personal token names no org or team"));
            }
            let (TokenKind::Personal, Some(user)) = (p.kind, &p.user_id) else {
                return Err(ApiError::bad_request(
                    "personal tokens belong to users; this token acts for an org or a team",
                ));
            };
            (TokenKind::Personal, Some(user.clone()), None, None)
        }
        Some(kind @ (TokenKind::Organization | TokenKind::Team)) => {
            let Some(org_name) = &req.org else {
                return Err(ApiError::bad_request(format!("a {kind} token needs \"org\"")));
            };
            match (kind, &req.team) {
                (TokenKind::Organization, Some(_)) => {
                    return Err(ApiError::bad_request("an organization token names no team"));
                }
                (TokenKind::Team, None) => return Err(ApiError::bad_request("a team token needs \"team\"")),
                _ => {}
            }
            let org = org_for(&app, &p, &addr, org_name, Action::ManageAccess).await?;
            match &req.team {
                None => (TokenKind::Organization, None, Some(org), None),
                Some(team_name) => {
                    let team = team_in(&app, &org, team_name).await?;
                    (TokenKind::Team, None, Some(org), Some(team))
                }
            }
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "unknown token kind {:?}: use personal, team or organization",
                req.kind
            )));
        }
    };
    let token = AccessToken::generate(&mut rand::rng());
    let record = TokenRecord {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: token.hash(),
        kind,
        user_id,
        org_id: org.as_ref().map(|o| o.id.clone()),
        team_id: team.as_ref().map(|t| t.id.clone()),
        description: req.description,
        created_ms: now,
        expires_ms,
        revoked_ms: None,
        parent_id: Some(p.token_id.clone()),
        // A token made by a confined or capped token is confined and capped alike.
        confined_org_id: p.confined_org_id.clone(),
        role_cap: p.role_cap,
    };
    let owner = match (&org, &team) {
        (Some(o), Some(t)) => format!("team {}/{}", o.name, t.name),
        (Some(o), None) => format!("organization {}", o.name),
        _ => format!("user {}", p.user_login.as_deref().unwrap_or("")),
    };
    let event = app
        .event(
            Some(&p),
            &addr,
            org.as_ref().map(|o| o.id.as_str()),
            AuditAction::TokenCreate,
            &record.id,
        )
        .detail(format!(
            "{} token for {owner}{}, made by token {}",
            kind,
            match expires_ms {
                Some(at) => format!(", expires {}", crate::core::timefmt::rfc3339(at)),
                None => String::new(),
            },
            p.token_id
        ));
    if !app.store.insert_token(&record, &event).await? {
        // The calling token was revoked since this replica cached it: refused like any revoked token.
        app.tokens.invalidate_all();
        return Err(ApiError::unauthorized("invalid, expired or revoked access token"));
    }
    let login = (kind == TokenKind::Personal)
        .then_some(p.user_login.as_deref())
        .flatten();
    let info = token_info(&app, &record, login).await?;
    Ok(Success::Created.with(Json(CreatedToken {
        info,
        token: SecretText::new(token.expose().to_owned()),
    })))
}

/// Query of `GET /api/sesame/v1/tokens`.
#[derive(Debug, Deserialize)]
pub struct TokenListQuery {
    /// List this org's organization and team tokens instead of the caller's personal ones.
    #[serde(default)]
    pub org: Option<String>,
}

/// `GET /api/sesame/v1/tokens[?org=…]`
pub async fn list_tokens(
    Caller(app, p, addr): Caller,
    Query(q): Query<TokenListQuery>,
) -> Result<Json<TokenList>, ApiError> {
    let records = match &q.org {
        Some(org) => {
            let org = org_for(&app, &p, &addr, org, Action::ManageAccess).await?;
            app.store.tokens_of_org(&org.id).await?
        }
        None => match (p.kind, &p.user_id) {
            (TokenKind::Personal, Some(user)) => {
                let mut mine = app.store.tokens_of_user(user).await?;
                if p.confined_org_id.is_some() {
                    mine.retain(|t| t.confined_org_id == p.confined_org_id);
                }
                mine
            }
            _ => Vec::new(),
        },
    };
    let mut tokens = Vec::with_capacity(records.len());
    for t in &records {
        let login = (t.kind == TokenKind::Personal)
            .then_some(p.user_login.as_deref())
            .flatten();
        tokens.push(token_info(&app, t, login).await?);
    }
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /api/sesame/v1/tokens/{id}`: the caller's own token, an org or team token of an org the caller
/// administers, or any token for the instance administrator; every token it made (transitively) is revoked with it. Refused at once on this replica; other replicas stop
/// accepting it within their token cache's lifetime.
pub async fn revoke_token(Caller(app, p, addr): Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let record = app.store.token_by_id(&id).await?.ok_or_else(|| token_not_found(&id))?;
    // A confined token (minted by exchange) owns only the tokens confined alike, not its user's others.
    let own = record.user_id.is_some()
        && record.user_id == p.user_id
        && (p.confined_org_id.is_none() || record.confined_org_id == p.confined_org_id);
    let chain = match (&record.org_id, own || p.instance_admin) {
        (_, true) => record.org_id.clone(),
        (Some(org_id), false) => {
            let Some(org) = app.store.org_by_id(org_id).await? else {
                return Err(token_not_found(&id));
            };
            // The org's name must not leak to a caller who cannot see it: its 404 becomes the token's.
            let (org, access) = app
                .org_access(&p, &addr, &org.name)
                .await
                .map_err(|e| if e.is_not_found() { token_not_found(&id) } else { e })?;
            app.authorize(&p, &addr, (&org, &access), (None, None), Action::ManageAccess, || {
                token_not_found(&id)
            })
            .await?;
            Some(org.id.clone())
        }
        (None, false) => {
            // Someone else's personal token: answered like a missing one, and audited.
            let event = app
                .event(Some(&p), &addr, None, AuditAction::TokenRevoke, &id)
                .outcome(Outcome::Denied)
                .detail("not the caller's token");
            app.record(event).await?;
            return Err(token_not_found(&id));
        }
    };
    let event = app.event(Some(&p), &addr, chain.as_deref(), AuditAction::TokenRevoke, &id);
    let audit = |revoked: &Revoked| {
        event.clone().detail(format!(
            "{} token{}{}",
            record.kind,
            if revoked.revoked { "" } else { " (revoked already)" },
            if revoked.descendants.is_empty() {
                String::new()
            } else {
                format!("; with the tokens it made: {}", revoked.descendants.join(", "))
            }
        ))
    };
    app.store.revoke_token(&id, app.clock.now_ms(), &audit).await?;
    app.tokens.invalidate_all();
    Ok(Success::NoContent.status())
}
