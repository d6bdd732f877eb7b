//! Worker processes: more members than one process may hold open files.
//!
//! The parent runs its own binary again as `courier bench fanout --worker`
//! and talks to it in JSON lines, one message a line:
//!
//! ```text
//! parent -> worker (stdin)             worker -> parent (stdout)
//! {"cmd":"plan", …MembersPlan}
//!                                      {"event":"connected", …}
//! {"cmd":"go","timeout_ms":60000}
//! {"cmd":"expect","pushes":1000}
//!                                      {"event":"done", …Outcome}
//! {"cmd":"stop"}   (or end of stdin)
//! ```
//!
//! A worker reports `done` once each of its members has every expected push
//! (or was closed early), when `go`'s timeout runs out, or at `stop`; then
//! it exits, closing its connections. Stdin closing means the parent is
//! gone, so the worker stops too. Lines are length-bounded both ways.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

use crate::members::{Connected, Members, MembersPlan, Outcome};
use crate::proc_stat;

/// Longest JSON line either side accepts (a histogram fits many times over).
const MAX_LINE: usize = 4 << 20;
/// How often a worker checks its members while waiting.
const POLL: Duration = Duration::from_millis(10);
/// How long a worker waits for `go` after reporting `connected`.
const GO_WAIT: Duration = Duration::from_secs(600);
/// How long an exiting worker may take before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(15);

/// Parent -> worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Command {
    /// Connect these members; give up on handshakes after `connect_timeout_ms`.
    Plan {
        #[serde(flatten)]
        plan: MembersPlan,
        connect_timeout_ms: u64,
    },
    /// Pushes are starting: report `done` within `timeout_ms`.
    Go { timeout_ms: u64 },
    /// Pushes each member should expect (those accepted by logic).
    Expect { pushes: u64 },
    /// Report `done` now.
    Stop,
}

/// Worker -> parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Report {
    Connected {
        #[serde(flatten)]
        connected: Connected,
        /// The worker's CPU seconds so far.
        cpu_secs: f64,
    },
    Done {
        #[serde(flatten)]
        outcome: Outcome,
        cpu_secs: f64,
    },
}

/// `courier bench fanout --worker`: holds the members a parent plans.
pub(crate) async fn run() -> anyhow::Result<()> {
    proc_stat::raise_open_files_limit().context("raising the open-files limit")?;
    let mut commands = FramedRead::new(
        tokio::io::stdin(),
        LinesCodec::new_with_max_length(MAX_LINE),
    );
    let mut out = FramedWrite::new(
        tokio::io::stdout(),
        LinesCodec::new_with_max_length(MAX_LINE),
    );
    let (plan, connect_timeout_ms) = match next_command(&mut commands).await? {
        Some(Command::Plan {
            plan,
            connect_timeout_ms,
        }) => (plan, connect_timeout_ms),
        other => bail!("expected a plan, got {other:?}"),
    };
    let members = Members::connect(plan);
    let connected = members
        .connected(Instant::now() + Duration::from_millis(connect_timeout_ms))
        .await;
    send(
        &mut out,
        &Report::Connected {
            connected,
            cpu_secs: own_cpu(),
        },
    )
    .await?;

    let mut deadline = Instant::now() + GO_WAIT;
    let mut going = false;
    // Bounded by `deadline`, which `go` moves to the push timeout.
    loop {
        tokio::select! {
            command = next_command(&mut commands) => match command {
                Ok(Some(Command::Go { timeout_ms })) => {
                    going = true;
                    deadline = Instant::now() + Duration::from_millis(timeout_ms);
                }
                Ok(Some(Command::Expect { pushes })) => members.expect(pushes),
                Ok(Some(Command::Plan { .. })) => {}
                Ok(Some(Command::Stop)) | Ok(None) | Err(_) => break,
            },
            _ = tokio::time::sleep(POLL) => {
                if (going && members.settled()) || Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    let outcome = members.stop().await;
    send(
        &mut out,
        &Report::Done {
            outcome,
            cpu_secs: own_cpu(),
        },
    )
    .await?;
    Ok(())
}

async fn next_command(
    commands: &mut FramedRead<tokio::io::Stdin, LinesCodec>,
) -> anyhow::Result<Option<Command>> {
    match commands.next().await {
        None => Ok(None),
        Some(line) => Ok(Some(serde_json::from_str(&line?)?)),
    }
}

async fn send(
    out: &mut FramedWrite<tokio::io::Stdout, LinesCodec>,
    report: &Report,
) -> anyhow::Result<()> {
    out.send(serde_json::to_string(report)?).await?;
    Ok(())
}

fn own_cpu() -> f64 {
    proc_stat::cpu_times(None).map_or(0.0, |t| t.own)
}

/// The parent's handle on one worker process.
pub(crate) struct Worker {
    child: Child,
    stdin: FramedWrite<ChildStdin, LinesCodec>,
}

impl Worker {
    /// Starts a worker; its reports arrive on `reports` tagged with `index`.
    pub(crate) fn spawn(
        index: usize,
        reports: mpsc::Sender<(usize, anyhow::Result<Report>)>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut child = tokio::process::Command::new(exe)
            .args(["bench", "fanout", "--worker"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("worker process without pipes");
        };
        tokio::spawn(forward_reports(index, stdout, reports));
        Ok(Self {
            child,
            stdin: FramedWrite::new(stdin, LinesCodec::new_with_max_length(MAX_LINE)),
        })
    }

    /// Sends one command.
    pub(crate) async fn send(&mut self, command: &Command) -> anyhow::Result<()> {
        self.stdin.send(serde_json::to_string(command)?).await?;
        Ok(())
    }

    /// Closes stdin and waits for the worker to exit, killing it after a
    /// grace period.
    pub(crate) async fn finish(mut self) {
        let _ = self.stdin.get_mut().shutdown().await;
        drop(self.stdin);
        if tokio::time::timeout(EXIT_GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Forwards a worker's report lines until its stdout closes.
async fn forward_reports(
    index: usize,
    stdout: ChildStdout,
    reports: mpsc::Sender<(usize, anyhow::Result<Report>)>,
) {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(line) = lines.next().await {
        let report = line
            .map_err(anyhow::Error::from)
            .and_then(|l| serde_json::from_str::<Report>(&l).map_err(Into::into));
        if reports.send((index, report)).await.is_err() {
            return;
        }
    }
}
