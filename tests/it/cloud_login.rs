//! `fn::open::gcp-login` and `fn::open::azure-login`, on SQLite and PostgreSQL.
//!
//! Google: no real Security Token Service or IAM Credentials API can run here, so the test runs an in-repo **fake
//! that follows Google's documented REST shapes** (`POST /v1/token` with the token-exchange JSON body; `POST
//! /v1/projects/-/serviceAccounts/<sa>:generateAccessToken` with a Bearer token and `{scope, lifetime}`) and checks
//! every request against them: the fields and their values, the audience naming the pool and provider, the subject
//! token verified (signature, `iss`, `aud = gcp:<org>`, `sub`) with the `jsonwebtoken` crate against the JWKS our
//! issuer publishes, the Bearer being a token it issued. It answers as Google documents, and on demand fails
//! (4xx/5xx, a hang, an oversized or non-JSON answer). Azure: no call is made; the OIDC token in the output is
//! verified by PyJWT (an independent verifier) through our issuer's discovery document, for `aud = azure:<org>`.
//!
//! Also: two opens give two credentials, a session read gives the same values without calling Google again, bad
//! inputs get a diagnostic and no outbound call, failures read cleanly with nothing secret in them, and a Google URL
//! outside the egress allow-list is refused.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::esc::{Esc, Resp};
use crate::oidc_issuer::{pyjwt, python};
use crate::support::{TestServer, config, on_both, temp_dir, with_postgres_url};

const APP: &str = "/acme/svc/app";
const PROJECT: u64 = 123_456_789;
const POOL: &str = "sesame-pool";
const PROVIDER: &str = "sesame-prov";
const SA: &str = "esc@proj-1.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const HELD_TOKEN: &str = "ya29.held-by-the-user";
/// Put in every error body the fake sends: a diagnostic must never show it.
const BODY_MARK: &str = "GOOGLE-BODY-MARK";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Normal,
    StsStatus(u16),
    /// The next STS call fails with this status, then the fake answers normally.
    StsOnce(u16),
    IamStatus(u16),
    Hang,
    Huge,
    NotJson,
}

#[derive(Default)]
struct Seen {
    issuer: String,
    subjects: Vec<String>,
    lifetimes: Vec<String>,
    /// Federated tokens issued by the fake STS (the only Bearers besides [`HELD_TOKEN`] it accepts).
    issued: HashSet<String>,
    /// Departures from Google's documented shapes: must stay empty.
    problems: Vec<String>,
}

struct FakeGoogle {
    base: String,
    mode: Mutex<Mode>,
    sts_calls: AtomicUsize,
    iam_calls: AtomicUsize,
    seen: Mutex<Seen>,
}

impl FakeGoogle {
    fn calls(&self) -> (usize, usize) {
        (
            self.sts_calls.load(Ordering::SeqCst),
            self.iam_calls.load(Ordering::SeqCst),
        )
    }
    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
    fn problem(&self, p: String) {
        self.seen.lock().unwrap().problems.push(p);
    }
    fn problems(&self) -> Vec<String> {
        self.seen.lock().unwrap().problems.clone()
    }
}

/// Google's OAuth-style error (STS).
fn oauth_error(status: u16, error: &str, detail: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": error, "error_description": format!("{detail} {BODY_MARK}")})),
    )
        .into_response()
}

/// Google's API error (IAM Credentials).
fn api_error(status: u16, detail: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": {"code": status, "message": format!("{detail} {BODY_MARK}"), "status": "X"}})),
    )
        .into_response()
}

