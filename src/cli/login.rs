//! The authorization-code flow for an operator (`mcp-chat auth login SERVER`, and
//! `mcp-chat tools --url` when a server asks for authorization):
//! 1. the server's challenge (a 401 or 403 `WWW-Authenticate`, probed when not given);
//! 2. discovery from it; an authorization server without PKCE S256 is refused;
//! 3. scopes: the configured ones, else the challenge's, else the metadata's;
//! 4. the client: pre-registered, else a Client ID Metadata Document when the server
//!    supports one, else dynamic client registration;
//! 5. the browser opens the authorization URL (`$BROWSER`, else the desktop's opener; the
//!    URL is printed either way) and a loopback listener (RFC 8252) receives the code;
//! 6. the code and PKCE verifier are exchanged for tokens, stored in the vault with the
//!    client.

use std::{sync::Arc, time::Duration};

use axum::{extract::RawQuery, response::Html, routing::get};
use rmcp::transport::auth::{AuthorizationCallback, OAuthClientConfig};
use tokio::sync::{mpsc, oneshot};

use mcp_chat::{
    config::OAuthConfig,
    mcp::oauth::{
        ClientRecord, OAuthError, TokenVault, VaultEntry, classify, discover, manager, require_pkce,
    },
};

/// How long the flow waits for the browser to come back.
const CALLBACK_WAIT: Duration = Duration::from_secs(300);
const CLIENT_NAME: &str = "mcp-chat";

/// How a login starts.
#[derive(Debug, Clone, Default)]
pub struct How {
    /// The server's `WWW-Authenticate` challenge, when a refusal started the login (a
    /// step-up's 403); probed otherwise.
    pub challenge: Option<String>,
    /// Open the authorization URL in a browser too.
    pub browser: bool,
}

/// What a login did, for the operator.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// How the client was identified: `pre-registered`, `metadata document`, `registered`.
    pub registration: &'static str,
}

/// The `WWW-Authenticate` challenge of an unauthenticated `initialize` to `url`, when the
/// server sends one (401 or 403).
pub async fn probe(http: &reqwest::Client, url: &str) -> Result<Option<String>, OAuthError> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION")},
        },
    });
    let response = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .map_err(|e| OAuthError::Flow(format!("cannot reach the server: {}", e.without_url())))?;
    let status = response.status().as_u16();
    if status != 401 && status != 403 {
        return Ok(None);
    }
    Ok(response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string))
}

