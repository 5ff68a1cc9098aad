//! Per-CPU page lists ("pcp"): sizing rules and list indexing.
//!
//! Most allocations are single pages, and most of those are freed again soon. Taking the
//! zone lock for each one would make that lock the hottest cache line in the system, so
//! each CPU keeps a small private stock of free pages per zone. Allocation takes from it
//! with only local interrupts disabled; when it is empty it is refilled with `batch` pages
//! in one zone-lock hold (`rmqueue_bulk`), and when freeing fills it past `high` it gives
//! back a batch, again in one lock hold (`free_pcppages_bulk`). The lock is thus taken
//! once per `batch` pages instead of once per page. Both bites grow while the traffic is
//! one-way, as in Linux: consecutive drains free twice as much each (`free_factor`, as in
//! v5.14 to v6.6), consecutive refills take twice as much each (`alloc_factor`, v6.7; see
//! [`nr_pcp_alloc`]), both bounded by `high`.
//!
//! This module holds the *rules* only, as pure functions, so they can be tested against
//! Linux's numbers before the lists exist:
//!
//! - [`zone_batchsize`]: about 1/4096 of the zone, at most 64, then rounded to
//!   `2^n - 1`. The batch is capped because a larger batch means a longer zone-lock hold
//!   and more pages stranded on remote CPUs; it is kept one below a power of two because
//!   power-of-two batches were found to make successive refills alias in the CPU caches.
//! - [`zone_highsize`]: the zone's low watermark split between the CPUs that share the
//!   zone. If every CPU's list were full, the pages hidden in them would be about what the
//!   zone keeps above its low mark, so hoarding on pcp lists alone cannot wake reclaim.
//!   Never less than four batches, so a list can absorb a refill plus a few frees.
//! - [`order_to_pindex`] / [`pindex_to_order`]: orders 0 to `PAGE_ALLOC_COSTLY_ORDER`
//!   have one list per pcp migratetype; pageblock-order (THP-sized) pages have two
//!   lists, movable and not, so a huge page freed by one task can be reused by the next
//!   without a trip through the buddy lists. HighAtomic and CMA pages ride on the Movable
//!   list (their real type is re-read when they go back to the buddy allocator); Isolate
//!   pages never enter a pcp list.
//!
//! The lists themselves are [`PerCpuPages`]: one per CPU per populated zone, each behind
//! its own lock (Linux's `pcp->lock`, here a [`PcpLock`]). The owning CPU takes that lock
//! with interrupts disabled, on a platform with a cross-CPU barrier with two plain stores
//! and no atomic instruction, and backs off to the buddy lists if another CPU holds it;
//! the lock exists so that *another* CPU can drain the lists (`drain_all_pages`) or change
//! their sizes without interrupting the owner, paying the barrier for it. Refilling and draining against the buddy lists is done by
//! [`crate::page_alloc`] (`rmqueue_bulk`, `free_pcppages_bulk`), which holds the pcp lock
//! and then the zone lock, never the reverse.
//!
//! `count` is in base pages, like `high` and `batch`; a pageblock-order page on a list
//! counts 512. Pages on pcp lists are *not* free in the zone's `NR_FREE_PAGES`: they are
//! already taken from the buddy allocator, and counting them as free would let the
//! watermark checks pass on pages no other CPU can get at.

use core::ptr::NonNull;

use crate::model::list::PageList;
use crate::model::mmzone::{
    MIGRATE_PCPTYPES, Migratetype, PAGE_ALLOC_COSTLY_ORDER, PAGEBLOCK_ORDER,
};
use crate::model::page::Page;
use crate::port::pcp_lock::PcpLock;

/// Lists for the low orders: one per pcp migratetype for each order `0..=3`.
pub const NR_LOWORDER_PCP_LISTS: usize = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER as usize + 1);
/// Lists for pageblock-order pages: one for movable pages, one for the rest.
pub const NR_PCP_THP: usize = 2;
/// Lists per per-CPU pageset.
pub const NR_PCP_LISTS: usize = NR_LOWORDER_PCP_LISTS + NR_PCP_THP;

