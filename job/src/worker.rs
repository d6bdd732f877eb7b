//! One comet's delivery worker: an ordered, bounded queue in, gRPC calls out.
//!
//! Every comet gets exactly one worker task, one tonic client (its channel
//! connects lazily and reconnects by itself) and one bounded FIFO queue, so
//! the pushes to a comet leave in the order they were consumed and a slow
//! comet pushes back on the consumer instead of growing memory, for at most
//! `comet_queue_wait`: a comet whose queue stays full is *behind* (see
//! [`crate::backlog`]) and its pushes are skipped until it catches up, so
//! one stuck comet never stalls the others.
//!
//! Batching, so a busy comet costs a round trip per batch, not per push:
//! - room messages are batched per room (see [`crate::batch`]);
//! - keys pushes (user pushes, private chat): when the worker takes one, it
//!   also takes every keys push already queued behind it, without waiting,
//!   up to [`keys::KEYS_BATCH_MAX`] pushes or [`keys::KEYS_BATCH_BYTES`],
//!   and sends them as one `PushKeysBatch`, which the comet handles entry by entry in
//!   order. A lone keys push stays a plain `PushKeys`. Nothing waits to fill
//!   a batch, so an idle system keeps its latency; under load the queue
//!   fills and batches grow by themselves. If the comet rejects a batch for
//!   good (an invalid entry, or a comet without `PushKeysBatch`), its
//!   entries are sent one by one so only the bad one is given up.
//!
//! Order: a keys push, a broadcast or a kick first sends every open room
//! batch, and any other item ends a keys batch (it is handled after it), so
//! apart from the room-to-room freedom the batcher documents, a comet sees
//! pushes in consumption order.
//!
//! A failed call is retried with exponential backoff for as long as the comet
//! is in discovery and reachable, each attempt bounded by `push_timeout`: the
//! call waits, the queue behind it waits, and so does the consumer once the
//! queue is full. That is the at-least-once contract: an offset moves only
//! after every comet it concerns answered. Three ways out of the wait:
//! - the comet gives no answer at all: after a few consecutive attempts
//!   that could not connect or ran out of `push_timeout` (see
//!   [`reachability`]) it is marked down, and the current and every later
//!   push to it is finished as skipped at once (reason `unreachable`; its
//!   clients reconnect elsewhere and read what was skipped from their
//!   inbox) until a background probe reaches it again. A dead comet so
//!   costs a fraction of a second of stall and a frozen one three
//!   `push_timeout`s, not its lease;
//! - the comet leaves discovery (`gone`): everything pending for it is
//!   finished as skipped;
//! - the job stops past its drain deadline (`abort`): pending work is
//!   dropped unfinished, so its offsets are not committed.
//!
//! Every call is encoded once ([`call`]): its attempts share the bytes.
//!
//! Errors that retrying cannot fix (`InvalidArgument`, `Unimplemented`,
//! `OutOfRange`: the comet rejected the request itself) are logged and
//! given up on at once, so one bad message cannot wedge a partition.

mod call;
mod keys;
mod reachability;
mod rpc;

use std::sync::Arc;
use std::time::Duration;

use courier_cluster::CometNode;
use courier_runtime::ClusterSecret;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

use crate::backlog::Backlog;
use crate::batch::{RoomBatch, RoomBatches};
use crate::push::{CometPush, WorkItem};
use crate::ticket::Ticket;
use call::{Call, Method};
use keys::keys_run;
use reachability::{Probe, Reachability};
use rpc::Answer;

/// Longest wait for a TCP connection to a comet (capped at half of
/// `push_timeout`). Comets are on the local network: a connect that takes
/// longer means the comet is gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// HTTP/2 ping interval and timeout while a call is in flight, so a
/// connection to a vanished host fails in seconds and the next attempt
/// finds the comet unreachable instead of waiting on a dead socket.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// Skip reasons in `courier_job_skipped_total`.
const GONE: &str = "comet_gone";
const UNREACHABLE: &str = "unreachable";

