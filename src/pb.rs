//! The generated `mcpchat.v1` types and service traits (built into `OUT_DIR` by `build.rs`),
//! and the encoded file descriptor set that gRPC reflection serves.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("mcpchat.v1");

/// The encoded `FileDescriptorSet` of `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mcpchat_descriptor");
