//! The bare request path, as a baseline for Sesame's benchmarks: `GET /healthz` answers `ok`, `POST` (or `PUT`) `/echo` parses
//! `{"plaintext": "…"}` and answers `{"ciphertext": "…"}` with the same text — the shape and size of a stack or
//! transit encrypt, with no authentication, cryptography or audit. Usage: `echo-probe PORT` (binds 127.0.0.1).

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    plaintext: String,
}

#[derive(Serialize)]
struct Answer {
    ciphertext: String,
}

async fn echo(Json(r): Json<Request>) -> Json<Answer> {
    Json(Answer { ciphertext: r.plaintext })
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: echo-probe PORT");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/echo", post(echo).put(echo));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the port is free");
        axum::serve(listener, app).await.expect("serving");
    });
}
