//! The OIDC issuer: discovery and JWKS shape, tokens that verify (with our check, with PyJWT's `PyJWKClient`, and
//! with a real OpenBao's JWT auth method), key rotation on the manual clock (next key published before use, retired
//! keys removed after the margin), keys shared by replicas on PostgreSQL, no private key in plaintext in the
//! database, and the mint endpoint's refusals of bad input.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{self, PgDb, TestServer, config, key_file, manual_clock, temp_dir};

const ENV: &str = "/api/esc/environments/acme/app/prod";
const HOUR: Duration = Duration::from_secs(3600);

async fn get_public(srv: &TestServer, path: &str) -> (u16, Value, String) {
    let resp = srv
        .http
        .get(format!("{}{path}", srv.base))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, resp.json().await.unwrap_or(Value::Null), cache)
}

async fn jwks(srv: &TestServer) -> Value {
    let (status, body, _) = get_public(srv, "/oidc/.well-known/jwks").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

async fn make_env(srv: &TestServer) {
    let (status, body) = srv
        .post("/api/esc/environments/acme", &json!({"project": "app", "name": "prod"}))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn mint_as(srv: &TestServer, token: &str, body: &Value) -> (u16, Value) {
    srv.post_as(&format!("{ENV}/oidc/token"), body, Some(token)).await
}

async fn mint(srv: &TestServer, body: &Value) -> String {
    let (status, answer) = mint_as(srv, &srv.token, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["token"].as_str().expect("token").to_owned()
}

fn custom(aud: &str) -> Value {
    json!({"family": "custom-audience", "audience": aud, "duration": "15m"})
}

fn header_kid(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().expect("header");
    let h: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    assert_eq!(h["typ"], "JWT");
    h["kid"].as_str().expect("kid").to_owned()
}

fn now_s(srv: &TestServer) -> i64 {
    srv.server.state.clock.now_ms() / 1000
}

async fn ids(srv: &TestServer) -> (String, String) {
    let store = &srv.server.state.store;
    let org = store.org_by_name("acme").await.unwrap().expect("org");
    let env = store.env_by_name(&org.id, "app", "prod").await.unwrap().expect("env");
    (org.id, env.id)
}

async fn discovery_and_jwks(srv: &TestServer) {
    let issuer = format!("{}/oidc", srv.base);
    assert_eq!(srv.server.state.issuer_url, issuer);
    assert_eq!(srv.server.state.public_url, srv.base);
    let (status, doc, cache) = get_public(srv, "/oidc/.well-known/openid-configuration").await;
    assert_eq!(status, 200, "{doc}");
    assert!(cache.starts_with("public"), "{cache}");
    assert_eq!(doc["issuer"], json!(issuer));
    assert_eq!(doc["jwks_uri"], json!(format!("{issuer}/.well-known/jwks")));
    assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert_eq!(doc["response_types_supported"], json!(["id_token"]));
    let keys = jwks(srv).await;
    let list = keys["keys"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{keys}");
    let k = &list[0];
    assert_eq!(
        (k["kty"].as_str(), k["alg"].as_str(), k["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert_eq!(k["e"], "AQAB");
    use base64::Engine;
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(k["n"].as_str().unwrap())
        .unwrap();
    assert_eq!(n.len(), 256, "a 2048-bit modulus");
    for field in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(k.get(field).is_none(), "private member {field} published");
    }

    // A token minted now verifies with our own check against that JWKS, with Pulumi's claims.
    make_env(srv).await;
    let token = mint(srv, &custom("https://registry.example.com")).await;
    assert_eq!(header_kid(&token), kids(&keys)[0]);
    let claims =
        sesame::oidc_issuer::verify(&keys, &token, &issuer, "https://registry.example.com", now_s(srv)).unwrap();
    let (org_id, env_id) = ids(srv).await;
    assert_eq!(claims["sub"], json!(format!("pulumi:org:{org_id}:env:{env_id}")));
    assert_eq!(claims["https://pulumi.com/current_env"], "app/prod");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    // Wrong audience, tampered payload, and the same token later than its expiry fail.
    assert!(sesame::oidc_issuer::verify(&keys, &token, &issuer, "other", now_s(srv)).is_err());
    assert!(
        sesame::oidc_issuer::verify(&keys, &token, &issuer, "https://registry.example.com", now_s(srv) + 900).is_err()
    );

    // A login token: Pulumi's subject and audience.
    let token = mint(srv, &json!({"family": "login", "audiencePrefix": "aws"})).await;
    let claims = sesame::oidc_issuer::verify(&keys, &token, &issuer, "aws:acme", now_s(srv)).unwrap();
    assert_eq!(claims["sub"], "pulumi:environments:org:acme:env:app/prod");

    // Every mint is audited with sub, aud and lifetime, never the token.
    let export = srv.export("/api/sesame/v1/orgs/acme/audit").await;
    let mints: Vec<&str> = export.lines().filter(|l| l.contains("oidc.mint")).collect();
    assert_eq!(mints.len(), 2, "{export}");
    assert!(
        mints[0].contains(&format!("sub=pulumi:org:{org_id}:env:{env_id}")),
        "{}",
        mints[0]
    );
    assert!(mints[0].contains("aud=https://registry.example.com") && mints[0].contains("lifetime=900s"));
    assert!(mints[1].contains("aud=aws:acme"), "{}", mints[1]);
    assert!(!export.contains(&token), "a token in the audit log");
    assert!(!export.contains(token.split('.').nth(2).unwrap()));
}

support::on_both!(
    discovery_and_jwks,
    discovery_and_jwks_sqlite,
    discovery_and_jwks_postgres
);

#[tokio::test]
async fn preview_signs_nothing_and_subject_attributes_keep_their_order() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    make_env(&srv).await;
    let body = json!({"family": "login", "audiencePrefix": "gcp",
                      "subjectAttributes": ["pulumi.user.login", "currentEnvironment.name"]});
    let (status, answer) = srv.post(&format!("{ENV}/oidc/claims"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let c = &answer["claims"];
    assert_eq!(c["iss"], json!(format!("{}/oidc", srv.base)));
    assert_eq!(c["aud"], "gcp:acme");
    assert_eq!(
        c["sub"],
        "pulumi:environments:pulumi.organization.login:acme:pulumi.user.login:admin:currentEnvironment.name:app/prod"
    );
    for absent in ["iat", "nbf", "exp", "jti"] {
        assert!(c.get(absent).is_none(), "{absent} in a preview");
    }
    assert!(answer.get("token").is_none());
    let export = srv.export("/api/sesame/v1/orgs/acme/audit").await;
    assert!(
        export.contains("oidc.preview") && !export.contains("oidc.mint"),
        "{export}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn rotation_publishes_the_next_key_before_use_and_removes_retired_keys_after_the_margin() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    let clock = manual_clock(&mut cfg);
    let srv = TestServer::start(cfg, None).await.unwrap();
    make_env(&srv).await;
    let issuer = format!("{}/oidc", srv.base);
    let first = kids(&jwks(&srv).await);
    assert_eq!(first.len(), 1);
    let k1 = first[0].clone();
    let t1 = mint(&srv, &custom("a")).await;
    assert_eq!(header_kid(&t1), k1);

    // 22h59m: nothing new yet.
    clock.advance(22 * HOUR + Duration::from_secs(59 * 60));
    assert_eq!(kids(&jwks(&srv).await), vec![k1.clone()]);
    // 23h: the next key is published, an hour before it signs; tokens are still signed by the first.
    clock.advance(Duration::from_secs(60));
    let both = kids(&jwks(&srv).await);
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[0], k1);
    let k2 = both[1].clone();
    assert_eq!(header_kid(&mint(&srv, &custom("a")).await), k1);
    clock.advance(HOUR - Duration::from_secs(1));
    assert_eq!(header_kid(&mint(&srv, &custom("a")).await), k1);
    // 24h: the second key signs; the first stays published for the longest lifetime (1h) plus the margin (1h).
    clock.advance(Duration::from_secs(1));
    let t2 = mint(&srv, &custom("a")).await;
    assert_eq!(header_kid(&t2), k2);
    assert_eq!(kids(&jwks(&srv).await), vec![k1.clone(), k2.clone()]);
    clock.advance(2 * HOUR - Duration::from_secs(1));
    assert_eq!(kids(&jwks(&srv).await), vec![k1.clone(), k2.clone()]);
    // 26h: removed, from the JWKS and the store; a token it signed no longer verifies.
    clock.advance(Duration::from_secs(1));
    let after = jwks(&srv).await;
    assert_eq!(kids(&after), vec![k2.clone()]);
    assert_eq!(srv.server.state.store.oidc_keys().await.unwrap().len(), 1);
    let now = now_s(&srv);
    assert_eq!(
        sesame::oidc_issuer::verify(&after, &t1, &issuer, "a", now - 26 * 3600 + 60),
        Err(sesame::oidc_issuer::VerifyError::UnknownKey)
    );
    assert!(sesame::oidc_issuer::verify(&after, &t2, &issuer, "a", now - 2 * 3600 + 60).is_ok());
    // Key creation and removal are audited on the instance chain.
    let export = srv.export("/api/sesame/v1/audit").await;
    assert_eq!(export.matches("oidc.key.create").count(), 2, "{export}");
    assert_eq!(export.matches("oidc.key.remove").count(), 1, "{export}");
    srv.stop().await;
}

#[tokio::test]
async fn es256_keys_and_a_changed_algorithm_rotate_ahead() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    let clock = manual_clock(&mut cfg);
    let srv = TestServer::start(cfg, None).await.unwrap();
    let rsa = kids(&jwks(&srv).await);
    let token = srv.token.clone();
    srv.stop().await;
    // Restarted with ES256: the RSA key keeps signing until the new key, published now, takes over an hour later.
    let mut cfg = config(dir.path(), None);
    cfg.instance.clock = clock.clock();
    cfg.oidc.keys.alg = sesame::core::oidc::Alg::Es256;
    let srv = TestServer::start(cfg, Some(token)).await.unwrap();
    make_env(&srv).await;
    let keys = jwks(&srv).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
    assert_eq!(keys["keys"][1]["kty"], "EC");
    assert_eq!(keys["keys"][1]["crv"], "P-256");
    assert_eq!(header_kid(&mint(&srv, &custom("a")).await), rsa[0]);
    clock.advance(HOUR);
    let t = mint(&srv, &custom("a")).await;
    assert_eq!(header_kid(&t), kids(&keys)[1]);
    let issuer = format!("{}/oidc", srv.base);
    let claims = sesame::oidc_issuer::verify(&keys, &t, &issuer, "a", now_s(&srv)).unwrap();
    assert_eq!(claims["aud"], "a");
    srv.stop().await;
}

#[tokio::test]
async fn replicas_on_postgres_share_the_keys_and_their_rotation() {
    let Some(db) = PgDb::create().await else { return };
    let dir = temp_dir();
    let mut cfg = config(dir.path(), Some(&db.url));
    let clock_a = manual_clock(&mut cfg);
    let a = TestServer::start(cfg, None).await.unwrap();
    make_env(&a).await;
    let replica_dir = temp_dir();
    std::fs::copy(key_file(dir.path()), key_file(replica_dir.path())).unwrap();
    let mut cfg = config(replica_dir.path(), Some(&db.url));
    let clock_b = manual_clock(&mut cfg);
    clock_b.set(a.server.state.clock.now_ms());
    let b = TestServer::start(cfg, Some(a.token.clone())).await.unwrap();
    let (ka, kb) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(ka, kb, "one key for both replicas");
    // A token one replica signs verifies against the other's JWKS.
    let t = mint(&a, &custom("x")).await;
    let issuer_b = format!("{}/oidc", b.base);
    let issuer_a = format!("{}/oidc", a.base);
    assert!(sesame::oidc_issuer::verify(&kb, &t, &issuer_a, "x", now_s(&a)).is_ok());
    let tb = mint(&b, &custom("x")).await;
    assert_eq!(header_kid(&tb), header_kid(&t));
    assert!(sesame::oidc_issuer::verify(&ka, &tb, &issuer_b, "x", now_s(&b)).is_ok());
    // The rotation one replica makes is the other's: one new key, not two.
    clock_a.advance(23 * HOUR);
    clock_b.advance(23 * HOUR);
    let ka = jwks(&a).await;
    let kb = jwks(&b).await;
    assert_eq!(kids(&ka).len(), 2);
    assert_eq!(ka, kb);
    assert_eq!(a.server.state.store.oidc_keys().await.unwrap().len(), 2);
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

use crate::support::{contains, store_bytes};

#[tokio::test]
async fn the_private_key_is_not_stored_in_plaintext() {
    use base64::Engine;
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let keys = jwks(&srv).await;
    srv.stop().await;
    let all = store_bytes(dir.path());
    assert!(all.len() > 10_000, "no database found in {}", dir.path().display());
    // The stored public JWK is there (so the scan sees the table) …
    let n_b64 = keys["keys"][0]["n"].as_str().unwrap();
    assert!(
        contains(&all, n_b64.as_bytes()),
        "the public key is not in the scanned files"
    );
    // … but no PKCS#8 RSA key: neither its algorithm header nor the raw modulus it would carry.
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n_b64).unwrap();
    assert!(
        !contains(&all, &n[..32]),
        "the raw modulus (part of a plaintext private key) is stored"
    );
    let pkcs8_rsa = [
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    assert!(
        !contains(&all, &pkcs8_rsa),
        "a PKCS#8 RSA private key is stored in plaintext"
    );
}

#[tokio::test]
async fn the_mint_endpoint_refuses_bad_input_and_hides_what_the_caller_may_not_open() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    make_env(&srv).await;
    let long = "a".repeat(513);
    let bad: Vec<(Value, &str)> = vec![
        (json!({"family": "custom-audience", "audience": ""}), "empty"),
        (json!({"family": "custom-audience", "audience": long}), "at most"),
        (
            json!({"family": "custom-audience", "audience": "a\u{1}b"}),
            "visible ASCII",
        ),
        (json!({"family": "custom-audience", "audience": "a b"}), "visible ASCII"),
        (
            json!({"family": "custom-audience", "audience": "https://ü.example"}),
            "visible ASCII",
        ),
        (
            json!({"family": "custom-audience", "audience": "\u{202e}x"}),
            "visible ASCII",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "duration": "59s"}),
            "1m to 1h",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "duration": "61m"}),
            "1m to 1h",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "duration": "-5m"}),
            "1m to 1h",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "duration": "forever"}),
            "1m to 1h",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "duration": "9999999999999h"}),
            "1m to 1h",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "duration": "1e300"}),
            "1m to 1h",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "duration": "NaN"}),
            "1m to 1h",
        ),
        (json!({"family": "jwt", "audience": "a"}), "unknown token family"),
        (json!({"family": "", "audience": "a"}), "unknown token family"),
        (json!({"audience": "a"}), "expected fields"),
        (json!({"family": "custom-audience"}), "needs audience"),
        (json!({"family": "login"}), "needs audiencePrefix"),
        (
            json!({"family": "login", "audiencePrefix": "aws", "audience": "x"}),
            "not audience",
        ),
        (
            json!({"family": "login", "audiencePrefix": "aws:other"}),
            "audiencePrefix may contain",
        ),
        (json!({"family": "login", "audiencePrefix": ""}), "empty"),
        (
            json!({"family": "custom-audience", "audience": "a", "subjectAttributes": []}),
            "login tokens only",
        ),
        (
            json!({"family": "login", "audiencePrefix": "aws", "subjectAttributes": ["pulumi.user.email"]}),
            "unknown subject attribute",
        ),
        (
            json!({"family": "login", "audiencePrefix": "aws", "subjectAttributes": ["Pulumi.User.Login"]}),
            "unknown subject attribute",
        ),
        (
            json!({"family": "login", "audiencePrefix": "aws", "subjectAttributes": ["pulumi.user.login", "pulumi.user.login"]}),
            "twice",
        ),
        (
            json!({"family": "login", "audiencePrefix": "aws", "subjectAttributes": "pulumi.user.login"}),
            "",
        ),
        (
            json!({"family": "login", "audiencePrefix": "aws", "subjectAttributes": [["rootEnvironment.name"]]}),
            "",
        ),
        (json!({"family": "custom-audience", "audience": ["a"]}), ""),
        (json!({"family": "custom-audience", "audience": {"a": 1}}), ""),
        // A caller cannot put anything in sub (or any other claim).
        (
            json!({"family": "custom-audience", "audience": "a", "sub": "anything"}),
            "expected fields",
        ),
        (
            json!({"family": "custom-audience", "audience": "a", "claims": {"sub": "x"}}),
            "expected fields",
        ),
        (json!([1, 2]), ""),
        (json!("login"), ""),
    ];
    for (body, want) in &bad {
        let (status, answer) = mint_as(&srv, &srv.token, body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        let msg = answer["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{body} → {msg}");
        let (status, _) = srv.post(&format!("{ENV}/oidc/claims"), body).await;
        assert_eq!(status, 400, "preview of {body}");
    }
    // Not JSON, and deeply nested JSON.
    let resp = srv
        .admin(reqwest::Method::POST, &format!("{ENV}/oidc/token"))
        .header("content-type", "application/json")
        .body(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // An organization token acts for no user: pulumi.user.login cannot be attested.
    let (status, answer) = srv
        .post(
            "/api/sesame/v1/tokens",
            &json!({"kind": "organization", "org": "acme", "description": "ci"}),
        )
        .await;
    assert!(status == 201 || status == 200, "{answer}");
    let org_token = answer["token"].as_str().unwrap().to_owned();
    let body = json!({"family": "login", "audiencePrefix": "aws", "subjectAttributes": ["pulumi.user.login"]});
    let (status, answer) = mint_as(&srv, &org_token, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("user"), "{answer}");

    // Missing environment, and one the caller may not see: the same answer.
    let (missing_status, missing) = srv
        .post_as(
            "/api/esc/environments/acme/app/nope/oidc/token",
            &custom("a"),
            Some(&srv.token),
        )
        .await;
    assert_eq!(missing_status, 404, "{missing}");
    let (status, body) = srv.add_member("acme", "nobody", "none").await;
    assert!(status == 200 || status == 201, "{body}");
    let hidden_token = body["token"].as_str().unwrap().to_owned();
    let (status, hidden) = mint_as(&srv, &hidden_token, &custom("a")).await;
    let (status2, hidden_missing) = srv
        .post_as(
            "/api/esc/environments/acme/app/nope/oidc/token",
            &custom("a"),
            Some(&hidden_token),
        )
        .await;
    assert_eq!((status, status2), (404, 404), "{hidden} {hidden_missing}");
    assert_eq!(
        hidden["message"].as_str().unwrap().replace("prod", "nope"),
        hidden_missing["message"].as_str().unwrap()
    );
    // A reader sees the environment but may not open it: 403, and no token.
    let (status, body) = srv.add_member("acme", "rita", "reader").await;
    assert!(status == 200 || status == 201, "{body}");
    let reader = body["token"].as_str().unwrap().to_owned();
    let (status, answer) = mint_as(&srv, &reader, &custom("a")).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.get("token").is_none());
    // No refused request minted anything.
    let export = srv.export("/api/sesame/v1/orgs/acme/audit").await;
    assert!(!export.contains("oidc.mint"), "{export}");
    srv.stop().await;
}

