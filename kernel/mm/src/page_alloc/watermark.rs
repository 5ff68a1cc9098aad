//! Watermarks: how much free memory each zone keeps in reserve, and the check every
//! allocation makes against them.
//!
//! A zone that runs completely dry cannot serve the allocations needed to *free* memory
//! (interrupt handlers, I/O completion, the compaction and migration machinery itself). So
//! Linux keeps three marks per zone and this module computes them the same way:
//!
//! - **min**: normal allocations never go below it; only high-priority and non-blocking
//!   requests ([`AllocFlags::MIN_RESERVE`], [`AllocFlags::NON_BLOCK`], [`AllocFlags::OOM`])
//!   may dig into a fraction of it. The system-wide amount, `min_free_kbytes`, grows with
//!   the *square root* of memory ([`min_free_kbytes`]): a reserve proportional to memory
//!   would waste gigabytes on large machines, while the burst of atomic allocations it
//!   must absorb grows much more slowly than memory does. It is split between zones in
//!   proportion to their size; ZONE_MOVABLE, which cannot serve kernel allocations anyway,
//!   gets only a small fixed reserve.
//! - **low** and **high**: the gap between the marks is *scaled* with the zone size
//!   (`watermark_scale_factor`, 0.1% by default) and not only derived from min. On a large
//!   zone min is tiny relative to the allocation rate, and a background reclaimer woken at
//!   low would be overrun before it reached high; scaling the gaps gives it headroom.
//! - **boost**: after an allocation had to steal from a pageblock of another mobility
//!   type, the marks are temporarily raised ([`boost_watermark`]) so that reclaim and
//!   compaction run early, before fragmentation spreads; the boost decays as they work.
//!   Accessors ([`Watermarks::min_wmark_pages`], ...) include it, as Linux's do.
//!
//! Separately, `lowmem_reserve` ([`setup_zone_lowmem_reserve`]) protects the small low
//! zones (DMA, DMA32) from allocations that could have been served higher up: a request
//! that *may* use Normal must leave `lowmem_reserve[Normal]` extra pages in DMA32,
//! because a request that *needs* DMA32 has nowhere else to go.
//!
//! [`zone_watermark_ok`] is Linux's `__zone_watermark_ok`, as a pure function over a small
//! snapshot ([`ZoneFreeState`]). Two kinds of free pages are subtracted before comparing:
//! free pages in MIGRATE_HIGHATOMIC blocks, unless the caller may use reserves, because
//! they are set aside for high-order atomic allocations and counting them would let
//! ordinary requests pass a check they then cannot be served by; and free CMA pages,
//! unless the caller may use CMA, for the same reason.

#![deny(unsafe_code)]

use crate::model::mmzone::{
    MAX_NR_ZONES, Migratetype, NR_PAGE_ORDERS, PAGE_SHIFT, PAGEBLOCK_NR_PAGES, WatermarkKind,
    ZoneType,
};
use crate::page_alloc::gfp::AllocFlags;

/// Lower bound of the computed `min_free_kbytes` (128 KiB).
pub const MIN_FREE_KBYTES_FLOOR: u64 = 128;
/// Upper bound of the computed `min_free_kbytes` (256 MiB).
pub const MIN_FREE_KBYTES_CEILING: u64 = 262_144;
/// Default `vm.watermark_scale_factor`, in units of 1/10000 of the zone (0.1%).
pub const WATERMARK_SCALE_FACTOR: u64 = 10;
/// Default `vm.watermark_boost_factor`, in units of 1/10000 of the high mark (150%).
pub const WATERMARK_BOOST_FACTOR: u64 = 15_000;
/// Default `vm.lowmem_reserve_ratio`, per zone: DMA 256, DMA32 256, Normal 32, Movable 0.
pub const LOWMEM_RESERVE_RATIO: [u64; MAX_NR_ZONES] = [256, 256, 32, 0];
/// `SWAP_CLUSTER_MAX`: the floor of ZONE_MOVABLE's min watermark.
pub const SWAP_CLUSTER_MAX: u64 = 32;

/// A zone's three watermarks plus its current boost (Linux's `_watermark[]` and
/// `watermark_boost`). The fields are the unboosted marks; the accessors add the boost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Watermarks {
    /// Unboosted `WMARK_MIN`.
    pub min: u64,
    /// Unboosted `WMARK_LOW`.
    pub low: u64,
    /// Unboosted `WMARK_HIGH`.
    pub high: u64,
    /// Temporary boost after fragmenting fallbacks (`watermark_boost`).
    pub boost: u64,
}

