//! The conversation made valid for the upstream before a call: every assistant message with
//! `tool_calls` must be followed by a result for each call, and every tool result must answer
//! a call. A caller that goes on without answering a client tool call (a plain user message
//! next, or a result for another id) would otherwise break the session for good: every later
//! upstream call would carry the unanswered calls, and OpenAI answers 400.

use std::collections::HashSet;

use crate::{
    error::CoreError,
    model::{Message, Role},
};

/// The result given for a call the caller never answered.
pub(super) const NOT_ANSWERED: &str =
    "(not answered: the conversation went on without a result for this call)";

/// Closes unanswered calls with [`NOT_ANSWERED`] results (right after the results that
/// came), and refuses a tool result that answers no call of the assistant message before it.
/// `mark` (an index into `messages`) is moved past what is inserted before it.
pub(super) fn close_dangling_calls(
    messages: &mut Vec<Message>,
    mark: &mut usize,
) -> Result<usize, CoreError> {
    let mut added = 0;
    let mut i = 0;
    while i < messages.len() {
        let message = &messages[i];
        if message.role == Role::Tool {
            // A result with no tool-calling assistant message before it.
            return Err(stray(message));
        }
        if message.role != Role::Assistant || message.tool_calls.is_empty() {
            i += 1;
            continue;
        }
        let calls: Vec<String> = message.tool_calls.iter().map(|c| c.id.clone()).collect();
        let mut answered = HashSet::new();
        let mut j = i + 1;
        while j < messages.len() && messages[j].role == Role::Tool {
            let id = messages[j].tool_call_id.clone().unwrap_or_default();
            if !calls.contains(&id) || !answered.insert(id) {
                return Err(stray(&messages[j]));
            }
            j += 1;
        }
        for id in calls.iter().filter(|id| !answered.contains(*id)) {
            messages.insert(j, Message::tool_result(id.clone(), NOT_ANSWERED));
            if j < *mark {
                *mark += 1;
            }
            j += 1;
            added += 1;
        }
        i = j;
    }
    Ok(added)
}

fn stray(message: &Message) -> CoreError {
    CoreError::InvalidArgument {
        field: "messages".into(),
        reason: format!(
            "the tool result for call {:?} answers no pending tool call (it must follow the assistant message that made the call, once)",
            message.tool_call_id.as_deref().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToolCall;

    fn calls(ids: &[&str]) -> Message {
        Message {
            tool_calls: ids
                .iter()
                .map(|id| ToolCall {
                    id: (*id).into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                })
                .collect(),
            ..Message::new(Role::Assistant, "")
        }
    }

    #[test]
    fn unanswered_calls_are_closed_after_the_answered_ones() {
        let mut m = vec![
            Message::new(Role::User, "q"),
            calls(&["a", "b"]),
            Message::tool_result("b", "rb"),
            Message::new(Role::User, "next"),
        ];
        let mut mark = 4;
        assert_eq!(close_dangling_calls(&mut m, &mut mark).unwrap(), 1);
        assert_eq!(
            mark, 5,
            "what came after the insertion is still after the mark"
        );
        let shape: Vec<(Role, Option<&str>)> = m
            .iter()
            .map(|m| (m.role, m.tool_call_id.as_deref()))
            .collect();
        assert_eq!(
            shape,
            [
                (Role::User, None),
                (Role::Assistant, None),
                (Role::Tool, Some("b")),
                (Role::Tool, Some("a")),
                (Role::User, None)
            ]
        );
        assert_eq!(m[3].content, NOT_ANSWERED);
        assert_eq!(
            close_dangling_calls(&mut m, &mut mark).unwrap(),
            0,
            "idempotent"
        );
    }

    #[test]
    fn a_result_for_no_pending_call_is_refused() {
        for mut m in [
            vec![calls(&["a"]), Message::tool_result("x", "r")],
            vec![
                Message::new(Role::User, "q"),
                Message::tool_result("a", "r"),
            ],
            vec![
                calls(&["a"]),
                Message::tool_result("a", "r"),
                Message::tool_result("a", "r"),
            ],
        ] {
            let e = close_dangling_calls(&mut m, &mut 0).unwrap_err();
            assert!(
                e.to_string().contains("answers no pending tool call"),
                "{e}"
            );
        }
    }
}
