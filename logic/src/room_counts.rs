//! Room head counts from a snapshot of every comet's report, read at most
//! once per [`REFRESH`].
//!
//! A member asks its room's head count over its connection (`RoomOnline`,
//! within `join_rate`), and a read key over HTTP. Each count is a sum over
//! every live comet's report; reading and parsing them all per ask let a
//! few thousand connections keep logic and Redis busy. Instead one read
//! sums every room (`Sessions::room_counts`) and the snapshot answers every
//! ask until it is [`REFRESH`] old: a count is at most that stale, which is
//! also about how often comets report. Asks that find it old wait for the
//! one refresh in flight rather than each reading again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use courier_cluster::Sessions;
use parking_lot::RwLock;
use tokio::time::Instant;

/// How old a snapshot may be before an ask reads a new one.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// The snapshot and how to refresh it.
pub(crate) struct RoomCounts {
    sessions: Arc<dyn Sessions>,
    snapshot: RwLock<Option<Snapshot>>,
    /// Held while a refresh reads the reports: one at a time.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Snapshot {
    read_at: Instant,
    counts: Arc<HashMap<String, u64>>,
}

impl RoomCounts {
    pub(crate) fn new(sessions: Arc<dyn Sessions>) -> Self {
        Self {
            sessions,
            snapshot: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Connections in `room`, as of at most [`REFRESH`] ago.
    pub(crate) async fn room(&self, room: &str) -> courier_cluster::Result<u64> {
        Ok(self.counts().await?.get(room).copied().unwrap_or(0))
    }

    async fn counts(&self) -> courier_cluster::Result<Arc<HashMap<String, u64>>> {
        if let Some(counts) = self.fresh() {
            return Ok(counts);
        }
        let _refreshing = self.refreshing.lock().await;
        // Another ask may have refreshed it while this one waited.
        if let Some(counts) = self.fresh() {
            return Ok(counts);
        }
        let counts = Arc::new(self.sessions.room_counts().await?);
        *self.snapshot.write() = Some(Snapshot {
            read_at: Instant::now(),
            counts: counts.clone(),
        });
        metrics::counter!("courier_logic_room_count_reads_total").increment(1);
        Ok(counts)
    }

    fn fresh(&self) -> Option<Arc<HashMap<String, u64>>> {
        self.snapshot
            .read()
            .as_ref()
            .filter(|s| s.read_at.elapsed() < REFRESH)
            .map(|s| s.counts.clone())
    }
}

#[cfg(test)]
mod tests {
    use courier_cluster::sessions::memory::MemorySessions;
    use courier_cluster::{CometReport, SessionOptions};

    use super::*;

    fn report(rooms: &[(&str, u32)]) -> CometReport {
        CometReport {
            connections: rooms.iter().map(|(_, c)| c).sum(),
            rooms: rooms.iter().map(|(r, c)| ((*r).to_owned(), *c)).collect(),
            ..CometReport::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn asks_within_a_second_share_one_read() {
        let sessions = Arc::new(MemorySessions::new(SessionOptions {
            comet_ttl: Duration::from_secs(60),
            ..SessionOptions::default()
        }));
        sessions
            .report_comet("c1", &report(&[("lobby", 2)]))
            .await
            .unwrap();
        let counts = RoomCounts::new(sessions.clone());
        assert_eq!(counts.room("lobby").await.unwrap(), 2);
        // A new report is not read for every ask...
        sessions
            .report_comet("c2", &report(&[("lobby", 3)]))
            .await
            .unwrap();
        let asks = (0..100).map(|_| counts.room("lobby"));
        for got in futures::future::join_all(asks).await {
            assert_eq!(got.unwrap(), 2, "from the snapshot");
        }
        assert_eq!(counts.room("nowhere").await.unwrap(), 0);
        // ...but within a second.
        tokio::time::sleep(REFRESH).await;
        assert_eq!(counts.room("lobby").await.unwrap(), 5);
    }
}
