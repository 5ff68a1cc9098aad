//! Measuring external fragmentation, and the policy decisions compaction bases on it.
//!
//! Free memory can be plentiful and still useless: a thousand free pages scattered as
//! single pages cannot serve one order-4 request. Reclaim cannot fix that (it frees more
//! scattered pages); compaction can (it moves movable pages out of the way so free pages
//! merge). Before spending the cost of migrating pages, the allocator asks *why* a high
//! order allocation failed, and these indices answer it from the per-order free block
//! counts alone (`nr_free[order]` of a zone, as `/proc/buddyinfo` shows):
//!
//! - [`fragmentation_index`] (Linux's extfrag index, in thousandths): only meaningful when
//!   no block of the wanted order is free (otherwise it is -1000, "would succeed"). Towards
//!   0 the failure is due to *lack of memory* and compaction cannot help; towards 1000 it
//!   is due to *fragmentation*. [`compaction_suitable`] refuses to compact costly orders
//!   when the index is at most `extfrag_threshold` (500): then reclaim is the answer.
//! - [`unusable_free_index`]: the share of free memory that sits in blocks too small for
//!   the order, in thousandths (`/sys/kernel/debug/extfrag/unusable_index`).
//! - [`extfrag_for_order`] and the *fragmentation score* ([`fragmentation_score_zone`],
//!   [`fragmentation_score_node`]): the same quantity in percent at pageblock order, which
//!   drives *proactive* compaction. A node's score weighs each zone by its size so that a
//!   small, badly fragmented DMA zone does not keep the background compactor busy.
//!
//! Compaction that failed is likely to fail again soon, because the same unmovable pages
//! are still in the way. [`CompactDefer`] is Linux's deferral state machine: after a
//! failure at some order, the next `1 << defer_shift` attempts at that order or higher are
//! skipped, and each further failure doubles the wait (up to 64 attempts). A success
//! resets it.

#![deny(unsafe_code)]

use crate::model::mmzone::{NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER, PAGEBLOCK_ORDER};
use crate::page_alloc::watermark::Watermarks;

/// Default `vm.extfrag_threshold`: fragmentation indices at or below it mean "lack of
/// memory" for costly orders.
pub const EXTFRAG_THRESHOLD: i32 = 500;
/// Default `vm.compaction_proactiveness` (0 to 100; 0 disables proactive compaction).
pub const COMPACTION_PROACTIVENESS: u32 = 20;
/// The order whose fragmentation proactive compaction measures: the huge-page order.
pub const COMPACTION_HPAGE_ORDER: u32 = PAGEBLOCK_ORDER;
/// Largest `defer_shift`: after repeated failures compaction is tried once in 64 times.
pub const COMPACT_MAX_DEFER_SHIFT: u32 = 6;

/// Free block totals of a zone as seen from one order (Linux's `contig_page_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContigPageInfo {
    /// Free base pages: sum of `nr_free[k] << k`.
    pub free_pages: u64,
    /// Free blocks of any order: sum of `nr_free[k]`.
    pub free_blocks_total: u64,
    /// How many blocks of the target order the free blocks of at least that order could
    /// be split into: sum over `k >= order` of `nr_free[k] << (k - order)`.
    pub free_blocks_suitable: u64,
}

/// `x << shift`, saturating.
const fn shl_sat(x: u64, shift: u32) -> u64 {
    if x == 0 {
        return 0;
    }
    if shift >= 64 || x.leading_zeros() < shift {
        return u64::MAX;
    }
    x << shift
}

/// Linux's `fill_contig_page_info` for `suitable_order`, from a zone's free block count
/// per order. Sums saturate instead of overflowing.
pub fn fill_contig_page_info(
    suitable_order: u32,
    nr_free: &[u64; NR_PAGE_ORDERS],
) -> ContigPageInfo {
    let mut info = ContigPageInfo::default();
    for (order, &blocks) in nr_free.iter().enumerate() {
        let order = order as u32;
        info.free_blocks_total = info.free_blocks_total.saturating_add(blocks);
        info.free_pages = info.free_pages.saturating_add(shl_sat(blocks, order));
        if order >= suitable_order {
            info.free_blocks_suitable = info
                .free_blocks_suitable
                .saturating_add(shl_sat(blocks, order - suitable_order));
        }
    }
    info
}

