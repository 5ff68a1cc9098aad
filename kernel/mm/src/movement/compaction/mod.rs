//! Memory compaction (Linux: `mm/compaction.c`): moving movable pages out of the way so
//! that free pages merge into the large blocks a high-order allocation needs.
//!
//! # Why
//!
//! The buddy allocator keeps free memory in naturally aligned blocks, and anti-fragmentation
//! keeps unmovable allocations in their own pageblocks, but a machine that has run for a
//! while still ends up with its free memory scattered as single pages between pages that are
//! in use. Reclaim cannot help (it frees more scattered pages). Compaction can, for the pages
//! that can be moved: anon "user memory" ([`crate::movement::rmap`]) and pages with
//! `movable_operations` ([`crate::movement::migrate`]). Moving them is the job of
//! [`PageAllocator::migrate_pages`]; this module decides *which* pages move *where*.
//!
//! # The two scanners
//!
//! ```text
//!  zone_start_pfn                                                        zone_end_pfn
//!  |  migrate scanner ──▶                                    ◀── free scanner  |
//!  [used|free|used used|used free free|  ...  |free used free|used free free ]
//!     isolate_migratepages: in-use movable        isolate_freepages: free pages,
//!     pages, COMPACT_CLUSTER_MAX at a time        split to order 0 = migration targets
//! ```
//!
//! [`compact_zone`](PageAllocator) runs a *migration scanner* from the bottom of the zone
//! upwards and a *free scanner* from the top downwards, one pageblock at a time. The first
//! isolates up to [`COMPACT_CLUSTER_MAX`] movable pages (`isolate_migratepages_block`), the
//! second takes free blocks off the buddy lists and splits them into order-0 targets
//! (`isolate_freepages_block`), and `migrate_pages` copies each source into a target
//! ([`compaction_alloc`](PageAllocator) hands out targets, [`compaction_free`](PageAllocator)
//! takes back unused ones). Sources are freed as they are migrated, so the bottom of the zone
//! empties and merges into large blocks while the top fills up. The run ends when the
//! scanners meet, or earlier when `compact_finished` sees that the allocation that asked for
//! compaction can now succeed. Unused targets go back to the buddy lists
//! (`release_freepages`).
//!
//! Before the linear scans, both scanners search the free lists for good candidates, as
//! Linux does: `fast_find_migrateblock` picks a source pageblock that already has free
//! pages (fewer pages to move before it is empty), `fast_isolate_freepages` picks free
//! pages high in the zone (so targets do not become sources later). Both bound their
//! search (`freelist_scan_limit`) and rotate the lists they searched so the next search
//! starts with blocks they have not looked at.
//!
//! # Remembering work between runs
//!
//! Rescanning a zone from scratch for every failed allocation would make compaction cost
//! O(zone) per attempt, so three kinds of hints persist (in [`crate::model::zone::ZoneCompaction`]
//! and the pageblock bitmap):
//!
//! - **cached scanner positions**: a run resumes where the last one stopped (separately for
//!   async and sync migration scanners), until the scanners meet and they are reset;
//! - **skip bits** (`PB_migrate_skip`): a pageblock scanned completely without isolating
//!   anything, or one a compactor has started isolating from, is skipped by later runs until
//!   the hints are reset (`__reset_isolation_suitable`: when compaction restarts after the
//!   longest deferral, or when kcompactd goes to sleep after a direct compaction went through
//!   the whole zone). Full-priority and manual compaction ignore them;
//! - **deferral** ([`crate::report::fragmentation::CompactDefer`]): after a failure at some order, the next `1 <<
//!   defer_shift` attempts at that order or higher skip the zone.
//!
//! # Entry points
//!
//! - direct compaction from the allocator's slow path (`__alloc_pages_direct_compact` in
//!   [`crate::page_alloc`]) through `try_to_compact_pages`, at a [`CompactPriority`] that
//!   escalates from async to sync; counted as `compact_stall` / `compact_success` /
//!   `compact_fail`;
//! - [`PageAllocator::compact_memory`] and [`PageAllocator::compact_node`]: everything,
//!   synchronously, ignoring the hints, until the scanners meet (`/proc/sys/vm/compact_memory`);
//! - kcompactd ([`crate::movement::kcompactd`]): woken after high-order allocation failures, and
//!   proactively when a node's fragmentation score gets too high.
//!
//! # Capture
//!
//! While a direct compaction of order N runs on a CPU, another allocation could take the
//! block it has just freed. Linux closes that window with a *capture*: the compacting task
//! publishes what it wants, and the free path (`__free_one_page`), on reaching a block of
//! exactly order N in the zone being compacted, hands it over instead of putting it on a
//! free list. Here the "task" is the CPU: each CPU has one [`CaptureControl`] slot, armed
//! and disarmed by that CPU with interrupts disabled, and consulted only by frees running on
//! that same CPU (under the zone lock, hence with interrupts disabled too). A capture can
//! therefore only ever be consumed by the CPU that armed it, even when an interrupt handler
//! frees the block.
//!
//! # Locking
//!
//! The scanners take the zone lock only around free-list work, a few pages at a time
//! (dropping it every [`COMPACT_CLUSTER_MAX`] pfns); the migration scanner takes no zone
//! lock at all. `migrate_pages` (which flushes TLBs and may wait on page locks) is always
//! called with interrupts enabled and no spinlock held. The deferral state has its own leaf
//! spinlock, never held while taking another lock.
//!
//! # Not modelled
//!
//! There is no unevictable (mlocked) memory in this kernel, so
//! `vm.compact_unevictable_allowed` is validated and stored but has no effect. There is no
//! kswapd: kcompactd is woken straight from the allocation slow path, and the skip hints are
//! reset when kcompactd (rather than kswapd) goes to sleep.

