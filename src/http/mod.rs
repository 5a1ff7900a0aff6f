//! The HTTP gateway (axum): wire formats only. Handlers translate HTTP into calls on the
//! in-process [`ChatApi`] (the gRPC service implementation) and render its answers; no agent
//! logic lives here, so HTTP can never do what gRPC cannot.
//!
//! Routes: `GET /` (welcome), `GET /healthz`, `GET /readyz`, the OpenAI-compatible API under
//! `/v1`, the Simplified API (`POST /chat`, `POST /chat/stream`), `GET /v1/mcp/servers` and
//! the web chat page at `/ui` (`ui/`, when `server.ui` is on). Every error, unknown routes
//! included, is OpenAI's `{"error":{…}}`. Layers: request ids, CORS, body limit.

pub mod error;
pub mod extract;
pub mod guard;
pub mod openai;
mod simple;
mod sse;
mod track;
pub mod ui;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tonic::metadata::{AsciiMetadataValue, MetadataKey};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{grpc::ChatApi, readiness::Readiness, telemetry::metrics};
pub use error::ApiError;

/// What the gateway holds: the gRPC service implementation and the readiness board.
#[derive(Clone)]
pub struct HttpState {
    pub api: ChatApi,
    pub readiness: Readiness,
    /// Announce server-side tool calls in OpenAI streams (as SSE comments).
    pub expose_tool_events: bool,
}

/// Gateway settings taken from the config.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    pub body_read_timeout: std::time::Duration,
    pub cors_allow_origins: Vec<String>,
    /// Serve the web chat page at `/ui` (`server.ui`).
    pub ui: bool,
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
/// The headers of the streamable HTTP transport at `/mcp`, for CORS.
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// Names the MCP servers that were not ready for a turn (the gRPC metadata of the same name).
const DEGRADED: HeaderName = HeaderName::from_static(crate::pb::DEGRADED);

/// The gateway's router; tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: HttpState, settings: &HttpSettings) -> Router {
    router_with(state, settings, None)
}

/// The gateway's router with another edge's routes mounted beside its own (the MCP server's
/// `/mcp`, built by `server.rs`), behind the same layers: request ids, CORS, tracing,
/// metrics (and the in-flight limit `server.rs` wraps around it all).
pub fn router_with(state: HttpState, settings: &HttpSettings, mounted: Option<Router>) -> Router {
    let page = if settings.ui {
        ui::routes()
    } else {
        Router::new()
    };
    let routes = Router::new()
        .route("/", get(welcome))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{id}", get(openai::get_model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(openai::responses::create))
        .route(
            "/v1/responses/{id}",
            get(openai::responses::get).delete(openai::responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(openai::responses::input_items),
        )
        .route("/chat", post(simple::chat))
        .route("/chat/stream", post(simple::chat_stream))
        .route("/chat/elicitations/{id}", post(simple::answer_elicitation))
        .route(
            "/sessions/{id}",
            get(simple::get_session).delete(simple::delete_session),
        )
        .route("/v1/mcp/servers", get(ui::servers::list))
        .merge(page)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let routes = match mounted {
        Some(mounted) => routes.merge(mounted),
        None => routes,
    };
    // One stack, applied once: `Router::layer` wraps every route in a boxed service per
    // call, and a route's box is cloned on every request, nested boxes and all.
    routes.layer(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_failure(on_failure),
            )
            .layer(track::TrackLayer)
            .option_layer(cors(&settings.cors_allow_origins))
            .layer(axum::Extension(extract::BodyReadTimeout(
                settings.body_read_timeout,
            )))
            .layer(DefaultBodyLimit::max(settings.max_body_bytes)),
    )
}

/// A new request id: a UUID v4, hyphenated, written on the stack and copied once into the
/// header value (tower-http's `MakeRequestUuid` formats it into a `String` first).
pub(crate) fn new_request_id() -> Option<HeaderValue> {
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf)).ok()
}

/// Gives a request without an `x-request-id` a new one ([`new_request_id`]).
#[derive(Debug, Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        new_request_id().map(RequestId::new)
    }
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::ACCEPT,
                SESSION_ID,
                REQUEST_ID,
                MCP_SESSION_ID,
                MCP_PROTOCOL_VERSION,
                LAST_EVENT_ID,
            ])
            .expose_headers([SESSION_ID, REQUEST_ID, DEGRADED, MCP_SESSION_ID]),
    )
}

