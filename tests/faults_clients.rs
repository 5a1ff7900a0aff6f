//! Hostile or broken clients against the real binary: slow headers, oversized headers,
//! deeply nested JSON, bodies shorter than their `Content-Length`, thousands of connections
//! opened and closed, and more requests than `server.max_in_flight` allows.
//!
//! Every loop is bounded in count and time and targets 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use futures::StreamExt;
use mcp_chat::pb::{self, chat_service_client::ChatServiceClient};
use serde_json::{Value, json};
use service::Service;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Code;
use upstream::{FakeUpstream, Reply};

async fn start(fake: &FakeUpstream, env: &[(&str, &str)]) -> Service {
    let mut all = vec![
        ("OPENAI_BASE_URL", fake.base_url.as_str()),
        ("DEFAULT_MODEL", "test-model"),
    ];
    all.extend_from_slice(env);
    Service::start(&all).await
}

fn fds(svc: &Service) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", svc.pid()))
        .map(Iterator::count)
        .unwrap_or(0)
}

fn threads(svc: &Service) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", svc.pid()))
        .map(Iterator::count)
        .unwrap_or(0)
}

async fn connect(svc: &Service) -> TcpStream {
    TcpStream::connect(("127.0.0.1", svc.http_port))
        .await
        .unwrap()
}

/// Reads until the peer closes (or `limit` passes); what was read.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| out)
}

