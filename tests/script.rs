//! The serial console's batch mode, end to end: a script handed to the kernel through
//! fw_cfg runs command by command, each echoed after the prompt marker, and the machine
//! powers off with the verdict. The first test is the acceptance check (more
//! pageblock-sized free blocks after `compact` than after `frag`); the next two check the
//! positive paths (writing 1 to `compact_memory` and to `node0/compact` compacts; `alloc`,
//! `free`, `stress`, `ls` and `sleep` do what they print); the last feeds the console
//! mistakes and checks each is explained and changes nothing.

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

/// A vmstat value in a `cat /proc/vmstat` output, or in a delta of two.
fn vmstat_delta(before: &[String], after: &[String], name: &str) -> u64 {
    vmstat_value(after, name) - vmstat_value(before, name)
}

/// Pages compaction scanned other than kcompactd's between two vmstat outputs (kcompactd
/// counts its pages in both `compact_migrate_scanned` and `compact_daemon_*`).
fn explicit_compaction_scanned(before: &[String], after: &[String]) -> u64 {
    vmstat_delta(before, after, "compact_migrate_scanned")
        - vmstat_delta(before, after, "compact_daemon_migrate_scanned")
}

/// Run a script that must succeed as a whole; its commands, checked to be `expected`.
fn run_ok_script(cmdline: &str, script: &[&str]) -> (RunResult, Vec<ConsoleCommand>, String) {
    let (r, cmds) = run_script(cmdline, &script.join("; "));
    let ctx = format!(
        "outcome {:?}\n--- last lines ---\n{}",
        r.outcome,
        r.tail(60)
    );
    assert_eq!(r.outcome, Outcome::KernelSuccess, "{ctx}");
    assert!(!r.transcript.contains("FATAL"), "{ctx}");
    assert!(
        r.transcript
            .contains(&format!("script: {} commands, 0 failed", script.len())),
        "{ctx}"
    );
    let names: Vec<&str> = cmds.iter().map(|c| c.command.as_str()).collect();
    assert_eq!(names, script, "{ctx}");
    (r, cmds, ctx)
}

/// `echo 1 > /proc/sys/vm/compact_memory` and `echo 1 > /sys/devices/system/node/node0/compact`
/// each compact a freshly fragmented machine: compaction other than kcompactd's scans and
/// migrates pages, and more order-9/10 blocks are free afterwards. (Proactive compaction is
/// off so that kcompactd stays out of the way; its own work is subtracted anyway.)
#[test]
fn writing_1_to_compact_memory_and_node0_compact_compacts() {
    let script = [
        "frag",
        "cat /proc/buddyinfo",
        "cat /proc/vmstat",
        "echo 1 > /proc/sys/vm/compact_memory",
        "cat /proc/buddyinfo",
        "cat /proc/vmstat",
        "frag",
        "cat /proc/buddyinfo",
        "cat /proc/vmstat",
        "echo 1 > /sys/devices/system/node/node0/compact",
        "cat /proc/buddyinfo",
        "cat /proc/vmstat",
    ];
    let (_, cmds, ctx) = run_ok_script("compaction_proactiveness=0", &script);
    for (what, at) in [("compact_memory", 0), ("node0/compact", 6)] {
        let out = |i: usize| &cmds[at + i].output;
        let (before, after) = (huge_blocks(out(1)), huge_blocks(out(4)));
        let scanned = explicit_compaction_scanned(out(2), out(5));
        let migrated = vmstat_delta(out(2), out(5), "pgmigrate_success");
        println!(
            "{what}: order-9/10 free blocks {before} -> {after}; {scanned} pages scanned, {migrated} migrated"
        );
        println!("{}", out(3).join("\n"));
        assert!(
            out(3).iter().any(|l| l.starts_with("compact: ")),
            "{what} printed no compaction report\n{ctx}"
        );
        assert!(scanned > 0, "writing 1 to {what} ran no compaction\n{ctx}");
        assert!(migrated > 0, "{what} migrated nothing\n{ctx}");
        assert!(
            after > before,
            "{what} did not add order-9/10 blocks ({before} -> {after})\n{ctx}"
        );
    }
}

