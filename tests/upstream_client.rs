//! The real upstream client against the scripted fake upstream: streaming and whole answers,
//! retries, error statuses, timeouts, cut streams and dropped connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/upstream.rs"]
mod upstream;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures::StreamExt;
use mcp_chat::{
    config::{Secret, UpstreamConfig},
    llm::{
        Completion, CompletionRequest, Endpoint, FinishReason, LlmClient, LlmError, LlmEvent,
        OpenAiClient, RetryPolicy,
    },
    model::{GenParams, Message, Role, ToolCall},
};
use upstream::{Answer, FakeUpstream, Reply};

fn client(idle: Duration) -> OpenAiClient {
    let config = UpstreamConfig {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_secs(5),
        idle_timeout: idle,
        total_timeout: Duration::from_secs(30),
        max_retries: 2,
        ..UpstreamConfig::default()
    };
    OpenAiClient::new(&config)
        .unwrap()
        .with_retry_policy(RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..RetryPolicy::from_config(&config)
        })
}

fn endpoint(fake: &FakeUpstream, key: &str) -> Endpoint {
    Endpoint::new(
        fake.base_url.clone(),
        Secret::new(key),
        BTreeMap::from([("x-extra".to_owned(), Secret::new("yes"))]),
    )
    .unwrap()
}

/// An endpoint at `base_url`, with no key and no extra headers.
fn endpoint_at(base_url: String) -> Endpoint {
    Endpoint::new(base_url, Secret::default(), BTreeMap::new()).unwrap()
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: "fake-model".into(),
        messages: vec![Message::new(Role::User, "hello")],
        tools: Vec::new(),
        tool_choice: None,
        params: GenParams::default(),
    }
}

/// All events of a stream: the texts, then the completion or the error that ended it.
async fn drain(
    client: &OpenAiClient,
    fake: &FakeUpstream,
) -> (Vec<String>, Result<Completion, LlmError>) {
    let mut stream = match client.stream(&endpoint(fake, "sk-test"), &request()).await {
        Ok(stream) => stream,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut texts = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(LlmEvent::Content(text)) => texts.push(text),
            Ok(LlmEvent::Done(done)) => {
                assert!(stream.next().await.is_none(), "nothing after Done");
                return (texts, Ok(done));
            }
            Err(e) => return (texts, Err(e)),
        }
    }
    panic!("the stream ended without Done or an error");
}

#[tokio::test]
async fn streaming_answer_with_content_and_split_tool_call() {
    let fake = FakeUpstream::with([Reply::answer(
        Answer::text(&["Hel", "lo ", "wörld"])
            .tool_call("call_abc", "search", &["{\"q\":", "\"ru", "st\"}"])
            .usage(7, 3),
    )])
    .await;
    let (texts, done) = drain(&client(Duration::from_secs(5)), &fake).await;
    assert_eq!(texts, ["Hel", "lo ", "wörld"]);
    let done = done.unwrap();
    assert_eq!(done.content, "Hello wörld");
    assert_eq!(
        done.tool_calls,
        [ToolCall {
            id: "call_abc".into(),
            name: "search".into(),
            arguments: "{\"q\":\"rust\"}".into()
        }]
    );
    assert_eq!(done.finish_reason, FinishReason::ToolCalls);
    assert_eq!(done.usage.unwrap().total_tokens, 10);

    let sent = &fake.requests()[0];
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    assert_eq!(sent.body["model"], "fake-model");
    assert_eq!(sent.headers["authorization"], "Bearer sk-test");
    assert_eq!(sent.headers["x-extra"], "yes");
    assert_eq!(fake.finished(), 1);
}

