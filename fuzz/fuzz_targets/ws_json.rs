//! The `courier.json` WebSocket subprotocol: any text parses as a frame or
//! fails cleanly, and a frame that parsed reads back from its own JSON as
//! the same frame.
#![no_main]

use courier_proto::client::Frame;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(encoded) = courier_ws::frame_from_json(text) else {
        return;
    };
    let frame = Frame::decode(encoded.as_slice()).expect("an encoded frame decodes");
    let json = courier_ws::frame_to_json(&encoded).expect("a frame writes as JSON");
    let again = courier_ws::frame_from_json(&json).expect("its own JSON parses");
    assert_eq!(Frame::decode(again.as_slice()).expect("decodes"), frame);
});