impl Watermarks {
    /// `min_wmark_pages`: the min mark including the boost.
    #[inline]
    pub const fn min_wmark_pages(&self) -> u64 {
        self.min.saturating_add(self.boost)
    }

    /// `low_wmark_pages`: the low mark including the boost.
    #[inline]
    pub const fn low_wmark_pages(&self) -> u64 {
        self.low.saturating_add(self.boost)
    }

    /// `high_wmark_pages`: the high mark including the boost.
    #[inline]
    pub const fn high_wmark_pages(&self) -> u64 {
        self.high.saturating_add(self.boost)
    }

    /// `wmark_pages(zone, kind)`: the selected mark including the boost.
    #[inline]
    pub const fn wmark_pages(&self, kind: WatermarkKind) -> u64 {
        self.unboosted(kind).saturating_add(self.boost)
    }

    /// The selected mark without the boost.
    #[inline]
    pub const fn unboosted(&self, kind: WatermarkKind) -> u64 {
        match kind {
            WatermarkKind::Min => self.min,
            WatermarkKind::Low => self.low,
            WatermarkKind::High => self.high,
        }
    }
}

/// Exact integer square root: the largest `r` with `r * r <= x` (Linux's `int_sqrt`).
pub const fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    // Bit-by-bit method: build the root from the highest possible bit downwards.
    let mut rem = x;
    let mut root: u64 = 0;
    // Highest power of four <= x.
    let mut bit: u64 = 1 << ((63 - x.leading_zeros()) & !1);
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// `min_free_kbytes` for `lowmem_kbytes` of low memory:
/// `clamp(int_sqrt(lowmem_kbytes * 16), 128, 262144)`.
///
/// The square root makes the reserve grow sub-linearly: 16 MiB of RAM keeps 512 KiB,
/// 1 GiB keeps 4 MiB, 16 GiB keeps 16 MiB, 1 TiB keeps 128 MiB.
pub const fn min_free_kbytes(lowmem_kbytes: u64) -> u64 {
    let root = int_sqrt(lowmem_kbytes.saturating_mul(16));
    if root < MIN_FREE_KBYTES_FLOOR {
        MIN_FREE_KBYTES_FLOOR
    } else if root > MIN_FREE_KBYTES_CEILING {
        MIN_FREE_KBYTES_CEILING
    } else {
        root
    }
}

/// One zone's type and managed page count: the input of the watermark computations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneManaged {
    /// The zone's type.
    pub zone: ZoneType,
    /// Pages the buddy allocator manages in the zone (`zone_managed_pages`).
    pub managed: u64,
}

/// Managed pages of the zones that can hold kernel allocations (every zone but
/// ZONE_MOVABLE; there is no highmem on 64-bit), over all nodes.
pub fn lowmem_pages(zones: &[ZoneManaged]) -> u64 {
    zones
        .iter()
        .filter(|z| z.zone != ZoneType::Movable)
        .fold(0u64, |acc, z| acc.saturating_add(z.managed))
}

/// [`lowmem_pages`] in KiB: the input of [`min_free_kbytes`].
pub fn lowmem_kbytes(zones: &[ZoneManaged]) -> u64 {
    lowmem_pages(zones).saturating_mul(1 << (PAGE_SHIFT - 10))
}

/// `a * b / c` without intermediate overflow, saturating the result; 0 when `c` is 0.
fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return 0;
    }
    let r = (a as u128) * (b as u128) / (c as u128);
    u64::try_from(r).unwrap_or(u64::MAX)
}

/// The watermarks of one zone (the body of Linux's `__setup_per_zone_wmarks`).
///
/// `pages_min` is `min_free_kbytes` in pages and `lowmem_pages` the managed pages of all
/// non-movable zones of all nodes. The zone's proportional share is
/// `tmp = pages_min * managed / lowmem_pages`; min is `tmp`, except in ZONE_MOVABLE where it
/// is `clamp(managed / 1024, 32, 128)` (kernel allocations never land there, so reserving
/// a proportional share would only waste it). The gaps are
/// `max(tmp / 4, managed * watermark_scale_factor / 10000)`: low = min + gap, high = low +
/// gap. The boost starts at 0.
pub fn zone_wmarks(
    zone: ZoneType,
    managed: u64,
    pages_min: u64,
    lowmem_pages: u64,
    watermark_scale_factor: u64,
) -> Watermarks {
    let share = mul_div(pages_min, managed, lowmem_pages);
    let min = if zone == ZoneType::Movable {
        (managed / 1024).clamp(SWAP_CLUSTER_MAX, 128)
    } else {
        share
    };
    let gap = (share >> 2).max(mul_div(managed, watermark_scale_factor, 10_000));
    let low = min.saturating_add(gap);
    let high = low.saturating_add(gap);
    Watermarks {
        min,
        low,
        high,
        boost: 0,
    }
}

