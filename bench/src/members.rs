//! The room members one process holds: connecting them with bounded
//! concurrency and bounded retries, knowing when each has every push, and
//! summing up what they saw.
//!
//! Shape: one task per member (see [`member`]), a semaphore that bounds the
//! handshakes in flight, and a slice of [`MemberSlot`]s the process scans
//! (a few thousand relaxed loads, every few milliseconds) instead of a
//! shared counter every delivery would contend on. Two cancellation
//! tokens bound everything: `give_up` ends handshakes still trying when
//! the connect phase runs out of time, `stop` ends every member.
//!
//! [`member`]: super::member

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dial::SourceSpread;
use super::latency::Latency;
use super::member::{
    self, error_code_name, stop_crowd, unix_micros, Ended, MemberSlot, MemberState, ReadStats,
    Refused, Totals,
};
use super::wire;

/// How often the slots are scanned while waiting.
const POLL: Duration = Duration::from_millis(10);

/// Which members to hold and how to connect them. It crosses the process
/// boundary as JSON, so a worker process holds its share from it alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembersPlan {
    /// Global number of the first member; members are `first..first + count`.
    pub first: u64,
    pub count: u64,
    /// Member `i` connects to `comets[i % comets.len()]`.
    pub comets: Vec<SocketAddr>,
    pub token: String,
    pub room: String,
    /// Connections per loopback source address (0 = no bind).
    pub per_source: u32,
    /// Handshakes in flight at once in this process.
    pub concurrency: usize,
    /// Further attempts after a refused or failed handshake.
    pub retries: u32,
    /// Every `sample_every`-th member (by global number) records latency;
    /// 0 = none.
    pub sample_every: u64,
    /// Pushes each member should receive (lowered later if some were not
    /// accepted).
    pub pushes: u64,
    pub handshake_timeout_ms: u64,
    pub max_frame: usize,
    /// Each member its own user, with a token minted here (`token` unused).
    #[serde(default)]
    pub mint: Option<Mint>,
    /// Seconds between a member's heartbeats; 0 = two thirds of the
    /// interval the comet gives in `AuthReply`.
    #[serde(default)]
    pub heartbeat_secs: u32,
}

/// Minting each member's own login token: member `i` is user
/// `{uid_prefix}{i}`, signed with the cluster's JWT secret (the bench then
/// needs no login per user, which would cost a password hash each).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mint {
    pub jwt_secret: String,
    pub uid_prefix: String,
}

/// How long a minted token lives.
const MINTED_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Handshake failures and early closes, by reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Handshakes answered with an `Error` frame, by code (retries included).
    pub refused: BTreeMap<String, u64>,
    /// Other failed handshake attempts, by reason (retries included).
    pub failed_attempts: BTreeMap<String, u64>,
    /// Members that never connected.
    pub gave_up: u64,
    /// Live members the server or network ended early, by reason.
    pub closed: BTreeMap<String, u64>,
    pub unexpected_frames: u64,
    pub bad_frames: u64,
    pub unreadable_samples: u64,
}

impl Tally {
    /// Adds `other` in.
    pub fn merge(&mut self, other: &Tally) {
        for (into, from) in [
            (&mut self.refused, &other.refused),
            (&mut self.failed_attempts, &other.failed_attempts),
            (&mut self.closed, &other.closed),
        ] {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += v;
            }
        }
        self.gave_up += other.gave_up;
        self.unexpected_frames += other.unexpected_frames;
        self.bad_frames += other.bad_frames;
        self.unreadable_samples += other.unreadable_samples;
    }

    fn read(&mut self, stats: ReadStats) {
        self.unexpected_frames += stats.unexpected_frames;
        self.bad_frames += stats.bad_frames;
        self.unreadable_samples += stats.unreadable_samples;
    }
}

/// The end of the connect phase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Connected {
    pub connected: u64,
    pub gave_up: u64,
    /// Unix µs when the first handshake started.
    pub started_us: u64,
    /// Unix µs when the last successful handshake ended.
    pub finished_us: u64,
}

/// What the members saw, once stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub received: u64,
    /// Members that got every expected push.
    pub complete: u64,
    /// Unix µs of the last delivery, 0 if none.
    pub last_delivery_us: u64,
    /// Sampled latencies as `[µs, count]` pairs.
    pub latency: Vec<[u64; 2]>,
    pub tally: Tally,
}

