//! The OAuth client flags of `mcp-chat tools --url` (a configured server has its `"auth"`
//! in servers_config.json instead), and the [`OAuthConfig`] they make.

use clap::Args;
use mcp_chat::config::{EnterpriseConfig, OAuthConfig, OAuthGrant};

/// The OAuth client of `--url` (a configured server has its own in servers_config.json).
#[derive(Args, Clone, Default)]
pub struct OAuthArgs {
    /// A pre-registered OAuth client id.
    #[arg(long, global = true)]
    pub client_id: Option<String>,
    /// The variable holding the pre-registered client's secret.
    #[arg(long, value_name = "VAR", global = true)]
    pub client_secret_env: Option<String>,
    /// Scopes to ask for (repeatable); default: what the server's challenge and metadata say.
    #[arg(long = "scope", value_name = "SCOPE", global = true)]
    pub scopes: Vec<String>,
    /// This client's metadata document (an https URL), used as its client id where the
    /// authorization server supports it.
    #[arg(long, value_name = "URL", global = true)]
    pub client_metadata_url: Option<String>,
    /// The variable holding a client-credentials client's private key (PEM): it signs a JWT
    /// (`private_key_jwt`) instead of sending a secret.
    #[arg(long, value_name = "VAR", global = true)]
    pub private_key_env: Option<String>,
    /// The JWT's signing algorithm (RS256, RS384, RS512, ES256, ES384; default RS256).
    #[arg(long, value_name = "ALG", global = true)]
    pub signing_alg: Option<String>,
    /// Enterprise-managed authorization (`--grant enterprise_managed`): the identity
    /// provider's issuer, token endpoint, this client's id there, and the variable holding
    /// the user's ID token.
    #[arg(long, value_name = "URL", global = true)]
    pub idp_issuer: Option<String>,
    #[arg(long, value_name = "URL", global = true)]
    pub idp_token_endpoint: Option<String>,
    #[arg(long, value_name = "ID", global = true)]
    pub idp_client_id: Option<String>,
    #[arg(long, value_name = "VAR", global = true)]
    pub id_token_env: Option<String>,
    /// `authorization_code` (a person signs in), `client_credentials` (machine to machine)
    /// or `enterprise_managed` (an enterprise ID token, exchanged).
    #[arg(long, default_value = "authorization_code", value_parser = ["authorization_code", "client_credentials", "enterprise_managed"], global = true)]
    pub grant: String,
}

impl OAuthArgs {
    /// The `auth` of the `--url` server; the secret's variable must be set.
    pub fn config(&self) -> Result<OAuthConfig, String> {
        let client_secret = match &self.client_secret_env {
            None => None,
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("--client-secret-env names {var}, which is not set"))?,
            ),
        };
        let private_key = match &self.private_key_env {
            None => None,
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("--private-key-env names {var}, which is not set"))?,
            ),
        };
        let grant = match self.grant.as_str() {
            "client_credentials" => OAuthGrant::ClientCredentials,
            "enterprise_managed" => OAuthGrant::EnterpriseManaged,
            _ => OAuthGrant::AuthorizationCode,
        };
        let enterprise = match (
            &self.idp_issuer,
            &self.idp_token_endpoint,
            &self.idp_client_id,
            &self.id_token_env,
        ) {
            (Some(issuer), Some(endpoint), Some(client), Some(var)) => Some(EnterpriseConfig {
                idp_issuer: issuer.clone(),
                idp_token_endpoint: endpoint.clone(),
                idp_client_id: client.clone(),
                id_token_env: var.clone(),
                id_token: std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("--id-token-env names {var}, which is not set"))?,
            }),
            (None, None, None, None) => None,
            _ => {
                return Err(
                    "--idp-issuer, --idp-token-endpoint, --idp-client-id and --id-token-env go together".into(),
                );
            }
        };
        if (grant == OAuthGrant::EnterpriseManaged) != enterprise.is_some() {
            return Err(
                "--grant enterprise_managed needs --idp-issuer, --idp-token-endpoint, --idp-client-id and --id-token-env".into(),
            );
        }
        if grant == OAuthGrant::ClientCredentials
            && (self.client_id.is_none() || (client_secret.is_none() && private_key.is_none()))
        {
            return Err(
                "--grant client_credentials needs --client-id and --client-secret-env (or --private-key-env)".into(),
            );
        }
        Ok(OAuthConfig {
            grant,
            client_id: self.client_id.clone(),
            client_secret,
            client_secret_env: self.client_secret_env.clone(),
            scopes: self.scopes.clone(),
            client_metadata_url: self.client_metadata_url.clone(),
            private_key,
            private_key_env: self.private_key_env.clone(),
            signing_alg: self.signing_alg.clone(),
            enterprise,
            redirect_port: 0,
        })
    }
}
