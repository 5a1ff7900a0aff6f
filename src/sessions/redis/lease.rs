//! The Redis lock lease behind a [`SessionLock`](super::SessionLock): `SET key token NX PX
//! lease`, polled with backoff until the caller's timeout; renewed by a background task
//! while held; released (only if the token still matches) when dropped.

use std::{sync::LazyLock, time::Duration};

use ::redis::{Script, aio::ConnectionManager};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{SessionError, SessionId, backend, millis};
use crate::sessions::lock::Lease;

/// Extends the lease if the token still holds it. KEYS: lock. ARGV: token, lease (ms).
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Deletes the lock if the token still holds it. KEYS: lock. ARGV: token.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// First and longest pause between two attempts to take a busy lock.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// A held Redis lock.
pub(crate) struct RedisLease {
    key: String,
    token: String,
    conn: ConnectionManager,
    _renewal: Option<DropGuard>,
    /// Cancelled when a renewal finds the lock gone (expired, or taken by another holder).
    lost: CancellationToken,
}

impl Lease for RedisLease {
    fn key(&self) -> &str {
        &self.key
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }
}

impl RedisLease {
    /// Takes the lock `key` for session `id`, waiting up to `timeout`.
    pub(crate) async fn acquire(
        mut conn: ConnectionManager,
        id: &SessionId,
        key: String,
        lease: Duration,
        renew: bool,
        timeout: Duration,
    ) -> Result<Self, SessionError> {
        let token = SessionId::generate().to_string();
        let deadline = Instant::now() + timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let taken: Option<String> = ::redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(millis(lease))
                .query_async(&mut conn)
                .await
                .map_err(backend)?;
            if taken.is_some() {
                let lost = CancellationToken::new();
                let renewal =
                    renew.then(|| spawn_renewal(conn.clone(), &key, &token, lease, lost.clone()));
                return Ok(Self {
                    key,
                    token,
                    conn,
                    _renewal: renewal,
                    lost,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SessionError::Busy {
                    id: id.clone(),
                    waited: timeout,
                });
            }
            // Full jitter keeps many waiters from retrying in step.
            let pause = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            tokio::time::sleep(pause.min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Renews the lease every third of its length until the guard drops or the lock is lost
/// (then `lost` is cancelled, so the turn stops at once instead of learning it at the end).
fn spawn_renewal(
    mut conn: ConnectionManager,
    key: &str,
    token: &str,
    lease: Duration,
    lost: CancellationToken,
) -> DropGuard {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let (key, token) = (key.to_string(), token.to_string());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                () = tokio::time::sleep(lease / 3) => {}
            }
            let renewed: Result<i64, _> = RENEW
                .key(&key)
                .arg(&token)
                .arg(millis(lease))
                .invoke_async(&mut conn)
                .await;
            match renewed {
                Ok(1) => {}
                Ok(_) => {
                    tracing::warn!(%key, "session lock lost before renewal; stopping the turn, which will not be saved");
                    lost.cancel();
                    break;
                }
                Err(e) => tracing::warn!(%key, error = %e, "cannot renew a session lock; retrying"),
            }
        }
    });
    stop.drop_guard()
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        // `_renewal` drops with the struct and stops the renewal task.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lease simply expires
        };
        let (key, token, mut conn) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
            self.conn.clone(),
        );
        runtime.spawn(async move {
            let released: Result<i64, _> =
                RELEASE.key(&key).arg(&token).invoke_async(&mut conn).await;
            if let Err(e) = released {
                tracing::warn!(%key, error = %e, "cannot release a session lock; it will expire");
            }
        });
    }
}
