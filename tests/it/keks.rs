//! Bring your own key: registering org KEKs through the admin API, new DEKs going to the org's default KEK, and
//! start-up refusing when a registered KEK cannot be opened.

use serde_json::{Value, json};

use crate::support::{TestServer, config, temp_dir};

async fn get(srv: &TestServer, path: &str) -> (u16, Value) {
    srv.get_json(path).await
}

#[tokio::test]
async fn an_org_kek_wraps_the_orgs_new_deks_and_must_be_present_at_start() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let (_, before) = srv
        .post("/api/stacks/acme/web/old/encrypt", &json!({"plaintext": "b2xk"}))
        .await;

    // Register an org KEK as the org's default: the key file is created, the KEK proven, then registered.
    let (status, kek) = srv
        .post(
            "/api/sesame/v1/keks",
            &json!({"uri": "local://acme-own", "org": "acme", "default": true}),
        )
        .await;
    assert_eq!(status, 201, "{kek}");
    assert_eq!(
        (kek["org"].as_str(), kek["default"].as_bool()),
        (Some("acme"), Some(true))
    );
    assert!(dir.path().join("kek-acme-own.key").exists());
    let kek_id = kek["id"].as_str().unwrap().to_owned();

    // Registering it twice, a malformed URI, a URI with a PIN, an unknown org: clear 4xx, nothing registered.
    for (body, want) in [
        (json!({"uri": "local://acme-own", "org": "acme"}), 409),
        (json!({"uri": "nope://x"}), 400),
        (json!({"uri": "pkcs11:token=t;object=k?pin-value=9876"}), 400),
        (json!({"uri": "local://x", "org": "nobody"}), 404),
    ] {
        let (status, v) = srv.post("/api/sesame/v1/keks", &body).await;
        assert_eq!(
            (status, v["code"].as_u64()),
            (want, Some(u64::from(want))),
            "{body} -> {v}"
        );
        assert!(!v.to_string().contains("9876"), "a PIN must never be echoed: {v}");
    }
    let (_, list) = get(&srv, "/api/sesame/v1/keks").await;
    assert_eq!(list["keks"].as_array().unwrap().len(), 2, "{list}");
    let (_, org_list) = get(&srv, "/api/sesame/v1/keks?org=acme").await;
    assert_eq!(org_list["keks"][0]["id"], json!(kek_id));

    // A new stack's DEK is wrapped by the org KEK; the older stack keeps its system-KEK DEK and still decrypts.
    let (status, _) = srv
        .post("/api/stacks/acme/web/new/encrypt", &json!({"plaintext": "bmV3"}))
        .await;
    assert_eq!(status, 200);
    let store = srv.server.state.store.clone();
    let org = store.org_by_name("acme").await.unwrap().unwrap();
    let new_dek = store
        .current_dek(&format!("stack:{}:web/new", org.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new_dek.wraps[0].kek_id, kek_id);
    let old_dek = store
        .current_dek(&format!("stack:{}:web/old", org.id))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(old_dek.wraps[0].kek_id, kek_id);
    let (status, v) = srv
        .post(
            "/api/stacks/acme/web/old/decrypt",
            &json!({"ciphertext": before["ciphertext"]}),
        )
        .await;
    assert_eq!((status, v["plaintext"].as_str()), (200, Some("b2xk")));

    // The default cannot be disabled; a non-default can, and then cannot become default.
    let (status, _) = srv
        .post(&format!("/api/sesame/v1/keks/{kek_id}/disable"), &json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, second) = srv
        .post(
            "/api/sesame/v1/keks",
            &json!({"uri": "local://acme-two", "org": "acme"}),
        )
        .await;
    assert_eq!(status, 201);
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (status, v) = srv
        .post(&format!("/api/sesame/v1/keks/{second_id}/disable"), &json!({}))
        .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("disabled")));
    let (status, _) = srv
        .post(&format!("/api/sesame/v1/keks/{second_id}/default"), &json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = srv.post("/api/sesame/v1/keks/no-such-id/default", &json!({})).await;
    assert_eq!(status, 404);

    // Only authenticated callers get anywhere.
    let (status, _) = srv
        .post_as("/api/sesame/v1/keks", &json!({"uri": "local://z"}), None)
        .await;
    assert_eq!(status, 401);

    let token = srv.token.clone();
    srv.stop().await;

    // Restart: every registered KEK is opened again, and the org's secrets decrypt.
    let srv = TestServer::start(config(dir.path(), None), Some(token.clone()))
        .await
        .unwrap();
    let (status, _) = srv
        .post("/api/stacks/acme/web/new/encrypt", &json!({"plaintext": "eA=="}))
        .await;
    assert_eq!(status, 200);
    srv.stop().await;

    // Without the org's key file, the start is refused and names that KEK (no silent fallback).
    std::fs::remove_file(dir.path().join("kek-acme-own.key")).unwrap();
    let err = TestServer::start(config(dir.path(), None), Some(token))
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("local://acme-own"), "{err}");
    assert!(!dir.path().join("kek-acme-own.key").exists());
}

