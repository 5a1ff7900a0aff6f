//! `servers_config.json`: the MCP servers, in the Claude Desktop `mcpServers` format.
//!
//! ```json
//! { "mcpServers": {
//!     "sqlite": { "command": "uvx", "args": ["mcp-server-sqlite", "--db-path", "test.db"] },
//!     "remote": { "type": "sse", "url": "https://example.com/sse", "headers": { "Authorization": "Bearer ${TOKEN}" } }
//! } }
//! ```
//!
//! `${VAR}` in `args`, `env`, `url` and `headers` is replaced from the environment (then
//! `.env`); a missing variable is an error naming the server and the variable. The file is
//! parsed and resolved here once; the MCP hub receives [`McpServerConfig`]s.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use super::{ConfigError, redacted_url};

mod oauth;
pub use oauth::{EnterpriseConfig, OAuthConfig, OAuthGrant};
use oauth::{RawAuth, resolve_auth};

/// The resolved MCP servers, in name order.
#[derive(Debug, Clone, Default)]
pub struct ServersConfig {
    /// The file they came from (for messages).
    pub path: Option<PathBuf>,
    pub servers: Vec<McpServerConfig>,
}

/// One MCP server, ready for the hub.
#[derive(Debug, Clone)]
pub struct McpServerConfig {
    pub name: String,
    pub transport: McpTransportConfig,
    /// Listed but not started.
    pub disabled: bool,
    /// Per-call timeout; `mcp.call_timeout` when unset.
    pub timeout: Option<Duration>,
    /// Only these tools are offered (all when `None`).
    pub allowed_tools: Option<Vec<String>>,
    /// These tools are never offered.
    pub disabled_tools: Vec<String>,
    /// The service is not ready while this server is down.
    pub required: bool,
    /// The server may ask for LLM completions (`sampling/createMessage`); `"sampling": false`
    /// turns it off.
    pub sampling: bool,
    /// OAuth 2.1 to a remote server (`"auth": {"type": "oauth", …}`).
    pub auth: Option<OAuthConfig>,
}

/// How to reach a server. `Debug` redacts env and header values and URL passwords.
#[derive(Clone, PartialEq)]
pub enum McpTransportConfig {
    /// A child process speaking JSON-RPC on stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    /// MCP streamable HTTP (2025-03-26 and later).
    StreamableHttp {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// `type: "http"` or a bare `url`: streamable HTTP, falling back to legacy SSE.
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl std::fmt::Debug for McpTransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.shown();
        match shown.command {
            Some((command, args)) => f
                .debug_struct("Stdio")
                .field("command", &command)
                .field("args", &args)
                .field("env", &shown.names_with("=<redacted>"))
                .field("cwd", &shown.cwd)
                .finish(),
            None => f
                .debug_struct(self.kind())
                .field("url", &shown.url.as_deref().unwrap_or_default())
                .field("headers", &shown.names_with(": <redacted>"))
                .finish(),
        }
    }
}

/// What of a transport may be shown (`Debug`, `check-config`): the names of env variables and
/// headers without their values, the URL without its password. The one redaction path.
struct Shown<'a> {
    /// Stdio: the command and its arguments.
    command: Option<(&'a str, &'a [String])>,
    cwd: Option<&'a Path>,
    /// The HTTP transports: the URL, password removed.
    url: Option<String>,
    /// The env variable names (stdio) or header names (HTTP); never their values.
    secret_names: Vec<&'a str>,
}

impl Shown<'_> {
    fn names_with(&self, suffix: &str) -> Vec<String> {
        self.secret_names
            .iter()
            .map(|name| format!("{name}{suffix}"))
            .collect()
    }
}

