//! Authentication: `Authorization: token <t>` (ESC's form) or `Bearer <t>` → a [`Principal`].
//!
//! Tokens are looked up by their SHA-256 (the store holds nothing else). Successful lookups are cached for
//! [`TOKEN_CACHE_TTL`], so the hot path makes no database round trip; a revoked token can therefore still be used
//! for at most that long on a replica that had it cached. Expiry is checked on every request against the cached
//! row, so an expired token is refused at once.
//!
//! Failed authentications spend their source address's budget ([`super::throttle`]): a source that keeps failing
//! gets 429 with `Retry-After` instead of 401, while a valid token is accepted from any address, limited or not.
//! Failures are audited as tallies per source and window, not one record each.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::core::tokens::AccessToken;
use crate::store::{TokenKind, TokenWithUser};

/// How long a token lookup is reused without asking the store again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// The authenticated caller, as an extractor: `Auth(principal): Auth` in a handler's arguments. Shared, not
/// copied, from the token cache.
#[derive(Debug, Clone)]
pub struct Auth(pub Arc<Principal>);

/// A handler's call, as one extractor: the shared state, the authenticated principal (as [`Auth`] finds it) and the
/// source address (as [`super::ClientAddr`]), in that order. Handlers take it as `Caller(app, principal, addr): Caller`
/// and keep the names they use.
pub struct Caller(pub Arc<AppState>, pub Arc<Principal>, pub String);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Auth(principal) = Auth::from_request_parts(parts, app).await?;
        Ok(Caller(app.clone(), principal, super::client_addr(parts)))
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's id (safe to log).
    pub token_id: String,
    /// The token's kind.
    pub kind: TokenKind,
    /// The org an organization/team token belongs to.
    pub org_id: Option<String>,
    /// The user a personal token acts as: id and login.
    pub user_id: Option<String>,
    pub user_login: Option<String>,
    /// The team a team token acts as.
    pub team_id: Option<String>,
    /// Whether the caller administers the instance (never for a confined token).
    pub instance_admin: bool,
    /// The one org the token acts in (tokens minted by exchange); `None`: not confined.
    pub confined_org_id: Option<String>,
    /// The highest role the token may exercise (`None`: no cap).
    pub role_cap: Option<crate::core::authz::Role>,
    expires_ms: Option<i64>,
}

impl Principal {
    /// When the token expires, Unix milliseconds (`None`: never). Tokens it makes expire no later.
    pub fn expires_ms(&self) -> Option<i64> {
        self.expires_ms
    }

    fn from_record(r: &TokenWithUser) -> Principal {
        Principal {
            token_id: r.token.id.clone(),
            kind: r.token.kind,
            org_id: r.token.org_id.clone(),
            user_id: r.user.as_ref().map(|u| u.id.clone()),
            user_login: r.user.as_ref().map(|u| u.login.clone()),
            team_id: r.token.team_id.clone(),
            // A confined token acts in its org only: never as the instance's administrator.
            instance_admin: r.token.confined_org_id.is_none() && r.user.as_ref().is_some_and(|u| u.instance_admin),
            confined_org_id: r.token.confined_org_id.clone(),
            role_cap: r.token.role_cap,
            expires_ms: r.token.expires_ms,
        }
    }
}

/// The principal the stored token `token_id` acts as now, as if it were presented (a rotation schedule runs with the
/// token that created it): `None` when the token is gone, revoked or expired.
pub async fn principal_of_token(app: &AppState, token_id: &str) -> Result<Option<Principal>, ApiError> {
    let Some(t) = app.store.token_by_id(token_id).await? else {
        return Ok(None);
    };
    let Some(record) = app.store.token_by_hash(&t.token_hash).await? else {
        return Ok(None);
    };
    let now = app.clock.now_ms();
    if record.token.revoked_ms.is_some() || record.token.expires_ms.is_some_and(|exp| exp <= now) {
        return Ok(None);
    }
    Ok(Some(Principal::from_record(&record)))
}

