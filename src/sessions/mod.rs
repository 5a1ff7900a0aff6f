//! Server-side conversation memory: the [`SessionStore`] trait, the [`Session`] it holds,
//! the semantics every backend shares, and [`open`], which picks a backend from a URL.
//!
//! Backends (`sqlite://PATH`, `memory://`, `redis://…`/`rediss://…`) live one per file and
//! pass the same conformance suite. The contract:
//! - A turn is stored atomically by [`SessionStore::append_turn`]: the new user message(s)
//!   and everything the agent produced for them, or nothing. A failed or cancelled turn simply
//!   never calls it. It creates the session if it does not exist.
//! - Two requests on one session are serialised by [`SessionStore::lock`] (across replicas
//!   for Redis); the returned [`SessionLock`] releases on drop and is the proof `append_turn`
//!   needs, so a holder whose lock was lost cannot write ([`SessionError::LockLost`]).
//! - Idle sessions expire after the configured ttl; `load` never returns an expired session.
//! - A [`PendingRecord`] (a request that waits on the caller, such as an elicitation) lives
//!   beside the sessions until it expires or is removed; its answer can be set once
//!   ([`SessionStore::answer_pending`]), from any replica of a shared store.
//!
//! Nothing here knows about the agent, tonic, axum or prost.

mod id;
mod lock;
mod memory;
mod record;
mod redis;
mod sqlite;
mod trim;

#[cfg(test)]
mod conformance;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    config::{SessionsConfig, redacted_url},
    model::Message,
};

pub use id::{MAX_ID_LEN, SessionId};
pub use lock::{LocalLocks, SessionLock};
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::SqliteStore;
pub use trim::{TokenCounter, message_tokens, trim_counted, trim_to_budget};

/// One stored conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    /// The model of the latest turn.
    pub model: String,
    /// Unix seconds of the first turn.
    pub created_at: i64,
    /// Unix seconds of the latest turn.
    pub updated_at: i64,
    /// Every message so far, in order, tool calls and tool results included.
    pub messages: Vec<Message>,
}

/// Why a session operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A client-supplied id is not a valid token.
    #[error(
        "invalid session id {id:?}: {reason}; use 1-{MAX_ID_LEN} characters of A-Z, a-z, 0-9, '_', '-' or '.'"
    )]
    InvalidId { id: String, reason: String },
    /// Another request holds the session's lock and did not release it in time.
    #[error("session {id} is in use by another request (waited {waited:?}); retry later")]
    Busy { id: SessionId, waited: Duration },
    /// The lock expired (or was taken by another holder) before the turn was stored;
    /// nothing was written.
    #[error(
        "the lock on session {id} was lost before the turn was stored (it expired or another request took it); the turn was not saved, retry it"
    )]
    LockLost { id: SessionId },
    /// The store URL is not one this build understands.
    #[error(
        "unsupported session store {url:?}: use sqlite://PATH, memory://, redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
    )]
    UnsupportedUrl { url: String },
    /// The store could not be opened (URL redacted).
    #[error("cannot open the session store {url}: {message}")]
    Open { url: String, message: String },
    /// The backend failed during an operation.
    #[error("session store error: {0}")]
    Backend(String),
    /// A stored session could not be decoded.
    #[error("session {id} is stored in a form this version cannot read: {message}")]
    Corrupt { id: String, message: String },
}

/// One turn to store: the model that answered and the messages, in order.
#[derive(Debug, Clone, Copy)]
pub struct Turn<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
}

/// A request that waits on the caller, stored so any replica can take the answer. The
/// body and the answer are the agent's JSON; the store does not read them.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRecord {
    pub id: String,
    /// The session it belongs to, if any.
    pub session: Option<String>,
    /// What it is (`elicitation`, …), for listing and checks.
    pub kind: String,
    pub body: String,
    /// Set once, by the caller's answer.
    pub answer: Option<String>,
    /// Unix milliseconds; gone afterwards.
    pub expires_at_ms: i64,
}

