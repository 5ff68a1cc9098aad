//! Console commands and their parser.
//!
//! A command line is words separated by spaces; `echo VALUE > PATH` is the one form with
//! syntax of its own (VALUE may contain spaces, as in `echo 256 256 32 0 >
//! /proc/sys/vm/lowmem_reserve_ratio`). Parsing borrows from the line and never allocates;
//! every mistake is a [`ParseError`] whose message says what was expected, and an unknown
//! command comes with the nearest known one as a hint.

use core::fmt;

/// Every command with its usage line, in the order `help` lists them.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("help", "help", "list the commands"),
    (
        "ls",
        "ls [PATH]",
        "list a directory of /proc or /sys (default: /)",
    ),
    (
        "cat",
        "cat PATH...",
        "print /proc, /sys or /ramdisk files (ramdisk files through the page cache)",
    ),
    (
        "echo",
        "echo VALUE > PATH",
        "write VALUE to a tunable, a trigger or a memory block's state",
    ),
    (
        "alloc",
        "alloc ORDER [GFP]",
        "allocate 2^ORDER pages (GFP like GFP_KERNEL|__GFP_ZERO)",
    ),
    (
        "free",
        "free [all|last]",
        "free what alloc allocated (default: all)",
    ),
    ("frag", "frag", "build the fragmentation scenario"),
    ("stress", "stress", "run the allocator stress on every CPU"),
    (
        "compact",
        "compact",
        "compact every zone (as echo 1 > /proc/sys/vm/compact_memory)",
    ),
    (
        "drop_caches",
        "drop_caches [1|2|3]",
        "drop clean page cache (1, the default), shrink caches (2), or both (3)",
    ),
    ("meminfo", "meminfo", "print /proc/meminfo"),
    (
        "cma",
        "cma [alloc AREA PAGES [ALIGN]|free]",
        "list the CMA areas; allocate PAGES from one (ALIGN: order), free what cma alloc took",
    ),
    (
        "contig",
        "contig PAGES|free",
        "allocate PAGES contiguous pages (alloc_contig_pages) on this CPU's node; free them",
    ),
    (
        "numastat",
        "numastat",
        "print the NUMA allocation counters, one column per node",
    ),
    (
        "sleep",
        "sleep MS",
        "wait MS milliseconds (up to 600000), e.g. to let kcompactd work",
    ),
    ("poweroff", "poweroff", "power the machine off"),
];

/// Longest `sleep` accepted, in milliseconds (ten minutes): a typo must not park the
/// console for a day.
pub const MAX_SLEEP_MS: u64 = 600_000;

/// What `free` releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeWhat {
    /// Everything the console allocated.
    All,
    /// The most recent allocation.
    Last,
}

/// Largest alignment order `cma alloc` takes (1 GiB).
pub const MAX_CMA_ALIGN: u32 = 18;

/// Largest page count `cma alloc` and `contig` take (16 GiB: more than any machine
/// this kernel boots; the allocator refuses what its memory cannot hold).
pub const MAX_CONTIG_PAGES: u64 = 1 << 22;

/// What `cma` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaCmd<'a> {
    /// List the areas.
    List,
    /// `cma alloc AREA PAGES [ALIGN]`
    Alloc {
        /// Area name or index.
        area: &'a str,
        /// Pages.
        pages: u64,
        /// Alignment order of the first page (0 when omitted).
        align: u32,
    },
    /// `cma free`: release everything `cma alloc` took.
    Free,
}

/// What `contig` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContigCmd {
    /// `contig PAGES`
    Alloc(u64),
    /// `contig free`
    Free,
}

