//! The `"auth"` of a remote server in servers_config.json: OAuth 2.1 settings, resolved
//! (the secret and private key read from the variables they name) and checked.

use serde::Deserialize;

use super::McpTransportConfig;

/// The JWT signing algorithms of `"signing_alg"`.
pub const SIGNING_ALGS: &[&str] = &["RS256", "RS384", "RS512", "ES256", "ES384"];

/// `"auth": {"type": "oauth", "grant"?, "client_id"?, "client_secret_env"?, "scopes"?,
/// "client_metadata_url"?, "private_key_env"?, "signing_alg"?, "enterprise"?,
/// "redirect_port"?}` of a remote server. `Debug` redacts the secret, key and ID token.
#[derive(Clone, PartialEq)]
pub struct OAuthConfig {
    pub grant: OAuthGrant,
    /// A pre-registered client; without one the client registers itself (a Client ID
    /// Metadata Document when `client_metadata_url` is set and the server supports it,
    /// else dynamic client registration).
    pub client_id: Option<String>,
    /// The pre-registered client's secret, read from the variable `client_secret_env` names.
    pub client_secret: Option<String>,
    /// The variable the secret came from (for messages and `check-config`).
    pub client_secret_env: Option<String>,
    /// Scopes to ask for; empty: the server's challenge, then its metadata, decide.
    pub scopes: Vec<String>,
    /// An HTTPS URL of this client's metadata document (SEP-991), used as its client id.
    pub client_metadata_url: Option<String>,
    /// A client-credentials client's private key (PEM, RSA or EC), read from the variable
    /// `private_key_env` names: it authenticates with a signed JWT (`private_key_jwt`,
    /// RFC 7523) instead of a secret.
    pub private_key: Option<String>,
    pub private_key_env: Option<String>,
    /// The JWT's signing algorithm: `RS256` (default), `RS384`, `RS512`, `ES256`, `ES384`.
    pub signing_alg: Option<String>,
    /// Grant `enterprise_managed`: the enterprise identity provider whose ID token is
    /// exchanged for the server's access token.
    pub enterprise: Option<EnterpriseConfig>,
    /// The loopback port `mcp-chat auth login` receives the code on (0: any free port; a
    /// pre-registered client needs the port of its registered redirect URI).
    pub redirect_port: u16,
}

/// `"enterprise": {"idp_issuer", "idp_token_endpoint", "idp_client_id", "id_token_env"}`:
/// enterprise-managed authorization (SEP-990). The user's ID token from the identity
/// provider is exchanged there (RFC 8693) for an ID-JAG, which the server's authorization
/// server takes as a JWT bearer grant (RFC 7523) from the pre-registered client.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseConfig {
    pub idp_issuer: String,
    pub idp_token_endpoint: String,
    pub idp_client_id: String,
    /// The variable holding the ID token.
    pub id_token_env: String,
    /// The ID token, read from `id_token_env`.
    #[serde(skip)]
    pub id_token: String,
}

impl std::fmt::Debug for EnterpriseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnterpriseConfig")
            .field("idp_issuer", &self.idp_issuer)
            .field("idp_token_endpoint", &self.idp_token_endpoint)
            .field("idp_client_id", &self.idp_client_id)
            .field("id_token_env", &self.id_token_env)
            .finish_non_exhaustive()
    }
}

/// How a server's tokens are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthGrant {
    /// A person signs in once (`mcp-chat auth login SERVER`); refreshed from then on.
    AuthorizationCode,
    /// Machine to machine: the client's own credentials, no person.
    ClientCredentials,
    /// An enterprise identity provider's ID token, exchanged (`enterprise`).
    EnterpriseManaged,
}

impl OAuthGrant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::ClientCredentials => "client_credentials",
            Self::EnterpriseManaged => "enterprise_managed",
        }
    }
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("grant", &self.grant)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_secret_env", &self.client_secret_env)
            .field("scopes", &self.scopes)
            .field("client_metadata_url", &self.client_metadata_url)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("private_key_env", &self.private_key_env)
            .field("signing_alg", &self.signing_alg)
            .field("enterprise", &self.enterprise)
            .field("redirect_port", &self.redirect_port)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(rename = "type")]
    kind: String,
    grant: Option<String>,
    client_id: Option<String>,
    client_secret_env: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    client_metadata_url: Option<String>,
    private_key_env: Option<String>,
    signing_alg: Option<String>,
    enterprise: Option<EnterpriseConfig>,
    redirect_port: Option<u16>,
}

