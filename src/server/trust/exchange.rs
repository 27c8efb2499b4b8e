//! `POST /api/oauth/token` (RFC 8693 token exchange, in the shapes real clients send: the Pulumi CLI's form body,
//! pulumi/auth-actions' JSON body, other CI systems' form bodies) and `POST /api/oauth/oidc/token` (External Secrets
//! Operator: JSON `{organization, token}`).
//!
//! Rules: the subject token is verified against a registered issuer of the org (`core::jwt`: RS256/ES256 only,
//! `exp`/`nbf` on the injected clock, `iss`, `aud` = `urn:pulumi:org:<org>` or Sesame's public URL), then
//! the issuer's policies decide (`core::trust`: default deny, deny wins). A subject token may be exchanged again
//! until its `exp`. The minted token is a real Sesame token: confined to the org, capped at the policy's
//! `authorizedPermissions`, expiring within the issuer's `maxExpiration` (2 h by default). Refusals answer RFC 6749
//! §5.2 (`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`), change nothing, spend
//! the source's unauthenticated budget (429 once spent) and, like every mint, are audited — never with the token.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::issuers::stored_policies;
use crate::core::audit::{AuditAction, AuditEvent, Outcome};
use crate::core::jwt::{self, Expect};
use crate::core::tokens::{AccessToken, TokenKind};
use crate::core::trust::{self, Refusal, Wanted};
use crate::server::error::OAuthError;
use crate::server::{AppState, ClientAddr};
use crate::store::TokenRecord;
use crate::wire::SecretText;
use crate::wire::trust::{EsoTokenRequest, EsoTokenResponse, TokenExchangeRequest, TokenExchangeResponse};

/// RFC 8693's grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Subject token types accepted.
pub const SUBJECT_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
];
/// Prefix of the requested token types (`…:organization`, `…:team`, `…:personal`).
pub const TOKEN_TYPE_PREFIX: &str = "urn:pulumi:token-type:access_token:";
/// Prefix of the audience naming the org.
pub const AUDIENCE_PREFIX: &str = "urn:pulumi:org:";
/// Largest request body read, bytes.
const MAX_BODY: usize = 64 * 1024;
/// Most characters of a claim quoted in the audit log.
const MAX_CLAIM_QUOTE: usize = 200;

/// One exchange, whatever shape it came in.
struct Exchange {
    org: String,
    token: SecretText,
    audience: String,
    wanted: Wanted,
    expiration: Option<i64>,
}

/// What was minted.
struct Minted {
    token: AccessToken,
    kind: TokenKind,
    lifetime_s: i64,
    scope: String,
}

/// A refusal's audit facts: which issuer and subject, when known.
#[derive(Default)]
struct Seen {
    chain: Option<String>,
    issuer: Option<String>,
    subject: Option<String>,
    /// What the caller is not told (why keys could not be fetched: it can name internal addresses).
    note: Option<String>,
}

fn quote(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(MAX_CLAIM_QUOTE).collect()
}

/// `POST /api/oauth/token`
pub async fn token(
    State(app): State<Arc<AppState>>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = source.parse().ok();
    let mut seen = Seen::default();
    let result = match parse_rfc8693(&headers, &body) {
        Ok(ex) => exchange(&app, &source, ex, &mut seen).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(m) => Json(TokenExchangeResponse {
            access_token: SecretText::new(m.token.expose().to_owned()),
            issued_token_type: format!("{TOKEN_TYPE_PREFIX}{}", m.kind),
            token_type: "token".into(),
            expires_in: m.lifetime_s,
            scope: m.scope,
            refresh_token: String::new(),
        })
        .into_response(),
        Err(e) => refuse(&app, &source, ip, &seen, e).await,
    }
}

