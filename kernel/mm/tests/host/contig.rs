//! Page isolation and contiguous allocations: refusals that name the pfn and leave nothing
//! isolated, isolated pages never handed out (pcp lists included), a 32 MiB range emptied
//! of scattered anon pages and zpool objects with their data intact, and a 1 GiB gigantic
//! allocation on a 6 GiB machine. The invariant checker runs after every step.

use crate::compaction_common::{self as cc, Rng};
use crate::mig_common;

use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{Migratetype, PAGE_SIZE, PAGEBLOCK_NR_PAGES, ZoneType};
use zonebuddy::model::page::Page;
use zonebuddy::movement::contig::ContigError;
use zonebuddy::movement::isolation::{
    IsolateError, IsolateFlags, pageblock_align, pageblock_start,
};
use zonebuddy::movement::zpool::{ZHandle, ZPool};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::{SimAllocator, SimPlatform, qemu_e820};

const MIB: u64 = 1 << 20;

fn check(a: &SimAllocator) {
    if let Err(v) = zonebuddy::report::debug::check(&**a) {
        panic!("debug::check: {v}");
    }
}

fn isolated_total(a: &SimAllocator) -> u64 {
    a.nr_isolate_pageblock()
}

/// A fresh machine's Movable pageblock that is wholly free (order-9 or part of order-10).
fn free_pageblock(a: &SimAllocator, zt: ZoneType) -> u64 {
    let z = a.zone_of(0, zt).unwrap();
    let mut pb = z.zone_start_pfn().next_multiple_of(PAGEBLOCK_NR_PAGES);
    while pb + PAGEBLOCK_NR_PAGES <= z.zone_end_pfn() {
        if a.pfn_range_valid_contig(z, pb, PAGEBLOCK_NR_PAGES)
            && cc::free_blocks(a)
                .iter()
                .any(|&(p, o)| p <= pb && p + (1 << o) >= pb + PAGEBLOCK_NR_PAGES)
        {
            return pb;
        }
        pb += PAGEBLOCK_NR_PAGES;
    }
    panic!("no free pageblock in {}", zt.name());
}

