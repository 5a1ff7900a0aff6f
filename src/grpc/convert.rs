//! proto ↔ core conversions, the one place they live. Parsing a `ChatRequest` validates
//! it ("parse, don't validate"): what comes out is an [`AgentRequest`] the core can trust,
//! and every rejection names its field.

use std::time::Duration;

use prost_types::{ListValue, Struct, value::Kind};
use serde_json::{Map, Number, Value};

use crate::{
    agent::{AgentEvent, AgentRequest, AgentResponse, ExecutedCall, Finish, TurnUsage},
    error::CoreError,
    llm::{GenParams, Message, Role, ToolCall, ToolChoice, ToolDef},
    mcp::{ServerState, ToolSpec},
    pb,
    sessions::{Session, SessionId},
};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks and converts a request's messages, params and tools. `allow_empty` is for
/// session turns, whose history may carry the conversation.
pub fn agent_request(
    request: pb::ChatRequest,
    allow_empty: bool,
) -> Result<AgentRequest, CoreError> {
    if request.messages.is_empty() && !allow_empty {
        return Err(invalid("messages", "must contain at least one message"));
    }
    let messages = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message_from_pb(m, &format!("messages[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let params = params(request.params.unwrap_or_default(), request.user)?;
    let client_tools = request
        .tools
        .into_iter()
        .enumerate()
        .map(|(i, t)| tool_def(t, &format!("tools[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = match request.tool_choice.and_then(|c| c.choice) {
        None => None,
        Some(pb::tool_choice::Choice::Mode(mode)) => match pb::ToolChoiceMode::try_from(mode) {
            Ok(pb::ToolChoiceMode::None) => Some(ToolChoice::None),
            Ok(pb::ToolChoiceMode::Auto) => Some(ToolChoice::Auto),
            Ok(pb::ToolChoiceMode::Required) => Some(ToolChoice::Required),
            Ok(pb::ToolChoiceMode::Unspecified) => None,
            Err(_) => return Err(invalid("tool_choice.mode", format!("unknown mode {mode}"))),
        },
        Some(pb::tool_choice::Choice::Function(name)) => {
            if !valid_function_name(&name) {
                return Err(invalid(
                    "tool_choice.function",
                    format!("{name:?} is not a valid function name"),
                ));
            }
            Some(ToolChoice::Function(name))
        }
    };
    let session = match (
        request.session_id.filter(|s| !s.is_empty()),
        request.new_session,
    ) {
        (Some(id), _) => {
            Some(SessionId::parse(&id).map_err(|e| invalid("session_id", e.to_string()))?)
        }
        (None, true) => Some(SessionId::generate()),
        (None, false) => None,
    };
    let model = Some(request.model).filter(|m| !m.is_empty());
    Ok(AgentRequest {
        model,
        messages,
        params,
        client_tools,
        tool_choice,
        session,
    })
}

/// A proto message as a core message, checked.
pub fn message_from_pb(m: pb::Message, field: &str) -> Result<Message, CoreError> {
    let role = match pb::Role::try_from(m.role) {
        Ok(pb::Role::System | pb::Role::Developer) => Role::System,
        Ok(pb::Role::User) => Role::User,
        Ok(pb::Role::Assistant) => Role::Assistant,
        Ok(pb::Role::Tool) => Role::Tool,
        Ok(pb::Role::Unspecified) => {
            return Err(invalid(
                format!("{field}.role"),
                "is required (system, user, assistant or tool)",
            ));
        }
        Err(_) => {
            return Err(invalid(
                format!("{field}.role"),
                format!("{} is not a known role", m.role),
            ));
        }
    };
    if role == Role::Tool && m.tool_call_id.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            format!("{field}.tool_call_id"),
            "a tool message must name the tool call it answers",
        ));
    }
    if role != Role::Assistant && !m.tool_calls.is_empty() {
        return Err(invalid(
            format!("{field}.tool_calls"),
            "only assistant messages carry tool calls",
        ));
    }
    if role != Role::Assistant && role != Role::Tool && m.content.is_empty() {
        return Err(invalid(format!("{field}.content"), "must not be empty"));
    }
    let tool_calls = m
        .tool_calls
        .into_iter()
        .enumerate()
        .map(|(j, c)| {
            if c.id.is_empty() || c.name.is_empty() {
                return Err(invalid(
                    format!("{field}.tool_calls[{j}]"),
                    "needs an id and a name",
                ));
            }
            Ok(ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Message {
        role,
        content: m.content,
        name: m.name,
        tool_call_id: m.tool_call_id.filter(|_| role == Role::Tool),
        tool_calls,
    })
}

pub fn message_to_pb(m: &Message) -> pb::Message {
    let role = match m.role {
        Role::System => pb::Role::System,
        Role::User => pb::Role::User,
        Role::Assistant => pb::Role::Assistant,
        Role::Tool => pb::Role::Tool,
    };
    pb::Message {
        role: role.into(),
        content: m.content.clone(),
        name: m.name.clone(),
        tool_call_id: m.tool_call_id.clone(),
        tool_calls: m.tool_calls.iter().map(tool_call_to_pb).collect(),
    }
}

fn tool_call_to_pb(c: &ToolCall) -> pb::ToolCall {
    pb::ToolCall {
        id: c.id.clone(),
        name: c.name.clone(),
        arguments: c.arguments.clone(),
    }
}

fn params(p: pb::GenerationParams, user: Option<String>) -> Result<GenParams, CoreError> {
    let range = |field: &str, v: Option<f32>, lo: f32, hi: f32| match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => {
            Err(invalid(field, format!("{x} is outside {lo}..{hi}")))
        }
        _ => Ok(v),
    };
    let temperature = range("params.temperature", p.temperature, 0.0, 2.0)?;
    let top_p = range("params.top_p", p.top_p, 0.0, 1.0)?;
    let presence_penalty = range("params.presence_penalty", p.presence_penalty, -2.0, 2.0)?;
    let frequency_penalty = range("params.frequency_penalty", p.frequency_penalty, -2.0, 2.0)?;
    if p.max_tokens == Some(0) {
        return Err(invalid("params.max_tokens", "must be at least 1"));
    }
    if p.stop.len() > 4 {
        return Err(invalid(
            "params.stop",
            format!(
                "{} stop sequences given; at most 4 are allowed",
                p.stop.len()
            ),
        ));
    }
    let response_format = match p.response_format.and_then(|f| f.format) {
        None | Some(pb::response_format::Format::Text(_)) => None,
        Some(pb::response_format::Format::JsonObject(_)) => {
            Some(serde_json::json!({"type": "json_object"}))
        }
        Some(pb::response_format::Format::JsonSchema(s)) => {
            if s.name.is_empty() {
                return Err(invalid(
                    "params.response_format.json_schema.name",
                    "is required",
                ));
            }
            let mut schema = Map::new();
            schema.insert("name".into(), Value::String(s.name));
            if let Some(d) = s.description {
                schema.insert("description".into(), Value::String(d));
            }
            schema.insert(
                "schema".into(),
                s.schema
                    .map_or_else(|| Value::Object(Map::new()), struct_to_json),
            );
            if let Some(strict) = s.strict {
                schema.insert("strict".into(), Value::Bool(strict));
            }
            Some(serde_json::json!({"type": "json_schema", "json_schema": schema}))
        }
    };
    Ok(GenParams {
        temperature,
        top_p,
        max_tokens: p.max_tokens,
        stop: p.stop,
        seed: p.seed,
        presence_penalty,
        frequency_penalty,
        response_format,
        parallel_tool_calls: p.parallel_tool_calls,
        user,
    })
}

fn tool_def(t: pb::ToolDefinition, field: &str) -> Result<ToolDef, CoreError> {
    if !valid_function_name(&t.name) {
        return Err(invalid(
            format!("{field}.name"),
            format!("{:?} must match ^[a-zA-Z0-9_-]{{1,64}}$", t.name),
        ));
    }
    let parameters = t.parameters.map_or_else(
        || serde_json::json!({"type": "object", "properties": {}}),
        struct_to_json,
    );
    Ok(ToolDef {
        name: t.name,
        description: t.description,
        parameters,
        strict: t.strict,
    })
}

fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

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
        message: Some(message_to_pb(&r.message)),
        tool_calls: r.executed.into_iter().map(executed_to_pb).collect(),
        id: r.id,
        session_id: r.session_id,
        model: r.model,
        created: r.created,
    }
}

