//! OpenAI's Responses API: `POST /v1/responses` (JSON, or typed SSE events with
//! `stream: true`), `GET`/`DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`, each a translation onto the in-process
//! `ChatService` (`CreateResponse`, `StreamResponse`, `GetResponse`, `DeleteResponse`,
//! `ListResponseInputItems`).

mod render;
mod request;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response, sse},
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    http::{ApiError, HttpState, extract::JsonBody, grpc_request},
    pb::{self, chat_service_server::ChatService},
};

pub async fn create(
    State(state): State<HttpState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let parsed = request::parse(body)?;
    let fields = parsed.fields;
    let rename = |status: tonic::Status| fields.rename(ApiError::from(status));
    if !parsed.stream {
        let (metadata, object, _) = state
            .api
            .create_response(grpc_request(parsed.request, &headers))
            .await
            .map_err(rename)?
            .into_parts();
        let mut response = Json(render::response(&object)).into_response();
        crate::http::set_degraded_header(&mut response, &metadata);
        return Ok(response);
    }
    let (metadata, events, _) = state
        .api
        .stream_response(grpc_request(parsed.request, &headers))
        .await
        .map_err(rename)?
        .into_parts();
    let mut sequence = 0u64;
    let body = events.map(move |item| {
        let event = match item {
            Ok(event) => {
                sequence = event.sequence_number + 1;
                match render::event(&event) {
                    Some((kind, data)) => sse::Event::default().event(kind).data(data.to_string()),
                    None => sse::Event::default().comment("unknown event"),
                }
            }
            Err(status) => {
                let error = ApiError::from(status);
                let data = json!({
                    "type": "error", "code": error.code, "message": error.message,
                    "param": error.param, "sequence_number": sequence,
                });
                sse::Event::default().event("error").data(data.to_string())
            }
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    let mut response = sse::Sse::new(body)
        .keep_alive(sse::KeepAlive::default())
        .into_response();
    crate::http::set_degraded_header(&mut response, &metadata);
    Ok(response)
}

fn get_request(id: String, headers: &HeaderMap) -> tonic::Request<pb::GetResponseRequest> {
    grpc_request(pb::GetResponseRequest { response_id: id }, headers)
}

pub async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let object = state
        .api
        .get_response(get_request(id, &headers))
        .await?
        .into_inner();
    Ok(Json(render::response(&object)))
}

pub async fn delete(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state
        .api
        .delete_response(get_request(id.clone(), &headers))
        .await?;
    Ok(Json(
        json!({"id": id, "object": "response.deleted", "deleted": true}),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    order: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

pub async fn input_items(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            Some("limit".into()),
            "limit: must be between 1 and 100",
        ));
    }
    let mut items = state
        .api
        .list_response_input_items(get_request(id, &headers))
        .await?
        .into_inner()
        .items;
    match query.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                Some("order".into()),
                format!("order: {other:?} is not asc or desc"),
            ));
        }
    }
    if let Some(after) = &query.after {
        match items.iter().position(|i| &i.id == after) {
            Some(at) => {
                items.drain(..=at);
            }
            None => {
                return Err(ApiError::invalid(
                    Some("after".into()),
                    format!("after: no input item {after:?} in this response"),
                ));
            }
        }
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let data: Vec<Value> = items.iter().map(render::input_item).collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "first_id": items.first().map(|i| i.id.clone()),
        "last_id": items.last().map(|i| i.id.clone()),
        "has_more": has_more,
    })))
}
