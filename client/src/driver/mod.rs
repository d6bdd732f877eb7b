//! The connection task. One driver per [`crate::Client`] owns the socket, so
//! nothing about the connection is shared but a small state snapshot
//! (key, comet, rooms, token) behind a mutex the handles read.
//!
//! Requests reach the driver over a bounded channel with a oneshot for the
//! reply; the driver gives each a frame id and keeps it in `pending` until the
//! reply (or an `Error` frame with that id) arrives. While it is reconnecting
//! it does not read the channel, so requests wait there; the caller's timeout
//! bounds the wait. Requests in flight when a connection drops are sent again
//! on the next one: joins and leaves are idempotent and sends carry a
//! `client_msg_id` for the server to drop duplicates.
//!
//! Connection loss (EOF, bad bytes, no traffic for three heartbeats, a
//! draining comet's `Reconnect`, a slow-consumer kick) leads to a jittered
//! backoff and a reconnect that prefers another comet. A deliberate `Kick`
//! ends the driver.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use courier_proto::client::{frame::Body, Frame, Heartbeat, Refresh};
use courier_proto::Position;
use futures::SinkExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

mod frames;

use frames::SYNC_LIMIT;

use crate::backoff::Backoff;
use crate::dedup::{RecentIds, DEFAULT_DEDUP_CAPACITY};
use crate::session::{self, AuthRequest, Session};
use crate::state::{ClientState, Ended};
use crate::streams::Sequencer;
use crate::{ClientConfig, ClientError, CometAddr, Event, LoginReply};

/// A login in progress.
pub(crate) type Login = Pin<Box<dyn Future<Output = Result<LoginReply, ClientError>> + Send>>;

/// How the driver logs in again (HTTP in production, a fixed reply in tests).
pub(crate) type LoginFn = Arc<dyn Fn() -> Login + Send + Sync>;

/// How the driver refreshes its comet ranking with the token it holds.
pub(crate) type NodesFn = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Vec<CometAddr>, ClientError>> + Send>>
        + Send
        + Sync,
>;

/// What the driver asks logic over HTTP while it reconnects.
pub(crate) struct LogicCalls {
    /// Log in again (a refused or expiring token).
    pub(crate) login: LoginFn,
    /// Refresh the comet ranking with the current token.
    pub(crate) nodes: NodesFn,
}

/// The reply to one request.
pub(crate) type ReplyTx = oneshot::Sender<Result<Body, ClientError>>;

/// A request from a handle: a frame body to send, and where the reply goes.
#[derive(Debug)]
pub(crate) struct Command {
    pub(crate) body: Body,
    pub(crate) reply: ReplyTx,
}

/// Requests written per flush at most, so one busy caller cannot starve reads.
const WRITE_BATCH: usize = 64;
/// How long a clean shutdown may spend flushing the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Longest wait a draining comet's `Reconnect{after_ms}` is honoured for.
const MAX_DRAIN_WAIT: Duration = Duration::from_secs(60);
/// Re-login when the token has less than this share of its life left.
const TOKEN_REFRESH_DIVISOR: u32 = 10;
/// The longest token life the driver believes (a year).
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(365 * 24 * 3600);
/// What a token's stated lifetime may be longer than its real one.
const TOKEN_ROUNDING: Duration = Duration::from_secs(1);
/// How long after a failed re-login on a live connection it is tried again.
const RELOGIN_RETRY: Duration = Duration::from_secs(5);

/// Why a connection ended.
#[derive(Debug)]
enum SessionEnd {
    /// The client was closed, or every handle dropped.
    Shutdown,
    /// The server closed us on purpose.
    Kicked(String),
    /// The connection was lost; reconnect, after `after` if the comet said so.
    Lost {
        reason: String,
        after: Option<Duration>,
    },
}

