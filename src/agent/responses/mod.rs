//! OpenAI's Responses API in the core: a response is one agent turn, told as output items
//! (MCP tool listings and calls, approval requests, client function calls, messages) and
//! as the typed events of a streamed response. It is the same turn as a chat's, over the
//! same session store:
//! - A stored response (`store`, the default) keeps its conversation in a session and a
//!   record beside it (`record.rs`): the response object, its input items, the session and
//!   how many messages the session held after it, and the key that made it.
//! - `previous_response_id` continues from that point, under the session's lock (so two
//!   continuations of one conversation are serialised, across replicas too). When the
//!   session has moved on past it (a second continuation of the same response), the new
//!   response forks: its history up to that point is copied into a new session.
//! - A record of another key is as absent as an unknown one.
//!
//! Files: `input.rs` (input items → messages and approvals), `items.rs` (agent events →
//! output items and response events), `record.rs` (the stored record).

mod input;
mod items;
mod record;

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Agent, AgentEvent, AgentRequest, RequestServer, session::Continuation};
use crate::{
    config::KeyAccess,
    error::CoreError,
    model::{GenParams, ToolChoice, ToolDef},
    sessions::SessionId,
};

pub use items::{ItemRef, TextRef};

/// The most input items one request may carry.
pub const MAX_INPUT_ITEMS: usize = 2048;

/// One response asked of the agent, validated by the edge.
#[derive(Debug, Clone, Default)]
pub struct ResponsesRequest {
    pub model: Option<String>,
    pub input: Vec<InputEntry>,
    /// A system message for this response only (not carried to a continuation).
    pub instructions: Option<String>,
    pub client_tools: Vec<ToolDef>,
    pub mcp_servers: Vec<RequestServer>,
    pub tool_choice: Option<ToolChoice>,
    pub params: GenParams,
    pub store: bool,
    pub previous_response_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// What the edge echoes back in the response object (its request fields, encoded by
    /// the edge); stored and returned as given.
    pub echo: Vec<u8>,
    pub access: Option<Arc<KeyAccess>>,
}

/// An input item, with its id (given or assigned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputEntry {
    pub id: String,
    pub item: InputItem,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputItem {
    Message {
        role: InputRole,
        text: String,
    },
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    FunctionCallOutput {
        call_id: String,
        output: String,
    },
    McpApprovalResponse {
        approval_request_id: String,
        approve: bool,
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRole {
    User,
    System,
    Developer,
    Assistant,
}

/// One output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    McpListTools {
        id: String,
        server_label: String,
        tools: Vec<ListedTool>,
    },
    McpCall {
        id: String,
        server_label: String,
        name: String,
        arguments: String,
        output: Option<String>,
        error: Option<String>,
        status: ItemStatus,
        approval_request_id: Option<String>,
    },
    McpApprovalRequest {
        id: String,
        server_label: String,
        name: String,
        arguments: String,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: ItemStatus,
    },
    Message {
        id: String,
        text: String,
        status: ItemStatus,
    },
}

impl OutputItem {
    pub fn id(&self) -> &str {
        match self {
            Self::McpListTools { id, .. }
            | Self::McpCall { id, .. }
            | Self::McpApprovalRequest { id, .. }
            | Self::FunctionCall { id, .. }
            | Self::Message { id, .. } => id,
        }
    }
}

/// A tool of an MCP server, as `mcp_list_tools` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedTool {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
/// The status of an output item (and of a response, [`ResponseStatus`]).
pub enum ItemStatus {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Incomplete => "incomplete",
            Self::Failed => "failed",
        }
    }
}

/// A response's status: the same four values as an item's.
pub type ResponseStatus = ItemStatus;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
    /// Of the input tokens, those the upstream served from its cache.
    #[serde(default)]
    pub cached_tokens: u32,
    /// Of the output tokens, those spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: u32,
    pub estimated: bool,
}

/// The error of a failed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFailure {
    pub code: String,
    pub message: String,
}

