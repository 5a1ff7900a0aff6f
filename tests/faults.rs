//! Fault injection against real processes: the service binary, the scripted fake upstream
//! and the fixture MCP server. MCP servers that die mid-call or crash in a loop, upstreams
//! that cut their stream, close before answering, go silent or push back, and a thousand
//! streams cancelled at random points. Hostile clients are in `faults_clients.rs`.
//!
//! Every request loop is bounded in count and time and targets 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use mcp_chat::pb::{self, chat_event::Event, chat_service_client::ChatServiceClient};
use serde_json::{Value, json};
use service::{
    Service, dir_with_servers, fixture_path, fixture_serving_at, grpc, start_with, user,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, transport::Channel};
use upstream::{Answer, FakeUpstream, Reply};

fn call(id: &str, tool: &str, args: &str) -> Reply {
    Reply::answer(Answer::text(&[]).tool_call(id, tool, &[args]))
}

/// The tool result the service sent upstream in request `i` (the last `tool` message).
fn tool_result(fake: &FakeUpstream, i: usize) -> String {
    let request = &fake.requests()[i];
    let messages = request.body["messages"].as_array().unwrap();
    let tool = messages.iter().rev().find(|m| m["role"] == "tool").unwrap();
    tool["content"].as_str().unwrap_or_default().to_string()
}

