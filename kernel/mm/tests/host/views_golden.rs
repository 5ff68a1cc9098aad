//! Golden tests of the `/proc` and debugfs views on a simulated machine in a known state.
//!
//! The machine is QEMU's 64 MiB PC (`qemu_e820`) with 2 CPUs, built with the SMP
//! trampoline page and without the reserved first MiB ([`golden_params`]). The test first takes every
//! free page as an order-0 movable allocation (so no pageblock changes type), then frees a
//! chosen set of aligned blocks whose buddies it keeps, and drains the pcp lists: the free
//! lists then hold exactly the blocks below, known without asking the allocator.
//!
//! The expected texts are literals written from Linux's formats
//! (`linux-reference.md`, "Text formats") and numbers derived by hand:
//!
//! - Free pages: the handoff gives DMA pfns 1..0x9e and 0x100..0x1000 (3997 pages, its
//!   `managed`) and DMA32 0x1000..0x3dda (11738); memblock keeps the rest (pfn 0x9e for the
//!   SMP trampoline, QEMU's top 128 KiB and the memmap/usemaps at the top of DMA32). Frame 0
//!   and the legacy BIOS area are not RAM (`trim_bios_range`): DMA spans pfns 1..0x1000
//!   (4095) and 3998 of them are present, Linux's figures for this machine.
//! - DMA frees: order 0 at 1 and 0x9d, order 3 at 0x10, 64 order-1 blocks at 0x202 + 4k
//!   (buddies 0x200 + 4k kept), order 9 at 0xc00 (buddy 0xe00 kept): 650 pages.
//! - DMA32 frees: order 10 at 0x1000 and 0x1800, order 9 at 0x2000, order 2 at 0x2404,
//!   order 1 at 0x2412, order 0 at 0x2421/0x2423/0x2425 and at the 256 odd pfns of
//!   0x3400..0x3600, order 5 at 0x3000: 2857 pages.
//! - Watermarks: lowmem = 15735 pages = 62940 KiB; min_free_kbytes = isqrt(62940 * 16) =
//!   1003; pages_min = 250; DMA min = 250 * 3997 / 15735 = 63, DMA32 186; low = min +
//!   max(min / 4, managed * 10 / 10000): 78 and 232; high: 93 and 278. Movable (empty):
//!   min = clamp(0 / 1024, 32, 128) = 32, no spread.
//! - protection of DMA: DMA32's 11738 managed pages / 256 = 45 for every higher zone.
//! - pcp: batch = 1 for both zones (managed >> 12 is 0 and 2); high = max(low / 2 CPUs,
//!   4 * batch): 39 and 116; count 0 after the drain.
//! - meminfo: totalreserve = (45 + 93) + (0 + 278) = 416 pages; MemAvailable = free - 416.
//! - The extfrag/unusable indices and the scores were computed from the free counts with
//!   the formulas of the reference, outside this crate.

use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::page_alloc::gfp::Gfp;
use zonebuddy::port::sim::{SimAllocator, qemu_e820};

const BUDDYINFO: &str = concat!(
    "Node 0, zone      DMA      2     64      0      1      0      0      0      0      0      1      0 \n",
    "Node 0, zone    DMA32    259      1      1      0      0      1      0      0      0      1      2 \n",
);

const PAGETYPEINFO: &str = concat!(
    "Page block order: 9\n",
    "Pages per block:  512\n",
    "\n",
    "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
    "Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone      DMA, type      Movable      2     64      0      1      0      0      0      0      0      1      0 \n",
    "Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone      DMA, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone    DMA32, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone    DMA32, type      Movable    259      1      1      0      0      1      0      0      0      1      2 \n",
    "Node    0, zone    DMA32, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone    DMA32, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone    DMA32, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
    "Node    0, zone    DMA32, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
    "\n",
    "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n",
    "Node 0, zone      DMA            0            8            0            0            0            0 \n",
    "Node 0, zone    DMA32            0           24            0            0            0            0 \n",
);

