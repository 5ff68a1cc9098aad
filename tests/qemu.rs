//! Boot the kernel under QEMU in several configurations and check its in-kernel tests.
//!
//! Each test is one QEMU boot under TCG. The matrix covers both firmwares at two memory
//! sizes with 4 CPUs, plus 1 and 8 CPUs; the harness tests prove that a failing, panicking or faulting in-kernel test makes
//! the run fail and names the test.

use boot::{Firmware, Outcome};
use integration::{assert_full_suite_passes, boot, config};

#[test]
fn bios_128m_full_suite() {
    assert_full_suite_passes(&config(Firmware::Bios, "128M", 4, "test"));
}

#[test]
fn bios_1g_full_suite() {
    assert_full_suite_passes(&config(Firmware::Bios, "1G", 4, "test"));
}

#[test]
fn uefi_128m_full_suite() {
    assert_full_suite_passes(&config(Firmware::Uefi, "128M", 4, "test"));
}

#[test]
fn uefi_1g_full_suite() {
    // The compaction suite fills and compacts most of memory, which takes minutes under
    // TCG at 1 GiB and more: it runs in BIOS 1G and in every smaller configuration.
    assert_full_suite_passes(&config(Firmware::Uefi, "1G", 4, "test=-ktests::compaction"));
}

#[test]
fn bios_one_cpu_full_suite() {
    assert_full_suite_passes(&config(Firmware::Bios, "256M", 1, "test"));
}

#[test]
fn uefi_eight_cpus_full_suite() {
    let r = assert_full_suite_passes(&config(Firmware::Uefi, "512M", 8, "test"));
    assert!(
        r.transcript.contains("smp: 8 CPU(s) online"),
        "{}",
        r.tail(30)
    );
}

/// 6 GiB crosses the 4 GiB PCI hole: ZONE_NORMAL is populated, DMA32 has a hole.
#[test]
fn bios_6g_full_suite() {
    let r = assert_full_suite_passes(&config(Firmware::Bios, "6G", 4, "test=-ktests::compaction"));
    assert!(
        r.transcript.contains("Node 0, zone   Normal"),
        "{}",
        r.tail(30)
    );
    // ktests::zoned_compaction ran on ZONE_NORMAL above 4 GiB (it passes as not
    // applicable where there is no such zone).
    assert_zoned_compaction_ran(&r.transcript, "Normal");
}

/// Both `ktests::zoned_compaction` tests moved pages of `zone` (their report lines).
fn assert_zoned_compaction_ran(transcript: &str, zone: &str) {
    for line in [
        format!("zoned_compaction: zone {zone} node"),
        format!("zoned_compaction: migrate_pages in zone {zone}:"),
    ] {
        assert!(
            transcript.contains(&line),
            "no '{line}' line: ktests::zoned_compaction did not work on {zone}"
        );
    }
}

#[test]
fn uefi_6g_full_suite() {
    assert_full_suite_passes(&config(Firmware::Uefi, "6G", 4, "test=-ktests::compaction"));
}

/// `movablecore=` carves ZONE_MOVABLE from the top of memory (checked in-kernel by
/// `ktests::memory::movable_zone_follows_the_command_line`).
#[test]
fn movablecore_creates_zone_movable() {
    let r = assert_full_suite_passes(&config(
        Firmware::Bios,
        "1G",
        2,
        "test=-ktests::compaction movablecore=256M",
    ));
    assert_zoned_compaction_ran(&r.transcript, "Movable");
    let movable = r
        .transcript
        .split("Node 0, zone  Movable")
        .nth(1)
        .expect("zoneinfo for Movable printed");
    let present: u64 = movable
        .lines()
        .find_map(|l| l.trim().strip_prefix("present"))
        .and_then(|v| v.trim().parse().ok())
        .expect("present line");
    assert!(
        present >= 65536 - 1024 && present <= 65536 + 1024,
        "Movable present {present}"
    );
}

/// Bad `kernelcore=`/`movablecore=` values are reported and ignored; the boot goes on.
#[test]
fn bad_movablecore_is_rejected_not_fatal() {
    let r = boot(&config(
        Firmware::Bios,
        "256M",
        1,
        "test=ktests::memory movablecore=lots",
    ));
    assert!(r.success(), "{}", r.tail(40));
    assert!(
        !r.tests.is_empty() && r.summary == Some((r.tests.len(), 0)),
        "{}",
        r.tail(40)
    );
    assert!(
        r.transcript.contains("movablecore=lots"),
        "no message naming the bad value:\n{}",
        r.tail(40)
    );
}

