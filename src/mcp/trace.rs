//! W3C trace context on MCP `tools/call` requests, so a server's spans join the caller's
//! trace.
//!
//! The context goes into the request's `_meta` (`traceparent`, `tracestate`: the MCP
//! convention, SEP-414), which every transport carries, stdio included. rmcp sends HTTP
//! requests from its transport worker task, where the caller's span is gone, so the HTTP
//! transports copy those keys from the message into HTTP headers as well ([`headers_of`]):
//! [`TracingHttpClient`] for streamable HTTP, `legacy_sse.rs` for legacy SSE.

use std::{collections::HashMap, sync::Arc};

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{
        CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, JsonRpcMessage,
        RequestMetaObject, RequestParamsMeta,
    },
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use sse_stream::Sse;

use crate::telemetry::propagation;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Puts the current span's trace context into `params`' `_meta`; nothing when there is no
/// valid one.
pub fn inject(params: &mut CallToolRequestParams) {
    if let Some(cx) = propagation::current_w3c() {
        params.set_traceparent(&cx.traceparent);
        if let Some(state) = &cx.tracestate {
            params.set_tracestate(state);
        }
    }
}

/// The `traceparent` and `tracestate` of a `tools/call` request's `_meta`, as HTTP headers
/// (empty, without allocating, for any other message or when there are none). Metadata
/// attached by rmcp wins over the params' own, as when the message is serialised.
pub fn headers_of(message: &ClientJsonRpcMessage) -> Vec<(HeaderName, HeaderValue)> {
    let JsonRpcMessage::Request(request) = message else {
        return Vec::new();
    };
    let ClientRequest::CallToolRequest(call) = &request.request else {
        return Vec::new();
    };
    let traced = [
        call.extensions.get::<RequestMetaObject>(),
        call.params.meta.as_ref(),
    ]
    .into_iter()
    .flatten()
    .find_map(|meta| Some((meta, header(meta.get_traceparent())?)));
    let Some((meta, parent)) = traced else {
        return Vec::new();
    };
    let mut headers = vec![(TRACEPARENT, parent)];
    if let Some(state) = header(meta.get_tracestate()) {
        headers.push((TRACESTATE, state));
    }
    headers
}

fn header(value: Option<&str>) -> Option<HeaderValue> {
    value.and_then(|v| HeaderValue::from_str(v).ok())
}

/// rmcp's reqwest client for streamable HTTP, adding the trace headers of `tools/call`
/// requests ([`headers_of`]) to their POST. Everything else is delegated, with the URL taken
/// out of reqwest's errors (rmcp logs them, and a URL may carry a token in its path or query).
#[derive(Clone)]
pub struct TracingHttpClient(pub reqwest::Client);

type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;
type StreamResult =
    Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>;

fn with_trace(
    message: &ClientJsonRpcMessage,
    mut headers: HashMap<HeaderName, HeaderValue>,
) -> HashMap<HeaderName, HeaderValue> {
    headers.extend(headers_of(message));
    headers
}

/// The error with reqwest's URL taken out.
async fn no_url<T>(
    call: impl Future<Output = Result<T, StreamableHttpError<reqwest::Error>>>,
) -> Result<T, StreamableHttpError<reqwest::Error>> {
    call.await.map_err(|e| match e {
        StreamableHttpError::Client(e) => StreamableHttpError::Client(e.without_url()),
        other => other,
    })
}

impl StreamableHttpClient for TracingHttpClient {
    type Error = reqwest::Error;

    fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        let custom_headers = with_trace(&message, custom_headers);
        no_url(
            self.0
                .post_message(uri, message, session_id, auth_header, custom_headers),
        )
    }

    fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        let custom_headers = with_trace(&message, custom_headers);
        no_url(self.0.post_message_with_max_sse_event_size(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        ))
    }

    fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        let custom_headers = with_trace(&message, custom_headers);
        no_url(self.0.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        ))
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<reqwest::Error>>> + Send + '_ {
        no_url(
            self.0
                .delete_session(uri, session_id, auth_header, custom_headers),
        )
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = StreamResult> + Send + '_ {
        no_url(
            self.0
                .get_stream(uri, session_id, last_event_id, auth_header, custom_headers),
        )
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = StreamResult> + Send + '_ {
        no_url(self.0.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        ))
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ClientNotification, InitializedNotification, JsonRpcRequest, Request};

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn call(params: CallToolRequestParams) -> ClientJsonRpcMessage {
        JsonRpcMessage::Request(JsonRpcRequest::new(
            rmcp::model::RequestId::Number(1),
            ClientRequest::CallToolRequest(Request::new(params)),
        ))
    }

    fn names(headers: &[(HeaderName, HeaderValue)]) -> Vec<(&str, &str)> {
        headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn a_call_with_trace_meta_gets_trace_headers() {
        let mut params = CallToolRequestParams::new("echo");
        params.set_traceparent(PARENT);
        params.set_tracestate("vendor=x");
        let headers = headers_of(&call(params));
        assert_eq!(
            names(&headers),
            [("traceparent", PARENT), ("tracestate", "vendor=x")]
        );
    }

    #[test]
    fn tracestate_alone_is_not_sent() {
        let mut params = CallToolRequestParams::new("echo");
        params.set_traceparent(PARENT);
        assert_eq!(names(&headers_of(&call(params))), [("traceparent", PARENT)]);
        let mut params = CallToolRequestParams::new("echo");
        params.set_tracestate("vendor=x");
        assert!(headers_of(&call(params)).is_empty());
    }

    #[test]
    fn metadata_attached_by_rmcp_wins_as_a_whole() {
        let mut params = CallToolRequestParams::new("echo");
        params.set_traceparent("00-11111111111111111111111111111111-2222222222222222-01");
        params.set_tracestate("own=1");
        let mut message = call(params);
        if let JsonRpcMessage::Request(r) = &mut message
            && let ClientRequest::CallToolRequest(c) = &mut r.request
        {
            let mut meta = RequestMetaObject::new();
            meta.set_traceparent(PARENT);
            c.extensions.insert(meta);
        }
        assert_eq!(names(&headers_of(&message)), [("traceparent", PARENT)]);
    }

    #[test]
    fn messages_without_trace_meta_get_no_headers() {
        assert!(headers_of(&call(CallToolRequestParams::new("echo"))).is_empty());
        let mut meta = RequestMetaObject::new();
        meta.set_progress_token(rmcp::model::ProgressToken(
            rmcp::model::NumberOrString::Number(1),
        ));
        let mut params = CallToolRequestParams::new("echo");
        params.set_meta(meta);
        assert!(headers_of(&call(params)).is_empty());
        let note = JsonRpcMessage::notification(ClientNotification::InitializedNotification(
            InitializedNotification::default(),
        ));
        assert!(headers_of(&note).is_empty());
    }

    #[test]
    fn no_trace_context_means_no_meta() {
        let mut params = CallToolRequestParams::new("echo");
        inject(&mut params);
        assert_eq!(params.meta, None, "no `_meta` without a trace");
    }

    #[test]
    fn the_current_span_becomes_the_parent() {
        use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        use tracing_subscriber::prelude::*;

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("tool.call");
            let _entered = span.enter();
            let mut params = CallToolRequestParams::new("echo");
            inject(&mut params);
            let cx = span.context();
            let ids = cx.span().span_context().clone();
            assert_eq!(
                params.traceparent(),
                Some(format!("00-{}-{}-01", ids.trace_id(), ids.span_id()).as_str())
            );
            assert_eq!(params.tracestate(), None);
        });
    }
}
