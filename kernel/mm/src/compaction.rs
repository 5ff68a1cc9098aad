//! Memory compaction (Linux: `mm/compaction.c`): moving movable pages out of the way so
//! that free pages merge into the large blocks a high-order allocation needs.
//!
//! # Why
//!
//! The buddy allocator keeps free memory in naturally aligned blocks, and anti-fragmentation
//! keeps unmovable allocations in their own pageblocks, but a machine that has run for a
//! while still ends up with its free memory scattered as single pages between pages that are
//! in use. Reclaim cannot help (it frees more scattered pages). Compaction can, for the pages
//! that can be moved: anon "user memory" ([`crate::rmap`]) and pages with
//! `movable_operations` ([`crate::migrate`]). Moving them is the job of
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
//! O(zone) per attempt, so three kinds of hints persist (in [`crate::zone::ZoneCompaction`]
//! and the pageblock bitmap):
//!
//! - **cached scanner positions**: a run resumes where the last one stopped (separately for
//!   async and sync migration scanners), until the scanners meet and they are reset;
//! - **skip bits** (`PB_migrate_skip`): a pageblock scanned completely without isolating
//!   anything, or one a compactor has started isolating from, is skipped by later runs until
//!   the hints are reset (`__reset_isolation_suitable`: when compaction restarts after the
//!   longest deferral, or when kcompactd goes to sleep after a direct compaction went through
//!   the whole zone). Full-priority and manual compaction ignore them;
//! - **deferral** ([`crate::fragmentation::CompactDefer`]): after a failure at some order, the next `1 <<
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
//! - kcompactd ([`crate::kcompactd`]): woken after high-order allocation failures, and
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
use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::bad_page::page_ok_at_alloc;
use crate::fragmentation::{
    CompactSuitable, compaction_watermark, fragmentation_index,
    fragmentation_score_node as score_node, fragmentation_score_wmark, fragmentation_score_zone,
};
use crate::gfp::{AllocFlags, GFP_KERNEL, Gfp, gfp_migratetype};
use crate::list::PageList;
use crate::memblock::MemblockError;
use crate::migrate::{MigrateMode, MigrateReason};
use crate::mm_init::MemoryModel;
use crate::mmzone::{
    MAX_NR_ZONES, MAX_PAGE_ORDER, Migratetype, NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
};
use crate::page::{Page, PageFlags};
use crate::page_alloc::{AllocContext, PageAllocator};
use crate::pageblock::{clear_pageblock_skip, get_pageblock_skip, set_pageblock_skip};
use crate::platform::{LocalIrqGuard, Platform};
use crate::sync::SpinLockGuard;
use crate::sysctl::{SysctlError, VmSysctl};
use crate::vmstat::VmEvent;
use crate::watermark::zone_watermark_ok;
use crate::zone::Zone;

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

// -------------------------------------------------------------------------------------
// Capture.
// -------------------------------------------------------------------------------------

/// No page captured yet.
const NO_CAPTURE: u64 = u64::MAX;

/// One CPU's capture slot (`struct capture_control`, hung off the CPU rather than the task;
/// see the module documentation). Touched only by its CPU with interrupts disabled, so the
/// atomics are for the type system, not for cross-CPU ordering; it sits on its own cache
/// line.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct CaptureControl {
    /// Address of the zone being compacted; 0 when the slot is not armed.
    zone: AtomicUsize,
    /// The order wanted.
    order: AtomicU32,
    /// The migratetype of the request.
    migratetype: AtomicU8,
    /// The pfn of the captured block, or [`NO_CAPTURE`].
    page_pfn: AtomicU64,
}

impl CaptureControl {
    const fn new() -> CaptureControl {
        CaptureControl {
            zone: AtomicUsize::new(0),
            order: AtomicU32::new(0),
            migratetype: AtomicU8::new(0),
            page_pfn: AtomicU64::new(NO_CAPTURE),
        }
    }

    /// Is this slot waiting for a block of `zone`?
    #[inline]
    fn armed_for(&self, zone: &Zone) -> bool {
        self.zone.load(Ordering::Acquire) == zone as *const Zone as usize
            && self.page_pfn.load(Ordering::Relaxed) == NO_CAPTURE
    }

    /// The free path's question (`compaction_capture`): take the block of `order` at `pfn`
    /// on the way to the `mt` free lists? Isolated and CMA blocks are never taken (they
    /// must not leak to an ordinary allocation), nor a movable block smaller than a
    /// pageblock for a non-movable request (that would pollute a movable pageblock, which
    /// ordinary fallback would avoid).
    pub(crate) fn try_capture(&self, pfn: u64, order: u32, mt: Migratetype) -> bool {
        if self.zone.load(Ordering::Acquire) == 0
            || self.page_pfn.load(Ordering::Relaxed) != NO_CAPTURE
            || self.order.load(Ordering::Relaxed) != order
        {
            return false;
        }
        if matches!(mt, Migratetype::Cma | Migratetype::Isolate) {
            return false;
        }
        let want = Migratetype::from_bits(self.migratetype.load(Ordering::Relaxed))
            .unwrap_or(Migratetype::Unmovable);
        if order < PAGEBLOCK_ORDER && mt == Migratetype::Movable && want != Migratetype::Movable {
            return false;
        }
        self.page_pfn.store(pfn, Ordering::Relaxed);
        true
    }
}

/// Every CPU's [`CaptureControl`], allocated from memblock like the per-CPU areas (the
/// crate has no heap), plus a count of armed slots so the free path pays one shared,
/// read-mostly load when no compaction is running.
pub(crate) struct CaptureSlots {
    base: *const CaptureControl,
    nr: usize,
    nr_armed: AtomicUsize,
}

// SAFETY: the slots are memblock memory owned by the allocator for its whole life and hold
// only atomics; each is written only by its own CPU.
unsafe impl Send for CaptureSlots {}
// SAFETY: as above.
unsafe impl Sync for CaptureSlots {}

impl CaptureSlots {
    /// Allocate and initialise `nr_cpus` slots from the model's memblock.
    pub(crate) fn alloc<P: Platform + ?Sized>(
        model: &mut MemoryModel,
        platform: &P,
        nr_cpus: usize,
    ) -> Result<CaptureSlots, MemblockError> {
        let size = (size_of::<CaptureControl>() * nr_cpus.max(1)) as u64;
        let pa = model.memblock_alloc_late(platform, size, 64)?;
        let base = platform.phys_to_virt(pa) as *mut CaptureControl;
        for cpu in 0..nr_cpus {
            // SAFETY: `[pa, pa + size)` was just reserved for us and is reached through the
            // direct map at a 64-byte aligned address (memblock honoured the alignment and
            // the direct map preserves it within a page); slot `cpu` lies inside it and
            // nothing else refers to this memory yet.
            unsafe { base.add(cpu).write(CaptureControl::new()) };
        }
        Ok(CaptureSlots {
            base,
            nr: nr_cpus,
            nr_armed: AtomicUsize::new(0),
        })
    }

    /// CPU `cpu`'s slot.
    #[inline]
    fn slot(&self, cpu: usize) -> Option<&CaptureControl> {
        if cpu >= self.nr {
            return None;
        }
        // SAFETY: `cpu < nr`: the slot is inside the allocation, initialised in `alloc`,
        // and lives as long as `self`.
        Some(unsafe { &*self.base.add(cpu) })
    }

    /// The slot of `cpu` if it is armed for `zone` and still waiting (called by the free
    /// path with interrupts disabled on `cpu`).
    #[inline]
    pub(crate) fn armed_for(&self, cpu: usize, zone: &Zone) -> Option<&CaptureControl> {
        if self.nr_armed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.slot(cpu).filter(|s| s.armed_for(zone))
    }
}

// -------------------------------------------------------------------------------------
// compact_control.
// -------------------------------------------------------------------------------------

/// One compaction run over one zone (`struct compact_control`).
pub(crate) struct CompactControl<'z> {
    zone: &'z Zone,
    /// Wanted order; -1 for "until the scanners meet" (manual and proactive compaction).
    order: i32,
    /// Where `fast_isolate_freepages` starts its search.
    search_order: i32,
    migratetype: Migratetype,
    alloc_flags: AllocFlags,
    highest_zoneidx: ZoneType,
    mode: MigrateMode,
    direct_compaction: bool,
    proactive_compaction: bool,
    whole_zone: bool,
    ignore_skip_hint: bool,
    ignore_block_suitable: bool,
    finish_pageblock: bool,
    contended: bool,
    /// The migration scanner's position.
    migrate_pfn: u64,
    /// The free scanner's position.
    free_pfn: u64,
    /// Lowest pfn the fast migration search found (0: none yet, `u64::MAX`: used).
    fast_start_pfn: u64,
    fast_search_fail: u32,
    total_migrate_scanned: u64,
    total_free_scanned: u64,
    /// Isolated sources.
    migratepages: PageList,
    nr_migratepages: u64,
    /// Isolated order-0 targets.
    freepages: PageList,
    nr_freepages: u64,
    /// Proactive mode's stopping score.
    proactive_wmark_low: u32,
    extfrag_threshold: i32,
    stats: CompactStats,
    /// Targets handed out and given back during the current `migrate_pages` call.
    targets_taken: u64,
    targets_returned: u64,
}