#[test]
fn isolation_refusals_name_the_pfn_and_leave_nothing_isolated() {
    let a = mig_common::machine(64, 1);
    a.drain_all_pages();
    let free0 = a.nr_free_pages();

    // Reserved: a section's own memmap (the last pages of each 128 MiB section), and the
    // first pageblock, which starts below the zone (pfn 0 is not RAM).
    let z = a.zone_of(0, ZoneType::Dma32).unwrap();
    let rsv = (z.zone_start_pfn()..z.zone_end_pfn())
        .find(|&p| a.pfn_to_page(p).is_some_and(|pg| pg.is_reserved()))
        .expect("a reserved page in DMA32");
    let e = a
        .start_isolate_page_range(
            rsv - 3,
            rsv + 1,
            Migratetype::Movable,
            IsolateFlags::REPORT_FAILURE,
        )
        .unwrap_err();
    assert_eq!(e, IsolateError::Reserved { pfn: rsv });
    assert!(
        e.to_string().contains(&format!("pfn {rsv:#x}: reserved")),
        "{e}"
    );
    assert_eq!(isolated_total(&a), 0);
    assert!(matches!(
        a.start_isolate_page_range(1, 16, Migratetype::Movable, IsolateFlags::empty()),
        Err(IsolateError::CrossesZones { pfn: 0 })
    ));

    // Unmovable: a kernel page, asked for alone and as the tail of a longer range whose
    // first pageblocks isolate fine (they must be given back).
    let k = a.alloc_page(GFP_KERNEL).unwrap();
    let kpfn = a.page_to_pfn(k);
    let e = a
        .start_isolate_page_range(kpfn, kpfn + 1, Migratetype::Movable, IsolateFlags::empty())
        .unwrap_err();
    assert!(
        matches!(e, IsolateError::Unmovable { pfn, .. } if pfn == kpfn),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("{kpfn:#x}")), "{e}");
    assert_eq!(isolated_total(&a), 0);
    check(&a);

    let good = free_pageblock(&a, ZoneType::Dma32);
    let free1 = a.nr_free_pages();
    // A range made of free blocks, then a block with a pinned anon page.
    let r = mig_common::filled_region(&a, 1, 7);
    let anon = mig_common::page_at(&a, r, 0);
    let apfn = a.page_to_pfn(anon);
    a.get_page(anon);
    let e = a
        .start_isolate_page_range(apfn, apfn + 1, Migratetype::Movable, IsolateFlags::empty())
        .unwrap_err();
    assert_eq!(
        e,
        IsolateError::Pinned {
            pfn: apfn,
            refcount: 2,
            mapcount: 1
        }
    );
    assert_eq!(isolated_total(&a), 0);
    a.put_page(anon).unwrap();
    // Unpinned it isolates; undo gives it back.
    a.start_isolate_page_range(apfn, apfn + 1, Migratetype::Movable, IsolateFlags::empty())
        .unwrap();
    assert_eq!(isolated_total(&a), 1);
    check(&a);
    assert_eq!(
        a.test_pages_isolated(apfn, apfn + 1, IsolateFlags::empty()),
        Err(IsolateError::InUse { pfn: apfn })
    );
    a.undo_isolate_page_range(pageblock_start(apfn), pageblock_align(apfn + 1));
    assert_eq!(isolated_total(&a), 0);
    check(&a);

    // A long range: a free pageblock first, the kernel page's block last. The free block is
    // isolated, then given back when the kernel page refuses.
    let (lo, hi) = if good < kpfn {
        (good, kpfn + 1)
    } else {
        (kpfn, good + PAGEBLOCK_NR_PAGES)
    };
    if a.zone_of(0, ZoneType::Dma32).unwrap().zone_spans_pfn(lo) {
        let e = a
            .start_isolate_page_range(lo, hi, Migratetype::Movable, IsolateFlags::empty())
            .unwrap_err();
        assert!(
            matches!(
                e,
                IsolateError::Unmovable { .. } | IsolateError::Reserved { .. }
            ),
            "{e}"
        );
        assert_eq!(isolated_total(&a), 0);
        check(&a);
    }

    // Crossing the DMA / DMA32 boundary (16 MiB).
    let e = a
        .start_isolate_page_range(
            4096 - 1024,
            4096 + 1024,
            Migratetype::Movable,
            IsolateFlags::empty(),
        )
        .unwrap_err();
    assert!(matches!(e, IsolateError::CrossesZones { .. }), "{e}");
    // Bad types and empty ranges.
    assert_eq!(
        a.start_isolate_page_range(good, good + 1, Migratetype::Isolate, IsolateFlags::empty()),
        Err(IsolateError::BadMigratetype(Migratetype::Isolate))
    );
    assert!(matches!(
        a.start_isolate_page_range(good, good, Migratetype::Movable, IsolateFlags::empty()),
        Err(IsolateError::EmptyRange { .. })
    ));
    // A block cannot be isolated twice.
    a.start_isolate_page_range(good, good + 1, Migratetype::Movable, IsolateFlags::empty())
        .unwrap();
    assert_eq!(
        a.start_isolate_page_range(good, good + 1, Migratetype::Movable, IsolateFlags::empty()),
        Err(IsolateError::AlreadyIsolated { pfn: good })
    );
    assert_eq!(isolated_total(&a), 1);
    // Isolated free pages are not free: the counter dropped by the block.
    assert_eq!(a.nr_free_pages() + PAGEBLOCK_NR_PAGES, free1 - 1);
    a.test_pages_isolated(good, good + PAGEBLOCK_NR_PAGES, IsolateFlags::empty())
        .unwrap();
    a.undo_isolate_page_range(good, good + PAGEBLOCK_NR_PAGES);
    check(&a);
    a.anon_region_destroy(r).unwrap();
    a.free_pages(k, 0).unwrap();
    a.drain_all_pages();
    assert_eq!(a.nr_free_pages(), free0);
    check(&a);
}