struct Shared {
    plan: MembersPlan,
    auth: bytes::Bytes,
    minter: Option<courier_runtime::TokenKeys>,
    spread: SourceSpread,
    handshakes: Semaphore,
    slots: Box<[MemberSlot]>,
    target: AtomicU64,
    handshakes_done: AtomicU64,
    last_connected_us: AtomicU64,
    latency: Mutex<Latency>,
    tally: Mutex<Tally>,
    give_up: CancellationToken,
    stop: CancellationToken,
}

/// The members of one process.
pub struct Members {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    started_us: u64,
}

impl Members {
    /// Starts connecting every member of `plan`; see [`Members::connected`].
    pub fn connect(plan: MembersPlan) -> Self {
        let count = usize::try_from(plan.count).unwrap_or(0);
        let shared = Arc::new(Shared {
            auth: wire::auth_frame(member::AUTH_ID, &plan.token, &plan.room),
            minter: plan
                .mint
                .as_ref()
                .map(|m| courier_runtime::TokenKeys::new(m.jwt_secret.as_bytes())),
            spread: SourceSpread::new(plan.per_source),
            handshakes: Semaphore::new(plan.concurrency.max(1)),
            slots: (0..count).map(|_| MemberSlot::default()).collect(),
            target: AtomicU64::new(plan.pushes),
            handshakes_done: AtomicU64::new(0),
            last_connected_us: AtomicU64::new(0),
            latency: Mutex::new(Latency::new()),
            tally: Mutex::default(),
            give_up: CancellationToken::new(),
            stop: CancellationToken::new(),
            plan,
        });
        let started_us = unix_micros();
        let mut tasks = JoinSet::new();
        for local in 0..count {
            tasks.spawn(run_member(shared.clone(), local));
        }
        Self {
            shared,
            tasks,
            started_us,
        }
    }

    /// Waits until every member has connected or given up, or until
    /// `deadline`, after which handshakes still trying give up.
    pub async fn connected(&self, deadline: Instant) -> Connected {
        let count = self.shared.slots.len() as u64;
        while self.shared.handshakes_done.load(Ordering::Acquire) < count
            && Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
        self.shared.give_up.cancel();
        // Members cut short by `give_up` report within a moment.
        let grace = Instant::now() + Duration::from_secs(2);
        while self.shared.handshakes_done.load(Ordering::Acquire) < count && Instant::now() < grace
        {
            tokio::time::sleep(POLL).await;
        }
        let (mut connected, mut gave_up) = (0, 0);
        for slot in self.shared.slots.iter() {
            match slot.state() {
                MemberState::Live | MemberState::Closed => connected += 1,
                MemberState::Failed | MemberState::Connecting => gave_up += 1,
            }
        }
        Connected {
            connected,
            gave_up,
            started_us: self.started_us,
            finished_us: self.shared.last_connected_us.load(Ordering::Relaxed),
        }
    }

    /// Sets the pushes each member should receive.
    pub fn expect(&self, pushes: u64) {
        self.shared.target.store(pushes, Ordering::Relaxed);
    }

    /// Messages delivered so far to this process's members.
    pub fn received(&self) -> u64 {
        self.shared.slots.iter().map(MemberSlot::received).sum()
    }

    /// Whether every connected member has every expected push or was
    /// closed early.
    pub fn settled(&self) -> bool {
        let target = self.shared.target.load(Ordering::Relaxed);
        self.shared.slots.iter().all(|s| match s.state() {
            MemberState::Live => s.received() >= target,
            MemberState::Closed | MemberState::Failed => true,
            MemberState::Connecting => false,
        })
    }

