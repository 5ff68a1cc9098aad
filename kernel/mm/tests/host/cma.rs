//! CMA areas: `cma=` parsing, an area declared at boot lent to movable allocations only,
//! `cma_alloc` of 32 MiB from a 64 MiB area full of scattered movable pages (data intact),
//! refusal on a pinned page, release, and the views (meminfo, the per-area text).

use crate::compaction_common::{self as cc, Rng};

use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{Migratetype, PAGE_SIZE, PAGEBLOCK_NR_PAGES};
use zonebuddy::model::pageblock::get_pageblock_migratetype;
use zonebuddy::movement::cma::{CmaError, CmaParamError, CmaSpec, parse_cma};
use zonebuddy::movement::contig::ContigError;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::{SimAllocator, qemu_e820};

const MIB: u64 = 1 << 20;

fn check(a: &SimAllocator) {
    if let Err(v) = zonebuddy::report::debug::check(&**a) {
        panic!("debug::check: {v}");
    }
}

/// A QEMU-like machine of `mib` MiB with `cma=<cma>`.
fn machine_with_cma(mib: u64, cma: &str) -> SimAllocator {
    let mut params = ModelParams::default();
    params.parse_cmdline(&format!("quiet cma={cma} loglevel=3"));
    SimAllocator::build(&qemu_e820(mib * MIB), &[], &params, 1).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn cma_parameter_parsing() {
    assert_eq!(
        parse_cma("64M"),
        Ok(CmaSpec {
            size: 64 * MIB,
            base: None
        })
    );
    assert_eq!(
        parse_cma("32m@0x10000000"),
        Ok(CmaSpec {
            size: 32 * MIB,
            base: Some(0x1000_0000)
        })
    );
    assert_eq!(
        parse_cma("1G@2G"),
        Ok(CmaSpec {
            size: 1 << 30,
            base: Some(2 << 30)
        })
    );
    assert_eq!(parse_cma("lots"), Err(CmaParamError::Malformed));
    assert_eq!(parse_cma("64Q"), Err(CmaParamError::Malformed));
    assert_eq!(parse_cma("0"), Err(CmaParamError::Zero));
    assert_eq!(
        parse_cma("99999999999999999999"),
        Err(CmaParamError::Overflow)
    );
    let mut p = ModelParams::default();
    assert!(p.set_cma("x@y").is_err());
    assert_eq!(p.cma, None);
    p.parse_cmdline("cma=16M cma=64M@256M");
    assert_eq!(
        p.cma,
        Some(CmaSpec {
            size: 64 * MIB,
            base: Some(256 * MIB)
        })
    );
}

#[test]
fn cma_area_is_lent_to_movable_allocations_only() {
    let a = machine_with_cma(256, "64M");
    assert_eq!(a.cma_nr_areas(), 1);
    let area = a.cma_area(0).unwrap();
    assert_eq!(area.count, 64 * MIB / PAGE_SIZE);
    assert_eq!(area.used, 0);
    let (base, end) = (area.base_pfn, area.base_pfn + area.count);
    for pb in (base..end).step_by(PAGEBLOCK_NR_PAGES as usize) {
        assert_eq!(
            get_pageblock_migratetype(a.model().sparse(), pb),
            Ok(Migratetype::Cma)
        );
    }
    a.drain_all_pages();
    assert_eq!(a.totalcma_pages(), area.count);
    assert_eq!(a.nr_free_cma_pages(), area.count);
    let mut meminfo = String::new();
    a.write_meminfo(&mut meminfo).unwrap();
    assert!(
        meminfo.contains("CmaTotal:          65536 kB\n"),
        "{meminfo}"
    );
    assert!(
        meminfo.contains("CmaFree:           65536 kB\n"),
        "{meminfo}"
    );
    let mut vmstat = String::new();
    a.write_vmstat(&mut vmstat).unwrap();
    assert!(
        vmstat.contains(&format!("nr_free_cma {}\n", area.count)),
        "{vmstat}"
    );
    check(&a);
    let in_area = |pfn: u64, order: u32| pfn < end && pfn + (1 << order) > base;
    // Unmovable and reclaimable requests never get CMA memory, even with nothing else left.
    let mut unmovable = Vec::new();
    for (gfp, order) in [(GFP_KERNEL, 3), (GFP_KERNEL, 0), (GFP_ATOMIC, 0)] {
        while let Some(p) = a.alloc_pages(gfp | Gfp::NOWARN, order) {
            let pfn = a.page_to_pfn(p);
            assert!(
                !in_area(pfn, order),
                "{gfp} order {order} got CMA pfn {pfn:#x}"
            );
            unmovable.push((pfn, order));
        }
    }
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::RECLAIMABLE | Gfp::NOWARN, 0) {
        let pfn = a.page_to_pfn(p);
        assert!(!in_area(pfn, 0), "reclaimable got CMA pfn {pfn:#x}");
        unmovable.push((pfn, 0));
    }
    check(&a);
    // Movable requests do, and the area holds nearly all that is left.
    let mut movable = Vec::new();
    while let Some(p) = a.alloc_page(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
        movable.push(a.page_to_pfn(p));
    }
    let from_cma = movable.iter().filter(|&&p| in_area(p, 0)).count() as u64;
    assert!(
        from_cma > area.count * 9 / 10,
        "movable allocations used {from_cma} of {} CMA pages",
        area.count
    );
    check(&a);
    for pfn in movable {
        a.free_pages(a.pfn_to_page(pfn).unwrap(), 0).unwrap();
    }
    for (pfn, order) in unmovable {
        a.free_pages(a.pfn_to_page(pfn).unwrap(), order).unwrap();
    }
    a.drain_all_pages();
    assert_eq!(a.nr_free_cma_pages(), area.count);
    check(&a);
}

