//! Telemetry: logs, traces and metrics.
//!
//! - Logs: a `tracing` subscriber with the filter from `RUST_LOG` (else `log.level`) and
//!   text or JSON lines (`log.format`), on stderr so stdout stays for command output.
//!   Targets that would log OAuth secrets at debug level are capped at `info`
//!   ([`guard_secrets`]).
//! - Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//!   set, spans go to an OTLP collector through `tracing-opentelemetry`; the standard
//!   `OTEL_*` variables apply (service name, protocol `grpc` or `http/protobuf`, headers,
//!   sampler). W3C trace context is taken from incoming requests and sent upstream
//!   ([`propagation`]).
//! - Metrics: Prometheus families served at `GET /metrics` ([`metrics`]).

pub mod exposition;
pub mod fields;
pub mod metrics;
pub mod propagation;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: fields only the trace exporter reads (a span's `otel.name`)
/// are worth computing on the request path only then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter (the last step of shutdown).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "could not flush the trace exporter");
        }
    }
}

fn filter(log: &LogConfig) -> EnvFilter {
    guard_secrets(
        std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse::<EnvFilter>().ok())
            .or_else(|| log.level.parse::<EnvFilter>().ok())
            .unwrap_or_else(|| EnvFilter::new("info")),
    )
}

/// Targets whose debug output carries OAuth secrets: rmcp's OAuth client logs the
/// authorization code it exchanges at debug level. They are held at `info` whatever
/// `RUST_LOG` says (a directive for the same target in `RUST_LOG` is overridden).
const SECRET_BEARING_TARGETS: &[&str] = &["rmcp::transport::auth"];

/// `filter` with every [`SECRET_BEARING_TARGETS`] capped at `info`, so no level of
/// logging prints a token or an authorization code.
pub fn guard_secrets(filter: EnvFilter) -> EnvFilter {
    SECRET_BEARING_TARGETS
        .iter()
        .fold(filter, |filter, target| {
            match format!("{target}=info").parse() {
                Ok(directive) => filter.add_directive(directive),
                Err(_) => filter,
            }
        })
}

/// Installs logging only (command-line tools and tests).
pub fn init(log: &LogConfig) {
    let _ = tracing_subscriber::registry()
        .with(fmt_layer(log))
        .with(filter(log))
        .try_init();
}

fn fmt_layer<S>(log: &LogConfig) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match log.format {
        // Colours only on a terminal: formatting them costs on every span of every request.
        // Span fields are formatted as each span opens, on every request: see `fields`.
        LogFormat::Text => fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(fields::PlainFields)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    }
}

/// Installs logging and, when an OTLP endpoint is configured, trace export. Call it inside
/// the tokio runtime (the gRPC exporter needs one).
pub fn init_service(log: &LogConfig) -> Telemetry {
    propagation::install();
    let provider = otlp_provider();
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("mcp-chat"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.is_span()))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt_layer(log))
        .with(otel)
        .with(filter(log))
        .try_init();
    if let Some(provider) = &provider {
        EXPORTING.store(true, Ordering::Relaxed);
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::info!("exporting traces over OTLP");
    }
    Telemetry { provider }
}

fn otlp_provider() -> Option<SdkTracerProvider> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return None;
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    let exporter = match protocol.trim() {
        "grpc" => {
            use opentelemetry_otlp::WithTonicConfig as _;
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_metadata(Default::default())
                .build()
        }
        _ => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build(),
    };
    match exporter {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(
                            std::env::var("OTEL_SERVICE_NAME")
                                .unwrap_or_else(|_| "mcp-chat".into()),
                        )
                        .build(),
                )
                .build(),
        ),
        Err(e) => {
            eprintln!("mcp-chat: OTLP trace export is off: {e}");
            None
        }
    }
}
