//! Test support: an in-memory cluster (MemoryQueue + MemoryDiscovery), fake
//! comets that record what they receive, and a job running against them.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use courier_cluster::discovery::memory::MemoryDiscovery;
use courier_cluster::discovery::register_json;
use courier_cluster::queue::memory::MemoryQueue;
use courier_cluster::{CometNode, NodeState, Queue, Registration, ServiceKind};
use courier_job::{JobConfig, JobDeps, JobError};
use courier_proto::comet::comet_server::{Comet, CometServer};
use courier_proto::comet::{
    BroadcastRequest, DrainReply, DrainRequest, KickReply, KickRequest, PushKeysBatchRequest,
    PushKeysRequest, PushReply, PushRoomRequest, RemoveFromRoomReply, RemoveFromRoomRequest,
    ResyncReply, ResyncRequest, StatsReply, StatsRequest,
};
use courier_proto::queue::envelope::Kind;
use courier_proto::queue::{BroadcastPush, Envelope, KeysPush, RoomPush};
use courier_testkit::messages::{encoded, ids};
use courier_testkit::CallLog;
pub use courier_testkit::PATIENCE;
use prost::Message as _;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// One call a fake comet received, reduced to what tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Keys {
        keys: Vec<String>,
        ids: Vec<String>,
    },
    /// One `PushKeysBatch`: each entry's keys, and every entry's ids in order.
    KeysBatch {
        keys: Vec<Vec<String>>,
        ids: Vec<String>,
    },
    Room {
        room: String,
        ids: Vec<String>,
    },
    Broadcast {
        ids: Vec<String>,
        rate: u32,
    },
    Kick {
        keys: Vec<String>,
        reason: String,
    },
}

impl Call {
    /// The message ids this call carried.
    pub fn ids(&self) -> &[String] {
        match self {
            Call::Keys { ids, .. }
            | Call::KeysBatch { ids, .. }
            | Call::Room { ids, .. }
            | Call::Broadcast { ids, .. } => ids,
            Call::Kick { .. } => &[],
        }
    }
}

struct FakeState {
    /// Every call as it arrives (including failed and blocked ones).
    received: CallLog<Call>,
    /// Calls answered with success.
    answered: CallLog<Call>,
    /// This many calls fail with `Unavailable` first.
    fail_first: AtomicU32,
    /// If set, each call waits for one permit before answering.
    gate: Option<Arc<Semaphore>>,
    /// Calls the caller gave up on before they were answered.
    abandoned: watch::Sender<usize>,
    /// Answers `PushKeysBatch` with `Unimplemented`, as an older comet would.
    no_keys_batch: bool,
}

/// Counts a call as abandoned if it is dropped before it finished.
struct Unfinished<'a>(Option<&'a watch::Sender<usize>>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.0 {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// Our own implementation of the comet gRPC service, recording calls.
#[derive(Clone)]
pub struct FakeComet(Arc<FakeState>);

impl FakeComet {
    async fn handle(&self, call: Call) -> Result<(), Status> {
        self.0.received.record(call.clone());
        let mut unfinished = Unfinished(Some(&self.0.abandoned));
        let fail = self
            .0
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            unfinished.0 = None;
            return Err(Status::unavailable("fake comet warming up"));
        }
        if let Some(gate) = &self.0.gate {
            gate.acquire().await.unwrap().forget();
        }
        unfinished.0 = None;
        self.0.answered.record(call);
        Ok(())
    }
}

fn reply() -> Response<PushReply> {
    Response::new(PushReply { delivered: 1 })
}

