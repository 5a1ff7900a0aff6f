//! `redis://HOST:PORT/DB` and `rediss://…`: sessions shared by several replicas.
//!
//! One [`ConnectionManager`] (a multiplexed, reconnecting connection) per store. Keys, all
//! with the session id as hash tag so a cluster keeps them on one slot:
//! `mcp-chat:session:{ID}:meta` (hash: model, created_at, updated_at),
//! `mcp-chat:session:{ID}:msgs` (list of JSON messages) and `mcp-chat:session:{ID}:lock`.
//! A turn is one Lua script that first checks the caller still holds the lock (fencing),
//! then writes and refreshes both keys' TTL; Redis expires idle sessions by itself.
//! Pending records: `mcp-chat:pending:{ID}` (hash: session, kind, body, expires_at_ms and,
//! once answered, answer; expiring by itself) and, for listing, the session's set
//! `mcp-chat:session:{SID}:pending` of their ids.

mod lease;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, fmt, sync::LazyLock, time::Duration};

use ::redis::{Client, Script, aio::ConnectionManager, aio::ConnectionManagerConfig};

use lease::RedisLease;

use super::{
    PendingRecord, Session, SessionError, SessionId, SessionLock, SessionStore, Turn, millis,
    now_millis, record,
};
use crate::config::redacted_url;

/// How long a lock lives without renewal; the holder renews it every third of this.
const LEASE: Duration = Duration::from_secs(15);

/// Longest wait for the first connection (retries included) when the store opens.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Appends a turn if the lock is still held. KEYS: meta, msgs, lock. ARGV: token, model,
/// now (Unix s), ttl (ms), messages… Returns the message count, or -1 if the lock is lost.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'created_at', ARGV[3])
end
redis.call('HSET', KEYS[1], 'model', ARGV[2], 'updated_at', ARGV[3])
local n = redis.call('LLEN', KEYS[2])
local i = 5
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  n = redis.call('RPUSH', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if n > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return n
",
    )
});

/// Sets a live pending record's answer once. KEYS: the record. ARGV: the answer.
/// Returns 1 when set, 0 when the record is gone or already answered.
static ANSWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'answer', ARGV[1])
",
    )
});

fn pending_key(id: &str) -> String {
    format!("mcp-chat:pending:{{{id}}}")
}

fn session_pending_key(session: &str) -> String {
    format!("mcp-chat:session:{{{session}}}:pending")
}

