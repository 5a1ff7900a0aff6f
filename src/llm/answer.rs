//! Whole upstream bodies into core results: a non-streamed `chat.completion` into a
//! [`Completion`], an error status body into the upstream's message and code.

use super::{
    Completion, FinishReason, LlmError,
    wire::{CompletionDto, ErrorBodyDto, finish_reason},
};
use crate::model::ToolCall;

/// Parses `choices[0].message` (content may be null), its tool calls, finish_reason and usage.
/// UTF-8 is checked once for the whole body, then the text is parsed (`from_slice` checks
/// each string on its own).
pub(crate) fn parse_completion(body: &[u8]) -> Result<Completion, LlmError> {
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<CompletionDto>(text),
        Err(_) => serde_json::from_slice(body),
    };
    let dto = parsed.map_err(|e| {
        LlmError::BadResponse(format!(
            "not a chat completion ({e}): {}",
            clip(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    let Some(choice) = dto.choices.into_iter().next() else {
        return Err(LlmError::BadResponse(match dto.error {
            Some(error) => format!("the upstream sent an error: {}", error.message()),
            None => "the answer has no choices".into(),
        }));
    };
    let tool_calls: Vec<ToolCall> = choice
        .message
        .tool_calls
        .into_iter()
        .enumerate()
        .map(|(i, call)| ToolCall {
            id: call
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{i}")),
            name: call.function.name.unwrap_or_default(),
            arguments: call
                .function
                .arguments
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(|| "{}".into()),
        })
        .collect();
    let finish_reason = match choice.finish_reason.as_deref() {
        Some(reason) if !reason.is_empty() => finish_reason(reason),
        _ if tool_calls.is_empty() => FinishReason::Stop,
        _ => FinishReason::ToolCalls,
    };
    Ok(Completion {
        content: choice.message.content.unwrap_or_default(),
        tool_calls,
        finish_reason,
        usage: dto.usage.map(Into::into),
        refusal: choice.message.refusal.filter(|r| !r.is_empty()),
    })
}

/// What an error answer says: its message, its code and the parameter it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub message: String,
    pub code: Option<String>,
    pub param: Option<String>,
}

/// The message, code and param of an error answer: OpenAI's
/// `{"error":{"message","type","param","code"}}`, `{"error":"…"}`, `{"message":"…"}`, else
/// the body text (cut to 500 bytes).
pub(crate) fn error_body(body: &[u8]) -> ErrorBody {
    if let Ok(dto) = serde_json::from_slice::<ErrorBodyDto>(body) {
        if let Some(error) = dto.error {
            return ErrorBody {
                message: error.message().to_owned(),
                code: error.code(),
                param: error.param(),
            };
        }
        if let Some(message) = dto.message {
            return ErrorBody {
                message,
                code: dto.kind,
                param: None,
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = match clip(text, 500) {
        "" => "(empty body)".to_owned(),
        clipped if clipped.len() < text.len() => format!("{clipped}…"),
        clipped => clipped.to_owned(),
    };
    ErrorBody {
        message,
        code: None,
        param: None,
    }
}

/// The message and code of an error answer (see [`error_body`]).
pub(crate) fn error_message(body: &[u8]) -> (String, Option<String>) {
    let ErrorBody { message, code, .. } = error_body(body);
    (message, code)
}

/// At most `max` bytes of `s`, cut on a char boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_with_null_content_and_tool_calls() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"type":"function","function":{"name":"g","arguments":""}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12},"extra":true}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.content, "");
        assert_eq!(c.finish_reason, FinishReason::ToolCalls);
        assert_eq!(c.tool_calls[0].arguments, r#"{"a":1}"#);
        assert_eq!(
            (
                c.tool_calls[1].id.as_str(),
                c.tool_calls[1].arguments.as_str()
            ),
            ("call_1", "{}")
        );
        assert_eq!(c.usage.unwrap().total_tokens, 12);
    }

    #[test]
    fn usage_details_and_refusal() {
        let body = br#"{"choices":[{"message":{"content":null,"refusal":"no"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":null},"completion_tokens_details":{"reasoning_tokens":4}}}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.refusal.as_deref(), Some("no"));
        let u = c.usage.unwrap();
        assert_eq!(u.prompt_details.unwrap().cached_tokens, 3);
        assert_eq!(u.completion_details.unwrap().reasoning_tokens, 4);
        let plain = parse_completion(br#"{"choices":[{"message":{"content":"hi","refusal":null}}],"usage":{"prompt_tokens":1}}"#).unwrap();
        assert_eq!(plain.refusal, None);
        assert_eq!(plain.usage.unwrap().prompt_details, None);
    }

    #[test]
    fn completion_without_usage_or_finish_reason() {
        let c = parse_completion(br#"{"choices":[{"message":{"content":"hi"}}]}"#).unwrap();
        assert_eq!(
            (c.content.as_str(), c.finish_reason, c.usage),
            ("hi", FinishReason::Stop, None)
        );
    }

    #[test]
    fn unparseable_completions_are_bad_responses() {
        for body in [
            &b"{\"choices\": ["[..],
            b"<html>",
            br#"{"choices":[]}"#,
            br#"{"error":"nope"}"#,
        ] {
            assert!(matches!(
                parse_completion(body),
                Err(LlmError::BadResponse(_))
            ));
        }
    }

    #[test]
    fn error_bodies() {
        let openai = br#"{"error":{"message":"Invalid 'messages'","type":"invalid_request_error","param":null,"code":"bad_msgs"}}"#;
        assert_eq!(
            error_message(openai),
            ("Invalid 'messages'".into(), Some("bad_msgs".into()))
        );
        assert_eq!(error_body(openai).param, None, "a null param is none");
        let named = br#"{"error":{"message":"bad","type":"invalid_request_error","param":"messages[1].content","code":null}}"#;
        assert_eq!(
            error_body(named),
            ErrorBody {
                message: "bad".into(),
                code: Some("invalid_request_error".into()),
                param: Some("messages[1].content".into()),
            }
        );
        let typed = br#"{"error":{"message":"m","type":"server_error","code":null}}"#;
        assert_eq!(
            error_message(typed),
            ("m".into(), Some("server_error".into()))
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#).0,
            "model not found"
        );
        let vllm =
            br#"{"object":"error","message":"too long","type":"BadRequestError","code":400}"#;
        assert_eq!(
            error_message(vllm),
            ("too long".into(), Some("BadRequestError".into()))
        );
        assert_eq!(error_message(b"  Bad Gateway\n").0, "Bad Gateway");
        assert_eq!(error_message(b"").0, "(empty body)");
        let long = "é".repeat(400);
        let (m, _) = error_message(long.as_bytes());
        assert!(m.len() <= 503 && m.ends_with('…'));
    }
}
