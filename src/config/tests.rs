//! Loader tests: layering order, seed variable names, and the message of each error.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;

use figment::Jail;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_in(
    jail: &Jail,
    overrides: &Overrides,
    env: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let _ = jail;
    load(overrides, vars(env))
}

#[test]
fn defaults_match_the_seed() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, &Overrides::default(), &[]).unwrap();
        assert_eq!(c.server.host, "0.0.0.0");
        assert_eq!(c.server.port, 8000);
        assert_eq!(c.server.grpc_port, 50051);
        assert_eq!(c.upstream.base_url, "https://api.openai.com/v1");
        assert_eq!(c.upstream.default_model, "gpt-3.5-turbo");
        assert!(c.server.api_keys.is_empty());
        assert_eq!(c.server.shutdown_grace, std::time::Duration::from_secs(25));
        assert_eq!(c.sessions.store, "sqlite://./data/mcp-chat.db");
        assert_eq!(c.effective_models()[0].id, "gpt-3.5-turbo");
        assert!(c.server.ui, "the web page is on by default");
        Ok(())
    });
}

#[test]
fn layers_apply_in_order_file_dotenv_env_flag() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "mcp-chat.toml",
            "[server]\nport = 1001\ngrpc_port = 2001\nhost = \"127.0.0.1\"\n[upstream]\ndefault_model = \"from-file\"\nbase_url = \"http://file/v1\"\n",
        )?;
        jail.create_file(
            ".env",
            "PORT=1002\nGRPC_PORT=2002\nDEFAULT_MODEL=from-dotenv\n",
        )?;
        let env = [("PORT", "1003"), ("DEFAULT_MODEL", "from-env")];
        let flags = Overrides {
            port: Some(1004),
            ..Overrides::default()
        };
        let c = load_in(jail, &flags, &env).unwrap();
        assert_eq!(c.server.host, "127.0.0.1", "file beats default");
        assert_eq!(c.upstream.base_url, "http://file/v1", "file beats default");
        assert_eq!(c.server.grpc_port, 2002, ".env beats file");
        assert_eq!(
            c.upstream.default_model, "from-env",
            "environment beats .env"
        );
        assert_eq!(c.server.port, 1004, "flag beats environment");
        Ok(())
    });
}