#[tokio::test]
async fn the_issuer_url_flags_decide_iss_and_the_served_path() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    cfg.oidc.public_url = Some("https://sesame.example.com/".into());
    cfg.oidc.issuer_url = Some("https://id.example.com/tenants/acme/".into());
    let srv = TestServer::start(cfg, None).await.unwrap();
    assert_eq!(srv.server.state.public_url, "https://sesame.example.com");
    assert_eq!(srv.server.state.issuer_url, "https://id.example.com/tenants/acme");
    let (status, doc, _) = get_public(&srv, "/tenants/acme/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], "https://id.example.com/tenants/acme");
    assert_eq!(get_public(&srv, "/oidc/.well-known/jwks").await.0, 404);
    srv.stop().await;
    for bad in [
        "ftp://x",
        "https://x/?q=1",
        "https://u:p@x/",
        "not a url",
        "https://x/a b",
        "https://x/#f",
    ] {
        let mut cfg = config(dir.path(), None);
        cfg.oidc.issuer_url = Some(bad.into());
        let err = TestServer::start(cfg, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(err.to_string().contains("--issuer-url"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn the_cli_mints_and_previews() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    make_env(&srv).await;
    let (code, out, err) = support::run_cli(
        &srv,
        &srv.token,
        [
            "oidc",
            "token",
            "acme/app/prod",
            "--audience",
            "https://r.example",
            "--duration",
            "5m",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    let keys = jwks(&srv).await;
    let claims = sesame::oidc_issuer::verify(
        &keys,
        token,
        &format!("{}/oidc", srv.base),
        "https://r.example",
        now_s(&srv),
    )
    .unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    let (code, out, err) = support::run_cli(
        &srv,
        &srv.token,
        [
            "oidc",
            "token",
            "acme/app/prod",
            "--audience-prefix",
            "aws",
            "--preview",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let claims: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(claims["sub"], "pulumi:environments:org:acme:env:app/prod");
    let (code, out, _) = support::run_cli(&srv, &srv.token, ["oidc", "token", "--help"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("--audience-prefix") && out.contains("custom-audience"),
        "{out}"
    );
    let (code, _, err) = support::run_cli(&srv, &srv.token, ["oidc", "token", "acme/app/prod"]).await;
    assert_ne!(code, 0, "{err}");
    srv.stop().await;
}

/// `SESAME_TEST_OIDC_PYTHON`: a Python with PyJWT and cryptography.
pub(crate) fn python() -> Option<String> {
    support::require_env(
        "SESAME_TEST_OIDC_PYTHON",
        "a Python with PyJWT (pip install PyJWT cryptography)",
    )
}

/// Verifies `token` with PyJWT's `PyJWKClient` against `issuer`'s discovery document, for `audience`.
pub(crate) async fn pyjwt(python: &str, issuer: &str, token: &str, audience: &str) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/verify_pyjwt.py");
    let out = tokio::process::Command::new(python)
        .args([script, issuer, token, audience])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn pyjwt_verifies_our_tokens_through_discovery() {
    let Some(python) = python() else { return };
    for alg in [sesame::core::oidc::Alg::Rs256, sesame::core::oidc::Alg::Es256] {
        let dir = temp_dir();
        let mut cfg = config(dir.path(), None);
        cfg.oidc.keys.alg = alg;
        let srv = TestServer::start(cfg, None).await.unwrap();
        make_env(&srv).await;
        let issuer = format!("{}/oidc", srv.base);
        let token = mint(&srv, &custom("https://relying.example")).await;
        let (ok, out) = pyjwt(&python, &issuer, &token, "https://relying.example").await;
        assert!(ok, "{alg:?}: {out}");
        let (org_id, env_id) = ids(&srv).await;
        assert!(out.contains(&format!("pulumi:org:{org_id}:env:{env_id}")), "{out}");
        let (ok, out) = pyjwt(&python, &issuer, &token, "https://other.example").await;
        assert!(!ok && out.contains("Audience"), "{out}");
        let mut tampered = token.clone();
        tampered.insert_str(token.find('.').unwrap() + 1, "eyJ");
        let (ok, _) = pyjwt(&python, &issuer, &tampered, "https://relying.example").await;
        assert!(!ok);
        srv.stop().await;
    }
}

use crate::bao::{Bao, bao};

impl Bao {
    async fn login(&self, jwt: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/auth/jwt/login", self.addr))
            .json(&json!({"role": "sesame", "jwt": jwt}))
            .send()
            .await
            .expect("bao login");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn openbao_jwt_auth_trusts_our_issuer() {
    let Some(bin) = bao() else { return };
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    let clock = manual_clock(&mut cfg);
    let start = clock.clock().now_ms();
    let srv = TestServer::start(cfg, None).await.unwrap();
    make_env(&srv).await;
    let aud = "https://bao.example";
    let (org_id, env_id) = ids(&srv).await;
    let sub = format!("pulumi:org:{org_id}:env:{env_id}");

    // A token signed by the first key, valid for another hour of real time; then the key is retired (24h later) and
    // removed (2h after that) before OpenBao ever sees the issuer, and the clock comes back to the present.
    let by_removed_key = mint(&srv, &custom(aud)).await;
    let removed = header_kid(&by_removed_key);
    clock.advance(23 * HOUR);
    jwks(&srv).await;
    clock.advance(3 * HOUR);
    let now_keys = kids(&jwks(&srv).await);
    assert!(!now_keys.contains(&removed), "{now_keys:?}");
    clock.set(start);
    let good = mint(&srv, &custom(aud)).await;
    assert_ne!(header_kid(&good), removed);
    let wrong_audience = mint(&srv, &custom("https://elsewhere.example")).await;
    clock.set(start - 2 * 3_600_000);
    let expired = mint(&srv, &custom(aud)).await;
    clock.set(start);

    let bao = Bao::start(&bin).await;
    let issuer = srv.server.state.issuer_url.clone();
    let (status, body) = bao.write("sys/auth/jwt", &json!({"type": "jwt"})).await;
    assert!(status == 204 || status == 200, "{status} {body}");
    let (status, body) = bao
        .write(
            "auth/jwt/config",
            &json!({"oidc_discovery_url": issuer, "bound_issuer": issuer}),
        )
        .await;
    assert!(status == 204 || status == 200, "config: {status} {body}");
    let (status, body) = bao
        .write(
            "auth/jwt/role/sesame",
            &json!({"role_type": "jwt", "bound_audiences": [aud], "bound_subject": sub, "user_claim": "sub",
                    "policies": ["default"], "token_ttl": "60s"}),
        )
        .await;
    assert!(status == 204 || status == 200, "role: {status} {body}");

    let (status, body) = bao.login(&good).await;
    assert_eq!(status, 200, "a valid token must log in: {body}");
    assert!(
        body["auth"]["client_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    for (what, token) in [
        ("a wrong audience", &wrong_audience),
        ("an expired token", &expired),
        ("a token signed by a retired and removed key", &by_removed_key),
    ] {
        let (status, body) = bao.login(token).await;
        assert_eq!(status, 400, "{what} must be refused: {body}");
    }
    srv.stop().await;
}
