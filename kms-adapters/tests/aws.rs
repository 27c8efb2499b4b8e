//! The AWS KMS adapter against moto in server mode (PyPI `moto[server]`), started here on a free loopback port.
//!
//! Needs `moto_server` (`SESAME_TEST_MOTO_SERVER`, or on `PATH`). Without it the tests print why they skip; under
//! `CI=true` they fail. moto models Encrypt/Decrypt with encryption context, aliases and key ARNs; it does not model
//! key states or IAM faithfully, which the adapter's unit tests of the error mapping cover instead.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::time::{Duration, Instant};

use sesame_kms::{Argon2Params, Dek, KekUri, KmsError, OpenOptions, WrapContext, conformance, open_kek};

#[path = "../../tests/support/child.rs"]
mod child;

use child::ChildGuard;

struct Moto {
    endpoint: String,
    _server: ChildGuard,
}

/// The moto server, shared by the tests running at the same time and stopped when the last of them drops it (a
/// test that starts after that starts a new one).
fn moto() -> Option<Arc<Moto>> {
    static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
    static CREDENTIALS: Once = Once::new();
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(moto) = shared.upgrade() {
        return Some(moto);
    }
    let bin = std::env::var("SESAME_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(&bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(server) = ChildGuard::spawn(cmd, "moto_server") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("moto_server ({bin}) is required under CI=true");
        }
        eprintln!("skipping: moto_server not found (pip install 'moto[server]' or set SESAME_TEST_MOTO_SERVER)");
        return None;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start listening on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    CREDENTIALS.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY (invariant): set once, while no other test of this binary is past this lock, before any SDK client
        // reads them.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        }
    });
    let moto = Arc::new(Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _server: server,
    });
    *shared = Arc::downgrade(&moto);
    Some(moto)
}

fn uri(m: &Moto, key: &str) -> KekUri {
    format!("awskms://{key}?region=eu-west-1&endpoint={}", m.endpoint)
        .parse()
        .unwrap()
}

fn opts(create: bool) -> OpenOptions {
    OpenOptions {
        data_dir: std::env::temp_dir(),
        create_if_missing: create,
        passphrase: None,
        argon2: Argon2Params::default(),
        pkcs11_pin: None,
    }
}

#[tokio::test]
async fn moto_passes_the_suite() {
    let Some(m) = moto() else { return };
    let kek = open_kek(&uri(&m, "alias/sesame-a"), &opts(true)).await.unwrap();
    let other = open_kek(&uri(&m, "alias/sesame-b"), &opts(true)).await.unwrap();
    conformance::run_all(kek.as_ref(), other.as_ref()).await;
}

#[tokio::test]
async fn aliases_resolve_to_the_key_arn_that_each_wrap_records() {
    let Some(m) = moto() else { return };
    let err = open_kek(&uri(&m, "alias/missing"), &opts(false)).await.unwrap_err();
    assert!(matches!(err, KmsError::NotFound { .. }), "{err}");
    let kek = open_kek(&uri(&m, "alias/sesame-arn"), &opts(true)).await.unwrap();
    let ctx = WrapContext::new().with("dek", "d").with("scope", "s");
    let dek = Dek::generate();
    let wrapped = kek.wrap(&dek, &ctx).await.unwrap();
    assert!(
        wrapped.kek_version.starts_with("arn:aws:kms:eu-west-1:"),
        "{}",
        wrapped.kek_version
    );
    // Opening by the ARN itself finds the same key.
    let by_arn = open_kek(&uri(&m, &wrapped.kek_version), &opts(false)).await.unwrap();
    assert_eq!(by_arn.unwrap(&wrapped, &ctx).await.unwrap().as_bytes(), dek.as_bytes());
}

#[tokio::test]
async fn reencrypt_moves_a_wrap_between_aws_keys_inside_kms() {
    let Some(m) = moto() else { return };
    let a = open_kek(&uri(&m, "alias/sesame-re-a"), &opts(true)).await.unwrap();
    let b = open_kek(&uri(&m, "alias/sesame-re-b"), &opts(true)).await.unwrap();
    assert!(a.kms_partition().is_some() && a.kms_partition() == b.kms_partition());
    let ctx = WrapContext::new().with("dek", "d1").with("scope", "stack:o:p/s");
    let dek = Dek::generate();
    let under_a = a.wrap(&dek, &ctx).await.unwrap();
    let under_b = b
        .rewrap_from(a.as_ref(), &under_a, &ctx)
        .await
        .expect("two AWS keys in one region re-encrypt inside KMS")
        .unwrap();
    assert_ne!(
        under_b.kek_version, under_a.kek_version,
        "the new wrap records the target key"
    );
    assert_eq!(b.unwrap(&under_b, &ctx).await.unwrap().as_bytes(), dek.as_bytes());
    // Bound to the same context: another context does not unwrap it.
    let other = WrapContext::new().with("dek", "d2").with("scope", "stack:o:p/s");
    assert!(b.unwrap(&under_b, &other).await.is_err());
    // A tampered source wrap is refused by KMS, classified.
    let mut bad = under_a.clone();
    let n = bad.ciphertext.len();
    bad.ciphertext[n / 2] ^= 1;
    let err = b.rewrap_from(a.as_ref(), &bad, &ctx).await.unwrap().unwrap_err();
    assert!(
        matches!(err, KmsError::InvalidCiphertext { .. } | KmsError::Unavailable { .. }),
        "{err}"
    );
    // Another region is another partition: no KMS-side re-encryption, the caller unwraps and wraps.
    let elsewhere: KekUri = format!("awskms://alias/sesame-re-c?region=us-east-1&endpoint={}", m.endpoint)
        .parse()
        .unwrap();
    let c = open_kek(&elsewhere, &opts(true)).await.unwrap();
    assert!(c.rewrap_from(a.as_ref(), &under_a, &ctx).await.is_none());
}