#[test]
fn cma_balancing_prefers_cma_when_it_holds_most_free_memory() {
    // 96 MiB of CMA on a 160 MiB machine: more than half of the zone's free memory is
    // CMA, so movable allocations take CMA first (Linux's __rmqueue balancing). (No area
    // can exceed 126 MiB: each 128 MiB section keeps its memmap at its end.)
    let a = machine_with_cma(160, "96M");
    let area = a.cma_area(0).unwrap();
    let (base, end) = (area.base_pfn, area.base_pfn + area.count);
    let mut got = Vec::new();
    for _ in 0..64 {
        got.push(a.page_to_pfn(a.alloc_page(GFP_HIGHUSER_MOVABLE).unwrap()));
    }
    let cma = got.iter().filter(|&&p| p >= base && p < end).count();
    assert!(cma >= 32, "only {cma} of 64 movable pages from CMA");
    for p in got {
        a.free_pages(a.pfn_to_page(p).unwrap(), 0).unwrap();
    }
    check(&a);
}

#[test]
fn cma_alloc_32m_from_a_64m_area_full_of_movable_pages() {
    let a = machine_with_cma(256, "64M");
    let free0 = cc::free_distribution(&a).2;
    let area = a.cma_area(0).unwrap();
    let (base, end) = (area.base_pfn, area.base_pfn + area.count);
    let mut sc = cc::fill(&a, 0);
    let mut rng = Rng::new(64);
    sc.zap_scattered(&a, &mut rng, 50);
    check(&a);
    let anon_in_area = (base..end)
        .filter(|&p| a.pfn_to_page(p).is_some_and(|pg| pg.is_anon()))
        .count() as u64;
    assert!(
        anon_in_area > area.count / 4,
        "movable pages scattered in the area: {anon_in_area}"
    );
    let count = 32 * MIB / PAGE_SIZE;
    let t = std::time::Instant::now();
    let (page, stats) = a.cma_alloc(0, count, 0).unwrap_or_else(|e| panic!("{e}"));
    let took = t.elapsed();
    let pfn = a.page_to_pfn(page);
    eprintln!(
        "cma_alloc 32 MiB from a 64 MiB area ({anon_in_area} anon pages in it): {stats:?} in {took:?}"
    );
    assert!(pfn >= base && pfn + count <= end);
    assert!(stats.migrated > 0, "{stats:?}");
    for p in pfn..pfn + count {
        assert_eq!(a.pfn_to_page(p).unwrap().refcount(), 1, "pfn {p:#x}");
    }
    assert_eq!(a.nr_isolate_pageblock(), 0);
    check(&a);
    sc.verify_all(&a);
    let snap = a.cma_area(0).unwrap();
    assert_eq!(snap.used, count);
    assert_eq!(snap.maxchunk, area.count - count);
    let mut view = String::new();
    a.write_cma_areas(&mut view).unwrap();
    assert!(view.starts_with("cma reserved\n"), "{view}");
    assert!(view.contains("\ncount: 16384\n"), "{view}");
    assert!(view.contains("\nused: 8192\n"), "{view}");
    assert!(view.contains("\nbitmap: 4294967295 "), "{view}");
    // The blocks are still CMA after the allocation.
    assert_eq!(
        get_pageblock_migratetype(a.model().sparse(), pfn),
        Ok(Migratetype::Cma)
    );
    // A second 32 MiB fits in the other half; a third does not.
    let (page2, _) = a.cma_alloc(0, count, 0).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        a.cma_alloc(0, count, 0),
        Err(CmaError::AllocFailed { last: None, .. })
    ));
    a.cma_release(0, page2, count).unwrap();
    // Release: refused for pages outside the area, then back to the CMA lists.
    let outside = a.pfn_to_page(base - 1).unwrap();
    assert!(matches!(
        a.cma_release(0, outside, 1),
        Err(CmaError::NotOurs { .. })
    ));
    a.cma_release(0, page, count).unwrap();
    assert_eq!(a.cma_area(0).unwrap().used, 0);
    // Alignment is in pfns, whatever the area's base: 8 MiB (order 11) twice.
    for _ in 0..2 {
        let (p, _) = a.cma_alloc(0, 1000, 11).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.page_to_pfn(p) % 2048, 0, "pfn {:#x}", a.page_to_pfn(p));
        a.cma_release(0, p, 1000).unwrap();
    }
    let (p1, _) = a.cma_alloc(0, 1000, 11).unwrap();
    let (p2, _) = a.cma_alloc(0, 1000, 11).unwrap();
    assert_eq!(a.page_to_pfn(p2) - a.page_to_pfn(p1), 2048);
    a.cma_release(0, p1, 1000).unwrap();
    a.cma_release(0, p2, 1000).unwrap();
    assert_eq!(a.cma_area(0).unwrap().used, 0);
    check(&a);
    sc.teardown(&a);
    a.drain_all_pages();
    assert_eq!(a.nr_free_cma_pages(), area.count);
    assert_eq!(cc::free_distribution(&a).2, free0);
    check(&a);
}

