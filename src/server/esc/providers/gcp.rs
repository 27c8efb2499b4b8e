//! `fn::open::gcp-login`: short-lived Google Cloud credentials, over plain HTTPS through [`crate::egress`] (no Google
//! SDK). With `oidc: {workloadPoolId, providerId, serviceAccount, region?, subjectAttributes?, tokenLifetime?}` a
//! login-family token from this server's issuer (`aud = gcp:<org>`, as Pulumi ESC's) is exchanged at Google's
//! Security Token Service (`POST <sts>/v1/token`, RFC 8693 token exchange in Google's JSON form) for a federated
//! token, which then impersonates the service account through IAM Credentials (`POST <iam-credentials>/v1/projects/-/
//! serviceAccounts/<sa>:generateAccessToken`). With `accessToken: {accessToken, serviceAccount?, tokenLifetime?}`
//! the given token is handed back, or impersonates `serviceAccount` the same way. The answer is `{project,
//! accessToken, tokenType, expiry?}`. The two Google base URLs are the operator's (`sesame serve --gcp-sts-url`,
//! `--gcp-iam-credentials-url`).
//!
//! Rule: the output is secret as a whole; every input is checked before any call; a call that fails in a way Google
//! documents as retryable (429, 5xx, no connection) is retried once, nothing else is; errors name Google's host,
//! the step and its HTTP status, never a token nor a response body.

use std::sync::LazyLock;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use super::inputs::{chars_within, object, only, required, string, strings};
use super::{OpenCtx, Output, Provider};
use crate::core::oidc::TokenRequest;
use crate::egress::{self, EgressError, Request};
use crate::server::answer::wipe_json;

/// The scope asked for, at STS and for the service account's token: all of Google Cloud (IAM decides the rest).
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The shortest `tokenLifetime` accepted.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest `tokenLifetime` accepted (Google's ceiling, which needs an organization policy beyond 1h).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The default `tokenLifetime` (Pulumi's).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest token (given, or in an answer) accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Where Google's two APIs are: base URLs (scheme, host, port), the real ones unless the operator says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpEndpoints {
    /// Security Token Service (`https://sts.googleapis.com`).
    pub sts: url::Url,
    /// IAM Service Account Credentials (`https://iamcredentials.googleapis.com`).
    pub iam_credentials: url::Url,
}

impl Default for GcpEndpoints {
    fn default() -> Self {
        GcpEndpoints::parse("https://sts.googleapis.com", "https://iamcredentials.googleapis.com")
            .expect("Google's URLs are well-formed")
    }
}

impl GcpEndpoints {
    /// The endpoints at `sts` and `iam_credentials`, each an http(s) origin without path, query nor credentials.
    pub fn parse(sts: &str, iam_credentials: &str) -> Result<GcpEndpoints, String> {
        Ok(GcpEndpoints {
            sts: base(sts).map_err(|e| format!("the STS URL: {e}"))?,
            iam_credentials: base(iam_credentials).map_err(|e| format!("the IAM Credentials URL: {e}"))?,
        })
    }
}

fn base(s: &str) -> Result<url::Url, String> {
    let u = egress::check_url(s).map_err(|e| e.to_string())?;
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err("give a scheme and a host (and port), without a path".into());
    }
    Ok(u)
}

pub struct GcpLogin;

fn subject_attributes_schema() -> Json {
    json!({
        "type": "array",
        "description": "The attributes, in order, that the login token's subject is built from.",
        "items": {
            "type": "string",
            "enum": [
                "pulumi.user.login",
                "pulumi.organization.login",
                "pulumi.token.type",
                "pulumi.token.team",
                "currentEnvironment.name",
                "rootEnvironment.name",
            ],
        },
    })
}

fn lifetime_schema(what: &str) -> Json {
    json!({
        "type": "string",
        "description": what,
        "default": "1h",
        "pattern": "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
    })
}

static INPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "project": {
                "type": "number",
                "description": "The Google Cloud project's number (gcloud projects describe ID \
                                --format='get(projectNumber)').",
            },
            "oidc": {
                "type": "object",
                "description": "Log in through workload identity federation with an OIDC token from this server.",
                "properties": {
                    "workloadPoolId": {"type": "string", "description": "The workload identity pool's id."},
                    "providerId": {"type": "string", "description": "The pool's OIDC provider id."},
                    "serviceAccount": {
                        "type": "string",
                        "description": "The email of the service account to impersonate.",
                    },
                    "region": {"type": "string", "description": "The project's region (accepted, not used)."},
                    "subjectAttributes": subject_attributes_schema(),
                    "tokenLifetime": lifetime_schema("How long the access token lives, 1m to 12h."),
                },
                "required": ["workloadPoolId", "providerId", "serviceAccount"],
                "additionalProperties": false,
            },
            "accessToken": {
                "type": "object",
                "description": "Log in with an access token that you already hold.",
                "properties": {
                    "accessToken": {"type": "string", "description": "The Google Cloud access token."},
                    "serviceAccount": {
                        "type": "string",
                        "description": "A service account to impersonate with it, if any.",
                    },
                    "tokenLifetime": lifetime_schema(
                        "How long the impersonated access token lives, 1m to 12h.",
                    ),
                },
                "required": ["accessToken"],
                "additionalProperties": false,
            },
        },
        "required": ["project"],
        "additionalProperties": false,
    })
});

static OUTPUTS: LazyLock<Json> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "project": {"type": "number", "description": "The Google Cloud project's number."},
            "accessToken": {"type": "string", "description": "The access token.", "secret": true},
            "tokenType": {"type": "string", "description": "How the token is presented: Bearer."},
            "expiry": {"type": "string", "description": "When the access token expires (RFC 3339)."},
        },
        "required": ["accessToken", "project", "tokenType"],
    })
});

/// The Google id rules for pools and providers: 4–32 lowercase letters, digits and hyphens.
fn check_id(s: &str, what: &str) -> Result<(), String> {
    if s.len() < 4 || !chars_within(s, 32, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(format!("{what} must be 4-32 lowercase letters, digits and hyphens"));
    }
    Ok(())
}

/// A service account: its email (or unique id), used as one URL path segment.
fn check_service_account(s: &str, what: &str) -> Result<(), String> {
    if !chars_within(s, 254, |c| c.is_ascii_alphanumeric() || "@._-".contains(c)) {
        return Err(format!(
            "{what} must be a service account's email: 1-254 letters, digits and @ . _ -"
        ));
    }
    Ok(())
}

fn lifetime(obj: &Map<String, Json>, at: &str) -> Result<Duration, String> {
    let Some(text) = string(obj, "tokenLifetime", at)? else {
        return Ok(DEFAULT_TOKEN_LIFETIME);
    };
    match crate::core::timefmt::parse_go_duration(text) {
        Some(d) if (MIN_TOKEN_LIFETIME..=MAX_TOKEN_LIFETIME).contains(&d) && d.subsec_nanos() == 0 => Ok(d),
        _ => Err(format!(
            "{at}tokenLifetime must be a duration from 1m to 12h in whole seconds, such as 1h or 30m"
        )),
    }
}

fn check_token(t: &str, what: &str) -> Result<(), String> {
    if !chars_within(t, MAX_TOKEN_BYTES, |c| c.is_ascii_graphic()) {
        return Err(format!("{what} must be 1-{MAX_TOKEN_BYTES} visible ASCII characters"));
    }
    Ok(())
}

/// The project number: a positive whole number.
fn project(obj: &Map<String, Json>) -> Result<u64, String> {
    match obj.get("project") {
        None => Err("project is required: the project's number".into()),
        Some(Json::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f > 0.0 && *f < 9.0e15)
                    .map(|f| f as u64)
            })
            .filter(|n| *n > 0)
            .ok_or_else(|| "project must be the project's number (a positive whole number)".into()),
        Some(_) => Err("project must be the project's number (a positive whole number)".into()),
    }
}

/// What a call asks for, checked in full before anything is called.
enum Plan<'a> {
    Oidc {
        pool: &'a str,
        provider: &'a str,
        service_account: &'a str,
        attributes: Option<Vec<String>>,
        lifetime: Duration,
    },
    Given {
        token: &'a str,
        impersonate: Option<(&'a str, Duration)>,
    },
}

