//! Prometheus metrics (OpenMetrics or Prometheus text at `GET /metrics`, see `exposition.rs`): one process-wide registry of
//! the families below. Labels are bounded: routes are templates, gRPC methods are the
//! service's own, models/servers/tools come from the configuration; never session ids or
//! raw paths.

use std::{
    fmt,
    sync::{Arc, LazyLock},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, text::encode},
    metrics::MetricType,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub model: Arc<str>,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: Arc<str>,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub server: String,
    pub tool: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolTimeLabels {
    pub server: String,
    pub tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

/// A family of any type, so that one table can register them all.
#[derive(Debug)]
struct Registered(Box<dyn Metric>);

impl EncodeMetric for Registered {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn latency() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric family of the process.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    pub grpc_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub upstream_duration: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub upstream_first_token: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub tokens: Family<TokenLabels, Counter>,
    pub tool_calls: Family<ToolLabels, Counter>,
    pub tool_duration: Family<ToolTimeLabels, Histogram, fn() -> Histogram>,
    pub tool_calls_in_flight: Gauge,
    pub active_streams: Gauge,
    pub mcp_server_up: Family<ServerLabels, Gauge>,
    pub mcp_server_needs_auth: Family<ServerLabels, Gauge>,
    pub mcp_server_restarts: Family<ServerLabels, Counter>,
    pub sessions_stored: Gauge,
    /// Chat turns by named key (`[[api_keys]]`; the name, never the key).
    pub key_turns: Family<KeyLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: String,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_chat");
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency),
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(latency),
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(latency),
            upstream_first_token: Family::new_with_constructor(latency),
            tokens: Family::default(),
            tool_calls: Family::default(),
            tool_duration: Family::new_with_constructor(latency),
            tool_calls_in_flight: Gauge::default(),
            active_streams: Gauge::default(),
            mcp_server_up: Family::default(),
            mcp_server_needs_auth: Family::default(),
            mcp_server_restarts: Family::default(),
            sessions_stored: Gauge::default(),
            key_turns: Family::default(),
            registry: Registry::default(),
        };
        for (name, family, help) in m.families() {
            if family.metric_type() == MetricType::Histogram {
                registry.register_with_unit(name, help, Unit::Seconds, family);
            } else {
                registry.register(name, help, family);
            }
        }
        Metrics { registry, ..m }
    }

    /// Every family: its name, its handle and its help text, in exposition order.
    /// Histograms are latencies, registered in seconds (the name gets `_seconds`); counters
    /// get `_total`.
    #[rustfmt::skip]
    fn families(&self) -> [(&'static str, Registered, &'static str); 17] {
        fn f(family: &(impl Metric + Clone)) -> Registered {
            Registered(Box::new(family.clone()))
        }
        [
            ("http_requests",                 f(&self.http_requests),         "HTTP requests by route, method and status"),
            ("http_request_duration",         f(&self.http_duration),         "HTTP request latency to the response head"),
            ("grpc_requests",                 f(&self.grpc_requests),         "gRPC requests by method and status code"),
            ("grpc_request_duration",         f(&self.grpc_duration),         "gRPC request latency to the response head"),
            ("upstream_requests",             f(&self.upstream_requests),     "Upstream LLM calls by model and outcome"),
            ("upstream_request_duration",     f(&self.upstream_duration),     "Upstream LLM call latency"),
            ("upstream_time_to_first_token",  f(&self.upstream_first_token),  "Streamed upstream calls: time to the first content"),
            ("tokens",                        f(&self.tokens),                "Tokens by model and direction (prompt, completion)"),
            ("tool_calls",                    f(&self.tool_calls),            "MCP tool calls by server, tool and outcome"),
            ("tool_call_duration",            f(&self.tool_duration),         "MCP tool call latency"),
            ("tool_calls_in_flight",          f(&self.tool_calls_in_flight),  "MCP tool calls running now"),
            ("active_streams",                f(&self.active_streams),        "Streamed chat responses open now"),
            ("mcp_server_up",                 f(&self.mcp_server_up),         "1 when the MCP server is ready"),
            ("mcp_server_needs_auth",         f(&self.mcp_server_needs_auth), "1 while the MCP server waits for OAuth credentials (mcp-chat auth login)"),
            ("mcp_server_restarts",           f(&self.mcp_server_restarts),   "Restarts of the MCP server since start-up"),
            ("sessions_stored",               f(&self.sessions_stored),       "Stored sessions (where the store can count them cheaply)"),
            ("key_turns",                     f(&self.key_turns),             "Chat turns by named API key ([[api_keys]] name)"),
        ]
    }

    /// Every family in `format`.
    pub fn render(&self, format: super::exposition::Format) -> String {
        let mut out = String::new();
        let encoded = match format {
            super::exposition::Format::OpenMetrics => encode(&mut out, &self.registry),
            super::exposition::Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        if encoded.is_err() {
            out.clear();
        }
        out
    }

    /// Sets an MCP server's state gauges from its status.
    pub fn set_server(&self, server: &str, up: bool, needs_auth: bool, restarts: u32) {
        let labels = ServerLabels {
            server: server.to_string(),
        };
        self.mcp_server_up.get_or_create(&labels).set(i64::from(up));
        self.mcp_server_needs_auth
            .get_or_create(&labels)
            .set(i64::from(needs_auth));
        let counter = self.mcp_server_restarts.get_or_create(&labels);
        let seen = counter.get();
        if u64::from(restarts) > seen {
            counter.inc_by(u64::from(restarts) - seen);
        }
    }
}

