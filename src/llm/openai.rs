//! The real [`LlmClient`]: chat completions against any OpenAI-compatible base URL over one
//! pooled HTTP client ([`transport`]), with retries (before the first event only) and four
//! timeouts.
//!
//! Owns request building (URL, headers, the body serialized straight to bytes), the retry loop,
//! the connect / first-byte / idle / total timeouts, and reading the body (whole, or as the byte
//! stream [`sse::decode`] turns into events). Dropping a returned stream drops the response and
//! with it the upstream connection; no task is left reading it.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::{
    Method, Request, Response,
    header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue},
};
use http_body_util::{BodyDataStream, BodyExt};
use tokio::time::{Instant, timeout_at};

use super::{
    Completion, CompletionRequest, Endpoint, LlmClient, LlmError, LlmEvent, LlmStream,
    answer::{error_body, parse_completion},
    request::ChatBody,
    retry::{self, RetryPolicy},
    sse,
    transport::{self, Body, Transport, chain},
};
use crate::config::UpstreamConfig;

/// Largest whole answer read (non-streamed completions and error bodies).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Largest error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Chat completions over HTTP; one per process (cheap to share behind an `Arc`).
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: std::sync::Arc<Transport>,
    timeouts: Timeouts,
    retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    idle: Duration,
    total: Duration,
}

impl OpenAiClient {
    /// Builds the one pooled HTTP client (rustls) from the `[upstream]` timeouts and retries,
    /// with egress proxies from the environment.
    pub fn new(config: &UpstreamConfig) -> Result<Self, LlmError> {
        Self::with_transport(config, Transport::from_env(config.connect_timeout))
    }

    /// The same, with every upstream reached through the HTTP proxy at `proxy`.
    pub fn with_proxy(config: &UpstreamConfig, proxy: &str) -> Result<Self, LlmError> {
        Self::with_transport(config, Transport::with_proxy(config.connect_timeout, proxy))
    }

    fn with_transport(
        config: &UpstreamConfig,
        http: Result<Transport, String>,
    ) -> Result<Self, LlmError> {
        let http = http.map_err(|message| LlmError::Connect {
            url: config.base_url.clone(),
            message: format!("cannot build the HTTP client: {message}"),
        })?;
        Ok(Self {
            http: std::sync::Arc::new(http),
            timeouts: Timeouts {
                connect: config.connect_timeout,
                first_byte: config.first_byte_timeout,
                idle: config.idle_timeout,
                total: config.total_timeout,
            },
            retry: RetryPolicy::from_config(config),
        })
    }

