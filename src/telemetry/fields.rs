//! How the text log format writes fields: `name=value` pairs, as tracing-subscriber's
//! default formatter does, without the parts that cost on every request.
//!
//! The fmt layer formats a span's fields when the span is created, whether or not an event
//! is ever logged inside it, so this runs several times per request. Against the default:
//! no ANSI styling machinery (colours are a terminal nicety; the service logs to files and
//! collectors), and `otel.*` fields are skipped (they steer the OpenTelemetry layer and say
//! nothing a log reader needs). Strings are written quoted with escapes, as the default
//! does; an event's `message` is written bare, with ESC characters escaped so a logged
//! value cannot drive the reader's terminal.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FormatFields, FormattedFields, format::Writer},
};

/// The text format's field formatter (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

thread_local! {
    /// Where a span's or an event's fields are written first: the fmt layer's destination
    /// is a new `String` each time, which small writes would grow (and reallocate) several
    /// times; written at once, it is allocated once, at its size.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Scratch text longer than this is not kept for the next span.
const SCRATCH_KEEP: usize = 4096;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        SCRATCH.with(|scratch| {
            // Formatting that comes back here while the scratch is in use (a field's `Debug`
            // that formats under another subscriber; tracing itself drops an event emitted
            // while it formats) writes straight through.
            let Ok(mut text) = scratch.try_borrow_mut() else {
                return record(writer, false, &fields);
            };
            text.clear();
            record(Writer::new(&mut *text), false, &fields)?;
            let written = writer.write_str(&text);
            if text.capacity() > SCRATCH_KEEP {
                *text = String::new();
            }
            written
        })
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let separate = !current.fields.is_empty();
        record(current.as_writer(), separate, fields)
    }
}

fn record<R: RecordFields>(writer: Writer<'_>, separate: bool, fields: R) -> fmt::Result {
    let mut visitor = PlainVisitor {
        writer,
        separate,
        result: Ok(()),
    };
    fields.record(&mut visitor);
    visitor.result
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    /// Whether a space goes before the next field.
    separate: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Starts a field, or returns `false` when it is not written at all.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("otel.") || name.starts_with("log.") {
            return false;
        }
        if self.separate {
            self.result = self.writer.write_char(' ');
        }
        self.separate = true;
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .result
                .and_then(|()| self.writer.write_str(name))
                .and_then(|()| self.writer.write_char('='));
        }
        self.result.is_ok()
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        self.result = if field.name() == "message" {
            write_escaped(&mut self.writer, value)
        } else {
            write!(self.writer, "{value:?}")
        };
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.start(field) {
            return;
        }
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(text, ": {s}");
            source = s.source();
        }
        self.result = write_escaped(&mut self.writer, &text);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.start(field) {
            return;
        }
        self.result = if field.name() == "message" {
            // `message` arrives as format arguments: escape what they produce.
            write!(Escaping(&mut self.writer), "{value:?}")
        } else {
            write!(self.writer, "{value:?}")
        };
    }
}

fn write_escaped(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    Escaping(writer).write_str(text)
}

/// Writes through, with ESC written as `\x1b`.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find('\x1b') {
            self.0.write_str(&rest[..i])?;
            self.0.write_str("\\x1b")?;
            rest = &rest[i + 1..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::{fmt, prelude::*};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .with_ansi(false)
                .without_time()
                .fmt_fields(PlainFields)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, f);
        let out = buffer.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn spans_and_events_read_as_name_value_pairs_without_otel_fields() {
        let out = logged(|| {
            let span = tracing::info_span!(
                "http",
                otel.name = "POST /chat",
                otel.kind = "server",
                route = "/chat",
                request_id = %"abc",
                status = tracing::field::Empty,
            );
            span.record("status", 200_u64);
            let _g = span.enter();
            tracing::info!(attempt = 2, retry = true, "upstream answered {}", 503);
        });
        assert!(
            out.contains(r#"http{route="/chat" request_id=abc status=200}"#),
            "{out}"
        );
        assert!(
            out.contains("upstream answered 503 attempt=2 retry=true"),
            "{out}"
        );
        assert!(!out.contains("otel"), "{out}");
    }

    #[test]
    fn a_span_with_only_otel_fields_then_a_recorded_one_has_no_stray_space() {
        let out = logged(|| {
            let span = tracing::info_span!(
                "llm.call",
                otel.kind = "client",
                status = tracing::field::Empty
            );
            span.record("status", "ok");
            let _g = span.enter();
            tracing::info!("done");
        });
        assert!(out.contains(r#"llm.call{status="ok"}"#), "{out}");
    }

    #[test]
    fn a_field_longer_than_the_scratch_keeps_and_the_next_span_are_written_whole() {
        let long = "x".repeat(SCRATCH_KEEP + 10);
        let out = logged(|| {
            let span = tracing::info_span!("outer", long = %long, n = 3_u64);
            let _g = span.enter();
            tracing::info!("inside");
            let next = tracing::info_span!("next", short = "s");
            let _g = next.enter();
            tracing::info!("after");
        });
        assert!(
            out.contains(&format!("outer{{long={long} n=3}}: ")),
            "{out}"
        );
        assert!(out.contains(r#"next{short="s"}: "#), "{out}");
    }

    #[test]
    fn escape_characters_in_messages_and_errors_are_escaped() {
        let out = logged(|| {
            let error = std::io::Error::other("bad\x1b[31m");
            tracing::warn!(error = &error as &dyn std::error::Error, "x\x1b[2J {}", "y");
            tracing::warn!(value = "q\x1b", "plain");
        });
        assert!(!out.contains('\x1b'), "{out:?}");
        assert!(out.contains(r"x\x1b[2J y"), "{out}");
        assert!(out.contains(r"error=bad\x1b[31m"), "{out}");
        assert!(out.contains(r#"value="q\u{1b}""#), "{out}");
    }
}
