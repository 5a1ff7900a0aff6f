//! Routing one tool call: exposed name -> server ([`call`]; [`call_with`] is the part a
//! per-request server shares), timeout reset by progress up to a hard
//! maximum, retries for transport failures and servers that are restarting (never for the
//! tool's own `isError`), cancellation forwarded as `notifications/cancelled`, and the
//! caller's trace context sent along in the request's `_meta` (`trace.rs`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rmcp::{
    RoleClient,
    model::{
        CallToolRequestParams, CancelledNotificationParam, ClientRequest, JsonObject, Request,
        ServerResult,
    },
    service::{Peer, PeerRequestOptions, ServiceError},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{
    Shared, ToolOutcome,
    asks::Caller,
    progress::{ProgressRoutes, ProgressSink},
    result,
    supervisor::Slot,
    trace,
};
use crate::config::McpConfig;

/// How long a call's progress route stays open after its result arrived.
const PROGRESS_GRACE: Duration = Duration::from_millis(10);

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt: the request did not reach a live server.
    Retry(String),
    /// Final.
    Fail(String),
    /// The server refused the call's authorization (401, or 403 for a missing scope): the
    /// `WWW-Authenticate` challenge.
    Auth(String),
}

pub async fn call(
    shared: &Shared,
    name: &str,
    arguments: Value,
    cancel: CancellationToken,
    caller: Option<Arc<dyn Caller>>,
) -> ToolOutcome {
    let Some((slot, tool)) = shared.route(name) else {
        return ToolOutcome {
            server: String::new(),
            tool: name.to_string(),
            ok: false,
            text: format!("error: there is no tool named {name:?} (it may have been withdrawn)"),
            duration: Duration::ZERO,
        };
    };
    // A caller that may take a while to answer the server's questions extends the timeout.
    let patience = caller
        .as_ref()
        .and_then(|c| c.patience())
        .unwrap_or_default();
    // The server's progress reports go to the caller too.
    let hook = caller.clone().map(|c| {
        let sink: ProgressSink = Arc::new(move |p| c.progress(p));
        (slot.progress.clone(), sink)
    });
    // What the server asks during the call goes to this caller.
    let _caller = caller.map(|c| slot.callers.enter(c));
    let base = slot.config.timeout.unwrap_or(shared.config.call_timeout);
    let target = Target {
        server: &slot.config.name,
        tool: &tool,
        timeout: base + patience,
        config: &shared.config,
        reauth: Some(&slot),
    };
    call_hooked(target, arguments, &cancel, hook.as_ref(), || {
        wait_for_peer(&slot, base, &cancel)
    })
    .await
}

/// [`call`] for an MCP client of mcp-chat: the server's `CallToolResult` as JSON (not
/// flattened), the progress it reports sent to `progress`. `None`: no tool of that name is
/// offered; `Some(Err)`: why the call failed.
pub async fn call_raw(
    shared: &Shared,
    name: &str,
    arguments: Value,
    cancel: CancellationToken,
    caller: Option<Arc<dyn Caller>>,
    progress: Option<ProgressSink>,
) -> Option<Result<Value, String>> {
    let (slot, tool) = shared.route(name)?;
    let patience = caller
        .as_ref()
        .and_then(|c| c.patience())
        .unwrap_or_default();
    let _caller = caller.map(|c| slot.callers.enter(c));
    let base = slot.config.timeout.unwrap_or(shared.config.call_timeout);
    let target = Target {
        server: &slot.config.name,
        tool: &tool,
        timeout: base + patience,
        config: &shared.config,
        reauth: Some(&slot),
    };
    let hook = progress.map(|sink| (slot.progress.clone(), sink));
    Some(
        attempts(target, arguments, &cancel, hook.as_ref(), || {
            wait_for_peer(&slot, base, &cancel)
        })
        .await,
    )
}

/// One call's target and limits, for [`call_with`].
pub(super) struct Target<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    /// The per-call timeout (reset by progress).
    pub timeout: Duration,
    /// `call_max_duration`, `call_retries`, `max_tool_output`.
    pub config: &'a McpConfig,
    /// The server this is, told when it refuses the call's authorization: a 401 re-makes
    /// the connection, a 403's challenge is kept for the next login.
    pub reauth: Option<&'a Slot>,
}