fn plan(inputs: &Json) -> Result<(u64, Plan<'_>), String> {
    let obj = object(inputs, "the inputs")?;
    only(obj, &["project", "oidc", "accessToken"], "")?;
    let project = project(obj)?;
    let plan = match (obj.get("oidc"), obj.get("accessToken")) {
        (Some(_), Some(_)) | (None, None) => return Err("give exactly one of oidc and accessToken".into()),
        (Some(Json::Object(o)), None) => {
            let at = "oidc.";
            only(
                o,
                &[
                    "workloadPoolId",
                    "providerId",
                    "serviceAccount",
                    "region",
                    "subjectAttributes",
                    "tokenLifetime",
                ],
                at,
            )?;
            let pool = required(o, "workloadPoolId", at)?;
            check_id(pool, "oidc.workloadPoolId")?;
            let provider = required(o, "providerId", at)?;
            check_id(provider, "oidc.providerId")?;
            let service_account = required(o, "serviceAccount", at)?;
            check_service_account(service_account, "oidc.serviceAccount")?;
            if let Some(r) = string(o, "region", at)?
                && !chars_within(r, 64, |c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err("oidc.region must be 1-64 letters, digits and hyphens".into());
            }
            let attributes = strings(o, "subjectAttributes", at)?;
            Plan::Oidc {
                pool,
                provider,
                service_account,
                attributes,
                lifetime: lifetime(o, at)?,
            }
        }
        (None, Some(Json::Object(a))) => {
            let at = "accessToken.";
            only(a, &["accessToken", "serviceAccount", "tokenLifetime"], at)?;
            let token = required(a, "accessToken", at)?;
            check_token(token, "accessToken.accessToken")?;
            let life = lifetime(a, at)?;
            let impersonate = match string(a, "serviceAccount", at)? {
                Some(sa) => {
                    check_service_account(sa, "accessToken.serviceAccount")?;
                    Some((sa, life))
                }
                None => None,
            };
            Plan::Given { token, impersonate }
        }
        (Some(_), None) => return Err("oidc must be an object {workloadPoolId, providerId, serviceAccount}".into()),
        (None, Some(_)) => return Err("accessToken must be an object {accessToken}".into()),
    };
    Ok((project, plan))
}

/// How long to wait before the one retry of a retryable failure.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Whether Google documents the failure as worth retrying: 429, 500, 502, 503, 504 or no connection (a timeout is
/// not retried: the call's deadline would not hold a second wait).
fn retryable(e: &EgressError) -> bool {
    matches!(
        e,
        EgressError::Status {
            status: 429 | 500 | 502 | 503 | 504,
            ..
        } | EgressError::Http { .. }
    )
}

/// Sends a JSON body to Google and parses the JSON answer; a [`retryable`] failure is retried once after
/// [`RETRY_AFTER`] (both calls are safe to repeat: each mints a new token and changes nothing).
async fn call(ctx: &OpenCtx<'_>, url: &url::Url, bearer: Option<&str>, body: &Json) -> Result<Json, EgressError> {
    let answer = match send(ctx, url, bearer, body).await {
        Err(e) if retryable(&e) => {
            tokio::time::sleep(RETRY_AFTER).await;
            send(ctx, url, bearer, body).await
        }
        other => other,
    }?;
    serde_json::from_slice(&answer).map_err(|_| EgressError::Http {
        host: url.host_str().unwrap_or_default().to_owned(),
        reason: "the answer is not JSON".into(),
    })
}

async fn send(
    ctx: &OpenCtx<'_>,
    url: &url::Url,
    bearer: Option<&str>,
    body: &Json,
) -> Result<Zeroizing<Vec<u8>>, EgressError> {
    let auth = bearer.map(|b| Zeroizing::new(format!("Bearer {b}")));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let bytes = Zeroizing::new(body.to_string().into_bytes());
    let req = Request {
        method: reqwest::Method::POST,
        url: url.as_str(),
        headers: &headers,
        json: Some(bytes.as_slice()),
    };
    egress::send(&ctx.app.egress, &req).await.map(Zeroizing::new)
}

/// A failed call, with what Google's status usually means at that step.
fn google_error(e: EgressError, doing: &str, hints: &[(u16, &str)]) -> String {
    match e {
        EgressError::Status { host, status } => {
            let hint = hints
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, h)| format!(" ({h})"))
                .unwrap_or_default();
            format!("{doing}: {host} answered HTTP {status}{hint}")
        }
        other => format!("{doing}: {other}"),
    }
}

/// A string field of an answer: 1 to [`MAX_TOKEN_BYTES`] visible ASCII characters.
fn answered(answer: &Json, key: &str) -> Option<Zeroizing<String>> {
    answer[key]
        .as_str()
        .filter(|s| chars_within(s, MAX_TOKEN_BYTES, |c| c.is_ascii_graphic()))
        .map(|s| Zeroizing::new(s.to_owned()))
}

