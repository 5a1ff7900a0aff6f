//! Which exposition format `GET /metrics` answers in: OpenMetrics 1.0 text for scrapers that
//! ask for it, the Prometheus text format 0.0.4 for the rest, negotiated on `Accept` as the
//! official client libraries do.

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: the acceptable types by descending `q` (equal
    /// weights in the client's order), the first one served wins; no header, or none of
    /// ours, is the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut offers: Vec<(f32, Format)> = accept
            .split(',')
            .filter_map(|entry| {
                let mut parts = entry.split(';').map(str::trim);
                let media = parts.next()?.to_ascii_lowercase();
                let q = parts
                    .filter_map(|p| p.strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                let format = match media.as_str() {
                    "application/openmetrics-text" => Format::OpenMetrics,
                    "text/plain" | "text/*" | "*/*" => Format::Text,
                    _ => return None,
                };
                (q > 0.0).then_some((q, format))
            })
            .collect();
        offers.sort_by(|a, b| b.0.total_cmp(&a.0));
        offers.first().map_or(Format::Text, |(_, f)| *f)
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn accept_headers_choose_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
            application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        for (accept, want) in [
            (None, Format::Text),
            (Some("text/plain;version=0.0.4"), Format::Text),
            (
                Some("text/plain; version=0.0.4; charset=utf-8"),
                Format::Text,
            ),
            (Some("*/*"), Format::Text),
            (Some("application/json"), Format::Text),
            (Some(prometheus), Format::OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some("text/plain;q=0.9, application/openmetrics-text;q=0.1"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;q=0, text/plain"),
                Format::Text,
            ),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }
}
