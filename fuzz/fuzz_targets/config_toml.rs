//! The TOML configuration loader (`config::load`: figment layers + validation) on any file.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use mcp_chat::config::{self, Overrides};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("mcp-chat-fuzz-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let file = dir.join("mcp-chat.toml");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    let overrides = Overrides {
        config_file: Some(file),
        dotenv_file: Some(dir.join("absent.env")),
        servers_config: Some(PathBuf::from("/nonexistent/servers_config.json")),
        ..Overrides::default()
    };
    if let Ok(config) = config::load(&overrides, std::iter::empty()) {
        let _ = config.to_redacted_toml();
    }
});
