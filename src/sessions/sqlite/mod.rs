//! `sqlite://PATH`: the embedded default. One connection per store (WAL mode), used from
//! `spawn_blocking`; a turn is one transaction; expired rows are hidden at once and deleted
//! by a sweeper task that stops when the store is dropped.
//!
//! Locks are in-process, so one SQLite file serves one replica; several replicas share
//! sessions through Redis.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, params};
use tokio_util::sync::DropGuard;

use super::{
    LocalLocks, PendingRecord, Session, SessionError, SessionId, SessionLock, SessionStore, Turn,
    millis, now_millis, record, spawn_sweeper, sweep_interval,
};
use crate::config::redacted_url;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id            TEXT PRIMARY KEY,
    model         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at_ms);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    id            TEXT PRIMARY KEY,
    session       TEXT,
    kind          TEXT NOT NULL,
    body          TEXT NOT NULL,
    answer        TEXT,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_session ON pending (session, expires_at_ms);
PRAGMA user_version = 1;
";

/// Sessions in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    locks: LocalLocks,
    _sweeper: Option<DropGuard>,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<Connection>,
    ttl: Duration,
}

fn backend(e: impl std::fmt::Display) -> SessionError {
    SessionError::Backend(format!("sqlite: {e}"))
}

impl Inner {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction rolls the transaction back; the connection stays usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sweep(&self) -> Result<usize, SessionError> {
        let conn = self.conn();
        let now = now_millis();
        conn.execute("DELETE FROM pending WHERE expires_at_ms <= ?1", [now])
            .map_err(backend)?;
        conn.execute("DELETE FROM sessions WHERE expires_at_ms <= ?1", [now])
            .map_err(backend)
    }
}

fn pending_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PendingRecord> {
    Ok(PendingRecord {
        id: row.get(0)?,
        session: row.get(1)?,
        kind: row.get(2)?,
        body: row.get(3)?,
        answer: row.get(4)?,
        expires_at_ms: row.get(5)?,
    })
}

/// The file path of a `sqlite://PATH` URL (`sqlite:///abs` is absolute).
fn path_of(url: &str) -> Option<PathBuf> {
    let (scheme, path) = url.split_once("://")?;
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    (scheme.eq_ignore_ascii_case("sqlite") && !path.is_empty()).then(|| PathBuf::from(path))
}