/// Every way an upstream call can end, as the `outcome` label of `upstream_requests`.
pub const UPSTREAM_OUTCOMES: [&str; 9] = [
    "ok",
    "connect_error",
    "timeout",
    "client_error",
    "server_error",
    "bad_response",
    "stream_error",
    "cancelled",
    "error",
];

/// One model's upstream series, resolved once when the model table is built so that a
/// call records into them without hashing labels or allocating. Every outcome's counter
/// exists from the start (at 0), as Prometheus recommends for known label values.
#[derive(Debug, Clone)]
pub struct ModelMetrics {
    pub duration: Histogram,
    pub first_token: Histogram,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    outcomes: [Counter; UPSTREAM_OUTCOMES.len()],
}

impl ModelMetrics {
    pub fn new(model: &str) -> Self {
        let m = metrics();
        let model: Arc<str> = Arc::from(model);
        let by_model = ModelLabels {
            model: model.clone(),
        };
        let tokens = |direction| {
            m.tokens.get_or_create_owned(&TokenLabels {
                model: model.clone(),
                direction,
            })
        };
        Self {
            duration: m.upstream_duration.get_or_create_owned(&by_model),
            first_token: m.upstream_first_token.get_or_create_owned(&by_model),
            prompt_tokens: tokens("prompt"),
            completion_tokens: tokens("completion"),
            outcomes: UPSTREAM_OUTCOMES.map(|outcome| {
                m.upstream_requests.get_or_create_owned(&UpstreamLabels {
                    model: model.clone(),
                    outcome,
                })
            }),
        }
    }

    /// Counts one call ending with `outcome` (one of [`UPSTREAM_OUTCOMES`]; anything else
    /// counts as `error`).
    pub fn count(&self, outcome: &str) {
        let i = UPSTREAM_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(UPSTREAM_OUTCOMES.len() - 1);
        self.outcomes[i].inc();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Increments a gauge now and decrements it when dropped.
pub struct GaugeGuard(&'static Gauge);

impl GaugeGuard {
    pub fn new(gauge: &'static Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_and_the_handles_line_up() {
        for (name, family, _) in metrics().families() {
            let latency = name.ends_with("_duration") || name.ends_with("_first_token");
            assert_eq!(
                family.metric_type() == MetricType::Histogram,
                latency,
                "{name} is registered with the handle of another family"
            );
        }
    }

    #[test]
    fn renders_every_family_with_the_prefix() {
        let m = metrics();
        m.tokens
            .get_or_create(&TokenLabels {
                model: "render-test".into(),
                direction: "prompt",
            })
            .inc_by(3);
        m.set_server("render-test", true, false, 2);
        m.set_server("render-test", true, false, 2);
        m.http_duration
            .get_or_create(&RouteLabels {
                route: "/render-test",
                method: "GET",
            })
            .observe(0.01);
        let text = m.render(super::super::exposition::Format::OpenMetrics);
        assert!(
            text.contains("mcp_chat_tokens_total{model=\"render-test\",direction=\"prompt\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("mcp_chat_mcp_server_restarts_total{server=\"render-test\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mcp_chat_http_request_duration_seconds histogram"),
            "{text}"
        );
    }
}