/// Every page some allocation could hand out, taken: returns them as (pfn, order).
fn take_everything(a: &SimAllocator) -> Vec<(u64, u32)> {
    let mut got = Vec::new();
    // Order 0 movable first: this CPU's pcp lists serve it before any drain (a slow path
    // drains them).
    for (gfp, order) in [
        (GFP_HIGHUSER_MOVABLE, 0),
        (GFP_KERNEL, 9),
        (GFP_HIGHUSER_MOVABLE, 9),
        (GFP_KERNEL, 3),
        (GFP_HIGHUSER_MOVABLE, 3),
        (GFP_KERNEL, 0),
        (GFP_HIGHUSER_MOVABLE, 0),
        (GFP_ATOMIC, 0),
        (GFP_KERNEL | Gfp::DMA, 0),
    ] {
        while let Some(p) = a.alloc_pages(gfp | Gfp::NOWARN, order) {
            got.push((a.page_to_pfn(p), order));
        }
    }
    got
}

#[test]
fn isolated_pages_are_never_handed_out() {
    let a = mig_common::machine(64, 2);
    // Anon pages spread over a few pageblocks.
    let r = mig_common::filled_region(&a, 2048, 11);
    let pfns: Vec<u64> = mig_common::region_pfns(&a, r)
        .into_iter()
        .flatten()
        .collect();
    let start = pageblock_start(pfns[pfns.len() / 2]);
    let end = start + 2 * PAGEBLOCK_NR_PAGES;
    let in_range = |pfn: u64, order: u32| pfn < end && pfn + (1 << order) > start;
    // Free some of the range's pages before the isolation, onto this CPU's pcp lists.
    let mut zapped = 0;
    for (i, p) in mig_common::region_pfns(&a, r).into_iter().enumerate() {
        if let Some(p) = p
            && in_range(p, 0)
            && i % 3 == 0
        {
            assert!(a.anon_region_zap(r, i as u64).unwrap());
            zapped += 1;
        }
    }
    assert!(
        zapped > 0 && a.nr_pcp_pages() > 0,
        "pages parked on the pcp lists"
    );
    a.start_isolate_page_range(
        start,
        end,
        Migratetype::Movable,
        IsolateFlags::REPORT_FAILURE,
    )
    .unwrap();
    assert_eq!(isolated_total(&a), 2);
    check(&a);
    // Frees inside the isolated range while isolated: from this CPU and from another one,
    // straight to the isolate lists, never to a pcp list.
    let mut to_zap: Vec<u64> = Vec::new();
    for (i, p) in mig_common::region_pfns(&a, r).into_iter().enumerate() {
        if let Some(p) = p
            && in_range(p, 0)
            && i % 3 == 1
        {
            to_zap.push(i as u64);
        }
    }
    let half = to_zap.len() / 2;
    for &i in &to_zap[..half] {
        assert!(a.anon_region_zap(r, i).unwrap());
    }
    let other = &to_zap[half..];
    a.sim_platform().run_on_cpus(|cpu| {
        if cpu == 1 {
            for &i in other {
                assert!(a.anon_region_zap(r, i).unwrap());
            }
        }
    });
    check(&a);
    // Everything allocatable, by every path (pcp refills, buddy, fallbacks): nothing from
    // the isolated range.
    let got = take_everything(&a);
    assert!(!got.is_empty());
    for &(pfn, order) in &got {
        assert!(
            !in_range(pfn, order),
            "isolated pfn {pfn:#x} order {order} handed out"
        );
    }
    check(&a);
    // Give everything back while still isolated: frees into the range stay isolated.
    for &(pfn, order) in &got {
        a.free_pages(a.pfn_to_page(pfn).unwrap(), order).unwrap();
    }
    check(&a);
    let again = take_everything(&a);
    for &(pfn, order) in &again {
        assert!(
            !in_range(pfn, order),
            "isolated pfn {pfn:#x} handed out after frees"
        );
    }
    for &(pfn, order) in &again {
        a.free_pages(a.pfn_to_page(pfn).unwrap(), order).unwrap();
    }
    // The anon pages still mapped keep the range busy.
    assert!(matches!(
        a.test_pages_isolated(start, end, IsolateFlags::empty()),
        Err(IsolateError::InUse { .. })
    ));
    a.undo_isolate_page_range(start, end);
    assert_eq!(isolated_total(&a), 0);
    check(&a);
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

/// The first `nr`-page range of zone `zt`, aligned to `nr`, that is worth trying.
fn valid_range(a: &SimAllocator, zt: ZoneType, nr: u64) -> u64 {
    let z = a.zone_of(0, zt).unwrap();
    let mut pfn = z.zone_start_pfn().next_multiple_of(nr);
    while pfn + nr <= z.zone_end_pfn() {
        if a.pfn_range_valid_contig(z, pfn, nr) {
            return pfn;
        }
        pfn += nr;
    }
    panic!("no valid range of {nr} pages in {}", zt.name());
}

fn anon_pages_in(a: &SimAllocator, start: u64, end: u64) -> u64 {
    (start..end)
        .filter(|&p| a.pfn_to_page(p).is_some_and(|pg| pg.is_anon()))
        .count() as u64
}

#[test]
fn contig_range_32m_over_scattered_anon_pages() {
    let a = cc::machine(256, 1);
    let free0 = mig_common::free_pages(&a);
    let mut sc = cc::fill(&a, 0);
    let mut rng = Rng::new(16);
    sc.zap_scattered(&a, &mut rng, 50);
    check(&a);
    let nr = (32 * MIB) / PAGE_SIZE;
    let start = valid_range(&a, ZoneType::Dma32, nr);
    let anon_before = anon_pages_in(&a, start, start + nr);
    assert!(
        anon_before > nr / 4,
        "scattered anon pages in the range: {anon_before}"
    );
    let t = std::time::Instant::now();
    let stats = a
        .alloc_contig_range(start, start + nr, Migratetype::Movable, GFP_KERNEL)
        .unwrap_or_else(|e| panic!("{e}"));
    let took = t.elapsed();
    eprintln!(
        "alloc_contig_range 32 MiB: {stats:?} ({anon_before} anon pages in the range), {took:?}"
    );
    assert!(stats.migrated >= anon_before, "{stats:?}");
    assert_eq!(isolated_total(&a), 0);
    for p in start..start + nr {
        let page = a.pfn_to_page(p).unwrap();
        assert_eq!(page.refcount(), 1, "pfn {p:#x}");
        assert!(!page.is_anon() && !page.is_buddy());
    }
    check(&a);
    sc.verify_all(&a);
    a.free_contig_range(start, nr).unwrap();
    check(&a);
    sc.teardown(&a);
    assert_eq!(mig_common::free_pages(&a), free0);
    check(&a);
}

type Pool = ZPool<'static, &'static SimPlatform, 8192>;

fn object(key: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (key.wrapping_mul(131).wrapping_add(i as u64 * 7) >> 2) as u8)
        .collect()
}

