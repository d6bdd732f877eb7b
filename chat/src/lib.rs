//! `courier chat`: a terminal chat on top of the client SDK (`courier-client`),
//! kept out of the SDK so an application that embeds the SDK links no
//! terminal UI.
//!
//! One loop owns the session: it prints events as they come and runs typed
//! lines one at a time, in order (so `:join r` then `hi` says hi in `r`, and
//! on end of input every send has been answered before we quit). Output goes
//! through one printer task: on a terminal that is the line editor's task,
//! which prints above the prompt (see `terminal`); otherwise plain lines on
//! stdout, flushed per line for scripts.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod command;
pub mod render;
mod terminal;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::IsTerminal;

use anyhow::{bail, Context};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use self::command::{parse_line, Line, HELP};
use self::render::{event_line, message_line, online_line, rooms_line, status};
use courier_client::{register_with, Client, ClientConfig, ClientError, Event, Position};

/// Arguments of `courier chat`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Logic's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3111")]
    pub server: String,
    /// The user to log in as.
    #[arg(long)]
    pub user: String,
    /// The password (asked for when missing and stdin is a terminal).
    #[arg(long, env = "COURIER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Create the account first (an existing one is fine).
    #[arg(long)]
    pub register: bool,
    /// The room to join and talk in at start.
    #[arg(long, default_value = "lobby")]
    pub room: String,
    /// A PEM file of the CA that signed the cluster's certificates: speak
    /// TLS to logic and the comets and verify them against it. An `https`
    /// server without it speaks TLS verified against the public roots.
    #[arg(long, env = "COURIER_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Connect to the comets over WebSocket (their `ws` URL, `wss://`
    /// verified like `--ca` says) instead of TCP.
    #[arg(long)]
    pub ws: bool,
}

/// Lines queued towards the printer at most.
const OUTPUT_CAPACITY: usize = 1024;

/// Runs the chat until `:q`, end of input, or a kick (an error).
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    // The editor draws with escape codes: only worth it when a person watches.
    let editing = interactive && std::io::stdout().is_terminal();
    let password = match args.password.clone() {
        Some(p) => p,
        None if interactive => {
            tokio::task::spawn_blocking(|| terminal::read_password("password: "))
                .await
                .context("password prompt")??
        }
        None => bail!("--password (or COURIER_PASSWORD) is required when stdin is not a terminal"),
    };
    let mut config =
        ClientConfig::new(&args.server, &args.user, password).with_rooms([args.room.clone()]);
    if args.ca.is_some() || args.server.starts_with("https://") {
        config = config.with_tls(args.ca.as_deref()).context("--ca")?;
    }
    if args.ws {
        // After `with_tls`, so `wss://` trusts the same CA.
        config = config.with_websocket().context("--ws")?;
    }
    if args.register {
        match register_with(&config).await {
            Ok(_) | Err(ClientError::Conflict) => {}
            Err(e) => return Err(e).context("register"),
        }
    }
    let (client, events) = Client::connect(config).await.context("connect")?;

    let (out, output) = mpsc::channel(OUTPUT_CAPACITY);
    let (lines, prompts, printer) = if editing {
        let console = terminal::start(prompt_for(&args.room), output)?;
        (console.lines, Some(console.prompts), console.task)
    } else {
        (stdin_lines(), None, spawn_printer(output))
    };
    let mut chat = Chat::new(client.clone(), args.user, args.room, out);
    let result = chat.run(events, lines, prompts).await;
    client.close().await;
    drop(chat); // the last sender of the output channel: the printer drains and stops
    let _ = printer.await;
    result
}

fn prompt_for(room: &str) -> String {
    if room.is_empty() {
        "> ".to_owned()
    } else {
        format!("#{room}> ")
    }
}

