//! The environment variables the service reads, each mapped to one config key.
//!
//! The seed's names (`OPENAI_API_KEY`, `PORT`, …) keep working exactly; everything else
//! is `MCP_CHAT_` + a flat upper-case name. This table is the single source for the
//! environment layer, the `.env` layer and the README's configuration reference.

/// One environment variable and the config key it sets.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    /// `section.key` in `mcp-chat.toml`.
    pub key: &'static str,
}

const fn var(name: &'static str, key: &'static str) -> EnvVar {
    EnvVar { name, key }
}

/// Every variable, in README order.
pub const ENV_VARS: &[EnvVar] = &[
    var("HOST", "server.host"),
    var("PORT", "server.port"),
    var("GRPC_PORT", "server.grpc_port"),
    var("API_KEYS", "server.api_keys"),
    var("MCP_CHAT_CORS_ALLOW_ORIGINS", "server.cors_allow_origins"),
    var("MCP_CHAT_MAX_BODY_BYTES", "server.max_body_bytes"),
    var("MCP_CHAT_SHUTDOWN_GRACE", "server.shutdown_grace"),
    var("MCP_CHAT_MAX_IN_FLIGHT", "server.max_in_flight"),
    var("MCP_CHAT_HEADER_READ_TIMEOUT", "server.header_read_timeout"),
    var("MCP_CHAT_BODY_READ_TIMEOUT", "server.body_read_timeout"),
    var("MCP_CHAT_UI", "server.ui"),
    var("OPENAI_BASE_URL", "upstream.base_url"),
    var("OPENAI_API_KEY", "upstream.api_key"),
    var("DEFAULT_MODEL", "upstream.default_model"),
    var(
        "MCP_CHAT_UPSTREAM_CONNECT_TIMEOUT",
        "upstream.connect_timeout",
    ),
    var(
        "MCP_CHAT_UPSTREAM_FIRST_BYTE_TIMEOUT",
        "upstream.first_byte_timeout",
    ),
    var("MCP_CHAT_UPSTREAM_IDLE_TIMEOUT", "upstream.idle_timeout"),
    var("MCP_CHAT_UPSTREAM_TOTAL_TIMEOUT", "upstream.total_timeout"),
    var("MCP_CHAT_UPSTREAM_MAX_RETRIES", "upstream.max_retries"),
    var("SERVERS_CONFIG", "mcp.servers_config"),
    var("MCP_CHAT_TOOL_PREFIX", "mcp.tool_prefix"),
    var("MCP_CHAT_TOOL_CALL_TIMEOUT", "mcp.call_timeout"),
    var("MCP_CHAT_TOOL_CALL_MAX_DURATION", "mcp.call_max_duration"),
    var("MCP_CHAT_TOOL_CALL_RETRIES", "mcp.call_retries"),
    var("MCP_CHAT_MAX_TOOL_OUTPUT", "mcp.max_tool_output"),
    var("MCP_CHAT_MCP_STARTUP_TIMEOUT", "mcp.startup_timeout"),
    var(
        "MCP_CHAT_MCP_MAX_RESTART_BACKOFF",
        "mcp.max_restart_backoff",
    ),
    var("MCP_CHAT_REQUEST_SERVERS", "mcp.request_servers"),
    var("MCP_CHAT_REQUEST_SERVER_HOSTS", "mcp.request_server_hosts"),
    var(
        "MCP_CHAT_REQUEST_SERVER_PRIVATE",
        "mcp.request_server_private",
    ),
    var("MCP_CHAT_MCP_SERVE", "mcp.serve"),
    var("MCP_CHAT_MCP_SERVE_CHAT_TOOL", "mcp.serve_chat_tool"),
    var(
        "MCP_CHAT_MCP_SERVE_ALLOWED_HOSTS",
        "mcp.serve_allowed_hosts",
    ),
    var("MCP_CHAT_TOKEN_KEY", "mcp.token_key"),
    var("MCP_CHAT_SYSTEM_PROMPT", "agent.system_prompt"),
    var("MCP_CHAT_SYSTEM_PROMPT_FILE", "agent.system_prompt_file"),
    var("MCP_CHAT_MAX_TOOL_ITERATIONS", "agent.max_tool_iterations"),
    var("MCP_CHAT_MAX_SAMPLING_TOKENS", "agent.max_sampling_tokens"),
    var("MCP_CHAT_APPROVAL_TIMEOUT", "agent.approval_timeout"),
    var("MCP_CHAT_EXPOSE_TOOL_EVENTS", "agent.expose_tool_events"),
    var("MCP_CHAT_SESSION_STORE", "sessions.store"),
    var("MCP_CHAT_SESSION_TTL", "sessions.ttl"),
    var("MCP_CHAT_SESSION_LOCK_TIMEOUT", "sessions.lock_timeout"),
    var("LOG_LEVEL", "log.level"),
    var("LOG_FORMAT", "log.format"),
];

/// The config key an environment variable sets, if it is one of ours.
pub fn key_for(name: &str) -> Option<&'static str> {
    ENV_VARS
        .iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
        .map(|v| v.key)
}

/// The environment variable that sets a config key (for error messages).
pub fn name_for(key: &str) -> Option<&'static str> {
    ENV_VARS.iter().find(|v| v.key == key).map(|v| v.name)
}

/// Variables whose values are free text and must not be parsed as numbers or arrays.
pub fn is_text(key: &str) -> bool {
    matches!(
        key,
        "upstream.api_key"
            | "upstream.base_url"
            | "upstream.default_model"
            | "server.host"
            | "server.api_keys"
            | "server.cors_allow_origins"
            | "agent.system_prompt"
            | "agent.system_prompt_file"
            | "mcp.servers_config"
            | "mcp.request_servers"
            | "mcp.request_server_hosts"
            | "mcp.serve_allowed_hosts"
            | "sessions.store"
            | "log.level"
    )
}