#[test]
fn contig_range_moves_zpool_objects_and_anon_pages() {
    let a: &'static SimAllocator = Box::leak(Box::new(mig_common::machine(64, 1)));
    let pool: &'static Pool = Box::leak(Box::new(ZPool::new(a)));
    // Interleave pool pages and anon pages.
    let r = a.anon_region_create(3000).unwrap();
    let (va0, _) = a.anon_region_span(r).unwrap();
    let mut handles: Vec<(ZHandle, u64, usize)> = Vec::new();
    for i in 0..3000u64 {
        a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE).unwrap();
        mig_common::stamp(a, va0 + i * PAGE_SIZE, 5, i, 0);
        let len = 300 + (i as usize * 37) % 1200;
        handles.push((pool.store(&object(i, len)).unwrap(), i, len));
    }
    a.drain_all_pages();
    let pool_pfns: Vec<u64> = (0..(64 * MIB / PAGE_SIZE))
        .filter(|&p| {
            a.pfn_to_page(p)
                .is_some_and(|pg: &Page| pg.is_movable_ops())
        })
        .collect();
    // A 4 MiB range holding pool pages and anon pages.
    let start = pageblock_start(pool_pfns[pool_pfns.len() / 2]);
    let end = start + 2 * PAGEBLOCK_NR_PAGES;
    let ops_in = pool_pfns.iter().filter(|&&p| p >= start && p < end).count();
    let anon_in = anon_pages_in(a, start, end);
    assert!(ops_in > 0 && anon_in > 0, "pool {ops_in} anon {anon_in}");
    let stats = a
        .alloc_contig_range(start, end, Migratetype::Movable, GFP_KERNEL | Gfp::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.migrated as usize >= ops_in, "{stats:?}");
    check(a);
    // Zeroed as asked.
    let v = a.page_address(a.pfn_to_page(start).unwrap()) as *const u64;
    // SAFETY: the page is ours (allocated above) and mapped by the simulated direct map.
    assert_eq!(unsafe { v.read() }, 0);
    let mut buf = [0u8; 4096];
    for &(h, key, len) in &handles {
        assert_eq!(pool.load(h, &mut buf), Ok(len));
        assert_eq!(&buf[..len], &object(key, len)[..], "object {key}");
    }
    for i in 0..3000u64 {
        mig_common::verify(a, va0 + i * PAGE_SIZE, 5, i, 0).unwrap();
    }
    assert_eq!(a.anon_region_check(r).unwrap(), 3000);
    a.free_contig_range(start, end - start).unwrap();
    check(a);
    // Busy: a pinned anon page fails the range with its pfn, and nothing stays isolated.
    let p = mig_common::page_at(a, r, 1500);
    let ppfn = a.page_to_pfn(p);
    a.get_page(p);
    let e = a
        .alloc_contig_range(
            ppfn,
            ppfn + 1,
            Migratetype::Movable,
            GFP_KERNEL | Gfp::NOWARN,
        )
        .unwrap_err();
    assert!(
        matches!(e, ContigError::Isolate(IsolateError::Pinned { pfn, .. }) if pfn == ppfn),
        "{e}"
    );
    assert_eq!(isolated_total(a), 0);
    a.put_page(p).unwrap();
    check(a);
    assert!(matches!(
        a.alloc_contig_range(0, 16, Migratetype::HighAtomic, GFP_KERNEL),
        Err(ContigError::BadMigratetype(_))
    ));
}