/// The state of one chat session.
struct Chat {
    client: Client,
    username: String,
    /// The room plain text goes to ("" after leaving every room).
    current: String,
    first_connect: bool,
    out: mpsc::Sender<String>,
    /// Where the next `:history` (`:inbox`) of a stream (a room, `None` the
    /// inbox) starts: below the oldest message it showed. A stream with no
    /// entry starts from its newest; one entry per joined room at most
    /// (dropped on `:join` and `:leave`) plus the inbox.
    paging: HashMap<Option<String>, Position>,
}

impl Chat {
    fn new(client: Client, username: String, current: String, out: mpsc::Sender<String>) -> Self {
        Self {
            client,
            username,
            current,
            first_connect: true,
            out,
            paging: HashMap::new(),
        }
    }

    fn prompt(&self) -> String {
        prompt_for(&self.current)
    }

    /// Queues `line` for the terminal, control characters escaped (see
    /// [`render::terminal_safe`]).
    async fn print(&self, line: String) {
        let line = match render::terminal_safe(&line) {
            Cow::Borrowed(_) => line,
            Cow::Owned(safe) => safe,
        };
        let _ = self.out.send(line).await;
    }

    async fn run(
        &mut self,
        mut events: courier_client::Events,
        mut lines: mpsc::Receiver<String>,
        prompts: Option<watch::Sender<String>>,
    ) -> anyhow::Result<()> {
        let interactive = prompts.is_some();
        let mut ended: Option<String> = None;
        let mut events_open = true;
        loop {
            tokio::select! {
                event = events.recv(), if events_open => match event {
                    Some(event) => {
                        if let Event::Kicked { reason } = &event {
                            ended = Some(format!("kicked: {reason}"));
                        }
                        self.show(&event).await;
                    }
                    None => {
                        events_open = false;
                        if !interactive {
                            break;
                        }
                        self.print(status("session ended; press Enter to exit")).await;
                    }
                },
                line = lines.recv() => {
                    let Some(line) = line else { break };
                    let line = parse_line(&line);
                    if !events_open || line == Line::Quit {
                        break;
                    }
                    self.execute(line).await;
                    if let Some(p) = &prompts {
                        p.send_if_modified(|shown| {
                            let prompt = self.prompt();
                            let changed = *shown != prompt;
                            *shown = prompt;
                            changed
                        });
                    }
                }
            }
        }
        // Whatever already arrived is shown before we go.
        while let Ok(event) = events.try_recv() {
            if let Event::Kicked { reason } = &event {
                ended = Some(format!("kicked: {reason}"));
            }
            self.show(&event).await;
        }
        match ended {
            Some(reason) => bail!(render::terminal_safe(&reason).into_owned()),
            None => Ok(()),
        }
    }

    async fn show(&mut self, event: &Event) {
        let line = match event {
            Event::Message(msg) => message_line(msg, &self.client.uid()),
            other => {
                let first = matches!(other, Event::Connected { .. })
                    && std::mem::take(&mut self.first_connect);
                match event_line(other, &self.username, first) {
                    Some(line) => line,
                    None => return,
                }
            }
        };
        self.print(line).await;
    }