/// Linux's `__setup_per_zone_wmarks` over every zone of every node: yields the
/// watermarks of `zones[i]` in order. `min_free_kbytes` is usually
/// `min_free_kbytes(lowmem_kbytes(zones))`; [`WATERMARK_SCALE_FACTOR`] is the default
/// scale factor.
pub fn setup_per_zone_wmarks(
    zones: &[ZoneManaged],
    min_free_kbytes: u64,
    watermark_scale_factor: u64,
) -> impl Iterator<Item = Watermarks> + '_ {
    let pages_min = min_free_kbytes >> (PAGE_SHIFT - 10);
    let lowmem = lowmem_pages(zones);
    zones
        .iter()
        .map(move |z| zone_wmarks(z.zone, z.managed, pages_min, lowmem, watermark_scale_factor))
}

/// The `lowmem_reserve` arrays of one node's zones (Linux's
/// `setup_per_zone_lowmem_reserve`), from the zones' managed pages (indexed by
/// [`ZoneType::index`]) and the ratios ([`LOWMEM_RESERVE_RATIO`] by default).
///
/// `result[i][j]` is how many pages zone `i` keeps back from a request whose highest
/// usable zone is `j`: the managed pages of zones `i+1..=j` divided by `ratio[i]`. It is
/// 0 for `j <= i`, for the highest zone, and for a zone that has no managed pages or a
/// zero ratio.
pub fn setup_zone_lowmem_reserve(
    managed: &[u64; MAX_NR_ZONES],
    ratio: &[u64; MAX_NR_ZONES],
) -> [[u64; MAX_NR_ZONES]; MAX_NR_ZONES] {
    let mut reserve = [[0u64; MAX_NR_ZONES]; MAX_NR_ZONES];
    for i in 0..MAX_NR_ZONES - 1 {
        let clear = ratio[i] == 0 || managed[i] == 0;
        let mut upper: u64 = 0;
        for j in i + 1..MAX_NR_ZONES {
            upper = upper.saturating_add(managed[j]);
            reserve[i][j] = if clear { 0 } else { upper / ratio[i] };
        }
    }
    reserve
}

/// The pages of one zone that `MemAvailable` must not count as available (one zone's
/// term of Linux's `calculate_totalreserve_pages`): its largest `lowmem_reserve` towards
/// itself or higher zones, plus its high watermark (below which the reclaimer would work
/// to refill it), but never more than the zone manages.
pub fn zone_reserve_pages(
    zone: ZoneType,
    managed: u64,
    high_wmark_pages: u64,
    lowmem_reserve: &[u64; MAX_NR_ZONES],
) -> u64 {
    let max_reserve = lowmem_reserve[zone.index()..]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    max_reserve.saturating_add(high_wmark_pages).min(managed)
}

/// The new `watermark_boost` after a fragmenting fallback (Linux's `boost_watermark`), or
/// `None` when the zone is not boosted.
///
/// Boosting is skipped when the factor is 0, when the zone is smaller than four pageblocks
/// (boosting a tiny zone could itself trigger an OOM), and when the high mark is not set
/// yet (very early boot). Otherwise each call adds a pageblock's worth, capped at
/// `max(pageblock_nr_pages, high * boost_factor / 10000)`.
pub fn boost_watermark(
    boost: u64,
    high_unboosted: u64,
    managed: u64,
    watermark_boost_factor: u64,
) -> Option<u64> {
    if watermark_boost_factor == 0 {
        return None;
    }
    if PAGEBLOCK_NR_PAGES.saturating_mul(4) > managed {
        return None;
    }
    let max_boost = mul_div(high_unboosted, watermark_boost_factor, 10_000);
    if max_boost == 0 {
        return None;
    }
    let max_boost = max_boost.max(PAGEBLOCK_NR_PAGES);
    Some(boost.saturating_add(PAGEBLOCK_NR_PAGES).min(max_boost))
}

