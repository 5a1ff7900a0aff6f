//! Starts the real `mcp-chat` binary on free ports for end-to-end tests, and stops it
//! (SIGTERM, then SIGKILL) when the guard drops.
#![allow(dead_code)]

use mcp_chat::pb::{self, chat_service_client::ChatServiceClient};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};
use tonic::transport::Channel;

/// A running service process.
pub struct Service {
    pub child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    pub dir: tempfile::TempDir,
}

/// Waits for `/readyz` 200 on `http_port`; the exit status if the process ended first.
async fn wait_ready_or_exit(child: &mut Child, http_port: u16) -> Option<ExitStatus> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{http_port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not become ready in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-chat"))
}

/// A command for the binary with a clean, hermetic environment in a fresh directory:
/// no servers, memory sessions, loopback only.
pub fn command(dir: &Path, http_port: u16, grpc_port: u16) -> Command {
    let mut cmd = Command::new(binary());
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", http_port.to_string())
        .env("GRPC_PORT", grpc_port.to_string())
        .env("MCP_CHAT_SESSION_STORE", "memory://")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

impl Service {
    /// Starts the binary with extra environment and waits until `/readyz` answers 200.
    pub async fn start(env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, env, &[]).await
    }

    /// Starts the binary in `dir`; waits until `/readyz` answers 200. A port that another
    /// test took between [`free_port`] and the bind makes the process exit at once: then it
    /// is started again on new ports (three tries).
    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)], args: &[&str]) -> Service {
        for attempt in 1..=3 {
            let (http_port, grpc_port) = (free_port(), free_port());
            let mut cmd = command(dir.path(), http_port, grpc_port);
            cmd.envs(env.iter().copied()).args(args);
            let mut child = cmd.spawn().unwrap();
            match wait_ready_or_exit(&mut child, http_port).await {
                None => {
                    return Service {
                        child,
                        http_port,
                        grpc_port,
                        dir,
                    };
                }
                Some(status) if attempt < 3 => {
                    eprintln!("the service exited at start ({status}); again on new ports");
                }
                Some(status) => panic!("the service exited at start: {status}"),
            }
        }
        unreachable!("three attempts")
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A POST of `path` (from `/`) on the HTTP port with `http`, for a test to finish.
    pub fn post(&self, http: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        http.post(format!("{}{path}", self.http()))
    }

    /// POSTs `body` as JSON to `path` and returns the response (its body unread).
    pub async fn post_json(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.post(http, path).json(body).send().await.unwrap()
    }

    /// POSTs `body` to `/v1/chat/completions` and returns the response (its body unread).
    pub async fn post_chat(
        &self,
        http: &reqwest::Client,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.post_json(http, "/v1/chat/completions", body).await
    }

    pub fn grpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.http())).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Sends a signal by name (`TERM`, `KILL`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The fixture MCP server binary (the example `fixture-mcp-server`, built by scripts/test).
pub fn fixture_path() -> PathBuf {
    // target/<profile>/deps/<test binary> → target/<profile>/examples/fixture-mcp-server
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join("examples/fixture-mcp-server");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --example fixture-mcp-server` (scripts/test does)",
        path.display()
    );
    path
}

/// A fixture process, killed when dropped.
pub struct FixtureProcess(Child);

impl Drop for FixtureProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fixture serving `mode` (`--http`: streamable HTTP, `--sse`: legacy SSE) on a free
/// port, named `name`, and its URL.
pub fn fixture_serving(mode: &str, name: &str) -> (FixtureProcess, String) {
    fixture_serving_at(mode, "127.0.0.1:0", name)
}

/// The fixture serving `mode` on `addr` (to bring a server back on the same address).
pub fn fixture_serving_at(mode: &str, addr: &str, name: &str) -> (FixtureProcess, String) {
    let mut child = Command::new(fixture_path())
        .args([mode, addr, "--name", name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    (FixtureProcess(child), line.trim().to_string())
}

/// A temp dir whose `servers_config.json` is `{"mcpServers": servers}`.
pub fn dir_with_servers(servers: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({ "mcpServers": servers });
    std::fs::write(dir.path().join("servers_config.json"), config.to_string()).unwrap();
    dir
}

/// A temp dir whose `servers_config.json` runs the fixture over stdio as server `fx`.
pub fn dir_with_fixture() -> tempfile::TempDir {
    dir_with_servers(serde_json::json!({"fx": {"command": fixture_path()}}))
}

/// The service in `dir`, its upstream at `base_url` with the model `test-model`.
pub async fn start_with(base_url: &str, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Service {
    let mut all = vec![
        ("OPENAI_BASE_URL", base_url),
        ("DEFAULT_MODEL", "test-model"),
    ];
    all.extend_from_slice(env);
    Service::start_in(dir, &all, &[]).await
}

/// A gRPC client of the service.
pub async fn grpc(svc: &Service) -> ChatServiceClient<Channel> {
    ChatServiceClient::connect(svc.grpc()).await.unwrap()
}

/// A one-message user request.
pub fn user(text: &str) -> pb::ChatRequest {
    pb::ChatRequest {
        messages: vec![pb::Message {
            role: pb::Role::User.into(),
            content: text.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Where the test script installs external programs (`MCP_CHAT_TEST_DEPS`).
pub fn deps_dir() -> PathBuf {
    std::env::var_os("MCP_CHAT_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-deps"))
}

/// An installed external program, or `None` with the reason printed (a panic when
/// `MCP_CHAT_E2E_REQUIRED=1`, as in the test script and CI).
pub fn external(path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let reason = format!(
        "{} is missing: run scripts/test, which installs it",
        path.display()
    );
    assert!(
        std::env::var("MCP_CHAT_E2E_REQUIRED").as_deref() != Ok("1"),
        "{reason}"
    );
    eprintln!("skipping: {reason}");
    None
}
