//! Push -> delivery latency: how long after logic accepted a message
//! (its `sent_at_ms`) this comet queues it to its connections.
//!
//! Messages arrive encoded and are spliced into frames undecoded; reading
//! the one field walks the message's fields (the `data` bytes are skipped
//! by their length, not read), once per message per push call, however
//! many connections it goes to. Logic's clock stamps the message and this
//! comet's clock reads it: skew between hosts shows up here (a negative
//! latency counts as 0).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};

/// The field number of `sent_at_ms` in `courier.client.Message`.
const SENT_AT_MS: u32 = 7;

/// The latency histogram of one comet.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryLatency {
    seconds: metrics::Histogram,
}

impl DeliveryLatency {
    pub(crate) fn new() -> Self {
        Self {
            seconds: metrics::histogram!("courier_comet_delivery_latency_seconds"),
        }
    }

    /// Records the latency of each of `messages` (encoded), queued now to
    /// `connections` connections: nothing when that is none, or for a
    /// message without a `sent_at_ms`.
    pub(crate) fn queued(&self, connections: usize, messages: &[Bytes]) {
        if connections == 0 {
            return;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for message in messages {
            if let Some(sent) = sent_at_ms(message).filter(|ms| *ms > 0) {
                let ms = now_ms.saturating_sub(sent).max(0);
                self.seconds.record(ms as f64 / 1000.0);
            }
        }
    }
}

/// The `sent_at_ms` of an encoded `courier.client.Message`, if it has one
/// and parses that far.
fn sent_at_ms(mut message: &[u8]) -> Option<i64> {
    while !message.is_empty() {
        let (field, wire) = decode_key(&mut message).ok()?;
        if field == SENT_AT_MS && wire == WireType::Varint {
            return decode_varint(&mut message).ok().map(|v| v as i64);
        }
        skip_field(wire, field, &mut message, DecodeContext::default()).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use courier_proto::client::{Message, Target};
    use prost::Message as _;

    use super::*;

    #[test]
    fn reads_sent_at_past_every_other_field() {
        let message = Message {
            msg_id: "m1".into(),
            seq: 7,
            from: "alice".into(),
            to: Some(Target::default()),
            op: 1000,
            data: vec![7; 300].into(),
            sent_at_ms: 1_700_000_000_123,
            epoch: 3,
        };
        assert_eq!(
            sent_at_ms(&message.encode_to_vec()),
            Some(1_700_000_000_123)
        );
    }

    #[test]
    fn a_message_without_it_or_cut_short_has_none() {
        let unset = Message {
            msg_id: "m1".into(),
            ..Message::default()
        };
        assert_eq!(sent_at_ms(&unset.encode_to_vec()), None);
        let set = Message {
            data: vec![1; 50].into(),
            sent_at_ms: 5,
            ..Message::default()
        };
        let bytes = set.encode_to_vec();
        assert_eq!(sent_at_ms(&bytes[..bytes.len() / 2]), None);
        assert_eq!(sent_at_ms(&[0xff]), None);
    }
}