async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A script in `dir` that runs the fixture over stdio unless `marker` exists, in which case
/// it fails at once ("refusing to start"). With `arm`, a successful start creates the
/// marker, so only the first start succeeds.
fn gated_fixture(dir: &std::path::Path, marker: &std::path::Path, arm: bool) -> std::path::PathBuf {
    let script = dir.join("gated.sh");
    let touch = if arm {
        format!("touch '{}'\n", marker.display())
    } else {
        String::new()
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{m}' ]; then echo 'refusing to start' >&2; exit 1; fi\n{touch}exec '{f}'\n",
            m = marker.display(),
            f = fixture_path().display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    script
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(Iterator::count).unwrap_or(0)
}

fn fds(svc: &Service) -> usize {
    count_dir(&format!("/proc/{}/fd", svc.pid()))
}

fn threads(svc: &Service) -> usize {
    count_dir(&format!("/proc/{}/task", svc.pid()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_dying_mid_call_answers_the_model_others_keep_flowing_and_it_returns() {
    let fixture = fixture_path();
    let dir = dir_with_servers(json!({
        "fx": {"command": fixture},
        "other": {"command": fixture, "args": ["--name", "other"]},
    }));
    let fake = FakeUpstream::with([
        call("c1", "fx__crash", "{}"),
        Reply::text(&["the tool failed"]),
        call("c2", "other__echo", "{\"text\": \"still here\"}"),
        Reply::text(&["echoed"]),
    ])
    .await;
    let svc = start_with(&fake.base_url, dir, &[("MCP_CHAT_TOOL_CALL_TIMEOUT", "5s")]).await;
    let mut client = grpc(&svc).await;

    // The call on the dying server comes back, as the tool's error, well within the timeout.
    let started = Instant::now();
    let r = client.chat(user("crash it")).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "the tool failed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let failure = tool_result(&fake, 1);
    assert!(failure.contains("went away"), "the model got {failure:?}");

    // The other server answers at once while `fx` is down or restarting.
    let started = Instant::now();
    let r = client.chat(user("echo")).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "echoed");
    assert!(
        tool_result(&fake, 3).contains("[other] still here"),
        "{}",
        tool_result(&fake, 3)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // `fx` is restarted (backoff) and its tools are offered again.
    eventually("fx restarted and ready", Duration::from_secs(20), || {
        let mut client = client.clone();
        async move {
            let tools = client
                .list_tools(pb::ListToolsRequest::default())
                .await
                .unwrap()
                .into_inner();
            let fx = tools.servers.iter().find(|s| s.name == "fx").unwrap();
            fx.state == "ready"
                && fx.restarts >= 1
                && tools.tools.iter().any(|t| t.name == "fx__echo")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_server_shows_its_restarts_and_offers_no_tools_meanwhile() {
    // Starts the fixture once; every later start fails at once: a crash loop.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started-once");
    let script = gated_fixture(dir.path(), &marker, true);
    let config = json!({"mcpServers": {"loop": {"command": script}}});
    std::fs::write(dir.path().join("servers_config.json"), config.to_string()).unwrap();

    let fake = FakeUpstream::with([call("c1", "crash", "{}"), Reply::text(&["gone"])]).await;
    let svc = start_with(
        &fake.base_url,
        dir,
        &[("MCP_CHAT_MCP_MAX_RESTART_BACKOFF", "1s")],
    )
    .await;
    let mut client = grpc(&svc).await;
    let tools = client
        .list_tools(pb::ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(tools.tools.iter().any(|t| t.name == "echo"), "{tools:?}");

    let r = client.chat(user("crash")).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "gone");

    eventually("two failed restarts", Duration::from_secs(20), || {
        let mut client = client.clone();
        async move {
            let tools = client
                .list_tools(pb::ListToolsRequest::default())
                .await
                .unwrap()
                .into_inner();
            let s = &tools.servers[0];
            s.restarts >= 2 && s.state != "ready" && tools.tools.is_empty()
        }
    })
    .await;
    // Not required, so the service stays ready; the loop is in the details.
    let r = reqwest::get(format!("{}/readyz", svc.http()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    let component = &report["components"]["mcp:loop"];
    assert_eq!(component["up"], false, "{report}");
    let detail = component["detail"].as_str().unwrap();
    assert!(detail.contains("restarts"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_done_is_an_error_in_each_api_never_a_stop() {
    let cut = || Reply::text(&["Hel", "lo", " wor", "ld"]).cut_after(3);
    let fake = FakeUpstream::with([cut(), cut()]).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start_with(
        &fake.base_url,
        dir,
        &[("MCP_CHAT_UPSTREAM_MAX_RETRIES", "0")],
    )
    .await;

    // OpenAI SSE: content, then `data: {"error": …}`; no finish_reason "stop", no [DONE].
    let body = json!({"model": "test-model", "stream": true,
                      "messages": [{"role": "user", "content": "x"}]});
    let r = svc.post_chat(&reqwest::Client::new(), &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    assert!(!text.contains("\"finish_reason\":\"stop\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");

    // gRPC: the content events, then an error status (no final response).
    let mut stream = grpc(&svc)
        .await
        .stream_chat(user("x"))
        .await
        .unwrap()
        .into_inner();
    let status = loop {
        match stream.message().await {
            Ok(Some(event)) => {
                assert!(
                    !matches!(event.event, Some(Event::Response(_))),
                    "{event:?}"
                )
            }
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_cut_short_is_a_502_with_an_openai_body() {
    let fake = FakeUpstream::with([Reply::bytes(vec![
        b"{\"id\": \"x\", \"object\": \"chat.completion\", \"choices\": [{\"mess".to_vec(),
    ])
    .then_abort()])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start_with(
        &fake.base_url,
        dir,
        &[("MCP_CHAT_UPSTREAM_MAX_RETRIES", "0")],
    )
    .await;
    let body = json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]});
    let r = svc.post_chat(&reqwest::Client::new(), &body).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(v["error"]["type"], "server_error", "{v}");
}

/// A raw upstream that closes the first `closes` connections after reading the request
/// (before any response byte), then answers each with a whole chat completion.
async fn closing_upstream(closes: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Read the head and the body (Content-Length).
                loop {
                    let Ok(read) = socket.read(&mut buf).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..read]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                if n < closes {
                    return; // dropped: closed before the response headers
                }
                let body = Answer::text(&["second try"])
                    .completion("test-model")
                    .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_before_the_headers_is_retried_then_a_502_when_retries_run_out() {
    let body = json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]});
    let http = reqwest::Client::new();

    // One close, then an answer: the retry hides the fault.
    let (url, seen) = closing_upstream(1).await;
    let svc = start_with(&url, tempfile::tempdir().unwrap(), &[]).await;
    let r = svc.post_chat(&http, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "second try", "{v}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    drop(svc);

    // Every attempt closed: 1 + max_retries connections, then 502 with an OpenAI body.
    let (url, seen) = closing_upstream(usize::MAX).await;
    let svc = start_with(
        &url,
        tempfile::tempdir().unwrap(),
        &[("MCP_CHAT_UPSTREAM_MAX_RETRIES", "1")],
    )
    .await;
    let r = svc.post_chat(&http, &body).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_then_silence_is_a_504_after_the_idle_timeout_and_the_upstream_is_closed() {
    let fake = FakeUpstream::with([Reply::silence(), Reply::silence()]).await;
    let svc = start_with(
        &fake.base_url,
        tempfile::tempdir().unwrap(),
        &[
            ("MCP_CHAT_UPSTREAM_IDLE_TIMEOUT", "1s"),
            ("MCP_CHAT_UPSTREAM_MAX_RETRIES", "0"),
        ],
    )
    .await;
    let body = json!({"model": "test-model", "stream": true,
                      "messages": [{"role": "user", "content": "x"}]});
    let started = Instant::now();
    let r = svc.post_chat(&reqwest::Client::new(), &body).await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        fake.wait_dropped(1, Duration::from_secs(2)).await,
        "the silent upstream connection was left open"
    );

    // The same over gRPC: DEADLINE_EXCEEDED.
    let e = grpc(&svc).await.chat(user("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(fake.wait_dropped(2, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_unavailability_with_retry_after_are_waited_for_and_retried() {
    let fake = FakeUpstream::with([
        Reply::error(429, "slow down").header("retry-after", "1"),
        Reply::error(503, "busy").header("retry-after", "1"),
        Reply::text(&["made it"]),
    ])
    .await;
    let svc = start_with(&fake.base_url, tempfile::tempdir().unwrap(), &[]).await;
    let started = Instant::now();
    let r = grpc(&svc).await.chat(user("x")).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "made it");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "Retry-After not honoured: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(fake.request_count(), 3);
}

/// One stream on a random API, dropped after a random delay (sometimes before any byte).
async fn cancelled_stream(
    svc_http: String,
    mut client: ChatServiceClient<Channel>,
    after: Duration,
) {
    let over_grpc = rand::random::<bool>();
    let work = async move {
        if over_grpc {
            let Ok(response) = client.stream_chat(user("x")).await else {
                return;
            };
            let mut stream = response.into_inner();
            while let Ok(Some(_)) = stream.message().await {}
        } else {
            let body = json!({"model": "test-model", "stream": true,
                              "messages": [{"role": "user", "content": "x"}]});
            let Ok(r) = reqwest::Client::new()
                .post(format!("{svc_http}/v1/chat/completions"))
                .json(&body)
                .send()
                .await
            else {
                return;
            };
            let mut body = r.bytes_stream();
            while let Some(Ok(_)) = body.next().await {}
        }
    };
    let _ = tokio::time::timeout(after, work).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_cancelled_at_random_points_leave_nothing_behind() {
    const STREAMS: usize = 1000;
    const CONCURRENCY: usize = 50;
    let parts: Vec<String> = (0..20).map(|i| format!("w{i} ")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let fake = FakeUpstream::start().await;
    for _ in 0..STREAMS {
        fake.push(Reply::text(&parts).delay(Duration::from_millis(10)));
    }
    let svc = start_with(&fake.base_url, service::dir_with_fixture(), &[]).await;
    let client = grpc(&svc).await;
    // Warm up both APIs so pooled connections exist before the baseline.
    cancelled_stream(svc.http(), client.clone(), Duration::from_secs(2)).await;
    let (fds_before, threads_before) = (fds(&svc), threads(&svc));

    let started = Instant::now();
    futures::stream::iter(0..STREAMS)
        .for_each_concurrent(CONCURRENCY, |_| {
            let after = Duration::from_millis(rand::random_range(0..250));
            cancelled_stream(svc.http(), client.clone(), after)
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    // Every upstream body the service opened was either read to its end or dropped.
    eventually(
        "every upstream body closed",
        Duration::from_secs(10),
        || async { fake.dropped() + fake.finished() >= fake.request_count() },
    )
    .await;
    assert!(fake.dropped() > 0, "no stream was cancelled mid-body");
    // The service's own gauges agree: no stream and no tool call is left open.
    eventually(
        "active streams back to 0",
        Duration::from_secs(10),
        || async { gauge(&svc, "mcp_chat_active_streams").await == 0.0 },
    )
    .await;
    assert_eq!(gauge(&svc, "mcp_chat_tool_calls_in_flight").await, 0.0);
    // No descriptor or thread piles up (idle pooled upstream connections are allowed for).
    eventually(
        "descriptors back to the baseline",
        Duration::from_secs(10),
        || async { fds(&svc) <= fds_before + CONCURRENCY },
    )
    .await;
    assert!(
        threads(&svc) <= threads_before + 16,
        "threads grew from {threads_before} to {}",
        threads(&svc)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_turns_cancel_their_mcp_calls_on_the_server() {
    const TOOL_STREAMS: usize = 10;
    let fake = FakeUpstream::start().await;
    for i in 0..TOOL_STREAMS {
        fake.push(call(&format!("s{i}"), "slow", "{\"ms\": 20000}"));
    }
    let svc = start_with(&fake.base_url, service::dir_with_fixture(), &[]).await;
    let client = grpc(&svc).await;
    futures::stream::iter(0..TOOL_STREAMS)
        .for_each_concurrent(TOOL_STREAMS, |_| {
            let mut client = client.clone();
            async move {
                let mut stream = client.stream_chat(user("slow")).await.unwrap().into_inner();
                while let Some(event) = stream.message().await.unwrap() {
                    if matches!(event.event, Some(Event::ToolCallStarted(_))) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    let mut cancelled = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cancelled < TOOL_STREAMS && Instant::now() < deadline {
        fake.push(call("count", "cancellations", "{}"));
        fake.push(Reply::text(&["counted"]));
        let mut client = client.clone();
        client.chat(user("count")).await.unwrap();
        cancelled = tool_result(&fake, fake.request_count() - 1)
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cancelled, TOOL_STREAMS,
        "slow calls left running on the MCP server"
    );
    assert_eq!(gauge(&svc, "mcp_chat_tool_calls_in_flight").await, 0.0);
    assert_eq!(gauge(&svc, "mcp_chat_active_streams").await, 0.0);
}

/// A gauge's value from `/metrics`.
async fn gauge(svc: &Service, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", svc.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{name} missing in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_server_going_down_turns_both_readiness_probes_unready_until_it_is_back() {
    // Starts the fixture while the marker is absent; refuses to start while it is there.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("down");
    let script = gated_fixture(dir.path(), &marker, false);
    let config = json!({"mcpServers": {"needed": {"command": script, "required": true}}});
    std::fs::write(dir.path().join("servers_config.json"), config.to_string()).unwrap();
    let marker_path = marker.clone();

    let fake = FakeUpstream::with([call("c1", "crash", "{}"), Reply::text(&["gone"])]).await;
    let svc = start_with(
        &fake.base_url,
        dir,
        &[("MCP_CHAT_MCP_MAX_RESTART_BACKOFF", "1s")],
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(svc.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let ready_url = format!("{}/readyz", svc.http());
    let probes = move || {
        let mut health = health.clone();
        let url = ready_url.clone();
        async move {
            let grpc = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "mcpchat.v1.ChatService".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            let http = reqwest::get(&url).await.unwrap().status().as_u16();
            (grpc, http)
        }
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(probes().await, (serving, 200));

    // The server exits and cannot come back: both probes turn unready.
    std::fs::write(&marker_path, "").unwrap();
    let mut client = grpc(&svc).await;
    let r = client.chat(user("crash")).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "gone");
    eventually("both probes unready", Duration::from_secs(15), || {
        let probes = probes.clone();
        async move { probes().await == (not_serving, 503) }
    })
    .await;

    // It can start again: both probes turn ready with it.
    std::fs::remove_file(&marker_path).unwrap();
    eventually("both probes ready again", Duration::from_secs(15), || {
        let probes = probes.clone();
        async move { probes().await == (serving, 200) }
    })
    .await;
}

/// The content of the last tool message the upstream was sent.
fn last_tool_result(fake: &FakeUpstream) -> String {
    let requests = fake.requests();
    let last = requests.last().expect("the upstream was called");
    last.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_that_restarts_is_reconnected_and_its_tools_work_again() {
    let addr = format!("127.0.0.1:{}", service::free_port());
    let (first, url) = fixture_serving_at("--http", &addr, "first");
    let dir = dir_with_servers(json!({"remote": {"type": "streamable_http", "url": url}}));
    let fake = FakeUpstream::start().await;
    let svc = start_with(
        &fake.base_url,
        dir,
        &[("MCP_CHAT_MCP_MAX_RESTART_BACKOFF", "1s")],
    )
    .await;
    let mut client = grpc(&svc).await;
    let mut turn = 0;
    let mut echo = || {
        turn += 1;
        fake.push(call(&format!("c{turn}"), "echo", r#"{"text": "hello"}"#));
        fake.push(Reply::text(&["ok"]));
    };

    echo();
    client.chat(user("echo")).await.unwrap();
    assert_eq!(last_tool_result(&fake), "[first] hello");

    // The server process goes away; a new one (without the old session) comes up on the
    // same address. Within a few turns the tool works again, answered by the new process.
    drop(first);
    let (_second, _) = fixture_serving_at("--http", &addr, "second");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        echo();
        client.chat(user("echo")).await.unwrap();
        let result = last_tool_result(&fake);
        if result == "[second] hello" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted server's tool never answered; last result: {result}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tools = client
        .list_tools(pb::ListToolsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tools.servers[0].state, "ready", "{tools:?}");
}
