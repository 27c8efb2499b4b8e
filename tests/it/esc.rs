//! The ESC environments API, black-box over HTTP on SQLite and PostgreSQL: definitions with secrets sealed at rest
//! (text kept), etags, imports, open sessions, revisions, tags, clones; bad input changes nothing; concurrent
//! writers never lose an update.

use serde_json::{Value, json};

use crate::support::{self, PgDb, TestServer};

const BASE: &str = "/api/esc/environments";

/// A small client for one server and token.
pub struct Esc<'a> {
    pub s: &'a TestServer,
    pub token: String,
}

/// A response: status, headers, body text.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

impl<'a> Esc<'a> {
    pub fn admin(s: &'a TestServer) -> Esc<'a> {
        Esc {
            s,
            token: s.token.clone(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        let url = if path.starts_with("/api/") {
            format!("{}{path}", self.s.base)
        } else {
            format!("{}{BASE}{path}", self.s.base)
        };
        let mut req = self
            .s
            .http
            .request(method.parse().expect("method"), url)
            .header("Authorization", format!("token {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req.send().await.expect("request");
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.expect("body"),
        }
    }

    pub async fn create(&self, org: &str, project: &str, name: &str) -> Resp {
        let body = json!({"project": project, "name": name}).to_string();
        self.call(
            "POST",
            &format!("/{org}"),
            Some(&body),
            &[("Content-Type", "application/json")],
        )
        .await
    }

    /// POSTs `body` with no extra headers.
    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.call("POST", path, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, yaml: &str) -> Resp {
        // The Go CLI sends JSON as the content type even for YAML bodies: the server must not care.
        self.call("PATCH", path, Some(yaml), &[("Content-Type", "application/json")])
            .await
    }

    pub async fn open(&self, path: &str) -> Value {
        let r = self.call("POST", &format!("{path}/open?duration=1h"), None, &[]).await;
        assert_eq!(r.status, 200, "open {path}: {}", r.text);
        let id = r.json()["id"].as_str().expect("session id").to_owned();
        let r = self.call("GET", &format!("{path}/open/{id}"), None, &[]).await;
        assert_eq!(r.status, 200, "read {path}: {}", r.text);
        r.json()
    }
}

/// Plain JSON from ESC `Value`s.
pub fn plain(v: &Value) -> Value {
    match &v["value"] {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(plain).collect()),
        other => other.clone(),
    }
}

fn props(env: &Value) -> Value {
    Value::Object(
        env["properties"]
            .as_object()
            .expect("properties")
            .iter()
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect(),
    )
}

async fn head(c: &Esc<'_>, path: &str) -> (String, i64) {
    let r = c.call("GET", path, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (
        r.header("etag"),
        r.header("pulumi-esc-revision").parse().expect("revision header"),
    )
}

async fn flow(s: &TestServer, clock: &sesame::clock::ManualClock) {
    let c = Esc::admin(s);
    let base = "/acme/default/base";
    let app = "/acme/app/dev";
    assert_eq!(c.create("acme", "default", "base").await.status, 200);
    assert_eq!(c.create("acme", "app", "dev").await.status, 200);
    let dup = c.create("acme", "app", "dev").await;
    assert_eq!(dup.status, 409, "{}", dup.text);
    assert_eq!(c.create("acme", "app", "bad/name").await.status, 400);
    assert_eq!(c.create("nosuchorg", "app", "x").await.status, 404);

    // Secrets are sealed at rest; the user's comments and layout survive.
    let text = "# the base\nvalues:\n  region: us-west-2   # keep me\n  password:\n    fn::secret: hunter2\n";
    let r = c.patch(base, text).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json().is_object(), "PATCH answers a JSON body");
    assert_eq!(r.header("pulumi-esc-revision"), "2");
    let stored = c.call("GET", base, None, &[]).await;
    assert!(stored.header("content-type").contains("yaml"));
    assert!(!stored.text.contains("hunter2"), "plaintext stored: {}", stored.text);
    assert!(stored.text.contains("ciphertext:"));
    assert!(
        stored
            .text
            .starts_with("# the base\nvalues:\n  region: us-west-2   # keep me\n")
    );
    let decrypted = c.call("GET", &format!("{base}/decrypt"), None, &[]).await;
    assert_eq!(decrypted.status, 200);
    assert_eq!(decrypted.text, text);

    // Imports: a bare name is default/NAME; interpolation across the import.
    let r = c
        .patch(
            app,
            "imports:\n  - base\nvalues:\n  url: https://${region}.example\n  nothing: null\n  environmentVariables:\n    PASSWORD: ${password}\n",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let opened = c.open(app).await;
    assert!(opened.get("exprs").is_none());
    let p = props(&opened);
    assert_eq!(p["url"], "https://us-west-2.example");
    assert_eq!(p["environmentVariables"]["PASSWORD"], "hunter2");
    assert!(
        opened["properties"]["nothing"]
            .as_object()
            .unwrap()
            .contains_key("value")
    );
    assert_eq!(opened["properties"]["password"]["secret"], true);
    assert_eq!(opened["properties"]["url"]["trace"]["def"]["environment"], "app/dev");

    // One property, through the double-slash path the Python SDK uses.
    let r = c.call("POST", &format!("{app}/open"), None, &[]).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = c
        .call(
            "GET",
            &format!("{app}/open//{id}?property=environmentVariables.PASSWORD"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["value"], "hunter2");
    let r = c
        .call("GET", &format!("{app}/open//{id}?property=nope"), None, &[])
        .await;
    assert_eq!(r.status, 404);
    // A session is bound to its environment.
    assert_eq!(c.call("GET", &format!("{base}/open/{id}"), None, &[]).await.status, 404);
    assert_eq!(
        c.call("GET", &format!("{app}/open/{}", "0".repeat(32)), None, &[])
            .await
            .status,
        404
    );

    // Etags: a stale one is refused and changes nothing.
    let (etag, rev) = head(&c, app).await;
    let r = c
        .call("PATCH", app, Some("values:\n  v: 1\n"), &[("ETag", etag.as_str())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c
        .call("PATCH", app, Some("values:\n  v: 2\n"), &[("If-Match", etag.as_str())])
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["code"], 409);
    let (_, after) = head(&c, app).await;
    assert_eq!(after, rev + 1);

    // Invalid documents: 400 with diagnostics that carry the environment; nothing changes.
    for bad in [
        "values: [unclosed\n",
        "values:\n  a: ${missing.thing}\n",
        "imports:\n  - nosuch\n",
    ] {
        let r = c.patch(app, bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        let diags = r.json()["diagnostics"].as_array().cloned().unwrap_or_default();
        assert!(!diags.is_empty(), "{bad}: {}", r.text);
        for d in diags {
            if let Some(range) = d.get("range") {
                assert!(range["environment"].is_string());
            }
        }
    }
    assert_eq!(head(&c, app).await.1, rev + 1);

    // A ciphertext moved into another environment does not open there.
    let stored = c.call("GET", base, None, &[]).await.text;
    let r = c.patch(app, &stored).await;
    assert_eq!(
        r.status, 400,
        "a ciphertext of another environment was accepted: {}",
        r.text
    );

    // Revisions, tags, pinned imports, retraction.
    let r = c.call("GET", &format!("{base}/versions"), None, &[]).await;
    let revs = r.json();
    assert_eq!(revs[0]["number"], 2);
    assert_eq!(revs[0]["tags"][0], "latest");
    let r = c
        .post(&format!("{base}/versions/tags"), r#"{"name":"stable","revision":2}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        c.post(&format!("{base}/versions/tags"), r#"{"name":"stable","revision":1}"#)
            .await
            .status,
        409
    );
    let r = c.patch(base, "values:\n  region: eu-north-1\n").await;
    assert_eq!(r.status, 200);
    let r = c.call("GET", &format!("{base}/versions/stable"), None, &[]).await;
    assert!(r.text.contains("us-west-2"));
    assert_eq!(r.header("pulumi-esc-revision"), "2");
    assert_eq!(
        c.call("GET", &format!("{base}/versions/99"), None, &[]).await.status,
        404
    );
    assert_eq!(
        c.call("GET", &format!("{base}/versions/nosuchtag"), None, &[])
            .await
            .status,
        404
    );
    let r = c
        .patch(app, "imports:\n  - default/base@stable\nvalues:\n  r: ${region}\n")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(props(&c.open(app).await)["r"], "us-west-2");
    let r = c
        .call(
            "PATCH",
            &format!("{base}/versions/tags/stable"),
            Some(r#"{"revision":3}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(props(&c.open(app).await)["r"], "eu-north-1");
    let r = c.call("GET", &format!("{base}/versions/tags"), None, &[]).await;
    let names: Vec<_> = r.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("latest"), json!("stable")]);
    assert!(r.json()["nextToken"].is_string());
    let r = c
        .post(&format!("{base}/versions/2/retract"), r#"{"reason":"leaked"}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = c.call("GET", &format!("{base}/versions/2"), None, &[]).await;
    assert!(
        !r.text.contains("hunter2") && !r.text.contains("ciphertext"),
        "retracted revision served: {}",
        r.text
    );
    assert_eq!(
        c.call("DELETE", &format!("{base}/versions/tags/stable"), None, &[])
            .await
            .status,
        204
    );
    assert_eq!(
        c.call("GET", &format!("{base}/versions/tags/stable"), None, &[])
            .await
            .status,
        404
    );

    // Environment tags.
    let r = c.post(&format!("{app}/tags"), r#"{"name":"team","value":"web"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for field in ["created", "modified", "editorLogin", "editorName"] {
        assert!(r.json()[field].is_string(), "{field}: {}", r.text);
    }
    let r = c
        .call(
            "PATCH",
            &format!("{app}/tags/team"),
            Some(r#"{"currentTag":{"value":"other"},"newTag":{"name":"team","value":"x"}}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 409);
    let r = c
        .call(
            "PATCH",
            &format!("{app}/tags/team"),
            Some(r#"{"currentTag":{"value":"web"},"newTag":{"name":"owner","value":"ops"}}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.call("GET", &format!("{app}/tags"), None, &[]).await;
    assert_eq!(r.json()["tags"]["owner"]["value"], "ops");
    assert!(r.json()["tags"].get("team").is_none());
    assert_eq!(
        c.call("DELETE", &format!("{app}/tags/owner"), None, &[]).await.status,
        204
    );

    // Clone: the secret is re-sealed under the new environment and still opens.
    let r = c.patch(base, "values:\n  password:\n    fn::secret: s3cret\n").await;
    assert_eq!(r.status, 200);
    let r = c
        .post(&format!("{base}/clone"), r#"{"project":"copy","name":"base2"}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let src_ct = c.call("GET", base, None, &[]).await.text;
    let clone_ct = c.call("GET", "/acme/copy/base2", None, &[]).await.text;
    assert_ne!(src_ct, clone_ct, "the clone must be re-sealed");
    assert!(!clone_ct.contains("s3cret"));
    assert_eq!(props(&c.open("/acme/copy/base2").await)["password"], "s3cret");

    // Listing, anonymous check and open.
    let r = c.call("GET", "/acme", None, &[]).await;
    let envs = r.json()["environments"].as_array().cloned().unwrap();
    assert_eq!(envs.len(), 3);
    for e in &envs {
        assert!(e["created"].is_string() && e["modified"].is_string());
    }
    let r = c.call("GET", "", None, &[]).await;
    assert_eq!(r.json()["environments"].as_array().unwrap().len(), 3);
    let r = c
        .call("POST", "/acme/yaml/check", Some("values:\n  a: ${b}\n  b: x\n"), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["properties"]["a"]["value"], "x");
    let r = c
        .call("POST", "/acme/yaml/check", Some("values:\n  a: ${nope}\n"), &[])
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post("/acme/yaml/open?duration=2h0m0s", "imports:\n  - copy/base2\n")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = c.call("GET", &format!("/acme/yaml/open/{id}"), None, &[]).await;
    assert_eq!(props(&r.json())["password"], "s3cret");
    // An anonymous session is readable by the token that opened it only (it needs no role on any environment).
    let (status, body) = s.add_member("acme", "peer", "admin").await;
    assert!(status < 300, "{body}");
    let peer = Esc {
        s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    let r = peer.call("GET", &format!("/acme/yaml/open/{id}"), None, &[]).await;
    assert_eq!(r.status, 404, "another token read an anonymous session: {}", r.text);

    // Expired sessions are refused.
    // (The app's pinned import now names a deleted tag, so it no longer opens.)
    let r = c.call("POST", &format!("{app}/open"), None, &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("stable"), "{}", r.text);
    let r = c.call("POST", &format!("{base}/open?duration=500ms"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(c.call("GET", &format!("{base}/open/{id}"), None, &[]).await.status, 200);
    clock.advance(std::time::Duration::from_millis(499));
    assert_eq!(c.call("GET", &format!("{base}/open/{id}"), None, &[]).await.status, 200);
    clock.advance(std::time::Duration::from_millis(1));
    assert_eq!(c.call("GET", &format!("{base}/open/{id}"), None, &[]).await.status, 404);
    assert_eq!(
        c.call("POST", &format!("{app}/open?duration=48h"), None, &[])
            .await
            .status,
        400
    );

    // A secret moved within the document, then the environment renamed: both keep opening (the associated data
    // names the environment's id, not its name nor the secret's path).
    let stored = c.call("GET", "/acme/copy/base2", None, &[]).await.text;
    let moved = stored.replacen("values:\n  password:", "values:\n  nested:\n    moved:", 1);
    let moved = moved.replace(
        "\n    fn::secret:\n      ciphertext:",
        "\n      fn::secret:\n        ciphertext:",
    );
    assert_ne!(moved, stored);
    let r = c.patch("/acme/copy/base2", &moved).await;
    assert_eq!(r.status, 200, "{moved}: {}", r.text);
    let r = c
        .post("/acme/copy/base2/rename", r#"{"project":"moved","name":"renamed"}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(c.call("GET", "/acme/copy/base2", None, &[]).await.status, 404);
    assert_eq!(props(&c.open("/acme/moved/renamed").await)["nested"]["moved"], "s3cret");
    let r = c
        .post("/acme/moved/renamed/rename", r#"{"project":"app","name":"dev"}"#)
        .await;
    assert_eq!(r.status, 409, "{}", r.text);

    // Delete.
    assert_eq!(c.call("DELETE", "/acme/moved/renamed", None, &[]).await.status, 200);
    assert_eq!(c.call("GET", "/acme/moved/renamed", None, &[]).await.status, 404);

    // No secret reached the audit log.
    let audit = c.call("GET", "/api/sesame/v1/orgs/acme/audit", None, &[]).await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    for secret in ["hunter2", "s3cret"] {
        assert!(!audit.text.contains(secret), "a secret reached the audit log");
    }
    for action in [
        "env.create",
        "env.update",
        "env.open",
        "env.decrypt",
        "env.clone",
        "env.delete",
    ] {
        assert!(audit.text.contains(action), "no {action} in the audit log");
    }
}

#[tokio::test]
async fn environments_on_sqlite() {
    let dir = support::temp_dir();
    let mut cfg = support::config(dir.path(), None);
    let clock = support::manual_clock(&mut cfg);
    let s = TestServer::start(cfg, None).await.unwrap();
    flow(&s, &clock).await;
    s.stop().await;
}

#[tokio::test]
async fn environments_on_postgres() {
    let Some(db) = PgDb::create().await else { return };
    let dir = support::temp_dir();
    let mut cfg = support::config(dir.path(), Some(&db.url));
    let clock = support::manual_clock(&mut cfg);
    let s = TestServer::start(cfg, None).await.unwrap();
    flow(&s, &clock).await;
    s.stop().await;
    db.drop_db().await;
}

async fn concurrent_writers(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "race", "env").await.status, 200);
    let path = "/acme/race/env";
    let (_, start) = head(&c, path).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let base = s.base.clone();
            let token = s.token.clone();
            let http = s.http.clone();
            tokio::spawn(async move {
                let url = format!("{base}{BASE}{path}");
                let auth = format!("token {token}");
                let r = http.get(&url).header("Authorization", &auth).send().await.unwrap();
                let etag = r.headers()["etag"].to_str().unwrap().to_owned();
                let r = http
                    .patch(&url)
                    .header("Authorization", &auth)
                    .header("ETag", etag)
                    .body(format!("values:\n  writer: {i}\n"))
                    .send()
                    .await
                    .unwrap();
                (i, r.status().as_u16())
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut stale = 0;
    for t in tasks {
        match t.await.unwrap() {
            (i, 200) => accepted.push(i),
            (_, 409) => stale += 1,
            (i, other) => panic!("writer {i} got {other}"),
        }
    }
    assert_eq!(accepted.len() + stale, 100);
    assert!(!accepted.is_empty());
    let (_, end) = head(&c, path).await;
    assert_eq!(
        end - start,
        accepted.len() as i64,
        "every accepted write is exactly one revision"
    );
    let mut seen = Vec::new();
    for rev in start + 1..=end {
        let text = c.call("GET", &format!("{path}/versions/{rev}"), None, &[]).await.text;
        let n: i64 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
        seen.push(n);
    }
    seen.sort();
    accepted.sort();
    assert_eq!(seen, accepted, "the revisions are exactly the accepted writes");

    // Writers without an etag (the Python SDK sends none) all land, one revision each.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (base, token, http) = (s.base.clone(), s.token.clone(), s.http.clone());
            tokio::spawn(async move {
                http.patch(format!("{base}{BASE}{path}"))
                    .header("Authorization", format!("token {token}"))
                    .header("Content-Type", "application/x-yaml")
                    .body(format!("values:\n  n: {i}\n"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(head(&c, path).await.1, end + 20);
}

support::on_both!(
    concurrent_writers,
    concurrent_patches_on_sqlite,
    concurrent_patches_on_postgres
);

#[tokio::test]
async fn listings_page_with_continuation_tokens() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let c = Esc::admin(&s);
    let total = 520;
    let creates: Vec<_> = (0..total)
        .map(|i| {
            let (base, token, http) = (s.base.clone(), s.token.clone(), s.http.clone());
            async move {
                http.post(format!("{base}{BASE}/acme"))
                    .header("Authorization", format!("token {token}"))
                    .json(&json!({"project": format!("p{}", i % 7), "name": format!("e{i:04}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .collect();
    for status in futures::future::join_all(creates).await {
        assert_eq!(status, 200);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/acme?continuationToken={t}"),
            None => "/acme".to_owned(),
        };
        let r = c.call("GET", &path, None, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        for e in body["environments"].as_array().unwrap() {
            let key = format!("{}/{}", e["project"].as_str().unwrap(), e["name"].as_str().unwrap());
            assert!(seen.insert(key.clone()), "{key} listed twice");
        }
        pages += 1;
        match body["nextToken"].as_str().filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen.len(), total);
    assert!(pages >= 2, "{total} environments fit one page; paging untested");
    assert_eq!(
        c.call("GET", "/acme?continuationToken=%%%", None, &[]).await.status,
        400
    );
    s.stop().await;
}

/// Opens reuse an evaluated result only while nothing it read has changed: an import's new revision, a moved tag,
/// a retraction and a lost right to an import all show at once.
#[tokio::test]
async fn cached_opens_follow_every_change() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let c = Esc::admin(&s);
    for (p, n) in [("lib", "base"), ("lib", "pinned"), ("app", "web")] {
        assert_eq!(c.create("acme", p, n).await.status, 200);
    }
    assert_eq!(c.patch("/acme/lib/base", "values:\n  v: one\n").await.status, 200);
    assert_eq!(c.patch("/acme/lib/pinned", "values:\n  w: a\n").await.status, 200);
    let r = c
        .post("/acme/lib/pinned/versions/tags", r#"{"name":"stable","revision":2}"#)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(c.patch("/acme/lib/pinned", "values:\n  w: b\n").await.status, 200);
    let web = "imports:\n  - lib/base\n  - lib/pinned@stable\nvalues:\n  both: ${v}-${w}\n";
    assert_eq!(c.patch("/acme/app/web", web).await.status, 200);
    let both = |env: &Value| props(env)["both"].clone();
    assert_eq!(both(&c.open("/acme/app/web").await), "one-a");
    assert_eq!(both(&c.open("/acme/app/web").await), "one-a");

    assert_eq!(c.patch("/acme/lib/base", "values:\n  v: two\n").await.status, 200);
    assert_eq!(both(&c.open("/acme/app/web").await), "two-a");
    let r = c
        .call(
            "PATCH",
            "/acme/lib/pinned/versions/tags/stable",
            Some(r#"{"revision":3}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(both(&c.open("/acme/app/web").await), "two-b");
    assert_eq!(c.patch("/acme/lib/pinned", "values:\n  w: c\n").await.status, 200);
    let r = c
        .post("/acme/lib/pinned/versions/3/retract", r#"{"replacement":2}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        both(&c.open("/acme/app/web").await),
        "two-a",
        "a retracted revision was served"
    );

    // A member who may open the app but not one of its imports: the cached result is not theirs to see.
    let (status, body) = s.add_member("acme", "dev", "none").await;
    assert!(status < 300, "{body}");
    let dev = body["token"].as_str().unwrap().to_owned();
    for (project, role) in [("app", "opener"), ("lib", "reader")] {
        let r = s
            .http
            .put(format!("{}/api/sesame/v1/orgs/acme/roles", s.base))
            .header("Authorization", format!("token {}", s.token))
            .json(&json!({"subject": "user:dev", "project": project, "role": role}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let d = Esc { s: &s, token: dev };
    let r = d.call("POST", "/acme/app/web/open", None, &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("not found") && !r.text.contains("two"), "{}", r.text);
    s.stop().await;
}

/// A document naming more imports than the evaluator accepts gets a clear error, after bounded work.
#[tokio::test]
async fn too_many_imports_are_refused() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let c = Esc::admin(&s);
    let mut doc = String::from("imports:\n");
    for i in 0..1100 {
        doc.push_str(&format!("  - p/e{i}\n"));
    }
    let r = c.call("POST", "/acme/yaml/check", Some(&doc), &[]).await;
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    assert!(
        r.text.contains("more than 1024 environments"),
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    s.stop().await;
}

/// Documents built to exhaust the evaluator — a 5,000-link chain of references, 30 levels of doubling references —
/// answer with diagnostics at once, on the server's own worker threads (2 MiB stacks), store nothing, and leave the
/// server answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_documents_answer_with_diagnostics() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let c = Esc::admin(&s);
    let mut chain = String::from("values:\n");
    for i in 0..5_000 {
        chain.push_str(&format!("  a{i}: ${{a{}}}\n", i + 1));
    }
    chain.push_str("  a5000: end\n");
    let r = c.call("POST", "/acme/yaml/check", Some(&chain), &[]).await;
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    assert!(
        r.text.contains("chain of more than"),
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    assert_eq!(r.json()["properties"]["a5000"]["value"], "end");

    let mut doubling = format!("values:\n  l0: {}\n", "x".repeat(64));
    for i in 1..=30 {
        doubling.push_str(&format!("  l{i}: [\"${{l{p}}}\", \"${{l{p}}}\"]\n", p = i - 1));
    }
    let started = std::time::Instant::now();
    let r = c.call("POST", "/acme/yaml/check", Some(&doubling), &[]).await;
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    assert!(r.text.len() <= 17 << 20, "{}", r.text.len());
    let body = r.json();
    assert_eq!(body["properties"]["l30"]["unknown"], true);
    assert!(
        body["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["summary"].as_str().unwrap().contains("too large to return")),
        "{}",
        body["diagnostics"]
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // Neither is stored nor opened.
    assert_eq!(c.create("acme", "p", "big").await.status, 200);
    let before = c.call("GET", "/acme/p/big", None, &[]).await.text;
    for doc in [&chain, &doubling] {
        let r = c.patch("/acme/p/big", doc).await;
        assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
        let r = c.call("POST", "/acme/yaml/open?duration=24h", Some(doc), &[]).await;
        assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    }
    assert_eq!(c.call("GET", "/acme/p/big", None, &[]).await.text, before);

    let r = s.http.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Every form of `fn::secret` is sealed before it is stored.

/// Scalar styles of a secret whose key sits at column `c`: `(name, is a block scalar, text)`. Every text holds
/// `marker`, which nothing else in the document does.
fn secret_styles(marker: &str, c: usize) -> Vec<(&'static str, bool, String)> {
    let i = |extra: usize| " ".repeat(c + extra);
    vec![
        ("plain", false, format!("{marker}-plain")),
        (
            "plain-multiline",
            false,
            format!("{marker} first\n{}second\n\n{}third", i(2), i(2)),
        ),
        ("single", false, format!("'{marker} it''s # not a comment'")),
        ("single-multiline", false, format!("'{marker} one\n{}two'", i(2))),
        ("double", false, format!("\"{marker} \\\"q\\\" \\t\\u00e9\"")),
        (
            "double-multiline",
            false,
            format!("\"{marker} one\n{}two\\\n{}three\\n\"", i(2), i(2)),
        ),
        ("literal", true, format!("|\n{0}{marker} line1\n{0}  line2\n", i(2))),
        ("literal-strip", true, format!("|-\n{0}{marker}\n\n{0}b\n\n", i(2))),
        (
            "literal-keep",
            true,
            format!("|+ # header comment\n{0}{marker}\n\n", i(2)),
        ),
        (
            "literal-indicator",
            true,
            format!("|2-\n{0}  {marker} indented\n{0}x\n", i(2)),
        ),
        (
            "folded",
            true,
            format!(">\n{0}{marker} folded\n{0}text\n\n{0}para\n", i(2)),
        ),
        ("folded-strip", true, format!(">-\n{0}{marker}\n{0}  more\n", i(2))),
        (
            "folded-keep-indicator",
            true,
            format!(">1+\n{0} {marker} one\n{0}two\n\n", i(1)),
        ),
        ("unicode-tab", false, format!("\"{marker}\tünï ☃\"")),
    ]
}

/// A definition with every style at four positions (under `values`, in nested maps, in a list, in a flow map),
/// and the names of the secrets' paths in document order with the markers used.
fn every_secret_form() -> (String, Vec<(String, String)>) {
    let mut doc = String::from("# every form of a secret\nvalues:\n");
    let mut markers = Vec::new();
    let count = secret_styles("m", 0).len();
    for n in 0..count {
        let m = |pos: &str| format!("zq{n}{pos}x");
        let (name, _, text) = secret_styles(&m("t"), 4).swap_remove(n);
        doc.push_str(&format!("  top{n}: # {name}\n    fn::secret: {text}\n"));
        markers.push((format!("top{n}"), m("t")));
        let (_, _, text) = secret_styles(&m("n"), 8).swap_remove(n);
        doc.push_str(&format!(
            "  nest{n}:\n    a:\n      b:\n        fn::secret: {text}\n        # after\n"
        ));
        markers.push((format!("nest{n}.a.b"), m("n")));
        let (_, _, text) = secret_styles(&m("l"), 6).swap_remove(n);
        doc.push_str(&format!("  list{n}:\n    - fn::secret: {text}\n    - 1\n"));
        markers.push((format!("list{n}[0]"), m("l")));
        let (_, block, text) = secret_styles(&m("f"), 4).swap_remove(n);
        if !block {
            doc.push_str(&format!("  flow{n}: {{fn::secret: {text}, }}\n"));
            markers.push((format!("flow{n}"), m("f")));
        }
    }
    doc.push_str("  plainValue: visible\n");
    (doc, markers)
}

/// The `fn::secret` values of a text, in document order: `(text, sealed)`.
fn secret_values(yaml: &str) -> Vec<(String, bool)> {
    use sesame::core::env::syntax::{Node, NodeKind};
    fn walk(n: &Node, out: &mut Vec<(String, bool)>) {
        match &n.kind {
            NodeKind::Map(pairs) => {
                for (k, v) in pairs {
                    if matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "fn::secret") {
                        match &v.kind {
                            NodeKind::Scalar { value, .. } => out.push((value.clone(), false)),
                            NodeKind::Map(f) => match &f[0].1.kind {
                                NodeKind::Scalar { value, .. } if f.len() == 1 => out.push((value.clone(), true)),
                                _ => panic!("not a ciphertext"),
                            },
                            _ => panic!("not a scalar"),
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            NodeKind::Seq(items) => items.iter().for_each(|i| walk(i, out)),
            NodeKind::Scalar { .. } => {}
        }
    }
    let mut out = Vec::new();
    if let Some(root) = sesame::core::env::syntax::parse(yaml).expect("YAML") {
        walk(&root, &mut out);
    }
    out
}

/// The value at a path like `a.b`, `l[0]` in plain JSON.
fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(v, |v, seg| match seg.split_once('[') {
        Some((k, i)) => &v[k][i.trim_end_matches(']').parse::<usize>().unwrap()],
        None => &v[seg],
    })
}

/// Every revision text in the store, read from the database itself.
async fn stored_texts(s: &TestServer, dir: &std::path::Path, pg: Option<&str>) -> Vec<String> {
    let _ = s;
    let url = match pg {
        Some(u) => u.to_owned(),
        None => format!("sqlite://{}", dir.join("sesame.db").display()),
    };
    support::revision_yamls(&url).await
}

/// The SQLite database's files, as bytes.
fn sqlite_bytes(dir: &std::path::Path) -> Vec<u8> {
    // The WAL first: a checkpoint that runs between the two reads (a pool still closing) moves pages from the WAL
    // into the database file, so in this order every committed page is seen in one file or the other.
    ["sesame.db-wal", "sesame.db"]
        .iter()
        .filter_map(|f| std::fs::read(dir.join(f)).ok())
        .flatten()
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn every_secret_form_is_sealed(s: &TestServer, dir: &std::path::Path, pg: Option<&str>) {
    let c = Esc::admin(s);
    let path = "/acme/forms/env";
    assert_eq!(c.create("acme", "forms", "env").await.status, 200);
    let (doc, markers) = every_secret_form();
    let expected: Vec<String> = secret_values(&doc).into_iter().map(|(v, _)| v).collect();
    assert_eq!(expected.len(), markers.len());
    let r = c.patch(path, &doc).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // What a reader sees, and what the database holds: ciphertext only.
    let stored = c.call("GET", path, None, &[]).await.text;
    assert!(stored.starts_with("# every form of a secret\nvalues:\n"));
    assert!(!sesame::core::env::crypt::has_plaintext_secret(&stored), "{stored}");
    let sealed = secret_values(&stored);
    assert_eq!(sealed.len(), markers.len());
    assert!(sealed.iter().all(|(_, s)| *s), "{stored}");
    let check_store = |texts: Vec<String>, bytes: Vec<u8>| {
        for (_, m) in &markers {
            assert!(texts.iter().all(|t| !t.contains(m.as_str())), "{m} stored in plaintext");
            assert!(!contains(&bytes, m), "{m} in the database file");
        }
    };
    check_store(stored_texts(s, dir, pg).await, sqlite_bytes(dir));

    // Opening gives back exactly the values written (trailing newlines of `|` and `|+`, folding of `>`).
    let opened = props(&c.open(path).await);
    for ((p, _), want) in markers.iter().zip(&expected) {
        assert_eq!(at(&opened, p), &json!(want), "{p}");
    }
    assert_eq!(opened["plainValue"], "visible");
    let decrypted = c.call("GET", &format!("{path}/decrypt"), None, &[]).await;
    assert_eq!(decrypted.status, 200);
    let opened_texts: Vec<String> = secret_values(&decrypted.text).into_iter().map(|(v, _)| v).collect();
    assert_eq!(opened_texts, expected);

    // A clone re-seals every one under the new environment; a rename keeps them; both open to the same values.
    let r = c
        .post(&format!("{path}/clone"), r#"{"project":"forms","name":"copy"}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = c
        .post("/acme/forms/copy/rename", r#"{"project":"forms","name":"moved"}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let copy = c.call("GET", "/acme/forms/moved", None, &[]).await.text;
    assert!(!sesame::core::env::crypt::has_plaintext_secret(&copy));
    assert_ne!(copy, stored);
    let opened = props(&c.open("/acme/forms/moved").await);
    for ((p, _), want) in markers.iter().zip(&expected) {
        assert_eq!(at(&opened, p), &json!(want), "clone {p}");
    }
    // The opened text written back (what `env edit --show-secrets` does) is sealed again.
    let r = c.patch(path, &decrypted.text).await;
    assert_eq!(r.status, 200, "{}", r.text);
    check_store(stored_texts(s, dir, pg).await, sqlite_bytes(dir));

    // A second YAML document is refused everywhere a definition is accepted, and nothing is stored.
    let (_, before) = head(&c, path).await;
    for two in [
        "values:\n  a: 1\n---\nvalues:\n  b:\n    fn::secret: zqdocx\n",
        "values:\n  a: 1\n...\n--- |\n  zqdocx\n",
    ] {
        let r = c.patch(path, two).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("single YAML document"), "{}", r.text);
        let r = c.call("POST", "/acme/yaml/check", Some(two), &[]).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("single YAML document"), "{}", r.text);
    }
    // A secret the sealer cannot rewrite safely is refused too, never stored as it is.
    let odd = "values:\n  a:\n    ? fn::secret # note: here\n    : |\n      zqoddx\n";
    let r = c.patch(path, odd).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("cannot be sealed"), "{}", r.text);
    assert!(!r.text.contains("zqoddx"), "{}", r.text);
    assert_eq!(head(&c, path).await.1, before);
    let texts = stored_texts(s, dir, pg).await;
    assert!(texts.iter().all(|t| !t.contains("zqdocx") && !t.contains("zqoddx")));
}

#[tokio::test]
async fn every_secret_form_is_sealed_on_sqlite() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    every_secret_form_is_sealed(&s, dir.path(), None).await;
    s.stop().await;
}

#[tokio::test]
async fn every_secret_form_is_sealed_on_postgres() {
    let Some(db) = PgDb::create().await else { return };
    let dir = support::temp_dir();
    let s = TestServer::start(support::config(dir.path(), Some(&db.url)), None)
        .await
        .unwrap();
    every_secret_form_is_sealed(&s, dir.path(), Some(&db.url)).await;
    s.stop().await;
    db.drop_db().await;
}

/// A store written by an earlier version, which kept block-scalar and second-document secrets in plaintext, is
/// repaired at start: sealed in place, audited once per revision, the old bytes gone from the SQLite file, and a
/// second start finds nothing to do.
async fn earlier_plaintexts_are_sealed_on_start(dir: &std::path::Path, pg: Option<&str>) {
    let s = TestServer::start(support::config(dir, pg), None).await.unwrap();
    let token = s.token.clone();
    let c = Esc::admin(&s);
    assert_eq!(c.create("acme", "old", "env").await.status, 200);
    assert_eq!(c.patch("/acme/old/env", "values:\n  a: 1\n").await.status, 200);
    s.stop().await;

    // What an earlier version stored: revision 3 with a second document, revision 4 with a block scalar.
    let url = match pg {
        Some(u) => u.to_owned(),
        None => format!("sqlite://{}", dir.join("sesame.db").display()),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let (env_id,): (String,) = sqlx::query_as("SELECT id FROM environments WHERE name = 'env'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let old = [
        (3, "values:\n  a: 1\n---\nvalues:\n  b:\n    fn::secret: zqdoc2x\n"),
        // The key spelt with an escape: found all the same.
        (
            4,
            "values:\n  esc:\n    \"fn::secr\\x65t\": >-\n      zqescx\n      two\n",
        ),
        (
            5,
            "values:\n  key:\n    fn::secret: |\n      zqoldx line1\n      line2\n  other: 2\n",
        ),
    ];
    for (rev, yaml) in old {
        sqlx::query(
            "INSERT INTO env_revisions (env_id, revision, yaml, created_ms, creator) VALUES ($1, $2, $3, 0, 'old')",
        )
        .bind(&env_id)
        .bind(rev)
        .bind(yaml)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE environments SET head = 5 WHERE id = $1")
        .bind(&env_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    if pg.is_none() {
        // The test means something: the plaintext is in the file before the repair.
        assert!(contains(&sqlite_bytes(dir), "zqoldx"));
    }

    let s = TestServer::start(support::config(dir, pg), Some(token.clone()))
        .await
        .unwrap();
    let c = Esc::admin(&s);
    let texts = stored_texts(&s, dir, pg).await;
    assert_eq!(texts.len(), 5);
    let markers = ["zqoldx", "zqdoc2x", "zqescx"];
    for t in &texts {
        assert!(markers.iter().all(|m| !t.contains(m)), "{t}");
        assert!(!sesame::core::env::crypt::has_plaintext_secret(t), "{t}");
    }
    if pg.is_none() {
        let bytes = sqlite_bytes(dir);
        for m in markers {
            assert!(!contains(&bytes, m), "{m} left in the database file");
        }
    }
    // The rest of the text is kept, and the secrets open to the same values.
    let stored = c.call("GET", "/acme/old/env", None, &[]).await.text;
    assert!(stored.starts_with("values:\n  key:\n    fn::secret:"), "{stored}");
    assert!(stored.ends_with("  other: 2\n"), "{stored}");
    assert_eq!(props(&c.open("/acme/old/env").await)["key"], "zqoldx line1\nline2\n");
    let v3 = c.call("GET", "/acme/old/env/versions/3", None, &[]).await.text;
    assert!(v3.contains("---") && v3.contains("ciphertext"), "{v3}");
    let r = c
        .call("POST", "/acme/old/env/versions/4/open?duration=1h", None, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = c.call("GET", &format!("/acme/old/env/open/{id}"), None, &[]).await;
    assert_eq!(props(&r.json())["esc"], "zqescx two", "{}", r.text);
    let audit = c.call("GET", "/api/sesame/v1/orgs/acme/audit", None, &[]).await.text;
    assert_eq!(audit.matches("env.revision.reseal").count(), 3, "{audit}");
    s.stop().await;

    // Idempotent: nothing more to seal, nothing more audited.
    let s = TestServer::start(support::config(dir, pg), Some(token)).await.unwrap();
    let c = Esc::admin(&s);
    let audit = c.call("GET", "/api/sesame/v1/orgs/acme/audit", None, &[]).await.text;
    assert_eq!(audit.matches("env.revision.reseal").count(), 3);
    s.stop().await;
}

#[tokio::test]
async fn earlier_plaintexts_are_sealed_on_start_on_sqlite() {
    let dir = support::temp_dir();
    earlier_plaintexts_are_sealed_on_start(dir.path(), None).await;
}

#[tokio::test]
async fn earlier_plaintexts_are_sealed_on_start_on_postgres() {
    let Some(db) = PgDb::create().await else { return };
    let dir = support::temp_dir();
    earlier_plaintexts_are_sealed_on_start(dir.path(), Some(&db.url)).await;
    db.drop_db().await;
}

/// `clone` refuses the reserved names `create` and `rename` refuse, with the same 400, and creates nothing.
#[tokio::test]
async fn clone_refuses_reserved_names_like_create() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let c = Esc::admin(&s);
    assert_eq!(c.create("acme", "app", "src").await.status, 200);
    let r = c
        .patch("/acme/app/src", "values:\n  password:\n    fn::secret: s3cret\n")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for reserved in ["yaml", "open"] {
        let created = c.create("acme", "app", reserved).await;
        assert_eq!(created.status, 400, "{}", created.text);
        let body = json!({"project": "app", "name": reserved}).to_string();
        for path in ["/acme/app/src/clone", "/acme/app/src/rename"] {
            let r = c
                .call("POST", path, Some(&body), &[("Content-Type", "application/json")])
                .await;
            assert_eq!(r.status, 400, "{path} to {reserved}: {}", r.text);
            assert_eq!(r.json(), created.json(), "{path} answers like create");
        }
        // With history and tags asked for too.
        let body = json!({"project": "other", "name": reserved, "preserveHistory": true, "preserveRevisionTags": true})
            .to_string();
        let r = c.call("POST", "/acme/app/src/clone", Some(&body), &[]).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("reserved environment name"), "{}", r.text);
    }
    let r = c.call("GET", "/acme", None, &[]).await;
    let names: Vec<String> = r.json()["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}/{}", e["project"].as_str().unwrap(), e["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, ["app/src"], "nothing was created");
    s.stop().await;
}

/// `?property=` reads the same path syntax the evaluator prints: keys with `]`, `"`, `\`, `.` and spaces, which the
/// server's own parser used to cut at the first `]` or read with the backslash kept.
#[tokio::test]
async fn property_paths_with_awkward_keys() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let c = Esc::admin(&s);
    let app = "/acme/app/keys";
    assert_eq!(c.create("acme", "app", "keys").await.status, 200);
    let yaml = "values:\n  \"a]b\": 1\n  'a\"b': 2\n  'a\\b': 3\n  \"x.y z\":\n    - \"\": 4\n";
    let r = c.patch(app, yaml).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.call("POST", &format!("{app}/open"), None, &[]).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    for (path, want) in [
        (r#"["a]b"]"#, 1),
        (r#"["a\"b"]"#, 2),
        (r#"["a\\b"]"#, 3),
        (r#"["x.y z"][0][""]"#, 4),
    ] {
        let query: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        let r = c
            .call("GET", &format!("{app}/open/{id}?property={query}"), None, &[])
            .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.json()["value"], want, "{path}");
    }
    let r = c
        .call("GET", &format!("{app}/open/{id}?property=%5B%22a"), None, &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("property path"), "{}", r.text);
    s.stop().await;
}
