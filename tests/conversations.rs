//! Sessions end to end on the real binary: memory across calls on all three APIs, reading
//! and deleting, a busy session, SQLite across a restart and across SIGKILL mid-turn, and
//! two processes sharing one Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mcp_chat::pb::{self};
use reqwest::Client;
use serde_json::{Value, json};
use service::{Service, dir_with_fixture, external, free_port, grpc};
use tonic::Code;
use upstream::{Answer, FakeUpstream, Reply};

fn env<'a>(fake: &'a FakeUpstream, store: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OPENAI_BASE_URL", fake.base_url.as_str()),
        ("DEFAULT_MODEL", "test-model"),
        ("MCP_CHAT_SESSION_STORE", store),
    ]
}

fn turn(text: &str, session: Option<&str>) -> pb::ChatRequest {
    pb::ChatRequest {
        messages: vec![pb::Message {
            role: pb::Role::User.into(),
            content: text.into(),
            ..Default::default()
        }],
        session_id: session.map(String::from),
        new_session: session.is_none(),
        ..Default::default()
    }
}

/// The user and assistant texts the upstream saw in request `n`.
fn seen_texts(fake: &FakeUpstream, n: usize) -> Vec<String> {
    fake.requests()[n].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| {
            format!(
                "{}: {}",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn grpc_sessions_continue_and_can_be_read_and_deleted() {
    let fake = FakeUpstream::with([Reply::text(&["Hi Ann"]), Reply::text(&["You are Ann"])]).await;
    let svc = Service::start(&env(&fake, "memory://")).await;
    let mut client = grpc(&svc).await;
    let first = client
        .chat(turn("I am Ann", None))
        .await
        .unwrap()
        .into_inner();
    let id = first.session_id.clone().unwrap();
    assert!(id.len() >= 32, "unguessable id: {id}");
    let second = client
        .chat(turn("Who am I?", Some(&id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.session_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        seen_texts(&fake, 1),
        ["user: I am Ann", "assistant: Hi Ann", "user: Who am I?"]
    );

    let stored = client
        .get_session(pb::GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<_> = stored.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["I am Ann", "Hi Ann", "Who am I?", "You are Ann"]);
    assert_eq!(stored.model, "test-model");
    assert!(stored.created > 0 && stored.updated >= stored.created);

    client
        .delete_session(pb::DeleteSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap();
    let e = client
        .get_session(pb::GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .delete_session(pb::DeleteSessionRequest { session_id: id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client.chat(turn("x", Some("bad id!"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn http_sessions_on_the_simplified_and_openai_apis() {
    let fake = FakeUpstream::with([
        Reply::text(&["one"]),
        Reply::text(&["two"]),
        Reply::text(&["three"]),
    ])
    .await;
    let svc = Service::start(&env(&fake, "memory://")).await;
    let http = Client::new();
    let r: Value = svc
        .post_json(&http, "/chat", &json!({"message": "first"}))
        .await
        .json()
        .await
        .unwrap();
    let id = r["session_id"].as_str().unwrap().to_string();
    let r: Value = svc
        .post_json(
            &http,
            "/chat",
            &json!({"message": "second", "session_id": id}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["response"].as_str(), r["session_id"].as_str()),
        (Some("two"), Some(id.as_str()))
    );
    assert_eq!(
        seen_texts(&fake, 1),
        ["user: first", "assistant: one", "user: second"]
    );

    // The OpenAI API takes the session from a header and returns it in one.
    let body = json!({"messages": [{"role": "user", "content": "third"}]});
    let r = svc
        .post(&http, "/v1/chat/completions")
        .header("x-session-id", &id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-session-id"], id.as_str());
    assert_eq!(seen_texts(&fake, 2).len(), 5);

    let stored: Value = http
        .get(format!("{}/sessions/{id}", svc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["messages"].as_array().unwrap().len(), 6, "{stored}");
    assert_eq!(
        stored["messages"][5],
        json!({"role": "assistant", "content": "three"})
    );
    let deleted = http
        .delete(format!("{}/sessions/{id}", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = http
        .get(format!("{}/sessions/{id}", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_not_found");
}

#[tokio::test]
async fn a_busy_session_is_a_conflict() {
    let fake = FakeUpstream::with([
        Reply::text(&["slow", " answer"]).delay(Duration::from_millis(700)),
        Reply::text(&["x"]),
    ])
    .await;
    let mut all = env(&fake, "memory://");
    all.push(("MCP_CHAT_SESSION_LOCK_TIMEOUT", "200ms"));
    let svc = Service::start(&all).await;
    let http = Client::new();
    let url = format!("{}/chat", svc.http());
    // A streamed turn, so the fake's delay holds the session for a while.
    let slow = tokio::spawn({
        let (http, url) = (http.clone(), format!("{url}/stream"));
        async move {
            let r = http
                .post(url)
                .json(&json!({"message": "a", "session_id": "shared-1"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    });
    while fake.request_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let busy = http
        .post(&url)
        .json(&json!({"message": "b", "session_id": "shared-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 409);
    let body: Value = busy.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_busy", "{body}");
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("event: done"), "{text}");
}

#[tokio::test]
async fn sqlite_sessions_survive_a_restart_and_a_sigkill_mid_turn() {
    let fake = FakeUpstream::with([
        Reply::text(&["Hello Bob"]),
        Reply::answer(Answer::text(&[]).tool_call("c1", "slow", &["{\"ms\": 30000}"])),
        Reply::text(&["Your name is Bob"]),
    ])
    .await;
    let dir = dir_with_fixture();
    let store = format!("sqlite://{}/sessions.db", dir.path().display());
    let data = dir.path().to_path_buf();
    let mut svc = Service::start_in(dir, &env(&fake, &store), &[]).await;
    let id = grpc(&svc)
        .await
        .chat(turn("I am Bob", None))
        .await
        .unwrap()
        .into_inner()
        .session_id
        .unwrap();

    // A turn that calls a slow tool; kill -9 the service while the tool runs.
    let mut client = grpc(&svc).await;
    let pending = tokio::spawn({
        let id = id.clone();
        async move { client.chat(turn("Wait for it", Some(&id))).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.request_count() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    svc.signal("KILL");
    svc.wait_exit(Duration::from_secs(5)).await;
    assert!(pending.await.unwrap().is_err());

    // Restart on the same database: the killed turn is absent, the first one whole.
    let dir = tempfile::TempDir::new_in(&data).unwrap();
    let svc = Service::start_in(dir, &env(&fake, &store), &[]).await;
    let mut client = grpc(&svc).await;
    let stored = client
        .get_session(pb::GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<_> = stored.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["I am Bob", "Hello Bob"]);
    let r = client
        .chat(turn("What is my name?", Some(&id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message.unwrap().content, "Your name is Bob");
    assert_eq!(
        seen_texts(&fake, 2),
        [
            "user: I am Bob",
            "assistant: Hello Bob",
            "user: What is my name?"
        ]
    );
}

/// A `redis-server` on a free port, killed on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let binary = external(which("redis-server")?)?;
        let port = free_port();
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
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

fn which(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        // Let `external` report it (and fail under MCP_CHAT_E2E_REQUIRED=1).
        return Some(std::path::PathBuf::from(format!("/nonexistent/{name}")));
    }
    found
}

#[tokio::test]
async fn two_processes_share_sessions_through_redis() {
    let Some(redis) = Redis::start() else { return };
    let replies =
        (0..6).map(|i| Reply::text(&[&format!("answer {i}")]).delay(Duration::from_millis(100)));
    let fake = FakeUpstream::with(replies).await;
    let store = format!("redis://127.0.0.1:{}/0", redis.1);
    let a = Service::start(&env(&fake, &store)).await;
    let b = Service::start(&env(&fake, &store)).await;
    let (mut ca, mut cb) = (grpc(&a).await, grpc(&b).await);

    // Alternate turns between the replicas.
    let id = ca
        .chat(turn("t0", None))
        .await
        .unwrap()
        .into_inner()
        .session_id
        .unwrap();
    cb.chat(turn("t1", Some(&id))).await.unwrap();
    ca.chat(turn("t2", Some(&id))).await.unwrap();
    assert_eq!(
        seen_texts(&fake, 2).len(),
        5,
        "replica A saw the turn B stored"
    );

    // Concurrent turns from both replicas are serialised and both stored whole.
    let (ra, rb) = tokio::join!(ca.chat(turn("a", Some(&id))), cb.chat(turn("b", Some(&id))));
    ra.unwrap();
    rb.unwrap();
    let stored = ca
        .get_session(pb::GetSessionRequest { session_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.messages.len(), 10);
    for pair in stored.messages.chunks(2) {
        assert_eq!(pair[0].role(), pb::Role::User, "{pair:?}");
        assert_eq!(pair[1].role(), pb::Role::Assistant, "{pair:?}");
        assert!(pair[1].content.starts_with("answer "));
    }
    let last_users: Vec<_> = stored.messages[6..]
        .iter()
        .step_by(2)
        .map(|m| m.content.as_str())
        .collect();
    assert!(
        last_users == ["a", "b"] || last_users == ["b", "a"],
        "{last_users:?}"
    );
}

/// server-everything over stdio as `ev`, in a fresh directory.
fn dir_with_everything() -> Option<tempfile::TempDir> {
    let js = external(
        service::deps_dir()
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    )?;
    Some(service::dir_with_servers(
        json!({"ev": {"command": "node", "args": [js, "stdio"]}}),
    ))
}

/// Waits until the service offers `tool` (server-everything announces its
/// capability-dependent tools after the handshake).
async fn wait_offered(svc: &Service, tool: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tools = grpc(svc)
            .await
            .list_tools(pb::ListToolsRequest {})
            .await
            .unwrap()
            .into_inner();
        if tools.tools.iter().any(|t| t.name == tool) {
            return;
        }
        assert!(Instant::now() < deadline, "{tool} never offered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn elicit_call(id: &str) -> Reply {
    Reply::answer(Answer::text(&[]).tool_call(id, "trigger-elicitation-request", &["{}"]))
}

/// An MCP server's request for input during a streamed turn reaches the caller as an
/// `ElicitationRequired` event (gRPC) or an `elicitation` event (`/chat/stream`) and is
/// answered on the other replica through the shared Redis store: the answer is checked
/// against the requested schema (a 400 naming the field), given once (409), unknown ids are
/// 404; accept and decline reach the server; an unanswered request expires as declined.
#[tokio::test]
async fn elicitations_are_answered_on_another_replica_through_redis() {
    let Some(redis) = Redis::start() else { return };
    let (Some(dir_a), Some(dir_b)) = (dir_with_everything(), dir_with_everything()) else {
        return;
    };
    let fake = FakeUpstream::with([
        elicit_call("e1"),
        Reply::text(&["Thanks, Ada."]),
        elicit_call("e2"),
        Reply::text(&["Understood."]),
        elicit_call("e3"),
        Reply::text(&["Nobody answered."]),
        elicit_call("e4"),
        Reply::text(&["Nobody could answer."]),
    ])
    .await;
    let store = format!("redis://127.0.0.1:{}/0", redis.1);
    let mut env = env(&fake, &store);
    env.push(("MCP_CHAT_APPROVAL_TIMEOUT", "4s"));
    let a = Service::start_in(dir_a, &env, &[]).await;
    let b = Service::start_in(dir_b, &env, &[]).await;
    wait_offered(&a, "trigger-elicitation-request").await;
    wait_offered(&b, "trigger-elicitation-request").await;
    let http = Client::new();
    let answer = |id: &str, body: Value| {
        http.post(format!("{}/chat/elicitations/{id}", b.http()))
            .json(&body)
            .send()
    };

    // 1. gRPC stream on A, answered over HTTP on B.
    let mut request = turn("Ask me for my details", None);
    request.answers_elicitations = true;
    let mut stream = grpc(&a)
        .await
        .stream_chat(request)
        .await
        .unwrap()
        .into_inner();
    let asked = loop {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            pb::chat_event::Event::ElicitationRequired(e) => break e,
            pb::chat_event::Event::Response(r) => panic!("ended without asking: {r:?}"),
            _ => {}
        }
    };
    assert_eq!(asked.server, "ev");
    assert!(asked.message.contains("Please provide inputs"), "{asked:?}");
    let schema = mcp_chat::pb::json::struct_to_json(asked.requested_schema.clone().unwrap());
    assert_eq!(schema["required"], json!(["name"]), "{schema}");
    assert!(asked.expires_at > 0);

    let missing = answer(
        &asked.id,
        json!({"action": "accept", "content": {"check": true}}),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["param"], "content", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"name\" is required"),
        "{body}"
    );
    let wrong_type = answer(
        &asked.id,
        json!({"action": "accept", "content": {"name": "Ada", "integer": 500}}),
    )
    .await
    .unwrap();
    assert_eq!(wrong_type.status(), 400, "integer maximum is 100");
    assert_eq!(
        answer("elicit_unknown", json!({"action": "decline"}))
            .await
            .unwrap()
            .status(),
        404
    );
    let ok = answer(
        &asked.id,
        json!({"action": "accept", "content": {"name": "Ada", "check": true}}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        answer(&asked.id, json!({"action": "decline"}))
            .await
            .unwrap()
            .status(),
        409
    );

    let mut result = None;
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(pb::chat_event::Event::ToolCallFinished(f)) = event.event {
            result = Some(f.result);
        }
    }
    let result = result.unwrap();
    assert!(
        result.contains("Name: Ada") && result.contains("Agreed to terms: true"),
        "{result}"
    );

    // 2. `/chat/stream` on B, declined over gRPC on A.
    let response = http
        .post(format!("{}/chat/stream", b.http()))
        .json(&json!({"message": "Ask again", "answers_elicitations": true}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let id = loop {
        let chunk = futures::StreamExt::next(&mut body).await.unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(at) = text.find("event: elicitation\ndata: ") {
            let rest = &text[at + "event: elicitation\ndata: ".len()..];
            if let Some(end) = rest.find('\n') {
                let event: Value = serde_json::from_str(&rest[..end]).unwrap();
                break event["id"].as_str().unwrap().to_string();
            }
        }
    };
    grpc(&a)
        .await
        .answer_elicitation(pb::AnswerElicitationRequest {
            id: id.clone(),
            action: pb::ElicitationAction::Decline.into(),
            content: None,
        })
        .await
        .unwrap();
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.contains("event: done"), "{text}");
    let status = grpc(&a)
        .await
        .answer_elicitation(pb::AnswerElicitationRequest {
            id,
            action: pb::ElicitationAction::Accept.into(),
            content: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "finished: {status:?}");

    // 3. Nobody answers: after agent.approval_timeout it counts as declined.
    let mut request = turn("Ask once more", None);
    request.answers_elicitations = true;
    let mut stream = grpc(&a)
        .await
        .stream_chat(request)
        .await
        .unwrap()
        .into_inner();
    let mut asked_at = None;
    let mut finished = None;
    while let Some(event) = stream.message().await.unwrap() {
        match event.event {
            Some(pb::chat_event::Event::ElicitationRequired(_)) => asked_at = Some(Instant::now()),
            Some(pb::chat_event::Event::ToolCallFinished(f)) => {
                finished = Some((Instant::now(), f.result))
            }
            _ => {}
        }
    }
    let (at, expired) = finished.unwrap();
    assert!(
        at - asked_at.unwrap() >= Duration::from_millis(3500),
        "waited for the timeout"
    );
    assert!(expired.to_lowercase().contains("decline"), "{expired}");

    // 4. A whole-answer turn cannot ask: declined at once, and the model is told why.
    let started = Instant::now();
    let mut request = turn("And again", None);
    request.answers_elicitations = true;
    let response = grpc(&b).await.chat(request).await.unwrap().into_inner();
    assert_eq!(response.message.unwrap().content, "Nobody could answer.");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "it did not wait"
    );
    let seen = fake.requests();
    let results: Vec<String> = seen
        .iter()
        .filter_map(|r| r.body["messages"].as_array()?.last().cloned())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(
        results[1].to_lowercase().contains("decline"),
        "{}",
        results[1]
    );
    assert!(
        results[3].contains("cannot be asked mid-call"),
        "{}",
        results[3]
    );
}

fn add_call(id: &str, name: &str, a: i64, b: i64) -> Reply {
    Reply::answer(Answer::text(&["Let me add. "]).tool_call(
        id,
        name,
        &[&format!("{{\"a\": {a}"), &format!(", \"b\": {b}}}")],
    ))
}

fn fx_server(approval: Option<pb::ApprovalPolicy>) -> pb::McpServerTool {
    pb::McpServerTool {
        server_label: "fx".into(),
        allowed_tools: Some(pb::ToolNames {
            tool_names: vec!["add".into(), "echo".into()],
        }),
        require_approval: approval,
        ..Default::default()
    }
}

/// The tool results the upstream was sent, in order.
fn tool_results(fake: &FakeUpstream) -> Vec<String> {
    fake.requests()
        .iter()
        .filter_map(|r| r.body["messages"].as_array()?.last().cloned())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Per-request `mcp` servers and approvals over gRPC, two replicas sharing Redis: only the
/// named server's allowed tools are offered; a call that needs approval does not run, waits
/// in the store (listed by GetSession on the other replica) and runs there, exactly as
/// stored, once approved; a changed call is refused; a denial and an expired request reach
/// the model as such; an unknown label is refused naming the field.
#[tokio::test]
async fn approvals_wait_in_the_store_and_resume_on_another_replica() {
    let Some(redis) = Redis::start() else { return };
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("calls.log");
    let servers = || {
        service::dir_with_servers(json!({
            "fx": {"command": service::fixture_path(), "env": {"FIXTURE_CALL_LOG": log}},
            "other": {"command": service::fixture_path(), "args": ["--name", "other"]},
        }))
    };
    let fake = FakeUpstream::with([
        add_call("c1", "fx__add", 2, 3),
        Reply::text(&["The sum is 5."]),
        add_call("c2", "fx__add", 1, 1),
        Reply::text(&["OK, not adding."]),
        add_call("c3", "fx__add", 4, 4),
        Reply::text(&["It expired."]),
    ])
    .await;
    let store = format!("redis://127.0.0.1:{}/0", redis.1);
    let mut env = env(&fake, &store);
    env.push(("MCP_CHAT_APPROVAL_TIMEOUT", "3s"));
    let a = Service::start_in(servers(), &env, &[]).await;
    let b = Service::start_in(servers(), &env, &[]).await;
    let (mut ca, mut cb) = (grpc(&a).await, grpc(&b).await);

    // Unknown label.
    let mut request = turn("add", None);
    request.mcp_servers = vec![pb::McpServerTool {
        server_label: "nope".into(),
        ..Default::default()
    }];
    let status = ca.chat(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("mcp_servers[0].server_label"),
        "{status:?}"
    );

    // 1. Approval needed (OpenAI's default): nothing runs; the turn ends with the call.
    let mut request = turn("What is 2+3?", None);
    request.mcp_servers = vec![fx_server(None)];
    let first = ca.chat(request).await.unwrap().into_inner();
    assert_eq!(first.finish_reason(), pb::FinishReason::ToolCalls);
    let session = first.session_id.clone().unwrap();
    let pending = &first.approval_requests;
    assert_eq!(pending.len(), 1, "{first:?}");
    assert_eq!(
        (
            pending[0].id.as_str(),
            pending[0].server_label.as_str(),
            pending[0].name.as_str()
        ),
        ("c1", "fx", "add")
    );
    assert_eq!(pending[0].arguments, "{\"a\": 2, \"b\": 3}");
    assert_eq!(first.message.unwrap().tool_calls[0].id, "c1");
    let offered: Vec<String> = fake.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(offered, ["fx__add", "fx__echo"], "only fx's allowed tools");
    assert!(!log.exists(), "nothing ran before the approval");

    // The other replica lists it, and runs it once approved.
    let stored = cb
        .get_session(pb::GetSessionRequest {
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.pending_approvals.len(), 1);
    assert_eq!(stored.pending_approvals[0].id, "c1");
    let mut follow_up = turn("", Some(&session));
    follow_up.messages.clear();
    follow_up.mcp_servers = vec![fx_server(None)];
    follow_up.approvals = vec![pb::Approval {
        tool_call_id: "c1".into(),
        approve: true,
        reason: None,
    }];
    let second = cb.chat(follow_up.clone()).await.unwrap().into_inner();
    assert_eq!(second.message.unwrap().content, "The sum is 5.");
    assert_eq!(second.tool_calls.len(), 1, "{:?}", second.tool_calls);
    assert!(
        second.tool_calls[0].result.contains("\"sum\":5"),
        "{:?}",
        second.tool_calls
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "add {\"a\":2,\"b\":3}\n",
        "exactly the stored call, once"
    );
    // Answered: a second approval finds nothing waiting.
    assert!(
        cb.get_session(pb::GetSessionRequest {
            session_id: session.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .pending_approvals
        .is_empty()
    );

    // 2. Stateless: a changed call is refused; a denial reaches the model with its reason.
    let mut request = turn("What is 1+1?", None);
    request.new_session = false;
    request.mcp_servers = vec![fx_server(None)];
    let asked = ca.chat(request.clone()).await.unwrap().into_inner();
    let call = asked.message.clone().unwrap().tool_calls[0].clone();
    assert_eq!(call.id, "c2");
    let mut changed = request.clone();
    let mut tampered = asked.message.clone().unwrap();
    tampered.tool_calls[0].arguments = "{\"a\": 100, \"b\": 1}".into();
    changed.messages.push(tampered);
    changed.approvals = vec![pb::Approval {
        tool_call_id: "c2".into(),
        approve: true,
        reason: None,
    }];
    let status = cb.chat(changed).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("approvals[0]"), "{status:?}");
    let mut denied = request.clone();
    denied.messages.push(asked.message.clone().unwrap());
    denied.approvals = vec![pb::Approval {
        tool_call_id: "c2".into(),
        approve: false,
        reason: Some("not now".into()),
    }];
    let answer = cb.chat(denied).await.unwrap().into_inner();
    assert_eq!(answer.message.unwrap().content, "OK, not adding.");
    assert_eq!(
        tool_results(&fake).last().unwrap(),
        "The user denied this call to add on fx (reason: not now)."
    );

    // 3. Unanswered past agent.approval_timeout: a late approval counts as a denial.
    let asked = ca.chat(request.clone()).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let mut late = request.clone();
    late.messages.push(asked.message.unwrap());
    late.approvals = vec![pb::Approval {
        tool_call_id: "c3".into(),
        approve: true,
        reason: None,
    }];
    let answer = ca.chat(late).await.unwrap().into_inner();
    assert_eq!(answer.message.unwrap().content, "It expired.");
    assert!(tool_results(&fake).last().unwrap().contains("expired"));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "neither the denied nor the expired call ran"
    );
}

/// DELETE while a turn runs on the session waits for the turn (it holds the session's
/// lock) and then deletes: the session does not come back holding only that turn.
#[tokio::test]
async fn a_delete_during_a_running_turn_does_not_resurrect_the_session() {
    let fake = FakeUpstream::with([
        Reply::text(&["first"]),
        Reply::text(&["slow second"]).delay(Duration::from_millis(800)),
    ])
    .await;
    let svc = Service::start(&env(&fake, "memory://")).await;
    let mut client = grpc(&svc).await;
    let id = client
        .chat(turn("one", None))
        .await
        .unwrap()
        .into_inner()
        .session_id
        .unwrap();
    let mut running = grpc(&svc).await;
    // Streamed, so the fake's delay holds the turn open.
    let second = tokio::spawn({
        let id = id.clone();
        async move {
            let mut stream = running
                .stream_chat(turn("two", Some(&id)))
                .await
                .unwrap()
                .into_inner();
            while stream.message().await.unwrap().is_some() {}
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .delete_session(pb::DeleteSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap();
    second.await.unwrap();
    let gone = client
        .get_session(pb::GetSessionRequest { session_id: id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "the session stays deleted");
}

/// A session whose last turn ended in a client tool call goes on with a plain user message:
/// the unanswered call is closed with a "not answered" result (OpenAI would refuse the
/// history otherwise), every later turn works, and a tool result for no pending call is a 400.
#[tokio::test]
async fn an_unanswered_client_tool_call_does_not_break_the_session() {
    let fake = FakeUpstream::with([
        Reply::answer(Answer::text(&[]).tool_call(
            "call_w",
            "get_weather",
            &["{\"city\": \"Paris\"}"],
        )),
        Reply::text(&["Never mind the weather."]),
        Reply::text(&["Still fine."]),
    ])
    .await;
    let svc = Service::start(&env(&fake, "memory://")).await;
    let http = Client::new();
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let first = svc
        .post_chat(
            &http,
            &json!({"session_id": "s-dangling", "tools": tools,
            "messages": [{"role": "user", "content": "weather?"}]}),
        )
        .await;
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first["choices"][0]["finish_reason"], "tool_calls",
        "{first}"
    );
    for text in ["forget it", "and now?"] {
        let r = svc
            .post_chat(
                &http,
                &json!({"session_id": "s-dangling", "tools": tools,
                "messages": [{"role": "user", "content": text}]}),
            )
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    for request in &fake.requests()[1..] {
        let messages = request.body["messages"].as_array().unwrap();
        let at = messages
            .iter()
            .position(|m| m["tool_calls"].is_array())
            .unwrap();
        assert_eq!(messages[at + 1]["role"], "tool");
        assert_eq!(messages[at + 1]["tool_call_id"], "call_w");
        assert!(
            messages[at + 1]["content"]
                .as_str()
                .unwrap()
                .contains("not answered"),
            "{}",
            messages[at + 1]
        );
    }
    let stray = svc
        .post_chat(
            &http,
            &json!({"session_id": "s-dangling",
            "messages": [{"role": "tool", "tool_call_id": "call_other", "content": "x"}]}),
        )
        .await;
    assert_eq!(stray.status(), 400);
    let body: Value = stray.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("answers no pending tool call"),
        "{body}"
    );
    assert_eq!(
        fake.requests().len(),
        3,
        "the refused request never went upstream"
    );
}

/// A round that mixes a client tool call with an MCP call, without a session: the MCP call
/// is not run then (the stateless caller would lose its result and send it back
/// unanswered); the model makes it again after the client's result, and it runs once.
#[tokio::test]
async fn mixed_client_and_mcp_calls_run_the_side_effecting_tool_once() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("calls.log");
    let dir = service::dir_with_servers(json!({
        "fx": {"command": service::fixture_path(), "env": {"FIXTURE_CALL_LOG": log}},
    }));
    let fake = FakeUpstream::with([
        Reply::answer(
            Answer::text(&[])
                .tool_call("call_w", "get_weather", &["{\"city\": \"Paris\"}"])
                .tool_call("call_a", "add", &["{\"a\": 1, \"b\": 2}"]),
        ),
        Reply::answer(Answer::text(&[]).tool_call("call_a2", "add", &["{\"a\": 1, \"b\": 2}"])),
        Reply::text(&["Sunny, and 3."]),
    ])
    .await;
    let svc = Service::start_in(dir, &env(&fake, "memory://"), &[]).await;
    let http = Client::new();
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let question = json!({"role": "user", "content": "weather and 1+2?"});
    let first: Value = svc
        .post_chat(&http, &json!({"tools": tools, "messages": [question]}))
        .await
        .json()
        .await
        .unwrap();
    let message = first["choices"][0]["message"].clone();
    let ids: Vec<&str> = message["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["call_w"],
        "only the client's call comes back: {first}"
    );
    assert!(!log.exists(), "the MCP call did not run yet");
    let answer = json!({"role": "tool", "tool_call_id": "call_w", "content": "sunny"});
    let second: Value = svc
        .post_chat(
            &http,
            &json!({"tools": tools, "messages": [question, message, answer]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        second["choices"][0]["message"]["content"], "Sunny, and 3.",
        "{second}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "add {\"a\":1,\"b\":2}\n",
        "the side-effecting tool ran once"
    );
}

/// Responses through Redis: one replica stores a response, the other continues it; two
/// continuations of the same response at once are serialised by the conversation's lock, and
/// the second forks (it sees the history up to that response, not the first continuation).
#[tokio::test]
async fn responses_continue_on_another_replica_through_redis_and_a_second_continuation_forks() {
    let Some(redis) = Redis::start() else { return };
    let fake = FakeUpstream::with([
        Reply::text(&["first"]),
        Reply::text(&["second"]).delay(Duration::from_millis(300)),
        Reply::text(&["third"]).delay(Duration::from_millis(300)),
    ])
    .await;
    let store = format!("redis://127.0.0.1:{}/0", redis.1);
    let a = Service::start(&env(&fake, &store)).await;
    let b = Service::start(&env(&fake, &store)).await;
    let http = Client::new();
    let create = |svc: &Service, body: Value| {
        http.post(format!("{}/v1/responses", svc.http()))
            .json(&body)
            .send()
    };
    let first: Value = create(&a, json!({"model": "test-model", "input": "one"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    let on_b = create(
        &b,
        json!({"model": "test-model", "input": "two", "previous_response_id": id}),
    );
    let on_a = create(
        &a,
        json!({"model": "test-model", "input": "three", "previous_response_id": id}),
    );
    let (x, y) = tokio::join!(on_b, on_a);
    let (x, y): (Value, Value) = (
        x.unwrap().json().await.unwrap(),
        y.unwrap().json().await.unwrap(),
    );
    let mut texts = [
        x["output_text"].as_str().unwrap().to_string(),
        y["output_text"].as_str().unwrap().to_string(),
    ];
    texts.sort();
    assert_eq!(texts, ["second", "third"], "{x}\n{y}");
    // Both continuations saw exactly `one`, `first` and their own input.
    for n in [1, 2] {
        let seen = seen_texts(&fake, n);
        assert_eq!(&seen[..2], ["user: one", "assistant: first"], "{seen:?}");
        assert_eq!(seen.len(), 3, "{seen:?}");
    }
    // Each is retrievable from the other replica.
    for (svc, r) in [(&a, &x), (&b, &y)] {
        let got: Value = http
            .get(format!(
                "{}/v1/responses/{}",
                svc.http(),
                r["id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["output_text"], r["output_text"], "{got}");
        assert_eq!(got["previous_response_id"], id.as_str());
    }
}
