//! `POST /v1/responses` request: OpenAI's JSON translated into a `CreateResponseRequest`.
//! Like OpenAI, it refuses what it does not know: an unknown parameter, item type, content
//! part or tool type is a 400 naming it. Values are checked once, in the gRPC service;
//! [`Fields::rename`] puts its field names back into the client's terms.

use serde_json::{Map, Value};

use crate::{
    http::ApiError,
    pb::{self, json::json_to_prost, tool_choice::Choice},
};

/// What the request asked besides the proto: whether to stream.
pub struct Parsed {
    pub request: pb::CreateResponseRequest,
    pub stream: bool,
    pub fields: Fields,
}

/// Where the proto's repeated fields came from, for error names.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    /// The `tools` index of each function tool, and of each `mcp` tool, in order.
    functions: Vec<usize>,
    mcp: Vec<usize>,
}

impl Fields {
    /// `error` with its `param` (and the message's leading field name) in the client's terms:
    /// `params.max_tokens` is `max_output_tokens`, `mcp_servers[j]` and `tools[j]` are the
    /// request's own `tools[i]`.
    pub fn rename(&self, mut error: ApiError) -> ApiError {
        let Some(param) = error.param.clone() else {
            return error;
        };
        let indexed = |prefix: &str, positions: &[usize]| -> Option<String> {
            let rest = param.strip_prefix(prefix)?;
            let (index, tail) = rest.split_once(']')?;
            let original = positions.get(index.parse::<usize>().ok()?)?;
            Some(format!("tools[{original}]{tail}"))
        };
        let renamed = if param == "params.max_tokens" {
            Some("max_output_tokens".to_string())
        } else if let Some(rest) = param.strip_prefix("params.") {
            Some(rest.to_string())
        } else {
            indexed("mcp_servers[", &self.mcp).or_else(|| indexed("tools[", &self.functions))
        };
        if let Some(renamed) = renamed {
            if let Some(rest) = error.message.strip_prefix(param.as_str()) {
                error.message = format!("{renamed}{rest}");
            }
            error.param = Some(renamed);
        }
        error
    }
}

fn bad(field: impl Into<String>, message: impl std::fmt::Display) -> ApiError {
    let field = field.into();
    ApiError::invalid(Some(field.clone()), format!("{field}: {message}"))
}

fn unsupported(field: &str, message: &str) -> ApiError {
    ApiError {
        code: Some("unsupported_parameter".into()),
        ..bad(field, message)
    }
}

fn string(v: &Value, field: &str) -> Result<String, ApiError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| bad(field, "must be a string"))
}

fn opt_string(o: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, &format!("{field}.{key}")).map(Some),
    }
}

fn number(v: &Value, field: &str) -> Result<f32, ApiError> {
    #[allow(clippy::cast_possible_truncation)]
    v.as_f64()
        .map(|n| n as f32)
        .ok_or_else(|| bad(field, "must be a number"))
}

