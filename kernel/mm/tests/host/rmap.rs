//! Anon regions and their reverse map: creation, population, zap and destroy, the
//! back-pointers every mapped page carries, and every error a caller can provoke, each of
//! which must leave the allocator consistent (all pages back, invariant checker passes).

use crate::mig_common;

use mig_common::*;
use zonebuddy::model::mmzone::PAGE_SIZE;
use zonebuddy::model::page::PAGE_MAPPING_ANON;
use zonebuddy::movement::rmap::{MAX_ANON_REGIONS, RegionError, RegionId, RmapError};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::platform::{MovableMapping, Pte, PteError};
use zonebuddy::port::sim::SimFault;

#[test]
fn create_populate_zap_destroy() {
    let a = machine(64, 2);
    let free0 = free_pages(&a);
    let (wstart, wend) = a.platform().movable_va_range();
    let r = a.anon_region_create(64).unwrap();
    let (start, n) = a.anon_region_span(r).unwrap();
    assert_eq!(n, 64);
    assert!(start >= wstart && start + n * PAGE_SIZE <= wend);
    assert_eq!(start % PAGE_SIZE, 0);
    for i in 0..n {
        let pfn = a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE).unwrap();
        assert_eq!(a.anon_region_pfn(r, i).unwrap(), Some(pfn));
        let p = a.pfn_to_page(pfn).unwrap();
        assert!(p.is_anon());
        assert_eq!(p.mapping_flags(), PAGE_MAPPING_ANON);
        assert_eq!(p.index(), i);
        assert_eq!(p.mapcount(), 1);
        assert_eq!(p.refcount(), 1);
        assert_eq!(a.page_anon_address(p), Some(start + i * PAGE_SIZE));
        assert_eq!(a.page_anon_region(p), Some(r));
        // Zeroed, and accessible through the MMU only at its address.
        assert_eq!(a.read_u64(start + i * PAGE_SIZE + 8), Ok(0));
        a.write_u64(start + i * PAGE_SIZE + 8, 1000 + i).unwrap();
    }
    assert_eq!(a.anon_region_check(r), Ok(64));
    assert_eq!(a.anon_region_nr_mapped(r), Ok(64));
    for i in 0..n {
        assert_eq!(a.read_u64(start + i * PAGE_SIZE + 8), Ok(1000 + i));
    }
    // A page that is not anon has no reverse mapping.
    let k = a.alloc_page(GFP_KERNEL).unwrap();
    assert_eq!(a.page_anon_address(k), None);
    a.free_pages(k, 0).unwrap();

    for i in (0..n).step_by(2) {
        assert_eq!(a.anon_region_zap(r, i), Ok(true));
        assert_eq!(a.anon_region_zap(r, i), Ok(false));
        assert_eq!(a.anon_region_pfn(r, i), Ok(None));
        let va = start + i * PAGE_SIZE;
        assert_eq!(a.read_u64(va), Err(SimFault::NotMapped(va)));
    }
    assert_eq!(a.anon_region_check(r), Ok(32));
    // Zapped indexes can be populated again.
    a.anon_region_populate(r, 0, GFP_HIGHUSER_MOVABLE).unwrap();
    assert_eq!(a.anon_region_check(r), Ok(33));
    a.anon_region_destroy(r).unwrap();
    for i in 0..n {
        assert_eq!(a.platform().pte_read(start + i * PAGE_SIZE), Pte::None);
    }
    assert_eq!(free_pages(&a), free0, "every page came back");
    check(&a);
}

#[test]
fn stale_handles_are_errors() {
    let a = machine(64, 1);
    let never = RegionId {
        slot: 5,
        generation: 7,
    };
    let out = RegionId {
        slot: MAX_ANON_REGIONS as u16,
        generation: 1,
    };
    for h in [never, out] {
        assert_eq!(a.anon_region_span(h), Err(RegionError::Stale));
        assert_eq!(
            a.anon_region_populate(h, 0, GFP_HIGHUSER_MOVABLE),
            Err(RegionError::Stale)
        );
        assert_eq!(a.anon_region_zap(h, 0), Err(RegionError::Stale));
        assert_eq!(a.anon_region_pfn(h, 0), Err(RegionError::Stale));
        assert_eq!(a.anon_region_destroy(h), Err(RegionError::Stale));
        assert_eq!(a.anon_region_check(h), Err(RmapError::Stale));
    }
    let r = a.anon_region_create(4).unwrap();
    a.anon_region_destroy(r).unwrap();
    assert_eq!(a.anon_region_destroy(r), Err(RegionError::Stale));
    assert_eq!(a.anon_region_span(r), Err(RegionError::Stale));
    // The slot is reused with a new generation: the old handle stays stale.
    let r2 = a.anon_region_create(4).unwrap();
    assert_eq!(r2.slot, r.slot);
    assert_ne!(r2.generation, r.generation);
    assert_eq!(
        a.anon_region_populate(r, 0, GFP_HIGHUSER_MOVABLE),
        Err(RegionError::Stale)
    );
    assert!(a.anon_region_populate(r2, 0, GFP_HIGHUSER_MOVABLE).is_ok());
    a.anon_region_destroy(r2).unwrap();
    check(&a);
}

