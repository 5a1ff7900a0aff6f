//! The pure state machine that turns the `data:` payloads of a `chat.completion.chunk` stream
//! into [`LlmEvent`]s: content as it arrives, then the whole [`Completion`].
//!
//! No I/O here: [`Assembler::push`] takes one event's data, [`Assembler::finish`] closes the
//! answer at `[DONE]` or at the end of the body. Tool calls are assembled by `index` (the id and
//! name come in the first fragment of each index, arguments in any number of fragments).

use super::{
    Completion, FinishReason, LlmError,
    answer::clip,
    wire::{ChunkDto, ToolCallDeltaDto, finish_reason},
};
use crate::model::{ToolCall, Usage};

/// What one `data:` payload meant.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing to tell the caller yet (role delta, usage chunk, tool-call fragment…).
    Nothing,
    /// Text to pass on now.
    Content(String),
    /// `[DONE]`: call [`Assembler::finish`] with `saw_done = true`.
    Done,
}

/// A tool call still being assembled.
#[derive(Debug, Default)]
struct PartialCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// Accumulates one streamed answer.
#[derive(Debug, Default)]
pub struct Assembler {
    content: String,
    refusal: String,
    calls: Vec<PartialCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the data of one event (multi-line data already joined with `\n`).
    pub fn push(&mut self, data: &str) -> Result<Step, LlmError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Step::Nothing);
        }
        if data == "[DONE]" {
            return Ok(Step::Done);
        }
        let chunk: ChunkDto<'_> = serde_json::from_str(data).map_err(|e| {
            LlmError::BadResponse(format!("bad stream chunk ({e}): {}", clip(data, 200)))
        })?;
        if let Some(error) = chunk.error {
            return Err(LlmError::Stream(error.message().to_owned()));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let mut text = String::new();
        // Only the first choice is ours (we never ask for `n > 1`).
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content {
                    text.push_str(&content.0);
                }
                if let Some(refusal) = delta.refusal {
                    self.refusal.push_str(&refusal.0);
                }
                for call in delta.tool_calls {
                    self.push_call(call);
                }
            }
            if let Some(reason) = choice.finish_reason.filter(|r| !r.0.is_empty()) {
                self.finish = Some(finish_reason(&reason.0));
            }
        }
        if text.is_empty() {
            return Ok(Step::Nothing);
        }
        self.content.push_str(&text);
        Ok(Step::Content(text))
    }

    fn push_call(&mut self, delta: ToolCallDeltaDto<'_>) {
        let id = delta.id.map(|t| t.0).filter(|id| !id.is_empty());
        // Servers that omit `index` start a new call with each new id.
        let index = match (delta.index, &id) {
            (Some(i), _) => i,
            (None, Some(id)) if !self.calls.iter().any(|c| c.id == *id) => {
                self.calls.iter().map(|c| c.index + 1).max().unwrap_or(0)
            }
            (None, Some(id)) => self
                .calls
                .iter()
                .find(|c| c.id == *id)
                .map_or(0, |c| c.index),
            (None, None) => self.calls.last().map_or(0, |c| c.index),
        };
        let pos = match self.calls.iter().position(|c| c.index == index) {
            Some(pos) => pos,
            None => {
                self.calls.push(PartialCall {
                    index,
                    ..PartialCall::default()
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos];
        if let Some(id) = id
            && call.id.is_empty()
        {
            call.id = id.into_owned();
        }
        if let Some(f) = delta.function {
            if let Some(name) = f.name
                && call.name.is_empty()
            {
                call.name = name.0.into_owned();
            }
            if let Some(args) = f.arguments {
                call.arguments.push_str(&args.0);
            }
        }
    }

    /// Closes the answer: at `[DONE]` (`saw_done`) or when the body ended. A body that ended
    /// before both `[DONE]` and a `finish_reason` was cut, which is an error.
    pub fn finish(&mut self, saw_done: bool) -> Result<Completion, LlmError> {
        let tool_calls: Vec<ToolCall> = {
            let mut calls = std::mem::take(&mut self.calls);
            calls.sort_by_key(|c| c.index);
            calls.into_iter().map(complete_call).collect()
        };
        let finish_reason = match self.finish.take() {
            Some(reason) => reason,
            None if !saw_done => {
                return Err(LlmError::Stream(
                    "the upstream closed the stream before it finished".into(),
                ));
            }
            // `[DONE]` without a finish_reason: the answer is whole; say what it holds.
            None if tool_calls.is_empty() => FinishReason::Stop,
            None => FinishReason::ToolCalls,
        };
        Ok(Completion {
            content: std::mem::take(&mut self.content),
            tool_calls,
            finish_reason,
            usage: self.usage.take(),
            refusal: Some(std::mem::take(&mut self.refusal)).filter(|r| !r.is_empty()),
        })
    }
}

/// A whole call: a missing id becomes `call_<index>`, empty arguments become `{}`.
fn complete_call(c: PartialCall) -> ToolCall {
    ToolCall {
        id: if c.id.is_empty() {
            format!("call_{}", c.index)
        } else {
            c.id
        },
        name: c.name,
        arguments: if c.arguments.trim().is_empty() {
            "{}".into()
        } else {
            c.arguments
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[&str]) -> (Vec<String>, Result<Completion, LlmError>) {
        let mut a = Assembler::new();
        let mut texts = Vec::new();
        for d in data {
            match a.push(d) {
                Ok(Step::Content(t)) => texts.push(t),
                Ok(Step::Nothing) => {}
                Ok(Step::Done) => return (texts, a.finish(true)),
                Err(e) => return (texts, Err(e)),
            }
        }
        (texts, a.finish(false))
    }

    const ROLE: &str = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#;

    #[test]
    fn text_stream_with_usage_chunk_and_done() {
        let (texts, done) = run(&[
            ROLE,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo \"wörld\""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "[DONE]",
        ]);
        assert_eq!(texts, ["Hel", "lo \"wörld\""]);
        let done = done.unwrap();
        assert_eq!(done.content, "Hello \"wörld\"");
        assert_eq!(done.finish_reason, FinishReason::Stop);
        assert_eq!(
            done.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                total_tokens: 5,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn null_content_and_unknown_fields_are_ignored() {
        let (texts, done) = run(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"hm"},"x":1}],"system_fingerprint":null}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"length"}]}"#,
            "[DONE]",
        ]);
        assert_eq!(texts, ["ok"]);
        let done = done.unwrap();
        assert_eq!(done.finish_reason, FinishReason::Length);
        assert_eq!(done.usage, None);
    }

    #[test]
    fn two_parallel_tool_calls_assemble_by_index() {
        let (texts, done) = run(&[
            ROLE,
            r#"{"choices":[{"index":0,"delta":{"content":"","tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"7f3e-x","type":"function","function":{"name":"time","arguments":"{\"tz\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":\"UTC\"}"}}]},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ]);
        assert!(texts.is_empty());
        let done = done.unwrap();
        assert_eq!(done.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            done.tool_calls,
            [
                ToolCall {
                    id: "call_A".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into()
                },
                ToolCall {
                    id: "7f3e-x".into(),
                    name: "time".into(),
                    arguments: r#"{"tz":"UTC"}"#.into()
                },
            ]
        );
    }

    #[test]
    fn tool_calls_without_index_or_arguments() {
        let (_, done) = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]);
        let calls = done.unwrap().tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].arguments.as_str()),
            ("a", "{}")
        );
        assert_eq!(calls[1].name, "g");
    }

    #[test]
    fn mid_stream_error_object_is_a_stream_error() {
        let (texts, done) = run(&[
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"error":{"message":"overloaded, try later","type":"server_error","code":null}}"#,
        ]);
        assert_eq!(texts, ["a"]);
        assert!(matches!(done, Err(LlmError::Stream(m)) if m == "overloaded, try later"));
    }

    #[test]
    fn stream_cut_before_finish_is_an_error() {
        let (_, done) = run(&[ROLE, r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#]);
        assert!(
            matches!(done, Err(LlmError::Stream(m)) if m == "the upstream closed the stream before it finished")
        );
    }

    #[test]
    fn finish_reason_without_done_is_whole() {
        let (_, done) =
            run(&[r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#]);
        assert_eq!(done.unwrap().content, "a");
    }

    #[test]
    fn done_without_finish_reason_is_not_an_error() {
        let (_, done) = run(&[
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#,
            "[DONE]",
        ]);
        assert_eq!(done.unwrap().finish_reason, FinishReason::Stop);
    }

    #[test]
    fn garbage_is_a_bad_response() {
        let (_, done) = run(&["{not json"]);
        assert!(matches!(done, Err(LlmError::BadResponse(_))));
    }

    #[test]
    fn other_choices_are_ignored() {
        let (texts, _) = run(&[
            r#"{"choices":[{"index":1,"delta":{"content":"x"}},{"index":0,"delta":{"content":"y"}}]}"#,
        ]);
        assert_eq!(texts, ["y"]);
    }
}