/// `high` of the boot pageset used before the zones are sized: 0, i.e. every freed page
/// goes straight back to the buddy allocator.
pub const BOOT_PAGESET_HIGH: u64 = 0;
/// `batch` of the boot pageset.
pub const BOOT_PAGESET_BATCH: u64 = 1;
/// Smallest accepted non-zero `vm.percpu_pagelist_high_fraction`: no CPU may hoard more
/// than 1/8 of a zone.
pub const MIN_PERCPU_PAGELIST_HIGH_FRACTION: u64 = 8;

/// True when pages of `order` may be kept on pcp lists (Linux's `pcp_allowed_order`).
#[inline]
pub const fn pcp_allowed_order(order: u32) -> bool {
    order <= PAGE_ALLOC_COSTLY_ORDER || order == PAGEBLOCK_ORDER
}

/// The pcp list for pages of `migratetype` and `order` (Linux's `order_to_pindex`, plus
/// the type folding `free_unref_page` does), or `None` if such pages bypass the pcp lists
/// (an order not in [`pcp_allowed_order`], or MIGRATE_ISOLATE).
///
/// Low orders use `3 * order + type`; pageblock order uses list 12 for unmovable and
/// reclaimable pages and 13 for movable ones. HighAtomic and CMA pages use the Movable
/// lists.
#[inline]
pub const fn order_to_pindex(migratetype: Migratetype, order: u32) -> Option<usize> {
    let mt = match migratetype {
        Migratetype::Unmovable | Migratetype::Movable | Migratetype::Reclaimable => migratetype,
        Migratetype::HighAtomic | Migratetype::Cma => Migratetype::Movable,
        Migratetype::Isolate => return None,
    };
    if order <= PAGE_ALLOC_COSTLY_ORDER {
        Some(MIGRATE_PCPTYPES * order as usize + mt as usize)
    } else if order == PAGEBLOCK_ORDER {
        let movable = matches!(mt, Migratetype::Movable) as usize;
        Some(NR_LOWORDER_PCP_LISTS + movable)
    } else {
        None
    }
}

/// The order of the pages on pcp list `pindex` (Linux's `pindex_to_order`), or `None` for
/// an index past [`NR_PCP_LISTS`].
#[inline]
pub const fn pindex_to_order(pindex: usize) -> Option<u32> {
    if pindex < NR_LOWORDER_PCP_LISTS {
        Some((pindex / MIGRATE_PCPTYPES) as u32)
    } else if pindex < NR_PCP_LISTS {
        Some(PAGEBLOCK_ORDER)
    } else {
        None
    }
}

/// Largest power of two `<= x` (0 for 0).
const fn rounddown_pow_of_two(x: u64) -> u64 {
    if x == 0 {
        0
    } else {
        1 << (63 - x.leading_zeros())
    }
}

/// The pcp `batch` of a zone with `managed` pages (Linux's `zone_batchsize`, with the
/// `max(1, ...)` its caller applies).
///
/// `batch = min(managed / 4096, 64)` (1 MiB worth of pages per 4 GiB of zone, at most
/// 256 KiB), then `rounddown_pow_of_two(batch * 3 / 2) - 1`: 63 for zones of 256 MiB
/// and more. Zones too small for that get a batch of 1.
pub const fn zone_batchsize(managed: u64) -> u64 {
    let mut batch = managed >> 12;
    if batch > 64 {
        batch = 64;
    }
    if batch <= 1 {
        return 1;
    }
    let b = rounddown_pow_of_two(batch + batch / 2) - 1;
    if b < 1 { 1 } else { b }
}

