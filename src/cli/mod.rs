//! Command-line clients of the library that are not the service itself:
//! `tools` (list the MCP servers and their tools, or call one tool), `chat` (a terminal
//! chat against a running service) and `auth` (OAuth logins to remote MCP servers);
//! `oauth_args` (the OAuth flags of `tools --url`).

pub mod auth;
pub mod chat;
pub mod elicit;
pub mod login;
pub mod oauth_args;
pub mod tools;
