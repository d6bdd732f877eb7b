//! The [`Client`] handle: cheap to clone, it only holds a channel to the
//! driver task and a snapshot of the connection state the driver keeps up to
//! date. Every request is a frame round trip through the driver, bounded by
//! `request_timeout` (which includes waiting for a reconnect).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_proto::client::{frame::Body, Join, Leave, RoomOnline, Send, SendReply, Target};
use courier_proto::Position;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::driver::{Command, Driver, LogicCalls, LoginFn, NodesFn};
use crate::events::EVENTS_CAPACITY;
use crate::history::{sync_before, History};
use crate::http::LogicApi;
use crate::state::{ClientState, ConnState, Ended};
use crate::{ClientConfig, ClientError, Event, Events, LoginReply};

/// Requests queued towards the driver at most.
const COMMANDS_CAPACITY: usize = 1024;
/// How many times a history page refused as over the comet's rate is
/// asked again, the first wait, and the longest (the waits double, with
/// the reconnect delays' jitter).
const HISTORY_RETRIES: u32 = 5;
const HISTORY_RETRY_WAIT: Duration = Duration::from_millis(100);
const HISTORY_RETRY_MAX_WAIT: Duration = Duration::from_millis(1600);

/// A connected client. Clones share one connection; the connection closes
/// when [`Client::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    shared: Arc<ClientState>,
    cmds: mpsc::Sender<Command>,
    cancel: CancellationToken,
    stopped: CancellationToken,
    api: LogicApi,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("uid", &self.shared.uid)
            .field("key", &self.key())
            .field("comet_id", &self.comet_id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Logs in, connects to the first reachable comet of the ranked list,
    /// authenticates (joining `config.rooms`) and returns once the comet
    /// accepted us. The first event is [`Event::Connected`].
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let api = LogicApi::new(
            &config.server,
            config.request_timeout,
            config.tls_ca.as_deref(),
        )?;
        let login: LoginFn = {
            let api = api.clone();
            let (user, pass) = (config.username.clone(), config.password.clone());
            Arc::new(move || {
                let (api, user, pass) = (api.clone(), user.clone(), pass.clone());
                Box::pin(async move { api.login(&user, &pass).await })
            })
        };
        let reply = login().await?;
        Self::start(config, api, login, reply).await
    }

    /// Connects with the application's own credentials (a session cookie,
    /// an OAuth token...) instead of a Courier password: logic's connect
    /// hook says whose they are and which rooms to join (added to
    /// `config.rooms`); `config.username` and `config.password` are not
    /// used. The credentials are shown again whenever the client must log in
    /// again (its token's life running out).
    pub async fn connect_with_credentials(
        mut config: ClientConfig,
        credentials: impl Into<String>,
    ) -> Result<(Client, Events), ClientError> {
        let api = LogicApi::new(
            &config.server,
            config.request_timeout,
            config.tls_ca.as_deref(),
        )?;
        let credentials: Arc<str> = Arc::from(credentials.into());
        let first = api.connect_hook(&credentials).await?;
        config.rooms.extend(first.rooms);
        let login: LoginFn = {
            let api = api.clone();
            Arc::new(move || {
                let (api, credentials) = (api.clone(), credentials.clone());
                Box::pin(async move { Ok(api.connect_hook(&credentials).await?.login) })
            })
        };
        Self::start(config, api, login, first.login).await
    }

    /// Connects with a login reply obtained elsewhere (a backend that mints
    /// its own tokens, or a test). The same reply is reused whenever the
    /// driver would log in again, so its token must outlive the client.
    pub async fn connect_with(
        config: ClientConfig,
        login_reply: LoginReply,
    ) -> Result<(Client, Events), ClientError> {
        let api = LogicApi::new(
            &config.server,
            config.request_timeout,
            config.tls_ca.as_deref(),
        )?;
        let fixed = login_reply.clone();
        let login: LoginFn = Arc::new(move || {
            let reply = fixed.clone();
            Box::pin(async move { Ok(reply) })
        });
        Self::start(config, api, login, login_reply).await
    }

    async fn start(
        config: ClientConfig,
        api: LogicApi,
        login: LoginFn,
        reply: LoginReply,
    ) -> Result<(Client, Events), ClientError> {
        let mut rooms: Vec<String> = Vec::with_capacity(config.rooms.len());
        for room in &config.rooms {
            if !rooms.contains(room) {
                rooms.push(room.clone());
            }
        }
        let shared = Arc::new(ClientState {
            uid: reply.uid.clone(),
            conn: Mutex::new(ConnState {
                rooms,
                ..ConnState::default()
            }),
        });
        let config = Arc::new(config);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS_CAPACITY);
        let (event_tx, event_rx) = mpsc::channel(EVENTS_CAPACITY);
        let cancel = CancellationToken::new();
        let stopped = CancellationToken::new();

        let nodes: NodesFn = {
            let api = api.clone();
            Arc::new(move |token| {
                let api = api.clone();
                Box::pin(async move { api.nodes(&token).await })
            })
        };
        let mut driver = Driver::new(
            config.clone(),
            LogicCalls { login, nodes },
            reply,
            shared.clone(),
            cmd_rx,
            event_tx.clone(),
            cancel.clone(),
        );
        let session = driver.connect_any(None).await?;
        // The channel is new and empty: this cannot be full.
        let _ = event_tx.try_send(Event::Connected {
            comet_id: session.comet.id.clone(),
            key: session.key.clone(),
        });
        let guard = stopped.clone().drop_guard();
        tokio::spawn(async move {
            let _stopped_on_exit = guard;
            driver.run(session).await;
        });

        let client = Client {
            config,
            shared,
            cmds: cmd_tx,
            cancel,
            stopped,
            api,
        };
        Ok((client, event_rx))
    }

    /// The user id we are logged in as.
    pub fn uid(&self) -> String {
        self.shared.uid.clone()
    }

    /// The current connection's key; `None` while disconnected.
    pub fn key(&self) -> Option<String> {
        self.shared.conn.lock().key.clone()
    }

    /// The comet we are connected to; `None` while disconnected.
    pub fn comet_id(&self) -> Option<String> {
        self.shared.conn.lock().comet_id.clone()
    }

    /// The rooms we are in (config rooms, plus joined, minus left).
    pub fn rooms(&self) -> Vec<String> {
        self.shared.conn.lock().rooms.clone()
    }

    /// Sends `data` with `op` to every device of user `uid`.
    pub async fn send_to_user(
        &self,
        uid: &str,
        op: u32,
        data: Bytes,
    ) -> Result<SendReply, ClientError> {
        self.send(Target::user(uid), op, data).await
    }

    /// Sends `data` with `op` to every member of `room`.
    pub async fn send_to_room(
        &self,
        room: &str,
        op: u32,
        data: Bytes,
    ) -> Result<SendReply, ClientError> {
        self.send(Target::room(room), op, data).await
    }

    async fn send(&self, to: Target, op: u32, data: Bytes) -> Result<SendReply, ClientError> {
        let body = Body::Send(Send {
            to: Some(to),
            op,
            data,
            client_msg_id: new_client_msg_id(),
        });
        match self.request(body).await? {
            Body::SendReply(reply) => Ok(reply),
            other => Err(unexpected("SendReply", &other)),
        }
    }

    /// Joins `room`; it is re-joined on every reconnect until left.
    pub async fn join(&self, room: &str) -> Result<(), ClientError> {
        let join = Join {
            room: room.into(),
            ..Join::default()
        };
        match self.request(Body::Join(join)).await? {
            Body::JoinReply(_) => Ok(()),
            other => Err(unexpected("JoinReply", &other)),
        }
    }

    /// How many connections are in `room` (one this client joined),
    /// cluster-wide as of the comets' last reports.
    pub async fn room_online(&self, room: &str) -> Result<u64, ClientError> {
        let ask = RoomOnline { room: room.into() };
        match self.request(Body::RoomOnline(ask)).await? {
            Body::RoomOnlineReply(reply) => Ok(reply.connections),
            other => Err(unexpected("RoomOnlineReply", &other)),
        }
    }

    /// Leaves `room`.
    pub async fn leave(&self, room: &str) -> Result<(), ClientError> {
        match self
            .request(Body::Leave(Leave { room: room.into() }))
            .await?
        {
            Body::LeaveReply(_) => Ok(()),
            other => Err(unexpected("LeaveReply", &other)),
        }
    }

    /// The last inbox message shown: keep it to resume there later
    /// ([`ClientConfig::resume_from`]).
    pub fn position(&self) -> Position {
        self.shared.conn.lock().inbox
    }

    /// The last message of `room` shown, if any was.
    pub fn room_position(&self, room: &str) -> Option<Position> {
        self.shared.conn.lock().room_positions.get(room).copied()
    }

    /// The newest `limit` stored messages of the inbox (`room` `None`) or
    /// of a room this client is in, oldest first, and whether older ones
    /// are held ([`History::older`] pages on). They are not shown again as
    /// events.
    pub async fn history(&self, room: Option<&str>, limit: u32) -> Result<History, ClientError> {
        self.history_before(room, Position::NONE, limit).await
    }

    /// The newest `limit` (at least 1; the comet caps it at 500) stored
    /// messages of the inbox (`room` `None`) or of a room this client is
    /// in below `before`: its seq, in its epoch (0: the current one);
    /// seq 0 reads from the newest, like [`Client::history`]. Oldest first;
    /// not shown again as events. Page back with [`History::older`].
    pub async fn history_before(
        &self,
        room: Option<&str>,
        before: Position,
        limit: u32,
    ) -> Result<History, ClientError> {
        let sync = sync_before(room.unwrap_or_default(), before, limit);
        // A page the comet refuses as over its `sync_rate` is asked again
        // after a short wait, a few times, before the refusal is returned.
        let mut waits = crate::backoff::Backoff::new(HISTORY_RETRY_WAIT, HISTORY_RETRY_MAX_WAIT);
        for _ in 0..HISTORY_RETRIES {
            match self.request(Body::Sync(sync.clone())).await {
                Err(e) if e.is_rate_limited() => {
                    tokio::time::sleep(waits.next_delay()).await;
                }
                reply => return history(reply?),
            }
        }
        history(self.request(Body::Sync(sync)).await?)
    }

    /// Which of `uids` (at most 100) are online, over HTTP with this
    /// client's token.
    pub async fn presence(&self, uids: &[&str]) -> Result<Vec<String>, ClientError> {
        let token = self.shared.conn.lock().token.clone();
        self.api.presence(&token, uids).await
    }

    /// Closes the connection and waits for the driver to stop. Pending and
    /// later requests fail with [`ClientError::Closed`]; the events end.
    pub async fn close(&self) {
        self.cancel.cancel();
        self.stopped.cancelled().await;
    }

    /// Logs out: revokes this client's token (no connection may use it
    /// again, and every one holding it is closed, on any comet), then
    /// closes the client. The other devices of the user stay.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let token = self.shared.conn.lock().token.clone();
        let revoked = self.api.logout(&token).await;
        self.close().await;
        revoked
    }

    /// The config this client was built from.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// One request/reply round trip through the driver.
    async fn request(&self, body: Body) -> Result<Body, ClientError> {
        if let Some(err) = self.ended_error() {
            return Err(err);
        }
        let (tx, rx) = oneshot::channel();
        let round_trip = async {
            self.cmds
                .send(Command { body, reply: tx })
                .await
                .map_err(|_| self.ended_error().unwrap_or(ClientError::Closed))?;
            rx.await
                .map_err(|_| self.ended_error().unwrap_or(ClientError::Closed))?
        };
        tokio::time::timeout(self.config.request_timeout, round_trip)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    fn ended_error(&self) -> Option<ClientError> {
        match &self.shared.conn.lock().ended {
            Some(Ended::Kicked(reason)) => Some(ClientError::Kicked(reason.clone())),
            Some(Ended::Closed) => Some(ClientError::Closed),
            None => None,
        }
    }
}

/// A history page from a `Sync`'s reply.
fn history(reply: Body) -> Result<History, ClientError> {
    match reply {
        Body::SyncReply(page) => Ok(History::from_page(page)),
        other => Err(unexpected("SyncReply", &other)),
    }
}

fn unexpected(wanted: &str, got: &Body) -> ClientError {
    ClientError::Protocol(format!("expected {wanted}, got {got:?}"))
}

/// A random id the server uses to drop a retried send.
fn new_client_msg_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
