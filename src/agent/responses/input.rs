//! Input items into the agent's conversation: messages as messages, consecutive
//! `function_call` items as one assistant message with those calls (joined to the assistant
//! message right before them), `function_call_output` as tool results, and
//! `mcp_approval_response` as the approval decisions the turn resumes with.

use super::{InputEntry, InputItem, InputRole};
use crate::{
    agent::approvals::ApprovalDecision,
    error::CoreError,
    model::{Message, Role, ToolCall},
};

fn invalid(field: String, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

pub(super) fn to_conversation(
    input: &[InputEntry],
) -> Result<(Vec<Message>, Vec<ApprovalDecision>), CoreError> {
    if input.len() > super::MAX_INPUT_ITEMS {
        return Err(invalid(
            "input".into(),
            format!(
                "has {} items; at most {} are accepted in one request (continue with previous_response_id)",
                input.len(),
                super::MAX_INPUT_ITEMS
            ),
        ));
    }
    let mut messages: Vec<Message> = Vec::with_capacity(input.len());
    let mut approvals = Vec::new();
    // Whether the last message is an assistant message that function calls may join.
    let mut open_assistant = false;
    for (i, entry) in input.iter().enumerate() {
        match &entry.item {
            InputItem::Message { role, text } => {
                let role = match role {
                    InputRole::User => Role::User,
                    InputRole::System | InputRole::Developer => Role::System,
                    InputRole::Assistant => Role::Assistant,
                };
                messages.push(Message::new(role, text.clone()));
                open_assistant = role == Role::Assistant;
            }
            InputItem::FunctionCall {
                call_id,
                name,
                arguments,
            } => {
                if call_id.is_empty() {
                    return Err(invalid(format!("input[{i}].call_id"), "is required"));
                }
                let call = ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                };
                match messages.last_mut() {
                    Some(last) if open_assistant => last.tool_calls.push(call),
                    _ => {
                        messages.push(Message {
                            tool_calls: vec![call],
                            ..Message::new(Role::Assistant, "")
                        });
                        open_assistant = true;
                    }
                }
            }
            InputItem::FunctionCallOutput { call_id, output } => {
                if call_id.is_empty() {
                    return Err(invalid(format!("input[{i}].call_id"), "is required"));
                }
                messages.push(Message::tool_result(call_id, output));
                open_assistant = false;
            }
            InputItem::McpApprovalResponse {
                approval_request_id,
                approve,
                reason,
            } => {
                if approval_request_id.is_empty() {
                    return Err(invalid(
                        format!("input[{i}].approval_request_id"),
                        "is required",
                    ));
                }
                approvals.push(ApprovalDecision {
                    call_id: approval_request_id.clone(),
                    approve: *approve,
                    reason: reason.clone(),
                });
            }
        }
    }
    if messages.is_empty() && approvals.is_empty() {
        return Err(invalid("input".into(), "must contain at least one item"));
    }
    Ok((messages, approvals))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(item: InputItem) -> InputEntry {
        InputEntry {
            id: String::new(),
            item,
        }
    }

    #[test]
    fn function_calls_join_the_assistant_message_and_outputs_become_tool_results() {
        let input = vec![
            entry(InputItem::Message {
                role: InputRole::User,
                text: "weather?".into(),
            }),
            entry(InputItem::Message {
                role: InputRole::Assistant,
                text: "Looking.".into(),
            }),
            entry(InputItem::FunctionCall {
                call_id: "c1".into(),
                name: "get".into(),
                arguments: "{}".into(),
            }),
            entry(InputItem::FunctionCall {
                call_id: "c2".into(),
                name: "get".into(),
                arguments: "{\"x\":1}".into(),
            }),
            entry(InputItem::FunctionCallOutput {
                call_id: "c1".into(),
                output: "sun".into(),
            }),
            entry(InputItem::FunctionCallOutput {
                call_id: "c2".into(),
                output: "rain".into(),
            }),
            entry(InputItem::McpApprovalResponse {
                approval_request_id: "c3".into(),
                approve: false,
                reason: Some("no".into()),
            }),
        ];
        let (messages, approvals) = to_conversation(&input).unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[1].content, "Looking.");
        let ids: Vec<_> = messages[1]
            .tool_calls
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, ["c1", "c2"]);
        assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(messages[3].role, Role::Tool);
        assert_eq!(approvals.len(), 1);
        assert!(!approvals[0].approve);
    }

    #[test]
    fn empty_and_oversized_input_name_the_field() {
        let err = to_conversation(&[]).unwrap_err();
        assert!(matches!(err, CoreError::InvalidArgument { ref field, .. } if field == "input"));
        let many = vec![
            entry(InputItem::Message {
                role: InputRole::User,
                text: "x".into()
            });
            super::super::MAX_INPUT_ITEMS + 1
        ];
        let err = to_conversation(&many).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        let no_id = [entry(InputItem::FunctionCallOutput {
            call_id: String::new(),
            output: "x".into(),
        })];
        let err = to_conversation(&no_id).unwrap_err();
        assert!(
            matches!(err, CoreError::InvalidArgument { ref field, .. } if field == "input[0].call_id")
        );
    }
}
