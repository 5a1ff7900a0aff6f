//! What the gRPC server records about each call: a span parented on an incoming W3C
//! `traceparent`, and request counts and latency by method and status code. Methods outside
//! the services we serve are counted as `unknown` so labels stay bounded.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

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

fn method_label(path: &str) -> String {
    const SERVICES: [&str; 4] = [
        "/mcpchat.v1.ChatService/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
    ];
    let known = SERVICES.iter().any(|s| path.starts_with(s)) && path.len() < 128;
    if known {
        path.trim_start_matches('/').to_string()
    } else {
        "unknown".into()
    }
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
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let future = self.inner.call(req);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_string(),
                Err(_) => "transport_error".to_string(),
            };
            let m = metrics::metrics();
            let labels = metrics::MethodLabels { method };
            m.grpc_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            m.grpc_requests
                .get_or_create(&metrics::GrpcLabels {
                    method: labels.method,
                    code,
                })
                .inc();
            result
        })
    }
}