/// The pcp `high` mark of a zone (Linux's `zone_highsize`).
///
/// With `high_fraction == 0` (the default `vm.percpu_pagelist_high_fraction`) the pages
/// the CPUs may hold together are the zone's low watermark; otherwise they are
/// `managed / high_fraction`. That total is split between `nr_cpus_sharing` CPUs (the
/// CPUs local to the zone's node; 0 is treated as 1) and never set below `4 * batch`.
pub const fn zone_highsize(
    managed: u64,
    low_wmark: u64,
    nr_cpus_sharing: u64,
    batch: u64,
    high_fraction: u64,
) -> u64 {
    let total = match managed.checked_div(high_fraction) {
        Some(share) => share,
        None => low_wmark,
    };
    let cpus = if nr_cpus_sharing == 0 {
        1
    } else {
        nr_cpus_sharing
    };
    let high = total / cpus;
    let floor = batch.saturating_mul(4);
    if high > floor { high } else { floor }
}

/// The sizes of one zone's pcp lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcpSizing {
    /// Pages moved per refill or drain.
    pub batch: u64,
    /// A CPU's list is drained when it holds this many pages.
    pub high: u64,
}

/// `batch` and `high` for a zone (Linux's `zone_set_pageset_high_and_batch`, without
/// the dynamic high tuning of v6.7+: `high` is fixed at its floor value).
pub const fn pageset_high_and_batch(
    managed: u64,
    low_wmark: u64,
    nr_cpus_sharing: u64,
    high_fraction: u64,
) -> PcpSizing {
    let batch = zone_batchsize(managed);
    let high = zone_highsize(managed, low_wmark, nr_cpus_sharing, batch, high_fraction);
    PcpSizing { batch, high }
}

/// The state behind a pcp lock (the body of Linux's `struct per_cpu_pages`).
#[derive(Debug)]
pub struct PcpLists {
    /// Base pages on all lists.
    pub count: u64,
    /// Drain when `count` reaches this.
    pub high: u64,
    /// Pages moved per refill or drain.
    pub batch: u64,
    /// Frees since the last allocation, as a shift: each drain without an intervening
    /// allocation frees twice as much, up to `high - batch` (`free_factor`).
    pub free_factor: u32,
    /// Refills since the last free, as a shift: each order-0 refill without an
    /// intervening free takes twice as much, up to what fits below `high`
    /// (`alloc_factor`, see [`nr_pcp_alloc`]).
    pub alloc_factor: u32,
    lists: [PageList; NR_PCP_LISTS],
}

impl PcpLists {
    /// Empty lists with the given sizes.
    pub const fn new(high: u64, batch: u64) -> PcpLists {
        PcpLists {
            count: 0,
            high,
            batch,
            free_factor: 0,
            alloc_factor: 0,
            lists: [const { PageList::new() }; NR_PCP_LISTS],
        }
    }

    /// List `pindex` (see [`order_to_pindex`]).
    #[inline]
    pub fn list(&self, pindex: usize) -> &PageList {
        &self.lists[pindex]
    }

