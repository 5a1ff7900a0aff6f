//! Redis backend tests against a throwaway `redis-server` (started on a free port in a
//! temp dir, killed on drop). Without `redis-server` on PATH they print why and pass,
//! unless `MCP_CHAT_E2E_REQUIRED=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use super::*;
use crate::sessions::conformance::{self, Fixture, turn};

/// A `redis-server` child process, killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    _dir: tempfile::TempDir,
    pub(crate) url: String,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl RedisServer {
    /// Starts a server, or returns `None` (after saying why) when there is none to start.
    pub(crate) async fn start() -> Option<Self> {
        let Some(binary) = find_on_path("redis-server") else {
            let why = "redis-server is not on PATH (apt-get install redis-server)";
            if std::env::var("MCP_CHAT_E2E_REQUIRED").as_deref() == Ok("1") {
                panic!("{why}, and MCP_CHAT_E2E_REQUIRED=1");
            }
            eprintln!("skipping a Redis test: {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            _dir: dir,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start listening on port {port}");
    }
}

async fn fixture() -> Option<Fixture> {
    let server = RedisServer::start().await?;
    let url = server.url.clone();
    let make = move |ttl| {
        let url = url.clone();
        Box::pin(async move {
            let store: Arc<dyn SessionStore> = Arc::new(RedisStore::open(&url, ttl).await.unwrap());
            store
        }) as _
    };
    Some(Fixture::new(Box::new(make), true, server))
}

conformance::suite!();

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_taken_by_another_holder_fences_the_first() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let lease = Duration::from_millis(300);
    let first = RedisStore::open(&server.url, HOUR)
        .await
        .unwrap()
        .with_lease(lease, false);
    let second = RedisStore::open(&server.url, HOUR).await.unwrap();
    let id = SessionId::generate();
    let stale = first.lock(&id, HOUR).await.unwrap();
    first.append_turn(&stale, "m", &turn(1)).await.unwrap();

    // The first holder stalls past its lease; another replica takes the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = second.lock(&id, Duration::from_secs(1)).await.unwrap();

    let err = first.append_turn(&stale, "m", &turn(2)).await.unwrap_err();
    assert_eq!(err, SessionError::LockLost { id: id.clone() });
    assert!(err.to_string().contains("not saved"), "{err}");
    assert_eq!(second.load(&id).await.unwrap().unwrap().messages, turn(1));

    // The stale guard's release must not free the new holder's lock.
    drop(stale);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = first
        .lock(&id, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(busy, SessionError::Busy { .. }));
    second.append_turn(&fresh, "m", &turn(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_is_renewed_past_its_length() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::open(&server.url, HOUR)
        .await
        .unwrap()
        .with_lease(Duration::from_millis(300), true);
    let id = SessionId::generate();
    let lock = store.lock(&id, HOUR).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let busy = store
        .lock(&id, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(busy, SessionError::Busy { .. }), "still held");
    assert_eq!(store.append_turn(&lock, "m", &turn(1)).await.unwrap(), 5);
    drop(lock);
    // Released on drop (spawned), not left to expire.
    store.lock(&id, Duration::from_millis(250)).await.unwrap();
}

/// A lease that cannot be renewed (the key is gone: expired or deleted) is reported at
/// once through `SessionLock::lost`, so the turn stops then, not at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_reported_at_the_next_renewal() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::open(&server.url, HOUR)
        .await
        .unwrap()
        .with_lease(Duration::from_millis(300), true);
    let id = SessionId::generate();
    let lock = store.lock(&id, HOUR).await.unwrap();
    let lost = lock.lost();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!lost.is_cancelled(), "renewed while held");
    // Another party removes the lock (as an expiry during a stall would).
    let client = ::redis::Client::open(server.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = ::redis::cmd("DEL")
        .arg(lock.lease().unwrap().key())
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_millis(400), lost.cancelled())
        .await
        .expect("the loss is noticed at the next renewal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_set_key_ttls() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let store = RedisStore::open(&server.url, HOUR).await.unwrap();
    let id = SessionId::generate();
    let lock = store.lock(&id, HOUR).await.unwrap();
    store.append_turn(&lock, "m", &turn(1)).await.unwrap();
    let mut conn = store.conn.clone();
    for part in ["meta", "msgs"] {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(key(&id, part))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{part}: {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_to_a_plain_server_is_an_open_error_naming_the_url() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let url = server.url.replace("redis://", "rediss://u:hunter2@");
    let config = crate::config::SessionsConfig {
        store: url,
        ..Default::default()
    };
    let err = crate::sessions::open(&config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SessionError::Open { .. }), "{text}");
    assert!(text.contains("rediss://<redacted>@127.0.0.1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_picks_redis_from_the_url() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let config = crate::config::SessionsConfig {
        store: server.url.clone(),
        ..Default::default()
    };
    let store = crate::sessions::open(&config).await.unwrap();
    assert!(format!("{store:?}").starts_with("RedisStore"));
}
