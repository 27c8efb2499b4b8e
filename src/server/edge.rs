//! The one service every request passes first and every answer passes last, written as a plain `tower::Service`
//! in front of the routes, made once per connection.
//!
//! Rule: in order, a request is refused with 400 if its path or query holds a control character
//! ([`super::params::check_uri`]); it carries its connection's peer address (`ConnectInfo`, for the audit log and
//! the failure throttle); a request with a body gets the body limit (axum's `DefaultBodyLimit`, read by the body
//! extractors) and, when it names a `Content-Encoding`, the gzip layer in front of that limit, so the limit bounds
//! the *decompressed* size; a request without a body skips both, as it has nothing for them to do. Its answer —
//! whoever made it, the refusal included — is finished by [`super::answer::finish_answer`] (security headers, the
//! error shape of its API, HSTS under TLS) and carries `X-Request-Id`: the client's own (up to
//! [`MAX_REQUEST_ID`] bytes), else a fresh UUIDv4. These were six separate layers, then an outer router around
//! this service; each one cloned the stack below it and boxed its future or inserted a request extension on every
//! request (docs/benchmarks.md, "One edge layer" and "The edge without layers"). Here a request without a body
//! costs no allocation beyond its peer address's extension and its id.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::header::CONTENT_ENCODING;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use tower::Layer;
use tower_http::decompression::{RequestDecompressionFuture, RequestDecompressionLayer};

use super::answer::{Shape, finish_answer};

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client request id that is echoed back; a longer one is replaced by a fresh id (the answer is not
/// made to carry whatever a client sent in its headers).
pub const MAX_REQUEST_ID: usize = 128;

/// The edge around the routes, for one connection (or none: in-process calls carry no peer address).
#[derive(Clone, Debug)]
pub struct Edge {
    routes: axum::Router,
    body_limit: usize,
    tls: bool,
    peer: Option<SocketAddr>,
}

impl Edge {
    /// `body_limit`: the largest body a handler reads, after gunzip; `tls`: answers also carry
    /// `Strict-Transport-Security`.
    pub fn new(routes: axum::Router, body_limit: usize, tls: bool) -> Self {
        Edge {
            routes,
            body_limit,
            tls,
            peer: None,
        }
    }
}

/// Makes the [`Edge`] of each accepted connection, carrying its peer address.
#[derive(Clone, Debug)]
pub struct MakeEdge(Edge);

impl MakeEdge {
    /// See [`Edge::new`].
    pub fn new(routes: axum::Router, body_limit: usize, tls: bool) -> Self {
        MakeEdge(Edge::new(routes, body_limit, tls))
    }
}

impl tower::Service<SocketAddr> for MakeEdge {
    type Response = Edge;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Edge, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, peer: SocketAddr) -> Self::Future {
        let mut edge = self.0.clone();
        edge.peer = Some(peer);
        std::future::ready(Ok(edge))
    }
}

/// A fresh request id: a UUID (version 4, RFC 9562 variant) whose random bits come from the thread's fast
/// generator (`fastrand`: a request id names a request, it guards nothing, and a client may send its own), written
/// into one shared buffer that the answer only references.
fn fresh_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    // Hyphenated lowercase hex is always a valid header value.
    HeaderValue::from_maybe_shared(axum::body::Bytes::from_owner(hyphenated(id.as_bytes())))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// `bytes` as a hyphenated lowercase UUID (`8-4-4-4-12` hex digits), written with a table rather than the
/// formatter.
fn hyphenated(bytes: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    text
}