/// A parsed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line.
    Empty,
    /// `help`
    Help,
    /// `ls [PATH]` (`/` when omitted)
    Ls(&'a str),
    /// `cat PATH...`: one or more paths separated by whitespace (see [`Command::paths`]).
    Cat(&'a str),
    /// `echo VALUE > PATH`
    Echo {
        /// Text to write (trimmed; may contain spaces).
        value: &'a str,
        /// File to write.
        path: &'a str,
    },
    /// `alloc ORDER [GFP]`
    Alloc {
        /// Order of the block.
        order: u32,
        /// GFP expression, if given.
        gfp: Option<&'a str>,
    },
    /// `free [all|last]`
    Free(FreeWhat),
    /// `frag`
    Frag,
    /// `stress`
    Stress,
    /// `compact`
    Compact,
    /// `drop_caches [1|2|3]` (as `echo N > /proc/sys/vm/drop_caches`; 1 when omitted)
    DropCaches(u32),
    /// `meminfo`
    Meminfo,
    /// `numastat`
    Numastat,
    /// `cma ...`
    Cma(CmaCmd<'a>),
    /// `contig PAGES|free`
    Contig(ContigCmd),
    /// `sleep MS`
    Sleep(u64),
    /// `poweroff`
    Poweroff,
}

/// Most paths one `cat` takes.
pub const MAX_CAT_PATHS: usize = 16;

impl<'a> Command<'a> {
    /// The paths of a `cat` (empty for any other command).
    pub fn paths(&self) -> impl Iterator<Item = &'a str> {
        let list = match *self {
            Command::Cat(list) => list,
            _ => "",
        };
        list.split_ascii_whitespace()
    }
}

/// Why a line is not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// The first word is no command; `hint` is the nearest one.
    Unknown {
        /// The word typed.
        word: &'a str,
        /// A command it probably meant.
        hint: Option<&'static str>,
    },
    /// An argument is missing.
    Missing {
        /// The usage line.
        usage: &'static str,
    },
    /// An argument is not what the command takes.
    Bad {
        /// The offending argument.
        arg: &'a str,
        /// The usage line.
        usage: &'static str,
    },
    /// More arguments than the command takes.
    TooMany {
        /// The usage line.
        usage: &'static str,
    },
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown {
                word,
                hint: Some(h),
            } => {
                write!(
                    f,
                    "{word}: unknown command; did you mean '{h}'? ('help' lists them)"
                )
            }
            ParseError::Unknown { word, hint: None } => {
                write!(f, "{word}: unknown command ('help' lists them)")
            }
            ParseError::Missing { usage } => write!(f, "missing argument; usage: {usage}"),
            ParseError::Bad { arg, usage } => {
                write!(f, "'{arg}' is not valid here; usage: {usage}")
            }
            ParseError::TooMany { usage } => write!(f, "too many arguments; usage: {usage}"),
        }
    }
}

fn usage(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|c| c.0 == name)
        .map_or("help", |c| c.1)
}

/// Edit distance, capped (inputs are short command names).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() > 16 || b.len() > 16 {
        return usize::MAX;
    }
    let mut prev = [0usize; 17];
    let mut cur = [0usize; 17];
    for (j, p) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *p = j;
    }
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn hint(word: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .map(|c| c.0)
        .filter(|c| c.starts_with(word) && !word.is_empty())
        .chain(
            COMMANDS
                .iter()
                .map(|c| c.0)
                .filter(|c| distance(word, c) <= 2),
        )
        .next()
}

fn one_arg<'a>(
    mut words: core::str::SplitAsciiWhitespace<'a>,
    name: &str,
) -> Result<&'a str, ParseError<'a>> {
    let arg = words
        .next()
        .ok_or(ParseError::Missing { usage: usage(name) })?;
    no_more(words, name)?;
    Ok(arg)
}

fn no_more<'a>(mut words: impl Iterator<Item = &'a str>, name: &str) -> Result<(), ParseError<'a>> {
    match words.next() {
        None => Ok(()),
        Some(_) => Err(ParseError::TooMany { usage: usage(name) }),
    }
}

/// A page count: 1 to [`MAX_CONTIG_PAGES`].
fn page_count<'a>(s: &'a str, usage: &'static str) -> Result<u64, ParseError<'a>> {
    s.parse::<u64>()
        .ok()
        .filter(|&n| (1..=MAX_CONTIG_PAGES).contains(&n))
        .ok_or(ParseError::Bad { arg: s, usage })
}

