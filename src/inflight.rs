//! The process-wide in-flight limit (`server.max_in_flight`), shared by both listeners.
//!
//! A request takes a permit before any work and holds it until its response body (a whole
//! answer or the last event of a stream) is finished or dropped. When no permit is left the
//! request is refused at once — HTTP 503 with `Retry-After`, gRPC `UNAVAILABLE` with
//! `RetryInfo` — so overload never turns into an unbounded queue. Probes (`/healthz`,
//! `/readyz`, `grpc.health.v1`, reflection) are never refused.
//!
//! [`InFlight`] is the counter; [`GrpcLimitLayer`] applies it to the tonic server; the HTTP
//! gateway applies it in `http::guard`. The gateway's in-process calls into the gRPC service
//! do not pass the tonic layer, so a request is counted once.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused client is told to wait (`Retry-After`, `RetryInfo`).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The shared permit pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl InFlight {
    /// A pool of `limit` permits (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A permit, or `None` when `limit` requests are already in flight.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Requests in flight now.
    pub fn current(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// A response body that keeps its request's permit until the body ends or is dropped.
pub struct PermitBody<B> {
    inner: B,
    permit: Option<OwnedSemaphorePermit>,
}

impl<B> PermitBody<B> {
    pub fn new(inner: B, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            permit: Some(permit),
        }
    }
}

impl<B> Body for PermitBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Paths of the gRPC server that are never refused: health checks and reflection.
fn grpc_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// The in-flight limit as a tower layer for the tonic server.
#[derive(Debug, Clone)]
pub struct GrpcLimitLayer {
    limit: InFlight,
}

impl GrpcLimitLayer {
    pub fn new(limit: InFlight) -> Self {
        Self { limit }
    }
}

impl<S> tower::Layer<S> for GrpcLimitLayer {
    type Service = GrpcLimit<S>;

    fn layer(&self, inner: S) -> GrpcLimit<S> {
        GrpcLimit {
            inner,
            limit: self.limit.clone(),
        }
    }
}

/// See [`GrpcLimitLayer`].
#[derive(Debug, Clone)]
pub struct GrpcLimit<S> {
    inner: S,
    limit: InFlight,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for GrpcLimit<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if grpc_exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let Some(permit) = self.limit.try_acquire() else {
            let status = overloaded_status(self.limit.limit());
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| tonic::body::Body::new(PermitBody::new(body, permit))))
        })
    }
}

/// UNAVAILABLE with `RetryInfo` (the HTTP gateway's table makes it 503 + `Retry-After`).
pub fn overloaded_status(limit: usize) -> tonic::Status {
    crate::pb::status::status(
        tonic::Code::Unavailable,
        "overloaded",
        overloaded_message(limit),
        Some(RETRY_AFTER),
    )
}

/// The message a refused client reads.
pub fn overloaded_message(limit: usize) -> String {
    format!(
        "the service is serving its limit of {limit} requests (server.max_in_flight); retry shortly"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_run_out_and_come_back() {
        let limit = InFlight::new(2);
        let a = limit.try_acquire().unwrap();
        let _b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.current(), 2);
        drop(a);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn a_zero_limit_still_serves_one() {
        assert_eq!(InFlight::new(0).limit(), 1);
    }

    #[tokio::test]
    async fn the_permit_is_held_until_the_body_ends() {
        use http_body_util::BodyExt;
        let limit = InFlight::new(1);
        let permit = limit.try_acquire().unwrap();
        let mut body = PermitBody::new(http_body_util::Full::new(Bytes::from("x")), permit);
        assert_eq!(limit.current(), 1);
        while body.frame().await.is_some() {}
        assert_eq!(limit.current(), 0);
    }
}