#[tokio::test]
async fn non_stream_answer_without_key_sends_no_authorization() {
    let fake = FakeUpstream::with([Reply::text(&["Hi ", "there"])]).await;
    let done = client(Duration::from_secs(5))
        .complete(&endpoint(&fake, ""), &request())
        .await
        .unwrap();
    assert_eq!(done.content, "Hi there");
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(done.usage.unwrap().completion_tokens, 2);
    let sent = &fake.requests()[0];
    assert!(sent.body.get("stream").is_none());
    assert!(sent.headers.get("authorization").is_none());
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let fake = FakeUpstream::with([
        Reply::error(503, "busy"),
        Reply::error(503, "still busy"),
        Reply::text(&["ok"]),
    ])
    .await;
    let (texts, done) = drain(&client(Duration::from_secs(5)), &fake).await;
    assert_eq!(
        (texts, done.unwrap().content),
        (vec!["ok".to_owned()], "ok".to_owned())
    );
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn retries_are_bounded_and_the_last_status_is_reported() {
    let fake = FakeUpstream::with((0..4).map(|_| Reply::error(502, "bad gateway upstream"))).await;
    let err = client(Duration::from_secs(5))
        .complete(&endpoint(&fake, "k"), &request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Status { status: 502, ref message, .. } if message == "bad gateway upstream")
    );
    assert_eq!(
        fake.request_count(),
        3,
        "one attempt and max_retries = 2 retries"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried_and_keep_the_upstream_message() {
    let fake = FakeUpstream::with([
        Reply::error(400, "Invalid 'messages[0].role'"),
        Reply::text(&["never"]),
    ])
    .await;
    let (_, done) = drain(&client(Duration::from_secs(5)), &fake).await;
    let err = done.unwrap_err();
    assert!(
        matches!(&err, LlmError::Status { status: 400, message, code: Some(code), .. } if code == "invalid_request_error" && message == "Invalid 'messages[0].role'"),
        "{err:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn x_should_retry_false_stops_retries() {
    let fake =
        FakeUpstream::with([Reply::error(500, "no").header("x-should-retry", "false")]).await;
    let err = client(Duration::from_secs(5))
        .complete(&endpoint(&fake, "k"), &request())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Status { status: 500, .. }));
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after() {
    let fake = FakeUpstream::with([
        Reply::error(429, "slow down").header("retry-after", "1"),
        Reply::text(&["done"]),
    ])
    .await;
    let started = Instant::now();
    let done = client(Duration::from_secs(5))
        .complete(&endpoint(&fake, "k"), &request())
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(done.content, "done");
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn malformed_json_is_a_bad_response() {
    let fake = FakeUpstream::with([Reply::raw(200, "application/json", "{\"choices\": [")]).await;
    let err = client(Duration::from_secs(5))
        .complete(&endpoint(&fake, "k"), &request())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::BadResponse(_)), "{err:?}");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn headers_then_silence_is_an_idle_timeout() {
    let fake = FakeUpstream::with([Reply::silence()]).await;
    let started = Instant::now();
    let (_, done) = drain(&client(Duration::from_millis(300)), &fake).await;
    assert!(
        matches!(done, Err(LlmError::Timeout { phase: "idle", .. })),
        "{done:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(fake.wait_dropped(1, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_connection() {
    let parts: Vec<String> = (0..200).map(|i| format!("w{i} ")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let fake = FakeUpstream::with([
        Reply::text(&parts).delay(Duration::from_millis(20)),
        Reply::sse(&[r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#]).then_hang(),
    ])
    .await;
    let client = client(Duration::from_secs(5));
    for expected_drops in 1..=2 {
        let mut stream = client
            .stream(&endpoint(&fake, "k"), &request())
            .await
            .unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Ok(LlmEvent::Content(_)))
        ));
        drop(stream);
        assert!(
            fake.wait_dropped(expected_drops, Duration::from_secs(1))
                .await,
            "the fake did not see stream {expected_drops} closed"
        );
    }
    assert_eq!(fake.finished(), 0);
}

#[tokio::test]
async fn a_stream_cut_before_done_is_an_error() {
    let fake = FakeUpstream::with([
        Reply::text(&["a", "b", "c"]).cut_after(3),
        Reply::text(&["a", "b"]).cut_after(2).then_abort(),
    ])
    .await;
    let client = client(Duration::from_secs(5));
    let (texts, done) = drain(&client, &fake).await;
    assert_eq!(texts, ["a", "b"]);
    assert!(
        matches!(&done, Err(LlmError::Stream(m)) if m == "the upstream closed the stream before it finished"),
        "{done:?}"
    );
    let (_, done) = drain(&client, &fake).await;
    assert!(matches!(done, Err(LlmError::Stream(_))), "{done:?}");
}

#[tokio::test]
async fn mid_stream_error_object_is_a_stream_error() {
    let fake = FakeUpstream::with([Reply::sse(&[
        r#"{"choices":[{"index":0,"delta":{"content":"par"}}]}"#,
        r#"{"error":{"message":"The server had an error","type":"server_error"}}"#,
    ])])
    .await;
    let (texts, done) = drain(&client(Duration::from_secs(5)), &fake).await;
    assert_eq!(texts, ["par"]);
    assert!(matches!(&done, Err(LlmError::Stream(m)) if m == "The server had an error"));
}

#[tokio::test]
async fn bytes_split_inside_a_character_and_crlf() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Ωmega\"},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n";
    let at = body.find('Ω').unwrap() + 1;
    let fake = FakeUpstream::with([Reply::bytes(vec![
        b": ping\r\n\r\n".to_vec(),
        body.as_bytes()[..at].to_vec(),
        body.as_bytes()[at..].to_vec(),
    ])
    .delay(Duration::from_millis(5))])
    .await;
    let (texts, done) = drain(&client(Duration::from_secs(5)), &fake).await;
    assert_eq!(texts, ["Ωmega"]);
    assert_eq!(done.unwrap().finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn unreachable_upstream_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = endpoint_at(format!("http://127.0.0.1:{port}/v1"));
    let err = client(Duration::from_secs(5))
        .complete(&endpoint, &request())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn a_slow_stream_hits_the_total_timeout() {
    let parts: Vec<&str> = vec!["x"; 50];
    let fake = FakeUpstream::with([Reply::text(&parts).delay(Duration::from_millis(50))]).await;
    let config = UpstreamConfig {
        total_timeout: Duration::from_millis(400),
        ..UpstreamConfig::default()
    };
    let client = OpenAiClient::new(&config).unwrap();
    let started = Instant::now();
    let (texts, done) = drain(&client, &fake).await;
    assert!(!texts.is_empty());
    assert!(
        matches!(done, Err(LlmError::Timeout { phase: "total", .. })),
        "{done:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(fake.wait_dropped(1, Duration::from_secs(1)).await);
}

/// A server that accepts connections and holds them open, reading nothing and answering
/// nothing; abort the handle to close them.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    (addr, held)
}

#[tokio::test]
async fn an_upstream_that_never_answers_hits_the_first_byte_timeout() {
    let (addr, held) = silent_server().await;
    let config = UpstreamConfig {
        first_byte_timeout: Duration::from_millis(200),
        max_retries: 0,
        ..UpstreamConfig::default()
    };
    let endpoint = endpoint_at(format!("http://{addr}/v1"));
    let started = Instant::now();
    let err = OpenAiClient::new(&config)
        .unwrap()
        .complete(&endpoint, &request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::Timeout {
                phase: "first byte",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    held.abort();
}

/// A forward HTTP proxy for plain-HTTP targets: it records each connection's first request
/// line (absolute-form, as clients send through a proxy) and relays the connection to the
/// target. Answers the proxy's URL and the recorded lines.
async fn forward_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n") {
                    client.read_exact(&mut byte).await.unwrap();
                    head.push(byte[0]);
                }
                let line = String::from_utf8(head).unwrap();
                lines.lock().unwrap().push(line.trim_end().to_owned());
                // `POST http://host:port/path HTTP/1.1`
                let mut parts = line.split(' ');
                let (method, target, version) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let rest = target.strip_prefix("http://").unwrap();
                let (authority, path) = rest.split_at(rest.find('/').unwrap());
                let mut upstream = tokio::net::TcpStream::connect(authority).await.unwrap();
                upstream
                    .write_all(format!("{method} {path} {version}").as_bytes())
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn an_upstream_behind_a_proxy_is_reached_through_it() {
    let fake = FakeUpstream::with([
        Reply::text(&["through ", "the proxy"]),
        Reply::answer(Answer::text(&["streamed ", "too"])),
    ])
    .await;
    let (proxy, seen) = forward_proxy().await;
    let config = UpstreamConfig {
        max_retries: 0,
        ..UpstreamConfig::default()
    };
    let client = OpenAiClient::with_proxy(&config, &proxy).unwrap();
    let done = client
        .complete(&endpoint(&fake, "sk-test"), &request())
        .await
        .unwrap();
    assert_eq!(done.content, "through the proxy");
    let (texts, done) = drain(&client, &fake).await;
    assert_eq!(texts, ["streamed ", "too"]);
    assert_eq!(done.unwrap().content, "streamed too");

    // Absolute-form request lines: the requests went through the proxy, not around it.
    let lines = seen.lock().unwrap().clone();
    assert!(!lines.is_empty());
    let target = format!("POST {}/chat/completions HTTP/1.1", fake.base_url);
    assert!(lines.iter().all(|line| *line == target), "{lines:?}");
    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].headers["authorization"], "Bearer sk-test");
}

#[tokio::test]
async fn a_tls_handshake_that_never_ends_hits_the_connect_timeout() {
    // It never answers the TLS ClientHello either.
    let (addr, held) = silent_server().await;
    let config = UpstreamConfig {
        connect_timeout: Duration::from_millis(300),
        first_byte_timeout: Duration::from_secs(10),
        max_retries: 0,
        ..UpstreamConfig::default()
    };
    let endpoint = endpoint_at(format!("https://{addr}/v1"));
    let err = OpenAiClient::new(&config)
        .unwrap()
        .complete(&endpoint, &request())
        .await
        .unwrap_err();
    // The connect timeout covers the handshake: not the first-byte timeout, 10 s later.
    assert!(
        matches!(
            err,
            LlmError::Timeout {
                phase: "connect",
                ..
            }
        ),
        "{err:?}"
    );
    held.abort();
}
