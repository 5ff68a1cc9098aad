//! VM counters and the `/proc` text formats that report them.
//!
//! Two halves, both free of locks and live allocator structures:
//!
//! 1. **Vocabulary.** [`ZoneStatItem`] (per-zone page counts, Linux's `enum
//!    zone_stat_item`) and [`VmEvent`] (monotonic event counts, `enum vm_event_item`),
//!    with their exact `/proc/vmstat` names, in Linux's relative order, followed by a few
//!    clearly named counters of our own (pcp refills and drains, allocation failures,
//!    fallbacks, ...). Only names and indices live here; the per-CPU storage comes with the
//!    allocator, indexed by [`ZoneStatItem::index`] and [`VmEvent::index`].
//!
//! 2. **Formatters.** Each `/proc` file a Linux user already knows is produced from plain
//!    snapshot structs ([`ZoneSnapshot`], [`PagesetSnapshot`], [`MeminfoSnapshot`]) into
//!    any [`core::fmt::Write`]. The split is deliberate: a snapshot is a few hundred bytes
//!    of counters that can be copied from a zone in one short hold of its lock, while the
//!    text (tens of lines per zone) is produced afterwards without holding anything, so
//!    reading `/proc/zoneinfo` never stalls an allocating CPU. The output reproduces
//!    `mm/vmstat.c` field for field and column for column, so existing scripts and habits
//!    (`watch cat /proc/buddyinfo`) work unchanged:
//!    [`buddyinfo`], [`pagetypeinfo`], [`zoneinfo`], [`vmstat`], [`meminfo`], and the
//!    debugfs files [`extfrag_index`] and [`unusable_index`].
//!
//! Where our allocator has less than Linux (no LRU, no node statistics, no memory
//! tiering), the corresponding lines are omitted rather than faked: zoneinfo has
//! no `per-node stats` block and no `promo` line, and pagesets show the v6.6-era
//! `count`/`high`/`batch` triple. `/proc/pagetypeinfo` counts are exact (Linux stops
//! counting a list at 100000 and prints `>100000`).

#![deny(unsafe_code)]

use core::fmt::{self, Write};

use crate::model::mmzone::{
    MAX_NR_ZONES, MIGRATE_TYPES, Migratetype, NR_PAGE_ORDERS, PAGE_SHIFT, PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER, ZoneType,
};
use crate::page_alloc::watermark::{Watermarks, zone_reserve_pages};
use crate::report::fragmentation::{fragmentation_index, unusable_free_index};

/// Defines a counter enum with its `/proc/vmstat` names, the count constant and `ALL`.
macro_rules! counter_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident, count = $count:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        /// Number of items (the length of a counter array).
        pub const $count: usize = [$($text),*].len();

        impl $name {
            /// Every item, in `/proc/vmstat` order.
            pub const ALL: [$name; $count] = [$($name::$variant),*];

            /// The name printed in `/proc/vmstat` (and `/proc/zoneinfo`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }

            /// Index into a counter array.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

counter_enum! {
    /// Per-zone page counts (Linux's `enum zone_stat_item`; the subset this allocator
    /// maintains, in Linux's order). They are *levels*, not events: they go up and down.
    pub enum ZoneStatItem, count = NR_VM_ZONE_STAT_ITEMS {
        /// `nr_free_pages`: free pages in the buddy free lists (pcp pages not included).
        NrFreePages = "nr_free_pages",
        /// `nr_free_cma`: the subset of free pages in MIGRATE_CMA pageblocks.
        NrFreeCmaPages = "nr_free_cma",
    }
}

counter_enum! {
    /// NUMA allocation counters (Linux's `enum numa_stat_item`), counted per CPU and per
    /// zone by `zone_statistics` on every allocation and summed per zone, node or system.
    /// An allocation from the preferred node is a hit, from another node a miss (charged
    /// to the zone used) and a foreign allocation (charged to the preferred node's zone);
    /// independently it is local when the zone is on the allocating CPU's node, other
    /// otherwise.
    pub enum NumaEvent, count = NR_VM_NUMA_EVENT_ITEMS {
        /// `numa_hit`: allocated on the preferred node.
        NumaHit = "numa_hit",
        /// `numa_miss`: allocated here although another node was preferred.
        NumaMiss = "numa_miss",
        /// `numa_foreign`: preferred here, allocated on another node.
        NumaForeign = "numa_foreign",
        /// `numa_interleave`: interleaved allocations that got the node they asked for.
        NumaInterleave = "numa_interleave",
        /// `numa_local`: allocated on the allocating CPU's node.
        NumaLocal = "numa_local",
        /// `numa_other`: allocated on a node other than the allocating CPU's.
        NumaOther = "numa_other",
    }
}

impl NumaEvent {
    /// The name in `/sys/devices/system/node/nodeN/numastat` and `numastat`'s rows.
    pub const fn numastat_name(self) -> &'static str {
        match self {
            NumaEvent::NumaHit => "numa_hit",
            NumaEvent::NumaMiss => "numa_miss",
            NumaEvent::NumaForeign => "numa_foreign",
            NumaEvent::NumaInterleave => "interleave_hit",
            NumaEvent::NumaLocal => "local_node",
            NumaEvent::NumaOther => "other_node",
        }
    }
}