/// A stream event.
pub fn event_to_pb(event: AgentEvent) -> pb::ChatEvent {
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
        AgentEvent::ClientToolCall(call) => Event::ClientToolCall(tool_call_to_pb(&call)),
        AgentEvent::Usage(u) => Event::Usage(usage_to_pb(&u)),
        AgentEvent::Done(r) => Event::Response(response_to_pb(*r)),
    };
    pb::ChatEvent { event: Some(event) }
}

pub fn session_to_pb(s: Session) -> pb::Session {
    pb::Session {
        id: s.id.as_str().to_string(),
        model: s.model,
        created: s.created_at,
        updated: s.updated_at,
        messages: s.messages.iter().map(message_to_pb).collect(),
    }
}

/// A session id from a request field, checked.
pub fn session_id(raw: &str) -> Result<SessionId, CoreError> {
    SessionId::parse(raw).map_err(|e| invalid("session_id", e.to_string()))
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

/// `google.protobuf.Struct` → JSON. Whole numbers come back as integers.
pub fn struct_to_json(s: Struct) -> Value {
    Value::Object(
        s.fields
            .into_iter()
            .map(|(k, v)| (k, prost_to_json(v)))
            .collect(),
    )
}

fn prost_to_json(v: prost_types::Value) -> Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                #[allow(clippy::cast_possible_truncation)]
                Value::Number(Number::from(n as i64))
            } else {
                Number::from_f64(n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(prost_to_json).collect()),
    }
}