/// Linux's `__fragmentation_index` over a prepared [`ContigPageInfo`]; `None` for an
/// order above `MAX_PAGE_ORDER`.
///
/// 0 when nothing is free; -1000 when a suitable block exists; otherwise
/// `1000 - (1000 + free_pages * 1000 / requested) / free_blocks_total`, which is near 0
/// when the few free blocks hold little memory and near 1000 when many small blocks hold
/// plenty. (Like Linux's, the formula can dip below 0 when a single block of half the
/// requested size is all that is free.)
pub fn fragmentation_index_info(order: u32, info: &ContigPageInfo) -> Option<i32> {
    if order as usize >= NR_PAGE_ORDERS {
        return None;
    }
    if info.free_blocks_total == 0 {
        return Some(0);
    }
    if info.free_blocks_suitable != 0 {
        return Some(-1000);
    }
    let requested = 1u128 << order;
    let scaled = 1000 + (info.free_pages as u128) * 1000 / requested;
    let ratio = scaled / info.free_blocks_total as u128;
    let index = 1000i128 - ratio as i128;
    Some(index.clamp(i32::MIN as i128, i32::MAX as i128) as i32)
}

/// The fragmentation (extfrag) index of a zone for `order`, in thousandths, from its free
/// block count per order; `None` for an order above `MAX_PAGE_ORDER`.
pub fn fragmentation_index(order: u32, nr_free: &[u64; NR_PAGE_ORDERS]) -> Option<i32> {
    fragmentation_index_info(order, &fill_contig_page_info(order, nr_free))
}

/// The unusable free space index for `order`, in thousandths: the share of free pages in
/// blocks smaller than `1 << order`. 1000 when nothing is free (all of nothing is
/// unusable); `None` for an order above `MAX_PAGE_ORDER`.
pub fn unusable_free_index(order: u32, nr_free: &[u64; NR_PAGE_ORDERS]) -> Option<u32> {
    if order as usize >= NR_PAGE_ORDERS {
        return None;
    }
    let info = fill_contig_page_info(order, nr_free);
    Some(unusable_share(order, &info, 1000))
}

/// `(free_pages - (suitable << order)) * scale / free_pages`, computed wide.
fn unusable_share(order: u32, info: &ContigPageInfo, scale: u128) -> u32 {
    if info.free_pages == 0 {
        return scale as u32;
    }
    let free = info.free_pages as u128;
    let usable = ((info.free_blocks_suitable as u128) << order).min(free);
    ((free - usable) * scale / free) as u32
}

/// Linux's `extfrag_for_order`: the percentage (0 to 100) of free pages in blocks smaller
/// than `1 << order`; 0 when nothing is free (no free memory is not fragmented memory).
/// Orders above `MAX_PAGE_ORDER` are measured as if `MAX_PAGE_ORDER`.
pub fn extfrag_for_order(order: u32, nr_free: &[u64; NR_PAGE_ORDERS]) -> u32 {
    let order = order.min(NR_PAGE_ORDERS as u32 - 1);
    let info = fill_contig_page_info(order, nr_free);
    if info.free_pages == 0 {
        return 0;
    }
    unusable_share(order, &info, 100)
}

/// A zone's fragmentation score for proactive compaction: [`extfrag_for_order`] at
/// [`COMPACTION_HPAGE_ORDER`], 0 to 100.
pub fn fragmentation_score_zone(nr_free: &[u64; NR_PAGE_ORDERS]) -> u32 {
    extfrag_for_order(COMPACTION_HPAGE_ORDER, nr_free)
}