const ZONEINFO: &str = concat!(
    "Node 0, zone      DMA\n",
    "  pages free     650\n",
    "        boost    0\n",
    "        min      63\n",
    "        low      78\n",
    "        high     93\n",
    "        spanned  4095\n",
    "        present  3998\n",
    "        managed  3997\n",
    "        cma      0\n",
    "        protection: (0, 45, 45, 45)\n",
    "      nr_free_pages 650\n",
    "      nr_free_cma  0\n",
    "  pagesets\n",
    "    cpu: 0\n",
    "              count: 0\n",
    "              high:  39\n",
    "              batch: 1\n",
    "    cpu: 1\n",
    "              count: 0\n",
    "              high:  39\n",
    "              batch: 1\n",
    "  node_unreclaimable:  0\n",
    "  start_pfn:           1\n",
    "  reserved_highatomic: 0\n",
    "  free_highatomic:     0\n",
    "Node 0, zone    DMA32\n",
    "  pages free     2857\n",
    "        boost    0\n",
    "        min      186\n",
    "        low      232\n",
    "        high     278\n",
    "        spanned  12256\n",
    "        present  12256\n",
    "        managed  11738\n",
    "        cma      0\n",
    "        protection: (0, 0, 0, 0)\n",
    "      nr_free_pages 2857\n",
    "      nr_free_cma  0\n",
    "  pagesets\n",
    "    cpu: 0\n",
    "              count: 0\n",
    "              high:  116\n",
    "              batch: 1\n",
    "    cpu: 1\n",
    "              count: 0\n",
    "              high:  116\n",
    "              batch: 1\n",
    "  node_unreclaimable:  0\n",
    "  start_pfn:           4096\n",
    "  reserved_highatomic: 0\n",
    "  free_highatomic:     0\n",
    "Node 0, zone   Normal\n",
    "  pages free     0\n",
    "        boost    0\n",
    "        min      0\n",
    "        low      0\n",
    "        high     0\n",
    "        spanned  0\n",
    "        present  0\n",
    "        managed  0\n",
    "        cma      0\n",
    "        protection: (0, 0, 0, 0)\n",
    "Node 0, zone  Movable\n",
    "  pages free     0\n",
    "        boost    0\n",
    "        min      32\n",
    "        low      32\n",
    "        high     32\n",
    "        spanned  0\n",
    "        present  0\n",
    "        managed  0\n",
    "        cma      0\n",
    "        protection: (0, 0, 0, 0)\n",
);

const MEMINFO: &str = concat!(
    "MemTotal:          62940 kB\n",
    "MemFree:           14028 kB\n",
    "MemAvailable:      12364 kB\n",
    "Cached:                0 kB\n",
    "Active(file):          0 kB\n",
    "Inactive(file):        0 kB\n",
    "Mapped:                0 kB\n",
);

const EXTFRAG_INDEX: &str = concat!(
    "Node 0, zone      DMA -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000  0.976 \n",
    "Node 0, zone    DMA32 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 \n",
);

const UNUSABLE_INDEX: &str = concat!(
    "Node 0, zone      DMA 0.000 0.003 0.200 0.200 0.212 0.212 0.212 0.212 0.212 0.212 1.000 \n",
    "Node 0, zone    DMA32 0.000 0.090 0.091 0.092 0.092 0.092 0.103 0.103 0.103 0.103 0.283 \n",
);

/// One character per pageblock: DMA block 0 holds pfn 0 (reserved) and scattered frees,
/// block 6 is the free order-9 block; in DMA32 blocks 0-1 and 4-5 are the order-10
/// blocks, 8 the order-9 block, and the last block is all memblock memory.
const PAGEBLOCK_MAP: &str = concat!(
    "Node 0, zone      DMA pfn 0 MMMMMMFM\n",
    "Node 0, zone    DMA32 pfn 4096 FFMMFFMMFMMMMMMMMMMMMMM.\n",
);

/// Zone scores: DMA (650 - 512) * 100 / 650 = 21, DMA32 (2857 - 2560) * 100 / 2857 = 10;
/// node: 3999 * 21 / 16256 + 12256 * 10 / 16256 = 5 + 7.
const FRAGMENTATION_SCORE: &str = concat!(
    "Node 0, zone      DMA  21\n",
    "Node 0, zone    DMA32  10\n",
    "Node 0, node score  12\n",
);

