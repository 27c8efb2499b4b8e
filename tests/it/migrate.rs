//! KEK migration: every DEK re-wrapped under the target, interrupted and resumed, verified, the source retired —
//! and stack secrets decrypting throughout.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sesame::migrate::{self, MigrateConfig};
use sesame::store::{KekRecord, KekState, MigrationRecord, MigrationState, Store};

use crate::support::{TestServer, config, temp_dir};

fn new_job(from: &str, to: &str) -> MigrationRecord {
    MigrationRecord::new_job(from, to, None, 1)
}

async fn wraps_under(store: &Arc<dyn Store>, kek: &str) -> usize {
    store.deks_under(kek, None, "", 100_000).await.unwrap().len()
}

#[tokio::test]
async fn a_migration_survives_interruption_verifies_and_retires() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    let manual = crate::support::manual_clock(&mut cfg);
    let clock = manual.clock();
    let srv = TestServer::start(cfg, None).await.unwrap();
    let store = srv.server.state.store.clone();
    let keyring = srv.server.state.keyring.clone();
    // 120 stacks: 120 DEKs under the system KEK (plus the canary's, the audit-signing key's and the OIDC signing keys').
    let sealed = srv.seal_in_stacks("mig", 120).await;
    let system = store.default_kek(None).await.unwrap().unwrap().id;
    let (status, target) = srv.post("/api/sesame/v1/keks", &json!({"uri": "local://target"})).await;
    assert_eq!(status, 201);
    let target = target["id"].as_str().unwrap().to_owned();
    assert_eq!(wraps_under(&store, &system).await, 123);

    // Start, then interrupt mid-way (an aborted task stops at any await point, like a killed process).
    let job = store
        .start_or_resume_migration(&new_job(&system, &target))
        .await
        .unwrap();
    assert_eq!(job.total, 123);
    let cfg = MigrateConfig {
        batch: 8,
        concurrency: 4,
        lease: Duration::from_millis(200),
    };
    let (s2, k2, id2, c2, t2) = (
        store.clone(),
        keyring.clone(),
        job.id.clone(),
        cfg.clone(),
        clock.clone(),
    );
    let task = tokio::spawn(async move { migrate::run(&s2, &k2, &id2, "replica-a", &c2, &t2).await });
    while store.migration(&job.id).await.unwrap().unwrap().migrated < 24 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task.abort();
    let _ = task.await;
    let partial = store.migration(&job.id).await.unwrap().unwrap();
    assert!(
        partial.migrated < 123 && partial.state == MigrationState::Running,
        "{partial:?}"
    );

    // Secrets open during the migration.
    let (path, ct, i) = &sealed[7];
    let (status, v) = srv.post(&format!("{path}/decrypt"), &json!({"ciphertext": ct})).await;
    assert_eq!(
        (status, v["plaintext"].as_str()),
        (200, Some(STANDARD.encode(format!("v{i}")).as_str()))
    );

    // Another replica cannot run it while replica-a's lease lasts; re-starting the same pair resumes the same job.
    let resumed = store
        .start_or_resume_migration(&new_job(&system, &target))
        .await
        .unwrap();
    assert_eq!(resumed.id, job.id);
    // replica-a's lease (200 ms) lasts until its last instant and lapses one millisecond later.
    manual.advance(Duration::from_millis(200));
    let refused = migrate::run(&store, &keyring, &job.id, "replica-b", &cfg, &clock)
        .await
        .unwrap();
    // Had replica-b run, it would have finished the job. (A batch replica-a was committing when it was aborted
    // may land after `partial` was read, so the count is compared with the total, not with `partial`.)
    assert!(
        refused.state == MigrationState::Running && refused.migrated < job.total,
        "replica-b ran while replica-a's lease lasted: {refused:?}"
    );
    manual.advance(Duration::from_millis(1));
    let done = migrate::run(&store, &keyring, &job.id, "replica-b", &cfg, &clock)
        .await
        .unwrap();
    assert_eq!(done.state, MigrationState::Done);
    assert_eq!(done.migrated, 123, "each DEK migrated exactly once: {done:?}");
    assert_eq!(wraps_under(&store, &target).await, 123);

    // Retire refuses before verification; verify unwraps every DEK under the target.
    assert!(migrate::retire(&store, &job.id, &clock).await.is_err());
    assert_eq!(
        migrate::verify(&store, &keyring, &job.id, &clock).await.unwrap(),
        (123, 0)
    );
    assert_eq!(migrate::retire(&store, &job.id, &clock).await.unwrap(), 123);
    assert_eq!(wraps_under(&store, &system).await, 0);
    let token = srv.token.clone();
    srv.stop().await;

    // After a restart (cold cache), every secret decrypts through the target KEK alone.
    let srv = TestServer::start(config(dir.path(), None), Some(token)).await.unwrap();
    srv.assert_unseals(&sealed).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_target_that_cannot_wrap_stops_the_migration_before_changing_anything() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let (store, keyring) = (srv.server.state.store.clone(), srv.server.state.keyring.clone());
    srv.post("/api/stacks/acme/x/y/encrypt", &json!({"plaintext": "eA=="}))
        .await;
    let system = store.default_kek(None).await.unwrap().unwrap().id;
    // A KEK row whose adapter this server does not hold: every re-wrap toward it fails.
    let ghost = KekRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: None,
        uri: "local://ghost".into(),
        state: KekState::Active,
        is_default: false,
        created_ms: 1,
    };
    let event = crate::support::test_event(sesame::core::audit::AuditAction::KekAdd);
    store.insert_kek(&ghost, &event).await.unwrap();
    let job = store
        .start_or_resume_migration(&new_job(&system, &ghost.id))
        .await
        .unwrap();
    let (cfg, clock) = (MigrateConfig::default(), &srv.server.state.clock);
    let err = migrate::run(&store, &keyring, &job.id, "r", &cfg, clock)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
    let failed = store.migration(&job.id).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.migrated), (MigrationState::Failed, 0));
    assert_eq!(wraps_under(&store, &ghost.id).await, 0);
    srv.stop().await;
}

