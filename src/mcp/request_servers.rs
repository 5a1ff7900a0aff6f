//! Per-request remote MCP servers: a request's own `server_url`, connected for that request
//! only, through one pooled client built at start-up.
//!
//! [`RequestServerClient`] owns the operator's policy (`request_policy.rs`) and a reqwest
//! client with the connect timeout and total timeout of `mcp.*`, no proxy, a redirect
//! policy that re-checks every hop and a DNS resolver that drops refused addresses.
//! [`RequestServerClient::connect`] checks the URL and headers, resolves the host (a
//! refusal is typed, for a 400), then connects over streamable HTTP, falling back to legacy
//! SSE (`transport.rs`), bounded by `mcp.startup_timeout`, and lists the tools (paginated,
//! narrowed by `allowed_tools`). The [`RequestServer`] it gives calls tools like the hub
//! does (`call.rs`: timeout, progress, cancellation, flattened result, the [`Caller`]) and is
//! closed at the end of the request (or when dropped).
//!
//! Nothing here logs or returns the URL's path, query or user, or a header value: logs name
//! the label and host, errors are scrubbed of the URL. Such a server cannot sample (it may
//! not spend the gateway's LLM), and a `tools/list_changed` it sends is ignored: its tools
//! are fixed for the request. `request_hub.rs` offers them beside the hub's.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{
    Url,
    header::{HeaderName, HeaderValue},
};
use rmcp::{RoleClient, service::Peer, service::RunningService};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    ToolOutcome,
    asks::{Caller, Callers},
    call::{self, Target},
    naming::ListedTool,
    request_policy::{self, GuardedResolver, Policy, Refusal},
    supervisor,
    transport::{self, Handler, Remote},
};
use crate::config::McpConfig;

const MAX_REDIRECTS: usize = 5;
/// Connecting (TCP + TLS) never takes longer than this, whatever `mcp.startup_timeout` is.
const MAX_CONNECT: Duration = Duration::from_secs(10);
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why a request server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RequestServerError {
    /// The URL is refused by the operator's policy: a 400 naming `server_url`.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// A header cannot be sent: a 400 naming `headers` (the value is never shown).
    #[error("header {name:?}: {why}")]
    Header { name: String, why: &'static str },
    /// The server could not be reached or did not speak MCP (the host is named, never the
    /// URL's path or query).
    #[error("MCP server at {host}: {message}")]
    Connect { host: String, message: String },
    /// The pooled client could not be built (start-up).
    #[error("cannot build the client for per-request MCP servers: {0}")]
    Client(String),
}

/// The pooled client and policy for per-request servers; build it once, share it.
pub struct RequestServerClient {
    policy: Arc<Policy>,
    http: reqwest::Client,
    config: McpConfig,
}

impl RequestServerClient {
    pub fn new(config: &McpConfig) -> Result<Self, RequestServerError> {
        let policy = Arc::new(Policy::from_config(config).map_err(RequestServerError::Client)?);
        let hops = policy.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match hops.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            }
        });
        let http = reqwest::Client::builder()
            .connect_timeout(config.startup_timeout.min(MAX_CONNECT))
            .timeout(config.call_max_duration.max(config.startup_timeout))
            .redirect(redirect)
            .dns_resolver(GuardedResolver {
                allow_private: policy.allow_private(),
            })
            .no_proxy()
            .build()
            .map_err(|e| RequestServerError::Client(e.without_url().to_string()))?;
        Ok(Self {
            policy,
            http,
            config: config.clone(),
        })
    }

    /// Whether requests may name their own servers at all (`mcp.request_servers`).
    pub fn enabled(&self) -> bool {
        self.policy.enabled()
    }

    /// The policy check of `url` alone (no DNS): the parsed URL or why it is refused.
    pub fn check(&self, url: &str) -> Result<Url, Refusal> {
        self.policy.check(url)
    }

    /// Connects to `url` for one request as `label` (the server name its tools are offered
    /// under), sending `headers`, and lists its tools (only `allowed_tools` when given).
    pub async fn connect(
        &self,
        label: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        allowed_tools: Option<&[String]>,
    ) -> Result<RequestServer, RequestServerError> {
        let url = self.policy.check(url)?;
        check_headers(headers)?;
        let host = shown_host(&url);
        self.check_resolved(&url).await?;
        let connect_error = |message: String| RequestServerError::Connect {
            host: host.clone(),
            message: scrub(&message, &url),
        };
        let callers = Arc::new(Callers::default());
        let handler = Handler {
            server: Arc::from(label),
            list_changed: Arc::new(Notify::new()),
            callers: callers.clone(),
            sampling: false,
            progress: Arc::default(),
            events: tokio::sync::broadcast::channel(1).0,
        };
        let attempt = async {
            let conn = match transport::remote(
                Remote::Streamable,
                handler.clone(),
                &self.http,
                url.as_str(),
                headers,
            )
            .await
            {
                Ok(conn) => conn,
                Err(first) => {
                    let first = scrub(&first.to_string(), &url);
                    tracing::info!(server = %label, %host, "streamable HTTP failed ({first}); trying legacy SSE");
                    transport::remote(
                        Remote::LegacySse,
                        handler,
                        &self.http,
                        url.as_str(),
                        headers,
                    )
                    .await
                    .map_err(|second| format!("streamable HTTP: {first}; legacy SSE: {second}"))?
                }
            };
            transport::negotiated_version(conn.service.peer()).map_err(|e| e.to_string())?;
            let tools = supervisor::list_tools(conn.service.peer(), allowed_tools, &[]).await?;
            Ok::<_, String>((conn, tools))
        };
        let timeout = self.config.startup_timeout;
        let (conn, tools) = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| {
                connect_error(format!(
                    "did not connect and list its tools within {timeout:?}"
                ))
            })?
            .map_err(connect_error)?;
        tracing::info!(server = %label, %host, transport = conn.transport, tools = tools.len(), "request MCP server ready");
        Ok(RequestServer {
            label: label.to_string(),
            host,
            transport: conn.transport,
            tools,
            peer: conn.service.peer().clone(),
            callers,
            service: Mutex::new(Some(conn.service)),
            config: self.config.clone(),
        })
    }

    /// Resolves a named host once and refuses it when every address is of a refused class
    /// (the resolver enforces the same on the connection itself).
    async fn check_resolved(&self, url: &Url) -> Result<(), RequestServerError> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        if request_policy::ip_literal(host).is_some() {
            return Ok(());
        }
        let addrs =
            tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| RequestServerError::Connect {
                    host: host.to_string(),
                    message: format!("cannot resolve the host: {e}"),
                })?;
        request_policy::filter_addrs(addrs, self.policy.allow_private())
            .map(|_| ())
            .map_err(|class| request_policy::address_refusal(host, class).into())
    }
}