use core::cell::RefCell;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use crate::model::list::PageList;
use crate::model::mmzone::{
    MAX_NR_ZONES, MAX_PAGE_ORDER, Migratetype, NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
};
use crate::model::page::{Page, PageFlags};
use crate::model::pageblock::{clear_pageblock_skip, get_pageblock_skip, set_pageblock_skip};
use crate::model::zone::Zone;
use crate::movement::migrate::{MigrateMode, MigrateReason};
use crate::page_alloc::bad_page::page_ok_at_alloc;
use crate::page_alloc::gfp::{AllocFlags, GFP_KERNEL, Gfp, gfp_migratetype};
use crate::page_alloc::sysctl::{SysctlError, VmSysctl};
use crate::page_alloc::watermark::zone_watermark_ok;
use crate::page_alloc::{AllocContext, PageAllocator};
use crate::port::platform::{LocalIrqGuard, Platform};
use crate::port::sync::SpinLockGuard;
use crate::report::fragmentation::{
    CompactSuitable, compaction_watermark, fragmentation_index,
    fragmentation_score_node as score_node, fragmentation_score_wmark, fragmentation_score_zone,
};
use crate::report::vmstat::VmEvent;

/// Pages the migration scanner isolates before migrating them (`COMPACT_CLUSTER_MAX`, which
/// is `SWAP_CLUSTER_MAX` in Linux); also how often the free scanner drops the zone lock.
pub const COMPACT_CLUSTER_MAX: u64 = 32;
/// Direct compaction retries in the slow path before the priority is raised
/// (`MAX_COMPACT_RETRIES`); a quarter of it for costly orders.
pub const MAX_COMPACT_RETRIES: u32 = 16;
/// How often kcompactd checks the fragmentation score (`HPAGE_FRAG_CHECK_INTERVAL_MSEC`).
pub const HPAGE_FRAG_CHECK_INTERVAL_MSEC: u64 = 500;
/// [`PageAllocator::kcompactd_run`]'s answer when there is nothing to do until woken
/// (Linux's `MAX_SCHEDULE_TIMEOUT`).
pub const KCOMPACTD_SLEEP_FOREVER: u64 = u64::MAX;

/// How hard direct compaction tries (`enum compact_priority`); lower is harder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactPriority {
    /// Synchronous, whole zone, ignores skip bits (`COMPACT_PRIO_SYNC_FULL`).
    SyncFull = 0,
    /// Synchronous light (`COMPACT_PRIO_SYNC_LIGHT`, the default).
    SyncLight = 1,
    /// Asynchronous (`COMPACT_PRIO_ASYNC`, the first try).
    Async = 2,
}