/// A fresh machine: everything free, only the hand-off counted (as `pgfree`).
const VMSTAT_FRESH: &str = concat!(
    "nr_free_pages 15735\n",
    "nr_free_cma 0\n",
    "numa_hit 0\n",
    "numa_miss 0\n",
    "numa_foreign 0\n",
    "numa_interleave 0\n",
    "numa_local 0\n",
    "numa_other 0\n",
    "nr_inactive_file 0\n",
    "nr_active_file 0\n",
    "nr_mapped 0\n",
    "nr_file_pages 0\n",
    "pgalloc_dma 0\n",
    "pgalloc_dma32 0\n",
    "pgalloc_normal 0\n",
    "pgalloc_movable 0\n",
    "allocstall_dma 0\n",
    "allocstall_dma32 0\n",
    "allocstall_normal 0\n",
    "allocstall_movable 0\n",
    "pgfree 15735\n",
    "pgactivate 0\n",
    "pgdeactivate 0\n",
    "pgfault 0\n",
    "pgmajfault 0\n",
    "pgrefill 0\n",
    "pgsteal_kswapd 0\n",
    "pgsteal_direct 0\n",
    "pgscan_kswapd 0\n",
    "pgscan_direct 0\n",
    "slabs_scanned 0\n",
    "kswapd_low_wmark_hit_quickly 0\n",
    "kswapd_high_wmark_hit_quickly 0\n",
    "pageoutrun 0\n",
    "drop_pagecache 0\n",
    "pgmigrate_success 0\n",
    "pgmigrate_fail 0\n",
    "compact_migrate_scanned 0\n",
    "compact_free_scanned 0\n",
    "compact_isolated 0\n",
    "compact_stall 0\n",
    "compact_fail 0\n",
    "compact_success 0\n",
    "compact_daemon_wake 0\n",
    "compact_daemon_migrate_scanned 0\n",
    "compact_daemon_free_scanned 0\n",
    "nr_tlb_remote_flush 0\n",
    "nr_tlb_remote_flush_received 0\n",
    "nr_tlb_local_flush_all 0\n",
    "nr_tlb_local_flush_one 0\n",
    "pcp_refill 0\n",
    "pcp_refill_pages 0\n",
    "pcp_drain 0\n",
    "pcp_drain_pages 0\n",
    "pcp_drain_remote 0\n",
    "pgalloc_fail 0\n",
    "pgalloc_invalid 0\n",
    "pgalloc_fallback 0\n",
    "pageblock_claim 0\n",
    "highatomic_reserve 0\n",
    "highatomic_unreserve 0\n",
    "watermark_boost 0\n",
    "compact_capture 0\n",
    "pgfree_rejected 0\n",
    "compact_deferred 0\n",
    "pgalloc_fail_injected 0\n",
    "pgunmap_reclaim 0\n",
    "pgmigrate_file_mapped 0\n",
);

/// The blocks freed, as `(pfn, order)`.
fn freed_blocks() -> Vec<(u64, u32)> {
    let mut v = vec![(0x1, 0), (0x9d, 0), (0x10, 3), (0xc00, 9)];
    v.extend((0..64).map(|k| (0x202 + 4 * k, 1)));
    v.extend([
        (0x1000, 10),
        (0x1800, 10),
        (0x2000, 9),
        (0x2404, 2),
        (0x2412, 1),
        (0x2421, 0),
        (0x2423, 0),
        (0x2425, 0),
        (0x3000, 5),
    ]);
    v.extend((0x3400..0x3600).filter(|p| p % 2 == 1).map(|p| (p, 0)));
    v
}

fn render(f: impl FnOnce(&mut String) -> core::fmt::Result) -> String {
    let mut s = String::new();
    f(&mut s).expect("formatting into a String cannot fail");
    s
}

/// Line-by-line comparison, so a failure names the first differing line.
#[track_caller]
fn assert_text(name: &str, got: &str, want: &str) {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{name}: line {} differs", i + 1);
    }
    assert_eq!(got, want, "{name}: line count or final newline differs");
}

/// The machine in the state described in the module documentation.
/// The parameters the figures above were derived with: the SMP trampoline page reserved
/// and no low-memory reservation, so that DMA's pages below 1 MiB are managed and the
/// scenario can free some there. (With the x86_64 default, the first MiB is reserved and
/// DMA manages 3840 pages, Linux's figure: `model::reserve_low_*` tests check that.)
fn golden_params() -> ModelParams<'static> {
    let mut params = ModelParams {
        reserve_trampoline: true,
        ..ModelParams::default()
    };
    params.arch.reserve_low = 0;
    params
}

