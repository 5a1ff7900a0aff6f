//! The Simplified API (the seed's): `POST /chat` `{"message", "session_id"?}` →
//! `{"response", "session_id"}`, and `POST /chat/stream`, an SSE of typed events for UIs
//! (`delta`, `tool_call`, `tool_result`, `elicitation`, `done`, `error`);
//! `POST /chat/elicitations/{id}` answers an `elicitation`; `GET` / `DELETE /sessions/{id}`.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
    http::StatusCode,
    response::{IntoResponse, Response, sse},
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, HttpState, extract::JsonBody, grpc_request, sse::first_events};
use crate::pb::{
    self,
    chat_event::Event,
    chat_service_server::ChatService,
    json::{json_to_prost, struct_to_json},
};

#[derive(Debug, Deserialize)]
pub struct SimpleRequest {
    message: String,
    session_id: Option<String>,
    #[serde(default)]
    model: String,
    /// `/chat/stream` only: the caller answers `elicitation` events
    /// (`POST /chat/elicitations/{id}`); otherwise they are declined.
    #[serde(default)]
    answers_elicitations: bool,
}

impl SimpleRequest {
    /// `stream`: the caller reads `/chat/stream` (and may answer elicitations).
    fn into_proto(self, stream: bool) -> pb::ChatRequest {
        let new_session = self.session_id.is_none();
        pb::ChatRequest {
            model: self.model,
            messages: vec![pb::Message {
                role: pb::Role::User.into(),
                content: self.message,
                ..Default::default()
            }],
            session_id: self.session_id,
            new_session,
            answers_elicitations: stream && self.answers_elicitations,
            ..Default::default()
        }
    }
}

pub async fn chat(
    State(state): State<HttpState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SimpleRequest>,
) -> Result<Response, ApiError> {
    let (metadata, answer, _) = state
        .api
        .chat(grpc_request(body.into_proto(false), &headers))
        .await?
        .into_parts();
    let text = answer.message.map(|m| m.content).unwrap_or_default();
    let mut response =
        Json(json!({ "response": text, "session_id": answer.session_id })).into_response();
    super::set_session_header(&mut response, answer.session_id.as_deref());
    super::set_degraded_header(&mut response, &metadata);
    Ok(response)
}

pub async fn chat_stream(
    State(state): State<HttpState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SimpleRequest>,
) -> Result<Response, ApiError> {
    let (metadata, events, _) = state
        .api
        .stream_chat(grpc_request(body.into_proto(true), &headers))
        .await?
        .into_parts();
    let (head, session_id, rest) = first_events(events).await?;
    let all = futures::stream::iter(head.into_iter().map(Ok)).chain(rest);
    let body = all.filter_map(|item| async move {
        let event = match item {
            Err(status) => Some(("error", ApiError::from(status).body_json())),
            Ok(pb::ChatEvent { event: None }) => None,
            Ok(pb::ChatEvent { event: Some(e) }) => render(e),
        };
        event.map(|(name, data)| {
            Ok::<_, std::convert::Infallible>(
                sse::Event::default().event(name).data(data.to_string()),
            )
        })
    });
    let mut response = sse::Sse::new(body)
        .keep_alive(sse::KeepAlive::default())
        .into_response();
    super::set_session_header(&mut response, session_id.as_deref());
    super::set_degraded_header(&mut response, &metadata);
    Ok(response)
}

