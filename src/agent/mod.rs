//! The agent: given a conversation, call the upstream LLM with the MCP tools, execute the
//! tool calls it makes, feed the results back, and answer — whole ([`Agent::chat`]) or as a
//! stream of [`AgentEvent`]s ([`Agent::stream`]), streaming across tool calls.
//!
//! Every I/O dependency is a trait held as `Arc<dyn …>` ([`LlmClient`], [`ToolHub`]), so the
//! loop is tested with scripted fakes. A stream is a producer task feeding a bounded channel:
//! when the receiver is dropped (client gone) the work is cancelled — the upstream request is
//! dropped and in-flight tool calls are cancelled.

pub mod approvals;
mod models;
pub mod pending;
pub mod prompt_tools;
pub mod responses;
mod session;
mod turn;
mod types;
pub mod usage;

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use models::{ModelRoute, ModelTable};
pub use session::Continuation;
pub use types::{
    AgentEvent, AgentRequest, AgentResponse, ExecutedCall, Finish, ListedServer, RequestServer,
    TurnUsage,
};

use crate::{
    config::AgentConfig,
    error::CoreError,
    llm::LlmClient,
    mcp::{ToolHub, request_servers::RequestServerClient},
    sessions::{Session, SessionId, SessionStore},
};

/// How many events a stream may run ahead of a slow client.
const STREAM_BUFFER: usize = 64;

/// The agent core. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    llm: Arc<dyn LlmClient>,
    hub: Arc<dyn ToolHub>,
    sessions: Arc<dyn SessionStore>,
    models: ModelTable,
    settings: AgentConfig,
    lock_timeout: Duration,
    /// Requests waiting on the caller (elicitations), kept in the session store.
    pending: Arc<pending::Pending>,
    /// Connects the remote MCP servers requests name (`mcp.request_servers`).
    request_servers: Option<Arc<RequestServerClient>>,
    tool_prefix: crate::config::ToolPrefix,
    /// How long a stored response stays (the sessions' ttl).
    response_ttl: Duration,
    /// Token counts of the messages turns send, each message counted once.
    tokens: crate::sessions::TokenCounter,
}

/// What an agent is built from.
pub struct AgentParts {
    pub llm: Arc<dyn LlmClient>,
    pub hub: Arc<dyn ToolHub>,
    pub sessions: Arc<dyn SessionStore>,
    pub models: ModelTable,
    pub settings: AgentConfig,
    /// How long a turn waits for a session another request is using.
    pub lock_timeout: Duration,
    /// Per-request remote MCP servers; `None`: refused.
    pub request_servers: Option<Arc<RequestServerClient>>,
    /// How request servers' tools are named beside the hub's.
    pub tool_prefix: crate::config::ToolPrefix,
    /// How long a stored response stays (the sessions' ttl).
    pub response_ttl: Duration,
}

/// One item of a turn's event stream.
pub type EventItem = Result<AgentEvent, CoreError>;

/// The producer's end of a turn's event channel (a bounded tokio channel). Items travel
/// boxed: the channel stores its slots in blocks of 32, and 32 whole events (an event or
/// an error is a couple of hundred bytes) made a few KiB per block, touched by every
/// stream; boxed, a block is 256 bytes and an event's memory lives only while it waits.
#[derive(Clone)]
pub struct EventSender(mpsc::Sender<Box<EventItem>>);

impl EventSender {
    /// Waits for room, then sends; the item comes back when the receiver is gone.
    pub async fn send(&self, item: EventItem) -> Result<(), mpsc::error::SendError<EventItem>> {
        self.0
            .send(Box::new(item))
            .await
            .map_err(|e| mpsc::error::SendError(*e.0))
    }

    /// Sends when there is room now; otherwise drops the item. Whether it was sent.
    pub fn try_send(&self, item: EventItem) -> bool {
        self.0.try_send(Box::new(item)).is_ok()
    }

    /// Resolves when the receiver is gone.
    pub async fn closed(&self) {
        self.0.closed().await;
    }
}

/// A stream of a turn's events; the last item is `Ok(AgentEvent::Done)` or an error.
pub struct AgentStream(mpsc::Receiver<Box<EventItem>>);

impl AgentStream {
    /// The next event; `None` once the turn's producer is gone.
    pub async fn recv(&mut self) -> Option<EventItem> {
        self.0.recv().await.map(|item| *item)
    }
}

/// A turn's event channel with room for `buffer` events.
fn event_channel(buffer: usize) -> (EventSender, AgentStream) {
    let (tx, rx) = mpsc::channel(buffer);
    (EventSender(tx), AgentStream(rx))
}

