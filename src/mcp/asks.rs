//! What an MCP server may ask of its caller in the middle of a tool call: input from the
//! user (`elicitation/create`, form and URL modes) and an LLM completion
//! (`sampling/createMessage`).
//!
//! The hub knows no LLM and no user, so it hands these to the [`Caller`] of the call in
//! progress on that server (the agent for a chat turn, the terminal for `mcp-chat tools
//! call`), in neutral types; rmcp's wire types stay in this module. Also here: the requested
//! schema's defaults (SEP-1034) and the check of an answer against that schema.

// Sampling is deprecated in the 2026-07-28 revision (SEP-2577); servers of 2025 still use it.
#![allow(deprecated)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::model::{
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationAction, Role as McpRole, SamplingMessage, SamplingMessageContentBlock,
};
use serde_json::{Map, Value};

/// A server's request for input from the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Elicitation {
    /// The server that asks.
    pub server: String,
    /// What it asks, for the user.
    pub message: String,
    /// Form mode: the requested schema (an object schema of primitive properties).
    /// URL mode: `None`.
    pub schema: Option<Value>,
    /// URL mode: where the user completes the request.
    pub url: Option<String>,
}

/// The caller's answer to an [`Elicitation`].
#[derive(Debug, Clone, PartialEq)]
pub enum ElicitAnswer {
    /// The user's input (form mode: an object valid against the schema).
    Accept(Map<String, Value>),
    /// The user (or the API) said no; the reason is for logs and the model.
    Decline(String),
    Cancel,
}

/// Who wrote a sampling message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingRole {
    User,
    Assistant,
}

/// A server's request for an LLM completion.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRequest {
    pub server: String,
    pub system_prompt: Option<String>,
    /// The conversation, text parts only (other parts are summarised in brackets).
    pub messages: Vec<(SamplingRole, String)>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub stop: Vec<String>,
}

/// The completion sent back to the server.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingAnswer {
    pub text: String,
    pub model: String,
    /// Whether the completion stopped at the token limit.
    pub truncated: bool,
}

/// The party a tool call runs for; it answers what the server asks during the call.
#[async_trait::async_trait]
pub trait Caller: Send + Sync {
    /// How long this caller may take to answer a request (a person deciding); a call made
    /// for it may run that much longer than its timeout. `None`: it answers at once.
    fn patience(&self) -> Option<Duration> {
        None
    }

    /// Input from the user. The default declines: nobody can be asked.
    async fn elicit(&self, request: Elicitation) -> ElicitAnswer {
        let _ = request;
        ElicitAnswer::Decline("this caller cannot ask the user".into())
    }

    /// A completion. The default refuses.
    async fn sample(&self, request: SamplingRequest) -> Result<SamplingAnswer, String> {
        let _ = request;
        Err("this caller does not answer sampling requests".into())
    }

    /// Progress the server reported for the call (`notifications/progress`). The default
    /// drops it.
    fn progress(&self, progress: super::progress::Progress) {
        let _ = progress;
    }
}

/// The callers of the calls now in flight on one server; a request the server sends goes to
/// the newest (the calls of one server are usually one at a time per turn).
#[derive(Default)]
pub struct Callers {
    next: AtomicU64,
    live: Mutex<Vec<(u64, Arc<dyn Caller>)>>,
}

impl Callers {
    /// Registers `caller` until the guard drops.
    pub fn enter(self: &Arc<Self>, caller: Arc<dyn Caller>) -> CallerGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, caller));
        CallerGuard {
            callers: self.clone(),
            id,
        }
    }

    /// The newest caller in flight.
    pub fn current(&self) -> Option<Arc<dyn Caller>> {
        self.lock().last().map(|(_, c)| c.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<dyn Caller>)>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a caller from [`Callers`] when dropped.
pub struct CallerGuard {
    callers: Arc<Callers>,
    id: u64,
}

impl Drop for CallerGuard {
    fn drop(&mut self) {
        self.callers.lock().retain(|(id, _)| *id != self.id);
    }
}

/// The server's request in neutral terms.
pub fn elicitation_of(server: &str, request: ElicitRequestParams) -> Elicitation {
    match request {
        ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } => Elicitation {
            server: server.to_string(),
            message,
            schema: Some(serde_json::to_value(requested_schema).unwrap_or(Value::Null)),
            url: None,
        },
        ElicitRequestParams::UrlElicitationParams { message, url, .. } => Elicitation {
            server: server.to_string(),
            message,
            schema: None,
            url: Some(url),
        },
        // A mode this client does not know.
        _ => Elicitation {
            server: server.to_string(),
            message: String::new(),
            schema: None,
            url: None,
        },
    }
}