#[test]
fn cma_alloc_refuses_a_pinned_page_and_leaves_nothing_behind() {
    let a = machine_with_cma(128, "16M");
    let area = a.cma_area(0).unwrap();
    // Push movable pages into the area: take all other memory first.
    let mut held = Vec::new();
    while let Some(p) = a.alloc_page(GFP_KERNEL | Gfp::NOWARN) {
        held.push(a.page_to_pfn(p));
    }
    let r = a.anon_region_create(64).unwrap();
    for i in 0..64 {
        a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE).unwrap();
    }
    let in_area = |p: u64| p >= area.base_pfn && p < area.base_pfn + area.count;
    let anon_in_area: Vec<u64> = (0..64)
        .map(|i| a.anon_region_pfn(r, i).unwrap().unwrap())
        .filter(|&p| in_area(p))
        .collect();
    assert!(!anon_in_area.is_empty(), "anon pages in the area");
    let pinned_pfn = anon_in_area[anon_in_area.len() / 2];
    for p in held {
        a.free_pages(a.pfn_to_page(p).unwrap(), 0).unwrap();
    }
    let pinned = a.pfn_to_page(pinned_pfn).unwrap();
    a.get_page(pinned);
    // The whole area: the pinned page is in every candidate run.
    let e = a.cma_alloc(0, area.count, 0).unwrap_err();
    assert!(
        matches!(
            e,
            CmaError::AllocFailed {
                last: Some(ContigError::Busy { pfn, .. }),
                ..
            } if pfn == pinned_pfn
        ),
        "{e}"
    );
    assert_eq!(a.nr_isolate_pageblock(), 0);
    assert_eq!(a.cma_area(0).unwrap().used, 0);
    check(&a);
    a.put_page(pinned).unwrap();
    // Unpinned, the same request succeeds and moves the last anon page out (the failed
    // attempt already moved the others: migrated pages stay migrated).
    let (page, stats) = a.cma_alloc(0, area.count, 0).unwrap();
    assert!(stats.migrated >= 1, "{stats:?}");
    for i in 0..64 {
        assert!(
            !in_area(a.anon_region_pfn(r, i).unwrap().unwrap()),
            "index {i}"
        );
    }
    assert_eq!(a.anon_region_check(r).unwrap(), 64);
    a.cma_release(0, page, area.count).unwrap();
    a.anon_region_destroy(r).unwrap();
    check(&a);
    // A fixed base that is not 4 MiB aligned, an unknown area.
    assert_eq!(
        a.cma_declare_contiguous(4 * MIB, Some(0x100_1000), "x"),
        Err(CmaError::Misaligned { base: 0x100_1000 })
    );
    assert!(matches!(a.cma_alloc(3, 1, 0), Err(CmaError::NoArea(3))));
    // A second area at a fixed place, declared at run time.
    let id = a
        .cma_declare_contiguous(8 * MIB, Some(64 * MIB), "second")
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(a.cma_area(1).unwrap().name(), "second");
    assert_eq!(a.totalcma_pages(), (16 + 8) * MIB / PAGE_SIZE);
    check(&a);
}

