//! The HTTP error envelope: OpenAI's `{"error":{"message","type","param","code"}}` with the
//! right status, for every failure the gateway answers (routes, bodies, gRPC statuses).

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// An error answer in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`…
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    /// `Retry-After` to send, when a retry makes sense.
    pub retry_after: Option<Duration>,
    /// Tells SDKs not to retry (`x-should-retry: false`) a 5xx that a retry cannot fix.
    pub no_retry: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: code.map(String::from),
            retry_after: None,
            no_retry: false,
        }
    }

    /// 400 for a request the gateway could not read; `param` names the part.
    pub fn invalid(param: Option<String>, message: impl Into<String>) -> Self {
        Self {
            param,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                message,
            )
        }
    }

    pub fn not_found_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("not_found"),
            format!("no route for {method} {path}; GET / lists the endpoints"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_allowed"),
            format!("{method} is not allowed on {path}"),
        )
    }

    /// The JSON body alone (also used for SSE error events).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.no_retry {
            response
                .headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

/// The one table from gRPC codes to HTTP statuses and OpenAI error types. The `ErrorInfo`
/// reason refines it (a bad gateway is UNAVAILABLE in gRPC and 502 in HTTP) and becomes
/// `error.code`; a `BadRequest` field becomes `error.param`.
impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        let details = status.get_error_details();
        let reason = details.error_info().map(|i| i.reason.clone());
        let param = details
            .bad_request()
            .and_then(|b| b.field_violations.first())
            .map(|v| v.field.clone());
        let retry_after = details.retry_info().and_then(|r| r.retry_delay);
        // The upstream failed, or refused this service's own credentials: a bad gateway.
        let bad_gateway = matches!(
            reason.as_deref(),
            Some("bad_gateway" | "upstream_unauthorized" | "upstream_forbidden")
        );
        let (http, kind) = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "invalid_request_error"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "invalid_request_error"),
            Code::NotFound => (StatusCode::NOT_FOUND, "invalid_request_error"),
            Code::Aborted | Code::AlreadyExists => (StatusCode::CONFLICT, "invalid_request_error"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            Code::FailedPrecondition => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
            Code::Unavailable if bad_gateway => (StatusCode::BAD_GATEWAY, "server_error"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "server_error"),
            Code::Cancelled => (client_closed(), "invalid_request_error"),
            Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "server_error"),
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            }
        };
        let code = match (status.code(), reason) {
            (Code::Unauthenticated, _) => Some("invalid_api_key".to_string()),
            (_, Some(r)) if r != "invalid_request" => Some(r),
            _ => None,
        };
        // A missing or refused setting is not fixed by retrying.
        let no_retry = status.code() == Code::FailedPrecondition
            || matches!(
                code.as_deref(),
                Some("upstream_unauthorized" | "upstream_forbidden")
            );
        ApiError {
            status: http,
            message: status.message().to_string(),
            kind,
            param,
            code,
            retry_after,
            no_retry,
        }
    }
}

/// nginx's 499: the client closed the request (only ever seen in logs).
fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}
