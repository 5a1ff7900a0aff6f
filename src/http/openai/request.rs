//! OpenAI `POST /v1/chat/completions` request: the wire type (lenient: unknown fields are
//! ignored) and its translation into a `ChatRequest`. Validation of values happens once, in
//! the gRPC service; this file only rejects what has no place in the proto.

use serde::Deserialize;
use serde_json::Value;

use super::str_or_seq::StrOrSeq;
use crate::{
    http::ApiError,
    pb::{self, json::json_to_prost, tool_choice::Choice},
};

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: String,
    pub messages: Vec<InMessage>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub response_format: Option<Value>,
    #[serde(default)]
    pub tools: Vec<InTool>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub user: Option<String>,
    /// Token id → bias; numbers (an integral float is taken, a fraction refused).
    pub logit_bias: Option<std::collections::HashMap<String, f64>>,
    pub reasoning_effort: Option<String>,
    pub service_tier: Option<String>,
    pub metadata: Option<std::collections::HashMap<String, String>>,
    pub verbosity: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u32>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub audio: Option<Value>,
    pub modalities: Option<Vec<String>>,
    pub prediction: Option<Value>,
    /// Extension: server-side memory (also the `X-Session-Id` header).
    pub session_id: Option<String>,
}

/// `stop`: one string or several.
pub type Stop = StrOrSeq<String>;

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    #[serde(default)]
    pub role: String,
    /// `mcp_approval_response`: a Responses-style approval item among the messages.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Extension on a `tool` message: the caller's decision on a call that waited.
    pub approval: Option<InApproval>,
    /// `mcp_approval_response` fields.
    pub approval_request_id: Option<String>,
    pub approve: Option<bool>,
    pub reason: Option<String>,
    pub content: Option<Content>,
    pub name: Option<String>,
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<InToolCall>,
}

