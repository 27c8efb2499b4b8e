//! The OIDC issuer's HTTP edge: the discovery document at `{issuer}/.well-known/openid-configuration` and the JWKS
//! at `{issuer}/.well-known/jwks` (unauthenticated, served on the issuer URL's path), the resolution of
//! `--public-url`/`--issuer-url`, and [`mint_for_env`], the one way a token about an environment is minted and
//! audited (the mint endpoint and the providers call it).
//!
//! Rule: the discovery document's `issuer` is the string every token carries as `iss`, byte for byte
//! ([`AppState::issuer_url`]); a mint is audited (sub, aud, environment, lifetime, key id; never the token) before
//! the token is handed out.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Success};
use crate::core::audit::AuditAction;
use crate::core::oidc::{EnvFacts, MintContext, TokenRequest};
use crate::oidc_issuer::{IssuerError, MintedToken, OidcConfig};
use crate::store::OrgRecord;
use crate::store::envs::EnvRecord;

/// How long relying parties may cache the discovery document and the JWKS (well under the issuer's cache margin,
/// which decides how early keys are published and how long retired ones stay).
const PUBLIC_MAX_AGE: &str = "public, max-age=300";

/// The issuer settings of `sesame serve`.
#[derive(Debug, Clone, Default)]
pub struct OidcServeConfig {
    /// `--public-url`: the server's external origin (default `http://` — `https://` under TLS — and the address it
    /// listens on).
    pub public_url: Option<String>,
    /// `--issuer-url`: the issuer (default `<public URL>/oidc`).
    pub issuer_url: Option<String>,
    /// Keys: algorithm, rotation period, cache margin.
    pub keys: OidcConfig,
}

/// An absolute `http(s)` URL without query, fragment or credentials, in its normal form and without a trailing
/// slash.
fn normal_url(flag: &str, text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{flag} {text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{flag} must be an http:// or https:// URL"));
    }
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{flag} must name a host and have no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{flag} must not carry credentials"));
    }
    if !url
        .path()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
        || url.path().contains("//")
    {
        return Err(format!(
            "{flag} path may contain only letters, digits, '/', '-', '_', '.' and '~'"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The public URL and the issuer URL `sesame serve` uses, from its flags and the address it listens on.
pub fn resolve_urls(
    config: &OidcServeConfig,
    listen: std::net::SocketAddr,
    tls: bool,
) -> Result<(String, String), String> {
    let public = match &config.public_url {
        Some(u) => normal_url("--public-url", u)?,
        None => normal_url(
            "--public-url",
            &format!("{}://{listen}", if tls { "https" } else { "http" }),
        )?,
    };
    let issuer = match &config.issuer_url {
        Some(u) => normal_url("--issuer-url", u)?,
        None => format!("{public}/oidc"),
    };
    Ok((public, issuer))
}

/// The path the router serves the issuer's documents under (`""` for an issuer at its origin's root).
pub fn issuer_path(issuer_url: &str) -> String {
    url::Url::parse(issuer_url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

impl From<IssuerError> for ApiError {
    fn from(e: IssuerError) -> Self {
        match e {
            IssuerError::Request(r) => ApiError::bad_request(r.to_string()),
            IssuerError::Keyring(k) => k.into(),
            other => ApiError::internal(&other),
        }
    }
}

fn public_json(body: Vec<u8>) -> Response {
    let mut resp = Success::Ok.with(body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(PUBLIC_MAX_AGE));
    resp
}

/// `GET {issuer}/.well-known/openid-configuration`
pub async fn discovery(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let doc = app.oidc.discovery(&app.issuer_url).await?;
    Ok(public_json(
        serde_json::to_vec(&doc).map_err(|e| ApiError::internal(&e))?,
    ))
}

/// `GET {issuer}/.well-known/jwks`
pub async fn jwks(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let jwks = app.oidc.jwks().await?;
    Ok(public_json(jwks.as_ref().clone()))
}

/// What the edge attests about a mint in `org`: the environment asking (`current`), the one opened (`root`) and
/// the caller's login.
pub fn mint_context(p: &Principal, org: &OrgRecord, current: &EnvRecord, root: &EnvRecord) -> MintContext {
    let facts = |e: &EnvRecord| EnvFacts {
        project: e.project.clone(),
        name: e.name.clone(),
        id: e.id.clone(),
    };
    MintContext {
        org_name: org.name.clone(),
        org_id: org.id.clone(),
        current: facts(current),
        root: facts(root),
        user_login: p.user_login.clone(),
    }
}

/// The Rust API the providers (`aws-login`, `fn::open::oidc`, …) call: mints the token `req` asks for about
/// `current` (opened through `root`), for `p`, and audits it on the org's chain before returning it. The caller has
/// checked that `p` may open `root` (and so `current`, which it imports).
pub async fn mint_for_env(
    app: &AppState,
    p: &Principal,
    source: &str,
    org: &OrgRecord,
    (current, root): (&EnvRecord, &EnvRecord),
    req: &TokenRequest,
) -> Result<MintedToken, ApiError> {
    let ctx = mint_context(p, org, current, root);
    let minted = app.oidc.mint(&app.issuer_url, &ctx, req).await?;
    let c = &minted.claims;
    let target = format!("{}/{}/{}", org.name, current.project, current.name);
    let event = app
        .event(Some(p), source, Some(&org.id), AuditAction::OidcMint, &target)
        .detail(format!(
            "family={} sub={} aud={} lifetime={}s kid={} jti={}",
            req.family().as_str(),
            c.sub,
            c.aud,
            req.lifetime().as_secs(),
            minted.kid,
            c.jti.as_deref().unwrap_or(""),
        ));
    app.record(event).await?;
    Ok(minted)
}
