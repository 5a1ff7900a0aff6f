//! Requests in: `ChatRequest` → `AgentRequest`, checked field by field; messages both ways
//! (sessions store core messages and give them back as proto).

use serde_json::{Map, Value};

use crate::{
    agent::{
        AgentRequest, RequestServer,
        approvals::{ApprovalDecision, ApprovalPolicy},
        pending::ElicitationReply,
    },
    error::CoreError,
    model::{
        GenParams, Message, ReasoningEffort, Role, ServiceTier, ToolCall, ToolChoice, ToolDef,
        Verbosity,
    },
    pb::{self, json::struct_to_json},
    sessions::SessionId,
};

/// A list element's field path, `messages[3]`, formatted only when an error names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Indexed(pub &'static str, pub usize);

impl std::fmt::Display for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

pub(super) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CoreError {
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
    // A follow-up that only answers approvals carries no new message.
    if request.messages.is_empty() && !allow_empty && request.approvals.is_empty() {
        return Err(invalid("messages", "must contain at least one message"));
    }
    let messages = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message_from_pb(m, &Indexed("messages", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let params = params(request.params.unwrap_or_default(), request.user)?;
    let client_tools = request
        .tools
        .into_iter()
        .enumerate()
        .map(|(i, t)| tool_def(t, &Indexed("tools", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = tool_choice(request.tool_choice)?;
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
    let answers_elicitations = request.answers_elicitations;
    let mut mcp_servers: Vec<RequestServer> = Vec::with_capacity(request.mcp_servers.len());
    for (i, s) in request.mcp_servers.into_iter().enumerate() {
        let server = request_server(s, &format!("mcp_servers[{i}]"))?;
        if mcp_servers.iter().any(|o| o.label == server.label) {
            return Err(invalid(
                format!("{}.server_label", server.field),
                format!("{:?} is named twice", server.label),
            ));
        }
        mcp_servers.push(server);
    }
    let approvals = request
        .approvals
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.tool_call_id.is_empty() {
                return Err(invalid(
                    format!("approvals[{i}].tool_call_id"),
                    "is required",
                ));
            }
            Ok(ApprovalDecision {
                call_id: a.tool_call_id,
                approve: a.approve,
                reason: a.reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AgentRequest {
        model,
        messages,
        params,
        client_tools,
        tool_choice,
        session,
        answers_elicitations,
        mcp_servers,
        approvals,
        // Set by the service from the caller's key.
        access: None,
        instructions: None,
        report_tools: false,
        continues: None,
    })
}

/// The tool choice, checked.
pub(super) fn tool_choice(choice: Option<pb::ToolChoice>) -> Result<Option<ToolChoice>, CoreError> {
    Ok(match choice.and_then(|c| c.choice) {
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
    })
}

/// One request MCP server, checked: a label of tool-name characters (it prefixes the names
/// the model sees), an http(s) URL when given, a known approval mode.
pub(super) fn request_server(
    s: pb::McpServerTool,
    field: &str,
) -> Result<RequestServer, CoreError> {
    if s.server_label.is_empty() || !valid_function_name(&s.server_label) {
        return Err(invalid(
            format!("{field}.server_label"),
            "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
        ));
    }
    if let Some(url) = &s.server_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(invalid(
            format!("{field}.server_url"),
            "must be an http(s) URL",
        ));
    }
    let policy = s.require_approval.unwrap_or_default();
    let by_default = match pb::ApprovalMode::try_from(policy.mode) {
        Ok(pb::ApprovalMode::Unspecified | pb::ApprovalMode::Always) => true,
        Ok(pb::ApprovalMode::Never) => false,
        Err(_) => {
            return Err(invalid(
                format!("{field}.require_approval.mode"),
                format!("unknown mode {}", policy.mode),
            ));
        }
    };
    Ok(RequestServer {
        label: s.server_label,
        url: s.server_url,
        headers: s.headers.into_iter().collect(),
        allowed_tools: s.allowed_tools.map(|t| t.tool_names),
        approval: ApprovalPolicy {
            by_default,
            always: policy.always,
            never: policy.never,
        },
        field: field.to_string(),
    })
}

/// A proto message as a core message, checked.
pub fn message_from_pb(
    m: pb::Message,
    field: &dyn std::fmt::Display,
) -> Result<Message, CoreError> {
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
        refusal: None,
    }
}

pub(super) fn tool_call_to_pb(c: &ToolCall) -> pb::ToolCall {
    pb::ToolCall {
        id: c.id.clone(),
        name: c.name.clone(),
        arguments: c.arguments.clone(),
    }
}

pub(super) fn params(
    p: pb::GenerationParams,
    user: Option<String>,
) -> Result<GenParams, CoreError> {
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
    if p.max_completion_tokens == Some(0) {
        return Err(invalid(
            "params.max_completion_tokens",
            "must be at least 1",
        ));
    }
    let (max_tokens, as_max_completion_tokens) = match p.max_completion_tokens {
        Some(n) => (Some(n), true),
        None => (p.max_tokens, false),
    };
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
    let logit_bias = logit_bias(p.logit_bias)?;
    let metadata = metadata(p.metadata)?;
    let reasoning_effort = reasoning_effort(p.reasoning_effort)?;
    let service_tier = service_tier(p.service_tier)?;
    let verbosity = verbosity(p.verbosity)?;
    Ok(GenParams {
        logit_bias,
        metadata,
        reasoning_effort,
        service_tier,
        verbosity,
        temperature,
        top_p,
        max_tokens,
        as_max_completion_tokens,
        stop: p.stop,
        seed: p.seed,
        presence_penalty,
        frequency_penalty,
        response_format,
        parallel_tool_calls: p.parallel_tool_calls,
        user,
    })
}

/// OpenAI's limits on `metadata`: 16 pairs, keys up to 64 characters, values up to 512.
const METADATA_PAIRS: usize = 16;
const METADATA_KEY_CHARS: usize = 64;
const METADATA_VALUE_CHARS: usize = 512;

fn metadata(
    pairs: std::collections::HashMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, CoreError> {
    const FIELD: &str = "params.metadata";
    if pairs.len() > METADATA_PAIRS {
        return Err(invalid(
            FIELD,
            format!(
                "{} pairs given; at most {METADATA_PAIRS} are allowed",
                pairs.len()
            ),
        ));
    }
    for (key, value) in &pairs {
        if key.chars().count() > METADATA_KEY_CHARS {
            return Err(invalid(
                FIELD,
                format!("the key {key:?} is longer than {METADATA_KEY_CHARS} characters"),
            ));
        }
        if value.chars().count() > METADATA_VALUE_CHARS {
            return Err(invalid(
                FIELD,
                format!("the value of {key:?} is longer than {METADATA_VALUE_CHARS} characters"),
            ));
        }
    }
    Ok(pairs.into_iter().collect())
}

fn logit_bias(
    biases: std::collections::HashMap<String, i32>,
) -> Result<std::collections::BTreeMap<String, i32>, CoreError> {
    const FIELD: &str = "params.logit_bias";
    for (token, bias) in &biases {
        if token.is_empty() || token.len() > 10 || !token.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                FIELD,
                format!("{token:?} is not a token id (a decimal number)"),
            ));
        }
        if !(-100..=100).contains(bias) {
            return Err(invalid(
                FIELD,
                format!("the bias {bias} of token {token} is outside -100..100"),
            ));
        }
    }
    Ok(biases.into_iter().collect())
}

fn reasoning_effort(value: i32) -> Result<Option<ReasoningEffort>, CoreError> {
    use pb::generation_params::ReasoningEffort as P;
    Ok(match P::try_from(value) {
        Ok(P::Unspecified) => None,
        Ok(P::None) => Some(ReasoningEffort::None),
        Ok(P::Minimal) => Some(ReasoningEffort::Minimal),
        Ok(P::Low) => Some(ReasoningEffort::Low),
        Ok(P::Medium) => Some(ReasoningEffort::Medium),
        Ok(P::High) => Some(ReasoningEffort::High),
        Ok(P::Xhigh) => Some(ReasoningEffort::Xhigh),
        Err(_) => {
            return Err(invalid(
                "params.reasoning_effort",
                format!("{value} is not a known reasoning effort"),
            ));
        }
    })
}

fn service_tier(value: i32) -> Result<Option<ServiceTier>, CoreError> {
    use pb::generation_params::ServiceTier as P;
    Ok(match P::try_from(value) {
        Ok(P::Unspecified) => None,
        Ok(P::Auto) => Some(ServiceTier::Auto),
        Ok(P::Default) => Some(ServiceTier::Default),
        Ok(P::Flex) => Some(ServiceTier::Flex),
        Ok(P::Scale) => Some(ServiceTier::Scale),
        Ok(P::Priority) => Some(ServiceTier::Priority),
        Err(_) => {
            return Err(invalid(
                "params.service_tier",
                format!("{value} is not a known service tier"),
            ));
        }
    })
}

fn verbosity(value: i32) -> Result<Option<Verbosity>, CoreError> {
    use pb::generation_params::Verbosity as P;
    Ok(match P::try_from(value) {
        Ok(P::Unspecified) => None,
        Ok(P::Low) => Some(Verbosity::Low),
        Ok(P::Medium) => Some(Verbosity::Medium),
        Ok(P::High) => Some(Verbosity::High),
        Err(_) => {
            return Err(invalid(
                "params.verbosity",
                format!("{value} is not a known verbosity"),
            ));
        }
    })
}

pub(super) fn tool_def(
    t: pb::ToolDefinition,
    field: &dyn std::fmt::Display,
) -> Result<ToolDef, CoreError> {
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

/// A session id from a request field, checked.
pub fn session_id(raw: &str) -> Result<SessionId, CoreError> {
    SessionId::parse(raw).map_err(|e| invalid("session_id", e.to_string()))
}

/// An answer to an elicitation, checked: the id and the action are required; content goes
/// with ACCEPT only.
pub fn elicitation_answer(
    request: pb::AnswerElicitationRequest,
) -> Result<(String, ElicitationReply), CoreError> {
    if request.id.is_empty() {
        return Err(invalid("id", "is required"));
    }
    let reply = match pb::ElicitationAction::try_from(request.action) {
        Ok(pb::ElicitationAction::Accept) => ElicitationReply::Accept {
            content: match request.content.map(struct_to_json) {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            },
        },
        Ok(pb::ElicitationAction::Decline) if request.content.is_none() => {
            ElicitationReply::Decline
        }
        Ok(pb::ElicitationAction::Cancel) if request.content.is_none() => ElicitationReply::Cancel,
        Ok(pb::ElicitationAction::Decline | pb::ElicitationAction::Cancel) => {
            return Err(invalid("content", "goes with the accept action only"));
        }
        Ok(pb::ElicitationAction::Unspecified) | Err(_) => {
            return Err(invalid("action", "must be accept, decline or cancel"));
        }
    };
    Ok((request.id, reply))
}
