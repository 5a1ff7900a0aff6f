//! A local OAuth 2.1 authorization server and the MCP server it protects, in the test's
//! process, for the OAuth tests (`tests/oauth.rs`).
//!
//! - Authorization server: RFC 8414 metadata, dynamic registration (public clients),
//!   `/authorize` that approves at once (302 to the redirect URI with a code), `/token`
//!   for the authorization-code grant (PKCE S256 checked) and for refreshes. Every refresh
//!   rotates the refresh token; presenting a spent one is counted as reuse and revokes the
//!   whole grant, as real servers do. Access tokens live `access_ttl` seconds.
//! - Protected resource: RFC 9728 metadata and an MCP server at `/mcp` (`oauth_pinger.rs`) that
//!   answers 401 with a `WWW-Authenticate` challenge to a missing, unknown, expired or
//!   revoked token; the same MCP server without protection at `/public/mcp`.
//! - Controls: [`OAuthServer::delay_refreshes`] (concurrent refreshes overlap),
//!   [`OAuthServer::revoke_all`] (every grant: its tokens stop working and its
//!   refresh token is refused), [`OAuthServer::drop_access_tokens`] (access tokens only,
//!   so the next request's 401 is answered by a refresh), and [`OAuthServer::stats`].
//!   [`OAuthServer::secrets`] lists every code and token it issued, for the log checks.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{Query, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::Engine as _;
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::LocalSessionManager,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::oauth_pinger::Pinger;

/// What the authorization server saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Authorization codes exchanged.
    pub logins: usize,
    /// Refreshes granted.
    pub refreshes: usize,
    /// Spent (rotated) refresh tokens presented again: must stay 0.
    pub refresh_reuse: usize,
    /// Refreshes refused (revoked grant, unknown token, reuse).
    pub refused_refreshes: usize,
    /// Requests to `/mcp` with an access token past its expiry.
    pub expired_presented: usize,
    /// Requests to `/mcp` answered 401.
    pub unauthorized: usize,
    /// Requests to `/mcp` let through.
    pub authorized: usize,
}

struct Grant {
    revoked: bool,
}

struct Access {
    grant: usize,
    expires: Instant,
}

struct Refresh {
    grant: usize,
    spent: bool,
}

struct Code {
    challenge: String,
    redirect_uri: String,
}

#[derive(Default)]
struct Inner {
    grants: Vec<Grant>,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    secrets: Vec<String>,
    stats: Stats,
}

struct Shared {
    base: String,
    access_ttl: u64,
    /// How long a refresh request waits before it is looked at.
    refresh_delay: Mutex<Duration>,
    inner: Mutex<Inner>,
}

/// The running fixture (served until the test's runtime ends).
#[derive(Clone)]
pub struct OAuthServer {
    shared: Arc<Shared>,
}

impl OAuthServer {
    /// Serves on a free loopback port; access tokens live `access_ttl` seconds.
    pub async fn start(access_ttl: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let shared = Arc::new(Shared {
            base,
            access_ttl: access_ttl.as_secs(),
            refresh_delay: Mutex::default(),
            inner: Mutex::default(),
        });
        let mcp = || {
            StreamableHttpService::new(
                || Ok(Pinger),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            )
        };
        let protected = Router::new()
            .nest_service("/mcp", mcp())
            .layer(middleware::from_fn_with_state(shared.clone(), guard));
        let app = Router::new()
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(server_metadata),
            )
            .route("/register", post(register))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .nest_service("/public/mcp", mcp())
            .merge(protected)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared }
    }

    /// The protected MCP endpoint.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.shared.base)
    }

    /// The same MCP server without protection.
    pub fn public_url(&self) -> String {
        format!("{}/public/mcp", self.shared.base)
    }

    pub fn stats(&self) -> Stats {
        self.shared.inner.lock().unwrap().stats.clone()
    }

    /// Every authorization code, access token and refresh token issued so far.
    pub fn secrets(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().secrets.clone()
    }

    /// Revokes every grant: its access tokens get 401, its refresh tokens `invalid_grant`.
    pub fn revoke_all(&self) {
        for grant in &mut self.shared.inner.lock().unwrap().grants {
            grant.revoked = true;
        }
    }

    /// Holds every refresh request this long before looking at it, so concurrent
    /// refreshes overlap (two clients presenting one refresh token would both be seen).
    pub fn delay_refreshes(&self, delay: Duration) {
        *self.shared.refresh_delay.lock().unwrap() = delay;
    }

    /// Forgets every access token (refresh tokens stay good): the next request is refused
    /// with 401 and a refresh recovers.
    pub fn drop_access_tokens(&self) {
        self.shared.inner.lock().unwrap().access.clear();
    }
}

