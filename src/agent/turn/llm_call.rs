//! A turn's upstream calls: the context fit, the call in its `llm.call` span with the
//! upstream metrics, and streamed content relayed as it arrives.

use std::{sync::atomic::Ordering, time::Instant};

use futures::StreamExt;
use tracing::Instrument;

use super::Turn;
use crate::{
    agent::{AgentEvent, usage},
    config::ToolMode,
    error::CoreError,
    llm::{Completion, CompletionRequest, LlmError, LlmEvent},
};

impl Turn<'_> {
    /// The request with the oldest history dropped when it would not fit the model's
    /// context window (0 = unknown: never trimmed). Leaves room for the answer. Each
    /// message is counted once (`Inner::tokens`), a long history off the async workers.
    pub(super) async fn fit_context(
        &self,
        request: &CompletionRequest,
    ) -> Option<CompletionRequest> {
        let window = self.route.context_window;
        if window == 0 {
            return None;
        }
        let reserve = request
            .params
            .max_tokens
            .unwrap_or(window / 4)
            .min(window / 2);
        // The tools' definitions take part of the window too (counted once per turn).
        let tools = *self.tool_tokens.get_or_init(|| {
            request
                .tools
                .iter()
                .map(|t| {
                    usage::count(&t.name)
                        + usage::count(&t.description)
                        + usage::count(&t.parameters.to_string())
                        + 8
                })
                .fold(0, u32::saturating_add)
        });
        let budget = (window - reserve).saturating_sub(tools).max(1);
        let counts = self.inner.tokens.counts(&request.messages).await;
        let trimmed = crate::sessions::trim_counted(&request.messages, &counts, budget);
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

    /// One upstream call; in a streamed native turn, content deltas go out as they arrive.
    /// One upstream call in its `llm.call` span, counted in the upstream metrics.
    pub(super) async fn call_llm(
        &self,
        request: &CompletionRequest,
        mode: ToolMode,
    ) -> Result<Completion, CoreError> {
        // A trace span: the upstream model, status and tokens are attributes for the
        // exporter. Without one nothing at `info` reads them (the one event inside, the
        // retry warning, names the model itself), so the span is then made at `debug`
        // level, free unless debug logging asks for it.
        macro_rules! llm_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "llm.call",
                    otel.kind = "client",
                    model = %self.route.upstream_model,
                    stream = self.events.is_some(),
                    status = tracing::field::Empty,
                    prompt_tokens = tracing::field::Empty,
                    completion_tokens = tracing::field::Empty,
                )
            };
        }
        let span = if crate::telemetry::exporting() {
            llm_span!(tracing::Level::INFO)
        } else {
            llm_span!(tracing::Level::DEBUG)
        };
        let started = Instant::now();
        let result = self
            .call_llm_inner(request, mode, started)
            .instrument(span.clone())
            .await;
        let m = &self.route.metrics;
        let outcome = match &result {
            Ok(completion) => {
                if let Some(u) = completion.usage {
                    span.record("prompt_tokens", u.prompt_tokens);
                    span.record("completion_tokens", u.completion_tokens);
                    m.prompt_tokens.inc_by(u64::from(u.prompt_tokens));
                    m.completion_tokens.inc_by(u64::from(u.completion_tokens));
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
        m.duration.observe(started.elapsed().as_secs_f64());
        m.count(outcome);
        result
    }

    async fn call_llm_inner(
        &self,
        request: &CompletionRequest,
        mode: ToolMode,
        started: Instant,
    ) -> Result<Completion, CoreError> {
        let fitted = self.fit_context(request).await;
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
        let mut round_text = false;
        // One wait for the cancellation across the whole stream: registered once, not once
        // per delta.
        let cancelled = self.cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            let next = tokio::select! {
                biased;
                () = &mut cancelled => return Err(CoreError::Cancelled),
                next = stream.next() => next,
            };
            match next {
                Some(Ok(LlmEvent::Content(text))) => {
                    if first {
                        first = false;
                        self.route
                            .metrics
                            .first_token
                            .observe(started.elapsed().as_secs_f64());
                    }
                    if mode == ToolMode::Native && !text.is_empty() {
                        let earlier = self.streamed_text.swap(true, Ordering::Relaxed);
                        let text = if !round_text && earlier {
                            format!("{}{text}", super::ROUND_SEPARATOR)
                        } else {
                            text
                        };
                        round_text = true;
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
}