    /// Replaces the retry policy (tests use short backoffs).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sends the request until a success status, a final error or the retries run out.
    /// Returns the response (headers read) and the call's total deadline.
    async fn send(
        &self,
        endpoint: &Endpoint,
        request: &CompletionRequest,
        stream: bool,
    ) -> Result<(Response<Body>, Instant), LlmError> {
        let deadline = from_now(self.timeouts.total);
        let url = endpoint.chat_url();
        let connect_error = |message: String| LlmError::Connect {
            url: url.to_string(),
            message,
        };
        let body = Bytes::from(
            serde_json::to_vec(&ChatBody {
                request,
                stream,
                stream_usage: endpoint.stream_usage(),
            })
            .map_err(|e| connect_error(format!("cannot encode the request: {e}")))?,
        );
        let build_headers = || headers(endpoint, stream, body.len()).map_err(connect_error);
        // The first attempt takes this map; a retry builds its own (no clone per call).
        let mut first_headers = Some(build_headers()?);
        let prepare = |headers: HeaderMap| {
            let mut request = Request::new(body.clone());
            *request.method_mut() = Method::POST;
            *request.uri_mut() = endpoint.chat_uri().clone();
            *request.headers_mut() = headers;
            request
        };

        let mut retries = 0;
        loop {
            let headers = match first_headers.take() {
                Some(headers) => headers,
                None => build_headers()?,
            };
            let (limit, timeout) = self.limit(deadline, "first byte", self.timeouts.first_byte);
            let (error, retryable, retry_after) =
                match timeout_at(limit, self.http.send(prepare(headers))).await {
                    Err(_) => return Err(timeout),
                    Ok(Ok(response)) if response.status().is_success() => {
                        return Ok((response, deadline));
                    }
                    Ok(Ok(response)) => self.status_error(response, deadline).await,
                    Ok(Err(e)) => (self.transport_error(url.as_str(), e), true, None),
                };
            if !retryable || retries >= self.retry.max_retries {
                return Err(error);
            }
            let delay = self.retry.delay(retries, retry_after);
            if from_now(delay) >= deadline {
                return Err(error);
            }
            // Names the call itself: its `llm.call` span is only logged at debug level.
            tracing::warn!(
                %error,
                model = %request.model,
                stream,
                retry = retries + 1,
                ?delay,
                "upstream call failed; retrying"
            );
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// The earlier of `now + after` and the total deadline, and the timeout error it means.
    fn limit(
        &self,
        deadline: Instant,
        phase: &'static str,
        after: Duration,
    ) -> (Instant, LlmError) {
        let at = from_now(after);
        if at < deadline {
            (at, LlmError::Timeout { phase, after })
        } else {
            let total = self.timeouts.total;
            (
                deadline,
                LlmError::Timeout {
                    phase: "total",
                    after: total,
                },
            )
        }
    }

    /// An error status: the upstream's message, whether to retry, and the wait it asked for.
    async fn status_error(
        &self,
        mut response: Response<Body>,
        deadline: Instant,
    ) -> (LlmError, bool, Option<Duration>) {
        let status = response.status().as_u16();
        let retryable = retry::should_retry(status, response.headers());
        let retry_after = retry::retry_after(response.headers(), SystemTime::now());
        let body = self
            .read_body(&mut response, deadline, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let body = error_body(&body);
        let error = LlmError::Status {
            status,
            message: body.message,
            code: body.code,
            param: body.param,
            retry_after,
        };
        (error, retryable, retry_after)
    }

    fn transport_error(&self, url: &str, e: transport::SendError) -> LlmError {
        if e.connect_timeout {
            LlmError::Timeout {
                phase: "connect",
                after: self.timeouts.connect,
            }
        } else {
            LlmError::Connect {
                url: url.to_owned(),
                message: e.to_string(),
            }
        }
    }

    /// Reads the whole body (at most `max` bytes; more is cut off) under the idle and total
    /// timeouts.
    async fn read_body(
        &self,
        response: &mut Response<Body>,
        deadline: Instant,
        max: usize,
    ) -> Result<Bytes, LlmError> {
        let hint = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let mut body = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0).min(max));
        while let Some(chunk) = next_chunk(response, deadline, self.timeouts).await? {
            body.extend_from_slice(&chunk[..chunk.len().min(max - body.len())]);
            if body.len() >= max {
                break;
            }
        }
        Ok(body.freeze())
    }
}

#[async_trait::async_trait]
impl LlmClient for OpenAiClient {
    async fn complete(
        &self,
        endpoint: &Endpoint,
        request: &CompletionRequest,
    ) -> Result<Completion, LlmError> {
        let (mut response, deadline) = self.send(endpoint, request, false).await?;
        let body = self.read_body(&mut response, deadline, MAX_BODY).await?;
        parse_completion(&body)
    }

