//! Calls that wait for the caller's approval (OpenAI's `require_approval` on an `mcp` tool).
//!
//! A call that needs approval does not run: it is stored as a pending record (kind
//! `approval`, keyed by its tool call id) holding exactly the call (exposed name and
//! arguments), and the turn ends with it among the assistant's `tool_calls`. The caller's
//! next request carries an [`ApprovalDecision`] for that id: approved, the stored call runs,
//! provided the conversation still holds the same call (a changed name or changed arguments
//! need a new approval); denied, the model is told so, with the reason. A record that has
//! expired (`agent.approval_timeout`) or is unknown counts as a denial.

use serde::{Deserialize, Serialize};

use crate::{
    error::CoreError,
    model::{Message, ToolCall},
    sessions::{PendingRecord, SessionStore},
};

/// The kind of a pending record that is an approval.
pub const APPROVAL: &str = "approval";

/// Which calls of a request's MCP server need approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Tools not listed below: approval needed (OpenAI's default) or not.
    pub by_default: bool,
    pub always: Vec<String>,
    pub never: Vec<String>,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            by_default: true,
            always: Vec::new(),
            never: Vec::new(),
        }
    }
}

impl ApprovalPolicy {
    /// No call needs approval (operator tools offered without a request's `mcp` entry).
    pub fn never() -> Self {
        Self {
            by_default: false,
            ..Self::default()
        }
    }

    /// Whether a call of `tool` (its own name on the server) waits for approval.
    pub fn requires(&self, tool: &str) -> bool {
        if self.never.iter().any(|t| t == tool) {
            false
        } else if self.always.iter().any(|t| t == tool) {
            true
        } else {
            self.by_default
        }
    }
}

/// The caller's decision on a call that waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    pub call_id: String,
    pub approve: bool,
    pub reason: Option<String>,
}

/// A call that waits for approval, as the caller is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The tool call id.
    pub id: String,
    pub server_label: String,
    /// The tool's own name on the server.
    pub name: String,
    /// The name the model called it by.
    pub function_name: String,
    pub arguments: String,
    /// Unix milliseconds after which an answer counts as a denial.
    pub expires_at_ms: i64,
}

/// What is stored of a waiting call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Stored {
    /// The name the model called (the hub's exposed name).
    exposed: String,
    arguments: String,
    server_label: String,
    tool: String,
}

fn record_id(call_id: &str) -> String {
    format!("approval_{call_id}")
}

/// Stores `call` as waiting for approval and describes it for the caller.
pub async fn open(
    store: &dyn SessionStore,
    session: Option<&str>,
    call: &ToolCall,
    server_label: &str,
    tool: &str,
    timeout: std::time::Duration,
) -> Result<ApprovalRequest, CoreError> {
    let expires_at_ms = crate::sessions::now_millis()
        .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
    let stored = Stored {
        exposed: call.name.clone(),
        arguments: call.arguments.clone(),
        server_label: server_label.to_string(),
        tool: tool.to_string(),
    };
    store
        .put_pending(&PendingRecord {
            id: record_id(&call.id),
            session: session.map(str::to_string),
            kind: APPROVAL.to_string(),
            body: serde_json::to_string(&stored).unwrap_or_default(),
            answer: None,
            expires_at_ms,
        })
        .await?;
    Ok(ApprovalRequest {
        id: call.id.clone(),
        server_label: server_label.to_string(),
        name: tool.to_string(),
        function_name: call.name.clone(),
        arguments: call.arguments.clone(),
        expires_at_ms,
    })
}

/// What to do with one decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Run exactly this call (the stored exposed name and arguments).
    Run(ToolCall),
    /// Do not run it; the model reads this text as the call's result.
    Skip(String),
}

/// Resolves `decision` against its stored record and the conversation (`history`, whose
/// last assistant message with tool calls must hold the same call), removing the record.
/// `index` names the decision in errors.
pub async fn resolve(
    store: &dyn SessionStore,
    history: &[Message],
    decision: &ApprovalDecision,
    index: usize,
) -> Result<Resolution, CoreError> {
    let field = format!("approvals[{index}]");
    let asked = history
        .iter()
        .rev()
        .find(|m| !m.tool_calls.is_empty())
        .and_then(|m| m.tool_calls.iter().find(|c| c.id == decision.call_id))
        .ok_or_else(|| CoreError::InvalidArgument {
            field: field.clone(),
            reason: format!(
                "no tool call {:?} waits in the conversation's last tool-calling assistant message",
                decision.call_id
            ),
        })?;
    let record = store
        .pending(&record_id(&decision.call_id))
        .await?
        .filter(|r| r.kind == APPROVAL);
    let Some(record) = record else {
        return Ok(Resolution::Skip(format!(
            "The call was not run: its approval request expired (or is unknown) before an answer came{}.",
            reason_suffix(decision)
        )));
    };
    let stored: Stored = serde_json::from_str(&record.body).map_err(|e| {
        CoreError::Unavailable(format!("the stored approval request is unreadable: {e}"))
    })?;
    if asked.name != stored.exposed || asked.arguments != stored.arguments {
        return Err(CoreError::InvalidArgument {
            field,
            reason: format!(
                "the tool call {:?} differs from the one approval was asked for (name or arguments changed); a changed call needs a new approval",
                decision.call_id
            ),
        });
    }
    store.remove_pending(&record.id).await?;
    Ok(if decision.approve {
        Resolution::Run(ToolCall {
            id: decision.call_id.clone(),
            name: stored.exposed,
            arguments: stored.arguments,
        })
    } else {
        Resolution::Skip(format!(
            "The user denied this call to {} on {}{}.",
            stored.tool,
            stored.server_label,
            reason_suffix(decision)
        ))
    })
}

/// The calls of `session` that wait for approval.
pub async fn of_session(
    store: &dyn SessionStore,
    session: &str,
) -> Result<Vec<ApprovalRequest>, CoreError> {
    let records = store.session_pending(session).await?;
    Ok(records
        .into_iter()
        .filter(|r| r.kind == APPROVAL)
        .filter_map(|r| {
            let stored: Stored = serde_json::from_str(&r.body).ok()?;
            Some(ApprovalRequest {
                id: r.id.strip_prefix("approval_").unwrap_or(&r.id).to_string(),
                server_label: stored.server_label,
                name: stored.tool,
                function_name: stored.exposed,
                arguments: stored.arguments,
                expires_at_ms: r.expires_at_ms,
            })
        })
        .collect())
}

fn reason_suffix(decision: &ApprovalDecision) -> String {
    decision
        .reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| format!(" (reason: {r})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_follows_openai() {
        let default = ApprovalPolicy::default();
        assert!(default.requires("anything"), "OpenAI's default: always");
        let never_but = ApprovalPolicy {
            by_default: false,
            always: vec!["delete".into()],
            never: Vec::new(),
        };
        assert!(!never_but.requires("read") && never_but.requires("delete"));
        let always_but = ApprovalPolicy {
            by_default: true,
            always: Vec::new(),
            never: vec!["read".into()],
        };
        assert!(!always_but.requires("read") && always_but.requires("write"));
    }
}
