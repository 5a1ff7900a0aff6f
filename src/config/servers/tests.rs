//! Parsing, expansion, errors and redaction of `servers_config.json`.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cret".into()),
        "DIR" => Some("/tmp/x".into()),
        _ => None,
    }
}

#[test]
fn parses_stdio_and_remote_servers_with_expansion() {
    let text = r#"{"mcpServers": {
        "sqlite": {"command": "uvx", "args": ["mcp-server-sqlite", "--db-path", "${DIR}/t.db"], "env": {"K": "${TOKEN}"}},
        "remote": {"type": "sse", "url": "http://h/sse", "headers": {"Authorization": "Bearer ${TOKEN}"}},
        "auto": {"url": "http://h/mcp"},
        "sh": {"type": "streamable_http", "url": "http://h/mcp", "timeout": 5, "disabled": true}
    }}"#;
    let c = ServersConfig::parse(text, &env).unwrap();
    let names: Vec<_> = c.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["auto", "remote", "sh", "sqlite"]);
    assert!(matches!(
        &c.servers[0].transport,
        McpTransportConfig::Http { .. }
    ));
    match &c.servers[1].transport {
        McpTransportConfig::Sse { headers, .. } => {
            assert_eq!(headers["Authorization"], "Bearer s3cret")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.servers[2].timeout, Some(Duration::from_secs(5)));
    assert!(c.servers[2].disabled);
    match &c.servers[3].transport {
        McpTransportConfig::Stdio { args, env, .. } => {
            assert_eq!(args[2], "/tmp/x/t.db");
            assert_eq!(env["K"], "s3cret");
        }
        other => panic!("{other:?}"),
    }
    let listing = c.to_redacted_toml();
    assert!(!listing.contains("s3cret"), "{listing}");
}

#[test]
fn errors_name_the_server_and_what_is_expected() {
    let cases = [
        (
            r#"{"mcpServers": {"a": {"url": "http://x", "command": "y"}}}"#,
            "mcpServers.a: has both",
        ),
        (
            r#"{"mcpServers": {"a": {}}}"#,
            "mcpServers.a: needs a \"command\"",
        ),
        (
            r#"{"mcpServers": {"a": {"type": "ws", "url": "http://x"}}}"#,
            "unknown \"type\" \"ws\"",
        ),
        (
            r#"{"mcpServers": {"a": {"command": "x", "args": ["${NOPE}"]}}}"#,
            "${NOPE}, which is not set",
        ),
        (
            r#"{"mcpServers": {"a": {"url": "ftp://x"}}}"#,
            "expected http or https",
        ),
        (
            r#"{"mcpServers": {"a": {"command": "x", "bogus": 1}}}"#,
            "unknown field `bogus`",
        ),
        (
            r#"{"mcpServers": {"a": {"command": "x", "timeout": -1}}}"#,
            "positive number of seconds",
        ),
        (
            "{\"mcpServers\": {\n  \"a\": {\"command\": }}}",
            "line 2, column",
        ),
        (r#"{"servers": {}}"#, "unknown field `servers`"),
    ];
    for (text, expected) in cases {
        let err = ServersConfig::parse(text, &env).unwrap_err();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn expansion_handles_escapes_and_plain_dollars() {
    assert_eq!(
        expand_vars("a$b $${X} ${TOKEN}", &env).unwrap(),
        "a$b ${X} s3cret"
    );
    assert_eq!(expand_vars("${MISSING}", &env).unwrap_err(), "MISSING");
}

#[test]
fn listing_and_debug_show_names_never_values() {
    let text = r#"{"mcpServers": {
        "s": {"command": "uvx", "args": ["a"], "env": {"K": "v1"}, "cwd": "/w"},
        "t": {"command": "x"},
        "r": {"type": "sse", "url": "https://u:pw@h/sse", "headers": {"Authorization": "Bearer v2"}},
        "h": {"url": "http://h/mcp"}
    }}"#;
    let c = ServersConfig::parse(text, &|_| None).unwrap();
    assert_eq!(
        c.to_redacted_toml(),
        "# [h] transport = \"http\", url = \"http://h/mcp\"\n\
         # [r] transport = \"sse\", url = \"https://<redacted>@h/sse\", headers = [\"Authorization\"] (values redacted)\n\
         # [s] transport = \"stdio\", command = \"uvx\", args = [\"a\"], env = [\"K\"] (values redacted), cwd = \"/w\"\n\
         # [t] transport = \"stdio\", command = \"x\", args = []\n"
    );
    let debug: Vec<String> = c
        .servers
        .iter()
        .map(|s| format!("{:?}", s.transport))
        .collect();
    assert_eq!(
        debug,
        [
            r#"http { url: "http://h/mcp", headers: [] }"#,
            r#"sse { url: "https://<redacted>@h/sse", headers: ["Authorization: <redacted>"] }"#,
            r#"Stdio { command: "uvx", args: ["a"], env: ["K=<redacted>"], cwd: Some("/w") }"#,
            r#"Stdio { command: "x", args: [], env: [], cwd: None }"#,
        ]
    );
}