/// The SMP stress proof: 4 CPUs, at least 10^6 allocator operations, at least a quarter of
/// the frees done by another CPU, and the free count restored exactly.
#[test]
fn stress_four_cpus_a_million_operations() {
    let r = boot(&config(
        Firmware::Bios,
        "1G",
        4,
        "test=ktests::stress stress_ops=1000000",
    ));
    assert!(r.success(), "{}", r.tail(30));
    assert_eq!(r.summary, Some((1, 0)), "{}", r.tail(30));
    let line = r
        .transcript
        .lines()
        .find(|l| l.starts_with("stress: "))
        .expect("stress report line");
    let num_before = |word: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| *w == word)
            .unwrap_or_else(|| panic!("'{word}' in {line}"));
        words[i - 1]
            .trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .expect("number")
    };
    assert_eq!(num_before("CPUs,"), 4, "{line}");
    assert!(num_before("operations,") >= 1_000_000, "{line}");
    let (frees, remote) = (num_before("frees"), num_before("by"));
    assert!(remote * 4 >= frees, "{line}");
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = words[words.iter().position(|w| *w == "before").unwrap() + 1];
    let after = words[words.iter().position(|w| *w == "after").unwrap() + 1];
    assert_eq!(before, after, "{line}");
}

/// The demo (no command line) prints the banner and the firmware map, then exits 0.
#[test]
fn demo_prints_memory_map_and_exits_cleanly() {
    let r = boot(&config(Firmware::Bios, "256M", 1, ""));
    assert_eq!(r.outcome, Outcome::KernelSuccess, "{}", r.tail(30));
    assert!(
        r.transcript.contains("memkernel "),
        "no banner:\n{}",
        r.tail(30)
    );
    assert!(
        r.transcript.contains("firmware memory map:"),
        "no memory map:\n{}",
        r.tail(30)
    );
    assert!(
        r.transcript.contains(" usable"),
        "no usable region printed:\n{}",
        r.tail(30)
    );
    // The fragmentation story: an order-9 allocation fails on fragmented memory,
    // compaction runs, and every movable page checks out afterwards.
    for needle in [
        "order-9 allocation without compaction: fails",
        "compact_memory: ",
        "checksums intact, every reverse map points back",
    ] {
        assert!(
            r.transcript.contains(needle),
            "demo lacks {needle:?}:\n{}",
            r.tail(40)
        );
    }
}

/// Unknown command-line keys warn, naming the key, and the boot carries on.
#[test]
fn unknown_cmdline_key_warns_and_boots() {
    let r = boot(&config(
        Firmware::Bios,
        "128M",
        1,
        "test=ktests::boot frobnicate=7",
    ));
    assert_eq!(r.outcome, Outcome::KernelSuccess, "{}", r.tail(30));
    assert!(
        r.transcript
            .contains("unknown command-line option 'frobnicate' ignored"),
        "{}",
        r.tail(30)
    );
    assert!(r.tests.iter().all(|t| t.name.starts_with("ktests::boot::")));
    assert!(!r.tests.is_empty());
}

fn assert_fails_naming(pattern: &str, expect_reason: &str) {
    let r = boot(&config(
        Firmware::Bios,
        "128M",
        1,
        &format!("test={pattern}"),
    ));
    let name = format!("ktests::harness::{pattern}");
    assert_eq!(r.outcome, Outcome::KernelFailure, "{}", r.tail(30));
    assert!(!r.success());
    assert_eq!(r.failed_tests(), vec![name.as_str()], "{}", r.tail(30));
    let reason = r.tests[0].failure.as_deref().unwrap_or_default();
    assert!(
        reason.contains(expect_reason),
        "reason '{reason}' lacks '{expect_reason}'"
    );
    assert_eq!(r.summary, Some((0, 1)), "{}", r.tail(30));
}

#[test]
fn harness_reports_a_failing_test() {
    assert_fails_naming("deliberate_failure", "fails on purpose");
}

#[test]
fn harness_reports_a_panicking_test() {
    assert_fails_naming("deliberate_panic", "index out of bounds");
}

#[test]
fn harness_reports_a_faulting_test() {
    assert_fails_naming("deliberate_page_fault", "page fault");
}
