//! Providers at the evaluator's edge (`fn::open::<name>`), on SQLite and PostgreSQL: `fn::open::oidc` mints a
//! custom-audience token verified by PyJWT against the JWKS its issuer names; every open runs providers anew (never
//! from the evaluated-result cache) and a session stores the outputs, so a read always gives the same values; bad
//! inputs, an unsaved document and a provider error each give a clear diagnostic at the call; every call is audited
//! without its output.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::esc::{Esc, Resp};
use crate::oidc_issuer::{pyjwt, python};
use crate::support::{self, TestServer, on_both};

const APP: &str = "/acme/svc/app";
const AUD: &str = "https://relying.example";

fn oidc_yaml(inputs: &str) -> String {
    format!("values:\n  plain: hello\n  token:\n    fn::open::oidc:\n{inputs}")
}

const GOOD: &str =
    "      audience: https://relying.example\n      identityToken:\n        version: v2\n      duration: 5m\n";

async fn open_id(c: &Esc<'_>) -> String {
    let r = c.call("POST", &format!("{APP}/open?duration=1h"), None, &[]).await;
    assert_eq!(r.status, 200, "open: {}", r.text);
    r.json()["id"].as_str().expect("session id").to_owned()
}

async fn read(c: &Esc<'_>, id: &str) -> Resp {
    c.call("GET", &format!("{APP}/open/{id}"), None, &[]).await
}

/// The token a session holds, checked to be marked secret.
async fn token_of(c: &Esc<'_>, id: &str) -> String {
    let r = read(c, id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["properties"]["token"]["secret"], json!(true), "{v}");
    assert_eq!(v["properties"]["plain"]["value"], json!("hello"));
    v["properties"]["token"]["value"].as_str().expect("token").to_owned()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

async fn audit_records(s: &TestServer) -> Vec<Value> {
    s.export("/api/sesame/v1/orgs/acme/audit")
        .await
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["action"] == "provider.open")
        .collect()
}

