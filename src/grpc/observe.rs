//! What the gRPC server records about each call: a span parented on an incoming W3C
//! `traceparent`, and request counts and latency by method and status code. Methods outside
//! the services we serve are counted as `unknown` so labels stay bounded.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::telemetry::{metrics, propagation};

/// The span of one gRPC call.
pub fn span(req: &axum::http::Request<()>) -> tracing::Span {
    let method = method_label(req.uri().path());
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "grpc",
        otel.name = %method,
        otel.kind = "server",
        rpc.method = %method,
        request_id = %id,
    );
    propagation::set_parent_from(&span, req.headers());
    span
}

fn method_label(path: &str) -> &'static str {
    const METHODS: [&str; 10] = [
        "mcpchat.v1.ChatService/Chat",
        "mcpchat.v1.ChatService/StreamChat",
        "mcpchat.v1.ChatService/ListModels",
        "mcpchat.v1.ChatService/ListTools",
        "mcpchat.v1.ChatService/GetSession",
        "mcpchat.v1.ChatService/DeleteSession",
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    let path = path.strip_prefix('/').unwrap_or(path);
    METHODS
        .iter()
        .find(|m| **m == path)
        .copied()
        .unwrap_or("unknown")
}

/// The `code` label: the numeric gRPC status codes as text, anything else `unknown`.
fn code_label(code: &str) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("unknown")
}

/// Counts calls by method and the status code in the response head (trailers-only errors
/// carry it there; a call that answers is `0` until its trailers, which are not awaited).
#[derive(Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
}

impl<S, B, RB> Service<axum::http::Request<B>> for MetricsService<S>
where
    S: Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        Observed {
            method: method_label(req.uri().path()),
            started: Instant::now(),
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// A call's response future; counts the call when the response head is ready.
    pub struct Observed<F> {
        #[pin]
        inner: F,
        method: &'static str,
        started: Instant,
    }
}

impl<F, RB, E> Future for Observed<F>
where
    F: Future<Output = Result<axum::http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let code = match &result {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .map_or("0", |v| code_label(v.to_str().unwrap_or_default())),
            Err(_) => "transport_error",
        };
        let m = metrics::metrics();
        let labels = metrics::MethodLabels {
            method: this.method,
        };
        m.grpc_duration
            .get_or_create(&labels)
            .observe(this.started.elapsed().as_secs_f64());
        m.grpc_requests
            .get_or_create(&metrics::GrpcLabels {
                method: labels.method,
                code,
            })
            .inc();
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_the_served_methods_or_unknown() {
        let service = crate::pb::chat_service_server::SERVICE_NAME;
        for method in [
            "Chat",
            "StreamChat",
            "ListModels",
            "ListTools",
            "GetSession",
            "DeleteSession",
        ] {
            let path = format!("/{service}/{method}");
            assert_eq!(method_label(&path), &path[1..]);
        }
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        // A made-up method of a served service must not mint a new series.
        assert_eq!(method_label(&format!("/{service}/Made{}", 42)), "unknown");
        assert_eq!(method_label("/other.Service/Chat"), "unknown");
    }

    #[test]
    fn code_labels_are_bounded() {
        assert_eq!(code_label("0"), "0");
        assert_eq!(code_label("16"), "16");
        assert_eq!(code_label("17"), "unknown");
        assert_eq!(code_label("x"), "unknown");
    }
}