    /// Waits until [`Members::settled`], `deadline`, or `stop_early` is
    /// cancelled; returns whether settled.
    pub async fn wait_settled(&self, deadline: Instant, stop_early: &CancellationToken) -> bool {
        loop {
            if self.settled() {
                return true;
            }
            if Instant::now() >= deadline || stop_early.is_cancelled() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop_early.cancelled() => {}
            }
        }
    }

    /// Ends every member and sums up what they saw.
    pub async fn stop(mut self) -> Outcome {
        let target = self.shared.target.load(Ordering::Relaxed);
        let totals = Totals::of(&self.shared.slots, target);
        let mut outcome = Outcome {
            received: totals.received,
            complete: totals.complete,
            last_delivery_us: totals.last_delivery_us,
            ..Outcome::default()
        };
        stop_crowd(&self.shared.give_up, &self.shared.stop, &mut self.tasks).await;
        outcome.latency = self.shared.latency.lock().to_pairs();
        outcome.tally = self.shared.tally.lock().clone();
        outcome
    }
}

/// One member's whole life: handshake with retries, then reading.
async fn run_member(shared: Arc<Shared>, local: usize) {
    let Some(slot) = shared.slots.get(local) else {
        return;
    };
    let plan = &shared.plan;
    let index = plan.first + local as u64;
    let dialed = match dial(&shared, index).await {
        Some(dialed) => {
            slot.set_state(MemberState::Live);
            shared
                .last_connected_us
                .fetch_max(unix_micros(), Ordering::Relaxed);
            shared.handshakes_done.fetch_add(1, Ordering::AcqRel);
            dialed
        }
        None => {
            slot.set_state(MemberState::Failed);
            shared.tally.lock().gave_up += 1;
            shared.handshakes_done.fetch_add(1, Ordering::AcqRel);
            return;
        }
    };
    let sampled = plan.sample_every > 0 && index % plan.sample_every == 0;
    let sample = sampled.then_some(&shared.latency);
    let (ended, stats) =
        member::read_pushes(dialed, slot, sample, &shared.stop, plan.max_frame).await;
    let mut tally = shared.tally.lock();
    if let Ended::Closed(reason) = ended {
        slot.set_state(MemberState::Closed);
        *tally.closed.entry(reason).or_default() += 1;
    }
    tally.read(stats);
}

/// Handshakes until one succeeds, retries run out, or the connect phase
/// gives up.
async fn dial(shared: &Shared, index: u64) -> Option<member::Dialed> {
    let plan = &shared.plan;
    let dest = *plan
        .comets
        .get(usize::try_from(index % plan.comets.len().max(1) as u64).ok()?)?;
    let timeout = Duration::from_millis(plan.handshake_timeout_ms);
    let auth = match (&shared.minter, &plan.mint) {
        (Some(keys), Some(mint)) => {
            let uid = format!("{}{index}", mint.uid_prefix);
            match keys.issue(&uid, MINTED_TOKEN_TTL) {
                Ok(token) => wire::auth_frame(member::AUTH_ID, &token, &plan.room),
                Err(e) => {
                    *shared
                        .tally
                        .lock()
                        .failed_attempts
                        .entry(format!("minting a token: {e}"))
                        .or_default() += 1;
                    return None;
                }
            }
        }
        _ => shared.auth.clone(),
    };
    for attempt in 0..=plan.retries {
        let result = tokio::select! {
            _ = shared.give_up.cancelled() => return None,
            result = async {
                let _permit = shared.handshakes.acquire().await.ok()?;
                Some(member::handshake(&shared.spread, index, dest, &auth, timeout, plan.max_frame).await)
            } => result?,
        };
        match result {
            Ok(dialed) if plan.heartbeat_secs > 0 => {
                return Some(
                    dialed.heartbeat_every(Duration::from_secs(plan.heartbeat_secs.into())),
                )
            }
            Ok(dialed) => return Some(dialed),
            Err(Refused::Error(code)) => {
                *shared
                    .tally
                    .lock()
                    .refused
                    .entry(error_code_name(code))
                    .or_default() += 1;
            }
            Err(Refused::Failed(reason)) => {
                *shared
                    .tally
                    .lock()
                    .failed_attempts
                    .entry(reason)
                    .or_default() += 1;
            }
        }
        if attempt < plan.retries {
            // 100 ms, 200 ms, 400 ms … at most 2 s, so retries do not
            // arrive in lockstep with the crowd that was just refused.
            let backoff =
                Duration::from_millis(100u64 << attempt.min(4)).min(Duration::from_secs(2));
            let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
            tokio::select! {
                _ = shared.give_up.cancelled() => return None,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
        }
    }
    None
}
