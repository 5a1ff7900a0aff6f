//! The MCP client of `/mcp` as the [`Caller`] of its tool calls: what an upstream server asks
//! during a call (`elicitation/create` in form mode, `sampling/createMessage`) is asked of
//! that client in turn, when it declared the capability; otherwise it is declined (refused,
//! for sampling) as for any caller that cannot answer. URL-mode elicitations are declined:
//! the hub's neutral request does not carry their id.

#![allow(deprecated)] // Sampling is deprecated in the 2026-07-28 revision; 2025 servers use it.

use std::time::Duration;

use rmcp::{
    RoleServer,
    model::{
        ClientResult, CreateMessageRequestParams, ElicitRequestParams, ElicitationAction, Request,
        ServerRequest,
    },
    service::Peer,
};
use serde_json::{Value, json};

use crate::mcp::asks::{
    Caller, ElicitAnswer, Elicitation, SamplingAnswer, SamplingRequest, SamplingRole,
};

/// How much longer a call may run while its client's user answers.
const PATIENCE: Duration = Duration::from_secs(120);

pub struct ClientCaller {
    pub peer: Peer<RoleServer>,
}

impl ClientCaller {
    fn capabilities(&self) -> Option<rmcp::model::ClientCapabilities> {
        self.peer.peer_info().map(|i| i.capabilities.clone())
    }
}

/// The client's form-mode request for `request`, or `None` for a URL-mode one.
fn elicit_params(request: &Elicitation) -> Option<ElicitRequestParams> {
    let schema = request.schema.clone()?;
    serde_json::from_value(json!({
        "mode": "form",
        "message": request.message,
        "requestedSchema": schema,
    }))
    .ok()
}

fn sampling_params(request: &SamplingRequest) -> Option<CreateMessageRequestParams> {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|(role, text)| {
            let role = match role {
                SamplingRole::User => "user",
                SamplingRole::Assistant => "assistant",
            };
            json!({"role": role, "content": {"type": "text", "text": text}})
        })
        .collect();
    let mut params = json!({"messages": messages, "maxTokens": request.max_tokens});
    if let Some(system) = &request.system_prompt {
        params["systemPrompt"] = json!(system);
    }
    if let Some(t) = request.temperature {
        params["temperature"] = json!(t);
    }
    if !request.stop.is_empty() {
        params["stopSequences"] = json!(request.stop);
    }
    serde_json::from_value(params).ok()
}

/// The text of a completion's content (one block or several).
fn text_of(content: &Value) -> String {
    match content {
        Value::Array(blocks) => blocks.iter().map(text_of).collect::<Vec<_>>().join(""),
        block => block
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}

#[async_trait::async_trait]
impl Caller for ClientCaller {
    fn patience(&self) -> Option<Duration> {
        Some(PATIENCE)
    }

    async fn elicit(&self, request: Elicitation) -> ElicitAnswer {
        if self.capabilities().is_none_or(|c| c.elicitation.is_none()) {
            return ElicitAnswer::Decline("the MCP client does not answer elicitations".into());
        }
        let Some(params) = elicit_params(&request) else {
            return ElicitAnswer::Decline("URL-mode elicitations are not passed on".into());
        };
        let asked = self
            .peer
            .send_request(ServerRequest::ElicitRequest(Request::new(params)))
            .await;
        match asked {
            Ok(ClientResult::ElicitResult(result)) => match result.action {
                ElicitationAction::Accept => match result.content {
                    Some(Value::Object(content)) => ElicitAnswer::Accept(content),
                    _ => ElicitAnswer::Accept(serde_json::Map::new()),
                },
                ElicitationAction::Decline => ElicitAnswer::Decline("the user declined".into()),
                ElicitationAction::Cancel => ElicitAnswer::Cancel,
                // A newer action this version does not know: nothing was given.
                _ => ElicitAnswer::Decline("the MCP client gave no answer".into()),
            },
            Ok(_) => ElicitAnswer::Decline("the MCP client answered something else".into()),
            Err(e) => ElicitAnswer::Decline(format!("the MCP client could not be asked: {e}")),
        }
    }

    async fn sample(&self, request: SamplingRequest) -> Result<SamplingAnswer, String> {
        if self.capabilities().is_none_or(|c| c.sampling.is_none()) {
            return Err("the MCP client does not answer sampling requests".into());
        }
        let params = sampling_params(&request).ok_or("cannot build the sampling request")?;
        let result = self
            .peer
            .create_message(params)
            .await
            .map_err(|e| format!("the MCP client's sampling failed: {e}"))?;
        let value = serde_json::to_value(&result).map_err(|e| e.to_string())?;
        Ok(SamplingAnswer {
            text: text_of(value.get("content").unwrap_or(&Value::Null)),
            model: result.model,
            truncated: result.stop_reason.as_deref() == Some("maxTokens"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_the_clients_wire_shapes() {
        let form = Elicitation {
            server: "s".into(),
            message: "who?".into(),
            schema: Some(
                json!({"type": "object", "properties": {"name": {"type": "string", "default": "Jo"}}}),
            ),
            url: None,
        };
        let params = serde_json::to_value(elicit_params(&form).unwrap()).unwrap();
        assert_eq!(
            params["requestedSchema"]["properties"]["name"]["default"],
            "Jo"
        );
        let url = Elicitation {
            schema: None,
            url: Some("https://x".into()),
            ..form
        };
        assert!(elicit_params(&url).is_none());
        let sampling = SamplingRequest {
            server: "s".into(),
            system_prompt: Some("be brief".into()),
            messages: vec![(SamplingRole::User, "hi".into())],
            max_tokens: 10,
            temperature: None,
            stop: vec![],
        };
        let params = serde_json::to_value(sampling_params(&sampling).unwrap()).unwrap();
        assert_eq!(params["messages"][0]["content"]["text"], "hi");
        assert_eq!(params["maxTokens"], 10);
        assert_eq!(
            text_of(&json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
            "ab"
        );
    }
}