#[test]
fn seed_and_prefixed_variables_are_read() {
    Jail::expect_with(|jail| {
        let env = [
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("HOST", "127.0.0.1"),
            ("API_KEYS", "k1, k2"),
            ("SERVERS_CONFIG", "./none.json"),
            ("MCP_CHAT_SESSION_STORE", "memory://"),
            ("MCP_CHAT_SHUTDOWN_GRACE", "3s"),
            ("MCP_CHAT_UPSTREAM_IDLE_TIMEOUT", "7"),
            ("MCP_CHAT_EXPOSE_TOOL_EVENTS", "true"),
            ("MCP_CHAT_TOOL_PREFIX", "always"),
            ("UNRELATED", "x"),
        ];
        jail.create_file("none.json", r#"{"mcpServers": {}}"#)?;
        let c = load_in(jail, &Overrides::default(), &env).unwrap();
        assert_eq!(c.upstream.api_key.expose(), "sk-test");
        assert_eq!(c.upstream.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(
            c.server.api_keys,
            vec![Secret::new("k1"), Secret::new("k2")]
        );
        assert_eq!(c.mcp.servers_config, PathBuf::from("./none.json"));
        assert_eq!(c.sessions.store, "memory://");
        assert_eq!(c.server.shutdown_grace, std::time::Duration::from_secs(3));
        assert_eq!(c.upstream.idle_timeout, std::time::Duration::from_secs(7));
        assert!(c.agent.expose_tool_events);
        assert_eq!(c.mcp.tool_prefix, ToolPrefix::Always);
        Ok(())
    });
}

#[test]
fn every_documented_variable_sets_its_key() {
    // Each variable must land on a real key: an unknown key would be rejected by
    // deny_unknown_fields, so a typo in the table fails here.
    Jail::expect_with(|jail| {
        for var in ENV_VARS {
            let value = match var.key {
                "server.port" => "1234",
                "server.grpc_port" => "1235",
                "server.max_body_bytes"
                | "server.max_in_flight"
                | "upstream.max_retries"
                | "mcp.call_retries"
                | "mcp.max_tool_output"
                | "agent.max_tool_iterations"
                | "agent.max_sampling_tokens" => "1000",
                "agent.expose_tool_events"
                | "mcp.request_server_private"
                | "mcp.serve"
                | "mcp.serve_chat_tool"
                | "server.ui" => "true",
                "mcp.serve_allowed_hosts" => "localhost, mcp.example.com:8080",
                "mcp.request_servers" => "off",
                "mcp.request_server_hosts" => "example.com, http://*.example.org:8080",
                "mcp.tool_prefix" => "always",
                "log.format" => "json",
                "log.level" => "debug",
                "sessions.store" => "memory://",
                "server.host" => "127.0.0.1",
                "upstream.base_url" => "http://localhost:1/v1",
                "server.cors_allow_origins" => "https://a.example",
                "agent.system_prompt_file" => "prompt.txt",
                "mcp.servers_config" => "servers.json",
                k if k.contains("timeout")
                    || k.contains("grace")
                    || k.contains("ttl")
                    || k.contains("duration")
                    || k.contains("backoff") =>
                {
                    "5s"
                }
                "mcp.token_key" => "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                _ => "x",
            };
            jail.create_file("prompt.txt", "be brief")?;
            jail.create_file("servers.json", r#"{"mcpServers": {}}"#)?;
            let result = load_in(jail, &Overrides::default(), &[(var.name, value)]);
            assert!(
                result.is_ok(),
                "{} -> {}: {:?}",
                var.name,
                var.key,
                result.err()
            );
        }
        Ok(())
    });
}

fn error_of(jail: &Jail, overrides: &Overrides, env: &[(&str, &str)]) -> String {
    load_in(jail, overrides, env).unwrap_err().to_string()
}

#[test]
fn errors_name_the_source_and_what_is_expected() {
    Jail::expect_with(|jail| {
        let none = Overrides::default();
        let e = error_of(jail, &none, &[("PORT", "eighty")]);
        assert!(
            e.contains("server.port") && e.contains("PORT") && e.contains("u16"),
            "{e}"
        );

        let e = error_of(jail, &none, &[("MCP_CHAT_SHUTDOWN_GRACE", "soon")]);
        assert!(
            e.contains("MCP_CHAT_SHUTDOWN_GRACE") && e.contains("\"30s\""),
            "{e}"
        );

        let e = error_of(jail, &none, &[("OPENAI_BASE_URL", "api.openai.com")]);
        assert!(
            e.contains("upstream.base_url")
                && e.contains("OPENAI_BASE_URL")
                && e.contains("not a URL"),
            "{e}"
        );

        let e = error_of(jail, &none, &[("MCP_CHAT_SESSION_STORE", "postgres://x")]);
        assert!(
            e.contains("sessions.store") && e.contains("sqlite://PATH"),
            "{e}"
        );

        let e = error_of(jail, &none, &[("PORT", "7000"), ("GRPC_PORT", "7000")]);
        assert!(
            e.contains("server.grpc_port") && e.contains("two ports"),
            "{e}"
        );

        jail.create_file("bad.toml", "[server]\nport = 80\nbogus = 1\n")?;
        let e = error_of(
            jail,
            &Overrides {
                config_file: Some("bad.toml".into()),
                ..none.clone()
            },
            &[],
        );
        assert!(e.contains("bogus") && e.contains("bad.toml"), "{e}");

        jail.create_file("syntax.toml", "[server\nport = 80\n")?;
        let e = error_of(
            jail,
            &Overrides {
                config_file: Some("syntax.toml".into()),
                ..none.clone()
            },
            &[],
        );
        assert!(e.contains("syntax.toml") && e.contains("line 1"), "{e}");

        let e = error_of(
            jail,
            &Overrides {
                config_file: Some("missing.toml".into()),
                ..none.clone()
            },
            &[],
        );
        assert!(
            e.contains("missing.toml") && e.contains("no such file"),
            "{e}"
        );

        let e = error_of(
            jail,
            &Overrides {
                servers_config: Some("gone.json".into()),
                ..none.clone()
            },
            &[],
        );
        assert!(e.contains("gone.json") && e.contains("cannot read"), "{e}");

        jail.create_file(
            "servers.json",
            "{\"mcpServers\": {\n \"a\": {\"command\": 1}}}",
        )?;
        let e = error_of(
            jail,
            &Overrides {
                servers_config: Some("servers.json".into()),
                ..none.clone()
            },
            &[],
        );
        assert!(e.contains("servers.json") && e.contains("line 2"), "{e}");

        jail.create_file(
            "models.toml",
            "[upstream]\ndefault_model = \"x\"\n[[models]]\nid = \"a\"\n",
        )?;
        let e = error_of(
            jail,
            &Overrides {
                config_file: Some("models.toml".into()),
                ..none.clone()
            },
            &[],
        );
        assert!(
            e.contains("upstream.default_model") && e.contains("[[models]]"),
            "{e}"
        );

        let e = error_of(jail, &none, &[("LOG_LEVEL", "[[[")]);
        assert!(e.contains("log.level") && e.contains("LOG_LEVEL"), "{e}");
        Ok(())
    });
}

#[test]
fn secrets_never_print() {
    Jail::expect_with(|jail| {
        jail.create_file("mcp-chat.toml", "[[models]]\nid = \"gpt-3.5-turbo\"\napi_key = \"sk-model\"\nheaders = { X-Org = \"org-secret\" }\n")?;
        jail.create_file(
            "servers_config.json",
            r#"{"mcpServers": {"r": {"url": "http://u:pw-secret@h/mcp", "headers": {"Authorization": "Bearer tok-secret"}}, "s": {"command": "x", "env": {"K": "env-secret"}}}}"#,
        )?;
        let env = [
            ("OPENAI_API_KEY", "sk-upstream"),
            ("API_KEYS", "client-secret"),
            ("MCP_CHAT_SESSION_STORE", "redis://:redis-secret@h:6379/0"),
        ];
        let c = load_in(jail, &Overrides::default(), &env).unwrap();
        let printed = format!("{}\n{:?}", c.to_redacted_toml(), c);
        for secret in [
            "sk-model",
            "org-secret",
            "pw-secret",
            "tok-secret",
            "env-secret",
            "sk-upstream",
            "client-secret",
            "redis-secret",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
        }
        assert!(printed.contains("<redacted>"));
        Ok(())
    });
}

#[test]
fn the_readme_documents_every_variable_and_key() {
    let readme = include_str!("../../README.md");
    for var in ENV_VARS {
        assert!(
            readme.contains(&format!("`{}`", var.name)),
            "README.md lacks {}",
            var.name
        );
        assert!(
            readme.contains(&format!("`{}`", var.key)),
            "README.md lacks {}",
            var.key
        );
    }
}

#[test]
fn the_web_page_is_turned_off_by_file_or_environment() {
    Jail::expect_with(|jail| {
        let off = load_in(jail, &Overrides::default(), &[("MCP_CHAT_UI", "false")]).unwrap();
        assert!(!off.server.ui);
        jail.create_file("mcp-chat.toml", "[server]\nui = false\n")?;
        let off = load_in(jail, &Overrides::default(), &[]).unwrap();
        assert!(!off.server.ui);
        let on = load_in(jail, &Overrides::default(), &[("MCP_CHAT_UI", "true")]).unwrap();
        assert!(on.server.ui, "the environment wins over the file");
        Ok(())
    });
}

#[test]
fn a_zero_in_flight_limit_is_refused() {
    Jail::expect_with(|jail| {
        let result = load_in(
            jail,
            &Overrides::default(),
            &[("MCP_CHAT_MAX_IN_FLIGHT", "0")],
        );
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("server.max_in_flight") && message.contains("MCP_CHAT_MAX_IN_FLIGHT"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn request_server_hosts_are_checked_at_start_up() {
    Jail::expect_with(|jail| {
        let none = Overrides::default();
        let e = error_of(
            jail,
            &none,
            &[(
                "MCP_CHAT_REQUEST_SERVER_HOSTS",
                "ok.example, bad.example/mcp",
            )],
        );
        assert!(
            e.contains("mcp.request_server_hosts")
                && e.contains("MCP_CHAT_REQUEST_SERVER_HOSTS")
                && e.contains("\"bad.example/mcp\""),
            "{e}"
        );
        let e = error_of(jail, &none, &[("MCP_CHAT_REQUEST_SERVERS", "allow-list")]);
        assert!(
            e.contains("mcp.request_server_hosts") && e.contains("allows no server"),
            "{e}"
        );
        let c = load_in(
            jail,
            &none,
            &[
                ("MCP_CHAT_REQUEST_SERVERS", "allow-list"),
                (
                    "MCP_CHAT_REQUEST_SERVER_HOSTS",
                    "a.example,http://*.b.example:8080",
                ),
                ("MCP_CHAT_REQUEST_SERVER_PRIVATE", "true"),
            ],
        )
        .unwrap();
        assert_eq!(c.mcp.request_servers, RequestServersMode::AllowList);
        assert_eq!(
            c.mcp.request_server_hosts,
            ["a.example", "http://*.b.example:8080"]
        );
        assert!(c.mcp.request_server_private);
        Ok(())
    });
}
