//! mcp-chat as an MCP server: `POST/GET/DELETE /mcp` over streamable HTTP (rmcp's
//! [`StreamableHttpService`] with in-memory sessions, `Mcp-Session-Id`, SSE for what the
//! server sends, resumable request streams), offering the hub's tools, resources and prompts
//! to any MCP client.
//!
//! This edge owns the wire side only: [`router`] builds the `/mcp` route (mounted beside the
//! gateway's routes by `server.rs` through `http::router_with`), `guard.rs` checks the
//! caller's key (the same `Bearer` keys and per-key access as the other endpoints; 401 with
//! `WWW-Authenticate` without one), and `handler.rs` is the rmcp `ServerHandler` that
//! answers from the hub (`mcp::McpHub`'s `proxy.rs` methods) and forwards progress,
//! cancellation and change notifications. The `Origin` check (DNS rebinding) is rmcp's,
//! against `server.cors_allow_origins` (plus loopback origins on a loopback listener); the
//! `Host` check against `mcp.serve_allowed_hosts` (default: loopback names on a loopback
//! listener, any host otherwise);
//! the body limit is `server.max_body_bytes`; the in-flight limit is the gateway's, which
//! wraps this route too. `chat.rs` is the optional `chat` tool (`mcp.serve_chat_tool`), a
//! whole agent turn through the gRPC service in process. `asks.rs` passes what an upstream
//! server asks mid-call (elicitation, sampling) on to the client of `/mcp`.

mod asks;
mod chat;
mod guard;
mod handler;

use std::sync::Arc;

use axum::Router;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

use crate::{auth::ApiKeys, grpc::ChatApi, mcp::McpHub};
pub use guard::Principal;

/// The path of the endpoint.
pub const PATH: &str = "/mcp";

/// What `/mcp` is built from (taken from the config by `server.rs`).
#[derive(Debug, Clone, Default)]
pub struct ServeSettings {
    /// `server.cors_allow_origins`: the `Origin`s a browser may call from (`*`: any).
    pub allowed_origins: Vec<String>,
    /// `mcp.serve_allowed_hosts`: the `Host`s accepted (empty: any).
    pub allowed_hosts: Vec<String>,
    /// `server.max_body_bytes`.
    pub max_body_bytes: usize,
    /// Whether the listener is bound to a loopback address (`server.host`): then, unless
    /// configured otherwise, only loopback `Host`s are accepted and loopback `Origin`s are
    /// allowed beside the CORS list (the spec's DNS-rebinding guard for local servers).
    pub loopback: bool,
}

/// The `Host`s a loopback listener accepts by default.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// The `Origin`s a loopback listener allows besides the CORS list.
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// The `/mcp` route over `hub`, behind `keys`, with the `chat` tool when `chat` is given;
/// sessions end when `shutdown` is cancelled.
pub fn router(
    hub: Arc<McpHub>,
    chat: Option<ChatApi>,
    keys: ApiKeys,
    settings: &ServeSettings,
    shutdown: CancellationToken,
) -> Router {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_max_request_body_bytes(settings.max_body_bytes.max(1024));
    config = match (settings.allowed_hosts.is_empty(), settings.loopback) {
        (false, _) => config.with_allowed_hosts(settings.allowed_hosts.clone()),
        (true, true) => config.with_allowed_hosts(LOOPBACK_HOSTS),
        (true, false) => config.disable_allowed_hosts(),
    };
    config = if settings.allowed_origins.iter().any(|o| o == "*") {
        config.disable_allowed_origins()
    } else {
        // Without a list no browser origin is allowed; clients that send no `Origin`
        // (desktop apps, SDKs) are not affected.
        let mut origins = settings.allowed_origins.clone();
        if settings.loopback {
            origins.extend(LOOPBACK_ORIGINS.map(String::from));
        }
        config
            .with_allowed_origins(origins)
            .enforce_origin_validation()
    };
    let service = StreamableHttpService::new(
        move || Ok(handler::HubServer::new(hub.clone(), chat.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(
            keys,
            guard::authenticate,
        ))
}
