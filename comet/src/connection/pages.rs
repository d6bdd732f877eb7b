//! Pages of a stream on their way to a client: a logic `Page` (encoded
//! messages, stamped with seq and epoch) spliced into a `SyncReply` frame
//! without decoding a message.

use bytes::Bytes;
use courier_proto::client::SyncReply;
use courier_proto::encode_sync_reply;
use courier_proto::logic::Page;

/// The `SyncReply` frame for `page` of `room` ("" for the inbox), frame id
/// `id`. Messages that do not fit `max_frame` are left out; the client reads
/// on from the last one it got.
pub(crate) fn sync_reply(id: u64, room: &str, page: &Page, max_frame: usize) -> Bytes {
    let reply = SyncReply {
        room: room.to_owned(),
        head: page.head,
        messages: Vec::new(),
        gap: page.gap,
        reset: page.reset,
    };
    let (frame, taken) = encode_sync_reply(id, &reply, &page.messages, max_frame);
    if taken < page.messages.len() {
        tracing::debug!(
            room,
            taken,
            of = page.messages.len(),
            "page cut to fit a frame"
        );
    }
    frame
}
