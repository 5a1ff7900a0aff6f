//! The HTTP request metrics: requests counted by route template, method and status, and the
//! latency to the response head by route and method.
//!
//! A tower layer of its own rather than `axum::middleware::from_fn`: `from_fn` clones the
//! inner service, boxes it and boxes two futures on every request, and this runs on every
//! request; here the response future is wrapped in place.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::MatchedPath,
    http::{Method, Request, Response},
};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::telemetry::metrics;

/// Every route template of the router (the `route` label); `/mcp` is mounted from outside
/// (`router_with`). A path that matched no route is `unmatched`.
const ROUTES: [&str; 18] = [
    "/mcp",
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/models",
    "/v1/models/{id}",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/responses/{id}",
    "/v1/responses/{id}/input_items",
    "/chat",
    "/chat/stream",
    "/chat/elicitations/{id}",
    "/sessions/{id}",
    "/v1/mcp/servers",
    "/ui",
    "/ui/{asset}",
];

/// Counts each request of the routes it wraps (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

/// See [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for Track<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = route_label(request.extensions().get::<MatchedPath>());
        let method = method_label(request.method());
        Tracked {
            inner: self.inner.call(request),
            route,
            method,
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The wrapped response future; records when the response head is ready.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        route: &'static str,
        method: &'static str,
        started: Instant,
    }
}

impl<F, RB, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            record(
                this.route,
                this.method,
                response.status().as_u16(),
                this.started.elapsed(),
            );
        }
        Poll::Ready(result)
    }
}

fn record(route: &'static str, method: &'static str, status: u16, took: std::time::Duration) {
    let m = metrics::metrics();
    m.http_duration
        .get_or_create(&metrics::RouteLabels { route, method })
        .observe(took.as_secs_f64());
    m.http_requests
        .get_or_create(&metrics::HttpLabels {
            route,
            method,
            status,
        })
        .inc();
}

/// The route template as a label: one of the router's own, `unmatched` otherwise.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    let Some(matched) = matched else {
        return "unmatched";
    };
    ROUTES
        .iter()
        .find(|r| **r == matched.as_str())
        .copied()
        .unwrap_or("unmatched")
}

/// The method as a label; methods outside the standard ones are `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn count(route: &'static str, method: &'static str, status: u16) -> u64 {
        metrics::metrics()
            .http_requests
            .get_or_create(&metrics::HttpLabels {
                route,
                method,
                status,
            })
            .get()
    }

    #[tokio::test]
    async fn each_response_is_counted_by_route_method_and_status() {
        // A status no other test answers, so the global registry's count is this test's.
        let inner = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(
                Response::builder().status(418).body(Body::empty()).unwrap(),
            )
        });
        let before = count("unmatched", "PATCH", 418);
        for _ in 0..3 {
            let request = Request::builder()
                .method(Method::PATCH)
                .uri("/nowhere")
                .body(Body::empty())
                .unwrap();
            let response = TrackLayer.layer(inner).oneshot(request).await.unwrap();
            assert_eq!(response.status(), 418);
        }
        assert_eq!(count("unmatched", "PATCH", 418), before + 3);
    }

    #[test]
    fn labels_are_the_router_templates_and_the_standard_methods() {
        assert_eq!(route_label(None), "unmatched");
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
