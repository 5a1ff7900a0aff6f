//! Connection set-up per transport: stdio child processes, streamable HTTP, legacy SSE, and
//! `http` (streamable HTTP, falling back to legacy SSE as the MCP specification's
//! backwards-compatibility section describes). Both HTTP transports send a tool call's trace
//! context as `traceparent`/`tracestate` headers too (`trace.rs`).
//!
//! Stdio children run in their own process group with piped stdio; their stderr is logged
//! line by line under the server's name. A [`ChildGuard`] owns the child: it reports the exit
//! at once and, when stopped, terminates the whole group (SIGTERM, then SIGKILL) and waits
//! for it, so no orphan or zombie is left.

use std::{
    collections::{BTreeMap, HashMap},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop, ProcessGroup};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use rmcp::{
    RoleClient, ServiceExt,
    service::RunningService,
    transport::{
        IntoTransport, StreamableHttpClientTransport,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::watch,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

pub use super::handler::Handler;
use super::{
    McpError,
    legacy_sse::LegacySseTransport,
    stream_gate::{Opened, StreamGate},
    trace::TracingHttpClient,
};

/// How long a new streamable HTTP connection waits for its server's `GET` stream before
/// it is used (`stream_gate.rs`).
const STREAM_OPEN_WAIT: Duration = Duration::from_secs(2);
use crate::config::{McpServerConfig, McpTransportConfig};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
const TERM_GRACE: Duration = Duration::from_secs(2);

/// A live connection to one server.
pub struct Connection {
    pub service: RunningService<RoleClient, Handler>,
    /// The stdio child, if any.
    pub child: Option<ChildGuard>,
    /// The renewal of a client-credentials token, for as long as the connection lives.
    pub renewal: Option<super::oauth::Renewal>,
    /// The transport actually used (`http` resolves to one of the other two).
    pub transport: &'static str,
}

/// The protocol version the server answered `initialize` with, when it is one this client
/// speaks (a revision with the handshake, no newer than the one it asked for); the error
/// names it otherwise.
pub fn negotiated_version(peer: &rmcp::service::Peer<RoleClient>) -> Result<String, McpError> {
    use rmcp::model::ProtocolVersion;
    let version = peer
        .peer_info()
        .map(|info| info.protocol_version.clone())
        .ok_or_else(|| McpError::Connect("the server sent no initialize result".into()))?;
    let known = ProtocolVersion::known_up_to(&ProtocolVersion::LATEST_WITH_INITIALIZE);
    if known.contains(&version) {
        Ok(version.to_string())
    } else {
        let speaks: Vec<&str> = known.iter().map(ProtocolVersion::as_str).collect();
        Err(McpError::Connect(format!(
            "the server answered initialize with protocol version {:?}, which this client does not speak ({})",
            version.as_str(),
            speaks.join(", ")
        )))
    }
}

/// Connects to `config` and runs the MCP initialisation. Not bounded here: the caller
/// applies the start-up timeout (dropping the future kills a half-started child).
pub async fn connect(
    config: &McpServerConfig,
    handler: Handler,
    http: &reqwest::Client,
    vault: &Arc<super::oauth::TokenVault>,
) -> Result<Connection, McpError> {
    if let Some(auth) = &config.auth {
        return authorized(config, auth, handler, http, vault).await;
    }
    plain(config, handler, http).await.map_err(|e| match e {
        McpError::NeedsAuth(m) => McpError::NeedsAuth(format!(
            "{m}: add \"auth\": {{\"type\": \"oauth\"}} to its entry in servers_config.json, then run `mcp-chat auth login {}`",
            config.name
        )),
        other => other,
    })
}

/// A connection without OAuth.
async fn plain(
    config: &McpServerConfig,
    handler: Handler,
    http: &reqwest::Client,
) -> Result<Connection, McpError> {
    match &config.transport {
        McpTransportConfig::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let (io, mut child) = spawn_stdio(&config.name, command, args, env, cwd.as_deref())?;
            let service = match handler.serve(io).await {
                Ok(service) => service,
                Err(e) => {
                    // Say how the child ended (with its last stderr line) when it did.
                    let exit = tokio::time::timeout(Duration::from_secs(1), child.exited())
                        .await
                        .map(|why| format!("; {why}"))
                        .unwrap_or_default();
                    child.stop().await;
                    return Err(McpError::Connect(format!(
                        "initialisation failed: {e}{exit}"
                    )));
                }
            };
            Ok(Connection {
                service,
                child: Some(child),
                renewal: None,
                transport: "stdio",
            })
        }
        McpTransportConfig::StreamableHttp { url, headers } => {
            remote(Remote::Streamable, handler, http, url, headers).await
        }
        McpTransportConfig::Sse { url, headers } => {
            remote(Remote::LegacySse, handler, http, url, headers).await
        }
        McpTransportConfig::Http { url, headers } => {
            match remote(Remote::Streamable, handler.clone(), http, url, headers).await {
                Ok(c) => Ok(c),
                // A server that asks for authorization speaks streamable HTTP.
                Err(e @ McpError::NeedsAuth(_)) => Err(e),
                Err(first) => {
                    tracing::info!(server = %config.name, "streamable HTTP failed ({first}); trying legacy SSE");
                    let legacy = remote(Remote::LegacySse, handler, http, url, headers).await;
                    legacy.map_err(|second| {
                        McpError::Connect(format!("streamable HTTP: {first}; legacy SSE: {second}"))
                    })
                }
            }
        }
    }
}

/// A streamable HTTP connection with an OAuth token source (the `auth` of `config`).
async fn authorized(
    config: &McpServerConfig,
    auth: &crate::config::OAuthConfig,
    handler: Handler,
    http: &reqwest::Client,
    vault: &Arc<super::oauth::TokenVault>,
) -> Result<Connection, McpError> {
    let (McpTransportConfig::StreamableHttp { url, headers }
    | McpTransportConfig::Http { url, headers }) = &config.transport
    else {
        return Err(McpError::Connect(
            "OAuth needs the streamable HTTP transport".into(),
        ));
    };
    let authorized = super::oauth::connect(vault, &config.name, url, auth, http)
        .await
        .map_err(|e| {
            if e.needs_auth() {
                McpError::NeedsAuth(e.to_string())
            } else {
                McpError::Connect(e.to_string())
            }
        })?;
    let mut custom = HashMap::new();
    for (name, value) in header_map(headers)? {
        if let Some(name) = name {
            custom.insert(name, value);
        }
    }
    let (client, opened) = StreamGate::new(authorized.client);
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).custom_headers(custom),
    );
    let mut conn = serve_streamable(handler, transport, opened)
        .await
        .map_err(|e| match e {
            // Refused with the token just checked: revoked, or a scope is missing.
            McpError::NeedsAuth(m) => {
                McpError::NeedsAuth(format!("{m}; run `mcp-chat auth login {}`", config.name))
            }
            other => other,
        })?;
    conn.renewal = authorized.renewal;
    Ok(conn)
}

