//! The interactive side of the chat: an inline line editor in raw mode.
//!
//! One task owns the terminal. Its select loop polls crossterm's async
//! [`EventStream`] for keys alongside the chat's output lines and prompt
//! changes, so everything written to the terminal comes from one place and a
//! message can never land in the middle of a redraw. There is no editor
//! thread: a burst of input (a paste, a fast typist, `tmux send-keys`) is
//! drained event by event as soon as it arrives. Typed lines go to the chat
//! loop, which runs them in order exactly as it runs piped stdin.
//!
//! Raw mode lives in a guard held by the task, so the terminal is restored
//! when the task ends: normally, on error, on panic, or when the runtime
//! shuts down and drops it.

mod editor;
mod screen;

use std::collections::VecDeque;
use std::io::{self, Write};

use anyhow::{bail, Context};
use crossterm::event::{self, Event, EventStream, KeyCode, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::editor::{Action, LineEditor, LINE_LIMIT};
use self::screen::{RawMode, Screen};

/// Typed lines queued towards the chat loop at most.
const LINES_CAPACITY: usize = 64;

/// The chat loop's handles on the terminal task.
pub(crate) struct Console {
    /// Lines typed; closed when the user quits (Ctrl-C / Ctrl-D on an empty
    /// line) or the terminal goes away.
    pub(crate) lines: mpsc::Receiver<String>,
    /// The prompt to show.
    pub(crate) prompts: watch::Sender<String>,
    /// Ends after the output channel closes and its lines are printed; the
    /// terminal is restored by then.
    pub(crate) task: JoinHandle<()>,
}

/// Enters raw mode and starts the terminal task: it prints every line sent
/// on `output` above the prompt, in order, until `output` closes.
pub(crate) fn start(prompt: String, output: mpsc::Receiver<String>) -> anyhow::Result<Console> {
    let raw = RawMode::enable()
        .context("opening the terminal")?
        .with_bracketed_paste();
    let width = crossterm::terminal::size().map_or(80, |(w, _)| w);
    let (line_tx, lines) = mpsc::channel(LINES_CAPACITY);
    let (prompts, prompt_rx) = watch::channel(prompt);
    let terminal = Terminal {
        screen: Screen::new(io::stdout(), width),
        editor: LineEditor::new(),
        prompt: prompt_rx,
        output,
        lines: Some(line_tx),
        pending: VecDeque::new(),
    };
    let task = tokio::spawn(async move {
        let _raw = raw;
        if let Err(e) = terminal.run().await {
            tracing::debug!(error = %e, "terminal");
        }
    });
    Ok(Console {
        lines,
        prompts,
        task,
    })
}

/// The state of the terminal task.
struct Terminal {
    screen: Screen<io::Stdout>,
    editor: LineEditor,
    prompt: watch::Receiver<String>,
    output: mpsc::Receiver<String>,
    /// `None` once the user quit.
    lines: Option<mpsc::Sender<String>>,
    /// Lines submitted but not yet taken by the chat loop. Keys keep being
    /// read and output keeps being printed while the chat loop is busy, so a
    /// long paste can never wedge the two loops waiting on each other.
    pending: VecDeque<String>,
}

impl Terminal {
    async fn run(mut self) -> io::Result<()> {
        let mut keys = EventStream::new();
        let mut prompt_open = true;
        self.redraw()?;
        loop {
            tokio::select! {
                line = self.output.recv() => match line {
                    Some(line) => {
                        let prompt = self.prompt.borrow().clone();
                        self.screen.print_above(&line, &prompt, &self.editor)?;
                    }
                    None => break,
                },
                changed = self.prompt.changed(), if prompt_open => match changed {
                    Ok(()) => self.redraw()?,
                    Err(_) => prompt_open = false,
                },
                permit = reserve(self.lines.clone()), if !self.pending.is_empty() => match permit {
                    Some(permit) => {
                        if let Some(line) = self.pending.pop_front() {
                            permit.send(line);
                        }
                    }
                    None => self.quit()?,
                },
                event = keys.next(), if self.lines.is_some() => match event {
                    Some(Ok(event)) => self.handle(event)?,
                    Some(Err(_)) | None => self.quit()?,
                },
            }
        }
        self.screen.stop_editing()
    }

    fn redraw(&mut self) -> io::Result<()> {
        let prompt = self.prompt.borrow().clone();
        self.screen.draw(&prompt, &self.editor)
    }

    fn handle(&mut self, event: Event) -> io::Result<()> {
        match event {
            Event::Key(key) => match self.editor.key(key) {
                Action::None => Ok(()),
                Action::Redraw => self.redraw(),
                Action::ClearScreen => {
                    let prompt = self.prompt.borrow().clone();
                    self.screen.clear(&prompt, &self.editor)
                }
                Action::Submit(line) => {
                    self.submit(line)?;
                    self.redraw()
                }
                Action::Quit => self.quit(),
            },
            Event::Paste(text) => {
                for line in self.editor.paste(&text) {
                    self.submit(line)?;
                }
                self.redraw()
            }
            Event::Resize(width, _) => {
                self.screen.resize(width);
                self.redraw()
            }
            _ => Ok(()),
        }
    }

    /// Keeps the submitted row on screen and queues the line for the chat
    /// loop; the caller draws the fresh prompt row.
    fn submit(&mut self, line: String) -> io::Result<()> {
        let prompt = self.prompt.borrow().clone();
        self.screen.submitted(&prompt, &line)?;
        self.pending.push_back(line);
        Ok(())
    }

    /// Stops reading keys; closing the line channel ends the chat loop.
    fn quit(&mut self) -> io::Result<()> {
        self.lines = None;
        self.pending.clear();
        self.screen.stop_editing()
    }
}

/// Room for one line towards the chat loop; `None` once it stopped listening.
/// Owned, so waiting for room borrows nothing the select loop needs.
async fn reserve(lines: Option<mpsc::Sender<String>>) -> Option<mpsc::OwnedPermit<String>> {
    lines?.reserve_owned().await.ok()
}

/// Reads a password in raw mode, echoing `*` for each character.
/// Blocking: run it off the async runtime.
pub(crate) fn read_password(prompt: &str) -> anyhow::Result<String> {
    let _raw = RawMode::enable().context("opening the terminal")?;
    let mut out = io::stdout();
    write!(out, "{prompt}")?;
    out.flush()?;
    let mut password = String::new();
    let result = loop {
        let key = match event::read()? {
            Event::Key(key) if key.kind != KeyEventKind::Release => key,
            Event::Paste(text) => {
                for c in text.chars().filter(|c| !c.is_control()) {
                    push_masked(&mut password, c, &mut out)?;
                }
                continue;
            }
            _ => continue,
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => break Ok(password),
            KeyCode::Char('c') if ctrl => break Err("cancelled"),
            KeyCode::Char('d') if ctrl && password.is_empty() => break Err("cancelled"),
            KeyCode::Char('u') if ctrl => {
                let stars = password.chars().count();
                password.clear();
                write!(out, "{}", "\u{8} \u{8}".repeat(stars))?;
            }
            KeyCode::Char(c) if !ctrl => push_masked(&mut password, c, &mut out)?,
            KeyCode::Backspace if password.pop().is_some() => write!(out, "\u{8} \u{8}")?,
            _ => {}
        }
        out.flush()?;
    };
    write!(out, "\r\n")?;
    out.flush()?;
    match result {
        Ok(password) => Ok(password),
        Err(why) => bail!("password prompt {why}"),
    }
}

fn push_masked(password: &mut String, c: char, out: &mut impl Write) -> io::Result<()> {
    if c.is_control() || password.len() + c.len_utf8() > LINE_LIMIT {
        return Ok(());
    }
    password.push(c);
    write!(out, "*")
}
