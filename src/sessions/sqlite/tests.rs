//! SQLite backend tests: the conformance suite on a temp-dir file, restart, a failure in
//! the middle of a turn, unwritable paths, expiry before and by the sweeper.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::sessions::conformance::{self, Fixture, turn};

async fn fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sessions.db", dir.path().display());
    let make = move |ttl| {
        let url = url.clone();
        Box::pin(async move {
            let store: Arc<dyn SessionStore> =
                Arc::new(SqliteStore::open(&url, ttl).await.unwrap());
            store
        }) as _
    };
    Some(Fixture::new(Box::new(make), true, dir))
}

conformance::suite!();

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn a_session_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/data/mcp-chat.db", dir.path().display());
    let id = SessionId::generate();
    let written = {
        let store = SqliteStore::open(&url, DAY).await.unwrap();
        let lock = store.lock(&id, DAY).await.unwrap();
        store.append_turn(&lock, "m", &turn(1)).await.unwrap();
        store.load(&id).await.unwrap().unwrap()
    };
    let reopened = SqliteStore::open(&url, DAY).await.unwrap();
    assert_eq!(reopened.load(&id).await.unwrap(), Some(written));
    let mode: String = reopened
        .inner
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_failure_mid_turn_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/s.db", dir.path().display());
    let store = SqliteStore::open(&url, DAY).await.unwrap();
    let id = SessionId::generate();
    let lock = store.lock(&id, DAY).await.unwrap();
    store.append_turn(&lock, "m", &turn(1)).await.unwrap();
    let before = store.load(&id).await.unwrap();
    // Inject a failure on the third message of the next turn.
    store
        .inner
        .conn()
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON messages WHEN NEW.seq = 7
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = store
        .append_turn(&lock, "other", &turn(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(
        store.load(&id).await.unwrap(),
        before,
        "model, time, messages"
    );
}

#[tokio::test]
async fn an_unwritable_path_is_an_error_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "not a directory").unwrap();
    let url = format!("sqlite://{}/file/sub/s.db", dir.path().display());
    let err = SqliteStore::open(&url, DAY).await.unwrap_err();
    assert!(matches!(err, SessionError::Open { .. }));
    assert!(err.to_string().contains(&url), "{err}");
    let err = SqliteStore::open("sqlite://", DAY).await.unwrap_err();
    assert!(err.to_string().contains("sqlite://PATH"), "{err}");
}

#[tokio::test]
async fn load_hides_an_expired_session_before_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/s.db", dir.path().display());
    let store = SqliteStore::open(&url, DAY).await.unwrap();
    let id = SessionId::generate();
    let lock = store.lock(&id, DAY).await.unwrap();
    store.append_turn(&lock, "m", &turn(1)).await.unwrap();
    let conn = || store.inner.conn();
    conn()
        .execute("UPDATE sessions SET expires_at_ms = ?1", [now_millis() - 1])
        .unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), Some(0));
    let rows: i64 = conn()
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "not swept yet");
}

#[tokio::test]
async fn the_sweeper_deletes_expired_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/s.db", dir.path().display());
    let store = SqliteStore::open(&url, Duration::from_millis(100))
        .await
        .unwrap();
    let lock = store.lock(&SessionId::generate(), DAY).await.unwrap();
    store.append_turn(&lock, "m", &turn(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let rows: i64 = store
        .inner
        .conn()
        .query_row(
            "SELECT (SELECT COUNT(*) FROM sessions) + (SELECT COUNT(*) FROM messages)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
}
