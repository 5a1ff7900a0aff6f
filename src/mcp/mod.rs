//! The MCP hub: the [`ToolHub`] trait the agent loop calls, and [`McpHub`], its
//! implementation over real MCP servers.
//!
//! The hub owns the MCP servers (start, connect, supervise), the index of their tools under
//! names valid for OpenAI function calling, and call routing. It knows nothing of the LLM.
//!
//! # Public API
//! - [`McpHub::start`]`(&McpConfig, &ServersConfig) -> Arc<McpHub>` returns at once (call it
//!   inside a tokio runtime); every enabled server connects concurrently in the background,
//!   each bounded by `mcp.startup_timeout`, and is retried with capped backoff when it fails.
//! - [`McpHub::wait_first_attempts`]`(bound)` waits until every server's first connection
//!   attempt has finished (ready or failed), for readiness reporting.
//! - `impl` [`ToolHub`]: [`ToolHub::tools`] (a cheap `Arc<[ToolSpec]>` snapshot),
//!   [`ToolHub::call`], [`ToolHub::servers`].
//! - [`McpHub::call_server_tool`] calls a tool by server and tool name (for `mcp-chat tools call`).
//! - [`McpHub::shutdown`] stops every server; stdio children are killed with their process
//!   group and waited for.
//!
//! Files: `transport.rs` (connection set-up, child processes), `legacy_sse.rs` (the
//! 2024-11-05 SSE client transport), `supervisor.rs` (per-server task: restart, re-list),
//! `naming.rs` (exposed names, schema repair), `call.rs` (call routing), `trace.rs` (the
//! caller's trace context on tool calls), `result.rs` (results as text for the model),
//! `progress.rs` (a call's progress reports, forwarded to its caller), `proxy.rs` (the hub as
//! an MCP server sees it: full tool definitions, raw results, resources, prompts, change
//! events; for the `/mcp` edge),
//! `request_servers.rs` (a request's own remote servers: pooled client, connect, call),
//! `request_policy.rs` (their allow-list and SSRF guard), `request_hub.rs` (the hub plus a
//! request's servers as one [`ToolHub`]).
//!
//! # Per-request servers (issue #16)
//! Build one [`request_servers::RequestServerClient::new`]`(&McpConfig)` at start-up. Per
//! request: [`request_servers::RequestServerClient::connect`]`(label, url, headers,
//! allowed_tools)` for each server the request names (a
//! [`request_servers::RequestServerError::Refused`] is a 400 naming `server_url`, `Header`
//! one naming `headers`), then [`request_hub::RequestHub::new`]`(hub, servers,
//! mcp.tool_prefix)` and run the turn on it as the `Arc<dyn ToolHub>`; call
//! [`request_hub::RequestHub::close`] when the request ends.

pub mod asks;
mod call;
mod completion;
mod handler;
pub mod legacy_sse;
pub mod logging;
pub mod naming;
pub mod oauth;
pub mod progress;
pub mod proxy;
pub mod request_hub;
pub mod request_policy;
pub mod request_servers;
pub mod result;
mod stream_gate;
mod supervisor;
pub mod trace;
pub mod transport;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::config::{McpConfig, ServersConfig};
use supervisor::Slot;

/// Errors of the MCP layer (connection set-up; calls report failures as [`ToolOutcome`]s).
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Connect(String),
    /// The server wants OAuth credentials the hub does not have (or that were refused).
    #[error("{0}")]
    NeedsAuth(String),
}

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Unique across servers, `^[a-zA-Z0-9_-]{1,64}$`.
    pub name: String,
    /// The server that owns it.
    pub server: String,
    /// Its own name on that server.
    pub tool: String,
    pub description: String,
    /// JSON Schema of the arguments, repaired so OpenAI accepts it (`type: object`, `properties`).
    pub input_schema: serde_json::Value,
}

/// The result of one call, ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub server: String,
    pub tool: String,
    /// False for the tool's own `isError` result and for failures to call it.
    pub ok: bool,
    /// One string for the model: text parts joined, structured content as JSON, other
    /// parts summarised; capped with a visible truncation marker. The error text when !ok.
    pub text: String,
    pub duration: Duration,
}