/// What [`zone_watermark_ok`] needs to know about a zone, besides its free lists: a few
/// counters copied under (or read racily outside) the zone lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneFreeState {
    /// `NR_FREE_PAGES`.
    pub free_pages: u64,
    /// Free pages in MIGRATE_HIGHATOMIC pageblocks (`nr_free_highatomic`).
    pub nr_free_highatomic: u64,
    /// Free pages in MIGRATE_CMA pageblocks (`NR_FREE_CMA_PAGES`).
    pub nr_free_cma: u64,
    /// The zone's `lowmem_reserve`, indexed by the request's highest zone.
    pub lowmem_reserve: [u64; MAX_NR_ZONES],
}

/// `1 << order`, saturating for absurd orders.
#[inline]
const fn order_pages(order: u32) -> u64 {
    match 1u64.checked_shl(order) {
        Some(v) => v,
        None => u64::MAX,
    }
}

/// Free pages a request cannot count on (Linux's `__zone_watermark_unusable_free`):
/// `(1 << order) - 1` (the request itself takes a block, so only what is left after it
/// counts), plus free highatomic pages unless the request may use reserves, plus free CMA
/// pages unless it may use CMA.
#[inline]
pub fn zone_watermark_unusable_free(
    order: u32,
    alloc_flags: AllocFlags,
    nr_free_highatomic: u64,
    nr_free_cma: u64,
) -> u64 {
    let mut unusable = order_pages(order) - 1;
    if !alloc_flags.intersects(AllocFlags::RESERVES) {
        unusable = unusable.saturating_add(nr_free_highatomic);
    }
    if !alloc_flags.contains(AllocFlags::CMA) {
        unusable = unusable.saturating_add(nr_free_cma);
    }
    unusable
}

/// Linux's `__zone_watermark_ok`: may a request of `order` be served from this zone
/// without pushing it below `mark` (plus the `lowmem_reserve` kept for requests limited to
/// lower zones)?
///
/// Reserve flags lower the mark: `ALLOC_MIN_RESERVE` by half, and with `ALLOC_NON_BLOCK`
/// by a further quarter of what is left; `ALLOC_OOM` by half again. The zone fails if the
/// usable free pages are `<=` the resulting mark plus `lowmem_reserve[highest_zoneidx]`.
/// An order-0 request then passes; a higher order also needs one free block of at least
/// that order on a list the request may use: the three pcp types always, MIGRATE_CMA with
/// `ALLOC_CMA`, MIGRATE_HIGHATOMIC with `ALLOC_HIGHATOMIC` or `ALLOC_OOM`.
///
/// `has_free(order, migratetype)` answers "is `free_area[order].free_list[migratetype]`
/// non-empty". Orders above `MAX_PAGE_ORDER` never pass.
pub fn zone_watermark_ok(
    state: &ZoneFreeState,
    order: u32,
    mark: u64,
    highest_zoneidx: ZoneType,
    alloc_flags: AllocFlags,
    has_free: impl Fn(u32, Migratetype) -> bool,
) -> bool {
    let unusable = zone_watermark_unusable_free(
        order,
        alloc_flags,
        state.nr_free_highatomic,
        state.nr_free_cma,
    );
    // Signed and wide: the usable count may go negative, which is simply "not enough".
    let free = state.free_pages as i128 - unusable as i128;
    let mut min = mark as i128;
    if alloc_flags.intersects(AllocFlags::RESERVES) {
        if alloc_flags.contains(AllocFlags::MIN_RESERVE) {
            min -= min / 2;
            if alloc_flags.contains(AllocFlags::NON_BLOCK) {
                min -= min / 4;
            }
        }
        if alloc_flags.contains(AllocFlags::OOM) {
            min -= min / 2;
        }
    }
    let reserve = state.lowmem_reserve[highest_zoneidx.index()] as i128;
    if free <= min + reserve {
        return false;
    }
    if order == 0 {
        return true;
    }
    let cma = alloc_flags.contains(AllocFlags::CMA);
    let highatomic = alloc_flags.intersects(AllocFlags::HIGHATOMIC | AllocFlags::OOM);
    (order..NR_PAGE_ORDERS as u32).any(|o| {
        has_free(o, Migratetype::Unmovable)
            || has_free(o, Migratetype::Movable)
            || has_free(o, Migratetype::Reclaimable)
            || (cma && has_free(o, Migratetype::Cma))
            || (highatomic && has_free(o, Migratetype::HighAtomic))
    })
}

