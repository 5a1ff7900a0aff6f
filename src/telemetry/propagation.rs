//! W3C trace context (`traceparent`, `tracestate`) in and out: extracted from incoming HTTP
//! headers and gRPC metadata (both are HTTP headers on the wire) to parent the request's
//! span, and injected into upstream requests from the current span, as HTTP headers or (for
//! MCP requests' `_meta`) as a [`W3cContext`].

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
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

/// Parents `span` on the trace context in `headers`, when there is one and spans are
/// exported (without an exporter there is no trace to continue).
pub fn set_parent_from(span: &tracing::Span, headers: &HeaderMap) {
    if crate::telemetry::exporting() && headers.contains_key("traceparent") {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let _ = span.set_parent(cx);
    }
}

/// Adds the current span's trace context to outgoing `headers` (nothing when tracing is off).
pub fn inject_current(headers: &mut HeaderMap) {
    if !crate::telemetry::exporting() {
        return;
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
}

/// A W3C trace context as its two text values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct W3cContext {
    pub traceparent: String,
    /// `None` when the trace state is empty.
    pub tracestate: Option<String>,
}

impl Injector for W3cContext {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = value,
            "tracestate" if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The current span's trace context, or `None` when it has no valid one (tracing without
/// OTLP export, or no span at all). Always W3C, whatever the global propagator.
pub fn current_w3c() -> Option<W3cContext> {
    w3c_of(&tracing::Span::current().context())
}

/// The W3C form of `cx`'s span context, or `None` when it is not valid.
pub fn w3c_of(cx: &Context) -> Option<W3cContext> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = W3cContext::default();
    TraceContextPropagator::new().inject_context(cx, &mut out);
    (!out.traceparent.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn no_valid_span_context_means_no_trace_context() {
        assert_eq!(w3c_of(&Context::new()), None);
        assert_eq!(current_w3c(), None);
    }

    #[test]
    fn a_span_context_becomes_traceparent_and_tracestate() {
        let span = |state: TraceState| {
            SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                TraceFlags::SAMPLED,
                true,
                state,
            )
        };
        let cx = Context::new().with_remote_span_context(span(TraceState::default()));
        assert_eq!(
            w3c_of(&cx),
            Some(W3cContext {
                traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                tracestate: None,
            })
        );
        let state = TraceState::from_key_value([("vendor", "x")]).unwrap();
        let cx = Context::new().with_remote_span_context(span(state));
        assert_eq!(w3c_of(&cx).unwrap().tracestate.as_deref(), Some("vendor=x"));
    }
}
