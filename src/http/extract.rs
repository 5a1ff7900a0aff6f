//! Request-body extraction whose every failure is an OpenAI-shaped error: too large (413),
//! not in whole within `server.body_read_timeout` (408), not JSON or nested too deep (400),
//! or the wrong shape (400 naming the field).

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, rejection::BytesRejection},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body parsed into `T`.
pub struct JsonBody<T>(pub T);

/// How long reading a whole body may take (set by the router from the config).
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyReadTimeout>()
            .map_or(crate::config::DEFAULT_BODY_READ_TIMEOUT, |t| t.0);
        let bytes = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| body_timeout(limit))?
            .map_err(body_error)?;
        parse(&bytes).map(JsonBody)
    }
}

fn body_timeout(limit: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request_error",
        Some("request_timeout"),
        format!(
            "the request body did not arrive within {} s (server.body_read_timeout)",
            limit.as_secs_f64()
        ),
    )
}

/// Parses JSON text, naming the path of a misplaced or mistyped field. A body that parses
/// takes the plain path; only a failing one is parsed again with path tracking, which
/// costs on every field. The plain path checks UTF-8 once for the whole body and parses
/// the text (`from_slice` would check each string on its own, a call per string).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            None,
            "the request body is empty: send a JSON object",
        ));
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(value) = serde_json::from_str(text)
    {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => Ok(value),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!("the request body is not valid JSON: {inner}")
            } else {
                format!("invalid request body: {inner}")
            };
            let param = (path != "." && !path.is_empty()).then_some(path);
            Err(ApiError::invalid(param, message))
        }
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            "the request body is larger than the limit (server.max_body_bytes)",
        )
    } else {
        ApiError::new(
            status,
            "invalid_request_error",
            None,
            format!("cannot read the request body: {rejection}"),
        )
    }
}
