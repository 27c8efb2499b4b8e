//! Minting an OIDC token about one environment, and previewing its claims (Pulumi's `debug-oidc-claims`):
//! `POST …/{org}/{project}/{env}/oidc/token` and `…/oidc/claims`. Both need the opener role on the environment
//! (an environment the caller may not open answers exactly like a missing one); the token is minted and audited by
//! [`crate::server::oidc_issuer::mint_for_env`], the preview signs nothing and is audited too.

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};

use super::{env_event, target};
use crate::core::audit::AuditAction;
use crate::core::authz::Action;
use crate::core::oidc::TokenRequest;
use crate::server::auth::Caller;
use crate::server::body::JsonBody;
use crate::server::error::ApiError;
use crate::server::oidc_issuer::{mint_context, mint_for_env};
use crate::wire::SecretText;
use crate::wire::oidc_issuer::{OidcClaimsResponse, OidcTokenRequest, OidcTokenResponse};

fn token_request(body: &OidcTokenRequest) -> Result<TokenRequest, ApiError> {
    TokenRequest::new(
        &body.family,
        body.audience.as_deref(),
        body.audience_prefix.as_deref(),
        body.subject_attributes.as_deref(),
        body.duration.as_deref(),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn claims_json(claims: &crate::core::oidc::Claims) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(claims).map_err(|e| ApiError::internal(&e))
}

/// `POST /api/esc/environments/{org}/{project}/{env}/oidc/token`
pub async fn mint_token(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<OidcTokenRequest>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Open).await?;
    let req = token_request(&body)?;
    let minted = mint_for_env(&app, &p, &source, &t.org, (&t.env, &t.env), &req).await?;
    let exp = minted.claims.exp.unwrap_or_default();
    Ok(Json(OidcTokenResponse {
        token: SecretText::new(minted.expose().to_owned()),
        kid: minted.kid.clone(),
        expires_at: crate::core::timefmt::rfc3339(exp.saturating_mul(1000)),
        claims: claims_json(&minted.claims)?,
    })
    .into_response())
}

/// `POST /api/esc/environments/{org}/{project}/{env}/oidc/claims`: the claims a token would carry, unsigned.
pub async fn preview_claims(
    Caller(app, p, source): Caller,
    Path((org, project, env)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<OidcTokenRequest>,
) -> Result<Response, ApiError> {
    let t = target(&app, &p, &source, (&org, &project, &env), Action::Open).await?;
    let req = token_request(&body)?;
    let ctx = mint_context(&p, &t.org, &t.env, &t.env);
    let claims = crate::core::oidc::claims(&app.issuer_url, &ctx, &req, None)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let event = env_event(&app, &p, &source, &t, AuditAction::OidcPreview).detail(format!(
        "family={} sub={} aud={}",
        req.family().as_str(),
        claims.sub,
        claims.aud
    ));
    app.record(event).await?;
    Ok(Json(OidcClaimsResponse {
        claims: claims_json(&claims)?,
    })
    .into_response())
}
