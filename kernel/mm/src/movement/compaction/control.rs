//! One compaction run's state (Linux: `struct compact_control`) and the pageblock
//! arithmetic the scanners share.

#![deny(unsafe_code)]

use super::*;

// -------------------------------------------------------------------------------------
// compact_control.
// -------------------------------------------------------------------------------------

/// One compaction run over one zone (`struct compact_control`).
pub(crate) struct CompactControl<'z> {
    pub(super) zone: &'z Zone,
    /// Wanted order; -1 for "until the scanners meet" (manual and proactive compaction).
    pub(super) order: i32,
    /// Where `fast_isolate_freepages` starts its search.
    pub(super) search_order: i32,
    pub(super) migratetype: Migratetype,
    pub(super) alloc_flags: AllocFlags,
    pub(super) highest_zoneidx: ZoneType,
    pub(super) mode: MigrateMode,
    pub(super) direct_compaction: bool,
    pub(super) proactive_compaction: bool,
    pub(super) whole_zone: bool,
    pub(super) ignore_skip_hint: bool,
    pub(super) ignore_block_suitable: bool,
    pub(super) finish_pageblock: bool,
    pub(super) contended: bool,
    /// The migration scanner's position.
    pub(super) migrate_pfn: u64,
    /// The free scanner's position.
    pub(super) free_pfn: u64,
    /// Lowest pfn the fast migration search found (0: none yet, `u64::MAX`: used).
    pub(super) fast_start_pfn: u64,
    pub(super) fast_search_fail: u32,
    pub(super) total_migrate_scanned: u64,
    pub(super) total_free_scanned: u64,
    /// Isolated sources.
    pub(super) migratepages: PageList,
    pub(super) nr_migratepages: u64,
    /// Isolated order-0 targets.
    pub(super) freepages: PageList,
    pub(super) nr_freepages: u64,
    /// Proactive mode's stopping score.
    pub(super) proactive_wmark_low: u32,
    pub(super) extfrag_threshold: i32,
    pub(super) stats: CompactStats,
    /// Targets handed out and given back during the current `migrate_pages` call.
    pub(super) targets_taken: u64,
    pub(super) targets_returned: u64,
}

impl<'z> CompactControl<'z> {
    pub(super) fn new(
        zone: &'z Zone,
        order: i32,
        gfp: Gfp,
        mode: MigrateMode,
        s: &VmSysctl,
    ) -> Self {
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
    pub(super) fn is_via_compact_memory(&self) -> bool {
        self.order < 0
    }
}

/// What `isolate_migratepages` found (`isolate_migrate_t`; Linux's `ISOLATE_ABORT` needs a
/// fatal signal or a throttled LRU, neither of which exists here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IsolateMigrate {
    None,
    Success,
}

#[inline]
pub(super) const fn pageblock_start_pfn(pfn: u64) -> u64 {
    pfn & !(PAGEBLOCK_NR_PAGES - 1)
}

/// One past the end of the pageblock holding `pfn` (`pageblock_end_pfn`).
#[inline]
pub(super) const fn pageblock_end_pfn(pfn: u64) -> u64 {
    pageblock_start_pfn(pfn) + PAGEBLOCK_NR_PAGES
}

#[inline]
pub(super) const fn pageblock_aligned(pfn: u64) -> bool {
    pfn & (PAGEBLOCK_NR_PAGES - 1) == 0
}

/// `block_end_pfn(pfn, order)`: one past the order-aligned block holding `pfn`.
#[inline]
pub(super) const fn block_end_pfn(pfn: u64, order: u32) -> u64 {
    (pfn & !((1u64 << order) - 1)) + (1u64 << order)
}

/// The zone lock held with interrupts disabled; the lock is released before interrupts
/// are restored (fields drop in declaration order).
pub(super) struct CompactLock<'a, P: Platform + ?Sized> {
    pub(super) guard: SpinLockGuard<'a, crate::model::free_area::FreeAreas>,
    pub(super) _irq: LocalIrqGuard<'a, P>,
}
