//! `/mcp`: mcp-chat as an MCP server, end to end. The real binary runs our fixture (stdio),
//! `mcp-server-sqlite` (PyPI) and `@modelcontextprotocol/server-everything` (npm, on Node 22)
//! behind its hub; real MCP clients talk to `/mcp`: rmcp's client here, the official Python
//! SDK's client (`tests/mcp_serve_client.py`), and the official conformance suite's server
//! scenarios against the fixture's conformance mode.
//!
//! External programs are installed by scripts/test under `$MCP_CHAT_TEST_DEPS`; a test whose
//! program is missing says why and returns, unless `MCP_CHAT_E2E_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(deprecated)] // logging is deprecated in the 2026-07-28 revision; 2025 clients use it.

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::{path::PathBuf, time::Duration};

use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{
        ArgumentInfo, CallToolRequestParams, ClientRequest, CompleteRequestParams,
        GetPromptRequestParams, LoggingLevel, LoggingMessageNotificationParam,
        ProgressNotificationParam, ReadResourceRequestParams, Reference, Request,
        SetLevelRequestParams,
    },
    service::{NotificationContext, PeerRequestOptions, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use service::{Service, deps_dir, external, fixture_path};
use tokio::sync::mpsc;

const KEY: &str = "k-mcp";

/// What the client heard from the server, in order.
#[derive(Debug, Clone, PartialEq)]
enum Heard {
    Progress(f64, Option<f64>),
    ToolsChanged,
    /// A log message: its level, logger and text.
    Log(LoggingLevel, Option<String>, String),
}

#[derive(Clone)]
struct Listener(mpsc::UnboundedSender<Heard>);

impl ClientHandler for Listener {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Heard::Progress(params.progress, params.total));
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.0.send(Heard::ToolsChanged);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let text = params.data.as_str().unwrap_or_default().to_string();
        let _ = self.0.send(Heard::Log(params.level, params.logger, text));
    }
}

fn node() -> Option<PathBuf> {
    external(deps_dir().join("node/node_modules/node/bin/node"))
}

fn everything_js() -> Option<PathBuf> {
    external(
        deps_dir().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    )
}

/// The service with the fixture (`fx`), sqlite and server-everything behind it, keys on.
async fn service_with_three_servers() -> Option<Service> {
    let (node, js) = (node()?, everything_js()?);
    let sqlite = external(deps_dir().join("venv/bin/mcp-server-sqlite"))?;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test.db");
    let servers = json!({ "mcpServers": {
        "fx": {"command": fixture_path()},
        "sqlite": {"command": sqlite, "args": ["--db-path", db]},
        "everything": {"command": node, "args": [js, "stdio"]},
    }});
    std::fs::write(dir.path().join("servers_config.json"), servers.to_string()).unwrap();
    let env = [
        ("API_KEYS", KEY),
        ("MCP_CHAT_MCP_MAX_RESTART_BACKOFF", "1s"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
    ];
    Some(Service::start_in(dir, &env, &[]).await)
}

async fn connect(
    svc: &Service,
) -> (
    RunningService<RoleClient, Listener>,
    mpsc::UnboundedReceiver<Heard>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", svc.http()))
        .auth_header(KEY);
    let client = Listener(tx)
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap();
    (client, rx)
}

/// The next thing heard that `wanted` accepts, within `limit`.
async fn hear(
    rx: &mut mpsc::UnboundedReceiver<Heard>,
    limit: Duration,
    wanted: impl Fn(&Heard) -> bool,
) -> Heard {
    tokio::time::timeout(limit, async {
        loop {
            let heard = rx.recv().await.expect("the client closed");
            if wanted(&heard) {
                return heard;
            }
        }
    })
    .await
    .expect("not heard in time")
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap().to_string()
}

async fn call(
    client: &RunningService<RoleClient, Listener>,
    name: &str,
    args: Value,
) -> rmcp::model::CallToolResult {
    let params = CallToolRequestParams::new(name.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    client.peer().call_tool(params).await.unwrap()
}

/// Without a key `/mcp` answers 401 with a Bearer challenge; a browser `Origin` that is not
/// allowed gets 403 (DNS rebinding); the welcome document names the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_refuses_callers_without_a_key_and_foreign_origins() {
    let dir = service::dir_with_servers(json!({"fx": {"command": fixture_path()}}));
    let svc = Service::start_in(dir, &[("API_KEYS", KEY)], &[]).await;
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"}}});
    let post = || {
        http.post(format!("{}/mcp", svc.http()))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
    };
    let r = post().send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = post().bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post()
        .bearer_auth(KEY)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{:?}", r.text().await);
    let r = post().bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("mcp-session-id"));
    let welcome: Value = http
        .get(svc.http())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(welcome["endpoints"]["POST/GET/DELETE /mcp"].is_string());
}

