//! Compiles `proto/` into `OUT_DIR` with the protoc shipped by `protoc-bin-vendored`,
//! so a fresh machine needs nothing but cargo. The file descriptor set is kept for
//! gRPC server reflection.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let include = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("mcpchat_descriptor.bin"))
        .compile_with_config(
            config,
            &[PathBuf::from("proto/mcpchat/v1/chat.proto")],
            &[PathBuf::from("proto"), include],
        )?;
    Ok(())
}
