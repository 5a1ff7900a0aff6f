//! Token estimates, used only when the upstream reports no usage (tiktoken's cl100k
//! encoding, loaded lazily on first use so servers whose upstream reports usage never pay
//! for it).

use crate::model::{Message, Usage};

/// Tokens of a text.
pub fn count(text: &str) -> u32 {
    let bpe = tiktoken_rs::cl100k_base_singleton();
    u32::try_from(bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX)
}

/// Tokens of a message list, with OpenAI's per-message overhead (about 4 per message).
pub fn count_messages(messages: &[Message]) -> u32 {
    messages
        .iter()
        .map(|m| {
            let calls: u32 = m
                .tool_calls
                .iter()
                .map(|c| count(&c.name) + count(&c.arguments))
                .sum();
            4 + count(&m.content) + calls
        })
        .sum::<u32>()
        + 3
}

/// An estimate of one upstream call's usage, the prompt's messages counted already
/// (`sessions::TokenCounter`; `message_tokens` each), plus the reply's priming (3).
pub fn estimate_counted(
    prompt_counts: &[u32],
    completion_text: &str,
    completion_calls: &[crate::model::ToolCall],
) -> Usage {
    let prompt_tokens = prompt_counts.iter().copied().fold(3, u32::saturating_add);
    let completion_tokens = completion_calls
        .iter()
        .map(|c| count(&c.name).saturating_add(count(&c.arguments)))
        .fold(count(completion_text), u32::saturating_add);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens.saturating_add(completion_tokens),
        ..Usage::default()
    }
}

/// An estimate of one upstream call's usage.
pub fn estimate(
    prompt: &[Message],
    completion_text: &str,
    completion_calls: &[crate::model::ToolCall],
) -> Usage {
    let prompt_tokens = count_messages(prompt);
    let completion_tokens = count(completion_text)
        + completion_calls
            .iter()
            .map(|c| count(&c.name) + count(&c.arguments))
            .sum::<u32>();
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    #[test]
    fn counts_grow_with_text() {
        assert_eq!(count(""), 0);
        assert!(count("hello world") >= 2);
        let short = count_messages(&[Message::new(Role::User, "hi")]);
        let long = count_messages(&[Message::new(Role::User, "hi ".repeat(100))]);
        assert!(long > short + 50, "{short} {long}");
    }
}
