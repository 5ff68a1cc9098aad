//! The highatomic reserve: the 1% cap, the reservation after a high-order atomic
//! allocation in the slow path, and giving blocks back before failing.

extern crate std;
use std::vec::Vec;

use super::*;
use crate::model::memmap::{FirmwareRange, RangeKind};
use crate::model::mm_init::ModelParams;
use crate::model::mmzone::NR_PAGE_ORDERS;
use crate::page_alloc::gfp::{GFP_ATOMIC, GFP_KERNEL};
use crate::port::sim::SimAllocator;

const MIB: u64 = 1 << 20;

/// Low memory plus a Normal zone of `mib` MiB at 4 GiB.
fn machine(mib: u64) -> SimAllocator {
    let map = [
        FirmwareRange::new(0x100000, 32 * MIB, RangeKind::Usable),
        FirmwareRange::new(4 << 30, (4 << 30) + mib * MIB, RangeKind::Usable),
    ];
    SimAllocator::build(&map, &[], &ModelParams::default(), 1).unwrap()
}

fn highatomic_blocks(a: &SimAllocator) -> u64 {
    a.zone_snapshot(0, ZoneType::Normal).unwrap().nr_pageblocks[Migratetype::HighAtomic.index()]
}

#[test]
fn reserve_is_capped_at_one_percent() {
    let a = machine(512);
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    let cap = (z.managed_pages() / 100).next_multiple_of(PAGEBLOCK_NR_PAGES);
    assert_eq!(cap, 3 * PAGEBLOCK_NR_PAGES);
    // Reserve the pageblocks of order-9 allocations, one block each, until the cap.
    let mut held = Vec::new();
    for i in 0..6u64 {
        let p = a.alloc_pages(GFP_KERNEL, 9).unwrap();
        let pfn = a.page_to_pfn(p);
        held.push(p);
        a.reserve_highatomic_pageblock(z, pfn, 9);
        let want = ((i + 1) * PAGEBLOCK_NR_PAGES).min(cap);
        assert_eq!(z.nr_reserved_highatomic(), want);
    }
    assert_eq!(highatomic_blocks(&a), 3);
    assert_eq!(a.vm_event(VmEvent::HighatomicReserve), 3);
    crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));
    // Freed into a HighAtomic block, pages go to its free list and out of ordinary
    // watermark arithmetic.
    for p in held {
        a.free_pages(p, 9).unwrap();
    }
    a.drain_all_pages();
    assert_eq!(z.nr_free_highatomic(), cap);
    crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));

    // Giving back: without force, one pageblock is always kept.
    let mut flags = AllocFlags::WMARK_LOW;
    let ac = a.prepare_alloc_pages(GFP_KERNEL, 0, 0, &mut flags).unwrap();
    // (A free block spanning two reserved pageblocks goes back whole, as in Linux.)
    let mut n = 0;
    while a.unreserve_highatomic_pageblock(&ac, false) {
        n += 1;
        assert!(n <= 3);
    }
    assert!(n >= 1);
    assert!(z.nr_reserved_highatomic() <= PAGEBLOCK_NR_PAGES);
    crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));
    while a.unreserve_highatomic_pageblock(&ac, true) {}
    assert_eq!(z.nr_reserved_highatomic(), 0);
    assert_eq!(highatomic_blocks(&a), 0);
    assert_eq!(z.nr_free_highatomic(), 0);
    assert!(a.vm_event(VmEvent::HighatomicUnreserve) >= 2);
    crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));

    // Zones too small for a pageblock at 1% keep no reserve.
    let small = machine(64);
    let z = small.zone_of(0, ZoneType::Normal).unwrap();
    let p = small.alloc_pages(GFP_KERNEL, 3).unwrap();
    small.reserve_highatomic_pageblock(z, small.page_to_pfn(p), 3);
    assert_eq!(z.nr_reserved_highatomic(), 0);
}

/// Pushed below the low watermark, a high-order GFP_ATOMIC allocation succeeds in the
/// slow path and reserves its pageblock; a GFP_KERNEL request that runs out of memory
/// later takes the reserve back before failing.
#[test]
fn slow_path_reserves_and_oom_unreserves() {
    let a = machine(512);
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    // Exhaust everything ordinary requests may have.
    let mut held: Vec<(&Page, u32)> = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
        held.push((p, 0));
    }
    // Give back a contiguous run in Normal: between min and low.
    let w = z.watermarks();
    let target = w.min + (w.low - w.min) / 2;
    held.sort_by_key(|(p, _)| a.page_to_pfn(p));
    let mut i = held
        .iter()
        .position(|(p, _)| p.zone_type() == Some(ZoneType::Normal))
        .unwrap();
    while z.nr_free_pages() < target {
        let (p, _) = held.remove(i);
        a.free_pages(p, 0).unwrap();
        a.drain_all_pages();
        if i >= held.len() || held[i].0.zone_type() != Some(ZoneType::Normal) {
            i = held
                .iter()
                .position(|(p, _)| p.zone_type() == Some(ZoneType::Normal))
                .unwrap();
        }
    }
    assert!(z.nr_free_pages() > w.min && z.nr_free_pages() < w.low);
    let p = a
        .alloc_pages(GFP_ATOMIC, 3)
        .expect("atomic high-order succeeds at min");
    assert_eq!(p.zone_type(), Some(ZoneType::Normal));
    held.push((p, 3));
    assert_eq!(z.nr_reserved_highatomic(), PAGEBLOCK_NR_PAGES);
    assert_eq!(highatomic_blocks(&a), 1);
    crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));
    // The reserve's free pages are not for GFP_KERNEL ... until it is about to fail.
    let before = a.vm_event(VmEvent::HighatomicUnreserve);
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
        held.push((p, 0));
    }
    assert!(a.vm_event(VmEvent::HighatomicUnreserve) > before);
    assert_eq!(z.nr_reserved_highatomic(), 0);
    crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));
    for (p, o) in held {
        a.free_pages(p, o).unwrap();
    }
    a.drain_all_pages();
    assert_eq!(a.nr_free_pages(), a.totalram_pages());
    crate::report::debug::check(&a).unwrap_or_else(|v| panic!("{v}"));
}

