//! The upstream LLM seam: the [`LlmClient`] trait the agent loop calls and what one call
//! takes and gives ([`CompletionRequest`], [`Completion`], [`LlmEvent`], [`LlmError`]). The
//! conversation types themselves (`Message`, `ToolCall`, …) live in [`crate::model`].
//!
//! These types are the core's own (no proto, no HTTP wire shapes beyond the upstream DTOs
//! that `openai.rs` keeps private). The real client is [`openai::OpenAiClient`]; tests of the
//! loop use scripted fakes of the trait.
//!
//! Files: `openai.rs` (the reqwest client: retries, timeouts, body reading), `request.rs` (the
//! request body), `wire.rs` (answer DTOs), `answer.rs` (whole and error bodies), `frame.rs`
//! (SSE framing), `assemble.rs` (chunks → events state machine), `sse.rs` (the glue from bytes
//! to events), `retry.rs` (retry decisions and backoff).

mod answer;
mod assemble;
pub mod frame;
pub mod openai;
mod request;
pub mod retry;
pub mod sse;
mod transport;
mod wire;

pub use openai::OpenAiClient;
pub use retry::RetryPolicy;

use std::{collections::BTreeMap, pin::Pin, time::Duration};

use futures::Stream;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::{
    config::Secret,
    model::{GenParams, Message, ToolCall, ToolChoice, ToolDef, Usage},
};

/// One upstream chat-completions call.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// The model name sent upstream.
    pub model: String,
    pub messages: Vec<Message>,
    /// Empty: no `tools` field is sent.
    pub tools: Vec<ToolDef>,
    pub tool_choice: Option<ToolChoice>,
    pub params: GenParams,
}

/// Where and how to call: one per configured model, built once (the URL is parsed here,
/// not on every request).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL up to and including `/v1` (no trailing slash needed).
    pub base_url: String,
    pub api_key: Secret,
    pub headers: BTreeMap<String, Secret>,
    /// `{base_url}/chat/completions`, parsed (the URL for messages, the URI for requests).
    chat_url: reqwest::Url,
    chat_uri: http::Uri,
    /// Every header but the length, built once: the key, the endpoint's own headers, then
    /// `Content-Type` and `Accept`, for a whole answer `[0]` and a streamed one `[1]`. An
    /// invalid value is reported on each call (not at start-up), naming the header.
    fixed_headers: Result<[HeaderMap; 2], String>,
    /// Streamed calls send `stream_options: {include_usage: true}` (default).
    stream_usage: bool,
}

impl Endpoint {
    pub fn new(
        base_url: impl Into<String>,
        api_key: Secret,
        headers: BTreeMap<String, Secret>,
    ) -> Result<Self, LlmError> {
        let base_url = base_url.into();
        let raw = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        let chat_url = reqwest::Url::parse(&raw).map_err(|e| LlmError::Connect {
            url: raw.clone(),
            message: format!("not a valid URL: {e}"),
        })?;
        let chat_uri = http::Uri::try_from(chat_url.as_str()).map_err(|e| LlmError::Connect {
            url: raw.clone(),
            message: format!("not a valid URL: {e}"),
        })?;
        let fixed_headers = fixed_headers(&api_key, &headers);
        Ok(Self {
            base_url,
            api_key,
            headers,
            chat_url,
            chat_uri,
            fixed_headers,
            stream_usage: true,
        })
    }

    /// Whether streamed calls ask for the usage with `stream_options` (some
    /// OpenAI-compatible servers refuse that field); default yes.
    #[must_use]
    pub fn with_stream_usage(mut self, ask: bool) -> Self {
        self.stream_usage = ask;
        self
    }

    /// Whether streamed calls send `stream_options: {include_usage: true}`.
    pub fn stream_usage(&self) -> bool {
        self.stream_usage
    }

    /// The headers of a call but its length (see the field), or why one is not a valid
    /// value.
    pub fn fixed_headers(&self, stream: bool) -> Result<&HeaderMap, &str> {
        match &self.fixed_headers {
            Ok(both) => Ok(&both[usize::from(stream)]),
            Err(e) => Err(e),
        }
    }

    /// Where chat completions are posted.
    pub fn chat_url(&self) -> &reqwest::Url {
        &self.chat_url
    }

    /// The same, as the request's URI.
    pub fn chat_uri(&self) -> &http::Uri {
        &self.chat_uri
    }
}