counter_enum! {
    /// Monotonic event counts (Linux's `enum vm_event_item`). Linux's items come first, in
    /// Linux's order; ours follow from [`VmEvent::FIRST_EXTENSION`] on. Page counts
    /// (`pgalloc_*`, `pgfree`) are in base pages, as in Linux.
    pub enum VmEvent, count = NR_VM_EVENT_ITEMS {
        /// `pgalloc_dma`: pages allocated from ZONE_DMA.
        PgallocDma = "pgalloc_dma",
        /// `pgalloc_dma32`: pages allocated from ZONE_DMA32.
        PgallocDma32 = "pgalloc_dma32",
        /// `pgalloc_normal`: pages allocated from ZONE_NORMAL.
        PgallocNormal = "pgalloc_normal",
        /// `pgalloc_movable`: pages allocated from ZONE_MOVABLE.
        PgallocMovable = "pgalloc_movable",
        /// `allocstall_dma`: direct reclaim/compaction stalls, highest zone DMA.
        AllocstallDma = "allocstall_dma",
        /// `allocstall_dma32`: stalls with highest zone DMA32.
        AllocstallDma32 = "allocstall_dma32",
        /// `allocstall_normal`: stalls with highest zone Normal.
        AllocstallNormal = "allocstall_normal",
        /// `allocstall_movable`: stalls with highest zone Movable.
        AllocstallMovable = "allocstall_movable",
        /// `pgfree`: pages freed.
        Pgfree = "pgfree",
        /// `pgactivate`: pages moved from the inactive to the active LRU list.
        Pgactivate = "pgactivate",
        /// `pgdeactivate`: pages moved from the active to the inactive LRU list.
        Pgdeactivate = "pgdeactivate",
        /// `pgfault`: page faults that mapped a page-cache page into a file window
        /// ([`crate::reclaim::mmap`]).
        Pgfault = "pgfault",
        /// `pgmajfault`: those of them that had to read the page from the backing store.
        Pgmajfault = "pgmajfault",
        /// `pgrefill`: pages scanned on the active LRU list.
        Pgrefill = "pgrefill",
        /// `pgsteal_kswapd`: pages reclaimed by kswapd.
        PgstealKswapd = "pgsteal_kswapd",
        /// `pgsteal_direct`: pages reclaimed by direct reclaim.
        PgstealDirect = "pgsteal_direct",
        /// `pgscan_kswapd`: inactive pages scanned by kswapd.
        PgscanKswapd = "pgscan_kswapd",
        /// `pgscan_direct`: inactive pages scanned by direct reclaim.
        PgscanDirect = "pgscan_direct",
        /// `slabs_scanned`: objects scanned by shrinkers.
        SlabsScanned = "slabs_scanned",
        /// `kswapd_low_wmark_hit_quickly`: kswapd woken again during its nap.
        KswapdLowWmarkHitQuickly = "kswapd_low_wmark_hit_quickly",
        /// `kswapd_high_wmark_hit_quickly`: the node unbalanced again when kswapd's nap
        /// ended.
        KswapdHighWmarkHitQuickly = "kswapd_high_wmark_hit_quickly",
        /// `pageoutrun`: kswapd balancing runs (`balance_pgdat`).
        Pageoutrun = "pageoutrun",
        /// `drop_pagecache`: writes of 1 to `drop_caches`.
        DropPagecache = "drop_pagecache",
        /// `pgmigrate_success`: pages migrated.
        PgmigrateSuccess = "pgmigrate_success",
        /// `pgmigrate_fail`: pages that could not be migrated.
        PgmigrateFail = "pgmigrate_fail",
        /// `compact_migrate_scanned`: pages the migration scanner looked at.
        CompactMigrateScanned = "compact_migrate_scanned",
        /// `compact_free_scanned`: pages the free scanner looked at.
        CompactFreeScanned = "compact_free_scanned",
        /// `compact_isolated`: pages isolated by either scanner.
        CompactIsolated = "compact_isolated",
        /// `compact_stall`: direct compaction runs by allocating tasks.
        CompactStall = "compact_stall",
        /// `compact_fail`: direct compaction runs that did not yield the page.
        CompactFail = "compact_fail",
        /// `compact_success`: direct compaction runs that yielded the page.
        CompactSuccess = "compact_success",
        /// `compact_daemon_wake`: kcompactd wake-ups.
        CompactDaemonWake = "compact_daemon_wake",
        /// `compact_daemon_migrate_scanned`: migration-scanner pages, kcompactd only.
        CompactDaemonMigrateScanned = "compact_daemon_migrate_scanned",
        /// `compact_daemon_free_scanned`: free-scanner pages, kcompactd only.
        CompactDaemonFreeScanned = "compact_daemon_free_scanned",
        /// `nr_tlb_remote_flush`: TLB shootdowns sent to other CPUs.
        NrTlbRemoteFlush = "nr_tlb_remote_flush",
        /// `nr_tlb_remote_flush_received`: TLB shootdowns received.
        NrTlbRemoteFlushReceived = "nr_tlb_remote_flush_received",
        /// `nr_tlb_local_flush_all`: full local TLB flushes.
        NrTlbLocalFlushAll = "nr_tlb_local_flush_all",
        /// `nr_tlb_local_flush_one`: single-page local TLB flushes.
        NrTlbLocalFlushOne = "nr_tlb_local_flush_one",
        /// Ours: pcp list refills from the buddy lists (`rmqueue_bulk` calls that moved pages).
        PcpRefill = "pcp_refill",
        /// Ours: pages moved to pcp lists by refills.
        PcpRefillPages = "pcp_refill_pages",
        /// Ours: pcp drains back to the buddy lists (`free_pcppages_bulk` calls).
        PcpDrain = "pcp_drain",
        /// Ours: pages returned to the buddy lists by drains.
        PcpDrainPages = "pcp_drain_pages",
        /// Ours: drains of another CPU's pcp lists (`drain_all_pages`).
        PcpDrainRemote = "pcp_drain_remote",
        /// Ours: allocations that failed and returned `None`.
        PgallocFail = "pgalloc_fail",
        /// Ours: allocation requests refused as impossible (bad GFP flags or order).
        PgallocInvalid = "pgalloc_invalid",
        /// Ours: allocations served by stealing from a pageblock of another migratetype.
        PgallocFallback = "pgalloc_fallback",
        /// Ours: fallbacks that claimed (repainted) a whole pageblock.
        PageblockClaim = "pageblock_claim",
        /// Ours: pageblocks moved into the MIGRATE_HIGHATOMIC reserve.
        HighatomicReserve = "highatomic_reserve",
        /// Ours: pageblocks released from the MIGRATE_HIGHATOMIC reserve.
        HighatomicUnreserve = "highatomic_unreserve",
        /// Ours: watermark boosts after fragmenting fallbacks.
        WatermarkBoost = "watermark_boost",
        /// Ours: pages handed straight to a compacting allocation (compaction capture).
        CompactCapture = "compact_capture",
        /// Ours: frees rejected as invalid (double free, bad page state, wrong order).
        PgfreeRejected = "pgfree_rejected",
        /// Ours: zones a direct compaction skipped because compaction there was deferred
        /// after recent failures (`compaction_deferred`).
        CompactDeferred = "compact_deferred",
        /// Ours: allocations (and compaction migration targets) failed on purpose by
        /// fault injection (`fail_page_alloc`); each is in `pgalloc_fail` too.
        PgallocFailInjected = "pgalloc_fail_injected",
        /// Ours: page-table entries of mapped page-cache pages that reclaim cleared before
        /// dropping the pages (`try_to_unmap` from `shrink_folio_list`).
        PgunmapReclaim = "pgunmap_reclaim",
        /// Ours: mapped page-cache pages migrated, their entries following the new frame.
        PgmigrateFileMapped = "pgmigrate_file_mapped",
    }
}

impl VmEvent {
    /// The first counter that Linux does not have.
    pub const FIRST_EXTENSION: VmEvent = VmEvent::PcpRefill;

    /// True for counters of our own (not in Linux's `/proc/vmstat`).
    pub const fn is_extension(self) -> bool {
        self as usize >= VmEvent::FIRST_EXTENSION as usize
    }

