//! Drawing the prompt line, and the raw-mode guard that makes it possible.
//!
//! The prompt and the line being typed always occupy exactly one terminal
//! row: when the text is wider than the terminal, a window of it that holds
//! the cursor is shown (horizontal scrolling). That keeps every redraw a
//! plain `\r` + clear-line + print, and lets a message be printed "above the
//! prompt" by clearing that row, printing the message and a line break, and
//! drawing the row again below it. Raw mode turns off the terminal's own
//! `\n` → `\r\n` translation, so every line break written here is `\r\n`.

use std::io::{self, Write};

use crossterm::cursor::MoveToColumn;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::style::Print;
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{execute, queue};
use unicode_width::UnicodeWidthChar;

use super::editor::LineEditor;

/// Raw mode for as long as this lives; dropping it (on any path, unwinding
/// included) restores the terminal.
pub(crate) struct RawMode {
    bracketed_paste: bool,
}

impl RawMode {
    /// Enters raw mode.
    pub(crate) fn enable() -> io::Result<Self> {
        terminal::enable_raw_mode()?;
        Ok(Self {
            bracketed_paste: false,
        })
    }

    /// Also asks the terminal to mark pastes, so a paste arrives as one event.
    pub(crate) fn with_bracketed_paste(mut self) -> Self {
        self.bracketed_paste = execute!(io::stdout(), EnableBracketedPaste).is_ok();
        self
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.bracketed_paste {
            let _ = execute!(io::stdout(), DisableBracketedPaste);
        }
        let _ = terminal::disable_raw_mode();
    }
}

/// The terminal as the chat draws on it.
pub(crate) struct Screen<W: Write> {
    out: W,
    /// Columns of the terminal.
    width: u16,
    /// Whether the prompt row is drawn (false once the user quit).
    editing: bool,
}

impl<W: Write> Screen<W> {
    /// A screen `width` columns wide writing to `out`.
    pub(crate) fn new(out: W, width: u16) -> Self {
        Self {
            out,
            width,
            editing: true,
        }
    }

    /// Takes a new terminal width (on resize).
    pub(crate) fn resize(&mut self, width: u16) {
        self.width = width;
    }

    /// Stops drawing the prompt row, and clears it.
    pub(crate) fn stop_editing(&mut self) -> io::Result<()> {
        self.editing = false;
        queue!(self.out, Print('\r'), Clear(ClearType::CurrentLine))?;
        self.out.flush()
    }

    /// Redraws the prompt row.
    pub(crate) fn draw(&mut self, prompt: &str, editor: &LineEditor) -> io::Result<()> {
        self.queue_prompt(prompt, editor)?;
        self.out.flush()
    }

    /// Prints `line` above the prompt row, then draws the row again.
    pub(crate) fn print_above(
        &mut self,
        line: &str,
        prompt: &str,
        editor: &LineEditor,
    ) -> io::Result<()> {
        queue!(self.out, Print('\r'), Clear(ClearType::CurrentLine))?;
        for part in line.split('\n') {
            queue!(self.out, Print(part), Print("\r\n"))?;
        }
        self.queue_prompt(prompt, editor)?;
        self.out.flush()
    }

    /// Leaves `line` on screen after the prompt, as it was submitted, and
    /// moves to the row below; the next draw puts the prompt there.
    pub(crate) fn submitted(&mut self, prompt: &str, line: &str) -> io::Result<()> {
        self.queue_row(prompt, line, line.len())?;
        queue!(self.out, Print("\r\n"))
    }

    /// Clears the whole screen and draws the prompt row at the top.
    pub(crate) fn clear(&mut self, prompt: &str, editor: &LineEditor) -> io::Result<()> {
        queue!(
            self.out,
            Clear(ClearType::All),
            crossterm::cursor::MoveTo(0, 0)
        )?;
        self.draw(prompt, editor)
    }

    fn queue_prompt(&mut self, prompt: &str, editor: &LineEditor) -> io::Result<()> {
        self.queue_row(prompt, editor.buffer(), editor.cursor())
    }

    fn queue_row(&mut self, prompt: &str, buffer: &str, cursor: usize) -> io::Result<()> {
        queue!(self.out, Print('\r'), Clear(ClearType::CurrentLine))?;
        if !self.editing {
            return Ok(());
        }
        let (text, column) = visible(prompt, buffer, cursor, self.width);
        queue!(self.out, Print(prompt), Print(text), MoveToColumn(column))
    }
}

