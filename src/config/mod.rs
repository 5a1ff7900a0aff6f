//! The service's configuration: typed sections, their defaults, and the one loader that
//! layers them (built-in defaults < `mcp-chat.toml` < `.env` < environment < CLI flags).
//!
//! Everything is validated once at start-up; the rest of the program receives `&Config`
//! sections and never reads the environment itself. Secrets are [`Secret`]s, which never
//! print. `servers_config.json` (the MCP servers) lives in [`servers`].

mod duration;
mod env;
mod error;
mod hosts;
mod keys;
mod load;
pub mod servers;
mod validate;

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use env::{ENV_VARS, EnvVar};
pub use error::{ConfigError, Problem};
pub use hosts::HostPattern;
pub use keys::{KeyAccess, KeyConfig};
pub use load::{Overrides, load};
pub use servers::{
    EnterpriseConfig, McpServerConfig, McpTransportConfig, OAuthConfig, OAuthGrant, ServersConfig,
};
pub use validate::decode_token_key;

/// The whole configuration of one process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    /// Models exposed to clients. Empty means one model built from `[upstream]`
    /// (`DEFAULT_MODEL` at `OPENAI_BASE_URL` with `OPENAI_API_KEY`), as the seed had.
    pub models: Vec<ModelConfig>,
    pub mcp: McpConfig,
    pub agent: AgentConfig,
    pub sessions: SessionsConfig,
    pub log: LogConfig,
    /// Named client keys with their access (`[[api_keys]]`), beside `server.api_keys`.
    pub api_keys: Vec<KeyConfig>,
    /// The MCP servers, read from `mcp.servers_config` (not a TOML key).
    #[serde(skip)]
    pub servers: ServersConfig,
}

/// Listeners, client authentication and HTTP limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address both listeners bind to.
    pub host: String,
    /// HTTP port (Simplified API, OpenAI-compatible API, health, metrics).
    pub port: u16,
    /// gRPC port (ChatService, grpc.health.v1, reflection).
    pub grpc_port: u16,
    /// Client keys accepted as `Authorization: Bearer <key>`; empty means no auth.
    #[serde(deserialize_with = "secret_list")]
    pub api_keys: Vec<Secret>,
    /// Origins allowed by CORS; empty allows none, `["*"]` allows any.
    #[serde(deserialize_with = "string_list")]
    pub cors_allow_origins: Vec<String>,
    /// Largest accepted HTTP request body in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests and streams may run on after SIGTERM/SIGINT.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Requests served at once over both listeners; more are refused at once (HTTP 503 with
    /// `Retry-After`, gRPC UNAVAILABLE) instead of queueing. An open stream holds one for its
    /// whole life, so this is also the number of concurrent streams served (a stream costs a
    /// few KiB: the default 4096 holds the 2,048 streams of the benchmark with room).
    pub max_in_flight: usize,
    /// How long a client may take to send a request's headers before its connection closes.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's whole body (a body that trickles in
    /// would otherwise hold an in-flight slot for as long as the client likes).
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// Serve the built-in web chat page at `/ui` (off in the Kubernetes overlay).
    pub ui: bool,
}

/// `server.body_read_timeout` when not configured.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8000,
            grpc_port: 50051,
            api_keys: Vec::new(),
            cors_allow_origins: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(25),
            max_in_flight: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            ui: true,
        }
    }
}

/// The default upstream (the seed's `OPENAI_*` settings) and how every upstream is called.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// OpenAI-compatible base URL, up to and including `/v1`.
    pub base_url: String,
    /// Key sent as `Authorization: Bearer`; may be empty for local servers.
    pub api_key: Secret,
    /// The model used when a request names none (and the id of the implicit model).
    pub default_model: String,
    /// TCP + TLS connect timeout.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time from sending a request to the first byte of the answer.
    #[serde(with = "duration")]
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of a streamed answer.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Upper bound on one upstream call, retries included.
    #[serde(with = "duration")]
    pub total_timeout: Duration,
    /// Retries after the first attempt on connect errors, 408, 409, 429 and 5xx.
    pub max_retries: u32,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            api_key: Secret::default(),
            default_model: "gpt-3.5-turbo".into(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(600),
            max_retries: 2,
        }
    }
}

