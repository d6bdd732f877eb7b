//! The TCP accept loop. It only accepts and spawns: the handshake runs in
//! the connection's own task, so a slow or hostile client never delays the
//! next accept.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::connection;
use crate::state::CometState;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts clients until `stop` fires.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<CometState>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                tracing::debug!(%peer, "accepted");
                state
                    .tracker
                    .spawn(connection::serve(stream, Some(peer), state.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}