/// The presented token, if the header has one of the accepted forms.
fn presented_token(parts: &Parts) -> Result<AccessToken, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header; send 'Authorization: token <token>'"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("malformed Authorization header; send 'Authorization: token <token>'"))?;
    if !(scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer")) {
        return Err(ApiError::unauthorized(
            "unsupported Authorization scheme; send 'Authorization: token <token>'",
        ));
    }
    Ok(AccessToken::from_presented(rest))
}

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let presented = presented_token(parts);
        match authenticate(presented, app).await {
            Ok(p) => {
                app.throttle
                    .admit_token(&p.token_id)
                    .map_err(IntoResponse::into_response)?;
                Ok(Auth(p))
            }
            Err(e) if e.is_unauthorized() => {
                // A failure spends the source's budget: once it is spent, failures answer 429 instead of 401.
                // Either way the failure goes to the instance chain (the caller is nobody we know), tallied per
                // source and window.
                let source = super::client_addr(parts);
                let key = super::throttle::source_key(peer_ip(parts));
                let limited = app.throttle.admit_unauthenticated(key).err();
                let reason = if limited.is_some() { "rate limited" } else { e.message() };
                app.throttle.failed(&app.audit, &source, parts.uri.path(), reason).await;
                Err(match limited {
                    Some(l) => l.into_response(),
                    None => e.into_response(),
                })
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The token of a Vault-API request (`/v1/…`): `X-Vault-Token`, else `Authorization: Bearer`.
fn vault_token(parts: &Parts) -> Result<AccessToken, ApiError> {
    if let Some(v) = parts.headers.get("x-vault-token") {
        let v = v
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed X-Vault-Token header"))?;
        return Ok(AccessToken::from_presented(v.trim()));
    }
    presented_token(parts)
}

/// Authenticates a Vault-API request. A failure spends the source's budget and is tallied exactly as on the other
/// APIs; it answers `Err(None)` (the caller answers Vault's `permission denied`), or `Err(Some(response))` (429)
/// once the source's budget is spent.
pub(crate) async fn vault_principal(parts: &Parts, app: &Arc<AppState>) -> Result<Arc<Principal>, Option<Response>> {
    match authenticate(vault_token(parts), app).await {
        Ok(p) => {
            app.throttle
                .admit_token(&p.token_id)
                .map_err(|e| Some(IntoResponse::into_response(e)))?;
            Ok(p)
        }
        Err(e) if e.is_unauthorized() => {
            let source = super::client_addr(parts);
            let key = super::throttle::source_key(peer_ip(parts));
            let limited = app.throttle.admit_unauthenticated(key).err();
            let reason = if limited.is_some() { "rate limited" } else { e.message() };
            app.throttle.failed(&app.audit, &source, parts.uri.path(), reason).await;
            Err(limited.map(IntoResponse::into_response))
        }
        Err(e) => Err(Some(super::error::VaultError::from(e).into_response())),
    }
}

/// The peer's address, when the server was started with connection info.
fn peer_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn authenticate(
    presented: Result<AccessToken, ApiError>,
    app: &Arc<AppState>,
) -> Result<Arc<Principal>, ApiError> {
    let token = presented?;
    let refused = || ApiError::unauthorized("invalid, expired or revoked access token");
    if !token.is_well_formed() {
        tracing::debug!("authentication failed: malformed token");
        return Err(refused());
    }
    let hash = token.hash();
    // Concurrent requests with one token that is not cached (first use, or its entry expired) look it up once.
    let principal = app
        .tokens
        .try_get_with(hash, async {
            let Some(record) = app.store.token_by_hash(&hash).await? else {
                tracing::debug!("authentication failed: unknown token");
                return Err(refused());
            };
            if record.token.revoked_ms.is_some() {
                tracing::debug!(token_id = %record.token.id, "authentication failed: revoked token");
                return Err(refused());
            }
            Ok::<_, ApiError>(Arc::new(Principal::from_record(&record)))
        })
        .await
        .map_err(Arc::unwrap_or_clone)?;
    if principal.expires_ms.is_some_and(|exp| exp <= app.clock.now_ms()) {
        tracing::debug!(token_id = %principal.token_id, "authentication failed: expired token");
        return Err(refused());
    }
    Ok(principal)
}
