//! The one layer every request passes first and every answer passes last, written as a plain `tower::Service`.
//!
//! Rule: in order, a request gets its id (`X-Request-Id`: the client's own, else a fresh UUIDv4), is refused with
//! 400 if its path or query holds a control character ([`super::params::check_uri`]), and goes to the routes; its
//! answer — whoever made it, the refusal included — is finished by [`super::answer::finish_answer`] (security
//! headers, the error shape of its API, HSTS under TLS) and carries the request's id. These were six separate
//! layers (two `from_fn` middlewares, set and propagate request id, an outer router); each one cloned the stack
//! below it and boxed its future on every request, about 5 µs of a `GET /healthz` that costs 12–16 µs in all
//! (docs/benchmarks.md, "One edge layer"). Here a request costs one clone of the inner service and no allocation
//! beyond its id's header value.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::{HeaderName, HeaderValue, Request};
use axum::response::{IntoResponse, Response};

use super::answer::{Shape, finish_answer};

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The edge around `inner` (the routes, with the body layers).
#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    tls: bool,
}

impl<S> Edge<S> {
    /// `tls`: answers also carry `Strict-Transport-Security`.
    pub fn new(inner: S, tls: bool) -> Self {
        Edge { inner, tls }
    }
}

/// A fresh request id: a random UUID (version 4) from the thread's user-space generator (no system call).
fn fresh_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

impl<S, B, R> tower::Service<Request<B>> for Edge<S>
where
    S: tower::Service<Request<B>, Response = axum::http::Response<R>, Error = Infallible>,
    R: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    R::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = fresh_id();
                req.headers_mut().insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        let shape = Shape::of(req.uri().path());
        let (inner, refused) = match super::params::check_uri(req.uri()) {
            Ok(()) => (Some(self.inner.call(req)), None),
            Err(e) => (None, Some(e.into_response())),
        };
        EdgeFuture {
            inner,
            refused,
            shape,
            tls: self.tls,
            id,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`Edge`]: the inner service's (or the refusal), finished.
    pub struct EdgeFuture<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<Response>,
        shape: Shape,
        tls: bool,
        id: HeaderValue,
    }
}

impl<F, R> Future for EdgeFuture<F>
where
    F: Future<Output = Result<axum::http::Response<R>, Infallible>>,
    R: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    R::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.as_pin_mut() {
            Some(inner) => match ready!(inner.poll(cx)) {
                Ok(r) => r.map(axum::body::Body::new),
                Err(never) => match never {},
            },
            None => this
                .refused
                .take()
                .unwrap_or_else(|| axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        };
        let mut response = finish_answer(*this.shape, *this.tls, response);
        response
            .headers_mut()
            .entry(X_REQUEST_ID)
            .or_insert_with(|| this.id.clone());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    fn edge(tls: bool) -> Edge<axum::Router> {
        Edge::new(axum::Router::new().route("/api/x", get(|| async { "fine" })), tls)
    }

    async fn call(tls: bool, req: Request<axum::body::Body>) -> Response {
        edge(tls).oneshot(req).await.unwrap_or_else(|never| match never {})
    }

    fn get_req(uri: &str) -> axum::http::request::Builder {
        Request::builder().uri(uri)
    }

    #[tokio::test]
    async fn every_answer_is_finished_and_carries_the_request_id() {
        let fresh = call(false, get_req("/api/x").body(axum::body::Body::empty()).unwrap()).await;
        assert_eq!(fresh.status(), StatusCode::OK);
        let id = fresh.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_eq!(fresh.headers()["x-content-type-options"], "nosniff");
        assert_eq!(fresh.headers()["cache-control"], "no-store");
        assert!(!fresh.headers().contains_key("strict-transport-security"));
        // The client's own id is kept; an unrouted path is finished too (ESC's shape under /api/), under TLS with HSTS.
        let own = call(
            true,
            get_req("/api/missing")
                .header(X_REQUEST_ID, "trace-4711")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(own.status(), StatusCode::NOT_FOUND);
        assert_eq!(own.headers()[X_REQUEST_ID], "trace-4711");
        assert_eq!(own.headers()["strict-transport-security"], super::super::answer::HSTS);
        assert_eq!(own.headers()["content-type"], "application/json");
    }

    #[tokio::test]
    async fn a_control_character_is_refused_before_routing_and_the_refusal_is_finished() {
        for uri in ["/api/x%00", "/api/x?q=%0a", "/api/%7f"] {
            let r = call(false, get_req(uri).body(axum::body::Body::empty()).unwrap()).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{uri}");
            assert!(r.headers().contains_key(X_REQUEST_ID), "{uri}");
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["code"], 400, "{uri}");
            assert!(v["message"].as_str().unwrap().contains("control characters"), "{uri}");
        }
    }
}