/// A server's state, for readiness, `ListTools` and `mcp-chat tools`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    pub name: String,
    /// `stdio`, `streamable_http`, `sse` or `http`.
    pub transport: &'static str,
    /// `starting`, `ready`, `failed`, `restarting`, `disabled` or `stopped` (after shutdown).
    pub state: &'static str,
    pub error: Option<String>,
    pub restarts: u32,
    pub required: bool,
    pub tool_count: usize,
}

/// What the agent loop needs from the hub.
#[async_trait::async_trait]
pub trait ToolHub: Send + Sync {
    /// The tools offered now (servers that are down offer none).
    fn tools(&self) -> Arc<[ToolSpec]>;

    /// Calls the tool the model knows as `name` with `arguments` (a JSON object). Never
    /// fails as a Rust error: every failure is an outcome with `ok: false` and a message the
    /// model can read. Cancelling `cancel` cancels the call on the server.
    async fn call(
        &self,
        name: &str,
        arguments: serde_json::Value,
        cancel: CancellationToken,
    ) -> ToolOutcome;

    /// Every configured server and its state.
    fn servers(&self) -> Vec<ServerState>;

    /// [`ToolHub::call`] on behalf of `caller`, which answers what the server asks during
    /// the call (elicitation, sampling). The default ignores the caller.
    async fn call_as(
        &self,
        name: &str,
        arguments: serde_json::Value,
        cancel: CancellationToken,
        caller: Arc<dyn asks::Caller>,
    ) -> ToolOutcome {
        let _ = caller;
        self.call(name, arguments, cancel).await
    }

    /// Waits until every enabled server's first start has finished (ready or failed; at
    /// most until the start-up timeout has passed since the hub started), then names the
    /// enabled servers that are not ready now. After start-up this waits for nothing.
    async fn settle(&self) -> Arc<[String]> {
        Arc::from(Vec::new())
    }
}

/// The tool index as one snapshot: the list offered and the name -> position map.
#[derive(Default)]
struct Index {
    tools: Arc<[ToolSpec]>,
    by_name: HashMap<String, usize>,
    /// Enabled servers that are not ready (their tools are not offered).
    unready: Arc<[String]>,
}

/// State shared by the hub and its server tasks.
pub(crate) struct Shared {
    config: McpConfig,
    slots: Vec<Arc<Slot>>,
    index: RwLock<Arc<Index>>,
    /// Serialises index rebuilds so an older snapshot never replaces a newer one.
    rebuild: Mutex<()>,
    http: reqwest::Client,
    first_attempts: watch::Sender<usize>,
    /// Set once every enabled server's first start has finished, so requests after
    /// start-up skip the wait with one atomic load.
    settled: AtomicBool,
    /// When the first starts are over at the latest (hub start + start-up timeout).
    settle_by: tokio::time::Instant,
    /// Bumped whenever the offered tools or the set of ready servers change.
    changes: watch::Sender<proxy::Changes>,
    /// Resource and prompt notifications of the servers, for MCP clients of mcp-chat.
    events: broadcast::Sender<proxy::HubEvent>,
    /// The OAuth clients and tokens of the servers that use OAuth.
    vault: Arc<oauth::TokenVault>,
    /// The log levels the `/mcp` sessions have set.
    log_levels: logging::LogLevels,
}