    /// Link a page at the head of list `pindex` (`list_add`: the most recently freed page
    /// is the first reused, while it is still hot in the cache). Counts are the caller's.
    ///
    /// # Safety
    ///
    /// `page` is a memmap descriptor that is on no list (its last reference was just
    /// dropped, or it was just taken off a buddy list), and the caller holds this pcp's
    /// lock (it has `&mut self`) with interrupts disabled.
    #[inline]
    pub unsafe fn push_front(&mut self, pindex: usize, page: &Page) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.lists[pindex].push_front(page) };
    }

    /// Link a page at the tail of list `pindex` (refills keep physical order).
    ///
    /// # Safety
    ///
    /// As for [`PcpLists::push_front`].
    #[inline]
    pub unsafe fn push_back(&mut self, pindex: usize, page: &Page) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { self.lists[pindex].push_back(page) };
    }

    /// Unlink the first page of list `pindex` (allocation side).
    #[inline]
    pub fn pop_front(&mut self, pindex: usize) -> Option<NonNull<Page>> {
        // SAFETY: `&mut self` means the caller holds this pcp's lock, which protects the
        // list.
        unsafe { self.lists.get_mut(pindex)?.pop_front() }
    }

    /// Unlink the last page of list `pindex` (drain side: the coldest page).
    #[inline]
    pub fn pop_back(&mut self, pindex: usize) -> Option<NonNull<Page>> {
        // SAFETY: as in `pop_front`.
        unsafe { self.lists.get_mut(pindex)?.pop_back() }
    }

    /// Unlink up to `max` pages from the tail of list `pindex`, coldest first, handing
    /// them to `run` as runs of adjacent descriptors that `joins`
    /// ([`PageList::drain_back_runs`]); returns how many. Counts are the caller's.
    #[inline]
    pub fn drain_back_runs(
        &mut self,
        pindex: usize,
        max: usize,
        joins: impl Fn(&Page, &Page) -> bool,
        run: impl FnMut(NonNull<Page>, NonNull<Page>),
    ) -> usize {
        match self.lists.get_mut(pindex) {
            // SAFETY: `&mut self` means the caller holds this pcp's lock, which protects
            // the list, and `run` cannot reach it (this borrow is exclusive).
            Some(l) => unsafe { l.drain_back_runs(max, joins, run) },
            None => 0,
        }
    }

    /// Iterate the pages of list `pindex`.
    pub fn iter(&self, pindex: usize) -> impl Iterator<Item = NonNull<Page>> + '_ {
        // SAFETY: `&self` borrowed from the lock guard: the list cannot change meanwhile.
        unsafe { self.lists[pindex].iter() }
    }
}

/// How far a run of order-0 refills may scale the batch up: `batch << 5` at most
/// (Linux's `CONFIG_PCP_BATCH_SCALE_MAX` default).
pub const PCP_BATCH_SCALE_MAX: u32 = 5;

/// Pages a refill of a list of `order` takes from the buddy lists (`nr_pcp_alloc`, v6.7),
/// and the list's next `alloc_factor`. For order 0, `batch << alloc_factor` base pages, but
/// no more than fit below `high` (at least `batch`); each refill that is not so capped
/// raises `alloc_factor` by one, up to [`PCP_BATCH_SCALE_MAX`], and every free into the
/// list halves it. So a CPU that keeps allocating without freeing (a burst, a process
/// faulting in its memory) refills in doubling bites: fewer zone-lock round trips, and
/// fewer trips of the zone's lines between CPUs that refill at once. For higher orders
/// `batch >> order` blocks, at least 2, and `alloc_factor` is left alone. A batch of 1
/// (boot or tiny zones) never stores pages.
#[inline]
pub const fn nr_pcp_alloc(
    count: u64,
    high: u64,
    batch: u64,
    order: u32,
    alloc_factor: u32,
) -> (u64, u32) {
    if high < batch {
        return (1, alloc_factor);
    }
    if order == 0 {
        let scaled = if alloc_factor >= 63 {
            u64::MAX
        } else {
            batch.saturating_mul(1 << alloc_factor)
        };
        let room = high.saturating_sub(count).saturating_sub(batch);
        let max_nr_alloc = if room > batch { room } else { batch };
        let next = if scaled <= max_nr_alloc && alloc_factor < PCP_BATCH_SCALE_MAX {
            alloc_factor + 1
        } else {
            alloc_factor
        };
        let n = if scaled < max_nr_alloc {
            scaled
        } else {
            max_nr_alloc
        };
        return (n, next);
    }
    if batch > 1 {
        let b = batch >> order;
        (if b > 2 { b } else { 2 }, alloc_factor)
    } else {
        (1, alloc_factor)
    }
}