/// rmcp's client through `/mcp`: lists and calls the tools of the fixture, sqlite and
/// server-everything (schemas and annotations kept), reads a resource, gets a prompt, sees
/// the long-running tool's progress, cancels a call (the server sees it), and hears
/// `list_changed` when a server goes down and again when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_uses_the_hubs_tools_resources_and_prompts_through_mcp() {
    let Some(svc) = service_with_three_servers().await else {
        return;
    };
    let (client, mut heard) = connect(&svc).await;
    let info = client.peer().peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "mcp-chat");
    assert!(info.capabilities.tools.is_some() && info.capabilities.prompts.is_some());

    let tools = client.peer().list_all_tools().await.unwrap();
    let tool = |name: &str| {
        tools.iter().find(|t| t.name == name).unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                tools.iter().map(|t| &t.name).collect::<Vec<_>>()
            )
        })
    };
    // Both the fixture and server-everything have `echo`: the names are namespaced.
    tool("fx__echo");
    tool("everything__echo");
    tool("read_query");
    let long = tool("trigger-long-running-operation");
    assert_eq!(
        long.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true),
        "annotations are kept"
    );
    assert!(
        tool("get-structured-content").output_schema.is_some(),
        "output schemas are kept"
    );

    let echoed = call(&client, "fx__echo", json!({"text": "hi"})).await;
    assert!(text_of(&echoed).contains("hi"), "{echoed:?}");
    let added = call(&client, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(added.structured_content, Some(json!({"sum": 5.0})));
    call(
        &client,
        "create_table",
        json!({"query": "CREATE TABLE t (x TEXT)"}),
    )
    .await;
    call(
        &client,
        "write_query",
        json!({"query": "INSERT INTO t VALUES ('row-1')"}),
    )
    .await;
    let rows = call(&client, "read_query", json!({"query": "SELECT x FROM t"})).await;
    assert!(text_of(&rows).contains("row-1"), "{rows:?}");
    let unknown = client
        .peer()
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(unknown.is_err(), "an unknown tool is a JSON-RPC error");

    // Resources and prompts of the servers that offer them.
    let resources = client.peer().list_all_resources().await.unwrap();
    assert!(
        resources.iter().any(|r| r.uri == "memo://insights"),
        "{resources:?}"
    );
    let memo = client
        .peer()
        .read_resource(ReadResourceRequestParams::new("memo://insights"))
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&memo)
            .unwrap()
            .contains("memo://insights")
    );
    let templates = client.peer().list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template.starts_with("demo://resource/dynamic/text/")),
        "{templates:?}"
    );
    let dynamic = client
        .peer()
        .read_resource(ReadResourceRequestParams::new(
            "demo://resource/dynamic/text/1",
        ))
        .await
        .unwrap();
    assert!(!dynamic.contents.is_empty());
    let prompts = client.peer().list_all_prompts().await.unwrap();
    assert!(
        prompts.iter().any(|p| p.name == "simple-prompt"),
        "{prompts:?}"
    );
    let prompt = client
        .peer()
        .get_prompt(GetPromptRequestParams::new("simple-prompt"))
        .await
        .unwrap();
    assert!(!prompt.messages.is_empty());

    // Progress of the long-running tool comes back with the client's own token.
    let done = call(
        &client,
        "trigger-long-running-operation",
        json!({"duration": 1, "steps": 3}),
    )
    .await;
    assert!(text_of(&done).contains("completed"), "{done:?}");
    for step in 1..=3 {
        let p = hear(&mut heard, Duration::from_secs(5), |h| {
            matches!(h, Heard::Progress(..))
        })
        .await;
        assert_eq!(p, Heard::Progress(f64::from(step), Some(3.0)));
    }

    // Cancelling a call cancels it on the server.
    let params = CallToolRequestParams::new("slow")
        .with_arguments(json!({"ms": 20_000}).as_object().cloned().unwrap());
    let handle = client
        .peer()
        .send_request_with_option(
            ClientRequest::CallToolRequest(Request::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    hear(&mut heard, Duration::from_secs(10), |h| {
        matches!(h, Heard::Progress(..))
    })
    .await;
    handle.cancel(Some("enough".into())).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = call(&client, "cancellations", json!({})).await;
        if text_of(&n).contains("\"1\"") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server saw no cancellation: {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The fixture goes down (its tools are withdrawn) and comes back (offered again).
    let _ = client
        .peer()
        .send_request_with_option(
            ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new("crash"))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    hear(&mut heard, Duration::from_secs(15), |h| {
        *h == Heard::ToolsChanged
    })
    .await;
    let names = |tools: Vec<rmcp::model::Tool>| {
        tools
            .into_iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut down_seen = false;
    loop {
        let now = names(client.peer().list_all_tools().await.unwrap());
        if !now.contains(&"slow".to_string()) {
            down_seen = true;
        }
        if down_seen && now.contains(&"slow".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fixture did not come back: {now:?}"
        );
        hear(&mut heard, Duration::from_secs(20), |h| {
            *h == Heard::ToolsChanged
        })
        .await;
    }
    client.cancel().await.unwrap();
}

/// A named key sees and calls only what its `[[api_keys]]` entry allows through `/mcp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_key_sees_only_its_tools_through_mcp() {
    let dir = service::dir_with_servers(json!({
        "fx": {"command": fixture_path()},
        "other": {"command": fixture_path(), "args": ["--name", "other"]},
    }));
    let toml = r#"
[[api_keys]]
name = "narrow"
key = "k-narrow"
allowed_servers = ["fx"]
allowed_tools = ["fx__echo"]
"#;
    std::fs::write(dir.path().join("mcp-chat.toml"), toml).unwrap();
    let svc = Service::start_in(dir, &[("API_KEYS", KEY)], &[]).await;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", svc.http()))
        .auth_header("k-narrow");
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = Listener(tx)
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap();
    let tools = client.peer().list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["fx__echo"]);
    let refused = client
        .peer()
        .call_tool(CallToolRequestParams::new("other__echo"))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let echoed = client
        .peer()
        .call_tool(
            CallToolRequestParams::new("fx__echo")
                .with_arguments(json!({"text": "mine"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert!(text_of(&echoed).contains("mine"));
    client.cancel().await.unwrap();
}

/// The official Python SDK's client through `/mcp` (`tests/mcp_serve_client.py`): tools of
/// the three servers, a resource, a prompt, progress, cancellation and `list_changed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_uses_the_hub_through_mcp() {
    let Some(python) = external(deps_dir().join("venv/bin/python")) else {
        return;
    };
    let Some(svc) = service_with_three_servers().await else {
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_serve_client.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python)
            .arg(script)
            .arg(format!("{}/mcp", svc.http()))
            .arg(KEY)
            .output(),
    )
    .await
    .expect("the Python client did not finish in 120 s")
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.contains("all checks passed"),
        "{report}"
    );
}

/// The official conformance suite's (`@modelcontextprotocol/conformance`) server scenarios,
/// every one of them, against `/mcp` with the fixture's conformance mode behind the hub.
const CONFORMANCE_SERVER_SCENARIOS: [&str; 32] = [
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "elicitation-sep1330-enums",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
    "logging-set-level",
    "tools-call-with-logging",
    "completion-complete",
    "json-schema-2020-12",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suites_server_scenarios_pass_against_mcp() {
    let node_dir = deps_dir().join("node/node_modules");
    let (Some(node), Some(suite)) = (
        node(),
        external(node_dir.join("@modelcontextprotocol/conformance/dist/index.js")),
    ) else {
        return;
    };
    let dir = service::dir_with_servers(json!({
        "conformance": {"command": fixture_path(), "args": ["--conformance"]},
    }));
    // The suite's DNS-rebinding scenario is for local servers without authentication.
    let svc = Service::start_in(dir, &[], &[]).await;
    let url = format!("{}/mcp", svc.http());
    let mut failed = Vec::new();
    for scenario in CONFORMANCE_SERVER_SCENARIOS {
        let out = tokio::process::Command::new(&node)
            .arg(&suite)
            .args(["server", "--url", &url, "--scenario", scenario])
            .env("NO_COLOR", "1")
            .output()
            .await
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || !report.contains(" 0 failed") {
            failed.push(format!("{scenario}:\n{report}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// `logging/setLevel` per session: the server is asked for the most verbose level a session
/// wants and each session gets what is at or above its own level, the logger naming the
/// server; `completion/complete` reaches the server that owns the prompt or template, and
/// an unknown prompt is the spec's invalid-params error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_levels_and_completions_reach_mcp_clients() {
    let dir = service::dir_with_servers(json!({
        "conformance": {"command": fixture_path(), "args": ["--conformance"]},
    }));
    let svc = Service::start_in(dir, &[("API_KEYS", KEY)], &[]).await;
    let (quiet, mut quiet_heard) = connect(&svc).await;
    let (verbose, mut verbose_heard) = connect(&svc).await;
    quiet
        .peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Notice))
        .await
        .unwrap();
    verbose
        .peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .unwrap();

    let answer = call(&verbose, "test_tool_with_logging", json!({})).await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    let is_log = |h: &Heard| matches!(h, Heard::Log(..));
    let limit = Duration::from_secs(10);
    let mut levels = Vec::new();
    for _ in 0..3 {
        let Heard::Log(level, logger, _) = hear(&mut verbose_heard, limit, is_log).await else {
            unreachable!()
        };
        assert_eq!(logger.as_deref(), Some("conformance/conformance-upstream"));
        levels.push(level);
    }
    assert_eq!(
        levels,
        [
            LoggingLevel::Debug,
            LoggingLevel::Info,
            LoggingLevel::Notice
        ]
    );
    // The notice-level session hears the same call's last message first: the debug and info
    // ones before it were held back for it alone.
    let first = hear(&mut quiet_heard, limit, is_log).await;
    assert_eq!(
        first,
        Heard::Log(
            LoggingLevel::Notice,
            Some("conformance/conformance-upstream".into()),
            "Tool execution completed".into()
        )
    );

    let complete = |reference: Reference, name: &str, value: &str| {
        CompleteRequestParams::new(reference, ArgumentInfo::new(name, value))
    };
    let prompt = Reference::for_prompt("test_prompt_with_arguments");
    let done = quiet
        .peer()
        .complete(complete(prompt, "arg1", "pa"))
        .await
        .unwrap();
    assert_eq!(done.completion.values, ["paris", "park"]);
    let template = Reference::for_resource("test://template/{id}/data");
    let done = quiet
        .peer()
        .complete(complete(template, "id", "test-"))
        .await
        .unwrap();
    assert_eq!(done.completion.values, ["test-one", "test-two"]);
    let unknown = quiet
        .peer()
        .complete(complete(Reference::for_prompt("no_such_prompt"), "a", ""))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, rmcp::ServiceError::McpError(e) if e.code.0 == -32602),
        "{unknown:?}"
    );
    quiet.cancel().await.unwrap();
    verbose.cancel().await.unwrap();
}

/// `mcp.serve_chat_tool`: a `chat` tool that runs a whole agent turn for the caller's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_tool_runs_a_turn_through_mcp() {
    let fake =
        upstream::FakeUpstream::with([upstream::Reply::text(&["hello from the agent"])]).await;
    let dir = service::dir_with_servers(json!({"fx": {"command": fixture_path()}}));
    let env = [("API_KEYS", KEY), ("MCP_CHAT_MCP_SERVE_CHAT_TOOL", "true")];
    let svc = service::start_with(&fake.base_url, dir, &env).await;
    let (client, _heard) = connect(&svc).await;
    let tools = client.peer().list_all_tools().await.unwrap();
    let chat = tools
        .iter()
        .find(|t| t.name == "chat")
        .expect("a chat tool");
    assert!(chat.output_schema.is_some());
    let answer = call(&client, "chat", json!({"message": "hi"})).await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    assert!(
        text_of(&answer).contains("hello from the agent"),
        "{answer:?}"
    );
    assert_eq!(
        answer.structured_content.as_ref().unwrap()["response"],
        "hello from the agent"
    );
    let missing = call(&client, "chat", json!({})).await;
    assert_eq!(missing.is_error, Some(true));
    client.cancel().await.unwrap();
}

/// The progress an MCP server reports for a running call reaches the chat APIs: typed
/// `tool_call_progress` events on gRPC `StreamChat`, `tool_progress` events on
/// `/chat/stream`, and (opt-in) comments in OpenAI streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_progress_reaches_the_chat_apis() {
    use mcp_chat::pb::chat_event::Event;
    use upstream::{Answer, Reply};
    let slow = || Reply::answer(Answer::text(&[]).tool_call("c1", "slow", &["{\"ms\": 400}"]));
    let done = || Reply::answer(Answer::text(&["done"]));
    let fake = upstream::FakeUpstream::with([slow(), done(), slow(), done(), slow(), done()]).await;
    let dir = service::dir_with_servers(json!({"fx": {"command": fixture_path()}}));
    let svc = service::start_with(
        &fake.base_url,
        dir,
        &[("MCP_CHAT_EXPOSE_TOOL_EVENTS", "true")],
    )
    .await;

    let mut stream = service::grpc(&svc)
        .await
        .stream_chat(service::user("go"))
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        match event.event.unwrap() {
            Event::ToolCallStarted(_) => kinds.push("started".to_string()),
            Event::ToolCallProgress(p) => {
                assert_eq!((p.id.as_str(), p.total), ("c1", Some(10.0)));
                kinds.push(format!("progress {}", p.progress));
            }
            Event::ToolCallFinished(_) => kinds.push("finished".to_string()),
            _ => {}
        }
    }
    let progress = kinds.iter().filter(|k| k.starts_with("progress")).count();
    assert!(progress >= 5, "{kinds:?}");
    assert_eq!(kinds.first().map(String::as_str), Some("started"));
    assert_eq!(kinds.last().map(String::as_str), Some("finished"));

    let http = reqwest::Client::new();
    let body = svc
        .post_json(&http, "/chat/stream", &json!({"message": "go"}))
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains("event: tool_progress"), "{body}");
    let body = svc
        .post_chat(
            &http,
            &json!({"model": "test-model", "stream": true,
            "messages": [{"role": "user", "content": "go"}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains(": mcp_tool_call_progress "), "{body}");
}