/// JSON → `google.protobuf.Value`.
pub fn json_to_prost(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(json_to_prost).collect(),
        }),
        Value::Object(o) => Kind::StructValue(Struct {
            fields: o
                .iter()
                .map(|(k, v)| (k.clone(), json_to_prost(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(text: &str) -> pb::Message {
        pb::Message {
            role: pb::Role::User.into(),
            content: text.into(),
            ..Default::default()
        }
    }

    fn field_of(err: CoreError) -> String {
        match err {
            CoreError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let base = || pb::ChatRequest {
            messages: vec![user("hi")],
            ..Default::default()
        };
        let mut empty = base();
        empty.messages.clear();
        assert_eq!(
            field_of(agent_request(empty, false).unwrap_err()),
            "messages"
        );

        let mut no_role = base();
        no_role.messages.push(pb::Message {
            content: "x".into(),
            ..Default::default()
        });
        assert_eq!(
            field_of(agent_request(no_role, false).unwrap_err()),
            "messages[1].role"
        );

        let mut bad_role = base();
        bad_role.messages[0].role = 42;
        assert_eq!(
            field_of(agent_request(bad_role, false).unwrap_err()),
            "messages[0].role"
        );

        let mut tool = base();
        tool.messages.push(pb::Message {
            role: pb::Role::Tool.into(),
            content: "r".into(),
            ..Default::default()
        });
        assert_eq!(
            field_of(agent_request(tool, false).unwrap_err()),
            "messages[1].tool_call_id"
        );

        for (params, field) in [
            (
                pb::GenerationParams {
                    temperature: Some(2.5),
                    ..Default::default()
                },
                "params.temperature",
            ),
            (
                pb::GenerationParams {
                    temperature: Some(-0.1),
                    ..Default::default()
                },
                "params.temperature",
            ),
            (
                pb::GenerationParams {
                    max_tokens: Some(0),
                    ..Default::default()
                },
                "params.max_tokens",
            ),
            (
                pb::GenerationParams {
                    top_p: Some(1.5),
                    ..Default::default()
                },
                "params.top_p",
            ),
            (
                pb::GenerationParams {
                    stop: vec!["a".into(); 5],
                    ..Default::default()
                },
                "params.stop",
            ),
        ] {
            let mut r = base();
            r.params = Some(params);
            assert_eq!(field_of(agent_request(r, false).unwrap_err()), field);
        }

        let mut bad_tool = base();
        bad_tool.tools.push(pb::ToolDefinition {
            name: "has space".into(),
            ..Default::default()
        });
        assert_eq!(
            field_of(agent_request(bad_tool, false).unwrap_err()),
            "tools[0].name"
        );
    }

    #[test]
    fn a_valid_request_converts() {
        let schema =
            json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 64}}});
        let Kind::StructValue(s) = json_to_prost(&schema).kind.unwrap() else {
            panic!()
        };
        let r = pb::ChatRequest {
            model: "m".into(),
            messages: vec![
                pb::Message {
                    role: pb::Role::Developer.into(),
                    content: "sys".into(),
                    ..Default::default()
                },
                user("hi"),
            ],
            params: Some(pb::GenerationParams {
                temperature: Some(0.5),
                max_tokens: Some(10),
                ..Default::default()
            }),
            tools: vec![pb::ToolDefinition {
                name: "get_weather".into(),
                description: "w".into(),
                parameters: Some(s),
                strict: None,
            }],
            tool_choice: Some(pb::ToolChoice {
                choice: Some(pb::tool_choice::Choice::Mode(
                    pb::ToolChoiceMode::Required.into(),
                )),
            }),
            ..Default::default()
        };
        let a = agent_request(r, false).unwrap();
        assert_eq!(a.model.as_deref(), Some("m"));
        assert_eq!(a.messages[0].role, Role::System);
        assert_eq!(a.params.temperature, Some(0.5));
        assert_eq!(
            a.client_tools[0].parameters, schema,
            "integers survive the Struct round trip"
        );
        assert_eq!(a.tool_choice, Some(ToolChoice::Required));
    }

    #[test]
    fn messages_round_trip() {
        let m = Message {
            tool_calls: vec![ToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            ..Message::new(Role::Assistant, "x")
        };
        assert_eq!(message_from_pb(message_to_pb(&m), "m").unwrap(), m);
        let t = Message::tool_result("c", "r");
        assert_eq!(message_from_pb(message_to_pb(&t), "m").unwrap(), t);
    }
}
