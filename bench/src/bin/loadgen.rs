//! The bench's load client: closed-loop unary requests over HTTP (OpenAI JSON) or gRPC
//! (`ChatService/Chat`), concurrent streams (SSE or `StreamChat`) with per-chunk timing, and
//! session filling. Every command prints one JSON object on stdout.
//!
//! ```text
//! loadgen unary   --target http|grpc --url U [--concurrency 1] [--requests N | --duration S]
//!                 [--warmup 50] [--user SPEC] [--session-prefix P --session-count K]
//!                 [--history-turns N] [--background-history N --background-chars C]
//! loadgen stream  --target http|grpc --url U --streams N --pace-ms 20 --deltas 64 [--user SPEC]
//! loadgen sessions --url U --sessions N --turns T [--concurrency 16] [--prefix P] [--user SPEC]
//! ```
//! `--url` is the base URL (`http://127.0.0.1:PORT/v1` for HTTP, `http://127.0.0.1:PORT` for
//! gRPC). Closed loop: each of `concurrency` workers sends its next request when the last
//! one has answered. With `--background-history N`, one more worker sends long-history turns
//! (N earlier pairs of about C characters each) back to back while the measured requests
//! run; only the measured requests are timed (the p99 of small requests during long turns).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use mcp_chat_bench::{Args, summarize};
use serde_json::{Value, json};

pub mod pb {
    tonic::include_proto!("mcpchat.v1");
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args = Args::parse(true);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.get("workers", 1usize))
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let result = runtime.block_on(async {
        match args.command.as_deref() {
            Some("unary") => unary(&args).await,
            Some("stream") => stream(&args).await,
            Some("sessions") => sessions(&args).await,
            _ => Err("usage: loadgen unary|stream|sessions --target http|grpc --url U …".into()),
        }
    });
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(1)
}

/// One client of either kind; cheap to clone.
#[derive(Clone)]
enum Client {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Grpc(pb::chat_service_client::ChatServiceClient<tonic::transport::Channel>),
}

fn http_client() -> Result<reqwest::Client, Error> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?)
}

async fn clients(args: &Args, n: usize) -> Result<Vec<Client>, Error> {
    let url = args.str("url", "http://127.0.0.1:8000/v1");
    match args.str("target", "http").as_str() {
        "http" => {
            let client = http_client()?;
            let url = format!("{url}/chat/completions");
            Ok(vec![Client::Http { client, url }; n])
        }
        "grpc" => {
            // Up to 8 HTTP/2 connections, shared round-robin by the workers.
            let mut channels = Vec::new();
            for _ in 0..n.clamp(1, 8) {
                let channel = tonic::transport::Endpoint::from_shared(url.clone())?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                channels.push(pb::chat_service_client::ChatServiceClient::new(channel));
            }
            Ok((0..n)
                .map(|i| Client::Grpc(channels[i % channels.len()].clone()))
                .collect())
        }
        other => Err(format!("--target {other:?}: http or grpc").into()),
    }
}

/// The conversation sent: `history` earlier (user, assistant) pairs and one user message;
/// with `pad`, each earlier message carries about that many characters of text.
fn messages(history: usize, pad: usize) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(history * 2 + 1);
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(pad / 56 + 1);
    let filler = &filler[..pad.min(filler.len())];
    for i in 0..history {
        out.push(("user", format!("question {i} {filler}")));
        out.push(("assistant", format!("answer {i} {filler}")));
    }
    out.push(("user", "hi".to_string()));
    out
}

struct Shape {
    user: Option<String>,
    history: usize,
    /// Characters of text in each earlier message.
    pad: usize,
    stream: bool,
}

async fn send(client: &Client, shape: &Shape, session: Option<&str>) -> Result<(), Error> {
    match client {
        Client::Http { client, url } => {
            let msgs: Vec<Value> = messages(shape.history, shape.pad)
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect();
            let mut body = json!({"model": "m", "messages": msgs, "stream": shape.stream});
            if let Some(u) = &shape.user {
                body["user"] = json!(u);
            }
            let mut req = client.post(url).json(&body);
            if let Some(s) = session {
                req = req.header("x-session-id", s);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let bytes = resp.bytes().await?;
            if !status.is_success() {
                return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)).into());
            }
            Ok(())
        }
        Client::Grpc(client) => {
            let request = grpc_request(shape, session);
            client.clone().chat(request).await?;
            Ok(())
        }
    }
}

