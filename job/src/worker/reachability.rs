//! Whether a comet can be reached at all, and the probe that notices when it
//! can again.
//!
//! A comet that refuses connections, or accepts them and never answers (a
//! frozen process, a paused VM), is different from one that answers with an
//! error: waiting for it helps nobody, because nothing it would deliver can
//! reach a client meanwhile (they reconnect elsewhere and read what they
//! missed from their inbox). So after [`DOWN_AFTER`] consecutive attempts
//! that got no answer at all (could not connect, or ran out of
//! `push_timeout`), its worker marks it down and skips what is queued for it
//! at once, and a background probe (`Stats`, every [`PROBE_INTERVAL`])
//! brings it back up on its first answer.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use courier_proto::comet::comet_client::CometClient;
use courier_proto::comet::StatsRequest;
use courier_runtime::ClusterSecret;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Consecutive attempts without an answer before a comet is down. With the
/// retry backoff starting at 50 ms, a comet refusing connections is down a
/// few hundred milliseconds after its first failure; a frozen one after
/// three `push_timeout`s.
pub(super) const DOWN_AFTER: u32 = 3;

/// Pause between two probes of a comet that is down.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A running probe: resolves once the comet answered.
pub(super) type Probe = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Whether `status` says the comet gave no answer: no connection could be
/// made (refused, unroutable, connect timeout), or the attempt ran out of
/// time (our own deadline; a comet never answers `DeadlineExceeded`), as
/// opposed to an answer or a broken call.
pub(super) fn no_answer(status: &Status) -> bool {
    if status.code() == Code::DeadlineExceeded {
        return true;
    }
    if status.code() != Code::Unavailable {
        return false;
    }
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// One comet's reachability, as its worker sees it.
#[derive(Debug, Default)]
pub(super) struct Reachability {
    /// Consecutive failed attempts without an answer.
    streak: u32,
    down: bool,
}

impl Reachability {
    /// Whether the comet is down: its pushes are skipped until a probe
    /// answers.
    pub(super) fn is_down(&self) -> bool {
        self.down
    }

    /// The comet answered (success or a status of its own).
    pub(super) fn answered(&mut self) {
        self.streak = 0;
    }

    /// An attempt failed with `status`; returns whether the comet is down
    /// now.
    pub(super) fn failed(&mut self, status: &Status) -> bool {
        if no_answer(status) {
            self.streak = self.streak.saturating_add(1);
            self.down |= self.streak >= DOWN_AFTER;
        } else {
            self.streak = 0;
        }
        self.down
    }

    /// A probe reached the comet: deliver normally again.
    pub(super) fn recovered(&mut self) {
        self.streak = 0;
        self.down = false;
    }
}

/// Calls `Stats` every [`PROBE_INTERVAL`] (each call bounded by `timeout`)
/// until one succeeds.
pub(super) fn probe(channel: Channel, secret: ClusterSecret, timeout: Duration) -> Probe {
    let client = CometClient::with_interceptor(channel, secret.stamper());
    Box::pin(async move {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let mut client = client.clone();
            match tokio::time::timeout(timeout, client.stats(StatsRequest {})).await {
                Ok(Ok(_)) => return,
                Ok(Err(status)) => {
                    tracing::debug!(code = ?status.code(), message = status.message(), "comet still unreachable");
                }
                Err(_) => tracing::debug!("comet probe timed out"),
            }
        }
    })
}

/// Waits for `probe` if one runs, forever otherwise (for `select!`).
pub(super) async fn reached(probe: &mut Option<Probe>) {
    match probe {
        Some(probe) => probe.as_mut().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_only_after_consecutive_connect_failures() {
        let refused = Status::from_error(Box::new(tonic::ConnectError(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        )));
        assert!(no_answer(&refused), "{refused:?}");
        let answered = Status::unavailable("comet warming up");
        assert!(!no_answer(&answered));
        assert!(no_answer(&Status::deadline_exceeded("push timed out")));

        let mut reachability = Reachability::default();
        assert!(!reachability.failed(&refused));
        assert!(!reachability.failed(&refused));
        assert!(
            !reachability.failed(&answered),
            "an answer breaks the streak"
        );
        assert!(!reachability.failed(&refused));
        assert!(!reachability.failed(&refused));
        assert!(reachability.failed(&refused));
        assert!(reachability.is_down());
        reachability.recovered();
        assert!(!reachability.is_down());
    }
}
