//! OpenAI response shapes rendered from the service's answers: the `chat.completion` object,
//! and the `chat.completion.chunk` stream as a pure state machine ([`ChunkRenderer::push`]
//! takes one `ChatEvent` and returns the SSE data lines it becomes).

use serde::Serialize;

use crate::pb::{self, chat_event::Event};

/// `system_fingerprint` of every answer.
pub const FINGERPRINT: &str = concat!("mcp-chat-", env!("CARGO_PKG_VERSION"));

#[derive(Serialize)]
pub struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: OutMessage<'a>,
    finish_reason: &'static str,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    /// Extension: the server-side calls among `tool_calls` that wait for approval.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mcp_approval_requests: Vec<OutApproval<'a>>,
}

/// An `mcp_approval_requests` entry (the Responses API's `mcp_approval_request` item).
#[derive(Serialize)]
struct OutApproval<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    server_label: &'a str,
    name: &'a str,
    arguments: &'a str,
}

impl<'a> From<&'a pb::ApprovalRequired> for OutApproval<'a> {
    fn from(a: &'a pb::ApprovalRequired) -> Self {
        Self {
            id: &a.id,
            kind: "mcp_approval_request",
            server_label: &a.server_label,
            name: &a.name,
            arguments: &a.arguments,
        }
    }
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize, Clone, Copy, Default)]
pub struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
    /// Only when the upstream reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Serialize, Clone, Copy)]
struct PromptDetails {
    cached_tokens: u32,
    audio_tokens: u32,
}

#[derive(Serialize, Clone, Copy)]
struct CompletionDetails {
    reasoning_tokens: u32,
    audio_tokens: u32,
    accepted_prediction_tokens: u32,
    rejected_prediction_tokens: u32,
}

impl From<&pb::Usage> for Usage {
    fn from(u: &pb::Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: u.prompt_tokens_details.map(|d| PromptDetails {
                cached_tokens: d.cached_tokens,
                audio_tokens: d.audio_tokens,
            }),
            completion_tokens_details: u.completion_tokens_details.map(|d| CompletionDetails {
                reasoning_tokens: d.reasoning_tokens,
                audio_tokens: d.audio_tokens,
                accepted_prediction_tokens: d.accepted_prediction_tokens,
                rejected_prediction_tokens: d.rejected_prediction_tokens,
            }),
        }
    }
}

pub fn finish_reason(code: i32) -> &'static str {
    match pb::FinishReason::try_from(code) {
        // The tool-call limit cut the turn short, as max_tokens cuts an answer.
        Ok(pb::FinishReason::Length | pb::FinishReason::ToolIterationLimit) => "length",
        Ok(pb::FinishReason::ToolCalls) => "tool_calls",
        Ok(pb::FinishReason::ContentFilter) => "content_filter",
        Ok(pb::FinishReason::Stop | pb::FinishReason::Unspecified) | Err(_) => "stop",
    }
}

fn tool_calls(calls: &[pb::ToolCall], indexed: bool) -> Vec<OutToolCall<'_>> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| OutToolCall {
            index: indexed.then(|| u32::try_from(i).unwrap_or(u32::MAX)),
            id: &c.id,
            kind: "function",
            function: OutFunction {
                name: &c.name,
                arguments: &c.arguments,
            },
        })
        .collect()
}

/// The `chat.completion` object for a whole answer.
pub fn completion(r: &pb::ChatResponse) -> Completion<'_> {
    let (content, calls, refusal) = match &r.message {
        Some(m) => (
            m.content.as_str(),
            m.tool_calls.as_slice(),
            m.refusal.as_deref().filter(|r| !r.is_empty()),
        ),
        None => ("", &[][..], None),
    };
    Completion {
        id: &r.id,
        object: "chat.completion",
        created: r.created,
        model: &r.model,
        system_fingerprint: FINGERPRINT,
        choices: [Choice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: if content.is_empty() && (!calls.is_empty() || refusal.is_some()) {
                    None
                } else {
                    Some(content)
                },
                refusal,
                tool_calls: tool_calls(calls, false),
                mcp_approval_requests: r.approval_requests.iter().map(OutApproval::from).collect(),
            },
            finish_reason: finish_reason(r.finish_reason),
            logprobs: None,
        }],
        usage: r.usage.as_ref().map(Usage::from).unwrap_or_default(),
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
    logprobs: Option<()>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mcp_approval_requests: Vec<OutApproval<'a>>,
}

