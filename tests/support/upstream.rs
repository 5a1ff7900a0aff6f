//! A scripted fake OpenAI-compatible upstream for tests: axum on `127.0.0.1:0`, inside the
//! test process.
//!
//! Include it with `#[path = "support/upstream.rs"] mod upstream;`.
//!
//! ```ignore
//! let fake = FakeUpstream::start().await;              // fake.base_url = "http://127.0.0.1:…/v1"
//! fake.push(Reply::answer(Answer::text(&["Hel", "lo"])));        // one reply per request, in order
//! fake.push(Reply::error(503, "busy").header("retry-after", "1"));
//! … call POST {base_url}/chat/completions …
//! fake.requests()                                       // every request received (headers, JSON body)
//! fake.wait_dropped(1, Duration::from_secs(1)).await    // a client went away mid-body
//! ```
//!
//! Each request takes the next [`Reply`] of the queue (an empty queue answers 500
//! `fake upstream: no scripted reply left`). A reply is:
//! - [`Reply::answer`]: rendered per request, like the real API. With `"stream": true`: a role
//!   delta (`content: ""`), one delta per content part, for each tool call a first fragment with
//!   id, name and `arguments: ""` then one delta per argument fragment, a chunk with the
//!   finish_reason, a usage chunk with empty `choices` (only when `stream_options.include_usage`
//!   was asked), `[DONE]`; each event written as its own body chunk. Without: a
//!   `chat.completion` JSON object.
//! - [`Reply::sse`] (each string sent as `data: …\n\n`) or [`Reply::bytes`] (exact body chunks,
//!   e.g. split inside a UTF-8 character): a streamed body exactly as given, ending where it ends
//!   (no `[DONE]` unless included).
//! - [`Reply::json`], [`Reply::error`] (OpenAI error body), [`Reply::raw`] (any status, content
//!   type and body text, e.g. malformed JSON).
//! - [`Reply::silence`]: `200 text/event-stream` headers, then nothing, until the client leaves.
//!
//! Modifiers: `.header(name, value)`, `.delay(d)` (before each streamed chunk), `.cut_after(n)`
//! (stream only the first n chunks of the body, then close it cleanly), `.then_hang()` (keep
//! the connection open after the last chunk), `.then_abort()` (break the connection after the
//! last chunk).
//!
//! Streamed bodies are counted: [`FakeUpstream::dropped`] is the number of streamed bodies the
//! client stopped reading (connection closed) before the fake finished writing them,
//! [`FakeUpstream::finished`] those written to their end.
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::Response,
    routing::post,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
    pub raw: Bytes,
}

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
    delay: Duration,
    cut_after: Option<usize>,
    end: End,
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Answer(Answer),
    Chunks(Vec<Bytes>),
    Full { content_type: String, body: Bytes },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Close,
    Hang,
    Abort,
}

/// A model answer: content parts, tool calls (argument fragments), finish_reason, usage.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub content: Vec<String>,
    /// (id, name, argument fragments)
    pub tool_calls: Vec<(String, String, Vec<String>)>,
    /// Default: `tool_calls` when there are tool calls, else `stop`.
    pub finish_reason: Option<String>,
    /// (prompt, completion) tokens; default (10, number of content parts).
    pub usage: Option<(u32, u32)>,
}

impl Answer {
    /// Content streamed as these parts.
    pub fn text(parts: &[&str]) -> Self {
        Self {
            content: parts.iter().map(|p| (*p).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Adds a tool call whose arguments stream as these fragments.
    pub fn tool_call(mut self, id: &str, name: &str, fragments: &[&str]) -> Self {
        let fragments = fragments.iter().map(|f| (*f).to_owned()).collect();
        self.tool_calls.push((id.into(), name.into(), fragments));
        self
    }

    pub fn finish(mut self, reason: &str) -> Self {
        self.finish_reason = Some(reason.into());
        self
    }

    pub fn usage(mut self, prompt: u32, completion: u32) -> Self {
        self.usage = Some((prompt, completion));
        self
    }

    fn finish_reason(&self) -> &str {
        match &self.finish_reason {
            Some(r) => r,
            None if self.tool_calls.is_empty() => "stop",
            None => "tool_calls",
        }
    }

    fn usage_json(&self) -> Value {
        let (p, c) = self.usage.unwrap_or((10, self.content.len() as u32));
        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
    }

    /// The streamed events (JSON texts and the final `[DONE]`), as the real API sends them.
    pub fn events(&self, model: &str, include_usage: bool) -> Vec<String> {
        let chunk = |choices: Value, usage: Value| {
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
                   "model": model, "system_fingerprint": null, "choices": choices, "usage": usage})
            .to_string()
        };
        let delta = |delta: Value, finish: Value| {
            chunk(
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                Value::Null,
            )
        };
        let mut events = vec![delta(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        )];
        for part in &self.content {
            events.push(delta(json!({"content": part}), Value::Null));
        }
        for (index, (id, name, fragments)) in self.tool_calls.iter().enumerate() {
            events.push(delta(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                                       "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for fragment in fragments {
                events.push(delta(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                    Value::Null,
                ));
            }
        }
        events.push(delta(json!({}), json!(self.finish_reason())));
        if include_usage {
            events.push(chunk(json!([]), self.usage_json()));
        }
        events.push("[DONE]".into());
        events
    }

    /// The whole `chat.completion` object.
    pub fn completion(&self, model: &str) -> Value {
        let content = self.content.concat();
        let mut message = json!({"role": "assistant", "content": content, "refusal": null});
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self
                .tool_calls
                .iter()
                .map(|(id, name, fragments)| {
                    json!({"id": id, "type": "function",
                           "function": {"name": name, "arguments": fragments.concat()}})
                })
                .collect();
            if content.is_empty() {
                message["content"] = Value::Null;
            }
        }
        json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
               "model": model, "choices": [{"index": 0, "message": message, "logprobs": null,
               "finish_reason": self.finish_reason()}], "usage": self.usage_json()})
    }
}

