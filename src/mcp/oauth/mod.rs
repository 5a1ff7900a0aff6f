//! OAuth 2.1 to remote MCP servers, the client side of the MCP authorization specification
//! (2025-11-25), on rmcp's `auth` support: discovery (RFC 9728 protected resource metadata
//! from the `WWW-Authenticate` challenge or the well-known paths, then RFC 8414 / OpenID
//! discovery), client registration (pre-registered, Client ID Metadata Document, dynamic
//! registration, in that order), PKCE S256, the `resource` indicator, refresh before expiry
//! and on a 401 with rotation, step-up on `insufficient_scope`.
//!
//! - [`connect`] gives a server's connection its token source: stored tokens for the
//!   authorization-code grant ([`OAuthError::NeedsLogin`] when there are none), or a fresh
//!   client-credentials token renewed before it expires.
//! - the binary's `cli/login.rs` is the authorization-code flow for an operator
//!   (`mcp-chat auth login`): browser, loopback redirect listener, token exchange.
//! - `enterprise.rs` is grant `enterprise_managed` (SEP-990): an enterprise ID token
//!   exchanged for an ID-JAG, and that for the server's access token.
//! - `discovery.rs` finds the authorization server (rmcp's discovery, and the 2025-03-26
//!   metadata at the server's own origin).
//! - `vault.rs` keeps every server's client and tokens sealed (`cipher.rs`) in the session
//!   store, shared by the replicas.
//!
//! Tokens never reach a log line or a span: rmcp's and oauth2's types redact them in
//! `Debug`, the errors here name servers and settings, never values, and the log filters
//! hold `rmcp::transport::auth` (which logs the authorization code at debug) at `info`
//! (`telemetry::guard_secrets`).

pub mod cipher;
pub mod discovery;
mod enterprise;
pub mod vault;

use std::{sync::Arc, time::Duration};

use rmcp::transport::{
    AuthClient, AuthError, AuthorizationManager, ClientCredentialsConfig,
    auth::{AuthorizationMetadataSource, OAuthClientConfig},
};
use tokio::task::JoinHandle;

pub use discovery::{Discovered, discover};
pub use vault::{ClientRecord, TokenVault, VaultEntry};

use super::trace::TracingHttpClient;
use crate::config::{OAuthConfig, OAuthGrant};

/// A client-credentials token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// Why a server could not be authorized.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// No usable token, and getting one takes a person.
    #[error("needs authorization: run `mcp-chat auth login {server}`")]
    NeedsLogin { server: String },
    /// The authorization server refused the client or the grant.
    #[error("the authorization server refused: {0}")]
    Refused(String),
    /// The server or its authorization server cannot do what the flow needs.
    #[error("{0}")]
    Unsupported(String),
    /// Discovery, registration or a token request failed on the way (retryable).
    #[error("OAuth failed: {0}")]
    Flow(String),
    /// The vault (session store, key) failed.
    #[error("{0}")]
    Vault(String),
}

impl OAuthError {
    /// Whether the server waits for credentials (`needs_auth`) rather than for itself.
    pub fn needs_auth(&self) -> bool {
        matches!(self, Self::NeedsLogin { .. } | Self::Refused(_))
    }
}

/// Maps rmcp's errors: a rejected grant or missing credentials need authorization; the
/// rest is the flow failing.
pub fn classify(server: &str, e: AuthError) -> OAuthError {
    match e {
        AuthError::AuthorizationRequired | AuthError::TokenRefreshRejected(_) => {
            OAuthError::NeedsLogin {
                server: server.to_string(),
            }
        }
        AuthError::AuthorizationFailed(m) | AuthError::ClientCredentialsError(m) => {
            OAuthError::Refused(m)
        }
        AuthError::TokenExchangeFailed(m) => OAuthError::Refused(m),
        AuthError::CredentialStoreError(m) => OAuthError::Vault(m),
        other => OAuthError::Flow(other.to_string()),
    }
}

/// An authorization manager for `url` (whose authorization server may sit at a private
/// address: the operator configured it).
pub async fn manager(server: &str, url: &str) -> Result<AuthorizationManager, OAuthError> {
    AuthorizationManager::new_allowing_private_addresses(url)
        .await
        .map_err(|e| classify(server, e))
}

