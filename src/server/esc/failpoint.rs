//! Failpoints for crash tests: `SESAME_FAILPOINT=<name>` makes the process abort (no unwinding, no clean-up, as a
//! power cut would) the first time it reaches the named point. Read once, at start-up ([`init`]); honoured only in
//! debug builds — a release build compiles every failpoint to nothing, whatever its environment says.
//!
//! Points: [`ROTATE_BEFORE_WRITE`], after a rotation's new secrets are drawn and sealed and before the revision
//! holding them is written.

/// After the rotators ran, before the revision write.
pub const ROTATE_BEFORE_WRITE: &str = "rotate-before-write";

#[cfg(debug_assertions)]
static ARMED: std::sync::LazyLock<Option<String>> =
    std::sync::LazyLock::new(|| std::env::var("SESAME_FAILPOINT").ok().filter(|s| !s.is_empty()));

/// Reads `SESAME_FAILPOINT` (debug builds only); later changes of the environment are not seen.
pub fn init() {
    #[cfg(debug_assertions)]
    if let Some(name) = ARMED.as_deref() {
        tracing::warn!(
            failpoint = name,
            "failpoint armed: the process aborts when it reaches it"
        );
    }
}

/// Aborts the process if `name` is the armed failpoint (debug builds only).
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if ARMED.as_deref() == Some(name) {
        eprintln!("failpoint {name} reached: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