impl McpTransportConfig {
    fn shown(&self) -> Shown<'_> {
        fn names(map: &BTreeMap<String, String>) -> Vec<&str> {
            map.keys().map(String::as_str).collect()
        }
        match self {
            Self::Stdio {
                command,
                args,
                env,
                cwd,
            } => Shown {
                command: Some((command, args)),
                cwd: cwd.as_deref(),
                url: None,
                secret_names: names(env),
            },
            Self::StreamableHttp { url, headers }
            | Self::Sse { url, headers }
            | Self::Http { url, headers } => Shown {
                command: None,
                cwd: None,
                url: Some(redacted_url(url)),
                secret_names: names(headers),
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::StreamableHttp { .. } => "streamable_http",
            Self::Sse { .. } => "sse",
            Self::Http { .. } => "http",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(rename = "mcpServers")]
    mcp_servers: BTreeMap<String, RawServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawServer {
    #[serde(rename = "type", alias = "transport")]
    kind: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    disabled: bool,
    /// Seconds.
    timeout: Option<f64>,
    allowed_tools: Option<Vec<String>>,
    #[serde(default)]
    disabled_tools: Vec<String>,
    #[serde(default)]
    required: bool,
    sampling: Option<bool>,
    auth: Option<RawAuth>,
    /// Free text some clients keep beside a server; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

impl ServersConfig {
    /// Reads and resolves the file. `lookup` finds `${VAR}` values.
    pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError::Servers {
            path: path.to_path_buf(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        Self::parse(&text, lookup)
            .map(|mut c| {
                c.path = Some(path.to_path_buf());
                c
            })
            .map_err(err)
    }

    /// Parses and resolves the JSON text; the error is a message without the path.
    pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| {
            format!(
                "line {}, column {}: {} (expected {{\"mcpServers\": {{\"name\": {{\"command\": …}} | {{\"url\": …}}}}}})",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            )
        })?;
        let mut servers = Vec::with_capacity(raw.mcp_servers.len());
        for (name, server) in raw.mcp_servers {
            servers.push(
                resolve(&name, server, lookup).map_err(|m| format!("mcpServers.{name}: {m}"))?,
            );
        }
        Ok(Self {
            path: None,
            servers,
        })
    }

    /// A TOML-ish listing for `check-config`, with env and header values redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut out = String::new();
        for s in &self.servers {
            out.push_str(&format!(
                "# [{}] transport = {:?}",
                s.name,
                s.transport.kind()
            ));
            let shown = s.transport.shown();
            let what = match shown.command {
                Some((command, args)) => {
                    out.push_str(&format!(", command = {command:?}, args = {args:?}"));
                    "env"
                }
                None => {
                    out.push_str(&format!(", url = {:?}", shown.url.unwrap_or_default()));
                    "headers"
                }
            };
            if !shown.secret_names.is_empty() {
                out.push_str(&format!(
                    ", {what} = {:?} (values redacted)",
                    shown.secret_names
                ));
            }
            if let Some(cwd) = shown.cwd {
                out.push_str(&format!(", cwd = {:?}", cwd.display().to_string()));
            }
            if s.disabled {
                out.push_str(", disabled");
            }
            if s.required {
                out.push_str(", required");
            }
            if let Some(auth) = &s.auth {
                out.push_str(&format!(", auth = oauth ({})", auth.grant.as_str()));
                if let Some(id) = &auth.client_id {
                    out.push_str(&format!(", client_id = {id:?}"));
                }
                if let Some(var) = &auth.client_secret_env {
                    out.push_str(&format!(", client secret from ${var} (redacted)"));
                }
                if let Some(var) = &auth.private_key_env {
                    out.push_str(&format!(", private key from ${var} (redacted)"));
                }
                if !auth.scopes.is_empty() {
                    out.push_str(&format!(", scopes = {:?}", auth.scopes));
                }
            }
            out.push('\n');
        }
        if self.servers.is_empty() {
            out.push_str("# (no MCP servers)\n");
        }
        out
    }
}

fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

fn resolve(
    name: &str,
    raw: RawServer,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<McpServerConfig, String> {
    if name.trim().is_empty() {
        return Err("a server needs a non-empty name".into());
    }
    let expand = |field: &str, s: &str| {
        expand_vars(s, lookup).map_err(|var| format!("{field} uses ${{{var}}}, which is not set"))
    };
    let expand_map =
        |field: &str, m: BTreeMap<String, String>| -> Result<BTreeMap<String, String>, String> {
            m.into_iter()
                .map(|(k, v)| Ok((k.clone(), expand(&format!("{field}.{k}"), &v)?)))
                .collect()
        };
    let kind = raw.kind.as_deref().map(str::to_ascii_lowercase);
    let transport = match (kind.as_deref(), raw.command, raw.url) {
        (Some("stdio") | None, Some(command), None) => {
            if command.trim().is_empty() {
                return Err("\"command\" is empty".into());
            }
            let args = raw
                .args
                .iter()
                .map(|a| expand("args", a))
                .collect::<Result<_, _>>()?;
            McpTransportConfig::Stdio {
                command: expand("command", &command)?,
                args,
                env: expand_map("env", raw.env)?,
                cwd: raw.cwd,
            }
        }
        (Some("stdio"), None, _) => return Err("type \"stdio\" needs a \"command\"".into()),
        (Some(kind), None, Some(url)) => {
            let url = expand("url", &url)?;
            check_url(&url)?;
            let headers = expand_map("headers", raw.headers)?;
            match kind {
                "sse" => McpTransportConfig::Sse { url, headers },
                "streamable_http" | "streamablehttp" | "streamable-http" => {
                    McpTransportConfig::StreamableHttp { url, headers }
                }
                "http" => McpTransportConfig::Http { url, headers },
                other => {
                    return Err(format!(
                        "unknown \"type\" {other:?}: expected \"stdio\", \"sse\", \"streamable_http\" or \"http\""
                    ));
                }
            }
        }
        (None, None, Some(url)) => {
            let url = expand("url", &url)?;
            check_url(&url)?;
            McpTransportConfig::Http {
                url,
                headers: expand_map("headers", raw.headers)?,
            }
        }
        (_, Some(_), Some(_)) => return Err("has both \"command\" and \"url\": give one".into()),
        (Some(kind), Some(_), None) => {
            return Err(format!(
                "type {kind:?} needs a \"url\" (a \"command\" is for stdio servers)"
            ));
        }
        (_, None, None) => return Err("needs a \"command\" (stdio) or a \"url\" (remote)".into()),
    };
    let timeout = match raw.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(format!(
                "\"timeout\" is {t}: expected a positive number of seconds"
            ));
        }
    };
    let auth = match raw.auth {
        None => None,
        Some(auth) => {
            Some(resolve_auth(auth, &transport, lookup).map_err(|m| format!("auth: {m}"))?)
        }
    };
    Ok(McpServerConfig {
        name: name.to_string(),
        transport,
        disabled: raw.disabled,
        timeout,
        allowed_tools: raw.allowed_tools,
        disabled_tools: raw.disabled_tools,
        required: raw.required,
        sampling: raw.sampling.unwrap_or(true),
        auth,
    })
}

fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(u) => Err(format!(
            "\"url\" has scheme {:?}: expected http or https",
            u.scheme()
        )),
        Err(e) => Err(format!("\"url\" {:?} is not a URL: {e}", redacted_url(url))),
    }
}

/// Replaces `${VAR}` with its value; `$${` is a literal `${`. Returns the missing name on failure.
fn expand_vars(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                out.push_str(tail);
                return Ok(out);
            };
            let name = &after[..end];
            out.push_str(&lookup(name).ok_or_else(|| name.to_string())?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
