//! One turn of the loop: LLM call → tool calls (concurrently, through the hub) → tool
//! results → LLM call …, until the model answers, calls a client-side tool, or the
//! iteration limit is reached. Native function calling or prompt mode, per model.
//!
//! Files: `offer.rs` (what the model may call), `llm_call.rs` (upstream calls),
//! `tools.rs` (running server-side calls), `results.rs` (results and approvals into the
//! conversation), `caller.rs` (what MCP servers ask mid-call), `repair.rs` (unanswered calls).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio_util::sync::CancellationToken;

use super::{
    AgentEvent, AgentRequest, AgentResponse, Finish, Inner, ModelRoute, ModelTable, TurnUsage,
    approvals, prompt_tools, usage,
};
use crate::{
    config::ToolMode,
    error::CoreError,
    llm::{CompletionRequest, FinishReason},
    mcp::ToolSpec,
    model::{Message, Role, ToolCall, ToolChoice, ToolDef},
};

/// Between the texts of two rounds of one turn (a whole answer and a stream alike).
pub(super) const ROUND_SEPARATOR: &str = "\n\n";

/// How long cancelled tool calls get to notify their servers before they are dropped.
const CANCEL_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

mod caller;
mod llm_call;
mod offer;
mod repair;
mod results;
mod tools;

type Events<'a> = Option<&'a super::EventSender>;

pub(super) struct Turn<'a> {
    inner: &'a Inner,
    /// The tools of this turn: the hub, with the request's own servers when it names any.
    hub: Arc<dyn crate::mcp::ToolHub>,
    route: Arc<ModelRoute>,
    request: AgentRequest,
    cancel: CancellationToken,
    events: Events<'a>,
    id: String,
    created: i64,
    /// Whether a stream has shown text already (a later round's text gets a separator).
    streamed_text: std::sync::atomic::AtomicBool,
    /// Tokens of the offered tools' definitions, for the context budget.
    tool_tokens: std::sync::OnceLock<u32>,
    /// Answers what the MCP servers ask during this turn's calls.
    caller: Arc<caller::TurnCaller>,
}

/// What the model may call in this turn.
struct Offer {
    mcp: HashMap<String, ToolSpec>,
    client: Vec<ToolDef>,
    /// Exposed names whose calls wait for the caller's approval → the server's label.
    needs_approval: HashMap<String, String>,
}

impl Offer {
    fn is_client(&self, name: &str) -> bool {
        self.client.iter().any(|t| t.name == name)
    }
    fn knows(&self, name: &str) -> bool {
        self.is_client(name) || self.mcp.contains_key(name)
    }
}

impl<'a> Turn<'a> {
    pub(super) fn new(
        inner: &'a Inner,
        route: Arc<ModelRoute>,
        request: AgentRequest,
        cancel: CancellationToken,
        events: Events<'a>,
    ) -> Self {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let id = completion_id(uuid::Uuid::new_v4());
        // A streamed turn can ask its caller mid-call; a whole-answer turn cannot.
        let asker = events
            .filter(|_| request.answers_elicitations)
            .map(|events| caller::Asker {
                events: events.clone(),
                pending: inner.pending.clone(),
                session: request.session.as_ref().map(|s| s.as_str().to_string()),
                cancel: cancel.clone(),
                patience: inner.settings.approval_timeout,
            });
        let caller = Arc::new(caller::TurnCaller::new(
            inner.llm.clone(),
            route.clone(),
            inner.settings.max_sampling_tokens,
            asker,
        ));
        Self {
            inner,
            hub: inner.hub.clone(),
            streamed_text: std::sync::atomic::AtomicBool::new(false),
            tool_tokens: std::sync::OnceLock::new(),
            caller,
            route,
            request,
            cancel,
            events,
            id,
            created,
        }
    }