impl CompactPriority {
    /// The hardest priority (`MIN_COMPACT_PRIORITY`).
    pub const MIN: CompactPriority = CompactPriority::SyncFull;
    /// The hardest priority costly orders escalate to (`MIN_COMPACT_COSTLY_PRIORITY`):
    /// a full synchronous pass for one huge page is not worth its latency.
    pub const MIN_COSTLY: CompactPriority = CompactPriority::SyncLight;
    /// The slow path's default (`DEF_COMPACT_PRIORITY`).
    pub const DEF: CompactPriority = CompactPriority::SyncLight;
    /// The first, optimistic try (`INIT_COMPACT_PRIORITY`).
    pub const INIT: CompactPriority = CompactPriority::Async;

    /// The migration mode a direct compaction at this priority uses.
    pub const fn migrate_mode(self) -> MigrateMode {
        match self {
            CompactPriority::Async => MigrateMode::Async,
            CompactPriority::SyncLight => MigrateMode::SyncLight,
            CompactPriority::SyncFull => MigrateMode::Sync,
        }
    }

    /// One step harder, if there is one.
    const fn harder(self) -> Option<CompactPriority> {
        match self {
            CompactPriority::Async => Some(CompactPriority::SyncLight),
            CompactPriority::SyncLight => Some(CompactPriority::SyncFull),
            CompactPriority::SyncFull => None,
        }
    }
}

/// Outcome of a compaction run (`enum compact_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactResult {
    /// Compaction did not run: not enough free memory (`COMPACT_SKIPPED`).
    Skipped,
    /// Deferred after recent failures (`COMPACT_DEFERRED`).
    Deferred,
    /// Not attempted: the order is not high enough (`COMPACT_NOT_SUITABLE_ZONE`).
    NotSuitableZone,
    /// More work possible; ran out of time or hit contention (`COMPACT_CONTINUE`).
    Continue,
    /// Scanners met after scanning the whole zone (`COMPACT_COMPLETE`).
    Complete,
    /// Scanners met, but the zone was not scanned fully (`COMPACT_PARTIAL_SKIPPED`).
    PartialSkipped,
    /// Stopped early because of lock contention or a fatal condition (`COMPACT_CONTENDED`).
    Contended,
    /// A suitable page is now free (`COMPACT_SUCCESS`).
    Success,
}

/// What a manual or daemon compaction run did, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Pages the migration scanner looked at.
    pub migrate_scanned: u64,
    /// Pages the free scanner looked at.
    pub free_scanned: u64,
    /// Pages isolated by either scanner.
    pub isolated: u64,
    /// Pages migrated.
    pub migrated: u64,
    /// Pages that failed to migrate.
    pub failed: u64,
}

impl CompactStats {
    fn add(&mut self, o: &CompactStats) {
        self.migrate_scanned += o.migrate_scanned;
        self.free_scanned += o.free_scanned;
        self.isolated += o.isolated;
        self.migrated += o.migrated;
        self.failed += o.failed;
    }
}