impl<'z> CompactControl<'z> {
    fn new(zone: &'z Zone, order: i32, gfp: Gfp, mode: MigrateMode, s: &VmSysctl) -> Self {
        CompactControl {
            zone,
            order,
            search_order: order,
            migratetype: gfp_migratetype(gfp).unwrap_or(Migratetype::Movable),
            alloc_flags: AllocFlags::empty(),
            highest_zoneidx: ZoneType::Movable,
            mode,
            direct_compaction: false,
            proactive_compaction: false,
            whole_zone: false,
            ignore_skip_hint: false,
            ignore_block_suitable: false,
            finish_pageblock: false,
            contended: false,
            migrate_pfn: 0,
            free_pfn: 0,
            fast_start_pfn: 0,
            fast_search_fail: 0,
            total_migrate_scanned: 0,
            total_free_scanned: 0,
            migratepages: PageList::new(),
            nr_migratepages: 0,
            freepages: PageList::new(),
            nr_freepages: 0,
            proactive_wmark_low: fragmentation_score_wmark(s.compaction_proactiveness as u32, true),
            extfrag_threshold: s.extfrag_threshold as i32,
            stats: CompactStats::default(),
            targets_taken: 0,
            targets_returned: 0,
        }
    }

    /// `is_via_compact_memory`: no target order, run until the scanners meet.
    #[inline]
    fn is_via_compact_memory(&self) -> bool {
        self.order < 0
    }
}

/// What `isolate_migratepages` found (`isolate_migrate_t`; Linux's `ISOLATE_ABORT` needs a
/// fatal signal or a throttled LRU, neither of which exists here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IsolateMigrate {
    None,
    Success,
}

#[inline]
const fn pageblock_start_pfn(pfn: u64) -> u64 {
    pfn & !(PAGEBLOCK_NR_PAGES - 1)
}

/// One past the end of the pageblock holding `pfn` (`pageblock_end_pfn`).
#[inline]
const fn pageblock_end_pfn(pfn: u64) -> u64 {
    pageblock_start_pfn(pfn) + PAGEBLOCK_NR_PAGES
}

#[inline]
const fn pageblock_aligned(pfn: u64) -> bool {
    pfn & (PAGEBLOCK_NR_PAGES - 1) == 0
}

/// `block_end_pfn(pfn, order)`: one past the order-aligned block holding `pfn`.
#[inline]
const fn block_end_pfn(pfn: u64, order: u32) -> u64 {
    (pfn & !((1u64 << order) - 1)) + (1u64 << order)
}

/// The zone lock held with interrupts disabled; the lock is released before interrupts
/// are restored (fields drop in declaration order).
struct CompactLock<'a, P: Platform + ?Sized> {
    guard: SpinLockGuard<'a, crate::buddy::FreeAreas>,
    _irq: LocalIrqGuard<'a, P>,
}

