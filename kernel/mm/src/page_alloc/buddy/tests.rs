//! The fallback rules, one by one, on a real zone with its lock held: the claim threshold
//! at half a pageblock, whole-block retyping, the fallback order per type, stealing
//! without repainting, boosting, ALLOC_NOFRAGMENT, and merging across pageblock types.
//!
//! Each test takes every free block off the zone (as if allocated), builds exactly the free
//! state the rule is about, runs one `__rmqueue`, checks the outcome, then frees everything
//! again and runs the invariant checker.

extern crate std;
use std::vec::Vec;

use super::*;
use crate::model::memmap::{FirmwareRange, RangeKind};
use crate::model::mm_init::ModelParams;
use crate::model::mmzone::ZoneType;
use crate::page_alloc::gfp::AllocFlags;
use crate::port::sim::SimAllocator;

const MIB: u64 = 1 << 20;

/// DMA, DMA32 and a 16 MiB Normal zone at 4 GiB (4096 pages, 8 pageblocks).
fn machine() -> SimAllocator {
    let map = [
        FirmwareRange::new(0x100000, 32 * MIB, RangeKind::Usable),
        FirmwareRange::new(4 << 30, (4 << 30) + 16 * MIB, RangeKind::Usable),
    ];
    let a = SimAllocator::build(&map, &[], &ModelParams::default(), 1).unwrap();
    a.drain_all_pages();
    a
}

/// The test's view of a zone with its lock held.
fn with_normal<R>(a: &SimAllocator, f: impl FnOnce(&mut Buddy<'_, '_>) -> R) -> R {
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    let mut g = z.lock.lock_irqsave(a.platform());
    let mut b = Buddy::new(z, a.model().sparse(), &mut g, 15_000);
    f(&mut b)
}

/// Take every free block off the lists; returns the pfns now held by the test.
fn take_all(b: &mut Buddy<'_, '_>) -> Vec<u64> {
    let mut held = Vec::new();
    for order in 0..NR_PAGE_ORDERS as u32 {
        for mt in Migratetype::ALL {
            while let Some(p) = b.get_page_from_free_area(order, mt) {
                let pfn = b.pfn_of(p);
                b.del_page_from_free_list(p, order, mt);
                held.extend(pfn..pfn + (1 << order));
            }
        }
    }
    held
}

/// Free every held page that is not free already, page by page (merging rebuilds blocks).
fn give_back(b: &mut Buddy<'_, '_>, held: &[u64]) {
    for &pfn in held {
        let free = (0..=MAX_PAGE_ORDER).any(|k| {
            let h = pfn & !((1u64 << k) - 1);
            b.page(h)
                .is_some_and(|p| p.is_buddy() && h + (1 << p.buddy_order()) > pfn)
        });
        if !free {
            let mt = b.pageblock_mt(pfn);
            b.free_one_page(pfn, 0, mt, false);
        }
    }
}

fn finish(a: &SimAllocator, held: &[u64]) {
    with_normal(a, |b| give_back(b, held));
    crate::report::debug::check(a).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(a.nr_free_pages(), a.totalram_pages());
}

/// The first pageblock of Normal plus `k` pageblocks.
fn block(a: &SimAllocator, k: u64) -> u64 {
    a.zone_of(0, ZoneType::Normal).unwrap().zone_start_pfn() + k * PAGEBLOCK_NR_PAGES
}

fn free_range(b: &mut Buddy<'_, '_>, start: u64, n: u64) {
    for pfn in start..start + n {
        let mt = b.pageblock_mt(pfn);
        b.free_one_page(pfn, 0, mt, false);
    }
}

fn pages_on(b: &Buddy<'_, '_>, mt: Migratetype) -> u64 {
    b.free_areas().nr_free_by_type()[mt.index()]
        .iter()
        .enumerate()
        .map(|(o, &n)| n << o)
        .sum()
}

