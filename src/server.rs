//! Wires the process: both listeners (HTTP gateway and gRPC), health, reflection,
//! readiness and graceful shutdown, driven by one cancellation token.
//!
//! Shutdown order: stop accepting → let in-flight requests and streams finish within
//! `server.shutdown_grace` → cancel what is left → stop MCP children → return.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::{
    Config,
    agent::{Agent, AgentParts, ModelTable},
    auth::ApiKeys,
    grpc::ChatApi,
    http::{self, HttpState},
    llm::openai::OpenAiClient,
    mcp::{McpHub, ToolHub},
    pb::{self, chat_service_server::ChatServiceServer},
    readiness::{Component, Readiness},
};

/// The two bound listeners; tests bind port 0 and pass them in.
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
}

/// The listen backlog: connections the kernel completes before the accept loop takes them.
/// tokio's `TcpListener::bind` asks for 1,024; a burst of a thousand clients connecting at once
/// (a fleet reconnecting, a load test opening its streams) then overflows the queue, and each
/// dropped handshake costs its client a one-second SYN retransmission. The kernel caps the
/// value at `net.core.somaxconn` (4,096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

impl Listeners {
    /// Binds `server.host` on `server.port` and `server.grpc_port`.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let bind = |port: u16| {
            let addr = format!("{}:{}", config.server.host, port);
            async move {
                listen(&addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })
            }
        };
        Ok(Self {
            http: bind(config.server.port).await?,
            grpc: bind(config.server.grpc_port).await?,
        })
    }
}

