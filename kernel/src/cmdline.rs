//! The kernel command line: `key` and `key=value` words separated by spaces.
//!
//! QEMU hands it over through fw_cfg (see [`crate::arch::fw_cfg`]). Parsing never fails:
//! a user's typo must produce a warning naming the word, not a dead machine. Each option the
//! kernel understands is listed in [`KNOWN`] with a line of help, so unknown keys are found
//! in one place and the list doubles as documentation. The `vm.*` tunables are accepted too,
//! by their `/proc/sys/vm` names (`min_free_kbytes=4096`) or Linux's `sysctl.vm.` spelling;
//! [`crate::procfs::apply_cmdline`] applies them once the allocator is up.

use alloc::{string::String, vec::Vec};

use spin::Once;

/// Options the kernel understands, with what they do.
pub const KNOWN: &[(&str, &str)] = &[
    (
        "test",
        "run the in-kernel test suite (`test=PATTERN[,PATTERN...]` runs the tests whose name contains a PATTERN)",
    ),
    (
        "bench",
        "run the in-guest benchmarks and print their figures",
    ),
    (
        "loglevel",
        "log threshold: off, error, warn, info, debug, trace",
    ),
    (
        "kernelcore",
        "memory kept out of ZONE_MOVABLE: nn[KMGTPE] or nn%",
    ),
    (
        "movablecore",
        "memory given to ZONE_MOVABLE: nn[KMGTPE] or nn%",
    ),
    (
        "cma",
        "cma=SIZE[@START]: reserve a CMA area named `reserved` (sizes nn[KMGT], rounded up to 4 MiB), at START or as high as a range can be emptied",
    ),
    (
        "kswapd",
        "kswapd=on|off: run the per-node background reclaimer (default: on with a ramdisk, off without one and in test and bench modes)",
    ),
    (
        "kcompactd",
        "kcompactd=on|off: keep background compaction on (or off) from boot, test mode included",
    ),
    (
        "stress_ops",
        "operations the in-kernel allocator stress test performs (default 200000)",
    ),
    (
        "console",
        "console=1: after the demo, run the interactive serial console (make run sets it)",
    ),
    (
        "page_checks",
        "page_checks=full|head: check every struct page of a multi-page block at free and allocation (full, for debugging) or only its head (head, the default)",
    ),
    (
        "fail_page_alloc",
        "fault injection, Linux's syntax: fail_page_alloc=<interval>,<probability>,<space>,<times>",
    ),
];

/// A parsed command line.
#[derive(Debug, Default)]
pub struct Cmdline {
    raw: String,
    words: Vec<(String, Option<String>)>,
}

impl Cmdline {
    /// Parse `raw`. Unknown keys are kept (so `has` can still see them) and reported by
    /// [`Cmdline::unknown_keys`].
    pub fn parse(raw: &str) -> Cmdline {
        let words = raw
            .split_ascii_whitespace()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (String::from(k), Some(String::from(v))),
                None => (String::from(w), None),
            })
            .collect();
        Cmdline {
            raw: String::from(raw.trim()),
            words,
        }
    }

    /// The line as given.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Is `key` present (with or without a value)?
    pub fn has(&self, key: &str) -> bool {
        self.words.iter().any(|(k, _)| k == key)
    }

    /// The value of the last `key=value` for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.words
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every `key` or `key=value` word, in order.
    pub fn words(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.words.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// Keys that no part of the kernel understands.
    pub fn unknown_keys(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(|(k, _)| k.as_str()).filter(|k| {
            !KNOWN.iter().any(|(known, _)| known == k)
                && crate::procfs::cmdline_tunable(k).is_none()
        })
    }
}

static CMDLINE: Once<Cmdline> = Once::new();

/// Read the command line from fw_cfg (empty when absent), warn about unknown keys.
pub fn init() -> &'static Cmdline {
    CMDLINE.call_once(|| {
        let mut buf = [0u8; 4096];
        let raw = match crate::arch::fw_cfg::read_file(crate::arch::fw_cfg::CMDLINE_FILE, &mut buf)
        {
            Some((n, size)) => {
                if size > n {
                    log::warn!("command line is {size} bytes; only the first {n} are used");
                }
                match core::str::from_utf8(&buf[..n]) {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("command line is not UTF-8 ({e}); using its valid prefix");
                        // from_utf8 on the valid prefix cannot fail.
                        core::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or("")
                    }
                }
            }
            None => "",
        };
        let line = Cmdline::parse(raw.trim_end_matches('\0'));
        for key in line.unknown_keys() {
            log::warn!("unknown command-line option '{key}' ignored");
        }
        line
    })
}

/// The parsed command line (empty before [`init`]).
pub fn get() -> &'static Cmdline {
    CMDLINE.call_once(Cmdline::default)
}
