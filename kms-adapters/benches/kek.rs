//! Wrap and unwrap of one DEK per adapter: local key file, passphrase (derived key cached, as in a running
//! server), and — with the `pkcs11` feature and SoftHSM2 installed — a SoftHSM token.
//!
//! Run: `cargo bench -p sesame-kms --all-features --bench kek -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use sesame_kms::{Argon2Params, Dek, Kek, KekUri, OpenOptions, WrapContext, open_kek};
use std::sync::Arc;
use zeroize::Zeroizing;

fn options(dir: &std::path::Path) -> OpenOptions {
    OpenOptions {
        data_dir: dir.to_owned(),
        create_if_missing: true,
        passphrase: Some(Zeroizing::new("bench passphrase".into())),
        argon2: Argon2Params::default(),
        pkcs11_pin: Some(Zeroizing::new("1234".into())),
    }
}

#[cfg(feature = "pkcs11")]
fn softhsm_uri(dir: &std::path::Path) -> Option<String> {
    let module = "/usr/lib/softhsm/libsofthsm2.so";
    if !std::path::Path::new(module).exists() {
        eprintln!("skipping the pkcs11 bench: {module} not found");
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).ok()?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .ok()?;
    #[allow(unsafe_code)]
    // SAFETY (invariant): set before the module is first loaded, while the bench is single-threaded.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &conf)
    };
    let ok = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .output()
        .ok()?
        .status
        .success();
    ok.then(|| format!("pkcs11:token=bench;object=kek?module-path={module}"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    #[allow(unused_mut)]
    let mut uris = vec!["local://bench".to_owned(), "passphrase://".to_owned()];
    #[cfg(feature = "pkcs11")]
    uris.extend(softhsm_uri(dir.path()));
    for u in uris {
        let uri: KekUri = u.parse().unwrap();
        let kek: Arc<dyn Kek> = rt.block_on(open_kek(&uri, &options(dir.path()))).unwrap();
        let ctx = WrapContext::new().with("dek", "0190abcd").with("scope", "stack:o:p/s");
        let dek = Dek::generate();
        let wrapped = rt.block_on(kek.wrap(&dek, &ctx)).unwrap();
        // Warm the passphrase derivation cache for the unwrap salt too.
        rt.block_on(kek.unwrap(&wrapped, &ctx)).unwrap();
        let name = uri.scheme().to_owned();
        c.bench_function(&format!("{name}/wrap"), |b| {
            b.to_async(&rt).iter(|| async { kek.wrap(&dek, &ctx).await.unwrap() })
        });
        c.bench_function(&format!("{name}/unwrap"), |b| {
            b.to_async(&rt)
                .iter(|| async { kek.unwrap(&wrapped, &ctx).await.unwrap() })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