#[tokio::test]
async fn two_runs_of_one_job_count_each_dek_once() {
    let dir = temp_dir();
    let srv = TestServer::sqlite(dir.path()).await;
    let (store, keyring) = (srv.server.state.store.clone(), srv.server.state.keyring.clone());
    srv.encrypt_in_stacks("twice", 60).await;
    let system = store.default_kek(None).await.unwrap().unwrap().id;
    let (_, target) = srv.post("/api/sesame/v1/keks", &json!({"uri": "local://target"})).await;
    let target = target["id"].as_str().unwrap().to_owned();
    let job = store
        .start_or_resume_migration(&new_job(&system, &target))
        .await
        .unwrap();
    // The same owner twice (as when a replica's lease lapses mid-batch and two runs overlap): both re-wrap the same
    // batches, and only the wraps that land are counted.
    let cfg = MigrateConfig {
        batch: 4,
        concurrency: 2,
        lease: Duration::from_secs(30),
    };
    let (a, b) = tokio::join!(
        migrate::run(&store, &keyring, &job.id, "r", &cfg, &srv.server.state.clock),
        migrate::run(&store, &keyring, &job.id, "r", &cfg, &srv.server.state.clock)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.state, b.state), (MigrationState::Done, MigrationState::Done));
    let done = store.migration(&job.id).await.unwrap().unwrap();
    assert_eq!((done.total, done.migrated), (63, 63), "{done:?}");
    assert_eq!(wraps_under(&store, &target).await, 63);
    srv.stop().await;
}

#[tokio::test]
async fn a_restarted_server_takes_over_a_job_whose_owner_died() {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    cfg.migration.lease = Duration::from_millis(300);
    let manual = crate::support::manual_clock(&mut cfg);
    let srv = TestServer::start(cfg.clone(), None).await.unwrap();
    let store = srv.server.state.store.clone();
    srv.post("/api/stacks/acme/x/y/encrypt", &json!({"plaintext": "eA=="}))
        .await;
    let system = store.default_kek(None).await.unwrap().unwrap().id;
    let (_, target) = srv.post("/api/sesame/v1/keks", &json!({"uri": "local://target"})).await;
    let target = target["id"].as_str().unwrap().to_owned();
    // A job leased by a replica that died: nobody renews its lease.
    let job = store
        .start_or_resume_migration(&new_job(&system, &target))
        .await
        .unwrap();
    let now = srv.server.state.clock.now_ms();
    assert!(store.lease_migration(&job.id, "dead", now, now + 300).await.unwrap());
    let token = srv.token.clone();
    srv.stop().await;

    // The restarted server finds the lease taken, waits for it to lapse, and runs the job (it does not give up).
    let srv = TestServer::start(cfg, Some(token)).await.unwrap();
    let store = srv.server.state.store.clone();
    let m = store.migration(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (m.state, m.migrated),
        (MigrationState::Running, 0),
        "ran under another's lease"
    );
    manual.advance(Duration::from_millis(301));
    let started = std::time::Instant::now();
    loop {
        let m = store.migration(&job.id).await.unwrap().unwrap();
        if m.state == MigrationState::Done {
            assert_eq!((m.total, m.migrated), (4, 4), "{m:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not taken over: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.stop().await;
}
