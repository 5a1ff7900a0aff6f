//! The `servers_config.json` parser and `${VAR}` resolution (`config::ServersConfig::parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_chat::config::ServersConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("value-of-{name}"));
    if let Ok(servers) = ServersConfig::parse(text, &lookup) {
        let _ = servers.to_redacted_toml();
    }
});
