//! One job's life: bind, serve, drain.
//!
//! [`Job::bind`] does what can fail fast, binding the admin listener, so a
//! caller learns its real port (port 0 works) before anything runs.
//! [`Job::run`] joins the consumer group, follows the comets and consumes
//! until shutdown, then drains. The admin listener serves throughout:
//! `/readyz` turns 200 once the job has joined the group (subscribing
//! succeeded; partitions may come later, and a job with none is still a
//! healthy standby member) and 503 the moment shutdown starts, or while no
//! broker of the queue answers (`not ready: queue unreachable`).

use std::net::SocketAddr;
use std::time::Duration;

use courier_cluster::queue::QueueHealth;
use courier_cluster::ServiceKind;
use courier_runtime::admin::{serve_admin, Readiness};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::comets::Comets;
use crate::consume::Consumption;
use crate::worker::WorkerSettings;
use crate::{JobConfig, JobDeps, JobError};

/// How long the admin server gets to stop once the job has stopped.
const ADMIN_GRACE: Duration = Duration::from_secs(3);

/// A job with its admin listener bound, ready to [`run`](Job::run).
pub struct Job {
    config: JobConfig,
    deps: JobDeps,
    admin: Option<TcpListener>,
    admin_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.config.id)
            .field("group", &self.config.group)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// Checks `config` and binds its admin listener (unless disabled).
    pub async fn bind(config: JobConfig, deps: JobDeps) -> Result<Job, JobError> {
        let config = config.sanitized();
        WorkerSettings::new(&config)?;
        let (admin, admin_addr) = match config.admin_addr {
            Some(addr) => {
                let (listener, bound) = courier_runtime::net::bind(addr)
                    .await
                    .map_err(|source| JobError::Bind { addr, source })?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        Ok(Job {
            config,
            deps,
            admin,
            admin_addr,
        })
    }

    /// This job's id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The bound admin (`/metrics`, `/healthz`, `/readyz`) address, `None`
    /// when `admin_addr` is disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Consumes and delivers until `shutdown` fires, then drains and returns
    /// (see [`serve`](crate::serve)).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), JobError> {
        let Job {
            config,
            deps,
            admin,
            admin_addr: _,
        } = self;
        let span = tracing::info_span!("job", id = %config.id);
        async move {
            let readiness = Readiness::new();
            let stop_admin = CancellationToken::new();
            let admin_task = admin.map(|listener| {
                tokio::spawn(serve_admin(listener, readiness.clone(), stop_admin.clone()))
            });
            // Stops the admin server on every return, early errors included.
            let _stop_admin_on_drop = stop_admin.clone().drop_guard();
            let result = consume_and_deliver(config, deps, &readiness, shutdown).await;
            stop_admin.cancel();
            if let Some(mut task) = admin_task {
                match tokio::time::timeout(ADMIN_GRACE, &mut task).await {
                    Ok(Ok(Err(e))) => tracing::warn!(error = %e, "admin server failed"),
                    Ok(_) => {}
                    Err(_) => task.abort(),
                }
            }
            result
        }
        .instrument(span)
        .await
    }
}

/// Keeps `/readyz` saying `not ready: queue unreachable` while no broker
/// answers, until `stop`. The consumer rejoins by itself when one does.
async fn follow_queue(
    mut health: watch::Receiver<QueueHealth>,
    readiness: Readiness,
    stop: CancellationToken,
) {
    loop {
        let reachable = health.borrow_and_update().reachable;
        readiness.set_blocked("queue unreachable", !reachable);
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = health.changed() => if changed.is_err() { return },
        }
    }
}

async fn consume_and_deliver(
    config: JobConfig,
    deps: JobDeps,
    readiness: &Readiness,
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
    let comets = Comets::start(view, WorkerSettings::new(&config)?, abort.clone());
    let mut consumption = Consumption::new(config.max_in_flight, comets.roster());
    readiness.set_ready(true);
    tokio::spawn(follow_queue(
        deps.queue.health(),
        readiness.clone(),
        abort.clone(),
    ));
    tracing::info!(group = %config.group, "job consuming");

    let result = consumption.run(&*consumer, &shutdown).await;
    readiness.set_ready(false);
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
