//! Forgets the sessions and room registrations of comets that left the
//! cluster.
//!
//! Neither sessions nor room registrations expire, so that an idle
//! connection costs the store nothing and a late or failed load report can
//! never drop a room a live comet holds. A comet that dies takes its
//! entries nowhere, though: when a comet has been gone from discovery for
//! `grace` (longer than a lease, so a comet that only missed a few
//! keep-alives is not forgotten), logic drops them. Every logic does this;
//! forgetting twice is harmless, and a comet that comes back registers its
//! rooms again with its next report (its live connections' sessions come
//! back with their next session check). A logic that starts also treats
//! every comet the store knows but discovery does not list as gone, so a
//! comet that died while no logic was watching is forgotten too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use courier_cluster::discovery::View;
use courier_cluster::Sessions;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Follows `view` and forgets comets gone for `grace`, until `stop`. The
/// comets present now are taken before this returns, so a comet leaving
/// right after is seen leaving.
pub(crate) fn forget_departed(
    mut view: watch::Receiver<View>,
    sessions: Arc<dyn Sessions>,
    grace: Duration,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send {
    let present: HashSet<String> = view.borrow_and_update().keys().cloned().collect();
    follow(view, present, sessions, grace, stop)
}

async fn follow(
    mut view: watch::Receiver<View>,
    mut present: HashSet<String>,
    sessions: Arc<dyn Sessions>,
    grace: Duration,
    stop: CancellationToken,
) {
    let mut gone: HashMap<String, Instant> = HashMap::new();
    // Until the store answers (it may still be loading), every tick asks.
    let mut known_listed = false;
    let mut tick = tokio::time::interval((grace / 4).max(Duration::from_secs(1)));
    let mut watching = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = view.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let now: HashSet<String> = view.borrow_and_update().keys().cloned().collect();
                for left in present.difference(&now) {
                    gone.insert(left.clone(), Instant::now());
                }
                gone.retain(|id, _| !now.contains(id));
                present = now;
            }
            _ = tick.tick() => {
                if !known_listed {
                    known_listed = mark_known_gone(sessions.as_ref(), &present, &mut gone).await;
                }
                let due: Vec<String> = gone
                    .iter()
                    .filter(|(_, since)| since.elapsed() >= grace)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in due {
                    match sessions.forget_comet(&id).await {
                        Ok(()) => {
                            tracing::info!(comet = %id, "comet left the cluster; forgot its sessions and rooms");
                            gone.remove(&id);
                        }
                        Err(e) => tracing::warn!(comet = %id, error = %e, "cannot forget a departed comet yet"),
                    }
                }
            }
        }
    }
}

/// Marks every comet the store knows but discovery does not list as gone
/// since now; `false` if the store could not say.
async fn mark_known_gone(
    sessions: &dyn Sessions,
    present: &HashSet<String>,
    gone: &mut HashMap<String, Instant>,
) -> bool {
    match sessions.known_comets().await {
        Ok(known) => {
            let since = Instant::now();
            for id in known.into_iter().filter(|id| !present.contains(id)) {
                gone.entry(id).or_insert(since);
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the comets the store knows yet");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_cluster::sessions::memory::MemorySessions;
    use courier_cluster::SessionOptions;

    #[tokio::test(start_paused = true)]
    async fn a_comet_gone_for_the_grace_is_forgotten_one_back_in_time_is_not() {
        let sessions = Arc::new(MemorySessions::new(SessionOptions::default()));
        sessions.add_room_comet("lobby", "a").await.unwrap();
        sessions.add_room_comet("lobby", "b").await.unwrap();
        let (tx, rx) = watch::channel(View::from([
            ("a".to_owned(), String::new()),
            ("b".to_owned(), String::new()),
        ]));
        let stop = CancellationToken::new();
        let grace = Duration::from_secs(30);
        let task = tokio::spawn(forget_departed(rx, sessions.clone(), grace, stop.clone()));

        // Both leave; b is back after 10 s, a stays gone.
        tx.send_replace(View::new());
        tokio::time::sleep(Duration::from_secs(10)).await;
        tx.send_replace(View::from([("b".to_owned(), String::new())]));
        tokio::time::sleep(grace).await;
        assert_eq!(sessions.room_comets("lobby").await.unwrap(), ["b"]);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_comet_the_store_knows_but_discovery_does_not_is_forgotten_at_start() {
        let sessions = Arc::new(MemorySessions::new(SessionOptions::default()));
        for comet in ["dead", "alive"] {
            let report = courier_cluster::CometReport::default();
            sessions.report_comet(comet, &report).await.unwrap();
            let session = courier_cluster::Session {
                uid: format!("user-of-{comet}"),
                key: format!("key-of-{comet}"),
                comet_id: comet.to_owned(),
                device: String::new(),
            };
            sessions.add(&session).await.unwrap();
        }
        let (_tx, rx) = watch::channel(View::from([("alive".to_owned(), String::new())]));
        let stop = CancellationToken::new();
        let grace = Duration::from_secs(30);
        let task = tokio::spawn(forget_departed(rx, sessions.clone(), grace, stop.clone()));

        tokio::time::sleep(grace * 2).await;
        assert_eq!(sessions.known_comets().await.unwrap(), ["alive"]);
        assert!(sessions
            .user_sessions("user-of-dead")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            sessions.user_sessions("user-of-alive").await.unwrap().len(),
            1
        );
        stop.cancel();
        task.await.unwrap();
    }
}