/// What the workers take from the job's config.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSettings {
    pub(crate) room_batch_max: usize,
    pub(crate) room_batch_bytes: usize,
    pub(crate) room_batch_wait: Duration,
    pub(crate) comet_queue: usize,
    pub(crate) comet_queue_wait: Duration,
    pub(crate) push_timeout: Duration,
    /// Every call to a comet carries it.
    pub(crate) secret: ClusterSecret,
    /// TLS of the calls to comets; `None`: plaintext.
    pub(crate) tls: Option<tonic::transport::ClientTlsConfig>,
}

impl WorkerSettings {
    /// The settings in `c`, with its cluster secret checked.
    pub(crate) fn new(c: &crate::JobConfig) -> Result<Self, crate::JobError> {
        let secret = ClusterSecret::new(&c.cluster_secret)
            .map_err(|e| crate::JobError::Config(format!("cluster_secret: {e}")))?;
        let tls = c
            .tls
            .tonic_client()
            .map_err(|e| crate::JobError::Config(format!("tls: {e}")))?;
        Ok(Self {
            room_batch_max: c.room_batch_max,
            room_batch_bytes: c.room_batch_bytes,
            room_batch_wait: c.room_batch_wait,
            comet_queue: c.comet_queue,
            comet_queue_wait: c.comet_queue_wait,
            push_timeout: c.push_timeout,
            secret,
            tls,
        })
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
    /// Whether the worker is behind (its queue overflowed).
    pub(crate) backlog: Arc<Backlog>,
    /// Longest wait for room in a full queue before the comet is behind.
    pub(crate) queue_wait: Duration,
}

/// Why a worker stopped delivering before its queue closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The comet left discovery: skip what is pending.
    Gone,
    /// The job is past its drain deadline: abandon what is pending.
    Aborted,
}

/// Finishes tickets whose push will not be made (comet gone or down).
fn skip(tickets: impl IntoIterator<Item = Ticket>, reason: &'static str) {
    let mut n = 0u64;
    for t in tickets {
        t.finish();
        n += 1;
    }
    metrics::counter!("courier_job_skipped_total", "reason" => reason).increment(n);
}

/// Settles tickets whose push was cut short by `stop`.
fn abandon(stop: Stop, tickets: impl IntoIterator<Item = Ticket>) {
    match stop {
        Stop::Gone => skip(tickets, GONE),
        // Dropped unfinished: the offsets stay uncommitted.
        Stop::Aborted => tickets.into_iter().for_each(drop),
    }
}

/// A running worker for one comet.
#[derive(Debug)]
pub(crate) struct CometWorker {
    comet: String,
    channel: Channel,
    settings: WorkerSettings,
    gone: CancellationToken,
    abort: CancellationToken,
    reachability: Reachability,
    backlog: Arc<Backlog>,
    /// The comet answered `Unimplemented` to a `PushKeysBatch` (an older
    /// comet): send its keys pushes one by one.
    no_keys_batch: bool,
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
        courier_runtime::tls::TlsError,
    > {
        let channel = courier_runtime::tls::endpoint(&comet.grpc, settings.tls.as_ref())?
            .connect_timeout(CONNECT_TIMEOUT.min(settings.push_timeout / 2))
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .tcp_nodelay(true)
            .connect_lazy();
        let (queue, rx) = mpsc::channel(settings.comet_queue.max(1));
        let gone = CancellationToken::new();
        let backlog = Arc::new(Backlog::default());
        let queue_wait = settings.comet_queue_wait;
        let worker = CometWorker {
            comet: comet.id.clone(),
            channel,
            settings,
            gone: gone.clone(),
            abort,
            reachability: Reachability::default(),
            backlog: backlog.clone(),
            no_keys_batch: false,
        };
        let handle = CometHandle {
            queue,
            gone,
            grpc: comet.grpc.clone(),
            backlog,
            queue_wait,
        };
        Ok((handle, worker.run(rx)))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<WorkItem>) {
        let mut batches = RoomBatches::new(
            self.settings.room_batch_max,
            self.settings.room_batch_bytes,
            self.settings.room_batch_wait,
        );
        match self.deliver(&mut rx, &mut batches).await {
            Ok(()) => tracing::debug!(comet = %self.comet, "worker drained"),
            Err(Stop::Gone) => {
                tracing::info!(comet = %self.comet, "comet left discovery; skipping its pending pushes");
                rx.close();
                skip(batches.take_all().into_iter().flat_map(|b| b.tickets), GONE);
                while let Some(item) = rx.recv().await {
                    skip([item.ticket], GONE);
                }
            }
            Err(Stop::Aborted) => {
                tracing::warn!(comet = %self.comet, "worker aborted; its pending pushes stay uncommitted");
            }
        }
    }