impl Agent {
    pub fn new(parts: AgentParts) -> Self {
        let AgentParts {
            llm,
            hub,
            sessions,
            models,
            settings,
            lock_timeout,
            request_servers,
            tool_prefix,
            response_ttl,
        } = parts;
        let pending = Arc::new(pending::Pending::new(
            sessions.clone(),
            settings.approval_timeout,
        ));
        Self {
            inner: Arc::new(Inner {
                llm,
                hub,
                sessions,
                models,
                settings,
                lock_timeout,
                pending,
                request_servers,
                tool_prefix,
                response_ttl,
                tokens: crate::sessions::TokenCounter::default(),
            }),
        }
    }

    /// Answers a request for input an MCP server made during a streamed turn (on any
    /// replica that shares the store); the waiting turn goes on.
    pub async fn answer_elicitation(
        &self,
        id: &str,
        reply: pending::ElicitationReply,
    ) -> Result<(), CoreError> {
        self.inner.pending.answer_elicitation(id, reply).await
    }

    /// A stored session.
    pub async fn session(&self, id: &SessionId) -> Result<Session, CoreError> {
        self.inner
            .sessions
            .load(id)
            .await?
            .ok_or_else(|| CoreError::SessionNotFound(id.as_str().to_string()))
    }

    /// The calls of a session that wait for the caller's approval.
    pub async fn pending_approvals(
        &self,
        id: &SessionId,
    ) -> Result<Vec<approvals::ApprovalRequest>, CoreError> {
        approvals::of_session(self.inner.sessions.as_ref(), id.as_str()).await
    }

    /// Deletes a stored session; not found when there was none. It takes the session's lock
    /// first, so a turn running on it finishes (and is stored) before the delete, instead of
    /// storing itself after it and bringing the session back with only that turn.
    pub async fn delete_session(&self, id: &SessionId) -> Result<(), CoreError> {
        let _lock = self
            .inner
            .sessions
            .lock(id, self.inner.lock_timeout)
            .await?;
        if self.inner.sessions.delete(id).await? {
            Ok(())
        } else {
            Err(CoreError::SessionNotFound(id.as_str().to_string()))
        }
    }

    pub fn models(&self) -> &ModelTable {
        &self.inner.models
    }

    pub fn hub(&self) -> &Arc<dyn ToolHub> {
        &self.inner.hub
    }

    /// Runs a turn to the end. Cancelling `cancel` stops it (upstream and tools).
    pub async fn chat(
        &self,
        request: AgentRequest,
        cancel: CancellationToken,
    ) -> Result<AgentResponse, CoreError> {
        let route = self.route(&request)?;
        let span = run_span(&route.id, &request);
        // Boxed: the turn's state stays in one place instead of inside every future that
        // awaits it (the gRPC method's, the HTTP handler's), each move of which copied it.
        Box::pin(session::run(&self.inner, route, request, cancel, None))
            .instrument(span)
            .await
    }

    /// Runs a turn on a producer task, streaming its events. Dropping the receiver cancels
    /// the turn; so does cancelling `cancel`.
    pub fn stream(
        &self,
        request: AgentRequest,
        cancel: CancellationToken,
    ) -> Result<AgentStream, CoreError> {
        let route = self.route(&request)?;
        let (tx, rx) = event_channel(STREAM_BUFFER);
        let inner = self.inner.clone();
        let span = run_span(&route.id, &request);
        tokio::spawn(
            async move {
                let events = tx.clone();
                let run = async {
                    let result =
                        session::run(&inner, route, request, cancel.clone(), Some(&events)).await;
                    match result {
                        Ok(response) => {
                            let _ = events.send(Ok(AgentEvent::Done(Box::new(response)))).await;
                        }
                        Err(e) => {
                            let _ = events.send(Err(e)).await;
                        }
                    }
                };
                tokio::pin!(run);
                let mut watching = true;
                loop {
                    tokio::select! {
                        biased;
                        () = &mut run => break,
                        () = tx.closed(), if watching => {
                            // The client is gone: stop the work; the turn observes the token.
                            cancel.cancel();
                            watching = false;
                        }
                    }
                }
            }
            .instrument(span),
        );
        Ok(rx)
    }
}

impl Agent {
    /// The request's model, when its key may use it (a model it may not use is as unknown).
    fn route(&self, request: &AgentRequest) -> Result<Arc<ModelRoute>, CoreError> {
        let route = self.inner.models.resolve(request.model.as_deref())?;
        match &request.access {
            Some(access) if !access.allows_model(&route.id) => {
                Err(CoreError::ModelNotFound(route.id.clone()))
            }
            _ => Ok(route),
        }
    }
}

/// The span of one agent run (a turn), child of the request's span.
fn run_span(model: &str, request: &AgentRequest) -> tracing::Span {
    tracing::info_span!(
        "agent.run",
        model = %model,
        key = request.access.as_ref().map_or("", |a| a.name.as_str()),
        session = request.session.as_ref().map_or("", |s| s.as_str()),
        messages = request.messages.len(),
    )
}
