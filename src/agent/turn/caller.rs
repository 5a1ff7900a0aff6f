//! The turn as the [`Caller`] of its MCP tool calls: a server's sampling request is answered
//! by the turn's own model and upstream (capped by `agent.max_sampling_tokens`, its tokens
//! counted in the turn's usage). A request for user input, in a streamed turn, becomes an
//! `ElicitationRequired` event and a pending record the caller answers (`pending.rs`); in a
//! whole-answer turn nobody can be asked, so it is declined, with a note the model sees
//! beside the tool's result.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{
    agent::{AgentEvent, ModelRoute, pending::Pending},
    llm::{CompletionRequest, FinishReason, LlmClient},
    mcp::asks::{Caller, ElicitAnswer, Elicitation, SamplingAnswer, SamplingRequest, SamplingRole},
    model::{GenParams, Message, Role, Usage},
};

pub(super) struct TurnCaller {
    llm: Arc<dyn LlmClient>,
    route: Arc<ModelRoute>,
    max_tokens: u32,
    /// A streamed turn: how its caller is asked.
    asker: Option<Asker>,
    state: Mutex<State>,
}

/// What a streamed turn needs to ask its caller: the event stream, the store's pending
/// records, the session, and the turn's cancellation.
pub(super) struct Asker {
    pub events: crate::agent::EventSender,
    pub pending: Arc<Pending>,
    pub session: Option<String>,
    pub cancel: CancellationToken,
    pub patience: Duration,
}

#[derive(Default)]
struct State {
    usage: Usage,
    estimated: bool,
    /// Servers whose elicitations were declined since the last [`TurnCaller::take_notes`].
    declined: Vec<String>,
}

impl TurnCaller {
    pub(super) fn new(
        llm: Arc<dyn LlmClient>,
        route: Arc<ModelRoute>,
        max_tokens: u32,
        asker: Option<Asker>,
    ) -> Self {
        Self {
            llm,
            route,
            max_tokens,
            asker,
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
    fn patience(&self) -> Option<Duration> {
        self.asker.as_ref().map(|a| a.patience)
    }

    async fn elicit(&self, request: Elicitation) -> ElicitAnswer {
        let Some(asker) = &self.asker else {
            self.lock().declined.push(request.server.clone());
            return ElicitAnswer::Decline(
                "the user cannot be asked mid-call in this conversation".into(),
            );
        };
        let open = match asker
            .pending
            .open_elicitation(asker.session.as_deref(), request)
            .await
        {
            Ok(open) => open,
            Err(e) => return ElicitAnswer::Decline(format!("it could not be stored: {e}")),
        };
        tracing::info!(id = %open.id, server = %open.body.server, "waiting for the caller's answer to an elicitation");
        if asker
            .events
            .send(Ok(AgentEvent::ElicitationRequired(open.clone())))
            .await
            .is_err()
        {
            return ElicitAnswer::Cancel;
        }
        asker.pending.wait_elicitation(&open, &asker.cancel).await
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
