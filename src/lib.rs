//! mcp-chat: an LLM and the tools of many MCP servers behind one API.
//!
//! The map of the code — layers, the rules between them (checked by `architecture_tests`),
//! one request walked through, where each concern lives, how to add an edge — is
//! `ARCHITECTURE.md` at the repository root. In short:
//! - `config`: layered configuration and `servers_config.json`.
//! - `server`: wires the two listeners (HTTP and gRPC), readiness and graceful shutdown.
//! - `grpc`: the tonic `ChatService`, the one API contract.
//! - `http`: the axum gateway, wire-format translation onto the gRPC service.
//! - `agent`: the tool-calling loop over `llm` (upstream client), `mcp` (the hub) and
//!   `sessions` (conversation stores: SQLite, memory, Redis).
//! - `model`: the conversation types the core, the store and the client share.
//! - `pb`: the generated proto types and the proto helpers both edges share.
//! - `auth`, `inflight`, `readiness`, `telemetry`: client keys, the in-flight limit,
//!   `/readyz`, logs/traces/metrics.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)
)]

pub mod agent;
pub mod auth;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod inflight;
pub mod llm;
pub mod mcp;
pub mod mcp_serve;
pub mod model;
pub mod pb;
pub mod readiness;
pub mod server;
pub mod sessions;
pub mod telemetry;

#[cfg(test)]
mod architecture_tests;

pub use config::Config;
pub use server::{Listeners, run};
