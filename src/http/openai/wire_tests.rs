//! Snapshot tests of the OpenAI wire translations: request JSON → proto `ChatRequest`, and
//! the service's answers and events → `chat.completion` / `chat.completion.chunk` JSON and
//! error envelopes. A change to a translation shows as a diff of `snapshots/*.snap` to
//! review (`cargo insta review`, or `INSTA_UPDATE=always` and `git diff`). Ids, timestamps
//! and the fingerprint (it carries the version) are redacted.

use std::time::Duration;

use insta::{assert_debug_snapshot, assert_json_snapshot};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use super::{
    render::{self, ChunkRenderer, Sse},
    request::CompletionRequest,
};
use crate::{
    http::{ApiError, extract::parse},
    pb::{self, chat_event::Event, status::status},
};

fn to_proto(body: Value) -> Result<pb::ChatRequest, ApiError> {
    parse::<CompletionRequest>(body.to_string().as_bytes())?.into_proto(Some("s-1".into()))
}

/// An error as the client sees it: the HTTP status and the envelope.
fn error_json(e: &ApiError) -> Value {
    json!({ "status": e.status.as_u16(), "body": e.body_json() })
}

fn ev(e: Event) -> pb::ChatEvent {
    pb::ChatEvent { event: Some(e) }
}

/// SSE output as JSON: data chunks parsed, `[DONE]` and comments as strings.
fn sse_json(out: &[Sse]) -> Vec<Value> {
    out.iter()
        .map(|piece| match piece {
            Sse::Data(d) => serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.clone())),
            Sse::Comment(c) => Value::String(format!(": {c}")),
        })
        .collect()
}

#[test]
fn request_plain_text_with_params() {
    let r = to_proto(json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello", "name": "ann"}
        ],
        "temperature": 0.5, "top_p": 0.9, "max_tokens": 64, "stop": ["END", "STOP"],
        "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.2, "user": "u-1"
    }));
    assert_debug_snapshot!(r);
}

#[test]
fn request_with_tools_and_tool_choice() {
    let r = to_proto(json!({
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "current weather", "strict": true,
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 64}},
                           "required": ["city"]}
        }}],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"temp": {"type": "number"}}}
        }}
    }));
    assert_debug_snapshot!(r);
}

#[test]
fn request_with_client_tool_round_trip() {
    let r = to_proto(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "what time is it?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{\"tz\":\"UTC\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}
        ],
        "tool_choice": {"type": "function", "function": {"name": "clock"}},
        "stream": true, "stream_options": {"include_usage": true}
    }));
    assert_debug_snapshot!(r);
}

#[test]
fn request_with_content_parts() {
    let r = to_proto(json!({
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "rule one"}]},
            {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}
        ],
        "max_completion_tokens": 9, "stop": "END", "response_format": {"type": "json_object"}
    }));
    assert_debug_snapshot!(r);
}

