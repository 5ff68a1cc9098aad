//! Per-CPU page lists ("pcp"): sizing rules and list indexing.
//!
//! Most allocations are single pages, and most of those are freed again soon. Taking the
//! zone lock for each one would make that lock the hottest cache line in the system, so
//! each CPU keeps a small private stock of free pages per zone. Allocation takes from it
//! with only local interrupts disabled; when it is empty it is refilled with `batch` pages
//! in one zone-lock hold (`rmqueue_bulk`), and when freeing fills it past `high` it gives
//! back a batch, again in one lock hold (`free_pcppages_bulk`). The lock is thus taken
//! once per `batch` pages instead of once per page.
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
//! The lists themselves (refill, drain, remote drain under the per-pcp lock) come with the
//! buddy allocator; nothing here allocates or frees.

use crate::mmzone::{MIGRATE_PCPTYPES, Migratetype, PAGE_ALLOC_COSTLY_ORDER, PAGEBLOCK_ORDER};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmzone::NR_PAGE_ORDERS;

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