/// `generateAccessToken` for `sa` with `bearer`: the token and its `expireTime`.
async fn impersonate(
    ctx: &OpenCtx<'_>,
    sa: &str,
    bearer: &str,
    life: Duration,
) -> Result<(Zeroizing<String>, String), String> {
    let mut url = ctx.app.gcp.iam_credentials.clone();
    if let Ok(mut p) = url.path_segments_mut() {
        p.clear()
            .extend(["v1", "projects", "-", "serviceAccounts"])
            .push(&format!("{sa}:generateAccessToken"));
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let body = json!({"scope": [CLOUD_PLATFORM_SCOPE], "lifetime": format!("{}s", life.as_secs())});
    let answer = call(ctx, &url, Some(bearer), &body).await.map_err(|e| {
        google_error(
            e,
            &format!("impersonating service account {sa:?}"),
            &[
                (
                    400,
                    "a bad request: a lifetime beyond 1h needs the organization policy that allows it",
                ),
                (401, "the credential was refused"),
                (
                    403,
                    "permission denied: the identity needs roles/iam.workloadIdentityUser (OIDC) or \
                     roles/iam.serviceAccountTokenCreator on the service account",
                ),
                (404, "no such service account"),
            ],
        )
    })?;
    let token = answered(&answer, "accessToken");
    let expiry = answer["expireTime"]
        .as_str()
        .filter(|s| chars_within(s, 64, |c| c.is_ascii_graphic()))
        .map(str::to_owned);
    wipe_json(answer);
    match (token, expiry) {
        (Some(t), Some(e)) => Ok((t, e)),
        _ => Err(format!(
            "impersonating service account {sa:?}: {host} answered no accessToken and expireTime"
        )),
    }
}

/// The STS exchange of our login token for a federated access token.
async fn exchange(
    ctx: &OpenCtx<'_>,
    project: u64,
    pool: &str,
    provider: &str,
    jwt: &str,
) -> Result<Zeroizing<String>, String> {
    let mut url = ctx.app.gcp.sts.clone();
    url.set_path("/v1/token");
    let host = url.host_str().unwrap_or_default().to_owned();
    let audience = format!(
        "//iam.googleapis.com/projects/{project}/locations/global/workloadIdentityPools/{pool}/providers/{provider}"
    );
    let body = json!({
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": audience,
        "scope": CLOUD_PLATFORM_SCOPE,
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
        "subjectToken": jwt,
        "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
    });
    let answer = call(ctx, &url, None, &body).await;
    wipe_json(body);
    let answer = answer.map_err(|e| {
        google_error(
            e,
            &format!("exchanging the login token at {host} for pool {pool:?}, provider {provider:?}"),
            &[
                (
                    400,
                    "the token was refused: check the provider's issuer, its allowed audience (gcp:<org>) and \
                     its attribute condition",
                ),
                (403, "permission denied"),
                (404, "no such pool or provider"),
            ],
        )
    })?;
    let token = answered(&answer, "access_token");
    wipe_json(answer);
    token.ok_or_else(|| format!("{host} answered no access_token"))
}

async fn login(ctx: &OpenCtx<'_>, inputs: &Json) -> Result<Output, String> {
    let (project, plan) = plan(inputs)?;
    let (token, expiry) = match plan {
        Plan::Oidc {
            pool,
            provider,
            service_account,
            attributes,
            lifetime,
        } => {
            let req = TokenRequest::new("login", None, Some("gcp"), attributes.as_deref(), None)
                .map_err(|e| format!("oidc.subjectAttributes: {e}"))?;
            let minted = super::mint_login(ctx, "gcp-login with oidc", &req).await?;
            let federated = exchange(ctx, project, pool, provider, minted.expose()).await?;
            let (t, e) = impersonate(ctx, service_account, &federated, lifetime).await?;
            (t, Some(e))
        }
        Plan::Given {
            token,
            impersonate: None,
        } => (Zeroizing::new(token.to_owned()), None),
        Plan::Given {
            token,
            impersonate: Some((sa, life)),
        } => {
            let (t, e) = impersonate(ctx, sa, token, life).await?;
            (t, Some(e))
        }
    };
    let mut out = Map::new();
    out.insert("project".into(), json!(project));
    out.insert("accessToken".into(), json!(token.as_str()));
    out.insert("tokenType".into(), json!("Bearer"));
    if let Some(e) = expiry {
        out.insert("expiry".into(), json!(e));
    }
    Ok(Output {
        value: Json::Object(out),
        secret: false,
    })
}

impl Provider for GcpLogin {
    fn name(&self) -> &'static str {
        "gcp-login"
    }
    fn description(&self) -> &'static str {
        "Gets a short-lived Google Cloud access token through workload identity federation with an OIDC token from \
         this server, or from an access token you hold."
    }
    fn inputs(&self) -> &'static Json {
        &INPUTS
    }
    fn outputs(&self) -> &'static Json {
        &OUTPUTS
    }
    fn open<'a>(&'a self, ctx: &'a OpenCtx<'a>, inputs: &'a Json) -> BoxFuture<'a, Result<Output, String>> {
        login(ctx, inputs).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(v: Json) -> String {
        plan(&v).err().expect("refused")
    }

    #[test]
    fn inputs_are_checked_before_any_call() {
        let oidc = json!({"workloadPoolId": "pool-1", "providerId": "prov-1", "serviceAccount": "sa@p.iam.gserviceaccount.com"});
        let v = json!({"project": 123, "oidc": oidc});
        let (p, plan_) = plan(&v).unwrap();
        assert_eq!(p, 123);
        assert!(matches!(plan_, Plan::Oidc { lifetime, .. } if lifetime == DEFAULT_TOKEN_LIFETIME));
        assert!(err(json!({"oidc": oidc})).contains("project is required"));
        assert!(err(json!({"project": "123", "oidc": oidc})).contains("project must be"));
        assert!(err(json!({"project": -1, "oidc": oidc})).contains("project must be"));
        assert!(err(json!({"project": 1.5, "oidc": oidc})).contains("project must be"));
        assert!(err(json!({"project": 1})).contains("exactly one"));
        assert!(err(json!({"project": 1, "oidc": oidc, "accessToken": {"accessToken": "t"}})).contains("exactly one"));
        assert!(err(json!({"project": 1, "oidc": oidc, "x": 1})).contains("unknown input \"x\""));
        let mut o = oidc.clone();
        o["tokenLifetime"] = json!("13h");
        assert!(err(json!({"project": 1, "oidc": o})).contains("from 1m to 12h"));
        o["tokenLifetime"] = json!("30s");
        assert!(err(json!({"project": 1, "oidc": o})).contains("from 1m to 12h"));
        o["tokenLifetime"] = json!("90m");
        assert!(plan(&json!({"project": 1, "oidc": o})).is_ok());
        let mut o = oidc.clone();
        o["workloadPoolId"] = json!("Pool/../x");
        assert!(err(json!({"project": 1, "oidc": o})).contains("workloadPoolId must be"));
        let mut o = oidc.clone();
        o["serviceAccount"] = json!("a/b?c");
        assert!(err(json!({"project": 1, "oidc": o})).contains("serviceAccount must be"));
        let mut o = oidc;
        o["extra"] = json!(1);
        assert!(err(json!({"project": 1, "oidc": o})).contains("oidc.\"extra\""));
        let secret = "ya29.secret-value";
        let e = err(json!({"project": 1, "accessToken": {"accessToken": secret, "tokenLifetime": "1d"}}));
        assert!(!e.contains(secret), "{e}");
        assert!(err(json!({"project": 1, "accessToken": {"accessToken": "a b"}})).contains("visible ASCII"));
        assert!(err(json!({"project": 1, "accessToken": {"accessToken": "é"}})).contains("visible ASCII"));
        let huge = "t".repeat(MAX_TOKEN_BYTES + 1);
        assert!(err(json!({"project": 1, "accessToken": {"accessToken": huge}})).contains("visible ASCII"));
        for (key, bad) in [
            ("workloadPoolId", "pööl"),
            ("workloadPoolId", "abc"),
            ("providerId", &"p".repeat(33)),
            ("serviceAccount", "é@x.iam.gserviceaccount.com"),
            ("serviceAccount", &"s".repeat(255)),
            ("region", "us central"),
        ] {
            let mut o = json!({"workloadPoolId": "pool-1", "providerId": "prov-1", "serviceAccount": "sa@p.iam"});
            o[key] = json!(bad);
            assert!(err(json!({"project": 1, "oidc": o})).contains(key), "{key}: {bad}");
        }
        assert!(matches!(
            plan(&json!({"project": 1, "accessToken": {"accessToken": secret}}))
                .unwrap()
                .1,
            Plan::Given { impersonate: None, .. }
        ));
    }

    #[test]
    fn endpoints_are_origins() {
        let d = GcpEndpoints::default();
        assert_eq!(d.sts.as_str(), "https://sts.googleapis.com/");
        assert!(GcpEndpoints::parse("http://127.0.0.1:9", "https://x.example").is_ok());
        for bad in ["https://x/v1", "ftp://x", "https://u:p@x", "x"] {
            assert!(GcpEndpoints::parse(bad, "https://x").is_err(), "{bad}");
        }
    }
}