    /// `pgalloc_<zone>`: the per-zone allocation counter.
    pub const fn pgalloc(zone: ZoneType) -> VmEvent {
        match zone {
            ZoneType::Dma => VmEvent::PgallocDma,
            ZoneType::Dma32 => VmEvent::PgallocDma32,
            ZoneType::Normal => VmEvent::PgallocNormal,
            ZoneType::Movable => VmEvent::PgallocMovable,
        }
    }

    /// `allocstall_<zone>`: the stall counter for a request whose highest zone is `zone`.
    pub const fn allocstall(zone: ZoneType) -> VmEvent {
        match zone {
            ZoneType::Dma => VmEvent::AllocstallDma,
            ZoneType::Dma32 => VmEvent::AllocstallDma32,
            ZoneType::Normal => VmEvent::AllocstallNormal,
            ZoneType::Movable => VmEvent::AllocstallMovable,
        }
    }
}

/// One CPU's pcp state for a zone, as `/proc/zoneinfo` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagesetSnapshot {
    /// The CPU's id.
    pub cpu: u32,
    /// Pages on the CPU's lists for this zone.
    pub count: u64,
    /// Drain threshold.
    pub high: u64,
    /// Refill/drain batch.
    pub batch: u64,
    /// The per-CPU counter fold threshold, printed as `vm stats threshold` when known.
    pub stat_threshold: Option<u32>,
}

/// A copy of one zone's counters, cheap to take under the zone lock and formatted later.
///
/// Fields that cost a walk (`nr_pageblocks` reads the pageblock bitmap) may be filled
/// outside the lock; everything else is plain counters. The per-CPU pagesets are borrowed
/// from a caller-provided buffer so no allocation is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneSnapshot<'a> {
    /// Node id.
    pub node: u32,
    /// Zone type.
    pub zone: ZoneType,
    /// First pfn of the zone (`zone_start_pfn`).
    pub zone_start_pfn: u64,
    /// Pages spanned, holes included.
    pub spanned: u64,
    /// Pages present (RAM, holes excluded). A zone with none is unpopulated.
    pub present: u64,
    /// Pages managed by the buddy allocator.
    pub managed: u64,
    /// Pages in CMA areas.
    pub cma: u64,
    /// Watermarks and boost.
    pub watermarks: Watermarks,
    /// `lowmem_reserve[]`, printed as `protection`.
    pub protection: [u64; MAX_NR_ZONES],
    /// Zone counters, indexed by [`ZoneStatItem::index`].
    pub vm_stat: [u64; NR_VM_ZONE_STAT_ITEMS],
    /// Free blocks per migratetype and order: the length of each free list.
    pub nr_free: [[u64; NR_PAGE_ORDERS]; MIGRATE_TYPES],
    /// Pageblocks per migratetype (by the type stored in the pageblock bitmap).
    pub nr_pageblocks: [u64; MIGRATE_TYPES],
    /// Pages in pageblocks reserved as MIGRATE_HIGHATOMIC.
    pub nr_reserved_highatomic: u64,
    /// Free pages in MIGRATE_HIGHATOMIC pageblocks.
    pub nr_free_highatomic: u64,
    /// Whether reclaim has given up on the node (always false without a reclaimer).
    pub node_unreclaimable: bool,
    /// Per-CPU pagesets of the online CPUs, in CPU order.
    pub pagesets: &'a [PagesetSnapshot],
}

impl<'a> ZoneSnapshot<'a> {
    /// An empty (unpopulated) snapshot of `zone` on `node`; fill in what the zone has.
    pub const fn new(node: u32, zone: ZoneType) -> ZoneSnapshot<'a> {
        ZoneSnapshot {
            node,
            zone,
            zone_start_pfn: 0,
            spanned: 0,
            present: 0,
            managed: 0,
            cma: 0,
            watermarks: Watermarks {
                min: 0,
                low: 0,
                high: 0,
                boost: 0,
            },
            protection: [0; MAX_NR_ZONES],
            vm_stat: [0; NR_VM_ZONE_STAT_ITEMS],
            nr_free: [[0; NR_PAGE_ORDERS]; MIGRATE_TYPES],
            nr_pageblocks: [0; MIGRATE_TYPES],
            nr_reserved_highatomic: 0,
            nr_free_highatomic: 0,
            node_unreclaimable: false,
            pagesets: &[],
        }
    }

    /// Linux's `populated_zone`: the zone has present pages.
    pub const fn populated(&self) -> bool {
        self.present != 0
    }

    /// `NR_FREE_PAGES`.
    pub const fn free_pages(&self) -> u64 {
        self.vm_stat[ZoneStatItem::NrFreePages.index()]
    }

    /// Free blocks per order over all migratetypes (`free_area[order].nr_free`).
    pub fn nr_free_per_order(&self) -> [u64; NR_PAGE_ORDERS] {
        let mut total = [0u64; NR_PAGE_ORDERS];
        for per_type in &self.nr_free {
            for (t, &n) in total.iter_mut().zip(per_type) {
                *t = t.saturating_add(n);
            }
        }
        total
    }
}

/// Splits node-major zone snapshots into one slice per node (consecutive equal `node`).
fn by_node<'s, 'a>(zones: &'s [ZoneSnapshot<'a>]) -> impl Iterator<Item = &'s [ZoneSnapshot<'a>]> {
    zones.chunk_by(|a, b| a.node == b.node)
}