#[tonic::async_trait]
impl Comet for FakeComet {
    async fn push_keys(&self, r: Request<PushKeysRequest>) -> Result<Response<PushReply>, Status> {
        let r = r.into_inner();
        let call = Call::Keys {
            keys: r.keys,
            ids: ids(&r.messages),
        };
        self.handle(call).await.map(|()| reply())
    }
    async fn push_keys_batch(
        &self,
        r: Request<PushKeysBatchRequest>,
    ) -> Result<Response<PushReply>, Status> {
        if self.0.no_keys_batch {
            return Err(Status::unimplemented("no PushKeysBatch here"));
        }
        let pushes = r.into_inner().pushes;
        let call = Call::KeysBatch {
            keys: pushes.iter().map(|p| p.keys.clone()).collect(),
            ids: pushes.iter().flat_map(|p| ids(&p.messages)).collect(),
        };
        self.handle(call).await.map(|()| reply())
    }
    async fn push_room(&self, r: Request<PushRoomRequest>) -> Result<Response<PushReply>, Status> {
        let r = r.into_inner();
        let call = Call::Room {
            room: r.room,
            ids: ids(&r.messages),
        };
        self.handle(call).await.map(|()| reply())
    }
    async fn broadcast(&self, r: Request<BroadcastRequest>) -> Result<Response<PushReply>, Status> {
        let r = r.into_inner();
        let call = Call::Broadcast {
            ids: ids(&r.messages),
            rate: r.rate,
        };
        self.handle(call).await.map(|()| reply())
    }
    async fn kick(&self, r: Request<KickRequest>) -> Result<Response<KickReply>, Status> {
        let r = r.into_inner();
        let call = Call::Kick {
            keys: r.keys,
            reason: r.reason,
        };
        self.handle(call)
            .await
            .map(|()| Response::new(KickReply { kicked: 1 }))
    }
    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsReply>, Status> {
        Ok(Response::new(StatsReply::default()))
    }
    async fn remove_from_room(
        &self,
        _: Request<RemoveFromRoomRequest>,
    ) -> Result<Response<RemoveFromRoomReply>, Status> {
        Err(Status::unimplemented("jobs never remove room members"))
    }
    async fn drain(&self, _: Request<DrainRequest>) -> Result<Response<DrainReply>, Status> {
        Err(Status::unimplemented("a fake comet does not drain"))
    }

    async fn resync(&self, _: Request<ResyncRequest>) -> Result<Response<ResyncReply>, Status> {
        Err(Status::unimplemented("a fake comet does not resync"))
    }
}

/// How a fake comet behaves.
#[derive(Default)]
pub struct Behaviour {
    pub fail_first: u32,
    pub gate: Option<Arc<Semaphore>>,
    /// Refuse `PushKeysBatch` (`Unimplemented`).
    pub no_keys_batch: bool,
    /// The gRPC server's largest accepted request (tonic's default 4 MiB
    /// when unset).
    pub max_request: Option<usize>,
}

impl Behaviour {
    /// Answers a call only once `gate` hands it a permit.
    pub fn gated(gate: &Arc<Semaphore>) -> Self {
        Self {
            gate: Some(Arc::clone(gate)),
            ..Self::default()
        }
    }
}

/// A fake comet served on loopback and registered in discovery.
pub struct RunningComet {
    pub id: String,
    fake: FakeComet,
    registration: Option<Registration>,
    stop: CancellationToken,
}

impl RunningComet {
    /// Waits until the answered calls satisfy `pred`, and returns them.
    pub async fn answered_until(&self, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let found = |calls: &[Call]| pred(calls).then(|| calls.to_vec());
        self.fake
            .0
            .answered
            .wait_until("answered calls", found)
            .await
    }

    /// Waits until the received calls satisfy `pred`, and returns them.
    pub async fn received_until(&self, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let found = |calls: &[Call]| pred(calls).then(|| calls.to_vec());
        self.fake
            .0
            .received
            .wait_until("received calls", found)
            .await
    }

    /// Waits until the job has given up on `n` calls (cancelled them).
    pub async fn abandoned_until(&self, n: usize) {
        let mut rx = self.fake.0.abandoned.subscribe();
        tokio::time::timeout(PATIENCE, rx.wait_for(|&a| a >= n))
            .await
            .expect("timed out waiting for the job to give up a call")
            .expect("fake comet gone");
    }

    /// What was answered so far.
    pub fn answered(&self) -> Vec<Call> {
        self.fake.0.answered.all()
    }

    /// Removes the comet from discovery (the server keeps running).
    pub async fn leave_discovery(&mut self) {
        if let Some(r) = self.registration.take() {
            r.deregister().await;
        }
    }
}

impl Drop for RunningComet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A memory queue and discovery with fake comets in it.
pub struct Cluster {
    pub queue: Arc<MemoryQueue>,
    pub discovery: Arc<MemoryDiscovery>,
}

impl Cluster {
    pub fn new() -> Self {
        Self {
            queue: Arc::new(MemoryQueue::new(4)),
            discovery: Arc::new(MemoryDiscovery::default()),
        }
    }

    /// Serves a fake comet on 127.0.0.1:0 and registers it as `id`.
    pub async fn comet(&self, id: &str, behaviour: Behaviour) -> RunningComet {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.comet_on(id, behaviour, listener, true).await
    }

