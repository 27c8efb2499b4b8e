//! The PKCS#11 adapter against a real SoftHSM2 token (Debian package `softhsm2`), made fresh in a temporary folder.
//!
//! Needs the SoftHSM module (`SESAME_TEST_PKCS11_MODULE`, default `/usr/lib/softhsm/libsofthsm2.so`) and
//! `softhsm2-util`. Without them the tests print why they skip; under `CI=true` they fail instead.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sesame_kms::{Argon2Params, Dek, KekUri, KmsError, OpenOptions, WrapContext, conformance, open_kek};
use zeroize::Zeroizing;

const PIN: &str = "4711-test-pin";

struct SoftHsm {
    module: PathBuf,
    _dir: tempfile::TempDir,
}

/// Makes one SoftHSM token for the whole test binary: the module reads `SOFTHSM2_CONF` once, when it is first
/// initialised, so every test shares this configuration.
fn softhsm() -> Option<&'static SoftHsm> {
    static HSM: OnceLock<Option<SoftHsm>> = OnceLock::new();
    HSM.get_or_init(|| {
        let module = PathBuf::from(
            std::env::var("SESAME_TEST_PKCS11_MODULE").unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into()),
        );
        let util = Command::new("softhsm2-util").arg("--version").output();
        if !module.exists() || util.is_err() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "SoftHSM2 is required under CI=true (module {} or softhsm2-util missing)",
                    module.display()
                );
            }
            eprintln!("skipping: SoftHSM2 not found (install the softhsm2 package or set SESAME_TEST_PKCS11_MODULE)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        #[allow(unsafe_code)]
        // SAFETY (of the invariant, not memory): this runs once, inside OnceLock initialisation, before any test
        // loads the PKCS#11 module, so no other thread reads the environment concurrently.
        unsafe {
            std::env::set_var("SOFTHSM2_CONF", &conf)
        };
        for label in ["sesame-test", "other-token"] {
            let out = Command::new("softhsm2-util")
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--pin",
                    PIN,
                    "--so-pin",
                    "5678",
                ])
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        Some(SoftHsm { module, _dir: dir })
    })
    .as_ref()
}

fn uri(hsm: &SoftHsm, token: &str, object: &str) -> KekUri {
    format!(
        "pkcs11:token={token};object={object}?module-path={}",
        hsm.module.display()
    )
    .parse()
    .unwrap()
}

fn opts(create: bool, pin: Option<&str>) -> OpenOptions {
    OpenOptions {
        data_dir: std::env::temp_dir(),
        create_if_missing: create,
        passphrase: None,
        argon2: Argon2Params::default(),
        pkcs11_pin: pin.map(|p| Zeroizing::new(p.to_owned())),
    }
}

#[tokio::test]
async fn softhsm_passes_the_suite() {
    let Some(hsm) = softhsm() else { return };
    let kek = open_kek(&uri(hsm, "sesame-test", "kek-a"), &opts(true, Some(PIN)))
        .await
        .unwrap();
    let other = open_kek(&uri(hsm, "sesame-test", "kek-b"), &opts(true, Some(PIN)))
        .await
        .unwrap();
    conformance::run_all(kek.as_ref(), other.as_ref()).await;
}

#[tokio::test]
async fn keys_are_created_only_when_asked_and_found_again() {
    let Some(hsm) = softhsm() else { return };
    let u = uri(hsm, "sesame-test", "kek-created");
    let err = open_kek(&u, &opts(false, Some(PIN))).await.unwrap_err();
    assert!(matches!(err, KmsError::NotFound { .. }), "{err}");
    let kek = open_kek(&u, &opts(true, Some(PIN))).await.unwrap();
    let dek = Dek::generate();
    let ctx = WrapContext::new().with("dek", "1");
    let wrapped = kek.wrap(&dek, &ctx).await.unwrap();
    assert_eq!(wrapped.kek_version.len(), 32, "the key's random CKA_ID is its version");
    // Opening again (without create) finds the same key on the token.
    let again = open_kek(&u, &opts(false, Some(PIN))).await.unwrap();
    assert_eq!(again.unwrap(&wrapped, &ctx).await.unwrap().as_bytes(), dek.as_bytes());
}

#[tokio::test]
async fn wrong_pin_missing_pin_and_missing_token_are_clear_errors() {
    let Some(hsm) = softhsm() else { return };
    // Create the key first with the right PIN (login state is per process, so test the wrong PIN on another token).
    let err = open_kek(&uri(hsm, "other-token", "k"), &opts(true, Some("wrong-pin")))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::PermissionDenied { .. }), "{err}");
    assert!(
        !format!("{err} {err:?}").contains("wrong-pin"),
        "the PIN must not appear in errors"
    );
    let err = open_kek(&uri(hsm, "sesame-test", "k"), &opts(true, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SESAME_PKCS11_PIN"), "{err}");
    let err = open_kek(&uri(hsm, "no-such-token", "k"), &opts(true, Some(PIN)))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::NotFound { .. }), "{err}");
    let err = "pkcs11:token=t;object=k?module-path=/x&pin-value=1234"
        .parse::<KekUri>()
        .unwrap_err();
    assert!(!err.to_string().contains("1234"));
}

#[tokio::test]
async fn pin_source_file_is_read() {
    let Some(hsm) = softhsm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let u: KekUri = format!(
        "pkcs11:token=sesame-test;object=kek-pinfile?module-path={}&pin-source=file:{}",
        hsm.module.display(),
        pin_file.display()
    )
    .parse()
    .unwrap();
    let kek = open_kek(&u, &opts(true, None)).await.unwrap();
    let dek = Dek::generate();
    let w = kek.wrap(&dek, &WrapContext::new()).await.unwrap();
    assert_eq!(
        kek.unwrap(&w, &WrapContext::new()).await.unwrap().as_bytes(),
        dek.as_bytes()
    );
}