#[test]
fn request_errors() {
    let cases = [
        json!({"messages": [], "n": 2}),
        json!({"messages": [{"role": "robot", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        json!({"messages": [], "tool_choice": "sometimes"}),
        json!({"messages": [], "temperature": "hot"}),
    ];
    let errors: Vec<Value> = cases
        .into_iter()
        .map(|body| error_json(&to_proto(body).unwrap_err()))
        .collect();
    assert_json_snapshot!(errors);
}

fn answer(message: pb::Message, finish: pb::FinishReason) -> pb::ChatResponse {
    pb::ChatResponse {
        id: "chatcmpl-123".into(),
        model: "gpt-4o-mini".into(),
        created: 1_700_000_000,
        message: Some(message),
        finish_reason: finish.into(),
        usage: Some(pb::Usage {
            prompt_tokens: 12,
            completion_tokens: 5,
            total_tokens: 17,
            estimated: false,
            ..Default::default()
        }),
        session_id: Some("s-1".into()),
        ..Default::default()
    }
}

#[test]
fn completion_with_text() {
    let r = answer(
        pb::Message {
            role: pb::Role::Assistant.into(),
            content: "Hello!".into(),
            ..Default::default()
        },
        pb::FinishReason::Stop,
    );
    assert_json_snapshot!(render::completion(&r), {
        ".id" => "[id]", ".created" => "[created]", ".system_fingerprint" => "[fingerprint]"
    });
}

#[test]
fn completion_with_client_tool_calls() {
    let r = answer(
        pb::Message {
            role: pb::Role::Assistant.into(),
            tool_calls: vec![pb::ToolCall {
                id: "call_1".into(),
                name: "clock".into(),
                arguments: "{\"tz\":\"UTC\"}".into(),
            }],
            ..Default::default()
        },
        pb::FinishReason::ToolCalls,
    );
    assert_json_snapshot!(render::completion(&r), {
        ".id" => "[id]", ".created" => "[created]", ".system_fingerprint" => "[fingerprint]"
    });
}

#[test]
fn chunks_of_a_stream_with_tools_and_usage() {
    let mut r = ChunkRenderer::new(true, true);
    let events = [
        Event::Start(pb::StreamStart {
            id: "chatcmpl-123".into(),
            model: "gpt-4o-mini".into(),
            session_id: Some("s-1".into()),
            created: 1_700_000_000,
        }),
        Event::Content(pb::ContentDelta {
            text: "Let me check".into(),
        }),
        Event::ToolCallStarted(pb::ToolCallStarted {
            name: "clock__now".into(),
            ..Default::default()
        }),
        Event::Content(pb::ContentDelta {
            text: " the time.".into(),
        }),
        Event::ClientToolCall(pb::ToolCall {
            id: "call_1".into(),
            name: "remind".into(),
            arguments: "{}".into(),
        }),
        Event::Usage(pb::Usage {
            prompt_tokens: 12,
            completion_tokens: 5,
            total_tokens: 17,
            estimated: false,
            ..Default::default()
        }),
        Event::Response(pb::ChatResponse {
            finish_reason: pb::FinishReason::ToolCalls.into(),
            ..Default::default()
        }),
    ];
    let out: Vec<Sse> = events.into_iter().flat_map(|e| r.push(&ev(e))).collect();
    assert_json_snapshot!(sse_json(&out), {
        "[].id" => "[id]", "[].created" => "[created]", "[].system_fingerprint" => "[fingerprint]"
    });
}

#[test]
fn errors_from_the_service() {
    let mut bad = ErrorDetails::with_bad_request_violation("messages[0].content", "is empty");
    bad.set_error_info(
        "invalid_request",
        pb::status::DOMAIN,
        std::collections::HashMap::new(),
    );
    let statuses = [
        tonic::Status::with_error_details(
            Code::InvalidArgument,
            "messages[0].content: is empty",
            bad,
        ),
        status(
            Code::NotFound,
            "model_not_found",
            "the model \"x\" is not configured",
            None,
        ),
        status(
            Code::Unauthenticated,
            "invalid_api_key",
            "the API key is not valid",
            None,
        ),
        status(
            Code::Unavailable,
            "overloaded",
            "retry shortly",
            Some(Duration::from_secs(1)),
        ),
        status(
            Code::DeadlineExceeded,
            "deadline_exceeded",
            "the deadline passed",
            None,
        ),
        status(Code::Internal, "internal", "something broke", None),
    ];
    let errors: Vec<Value> = statuses
        .into_iter()
        .map(|s| {
            let e = ApiError::from(s);
            json!({
                "status": e.status.as_u16(),
                "retry_after_s": e.retry_after.map(|d| d.as_secs()),
                "body": e.body_json(),
            })
        })
        .collect();
    assert_json_snapshot!(errors);
}

#[test]
fn request_with_mcp_tools_and_approvals() {
    let r = to_proto(json!({
        "messages": [
            {"role": "user", "content": "add 2 and 3"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "", "approval": {"approve": true}},
            {"type": "mcp_approval_response", "approval_request_id": "c2", "approve": false, "reason": "no"}
        ],
        "tools": [
            {"type": "mcp", "server_label": "fx", "allowed_tools": {"tool_names": ["add"]},
             "require_approval": {"never": {"tool_names": ["echo"]}}},
            {"type": "mcp", "server_label": "web", "server_url": "https://mcp.example.com/mcp",
             "headers": {"X-Team": "a"}, "require_approval": "never", "server_description": "search"},
            {"type": "function", "function": {"name": "local", "parameters": {"type": "object"}}}
        ]
    }));
    assert_debug_snapshot!(r);
}

#[test]
fn answers_with_calls_waiting_for_approval() {
    let waiting = pb::ApprovalRequired {
        id: "c1".into(),
        server_label: "fx".into(),
        name: "add".into(),
        arguments: "{\"a\":2}".into(),
        expires_at: 0,
        function_name: "fx__add".into(),
    };
    let response = pb::ChatResponse {
        id: "chatcmpl-1".into(),
        model: "m".into(),
        message: Some(pb::Message {
            role: pb::Role::Assistant.into(),
            tool_calls: vec![pb::ToolCall {
                id: "c1".into(),
                name: "fx__add".into(),
                arguments: "{\"a\":2}".into(),
            }],
            ..Default::default()
        }),
        finish_reason: pb::FinishReason::ToolCalls.into(),
        approval_requests: vec![waiting.clone()],
        ..Default::default()
    };
    assert_json_snapshot!("approval_completion", render::completion(&response), {".created" => "[created]", ".system_fingerprint" => "[fingerprint]"});
    let mut renderer = ChunkRenderer::new(false, false);
    let mut out = renderer.push(&ev(Event::Start(pb::StreamStart {
        id: "chatcmpl-1".into(),
        model: "m".into(),
        ..Default::default()
    })));
    out.extend(renderer.push(&ev(Event::ApprovalRequired(waiting))));
    out.extend(renderer.push(&ev(Event::Response(response))));
    assert_json_snapshot!("approval_chunks", sse_json(&out), {"[].created" => "[created]", "[].system_fingerprint" => "[fingerprint]"});
}