/// A record from its hash (`None` when the hash is empty: gone).
fn pending_of(id: &str, mut fields: HashMap<String, String>) -> Option<PendingRecord> {
    if fields.is_empty() {
        return None;
    }
    Some(PendingRecord {
        id: id.to_string(),
        session: fields.remove("session").filter(|s| !s.is_empty()),
        kind: fields.remove("kind").unwrap_or_default(),
        body: fields.remove("body").unwrap_or_default(),
        answer: fields.remove("answer"),
        expires_at_ms: fields
            .get("expires_at_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
    .filter(|p| p.expires_at_ms > now_millis())
}

/// Sessions in Redis, shared by every replica pointing at the same database.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    ttl: Duration,
    lease: Duration,
    renew: bool,
    url: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

fn backend(e: impl fmt::Display) -> SessionError {
    SessionError::Backend(format!("redis: {e}"))
}

fn key(id: &SessionId, part: &str) -> String {
    format!("mcp-chat:session:{{{id}}}:{part}")
}

impl RedisStore {
    /// Connects (and pings) the server `url` names; an error names the redacted URL.
    pub async fn open(url: &str, ttl: Duration) -> Result<Self, SessionError> {
        let shown = redacted_url(url);
        let failed = |e: ::redis::RedisError| SessionError::Open {
            url: shown.clone(),
            message: e.to_string(),
        };
        let client = Client::open(url).map_err(failed)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            ::redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await?;
            Ok(conn)
        };
        let conn = match tokio::time::timeout(OPEN_TIMEOUT, connect).await {
            Ok(connected) => connected.map_err(failed)?,
            Err(_) => {
                return Err(SessionError::Open {
                    url: shown,
                    message: format!("no answer within {OPEN_TIMEOUT:?}"),
                });
            }
        };
        Ok(Self {
            conn,
            ttl,
            lease: LEASE,
            renew: true,
            url: shown,
        })
    }

    /// Test hook: a different lease, optionally never renewed.
    #[cfg(test)]
    pub(crate) fn with_lease(mut self, lease: Duration, renew: bool) -> Self {
        self.lease = lease;
        self.renew = renew;
        self
    }
}

fn field<T: std::str::FromStr>(
    id: &SessionId,
    meta: &HashMap<String, String>,
    name: &str,
) -> Result<T, SessionError> {
    meta.get(name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| SessionError::Corrupt {
            id: id.to_string(),
            message: format!("field {name} is missing or invalid"),
        })
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let mut conn = self.conn.clone();
        let (meta, bodies): (HashMap<String, String>, Vec<String>) = ::redis::pipe()
            .atomic()
            .hgetall(key(id, "meta"))
            .lrange(key(id, "msgs"), 0, -1)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        if meta.is_empty() {
            return Ok(None);
        }
        let messages = bodies
            .iter()
            .map(|body| record::decode(id.as_str(), body))
            .collect::<Result<_, _>>()?;
        Ok(Some(Session {
            id: id.clone(),
            model: field(id, &meta, "model")?,
            created_at: field(id, &meta, "created_at")?,
            updated_at: field(id, &meta, "updated_at")?,
            messages,
        }))
    }

    async fn lock(&self, id: &SessionId, timeout: Duration) -> Result<SessionLock, SessionError> {
        let lease = RedisLease::acquire(
            self.conn.clone(),
            id,
            key(id, "lock"),
            self.lease,
            self.renew,
            timeout,
        )
        .await?;
        Ok(SessionLock::new(
            id.clone(),
            super::lock::Held::Remote(Box::new(lease)),
        ))
    }

    fn check_lock(&self, lock: &SessionLock) -> Result<(), SessionError> {
        lock.lease().map(drop)
    }

    async fn write_turn(&self, lock: &SessionLock, turn: Turn<'_>) -> Result<usize, SessionError> {
        let Turn { model, messages } = turn;
        let lease = lock.lease()?;
        let id = lock.id();
        let bodies = record::encode_all(messages)?;
        let mut conn = self.conn.clone();
        let mut call = APPEND.prepare_invoke();
        call.key(key(id, "meta"))
            .key(key(id, "msgs"))
            .key(lease.key())
            .arg(lease.token())
            .arg(model)
            .arg(now_millis() / 1000)
            .arg(millis(self.ttl))
            .arg(bodies);
        let count: i64 = call.invoke_async(&mut conn).await.map_err(backend)?;
        if count < 0 {
            return Err(SessionError::LockLost { id: id.clone() });
        }
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    async fn put_pending(&self, record: &PendingRecord) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        let key = pending_key(&record.id);
        let session = record.session.clone().unwrap_or_default();
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .del(&key)
            .hset_multiple(
                &key,
                &[
                    ("session", session.as_str()),
                    ("kind", record.kind.as_str()),
                    ("body", record.body.as_str()),
                    ("expires_at_ms", record.expires_at_ms.to_string().as_str()),
                ],
            )
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(record.expires_at_ms)
            .ignore();
        if let Some(answer) = &record.answer {
            pipe.hset(&key, "answer", answer).ignore();
        }
        if let Some(session) = &record.session {
            let index = session_pending_key(session);
            pipe.sadd(&index, &record.id)
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&index)
                .arg(record.expires_at_ms)
                .arg("GT")
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&index)
                .arg(record.expires_at_ms)
                .arg("NX")
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(backend)
    }

    async fn pending(&self, id: &str) -> Result<Option<PendingRecord>, SessionError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = ::redis::cmd("HGETALL")
            .arg(pending_key(id))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(pending_of(id, fields))
    }

    async fn answer_pending(&self, id: &str, answer: &str) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let mut call = ANSWER.prepare_invoke();
        call.key(pending_key(id)).arg(answer);
        let set: i64 = call.invoke_async(&mut conn).await.map_err(backend)?;
        Ok(set == 1)
    }

    async fn remove_pending(&self, id: &str) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        let key = pending_key(id);
        let session: Option<String> = ::redis::cmd("HGET")
            .arg(&key)
            .arg("session")
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let mut pipe = ::redis::pipe();
        pipe.atomic().del(&key).ignore();
        if let Some(session) = session.filter(|s| !s.is_empty()) {
            pipe.srem(session_pending_key(&session), id).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(backend)
    }

    async fn session_pending(&self, session: &str) -> Result<Vec<PendingRecord>, SessionError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(session_pending_key(session))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.pending(&id).await? {
                found.push(record);
            }
        }
        found.sort_by(|a, b| a.expires_at_ms.cmp(&b.expires_at_ms).then(a.id.cmp(&b.id)));
        Ok(found)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let (meta, _msgs): (i64, i64) = ::redis::pipe()
            .atomic()
            .del(key(id, "meta"))
            .del(key(id, "msgs"))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(meta > 0)
    }
}
