//! A migration between two AWS KMS keys (moto in server mode) goes through `ReEncrypt`: one KMS call moves each
//! wrap and one unwrap proves it; the DEK itself is never unwrapped by Sesame on the way. Needs `moto_server`
//! (`SESAME_TEST_MOTO_SERVER` or on PATH) and the `aws` feature; skips with a reason otherwise (fails under CI=true).

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sesame::migrate::{self, MigrateConfig};
use sesame::store::{MigrationRecord, MigrationState};

use crate::child::ChildGuard;
use crate::support::{TestServer, config, temp_dir};

fn start_moto() -> Option<(ChildGuard, String)> {
    let bin = std::env::var("SESAME_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(&bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(moto) = ChildGuard::spawn(cmd, "moto_server") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "moto_server ({bin}) is required under CI=true"
        );
        eprintln!("skipping: moto_server not found (pip install 'moto[server]' or set SESAME_TEST_MOTO_SERVER)");
        return None;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((moto, format!("http://127.0.0.1:{port}")))
}

#[tokio::test]
async fn a_migration_between_aws_keys_uses_reencrypt() {
    let Some((_moto, endpoint)) = start_moto() else { return };
    #[allow(unsafe_code)]
    // SAFETY (invariant): moto accepts any credentials; set before the first SDK client of this test reads them,
    // and every test that reads them sets the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    }
    let dir = temp_dir();
    let mut cfg = config(dir.path(), None);
    cfg.instance.system_kek = format!("awskms://alias/sesame-sys?region=eu-west-1&endpoint={endpoint}");
    let srv = TestServer::start(cfg, None).await.unwrap();
    let (store, keyring) = (srv.server.state.store.clone(), srv.server.state.keyring.clone());
    let sealed = srv.seal_in_stacks("aws", 20).await;
    let target_uri = format!("awskms://alias/sesame-target?region=eu-west-1&endpoint={endpoint}");
    let (status, target) = srv.post("/api/sesame/v1/keks", &json!({"uri": target_uri})).await;
    assert_eq!(status, 201, "{target}");
    let target = target["id"].as_str().unwrap().to_owned();
    let system = store.default_kek(None).await.unwrap().unwrap().id;
    let job = store
        .start_or_resume_migration(&MigrationRecord::new_job(&system, &target, None, 1))
        .await
        .unwrap();
    let unwraps_before = srv.metric("sesame_kms_unwrap_total").await;
    let wraps_before = srv.metric("sesame_kms_wrap_total").await;
    let (cfg, clock) = (MigrateConfig::default(), &srv.server.state.clock);
    let done = migrate::run(&store, &keyring, &job.id, "replica-a", &cfg, clock)
        .await
        .unwrap();
    assert_eq!(done.state, MigrationState::Done);
    let n = u64::try_from(done.migrated).unwrap();
    assert_eq!(
        n, 23,
        "20 stacks, the canary, the audit-signing key and the OIDC signing keys"
    );
    // ReEncrypt (counted as a wrap) plus one proving unwrap per DEK; the unwrap-then-wrap path would take two.
    assert_eq!(srv.metric("sesame_kms_wrap_total").await - wraps_before, n);
    assert_eq!(srv.metric("sesame_kms_unwrap_total").await - unwraps_before, n);
    assert_eq!(
        migrate::verify(&store, &keyring, &job.id, &srv.server.state.clock)
            .await
            .unwrap(),
        (n, 0)
    );
    assert_eq!(
        migrate::retire(&store, &job.id, &srv.server.state.clock).await.unwrap(),
        n
    );
    srv.assert_unseals(&sealed).await;
    srv.stop().await;
}