/// The answer on the wire.
pub fn elicit_result(answer: ElicitAnswer) -> ElicitResult {
    match answer {
        ElicitAnswer::Accept(content) => {
            ElicitResult::new(ElicitationAction::Accept).with_content(Value::Object(content))
        }
        ElicitAnswer::Decline(_) => ElicitResult::new(ElicitationAction::Decline),
        ElicitAnswer::Cancel => ElicitResult::new(ElicitationAction::Cancel),
    }
}

pub fn sampling_of(server: &str, request: CreateMessageRequestParams) -> SamplingRequest {
    let messages = request
        .messages
        .into_iter()
        .map(|m| {
            let role = match m.role {
                McpRole::Assistant => SamplingRole::Assistant,
                _ => SamplingRole::User,
            };
            let text: Vec<String> = m
                .content
                .into_vec()
                .into_iter()
                .map(|block| match block {
                    SamplingMessageContentBlock::Text(t) => t.text,
                    SamplingMessageContentBlock::Image(_) => "[image]".into(),
                    SamplingMessageContentBlock::Audio(_) => "[audio]".into(),
                    _ => "[tool content]".into(),
                })
                .collect();
            (role, text.join("\n"))
        })
        .collect();
    SamplingRequest {
        server: server.to_string(),
        system_prompt: request.system_prompt,
        messages,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        stop: request.stop_sequences.unwrap_or_default(),
    }
}

pub fn sampling_result(answer: SamplingAnswer) -> CreateMessageResult {
    let stop = if answer.truncated {
        CreateMessageResult::STOP_REASON_END_MAX_TOKEN
    } else {
        CreateMessageResult::STOP_REASON_END_TURN
    };
    CreateMessageResult::new(SamplingMessage::assistant_text(answer.text), answer.model)
        .with_stop_reason(stop)
}

/// The properties of a requested schema, in their declared order.
fn properties(schema: &Value) -> impl Iterator<Item = (&String, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// `content` with each absent property that has a `default` set to it (SEP-1034).
pub fn with_defaults(schema: &Value, mut content: Map<String, Value>) -> Map<String, Value> {
    for (name, property) in properties(schema) {
        if !content.contains_key(name)
            && let Some(default) = property.get("default")
        {
            content.insert(name.clone(), default.clone());
        }
    }
    content
}

/// Checks `content` against the requested schema: required properties, types, enums,
/// bounds and lengths. The error names the property and what was expected.
pub fn validate(schema: &Value, content: &Map<String, Value>) -> Result<(), String> {
    let props: Map<String, Value> = properties(schema)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !content.contains_key(required) {
            return Err(format!("{required:?} is required"));
        }
    }
    for (name, value) in content {
        let Some(property) = props.get(name) else {
            return Err(format!("{name:?} is not a field of the requested form"));
        };
        check(name, property, value)?;
    }
    Ok(())
}

