//! The HTTP gateway's cross-cutting behaviour on the real binary: every error status and
//! body, the body limit, CORS, request ids and the Simplified API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use service::Service;
use upstream::{FakeUpstream, Reply};

async fn start(fake: &FakeUpstream, env: &[(&str, &str)]) -> Service {
    let mut all = vec![
        ("OPENAI_BASE_URL", fake.base_url.as_str()),
        ("DEFAULT_MODEL", "test-model"),
    ];
    all.extend_from_slice(env);
    Service::start(&all).await
}

fn chat_body() -> Value {
    json!({"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
}

async fn error_of(response: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    for key in ["message", "type", "param", "code"] {
        assert!(body["error"].get(key).is_some(), "{key} missing in {body}");
    }
    (status, headers, body)
}

#[tokio::test]
async fn every_error_has_its_status_and_an_openai_body() {
    let fake = FakeUpstream::with([
        Reply::error(429, "slow down").header("retry-after", "3"),
        Reply::error(503, "upstream overloaded"),
        Reply::silence(),
    ])
    .await;
    let svc = start(
        &fake,
        &[
            ("MCP_CHAT_UPSTREAM_MAX_RETRIES", "0"),
            ("MCP_CHAT_UPSTREAM_IDLE_TIMEOUT", "1"),
            ("MCP_CHAT_MAX_BODY_BYTES", "2000"),
        ],
    )
    .await;
    let http = Client::new();
    let url = format!("{}/v1/chat/completions", svc.http());

    let (status, _, body) = error_of(
        http.post(&url)
            .body("{\"messages\": [")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{body}"
    );

    let (status, _, body) = error_of(
        http.post(&url)
            .json(&json!({"messages": [], "n": 3}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["param"].as_str()),
        (400, Some("n"))
    );

    let (status, _, body) = error_of(
        http.post(&url)
            .json(&json!({"messages": []}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["param"].as_str()),
        (400, Some("messages")),
        "{body}"
    );

    let too_big = json!({"messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let (status, _, body) = error_of(http.post(&url).json(&too_big).send().await.unwrap()).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes"),
        "{body}"
    );

    let mut unknown = chat_body();
    unknown["model"] = json!("gpt-17");
    let (status, _, body) = error_of(http.post(&url).json(&unknown).send().await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );

    let (status, _, _) = error_of(
        http.get(format!("{}/v1/models/gpt-17", svc.http()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    let (status, headers, body) =
        error_of(http.post(&url).json(&chat_body()).send().await.unwrap()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "3");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("slow down")
    );

    let (status, _, body) =
        error_of(http.post(&url).json(&chat_body()).send().await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (502, Some("bad_gateway")),
        "{body}"
    );

    let (status, _, body) =
        error_of(http.post(&url).json(&chat_body()).send().await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (504, Some("gateway_timeout")),
        "{body}"
    );
    assert!(
        fake.wait_dropped(1, Duration::from_secs(2)).await,
        "the silent upstream connection was closed"
    );
}

#[tokio::test]
async fn cors_preflight_follows_the_configured_origins() {
    let fake = FakeUpstream::start().await;
    let svc = start(
        &fake,
        &[("MCP_CHAT_CORS_ALLOW_ORIGINS", "https://app.example")],
    )
    .await;
    let http = Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/chat/completions", svc.http()),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let allow_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allow_headers.contains("authorization"), "{allow_headers}");
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // Without configuration there is no CORS at all.
    let plain = Service::start(&[]).await;
    let r = Client::new()
        .get(format!("{}/v1/models", plain.http()))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn request_ids_are_generated_or_echoed() {
    let svc = Service::start(&[]).await;
    let http = Client::new();
    let r = http
        .get(format!("{}/v1/models", svc.http()))
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "{generated}");
    let r = http
        .get(format!("{}/nope", svc.http()))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn simplified_api_answers_and_streams_typed_events() {
    let fake = FakeUpstream::with([
        Reply::text(&["Hi ", "there"]),
        Reply::text(&["Str", "eamed"]),
    ])
    .await;
    let svc = start(&fake, &[]).await;
    let http = Client::new();
    let r: Value = svc
        .post_json(&http, "/chat", &json!({"message": "hello"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["response"], "Hi there");

    let text = svc
        .post_json(&http, "/chat/stream", &json!({"message": "hello"}))
        .await
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events, ["start", "delta", "delta", "done"], "{text}");
    assert!(text.contains("\"response\":\"Streamed\""), "{text}");

    let (status, _, body) = error_of(svc.post_json(&http, "/chat", &json!({"msg": 1})).await).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("message"),
        "{body}"
    );
}

#[tokio::test]
async fn the_clients_timeout_bounds_the_request() {
    let fake = FakeUpstream::with([Reply::silence()]).await;
    let svc = start(&fake, &[]).await;
    let started = std::time::Instant::now();
    let r = svc
        .post(&Client::new(), "/v1/chat/completions")
        .header("x-stainless-timeout", "0.6")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_of(r).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        fake.wait_dropped(1, Duration::from_secs(2)).await,
        "the upstream call was dropped"
    );
}
