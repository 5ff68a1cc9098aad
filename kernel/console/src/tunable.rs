//! The `vm.*` tunables as a user writes them: names, paths, accepted ranges, and the
//! parsing of the text written to them.
//!
//! Writing a tunable is the one place where arbitrary user text turns into a number that
//! resizes the allocator's reserves, so the text-to-value step is a pure function here,
//! property-tested on the host, and the kernel only ever sees a value already inside the
//! accepted range. The allocator's setters check the range again (they are the authority;
//! this table only lets the console refuse a bad value with a precise message before
//! anything is touched), and the kernel's `tunables` test suite checks that both agree at
//! every boundary.
//!
//! Numbers are read the way Linux's `proc_dointvec` reads them: leading and trailing
//! whitespace ignored, base chosen by prefix (`0x` hexadecimal, a leading `0` octal,
//! decimal otherwise), values stored in an `int`. Unlike Linux, a negative value is always
//! refused (every tunable here is a count or a ratio), an empty write is an error rather
//! than a silent no-op, and list values may also be separated by commas, so that
//! `lowmem_reserve_ratio=256,256,32,0` works on the kernel command line.

use core::fmt;

/// Largest value any tunable stores (Linux keeps them in an `int`).
pub const INT_MAX: u64 = i32::MAX as u64;

/// Longest list a tunable holds (`lowmem_reserve_ratio` has one entry per zone).
pub const MAX_LIST: usize = 4;

/// What kind of value a tunable takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One integer in `min..=max`.
    Int {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// 0, or one integer in `min..=max` (`percpu_pagelist_high_fraction`).
    ZeroOr {
        /// Smallest accepted non-zero value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Up to `len` integers in `0..=max`; a shorter write changes only the first entries.
    List {
        /// Number of entries.
        len: usize,
        /// Largest accepted entry.
        max: u64,
    },
    /// Write-only: writing `1` runs an action (`compact_memory`).
    Trigger,
    /// A debugfs boolean: `1`/`0`, `Y`/`N`, `yes`/`no`, `on`/`off` (any case); `cat`
    /// prints `Y` or `N` as Linux's `debugfs_create_bool` files do.
    Bool,
    /// `-1` (no limit), or one integer in `0..=max` (fault injection's `times`).
    MinusOneOr {
        /// Largest accepted value.
        max: u64,
    },
}

impl Kind {
    /// What the kind accepts, in words (for error messages and `help`).
    pub fn accepted(self) -> Accepted {
        Accepted(self)
    }
}

/// [`Kind::accepted`]'s text.
#[derive(Clone, Copy, Debug)]
pub struct Accepted(Kind);

impl fmt::Display for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Kind::Int { min, max } => write!(f, "an integer from {min} to {max}"),
            Kind::ZeroOr { min, max } => write!(f, "0, or an integer from {min} to {max}"),
            Kind::List { len, max } => {
                write!(f, "up to {len} integers from 0 to {max}")
            }
            Kind::Trigger => f.write_str("1"),
            Kind::Bool => f.write_str("Y or N (1 or 0)"),
            Kind::MinusOneOr { max } => write!(f, "-1 (no limit), or an integer from 0 to {max}"),
        }
    }
}

/// A tunable: its `/proc/sys/vm` name and what it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunable {
    /// File name under `/proc/sys/vm/` (and command-line key).
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// One line on what it does.
    pub help: &'static str,
}

impl Tunable {
    /// Can `cat` read it? Not a trigger, nor `drop_caches` (mode 0200 in Linux: writing
    /// is an action, there is no value to read back).
    pub fn readable(&self) -> bool {
        !matches!(self.kind, Kind::Trigger) && self.name != "drop_caches"
    }
}