/// A response: what `CreateResponse` returns and `GetResponse` reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseObject {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub status: ResponseStatus,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub usage: Option<ResponseUsage>,
    pub previous_response_id: Option<String>,
    /// With `Incomplete`: `max_output_tokens`, `content_filter` or `max_messages`.
    pub incomplete_reason: Option<String>,
    pub error: Option<ResponseFailure>,
    pub metadata: BTreeMap<String, String>,
    pub store: bool,
    /// The edge's encoded request fields (see [`ResponsesRequest::echo`]).
    #[serde(with = "record::base64_bytes")]
    pub echo: Vec<u8>,
}

/// What a streamed response yields, in order; the last is `Completed`, `Incomplete` or
/// `Failed`.
#[derive(Debug)]
pub enum ResponseEvent {
    Created(Box<ResponseObject>),
    InProgress(Box<ResponseObject>),
    ItemAdded {
        index: usize,
        item: OutputItem,
    },
    ItemDone {
        index: usize,
        item: OutputItem,
    },
    PartAdded(TextRef),
    PartDone(TextRef),
    TextDelta(TextRef),
    TextDone(TextRef),
    ListToolsInProgress(ItemRef),
    ListToolsCompleted(ItemRef),
    McpCallInProgress(ItemRef),
    McpCallCompleted(ItemRef),
    McpCallFailed(ItemRef),
    McpArgumentsDelta(TextRef),
    McpArgumentsDone(TextRef),
    FunctionArgumentsDelta(TextRef),
    FunctionArgumentsDone(TextRef),
    Completed(Box<ResponseObject>),
    Incomplete(Box<ResponseObject>),
    /// The turn failed after it started; the error is what a whole-answer call returns.
    Failed(Box<ResponseObject>, Box<CoreError>),
}

/// The events of a streamed response.
pub type ResponseStream = mpsc::Receiver<ResponseEvent>;

/// How many events a response stream may run ahead of a slow client.
const STREAM_BUFFER: usize = 64;

fn now_secs() -> i64 {
    crate::sessions::now_millis() / 1000
}