/// `/proc/buddyinfo`: one line per populated zone with its free block count per order.
///
/// ```text
/// Node 0, zone      DMA      1      1      0      0      2      1      1      0      1      1      3
/// ```
pub fn buddyinfo<W: Write + ?Sized>(w: &mut W, zones: &[ZoneSnapshot<'_>]) -> fmt::Result {
    for z in zones.iter().filter(|z| z.populated()) {
        write!(w, "Node {}, zone {:>8} ", z.node, z.zone.name())?;
        for n in z.nr_free_per_order() {
            write!(w, "{n:6} ")?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

/// `/proc/pagetypeinfo`: for each node with memory, the pageblock geometry, the free
/// block count per migratetype and order of each populated zone, and the number of
/// pageblocks of each migratetype.
pub fn pagetypeinfo<W: Write + ?Sized>(w: &mut W, zones: &[ZoneSnapshot<'_>]) -> fmt::Result {
    for node in by_node(zones) {
        if !node.iter().any(|z| z.populated()) {
            continue; // A memoryless node prints nothing.
        }
        writeln!(w, "Page block order: {PAGEBLOCK_ORDER}")?;
        writeln!(w, "Pages per block:  {PAGEBLOCK_NR_PAGES}")?;
        w.write_char('\n')?;

        write!(w, "{:<43} ", "Free pages count per migrate type at order")?;
        for order in 0..NR_PAGE_ORDERS {
            write!(w, "{order:6} ")?;
        }
        w.write_char('\n')?;
        for z in node.iter().filter(|z| z.populated()) {
            for mt in Migratetype::ALL {
                write!(
                    w,
                    "Node {:4}, zone {:>8}, type {:>12} ",
                    z.node,
                    z.zone.name(),
                    mt.name()
                )?;
                for n in z.nr_free[mt.index()] {
                    write!(w, "{n:6} ")?;
                }
                w.write_char('\n')?;
            }
        }

        write!(w, "\n{:<23}", "Number of blocks type ")?;
        for mt in Migratetype::ALL {
            write!(w, "{:>12} ", mt.name())?;
        }
        w.write_char('\n')?;
        for z in node.iter().filter(|z| z.populated()) {
            write!(w, "Node {}, zone {:>8} ", z.node, z.zone.name())?;
            for n in z.nr_pageblocks {
                write!(w, "{n:12} ")?;
            }
            w.write_char('\n')?;
        }
    }
    Ok(())
}

/// `/proc/zoneinfo`: every zone of every node, populated or not (the `protection` of an
/// empty zone still shows the effect of `lowmem_reserve_ratio`). Unpopulated zones stop
/// after the protection line.
pub fn zoneinfo<W: Write + ?Sized>(w: &mut W, zones: &[ZoneSnapshot<'_>]) -> fmt::Result {
    for z in zones {
        zoneinfo_zone(w, z)?;
    }
    Ok(())
}

/// One zone's `/proc/zoneinfo` block, with the pagesets of [`ZoneSnapshot::pagesets`].
fn zoneinfo_zone<W: Write + ?Sized>(w: &mut W, z: &ZoneSnapshot<'_>) -> fmt::Result {
    zoneinfo_zone_with(w, z, z.pagesets.iter().copied())
}

/// One zone's `/proc/zoneinfo` block with the per-CPU pagesets given by an iterator
/// instead of [`ZoneSnapshot::pagesets`] (which is ignored), so a caller can produce them
/// one CPU at a time without a buffer for all of them.
pub fn zoneinfo_zone_with<W: Write + ?Sized>(
    w: &mut W,
    z: &ZoneSnapshot<'_>,
    pagesets: impl IntoIterator<Item = PagesetSnapshot>,
) -> fmt::Result {
    let wm = &z.watermarks;
    write!(w, "Node {}, zone {:>8}", z.node, z.zone.name())?;
    write!(w, "\n  pages free     {}", z.free_pages())?;
    write!(w, "\n        boost    {}", wm.boost)?;
    write!(w, "\n        min      {}", wm.min_wmark_pages())?;
    write!(w, "\n        low      {}", wm.low_wmark_pages())?;
    write!(w, "\n        high     {}", wm.high_wmark_pages())?;
    write!(w, "\n        spanned  {}", z.spanned)?;
    write!(w, "\n        present  {}", z.present)?;
    write!(w, "\n        managed  {}", z.managed)?;
    write!(w, "\n        cma      {}", z.cma)?;
    write!(w, "\n        protection: ({}", z.protection[0])?;
    for p in &z.protection[1..] {
        write!(w, ", {p}")?;
    }
    w.write_char(')')?;
    if !z.populated() {
        return w.write_char('\n');
    }
    for item in ZoneStatItem::ALL {
        write!(w, "\n      {:<12} {}", item.name(), z.vm_stat[item.index()])?;
    }
    w.write_str("\n  pagesets")?;
    for p in pagesets {
        write!(w, "\n    cpu: {}", p.cpu)?;
        write!(w, "\n              count: {}", p.count)?;
        write!(w, "\n              high:  {}", p.high)?;
        write!(w, "\n              batch: {}", p.batch)?;
        if let Some(t) = p.stat_threshold {
            write!(w, "\n  vm stats threshold: {t}")?;
        }
    }
    write!(
        w,
        "\n  node_unreclaimable:  {}",
        u8::from(z.node_unreclaimable)
    )?;
    write!(w, "\n  start_pfn:           {}", z.zone_start_pfn)?;
    write!(w, "\n  reserved_highatomic: {}", z.nr_reserved_highatomic)?;
    write!(w, "\n  free_highatomic:     {}", z.nr_free_highatomic)?;
    w.write_char('\n')
}

/// `/proc/vmstat`: `name value` per line, zone counters (summed over zones) first, then
/// the NUMA counters, then events (summed over CPUs), as Linux orders them.
pub fn vmstat<W: Write + ?Sized>(
    w: &mut W,
    zone_stats: &[u64; NR_VM_ZONE_STAT_ITEMS],
    numa: &[u64; NR_VM_NUMA_EVENT_ITEMS],
    events: &[u64; NR_VM_EVENT_ITEMS],
) -> fmt::Result {
    for item in ZoneStatItem::ALL {
        writeln!(w, "{} {}", item.name(), zone_stats[item.index()])?;
    }
    for ev in NumaEvent::ALL {
        writeln!(w, "{} {}", ev.name(), numa[ev.index()])?;
    }
    for ev in VmEvent::ALL {
        writeln!(w, "{} {}", ev.name(), events[ev.index()])?;
    }
    Ok(())
}

/// `/proc/vmstat` in full, in Linux's order: the zone counters, the NUMA counters, the
/// node counters of the page cache (`nr_inactive_file`, `nr_active_file`, `nr_mapped`,
/// `nr_file_pages`, in Linux's order, where Linux prints its node stats), then the
/// events.
pub fn vmstat_with_lru<W: Write + ?Sized>(
    w: &mut W,
    zone_stats: &[u64; NR_VM_ZONE_STAT_ITEMS],
    numa: &[u64; NR_VM_NUMA_EVENT_ITEMS],
    lru: &crate::reclaim::lru::LruSizes,
    events: &[u64; NR_VM_EVENT_ITEMS],
) -> fmt::Result {
    for item in ZoneStatItem::ALL {
        writeln!(w, "{} {}", item.name(), zone_stats[item.index()])?;
    }
    for ev in NumaEvent::ALL {
        writeln!(w, "{} {}", ev.name(), numa[ev.index()])?;
    }
    writeln!(w, "nr_inactive_file {}", lru.inactive_file)?;
    writeln!(w, "nr_active_file {}", lru.active_file)?;
    writeln!(w, "nr_mapped {}", lru.mapped)?;
    writeln!(w, "nr_file_pages {}", lru.file_pages)?;
    for ev in VmEvent::ALL {
        writeln!(w, "{} {}", ev.name(), events[ev.index()])?;
    }
    Ok(())
}

/// The page-cache lines of `/proc/meminfo`, in Linux's order:
///
/// ```text
/// Cached:            51200 kB
/// Active(file):      20480 kB
/// Inactive(file):    30720 kB
/// Mapped:             8192 kB
/// ```
pub fn meminfo_lru<W: Write + ?Sized>(
    w: &mut W,
    lru: &crate::reclaim::lru::LruSizes,
) -> fmt::Result {
    show_val_kb(w, "Cached:", lru.file_pages)?;
    show_val_kb(w, "Active(file):", lru.active_file)?;
    show_val_kb(w, "Inactive(file):", lru.inactive_file)?;
    show_val_kb(w, "Mapped:", lru.mapped)
}

/// The inputs of the `/proc/meminfo` lines we can produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeminfoSnapshot {
    /// Managed pages of all zones (`totalram_pages`).
    pub totalram_pages: u64,
    /// Free pages of all zones (global `NR_FREE_PAGES`).
    pub free_pages: u64,
    /// Pages held back by watermarks and lowmem reserves (`totalreserve_pages`).
    pub totalreserve_pages: u64,
    /// Pages in CMA pageblocks (`totalcma_pages`, `CmaTotal`).
    pub cma_total: u64,
    /// Free pages in CMA pageblocks (`NR_FREE_CMA_PAGES`, `CmaFree`).
    pub cma_free: u64,
    /// The low watermarks of all zones summed (`wmark_low` in `si_mem_available`).
    pub wmark_low: u64,
    /// Page-cache pages on the file LRU lists, active and inactive
    /// ([`crate::reclaim::lru`]): what reclaim could give back.
    pub file_lru_pages: u64,
}

impl MeminfoSnapshot {
    /// Sums the zone snapshots: managed pages, free pages, and each zone's reserve term
    /// ([`zone_reserve_pages`] from its high watermark and `protection`).
    pub fn from_zones(zones: &[ZoneSnapshot<'_>]) -> MeminfoSnapshot {
        zones.iter().fold(MeminfoSnapshot::default(), |acc, z| {
            let reserve = zone_reserve_pages(
                z.zone,
                z.managed,
                z.watermarks.high_wmark_pages(),
                &z.protection,
            );
            MeminfoSnapshot {
                totalram_pages: acc.totalram_pages.saturating_add(z.managed),
                free_pages: acc.free_pages.saturating_add(z.free_pages()),
                totalreserve_pages: acc.totalreserve_pages.saturating_add(reserve),
                cma_total: acc.cma_total.saturating_add(z.cma),
                cma_free: acc
                    .cma_free
                    .saturating_add(z.vm_stat[ZoneStatItem::NrFreeCmaPages.index()]),
                wmark_low: acc.wmark_low.saturating_add(z.watermarks.low_wmark_pages()),
                file_lru_pages: acc.file_lru_pages,
            }
        })
    }
}

/// Linux's `si_mem_available`: an estimate of the memory that can be allocated without
/// swapping. Free pages, minus the pages the allocator will not hand out without reclaim
/// (`totalreserve_pages`), plus the page cache on the file LRU lists minus what must stay
/// cached: half of the cache, or the zones' low watermarks if that is less (reclaiming
/// below them would only make kswapd work). Linux also adds reclaimable slab and other
/// reclaimable kernel memory by the same rule; this allocator has none. Never negative.
pub const fn si_mem_available(
    free_pages: u64,
    totalreserve_pages: u64,
    file_lru_pages: u64,
    wmark_low: u64,
) -> u64 {
    let half = file_lru_pages / 2;
    let kept = if half < wmark_low { half } else { wmark_low };
    (free_pages + file_lru_pages - kept).saturating_sub(totalreserve_pages)
}

/// One `/proc/meminfo` line: label left-aligned in 15 columns and a space (Linux's
/// 16-character label field), the value in KiB right-aligned in 8, then ` kB`.
fn show_val_kb<W: Write + ?Sized>(w: &mut W, label: &str, pages: u64) -> fmt::Result {
    let kb = pages.saturating_mul(1 << (PAGE_SHIFT - 10));
    writeln!(w, "{label:<15} {kb:>8} kB")
}

/// The `MemTotal`, `MemFree` and `MemAvailable` lines of `/proc/meminfo`:
///
/// ```text
/// MemTotal:        8048292 kB
/// MemFree:         7616560 kB
/// MemAvailable:    7583708 kB
/// ```
///
/// With CMA areas declared ([`crate::movement::cma`]), `CmaTotal` and `CmaFree` follow (a
/// kernel without areas prints them as Linux without `CONFIG_CMA` does: not at all).
pub fn meminfo<W: Write + ?Sized>(w: &mut W, m: &MeminfoSnapshot) -> fmt::Result {
    show_val_kb(w, "MemTotal:", m.totalram_pages)?;
    show_val_kb(w, "MemFree:", m.free_pages)?;
    show_val_kb(
        w,
        "MemAvailable:",
        si_mem_available(
            m.free_pages,
            m.totalreserve_pages,
            m.file_lru_pages,
            m.wmark_low,
        ),
    )?;
    if m.cma_total != 0 {
        show_val_kb(w, "CmaTotal:", m.cma_total)?;
        show_val_kb(w, "CmaFree:", m.cma_free)?;
    }
    Ok(())
}

/// `/sys/kernel/debug/extfrag/extfrag_index`: per populated zone, the fragmentation index
/// of each order as `%2d.%03d` (so -1000, "a block is free", prints as `-1.000`).
pub fn extfrag_index<W: Write + ?Sized>(w: &mut W, zones: &[ZoneSnapshot<'_>]) -> fmt::Result {
    for z in zones.iter().filter(|z| z.populated()) {
        write!(w, "Node {}, zone {:>8} ", z.node, z.zone.name())?;
        let nr_free = z.nr_free_per_order();
        for order in 0..NR_PAGE_ORDERS as u32 {
            let index = fragmentation_index(order, &nr_free).unwrap_or(0);
            write!(w, "{:2}.{:03} ", index / 1000, index % 1000)?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

/// `/sys/kernel/debug/extfrag/unusable_index`: per populated zone, the unusable free
/// space index of each order as `%d.%03d`.
pub fn unusable_index<W: Write + ?Sized>(w: &mut W, zones: &[ZoneSnapshot<'_>]) -> fmt::Result {
    for z in zones.iter().filter(|z| z.populated()) {
        write!(w, "Node {}, zone {:>8} ", z.node, z.zone.name())?;
        let nr_free = z.nr_free_per_order();
        for order in 0..NR_PAGE_ORDERS as u32 {
            let index = unusable_free_index(order, &nr_free).unwrap_or(1000);
            write!(w, "{}.{:03} ", index / 1000, index % 1000)?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    use super::*;
    use crate::model::mmzone::PAGES_PER_SECTION;

    // Expected text generated independently with C printf semantics from the same data
    // (Linux's format strings from mm/vmstat.c and fs/proc/meminfo.c).
    const BUDDYINFO: &str = concat!(
        "Node 0, zone      DMA      1      1      0      0      2      1      1      0      1      1      3 \n",
        "Node 0, zone    DMA32 1234695     72      9      9      9      9      1      0      0  98766    656 \n",
        "Node 1, zone   Normal     12      2      2      2      2      2      2      2      2      2    500 \n",
    );

    const PAGETYPEINFO: &str = concat!(
        "Page block order: 9\n",
        "Pages per block:  512\n",
        "\n",
        "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
        "Node    0, zone      DMA, type    Unmovable      1      1      0      0      2      1      1      0      1      0      0 \n",
        "Node    0, zone      DMA, type      Movable      0      0      0      0      0      0      0      0      0      1      3 \n",
        "Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    0, zone      DMA, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    0, zone    DMA32, type    Unmovable    123     45      6      7      8      9      1      0      0      0      0 \n",
        "Node    0, zone    DMA32, type      Movable 1234567     23      0      0      0      0      0      0      0  98765    654 \n",
        "Node    0, zone    DMA32, type  Reclaimable      5      4      3      2      1      0      0      0      0      0      0 \n",
        "Node    0, zone    DMA32, type   HighAtomic      0      0      0      0      0      0      0      0      0      1      0 \n",
        "Node    0, zone    DMA32, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    0, zone    DMA32, type      Isolate      0      0      0      0      0      0      0      0      0      0      2 \n",
        "\n",
        "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n",
        "Node 0, zone      DMA            1            7            0            0            0            0 \n",
        "Node 0, zone    DMA32           12         1398            3            1            0            2 \n",
        "Page block order: 9\n",
        "Pages per block:  512\n",
        "\n",
        "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
        "Node    1, zone   Normal, type    Unmovable     10      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    1, zone   Normal, type      Movable      2      2      2      2      2      2      2      2      2      2    500 \n",
        "Node    1, zone   Normal, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    1, zone   Normal, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    1, zone   Normal, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
        "Node    1, zone   Normal, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
        "\n",
        "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n",
        "Node 1, zone   Normal            0         1008            0            0            0            0 \n",
    );

    const ZONEINFO: &str = concat!(
        "Node 0, zone      DMA\n",
        "  pages free     3971\n",
        "        boost    0\n",
        "        min      5\n",
        "        low      8\n",
        "        high     11\n",
        "        spanned  4095\n",
        "        present  3998\n",
        "        managed  3976\n",
        "        cma      0\n",
        "        protection: (0, 2815, 7844, 7844)\n",
        "      nr_free_pages 3971\n",
        "      nr_free_cma  0\n",
        "  pagesets\n",
        "    cpu: 0\n",
        "              count: 0\n",
        "              high:  4\n",
        "              batch: 1\n",
        "  vm stats threshold: 2\n",
        "    cpu: 1\n",
        "              count: 3\n",
        "              high:  4\n",
        "              batch: 1\n",
        "  vm stats threshold: 2\n",
        "  node_unreclaimable:  0\n",
        "  start_pfn:           1\n",
        "  reserved_highatomic: 0\n",
        "  free_highatomic:     0\n",
        "Node 0, zone    DMA32\n",
        "  pages free     52475379\n",
        "        boost    512\n",
        "        min      1528\n",
        "        low      2248\n",
        "        high     2968\n",
        "        spanned  1044480\n",
        "        present  782303\n",
        "        managed  720847\n",
        "        cma      0\n",
        "        protection: (0, 0, 5028, 5028)\n",
        "      nr_free_pages 52475379\n",
        "      nr_free_cma  0\n",
        "  pagesets\n",
        "    cpu: 0\n",
        "              count: 61\n",
        "              high:  432\n",
        "              batch: 63\n",
        "    cpu: 1\n",
        "              count: 0\n",
        "              high:  432\n",
        "              batch: 63\n",
        "  node_unreclaimable:  0\n",
        "  start_pfn:           4096\n",
        "  reserved_highatomic: 512\n",
        "  free_highatomic:     512\n",
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
        "Node 1, zone      DMA\n",
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
        "Node 1, zone    DMA32\n",
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
        "Node 1, zone   Normal\n",
        "  pages free     514056\n",
        "        boost    0\n",
        "        min      700\n",
        "        low      1216\n",
        "        high     1732\n",
        "        spanned  524288\n",
        "        present  524288\n",
        "        managed  516000\n",
        "        cma      0\n",
        "        protection: (0, 0, 0, 0)\n",
        "      nr_free_pages 514056\n",
        "      nr_free_cma  0\n",
        "  pagesets\n",
        "    cpu: 2\n",
        "              count: 17\n",
        "              high:  258\n",
        "              batch: 63\n",
        "  vm stats threshold: 6\n",
        "  node_unreclaimable:  0\n",
        "  start_pfn:           1048576\n",
        "  reserved_highatomic: 0\n",
        "  free_highatomic:     0\n",
        "Node 1, zone  Movable\n",
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

    const EXTFRAG: &str = concat!(
        "Node 0, zone      DMA -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 \n",
        "Node 0, zone    DMA32 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 \n",
        "Node 1, zone   Normal -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 \n",
    );

    const UNUSABLE: &str = concat!(
        "Node 0, zone      DMA 0.000 0.000 0.000 0.000 0.000 0.008 0.016 0.032 0.032 0.097 0.226 \n",
        "Node 0, zone    DMA32 0.000 0.023 0.023 0.023 0.023 0.023 0.023 0.023 0.023 0.023 0.987 \n",
        "Node 1, zone   Normal 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.001 0.002 0.003 \n",
    );

    const MEMINFO: &str = concat!(
        "MemTotal:        4963292 kB\n",
        "MemFree:        211973624 kB\n",
        "MemAvailable:   211918808 kB\n",
    );

    const EXTFRAG_FRAGMENTED: &str = concat!(
        "Node 0, zone      DMA -1.000  0.-500  0.-250  0.-125  0.-62  0.-31  0.-15  0.-07  0.-03  0.-01  0.000 \n",
        "Node 0, zone    DMA32 -1.000 -1.000 -1.000 -1.000  0.925  0.962  0.981  0.990  0.995  0.997  0.999 \n",
        "Node 0, zone   Normal -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000  0.-500 \n",
        "Node 0, zone  Movable  0.000  0.000  0.000  0.000  0.000  0.000  0.000  0.000  0.000  0.000  0.000 \n",
    );

    const UNUSABLE_FRAGMENTED: &str = concat!(
        "Node 0, zone      DMA 0.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 \n",
        "Node 0, zone    DMA32 0.000 0.690 0.966 0.994 1.000 1.000 1.000 1.000 1.000 1.000 1.000 \n",
        "Node 0, zone   Normal 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 1.000 \n",
        "Node 0, zone  Movable 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 \n",
    );

    const ZERO_ORDERS: [u64; NR_PAGE_ORDERS] = [0; NR_PAGE_ORDERS];

    fn free_pages_of(nr_free: &[[u64; NR_PAGE_ORDERS]; MIGRATE_TYPES]) -> u64 {
        nr_free
            .iter()
            .flat_map(|t| t.iter().enumerate())
            .map(|(o, &n)| n << o)
            .sum()
    }

    fn wm(min: u64, low: u64, high: u64, boost: u64) -> Watermarks {
        Watermarks {
            min,
            low,
            high,
            boost,
        }
    }

    fn ps(cpu: u32, count: u64, high: u64, batch: u64, t: Option<u32>) -> PagesetSnapshot {
        PagesetSnapshot {
            cpu,
            count,
            high,
            batch,
            stat_threshold: t,
        }
    }

    const DMA_PCP: [PagesetSnapshot; 2] = [
        PagesetSnapshot {
            cpu: 0,
            count: 0,
            high: 4,
            batch: 1,
            stat_threshold: Some(2),
        },
        PagesetSnapshot {
            cpu: 1,
            count: 3,
            high: 4,
            batch: 1,
            stat_threshold: Some(2),
        },
    ];

    fn fill(z: &mut ZoneSnapshot<'_>, nr_free: [[u64; NR_PAGE_ORDERS]; MIGRATE_TYPES]) {
        z.nr_free = nr_free;
        z.vm_stat[ZoneStatItem::NrFreePages.index()] = free_pages_of(&nr_free);
    }

    /// Node 0: DMA and DMA32 populated, Normal and Movable empty; node 1: only Normal.
    fn fixture<'a>(
        dma32_pcp: &'a [PagesetSnapshot],
        n1_pcp: &'a [PagesetSnapshot],
    ) -> Vec<ZoneSnapshot<'a>> {
        let mut dma = ZoneSnapshot::new(0, ZoneType::Dma);
        dma.zone_start_pfn = 1;
        dma.spanned = 4095;
        dma.present = 3998;
        dma.managed = 3976;
        dma.watermarks = wm(5, 8, 11, 0);
        dma.protection = [0, 2815, 7844, 7844];
        fill(
            &mut dma,
            [
                [1, 1, 0, 0, 2, 1, 1, 0, 1, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3],
                ZERO_ORDERS,
                ZERO_ORDERS,
                ZERO_ORDERS,
                ZERO_ORDERS,
            ],
        );
        dma.nr_pageblocks = [1, 7, 0, 0, 0, 0];
        dma.pagesets = &DMA_PCP;

        let mut dma32 = ZoneSnapshot::new(0, ZoneType::Dma32);
        dma32.zone_start_pfn = 4096;
        dma32.spanned = 1_044_480;
        dma32.present = 782_303;
        dma32.managed = 720_847;
        dma32.watermarks = wm(1016, 1736, 2456, 512);
        dma32.protection = [0, 0, 5028, 5028];
        fill(
            &mut dma32,
            [
                [123, 45, 6, 7, 8, 9, 1, 0, 0, 0, 0],
                [1_234_567, 23, 0, 0, 0, 0, 0, 0, 0, 98_765, 654],
                [5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                ZERO_ORDERS,
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ],
        );
        dma32.nr_pageblocks = [12, 1398, 3, 1, 0, 2];
        dma32.nr_reserved_highatomic = 512;
        dma32.nr_free_highatomic = 512;
        dma32.pagesets = dma32_pcp;

        let n0_normal = ZoneSnapshot::new(0, ZoneType::Normal);
        let mut n0_movable = ZoneSnapshot::new(0, ZoneType::Movable);
        n0_movable.watermarks = wm(32, 32, 32, 0);

        let mut n1_normal = ZoneSnapshot::new(1, ZoneType::Normal);
        n1_normal.zone_start_pfn = 1_048_576;
        n1_normal.spanned = 524_288;
        n1_normal.present = 524_288;
        n1_normal.managed = 516_000;
        n1_normal.watermarks = wm(700, 1216, 1732, 0);
        fill(
            &mut n1_normal,
            [
                [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 500],
                ZERO_ORDERS,
                ZERO_ORDERS,
                ZERO_ORDERS,
                ZERO_ORDERS,
            ],
        );
        n1_normal.nr_pageblocks = [0, 1008, 0, 0, 0, 0];
        n1_normal.pagesets = n1_pcp;
        let mut n1_movable = ZoneSnapshot::new(1, ZoneType::Movable);
        n1_movable.watermarks = wm(32, 32, 32, 0);

        std::vec![
            dma,
            dma32,
            n0_normal,
            n0_movable,
            ZoneSnapshot::new(1, ZoneType::Dma),
            ZoneSnapshot::new(1, ZoneType::Dma32),
            n1_normal,
            n1_movable,
        ]
    }

    fn render(f: impl FnOnce(&mut String) -> fmt::Result) -> String {
        let mut s = String::new();
        f(&mut s).unwrap();
        s
    }

    fn with_fixture(check: impl FnOnce(&[ZoneSnapshot<'_>])) {
        let dma32_pcp = [ps(0, 61, 432, 63, None), ps(1, 0, 432, 63, None)];
        let n1_pcp = [ps(2, 17, 258, 63, Some(6))];
        let zones = fixture(&dma32_pcp, &n1_pcp);
        check(&zones);
    }

    #[test]
    fn buddyinfo_golden() {
        with_fixture(|zones| {
            assert_eq!(render(|s| buddyinfo(s, zones)), BUDDYINFO);
        });
    }

    #[test]
    fn pagetypeinfo_golden() {
        with_fixture(|zones| {
            assert_eq!(render(|s| pagetypeinfo(s, zones)), PAGETYPEINFO);
        });
    }

    #[test]
    fn zoneinfo_golden() {
        with_fixture(|zones| {
            assert_eq!(render(|s| zoneinfo(s, zones)), ZONEINFO);
        });
    }

    #[test]
    fn debugfs_indices_golden() {
        with_fixture(|zones| {
            assert_eq!(render(|s| extfrag_index(s, zones)), EXTFRAG);
            assert_eq!(render(|s| unusable_index(s, zones)), UNUSABLE);
        });
        let mut zones = [
            ZoneSnapshot::new(0, ZoneType::Dma),
            ZoneSnapshot::new(0, ZoneType::Dma32),
            ZoneSnapshot::new(0, ZoneType::Normal),
            ZoneSnapshot::new(0, ZoneType::Movable),
        ];
        for z in zones.iter_mut() {
            z.present = 1;
        }
        zones[0].nr_free[0][0] = 1;
        zones[1].nr_free[0][..4].copy_from_slice(&[1000, 200, 10, 1]);
        zones[2].nr_free[0][9] = 1;
        assert_eq!(render(|s| extfrag_index(s, &zones)), EXTFRAG_FRAGMENTED);
        assert_eq!(render(|s| unusable_index(s, &zones)), UNUSABLE_FRAGMENTED);
    }

    #[test]
    fn meminfo_golden() {
        with_fixture(|zones| {
            let m = MeminfoSnapshot::from_zones(zones);
            assert_eq!(
                m,
                MeminfoSnapshot {
                    totalram_pages: 1_240_823,
                    free_pages: 52_993_406,
                    totalreserve_pages: 13_704,
                    wmark_low: zones.iter().map(|z| z.watermarks.low_wmark_pages()).sum(),
                    ..MeminfoSnapshot::default()
                }
            );
            assert_eq!(render(|s| meminfo(s, &m)), MEMINFO);
        });
        let m = MeminfoSnapshot {
            totalram_pages: 2_012_073,
            free_pages: 1_904_140,
            totalreserve_pages: 8_213,
            ..MeminfoSnapshot::default()
        };
        assert_eq!(
            render(|s| meminfo(s, &m)),
            "MemTotal:        8048292 kB\nMemFree:         7616560 kB\nMemAvailable:    7583708 kB\n"
        );
        // MemAvailable never goes negative.
        assert_eq!(si_mem_available(10, 20, 0, 0), 0);
        // Page cache counts, less half of it or the low watermarks, whichever is less
        // (worked by hand from Linux's formula): 1000 free, 100 reserved, 600 cached with
        // low marks 200 -> 1000 - 100 + 600 - min(300, 200) = 1300; with low marks 500,
        // half the cache (300) stays: 1200.
        assert_eq!(si_mem_available(1000, 100, 600, 200), 1300);
        assert_eq!(si_mem_available(1000, 100, 600, 500), 1200);
        assert_eq!(si_mem_available(10, 20, 60, 100), 20);
        assert_eq!(si_mem_available(10, 50, 60, 100), 0);
        let m = MeminfoSnapshot {
            totalram_pages: 1,
            free_pages: 0,
            totalreserve_pages: 5,
            ..MeminfoSnapshot::default()
        };
        assert_eq!(
            render(|s| meminfo(s, &m)),
            "MemTotal:              4 kB\nMemFree:               0 kB\nMemAvailable:          0 kB\n"
        );
    }

    #[test]
    fn vmstat_names_and_order() {
        let names: Vec<&str> = VmEvent::ALL.iter().map(|e| e.name()).collect();
        let linux_compaction = [
            "compact_migrate_scanned",
            "compact_free_scanned",
            "compact_isolated",
            "compact_stall",
            "compact_fail",
            "compact_success",
            "compact_daemon_wake",
            "compact_daemon_migrate_scanned",
            "compact_daemon_free_scanned",
        ];
        let start = names
            .iter()
            .position(|n| *n == linux_compaction[0])
            .unwrap();
        assert_eq!(&names[start..start + 9], &linux_compaction);
        assert_eq!(
            &names[..9],
            &[
                "pgalloc_dma",
                "pgalloc_dma32",
                "pgalloc_normal",
                "pgalloc_movable",
                "allocstall_dma",
                "allocstall_dma32",
                "allocstall_normal",
                "allocstall_movable",
                "pgfree"
            ]
        );
        // Indices are positions; names are unique; extensions come last.
        for (i, e) in VmEvent::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(names.iter().filter(|n| **n == e.name()).count(), 1);
            assert_eq!(e.is_extension(), i >= VmEvent::FIRST_EXTENSION.index());
        }
        assert!(!VmEvent::CompactDaemonFreeScanned.is_extension());
        assert!(VmEvent::PcpRefill.is_extension());
        assert_eq!(VmEvent::pgalloc(ZoneType::Dma32), VmEvent::PgallocDma32);
        assert_eq!(
            VmEvent::allocstall(ZoneType::Movable),
            VmEvent::AllocstallMovable
        );
        assert_eq!(NR_VM_ZONE_STAT_ITEMS, 2);
        assert_eq!(ZoneStatItem::ALL[0].name(), "nr_free_pages");

        let mut zone_stats = [0u64; NR_VM_ZONE_STAT_ITEMS];
        zone_stats[ZoneStatItem::NrFreePages.index()] = 1_904_140;
        let mut events = [0u64; NR_VM_EVENT_ITEMS];
        events[VmEvent::PgallocNormal.index()] = 123_456_789_012;
        events[VmEvent::CompactStall.index()] = 7;
        let mut numa = [0u64; NR_VM_NUMA_EVENT_ITEMS];
        numa[NumaEvent::NumaHit.index()] = 42;
        numa[NumaEvent::NumaOther.index()] = 5;
        let text = render(|s| vmstat(s, &zone_stats, &numa, &events));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            NR_VM_ZONE_STAT_ITEMS + NR_VM_NUMA_EVENT_ITEMS + NR_VM_EVENT_ITEMS
        );
        assert_eq!(lines[0], "nr_free_pages 1904140");
        assert_eq!(lines[1], "nr_free_cma 0");
        // Linux's order: zone items, the NUMA items, then the events.
        assert_eq!(
            &lines[2..8],
            [
                "numa_hit 42",
                "numa_miss 0",
                "numa_foreign 0",
                "numa_interleave 0",
                "numa_local 0",
                "numa_other 5"
            ]
        );
        assert_eq!(lines[8], "pgalloc_dma 0");
        assert_eq!(lines[10], "pgalloc_normal 123456789012");
        assert!(lines.contains(&"compact_stall 7"));
        assert!(text.ends_with(
            "compact_deferred 0\npgalloc_fail_injected 0\npgunmap_reclaim 0\npgmigrate_file_mapped 0\n"
        ));
        assert!(text.contains("\npgfault 0\npgmajfault 0\npgrefill 0\n"));
    }

    #[test]
    fn snapshot_helpers() {
        let mut z = ZoneSnapshot::new(3, ZoneType::Normal);
        assert!(!z.populated());
        z.present = PAGES_PER_SECTION;
        assert!(z.populated());
        z.nr_free[Migratetype::Movable.index()][10] = u64::MAX;
        z.nr_free[Migratetype::Unmovable.index()][10] = 5;
        assert_eq!(z.nr_free_per_order()[10], u64::MAX);
        // Formatting into a dyn Write works too.
        let mut s = String::new();
        let w: &mut dyn Write = &mut s;
        buddyinfo(w, core::slice::from_ref(&z)).unwrap();
        assert!(s.starts_with("Node 3, zone   Normal      0 "));
        assert!(s.ends_with(" 18446744073709551615 \n"));
        // Nothing populated: nothing printed, no panic.
        let empty = [ZoneSnapshot::new(0, ZoneType::Dma)];
        assert_eq!(render(|s| pagetypeinfo(s, &empty)), "");
        assert_eq!(render(|s| buddyinfo(s, &[])), "");
    }
}