/// Every `/proc/sys/vm` tunable, in the order `ls /proc/sys/vm` lists them (alphabetical,
/// as Linux lists a directory).
pub const TUNABLES: &[Tunable] = &[
    Tunable {
        name: "compact_memory",
        kind: Kind::Trigger,
        help: "write 1 to compact every zone of every node",
    },
    Tunable {
        name: "compact_unevictable_allowed",
        kind: Kind::Int { min: 0, max: 1 },
        help: "1: compaction may migrate unevictable (mlocked) pages",
    },
    Tunable {
        name: "compaction_proactiveness",
        kind: Kind::Int { min: 0, max: 100 },
        help: "how hard kcompactd keeps the fragmentation score down (0 disables)",
    },
    Tunable {
        name: "drop_caches",
        kind: Kind::Int { min: 1, max: 3 },
        help: "write 1 to drop clean page cache, 2 to shrink caches (shrinkers), 3 both",
    },
    Tunable {
        name: "extfrag_threshold",
        kind: Kind::Int { min: 0, max: 1000 },
        help: "fragmentation index above which compaction (not reclaim) is tried",
    },
    Tunable {
        name: "lowmem_reserve_ratio",
        kind: Kind::List {
            len: MAX_LIST,
            max: INT_MAX,
        },
        help: "per zone: reserve 1/ratio of the higher zones' pages (0: none)",
    },
    Tunable {
        name: "min_free_kbytes",
        kind: Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        help: "the min watermark over all zones, in KiB",
    },
    Tunable {
        name: "percpu_pagelist_high_fraction",
        kind: Kind::ZeroOr {
            min: 8,
            max: INT_MAX,
        },
        help: "0: pcp high from the low watermark; N: each zone's CPUs hold at most 1/N",
    },
    Tunable {
        name: "watermark_boost_factor",
        kind: Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        help: "boost after fragmenting fallbacks, in 1/10000 of the high mark (0: off)",
    },
    Tunable {
        name: "watermark_scale_factor",
        kind: Kind::Int { min: 1, max: 3000 },
        help: "distance between watermarks, in 1/10000 of a zone",
    },
];

/// The fault-injection attributes of `/sys/kernel/debug/fail_page_alloc/` (Linux's
/// fail_page_alloc debugfs files, plus our `migratetype-mask`), alphabetical.
pub const FAIL_PAGE_ALLOC: &[Tunable] = &[
    Tunable {
        name: "ignore-gfp-highmem",
        kind: Kind::Bool,
        help: "Y: never fail __GFP_HIGHMEM requests (default Y)",
    },
    Tunable {
        name: "ignore-gfp-wait",
        kind: Kind::Bool,
        help: "Y: never fail requests that may reclaim (__GFP_DIRECT_RECLAIM; default Y)",
    },
    Tunable {
        name: "interval",
        kind: Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        help: "only every N-th eligible request may fail (0 and 1: each; default 1)",
    },
    Tunable {
        name: "migratetype-mask",
        kind: Kind::Int { min: 0, max: 7 },
        help: "ours: requests of these migratetypes may fail (1 Unmovable, 2 Movable, 4 Reclaimable; default 7)",
    },
    Tunable {
        name: "min-order",
        kind: Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        help: "requests below this order never fail (default 1)",
    },
    Tunable {
        name: "probability",
        kind: Kind::Int { min: 0, max: 100 },
        help: "percent of eligible requests that fail; 0 turns injection off (default 0)",
    },
    Tunable {
        name: "space",
        kind: Kind::Int {
            min: 0,
            max: INT_MAX,
        },
        help: "pages asked for before the first failure may happen (default 0)",
    },
    Tunable {
        name: "times",
        kind: Kind::MinusOneOr { max: INT_MAX },
        help: "failures left to inject; -1: no limit (default 1)",
    },
];

/// The tunable called `name`.
pub fn find(name: &str) -> Option<&'static Tunable> {
    TUNABLES.iter().find(|t| t.name == name)
}

/// A parsed value, inside its tunable's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// An integer.
    Int(u64),
    /// The first `n` entries of a list.
    List {
        /// The values given.
        values: [u64; MAX_LIST],
        /// How many were given (1..=len).
        n: usize,
    },
    /// A trigger's `1`.
    Trigger,
    /// A [`Kind::MinusOneOr`] value: -1 or `0..=max`.
    Signed(i64),
}