impl Agent {
    /// Starts a response. Errors before the turn starts (unknown model or previous
    /// response, a missing upstream key, bad input) come back here; later ones end the
    /// stream with `Failed`. Dropping the receiver cancels the turn.
    pub async fn create_response(
        &self,
        request: ResponsesRequest,
        cancel: CancellationToken,
    ) -> Result<ResponseStream, CoreError> {
        let key = request.access.as_ref().map(|a| a.name.clone());
        let previous = match &request.previous_response_id {
            Some(id) => Some(record::load(self.inner.sessions.as_ref(), id, key.as_deref()).await?),
            None => None,
        };
        let (messages, approvals) = input::to_conversation(&request.input)?;
        let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
        let (session, continues) = match (&previous, request.store) {
            (Some(p), store) => (
                Some(p.session.clone()),
                Some(Continuation {
                    from: p.session.clone(),
                    len: p.len,
                    write: store,
                }),
            ),
            (None, true) => (Some(SessionId::generate()), None),
            (None, false) => (None, None),
        };
        let listed_before: Vec<String> = previous
            .as_ref()
            .map_or_else(Vec::new, |p| p.listed.clone());
        let agent_request = AgentRequest {
            model: request.model.clone(),
            messages,
            params: request.params.clone(),
            client_tools: request.client_tools.clone(),
            tool_choice: request.tool_choice.clone(),
            session: session.clone(),
            answers_elicitations: false,
            mcp_servers: request.mcp_servers.clone(),
            approvals,
            access: request.access.clone(),
            instructions: request.instructions.clone(),
            report_tools: true,
            continues,
        };
        let mut events = self.stream(agent_request, cancel.clone())?;
        // Hold the response until the turn has started: what fails before (no upstream key,
        // a busy session) is the caller's error, not a failed response.
        let first = match events.recv().await {
            Some(Ok(event)) => event,
            // The stored response's conversation expired under it.
            Some(Err(CoreError::SessionNotFound(_))) if previous.is_some() => {
                return Err(CoreError::ResponseNotFound(
                    request.previous_response_id.clone().unwrap_or_default(),
                ));
            }
            Some(Err(e)) => return Err(e),
            None => return Err(CoreError::Cancelled),
        };
        let model = match &first {
            AgentEvent::Start { model, .. } => model.clone(),
            _ => request.model.clone().unwrap_or_default(),
        };
        let object = ResponseObject {
            id,
            created_at: now_secs(),
            completed_at: None,
            status: ResponseStatus::InProgress,
            model,
            output: Vec::new(),
            usage: None,
            previous_response_id: request.previous_response_id.clone(),
            incomplete_reason: None,
            error: None,
            metadata: request.metadata.clone(),
            store: request.store,
            echo: request.echo.clone(),
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let store = self.inner.sessions.clone();
        let ttl = self.inner.response_ttl;
        let fallback_len = previous.as_ref().map_or(0, |p| p.len);
        tokio::spawn(async move {
            let approved = request
                .input
                .iter()
                .filter_map(|e| match &e.item {
                    InputItem::McpApprovalResponse {
                        approval_request_id,
                        approve: true,
                        ..
                    } => Some(approval_request_id.clone()),
                    _ => None,
                })
                .collect();
            let mut assembler = items::Assembler::new(object, listed_before, approved);
            let run = async {
                for event in assembler.start() {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                let mut next = Some(Ok(first));
                loop {
                    let Some(item) = next.take() else {
                        match events.recv().await {
                            Some(item) => {
                                next = Some(item);
                                continue;
                            }
                            None => return,
                        }
                    };
                    let done = matches!(item, Ok(AgentEvent::Done(_)) | Err(_));
                    let (out, finished) = assembler.push(item);
                    if let Some(finished) = finished
                        && finished.store
                    {
                        let stored = record::Stored {
                            object: finished.object,
                            input: request.input.clone(),
                            session: finished
                                .session
                                .or_else(|| session.as_ref().map(|s| s.as_str().to_string()))
                                .unwrap_or_default(),
                            len: finished.session_len.unwrap_or(fallback_len),
                            key: key.clone(),
                            listed: finished.listed,
                        };
                        if let Err(e) = record::save(store.as_ref(), &stored, ttl).await {
                            tracing::warn!(response = %stored.object.id, "storing the response failed: {e}");
                        }
                    }
                    for event in out {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    if done {
                        return;
                    }
                }
            };
            tokio::select! {
                biased;
                () = run => {}
                () = tx.closed() => cancel.cancel(),
            }
        });
        Ok(rx)
    }

    /// A stored response of the caller's key.
    pub async fn response(&self, id: &str, key: Option<&str>) -> Result<ResponseObject, CoreError> {
        Ok(record::load(self.inner.sessions.as_ref(), id, key)
            .await?
            .object)
    }

    /// The input items of a stored response of the caller's key.
    pub async fn response_input(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<Vec<InputEntry>, CoreError> {
        Ok(record::load(self.inner.sessions.as_ref(), id, key)
            .await?
            .input)
    }

    /// Deletes a stored response of the caller's key (its conversation's session stays
    /// for the responses that continue it).
    pub async fn delete_response(&self, id: &str, key: Option<&str>) -> Result<(), CoreError> {
        record::load(self.inner.sessions.as_ref(), id, key).await?;
        self.inner.sessions.remove_pending(id).await?;
        Ok(())
    }
}

/// Collects a response stream into the whole response (`CreateResponse`); a failed turn
/// is its error.
pub async fn collect(mut stream: ResponseStream) -> Result<ResponseObject, CoreError> {
    while let Some(event) = stream.recv().await {
        match event {
            ResponseEvent::Completed(object) | ResponseEvent::Incomplete(object) => {
                return Ok(*object);
            }
            ResponseEvent::Failed(_, error) => return Err(*error),
            _ => {}
        }
    }
    Err(CoreError::Cancelled)
}