    /// Registers comet `id` at a loopback address nothing listens on; keep
    /// the registration alive. `comet_on` that address brings it to life.
    pub async fn dead_comet(&self, id: &str) -> (SocketAddr, Registration) {
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let registration = self.register(id, addr).await;
        (addr, registration)
    }

    /// Registers comet `id` at an address that accepts TCP connections and
    /// then never reads or answers (a frozen process). The sockets live as
    /// long as the returned task.
    pub async fn stuck_comet(&self, id: &str) -> (Registration, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        (self.register(id, addr).await, holder)
    }

    async fn register(&self, id: &str, grpc: SocketAddr) -> Registration {
        let node = CometNode {
            id: id.to_owned(),
            tcp: "127.0.0.1:1".to_owned(),
            ws: String::new(),
            grpc: grpc.to_string(),
            weight: 1,
            connections: 0,
            state: NodeState::Serving,
        };
        register_json(&*self.discovery, ServiceKind::Comet, id, &node)
            .await
            .unwrap()
    }

    /// Serves a fake comet on `listener`, registered as `id` if `register`.
    pub async fn comet_on(
        &self,
        id: &str,
        behaviour: Behaviour,
        listener: tokio::net::TcpListener,
        register: bool,
    ) -> RunningComet {
        let fake = FakeComet(Arc::new(FakeState {
            received: CallLog::default(),
            answered: CallLog::default(),
            fail_first: AtomicU32::new(behaviour.fail_first),
            gate: behaviour.gate,
            abandoned: watch::Sender::new(0),
            no_keys_batch: behaviour.no_keys_batch,
        }));
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let mut service = CometServer::new(fake.clone());
        if let Some(max) = behaviour.max_request {
            service = service.max_decoding_message_size(max);
        }
        let server = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        let registration = match register {
            true => Some(self.register(id, addr).await),
            false => None,
        };
        RunningComet {
            id: id.to_owned(),
            fake,
            registration,
            stop,
        }
    }

    /// Starts a job with `config` (group and timeouts as the test needs).
    pub fn job(&self, config: JobConfig) -> RunningJob {
        let shutdown = CancellationToken::new();
        let deps = JobDeps {
            queue: self.queue.clone(),
            discovery: self.discovery.clone(),
        };
        let task = tokio::spawn(courier_job::serve(config, deps, shutdown.clone()));
        RunningJob { shutdown, task }
    }

    /// Publishes an envelope under queue key `key`.
    pub async fn publish(&self, key: &str, envelope: Envelope) {
        self.queue
            .publish(key, envelope.encode_to_vec().into())
            .await
            .unwrap();
    }
}

/// A job running in the background.
pub struct RunningJob {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), JobError>>,
}

impl RunningJob {
    /// Shuts the job down and waits until `serve` returned.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("job did not stop")
            .unwrap()
            .unwrap();
    }
}

/// A test config: its own group, short timeouts.
pub fn config(group: &str) -> JobConfig {
    JobConfig {
        group: group.to_owned(),
        push_timeout: Duration::from_millis(500),
        admin_addr: Some("127.0.0.1:0".parse().expect("an address")),
        cluster_secret: "job-test-cluster-secret-of-32-bytes".into(),
        ..JobConfig::default()
    }
}

pub fn keys(comet: &str, keys: &[&str], id: &str) -> Envelope {
    Envelope {
        kind: Some(Kind::Keys(KeysPush {
            comet_id: comet.to_owned(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            message: encoded(id),
        })),
    }
}

pub fn room(room: &str, comets: &[&str], id: &str) -> Envelope {
    Envelope {
        kind: Some(Kind::Room(RoomPush {
            room: room.to_owned(),
            comet_ids: comets.iter().map(|c| c.to_string()).collect(),
            message: encoded(id),
        })),
    }
}

/// A broadcast of message `id`, `rate` connections a second per comet.
pub fn broadcast(id: &str, rate: u32) -> Envelope {
    Envelope {
        kind: Some(Kind::Broadcast(BroadcastPush {
            message: encoded(id),
            rate,
        })),
    }
}

/// Every message id in `calls`, in call order.
pub fn all_ids(calls: &[Call]) -> Vec<String> {
    calls.iter().flat_map(|c| c.ids().iter().cloned()).collect()
}

/// `prefix0`, `prefix1`, ... `prefix{n-1}`.
pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}
