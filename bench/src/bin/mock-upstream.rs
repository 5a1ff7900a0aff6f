//! A fast mock of an OpenAI-compatible upstream: `POST /v1/chat/completions`, JSON and SSE.
//!
//! Behaviour comes from flags (defaults) and can be changed per request through the `user`
//! field, e.g. `"user": "lat=20,deltas=64,pace=20,tool=echo"`:
//! - `lat` (ms): wait before answering (before the first chunk when streaming);
//! - `deltas`: number of content deltas (their text is joined when not streaming);
//! - `pace` (ms): time between deltas when streaming (0 = the whole body at once);
//! - `tool`: when the last message is a user message, answer one call of this tool with
//!   `{"text":"bench"}`; when it is a tool result, answer text.
//!
//! Usage: `mock-upstream [--listen 127.0.0.1:0] [--workers 1] [--lat 0] [--deltas 1] [--pace 0]`.
//! Prints `http://ADDR/v1` on stdout once listening.

use std::{convert::Infallible, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{StatusCode, header},
    response::Response,
    routing::{get, post},
};
use mcp_chat_bench::Args;
use serde_json::{Value, json};
use tokio::time::Instant;

#[derive(Clone, Default)]
struct Behaviour {
    latency: Duration,
    deltas: usize,
    pace: Duration,
    tool: Option<String>,
}

impl Behaviour {
    fn with_overrides(&self, spec: &str) -> Self {
        let mut b = self.clone();
        for pair in spec.split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let ms = || Duration::from_millis(v.parse().unwrap_or(0));
            match k.trim() {
                "lat" => b.latency = ms(),
                "pace" => b.pace = ms(),
                "deltas" => b.deltas = v.parse().unwrap_or(1),
                "tool" => b.tool = Some(v.to_string()).filter(|t| !t.is_empty()),
                _ => {}
            }
        }
        b
    }
}

fn main() {
    let args = Args::parse(false);
    let workers = args.get("workers", 1usize);
    let behaviour = Behaviour {
        latency: Duration::from_millis(args.get("lat", 0)),
        deltas: args.get("deltas", 1),
        pace: Duration::from_millis(args.get("pace", 0)),
        tool: args.opt("tool"),
    };
    let listen = args.str("listen", "127.0.0.1:0");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    runtime.block_on(async move {
        let listener = mcp_chat_bench::listen(&listen)
            .unwrap_or_else(|e| fail(&format!("bind {listen}: {e}")));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| fail(&format!("{e}")));
        println!("http://{addr}/v1");
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/models", get(models))
            .with_state(behaviour);
        if let Err(e) = axum::serve(listener, app).await {
            fail(&format!("serve: {e}"));
        }
    });
}

fn fail(msg: &str) -> ! {
    eprintln!("mock-upstream: {msg}");
    std::process::exit(1)
}

async fn models() -> axum::Json<Value> {
    axum::Json(
        json!({"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "bench"}]}),
    )
}

async fn completions(State(defaults): State<Behaviour>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"error":{"message":"bad json","type":"invalid_request_error"}}"#.into(),
        );
    };
    let b = match req.get("user").and_then(Value::as_str) {
        Some(spec) => defaults.with_overrides(spec),
        None => defaults,
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("m")
        .to_string();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let last_role = req
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        .unwrap_or("user");
    let tool = b.tool.clone().filter(|_| last_role == "user");
    let start = Instant::now();
    if !b.latency.is_zero() {
        tokio::time::sleep(b.latency).await;
    }
    if !stream {
        let message = match &tool {
            Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{\"text\":\"bench\"}"}}]}),
            None => {
                json!({"role": "assistant", "content": (0..b.deltas).map(delta_text).collect::<String>()})
            }
        };
        let finish = if tool.is_some() { "tool_calls" } else { "stop" };
        let body = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": b.deltas, "total_tokens": 10 + b.deltas}});
        return plain(StatusCode::OK, "application/json", body.to_string());
    }
    let events = stream_events(&model, &b, tool.as_deref(), include_usage);
    if b.pace.is_zero() {
        return plain(StatusCode::OK, "text/event-stream", events.concat());
    }
    // Event k (after the role chunk) goes out at start + latency + (k-1) * pace, so pacing
    // does not drift with scheduling delays.
    let first = start + b.latency;
    let pace = b.pace;
    let deltas = b.deltas;
    let body = futures::stream::unfold(
        (events.into_iter(), 0usize),
        move |(mut it, k)| async move {
            let event = it.next()?;
            if (2..=deltas).contains(&k) {
                tokio::time::sleep_until(first + pace * (k as u32 - 1)).await;
            }
            Some((Ok::<_, Infallible>(Bytes::from(event)), (it, k + 1)))
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn delta_text(i: usize) -> String {
    format!("tok{i} ")
}

/// SSE events: role chunk, deltas (or one tool call), finish, optional usage, `[DONE]`.
fn stream_events(
    model: &str,
    b: &Behaviour,
    tool: Option<&str>,
    include_usage: bool,
) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let v = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {v}\n\n")
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    match tool {
        Some(name) => {
            out.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": name, "arguments": "{\"text\":\"bench\"}"}}]}),
                Value::Null,
            ));
            out.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            out.extend(
                (0..b.deltas).map(|i| chunk(json!({"content": delta_text(i)}), Value::Null)),
            );
            out.push(chunk(json!({}), json!("stop")));
        }
    }
    if include_usage {
        let v = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": b.deltas, "total_tokens": 10 + b.deltas}});
        out.push(format!("data: {v}\n\n"));
    }
    out.push("data: [DONE]\n\n".to_string());
    out
}

fn plain(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