/// A zone's score weighted by its share of the node: `present * score / (node_present +
/// 1)`. Small zones contribute little, so they alone cannot trigger proactive compaction.
pub fn fragmentation_score_zone_weighted(
    zone_present: u64,
    node_present: u64,
    zone_score: u32,
) -> u32 {
    let weighted = zone_present as u128 * zone_score as u128 / (node_present as u128 + 1);
    weighted.min(u32::MAX as u128) as u32
}

/// A node's fragmentation score: the sum of its populated zones' weighted scores. Each
/// item of `zones` is `(present_pages, zone_score)`; zones with no present pages are
/// skipped, as Linux skips unpopulated zones.
pub fn fragmentation_score_node(
    node_present: u64,
    zones: impl IntoIterator<Item = (u64, u32)>,
) -> u32 {
    zones
        .into_iter()
        .filter(|&(present, _)| present != 0)
        .fold(0u32, |acc, (present, score)| {
            acc.saturating_add(fragmentation_score_zone_weighted(
                present,
                node_present,
                score,
            ))
        })
}

/// Proactive compaction's thresholds (Linux's `fragmentation_score_wmark`): the low mark is
/// `100 - proactiveness`; the high mark adds a leeway of `min(10, low / 2)`, capped at 100.
/// kcompactd starts when a node's score exceeds the high mark and stops at the low one;
/// the gap keeps it from flapping. `proactiveness` above 100 is treated as 100.
pub fn fragmentation_score_wmark(proactiveness: u32, low: bool) -> u32 {
    let wmark_low = 100 - proactiveness.min(100);
    if low {
        wmark_low
    } else {
        (wmark_low + (wmark_low / 2).min(10)).min(100)
    }
}

/// Should kcompactd compact a node proactively? Only when proactiveness is enabled and the
/// node's score is above the high threshold.
pub fn should_proactive_compact_node(node_score: u32, proactiveness: u32) -> bool {
    proactiveness != 0 && node_score > fragmentation_score_wmark(proactiveness, false)
}

/// `compact_gap(order)`: the free pages compaction needs beyond the watermark to work,
/// `2 << order` (room for the isolated free pages and for the migration targets).
pub const fn compact_gap(order: u32) -> u64 {
    match 2u64.checked_shl(order) {
        Some(v) if order < 63 => v,
        _ => u64::MAX,
    }
}

/// The order-0 watermark a zone must meet before compaction for `order` is worth trying:
/// the min mark (the low mark for costly orders, which would otherwise steal the last
/// free pages from order-0 users) plus [`compact_gap`].
pub fn compaction_watermark(order: u32, wmarks: &Watermarks) -> u64 {
    let base = if order > PAGE_ALLOC_COSTLY_ORDER {
        wmarks.low_wmark_pages()
    } else {
        wmarks.min_wmark_pages()
    };
    base.saturating_add(compact_gap(order))
}

/// Outcome of [`compaction_suitable`] (a subset of Linux's `enum compact_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactSuitable {
    /// Compaction may proceed (`COMPACT_CONTINUE`).
    Continue,
    /// Too few free base pages to compact with: reclaim first (`COMPACT_SKIPPED`).
    Skipped,
    /// The failure is due to lack of memory, not fragmentation (`COMPACT_NOT_SUITABLE_ZONE`).
    NotSuitableZone,
}

/// Linux's `compaction_suitable` decision, given whether the zone passed the order-0
/// watermark check at [`compaction_watermark`] (with `ALLOC_CMA`) and its fragmentation
/// index for `order`.
///
/// For costly orders an index in `0..=extfrag_threshold` means lack of memory, and the
/// zone is not compacted. Non-costly orders ignore the index: their alternative to a
/// successful compaction is the OOM killer, so it is always worth a try.
pub fn compaction_suitable(
    order: u32,
    order0_watermark_ok: bool,
    fragindex: i32,
    extfrag_threshold: i32,
) -> CompactSuitable {
    if !order0_watermark_ok {
        return CompactSuitable::Skipped;
    }
    if order > PAGE_ALLOC_COSTLY_ORDER && (0..=extfrag_threshold).contains(&fragindex) {
        return CompactSuitable::NotSuitableZone;
    }
    CompactSuitable::Continue
}