impl<P: Platform + 'static> PageAllocator<P> {
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
            let zone = node.zone(zt);
            if !zone.populated() || !zone.managed_zone() {
                continue;
            }
            let mut cc = CompactControl::new(zone, -1, GFP_KERNEL, MigrateMode::Sync, &s);
            cc.ignore_skip_hint = true;
            cc.whole_zone = true;
            self.compact_zone(&mut cc);
            total.add(&cc.stats);
        }
        // Pages freed by migration sit on this CPU's pcp lists; give them back so they
        // merge and the result is visible in the buddy lists (Linux leaves them there).
        self.drain_all_pages();
        Some(total)
    }

    /// Node `nid`'s fragmentation score (`fragmentation_score_node`), 0..=100.
    pub fn fragmentation_score_node(&self, nid: usize) -> u32 {
        let Some(node) = self.model().node(nid) else {
            return 0;
        };
        score_node(
            node.node_present_pages,
            node.node_zones
                .iter()
                .filter(|z| z.managed_zone())
                .map(|z| {
                    (
                        z.present_pages,
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
        let mut pfn = pageblock_start_pfn(zone.zone_start_pfn);
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

    // ---------------------------------------------------------------------------------
    // Deferral (per zone, under its leaf lock).
    // ---------------------------------------------------------------------------------

    /// `compaction_deferred`: skip this attempt? Counts it.
    pub(crate) fn compaction_deferred(&self, zone: &Zone, order: u32) -> bool {
        zone.compact
            .defer
            .lock_irqsave(self.platform())
            .compaction_deferred(order)
    }

    /// `defer_compaction`: a run at `order` failed.
    pub(crate) fn defer_compaction(&self, zone: &Zone, order: u32) {
        zone.compact
            .defer
            .lock_irqsave(self.platform())
            .defer_compaction(order);
    }

    /// `compaction_defer_reset`: a run at `order` succeeded (and the allocation too, if
    /// `alloc_success`).
    pub(crate) fn compaction_defer_reset(&self, zone: &Zone, order: u32, alloc_success: bool) {
        zone.compact
            .defer
            .lock_irqsave(self.platform())
            .compaction_defer_reset(order, alloc_success);
    }

    fn compaction_restarting(&self, zone: &Zone, order: i32) -> bool {
        order >= 0
            && zone
                .compact
                .defer
                .lock_irqsave(self.platform())
                .compaction_restarting(order as u32)
    }

    // ---------------------------------------------------------------------------------
    // Suitability.
    // ---------------------------------------------------------------------------------

    /// Free blocks per order of `zone`, read under its lock.
    pub(crate) fn zone_nr_free(&self, zone: &Zone) -> [u64; NR_PAGE_ORDERS] {
        let g = zone.lock.lock_irqsave(self.platform());
        core::array::from_fn(|o| g.area(o as u32).map_or(0, |a| a.nr_free()))
    }

    /// `compaction_suitable`: is compacting `zone` for `order` worth it now? The zone must
    /// have room for the targets (order-0 watermark plus [`crate::fragmentation::compact_gap`]),
    /// and for costly orders the failure must be due to fragmentation, not lack of memory
    /// (fragmentation index above `vm.extfrag_threshold`).
    pub(crate) fn compaction_suitable(
        &self,
        zone: &Zone,
        order: u32,
        highest_zoneidx: ZoneType,
        extfrag_threshold: i32,
    ) -> bool {
        let mark = compaction_watermark(order, &zone.watermarks());
        let ok = zone_watermark_ok(
            &zone.free_state(),
            0,
            mark,
            highest_zoneidx,
            AllocFlags::CMA,
            |o, mt| zone.has_free_block(o, mt),
        );
        let fragindex = if ok && order > PAGE_ALLOC_COSTLY_ORDER {
            fragmentation_index(order, &self.zone_nr_free(zone)).unwrap_or(-1000)
        } else {
            -1000
        };
        crate::fragmentation::compaction_suitable(order, ok, fragindex, extfrag_threshold)
            == CompactSuitable::Continue
    }

    // ---------------------------------------------------------------------------------
    // Skip hints and cached positions.
    // ---------------------------------------------------------------------------------

    /// `reset_cached_positions`: the next run starts at the zone's ends.
    fn reset_cached_positions(&self, zone: &Zone) {
        let c = &zone.compact;
        c.cached_migrate_pfn[0].store(zone.zone_start_pfn, Ordering::Relaxed);
        c.cached_migrate_pfn[1].store(zone.zone_start_pfn, Ordering::Relaxed);
        c.cached_free_pfn.store(
            pageblock_start_pfn(zone.zone_end_pfn() - 1),
            Ordering::Relaxed,
        );
    }

    /// Set up a zone's restart positions on first use.
    fn ensure_compact_init(&self, zone: &Zone) {
        let c = &zone.compact;
        if c.init_free_pfn.load(Ordering::Relaxed) == 0 {
            c.init_migrate_pfn
                .store(zone.zone_start_pfn, Ordering::Relaxed);
            c.init_free_pfn.store(
                pageblock_start_pfn(zone.zone_end_pfn() - 1),
                Ordering::Relaxed,
            );
            self.reset_cached_positions(zone);
        }
    }

    /// Is `page` a candidate source, as the reset samples see it (Linux: `PageLRU`)?
    #[inline]
    fn page_looks_movable(page: &Page) -> bool {
        !page.is_buddy() && page.mapping_flags() != 0 && page.refcount() > 0
    }

    /// `__reset_isolation_pfn`: clear the skip bit of `pfn`'s pageblock if a sample of its
    /// pages (every eighth) finds a movable page (`check_source`) or a free one
    /// (`check_target`). True if the block would serve as a restart point.
    fn __reset_isolation_pfn(
        &self,
        zone: &Zone,
        pfn: u64,
        check_source: bool,
        check_target: bool,
    ) -> bool {
        let mem = self.model().sparse();
        let Some(page) = self.page_in_zone(zone, pfn) else {
            return false;
        };
        if self.pageblock_skip_persistent(page, pfn) {
            return false;
        }
        if check_source && check_target && !get_pageblock_skip(mem, pfn).unwrap_or(false) {
            return true;
        }
        if !check_source
            && check_target
            && crate::pageblock::get_pageblock_migratetype(mem, pfn).ok()
                != Some(Migratetype::Movable)
        {
            return false;
        }
        let start = pageblock_start_pfn(pfn).max(zone.zone_start_pfn);
        let end = (pageblock_end_pfn(pfn) - 1).min(zone.zone_end_pfn() - 1);
        if self.page_in_zone(zone, end).is_none() {
            return false;
        }
        let mut p = start;
        while p <= end {
            if let Some(page) = self.page_in_zone(zone, p)
                && ((check_source && Self::page_looks_movable(page))
                    || (check_target && page.is_buddy()))
            {
                let _ = clear_pageblock_skip(mem, p);
                return true;
            }
            p += 1 << PAGE_ALLOC_COSTLY_ORDER;
        }
        false
    }

    /// `__reset_isolation_suitable`: after a direct compaction went through the whole zone
    /// (`compact_blockskip_flush`), clear the skip bits of the blocks worth scanning again,
    /// walking from both ends, and restart the scanners at the outermost such blocks.
    pub(crate) fn __reset_isolation_suitable(&self, zone: &Zone) {
        let c = &zone.compact;
        if !c.blockskip_flush.swap(false, Ordering::Relaxed) {
            return;
        }
        self.ensure_compact_init(zone);
        let mut migrate_pfn = zone.zone_start_pfn;
        let mut free_pfn = zone.zone_end_pfn() - 1;
        let mut reset_migrate = free_pfn;
        let mut reset_free = migrate_pfn;
        let mut source_set = false;
        let mut free_set = false;
        while migrate_pfn < free_pfn {
            if self.__reset_isolation_pfn(zone, migrate_pfn, true, source_set)
                && migrate_pfn < reset_migrate
            {
                source_set = true;
                reset_migrate = migrate_pfn;
                c.init_migrate_pfn.store(reset_migrate, Ordering::Relaxed);
                c.cached_migrate_pfn[0].store(reset_migrate, Ordering::Relaxed);
                c.cached_migrate_pfn[1].store(reset_migrate, Ordering::Relaxed);
            }
            if self.__reset_isolation_pfn(zone, free_pfn, free_set, true) && free_pfn > reset_free {
                free_set = true;
                reset_free = free_pfn;
                c.init_free_pfn
                    .store(pageblock_start_pfn(reset_free).max(1), Ordering::Relaxed);
                c.cached_free_pfn
                    .store(pageblock_start_pfn(reset_free), Ordering::Relaxed);
            }
            migrate_pfn += PAGEBLOCK_NR_PAGES;
            free_pfn = free_pfn.saturating_sub(PAGEBLOCK_NR_PAGES);
        }
        if reset_migrate >= reset_free {
            c.cached_migrate_pfn[0].store(migrate_pfn, Ordering::Relaxed);
            c.cached_migrate_pfn[1].store(migrate_pfn, Ordering::Relaxed);
            c.cached_free_pfn
                .store(pageblock_start_pfn(free_pfn), Ordering::Relaxed);
        }
    }

    /// `reset_isolation_suitable`: the hints of every zone of node `nid` that a direct
    /// compaction went through completely.
    pub fn reset_isolation_suitable(&self, nid: usize) {
        let Some(node) = self.model().node(nid) else {
            return;
        };
        for zone in node.node_zones.iter().filter(|z| z.managed_zone()) {
            if zone.compact.blockskip_flush.load(Ordering::Relaxed) {
                self.__reset_isolation_suitable(zone);
            }
        }
    }

    /// Forget every compaction hint of node `nid`: clear all pageblock skip bits and put
    /// the cached scanner positions back at the zone ends, as on a freshly booted zone.
    /// Deferral state is kept. Linux has no single call for this (skip bits are cleared
    /// selectively when kswapd sleeps); tests use it so that one scenario does not inherit
    /// the hints another left behind.
    pub fn reset_compaction_hints(&self, nid: usize) {
        let Some(node) = self.model().node(nid) else {
            return;
        };
        let mem = self.model().sparse();
        for zone in node.node_zones.iter().filter(|z| z.managed_zone()) {
            self.ensure_compact_init(zone);
            let mut pfn = pageblock_start_pfn(zone.zone_start_pfn);
            while pfn < zone.zone_end_pfn() {
                let _ = crate::pageblock::clear_pageblock_skip(mem, pfn);
                pfn += PAGEBLOCK_NR_PAGES;
            }
            let c = &zone.compact;
            c.blockskip_flush.store(false, Ordering::Relaxed);
            c.cached_migrate_pfn[0].store(zone.zone_start_pfn, Ordering::Relaxed);
            c.cached_migrate_pfn[1].store(zone.zone_start_pfn, Ordering::Relaxed);
            c.cached_free_pfn.store(
                pageblock_start_pfn(zone.zone_end_pfn() - 1),
                Ordering::Relaxed,
            );
        }
    }

    /// `isolation_suitable`: may `pfn`'s pageblock be scanned?
    #[inline]
    fn isolation_suitable(&self, cc: &CompactControl<'_>, pfn: u64) -> bool {
        cc.ignore_skip_hint || !get_pageblock_skip(self.model().sparse(), pfn).unwrap_or(false)
    }

    /// `test_and_set_skip`: claim `pfn`'s block for this compactor; true if another had
    /// already claimed (or given up on) it.
    fn test_and_set_skip(&self, cc: &CompactControl<'_>, pfn: u64) -> bool {
        if cc.ignore_skip_hint {
            return false;
        }
        let mem = self.model().sparse();
        let skip = get_pageblock_skip(mem, pfn).unwrap_or(false);
        if !skip {
            let _ = set_pageblock_skip(mem, pfn);
        }
        skip
    }

    /// `update_cached_migrate`: the migration scanner is done below `pfn` (rounded up to a
    /// pageblock; Linux rounds a block end up to the *next* block's end, skipping one).
    fn update_cached_migrate(&self, cc: &CompactControl<'_>, pfn: u64) {
        let pfn = (pfn + PAGEBLOCK_NR_PAGES - 1) & !(PAGEBLOCK_NR_PAGES - 1);
        let c = &cc.zone.compact;
        c.cached_migrate_pfn[0].fetch_max(pfn, Ordering::Relaxed);
        if cc.mode != MigrateMode::Async {
            c.cached_migrate_pfn[1].fetch_max(pfn, Ordering::Relaxed);
        }
    }

    /// `update_pageblock_skip`: the free scanner found nothing more in `block_pfn`'s block;
    /// a later run starts its free scanner no higher than `cached`.
    fn update_pageblock_skip(&self, block_pfn: u64, cached: u64, zone: &Zone) {
        let _ = set_pageblock_skip(self.model().sparse(), block_pfn);
        zone.compact
            .cached_free_pfn
            .fetch_min(cached, Ordering::Relaxed);
    }

    // ---------------------------------------------------------------------------------
    // Page helpers.
    // ---------------------------------------------------------------------------------

    /// The page of `pfn` if it has a memmap and belongs to `zone`.
    #[inline]
    fn page_in_zone(&self, zone: &Zone, pfn: u64) -> Option<&Page> {
        let page = self.pfn_to_page(pfn)?;
        (page.zone_idx() == zone.zone_type.index() && page.nid() == zone.nid).then_some(page)
    }

    /// `pageblock_pfn_to_page`: the first page of `[start, end)` if both ends lie in `zone`.
    fn pageblock_pfn_to_page(&self, start: u64, end: u64, zone: &Zone) -> Option<&Page> {
        if end <= start {
            return None;
        }
        let page = self.page_in_zone(zone, start)?;
        self.page_in_zone(zone, end - 1)?;
        Some(page)
    }

    /// The order of the compound page headed by `head` at `pfn` (from its first tail).
    fn compound_order_at(&self, pfn: u64) -> u32 {
        self.pfn_to_page(pfn + 1).map_or(0, |t| t.order_field())
    }

    /// `pageblock_skip_persistent`: a compound page of pageblock order or more starts here;
    /// its blocks hold no free pages and compacting it is pointless.
    fn pageblock_skip_persistent(&self, page: &Page, pfn: u64) -> bool {
        page.is_head() && self.compound_order_at(pfn) >= PAGEBLOCK_ORDER
    }

    /// A descriptor from one of compaction's private lists.
    #[inline]
    fn list_page(&self, p: NonNull<Page>) -> &Page {
        // SAFETY: compaction's lists only ever hold descriptors of this allocator's memmap,
        // which lives as long as `&self`.
        unsafe { &*p.as_ptr() }
    }

    /// Take the zone lock for a scanner (`compact_lock_irqsave`): async compaction notes
    /// contention (and stops at the next check) instead of waiting quietly.
    fn compact_lock<'a>(
        &'a self,
        zone: &'a Zone,
        cc: &mut CompactControl<'_>,
    ) -> CompactLock<'a, P> {
        let irq = LocalIrqGuard::new(self.platform());
        let guard = if cc.mode == MigrateMode::Async && !cc.contended {
            match zone.lock.try_lock_irqs_off(self.platform()) {
                Some(g) => g,
                None => {
                    cc.contended = true;
                    zone.lock.lock_irqs_off(self.platform())
                }
            }
        } else {
            zone.lock.lock_irqs_off(self.platform())
        };
        CompactLock { guard, _irq: irq }
    }

    // ---------------------------------------------------------------------------------
    // The migration scanner.
    // ---------------------------------------------------------------------------------

    /// `isolate_migratepages_block`: isolate the movable pages of `[low_pfn, end_pfn)`
    /// (inside one pageblock) onto `cc.migratepages`, stopping after
    /// [`COMPACT_CLUSTER_MAX`]. Free blocks are stepped over by their order, compound,
    /// pinned, locked (async), reserved and unmovable pages are left alone
    /// ([`PageAllocator::isolate_migratepage`] decides). Async direct compaction gives up
    /// on an order-aligned block at its first failure: that block cannot become free.
    fn isolate_migratepages_block(
        &self,
        cc: &mut CompactControl<'_>,
        mut low_pfn: u64,
        end_pfn: u64,
    ) {
        let zone = cc.zone;
        cc.migrate_pfn = low_pfn;
        let mut nr_scanned = 0u64;
        let mut nr_isolated = 0u64;
        let skip_on_failure = cc.direct_compaction && cc.mode == MigrateMode::Async && cc.order > 0;
        let order = cc.order.max(0) as u32;
        let mut next_skip_pfn = if skip_on_failure {
            block_end_pfn(low_pfn, order)
        } else {
            0
        };
        let mut valid_pfn: Option<u64> = None;
        let mut skip_updated = false;

        while low_pfn < end_pfn {
            if skip_on_failure && low_pfn >= next_skip_pfn {
                // Everything isolated so far came from one order-aligned block that may
                // now become free: migrate it before looking further.
                if nr_isolated != 0 {
                    break;
                }
                next_skip_pfn = block_end_pfn(low_pfn, order);
            }
            nr_scanned += 1;
            let page = self.page_in_zone(zone, low_pfn);
            if valid_pfn.is_none()
                && (pageblock_aligned(low_pfn) || low_pfn == zone.zone_start_pfn)
                && page.is_some()
            {
                if !self.isolation_suitable(cc, low_pfn) {
                    low_pfn = end_pfn;
                    break;
                }
                valid_pfn = Some(low_pfn);
            }
            let failed = match page {
                None => true,
                Some(page) if page.is_buddy() => {
                    // Read without the zone lock: a stale order only makes us skip a bit
                    // too much or too little.
                    let o = page.buddy_order();
                    if o > 0 && o <= MAX_PAGE_ORDER {
                        low_pfn += (1u64 << o) - 1;
                        nr_scanned += (1u64 << o) - 1;
                    }
                    low_pfn += 1;
                    continue;
                }
                Some(page) if page.is_head() || page.is_tail() => {
                    if page.is_head() {
                        let o = self.compound_order_at(low_pfn);
                        if o <= MAX_PAGE_ORDER && o > 0 {
                            low_pfn += (1u64 << o) - 1;
                            nr_scanned += (1u64 << o) - 1;
                        }
                    }
                    true
                }
                Some(page)
                    if page.mapping_flags() == 0
                        || page.refcount() <= 0
                        || page.test_flag(PageFlags::ISOLATED) =>
                {
                    true
                }
                Some(page) => {
                    // The first candidate of the block: claim the block so concurrent
                    // compactors pass it by.
                    if !skip_updated && let Some(v) = valid_pfn {
                        skip_updated = true;
                        if self.test_and_set_skip(cc, v) && !cc.finish_pageblock {
                            low_pfn = end_pfn;
                            break;
                        }
                    }
                    if self.isolate_migratepage(page, cc.mode) {
                        // SAFETY: the page was just isolated: it holds our reference, is
                        // marked PG_isolated and its lru links are free; it is a memmap
                        // descriptor; the list is this compaction's private list.
                        unsafe { cc.migratepages.push_back(page) };
                        cc.nr_migratepages += 1;
                        nr_isolated += 1;
                        low_pfn += 1;
                        if cc.nr_migratepages >= COMPACT_CLUSTER_MAX
                            && !cc.finish_pageblock
                            && !cc.contended
                        {
                            break;
                        }
                        continue;
                    }
                    true
                }
            };
            debug_assert!(failed);
            if !skip_on_failure {
                low_pfn += 1;
                continue;
            }
            // This order-aligned block cannot become free: release what was isolated
            // from it and move on to the next one.
            if nr_isolated != 0 {
                self.putback_movable_pages(&mut cc.migratepages);
                cc.nr_migratepages = 0;
                nr_isolated = 0;
            }
            if low_pfn < next_skip_pfn {
                low_pfn = next_skip_pfn - 1;
                next_skip_pfn += 1u64 << order;
            }
            low_pfn += 1;
        }
        if low_pfn > end_pfn {
            low_pfn = end_pfn;
        }
        // The whole block was scanned: mark it if nothing came of it, and let the next
        // run start after it.
        if low_pfn == end_pfn && (nr_isolated == 0 || cc.finish_pageblock) {
            if !cc.ignore_skip_hint
                && let Some(v) = valid_pfn
                && !skip_updated
            {
                let _ = set_pageblock_skip(self.model().sparse(), v);
            }
            self.update_cached_migrate(cc, low_pfn);
        }
        cc.total_migrate_scanned += nr_scanned;
        if nr_isolated != 0 {
            cc.stats.isolated += nr_isolated;
            self.count_vm_events(VmEvent::CompactIsolated, nr_isolated);
        }
        cc.migrate_pfn = low_pfn;
    }

    /// `suitable_migration_source`: async direct compaction only takes pages from blocks
    /// of the request's own type (movable requests: movable or CMA blocks), so it does not
    /// spread a movable allocation's work over unmovable blocks it cannot empty anyway.
    fn suitable_migration_source(&self, cc: &CompactControl<'_>, page: &Page, pfn: u64) -> bool {
        if self.pageblock_skip_persistent(page, pfn) {
            return false;
        }
        if cc.mode != MigrateMode::Async || !cc.direct_compaction {
            return true;
        }
        let mt = crate::pageblock::get_pageblock_migratetype(self.model().sparse(), pfn)
            .unwrap_or(Migratetype::Unmovable);
        if cc.migratetype == Migratetype::Movable {
            matches!(mt, Migratetype::Movable | Migratetype::Cma)
        } else {
            mt == cc.migratetype
        }
    }

    /// `freelist_scan_limit`: how many free-list entries a fast search may look at; it
    /// shrinks with every fast search that found nothing.
    fn freelist_scan_limit(cc: &CompactControl<'_>) -> u64 {
        (COMPACT_CLUSTER_MAX >> cc.fast_search_fail.min(63)) + 1
    }

    /// `fast_find_migrateblock`: for a costly movable request, start the migration scanner
    /// in a movable pageblock that already has a free block of high order (fewer pages to
    /// move before it is free), found near the head of the free lists, in the lower part of
    /// the remaining scan range. Unlike Linux, a block below the scanner is not chosen, so
    /// the scanner never moves backwards.
    fn fast_find_migrateblock(&self, cc: &mut CompactControl<'_>) -> u64 {
        let zone = cc.zone;
        let mut pfn = cc.migrate_pfn;
        if cc.ignore_skip_hint || cc.finish_pageblock {
            return pfn;
        }
        if pfn != zone.zone_start_pfn && pfn != pageblock_start_pfn(pfn) {
            return pfn;
        }
        if cc.order <= PAGE_ALLOC_COSTLY_ORDER as i32 {
            return pfn;
        }
        if cc.direct_compaction && cc.migratetype != Migratetype::Movable {
            return pfn;
        }
        let mut distance = cc.free_pfn.saturating_sub(cc.migrate_pfn) >> 1;
        if cc.migrate_pfn != zone.zone_start_pfn {
            distance >>= 2;
        }
        let high_pfn = pageblock_start_pfn(cc.migrate_pfn + distance);
        let low_bound = pageblock_start_pfn(cc.migrate_pfn);
        let limit = Self::freelist_scan_limit(cc);
        let mut nr_scanned = 0u64;
        let mut found = false;
        let mem = self.model().sparse();
        let mut order = cc.order - 1;
        while order >= PAGE_ALLOC_COSTLY_ORDER as i32 && !found && nr_scanned < limit {
            let o = order as u32;
            order -= 1;
            if !zone.has_free_block(o, Migratetype::Movable) {
                continue;
            }
            let mut lock = self.compact_lock(zone, cc);
            let mut b = self.buddy(zone, &mut lock.guard);
            let mut rotate_at: Option<&Page> = None;
            for freepage in b.free_list_iter(o, Migratetype::Movable) {
                let scanned = nr_scanned;
                nr_scanned += 1;
                if scanned >= limit {
                    rotate_at = Some(freepage);
                    break;
                }
                let free_pfn = self.page_to_pfn(freepage);
                if free_pfn < high_pfn && free_pfn >= low_bound {
                    if get_pageblock_skip(mem, free_pfn).unwrap_or(false) {
                        continue;
                    }
                    rotate_at = Some(freepage);
                    if cc.fast_start_pfn != u64::MAX {
                        cc.fast_start_pfn = if cc.fast_start_pfn == 0 {
                            free_pfn
                        } else {
                            cc.fast_start_pfn.min(free_pfn)
                        };
                    }
                    pfn = pageblock_start_pfn(free_pfn).max(zone.zone_start_pfn);
                    cc.fast_search_fail = 0;
                    found = true;
                    break;
                }
            }
            if let Some(p) = rotate_at {
                b.move_freelist_tail(o, Migratetype::Movable, p);
            }
        }
        cc.total_migrate_scanned += nr_scanned;
        if !found {
            cc.fast_search_fail += 1;
            // `reinit_migrate_pfn`: restart the linear scan at the lowest block an earlier
            // fast search found, once.
            if cc.fast_start_pfn != 0 && cc.fast_start_pfn != u64::MAX {
                cc.migrate_pfn = pageblock_start_pfn(cc.fast_start_pfn).max(cc.migrate_pfn);
                cc.fast_start_pfn = u64::MAX;
            }
            pfn = cc.migrate_pfn;
        }
        pfn
    }

    /// `isolate_migratepages`: from the migration scanner's position (or the block the fast
    /// search chose), find the first suitable pageblock below the free scanner and isolate
    /// its movable pages.
    fn isolate_migratepages(&self, cc: &mut CompactControl<'_>) -> IsolateMigrate {
        let zone = cc.zone;
        let mut low_pfn = self.fast_find_migrateblock(cc);
        let mut block_start = pageblock_start_pfn(low_pfn).max(zone.zone_start_pfn);
        let mut fast_find_block = low_pfn != cc.migrate_pfn && cc.fast_search_fail == 0;
        let mut block_end = pageblock_end_pfn(low_pfn);
        while block_end <= cc.free_pfn {
            'block: {
                let Some(page) = self.pageblock_pfn_to_page(block_start, block_end, zone) else {
                    break 'block;
                };
                if (pageblock_aligned(low_pfn) || low_pfn == zone.zone_start_pfn)
                    && !fast_find_block
                    && !self.isolation_suitable(cc, block_start)
                {
                    break 'block;
                }
                if !self.suitable_migration_source(cc, page, block_start) {
                    self.update_cached_migrate(cc, block_end);
                    break 'block;
                }
                self.isolate_migratepages_block(cc, low_pfn, block_end);
                return if cc.nr_migratepages != 0 {
                    IsolateMigrate::Success
                } else {
                    IsolateMigrate::None
                };
            }
            fast_find_block = false;
            low_pfn = block_end;
            cc.migrate_pfn = block_end;
            block_start = block_end;
            block_end += PAGEBLOCK_NR_PAGES;
        }
        if cc.nr_migratepages != 0 {
            IsolateMigrate::Success
        } else {
            IsolateMigrate::None
        }
    }

    // ---------------------------------------------------------------------------------
    // The free scanner.
    // ---------------------------------------------------------------------------------

    /// `split_map_pages`: turn the isolated free blocks on `heads` (order in `private`)
    /// into order-0 pages that look freshly allocated (reference count 1), ready to be
    /// migration targets, at the end of `cc.freepages`.
    fn split_map_pages(&self, cc: &mut CompactControl<'_>, heads: &mut PageList) {
        // SAFETY: `heads` is a private list of blocks this compaction isolated.
        while let Some(p) = unsafe { heads.pop_front() } {
            let head = self.list_page(p);
            let order = (head.private() as u32).min(MAX_PAGE_ORDER);
            head.set_private(0);
            let pfn = self.page_to_pfn(head);
            for i in 0..(1u64 << order) {
                let Some(page) = self.pfn_to_page(pfn + i) else {
                    cc.nr_freepages = cc.nr_freepages.saturating_sub(1);
                    continue;
                };
                if !page_ok_at_alloc(page) {
                    // In use while on a free list: a bug elsewhere. Never hand it out.
                    self.bad_page_at_alloc(page);
                    cc.nr_freepages = cc.nr_freepages.saturating_sub(1);
                    continue;
                }
                self.prep_new_page(page, 0, Gfp::empty());
                // SAFETY: the page was part of a free block we took off the buddy lists,
                // so it is on no list; it is a memmap descriptor; the list is private.
                unsafe { cc.freepages.push_back(page) };
            }
        }
    }

    /// `isolate_freepages_block`: take the free blocks of `[*start_pfn, end_pfn)` off the
    /// buddy lists, every `stride`-th pfn, until there are as many targets as sources
    /// (unless `strict`). Leaves `*start_pfn` where the scan stopped. Returns the pages
    /// isolated.
    fn isolate_freepages_block(
        &self,
        cc: &mut CompactControl<'_>,
        start_pfn: &mut u64,
        end_pfn: u64,
        stride: u64,
        strict: bool,
    ) -> u64 {
        let zone = cc.zone;
        let stride = if strict { 1 } else { stride.max(1) };
        let mut nr_scanned = 0u64;
        let mut total_isolated = 0u64;
        let mut blockpfn = *start_pfn;
        let mut heads = PageList::new();
        let mut lock: Option<CompactLock<'_, P>> = None;
        while blockpfn < end_pfn {
            if blockpfn.is_multiple_of(COMPACT_CLUSTER_MAX) {
                // Let interrupts and other CPUs in now and then.
                lock = None;
            }
            nr_scanned += 1;
            let page = match self.page_in_zone(zone, blockpfn) {
                Some(p) => p,
                None => {
                    if strict {
                        break;
                    }
                    blockpfn += stride;
                    continue;
                }
            };
            if page.is_head() {
                let o = self.compound_order_at(blockpfn);
                if o <= MAX_PAGE_ORDER && o > 0 {
                    blockpfn += (1u64 << o) - 1;
                    nr_scanned += (1u64 << o) - 1;
                }
                if strict {
                    break;
                }
                blockpfn += stride;
                continue;
            }
            if !page.is_buddy() {
                if strict {
                    break;
                }
                blockpfn += stride;
                continue;
            }
            if lock.is_none() {
                lock = Some(self.compact_lock(zone, cc));
            }
            let l = lock.as_mut().expect("just locked");
            // Recheck under the lock: the block may have been allocated or merged.
            if !page.is_buddy() {
                if strict {
                    break;
                }
                blockpfn += stride;
                continue;
            }
            let order = page.buddy_order();
            let mut b = self.buddy(zone, &mut l.guard);
            let isolated = b.isolate_free_page(page, order);
            if isolated == 0 {
                break;
            }
            page.set_private(order as u64);
            // SAFETY: the block was just taken off its free list (PG_buddy cleared), so it
            // is on no list; `heads` is private to this call.
            unsafe { heads.push_back(page) };
            nr_scanned += isolated - 1;
            total_isolated += isolated;
            cc.nr_freepages += isolated;
            if !strict && cc.nr_migratepages <= cc.nr_freepages {
                blockpfn += isolated;
                break;
            }
            blockpfn += isolated - 1 + stride;
        }
        drop(lock);
        if blockpfn > end_pfn {
            blockpfn = end_pfn;
        }
        *start_pfn = blockpfn;
        self.split_map_pages(cc, &mut heads);
        cc.total_free_scanned += nr_scanned;
        if total_isolated != 0 {
            cc.stats.isolated += total_isolated;
            self.count_vm_events(VmEvent::CompactIsolated, total_isolated);
        }
        total_isolated
    }

    /// `suitable_migration_target`: free pages are taken from movable and CMA pageblocks
    /// (any block at full priority), never from a block that is free as a whole (that is
    /// what compaction is trying to create).
    fn suitable_migration_target(&self, cc: &CompactControl<'_>, page: &Page, pfn: u64) -> bool {
        if page.is_buddy() && page.buddy_order() >= PAGEBLOCK_ORDER {
            return false;
        }
        if cc.ignore_block_suitable {
            return true;
        }
        matches!(
            crate::pageblock::get_pageblock_migratetype(self.model().sparse(), pfn),
            Ok(Migratetype::Movable | Migratetype::Cma)
        )
    }

    /// `next_search_order`: orders below the wanted one, round robin from where the last
    /// search succeeded; -1 once it wrapped around.
    fn next_search_order(cc: &mut CompactControl<'_>, order: i32) -> i32 {
        let mut order = order - 1;
        if order < 0 {
            order = cc.order - 1;
        }
        if order == cc.search_order {
            cc.search_order -= 1;
            if cc.search_order < 0 {
                cc.search_order = cc.order - 1;
            }
            return -1;
        }
        order
    }

    /// `fast_isolate_around`: after the fast search picked `pfn`, take the other free pages
    /// of its pageblock too (not in async direct compaction, which stays minimal).
    fn fast_isolate_around(&self, cc: &mut CompactControl<'_>, pfn: u64) {
        if cc.nr_freepages >= cc.nr_migratepages {
            return;
        }
        if cc.direct_compaction && cc.mode == MigrateMode::Async {
            return;
        }
        let zone = cc.zone;
        let mut start = pageblock_start_pfn(pfn).max(zone.zone_start_pfn);
        let end = pageblock_end_pfn(pfn).min(zone.zone_end_pfn());
        if self.pageblock_pfn_to_page(start, end, zone).is_none() {
            return;
        }
        let block = start;
        self.isolate_freepages_block(cc, &mut start, end, 1, false);
        if start == end && !cc.ignore_skip_hint {
            let _ = set_pageblock_skip(self.model().sparse(), block);
        }
    }

    /// `fast_isolate_freepages`: search the movable free lists below the wanted order for
    /// a block high in the zone (the top quarter of the remaining range, or failing that
    /// the top half), rather than scanning pageblocks one by one.
    fn fast_isolate_freepages(&self, cc: &mut CompactControl<'_>) {
        if cc.order <= 0 {
            return;
        }
        let zone = cc.zone;
        let mut limit = (Self::freelist_scan_limit(cc) >> 1).max(1);
        let mut scan_start = false;
        if cc.free_pfn >= zone.compact.init_free_pfn.load(Ordering::Relaxed) {
            limit = PAGEBLOCK_NR_PAGES >> 1;
            scan_start = true;
        }
        let distance = cc.free_pfn.saturating_sub(cc.migrate_pfn);
        let mut low_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 2));
        let min_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 1));
        if min_pfn > low_pfn {
            low_pfn = min_pfn;
        }
        cc.search_order = cc.search_order.min(cc.order - 1);
        let mut nr_scanned = 0u64;
        let mut highest = 0u64;
        let mut page_pfn: Option<u64> = None;
        let mut heads = PageList::new();
        let mut order = cc.search_order;
        while page_pfn.is_none() && order >= 0 {
            let o = order as u32;
            let mut order_scanned = 0u64;
            if zone.has_free_block(o, Migratetype::Movable) {
                let mut lock = self.compact_lock(zone, cc);
                let mut b = self.buddy(zone, &mut lock.guard);
                let mut high_pfn = 0u64;
                let mut candidate: Option<&Page> = None;
                let mut cursor: Option<&Page> = None;
                for freepage in b.free_list_iter_rev(o, Migratetype::Movable) {
                    order_scanned += 1;
                    nr_scanned += 1;
                    let pfn = self.page_to_pfn(freepage);
                    if pfn >= highest {
                        highest = pageblock_start_pfn(pfn).max(zone.zone_start_pfn);
                    }
                    if pfn >= low_pfn {
                        cc.fast_search_fail = 0;
                        cc.search_order = order;
                        candidate = Some(freepage);
                        cursor = Some(freepage);
                        break;
                    }
                    if pfn >= min_pfn && pfn > high_pfn {
                        high_pfn = pfn;
                        // A usable candidate: shorten the search.
                        limit >>= 1;
                    }
                    if order_scanned >= limit {
                        cursor = Some(freepage);
                        break;
                    }
                }
                if candidate.is_none() && high_pfn != 0 {
                    candidate = self.pfn_to_page(high_pfn);
                    cursor = candidate;
                }
                if let Some(c) = cursor {
                    b.move_freelist_head(o, Migratetype::Movable, c);
                }
                if let Some(p) = candidate {
                    if p.is_buddy() && p.buddy_order() == o && b.isolate_free_page(p, o) != 0 {
                        p.set_private(o as u64);
                        // SAFETY: just taken off its free list; `heads` is private.
                        unsafe { heads.push_back(p) };
                        let nr = 1u64 << o;
                        nr_scanned += nr - 1;
                        cc.nr_freepages += nr;
                        cc.stats.isolated += nr;
                        self.count_vm_events(VmEvent::CompactIsolated, nr);
                        page_pfn = Some(self.page_to_pfn(p));
                    } else {
                        // Isolation refused (watermark): end the search.
                        order = cc.search_order + 1;
                    }
                }
                drop(lock);
            }
            if cc.nr_freepages >= cc.nr_migratepages {
                break;
            }
            if order_scanned >= limit {
                limit = (limit >> 1).max(1);
            }
            order = Self::next_search_order(cc, order);
        }
        let mut around = page_pfn;
        if page_pfn.is_none() {
            cc.fast_search_fail += 1;
            if scan_start {
                // Use the highest block seen above the minimum; failing that, be
                // pessimistic for direct compaction and start at the minimum.
                if highest >= min_pfn && highest != 0 {
                    cc.free_pfn = highest;
                    around = Some(highest);
                } else if cc.direct_compaction
                    && self
                        .pageblock_pfn_to_page(
                            min_pfn,
                            pageblock_end_pfn(min_pfn).min(zone.zone_end_pfn()),
                            zone,
                        )
                        .is_some()
                {
                    cc.free_pfn = min_pfn;
                    around = Some(min_pfn);
                }
            }
        }
        let cached = &zone.compact.cached_free_pfn;
        if highest != 0 && highest >= cached.load(Ordering::Relaxed) {
            cached.store(
                highest.saturating_sub(PAGEBLOCK_NR_PAGES),
                Ordering::Relaxed,
            );
        }
        cc.total_free_scanned += nr_scanned;
        self.split_map_pages(cc, &mut heads);
        if let Some(pfn) = around {
            self.fast_isolate_around(cc, pfn);
        }
    }

    /// `isolate_freepages`: refill `cc.freepages`, first from the fast search, then by
    /// scanning pageblocks downwards from the free scanner's position until there are as
    /// many targets as isolated sources or the migration scanner is reached.
    fn isolate_freepages(&self, cc: &mut CompactControl<'_>) {
        self.fast_isolate_freepages(cc);
        if cc.nr_freepages != 0 {
            return;
        }
        let zone = cc.zone;
        let mut isolate_start_pfn = cc.free_pfn;
        let mut block_start = pageblock_start_pfn(isolate_start_pfn) as i64;
        let mut block_end = (block_start as u64 + PAGEBLOCK_NR_PAGES).min(zone.zone_end_pfn());
        let low_pfn = pageblock_end_pfn(cc.migrate_pfn) as i64;
        let mut stride = if cc.mode == MigrateMode::Async {
            COMPACT_CLUSTER_MAX
        } else {
            1
        };
        let nr = PAGEBLOCK_NR_PAGES as i64;
        while block_start >= low_pfn {
            let bs = block_start as u64;
            'block: {
                let Some(page) = self.pageblock_pfn_to_page(bs, block_end, zone) else {
                    break 'block;
                };
                if !self.suitable_migration_target(cc, page, bs) {
                    break 'block;
                }
                if !self.isolation_suitable(cc, bs) {
                    break 'block;
                }
                let nr_isolated = self.isolate_freepages_block(
                    cc,
                    &mut isolate_start_pfn,
                    block_end,
                    stride,
                    false,
                );
                if isolate_start_pfn == block_end && !cc.ignore_skip_hint {
                    self.update_pageblock_skip(bs, bs.saturating_sub(PAGEBLOCK_NR_PAGES), zone);
                }
                if cc.nr_freepages >= cc.nr_migratepages {
                    if isolate_start_pfn >= block_end {
                        // Restart at the block below next time.
                        isolate_start_pfn = bs.saturating_sub(PAGEBLOCK_NR_PAGES);
                    }
                    cc.free_pfn = isolate_start_pfn;
                    return;
                } else if isolate_start_pfn < block_end {
                    // Isolation stopped early (watermark): do not go on needlessly.
                    cc.free_pfn = isolate_start_pfn;
                    return;
                }
                if nr_isolated != 0 {
                    stride = 1;
                } else {
                    stride = (stride << 1).min(COMPACT_CLUSTER_MAX);
                }
            }
            block_end = bs;
            block_start -= nr;
            isolate_start_pfn = block_start.max(0) as u64;
        }
        // The scanners met: leave the free scanner below the migration scanner.
        cc.free_pfn = if block_start < 0 {
            0
        } else {
            isolate_start_pfn
        };
    }

    /// `compaction_alloc`: the migration target callback. Refills from the free scanner
    /// when the private list is empty; None (migration aborts with `-ENOMEM`) when the free
    /// scanner has met the migration scanner.
    fn compaction_alloc<'a>(&'a self, cc: &mut CompactControl<'_>) -> Option<&'a Page> {
        if cc.freepages.is_empty() {
            self.isolate_freepages(cc);
            if cc.freepages.is_empty() {
                return None;
            }
        }
        // SAFETY: the list is this compaction's private list.
        let p = unsafe { cc.freepages.pop_front() }?;
        cc.nr_freepages = cc.nr_freepages.saturating_sub(1);
        cc.targets_taken += 1;
        Some(self.list_page(p))
    }

    /// `compaction_free`: take back a target migration did not use.
    fn compaction_free(&self, cc: &mut CompactControl<'_>, page: &Page) {
        // SAFETY: the page is a target this compaction handed out and got back unused: it
        // is on no list; the list is private.
        unsafe { cc.freepages.push_front(page) };
        cc.nr_freepages += 1;
        cc.targets_returned += 1;
    }

    /// `release_freepages`: return every unused target to the buddy lists. Returns the
    /// highest pfn released (0 if none).
    fn release_freepages(&self, cc: &mut CompactControl<'_>) -> u64 {
        let high = self.free_isolated_pages(cc.zone, &mut cc.freepages);
        cc.nr_freepages = 0;
        high
    }

    // ---------------------------------------------------------------------------------
    // The run.
    // ---------------------------------------------------------------------------------

    /// `compact_scanners_met`.
    #[inline]
    fn compact_scanners_met(cc: &CompactControl<'_>) -> bool {
        (cc.free_pfn >> PAGEBLOCK_ORDER) <= (cc.migrate_pfn >> PAGEBLOCK_ORDER)
    }

    /// Has this CPU's armed capture got its block?
    fn capture_pending(&self) -> bool {
        let _irq = LocalIrqGuard::new(self.platform());
        self.capture_slots()
            .slot(self.platform().cpu_id())
            .is_some_and(|s| s.page_pfn.load(Ordering::Relaxed) != NO_CAPTURE)
    }

    /// `__compact_finished`: stop when the scanners met, when proactive compaction reached
    /// its low score, or (direct and daemon compaction, at a pageblock boundary so the
    /// current block is left as empty as possible) when a free block of the wanted order
    /// exists on a list the request may use, directly or through a claimable fallback.
    fn compact_finished(&self, cc: &mut CompactControl<'_>) -> CompactResult {
        let zone = cc.zone;
        if Self::compact_scanners_met(cc) {
            self.reset_cached_positions(zone);
            if cc.direct_compaction {
                zone.compact.blockskip_flush.store(true, Ordering::Relaxed);
            }
            return if cc.whole_zone {
                CompactResult::Complete
            } else {
                CompactResult::PartialSkipped
            };
        }
        if cc.proactive_compaction {
            let score = fragmentation_score_zone(&self.zone_nr_free(zone));
            return if score > cc.proactive_wmark_low {
                if cc.contended {
                    CompactResult::Contended
                } else {
                    CompactResult::Continue
                }
            } else {
                CompactResult::Success
            };
        }
        if cc.is_via_compact_memory() {
            return CompactResult::Continue;
        }
        if !pageblock_aligned(cc.migrate_pfn) {
            return CompactResult::Continue;
        }
        let mt = cc.migratetype;
        for order in cc.order as u32..=MAX_PAGE_ORDER {
            if zone.has_free_block(order, mt) {
                return CompactResult::Success;
            }
            if mt == Migratetype::Movable && zone.has_free_block(order, Migratetype::Cma) {
                return CompactResult::Success;
            }
            if crate::buddy::should_try_claim_block(order, mt)
                && mt
                    .fallbacks()
                    .iter()
                    .any(|&fb| zone.has_free_block(order, fb))
            {
                return CompactResult::Success;
            }
        }
        if cc.contended {
            CompactResult::Contended
        } else {
            CompactResult::Continue
        }
    }

    /// `compact_zone`: one run of the two scanners over `cc.zone`. See the module
    /// documentation.
    fn compact_zone(&self, cc: &mut CompactControl<'_>) -> CompactResult {
        debug_assert!(
            !self.platform().irqs_disabled(),
            "compaction with interrupts disabled"
        );
        let zone = cc.zone;
        let start_pfn = zone.zone_start_pfn;
        let end_pfn = zone.zone_end_pfn();
        let sync = cc.mode != MigrateMode::Async;
        if end_pfn <= start_pfn {
            return CompactResult::Skipped;
        }
        if !cc.is_via_compact_memory() {
            let order = cc.order as u32;
            let mark = zone.watermarks().wmark_pages(cc.alloc_flags.wmark());
            if zone_watermark_ok(
                &zone.free_state(),
                order,
                mark,
                cc.highest_zoneidx,
                cc.alloc_flags,
                |o, mt| zone.has_free_block(o, mt),
            ) {
                return CompactResult::Success;
            }
            if !self.compaction_suitable(zone, order, cc.highest_zoneidx, cc.extfrag_threshold) {
                return CompactResult::Skipped;
            }
        }
        self.ensure_compact_init(zone);
        if self.compaction_restarting(zone, cc.order) {
            self.__reset_isolation_suitable(zone);
        }

        let c = &zone.compact;
        cc.fast_start_pfn = 0;
        if cc.whole_zone {
            cc.migrate_pfn = start_pfn;
            cc.free_pfn = pageblock_start_pfn(end_pfn - 1);
        } else {
            cc.migrate_pfn = c.cached_migrate_pfn[sync as usize].load(Ordering::Relaxed);
            cc.free_pfn = c.cached_free_pfn.load(Ordering::Relaxed);
            if cc.free_pfn < start_pfn || cc.free_pfn >= end_pfn {
                cc.free_pfn = pageblock_start_pfn(end_pfn - 1);
                c.cached_free_pfn.store(cc.free_pfn, Ordering::Relaxed);
            }
            if cc.migrate_pfn < start_pfn || cc.migrate_pfn >= end_pfn {
                cc.migrate_pfn = start_pfn;
                c.cached_migrate_pfn[0].store(start_pfn, Ordering::Relaxed);
                c.cached_migrate_pfn[1].store(start_pfn, Ordering::Relaxed);
            }
            if cc.migrate_pfn <= c.init_migrate_pfn.load(Ordering::Relaxed) {
                cc.whole_zone = true;
            }
        }
        let mut last_migrated_pfn = 0u64;
        // Until a block with candidates is found, keep the async and sync positions
        // together so neither rescans blocks the other found empty.
        let mut update_cached = !sync
            && c.cached_migrate_pfn[0].load(Ordering::Relaxed)
                == c.cached_migrate_pfn[1].load(Ordering::Relaxed);
        // Manual and proactive runs have no order; they drain freed pages per pageblock.
        let drain_order = if cc.order > 0 {
            cc.order as u32
        } else {
            PAGEBLOCK_ORDER
        };
        let capturing = cc.direct_compaction;

        let mut ret;
        'run: loop {
            ret = self.compact_finished(cc);
            if ret != CompactResult::Continue {
                break;
            }
            if capturing && self.capture_pending() {
                ret = CompactResult::Success;
                break;
            }
            let iteration_start_pfn = cc.migrate_pfn;
            // A second pass over the same block in a row must finish it (and mark it).
            cc.finish_pageblock =
                pageblock_start_pfn(last_migrated_pfn) == pageblock_start_pfn(iteration_start_pfn);
            'rescan: loop {
                match self.isolate_migratepages(cc) {
                    IsolateMigrate::None => {
                        if update_cached {
                            let v = c.cached_migrate_pfn[0].load(Ordering::Relaxed);
                            c.cached_migrate_pfn[1].store(v, Ordering::Relaxed);
                        }
                        break 'rescan;
                    }
                    IsolateMigrate::Success => {
                        update_cached = false;
                        last_migrated_pfn =
                            start_pfn.max(pageblock_start_pfn(cc.migrate_pfn.saturating_sub(1)));
                    }
                }
                let nr = cc.nr_migratepages;
                let err = self.compact_migrate(cc);
                cc.nr_migratepages = 0;
                let migrated = cc.targets_taken - cc.targets_returned;
                cc.stats.migrated += migrated;
                cc.stats.failed += nr.saturating_sub(migrated);
                if let Some(e) = err {
                    if e == MigrateFailure::NoTarget && !Self::compact_scanners_met(cc) {
                        ret = CompactResult::Contended;
                        break 'run;
                    }
                    // Some pages of this block failed: finish scanning the block so it is
                    // marked and not picked again by the fast search soon.
                    if !pageblock_aligned(cc.migrate_pfn)
                        && !cc.ignore_skip_hint
                        && !cc.finish_pageblock
                        && cc.mode != MigrateMode::Sync
                    {
                        cc.finish_pageblock = true;
                        if cc.order == PAGEBLOCK_ORDER as i32 {
                            last_migrated_pfn = 0;
                        }
                        continue 'rescan;
                    }
                }
                if capturing && self.capture_pending() {
                    ret = CompactResult::Success;
                    break 'run;
                }
                break 'rescan;
            }
            // `check_drain`: once the scanner left the block it migrated from, push this
            // CPU's freed pages to the buddy lists so they merge (and may be captured).
            if last_migrated_pfn != 0 {
                let current_block_start = cc.migrate_pfn & !((1u64 << drain_order) - 1);
                if last_migrated_pfn < current_block_start {
                    self.drain_local_pages();
                    last_migrated_pfn = 0;
                }
            }
        }

        // Give back unused targets and let the next run's free scanner start no lower than
        // the highest one (the cached pfn may already have been reset to the zone's end).
        if cc.nr_freepages != 0 || !cc.freepages.is_empty() {
            let high = self.release_freepages(cc);
            if high != 0 {
                c.cached_free_pfn
                    .fetch_max(pageblock_start_pfn(high), Ordering::Relaxed);
            }
        }
        if !cc.migratepages.is_empty() {
            self.putback_movable_pages(&mut cc.migratepages);
            cc.nr_migratepages = 0;
        }
        cc.stats.migrate_scanned += cc.total_migrate_scanned;
        cc.stats.free_scanned += cc.total_free_scanned;
        self.count_vm_events(VmEvent::CompactMigrateScanned, cc.total_migrate_scanned);
        self.count_vm_events(VmEvent::CompactFreeScanned, cc.total_free_scanned);
        ret
    }

    /// Migrate `cc.migratepages` with compaction's target callbacks. Returns why not every
    /// page moved, if that is so; the source list is empty on return either way.
    fn compact_migrate(&self, cc: &mut CompactControl<'_>) -> Option<MigrateFailure> {
        let mut sources = core::mem::take(&mut cc.migratepages);
        let mode = cc.mode;
        cc.targets_taken = 0;
        cc.targets_returned = 0;
        let result = {
            let cell = RefCell::new(&mut *cc);
            let mut get_new = |_src: &Page| -> Option<&Page> {
                let mut c = cell.borrow_mut();
                self.compaction_alloc(&mut c)
            };
            let mut put_new = |p: &Page| {
                let mut c = cell.borrow_mut();
                self.compaction_free(&mut c, p);
            };
            self.migrate_pages(
                &mut sources,
                &mut get_new,
                &mut put_new,
                mode,
                MigrateReason::Compaction,
            )
        };
        if !sources.is_empty() {
            self.putback_movable_pages(&mut sources);
        }
        match result {
            Ok(0) => None,
            Ok(_) => Some(MigrateFailure::SomeFailed),
            Err(crate::migrate::MigrateError::NoMemory) => Some(MigrateFailure::NoTarget),
            Err(_) => Some(MigrateFailure::SomeFailed),
        }
    }

    // ---------------------------------------------------------------------------------
    // Direct compaction.
    // ---------------------------------------------------------------------------------

    /// `compact_zone_order`: one direct compaction of `zone` for the allocation, with this
    /// CPU's capture armed for the run. Returns the result and the captured block, if any.
    #[allow(clippy::too_many_arguments)]
    fn compact_zone_order(
        &self,
        zone: &Zone,
        order: u32,
        gfp: Gfp,
        prio: CompactPriority,
        alloc_flags: AllocFlags,
        highest_zoneidx: ZoneType,
        s: &VmSysctl,
    ) -> (CompactResult, Option<&Page>) {
        let mut cc = CompactControl::new(zone, order as i32, gfp, prio.migrate_mode(), s);
        cc.alloc_flags = alloc_flags;
        cc.highest_zoneidx = highest_zoneidx;
        cc.direct_compaction = true;
        cc.whole_zone = prio == CompactPriority::MIN;
        cc.ignore_skip_hint = prio == CompactPriority::MIN;
        cc.ignore_block_suitable = prio == CompactPriority::MIN;
        let slots = self.capture_slots();
        {
            let _irq = LocalIrqGuard::new(self.platform());
            if let Some(slot) = slots.slot(self.platform().cpu_id()) {
                slot.order.store(order, Ordering::Relaxed);
                slot.migratetype
                    .store(cc.migratetype as u8, Ordering::Relaxed);
                slot.page_pfn.store(NO_CAPTURE, Ordering::Relaxed);
                slot.zone
                    .store(zone as *const Zone as usize, Ordering::Release);
                slots.nr_armed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut ret = self.compact_zone(&mut cc);
        let captured = {
            // Disarm before reading, with interrupts off, so a free in an interrupt
            // handler cannot capture a block nobody would collect.
            let _irq = LocalIrqGuard::new(self.platform());
            match slots.slot(self.platform().cpu_id()) {
                Some(slot) => {
                    slot.zone.store(0, Ordering::Release);
                    slots.nr_armed.fetch_sub(1, Ordering::Relaxed);
                    slot.page_pfn.swap(NO_CAPTURE, Ordering::Relaxed)
                }
                None => NO_CAPTURE,
            }
        };
        let page = if captured != NO_CAPTURE {
            self.pfn_to_page(captured)
        } else {
            None
        };
        if page.is_some() {
            ret = CompactResult::Success;
            self.count_vm_events(VmEvent::CompactCapture, 1u64 << order);
        }
        (ret, page)
    }

    /// `try_to_compact_pages`: direct compaction over the request's zonelist, skipping
    /// deferred zones (except at full priority), stopping at the first zone where the
    /// allocation should now succeed. A failed synchronous run that covered its zone
    /// defers the zone. Returns the overall result and a captured block, unprepared.
    pub(crate) fn try_to_compact_pages(
        &self,
        gfp: Gfp,
        order: u32,
        alloc_flags: AllocFlags,
        ac: &AllocContext,
        prio: CompactPriority,
    ) -> (CompactResult, Option<&Page>) {
        // Migration may need I/O in Linux; GFP_NOIO callers are refused the same way.
        if !gfp.contains(Gfp::IO) || order == 0 {
            return (CompactResult::Skipped, None);
        }
        let s = self.sysctl();
        let mut rc = CompactResult::Skipped;
        for zr in self.zonelist(ac) {
            let zone = self.zone(zr);
            if prio > CompactPriority::MIN && self.compaction_deferred(zone, order) {
                rc = rc.max(CompactResult::Deferred);
                self.count_vm_events(VmEvent::CompactDeferred, 1);
                continue;
            }
            let (status, page) = self.compact_zone_order(
                zone,
                order,
                gfp,
                prio,
                alloc_flags,
                ac.highest_zoneidx,
                &s,
            );
            rc = rc.max(status);
            if page.is_some() {
                self.compaction_defer_reset(zone, order, false);
                return (CompactResult::Success, page);
            }
            if status == CompactResult::Success {
                // Probably good now; the caller confirms with a real allocation.
                self.compaction_defer_reset(zone, order, false);
                break;
            }
            if prio != CompactPriority::Async
                && matches!(
                    status,
                    CompactResult::Complete | CompactResult::PartialSkipped
                )
            {
                self.defer_compaction(zone, order);
            }
        }
        (rc, None)
    }

    /// `should_compact_retry`: after a failed direct compaction in the slow path, is
    /// another round worth it? Rounds that made progress are retried up to
    /// [`MAX_COMPACT_RETRIES`] times (a quarter for costly orders); runs that failed or
    /// backed off raise the priority instead, down to [`CompactPriority::MIN_COSTLY`] for
    /// costly orders and [`CompactPriority::MIN`] otherwise. Skipped runs (too little free
    /// memory) are not retried: this kernel has no reclaim that could make room.
    pub(crate) fn should_compact_retry(
        &self,
        order: u32,
        result: CompactResult,
        priority: &mut CompactPriority,
        retries: &mut u32,
    ) -> bool {
        if order == 0 {
            return false;
        }
        if result == CompactResult::Success {
            *retries += 1;
        }
        match result {
            CompactResult::Skipped | CompactResult::NotSuitableZone => return false,
            CompactResult::Complete
            | CompactResult::Deferred
            | CompactResult::Contended
            | CompactResult::PartialSkipped => {}
            CompactResult::Continue | CompactResult::Success => {
                let max = if order > PAGE_ALLOC_COSTLY_ORDER {
                    MAX_COMPACT_RETRIES / 4
                } else {
                    MAX_COMPACT_RETRIES
                };
                if *retries <= max {
                    return true;
                }
            }
        }
        let min = if order > PAGE_ALLOC_COSTLY_ORDER {
            CompactPriority::MIN_COSTLY
        } else {
            CompactPriority::MIN
        };
        if *priority > min
            && let Some(h) = priority.harder()
        {
            *priority = h;
            *retries = 0;
            return true;
        }
        false
    }

    /// Record a finished direct compaction that produced the allocation (`page`'s zone):
    /// the skip hints stay, the deferral is cleared.
    pub(crate) fn compaction_success(&self, page: &Page, order: u32) {
        if let Some(zone) = page.zone_type().and_then(|zt| self.zone_of(page.nid(), zt)) {
            zone.compact.blockskip_flush.store(false, Ordering::Relaxed);
            self.compaction_defer_reset(zone, order, true);
        }
    }

    /// Is compacting some zone of node `nid` up to `highest_zoneidx` for `order` worth
    /// waking kcompactd for (`kcompactd_node_suitable`)?
    pub(crate) fn kcompactd_node_suitable(
        &self,
        nid: usize,
        order: u32,
        highest_zoneidx: usize,
    ) -> bool {
        let Some(node) = self.model().node(nid) else {
            return false;
        };
        let threshold = self.sysctl().extfrag_threshold as i32;
        let highest = ZoneType::from_index(highest_zoneidx.min(MAX_NR_ZONES - 1))
            .unwrap_or(ZoneType::Movable);
        node.node_zones
            .iter()
            .take(highest.index() + 1)
            .filter(|z| z.managed_zone())
            .any(|z| {
                let ok = zone_watermark_ok(
                    &z.free_state(),
                    order,
                    z.watermarks().min_wmark_pages(),
                    highest,
                    AllocFlags::empty(),
                    |o, mt| z.has_free_block(o, mt),
                );
                !ok && self.compaction_suitable(z, order, highest, threshold)
            })
    }

    /// Compact zone `zone` for kcompactd: `order` (or -1 with `proactive`) at SYNC_LIGHT.
    pub(crate) fn kcompactd_compact_zone(
        &self,
        zone: &Zone,
        order: i32,
        highest_zoneidx: ZoneType,
        proactive: bool,
    ) -> (CompactResult, CompactStats) {
        let s = self.sysctl();
        let mut cc = CompactControl::new(zone, order, GFP_KERNEL, MigrateMode::SyncLight, &s);
        cc.highest_zoneidx = highest_zoneidx;
        if proactive {
            cc.proactive_compaction = true;
            cc.ignore_skip_hint = true;
            cc.whole_zone = true;
        }
        let r = self.compact_zone(&mut cc);
        self.count_vm_events(
            VmEvent::CompactDaemonMigrateScanned,
            cc.total_migrate_scanned,
        );
        self.count_vm_events(VmEvent::CompactDaemonFreeScanned, cc.total_free_scanned);
        (r, cc.stats)
    }
}

/// Why a `migrate_pages` call did not move every page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MigrateFailure {
    /// `-ENOMEM`: the free scanner ran out of targets.
    NoTarget,
    /// Some pages failed and were put back.
    SomeFailed,
}

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
    use crate::sim::{SimAllocator, qemu_e820};

    fn check(a: &SimAllocator) {
        if let Err(v) = crate::debug::check(&**a) {
            panic!("debug::check: {v:?}");
        }
    }

    #[test]
    fn isolate_split_and_release_keep_counts_exact() {
        let a = SimAllocator::build(
            &qemu_e820(64 << 20),
            &[],
            &crate::mm_init::ModelParams::default(),
            1,
        )
        .unwrap();
        // Fragment with movable order-0 pages: keep every other one.
        let mut held = Vec::new();
        let mut spare = Vec::new();
        while let Some(p) = a.alloc_page(crate::gfp::GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
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
            a.free_pages_page(p, 0).unwrap();
        }
        a.drain_all_pages();
        check(&a);
        let zone = a.zone_of(0, ZoneType::Dma32).unwrap();
        let free0 = zone.nr_free_pages();
        let s = a.sysctl();
        for (mode, want) in [(MigrateMode::Sync, 700u64), (MigrateMode::Async, 40)] {
            let mut cc = CompactControl::new(zone, 9, GFP_KERNEL | Gfp::MOVABLE, mode, &s);
            a.ensure_compact_init(zone);
            cc.migrate_pfn = zone.zone_start_pfn;
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
            assert!(high >= zone.zone_start_pfn);
            assert!(cc.freepages.is_empty());
            assert_eq!(zone.nr_free_pages(), free0, "free count after release");
            check(&a);
        }
        for p in held {
            a.free_pages_page(p, 0).unwrap();
        }
        a.drain_all_pages();
        check(&a);
    }
}
