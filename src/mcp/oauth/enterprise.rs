//! Enterprise-managed authorization (SEP-990, grant `enterprise_managed`): the user's ID
//! token from the enterprise identity provider is exchanged there (RFC 8693) for an
//! ID-JAG bound to the server's authorization server and resource, and the ID-JAG for an
//! access token there (RFC 7523 JWT bearer grant, as the pre-registered client with HTTP
//! Basic). Both exchanges are rmcp's (`auth::enterprise`); the access token goes to the
//! vault like any other, and is exchanged afresh when it has expired (there is no refresh
//! token).

use std::sync::Arc;

use rmcp::transport::auth::{
    AuthorizationMetadata, CredentialStore as _, StoredCredentials, default_oauth_http_client,
    enterprise::{EmaAuthorizationServer, EmaClientAuthentication, EmaExchangeRequest},
};
use serde_json::json;

use super::{OAuthError, TokenVault, now_secs};
use crate::config::{EnterpriseConfig, OAuthConfig};

/// Exchanges the configured ID token for an access token to `url` and stores it, under
/// the record's lock (replicas take turns).
pub(super) async fn exchange(
    vault: &Arc<TokenVault>,
    name: &str,
    url: &str,
    auth: &OAuthConfig,
    enterprise: &EnterpriseConfig,
    metadata: &AuthorizationMetadata,
) -> Result<(), OAuthError> {
    let (Some(client_id), Some(secret)) = (&auth.client_id, &auth.client_secret) else {
        return Err(OAuthError::Unsupported(
            "grant enterprise_managed needs client_id and client_secret_env".into(),
        ));
    };
    let issuer = metadata.issuer.clone().ok_or_else(|| {
        OAuthError::Unsupported(
            "the authorization server's metadata names no issuer, which the ID-JAG is bound to"
                .into(),
        )
    })?;
    let resource_as = EmaAuthorizationServer::new(issuer, &metadata.token_endpoint, client_id)
        .with_client_authentication(EmaClientAuthentication::ClientSecretBasic(
            oauth2::ClientSecret::new(secret.clone()),
        ));
    let idp = EmaAuthorizationServer::new(
        &enterprise.idp_issuer,
        &enterprise.idp_token_endpoint,
        &enterprise.idp_client_id,
    );
    let http = default_oauth_http_client().map_err(|e| OAuthError::Flow(e.to_string()))?;
    let _lock = vault.lock(name, url).await?;
    let token = EmaExchangeRequest::new_with_id_token(idp, resource_as, url, &enterprise.id_token)
        .with_scopes(auth.scopes.clone())
        .exchange(&http, &http)
        .await
        .map_err(|e| OAuthError::Refused(format!("the enterprise token exchange failed: {e}")))?;
    let mut response = json!({
        "access_token": token.access_token.secret(),
        "token_type": "Bearer",
    });
    if let Some(lifetime) = token.expires_in {
        response["expires_in"] = lifetime.as_secs().into();
    }
    let response = serde_json::from_value(response)
        .map_err(|e| OAuthError::Flow(format!("cannot keep the access token: {e}")))?;
    let mut scopes: Vec<String> = token.scopes.into_iter().collect();
    scopes.sort();
    vault
        .credentials(name, url)
        .save(StoredCredentials::new(
            client_id.clone(),
            Some(response),
            scopes,
            Some(now_secs()),
        ))
        .await
        .map_err(|e| OAuthError::Vault(e.to_string()))
}
