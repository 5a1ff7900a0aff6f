//! Non-Rust clients against the real service: the official `openai` Python SDK (every
//! feature the SDKs rely on, and its exception classes), and a Python `grpcio` client built
//! from server reflection alone. The Python packages come from the test script's venv.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::path::Path;

use service::{Service, deps_dir, external};
use upstream::{Answer, FakeUpstream, Reply};

async fn run_python(python: &Path, script: &str, env: &[(&str, String)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{stderr}",
        script.display()
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout.into_owned()
}

#[tokio::test]
async fn the_official_openai_sdk_works_end_to_end() {
    let deps = deps_dir();
    let (Some(python), Some(sqlite)) = (
        external(deps.join("venv/bin/python")),
        external(deps.join("venv/bin/mcp-server-sqlite")),
    ) else {
        return;
    };
    let text = || Reply::answer(Answer::text(&["Hello", " there"]).usage(12, 2));
    let sql_call = || {
        Reply::answer(Answer::text(&[]).tool_call(
            "call_sql",
            "read_query",
            &["{\"query\": ", "\"SELECT 6*7 AS answer\"}"],
        ))
    };
    let sql_answer = || Reply::text(&["The database ", "says 42."]);
    let fake = FakeUpstream::with([
        text(),
        text(),
        text(),
        sql_call(),
        sql_answer(),
        sql_call(),
        sql_answer(),
        Reply::answer(Answer::text(&[]).tool_call(
            "call_w",
            "get_weather",
            &["{\"city\"", ": \"Paris\"}"],
        )),
        Reply::text(&["It is 18 C and sunny in Paris."]),
    ])
    .await;

    let dir = tempfile::tempdir().unwrap();
    let servers = serde_json::json!({"mcpServers": {"sqlite": {
        "command": sqlite, "args": ["--db-path", dir.path().join("test.db")]
    }}});
    std::fs::write(dir.path().join("servers_config.json"), servers.to_string()).unwrap();
    let svc = Service::start_in(
        dir,
        &[
            ("OPENAI_BASE_URL", &fake.base_url),
            ("DEFAULT_MODEL", "test-model"),
            ("API_KEYS", "test-key"),
        ],
        &[],
    )
    .await;

    run_python(
        &python,
        "openai_sdk_check.py",
        &[
            ("MCP_CHAT_URL", svc.http()),
            ("MCP_CHAT_KEY", "test-key".into()),
            ("MCP_CHAT_MODEL", "test-model".into()),
        ],
    )
    .await;

    let seen = fake.requests();
    assert_eq!(seen.len(), 9, "every scripted reply was used");
    // The sqlite tool really ran: its result went back to the model.
    let messages = seen[4].body["messages"].as_array().unwrap();
    let tool = messages.last().unwrap();
    assert_eq!(tool["role"], "tool");
    assert!(tool["content"].as_str().unwrap().contains("42"), "{tool}");
    // The client tool's result came from the SDK's second request.
    let last = seen[8].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["role"].as_str(), last["content"].as_str()),
        (Some("tool"), Some("18 C and sunny"))
    );
}

#[tokio::test]
async fn a_python_grpc_client_built_from_reflection_calls_list_models_and_chat() {
    let Some(python) = external(deps_dir().join("venv/bin/python")) else {
        return;
    };
    let fake = FakeUpstream::with([Reply::text(&["Hello from ", "the fake upstream"])]).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_in(
        dir,
        &[
            ("OPENAI_BASE_URL", &fake.base_url),
            ("DEFAULT_MODEL", "test-model"),
        ],
        &[],
    )
    .await;
    run_python(
        &python,
        "grpc_reflection_check.py",
        &[
            ("MCP_CHAT_GRPC", format!("127.0.0.1:{}", svc.grpc_port)),
            ("MCP_CHAT_MODEL", "test-model".into()),
        ],
    )
    .await;
    assert_eq!(fake.request_count(), 1);
}

/// OpenAI's `type: "mcp"` tool and approvals through the official SDK (`extra_body`).
#[tokio::test]
async fn the_openai_sdk_drives_mcp_tools_and_approvals() {
    let Some(python) = external(deps_dir().join("venv/bin/python")) else {
        return;
    };
    let add = |id: &str| {
        Reply::answer(Answer::text(&[]).tool_call(id, "add", &["{\"a\": 2", ", \"b\": 3}"]))
    };
    let fake = FakeUpstream::with([
        add("call_add"),
        Reply::text(&["The sum is 5."]),
        add("call_add2"),
        Reply::text(&["Not adding, then."]),
    ])
    .await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("calls.log");
    let dir = service::dir_with_servers(serde_json::json!({
        "fx": {"command": service::fixture_path(), "env": {"FIXTURE_CALL_LOG": log}},
    }));
    let svc = Service::start_in(
        dir,
        &[
            ("OPENAI_BASE_URL", &fake.base_url),
            ("DEFAULT_MODEL", "test-model"),
        ],
        &[],
    )
    .await;
    run_python(
        &python,
        "openai_mcp_approvals_check.py",
        &[
            ("MCP_CHAT_URL", svc.http()),
            ("MCP_CHAT_MODEL", "test-model".into()),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "add {\"a\":2,\"b\":3}\n",
        "only the approved call ran, once"
    );
    let last = fake.requests().last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["content"],
        "The user denied this call to add on fx (reason: not today)."
    );
}