/// `POST /api/oauth/oidc/token` (External Secrets Operator): `aud` must be Sesame's public URL; the first
/// matching allow policy decides the kind of token.
pub async fn eso_token(State(app): State<Arc<AppState>>, ClientAddr(source): ClientAddr, body: Bytes) -> Response {
    let ip = source.parse().ok();
    let mut seen = Seen::default();
    let parsed = if body.len() > MAX_BODY {
        Err(OAuthError::invalid_request("the request body is too large"))
    } else {
        serde_json::from_slice::<EsoTokenRequest>(&body)
            .map_err(|_| OAuthError::invalid_request("the body must be JSON {\"organization\", \"token\"}"))
    };
    let result = match parsed {
        Ok(req) => {
            let ex = Exchange {
                org: req.organization.clone(),
                token: req.token,
                audience: app.public_url.clone(),
                wanted: Wanted::default(),
                expiration: None,
            };
            exchange(&app, &source, ex, &mut seen).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(m) => Json(EsoTokenResponse {
            access_token: SecretText::new(m.token.expose().to_owned()),
            expires_in: m.lifetime_s,
        })
        .into_response(),
        Err(e) => refuse(&app, &source, ip, &seen, e).await,
    }
}

/// Audits a refusal and answers it (429 instead once the source's budget for failures is spent).
async fn refuse(app: &AppState, source: &str, ip: Option<std::net::IpAddr>, seen: &Seen, e: OAuthError) -> Response {
    let mut event = app.event(
        None,
        source,
        seen.chain.as_deref(),
        AuditAction::TokenExchange,
        seen.issuer.as_deref().unwrap_or("oauth/token"),
    );
    if let Some(sub) = &seen.subject {
        event.actor = format!("oidc:{sub}");
    }
    let outcome = match &e {
        OAuthError::Server(_) => Outcome::Error,
        _ => Outcome::Denied,
    };
    let event = event.outcome(outcome).detail(match &seen.note {
        Some(note) => format!("{}: {} ({note})", e.code(), e.description()),
        None => format!("{}: {}", e.code(), e.description()),
    });
    if let Err(audit) = app.record(event).await {
        return audit.into_response();
    }
    if matches!(e, OAuthError::Refused { .. }) {
        let key = crate::server::throttle::source_key(ip);
        if let Err(limited) = app.throttle.admit_unauthenticated(key) {
            return limited.into_response();
        }
    }
    e.into_response()
}

/// The one value of a form field (a repeated field is refused, as RFC 6749 §3.2 requires).
fn parse_form(body: &[u8]) -> Result<TokenExchangeRequest, OAuthError> {
    let mut req = TokenExchangeRequest::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot: &mut Option<String> = match k.as_ref() {
            "audience" => &mut req.audience,
            "grant_type" => &mut req.grant_type,
            "subject_token_type" => &mut req.subject_token_type,
            "requested_token_type" => &mut req.requested_token_type,
            "scope" => &mut req.scope,
            "subject_token" => {
                if req.subject_token.is_some() {
                    return Err(OAuthError::invalid_request("subject_token is given more than once"));
                }
                req.subject_token = Some(SecretText::new(v.into_owned()));
                continue;
            }
            "expiration" => {
                if req.expiration.is_some() {
                    return Err(OAuthError::invalid_request("expiration is given more than once"));
                }
                req.expiration = Some(serde_json::Value::String(v.into_owned()));
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(OAuthError::invalid_request(format!("{k} is given more than once")));
        }
        *slot = Some(v.into_owned());
    }
    Ok(req)
}

fn is_json(headers: &HeaderMap, body: &[u8]) -> bool {
    match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(ct) => {
            let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        }
        None => body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    }
}

