//! Courier's job: consumes the queue and delivers each envelope to the comets
//! that hold its recipients.
//!
//! Logic has already resolved every message to `(comet, keys)`, a room and
//! the comets holding its members, everyone, or a kick; job only delivers.
//! The shape:
//!
//! ```text
//!  queue ──▶ consumer loop ──▶ one ordered, bounded queue per comet ──▶ worker ──gRPC──▶ comet
//!              ▲  (tracker)                                                │
//!              └──────────────── Done (every push of a message answered) ◀─┘
//! ```
//!
//! - `consume`: the single consumer loop decodes envelopes, fans them out
//!   to the workers and commits offsets;
//! - `tracker`: which offsets may be committed when deliveries finish out of
//!   order across comets (at-least-once);
//! - `ticket`: how a fanned-out delivery learns it is done;
//! - `comets`: discovery watch -> one worker per comet;
//! - `worker` and `batch`: per-comet ordered delivery with retries and
//!   room batching.
//!
//! Broadcast `rate` is not applied yet: a broadcast goes to every comet at
//! once (broadcast is best effort by design).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod batch;
mod comets;
mod config;
mod consume;
mod error;
mod ticket;
mod tracker;
mod worker;

use std::sync::Arc;

use courier_cluster::{Discovery, Queue, ServiceKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::JobConfig;
pub use error::JobError;

use comets::Comets;
use consume::Consumption;
use worker::WorkerSettings;

/// The cluster state job works against.
#[derive(Clone)]
pub struct JobDeps {
    /// The topic logic publishes to.
    pub queue: Arc<dyn Queue>,
    /// Where the comets are.
    pub discovery: Arc<dyn Discovery>,
}

impl std::fmt::Debug for JobDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDeps").finish_non_exhaustive()
    }
}

/// Runs a job until `shutdown` fires.
///
/// Joins consumer group `config.group`, follows the comets in discovery and
/// delivers every consumed envelope, committing an offset only once every
/// comet push it caused has answered (or its comet left discovery).
///
/// On shutdown it stops consuming, lets the workers send what is already
/// queued for at most `push_timeout`, commits what finished and returns.
/// Anything unfinished stays uncommitted and is consumed again by the group.
pub async fn serve(
    config: JobConfig,
    deps: JobDeps,
    shutdown: CancellationToken,
) -> Result<(), JobError> {
    let config = config.sanitized();
    let span = tracing::info_span!("job", id = %config.id);
    run(config, deps, shutdown).instrument(span).await
}

async fn run(
    config: JobConfig,
    deps: JobDeps,
    shutdown: CancellationToken,
) -> Result<(), JobError> {
    let consumer = deps
        .queue
        .subscribe(&config.group)
        .await
        .map_err(|source| JobError::Subscribe {
            group: config.group.clone(),
            source,
        })?;
    let view = deps
        .discovery
        .watch(ServiceKind::Comet)
        .await
        .map_err(JobError::Discovery)?;

    let abort = CancellationToken::new();
    // If this future is dropped instead of shut down, the workers and the
    // discovery watch must not outlive it.
    let _abort_on_drop = abort.clone().drop_guard();
    let comets = Comets::start(view, WorkerSettings::from(&config), abort.clone());
    let mut consumption = Consumption::new(config.max_in_flight, comets.roster());
    tracing::info!(group = %config.group, "job consuming");

    let result = consumption.run(&*consumer, &shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "job stopped consuming");
    }

    // Drain: close the comets' queues, let them send what is queued, commit.
    comets.close();
    let deadline = Instant::now() + config.push_timeout;
    consumption.drain(&*consumer, deadline).await;
    abort.cancel();
    comets.join().await;
    tracing::info!("job stopped");
    result
}
