//! The MCP hub seam: the [`ToolHub`] trait the agent loop calls and its types.
//!
//! The hub owns the MCP servers (start, connect, supervise), the index of their tools under
//! names valid for OpenAI function calling, and call routing. It knows nothing of the LLM.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

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
    /// `starting`, `ready`, `failed`, `restarting` or `disabled`.
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
}