fn fixed_headers(
    api_key: &Secret,
    extra: &BTreeMap<String, Secret>,
) -> Result<[HeaderMap; 2], String> {
    let mut headers = HeaderMap::with_capacity(4 + extra.len());
    if !api_key.is_empty() {
        let mut value = HeaderValue::try_from(format!("Bearer {}", api_key.expose()))
            .map_err(|_| "the API key is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    for (name, value) in extra {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("invalid value for header {name}"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut streamed = headers.clone();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    streamed.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    Ok([headers, streamed])
}

/// Why the upstream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// Anything else the upstream said (kept, not guessed).
    Other(String),
}

/// A whole upstream answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    /// `None` when the upstream sent no usage.
    pub usage: Option<Usage>,
    /// The model's refusal (OpenAI `refusal`), when the upstream sent one.
    pub refusal: Option<String>,
}

/// What a streamed upstream answer yields: text as it arrives, then the assembled whole
/// (tool calls complete, never partial JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    Content(String),
    Done(Completion),
}

pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, LlmError>> + Send>>;

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// No connection could be made (after retries).
    #[error("cannot reach the upstream at {url}: {message}")]
    Connect { url: String, message: String },
    /// A timeout fired; `phase` is `connect`, `first byte`, `idle` or `total`.
    #[error("the upstream did not answer in time ({phase} timeout of {after:?})")]
    Timeout {
        phase: &'static str,
        after: Duration,
    },
    /// The upstream answered with an error status.
    #[error("the upstream answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        code: Option<String>,
        /// The request parameter the upstream's error body names (`error.param`).
        param: Option<String>,
        retry_after: Option<Duration>,
    },
    /// The upstream's answer could not be understood.
    #[error("the upstream's answer could not be understood: {0}")]
    BadResponse(String),
    /// The upstream sent an error object in the middle of a stream, or cut the stream.
    #[error("the upstream stream failed: {0}")]
    Stream(String),
}

/// The upstream client the agent loop depends on.
#[async_trait::async_trait]
pub trait LlmClient: Send + Sync {
    /// A whole answer (retries and timeouts included).
    async fn complete(
        &self,
        endpoint: &Endpoint,
        request: &CompletionRequest,
    ) -> Result<Completion, LlmError>;

    /// A streamed answer. Retries happen only before the first event is yielded; dropping
    /// the stream drops the upstream connection.
    async fn stream(
        &self,
        endpoint: &Endpoint,
        request: &CompletionRequest,
    ) -> Result<LlmStream, LlmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_headers_carry_the_key_the_extras_and_the_accept_of_each_kind_of_call() {
        let extra = BTreeMap::from([
            ("X-Team".to_owned(), Secret::new("blue")),
            ("Accept".to_owned(), Secret::new("text/plain")),
        ]);
        let endpoint = Endpoint::new("http://up.example/v1/", Secret::new("sk-1"), extra).unwrap();
        let whole = endpoint.fixed_headers(false).unwrap();
        let streamed = endpoint.fixed_headers(true).unwrap();
        for headers in [whole, streamed] {
            assert_eq!(headers[AUTHORIZATION], "Bearer sk-1");
            assert!(headers[AUTHORIZATION].is_sensitive());
            assert_eq!(headers["x-team"], "blue");
            assert_eq!(headers[CONTENT_TYPE], "application/json");
            assert_eq!(headers.get_all(ACCEPT).iter().count(), 1);
        }
        assert_eq!(whole[ACCEPT], "application/json");
        assert_eq!(streamed[ACCEPT], "text/event-stream");
        assert_eq!(
            endpoint.chat_uri().to_string(),
            "http://up.example/v1/chat/completions"
        );
    }

    #[test]
    fn no_key_means_no_authorization_and_a_bad_header_is_named_on_use() {
        let endpoint =
            Endpoint::new("http://up.example/v1", Secret::default(), BTreeMap::new()).unwrap();
        assert!(
            !endpoint
                .fixed_headers(false)
                .unwrap()
                .contains_key(AUTHORIZATION)
        );
        let bad = BTreeMap::from([("X-Bad".to_owned(), Secret::new("a\nb"))]);
        let endpoint = Endpoint::new("http://up.example/v1", Secret::new("k"), bad).unwrap();
        assert_eq!(
            endpoint.fixed_headers(true).unwrap_err(),
            "invalid value for header x-bad"
        );
    }
}