/// Refuses an authorization server that does not advertise PKCE S256, as the
/// specification requires. Endpoints guessed from the server's URL (the 2025-03-26
/// fallback, no metadata at all) have nothing to check.
pub fn require_pkce(
    metadata: &rmcp::transport::auth::AuthorizationMetadata,
    source: AuthorizationMetadataSource,
) -> Result<(), OAuthError> {
    if source == AuthorizationMetadataSource::LegacyEndpointFallback {
        return Ok(());
    }
    let s256 = metadata
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|m| m.iter().any(|m| m == "S256"));
    if s256 {
        Ok(())
    } else {
        Err(OAuthError::Unsupported(
            "the authorization server does not advertise PKCE S256 (code_challenge_methods_supported), which MCP requires; refusing to authorize".into(),
        ))
    }
}

/// The configured client of a client-credentials server: a secret, or a private key that
/// signs a JWT assertion (RFC 7523).
fn client_credentials(
    auth: &OAuthConfig,
    url: &str,
) -> Result<ClientCredentialsConfig, OAuthError> {
    let Some(client_id) = auth.client_id.clone() else {
        return Err(OAuthError::Unsupported(
            "grant client_credentials needs client_id".into(),
        ));
    };
    if let Some(key) = &auth.private_key {
        use rmcp::transport::auth::JwtSigningAlgorithm as Alg;
        let signing_algorithm = match auth.signing_alg.as_deref().unwrap_or("RS256") {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            other => {
                return Err(OAuthError::Unsupported(format!(
                    "signing algorithm {other:?} is not one of RS256, RS384, RS512, ES256, ES384"
                )));
            }
        };
        return Ok(ClientCredentialsConfig::PrivateKeyJwt {
            client_id,
            signing_key: key.as_bytes().to_vec(),
            signing_algorithm,
            token_endpoint_audience: None,
            scopes: auth.scopes.clone(),
            resource: Some(url.to_string()),
        });
    }
    match &auth.client_secret {
        Some(client_secret) => Ok(ClientCredentialsConfig::ClientSecret {
            client_id,
            client_secret: client_secret.clone(),
            scopes: auth.scopes.clone(),
            resource: Some(url.to_string()),
        }),
        None => Err(OAuthError::Unsupported(
            "grant client_credentials needs client_secret_env or private_key_env".into(),
        )),
    }
}

/// A server's authorized HTTP client, and the task that renews a client-credentials
/// token (aborted when dropped).
pub struct Authorized {
    pub client: AuthClient<TracingHttpClient>,
    pub renewal: Option<Renewal>,
}