    pub(super) async fn run(mut self) -> Result<AgentResponse, CoreError> {
        if ModelTable::missing_key(&self.route) {
            return Err(CoreError::NotConfigured(format!(
                "no API key is configured for the model {:?}: set OPENAI_API_KEY (or api_key / api_key_env in its [[models]] entry)",
                self.route.id
            )));
        }
        self.emit(AgentEvent::Start {
            id: self.id.clone(),
            model: self.route.id.clone(),
            created: self.created,
            session_id: self.session_id(),
        })
        .await;

        // The request's remote servers, for this turn only (closed when it ends).
        // Rare and large sub-futures (request servers, approvals, tool calls) are boxed,
        // and only when they run: held inline they made every turn's future (and every
        // future holding one) many KiB, copied on each move of a plain text turn.
        let request_hub = if self.request.mcp_servers.iter().any(|s| s.url.is_some()) {
            Box::pin(self.connect_request_servers()).await?
        } else {
            None
        };
        if let Some(hub) = &request_hub {
            self.hub = hub.clone();
        }
        let offer = self.offer()?;
        if self.request.report_tools {
            self.emit(AgentEvent::ToolsListed(listed(&offer))).await;
        }
        let mode = self.route.tool_mode;
        let mut upstream = self.upstream_request(&offer, mode);
        let mut start_len = upstream.messages.len();
        let max_iterations = self.inner.settings.max_tool_iterations;
        let mut total = TurnUsage::default();
        let mut executed = Vec::new();
        let mut iteration = 0u32;
        let mut approval_requests = Vec::new();
        // Calls an earlier turn left waiting for approval: run or skip them first.
        if !self.request.approvals.is_empty() {
            Box::pin(self.resume_approvals(&mut upstream, &offer, mode, &mut executed)).await?;
        }
        // Calls the caller left unanswered are closed, so the upstream accepts the history.
        if mode == ToolMode::Native {
            let closed = repair::close_dangling_calls(&mut upstream.messages, &mut start_len)?;
            if closed > 0 {
                tracing::info!(turn = %self.id, closed, "closed tool calls the conversation left unanswered");
            }
        }

        // The text the caller sees: every round's, separated by a blank line, the same in
        // a stream (`llm_call.rs` puts the separator before a later round's first text) and
        // in a whole answer. The session stores each round's message as it was.
        let mut visible = String::new();
        // The refusal of the round that answered, when the upstream sent one.
        let mut refusal = None;
        let (mut message, finish) = loop {
            let completion = self.call_llm(&upstream, mode).await?;
            if mode == ToolMode::Native && !completion.content.is_empty() {
                if !visible.is_empty() {
                    visible.push_str(ROUND_SEPARATOR);
                }
                visible.push_str(&completion.content);
            }
            match completion.usage {
                Some(u) => total.usage.add(u),
                None => {
                    // The prompt's share from the cached counts (each message once).
                    let counts = self.inner.tokens.counts(&upstream.messages).await;
                    total.usage.add(usage::estimate_counted(
                        &counts,
                        &completion.content,
                        &completion.tool_calls,
                    ));
                    total.estimated = true;
                }
            }
            let calls = match mode {
                ToolMode::Native => completion.tool_calls.clone(),
                ToolMode::Prompt => self.prompt_call(&completion.content, &offer, iteration),
            };
            if calls.is_empty() {
                if mode == ToolMode::Prompt {
                    self.emit(AgentEvent::Content(completion.content.clone()))
                        .await;
                }
                refusal = completion.refusal;
                let message = Message::new(Role::Assistant, completion.content);
                upstream.messages.push(message.clone());
                break (message, finish_of(&completion.finish_reason));
            }

            iteration += 1;
            let (client_calls, mut server_calls): (Vec<_>, Vec<_>) = calls
                .iter()
                .cloned()
                .partition(|c| offer.is_client(&c.name));
            // A round that mixes client and server-side calls runs no server-side call now:
            // a caller without a session would lose their results and send the calls back
            // unanswered (they would run twice). They are dropped from the round; the model
            // makes them again once the client's results are in, and they run once.
            let deferred = !client_calls.is_empty() && !server_calls.is_empty();
            let calls: Vec<ToolCall> = if deferred {
                tracing::info!(turn = %self.id, deferred = server_calls.len(), "server-side calls deferred until the client's results are in");
                server_calls.clear();
                client_calls.clone()
            } else {
                calls
            };
            let (waiting, server_calls): (Vec<_>, Vec<_>) = server_calls
                .into_iter()
                .partition(|c| offer.needs_approval.contains_key(&c.name));
            for call in &waiting {
                let label = offer
                    .needs_approval
                    .get(&call.name)
                    .map_or("", String::as_str);
                let tool = offer.mcp.get(&call.name).map_or("", |s| s.tool.as_str());
                let request = Box::pin(approvals::open(
                    self.inner.sessions.as_ref(),
                    self.session_id().as_deref(),
                    call,
                    label,
                    tool,
                    self.inner.settings.approval_timeout,
                ))
                .await?;
                self.emit(AgentEvent::ApprovalRequired(request.clone()))
                    .await;
                approval_requests.push(request);
            }
            let assistant = match mode {
                ToolMode::Native => Message {
                    tool_calls: calls.clone(),
                    ..Message::new(Role::Assistant, completion.content.clone())
                },
                ToolMode::Prompt => Message::new(Role::Assistant, completion.content.clone()),
            };
            upstream.messages.push(assistant);

            let results = if server_calls.is_empty() {
                if self.cancel.is_cancelled() {
                    return Err(CoreError::Cancelled);
                }
                Vec::new()
            } else {
                Box::pin(self.execute(&server_calls, &offer)).await?
            };
            let (sampled, estimated) = self.caller.take_usage();
            total.usage.add(sampled);
            total.estimated |= estimated;
            for (call, outcome) in server_calls.iter().zip(results) {
                self.push_result(&mut upstream, &mut executed, mode, call, outcome);
            }

            if !client_calls.is_empty() || !waiting.is_empty() {
                for call in &client_calls {
                    self.emit(AgentEvent::ClientToolCall(call.clone())).await;
                }
                let content = if mode == ToolMode::Prompt {
                    String::new()
                } else {
                    completion.content
                };
                // What the caller answers: the calls waiting for approval and its own.
                let answered_by_caller = calls
                    .iter()
                    .filter(|c| {
                        offer.is_client(&c.name) || offer.needs_approval.contains_key(&c.name)
                    })
                    .cloned()
                    .collect();
                break (
                    Message {
                        tool_calls: answered_by_caller,
                        ..Message::new(Role::Assistant, content)
                    },
                    Finish::ToolCalls,
                );
            }
            if iteration >= max_iterations {
                // Like an answer cut at max_tokens: the turn ends with what the model said
                // and the limit as its finish reason; no text is made up, none is stored.
                // The stored turn ends with the last round's results (every call answered).
                tracing::warn!(turn = %self.id, max_iterations, "stopping: the tool-call limit was reached before a final answer");
                break (Message::new(Role::Assistant, ""), Finish::IterationLimit);
            }
            // A forced choice applies to the first round only; then the model may answer.
            if matches!(
                upstream.tool_choice,
                Some(ToolChoice::Required | ToolChoice::Function(_))
            ) {
                upstream.tool_choice = Some(ToolChoice::Auto);
            }
        };

        if mode == ToolMode::Native {
            message.content = visible;
        }
        self.emit(AgentEvent::Usage(total)).await;
        // With client-side calls, the stored assistant message keeps every call it made
        // (server-side ones have their results right after it); the caller answers the rest.
        let new_messages = upstream.messages.split_off(start_len);
        Ok(AgentResponse {
            session_id: self.session_id(),
            id: self.id,
            model: self.route.id.clone(),
            created: self.created,
            message,
            refusal,
            finish,
            usage: total,
            executed,
            new_messages,
            approval_requests,
            session_len: 0,
        })
    }