/// Sum over zones of a `/proc/zoneinfo` output of the free pages plus the pages on every
/// CPU's pcp lists (`MemFree` leaves the latter out, and a freed order-9 block may stay on
/// a pcp list).
fn free_and_pcp_pages(zoneinfo: &[String]) -> u64 {
    zoneinfo
        .iter()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("pages free")
                .or_else(|| l.strip_prefix("count:"))?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn meminfo_kb(meminfo: &[String], key: &str) -> u64 {
    meminfo
        .iter()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix(" kB")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {key} in {meminfo:?}"))
}

/// Free blocks of order 10, summed over the zones of a buddyinfo text.
fn order10_blocks(buddyinfo: &[String]) -> u64 {
    buddyinfo
        .iter()
        .filter_map(|l| l.split_whitespace().nth(14)?.parse::<u64>().ok())
        .sum()
}

fn pgalloc_pages(vmstat: &[String]) -> u64 {
    [
        "pgalloc_dma",
        "pgalloc_dma32",
        "pgalloc_normal",
        "pgalloc_movable",
    ]
    .iter()
    .map(|n| vmstat_value(vmstat, n))
    .sum()
}

/// The successful console commands, each checked by its output and its effect: `ls` lists
/// the tunables and the node directory, `alloc` takes exactly the pages it reports (MemFree,
/// buddyinfo, free + pcp pages), `free last` / `free all` give them back exactly, `stress`
/// leaves the free count as it was and the allocator's counters show its work, and `sleep`
/// waits at least as long as asked (a lower bound on the guest clock, not a timing test).
#[test]
fn console_alloc_free_stress_ls_sleep_do_what_they_say() {
    let script = [
        "ls /proc/sys/vm",
        "ls /sys/devices/system/node",
        "cat /proc/zoneinfo",
        "meminfo",
        "cat /proc/buddyinfo",
        "alloc 10",
        "meminfo",
        "cat /proc/buddyinfo",
        "alloc 9 GFP_HIGHUSER_MOVABLE",
        "cat /proc/zoneinfo",
        "free last",
        "free all",
        "cat /proc/zoneinfo",
        "free all",
        "cat /proc/vmstat",
        "stress",
        "cat /proc/vmstat",
        "cat /proc/uptime",
        "sleep 500",
        "cat /proc/uptime",
    ];
    let (_, cmds, ctx) = run_ok_script("compaction_proactiveness=0", &script);
    let out = |i: usize| &cmds[i].output;
    let line = |i: usize| out(i).join("\n");
    // ls
    assert_eq!(
        out(0),
        &[
            "compact_memory",
            "compact_unevictable_allowed",
            "compaction_proactiveness",
            "drop_caches",
            "extfrag_threshold",
            "lowmem_reserve_ratio",
            "min_free_kbytes",
            "percpu_pagelist_high_fraction",
            "watermark_boost_factor",
            "watermark_scale_factor",
        ],
        "{ctx}"
    );
    assert_eq!(out(1), &["node0/"], "{ctx}");
    // alloc 10: an order-10 block leaves the buddy lists directly (no pcp list at order 10).
    assert!(
        line(5).starts_with("allocated order 10 (GFP_KERNEL) at pfn 0x")
            && line(5).ends_with("holding 1 blocks, 1024 pages"),
        "{ctx}"
    );
    assert_eq!(
        meminfo_kb(out(6), "MemFree"),
        meminfo_kb(out(3), "MemFree") - 4096,
        "alloc 10 did not take 4 MiB\n{ctx}"
    );
    assert_eq!(
        order10_blocks(out(7)),
        order10_blocks(out(4)) - 1,
        "alloc 10 did not take one order-10 block\n{ctx}"
    );
    // alloc 9: 512 more pages gone from free + pcp.
    assert!(
        line(8).starts_with("allocated order 9 (GFP_HIGHUSER_MOVABLE) at pfn 0x")
            && line(8).ends_with("holding 2 blocks, 1536 pages"),
        "{ctx}"
    );
    let (held0, held2) = (free_and_pcp_pages(out(2)), free_and_pcp_pages(out(9)));
    assert_eq!(
        held2,
        held0 - 1536,
        "free + pcp pages after two allocs\n{ctx}"
    );
    // free last, free all: everything comes back; then there is nothing left to free.
    assert_eq!(
        line(10),
        "freed 1 blocks (512 pages); holding 1 blocks",
        "{ctx}"
    );
    assert_eq!(
        line(11),
        "freed 1 blocks (1024 pages); holding 0 blocks",
        "{ctx}"
    );
    assert_eq!(
        free_and_pcp_pages(out(12)),
        held0,
        "free all did not restore free + pcp pages\n{ctx}"
    );
    assert!(line(13).contains("nothing allocated"), "{ctx}");
    // stress: N operations = attempts + frees, every successful allocation freed once.
    let stress = line(15);
    let words: Vec<&str> = stress.split_whitespace().collect();
    let num_before = |w: &str| -> u64 {
        let i = words
            .iter()
            .position(|x| *x == w)
            .unwrap_or_else(|| panic!("'{w}' in {words:?}"));
        words[i - 1].parse().expect("number")
    };
    let (ops, refused, bad) = (
        num_before("operations"),
        num_before("allocations"),
        num_before("bad"),
    );
    assert!(
        stress.starts_with("stress: 2 CPUs, 40000 operations"),
        "{ctx}"
    );
    assert_eq!(bad, 0, "{ctx}");
    let before_after: Vec<&str> = ["before", "after"]
        .iter()
        .map(|w| words[words.iter().position(|x| x == w).unwrap() + 1])
        .collect();
    assert_eq!(before_after[0], before_after[1], "{ctx}");
    let frees = (ops - refused) / 2;
    let attempts = frees + refused;
    assert!(refused * 100 <= attempts, "more than 1% refused\n{ctx}");
    assert!(
        pgalloc_pages(out(16)) - pgalloc_pages(out(14)) >= frees,
        "pgalloc_* did not advance by the stress's {frees} allocations\n{ctx}"
    );
    assert!(
        vmstat_delta(out(14), out(16), "pgfree") >= frees,
        "pgfree did not advance by the stress's {frees} frees\n{ctx}"
    );
    // sleep 500: the guest clock advanced by at least that much.
    let uptime = |i: usize| -> f64 {
        line(i)
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .expect("uptime")
    };
    assert!(
        uptime(19) - uptime(17) >= 0.5 - 0.01,
        "sleep 500 returned after {:.2} s\n{ctx}",
        uptime(19) - uptime(17)
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

/// The contiguous-allocation commands and files: `cma` lists the area `cma=` declared
/// (a bad `cma=` before it is reported and ignored), `cma alloc`/`cma free` change the
/// debugfs `used` count, `contig` takes and frees a range, a memory block goes offline
/// and online through its `state` file, and every mistake gets the allocator's reason.
#[test]
fn cma_contig_and_memory_block_offline() {
    let mut cfg = config(Firmware::Bios, "512M", 2, "cma=lots cma=32M");
    let script = [
        "cma",
        "cma alloc reserved 4096",
        "cat /sys/kernel/debug/cma/reserved/used",
        "cma alloc reserved 9000",
        "cma alloc nosuch 1",
        "cma free",
        "cat /sys/kernel/debug/cma/reserved/used /sys/kernel/debug/cma/reserved/count",
        "contig 4096",
        "contig free",
        "cat /sys/devices/system/memory/block_size_bytes",
        "ls /sys/devices/system/memory",
        "cat /sys/devices/system/memory/memory2/state /sys/devices/system/memory/memory2/phys_index",
        "echo offline > /sys/devices/system/memory/memory2/state",
        "cat /sys/devices/system/memory/memory2/state",
        "echo offline > /sys/devices/system/memory/memory2/state",
        "cat /sys/devices/system/memory/memory2/valid_zones",
        "echo online_movable > /sys/devices/system/memory/memory2/state",
        "echo online > /sys/devices/system/memory/memory2/state",
        "echo online > /sys/devices/system/memory/memory2/state",
        "echo offline > /sys/devices/system/memory/memory99/state",
        "echo sideways > /sys/devices/system/memory/memory2/state",
        "cat /sys/devices/system/memory/memory0/valid_zones",
        "echo offline > /sys/devices/system/memory/memory0/state",
        "cat /proc/meminfo",
    ];
    cfg.script = Some(script.join("; "));
    let r = boot(&cfg);
    let cmds = console_commands(&r.transcript);
    let ctx = format!(
        "outcome {:?}\n--- last lines ---\n{}",
        r.outcome,
        r.tail(80)
    );
    assert!(!r.transcript.contains("FATAL"), "{ctx}");
    assert!(
        r.transcript
            .contains("cma=: expected SIZE or SIZE@START (like 64M@0x40000000); option ignored"),
        "{ctx}"
    );
    let names: Vec<&str> = cmds.iter().map(|c| c.command.as_str()).collect();
    assert_eq!(names, script, "{ctx}");
    assert!(
        r.transcript.contains("script: 24 commands, 8 failed"),
        "{ctx}"
    );
    assert_eq!(r.outcome, Outcome::KernelFailure, "{ctx}");
    let out = |i: usize| cmds[i].output.join("\n");
    for c in &cmds {
        println!("memkernel# {}\n{}", c.command, c.output.join("\n"));
    }
    assert!(out(0).contains("0 reserved: base pfn"), "{ctx}");
    assert!(
        out(0).contains("32 MiB (8192 pages), used 0 pages"),
        "{ctx}"
    );
    assert!(out(1).starts_with("cma: 4096 pages at pfn ["), "{ctx}");
    assert_eq!(out(2), "4096", "{ctx}");
    assert!(out(3).contains("bad request of 9000 pages"), "{ctx}");
    assert!(out(4).contains("no area 'nosuch'"), "{ctx}");
    assert_eq!(out(5), "cma: freed 1 ranges (4096 pages)", "{ctx}");
    assert_eq!(out(6), "0\n8192", "{ctx}");
    assert!(out(7).starts_with("contig: 4096 pages at pfn ["), "{ctx}");
    assert_eq!(out(8), "contig: freed 1 ranges (4096 pages)", "{ctx}");
    assert_eq!(out(9), "8000000", "{ctx}");
    assert_eq!(
        cmds[10].output,
        [
            "block_size_bytes",
            "memory0/",
            "memory1/",
            "memory2/",
            "memory3/"
        ],
        "{ctx}"
    );
    assert_eq!(out(11), "online\n00000002", "{ctx}");
    assert!(out(12).contains("memory2: offline in "), "{ctx}");
    assert_eq!(out(13), "offline", "{ctx}");
    assert!(out(14).contains("memory2: already offline"), "{ctx}");
    // Offline, the block may only go back to DMA32: this machine has no ZONE_MOVABLE.
    assert_eq!(out(15), "DMA32", "{ctx}");
    assert!(
        out(16).contains("memory2: cannot online into Movable: the zone had no memory at boot"),
        "{ctx}"
    );
    assert!(out(17).contains("memory2: online in "), "{ctx}");
    assert!(out(17).contains(" pages into DMA32"), "{ctx}");
    assert!(out(18).contains("is not offline"), "{ctx}");
    assert!(
        out(19).contains("memory99: no such file or directory"),
        "{ctx}"
    );
    assert!(
        out(20).contains("expected offline, online, online_kernel or online_movable"),
        "{ctx}"
    );
    assert_eq!(out(21), "none", "{ctx}");
    assert!(out(22).contains("spans several zones"), "{ctx}");
    assert!(out(23).contains("CmaTotal:          32768 kB"), "{ctx}");
}

/// With the ramdisk (`--ramdisk`): `ls /ramdisk` lists the image's files, `cat` prints a
/// text file and reads a binary one whole through the page cache (checked against the
/// image), which shows up as `nr_file_pages`; `drop_caches` and
/// `echo 1 > /proc/sys/vm/drop_caches` empty the cache again, counted in `drop_pagecache`.
#[test]
fn ramdisk_files_read_through_the_page_cache_and_drop() {
    let script = [
        "ls /ramdisk",
        "cat /ramdisk/hello.txt",
        "cat /ramdisk/data09.bin",
        "cat /proc/vmstat",
        "drop_caches",
        "cat /ramdisk/README",
        "echo 1 > /proc/sys/vm/drop_caches",
        "cat /proc/vmstat",
    ];
    let mut cfg = config(Firmware::Bios, "256M", 2, "");
    cfg.script = Some(script.join("; "));
    cfg.ramdisk = true;
    let r = boot(&cfg);
    let cmds = console_commands(&r.transcript);
    let ctx = format!(
        "outcome {:?}\n--- last lines ---\n{}",
        r.outcome,
        r.tail(60)
    );
    assert_eq!(r.outcome, Outcome::KernelSuccess, "{ctx}");
    assert!(
        r.transcript
            .contains(&format!("script: {} commands, 0 failed", script.len())),
        "{ctx}"
    );
    let out = |i: usize| &cmds[i].output;
    for name in [
        "README",
        "hello.txt",
        "data00.bin",
        "data09.bin",
        "small4.bin",
    ] {
        assert!(
            out(0).iter().any(|l| l == name),
            "ls /ramdisk: no {name}\n{ctx}"
        );
    }
    assert_eq!(
        out(1),
        &["Hello from the ramdisk, through the page cache."],
        "{ctx}"
    );
    assert!(
        out(2)
            .iter()
            .any(|l| l.starts_with("<binary file data09.bin: 1048576 bytes")
                && l.contains("matches the image")),
        "{ctx}"
    );
    assert!(vmstat_value(out(3), "nr_file_pages") >= 256, "{ctx}");
    assert!(
        out(4)
            .iter()
            .any(|l| l.starts_with("drop_caches: ") && l.contains("page-cache pages dropped")),
        "{ctx}"
    );
    assert!(
        out(5).iter().any(|l| l.starts_with("memkernel ramdisk")),
        "{ctx}"
    );
    assert_eq!(vmstat_value(out(7), "nr_file_pages"), 0, "{ctx}");
    assert_eq!(
        vmstat_value(out(7), "drop_pagecache") - vmstat_value(out(3), "drop_pagecache"),
        2,
        "{ctx}"
    );
}