/// An unmovable request falling back to a reclaimable block claims it exactly when at
/// least half of it (256 pages) is free: nothing allocated there counts as compatible.
#[test]
fn claim_at_half_a_pageblock() {
    for (free, claimed) in [(255u64, false), (256, true)] {
        let a = machine();
        let p = block(&a, 2);
        let held = with_normal(&a, |b| {
            let held = take_all(b);
            b.change_pageblock_range(p, 0, Migratetype::Reclaimable);
            free_range(b, p, free);
            let mut mode = RmqueueMode::Normal;
            let page = b
                .rmqueue(0, Migratetype::Unmovable, AllocFlags::empty(), &mut mode)
                .expect("fallback serves the request");
            let got = b.pfn_of(page);
            assert!((p..p + PAGEBLOCK_NR_PAGES).contains(&got));
            let want = if claimed {
                Migratetype::Unmovable
            } else {
                Migratetype::Reclaimable
            };
            assert_eq!(b.pageblock_mt(p), want, "{free} free pages");
            assert_eq!(b.events.claim, claimed as u64);
            assert_eq!(b.events.fallback, 1);
            // Every free page of the block moved with the repaint (or none did).
            assert_eq!(pages_on(b, want), free - 1);
            assert_eq!(
                mode,
                if claimed {
                    RmqueueMode::Normal
                } else {
                    RmqueueMode::Steal
                }
            );
            held
        });
        finish(&a, &held);
    }
}

/// A movable request claims an unmovable block when free plus movable-looking allocated
/// pages (PG_lru) reach half the block; it only tries from order 4 (pageblock_order / 2).
/// An unmovable request counts every allocated page that is not movable as compatible.
#[test]
fn claim_counts_compatible_pages() {
    for (lru, claimed) in [(127u64, false), (128, true)] {
        let a = machine();
        let p = block(&a, 3);
        let held = with_normal(&a, |b| {
            let held = take_all(b);
            b.change_pageblock_range(p, 0, Migratetype::Unmovable);
            free_range(b, p, 128); // one order-7 block
            for i in 0..lru {
                b.page(p + 256 + i).unwrap().set_lru();
            }
            let mut mode = RmqueueMode::Normal;
            b.rmqueue(0, Migratetype::Movable, AllocFlags::empty(), &mut mode)
                .unwrap();
            let want = if claimed {
                Migratetype::Movable
            } else {
                Migratetype::Unmovable
            };
            assert_eq!(b.pageblock_mt(p), want, "{lru} movable pages");
            for i in 0..lru {
                b.page(p + 256 + i).unwrap().clear_lru();
            }
            held
        });
        finish(&a, &held);
    }
    for (lru, claimed) in [(256u64, true), (257, false)] {
        let a = machine();
        let p = block(&a, 4);
        let held = with_normal(&a, |b| {
            let held = take_all(b);
            // The block stays Movable; one page free; `lru` pages look movable, the other
            // allocated pages count as unmovable-compatible: 1 + (511 - lru).
            free_range(b, p + 511, 1);
            for i in 0..lru {
                b.page(p + i).unwrap().set_lru();
            }
            let mut mode = RmqueueMode::Normal;
            b.rmqueue(0, Migratetype::Unmovable, AllocFlags::empty(), &mut mode)
                .unwrap();
            let want = if claimed {
                Migratetype::Unmovable
            } else {
                Migratetype::Movable
            };
            assert_eq!(b.pageblock_mt(p), want, "{lru} movable pages");
            for i in 0..lru {
                b.page(p + i).unwrap().clear_lru();
            }
            held
        });
        finish(&a, &held);
    }
}