/// A snapshot of one zone's compaction state (what
/// [`PageAllocator::write_compaction_state`] prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneCompactState {
    /// Node id.
    pub nid: usize,
    /// Zone.
    pub zone: ZoneType,
    /// `compact_considered`.
    pub considered: u32,
    /// `compact_defer_shift`.
    pub defer_shift: u32,
    /// `compact_order_failed`.
    pub order_failed: u32,
    /// Where the async and sync migration scanners restart.
    pub cached_migrate_pfn: [u64; 2],
    /// Where the free scanner restarts.
    pub cached_free_pfn: u64,
    /// Pageblocks of the zone whose skip bit is set.
    pub skip_blocks: u64,
    /// Pageblocks of the zone.
    pub pageblocks: u64,
}

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Public API.
    // ---------------------------------------------------------------------------------

    /// Compact every zone of every node, synchronously and completely
    /// (`echo 1 > /proc/sys/vm/compact_memory`).
    pub fn compact_memory(&self) -> CompactStats {
        let mut total = CompactStats::default();
        for nid in self.online_nodes() {
            if let Some(s) = self.compact_node(nid) {
                total.add(&s);
            }
        }
        total
    }

    /// Compact every zone of node `nid` (`echo 1 > /sys/devices/system/node/nodeN/compact`).
    /// None if there is no such node.
    pub fn compact_node(&self, nid: usize) -> Option<CompactStats> {
        let node = self.model().node(nid)?;
        let s = self.sysctl();
        let mut total = CompactStats::default();
        for zt in ZoneType::ALL {
            if let Some(stats) = self.compact_whole_zone(node.zone(zt), &s) {
                total.add(&stats);
            }
        }
        // Pages freed by migration sit on this CPU's pcp lists; give them back so they
        // merge and the result is visible in the buddy lists (Linux leaves them there).
        self.drain_all_pages();
        Some(total)
    }

    /// Compact one zone of node `nid` the way [`PageAllocator::compact_node`] compacts
    /// each of its zones: synchronously, ignoring the hints, until the scanners meet.
    /// Pages only move inside the zone. None if the node or a populated, managed zone of
    /// that type does not exist. For a caller that wants one zone's memory defragmented
    /// (ZONE_MOVABLE before a hot-remove, say) without paying for the whole node.
    pub fn compact_node_zone(&self, nid: usize, zt: ZoneType) -> Option<CompactStats> {
        let zone = self.model().node(nid)?.zone(zt);
        let stats = self.compact_whole_zone(zone, &self.sysctl())?;
        // As compact_node: freed pages back from the pcp lists, so that they merge.
        self.drain_all_pages();
        Some(stats)
    }

    /// One manual compaction run over the whole of `zone`; None if it has no managed
    /// memory.
    fn compact_whole_zone(&self, zone: &Zone, s: &VmSysctl) -> Option<CompactStats> {
        if !zone.populated() || !zone.managed_zone() {
            return None;
        }
        let mut cc = CompactControl::new(zone, -1, GFP_KERNEL, MigrateMode::Sync, s);
        cc.ignore_skip_hint = true;
        cc.whole_zone = true;
        self.compact_zone(&mut cc);
        Some(cc.stats)
    }

    /// Node `nid`'s fragmentation score (`fragmentation_score_node`), 0..=100.
    pub fn fragmentation_score_node(&self, nid: usize) -> u32 {
        let Some(node) = self.model().node(nid) else {
            return 0;
        };
        score_node(
            node.node_present_pages(),
            node.node_zones
                .iter()
                .filter(|z| z.managed_zone())
                .map(|z| {
                    (
                        z.present_pages(),
                        fragmentation_score_zone(&self.zone_nr_free(z)),
                    )
                }),
        )
    }

    /// `vm.compaction_proactiveness`, 0..=100. Enabling it asks every node's kcompactd to
    /// check its score at once (`compaction_proactiveness_sysctl_handler`).
    pub fn set_compaction_proactiveness(&self, v: u64) -> Result<(), SysctlError> {
        VmSysctl::check_compaction_proactiveness(v)?;
        self.update_sysctl(|s| s.compaction_proactiveness = v);
        if v != 0 {
            for nid in self.online_nodes() {
                if let Some(node) = self.model().node(nid)
                    && !node
                        .kcompactd
                        .proactive_trigger
                        .swap(true, Ordering::Relaxed)
                {
                    self.platform().wake_kcompactd(nid);
                }
            }
        }
        Ok(())
    }

    /// `vm.extfrag_threshold`, 0..=1000.
    pub fn set_extfrag_threshold(&self, v: u64) -> Result<(), SysctlError> {
        VmSysctl::check_extfrag_threshold(v)?;
        self.update_sysctl(|s| s.extfrag_threshold = v);
        Ok(())
    }

    /// `vm.compact_unevictable_allowed`, 0 or 1. Stored and reported; this kernel has no
    /// unevictable (mlocked) pages, so it changes nothing yet.
    pub fn set_compact_unevictable_allowed(&self, v: u64) -> Result<(), SysctlError> {
        VmSysctl::check_compact_unevictable_allowed(v)?;
        self.update_sysctl(|s| s.compact_unevictable_allowed = v);
        Ok(())
    }

    /// The compaction state of zone `zt` of node `nid`, if the zone is populated.
    pub fn compaction_state(&self, nid: usize, zt: ZoneType) -> Option<ZoneCompactState> {
        let zone = self.zone_of(nid, zt)?;
        if !zone.populated() {
            return None;
        }
        let d = *zone.compact.defer.lock_irqsave(self.platform());
        let c = &zone.compact;
        let mut skip_blocks = 0;
        let mut pageblocks = 0;
        let mut pfn = pageblock_start_pfn(zone.zone_start_pfn());
        while pfn < zone.zone_end_pfn() {
            if let Ok(skip) = get_pageblock_skip(self.model().sparse(), pfn) {
                pageblocks += 1;
                skip_blocks += skip as u64;
            }
            pfn += PAGEBLOCK_NR_PAGES;
        }
        Some(ZoneCompactState {
            nid,
            zone: zt,
            considered: d.considered,
            defer_shift: d.defer_shift,
            order_failed: d.order_failed,
            cached_migrate_pfn: [
                c.cached_migrate_pfn[0].load(Ordering::Relaxed),
                c.cached_migrate_pfn[1].load(Ordering::Relaxed),
            ],
            cached_free_pfn: c.cached_free_pfn.load(Ordering::Relaxed),
            skip_blocks,
            pageblocks,
        })
    }

    /// Per-zone compaction state, one line per populated zone:
    /// `Node %d, zone %8s considered %u defer_shift %u order_failed %u` plus the cached
    /// scanner positions. Exposed by the kernel as /sys/kernel/debug/compaction/zones.
    ///
    /// The positions follow as ` migrate_pfn %#x/%#x free_pfn %#x skip %u/%u`: the async
    /// and sync migration scanners' restart pfns, the free scanner's, and how many of the
    /// zone's pageblocks have their skip bit set.
    pub fn write_compaction_state(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        for nid in self.online_nodes() {
            for zt in ZoneType::ALL {
                let Some(s) = self.compaction_state(nid, zt) else {
                    continue;
                };
                writeln!(
                    out,
                    "Node {}, zone {:>8} considered {} defer_shift {} order_failed {} migrate_pfn {:#x}/{:#x} free_pfn {:#x} skip {}/{}",
                    nid,
                    zt.name(),
                    s.considered,
                    s.defer_shift,
                    s.order_failed,
                    s.cached_migrate_pfn[0],
                    s.cached_migrate_pfn[1],
                    s.cached_free_pfn,
                    s.skip_blocks,
                    s.pageblocks,
                )?;
            }
        }
        Ok(())
    }
}