/// The two HTTP transports.
#[derive(Clone, Copy)]
pub(super) enum Remote {
    Streamable,
    LegacySse,
}

/// Connects over an HTTP transport: the transport is built, then the tail both share.
pub(super) async fn remote(
    kind: Remote,
    handler: Handler,
    http: &reqwest::Client,
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<Connection, McpError> {
    let headers = header_map(headers)?;
    match kind {
        Remote::Streamable => {
            let (transport, opened) = streamable(http, url, headers);
            serve_streamable(handler, transport, opened).await
        }
        Remote::LegacySse => {
            let transport = LegacySseTransport::connect(http.clone(), url, headers).await?;
            serve_remote(handler, transport, "sse").await
        }
    }
}

/// What a `WWW-Authenticate` challenge asks for, without its parameters' noise: its
/// `error` and `scope` when given.
pub(super) fn challenge_summary(challenge: &str) -> String {
    let Ok(base) = reqwest::Url::parse("http://localhost/") else {
        return "HTTP 401".into();
    };
    let params = rmcp::transport::WWWAuthenticateParams::parse(challenge, &base);
    let mut parts = Vec::new();
    if let Some(error) = &params.error {
        parts.push(format!("error {error}"));
    }
    if let Some(scope) = &params.scope {
        parts.push(format!("scope {scope:?}"));
    }
    if parts.is_empty() {
        "HTTP 401".into()
    } else {
        parts.join(", ")
    }
}

/// The streamable HTTP transport; a bearer `Authorization` header becomes its auth header.
fn streamable(
    http: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
) -> (
    StreamableHttpClientTransport<StreamGate<TracingHttpClient>>,
    Opened,
) {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    let mut custom = HashMap::new();
    for (name, value) in headers {
        let Some(name) = name else { continue };
        if name == AUTHORIZATION
            && let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer "))
        {
            config = config.auth_header(token.to_string());
            continue;
        }
        custom.insert(name, value);
    }
    let (client, opened) = StreamGate::new(TracingHttpClient(http.clone()));
    let transport =
        StreamableHttpClientTransport::with_client(client, config.custom_headers(custom));
    (transport, opened)
}

/// [`serve_remote`] over streamable HTTP, returning once the server's `GET` stream is open
/// (or after [`STREAM_OPEN_WAIT`]), so nothing it sends there is lost.
async fn serve_streamable<C>(
    handler: Handler,
    transport: StreamableHttpClientTransport<C>,
    opened: Opened,
) -> Result<Connection, McpError>
where
    C: rmcp::transport::streamable_http_client::StreamableHttpClient + Send + Sync + 'static,
{
    let conn = serve_remote(handler, transport, "streamable_http").await?;
    opened.wait(STREAM_OPEN_WAIT).await;
    Ok(conn)
}

/// The tail both HTTP transports share: the MCP initialisation over `transport`, and the
/// connection (no child) it gives.
async fn serve_remote<T, E, A>(
    handler: Handler,
    transport: T,
    kind: &'static str,
) -> Result<Connection, McpError>
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let service = handler
        .serve(transport)
        .await
        .map_err(|e| match e.auth_challenge() {
            Some(challenge) => McpError::NeedsAuth(format!(
                "the server asks for authorization ({})",
                challenge_summary(challenge)
            )),
            None => McpError::Connect(format!("{e}")),
        })?;
    Ok(Connection {
        service,
        child: None,
        renewal: None,
        transport: kind,
    })
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, McpError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| McpError::Connect(format!("bad header name {k:?}: {e}")))?;
        let value = HeaderValue::from_str(v)
            .map_err(|e| McpError::Connect(format!("bad value for header {k:?}: {e}")))?;
        map.insert(name, value);
    }
    Ok(map)
}

