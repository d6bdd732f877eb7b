//! A WebSocket as the TCP protocol's byte stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::{frame_from_json, frame_to_json, Encoding, ReadBudget};

/// Length prefix of a frame in the byte stream.
const PREFIX: usize = 4;

/// Bytes that no protobuf decoder takes for a `Frame` (field 31 with the
/// unused wire type 7): what a message of the wrong kind, or text that is
/// not a JSON frame, reads as, so the reader answers it as it answers any
/// bad frame.
const NOT_A_FRAME: &[u8] = &[0xff, 0x01];

/// A WebSocket read and written as the TCP protocol's byte stream: each
/// message read comes out as one length-prefixed frame, and each
/// length-prefixed frame written goes out as one message, in the socket's
/// [`Encoding`]. Pings are answered and close frames end the stream.
pub struct FrameSocket<S> {
    ws: WebSocketStream<S>,
    encoding: Encoding,
    /// What is left of the last message read, prefix first.
    inbound: Bytes,
    /// Bytes written that do not make a whole frame yet, and whole frames
    /// not yet handed to the WebSocket.
    outbound: BytesMut,
    /// Outbound bytes buffered at most before a write waits for the
    /// WebSocket to take them.
    outbound_limit: usize,
    /// Lifts the bound on the first message once it is read
    /// ([`FrameSocket::bound_first_message`]).
    lift: Option<fn(&mut S)>,
}

impl<S> std::fmt::Debug for FrameSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSocket")
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl<S> FrameSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps an open WebSocket whose subprotocol is `encoding`. A write
    /// waits once `max_frame` and a prefix are buffered and the WebSocket
    /// is not ready for more.
    pub fn new(ws: WebSocketStream<S>, encoding: Encoding, max_frame: usize) -> Self {
        Self {
            ws,
            encoding,
            inbound: Bytes::new(),
            outbound: BytesMut::new(),
            outbound_limit: max_frame + PREFIX,
            lift: None,
        }
    }

    /// The encoding of this socket's messages.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The length-prefixed frame a message reads as; `None` for a message
    /// that carries no frame (ping, pong).
    fn frame_of(&self, message: Message) -> Option<Bytes> {
        let body: Bytes = match (message, self.encoding) {
            (Message::Binary(body), Encoding::Protobuf) => body,
            (Message::Text(text), Encoding::Json) => match frame_from_json(text.as_str()) {
                Ok(encoded) => Bytes::from(encoded),
                Err(_) => Bytes::from_static(NOT_A_FRAME),
            },
            (Message::Binary(_) | Message::Text(_), _) => Bytes::from_static(NOT_A_FRAME),
            (Message::Ping(_) | Message::Pong(_) | Message::Frame(_), _) => return None,
            (Message::Close(_), _) => return Some(Bytes::new()),
        };
        let mut framed = BytesMut::with_capacity(PREFIX + body.len());
        framed.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
        framed.extend_from_slice(&body);
        Some(framed.freeze())
    }

    /// The message that carries one encoded frame.
    fn message_of(&self, body: Bytes) -> Message {
        match self.encoding {
            Encoding::Protobuf => Message::Binary(body),
            // The comet writes only frames it encoded itself, so this
            // always holds a frame; anything else becomes an empty object.
            Encoding::Json => Message::text(frame_to_json(&body).unwrap_or_else(|| "{}".into())),
        }
    }

    /// The next whole frame buffered for writing, without its prefix.
    fn next_outbound(&mut self) -> Option<Bytes> {
        if self.outbound.len() < PREFIX {
            return None;
        }
        let len = u32::from_be_bytes([
            self.outbound[0],
            self.outbound[1],
            self.outbound[2],
            self.outbound[3],
        ]) as usize;
        if self.outbound.len() < PREFIX + len {
            return None;
        }
        self.outbound.advance(PREFIX);
        Some(self.outbound.split_to(len).freeze())
    }

    /// Hands every whole frame buffered to the WebSocket.
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.outbound.len() < PREFIX {
                return Poll::Ready(Ok(()));
            }
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
            let Some(body) = self.next_outbound() else {
                return Poll::Ready(Ok(()));
            };
            let message = self.message_of(body);
            Pin::new(&mut self.ws)
                .start_send(message)
                .map_err(io_error)?;
        }
    }
}

impl<S> FrameSocket<ReadBudget<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads at most `bytes` from the socket until the first frame has
    /// been read whole (a server's bound on what comes before `Auth`,
    /// tighter than the WebSocket's `max_frame`); then reads are bounded
    /// by the WebSocket's message size alone. Bytes the upgrade already
    /// buffered are not counted.
    pub fn bound_first_message(mut self, bytes: usize) -> Self {
        self.ws.get_mut().limit(bytes);
        self.lift = Some(ReadBudget::lift);
        self
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        }
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

impl<S> AsyncRead for FrameSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.inbound.is_empty() {
                let n = this.inbound.len().min(buf.remaining());
                buf.put_slice(&this.inbound[..n]);
                this.inbound.advance(n);
                return Poll::Ready(Ok(()));
            }
            let message = match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(message)) => message,
            };
            match this.frame_of(message) {
                // A close frame: the end of the stream.
                Some(frame) if frame.is_empty() => return Poll::Ready(Ok(())),
                Some(frame) => {
                    if let Some(lift) = this.lift.take() {
                        lift(this.ws.get_mut());
                    }
                    this.inbound = frame;
                }
                None => {}
            }
        }
    }
}

impl<S> AsyncWrite for FrameSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.outbound.len() >= this.outbound_limit {
            // What stays buffered after this is part of one frame, whose
            // size the writer already bounded.
            ready!(this.poll_send_buffered(cx))?;
        }
        this.outbound.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
