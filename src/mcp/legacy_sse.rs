//! The 2024-11-05 HTTP+SSE client transport, which rmcp 3.x no longer ships.
//!
//! The client GETs the server's SSE URL and keeps the stream open. The server's first event,
//! `endpoint`, names the URL (often relative, with a session id) to which the client POSTs
//! every JSON-RPC message; the server's messages arrive as `message` events on the stream.
//! When the stream is lost the transport reconnects (a few times, with a growing pause) and
//! posts to the new endpoint; when it gives up, `receive` ends and the supervisor restarts
//! the connection. A tool call's POST carries its trace context as `traceparent`/`tracestate`
//! headers (`trace.rs`). Logs and errors name the server's origin, never its URL's path or
//! query.

use std::{borrow::Cow, time::Duration};

use futures::StreamExt;
use reqwest::{
    Url,
    header::{ACCEPT, HeaderMap, HeaderValue},
};
use rmcp::{
    RoleClient,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use sse_stream::SseStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{McpError, trace};

const MAX_RECONNECTS: u32 = 5;

/// A connected legacy SSE transport; implements rmcp's [`Transport`] for the client role.
pub struct LegacySseTransport {
    client: reqwest::Client,
    headers: HeaderMap,
    endpoint: watch::Receiver<Option<Url>>,
    rx: mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    stop: CancellationToken,
    _guard: DropGuard,
}

impl LegacySseTransport {
    /// Opens the SSE stream at `url` and waits for the `endpoint` event. The caller bounds
    /// the wait (the start-up timeout).
    pub async fn connect(
        client: reqwest::Client,
        url: &str,
        headers: HeaderMap,
    ) -> Result<Self, McpError> {
        let url = Url::parse(url).map_err(|e| McpError::Connect(format!("bad URL: {e}")))?;
        let (tx, rx) = mpsc::channel(64);
        let (endpoint_tx, mut endpoint) = watch::channel(None);
        let (fail_tx, fail_rx) = oneshot::channel();
        let stop = CancellationToken::new();
        tokio::spawn(read_loop(Reader {
            client: client.clone(),
            url,
            headers: headers.clone(),
            tx,
            endpoint: endpoint_tx,
            stop: stop.clone(),
            first_failure: Some(fail_tx),
        }));
        tokio::select! {
            // A failure wins over the closed endpoint channel it also causes.
            biased;
            r = fail_rx => {
                let msg = r.unwrap_or_else(|_| "the SSE reader stopped".into());
                stop.cancel();
                return Err(McpError::Connect(msg));
            }
            r = endpoint.wait_for(Option::is_some) => {
                r.map_err(|_| McpError::Connect("the SSE stream ended before an endpoint event".into()))?;
            }
        }
        Ok(Self {
            client,
            headers,
            endpoint,
            rx,
            _guard: stop.clone().drop_guard(),
            stop,
        })
    }
}

impl Transport<RoleClient> for LegacySseTransport {
    type Error = McpError;

    fn name() -> Cow<'static, str> {
        "legacy-sse".into()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let client = self.client.clone();
        let mut headers = self.headers.clone();
        for (name, value) in trace::headers_of(&item) {
            headers.insert(name, value);
        }
        let endpoint = self.endpoint.borrow().clone();
        async move {
            let endpoint =
                endpoint.ok_or_else(|| McpError::Connect("no endpoint from the server".into()))?;
            let resp = client
                .post(endpoint)
                .headers(headers)
                .json(&item)
                .send()
                .await
                .map_err(|e| McpError::Connect(format!("POST failed: {}", e.without_url())))?;
            if !resp.status().is_success() {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                return Err(McpError::Connect(format!(
                    "POST answered {status}: {}",
                    body.chars().take(200).collect::<String>()
                )));
            }
            Ok(())
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.rx.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.stop.cancel();
        Ok(())
    }
}

struct Reader {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    tx: mpsc::Sender<RxJsonRpcMessage<RoleClient>>,
    endpoint: watch::Sender<Option<Url>>,
    stop: CancellationToken,
    first_failure: Option<oneshot::Sender<String>>,
}

async fn read_loop(mut r: Reader) {
    let mut failures = 0u32;
    loop {
        let outcome = tokio::select! {
            o = read_stream(&r) => o,
            () = r.stop.cancelled() => return,
        };
        let message = match outcome {
            Ok(()) => "the SSE stream ended".to_string(),
            Err(e) => e,
        };
        if r.endpoint.borrow().is_none()
            && let Some(fail) = r.first_failure.take()
        {
            let _ = fail.send(message);
            return;
        }
        r.first_failure = None;
        failures += 1;
        if failures > MAX_RECONNECTS || r.tx.is_closed() {
            tracing::warn!(origin = %origin(&r.url), "legacy SSE: giving up after {message}");
            return;
        }
        tracing::info!(origin = %origin(&r.url), "legacy SSE: {message}; reconnecting");
        r.endpoint.send_replace(None);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500) * failures) => {}
            () = r.stop.cancelled() => return,
        }
    }
}

/// Reads one SSE connection to its end. `Err` says why it failed.
async fn read_stream(r: &Reader) -> Result<(), String> {
    let resp = r
        .client
        .get(r.url.clone())
        .headers(r.headers.clone())
        .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
        .send()
        .await
        .map_err(|e| format!("GET {} failed: {}", origin(&r.url), e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("GET {} answered {}", origin(&r.url), resp.status()));
    }
    let mut events = SseStream::from_bytes_stream(resp.bytes_stream());
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| format!("SSE stream error: {e}"))?;
        let data = event.data.unwrap_or_default();
        match event.event.as_deref() {
            Some("endpoint") => {
                let url = resolve_endpoint(&r.url, &data)?;
                tracing::debug!(origin = %origin(&url), "legacy SSE endpoint");
                r.endpoint.send_replace(Some(url));
            }
            None | Some("message") => {
                if data.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<RxJsonRpcMessage<RoleClient>>(&data) {
                    Ok(msg) => {
                        if r.tx.send(msg).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(origin = %origin(&r.url), "legacy SSE: bad message: {e}")
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What of a URL logs and errors show: its origin, never the path or query (a token may be
/// in either) or a user.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Resolves the `endpoint` event's data against the SSE URL; it must stay on the same origin.
pub fn resolve_endpoint(base: &Url, data: &str) -> Result<Url, String> {
    let url = base
        .join(data.trim())
        .map_err(|e| format!("bad endpoint {data:?}: {e}"))?;
    if url.origin() != base.origin() {
        return Err(format!(
            "endpoint on {} is not on the origin of {}; refusing it",
            origin(&url),
            origin(base)
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:3001/api/sse?x=1").unwrap()
    }

    #[test]
    fn absolute_paths_replace_the_path() {
        let u = resolve_endpoint(&base(), "/messages?sessionId=abc").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:3001/messages?sessionId=abc");
    }

    #[test]
    fn relative_paths_resolve_against_the_sse_directory() {
        let u = resolve_endpoint(&base(), "messages?sessionId=abc").unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:3001/api/messages?sessionId=abc"
        );
    }

    #[test]
    fn full_urls_on_the_same_origin_are_kept() {
        let u = resolve_endpoint(&base(), " http://127.0.0.1:3001/m?s=1 \n").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:3001/m?s=1");
    }

    #[test]
    fn other_origins_are_refused() {
        let e = resolve_endpoint(&base(), "http://evil.example/m").unwrap_err();
        assert!(e.contains("not on the origin"), "{e}");
    }
}