mod compact_zone;
mod control;
mod defer;
mod direct;
mod free_scanner;
mod hints;
mod migrate_scanner;
mod suitable;

pub use crate::page_alloc::capture::CaptureControl;
pub(crate) use crate::page_alloc::capture::NO_CAPTURE;
pub(crate) use control::CompactControl;
use control::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_escalate_and_map_to_modes() {
        assert!(CompactPriority::SyncFull < CompactPriority::SyncLight);
        assert_eq!(
            CompactPriority::INIT.harder(),
            Some(CompactPriority::SyncLight)
        );
        assert_eq!(CompactPriority::MIN.harder(), None);
        assert_eq!(CompactPriority::Async.migrate_mode(), MigrateMode::Async);
        assert_eq!(
            CompactPriority::SyncLight.migrate_mode(),
            MigrateMode::SyncLight
        );
        assert_eq!(CompactPriority::SyncFull.migrate_mode(), MigrateMode::Sync);
    }

    #[test]
    fn block_arithmetic() {
        assert_eq!(pageblock_start_pfn(1000), 512);
        assert_eq!(pageblock_end_pfn(512), 1024);
        assert_eq!(pageblock_end_pfn(1023), 1024);
        assert_eq!(block_end_pfn(5, 2), 8);
        assert_eq!(block_end_pfn(8, 2), 12);
        assert!(pageblock_aligned(1024));
        assert!(!pageblock_aligned(1025));
    }

    #[test]
    fn capture_rules() {
        let c = CaptureControl::new();
        assert!(!c.try_capture(0, 9, Migratetype::Movable), "not armed");
        c.zone.store(64, Ordering::Relaxed);
        c.order.store(3, Ordering::Relaxed);
        c.migratetype
            .store(Migratetype::Unmovable as u8, Ordering::Relaxed);
        assert!(!c.try_capture(8, 2, Migratetype::Unmovable), "wrong order");
        assert!(
            !c.try_capture(8, 3, Migratetype::Movable),
            "pollutes movable"
        );
        assert!(!c.try_capture(8, 3, Migratetype::Cma));
        assert!(!c.try_capture(8, 3, Migratetype::Isolate));
        assert!(c.try_capture(8, 3, Migratetype::Reclaimable));
        assert!(!c.try_capture(16, 3, Migratetype::Unmovable), "only once");
        assert_eq!(c.page_pfn.load(Ordering::Relaxed), 8);
        let c = CaptureControl::new();
        c.zone.store(64, Ordering::Relaxed);
        c.order.store(9, Ordering::Relaxed);
        c.migratetype
            .store(Migratetype::Unmovable as u8, Ordering::Relaxed);
        assert!(
            c.try_capture(512, 9, Migratetype::Movable),
            "whole pageblock"
        );
    }
}

