//! The turn as the [`Caller`] of its MCP tool calls: a server's sampling request is answered
//! by the turn's own model and upstream (capped by `agent.max_sampling_tokens`, its tokens
//! counted in the turn's usage); a request for user input is declined, with a note the model
//! sees beside the tool's result (no API of this turn can ask its caller mid-call yet).

use std::sync::{Arc, Mutex};

use crate::{
    agent::ModelRoute,
    llm::{CompletionRequest, FinishReason, LlmClient},
    mcp::asks::{Caller, ElicitAnswer, Elicitation, SamplingAnswer, SamplingRequest, SamplingRole},
    model::{GenParams, Message, Role, Usage},
};

pub(super) struct TurnCaller {
    llm: Arc<dyn LlmClient>,
    route: Arc<ModelRoute>,
    max_tokens: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    usage: Usage,
    estimated: bool,
    /// Servers whose elicitations were declined since the last [`TurnCaller::take_notes`].
    declined: Vec<String>,
}

impl TurnCaller {
    pub(super) fn new(llm: Arc<dyn LlmClient>, route: Arc<ModelRoute>, max_tokens: u32) -> Self {
        Self {
            llm,
            route,
            max_tokens,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The usage of the sampling answers so far (and whether any was estimated), reset.
    pub(super) fn take_usage(&self) -> (Usage, bool) {
        let mut s = self.lock();
        let taken = (s.usage, s.estimated);
        s.usage = Usage::default();
        s.estimated = false;
        taken
    }

    /// Whether `server` had a request for input declined during the last calls; clears it.
    pub(super) fn take_declined(&self, server: &str) -> bool {
        let mut s = self.lock();
        let before = s.declined.len();
        s.declined.retain(|d| d != server);
        s.declined.len() != before
    }
}

/// The note appended to a tool's result when its server asked for input that was declined.
pub(super) const DECLINED_NOTE: &str = "(note from mcp-chat: the tool's server asked the user for input during this call; the request was declined because the user cannot be asked mid-call in this conversation)";

#[async_trait::async_trait]
impl Caller for TurnCaller {
    async fn elicit(&self, request: Elicitation) -> ElicitAnswer {
        self.lock().declined.push(request.server.clone());
        ElicitAnswer::Decline("the user cannot be asked mid-call in this conversation".into())
    }

    async fn sample(&self, request: SamplingRequest) -> Result<SamplingAnswer, String> {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = request.system_prompt.filter(|s| !s.is_empty()) {
            messages.push(Message::new(Role::System, system));
        }
        messages.extend(request.messages.into_iter().map(|(role, text)| {
            let role = match role {
                SamplingRole::User => Role::User,
                SamplingRole::Assistant => Role::Assistant,
            };
            Message::new(role, text)
        }));
        let upstream = CompletionRequest {
            model: self.route.upstream_model.clone(),
            messages,
            tools: Vec::new(),
            tool_choice: None,
            params: GenParams {
                max_tokens: Some(request.max_tokens.clamp(1, self.max_tokens)),
                temperature: request.temperature,
                stop: request.stop,
                ..GenParams::default()
            },
        };
        tracing::info!(server = %request.server, model = %self.route.id, "answering a sampling request");
        let m = &self.route.metrics;
        let started = std::time::Instant::now();
        let answer = self.llm.complete(&self.route.endpoint, &upstream).await;
        m.duration.observe(started.elapsed().as_secs_f64());
        m.count(if answer.is_ok() { "ok" } else { "error" });
        let completion = answer.map_err(|e| format!("the model could not answer: {e}"))?;
        let (usage, estimated) = match completion.usage {
            Some(u) => (u, false),
            None => (
                crate::agent::usage::estimate(&upstream.messages, &completion.content, &[]),
                true,
            ),
        };
        {
            let mut s = self.lock();
            s.usage.add(usage);
            s.estimated |= estimated;
        }
        m.prompt_tokens.inc_by(u64::from(usage.prompt_tokens));
        m.completion_tokens
            .inc_by(u64::from(usage.completion_tokens));
        Ok(SamplingAnswer {
            text: completion.content,
            model: self.route.id.clone(),
            truncated: completion.finish_reason == FinishReason::Length,
        })
    }
}