/// One isolation over pageblocks of three types (CMA, Unmovable, Movable) and its undo:
/// each block comes back with its own type, not the caller's (Linux 6.x; before, the
/// caller's type was painted over all of them).
#[test]
fn undo_isolate_page_range_restores_each_blocks_own_type() {
    use zonebuddy::movement::isolation::IsolateFlags;
    let a = machine_with_cma(256, "64M");
    let mem = a.model().sparse();
    let area = a.cma_area(0).unwrap();
    let end = area.base_pfn + area.count;
    let ty = |pb: u64| get_pageblock_migratetype(mem, pb).unwrap();
    // An Unmovable pageblock, made by a kernel allocation, with a free page in it.
    let kernel_page = a.alloc_page(GFP_KERNEL).unwrap();
    let kpfn = a.page_to_pfn(kernel_page);
    let upb = kpfn & !(PAGEBLOCK_NR_PAGES - 1);
    assert_eq!(ty(upb), Migratetype::Unmovable);
    let free_in_upb = (upb..upb + PAGEBLOCK_NR_PAGES)
        .find(|&p| a.pfn_to_page(p).is_some_and(|pg| pg.is_buddy()))
        .expect("a free page in the Unmovable block");
    // CMA caller over the last CMA block and the block after the area: both isolate.
    let range = (end - PAGEBLOCK_NR_PAGES, end + PAGEBLOCK_NR_PAGES);
    let before: Vec<_> = [range.0, end].map(ty).to_vec();
    assert_eq!(before[0], Migratetype::Cma);
    assert_ne!(before[1], Migratetype::Cma);
    a.start_isolate_page_range(range.0, range.1, Migratetype::Cma, IsolateFlags::empty())
        .unwrap();
    // A Movable caller over one free page of the Unmovable block isolates all of it.
    a.start_isolate_page_range(
        free_in_upb,
        free_in_upb + 1,
        Migratetype::Movable,
        IsolateFlags::empty(),
    )
    .unwrap();
    for pb in [range.0, end, upb] {
        assert_eq!(ty(pb), Migratetype::Isolate);
    }
    if let Err(v) = zonebuddy::report::debug::check(&*a) {
        panic!("{v}");
    }
    a.undo_isolate_page_range(range.0, range.1);
    a.undo_isolate_page_range(free_in_upb, free_in_upb + 1);
    assert_eq!([range.0, end].map(ty).to_vec(), before);
    assert_eq!(ty(upb), Migratetype::Unmovable);
    assert_eq!(a.nr_isolate_pageblock(), 0);
    // The free pages are on their own type's lists again.
    if let Err(v) = zonebuddy::report::debug::check(&*a) {
        panic!("{v}");
    }
    assert!(a.nr_free_cma_pages() > 0);
    a.free_pages(kernel_page, 0).unwrap();
}