/// The free scanner on its own (no migration): isolating, splitting and releasing targets
/// keeps the allocator's invariants and its free counts exact.
#[cfg(all(test, feature = "std"))]
mod free_scanner_tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::port::sim::{SimAllocator, qemu_e820};

    fn check(a: &SimAllocator) {
        if let Err(v) = crate::report::debug::check(&**a) {
            panic!("debug::check: {v:?}");
        }
    }

    #[test]
    fn isolate_split_and_release_keep_counts_exact() {
        let a = SimAllocator::build(
            &qemu_e820(64 << 20),
            &[],
            &crate::model::mm_init::ModelParams::default(),
            1,
        )
        .unwrap();
        // Fragment with movable order-0 pages: keep every other one.
        let mut held = Vec::new();
        let mut spare = Vec::new();
        while let Some(p) = a.alloc_page(crate::page_alloc::gfp::GFP_HIGHUSER_MOVABLE | Gfp::NOWARN)
        {
            if held.len() == spare.len() {
                held.push(p);
            } else {
                spare.push(p);
            }
            if held.len() >= 6000 {
                break;
            }
        }
        for p in spare {
            a.free_pages(p, 0).unwrap();
        }
        a.drain_all_pages();
        check(&a);
        let zone = a.zone_of(0, ZoneType::Dma32).unwrap();
        let free0 = zone.nr_free_pages();
        let s = a.sysctl();
        for (mode, want) in [(MigrateMode::Sync, 700u64), (MigrateMode::Async, 40)] {
            let mut cc = CompactControl::new(zone, 9, GFP_KERNEL | Gfp::MOVABLE, mode, &s);
            a.ensure_compact_init(zone);
            cc.migrate_pfn = zone.zone_start_pfn();
            cc.free_pfn = pageblock_start_pfn(zone.zone_end_pfn() - 1);
            cc.nr_migratepages = want;
            a.isolate_freepages(&mut cc);
            let got = cc.freepages.len() as u64;
            assert_eq!(got, cc.nr_freepages);
            assert!(got >= want.min(100), "{mode:?}: isolated only {got}");
            assert_eq!(
                zone.nr_free_pages(),
                free0 - got,
                "free count after isolation"
            );
            // SAFETY: the list is private to this test and not modified while iterating.
            for p in unsafe { cc.freepages.iter() } {
                let page = a.list_page(p);
                assert!(!page.is_buddy());
                assert_eq!(page.refcount(), 1);
                assert!(zone.zone_spans_pfn(a.page_to_pfn(page)));
            }
            // Isolated targets are allocated pages as far as the checker is concerned.
            check(&a);
            // Hand one out and take it back, as migration does with an unused target.
            let t = a.compaction_alloc(&mut cc).unwrap();
            a.compaction_free(&mut cc, t);
            assert_eq!(cc.freepages.len() as u64, got);
            let high = a.release_freepages(&mut cc);
            assert!(high >= zone.zone_start_pfn());
            assert!(cc.freepages.is_empty());
            assert_eq!(zone.nr_free_pages(), free0, "free count after release");
            check(&a);
        }
        for p in held {
            a.free_pages(p, 0).unwrap();
        }
        a.drain_all_pages();
        check(&a);
    }
}

