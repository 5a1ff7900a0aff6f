//! Context budget: which stored messages still fit the model's window.
//!
//! Leading system messages are always kept; the rest is cut into groups (an assistant
//! message with tool calls together with the tool results that follow it, or any other
//! single message) and whole groups are dropped from the oldest end until the rest fits.
//! Tokens are counted with tiktoken's cl100k_base plus a fixed per-message overhead — an
//! estimate, good enough to stay under a window, not an exact bill.

use crate::model::{Message, Role};

/// Tokens each message costs beyond its text (role, separators), as OpenAI documents.
const PER_MESSAGE_OVERHEAD: u32 = 4;

/// The estimated prompt tokens of one message.
pub fn message_tokens(message: &Message) -> u32 {
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let count = |text: &str| u32::try_from(bpe.count_ordinary(text)).unwrap_or(u32::MAX);
    let mut tokens = PER_MESSAGE_OVERHEAD.saturating_add(count(&message.content));
    for text in [&message.name, &message.tool_call_id].into_iter().flatten() {
        tokens = tokens.saturating_add(count(text));
    }
    for call in &message.tool_calls {
        tokens = tokens
            .saturating_add(count(&call.id))
            .saturating_add(count(&call.name))
            .saturating_add(count(&call.arguments));
    }
    tokens
}

/// The leading system message(s) and the newest groups that fit in `budget_tokens`.
///
/// A budget of 0 means no trimming. The newest group is kept even if it alone exceeds
/// the budget (sending nothing of the conversation would be worse; the upstream then
/// reports the overflow itself).
pub fn trim_to_budget(messages: &[Message], budget_tokens: u32) -> Vec<Message> {
    if budget_tokens == 0 {
        return messages.to_vec();
    }
    let system_end = messages
        .iter()
        .position(|m| m.role != Role::System)
        .unwrap_or(messages.len());
    let (system, rest) = messages.split_at(system_end);
    let mut used: u32 = system
        .iter()
        .map(message_tokens)
        .fold(0, u32::saturating_add);

    let groups = group_starts(rest);
    // Walk groups newest first; `start` is the first kept message of `rest`.
    let mut start = rest.len();
    for (i, &group_start) in groups.iter().enumerate().rev() {
        let group_end = groups.get(i + 1).copied().unwrap_or(rest.len());
        let cost = rest[group_start..group_end]
            .iter()
            .map(message_tokens)
            .fold(0, u32::saturating_add);
        let is_newest = group_end == rest.len();
        if !is_newest && used.saturating_add(cost) > budget_tokens {
            break;
        }
        used = used.saturating_add(cost);
        start = group_start;
    }
    system.iter().chain(&rest[start..]).cloned().collect()
}

/// Indices where a group begins: tool results belong to the group before them.
fn group_starts(messages: &[Message]) -> Vec<usize> {
    messages
        .iter()
        .enumerate()
        .filter(|(i, m)| *i == 0 || m.role != Role::Tool)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::ToolCall;

    fn user(text: &str) -> Message {
        Message::new(Role::User, text)
    }
    fn assistant(text: &str) -> Message {
        Message::new(Role::Assistant, text)
    }
    fn calls(ids: &[&str]) -> Message {
        Message {
            tool_calls: ids
                .iter()
                .map(|id| ToolCall {
                    id: (*id).into(),
                    name: "search".into(),
                    arguments: "{\"q\":\"weather in paris\"}".into(),
                })
                .collect(),
            ..assistant("")
        }
    }
    fn cost(messages: &[Message]) -> u32 {
        messages.iter().map(message_tokens).sum()
    }
    fn contents(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn budget_zero_means_no_trimming() {
        let all = vec![user("a"), assistant("b"), user("c")];
        assert_eq!(trim_to_budget(&all, 0), all);
    }

    #[test]
    fn everything_fits_nothing_dropped() {
        let all = vec![Message::new(Role::System, "sys"), user("a"), assistant("b")];
        assert_eq!(trim_to_budget(&all, 10_000), all);
    }

    #[test]
    fn oldest_dropped_first_and_system_prompt_kept() {
        let system = Message::new(Role::System, "you are a helpful assistant");
        let all = vec![
            system.clone(),
            user("one one one"),
            assistant("two two two"),
            user("three three three"),
            assistant("four four four"),
        ];
        // Room for the system prompt and the last two messages only.
        let budget = cost(&[
            system,
            user("three three three"),
            assistant("four four four"),
        ]);
        let kept = trim_to_budget(&all, budget);
        assert_eq!(
            contents(&kept),
            [
                "you are a helpful assistant",
                "three three three",
                "four four four"
            ]
        );
        assert!(cost(&kept) <= budget);
        // One token less drops one more message.
        let kept = trim_to_budget(&all, budget - 1);
        assert_eq!(
            contents(&kept),
            ["you are a helpful assistant", "four four four"]
        );
    }

    #[test]
    fn tool_call_groups_are_never_split() {
        let all = vec![
            Message::new(Role::System, "sys"),
            user("what is the weather"),
            calls(&["c1", "c2"]),
            Message::tool_result("c1", "sunny and warm today"),
            Message::tool_result("c2", "no rain expected"),
            assistant("it is sunny"),
        ];
        let group_and_after = &all[2..];
        let exact = cost(&all[..1]) + cost(group_and_after);
        // The whole group fits: kept whole.
        assert_eq!(trim_to_budget(&all, exact)[1..], all[2..]);
        // Any less and the group goes as one; no orphan tool result stays behind.
        for budget in [exact - 1, exact - 5, cost(&all[..1]) + cost(&all[4..])] {
            let kept = trim_to_budget(&all, budget);
            assert_eq!(contents(&kept), ["sys", "it is sunny"], "budget {budget}");
        }
    }

    #[test]
    fn newest_group_is_kept_even_when_over_budget() {
        let all = vec![user("old"), calls(&["c1"]), Message::tool_result("c1", "x")];
        let kept = trim_to_budget(&all, 1);
        assert_eq!(kept, all[1..]);
    }

    #[test]
    fn tool_calls_count_towards_the_budget() {
        assert!(message_tokens(&calls(&["c1"])) > message_tokens(&assistant("")));
        assert_eq!(message_tokens(&assistant("")), PER_MESSAGE_OVERHEAD);
    }
}
