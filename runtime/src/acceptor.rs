//! The one accept loop every client-facing listener runs: the comet's TCP
//! and WebSocket listeners, logic's HTTP listener and the gRPC listeners
//! over TLS ([`crate::tls::incoming`]).
//!
//! [`run`] accepts until its [`CancellationToken`] fires and asks the
//! listener's [`Admission`] about each connection's peer:
//!
//! - [`Verdict::Admit`]: `TCP_NODELAY` is set (replies are small writes) and
//!   the connection's task ([`Admission::serve`]) is spawned, one task per
//!   connection; the handshake (TLS, see [`tls_handshake`]) runs in it,
//!   never in the loop, so a slow or hostile client never delays the next
//!   accept.
//! - [`Verdict::Refuse`]: the caller's own reply (a protocol error frame, a
//!   `503` with `Retry-After`) is written by a task of its own within
//!   [`REFUSE_WRITE`], and the socket closed; the caller's counter counts
//!   it. A flood costs a few bytes each, not a file descriptor held open.
//! - [`Verdict::Close`]: closed at once, nothing said.
//!
//! A failed accept is handled the one way. An error that belongs to the
//! connection being accepted (it was reset or aborted before `accept`
//! returned it) is passed over at once. Any other (out of file
//! descriptors, `EMFILE`/`ENFILE`, out of buffers or memory) pauses the
//! loop by the one backoff ([`crate::backoff`]), from [`BACKOFF_MIN`]
//! doubling to [`BACKOFF_MAX`] while accepts keep failing, so a process
//! without descriptors neither spins nor takes long to recover; the
//! warning is throttled ([`crate::throttle`]) with a count of those held
//! back. A stop ends the pause.
//!
//! Per connection the loop allocates nothing but the one task it spawns
//! (the connection's, or the refusal's): the admission is polled in place,
//! its ticket (the places it holds under the limits) moves into the task,
//! and a refusal's bytes are the caller's, made once.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::throttle::Throttle;

/// How long a refused connection is given to take its reply.
pub const REFUSE_WRITE: Duration = Duration::from_secs(1);
/// The first pause after a failed accept (plus jitter below as much again).
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The step the pauses grow to while accepts keep failing (plus jitter
/// below as much again).
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning about failed accepts per listener in this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a listener decides for one accepted connection.
#[derive(Debug)]
pub enum Verdict<T> {
    /// Serve it, holding `T` (its places under the listener's limits).
    Admit(T),
    /// Write `reply` (within [`REFUSE_WRITE`]) and close; `counter` is
    /// incremented (`metrics::Counter::noop()` for an uncounted refusal).
    Refuse {
        reply: &'static [u8],
        counter: metrics::Counter,
    },
    /// Close it at once, saying nothing.
    Close,
}

/// A listener's part of the accept loop: who is let in, and how an
/// admitted connection is served.
pub trait Admission {
    /// What an admitted connection holds while it lives.
    type Ticket;

    /// Whether to serve a connection from `peer`. May wait (for a place);
    /// the stop is raced against it.
    fn admit(&mut self, peer: SocketAddr) -> impl Future<Output = Verdict<Self::Ticket>> + Send;

    /// The task serving `stream`, admitted with `ticket`.
    fn serve(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        ticket: Self::Ticket,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// Runs a connection's or a refusal's task: a new task by default.
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task);
    }
}

/// Accepts connections on `listener` until `stop` fires, each one admitted,
/// refused or closed by `admission` (see the module docs). The listener is
/// closed on return.
pub async fn run<A: Admission>(listener: TcpListener, stop: &CancellationToken, mut admission: A) {
    let mut failing = Failing::new(&listener);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                failing.reset();
                accepted
            }
            Err(e) => {
                if let Some(pause) = failing.pause(&e) {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                continue;
            }
        };
        let verdict = tokio::select! {
            () = stop.cancelled() => return,
            verdict = admission.admit(peer) => verdict,
        };
        match verdict {
            Verdict::Admit(ticket) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let task = admission.serve(stream, peer, ticket);
                admission.spawn(task);
            }
            Verdict::Refuse { reply, counter } => {
                counter.increment(1);
                admission.spawn(refuse(stream, reply));
            }
            Verdict::Close => drop(stream),
        }
    }
}

/// Writes `reply` within [`REFUSE_WRITE`], then closes.
async fn refuse(mut stream: TcpStream, reply: &'static [u8]) {
    let _ = tokio::time::timeout(REFUSE_WRITE, stream.write_all(reply)).await;
}

/// `stream`'s TLS handshake, within `limit`; a failure or a timeout is
/// logged (debug) and gives `None`. For an [`Admission::serve`] task.
pub async fn tls_handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Accepts failing in a row: the next pause, and the throttled warning.
struct Failing {
    listener: Option<SocketAddr>,
    backoff: Backoff,
    /// Whether the last accept failed (the backoff is started over only
    /// then, not after every accept).
    failed: bool,
    warnings: Throttle,
}

