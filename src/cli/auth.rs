//! `mcp-chat auth`: OAuth to the remote MCP servers of servers_config.json that have an
//! `"auth": {"type": "oauth", …}`.
//! - `login SERVER`: the authorization-code flow in the browser (a client-credentials
//!   server: one token request, to check the credentials); the tokens go to the vault in
//!   the session store, where the service (every replica) picks them up within seconds.
//! - `status`: who is authorized, with which scopes, until when; never a token.
//! - `logout SERVER`: forgets the server's client and tokens.
//!
//! The vault needs a store the service shares (`sqlite://…` or `redis://…`) and
//! `MCP_CHAT_TOKEN_KEY`; each is asked for by name when missing.

use std::{process::ExitCode, sync::Arc, time::SystemTime};

use super::login;
use clap::{Args, Subcommand};
use mcp_chat::{
    Config,
    config::{McpServerConfig, OAuthGrant},
    mcp::oauth::{OAuthError, TokenVault},
};
use serde_json::json;

#[derive(Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub action: AuthAction,
}

#[derive(Subcommand)]
pub enum AuthAction {
    /// Authorize mcp-chat at SERVER (opens the browser; prints the URL too).
    Login {
        server: String,
        /// Do not open a browser; only print the URL.
        #[arg(long)]
        no_browser: bool,
    },
    /// Show each OAuth server's authorization (no token is ever printed).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget SERVER's client registration and tokens.
    Logout { server: String },
}

