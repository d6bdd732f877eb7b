//! The gRPC calls a worker makes to its comet, each encoded once.
//!
//! A call's request is encoded into `Bytes` when the call is built, and
//! every attempt sends those same bytes through [`Passthrough`], a codec
//! that writes them as they are: a retry costs a reference count, not a copy
//! of the request. The messages inside are the bytes logic encoded; job
//! never decodes them. A keys batch is spliced from its entries' encodings
//! (a `PushKeysBatchRequest` is its entries as repeated field 1), and keeps
//! them, so a batch the comet refuses can be sent entry by entry.

use bytes::{Buf, Bytes, BytesMut};
use courier_proto::comet::{BroadcastRequest, KickRequest, PushKeysRequest, PushRoomRequest};
use courier_proto::splice::{put_repeated, repeated_len};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Which method of the `Comet` service a call invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    PushKeys,
    PushKeysBatch,
    PushRoom,
    Broadcast,
    Kick,
}

impl Method {
    /// The method's name in logs and metrics.
    pub(super) fn name(self) -> &'static str {
        match self {
            Method::PushKeys => "push_keys",
            Method::PushKeysBatch => "push_keys_batch",
            Method::PushRoom => "push_room",
            Method::Broadcast => "broadcast",
            Method::Kick => "kick",
        }
    }

    /// The gRPC path (`comet.proto`'s service `courier.comet.Comet`).
    pub(super) fn path(self) -> &'static str {
        match self {
            Method::PushKeys => "/courier.comet.Comet/PushKeys",
            Method::PushKeysBatch => "/courier.comet.Comet/PushKeysBatch",
            Method::PushRoom => "/courier.comet.Comet/PushRoom",
            Method::Broadcast => "/courier.comet.Comet/Broadcast",
            Method::Kick => "/courier.comet.Comet/Kick",
        }
    }
}

/// One call, encoded.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) body: Bytes,
    /// A keys batch's entries, each an encoded `PushKeysRequest`.
    entries: Vec<Bytes>,
}

/// The field number of `PushKeysBatchRequest.pushes`.
const BATCH_PUSHES_FIELD: u32 = 1;

impl Call {
    fn new(method: Method, body: Vec<u8>) -> Self {
        Self {
            method,
            body: Bytes::from(body),
            entries: Vec::new(),
        }
    }

    /// One keys push's encoding, an entry of [`Call::keys`].
    pub(super) fn keys_entry(keys: Vec<String>, message: Bytes) -> Bytes {
        let request = PushKeysRequest {
            keys,
            messages: vec![message],
        };
        Bytes::from(request.encode_to_vec())
    }

    /// `PushKeys` for one entry, `PushKeysBatch` for several.
    pub(super) fn keys(mut entries: Vec<Bytes>) -> Self {
        if entries.len() == 1 {
            let body = entries.pop().unwrap_or_default();
            return Self {
                method: Method::PushKeys,
                body,
                entries: Vec::new(),
            };
        }
        let mut body = BytesMut::with_capacity(repeated_len(BATCH_PUSHES_FIELD, &entries));
        put_repeated(&mut body, BATCH_PUSHES_FIELD, &entries);
        Self {
            method: Method::PushKeysBatch,
            body: body.freeze(),
            entries,
        }
    }

    /// A batch of room messages.
    pub(super) fn room(room: String, messages: Vec<Bytes>) -> Self {
        Self::new(
            Method::PushRoom,
            PushRoomRequest { room, messages }.encode_to_vec(),
        )
    }

    /// One message to every connection, `rate` a second (0: at once).
    pub(super) fn broadcast(message: Bytes, rate: u32) -> Self {
        Self::new(
            Method::Broadcast,
            BroadcastRequest {
                messages: vec![message],
                rate,
            }
            .encode_to_vec(),
        )
    }

    /// Close the named connections.
    pub(super) fn kick(keys: Vec<String>, reason: String) -> Self {
        Self::new(Method::Kick, KickRequest { keys, reason }.encode_to_vec())
    }

    /// A keys batch as one `PushKeys` call per entry, in order; any other
    /// call as itself.
    pub(super) fn into_single_keys(self) -> Vec<Call> {
        if self.method != Method::PushKeysBatch {
            return vec![self];
        }
        self.entries
            .into_iter()
            .map(|body| Call {
                method: Method::PushKeys,
                body,
                entries: Vec::new(),
            })
            .collect()
    }
}

/// A gRPC codec for requests that are already encoded: it writes the bytes
/// as they are, and hands back replies undecoded (job reads only the status).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Passthrough;

impl Codec for Passthrough {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Passthrough;
    type Decoder = Passthrough;

    fn encoder(&mut self) -> Self::Encoder {
        Passthrough
    }

    fn decoder(&mut self) -> Self::Decoder {
        Passthrough
    }
}

impl Encoder for Passthrough {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for Passthrough {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_proto::comet::PushKeysBatchRequest;

    #[test]
    fn a_keys_batch_decodes_as_the_comet_sees_it_and_splits_back() {
        let entries: Vec<Bytes> = (0..3)
            .map(|i| Call::keys_entry(vec![format!("k{i}")], Bytes::from(vec![i as u8; 10])))
            .collect();
        let call = Call::keys(entries.clone());
        assert_eq!(call.method, Method::PushKeysBatch);
        let batch = PushKeysBatchRequest::decode(call.body.clone()).unwrap();
        let keys: Vec<_> = batch.pushes.iter().map(|p| p.keys[0].clone()).collect();
        assert_eq!(keys, ["k0", "k1", "k2"]);
        assert_eq!(batch.pushes[2].messages, vec![Bytes::from(vec![2u8; 10])]);

        let singles = call.into_single_keys();
        assert!(singles.iter().all(|c| c.method == Method::PushKeys));
        let bodies: Vec<_> = singles.into_iter().map(|c| c.body).collect();
        assert_eq!(bodies, entries);
    }

    #[test]
    fn one_entry_is_a_plain_push_keys() {
        let entry = Call::keys_entry(vec!["k".into()], Bytes::from_static(b"m"));
        let call = Call::keys(vec![entry.clone()]);
        assert_eq!((call.method, call.body), (Method::PushKeys, entry));
    }
}
