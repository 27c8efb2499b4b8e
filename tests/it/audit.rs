//! The audit log end to end: KEK administration, every migration step, and failed logins land in hash chains;
//! the export verifies; `sesame audit verify` catches an edited, removed or truncated record; the table refuses
//! UPDATE and DELETE; signed checkpoints catch a rewrite that recomputed every hash; org admins export their own
//! org's chain; stack calls are audited aggregated, every call counted; an API write whose audit record cannot be
//! appended is not applied.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sesame::core::audit::{AuditRecord, verify};

use crate::support::{TestServer, config, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_sesame");

/// The database's refusal of `sql` (a statement the audit triggers must stop), as text.
async fn refusal(pool: &sqlx::AnyPool, sql: &str) -> String {
    sqlx::query(sql).execute(pool).await.unwrap_err().to_string()
}

async fn export(srv: &TestServer, path: &str) -> String {
    srv.export(path).await
}

fn records(text: &str) -> (Vec<AuditRecord>, String) {
    let mut out = Vec::new();
    let mut head = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v.get("checkpoint").is_some() || v.get("anchor").is_some() {
            continue;
        }
        if v.get("action").is_none() {
            head = v["head"].as_str().unwrap().to_owned();
        } else {
            out.push(serde_json::from_value(v).unwrap());
        }
    }
    (out, head)
}