/// One request's connection to its own server.
pub struct RequestServer {
    label: String,
    host: String,
    transport: &'static str,
    tools: Vec<ListedTool>,
    peer: Peer<RoleClient>,
    callers: Arc<Callers>,
    service: Mutex<Option<RunningService<RoleClient, Handler>>>,
    config: McpConfig,
}

impl RequestServer {
    /// The server name its tools are offered under.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `host[:port]`, what logs may show of it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `streamable_http` or `sse`.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// Its tools (narrowed by `allowed_tools`), by their own names.
    pub fn tools(&self) -> &[ListedTool] {
        &self.tools
    }

    /// Calls `tool` (its own name) like the hub calls a tool: `mcp.call_timeout` reset by
    /// progress up to `mcp.call_max_duration`, `cancel` forwarded as
    /// `notifications/cancelled`, what the server asks meanwhile answered by `caller`.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Value,
        cancel: CancellationToken,
        caller: Option<Arc<dyn Caller>>,
    ) -> ToolOutcome {
        let _caller = caller.map(|c| self.callers.enter(c));
        let target = Target {
            server: &self.label,
            tool,
            timeout: self.config.call_timeout,
            config: &self.config,
            reauth: None,
        };
        call::call_with(target, arguments, &cancel, || async {
            if self.peer.is_transport_closed() {
                Err(format!(
                    "error: MCP server {:?} closed the connection",
                    self.label
                ))
            } else {
                Ok(self.peer.clone())
            }
        })
        .await
    }

    /// Closes the connection (a streamable HTTP session is deleted), waiting briefly.
    /// Idempotent; dropping the server closes it too, in the background.
    pub async fn close(&self) {
        let service = self
            .service
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut service) = service {
            let _ = service.close_with_timeout(CLOSE_GRACE).await;
        }
    }
}

/// `host[:port]` of a checked URL (no path, query or user).
fn shown_host(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Every header must be sendable; the error names it, never its value.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), RequestServerError> {
    for (name, value) in headers {
        let bad = |why| RequestServerError::Header {
            name: name.clone(),
            why,
        };
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("not a valid header name"))?;
        HeaderValue::from_str(value).map_err(|_| bad("the value is not a valid header value"))?;
    }
    Ok(())
}

/// `message` without the URL, its path or its query, whichever an inner error quoted.
fn scrub(message: &str, url: &Url) -> String {
    let mut text = message.replace(url.as_str(), &url.origin().ascii_serialization());
    let path = url.path();
    if path.len() > 1 {
        text = text.replace(path, "/…");
    }
    if let Some(query) = url.query().filter(|q| !q.is_empty()) {
        text = text.replace(query, "…");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_url_path_and_query() {
        let url = Url::parse("https://mcp.example.com/t/s3cret/mcp?key=hunter2").unwrap();
        let text = scrub(
            &format!("error sending request for url ({url}); also /t/s3cret/mcp and key=hunter2"),
            &url,
        );
        assert!(
            !text.contains("s3cret") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(text.contains("https://mcp.example.com"), "{text}");
        assert_eq!(shown_host(&url), "mcp.example.com");
        let url = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(shown_host(&url), "127.0.0.1:8080");
    }

    #[test]
    fn headers_are_checked_without_showing_values() {
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_string(), "Bearer t".to_string());
        assert!(check_headers(&headers).is_ok());
        headers.insert("bad name".to_string(), "x".to_string());
        let e = check_headers(&headers).unwrap_err().to_string();
        assert!(e.contains("bad name"), "{e}");
        let mut headers = BTreeMap::new();
        headers.insert("X-Key".to_string(), "sec\nret".to_string());
        let e = check_headers(&headers).unwrap_err().to_string();
        assert!(e.contains("X-Key") && !e.contains("sec"), "{e}");
    }

    #[tokio::test]
    async fn connect_refuses_before_sending_anything() {
        let config = McpConfig {
            request_servers: crate::config::RequestServersMode::AllowList,
            request_server_hosts: vec!["localhost:9".into()],
            ..McpConfig::default()
        };
        let client = RequestServerClient::new(&config).unwrap();
        let none = BTreeMap::new();
        let e = client
            .connect("r", "https://localhost:9/mcp", &none, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                RequestServerError::Refused(Refusal::Address {
                    class: "loopback",
                    ..
                })
            ),
            "{e}"
        );
        let e = client
            .connect("r", "https://elsewhere.example/mcp", &none, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, RequestServerError::Refused(Refusal::Host(_))),
            "{e}"
        );
    }
}