/// Where conversations live; one per process, shared as `Arc<dyn SessionStore>`.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// The session, or `None` if it does not exist or has expired.
    async fn load(&self, id: &SessionId) -> Result<Option<Session>, SessionError>;

    /// The in-process lock table of an embedded backend (memory, SQLite), which the default
    /// [`Self::lock`] and [`Self::check_lock`] use. A backend with its own locking (Redis)
    /// keeps `None` and overrides both.
    fn local_locks(&self) -> Option<&LocalLocks> {
        None
    }

    /// Waits up to `timeout` for exclusive use of the session (it need not exist yet);
    /// [`SessionError::Busy`] when another request keeps it longer.
    async fn lock(&self, id: &SessionId, timeout: Duration) -> Result<SessionLock, SessionError> {
        match self.local_locks() {
            Some(locks) => locks.lock(id, timeout).await,
            None => Err(no_lock_table()),
        }
    }

    /// Refuses a lock this store did not issue, so nothing is written under it.
    fn check_lock(&self, lock: &SessionLock) -> Result<(), SessionError> {
        match self.local_locks() {
            Some(locks) => lock.check_local(locks.tag()),
            None => Err(no_lock_table()),
        }
    }

    /// Appends one whole turn under `lock`, creating the session (with `model`) if needed,
    /// setting its model and `updated_at`, and refreshing its expiry. All or nothing.
    /// Returns the number of messages the session holds afterwards. The same for every
    /// backend: the lock is checked, then the backend writes ([`Self::write_turn`]).
    async fn append_turn(
        &self,
        lock: &SessionLock,
        model: &str,
        messages: &[Message],
    ) -> Result<usize, SessionError> {
        self.check_lock(lock)?;
        self.write_turn(lock, Turn { model, messages }).await
    }

    /// The backend's part of [`Self::append_turn`], under a lock [`Self::check_lock`]
    /// accepted. Callers use `append_turn`.
    async fn write_turn(&self, lock: &SessionLock, turn: Turn<'_>) -> Result<usize, SessionError>;

    /// Deletes the session; `true` if it existed (and had not expired).
    async fn delete(&self, id: &SessionId) -> Result<bool, SessionError>;

    /// Stores a new pending record (replacing one with the same id).
    async fn put_pending(&self, record: &PendingRecord) -> Result<(), SessionError>;

    /// The pending record, or `None` once it has expired or been removed.
    async fn pending(&self, id: &str) -> Result<Option<PendingRecord>, SessionError>;

    /// Sets the answer of a live record that has none; `false` when it already had one or
    /// is gone. Atomic across replicas.
    async fn answer_pending(&self, id: &str, answer: &str) -> Result<bool, SessionError>;

    /// Removes the record (nothing when it is gone).
    async fn remove_pending(&self, id: &str) -> Result<(), SessionError>;

    /// The live pending records of a session, oldest first.
    async fn session_pending(&self, session: &str) -> Result<Vec<PendingRecord>, SessionError>;

    /// How many live sessions there are, where that is cheap to know (for metrics).
    async fn count(&self) -> Result<Option<u64>, SessionError> {
        Ok(None)
    }
}

fn no_lock_table() -> SessionError {
    SessionError::Backend("this session store has no lock table and must lock itself".into())
}

/// Opens the store `config.store` names. An unreachable Redis or an unwritable SQLite
/// path is an error naming the URL (password redacted).
pub async fn open(config: &SessionsConfig) -> Result<Arc<dyn SessionStore>, SessionError> {
    let url = config.store.trim();
    let (scheme, _) = url.split_once("://").unwrap_or((url, ""));
    let store: Arc<dyn SessionStore> = match scheme.to_ascii_lowercase().as_str() {
        "memory" => Arc::new(MemoryStore::new(config.ttl)),
        "sqlite" => Arc::new(SqliteStore::open(url, config.ttl).await?),
        "redis" | "rediss" => Arc::new(RedisStore::open(url, config.ttl).await?),
        _ => {
            return Err(SessionError::UnsupportedUrl {
                url: redacted_url(url),
            });
        }
    };
    Ok(store)
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration in whole milliseconds, at least 1, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Runs `sweep` every `interval` until the returned guard is dropped (with its store).
/// Outside a tokio runtime there is no sweeper; `load` still hides expired sessions.
pub(crate) fn spawn_sweeper<F, Fut>(interval: Duration, mut sweep: F) -> Option<DropGuard>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                _ = tick.tick() => sweep().await,
            }
        }
    });
    Some(stop.drop_guard())
}

/// How often an embedded store sweeps expired sessions.
pub(crate) fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(store: &str) -> SessionsConfig {
        SessionsConfig {
            store: store.into(),
            ..SessionsConfig::default()
        }
    }

    #[tokio::test]
    async fn open_rejects_an_unknown_scheme_with_the_password_redacted() {
        let err = open(&config("postgres://u:hunter2@db/x"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SessionError::UnsupportedUrl { .. }));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("sqlite://PATH"), "{text}");
    }

    #[tokio::test]
    async fn open_memory_and_sqlite() {
        open(&config("memory://")).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/a/b/s.db", dir.path().display());
        open(&config(&url)).await.unwrap();
        assert!(dir.path().join("a/b/s.db").exists());
    }

    #[tokio::test]
    async fn open_unreachable_redis_names_the_url_without_password() {
        // Port 1 on loopback: nothing listens there.
        let err = open(&config("redis://:hunter2@127.0.0.1:1/0"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SessionError::Open { .. }), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