/// The vault of the configured session store, sealed with `MCP_CHAT_TOKEN_KEY`.
pub async fn vault(config: &Config) -> Result<Arc<TokenVault>, String> {
    if config.mcp.token_key.is_empty() {
        return Ok(Arc::new(TokenVault::in_memory()));
    }
    let store = mcp_chat::sessions::open(&config.sessions)
        .await
        .map_err(|e| e.to_string())?;
    TokenVault::from_config(store, config.mcp.token_key.expose())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Runs the command on a fresh runtime.
pub fn run(args: &AuthArgs, config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-chat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match &args.action {
            AuthAction::Login { server, no_browser } => {
                report(login_server(config, server, !*no_browser).await)
            }
            AuthAction::Status { json } => report(status(config, *json).await),
            AuthAction::Logout { server } => report(logout(config, server).await),
        }
    })
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-chat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configured OAuth server `name` and its URL.
fn oauth_server<'a>(
    config: &'a Config,
    name: &str,
) -> Result<(&'a McpServerConfig, &'a str), String> {
    let server = config
        .servers
        .servers
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config
                .servers
                .servers
                .iter()
                .filter(|s| s.auth.is_some())
                .map(|s| s.name.as_str())
                .collect();
            format!(
                "there is no server {name:?} in servers_config.json (OAuth servers: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })?;
    if server.auth.is_none() {
        return Err(format!(
            "server {name:?} has no \"auth\": add \"auth\": {{\"type\": \"oauth\"}} to its entry in servers_config.json"
        ));
    }
    let url =
        super::tools::server_url(server).ok_or_else(|| format!("server {name:?} is not remote"))?;
    Ok((server, url))
}

/// A vault whose tokens the service will see: shared store, and a key.
async fn shared_vault(config: &Config) -> Result<Arc<TokenVault>, String> {
    if config.mcp.token_key.is_empty() {
        return Err("set MCP_CHAT_TOKEN_KEY (32 random bytes, e.g. `openssl rand -base64 32`; the same value as the service's) so the tokens can be stored for the service".into());
    }
    if config.sessions.store.trim().starts_with("memory:") {
        return Err("the session store is memory://, which only the service's own process sees: set MCP_CHAT_SESSION_STORE to the service's sqlite:// or redis:// store".into());
    }
    vault(config).await
}

async fn login_server(config: &Config, name: &str, browser: bool) -> Result<(), String> {
    let (server, url) = oauth_server(config, name)?;
    let Some(auth) = &server.auth else {
        return Err(format!("server {name:?} has no \"auth\""));
    };
    let vault = shared_vault(config).await?;
    let http = reqwest::Client::new();
    match auth.grant {
        OAuthGrant::AuthorizationCode => {
            let say = |line: &str| eprintln!("{line}");
            let outcome = login::login(
                &vault,
                &http,
                name,
                url,
                auth,
                login::How {
                    challenge: None,
                    browser,
                },
                &say,
            )
            .await
            .map_err(|e| format!("login to {name} failed: {e}"))?;
            say(&format!(
                "authorized {name} as client {} ({}); scopes: {}. The service picks the tokens up within seconds.",
                outcome.client_id,
                outcome.registration,
                if outcome.scopes.is_empty() {
                    "(none)".to_string()
                } else {
                    outcome.scopes.join(" ")
                }
            ));
            Ok(())
        }
        OAuthGrant::ClientCredentials | OAuthGrant::EnterpriseManaged => {
            mcp_chat::mcp::oauth::connect(&vault, name, url, auth, &http)
                .await
                .map_err(|e: OAuthError| format!("{name}: {e}"))?;
            say(&format!(
                "{name}: the {} were accepted; the service gets its own tokens with them",
                if auth.grant == OAuthGrant::ClientCredentials {
                    "client credentials"
                } else {
                    "enterprise ID token and client credentials"
                }
            ));
            Ok(())
        }
    }
}

async fn status(config: &Config, as_json: bool) -> Result<(), String> {
    let vault = vault(config).await?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut rows = Vec::new();
    for server in config.servers.servers.iter().filter(|s| s.auth.is_some()) {
        let (Some(auth), Some(url)) = (&server.auth, super::tools::server_url(server)) else {
            continue;
        };
        let entry = vault
            .load(&server.name, url)
            .await
            .map_err(|e| e.to_string())?;
        let (state, client, scopes, expires_in, refresh) = match &entry {
            Some(e) if e.has_token() => (
                "authorized",
                e.credentials.as_ref().map(|c| c.client_id.clone()),
                e.credentials
                    .as_ref()
                    .map(|c| c.granted_scopes.clone())
                    .unwrap_or_default(),
                e.expires_at().map(|at| at as i64 - now as i64),
                e.has_refresh_token(),
            ),
            Some(e) => (
                "not authorized",
                e.client.as_ref().map(|c| c.client_id.clone()),
                Vec::new(),
                None,
                false,
            ),
            None => ("not authorized", None, Vec::new(), None, false),
        };
        rows.push(json!({
            "server": server.name, "grant": auth.grant.as_str(), "state": state,
            "client_id": client, "scopes": scopes, "expires_in_secs": expires_in,
            "refresh_token": refresh,
        }));
    }
    if as_json {
        say(&serde_json::to_string_pretty(
            &json!({"persistent": vault.is_persistent(), "servers": rows}),
        )
        .unwrap_or_default());
        return Ok(());
    }
    if !vault.is_persistent() {
        say("(MCP_CHAT_TOKEN_KEY is not set: no tokens are stored)");
    }
    if rows.is_empty() {
        say("no server in servers_config.json uses OAuth");
    }
    for r in rows {
        let expires = match r["expires_in_secs"].as_i64() {
            Some(s) if s <= 0 => "expired".to_string(),
            Some(s) => format!("expires in {s}s"),
            None => String::new(),
        };
        say(&format!(
            "{:20} {:18} {:15} {} {} {}{}",
            r["server"].as_str().unwrap_or_default(),
            r["grant"].as_str().unwrap_or_default(),
            r["state"].as_str().unwrap_or_default(),
            r["client_id"]
                .as_str()
                .map(|c| format!("client {c}"))
                .unwrap_or_default(),
            r["scopes"]
                .as_array()
                .map(|s| s
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default(),
            expires,
            if r["refresh_token"] == true {
                " (refreshable)"
            } else {
                ""
            },
        ));
    }
    Ok(())
}

async fn logout(config: &Config, name: &str) -> Result<(), String> {
    let (_, url) = oauth_server(config, name)?;
    let vault = shared_vault(config).await?;
    vault.remove(name, url).await.map_err(|e| e.to_string())?;
    say(&format!(
        "{name}: client and tokens forgotten; the service asks for a new login"
    ));
    Ok(())
}

/// One line on stdout.
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}