impl Reply {
    fn new(status: u16, body: ReplyBody) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
            cut_after: None,
            end: End::Close,
        }
    }

    /// An answer, streamed or whole as the request asked.
    pub fn answer(answer: Answer) -> Self {
        Self::new(200, ReplyBody::Answer(answer))
    }

    /// Shortcut: a text answer in these parts.
    pub fn text(parts: &[&str]) -> Self {
        Self::answer(Answer::text(parts))
    }

    /// A streamed body of these events, each sent as `data: <event>\n\n`.
    pub fn sse<S: AsRef<str>>(events: &[S]) -> Self {
        let chunks = events
            .iter()
            .map(|e| Bytes::from(format!("data: {}\n\n", e.as_ref())))
            .collect();
        Self::new(200, ReplyBody::Chunks(chunks))
    }

    /// A streamed body of exactly these chunks.
    pub fn bytes(chunks: Vec<Vec<u8>>) -> Self {
        Self::new(
            200,
            ReplyBody::Chunks(chunks.into_iter().map(Bytes::from).collect()),
        )
    }

    /// A JSON body with this status.
    pub fn json(status: u16, body: Value) -> Self {
        Self::raw(status, "application/json", &body.to_string())
    }

    /// An OpenAI error body: `{"error":{"message","type","param","code"}}`.
    pub fn error(status: u16, message: &str) -> Self {
        let kind = if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        Self::json(
            status,
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
        )
    }

    /// Any status, content type and body text.
    pub fn raw(status: u16, content_type: &str, body: &str) -> Self {
        Self::new(
            status,
            ReplyBody::Full {
                content_type: content_type.into(),
                body: Bytes::from(body.to_owned()),
            },
        )
    }

    /// `200 text/event-stream` headers, then nothing until the client goes away.
    pub fn silence() -> Self {
        Self::new(200, ReplyBody::Chunks(Vec::new())).then_hang()
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn cut_after(mut self, chunks: usize) -> Self {
        self.cut_after = Some(chunks);
        self
    }

    pub fn then_hang(mut self) -> Self {
        self.end = End::Hang;
        self
    }

    pub fn then_abort(mut self) -> Self {
        self.end = End::Abort;
        self
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    dropped: AtomicUsize,
    finished: AtomicUsize,
    changed: Notify,
}

/// The running fake; stops when dropped.
pub struct FakeUpstream {
    /// `http://127.0.0.1:<port>/v1`
    pub base_url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            addr,
            shared,
            server,
        }
    }

    /// Starts with these replies queued.
    pub async fn with(replies: impl IntoIterator<Item = Reply>) -> Self {
        let fake = Self::start().await;
        for reply in replies {
            fake.push(reply);
        }
        fake
    }

    pub fn push(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Streamed bodies the client stopped reading before their end.
    pub fn dropped(&self) -> usize {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// Streamed bodies written to their end.
    pub fn finished(&self) -> usize {
        self.shared.finished.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` streamed bodies were dropped by the client; false on timeout.
    pub async fn wait_dropped(&self, n: usize, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let changed = self.shared.changed.notified();
                if self.dropped() >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.lock().unwrap().push(Recorded {
        headers,
        body: body.clone(),
        raw,
    });
    let next = shared.replies.lock().unwrap().pop_front();
    let Some(reply) = next else {
        return respond(
            &Reply::error(500, "fake upstream: no scripted reply left"),
            None,
        );
    };
    let model = body["model"].as_str().unwrap_or("fake-model");
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let chunks = match &reply.body {
        ReplyBody::Answer(answer) if !stream => {
            let json = answer.completion(model).to_string();
            return respond(&Reply::raw(reply.status, "application/json", &json), None);
        }
        ReplyBody::Answer(answer) => answer
            .events(model, include_usage)
            .into_iter()
            .map(|e| Bytes::from(format!("data: {e}\n\n")))
            .collect(),
        ReplyBody::Chunks(chunks) => chunks.clone(),
        ReplyBody::Full { .. } => return respond(&reply, None),
    };
    let chunks = match reply.cut_after {
        Some(n) => chunks.into_iter().take(n).collect(),
        None => chunks,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let (delay, end) = (reply.delay, reply.end);
    tokio::spawn(async move {
        let count = |counter: &AtomicUsize| {
            counter.fetch_add(1, Ordering::SeqCst);
            shared.changed.notify_waiters();
        };
        for chunk in chunks {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = tx.closed() => return count(&shared.dropped),
                }
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return count(&shared.dropped);
            }
        }
        match end {
            End::Close => count(&shared.finished),
            End::Hang => {
                tx.closed().await;
                count(&shared.dropped);
            }
            End::Abort => {
                let _ = tx.send(Err(std::io::Error::other("fake abort"))).await;
                count(&shared.finished);
            }
        }
    });
    respond(&reply, Some(Body::from_stream(ReceiverStream::new(rx))))
}

fn respond(reply: &Reply, stream: Option<Body>) -> Response {
    let (content_type, body) = match (&reply.body, stream) {
        (_, Some(body)) => ("text/event-stream".to_owned(), body),
        (ReplyBody::Full { content_type, body }, None) => {
            (content_type.clone(), Body::from(body.clone()))
        }
        (_, None) => ("text/plain".to_owned(), Body::empty()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in &reply.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}
