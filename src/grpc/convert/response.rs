//! Answers out: agent responses and events, tools, servers and sessions as proto.

use std::time::Duration;

use prost_types::value::Kind;

use super::{request::message_to_pb, request::tool_call_to_pb};
use crate::{
    agent::{
        AgentEvent, AgentResponse, ExecutedCall, Finish, TurnUsage, approvals::ApprovalRequest,
    },
    mcp::{ServerState, ToolSpec},
    pb::{self, json::json_to_prost},
    sessions::Session,
};

fn finish_to_pb(f: &Finish) -> pb::FinishReason {
    match f {
        Finish::Stop | Finish::Other(_) => pb::FinishReason::Stop,
        Finish::Length => pb::FinishReason::Length,
        Finish::ToolCalls => pb::FinishReason::ToolCalls,
        Finish::ContentFilter => pb::FinishReason::ContentFilter,
        Finish::IterationLimit => pb::FinishReason::ToolIterationLimit,
    }
}

pub fn usage_to_pb(u: &TurnUsage) -> pb::Usage {
    pb::Usage {
        prompt_tokens: u.usage.prompt_tokens,
        completion_tokens: u.usage.completion_tokens,
        total_tokens: u.usage.total_tokens,
        estimated: u.estimated,
        prompt_tokens_details: u
            .usage
            .prompt_details
            .map(|d| pb::usage::PromptTokensDetails {
                cached_tokens: d.cached_tokens,
                audio_tokens: d.audio_tokens,
            }),
        completion_tokens_details: u.usage.completion_details.map(|d| {
            pb::usage::CompletionTokensDetails {
                reasoning_tokens: d.reasoning_tokens,
                audio_tokens: d.audio_tokens,
                accepted_prediction_tokens: d.accepted_prediction_tokens,
                rejected_prediction_tokens: d.rejected_prediction_tokens,
            }
        }),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn executed_to_pb(c: ExecutedCall) -> pb::ExecutedToolCall {
    pb::ExecutedToolCall {
        id: c.id,
        name: c.name,
        server: c.server,
        tool: c.tool,
        arguments: c.arguments,
        ok: c.ok,
        result: c.result,
        duration_ms: millis(c.duration),
    }
}

pub fn response_to_pb(r: AgentResponse) -> pb::ChatResponse {
    pb::ChatResponse {
        finish_reason: finish_to_pb(&r.finish).into(),
        usage: Some(usage_to_pb(&r.usage)),
        message: Some(pb::Message {
            refusal: r.refusal,
            ..message_to_pb(&r.message)
        }),
        tool_calls: r.executed.into_iter().map(executed_to_pb).collect(),
        approval_requests: r
            .approval_requests
            .into_iter()
            .map(approval_to_pb)
            .collect(),
        id: r.id,
        session_id: r.session_id,
        model: r.model,
        created: r.created,
    }
}

/// A call waiting for approval.
pub fn approval_to_pb(r: ApprovalRequest) -> pb::ApprovalRequired {
    pb::ApprovalRequired {
        id: r.id,
        server_label: r.server_label,
        name: r.name,
        function_name: r.function_name,
        arguments: r.arguments,
        expires_at: r.expires_at_ms / 1000,
    }
}

/// A JSON object as a proto `Struct` (`None` for anything else).
pub(super) fn json_struct(v: &serde_json::Value) -> Option<prost_types::Struct> {
    match crate::pb::json::json_to_prost(v).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

/// A stream event (`None`: one the chat stream does not carry).
pub fn event_to_pb(event: AgentEvent) -> Option<pb::ChatEvent> {
    use pb::chat_event::Event;
    let event = match event {
        AgentEvent::Start {
            id,
            model,
            created,
            session_id,
        } => Event::Start(pb::StreamStart {
            id,
            model,
            session_id,
            created,
        }),
        AgentEvent::Content(text) => Event::Content(pb::ContentDelta { text }),
        AgentEvent::ToolCallStarted {
            id,
            name,
            server,
            tool,
            arguments,
        } => Event::ToolCallStarted(pb::ToolCallStarted {
            id,
            name,
            server,
            tool,
            arguments,
        }),
        AgentEvent::ToolCallFinished {
            id,
            name,
            ok,
            result,
            duration,
        } => Event::ToolCallFinished(pb::ToolCallFinished {
            id,
            name,
            ok,
            result,
            duration_ms: millis(duration),
        }),
        AgentEvent::ToolCallProgress {
            id,
            progress,
            total,
            message,
        } => Event::ToolCallProgress(pb::ToolCallProgress {
            id,
            progress,
            total,
            message,
        }),
        AgentEvent::ClientToolCall(call) => Event::ClientToolCall(tool_call_to_pb(&call)),
        AgentEvent::ApprovalRequired(r) => Event::ApprovalRequired(approval_to_pb(r)),
        AgentEvent::ElicitationRequired(open) => {
            Event::ElicitationRequired(pb::ElicitationRequired {
                id: open.id,
                server: open.body.server,
                message: open.body.message,
                requested_schema: open.body.schema.as_ref().and_then(json_struct),
                url: open.body.url,
                expires_at: open.expires_at_ms / 1000,
            })
        }
        AgentEvent::Usage(u) => Event::Usage(usage_to_pb(&u)),
        AgentEvent::Done(r) => Event::Response(response_to_pb(*r)),
        AgentEvent::ToolsListed(_) => return None,
    };
    Some(pb::ChatEvent { event: Some(event) })
}

pub fn session_to_pb(s: Session, pending: Vec<ApprovalRequest>) -> pb::Session {
    pb::Session {
        id: s.id.as_str().to_string(),
        model: s.model,
        created: s.created_at,
        updated: s.updated_at,
        messages: s.messages.iter().map(message_to_pb).collect(),
        pending_approvals: pending.into_iter().map(approval_to_pb).collect(),
    }
}

pub fn tool_to_pb(t: &ToolSpec) -> pb::Tool {
    pb::Tool {
        name: t.name.clone(),
        server: t.server.clone(),
        tool: t.tool.clone(),
        description: t.description.clone(),
        input_schema: match json_to_prost(&t.input_schema).kind {
            Some(Kind::StructValue(s)) => Some(s),
            _ => None,
        },
    }
}

pub fn server_to_pb(s: &ServerState) -> pb::ServerStatus {
    pb::ServerStatus {
        name: s.name.clone(),
        transport: s.transport.to_string(),
        state: s.state.to_string(),
        error: s.error.clone(),
        restarts: s.restarts,
        required: s.required,
    }
}
