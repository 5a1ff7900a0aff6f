//! `mcp-chat chat`: a terminal client of a running service (the seed's `client.py`), over
//! gRPC (`StreamChat`, the default) or HTTP (`POST /chat/stream`). It streams the answer as
//! it arrives, prints a line per tool call with its outcome and time (on stderr, so a
//! script's stdout holds only the answer), keeps a session, and has a one-shot form.

use std::io::{BufRead, Write};

use clap::Args;
use futures::StreamExt;
use mcp_chat::pb::{self, chat_event::Event, chat_service_client::ChatServiceClient};
use serde_json::Value;

#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    /// The service's HTTP base URL (uses the Simplified streaming API).
    #[arg(long, conflicts_with = "grpc")]
    pub url: Option<String>,
    /// The service's gRPC address (default http://127.0.0.1:50051).
    #[arg(long)]
    pub grpc: Option<String>,
    /// Continue this session (default: a new one).
    #[arg(long)]
    pub session: Option<String>,
    /// The model id (default: the service's default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Ask one question, print the answer and exit.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    /// API key for a service that has API_KEYS set.
    #[arg(long, env = "MCP_CHAT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// What one turn printed and left behind.
struct Turn {
    session_id: Option<String>,
}

pub async fn run(args: ChatArgs) -> Result<(), String> {
    let mut session = args.session.clone();
    let target = match &args.url {
        Some(url) => Target::Http(
            reqwest::Client::new(),
            url.trim_end_matches('/').to_string(),
        ),
        None => {
            let addr = args
                .grpc
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:50051".into());
            let addr = if addr.contains("://") {
                addr
            } else {
                format!("http://{addr}")
            };
            let client = ChatServiceClient::connect(addr.clone())
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            Target::Grpc(client)
        }
    };
    let mut target = target;
    if let Some(message) = &args.message {
        target.turn(&args, &mut session, message).await?;
        return Ok(());
    }
    eprintln!("mcp-chat: type a message; `/new` starts a new session, `quit` or `exit` leaves.");
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "quit" | "exit" => return Ok(()),
            "/new" => {
                session = None;
                eprintln!("(new session)");
            }
            message => {
                if let Err(e) = target.turn(&args, &mut session, message).await {
                    eprintln!("error: {e}");
                }
            }
        }
    }
}

enum Target {
    Grpc(ChatServiceClient<tonic::transport::Channel>),
    Http(reqwest::Client, String),
}

impl Target {
    async fn turn(
        &mut self,
        args: &ChatArgs,
        session: &mut Option<String>,
        message: &str,
    ) -> Result<(), String> {
        let turn = match self {
            Self::Grpc(client) => grpc_turn(client, args, session.clone(), message).await?,
            Self::Http(client, url) => {
                http_turn(client, url, args, session.clone(), message).await?
            }
        };
        if turn.session_id.is_some() {
            *session = turn.session_id;
        }
        Ok(())
    }
}

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn tool_line(name: &str, ok: bool, ms: u64, result: &str) {
    let first: String = result
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect();
    eprintln!(
        "  [tool {name}: {} in {ms} ms] {first}",
        if ok { "ok" } else { "failed" }
    );
}

async fn grpc_turn(
    client: &mut ChatServiceClient<tonic::transport::Channel>,
    args: &ChatArgs,
    session_id: Option<String>,
    message: &str,
) -> Result<Turn, String> {
    let mut request = tonic::Request::new(pb::ChatRequest {
        model: args.model.clone().unwrap_or_default(),
        messages: vec![pb::Message {
            role: pb::Role::User.into(),
            content: message.into(),
            ..Default::default()
        }],
        new_session: session_id.is_none(),
        session_id,
        ..Default::default()
    });
    if let Some(key) = &args.api_key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| "the API key is not a valid header value".to_string())?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut stream = client
        .stream_chat(request)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut turn = Turn { session_id: None };
    while let Some(event) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        match event.event {
            Some(Event::Content(c)) => out(&c.text),
            Some(Event::ToolCallFinished(t)) => tool_line(&t.name, t.ok, t.duration_ms, &t.result),
            Some(Event::Response(r)) => turn.session_id = r.session_id,
            Some(
                Event::Start(_)
                | Event::ToolCallStarted(_)
                | Event::ToolCallProgress(_)
                | Event::Usage(_)
                | Event::ClientToolCall(_)
                | Event::ElicitationRequired(_)
                | Event::ApprovalRequired(_),
            )
            | None => {}
        }
    }
    out("\n");
    Ok(turn)
}

async fn http_turn(
    client: &reqwest::Client,
    url: &str,
    args: &ChatArgs,
    session_id: Option<String>,
    message: &str,
) -> Result<Turn, String> {
    let body = serde_json::json!({"message": message, "session_id": session_id, "model": args.model.clone().unwrap_or_default()});
    let mut request = client.post(format!("{url}/chat/stream")).json(&body);
    if let Some(key) = &args.api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        return Err(format!(
            "{status}: {}",
            body["error"]["message"].as_str().unwrap_or("no message")
        ));
    }
    let mut events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
    let mut turn = Turn { session_id: None };
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| format!("the stream broke: {e}"))?;
        let data: Value = event
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        match event.event.as_deref() {
            Some("delta") => out(data["text"].as_str().unwrap_or_default()),
            Some("tool_result") => tool_line(
                data["name"].as_str().unwrap_or_default(),
                data["ok"].as_bool().unwrap_or(false),
                data["duration_ms"].as_u64().unwrap_or(0),
                data["result"].as_str().unwrap_or_default(),
            ),
            Some("done") => turn.session_id = data["session_id"].as_str().map(String::from),
            Some("error") => {
                return Err(data["error"]["message"]
                    .as_str()
                    .unwrap_or("error")
                    .to_string());
            }
            _ => {}
        }
    }
    out("\n");
    Ok(turn)
}
