//! The shared conformance suite against the local key-file and passphrase KEKs, plus what is particular to each:
//! key files (creation only when asked, mode 0600, refusal of readable files, reopening), passphrases (wrong
//! passphrase, changed parameters), and URI parsing.

use sesame_kms::{Argon2Params, Dek, KekUri, KmsError, LocalKek, OpenOptions, WrapContext, conformance, open_kek};
use zeroize::Zeroizing;

fn opts(dir: &std::path::Path, create: bool, passphrase: Option<&str>) -> OpenOptions {
    OpenOptions {
        data_dir: dir.to_owned(),
        create_if_missing: create,
        passphrase: passphrase.map(|p| Zeroizing::new(p.to_owned())),
        argon2: Argon2Params {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        },
        pkcs11_pin: None,
    }
}

fn uri(s: &str) -> KekUri {
    s.parse().unwrap()
}

#[tokio::test]
async fn local_key_file_passes_the_suite() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let kek = open_kek(&uri("local://default"), &opts(a.path(), true, None))
        .await
        .unwrap();
    let other = open_kek(&uri("local://default"), &opts(b.path(), true, None))
        .await
        .unwrap();
    conformance::run_all(kek.as_ref(), other.as_ref()).await;
}

#[tokio::test]
async fn passphrase_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let kek = open_kek(&uri("passphrase://"), &opts(dir.path(), false, Some("correct horse")))
        .await
        .unwrap();
    let other = open_kek(&uri("passphrase://"), &opts(dir.path(), false, Some("battery staple")))
        .await
        .unwrap();
    conformance::run_all(kek.as_ref(), other.as_ref()).await;
}

#[tokio::test]
async fn key_files_are_made_only_when_asked_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let u = uri("local://default");
    let err = open_kek(&u, &opts(dir.path(), false, None)).await.unwrap_err();
    assert!(matches!(err, KmsError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("kek-default.key"), "{err}");
    assert!(
        !LocalKek::path_for(dir.path(), "default").exists(),
        "a missing key file must not be created"
    );

    let kek = open_kek(&u, &opts(dir.path(), true, None)).await.unwrap();
    let path = LocalKek::path_for(dir.path(), "default");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let dek = Dek::generate();
    let ctx = WrapContext::new().with("dek", "1");
    let wrapped = kek.wrap(&dek, &ctx).await.unwrap();

    // Reopening (even with create allowed) keeps the same key: old wraps unwrap.
    let again = open_kek(&u, &opts(dir.path(), true, None)).await.unwrap();
    assert_eq!(again.unwrap(&wrapped, &ctx).await.unwrap().as_bytes(), dek.as_bytes());

    // Another name is another file and another key.
    let other = open_kek(&uri("local://second"), &opts(dir.path(), true, None))
        .await
        .unwrap();
    assert!(matches!(
        other.unwrap(&wrapped, &ctx).await,
        Err(KmsError::KeyMismatch { .. })
    ));

    // A key file others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = open_kek(&u, &opts(dir.path(), false, None)).await.unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // A corrupt key file is refused with a clear message.
    std::fs::write(&path, "not a key").unwrap();
    let err = open_kek(&u, &opts(dir.path(), false, None)).await.unwrap_err();
    assert!(err.to_string().contains("not a Sesame local key file"), "{err}");
}

#[tokio::test]
async fn concurrent_creation_agrees_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let u = uri("local://race");
    let opens = (0..8).map(|_| {
        let (u, o) = (u.clone(), opts(dir.path(), true, None));
        async move { open_kek(&u, &o).await }
    });
    let keks: Vec<_> = futures_collect(opens).await;
    let dek = Dek::generate();
    let ctx = WrapContext::new();
    let wrapped = keks[0].wrap(&dek, &ctx).await.unwrap();
    for k in &keks {
        assert_eq!(k.unwrap(&wrapped, &ctx).await.unwrap().as_bytes(), dek.as_bytes());
    }
}

