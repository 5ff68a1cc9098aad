//! A line editor for a dumb serial terminal.
//!
//! Bytes go in one at a time; the editor keeps the line, says what to echo, and reports a
//! finished line on Enter. It understands backspace (BS and DEL), Ctrl-U (erase line) and
//! Ctrl-C (abandon line); it swallows ANSI escape sequences (arrow keys) instead of letting
//! them corrupt the line; it ignores other control bytes and non-ASCII input; and it never
//! grows past [`MAX_LINE`] bytes, ringing the bell instead. No input can make it allocate,
//! panic or loop.

/// Longest line kept.
pub const MAX_LINE: usize = 256;

/// What a byte did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing to show.
    None,
    /// Echo these bytes to the terminal.
    Echo(&'static [u8]),
    /// Echo this one byte.
    EchoByte(u8),
    /// The line is complete (the editor is reset); echo a newline.
    Line,
    /// The line was abandoned (Ctrl-C); echo `^C` and a newline.
    Cancel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// Saw ESC.
    Start,
    /// Inside `ESC [ ...` until a final byte in 0x40..=0x7e.
    Csi,
}

/// The editor's state: the current line and escape-sequence progress.
#[derive(Clone, Debug)]
pub struct LineEditor {
    buf: [u8; MAX_LINE],
    len: usize,
    escape: Escape,
    /// The previous byte was CR (so a following LF is part of the same Enter).
    after_cr: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    /// An empty editor.
    pub const fn new() -> Self {
        LineEditor {
            buf: [0; MAX_LINE],
            len: 0,
            escape: Escape::None,
            after_cr: false,
        }
    }

    /// The line typed so far (always ASCII).
    pub fn line(&self) -> &str {
        // Only printable ASCII bytes are ever stored.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Forget the current line.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Feed one byte. After [`Event::Line`], read the line with [`LineEditor::line`] and
    /// call [`LineEditor::clear`] before feeding more.
    pub fn feed(&mut self, byte: u8) -> Event {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Start => {
                self.escape = if byte == b'[' {
                    Escape::Csi
                } else {
                    Escape::None
                };
                return Event::None;
            }
            Escape::Csi => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                }
                return Event::None;
            }
            Escape::None => {}
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                Event::Line
            }
            b'\n' if after_cr => Event::None,
            b'\n' => Event::Line,
            0x08 | 0x7f => {
                if self.len > 0 {
                    self.len -= 1;
                    Event::Echo(b"\x08 \x08")
                } else {
                    Event::None
                }
            }
            0x03 => {
                self.len = 0;
                Event::Cancel
            }
            0x15 => {
                let n = self.len;
                self.len = 0;
                if n > 0 {
                    Event::Echo(b"\r\x1b[K")
                } else {
                    Event::None
                }
            }
            0x1b => {
                self.escape = Escape::Start;
                Event::None
            }
            b'\t' | 0x20..=0x7e => {
                if self.len == MAX_LINE {
                    return Event::Echo(b"\x07");
                }
                let b = if byte == b'\t' { b' ' } else { byte };
                self.buf[self.len] = b;
                self.len += 1;
                Event::EchoByte(b)
            }
            _ => Event::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(bytes: &[u8]) -> (Vec<String>, LineEditor) {
        let mut e = LineEditor::new();
        let mut lines = Vec::new();
        for &b in bytes {
            if e.feed(b) == Event::Line {
                lines.push(e.line().to_string());
                e.clear();
            }
        }
        (lines, e)
    }

    #[test]
    fn backspace_and_delete_erase() {
        let (lines, _) = typed(b"catt\x08 /proc/buddyinfx\x7fo\r");
        assert_eq!(lines, ["cat /proc/buddyinfo"]);
    }

    #[test]
    fn crlf_is_one_enter_and_lf_alone_works() {
        let (lines, _) = typed(b"help\r\nmeminfo\n\ncompact\r");
        assert_eq!(lines, ["help", "meminfo", "", "compact"]);
    }

    #[test]
    fn arrow_keys_are_swallowed() {
        let (lines, _) = typed(b"fr\x1b[Dag\x1b[A\x1bOx\r");
        // ESC O x: 'O' ends the two-byte escape, 'x' is typed.
        assert_eq!(lines, ["fragx"]);
    }

    #[test]
    fn ctrl_c_and_ctrl_u_abandon_the_line() {
        let (lines, e) = typed(b"poweroff\x03stress\x15cat x");
        assert!(lines.is_empty());
        assert_eq!(e.line(), "cat x");
    }

    #[test]
    fn long_lines_are_capped() {
        let mut e = LineEditor::new();
        for _ in 0..MAX_LINE {
            assert!(matches!(e.feed(b'a'), Event::EchoByte(b'a')));
        }
        assert_eq!(e.feed(b'a'), Event::Echo(b"\x07"));
        assert_eq!(e.line().len(), MAX_LINE);
        assert_eq!(e.feed(0x7f), Event::Echo(b"\x08 \x08"));
        assert_eq!(e.line().len(), MAX_LINE - 1);
    }

    #[test]
    fn binary_noise_is_ignored() {
        let (lines, e) = typed(&[0x00, 0x01, 0xff, 0xc3, 0xa9, b'o', b'k']);
        assert!(lines.is_empty());
        assert_eq!(e.line(), "ok");
    }
}