/// A 6 GiB machine with anon pages scattered over its Normal zone: `alloc_contig_pages`
/// assembles a 1 GiB gigantic page (memmaps sit at the top of the node, Linux's boot-time
/// placement, so 1 GiB-aligned ranges below hold no reserved page), migrating the anon
/// pages in it with their data intact, and then empties a 64 MiB range (order 14).
#[test]
fn contig_pages_on_a_6g_machine_and_the_gigantic_limit() {
    let a = SimAllocator::build(&qemu_e820(6 << 30), &[], &ModelParams::default(), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let free0 = mig_common::free_pages(&a);
    // Anon pages scattered over the Normal zone: allocate many, keep every 8th.
    let n = 60_000u64;
    let r = a.anon_region_create(n).unwrap();
    let (va0, _) = a.anon_region_span(r).unwrap();
    for i in 0..n {
        a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE).unwrap();
    }
    for i in 0..n {
        if i % 8 == 0 {
            mig_common::stamp(&a, va0 + i * PAGE_SIZE, 9, i, 0);
        } else {
            assert!(a.anon_region_zap(r, i).unwrap());
        }
    }
    a.drain_all_pages();
    check(&a);
    let anon_before: Vec<u64> = (0..n)
        .filter_map(|i| a.anon_region_pfn(r, i).unwrap())
        .collect();
    // Gigantic: possible only if some 1 GiB-aligned range of the Normal zone holds no
    // reserved page, which the default memmap placement guarantees here.
    let giga = 1u64 << 18;
    let normal = a.zone_of(0, ZoneType::Normal).unwrap();
    let possible = (normal.zone_start_pfn().next_multiple_of(giga)..normal.zone_end_pfn())
        .step_by(giga as usize)
        .filter(|&s| s + giga <= normal.zone_end_pfn())
        .any(|s| (s..s + giga).all(|p| a.pfn_to_page(p).is_some_and(|pg| !pg.is_reserved())));
    let t = std::time::Instant::now();
    let g = a.alloc_contig_pages(giga, GFP_KERNEL | Gfp::NOWARN, 0);
    eprintln!(
        "1 GiB alloc_contig_pages (possible: {possible}): {:?} in {:?}",
        g.map(|p| a.page_to_pfn(p)),
        t.elapsed()
    );
    assert!(
        possible,
        "no 1 GiB-aligned Normal range free of reserved pages"
    );
    assert!(g.is_some(), "the 1 GiB gigantic page");
    if let Some(p) = g {
        let pfn = a.page_to_pfn(p);
        assert_eq!(pfn % giga, 0);
        assert_eq!(anon_pages_in(&a, pfn, pfn + giga), 0);
        check(&a);
        for i in (0..n).step_by(8) {
            mig_common::verify(&a, va0 + i * PAGE_SIZE, 9, i, 0).unwrap();
        }
        a.free_contig_range(pfn, giga).unwrap();
    }
    assert_eq!(isolated_total(&a), 0);
    check(&a);
    let nr = 1u64 << 14;
    let t = std::time::Instant::now();
    let page = a
        .alloc_contig_pages(nr, GFP_KERNEL, 0)
        .expect("a 64 MiB contiguous range");
    let took = t.elapsed();
    let pfn = a.page_to_pfn(page);
    let moved = anon_before
        .iter()
        .filter(|&&p| p >= pfn && p < pfn + nr)
        .count();
    eprintln!("64 MiB alloc_contig_pages at pfn {pfn:#x} in {took:?}, {moved} anon pages moved");
    assert_eq!(pfn % nr, 0, "aligned to its size");
    assert_eq!(anon_pages_in(&a, pfn, pfn + nr), 0);
    for p in pfn..pfn + nr {
        assert_eq!(a.pfn_to_page(p).unwrap().refcount(), 1);
    }
    check(&a);
    for i in (0..n).step_by(8) {
        mig_common::verify(&a, va0 + i * PAGE_SIZE, 9, i, 0).unwrap();
    }
    assert_eq!(a.anon_region_check(r).unwrap(), n / 8);
    a.free_contig_range(pfn, nr).unwrap();
    check(&a);
    a.anon_region_destroy(r).unwrap();
    assert_eq!(mig_common::free_pages(&a), free0);
    check(&a);
}

