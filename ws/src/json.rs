//! A `Frame` in proto3's canonical JSON mapping, and back.

use courier_proto::client::Frame;
use prost::Message as _;

/// Why a text message is not a frame.
#[derive(Debug, thiserror::Error)]
#[error("not a JSON frame: {0}")]
pub struct JsonError(#[from] serde_json::Error);

/// Parses one text message as a `Frame` and returns its protobuf encoding.
pub fn frame_from_json(text: &str) -> Result<Vec<u8>, JsonError> {
    let frame: Frame = serde_json::from_str(text)?;
    Ok(frame.encode_to_vec())
}

/// The JSON text of an encoded `Frame`; `None` if `encoded` is not one.
pub fn frame_to_json(encoded: &[u8]) -> Option<String> {
    let frame = Frame::decode(encoded).ok()?;
    serde_json::to_string(&frame).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use courier_proto::client::{frame::Body, Auth, Message, Push};

    #[test]
    fn auth_reads_the_way_a_page_writes_it() {
        let encoded = frame_from_json(
            r#"{"id":1,"auth":{"token":"t","rooms":["lobby"],"lastSeq":"5","epoch":"7"}}"#,
        )
        .unwrap();
        let frame = Frame::decode(encoded.as_slice()).unwrap();
        assert_eq!(frame.id, 1);
        let Some(Body::Auth(auth)) = frame.body else {
            panic!("{frame:?}")
        };
        assert_eq!(
            (auth.token.as_str(), auth.rooms, auth.last_seq, auth.epoch),
            ("t", vec!["lobby".to_owned()], 5, 7)
        );
        let _ = Auth::default();
    }

    #[test]
    fn a_push_is_written_in_canonical_json() {
        let frame = Frame::new(
            0,
            Body::Push(Push {
                messages: vec![Message {
                    msg_id: "m1".into(),
                    seq: 3,
                    data: bytes::Bytes::from_static(b"hi"),
                    ..Message::default()
                }],
            }),
        );
        let text = frame_to_json(&frame.encode_to_vec()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let message = &value["push"]["messages"][0];
        assert_eq!(message["msgId"], "m1");
        assert_eq!(message["seq"], "3", "64-bit integers are strings");
        assert_eq!(message["data"], "aGk=", "bytes are base64");
    }

    #[test]
    fn text_that_is_not_a_frame_is_an_error() {
        assert!(frame_from_json("{").is_err());
        assert!(frame_from_json(r#"{"auth":{"token":5}}"#).is_err());
        assert!(frame_to_json(&[0xff]).is_none());
    }
}