fn grpc_request(shape: &Shape, session: Option<&str>) -> pb::ChatRequest {
    let messages = messages(shape.history, shape.pad)
        .into_iter()
        .map(|(role, content)| pb::Message {
            role: if role == "user" {
                pb::Role::User as i32
            } else {
                pb::Role::Assistant as i32
            },
            content,
            ..Default::default()
        })
        .collect();
    pb::ChatRequest {
        model: "m".into(),
        messages,
        session_id: session.map(str::to_string),
        user: shape.user.clone(),
        ..Default::default()
    }
}

async fn unary(args: &Args) -> Result<Value, Error> {
    let concurrency = args.get("concurrency", 1usize).max(1);
    let requests: Option<usize> = args.opt("requests").and_then(|v| v.parse().ok());
    let duration = Duration::from_secs_f64(args.get("duration", 5.0));
    let warmup = args.get("warmup", 50usize);
    let session_prefix = args.opt("session-prefix");
    let session_count = args.get("session-count", 1usize).max(1);
    let shape = Arc::new(Shape {
        user: args.opt("user"),
        history: args.get("history-turns", 0usize),
        pad: 0,
        stream: false,
    });
    let background_history = args.get("background-history", 0usize);
    let background_client = if background_history > 0 {
        clients(args, 1).await?.pop()
    } else {
        None
    };
    let clients = clients(args, concurrency).await?;
    // Warm-up: connections opened, caches filled; not counted. Skipped with sessions,
    // whose requests would change what is measured.
    if session_prefix.is_none() {
        for i in 0..warmup {
            send(&clients[i % clients.len()], &shape, None).await?;
        }
    }
    let issued = Arc::new(AtomicUsize::new(0));
    // The long-history turns beside the measured requests, until those are done.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = if let Some(client) = background_client {
        let long = Shape {
            user: args.opt("user"),
            history: background_history,
            pad: args.get("background-chars", 2000usize),
            stream: false,
        };
        let stop = stop.clone();
        // The first long turn runs before the clock starts, so every measured request
        // shares the service with one.
        send(&client, &long, None).await?;
        Some(tokio::spawn(async move {
            let (mut done, mut lat) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if send(&client, &long, None).await.is_ok() {
                    done += 1;
                    lat.push(t.elapsed());
                }
            }
            (done, summarize(&mut lat))
        }))
    } else {
        None
    };
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for client in clients {
        let (issued, shape, prefix) = (issued.clone(), shape.clone(), session_prefix.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                match requests {
                    Some(n) if i >= n => break,
                    None if Instant::now() >= deadline => break,
                    _ => {}
                }
                let session = prefix
                    .as_ref()
                    .map(|p| format!("{p}-{}", i % session_count));
                let t = Instant::now();
                match send(&client, &shape, session.as_deref()).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, e, f) = t.await?;
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let background = match background {
        Some(task) => {
            let (done, latency) = task.await?;
            json!({"requests": done, "history_turns": background_history, "latency": latency})
        }
        None => Value::Null,
    };
    let ok = lat.len();
    let summary = summarize(&mut lat);
    Ok(json!({
        "requests": ok, "errors": errors, "first_error": first_error,
        "elapsed_s": elapsed, "rps": ok as f64 / elapsed, "concurrency": concurrency,
        "latency": summary, "background": background,
    }))
}

/// What one stream saw.
#[derive(Default)]
struct StreamSeen {
    ttfb: Option<Duration>,
    gaps: Vec<Duration>,
    chunks: usize,
    error: Option<String>,
}