/// Base pages a drain frees once `count` reached `high` (`nr_pcp_free`): `batch`, doubled
/// for every drain since the last allocation (`free_factor`), kept within
/// `[batch, high - batch]` so a list never empties completely on a drain.
#[inline]
pub const fn nr_pcp_free(high: u64, batch: u64, free_factor: u32) -> u64 {
    if high < batch {
        return 1;
    }
    let min_nr_free = batch;
    let max_nr_free = high - batch;
    let scaled = if free_factor >= 63 {
        u64::MAX
    } else {
        batch.saturating_mul(1 << free_factor)
    };
    let v = if scaled > max_nr_free {
        max_nr_free
    } else {
        scaled
    };
    if v < min_nr_free { min_nr_free } else { v }
}

/// One CPU's pcp lists for one zone, with their lock (`struct per_cpu_pages`). Cache-line
/// aligned, and allocated inside its CPU's per-CPU area, so the owner's fast path never
/// writes a line another CPU writes.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct PerCpuPages {
    /// `pcp->lock` and what it protects.
    pub lock: PcpLock<PcpLists>,
}

impl PerCpuPages {
    /// Empty lists of CPU `cpu` with the given sizes.
    pub const fn new(cpu: u32, high: u64, batch: u64) -> PerCpuPages {
        PerCpuPages {
            lock: PcpLock::new(cpu, PcpLists::new(high, batch)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mmzone::NR_PAGE_ORDERS;

    #[test]
    fn refill_and_drain_amounts() {
        // Order 0: a batch, unless the list is nearly at high; a refill that fits raises
        // the factor.
        assert_eq!(nr_pcp_alloc(0, 252, 63, 0, 0), (63, 1));
        assert_eq!(nr_pcp_alloc(200, 252, 63, 0, 0), (63, 1));
        // Scaled by the factor, within the room below high (at least a batch); a capped
        // refill leaves the factor where it is.
        assert_eq!(nr_pcp_alloc(0, 1000, 63, 0, 1), (126, 2));
        assert_eq!(nr_pcp_alloc(0, 1000, 63, 0, 3), (504, 4));
        assert_eq!(nr_pcp_alloc(0, 1000, 63, 0, 4), (937, 4));
        assert_eq!(nr_pcp_alloc(900, 1000, 63, 0, 4), (63, 4));
        assert_eq!(nr_pcp_alloc(0, 252, 63, 0, 2), (189, 2));
        // Never past PCP_BATCH_SCALE_MAX, nor an overflow for an absurd factor.
        assert_eq!(nr_pcp_alloc(0, 100_000, 63, 0, 5), (63 << 5, 5));
        assert_eq!(nr_pcp_alloc(0, 100_000, 63, 0, 70), (100_000 - 63, 70));
        // Higher orders: batch >> order blocks, at least two; the factor is left alone.
        assert_eq!(nr_pcp_alloc(0, 252, 63, 1, 3), (31, 3));
        assert_eq!(nr_pcp_alloc(0, 252, 63, 3, 0), (7, 0));
        assert_eq!(nr_pcp_alloc(0, 252, 63, 9, 0), (2, 0));
        assert_eq!(nr_pcp_alloc(0, 4, 1, 9, 0), (1, 0));
        assert_eq!(nr_pcp_alloc(0, 0, 1, 0, 2), (1, 2));
        // Drains: batch, doubling while frees continue, capped at high - batch.
        assert_eq!(nr_pcp_free(252, 63, 0), 63);
        assert_eq!(nr_pcp_free(252, 63, 1), 126);
        assert_eq!(nr_pcp_free(252, 63, 2), 189);
        assert_eq!(nr_pcp_free(252, 63, 40), 189);
        assert_eq!(nr_pcp_free(4, 1, 0), 1);
        assert_eq!(nr_pcp_free(4, 1, 5), 3);
        assert_eq!(nr_pcp_free(0, 1, 0), 1);
        assert_eq!(core::mem::align_of::<PerCpuPages>(), 64);
    }

    #[test]
    fn list_counts() {
        assert_eq!(NR_LOWORDER_PCP_LISTS, 12);
        assert_eq!(NR_PCP_LISTS, 14);
    }

    #[test]
    fn pindex_layout() {
        use Migratetype::*;
        assert_eq!(order_to_pindex(Unmovable, 0), Some(0));
        assert_eq!(order_to_pindex(Movable, 0), Some(1));
        assert_eq!(order_to_pindex(Reclaimable, 0), Some(2));
        assert_eq!(order_to_pindex(Unmovable, 1), Some(3));
        assert_eq!(order_to_pindex(Reclaimable, 3), Some(11));
        assert_eq!(order_to_pindex(Unmovable, 9), Some(12));
        assert_eq!(order_to_pindex(Reclaimable, 9), Some(12));
        assert_eq!(order_to_pindex(Movable, 9), Some(13));
        // Reserve types ride on the Movable lists; Isolate bypasses pcp.
        assert_eq!(order_to_pindex(HighAtomic, 2), Some(7));
        assert_eq!(order_to_pindex(Cma, 0), Some(1));
        assert_eq!(order_to_pindex(Cma, 9), Some(13));
        assert_eq!(order_to_pindex(Isolate, 0), None);
        // Orders that are neither low nor pageblock bypass pcp.
        for order in 4..PAGEBLOCK_ORDER {
            assert_eq!(order_to_pindex(Movable, order), None);
            assert!(!pcp_allowed_order(order));
        }
        assert_eq!(order_to_pindex(Movable, 10), None);
        assert_eq!(order_to_pindex(Movable, u32::MAX), None);
    }

    #[test]
    fn pindex_round_trip() {
        for order in 0..NR_PAGE_ORDERS as u32 {
            for mt in Migratetype::ALL {
                if let Some(p) = order_to_pindex(mt, order) {
                    assert!(p < NR_PCP_LISTS);
                    assert_eq!(pindex_to_order(p), Some(order));
                }
            }
        }
        assert_eq!(pindex_to_order(NR_PCP_LISTS), None);
        assert_eq!(pindex_to_order(usize::MAX), None);
    }

    #[test]
    fn batch_sizes() {
        assert_eq!(zone_batchsize(0), 1);
        assert_eq!(zone_batchsize(3_976), 1); // DMA: 0 -> 1
        assert_eq!(zone_batchsize(8_191), 1); // 1 -> 1
        assert_eq!(zone_batchsize(8_192), 1); // 2 -> 3 -> 2 - 1
        assert_eq!(zone_batchsize(12_288), 3); // 3 -> 4 - 1
        assert_eq!(zone_batchsize(16_384), 3); // 4 -> 6 -> 4 - 1
        assert_eq!(zone_batchsize(65_536), 15); // 16 -> 24 -> 16 - 1
        assert_eq!(zone_batchsize(720_847), 63); // 175 -> 64 -> 96 -> 64 - 1
        assert_eq!(zone_batchsize(u64::MAX), 63);
    }

    #[test]
    fn high_sizes() {
        // Default: low watermark split across CPUs, floor 4 * batch.
        assert_eq!(zone_highsize(1_287_250, 3_101, 4, 63, 0), 775);
        assert_eq!(zone_highsize(1_287_250, 3_101, 64, 63, 0), 252);
        assert_eq!(zone_highsize(3_976, 8, 2, 1, 0), 4);
        // No CPUs local to the node: treated as one.
        assert_eq!(zone_highsize(1_287_250, 3_101, 0, 63, 0), 3_101);
        // percpu_pagelist_high_fraction = 8: managed / 8 / cpus.
        assert_eq!(zone_highsize(1_287_250, 3_101, 4, 63, 8), 40_226);
        assert_eq!(zone_highsize(1_000, 3_101, 4, 63, 8), 252);
        assert_eq!(zone_highsize(u64::MAX, u64::MAX, 1, u64::MAX, 0), u64::MAX);
        assert_eq!(
            pageset_high_and_batch(1_287_250, 3_101, 2, 0),
            PcpSizing {
                batch: 63,
                high: 1_550
            }
        );
    }
}
