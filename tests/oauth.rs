//! OAuth to remote MCP servers against a local authorization server and the MCP server it
//! protects (`support/oauth_server.rs`): logins with `mcp-chat auth login` (its `$BROWSER`
//! a script that follows the authorization URL back to the loopback listener), tool calls
//! with `mcp-chat tools call`, every run at `RUST_LOG=debug`.
//!
//! - tokens are refreshed before they expire and after a 401, the rotated refresh token is
//!   the one stored, and no refresh token is ever presented twice;
//! - a revoked grant puts a live hub's server in `needs_auth` with its tools withdrawn,
//!   the other server untouched, until a new login;
//! - two instances share one login through Redis and take turns refreshing it;
//! - no code or token the authorization server issued appears in any log line (of the
//!   command-line runs and of `mcp-chat serve`).
//!
//! Needs `redis-server` on PATH for the Redis test (skipped with a note otherwise, unless
//! `MCP_CHAT_E2E_REQUIRED=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/oauth_pinger.rs"]
mod oauth_pinger;
#[path = "support/oauth_server.rs"]
mod oauth_server;

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use mcp_chat::{
    config::{McpConfig, ServersConfig, SessionsConfig},
    mcp::{McpHub, ToolHub, oauth::TokenVault},
};
use oauth_server::OAuthServer;
use oauth2::TokenResponse as _;
use tokio_util::sync::CancellationToken;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A directory with a servers_config.json naming the fixture twice: `guarded` (OAuth) and
/// `open` (no authorization), a session store, and every line the runs logged.
struct Setup {
    dir: tempfile::TempDir,
    store: String,
    fixture: OAuthServer,
    logs: std::sync::Mutex<String>,
}

