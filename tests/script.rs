//! The serial console's batch mode, end to end: a script handed to the kernel through
//! fw_cfg runs command by command, each echoed after the prompt marker, and the machine
//! powers off with the verdict. The first test is the acceptance check (more
//! pageblock-sized free blocks after `compact` than after `frag`); the second feeds the
//! console mistakes and checks each is explained and changes nothing.

use boot::{ConsoleCommand, Firmware, Outcome, RunResult, console_commands};
use integration::{boot, config};

fn run_script(cmdline: &str, script: &str) -> (RunResult, Vec<ConsoleCommand>) {
    let mut cfg = config(Firmware::Bios, "256M", 2, cmdline);
    cfg.script = Some(script.to_string());
    let r = boot(&cfg);
    let cmds = console_commands(&r.transcript);
    (r, cmds)
}

/// Free blocks of order 9 and 10, summed over the zones of a buddyinfo text.
fn huge_blocks(buddyinfo: &[String]) -> u64 {
    buddyinfo
        .iter()
        .filter(|l| l.starts_with("Node "))
        .map(|l| {
            let counts: Vec<u64> = l
                .split_whitespace()
                .skip(4) // "Node", "N,", "zone", NAME
                .map(|w| w.parse().unwrap_or_else(|_| panic!("count {w:?} in {l:?}")))
                .collect();
            assert_eq!(counts.len(), 11, "buddyinfo line {l:?}");
            counts[9] + counts[10]
        })
        .sum()
}

fn vmstat_value(lines: &[String], name: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in vmstat"))
}

#[test]
fn script_fragments_compacts_and_buddyinfo_shows_it() {
    let (r, cmds) = run_script(
        "",
        "frag; cat /proc/buddyinfo; compact; cat /proc/buddyinfo; cat /proc/vmstat",
    );
    let ctx = format!(
        "outcome {:?}\n--- last lines ---\n{}",
        r.outcome,
        r.tail(60)
    );
    assert_eq!(r.outcome, Outcome::KernelSuccess, "{ctx}");
    assert!(!r.transcript.contains("FATAL"), "{ctx}");
    assert!(
        r.transcript.contains("script: 5 commands, 0 failed"),
        "{ctx}"
    );
    let names: Vec<&str> = cmds.iter().map(|c| c.command.as_str()).collect();
    assert_eq!(
        names,
        [
            "frag",
            "cat /proc/buddyinfo",
            "compact",
            "cat /proc/buddyinfo",
            "cat /proc/vmstat"
        ],
        "{ctx}"
    );
    let before = huge_blocks(&cmds[1].output);
    let after = huge_blocks(&cmds[3].output);
    println!("order-9/10 free blocks: {before} after frag, {after} after compact");
    println!("{}", cmds[1].output.join("\n"));
    println!("{}", cmds[3].output.join("\n"));
    assert!(
        after > before,
        "compaction did not add order-9/10 blocks ({before} -> {after})\n{ctx}"
    );
    assert!(
        vmstat_value(&cmds[4].output, "compact_migrate_scanned") > 0,
        "{ctx}"
    );
    assert!(
        vmstat_value(&cmds[4].output, "pgmigrate_success") > 0,
        "{ctx}"
    );
}

#[test]
fn mistakes_are_explained_and_change_nothing() {
    let (r, cmds) = run_script(
        "watermark_scale_factor=20 min_free_kbytes=lots",
        "cat /proc/sys/vm/watermark_scale_factor; \
         echo 5000 > /proc/sys/vm/watermark_scale_factor; \
         echo abc > /proc/sys/vm/watermark_scale_factor; \
         echo > /proc/sys/vm/watermark_scale_factor; \
         echo 99999999999999999999 > /proc/sys/vm/watermark_scale_factor; \
         cat /proc/sys/vm/watermark_scale_factor; \
         comapct; alloc 11; cat /proc/nope; echo 1 > /proc/vmstat; \
         echo 100 > /proc/sys/vm/watermark_scale_factor; \
         cat /proc/sys/vm/watermark_scale_factor",
    );
    let ctx = format!(
        "outcome {:?}\n--- last lines ---\n{}",
        r.outcome,
        r.tail(60)
    );
    // Failed commands make the run fail, but nothing crashes.
    assert_eq!(r.outcome, Outcome::KernelFailure, "{ctx}");
    assert!(!r.transcript.contains("FATAL"), "{ctx}");
    assert!(
        r.transcript.contains("script: 12 commands, 8 failed"),
        "{ctx}"
    );
    assert!(
        r.transcript
            .contains("min_free_kbytes=lots: 'lots' is not a number; ignored"),
        "{ctx}"
    );
    let out = |i: usize| cmds[i].output.join("\n");
    assert_eq!(out(0), "20", "{ctx}");
    assert!(
        out(1).contains("5000 is out of range; accepted: an integer from 1 to 3000"),
        "{ctx}"
    );
    assert!(out(2).contains("'abc' is not a number"), "{ctx}");
    assert!(out(3).contains("usage: echo VALUE > PATH"), "{ctx}");
    assert!(out(4).contains("too large"), "{ctx}");
    assert_eq!(out(5), "20", "{ctx}");
    assert!(out(6).contains("did you mean 'compact'"), "{ctx}");
    assert!(out(7).contains("usage: alloc ORDER [GFP]"), "{ctx}");
    assert!(out(8).contains("no such file or directory"), "{ctx}");
    assert!(out(9).contains("Permission denied"), "{ctx}");
    assert_eq!(out(10), "", "{ctx}");
    assert_eq!(out(11), "100", "{ctx}");
}
