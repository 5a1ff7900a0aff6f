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
        match self {
            Self::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field(
                    "env",
                    &env.keys()
                        .map(|k| format!("{k}=<redacted>"))
                        .collect::<Vec<_>>(),
                )
                .field("cwd", cwd)
                .finish(),
            Self::StreamableHttp { url, headers }
            | Self::Sse { url, headers }
            | Self::Http { url, headers } => f
                .debug_struct(self.kind())
                .field("url", &redacted_url(url))
                .field(
                    "headers",
                    &headers
                        .keys()
                        .map(|k| format!("{k}: <redacted>"))
                        .collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

impl McpTransportConfig {
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
            match &s.transport {
                McpTransportConfig::Stdio {
                    command,
                    args,
                    env,
                    cwd,
                } => {
                    out.push_str(&format!(", command = {command:?}, args = {args:?}"));
                    if !env.is_empty() {
                        out.push_str(&format!(
                            ", env = {:?} (values redacted)",
                            env.keys().collect::<Vec<_>>()
                        ));
                    }
                    if let Some(cwd) = cwd {
                        out.push_str(&format!(", cwd = {:?}", cwd.display().to_string()));
                    }
                }
                McpTransportConfig::StreamableHttp { url, headers }
                | McpTransportConfig::Sse { url, headers }
                | McpTransportConfig::Http { url, headers } => {
                    out.push_str(&format!(", url = {:?}", redacted_url(url)));
                    if !headers.is_empty() {
                        out.push_str(&format!(
                            ", headers = {:?} (values redacted)",
                            headers.keys().collect::<Vec<_>>()
                        ));
                    }
                }
            }
            if s.disabled {
                out.push_str(", disabled");
            }
            if s.required {
                out.push_str(", required");
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
    Ok(McpServerConfig {
        name: name.to_string(),
        transport,
        disabled: raw.disabled,
        timeout,
        allowed_tools: raw.allowed_tools,
        disabled_tools: raw.disabled_tools,
        required: raw.required,
        sampling: raw.sampling.unwrap_or(true),
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
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "DIR" => Some("/tmp/x".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_stdio_and_remote_servers_with_expansion() {
        let text = r#"{"mcpServers": {
            "sqlite": {"command": "uvx", "args": ["mcp-server-sqlite", "--db-path", "${DIR}/t.db"], "env": {"K": "${TOKEN}"}},
            "remote": {"type": "sse", "url": "http://h/sse", "headers": {"Authorization": "Bearer ${TOKEN}"}},
            "auto": {"url": "http://h/mcp"},
            "sh": {"type": "streamable_http", "url": "http://h/mcp", "timeout": 5, "disabled": true}
        }}"#;
        let c = ServersConfig::parse(text, &env).unwrap();
        let names: Vec<_> = c.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["auto", "remote", "sh", "sqlite"]);
        assert!(matches!(
            &c.servers[0].transport,
            McpTransportConfig::Http { .. }
        ));
        match &c.servers[1].transport {
            McpTransportConfig::Sse { headers, .. } => {
                assert_eq!(headers["Authorization"], "Bearer s3cret")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.servers[2].timeout, Some(Duration::from_secs(5)));
        assert!(c.servers[2].disabled);
        match &c.servers[3].transport {
            McpTransportConfig::Stdio { args, env, .. } => {
                assert_eq!(args[2], "/tmp/x/t.db");
                assert_eq!(env["K"], "s3cret");
            }
            other => panic!("{other:?}"),
        }
        let listing = c.to_redacted_toml();
        assert!(!listing.contains("s3cret"), "{listing}");
    }

    #[test]
    fn errors_name_the_server_and_what_is_expected() {
        let cases = [
            (
                r#"{"mcpServers": {"a": {"url": "http://x", "command": "y"}}}"#,
                "mcpServers.a: has both",
            ),
            (
                r#"{"mcpServers": {"a": {}}}"#,
                "mcpServers.a: needs a \"command\"",
            ),
            (
                r#"{"mcpServers": {"a": {"type": "ws", "url": "http://x"}}}"#,
                "unknown \"type\" \"ws\"",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": ["${NOPE}"]}}}"#,
                "${NOPE}, which is not set",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "ftp://x"}}}"#,
                "expected http or https",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "bogus": 1}}}"#,
                "unknown field `bogus`",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "timeout": -1}}}"#,
                "positive number of seconds",
            ),
            (
                "{\"mcpServers\": {\n  \"a\": {\"command\": }}}",
                "line 2, column",
            ),
            (r#"{"servers": {}}"#, "unknown field `servers`"),
        ];
        for (text, expected) in cases {
            let err = ServersConfig::parse(text, &env).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn expansion_handles_escapes_and_plain_dollars() {
        assert_eq!(
            expand_vars("a$b $${X} ${TOKEN}", &env).unwrap(),
            "a$b ${X} s3cret"
        );
        assert_eq!(expand_vars("${MISSING}", &env).unwrap_err(), "MISSING");
    }
}
