//! The stored form of a message: a private serde representation of [`Message`], so the
//! core `model` types stay free of serde. Every backend stores one JSON object per message.
//!
//! Field names are short and stable; adding an optional field later stays readable by
//! older rows (`#[serde(default)]`).

use serde::{Deserialize, Serialize};

use super::SessionError;
use crate::model::{Message, Role, ToolCall};

#[derive(Debug, Serialize, Deserialize)]
struct StoredMessage {
    role: StoredRole,
    #[serde(default)]
    content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<StoredToolCall>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredRole {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredToolCall {
    id: String,
    name: String,
    arguments: String,
}

impl From<Role> for StoredRole {
    fn from(role: Role) -> Self {
        match role {
            Role::System => Self::System,
            Role::User => Self::User,
            Role::Assistant => Self::Assistant,
            Role::Tool => Self::Tool,
        }
    }
}

impl From<StoredRole> for Role {
    fn from(role: StoredRole) -> Self {
        match role {
            StoredRole::System => Self::System,
            StoredRole::User => Self::User,
            StoredRole::Assistant => Self::Assistant,
            StoredRole::Tool => Self::Tool,
        }
    }
}

/// One message as the JSON text a backend stores.
pub(crate) fn encode(message: &Message) -> Result<String, SessionError> {
    let stored = StoredMessage {
        role: message.role.into(),
        content: message.content.clone(),
        name: message.name.clone(),
        tool_call_id: message.tool_call_id.clone(),
        tool_calls: message
            .tool_calls
            .iter()
            .map(|c| StoredToolCall {
                id: c.id.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            })
            .collect(),
    };
    serde_json::to_string(&stored)
        .map_err(|e| SessionError::Backend(format!("cannot encode a message: {e}")))
}

/// Every message of a turn, encoded; fails before anything is written.
pub(crate) fn encode_all(messages: &[Message]) -> Result<Vec<String>, SessionError> {
    messages.iter().map(encode).collect()
}

/// A stored message back; `session` names the session in the error.
pub(crate) fn decode(session: &str, text: &str) -> Result<Message, SessionError> {
    let stored: StoredMessage = serde_json::from_str(text).map_err(|e| SessionError::Corrupt {
        id: session.to_string(),
        message: e.to_string(),
    })?;
    Ok(Message {
        role: stored.role.into(),
        content: stored.content,
        name: stored.name,
        tool_call_id: stored.tool_call_id,
        tool_calls: stored
            .tool_calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips() {
        let messages = vec![
            Message::new(Role::System, "be brief"),
            Message {
                name: Some("alice".into()),
                ..Message::new(Role::User, "hi \"there\"\n")
            },
            Message {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "srv__search".into(),
                    arguments: r#"{"q": "x"}"#.into(),
                }],
                ..Message::new(Role::Assistant, "")
            },
            Message::tool_result("call_1", "result ✓"),
        ];
        for m in &messages {
            assert_eq!(&decode("s", &encode(m).unwrap()).unwrap(), m);
        }
    }

    #[test]
    fn undecodable_text_is_a_corrupt_error_naming_the_session() {
        let err = decode("s1", "{\"role\":\"robot\"}").unwrap_err();
        assert!(matches!(err, SessionError::Corrupt { ref id, .. } if id == "s1"));
    }
}
