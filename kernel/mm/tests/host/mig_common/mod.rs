//! Shared pieces of the rmap, migration and zpool tests: simulated machines, anon regions
//! filled with checksummed pages, and isolation helpers.

#![allow(dead_code)]

use zonebuddy::model::list::PageList;
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::PAGE_SIZE;
use zonebuddy::model::page::Page;
use zonebuddy::movement::rmap::RegionId;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::{SimAllocator, qemu_e820};

pub const MIB: u64 = 1 << 20;

/// A QEMU-like machine with `mib` MiB of RAM and `cpus` CPUs.
pub fn machine(mib: u64, cpus: usize) -> SimAllocator {
    SimAllocator::build(&qemu_e820(mib * MIB), &[], &ModelParams::default(), cpus)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every free page, pcp pages returned to the buddy lists first.
pub fn free_pages(a: &SimAllocator) -> u64 {
    a.drain_all_pages();
    a.nr_free_pages()
}

/// The invariant checker must pass.
pub fn check(a: &SimAllocator) {
    if let Err(v) = zonebuddy::report::debug::check(&**a) {
        panic!("debug::check: {v:?}");
    }
}

/// The word `w` of page `index` of a region, version `ver`: what the checksummed pages
/// hold.
pub fn pattern(tag: u64, index: u64, ver: u64, w: usize) -> u64 {
    (tag ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ver.rotate_left(17))
        .wrapping_add(w as u64 * 0x0100_0000_01b3)
}

/// Write version `ver` of the pattern into page `index` through the MMU.
pub fn stamp(a: &SimAllocator, va: u64, tag: u64, index: u64, ver: u64) {
    a.with_page(va, |words| {
        for (w, word) in words.iter().enumerate() {
            word.store(
                pattern(tag, index, ver, w),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    })
    .unwrap_or_else(|e| panic!("stamp: {e}"));
}

/// Verify page `index` holds version `ver` through the MMU; the first bad word if not.
pub fn verify(a: &SimAllocator, va: u64, tag: u64, index: u64, ver: u64) -> Result<(), String> {
    a.with_page(va, |words| {
        for (w, word) in words.iter().enumerate() {
            let got = word.load(std::sync::atomic::Ordering::Relaxed);
            let want = pattern(tag, index, ver, w);
            if got != want {
                return Err(format!(
                    "va {va:#x} index {index} word {w}: {got:#x}, want {want:#x} (version {ver})"
                ));
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

/// A region of `n` pages, all populated and stamped with version 0.
pub fn filled_region(a: &SimAllocator, n: u64, tag: u64) -> RegionId {
    let r = a.anon_region_create(n).expect("create");
    let (start, _) = a.anon_region_span(r).unwrap();
    for i in 0..n {
        a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE)
            .expect("populate");
        stamp(a, start + i * PAGE_SIZE, tag, i, 0);
    }
    r
}

pub fn page_at(a: &SimAllocator, r: RegionId, i: u64) -> &Page {
    let pfn = a.anon_region_pfn(r, i).unwrap().expect("mapped");
    a.pfn_to_page(pfn).unwrap()
}

/// Isolate every mapped page of `r` onto a new list (mode SyncLight); panics if one
/// cannot be isolated.
pub fn isolate_region(a: &SimAllocator, r: RegionId) -> PageList {
    let (_, n) = a.anon_region_span(r).unwrap();
    let mut list = PageList::new();
    for i in 0..n {
        let Some(pfn) = a.anon_region_pfn(r, i).unwrap() else {
            continue;
        };
        let p = a.pfn_to_page(pfn).unwrap();
        assert!(
            a.isolate_migratepage(p, zonebuddy::movement::migrate::MigrateMode::SyncLight),
            "isolate index {i}"
        );
        // SAFETY: just isolated: the links are ours, and the page lives in the memmap.
        unsafe { list.push_back(p) };
    }
    list
}

/// The pfns of a region's pages, in index order (None: unmapped).
pub fn region_pfns(a: &SimAllocator, r: RegionId) -> Vec<Option<u64>> {
    let (_, n) = a.anon_region_span(r).unwrap();
    (0..n).map(|i| a.anon_region_pfn(r, i).unwrap()).collect()
}