async fn one_stream(client: Client, shape: Arc<Shape>) -> StreamSeen {
    let mut seen = StreamSeen::default();
    let start = Instant::now();
    let mut last: Option<Instant> = None;
    let mut on_delta = |seen: &mut StreamSeen| {
        let now = Instant::now();
        match last {
            None => seen.ttfb = Some(now - start),
            Some(l) => seen.gaps.push(now - l),
        }
        last = Some(now);
        seen.chunks += 1;
    };
    let result: Result<(), Error> = async {
        match &client {
            Client::Http { client, url } => {
                let mut body = json!({"model": "m", "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]});
                if let Some(u) = &shape.user {
                    body["user"] = json!(u);
                }
                let resp = client.post(url).json(&body).send().await?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()).into());
                }
                let mut bytes = resp.bytes_stream();
                let mut buf: Vec<u8> = Vec::new();
                while let Some(piece) = bytes.next().await {
                    buf.extend_from_slice(&piece?);
                    while let Some(end) = find(&buf, b"\n\n") {
                        let event: Vec<u8> = buf.drain(..end + 2).collect();
                        if is_content_delta(&event) {
                            on_delta(&mut seen);
                        }
                    }
                }
                Ok(())
            }
            Client::Grpc(client) => {
                let request = grpc_request(&shape, None);
                let mut events = client.clone().stream_chat(request).await?.into_inner();
                while let Some(event) = events.message().await? {
                    if let Some(pb::chat_event::Event::Content(d)) = event.event
                        && !d.text.is_empty()
                    {
                        on_delta(&mut seen);
                    }
                }
                Ok(())
            }
        }
    }
    .await;
    if let Err(e) = result {
        seen.error = Some(e.to_string());
    }
    seen
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An SSE event (`data: {chunk}`) whose first choice carries non-empty content.
fn is_content_delta(event: &[u8]) -> bool {
    let text = String::from_utf8_lossy(event);
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .any(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
}

async fn stream(args: &Args) -> Result<Value, Error> {
    let streams = args.get("streams", 64usize).max(1);
    let pace = Duration::from_millis(args.get("pace-ms", 20u64));
    let deltas = args.get("deltas", 64usize);
    let shape = Arc::new(Shape {
        user: args.opt("user"),
        history: 0,
        pad: 0,
        stream: true,
    });
    let clients = clients(args, streams).await?;
    // Warm-up: one stream, so connections and code paths are hot.
    let _ = one_stream(clients[0].clone(), shape.clone()).await;
    let mut tasks = Vec::new();
    for client in clients {
        tasks.push(tokio::spawn(one_stream(client, shape.clone())));
    }
    let (mut ttfb, mut gaps) = (Vec::new(), Vec::new());
    let (mut chunks, mut errors, mut stalled) = (0usize, 0usize, 0usize);
    let mut first_error = None;
    let mut max_gap = Duration::ZERO;
    for t in tasks {
        let s = t.await?;
        if let Some(e) = s.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
        let worst = s.gaps.iter().copied().max().unwrap_or_default();
        max_gap = max_gap.max(worst);
        if worst > pace * 2 || s.chunks != deltas {
            stalled += 1;
        }
        ttfb.extend(s.ttfb);
        gaps.extend(s.gaps);
        chunks += s.chunks;
    }
    Ok(json!({
        "streams": streams, "errors": errors, "first_error": first_error,
        "chunks_expected": streams * deltas, "chunks": chunks,
        "stalled_streams": stalled, "max_gap_us": max_gap.as_secs_f64() * 1e6,
        "ttfb": summarize(&mut ttfb), "gap": summarize(&mut gaps),
    }))
}

async fn sessions(args: &Args) -> Result<Value, Error> {
    let count = args.get("sessions", 100usize);
    let turns = args.get("turns", 10usize);
    let concurrency = args.get("concurrency", 16usize).max(1);
    let prefix = args.str("prefix", "bench");
    let shape = Arc::new(Shape {
        user: args.opt("user"),
        history: 0,
        pad: 0,
        stream: false,
    });
    let client = Client::Http {
        client: http_client()?,
        url: format!(
            "{}/chat/completions",
            args.str("url", "http://127.0.0.1:8000/v1")
        ),
    };
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, shape, prefix) =
            (client.clone(), next.clone(), shape.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut first) = (0usize, 0usize, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let session = format!("{prefix}-{i}");
                for _ in 0..turns {
                    match send(&client, &shape, Some(&session)).await {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            }
            (ok, errors, first)
        }));
    }
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    for t in tasks {
        let (o, e, f) = t.await?;
        ok += o;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    Ok(
        json!({"sessions": count, "turns": turns, "requests": ok, "errors": errors,
        "first_error": first_error, "elapsed_s": start.elapsed().as_secs_f64()}),
    )
}
