//! TLS set-up shared by both edges: the server's listener and the CLI's HTTP client use rustls with the aws-lc-rs
//! crypto provider, installed once per process. Lives outside `server` and `cli` so that neither edge imports the
//! other.

/// Installs aws-lc-rs as rustls' process-wide crypto provider (idempotent: a provider already installed stays).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