/// A listener on the first address `addr` resolves to that can be bound, with
/// [`LISTEN_BACKLOG`].
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for resolved in tokio::net::lookup_host(addr).await? {
        let socket = if resolved.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted service can bind while old connections
        // are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        match socket.bind(resolved) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("upstream client: {0}")]
    Upstream(#[from] crate::llm::LlmError),
    #[error("{0}")]
    Sessions(#[from] crate::sessions::SessionError),
    #[error("{0}")]
    RequestServers(#[from] crate::mcp::request_servers::RequestServerError),
    #[error("{0}")]
    OAuth(#[from] crate::mcp::oauth::OAuthError),
}

/// Serves until `shutdown` is cancelled, then drains and returns.
pub async fn run(
    config: Arc<Config>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let http_addr = listeners.http.local_addr()?;
    let grpc_addr = listeners.grpc.local_addr()?;
    let readiness = Readiness::default();
    readiness.set(
        "config",
        Component {
            up: true,
            required: true,
            detail: "loaded".into(),
        },
    );

    let llm = Arc::new(OpenAiClient::new(&config.upstream)?);
    // Sessions first: the SQLite store creates ./data, which MCP servers may use.
    let sessions = crate::sessions::open(&config.sessions).await?;
    let scheme = config
        .sessions
        .store
        .split("://")
        .next()
        .unwrap_or_default()
        .to_string();
    readiness.set(
        "sessions",
        Component {
            up: true,
            required: true,
            detail: format!("{scheme} store"),
        },
    );
    // OAuth tokens live beside the sessions, sealed with MCP_CHAT_TOKEN_KEY (validated).
    let vault = Arc::new(crate::mcp::oauth::TokenVault::from_config(
        sessions.clone(),
        config.mcp.token_key.expose(),
    )?);
    if !vault.is_persistent() && config.servers.servers.iter().any(|s| s.auth.is_some()) {
        tracing::warn!(
            "MCP_CHAT_TOKEN_KEY is not set: OAuth tokens are kept in memory only (lost on restart, not shared by replicas, and `mcp-chat auth login` cannot hand them over)"
        );
    }
    let hub = McpHub::start_with_vault(&config.mcp, &config.servers, vault);
    let agent = Agent::new(AgentParts {
        llm,
        hub: hub.clone(),
        sessions: sessions.clone(),
        models: ModelTable::from_config(&config)?,
        settings: config.agent.clone(),
        lock_timeout: config.sessions.lock_timeout,
        request_servers: if config.mcp.request_servers == crate::config::RequestServersMode::Off {
            None
        } else {
            Some(Arc::new(
                crate::mcp::request_servers::RequestServerClient::new(&config.mcp)?,
            ))
        },
        tool_prefix: config.mcp.tool_prefix,
        response_ttl: config.sessions.ttl,
    });
    let named = config
        .api_keys
        .iter()
        .filter_map(|k| Some((k.key.clone()?, crate::config::KeyAccess::from_config(k))))
        .collect();
    let keys = ApiKeys::with_named(config.server.api_keys.clone(), named);
    let api = ChatApi::new(agent, keys.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    let in_flight = crate::inflight::InFlight::new(config.server.max_in_flight);
    let grpc = tonic::transport::Server::builder()
        .trace_fn(crate::grpc::observe::span)
        .layer(crate::grpc::observe::MetricsLayer)
        .layer(crate::inflight::GrpcLimitLayer::new(in_flight.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ChatServiceServer::new(api.clone()))
        .serve_with_incoming_shutdown(
            // Small frames (stream events) go out at once, not after Nagle's delay.
            TcpIncoming::from(listeners.grpc).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let mut grpc_task = tokio::spawn(grpc);
    readiness.set("grpc", listening(grpc_addr));

    let settings = http::HttpSettings {
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: config.server.body_read_timeout,
        cors_allow_origins: config.server.cors_allow_origins.clone(),
        ui: config.server.ui,
    };
    let state = HttpState {
        api: api.clone(),
        readiness: readiness.clone(),
        expose_tool_events: config.agent.expose_tool_events,
    };
    let mcp_route = config.mcp.serve.then(|| {
        let serve = crate::mcp_serve::ServeSettings {
            allowed_origins: config.server.cors_allow_origins.clone(),
            allowed_hosts: config.mcp.serve_allowed_hosts.clone(),
            max_body_bytes: config.server.max_body_bytes,
            loopback: http_addr.ip().is_loopback(),
        };
        let chat = config.mcp.serve_chat_tool.then(|| api.clone());
        crate::mcp_serve::router(hub.clone(), chat, keys, &serve, shutdown.child_token())
    });
    let app = http::router_with(state, &settings, mcp_route);
    let serve_settings = http::guard::ServeSettings {
        header_read_timeout: config.server.header_read_timeout,
    };
    let http = http::guard::serve(
        listeners.http,
        app,
        in_flight,
        serve_settings,
        shutdown.clone(),
    );
    let mut http_task = tokio::spawn(http);
    readiness.set("http", listening(http_addr));

    // Readiness waits for every MCP server's first connection attempt (bounded), so a
    // ready pod offers the tools it will have; servers that failed keep retrying.
    let _ = hub.wait_first_attempts(config.mcp.startup_timeout).await;
    report_servers(&readiness, hub.as_ref());
    readiness.mark_started();
    let mut serving = readiness.report().ready;
    set_health(&health, serving).await;
    // Once a second: MCP server states onto the board, the gRPC health status after the
    // board (so the native gRPC readiness probe sees what `/readyz` sees, a `required`
    // server going down included), and the stored-session gauge.
    let board = readiness.clone();
    let watched = hub.clone();
    let stop_watch = shutdown.clone();
    let reporter = health.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop_watch.cancelled() => break,
                _ = tick.tick() => {
                    report_servers(&board, watched.as_ref());
                    let ready = board.report().ready;
                    if ready != serving && !stop_watch.is_cancelled() {
                        serving = ready;
                        set_health(&reporter, ready).await;
                        tracing::info!(ready, "readiness changed");
                    }
                    if let Ok(Some(n)) = sessions.count().await {
                        crate::telemetry::metrics::metrics().sessions_stored.set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                }
            }
        }
    });
    if serving {
        tracing::info!(%http_addr, %grpc_addr, "mcp-chat is ready");
    } else {
        tracing::warn!(%http_addr, %grpc_addr, "mcp-chat is up but not ready: a required MCP server is down (see /readyz)");
    }

    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        r = &mut grpc_task => { tracing::error!(result = ?r, "the gRPC server stopped on its own"); shutdown.cancel(); }
        r = &mut http_task => { tracing::error!(result = ?r, "the HTTP server stopped on its own"); shutdown.cancel(); }
    }
    readiness.mark_stopping();
    health.set_not_serving::<ChatServiceServer<ChatApi>>().await;
    let grace = config.server.shutdown_grace;
    tracing::info!(
        ?grace,
        "shutting down: no new connections; draining in-flight requests"
    );

    let drained = tokio::time::timeout(grace, async {
        if !grpc_task.is_finished() {
            let _ = (&mut grpc_task).await;
        }
        if !http_task.is_finished() {
            let _ = (&mut http_task).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            ?grace,
            "grace period over: cancelling the requests still running"
        );
        grpc_task.abort();
        http_task.abort();
    }
    hub.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Puts each MCP server's state on the readiness board (`mcp:<name>`).
/// The gRPC health status of the chat service (what the readiness probe asks for).
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    if serving {
        health.set_serving::<ChatServiceServer<ChatApi>>().await;
    } else {
        health.set_not_serving::<ChatServiceServer<ChatApi>>().await;
    }
}

fn report_servers(readiness: &Readiness, hub: &dyn ToolHub) {
    let metrics = crate::telemetry::metrics::metrics();
    for s in hub.servers() {
        metrics.set_server(
            &s.name,
            s.state == "ready",
            s.state == "needs_auth",
            s.restarts,
        );
        let detail = match &s.error {
            Some(e) => format!(
                "{} ({}, {} restarts): {e}",
                s.state, s.transport, s.restarts
            ),
            None => format!(
                "{} ({}, {} tools, {} restarts)",
                s.state, s.transport, s.tool_count, s.restarts
            ),
        };
        readiness.set(
            format!("mcp:{}", s.name),
            Component {
                up: s.state == "ready",
                required: s.required,
                detail,
            },
        );
    }
}

fn listening(addr: SocketAddr) -> Component {
    Component {
        up: true,
        required: true,
        detail: format!("listening on {addr}"),
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The listener takes connections, and the kernel holds its queue at
    /// [`LISTEN_BACKLOG`] (or `net.core.somaxconn`, when that is lower), as `ss` reports it.
    #[tokio::test]
    async fn listeners_take_connections_with_the_larger_backlog() {
        let listener = listen("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = tokio::net::TcpStream::connect(("127.0.0.1", port));
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        accepted.unwrap();
        connected.unwrap();

        let ss = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output();
        let Ok(ss) = ss else {
            assert!(
                std::env::var("MCP_CHAT_E2E_REQUIRED").as_deref() != Ok("1"),
                "`ss` (iproute2) is missing, and MCP_CHAT_E2E_REQUIRED=1"
            );
            eprintln!("skipped the backlog check: `ss` (iproute2) is missing");
            return;
        };
        let out = String::from_utf8(ss.stdout).unwrap();
        // `LISTEN  0  4096  127.0.0.1:PORT  0.0.0.0:*`: Send-Q is a listener's backlog.
        let backlog: u32 = out
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected `ss` output: {out:?}"));
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(LISTEN_BACKLOG);
        assert_eq!(backlog, LISTEN_BACKLOG.min(somaxconn));
        assert!(backlog > 1024, "the kernel capped the backlog at {backlog}");
    }

    #[tokio::test]
    async fn a_name_is_resolved_and_an_address_in_use_is_an_error() {
        let listener = listen("localhost:0").await.unwrap();
        let taken = listener.local_addr().unwrap();
        let err = listen(&taken.to_string()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
