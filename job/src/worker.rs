//! One comet's delivery worker: an ordered, bounded queue in, gRPC calls out.
//!
//! Every comet gets exactly one worker task, one tonic client (its channel
//! connects lazily and reconnects by itself) and one bounded FIFO queue, so
//! the pushes to a comet leave in the order they were consumed and a slow
//! comet pushes back on the consumer instead of growing memory. Comets do
//! not wait on each other except through that backpressure.
//!
//! Room messages are batched here (see [`crate::batch`]); a keys push, a
//! broadcast or a kick first sends every open room batch, so apart from the
//! room-to-room freedom the batcher documents, a comet sees pushes in
//! consumption order.
//!
//! A failed call is retried with exponential backoff for as long as the comet
//! is in discovery, each attempt bounded by `push_timeout`: the call waits,
//! the queue behind it waits, and so does the consumer once the queue is
//! full. That is the at-least-once contract: an offset moves only after
//! every comet it concerns answered. Two ways out of the wait:
//! - the comet leaves discovery (`gone`): everything pending for it is
//!   finished as skipped (its clients recover from their inbox);
//! - the job stops past its drain deadline (`abort`): pending work is
//!   dropped unfinished, so its offsets are not committed.
//!
//! Errors that retrying cannot fix (`InvalidArgument`, `Unimplemented`,
//! `OutOfRange`: the comet rejected the request itself) are logged and
//! given up on at once, so one bad message cannot wedge a partition.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use courier_cluster::CometNode;
use courier_proto::client::Message;
use courier_proto::comet::comet_client::CometClient;
use courier_proto::comet::{BroadcastRequest, KickRequest, PushKeysRequest, PushRoomRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::batch::{RoomBatch, RoomBatches};
use crate::ticket::Ticket;

/// Shortest and longest pause between two attempts of a failed call.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What to deliver to one comet.
#[derive(Debug)]
pub(crate) enum Push {
    /// To the named connections.
    Keys { keys: Vec<String>, message: Message },
    /// To every member of a room (batched).
    Room { room: String, message: Message },
    /// To every connection.
    Broadcast { message: Message },
    /// Close the named connections.
    Kick { keys: Vec<String>, reason: String },
}

/// One entry of a worker's queue.
#[derive(Debug)]
pub(crate) struct WorkItem {
    pub(crate) push: Push,
    /// Finished once the comet answered (or left).
    pub(crate) ticket: Ticket,
}

/// What the workers take from the job's config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerSettings {
    pub(crate) room_batch_max: usize,
    pub(crate) room_batch_wait: Duration,
    pub(crate) comet_queue: usize,
    pub(crate) push_timeout: Duration,
}

impl From<&crate::JobConfig> for WorkerSettings {
    fn from(c: &crate::JobConfig) -> Self {
        Self {
            room_batch_max: c.room_batch_max,
            room_batch_wait: c.room_batch_wait,
            comet_queue: c.comet_queue,
            push_timeout: c.push_timeout,
        }
    }
}

/// How the consumer reaches a comet's worker.
#[derive(Debug, Clone)]
pub(crate) struct CometHandle {
    /// The worker's ordered queue.
    pub(crate) queue: mpsc::Sender<WorkItem>,
    /// Fires when the comet left discovery.
    pub(crate) gone: CancellationToken,
    /// The gRPC address the worker was built for.
    pub(crate) grpc: String,
}

/// Why a worker stopped delivering before its queue closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The comet left discovery: skip what is pending.
    Gone,
    /// The job is past its drain deadline: abandon what is pending.
    Aborted,
}

/// A gRPC call to a comet, kept so it can be attempted again.
#[derive(Debug)]
enum Rpc {
    Keys(PushKeysRequest),
    Room(PushRoomRequest),
    Broadcast(BroadcastRequest),
    Kick(KickRequest),
}

impl Rpc {
    fn name(&self) -> &'static str {
        match self {
            Rpc::Keys(_) => "push_keys",
            Rpc::Room(_) => "push_room",
            Rpc::Broadcast(_) => "broadcast",
            Rpc::Kick(_) => "kick",
        }
    }

    async fn call(&self, client: &mut CometClient<Channel>) -> Result<(), Status> {
        match self {
            Rpc::Keys(r) => client.push_keys(r.clone()).await.map(drop),
            Rpc::Room(r) => client.push_room(r.clone()).await.map(drop),
            Rpc::Broadcast(r) => client.broadcast(r.clone()).await.map(drop),
            Rpc::Kick(r) => client.kick(r.clone()).await.map(drop),
        }
    }
}

/// Whether another attempt may succeed.
fn transient(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument | Code::Unimplemented | Code::OutOfRange
    )
}

/// Finishes tickets whose comet is gone.
fn skip(tickets: impl IntoIterator<Item = Ticket>) {
    let mut n = 0u64;
    for t in tickets {
        t.finish();
        n += 1;
    }
    metrics::counter!("courier_job_skipped_total", "reason" => "comet_gone").increment(n);
}

/// A running worker for one comet.
#[derive(Debug)]
pub(crate) struct CometWorker {
    comet: String,
    client: CometClient<Channel>,
    settings: WorkerSettings,
    gone: CancellationToken,
    abort: CancellationToken,
}

