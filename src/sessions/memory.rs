//! `memory://`: sessions in a map in this process, for tests and throwaway runs.
//!
//! A turn is appended under the map's lock, so it is all or nothing; expired entries are
//! hidden at once and removed by a sweeper task that stops when the store is dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio_util::sync::DropGuard;

use super::{
    LocalLocks, PendingRecord, Session, SessionError, SessionId, SessionLock, SessionStore, Turn,
    millis, now_millis, spawn_sweeper, sweep_interval,
};

/// Sessions kept in memory; everything is lost when the process ends.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
    locks: LocalLocks,
    _sweeper: Option<DropGuard>,
}

#[derive(Debug)]
struct Inner {
    ttl: Duration,
    sessions: Mutex<HashMap<SessionId, Entry>>,
    pending: Mutex<HashMap<String, PendingRecord>>,
}

#[derive(Debug)]
struct Entry {
    session: Session,
    expires_at_ms: i64,
}

impl Inner {
    fn map(&self) -> MutexGuard<'_, HashMap<SessionId, Entry>> {
        // Every mutation is a single step; a poisoned map is still consistent.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sweep(&self) {
        let now = now_millis();
        self.map().retain(|_, e| e.expires_at_ms > now);
        self.pending().retain(|_, p| p.expires_at_ms > now);
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, PendingRecord>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryStore {
    /// An empty store whose sessions expire after `ttl` idle.
    pub fn new(ttl: Duration) -> Self {
        let inner = Arc::new(Inner {
            ttl,
            sessions: Mutex::default(),
            pending: Mutex::default(),
        });
        let swept = Arc::clone(&inner);
        let sweeper = spawn_sweeper(sweep_interval(ttl), move || {
            swept.sweep();
            std::future::ready(())
        });
        Self {
            inner,
            locks: LocalLocks::new(),
            _sweeper: sweeper,
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let now = now_millis();
        Ok(self
            .inner
            .map()
            .get(id)
            .filter(|e| e.expires_at_ms > now)
            .map(|e| e.session.clone()))
    }

    fn local_locks(&self) -> Option<&LocalLocks> {
        Some(&self.locks)
    }

    async fn write_turn(&self, lock: &SessionLock, turn: Turn<'_>) -> Result<usize, SessionError> {
        let Turn { model, messages } = turn;
        let now = now_millis();
        let mut map = self.inner.map();
        let entry = map.entry(lock.id().clone()).or_insert_with(|| Entry {
            session: new_session(lock.id(), model, now),
            expires_at_ms: 0,
        });
        if entry.expires_at_ms <= now {
            entry.session = new_session(lock.id(), model, now);
        }
        entry.session.messages.extend_from_slice(messages);
        entry.session.model = model.to_string();
        entry.session.updated_at = now / 1000;
        entry.expires_at_ms = now.saturating_add(millis(self.inner.ttl));
        Ok(entry.session.messages.len())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        let now = now_millis();
        Ok(self
            .inner
            .map()
            .remove(id)
            .is_some_and(|e| e.expires_at_ms > now))
    }

    async fn put_pending(&self, record: &PendingRecord) -> Result<(), SessionError> {
        self.inner
            .pending()
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn pending(&self, id: &str) -> Result<Option<PendingRecord>, SessionError> {
        let now = now_millis();
        Ok(self
            .inner
            .pending()
            .get(id)
            .filter(|p| p.expires_at_ms > now)
            .cloned())
    }

    async fn answer_pending(&self, id: &str, answer: &str) -> Result<bool, SessionError> {
        let now = now_millis();
        let mut pending = self.inner.pending();
        match pending.get_mut(id) {
            Some(p) if p.expires_at_ms > now && p.answer.is_none() => {
                p.answer = Some(answer.to_string());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove_pending(&self, id: &str) -> Result<(), SessionError> {
        self.inner.pending().remove(id);
        Ok(())
    }

    async fn session_pending(&self, session: &str) -> Result<Vec<PendingRecord>, SessionError> {
        let now = now_millis();
        let mut found: Vec<PendingRecord> = self
            .inner
            .pending()
            .values()
            .filter(|p| p.expires_at_ms > now && p.session.as_deref() == Some(session))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.expires_at_ms.cmp(&b.expires_at_ms).then(a.id.cmp(&b.id)));
        Ok(found)
    }

    async fn count(&self) -> Result<Option<u64>, SessionError> {
        let now = now_millis();
        let live = self
            .inner
            .map()
            .values()
            .filter(|e| e.expires_at_ms > now)
            .count();
        Ok(Some(u64::try_from(live).unwrap_or(u64::MAX)))
    }
}

fn new_session(id: &SessionId, model: &str, now_ms: i64) -> Session {
    Session {
        id: id.clone(),
        model: model.to_string(),
        created_at: now_ms / 1000,
        updated_at: now_ms / 1000,
        messages: Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::sessions::conformance::{self, Fixture, turn};

    fn store(ttl: Duration) -> MemoryStore {
        MemoryStore::new(ttl)
    }

    async fn fixture() -> Option<Fixture> {
        let make = |ttl| {
            let store: Arc<dyn SessionStore> = Arc::new(store(ttl));
            Box::pin(std::future::ready(store)) as _
        };
        Some(Fixture::new(Box::new(make), false, ()))
    }

    conformance::suite!();

    #[tokio::test]
    async fn a_lock_from_another_store_is_refused_and_nothing_written() {
        let (a, b) = (
            store(Duration::from_secs(60)),
            store(Duration::from_secs(60)),
        );
        let id = SessionId::generate();
        let lock = a.lock(&id, Duration::from_secs(1)).await.unwrap();
        a.append_turn(&lock, "m", &turn(1)).await.unwrap();
        let foreign = b.lock(&id, Duration::from_secs(1)).await.unwrap();
        let err = a.append_turn(&foreign, "m", &turn(2)).await.unwrap_err();
        assert!(matches!(err, SessionError::Backend(_)), "{err}");
        assert_eq!(a.load(&id).await.unwrap().unwrap().messages, turn(1));
    }

    #[tokio::test]
    async fn load_hides_an_expired_session_before_the_sweep() {
        let store = store(Duration::from_secs(3600));
        let id = SessionId::generate();
        let lock = store.lock(&id, Duration::from_secs(1)).await.unwrap();
        store.append_turn(&lock, "m", &turn(1)).await.unwrap();
        for entry in store.inner.map().values_mut() {
            entry.expires_at_ms = now_millis() - 1;
        }
        assert_eq!(store.load(&id).await.unwrap(), None);
        assert_eq!(store.count().await.unwrap(), Some(0));
        assert_eq!(store.inner.map().len(), 1, "not swept yet");
    }

    #[tokio::test]
    async fn sweeper_removes_expired_entries() {
        let store = store(Duration::from_millis(200));
        let id = SessionId::generate();
        let lock = store.lock(&id, Duration::from_secs(1)).await.unwrap();
        store.append_turn(&lock, "m", &[]).await.unwrap();
        assert_eq!(store.inner.map().len(), 1);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(store.inner.map().len(), 0, "swept within the 1 s interval");
    }
}