/// Aborts the renewal task when the connection goes.
pub struct Renewal(JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The token source of one connection to `name` at `url`.
pub async fn connect(
    vault: &Arc<TokenVault>,
    name: &str,
    url: &str,
    auth: &OAuthConfig,
    http: &reqwest::Client,
) -> Result<Authorized, OAuthError> {
    let mut manager = manager(name, url).await?;
    manager.set_credential_store(vault.credentials(name, url));
    let entry = vault.load(name, url).await?;
    let metadata = if entry.as_ref().is_some_and(VaultEntry::has_token)
        || auth.grant != OAuthGrant::AuthorizationCode
    {
        let found = discover(&manager, http, name, url, None).await?;
        manager.set_metadata(found.metadata.clone());
        Some(found.metadata)
    } else {
        None
    };
    match auth.grant {
        OAuthGrant::AuthorizationCode => {
            let needs_login = || OAuthError::NeedsLogin {
                server: name.to_string(),
            };
            let Some(entry) = entry.filter(VaultEntry::has_token) else {
                // No token yet: requests go out without one, so a server that turns out
                // not to need it works, and one that does answers 401 with its challenge.
                return Ok(Authorized {
                    client: AuthClient::new(TracingHttpClient(http.clone()), manager),
                    renewal: None,
                });
            };
            if !manager
                .initialize_from_store()
                .await
                .map_err(|e| classify(name, e))?
            {
                return Err(needs_login());
            }
            if let Some(client) = &entry.client {
                // The stored registration, with its secret when it has one.
                let mut config = OAuthClientConfig::new(&client.client_id, &client.redirect_uri);
                if let Some(secret) = client.client_secret.clone().or(auth.client_secret.clone()) {
                    config = config.with_client_secret(secret);
                }
                manager
                    .configure_client(config)
                    .map_err(|e| classify(name, e))?;
            }
            // Refreshes here when the stored token has (nearly) expired.
            manager
                .get_access_token()
                .await
                .map_err(|e| classify(name, e))?;
            Ok(Authorized {
                client: AuthClient::new(TracingHttpClient(http.clone()), manager),
                renewal: None,
            })
        }
        OAuthGrant::EnterpriseManaged => {
            let (Some(enterprise), Some(metadata)) = (&auth.enterprise, &metadata) else {
                return Err(OAuthError::Unsupported(
                    "grant enterprise_managed needs its \"enterprise\" settings".into(),
                ));
            };
            let now = now_secs();
            let valid = entry.as_ref().filter(|e| e.has_token()).is_some_and(|e| {
                e.expires_at()
                    .is_none_or(|at| at > now + RENEW_BEFORE.as_secs())
            });
            if !valid {
                enterprise::exchange(vault, name, url, auth, enterprise, metadata).await?;
            }
            Ok(Authorized {
                client: AuthClient::new(TracingHttpClient(http.clone()), manager),
                renewal: None,
            })
        }
        OAuthGrant::ClientCredentials => {
            let config = client_credentials(auth, url)?;
            manager
                .validate_client_credentials_metadata(&config)
                .map_err(|e| classify(name, e))?;
            manager
                .configure_client_credentials(&config)
                .map_err(|e| classify(name, e))?;
            let now = now_secs();
            let valid = entry
                .as_ref()
                .and_then(VaultEntry::expires_at)
                .is_some_and(|at| at > now + RENEW_BEFORE.as_secs());
            let client = AuthClient::new(TracingHttpClient(http.clone()), manager);
            if !valid {
                exchange(&client.auth_manager, vault, name, url, &config).await?;
            }
            let renewal = Renewal(tokio::spawn(renew(
                client.auth_manager.clone(),
                vault.clone(),
                name.to_string(),
                url.to_string(),
                config,
            )));
            Ok(Authorized {
                client,
                renewal: Some(renewal),
            })
        }
    }
}

/// One client-credentials token request, under the record's lock (so replicas take turns).
///
/// rmcp's exchange future is not `Send` when its private-key JWT support is built in (it
/// holds a form serializer across an await), so it runs to completion on a blocking
/// thread of the runtime.
async fn exchange(
    manager: &Arc<tokio::sync::Mutex<AuthorizationManager>>,
    vault: &Arc<TokenVault>,
    name: &str,
    url: &str,
    config: &ClientCredentialsConfig,
) -> Result<(), OAuthError> {
    let _lock = vault.lock(name, url).await?;
    let (manager, config) = (manager.clone(), config.clone());
    let runtime = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            let manager = manager.lock().await;
            manager.exchange_client_credentials(&config).await.map(drop)
        })
    })
    .await
    .map_err(|e| OAuthError::Flow(format!("the token request stopped: {e}")))?;
    result.map_err(|e| match e {
        AuthError::AuthorizationRequired => {
            OAuthError::Refused("the client credentials were not accepted".into())
        }
        other => classify(name, other),
    })
}

/// Renews a client-credentials token shortly before it expires, for as long as the
/// connection lives; a failure is retried every few seconds.
async fn renew(
    manager: Arc<tokio::sync::Mutex<AuthorizationManager>>,
    vault: Arc<TokenVault>,
    name: String,
    url: String,
    config: ClientCredentialsConfig,
) {
    loop {
        let expires_at = match vault.load(&name, &url).await {
            Ok(entry) => entry.as_ref().and_then(VaultEntry::expires_at),
            Err(e) => {
                tracing::warn!(server = %name, "cannot read the stored token: {e}");
                Some(0)
            }
        };
        // A token without an expiry needs no renewal.
        let Some(expires_at) = expires_at else { return };
        let wait = expires_at
            .saturating_sub(now_secs())
            .saturating_sub(RENEW_BEFORE.as_secs());
        tokio::time::sleep(Duration::from_secs(wait)).await;
        // Another replica may have renewed it meanwhile.
        let still = vault
            .load(&name, &url)
            .await
            .ok()
            .flatten()
            .and_then(|e| e.expires_at());
        if still.is_some_and(|at| at > now_secs() + RENEW_BEFORE.as_secs()) {
            continue;
        }
        let result = exchange(&manager, &vault, &name, &url, &config).await;
        match result {
            Ok(()) => tracing::info!(server = %name, "client-credentials token renewed"),
            Err(e) => {
                tracing::warn!(server = %name, "renewing the client-credentials token failed: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The scope an `insufficient_scope` challenge asks for (a step-up), if it is one.
pub fn insufficient_scope(challenge: &str) -> Option<String> {
    let base = reqwest::Url::parse("http://localhost/").ok()?;
    let params = rmcp::transport::WWWAuthenticateParams::parse(challenge, &base);
    if params.is_insufficient_scope() {
        Some(params.scope.unwrap_or_default())
    } else {
        None
    }
}
