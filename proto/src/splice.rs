//! Protobuf messages assembled from parts that are already encoded.
//!
//! A repeated message (or `bytes`) field is, on the wire, each element
//! behind its key and length, in order. So a message whose only field is
//! such a list can be written from encoded elements without decoding any:
//! push frames from encoded `Message`s ([`crate::push`]), a keys batch for
//! a comet from encoded `PushKeysRequest`s (job).

use bytes::{BufMut, Bytes};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};

/// Bytes that `entries` take as repeated field `field`.
pub fn repeated_len(field: u32, entries: &[Bytes]) -> usize {
    entries
        .iter()
        .map(|e| key_len(field) + encoded_len_varint(e.len() as u64) + e.len())
        .sum()
}

/// Appends `entries` to `dst` as repeated length-delimited field `field`.
pub fn put_repeated(dst: &mut impl BufMut, field: u32, entries: &[Bytes]) {
    for entry in entries {
        encode_key(field, WireType::LengthDelimited, dst);
        encode_varint(entry.len() as u64, dst);
        dst.put_slice(entry);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::comet::{PushKeysBatchRequest, PushKeysRequest};
    use prost::Message as _;

    #[test]
    fn a_spliced_batch_is_what_prost_encodes() {
        let pushes: Vec<PushKeysRequest> = (0..3)
            .map(|i| PushKeysRequest {
                keys: vec![format!("k{i}")],
                messages: vec![Bytes::from(vec![i as u8; 200 * i])],
            })
            .collect();
        let entries: Vec<Bytes> = pushes.iter().map(|p| p.encode_to_vec().into()).collect();
        let mut spliced = Vec::with_capacity(repeated_len(1, &entries));
        put_repeated(&mut spliced, 1, &entries);
        assert_eq!(spliced.len(), repeated_len(1, &entries));
        assert_eq!(spliced, PushKeysBatchRequest { pushes }.encode_to_vec());
    }
}
