//! The stored form of a response: a record of kind `response` beside the sessions (the
//! store's records, like pending approvals), keyed by the response id, expiring with the
//! sessions' ttl. It holds the response object, its input items, the session of its
//! conversation and how many messages that session held after it, the key that made it
//! and the MCP servers whose tools were listed so far in the conversation.

use serde::{Deserialize, Serialize};

use super::{InputEntry, ResponseObject};
use crate::{
    error::CoreError,
    sessions::{PendingRecord, SessionError, SessionId, SessionStore},
};

/// The kind of a record that is a stored response.
pub const RESPONSE: &str = "response";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    pub object: ResponseObject,
    pub input: Vec<InputEntry>,
    pub session: String,
    pub len: usize,
    pub key: Option<String>,
    pub listed: Vec<String>,
}

/// A stored response as a continuation reads it.
pub(super) struct Loaded {
    pub object: ResponseObject,
    pub input: Vec<InputEntry>,
    pub session: SessionId,
    pub len: usize,
    pub listed: Vec<String>,
}

pub(super) async fn save(
    store: &dyn SessionStore,
    stored: &Stored,
    ttl: std::time::Duration,
) -> Result<(), CoreError> {
    let body = serde_json::to_string(stored).map_err(|e| SessionError::Corrupt {
        id: stored.object.id.clone(),
        message: e.to_string(),
    })?;
    store
        .put_pending(&PendingRecord {
            id: stored.object.id.clone(),
            session: Some(stored.session.clone()),
            kind: RESPONSE.to_string(),
            body,
            answer: None,
            expires_at_ms: crate::sessions::now_millis()
                .saturating_add(crate::sessions::millis(ttl)),
        })
        .await?;
    Ok(())
}

/// The stored response `id` when `key` made it; not found otherwise (unknown, expired,
/// deleted, or another key's).
pub(super) async fn load(
    store: &dyn SessionStore,
    id: &str,
    key: Option<&str>,
) -> Result<Loaded, CoreError> {
    let not_found = || CoreError::ResponseNotFound(id.to_string());
    if !id.starts_with("resp_") || id.len() > crate::sessions::MAX_ID_LEN {
        return Err(not_found());
    }
    let record = store.pending(id).await?.ok_or_else(not_found)?;
    if record.kind != RESPONSE {
        return Err(not_found());
    }
    let stored: Stored = serde_json::from_str(&record.body).map_err(|e| SessionError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })?;
    if stored.key.as_deref() != key {
        return Err(not_found());
    }
    let session = SessionId::parse(&stored.session)?;
    Ok(Loaded {
        object: stored.object,
        input: stored.input,
        session,
        len: stored.len,
        listed: stored.listed,
    })
}

/// Bytes as base64 text in the stored JSON.
pub(super) mod base64_bytes {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
