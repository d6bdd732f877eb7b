fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Generated code is never edited by hand: the .proto files are the source of truth.
    tonic_prost_build::configure().bytes(".").compile_protos(
        &[
            "proto/client.proto",
            "proto/comet.proto",
            "proto/logic.proto",
            "proto/queue.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