fn machine_in_known_state() -> SimAllocator {
    let a = SimAllocator::build(&qemu_e820(64 << 20), &[], &golden_params(), 2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_text("fresh vmstat", &render(|s| a.write_vmstat(s)), VMSTAT_FRESH);
    // Movable and no reclaim: nothing steals a pageblock, nothing wakes compaction.
    let gfp = Gfp::HIGHMEM | Gfp::MOVABLE | Gfp::MEMALLOC | Gfp::NOWARN;
    let mut held = std::collections::BTreeSet::new();
    while let Some(p) = a.alloc_pages(gfp, 0) {
        held.insert(a.page_to_pfn(p));
    }
    a.drain_all_pages();
    assert_eq!(a.nr_free_pages(), 0);
    assert_eq!(held.len(), 15735);
    for (pfn, order) in freed_blocks() {
        for p in pfn..pfn + (1 << order) {
            assert!(held.remove(&p), "pfn {p:#x} was not handed out");
            let page = a.pfn_to_page(p).expect("valid pfn");
            a.free_pages(page, 0).expect("free of a held page");
        }
    }
    a.drain_all_pages();
    a
}

#[test]
fn views_match_linux_formats_exactly() {
    let a = machine_in_known_state();
    assert_text("buddyinfo", &render(|s| a.write_buddyinfo(s)), BUDDYINFO);
    assert_text(
        "pagetypeinfo",
        &render(|s| a.write_pagetypeinfo(s)),
        PAGETYPEINFO,
    );
    assert_text("zoneinfo", &render(|s| a.write_zoneinfo(s)), ZONEINFO);
    assert_text("meminfo", &render(|s| a.write_meminfo(s)), MEMINFO);
    assert_text(
        "extfrag_index",
        &render(|s| a.write_extfrag_index(s)),
        EXTFRAG_INDEX,
    );
    assert_text(
        "unusable_index",
        &render(|s| a.write_unusable_index(s)),
        UNUSABLE_INDEX,
    );
    assert_text(
        "pageblock_map",
        &render(|s| a.write_pageblock_map(s)),
        PAGEBLOCK_MAP,
    );
    assert_text(
        "fragmentation_score",
        &render(|s| a.write_fragmentation_score(s)),
        FRAGMENTATION_SCORE,
    );
}

/// `/proc/vmstat` after the known sequence: every page of both zones allocated once
/// (3997 from DMA, 11738 from DMA32, each a NUMA hit and local), 3507 pages freed on top of the hand-off's 15735,
/// one refused allocation (the one that ended the loop). Linux's names only: our own
/// counters (pcp refills and drains) depend on batch sizes tested elsewhere.
#[test]
fn vmstat_counts_the_known_sequence() {
    let a = machine_in_known_state();
    let text = render(|s| a.write_vmstat(s));
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} line in\n{text}"))
    };
    assert_eq!(value("nr_free_pages"), 650 + 2857);
    assert_eq!(value("pgalloc_dma"), 3997);
    assert_eq!(value("pgalloc_dma32"), 11738);
    assert_eq!(value("pgalloc_normal"), 0);
    assert_eq!(value("pgfree"), 15735 + 3507);
    assert_eq!(value("pgalloc_fail"), 1);
    assert_eq!(value("compact_stall"), 0);
    // One node, every allocation by a CPU of it: all hits, all local.
    assert_eq!(value("numa_hit"), 3997 + 11738);
    assert_eq!(value("numa_local"), 3997 + 11738);
    for name in ["numa_miss", "numa_foreign", "numa_interleave", "numa_other"] {
        assert_eq!(value(name), 0, "{name}");
    }
    for l in text.lines() {
        let (name, v) = l.split_once(' ').expect("name value");
        assert!(!name.is_empty() && v.parse::<u64>().is_ok(), "{l}");
    }
}

/// Every map row parses back: known symbols only, one per pageblock of the zone's span.
#[test]
fn pageblock_map_symbols_round_trip() {
    use zonebuddy::report::pageblock_map::BlockState;
    let a = machine_in_known_state();
    for row in render(|s| a.write_pageblock_map(s)).lines() {
        let map = row.rsplit(' ').next().unwrap();
        for c in map.chars() {
            let state = BlockState::from_symbol(c).unwrap_or_else(|| panic!("{c} in {row}"));
            assert_eq!(state.symbol(), c);
        }
    }
}
