//! `Frame` protobuf decoding on its own: any bytes decode or fail cleanly,
//! and a decoded frame survives encode + decode unchanged.
#![no_main]

use courier_proto::client::Frame;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let bytes = frame.encode_to_vec();
    assert_eq!(bytes.len(), frame.encoded_len());
    let again = Frame::decode(bytes.as_slice()).expect("decode a re-encoded frame");
    assert_eq!(again, frame);
});