/// The part of `buffer` that fits after `prompt` on a row `width` columns
/// wide with the cursor (a byte offset) in view, and the cursor's column.
/// One column stays free for the cursor at the end of the line.
pub(crate) fn visible<'b>(
    prompt: &str,
    buffer: &'b str,
    cursor: usize,
    width: u16,
) -> (&'b str, u16) {
    let prompt_width = text_width(prompt);
    let room = usize::from(width).saturating_sub(prompt_width + 1).max(1);
    // Scroll just enough that the text before the cursor fits.
    let mut start = 0;
    let mut before = text_width(&buffer[..cursor]);
    for c in buffer[..cursor].chars() {
        if before <= room {
            break;
        }
        before -= char_width(c);
        start += c.len_utf8();
    }
    // Then show as much after it as fits.
    let mut end = start;
    let mut used = 0;
    for c in buffer[start..].chars() {
        if used + char_width(c) > room {
            break;
        }
        used += char_width(c);
        end += c.len_utf8();
    }
    let column = (prompt_width + before).min(usize::from(u16::MAX));
    (
        &buffer[start..end],
        u16::try_from(column).unwrap_or(u16::MAX),
    )
}

/// Columns `text` takes on a terminal.
pub(crate) fn text_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// Columns one char takes, by Unicode's East Asian Width: 2 for wide
/// chars and emoji, 0 for combining marks and control chars, 1 otherwise.
fn char_width(c: char) -> usize {
    UnicodeWidthChar::width(c).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_line_is_shown_whole() {
        assert_eq!(visible("#lobby> ", "hello", 5, 80), ("hello", 13));
        assert_eq!(visible("#lobby> ", "hello", 1, 80), ("hello", 9));
        assert_eq!(visible("> ", "", 0, 80), ("", 2));
    }

    #[test]
    fn a_long_line_scrolls_to_keep_the_cursor_in_view() {
        // 10 columns: "> " + 7 of text + 1 free for the cursor.
        let text = "abcdefghijkl";
        assert_eq!(visible("> ", text, text.len(), 10), ("fghijkl", 9));
        assert_eq!(visible("> ", text, 0, 10), ("abcdefg", 2));
        assert_eq!(visible("> ", text, 8, 10), ("bcdefgh", 9));
    }

    #[test]
    fn wide_chars_take_two_columns() {
        assert_eq!(text_width("你好 hé\u{301}"), 7);
        assert_eq!(visible("> ", "你好", 6, 80), ("你好", 6));
        // 4 columns of text fit: the window never splits a wide char.
        assert_eq!(visible("> ", "你好世界", 12, 7), ("世界", 6));
    }

    #[test]
    fn messages_print_above_and_the_line_is_redrawn() {
        let mut editor = LineEditor::new();
        editor.paste("half a li");
        let mut screen = Screen::new(Vec::new(), 80);
        screen
            .print_above("[12:00] bob: hi", "#lobby> ", &editor)
            .unwrap();
        let out = String::from_utf8(screen.out).unwrap();
        assert!(out.starts_with("\r\x1b[2K[12:00] bob: hi\r\n\r\x1b[2K#lobby> half a li"));
        assert!(!out.contains("\r\n#"), "nothing but the message ends a row");
    }

    #[test]
    fn a_submitted_line_stays_above_a_fresh_prompt() {
        let mut editor = LineEditor::new();
        let mut screen = Screen::new(Vec::new(), 80);
        for line in editor.paste("one\ntwo\nthr") {
            screen.submitted("> ", &line).unwrap();
        }
        screen.draw("> ", &editor).unwrap();
        let out = String::from_utf8(screen.out).unwrap();
        let rows: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(rows.len(), 3, "{out:?}");
        assert!(rows[0].ends_with("> one\x1b[6G"), "{out:?}");
        assert!(rows[1].ends_with("> two\x1b[6G"), "{out:?}");
        assert!(rows[2].ends_with("> thr\x1b[6G"), "{out:?}");
    }

    #[test]
    fn after_quitting_the_prompt_is_not_drawn() {
        let editor = LineEditor::new();
        let mut screen = Screen::new(Vec::new(), 80);
        screen.stop_editing().unwrap();
        screen.print_above("* bye", "#lobby> ", &editor).unwrap();
        let out = String::from_utf8(screen.out).unwrap();
        assert!(out.contains("* bye\r\n"));
        assert!(!out.contains("#lobby>"));
    }
}
