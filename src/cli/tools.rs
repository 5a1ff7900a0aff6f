//! `mcp-chat tools`: starts the MCP hub, lists every server (state, transport, error) and
//! its tools as a table or JSON, or calls one tool (`mcp-chat tools call SERVER TOOL ARGS`).
//! `--url` points either command at one remote server without a config file; when that
//! server asks for OAuth authorization, it is authorized in the browser on the spot (and
//! again for a step-up, when a call needs a scope the token lacks). Exit code 1
//! when an enabled server is not ready (or the call failed). A server's requests for input
//! during a call are answered at the terminal or with the defaults (`elicit.rs`).

use std::{io::Write, process::ExitCode, sync::Arc, time::Duration};

use super::login;
pub use super::oauth_args::OAuthArgs;
use clap::{Args, Subcommand};
use mcp_chat::{
    config::{
        McpConfig, McpServerConfig, McpTransportConfig, OAuthConfig, OAuthGrant, ServersConfig,
    },
    mcp::{McpHub, ToolHub, oauth::TokenVault},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Args, Clone, Default)]
pub struct ToolsArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Use this one remote MCP server instead of servers_config.json.
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,
    /// Transport of `--url`: streamable_http, sse, or http (streamable HTTP, falling back to SSE).
    #[arg(long, default_value = "http", value_parser = ["streamable_http", "sse", "http"], global = true)]
    pub transport: String,
    /// Answer a server's requests for input (elicitation) with the requested schema's
    /// defaults instead of asking at the terminal.
    #[arg(long, global = true)]
    pub accept_defaults: bool,
    /// OAuth for `--url`: a server that asks for authorization is authorized in the
    /// browser (`$BROWSER`), with these client settings.
    #[command(flatten)]
    pub oauth: OAuthArgs,
    #[command(subcommand)]
    pub action: Option<ToolsAction>,
}

#[derive(Subcommand, Clone)]
pub enum ToolsAction {
    /// Call one tool and print its result.
    Call {
        /// The server's name (`remote` with `--url`).
        server: String,
        /// The tool's own name on that server.
        tool: String,
        /// The arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
    },
}

/// The server set of `--url URL`.
pub fn url_servers(url: &str, transport: &str, auth: Option<OAuthConfig>) -> ServersConfig {
    let (url, headers) = (url.to_string(), Default::default());
    let transport = match transport {
        "streamable_http" => McpTransportConfig::StreamableHttp { url, headers },
        "sse" => McpTransportConfig::Sse { url, headers },
        _ => McpTransportConfig::Http { url, headers },
    };
    // Legacy SSE predates OAuth in MCP.
    let auth = auth.filter(|_| !matches!(transport, McpTransportConfig::Sse { .. }));
    ServersConfig {
        path: None,
        servers: vec![McpServerConfig {
            name: "remote".into(),
            transport,
            disabled: false,
            timeout: None,
            allowed_tools: None,
            disabled_tools: Vec::new(),
            required: true,
            sampling: false,
            auth,
        }],
    }
}

/// Runs the command on a fresh runtime, with the OAuth tokens of `vault` (built in it).
pub fn run(
    args: &ToolsArgs,
    mcp: &McpConfig,
    servers: &ServersConfig,
    vault: impl AsyncFnOnce() -> Result<Arc<TokenVault>, String>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-chat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let vault = match vault().await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("mcp-chat: {e}");
                return ExitCode::from(2);
            }
        };
        let hub = McpHub::start_with_vault(mcp, servers, vault);
        hub.wait_first_attempts(mcp.startup_timeout + Duration::from_secs(5))
            .await;
        // `--url`: a server that asks for authorization is authorized here and now.
        if args.url.is_some() {
            for server in &servers.servers {
                if let Some(auth) = &server.auth
                    && hub
                        .servers()
                        .iter()
                        .any(|s| s.name == server.name && s.state == "needs_auth")
                    && !authorize(
                        &hub,
                        server,
                        auth,
                        hub.take_challenge(&server.name),
                        mcp.startup_timeout,
                    )
                    .await
                {
                    hub.shutdown().await;
                    return ExitCode::from(1);
                }
            }
        }
        let code = match &args.action {
            None => list(&hub, args.json),
            Some(ToolsAction::Call {
                server,
                tool,
                arguments,
            }) => {
                let caller = Arc::new(super::elicit::TerminalCaller {
                    accept_defaults: args.accept_defaults,
                });
                let mut code = call(&hub, server, tool, arguments, args.json, caller.clone()).await;
                // A step-up: the call needs a scope the token lacks; authorize it, once.
                let step_up = hub
                    .take_challenge(server)
                    .filter(|c| mcp_chat::mcp::oauth::insufficient_scope(c).is_some());
                let config = servers.servers.iter().find(|s| &s.name == server);
                if let (Some(challenge), Some(config), true) = (step_up, config, args.url.is_some())
                    && let Some(auth) = &config.auth
                    && authorize(&hub, config, auth, Some(challenge), mcp.startup_timeout).await
                {
                    code = call(&hub, server, tool, arguments, args.json, caller).await;
                }
                code
            }
        };
        hub.shutdown().await;
        code
    })
}