impl CometWorker {
    /// Builds the worker of `comet` and the handle that feeds it. The
    /// returned future is the worker; spawn it.
    pub(crate) fn start(
        comet: &CometNode,
        settings: WorkerSettings,
        abort: CancellationToken,
    ) -> Result<
        (
            CometHandle,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        tonic::transport::Error,
    > {
        let channel = Endpoint::from_shared(format!("http://{}", comet.grpc))?
            .connect_timeout(settings.push_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        let (queue, rx) = mpsc::channel(settings.comet_queue.max(1));
        let gone = CancellationToken::new();
        let worker = CometWorker {
            comet: comet.id.clone(),
            client: CometClient::new(channel),
            settings,
            gone: gone.clone(),
            abort,
        };
        let handle = CometHandle {
            queue,
            gone,
            grpc: comet.grpc.clone(),
        };
        Ok((handle, worker.run(rx)))
    }

    async fn run(self, mut rx: mpsc::Receiver<WorkItem>) {
        let mut batches =
            RoomBatches::new(self.settings.room_batch_max, self.settings.room_batch_wait);
        match self.deliver(&mut rx, &mut batches).await {
            Ok(()) => tracing::debug!(comet = %self.comet, "worker drained"),
            Err(Stop::Gone) => {
                tracing::info!(comet = %self.comet, "comet left discovery; skipping its pending pushes");
                rx.close();
                skip(batches.take_all().into_iter().flat_map(|b| b.tickets));
                while let Some(item) = rx.recv().await {
                    skip([item.ticket]);
                }
            }
            Err(Stop::Aborted) => {
                tracing::warn!(comet = %self.comet, "worker aborted; its pending pushes stay uncommitted");
            }
        }
    }

    /// Delivers until the queue is closed and empty (every sender dropped).
    async fn deliver(
        &self,
        rx: &mut mpsc::Receiver<WorkItem>,
        batches: &mut RoomBatches,
    ) -> Result<(), Stop> {
        loop {
            let deadline = batches.next_deadline();
            tokio::select! {
                biased;
                _ = self.abort.cancelled() => return Err(Stop::Aborted),
                _ = self.gone.cancelled() => return Err(Stop::Gone),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() =>
                {
                    self.flush(batches.take_due(Instant::now())).await?;
                }
                item = rx.recv() => match item {
                    None => return self.flush(batches.take_all()).await,
                    Some(WorkItem { push, ticket }) => {
                        let rpc = match push {
                            Push::Room { room, message } => {
                                if let Some(full) = batches.add(room, message, ticket, Instant::now()) {
                                    self.flush(vec![full]).await?;
                                }
                                continue;
                            }
                            Push::Keys { keys, message } => Rpc::Keys(PushKeysRequest {
                                keys,
                                messages: vec![message],
                            }),
                            Push::Broadcast { message } => Rpc::Broadcast(BroadcastRequest {
                                messages: vec![message],
                            }),
                            Push::Kick { keys, reason } => Rpc::Kick(KickRequest { keys, reason }),
                        };
                        // Open room batches leave first, to keep consumption order.
                        if !batches.is_empty() {
                            self.flush(batches.take_all()).await?;
                        }
                        self.send(rpc, vec![ticket]).await?;
                    }
                },
            }
        }
    }

    /// Sends room batches in order; if the comet goes away midway, the rest
    /// are skipped too.
    async fn flush(&self, batches: Vec<RoomBatch>) -> Result<(), Stop> {
        let mut batches = batches.into_iter();
        while let Some(batch) = batches.next() {
            let rpc = Rpc::Room(PushRoomRequest {
                room: batch.room,
                messages: batch.messages,
            });
            if let Err(stop) = self.send(rpc, batch.tickets).await {
                if stop == Stop::Gone {
                    skip(batches.flat_map(|b| b.tickets));
                }
                return Err(stop);
            }
        }
        Ok(())
    }

    /// Calls the comet until it answers, then finishes `tickets`.
    async fn send(&self, rpc: Rpc, tickets: Vec<Ticket>) -> Result<(), Stop> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN)
            .with_max_delay(RETRY_MAX)
            .with_jitter()
            .without_max_times();
        let attempts = (|| self.attempt(&rpc))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(transient)
            .notify(|status: &Status, after: Duration| {
                tracing::warn!(
                    comet = %self.comet, rpc = rpc.name(), code = ?status.code(),
                    message = status.message(), retry_in = ?after, "push failed; retrying"
                );
            });
        let outcome = tokio::select! {
            biased;
            _ = self.abort.cancelled() => Err(Stop::Aborted),
            _ = self.gone.cancelled() => Err(Stop::Gone),
            answer = attempts => {
                match answer {
                    Ok(()) => metrics::counter!("courier_job_pushes_total", "rpc" => rpc.name()).increment(1),
                    Err(status) => {
                        metrics::counter!("courier_job_pushes_rejected_total", "rpc" => rpc.name()).increment(1);
                        tracing::error!(
                            comet = %self.comet, rpc = rpc.name(), code = ?status.code(),
                            message = status.message(), "comet rejected a push; giving up on it"
                        );
                    }
                }
                Ok(())
            }
        };
        match outcome {
            Ok(()) => tickets.into_iter().for_each(Ticket::finish),
            Err(Stop::Gone) => skip(tickets),
            // Dropped unfinished: the offsets stay uncommitted.
            Err(Stop::Aborted) => drop(tickets),
        }
        outcome
    }

    /// One attempt, bounded by `push_timeout`.
    async fn attempt(&self, rpc: &Rpc) -> Result<(), Status> {
        let mut client = self.client.clone();
        let result =
            match tokio::time::timeout(self.settings.push_timeout, rpc.call(&mut client)).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded("push timed out")),
            };
        if result.is_err() {
            metrics::counter!("courier_job_push_failures_total", "rpc" => rpc.name()).increment(1);
        }
        result
    }
}
