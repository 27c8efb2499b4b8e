//! `fn::open::vault-login` and `fn::open::vault-secrets` against a real OpenBao dev server (`SESAME_TEST_BAO`), on
//! SQLite and PostgreSQL: JWT login with a login token from our issuer (found by OpenBao through discovery) and
//! token login give a fresh Vault token per open, KV v2 reads come back secret, a session reads the same without
//! calling Vault again; an address egress does not allow, a wrong role and a missing path each give a diagnostic
//! that holds nothing secret.

use serde_json::{Value, json};

use crate::bao::{Bao, bao};
use crate::esc::{Esc, Resp};
use crate::support::{TestServer, config, temp_dir, with_postgres_url};

const APP: &str = "/acme/svc/app";

async fn start(database_url: Option<&str>) -> (TestServer, tempfile::TempDir) {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), database_url);
    cfg.egress_allow = sesame::egress::EgressPolicy::parse(&["127.0.0.1/32"]).unwrap();
    (TestServer::start(cfg, None).await.unwrap(), dir)
}

fn ok(status: u16, body: &Value, what: &str) {
    assert!(status == 200 || status == 204, "{what}: {status} {body}");
}

/// JWT auth trusting our issuer, a role for svc/app's login tokens, a policy reading `secret/app/*`, a secret.
async fn configure(bao: &Bao, s: &TestServer, password: &str) {
    let issuer = s.server.state.issuer_url.clone();
    let (st, b) = bao.write("sys/auth/jwt", &json!({"type": "jwt"})).await;
    ok(st, &b, "enable jwt");
    let (st, b) = bao
        .write(
            "auth/jwt/config",
            &json!({"oidc_discovery_url": issuer, "bound_issuer": issuer}),
        )
        .await;
    ok(st, &b, "jwt config");
    let policy = "path \"secret/data/app/*\" { capabilities = [\"read\"] }";
    let (st, b) = bao.write("sys/policies/acl/reader", &json!({"policy": policy})).await;
    ok(st, &b, "policy");
    let (st, b) = bao
        .write(
            "auth/jwt/role/sesame",
            &json!({"role_type": "jwt", "bound_audiences": ["vault:acme"],
                    "bound_subject": "pulumi:environments:org:acme:env:svc/app", "user_claim": "sub",
                    "policies": ["reader"], "token_ttl": "5m"}),
        )
        .await;
    ok(st, &b, "role");
    let (st, b) = bao
        .write(
            "secret/data/app/db",
            &json!({"data": {"password": password, "user": "app"}}),
        )
        .await;
    ok(st, &b, "secret");
}

fn doc(login: &str, path: &str) -> String {
    format!(
        "values:\n  vault:\n    fn::open::vault-login:\n{login}  db:\n    fn::open::vault-secrets:\n      login: ${{vault}}\n      read:\n        pw:\n          path: {path}\n          field: password\n        all:\n          path: {path}\n"
    )
}

fn jwt_login(addr: &str, role: &str) -> String {
    format!("      address: {addr}\n      jwt:\n        mount: jwt\n        role: {role}\n")
}

async fn open(c: &Esc<'_>) -> Resp {
    c.call("POST", &format!("{APP}/open?duration=1h"), None, &[]).await
}

