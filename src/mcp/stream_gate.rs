//! Waits for a streamable HTTP server's standalone `GET` stream before the first call.
//!
//! A server may send requests and notifications that belong to no request of ours on the
//! session's `GET` stream, and servers drop them when that stream is not open yet (the
//! official TypeScript SDK does, for an `elicitation/create` sent without a related request).
//! rmcp opens the stream in the background once the session starts, so a call made right
//! after connecting (`mcp-chat tools call`, or a chat as a server comes up) could lose such a
//! request and hang until the server gives up. [`StreamGate`] wraps the transport's HTTP
//! client and records what it sees: a session id in the answer to `initialize` (a stateless
//! server has no stream to wait for), then the answer to the stream's `GET`, either way;
//! [`Opened::wait`] holds the connection until then, bounded.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage},
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use sse_stream::Sse;
use tokio::sync::watch;

/// How far the session's standalone stream has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// `initialize` has not been answered yet.
    Unknown,
    /// The server gave no session: there is no standalone stream.
    Stateless,
    /// A session, whose stream is being opened.
    Opening,
    /// The stream's `GET` was answered (opened, or refused with 405).
    Answered,
}

/// The HTTP client `C` of a streamable HTTP transport, noting what [`Opened`] waits for.
#[derive(Clone)]
pub struct StreamGate<C> {
    inner: C,
    state: Arc<watch::Sender<Stream>>,
}

/// The waiting side of a [`StreamGate`].
pub struct Opened(watch::Receiver<Stream>);

impl<C> StreamGate<C> {
    pub fn new(inner: C) -> (Self, Opened) {
        let (tx, rx) = watch::channel(Stream::Unknown);
        let gate = Self {
            inner,
            state: Arc::new(tx),
        };
        (gate, Opened(rx))
    }

    /// Notes the answer to `initialize` (`initialize`: whether the message was one).
    fn note<E: std::error::Error + Send + Sync + 'static>(
        &self,
        initialize: bool,
        result: &PostResult<E>,
    ) {
        if initialize {
            let session = matches!(
                result,
                Ok(StreamableHttpPostResponse::Json(_, Some(_))
                    | StreamableHttpPostResponse::Sse(_, Some(_)))
            );
            self.state.send_replace(if session {
                Stream::Opening
            } else {
                Stream::Stateless
            });
        }
    }
}

impl Opened {
    /// Waits, up to `limit`, until the session's stream is open (or there is none).
    pub async fn wait(mut self, limit: Duration) {
        let ready = self
            .0
            .wait_for(|s| matches!(s, Stream::Stateless | Stream::Answered));
        if tokio::time::timeout(limit, ready).await.is_err() {
            tracing::debug!("the server's GET stream did not open within {limit:?}; going on");
        }
    }
}

type PostResult<E> = Result<StreamableHttpPostResponse, StreamableHttpError<E>>;
type StreamResult<E> = Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<E>>;

fn is_initialize(message: &ClientJsonRpcMessage) -> bool {
    matches!(message, JsonRpcMessage::Request(r)
        if matches!(r.request, ClientRequest::InitializeRequest(_)))
}

impl<C: StreamableHttpClient + Send + Sync> StreamableHttpClient for StreamGate<C> {
    type Error = C::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> PostResult<C::Error> {
        let initialize = is_initialize(&message);
        let result = self
            .inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await;
        self.note(initialize, &result);
        result
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> PostResult<C::Error> {
        let initialize = is_initialize(&message);
        let result = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.note(initialize, &result);
        result
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> PostResult<C::Error> {
        let initialize = is_initialize(&message);
        let result = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await;
        self.note(initialize, &result);
        result
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<C::Error>> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> StreamResult<C::Error> {
        let standalone = session_id.is_some() && last_event_id.is_none();
        let result = self
            .inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await;
        if standalone {
            self.state.send_replace(Stream::Answered);
        }
        result
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> StreamResult<C::Error> {
        let standalone = session_id.is_some() && last_event_id.is_none();
        let result = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        if standalone {
            self.state.send_replace(Stream::Answered);
        }
        result
    }
}
