//! One turn of the loop: LLM call → tool calls (concurrently, through the hub) → tool
//! results → LLM call …, until the model answers, calls a client-side tool, or the
//! iteration limit is reached. Native function calling or prompt mode, per model.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use futures::{StreamExt, stream::FuturesUnordered};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    AgentEvent, AgentRequest, AgentResponse, ExecutedCall, Finish, Inner, ModelRoute, ModelTable,
    TurnUsage, prompt_tools, usage,
};
use crate::{
    config::ToolMode,
    error::CoreError,
    llm::{
        Completion, CompletionRequest, FinishReason, LlmError, LlmEvent, Message, Role, ToolCall,
        ToolChoice, ToolDef,
    },
    mcp::{ToolOutcome, ToolSpec},
    telemetry::metrics,
};
use tracing::Instrument;

/// How long cancelled tool calls get to notify their servers before they are dropped.
const CANCEL_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

type Events<'a> = Option<&'a mpsc::Sender<Result<AgentEvent, CoreError>>>;

pub(super) struct Turn<'a> {
    inner: &'a Inner,
    route: Arc<ModelRoute>,
    request: AgentRequest,
    cancel: CancellationToken,
    events: Events<'a>,
    id: String,
    created: i64,
}

/// What the model may call in this turn.
struct Offer {
    mcp: HashMap<String, ToolSpec>,
    client: Vec<ToolDef>,
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
        let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
        Self {
            inner,
            route,
            request,
            cancel,
            events,
            id,
            created,
        }
    }

    pub(super) async fn run(self) -> Result<AgentResponse, CoreError> {
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

        let offer = self.offer();
        let mode = self.route.tool_mode;
        let mut upstream = self.upstream_request(&offer, mode);
        let start_len = upstream.messages.len();
        let max_iterations = self.inner.settings.max_tool_iterations;
        let mut total = TurnUsage::default();
        let mut executed = Vec::new();
        let mut iteration = 0u32;

        let (message, finish) = loop {
            let completion = self.call_llm(&upstream, mode).await?;
            match completion.usage {
                Some(u) => total.usage.add(u),
                None => {
                    total.usage.add(usage::estimate(
                        &upstream.messages,
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
                let message = Message::new(Role::Assistant, completion.content);
                upstream.messages.push(message.clone());
                break (message, finish_of(&completion.finish_reason));
            }

            iteration += 1;
            let (client_calls, server_calls): (Vec<_>, Vec<_>) = calls
                .iter()
                .cloned()
                .partition(|c| offer.is_client(&c.name));
            let assistant = match mode {
                ToolMode::Native => Message {
                    tool_calls: calls.clone(),
                    ..Message::new(Role::Assistant, completion.content.clone())
                },
                ToolMode::Prompt => Message::new(Role::Assistant, completion.content.clone()),
            };
            upstream.messages.push(assistant);

            let results = self.execute(&server_calls, &offer).await?;
            for (call, outcome) in server_calls.iter().zip(results) {
                upstream.messages.push(match mode {
                    ToolMode::Native => Message::tool_result(&call.id, &outcome.text),
                    ToolMode::Prompt => Message::new(
                        Role::User,
                        prompt_tools::result_message(&call.name, outcome.ok, &outcome.text),
                    ),
                });
                executed.push(ExecutedCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    server: outcome.server,
                    tool: outcome.tool,
                    arguments: call.arguments.clone(),
                    ok: outcome.ok,
                    result: outcome.text,
                    duration: outcome.duration,
                });
            }

            if !client_calls.is_empty() {
                for call in &client_calls {
                    self.emit(AgentEvent::ClientToolCall(call.clone())).await;
                }
                let content = if mode == ToolMode::Prompt {
                    String::new()
                } else {
                    completion.content
                };
                break (
                    Message {
                        tool_calls: client_calls,
                        ..Message::new(Role::Assistant, content)
                    },
                    Finish::ToolCalls,
                );
            }
            if iteration >= max_iterations {
                tracing::warn!(turn = %self.id, max_iterations, "stopping: the tool-call limit was reached before a final answer");
                let note = format!(
                    "(stopped: the limit of {max_iterations} rounds of tool calls was reached before a final answer)"
                );
                self.emit(AgentEvent::Content(note.clone())).await;
                let message = Message::new(Role::Assistant, note);
                upstream.messages.push(message.clone());
                break (message, Finish::IterationLimit);
            }
            // A forced choice applies to the first round only; then the model may answer.
            if matches!(
                upstream.tool_choice,
                Some(ToolChoice::Required | ToolChoice::Function(_))
            ) {
                upstream.tool_choice = Some(ToolChoice::Auto);
            }
        };

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
            finish,
            usage: total,
            executed,
            new_messages,
        })
    }

    fn session_id(&self) -> Option<String> {
        self.request
            .session
            .as_ref()
            .map(|s| s.as_str().to_string())
    }

    /// The request with the oldest history dropped when it would not fit the model's
    /// context window (0 = unknown: never trimmed). Leaves room for the answer.
    fn fit_context(&self, request: &CompletionRequest) -> Option<CompletionRequest> {
        let window = self.route.context_window;
        if window == 0 {
            return None;
        }
        let reserve = request
            .params
            .max_tokens
            .unwrap_or(window / 4)
            .min(window / 2);
        let trimmed = crate::sessions::trim_to_budget(&request.messages, window - reserve);
        if trimmed.len() == request.messages.len() {
            return None;
        }
        tracing::info!(turn = %self.id, dropped = request.messages.len() - trimmed.len(), "trimmed the history to fit the context window");
        Some(CompletionRequest {
            model: request.model.clone(),
            messages: trimmed,
            tools: request.tools.clone(),
            tool_choice: request.tool_choice.clone(),
            params: request.params.clone(),
        })
    }

    /// The tools offered: MCP tools (minus names a client tool shadows) and client tools.
    fn offer(&self) -> Offer {
        let client = self.request.client_tools.clone();
        let mcp = self
            .inner
            .hub
            .tools()
            .iter()
            .filter(|t| !client.iter().any(|c| c.name == t.name))
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        Offer { mcp, client }
    }

    fn upstream_request(&self, offer: &Offer, mode: ToolMode) -> CompletionRequest {
        let mut messages = Vec::with_capacity(self.request.messages.len() + 4);
        let has_system = self
            .request
            .messages
            .first()
            .is_some_and(|m| m.role == Role::System);
        if !has_system && let Some(prompt) = &self.inner.settings.system_prompt {
            messages.push(Message::new(Role::System, prompt.clone()));
        }
        messages.extend(self.request.messages.iter().cloned());

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

    /// One upstream call; in a streamed native turn, content deltas go out as they arrive.
    /// One upstream call in its `llm.call` span, counted in the upstream metrics.
    async fn call_llm(
        &self,
        request: &CompletionRequest,
        mode: ToolMode,
    ) -> Result<Completion, CoreError> {
        let span = tracing::info_span!(
            "llm.call",
            otel.kind = "client",
            model = %self.route.upstream_model,
            stream = self.events.is_some(),
            status = tracing::field::Empty,
            prompt_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .call_llm_inner(request, mode, started)
            .instrument(span.clone())
            .await;
        let m = metrics::metrics();
        let model = self.route.id.clone();
        let outcome = match &result {
            Ok(completion) => {
                if let Some(u) = completion.usage {
                    span.record("prompt_tokens", u.prompt_tokens);
                    span.record("completion_tokens", u.completion_tokens);
                    let tokens = |direction| metrics::TokenLabels {
                        model: model.clone(),
                        direction,
                    };
                    m.tokens
                        .get_or_create(&tokens("prompt"))
                        .inc_by(u64::from(u.prompt_tokens));
                    m.tokens
                        .get_or_create(&tokens("completion"))
                        .inc_by(u64::from(u.completion_tokens));
                }
                "ok"
            }
            Err(CoreError::Upstream(LlmError::Connect { .. })) => "connect_error",
            Err(CoreError::Upstream(LlmError::Timeout { .. })) => "timeout",
            Err(CoreError::Upstream(LlmError::Status { status, .. })) if *status < 500 => {
                "client_error"
            }
            Err(CoreError::Upstream(LlmError::Status { .. })) => "server_error",
            Err(CoreError::Upstream(LlmError::BadResponse(_))) => "bad_response",
            Err(CoreError::Upstream(LlmError::Stream(_))) => "stream_error",
            Err(CoreError::Cancelled) => "cancelled",
            Err(_) => "error",
        };
        span.record("status", outcome);
        m.upstream_duration
            .get_or_create(&metrics::ModelLabels {
                model: model.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        m.upstream_requests
            .get_or_create(&metrics::UpstreamLabels { model, outcome })
            .inc();
        result
    }

    async fn call_llm_inner(
        &self,
        request: &CompletionRequest,
        mode: ToolMode,
        started: Instant,
    ) -> Result<Completion, CoreError> {
        let fitted = self.fit_context(request);
        let request = fitted.as_ref().unwrap_or(request);
        let llm = &self.inner.llm;
        let endpoint = &self.route.endpoint;
        if self.events.is_none() {
            return self
                .cancellable(async {
                    llm.complete(endpoint, request)
                        .await
                        .map_err(CoreError::from)
                })
                .await;
        }
        let mut stream = self
            .cancellable(async { llm.stream(endpoint, request).await.map_err(CoreError::from) })
            .await?;
        let mut first = true;
        loop {
            let next = self.cancellable(async { Ok(stream.next().await) }).await?;
            match next {
                Some(Ok(LlmEvent::Content(text))) => {
                    if first {
                        first = false;
                        metrics::metrics()
                            .upstream_first_token
                            .get_or_create(&metrics::ModelLabels {
                                model: self.route.id.clone(),
                            })
                            .observe(started.elapsed().as_secs_f64());
                    }
                    if mode == ToolMode::Native && !text.is_empty() {
                        self.emit(AgentEvent::Content(text)).await;
                    }
                }
                Some(Ok(LlmEvent::Done(completion))) => return Ok(completion),
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(CoreError::Upstream(crate::llm::LlmError::Stream(
                        "the upstream stream ended without a final answer".into(),
                    )));
                }
            }
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

    /// Runs the server-side calls concurrently; results come back in call order.
    async fn execute(
        &self,
        calls: &[ToolCall],
        offer: &Offer,
    ) -> Result<Vec<ToolOutcome>, CoreError> {
        let mut pending = FuturesUnordered::new();
        let mut results: Vec<Option<ToolOutcome>> = vec![None; calls.len()];
        for (index, call) in calls.iter().enumerate() {
            let spec = offer.mcp.get(&call.name);
            self.emit(AgentEvent::ToolCallStarted {
                id: call.id.clone(),
                name: call.name.clone(),
                server: spec.map(|s| s.server.clone()).unwrap_or_default(),
                tool: spec.map(|s| s.tool.clone()).unwrap_or_default(),
                arguments: call.arguments.clone(),
            })
            .await;
            let hub = self.inner.hub.clone();
            let cancel = self.cancel.child_token();
            let prepared = prepare(call, spec, offer);
            let span = tracing::info_span!(
                "tool.call",
                server = %spec.map_or("", |s| s.server.as_str()),
                tool = %spec.map_or(call.name.as_str(), |s| s.tool.as_str()),
                outcome = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            );
            pending.push(
                async move {
                    let started = Instant::now();
                    let outcome = match prepared {
                        Ok(arguments) => {
                            let _in_flight =
                                metrics::GaugeGuard::new(&metrics::metrics().tool_calls_in_flight);
                            hub.call(&call.name, arguments, cancel).await
                        }
                        Err(text) => ToolOutcome {
                            server: String::new(),
                            tool: call.name.clone(),
                            ok: false,
                            text,
                            duration: started.elapsed(),
                        },
                    };
                    record_tool(&outcome);
                    (index, outcome)
                }
                .instrument(span),
            );
        }
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    // Each call holds a child token, so it ends now and tells its server;
                    // give them a moment to do so before they are dropped.
                    let drain = async { while pending.next().await.is_some() {} };
                    let _ = tokio::time::timeout(CANCEL_DRAIN, drain).await;
                    return Err(CoreError::Cancelled);
                }
                next = pending.next() => next,
            };
            let Some((index, outcome)) = next else { break };
            let call = &calls[index];
            self.emit(AgentEvent::ToolCallFinished {
                id: call.id.clone(),
                name: call.name.clone(),
                ok: outcome.ok,
                result: outcome.text.clone(),
                duration: outcome.duration,
            })
            .await;
            results[index] = Some(outcome);
        }
        Ok(results.into_iter().flatten().collect())
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

/// The arguments to send, or the error text the model gets instead of a call.
fn prepare(call: &ToolCall, spec: Option<&ToolSpec>, offer: &Offer) -> Result<Value, String> {
    if spec.is_none() {
        let mut names: Vec<&str> = offer.mcp.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(format!(
            "there is no tool named {:?}; the available tools are: {}",
            call.name,
            names.join(", ")
        ));
    }
    let text = call.arguments.trim();
    if text.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("the arguments must be a JSON object".into()),
        Err(e) => Err(format!(
            "the arguments are not valid JSON ({e}); send a JSON object"
        )),
    }
}

/// Puts a finished call on its span and in the tool metrics.
fn record_tool(outcome: &ToolOutcome) {
    let label = if outcome.ok { "ok" } else { "error" };
    let span = tracing::Span::current();
    span.record("outcome", label);
    span.record(
        "duration_ms",
        u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
    );
    let m = metrics::metrics();
    let server = if outcome.server.is_empty() {
        "none".to_string()
    } else {
        outcome.server.clone()
    };
    m.tool_duration
        .get_or_create(&metrics::ToolTimeLabels {
            server: server.clone(),
            tool: outcome.tool.clone(),
        })
        .observe(outcome.duration.as_secs_f64());
    m.tool_calls
        .get_or_create(&metrics::ToolLabels {
            server,
            tool: outcome.tool.clone(),
            outcome: label,
        })
        .inc();
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
