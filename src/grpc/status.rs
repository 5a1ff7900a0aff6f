//! The one mapping from the core's errors to `tonic::Status`: the gRPC code, a message a
//! person can act on, and `google.rpc` details — `BadRequest` field violations for invalid
//! arguments, `RetryInfo` where a retry makes sense, and `ErrorInfo` whose `reason` is the
//! machine-readable code the HTTP gateway shows as OpenAI's `error.code`.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    error::CoreError,
    llm::LlmError,
    pb::status::{DOMAIN, status},
    sessions::SessionError,
};

impl From<CoreError> for Status {
    fn from(error: CoreError) -> Status {
        let message = error.to_string();
        match error {
            CoreError::InvalidArgument { field, reason } => {
                let mut details = ErrorDetails::with_bad_request_violation(field, reason);
                details.set_error_info("invalid_request", DOMAIN, HashMap::new());
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            CoreError::ModelNotFound(_) => status(Code::NotFound, "model_not_found", message, None),
            CoreError::NotConfigured(_) => {
                status(Code::FailedPrecondition, "not_configured", message, None)
            }
            CoreError::Upstream(e) => upstream(e),
            CoreError::SessionNotFound(_) => {
                status(Code::NotFound, "session_not_found", message, None)
            }
            CoreError::Session(e) => session(e),
            CoreError::Cancelled => status(Code::Cancelled, "cancelled", message, None),
            CoreError::DeadlineExceeded => {
                status(Code::DeadlineExceeded, "deadline_exceeded", message, None)
            }
            CoreError::Unavailable(_) => status(
                Code::Unavailable,
                "unavailable",
                message,
                Some(Duration::from_secs(1)),
            ),
            CoreError::PendingNotFound(_) => {
                status(Code::NotFound, "pending_not_found", message, None)
            }
            CoreError::ResponseNotFound(_) => {
                status(Code::NotFound, "response_not_found", message, None)
            }
            CoreError::AlreadyAnswered(_) => {
                status(Code::AlreadyExists, "already_answered", message, None)
            }
        }
    }
}

/// Session store failures: a busy session is ABORTED (HTTP 409) with a retry delay.
fn session(error: SessionError) -> Status {
    let message = error.to_string();
    let retry = Some(Duration::from_secs(1));
    match error {
        SessionError::InvalidId { .. } => {
            let mut details =
                ErrorDetails::with_bad_request_violation("session_id", message.clone());
            details.set_error_info("invalid_request", DOMAIN, HashMap::new());
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        SessionError::Busy { .. } => status(Code::Aborted, "session_busy", message, retry),
        SessionError::LockLost { .. } => status(Code::Aborted, "session_lock_lost", message, retry),
        SessionError::UnsupportedUrl { .. }
        | SessionError::Open { .. }
        | SessionError::Backend(_) => status(
            Code::Unavailable,
            "session_store_unavailable",
            message,
            retry,
        ),
        SessionError::Corrupt { .. } => status(Code::DataLoss, "session_corrupt", message, None),
    }
}

/// Upstream failures: a 4xx keeps its class and message, except the upstream refusing this
/// service's own credentials (401, 403), which is the operator's to fix, never the caller's
/// auth error: UNAVAILABLE (HTTP 502) naming the setting; 5xx, unreadable answers and broken
/// streams are a bad gateway; timeouts are a gateway timeout.
fn upstream(error: LlmError) -> Status {
    let message = error.to_string();
    match error {
        LlmError::Status {
            status: code @ (401 | 403),
            ..
        } => {
            let reason = if code == 401 {
                "upstream_unauthorized"
            } else {
                "upstream_forbidden"
            };
            let message = format!(
                "the upstream LLM refused this service's credentials (HTTP {code}); the operator must fix the upstream key (OPENAI_API_KEY, or api_key / api_key_env of the model's [[models]] entry): {message}"
            );
            status(Code::Unavailable, reason, message, None)
        }
        LlmError::Status {
            status: code @ 400..=499,
            retry_after,
            code: upstream_code,
            param,
            ..
        } => {
            let (grpc, reason) = match code {
                404 => (Code::NotFound, "upstream_not_found"),
                408 => (Code::DeadlineExceeded, "gateway_timeout"),
                409 => (Code::Aborted, "upstream_conflict"),
                413 => (Code::InvalidArgument, "upstream_request_too_large"),
                429 => (Code::ResourceExhausted, "rate_limit_exceeded"),
                _ => (Code::InvalidArgument, "upstream_invalid_request"),
            };
            let reason = upstream_code
                .as_deref()
                .filter(|c| is_code(c))
                .unwrap_or(reason);
            let retry = if code == 429 {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            } else {
                None
            };
            match param {
                // The parameter the upstream named goes on as a field violation (the
                // HTTP gateway shows it as `error.param`).
                Some(param) => {
                    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new());
                    details.add_bad_request_violation(param, message.clone());
                    if retry.is_some() {
                        details.set_retry_info(retry);
                    }
                    Status::with_error_details(grpc, message, details)
                }
                None => status(grpc, reason, message, retry),
            }
        }
        LlmError::Status { retry_after, .. } => status(
            Code::Unavailable,
            "bad_gateway",
            message,
            Some(retry_after.unwrap_or(Duration::from_secs(1))),
        ),
        LlmError::Connect { .. } => status(
            Code::Unavailable,
            "bad_gateway",
            message,
            Some(Duration::from_secs(1)),
        ),
        LlmError::BadResponse(_) | LlmError::Stream(_) => {
            status(Code::Unavailable, "bad_gateway", message, None)
        }
        LlmError::Timeout { .. } => {
            status(Code::DeadlineExceeded, "gateway_timeout", message, None)
        }
    }
}

/// An upstream error code worth passing on (`[a-z_]`, short).
fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &Status) -> String {
        s.get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default()
    }

    #[test]
    fn invalid_argument_carries_the_field() {
        let s = Status::from(CoreError::InvalidArgument {
            field: "messages".into(),
            reason: "must not be empty".into(),
        });
        assert_eq!(s.code(), Code::InvalidArgument);
        let bad = s.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "messages");
        assert_eq!(bad.field_violations[0].description, "must not be empty");
        assert_eq!(reason(&s), "invalid_request");
    }

    #[test]
    fn upstream_errors_map_by_class() {
        let st = |status: u16| LlmError::Status {
            status,
            message: "m".into(),
            code: None,
            param: None,
            retry_after: None,
        };
        let cases = [
            (
                CoreError::Upstream(st(400)),
                Code::InvalidArgument,
                "upstream_invalid_request",
            ),
            (
                CoreError::Upstream(st(401)),
                Code::Unavailable,
                "upstream_unauthorized",
            ),
            (
                CoreError::Upstream(st(403)),
                Code::Unavailable,
                "upstream_forbidden",
            ),
            (
                CoreError::Upstream(st(429)),
                Code::ResourceExhausted,
                "rate_limit_exceeded",
            ),
            (
                CoreError::Upstream(st(503)),
                Code::Unavailable,
                "bad_gateway",
            ),
            (
                CoreError::Upstream(LlmError::BadResponse("x".into())),
                Code::Unavailable,
                "bad_gateway",
            ),
            (
                CoreError::Upstream(LlmError::Timeout {
                    phase: "idle",
                    after: Duration::from_secs(1),
                }),
                Code::DeadlineExceeded,
                "gateway_timeout",
            ),
            (
                CoreError::ModelNotFound("x".into()),
                Code::NotFound,
                "model_not_found",
            ),
            (
                CoreError::NotConfigured("x".into()),
                Code::FailedPrecondition,
                "not_configured",
            ),
            (CoreError::Cancelled, Code::Cancelled, "cancelled"),
            (
                CoreError::DeadlineExceeded,
                Code::DeadlineExceeded,
                "deadline_exceeded",
            ),
        ];
        for (error, code, why) in cases {
            let s = Status::from(error);
            assert_eq!((s.code(), reason(&s).as_str()), (code, why), "{s:?}");
        }
        let s = Status::from(CoreError::Upstream(LlmError::Status {
            status: 429,
            message: "slow down".into(),
            code: None,
            param: None,
            retry_after: Some(Duration::from_secs(7)),
        }));
        assert_eq!(
            s.get_details_retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(7))
        );
        assert!(s.message().contains("slow down"));
        assert!(s.get_details_bad_request().is_none());
    }

    #[test]
    fn the_upstream_param_is_kept_as_a_field_violation() {
        let s = Status::from(CoreError::Upstream(LlmError::Status {
            status: 400,
            message: "bad value".into(),
            code: Some("invalid_value".into()),
            param: Some("reasoning_effort".into()),
            retry_after: None,
        }));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(reason(&s), "invalid_value");
        let bad = s.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "reasoning_effort");
    }
}