/// One piece of SSE output.
#[derive(Debug, Clone, PartialEq)]
pub enum Sse {
    /// `data: <json>`.
    Data(String),
    /// `: <text>`: a comment, ignored by SDKs (used for opt-in tool-call announcements).
    Comment(String),
}

/// Turns `ChatEvent`s into `chat.completion.chunk`s.
pub struct ChunkRenderer {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    expose_tools: bool,
    usage: Option<Usage>,
    client_calls: u32,
    /// A content chunk's JSON before and after its text, rendered once at `start`: a
    /// content delta (nearly every chunk of a stream) is these around its escaped text,
    /// the same bytes serde writes for the whole chunk.
    content_frame: Option<(String, String)>,
}

impl ChunkRenderer {
    pub fn new(include_usage: bool, expose_tools: bool) -> Self {
        Self {
            id: String::new(),
            model: String::new(),
            created: 0,
            include_usage,
            expose_tools,
            usage: None,
            client_calls: 0,
            content_frame: None,
        }
    }

    /// The content chunk's JSON split around an empty text (see `content_frame`).
    fn content_frame(&self) -> Option<(String, String)> {
        let whole = self.chunk(
            Delta {
                content: Some(""),
                ..Delta::default()
            },
            None,
        );
        // Inside the id or the model a quote is escaped, so the last match is the field.
        const FIELD: &str = "\"content\":\"\"";
        let at = whole.rfind(FIELD)?;
        let (before, after) = whole.split_at(at + FIELD.len() - 2);
        Some((before.to_string(), after[2..].to_string()))
    }

    /// A content delta's chunk.
    fn content_chunk(&self, text: &str) -> String {
        match &self.content_frame {
            Some((before, after)) => {
                let mut out = Vec::with_capacity(before.len() + text.len() + after.len() + 8);
                out.extend_from_slice(before.as_bytes());
                if serde_json::to_writer(&mut out, text).is_err() {
                    return self.content_chunk_whole(text);
                }
                out.extend_from_slice(after.as_bytes());
                String::from_utf8(out).unwrap_or_else(|_| self.content_chunk_whole(text))
            }
            None => self.content_chunk_whole(text),
        }
    }

    fn content_chunk_whole(&self, text: &str) -> String {
        self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }

    fn chunk(&self, delta: Delta<'_>, finish_reason: Option<&'static str>) -> String {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: FINGERPRINT,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    }

    /// One tool call for the caller to answer, as the next indexed `tool_calls` delta.
    fn tool_call_chunk(
        &mut self,
        id: &str,
        name: &str,
        arguments: &str,
        mcp_approval_requests: Vec<OutApproval<'_>>,
    ) -> Sse {
        let index = self.client_calls;
        self.client_calls += 1;
        let tool_calls = vec![OutToolCall {
            index: Some(index),
            id,
            kind: "function",
            function: OutFunction { name, arguments },
        }];
        Sse::Data(self.chunk(
            Delta {
                tool_calls,
                mcp_approval_requests,
                ..Delta::default()
            },
            None,
        ))
    }

