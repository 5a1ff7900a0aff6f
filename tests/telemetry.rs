//! Operations end to end: the span tree of a chat with a tool call arrives at an OTLP
//! collector (an in-process tonic server) under the caller's `traceparent`, the upstream and
//! the MCP servers over HTTP (streamable HTTP and legacy SSE) receive the same trace, and
//! `/metrics` has every family with bounded labels.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::Span,
};
use serde_json::json;
use service::{Service, dir_with_fixture, dir_with_servers, fixture_serving};
use upstream::{Answer, FakeUpstream, Reply};

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    /// Starts the collector on a free port; returns its endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(self.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        endpoint
    }

    /// The spans of `trace_id` once `done` holds for their names (15 s at most).
    async fn spans_of(&self, trace_id: &str, done: impl Fn(&[&str]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans: Vec<Span> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .cloned()
                .collect();
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            if done(&names) {
                return spans;
            }
            assert!(Instant::now() < deadline, "spans seen: {names:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The environment that exports the service's spans to `endpoint`.
fn otlp_env(endpoint: &str) -> [(&'static str, &str); 4] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "mcp-chat-test"),
    ]
}

#[tokio::test]
async fn a_chat_with_a_tool_call_exports_the_span_tree_under_the_callers_trace() {
    let collector = Collector::default();
    let endpoint = collector.start().await;

    let fake = FakeUpstream::with([
        Reply::answer(Answer::text(&[]).tool_call("c1", "add", &["{\"a\": 1, \"b\": 2}"])),
        Reply::text(&["3"]),
    ])
    .await;
    let svc = Service::start_in(
        dir_with_fixture(),
        &[
            [
                ("OPENAI_BASE_URL", fake.base_url.as_str()),
                ("DEFAULT_MODEL", "test-model"),
            ]
            .as_slice(),
            &otlp_env(&endpoint),
        ]
        .concat(),
        &[],
    )
    .await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let body = json!({"messages": [{"role": "user", "content": "1+2?"}]});
    let r = svc
        .post(&reqwest::Client::new(), "/v1/chat/completions")
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Wait for the batch exporter.
    let spans = collector
        .spans_of(trace_id, |names| {
            names.contains(&"tool.call")
                && names.iter().filter(|n| **n == "llm.call").count() == 2
                && names.iter().any(|n| n.starts_with("POST"))
        })
        .await;
    let by_name = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let http = spans
        .iter()
        .find(|s| s.name == "POST /v1/chat/completions")
        .unwrap();
    assert_eq!(
        hex(&http.parent_span_id),
        parent_id,
        "the HTTP span continues the caller's trace"
    );
    let run = by_name("agent.run").next().unwrap();
    assert_eq!(run.parent_span_id, http.span_id);
    for llm in by_name("llm.call") {
        assert_eq!(llm.parent_span_id, run.span_id);
        let attrs: HashMap<_, _> = llm
            .attributes
            .iter()
            .map(|a| (a.key.as_str(), format!("{:?}", a.value)))
            .collect();
        assert!(
            attrs["model"].contains("test-model") && attrs["status"].contains("ok"),
            "{attrs:?}"
        );
    }
    let tool = by_name("tool.call").next().unwrap();
    assert_eq!(tool.parent_span_id, run.span_id);
    let attrs: Vec<_> = tool
        .attributes
        .iter()
        .map(|a| format!("{}={:?}", a.key, a.value))
        .collect();
    assert!(
        attrs
            .iter()
            .any(|a| a.starts_with("server=") && a.contains("fx")),
        "{attrs:?}"
    );
    assert!(
        attrs
            .iter()
            .any(|a| a.starts_with("outcome=") && a.contains("ok")),
        "{attrs:?}"
    );

    // The upstream got the same trace, with an llm.call span as parent.
    for request in fake.requests() {
        let header = request.headers["traceparent"].to_str().unwrap().to_string();
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts[1], trace_id, "{header}");
        assert!(
            by_name("llm.call").any(|s| hex(&s.span_id) == parts[2]),
            "{header}"
        );
    }
}

#[tokio::test]
async fn mcp_servers_over_http_receive_the_tool_calls_trace() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let (_web, web_url) = fixture_serving("--http", "web");
    let (_legacy, legacy_url) = fixture_serving("--sse", "legacy");
    let dir = dir_with_servers(json!({
        "web": {"type": "streamable_http", "url": web_url},
        "legacy": {"type": "sse", "url": legacy_url},
    }));
    let fake = FakeUpstream::with([
        Reply::answer(
            Answer::text(&[])
                .tool_call("c1", "web__traceparent", &["{}"])
                .tool_call("c2", "legacy__traceparent", &["{}"]),
        ),
        Reply::text(&["done"]),
    ])
    .await;
    let svc = Service::start_in(
        dir,
        &[
            [
                ("OPENAI_BASE_URL", fake.base_url.as_str()),
                ("DEFAULT_MODEL", "test-model"),
            ]
            .as_slice(),
            &otlp_env(&endpoint),
        ]
        .concat(),
        &[],
    )
    .await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let body = json!({"messages": [{"role": "user", "content": "trace?"}]});
    let r = svc
        .post(&reqwest::Client::new(), "/v1/chat/completions")
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let spans = collector
        .spans_of(trace_id, |names| {
            names.iter().filter(|n| **n == "tool.call").count() == 2
        })
        .await;

    // The tools' answers (what each server saw) went back to the model.
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let seen: HashMap<String, serde_json::Value> = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let id = m["tool_call_id"].as_str().unwrap().to_string();
            let content = m["content"].as_str().unwrap();
            (
                id,
                serde_json::from_str(content).unwrap_or_else(|e| panic!("{content}: {e}")),
            )
        })
        .collect();
    for (call, server) in [("c1", "web"), ("c2", "legacy")] {
        let tool = spans
            .iter()
            .find(|s| {
                s.name == "tool.call"
                    && s.attributes
                        .iter()
                        .any(|a| a.key == "server" && format!("{:?}", a.value).contains(server))
            })
            .unwrap_or_else(|| panic!("no tool.call span for {server}"));
        let expected = format!("00-{trace_id}-{}-01", hex(&tool.span_id));
        assert_eq!(
            seen[call]["header"], expected,
            "{server}: the HTTP header names the tool.call span as parent: {seen:?}"
        );
        assert_eq!(
            seen[call]["meta"], expected,
            "{server}: so does `_meta`: {seen:?}"
        );
    }
}

