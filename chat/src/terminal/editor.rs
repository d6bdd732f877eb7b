//! The line editor as a pure state machine: key events in, a buffer, a
//! cursor and submitted lines out.
//!
//! Nothing here touches the terminal, so every editing rule is unit-tested
//! by feeding keys. The cursor is a byte offset that always sits on a char
//! boundary; every move and deletion steps by whole chars, so UTF-8 text is
//! never split. History lives in memory only and is bounded.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Lines kept for Up/Down at most.
const HISTORY_LIMIT: usize = 100;

/// Bytes a line may hold; typing or pasting past it is dropped.
pub(crate) const LINE_LIMIT: usize = 16 * 1024;

/// What the caller should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing visible changed.
    None,
    /// The buffer or the cursor changed: redraw the line.
    Redraw,
    /// Enter: run this line; the buffer is now empty.
    Submit(String),
    /// Ctrl-C / Ctrl-D on an empty line: end the session.
    Quit,
    /// Ctrl-L: clear the screen, then redraw.
    ClearScreen,
}

/// An editable line with a cursor and a small history.
#[derive(Debug, Default)]
pub(crate) struct LineEditor {
    buffer: String,
    /// Byte offset into `buffer`, always on a char boundary.
    cursor: usize,
    /// Submitted lines, oldest first.
    history: VecDeque<String>,
    /// The history entry shown, while browsing with Up/Down.
    browsing: Option<usize>,
    /// What was typed before browsing started; Down past the newest entry
    /// brings it back.
    draft: String,
}

impl LineEditor {
    /// An empty line with no history.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The text typed so far.
    pub(crate) fn buffer(&self) -> &str {
        &self.buffer
    }

    /// The cursor as a byte offset into [`Self::buffer`].
    pub(crate) fn cursor(&self) -> usize {
        self.cursor
    }