/// A failure the test asked for, or `None` to answer normally.
async fn failure(fake: &FakeGoogle, sts: bool) -> Option<Response> {
    match fake.mode() {
        Mode::StsStatus(s) if sts => Some(oauth_error(s, "invalid_grant", "asked to fail")),
        Mode::StsOnce(s) if sts => {
            fake.set(Mode::Normal);
            Some(oauth_error(s, "invalid_grant", "asked to fail once"))
        }
        Mode::IamStatus(s) if !sts => Some(api_error(s, "asked to fail")),
        Mode::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            None
        }
        Mode::Huge => Some(axum::Json(json!({"access_token": "x".repeat(3 << 20)})).into_response()),
        Mode::NotJson => Some((StatusCode::OK, format!("<html>{BODY_MARK}</html>")).into_response()),
        _ => None,
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Verifies the subject token as STS does: signature by a key of the issuer's JWKS, `iss`, `aud`, times.
async fn verify_subject(issuer: &str, token: &str) -> Result<Value, String> {
    let http = reqwest::Client::new();
    let disco: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(disco["jwks_uri"].as_str().ok_or("no jwks_uri")?)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("unknown kid")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&["gcp:acme"]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

async fn sts(State(fake): State<Arc<FakeGoogle>>, headers: HeaderMap, body: String) -> Response {
    fake.sts_calls.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = failure(&fake, true).await {
        return r;
    }
    if !is_json(&headers) {
        fake.problem("STS: the body is not sent as application/json".into());
        return oauth_error(400, "invalid_request", "content type");
    }
    let Ok(Value::Object(b)) = serde_json::from_str::<Value>(&body) else {
        fake.problem("STS: the body is not a JSON object".into());
        return oauth_error(400, "invalid_request", "body");
    };
    let want_aud = format!(
        "//iam.googleapis.com/projects/{PROJECT}/locations/global/workloadIdentityPools/{POOL}/providers/{PROVIDER}"
    );
    let expected = [
        ("grantType", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("audience", want_aud.as_str()),
        ("scope", SCOPE),
        ("requestedTokenType", "urn:ietf:params:oauth:token-type:access_token"),
        ("subjectTokenType", "urn:ietf:params:oauth:token-type:jwt"),
    ];
    let mut keys: Vec<&str> = b.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want_keys: Vec<&str> = expected.iter().map(|(k, _)| *k).chain(["subjectToken"]).collect();
    want_keys.sort_unstable();
    if keys != want_keys {
        fake.problem(format!("STS: fields {keys:?}, expected {want_keys:?}"));
        return oauth_error(400, "invalid_request", "fields");
    }
    for (k, want) in expected {
        if b[k] != json!(want) {
            fake.problem(format!("STS: {k} is {}, expected {want}", b[k]));
            return oauth_error(400, "invalid_target", "value");
        }
    }
    let token = b["subjectToken"].as_str().unwrap_or_default();
    let issuer = fake.seen.lock().unwrap().issuer.clone();
    let claims = match verify_subject(&issuer, token).await {
        Ok(c) => c,
        Err(e) => {
            fake.problem(format!("STS: the subject token does not verify: {e}"));
            return oauth_error(400, "invalid_grant", "token");
        }
    };
    let federated = format!("fed.{}", uuid::Uuid::new_v4().simple());
    let mut seen = fake.seen.lock().unwrap();
    seen.subjects
        .push(claims["sub"].as_str().unwrap_or_default().to_owned());
    seen.issued.insert(federated.clone());
    axum::Json(json!({
        "access_token": federated,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 3599,
    }))
    .into_response()
}

async fn generate(
    State(fake): State<Arc<FakeGoogle>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    fake.iam_calls.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = failure(&fake, false).await {
        return r;
    }
    let Some(sa) = name.strip_suffix(":generateAccessToken") else {
        fake.problem(format!("IAM: no such method {name:?}"));
        return api_error(404, "method");
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if bearer != HELD_TOKEN && !fake.seen.lock().unwrap().issued.contains(&bearer) {
        fake.problem("IAM: the Bearer is not a token the fake issued".into());
        return api_error(401, "UNAUTHENTICATED");
    }
    if !is_json(&headers) {
        fake.problem("IAM: the body is not sent as application/json".into());
        return api_error(400, "content type");
    }
    let Ok(Value::Object(b)) = serde_json::from_str::<Value>(&body) else {
        fake.problem("IAM: the body is not a JSON object".into());
        return api_error(400, "body");
    };
    let lifetime = b["lifetime"].as_str().unwrap_or_default().to_owned();
    let lifetime_ok = lifetime
        .strip_suffix('s')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if b.len() != 2 || b["scope"] != json!([SCOPE]) || !lifetime_ok {
        fake.problem(format!("IAM: body {}", Value::Object(b.clone())));
        return api_error(400, "INVALID_ARGUMENT");
    }
    if sa != SA {
        return api_error(404, "NOT_FOUND");
    }
    fake.seen.lock().unwrap().lifetimes.push(lifetime);
    axum::Json(json!({
        "accessToken": format!("ya29.fake-{}", uuid::Uuid::new_v4().simple()),
        "expireTime": "2030-01-01T00:00:00Z",
    }))
    .into_response()
}

async fn fake_google() -> Arc<FakeGoogle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Arc::new(FakeGoogle {
        base: format!("http://{}", listener.local_addr().unwrap()),
        mode: Mutex::new(Mode::Normal),
        sts_calls: AtomicUsize::new(0),
        iam_calls: AtomicUsize::new(0),
        seen: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/v1/token", axum::routing::post(sts))
        .route("/v1/projects/-/serviceAccounts/{name}", axum::routing::post(generate))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake
}

/// A server whose Google URLs point at `fake`; `allow` egress to loopback or not.
async fn start(database_url: Option<&str>, fake: &FakeGoogle, allow: bool) -> (TestServer, tempfile::TempDir) {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), database_url);
    if allow {
        cfg.egress_allow = sesame::egress::EgressPolicy::parse(&["127.0.0.0/8"]).unwrap();
    }
    cfg.gcp = sesame::server::esc::providers::gcp::GcpEndpoints::parse(&fake.base, &fake.base).unwrap();
    let s = TestServer::start(cfg, None).await.unwrap();
    fake.seen.lock().unwrap().issuer = s.server.state.issuer_url.clone();
    (s, dir)
}

fn gcp_doc(inputs: &str) -> String {
    format!("values:\n  plain: hello\n  gcp:\n    fn::open::gcp-login:\n{inputs}")
}

fn oidc_inputs(extra: &str) -> String {
    format!(
        "      project: {PROJECT}\n      oidc:\n        workloadPoolId: {POOL}\n        providerId: {PROVIDER}\n        serviceAccount: {SA}\n{extra}"
    )
}

async fn open(c: &Esc<'_>) -> Resp {
    c.call("POST", &format!("{APP}/open?duration=1h"), None, &[]).await
}

async fn open_id(c: &Esc<'_>) -> String {
    let r = open(c).await;
    assert_eq!(r.status, 200, "open: {}", r.text);
    r.json()["id"].as_str().expect("session id").to_owned()
}

async fn read(c: &Esc<'_>, id: &str, prop: &str) -> Value {
    let r = c.call("GET", &format!("{APP}/open/{id}"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    // Credentials are secret, the rest (project, ids, token type) plain, as the output schemas say.
    let node = &v["properties"][prop];
    assert_ne!(node["secret"], json!(true), "{v}");
    let fields = node["value"].as_object().expect("an object");
    for (k, f) in fields {
        let secret = matches!(k.as_str(), "accessToken" | "clientSecret");
        assert_eq!(f["secret"] == json!(true), secret, "{k}: {v}");
        if k == "oidc" {
            assert_eq!(f["value"]["token"]["secret"], json!(true), "{v}");
        }
    }
    assert!(
        fields.contains_key("accessToken") || fields.contains_key("clientSecret") || fields.contains_key("oidc"),
        "{v}"
    );
    crate::esc::plain(node)
}

/// Opens and expects a diagnostic holding `want` and nothing secret.
async fn refused(c: &Esc<'_>, want: &str) {
    let r = open(c).await;
    assert_eq!(r.status, 400, "{want}: {}", r.text);
    assert!(r.text.contains(want), "{want}: {}", r.text);
    for secret in [BODY_MARK, "eyJ", "fed.", "ya29.", HELD_TOKEN] {
        assert!(!r.text.contains(secret), "{secret} in {}", r.text);
    }
}

/// p50 and p99 of `n` sequential opens of `env`.
async fn latencies(c: &Esc<'_>, env: &str, n: usize) -> (std::time::Duration, std::time::Duration) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        let r = c.call("POST", &format!("{env}/open?duration=1h"), None, &[]).await;
        times.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", r.text);
    }
    times.sort();
    (times[n / 2], times[(n * 99).div_ceil(100) - 1])
}

async fn gcp_scenario(s: &TestServer, fake: &FakeGoogle) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let r = c
        .patch(APP, &gcp_doc(&oidc_inputs("        tokenLifetime: 30m\n")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Two opens: two exchanges, two different access tokens, each as Google answered.
    let (id1, id2) = (open_id(&c).await, open_id(&c).await);
    assert_eq!(fake.problems(), Vec::<String>::new());
    assert_eq!(fake.calls(), (2, 2));
    let v1 = read(&c, &id1, "gcp").await;
    let v2 = read(&c, &id2, "gcp").await;
    let t1 = v1["accessToken"].as_str().expect("accessToken").to_owned();
    assert!(t1.starts_with("ya29.fake-"), "{v1}");
    assert_ne!(v2["accessToken"], v1["accessToken"], "two opens, two tokens");
    assert_eq!(v1["project"], json!(PROJECT));
    assert_eq!(v1["tokenType"], "Bearer");
    assert_eq!(v1["expiry"], "2030-01-01T00:00:00Z");
    {
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen.lifetimes, ["1800s", "1800s"]);
        assert_eq!(
            seen.subjects, ["pulumi:environments:org:acme:env:svc/app"; 2],
            "the default login subject"
        );
    }
    // A session read gives what the open gave, without calling Google, cold too.
    s.server.state.eval_cache.invalidate_all();
    s.server.state.doc_cache.invalidate_all();
    assert_eq!(read(&c, &id1, "gcp").await, v1);
    assert_eq!(fake.calls(), (2, 2));
    // The mint of each login token is audited with its audience; no token is.
    let audit = s.export("/api/sesame/v1/orgs/acme/audit").await;
    assert!(
        audit.contains("provider=gcp-login") && audit.contains("aud=gcp:acme"),
        "{audit}"
    );
    assert!(!audit.contains(&t1) && !audit.contains("fed."));

    // Latency of an open with gcp-login (one STS and one IAM call, loopback fake) beside one without providers;
    // printed for the report, and each open makes exactly one call of each.
    assert_eq!(c.create("acme", "svc", "plain").await.status, 200);
    let r = c.patch("/acme/svc/plain", "values:\n  plain: hello\n").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let before = fake.calls();
    let with = latencies(&c, APP, 40).await;
    let without = latencies(&c, "/acme/svc/plain", 40).await;
    assert_eq!(
        fake.calls(),
        (before.0 + 40, before.1 + 40),
        "one STS and one IAM call per open"
    );
    eprintln!(
        "open latency ({}), 40 sequential opens: gcp-login p50 {:?} p99 {:?}; no provider p50 {:?} p99 {:?}",
        s.server.state.store.backend(),
        with.0,
        with.1,
        without.0,
        without.1
    );

    // Subject attributes shape the subject; the default lifetime is 1h.
    let r = c
        .patch(
            APP,
            &gcp_doc(&oidc_inputs(
                "        subjectAttributes: [currentEnvironment.name, pulumi.organization.login]\n        region: us-central1\n",
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    open_id(&c).await;
    {
        let seen = fake.seen.lock().unwrap();
        assert_eq!(
            seen.subjects.last().unwrap(),
            "pulumi:environments:pulumi.organization.login:acme:currentEnvironment.name:svc/app:pulumi.organization.login:acme"
        );
        assert_eq!(seen.lifetimes.last().unwrap(), "3600s");
    }

    // A held access token: handed back as is (no call), or impersonating a service account with it.
    let held = format!(
        "      project: {PROJECT}\n      accessToken:\n        accessToken:\n          fn::secret: {HELD_TOKEN}\n"
    );
    let r = c.patch(APP, &gcp_doc(&held)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let before = fake.calls();
    let v = read(&c, &open_id(&c).await, "gcp").await;
    assert_eq!(
        v,
        json!({"project": PROJECT, "accessToken": HELD_TOKEN, "tokenType": "Bearer"})
    );
    assert_eq!(fake.calls(), before);
    let r = c
        .patch(
            APP,
            &gcp_doc(&format!(
                "{held}        serviceAccount: {SA}\n        tokenLifetime: 2h\n"
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = read(&c, &open_id(&c).await, "gcp").await;
    assert!(v["accessToken"].as_str().unwrap().starts_with("ya29.fake-"), "{v}");
    assert_eq!(fake.calls(), (before.0, before.1 + 1));
    assert_eq!(fake.seen.lock().unwrap().lifetimes.last().unwrap(), "7200s");
    assert_eq!(fake.problems(), Vec::<String>::new());

    // Bad inputs: refused at save by the schema, or at the call; Google is never called.
    let calls = fake.calls();
    let at_save = [
        oidc_inputs("").replace(&format!("project: {PROJECT}"), "project: \"123\""),
        oidc_inputs("").replace(&format!("      project: {PROJECT}\n"), ""),
        oidc_inputs("").replace(&format!("        workloadPoolId: {POOL}\n"), ""),
        oidc_inputs("        extra: 1\n"),
        oidc_inputs("        tokenLifetime: soon\n"),
        format!("{}      other: 1\n", oidc_inputs("")),
        oidc_inputs("        subjectAttributes: [nope]\n"),
    ];
    for inputs in at_save {
        let r = c.patch(APP, &gcp_doc(&inputs)).await;
        assert_eq!(r.status, 400, "{inputs}: {}", r.text);
    }
    let at_open = [
        (oidc_inputs("        tokenLifetime: 13h\n"), "from 1m to 12h"),
        (oidc_inputs("        tokenLifetime: 30s\n"), "from 1m to 12h"),
        (oidc_inputs("").replace(POOL, "Bad_Pool"), "workloadPoolId must be"),
        (oidc_inputs("").replace(SA, "a/../b?x"), "serviceAccount must be"),
        (oidc_inputs("").replace(&PROJECT.to_string(), "-5"), "project must be"),
        (
            format!("      project: {PROJECT}\n"),
            "exactly one of oidc and accessToken",
        ),
        (
            format!("{}      accessToken:\n        accessToken: x\n", oidc_inputs("")),
            "exactly one of oidc and accessToken",
        ),
        (
            format!("      project: {PROJECT}\n      accessToken:\n        accessToken: \"a b\"\n"),
            "visible ASCII",
        ),
        (
            oidc_inputs("        subjectAttributes: [pulumi.token.team]\n"),
            "subject attribute",
        ),
    ];
    for (inputs, want) in at_open {
        let r = c.patch(APP, &gcp_doc(&inputs)).await;
        assert_eq!(r.status, 200, "{inputs}: {}", r.text);
        refused(&c, want).await;
    }
    assert_eq!(fake.calls(), calls, "bad inputs call nothing");

    // Google failing: a clean diagnostic, nothing secret, no panic; a hang is cut by the deadline.
    let r = c.patch(APP, &gcp_doc(&oidc_inputs(""))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Only what Google documents as retryable (429, 5xx) is retried, once: the calls each open made are counted.
    let failures = [
        (Mode::StsStatus(400), "HTTP 400 (the token was refused", (1, 0)),
        (Mode::StsStatus(403), "HTTP 403", (1, 0)),
        (Mode::StsStatus(503), "HTTP 503", (2, 0)),
        (Mode::StsStatus(429), "HTTP 429", (2, 0)),
        (Mode::IamStatus(403), "roles/iam.workloadIdentityUser", (1, 1)),
        (Mode::IamStatus(500), "HTTP 500", (1, 2)),
        (Mode::Huge, "answered more than", (1, 0)),
        (Mode::NotJson, "not JSON", (1, 0)),
        (Mode::Hang, "did not answer within", (1, 0)),
    ];
    for (mode, want, made) in failures {
        fake.set(mode);
        let before = fake.calls();
        let t = std::time::Instant::now();
        refused(&c, want).await;
        assert!(
            t.elapsed() < std::time::Duration::from_secs(12),
            "{mode:?}: {:?}",
            t.elapsed()
        );
        let after = fake.calls();
        assert_eq!((after.0 - before.0, after.1 - before.1), made, "{mode:?}");
    }
    // One 503 then a success: the retry gets the token.
    fake.set(Mode::StsOnce(503));
    let before = fake.calls();
    let v = read(&c, &open_id(&c).await, "gcp").await;
    assert!(v["accessToken"].as_str().unwrap().starts_with("ya29.fake-"), "{v}");
    assert_eq!(fake.calls(), (before.0 + 2, before.1 + 1));
    fake.set(Mode::Normal);
    let r = c
        .patch(
            APP,
            &gcp_doc(&oidc_inputs("").replace(SA, "other@p.iam.gserviceaccount.com")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    refused(&c, "no such service account").await;
    assert_eq!(fake.problems(), Vec::<String>::new());

    // An unsaved document may not mint; check mode calls nothing.
    let calls = fake.calls();
    let r = c.post("/acme/yaml/open", &gcp_doc(&oidc_inputs(""))).await;
    assert!(r.status == 400 && r.text.contains("unsaved document"), "{}", r.text);
    let r = c.post("/acme/yaml/check", &gcp_doc(&oidc_inputs(""))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["properties"]["gcp"]["unknown"], json!(true), "{}", r.text);
    assert_eq!(fake.calls(), calls);

    // The schema editors read: upstream's names, types and required fields.
    let r = c.call("GET", "/api/esc/providers/gcp-login/schema", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["inputs"]["required"], json!(["project"]));
    assert_eq!(v["inputs"]["properties"]["project"]["type"], "number");
    assert_eq!(
        v["inputs"]["properties"]["oidc"]["required"],
        json!(["workloadPoolId", "providerId", "serviceAccount"])
    );
    assert_eq!(
        v["inputs"]["properties"]["oidc"]["properties"]["tokenLifetime"]["default"],
        "1h"
    );
    assert_eq!(
        v["inputs"]["properties"]["accessToken"]["required"],
        json!(["accessToken"])
    );
    assert_eq!(v["outputs"]["required"], json!(["accessToken", "project", "tokenType"]));
}

async fn gcp_on(database_url: Option<&str>) {
    let fake = fake_google().await;
    let (s, _dir) = start(database_url, &fake, true).await;
    gcp_scenario(&s, &fake).await;
    s.stop().await;
}

#[tokio::test]
async fn gcp_login_against_a_documented_fake_sqlite() {
    gcp_on(None).await;
}

#[tokio::test]
async fn gcp_login_against_a_documented_fake_postgres() {
    with_postgres_url(gcp_on).await;
}

/// The operator pointed the Google URLs at a loopback address without allowing it: refused, nothing sent.
async fn egress_refused_on(database_url: Option<&str>) {
    let fake = fake_google().await;
    let (s, _dir) = start(database_url, &fake, false).await;
    let c = Esc::admin(&s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let r = c.patch(APP, &gcp_doc(&oidc_inputs(""))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    refused(&c, "--egress-allow").await;
    let held = format!(
        "      project: {PROJECT}\n      accessToken:\n        accessToken: {HELD_TOKEN}\n        serviceAccount: {SA}\n"
    );
    let r = c.patch(APP, &gcp_doc(&held)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    refused(&c, "not a public address").await;
    assert_eq!(fake.calls(), (0, 0));
    s.stop().await;
}

#[tokio::test]
async fn gcp_login_egress_refused_sqlite() {
    egress_refused_on(None).await;
}

#[tokio::test]
async fn gcp_login_egress_refused_postgres() {
    with_postgres_url(egress_refused_on).await;
}

// ---- azure-login ----

const CLIENT: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const TENANT: &str = "11111111-2222-4333-8444-555555555555";

fn azure_doc(inputs: &str) -> String {
    format!(
        "values:\n  azure:\n    fn::open::azure-login:\n      clientId: {CLIENT}\n      tenantId: {TENANT}\n{inputs}"
    )
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

async fn azure_scenario(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let r = c
        .patch(
            APP,
            &azure_doc("      subscriptionId: /subscriptions/00000000-0000-0000-0000-000000000000\n      oidc: true\n"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (id1, id2) = (open_id(&c).await, open_id(&c).await);
    let v1 = read(&c, &id1, "azure").await;
    let v2 = read(&c, &id2, "azure").await;
    assert_eq!(v1["clientId"], CLIENT);
    assert_eq!(v1["tenantId"], TENANT);
    assert_eq!(
        v1["subscriptionId"],
        "/subscriptions/00000000-0000-0000-0000-000000000000"
    );
    assert!(v1.get("clientSecret").is_none(), "{v1}");
    let t1 = v1["oidc"]["token"].as_str().expect("oidc.token").to_owned();
    assert_ne!(v2["oidc"]["token"], json!(t1), "two opens, two tokens");
    let cl = claims(&t1);
    assert_eq!(cl["aud"], "azure:acme", "{cl}");
    assert_eq!(cl["sub"], "pulumi:environments:org:acme:env:svc/app", "{cl}");
    // A session read gives the same, cold.
    s.server.state.eval_cache.invalidate_all();
    assert_eq!(read(&c, &id1, "azure").await, v1);
    if let Some(python) = python() {
        let issuer = cl["iss"].as_str().unwrap();
        let (ok, out) = pyjwt(&python, issuer, &t1, "azure:acme").await;
        assert!(ok, "{out}");
        assert!(out.contains("pulumi:environments:org:acme:env:svc/app"), "{out}");
        let (ok, out) = pyjwt(&python, issuer, &t1, "api://AzureADTokenExchange").await;
        assert!(!ok, "{out}");
    }

    // Subject attributes; a client secret instead (no mint; allowed in an unsaved document too).
    let r = c
        .patch(
            APP,
            &azure_doc("      oidc: true\n      subjectAttributes: [rootEnvironment.name]\n"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = read(&c, &open_id(&c).await, "azure").await;
    assert_eq!(
        claims(v["oidc"]["token"].as_str().unwrap())["sub"],
        "pulumi:environments:pulumi.organization.login:acme:rootEnvironment.name:svc/app"
    );
    let secret_doc = azure_doc("      clientSecret:\n        fn::secret: s3cr3t~value\n");
    let r = c.patch(APP, &secret_doc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = read(&c, &open_id(&c).await, "azure").await;
    assert_eq!(
        v,
        json!({"clientId": CLIENT, "tenantId": TENANT, "clientSecret": "s3cr3t~value"})
    );
    let r = c.post("/acme/yaml/open", &secret_doc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.post("/acme/yaml/open", &azure_doc("      oidc: true\n")).await;
    assert!(r.status == 400 && r.text.contains("unsaved document"), "{}", r.text);

    // Bad inputs.
    for bad in [
        "values:\n  azure:\n    fn::open::azure-login:\n      clientId: x\n      oidc: true\n".to_owned(),
        azure_doc("      oidc: \"yes\"\n"),
        azure_doc("      oidc: true\n      other: 1\n"),
        azure_doc("      oidc: true\n      subjectAttributes: [nope]\n"),
    ] {
        let r = c.patch(APP, &bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    for (bad, want) in [
        (azure_doc(""), "give oidc: true or clientSecret"),
        (
            azure_doc("      oidc: true\n      clientSecret: s3cr3t~value\n"),
            "not both",
        ),
        (azure_doc("      oidc: true\n").replace(CLIENT, "not-a-guid"), "GUID"),
        (
            azure_doc("      oidc: true\n").replace(TENANT, "a b"),
            "tenantId must be",
        ),
    ] {
        let r = c.patch(APP, &bad).await;
        assert_eq!(r.status, 200, "{bad}: {}", r.text);
        let r = open(&c).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(
            r.text.contains(want) && !r.text.contains("s3cr3t"),
            "{want}: {}",
            r.text
        );
    }

    let r = c.call("GET", "/api/esc/providers/azure-login/schema", None, &[]).await;
    let v = r.json();
    assert_eq!(v["inputs"]["required"], json!(["clientId", "tenantId"]), "{}", r.text);
    assert_eq!(v["inputs"]["properties"]["oidc"]["type"], "boolean");
    assert_eq!(v["outputs"]["properties"]["oidc"]["required"], json!(["token"]));
}
on_both!(azure_scenario, azure_login_sqlite, azure_login_postgres);