/// Runs the authorization-code flow for `server` (or a client-credentials exchange) and
/// waits for it to come up; `false` (said why) when it does not.
async fn authorize(
    hub: &Arc<McpHub>,
    server: &McpServerConfig,
    auth: &OAuthConfig,
    challenge: Option<String>,
    wait: Duration,
) -> bool {
    let Some(url) = server_url(server) else {
        return false;
    };
    if auth.grant == OAuthGrant::AuthorizationCode {
        let say = |line: &str| eprintln!("{line}");
        match login::login(
            hub.vault(),
            hub.http(),
            &server.name,
            url,
            auth,
            login::How {
                challenge,
                browser: true,
            },
            &say,
        )
        .await
        {
            Ok(outcome) => eprintln!(
                "mcp-chat: authorized {} as client {} ({}), scopes: {}",
                server.name,
                outcome.client_id,
                outcome.registration,
                if outcome.scopes.is_empty() {
                    "(none)".to_string()
                } else {
                    outcome.scopes.join(" ")
                }
            ),
            Err(e) => {
                eprintln!("mcp-chat: authorizing {} failed: {e}", server.name);
                return false;
            }
        }
    }
    let ready = hub.retry_auth_and_wait(&server.name, wait).await;
    if !ready {
        let state = hub.servers().into_iter().find(|s| s.name == server.name);
        eprintln!(
            "mcp-chat: server {:?} did not come up after authorizing: {}",
            server.name,
            state
                .map(|s| format!(
                    "{}{}",
                    s.state,
                    s.error.map(|e| format!(": {e}")).unwrap_or_default()
                ))
                .unwrap_or_default()
        );
    }
    ready
}

/// The URL of a remote server.
pub fn server_url(server: &McpServerConfig) -> Option<&str> {
    match &server.transport {
        McpTransportConfig::StreamableHttp { url, .. }
        | McpTransportConfig::Sse { url, .. }
        | McpTransportConfig::Http { url, .. } => Some(url),
        McpTransportConfig::Stdio { .. } => None,
    }
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn list(hub: &Arc<McpHub>, as_json: bool) -> ExitCode {
    let servers = hub.servers();
    let tools = hub.tools();
    let all_ready = servers
        .iter()
        .all(|s| matches!(s.state, "ready" | "disabled"));
    if as_json {
        let servers: Vec<Value> = servers
            .iter()
            .map(|s| {
                let tools: Vec<Value> = tools
                    .iter()
                    .filter(|t| t.server == s.name)
                    .map(|t| json!({"name": t.name, "tool": t.tool, "description": t.description, "input_schema": t.input_schema}))
                    .collect();
                json!({"name": s.name, "state": s.state, "transport": s.transport, "error": s.error,
                       "restarts": s.restarts, "required": s.required, "tools": tools})
            })
            .collect();
        let doc = json!({"ready": all_ready, "servers": servers});
        emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
    } else {
        let mut text = String::new();
        let width = servers
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        text.push_str(&format!(
            "{:width$}  {:10}  {:15}  {:>5}  ERROR\n",
            "SERVER", "STATUS", "TRANSPORT", "TOOLS"
        ));
        for s in &servers {
            text.push_str(&format!(
                "{:width$}  {:10}  {:15}  {:>5}  {}\n",
                s.name,
                s.state,
                s.transport,
                s.tool_count,
                s.error.as_deref().unwrap_or("")
            ));
        }
        for s in &servers {
            let mine: Vec<_> = tools.iter().filter(|t| t.server == s.name).collect();
            if mine.is_empty() {
                continue;
            }
            text.push_str(&format!("\n{}:\n", s.name));
            let w = mine.iter().map(|t| t.name.len()).max().unwrap_or(4);
            for t in mine {
                let desc = t.description.lines().next().unwrap_or("");
                let desc: String = desc.chars().take(100).collect();
                text.push_str(&format!("  {:w$}  {desc}\n", t.name));
            }
        }
        emit(&text);
    }
    if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn call(
    hub: &McpHub,
    server: &str,
    tool: &str,
    arguments: &str,
    as_json: bool,
    caller: Arc<dyn mcp_chat::mcp::asks::Caller>,
) -> ExitCode {
    let arguments: Value = match serde_json::from_str(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => {
            eprintln!("mcp-chat: the arguments must be a JSON object, not {other}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("mcp-chat: the arguments are not JSON: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(s) = hub.servers().into_iter().find(|s| s.name == server)
        && s.state != "ready"
    {
        eprintln!(
            "mcp-chat: server {server:?} is {}{}",
            s.state,
            s.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.cancel();
    });
    let out = hub
        .call_server_tool(server, tool, arguments, cancel, Some(caller))
        .await;
    if as_json {
        emit(&format!(
            "{}\n",
            json!({"server": out.server, "tool": out.tool, "ok": out.ok, "text": out.text,
                   "duration_ms": out.duration.as_millis() as u64})
        ));
    } else {
        emit(&format!("{}\n", out.text));
    }
    if out.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
