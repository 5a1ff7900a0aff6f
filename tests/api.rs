//! End to end through both APIs: the real binary, a scripted fake upstream, and our fixture
//! MCP server over stdio. gRPC with a real tonic client; HTTP with reqwest (the official
//! OpenAI SDK is exercised in `openai_sdk.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use mcp_chat::pb::{self, chat_event::Event};
use serde_json::{Value, json};
use service::{Service, dir_with_fixture, grpc, start_with, user};
use tonic::Code;
use tonic_types::StatusExt;
use upstream::{Answer, FakeUpstream, Reply};

async fn start(fake: &FakeUpstream, env: &[(&str, &str)]) -> Service {
    start_with(&fake.base_url, dir_with_fixture(), env).await
}

fn add_call(id: &str) -> Reply {
    Reply::answer(
        Answer::text(&[])
            .tool_call(id, "add", &["{\"a\": 2", ", \"b\": 3}"])
            .usage(20, 5),
    )
}

#[tokio::test]
async fn grpc_chat_runs_a_tool_call_and_sums_usage() {
    let fake = FakeUpstream::with([
        add_call("call_1"),
        Reply::answer(Answer::text(&["The sum ", "is 5."]).usage(30, 4)),
    ])
    .await;
    let svc = start(&fake, &[]).await;
    let response = grpc(&svc)
        .await
        .chat(user("What is 2+3?"))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.message.as_ref().unwrap().content, "The sum is 5.");
    assert_eq!(response.finish_reason(), pb::FinishReason::Stop);
    assert_eq!(response.model, "test-model");
    assert!(response.id.starts_with("chatcmpl-"));
    let usage = response.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (50, 9, 59)
    );
    let call = &response.tool_calls[0];
    assert_eq!(
        (
            call.id.as_str(),
            call.name.as_str(),
            call.server.as_str(),
            call.ok
        ),
        ("call_1", "add", "fx", true)
    );
    assert!(call.result.contains('5'), "{call:?}");

    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    let tools: Vec<&str> = seen[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"add") && tools.contains(&"echo"),
        "{tools:?}"
    );
    let messages = seen[1].body["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(
        (last["role"].as_str(), last["tool_call_id"].as_str()),
        (Some("tool"), Some("call_1"))
    );
    assert_eq!(
        messages[messages.len() - 2]["tool_calls"][0]["function"]["arguments"],
        "{\"a\": 2, \"b\": 3}"
    );
}