/// How a model is offered tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolMode {
    /// OpenAI function calling (`tools` / `tool_calls`).
    #[default]
    Native,
    /// Tools described in the system prompt, calls parsed from JSON in the reply.
    Prompt,
}

impl ToolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Prompt => "prompt",
        }
    }
}

/// One entry of `[[models]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients use.
    pub id: String,
    /// Upstream base URL; defaults to `upstream.base_url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Upstream key; defaults to `api_key_env`'s value, then `upstream.api_key`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Name of an environment variable holding the upstream key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The model name sent upstream; defaults to `id`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default)]
    pub tool_mode: ToolMode,
    /// Context window in tokens; 0 = unknown (no trimming).
    #[serde(default)]
    pub context_window: u32,
    /// Generation defaults applied when a request leaves them unset.
    #[serde(default)]
    pub params: ModelParams,
    /// Extra headers sent upstream with every call (values are secret).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Send the completion-length limit always under this name (`max_tokens` for
    /// upstreams that do not know `max_completion_tokens`); unset: the name the caller used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_field: Option<MaxTokensField>,
    /// Whether a streamed call asks the upstream for its usage
    /// (`stream_options: {include_usage: true}`); unset: yes. Off for OpenAI-compatible
    /// servers that refuse `stream_options`: the turn's usage is then estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_usage: Option<bool>,
}

/// The name of the completion-length limit in an upstream request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_tokens`, which every OpenAI-compatible server knows.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`, OpenAI's newer name (required by its reasoning models).
    MaxCompletionTokens,
}

/// Per-model generation defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
}

/// How tool names of several servers are kept apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolPrefix {
    /// `server__tool` only for names two servers share.
    #[default]
    OnCollision,
    /// `server__tool` for every tool.
    Always,
}

/// The MCP hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Path of the `mcpServers` JSON file.
    pub servers_config: PathBuf,
    pub tool_prefix: ToolPrefix,
    /// Default per-call timeout (a server's `timeout` overrides it).
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    /// Hard maximum of a call that keeps reporting progress.
    #[serde(with = "duration")]
    pub call_max_duration: Duration,
    /// Retries of a call after a transport failure or a server restart.
    pub call_retries: u32,
    /// Largest tool result handed to the model, in bytes.
    pub max_tool_output: usize,
    /// How long a server may take to start and list its tools.
    #[serde(with = "duration")]
    pub startup_timeout: Duration,
    /// Longest wait between two restarts of a failing server.
    #[serde(with = "duration")]
    pub max_restart_backoff: Duration,
    /// Whether a request may name its own remote MCP server (`server_url`).
    pub request_servers: RequestServersMode,
    /// The hosts a request's `server_url` may name in `allow-list` mode ([`HostPattern`]s:
    /// `example.com`, `*.example.com`, optional `:port`; `http://host` also allows plain http).
    #[serde(deserialize_with = "string_list")]
    pub request_server_hosts: Vec<String>,
    /// Whether a request server may be reached at a loopback, private, link-local,
    /// unique-local, unspecified or multicast address (after DNS resolution).
    pub request_server_private: bool,
    /// Whether mcp-chat serves the hub's tools, resources and prompts as an MCP server at
    /// `/mcp` (streamable HTTP).
    pub serve: bool,
    /// Whether `/mcp` also offers a `chat` tool that runs a whole agent turn.
    pub serve_chat_tool: bool,
    /// `Host` values `/mcp` accepts (`host` or `host:port`; DNS-rebinding guard); empty:
    /// any host.
    #[serde(deserialize_with = "string_list")]
    pub serve_allowed_hosts: Vec<String>,
    /// The key OAuth tokens of remote MCP servers are encrypted with in the session store:
    /// 32 bytes, base64 or hex (`MCP_CHAT_TOKEN_KEY`). Empty: tokens live in this process's
    /// memory only.
    pub token_key: Secret,
}