fn verify_cli(file: &std::path::Path, head: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "verify"]).arg(file);
    if let Some(h) = head {
        cmd.args(["--head", h]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn kek_and_migration_steps_and_failed_logins_are_audited_in_a_verifiable_chain() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    srv.encrypt_in_stacks("a", 5).await;
    let forged = "sesame_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, _) = srv
        .post_as("/api/sesame/v1/keks", &json!({"uri": "local://x"}), Some(forged))
        .await;
    assert_eq!(status, 401);
    let (status, kek) = srv.post("/api/sesame/v1/keks", &json!({"uri": "local://target"})).await;
    assert_eq!(status, 201, "{kek}");
    let (status, job) = srv
        .post(
            "/api/sesame/v1/kek-migrations",
            &json!({"from": "local://default", "to": "local://target"}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let m = srv.server.state.store.migration(&id).await.unwrap().unwrap();
        if m.state == sesame::store::MigrationState::Done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, v) = srv
        .post(&format!("/api/sesame/v1/kek-migrations/{id}/verify"), &json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = srv
        .post(&format!("/api/sesame/v1/kek-migrations/{id}/retire"), &json!({}))
        .await;
    assert_eq!(status, 200, "{v}");

    let text = export(&srv, "/api/sesame/v1/audit").await;
    assert!(!text.contains(forged), "a presented token never reaches the audit log");
    let (recs, head) = records(&text);
    assert_eq!(verify(&recs, Some(&head)).unwrap(), recs.len() as i64);
    let actions: Vec<&str> = recs.iter().map(|r| r.event.action.as_str()).collect();
    for want in [
        "auth.failed",
        "kek.add",
        "kek.migration.start",
        "kek.migration.requested",
        "kek.migration.batch",
        "kek.migration.done",
        "kek.migration.verified",
        "kek.migration.verify-requested",
        "kek.migration.retire",
        "kek.migration.retire-requested",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let failed = recs.iter().find(|r| r.event.action == "auth.failed").unwrap();
    assert_eq!(
        (failed.event.actor.as_str(), failed.event.outcome.as_str()),
        ("anonymous", "denied")
    );
    assert_eq!(failed.event.source, "127.0.0.1");
    let added = recs.iter().find(|r| r.event.action == "kek.add").unwrap();
    assert_eq!(added.event.actor, "user:admin");

    // The CLI verifies the export, and catches an edit, a removal, and a truncation against an earlier head.
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &text).unwrap();
    let (code, out) = verify_cli(&file, Some(&head));
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = text.lines().collect();
    let edited = text.replacen("\"outcome\":\"denied\"", "\"outcome\":\"ok\"", 1);
    std::fs::write(&file, &edited).unwrap();
    let (code, out) = verify_cli(&file, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("edited"), "{out}");
    let second_record = lines.iter().filter(|l| l.contains("\"action\"")).nth(1).unwrap();
    let removed: String = lines
        .iter()
        .filter(|l| *l != second_record)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, &removed).unwrap();
    let (code, out) = verify_cli(&file, None);
    assert_eq!(code, 1, "{out}");
    // A truncated log exported later: consistent on its own, but it does not contain the head recorded before.
    let (short, _) = records(&text);
    let short = &short[..short.len() - 2];
    let mut truncated: String = short.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    truncated.push_str(
        &json!({"chain": "instance", "seq": short.last().unwrap().seq, "head": short.last().unwrap().hash}).to_string(),
    );
    std::fs::write(&file, &truncated).unwrap();
    assert_eq!(verify_cli(&file, None).0, 0);
    let (code, out) = verify_cli(&file, Some(&head));
    assert_eq!(code, 1, "{out}");

    // The table is append-only.
    let url = format!("sqlite://{}", dir.path().join("sesame.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let err = refusal(&pool, "UPDATE audit_events SET outcome = 'ok'").await;
    assert!(err.contains("append-only"), "{err}");
    assert!(sqlx::query("DELETE FROM audit_events").execute(&pool).await.is_err());
    srv.stop().await;
}

async fn get_as(srv: &TestServer, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = srv.http.get(format!("{}{path}", srv.base));
    if let Some(t) = token {
        req = req.header("Authorization", format!("token {t}"));
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn verify_with_key(file: &std::path::Path, key: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(file)
        .args(["--key", key])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The checkpoints of an export.
fn checkpoints(text: &str) -> Vec<sesame::core::audit::Checkpoint> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("checkpoint").cloned())
        .map(|c| serde_json::from_value(c).unwrap())
        .collect()
}

#[tokio::test]
async fn signed_checkpoints_catch_a_rewrite_that_recomputed_every_hash() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    // Records on the instance chain: KEK administration (failed logins would be tallied into one record per source
    // and window).
    for i in 0..4 {
        let (status, body) = srv
            .post("/api/sesame/v1/keks", &json!({"uri": format!("local://signed{i}")}))
            .await;
        assert!((200..300).contains(&status), "{body}");
    }
    // The public key is served without a token; its fingerprint is the one exports carry.
    let (status, key) = get_as(&srv, "/api/sesame/v1/audit/key", None).await;
    assert_eq!(status, 200, "{key}");
    let key_json: serde_json::Value = serde_json::from_str(&key).unwrap();
    assert_eq!(key_json["algorithm"], "ed25519");
    let fingerprint = key_json["fingerprint"].as_str().unwrap().to_owned();
    assert!(
        fingerprint.starts_with("sha256:") && fingerprint.len() == 71,
        "{fingerprint}"
    );
    let key_file = dir.path().join("audit-key.json");
    std::fs::write(&key_file, &key).unwrap();

    let text = export(&srv, "/api/sesame/v1/audit").await;
    let (recs, head) = records(&text);
    let cps = checkpoints(&text);
    assert!(recs.len() >= 4, "{text}");
    // The export is signed through its last record.
    assert_eq!(cps.last().unwrap().seq, recs.last().unwrap().seq, "{text}");
    assert_eq!(cps.last().unwrap().head, head);
    assert!(cps.iter().all(|c| c.key == fingerprint));
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, &text).unwrap();
    for key in [key_file.to_str().unwrap(), fingerprint.as_str()] {
        let (code, out) = verify_with_key(&file, key);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("vouch for records 1 to {}", recs.len())), "{out}");
    }
    // A key that is not the server's: refused, by file and by fingerprint.
    let other = dir.path().join("other.key");
    std::fs::write(&other, "11".repeat(32)).unwrap();
    let (code, out) = verify_with_key(&file, other.to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not by the given key"), "{out}");
    let (code, out) = verify_with_key(&file, &format!("sha256:{}", "ab".repeat(32)));
    assert_ne!(code, 0, "{out}");
    let (code, out) = verify_with_key(&file, "not-a-key");
    assert_ne!(code, 0, "{out}");
    // A forged checkpoint line (another head) fails its signature.
    let last_cp = text.lines().rfind(|l| l.contains("\"checkpoint\"")).unwrap();
    let bad = text.replace(last_cp, &last_cp.replacen("\"time_ms\":", "\"time_ms\":1", 1));
    std::fs::write(&file, &bad).unwrap();
    let (code, out) = verify_with_key(&file, &fingerprint);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature is not valid"), "{out}");
    let token = srv.token.clone();
    srv.stop().await;

    // Someone with write access to the database rewrites record 2 and recomputes every hash after it (dropping the
    // append-only triggers first): the chain is consistent again.
    let url = format!("sqlite://{}", dir.path().join("sesame.db").display());
    let store = sesame::store::connect(&url).await.unwrap();
    let all = store.audit_records("instance", 0, 100_000).await.unwrap();
    drop(store);
    let mut events: Vec<_> = all.iter().map(|r| r.event.clone()).collect();
    events[1].source = "10.9.9.9".into();
    let rewritten = sesame::core::audit::link(0, sesame::core::audit::GENESIS, events);
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("DROP TRIGGER audit_events_no_update")
        .execute(&pool)
        .await
        .unwrap();
    for r in &rewritten {
        sqlx::query("UPDATE audit_events SET source = $1, prev_hash = $2, hash = $3 WHERE chain = $4 AND seq = $5")
            .bind(&r.event.source)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .bind("instance")
            .bind(r.seq)
            .execute(&pool)
            .await
            .unwrap();
    }
    let last = rewritten.last().unwrap();
    sqlx::query("UPDATE audit_heads SET hash = $1 WHERE chain = 'instance' AND seq = $2")
        .bind(&last.hash)
        .bind(last.seq)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let srv = TestServer::start(config(dir.path(), None), Some(token)).await.unwrap();
    let text = export(&srv, "/api/sesame/v1/audit").await;
    assert!(text.contains("10.9.9.9"));
    std::fs::write(&file, &text).unwrap();
    // The unkeyed chain cannot tell…
    let (code, out) = verify_cli(&file, None);
    assert_eq!(code, 0, "{out}");
    // …the signed checkpoints can, with nothing but the public key.
    for key in [key_file.to_str().unwrap(), fingerprint.as_str()] {
        let (code, out) = verify_with_key(&file, key);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("was rewritten"), "{out}");
    }
    // And the server did not sign the rewritten head: no checkpoint vouches for the forged records.
    let (forged_recs, _) = records(&text);
    for c in checkpoints(&text) {
        let r = &forged_recs[(c.seq - 1) as usize];
        assert!(
            c.head != r.hash || c.seq < 2,
            "checkpoint {} signs a forged record",
            c.seq
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn an_org_admin_exports_their_own_orgs_chain_and_nothing_else() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let (status, body) = srv.post("/api/sesame/v1/orgs", &json!({"name": "beta"})).await;
    assert_eq!(status, 201, "{body}");
    let mut tokens = Vec::new();
    for (login, role) in [("alice", "admin"), ("bob", "editor")] {
        let (status, body) = srv.add_member("acme", login, role).await;
        assert_eq!(status, 201, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    let (alice, bob) = (tokens[0].as_str(), tokens[1].as_str());
    let (status, text) = get_as(&srv, "/api/sesame/v1/orgs/acme/audit", Some(alice)).await;
    assert_eq!(status, 200, "{text}");
    let (recs, head) = records(&text);
    assert!(!recs.is_empty());
    assert!(recs.iter().all(|r| r.event.chain == recs[0].event.chain));
    assert_ne!(recs[0].event.chain, "instance");
    assert_eq!(verify(&recs, Some(&head)).unwrap(), recs.len() as i64);
    let file = dir.path().join("acme.jsonl");
    std::fs::write(&file, &text).unwrap();
    let (_, key) = get_as(&srv, "/api/sesame/v1/audit/key", None).await;
    let fingerprint = serde_json::from_str::<serde_json::Value>(&key).unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out) = verify_with_key(&file, &fingerprint);
    assert_eq!(code, 0, "{out}");

    // Another org: answered like a missing one. The instance chain: refused. A non-admin member: refused.
    let (status, body) = get_as(&srv, "/api/sesame/v1/orgs/beta/audit", Some(alice)).await;
    assert_eq!(status, 404, "{body}");
    let (missing_status, missing) = get_as(&srv, "/api/sesame/v1/orgs/nope/audit", Some(alice)).await;
    assert_eq!(missing_status, 404);
    assert_eq!(
        body.replace("beta", "X"),
        missing.replace("nope", "X"),
        "a hidden org looks like a missing one"
    );
    let (status, body) = get_as(&srv, "/api/sesame/v1/audit", Some(alice)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get_as(&srv, "/api/sesame/v1/orgs/acme/audit", Some(bob)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = get_as(&srv, "/api/sesame/v1/orgs/acme/audit", None).await;
    assert_eq!(status, 401);
    // The instance administrator still reads both.
    for path in ["/api/sesame/v1/orgs/beta/audit", "/api/sesame/v1/audit"] {
        let (status, _) = get_as(&srv, path, Some(&srv.token)).await;
        assert_eq!(status, 200, "{path}");
    }
    srv.stop().await;
}

/// Per (actor, action, outcome): (values, requests) summed over the tallied stack records of `text`; also checks that
/// no key has two records in one window.
fn stack_counts(text: &str) -> std::collections::BTreeMap<(String, String, String), (u64, u64)> {
    let (recs, _) = records(text);
    let mut seen = std::collections::HashSet::new();
    let mut out = std::collections::BTreeMap::new();
    for r in recs.iter().filter(|r| r.event.action.starts_with("stack.")) {
        let e = &r.event;
        assert_eq!(e.target, "acme/app/prod");
        assert_eq!(e.time_ms % 1000, 0, "records are per one-second window");
        assert!(
            seen.insert((
                e.actor.clone(),
                e.source.clone(),
                e.action.clone(),
                e.outcome.clone(),
                e.time_ms
            )),
            "two records of one key in one window: {e:?}"
        );
        let c = sesame::core::call_tally::counts_of(&e.detail).unwrap();
        let slot = out
            .entry((e.actor.clone(), e.action.clone(), e.outcome.clone()))
            .or_insert((0, 0));
        slot.0 += c.values;
        slot.1 += c.requests;
    }
    out
}

async fn stack_calls_scenario(db: Option<&str>) {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), db);
    let clock = crate::support::manual_clock(&mut cfg);
    let srv = TestServer::start(cfg, None).await.unwrap();
    let (status, body) = srv.add_member("acme", "carol", "opener").await;
    assert_eq!(status, 201, "{body}");
    let carol = body["token"].as_str().unwrap().to_owned();
    let stack = "/api/stacks/acme/app/prod";
    let (admin_e, admin_d) = (7u64, 5u64);
    let mut ciphertexts = Vec::new();
    for i in 0..admin_e {
        let (status, body) = srv
            .post(
                &format!("{stack}/encrypt"),
                &json!({"plaintext": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("x{i}"))}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        ciphertexts.push(body["ciphertext"].as_str().unwrap().to_owned());
    }
    for c in ciphertexts.iter().take(admin_d as usize) {
        let (status, body) = srv.post(&format!("{stack}/decrypt"), &json!({"ciphertext": c})).await;
        assert_eq!(status, 200, "{body}");
    }
    // Closed windows are written while the server runs: none while the window is open, its records once it closes
    // (the flusher looks every 250 ms).
    let text = export(&srv, "/api/sesame/v1/orgs/acme/audit").await;
    assert!(stack_counts(&text).is_empty(), "a window was written before it closed");
    clock.advance(Duration::from_secs(1));
    let mut text = String::new();
    for _ in 0..100 {
        text = export(&srv, "/api/sesame/v1/orgs/acme/audit").await;
        if stack_counts(&text).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = stack_counts(&text);
    let admin = |action: &str, outcome: &str| ("user:admin".to_owned(), action.to_owned(), outcome.to_owned());
    assert_eq!(
        counts.get(&admin("stack.encrypt", "ok")),
        Some(&(admin_e, admin_e)),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&admin("stack.decrypt", "ok")),
        Some(&(admin_d, admin_d)),
        "{counts:?}"
    );

    // Batches count each value (a duplicate too) and once as a request; failures are counted with their outcome;
    // another principal gets its own records. Then a graceful stop right away: the open window is written too.
    let (status, body) = srv
        .post(
            &format!("{stack}/batch-encrypt"),
            &json!({"plaintexts": ["YQ==", "Yg==", "Yw=="]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = srv
        .post(
            &format!("{stack}/batch-decrypt"),
            &json!({"ciphertexts": [ciphertexts[0], ciphertexts[1], ciphertexts[2], ciphertexts[0]]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for bad in ["!!not base64", "AAAA"] {
        let (status, _) = srv.post(&format!("{stack}/decrypt"), &json!({"ciphertext": bad})).await;
        assert_eq!(status, 400);
    }
    let (status, _) = srv
        .post(
            &format!("{stack}/batch-decrypt"),
            &json!({"ciphertexts": [ciphertexts[0], "AAAA"]}),
        )
        .await;
    assert_eq!(status, 400);
    for _ in 0..2 {
        let (status, _) = srv
            .post_as(&format!("{stack}/encrypt"), &json!({"plaintext": "eA=="}), Some(&carol))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = srv
        .post_as(
            &format!("{stack}/decrypt"),
            &json!({"ciphertext": ciphertexts[0]}),
            Some(&carol),
        )
        .await;
    assert_eq!(status, 200);
    let token = srv.token.clone();
    srv.stop().await;

    let srv = TestServer::start(config(dir.path(), db), Some(token)).await.unwrap();
    let text = export(&srv, "/api/sesame/v1/orgs/acme/audit").await;
    let counts = stack_counts(&text);
    let carol_key = |action: &str| ("user:carol".to_owned(), action.to_owned(), "ok".to_owned());
    let want: std::collections::BTreeMap<_, _> = [
        (admin("stack.encrypt", "ok"), (admin_e + 3, admin_e + 1)),
        (admin("stack.decrypt", "ok"), (admin_d + 4, admin_d + 1)),
        (admin("stack.decrypt", "failed"), (2 + 2, 3)),
        (carol_key("stack.encrypt"), (2, 2)),
        (carol_key("stack.decrypt"), (1, 1)),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want);
    let (recs, head) = records(&text);
    assert_eq!(verify(&recs, Some(&head)).unwrap(), recs.len() as i64);
    let key: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let public = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        key["signing_key"]["public_key"].as_str().unwrap(),
    )
    .unwrap();
    let coverage = sesame::core::audit::verify_checkpoints(&recs, &checkpoints(&text), &public).unwrap();
    assert_eq!(coverage.signed_through, recs.len() as i64);
    srv.stop().await;
}

#[tokio::test]
async fn stack_calls_are_audited_aggregated_and_every_call_is_counted_on_sqlite() {
    stack_calls_scenario(None).await;
}

#[tokio::test]
async fn stack_calls_are_audited_aggregated_and_every_call_is_counted_on_postgres() {
    crate::support::with_postgres_url(stack_calls_scenario).await;
}

async fn fail_logins(srv: &TestServer, n: usize) {
    let forged = "sesame_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for _ in 0..n {
        let (status, _) = srv
            .post_as("/api/sesame/v1/keks", &json!({"uri": "local://x"}), Some(forged))
            .await;
        assert_eq!(status, 401);
    }
}

async fn prune_scenario(db: Option<&str>) {
    let dir = temp_dir();
    let srv = TestServer::start(config(dir.path(), db), None).await.unwrap();
    fail_logins(&srv, 3).await;
    // The export checkpoints the head; records after it come later.
    let before = export(&srv, "/api/sesame/v1/audit").await;
    let (old, _) = records(&before);
    let through = checkpoints(&before).last().unwrap().seq;
    assert_eq!(through, old.last().unwrap().seq);
    fail_logins(&srv, 2).await;

    // Only through a signed checkpoint, only forward, only by the instance administrator; refusals change nothing.
    let (status, body) = srv
        .post("/api/sesame/v1/audit/prune", &json!({"through": through + 1}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no signed checkpoint"),
        "{body}"
    );
    let (status, body) = srv.add_member("acme", "alice", "admin").await;
    assert_eq!(status, 201, "{body}");
    let alice = body["token"].as_str().unwrap().to_owned();
    let (status, _) = srv
        .post_as(
            "/api/sesame/v1/audit/prune",
            &json!({"org": "acme", "through": 1}),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = srv.post("/api/sesame/v1/audit/prune", &json!({"through": "x"})).await;
    assert_eq!(status, 400);
    let (status, body) = srv
        .post("/api/sesame/v1/audit/prune", &json!({"org": "nope", "through": 1}))
        .await;
    assert_eq!(status, 404, "{body}");
    let (still, _) = records(&export(&srv, "/api/sesame/v1/audit").await);
    assert_eq!(still[0].seq, 1, "a refused prune deletes nothing");

    let (status, body) = srv
        .post("/api/sesame/v1/audit/prune", &json!({"through": through}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pruned"], json!(through));
    let (status, body) = srv
        .post("/api/sesame/v1/audit/prune", &json!({"through": through}))
        .await;
    assert_eq!(status, 400, "{body}");

    // The export starts at the anchor; the rest verifies from it, with the key; the prune is itself audited.
    let after = export(&srv, "/api/sesame/v1/audit").await;
    let first: serde_json::Value = serde_json::from_str(after.lines().next().unwrap()).unwrap();
    assert_eq!(first["anchor"]["seq"], json!(through), "{after}");
    let (rest, _) = records(&after);
    assert_eq!(rest[0].seq, through + 1);
    assert_eq!(rest[0].prev_hash, old.last().unwrap().hash);
    assert!(rest.iter().any(|r| r.event.action == "audit.prune"));
    let file = dir.path().join("pruned.jsonl");
    std::fs::write(&file, &after).unwrap();
    let (code, out) = verify_cli(&file, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pruned"), "{out}");
    let fingerprint = checkpoints(&after)[0].key.clone();
    let (code, out) = verify_with_key(&file, &fingerprint);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("vouch for records {}", through + 1)), "{out}");
    // An anchor edited in the export (another head) fails.
    let forged_anchor = after.replacen(&old.last().unwrap().hash, &"0".repeat(64), 1);
    std::fs::write(&file, &forged_anchor).unwrap();
    let (code, out) = verify_with_key(&file, &fingerprint);
    assert_eq!(code, 1, "{out}");
    srv.stop().await;

    // The database still refuses deleting the records after the anchor, and moving the anchor back.
    let url = db.map_or_else(
        || format!("sqlite://{}", dir.path().join("sesame.db").display()),
        str::to_owned,
    );
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let err = refusal(&pool, "DELETE FROM audit_events WHERE chain = 'instance'").await;
    assert!(err.contains("append-only"), "{err}");
    let err = refusal(&pool, "UPDATE audit_anchors SET seq = 1").await;
    assert!(err.contains("only moves forward"), "{err}");
    assert!(sqlx::query("DELETE FROM audit_anchors").execute(&pool).await.is_err());
    assert!(
        sqlx::query("DELETE FROM audit_checkpoints")
            .execute(&pool)
            .await
            .is_err()
    );
    pool.close().await;
}

#[tokio::test]
async fn a_chain_is_pruned_only_through_a_signed_checkpoint_and_verifies_from_it_on_sqlite() {
    prune_scenario(None).await;
}

#[tokio::test]
async fn a_chain_is_pruned_only_through_a_signed_checkpoint_and_verifies_from_it_on_postgres() {
    crate::support::with_postgres_url(prune_scenario).await;
}

/// Makes every append of an `env.update` or `team.create` record fail inside the database (a trigger on
/// `audit_events`): the failpoint of [`failpoint_scenario`].
async fn break_audit_appends(url: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER audit_failpoint BEFORE INSERT ON audit_events \
             WHEN NEW.action IN ('env.update', 'team.create') \
             BEGIN SELECT RAISE(ABORT, 'failpoint: the audit append fails'); END",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(
            "CREATE FUNCTION audit_failpoint() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.action IN ('env.update', 'team.create') THEN \
             RAISE EXCEPTION 'failpoint: the audit append fails'; END IF; RETURN NEW; END $$",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER audit_failpoint BEFORE INSERT ON audit_events FOR EACH ROW \
             EXECUTE FUNCTION audit_failpoint()",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn heal_audit_appends(url: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("DROP TRIGGER audit_failpoint")
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("DROP TRIGGER audit_failpoint ON audit_events")
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// POSTs a JSON body with the admin token; returns status and text body.
async fn send_json(srv: &TestServer, path: &str, body: serde_json::Value) -> (u16, String) {
    send(srv, reqwest::Method::POST, path, Some(body.to_string())).await
}

async fn send(srv: &TestServer, method: reqwest::Method, path: &str, body: Option<String>) -> (u16, String) {
    let mut req = srv
        .http
        .request(method, format!("{}{path}", srv.base))
        .header("Authorization", format!("token {}", srv.token));
    if let Some(b) = body {
        let kind = if b.starts_with('{') {
            "application/json"
        } else {
            "application/x-yaml"
        };
        req = req.header("Content-Type", kind).body(b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// API writes and their audit records commit in one transaction: when the append fails, the write is not applied
/// and the caller gets a 5xx; once appends work again, the same write lands with its record.
async fn failpoint_scenario(db: Option<&str>) {
    use reqwest::Method;
    let dir = temp_dir();
    let url = db
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("sesame.db").display()));
    let srv = TestServer::start(config(dir.path(), Some(&url)), None).await.unwrap();
    let env = "/api/esc/environments/acme/app/prod";
    let (status, body) = send_json(
        &srv,
        "/api/esc/environments/acme",
        json!({"project": "app", "name": "prod"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&srv, Method::PATCH, env, Some("values:\n  colour: blue\n".into())).await;
    assert_eq!(status, 200, "{body}");

    break_audit_appends(&url).await;
    let (status, body) = send(&srv, Method::PATCH, env, Some("values:\n  colour: red\n".into())).await;
    assert!((500..600).contains(&status), "{status} {body}");
    let (status, text) = send(&srv, Method::GET, env, None).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("blue") && !text.contains("red"),
        "the update must not be applied: {text}"
    );
    let (status, body) = send_json(
        &srv,
        "/api/sesame/v1/orgs/acme/teams",
        json!({"name": "ops", "description": ""}),
    )
    .await;
    assert!((500..600).contains(&status), "{status} {body}");
    let (status, teams) = send(&srv, Method::GET, "/api/sesame/v1/orgs/acme/teams", None).await;
    assert_eq!(status, 200);
    assert!(!teams.contains("\"ops\""), "the team must not be created: {teams}");

    heal_audit_appends(&url).await;
    let (status, body) = send(&srv, Method::PATCH, env, Some("values:\n  colour: red\n".into())).await;
    assert_eq!(status, 200, "{body}");
    let (status, text) = send(&srv, Method::GET, env, None).await;
    assert_eq!(status, 200);
    assert!(text.contains("red"), "{text}");
    // The failed attempt took no revision: the update that landed is revision 3, recorded once, in a chain that
    // still verifies.
    let org = srv.server.state.store.org_by_name("acme").await.unwrap().unwrap();
    let recs = srv.server.state.store.audit_records(&org.id, 0, 1_000).await.unwrap();
    assert!(verify(&recs, None).is_ok());
    let updates: Vec<&str> = recs
        .iter()
        .filter(|r| r.event.action == "env.update")
        .map(|r| r.event.detail.as_str())
        .collect();
    assert_eq!(updates, ["revision 2", "revision 3"]);
    assert!(!recs.iter().any(|r| r.event.action == "team.create"));
    srv.stop().await;
}

#[tokio::test]
async fn a_write_whose_audit_record_cannot_be_appended_is_not_applied_on_sqlite() {
    failpoint_scenario(None).await;
}

#[tokio::test]
async fn a_write_whose_audit_record_cannot_be_appended_is_not_applied_on_postgres() {
    crate::support::with_postgres_url(failpoint_scenario).await;
}