/// A zone's compaction deferral state (Linux's `compact_considered`,
/// `compact_defer_shift`, `compact_order_failed`).
///
/// ```text
///            defer_compaction(o)              compaction_deferred(o'), o' >= failed
///   ready ─────────────────────────▶ deferred ──────── ++considered < 1 << shift ──▶ skip
///     ▲   shift+1 (max 6), failed=min        │
///     │                                      └─ ++considered >= 1 << shift ─▶ try again
///     └── compaction_defer_reset(o, success): shift = considered = 0, failed = o + 1
/// ```
///
/// Orders below `order_failed` are never deferred: a smaller request may well succeed
/// where a larger one failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactDefer {
    /// Attempts considered since the last failure.
    pub considered: u32,
    /// Skip `1 << defer_shift` attempts before trying again.
    pub defer_shift: u32,
    /// The lowest order that failed; lower orders are not deferred.
    pub order_failed: u32,
}

impl CompactDefer {
    /// A zone that has never failed compaction.
    pub const fn new() -> CompactDefer {
        CompactDefer {
            considered: 0,
            defer_shift: 0,
            order_failed: 0,
        }
    }

    /// The defer limit `1 << defer_shift`.
    const fn limit(&self) -> u32 {
        let shift = if self.defer_shift > COMPACT_MAX_DEFER_SHIFT {
            COMPACT_MAX_DEFER_SHIFT
        } else {
            self.defer_shift
        };
        1 << shift
    }

    /// Record a failure at `order` (Linux's `defer_compaction`): wait twice as long before
    /// the next attempt, up to `1 << COMPACT_MAX_DEFER_SHIFT`.
    pub fn defer_compaction(&mut self, order: u32) {
        self.considered = 0;
        self.defer_shift = self
            .defer_shift
            .saturating_add(1)
            .min(COMPACT_MAX_DEFER_SHIFT);
        self.order_failed = self.order_failed.min(order);
    }

    /// Should compaction at `order` be skipped now (Linux's `compaction_deferred`)? Counts
    /// this attempt; once the count reaches the limit, compaction is allowed again (and
    /// the count stays at the limit until the next failure or success).
    pub fn compaction_deferred(&mut self, order: u32) -> bool {
        if order < self.order_failed {
            return false;
        }
        let limit = self.limit();
        self.considered = self.considered.saturating_add(1);
        if self.considered >= limit {
            self.considered = limit;
            return false;
        }
        true
    }

    /// Record the end of a compaction run at `order` that was not a failure (Linux's
    /// `compaction_defer_reset`). If the allocation succeeded the deferral is cleared;
    /// either way orders up to `order` are no longer considered failed.
    pub fn compaction_defer_reset(&mut self, order: u32, alloc_success: bool) {
        if alloc_success {
            self.considered = 0;
            self.defer_shift = 0;
        }
        if order >= self.order_failed {
            self.order_failed = order.saturating_add(1);
        }
    }

