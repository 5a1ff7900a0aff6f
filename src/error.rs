//! The core error enum: what can go wrong below the edges, in terms a person can act on.
//! It knows no transport: `grpc/status.rs` maps it to `tonic::Status` (once), and the HTTP
//! gateway maps gRPC codes to HTTP (once, in `http/error.rs`).

use crate::{llm::LlmError, sessions::SessionError};

/// An error of the agent core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is malformed; `field` names the offending part.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// No model with this id is configured.
    #[error("the model {0:?} does not exist; list the models with GET /v1/models or ListModels")]
    ModelNotFound(String),
    /// The service lacks a setting this request needs; the message names it.
    #[error("{0}")]
    NotConfigured(String),
    /// The upstream LLM failed.
    #[error("{0}")]
    Upstream(#[from] LlmError),
    /// No stored session has this id.
    #[error("the session {0:?} does not exist (or has expired)")]
    SessionNotFound(String),
    /// The session store failed or refused (busy, lock lost, backend down).
    #[error("{0}")]
    Session(#[from] SessionError),
    /// The caller went away or cancelled.
    #[error("the request was cancelled")]
    Cancelled,
    /// The caller's deadline passed before the turn finished.
    #[error("the request's deadline passed before the answer was complete")]
    DeadlineExceeded,
    /// The service is shutting down or not started.
    #[error("{0}")]
    Unavailable(String),
    /// No request waiting on the caller has this id (or it has expired).
    #[error(
        "there is no pending request {0:?} (it may have expired or been answered and finished)"
    )]
    PendingNotFound(String),
    /// No stored response has this id for the caller (expired, deleted, never stored, or
    /// another key's: the same answer, so ids leak nothing).
    #[error("the response {0:?} does not exist (or has expired)")]
    ResponseNotFound(String),
    /// The request waiting on the caller has its answer already.
    #[error("the pending request {0:?} has been answered already")]
    AlreadyAnswered(String),
}