/// `POST /chat/elicitations/{id}` `{"action": "accept"|"decline"|"cancel", "content"?: {…}}`:
/// answers an `elicitation` event of a running `/chat/stream` (on any replica). 204.
pub async fn answer_elicitation(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ElicitationAnswer>,
) -> Result<StatusCode, ApiError> {
    let action = match body.action.as_str() {
        "accept" => pb::ElicitationAction::Accept,
        "decline" => pb::ElicitationAction::Decline,
        "cancel" => pb::ElicitationAction::Cancel,
        _ => pb::ElicitationAction::Unspecified,
    };
    let content = match body.content {
        None => None,
        Some(v @ serde_json::Value::Object(_)) => match json_to_prost(&v).kind {
            Some(prost_types::value::Kind::StructValue(s)) => Some(s),
            _ => None,
        },
        Some(_) => {
            return Err(ApiError::invalid(
                Some("content".into()),
                "content: must be a JSON object",
            ));
        }
    };
    let request = pb::AnswerElicitationRequest {
        id,
        action: action.into(),
        content,
    };
    state
        .api
        .answer_elicitation(grpc_request(request, &headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElicitationAnswer {
    action: String,
    content: Option<serde_json::Value>,
}

pub async fn get_session(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request = pb::GetSessionRequest { session_id: id };
    let s = state
        .api
        .get_session(grpc_request(request, &headers))
        .await?
        .into_inner();
    let messages: Vec<_> = s.messages.iter().map(message_json).collect();
    let pending: Vec<_> = s
        .pending_approvals
        .iter()
        .map(|a| json!({"id": a.id, "type": "mcp_approval_request", "server_label": a.server_label, "name": a.name, "arguments": a.arguments, "expires_at": a.expires_at}))
        .collect();
    Ok(Json(json!({
        "id": s.id,
        "model": s.model,
        "created": s.created,
        "updated": s.updated,
        "messages": messages,
        "pending_approvals": pending,
    })))
}

pub async fn delete_session(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let request = pb::DeleteSessionRequest { session_id: id };
    state
        .api
        .delete_session(grpc_request(request, &headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A stored message in OpenAI's message shape.
fn message_json(m: &pb::Message) -> serde_json::Value {
    let role = match pb::Role::try_from(m.role) {
        Ok(pb::Role::System | pb::Role::Developer) => "system",
        Ok(pb::Role::Assistant) => "assistant",
        Ok(pb::Role::Tool) => "tool",
        Ok(pb::Role::User | pb::Role::Unspecified) | Err(_) => "user",
    };
    let mut v = json!({ "role": role, "content": m.content });
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    v
}

fn render(event: Event) -> Option<(&'static str, serde_json::Value)> {
    Some(match event {
        Event::Start(s) => (
            "start",
            json!({ "id": s.id, "model": s.model, "session_id": s.session_id }),
        ),
        Event::Content(c) => ("delta", json!({ "text": c.text })),
        Event::ToolCallStarted(t) => (
            "tool_call",
            json!({ "id": t.id, "name": t.name, "server": t.server, "tool": t.tool, "arguments": t.arguments }),
        ),
        Event::ToolCallFinished(t) => (
            "tool_result",
            json!({ "id": t.id, "name": t.name, "ok": t.ok, "result": t.result, "duration_ms": t.duration_ms }),
        ),
        Event::ToolCallProgress(t) => (
            "tool_progress",
            json!({ "id": t.id, "progress": t.progress, "total": t.total, "message": t.message }),
        ),
        Event::ElicitationRequired(e) => (
            "elicitation",
            json!({
                "id": e.id,
                "server": e.server,
                "message": e.message,
                "requested_schema": e.requested_schema.map(struct_to_json),
                "url": e.url,
                "expires_at": e.expires_at,
            }),
        ),
        Event::ApprovalRequired(a) => (
            "approval_required",
            json!({"id": a.id, "server_label": a.server_label, "name": a.name, "arguments": a.arguments, "expires_at": a.expires_at}),
        ),
        Event::ClientToolCall(_) | Event::Usage(_) => return None,
        Event::Response(r) => (
            "done",
            json!({
                "response": r.message.map(|m| m.content).unwrap_or_default(),
                "session_id": r.session_id,
                "finish_reason": super::openai_finish(r.finish_reason),
                "usage": r.usage.map(|u| json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens})),
            }),
        ),
    })
}
