use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("courier_descriptors.bin");
    // Generated code is never edited by hand: the .proto files are the source of truth.
    tonic_prost_build::configure()
        .bytes(".")
        .file_descriptor_set_path(&descriptors)
        .compile_protos(
            &[
                "proto/client.proto",
                "proto/comet.proto",
                "proto/logic.proto",
                "proto/queue.proto",
            ],
            &["proto"],
        )?;
    // The client protocol's canonical proto3 JSON mapping (the WebSocket
    // `courier.json` subprotocol).
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .build(&[".courier.client"])?;
    Ok(())
}
