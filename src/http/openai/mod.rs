//! The OpenAI-compatible API: `GET /v1/models`, `GET /v1/models/{id}`,
//! `POST /v1/chat/completions` (JSON and SSE), each a translation onto the in-process
//! `ChatService`; the Responses API in `responses/`.

mod mcp_tool;
mod render;
pub mod responses;
pub use render::finish_reason;
pub mod request;
mod str_or_seq;
#[cfg(test)]
mod wire_tests;

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde_json::json;

use super::{ApiError, HttpState, extract::JsonBody, grpc_request, sse};
use crate::pb::{self, chat_service_server::ChatService};
use render::{ChunkRenderer, Sse};
use request::CompletionRequest;

pub async fn list_models(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let models = state
        .api
        .list_models(grpc_request(pb::ListModelsRequest {}, &headers))
        .await?
        .into_inner();
    let data: Vec<_> = models.models.iter().map(model_json).collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

pub async fn get_model(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let models = state
        .api
        .list_models(grpc_request(pb::ListModelsRequest {}, &headers))
        .await?
        .into_inner();
    match models.models.iter().find(|m| m.id == id) {
        Some(m) => Ok(Json(model_json(m))),
        None => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!("the model {id:?} does not exist"),
        )),
    }
}

fn model_json(m: &pb::Model) -> serde_json::Value {
    json!({ "id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by })
}

pub async fn chat_completions(
    State(state): State<HttpState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let stream = body.stream;
    let include_usage = body
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let expose_tools = state.expose_tool_events
        || headers
            .get("x-mcp-chat-tool-events")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "1" || v == "true");
    let fields = body.field_map();
    let request = body.into_proto(super::session_header(&headers))?;
    // The service names its proto fields; the client reads its own.
    let rename = |status: tonic::Status| fields.rename(ApiError::from(status));

    if !stream {
        let answer = state
            .api
            .chat(grpc_request(request, &headers))
            .await
            .map_err(rename)?;
        let (metadata, answer, _) = answer.into_parts();
        let mut response = Json(render::completion(&answer)).into_response();
        super::set_session_header(&mut response, answer.session_id.as_deref());
        super::set_degraded_header(&mut response, &metadata);
        return Ok(response);
    }

    let (metadata, events, _) = state
        .api
        .stream_chat(grpc_request(request, &headers))
        .await
        .map_err(rename)?
        .into_parts();
    // Hold the headers until the first event after `start`, so an error that comes before
    // any output (bad key, unknown model, upstream 4xx) is a real HTTP error status.
    let (head, session_id, events) = sse::first_events(events)
        .await
        .map_err(|e| fields.rename(e))?;
    let mut renderer = ChunkRenderer::new(include_usage, expose_tools);
    let head: Vec<Sse> = head.iter().flat_map(|e| renderer.push(e)).collect();
    let rest = events.flat_map(move |item| {
        let out = match item {
            Ok(event) => renderer.push(&event),
            Err(status) => vec![Sse::Data(ApiError::from(status).body_json().to_string())],
        };
        futures::stream::iter(out)
    });
    let body = futures::stream::iter(head).chain(rest).map(|piece| {
        Ok::<_, std::convert::Infallible>(match piece {
            Sse::Data(d) => axum::response::sse::Event::default().data(d),
            Sse::Comment(c) => axum::response::sse::Event::default().comment(c),
        })
    });
    let mut response = axum::response::sse::Sse::new(body)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response();
    super::set_session_header(&mut response, session_id.as_deref());
    super::set_degraded_header(&mut response, &metadata);
    Ok(response)
}