fn random() -> String {
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Inner {
    /// A fresh access and refresh token pair for `grant`, as a token response.
    fn issue(&mut self, grant: usize, ttl: u64) -> Value {
        let (access, refresh) = (format!("at-{}", random()), format!("rt-{}", random()));
        self.secrets.push(access.clone());
        self.secrets.push(refresh.clone());
        self.access.insert(
            access.clone(),
            Access {
                grant,
                expires: Instant::now() + Duration::from_secs(ttl),
            },
        );
        self.refresh.insert(
            refresh.clone(),
            Refresh {
                grant,
                spent: false,
            },
        );
        json!({
            "access_token": access, "token_type": "Bearer", "expires_in": ttl,
            "refresh_token": refresh,
        })
    }
}

async fn resource_metadata(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "resource": format!("{}/mcp", s.base),
        "authorization_servers": [s.base],
    }))
}

async fn server_metadata(State(s): State<Arc<Shared>>) -> Json<Value> {
    let b = &s.base;
    Json(json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "registration_endpoint": format!("{b}/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
}

async fn register(Json(body): Json<Value>) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        Json(json!({
            "client_id": format!("client-{}", random()),
            "redirect_uris": body["redirect_uris"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        })),
    )
}

async fn authorize(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(redirect_uri), Some(challenge)) = (q.get("redirect_uri"), q.get("code_challenge"))
    else {
        return (StatusCode::BAD_REQUEST, "redirect_uri and code_challenge").into_response();
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return (StatusCode::BAD_REQUEST, "PKCE S256 only").into_response();
    }
    let code = format!("code-{}", random());
    {
        let mut inner = s.inner.lock().unwrap();
        inner.secrets.push(code.clone());
        inner.codes.insert(
            code.clone(),
            Code {
                challenge: challenge.clone(),
                redirect_uri: redirect_uri.clone(),
            },
        );
    }
    let mut to = reqwest::Url::parse(redirect_uri).unwrap();
    to.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = q.get("state") {
        to.query_pairs_mut().append_pair("state", state);
    }
    Redirect::to(to.as_str()).into_response()
}

fn invalid_grant(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": why})),
    )
        .into_response()
}

async fn token(State(s): State<Arc<Shared>>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let delay = *s.refresh_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
    }
    let mut inner = s.inner.lock().unwrap();
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    match field("grant_type").as_str() {
        "authorization_code" => {
            let Some(code) = inner.codes.remove(&field("code")) else {
                return invalid_grant("unknown code");
            };
            let digest = Sha256::digest(field("code_verifier").as_bytes());
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
            if expected != code.challenge || field("redirect_uri") != code.redirect_uri {
                return invalid_grant("PKCE verifier or redirect_uri mismatch");
            }
            inner.grants.push(Grant { revoked: false });
            inner.stats.logins += 1;
            let grant = inner.grants.len() - 1;
            Json(inner.issue(grant, s.access_ttl)).into_response()
        }
        "refresh_token" => {
            let presented = field("refresh_token");
            let Some(refresh) = inner.refresh.get_mut(&presented) else {
                inner.stats.refused_refreshes += 1;
                return invalid_grant("unknown refresh token");
            };
            let (grant, spent) = (refresh.grant, refresh.spent);
            refresh.spent = true;
            if spent {
                inner.stats.refresh_reuse += 1;
                inner.stats.refused_refreshes += 1;
                inner.grants[grant].revoked = true;
                return invalid_grant("refresh token reused: grant revoked");
            }
            if inner.grants[grant].revoked {
                inner.stats.refused_refreshes += 1;
                return invalid_grant("grant revoked");
            }
            inner.stats.refreshes += 1;
            Json(inner.issue(grant, s.access_ttl)).into_response()
        }
        other => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type", "error_description": other})),
        )
            .into_response(),
    }
}

/// Lets a request to `/mcp` through only with a live access token of a live grant.
async fn guard(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let ok = {
        let mut inner = s.inner.lock().unwrap();
        let verdict = token
            .as_ref()
            .and_then(|t| inner.access.get(t))
            .map(|a| (a.expires > Instant::now(), !inner.grants[a.grant].revoked));
        if verdict.is_some_and(|(live, _)| !live) {
            inner.stats.expired_presented += 1;
        }
        let ok = verdict.is_some_and(|(live, granted)| live && granted);
        if ok {
            inner.stats.authorized += 1;
        } else {
            inner.stats.unauthorized += 1;
        }
        ok
    };
    if ok {
        return next.run(request).await;
    }
    let challenge = format!(
        "Bearer error=\"invalid_token\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        s.base
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        Json(json!({"error": "invalid_token"})),
    )
        .into_response()
}
