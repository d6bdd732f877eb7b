//! The interactive side of the chat: a rustyline editor on its own thread.
//!
//! The editor blocks, so it lives on a plain thread (not the runtime's
//! blocking pool, which would keep the runtime from shutting down while the
//! editor waits for a key). It hands each line to the chat loop and waits for
//! the next prompt before reading again; no prompt means stop. Messages are
//! printed above the prompt through rustyline's external printer.

use std::borrow::Cow;
use std::sync::mpsc as std_mpsc;

use anyhow::Context;
use rustyline::completion::Completer;
use rustyline::config::Configurer;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{ColorMode, DefaultEditor, Editor, ExternalPrinter, Helper};
use tokio::sync::mpsc;

/// The handles the chat loop uses to talk to the editor thread.
pub(crate) struct Terminal {
    /// Lines typed; closed on Ctrl-D / Ctrl-C.
    pub(crate) lines: mpsc::Receiver<String>,
    /// The prompt for the next line; dropping it stops the editor.
    pub(crate) prompts: std_mpsc::Sender<String>,
    /// Prints above the prompt.
    pub(crate) printer: Box<dyn ExternalPrinter + Send>,
}

/// Starts the editor thread with `prompt` as the first prompt.
pub(crate) fn start(prompt: String) -> anyhow::Result<Terminal> {
    let (line_tx, lines) = mpsc::channel(16);
    let (prompts, prompt_rx) = std_mpsc::channel::<String>();
    let (ready_tx, ready_rx) = std_mpsc::channel();
    std::thread::Builder::new()
        .name("chat-editor".into())
        .spawn(move || {
            let mut editor = match DefaultEditor::new() {
                Ok(e) => e,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            match editor.create_external_printer() {
                Ok(p) => {
                    let boxed: Box<dyn ExternalPrinter + Send> = Box::new(p);
                    if ready_tx.send(Ok(boxed)).is_err() {
                        return;
                    }
                }
                Err(e) => return drop(ready_tx.send(Err(e))),
            }
            let mut prompt = prompt;
            // Ends on Ctrl-D / Ctrl-C / a terminal error, or when the chat loop stops.
            while let Ok(line) = editor.readline(&prompt) {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if line_tx.blocking_send(line).is_err() {
                    break;
                }
                match prompt_rx.recv() {
                    Ok(next) => prompt = next,
                    Err(_) => break,
                }
            }
        })
        .context("starting the editor thread")?;
    let printer = ready_rx
        .recv()
        .context("editor thread stopped")?
        .context("opening the terminal")?;
    Ok(Terminal {
        lines,
        prompts,
        printer,
    })
}

/// Reads a password with the typed characters masked.
pub(crate) fn read_password(prompt: &str) -> anyhow::Result<String> {
    let mut editor = Editor::<Masked, rustyline::history::DefaultHistory>::new()?;
    editor.set_helper(Some(Masked));
    editor.set_color_mode(ColorMode::Forced);
    editor.set_auto_add_history(false);
    Ok(editor.readline(prompt)?)
}

/// Shows every typed character as `*`.
struct Masked;

impl Highlighter for Masked {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Owned("*".repeat(line.chars().count()))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        !matches!(kind, CmdKind::MoveCursor)
    }
}

impl Completer for Masked {
    type Candidate = String;
}

impl Hinter for Masked {
    type Hint = String;
}

impl Validator for Masked {}

impl Helper for Masked {}