impl Value {
    /// A list value applied over `current`: the entries given replace the first ones.
    pub fn merged(&self, current: [u64; MAX_LIST]) -> [u64; MAX_LIST] {
        match *self {
            Value::List { values, n } => {
                let mut out = current;
                out[..n].copy_from_slice(&values[..n]);
                out
            }
            _ => current,
        }
    }
}

/// Why a written value was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueError<'a> {
    /// Nothing but whitespace was written.
    Empty,
    /// A word is not a number.
    NotANumber(&'a str),
    /// A number is negative.
    Negative(&'a str),
    /// A number does not fit in an `int`.
    TooBig(&'a str),
    /// A number is outside the tunable's range.
    OutOfRange {
        /// The value.
        value: u64,
        /// What the tunable accepts.
        kind: Kind,
    },
    /// Not a boolean word (`Y`, `N`, `1`, `0`, ...).
    NotABool(&'a str),
    /// A negative number other than the one a [`Kind::MinusOneOr`] accepts.
    OutOfRangeNegative {
        /// The word.
        word: &'a str,
        /// What the tunable accepts.
        kind: Kind,
    },
    /// More numbers than the tunable holds.
    TooMany {
        /// What the tunable accepts.
        kind: Kind,
    },
}

impl fmt::Display for ValueError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ValueError::Empty => f.write_str("empty value"),
            ValueError::NotANumber(w) => write!(f, "'{w}' is not a number"),
            ValueError::Negative(w) => write!(f, "'{w}' is negative"),
            ValueError::TooBig(w) => write!(f, "'{w}' is too large (largest: {INT_MAX})"),
            ValueError::OutOfRange { value, kind } => {
                write!(f, "{value} is out of range; accepted: {}", kind.accepted())
            }
            ValueError::NotABool(w) => write!(f, "'{w}' is not Y or N (1 or 0)"),
            ValueError::OutOfRangeNegative { word, kind } => {
                write!(f, "{word} is out of range; accepted: {}", kind.accepted())
            }
            ValueError::TooMany { kind } => {
                write!(f, "too many values; accepted: {}", kind.accepted())
            }
        }
    }
}

/// Read one integer as `proc_dointvec` does: base by prefix (`0x`/`0X` hex, leading `0`
/// octal, else decimal), an optional `+`; no value above [`INT_MAX`], none negative.
pub fn parse_int(word: &str) -> Result<u64, ValueError<'_>> {
    let w = word.trim();
    if w.is_empty() {
        return Err(ValueError::Empty);
    }
    let (negative, digits) = match w.as_bytes()[0] {
        b'-' => (true, &w[1..]),
        b'+' => (false, &w[1..]),
        _ => (false, w),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(ValueError::NotANumber(word.trim()));
    }
    // Accumulate with saturation: any number of digits is read without overflow.
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = u64::from(c.to_digit(radix).unwrap_or(0));
        v = v.saturating_mul(u64::from(radix)).saturating_add(d);
    }
    if negative && v != 0 {
        return Err(ValueError::Negative(word.trim()));
    }
    if v > INT_MAX {
        return Err(ValueError::TooBig(word.trim()));
    }
    Ok(v)
}