#[tokio::test]
async fn the_openai_sdk_drives_the_responses_api_with_mcp_tools_and_a_restart() {
    let Some(python) = external(deps_dir().join("venv/bin/python")) else {
        return;
    };
    let call = |id: &str, name: &str, fragments: &[&str]| {
        Reply::answer(
            Answer::text(&[])
                .tool_call(id, name, fragments)
                .usage(10, 2),
        )
    };
    let text = |parts: &[&str]| Reply::answer(Answer::text(parts).usage(10, 2));
    let fake = FakeUpstream::with([
        call("call_add", "add", &["{\"a\": 2", ", \"b\": 3}"]),
        call("call_echo", "echo", &["{\"text\"", ": \"hi\"}"]),
        text(&["The sum ", "is 5."]),
        text(&["Hel", "lo!"]),
        call("call_yo", "echo", &["{\"text\": \"yo\"}"]),
        text(&["yo!"]),
        call("call_w", "get_weather", &["{\"city\": ", "\"Paris\"}"]),
        text(&["It is sunny in Paris."]),
        call("call_apr", "add", &["{\"a\": 2, \"b\": 3}"]),
        text(&["Approved: 5."]),
        text(&["Still here."]),
    ])
    .await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("calls.log");
    let dir = service::dir_with_servers(serde_json::json!({
        "fx": {"command": service::fixture_path(), "env": {"FIXTURE_CALL_LOG": log}},
    }));
    let data = dir.path().to_path_buf();
    let store = format!("sqlite://{}/sessions.db", data.display());
    let env = [
        ("OPENAI_BASE_URL", fake.base_url.as_str()),
        ("DEFAULT_MODEL", "test-model"),
        ("MCP_CHAT_SESSION_STORE", store.as_str()),
    ];
    let mut svc = Service::start_in(dir, &env, &[]).await;
    let out = run_python(
        &python,
        "openai_responses_check.py",
        &[
            ("MCP_CHAT_URL", svc.http()),
            ("MCP_CHAT_MODEL", "test-model".into()),
            ("PHASE", "main".into()),
        ],
    )
    .await;
    let resume = out
        .lines()
        .find_map(|l| l.strip_prefix("RESUME_ID="))
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "add {\"a\":2,\"b\":3}\necho {\"text\":\"hi\"}\necho {\"text\":\"yo\"}\nadd {\"a\":2,\"b\":3}\n",
        "each call ran once; the approved one after its approval"
    );
    let roles = |n: usize| -> Vec<String> {
        fake.requests()[n].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}:{}",
                    m["role"].as_str().unwrap(),
                    m["content"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };
    // The streamed continuation carried the whole first conversation.
    assert_eq!(
        roles(3),
        [
            "user:What is 2+3? Then echo hi.",
            "assistant:",
            "tool:{\"sum\":5.0}",
            "assistant:",
            "tool:hi",
            "assistant:The sum is 5.",
            "user:Say hello."
        ]
    );

    // Restart on the same store; continue the first response again (a fork: the stored
    // conversation went on past it).
    svc.signal("TERM");
    svc.wait_exit(std::time::Duration::from_secs(10)).await;
    let dir = tempfile::TempDir::new_in(&data).unwrap();
    std::fs::copy(
        data.join("servers_config.json"),
        dir.path().join("servers_config.json"),
    )
    .unwrap();
    let _first = svc;
    let svc = Service::start_in(dir, &env, &[]).await;
    run_python(
        &python,
        "openai_responses_check.py",
        &[
            ("MCP_CHAT_URL", svc.http()),
            ("MCP_CHAT_MODEL", "test-model".into()),
            ("PHASE", "resume".into()),
            ("RESUME_ID", resume),
        ],
    )
    .await;
    let last = roles(10);
    assert_eq!(
        last.first().map(String::as_str),
        Some("user:What is 2+3? Then echo hi.")
    );
    assert_eq!(
        &last[last.len() - 2..],
        ["assistant:The sum is 5.", "user:Are you still there?"],
        "the fork holds the first conversation only"
    );
}
