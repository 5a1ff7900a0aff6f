//! A turn's server-side tool calls: run concurrently through the hub, each in its
//! `tool.call` span and counted, results kept in call order; cancellation drains them.

use std::{sync::Arc, time::Instant};

use futures::{StreamExt, stream::FuturesUnordered};
use serde_json::Value;
use tracing::Instrument;

use super::{CANCEL_DRAIN, Offer, Turn};
use crate::{
    agent::AgentEvent,
    error::CoreError,
    mcp::{
        ToolOutcome, ToolSpec,
        asks::{Caller, ElicitAnswer, Elicitation, SamplingAnswer, SamplingRequest},
        progress::Progress,
    },
    model::ToolCall,
    telemetry::metrics,
};

/// The turn as the caller of one tool call: what the server asks goes to the turn; the
/// progress it reports becomes a `ToolCallProgress` event of this call (dropped when the
/// stream is full: progress is advisory).
struct CallCaller {
    turn: Arc<dyn Caller>,
    id: String,
    events: Option<crate::agent::EventSender>,
}

#[async_trait::async_trait]
impl Caller for CallCaller {
    fn patience(&self) -> Option<std::time::Duration> {
        self.turn.patience()
    }

    async fn elicit(&self, request: Elicitation) -> ElicitAnswer {
        self.turn.elicit(request).await
    }

    async fn sample(&self, request: SamplingRequest) -> Result<SamplingAnswer, String> {
        self.turn.sample(request).await
    }

    fn progress(&self, progress: Progress) {
        if let Some(events) = &self.events {
            let _ = events.try_send(Ok(AgentEvent::ToolCallProgress {
                id: self.id.clone(),
                progress: progress.progress,
                total: progress.total,
                message: progress.message,
            }));
        }
    }
}

impl Turn<'_> {
    /// Runs the server-side calls concurrently; results come back in call order.
    pub(super) async fn execute(
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
            let hub = self.hub.clone();
            let caller: Arc<dyn Caller> = Arc::new(CallCaller {
                turn: self.caller.clone(),
                id: call.id.clone(),
                events: self.events.cloned(),
            });
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
                            hub.call_as(&call.name, arguments, cancel, caller).await
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
