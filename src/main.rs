//! The `mcp-chat` binary: parses the command line and hands over to the library.

mod cli;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Args, Parser, Subcommand};
use mcp_chat::{
    Config,
    config::{self, Overrides},
    server::{self, Listeners},
    telemetry,
};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: the request path allocates many small
/// short-lived buffers (headers, JSON, futures), and glibc's malloc/free were the largest
/// frames of the hot-path profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mcp-chat",
    version,
    about = "An LLM and the tools of many MCP servers behind one gRPC + HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration files: global, so they go before or after any subcommand.
    #[command(flatten)]
    config: ConfigArgs,
    /// `mcp-chat --port P` serves, as `mcp-chat serve --port P` does.
    #[command(flatten)]
    listen: ListenArgs,
}

// Parsed once at start; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve(ListenArgs),
    /// Validate the configuration and print the effective values, secrets redacted.
    CheckConfig,
    /// List the MCP servers and their tools, or call one tool (`tools call SERVER TOOL ARGS`).
    Tools(cli::tools::ToolsArgs),
    /// Chat with a running service from the terminal (interactive, or one-shot with -m).
    Chat(cli::chat::ChatArgs),
    /// OAuth to remote MCP servers: `auth login SERVER`, `auth status`, `auth logout SERVER`.
    Auth(cli::auth::AuthArgs),
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// TOML config file (default: ./mcp-chat.toml when it exists).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// MCP servers file in the `mcpServers` format (default: ./servers_config.json).
    #[arg(long, value_name = "PATH", global = true)]
    servers_config: Option<PathBuf>,
    /// `.env` file to read (default: ./.env when it exists).
    #[arg(long, value_name = "PATH", global = true)]
    env_file: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct ListenArgs {
    /// Address both listeners bind to.
    #[arg(long)]
    host: Option<String>,
    /// HTTP port.
    #[arg(long)]
    port: Option<u16>,
    /// gRPC port.
    #[arg(long)]
    grpc_port: Option<u16>,
}

/// What the configuration is loaded with: the files, and the listen flags of `serve`.
#[derive(Default)]
struct ServeArgs {
    config: ConfigArgs,
    listen: ListenArgs,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.config.clone(),
            dotenv_file: self.config.env_file.clone(),
            host: self.listen.host.clone(),
            port: self.listen.port,
            grpc_port: self.listen.grpc_port,
            servers_config: self.config.servers_config.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command {
        Some(Command::CheckConfig) => check_config(ServeArgs {
            config,
            ..ServeArgs::default()
        }),
        Some(Command::Serve(listen)) => serve(ServeArgs { config, listen }),
        Some(Command::Tools(args)) => tools(config, args),
        Some(Command::Chat(args)) => chat(args),
        Some(Command::Auth(args)) => match load(&ServeArgs {
            config,
            ..ServeArgs::default()
        }) {
            Ok(config) => {
                init_cli_logging();
                cli::auth::run(&args, &config)
            }
            Err(code) => code,
        },
        None => serve(ServeArgs {
            config,
            listen: cli.listen,
        }),
    }
}

fn load(args: &ServeArgs) -> Result<Config, ExitCode> {
    config::load(&args.overrides(), std::env::vars()).map_err(|e| {
        eprintln!("mcp-chat: {e}");
        ExitCode::from(2)
    })
}

fn check_config(args: ServeArgs) -> ExitCode {
    match load(&args) {
        Ok(config) => {
            let text = config.to_redacted_toml();
            let mut out = std::io::stdout().lock();
            let _ = std::io::Write::write_all(&mut out, text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Warnings on stderr for the command-line clients (`RUST_LOG` overrides).
fn init_cli_logging() {
    let filter = mcp_chat::telemetry::guard_secrets(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn tools(config: ConfigArgs, args: cli::tools::ToolsArgs) -> ExitCode {
    init_cli_logging();
    if let Some(url) = &args.url {
        let auth = match args.oauth.config() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("mcp-chat: {e}");
                return ExitCode::from(2);
            }
        };
        let servers = cli::tools::url_servers(url, &args.transport, Some(auth));
        // A one-off server: its tokens live as long as this command.
        return cli::tools::run(&args, &config::McpConfig::default(), &servers, async || {
            Ok(Arc::new(mcp_chat::mcp::oauth::TokenVault::in_memory()))
        });
    }
    match load(&ServeArgs {
        config,
        ..ServeArgs::default()
    }) {
        Ok(config) => cli::tools::run(&args, &config.mcp, &config.servers, async || {
            cli::auth::vault(&config).await
        }),
        Err(code) => code,
    }
}

fn chat(args: cli::chat::ChatArgs) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(cli::chat::run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-chat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match load(&args) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-chat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let telemetry = telemetry::init_service(&config.log);
        let listeners = Listeners::bind(&config).await?;
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            server::shutdown_signal().await;
            trigger.cancel();
        });
        let result = server::run(config, listeners, shutdown).await;
        // Last: flush the spans of the drain itself.
        telemetry.shutdown();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mcp-chat stopped");
            eprintln!("mcp-chat: {e}");
            ExitCode::FAILURE
        }
    }
}