    pub fn push(&mut self, event: &pb::ChatEvent) -> Vec<Sse> {
        let Some(event) = &event.event else {
            return Vec::new();
        };
        match event {
            Event::Start(s) => {
                self.id.clone_from(&s.id);
                self.model.clone_from(&s.model);
                self.created = s.created;
                self.content_frame = self.content_frame();
                vec![Sse::Data(self.chunk(
                    Delta {
                        role: Some("assistant"),
                        content: Some(""),
                        ..Delta::default()
                    },
                    None,
                ))]
            }
            Event::Content(c) => vec![Sse::Data(self.content_chunk(&c.text))],
            Event::ClientToolCall(call) => {
                vec![self.tool_call_chunk(&call.id, &call.name, &call.arguments, Vec::new())]
            }
            Event::ToolCallStarted(t) if self.expose_tools => vec![Sse::Comment(format!(
                "mcp_tool_call_started {}",
                serde_json::json!({"id": t.id, "name": t.name, "server": t.server, "tool": t.tool, "arguments": t.arguments})
            ))],
            Event::ToolCallFinished(t) if self.expose_tools => vec![Sse::Comment(format!(
                "mcp_tool_call_finished {}",
                serde_json::json!({"id": t.id, "name": t.name, "ok": t.ok, "duration_ms": t.duration_ms})
            ))],
            Event::ToolCallProgress(t) if self.expose_tools => vec![Sse::Comment(format!(
                "mcp_tool_call_progress {}",
                serde_json::json!({"id": t.id, "progress": t.progress, "total": t.total, "message": t.message})
            ))],
            // A server-side call waiting for approval: a tool call the caller answers.
            Event::ApprovalRequired(a) => vec![self.tool_call_chunk(
                &a.id,
                &a.function_name,
                &a.arguments,
                vec![OutApproval::from(a)],
            )],
            // This API cannot answer: its requests do not ask for these, so none come.
            Event::ToolCallStarted(_)
            | Event::ToolCallFinished(_)
            | Event::ToolCallProgress(_)
            | Event::ElicitationRequired(_) => Vec::new(),
            Event::Usage(u) => {
                self.usage = Some(Usage::from(u));
                Vec::new()
            }
            Event::Response(r) => {
                let mut out = Vec::with_capacity(4);
                // A refusal arrives whole with the answer: one `refusal` delta before the end.
                if let Some(refusal) = r
                    .message
                    .as_ref()
                    .and_then(|m| m.refusal.as_deref())
                    .filter(|r| !r.is_empty())
                {
                    out.push(Sse::Data(self.chunk(
                        Delta {
                            refusal: Some(refusal),
                            ..Delta::default()
                        },
                        None,
                    )));
                }
                out.push(Sse::Data(
                    self.chunk(Delta::default(), Some(finish_reason(r.finish_reason))),
                ));
                if self.include_usage {
                    let usage = self
                        .usage
                        .or_else(|| r.usage.as_ref().map(Usage::from))
                        .unwrap_or_default();
                    let chunk = Chunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        system_fingerprint: FINGERPRINT,
                        choices: Vec::new(),
                        usage: Some(usage),
                    };
                    out.push(Sse::Data(serde_json::to_string(&chunk).unwrap_or_default()));
                }
                out.push(Sse::Data("[DONE]".into()));
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn ev(e: Event) -> pb::ChatEvent {
        pb::ChatEvent { event: Some(e) }
    }

    fn data(out: &[Sse]) -> Vec<Value> {
        out.iter()
            .filter_map(|s| match s {
                Sse::Data(d) if d != "[DONE]" => Some(serde_json::from_str(d).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_content_chunk_is_what_serde_writes_for_the_whole_chunk() {
        let mut r = ChunkRenderer::new(false, false);
        r.push(&ev(Event::Start(pb::StreamStart {
            id: "chatcmpl-\"content\":\"\"x".into(),
            model: "m\u{e9}\"".into(),
            created: 42,
            ..Default::default()
        })));
        assert!(r.content_frame.is_some());
        for text in [
            "",
            "plain",
            "quote \" and \\ and \n and \u{1} and \u{1F600}",
            "\"content\":\"\"",
        ] {
            assert_eq!(
                r.content_chunk(text),
                r.content_chunk_whole(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn renders_a_stream_like_openai() {
        let mut r = ChunkRenderer::new(true, false);
        let mut out = Vec::new();
        out.extend(r.push(&ev(Event::Start(pb::StreamStart {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            session_id: None,
            created: 7,
        }))));
        out.extend(r.push(&ev(Event::Content(pb::ContentDelta { text: "Hel".into() }))));
        out.extend(r.push(&ev(Event::ToolCallStarted(pb::ToolCallStarted::default()))));
        out.extend(r.push(&ev(Event::Content(pb::ContentDelta { text: "lo".into() }))));
        out.extend(r.push(&ev(Event::Usage(pb::Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            total_tokens: 5,
            estimated: false,
            ..Default::default()
        }))));
        out.extend(r.push(&ev(Event::Response(pb::ChatResponse {
            finish_reason: pb::FinishReason::Stop.into(),
            ..Default::default()
        }))));
        assert_eq!(out.last(), Some(&Sse::Data("[DONE]".into())));
        let chunks = data(&out);
        assert_eq!(
            chunks.len(),
            5,
            "role, 2 contents, finish, usage: {chunks:?}"
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(chunks[1]["object"], "chat.completion.chunk");
        assert_eq!(chunks[1]["id"], "chatcmpl-1");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[4]["choices"].as_array().unwrap().len(), 0);
        assert_eq!(chunks[4]["usage"]["total_tokens"], 5);
    }

    #[test]
    fn refusals_and_usage_details_are_rendered_when_present() {
        let answer = pb::ChatResponse {
            message: Some(pb::Message {
                refusal: Some("I can't help with that.".into()),
                ..Default::default()
            }),
            usage: Some(pb::Usage {
                prompt_tokens: 9,
                prompt_tokens_details: Some(pb::usage::PromptTokensDetails {
                    cached_tokens: 8,
                    audio_tokens: 0,
                }),
                ..Default::default()
            }),
            finish_reason: pb::FinishReason::Stop.into(),
            ..Default::default()
        };
        let whole = serde_json::to_value(completion(&answer)).unwrap();
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["refusal"], "I can't help with that.");
        assert_eq!(message["content"], Value::Null);
        assert_eq!(whole["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
        assert!(whole["usage"].get("completion_tokens_details").is_none());

        let mut r = ChunkRenderer::new(true, false);
        let chunks = data(&r.push(&ev(Event::Response(answer))));
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["refusal"],
            "I can't help with that."
        );
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            chunks[2]["usage"]["prompt_tokens_details"]["cached_tokens"],
            8
        );

        let plain = serde_json::to_value(completion(&pb::ChatResponse::default())).unwrap();
        assert_eq!(plain["choices"][0]["message"]["refusal"], Value::Null);
        assert!(plain["usage"].get("prompt_tokens_details").is_none());
    }

    #[test]
    fn the_tool_iteration_limit_is_length() {
        assert_eq!(
            finish_reason(pb::FinishReason::ToolIterationLimit.into()),
            "length"
        );
        assert_eq!(finish_reason(pb::FinishReason::Length.into()), "length");
        assert_eq!(finish_reason(pb::FinishReason::Stop.into()), "stop");
    }

    #[test]
    fn client_tool_calls_are_indexed_deltas_and_tool_events_are_opt_in_comments() {
        let mut r = ChunkRenderer::new(false, true);
        let call = |id: &str| {
            ev(Event::ClientToolCall(pb::ToolCall {
                id: id.into(),
                name: "f".into(),
                arguments: "{}".into(),
            }))
        };
        let first = data(&r.push(&call("a")));
        let second = data(&r.push(&call("b")));
        assert_eq!(first[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(
            second[0]["choices"][0]["delta"]["tool_calls"][0]["index"],
            1
        );
        assert_eq!(
            second[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        let announced = r.push(&ev(Event::ToolCallStarted(pb::ToolCallStarted {
            name: "echo".into(),
            ..Default::default()
        })));
        assert!(
            matches!(&announced[..], [Sse::Comment(c)] if c.starts_with("mcp_tool_call_started "))
        );
        let done = r.push(&ev(Event::Response(pb::ChatResponse {
            finish_reason: pb::FinishReason::ToolCalls.into(),
            ..Default::default()
        })));
        assert_eq!(data(&done)[0]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(done.len(), 2, "no usage chunk without include_usage");
    }
}