#[test]
fn bad_requests_change_nothing() {
    let a = machine(64, 1);
    let free0 = free_pages(&a);
    let (wstart, wend) = a.platform().movable_va_range();
    let window = (wend - wstart) / PAGE_SIZE;
    assert_eq!(a.anon_region_create(0), Err(RegionError::BadSize));
    assert_eq!(a.anon_region_create(window + 1), Err(RegionError::BadSize));
    let r = a.anon_region_create(8).unwrap();
    assert_eq!(
        a.anon_region_populate(r, 8, GFP_HIGHUSER_MOVABLE),
        Err(RegionError::BadIndex(8))
    );
    assert_eq!(a.anon_region_zap(r, 9), Err(RegionError::BadIndex(9)));
    assert_eq!(
        a.anon_region_pfn(r, u64::MAX),
        Err(RegionError::BadIndex(u64::MAX))
    );
    assert_eq!(
        a.anon_region_populate(r, 0, GFP_KERNEL),
        Err(RegionError::BadGfp)
    );
    assert_eq!(
        a.anon_region_populate(r, 0, GFP_HIGHUSER_MOVABLE | Gfp::RECLAIMABLE),
        Err(RegionError::BadGfp)
    );
    assert_eq!(
        a.anon_region_populate(r, 0, Gfp::MOVABLE | Gfp::DMA | Gfp::DMA32),
        Err(RegionError::BadGfp)
    );
    a.anon_region_populate(r, 3, GFP_HIGHUSER_MOVABLE).unwrap();
    assert_eq!(
        a.anon_region_populate(r, 3, GFP_HIGHUSER_MOVABLE),
        Err(RegionError::AlreadyMapped(3))
    );
    // A page-table page that cannot be allocated: the page goes back, nothing is mapped.
    let before = free_pages(&a);
    a.sim_platform().inject_pte_map_failures(1);
    assert_eq!(
        a.anon_region_populate(r, 4, GFP_HIGHUSER_MOVABLE),
        Err(RegionError::NoMemory)
    );
    assert_eq!(free_pages(&a), before);
    assert_eq!(a.anon_region_pfn(r, 4), Ok(None));
    assert_eq!(a.anon_region_check(r), Ok(1));
    assert_eq!(a.platform().pte_map(wend, 1), Err(PteError::OutOfRange));
    a.anon_region_destroy(r).unwrap();
    assert_eq!(free_pages(&a), free0);
    check(&a);
}

#[test]
fn slots_and_virtual_space_run_out_and_come_back() {
    let a = machine(64, 1);
    let (wstart, wend) = a.platform().movable_va_range();
    let window = (wend - wstart) / PAGE_SIZE;
    // Virtual space: one region nearly fills the window.
    let big = a.anon_region_create(window - 10).unwrap();
    assert_eq!(a.anon_region_create(20), Err(RegionError::NoSpace));
    let small = a.anon_region_create(10).unwrap();
    assert_eq!(a.anon_region_create(1), Err(RegionError::NoSpace));
    let (s_big, _) = a.anon_region_span(big).unwrap();
    let (s_small, _) = a.anon_region_span(small).unwrap();
    assert_eq!(s_big, wstart);
    assert_eq!(s_small, wstart + (window - 10) * PAGE_SIZE);
    a.anon_region_destroy(big).unwrap();
    // The released range is reused, first fit.
    let again = a.anon_region_create(window - 10).unwrap();
    assert_eq!(a.anon_region_span(again).unwrap().0, wstart);
    a.anon_region_destroy(again).unwrap();
    a.anon_region_destroy(small).unwrap();

    // Slots: all of them, then one more.
    let ids: Vec<RegionId> = (0..MAX_ANON_REGIONS)
        .map(|_| a.anon_region_create(2).unwrap())
        .collect();
    assert_eq!(a.anon_region_create(1), Err(RegionError::NoSpace));
    // Regions never overlap.
    let mut spans: Vec<(u64, u64)> = ids
        .iter()
        .map(|&r| a.anon_region_span(r).unwrap())
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 * PAGE_SIZE <= w[1].0, "{w:?} overlap");
    }
    a.anon_region_destroy(ids[17]).unwrap();
    let r = a.anon_region_create(2).unwrap();
    assert_eq!(r.slot, ids[17].slot);
    for &id in ids.iter().filter(|&&id| id != ids[17]) {
        a.anon_region_destroy(id).unwrap();
    }
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

#[test]
fn out_of_memory_leaves_everything_consistent() {
    let a = machine(32, 1);
    let free0 = free_pages(&a);
    let r = a.anon_region_create(1 << 16).unwrap();
    let mut populated = 0;
    let mut oom = None;
    for i in 0..(1 << 16) {
        match a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
            Ok(_) => populated += 1,
            Err(e) => {
                oom = Some((i, e));
                break;
            }
        }
    }
    let (i, e) = oom.expect("a 32 MiB machine cannot map 256 MiB");
    assert_eq!(e, RegionError::NoMemory);
    assert_eq!(a.anon_region_pfn(r, i), Ok(None));
    assert_eq!(a.anon_region_check(r), Ok(populated));
    assert!(populated > 1000, "only {populated} pages before OOM");
    check(&a);
    a.anon_region_destroy(r).unwrap();
    assert_eq!(free_pages(&a), free0);
    check(&a);
}

#[test]
fn concurrent_populate_zap_and_destroy() {
    let a = machine(64, 4);
    let free0 = free_pages(&a);
    let r = a.anon_region_create(512).unwrap();
    let plat = a.sim_platform();
    // Every CPU populates and zaps the same indexes: each index ends mapped once or not.
    plat.run_on_cpus(|cpu| {
        for round in 0..20u64 {
            for i in 0..512u64 {
                if (i + round + cpu as u64) % 3 == 0 {
                    match a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE) {
                        Ok(_) | Err(RegionError::AlreadyMapped(_)) => {}
                        Err(e) => panic!("populate: {e}"),
                    }
                } else if (i + round) % 5 == 0 {
                    a.anon_region_zap(r, i).unwrap();
                }
            }
        }
    });
    let mapped = a.anon_region_check(r).unwrap();
    assert_eq!(a.anon_region_nr_mapped(r), Ok(mapped));
    a.anon_region_destroy(r).unwrap();
    assert_eq!(free_pages(&a), free0);
    check(&a);
}