/// `mcp.request_servers`: whether requests may bring their own remote MCP servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestServersMode {
    /// Refused.
    #[default]
    Off,
    /// Allowed for the hosts of `mcp.request_server_hosts`.
    AllowList,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            servers_config: PathBuf::from("./servers_config.json"),
            tool_prefix: ToolPrefix::OnCollision,
            call_timeout: Duration::from_secs(60),
            call_max_duration: Duration::from_secs(600),
            call_retries: 2,
            max_tool_output: 64 * 1024,
            startup_timeout: Duration::from_secs(60),
            max_restart_backoff: Duration::from_secs(60),
            request_servers: RequestServersMode::Off,
            request_server_hosts: Vec::new(),
            request_server_private: false,
            serve: true,
            serve_chat_tool: false,
            serve_allowed_hosts: Vec::new(),
            token_key: Secret::default(),
        }
    }
}

/// The tool-calling loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Prepended as a system message when a request has none.
    pub system_prompt: Option<String>,
    /// A file whose text is the system prompt (instead of `system_prompt`).
    pub system_prompt_file: Option<PathBuf>,
    /// Rounds of tool calls in one turn before the agent stops.
    pub max_tool_iterations: u32,
    /// Announce server-side tool calls in OpenAI streams (as ignorable SSE events).
    pub expose_tool_events: bool,
    /// The most tokens one answer to an MCP server's sampling request may take (the
    /// server's own `maxTokens` applies when smaller).
    pub max_sampling_tokens: u32,
    /// How long a request waiting on the caller (an elicitation) stays open; unanswered
    /// by then it counts as declined.
    #[serde(with = "duration")]
    pub approval_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            system_prompt: None,
            system_prompt_file: None,
            max_tool_iterations: 10,
            expose_tool_events: false,
            max_sampling_tokens: 1024,
            approval_timeout: Duration::from_secs(600),
        }
    }
}

/// Server-side conversation memory.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// `sqlite://PATH`, `memory://` or `redis://HOST:PORT/DB` (`rediss://`).
    /// A password in the URL is redacted when the config is printed.
    #[serde(serialize_with = "redact_url_password")]
    pub store: String,
    /// Idle sessions expire after this.
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// How long a request waits for a session another request is using.
    #[serde(with = "duration")]
    pub lock_timeout: Duration,
}

impl fmt::Debug for SessionsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionsConfig")
            .field("store", &redacted_url(&self.store))
            .field("ttl", &self.ttl)
            .field("lock_timeout", &self.lock_timeout)
            .finish()
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            store: "sqlite://./data/mcp-chat.db".into(),
            ttl: Duration::from_secs(7 * 24 * 3600),
            lock_timeout: Duration::from_secs(30),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `mcp_chat=debug,info`…); `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A value that must never be printed: keys, tokens, URLs with passwords.
///
/// `Debug` and `Serialize` show `"<redacted>"` for a non-empty value, so logging a
/// config or printing it with `check-config` cannot leak it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The real value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { REDACTED })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A list given either as an array or as one comma-separated string (`API_KEYS=a,b`).
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Self::Many(v) => v,
        }
    }
}

fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    StringOrList::deserialize(d).map(StringOrList::into_vec)
}

fn secret_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    string_list(d).map(|v| v.into_iter().map(Secret).collect())
}

/// Serializes a URL with any `user:password@` part replaced.
fn redact_url_password<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted_url(url))
}

/// `scheme://user:secret@host/…` → `scheme://<redacted>@host/…`.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{REDACTED}{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// The models clients can use: `[[models]]`, or the implicit one from `[upstream]`.
    pub fn effective_models(&self) -> Vec<ModelConfig> {
        if !self.models.is_empty() {
            return self.models.clone();
        }
        vec![ModelConfig {
            id: self.upstream.default_model.clone(),
            ..ModelConfig::default()
        }]
    }

    /// Renders the effective configuration as TOML with every secret redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut out =
            toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        out.push_str("\n# servers_config.json (resolved; env and header values redacted)\n");
        out.push_str(&self.servers.to_redacted_toml());
        out
    }
}

#[cfg(test)]
mod tests;
