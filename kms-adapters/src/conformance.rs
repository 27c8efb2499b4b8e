//! The adapter conformance suite: one set of checks that every KEK backend passes, run from each adapter's tests
//! (`tests/conformance.rs` here; cloud and HSM adapters run the same functions against their test servers).
//!
//! Test code, compiled only with the `conformance` feature (off by default; the tests of this crate turn it on).
//!
//! Each check panics with a message naming the adapter when the adapter misbehaves. `kek` and `other` must be two
//! instances of the same backend holding *different* keys.

use base64::Engine;

use crate::Kek;
use crate::dek::{Dek, WrapContext, WrappedDek};
use crate::error::KmsError;

fn ctx(dek_id: &str) -> WrapContext {
    WrapContext::new().with("dek", dek_id).with("scope", "stack:org:p/s")
}

fn refused(result: Result<Dek, KmsError>) -> bool {
    matches!(
        result,
        Err(KmsError::InvalidCiphertext { .. }) | Err(KmsError::KeyMismatch { .. })
    )
}

/// Runs every check.
pub async fn run_all(kek: &dyn Kek, other: &dyn Kek) {
    round_trip(kek).await;
    wrong_context(kek).await;
    tampering(kek).await;
    another_key(kek, other).await;
    secrets_stay_out_of_debug(kek).await;
    concurrency(kek).await;
}

/// Wrap then unwrap gives the DEK back; two wraps of one DEK both unwrap; the wrap records a key version.
pub async fn round_trip(kek: &dyn Kek) {
    let dek = Dek::generate();
    let a = kek.wrap(&dek, &ctx("d1")).await.expect("wrap");
    let b = kek.wrap(&dek, &ctx("d1")).await.expect("wrap");
    assert!(!a.kek_version.is_empty(), "{kek:?}: a wrap must record the key version");
    assert!(!a.wrap_alg.is_empty(), "{kek:?}: a wrap must record its algorithm");
    for w in [&a, &b] {
        let back = kek.unwrap(w, &ctx("d1")).await.expect("unwrap");
        assert_eq!(back.as_bytes(), dek.as_bytes(), "{kek:?}: round trip changed the DEK");
    }
    assert!(
        !a.ciphertext.windows(32).any(|w| w == dek.as_bytes()),
        "{kek:?}: the DEK is visible in the wrap"
    );
}

/// Another context — another id, another scope, or shifted field boundaries — does not unwrap.
pub async fn wrong_context(kek: &dyn Kek) {
    let dek = Dek::generate();
    let wrapped = kek.wrap(&dek, &WrapContext::new().with("ab", "c")).await.expect("wrap");
    for other in [
        WrapContext::new().with("a", "bc"),
        WrapContext::new().with("ab", "c").with("x", ""),
        WrapContext::new(),
        WrapContext::new().with("ab", "C"),
    ] {
        let result = kek.unwrap(&wrapped, &other).await;
        assert!(
            matches!(result, Err(KmsError::InvalidCiphertext { .. })),
            "{kek:?}: context {other:?} must be refused as invalid ciphertext, got {result:?}"
        );
    }
}

/// Every single-byte change of the wrapped bytes, truncation, and an empty blob are refused.
pub async fn tampering(kek: &dyn Kek) {
    let dek = Dek::generate();
    let c = ctx("d2");
    let wrapped = kek.wrap(&dek, &c).await.expect("wrap");
    for i in 0..wrapped.ciphertext.len() {
        let mut t = wrapped.clone();
        t.ciphertext[i] ^= 0x80;
        assert!(
            refused(kek.unwrap(&t, &c).await),
            "{kek:?}: a change at byte {i} was not detected"
        );
    }
    for n in [0, 1, wrapped.ciphertext.len() / 2, wrapped.ciphertext.len() - 1] {
        let mut t = wrapped.clone();
        t.ciphertext.truncate(n);
        assert!(
            refused(kek.unwrap(&t, &c).await),
            "{kek:?}: truncation to {n} bytes was not detected"
        );
    }
    let mut t: WrappedDek = wrapped.clone();
    t.wrap_alg = "NONE".into();
    assert!(
        refused(kek.unwrap(&t, &c).await),
        "{kek:?}: an unknown wrap algorithm was accepted"
    );
}

/// A DEK wrapped by one key does not unwrap under another instance with another key.
pub async fn another_key(kek: &dyn Kek, other: &dyn Kek) {
    let dek = Dek::generate();
    let c = ctx("d3");
    let wrapped = kek.wrap(&dek, &c).await.expect("wrap");
    let result = other.unwrap(&wrapped, &c).await;
    assert!(refused(result), "{other:?}: unwrapped a DEK wrapped by {kek:?}");
}

/// Neither the KEK's nor the DEK's `Debug`, nor any error message, shows key bytes.
pub async fn secrets_stay_out_of_debug(kek: &dyn Kek) {
    let dek = Dek::from_bytes([0x5A; 32]);
    let shown = format!("{dek:?} {kek:?}");
    let hex: String = dek.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(dek.as_bytes());
    assert!(!shown.contains(&hex) && !shown.contains(&b64), "{shown}");
    let wrapped = kek.wrap(&dek, &ctx("d4")).await.expect("wrap");
    let err = kek.unwrap(&wrapped, &ctx("d5")).await.expect_err("wrong context");
    let msg = format!("{err} {err:?} {wrapped:?}");
    assert!(!msg.contains(&hex) && !msg.contains(&b64), "{msg}");
}

/// Many concurrent wraps and unwraps all succeed.
pub async fn concurrency(kek: &dyn Kek) {
    let tasks = (0..64).map(|i| async move {
        let dek = Dek::generate();
        let c = ctx(&format!("c{i}"));
        let w = kek.wrap(&dek, &c).await.expect("wrap");
        let back = kek.unwrap(&w, &c).await.expect("unwrap");
        assert_eq!(back.as_bytes(), dek.as_bytes());
    });
    join_all(tasks).await;
}

/// Polls futures together on the current task (no runtime dependency beyond what the caller runs).
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
