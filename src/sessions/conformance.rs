//! The conformance suite every backend passes: one async fn per behaviour, run against
//! memory, a temp-dir SQLite file and a throwaway `redis-server` by [`suite!`].
//!
//! A backend's test module provides `async fn fixture() -> Option<Fixture>` (None: the
//! backend cannot run here, e.g. no redis-server, and the reason was printed) and invokes
//! `conformance::suite!();`.

use std::{any::Any, sync::Arc, time::Duration};

use futures::future::BoxFuture;

use super::{PendingRecord, SessionError, SessionId, SessionStore, now_millis};
use crate::model::{Message, Role, ToolCall};

type Make = dyn Fn(Duration) -> BoxFuture<'static, Arc<dyn SessionStore>> + Send + Sync;

/// Opens stores (with a given ttl) on one backend instance, kept alive by `_keep`.
pub(crate) struct Fixture {
    make: Box<Make>,
    /// Whether two store instances see the same sessions (not so for memory).
    shared: bool,
    _keep: Box<dyn Any + Send>,
}

impl Fixture {
    pub(crate) fn new(make: Box<Make>, shared: bool, keep: impl Any + Send) -> Self {
        Self {
            make,
            shared,
            _keep: Box::new(keep),
        }
    }

    /// A store instance with the given ttl.
    pub(crate) async fn store(&self, ttl: Duration) -> Arc<dyn SessionStore> {
        (self.make)(ttl).await
    }

    /// A store instance with a long ttl.
    pub(crate) async fn default_store(&self) -> Arc<dyn SessionStore> {
        self.store(Duration::from_secs(3600)).await
    }
}

/// Generates one `#[tokio::test]` per behaviour, each calling the module's `fixture()`.
macro_rules! suite {
    () => {
        $crate::sessions::conformance::suite!(@tests
            append_and_read,
            unfinished_turn_leaves_session_unchanged,
            idle_sessions_expire,
            delete_removes_a_session,
            concurrent_turns_are_serialised,
            second_locker_times_out_busy,
            pending_records_are_answered_once_and_expire,
        );
    };
    (@tests $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(fixture) = fixture().await {
                    $crate::sessions::conformance::$name(&fixture).await;
                }
            }
        )*
    };
}
pub(crate) use suite;

const LOCK: Duration = Duration::from_secs(10);

/// A full turn: user question, tool calls, their results, the final answer.
pub(crate) fn turn(n: usize) -> Vec<Message> {
    vec![
        Message {
            name: Some("alice".into()),
            ..Message::new(Role::User, format!("question {n}"))
        },
        Message {
            tool_calls: vec![
                ToolCall {
                    id: format!("call_{n}_a"),
                    name: "weather__forecast".into(),
                    arguments: format!(r#"{{"city":"Paris","day":{n}}}"#),
                },
                ToolCall {
                    id: format!("call_{n}_b"),
                    name: "search".into(),
                    arguments: "{}".into(),
                },
            ],
            ..Message::new(Role::Assistant, "")
        },
        Message::tool_result(format!("call_{n}_a"), "sunny, 24 °C\n\"quoted\""),
        Message::tool_result(format!("call_{n}_b"), ""),
        Message::new(Role::Assistant, format!("answer {n}")),
    ]
}

async fn append(store: &dyn SessionStore, id: &SessionId, model: &str, msgs: &[Message]) -> usize {
    let lock = store.lock(id, LOCK).await.unwrap();
    store.append_turn(&lock, model, msgs).await.unwrap()
}

pub(crate) async fn append_and_read(fixture: &Fixture) {
    let store = fixture.default_store().await;
    let id = SessionId::generate();
    assert_eq!(store.load(&id).await.unwrap(), None);
    let before = now_millis() / 1000;

    let mut expected = vec![Message::new(Role::System, "be brief")];
    expected.extend(turn(1));
    assert_eq!(append(&*store, &id, "model-a", &expected).await, 6);
    let first = store.load(&id).await.unwrap().expect("stored");
    assert_eq!(first.id, id);
    assert_eq!(first.model, "model-a");
    assert_eq!(
        first.messages, expected,
        "tool calls and results round-trip"
    );
    assert!(first.created_at >= before && first.created_at <= now_millis() / 1000);
    assert_eq!(first.updated_at, first.created_at);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    expected.extend(turn(2));
    assert_eq!(append(&*store, &id, "model-b", &turn(2)).await, 11);
    let second = store.load(&id).await.unwrap().expect("stored");
    assert_eq!(second.messages, expected);
    assert_eq!(second.model, "model-b", "the latest turn's model");
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);

    if let Some(count) = store.count().await.unwrap() {
        assert_eq!(count, 1);
    }
    // Another instance on the same backend sees the same session.
    if fixture.shared {
        let other = fixture.default_store().await;
        assert_eq!(other.load(&id).await.unwrap(), Some(second));
    }
}