/// A movable request for a small page does not try to claim below order 4.
#[test]
fn small_movable_requests_only_steal() {
    let a = machine();
    let p = block(&a, 1);
    let held = with_normal(&a, |b| {
        let held = take_all(b);
        b.change_pageblock_range(p, 0, Migratetype::Unmovable);
        // An order-1 block at the end of an otherwise free-looking block: 2 pages.
        free_range(b, p + 2, 2);
        assert_eq!(
            b.find_suitable_fallback(3, Migratetype::Movable, true),
            Fallback::NoClaim
        );
        let mut mode = RmqueueMode::Normal;
        let page = b
            .rmqueue(0, Migratetype::Movable, AllocFlags::empty(), &mut mode)
            .unwrap();
        assert_eq!(b.pfn_of(page), p + 2);
        // Stolen, not claimed: the block keeps its type and the rest stays on its list.
        assert_eq!(b.pageblock_mt(p), Migratetype::Unmovable);
        assert_eq!(pages_on(b, Migratetype::Unmovable), 1);
        assert_eq!(
            (b.events.claim, b.events.fallback, b.events.boost),
            (0, 1, 0)
        );
        assert_eq!(mode, RmqueueMode::Steal);
        // ALLOC_NOFRAGMENT forbids the steal.
        let mut mode = RmqueueMode::Normal;
        assert!(
            b.rmqueue(0, Migratetype::Movable, AllocFlags::NOFRAGMENT, &mut mode)
                .is_none()
        );
        held
    });
    finish(&a, &held);
}

/// A free block of at least pageblock order is retyped whole, without a boost; the rest
/// of it lands on the new type's lists.
#[test]
fn whole_block_retype_at_pageblock_order() {
    let a = machine();
    let p = block(&a, 2); // an order-10 aligned pair of pageblocks
    let held = with_normal(&a, |b| {
        let held = take_all(b);
        b.change_pageblock_range(p, MAX_PAGE_ORDER, Migratetype::Reclaimable);
        free_range(b, p, 1 << MAX_PAGE_ORDER);
        assert_eq!(pages_on(b, Migratetype::Reclaimable), 1024);
        let mut mode = RmqueueMode::Normal;
        let page = b
            .rmqueue(0, Migratetype::Unmovable, AllocFlags::KSWAPD, &mut mode)
            .unwrap();
        assert_eq!(b.pfn_of(page), p);
        assert_eq!(b.pageblock_mt(p), Migratetype::Unmovable);
        assert_eq!(
            b.pageblock_mt(p + PAGEBLOCK_NR_PAGES),
            Migratetype::Unmovable
        );
        assert_eq!(pages_on(b, Migratetype::Unmovable), 1023);
        assert_eq!(pages_on(b, Migratetype::Reclaimable), 0);
        assert_eq!((b.events.claim, b.events.boost), (1, 0));
        assert_eq!(b.zone().watermarks().boost, 0);
        // NOFRAGMENT still allows whole-block claims.
        held
    });
    finish(&a, &held);
}

/// Fallback preference: Unmovable -> Reclaimable, Movable; Movable -> Reclaimable,
/// Unmovable; Reclaimable -> Unmovable, Movable.
#[test]
fn fallback_order_per_type() {
    let a = machine();
    let held = with_normal(&a, |b| {
        let held = take_all(b);
        let types = [
            Migratetype::Unmovable,
            Migratetype::Movable,
            Migratetype::Reclaimable,
        ];
        for (k, mt) in types.iter().enumerate() {
            let p = block(&a, k as u64 * 2);
            b.change_pageblock_range(p, 0, *mt);
            free_range(b, p, 8); // one order-3 block per type
        }
        use Migratetype::*;
        assert_eq!(
            b.find_suitable_fallback(3, Unmovable, false),
            Fallback::Found(Reclaimable)
        );
        assert_eq!(
            b.find_suitable_fallback(3, Movable, false),
            Fallback::Found(Reclaimable)
        );
        assert_eq!(
            b.find_suitable_fallback(3, Reclaimable, false),
            Fallback::Found(Unmovable)
        );
        assert_eq!(
            b.find_suitable_fallback(4, Unmovable, false),
            Fallback::Empty
        );
        // With its first choice gone, each type takes its second.
        let r = b.get_page_from_free_area(3, Reclaimable).unwrap();
        b.del_page_from_free_list(r, 3, Reclaimable);
        assert_eq!(
            b.find_suitable_fallback(3, Unmovable, false),
            Fallback::Found(Movable)
        );
        assert_eq!(
            b.find_suitable_fallback(3, Movable, false),
            Fallback::Found(Unmovable)
        );
        let u = b.get_page_from_free_area(3, Unmovable).unwrap();
        b.del_page_from_free_list(u, 3, Unmovable);
        assert_eq!(
            b.find_suitable_fallback(3, Reclaimable, false),
            Fallback::Found(Movable)
        );
        held
    });
    finish(&a, &held);
}

