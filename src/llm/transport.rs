//! How a chat-completions request reaches the upstream: one pooled hyper-util client (rustls,
//! HTTP/1 and HTTP/2 by ALPN) for direct connections, and reqwest for the upstreams that an
//! egress proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, minus `NO_PROXY`) must reach.
//!
//! Why two: reqwest costs about 56,000 instructions per call on the gateway's hot path, a
//! third of a whole request, much of it work a fixed POST does not need (it re-parses the URL
//! for its redirect policy and for the response, clones the headers for its retry layer and
//! boxes several futures); hyper-util's client, the one the benchmark's pass-through floor
//! uses, does the same exchange for a fraction (bench/PROFILE-NOTES.md). reqwest stays for
//! proxies, which it implements (CONNECT tunnels, `Proxy-Authorization`); the proxy decision
//! reads the same environment variables with the same matcher reqwest uses, so a URL goes
//! through a proxy here exactly when reqwest would send it through one.
//!
//! Both paths answer an `http::Response` with a boxed body, so the caller reads one type.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_util::{
    client::{
        legacy::{Client, connect::HttpConnector},
        proxy::matcher::Matcher,
    },
    rt::{TokioExecutor, TokioTimer},
};

/// An error reading an upstream body or sending a request, whichever client it came from.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream answer's body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

type Direct = Client<Connector, Full<Bytes>>;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The connector under one timeout for the TCP connect and the TLS handshake together
/// (`upstream.connect_timeout`): hyper-util's own bounds the TCP connect only.
#[derive(Clone)]
struct Connector {
    https: Https,
    timeout: Duration,
}

/// The connect attempt ran past `upstream.connect_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("connecting took longer than {0:?}")]
struct ConnectTimedOut(Duration);

impl tower::Service<http::Uri> for Connector {
    type Response = <Https as tower::Service<http::Uri>>::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.https.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(ConnectTimedOut(timeout)) as BoxError),
            }
        })
    }
}

/// The two clients and the proxy rules that choose between them.
pub struct Transport {
    direct: Direct,
    /// Built only when some proxy is configured.
    proxied: Option<(Matcher, reqwest::Client)>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("proxied", &self.proxied.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    message: String,
    /// The TCP connection was not made within the connect timeout.
    pub connect_timeout: bool,
}

impl Transport {
    /// The clients, with proxies from the environment (as reqwest reads them). Without any
    /// proxy variable set, no reqwest client is built and every call goes direct.
    pub fn from_env(connect_timeout: Duration) -> Result<Self, String> {
        const PROXY_VARS: [&str; 6] = [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ];
        let any = PROXY_VARS
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        let proxied = if any {
            let client = reqwest_builder(connect_timeout)
                .build()
                .map_err(|e| chain(&e))?;
            Some((Matcher::from_env(), client))
        } else {
            None
        };
        Ok(Self {
            direct: direct(connect_timeout)?,
            proxied,
        })
    }

    /// The clients, with every URL sent through the proxy at `proxy` (tests).
    pub fn with_proxy(connect_timeout: Duration, proxy: &str) -> Result<Self, String> {
        let matcher = Matcher::builder().all(proxy.to_owned()).build();
        let client = reqwest_builder(connect_timeout)
            .proxy(reqwest::Proxy::all(proxy).map_err(|e| chain(&e))?)
            .build()
            .map_err(|e| chain(&e))?;
        Ok(Self {
            direct: direct(connect_timeout)?,
            proxied: Some((matcher, client)),
        })
    }

    /// Sends `request`; the answer once its head is read.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Body>, SendError> {
        if let Some((matcher, client)) = &self.proxied
            && matcher.intercept(request.uri()).is_some()
        {
            let request = reqwest::Request::try_from(request).map_err(|e| send_error(&e))?;
            let response = client.execute(request).await.map_err(|e| send_error(&e))?;
            let response = http::Response::<reqwest::Body>::from(response);
            return Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()));
        }
        let response = self
            .direct
            .request(request.map(Full::new))
            .await
            .map_err(|e| send_error(&e))?;
        Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
    }
}

fn direct(connect_timeout: Duration) -> Result<Direct, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .try_with_platform_verifier()
        .map_err(|e| format!("cannot load the TLS trust roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(Connector {
            https,
            timeout: connect_timeout,
        }))
}

fn reqwest_builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        // A redirected POST would become a GET; an upstream that redirects is misconfigured.
        .redirect(reqwest::redirect::Policy::none())
}

fn send_error(e: &(dyn std::error::Error + 'static)) -> SendError {
    let mut connect_timeout = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<ConnectTimedOut>()
            || s.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || s.downcast_ref::<reqwest::Error>()
                .is_some_and(|r| r.is_connect() && r.is_timeout())
        {
            connect_timeout = true;
        }
        source = s.source();
    }
    SendError {
        message: chain(e),
        connect_timeout,
    }
}

/// An error and its sources, joined with `: ` (the clients' own messages alone are terse).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}
