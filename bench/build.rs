//! Compiles the product's proto (`../proto`) into a gRPC client with the vendored protoc.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let include = protoc_bin_vendored::include_path()?;
    let _ = env::var("OUT_DIR")?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(
            config,
            &[PathBuf::from("../proto/mcpchat/v1/chat.proto")],
            &[PathBuf::from("../proto"), include],
        )?;
    Ok(())
}