/// A partial claim boosts the watermarks (and, with ALLOC_KSWAPD, flags the zone for
/// kswapd); factor 0 turns boosting off.
#[test]
fn boost_on_partial_claim() {
    for (factor, kswapd) in [(15_000u64, true), (15_000, false), (0, true)] {
        let a = machine();
        let p = block(&a, 5);
        let held = with_normal(&a, |b| {
            b.boost_factor = factor;
            let held = take_all(b);
            b.change_pageblock_range(p, 0, Migratetype::Movable);
            free_range(b, p, 300);
            let flags = if kswapd {
                AllocFlags::KSWAPD
            } else {
                AllocFlags::empty()
            };
            let mut mode = RmqueueMode::Normal;
            b.rmqueue(0, Migratetype::Unmovable, flags, &mut mode)
                .unwrap();
            let z = b.zone();
            let high = z.watermarks().high;
            if factor == 0 {
                assert_eq!(z.watermarks().boost, 0);
                assert_eq!(b.events.boost, 0);
            } else {
                let max_boost = (high * factor / 10_000).max(PAGEBLOCK_NR_PAGES);
                assert_eq!(z.watermarks().boost, PAGEBLOCK_NR_PAGES.min(max_boost));
                assert_eq!(b.events.boost, 1);
            }
            assert_eq!(z.test_flag(ZONE_BOOSTED_WATERMARK), kswapd && factor != 0);
            z.wm.boost.store(0, Ordering::Relaxed);
            z.wm.flags.store(0, Ordering::Relaxed);
            held
        });
        finish(&a, &held);
    }
}

/// Two free pageblock-order buddies of different types merge if both types are ordinary
/// (the buddy's pageblock is repainted), and never across a HighAtomic or Isolate block.
#[test]
fn merging_across_pageblock_types() {
    for (other, merges) in [
        (Migratetype::Unmovable, true),
        (Migratetype::Reclaimable, true),
        (Migratetype::HighAtomic, false),
        (Migratetype::Isolate, false),
    ] {
        let a = machine();
        let p = block(&a, 2);
        let held = with_normal(&a, |b| {
            let held = take_all(b);
            b.change_pageblock_range(p, 0, other);
            if other == Migratetype::HighAtomic {
                counter_add(
                    &b.zone().counters.nr_reserved_highatomic,
                    PAGEBLOCK_NR_PAGES as i64,
                );
            }
            if other == Migratetype::Isolate {
                counter_add(&b.zone().counters.nr_isolate_pageblock, 1);
            }
            b.change_pageblock_range(p + PAGEBLOCK_NR_PAGES, 0, Migratetype::Movable);
            b.free_one_page(p, PAGEBLOCK_ORDER, other, false);
            b.free_one_page(
                p + PAGEBLOCK_NR_PAGES,
                PAGEBLOCK_ORDER,
                Migratetype::Movable,
                false,
            );
            let head = b.page(p).unwrap();
            if merges {
                assert_eq!(head.buddy_order(), MAX_PAGE_ORDER);
                assert_eq!(b.pageblock_mt(p), Migratetype::Movable, "buddy repainted");
            } else {
                assert_eq!(head.buddy_order(), PAGEBLOCK_ORDER);
                assert_eq!(b.pageblock_mt(p), other);
                assert_eq!(
                    b.page(p + PAGEBLOCK_NR_PAGES).unwrap().buddy_order(),
                    PAGEBLOCK_ORDER
                );
            }
            held
        });
        // The checker accepts the unmerged pair (Linux forbids that merge), and its
        // counters: isolated pages are not free.
        crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));
        let z = a.zone_of(0, ZoneType::Normal).unwrap();
        let expect_free = if other == Migratetype::Isolate {
            512
        } else {
            1024
        };
        assert_eq!(z.nr_free_pages(), expect_free);
        assert_eq!(
            z.nr_free_highatomic(),
            if other == Migratetype::HighAtomic {
                512
            } else {
                0
            }
        );
        with_normal(&a, |b| {
            // Hand the blocks back as ordinary Movable memory.
            if !merges {
                let pg = b.page(p).unwrap();
                b.move_to_free_list(pg, PAGEBLOCK_ORDER, other, Migratetype::Movable);
                b.change_pageblock_range(p, 0, Migratetype::Movable);
                if other == Migratetype::Isolate {
                    counter_add(&b.zone().counters.nr_isolate_pageblock, -1);
                }
                if other == Migratetype::HighAtomic {
                    counter_add(
                        &b.zone().counters.nr_reserved_highatomic,
                        -(PAGEBLOCK_NR_PAGES as i64),
                    );
                }
                // Now ordinary: the two buddies merge when freed again.
                b.del_page_from_free_list(pg, PAGEBLOCK_ORDER, Migratetype::Movable);
                b.free_one_page(p, PAGEBLOCK_ORDER, Migratetype::Movable, false);
            }
        });
        finish(&a, &held);
    }
}