/// Linux's `zone_watermark_fast`: the check `get_page_from_freelist` makes, with the mark
/// chosen by `alloc_flags` from `wmarks`.
///
/// Order 0 first tries a cheap comparison that subtracts all unusable pages at once. If
/// the full check fails, one exception remains: a `__GFP_HIGH` order-0 request checking
/// the min mark ignores the boost, because the boost exists to wake reclaim early, not to
/// fail atomic allocations that the real min reserve could still serve.
pub fn zone_watermark_fast(
    state: &ZoneFreeState,
    order: u32,
    wmarks: &Watermarks,
    highest_zoneidx: ZoneType,
    alloc_flags: AllocFlags,
    has_free: impl Fn(u32, Migratetype) -> bool,
) -> bool {
    let kind = alloc_flags.wmark();
    let mark = wmarks.wmark_pages(kind);
    let reserve = state.lowmem_reserve[highest_zoneidx.index()];
    if order == 0 {
        let unusable = zone_watermark_unusable_free(
            0,
            alloc_flags,
            state.nr_free_highatomic,
            state.nr_free_cma,
        );
        let usable = state.free_pages - state.free_pages.min(unusable);
        if usable > mark.saturating_add(reserve) {
            return true;
        }
    }
    if zone_watermark_ok(state, order, mark, highest_zoneidx, alloc_flags, &has_free) {
        return true;
    }
    if order == 0
        && alloc_flags.contains(AllocFlags::MIN_RESERVE)
        && wmarks.boost != 0
        && kind == WatermarkKind::Min
    {
        return zone_watermark_ok(
            state,
            order,
            wmarks.min,
            highest_zoneidx,
            alloc_flags,
            &has_free,
        );
    }
    false
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::page_alloc::gfp::{GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, gfp_to_alloc_flags};

    #[test]
    fn int_sqrt_is_exact() {
        for x in 0..10_000u64 {
            let r = int_sqrt(x);
            assert!(r * r <= x && (r + 1) * (r + 1) > x, "x={x} r={r}");
        }
        for &x in &[
            u64::MAX,
            u64::MAX - 1,
            4_294_967_295 * 4_294_967_295,
            4_294_967_295 * 4_294_967_295 - 1,
            4_294_967_296 * 4_294_967_295,
            1 << 62,
            (1 << 62) - 1,
        ] {
            let r = int_sqrt(x) as u128;
            assert!(r * r <= x as u128 && (r + 1) * (r + 1) > x as u128, "x={x}");
        }
        assert_eq!(int_sqrt(u64::MAX), 4_294_967_295);
    }

    #[test]
    fn min_free_kbytes_examples() {
        assert_eq!(min_free_kbytes(0), 128);
        assert_eq!(min_free_kbytes(1024), 128);
        assert_eq!(min_free_kbytes(16 * 1024), 512);
        assert_eq!(min_free_kbytes(1 << 20), 4096); // 1 GiB
        assert_eq!(min_free_kbytes(16 << 20), 16384); // 16 GiB
        assert_eq!(min_free_kbytes(8_048_292), 11_347);
        assert_eq!(min_free_kbytes(1 << 40), 262_144);
        assert_eq!(min_free_kbytes(u64::MAX), 262_144);
    }

    fn zones_8g() -> [ZoneManaged; 4] {
        [
            ZoneManaged {
                zone: ZoneType::Dma,
                managed: 3_976,
            },
            ZoneManaged {
                zone: ZoneType::Dma32,
                managed: 720_847,
            },
            ZoneManaged {
                zone: ZoneType::Normal,
                managed: 1_287_250,
            },
            ZoneManaged {
                zone: ZoneType::Movable,
                managed: 0,
            },
        ]
    }

    #[test]
    fn per_zone_wmarks_follow_linux() {
        let zones = zones_8g();
        let lowmem = lowmem_pages(&zones);
        assert_eq!(lowmem, 2_012_073);
        let mfk = min_free_kbytes(lowmem_kbytes(&zones));
        assert_eq!(mfk, 11_347);
        let w: Vec<Watermarks> =
            setup_per_zone_wmarks(&zones, mfk, WATERMARK_SCALE_FACTOR).collect();
        // pages_min = 11347 / 4 = 2836.
        // DMA: tmp = 2836 * 3976 / 2012073 = 5; gap = max(1, 3) = 3.
        let wm = |min, low, high| Watermarks {
            min,
            low,
            high,
            boost: 0,
        };
        assert_eq!(w[0], wm(5, 8, 11));
        // DMA32: tmp = 1016; gap = max(254, 720) = 720.
        assert_eq!(w[1], wm(1016, 1736, 2456));
        // Normal: tmp = 1814; gap = max(453, 1287) = 1287.
        assert_eq!(w[2], wm(1814, 3101, 4388));
        // Empty Movable zone: the SWAP_CLUSTER_MAX floor, no gap.
        assert_eq!(w[3], wm(32, 32, 32));
    }

    #[test]
    fn movable_zone_min_is_capped() {
        let w = zone_wmarks(ZoneType::Movable, 4 << 20, 2836, 1 << 20, 1);
        assert_eq!(w.min, 128);
        // The gaps still use the proportional share: tmp = 11344, /4 = 2836 > scale 419.
        assert_eq!(w.low, 128 + 2836);
        assert_eq!(w.high, 128 + 2 * 2836);
        let small = zone_wmarks(ZoneType::Movable, 10_000, 2836, 1 << 20, 10);
        assert_eq!(small.min, 32);
        // No lowmem at all: no division by zero.
        let none = zone_wmarks(ZoneType::Normal, 1000, 2836, 0, 10);
        assert_eq!(none.min, 0);
        assert_eq!(none.low, 1);
        // Huge inputs saturate instead of overflowing.
        let huge = zone_wmarks(ZoneType::Normal, u64::MAX, u64::MAX, 1, u64::MAX);
        assert_eq!(huge.high, u64::MAX);
    }

    #[test]
    fn accessors_add_boost() {
        let w = Watermarks {
            min: 10,
            low: 20,
            high: 30,
            boost: 5,
        };
        assert_eq!(w.min_wmark_pages(), 15);
        assert_eq!(w.low_wmark_pages(), 25);
        assert_eq!(w.high_wmark_pages(), 35);
        assert_eq!(w.wmark_pages(WatermarkKind::Low), 25);
        assert_eq!(w.unboosted(WatermarkKind::High), 30);
    }

    #[test]
    fn lowmem_reserve_matches_linux() {
        let managed = [3_976, 720_847, 1_287_250, 0];
        let r = setup_zone_lowmem_reserve(&managed, &LOWMEM_RESERVE_RATIO);
        // DMA: (0, 720847/256, 2008097/256, 2008097/256)
        assert_eq!(r[0], [0, 2_815, 7_844, 7_844]);
        // DMA32: (0, 0, 1287250/256, same)
        assert_eq!(r[1], [0, 0, 5_028, 5_028]);
        // Normal: Movable is empty: 0/32.
        assert_eq!(r[2], [0, 0, 0, 0]);
        assert_eq!(r[3], [0, 0, 0, 0]);
        // A zone with no managed pages reserves nothing.
        let r = setup_zone_lowmem_reserve(&[0, 100_000, 200_000, 0], &LOWMEM_RESERVE_RATIO);
        assert_eq!(r[0], [0; 4]);
        assert_eq!(r[1], [0, 0, 781, 781]);
        // Normal with a populated Movable zone.
        let r = setup_zone_lowmem_reserve(&[0, 0, 320_000, 64_000], &LOWMEM_RESERVE_RATIO);
        assert_eq!(r[2], [0, 0, 0, 2_000]);
        // Ratio 0 clears.
        let r = setup_zone_lowmem_reserve(&[1, 1, 1, 1], &[0, 0, 0, 0]);
        assert_eq!(r, [[0; 4]; 4]);
    }

    #[test]
    fn totalreserve_terms() {
        assert_eq!(
            zone_reserve_pages(ZoneType::Dma, 3_976, 11, &[0, 2_815, 7_844, 7_844]),
            3_976
        );
        assert_eq!(
            zone_reserve_pages(ZoneType::Dma32, 720_847, 2_456, &[0, 0, 5_028, 5_028]),
            7_484
        );
        assert_eq!(
            zone_reserve_pages(ZoneType::Normal, 1_287_250, 4_388, &[0; 4]),
            4_388
        );
        assert_eq!(zone_reserve_pages(ZoneType::Movable, 0, 32, &[0; 4]), 0);
    }

    #[test]
    fn boost_rules() {
        // Too small a zone: fewer than 4 pageblocks.
        assert_eq!(boost_watermark(0, 1000, 2047, WATERMARK_BOOST_FACTOR), None);
        // Factor 0 or unset high mark: skipped.
        assert_eq!(boost_watermark(0, 1000, 1 << 20, 0), None);
        assert_eq!(boost_watermark(0, 0, 1 << 20, WATERMARK_BOOST_FACTOR), None);
        // high 4388 -> max_boost 6582; steps of 512.
        assert_eq!(boost_watermark(0, 4388, 1 << 20, 15_000), Some(512));
        assert_eq!(boost_watermark(6_144, 4388, 1 << 20, 15_000), Some(6_582));
        assert_eq!(boost_watermark(6_582, 4388, 1 << 20, 15_000), Some(6_582));
        // A small high mark still allows one pageblock of boost.
        assert_eq!(boost_watermark(0, 11, 1 << 20, 15_000), Some(512));
        assert_eq!(boost_watermark(512, 11, 1 << 20, 15_000), Some(512));
        assert_eq!(
            boost_watermark(u64::MAX, u64::MAX, u64::MAX, u64::MAX),
            Some(u64::MAX)
        );
    }

    fn state(free: u64) -> ZoneFreeState {
        ZoneFreeState {
            free_pages: free,
            nr_free_highatomic: 0,
            nr_free_cma: 0,
            lowmem_reserve: [0, 0, 5_028, 5_028],
        }
    }

    fn none(_: u32, _: Migratetype) -> bool {
        false
    }

    fn any(_: u32, _: Migratetype) -> bool {
        true
    }

    #[test]
    fn order0_checks_and_reserves() {
        let plain = AllocFlags::empty();
        let dma32 = ZoneType::Dma32;
        let s = state(1_001);
        // Plain: free must exceed mark.
        assert!(zone_watermark_ok(&s, 0, 1_000, dma32, plain, none));
        assert!(!zone_watermark_ok(&s, 0, 1_001, dma32, plain, none));
        // lowmem_reserve for a request that could use Normal.
        assert!(!zone_watermark_ok(
            &s,
            0,
            1_000,
            ZoneType::Normal,
            plain,
            none
        ));
        let s = state(6_029);
        assert!(zone_watermark_ok(
            &s,
            0,
            1_000,
            ZoneType::Normal,
            plain,
            none
        ));

        // Reserves: MIN_RESERVE halves (1000 -> 500); with NON_BLOCK a further quarter
        // (500 -> 375); OOM halves (1000 -> 500).
        let high = AllocFlags::MIN_RESERVE;
        let s = state(501);
        assert!(zone_watermark_ok(&s, 0, 1_000, dma32, high, none));
        let atomic = gfp_to_alloc_flags(GFP_ATOMIC, 0);
        let s = state(376);
        assert!(zone_watermark_ok(&s, 0, 1_000, dma32, atomic, none));
        assert!(!zone_watermark_ok(&s, 0, 1_000, dma32, high, none));
        let s = state(375);
        assert!(!zone_watermark_ok(&s, 0, 1_000, dma32, atomic, none));
        // GFP_NOWAIT is non-blocking but gets no reserve discount.
        let nowait = gfp_to_alloc_flags(GFP_NOWAIT, 0);
        let s = state(999);
        assert!(!zone_watermark_ok(&s, 0, 1_000, dma32, nowait, none));
        let s = state(501);
        assert!(zone_watermark_ok(
            &s,
            0,
            1_000,
            dma32,
            AllocFlags::OOM,
            none
        ));
    }

    #[test]
    fn highatomic_and_cma_are_subtracted() {
        let dma32 = ZoneType::Dma32;
        let mut s = state(2_000);
        s.nr_free_highatomic = 600;
        s.nr_free_cma = 500;
        let kernel = gfp_to_alloc_flags(GFP_KERNEL, 0);
        // 2000 - 600 - 500 = 900 usable.
        assert!(zone_watermark_ok(&s, 0, 899, dma32, kernel, none));
        assert!(!zone_watermark_ok(&s, 0, 900, dma32, kernel, none));
        // CMA allowed: 1400 usable.
        assert!(zone_watermark_ok(
            &s,
            0,
            1_399,
            dma32,
            kernel | AllocFlags::CMA,
            none
        ));
        // A reserve flag also unlocks the highatomic pages.
        assert!(zone_watermark_ok(
            &s,
            0,
            1_499,
            dma32,
            AllocFlags::HIGHATOMIC,
            none
        ));
        assert_eq!(
            zone_watermark_unusable_free(3, AllocFlags::empty(), 600, 500),
            1_107
        );
        assert_eq!(
            zone_watermark_unusable_free(3, AllocFlags::CMA | AllocFlags::OOM, 600, 500),
            7
        );
        // free_pages may be smaller than the unusable count: just "not ok".
        let s = ZoneFreeState {
            free_pages: 3,
            nr_free_highatomic: u64::MAX,
            nr_free_cma: u64::MAX,
            lowmem_reserve: [u64::MAX; 4],
        };
        let movable = ZoneType::Movable;
        assert!(!zone_watermark_ok(
            &s,
            0,
            u64::MAX,
            movable,
            AllocFlags::empty(),
            none
        ));
        assert!(!zone_watermark_fast(
            &s,
            0,
            &Watermarks::default(),
            movable,
            AllocFlags::all(),
            any
        ));
    }

    #[test]
    fn high_order_needs_a_suitable_block() {
        let dma32 = ZoneType::Dma32;
        let s = state(10_000);
        let only = |want_o: u32, want_mt: Migratetype| {
            move |o: u32, mt: Migratetype| o == want_o && mt == want_mt
        };
        let f = AllocFlags::empty();
        assert!(zone_watermark_ok(
            &s,
            3,
            100,
            dma32,
            f,
            only(5, Migratetype::Movable)
        ));
        assert!(!zone_watermark_ok(
            &s,
            6,
            100,
            dma32,
            f,
            only(5, Migratetype::Movable)
        ));
        // CMA and HighAtomic blocks only count with the matching flags.
        let cma = only(4, Migratetype::Cma);
        assert!(!zone_watermark_ok(&s, 3, 100, dma32, f, cma));
        assert!(zone_watermark_ok(&s, 3, 100, dma32, AllocFlags::CMA, cma));
        let ha = only(4, Migratetype::HighAtomic);
        assert!(!zone_watermark_ok(&s, 3, 100, dma32, f, ha));
        assert!(zone_watermark_ok(
            &s,
            3,
            100,
            dma32,
            AllocFlags::HIGHATOMIC,
            ha
        ));
        assert!(zone_watermark_ok(&s, 3, 100, dma32, AllocFlags::OOM, ha));
        // Isolated blocks never count.
        let iso = only(10, Migratetype::Isolate);
        assert!(!zone_watermark_ok(
            &s,
            1,
            100,
            dma32,
            AllocFlags::all(),
            iso
        ));
        // (1 << order) - 1 pages are unusable: 10000 - 1023 = 8977.
        assert!(zone_watermark_ok(&s, 10, 8_976, dma32, f, any));
        assert!(!zone_watermark_ok(&s, 10, 8_977, dma32, f, any));
        // Orders beyond the free areas never pass and never panic.
        assert!(!zone_watermark_ok(&s, 11, 0, dma32, f, any));
        assert!(!zone_watermark_ok(&s, u32::MAX, 0, dma32, f, any));
    }

    #[test]
    fn fast_check_and_boost_exception() {
        let dma32 = ZoneType::Dma32;
        let w = Watermarks {
            min: 1_000,
            low: 1_500,
            high: 2_000,
            boost: 4_000,
        };
        let s = state(1_500);
        // Low mark with boost is 5500: fails.
        assert!(!zone_watermark_fast(
            &s,
            0,
            &w,
            dma32,
            AllocFlags::WMARK_LOW,
            none
        ));
        // GFP_KERNEL at min (5000 boosted): fails.
        let kernel = gfp_to_alloc_flags(GFP_KERNEL, 0);
        assert!(!zone_watermark_fast(&s, 0, &w, dma32, kernel, none));
        // GFP_ATOMIC at the boosted min needs more than 5000*3/8 = 1875: fails, but the
        // retry ignores the boost: 1500 > 1000*3/8.
        let atomic = gfp_to_alloc_flags(GFP_ATOMIC, 0);
        assert!(!zone_watermark_ok(
            &s,
            0,
            w.min_wmark_pages(),
            dma32,
            atomic,
            none
        ));
        assert!(zone_watermark_fast(&s, 0, &w, dma32, atomic, none));
        // The exception is for order 0 only.
        let atomic3 = gfp_to_alloc_flags(GFP_ATOMIC, 3);
        assert!(!zone_watermark_fast(&s, 3, &w, dma32, atomic3, any));
        // Without boost the fast path agrees with the full check.
        let w0 = Watermarks { boost: 0, ..w };
        assert!(zone_watermark_fast(
            &s,
            0,
            &w0,
            dma32,
            AllocFlags::WMARK_MIN,
            none
        ));
        assert!(!zone_watermark_fast(
            &s,
            0,
            &w0,
            dma32,
            AllocFlags::WMARK_LOW,
            none
        ));
        assert!(!zone_watermark_fast(
            &s,
            1,
            &w0,
            dma32,
            AllocFlags::WMARK_MIN,
            none
        ));
        assert!(zone_watermark_fast(
            &s,
            1,
            &w0,
            dma32,
            AllocFlags::WMARK_MIN,
            any
        ));
    }
}