/// The free scanner never takes free pages of an isolated pageblock, not even at full
/// priority (`ignore_block_suitable`, where any pageblock type is a target).
#[cfg(all(test, feature = "std"))]
mod isolated_target_tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::movement::isolation::IsolateFlags;
    use crate::port::sim::{SimAllocator, qemu_e820};

    #[test]
    fn full_priority_free_scanner_skips_isolated_pageblocks() {
        let a = SimAllocator::build(
            &qemu_e820(64 << 20),
            &[],
            &crate::model::mm_init::ModelParams::default(),
            1,
        )
        .unwrap();
        // Movable anon pages over most of memory, every other one zapped.
        let n = 12_000u64;
        let r = a.anon_region_create(n).unwrap();
        for i in 0..n {
            if a.anon_region_populate(
                r,
                i,
                crate::page_alloc::gfp::GFP_HIGHUSER_MOVABLE | Gfp::NOWARN,
            )
            .is_err()
            {
                break;
            }
        }
        for i in (0..n).step_by(2) {
            let _ = a.anon_region_zap(r, i);
        }
        a.drain_all_pages();
        let zone = a.zone_of(0, ZoneType::Dma32).unwrap();
        // Isolate every pageblock of the zone that holds both free and anon pages and
        // nothing unmovable: the free scanner's only candidates.
        let mut isolated: Vec<u64> = Vec::new();
        let mut pb = zone.zone_start_pfn().next_multiple_of(PAGEBLOCK_NR_PAGES);
        while pb + PAGEBLOCK_NR_PAGES <= zone.zone_end_pfn() {
            let mixed = (pb..pb + PAGEBLOCK_NR_PAGES)
                .any(|p| a.pfn_to_page(p).is_some_and(|pg| pg.is_anon()))
                && (pb..pb + PAGEBLOCK_NR_PAGES)
                    .any(|p| a.pfn_to_page(p).is_some_and(|pg| pg.is_buddy()));
            if mixed
                && a.pfn_range_valid_contig(zone, pb, PAGEBLOCK_NR_PAGES)
                && a.start_isolate_page_range(
                    pb,
                    pb + PAGEBLOCK_NR_PAGES,
                    Migratetype::Movable,
                    IsolateFlags::empty(),
                )
                .is_ok()
            {
                isolated.push(pb);
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
        assert!(
            isolated.len() >= 4,
            "isolated {} pageblocks",
            isolated.len()
        );
        let s = a.sysctl();
        // Order -1 (a whole-zone run) skips the fast search: the linear scan meets every
        // pageblock from the top of the zone down.
        let mut cc =
            CompactControl::new(zone, -1, GFP_KERNEL | Gfp::MOVABLE, MigrateMode::Sync, &s);
        cc.ignore_block_suitable = true;
        cc.ignore_skip_hint = true;
        a.ensure_compact_init(zone);
        cc.migrate_pfn = zone.zone_start_pfn();
        cc.free_pfn = pageblock_start_pfn(zone.zone_end_pfn() - 1);
        cc.nr_migratepages = 4000;
        a.isolate_freepages(&mut cc);
        assert!(cc.nr_freepages > 0, "the free scanner found targets");
        // SAFETY: the list is private to this test and not modified while iterating.
        for p in unsafe { cc.freepages.iter() } {
            let pfn = a.page_to_pfn(a.list_page(p));
            let block = pageblock_start_pfn(pfn);
            assert!(
                !isolated.contains(&block),
                "free scanner took pfn {pfn:#x} of an isolated pageblock"
            );
        }
        a.release_freepages(&mut cc);
        for pb in isolated {
            a.undo_isolate_page_range(pb, pb + PAGEBLOCK_NR_PAGES);
        }
        if let Err(v) = crate::report::debug::check(&*a) {
            panic!("debug::check: {v:?}");
        }
        a.anon_region_destroy(r).unwrap();
    }
}