impl<B> tower::Service<Request<B>> for Edge
where
    B: HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(X_REQUEST_ID)
            .filter(|id| id.len() <= MAX_REQUEST_ID)
            .cloned();
        let shape = Shape::of(req.uri().path());
        let inner = match super::params::check_uri(req.uri()) {
            Err(e) => Inner::Refused {
                answer: Some(e.into_response()),
            },
            Ok(()) => {
                let mut req = req.map(Body::new);
                if let Some(peer) = self.peer {
                    req.extensions_mut().insert(ConnectInfo(peer));
                }
                if req.body().is_end_stream() {
                    Inner::Routed {
                        future: tower::Service::call(&mut self.routes, req),
                    }
                } else {
                    let mut limited = DefaultBodyLimit::max(self.body_limit).layer(self.routes.clone());
                    if req.headers().contains_key(CONTENT_ENCODING) {
                        Inner::Decompressed {
                            future: tower::Service::call(&mut RequestDecompressionLayer::new().layer(limited), req),
                        }
                    } else {
                        Inner::Routed {
                            future: tower::Service::call(&mut limited, req),
                        }
                    }
                }
            }
        };
        EdgeFuture {
            inner,
            shape,
            tls: self.tls,
            id,
        }
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner {
        Routed { #[pin] future: RouteFuture<Infallible> },
        Decompressed { #[pin] future: RequestDecompressionFuture<RouteFuture<Infallible>, Body, Infallible> },
        Refused { answer: Option<Response> },
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`Edge`]: the routes' (or the refusal), finished.
    pub struct EdgeFuture {
        #[pin]
        inner: Inner,
        shape: Shape,
        tls: bool,
        id: Option<HeaderValue>,
    }
}

impl Future for EdgeFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.project() {
            InnerProj::Routed { future } => match ready!(future.poll(cx)) {
                Ok(r) => r,
                Err(never) => match never {},
            },
            InnerProj::Decompressed { future } => match ready!(future.poll(cx)) {
                Ok(r) => r.map(Body::new),
                Err(never) => match never {},
            },
            InnerProj::Refused { answer } => answer
                .take()
                .unwrap_or_else(|| axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        };
        let mut response = finish_answer(*this.shape, *this.tls, response);
        response
            .headers_mut()
            .entry(X_REQUEST_ID)
            .or_insert_with(|| this.id.take().unwrap_or_else(fresh_id));
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    const LIMIT: usize = 64;

    fn routes() -> axum::Router {
        axum::Router::new()
            .route("/api/x", get(|| async { "fine" }))
            // The body's length as the handler read it (through axum's extractor, which applies the limit).
            .route(
                "/api/len",
                axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/api/peer",
                get(|req: Request<Body>| async move {
                    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
                        Some(ConnectInfo(peer)) => peer.to_string(),
                        None => "none".to_owned(),
                    }
                }),
            )
    }

    fn edge(tls: bool) -> Edge {
        Edge::new(routes(), LIMIT, tls)
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
        // The longest client id is echoed; one byte more and it is replaced by a fresh id.
        for (n, echoed) in [(MAX_REQUEST_ID, true), (MAX_REQUEST_ID + 1, false), (8192, false)] {
            let sent = "r".repeat(n);
            let r = call(
                false,
                get_req("/api/x")
                    .header(X_REQUEST_ID, &sent)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            let got = r.headers()[X_REQUEST_ID].to_str().unwrap();
            assert_eq!(got == sent, echoed, "{n}");
            if !echoed {
                assert_eq!(uuid::Uuid::parse_str(got).unwrap().get_version_num(), 4, "{n}");
            }
        }
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

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    async fn post_len(req: Request<Body>) -> (StatusCode, String) {
        let r = call(false, req).await;
        let status = r.status();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn bodies_are_bounded_after_gunzip_and_bodiless_requests_skip_both() {
        let post = || Request::builder().method("POST").uri("/api/len");
        // Plain bodies up to the limit pass; one byte more is 413 in ESC's shape.
        let (status, len) = post_len(post().body(Body::from(vec![b'a'; LIMIT])).unwrap()).await;
        assert_eq!((status, len.as_str()), (StatusCode::OK, "64"));
        let (status, body) = post_len(post().body(Body::from(vec![b'a'; LIMIT + 1])).unwrap()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert!(body.contains("\"code\":413"), "{body}");
        // A body of unknown length (a stream, as chunked transfer gives) is bounded the same way.
        let chunks = futures::stream::iter(
            (0..3).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'a'; LIMIT / 2]))),
        );
        let (status, _) = post_len(post().body(Body::from_stream(chunks)).unwrap()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // gzip is inflated before the limit: 64 bytes pass, 65 (compressing to far fewer) do not.
        for (n, want) in [(LIMIT, StatusCode::OK), (LIMIT + 1, StatusCode::PAYLOAD_TOO_LARGE)] {
            let packed = gzip(&vec![b'a'; n]);
            assert!(packed.len() < LIMIT, "the compressed form is under the limit");
            let req = post()
                .header(CONTENT_ENCODING, "gzip")
                .body(Body::from(packed))
                .unwrap();
            let (status, body) = post_len(req).await;
            assert_eq!(status, want, "{n}: {body}");
            if want == StatusCode::OK {
                assert_eq!(body, n.to_string());
            }
        }
        // An encoding the server does not take: 415, finished.
        let req = post().header(CONTENT_ENCODING, "br").body(Body::from("x")).unwrap();
        let (status, body) = post_len(req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
        assert!(body.contains("\"code\":415"), "{body}");
        // Bodiless requests (none, or an empty one) reach the routes; an empty "gzip" body is an empty body.
        let (status, len) = post_len(post().body(Body::empty()).unwrap()).await;
        assert_eq!((status, len.as_str()), (StatusCode::OK, "0"));
        let req = post().header(CONTENT_ENCODING, "gzip").body(Body::empty()).unwrap();
        let (status, len) = post_len(req).await;
        assert_eq!((status, len.as_str()), (StatusCode::OK, "0"));
    }

    #[tokio::test]
    async fn a_connection_edge_gives_each_request_its_peer_address() {
        let peer: SocketAddr = "192.0.2.7:4711".parse().unwrap();
        let made = MakeEdge::new(routes(), LIMIT, false).oneshot(peer).await.unwrap();
        for edge in [made.clone(), made] {
            let r = edge
                .oneshot(get_req("/api/peer").body(Body::empty()).unwrap())
                .await
                .unwrap();
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            assert_eq!(&body[..], b"192.0.2.7:4711");
        }
        // An edge made without a connection carries none.
        let r = call(false, get_req("/api/peer").body(Body::empty()).unwrap()).await;
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        assert_eq!(&body[..], b"none");
    }

    #[test]
    fn request_ids_are_version_4_uuids_written_as_uuid_writes_them() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = fresh_id();
            let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.to_str().unwrap(), parsed.hyphenated().to_string());
            assert!(seen.insert(parsed), "ids do not repeat");
        }
        for bytes in [
            [0u8; 16],
            [0xff; 16],
            *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x10\x32\x54\x76\x98\xba\xdc\xfe",
        ] {
            let want = uuid::Uuid::from_bytes(bytes).hyphenated().to_string();
            assert_eq!(std::str::from_utf8(&hyphenated(&bytes)).unwrap(), want);
        }
    }
}