impl Shared {
    fn snapshot(&self) -> Arc<Index> {
        self.index
            .read()
            .map(|i| i.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Recomputes the offered tools from every server's last known tools.
    fn rebuild_index(&self) {
        let _serial = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let statuses: Vec<_> = self.slots.iter().map(|s| s.status()).collect();
        let servers: Vec<_> = self
            .slots
            .iter()
            .zip(&statuses)
            .map(|(slot, st)| {
                (
                    slot.config.name.as_str(),
                    &st.tools[..],
                    st.state == "ready",
                )
            })
            .collect();
        let tools = naming::build_index(&servers, self.config.tool_prefix);
        let unready = self
            .slots
            .iter()
            .zip(&statuses)
            .filter(|(slot, st)| !slot.config.disabled && st.state != "ready")
            .map(|(slot, _)| slot.config.name.clone())
            .collect();
        let by_name = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let ready: Vec<&str> = self
            .slots
            .iter()
            .zip(&statuses)
            .filter(|(_, st)| st.state == "ready")
            .map(|(slot, _)| slot.config.name.as_str())
            .collect();
        let definitions: Vec<_> = statuses.iter().map(|st| st.tools.clone()).collect();
        let index = Arc::new(Index {
            tools: tools.into(),
            by_name,
            unready,
        });
        let old = match self.index.write() {
            Ok(mut w) => std::mem::replace(&mut *w, index.clone()),
            Err(p) => std::mem::replace(&mut *p.into_inner(), index.clone()),
        };
        self.changes
            .send_if_modified(|c| c.note(&old.tools, &index.tools, ready, definitions));
    }

    /// The server and original tool name behind an exposed name.
    fn route(&self, name: &str) -> Option<(Arc<Slot>, String)> {
        let index = self.snapshot();
        let spec = index.tools.get(*index.by_name.get(name)?)?;
        let slot = self.slots.iter().find(|s| s.config.name == spec.server)?;
        Some((slot.clone(), spec.tool.clone()))
    }

    /// Marks `slot`'s first attempt done. Called only after the index holds its outcome, so
    /// whoever is woken by the count (a settling chat, a test) sees the server's tools.
    fn first_attempt_finished(&self, slot: &Slot) {
        slot.update(|s| s.first_attempt_done = true);
        let done = self
            .slots
            .iter()
            .filter(|s| s.status().first_attempt_done)
            .count();
        if done >= self.slots.len() {
            self.settled.store(true, Ordering::Release);
        }
        self.first_attempts.send_replace(done);
    }
}

impl McpHub {
    /// The vault the OAuth servers' tokens are in.
    pub fn vault(&self) -> &Arc<oauth::TokenVault> {
        &self.shared.vault
    }

    /// Tells a server waiting for authorization to look for credentials now (after a
    /// login stored some).
    pub fn retry_auth(&self, server: &str) {
        if let Some(slot) = self.shared.slots.iter().find(|s| s.config.name == server) {
            slot.retry.notify_one();
        }
    }

    /// The last challenge a call to `server` was refused with (taken).
    pub fn take_challenge(&self, server: &str) -> Option<String> {
        let slot = self.shared.slots.iter().find(|s| s.config.name == server)?;
        slot.challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The hub's pooled HTTP client (for OAuth flows against its servers).
    pub fn http(&self) -> &reqwest::Client {
        &self.shared.http
    }
}

/// The MCP hub: every configured server, supervised, behind [`ToolHub`].
pub struct McpHub {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl McpHub {
    /// Starts connecting to every enabled server in the background and returns at once.
    /// Must be called inside a tokio runtime.
    pub fn start(config: &McpConfig, servers: &ServersConfig) -> Arc<Self> {
        Self::start_with_vault(config, servers, Arc::new(oauth::TokenVault::in_memory()))
    }

    /// [`Self::start`] with the OAuth tokens of `vault` (the session store's, shared by
    /// the replicas).
    pub fn start_with_vault(
        config: &McpConfig,
        servers: &ServersConfig,
        vault: Arc<oauth::TokenVault>,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let slots: Vec<Arc<Slot>> = servers
            .servers
            .iter()
            .map(|c| Arc::new(Slot::new(c.clone())))
            .collect();
        let disabled = slots.iter().filter(|s| s.config.disabled).count();
        let shared = Arc::new(Shared {
            config: config.clone(),
            slots,
            index: RwLock::new(Arc::new(Index::default())),
            rebuild: Mutex::new(()),
            http,
            first_attempts: watch::channel(disabled).0,
            settled: AtomicBool::new(disabled == servers.servers.len()),
            // The supervisor bounds each first attempt by the start-up timeout; the margin
            // covers the hand-over from its task.
            settle_by: tokio::time::Instant::now()
                + config.startup_timeout
                + Duration::from_millis(250),
            changes: watch::channel(proxy::Changes::default()).0,
            events: broadcast::channel(256).0,
            vault,
            log_levels: logging::LogLevels::default(),
        });
        shared.rebuild_index();
        let stop = CancellationToken::new();
        let tasks = shared
            .slots
            .iter()
            .filter(|s| !s.config.disabled)
            .map(|slot| {
                tokio::spawn(supervisor::run(
                    shared.clone(),
                    slot.clone(),
                    stop.child_token(),
                ))
            })
            .collect();
        Arc::new(Self {
            shared,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// Waits until every enabled server's first connection attempt has finished (ready or
    /// failed), at most `bound`. Returns whether they all finished in time.
    pub async fn wait_first_attempts(&self, bound: Duration) -> bool {
        let total = self.shared.slots.len();
        let mut rx = self.shared.first_attempts.subscribe();
        tokio::time::timeout(bound, rx.wait_for(|done| *done >= total))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Has `server` look for credentials now (after a login stored some) and waits for
    /// that attempt's outcome, at most `bound`: whether it is ready. A ready server stays
    /// as it is (its connection reads the new tokens from the vault on its next request).
    pub async fn retry_auth_and_wait(&self, server: &str, bound: Duration) -> bool {
        let Some(slot) = self.shared.slots.iter().find(|s| s.config.name == server) else {
            return false;
        };
        if slot.status().state == "ready" {
            return true;
        }
        let mut rx = slot.changed.subscribe();
        rx.borrow_and_update();
        slot.retry.notify_one();
        let outcome = tokio::time::timeout(bound, async {
            loop {
                if rx.changed().await.is_err() {
                    return false;
                }
                match slot.status().state {
                    // The status changes just before the supervisor rebuilds the tool
                    // index: rebuilt here too, so a call right after finds the tools.
                    "ready" => {
                        self.shared.rebuild_index();
                        return true;
                    }
                    "needs_auth" | "failed" | "stopped" => return false,
                    _ => {}
                }
            }
        });
        outcome.await.unwrap_or(false)
    }

    /// Calls `tool` on `server` by their own names (bypassing the exposed names), for
    /// `caller` when one answers what the server asks.
    pub async fn call_server_tool(
        &self,
        server: &str,
        tool: &str,
        arguments: serde_json::Value,
        cancel: CancellationToken,
        caller: Option<Arc<dyn asks::Caller>>,
    ) -> ToolOutcome {
        let exposed = self
            .shared
            .snapshot()
            .tools
            .iter()
            .find(|t| t.server == server && t.tool == tool)
            .map(|t| t.name.clone());
        match exposed {
            Some(name) => call::call(&self.shared, &name, arguments, cancel, caller).await,
            None => ToolOutcome {
                server: server.to_string(),
                tool: tool.to_string(),
                ok: false,
                text: format!("error: server {server:?} offers no tool {tool:?} now"),
                duration: Duration::ZERO,
            },
        }
    }

    /// Process ids of the stdio servers' children now running (for tests and status).
    pub fn child_pids(&self) -> Vec<u32> {
        self.shared
            .slots
            .iter()
            .filter_map(|s| s.status().pid)
            .collect()
    }

    /// Stops every server: connections closed, children killed with their process group
    /// and waited for. Idempotent.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks: Vec<_> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        for task in tasks {
            let _ = task.await;
        }
        self.shared.rebuild_index();
    }
}

impl Drop for McpHub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait::async_trait]
impl ToolHub for McpHub {
    fn tools(&self) -> Arc<[ToolSpec]> {
        self.shared.snapshot().tools.clone()
    }

    async fn call(
        &self,
        name: &str,
        arguments: serde_json::Value,
        cancel: CancellationToken,
    ) -> ToolOutcome {
        call::call(&self.shared, name, arguments, cancel, None).await
    }

    async fn call_as(
        &self,
        name: &str,
        arguments: serde_json::Value,
        cancel: CancellationToken,
        caller: Arc<dyn asks::Caller>,
    ) -> ToolOutcome {
        call::call(&self.shared, name, arguments, cancel, Some(caller)).await
    }

    fn servers(&self) -> Vec<ServerState> {
        let index = self.shared.snapshot();
        self.shared
            .slots
            .iter()
            .map(|slot| {
                let st = slot.status();
                ServerState {
                    name: slot.config.name.clone(),
                    transport: st.transport,
                    state: st.state,
                    error: st.error,
                    restarts: st.restarts,
                    required: slot.config.required,
                    tool_count: index
                        .tools
                        .iter()
                        .filter(|t| t.server == slot.config.name)
                        .count(),
                }
            })
            .collect()
    }

    async fn settle(&self) -> Arc<[String]> {
        if !self.shared.settled.load(Ordering::Acquire) {
            let total = self.shared.slots.len();
            let mut rx = self.shared.first_attempts.subscribe();
            let _ =
                tokio::time::timeout_at(self.shared.settle_by, rx.wait_for(|done| *done >= total))
                    .await;
        }
        self.shared.snapshot().unready.clone()
    }
}