/// Parse the text written to a tunable of `kind` into a value inside its range.
pub fn parse_value(kind: Kind, text: &str) -> Result<Value, ValueError<'_>> {
    let mut words = text.split(|c: char| c.is_ascii_whitespace() || c == ',');
    let mut words = core::iter::from_fn(move || words.find(|w| !w.is_empty()));
    let first = words.next().ok_or(ValueError::Empty)?;
    match kind {
        Kind::Int { min, max } | Kind::ZeroOr { min, max } => {
            let v = parse_int(first)?;
            if words.next().is_some() {
                return Err(ValueError::TooMany { kind });
            }
            let zero_ok = matches!(kind, Kind::ZeroOr { .. }) && v == 0;
            if !zero_ok && !(min..=max).contains(&v) {
                return Err(ValueError::OutOfRange { value: v, kind });
            }
            Ok(Value::Int(v))
        }
        Kind::Trigger => {
            let v = parse_int(first)?;
            if words.next().is_some() {
                return Err(ValueError::TooMany { kind });
            }
            if v != 1 {
                return Err(ValueError::OutOfRange { value: v, kind });
            }
            Ok(Value::Trigger)
        }
        Kind::Bool => {
            if words.next().is_some() {
                return Err(ValueError::TooMany { kind });
            }
            match first {
                "1" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(Value::Int(1)),
                "0" | "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(Value::Int(0)),
                w => Err(ValueError::NotABool(w)),
            }
        }
        Kind::MinusOneOr { max } => {
            if words.next().is_some() {
                return Err(ValueError::TooMany { kind });
            }
            if first == "-1" {
                return Ok(Value::Signed(-1));
            }
            let v = match parse_int(first) {
                Err(ValueError::Negative(w)) => {
                    return Err(ValueError::OutOfRangeNegative { word: w, kind });
                }
                r => r?,
            };
            if v > max {
                return Err(ValueError::OutOfRange { value: v, kind });
            }
            Ok(Value::Signed(v as i64))
        }
        Kind::List { len, max } => {
            let len = len.min(MAX_LIST);
            let mut values = [0u64; MAX_LIST];
            let mut n = 0;
            for w in core::iter::once(first).chain(words) {
                if n == len {
                    return Err(ValueError::TooMany { kind });
                }
                let v = parse_int(w)?;
                if v > max {
                    return Err(ValueError::OutOfRange { value: v, kind });
                }
                values[n] = v;
                n += 1;
            }
            Ok(Value::List { values, n })
        }
    }
}

/// Prints a list value as `/proc/sys` does: tab-separated, then a newline.
pub struct ListText<'a>(pub &'a [u64]);