/// Parse one command line.
pub fn parse(line: &str) -> Result<Command<'_>, ParseError<'_>> {
    let line = line.trim();
    let mut words = line.split_ascii_whitespace();
    let Some(name) = words.next() else {
        return Ok(Command::Empty);
    };
    let cmd = match name {
        "help" | "?" => no_more(words, "help").map(|_| Command::Help)?,
        "ls" => match words.next() {
            None => Command::Ls("/"),
            Some(path) => {
                no_more(words, "ls")?;
                Command::Ls(path)
            }
        },
        "cat" => {
            let rest = line["cat".len()..].trim();
            if rest.is_empty() {
                return Err(ParseError::Missing {
                    usage: usage("cat"),
                });
            }
            if rest.split_ascii_whitespace().count() > MAX_CAT_PATHS {
                return Err(ParseError::TooMany {
                    usage: usage("cat"),
                });
            }
            Command::Cat(rest)
        }
        "echo" => {
            let rest = line["echo".len()..].trim();
            let (value, path) = rest.split_once('>').ok_or(ParseError::Missing {
                usage: usage("echo"),
            })?;
            let (value, path) = (value.trim(), path.trim());
            if value.is_empty() || path.is_empty() {
                return Err(ParseError::Missing {
                    usage: usage("echo"),
                });
            }
            if path.contains(char::is_whitespace) || path.contains('>') {
                return Err(ParseError::Bad {
                    arg: path,
                    usage: usage("echo"),
                });
            }
            Command::Echo { value, path }
        }
        "alloc" => {
            let order_s = words.next().ok_or(ParseError::Missing {
                usage: usage("alloc"),
            })?;
            let order =
                order_s
                    .parse::<u32>()
                    .ok()
                    .filter(|&o| o <= 10)
                    .ok_or(ParseError::Bad {
                        arg: order_s,
                        usage: usage("alloc"),
                    })?;
            let gfp = words.next();
            no_more(words, "alloc")?;
            Command::Alloc { order, gfp }
        }
        "free" => {
            let what = match words.next() {
                None | Some("all") => FreeWhat::All,
                Some("last") => FreeWhat::Last,
                Some(other) => {
                    return Err(ParseError::Bad {
                        arg: other,
                        usage: usage("free"),
                    });
                }
            };
            no_more(words, "free")?;
            Command::Free(what)
        }
        "frag" => no_more(words, "frag").map(|_| Command::Frag)?,
        "stress" => no_more(words, "stress").map(|_| Command::Stress)?,
        "compact" => no_more(words, "compact").map(|_| Command::Compact)?,
        "drop_caches" => {
            let mode = match words.next() {
                None => 1,
                Some(m) => m
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (1..=3).contains(m))
                    .ok_or(ParseError::Bad {
                        arg: m,
                        usage: usage("drop_caches"),
                    })?,
            };
            no_more(words, "drop_caches")?;
            Command::DropCaches(mode)
        }
        "meminfo" => no_more(words, "meminfo").map(|_| Command::Meminfo)?,
        "numastat" => no_more(words, "numastat").map(|_| Command::Numastat)?,
        "cma" => Command::Cma(match words.next() {
            None => CmaCmd::List,
            Some("free") => {
                no_more(words, "cma")?;
                CmaCmd::Free
            }
            Some("alloc") => {
                let u = usage("cma");
                let area = words.next().ok_or(ParseError::Missing { usage: u })?;
                let pages_s = words.next().ok_or(ParseError::Missing { usage: u })?;
                let pages = page_count(pages_s, u)?;
                let align = match words.next() {
                    None => 0,
                    Some(a) => a
                        .parse::<u32>()
                        .ok()
                        .filter(|&o| o <= MAX_CMA_ALIGN)
                        .ok_or(ParseError::Bad { arg: a, usage: u })?,
                };
                no_more(words, "cma")?;
                CmaCmd::Alloc { area, pages, align }
            }
            Some(other) => {
                return Err(ParseError::Bad {
                    arg: other,
                    usage: usage("cma"),
                });
            }
        }),
        "contig" => {
            let arg = one_arg(words, "contig")?;
            Command::Contig(match arg {
                "free" => ContigCmd::Free,
                n => ContigCmd::Alloc(page_count(n, usage("contig"))?),
            })
        }
        "sleep" => {
            let ms_s = one_arg(words, "sleep")?;
            let ms = ms_s
                .parse::<u64>()
                .ok()
                .filter(|&ms| ms <= MAX_SLEEP_MS)
                .ok_or(ParseError::Bad {
                    arg: ms_s,
                    usage: usage("sleep"),
                })?;
            Command::Sleep(ms)
        }
        "poweroff" | "exit" | "quit" => no_more(words, "poweroff").map(|_| Command::Poweroff)?,
        word => {
            return Err(ParseError::Unknown {
                word,
                hint: hint(word),
            });
        }
    };
    Ok(cmd)
}

