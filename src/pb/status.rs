//! The error shape of the API: a `tonic::Status` whose `google.rpc.ErrorInfo` carries the
//! machine-readable `reason` (the HTTP gateway shows it as OpenAI's `error.code`) in this
//! service's [`DOMAIN`], and a `RetryInfo` where a retry makes sense. Used by `grpc/status.rs`
//! (the core's error table), `grpc/` (auth) and `inflight.rs` (load shedding).

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error this service raises.
pub const DOMAIN: &str = "mcp-chat";

/// Builds a status with an `ErrorInfo` reason (and optionally a retry delay).
pub fn status(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    retry: Option<Duration>,
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new());
    if retry.is_some() {
        details.set_retry_info(retry);
    }
    Status::with_error_details(code, message, details)
}