#[tokio::test]
async fn grpc_stream_delivers_events_in_order_across_two_tool_iterations() {
    let fake = FakeUpstream::with([
        Reply::answer(Answer::text(&["Let me add. "]).tool_call(
            "c1",
            "add",
            &["{\"a\":", "1,\"b\":1}"],
        )),
        Reply::answer(Answer::text(&[]).tool_call("c2", "echo", &["{\"text\":", "\"héllo\"}"])),
        Reply::answer(Answer::text(&["Done: ", "2 and ", "héllo"])),
    ])
    .await;
    let svc = start(&fake, &[]).await;
    let mut stream = grpc(&svc)
        .await
        .stream_chat(user("go"))
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    let mut text = String::new();
    let mut last = None;
    while let Some(event) = stream.message().await.unwrap() {
        let event = event.event.unwrap();
        kinds.push(match &event {
            Event::Start(_) => "start",
            Event::Content(c) => {
                text.push_str(&c.text);
                "content"
            }
            Event::ToolCallStarted(_) => "started",
            Event::ToolCallFinished(f) => {
                assert!(f.ok, "{f:?}");
                "finished"
            }
            Event::ToolCallProgress(_) => "progress",
            Event::Usage(_) => "usage",
            Event::Response(_) => "response",
            Event::ClientToolCall(_) => "client",
            Event::ElicitationRequired(_) => "elicitation",
            Event::ApprovalRequired(_) => "approval",
        });
        last = Some(event);
    }
    assert_eq!(
        kinds,
        [
            "start", "content", "started", "finished", "started", "finished", "content", "content",
            "content", "usage", "response"
        ]
    );
    // Each round's text, a blank line between rounds; the final response says the same.
    assert_eq!(text, "Let me add. \n\nDone: 2 and héllo");
    let Some(Event::Response(r)) = last else {
        panic!()
    };
    assert_eq!(
        r.message.as_ref().unwrap().content,
        text,
        "stream and answer agree"
    );
    assert_eq!(r.tool_calls.len(), 2);
    assert!(
        r.tool_calls[1].result.contains("héllo"),
        "{:?}",
        r.tool_calls[1]
    );
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(
        fake.requests()[0].body["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn upstream_503_twice_then_200_recovers() {
    let fake = FakeUpstream::with([
        Reply::error(503, "overloaded"),
        Reply::error(503, "overloaded"),
        Reply::text(&["fine"]),
    ])
    .await;
    let svc = start(&fake, &[]).await;
    let r = grpc(&svc).await.chat(user("x")).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "fine");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn upstream_errors_keep_their_class_over_grpc_and_http() {
    // An OpenAI error body naming the parameter it refuses: the param is kept.
    let too_long = || {
        Reply::json(
            400,
            json!({"error": {"message": "messages: too long for this model",
                "type": "invalid_request_error", "param": "messages[0].content",
                "code": "context_length_exceeded"}}),
        )
    };
    let fake = FakeUpstream::with([
        too_long(),
        Reply::raw(200, "application/json", "{\"choices\": [ this is not json"),
        too_long(),
        Reply::raw(200, "application/json", "{\"choices\": [ this is not json"),
    ])
    .await;
    let svc = start(&fake, &[("MCP_CHAT_UPSTREAM_MAX_RETRIES", "0")]).await;
    let mut client = grpc(&svc).await;
    let e = client.chat(user("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("too long for this model"), "{e:?}");
    assert_eq!(
        e.get_details_bad_request().unwrap().field_violations[0].field,
        "messages[0].content"
    );
    assert_eq!(
        e.get_details_error_info().unwrap().reason,
        "context_length_exceeded"
    );
    let e = client.chat(user("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.get_details_error_info().unwrap().reason, "bad_gateway");

    let http = reqwest::Client::new();
    let body = json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]});
    let r = svc.post_chat(&http, &body).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("too long"),
        "{v}"
    );
    assert_eq!(v["error"]["param"], "messages[0].content", "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    let r = svc.post_chat(&http, &body).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_gateway", "{v}");
}

#[tokio::test]
async fn a_client_that_drops_the_stream_closes_the_upstream_connection() {
    let slow =
        Reply::text(&["a", "b", "c", "d", "e", "f", "g", "h"]).delay(Duration::from_millis(300));
    let fake = FakeUpstream::with([slow.clone(), slow]).await;
    let svc = start(&fake, &[]).await;

    // gRPC: read one content event, then drop the stream.
    let mut stream = grpc(&svc)
        .await
        .stream_chat(user("x"))
        .await
        .unwrap()
        .into_inner();
    loop {
        if let Some(Event::Content(_)) = stream.message().await.unwrap().unwrap().event {
            break;
        }
    }
    drop(stream);
    assert!(
        fake.wait_dropped(1, Duration::from_secs(1)).await,
        "upstream still read after the gRPC client left"
    );

    // HTTP SSE: read the first bytes, then drop the response.
    let body = json!({"messages": [{"role": "user", "content": "x"}], "stream": true});
    let mut r = svc.post_chat(&reqwest::Client::new(), &body).await;
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap().unwrap();
    drop(r);
    assert!(
        fake.wait_dropped(2, Duration::from_secs(1)).await,
        "upstream still read after the HTTP client left"
    );
}

#[tokio::test]
async fn list_tools_shows_the_fixture_server() {
    let fake = FakeUpstream::start().await;
    let svc = start(&fake, &[]).await;
    let tools = grpc(&svc)
        .await
        .list_tools(pb::ListToolsRequest {})
        .await
        .unwrap()
        .into_inner();
    let server = tools.servers.iter().find(|s| s.name == "fx").unwrap();
    assert_eq!(
        (server.state.as_str(), server.transport.as_str()),
        ("ready", "stdio")
    );
    let echo = tools.tools.iter().find(|t| t.name == "echo").unwrap();
    assert_eq!(echo.server, "fx");
    assert!(
        echo.input_schema
            .as_ref()
            .unwrap()
            .fields
            .contains_key("properties")
    );
    let ready: Value = reqwest::get(format!("{}/readyz", svc.http()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["components"]["mcp:fx"]["up"], true, "{ready}");
}

#[tokio::test]
async fn validation_errors_name_their_field_before_any_upstream_call() {
    let fake = FakeUpstream::start().await;
    let svc = start(&fake, &[]).await;
    let mut client = grpc(&svc).await;
    let mut cases = Vec::new();
    cases.push((pb::ChatRequest::default(), "messages"));
    let mut r = user("x");
    r.messages.push(pb::Message {
        role: 9,
        content: "y".into(),
        ..Default::default()
    });
    cases.push((r, "messages[1].role"));
    let mut r = user("x");
    r.messages.push(pb::Message {
        role: pb::Role::Tool.into(),
        content: "y".into(),
        ..Default::default()
    });
    cases.push((r, "messages[1].tool_call_id"));
    let mut r = user("x");
    r.params = Some(pb::GenerationParams {
        temperature: Some(3.0),
        ..Default::default()
    });
    cases.push((r, "params.temperature"));
    let mut r = user("x");
    r.params = Some(pb::GenerationParams {
        max_tokens: Some(0),
        ..Default::default()
    });
    cases.push((r, "params.max_tokens"));
    for (request, field) in cases {
        let e = client.chat(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        let violations = e.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, field);
    }
    let mut r = user("x");
    r.model = "no-such-model".into();
    let e = client.chat(r).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no-such-model"));
    assert_eq!(fake.request_count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn api_keys_are_required_on_both_apis_when_set() {
    let fake = FakeUpstream::with([Reply::text(&["ok"]), Reply::text(&["ok"])]).await;
    let svc = start(&fake, &[("API_KEYS", "k1,k2")]).await;
    let mut client = grpc(&svc).await;
    let e = client
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(user("x"));
    request
        .metadata_mut()
        .insert("authorization", "Bearer k2".parse().unwrap());
    assert_eq!(
        client
            .chat(request)
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap()
            .content,
        "ok"
    );

    let http = reqwest::Client::new();
    let url = format!("{}/v1/models", svc.http());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(
        http.get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(&url)
            .bearer_auth("k1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Health stays open.
    assert_eq!(
        http.get(format!("{}/readyz", svc.http()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let channel = tonic::transport::Endpoint::from_shared(svc.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deadline_shorter_than_a_slow_tool_is_deadline_exceeded_and_cancels_the_tool() {
    let fake = FakeUpstream::with([
        Reply::answer(Answer::text(&[]).tool_call("c1", "slow", &["{\"ms\": 20000}"])),
        Reply::answer(Answer::text(&[]).tool_call("c2", "cancellations", &["{}"])),
        Reply::text(&["counted"]),
    ])
    .await;
    let svc = start(&fake, &[]).await;
    let mut client = grpc(&svc).await;
    let mut request = tonic::Request::new(user("slow please"));
    request.set_timeout(Duration::from_millis(800));
    let started = Instant::now();
    let e = client.chat(request).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // The fixture counts cancelled `slow` calls; ask it through the agent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client
        .chat(user("how many cancelled?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.tool_calls[0].name, "cancellations");
    assert_eq!(r.tool_calls[0].result.trim(), "1", "{:?}", r.tool_calls[0]);
}

#[tokio::test]
async fn without_an_api_key_a_chat_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_in(dir, &[], &[]).await;
    let e = grpc(&svc).await.chat(user("hello")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("OPENAI_API_KEY"), "{e:?}");
    let body =
        json!({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hello"}]});
    let r = svc.post_chat(&reqwest::Client::new(), &body).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("OPENAI_API_KEY"),
        "{v}"
    );
}

#[tokio::test]
async fn sigterm_lets_a_slow_in_flight_request_finish_then_exits_zero() {
    let fake = FakeUpstream::with([
        Reply::text(&["slow ", "but ", "whole"]).delay(Duration::from_millis(400))
    ])
    .await;
    let mut svc = start(&fake, &[]).await;
    let url = format!("{}/v1/chat/completions", svc.http());
    let request = tokio::spawn(async move {
        let body = json!({"messages": [{"role": "user", "content": "x"}]});
        reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    // Wait until the request reached the upstream, then ask the service to stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.request_count() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    svc.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are refused while the old request drains.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", svc.http_port))
            .await
            .is_err(),
        "still accepting"
    );
    let answer = request.await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "slow but whole");
    let status = svc.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_terminal_client_answers_one_shot_over_grpc_and_http() {
    let fake = FakeUpstream::with([
        add_call("c1"),
        Reply::text(&["It is ", "5."]),
        add_call("c2"),
        Reply::text(&["Still ", "5."]),
    ])
    .await;
    let svc = start(&fake, &[]).await;
    for target in [
        vec!["--grpc".to_string(), format!("127.0.0.1:{}", svc.grpc_port)],
        vec!["--url".to_string(), svc.http()],
    ] {
        let out = tokio::process::Command::new(service::binary())
            .arg("chat")
            .args(&target)
            .args(["-m", "What is 2+3?"])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{target:?}: {stderr}");
        assert!(
            stdout.trim() == "It is 5." || stdout.trim() == "Still 5.",
            "{target:?}: {stdout:?}"
        );
        assert!(stderr.contains("[tool add: ok in"), "{target:?}: {stderr}");
    }
    // A service that is not there is a clear error, not a hang.
    let out = tokio::process::Command::new(service::binary())
        .args(["chat", "--url", "http://127.0.0.1:9", "-m", "hi"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// Polls `port` every millisecond until it accepts a connection.
async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "port {port} never opened");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A chat sent the moment the port opens, while an MCP server is still starting, waits for
/// that server's first start: its tools are offered and called (not a tool-less answer), the
/// server that cannot start is named in `mcp-chat-degraded`, and `/readyz` says not ready
/// meanwhile. Both APIs, each on a fresh start of the service.
#[tokio::test]
async fn a_chat_sent_as_the_port_opens_waits_for_the_servers_first_start() {
    for api in ["http", "grpc"] {
        let fake = FakeUpstream::with([add_call("c1"), Reply::text(&["It is 5."])]).await;
        let dir = service::dir_with_servers(json!({
            "fx": {"command": service::fixture_path(), "env": {"FIXTURE_START_DELAY_MS": "1500"}},
            "broken": {"command": "/nonexistent/mcp-server"},
        }));
        let (http_port, grpc_port) = (service::free_port(), service::free_port());
        let mut cmd = service::command(dir.path(), http_port, grpc_port);
        cmd.env("OPENAI_BASE_URL", &fake.base_url)
            .env("DEFAULT_MODEL", "test-model");
        let child = cmd.spawn().unwrap();
        let svc = Service {
            child,
            http_port,
            grpc_port,
            dir,
        };
        let started = Instant::now();
        let client = reqwest::Client::new();
        let (answer, degraded) = if api == "http" {
            wait_port(http_port).await;
            let chat = client
                .post(format!("{}/v1/chat/completions", svc.http()))
                .json(&json!({"messages": [{"role": "user", "content": "What is 2+3?"}]}))
                .send();
            let readyz = client.get(format!("{}/readyz", svc.http())).send();
            let (chat, readyz) = tokio::join!(chat, readyz);
            assert_eq!(readyz.unwrap().status(), 503, "ready before fx started");
            let chat = chat.unwrap();
            assert_eq!(chat.status(), 200);
            let degraded = chat.headers()["mcp-chat-degraded"]
                .to_str()
                .unwrap()
                .to_string();
            let body: Value = chat.json().await.unwrap();
            (
                body["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                degraded,
            )
        } else {
            wait_port(grpc_port).await;
            let response = grpc(&svc).await.chat(user("What is 2+3?")).await.unwrap();
            let degraded = response
                .metadata()
                .get("mcp-chat-degraded")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            (response.into_inner().message.unwrap().content, degraded)
        };
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{api}: answered before fx could have started"
        );
        assert_eq!(answer, "It is 5.", "{api}");
        assert_eq!(degraded, "broken", "{api}");
        let seen = fake.requests();
        assert_eq!(seen.len(), 2, "{api}: the tool round ran");
        let tools = seen[0].body["tools"].to_string();
        assert!(
            tools.contains("\"add\""),
            "{api}: first call offered {tools}"
        );
        let messages = seen[1].body["messages"].as_array().unwrap();
        let result = messages.last().unwrap();
        assert_eq!(result["role"], "tool", "{api}");
        assert!(
            result["content"].as_str().unwrap().contains('5'),
            "{api}: {result}"
        );
    }
}

/// server-everything's stdio server as `ev` (sampling as given), and the service over it.
async fn start_with_everything(fake: &FakeUpstream, sampling: bool) -> Option<Service> {
    let js = service::external(
        service::deps_dir()
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    )?;
    let dir = service::dir_with_servers(json!({
        "ev": {"command": "node", "args": [js, "stdio"], "sampling": sampling},
    }));
    Some(start_with(&fake.base_url, dir, &[]).await)
}

/// The tool names the service offers now (gRPC `ListTools`).
async fn offered(svc: &Service) -> Vec<String> {
    let tools = grpc(svc)
        .await
        .list_tools(pb::ListToolsRequest {})
        .await
        .unwrap()
        .into_inner();
    tools.tools.into_iter().map(|t| t.name).collect()
}

/// Waits until the service offers `tool` (server-everything registers its
/// capability-dependent tools after the handshake and announces them).
async fn wait_offered(svc: &Service, tool: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !offered(svc).await.iter().any(|t| t == tool) {
        assert!(Instant::now() < deadline, "{tool} never offered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server's `sampling/createMessage` during a tool call is answered by the turn's own
/// model and upstream (the server's system prompt and message, `maxTokens` capped by
/// `agent.max_sampling_tokens`), and its tokens count in the turn's usage. With
/// `"sampling": false` the capability is not declared, so the server offers no such tool.
#[tokio::test]
async fn sampling_requests_are_answered_by_the_turns_model_and_counted() {
    let fake = FakeUpstream::with([
        Reply::answer(
            Answer::text(&[])
                .tool_call(
                    "c1",
                    "trigger-sampling-request",
                    &["{\"prompt\": \"a haiku\",", " \"maxTokens\": 5000}"],
                )
                .usage(20, 5),
        ),
        Reply::answer(Answer::text(&["Autumn moon rises."]).usage(7, 3)),
        Reply::answer(Answer::text(&["The server's model wrote a haiku."]).usage(30, 6)),
    ])
    .await;
    let Some(svc) = start_with_everything(&fake, true).await else {
        return;
    };
    wait_offered(&svc, "trigger-sampling-request").await;
    let client = reqwest::Client::new();
    let response: Value = client
        .post(format!("{}/v1/chat/completions", svc.http()))
        .header("x-request-timeout", "60")
        .json(&json!({"messages": [{"role": "user", "content": "Ask the server for a haiku"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        response["choices"][0]["message"]["content"], "The server's model wrote a haiku.",
        "{response}"
    );
    assert_eq!(
        (
            response["usage"]["prompt_tokens"].as_u64(),
            response["usage"]["completion_tokens"].as_u64()
        ),
        (Some(57), Some(14)),
        "the sampling call counts: {response}"
    );
    let seen = fake.requests();
    assert_eq!(seen.len(), 3);
    let sampling = &seen[1].body;
    assert_eq!(sampling["model"], "test-model");
    assert_eq!(sampling["max_tokens"], 1024, "capped: {sampling}");
    assert!(sampling.get("tools").is_none(), "{sampling}");
    let messages = sampling["messages"].as_array().unwrap();
    assert_eq!(
        (
            messages[0]["role"].as_str(),
            messages[0]["content"].as_str()
        ),
        (Some("system"), Some("You are a helpful test server."))
    );
    assert!(
        messages[1]["content"].as_str().unwrap().contains("a haiku"),
        "{sampling}"
    );
    let result = seen[2].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(result["role"], "tool");
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .contains("Autumn moon rises."),
        "{result}"
    );
    drop(svc);

    // Off for the server: no sampling capability declared, so no sampling tool is offered.
    let fake = FakeUpstream::start().await;
    let Some(svc) = start_with_everything(&fake, false).await else {
        return;
    };
    wait_offered(&svc, "trigger-elicitation-request").await;
    assert!(
        !offered(&svc)
            .await
            .iter()
            .any(|t| t == "trigger-sampling-request"),
        "sampling is off for ev"
    );
}

/// On `/v1/chat/completions` nobody can be asked mid-call: a server's request for user
/// input is declined, and the model reads why beside the tool's result.
#[tokio::test]
async fn an_elicitation_during_a_chat_completion_is_declined_with_a_reason_the_model_sees() {
    let fake = FakeUpstream::with([
        Reply::answer(Answer::text(&[]).tool_call("c1", "trigger-elicitation-request", &["{}"])),
        Reply::text(&["The server wanted input; none was given."]),
    ])
    .await;
    let Some(svc) = start_with_everything(&fake, true).await else {
        return;
    };
    wait_offered(&svc, "trigger-elicitation-request").await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", svc.http()))
        .json(&json!({"messages": [{"role": "user", "content": "Ask me something"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    let result = seen[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let text = result["content"].as_str().unwrap();
    assert!(text.to_lowercase().contains("declined"), "{text}");
    assert!(
        text.contains("the request was declined because the user cannot be asked"),
        "{text}"
    );
}

/// A remote MCP server named by URL for one request, where the operator's allow-list lets
/// it: only its allowed tools are offered and a call reaches it; a host off the list, a
/// private address when private ones are not allowed, and an unknown label are 400s naming
/// the field.
#[tokio::test]
async fn a_request_names_a_remote_mcp_server_on_the_allow_list() {
    let (_web, url) = service::fixture_serving("--http", "web");
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let fake = FakeUpstream::with([
        Reply::answer(Answer::text(&[]).tool_call("c1", "web__echo", &["{\"text\": \"hi\"}"])),
        Reply::text(&["It echoed."]),
    ])
    .await;
    let hosts = format!("http://127.0.0.1:{port},http://localhost:{port}");
    let svc = start(
        &fake,
        &[
            ("MCP_CHAT_REQUEST_SERVERS", "allow-list"),
            ("MCP_CHAT_REQUEST_SERVER_HOSTS", &hosts),
            ("MCP_CHAT_REQUEST_SERVER_PRIVATE", "true"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let chat = |tools: Value| {
        client
            .post(format!("{}/v1/chat/completions", svc.http()))
            .json(&json!({"messages": [{"role": "user", "content": "echo hi"}], "tools": tools}))
            .send()
    };
    let ok = chat(
        json!([{"type": "mcp", "server_label": "web", "server_url": url,
        "allowed_tools": ["echo"], "require_approval": "never"}]),
    )
    .await
    .unwrap();
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"], "It echoed.",
        "{body}"
    );
    let seen = fake.requests();
    let offered: Vec<&str> = seen[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    // Unique beside the operator's `fx`, which has an `echo` too.
    assert_eq!(
        offered,
        ["web__echo"],
        "only the remote server's allowed tool"
    );
    let result = seen[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(result["content"], "[web] hi", "the remote server answered");

    for (tools, param, says) in [
        (
            json!([{"type": "mcp", "server_label": "far", "server_url": "http://203.0.113.9/mcp"}]),
            "tools[0].server_url",
            "is not on this gateway's list of allowed MCP server hosts",
        ),
        (
            json!([{"type": "mcp", "server_label": "nope"}]),
            "tools[0].server_label",
            "no MCP server \"nope\"",
        ),
    ] {
        let refused = chat(tools.clone()).await.unwrap();
        assert_eq!(refused.status(), 400, "{tools}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["param"], param, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(
            !message.contains("/mcp"),
            "the URL's path is not echoed: {message}"
        );
    }
    drop(svc);

    // Private addresses not allowed: `localhost` is on the list but resolves to loopback.
    let svc = start(
        &fake,
        &[
            ("MCP_CHAT_REQUEST_SERVERS", "allow-list"),
            ("MCP_CHAT_REQUEST_SERVER_HOSTS", &hosts),
        ],
    )
    .await;
    let local = url.replace("127.0.0.1", "localhost");
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", svc.http()))
        .json(&json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "mcp", "server_label": "web", "server_url": local}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["param"], "tools[0].server_url", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{body}"
    );
}

/// `[[api_keys]]`: a named key sees and can call only what its entry allows, on both APIs
/// (tools, servers, models), and may not name remote servers; a plain key sees everything.
#[tokio::test]
async fn a_named_key_sees_only_what_its_entry_allows_on_both_apis() {
    let fake = FakeUpstream::with([Reply::text(&["narrow answer"])]).await;
    let dir = service::dir_with_servers(json!({
        "fx": {"command": service::fixture_path()},
        "other": {"command": service::fixture_path(), "args": ["--name", "other"]},
    }));
    let toml = format!(
        r#"
[upstream]
base_url = "{}"
default_model = "test-model"

[[models]]
id = "test-model"

[[models]]
id = "big-model"

[[api_keys]]
name = "narrow"
key = "k-narrow"
allowed_servers = ["fx"]
allowed_tools = ["fx__echo"]
models = ["test-model"]
"#,
        fake.base_url
    );
    std::fs::write(dir.path().join("mcp-chat.toml"), toml).unwrap();
    let svc = Service::start_in(dir, &[("API_KEYS", "k-plain")], &[]).await;
    let with_key = |key: &str| {
        let mut request = tonic::Request::new(pb::ListToolsRequest {});
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        request
    };
    let narrow = grpc(&svc)
        .await
        .list_tools(with_key("k-narrow"))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = narrow.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["fx__echo"]);
    let servers: Vec<&str> = narrow.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(servers, ["fx"]);
    let plain = grpc(&svc)
        .await
        .list_tools(with_key("k-plain"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        plain.tools.len() > 10 && plain.servers.len() == 2,
        "{plain:?}"
    );

    let http = reqwest::Client::new();
    let models: Value = http
        .get(format!("{}/v1/models", svc.http()))
        .bearer_auth("k-narrow")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["test-model"]);
    let hidden = http
        .get(format!("{}/v1/models/big-model", svc.http()))
        .bearer_auth("k-narrow")
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
    let post = |body: Value| {
        http.post(format!("{}/v1/chat/completions", svc.http()))
            .bearer_auth("k-narrow")
            .json(&body)
            .send()
    };
    let big = post(json!({"model": "big-model", "messages": [{"role": "user", "content": "x"}]}))
        .await
        .unwrap();
    assert_eq!(
        big.status(),
        404,
        "a model the key may not use is as unknown"
    );
    let remote = post(json!({"messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "mcp", "server_label": "r", "server_url": "https://mcp.example.com/mcp"}]}))
    .await
    .unwrap();
    assert_eq!(remote.status(), 400);
    let body: Value = remote.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not name remote MCP servers"),
        "{body}"
    );
    let unseen = post(json!({"messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "mcp", "server_label": "other"}]}))
    .await
    .unwrap();
    assert_eq!(
        unseen.status(),
        400,
        "a server the key may not see is as unknown"
    );
    let ok = post(json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let offered: Vec<String> = fake.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        offered,
        ["fx__echo"],
        "the model is offered only the key's tools"
    );
    let metrics = http
        .get(format!("{}/metrics", svc.http()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mcp_chat_key_turns_total{key=\"narrow\"}"),
        "the key's name is on the metric"
    );
    assert!(!metrics.contains("k-narrow"), "never the key itself");
}

/// The upstream refusing this service's own key is the operator's problem: a 502 naming the
/// setting (never the caller's 401 `invalid_api_key`), gRPC UNAVAILABLE, not retried.
#[tokio::test]
async fn an_upstream_401_is_a_502_naming_the_upstream_key_not_the_callers_401() {
    let fake = FakeUpstream::with([
        Reply::error(401, "Incorrect API key provided"),
        Reply::error(401, "Incorrect API key provided"),
    ])
    .await;
    let svc = start(&fake, &[("MCP_CHAT_UPSTREAM_MAX_RETRIES", "0")]).await;
    let http = reqwest::Client::new();
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    let r = svc.post_chat(&http, &body).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unauthorized", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("OPENAI_API_KEY"),
        "{v}"
    );
    let e = grpc(&svc).await.chat(user("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("refused this service's credentials"),
        "{e:?}"
    );
}

/// `max_completion_tokens` goes upstream under that name (reasoning models refuse
/// `max_tokens`), `max_tokens` under its own; a `[[models]]` entry with
/// `max_tokens_field = "max_tokens"` forces the older name for upstreams that know only it.
#[tokio::test]
async fn the_completion_limit_goes_upstream_under_the_name_the_caller_used() {
    let fake = FakeUpstream::with([
        Reply::text(&["a"]),
        Reply::text(&["b"]),
        Reply::text(&["c"]),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[upstream]\nbase_url = \"{}\"\ndefault_model = \"reasoner\"\n\n[[models]]\nid = \"reasoner\"\n\n[[models]]\nid = \"old\"\nmax_tokens_field = \"max_tokens\"\n",
        fake.base_url
    );
    std::fs::write(dir.path().join("mcp-chat.toml"), toml).unwrap();
    let svc = Service::start_in(dir, &[], &[]).await;
    let http = reqwest::Client::new();
    for body in [
        json!({"model": "reasoner", "max_completion_tokens": 50, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "reasoner", "max_tokens": 60, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "old", "max_completion_tokens": 70, "messages": [{"role": "user", "content": "x"}]}),
    ] {
        assert_eq!(svc.post_chat(&http, &body).await.status(), 200);
    }
    let sent: Vec<(Value, Value)> = fake
        .requests()
        .iter()
        .map(|r| {
            (
                r.body["max_completion_tokens"].clone(),
                r.body["max_tokens"].clone(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            (json!(50), Value::Null),
            (Value::Null, json!(60)),
            (Value::Null, json!(70)),
        ]
    );
}

/// The upstream's usage details are summed over the turn's calls and returned, stream and
/// whole; a refusal comes back in the message (and as a streamed `refusal` delta).
#[tokio::test]
async fn usage_details_and_refusals_come_back_as_the_upstream_sent_them() {
    let usage = json!({"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28,
        "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 5, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 1}});
    let call = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}}]}}],
        "usage": usage});
    let refusal = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": null, "refusal": "I can't help with that."}}],
        "usage": usage});
    let chunk = |delta: Value, finish: Value, usage: Value| {
        json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": if usage.is_null() { json!([{"index": 0, "delta": delta, "finish_reason": finish}]) } else { json!([]) },
            "usage": usage})
        .to_string()
    };
    let streamed = Reply::sse(&[
        chunk(
            json!({"role": "assistant", "content": null, "refusal": ""}),
            Value::Null,
            Value::Null,
        ),
        chunk(json!({"refusal": "I can't "}), Value::Null, Value::Null),
        chunk(
            json!({"refusal": "help with that."}),
            Value::Null,
            Value::Null,
        ),
        chunk(json!({}), json!("stop"), Value::Null),
        chunk(Value::Null, Value::Null, usage.clone()),
        "[DONE]".to_string(),
    ]);
    let fake =
        FakeUpstream::with([Reply::json(200, call), Reply::json(200, refusal), streamed]).await;
    let svc = start(&fake, &[]).await;
    let http = reqwest::Client::new();
    let body =
        json!({"messages": [{"role": "user", "content": "add 1 and 2, then something bad"}]});
    let v: Value = svc.post_chat(&http, &body).await.json().await.unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 40, "{v}");
    assert_eq!(
        v["usage"]["prompt_tokens_details"],
        json!({"cached_tokens": 32, "audio_tokens": 0}),
        "{v}"
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"],
        json!({"reasoning_tokens": 10, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 2}),
        "{v}"
    );
    let message = &v["choices"][0]["message"];
    assert_eq!(message["refusal"], "I can't help with that.", "{v}");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let text = svc.post_chat(&http, &streamed).await.text().await.unwrap();
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let refused: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["refusal"].as_str())
        .collect();
    assert_eq!(refused, "I can't help with that.", "{text}");
    let last = chunks.last().unwrap();
    assert_eq!(
        last["usage"]["prompt_tokens_details"]["cached_tokens"], 16,
        "{text}"
    );
    assert_eq!(
        last["usage"]["completion_tokens_details"]["reasoning_tokens"], 5,
        "{text}"
    );
}

/// `logit_bias`, `reasoning_effort`, `service_tier`, `metadata` and `verbosity` reach the
/// upstream as sent; a value the service cannot take is an OpenAI 400 naming the parameter.
#[tokio::test]
async fn passthrough_parameters_reach_the_upstream_or_are_refused_by_name() {
    let fake = FakeUpstream::with([Reply::text(&["a"]), Reply::text(&["b"])]).await;
    let svc = start(&fake, &[]).await;
    let http = reqwest::Client::new();
    let passed = json!({"logit_bias": {"50256": -100}, "reasoning_effort": "high",
        "service_tier": "priority", "metadata": {"team": "search"}, "verbosity": "low"});
    for stream in [false, true] {
        let mut body = json!({"messages": [{"role": "user", "content": "x"}], "stream": stream});
        for (k, v) in passed.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = svc.post_chat(&http, &body).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    for seen in fake.requests() {
        for (k, v) in passed.as_object().unwrap() {
            assert_eq!(&seen.body[k], v, "{k}: {}", seen.body);
        }
    }
    let too_many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (name, value, says) in [
        ("metadata", json!(too_many), "at most 16"),
        ("metadata", json!({"k": "v".repeat(513)}), "512"),
        ("logit_bias", json!({"50256": 101}), "-100..100"),
        ("reasoning_effort", json!("extreme"), "\"extreme\""),
        ("service_tier", json!("cheap"), "\"cheap\""),
        ("verbosity", json!("chatty"), "\"chatty\""),
        ("temperature", json!(3), "outside"),
    ] {
        let body = json!({"messages": [{"role": "user", "content": "x"}], name: value});
        let r = svc.post_chat(&http, &body).await;
        assert_eq!(r.status(), 400, "{name}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], name, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(
        fake.request_count(),
        2,
        "nothing refused reached the upstream"
    );
}

/// `stream_options` goes upstream only where the model entry allows it (some
/// OpenAI-compatible servers refuse it); without it the turn's usage is estimated.
#[tokio::test]
async fn stream_options_go_upstream_only_where_the_model_allows_them() {
    let fake = FakeUpstream::with([Reply::text(&["a"]), Reply::text(&["b"])]).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[upstream]\nbase_url = \"{}\"\ndefault_model = \"openai\"\n\n[[models]]\nid = \"openai\"\n\n[[models]]\nid = \"strict\"\nstream_usage = false\n",
        fake.base_url
    );
    std::fs::write(dir.path().join("mcp-chat.toml"), toml).unwrap();
    let svc = Service::start_in(dir, &[], &[]).await;
    let mut client = grpc(&svc).await;
    let mut estimated = Vec::new();
    for model in ["openai", "strict"] {
        let mut request = user("hello there");
        request.model = model.into();
        let mut stream = client.stream_chat(request).await.unwrap().into_inner();
        while let Some(event) = stream.message().await.unwrap() {
            if let Some(Event::Response(r)) = event.event {
                let usage = r.usage.unwrap();
                assert!(usage.prompt_tokens > 0, "{model}: {usage:?}");
                estimated.push(usage.estimated);
            }
        }
    }
    let sent = fake.requests();
    assert_eq!(sent[0].body["stream"], true);
    assert_eq!(
        sent[0].body["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(sent[1].body["stream"], true);
    assert!(
        sent[1].body.get("stream_options").is_none(),
        "{}",
        sent[1].body
    );
    assert_eq!(estimated, [false, true]);
}

/// The whole answer carries the same text as the stream: every round's, separated.
#[tokio::test]
async fn a_whole_answer_has_the_text_of_every_round_like_the_stream() {
    let round = || {
        [
            Reply::answer(Answer::text(&["Let me look that up."]).tool_call(
                "c1",
                "add",
                &["{\"a\": 1, \"b\": 1}"],
            )),
            Reply::text(&["The answer ", "is 2."]),
        ]
    };
    let fake = FakeUpstream::with(round().into_iter().chain(round())).await;
    let svc = start(&fake, &[]).await;
    let http = reqwest::Client::new();
    let body = json!({"messages": [{"role": "user", "content": "1+1?"}]});
    let whole: Value = svc.post_chat(&http, &body).await.json().await.unwrap();
    let whole = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(whole, "Let me look that up.\n\nThe answer is 2.");
    let mut streamed = json!({"stream": true});
    streamed["messages"] = body["messages"].clone();
    let text = svc.post_chat(&http, &streamed).await.text().await.unwrap();
    let deltas: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(deltas, whole, "the stream shows the same text");
}

/// Sessions and stored responses belong to the key that made them: another key's lookup of
/// the same id is a 404 (never a 403: ids leak nothing), and the same client-chosen session
/// id of two keys names two conversations. gRPC `StreamResponse` numbers its events like the
/// HTTP stream.
#[tokio::test]
async fn sessions_and_responses_belong_to_the_key_that_made_them() {
    let fake = FakeUpstream::with([
        Reply::text(&["hi A"]),
        Reply::text(&["hi B"]),
        Reply::text(&["stored for A"]),
        Reply::text(&["over gRPC"]),
    ])
    .await;
    let svc = start(&fake, &[("API_KEYS", "k-a,k-b")]).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", svc.http());
    let chat = |key: &'static str, text: &'static str| {
        http.post(url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-session-id", "alice")
            .json(&json!({"model": "test-model", "messages": [{"role": "user", "content": text}]}))
            .send()
    };
    let r = chat("k-a", "I am A").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-session-id"], "alice");
    let get = |key: &'static str, path: String| http.get(url(&path)).bearer_auth(key).send();
    let r = get("k-b", "/sessions/alice".into()).await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"alice\""),
        "{body}"
    );
    let r = chat("k-b", "I am B").await.unwrap();
    assert_eq!(r.status(), 200);
    let seen: Vec<String> = fake.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ["I am B"], "B's alice is not A's");
    let mine: Value = get("k-a", "/sessions/alice".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["id"], "alice", "{mine}");
    assert_eq!(mine["messages"].as_array().unwrap().len(), 2, "{mine}");

    let created: Value = http
        .post(url("/v1/responses"))
        .bearer_auth("k-a")
        .json(&json!({"model": "test-model", "input": "remember this"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["output_text"], "stored for A", "{created}");
    for (method, path, body) in [
        ("GET", format!("/v1/responses/{id}"), None),
        ("GET", format!("/v1/responses/{id}/input_items"), None),
        ("DELETE", format!("/v1/responses/{id}"), None),
        (
            "POST",
            "/v1/responses".to_string(),
            Some(json!({"model": "test-model", "input": "and?", "previous_response_id": id})),
        ),
    ] {
        let request = match method {
            "GET" => http.get(url(&path)),
            "DELETE" => http.delete(url(&path)),
            _ => http.post(url(&path)).json(&body.unwrap()),
        };
        let r = request.bearer_auth("k-b").send().await.unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(&id), "{e}");
    }
    assert_eq!(fake.request_count(), 3, "refused before any upstream call");
    let r = get("k-a", format!("/v1/responses/{id}")).await.unwrap();
    assert_eq!(r.status(), 200);

    // Too much input: a 400 naming `input`, before any upstream call.
    let many: Vec<Value> = (0..2049)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let r = http
        .post(url("/v1/responses"))
        .bearer_auth("k-a")
        .json(&json!({"model": "test-model", "input": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "input", "{e}");

    // gRPC StreamResponse: created first, completed last, numbered from 0; the final
    // response continues the stored one.
    let mut request = tonic::Request::new(pb::CreateResponseRequest {
        model: "test-model".into(),
        input: vec![pb::InputItem {
            id: String::new(),
            item: Some(pb::input_item::Item::Message(pb::Message {
                role: pb::Role::User.into(),
                content: "and over gRPC?".into(),
                ..Default::default()
            })),
        }],
        previous_response_id: Some(id.clone()),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer k-a".parse().unwrap());
    let mut stream = grpc(&svc)
        .await
        .stream_response(request)
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.unwrap() {
        events.push(event);
    }
    let numbers: Vec<u64> = events.iter().map(|e| e.sequence_number).collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    use pb::response_event::Event as R;
    assert!(matches!(events[0].event, Some(R::Created(_))));
    let Some(R::Completed(done)) = &events.last().unwrap().event else {
        panic!("{events:?}")
    };
    assert_eq!(done.previous_response_id.as_deref(), Some(id.as_str()));
    let Some(pb::output_item::Item::Message(m)) = &done.output.last().unwrap().item else {
        panic!("{done:?}")
    };
    assert_eq!(m.text, "over gRPC");
    let requests = fake.requests();
    let history: Vec<&str> = requests[3].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["remember this", "stored for A", "and over gRPC?"]);
}