type ChildIo = (tokio::process::ChildStdout, tokio::process::ChildStdin);

fn spawn_stdio(
    server: &str,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&std::path::Path>,
) -> Result<(ChildIo, ChildGuard), McpError> {
    let mut cmd = CommandWrap::with_new(command, |c| {
        c.args(args)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = cwd {
            c.current_dir(cwd);
        }
    });
    cmd.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    let mut child = cmd.spawn().map_err(|source| McpError::Spawn {
        command: command.to_string(),
        source,
    })?;
    let (Some(stdin), Some(stdout)) = (child.stdin().take(), child.stdout().take()) else {
        return Err(McpError::Connect("the child has no stdin/stdout".into()));
    };
    let last_stderr = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr().take() {
        let server = server.to_string();
        let last = last_stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "mcp_chat::mcp::stderr", server = %server, "{line}");
                if !line.trim().is_empty()
                    && let Ok(mut l) = last.lock()
                {
                    *l = line;
                }
            }
        });
    }
    let pid = child.id();
    tracing::info!(server, ?pid, command, "started MCP server process");
    let stop = CancellationToken::new();
    let (exit_tx, exited) = watch::channel(None);
    let task = tokio::spawn(own_child(child, stop.clone(), exit_tx, last_stderr));
    Ok((
        (stdout, stdin),
        ChildGuard {
            pid,
            stop,
            exited,
            task: Some(task),
        },
    ))
}

/// Owns a stdio child: reports its exit, and kills its process group when told to.
pub struct ChildGuard {
    pub pid: Option<u32>,
    stop: CancellationToken,
    exited: watch::Receiver<Option<String>>,
    task: Option<JoinHandle<()>>,
}

impl ChildGuard {
    /// Resolves once the child has exited, with a description of how.
    pub async fn exited(&mut self) -> String {
        match self.exited.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => "the process is gone".into(),
        }
    }

    /// Terminates the process group and waits until it is reaped.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // The owning task kills and reaps the group in the background.
        self.stop.cancel();
    }
}

async fn own_child(
    mut child: Box<dyn ChildWrapper>,
    stop: CancellationToken,
    exit_tx: watch::Sender<Option<String>>,
    last_stderr: Arc<Mutex<String>>,
) {
    let exited = tokio::select! {
        status = child.wait() => Some(status),
        () = stop.cancelled() => None,
    };
    let status = match exited {
        Some(status) => {
            // The leader is gone; take any process it left in its group with it.
            let _ = child.signal(SIGKILL);
            status
        }
        None => {
            let _ = child.signal(SIGTERM);
            match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                Ok(status) => {
                    let _ = child.signal(SIGKILL);
                    status
                }
                Err(_) => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
    };
    let mut text = match status {
        Ok(s) => format!("the process exited ({s})"),
        Err(e) => format!("the process could not be waited for: {e}"),
    };
    if let Ok(last) = last_stderr.lock()
        && !last.is_empty()
    {
        text.push_str(&format!("; last stderr line: {}", last.as_str()));
    }
    exit_tx.send_replace(Some(text));
}