async fn read(c: &Esc<'_>, id: &str) -> Value {
    let r = c.call("GET", &format!("{APP}/open/{id}"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

async fn lookup_self(bao: &Bao, token: &str) -> u16 {
    bao.http
        .get(format!("{}/v1/auth/token/lookup-self", bao.addr))
        .header("X-Vault-Token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn scenario(s: &TestServer, bao: &Bao) {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    configure(bao, s, &password).await;
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "svc", "app").await.status, 200);
    let r = c
        .patch(APP, &doc(&jwt_login(&bao.addr, "sesame"), "secret/app/db"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let (r1, r2) = (open(&c).await, open(&c).await);
    assert_eq!(r1.status, 200, "{}", r1.text);
    assert_eq!(r2.status, 200, "{}", r2.text);
    let (id1, id2) = (
        r1.json()["id"].as_str().unwrap().to_owned(),
        r2.json()["id"].as_str().unwrap().to_owned(),
    );
    let v1 = read(&c, &id1).await;
    let p = &v1["properties"];
    assert_eq!(p["db"]["secret"], json!(true), "{v1}");
    assert_eq!(p["db"]["value"]["pw"]["value"], json!(password), "{v1}");
    assert_eq!(p["db"]["value"]["pw"]["secret"], json!(true), "{v1}");
    assert_eq!(p["db"]["value"]["all"]["value"]["user"]["value"], json!("app"), "{v1}");
    assert_eq!(p["vault"]["secret"], json!(true), "{v1}");
    assert_eq!(p["vault"]["value"]["address"]["value"], json!(bao.addr), "{v1}");
    let t1 = p["vault"]["value"]["token"]["value"]
        .as_str()
        .expect("token")
        .to_owned();
    let v2 = read(&c, &id2).await;
    let t2 = v2["properties"]["vault"]["value"]["token"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(t1, t2, "two opens log in twice");
    assert_eq!(lookup_self(bao, &t1).await, 200, "a working Vault token");

    // The secret changes in Vault: the sessions still read what they opened (Vault is not called again); a new
    // open reads the new version.
    let (st, b) = bao
        .write(
            "secret/data/app/db",
            &json!({"data": {"password": "rotated", "user": "app"}}),
        )
        .await;
    ok(st, &b, "new version");
    s.server.state.eval_cache.invalidate_all();
    let again = read(&c, &id1).await;
    assert_eq!(again["properties"]["db"]["value"]["pw"]["value"], json!(password));
    assert_eq!(again["properties"]["vault"]["value"]["token"]["value"], json!(t1));
    let r3 = open(&c).await;
    let v3 = read(&c, r3.json()["id"].as_str().unwrap()).await;
    assert_eq!(v3["properties"]["db"]["value"]["pw"]["value"], json!("rotated"));

    // Token login: a child of the given token, then the same reads.
    let token_login = format!(
        "      address: {}\n      token:\n        token:\n          fn::secret: {}\n        displayName: esc\n        ttl: 10m\n",
        bao.addr, bao.root
    );
    let r = c.patch(APP, &doc(&token_login, "secret/app/db")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = open(&c).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = read(&c, r.json()["id"].as_str().unwrap()).await;
    assert_eq!(v["properties"]["db"]["value"]["pw"]["value"], json!("rotated"), "{v}");
    let child = v["properties"]["vault"]["value"]["token"]["value"].as_str().unwrap();
    assert_ne!(child, bao.root);
    assert_eq!(lookup_self(bao, child).await, 200);

    // Refusals: each a diagnostic naming the cause, holding no token nor secret.
    let port = bao.addr.rsplit(':').next().unwrap();
    let cases = [
        (
            doc(
                &jwt_login(&format!("http://127.0.0.2:{port}"), "sesame"),
                "secret/app/db",
            ),
            "--egress-allow",
        ),
        (doc(&jwt_login(&bao.addr, "nope"), "secret/app/db"), "role \\\"nope\\\""),
        (doc(&jwt_login(&bao.addr, "sesame"), "secret/app/missing"), "404"),
        (doc(&jwt_login(&bao.addr, "sesame"), "secret/other/x"), "403"),
        (doc(&jwt_login(&bao.addr, "sesame"), "secret/../sys"), "'..'"),
        (doc(&jwt_login(&bao.addr, "sesame"), "secret"), "<mount>/<secret>"),
        (doc(&jwt_login(&bao.addr, "sesame"), "secret/app/é"), "visible ASCII"),
        (
            doc(&jwt_login(&bao.addr, "sesame"), "secret/app/db").replace("field: password", "field: nope"),
            "no field \\\"nope\\\"",
        ),
        (
            doc(
                &format!(
                    "      address: {}\n      namespace: \"a b\"\n      jwt:\n        role: sesame\n",
                    bao.addr
                ),
                "secret/app/db",
            ),
            "namespace must be",
        ),
        (
            doc(
                &format!(
                    "      address: {}\n      token:\n        token: \"not a token\"\n",
                    bao.addr
                ),
                "secret/app/db",
            ),
            "token.token must be",
        ),
        (
            doc(
                &format!("      address: {}\n      token:\n        token: wrong\n", bao.addr),
                "secret/app/db",
            ),
            "HTTP 403",
        ),
        (
            doc(&jwt_login(&format!("{}/v1", bao.addr), "sesame"), "secret/app/db"),
            "without a path",
        ),
    ];
    for (yaml, want) in cases {
        let r = c.patch(APP, &yaml).await;
        assert_eq!(r.status, 200, "{yaml}: {}", r.text);
        let r = open(&c).await;
        assert_eq!(r.status, 400, "{yaml}: {}", r.text);
        assert!(r.text.contains(want), "{want}: {}", r.text);
        for secret in [bao.root.as_str(), "eyJ", "rotated", &password, &t1] {
            assert!(!r.text.contains(secret), "{}", r.text);
        }
    }
    // Inputs the schema refuses at save.
    for bad in [
        "      address: http://x\n      jwt:\n        mount: jwt\n",
        "      address: http://x\n      jwt:\n        role: r\n        extra: 1\n",
        "      jwt:\n        role: r\n",
    ] {
        let r = c.patch(APP, &doc(bad, "secret/app/db")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    // Every call audited, the login token's mint too; never a token or a value.
    let audit = s.export("/api/sesame/v1/orgs/acme/audit").await;
    assert!(audit.contains("provider=vault-login") && audit.contains("provider=vault-secrets"));
    assert!(audit.contains("aud=vault:acme"), "the login token's mint is audited");
    for secret in [bao.root.as_str(), "rotated", &password, &t1, &t2] {
        assert!(!audit.contains(secret));
    }

    // JWT login names a stored environment: refused in an unsaved document; check mode calls nothing.
    let jwt_doc = doc(&jwt_login(&bao.addr, "sesame"), "secret/app/db");
    let r = c.post("/acme/yaml/open", &jwt_doc).await;
    assert!(r.status == 400 && r.text.contains("unsaved document"), "{}", r.text);
    let r = c.post("/acme/yaml/check", &jwt_doc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["properties"]["db"]["unknown"], json!(true), "{}", r.text);
    // The schemas editors read.
    let r = c.call("GET", "/api/esc/providers/vault-login/schema", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["inputs"]["required"], json!(["address"]), "{v}");
    assert_eq!(
        v["inputs"]["properties"]["jwt"]["properties"]["mount"]["default"], "jwt",
        "{v}"
    );
    assert_eq!(v["outputs"]["properties"]["token"]["secret"], json!(true), "{v}");
    let r = c
        .call("GET", "/api/esc/providers/vault-secrets/schema", None, &[])
        .await;
    assert_eq!(r.json()["inputs"]["required"], json!(["login", "read"]), "{}", r.text);

    // Neither or both modes: at open.
    let both = format!(
        "      address: {}\n      jwt:\n        role: sesame\n      token:\n        token: x\n",
        bao.addr
    );
    let r = c.patch(APP, &doc(&both, "secret/app/db")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = open(&c).await;
    assert!(
        r.status == 400 && r.text.contains("exactly one of jwt and token"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn vault_providers_on_sqlite() {
    let Some(bin) = bao() else { return };
    let bao = Bao::start(&bin).await;
    let (s, _dir) = start(None).await;
    scenario(&s, &bao).await;
    s.stop().await;
}

#[tokio::test]
async fn vault_providers_on_postgres() {
    let Some(bin) = bao() else { return };
    with_postgres_url(async |url| {
        let bao = Bao::start(&bin).await;
        let (s, _dir) = start(url).await;
        scenario(&s, &bao).await;
        s.stop().await;
    })
    .await;
}
