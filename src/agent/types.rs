//! The agent's request, events and response: core types, no wire shapes.

use std::time::Duration;

use crate::{
    model::{GenParams, Message, ToolCall, ToolChoice, ToolDef, Usage},
    sessions::SessionId,
};

/// One turn asked of the agent, already validated by the edge.
#[derive(Debug, Clone, Default)]
pub struct AgentRequest {
    /// A configured model id; `None` = the default model.
    pub model: Option<String>,
    /// The conversation (stored history first, when there is one).
    pub messages: Vec<Message>,
    pub params: GenParams,
    /// Client-side tools: a call to one ends the turn and goes back to the caller.
    pub client_tools: Vec<ToolDef>,
    pub tool_choice: Option<ToolChoice>,
    /// Server-side memory: the stored history is prepended and the turn stored when it
    /// completes (whole, or not at all). A new id starts a new session.
    pub session: Option<SessionId>,
    /// A streamed turn whose caller answers `ElicitationRequired` events; otherwise a
    /// server's request for input is declined.
    pub answers_elicitations: bool,
    /// MCP servers named for this request; when any is, only their tools are offered
    /// (besides the client tools).
    pub mcp_servers: Vec<RequestServer>,
    /// Decisions on calls an earlier turn left waiting for approval.
    pub approvals: Vec<super::approvals::ApprovalDecision>,
    /// The caller's key scope (`[[api_keys]]`); `None`: everything.
    pub access: Option<std::sync::Arc<crate::config::KeyAccess>>,
    /// A system message for this turn only: sent first, never stored (the Responses API's
    /// `instructions`); it takes the place of the configured system prompt.
    pub instructions: Option<String>,
    /// Stream a `ToolsListed` event with the offered MCP servers' tools.
    pub report_tools: bool,
    /// Continue `session` from a point of another session's history (a stored response):
    /// see [`super::session`].
    pub continues: Option<super::session::Continuation>,
}

/// The tools of one MCP server offered in a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedServer {
    /// The server's name (or a request server's label).
    pub label: String,
    pub tools: Vec<crate::mcp::ToolSpec>,
}

/// An MCP server named by a request (OpenAI's `type: "mcp"` tool).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestServer {
    /// Without `url`: a server of `servers_config.json`.
    pub label: String,
    /// A remote server for this request only.
    pub url: Option<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    /// Only these tools (their own names) are offered; all when `None`.
    pub allowed_tools: Option<Vec<String>>,
    pub approval: super::approvals::ApprovalPolicy,
    /// Where it was named, for errors (`tools[3]`).
    pub field: String,
}

/// Why a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    /// The model called client-side tools; the caller runs them and continues.
    ToolCalls,
    ContentFilter,
    /// `agent.max_tool_iterations` rounds of tool calls were made.
    IterationLimit,
    /// Another reason the upstream gave, kept as it said it.
    Other(String),
}

/// Token usage of a whole turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnUsage {
    pub usage: Usage,
    /// True when at least one upstream call reported none and its share was estimated.
    pub estimated: bool,
}

/// A tool call the agent executed on an MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutedCall {
    pub id: String,
    pub name: String,
    pub server: String,
    pub tool: String,
    pub arguments: String,
    pub ok: bool,
    pub result: String,
    pub duration: Duration,
}

/// The outcome of a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentResponse {
    /// `chatcmpl-…`, unique per turn.
    pub id: String,
    pub model: String,
    /// The session the turn was stored in.
    pub session_id: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// The final assistant message (client-side `tool_calls` when `finish` is ToolCalls).
    pub message: Message,
    /// The model's refusal in its last answer, when the upstream sent one.
    pub refusal: Option<String>,
    pub finish: Finish,
    pub usage: TurnUsage,
    /// MCP calls executed server-side, in the order the model made them.
    pub executed: Vec<ExecutedCall>,
    /// Every message the turn added after the request's own (assistant messages with
    /// their tool calls, tool results, the final answer): what a session stores.
    pub new_messages: Vec<Message>,
    /// Server-side calls that did not run and wait for the caller's approval (they are
    /// among `message.tool_calls`; `finish` is ToolCalls).
    pub approval_requests: Vec<super::approvals::ApprovalRequest>,
    /// How many messages the session holds after this turn (0 without a session).
    pub session_len: usize,
}

/// What a streamed turn yields, in order. `Done` is last.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// Ids known before any output.
    Start {
        id: String,
        model: String,
        created: i64,
        session_id: Option<String>,
    },
    /// The MCP servers' tools offered in this turn (only when the request asks for it).
    ToolsListed(Vec<ListedServer>),
    /// Assistant text as it arrives.
    Content(String),
    ToolCallStarted {
        id: String,
        name: String,
        server: String,
        tool: String,
        arguments: String,
    },
    ToolCallFinished {
        id: String,
        name: String,
        ok: bool,
        result: String,
        duration: Duration,
    },
    /// Progress an MCP server reported for the running call `id`.
    ToolCallProgress {
        id: String,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    },
    /// A client-side tool call, complete.
    ClientToolCall(ToolCall),
    /// An MCP server asks the caller for input; the turn waits for
    /// [`Agent::answer_elicitation`](super::Agent::answer_elicitation) with this id.
    ElicitationRequired(super::pending::OpenElicitation),
    /// A server-side call waits for the caller's approval (it is also in the final
    /// message's `tool_calls`).
    ApprovalRequired(super::approvals::ApprovalRequest),
    Usage(TurnUsage),
    Done(Box<AgentResponse>),
}