#[tokio::test]
async fn metrics_expose_every_family_with_bounded_labels() {
    let fake = FakeUpstream::with([
        Reply::answer(
            Answer::text(&[])
                .tool_call("c1", "add", &["{\"a\": 1, \"b\": 2}"])
                .usage(11, 3),
        ),
        Reply::answer(Answer::text(&["3"]).usage(20, 1)),
    ])
    .await;
    let svc = Service::start_in(
        dir_with_fixture(),
        &[
            ("OPENAI_BASE_URL", &fake.base_url),
            ("DEFAULT_MODEL", "test-model"),
        ],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let body = json!({"messages": [{"role": "user", "content": "1+2?"}], "stream": true});
    let text = svc.post_chat(&http, &body).await.text().await.unwrap();
    assert!(text.contains("[DONE]"));
    http.get(format!("{}/no/such/thing/42", svc.http()))
        .send()
        .await
        .unwrap();
    // Every route of the router is labelled with its own template (whatever its status).
    let routes = [
        ("GET", "/", "/"),
        ("GET", "/healthz", "/healthz"),
        ("GET", "/readyz", "/readyz"),
        ("GET", "/v1/models", "/v1/models"),
        ("GET", "/v1/models/test-model", "/v1/models/{id}"),
        ("POST", "/chat", "/chat"),
        ("POST", "/chat/stream", "/chat/stream"),
        ("GET", "/sessions/nope", "/sessions/{id}"),
        ("DELETE", "/sessions/nope", "/sessions/{id}"),
    ];
    for (method, path, _) in routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        http.request(method, format!("{}{path}", svc.http()))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
    }
    let mut grpc = mcp_chat::pb::chat_service_client::ChatServiceClient::connect(svc.grpc())
        .await
        .unwrap();
    grpc.list_models(mcp_chat::pb::ListModelsRequest {})
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // the server-state gauges refresh each second

    // Content negotiation: Prometheus's own Accept gets OpenMetrics; a scraper that asks for
    // the 0.0.4 text format, or sends no Accept, gets that format (no `# EOF`).
    let scrape_as = |accept: Option<&'static str>| {
        let mut request = http.get(format!("{}/metrics", svc.http()));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move {
            let response = request.send().await.unwrap();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            (content_type, response.text().await.unwrap())
        }
    };
    for accept in [Some("text/plain;version=0.0.4"), None] {
        let (content_type, body) = scrape_as(accept).await;
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        assert!(!body.contains("# EOF"), "{accept:?}: {body}");
        assert!(
            body.contains("# TYPE mcp_chat_http_requests_total counter"),
            "{body}"
        );
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    }
    let (content_type, text) = scrape_as(Some(
        "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    ))
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.trim_end().ends_with("# EOF"));
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let find = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {labels:?} missing in:\n{text}"))
            .clone()
    };
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    };
    // (Checked in the text: the parser does not take braces inside label values.)
    for (method, _, template) in routes {
        let series =
            format!("mcp_chat_http_requests_total{{route=\"{template}\",method=\"{method}\"");
        assert!(text.contains(&series), "{series} missing in:\n{text}");
    }
    let requests = find(
        "mcp_chat_http_requests_total",
        &[
            ("route", "/v1/chat/completions"),
            ("method", "POST"),
            ("status", "200"),
        ],
    );
    assert_eq!(value(&requests), 1.0);
    find(
        "mcp_chat_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
    );
    assert!(
        !text.contains("/no/such/thing"),
        "raw paths never become labels"
    );
    find(
        "mcp_chat_http_request_duration_seconds_count",
        &[("route", "/v1/chat/completions")],
    );
    find(
        "mcp_chat_grpc_requests_total",
        &[
            ("method", "mcpchat.v1.ChatService/ListModels"),
            ("code", "0"),
        ],
    );
    find(
        "mcp_chat_grpc_request_duration_seconds_count",
        &[("method", "mcpchat.v1.ChatService/ListModels")],
    );
    assert_eq!(
        value(&find(
            "mcp_chat_upstream_requests_total",
            &[("model", "test-model"), ("outcome", "ok")]
        )),
        2.0
    );
    find(
        "mcp_chat_upstream_request_duration_seconds_count",
        &[("model", "test-model")],
    );
    find(
        "mcp_chat_upstream_time_to_first_token_seconds_count",
        &[("model", "test-model")],
    );
    assert_eq!(
        value(&find(
            "mcp_chat_tokens_total",
            &[("model", "test-model"), ("direction", "prompt")]
        )),
        31.0
    );
    assert_eq!(
        value(&find(
            "mcp_chat_tokens_total",
            &[("model", "test-model"), ("direction", "completion")]
        )),
        4.0
    );
    assert_eq!(
        value(&find(
            "mcp_chat_tool_calls_total",
            &[("server", "fx"), ("tool", "add"), ("outcome", "ok")]
        )),
        1.0
    );
    find(
        "mcp_chat_tool_call_duration_seconds_count",
        &[("server", "fx"), ("tool", "add")],
    );
    assert_eq!(value(&find("mcp_chat_tool_calls_in_flight", &[])), 0.0);
    assert_eq!(value(&find("mcp_chat_active_streams", &[])), 0.0);
    assert_eq!(
        value(&find("mcp_chat_mcp_server_up", &[("server", "fx")])),
        1.0
    );
    find("mcp_chat_mcp_server_restarts_total", &[("server", "fx")]);
    find("mcp_chat_sessions_stored", &[]);
}
