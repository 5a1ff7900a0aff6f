//! Sessions end to end on the real binary: memory across calls on all three APIs, reading
//! and deleting, a busy session, SQLite across a restart and across SIGKILL mid-turn, and
//! two processes sharing one Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/service.rs"]
mod service;
#[path = "support/upstream.rs"]
mod upstream;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mcp_chat::pb::{self};
use reqwest::Client;
use serde_json::{Value, json};
use service::{Service, dir_with_fixture, external, free_port, grpc};
use tonic::Code;
use upstream::{Answer, FakeUpstream, Reply};

fn env<'a>(fake: &'a FakeUpstream, store: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OPENAI_BASE_URL", fake.base_url.as_str()),
        ("DEFAULT_MODEL", "test-model"),
        ("MCP_CHAT_SESSION_STORE", store),
    ]
}

fn turn(text: &str, session: Option<&str>) -> pb::ChatRequest {
    pb::ChatRequest {
        messages: vec![pb::Message {
            role: pb::Role::User.into(),
            content: text.into(),
            ..Default::default()
        }],
        session_id: session.map(String::from),
        new_session: session.is_none(),
        ..Default::default()
    }
}

/// The user and assistant texts the upstream saw in request `n`.
fn seen_texts(fake: &FakeUpstream, n: usize) -> Vec<String> {
    fake.requests()[n].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| {
            format!(
                "{}: {}",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn grpc_sessions_continue_and_can_be_read_and_deleted() {
    let fake = FakeUpstream::with([Reply::text(&["Hi Ann"]), Reply::text(&["You are Ann"])]).await;
    let svc = Service::start(&env(&fake, "memory://")).await;
    let mut client = grpc(&svc).await;
    let first = client
        .chat(turn("I am Ann", None))
        .await
        .unwrap()
        .into_inner();
    let id = first.session_id.clone().unwrap();
    assert!(id.len() >= 32, "unguessable id: {id}");
    let second = client
        .chat(turn("Who am I?", Some(&id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.session_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        seen_texts(&fake, 1),
        ["user: I am Ann", "assistant: Hi Ann", "user: Who am I?"]
    );

    let stored = client
        .get_session(pb::GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<_> = stored.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["I am Ann", "Hi Ann", "Who am I?", "You are Ann"]);
    assert_eq!(stored.model, "test-model");
    assert!(stored.created > 0 && stored.updated >= stored.created);

    client
        .delete_session(pb::DeleteSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap();
    let e = client
        .get_session(pb::GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .delete_session(pb::DeleteSessionRequest { session_id: id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client.chat(turn("x", Some("bad id!"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn http_sessions_on_the_simplified_and_openai_apis() {
    let fake = FakeUpstream::with([
        Reply::text(&["one"]),
        Reply::text(&["two"]),
        Reply::text(&["three"]),
    ])
    .await;
    let svc = Service::start(&env(&fake, "memory://")).await;
    let http = Client::new();
    let r: Value = svc
        .post_json(&http, "/chat", &json!({"message": "first"}))
        .await
        .json()
        .await
        .unwrap();
    let id = r["session_id"].as_str().unwrap().to_string();
    let r: Value = svc
        .post_json(
            &http,
            "/chat",
            &json!({"message": "second", "session_id": id}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["response"].as_str(), r["session_id"].as_str()),
        (Some("two"), Some(id.as_str()))
    );
    assert_eq!(
        seen_texts(&fake, 1),
        ["user: first", "assistant: one", "user: second"]
    );

    // The OpenAI API takes the session from a header and returns it in one.
    let body = json!({"messages": [{"role": "user", "content": "third"}]});
    let r = svc
        .post(&http, "/v1/chat/completions")
        .header("x-session-id", &id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-session-id"], id.as_str());
    assert_eq!(seen_texts(&fake, 2).len(), 5);

    let stored: Value = http
        .get(format!("{}/sessions/{id}", svc.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["messages"].as_array().unwrap().len(), 6, "{stored}");
    assert_eq!(
        stored["messages"][5],
        json!({"role": "assistant", "content": "three"})
    );
    let deleted = http
        .delete(format!("{}/sessions/{id}", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = http
        .get(format!("{}/sessions/{id}", svc.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_not_found");
}

#[tokio::test]
async fn a_busy_session_is_a_conflict() {
    let fake = FakeUpstream::with([
        Reply::text(&["slow", " answer"]).delay(Duration::from_millis(700)),
        Reply::text(&["x"]),
    ])
    .await;
    let mut all = env(&fake, "memory://");
    all.push(("MCP_CHAT_SESSION_LOCK_TIMEOUT", "200ms"));
    let svc = Service::start(&all).await;
    let http = Client::new();
    let url = format!("{}/chat", svc.http());
    // A streamed turn, so the fake's delay holds the session for a while.
    let slow = tokio::spawn({
        let (http, url) = (http.clone(), format!("{url}/stream"));
        async move {
            let r = http
                .post(url)
                .json(&json!({"message": "a", "session_id": "shared-1"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    });
    while fake.request_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let busy = http
        .post(&url)
        .json(&json!({"message": "b", "session_id": "shared-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 409);
    let body: Value = busy.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_busy", "{body}");
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("event: done"), "{text}");
}

#[tokio::test]
async fn sqlite_sessions_survive_a_restart_and_a_sigkill_mid_turn() {
    let fake = FakeUpstream::with([
        Reply::text(&["Hello Bob"]),
        Reply::answer(Answer::text(&[]).tool_call("c1", "slow", &["{\"ms\": 30000}"])),
        Reply::text(&["Your name is Bob"]),
    ])
    .await;
    let dir = dir_with_fixture();
    let store = format!("sqlite://{}/sessions.db", dir.path().display());
    let data = dir.path().to_path_buf();
    let mut svc = Service::start_in(dir, &env(&fake, &store), &[]).await;
    let id = grpc(&svc)
        .await
        .chat(turn("I am Bob", None))
        .await
        .unwrap()
        .into_inner()
        .session_id
        .unwrap();

    // A turn that calls a slow tool; kill -9 the service while the tool runs.
    let mut client = grpc(&svc).await;
    let pending = tokio::spawn({
        let id = id.clone();
        async move { client.chat(turn("Wait for it", Some(&id))).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.request_count() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    svc.signal("KILL");
    svc.wait_exit(Duration::from_secs(5)).await;
    assert!(pending.await.unwrap().is_err());

    // Restart on the same database: the killed turn is absent, the first one whole.
    let dir = tempfile::TempDir::new_in(&data).unwrap();
    let svc = Service::start_in(dir, &env(&fake, &store), &[]).await;
    let mut client = grpc(&svc).await;
    let stored = client
        .get_session(pb::GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<_> = stored.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["I am Bob", "Hello Bob"]);
    let r = client
        .chat(turn("What is my name?", Some(&id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message.unwrap().content, "Your name is Bob");
    assert_eq!(
        seen_texts(&fake, 2),
        [
            "user: I am Bob",
            "assistant: Hello Bob",
            "user: What is my name?"
        ]
    );
}

/// A `redis-server` on a free port, killed on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let binary = external(which("redis-server")?)?;
        let port = free_port();
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis(child, port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        // Let `external` report it (and fail under MCP_CHAT_E2E_REQUIRED=1).
        return Some(std::path::PathBuf::from(format!("/nonexistent/{name}")));
    }
    found
}

#[tokio::test]
async fn two_processes_share_sessions_through_redis() {
    let Some(redis) = Redis::start() else { return };
    let replies =
        (0..6).map(|i| Reply::text(&[&format!("answer {i}")]).delay(Duration::from_millis(100)));
    let fake = FakeUpstream::with(replies).await;
    let store = format!("redis://127.0.0.1:{}/0", redis.1);
    let a = Service::start(&env(&fake, &store)).await;
    let b = Service::start(&env(&fake, &store)).await;
    let (mut ca, mut cb) = (grpc(&a).await, grpc(&b).await);

    // Alternate turns between the replicas.
    let id = ca
        .chat(turn("t0", None))
        .await
        .unwrap()
        .into_inner()
        .session_id
        .unwrap();
    cb.chat(turn("t1", Some(&id))).await.unwrap();
    ca.chat(turn("t2", Some(&id))).await.unwrap();
    assert_eq!(
        seen_texts(&fake, 2).len(),
        5,
        "replica A saw the turn B stored"
    );

    // Concurrent turns from both replicas are serialised and both stored whole.
    let (ra, rb) = tokio::join!(ca.chat(turn("a", Some(&id))), cb.chat(turn("b", Some(&id))));
    ra.unwrap();
    rb.unwrap();
    let stored = ca
        .get_session(pb::GetSessionRequest { session_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.messages.len(), 10);
    for pair in stored.messages.chunks(2) {
        assert_eq!(pair[0].role(), pb::Role::User, "{pair:?}");
        assert_eq!(pair[1].role(), pb::Role::Assistant, "{pair:?}");
        assert!(pair[1].content.starts_with("answer "));
    }
    let last_users: Vec<_> = stored.messages[6..]
        .iter()
        .step_by(2)
        .map(|m| m.content.as_str())
        .collect();
    assert!(
        last_users == ["a", "b"] || last_users == ["b", "a"],
        "{last_users:?}"
    );
}