fn open_connection(path: &Path) -> Result<Connection, String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create directory {}: {e}", parent.display()))?;
    }
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "cannot switch to WAL mode (journal mode is {mode})"
        ));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .map_err(|e| e.to_string())?;
    conn.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating parent directories, file and tables) the file `url` names.
    pub async fn open(url: &str, ttl: Duration) -> Result<Self, SessionError> {
        let shown = redacted_url(url);
        let Some(path) = path_of(url) else {
            return Err(SessionError::Open {
                url: shown,
                message: "expected sqlite://PATH".into(),
            });
        };
        let conn = tokio::task::spawn_blocking(move || open_connection(&path))
            .await
            .map_err(|e| e.to_string())
            .and_then(|opened| opened)
            .map_err(|message| SessionError::Open {
                url: shown,
                message,
            })?;
        let inner = Arc::new(Inner {
            conn: Mutex::new(conn),
            ttl,
        });
        let swept = Arc::clone(&inner);
        let sweeper = spawn_sweeper(sweep_interval(ttl), move || {
            let inner = Arc::clone(&swept);
            async move {
                match tokio::task::spawn_blocking(move || inner.sweep()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::debug!(expired = n, "swept expired sessions"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "session sweep failed"),
                    Err(e) => tracing::warn!(error = %e, "session sweep panicked"),
                }
            }
        });
        Ok(Self {
            inner,
            locks: LocalLocks::new(),
            _sweeper: sweeper,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Inner) -> Result<T, SessionError> + Send + 'static,
    ) -> Result<T, SessionError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut inner.conn(), &inner))
            .await
            .map_err(backend)?
    }
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let id = id.clone();
        self.call(move |conn, _| {
            let tx = conn.transaction().map_err(backend)?;
            let head = tx
                .query_row(
                    "SELECT model, created_at, updated_at FROM sessions
                     WHERE id = ?1 AND expires_at_ms > ?2",
                    params![id.as_str(), now_millis()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((model, created_at, updated_at)) = head else {
                return Ok(None);
            };
            let mut stmt = tx
                .prepare_cached("SELECT body FROM messages WHERE session_id = ?1 ORDER BY seq")
                .map_err(backend)?;
            let bodies = stmt
                .query_map([id.as_str()], |row| row.get::<_, String>(0))
                .map_err(backend)?;
            let mut messages = Vec::new();
            for body in bodies {
                messages.push(record::decode(id.as_str(), &body.map_err(backend)?)?);
            }
            Ok(Some(Session {
                id,
                model,
                created_at,
                updated_at,
                messages,
            }))
        })
        .await
    }

    fn local_locks(&self) -> Option<&LocalLocks> {
        Some(&self.locks)
    }

    async fn write_turn(&self, lock: &SessionLock, turn: Turn<'_>) -> Result<usize, SessionError> {
        let Turn { model, messages } = turn;
        let bodies = record::encode_all(messages)?;
        let (id, model) = (lock.id().clone(), model.to_string());
        self.call(move |conn, inner| {
            let now = now_millis();
            let tx = conn.transaction().map_err(backend)?;
            tx.execute(
                "DELETE FROM sessions WHERE id = ?1 AND expires_at_ms <= ?2",
                params![id.as_str(), now],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO sessions (id, model, created_at, updated_at, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET model = excluded.model,
                     updated_at = excluded.updated_at, expires_at_ms = excluded.expires_at_ms",
                params![
                    id.as_str(),
                    model,
                    now / 1000,
                    now.saturating_add(millis(inner.ttl))
                ],
            )
            .map_err(backend)?;
            let next: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM messages WHERE session_id = ?1",
                    [id.as_str()],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO messages (session_id, seq, body) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(backend)?;
                for (seq, body) in (next..).zip(&bodies) {
                    insert
                        .execute(params![id.as_str(), seq, body])
                        .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)?;
            let total = next.saturating_add(i64::try_from(bodies.len()).unwrap_or(i64::MAX));
            Ok(usize::try_from(total).unwrap_or(usize::MAX))
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        let id = id.clone();
        self.call(move |conn, _| {
            let tx = conn.transaction().map_err(backend)?;
            let live: Option<bool> = tx
                .query_row(
                    "SELECT expires_at_ms > ?2 FROM sessions WHERE id = ?1",
                    params![id.as_str(), now_millis()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            tx.execute("DELETE FROM sessions WHERE id = ?1", [id.as_str()])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(live.unwrap_or(false))
        })
        .await
    }

    async fn put_pending(&self, record: &PendingRecord) -> Result<(), SessionError> {
        let r = record.clone();
        self.call(move |conn, _| {
            conn.execute(
                "INSERT OR REPLACE INTO pending (id, session, kind, body, answer, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.id, r.session, r.kind, r.body, r.answer, r.expires_at_ms],
            )
            .map(drop)
            .map_err(backend)
        })
        .await
    }

    async fn pending(&self, id: &str) -> Result<Option<PendingRecord>, SessionError> {
        let id = id.to_string();
        self.call(move |conn, _| {
            conn.query_row(
                "SELECT id, session, kind, body, answer, expires_at_ms FROM pending
                 WHERE id = ?1 AND expires_at_ms > ?2",
                params![id, now_millis()],
                pending_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn answer_pending(&self, id: &str, answer: &str) -> Result<bool, SessionError> {
        let (id, answer) = (id.to_string(), answer.to_string());
        self.call(move |conn, _| {
            conn.execute(
                "UPDATE pending SET answer = ?2
                 WHERE id = ?1 AND answer IS NULL AND expires_at_ms > ?3",
                params![id, answer, now_millis()],
            )
            .map(|changed| changed == 1)
            .map_err(backend)
        })
        .await
    }

    async fn remove_pending(&self, id: &str) -> Result<(), SessionError> {
        let id = id.to_string();
        self.call(move |conn, _| {
            conn.execute("DELETE FROM pending WHERE id = ?1", [id])
                .map(drop)
                .map_err(backend)
        })
        .await
    }

    async fn session_pending(&self, session: &str) -> Result<Vec<PendingRecord>, SessionError> {
        let session = session.to_string();
        self.call(move |conn, _| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, session, kind, body, answer, expires_at_ms FROM pending
                     WHERE session = ?1 AND expires_at_ms > ?2 ORDER BY expires_at_ms, id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![session, now_millis()], pending_row)
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn count(&self) -> Result<Option<u64>, SessionError> {
        self.call(|conn, _| {
            conn.query_row(
                "SELECT COUNT(*) FROM sessions WHERE expires_at_ms > ?1",
                [now_millis()],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| Some(u64::try_from(n).unwrap_or(0)))
            .map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