/// Runs the flow for `name` at `url` and stores the tokens. `say` gets the lines for the
/// operator (the URL to open); `browser`: also open it in a browser.
pub async fn login(
    vault: &Arc<TokenVault>,
    http: &reqwest::Client,
    name: &str,
    url: &str,
    auth: &OAuthConfig,
    how: How,
    say: &(dyn Fn(&str) + Sync),
) -> Result<LoginOutcome, OAuthError> {
    let How { challenge, browser } = how;
    let challenge = match challenge {
        Some(c) => Some(c),
        None => probe(http, url).await?,
    };
    let mut manager = manager(name, url).await?;
    manager.set_credential_store(vault.credentials(name, url));
    let resolution = discover(&manager, http, name, url, challenge.as_deref()).await?;
    require_pkce(&resolution.metadata, resolution.source)?;
    let supports_cimd = resolution
        .metadata
        .additional_fields
        .get("client_id_metadata_document_supported")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let can_register = resolution.metadata.registration_endpoint.is_some()
        || resolution.source
            == rmcp::transport::auth::AuthorizationMetadataSource::LegacyEndpointFallback;
    manager.set_metadata(resolution.metadata);

    let configured: Vec<&str> = auth.scopes.iter().map(String::as_str).collect();
    let scopes = if configured.is_empty() {
        manager.select_scopes(None, &[])
    } else {
        configured.iter().map(|s| s.to_string()).collect()
    };
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", auth.redirect_port))
        .await
        .map_err(|e| {
            OAuthError::Flow(format!(
                "cannot listen on 127.0.0.1:{} for the redirect: {e}",
                auth.redirect_port
            ))
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| OAuthError::Flow(e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");

    let (config, registration) = if let Some(client_id) = &auth.client_id {
        let mut config =
            OAuthClientConfig::new(client_id, &redirect_uri).with_scopes(scopes.clone());
        if let Some(secret) = &auth.client_secret {
            config = config.with_client_secret(secret);
        }
        (config, "pre-registered")
    } else if let Some(document) = auth
        .client_metadata_url
        .as_deref()
        .filter(|_| supports_cimd)
    {
        (
            OAuthClientConfig::new(document, &redirect_uri).with_scopes(scopes.clone()),
            "metadata document",
        )
    } else if can_register {
        let config = manager
            .register_client(CLIENT_NAME, &redirect_uri, &scope_refs)
            .await
            .map_err(|e| OAuthError::Refused(format!("dynamic client registration failed: {e}")))?;
        (config, "registered")
    } else {
        return Err(OAuthError::Unsupported(format!(
            "the authorization server of {name} offers no dynamic client registration{}: register a client there and set auth.client_id (and client_secret_env) in servers_config.json",
            if auth.client_metadata_url.is_some() {
                " and no client metadata documents"
            } else {
                ""
            }
        )));
    };
    let client = ClientRecord {
        client_id: config.client_id.clone(),
        client_secret: if registration == "registered" {
            config.client_secret.clone()
        } else {
            None
        },
        redirect_uri: redirect_uri.clone(),
    };
    manager
        .configure_client(config)
        .map_err(|e| classify(name, e))?;
    let authorize_url = manager
        .get_authorization_url(&scope_refs)
        .await
        .map_err(|e| classify(name, e))?;

    let callback = receive_callback(listener, &authorize_url, browser, say).await?;
    manager
        .exchange_code_for_token_with_issuer(
            &callback.code,
            &callback.csrf_token,
            callback.issuer.as_deref(),
        )
        .await
        .map_err(|e| match e {
            rmcp::transport::AuthError::AuthorizationRequired => {
                OAuthError::Refused("the token request was refused".into())
            }
            other => classify(name, other),
        })?;
    // The exchange stored the credentials; the client they belong to goes beside them.
    let mut entry = vault
        .load(name, url)
        .await?
        .unwrap_or_else(|| VaultEntry::new(name, url));
    entry.client = Some(client.clone());
    vault.save(&entry).await?;
    let granted = entry
        .credentials
        .map(|c| c.granted_scopes)
        .unwrap_or_default();
    Ok(LoginOutcome {
        client_id: client.client_id,
        scopes: if granted.is_empty() { scopes } else { granted },
        registration,
    })
}

/// Opens the browser at `authorize_url` and waits for the redirect on `listener`.
async fn receive_callback(
    listener: tokio::net::TcpListener,
    authorize_url: &str,
    browser: bool,
    say: &(dyn Fn(&str) + Sync),
) -> Result<AuthorizationCallback, OAuthError> {
    let port = listener
        .local_addr()
        .map_err(|e| OAuthError::Flow(e.to_string()))?
        .port();
    let (tx, mut rx) = mpsc::channel::<String>(1);
    let app = axum::Router::new().route(
        "/callback",
        get(move |RawQuery(query): RawQuery| {
            let tx = tx.clone();
            async move {
                let _ = tx.try_send(query.unwrap_or_default());
                Html("<!doctype html><title>mcp-chat</title><p>Authorization received. You can close this window and return to the terminal.</p>")
            }
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    say(&format!(
        "Open this URL to authorize (waiting on 127.0.0.1:{port} for the redirect):\n{authorize_url}"
    ));
    if browser {
        open_browser(authorize_url);
    }
    let query = tokio::time::timeout(CALLBACK_WAIT, rx.recv()).await;
    let _ = stop.send(());
    let _ = server.await;
    let query = match query {
        Ok(Some(q)) => q,
        Ok(None) => return Err(OAuthError::Flow("the redirect listener stopped".into())),
        Err(_) => {
            return Err(OAuthError::Flow(format!(
                "no authorization came back within {}s",
                CALLBACK_WAIT.as_secs()
            )));
        }
    };
    let url = format!("http://127.0.0.1:{port}/callback?{query}");
    if let Ok(parsed) = reqwest::Url::parse(&url)
        && let Some((_, error)) = parsed.query_pairs().find(|(k, _)| k == "error")
    {
        let description = parsed
            .query_pairs()
            .find(|(k, _)| k == "error_description")
            .map(|(_, d)| format!(": {d}"))
            .unwrap_or_default();
        return Err(OAuthError::Refused(format!("{error}{description}")));
    }
    AuthorizationCallback::from_redirect_url(&url).map_err(|e| {
        OAuthError::Flow(format!(
            "the redirect is not an authorization response: {e}"
        ))
    })
}

/// `$BROWSER URL` when set, else the desktop's opener when there is a desktop; the URL is
/// printed either way, so a headless machine loses nothing.
fn open_browser(url: &str) {
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    let opener = opener.or_else(|| {
        if cfg!(target_os = "macos") {
            Some("open".into())
        } else if std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some()
        {
            Some("xdg-open".into())
        } else {
            None
        }
    });
    let Some(opener) = opener else { return };
    let mut parts = opener.split_whitespace();
    let Some(program) = parts.next() else { return };
    let spawned = std::process::Command::new(program)
        .args(parts)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::warn!("cannot open a browser with {program:?}: {e}");
    }
}