/// A message's content: a string, or parts of text (`input_text`, `output_text`, `text`).
fn content(v: &Value, field: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{field}[{j}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "input_text" | "output_text" | "text" => {
                        text.push_str(&string(
                            part.get("text").unwrap_or(&Value::Null),
                            &format!("{at}.text"),
                        )?);
                    }
                    "refusal" => {}
                    other => {
                        return Err(unsupported(
                            &format!("{at}.type"),
                            &format!(
                                "content parts of type {other:?} are not supported (only text)"
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
        _ => Err(bad(field, "must be a string or a list of content parts")),
    }
}

fn input_item(v: &Value, i: usize) -> Result<pb::InputItem, ApiError> {
    use pb::input_item::Item;
    let field = format!("input[{i}]");
    let Some(o) = v.as_object() else {
        return Err(bad(field, "must be an object"));
    };
    let kind = match o.get("type") {
        None | Some(Value::Null) => "message",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad(format!("{field}.type"), "must be a string")),
    };
    let id = opt_string(o, "id", &field)?.unwrap_or_default();
    let required = |key: &str| -> Result<String, ApiError> {
        opt_string(o, key, &field)?.ok_or_else(|| bad(format!("{field}.{key}"), "is required"))
    };
    let item = match kind {
        "message" => {
            let role = match o.get("role").and_then(Value::as_str) {
                Some("user") => pb::Role::User,
                Some("system") => pb::Role::System,
                Some("developer") => pb::Role::Developer,
                Some("assistant") => pb::Role::Assistant,
                Some(other) => {
                    return Err(bad(
                        format!("{field}.role"),
                        format!("{other:?} is not a role (user, system, developer or assistant)"),
                    ));
                }
                None => return Err(bad(format!("{field}.role"), "is required")),
            };
            let text = content(
                o.get("content").unwrap_or(&Value::Null),
                &format!("{field}.content"),
            )?;
            Item::Message(pb::Message {
                role: role.into(),
                content: text,
                ..Default::default()
            })
        }
        "function_call" => Item::FunctionCall(pb::FunctionCallItem {
            id: id.clone(),
            call_id: required("call_id")?,
            name: required("name")?,
            arguments: opt_string(o, "arguments", &field)?.unwrap_or_else(|| "{}".into()),
            status: opt_string(o, "status", &field)?.unwrap_or_default(),
        }),
        "function_call_output" => Item::FunctionCallOutput(pb::FunctionCallOutput {
            call_id: required("call_id")?,
            output: content(
                o.get("output").unwrap_or(&Value::Null),
                &format!("{field}.output"),
            )?,
        }),
        "mcp_approval_response" => Item::McpApprovalResponse(pb::McpApprovalResponse {
            approval_request_id: required("approval_request_id")?,
            approve: o
                .get("approve")
                .and_then(Value::as_bool)
                .ok_or_else(|| bad(format!("{field}.approve"), "is required (true or false)"))?,
            reason: opt_string(o, "reason", &field)?,
        }),
        other => {
            return Err(bad(
                format!("{field}.type"),
                format!(
                    "input items of type {other:?} are not accepted: send message, function_call, function_call_output or mcp_approval_response items, and continue earlier output with previous_response_id"
                ),
            ));
        }
    };
    Ok(pb::InputItem {
        id,
        item: Some(item),
    })
}

fn tool_choice(v: &Value) -> Result<Option<pb::ToolChoice>, ApiError> {
    let choice = match v {
        Value::Null => return Ok(None),
        Value::String(s) => Choice::Mode(
            match s.as_str() {
                "none" => pb::ToolChoiceMode::None,
                "auto" => pb::ToolChoiceMode::Auto,
                "required" => pb::ToolChoiceMode::Required,
                other => {
                    return Err(bad(
                        "tool_choice",
                        format!("{other:?} is not none, auto or required"),
                    ));
                }
            }
            .into(),
        ),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            Choice::Function(string(
                o.get("name").unwrap_or(&Value::Null),
                "tool_choice.name",
            )?)
        }
        _ => {
            return Err(unsupported(
                "tool_choice",
                "use \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": ...}",
            ));
        }
    };
    Ok(Some(pb::ToolChoice {
        choice: Some(choice),
    }))
}

fn text_format(v: &Value) -> Result<Option<pb::ResponseFormat>, ApiError> {
    use pb::response_format::Format;
    let Some(format) = v.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let format = match format.get("type").and_then(Value::as_str) {
        Some("text") => Format::Text(true),
        Some("json_object") => Format::JsonObject(true),
        Some("json_schema") => Format::JsonSchema(pb::JsonSchemaFormat {
            name: string(
                format.get("name").unwrap_or(&Value::Null),
                "text.format.name",
            )?,
            description: format
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            schema: match json_to_prost(format.get("schema").unwrap_or(&Value::Null)).kind {
                Some(prost_types::value::Kind::StructValue(s)) => Some(s),
                _ => return Err(bad("text.format.schema", "must be a JSON Schema object")),
            },
            strict: format.get("strict").and_then(Value::as_bool),
        }),
        _ => {
            return Err(bad(
                "text.format.type",
                "must be text, json_object or json_schema",
            ));
        }
    };
    Ok(Some(pb::ResponseFormat {
        format: Some(format),
    }))
}

/// The request body, parsed.
pub fn parse(body: Value) -> Result<Parsed, ApiError> {
    let Value::Object(mut o) = body else {
        return Err(ApiError::invalid(
            None,
            "the request body must be a JSON object",
        ));
    };
    let mut request = pb::CreateResponseRequest::default();
    let mut params = pb::GenerationParams::default();
    let mut fields = Fields::default();
    let mut stream = false;
    for (key, v) in std::mem::take(&mut o) {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "model" => request.model = string(&v, "model")?,
            "input" => {
                request.input = match &v {
                    Value::String(s) => vec![pb::InputItem {
                        id: String::new(),
                        item: Some(pb::input_item::Item::Message(pb::Message {
                            role: pb::Role::User.into(),
                            content: s.clone(),
                            ..Default::default()
                        })),
                    }],
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| input_item(item, i))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(bad("input", "must be a string or a list of items")),
                }
            }
            "instructions" => request.instructions = Some(string(&v, "instructions")?),
            "tools" => {
                let Value::Array(tools) = &v else {
                    return Err(bad("tools", "must be a list"));
                };
                for (i, t) in tools.iter().enumerate() {
                    let at = format!("tools[{i}]");
                    let Some(t) = t.as_object() else {
                        return Err(bad(at, "must be an object"));
                    };
                    match t.get("type").and_then(Value::as_str) {
                        Some("function") => {
                            fields.functions.push(i);
                            let parameters = t.get("parameters").filter(|p| !p.is_null());
                            request.tools.push(pb::ToolDefinition {
                                name: string(
                                    t.get("name").unwrap_or(&Value::Null),
                                    &format!("{at}.name"),
                                )?,
                                description: opt_string(t, "description", &at)?.unwrap_or_default(),
                                parameters: match parameters.map(|p| json_to_prost(p).kind) {
                                    None => None,
                                    Some(Some(prost_types::value::Kind::StructValue(s))) => Some(s),
                                    Some(_) => {
                                        return Err(bad(
                                            format!("{at}.parameters"),
                                            "must be a JSON Schema object",
                                        ));
                                    }
                                },
                                strict: t.get("strict").and_then(Value::as_bool),
                            });
                        }
                        Some("mcp") => {
                            fields.mcp.push(i);
                            let mut rest = t.clone();
                            rest.remove("type");
                            request
                                .mcp_servers
                                .push(crate::http::openai::mcp_tool::server(&rest, i)?);
                        }
                        Some(other) => {
                            return Err(unsupported(
                                &format!("{at}.type"),
                                &format!(
                                    "tools of type {other:?} are not supported (function and mcp are)"
                                ),
                            ));
                        }
                        None => return Err(bad(format!("{at}.type"), "is required")),
                    }
                }
            }
            "tool_choice" => request.tool_choice = tool_choice(&v)?,
            "parallel_tool_calls" => {
                params.parallel_tool_calls = Some(
                    v.as_bool()
                        .ok_or_else(|| bad("parallel_tool_calls", "must be true or false"))?,
                );
            }
            "temperature" => params.temperature = Some(number(&v, "temperature")?),
            "top_p" => params.top_p = Some(number(&v, "top_p")?),
            "max_output_tokens" => {
                params.max_tokens = Some(
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("max_output_tokens", "must be a positive integer"))?,
                );
            }
            "stream" => {
                stream = v
                    .as_bool()
                    .ok_or_else(|| bad("stream", "must be true or false"))?
            }
            "store" => {
                request.store = Some(
                    v.as_bool()
                        .ok_or_else(|| bad("store", "must be true or false"))?,
                )
            }
            "previous_response_id" => {
                request.previous_response_id = Some(string(&v, "previous_response_id")?)
            }
            "metadata" => {
                let Value::Object(m) = &v else {
                    return Err(bad("metadata", "must be an object of strings"));
                };
                for (k, val) in m {
                    request
                        .metadata
                        .insert(k.clone(), string(val, &format!("metadata.{k}"))?);
                }
            }
            "user" | "safety_identifier" => request.user = Some(string(&v, &key)?),
            "text" => params.response_format = text_format(&v)?,
            "truncation" if v.as_str() == Some("disabled") => {}
            "include" if v.as_array().is_some_and(Vec::is_empty) => {}
            "background" if v.as_bool() == Some(false) => {}
            "stream_options" => {}
            "background"
            | "conversation"
            | "include"
            | "max_tool_calls"
            | "prompt"
            | "prompt_cache_key"
            | "prompt_cache_retention"
            | "reasoning"
            | "service_tier"
            | "top_logprobs"
            | "truncation" => {
                return Err(unsupported(
                    &key,
                    &format!("{key} is not supported by this service"),
                ));
            }
            _ => {
                return Err(ApiError {
                    code: Some("unknown_parameter".into()),
                    ..bad(key.clone(), "unknown parameter")
                });
            }
        }
    }
    if request.input.is_empty() {
        return Err(bad("input", "is required"));
    }
    request.params = Some(params);
    Ok(Parsed {
        request,
        stream,
        fields,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_sdks_shapes_are_read() {
        let p = parse(json!({
            "model": "m", "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
                {"type": "mcp_approval_response", "approval_request_id": "a1", "approve": true}
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                      {"type": "mcp", "server_label": "fx", "require_approval": "never"}],
            "max_output_tokens": 50, "stream": true, "store": false, "metadata": {"k": "v"}
        }))
        .unwrap();
        assert!(p.stream);
        assert_eq!(p.request.input.len(), 4);
        assert_eq!(p.request.tools.len(), 1);
        assert_eq!(p.request.mcp_servers[0].server_label, "fx");
        assert_eq!(p.request.params.unwrap().max_tokens, Some(50));
        assert_eq!(p.request.store, Some(false));
        let err = p.fields.rename(ApiError::invalid(
            Some("mcp_servers[0].server_url".into()),
            "mcp_servers[0].server_url: no",
        ));
        assert_eq!(err.param.as_deref(), Some("tools[1].server_url"));
        assert_eq!(err.message, "tools[1].server_url: no");
    }

    #[test]
    fn what_it_does_not_know_is_a_400_naming_it() {
        for (body, param) in [
            (json!({"input": "x", "colour": 1}), "colour"),
            (
                json!({"input": "x", "reasoning": {"effort": "low"}}),
                "reasoning",
            ),
            (
                json!({"input": [{"type": "mcp_call", "id": "x"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
            ),
            (json!({"model": "m"}), "input"),
        ] {
            let err = parse(body.clone()).err().unwrap();
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