pub(crate) async fn unfinished_turn_leaves_session_unchanged(fixture: &Fixture) {
    let store = fixture.default_store().await;
    let id = SessionId::generate();
    append(&*store, &id, "m", &turn(1)).await;
    let before = store.load(&id).await.unwrap();

    // A turn that fails or is cancelled takes the lock, reads, and never appends.
    let lock = store.lock(&id, LOCK).await.unwrap();
    let _ = store.load(&id).await.unwrap();
    drop(lock);
    assert_eq!(store.load(&id).await.unwrap(), before);

    // A session that never got a whole turn does not exist at all.
    let fresh = SessionId::generate();
    drop(store.lock(&fresh, LOCK).await.unwrap());
    assert_eq!(store.load(&fresh).await.unwrap(), None);
}

pub(crate) async fn idle_sessions_expire(fixture: &Fixture) {
    let store = fixture.store(Duration::from_secs(1)).await;
    let id = SessionId::generate();
    append(&*store, &id, "m", &turn(1)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    append(&*store, &id, "m", &turn(2)).await; // refreshes the expiry
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = store
        .load(&id)
        .await
        .unwrap()
        .expect("refreshed by the append");
    assert_eq!(live.messages.len(), 10);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(store.load(&id).await.unwrap(), None, "expired");
    assert!(!store.delete(&id).await.unwrap());
    if let Some(count) = store.count().await.unwrap() {
        assert_eq!(count, 0);
    }
    // Appending again starts a new session.
    append(&*store, &id, "m", &turn(3)).await;
    let again = store.load(&id).await.unwrap().expect("new session");
    assert_eq!(again.messages, turn(3));
}

pub(crate) async fn delete_removes_a_session(fixture: &Fixture) {
    let store = fixture.default_store().await;
    let id = SessionId::generate();
    let keep = SessionId::generate();
    append(&*store, &id, "m", &turn(1)).await;
    append(&*store, &keep, "m", &turn(1)).await;
    assert!(store.delete(&id).await.unwrap());
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert!(!store.delete(&id).await.unwrap());
    assert!(!store.delete(&SessionId::generate()).await.unwrap());
    assert!(
        store.load(&keep).await.unwrap().is_some(),
        "others untouched"
    );
    append(&*store, &id, "m", &turn(2)).await;
    assert_eq!(store.load(&id).await.unwrap().unwrap().messages, turn(2));
}

pub(crate) async fn concurrent_turns_are_serialised(fixture: &Fixture) {
    let store = fixture.default_store().await;
    let id = SessionId::generate();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let store = Arc::clone(&store);
            let id = id.clone();
            tokio::spawn(async move {
                let lock = store.lock(&id, Duration::from_secs(60)).await.unwrap();
                let seen = store
                    .load(&id)
                    .await
                    .unwrap()
                    .map_or(0, |s| s.messages.len());
                tokio::task::yield_now().await;
                let after = store.append_turn(&lock, "m", &turn(n)).await.unwrap();
                assert_eq!(after, seen + 5, "nobody wrote while we held the lock");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let session = store.load(&id).await.unwrap().unwrap();
    assert_eq!(session.messages.len(), 100);
    let mut numbers: Vec<usize> = session
        .messages
        .chunks(5)
        .map(|chunk| {
            let n: usize = chunk[0].content["question ".len()..].parse().unwrap();
            assert_eq!(chunk, turn(n), "turn {n} is whole and not interleaved");
            n
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..20).collect::<Vec<_>>(),
        "every turn present once"
    );
}

pub(crate) async fn second_locker_times_out_busy(fixture: &Fixture) {
    let store = fixture.default_store().await;
    let id = SessionId::generate();
    let first = store.lock(&id, LOCK).await.unwrap();
    let started = std::time::Instant::now();
    let err = store
        .lock(&id, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, SessionError::Busy { ref id, .. } if *id == first.id().clone()));
    let text = err.to_string();
    assert!(
        text.contains(id.as_str()) && text.contains("in use"),
        "{text}"
    );
    // Other sessions are not blocked.
    drop(
        store
            .lock(&SessionId::generate(), Duration::from_millis(300))
            .await
            .unwrap(),
    );
    drop(first);
    let second = store.lock(&id, LOCK).await.unwrap();
    store.append_turn(&second, "m", &turn(1)).await.unwrap();
}

/// A pending record: stored, read back, answered once (a second answer and an answer after
/// expiry are refused), listed by session, removed; it expires by itself. A second store
/// instance on a shared backend sees and answers the same records.
pub(crate) async fn pending_records_are_answered_once_and_expire(fixture: &Fixture) {
    let store = fixture.default_store().await;
    let other = if fixture.shared {
        fixture.default_store().await
    } else {
        store.clone()
    };
    let session = SessionId::generate().to_string();
    let record = |id: &str, ms: i64| PendingRecord {
        id: id.to_string(),
        session: Some(session.clone()),
        kind: "elicitation".into(),
        body: r#"{"message":"Your name?","quote":"\"x\""}"#.into(),
        answer: None,
        expires_at_ms: now_millis() + ms,
    };
    let id = format!("p_{}", SessionId::generate());
    let later = format!("p_{}", SessionId::generate());
    store.put_pending(&record(&id, 60_000)).await.unwrap();
    store.put_pending(&record(&later, 120_000)).await.unwrap();
    let read = other.pending(&id).await.unwrap().expect("stored");
    assert_eq!(
        (read.kind.as_str(), read.answer.as_deref()),
        ("elicitation", None)
    );
    assert!(read.expires_at_ms > now_millis() + 50_000, "{read:?}");
    assert_eq!(read.body, record(&id, 0).body, "the body round-trips");
    assert_eq!(read.session.as_deref(), Some(session.as_str()));

    let listed: Vec<String> = store
        .session_pending(&session)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [id.clone(), later.clone()], "oldest expiry first");

    assert!(
        other
            .answer_pending(&id, r#"{"action":"decline"}"#)
            .await
            .unwrap()
    );
    assert!(
        !store
            .answer_pending(&id, r#"{"action":"accept"}"#)
            .await
            .unwrap(),
        "answered once"
    );
    assert_eq!(
        store.pending(&id).await.unwrap().unwrap().answer.as_deref(),
        Some(r#"{"action":"decline"}"#)
    );
    store.remove_pending(&id).await.unwrap();
    assert_eq!(other.pending(&id).await.unwrap(), None);
    assert!(!store.answer_pending(&id, "{}").await.unwrap(), "gone");
    assert_eq!(store.session_pending(&session).await.unwrap().len(), 1);

    let short = format!("p_{}", SessionId::generate());
    store.put_pending(&record(&short, 300)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.pending(&short).await.unwrap(), None, "expired");
    assert!(
        !other.answer_pending(&short, "{}").await.unwrap(),
        "expired: no answer"
    );
    assert!(!store.answer_pending("p_unknown", "{}").await.unwrap());
}