impl Setup {
    async fn new(access_ttl: Duration, store: Option<String>) -> Setup {
        let fixture = OAuthServer::start(access_ttl).await;
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({"mcpServers": {
            "guarded": {"url": fixture.mcp_url(), "auth": {"type": "oauth"}},
            "open": {"url": fixture.public_url()},
        }});
        std::fs::write(dir.path().join("servers_config.json"), config.to_string()).unwrap();
        let browser = dir.path().join("browser");
        std::fs::write(
            &browser,
            "#!/bin/sh\nexec python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' \"$1\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store =
            store.unwrap_or_else(|| format!("sqlite://{}/sessions.db", dir.path().display()));
        Setup {
            dir,
            store,
            fixture,
            logs: Default::default(),
        }
    }

    /// Runs `mcp-chat ARGS` in the directory at `RUST_LOG=debug`; its stdout, and whether
    /// it succeeded. Both streams go to the log.
    async fn run(&self, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-chat"))
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MCP_CHAT_SESSION_STORE", &self.store)
            .env("MCP_CHAT_TOKEN_KEY", KEY)
            .env("BROWSER", self.dir.path().join("browser"))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        let mut logs = self.logs.lock().unwrap();
        logs.push_str(&format!("$ mcp-chat {}\n{stdout}{stderr}", args.join(" ")));
        (out.status.success(), stdout)
    }

    async fn login(&self) {
        let (ok, _) = self.run(&["auth", "login", "guarded"]).await;
        assert!(ok, "login failed:\n{}", self.logs.lock().unwrap());
    }

    /// `mcp-chat tools call guarded ping`; panics with the logs unless it answers pong.
    async fn ping(&self) {
        let (ok, stdout) = self.run(&["tools", "call", "guarded", "ping"]).await;
        assert!(
            ok && stdout.contains("pong"),
            "the call failed:\n{}",
            self.logs.lock().unwrap()
        );
    }

    /// Runs `mcp-chat serve` at `RUST_LOG=debug` until its `/v1/mcp/servers` shows
    /// `guarded` ready, then stops it; its output goes to the log.
    async fn serve_until_guarded_is_ready(&self) {
        let port = |_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (http, grpc) = (port(0), port(1));
        let log = self.dir.path().join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-chat"))
            .arg("serve")
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", http.to_string())
            .env("GRPC_PORT", grpc.to_string())
            .env("MCP_CHAT_SESSION_STORE", &self.store)
            .env("MCP_CHAT_TOKEN_KEY", KEY)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.path().join("serve.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = loop {
            let servers = client
                .get(format!("http://127.0.0.1:{http}/v1/mcp/servers"))
                .send()
                .await;
            if let Ok(r) = servers
                && let Ok(body) = r.json::<serde_json::Value>().await
                && body["data"].as_array().is_some_and(|d| {
                    d.iter()
                        .any(|s| s["name"] == "guarded" && s["state"] == "ready")
                })
            {
                break true;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        let output = std::fs::read_to_string(&log).unwrap();
        self.logs
            .lock()
            .unwrap()
            .push_str(&format!("$ mcp-chat serve\n{output}"));
        assert!(ready, "the service never had guarded ready:\n{output}");
    }

    /// The vault the service would open.
    async fn vault(&self) -> Arc<TokenVault> {
        let config = SessionsConfig {
            store: self.store.clone(),
            ..SessionsConfig::default()
        };
        let store = mcp_chat::sessions::open(&config).await.unwrap();
        Arc::new(TokenVault::from_config(store, KEY).unwrap())
    }

    /// The refresh token stored for `guarded`.
    async fn stored_refresh_token(&self) -> Option<String> {
        let entry = self
            .vault()
            .await
            .load("guarded", &self.fixture.mcp_url())
            .await
            .unwrap()?;
        let token = entry.credentials?.token_response?;
        token.refresh_token().map(|r| r.secret().clone())
    }

    fn servers(&self) -> ServersConfig {
        ServersConfig::load(&self.dir.path().join("servers_config.json"), &|_| None).unwrap()
    }
}

/// The newest refresh token the authorization server issued.
fn newest_refresh_token(fixture: &OAuthServer) -> String {
    fixture
        .secrets()
        .into_iter()
        .rev()
        .find(|s| s.starts_with("rt-"))
        .unwrap()
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry_and_after_a_401_with_the_rotated_refresh_token_kept() {
    let setup = Setup::new(Duration::from_secs(2), None).await;
    setup.login().await;
    setup.ping().await;
    assert_eq!(setup.fixture.stats().logins, 1);

    // Let the access token expire: the next run refreshes before it sends a request.
    let before = setup.fixture.stats();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    setup.ping().await;
    let after = setup.fixture.stats();
    assert!(after.refreshes > before.refreshes, "{after:?}");
    assert_eq!(
        after.expired_presented, 0,
        "an expired token was sent: {after:?}"
    );

    // The access tokens stop working before they expire: a 401, a refresh, a retry.
    setup.fixture.drop_access_tokens();
    let before = setup.fixture.stats();
    setup.ping().await;
    let after = setup.fixture.stats();
    assert!(after.unauthorized > before.unauthorized, "{after:?}");
    assert!(after.refreshes > before.refreshes, "{after:?}");

    // Rotation: the refresh token stored is the newest one issued, and no spent one was
    // ever presented again (that would have revoked the grant).
    assert_eq!(
        setup.stored_refresh_token().await,
        Some(newest_refresh_token(&setup.fixture))
    );
    let stats = setup.fixture.stats();
    assert_eq!(
        (stats.refresh_reuse, stats.refused_refreshes),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.logins, 1, "{stats:?}");
}

/// Waits (bounded, so a regression fails rather than hangs) until `server` is in `state`.
async fn wait_state(hub: &McpHub, server: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = hub
            .servers()
            .into_iter()
            .find(|s| s.name == server)
            .unwrap();
        if now.state == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{server} stayed {} ({:?}), never {state}",
            now.state,
            now.error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(hub: &McpHub, server: &str) -> mcp_chat::mcp::ToolOutcome {
    hub.call_server_tool(
        server,
        "ping",
        serde_json::json!({}),
        CancellationToken::new(),
        None,
    )
    .await
}

#[tokio::test]
async fn a_revoked_grant_puts_the_server_in_needs_auth_and_leaves_the_others_alone() {
    let setup = Setup::new(Duration::from_secs(3600), None).await;
    setup.login().await;
    let hub =
        McpHub::start_with_vault(&McpConfig::default(), &setup.servers(), setup.vault().await);
    wait_state(&hub, "guarded", "ready").await;
    wait_state(&hub, "open", "ready").await;
    let first = call(&hub, "guarded").await;
    assert!(first.ok && first.text.contains("pong"), "{first:?}");

    setup.fixture.revoke_all();
    let refused = call(&hub, "guarded").await;
    assert!(!refused.ok, "{refused:?}");
    wait_state(&hub, "guarded", "needs_auth").await;
    let state = hub
        .servers()
        .into_iter()
        .find(|s| s.name == "guarded")
        .unwrap();
    assert!(
        state
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("mcp-chat auth login guarded"),
        "{state:?}"
    );
    // Its tools are withdrawn; the other server's stay and work.
    let offered: Vec<String> = hub.tools().iter().map(|t| t.server.clone()).collect();
    assert!(!offered.iter().any(|s| s == "guarded"), "{offered:?}");
    assert!(offered.iter().any(|s| s == "open"), "{offered:?}");
    let open = call(&hub, "open").await;
    assert!(open.ok && open.text.contains("pong"), "{open:?}");
    // The refused refresh token was dropped from the vault; nothing was reused.
    assert_eq!(setup.stored_refresh_token().await, None);
    let stats = setup.fixture.stats();
    assert!(stats.refused_refreshes >= 1, "{stats:?}");
    assert_eq!(stats.refresh_reuse, 0, "{stats:?}");

    // A new login brings it back.
    setup.login().await;
    hub.retry_auth("guarded");
    wait_state(&hub, "guarded", "ready").await;
    let again = call(&hub, "guarded").await;
    assert!(again.ok && again.text.contains("pong"), "{again:?}");
    hub.shutdown().await;
}

/// A `redis-server` on a free port, killed on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("redis-server"))
                .find(|p| p.is_file())
        });
        let Some(binary) = found else {
            let msg = "redis-server is not on PATH (apt-get install redis-server)";
            assert!(
                std::env::var("MCP_CHAT_E2E_REQUIRED").as_deref() != Ok("1"),
                "{msg}"
            );
            println!("SKIPPED: {msg}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis(child, port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn two_instances_share_one_login_over_redis_and_never_spend_a_refresh_token_twice() {
    let Some(redis) = Redis::start() else { return };
    let store = format!("redis://127.0.0.1:{}/0", redis.1);
    let setup = Setup::new(Duration::from_secs(3600), Some(store)).await;
    setup.login().await;
    // A refresh takes long enough that the instances' refreshes would overlap: without the
    // lock both would present the same refresh token.
    setup.fixture.delay_refreshes(Duration::from_millis(500));
    for _ in 0..3 {
        // Both instances find their token refused at once and refresh it: one after the
        // other, under the store's lock, so each presents the refresh token the other one
        // stored.
        setup.fixture.drop_access_tokens();
        tokio::join!(setup.ping(), setup.ping());
    }
    let stats = setup.fixture.stats();
    assert_eq!(stats.logins, 1, "{stats:?}");
    assert!(stats.refreshes >= 3, "{stats:?}");
    assert_eq!(
        (stats.refresh_reuse, stats.refused_refreshes),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(
        setup.stored_refresh_token().await,
        Some(newest_refresh_token(&setup.fixture))
    );
}

#[tokio::test]
async fn no_code_or_token_appears_in_any_log_line_at_debug_level() {
    let setup = Setup::new(Duration::from_secs(2), None).await;
    setup.login().await;
    setup.ping().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    setup.ping().await;
    setup.fixture.drop_access_tokens();
    setup.ping().await;
    let (ok, _) = setup.run(&["auth", "status"]).await;
    assert!(ok);
    // The service too, with its own log set-up: its token has expired, so it refreshes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = setup.fixture.stats().refreshes;
    setup.serve_until_guarded_is_ready().await;
    let stats = setup.fixture.stats();
    assert!(
        stats.refreshes > before,
        "the service did not refresh: {stats:?}"
    );

    let logs = setup.logs.lock().unwrap().clone();
    // Debug logging was on, rmcp's OAuth client among it (at info: "Refreshed access token").
    assert!(
        logs.contains(" DEBUG "),
        "no debug line was logged:\n{logs}"
    );
    assert!(logs.contains("Refreshed access token"), "{logs}");
    let secrets = setup.fixture.secrets();
    assert!(secrets.iter().any(|s| s.starts_with("code-")));
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret} was logged:\n{}",
            logs.lines()
                .filter(|l| l.contains(secret.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