/// A tonic request carrying what the service needs from the HTTP headers: the client's
/// key (auth is checked once, in the service), the request id and the trace context.
pub(crate) fn grpc_request<T>(message: T, headers: &HeaderMap) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    // The client's own timeout becomes the call's deadline (`X-Request-Timeout`, or the
    // `X-Stainless-Timeout` the OpenAI SDKs send), in seconds.
    const TIMEOUT_HEADERS: [HeaderName; 2] = [
        HeaderName::from_static("x-request-timeout"),
        HeaderName::from_static("x-stainless-timeout"),
    ];
    let timeout = TIMEOUT_HEADERS
        .iter()
        .find_map(|name| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs > 0.0);
    if let Some(secs) = timeout {
        request.set_timeout(std::time::Duration::from_secs_f64(secs.min(86_400.0)));
    }
    // The trace context needs no copy: the in-process call runs inside the HTTP span.
    for (name, key) in [
        (AUTHORIZATION, MetadataKey::from_static("authorization")),
        (REQUEST_ID, MetadataKey::from_static("x-request-id")),
    ] {
        if let Some(value) = headers.get(name)
            && let Ok(v) = AsciiMetadataValue::try_from(value.as_bytes())
        {
            request.metadata_mut().insert(key, v);
        }
    }
    request
}

pub(crate) fn session_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

pub(crate) fn set_session_header(response: &mut Response, session_id: Option<&str>) {
    if let Some(v) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_ID, v);
    }
}

/// Copies the service's `mcp-chat-degraded` metadata onto the HTTP response.
pub(crate) fn set_degraded_header(
    response: &mut Response,
    metadata: &tonic::metadata::MetadataMap,
) {
    if let Some(v) = metadata
        .get(crate::pb::DEGRADED)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
    {
        response.headers_mut().insert(DEGRADED, v);
    }
}

pub(crate) fn openai_finish(code: i32) -> &'static str {
    openai::finish_reason(code)
}

async fn welcome() -> Json<serde_json::Value> {
    Json(json!({
        "name": "mcp-chat",
        "version": env!("CARGO_PKG_VERSION"),
        "message": "mcp-chat puts an LLM and the tools of MCP servers behind one API.",
        "endpoints": {
            "GET /": "this document",
            "GET /healthz": "liveness",
            "GET /readyz": "readiness with per-component status",
            "GET /metrics": "Prometheus metrics",
            "POST /chat": "Simplified API: {\"message\", \"session_id\"?} -> {\"response\", \"session_id\"}",
            "POST /chat/stream": "Simplified API as SSE events: start, delta, tool_call, tool_result, elicitation, done, error",
            "POST /chat/elicitations/{id}": "answer an elicitation event: {\"action\": \"accept\"|\"decline\"|\"cancel\", \"content\"?}",
            "GET /sessions/{id}": "a stored conversation",
            "DELETE /sessions/{id}": "delete a stored conversation",
            "POST/GET/DELETE /mcp": "mcp-chat as an MCP server (streamable HTTP): the tools, resources and prompts of its MCP servers",
            "GET /v1/models": "OpenAI-compatible model list",
            "GET /v1/mcp/servers": "each MCP server's state and tools",
            "GET /ui": "the built-in web chat page (when server.ui is on)",
            "POST /v1/chat/completions": "OpenAI-compatible chat completions (JSON and SSE)",
            "POST /v1/responses": "OpenAI Responses API with MCP items (JSON and typed SSE events)",
            "GET /v1/responses/{id}": "a stored response (DELETE deletes it; /input_items lists its input)",
            "grpc": "mcpchat.v1.ChatService on the gRPC port (reflection enabled)"
        }
    }))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let report = state.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Probe routes: polled every few seconds by the orchestrator, they get no span (and so no
/// log line); their answers are counted in the metrics like every other route.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Logs a failed request (5xx) as tower-http does, except a probe's: a 503 from `/readyz`
/// while starting or degraded is its answer, not a failure (readiness changes are logged
/// where they happen).
fn on_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    span: &tracing::Span,
) {
    use tower_http::trace::OnFailure;
    if span.is_none() {
        return;
    }
    tower_http::trace::DefaultOnFailure::default().on_failure(class, latency, span);
}

/// The request's span: its matched route (never the raw path) and request id, parented on
/// an incoming W3C `traceparent`.
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    if PROBES.contains(&route) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "http",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = %route,
        request_id = %id,
    );
    if crate::telemetry::exporting() {
        span.record("otel.name", format!("{} {route}", req.method()));
    }
    crate::telemetry::propagation::set_parent_from(&span, req.headers());
    span
}

/// The metrics in the format the scraper's `Accept` asks for (OpenMetrics or Prometheus text).
async fn metrics(headers: HeaderMap) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::telemetry::exposition::Format::negotiate(accept);
    let body = metrics::metrics().render(format);
    (
        [
            (axum::http::header::CONTENT_TYPE, format.content_type()),
            (axum::http::header::VARY, "accept"),
        ],
        body,
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found_route(req.method().as_str(), req.uri().path())
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::method_not_allowed(req.method().as_str(), req.uri().path())
}
