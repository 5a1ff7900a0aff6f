//! The prompt-mode tool-call parser (`agent::prompt_tools::parse`) on any model reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_chat::agent::prompt_tools;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(call) = prompt_tools::parse(reply, |name| matches!(name, "echo" | "add" | "search"))
    {
        assert!(matches!(call.tool.as_str(), "echo" | "add" | "search"));
    }
    let _ = prompt_tools::parse(reply, |_| true);
});