async fn oidc_tokens_per_open(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let r = c.patch(APP, &oidc_yaml(GOOD)).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let (id1, id2) = (open_id(&c).await, open_id(&c).await);
    let t1 = token_of(&c, &id1).await;
    let t2 = token_of(&c, &id2).await;
    assert_ne!(t1, t2, "two opens give two tokens");
    // A session always reads the same: its output is stored, the provider is not called again.
    assert_eq!(token_of(&c, &id1).await, t1);
    assert_eq!(token_of(&c, &id2).await, t2);
    let prop = c
        .call("GET", &format!("{APP}/open/{id1}?property=token"), None, &[])
        .await;
    assert_eq!(prop.status, 200, "{}", prop.text);
    assert_eq!(prop.json()["value"], json!(t1));

    let cl = claims(&t1);
    assert_eq!(cl["aud"], json!(AUD));
    let life = cl["exp"].as_i64().unwrap() - cl["iat"].as_i64().unwrap();
    assert_eq!(life, 300, "{cl}");
    assert!(cl["sub"].as_str().unwrap().contains(":env:"), "{cl}");

    // Two opens, two calls audited; never the token.
    let records = audit_records(s).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        let text = r.to_string();
        assert!(text.contains("provider=oidc") && text.contains("ok"), "{text}");
        assert!(!text.contains(&t1) && !text.contains(&t2), "{text}");
    }

    if let Some(python) = python() {
        let issuer = cl["iss"].as_str().unwrap();
        let (ok, out) = pyjwt(&python, issuer, &t1, AUD).await;
        assert!(ok, "{out}");
        let (ok, out) = pyjwt(&python, issuer, &t1, "https://other.example").await;
        assert!(!ok, "{out}");
    }

    // Check mode: the call is not made, its value is unknown and typed by the output schema.
    let check = c.post("/acme/yaml/check", &oidc_yaml(GOOD)).await;
    assert_eq!(check.status, 200, "{}", check.text);
    assert_eq!(audit_records(s).await.len(), 2);

    // The CLI: `env get --show-secrets` shows the definition and runs no provider; `env open` runs it anew.
    let (code, out, err) = support::run_cli(s, &s.token, ["env", "get", "acme/svc/app", "--show-secrets"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fn::open::oidc") && !out.contains("eyJ"), "{out}");
    assert_eq!(audit_records(s).await.len(), 2);
    let (code, out, err) = support::run_cli(
        s,
        &s.token,
        ["env", "open", "acme/svc/app", "token", "--format", "string"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let t3 = out.trim();
    assert!(t3 != t1 && t3 != t2, "{t3}");
    assert_eq!(claims(t3)["aud"], json!(AUD));
    assert_eq!(audit_records(s).await.len(), 3);
}
on_both!(
    oidc_tokens_per_open,
    oidc_tokens_per_open_sqlite,
    oidc_tokens_per_open_postgres
);

async fn bad_inputs_are_diagnosed(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    // Refused when saved (the input schema).
    let refused_on_save = [
        ("      identityToken:\n        version: v2\n", "audience"),
        (
            "      audience: \"\"\n      identityToken:\n        version: v2\n",
            "audience",
        ),
        ("      audience: a\n", "identityToken"),
        (
            "      audience: a\n      identityToken:\n        version: v1\n",
            "version",
        ),
        (
            "      audience: a\n      identityToken:\n        version: v2\n      extra: 1\n",
            "extra",
        ),
        (
            "      audience: [a]\n      identityToken:\n        version: v2\n",
            "audience",
        ),
        (
            "      audience: a\n      identityToken:\n        version: v2\n      duration: soon\n",
            "duration",
        ),
    ];
    for (inputs, want) in refused_on_save {
        let r = c.patch(APP, &oidc_yaml(inputs)).await;
        assert_eq!(r.status, 400, "{inputs}: {}", r.text);
        assert!(r.text.contains(want), "{inputs}: {}", r.text);
    }
    // Refused at open (what the schema cannot say): a diagnostic at the call.
    let at_open = [
        (
            "      audience: a\n      identityToken:\n        version: v2\n      duration: 2h\n",
            "from 1m to 1h",
        ),
        (
            "      audience: a\n      identityToken:\n        version: v2\n      duration: 30s\n",
            "from 1m to 1h",
        ),
        (
            "      audience: a b\n      identityToken:\n        version: v2\n",
            "visible ASCII",
        ),
    ];
    for (inputs, want) in at_open {
        let r = c.patch(APP, &oidc_yaml(inputs)).await;
        assert_eq!(r.status, 200, "{inputs}: {}", r.text);
        let r = c.call("POST", &format!("{APP}/open"), None, &[]).await;
        assert_eq!(r.status, 400, "{inputs}: {}", r.text);
        assert!(
            r.text.contains(want) && r.text.contains("token"),
            "{inputs}: {}",
            r.text
        );
    }
    let failed: Vec<Value> = audit_records(s).await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().all(|r| r["outcome"] == "failed"), "{failed:?}");

    // An unsaved document may not mint.
    let r = c.post("/acme/yaml/open", &oidc_yaml(GOOD)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("unsaved document"), "{}", r.text);
    // An unknown provider is an error where it is written.
    let r = c.patch(APP, "values:\n  x:\n    fn::open::nope: {}\n").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("unknown provider"), "{}", r.text);
}
on_both!(
    bad_inputs_are_diagnosed,
    bad_inputs_are_diagnosed_sqlite,
    bad_inputs_are_diagnosed_postgres
);

async fn sessions_keep_their_outputs(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let r = c.patch(APP, &oidc_yaml(GOOD)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = open_id(&c).await;
    // The id names the outputs row (flag bit 0 and 16 bytes more).
    assert_eq!(id.len(), 208, "{id}");
    let t = token_of(&c, &id).await;

    // Cold (the caches dropped) and after a new revision: the stored output answers, the provider is not called.
    let r = c
        .patch(APP, &oidc_yaml(&GOOD.replace("relying.example", "other.example")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.server.state.eval_cache.invalidate_all();
    s.server.state.doc_cache.invalidate_all();
    assert_eq!(token_of(&c, &id).await, t);
    assert_eq!(audit_records(s).await.len(), 1);

    // Another token of an admin reads nothing.
    let (status, body) = s.add_member("acme", "peer", "admin").await;
    assert!(status < 300, "{body}");
    let peer = Esc {
        s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    let r = read(&peer, &id).await;
    assert_eq!(r.status, 404, "{}", r.text);

    // The outputs row expires with the session and is swept by the purge; without it the session is gone.
    let store = &s.server.state.store;
    let now = s.server.state.clock.now_ms();
    assert_eq!(store.purge_sessions(now).await.unwrap(), 0);
    let later = now + std::time::Duration::from_secs(2 * 3600).as_millis() as i64;
    assert_eq!(store.purge_sessions(later).await.unwrap(), 1, "the outputs row");
    s.server.state.eval_cache.invalidate_all();
    let r = read(&c, &id).await;
    assert_eq!(r.status, 404, "{}", r.text);
}
on_both!(
    sessions_keep_their_outputs,
    sessions_keep_their_outputs_sqlite,
    sessions_keep_their_outputs_postgres
);

async fn schemas_are_served(s: &TestServer) {
    let c = Esc::admin(s);
    let get = |path: &'static str| c.call("GET", path, None, &[]);
    let r = get("/api/esc/providers").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let providers = if cfg!(feature = "aws") {
        json!([
            "aws-login",
            "aws-parameter-store",
            "aws-secrets",
            "azure-login",
            "gcp-login",
            "oidc",
            "vault-login",
            "vault-secrets"
        ])
    } else {
        json!(["azure-login", "gcp-login", "oidc", "vault-login", "vault-secrets"])
    };
    assert_eq!(r.json(), json!({ "providers": providers }));
    let r = get("/api/esc/providers/oidc/schema").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["name"], "oidc");
    assert!(v["description"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert_eq!(v["inputs"]["required"], json!(["audience", "identityToken"]));
    assert_eq!(v["inputs"]["additionalProperties"], json!(false));
    assert_eq!(v["inputs"]["properties"]["duration"]["default"], "1h");
    assert_eq!(v["inputs"]["properties"]["audience"]["maxLength"], 512);
    assert_eq!(
        v["inputs"]["properties"]["identityToken"]["properties"]["version"]["const"],
        "v2"
    );
    assert_eq!(v["outputs"]["type"], "string");
    // The AWS provider and rotator exist only with the `aws` feature.
    let aws = if cfg!(feature = "aws") { 200 } else { 404 };
    for (path, want) in [
        ("/api/esc/providers/aws-login/schema", aws),
        ("/api/esc/providers/aws-secrets/schema", aws),
        ("/api/esc/providers/1password-secrets/schema", 404),
        ("/api/esc/providers/..%2f/schema", 404),
        ("/api/esc/rotators/aws-iam/schema", aws),
    ] {
        let r = get(path).await;
        assert_eq!(r.status, want, "{path}: {}", r.text);
    }
    let r = get("/api/esc/rotators").await;
    let rotators = if cfg!(feature = "aws") {
        json!(["aws-iam", "passphrase", "password"])
    } else {
        json!(["passphrase", "password"])
    };
    assert_eq!(r.json(), json!({ "rotators": rotators }));
    let r = get("/api/esc/context/schema").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["schema"]["properties"]["rootEnvironment"]["properties"]["name"]["type"],
        "string"
    );
    assert_eq!(v["schema"]["properties"]["currentEnvironment"]["type"], "object");
    // The caller must be signed in.
    let anon = s
        .http
        .get(format!("{}/api/esc/providers", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);

    // Check mode types the call's value by the output schema: a string has no property.
    let doc = format!("{}  bad: ${{token.foo}}\n", oidc_yaml(GOOD));
    let r = c.post("/acme/yaml/check", &doc).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let diags = r.json()["diagnostics"].clone();
    assert_eq!(diags.as_array().map(Vec::len), Some(1), "{diags}");
    assert_eq!(diags[0]["path"], "values.bad");
    assert!(
        diags[0]["summary"]
            .as_str()
            .unwrap()
            .contains("must be an array or an object"),
        "{diags}"
    );
    let ok = c.post("/acme/yaml/check", &oidc_yaml(GOOD)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json()["properties"]["token"]["unknown"], json!(true), "{}", ok.text);
}
on_both!(
    schemas_are_served,
    schemas_are_served_sqlite,
    schemas_are_served_postgres
);

/// One provider's output feeding another's input takes a second round; a call in an imported environment is made
/// about that environment, opened through the root.
async fn rounds_and_imports(s: &TestServer) {
    let c = Esc::admin(s);
    for name in ["base", "app"] {
        assert_eq!(c.create("acme", "svc", name).await.status, 200);
    }
    let base = "values:\n  first:\n    fn::open::oidc:\n      audience: https://first.example\n      identityToken:\n        version: v2\n";
    let r = c.patch("/acme/svc/base", base).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let app = "imports:\n  - svc/base\nvalues:\n  parts:\n    fn::split: [\".\", \"${first}\"]\n  second:\n    fn::open::oidc:\n      audience: ${parts[0]}\n      identityToken:\n        version: v2\n";
    let r = c.patch(APP, app).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = open_id(&c).await;
    let v = read(&c, &id).await.json();
    let first = v["properties"]["first"]["value"].as_str().expect("first").to_owned();
    let second = v["properties"]["second"]["value"].as_str().expect("second").to_owned();
    assert_eq!(v["properties"]["second"]["secret"], json!(true));
    let header = first.split('.').next().unwrap();
    assert_eq!(claims(&second)["aud"], json!(header));
    let c1 = claims(&first);
    assert_eq!(c1["https://pulumi.com/current_env"], "svc/base", "{c1}");
    assert_eq!(c1["https://pulumi.com/root_env"], "svc/app", "{c1}");
    assert_eq!(audit_records(s).await.len(), 2);
    // The session replays both, cold.
    s.server.state.eval_cache.invalidate_all();
    let again = read(&c, &id).await.json();
    assert_eq!(again["properties"]["first"]["value"], json!(first));
    assert_eq!(again["properties"]["second"]["value"], json!(second));
    assert_eq!(audit_records(s).await.len(), 2);
}
on_both!(
    rounds_and_imports,
    rounds_and_imports_sqlite,
    rounds_and_imports_postgres
);

/// A client that goes away while a provider call runs (here: a Vault address that accepts and never answers) still
/// leaves that call's audit record, marked abandoned.
async fn abandoned_calls_are_audited(database_url: Option<&str>) {
    let dir = support::temp_dir();
    let mut cfg = support::config(dir.path(), database_url);
    cfg.egress_allow = sesame::egress::EgressPolicy::parse(&["127.0.0.1/32"]).unwrap();
    let s = TestServer::start(cfg, None).await.unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let c = Esc::admin(&s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let yaml = format!(
        "values:\n  vault:\n    fn::open::vault-login:\n      address: http://127.0.0.1:{port}\n      token:\n        token: parent-token\n"
    );
    let r = c.patch(APP, &yaml).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let url = format!("{}/api/esc/environments{APP}/open?duration=1h", s.base);
    let gone = s
        .http
        .post(url)
        .header("Authorization", format!("token {}", s.token))
        .timeout(std::time::Duration::from_millis(500))
        .send()
        .await;
    assert!(gone.is_err(), "the open was expected to outlast the client");
    let mut found = Vec::new();
    for _ in 0..50 {
        found = audit_records(&s).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["outcome"], json!("error"), "{}", found[0]);
    let detail = found[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("provider=vault-login") && detail.contains("abandoned"),
        "{detail}"
    );
    assert!(!detail.contains("parent-token"), "{detail}");
    held.abort();
    s.stop().await;
}

#[tokio::test]
async fn abandoned_calls_are_audited_sqlite() {
    abandoned_calls_are_audited(None).await;
}

#[tokio::test]
async fn abandoned_calls_are_audited_postgres() {
    support::with_postgres_url(abandoned_calls_are_audited).await;
}

/// A provider call the text test cannot see (the key written with a YAML escape) still runs once per open, also
/// when opens arrive together and share one evaluation: each session holds its own token.
async fn escaped_calls_run_per_open(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let yaml = format!("values:\n  token:\n    \"fn::\\u006fpen::oidc\":\n{GOOD}");
    let r = c.patch(APP, &yaml).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let opens: Vec<String> = futures::future::join_all((0..8).map(|_| open_id(&c))).await;
    let mut tokens = Vec::new();
    for id in &opens {
        let r = read(&c, id).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["properties"]["token"]["secret"], json!(true), "{v}");
        tokens.push(v["properties"]["token"]["value"].as_str().expect("a token").to_owned());
    }
    let distinct: std::collections::BTreeSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), opens.len(), "every open minted its own token");
    assert_eq!(audit_records(s).await.len(), opens.len());
}
on_both!(
    escaped_calls_run_per_open,
    escaped_calls_run_per_open_sqlite,
    escaped_calls_run_per_open_postgres
);
