//! Times MCP `tools/call` round trips with rmcp's client, the way the hub (`src/mcp`) talks
//! to its servers: stdio child process or streamable HTTP, one call at a time after warm-up.
//!
//! ```text
//! mcp-call --stdio -- COMMAND [ARGS…]   |   mcp-call --http URL
//!          [--tool echo] [--calls 500] [--warmup 50]
//! ```
//! Prints one JSON object (`latency` in microseconds) on stdout.

use std::time::Instant;

use mcp_chat_bench::{Args, summarize};
use rmcp::{ServiceExt, model::CallToolRequestParams, transport::TokioChildProcess};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args = Args::parse(false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    match runtime.block_on(run(&args)) {
        Ok(v) => println!("{v}"),
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("mcp-call: {msg}");
    std::process::exit(1)
}

async fn run(args: &Args) -> Result<serde_json::Value, Error> {
    let service = match args.opt("http") {
        Some(url) => {
            let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url);
            ().serve(transport).await?
        }
        None => {
            let (program, rest) = args
                .rest
                .split_first()
                .ok_or("give --http URL or -- COMMAND")?;
            let mut command = tokio::process::Command::new(program);
            command.args(rest);
            ().serve(TokioChildProcess::new(command)?).await?
        }
    };
    let tool = args.str("tool", "echo");
    let calls = args.get("calls", 500usize);
    let warmup = args.get("warmup", 50usize);
    let arguments = json!({"text": "bench"});
    let params = || {
        CallToolRequestParams::new(tool.clone())
            .with_arguments(arguments.as_object().cloned().unwrap_or_default())
    };
    for _ in 0..warmup {
        service.call_tool(params()).await?;
    }
    let mut lat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        service.call_tool(params()).await?;
        lat.push(t.elapsed());
    }
    let _ = service.cancel().await;
    Ok(json!({"client": "rmcp", "calls": calls, "latency": summarize(&mut lat)}))
}