impl fmt::Display for ListText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\t")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(name: &str, text: &str) -> Result<u64, String> {
        match parse_value(find(name).unwrap().kind, text) {
            Ok(Value::Int(v)) => Ok(v),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn integers_in_linux_syntax() {
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int(" 42\n"), Ok(42));
        assert_eq!(parse_int("+7"), Ok(7));
        assert_eq!(parse_int("0x64"), Ok(100));
        assert_eq!(parse_int("0X1f"), Ok(31));
        assert_eq!(parse_int("010"), Ok(8));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("-0"), Ok(0));
        assert_eq!(parse_int("2147483647"), Ok(INT_MAX));
        assert_eq!(
            parse_int("2147483648"),
            Err(ValueError::TooBig("2147483648"))
        );
        assert_eq!(
            parse_int("99999999999999999999999999999"),
            Err(ValueError::TooBig("99999999999999999999999999999"))
        );
        assert_eq!(parse_int("-5"), Err(ValueError::Negative("-5")));
        assert_eq!(parse_int("12abc"), Err(ValueError::NotANumber("12abc")));
        assert_eq!(parse_int("09"), Err(ValueError::NotANumber("09")));
        assert_eq!(parse_int("0x"), Err(ValueError::NotANumber("0x")));
        assert_eq!(parse_int("-"), Err(ValueError::NotANumber("-")));
        assert_eq!(parse_int("1.5"), Err(ValueError::NotANumber("1.5")));
        assert_eq!(parse_int(""), Err(ValueError::Empty));
    }

    #[test]
    fn ranges_are_linux_ranges() {
        assert_eq!(int("compaction_proactiveness", "100"), Ok(100));
        assert!(int("compaction_proactiveness", "101").is_err());
        assert_eq!(int("extfrag_threshold", "1000"), Ok(1000));
        assert!(int("extfrag_threshold", "1001").is_err());
        assert!(int("compact_unevictable_allowed", "2").is_err());
        assert_eq!(int("watermark_scale_factor", "1"), Ok(1));
        assert!(int("watermark_scale_factor", "0").is_err());
        assert!(int("watermark_scale_factor", "3001").is_err());
        assert_eq!(int("percpu_pagelist_high_fraction", "0"), Ok(0));
        assert!(int("percpu_pagelist_high_fraction", "7").is_err());
        assert_eq!(int("percpu_pagelist_high_fraction", "8"), Ok(8));
        assert_eq!(int("min_free_kbytes", "2147483647"), Ok(INT_MAX));
        assert_eq!(
            int("watermark_scale_factor", "5000").unwrap_err(),
            "5000 is out of range; accepted: an integer from 1 to 3000"
        );
        assert_eq!(
            int("percpu_pagelist_high_fraction", "3").unwrap_err(),
            "3 is out of range; accepted: 0, or an integer from 8 to 2147483647"
        );
        assert_eq!(int("min_free_kbytes", "  ").unwrap_err(), "empty value");
        assert_eq!(
            int("min_free_kbytes", "1 2").unwrap_err(),
            "too many values; accepted: an integer from 0 to 2147483647"
        );
    }

    #[test]
    fn triggers_take_only_one() {
        let k = find("compact_memory").unwrap().kind;
        assert_eq!(parse_value(k, "1\n"), Ok(Value::Trigger));
        assert_eq!(
            parse_value(k, "0"),
            Err(ValueError::OutOfRange { value: 0, kind: k })
        );
        assert!(parse_value(k, "yes").is_err());
    }

    #[test]
    fn lists_replace_their_first_entries() {
        let k = find("lowmem_reserve_ratio").unwrap().kind;
        let v = parse_value(k, "128\t64").unwrap();
        assert_eq!(v.merged([256, 256, 32, 0]), [128, 64, 32, 0]);
        let v = parse_value(k, "1,2, 3 4").unwrap();
        assert_eq!(v.merged([9; 4]), [1, 2, 3, 4]);
        assert_eq!(
            parse_value(k, "1 2 3 4 5"),
            Err(ValueError::TooMany { kind: k })
        );
        assert_eq!(parse_value(k, "1 x"), Err(ValueError::NotANumber("x")));
        assert_eq!(parse_value(k, ""), Err(ValueError::Empty));
        assert_eq!(
            format!("{}", ListText(&[256, 256, 32, 0])),
            "256\t256\t32\t0\n"
        );
    }

    #[test]
    fn fault_attributes() {
        let k = |n: &str| FAIL_PAGE_ALLOC.iter().find(|t| t.name == n).unwrap().kind;
        assert_eq!(parse_value(k("times"), "-1"), Ok(Value::Signed(-1)));
        assert_eq!(parse_value(k("times"), " 7\n"), Ok(Value::Signed(7)));
        assert_eq!(
            parse_value(k("times"), "-2").unwrap_err().to_string(),
            "-2 is out of range; accepted: -1 (no limit), or an integer from 0 to 2147483647"
        );
        assert_eq!(parse_value(k("ignore-gfp-wait"), "N"), Ok(Value::Int(0)));
        assert_eq!(parse_value(k("ignore-gfp-wait"), "1"), Ok(Value::Int(1)));
        assert_eq!(
            parse_value(k("ignore-gfp-wait"), "maybe")
                .unwrap_err()
                .to_string(),
            "'maybe' is not Y or N (1 or 0)"
        );
        assert_eq!(
            parse_value(k("probability"), "101")
                .unwrap_err()
                .to_string(),
            "101 is out of range; accepted: an integer from 0 to 100"
        );
        assert!(parse_value(k("migratetype-mask"), "8").is_err());
        for w in FAIL_PAGE_ALLOC.windows(2) {
            assert!(w[0].name < w[1].name);
        }
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for w in TUNABLES.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }
}
