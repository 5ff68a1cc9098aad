//! The page allocator with several threads as CPUs: concurrent allocation and freeing of
//! all pcp orders and beyond, frees of pages allocated on another CPU, `drain_all_pages`
//! and the invariant checker running while the others work; at the end every page must
//! come back and the checker must pass.
//!
//! Each thread's operations come from a seeded generator; the interleaving is the host
//! scheduler's. `MM_SMP_ROUNDS` (default 20) sets how many rounds run.

use crate::alloc_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use alloc_common::*;
use zonebuddy::model::mmzone::{PAGE_SIZE, ZoneType};
use zonebuddy::model::page::Page;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::platform::Platform;
use zonebuddy::port::sim::SimAllocator;
use zonebuddy::report::vmstat::VmEvent;

/// A block handed between threads: pfn and order.
type Held = (u64, u32);

fn write_owner(a: &SimAllocator, pfn: u64, order: u32, tag: u64) {
    let n = 1u64 << order;
    for i in [0, n - 1] {
        let p = a.platform().phys_to_virt((pfn + i) * PAGE_SIZE) as *mut u64;
        // SAFETY: the block belongs to the calling thread.
        unsafe { p.write_volatile(tag ^ (pfn + i)) };
    }
}

fn check_owner(a: &SimAllocator, pfn: u64, order: u32, tag: u64) {
    let n = 1u64 << order;
    for i in [0, n - 1] {
        let p = a.platform().phys_to_virt((pfn + i) * PAGE_SIZE) as *const u64;
        // SAFETY: as above.
        let v = unsafe { p.read_volatile() };
        assert_eq!(
            v,
            tag ^ (pfn + i),
            "pfn {:#x} was handed to two owners",
            pfn + i
        );
    }
}

const TAG: u64 = 0x5a5a_0000_0000_0000;

fn page(a: &SimAllocator, pfn: u64) -> &Page {
    a.pfn_to_page(pfn).unwrap()
}

fn run_round(a: &SimAllocator, seed: u64, ops: u64) {
    let plat = a.sim_platform();
    let exchange: Mutex<Vec<Held>> = Mutex::new(Vec::new());
    let leftovers: Mutex<Vec<Held>> = Mutex::new(Vec::new());
    let allocated = AtomicU64::new(0);
    let freed = AtomicU64::new(0);
    let pgalloc0 = pgalloc_total(a);
    let pgfree0 = a.vm_event(VmEvent::Pgfree);
    plat.run_on_cpus(|cpu| {
        let mut r = Rng::new(seed * 64 + cpu as u64);
        let mut mine: Vec<Held> = Vec::new();
        let gfps = [
            GFP_KERNEL,
            GFP_HIGHUSER_MOVABLE,
            GFP_ATOMIC,
            GFP_KERNEL | Gfp::RECLAIMABLE,
            GFP_KERNEL | Gfp::DMA32,
        ];
        let free = |h: Held, r: &mut Rng| {
            check_owner(a, h.0, h.1, TAG);
            write_owner(a, h.0, h.1, 0);
            let res = if r.chance(20) {
                a.free_pages_virt(a.page_address(page(a, h.0)), h.1)
            } else {
                a.free_pages(page(a, h.0), h.1)
            };
            res.unwrap_or_else(|e| panic!("cpu {cpu}: {e}"));
            freed.fetch_add(1 << h.1, Ordering::Relaxed);
        };
        for i in 0..ops {
            match r.below(100) {
                0..45 => {
                    let order = match r.below(20) {
                        0..12 => 0,
                        12..17 => 1 + r.below(3) as u32,
                        17..19 => 9,
                        _ => 5,
                    };
                    let gfp = r.pick(&gfps) | Gfp::NOWARN;
                    if let Some(p) = a.alloc_pages(gfp, order) {
                        let pfn = a.page_to_pfn(p);
                        write_owner(a, pfn, order, TAG);
                        allocated.fetch_add(1 << order, Ordering::Relaxed);
                        if r.chance(30) {
                            exchange.lock().unwrap().push((pfn, order));
                        } else {
                            mine.push((pfn, order));
                        }
                    }
                }
                45..75 => {
                    if !mine.is_empty() {
                        let j = r.below(mine.len() as u64) as usize;
                        free(mine.swap_remove(j), &mut r);
                    }
                }
                75..90 => {
                    // A page allocated on another CPU.
                    let h = exchange.lock().unwrap().pop();
                    if let Some(h) = h {
                        free(h, &mut r);
                    }
                }
                90..94 => {
                    let mut out = vec![None; 1 + r.below(40) as usize];
                    let n = out.len();
                    a.alloc_pages_bulk(GFP_KERNEL, n, &mut out);
                    for p in out.into_iter().flatten() {
                        let pfn = a.page_to_pfn(p);
                        write_owner(a, pfn, 0, TAG);
                        allocated.fetch_add(1, Ordering::Relaxed);
                        mine.push((pfn, 0));
                    }
                }
                94..97 => {
                    a.drain_all_pages();
                }
                97..99 => {
                    a.drain_local_pages();
                }
                _ => {
                    if cpu == 0 && i % 4 == 0 {
                        // The checker takes every lock it needs: it may run concurrently.
                        zonebuddy::report::debug::check(a)
                            .unwrap_or_else(|v| panic!("concurrent check: {v}"));
                    }
                }
            }
        }
        leftovers.lock().unwrap().extend(mine);
    });
    // Everything left, from any CPU, freed on CPU 0.
    let mut rest = leftovers.into_inner().unwrap();
    rest.extend(exchange.into_inner().unwrap());
    for h in rest {
        check_owner(a, h.0, h.1, TAG);
        write_owner(a, h.0, h.1, 0);
        a.free_pages(page(a, h.0), h.1).unwrap();
        freed.fetch_add(1 << h.1, Ordering::Relaxed);
    }
    assert_eq!(
        allocated.load(Ordering::Relaxed),
        freed.load(Ordering::Relaxed)
    );
    // Per-CPU counters, folded, agree with what the threads did.
    assert_eq!(
        pgalloc_total(a) - pgalloc0,
        allocated.load(Ordering::Relaxed)
    );
    assert_eq!(
        a.vm_event(VmEvent::Pgfree) - pgfree0,
        freed.load(Ordering::Relaxed)
    );
    zonebuddy::report::debug::check(a).unwrap_or_else(|v| panic!("{v}"));
    a.drain_all_pages();
    assert_eq!(a.nr_pcp_pages(), 0);
    assert_eq!(
        a.nr_free_pages(),
        a.totalram_pages(),
        "every page came back"
    );
    zonebuddy::report::debug::check(a).unwrap_or_else(|v| panic!("{v}"));
}

