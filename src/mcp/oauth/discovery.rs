//! Finding a server's authorization server: rmcp's discovery (the challenge's
//! `resource_metadata`, RFC 9728 well-known paths, RFC 8414 / OpenID path variants, the
//! 2025-03-26 endpoint fallback), plus one back-compat case rmcp refuses.
//!
//! A 2025-03-26 server has no protected resource metadata: its own origin is the
//! authorization server, whose metadata sits at `{origin}/.well-known/oauth-authorization-server`.
//! Some such servers name an issuer with a path there (`{origin}/oauth`), which RFC 8414's
//! issuer check rejects. That metadata is accepted only when the issuer and every endpoint
//! it names are on the MCP server's own origin, so it grants nothing the server itself
//! could not.

use rmcp::transport::{
    AuthError, AuthorizationManager,
    auth::{AuthorizationMetadata, AuthorizationMetadataSource},
};

use super::{OAuthError, classify};

/// The authorization server's metadata and how it was found.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub metadata: AuthorizationMetadata,
    pub source: AuthorizationMetadataSource,
}

/// Discovers the authorization server of `url` (named `server`), starting from its
/// `WWW-Authenticate` challenge when there is one.
pub async fn discover(
    manager: &AuthorizationManager,
    http: &reqwest::Client,
    server: &str,
    url: &str,
    challenge: Option<&str>,
) -> Result<Discovered, OAuthError> {
    match manager.resolve_metadata_from_challenge(challenge).await {
        Ok(resolution) => Ok(Discovered {
            metadata: resolution.metadata,
            source: resolution.source,
        }),
        Err(e @ AuthError::AuthorizationServerMismatch { .. }) => {
            match same_origin_root_metadata(http, url).await {
                Some(metadata) => Ok(Discovered {
                    metadata,
                    source: AuthorizationMetadataSource::AuthorizationServerMetadata,
                }),
                None => Err(classify(server, e)),
            }
        }
        Err(e) => Err(classify(server, e)),
    }
}

/// The 2025-03-26 metadata at the root of `url`'s origin, when it names only that origin.
async fn same_origin_root_metadata(
    http: &reqwest::Client,
    url: &str,
) -> Option<AuthorizationMetadata> {
    let base = reqwest::Url::parse(url).ok()?;
    let origin = base.origin();
    let at = base.join("/.well-known/oauth-authorization-server").ok()?;
    let response = http
        .get(at)
        .header("MCP-Protocol-Version", "2025-03-26")
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let metadata: AuthorizationMetadata = response.json().await.ok()?;
    let same_origin = |u: &str| reqwest::Url::parse(u).is_ok_and(|u| u.origin() == origin);
    let issuer_ok = metadata.issuer.as_deref().is_none_or(same_origin);
    let endpoints_ok = same_origin(&metadata.authorization_endpoint)
        && same_origin(&metadata.token_endpoint)
        && metadata
            .registration_endpoint
            .as_deref()
            .is_none_or(same_origin);
    (issuer_ok && endpoints_ok).then_some(metadata)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Answers every request with `metadata(base)` as JSON (a bare HTTP/1.1 responder: this
    /// layer does not use the HTTP server crates); the server's base URL.
    async fn serve(metadata: impl Fn(&str) -> serde_json::Value) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let body = metadata(&base).to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        base
    }

    #[tokio::test]
    async fn root_metadata_is_taken_only_when_it_names_the_servers_own_origin() {
        let http = reqwest::Client::new();
        let own = serve(|base| {
            serde_json::json!({
                "issuer": format!("{base}/oauth"),
                "authorization_endpoint": format!("{base}/oauth/authorize"),
                "token_endpoint": format!("{base}/oauth/token"),
                "registration_endpoint": format!("{base}/oauth/register"),
            })
        })
        .await;
        let taken = same_origin_root_metadata(&http, &format!("{own}/mcp")).await;
        assert_eq!(
            taken.map(|m| m.token_endpoint),
            Some(format!("{own}/oauth/token"))
        );
        let elsewhere = serve(|base| {
            serde_json::json!({
                "issuer": format!("{base}/oauth"),
                "authorization_endpoint": format!("{base}/oauth/authorize"),
                "token_endpoint": "https://tokens.example.com/token",
            })
        })
        .await;
        let refused = same_origin_root_metadata(&http, &format!("{elsewhere}/mcp")).await;
        assert!(refused.is_none(), "{refused:?}");
    }
}
