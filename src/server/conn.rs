//! Connections: the listener loop (plain HTTP or rustls) with limits against slow and piled-up clients.
//!
//! - A connection has [`ConnLimits::header_read_timeout`] to send a request's headers (on HTTP/1 this also closes
//!   a kept-alive connection that sends no next request in that time) and to finish a TLS handshake.
//! - A connection on which nothing is read or written for [`ConnLimits::idle_timeout`] while no request is being
//!   handled is closed (a body trickled in slower than that, a client that stops reading its answer, an idle
//!   HTTP/2 connection).
//! - At most [`ConnLimits::max_connections`] connections are open at once; one beyond is closed as soon as it is
//!   accepted.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

/// Time a client has to send a request's headers (and to finish the TLS handshake).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a connection may stay silent while no request on it is being handled.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// The smallest connection cap `sesame serve` accepts.
pub const MIN_MAX_CONNECTIONS: usize = 4096;

/// Limits on connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// Time to send a request's headers (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// Time a connection may stay silent while none of its requests is being handled.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` (TLS when `tls` is given) under `limits` until `stop` fires, then lets in-flight
/// requests finish for up to 10 s.
pub fn spawn(
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    app: super::edge::MakeEdge,
    limits: &ConnLimits,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<io::Result<()>> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        let _ = stop.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let guard = Guard {
        permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        idle: limits.idle_timeout,
        first_byte: limits.header_read_timeout,
    };
    let configure = |builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>| {
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
    };
    match tls {
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                .handshake_timeout(limits.header_read_timeout)
                .acceptor(guard);
            let mut server = axum_server::from_tcp(listener).acceptor(acceptor).handle(handle);
            configure(server.http_builder());
            tokio::spawn(async move { server.serve(app).await })
        }
        None => {
            let mut server = axum_server::from_tcp(listener).acceptor(guard).handle(handle);
            configure(server.http_builder());
            tokio::spawn(async move { server.serve(app).await })
        }
    }
}

/// Connections closed because the cap was reached, since the process started.
static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The innermost acceptor: takes a connection slot (or closes the connection), and wraps the stream and the
/// connection's service so silence is measured only while no request is being handled.
#[derive(Clone, Debug)]
struct Guard {
    permits: Arc<Semaphore>,
    idle: Duration,
    /// Until its first byte, a connection is held to the header-read timeout (HTTP/1's own header timer only
    /// starts once the server knows the protocol, which takes a byte).
    first_byte: Duration,
}

impl<S> Accept<TcpStream, S> for Guard {
    type Stream = Idle<TcpStream>;
    type Service = Busy<S>;
    type Future = std::future::Ready<io::Result<(Idle<TcpStream>, Busy<S>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Logged at 1, 2, 4, 8, … refusals: a flood of connections cannot flood the log.
            let refused = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused_total = refused,
                    "connection limit reached: closing new connections"
                );
            }
            return std::future::ready(Err(io::Error::other("connection limit reached")));
        };
        let _ = stream.set_nodelay(true);
        let busy = Arc::new(AtomicUsize::new(0));
        std::future::ready(Ok((
            Idle {
                io: stream,
                timeout: self.idle,
                deadline: Box::pin(tokio::time::sleep(self.first_byte.min(self.idle))),
                last_active: None,
                busy: busy.clone(),
                _permit: permit,
            },
            Busy { inner: service, busy },
        )))
    }
}

/// A stream that fails with `TimedOut` once it has been silent for its timeout while its connection handles no
/// request; it holds its connection's slot.
///
/// Activity only records the time (`last_active`); the timer is moved forward when it fires early, not on every
/// read and write, since re-arming a tokio timer takes the timer driver's lock and a request does several of each.
#[derive(Debug)]
pub struct Idle<T> {
    io: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// When bytes last moved, or a request was last seen in handling; `None` until the first byte, so a connection
    /// that never sends one is held to its first deadline (the header-read timeout).
    last_active: Option<Instant>,
    busy: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl<T> Idle<T> {
    fn touch(&mut self) {
        self.last_active = Some(Instant::now());
    }

    /// On a pending read or write: fails once the connection has been silent for its timeout, unless a request is
    /// being handled.
    fn check<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if self.busy.load(Ordering::Acquire) > 0 {
            self.touch();
            return Poll::Pending;
        }
        loop {
            match self.deadline.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => match self.last_active.map(|at| at + self.timeout) {
                    // Active since the timer was set: move it to the real deadline and wait again.
                    Some(due) if due > Instant::now() => self.deadline.as_mut().reset(due),
                    _ => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connection idle for too long",
                        )));
                    }
                },
            }
        }
    }

    /// After a write: a completed one keeps the connection alive, a pending one is checked against the deadline.
    fn after_write(&mut self, cx: &mut Context<'_>, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                self.touch();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A connection's service that counts the requests being handled on it.
#[derive(Clone, Debug)]
pub struct Busy<S> {
    inner: S,
    busy: Arc<AtomicUsize>,
}

/// Decrements the connection's count of requests being handled when the handling ends (or is dropped).
struct Handling(Arc<AtomicUsize>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A request's handling on a [`Busy`] service: counted until it completes or is dropped.
    pub struct Handled<F> {
        #[pin]
        inner: F,
        handling: Handling,
    }
}

impl<F: Future> Future for Handled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S, R> tower::Service<R> for Busy<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Handled<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.busy.fetch_add(1, Ordering::AcqRel);
        let handling = Handling(self.busy.clone());
        Handled {
            inner: self.inner.call(req),
            handling,
        }
    }
}