/// Every free list of the Normal zone (pfns in list order, per order and type) and every
/// pageblock's type.
fn free_state(a: &SimAllocator) -> (Vec<Vec<u64>>, Vec<Migratetype>) {
    a.sim_platform().bind_current_thread(0);
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    let mut g = z.lock.lock_irqsave(a.platform());
    let b = a.buddy(z, &mut g);
    let mut lists = Vec::new();
    for order in 0..NR_PAGE_ORDERS as u32 {
        for mt in Migratetype::ALL {
            lists.push(
                b.free_list_iter(order, mt)
                    .map(|p| a.page_to_pfn(p))
                    .collect(),
            );
        }
    }
    let start = z.zone_start_pfn();
    let blocks = (start..start + z.spanned_pages())
        .step_by(PAGEBLOCK_NR_PAGES as usize)
        .map(|pfn| b.pageblock_mt(pfn))
        .collect();
    (lists, blocks)
}

/// Fill the zone with pages of all three mobility types (500 at a time of each), then
/// free every page of about one run in five and a pseudo-random third of the rest:
/// pageblocks of every type, some nearly free (claimable), most a third free (only
/// single blocks can be stolen from them), and each type's own lists too short for a big
/// refill.
fn fragment(a: &SimAllocator, seed: u64) {
    a.sim_platform().bind_current_thread(0);
    let gfps = [
        GFP_KERNEL,
        GFP_KERNEL | Gfp::RECLAIMABLE,
        crate::page_alloc::gfp::GFP_HIGHUSER_MOVABLE,
    ];
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut held = Vec::new();
    for i in 0.. {
        match a.alloc_pages(gfps[(i / 500) % 3] | Gfp::NOWARN, 0) {
            Some(p) => held.push(p),
            None => break,
        }
    }
    for run in held.chunks(500) {
        let all = next() % 5 == 0;
        for &p in run {
            if all || next() % 3 == 0 {
                a.free_pages(p, 0).unwrap();
            }
        }
    }
    a.drain_all_pages();
}

/// `rmqueue_bulk` takes runs of blocks whole while the requested type's own lists serve,
/// and goes through `rmqueue`'s fallbacks (claim, steal) block by block when they run dry,
/// then back to runs. The outcome must be the one taking every block through
/// `Buddy::rmqueue` gives: the same blocks in the same order, the same free lists (pfn by
/// pfn, in order) and the same pageblock types.
#[test]
fn batched_refill_matches_block_by_block() {
    for (seed, mt) in [
        (1, Migratetype::Unmovable),
        (2, Migratetype::Movable),
        (3, Migratetype::Reclaimable),
    ] {
        for order in [0, 1, 3] {
            let (batched, single) = (machine(64), machine(64));
            fragment(&batched, seed);
            fragment(&single, seed);
            assert_eq!(free_state(&batched), free_state(&single), "twins");
            let count = 3000 >> order;
            let pindex = order_to_pindex(mt, order).unwrap();
            let flags = AllocFlags::WMARK_LOW;

            batched.sim_platform().bind_current_thread(0);
            let z = batched.zone_of(0, ZoneType::Normal).unwrap();
            let mut lists = PcpLists::new(100_000, 63);
            let fallbacks = batched.vm_event(VmEvent::PgallocFallback);
            let n = {
                let _irq = LocalIrqGuard::new(batched.platform());
                batched.rmqueue_bulk(z, order, count, &mut lists, pindex, mt, flags, None)
            };
            let got: Vec<u64> = lists
                .iter(pindex)
                .map(|p| batched.page_to_pfn(batched.page_ref(p)))
                .collect();

            single.sim_platform().bind_current_thread(0);
            let z = single.zone_of(0, ZoneType::Normal).unwrap();
            let want: Vec<u64> = {
                let mut g = z.lock.lock_irqsave(single.platform());
                let mut b = single.buddy(z, &mut g);
                let mut mode = RmqueueMode::Normal;
                (0..count)
                    .map_while(|_| b.rmqueue(order, mt, flags, &mut mode))
                    .map(|p| single.page_to_pfn(p))
                    .collect()
            };
            let ctx = format!("{mt:?} order {order}");
            assert!(n > 0, "{ctx}");
            assert_eq!(got, want, "{ctx}: the same blocks, in the same order");
            assert_eq!(
                free_state(&batched),
                free_state(&single),
                "{ctx}: free lists"
            );
            // Both kinds of step ran: runs from the own lists (consecutive blocks), and
            // the fallbacks (the requested type had to claim or steal).
            batched.sim_platform().bind_current_thread(0);
            assert!(
                batched.vm_event(VmEvent::PgallocFallback) > fallbacks,
                "{ctx}: no fallback exercised"
            );
            assert!(
                got.windows(2).any(|w| w[1] == w[0] + (1 << order)),
                "{ctx}: no run"
            );
        }
    }
}