/// A message's `content`: text, or an array of parts.
pub type Content = StrOrSeq<Part>;

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InApproval {
    pub approve: Option<bool>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InToolCall {
    pub id: String,
    pub function: InFunctionCall,
}

#[derive(Debug, Deserialize)]
pub struct InFunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct InTool {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: Option<InFunction>,
    /// The fields of an `mcp` tool.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Deserialize)]
pub struct InFunction {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        code: Some("unsupported_parameter".into()),
        ..ApiError::invalid(Some(param.into()), message)
    }
}

impl CompletionRequest {
    /// Where the `mcp` tools and the approvals sit in this request (for error names).
    pub fn field_map(&self) -> super::mcp_tool::FieldMap {
        super::mcp_tool::FieldMap {
            mcp: (0..self.tools.len())
                .filter(|&i| self.tools[i].kind == "mcp")
                .collect(),
            approvals: (0..self.messages.len())
                .filter(|&i| {
                    let m = &self.messages[i];
                    m.kind.as_deref() == Some("mcp_approval_response") || m.approval.is_some()
                })
                .collect(),
        }
    }

    /// The proto request, or a 400 naming the parameter the service cannot honour.
    pub fn into_proto(self, session_id: Option<String>) -> Result<pb::ChatRequest, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(unsupported("n", "only n = 1 is supported"));
        }
        if self.logprobs == Some(true) || self.top_logprobs.is_some() {
            return Err(unsupported("logprobs", "logprobs are not supported"));
        }
        if self.audio.is_some()
            || self
                .modalities
                .as_ref()
                .is_some_and(|m| m.iter().any(|m| m != "text"))
        {
            return Err(unsupported("modalities", "only text output is supported"));
        }
        if self.prediction.is_some() {
            return Err(unsupported(
                "prediction",
                "predicted outputs are not supported",
            ));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        let mut approvals = Vec::new();
        for (i, m) in self.messages.into_iter().enumerate() {
            if m.kind.as_deref() == Some("mcp_approval_response") {
                approvals.push(super::mcp_tool::approval(
                    m.approval_request_id,
                    m.approve,
                    m.reason,
                    &format!("messages[{i}]"),
                )?);
            } else if let Some(a) = m.approval {
                approvals.push(super::mcp_tool::approval(
                    m.tool_call_id,
                    a.approve,
                    a.reason,
                    &format!("messages[{i}]"),
                )?);
            } else {
                messages.push(message(m, i)?);
            }
        }
        let mut tools = Vec::with_capacity(self.tools.len());
        let mut mcp_servers = Vec::new();
        for (i, t) in self.tools.into_iter().enumerate() {
            if t.kind == "mcp" {
                mcp_servers.push(super::mcp_tool::server(&t.rest, i)?);
            } else {
                tools.push(tool(t, i)?);
            }
        }
        let tool_choice = self.tool_choice.map(tool_choice).transpose()?;
        let response_format = self.response_format.map(response_format).transpose()?;
        let logit_bias = self.logit_bias.map(logit_bias).transpose()?;
        let reasoning_effort = self
            .reasoning_effort
            .map(|v| {
                named(
                    "reasoning_effort",
                    &v,
                    "REASONING_EFFORT_",
                    pb::generation_params::ReasoningEffort::from_str_name,
                    "none, minimal, low, medium, high or xhigh",
                )
            })
            .transpose()?;
        let service_tier = self
            .service_tier
            .map(|v| {
                named(
                    "service_tier",
                    &v,
                    "SERVICE_TIER_",
                    pb::generation_params::ServiceTier::from_str_name,
                    "auto, default, flex, scale or priority",
                )
            })
            .transpose()?;
        let verbosity = self
            .verbosity
            .map(|v| {
                named(
                    "verbosity",
                    &v,
                    "VERBOSITY_",
                    pb::generation_params::Verbosity::from_str_name,
                    "low, medium or high",
                )
            })
            .transpose()?;
        let stop = match self.stop {
            None => Vec::new(),
            Some(StrOrSeq::Str(s)) => vec![s],
            Some(StrOrSeq::Seq(v)) => v,
        };
        Ok(pb::ChatRequest {
            model: self.model,
            messages,
            session_id: session_id.or(self.session_id),
            new_session: false,
            // No way to ask an OpenAI client mid-call: elicitations are declined.
            answers_elicitations: false,
            mcp_servers,
            approvals,
            params: Some(pb::GenerationParams {
                temperature: self.temperature,
                top_p: self.top_p,
                max_tokens: self.max_tokens,
                max_completion_tokens: self.max_completion_tokens,
                stop,
                seed: self.seed,
                presence_penalty: self.presence_penalty,
                frequency_penalty: self.frequency_penalty,
                response_format,
                parallel_tool_calls: self.parallel_tool_calls,
                logit_bias: logit_bias.unwrap_or_default(),
                reasoning_effort: reasoning_effort.map(Into::into).unwrap_or_default(),
                service_tier: service_tier.map(Into::into).unwrap_or_default(),
                metadata: self.metadata.unwrap_or_default(),
                verbosity: verbosity.map(Into::into).unwrap_or_default(),
            }),
            tools,
            tool_choice,
            user: self.user,
        })
    }
}

/// A lowercase OpenAI value as the proto enum of that name (`prefix` + its uppercase), or a
/// 400 naming the parameter and the values it takes.
fn named<E>(
    param: &str,
    value: &str,
    prefix: &str,
    from_name: fn(&str) -> Option<E>,
    expected: &str,
) -> Result<E, ApiError> {
    let known = value != "unspecified" && value.bytes().all(|b| b.is_ascii_lowercase());
    known
        .then(|| from_name(&format!("{prefix}{}", value.to_ascii_uppercase())))
        .flatten()
        .ok_or_else(|| {
            ApiError::invalid(
                Some(param.into()),
                format!("{value:?} is not a valid {param}: expected {expected}"),
            )
        })
}

/// `logit_bias` values as integers (the range is checked by the service).
fn logit_bias(
    biases: std::collections::HashMap<String, f64>,
) -> Result<std::collections::HashMap<String, i32>, ApiError> {
    biases
        .into_iter()
        .map(|(token, bias)| {
            if bias.fract() != 0.0 || !bias.is_finite() {
                return Err(ApiError::invalid(
                    Some("logit_bias".into()),
                    format!("the bias of token {token:?} must be an integer in -100..100"),
                ));
            }
            // Out of i32's range is out of -100..100 too: the service says so.
            #[allow(clippy::cast_possible_truncation)]
            let bias = bias.clamp(-1000.0, 1000.0) as i32;
            Ok((token, bias))
        })
        .collect()
}