    async fn execute(&mut self, line: Line) {
        let client = &self.client;
        let report = match line {
            Line::Empty | Line::Quit => return,
            Line::Say(_) if self.current.is_empty() => {
                Some(status("error: not in a room; :join one"))
            }
            Line::Say(text) => client
                .send_to_room(&self.current, courier_proto::op::CHAT, Bytes::from(text))
                .await
                .err()
                .map(|e| status(format!("error: #{}: {e}", self.current))),
            Line::Private { to, text } => client
                .send_to_user(&to, courier_proto::op::CHAT, Bytes::from(text))
                .await
                .err()
                .map(|e| status(format!("error: @{to}: {e}"))),
            Line::Join(room) => match client.join(&room).await {
                Ok(()) => {
                    // Back in (or into) a room: :history starts from its newest.
                    self.paging.remove(&Some(room.clone()));
                    self.current = room.clone();
                    Some(status(format!("joined #{room}")))
                }
                Err(e) => Some(status(format!("error: join #{room}: {e}"))),
            },
            Line::Leave(room) => {
                let room = room.unwrap_or_else(|| self.current.clone());
                if room.is_empty() {
                    Some(status("error: not in a room"))
                } else {
                    match client.leave(&room).await {
                        Ok(()) => {
                            self.paging.remove(&Some(room.clone()));
                            if room == self.current {
                                self.current =
                                    client.rooms().into_iter().next().unwrap_or_default();
                            }
                            Some(status(format!("left #{room}")))
                        }
                        Err(e) => Some(status(format!("error: leave #{room}: {e}"))),
                    }
                }
            }
            Line::Rooms => Some(rooms_line(&client.rooms(), &self.current)),
            Line::History { count, inbox } => {
                let room = (!inbox && !self.current.is_empty()).then(|| self.current.clone());
                self.page_back(room, count).await;
                None
            }
            Line::Who if self.current.is_empty() => Some(status("error: not in a room")),
            Line::Who => Some(match client.room_online(&self.current).await {
                Ok(n) => status(format!("#{}: {n} online", self.current)),
                Err(e) => status(format!("error: who: {e}")),
            }),
            Line::Online(users) => {
                let named: Vec<&str> = users.iter().map(String::as_str).collect();
                Some(match client.presence(&named).await {
                    Ok(online) => online_line(&users, &online),
                    Err(e) => status(format!("error: online: {e}")),
                })
            }
            Line::Help => {
                for entry in HELP {
                    self.print(status(entry)).await;
                }
                None
            }
            Line::Unknown(cmd) => Some(status(format!(
                "unknown command :{cmd}; :help lists commands"
            ))),
            Line::Usage(usage) => Some(status(format!("usage: {usage}"))),
        };
        if let Some(line) = report {
            self.print(line).await;
        }
    }

    /// `:history` / `:inbox`: the newest `count` messages of a stream the
    /// first time, then each time the `count` before the oldest shown, until
    /// nothing older is held; the next one starts from the newest again.
    async fn page_back(&mut self, room: Option<String>, count: u32) {
        let below = self.paging.get(&room).copied();
        let read = match below {
            Some(before) => {
                self.client
                    .history_before(room.as_deref(), before, count)
                    .await
            }
            None => self.client.history(room.as_deref(), count).await,
        };
        let page = match read {
            Ok(page) => page,
            Err(e) => return self.print(status(format!("error: history: {e}"))).await,
        };
        let name = match &room {
            Some(r) => format!("#{r}"),
            None => "your inbox".to_owned(),
        };
        if page.reset {
            // The position paged from belongs to a history the server lost;
            // this page is the newest of the new one.
            self.print(status(format!(
                "the server lost the history of {name}; it starts again"
            )))
            .await;
        }
        let n = page.messages.len();
        let title = match below {
            Some(_) if !page.reset => format!("{n} earlier in {name}:"),
            _ => format!("last {n} of {name}:"),
        };
        self.print(status(title)).await;
        let me = self.client.uid();
        for m in &page.messages {
            self.print(message_line(m, &me)).await;
        }
        match page.older() {
            Some(older) => {
                self.paging.insert(room, older);
            }
            None => {
                self.paging.remove(&room);
                let end = match page.gap {
                    true => format!("older messages of {name} are no longer stored"),
                    false => "(start of history)".to_owned(),
                };
                self.print(status(end)).await;
            }
        }
    }
}

/// Lines of stdin; the channel closes at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Prints every line queued on `lines` to stdout, in order, until the
/// channel closes.
fn spawn_printer(mut lines: mpsc::Receiver<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(line) = lines.recv().await {
            let mut bytes = line.into_bytes();
            bytes.push(b'\n');
            if out.write_all(&bytes).await.is_err() || out.flush().await.is_err() {
                break; // stdout closed: nobody is reading
            }
        }
    })
}

#[cfg(test)]
mod tests;