fn parse_rfc8693(headers: &HeaderMap, body: &[u8]) -> Result<Exchange, OAuthError> {
    if body.len() > MAX_BODY {
        return Err(OAuthError::invalid_request("the request body is too large"));
    }
    let req = if is_json(headers, body) {
        serde_json::from_slice::<TokenExchangeRequest>(body)
            .map_err(|_| OAuthError::invalid_request("the body is not a JSON object of token exchange parameters"))?
    } else {
        parse_form(body)?
    };
    match req.grant_type.as_deref() {
        None | Some("") => return Err(OAuthError::invalid_request("grant_type is required")),
        Some(GRANT_TYPE) => {}
        Some(_) => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "only token exchange is supported: grant_type={GRANT_TYPE}"
            )));
        }
    }
    let token = req
        .subject_token
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    match req.subject_token_type.as_deref() {
        Some(t) if SUBJECT_TOKEN_TYPES.contains(&t) => {}
        _ => {
            return Err(OAuthError::invalid_request(format!(
                "subject_token_type must be {}",
                SUBJECT_TOKEN_TYPES[0]
            )));
        }
    }
    let audience = req
        .audience
        .ok_or_else(|| OAuthError::invalid_request("audience is required: urn:pulumi:org:<org>"))?;
    let org = audience
        .strip_prefix(AUDIENCE_PREFIX)
        .filter(|o| !o.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("audience must be urn:pulumi:org:<org>"))?
        .to_owned();
    let scope = req.scope.unwrap_or_default();
    let kind = match req.requested_token_type.as_deref() {
        None | Some("") => infer_kind(&scope)?,
        Some(t) => match t.strip_prefix(TOKEN_TYPE_PREFIX) {
            Some("runner") => {
                return Err(OAuthError::invalid_request("runner tokens do not exist in Sesame"));
            }
            Some(k) => Some(TokenKind::parse(k).ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "requested_token_type must be {TOKEN_TYPE_PREFIX}organization, team or personal"
                ))
            })?),
            None => {
                return Err(OAuthError::invalid_request(format!(
                    "requested_token_type must be {TOKEN_TYPE_PREFIX}organization, team or personal"
                )));
            }
        },
    };
    let name = match kind {
        Some(k) => trust::parse_scope(k, &scope).map_err(OAuthError::invalid_request)?,
        None => None,
    };
    let expiration = match req.expiration {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| OAuthError::invalid_request("expiration must be whole seconds"))?,
        ),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(
            s.trim()
                .parse::<i64>()
                .map_err(|_| OAuthError::invalid_request("expiration must be whole seconds"))?,
        ),
        Some(_) => return Err(OAuthError::invalid_request("expiration must be whole seconds")),
    };
    Ok(Exchange {
        audience,
        org,
        token,
        wanted: Wanted { kind, name },
        expiration,
    })
}

/// The kind a scope implies when `requested_token_type` is absent (`None`: the first matching policy decides).
fn infer_kind(scope: &str) -> Result<Option<TokenKind>, OAuthError> {
    let s = scope.trim();
    if s.is_empty() {
        Ok(None)
    } else if s == "admin" {
        Ok(Some(TokenKind::Organization))
    } else if s.starts_with("team:") {
        Ok(Some(TokenKind::Team))
    } else if s.starts_with("user:") {
        Ok(Some(TokenKind::Personal))
    } else if s.starts_with("runner:") {
        Err(OAuthError::invalid_request("runner tokens do not exist in Sesame"))
    } else {
        Err(OAuthError::invalid_request(
            "scope must be empty, admin, team:NAME or user:LOGIN",
        ))
    }
}

