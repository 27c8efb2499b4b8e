//! The audit log end to end: KEK administration, every migration step, and failed logins land in hash chains;
//! the export verifies; `sesame audit verify` catches an edited, removed or truncated record; the table refuses
//! UPDATE and DELETE.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sesame::core::audit::{AuditRecord, verify};

use crate::support::{TestServer, config, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_sesame");

async fn export(srv: &TestServer, path: &str) -> String {
    let resp = srv
        .http
        .get(format!("{}{path}", srv.base))
        .header("Authorization", format!("token {}", srv.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

fn records(text: &str) -> (Vec<AuditRecord>, String) {
    let mut out = Vec::new();
    let mut head = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
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
    let srv = TestServer::start(config(dir.path(), None), None).await.unwrap();
    for i in 0..5 {
        let (status, _) = srv
            .post(
                &format!("/api/stacks/acme/a/s{i}/encrypt"),
                &json!({"plaintext": "eA=="}),
            )
            .await;
        assert_eq!(status, 200);
    }
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
    let removed: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
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
    let err = sqlx::query("UPDATE audit_events SET outcome = 'ok'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(sqlx::query("DELETE FROM audit_events").execute(&pool).await.is_err());
    srv.stop().await;
}
