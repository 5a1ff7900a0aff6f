//! Who calls `/mcp`: the `Authorization: Bearer <key>` header checked against the same keys
//! as every other endpoint (`auth.rs`). Refused requests get 401 with `WWW-Authenticate`
//! and a JSON-RPC error body; accepted ones carry a [`Principal`] (the key's access) in
//! their extensions, which rmcp hands to the handler with the request's `http::request::Parts`.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    auth::{ApiKeys, AuthError},
    config::KeyAccess,
};

/// The caller of one request: its key's access (`None`: no keys configured).
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub access: Option<Arc<KeyAccess>>,
}

impl Principal {
    /// The key's name, for the session's owner check and logs (`None` without keys).
    pub fn name(&self) -> Option<&str> {
        self.access.as_deref().map(|a| a.name.as_str())
    }

    /// Whether this caller may use `server`'s tool `tool`, offered as `exposed`.
    pub fn allows_tool(&self, server: &str, tool: &str, exposed: &str) -> bool {
        self.access
            .as_ref()
            .is_none_or(|a| a.allows_tool(server, tool, exposed))
    }

    /// Whether this caller may see `server` (its resources and prompts).
    pub fn allows_server(&self, server: &str) -> bool {
        self.access.as_ref().is_none_or(|a| a.allows_server(server))
    }
}

/// The `WWW-Authenticate` challenge of a refusal (RFC 6750).
fn challenge(error: &AuthError) -> &'static str {
    match error {
        AuthError::Missing => r#"Bearer realm="mcp-chat""#,
        AuthError::Invalid => r#"Bearer realm="mcp-chat", error="invalid_token""#,
    }
}

/// The answer to a refused request.
fn refusal(error: &AuthError) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32001, "message": error.to_string() },
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge(error)),
    );
    response
}

/// Checks the key; a refused request never reaches rmcp.
pub async fn authenticate(
    State(keys): State<ApiKeys>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    // CORS preflights carry no credentials; the CORS layer answers them.
    if request.method() == axum::http::Method::OPTIONS {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match keys.check(authorization) {
        Ok(access) => {
            request.extensions_mut().insert(Principal { access });
            next.run(request).await
        }
        Err(e) => refusal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use tower::ServiceExt;

    fn app(keys: ApiKeys) -> axum::Router {
        axum::Router::new()
            .route(
                "/mcp",
                axum::routing::post(|request: Request<Body>| async move {
                    let principal = request.extensions().get::<Principal>().cloned();
                    principal
                        .and_then(|p| p.name().map(str::to_string))
                        .unwrap_or_else(|| "plain".into())
                }),
            )
            .layer(axum::middleware::from_fn_with_state(keys, authenticate))
    }

    async fn post(keys: ApiKeys, authorization: Option<&str>) -> Response {
        let mut request = Request::post("/mcp");
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        app(keys)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn without_a_key_the_answer_is_401_with_a_bearer_challenge() {
        let keys = ApiKeys::new(vec![Secret::new("k1")]);
        let missing = post(keys.clone(), None).await;
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="mcp-chat""#
        );
        assert!(text(missing).await.contains("\"code\":-32001"));
        let wrong = post(keys.clone(), Some("Bearer nope")).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(
            wrong.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        let ok = post(keys, Some("Bearer k1")).await;
        assert_eq!(ok.status(), StatusCode::OK);
        // A plain key goes by the name derived from it.
        assert!(text(ok).await.starts_with("key-"));
    }

    #[tokio::test]
    async fn a_named_key_brings_its_access() {
        let access = KeyAccess {
            name: "alpha".into(),
            allowed_servers: Some(vec!["fx".into()]),
            allowed_tools: None,
            request_servers: false,
            models: None,
        };
        let keys = ApiKeys::with_named(vec![], vec![(Secret::new("k-a"), access)]);
        let ok = post(keys, Some("Bearer k-a")).await;
        assert_eq!(text(ok).await, "alpha");
        let open = post(ApiKeys::default(), None).await;
        assert_eq!(open.status(), StatusCode::OK, "no keys: no authentication");
    }

    #[test]
    fn a_principal_applies_its_keys_rules() {
        let p = Principal {
            access: Some(Arc::new(KeyAccess {
                name: "n".into(),
                allowed_servers: Some(vec!["fx".into()]),
                allowed_tools: Some(vec!["fx__echo".into()]),
                request_servers: false,
                models: None,
            })),
        };
        assert!(p.allows_tool("fx", "echo", "echo") && !p.allows_tool("fx", "add", "add"));
        assert!(p.allows_server("fx") && !p.allows_server("web"));
        assert!(Principal::default().allows_tool("any", "thing", "thing"));
    }
}
