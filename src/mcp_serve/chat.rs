//! The optional `chat` tool of `/mcp` (`mcp.serve_chat_tool`): one whole agent turn, run
//! through the gRPC service in process (`ChatApi::chat`) with the caller's `Authorization`
//! passed on, so the key's models, tools and sessions rules apply as on every chat API.
//! Arguments: `message` (required), `session_id`, `model`; the result is the answer's text,
//! with `{"response", "session_id"}` as structured content.

use std::sync::Arc;

use axum::http::HeaderMap;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    grpc::ChatApi,
    pb::{self, chat_service_server::ChatService},
};

/// The tool's name.
pub const NAME: &str = "chat";

fn object(value: Value) -> Arc<JsonObject> {
    Arc::new(match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    })
}

/// The tool's definition.
pub fn definition() -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "The user's message"},
            "session_id": {"type": "string", "description": "A session to continue (server-side memory)"},
            "model": {"type": "string", "description": "A model id; the default model when omitted"},
        },
        "required": ["message"],
    });
    let output = json!({
        "type": "object",
        "properties": {
            "response": {"type": "string"},
            "session_id": {"type": ["string", "null"]},
        },
        "required": ["response"],
    });
    let mut tool = Tool::new(
        NAME,
        "Runs one turn of mcp-chat's agent: the model answers `message`, calling the MCP tools it needs.",
        object(input),
    );
    tool.output_schema = Some(object(output));
    let mut annotations = ToolAnnotations::default();
    annotations.title = Some("Chat with mcp-chat's agent".into());
    annotations.open_world_hint = Some(true);
    tool.annotations = Some(annotations);
    tool
}

/// The turn's request from the tool's arguments, or what is wrong with them.
fn request_of(arguments: &JsonObject) -> Result<pb::ChatRequest, String> {
    let text = |key: &str| {
        arguments
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let message = text("message").ok_or("`message` (a string) is required")?;
    Ok(pb::ChatRequest {
        model: text("model").unwrap_or_default(),
        messages: vec![pb::Message {
            role: pb::Role::User.into(),
            content: message,
            ..Default::default()
        }],
        session_id: text("session_id"),
        ..Default::default()
    })
}

/// Runs the turn for the caller whose request headers are `headers`; cancelled with `cancel`.
pub async fn run(
    api: &ChatApi,
    arguments: &JsonObject,
    headers: Option<&HeaderMap>,
    cancel: CancellationToken,
) -> CallToolResult {
    let request = match request_of(arguments) {
        Ok(r) => r,
        Err(why) => return CallToolResult::error(vec![ContentBlock::text(why)]),
    };
    let mut request = tonic::Request::new(request);
    if let Some(value) = headers
        .and_then(|h| h.get(axum::http::header::AUTHORIZATION))
        .and_then(|v| tonic::metadata::AsciiMetadataValue::try_from(v.as_bytes()).ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
    let answer = tokio::select! {
        r = api.chat(request) => r,
        () = cancel.cancelled() => {
            return CallToolResult::error(vec![ContentBlock::text("the turn was cancelled")]);
        }
    };
    match answer {
        Ok(response) => {
            let response = response.into_inner();
            let text = response.message.map(|m| m.content).unwrap_or_default();
            let mut result = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
            result.structured_content =
                Some(json!({"response": text, "session_id": response.session_id}));
            result
        }
        Err(status) => CallToolResult::error(vec![ContentBlock::text(format!(
            "the turn failed ({:?}): {}",
            status.code(),
            status.message()
        ))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_become_a_one_message_turn() {
        let args = json!({"message": "hi", "session_id": "s-1", "model": "m"});
        let request = request_of(args.as_object().unwrap()).unwrap();
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].content, "hi");
        assert_eq!(request.session_id.as_deref(), Some("s-1"));
        assert_eq!(request.model, "m");
        assert!(request_of(&JsonObject::new()).is_err());
        let tool = definition();
        assert_eq!(tool.name, NAME);
        assert!(tool.output_schema.is_some());
    }
}