/// A TCP listener on loopback counting the connections it gets (closing each at once).
async fn counting_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    (origin, count)
}

/// KEK registration reaches only what the operator allowed at start-up: a PKCS#11 module, a PIN file or a KMS
/// endpoint outside the allow-lists is refused with 400, naming the flag, before anything is loaded, read or
/// contacted; and a KEK already registered that reaches outside them stops the next start.
#[tokio::test]
async fn kek_uris_reach_only_what_the_operator_allowed() {
    let dir = temp_dir();
    let secrets = temp_dir();
    let pin_file = secrets.path().join("pin");
    std::fs::write(&pin_file, "PIN-CONTENTS-4711\n").unwrap();
    let allowed_module = secrets.path().join("allowed-module.so");
    let (endpoint, connections) = counting_listener().await;
    let (allowed_endpoint, allowed_connections) = counting_listener().await;
    let mut cfg = config(dir.path(), None);
    cfg.instance.kek_allow.pkcs11_modules = vec![allowed_module.clone()];
    cfg.instance.kek_allow.pkcs11_pin_files = vec![pin_file.clone()];
    cfg.instance.kek_allow.endpoints = vec![format!("{allowed_endpoint}/")];
    let srv = TestServer::start(cfg, None).await.unwrap();
    let other_pin = secrets.path().join("other-pin");
    std::fs::write(&other_pin, "OTHER-PIN-0815\n").unwrap();
    let gcp = "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k";
    for (uri, flag) in [
        (
            "pkcs11:token=t;object=k?module-path=/tmp/sesame-no-such-module.so".to_owned(),
            "--pkcs11-module",
        ),
        (
            format!(
                "pkcs11:token=t;object=k?module-path={}/../allowed-module.so",
                secrets.path().join("x").display()
            ),
            "--pkcs11-module",
        ),
        (
            format!(
                "pkcs11:token=t;object=k?module-path={}&pin-source=file:{}",
                allowed_module.display(),
                other_pin.display()
            ),
            "--pkcs11-pin-file",
        ),
        (
            format!(
                "pkcs11:token=t;object=k?module-path={}&pin-source=file:/etc/shadow",
                allowed_module.display()
            ),
            "--pkcs11-pin-file",
        ),
        (
            format!("awskms://alias/k?region=eu-west-1&endpoint={endpoint}"),
            "--kms-endpoint",
        ),
        (format!("{gcp}?endpoint={endpoint}"), "--kms-endpoint"),
        (
            format!("{gcp}?endpoint=https://metadata.evil.example"),
            "--kms-endpoint",
        ),
        (
            "azurekeyvault://attacker.vault.azure.net/keys/k".to_owned(),
            "--kms-endpoint",
        ),
    ] {
        let (status, v) = srv.post("/api/sesame/v1/keks", &json!({ "uri": uri })).await;
        assert_eq!((status, v["code"].as_u64()), (400, Some(400)), "{uri} -> {v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(flag), "{uri} -> {v}");
        assert!(
            !message.contains("PIN-") && !message.contains("root:"),
            "file contents echoed: {v}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused endpoint was contacted"
    );
    let (_, list) = get(&srv, "/api/sesame/v1/keks").await;
    assert_eq!(list["keks"].as_array().unwrap().len(), 1, "nothing registered: {list}");

    // What is allowed gets through the check to the adapter: the allowed module is tried (it is no library here),
    // the allowed endpoint is contacted (it is no KMS).
    let uri = format!(
        "pkcs11:token=t;object=k?module-path={}&pin-source=file:{}",
        allowed_module.display(),
        pin_file.display()
    );
    let (status, v) = srv.post("/api/sesame/v1/keks", &json!({ "uri": uri })).await;
    let message = v["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        status >= 400 && !message.contains("not allowed") && !message.contains("PIN-CONTENTS"),
        "{status} {v}"
    );
    if cfg!(feature = "pkcs11") {
        assert!(message.contains("could not be loaded"), "{v}");
    }
    if cfg!(feature = "aws") {
        #[allow(unsafe_code)]
        // SAFETY (invariant): set before this test's first SDK client reads them; every test that reads them sets
        // the same values.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        }
        let uri = format!("awskms://alias/k?region=eu-west-1&endpoint={allowed_endpoint}");
        let (status, v) = srv.post("/api/sesame/v1/keks", &json!({ "uri": uri })).await;
        assert!(status >= 400 && !v.to_string().contains("not allowed"), "{status} {v}");
        assert!(allowed_connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
    }

    // A registered KEK reaching a module this start does not allow stops the start, before it is opened.
    let store = srv.server.state.store.clone();
    let inserted = store
        .insert_kek(
            &sesame::store::KekRecord {
                id: uuid::Uuid::now_v7().to_string(),
                org_id: None,
                uri: "pkcs11:token=t;object=old?module-path=/tmp/sesame-registered-earlier.so".into(),
                state: sesame::store::KekState::Active,
                is_default: false,
                created_ms: 1,
            },
            &crate::support::test_event(sesame::core::audit::AuditAction::KekAdd),
        )
        .await
        .unwrap();
    assert_eq!(inserted, sesame::store::Inserted::New);
    let token = srv.token.clone();
    srv.stop().await;
    let err = TestServer::start(config(dir.path(), None), Some(token))
        .await
        .err()
        .expect("must refuse");
    let err = err.to_string();
    assert!(
        err.contains("sesame-registered-earlier.so") && err.contains("--pkcs11-module"),
        "{err}"
    );
}

/// Sends `method path` with `token` (and a JSON body); returns the status and the body as JSON (`null` if empty).
async fn call(srv: &TestServer, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = srv
        .http
        .request(method.parse().unwrap(), format!("{}{path}", srv.base))
        .header("Authorization", format!("token {token}"));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Adds `login` to `org` with an org-level `role` (as the instance administrator); returns the new user's token.
async fn member(srv: &TestServer, org: &str, login: &str, role: &str) -> String {
    let (status, body) = srv.add_member(org, login, role).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Registers a KEK as the instance administrator; returns its id.
async fn kek(srv: &TestServer, uri: &str, org: Option<&str>) -> String {
    let (status, v) = srv.post("/api/sesame/v1/keks", &json!({"uri": uri, "org": org})).await;
    assert_eq!(status, 201, "{uri}: {v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Waits until the migration `id` is no longer running (the job runs in the background).
async fn settled(srv: &TestServer, id: &str) {
    for _ in 0..400 {
        let m = srv.server.state.store.migration(id).await.unwrap().unwrap();
        if m.state != sesame::store::MigrationState::Running {
            assert_eq!(m.state, sesame::store::MigrationState::Done, "{}", m.error);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("migration {id} still running");
}

/// The audit records of a chain, as JSON.
async fn chain(srv: &TestServer, path: &str) -> Vec<Value> {
    let (_, text) = srv.get_text(path).await;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r.get("action").is_some())
        .collect()
}

/// Everything the instance administrator sees of KEKs and migrations, to show a refused call changed nothing.
async fn everything(srv: &TestServer) -> (Value, Value) {
    let (_, keks) = get(srv, "/api/sesame/v1/keks").await;
    let (_, jobs) = get(srv, "/api/sesame/v1/kek-migrations").await;
    (keks, jobs)
}

/// Org admins run their own org's KEKs and migrations under `/api/sesame/v1/orgs/{org}/…`: every endpoint × every
/// org role, a caller from another org, and the instance administrator. Below admin, a caller who sees the org is
/// refused 403, one who does not gets the 404 of a missing org; refusals change nothing and are audited on the org's
/// chain. An org admin cannot reach another org's KEKs or jobs, nor the instance's KEKs or instance-wide routes
/// (404 exactly like a missing one, or 403 on the instance routes), and moves only the org's DEKs.
async fn org_admins_run_their_own_keys(srv: &TestServer) {
    let v1 = "/api/sesame/v1";
    let (status, body) = srv.post(&format!("{v1}/orgs"), &json!({"name": "other"})).await;
    assert_eq!(status, 201, "{body}");
    for (org, stack) in [("acme", "web/a"), ("acme", "web/b"), ("other", "web/o")] {
        let (status, _) = srv
            .post(
                &format!("/api/stacks/{org}/{stack}/encrypt"),
                &json!({"plaintext": "eA=="}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let store = srv.server.state.store.clone();
    let acme = store.org_by_name("acme").await.unwrap().unwrap();
    let other = store.org_by_name("other").await.unwrap().unwrap();
    let system = store.default_kek(None).await.unwrap().unwrap().id;
    let system_two = kek(srv, "local://system-two", None).await;
    let other_kek = kek(srv, "local://other-own", Some("other")).await;
    let acme_own = kek(srv, "local://acme-own", Some("acme")).await;
    let acme_spare = kek(srv, "local://acme-spare", Some("acme")).await;
    let (status, v) = srv
        .post(
            &format!("{v1}/kek-migrations"),
            &json!({"from": "local://default", "to": "local://other-own", "org": "other"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let other_job = v["id"].as_str().unwrap().to_owned();
    settled(srv, &other_job).await;

    let mut callers = Vec::new();
    for role in ["none", "reader", "opener", "editor", "admin"] {
        callers.push((role, member(srv, "acme", &format!("k-{role}"), role).await));
    }
    let admin = callers.last().unwrap().1.clone();
    let outsider = member(srv, "other", "k-outsider", "admin").await;

    // The table: (method, path under /orgs/acme, body, what the org's admin gets). Rows run in order; each row's
    // refused callers come first, then the admin, so a row can rely on the rows before it.
    let mut acme_job = String::new();
    let rows: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("GET", "/keks".into(), None, 200),
        ("POST", "/keks".into(), Some(json!({"uri": "local://acme-new"})), 201),
        ("POST", format!("/keks/{acme_own}/default"), None, 200),
        ("POST", format!("/keks/{acme_spare}/disable"), None, 200),
        (
            "POST",
            "/kek-migrations".into(),
            Some(json!({"from": "local://default", "to": "local://acme-own"})),
            202,
        ),
        ("GET", "/kek-migrations".into(), None, 200),
        ("GET", "/kek-migrations/JOB".into(), None, 200),
        ("POST", "/kek-migrations/JOB/pause".into(), None, 409),
        ("POST", "/kek-migrations/JOB/resume".into(), None, 409),
        ("POST", "/kek-migrations/JOB/verify".into(), None, 200),
        ("POST", "/kek-migrations/JOB/retire".into(), None, 200),
    ];
    for (method, suffix, body, admin_gets) in &rows {
        let suffix = suffix.replace("JOB", &acme_job);
        let path = format!("{v1}/orgs/acme{suffix}");
        for (role, token) in &callers[..4] {
            let before = everything(srv).await;
            let (status, v) = call(srv, method, &path, token, body.as_ref()).await;
            let what = format!("{method} {path} as {role}");
            if *role == "none" {
                let (_, missing) = call(
                    srv,
                    method,
                    &format!("{v1}/orgs/nosuchorg{suffix}"),
                    token,
                    body.as_ref(),
                )
                .await;
                assert_eq!(status, 404, "{what}: {v}");
                assert_eq!(
                    v.to_string().replace("acme", "nosuchorg"),
                    missing.to_string(),
                    "{what}"
                );
            } else {
                assert_eq!(status, 403, "{what}: {v}");
            }
            assert_eq!(
                everything(srv).await,
                before,
                "{what}: a refused call changed something"
            );
        }
        // A caller from another org: the 404 of an org that does not exist.
        let (status, v) = call(srv, method, &path, &outsider, body.as_ref()).await;
        let (_, missing) = call(
            srv,
            method,
            &format!("{v1}/orgs/nosuchorg{suffix}"),
            &outsider,
            body.as_ref(),
        )
        .await;
        assert_eq!(status, 404, "{method} {path} from another org: {v}");
        assert_eq!(v.to_string().replace("acme", "nosuchorg"), missing.to_string());

        let (status, v) = call(srv, method, &path, &admin, body.as_ref()).await;
        assert_eq!(status, *admin_gets, "{method} {path} as the org's admin: {v}");
        if suffix == "/kek-migrations" && *method == "POST" {
            let id = v["id"].as_str().unwrap().to_owned();
            assert_eq!(v["orgId"], json!(acme.id), "{v}");
            settled(srv, &id).await;
            acme_job = id;
        }
    }

    // The org's admin sees only the org's KEKs and jobs: not the instance's, not the other org's.
    let (_, list) = call(srv, "GET", &format!("{v1}/orgs/acme/keks"), &admin, None).await;
    let ids = crate::support::each_str(&list["keks"], "id");
    assert_eq!(ids.len(), 3, "{list}");
    assert!(ids.contains(&acme_own.as_str()) && ids.contains(&acme_spare.as_str()));
    assert!(
        list["keks"].as_array().unwrap().iter().all(|k| k["org"] == "acme"),
        "{list}"
    );
    let (_, jobs) = call(srv, "GET", &format!("{v1}/orgs/acme/kek-migrations"), &admin, None).await;
    let jobs: Vec<&str> = jobs["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, [acme_job.as_str()]);

    // Another org's KEK or job, or the instance's KEK: exactly like one that does not exist.
    for id in [other_kek.as_str(), system.as_str(), system_two.as_str()] {
        for step in ["default", "disable"] {
            let (status, v) = call(srv, "POST", &format!("{v1}/orgs/acme/keks/{id}/{step}"), &admin, None).await;
            let (_, missing) = call(
                srv,
                "POST",
                &format!("{v1}/orgs/acme/keks/nosuchkek/{step}"),
                &admin,
                None,
            )
            .await;
            assert_eq!(status, 404, "{step} {id}: {v}");
            assert_eq!(v.to_string().replace(id, "nosuchkek"), missing.to_string());
        }
    }
    for step in ["", "/pause", "/resume", "/verify", "/retire"] {
        let method = if step.is_empty() { "GET" } else { "POST" };
        let (status, v) = call(
            srv,
            method,
            &format!("{v1}/orgs/acme/kek-migrations/{other_job}{step}"),
            &admin,
            None,
        )
        .await;
        let (_, missing) = call(
            srv,
            method,
            &format!("{v1}/orgs/acme/kek-migrations/nosuchjob{step}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 404, "{step}: {v}");
        assert_eq!(v.to_string().replace(&other_job, "nosuchjob"), missing.to_string());
    }
    // Another org's routes: the 404 of a missing org. Another org's KEK as a migration's end: like a missing KEK.
    let (status, v) = call(srv, "GET", &format!("{v1}/orgs/other/keks"), &admin, None).await;
    let (_, missing) = call(srv, "GET", &format!("{v1}/orgs/nosuchorg/keks"), &admin, None).await;
    assert_eq!(status, 404);
    assert_eq!(v.to_string().replace("other", "nosuchorg"), missing.to_string());
    let start = |from: &str, to: &str| json!({"from": from, "to": to});
    let (status, v) = call(
        srv,
        "POST",
        &format!("{v1}/orgs/acme/kek-migrations"),
        &admin,
        Some(&start("local://other-own", "local://acme-own")),
    )
    .await;
    let (_, missing) = call(
        srv,
        "POST",
        &format!("{v1}/orgs/acme/kek-migrations"),
        &admin,
        Some(&start("local://nosuchkek", "local://acme-own")),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v.to_string().replace("other-own", "nosuchkek"), missing.to_string());
    // Between two of the instance's KEKs, or for another org named in the body: refused.
    for body in [
        start("local://default", "local://system-two"),
        json!({"from": "local://default", "to": "local://acme-own", "org": "other"}),
    ] {
        let (status, v) = call(
            srv,
            "POST",
            &format!("{v1}/orgs/acme/kek-migrations"),
            &admin,
            Some(&body),
        )
        .await;
        assert_eq!(status, 400, "{body}: {v}");
    }
    let (status, v) = call(
        srv,
        "POST",
        &format!("{v1}/orgs/acme/keks"),
        &admin,
        Some(&json!({"uri": "local://x", "org": "other"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // The operator's allow-list holds for an org's admin too, and the refusal is on the org's chain.
    let (status, v) = call(
        srv,
        "POST",
        &format!("{v1}/orgs/acme/keks"),
        &admin,
        Some(&json!({"uri": "pkcs11:token=t;object=k?module-path=/tmp/sesame-org-module.so"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("--pkcs11-module"), "{v}");
    // The instance-wide routes stay the instance administrator's.
    for (method, path, body) in [
        ("GET", format!("{v1}/keks"), None),
        (
            "POST",
            format!("{v1}/keks"),
            Some(json!({"uri": "local://y", "org": "acme"})),
        ),
        ("POST", format!("{v1}/keks/{system}/disable"), None),
        ("POST", format!("{v1}/keks/{acme_spare}/default"), None),
        ("GET", format!("{v1}/kek-migrations"), None),
        ("GET", format!("{v1}/kek-migrations/{acme_job}"), None),
        (
            "POST",
            format!("{v1}/kek-migrations"),
            Some(start("local://default", "local://system-two")),
        ),
        ("POST", format!("{v1}/kek-migrations/{acme_job}/verify"), None),
    ] {
        let (status, v) = call(srv, method, &path, &admin, body.as_ref()).await;
        assert_eq!(status, 403, "{method} {path}: {v}");
    }

    // The migration moved acme's DEKs only (the other org's keep their wraps), and acme's secrets still open
    // after the retire.
    for (org, stack, mut want) in [
        (&acme.id, "web/a", vec![acme_own.as_str()]),
        (&acme.id, "web/b", vec![acme_own.as_str()]),
        (&other.id, "web/o", vec![system.as_str(), other_kek.as_str()]),
    ] {
        let dek = store
            .current_dek(&format!("stack:{org}:{stack}"))
            .await
            .unwrap()
            .unwrap();
        let mut wraps: Vec<&str> = dek.wraps.iter().map(|w| w.kek_id.as_str()).collect();
        wraps.sort_unstable();
        want.sort_unstable();
        assert_eq!(wraps, want, "{stack}");
    }
    let (status, v) = srv
        .post("/api/stacks/acme/web/a/encrypt", &json!({"plaintext": "eA=="}))
        .await;
    assert_eq!(status, 200);
    let (status, v) = srv
        .post(
            "/api/stacks/acme/web/a/decrypt",
            &json!({"ciphertext": v["ciphertext"]}),
        )
        .await;
    assert_eq!((status, v["plaintext"].as_str()), (200, Some("eA==")));

    // The instance administrator still runs everything, the org's routes included.
    let (status, list) = get(srv, &format!("{v1}/orgs/acme/keks")).await;
    assert_eq!(
        (status, list["keks"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{list}"
    );
    let (status, v) = srv.post(&format!("{v1}/keks/{acme_spare}/default"), &json!({})).await;
    assert_eq!(status, 409, "disabled: {v}");
    let (status, v) = srv.post(&format!("{v1}/keks/{system_two}/default"), &json!({})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = get(srv, &format!("{v1}/kek-migrations/{acme_job}")).await;
    assert_eq!((status, v["state"].as_str()), (200, Some("retired")), "{v}");

    // Every step is on acme's chain, by its admin; the refusals too. None of it is on the instance's or other's.
    let records = chain(srv, &format!("{v1}/orgs/acme/audit")).await;
    for action in [
        "kek.add",
        "kek.default",
        "kek.disable",
        "kek.migration.requested",
        "kek.migration.verify-requested",
        "kek.migration.retire-requested",
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["action"] == action && r["actor"] == "user:k-admin" && r["outcome"] == "ok"),
            "{action} by the org's admin is not on acme's chain"
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "kek.add" && r["actor"] == "user:k-admin" && r["outcome"] == "denied"),
        "the allow-list refusal is not on acme's chain"
    );
    for who in ["user:k-reader", "user:k-editor", "user:k-outsider"] {
        assert!(
            records
                .iter()
                .any(|r| r["action"] == "access.denied" && r["actor"] == who),
            "no refusal of {who} on acme's chain"
        );
    }
    for path in [format!("{v1}/audit"), format!("{v1}/orgs/other/audit")] {
        let records = chain(srv, &path).await;
        assert!(
            !records
                .iter()
                .any(|r| r["actor"] == "user:k-admin" && r["action"].as_str().unwrap().starts_with("kek.")),
            "{path} holds acme's KEK steps"
        );
    }
}

crate::support::on_both!(
    org_admins_run_their_own_keys,
    org_admins_run_their_own_keys_on_sqlite,
    org_admins_run_their_own_keys_on_postgres
);

/// Runs the `sesame` binary against `srv` with `token`; returns the exit code, stdout and stderr.
async fn sesame(srv: &TestServer, token: &str, args: Vec<String>) -> (i32, String, String) {
    crate::support::run_cli(srv, token, args).await
}

/// `sesame kek … --org ORG` is all an org's admin needs: register, list, make default, migrate the org's DEKs onto
/// its own KEK and verify, show and retire the job; without `--org` they reach the instance's routes and are refused.
#[tokio::test]
async fn an_org_admin_runs_the_orgs_keys_from_the_command_line() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let (status, _) = srv
        .post("/api/stacks/acme/web/a/encrypt", &json!({"plaintext": "eA=="}))
        .await;
    assert_eq!(status, 200);
    let admin = member(&srv, "acme", "cli-admin", "admin").await;
    let run = |args: &[&str]| sesame(&srv, &admin, args.iter().map(|a| a.to_string()).collect());

    let (code, out, err) = run(&["kek", "add", "local://cli-org", "--org", "acme"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["kek", "default", "local://cli-org", "--org", "acme"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("now the default"), "{out}");
    let (code, out, _) = run(&["kek", "ls", "--org", "acme"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("local://cli-org") && !out.contains("local://default"),
        "{out}"
    );
    let (code, out, err) = run(&[
        "kek",
        "migrate",
        "--from",
        "local://default",
        "--to",
        "local://cli-org",
        "--org",
        "acme",
        "--wait",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("done") && out.contains("1/1"), "{out}");
    let id = out.split_whitespace().next().unwrap().to_owned();
    let id = id.as_str();
    let (code, out, err) = run(&["kek", "status", "--org", "acme", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let jobs: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jobs[0]["id"], json!(id), "{jobs}");
    let (code, out, err) = run(&["kek", "verify", id, "--org", "acme"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 DEKs checked"), "{out}");
    let (code, out, err) = run(&["kek", "retire", id, "--org", "acme"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("retired"), "{out}");

    // Without --org: the instance administrator's routes, refused (exit 3).
    for args in [
        vec!["kek", "ls"],
        vec!["kek", "add", "local://cli-other"],
        vec!["kek", "status", id],
    ] {
        let (code, out, err) = run(&args).await;
        assert_eq!(code, 3, "{args:?}: {out}{err}");
    }
    srv.stop().await;
}
