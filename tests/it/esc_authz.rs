//! Table-driven access test: every environments endpoint × every role (none, reader, opener, editor, admin) × a
//! caller from another org. Allowed calls succeed; refused calls answer 403 when the caller can see the target and
//! 404 otherwise — with exactly the body a missing target gets, so nothing leaks — and change nothing.

use serde_json::json;

use crate::esc::{Esc, Resp};
use crate::support::{self, TestServer};

const ROLES: [&str; 5] = ["none", "reader", "opener", "editor", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).expect("role")
}

/// (method, path under the environment, body, least role).
fn endpoints() -> Vec<(&'static str, &'static str, Option<&'static str>, &'static str)> {
    vec![
        ("GET", "", None, "reader"),
        ("HEAD", "", None, "reader"),
        ("GET", "/versions", None, "reader"),
        ("GET", "/versions/1", None, "reader"),
        ("GET", "/versions/tags", None, "reader"),
        ("GET", "/versions/tags/stable", None, "reader"),
        ("GET", "/tags", None, "reader"),
        ("GET", "/tags/k", None, "reader"),
        ("POST", "/open", None, "opener"),
        ("POST", "/versions/1/open", None, "opener"),
        ("GET", "/decrypt", None, "editor"),
        ("PATCH", "", Some("values:\n  changed: true\n"), "editor"),
        ("POST", "/tags", Some(r#"{"name":"new","value":"v"}"#), "editor"),
        ("DELETE", "/tags/k", None, "editor"),
        (
            "POST",
            "/versions/tags",
            Some(r#"{"name":"other","revision":1}"#),
            "editor",
        ),
        ("PATCH", "/versions/tags/stable", Some(r#"{"revision":1}"#), "editor"),
        ("POST", "/versions/1/retract", None, "editor"),
        ("POST", "/clone", Some(r#"{"project":"p","name":"CLONE"}"#), "editor"),
        ("DELETE", "", None, "admin"),
    ]
}

/// Adds a member with an org-level role and returns their token.
async fn member(s: &TestServer, org: &str, login: &str, role: &str) -> String {
    let (status, body) = s.add_member(org, login, role).await;
    assert!(status == 200 || status == 201, "member add {login}: {status} {body}");
    body["token"].as_str().expect("a new member's first token").to_owned()
}

async fn fresh_env(admin: &Esc<'_>, name: &str) {
    assert_eq!(admin.create("acme", "p", name).await.status, 200);
    let path = format!("/acme/p/{name}");
    let r = admin
        .patch(&path, "values:\n  a: 1\n  s:\n    fn::secret: topsecret\n")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = admin
        .post(&format!("{path}/versions/tags"), r#"{"name":"stable","revision":2}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = admin.post(&format!("{path}/tags"), r#"{"name":"k","value":"v"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn same_but_names(a: &Resp, b: &Resp, from: &str, to: &str) -> bool {
    a.status == b.status && a.text.replace(from, to) == b.text
}

#[tokio::test]
async fn every_endpoint_every_role_and_a_foreign_org() {
    let dir = support::temp_dir();
    let s = TestServer::sqlite(dir.path()).await;
    let admin = Esc::admin(&s);
    let (status, body) = s.post("/api/sesame/v1/orgs", &json!({"name": "other"})).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let mut callers = Vec::new();
    for role in ROLES {
        callers.push((role, member(&s, "acme", &format!("u-{role}"), role).await));
    }
    // A member who reads another project only: in this org, but with no role on project p. Their refusals take
    // the other path (the org is visible, the environment hidden) and must look like a missing environment too.
    let elsewhere = member(&s, "acme", "u-elsewhere", "none").await;
    let r = s
        .http
        .put(format!("{}/api/sesame/v1/orgs/acme/roles", s.base))
        .header("Authorization", format!("token {}", s.token))
        .json(&json!({"subject": "user:u-elsewhere", "project": "q", "role": "reader"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    callers.push(("none", elsewhere));
    let foreign = member(&s, "other", "outsider", "admin").await;

    for (i, (method, suffix, body, least)) in endpoints().into_iter().enumerate() {
        for (j, (role, token)) in callers.iter().enumerate() {
            let name = format!("e{i}-{j}");
            fresh_env(&admin, &name).await;
            let c = Esc {
                s: &s,
                token: token.clone(),
            };
            let path = format!("/acme/p/{name}{suffix}");
            let body = body.map(|b| b.replace("CLONE", &format!("c{i}-{j}")));
            let before = admin
                .call("GET", &format!("/acme/p/{name}/versions"), None, &[])
                .await
                .text;
            let r = c.call(method, &path, body.as_deref(), &[]).await;
            let what = format!("{method} {path} as {role}");
            if rank(role) >= rank(least) {
                assert!(r.status < 300, "{what}: expected success, got {} {}", r.status, r.text);
                continue;
            }
            if rank(role) >= rank("reader") {
                assert_eq!(r.status, 403, "{what}: {}", r.text);
            } else {
                assert_eq!(r.status, 404, "{what}: {}", r.text);
                if method != "HEAD" {
                    let missing = c
                        .call(method, &format!("/acme/p/zz{name}{suffix}"), body.as_deref(), &[])
                        .await;
                    assert!(
                        same_but_names(&r, &missing, &name, &format!("zz{name}")),
                        "{what}: a hidden environment answers differently from a missing one: {} vs {}",
                        r.text,
                        missing.text
                    );
                }
            }
            assert!(!r.text.contains("topsecret"), "{what}: a secret leaked");
            let after = admin
                .call("GET", &format!("/acme/p/{name}/versions"), None, &[])
                .await
                .text;
            assert_eq!(before, after, "{what}: a refused call changed the environment");
            let tags = admin
                .call("GET", &format!("/acme/p/{name}/tags"), None, &[])
                .await
                .json();
            assert!(
                tags["tags"].get("k").is_some() && tags["tags"].get("new").is_none(),
                "{what}: tags changed"
            );
        }

        // A caller from another org: 404 with the body of an org that does not exist at all.
        let name = format!("e{i}-0");
        let c = Esc {
            s: &s,
            token: foreign.clone(),
        };
        let r = c.call(method, &format!("/acme/p/{name}{suffix}"), body, &[]).await;
        assert_eq!(r.status, 404, "{method} {suffix} from another org: {}", r.text);
        if method != "HEAD" {
            let missing = c.call(method, &format!("/nosuchorg/p/{name}{suffix}"), body, &[]).await;
            assert!(
                same_but_names(&r, &missing, "acme", "nosuchorg"),
                "another org's environment answers differently from a missing org: {} vs {}",
                r.text,
                missing.text
            );
        }
    }

    // Org-level calls: listing shows only what the caller may read; creating needs editor on the project.
    for (role, token) in &callers[..ROLES.len()] {
        let c = Esc {
            s: &s,
            token: token.clone(),
        };
        let list = c.call("GET", "/acme", None, &[]).await;
        let r = c.create("acme", "p", &format!("new-{role}")).await;
        if rank(role) >= rank("reader") {
            assert_eq!(list.status, 200, "{role}: {}", list.text);
            assert!(!list.json()["environments"].as_array().unwrap().is_empty());
        } else {
            assert_eq!(list.status, 404, "{role}: {}", list.text);
        }
        let expected = match rank(role) {
            r if r >= rank("editor") => 200,
            r if r >= rank("reader") => 403,
            _ => 404,
        };
        assert_eq!(r.status, expected, "create as {role}: {}", r.text);
    }
    let c = Esc {
        s: &s,
        token: foreign.clone(),
    };
    let r = c.call("GET", "", None, &[]).await;
    assert_eq!(r.json()["environments"].as_array().map(Vec::len), Some(0), "{}", r.text);

    // Project- and environment-level grants: the most specific wins.
    let reader = &callers[rank("reader")].1;
    let r = s
        .http
        .put(format!("{}/api/sesame/v1/orgs/acme/roles", s.base))
        .header("Authorization", format!("token {}", s.token))
        .json(&json!({"subject": "user:u-reader", "project": "p", "environment": "e0-4", "role": "editor"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let c = Esc {
        s: &s,
        token: reader.clone(),
    };
    assert_eq!(c.call("GET", "/acme/p/e0-4/decrypt", None, &[]).await.status, 200);
    assert_eq!(c.call("GET", "/acme/p/e1-4/decrypt", None, &[]).await.status, 403);

    // Every refusal is in the org's audit chain, with who, from where, and what; the other org's probes too.
    let audit = admin.call("GET", "/api/sesame/v1/orgs/acme/audit", None, &[]).await;
    assert_eq!(audit.status, 200);
    let denied: Vec<serde_json::Value> = audit
        .text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["action"] == "access.denied")
        .collect();
    for who in ["user:u-reader", "user:u-none", "user:u-elsewhere", "user:outsider"] {
        let mine: Vec<_> = denied.iter().filter(|r| r["actor"] == who).collect();
        assert!(!mine.is_empty(), "no refusal of {who} audited");
        assert!(
            mine.iter()
                .all(|r| r["source"] == "127.0.0.1" && r["outcome"] == "denied"),
            "{mine:?}"
        );
    }
    assert!(!audit.text.contains("topsecret"));
    s.stop().await;
}

/// Every page of `GET /api/esc/environments[/{org}]` from `start`, as `org/project/name`, with each page's raw
/// text and its decoded `nextToken`.
async fn list_pages(c: &Esc<'_>, scope: &str, start: Option<&str>) -> (Vec<String>, Vec<String>, Vec<String>) {
    use base64::Engine;
    let (mut names, mut texts, mut cursors) = (Vec::new(), Vec::new(), Vec::new());
    let mut token = start.map(str::to_owned);
    for _ in 0..20 {
        let path = match &token {
            Some(t) => format!("{scope}?continuationToken={t}"),
            None => scope.to_owned(),
        };
        let r = c.call("GET", &path, None, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        for e in body["environments"].as_array().expect("environments") {
            names.push(format!(
                "{}/{}/{}",
                e["organization"].as_str().unwrap(),
                e["project"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            ));
        }
        texts.push(r.text.clone());
        match body["nextToken"].as_str().filter(|t| !t.is_empty()) {
            Some(t) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                cursors.push(format!("{t} {raw}"));
                token = Some(t.to_owned());
            }
            None => return (names, texts, cursors),
        }
    }
    panic!("paging does not end");
}

/// PUTs JSON with the admin token; returns status and JSON body.
async fn put(s: &TestServer, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let resp = s
        .admin(reqwest::Method::PUT, path)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

fn cursor(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Listings show only what the caller may read, and neither a page nor its continuation token names anything
/// else: an admin of another org sees no foreign name in any body or cursor, a crafted cursor naming a foreign
/// environment answers exactly like one naming nothing, and paging through what one may see still works.
async fn listing_visibility(s: &TestServer) {
    let store = s.server.state.store.clone();
    let (status, body) = s.post("/api/sesame/v1/orgs", &json!({"name": "beta"})).await;
    assert_eq!(status, 201, "{body}");
    let orgs = store.orgs().await.unwrap();
    let org_id = |name: &str| orgs.iter().find(|o| o.name == name).unwrap().id.clone();
    let (acme, beta) = (org_id("acme"), org_id("beta"));
    let mut envs: Vec<(String, String, String)> = (0..520)
        .map(|i| (acme.clone(), "closed".to_owned(), format!("e{i:04}")))
        .collect();
    for (org, p, n) in [
        (&acme, "open", "a"),
        (&acme, "open", "hidden"),
        (&acme, "closed", "peek"),
        (&beta, "mine", "x1"),
        (&beta, "mine", "x2"),
    ] {
        envs.push((org.clone(), p.to_owned(), n.to_owned()));
    }
    for (org, project, name) in &envs {
        let record = sesame::store::envs::EnvRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            project: project.clone(),
            name: name.clone(),
            head: 1,
            created_ms: 1,
            modified_ms: 1,
        };
        let event = sesame::core::audit::AuditEvent::new(
            org.clone(),
            1,
            "test",
            "internal",
            sesame::core::audit::AuditAction::EnvCreate,
            name.clone(),
        );
        store.create_env(&record, "values: {}\n", "test", &event).await.unwrap();
    }

    // An admin of beta: every page and every cursor of the all-orgs listing is free of acme.
    let mallory = member(s, "beta", "mallory", "admin").await;
    let m = Esc { s, token: mallory };
    let (names, texts, cursors) = list_pages(&m, "", None).await;
    assert_eq!(names, ["beta/mine/x1", "beta/mine/x2"]);
    for text in texts.iter().chain(&cursors) {
        assert!(!text.contains("acme") && !text.contains("closed"), "{text}");
    }
    // Crafted cursors: one naming a foreign environment that exists answers exactly like one naming nothing.
    let baseline = list_pages(&m, "", Some(&cursor("acme/closed/e0100"))).await;
    assert_eq!(baseline.0, ["beta/mine/x1", "beta/mine/x2"]);
    for crafted in [
        "acme/closed/e0100x",
        "acme/closed/",
        "acme/open/a",
        "a/b/c",
        "acme/closed/e0519",
    ] {
        assert_eq!(list_pages(&m, "", Some(&cursor(crafted))).await, baseline, "{crafted}");
    }
    let (names, texts, _) = list_pages(&m, "", Some(&cursor("beta/mine/x1"))).await;
    assert_eq!(names, ["beta/mine/x2"], "a cursor is a lower bound over visible rows");
    assert!(!texts.concat().contains("acme"));
    let (names, _, _) = list_pages(&m, "", Some(&cursor("zzz/a/b"))).await;
    assert!(names.is_empty());
    // The org-scoped listing of acme is a 404 for mallory, as before.
    assert_eq!(m.call("GET", "/acme", None, &[]).await.status, 404);

    // carol: none on acme, reader on project open but none on open/hidden, reader on closed/peek only.
    let carol = member(s, "acme", "carol", "none").await;
    for (project, env, role) in [
        ("open", "", "reader"),
        ("open", "hidden", "none"),
        ("closed", "peek", "reader"),
    ] {
        let (status, body) = put(
            s,
            "/api/sesame/v1/orgs/acme/roles",
            &json!({"subject": "user:carol", "project": project, "environment": env, "role": role}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let c = Esc { s, token: carol };
    let want = ["acme/closed/peek", "acme/open/a"];
    for scope in ["", "/acme"] {
        let (names, texts, cursors) = list_pages(&c, scope, None).await;
        assert_eq!(names, want, "{scope}");
        assert!(cursors.is_empty(), "{cursors:?}");
        assert!(!texts.concat().contains("e0"), "{texts:?}");
        for crafted in ["acme/closed/e0000", "acme/open/", "beta/mine/x1"] {
            let (names, texts, cursors) = list_pages(&c, scope, Some(&cursor(crafted))).await;
            assert!(names.iter().all(|n| want.contains(&n.as_str())), "{names:?}");
            assert!(!texts.concat().contains("beta") && cursors.is_empty(), "{texts:?}");
        }
    }

    // Readable at project level, the 520 environments of closed page through with carol's continuation tokens,
    // which name only what she was shown; open/hidden stays hidden.
    let (status, _) = put(
        s,
        "/api/sesame/v1/orgs/acme/roles",
        &json!({"subject": "user:carol", "project": "closed", "role": "reader"}),
    )
    .await;
    assert_eq!(status, 200);
    let (names, _, cursors) = list_pages(&c, "", None).await;
    assert_eq!(names.len(), 522, "520 + closed/peek + open/a");
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "listed twice");
    assert!(!names.iter().any(|n| n.contains("hidden") || n.starts_with("beta")));
    assert!(!cursors.is_empty());
    for cur in &cursors {
        let named = cur.split_once(' ').unwrap().1;
        assert!(names.iter().any(|n| n == named), "{named} was not shown");
    }

    // A team token sees what its team's grants allow, in its org only.
    let (status, _) = s.post("/api/sesame/v1/orgs/acme/teams", &json!({"name": "ops"})).await;
    assert_eq!(status, 201);
    let (status, _) = put(
        s,
        "/api/sesame/v1/orgs/acme/roles",
        &json!({"subject": "team:ops", "project": "open", "environment": "hidden", "role": "reader"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .post(
            "/api/sesame/v1/tokens",
            &json!({"kind": "team", "org": "acme", "team": "ops"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let t = Esc {
        s,
        token: body["token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(list_pages(&t, "", None).await.0, ["acme/open/hidden"]);
    // The instance administrator sees everything, in pages.
    let (names, _, _) = list_pages(&Esc::admin(s), "", None).await;
    assert_eq!(names.len(), envs.len());
}

support::on_both!(
    listing_visibility,
    listings_leak_no_names,
    listings_leak_no_names_on_postgres
);
