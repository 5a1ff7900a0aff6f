//! The generated `mcpchat.v1` types and service traits (built into `OUT_DIR` by `build.rs`),
//! the encoded file descriptor set that gRPC reflection serves, and the proto helpers every
//! edge shares: `json.rs` (`google.protobuf.Struct`/`Value` ↔ JSON) and `status.rs` (a
//! `tonic::Status` with `google.rpc` details, the error shape of the API).
//!
//! The helpers sit next to the generated types so that the edges (`http/`, `inflight.rs`)
//! depend on the proto and the service, never on `grpc/`'s internals.

pub mod json;
pub mod status;

pub use generated::*;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    tonic::include_proto!("mcpchat.v1");
}

/// The response metadata (and HTTP header) naming the enabled MCP servers that were not
/// ready when a turn started, comma-separated; absent when every server was. Part of the API
/// beside the proto, as gRPC metadata cannot be declared in it.
pub const DEGRADED: &str = "mcp-chat-degraded";

/// The encoded `FileDescriptorSet` of `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mcpchat_descriptor");