async fn futures_collect<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = Result<T, KmsError>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn passphrases_wrong_missing_and_changed_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let u = uri("passphrase://");
    let err = open_kek(&u, &opts(dir.path(), false, None)).await.unwrap_err();
    assert!(err.to_string().contains("SESAME_PASSPHRASE"), "{err}");

    let kek = open_kek(&u, &opts(dir.path(), false, Some("s3cret-pass")))
        .await
        .unwrap();
    let dek = Dek::generate();
    let ctx = WrapContext::new().with("dek", "x");
    let wrapped = kek.wrap(&dek, &ctx).await.unwrap();
    assert!(!format!("{kek:?} {wrapped:?}").contains("s3cret-pass"));

    // A wrong passphrase is named as another key, and says nothing about the passphrase.
    let wrong = open_kek(&u, &opts(dir.path(), false, Some("s3cret-pasS")))
        .await
        .unwrap();
    let err = wrong.unwrap(&wrapped, &ctx).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyMismatch { .. }), "{err}");
    assert!(!err.to_string().contains("s3cret"));

    // A new process (new salt) with other parameters still opens old wraps: parameters travel with the wrap.
    let mut changed = opts(dir.path(), false, Some("s3cret-pass"));
    changed.argon2 = Argon2Params {
        m_cost_kib: 128,
        t_cost: 2,
        p_cost: 1,
    };
    let later = open_kek(&u, &changed).await.unwrap();
    assert_eq!(later.unwrap(&wrapped, &ctx).await.unwrap().as_bytes(), dek.as_bytes());
    let newer = later.wrap(&dek, &ctx).await.unwrap();
    assert_ne!(newer.kek_version, wrapped.kek_version, "a new salt gives a new key id");
    assert_eq!(kek.unwrap(&newer, &ctx).await.unwrap().as_bytes(), dek.as_bytes());
}

#[test]
fn uris_are_parsed_once_and_refuse_secrets() {
    assert_eq!(uri("local://default").scheme(), "local");
    assert_eq!(uri("LOCAL://default").to_string(), "local://default");
    assert_eq!(uri("passphrase://").scheme(), "passphrase");
    for bad in [
        "local://",
        "local://a/b",
        "local://../x",
        "ftp://x",
        "nothing",
        "awskms://",
        "passphrase:x",
    ] {
        assert!(bad.parse::<KekUri>().is_err(), "{bad} must be refused");
    }
    // gcpkms:// names a CryptoKey (or one of its versions) by its full resource name, with or without the feature.
    for good in [
        "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
        "gcpkms://projects/example.com:p-1/locations/us-east1/keyRings/r_1/cryptoKeys/k-2/cryptoKeyVersions/3",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?endpoint=http://127.0.0.1:8080",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?endpoint=https://kms.example.internal",
    ] {
        assert!(good.parse::<KekUri>().is_ok(), "{good} must parse");
    }
    for bad in [
        "gcpkms://",
        "gcpkms://k",
        "gcpkms://projects/p/locations/l/keyRings/r",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/",
        "gcpkms://projects/p/locations/l/keyRings/r/keys/k",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/x",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1/extra",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?region=x",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?endpoint=http://kms.example.com",
        "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k?endpoint=ftp://127.0.0.1",
    ] {
        assert!(bad.parse::<KekUri>().is_err(), "{bad} must be refused");
    }
    let err = "pkcs11:token=t;object=k?pin-value=1234".parse::<KekUri>().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pin-value") && !msg.contains("1234"), "{msg}");
}

#[tokio::test]
async fn cloud_schemes_name_the_missing_feature() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    if cfg!(not(feature = "gcp")) {
        cases.push(("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "gcp"));
    }
    if cfg!(not(feature = "azure")) {
        cases.push(("azurekeyvault://v.vault.azure.net/keys/k", "azure"));
    }
    if cfg!(not(feature = "aws")) {
        cases.push(("awskms://alias/sesame?region=eu-west-1", "aws"));
    }
    if cfg!(not(feature = "pkcs11")) {
        cases.push(("pkcs11:token=t;object=k", "pkcs11"));
    }
    // With every feature on, only the unknown scheme is left to refuse.
    assert!(
        "nosuch://k".parse::<sesame_kms::KekUri>().is_err() || {
            let err = open_kek(&uri("nosuch://k"), &opts(dir.path(), false, None))
                .await
                .unwrap_err();
            err.to_string().contains("nosuch")
        }
    );
    for (u, feature) in cases {
        let err = open_kek(&uri(u), &opts(dir.path(), false, None)).await.unwrap_err();
        assert!(
            matches!(&err, KmsError::Unsupported { feature: f, .. } if f == feature),
            "{u}: {err}"
        );
    }
}
