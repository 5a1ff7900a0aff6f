//! `GET /v1/mcp/servers`: each configured MCP server's state and its tools, as JSON (what the
//! web page's tools panel shows), a rendering of `ChatService::ListTools` behind the same
//! auth (a key sees only the servers its access allows).

use axum::{Json, extract::State, http::HeaderMap};
use serde_json::{Value, json};

use crate::http::{ApiError, HttpState, grpc_request};
use crate::pb::{self, chat_service_server::ChatService, json::struct_to_json};

pub async fn list(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let answer = state
        .api
        .list_tools(grpc_request(pb::ListToolsRequest {}, &headers))
        .await?
        .into_inner();
    Ok(Json(render(answer)))
}

/// `{"object": "list", "data": [{name, transport, state, error, restarts, required,
/// tools: [{name, tool, description, input_schema}]}]}`, servers and tools in the service's
/// order; a tool whose server is not listed is dropped.
fn render(answer: pb::ListToolsResponse) -> Value {
    let pb::ListToolsResponse { tools, servers } = answer;
    let data: Vec<Value> = servers
        .into_iter()
        .map(|s| {
            let tools: Vec<Value> = tools
                .iter()
                .filter(|t| t.server == s.name)
                .map(|t| {
                    json!({
                        "name": t.name,
                        "tool": t.tool,
                        "description": t.description,
                        "input_schema": t.input_schema.clone().map(struct_to_json),
                    })
                })
                .collect();
            json!({
                "name": s.name,
                "transport": s.transport,
                "state": s.state,
                "error": s.error,
                "restarts": s.restarts,
                "required": s.required,
                "tools": tools,
            })
        })
        .collect();
    json!({ "object": "list", "data": data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_grouped_under_their_server() {
        let tool = |name: &str, server: &str| pb::Tool {
            name: name.into(),
            server: server.into(),
            tool: name.into(),
            description: format!("{name} it"),
            input_schema: None,
        };
        let server = |name: &str, state: &str, error: Option<&str>| pb::ServerStatus {
            name: name.into(),
            transport: "stdio".into(),
            state: state.into(),
            error: error.map(Into::into),
            restarts: 1,
            required: false,
        };
        let out = render(pb::ListToolsResponse {
            tools: vec![
                tool("echo", "fx"),
                tool("add", "fx"),
                tool("orphan", "gone"),
            ],
            servers: vec![
                server("fx", "ready", None),
                server("broken", "failed", Some("exited")),
            ],
        });
        assert_eq!(out["object"], "list");
        let data = out["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["name"], "fx");
        assert_eq!(data[0]["state"], "ready");
        let names: Vec<_> = data[0]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["name"].clone())
            .collect();
        assert_eq!(names, [json!("echo"), json!("add")]);
        assert_eq!(data[0]["tools"][0]["description"], "echo it");
        assert_eq!(data[1]["state"], "failed");
        assert_eq!(data[1]["error"], "exited");
        assert_eq!(data[1]["tools"], json!([]));
    }
}
