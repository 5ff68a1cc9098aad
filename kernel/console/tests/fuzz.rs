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

mod values {
    use console::fs::{self, FsError, Node};
    use console::gfp::{KNOWN_BITS, parse_gfp};
    use console::tunable::{
        FAIL_PAGE_ALLOC, INT_MAX, Kind, TUNABLES, Value, ValueError, parse_int, parse_value,
    };
    use proptest::prelude::*;

    fn kinds() -> impl Strategy<Value = Kind> {
        proptest::sample::select(TUNABLES.iter().map(|t| t.kind).collect::<Vec<_>>())
    }

    /// The `/proc/sys/vm` kinds and the fault-injection attributes' kinds.
    fn all_kinds() -> impl Strategy<Value = Kind> {
        proptest::sample::select(
            TUNABLES
                .iter()
                .chain(FAIL_PAGE_ALLOC)
                .map(|t| t.kind)
                .collect::<Vec<_>>(),
        )
    }

    fn in_range(kind: Kind, v: u64) -> bool {
        match kind {
            Kind::Int { min, max } => (min..=max).contains(&v),
            Kind::ZeroOr { min, max } => v == 0 || (min..=max).contains(&v),
            Kind::List { max, .. } => v <= max,
            Kind::Trigger => v == 1,
            Kind::Bool => v <= 1,
            Kind::MinusOneOr { max } => v <= max,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Any text: a value comes back only if it is inside the tunable's range, and an
        /// error always explains itself.
        #[test]
        fn any_text_is_a_valid_value_or_an_error(kind in all_kinds(), text in ".{0,64}") {
            match parse_value(kind, &text) {
                Ok(Value::Int(v)) => prop_assert!(in_range(kind, v), "{v} for {kind:?}"),
                Ok(Value::Trigger) => prop_assert_eq!(kind, Kind::Trigger),
                Ok(Value::Signed(v)) => {
                    prop_assert!(matches!(kind, Kind::MinusOneOr { .. }), "{kind:?}");
                    prop_assert!(v == -1 || (v >= 0 && in_range(kind, v as u64)), "{v}");
                }
                Ok(Value::List { values, n }) => {
                    let Kind::List { len, .. } = kind else { panic!("list for {kind:?}") };
                    prop_assert!(n >= 1 && n <= len);
                    prop_assert!(values[..n].iter().all(|&v| in_range(kind, v)));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// Every decimal number, with any surrounding whitespace, is accepted exactly when
        /// it is in range, and reads back as itself.
        #[test]
        fn decimal_numbers_round_trip(kind in kinds(), v in 0u64..=u64::MAX, pad in "[ \t\n]{0,3}") {
            let text = format!("{pad}{v}{pad}");
            let r = parse_value(kind, &text);
            if v > INT_MAX {
                prop_assert_eq!(r, Err(ValueError::TooBig(&v.to_string())));
            } else if in_range(kind, v) {
                let expect = match kind {
                    Kind::Trigger => Value::Trigger,
                    Kind::List { .. } => {
                        let mut values = [0; 4];
                        values[0] = v;
                        Value::List { values, n: 1 }
                    }
                    _ => Value::Int(v),
                };
                prop_assert_eq!(r, Ok(expect));
            } else {
                prop_assert_eq!(r, Err(ValueError::OutOfRange { value: v, kind }));
            }
        }

        /// Huge numbers of any length (far past u64) are refused as too big, never wrap.
        #[test]
        fn huge_numbers_never_wrap(digits in "[1-9][0-9]{19,80}") {
            prop_assert_eq!(parse_int(&digits), Err(ValueError::TooBig(digits.as_str())));
        }

        /// Negative numbers are refused.
        #[test]
        fn negatives_are_refused(v in 1u64..=u64::MAX) {
            let text = format!("-{v}");
            prop_assert_eq!(parse_int(&text), Err(ValueError::Negative(text.as_str())));
        }

        /// Non-numeric words are refused as such.
        #[test]
        fn words_are_not_numbers(word in "[g-zG-Z_][a-zA-Z0-9_.]{0,12}") {
            prop_assert_eq!(parse_int(&word), Err(ValueError::NotANumber(word.as_str())));
        }

        /// Any GFP text: a mask comes back only with known bits.
        #[test]
        fn gfp_masks_have_only_known_bits(text in "[A-Za-z_0-9x| ]{0,60}") {
            if let Ok(mask) = parse_gfp(&text) {
                prop_assert_eq!(mask & !KNOWN_BITS, 0);
            }
        }

        /// Any path: lookups and listings never panic; a listed name looks up.
        #[test]
        fn paths_never_panic(path in "(/|[a-z_./0-9]){0,80}", nodes in any::<u64>()) {
            let _ = fs::lookup(&path, nodes);
            let mut names = Vec::new();
            if fs::list(&path, nodes, &mut |n| names.push(n.to_string())).is_ok()
                && fs::lookup(&path, nodes) == Ok(Node::Dir)
            {
                for n in names {
                    let child = format!("{}/{}", path, n.trim_end_matches('/'));
                    prop_assert!(fs::lookup(&child, nodes).is_ok(), "{child}");
                }
            }
            if !path.starts_with('/') {
                prop_assert_eq!(fs::lookup(&path, nodes), Err(FsError::NotAbsolute(path.as_str())));
            }
        }
    }
}
