//! The HTTP gateway (axum): wire formats only. Handlers translate HTTP into calls on the
//! in-process [`ChatApi`] and render the answers; no agent logic lives here.
//!
//! Routes: `GET /` (welcome), `GET /healthz` (alive), `GET /readyz` (ready, per component).
//! Anything else is a 404 in OpenAI's error shape.

pub mod error;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{grpc::ChatApi, readiness::Readiness};
pub use error::ApiError;

/// What the gateway holds: the gRPC service implementation and the readiness board.
#[derive(Clone)]
pub struct HttpState {
    pub api: ChatApi,
    pub readiness: Readiness,
}

/// The gateway's router; tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(welcome))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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
            "POST /chat": "Simplified API: {\"message\", \"session_id\"?} -> {\"response\", \"session_id\"}",
            "GET /v1/models": "OpenAI-compatible model list",
            "POST /v1/chat/completions": "OpenAI-compatible chat completions (JSON and SSE)",
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

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found_route(req.method().as_str(), req.uri().path())
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::method_not_allowed(req.method().as_str(), req.uri().path())
}
