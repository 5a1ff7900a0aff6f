//! When and how long to wait before retrying an upstream call: which answers are retried,
//! `Retry-After` / `retry-after-ms` / `x-should-retry`, and exponential backoff with full jitter.
//! Pure decisions; the sleeping is `openai.rs`'s.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::config::UpstreamConfig;

/// How an upstream call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Upper bound of the first backoff; each retry doubles it.
    pub initial_backoff: Duration,
    /// Largest backoff bound.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    pub fn from_config(config: &UpstreamConfig) -> Self {
        Self {
            max_retries: config.max_retries,
            ..Self::default()
        }
    }

    /// The bound of the backoff before retry number `retry` (0-based): `initial · 2^retry`,
    /// at most `max_backoff`.
    pub fn backoff_bound(&self, retry: u32) -> Duration {
        self.initial_backoff
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max_backoff)
    }

    /// The wait before retry number `retry`: the upstream's `Retry-After` (capped) when it
    /// gave one, else a uniformly random time up to the backoff bound (full jitter).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(after) => after.min(self.max_retry_after),
            None => {
                let bound = self.backoff_bound(retry).as_micros();
                let bound = u64::try_from(bound).unwrap_or(u64::MAX);
                Duration::from_micros(rand::random_range(0..=bound))
            }
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Statuses worth another try: 408, 409 (lock timeout), 429 and every 5xx.
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429 | 500..=599)
}

/// Whether an error answer is retried: `x-should-retry: true/false` wins, else the status.
pub fn should_retry(status: u16, headers: &HeaderMap) -> bool {
    match headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        _ => status_is_retryable(status),
    }
}

/// The wait the upstream asked for: `retry-after-ms` (milliseconds), else `Retry-After` as
/// (possibly fractional) seconds or as an HTTP date (relative to `now`; past dates are zero).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 409, 429, 500, 502, 503, 504, 599] {
            assert!(status_is_retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!status_is_retryable(s), "{s}");
        }
    }

    #[test]
    fn x_should_retry_overrides_the_status() {
        assert!(should_retry(400, &headers(&[("x-should-retry", "true")])));
        assert!(!should_retry(503, &headers(&[("x-should-retry", "false")])));
        assert!(should_retry(503, &headers(&[("x-should-retry", "maybe")])));
        assert!(!should_retry(400, &HeaderMap::new()));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |pairs: &[(&'static str, &str)]| retry_after(&headers(pairs), now);
        assert_eq!(at(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            at(&[("retry-after", "0.5")]),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            at(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(at(&[("retry-after", &later)]), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(at(&[("retry-after", &past)]), Some(Duration::ZERO));
        assert_eq!(at(&[("retry-after", "soon")]), None);
        assert_eq!(at(&[("retry-after", "-1")]), None);
        assert_eq!(at(&[]), None);
    }

    #[test]
    fn delay_honours_and_caps_retry_after() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_bound(0), Duration::from_millis(500));
        assert_eq!(p.backoff_bound(1), Duration::from_secs(1));
        assert_eq!(p.backoff_bound(3), Duration::from_secs(4));
        assert_eq!(p.backoff_bound(10), Duration::from_secs(8));
        assert_eq!(p.backoff_bound(u32::MAX), Duration::from_secs(8));
        for retry in 0..5 {
            assert!(p.delay(retry, None) <= p.backoff_bound(retry));
        }
    }
}