/// Calls `target` with the peer `peer` gives for each attempt (it may wait for a server that
/// restarts); retries transport failures, flattens the result (`result.rs`). Never fails as
/// a Rust error: every failure is an outcome with `ok: false`.
pub(super) async fn call_with<F, Fut>(
    target: Target<'_>,
    arguments: Value,
    cancel: &CancellationToken,
    peer: F,
) -> ToolOutcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Peer<RoleClient>, String>>,
{
    call_hooked(target, arguments, cancel, None, peer).await
}

/// [`call_with`], the server's progress reports sent to `progress`.
async fn call_hooked<F, Fut>(
    target: Target<'_>,
    arguments: Value,
    cancel: &CancellationToken,
    progress: Option<&ProgressHook>,
    peer: F,
) -> ToolOutcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Peer<RoleClient>, String>>,
{
    let started = Instant::now();
    let (server, tool, max_output) = (
        target.server.to_string(),
        target.tool.to_string(),
        target.config.max_tool_output,
    );
    let (ok, text) = match attempts(target, arguments, cancel, progress, peer).await {
        Ok(value) => {
            let is_error = value.get("isError").and_then(Value::as_bool) == Some(true);
            (!is_error, result::flatten(&value, max_output))
        }
        Err(text) => (false, text),
    };
    ToolOutcome {
        server,
        tool,
        ok,
        text,
        duration: started.elapsed(),
    }
}

/// Where a call's progress goes: the server's routes and the caller's sink.
pub(super) type ProgressHook = (Arc<ProgressRoutes>, ProgressSink);

/// The attempts of one call: the server's `CallToolResult` as JSON, or why it failed (the
/// text for the model). Transport failures and restarts are retried.
pub(super) async fn attempts<F, Fut>(
    target: Target<'_>,
    arguments: Value,
    cancel: &CancellationToken,
    progress: Option<&ProgressHook>,
    mut peer: F,
) -> Result<Value, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Peer<RoleClient>, String>>,
{
    let Target {
        server,
        tool,
        timeout,
        config,
        reauth,
    } = target;
    let arguments: JsonObject = match arguments {
        Value::Object(map) => map,
        Value::Null => JsonObject::new(),
        other => {
            return Err(format!(
                "error: the arguments must be a JSON object, not {other}"
            ));
        }
    };
    let max_total = config.call_max_duration.max(timeout);
    let mut attempt = 0;
    loop {
        let peer = peer().await?;
        let once = Once {
            tool,
            timeout,
            max_total,
            progress,
        };
        let failure = match call_once(&peer, once, arguments.clone(), cancel).await {
            Ok(value) => return Ok(value),
            Err(f) => f,
        };
        match failure {
            Failure::Retry(why) if attempt < config.call_retries => {
                attempt += 1;
                tracing::info!(server = %server, tool = %tool, attempt, "retrying tool call: {why}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Failure::Retry(why) | Failure::Fail(why) => {
                return Err(format!(
                    "error calling tool {tool:?} on MCP server {server:?}: {why}"
                ));
            }
            Failure::Auth(challenge) => {
                let scope = super::oauth::insufficient_scope(&challenge);
                if let Some(slot) = reauth {
                    if scope.is_none() {
                        slot.reauth.notify_one();
                    }
                    *slot.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(challenge);
                }
                return Err(match scope {
                    Some(scope) => format!(
                        "error calling tool {tool:?} on MCP server {server:?}: the server requires the scope {scope:?}, which the token lacks; run `mcp-chat auth login {server}` to grant it"
                    ),
                    None => format!(
                        "error calling tool {tool:?} on MCP server {server:?}: the server refused the authorization; it is being re-authorized"
                    ),
                });
            }
        }
    }
}

/// The server's live peer; waits (up to `bound`) while it is starting or restarting.
async fn wait_for_peer(
    slot: &Slot,
    bound: Duration,
    cancel: &CancellationToken,
) -> Result<Peer<RoleClient>, String> {
    let mut changed = slot.changed.subscribe();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let status = slot.status();
        if let Some(peer) = status.peer {
            return Ok(peer);
        }
        let why = status.error.unwrap_or_else(|| status.state.to_string());
        if !matches!(status.state, "starting" | "restarting") {
            return Err(format!(
                "error: MCP server {:?} is {} ({why})",
                slot.config.name, status.state
            ));
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return Err("error: the hub is shutting down".into()) },
            () = tokio::time::sleep_until(deadline) => {
                return Err(format!("error: MCP server {:?} is still {} after {bound:?} ({why})", slot.config.name, status.state));
            }
            () = cancel.cancelled() => return Err("error: the call was cancelled".into()),
        }
    }
}