fn check(name: &str, property: &Value, value: &Value) -> Result<(), String> {
    let num = |k: &str| property.get(k).and_then(Value::as_f64);
    let kind = property.get("type").and_then(Value::as_str).unwrap_or("");
    let allowed: Option<Vec<&str>> = property
        .get("enum")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .or_else(|| {
            property.get("oneOf").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|o| o.get("const").and_then(Value::as_str))
                    .collect()
            })
        });
    match kind {
        "string" => {
            let s = value
                .as_str()
                .ok_or_else(|| format!("{name:?} must be a string"))?;
            let len = s.chars().count() as f64;
            if num("minLength").is_some_and(|m| len < m)
                || num("maxLength").is_some_and(|m| len > m)
            {
                return Err(format!("{name:?} has a length outside the allowed range"));
            }
            if let Some(allowed) = &allowed
                && !allowed.contains(&s)
            {
                return Err(format!("{name:?} must be one of {allowed:?}"));
            }
        }
        "number" | "integer" => {
            let n = value
                .as_f64()
                .ok_or_else(|| format!("{name:?} must be a {kind}"))?;
            if kind == "integer" && !(value.is_i64() || value.is_u64()) {
                return Err(format!("{name:?} must be an integer"));
            }
            if num("minimum").is_some_and(|m| n < m) || num("maximum").is_some_and(|m| n > m) {
                return Err(format!("{name:?} is outside the allowed range"));
            }
        }
        "boolean" if !value.is_boolean() => {
            return Err(format!("{name:?} must be true or false"));
        }
        "array" => {
            let items = value
                .as_array()
                .ok_or_else(|| format!("{name:?} must be a list"))?;
            let choices: Option<Vec<&str>> = property.get("items").and_then(|i| {
                i.get("enum")
                    .or_else(|| i.get("anyOf"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|o| o.as_str().or_else(|| o.get("const")?.as_str()))
                            .collect()
                    })
            });
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| format!("{name:?} must be a list of strings"))?;
                if let Some(choices) = &choices
                    && !choices.contains(&s)
                {
                    return Err(format!("{name:?} may only hold {choices:?}"));
                }
            }
            let len = items.len() as f64;
            if num("minItems").is_some_and(|m| len < m) || num("maxItems").is_some_and(|m| len > m)
            {
                return Err(format!(
                    "{name:?} has a number of choices outside the allowed range"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe", "minLength": 1},
                "age": {"type": "integer", "default": 30, "minimum": 0},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive"], "default": "active"},
                "verified": {"type": "boolean", "default": true},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
                "email": {"type": "string"}
            },
            "required": ["email"]
        })
    }

    #[test]
    fn defaults_fill_only_absent_fields() {
        let mut given = Map::new();
        given.insert("age".into(), json!(41));
        let filled = with_defaults(&schema(), given);
        assert_eq!(
            Value::Object(filled),
            json!({"name": "John Doe", "age": 41, "score": 95.5, "status": "active", "verified": true})
        );
    }

    #[test]
    fn answers_are_checked_against_the_schema() {
        let ok = |v: Value| validate(&schema(), v.as_object().unwrap());
        assert_eq!(ok(json!({"email": "a@b.c", "tags": ["a"]})), Ok(()));
        for (bad, says) in [
            (json!({}), "\"email\" is required"),
            (json!({"email": 1}), "\"email\" must be a string"),
            (
                json!({"email": "x", "age": 1.5}),
                "\"age\" must be an integer",
            ),
            (json!({"email": "x", "age": -1}), "\"age\" is outside"),
            (
                json!({"email": "x", "status": "gone"}),
                "\"status\" must be one of",
            ),
            (
                json!({"email": "x", "verified": "yes"}),
                "\"verified\" must be true",
            ),
            (
                json!({"email": "x", "tags": ["c"]}),
                "\"tags\" may only hold",
            ),
            (json!({"email": "x", "name": ""}), "\"name\" has a length"),
            (
                json!({"email": "x", "extra": 1}),
                "\"extra\" is not a field",
            ),
        ] {
            let err = ok(bad.clone()).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_newest_caller_in_flight_is_asked() {
        struct Named;
        impl Caller for Named {}
        let callers = Arc::new(Callers::default());
        assert!(callers.current().is_none());
        let first = callers.enter(Arc::new(Named));
        let second = callers.enter(Arc::new(Named));
        assert!(callers.current().is_some());
        drop(second);
        assert!(callers.current().is_some());
        drop(first);
        assert!(callers.current().is_none());
    }
}