/// Splitting puts the halves back one per order; freeing merges them all again.
#[test]
fn expand_and_merge_round_trip() {
    let a = machine();
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    let free = z.nr_free_pages();
    let (got, before) = with_normal(&a, |b| {
        // Leave only order-10 blocks, then split one for an order-0 request.
        let held = take_all(b);
        // Every even order-10 block whose pages were all held (reserved pages, such as
        // memmaps, make a block incomplete wherever they sit) goes back whole.
        let mut per_block = std::collections::BTreeMap::<u64, u64>::new();
        for p in held.iter().filter(|p| (*p >> MAX_PAGE_ORDER) % 2 == 0) {
            *per_block.entry(p >> MAX_PAGE_ORDER).or_default() += 1;
        }
        for (&blk, &n) in &per_block {
            if n == 1 << MAX_PAGE_ORDER {
                b.free_one_page(
                    blk << MAX_PAGE_ORDER,
                    MAX_PAGE_ORDER,
                    Migratetype::Movable,
                    false,
                );
            }
        }
        let before = b.free_areas().nr_free_by_type()[Migratetype::Movable.index()];
        assert!(before[..MAX_PAGE_ORDER as usize].iter().all(|&n| n == 0));
        let page = b.rmqueue_smallest(0, Migratetype::Movable).unwrap();
        let per_order = b.free_areas().nr_free_by_type()[Migratetype::Movable.index()];
        assert!(
            per_order[..MAX_PAGE_ORDER as usize].iter().all(|&n| n == 1),
            "{per_order:?}"
        );
        assert_eq!(
            per_order[MAX_PAGE_ORDER as usize],
            before[MAX_PAGE_ORDER as usize] - 1
        );
        let pfn = b.pfn_of(page);
        let rest: Vec<u64> = held.into_iter().filter(|&p| p != pfn).collect();
        give_back(b, &rest);
        (pfn, b.free_areas().nr_free_by_type())
    });
    assert_eq!(z.nr_free_pages(), free - 1);
    with_normal(&a, |b| b.free_one_page(got, 0, Migratetype::Movable, false));
    assert_eq!(z.nr_free_pages(), free);
    with_normal(&a, |b| {
        let after = b.free_areas().nr_free_by_type();
        assert_ne!(after, before, "the freed page merged");
    });
    crate::report::debug::check(&a).unwrap();
}