/// Sends `notifications/cancelled` for a request whose caller went away before it ended.
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: Option<rmcp::model::RequestId>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.peer = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let (Some(peer), Some(id)) = (self.peer.take(), self.id.take()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let param =
                    CancelledNotificationParam::new(Some(id), Some("the caller went away".into()));
                if let Err(e) = peer.notify_cancelled(param).await {
                    tracing::debug!("could not send notifications/cancelled: {e}");
                }
            });
        }
    }
}

/// One attempt's target and limits.
struct Once<'a> {
    tool: &'a str,
    timeout: Duration,
    max_total: Duration,
    progress: Option<&'a ProgressHook>,
}

async fn call_once(
    peer: &Peer<RoleClient>,
    once: Once<'_>,
    arguments: JsonObject,
    cancel: &CancellationToken,
) -> Result<Value, Failure> {
    let Once {
        tool,
        timeout,
        max_total,
        progress,
    } = once;
    let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
    // The current span is the caller's `tool.call`: the server's spans become its children.
    trace::inject(&mut params);
    let options = PeerRequestOptions::with_timeout(timeout)
        .reset_timeout_on_progress()
        .with_max_total_timeout(max_total);
    let handle = peer
        .send_request_with_option(
            ClientRequest::CallToolRequest(Request::new(params)),
            options,
        )
        .await
        .map_err(|e| Failure::Retry(format!("could not send the request: {e}")))?;
    let id = handle.id.clone();
    // The server's progress reports for this request go to the caller's sink.
    // Whether the server reported progress for this call at all (see the grace below).
    let reported = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _progress = progress.map(|(routes, sink)| {
        let (sink, reported) = (sink.clone(), reported.clone());
        let counted: ProgressSink = Arc::new(move |p| {
            reported.store(true, std::sync::atomic::Ordering::Relaxed);
            sink(p);
        });
        routes.enter(handle.progress_token.clone(), counted)
    });
    // A caller that is dropped mid-call (client gone, deadline) cancels it too.
    let mut on_drop = CancelOnDrop {
        peer: Some(peer.clone()),
        id: Some(id.clone()),
    };
    let response = tokio::select! {
        r = handle.await_response() => r,
        () = cancel.cancelled() => {
            on_drop.disarm();
            let param = CancelledNotificationParam::new(Some(id), Some("cancelled by the client".into()));
            if let Err(e) = peer.notify_cancelled(param).await {
                tracing::debug!("could not send notifications/cancelled: {e}");
            }
            return Err(Failure::Fail("the call was cancelled".into()));
        }
    };
    on_drop.disarm();
    if reported.load(std::sync::atomic::Ordering::Relaxed) {
        // rmcp handles each notification in a task of its own, so a report the server sent
        // just before its result may still be on its way: give it a moment to arrive. Only
        // for a server that reports progress on this call, so other calls lose no time.
        tokio::time::sleep(PROGRESS_GRACE).await;
    }
    if let Err(e) = &response
        && let Some(challenge) = e.auth_challenge()
    {
        return Err(Failure::Auth(challenge.to_string()));
    }
    match response {
        Ok(ServerResult::CallToolResult(r)) => serde_json::to_value(r)
            .map_err(|e| Failure::Fail(format!("cannot read the result: {e}"))),
        Ok(other) => Ok(serde_json::to_value(other).unwrap_or(Value::Null)),
        Err(ServiceError::McpError(e)) => Err(Failure::Fail(format!(
            "the server answered with error {}: {}",
            e.code.0, e.message
        ))),
        Err(ServiceError::Timeout { timeout }) => Err(Failure::Fail(format!(
            "no answer within {timeout:?}; the call was cancelled"
        ))),
        Err(ServiceError::TransportSend(e)) => Err(Failure::Retry(format!("transport error: {e}"))),
        Err(ServiceError::TransportClosed) => Err(Failure::Fail(
            "the server went away during the call (it is being restarted)".into(),
        )),
        Err(e) => Err(Failure::Fail(e.to_string())),
    }
}
