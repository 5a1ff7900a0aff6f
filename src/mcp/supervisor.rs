//! One task per server: connect (bounded by the start-up timeout), list tools, watch the
//! connection, re-list on `notifications/tools/list_changed`, and on loss or failure restart
//! with capped exponential backoff (reset once the server has stayed up a while).
//!
//! The task publishes everything the hub reads into the server's [`Slot`]: state, last
//! error, restart count, the live peer and the last known tools. Locks are held only to copy
//! values in or out, never across an await.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use rmcp::{RoleClient, service::Peer};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{
    McpError, Shared,
    naming::ListedTool,
    transport::{self, Connection, Handler},
};
use crate::config::McpServerConfig;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A server that stays up this long has its backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How often a server waiting for authorization looks for new credentials (another
/// process's login, another replica's refresh) in the shared store.
const NEEDS_AUTH_POLL: Duration = Duration::from_secs(5);

/// What the hub knows of one server.
pub struct Slot {
    pub config: McpServerConfig,
    status: Mutex<SlotStatus>,
    /// Bumped on every change of state, so callers can wait for a server to come back.
    pub changed: watch::Sender<u64>,
    /// The callers of the calls in flight here, asked when the server sends a request.
    pub callers: Arc<super::asks::Callers>,
    /// The progress sinks of the calls in flight here.
    pub progress: Arc<super::progress::ProgressRoutes>,
    /// Told when the server refused a call's authorization: the connection is re-made
    /// (refreshing the token, or finding it revoked).
    pub reauth: Notify,
    /// Told when new credentials may be stored (a login): a server waiting for
    /// authorization retries at once.
    pub retry: Notify,
    /// The last `WWW-Authenticate` challenge a call was refused with (a step-up's scope).
    pub challenge: Mutex<Option<String>>,
}

#[derive(Clone)]
pub struct SlotStatus {
    pub state: &'static str,
    pub transport: &'static str,
    pub error: Option<String>,
    pub restarts: u32,
    /// The last tools listed (after the allow/deny filters); kept while down.
    pub tools: Arc<[ListedTool]>,
    pub peer: Option<Peer<RoleClient>>,
    pub pid: Option<u32>,
    pub first_attempt_done: bool,
}

impl Slot {
    pub fn new(config: McpServerConfig) -> Self {
        let state = if config.disabled {
            "disabled"
        } else {
            "starting"
        };
        let transport = config.transport.kind();
        Self {
            status: Mutex::new(SlotStatus {
                state,
                transport,
                error: None,
                restarts: 0,
                tools: Arc::from(Vec::new()),
                peer: None,
                pid: None,
                first_attempt_done: config.disabled,
            }),
            config,
            changed: watch::channel(0).0,
            callers: Arc::default(),
            progress: Arc::default(),
            reauth: Notify::new(),
            retry: Notify::new(),
            challenge: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the status.
    pub fn status(&self) -> SlotStatus {
        self.lock().clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut SlotStatus)) {
        f(&mut self.lock());
        self.changed.send_modify(|n| *n += 1);
    }
}

/// Runs one server until `stop` is cancelled; then stops its connection (and child).
pub async fn run(shared: Arc<Shared>, slot: Arc<Slot>, stop: CancellationToken) {
    supervise(&shared, &slot, &stop).await;
    slot.update(|s| {
        s.state = "stopped";
        s.peer = None;
        s.pid = None;
    });
}

async fn supervise(shared: &Arc<Shared>, slot: &Arc<Slot>, stop: &CancellationToken) {
    let name = slot.config.name.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let list_changed = Arc::new(Notify::new());
        let handler = Handler {
            server: Arc::from(name.as_str()),
            list_changed: list_changed.clone(),
            callers: slot.callers.clone(),
            sampling: slot.config.sampling,
            progress: slot.progress.clone(),
            events: shared.events.clone(),
        };
        let attempt = async {
            let mut conn = transport::connect(&slot.config, handler, &shared.http, &shared.vault)
                .await
                .map_err(|e| match e {
                    McpError::NeedsAuth(m) => Failed::NeedsAuth(m),
                    other => Failed::Other(other.to_string()),
                })?;
            let listed = match transport::negotiated_version(conn.service.peer()) {
                Ok(version) => {
                    tracing::debug!(server = %name, protocol_version = %version, "MCP handshake done");
                    list_tools_or_challenge(
                        conn.service.peer(),
                        slot.config.allowed_tools.as_deref(),
                        &slot.config.disabled_tools,
                    )
                    .await
                }
                Err(e) => Err((e.to_string(), None)),
            };
            match listed {
                Ok(tools) => Ok((conn, tools)),
                Err((e, challenge)) => {
                    if let Some(child) = conn.child.take() {
                        child.stop().await;
                    }
                    match challenge {
                        // Initialized without a token, then refused (or refused a scope):
                        // the server waits for authorization; its challenge is kept for
                        // the login.
                        Some(challenge) => {
                            let why = format!(
                                "the server asks for authorization ({}); run `mcp-chat auth login {name}`",
                                transport::challenge_summary(&challenge)
                            );
                            *slot.challenge.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(challenge);
                            Err(Failed::NeedsAuth(why))
                        }
                        None => Err(Failed::Other(e)),
                    }
                }
            }
        };
        let timeout = shared.config.startup_timeout;
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, attempt) => r.unwrap_or_else(|_| Err(Failed::Other(format!("did not start within {timeout:?}")))),
            () = stop.cancelled() => return,
        };
        match result {
            Ok((conn, tools)) => {
                tracing::info!(server = %name, transport = conn.transport, tools = tools.len(), "MCP server ready");
                slot.update(|s| {
                    s.state = "ready";
                    s.transport = conn.transport;
                    s.error = None;
                    s.tools = tools.into();
                    s.peer = Some(conn.service.peer().clone());
                    s.pid = conn.child.as_ref().and_then(|c| c.pid);
                });
                shared.rebuild_index();
                shared.first_attempt_finished(slot);
                super::logging::on_ready(shared, conn.service.peer());
                let up_since = Instant::now();
                let reason = serve(slot, shared, conn, &list_changed, stop).await;
                let Some(reason) = reason else { return };
                tracing::warn!(server = %name, "MCP server lost: {reason}");
                if up_since.elapsed() >= STABLE_AFTER {
                    backoff = FIRST_BACKOFF;
                }
            }
            Err(Failed::NeedsAuth(e)) => {
                // Not a fault of the server: it waits for credentials, polled without
                // backoff, and told at once when a login stores some.
                let was = slot.status().state;
                if was != "needs_auth" {
                    tracing::warn!(server = %name, "MCP server {e}");
                }
                slot.update(|s| {
                    s.state = "needs_auth";
                    s.error = Some(e);
                    s.peer = None;
                });
                shared.rebuild_index();
                shared.first_attempt_finished(slot);
                tokio::select! {
                    () = tokio::time::sleep(NEEDS_AUTH_POLL) => {}
                    () = slot.retry.notified() => {}
                    () = stop.cancelled() => return,
                }
                continue;
            }
            Err(Failed::Other(e)) => {
                tracing::warn!(server = %name, "MCP server failed to start: {e}");
                slot.update(|s| {
                    s.state = "failed";
                    s.error = Some(e);
                });
                shared.rebuild_index();
                shared.first_attempt_finished(slot);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(shared.config.max_restart_backoff.max(FIRST_BACKOFF));
        slot.update(|s| {
            s.restarts += 1;
            s.state = "restarting";
        });
    }
}

/// Why an attempt to bring a server up failed.
enum Failed {
    /// It waits for OAuth credentials.
    NeedsAuth(String),
    Other(String),
}

/// Watches a live connection. Returns why it was lost, or `None` when told to stop.
async fn serve(
    slot: &Slot,
    shared: &Shared,
    conn: Connection,
    list_changed: &Notify,
    stop: &CancellationToken,
) -> Option<String> {
    let Connection {
        service,
        mut child,
        renewal: _renewal,
        ..
    } = conn;
    let peer = service.peer().clone();
    let cancel_service = service.cancellation_token();
    let mut waiting = Box::pin(service.waiting());
    let mut service_ended = false;
    let reason = loop {
        tokio::select! {
            r = &mut waiting => {
                service_ended = true;
                // The transport closed; for a child, wait briefly for its exit status.
                let mut why = format!("the connection closed ({})", match r {
                    Ok(q) => format!("{q:?}"),
                    Err(e) => e.to_string(),
                });
                if let Some(c) = child.as_mut()
                    && let Ok(exit) = tokio::time::timeout(Duration::from_secs(1), c.exited()).await
                {
                    why = exit;
                }
                break Some(why);
            }
            exit = async {
                match child.as_mut() {
                    Some(c) => c.exited().await,
                    None => std::future::pending().await,
                }
            } => break Some(exit),
            () = list_changed.notified() => {
                match tokio::time::timeout(shared.config.startup_timeout, list_tools(&peer, slot.config.allowed_tools.as_deref(), &slot.config.disabled_tools)).await {
                    Ok(Ok(tools)) => {
                        tracing::info!(server = %slot.config.name, tools = tools.len(), "tool list changed");
                        slot.update(|s| s.tools = tools.into());
                        shared.rebuild_index();
                    }
                    Ok(Err(e)) => tracing::warn!(server = %slot.config.name, "re-listing tools failed: {e}"),
                    Err(_) => tracing::warn!(server = %slot.config.name, "re-listing tools timed out"),
                }
            }
            () = slot.reauth.notified() => {
                break Some("the server refused the authorization; re-authorizing".into());
            }
            () = stop.cancelled() => break None,
        }
    };
    // Withdraw the tools at once, then close the connection and the child.
    slot.update(|s| {
        s.peer = None;
        s.pid = None;
        if let Some(reason) = &reason {
            s.state = "restarting";
            s.error = Some(reason.clone());
        }
    });
    shared.rebuild_index();
    cancel_service.cancel();
    if !service_ended {
        let _ = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    }
    if let Some(child) = child {
        child.stop().await;
    }
    reason
}

/// `tools/list` with pagination, filtered by a server's allow list (`None`: every tool) and
/// deny list.
pub(super) async fn list_tools(
    peer: &Peer<RoleClient>,
    allowed: Option<&[String]>,
    disabled: &[String],
) -> Result<Vec<ListedTool>, String> {
    list_tools_or_challenge(peer, allowed, disabled)
        .await
        .map_err(|(e, _)| e)
}

/// [`list_tools`]; a refusal for want of authorization also gives the server's
/// `WWW-Authenticate` challenge.
async fn list_tools_or_challenge(
    peer: &Peer<RoleClient>,
    allowed: Option<&[String]>,
    disabled: &[String],
) -> Result<Vec<ListedTool>, (String, Option<String>)> {
    let tools = peer.list_all_tools().await.map_err(|e| {
        (
            format!("tools/list failed: {e}"),
            e.auth_challenge().map(str::to_string),
        )
    })?;
    Ok(tools
        .into_iter()
        .filter(|t| {
            let name = t.name.as_ref();
            allowed.is_none_or(|allowed| allowed.iter().any(|a| a == name))
                && !disabled.iter().any(|d| d == name)
        })
        .map(|t| ListedTool {
            name: t.name.to_string(),
            description: t
                .description
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            input_schema: serde_json::Value::Object((*t.input_schema).clone()),
            definition: Some(Arc::new(t)),
        })
        .collect())
}
