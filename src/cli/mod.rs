//! Command-line clients of the library that are not the service itself:
//! `tools` (list the MCP servers and their tools, or call one tool) and `chat` (a terminal
//! chat against a running service).

pub mod chat;
pub mod elicit;
pub mod tools;