    /// Applies one key.
    pub(crate) fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char(c) if ctrl => self.control(c.to_ascii_lowercase()),
            KeyCode::Char(_) if alt => Action::None,
            KeyCode::Char(c) => self.insert(c),
            KeyCode::Enter => Action::Submit(self.submit()),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left if ctrl => self.move_to(self.word_start()),
            KeyCode::Right if ctrl => self.move_to(self.word_end()),
            KeyCode::Left => self.move_to(self.prev_boundary()),
            KeyCode::Right => self.move_to(self.next_boundary()),
            KeyCode::Home => self.move_to(0),
            KeyCode::End => self.move_to(self.buffer.len()),
            KeyCode::Up => self.history_back(),
            KeyCode::Down => self.history_forward(),
            _ => Action::None,
        }
    }

    /// Inserts pasted text at the cursor. Each line break submits the line
    /// before it, as if Enter had been typed there; the lines are returned in
    /// order and the text after the last break stays in the buffer.
    pub(crate) fn paste(&mut self, text: &str) -> Vec<String> {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut submitted = Vec::new();
        let mut parts = text.split('\n').peekable();
        while let Some(part) = parts.next() {
            for c in part.chars() {
                self.insert(c);
            }
            if parts.peek().is_some() {
                submitted.push(self.submit());
            }
        }
        submitted
    }

    fn control(&mut self, c: char) -> Action {
        match c {
            'a' => self.move_to(0),
            'e' => self.move_to(self.buffer.len()),
            'b' => self.move_to(self.prev_boundary()),
            'f' => self.move_to(self.next_boundary()),
            'h' => self.backspace(),
            'u' => self.remove(0..self.cursor),
            'k' => self.remove(self.cursor..self.buffer.len()),
            'w' => self.remove(self.word_start()..self.cursor),
            'p' => self.history_back(),
            'n' => self.history_forward(),
            'l' => Action::ClearScreen,
            'c' | 'd' if self.buffer.is_empty() => Action::Quit,
            'c' => self.remove(0..self.buffer.len()),
            'd' => self.delete(),
            _ => Action::None,
        }
    }

    fn insert(&mut self, c: char) -> Action {
        if c.is_control() || self.buffer.len() + c.len_utf8() > LINE_LIMIT {
            return Action::None;
        }
        self.buffer.insert(self.cursor, c);
        self.cursor += c.len_utf8();
        Action::Redraw
    }

    fn backspace(&mut self) -> Action {
        self.remove(self.prev_boundary()..self.cursor)
    }

    fn delete(&mut self) -> Action {
        self.remove(self.cursor..self.next_boundary())
    }

    /// Removes a byte range on char boundaries, leaving the cursor at its start.
    fn remove(&mut self, range: std::ops::Range<usize>) -> Action {
        if range.is_empty() {
            return Action::None;
        }
        self.cursor = range.start;
        self.buffer.replace_range(range, "");
        Action::Redraw
    }

    fn move_to(&mut self, cursor: usize) -> Action {
        if cursor == self.cursor {
            return Action::None;
        }
        self.cursor = cursor;
        Action::Redraw
    }

    fn prev_boundary(&self) -> usize {
        self.buffer[..self.cursor]
            .chars()
            .next_back()
            .map_or(self.cursor, |c| self.cursor - c.len_utf8())
    }

    fn next_boundary(&self) -> usize {
        self.buffer[self.cursor..]
            .chars()
            .next()
            .map_or(self.cursor, |c| self.cursor + c.len_utf8())
    }

    /// The start of the word before the cursor (skipping spaces first).
    fn word_start(&self) -> usize {
        let before = &self.buffer[..self.cursor];
        let trimmed = before.trim_end();
        trimmed
            .char_indices()
            .rev()
            .take_while(|(_, c)| !c.is_whitespace())
            .last()
            .map_or(trimmed.len(), |(i, _)| i)
    }

    /// The end of the word after the cursor (skipping spaces first).
    fn word_end(&self) -> usize {
        let after = &self.buffer[self.cursor..];
        let skipped = after.len() - after.trim_start().len();
        let word = after[skipped..]
            .find(char::is_whitespace)
            .unwrap_or(after.len() - skipped);
        self.cursor + skipped + word
    }

    fn submit(&mut self) -> String {
        let line = std::mem::take(&mut self.buffer);
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        if !line.trim().is_empty() && self.history.back() != Some(&line) {
            if self.history.len() == HISTORY_LIMIT {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        line
    }

    fn history_back(&mut self) -> Action {
        let index = match self.browsing {
            Some(0) => return Action::None,
            Some(i) => i - 1,
            None if self.history.is_empty() => return Action::None,
            None => {
                self.draft = self.buffer.clone();
                self.history.len() - 1
            }
        };
        self.show_history(Some(index))
    }

    fn history_forward(&mut self) -> Action {
        match self.browsing {
            None => Action::None,
            Some(i) if i + 1 < self.history.len() => self.show_history(Some(i + 1)),
            Some(_) => self.show_history(None),
        }
    }

    /// Shows a history entry, or the draft for `None`, with the cursor at its end.
    fn show_history(&mut self, index: Option<usize>) -> Action {
        self.browsing = index;
        self.buffer = match index.and_then(|i| self.history.get(i)) {
            Some(entry) => entry.clone(),
            None => std::mem::take(&mut self.draft),
        };
        self.cursor = self.buffer.len();
        Action::Redraw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(text: &str) -> LineEditor {
        let mut editor = LineEditor::new();
        for c in text.chars() {
            editor.key(press(KeyCode::Char(c)));
        }
        editor
    }

    /// The buffer with `|` at the cursor.
    fn shown(editor: &LineEditor) -> String {
        let (before, after) = editor.buffer().split_at(editor.cursor());
        format!("{before}|{after}")
    }

    #[test]
    fn typing_inserts_at_the_cursor() {
        let mut editor = typed("held");
        editor.key(press(KeyCode::Left));
        editor.key(press(KeyCode::Left));
        assert_eq!(editor.key(press(KeyCode::Char('l'))), Action::Redraw);
        assert_eq!(shown(&editor), "hel|ld");
        editor.key(KeyEvent::new(KeyCode::Char('O'), KeyModifiers::SHIFT));
        assert_eq!(shown(&editor), "helO|ld");
    }

    #[test]
    fn enter_submits_clears_and_keeps_history() {
        let mut editor = typed("hi there");
        assert_eq!(
            editor.key(press(KeyCode::Enter)),
            Action::Submit("hi there".into())
        );
        assert_eq!(shown(&editor), "|");
        assert_eq!(editor.key(press(KeyCode::Enter)), Action::Submit("".into()));
        editor.key(press(KeyCode::Up));
        assert_eq!(shown(&editor), "hi there|", "blank lines are not history");
    }

    #[test]
    fn backspace_and_delete_remove_one_char() {
        let mut editor = typed("abcd");
        editor.key(press(KeyCode::Backspace));
        assert_eq!(shown(&editor), "abc|");
        editor.key(press(KeyCode::Home));
        editor.key(press(KeyCode::Delete));
        assert_eq!(shown(&editor), "|bc");
        assert_eq!(editor.key(press(KeyCode::Backspace)), Action::None);
        editor.key(press(KeyCode::End));
        assert_eq!(editor.key(press(KeyCode::Delete)), Action::None);
        assert_eq!(shown(&editor), "bc|");
    }

    #[test]
    fn cursor_moves_stop_at_the_ends() {
        let mut editor = typed("ab");
        assert_eq!(editor.key(press(KeyCode::Right)), Action::None);
        editor.key(ctrl('a'));
        assert_eq!(shown(&editor), "|ab");
        assert_eq!(editor.key(press(KeyCode::Left)), Action::None);
        editor.key(press(KeyCode::Right));
        assert_eq!(shown(&editor), "a|b");
        editor.key(ctrl('e'));
        assert_eq!(shown(&editor), "ab|");
        editor.key(ctrl('b'));
        assert_eq!(shown(&editor), "a|b");
    }

    #[test]
    fn ctrl_u_clears_to_the_start_and_ctrl_k_to_the_end() {
        let mut editor = typed("hello world");
        editor.key(ctrl('u'));
        assert_eq!(shown(&editor), "|");
        let mut editor = typed("hello world");
        for _ in 0..5 {
            editor.key(press(KeyCode::Left));
        }
        editor.key(ctrl('k'));
        assert_eq!(shown(&editor), "hello |");
        editor.key(press(KeyCode::Left));
        editor.key(ctrl('u'));
        assert_eq!(shown(&editor), "| ");
    }

    #[test]
    fn ctrl_w_deletes_the_word_before_the_cursor() {
        let mut editor = typed("say hello  there  ");
        editor.key(ctrl('w'));
        assert_eq!(shown(&editor), "say hello  |");
        editor.key(ctrl('w'));
        assert_eq!(shown(&editor), "say |");
        editor.key(press(KeyCode::Left));
        editor.key(ctrl('w'));
        assert_eq!(shown(&editor), "| ");
        assert_eq!(editor.key(ctrl('w')), Action::None);
    }

    #[test]
    fn ctrl_arrows_jump_words() {
        let mut editor = typed("one two three");
        editor.key(KeyEvent::new(KeyCode::Left, KeyModifiers::CONTROL));
        assert_eq!(shown(&editor), "one two |three");
        editor.key(KeyEvent::new(KeyCode::Left, KeyModifiers::CONTROL));
        assert_eq!(shown(&editor), "one |two three");
        editor.key(KeyEvent::new(KeyCode::Right, KeyModifiers::CONTROL));
        assert_eq!(shown(&editor), "one two| three");
    }

    #[test]
    fn utf8_is_edited_by_whole_chars() {
        let mut editor = typed("héllo 你好");
        assert_eq!(editor.buffer(), "héllo 你好");
        editor.key(press(KeyCode::Backspace));
        assert_eq!(shown(&editor), "héllo 你|");
        editor.key(ctrl('a'));
        editor.key(press(KeyCode::Right));
        editor.key(press(KeyCode::Delete));
        assert_eq!(shown(&editor), "h|llo 你");
        editor.key(press(KeyCode::Char('é')));
        editor.key(press(KeyCode::Left));
        assert_eq!(shown(&editor), "h|éllo 你");
        editor.key(ctrl('e'));
        editor.key(ctrl('w'));
        assert_eq!(shown(&editor), "héllo |");
    }

    #[test]
    fn history_walks_back_and_returns_to_the_draft() {
        let mut editor = LineEditor::new();
        for line in ["first", "second", "second"] {
            editor.paste(line);
            editor.key(press(KeyCode::Enter));
        }
        editor.paste("draft");
        editor.key(press(KeyCode::Up));
        assert_eq!(shown(&editor), "second|", "duplicates are kept once");
        editor.key(press(KeyCode::Up));
        assert_eq!(shown(&editor), "first|");
        assert_eq!(editor.key(press(KeyCode::Up)), Action::None);
        editor.key(press(KeyCode::Down));
        assert_eq!(shown(&editor), "second|");
        editor.key(press(KeyCode::Down));
        assert_eq!(shown(&editor), "draft|");
        assert_eq!(editor.key(press(KeyCode::Down)), Action::None);
        editor.key(ctrl('p'));
        assert_eq!(
            editor.key(press(KeyCode::Enter)),
            Action::Submit("second".into())
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut editor = LineEditor::new();
        for i in 0..HISTORY_LIMIT + 5 {
            editor.paste(&format!("line {i}\n"));
        }
        for _ in 0..HISTORY_LIMIT + 5 {
            editor.key(press(KeyCode::Up));
        }
        assert_eq!(editor.buffer(), "line 5");
    }

    #[test]
    fn ctrl_c_and_ctrl_d_quit_only_on_an_empty_line() {
        let mut editor = typed("ab");
        assert_eq!(editor.key(ctrl('c')), Action::Redraw);
        assert_eq!(shown(&editor), "|", "Ctrl-C drops the line");
        assert_eq!(editor.key(ctrl('c')), Action::Quit);
        let mut editor = typed("ab");
        editor.key(ctrl('a'));
        assert_eq!(editor.key(ctrl('d')), Action::Redraw);
        assert_eq!(shown(&editor), "|b", "Ctrl-D deletes forward");
        editor.key(ctrl('d'));
        assert_eq!(editor.key(ctrl('d')), Action::Quit);
    }

    #[test]
    fn paste_inserts_everything_and_submits_at_line_breaks() {
        let mut editor = typed("<>");
        editor.key(press(KeyCode::Left));
        assert!(editor.paste("pasted text").is_empty());
        assert_eq!(shown(&editor), "<pasted text|>");
        let mut editor = typed("say: ");
        let lines = editor.paste("one\r\ntwo\nthr");
        assert_eq!(lines, ["say: one", "two"]);
        assert_eq!(shown(&editor), "thr|");
    }

    #[test]
    fn control_chars_and_key_releases_are_ignored() {
        let mut editor = typed("a\tb\u{1b}");
        assert_eq!(shown(&editor), "ab|");
        let mut release = press(KeyCode::Char('x'));
        release.kind = KeyEventKind::Release;
        assert_eq!(editor.key(release), Action::None);
        let alt = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::ALT);
        assert_eq!(editor.key(alt), Action::None);
        assert_eq!(shown(&editor), "ab|");
    }

    #[test]
    fn a_line_stops_growing_at_the_limit() {
        let mut editor = LineEditor::new();
        editor.paste(&"x".repeat(LINE_LIMIT - 1));
        assert_eq!(editor.key(press(KeyCode::Char('é'))), Action::None);
        assert_eq!(editor.key(press(KeyCode::Char('y'))), Action::Redraw);
        assert_eq!(editor.buffer().len(), LINE_LIMIT);
    }
}
