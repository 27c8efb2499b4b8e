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

async fn flow(s: &TestServer) {
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
        .call(
            "POST",
            &format!("{base}/versions/tags"),
            Some(r#"{"name":"stable","revision":2}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        c.call(
            "POST",
            &format!("{base}/versions/tags"),
            Some(r#"{"name":"stable","revision":1}"#),
            &[]
        )
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
        .call(
            "POST",
            &format!("{base}/versions/2/retract"),
            Some(r#"{"reason":"leaked"}"#),
            &[],
        )
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
    let r = c
        .call(
            "POST",
            &format!("{app}/tags"),
            Some(r#"{"name":"team","value":"web"}"#),
            &[],
        )
        .await;
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
        .call(
            "POST",
            &format!("{base}/clone"),
            Some(r#"{"project":"copy","name":"base2"}"#),
            &[],
        )
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
        .call(
            "POST",
            "/acme/yaml/open?duration=2h0m0s",
            Some("imports:\n  - copy/base2\n"),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = c.call("GET", &format!("/acme/yaml/open/{id}"), None, &[]).await;
    assert_eq!(props(&r.json())["password"], "s3cret");
    // An anonymous session is readable by the token that opened it only (it needs no role on any environment).
    let (status, body) = s
        .post(
            "/api/sesame/v1/orgs/acme/members",
            &json!({"login": "peer", "role": "admin"}),
        )
        .await;
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
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
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
        .call(
            "POST",
            "/acme/copy/base2/rename",
            Some(r#"{"project":"moved","name":"renamed"}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(c.call("GET", "/acme/copy/base2", None, &[]).await.status, 404);
    assert_eq!(props(&c.open("/acme/moved/renamed").await)["nested"]["moved"], "s3cret");
    let r = c
        .call(
            "POST",
            "/acme/moved/renamed/rename",
            Some(r#"{"project":"app","name":"dev"}"#),
            &[],
        )
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
    let s = TestServer::start(support::config(dir.path(), None), None)
        .await
        .unwrap();
    flow(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn environments_on_postgres() {
    let Some(db) = PgDb::create().await else { return };
    let dir = support::temp_dir();
    let s = TestServer::start(support::config(dir.path(), Some(&db.url)), None)
        .await
        .unwrap();
    flow(&s).await;
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

#[tokio::test]
async fn concurrent_patches_on_sqlite() {
    let dir = support::temp_dir();
    let s = TestServer::start(support::config(dir.path(), None), None)
        .await
        .unwrap();
    concurrent_writers(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn concurrent_patches_on_postgres() {
    let Some(db) = PgDb::create().await else { return };
    let dir = support::temp_dir();
    let s = TestServer::start(support::config(dir.path(), Some(&db.url)), None)
        .await
        .unwrap();
    concurrent_writers(&s).await;
    s.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn listings_page_with_continuation_tokens() {
    let dir = support::temp_dir();
    let s = TestServer::start(support::config(dir.path(), None), None)
        .await
        .unwrap();
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
    let s = TestServer::start(support::config(dir.path(), None), None)
        .await
        .unwrap();
    let c = Esc::admin(&s);
    for (p, n) in [("lib", "base"), ("lib", "pinned"), ("app", "web")] {
        assert_eq!(c.create("acme", p, n).await.status, 200);
    }
    assert_eq!(c.patch("/acme/lib/base", "values:\n  v: one\n").await.status, 200);
    assert_eq!(c.patch("/acme/lib/pinned", "values:\n  w: a\n").await.status, 200);
    let r = c
        .call(
            "POST",
            "/acme/lib/pinned/versions/tags",
            Some(r#"{"name":"stable","revision":2}"#),
            &[],
        )
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
        .call(
            "POST",
            "/acme/lib/pinned/versions/3/retract",
            Some(r#"{"replacement":2}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        both(&c.open("/acme/app/web").await),
        "two-a",
        "a retracted revision was served"
    );

    // A member who may open the app but not one of its imports: the cached result is not theirs to see.
    let (status, body) = s
        .post(
            "/api/sesame/v1/orgs/acme/members",
            &json!({"login": "dev", "role": "none"}),
        )
        .await;
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
    let s = TestServer::start(support::config(dir.path(), None), None)
        .await
        .unwrap();
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

/// `clone` refuses the reserved names `create` and `rename` refuse, with the same 400, and creates nothing.
#[tokio::test]
async fn clone_refuses_reserved_names_like_create() {
    let dir = support::temp_dir();
    let s = TestServer::start(support::config(dir.path(), None), None)
        .await
        .unwrap();
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
