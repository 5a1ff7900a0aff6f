//! Protection of the HTTP listener from hostile or broken clients.
//!
//! - [`serve`] runs the accept loop itself (hyper-util's `auto::Builder`, HTTP/1.1 and h2)
//!   instead of `axum::serve`, which exposes neither limit below: a client must send its
//!   request headers within `server.header_read_timeout`, and headers larger than
//!   [`MAX_HEADER_BYTES`] are refused (HTTP/1.1: 431 and the connection closed; h2: the
//!   stream is reset). A connection that sends no byte at all within the same timeout is
//!   closed too. Shutdown stops accepting, then lets open connections finish
//!   (the caller bounds that wait with `server.shutdown_grace`).
//! - The in-flight limit (around the router, in [`serve`]) refuses requests beyond
//!   `server.max_in_flight` at once with 503, `Retry-After` and an OpenAI error body;
//!   probes are never refused. It wraps the router as a whole, not each route: a route's
//!   layers are cloned on every request.
//!
//! Body size (413) is the router's `DefaultBodyLimit`; JSON nesting is bounded by
//! serde_json's recursion limit (400, see `extract.rs`).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
    routing::future::RouteFuture,
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use pin_project_lite::pin_project;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::ApiError;
use crate::inflight::{InFlight, PermitBody, overloaded_status};

/// Largest request head accepted (request line and headers; HTTP/1.1 read buffer and the
/// h2 header list), 64 KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The router behind the in-flight limit: what each connection serves. A service of its
/// own (not `axum::middleware::from_fn`, which boxes the router and two futures per
/// request): a request that gets a permit goes straight to the router's future.
#[derive(Clone)]
struct Limited {
    router: Router,
    limit: InFlight,
}

impl Service<hyper::Request<Incoming>> for Limited {
    type Response = Response;
    type Error = Infallible;
    type Future = LimitedFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: hyper::Request<Incoming>) -> LimitedFuture {
        let request = request.map(Body::new);
        // Probes (liveness, readiness, metrics) are never refused.
        let permit = if super::PROBES.contains(&request.uri().path()) {
            None
        } else {
            let Some(permit) = self.limit.try_acquire() else {
                return LimitedFuture::Refused {
                    answer: std::future::ready(Ok(refused(&request, &self.limit))),
                };
            };
            Some(permit)
        };
        LimitedFuture::Routed {
            inner: self.router.call(request),
            permit,
        }
    }
}

/// The answer to a request beyond the limit: 503 with `Retry-After` and an OpenAI error.
/// Refused before the request-id layers, it still carries the id (the client's own, or a
/// new one) so it can be matched with logs and reports.
fn refused(request: &Request, limit: &InFlight) -> Response {
    let mut response = ApiError::from(overloaded_status(limit.limit())).into_response();
    let id = request
        .headers()
        .get(&super::REQUEST_ID)
        .cloned()
        .or_else(super::new_request_id);
    if let Some(id) = id {
        response.headers_mut().insert(super::REQUEST_ID, id);
    }
    response
}

pin_project! {
    /// The router's response with the request's permit moved into its body, or a refusal.
    #[project = LimitedProj]
    enum LimitedFuture {
        Routed {
            #[pin]
            inner: RouteFuture<Infallible>,
            permit: Option<OwnedSemaphorePermit>,
        },
        Refused {
            #[pin]
            answer: std::future::Ready<Result<Response, Infallible>>,
        },
    }
}

impl Future for LimitedFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitedProj::Refused { answer } => answer.poll(cx),
            LimitedProj::Routed { inner, permit } => {
                let response = std::task::ready!(inner.poll(cx))?;
                Poll::Ready(Ok(match permit.take() {
                    Some(permit) => response.map(|body| Body::new(PermitBody::new(body, permit))),
                    None => response,
                }))
            }
        }
    }
}

/// The HTTP listener's connection settings.
#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener`, at most `in_flight` requests at once, until `shutdown` is
/// cancelled, then waits for the open connections to finish their requests (idle ones close
/// at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    in_flight: InFlight,
    settings: ServeSettings,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        // A client that stops answering pings is gone; its streams are cancelled.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(Limited {
            router: app.clone(),
            limit: in_flight.clone(),
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let stop = shutdown.clone();
        let first_byte = settings.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header timer starts with the first byte; a client that sends nothing
            // at all is closed after the same time.
            let mut probe = [0u8; 1];
            tokio::select! {
                () = stop.cancelled() => return,
                waited = tokio::time::timeout(first_byte, stream.peek(&mut probe)) => {
                    if !matches!(waited, Ok(Ok(1..))) {
                        tracing::debug!("closing a connection that sent nothing");
                        return;
                    }
                }
            }
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