fn message(m: InMessage, i: usize) -> Result<pb::Message, ApiError> {
    let role = match m.role.as_str() {
        "system" => pb::Role::System,
        "developer" => pb::Role::Developer,
        "user" => pb::Role::User,
        "assistant" => pb::Role::Assistant,
        "tool" => pb::Role::Tool,
        other => {
            return Err(ApiError::invalid(
                Some(format!("messages[{i}].role")),
                format!(
                    "unknown role {other:?}: expected system, developer, user, assistant or tool"
                ),
            ));
        }
    };
    let content = match m.content {
        None => String::new(),
        Some(StrOrSeq::Str(t)) => t,
        Some(StrOrSeq::Seq(parts)) => {
            let mut text = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text" | "input_text", Some(t)) => text.push(t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            Some(format!("messages[{i}].content[{j}].type")),
                            format!("content parts of type {kind:?} are not supported; send text"),
                        ));
                    }
                }
            }
            text.join("\n")
        }
    };
    Ok(pb::Message {
        refusal: None,
        role: role.into(),
        content,
        name: m.name,
        tool_call_id: m.tool_call_id,
        tool_calls: m
            .tool_calls
            .into_iter()
            .map(|c| pb::ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            })
            .collect(),
    })
}

fn tool(t: InTool, i: usize) -> Result<pb::ToolDefinition, ApiError> {
    if t.kind != "function" {
        return Err(unsupported(
            &format!("tools[{i}].type"),
            format!("tools of type {:?} are not supported", t.kind),
        ));
    }
    let Some(function) = t.function else {
        return Err(ApiError::invalid(
            Some(format!("tools[{i}].function")),
            "a function tool needs its function",
        ));
    };
    let parameters = match function.parameters {
        None => None,
        Some(v @ Value::Object(_)) => match json_to_prost(&v).kind {
            Some(prost_types::value::Kind::StructValue(s)) => Some(s),
            _ => None,
        },
        Some(_) => {
            return Err(ApiError::invalid(
                Some(format!("tools[{i}].function.parameters")),
                "must be a JSON Schema object",
            ));
        }
    };
    Ok(pb::ToolDefinition {
        name: function.name,
        description: function.description,
        parameters,
        strict: function.strict,
    })
}

fn tool_choice(v: Value) -> Result<pb::ToolChoice, ApiError> {
    let choice = match &v {
        Value::String(s) => match s.as_str() {
            "none" => Choice::Mode(pb::ToolChoiceMode::None.into()),
            "auto" => Choice::Mode(pb::ToolChoiceMode::Auto.into()),
            "required" => Choice::Mode(pb::ToolChoiceMode::Required.into()),
            other => {
                return Err(ApiError::invalid(
                    Some("tool_choice".into()),
                    format!(
                        "{other:?} is not a tool choice: expected none, auto, required or a function"
                    ),
                ));
            }
        },
        Value::Object(o) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Choice::Function(name.to_string()),
            None => {
                return Err(ApiError::invalid(
                    Some("tool_choice.function.name".into()),
                    "is required",
                ));
            }
        },
        _ => {
            return Err(ApiError::invalid(
                Some("tool_choice".into()),
                "must be a string or an object",
            ));
        }
    };
    Ok(pb::ToolChoice {
        choice: Some(choice),
    })
}