/// With no memory left outside the range, the migration targets run out: the allocation
/// fails with `NoMemory`, nothing stays isolated, and every anon page still reads back.
#[test]
fn contig_range_without_migration_targets_fails_cleanly() {
    let a = cc::machine(64, 1);
    let sc = cc::fill(&a, 0);
    check(&a);
    let z = a.zone_of(0, ZoneType::Dma32).unwrap();
    let nr = 4 * PAGEBLOCK_NR_PAGES;
    let mut pfn = z.zone_start_pfn().next_multiple_of(nr);
    let start = loop {
        assert!(pfn + nr <= z.zone_end_pfn(), "no anon-only range");
        if a.pfn_range_valid_contig(z, pfn, nr) && anon_pages_in(&a, pfn, pfn + nr) > nr / 2 {
            break pfn;
        }
        pfn += nr;
    };
    let free_before = mig_common::free_pages(&a);
    let e = a
        .alloc_contig_range(
            start,
            start + nr,
            Migratetype::Movable,
            GFP_KERNEL | Gfp::NOWARN,
        )
        .unwrap_err();
    assert_eq!(e, ContigError::NoMemory, "{e}");
    assert_eq!(isolated_total(&a), 0);
    check(&a);
    sc.verify_all(&a);
    // Whatever was migrated before the targets ran out freed as many pages as it used.
    assert_eq!(mig_common::free_pages(&a), free_before);
    sc.teardown(&a);
    check(&a);
}