async fn healthz_latency(svc: &Service, http: &reqwest::Client) -> Duration {
    let started = Instant::now();
    let r = http
        .get(format!("{}/healthz", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_cut_off_and_do_not_delay_others() {
    const SLOW: usize = 200;
    let fake = FakeUpstream::start().await;
    let svc = start(&fake, &[("MCP_CHAT_HEADER_READ_TIMEOUT", "1s")]).await;
    let fds_before = fds(&svc);

    // 200 clients trickle header lines, one every 200 ms, and never finish.
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let mut stream = connect(&svc).await;
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            let _ = stream
                .write_all(b"POST /chat HTTP/1.1\r\nhost: a\r\n")
                .await;
            let trickle = async {
                for n in 0.. {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if stream
                        .write_all(format!("x-{i}-{n}: y\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            };
            // Cut off: the writes fail once the service closed the connection.
            let _ = tokio::time::timeout(Duration::from_secs(8), trickle).await;
            started.elapsed()
        }));
    }
    // One client that connects and sends nothing at all.
    let mut silent = connect(&svc).await;

    let http = reqwest::Client::new();
    for _ in 0..10 {
        let took = healthz_latency(&svc, &http).await;
        assert!(
            took < Duration::from_millis(500),
            "a normal request took {took:?}"
        );
    }
    for task in slow {
        let held = task.await.unwrap();
        assert!(
            held < Duration::from_secs(5),
            "a slow-header client held on for {held:?}"
        );
    }
    assert!(
        read_to_close(&mut silent, Duration::from_secs(5))
            .await
            .is_some(),
        "a silent connection was never closed"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while fds(&svc) > fds_before + 2 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors, {fds_before} before",
            fds(&svc)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_a_431_and_nested_json_a_400_without_harm() {
    let fake = FakeUpstream::start().await;
    let svc = start(&fake, &[]).await;

    // A 100 KiB header: 431, and the connection is closed.
    let mut stream = connect(&svc).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let _ = writer.write_all(head.as_bytes()).await;
    };
    let read = async {
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let ((), answer) = tokio::join!(write, read);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Too many headers is the same answer.
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let mut stream = connect(&svc).await;
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nhost: a\r\n{many}\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"));

    // JSON nested 100 000 deep: a 400 naming the problem on both routes, never a crash.
    let http = reqwest::Client::new();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (path, body) in [
        (
            "/v1/chat/completions",
            format!(
                "{{\"model\": \"test-model\", \"messages\": [{{\"role\": \"user\", \"content\": \"x\"}}], \"response_format\": {deep}}}"
            ),
        ),
        ("/chat", format!("{{\"message\": {deep}}}")),
    ] {
        let r = http
            .post(format!("{}{path}", svc.http()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let v: Value = r.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        // `/chat` wants a string and stops at the first `[`; the others descend.
        assert!(
            message.contains("recursion limit") || path == "/chat",
            "{message}"
        );
    }
    assert!(healthz_latency(&svc, &http).await < Duration::from_secs(1));
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_bodies_and_thousands_of_connections_leak_no_descriptors_or_threads() {
    let fake = FakeUpstream::start().await;
    let svc = start(&fake, &[("MCP_CHAT_HEADER_READ_TIMEOUT", "2s")]).await;
    let http = reqwest::Client::new();
    healthz_latency(&svc, &http).await;
    drop(http);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fds_before, threads_before) = (fds(&svc), threads(&svc));

    // A body shorter than its Content-Length, then a close: the request ends, nothing hangs.
    for _ in 0..200 {
        let mut stream = connect(&svc).await;
        stream
            .write_all(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\": ",
            )
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let answer = read_to_close(&mut stream, Duration::from_secs(5)).await;
        assert!(
            answer.is_some(),
            "the service kept a half-sent request open"
        );
    }

    // 3 000 connections: closed at once, after a partial head, or after a whole request.
    futures::stream::iter(0..3000)
        .for_each_concurrent(100, |i| {
            let port = svc.http_port;
            async move {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                match i % 3 {
                    0 => {}
                    1 => {
                        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nho").await;
                    }
                    _ => {
                        let _ = stream
                            .write_all(
                                b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
                            )
                            .await;
                        let answer = read_to_close(&mut stream, Duration::from_secs(5)).await;
                        assert!(answer.is_some_and(|a| a.starts_with(b"HTTP/1.1 200")));
                    }
                }
            }
        })
        .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    while fds(&svc) > fds_before + 2 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open, {fds_before} before",
            fds(&svc)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        threads(&svc) <= threads_before + 8,
        "threads grew from {threads_before} to {}",
        threads(&svc)
    );
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_in_flight_requests_are_refused_fast_on_both_apis() {
    let slow = || Reply::text(&["a", "b", "c", "d", "e", "f"]).delay(Duration::from_millis(500));
    let fake = FakeUpstream::with([slow(), slow(), Reply::text(&["later"])]).await;
    let svc = start(&fake, &[("MCP_CHAT_MAX_IN_FLIGHT", "2")]).await;
    let http = reqwest::Client::new();
    let body = json!({"model": "test-model", "stream": true,
                      "messages": [{"role": "user", "content": "x"}]});

    // Two streams in flight (one over each API).
    let mut sse = svc.post_chat(&http, &body).await;
    assert_eq!(sse.status(), 200);
    sse.chunk().await.unwrap().unwrap();
    let mut client = ChatServiceClient::connect(svc.grpc()).await.unwrap();
    let request = pb::ChatRequest {
        messages: vec![pb::Message {
            role: pb::Role::User.into(),
            content: "x".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = client
        .stream_chat(request.clone())
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();

    // The third is refused at once, on both APIs; probes still answer.
    for i in 0..20 {
        let started = Instant::now();
        let mut post = svc.post(&http, "/v1/chat/completions").json(&body);
        if i % 2 == 1 {
            post = post.header("x-request-id", format!("mine-{i}"));
        }
        let r = post.send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let id = r.headers()["x-request-id"].to_str().unwrap();
        if i % 2 == 1 {
            assert_eq!(
                id,
                format!("mine-{i}"),
                "the client's request id comes back"
            );
        } else {
            assert_eq!(id.len(), 36, "a new request id: {id}");
        }
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "overloaded", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("server.max_in_flight")
        );
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );

        let started = Instant::now();
        let e = client.chat(request.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
    let r = http
        .get(format!("{}/readyz", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        fake.request_count(),
        2,
        "a refused request reached the upstream"
    );

    // Once the streams end, requests are served again.
    drop(sse);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = svc
            .post_json(&http, "/chat", &json!({"message": "again"}))
            .await;
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["response"], "later");
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "the permits never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_a_408_and_free_their_in_flight_slot() {
    let fake = FakeUpstream::with([Reply::text(&["after"])]).await;
    let svc = start(
        &fake,
        &[
            ("MCP_CHAT_BODY_READ_TIMEOUT", "1s"),
            ("MCP_CHAT_MAX_IN_FLIGHT", "1"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let body = json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]});

    // Half a body, then nothing: the request holds the only in-flight slot meanwhile.
    let started = Instant::now();
    let mut stream = connect(&svc).await;
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\": ",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = svc.post_chat(&http, &body).await;
    assert_eq!(r.status(), 503, "the slow body holds the slot");

    // The timeout answers it with a 408 in the OpenAI shape and closes the connection.
    let answer = read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("the connection is closed after the 408");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let json_start = text.find('{').unwrap();
    let v: Value = serde_json::from_str(text[json_start..].trim()).unwrap();
    assert_eq!(v["error"]["code"], "request_timeout", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.body_read_timeout")
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // The slot is free again.
    let r = svc.post_chat(&http, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "after");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_header_read_timeout() {
    let fake = FakeUpstream::start().await;
    let svc = start(&fake, &[("MCP_CHAT_HEADER_READ_TIMEOUT", "1s")]).await;
    let mut stream = connect(&svc).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Then nothing: the wait for the next request's headers is bounded too.
    let idle = Instant::now();
    let rest = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(rest.is_some(), "an idle keep-alive connection stays open");
    assert!(
        idle.elapsed() >= Duration::from_millis(800),
        "{:?}",
        idle.elapsed()
    );
}