/// The connection task's state.
pub(crate) struct Driver {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) logic: LogicCalls,
    pub(crate) shared: Arc<ClientState>,
    pub(crate) cmds: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) cancel: CancellationToken,
    login_reply: LoginReply,
    token_expires_at: Instant,
    token_refused: bool,
    next_id: u64,
    pending: HashMap<u64, Command>,
    /// Requests in flight when the last connection dropped.
    retry: Vec<(u64, Command)>,
    /// Ids of messages without a seq seen lately (duplicates are dropped).
    recent: RecentIds,
    /// The order of the user's inbox and of each room.
    inbox: Sequencer,
    rooms: HashMap<String, Sequencer>,
    /// Syncs the driver sent itself: frame id -> room ("" for the inbox).
    syncs: HashMap<u64, String>,
    /// The inbox position last acknowledged to the comet, and whether
    /// inbox messages were shown since.
    acked: Position,
    ack_due: bool,
    backoff: Backoff,
    /// When to sync the gaps a live message left open, if they still are
    /// (see [`crate::streams::Outcome::sync_later`]).
    reorder_at: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(
        config: Arc<ClientConfig>,
        logic: LogicCalls,
        login_reply: LoginReply,
        shared: Arc<ClientState>,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Self {
        let backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
        let resume = config.resume_from.unwrap_or(Position::NONE);
        let inbox = config.resume_from.map(Sequencer::at).unwrap_or_default();
        shared.conn.lock().inbox = resume;
        let mut driver = Self {
            config,
            logic,
            shared,
            cmds,
            events,
            cancel,
            token_expires_at: Instant::now(),
            login_reply: login_reply.clone(),
            token_refused: false,
            next_id: 0,
            pending: HashMap::new(),
            retry: Vec::new(),
            recent: RecentIds::new(DEFAULT_DEDUP_CAPACITY),
            inbox,
            rooms: HashMap::new(),
            syncs: HashMap::new(),
            acked: resume,
            ack_due: false,
            backoff,
            reorder_at: None,
        };
        driver.use_login(login_reply);
        driver
    }

    fn use_login(&mut self, reply: LoginReply) {
        // A second less than said: `expires_in` is whole seconds, and the
        // token's expiry was rounded to one when it was signed.
        // The server's word is capped, so no clock arithmetic overflows.
        let life = Duration::from_secs(reply.expires_in).min(MAX_TOKEN_LIFE);
        self.token_expires_at = Instant::now() + life.saturating_sub(TOKEN_ROUNDING);
        self.shared.conn.lock().token = reply.token.clone();
        self.login_reply = reply;
        self.token_refused = false;
    }

    fn next_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Tries the ranked comets, `avoid` last; returns the first that accepts us.
    pub(crate) async fn connect_any(
        &mut self,
        avoid: Option<&str>,
    ) -> Result<Session, ClientError> {
        let comets = self.login_reply.comets.clone();
        let ordered = comets
            .iter()
            .filter(|c| Some(c.id.as_str()) != avoid)
            .chain(comets.iter().filter(|c| Some(c.id.as_str()) == avoid));
        let mut last_err = ClientError::NoComet("login returned no comet".into());
        for comet in ordered {
            match self.open(comet).await {
                Ok(session) => {
                    let mut state = self.shared.conn.lock();
                    state.key = Some(session.key.clone());
                    state.comet_id = Some(session.comet.id.clone());
                    return Ok(session);
                }
                Err(e) => {
                    debug!(comet = %comet.id, error = %e, "comet refused or unreachable");
                    match &e {
                        ClientError::Kicked(_) => return Err(e),
                        ClientError::Server { code, .. } if token_refused(*code) => {
                            // The same token would be refused everywhere.
                            self.token_refused = true;
                            return Err(e);
                        }
                        _ => last_err = e,
                    }
                }
            }
        }
        Err(last_err)
    }

    async fn open(&mut self, comet: &CometAddr) -> Result<Session, ClientError> {
        let auth = AuthRequest {
            id: self.next_id(),
            token: self.login_reply.token.clone(),
            resume: self.inbox.position(),
            rooms: self.shared.conn.lock().rooms.clone(),
            device: self.config.device.clone(),
            login_heartbeat_secs: self.login_reply.heartbeat_secs,
            max_frame: self.config.max_frame,
        };
        let open = session::open(&self.config.connector, comet, auth);
        tokio::time::timeout(self.config.request_timeout, open)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Runs connections until the client is closed or kicked.
    pub(crate) async fn run(mut self, mut session: Session) {
        loop {
            let end = self.serve(&mut session).await;
            {
                let mut state = self.shared.conn.lock();
                state.key = None;
                state.comet_id = None;
            }
            let (reason, after) = match end {
                SessionEnd::Shutdown => {
                    let _ = tokio::time::timeout(
                        CLOSE_GRACE,
                        SinkExt::<Frame>::close(&mut session.framed),
                    )
                    .await;
                    return self.finish(Ended::Closed);
                }
                SessionEnd::Kicked(reason) => {
                    self.emit(Event::Kicked {
                        reason: reason.clone(),
                    })
                    .await;
                    return self.finish(Ended::Kicked(reason));
                }
                SessionEnd::Lost { reason, after } => (reason, after),
            };
            drop(session.framed);
            debug!(comet = %session.comet.id, %reason, "connection lost");
            self.emit(Event::Disconnected { reason }).await;
            self.keep_pending_for_retry();
            session = match self.reconnect(&session.comet.id, after).await {
                Ok(s) => s,
                Err(ended) => return self.finish(ended),
            };
            self.emit(Event::Connected {
                comet_id: session.comet.id.clone(),
                key: session.key.clone(),
            })
            .await;
        }
    }

    /// Backoff, refresh the comet ranking or log in again when needed,
    /// connect; until connected or told to stop.
    ///
    /// A reconnect costs no password round trip: the ranking is refreshed
    /// with the token (`GET /nodes`) after a drain or when every comet
    /// failed, and only a refused or expiring token logs in again. So a
    /// comet draining thousands of clients sends them to the others without
    /// a burst of password hashing in logic.
    async fn reconnect(
        &mut self,
        failed: &str,
        mut after: Option<Duration>,
    ) -> Result<Session, Ended> {
        let mut refresh = after.is_some(); // a draining comet: ask for a fresh ranking
        loop {
            let delay = after.take().unwrap_or_else(|| self.backoff.next_delay());
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(Ended::Closed),
                _ = tokio::time::sleep(delay) => {}
            }
            if self.cmds.is_closed() {
                return Err(Ended::Closed);
            }
            let cancel = self.cancel.clone();
            if self.token_refused || self.token_near_expiry() {
                let login = (self.logic.login)();
                let reply = tokio::select! {
                    _ = cancel.cancelled() => return Err(Ended::Closed),
                    reply = login => reply,
                };
                match reply {
                    Ok(reply) => self.use_login(reply),
                    Err(e) => warn!(error = %e, "login failed while reconnecting"),
                }
            } else if refresh {
                let nodes = (self.logic.nodes)(self.login_reply.token.clone());
                let ranked = tokio::select! {
                    _ = cancel.cancelled() => return Err(Ended::Closed),
                    ranked = nodes => ranked,
                };
                match ranked {
                    Ok(comets) if !comets.is_empty() => self.login_reply.comets = comets,
                    Ok(_) => debug!("no comet is serving; keeping the last ranking"),
                    Err(ClientError::Unauthorized) => self.token_refused = true,
                    Err(e) => debug!(error = %e, "cannot refresh the comet ranking"),
                }
            }
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return Err(Ended::Closed),
                attempt = self.connect_any(Some(failed)) => attempt,
            };
            match attempt {
                Ok(session) => {
                    self.backoff.reset();
                    return Ok(session);
                }
                Err(ClientError::Kicked(reason)) => {
                    self.emit(Event::Kicked {
                        reason: reason.clone(),
                    })
                    .await;
                    return Err(Ended::Kicked(reason));
                }
                Err(e) => {
                    debug!(error = %e, "reconnect attempt failed");
                    // Every comet failed: the ranking may be stale.
                    refresh = true;
                }
            }
        }
    }

    fn token_near_expiry(&self) -> bool {
        Instant::now() >= self.token_refresh_at()
    }

    /// When the token is near enough its expiry to be replaced.
    fn token_refresh_at(&self) -> Instant {
        let life = Duration::from_secs(self.login_reply.expires_in).min(MAX_TOKEN_LIFE);
        self.token_expires_at
            .checked_sub(life / TOKEN_REFRESH_DIVISOR)
            .unwrap_or_else(Instant::now)
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, session: &mut Session) -> SessionEnd {
        let hb = session.heartbeat.max(Duration::from_secs(1));
        let idle_limit = hb.saturating_mul(3);
        let mut ticker = tokio::time::interval_at(Instant::now() + hb, hb);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle = tokio::time::sleep(idle_limit);
        tokio::pin!(idle);
        // The comet closes a connection whose token expires: a new one is
        // fetched (a login) before, and handed over with `Refresh`.
        let refresh = tokio::time::sleep_until(self.token_refresh_at());
        tokio::pin!(refresh);
        let mut relogin: Option<Login> = None;

        // Syncs sent on a dead connection will not be answered, and what we
        // resume from covers any gap that was open.
        self.syncs.clear();
        self.reorder_at = None;
        self.inbox.set_syncing(false);
        let rooms: Vec<String> = self.shared.conn.lock().rooms.clone();
        for room in rooms {
            // Rooms are joined again with Auth: read what we missed in each,
            // or, in a room new to us, where its history stands.
            let sequencer = self.rooms.entry(room.clone()).or_default();
            sequencer.set_syncing(true);
            let (after, limit) = match sequencer.knows_start() {
                true => (sequencer.position(), SYNC_LIMIT),
                false => (Position::NONE, 0),
            };
            if let Err(end) = self.request_sync(session, &room, after, limit).await {
                return end;
            }
        }
        let retry = std::mem::take(&mut self.retry);
        for (_, cmd) in retry {
            if let Err(end) = self.write_request(session, cmd).await {
                return end;
            }
        }
        for frame in std::mem::take(&mut session.early) {
            if let Err(end) = self.on_frame(session, frame).await {
                return end;
            }
        }
        if let Err(end) = self.flush(session).await {
            return end;
        }

        loop {
            let reorder_at = self.reorder_at;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return SessionEnd::Shutdown,
                frame = futures::StreamExt::next(&mut session.framed) => {
                    let frame = match frame {
                        Some(Ok(frame)) => frame,
                        Some(Err(e)) => return lost(format!("bad frame from server: {e}")),
                        None => return lost("connection closed by server".into()),
                    };
                    idle.as_mut().reset(Instant::now() + idle_limit);
                    if let Err(end) = self.on_frame(session, frame).await {
                        return end;
                    }
                }
                cmd = self.cmds.recv() => {
                    let Some(cmd) = cmd else { return SessionEnd::Shutdown };
                    if let Err(end) = self.write_batch(session, cmd).await {
                        return end;
                    }
                }
                _ = ticker.tick() => {
                    self.pending.retain(|_, c| !c.reply.is_closed());
                    let hb = Frame::new(self.next_id(), Body::Heartbeat(Heartbeat {}));
                    if let Err(end) = self.write(session, hb).await {
                        return end;
                    }
                    if let Err(end) = self.flush(session).await {
                        return end;
                    }
                }
                _ = sleep_until(reorder_at) => {
                    self.reorder_at = None;
                    if let Err(end) = self.sync_open_gaps(session).await {
                        return end;
                    }
                }
                _ = &mut idle => return lost(format!("no traffic for {}s", idle_limit.as_secs())),
                _ = &mut refresh, if relogin.is_none() => relogin = Some((self.logic.login)()),
                reply = finish(&mut relogin), if relogin.is_some() => {
                    relogin = None;
                    match reply {
                        Ok(reply) => {
                            self.use_login(reply);
                            refresh.as_mut().reset(self.token_refresh_at());
                            let token = self.login_reply.token.clone();
                            let frame = Frame::new(self.next_id(), Body::Refresh(Refresh { token }));
                            if let Err(end) = self.write(session, frame).await {
                                return end;
                            }
                            if let Err(end) = self.flush(session).await {
                                return end;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot renew the token; trying again");
                            refresh.as_mut().reset(Instant::now() + RELOGIN_RETRY);
                        }
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is queued (up to a batch), then flushes once.
    async fn write_batch(
        &mut self,
        session: &mut Session,
        first: Command,
    ) -> Result<(), SessionEnd> {
        self.write_request(session, first).await?;
        for _ in 1..WRITE_BATCH {
            match self.cmds.try_recv() {
                Ok(cmd) => self.write_request(session, cmd).await?,
                Err(_) => break,
            }
        }
        self.flush(session).await
    }

    async fn write_request(
        &mut self,
        session: &mut Session,
        cmd: Command,
    ) -> Result<(), SessionEnd> {
        if cmd.reply.is_closed() {
            return Ok(()); // the caller gave up
        }
        let id = self.next_id();
        let frame = Frame::new(id, cmd.body.clone());
        self.pending.insert(id, cmd);
        self.write(session, frame).await
    }

    async fn write(&mut self, session: &mut Session, frame: Frame) -> Result<(), SessionEnd> {
        match tokio::time::timeout(self.config.request_timeout, session.framed.feed(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(lost(format!("write failed: {e}"))),
            Err(_) => Err(lost("write timed out".into())),
        }
    }

    async fn flush(&mut self, session: &mut Session) -> Result<(), SessionEnd> {
        match tokio::time::timeout(
            self.config.request_timeout,
            SinkExt::<Frame>::flush(&mut session.framed),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(lost(format!("write failed: {e}"))),
            Err(_) => Err(lost("write timed out".into())),
        }
    }

    async fn emit(&self, event: Event) {
        // A dropped receiver means nobody listens; that is the application's call.
        let _ = self.events.send(event).await;
    }

    /// Requests in flight on a dead connection are re-sent on the next one.
    fn keep_pending_for_retry(&mut self) {
        let mut kept: Vec<(u64, Command)> = self
            .pending
            .drain()
            .filter(|(_, c)| !c.reply.is_closed())
            .collect();
        kept.sort_by_key(|(id, _)| *id);
        self.retry.extend(kept);
    }

    fn finish(mut self, ended: Ended) {
        // Set first, so a request refused by the closed channel reports why.
        self.shared.conn.lock().ended = Some(ended.clone());
        let err = || match &ended {
            Ended::Kicked(reason) => ClientError::Kicked(reason.clone()),
            Ended::Closed => ClientError::Closed,
        };
        for (_, cmd) in self.pending.drain().chain(self.retry.drain(..)) {
            let _ = cmd.reply.send(Err(err()));
        }
        self.cmds.close();
        while let Ok(cmd) = self.cmds.try_recv() {
            let _ = cmd.reply.send(Err(err()));
        }
    }
}

fn lost(reason: String) -> SessionEnd {
    SessionEnd::Lost {
        reason,
        after: None,
    }
}

/// The login in `login`; never finishes without one.
async fn finish(login: &mut Option<Login>) -> Result<LoginReply, ClientError> {
    match login {
        Some(login) => login.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether an `Auth` refused with `code` would be refused by every comet:
/// the token is bad, or revoked. The client logs in again.
fn token_refused(code: i32) -> bool {
    use courier_proto::client::ErrorCode;
    [ErrorCode::Unauthenticated, ErrorCode::TokenRevoked]
        .iter()
        .any(|c| *c as i32 == code)
}