/// Direct compaction (escalating to full priority, where the free scanner takes any
/// pageblock) runs while a range is isolated: it may migrate pages out of the range, but
/// never uses the range's free pages as targets, and no allocation returns them.
#[test]
fn compaction_leaves_isolated_free_pages_alone() {
    let a = cc::machine(64, 1);
    let sc = cc::fragmented(&a, 21);
    let free_in = |s: u64, e: u64| -> u64 {
        cc::free_blocks(&a)
            .into_iter()
            .map(|(p, o)| (p.max(s), (p + (1 << o)).min(e)))
            .filter(|(lo, hi)| lo < hi)
            .map(|(lo, hi)| hi - lo)
            .sum()
    };
    // The Movable pair of pageblocks with the most free pages.
    let z = a.zone_of(0, ZoneType::Dma32).unwrap();
    let len = 2 * PAGEBLOCK_NR_PAGES;
    let start = (z.zone_start_pfn().next_multiple_of(len)..z.zone_end_pfn() - len)
        .step_by(len as usize)
        .filter(|&s| a.pfn_range_valid_contig(z, s, len))
        .max_by_key(|&s| free_in(s, s + len))
        .expect("a movable range");
    a.start_isolate_page_range(
        start,
        start + len,
        Migratetype::Movable,
        IsolateFlags::empty(),
    )
    .unwrap();
    let iso_free = free_in(start, start + len);
    assert!(iso_free > 0);
    let mut got = Vec::new();
    for _ in 0..400 {
        let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 3) else {
            break;
        };
        let pfn = a.page_to_pfn(p);
        assert!(
            pfn + 8 <= start || pfn >= start + len,
            "isolated pfn {pfn:#x} handed out"
        );
        got.push(p);
    }
    let stall = a.vm_event(zonebuddy::report::vmstat::VmEvent::CompactStall);
    assert!(stall > 0, "direct compaction never ran");
    // Frees into the range may add to it; nothing was taken from it.
    assert!(free_in(start, start + len) >= iso_free);
    check(&a);
    sc.verify_all(&a);
    a.undo_isolate_page_range(start, start + len);
    for p in got {
        a.free_pages(p, 3).unwrap();
    }
    check(&a);
    sc.teardown(&a);
    check(&a);
}

/// With `memmap_on_memory` every 128 MiB section keeps its memmap (2 MiB, reserved) inside
/// itself, so no free run is longer than 126 MiB: a 1 GiB request must fail cleanly, with
/// nothing left isolated and the allocator consistent, while 64 MiB still works.
#[test]
fn gigantic_pages_fail_cleanly_with_memmaps_in_every_section() {
    let params = ModelParams {
        memmap_on_memory: true,
        ..ModelParams::default()
    };
    let a =
        SimAllocator::build(&qemu_e820(6 << 30), &[], &params, 1).unwrap_or_else(|e| panic!("{e}"));
    let normal = a.zone_of(0, ZoneType::Normal).unwrap();
    let giga = 1u64 << 18;
    let possible = (normal.zone_start_pfn().next_multiple_of(giga)..normal.zone_end_pfn())
        .step_by(giga as usize)
        .filter(|&s| s + giga <= normal.zone_end_pfn())
        .any(|s| (s..s + giga).all(|p| a.pfn_to_page(p).is_some_and(|pg| !pg.is_reserved())));
    assert!(!possible);
    assert!(
        a.alloc_contig_pages(giga, GFP_KERNEL | Gfp::NOWARN, 0)
            .is_none()
    );
    assert_eq!(isolated_total(&a), 0);
    check(&a);
    let p = a
        .alloc_contig_pages(1 << 14, GFP_KERNEL, 0)
        .expect("64 MiB");
    a.free_contig_range(a.page_to_pfn(p), 1 << 14).unwrap();
    check(&a);
}