    /// Delivers until the queue is closed and empty (every sender dropped).
    async fn deliver(
        &mut self,
        rx: &mut mpsc::Receiver<WorkItem>,
        batches: &mut RoomBatches,
    ) -> Result<(), Stop> {
        // An item taken from the queue that ended a keys batch: next in line.
        let mut next: Option<WorkItem> = None;
        let mut probe: Option<Probe> = None;
        loop {
            if !self.reachability.is_down() {
                probe = None;
            } else if probe.is_none() {
                probe = Some(reachability::probe(
                    self.channel.clone(),
                    self.settings.secret.clone(),
                    self.settings.push_timeout,
                ));
            }
            let item = match next.take() {
                Some(item) => item,
                None => {
                    let deadline = batches.next_deadline();
                    tokio::select! {
                        biased;
                        _ = self.abort.cancelled() => return Err(Stop::Aborted),
                        _ = self.gone.cancelled() => return Err(Stop::Gone),
                        () = reachability::reached(&mut probe) => {
                            tracing::info!(comet = %self.comet, "comet reachable again; delivering to it");
                            self.reachability.recovered();
                            continue;
                        }
                        _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                            if deadline.is_some() =>
                        {
                            self.flush(batches.take_due(Instant::now())).await?;
                            continue;
                        }
                        item = rx.recv() => match item {
                            None => return self.flush(batches.take_all()).await,
                            Some(item) => item,
                        },
                    }
                }
            };
            self.note_drained(rx);
            let WorkItem { push, ticket } = item;
            let (call, tickets) = match push {
                CometPush::Room { room, message } => {
                    if let Some(full) = batches.add(room, message, ticket, Instant::now()) {
                        self.flush(vec![full]).await?;
                    }
                    continue;
                }
                CometPush::Keys { keys, message } => {
                    keys_run(rx, &mut next, Call::keys_entry(keys, message), ticket)
                }
                CometPush::Broadcast { message, rate } => {
                    (Call::broadcast(message, rate), vec![ticket])
                }
                CometPush::Kick { keys, reason } => (Call::kick(keys, reason), vec![ticket]),
            };
            // A keys run may have emptied the queue: look again.
            self.note_drained(rx);
            // Open room batches leave first, to keep consumption order.
            if !batches.is_empty() {
                self.flush(batches.take_all()).await?;
            }
            self.send(call, tickets).await?;
        }
    }

    /// Clears the comet's *behind* mark once its queue is down to half.
    fn note_drained(&self, rx: &mpsc::Receiver<WorkItem>) {
        if self.backlog.drained(rx.len(), self.settings.comet_queue) {
            tracing::info!(comet = %self.comet, "comet caught up; queuing its pushes again");
        }
    }

    /// Sends room batches in order; if the comet goes away midway, the rest
    /// are skipped too.
    async fn flush(&mut self, batches: Vec<RoomBatch>) -> Result<(), Stop> {
        let mut batches = batches.into_iter();
        while let Some(batch) = batches.next() {
            if let Err(stop) = self.send_room(batch).await {
                abandon(stop, batches.flat_map(|b| b.tickets));
                return Err(stop);
            }
        }
        Ok(())
    }

