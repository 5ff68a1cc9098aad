//! Shared helpers for the QEMU integration tests: one place that knows which in-kernel
//! suites must run and how to judge a run, so every configuration is checked the same way.

use std::time::Duration;

use boot::{Firmware, Outcome, RunConfig, RunResult};

/// Every in-kernel suite a full `test` run must report. A suite missing from a run means
/// the kernel died or skipped it, and fails the configuration.
pub const EXPECTED_SUITES: &[&str] = &[
    "ktests::boot",
    "ktests::compaction",
    "ktests::console",
    "ktests::contig",
    "ktests::fault_injection",
    "ktests::harness",
    "ktests::memory",
    "ktests::numa",
    "ktests::page_alloc",
    "ktests::reclaim",
    "ktests::smp",
    "ktests::stress",
    "ktests::tunables",
    "ktests::vmalloc",
    "ktests::zoned_compaction",
];

/// Generous per-boot timeout: TCG on a loaded 2-core machine is slow, and a hung kernel
/// must still end the test instead of stalling CI.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// A configuration running `cmdline`.
pub fn config(firmware: Firmware, memory: &str, cpus: u32, cmdline: &str) -> RunConfig {
    RunConfig {
        firmware,
        memory: memory.to_string(),
        cpus,
        cmdline: cmdline.to_string(),
        timeout: BOOT_TIMEOUT,
        ..Default::default()
    }
}

/// Boot `cfg`, panicking with the transcript tail if QEMU can not even start.
///
/// With `QEMU_TRANSCRIPTS=DIR` in the environment, each boot's serial transcript is also
/// written to `DIR` (one file per test, named after it), with the run's wall
/// time on its first line: the in-kernel harness prints `time: TEST N ms` per test, so
/// these files show where a slow configuration spends its time.
pub fn boot(cfg: &RunConfig) -> RunResult {
    let r = boot::run(cfg).unwrap_or_else(|e| panic!("could not run QEMU for {cfg:?}: {e}"));
    if let Some(dir) = std::env::var_os("QEMU_TRANSCRIPTS") {
        save_transcript(std::path::Path::new(&dir), cfg, &r);
    }
    r
}

/// Write `r`'s transcript under `dir` (see [`boot`]); a failure to write is reported,
/// not fatal: the transcript is a diagnostic.
fn save_transcript(dir: &std::path::Path, cfg: &RunConfig, r: &RunResult) {
    // libtest names each test's thread after the test: one file per test; a test
    // that boots twice appends its second boot.
    let name: String = std::thread::current()
        .name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}-{}-{}cpu", cfg.firmware, cfg.memory, cfg.cpus))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let text = format!(
        "# {:?} {:.1} s\n{}",
        r.outcome,
        r.elapsed.as_secs_f64(),
        r.transcript
    );
    let path = dir.join(format!("{name}.log"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(text.as_bytes())
    };
    if let Err(e) = write() {
        eprintln!("could not save the transcript to {}: {e}", path.display());
    }
}

/// Run the whole in-kernel suite under `cfg` and assert that it passed completely:
/// success exit, every expected suite announced, each with as many test lines as it
/// announced, none failed, a closing line that agrees (skipped tests counted apart from
/// the passed ones). With two CPUs or more, no test may skip for want of CPUs.
pub fn assert_full_suite_passes(cfg: &RunConfig) -> RunResult {
    let r = boot(cfg);
    // Each failed in-kernel test with its reason (the boot crate parses them from the
    // `test NAME ... FAILED: reason` lines): the tail alone may have scrolled past them.
    let failures: String = r
        .tests
        .iter()
        .filter_map(|t| Some(format!("{}: {}\n", t.name, t.failure.as_ref()?)))
        .collect();
    let skips = r.skipped_tests();
    let ctx = format!(
        "{} {} {} CPU(s), cmdline '{}': outcome {:?}, {:.1}s, skipped {skips:?}\n--- failures ---\n{failures}--- last lines ---\n{}",
        cfg.firmware,
        cfg.memory,
        cfg.cpus,
        cfg.cmdline,
        r.outcome,
        r.elapsed.as_secs_f64(),
        r.tail(40)
    );
    assert!(
        r.failed_tests().is_empty(),
        "failed tests {:?}\n{ctx}",
        r.failed_tests()
    );
    assert_eq!(r.outcome, Outcome::KernelSuccess, "{ctx}");
    // `test=-TEXT` runs everything except tests whose name contains TEXT.
    let excluded = cfg
        .cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("test=-"));
    // `test=A,B` runs only the tests whose names contain one of the patterns: then the
    // suites expected are those the patterns name (or lie inside).
    let selected = cfg
        .cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("test="));
    let included = |suite: &str| match selected {
        Some(list) if !list.is_empty() && !list.starts_with('-') => list
            .split(',')
            .any(|p| p.starts_with(suite) || suite.starts_with(p)),
        _ => true,
    };
    for suite in EXPECTED_SUITES
        .iter()
        .filter(|s| excluded.is_none_or(|x| !s.contains(x)) && included(s))
    {
        let announced = r.suites.iter().find(|(s, _)| s == suite);
        let (_, n) = announced.unwrap_or_else(|| panic!("suite {suite} did not run\n{ctx}"));
        let ran = r
            .tests
            .iter()
            .filter(|t| t.name.rsplit_once("::").map(|(s, _)| s) == Some(suite))
            .count();
        assert_eq!(
            ran, *n,
            "suite {suite} announced {n} tests but {ran} reported\n{ctx}"
        );
    }
    let total: usize = r.suites.iter().map(|(_, n)| n).sum();
    assert_eq!(
        (r.summary, r.skipped),
        (Some((total - skips.len(), 0)), Some(skips.len())),
        "closing line disagrees\n{ctx}"
    );
    assert!(total > skips.len(), "no test passed\n{ctx}");
    if cfg.cpus >= 2 {
        let for_cpus: Vec<_> = skips
            .iter()
            .filter(|(_, why)| why.contains("CPU"))
            .collect();
        assert!(
            for_cpus.is_empty(),
            "skipped for want of CPUs on {} CPUs: {for_cpus:?}\n{ctx}",
            cfg.cpus
        );
    }
    r
}