fn rounds() -> u64 {
    std::env::var("MM_SMP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[test]
fn two_cpus_alloc_free_and_cross_free() {
    let a = machine_big(256, 2);
    for seed in 0..rounds() {
        run_round(&a, seed, 10_000);
    }
}

/// The same on a port without `cpu_barrier`: the pcp lock's symmetric protocol.
#[test]
fn two_cpus_alloc_free_and_cross_free_without_cpu_barrier() {
    let a = machine_big_without_cpu_barrier(256, 2);
    assert!(!a.platform().has_cpu_barrier());
    for seed in 0..rounds() / 2 {
        run_round(&a, seed, 10_000);
    }
}

#[test]
fn four_cpus_on_a_small_machine_under_pressure() {
    // Small zones: pcp batches of 1-3, frequent OOM, every fallback path.
    let a = machine_zoned(4);
    for seed in 100..100 + rounds() {
        run_round(&a, seed, 6_000);
    }
}

/// One CPU drains everybody in a loop while the others allocate and free: the remote
/// drains take the owners' pcp locks and nothing is lost or duplicated.
#[test]
fn drain_all_pages_from_another_cpu_while_busy() {
    drain_all_pages_from_another_cpu_while_busy_on(&machine_big(128, 3));
}

/// The same with the pcp lock's symmetric protocol (a port without `cpu_barrier`).
#[test]
fn drain_all_pages_from_another_cpu_while_busy_without_cpu_barrier() {
    drain_all_pages_from_another_cpu_while_busy_on(&machine_big_without_cpu_barrier(128, 3));
}

fn drain_all_pages_from_another_cpu_while_busy_on(a: &SimAllocator) {
    let plat = a.sim_platform();
    let stop = AtomicU64::new(0);
    let remote0 = a.vm_event(VmEvent::PcpDrainRemote);
    plat.run_on_cpus(|cpu| {
        if cpu == 2 {
            while stop.load(Ordering::Relaxed) < 2 {
                a.drain_all_pages();
                std::hint::spin_loop();
            }
            return;
        }
        let mut r = Rng::new(cpu as u64 + 7);
        let mut mine: Vec<&Page> = Vec::new();
        for _ in 0..20_000 {
            if r.chance(55) || mine.is_empty() {
                if let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
                    write_owner(a, a.page_to_pfn(p), 0, TAG);
                    mine.push(p);
                }
            } else {
                let j = r.below(mine.len() as u64) as usize;
                let p = mine.swap_remove(j);
                check_owner(a, a.page_to_pfn(p), 0, TAG);
                write_owner(a, a.page_to_pfn(p), 0, 0);
                a.free_pages(p, 0).unwrap();
            }
        }
        for p in mine {
            a.free_pages(p, 0).unwrap();
        }
        // The drainer thread may have been scheduled only now: leave a page on this CPU's
        // list and wait until some remote drain has found a list non-empty, so the check
        // below does not depend on the host's scheduling.
        let p = a
            .alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0)
            .expect("a page is free once this CPU has given its pages back");
        a.free_pages(p, 0).unwrap();
        while a.vm_event(VmEvent::PcpDrainRemote) == remote0 {
            std::hint::spin_loop();
        }
        stop.fetch_add(1, Ordering::Relaxed);
    });
    assert!(
        a.vm_event(VmEvent::PcpDrainRemote) > remote0,
        "remote drains happened"
    );
    a.drain_all_pages();
    assert_eq!(a.nr_free_pages(), a.totalram_pages());
    zonebuddy::report::debug::check(a).unwrap_or_else(|v| panic!("{v}"));
    // Every zone's pcp of every CPU is empty.
    for cpu in 0..3 {
        for zt in ZoneType::ALL {
            if let Some(ps) = a.pageset_snapshot(cpu, 0, zt) {
                assert_eq!(ps.count, 0);
            }
        }
    }
}