    fn session_id(&self) -> Option<String> {
        self.request
            .session
            .as_ref()
            .map(|s| s.as_str().to_string())
    }

    /// The first upstream request; it takes the request's messages (no copy).
    fn upstream_request(&mut self, offer: &Offer, mode: ToolMode) -> CompletionRequest {
        let mut messages = Vec::with_capacity(self.request.messages.len() + 4);
        let has_system = self
            .request
            .messages
            .first()
            .is_some_and(|m| m.role == Role::System);
        if let Some(instructions) = self.request.instructions.take() {
            messages.push(Message::new(Role::System, instructions));
        } else if !has_system && let Some(prompt) = &self.inner.settings.system_prompt {
            messages.push(Message::new(Role::System, prompt.clone()));
        }
        messages.append(&mut self.request.messages);

        // A prompt-mode upstream knows no tool calls: the history is given in its own form.
        if mode == ToolMode::Prompt {
            prompt_tools::to_prompt_form(&mut messages);
        }
        let tool_choice = self.request.tool_choice.clone();
        let offered = !(offer.mcp.is_empty() && offer.client.is_empty());
        let mut tools = Vec::new();
        match mode {
            ToolMode::Native if offered => {
                let mut mcp: Vec<&ToolSpec> = offer.mcp.values().collect();
                mcp.sort_by(|a, b| a.name.cmp(&b.name));
                tools.extend(mcp.into_iter().map(|t| ToolDef {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t.input_schema.clone(),
                    strict: None,
                }));
                tools.extend(offer.client.iter().cloned());
            }
            ToolMode::Prompt if offered && tool_choice != Some(ToolChoice::None) => {
                let mut mcp: Vec<ToolSpec> = offer.mcp.values().cloned().collect();
                mcp.sort_by(|a, b| a.name.cmp(&b.name));
                let text = prompt_tools::instructions(&mcp, &offer.client);
                match messages.first_mut() {
                    Some(first) if first.role == Role::System => {
                        first.content.push_str("\n\n");
                        first.content.push_str(&text);
                    }
                    _ => messages.insert(0, Message::new(Role::System, text)),
                }
            }
            _ => {}
        }

        let mut params = self.request.params.clone();
        let d = &self.route.defaults;
        params.temperature = params.temperature.or(d.temperature);
        params.top_p = params.top_p.or(d.top_p);
        params.max_tokens = params.max_tokens.or(d.max_tokens);
        if let Some(field) = self.route.max_tokens_field {
            params.as_max_completion_tokens =
                field == crate::config::MaxTokensField::MaxCompletionTokens;
        }
        params.presence_penalty = params.presence_penalty.or(d.presence_penalty);
        params.frequency_penalty = params.frequency_penalty.or(d.frequency_penalty);
        if tools.is_empty() {
            params.parallel_tool_calls = None;
        }
        CompletionRequest {
            model: self.route.upstream_model.clone(),
            messages,
            tool_choice: if tools.is_empty() { None } else { tool_choice },
            tools,
            params,
        }
    }