fn response_format(v: Value) -> Result<pb::ResponseFormat, ApiError> {
    use pb::response_format::Format;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let format = match kind {
        "text" => Format::Text(true),
        "json_object" => Format::JsonObject(true),
        "json_schema" => {
            let spec = v.get("json_schema").cloned().unwrap_or(Value::Null);
            let schema = match spec.get("schema").map(json_to_prost).and_then(|p| p.kind) {
                Some(prost_types::value::Kind::StructValue(s)) => Some(s),
                _ => None,
            };
            Format::JsonSchema(pb::JsonSchemaFormat {
                name: spec
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                description: spec
                    .get("description")
                    .and_then(Value::as_str)
                    .map(String::from),
                schema,
                strict: spec.get("strict").and_then(Value::as_bool),
            })
        }
        other => {
            return Err(ApiError::invalid(
                Some("response_format.type".into()),
                format!(
                    "{other:?} is not a response format: expected text, json_object or json_schema"
                ),
            ));
        }
    };
    Ok(pb::ResponseFormat {
        format: Some(format),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::parse;

    fn convert(body: &str) -> Result<pb::ChatRequest, ApiError> {
        parse::<CompletionRequest>(body.as_bytes())?.into_proto(None)
    }

    #[test]
    fn converts_the_fields_the_sdks_send() {
        let r = convert(
            r#"{"model": "m", "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "r"}
            ], "temperature": 0.2, "max_completion_tokens": 9, "stop": "END", "tool_choice": {"type": "function", "function": {"name": "f"}},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "stream_options": {"include_usage": true}, "unknown_field": 1}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.messages[1].content, "a\nb");
        assert_eq!(r.messages[2].tool_calls[0].name, "f");
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("c1"));
        let p = r.params.unwrap();
        assert_eq!(
            (p.temperature, p.max_completion_tokens, p.max_tokens, p.stop),
            (Some(0.2), Some(9), None, vec!["END".to_string()])
        );
        assert_eq!(
            r.tool_choice.unwrap().choice,
            Some(Choice::Function("f".into()))
        );
    }

    #[test]
    fn passthrough_parameters_reach_the_proto() {
        use pb::generation_params::{ReasoningEffort, ServiceTier, Verbosity};
        let r = convert(
            r#"{"messages": [{"role": "user", "content": "x"}],
            "logit_bias": {"50256": -100, "15": 2.0}, "reasoning_effort": "xhigh",
            "service_tier": "flex", "metadata": {"team": "search"}, "verbosity": "low"}"#,
        )
        .unwrap();
        let p = r.params.unwrap();
        assert_eq!(p.logit_bias.get("50256"), Some(&-100));
        assert_eq!(p.logit_bias.get("15"), Some(&2));
        assert_eq!(p.reasoning_effort(), ReasoningEffort::Xhigh);
        assert_eq!(p.service_tier(), ServiceTier::Flex);
        assert_eq!(p.metadata.get("team").map(String::as_str), Some("search"));
        assert_eq!(p.verbosity(), Verbosity::Low);
        let none = convert(r#"{"messages": [{"role": "user", "content": "x"}]}"#).unwrap();
        let p = none.params.unwrap();
        assert_eq!(p.reasoning_effort(), ReasoningEffort::Unspecified);
        assert!(p.logit_bias.is_empty() && p.metadata.is_empty());
    }

    #[test]
    fn unsupported_options_name_the_parameter() {
        for (body, param) in [
            (r#"{"messages": [], "n": 2}"#, "n"),
            (r#"{"messages": [], "logprobs": true}"#, "logprobs"),
            (
                r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
                "messages[0].content[0].type",
            ),
            (
                r#"{"messages": [], "tool_choice": "sometimes"}"#,
                "tool_choice",
            ),
            (
                r#"{"messages": [], "tools": [{"type": "code_interpreter", "function": {"name": "x"}}]}"#,
                "tools[0].type",
            ),
            (r#"{"messages": "hello"}"#, "messages"),
            (r#"{"messages": [], "temperature": "hot"}"#, "temperature"),
            (
                r#"{"messages": [], "reasoning_effort": "extreme"}"#,
                "reasoning_effort",
            ),
            (
                r#"{"messages": [], "reasoning_effort": "unspecified"}"#,
                "reasoning_effort",
            ),
            (
                r#"{"messages": [], "reasoning_effort": "LOW"}"#,
                "reasoning_effort",
            ),
            (
                r#"{"messages": [], "service_tier": "cheap"}"#,
                "service_tier",
            ),
            (r#"{"messages": [], "verbosity": "chatty"}"#, "verbosity"),
            (
                r#"{"messages": [], "logit_bias": {"1": 0.5}}"#,
                "logit_bias",
            ),
            (
                r#"{"messages": [], "logit_bias": {"1": "x"}}"#,
                "logit_bias.1",
            ),
            (r#"{"messages": [], "metadata": {"k": 1}}"#, "metadata.k"),
        ] {
            let e = convert(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
            assert_eq!(e.status, 400);
        }
        let e = convert("{not json").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e:?}");
        let deep = "[".repeat(10_000);
        assert_eq!(
            convert(&deep).unwrap_err().status,
            400,
            "nesting limit, no stack overflow"
        );
    }
}
