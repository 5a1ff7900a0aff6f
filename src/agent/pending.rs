//! What waits on the caller: a request for input an MCP server made during a streamed turn
//! (an elicitation), kept as a [`PendingRecord`] in the session store so the answer may
//! reach any replica that shares the store.
//!
//! The turn that waits polls the store for the answer (and is woken at once when the answer
//! arrives at its own replica); an unanswered request expires after `agent.approval_timeout`
//! and counts as declined. The answer is checked against the schema the server asked with
//! before it is stored, and can be given once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    error::CoreError,
    mcp::asks::{self, ElicitAnswer, Elicitation},
    sessions::{PendingRecord, SessionStore},
};

/// How often a waiting turn looks for an answer given to another replica.
const POLL: Duration = Duration::from_millis(200);

/// The kind of a pending record that is an elicitation.
pub const ELICITATION: &str = "elicitation";

/// What is stored of an elicitation (the record's body).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ElicitationBody {
    pub server: String,
    pub message: String,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub url: Option<String>,
}

/// The caller's answer, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ElicitationReply {
    Accept {
        #[serde(default)]
        content: Map<String, Value>,
    },
    Decline,
    Cancel,
}

/// An elicitation the caller has been told about.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenElicitation {
    pub id: String,
    pub body: ElicitationBody,
    /// Unix milliseconds after which it counts as declined.
    pub expires_at_ms: i64,
}

/// The pending requests of this process: the store, and wake-ups for local answers.
pub struct Pending {
    store: Arc<dyn SessionStore>,
    timeout: Duration,
    local: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Pending {
    pub fn new(store: Arc<dyn SessionStore>, timeout: Duration) -> Self {
        Self {
            store,
            timeout,
            local: Mutex::default(),
        }
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a new elicitation of `session` (if any) and returns it, to be announced.
    pub async fn open_elicitation(
        &self,
        session: Option<&str>,
        request: Elicitation,
    ) -> Result<OpenElicitation, CoreError> {
        let id = format!("elicit_{}", uuid::Uuid::new_v4().simple());
        let body = ElicitationBody {
            server: request.server,
            message: request.message,
            schema: request.schema,
            url: request.url,
        };
        let expires_at_ms = crate::sessions::now_millis()
            .saturating_add(i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX));
        let record = PendingRecord {
            id: id.clone(),
            session: session.map(str::to_string),
            kind: ELICITATION.to_string(),
            body: serde_json::to_string(&body).unwrap_or_default(),
            answer: None,
            expires_at_ms,
        };
        self.store.put_pending(&record).await?;
        self.wakers().insert(id.clone(), Arc::new(Notify::new()));
        Ok(OpenElicitation {
            id,
            body,
            expires_at_ms,
        })
    }

    /// Waits for the answer to `open` until it expires or `cancel` fires; then removes the
    /// record. Expiry, cancellation and an unreadable answer are declines.
    pub async fn wait_elicitation(
        &self,
        open: &OpenElicitation,
        cancel: &CancellationToken,
    ) -> ElicitAnswer {
        let waker = self.wakers().get(&open.id).cloned();
        let answer = loop {
            match self.store.pending(&open.id).await {
                Ok(Some(PendingRecord {
                    answer: Some(answer),
                    ..
                })) => break Some(answer),
                Ok(Some(_)) => {}
                Ok(None) => break None,
                Err(e) => {
                    tracing::warn!(id = %open.id, "reading a pending elicitation failed: {e}")
                }
            }
            let left = open.expires_at_ms - crate::sessions::now_millis();
            if left <= 0 {
                break None;
            }
            let nap = POLL.min(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
            tokio::select! {
                () = cancel.cancelled() => break None,
                () = tokio::time::sleep(nap) => {}
                () = async {
                    match &waker {
                        Some(w) => w.notified().await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        };
        self.wakers().remove(&open.id);
        if let Err(e) = self.store.remove_pending(&open.id).await {
            tracing::warn!(id = %open.id, "removing a pending elicitation failed: {e}");
        }
        match answer.map(|a| serde_json::from_str::<ElicitationReply>(&a)) {
            Some(Ok(ElicitationReply::Accept { content })) => ElicitAnswer::Accept(content),
            Some(Ok(ElicitationReply::Cancel)) => ElicitAnswer::Cancel,
            Some(Ok(ElicitationReply::Decline)) => {
                ElicitAnswer::Decline("declined by the caller".into())
            }
            Some(Err(e)) => ElicitAnswer::Decline(format!("the stored answer is unreadable: {e}")),
            None if cancel.is_cancelled() => ElicitAnswer::Cancel,
            None => ElicitAnswer::Decline("not answered in time".into()),
        }
    }

    /// Stores the caller's answer to elicitation `id` (any replica). Refused: an unknown or
    /// expired id (not found), an answer already given, and content the requested schema
    /// does not accept (naming the field).
    pub async fn answer_elicitation(
        &self,
        id: &str,
        reply: ElicitationReply,
    ) -> Result<(), CoreError> {
        let not_found = || CoreError::PendingNotFound(id.to_string());
        let record = self.store.pending(id).await?.ok_or_else(not_found)?;
        if record.kind != ELICITATION {
            return Err(not_found());
        }
        if record.answer.is_some() {
            return Err(CoreError::AlreadyAnswered(id.to_string()));
        }
        let body: ElicitationBody = serde_json::from_str(&record.body).map_err(|e| {
            CoreError::Unavailable(format!("the stored elicitation is unreadable: {e}"))
        })?;
        let reply = match reply {
            ElicitationReply::Accept { content } => {
                if let Some(schema) = &body.schema {
                    asks::validate(schema, &content).map_err(|reason| {
                        CoreError::InvalidArgument {
                            field: "content".into(),
                            reason,
                        }
                    })?;
                }
                ElicitationReply::Accept { content }
            }
            other => other,
        };
        let text = serde_json::to_string(&reply).unwrap_or_default();
        if !self.store.answer_pending(id, &text).await? {
            return Err(CoreError::AlreadyAnswered(id.to_string()));
        }
        if let Some(waker) = self.wakers().get(id) {
            waker.notify_one();
        }
        Ok(())
    }
}