    fn prompt_call(&self, reply: &str, offer: &Offer, iteration: u32) -> Vec<ToolCall> {
        if self.request.tool_choice == Some(ToolChoice::None) {
            return Vec::new();
        }
        match prompt_tools::parse(reply, |name| offer.knows(name)) {
            Some(call) => vec![ToolCall {
                id: format!(
                    "call_{}_{iteration}",
                    &self.id[self.id.len().saturating_sub(8)..]
                ),
                name: call.tool,
                arguments: call.arguments.to_string(),
            }],
            None => Vec::new(),
        }
    }

    async fn emit(&self, event: AgentEvent) {
        if let Some(tx) = self.events
            && tx.send(Ok(event)).await.is_err()
        {
            self.cancel.cancel();
        }
    }

    async fn cancellable<T>(
        &self,
        work: impl Future<Output = Result<T, CoreError>>,
    ) -> Result<T, CoreError> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(CoreError::Cancelled),
            r = work => r,
        }
    }
}

/// The offered MCP tools by server, servers and tools in name order.
fn listed(offer: &Offer) -> Vec<super::ListedServer> {
    let mut servers: std::collections::BTreeMap<&str, Vec<ToolSpec>> = Default::default();
    for spec in offer.mcp.values() {
        servers.entry(&spec.server).or_default().push(spec.clone());
    }
    servers
        .into_iter()
        .map(|(label, mut tools)| {
            tools.sort_by(|a, b| a.tool.cmp(&b.tool));
            super::ListedServer {
                label: label.to_string(),
                tools,
            }
        })
        .collect()
}

fn finish_of(reason: &FinishReason) -> Finish {
    match reason {
        FinishReason::Stop => Finish::Stop,
        FinishReason::Length => Finish::Length,
        FinishReason::ToolCalls => Finish::Stop,
        FinishReason::ContentFilter => Finish::ContentFilter,
        FinishReason::Other(other) => Finish::Other(other.clone()),
    }
}

/// `chatcmpl-` and the id's 32 hex digits, written into one allocation of the right size
/// (a turn makes one per request).
fn completion_id(id: uuid::Uuid) -> String {
    const PREFIX: &str = "chatcmpl-";
    let mut buf = uuid::Uuid::encode_buffer();
    let hex = id.simple().encode_lower(&mut buf);
    let mut out = String::with_capacity(PREFIX.len() + hex.len());
    out.push_str(PREFIX);
    out.push_str(hex);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_completion_id_is_the_prefix_and_the_simple_uuid() {
        let id = uuid::Uuid::new_v4();
        let made = super::completion_id(id);
        assert_eq!(made, format!("chatcmpl-{}", id.simple()));
        assert_eq!(made.len(), made.capacity());
    }
}