/// Verifies, decides and mints.
async fn exchange(app: &AppState, source: &str, ex: Exchange, seen: &mut Seen) -> Result<Minted, OAuthError> {
    let untrusted = || OAuthError::invalid_grant("the token's issuer is not trusted by this organization");
    let org = app.org_by_name(&ex.org).await?;
    let unverified = jwt::peek(ex.token.expose()).map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
    // Unknown orgs answer like orgs that do not trust the issuer: nothing leaks about which orgs exist.
    let org = org.ok_or_else(untrusted)?;
    seen.chain = Some(org.id.clone());
    seen.issuer = Some(quote(&unverified.iss));
    let issuer = app
        .store
        .issuer_by_url(&org.id, &unverified.iss)
        .await?
        .ok_or_else(untrusted)?;
    seen.issuer = Some(issuer.id.clone());
    if issuer.disabled {
        return Err(OAuthError::invalid_grant(
            "the token's issuer is disabled in this organization",
        ));
    }
    let keys = app
        .issuer_keys
        .for_token(&issuer, unverified.kid.as_deref(), &app.egress, &app.clock)
        .await
        .map_err(|e| {
            tracing::warn!(issuer = %issuer.url, error = %e, "could not fetch an OIDC issuer's keys");
            seen.note = Some(e.to_string());
            OAuthError::invalid_grant("the issuer's signing keys could not be fetched; retry later")
        })?;
    let expect = Expect {
        issuer: &issuer.url,
        audience: &ex.audience,
        now_s: app.clock.now_ms().div_euclid(1000),
    };
    // At `/api/oauth/token`, a Kubernetes ServiceAccount token may name Sesame itself (its public URL) instead of
    // `urn:pulumi:org:<org>`: External Secrets Operator's Pulumi provider asks the API server for a token whose
    // audience is its `apiUrl` without `/api/esc`, and exchanges it there. The org is still the one asked for, and
    // only issuers registered in it, under their policies, are trusted.
    let claims = match jwt::verify(ex.token.expose(), &keys, &expect) {
        Err(first @ jwt::JwtError::Audience(_)) if ex.audience != app.public_url => {
            let public = Expect {
                audience: &app.public_url,
                ..expect
            };
            jwt::verify(ex.token.expose(), &keys, &public).map_err(|e| match e {
                jwt::JwtError::Audience(_) => {
                    OAuthError::invalid_grant(format!("{first} (or this server's public URL, {:?})", app.public_url))
                }
                other => OAuthError::invalid_grant(other.to_string()),
            })?
        }
        other => other.map_err(|e| OAuthError::invalid_grant(e.to_string()))?,
    };
    let claims = serde_json::Value::Object(claims);
    let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("");
    seen.subject = Some(quote(sub));
    let policy = app
        .store
        .policy_of_issuer(&org.id, &issuer.id)
        .await?
        .map(|p| stored_policies(&p.policies))
        .unwrap_or_default();
    let (index, allowed) = trust::evaluate(&policy, &claims, &ex.wanted).map_err(|r| match r {
        Refusal::Denied(i) => {
            OAuthError::unauthorized_client(format!("a deny policy (#{i}) of the issuer matches the token"))
        }
        Refusal::NoMatch => {
            OAuthError::unauthorized_client("no policy of the issuer allows this token what it asks for")
        }
    })?;
    let lifetime = trust::lifetime(ex.expiration, issuer.max_expiration_s)
        .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let kind = allowed.token_type.unwrap_or(TokenKind::Organization);
    let (user_id, team_id, scope) = match kind {
        TokenKind::Team => {
            let name = allowed.team_name.as_deref().unwrap_or("");
            let team =
                app.store.team_by_name(&org.id, name).await?.ok_or_else(|| {
                    OAuthError::unauthorized_client(format!("the policy's team {name:?} does not exist"))
                })?;
            (None, Some(team.id), format!("team:{name}"))
        }
        TokenKind::Personal => {
            let login = allowed.user_login.as_deref().unwrap_or("");
            let user = match app.store.user_by_login(login).await? {
                Some(u) if app.store.is_member(&org.id, &u.id).await? => u,
                _ => {
                    return Err(OAuthError::unauthorized_client(format!(
                        "the policy's user {login:?} is not a member of the organization"
                    )));
                }
            };
            (Some(user.id), None, format!("user:{login}"))
        }
        _ => (None, None, "admin".to_owned()),
    };
    let now = app.clock.now_ms();
    let token = AccessToken::generate(&mut rand::rng());
    let record = TokenRecord {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: token.hash(),
        kind,
        user_id,
        org_id: (kind != TokenKind::Personal).then(|| org.id.clone()),
        team_id,
        description: quote(&format!("exchanged: {} sub {sub}", issuer.name)),
        created_ms: now,
        expires_ms: Some(now + lifetime * 1000),
        revoked_ms: None,
        parent_id: None,
        confined_org_id: Some(org.id.clone()),
        role_cap: allowed.cap,
    };
    let mut event: AuditEvent = app
        .event(None, source, Some(&org.id), AuditAction::TokenExchange, &issuer.id)
        .detail(format!(
            "minted {kind} token {} ({scope}) for {lifetime} s under policy #{index}{}",
            record.id,
            allowed.cap.map(|c| format!(", capped at {c}")).unwrap_or_default()
        ));
    event.actor = format!("oidc:{}", quote(sub));
    app.store.insert_token(&record, &event).await?;
    Ok(Minted {
        token,
        kind,
        lifetime_s: lifetime,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_read_once() {
        let body = b"grant_type=a&grant_type=b";
        assert!(parse_form(body).is_err());
        let body = b"subject_token=x&subject_token=y";
        assert!(parse_form(body).is_err());
        let r = parse_form(b"audience=urn%3Apulumi%3Aorg%3Aacme&client_id=ignored&expiration=60").unwrap();
        assert_eq!(r.audience.as_deref(), Some("urn:pulumi:org:acme"));
        assert_eq!(r.expiration, Some(serde_json::Value::String("60".into())));
    }

    #[test]
    fn scopes_imply_kinds() {
        assert_eq!(infer_kind("").unwrap(), None);
        assert_eq!(infer_kind("team:ci").unwrap(), Some(TokenKind::Team));
        assert!(infer_kind("runner:x").is_err());
        assert!(infer_kind("other").is_err());
    }
}
