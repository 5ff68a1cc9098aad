//! Contiguous allocations under load: CPU 0 allocates, fills, verifies and frees
//! contiguous ranges (each one isolated, emptied by migration and taken) while three CPUs
//! keep populating, rewriting, verifying and zapping checksummed anon pages and allocating
//! and freeing stamped kernel pages, through their pcp lists. A page of a contiguous range
//! handed to anyone else, or an anon page whose migration lost a write, shows up as a bad
//! checksum; the invariant checker must be clean at the end.

use crate::mig_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mig_common::*;
use zonebuddy::model::mmzone::{Migratetype, PAGE_SIZE, PAGEBLOCK_NR_PAGES, ZoneType};
use zonebuddy::page_alloc::gfp::*;

const CPUS: usize = 4;
const PAGES_PER_CPU: u64 = 1024;
const ROUNDS: u64 = 60;

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Fill (or check) every word of a page through the direct map with `tag ^ word`.
fn fill_page(a: &zonebuddy::port::sim::SimAllocator, pfn: u64, tag: u64, check: bool) -> bool {
    let p = a.pfn_to_page(pfn).unwrap();
    let va = a.page_address(p) as *mut u64;
    for w in 0..(PAGE_SIZE / 8) as usize {
        // SAFETY: the page is allocated to the caller and mapped by the direct map.
        unsafe {
            let ptr = va.add(w);
            if check {
                if ptr.read_volatile() != tag ^ w as u64 {
                    return false;
                }
            } else {
                ptr.write_volatile(tag ^ w as u64);
            }
        }
    }
    true
}

#[test]
fn contiguous_ranges_while_three_cpus_work() {
    let a = machine(128, CPUS);
    let free0 = free_pages(&a);
    let regions: Vec<_> = (1..CPUS)
        .map(|cpu| filled_region(&a, PAGES_PER_CPU, 0xc0_0000 ^ cpu as u64))
        .collect();
    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let migrated = AtomicU64::new(0);
    let z = a.zone_of(0, ZoneType::Dma32).unwrap();
    let (zs, ze) = (z.zone_start_pfn(), z.zone_end_pfn());
    a.sim_platform().run_on_cpus(|cpu| {
        if cpu == 0 {
            let mut x = 0x1234_5678u64;
            for round in 0..ROUNDS {
                let len = PAGEBLOCK_NR_PAGES * (1 + next(&mut x) % 4);
                let start = zs.next_multiple_of(PAGEBLOCK_NR_PAGES)
                    + (next(&mut x) % ((ze - zs - 2 * len) / PAGEBLOCK_NR_PAGES))
                        * PAGEBLOCK_NR_PAGES;
                match a.alloc_contig_range(
                    start,
                    start + len,
                    Migratetype::Movable,
                    GFP_KERNEL | Gfp::NOWARN,
                ) {
                    Ok(stats) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        migrated.fetch_add(stats.migrated, Ordering::Relaxed);
                        for p in start..start + len {
                            fill_page(&a, p, round << 32 | p, false);
                        }
                        std::thread::yield_now();
                        for p in start..start + len {
                            if !fill_page(&a, p, round << 32 | p, true) {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("contig pfn {p:#x} overwritten"));
                            }
                        }
                        a.free_contig_range(start, len).unwrap();
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            return;
        }
        let r = regions[cpu - 1];
        let tag = 0xc0_0000 ^ cpu as u64;
        let (va0, _) = a.anon_region_span(r).unwrap();
        let mut ver = vec![Some(0u64); PAGES_PER_CPU as usize];
        let mut kernel: Vec<(u64, u64)> = Vec::new();
        let mut x = 0x9e37_79b9u64 ^ cpu as u64;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let i = next(&mut x) % PAGES_PER_CPU;
            let va = va0 + i * PAGE_SIZE;
            match ver[i as usize] {
                Some(v) => {
                    if let Err(e) = verify(&a, va, tag, i, v) {
                        errors.lock().unwrap().push(e);
                    }
                    if next(&mut x) % 4 == 0 {
                        assert!(a.anon_region_zap(r, i).unwrap());
                        ver[i as usize] = None;
                    } else {
                        stamp(&a, va, tag, i, v + 1);
                        ver[i as usize] = Some(v + 1);
                    }
                }
                None => {
                    if a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN)
                        .is_ok()
                    {
                        stamp(&a, va, tag, i, 0);
                        ver[i as usize] = Some(0);
                    }
                }
            }
            // Kernel pages, stamped while held, through the pcp lists.
            if n % 3 == 0 {
                if kernel.len() < 64
                    && let Some(p) = a.alloc_page(GFP_KERNEL | Gfp::NOWARN)
                {
                    let pfn = a.page_to_pfn(p);
                    fill_page(&a, pfn, n, false);
                    kernel.push((pfn, n));
                } else if let Some((pfn, t)) = kernel.pop() {
                    if !fill_page(&a, pfn, t, true) {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("kernel pfn {pfn:#x} overwritten"));
                    }
                    a.free_pages(a.pfn_to_page(pfn).unwrap(), 0).unwrap();
                }
            }
        }
        for (pfn, _) in kernel {
            a.free_pages(a.pfn_to_page(pfn).unwrap(), 0).unwrap();
        }
        for (i, v) in ver.iter().enumerate() {
            if let Some(v) = v
                && let Err(e) = verify(&a, va0 + i as u64 * PAGE_SIZE, tag, i as u64, *v)
            {
                errors.lock().unwrap().push(e);
            }
        }
    });
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    eprintln!(
        "contig under load: {} ranges allocated, {} refused, {} pages migrated",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        migrated.load(Ordering::Relaxed)
    );
    assert!(
        ok.load(Ordering::Relaxed) > ROUNDS / 4,
        "too few contiguous ranges"
    );
    assert!(migrated.load(Ordering::Relaxed) > 0, "nothing was migrated");
    assert_eq!(a.nr_isolate_pageblock(), 0);
    check(&a);
    for r in regions {
        a.anon_region_check(r).unwrap();
        a.anon_region_destroy(r).unwrap();
    }
    assert_eq!(free_pages(&a), free0);
    check(&a);
}