impl Failing {
    fn new(listener: &TcpListener) -> Self {
        Self {
            listener: listener.local_addr().ok(),
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            failed: false,
            warnings: Throttle::new(WARN_EVERY),
        }
    }

    /// An accept succeeded: the next failure pauses from [`BACKOFF_MIN`]
    /// again.
    fn reset(&mut self) {
        if std::mem::take(&mut self.failed) {
            self.backoff.reset();
        }
    }

    /// How long to pause after `e`: `None` for an error of the connection
    /// being accepted (the next one may be fine), else the next step of the
    /// backoff.
    fn pause(&mut self, e: &std::io::Error) -> Option<Duration> {
        if connection_error(e) {
            tracing::debug!(error = %e, "a connection failed before it was accepted");
            return None;
        }
        self.failed = true;
        let pause = self.backoff.next_delay();
        if let Some(suppressed) = self.warnings.admit() {
            let listener = self.listener.map(tracing::field::display);
            tracing::warn!(error = %e, listener, ?pause, suppressed, "accept failed; pausing");
        }
        Some(pause)
    }
}

/// Whether `e` is the accepted connection's own failure (Linux's `accept`
/// also reports a pending network error of the new socket) rather than the
/// listener's or the process's.
fn connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted
            | ConnectionReset
            | ConnectionRefused
            | Interrupted
            | NetworkDown
            | NetworkUnreachable
            | HostUnreachable
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::{Error, ErrorKind};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Admits the first `admit` connections (serving them with a greeting),
    /// refuses the rest.
    struct Greeter {
        admit: usize,
        admitted: Arc<AtomicUsize>,
    }

    impl Admission for Greeter {
        type Ticket = ();

        async fn admit(&mut self, _: SocketAddr) -> Verdict<()> {
            if self.admitted.fetch_add(1, Ordering::Relaxed) < self.admit {
                Verdict::Admit(())
            } else {
                Verdict::Refuse {
                    reply: b"go away",
                    counter: metrics::Counter::noop(),
                }
            }
        }

        fn serve(
            &mut self,
            mut stream: TcpStream,
            _: SocketAddr,
            (): (),
        ) -> impl Future<Output = ()> + Send + 'static {
            assert!(stream.nodelay().unwrap(), "Nagle is off");
            async move {
                let _ = stream.write_all(b"hello").await;
            }
        }
    }

    async fn read_all(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut text = String::new();
        tokio::time::timeout(
            courier_testkit::wait::PATIENCE,
            stream.read_to_string(&mut text),
        )
        .await
        .unwrap()
        .unwrap();
        text
    }

    #[tokio::test]
    async fn admitted_connections_are_served_the_rest_get_their_refusal_and_stop_ends_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let greeter = Greeter {
            admit: 1,
            admitted: Arc::default(),
        };
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { run(listener, &stop, greeter).await }
        });
        assert_eq!(read_all(addr).await, "hello");
        assert_eq!(read_all(addr).await, "go away");
        stop.cancel();
        task.await.unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    }

    /// Waits for ever for a place, saying when it starts to.
    struct Waits(Arc<tokio::sync::Notify>);

    impl Admission for Waits {
        type Ticket = ();

        async fn admit(&mut self, _: SocketAddr) -> Verdict<()> {
            self.0.notify_one();
            std::future::pending().await
        }

        fn serve(
            &mut self,
            _: TcpStream,
            _: SocketAddr,
            (): (),
        ) -> impl Future<Output = ()> + Send + 'static {
            std::future::ready(())
        }
    }

    #[tokio::test]
    async fn the_stop_ends_an_admission_that_waits() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let waiting = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn({
            let (stop, waits) = (stop.clone(), Waits(waiting.clone()));
            async move { run(listener, &stop, waits).await }
        });
        let _client = TcpStream::connect(addr).await.unwrap();
        waiting.notified().await;
        stop.cancel();
        tokio::time::timeout(courier_testkit::wait::PATIENCE, task)
            .await
            .expect("stopped while the admission waited")
            .unwrap();
    }

    #[tokio::test]
    async fn failures_pause_longer_up_to_the_bound_and_a_success_starts_over() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut failing = Failing::new(&listener);
        let emfile = Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..12).map(|_| failing.pause(&emfile).unwrap()).collect();
        // Jittered: each at least its step, under twice it.
        assert!(
            pauses[0] >= BACKOFF_MIN && pauses[0] < BACKOFF_MIN * 2,
            "{pauses:?}"
        );
        assert!(pauses.iter().all(|p| *p < BACKOFF_MAX * 2), "{pauses:?}");
        assert!(pauses[11] >= BACKOFF_MAX, "{pauses:?}");
        failing.reset();
        assert!(
            failing.pause(&emfile).unwrap() < BACKOFF_MIN * 2,
            "starts over"
        );
        assert_eq!(
            failing.pause(&Error::from(ErrorKind::ConnectionAborted)),
            None,
            "a connection's own failure is passed over at once"
        );
    }
}
