//! W3C trace context (`traceparent`, `tracestate`) in and out: extracted from incoming HTTP
//! headers and gRPC metadata (both are HTTP headers on the wire) to parent the request's
//! span, and injected into upstream requests from the current span.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Installs the W3C propagator as the global one.
pub fn install() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// Parents `span` on the trace context in `headers`, when there is one.
pub fn set_parent_from(span: &tracing::Span, headers: &HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let _ = span.set_parent(cx);
    }
}

/// Adds the current span's trace context to outgoing `headers` (nothing when tracing is off).
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
}