    /// Sends one room batch. A batch the comet refuses as too large
    /// (`OutOfRange`: over its message limit) is split in halves and sent
    /// again, in order, so only a single message too large on its own is
    /// ever given up; a size error never counts as delivered.
    async fn send_room(&mut self, batch: RoomBatch) -> Result<(), Stop> {
        let mut pending = std::collections::VecDeque::from([(batch.messages, batch.tickets)]);
        while let Some((messages, mut tickets)) = pending.pop_front() {
            let call = Call::room(batch.room.clone(), messages.clone());
            let answer = match self.call(&call).await {
                Ok(answer) => answer,
                Err(stop) => {
                    let rest = pending.into_iter().flat_map(|(_, t)| t);
                    abandon(stop, tickets.into_iter().chain(rest));
                    return Err(stop);
                }
            };
            match answer {
                Answer::Rejected(status)
                    if status.code() == Code::OutOfRange && messages.len() > 1 =>
                {
                    metrics::counter!("courier_job_room_batches_split_total").increment(1);
                    tracing::warn!(
                        comet = %self.comet, room = %batch.room, messages = messages.len(),
                        message = status.message(), "room batch too large for the comet; splitting it"
                    );
                    let mut first = messages;
                    let second = first.split_off(first.len() / 2);
                    let second_tickets = tickets.split_off(first.len());
                    pending.push_front((second, second_tickets));
                    pending.push_front((first, tickets));
                }
                answer => self.settle(answer, Method::PushRoom, tickets),
            }
        }
        Ok(())
    }

    /// Makes `call` and settles `tickets` by its answer. A keys batch the
    /// comet rejects is sent again entry by entry.
    async fn send(&mut self, call: Call, tickets: Vec<Ticket>) -> Result<(), Stop> {
        if call.method == Method::PushKeysBatch && self.no_keys_batch {
            return self.send_each(call.into_single_keys(), tickets).await;
        }
        let answer = match self.call(&call).await {
            Ok(answer) => answer,
            Err(stop) => {
                abandon(stop, tickets);
                return Err(stop);
            }
        };
        match answer {
            Answer::Rejected(status) if call.method == Method::PushKeysBatch => {
                tracing::warn!(
                    comet = %self.comet, code = ?status.code(), message = status.message(),
                    "comet rejected a keys batch; sending its pushes one by one"
                );
                if status.code() == Code::Unimplemented {
                    self.no_keys_batch = true;
                }
                self.send_each(call.into_single_keys(), tickets).await
            }
            answer => {
                self.settle(answer, call.method, tickets);
                Ok(())
            }
        }
    }

    /// Sends each call with its ticket, in order.
    async fn send_each(&mut self, calls: Vec<Call>, tickets: Vec<Ticket>) -> Result<(), Stop> {
        let mut rest = calls.into_iter().zip(tickets);
        while let Some((call, ticket)) = rest.next() {
            match self.call(&call).await {
                Ok(answer) => self.settle(answer, call.method, vec![ticket]),
                Err(stop) => {
                    abandon(stop, std::iter::once(ticket).chain(rest.map(|(_, t)| t)));
                    return Err(stop);
                }
            }
        }
        Ok(())
    }

    /// Finishes `tickets` by how a `method` call was answered.
    fn settle(&self, answer: Answer, method: Method, tickets: Vec<Ticket>) {
        let rpc = method.name();
        match answer {
            Answer::Delivered => {
                metrics::counter!("courier_job_pushes_total", "rpc" => rpc).increment(1);
                tickets.into_iter().for_each(Ticket::finish);
            }
            Answer::Rejected(status) => {
                metrics::counter!("courier_job_pushes_rejected_total", "rpc" => rpc).increment(1);
                tracing::error!(
                    comet = %self.comet, rpc, code = ?status.code(),
                    message = status.message(), "comet rejected a push; giving up on it"
                );
                tickets.into_iter().for_each(Ticket::finish);
            }
            Answer::Unreachable => skip(tickets, UNREACHABLE),
        }
    }

    /// Calls the comet until it answers, is down, leaves discovery or the
    /// job aborts. A comet already down is not called.
    async fn call(&mut self, call: &Call) -> Result<Answer, Stop> {
        if self.reachability.is_down() {
            return Ok(Answer::Unreachable);
        }
        let Self {
            comet,
            channel,
            settings,
            gone,
            abort,
            reachability,
            ..
        } = self;
        let attempts = rpc::until_answered(
            comet,
            channel,
            &settings.secret,
            settings.push_timeout,
            reachability,
            call,
        );
        tokio::select! {
            biased;
            _ = abort.cancelled() => Err(Stop::Aborted),
            _ = gone.cancelled() => Err(Stop::Gone),
            answer = attempts => Ok(answer),
        }
    }
}
