//! Property tests: no input can make the editor or the parser misbehave.

use console::{Command, Event, LineEditor, MAX_LINE, parse, split_script};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes: the editor never panics, keeps lines within MAX_LINE and ASCII,
    /// and every finished line parses to a command or a printable error.
    #[test]
    fn any_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut e = LineEditor::new();
        for b in bytes {
            let ev = e.feed(b);
            prop_assert!(e.line().len() <= MAX_LINE);
            prop_assert!(e.line().bytes().all(|c| (0x20..0x7f).contains(&c)));
            if ev == Event::Line {
                match parse(e.line()) {
                    Ok(_) => {}
                    Err(err) => prop_assert!(!err.to_string().is_empty()),
                }
                e.clear();
            }
        }
    }

    /// Arbitrary text (any Unicode): the parser never panics and a successful parse only
    /// borrows text that was in the line.
    #[test]
    fn any_text_parses_or_explains(line in ".{0,300}") {
        match parse(&line) {
            Ok(Command::Echo { value, path }) => {
                prop_assert!(line.contains(value) && line.contains(path));
                prop_assert!(!path.is_empty() && !value.is_empty());
            }
            Ok(Command::Alloc { order, .. }) => prop_assert!(order <= 10),
            Ok(_) => {}
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    /// Scripts: every piece is non-empty, trimmed, and free of separators.
    #[test]
    fn scripts_split_cleanly(script in "[a-z0-9 ;\n/>_|]{0,200}") {
        for cmd in split_script(&script) {
            prop_assert!(!cmd.is_empty());
            prop_assert_eq!(cmd, cmd.trim());
            prop_assert!(!cmd.contains(';') && !cmd.contains('\n'));
            let _ = parse(cmd);
        }
    }

    /// Typing a line and pressing Enter yields exactly that line (printable ASCII).
    #[test]
    fn typed_lines_round_trip(line in "[ -~]{0,200}") {
        let mut e = LineEditor::new();
        let mut done = None;
        for b in line.bytes().chain(std::iter::once(b'\r')) {
            if e.feed(b) == Event::Line {
                done = Some(e.line().to_string());
            }
        }
        prop_assert_eq!(done.as_deref(), Some(line.as_str()));
    }
}
