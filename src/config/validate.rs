//! Start-up validation: every rule the types cannot express, checked once, all problems
//! reported together with where each value came from. Also resolves the few values that
//! point elsewhere (a model's `api_key_env`, `system_prompt_file`).

use std::collections::HashSet;
use std::net::IpAddr;

use super::{Config, ConfigError, HostPattern, Problem, RequestServersMode, Secret};

pub(super) fn resolve_and_check(
    config: &mut Config,
    lookup: &dyn Fn(&str) -> Option<String>,
    origin: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            key: key.to_string(),
            origin: origin(key),
            message,
        });
    };

    let s = &config.server;
    if s.host.trim().is_empty() || (s.host.parse::<IpAddr>().is_err() && !is_hostname(&s.host)) {
        bad(
            "server.host",
            format!("{:?} is not an IP address or host name", s.host),
        );
    }
    if s.port != 0 && s.port == s.grpc_port {
        bad(
            "server.grpc_port",
            format!(
                "{} is also the HTTP port: the two listeners need two ports",
                s.port
            ),
        );
    }
    if s.max_body_bytes == 0 {
        bad("server.max_body_bytes", "must be at least 1".into());
    }
    if s.max_in_flight == 0 {
        bad("server.max_in_flight", "must be at least 1".into());
    }
    for origin_value in &s.cors_allow_origins {
        if origin_value != "*" && !valid_origin(origin_value) {
            bad(
                "server.cors_allow_origins",
                format!(
                    "{origin_value:?} is not an origin like \"https://app.example.com\" (or \"*\")"
                ),
            );
        }
    }
    if s.api_keys
        .iter()
        .any(|k| k.expose().chars().any(char::is_whitespace))
    {
        bad(
            "server.api_keys",
            "a key contains white space (separate keys with commas)".into(),
        );
    }

    let u = &config.upstream;
    check_http_url(&u.base_url).unwrap_or_else(|m| bad("upstream.base_url", m));
    if u.default_model.trim().is_empty() {
        bad("upstream.default_model", "must name a model".into());
    }
    for (key, d) in [
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.body_read_timeout", s.body_read_timeout),
        ("upstream.connect_timeout", u.connect_timeout),
        ("upstream.first_byte_timeout", u.first_byte_timeout),
        ("upstream.idle_timeout", u.idle_timeout),
        ("upstream.total_timeout", u.total_timeout),
        ("mcp.call_timeout", config.mcp.call_timeout),
        ("mcp.call_max_duration", config.mcp.call_max_duration),
        ("mcp.startup_timeout", config.mcp.startup_timeout),
        ("mcp.max_restart_backoff", config.mcp.max_restart_backoff),
        ("sessions.ttl", config.sessions.ttl),
        ("sessions.lock_timeout", config.sessions.lock_timeout),
        ("agent.approval_timeout", config.agent.approval_timeout),
    ] {
        if d.is_zero() {
            bad(key, "must be longer than zero".into());
        }
    }

    let mut names = HashSet::new();
    for (i, k) in config.api_keys.iter_mut().enumerate() {
        let key = format!("api_keys[{i}]");
        if k.name.trim().is_empty() {
            bad(&key, "\"name\" must not be empty".into());
        } else if !names.insert(k.name.clone()) {
            bad(&key, format!("name {:?} is used twice", k.name));
        }
        match (&k.key, &k.key_env) {
            (Some(_), Some(_)) => bad(&key, "give \"key\" or \"key_env\", not both".into()),
            (None, None) => bad(&key, "needs \"key\" or \"key_env\"".into()),
            (None, Some(var)) => match lookup(var) {
                Some(v) if !v.is_empty() => k.key = Some(Secret::new(v)),
                _ => bad(
                    &format!("{key}.key_env"),
                    format!("the environment variable {var} is not set"),
                ),
            },
            (Some(_), None) => {}
        }
        if k.key.as_ref().is_some_and(|s| s.expose().trim().is_empty()) {
            bad(&format!("{key}.key"), "must not be empty".into());
        }
    }

    let mut ids = HashSet::new();
    for (i, m) in config.models.iter_mut().enumerate() {
        let key = format!("models[{i}]");
        if m.id.trim().is_empty() {
            bad(&key, "\"id\" must not be empty".into());
        } else if !ids.insert(m.id.clone()) {
            bad(&key, format!("id {:?} is used twice", m.id));
        }
        if let Some(url) = &m.base_url {
            check_http_url(url).unwrap_or_else(|e| bad(&format!("{key}.base_url"), e));
        }
        if m.api_key.is_none()
            && let Some(var) = &m.api_key_env
        {
            match lookup(var) {
                Some(v) => m.api_key = Some(Secret::new(v)),
                None => bad(
                    &format!("{key}.api_key_env"),
                    format!("the environment variable {var} is not set"),
                ),
            }
        }
        if let Some(t) = m.params.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            bad(
                &format!("{key}.params.temperature"),
                format!("{t} is outside 0..2"),
            );
        }
    }
    if !config.models.is_empty() && !ids.contains(&config.upstream.default_model) {
        let known: Vec<_> = config.models.iter().map(|m| m.id.as_str()).collect();
        bad(
            "upstream.default_model",
            format!(
                "{:?} is not one of the [[models]] ids {known:?}",
                config.upstream.default_model
            ),
        );
    }

    if !config.mcp.token_key.is_empty()
        && let Err(e) = decode_token_key(config.mcp.token_key.expose())
    {
        bad("mcp.token_key", e);
    }
    for pattern in &config.mcp.request_server_hosts {
        if let Err(e) = HostPattern::parse(pattern) {
            bad("mcp.request_server_hosts", e);
        }
    }
    if config.mcp.request_servers == RequestServersMode::AllowList
        && config.mcp.request_server_hosts.is_empty()
    {
        bad(
            "mcp.request_server_hosts",
            "is empty, so mcp.request_servers = \"allow-list\" allows no server: list the hosts a request may name".into(),
        );
    }
    if config.mcp.max_tool_output < 256 {
        bad("mcp.max_tool_output", "must be at least 256 bytes".into());
    }
    if config.agent.max_sampling_tokens == 0 {
        bad("agent.max_sampling_tokens", "must be at least 1".into());
    }
    if config.agent.max_tool_iterations == 0 {
        bad("agent.max_tool_iterations", "must be at least 1".into());
    }
    if let Some(path) = config.agent.system_prompt_file.clone() {
        match std::fs::read_to_string(&path) {
            Ok(text) => config.agent.system_prompt = Some(text),
            Err(e) => bad(
                "agent.system_prompt_file",
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }

    let store = &config.sessions.store;
    let scheme = store.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("sqlite" | "memory" | "redis" | "rediss") => {}
        _ => bad(
            "sessions.store",
            format!(
                "{:?} is not a store URL: expected sqlite://PATH, memory:// or redis://HOST:PORT/DB",
                super::redacted_url(store)
            ),
        ),
    }
    if config
        .log
        .level
        .parse::<tracing_subscriber::EnvFilter>()
        .is_err()
    {
        bad(
            "log.level",
            format!(
                "{:?} is not a log filter (e.g. \"info\" or \"mcp_chat=debug,info\")",
                config.log.level
            ),
        );
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn is_hostname(s: &str) -> bool {
    s.split('.').all(|label| {
        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

fn valid_origin(s: &str) -> bool {
    matches!(reqwest::Url::parse(s), Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" && !s.ends_with('/'))
}

fn check_http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(u) => Err(format!(
            "scheme {:?}: expected an http:// or https:// URL",
            u.scheme()
        )),
        Err(e) => Err(format!("{:?} is not a URL ({e})", super::redacted_url(url))),
    }
}

/// `mcp.token_key` (`MCP_CHAT_TOKEN_KEY`): 32 bytes written as base64 (standard or URL-safe,
/// padded or not) or as 64 hex digits. The message never contains the value.
pub fn decode_token_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let text = text.trim();
    let hex = (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
        (0..32)
            .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Vec<u8>>()
    });
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = hex
        .or_else(|| engines.iter().find_map(|e| e.decode(text).ok()))
        .ok_or_else(|| {
            "is neither base64 nor hex: give 32 random bytes, e.g. `openssl rand -base64 32`"
                .to_string()
        })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "decodes to {} bytes: it must be 32 (e.g. `openssl rand -base64 32`)",
            bytes.len()
        )
    })
}
