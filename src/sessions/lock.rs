//! [`SessionLock`], the guard that serialises requests on one session, and the in-process
//! lock table the embedded backends (memory, SQLite) use.
//!
//! The in-process table maps a session id to an `Arc<tokio::sync::Mutex<()>>`; a guard owns
//! the mutex guard and removes the entry when nobody else holds or waits for it, so the
//! table only ever holds sessions in use. A lock held in a shared backend is a [`Lease`]: this
//! file says what one is, the backend (`redis/lease.rs`) implements it.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex as StdMutex, MutexGuard as StdMutexGuard},
    time::Duration,
};

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use super::{SessionError, SessionId};

/// Exclusive use of one session until dropped. [`SessionStore::append_turn`] requires it.
///
/// [`SessionStore::append_turn`]: super::SessionStore::append_turn
pub struct SessionLock {
    id: SessionId,
    held: Held,
}

pub(crate) enum Held {
    Local(LocalHeld),
    Remote(Box<dyn Lease>),
}

/// A lock held in a shared backend: the key it is held under and the token that proves the
/// holder. Dropping it releases the lock (if the token still holds it).
pub(crate) trait Lease: Send + Sync {
    fn key(&self) -> &str;
    fn token(&self) -> &str;
    /// Cancelled once the lease is known to be lost.
    fn lost(&self) -> CancellationToken;
}

impl SessionLock {
    pub(crate) fn new(id: SessionId, held: Held) -> Self {
        Self { id, held }
    }

    /// The session this lock is for.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// Checks that an in-process store with `tag` issued this lock.
    pub(crate) fn check_local(&self, tag: u64) -> Result<(), SessionError> {
        match &self.held {
            Held::Local(held) if held.tag == tag => Ok(()),
            _ => Err(foreign()),
        }
    }

    /// Cancelled when the lock is lost while held (a shared backend's lease that could not
    /// be renewed); an in-process lock is never lost.
    pub fn lost(&self) -> CancellationToken {
        match &self.held {
            Held::Remote(lease) => lease.lost(),
            Held::Local(_) => CancellationToken::new(),
        }
    }

    /// The lease behind this lock, if a shared-backend store issued it.
    pub(crate) fn lease(&self) -> Result<&dyn Lease, SessionError> {
        match &self.held {
            Held::Remote(lease) => Ok(lease.as_ref()),
            Held::Local(_) => Err(foreign()),
        }
    }
}

fn foreign() -> SessionError {
    SessionError::Backend("the session lock was issued by another session store".into())
}

impl fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.held {
            Held::Local(_) => "local",
            Held::Remote(_) => "remote",
        };
        f.debug_struct("SessionLock")
            .field("id", &self.id)
            .field("kind", &kind)
            .finish()
    }
}

type Table = Arc<StdMutex<HashMap<SessionId, Arc<Mutex<()>>>>>;

/// The in-process lock table of one store.
#[derive(Debug)]
pub struct LocalLocks {
    /// Random per store, so a lock from another store instance is refused.
    tag: u64,
    table: Table,
}

/// A held in-process lock; drops its table entry when it was the last user.
pub(crate) struct LocalHeld {
    tag: u64,
    id: SessionId,
    guard: Option<OwnedMutexGuard<()>>,
    table: Table,
}

fn table_lock(table: &Table) -> StdMutexGuard<'_, HashMap<SessionId, Arc<Mutex<()>>>> {
    // The table holds no invariant a panic could break; keep going after a poison.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes `id`'s entry if only the table itself still refers to it.
fn remove_if_unused(table: &Table, id: &SessionId) {
    let mut map = table_lock(table);
    if map.get(id).is_some_and(|m| Arc::strong_count(m) == 1) {
        map.remove(id);
    }
}

impl LocalLocks {
    pub(crate) fn new() -> Self {
        Self {
            tag: rand::random(),
            table: Table::default(),
        }
    }

    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }

    /// Waits up to `timeout` for the session's lock.
    pub(crate) async fn lock(
        &self,
        id: &SessionId,
        timeout: Duration,
    ) -> Result<SessionLock, SessionError> {
        let mutex = Arc::clone(table_lock(&self.table).entry(id.clone()).or_default());
        match tokio::time::timeout(timeout, mutex.lock_owned()).await {
            Ok(guard) => Ok(SessionLock::new(
                id.clone(),
                Held::Local(LocalHeld {
                    tag: self.tag,
                    id: id.clone(),
                    guard: Some(guard),
                    table: Arc::clone(&self.table),
                }),
            )),
            Err(_elapsed) => {
                // The timed-out future (and its Arc) is gone; tidy up if we were last.
                remove_if_unused(&self.table, id);
                Err(SessionError::Busy {
                    id: id.clone(),
                    waited: timeout,
                })
            }
        }
    }

    /// Sessions with a lock entry (held or awaited); for tests.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        table_lock(&self.table).len()
    }
}

impl Drop for LocalHeld {
    fn drop(&mut self) {
        drop(self.guard.take());
        remove_if_unused(&self.table, &self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_removed_when_unused() {
        let locks = LocalLocks::new();
        let id = SessionId::parse("s").unwrap();
        let first = locks.lock(&id, Duration::from_secs(1)).await.unwrap();
        assert_eq!(locks.entries(), 1);
        let err = locks
            .lock(&id, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::Busy { .. }));
        assert_eq!(locks.entries(), 1, "the holder's entry stays");
        drop(first);
        assert_eq!(locks.entries(), 0);
        let again = locks.lock(&id, Duration::from_millis(20)).await.unwrap();
        assert!(again.check_local(locks.tag()).is_ok());
        assert!(again.check_local(locks.tag().wrapping_add(1)).is_err());
        drop(again);
        assert_eq!(locks.entries(), 0);
    }
}
