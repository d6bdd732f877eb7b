//! The set of comets job delivers to, kept in step with discovery.
//!
//! A background task watches `ServiceKind::Comet`. A comet that appears gets
//! a worker ([`crate::worker`]); one that disappears has its worker told it
//! is gone (its pending pushes finish as skipped); one whose gRPC address
//! changed gets a fresh worker. The consumer loop reads the current set as
//! an immutable snapshot ([`Roster`]) from a watch channel: one `Arc` clone
//! per envelope, no lock held while it waits on a worker's queue.
//!
//! Stopping the task empties the roster, which drops every queue sender, so
//! each worker sends what is queued and exits; the job's abort token cuts
//! that short at the drain deadline.

use std::collections::HashMap;
use std::sync::Arc;

use courier_cluster::discovery::{decode_view, View};
use courier_cluster::CometNode;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::worker::{CometHandle, CometWorker, WorkerSettings};

/// The comets known right now, by id.
pub(crate) type Roster = Arc<HashMap<String, CometHandle>>;

/// The running discovery watch and its workers.
#[derive(Debug)]
pub(crate) struct Comets {
    roster: watch::Receiver<Roster>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Comets {
    /// Starts workers for the comets in `view` now (so the first envelope
    /// already finds them), then follows discovery in the background.
    pub(crate) fn start(
        view: watch::Receiver<View>,
        settings: WorkerSettings,
        abort: CancellationToken,
    ) -> Self {
        let (roster_tx, roster) = watch::channel(Roster::default());
        let mut watcher = Watcher {
            view,
            settings,
            abort,
            current: HashMap::new(),
            workers: JoinSet::new(),
            roster: roster_tx,
        };
        let nodes = decode_view::<CometNode>(&watcher.view.borrow_and_update());
        watcher.sync(nodes);
        let stop = CancellationToken::new();
        let task = tokio::spawn(watcher.run(stop.clone()).in_current_span());
        Self { roster, stop, task }
    }

    /// The current comets, updated as discovery changes.
    pub(crate) fn roster(&self) -> watch::Receiver<Roster> {
        self.roster.clone()
    }

    /// Stops following discovery and closes every worker's queue; the workers
    /// finish what is queued.
    pub(crate) fn close(&self) {
        self.stop.cancel();
    }

    /// Waits until every worker has exited (after [`close`](Self::close)).
    pub(crate) async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "comet watcher task failed");
        }
    }
}

/// The task behind [`Comets`].
struct Watcher {
    view: watch::Receiver<View>,
    settings: WorkerSettings,
    abort: CancellationToken,
    current: HashMap<String, CometHandle>,
    workers: JoinSet<()>,
    roster: watch::Sender<Roster>,
}

impl Watcher {
    async fn run(mut self, stop: CancellationToken) {
        let mut watching = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.abort.cancelled() => break,
                changed = self.view.changed(), if watching => {
                    if changed.is_err() {
                        // The discovery backend ended its watch: keep the last
                        // view (as discovery itself does when unreachable).
                        tracing::warn!("comet discovery watch ended; keeping the last view");
                        watching = false;
                        continue;
                    }
                    let nodes = decode_view::<CometNode>(&self.view.borrow_and_update());
                    self.sync(nodes);
                }
                Some(joined) = self.workers.join_next(), if !self.workers.is_empty() => {
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "comet worker failed");
                    }
                }
            }
        }
        // Close every queue: the workers drain and exit (or abort).
        self.current.clear();
        self.roster.send_replace(Roster::default());
        while let Some(joined) = self.workers.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "comet worker failed");
            }
        }
    }

    /// Makes the worker set match `nodes`.
    fn sync(&mut self, nodes: Vec<CometNode>) {
        let mut next = HashMap::with_capacity(nodes.len());
        for node in nodes {
            match self.current.remove(&node.id) {
                Some(handle) if handle.grpc == node.grpc => {
                    next.insert(node.id, handle);
                    continue;
                }
                Some(old) => {
                    tracing::info!(comet = %node.id, grpc = %node.grpc, "comet moved; restarting its worker");
                    old.gone.cancel();
                }
                None => tracing::info!(comet = %node.id, grpc = %node.grpc, "comet joined"),
            }
            match CometWorker::start(&node, self.settings.clone(), self.abort.clone()) {
                Ok((handle, worker)) => {
                    let span = tracing::info_span!("comet_worker", comet = %node.id);
                    self.workers.spawn(worker.instrument(span));
                    next.insert(node.id, handle);
                }
                Err(e) => {
                    tracing::warn!(comet = %node.id, grpc = %node.grpc, error = %e, "bad comet gRPC address; not delivering to it");
                }
            }
        }
        for (id, gone) in self.current.drain() {
            tracing::info!(comet = %id, "comet left");
            gone.gone.cancel();
        }
        self.current = next;
        metrics::gauge!("courier_job_comets").set(self.current.len() as f64);
        self.roster.send_replace(Arc::new(self.current.clone()));
    }
}
