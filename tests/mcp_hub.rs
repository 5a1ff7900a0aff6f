//! End-to-end tests of the MCP hub against real servers: our fixture (stdio, streamable
//! HTTP and legacy SSE), `mcp-server-sqlite` (PyPI) and
//! `@modelcontextprotocol/server-everything` (npm) in its stdio, legacy SSE and streamable
//! HTTP modes.
//!
//! The fixture is the example `fixture-mcp-server`; scripts/test builds it
//! (or run `cargo build --example fixture-mcp-server` first). It is looked up in
//! `$CARGO_TARGET_DIR/debug/examples` (default `target/`).
//!
//! External servers are installed under `$MCP_CHAT_TEST_DEPS` (default `target/test-deps`):
//! ```sh
//! python3 -m venv target/test-deps/venv && target/test-deps/venv/bin/pip install -q mcp-server-sqlite
//! mkdir -p target/test-deps/node && (cd target/test-deps/node && npm install --no-audit --no-fund @modelcontextprotocol/server-everything@2026.8.31)
//! ```
//! A test whose program is missing prints why and returns, unless `MCP_CHAT_E2E_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use mcp_chat::{
    config::{McpConfig, RequestServersMode, ServersConfig, ToolPrefix},
    mcp::{
        McpHub, ToolHub, ToolOutcome,
        request_hub::RequestHub,
        request_policy::Refusal,
        request_servers::{RequestServerClient, RequestServerError},
    },
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn fixture() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join("debug/examples/fixture-mcp-server");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --example fixture-mcp-server` (scripts/test does)",
        path.display()
    );
    path
}

fn deps() -> PathBuf {
    std::env::var_os("MCP_CHAT_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-deps"))
}

/// The path if it exists; otherwise `None` after saying why (or a panic when required).
fn need(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {}: see the install commands at the top of tests/mcp_hub.rs",
        path.display()
    );
    if std::env::var("MCP_CHAT_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    println!("SKIPPED: {msg}");
    None
}

fn everything_js() -> Option<PathBuf> {
    need(
        deps().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
        "@modelcontextprotocol/server-everything",
    )
}

fn mcp_config() -> McpConfig {
    McpConfig {
        call_timeout: Duration::from_secs(20),
        startup_timeout: Duration::from_secs(30),
        max_restart_backoff: Duration::from_secs(2),
        max_tool_output: 1000,
        ..McpConfig::default()
    }
}

async fn start(servers: Value) -> Arc<McpHub> {
    let text = json!({ "mcpServers": servers }).to_string();
    let servers = ServersConfig::parse(&text, &|k| std::env::var(k).ok()).unwrap();
    let hub = McpHub::start(&mcp_config(), &servers);
    assert!(
        hub.wait_first_attempts(Duration::from_secs(60)).await,
        "first attempts did not finish: {:?}",
        hub.servers()
    );
    hub
}

async fn call(hub: &McpHub, name: &str, args: Value) -> ToolOutcome {
    hub.call(name, args, CancellationToken::new()).await
}

fn names(hub: &McpHub) -> Vec<String> {
    hub.tools().iter().map(|t| t.name.clone()).collect()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spawns a server process that prints nothing useful, on a free port; returns it and the port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture_http() -> (KillOnDrop, String) {
    fixture_serving("--http")
}

/// The fixture serving `mode` (`--http` or `--sse`) on a free port, and its URL.
fn fixture_serving(mode: &str) -> (KillOnDrop, String) {
    let mut child = Command::new(fixture())
        .args([mode, "127.0.0.1:0", "--name", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (KillOnDrop(child), line.trim().to_string())
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The behaviour every transport of the fixture must show.
async fn exercise_fixture(hub: &McpHub) {
    let tools = hub.tools();
    for t in [
        "echo",
        "add",
        "fail",
        "slow",
        "crash",
        "big",
        "add_tool",
        "bare",
        "cancellations",
        "traceparent",
    ] {
        assert!(
            tools.iter().any(|s| s.name == t),
            "{t} missing (pagination?): {tools:?}"
        );
    }
    let bare = tools.iter().find(|t| t.name == "bare").unwrap();
    assert_eq!(
        bare.input_schema,
        json!({"type": "object", "properties": {}})
    );

    let out = call(hub, "echo", json!({"text": "hi"})).await;
    assert!(out.ok && out.text.ends_with("hi"), "{out:?}");
    let out = call(hub, "add", json!({"a": 2, "b": 3})).await;
    assert!(out.ok && out.text.contains("\"sum\":5"), "{out:?}");
    // No trace context here (no OTLP export): no `_meta` key and no header.
    let out = call(hub, "traceparent", json!({})).await;
    assert!(
        out.ok && out.text == r#"{"header":null,"meta":null}"#,
        "{out:?}"
    );

    // isError comes back as the tool's answer, not retried.
    let out = call(hub, "fail", json!({})).await;
    assert!(!out.ok && out.text.contains("always fails"), "{out:?}");

    // Progress keeps a call alive past the 0.4 s timeout; silence does not.
    let out = call(hub, "slow", json!({"ms": 1200})).await;
    assert!(out.ok && out.text.contains("slept"), "{out:?}");
    let started = Instant::now();
    let out = call(hub, "slow", json!({"ms": 8000})).await;
    assert!(!out.ok && out.text.contains("no answer within"), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Cancelling the caller cancels the call on the server.
    let before = call(hub, "cancellations", json!({})).await.text;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let out = hub.call("slow", json!({"ms": 300}), cancel).await;
    assert!(!out.ok && out.text.contains("cancelled"), "{out:?}");
    let before: u32 = before.parse().unwrap();
    let mut after = before;
    for _ in 0..50 {
        after = call(hub, "cancellations", json!({}))
            .await
            .text
            .parse()
            .unwrap();
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(after > before, "the server saw no cancellation");

    // Output is capped with a visible marker.
    let out = call(hub, "big", json!({"bytes": 50_000})).await;
    assert!(
        out.ok && out.text.len() <= 1000 && out.text.contains("truncated"),
        "{}",
        out.text.len()
    );

    // list_changed makes the new tool visible.
    let out = call(hub, "add_tool", json!({"name": "fresh"})).await;
    assert!(out.ok, "{out:?}");
    eventually("the new tool", || names(hub).contains(&"fresh".to_string())).await;
    let out = call(hub, "fresh", json!({})).await;
    assert!(out.ok && out.text == "fresh ok", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_over_stdio_lists_calls_and_recovers_from_a_crash() {
    let hub = start(json!({"fix": {"command": fixture(), "timeout": 0.4}})).await;
    assert_eq!(hub.servers()[0].state, "ready", "{:?}", hub.servers());
    exercise_fixture(&hub).await;

    let pid = hub.child_pids()[0];
    let started = Instant::now();
    let out = call(&hub, "crash", json!({})).await;
    assert!(!out.ok && out.text.contains("went away"), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "crash not detected at once"
    );
    eventually("a restart", || {
        let s = &hub.servers()[0];
        s.restarts >= 1 && s.state == "ready"
    })
    .await;
    let out = call(&hub, "echo", json!({"text": "back"})).await;
    assert!(out.ok && out.text.ends_with("back"), "{out:?}");
    assert_ne!(hub.child_pids()[0], pid);
    let status = &hub.servers()[0];
    assert!(status.error.is_none(), "{status:?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_over_streamable_http_lists_and_calls() {
    let (_server, url) = fixture_http();
    let hub = start(json!({"web": {"type": "streamable_http", "url": url, "timeout": 0.4}})).await;
    assert_eq!(hub.servers()[0].state, "ready", "{:?}", hub.servers());
    assert_eq!(hub.servers()[0].transport, "streamable_http");
    exercise_fixture(&hub).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_over_legacy_sse_lists_and_calls() {
    let (_server, url) = fixture_serving("--sse");
    let hub = start(json!({"web": {"type": "sse", "url": url, "timeout": 0.4}})).await;
    assert_eq!(hub.servers()[0].state, "ready", "{:?}", hub.servers());
    assert_eq!(hub.servers()[0].transport, "sse");
    exercise_fixture(&hub).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_sharing_tool_names_are_told_apart_and_a_missing_one_is_reported() {
    let f = fixture();
    let hub = start(json!({
        "a": {"command": f, "args": ["--name", "a"]},
        "b": {"command": "sh", "args": ["-c", format!("sleep 300 & exec {} --name b", f.display())]},
        "ghost": {"command": "/nonexistent/mcp-ghost-server"}
    }))
    .await;
    let names = names(&hub);
    assert!(
        names.contains(&"a__echo".into()) && names.contains(&"b__echo".into()),
        "{names:?}\n{:?}",
        hub.servers()
    );
    let out = call(&hub, "a__echo", json!({"text": "x"})).await;
    assert_eq!(out.text, "[a] x");
    let out = call(&hub, "b__echo", json!({"text": "x"})).await;
    assert_eq!(out.text, "[b] x");
    assert_eq!((out.server.as_str(), out.tool.as_str()), ("b", "echo"));

    let ghost = hub
        .servers()
        .into_iter()
        .find(|s| s.name == "ghost")
        .unwrap();
    assert_eq!(ghost.state, "failed");
    let err = ghost.error.unwrap();
    assert!(
        err.contains("cannot start") && err.contains("mcp-ghost-server"),
        "{err}"
    );

    // Shutdown leaves no process behind: not the leaders, not what they started.
    let pids = hub.child_pids();
    assert_eq!(pids.len(), 2);
    assert!(!group_members(pids[1]).is_empty());
    hub.shutdown().await;
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} is left (or a zombie)"
        );
        assert!(
            group_members(pid).is_empty(),
            "group {pid} still has {:?}",
            group_members(pid)
        );
    }
    assert!(hub.tools().is_empty());
}

/// Processes of process group `pgid` (Linux) that are alive, or zombies this process
/// should have reaped. (A grandchild reparented to init is init's to reap.)
fn group_members(pgid: u32) -> Vec<String> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state ppid pgrp …
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<_> = rest.split_whitespace().collect();
        let ppid = fields.get(1).and_then(|p| p.parse::<u32>().ok());
        if fields.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(pgid)
            && (fields.first() != Some(&"Z") || ppid == Some(me))
        {
            out.push(format!("{pid} state {:?} ppid {ppid:?}", fields.first()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_from_pypi_round_trips_a_row() {
    let Some(exe) = need(
        deps().join("venv/bin/mcp-server-sqlite"),
        "mcp-server-sqlite",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test.db");
    let hub = start(json!({"sqlite": {"command": exe, "args": ["--db-path", db]}})).await;
    let mut names = names(&hub);
    names.sort();
    assert_eq!(
        names,
        [
            "append_insight",
            "create_table",
            "describe_table",
            "list_tables",
            "read_query",
            "write_query"
        ],
        "{:?}",
        hub.servers()
    );
    let out = call(
        &hub,
        "create_table",
        json!({"query": "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)"}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    let out = call(
        &hub,
        "write_query",
        json!({"query": "INSERT INTO people (name) VALUES ('alice')"}),
    )
    .await;
    assert!(out.ok, "{out:?}");
    let out = call(
        &hub,
        "read_query",
        json!({"query": "SELECT id, name FROM people"}),
    )
    .await;
    assert!(out.ok && out.text.contains("alice"), "{out:?}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_server_from_npm_in_all_three_modes() {
    let Some(js) = everything_js() else { return };
    let node = |mode: &str, port: u16| {
        KillOnDrop(
            Command::new("node")
                .arg(&js)
                .arg(mode)
                .env("PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let (sse_port, http_port) = (free_port(), free_port());
    let _sse = node("sse", sse_port);
    let _http = node("streamableHttp", http_port);
    wait_port(sse_port).await;
    wait_port(http_port).await;
    let hub = start(json!({
        "stdio": {"command": "node", "args": [js, "stdio"]},
        "sse": {"type": "sse", "url": format!("http://127.0.0.1:{sse_port}/sse")},
        "streamable": {"type": "streamable_http", "url": format!("http://127.0.0.1:{http_port}/mcp")},
        "auto": {"type": "http", "url": format!("http://127.0.0.1:{sse_port}/sse")}
    }))
    .await;
    for s in hub.servers() {
        assert_eq!(s.state, "ready", "{s:?}");
    }
    let auto = hub
        .servers()
        .into_iter()
        .find(|s| s.name == "auto")
        .unwrap();
    assert_eq!(auto.transport, "sse", "http should fall back to legacy SSE");
    for server in ["stdio", "sse", "streamable", "auto"] {
        let out = call(
            &hub,
            &format!("{server}__echo"),
            json!({"message": "hello"}),
        )
        .await;
        assert!(
            out.ok && out.text.contains("Echo: hello"),
            "{server}: {out:?}"
        );
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_servers_and_calls_a_tool() {
    let bin = env!("CARGO_BIN_EXE_mcp-chat");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("servers.json");
    let servers = json!({"mcpServers": {
        "fix": {"command": fixture(), "args": ["--name", "cli"]},
        "ghost": {"command": "/nonexistent/mcp-ghost-server"}
    }});
    std::fs::write(&config, servers.to_string()).unwrap();
    let run = |args: &[&str]| {
        Command::new(bin)
            .current_dir(dir.path())
            .arg("tools")
            .arg("--servers-config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "a server is down");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["servers"][0]["state"], "ready");
    assert!(
        doc["servers"][0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo")
    );
    assert_eq!(doc["servers"][1]["state"], "failed");
    assert!(
        doc["servers"][1]["error"]
            .as_str()
            .unwrap()
            .contains("cannot start")
    );

    let out = run(&[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("SERVER") && table.contains("ghost") && table.contains("echo"),
        "{table}"
    );

    let out = run(&["call", "fix", "echo", r#"{"text": "from cli"}"#]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[cli] from cli"
    );
    assert!(out.status.success());

    let (_server, url) = fixture_http();
    let out = Command::new(bin)
        .args([
            "tools",
            "--url",
            &url,
            "call",
            "remote",
            "add",
            r#"{"a": 1, "b": 2}"#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"sum\":3"),
        "{out:?}"
    );
    // The options are global: after the subcommand too (`tools call … --url U --json`).
    let out = Command::new(bin)
        .args(["tools", "call", "remote", "add", r#"{"a": 2, "b": 2}"#])
        .args(["--url", &url, "--transport", "streamable_http", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["server"].as_str(), doc["ok"].as_bool()),
        (Some("remote"), Some(true))
    );
    assert!(doc["text"].as_str().unwrap().contains("\"sum\":4"), "{doc}");
    let out = Command::new(bin)
        .current_dir(dir.path())
        .args(["tools", "call", "fix", "echo", r#"{"text": "late"}"#])
        .arg("--servers-config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[cli] late",
        "{out:?}"
    );
}

/// The handshake names the newest revision that has `initialize` (2025-11-25), accepts every
/// older one a server answers with, and refuses a version it does not know with a server
/// status that names it. Over stdio and streamable HTTP.
#[tokio::test]
async fn the_handshake_asks_for_2025_11_25_and_accepts_older_answers_only() {
    let versions = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
    let mut servers = serde_json::Map::new();
    for v in versions {
        let name = format!("v{}", v.replace('-', ""));
        servers.insert(
            name,
            json!({"command": fixture(), "env": {"FIXTURE_PROTOCOL_VERSION": v}}),
        );
    }
    for (name, v) in [("unknown", "1999-01-01"), ("unlisted", "2025-09-09")] {
        servers.insert(
            name.into(),
            json!({"command": fixture(), "env": {"FIXTURE_PROTOCOL_VERSION": v}}),
        );
    }
    let mut web = Command::new(fixture())
        .args(["--http", "127.0.0.1:0"])
        .env("FIXTURE_PROTOCOL_VERSION", "2025-03-26")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(web.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let _web = KillOnDrop(web);
    servers.insert(
        "web".into(),
        json!({"type": "streamable_http", "url": url.trim()}),
    );
    let hub = start(Value::Object(servers)).await;
    let states = hub.servers();
    for v in versions {
        let server = format!("v{}", v.replace('-', ""));
        let state = states.iter().find(|s| s.name == server).unwrap();
        assert_eq!(state.state, "ready", "{state:?}");
        let out = hub
            .call_server_tool(
                &server,
                "handshake",
                json!({}),
                CancellationToken::new(),
                None,
            )
            .await;
        let doc: Value = serde_json::from_str(&out.text).unwrap();
        assert_eq!(doc["requested"], "2025-11-25", "{server}: {doc}");
        assert_eq!(doc["negotiated"], v, "{server}: {doc}");
    }
    let web = hub
        .call_server_tool(
            "web",
            "handshake",
            json!({}),
            CancellationToken::new(),
            None,
        )
        .await;
    let doc: Value = serde_json::from_str(&web.text).unwrap();
    assert_eq!(
        (doc["requested"].as_str(), doc["negotiated"].as_str()),
        (Some("2025-11-25"), Some("2025-03-26")),
        "{doc}"
    );
    for (name, v) in [("unknown", "1999-01-01"), ("unlisted", "2025-09-09")] {
        let state = states.iter().find(|s| s.name == name).unwrap();
        assert_ne!(state.state, "ready", "{state:?}");
        let error = state.error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&format!("protocol version \"{v}\"")),
            "{name}: {error}"
        );
        assert!(
            !hub.tools().iter().any(|t| t.server == name),
            "{name}'s tools are offered"
        );
    }
    hub.shutdown().await;
}

/// The official MCP conformance suite's client scenarios, each driving `mcp-chat tools`
/// against the suite's own server (the URL is appended to the command, as the value of the
/// global `--url`). Run with Node 22 from the npm package `node`.
#[tokio::test]
async fn the_conformance_suites_client_scenarios_pass_through_mcp_chat_tools() {
    let node_dir = deps().join("node/node_modules");
    let (Some(node), Some(suite)) = (
        need(
            node_dir.join("node/bin/node"),
            "node 22 (npm package node@22)",
        ),
        need(
            node_dir.join("@modelcontextprotocol/conformance/dist/index.js"),
            "@modelcontextprotocol/conformance",
        ),
    ) else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_mcp-chat");
    for (scenario, args, checks) in [
        ("initialize", "tools --json --url", "1/1"),
        (
            "tools_call",
            r#"tools call remote add_numbers '{"a":5,"b":3}' --url"#,
            "1/1",
        ),
        (
            "sse-retry",
            "tools call remote test_reconnection --url",
            "3/3",
        ),
        (
            "elicitation-sep1034-client-defaults",
            "tools call remote test_client_elicitation_defaults --accept-defaults --url",
            "5/5",
        ),
    ] {
        let out = tokio::process::Command::new(&node)
            .arg(&suite)
            .args(["client", "--command", &format!("{bin} {args}")])
            .args(["--scenario", scenario, "--timeout", "60000"])
            .env("NO_COLOR", "1")
            .output()
            .await
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{scenario}:\n{report}");
        assert!(
            report.contains(&format!("Passed: {checks}, 0 failed, 0 warnings"))
                && report.contains("OVERALL: PASSED"),
            "{scenario}:\n{report}"
        );
    }
}

/// The conformance suite's `auth/*` client scenarios through `mcp-chat tools --url`: the
/// server answers 401, mcp-chat discovers, registers and authorizes in the "browser"
/// (`$BROWSER`: a script that follows the authorization URL to mcp-chat's loopback
/// redirect listener, as a browser would), exchanges the code and lists the tools with the
/// token (`tools call remote test-tool` where a scenario refuses a tool call: the step-up
/// ones). The suite's `MCP_CONFORMANCE_CONTEXT` (the pre-registered client's id, secret or
/// private key and its algorithm, the enterprise identity provider and ID token) becomes
/// `--client-id`, `--client-secret-env`, `--private-key-env`, `--signing-alg`,
/// `--idp-issuer`, `--idp-token-endpoint`, `--idp-client-id` and `--id-token-env` through
/// a wrapper script. The
/// README lists every scenario with its result.
#[tokio::test]
async fn the_conformance_suites_auth_scenarios_pass_through_mcp_chat_tools() {
    let node_dir = deps().join("node/node_modules");
    let (Some(node), Some(suite)) = (
        need(
            node_dir.join("node/bin/node"),
            "node 22 (npm package node@22)",
        ),
        need(
            node_dir.join("@modelcontextprotocol/conformance/dist/index.js"),
            "@modelcontextprotocol/conformance",
        ),
    ) else {
        return;
    };
    let Some(python) = need(deps().join("venv/bin/python"), "the test venv's python") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let browser = dir.path().join("browser");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nexec {} -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' \"$1\"\n",
            python.display()
        ),
    )
    .unwrap();
    // `wrap COMMAND… --url URL`: the context's client id and secret as mcp-chat's flags.
    let wrap = dir.path().join("wrap");
    std::fs::write(
        &wrap,
        format!(
            r#"#!{}
import json, os, sys
ctx = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{{}}")
args = sys.argv[1:]
extra = []
if "client_id" in ctx:
    extra += ["--client-id", ctx["client_id"]]
if "client_secret" in ctx:
    os.environ["CONFORMANCE_CLIENT_SECRET"] = ctx["client_secret"]
    extra += ["--client-secret-env", "CONFORMANCE_CLIENT_SECRET"]
if "private_key_pem" in ctx:
    os.environ["CONFORMANCE_PRIVATE_KEY"] = ctx["private_key_pem"]
    extra += ["--private-key-env", "CONFORMANCE_PRIVATE_KEY"]
if "signing_algorithm" in ctx:
    extra += ["--signing-alg", ctx["signing_algorithm"]]
if "idp_id_token" in ctx:
    os.environ["CONFORMANCE_ID_TOKEN"] = ctx["idp_id_token"]
    extra += ["--id-token-env", "CONFORMANCE_ID_TOKEN", "--idp-issuer", ctx["idp_issuer"],
              "--idp-token-endpoint", ctx["idp_token_endpoint"],
              "--idp-client-id", ctx["idp_client_id"]]
args = args[:-2] + extra + args[-2:]
os.execv(args[0], args)
"#,
            python.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    for script in [&browser, &wrap] {
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_mcp-chat");
    let cimd = "--client-metadata-url https://conformance-test.local/client-metadata.json";
    let call = "call remote test-tool {}";
    let mut failed = Vec::new();
    for (scenario, flags) in [
        ("auth/metadata-default", ""),
        ("auth/metadata-var1", ""),
        ("auth/metadata-var2", ""),
        ("auth/metadata-var3", ""),
        ("auth/basic-cimd", cimd),
        ("auth/scope-from-www-authenticate", ""),
        ("auth/scope-from-scopes-supported", ""),
        ("auth/scope-omitted-when-undefined", ""),
        ("auth/scope-step-up", call),
        ("auth/scope-retry-limit", call),
        ("auth/token-endpoint-auth-basic", ""),
        ("auth/token-endpoint-auth-post", ""),
        ("auth/token-endpoint-auth-none", ""),
        ("auth/pre-registration", ""),
        ("auth/2025-03-26-oauth-metadata-backcompat", ""),
        ("auth/2025-03-26-oauth-endpoint-fallback", ""),
        ("auth/resource-mismatch", ""),
        ("auth/offline-access-scope", cimd),
        ("auth/offline-access-not-supported", ""),
        (
            "auth/client-credentials-basic",
            "--grant client_credentials",
        ),
        ("auth/client-credentials-jwt", "--grant client_credentials"),
        (
            "auth/cross-app-access-complete-flow",
            "--grant enterprise_managed",
        ),
    ] {
        let out = tokio::process::Command::new(&node)
            .arg(&suite)
            .args([
                "client",
                "--command",
                &format!("{} {bin} tools --json {flags} --url", wrap.display()),
            ])
            .args(["--scenario", scenario, "--timeout", "60000"])
            .env("NO_COLOR", "1")
            .env("BROWSER", &browser)
            .output()
            .await
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !(out.status.success()
            && report.contains(", 0 failed, 0 warnings")
            && report.contains("OVERALL: PASSED"))
        {
            failed.push(format!("{scenario}:\n{report}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Answers every HTTP request on a free port with a 307 to `location`; returns the port.
async fn redirector(location: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// Counts the connections made to a free port; returns the port and the count.
async fn trap() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (port, hits)
}

fn request_client(hosts: &[String], private: bool) -> RequestServerClient {
    let config = McpConfig {
        request_servers: RequestServersMode::AllowList,
        request_server_hosts: hosts.to_vec(),
        request_server_private: private,
        startup_timeout: Duration::from_secs(10),
        ..mcp_config()
    };
    RequestServerClient::new(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_servers_connect_by_allow_list_and_refuse_the_rest() {
    let (_server, url) = fixture_http();
    let port = reqwest::Url::parse(&url).unwrap().port().unwrap();
    let (trap_port, trap_hits) = trap().await;
    let redirect_port = redirector(format!("http://127.0.0.1:{trap_port}/mcp")).await;
    let none = BTreeMap::new();
    let open = request_client(
        &[
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{redirect_port}"),
            format!("localhost:{port}"),
        ],
        true,
    );

    // Chosen by URL on the allow-list (private addresses allowed): listed, named beside the
    // hub's tools, called.
    let hub = start(json!({"fix": {"command": fixture()}})).await;
    let web = open.connect("web", &url, &none, None).await.unwrap();
    assert_eq!(web.transport(), "streamable_http");
    assert!(
        web.tools().iter().any(|t| t.name == "echo"),
        "{:?}",
        web.tools()
    );
    let narrow = open
        .connect("narrow", &url, &none, Some(&["echo".into(), "add".into()]))
        .await
        .unwrap();
    let narrowed: Vec<_> = narrow.tools().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(narrowed, ["echo", "add"], "allowed_tools narrows");
    let hub_dyn: Arc<dyn ToolHub> = hub.clone();
    let view = RequestHub::new(hub_dyn, vec![web, narrow], ToolPrefix::OnCollision);
    let tools = view.tools();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "names stay unique: {names:?}");
    let owner = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.server.clone())
    };
    assert_eq!(
        owner("echo").as_deref(),
        Some("fix"),
        "the hub keeps its names"
    );
    assert_eq!(owner("web__echo").as_deref(), Some("web"));
    assert_eq!(owner("narrow__add").as_deref(), Some("narrow"));
    let out = view
        .call("web__echo", json!({"text": "hi"}), CancellationToken::new())
        .await;
    assert!(
        out.ok && out.text.ends_with("hi") && out.server == "web",
        "{out:?}"
    );
    let out = view
        .call(
            "narrow__add",
            json!({"a": 2, "b": 3}),
            CancellationToken::new(),
        )
        .await;
    assert!(out.ok && out.text.contains("\"sum\":5"), "{out:?}");
    let out = view
        .call("echo", json!({"text": "hub"}), CancellationToken::new())
        .await;
    assert!(out.ok && out.server == "fix", "{out:?}");
    view.close().await;
    let out = view
        .call("web__echo", json!({"text": "hi"}), CancellationToken::new())
        .await;
    assert!(!out.ok, "closed: {out:?}");
    hub.shutdown().await;

    // A host not on the list.
    let e = open
        .connect("x", "https://elsewhere.example/mcp", &none, None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, RequestServerError::Refused(Refusal::Host(_))),
        "{e}"
    );
    // Plain http for a host listed without `http://`.
    let e = open
        .connect("x", &format!("http://localhost:{port}/mcp"), &none, None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, RequestServerError::Refused(Refusal::PlainHttp(_))),
        "{e}"
    );
    // A redirect to a URL the policy refuses is not followed.
    let e = open
        .connect(
            "x",
            &format!("http://127.0.0.1:{redirect_port}/mcp"),
            &none,
            None,
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RequestServerError::Connect { .. }), "{e}");
    assert!(!e.to_string().contains("/mcp"), "no path in the error: {e}");
    assert_eq!(
        trap_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed"
    );

    // A listed name that resolves to 127.0.0.1 while private addresses are not allowed.
    let closed = request_client(&[format!("http://localhost:{port}")], false);
    let e = closed
        .connect("x", &format!("http://localhost:{port}/mcp"), &none, None)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, RequestServerError::Refused(Refusal::Address { .. }))
            && e.to_string().contains("loopback"),
        "{e}"
    );
}