pub(super) fn resolve_auth(
    raw: RawAuth,
    transport: &McpTransportConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<OAuthConfig, String> {
    if !raw.kind.eq_ignore_ascii_case("oauth") {
        return Err(format!("\"type\" is {:?}: expected \"oauth\"", raw.kind));
    }
    match transport {
        McpTransportConfig::StreamableHttp { headers, .. }
        | McpTransportConfig::Http { headers, .. } => {
            if headers
                .keys()
                .any(|h| h.eq_ignore_ascii_case("authorization"))
            {
                return Err(
                    "the server has an \"Authorization\" header too: give one or the other".into(),
                );
            }
        }
        McpTransportConfig::Sse { .. } => {
            return Err("OAuth needs the streamable HTTP transport (\"type\": \"http\" or \"streamable_http\"), not legacy SSE".into());
        }
        McpTransportConfig::Stdio { .. } => {
            return Err(
                "OAuth is for remote servers (a \"url\"); a stdio server is a local process".into(),
            );
        }
    }
    let grant = match raw.grant.as_deref() {
        None | Some("authorization_code") => OAuthGrant::AuthorizationCode,
        Some("client_credentials") => OAuthGrant::ClientCredentials,
        Some("enterprise_managed") => OAuthGrant::EnterpriseManaged,
        Some(other) => {
            return Err(format!(
                "\"grant\" is {other:?}: expected \"authorization_code\", \"client_credentials\" or \"enterprise_managed\""
            ));
        }
    };
    let client_secret = match &raw.client_secret_env {
        None => None,
        Some(var) => Some(
            lookup(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("\"client_secret_env\" names {var}, which is not set"))?,
        ),
    };
    if client_secret.is_some() && raw.client_id.is_none() {
        return Err(
            "\"client_secret_env\" needs a \"client_id\" (the pre-registered client it belongs to)"
                .into(),
        );
    }
    let private_key = match &raw.private_key_env {
        None => None,
        Some(var) => Some(
            lookup(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("\"private_key_env\" names {var}, which is not set"))?,
        ),
    };
    if private_key.is_some() && grant != OAuthGrant::ClientCredentials {
        return Err("\"private_key_env\" is for grant \"client_credentials\"".into());
    }
    if let Some(alg) = &raw.signing_alg
        && !SIGNING_ALGS.contains(&alg.as_str())
    {
        return Err(format!(
            "\"signing_alg\" is {alg:?}: expected one of {}",
            SIGNING_ALGS.join(", ")
        ));
    }
    if grant == OAuthGrant::ClientCredentials
        && (raw.client_id.is_none() || (client_secret.is_none() && private_key.is_none()))
    {
        return Err(
            "grant \"client_credentials\" needs \"client_id\" and \"client_secret_env\" (or \"private_key_env\")".into(),
        );
    }
    let enterprise = match raw.enterprise {
        Some(mut e) => {
            e.id_token = lookup(&e.id_token_env)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!(
                        "\"enterprise.id_token_env\" names {}, which is not set",
                        e.id_token_env
                    )
                })?;
            Some(e)
        }
        None => None,
    };
    if (grant == OAuthGrant::EnterpriseManaged) != enterprise.is_some() {
        return Err("grant \"enterprise_managed\" and \"enterprise\" go together".into());
    }
    if grant == OAuthGrant::EnterpriseManaged
        && (raw.client_id.is_none() || client_secret.is_none())
    {
        return Err(
            "grant \"enterprise_managed\" needs \"client_id\" and \"client_secret_env\" (the client pre-registered at the server's authorization server)".into(),
        );
    }
    if let Some(url) = &raw.client_metadata_url
        && !reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && u.path() != "/")
    {
        return Err(format!(
            "\"client_metadata_url\" {url:?} is not an https URL with a path"
        ));
    }
    Ok(OAuthConfig {
        grant,
        client_id: raw.client_id,
        client_secret,
        client_secret_env: raw.client_secret_env,
        scopes: raw.scopes,
        client_metadata_url: raw.client_metadata_url,
        private_key,
        private_key_env: raw.private_key_env,
        signing_alg: raw.signing_alg,
        enterprise,
        redirect_port: raw.redirect_port.unwrap_or(0),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::ServersConfig;

    fn parse(auth: serde_json::Value) -> Result<ServersConfig, String> {
        let text = serde_json::json!({"mcpServers": {
            "billing": {"url": "https://billing.example.com/mcp", "auth": auth},
        }})
        .to_string();
        ServersConfig::parse(&text, &|var| {
            (var == "BILLING_KEY").then(|| "-----BEGIN PRIVATE KEY-----\nsecret-key-body\n".into())
        })
    }

    #[test]
    fn a_private_key_client_is_read_from_its_variable_and_never_shown() {
        let config = parse(serde_json::json!({
            "type": "oauth", "grant": "client_credentials", "client_id": "mcp-chat",
            "private_key_env": "BILLING_KEY", "signing_alg": "ES256",
        }))
        .unwrap();
        let auth = config.servers[0].auth.clone().unwrap();
        assert!(
            auth.private_key
                .as_deref()
                .unwrap()
                .contains("secret-key-body")
        );
        assert_eq!(auth.signing_alg.as_deref(), Some("ES256"));
        assert!(!format!("{auth:?}").contains("secret-key-body"));
        assert!(!config.to_redacted_toml().contains("secret-key-body"));
        assert!(
            config
                .to_redacted_toml()
                .contains("private key from $BILLING_KEY (redacted)")
        );
    }

    #[test]
    fn a_private_key_setting_that_cannot_work_is_refused_by_name() {
        let unset = parse(serde_json::json!({
            "type": "oauth", "grant": "client_credentials", "client_id": "c",
            "private_key_env": "NOT_SET",
        }))
        .unwrap_err();
        assert!(unset.contains("NOT_SET"), "{unset}");
        let alg = parse(serde_json::json!({
            "type": "oauth", "grant": "client_credentials", "client_id": "c",
            "private_key_env": "BILLING_KEY", "signing_alg": "HS256",
        }))
        .unwrap_err();
        assert!(alg.contains("HS256") && alg.contains("ES256"), "{alg}");
        let code = parse(serde_json::json!({
            "type": "oauth", "private_key_env": "BILLING_KEY",
        }))
        .unwrap_err();
        assert!(code.contains("client_credentials"), "{code}");
    }

    #[test]
    fn an_enterprise_managed_server_reads_its_id_token_and_never_shows_it() {
        let text = serde_json::json!({"mcpServers": {"docs": {
            "url": "https://docs.example.com/mcp",
            "auth": {"type": "oauth", "grant": "enterprise_managed",
                     "client_id": "mcp-chat", "client_secret_env": "DOCS_SECRET",
                     "enterprise": {"idp_issuer": "https://idp.example.com",
                                    "idp_token_endpoint": "https://idp.example.com/token",
                                    "idp_client_id": "mcp-chat-idp",
                                    "id_token_env": "DOCS_ID_TOKEN"}},
        }}})
        .to_string();
        let lookup = |var: &str| match var {
            "DOCS_SECRET" => Some("the-secret".to_string()),
            "DOCS_ID_TOKEN" => Some("eyJ.the-id-token.sig".to_string()),
            _ => None,
        };
        let config = ServersConfig::parse(&text, &lookup).unwrap();
        let auth = config.servers[0].auth.clone().unwrap();
        assert_eq!(auth.enterprise.unwrap().id_token, "eyJ.the-id-token.sig");
        let shown = format!("{:?}{}", config.servers[0].auth, config.to_redacted_toml());
        assert!(
            !shown.contains("the-id-token") && !shown.contains("the-secret"),
            "{shown}"
        );
        let mismatched = text.replace("enterprise_managed", "client_credentials");
        let err = ServersConfig::parse(&mismatched, &lookup).unwrap_err();
        assert!(err.contains("enterprise_managed"), "{err}");
    }
}
