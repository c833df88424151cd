//! Generates the mcu.v1 types, servers and clients, and the descriptor set that server
//! reflection serves. protoc comes from `protoc-bin-vendored`: no system package needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().file_descriptor_set_path(out.join("mcu_v1_descriptor.bin")).compile_with_config(
        config,
        &["proto/mcu/v1/mcu.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