    async fn stream(
        &self,
        endpoint: &Endpoint,
        request: &CompletionRequest,
    ) -> Result<LlmStream, LlmError> {
        let (mut response, deadline) = self.send(endpoint, request, true).await?;
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if is_json {
            // An upstream that ignored `stream: true` answered whole: replay it as events.
            let body = self.read_body(&mut response, deadline, MAX_BODY).await?;
            let completion = parse_completion(&body)?;
            let content = (!completion.content.is_empty())
                .then(|| Ok(LlmEvent::Content(completion.content.clone())));
            let events = content.into_iter().chain([Ok(LlmEvent::Done(completion))]);
            return Ok(Box::pin(futures::stream::iter(events)));
        }
        Ok(Box::pin(sse::decode(body_stream(
            response,
            deadline,
            self.timeouts,
        ))))
    }
}

/// The request headers: the endpoint's fixed ones (built once), JSON body, what we accept,
/// and the current trace context.
fn headers(endpoint: &Endpoint, stream: bool, length: usize) -> Result<HeaderMap, String> {
    let mut headers = endpoint
        .fixed_headers(stream)
        .map_err(str::to_owned)?
        .clone();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    crate::telemetry::propagation::inject_current(&mut headers);
    Ok(headers)
}

/// The next chunk of a body, under the idle timeout and the call's total deadline.
async fn next_chunk(
    response: &mut Response<Body>,
    deadline: Instant,
    timeouts: Timeouts,
) -> Result<Option<Bytes>, LlmError> {
    let idle_at = from_now(timeouts.idle);
    let (limit, timeout) = if idle_at < deadline {
        let after = timeouts.idle;
        (
            idle_at,
            LlmError::Timeout {
                phase: "idle",
                after,
            },
        )
    } else {
        let after = timeouts.total;
        (
            deadline,
            LlmError::Timeout {
                phase: "total",
                after,
            },
        )
    };
    loop {
        match timeout_at(limit, response.body_mut().frame()).await {
            Err(_) => return Err(timeout),
            Ok(None) => return Ok(None),
            Ok(Some(Ok(frame))) => {
                // Trailers carry nothing a completion needs.
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
            Ok(Some(Err(e))) => {
                return Err(LlmError::Stream(format!(
                    "reading the upstream's answer failed: {}",
                    chain(&*e)
                )));
            }
        }
    }
}

/// The body as a byte stream that owns the response: dropping it closes the connection.
///
/// The idle timeout runs from the moment the next chunk is asked for, as in [`next_chunk`],
/// but with one timer for the whole body: a chunk costs a clock read, not a timer
/// registered and removed (a stream of many small deltas paid that on every one).
fn body_stream(
    response: Response<Body>,
    deadline: Instant,
    timeouts: Timeouts,
) -> impl Stream<Item = Result<Bytes, LlmError>> + Send + 'static {
    let first = from_now(timeouts.idle).min(deadline);
    IdleBody {
        bytes: Some(BodyDataStream::new(response.into_body())),
        timer: Box::pin(tokio::time::sleep_until(first)),
        waiting_since: None,
        deadline,
        timeouts,
    }
}

/// See [`body_stream`].
struct IdleBody {
    /// `None` once the body ended or failed.
    bytes: Option<BodyDataStream<Body>>,
    /// Fires at the earlier of the idle limit (as of when it was last set) and the deadline;
    /// when it fires early (a chunk came since), it is set again.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When the chunk being waited for was first asked for.
    waiting_since: Option<Instant>,
    deadline: Instant,
    timeouts: Timeouts,
}

impl Stream for IdleBody {
    type Item = Result<Bytes, LlmError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        let Some(bytes) = this.bytes.as_mut() else {
            return Poll::Ready(None);
        };
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        match std::pin::Pin::new(bytes).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.waiting_since = None;
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(Some(Err(e))) => {
                this.bytes = None;
                return Poll::Ready(Some(Err(LlmError::Stream(format!(
                    "reading the upstream's answer failed: {}",
                    chain(&*e)
                )))));
            }
            Poll::Ready(None) => {
                this.bytes = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let idle_at = since
                .checked_add(this.timeouts.idle)
                .unwrap_or(this.deadline);
            let timeout = if now >= this.deadline && this.deadline <= idle_at {
                LlmError::Timeout {
                    phase: "total",
                    after: this.timeouts.total,
                }
            } else if now >= idle_at {
                LlmError::Timeout {
                    phase: "idle",
                    after: this.timeouts.idle,
                }
            } else {
                // Set when an earlier chunk was awaited: wait on from this one's start.
                this.timer.as_mut().reset(idle_at.min(this.deadline));
                continue;
            };
            this.bytes = None;
            return Poll::Ready(Some(Err(timeout)));
        }
    }
}

/// `now + d`, saturating at about thirty years for huge durations instead of panicking.
fn from_now(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}