    /// Has compaction at `order` failed so often that it should restart from scratch,
    /// clearing the pageblock skip hints (Linux's `compaction_restarting`)? True once the
    /// longest deferral has fully elapsed.
    pub fn compaction_restarting(&self, order: u32) -> bool {
        if order < self.order_failed {
            return false;
        }
        self.defer_shift == COMPACT_MAX_DEFER_SHIFT && self.considered >= self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mmzone::MAX_PAGE_ORDER;

    fn free(list: &[(usize, u64)]) -> [u64; NR_PAGE_ORDERS] {
        let mut nr = [0u64; NR_PAGE_ORDERS];
        for &(o, n) in list {
            nr[o] = n;
        }
        nr
    }

    #[test]
    fn contig_info() {
        let nr = free(&[(0, 10), (1, 4), (3, 2), (10, 1)]);
        let info = fill_contig_page_info(2, &nr);
        assert_eq!(info.free_pages, 10 + 8 + 16 + 1024);
        assert_eq!(info.free_blocks_total, 17);
        assert_eq!(info.free_blocks_suitable, 2 * 2 + 256);
        let huge = fill_contig_page_info(0, &[u64::MAX; NR_PAGE_ORDERS]);
        assert_eq!(huge.free_pages, u64::MAX);
        assert_eq!(huge.free_blocks_suitable, u64::MAX);
    }

    #[test]
    fn fragmentation_index_cases() {
        // Nothing free at all.
        assert_eq!(fragmentation_index(3, &[0; NR_PAGE_ORDERS]), Some(0));
        // A suitable block exists.
        assert_eq!(fragmentation_index(3, &free(&[(4, 1)])), Some(-1000));
        // 1000 single pages, want order 4: 1000 - (1000 + 1000*1000/16)/1000 = 1000 - 63.
        assert_eq!(fragmentation_index(4, &free(&[(0, 1000)])), Some(937));
        // Two order-0 pages, want order 10: lack of memory: 1000 - (1000+1)/2 = 500.
        assert_eq!(fragmentation_index(10, &free(&[(0, 2)])), Some(500));
        // One order-9 block, want order 10: 1000 - (1000 + 500)/1 = -500.
        assert_eq!(fragmentation_index(10, &free(&[(9, 1)])), Some(-500));
        // Many order-3 blocks, want 9: 1000 - (1000 + 4096*8*1000/512)/4096 = 985.
        assert_eq!(fragmentation_index(9, &free(&[(3, 4096)])), Some(985));
        assert_eq!(
            fragmentation_index(MAX_PAGE_ORDER + 1, &free(&[(0, 1)])),
            None
        );
        assert_eq!(
            fragmentation_index(10, &[u64::MAX; NR_PAGE_ORDERS]),
            Some(-1000)
        );
    }

    #[test]
    fn unusable_index_cases() {
        assert_eq!(unusable_free_index(0, &[0; NR_PAGE_ORDERS]), Some(1000));
        assert_eq!(unusable_free_index(0, &free(&[(0, 5)])), Some(0));
        // 10 + 8 + 16 + 1024 free; order 2 usable: 16 + 1024.
        let nr = free(&[(0, 10), (1, 4), (3, 2), (10, 1)]);
        assert_eq!(unusable_free_index(2, &nr), Some(17));
        assert_eq!(unusable_free_index(10, &nr), Some(32));
        assert_eq!(unusable_free_index(10, &free(&[(0, 3)])), Some(1000));
        assert_eq!(unusable_free_index(11, &nr), None);
    }

    #[test]
    fn scores() {
        // 3/4 of free memory below pageblock order.
        let nr = free(&[(0, 512), (1, 512), (9, 1), (10, 0)]);
        assert_eq!(extfrag_for_order(9, &nr), 75);
        assert_eq!(fragmentation_score_zone(&nr), 75);
        assert_eq!(extfrag_for_order(9, &[0; NR_PAGE_ORDERS]), 0);
        assert_eq!(extfrag_for_order(99, &free(&[(10, 1)])), 0);
        // Node: DMA (4000 present, score 100) barely counts; Normal dominates.
        let node = fragmentation_score_node(1_000_000, [(4_000, 100), (0, 100), (996_000, 90)]);
        assert_eq!(node, 89);
        assert_eq!(fragmentation_score_zone_weighted(4_000, 1_000_000, 100), 0);
        assert_eq!(
            fragmentation_score_zone_weighted(u64::MAX, 0, 100),
            u32::MAX
        );
    }

    #[test]
    fn proactive_thresholds() {
        assert_eq!(fragmentation_score_wmark(20, true), 80);
        assert_eq!(fragmentation_score_wmark(20, false), 90);
        assert_eq!(fragmentation_score_wmark(90, true), 10);
        assert_eq!(fragmentation_score_wmark(90, false), 15);
        assert_eq!(fragmentation_score_wmark(100, false), 0);
        assert_eq!(fragmentation_score_wmark(0, false), 100);
        assert_eq!(fragmentation_score_wmark(500, true), 0);
        assert!(should_proactive_compact_node(91, 20));
        assert!(!should_proactive_compact_node(90, 20));
        assert!(!should_proactive_compact_node(100, 0));
    }

    #[test]
    fn suitability() {
        assert_eq!(compact_gap(0), 2);
        assert_eq!(compact_gap(9), 1024);
        assert_eq!(compact_gap(70), u64::MAX);
        let w = Watermarks {
            min: 100,
            low: 200,
            high: 300,
            boost: 10,
        };
        assert_eq!(compaction_watermark(3, &w), 110 + 16);
        assert_eq!(compaction_watermark(4, &w), 210 + 32);
        use CompactSuitable::*;
        assert_eq!(
            compaction_suitable(9, false, 900, EXTFRAG_THRESHOLD),
            Skipped
        );
        assert_eq!(
            compaction_suitable(9, true, 900, EXTFRAG_THRESHOLD),
            Continue
        );
        assert_eq!(
            compaction_suitable(9, true, 500, EXTFRAG_THRESHOLD),
            NotSuitableZone
        );
        assert_eq!(
            compaction_suitable(9, true, 0, EXTFRAG_THRESHOLD),
            NotSuitableZone
        );
        assert_eq!(
            compaction_suitable(9, true, -1000, EXTFRAG_THRESHOLD),
            Continue
        );
        assert_eq!(
            compaction_suitable(3, true, 100, EXTFRAG_THRESHOLD),
            Continue
        );
    }

    #[test]
    fn deferral_state_machine() {
        let mut d = CompactDefer::new();
        assert_eq!(d, CompactDefer::default());
        // Never failed: never deferred.
        assert!(!d.compaction_deferred(9));
        assert!(!d.compaction_restarting(9));

        d.defer_compaction(9);
        assert_eq!(d.defer_shift, 1);
        assert_eq!(d.considered, 0);
        // order_failed started at 0: min(0, 9) stays 0.
        assert_eq!(d.order_failed, 0);
        d.compaction_defer_reset(4, false);
        assert_eq!(d.order_failed, 5);
        assert_eq!(d.defer_shift, 1);
        // Orders below order_failed are never deferred.
        assert!(!d.compaction_deferred(4));
        // shift 1: skip one attempt, then allow.
        assert!(d.compaction_deferred(5));
        assert!(!d.compaction_deferred(5));
        assert!(!d.compaction_deferred(5));
        assert_eq!(d.considered, 2);

        // Repeated failures saturate the shift at 6: 63 skips, then a try.
        for _ in 0..10 {
            d.defer_compaction(7);
        }
        assert_eq!(d.defer_shift, COMPACT_MAX_DEFER_SHIFT);
        assert_eq!(d.order_failed, 5);
        for i in 0..63 {
            assert!(d.compaction_deferred(8), "attempt {i}");
            assert!(!d.compaction_restarting(8));
        }
        assert!(!d.compaction_deferred(8));
        assert_eq!(d.considered, 64);
        assert!(d.compaction_restarting(8));
        assert!(!d.compaction_restarting(4));

        // Success resets and raises order_failed past the order.
        d.compaction_defer_reset(8, true);
        assert_eq!(
            d,
            CompactDefer {
                considered: 0,
                defer_shift: 0,
                order_failed: 9
            }
        );
        assert!(!d.compaction_deferred(9));
        // Absurd values never panic.
        let mut d = CompactDefer {
            considered: u32::MAX,
            defer_shift: u32::MAX,
            order_failed: 0,
        };
        assert!(!d.compaction_deferred(3));
        d.compaction_defer_reset(u32::MAX, false);
        assert_eq!(d.order_failed, u32::MAX);
        d.defer_compaction(1);
        assert_eq!(d.defer_shift, COMPACT_MAX_DEFER_SHIFT);
    }
}