/// The commands of a batch script: separated by `;` or newlines, trimmed, empty ones
/// dropped.
pub fn split_script(script: &str) -> impl Iterator<Item = &str> {
    script
        .split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses() {
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("  ls /proc/sys/vm "), Ok(Command::Ls("/proc/sys/vm")));
        assert_eq!(
            parse("cat /proc/buddyinfo"),
            Ok(Command::Cat("/proc/buddyinfo"))
        );
        assert_eq!(
            parse("echo 256 256 32 0 > /proc/sys/vm/lowmem_reserve_ratio"),
            Ok(Command::Echo {
                value: "256 256 32 0",
                path: "/proc/sys/vm/lowmem_reserve_ratio"
            })
        );
        assert_eq!(
            parse("echo 1>/proc/sys/vm/compact_memory"),
            Ok(Command::Echo {
                value: "1",
                path: "/proc/sys/vm/compact_memory"
            })
        );
        assert_eq!(
            parse("alloc 3"),
            Ok(Command::Alloc {
                order: 3,
                gfp: None
            })
        );
        assert_eq!(
            parse("alloc 9 GFP_KERNEL|__GFP_ZERO"),
            Ok(Command::Alloc {
                order: 9,
                gfp: Some("GFP_KERNEL|__GFP_ZERO")
            })
        );
        assert_eq!(parse("ls"), Ok(Command::Ls("/")));
        assert_eq!(parse("sleep 1500"), Ok(Command::Sleep(1500)));
        assert_eq!(parse("sleep 0"), Ok(Command::Sleep(0)));
        assert_eq!(parse("free"), Ok(Command::Free(FreeWhat::All)));
        assert_eq!(parse("free last"), Ok(Command::Free(FreeWhat::Last)));
        for (w, c) in [
            ("frag", Command::Frag),
            ("stress", Command::Stress),
            ("compact", Command::Compact),
            ("meminfo", Command::Meminfo),
            ("numastat", Command::Numastat),
            ("poweroff", Command::Poweroff),
        ] {
            assert_eq!(parse(w), Ok(c));
        }
        assert_eq!(parse("   "), Ok(Command::Empty));
        assert_eq!(parse("cma"), Ok(Command::Cma(CmaCmd::List)));
        assert_eq!(parse("cma free"), Ok(Command::Cma(CmaCmd::Free)));
        assert_eq!(
            parse("cma alloc reserved 8192"),
            Ok(Command::Cma(CmaCmd::Alloc {
                area: "reserved",
                pages: 8192,
                align: 0
            }))
        );
        assert_eq!(
            parse("cma alloc 0 16 4"),
            Ok(Command::Cma(CmaCmd::Alloc {
                area: "0",
                pages: 16,
                align: 4
            }))
        );
        assert_eq!(
            parse("contig 16384"),
            Ok(Command::Contig(ContigCmd::Alloc(16384)))
        );
        assert_eq!(parse("contig free"), Ok(Command::Contig(ContigCmd::Free)));
        assert_eq!(parse("drop_caches"), Ok(Command::DropCaches(1)));
        assert_eq!(parse("drop_caches 3"), Ok(Command::DropCaches(3)));
        let u = "drop_caches [1|2|3]";
        assert_eq!(
            parse("drop_caches 4"),
            Err(ParseError::Bad { arg: "4", usage: u })
        );
        assert_eq!(
            parse("drop_caches 1 2"),
            Err(ParseError::TooMany { usage: u })
        );
    }

    #[test]
    fn cma_and_contig_mistakes_are_explained() {
        let cma = "cma [alloc AREA PAGES [ALIGN]|free]";
        let contig = "contig PAGES|free";
        assert_eq!(parse("cma alloc"), Err(ParseError::Missing { usage: cma }));
        assert_eq!(
            parse("cma alloc reserved"),
            Err(ParseError::Missing { usage: cma })
        );
        for bad in ["0", "-1", "lots", "4194305", "99999999999999999999999"] {
            assert_eq!(
                parse(&format!("cma alloc reserved {bad}")),
                Err(ParseError::Bad {
                    arg: bad,
                    usage: cma
                })
            );
            assert_eq!(
                parse(&format!("contig {bad}")),
                Err(ParseError::Bad {
                    arg: bad,
                    usage: contig
                })
            );
        }
        assert_eq!(
            parse("cma alloc reserved 16 19"),
            Err(ParseError::Bad {
                arg: "19",
                usage: cma
            })
        );
        assert_eq!(
            parse("cma alloc reserved 16 4 more"),
            Err(ParseError::TooMany { usage: cma })
        );
        assert_eq!(
            parse("cma grab"),
            Err(ParseError::Bad {
                arg: "grab",
                usage: cma
            })
        );
        assert_eq!(parse("cma free 3"), Err(ParseError::TooMany { usage: cma }));
        assert_eq!(parse("contig"), Err(ParseError::Missing { usage: contig }));
        assert_eq!(
            parse("contig 16 free"),
            Err(ParseError::TooMany { usage: contig })
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert_eq!(
            parse("alloc"),
            Err(ParseError::Missing {
                usage: "alloc ORDER [GFP]"
            })
        );
        assert_eq!(
            parse("alloc 11"),
            Err(ParseError::Bad {
                arg: "11",
                usage: "alloc ORDER [GFP]"
            })
        );
        assert_eq!(
            parse("alloc -1"),
            Err(ParseError::Bad {
                arg: "-1",
                usage: "alloc ORDER [GFP]"
            })
        );
        assert_eq!(
            parse("alloc 99999999999999999999"),
            Err(ParseError::Bad {
                arg: "99999999999999999999",
                usage: "alloc ORDER [GFP]"
            })
        );
        assert_eq!(
            parse("cat"),
            Err(ParseError::Missing {
                usage: "cat PATH..."
            })
        );
        assert_eq!(
            parse("cat a  b").unwrap().paths().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            parse(&format!("cat {}", ["x"; MAX_CAT_PATHS + 1].join(" "))),
            Err(ParseError::TooMany {
                usage: "cat PATH..."
            })
        );
        assert_eq!(
            parse("sleep"),
            Err(ParseError::Missing { usage: "sleep MS" })
        );
        for bad in ["-1", "1.5", "600001", "99999999999999999999999", "soon"] {
            assert_eq!(
                parse(&format!("sleep {bad}")),
                Err(ParseError::Bad {
                    arg: bad,
                    usage: "sleep MS"
                })
            );
        }
        assert_eq!(
            parse("echo 5"),
            Err(ParseError::Missing {
                usage: "echo VALUE > PATH"
            })
        );
        assert_eq!(
            parse("echo > x"),
            Err(ParseError::Missing {
                usage: "echo VALUE > PATH"
            })
        );
        assert_eq!(
            parse("echo 1 > a b"),
            Err(ParseError::Bad {
                arg: "a b",
                usage: "echo VALUE > PATH"
            })
        );
        assert_eq!(
            parse("free some"),
            Err(ParseError::Bad {
                arg: "some",
                usage: "free [all|last]"
            })
        );
        assert_eq!(
            parse("compact now"),
            Err(ParseError::TooMany { usage: "compact" })
        );
    }

    #[test]
    fn unknown_commands_get_a_hint() {
        assert_eq!(
            parse("comapct"),
            Err(ParseError::Unknown {
                word: "comapct",
                hint: Some("compact")
            })
        );
        assert_eq!(
            parse("mem"),
            Err(ParseError::Unknown {
                word: "mem",
                hint: Some("meminfo")
            })
        );
        assert_eq!(
            parse("xyzzy"),
            Err(ParseError::Unknown {
                word: "xyzzy",
                hint: None
            })
        );
        let msg = format!("{}", parse("stres").unwrap_err());
        assert!(msg.contains("did you mean 'stress'"), "{msg}");
    }

    #[test]
    fn scripts_split_on_semicolons_and_newlines() {
        let cmds: Vec<&str> =
            split_script("frag; cat /proc/buddyinfo;;compact\n cat /proc/buddyinfo ;").collect();
        assert_eq!(
            cmds,
            [
                "frag",
                "cat /proc/buddyinfo",
                "compact",
                "cat /proc/buddyinfo"
            ]
        );
        assert_eq!(split_script(" ; \n ").count(), 0);
    }
}
