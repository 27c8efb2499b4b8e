//! The injector's edge: `sesame k8s webhook` serves AdmissionReview v1 over TLS at `POST /mutate` (and `GET
//! /healthz`), answering with [`crate::core::k8s::review`], the pure decision. The certificate and key files are
//! re-read when either changes (a Kubernetes Secret volume swaps them in place), so a rotated certificate is served
//! without a restart; a pair that fails to load is logged and the previous one kept.
//!
//! Rules: this module only moves bytes and chooses statuses (200 with the review's answer; 400 for a body that is
//! not an AdmissionReview v1, with the reason and never the body; 413 past [`MAX_BODY`]); it holds no secret, calls
//! no Sesame API and checks no rights. It is its own edge, outside `server`, so the CLI may start it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;

use crate::core::k8s::{InjectorConfig, review};

/// Largest AdmissionReview read, bytes (the API server sends at most about 3 MiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// How long a client has for its TLS handshake, and then for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How the webhook runs.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// How often the certificate and key files are checked for changes.
    pub reload_every: Duration,
    /// What is injected.
    pub injector: InjectorConfig,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The certificate or key could not be loaded.
    #[error("loading the TLS certificate {cert} and key {key}: {source}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A running webhook.
pub struct RunningWebhook {
    addr: SocketAddr,
    handle: axum_server::Handle,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    reloader: tokio::task::JoinHandle<()>,
}

impl RunningWebhook {
    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish (up to 10 s) and waits for the server.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.reloader.abort();
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        self.served.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Waits until the server stops by itself (an I/O failure).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.served)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// The webhook's routes.
pub fn router(injector: Arc<InjectorConfig>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(injector)
}

async fn mutate(State(injector): State<Arc<InjectorConfig>>, body: Bytes) -> Response {
    match review(&body, &injector) {
        Ok(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "refused a malformed AdmissionReview");
            let body = serde_json::json!({"code": 400, "message": e.to_string()});
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// What identifies a version of a file: inode, modification time and length (`None` when it cannot be read). A
/// Secret volume swaps in new files (new inode); an edit in place changes the time or the length.
fn stamp(path: &Path) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.len()))
}

/// Starts the webhook: loads the certificate, binds, serves, and watches the files.
pub async fn start(config: WebhookConfig) -> Result<RunningWebhook, WebhookError> {
    crate::tls::install_crypto_provider();
    let tls_error = |source| WebhookError::Tls {
        cert: config.cert.clone(),
        key: config.key.clone(),
        source,
    };
    let tls = RustlsConfig::from_pem_file(&config.cert, &config.key)
        .await
        .map_err(tls_error)?;
    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| WebhookError::Bind {
        addr: config.listen,
        source,
    })?;
    listener.set_nonblocking(true).map_err(|source| WebhookError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| WebhookError::Bind {
        addr: config.listen,
        source,
    })?;
    let handle = axum_server::Handle::new();
    let app = router(Arc::new(config.injector.clone()));
    // A client (the API server) gets 10 s for its TLS handshake and for a request's headers.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls.clone()).handshake_timeout(HEADER_TIMEOUT);
    let mut server = axum_server::from_tcp(listener)
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let served = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let reloader = tokio::spawn(watch(tls, config.cert, config.key, config.reload_every));
    tracing::info!(%addr, "admission webhook listening (POST /mutate)");
    Ok(RunningWebhook {
        addr,
        handle,
        served,
        reloader,
    })
}

/// Reloads the certificate and key whenever either file changes.
async fn watch(tls: RustlsConfig, cert: PathBuf, key: PathBuf, every: Duration) {
    let mut seen = (stamp(&cert), stamp(&key));
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        match tls.reload_from_pem_file(&cert, &key).await {
            Ok(()) => {
                tracing::info!(cert = %cert.display(), "reloaded the webhook's TLS certificate");
                seen = now;
            }
            // A half-written pair (certificate swapped, key not yet): keep serving the old one and try again.
            Err(e) => tracing::warn!(error = %e, "could not reload the webhook's TLS certificate; keeping the old one"),
        }
    }
}
