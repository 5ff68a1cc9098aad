//! Fault injection (`zonebuddy::page_alloc::fail`, Linux's fail_page_alloc) on the host
//! simulation: the attributes mean what Linux says (times, min-order, `__GFP_NOFAIL`,
//! ignore-gfp-wait, ignore-gfp-highmem), every injected failure is counted exactly, and
//! callers' error paths (random workload, compaction's target allocation, migration's
//! target allocation, anon faults) leak nothing and leave the invariants clean.

use crate::{compaction_common, mig_common};

use std::cell::Cell;

use zonebuddy::model::list::PageList;
use zonebuddy::model::mmzone::PAGE_SIZE;
use zonebuddy::model::page::Page;
use zonebuddy::movement::migrate::{MigrateError, MigrateMode, MigrateReason};
use zonebuddy::movement::rmap::RegionError;
use zonebuddy::page_alloc::fail::FailAttrs;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::SimAllocator;
use zonebuddy::report::vmstat::VmEvent;

fn injected(a: &SimAllocator) -> u64 {
    a.vm_event(VmEvent::PgallocFailInjected)
}

fn failed(a: &SimAllocator) -> u64 {
    a.vm_event(VmEvent::PgallocFail)
}

/// Every allocation may fail: order 0 up, reclaiming or not, highmem or not.
fn everything(probability: u64, times: i64) -> FailAttrs {
    FailAttrs {
        probability,
        times,
        min_order: 0,
        ignore_gfp_wait: false,
        ignore_gfp_highmem: false,
        ..FailAttrs::default()
    }
}

#[test]
fn times_n_fails_exactly_n_then_the_rest_succeed() {
    let a = mig_common::machine(64, 1);
    let start = mig_common::free_pages(&a);
    let (inj0, fail0) = (injected(&a), failed(&a));
    a.fail_page_alloc().set_attrs(everything(100, 5)).unwrap();
    let mut got = Vec::new();
    let mut outcome = Vec::new();
    for i in 0..40u32 {
        // Order-0 requests (the pcp fast path) and higher orders alike.
        let order = i % 3;
        match a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, order) {
            Some(p) => {
                got.push((p, order));
                outcome.push(true);
            }
            None => outcome.push(false),
        }
    }
    assert_eq!(outcome[..5], [false; 5], "the first five fail");
    assert!(outcome[5..].iter().all(|&ok| ok), "then every one succeeds");
    assert_eq!(injected(&a) - inj0, 5);
    assert_eq!(
        failed(&a) - fail0,
        5,
        "injected failures are allocation failures"
    );
    assert_eq!(a.fail_page_alloc().attrs().times, 0);
    for (p, o) in got {
        a.free_pages(p, o).unwrap();
    }
    assert_eq!(mig_common::free_pages(&a), start);
    mig_common::check(&a);
}

#[test]
fn min_order_and_nofail_are_respected() {
    let a = mig_common::machine(64, 1);
    a.fail_page_alloc()
        .set_attrs(FailAttrs {
            min_order: 2,
            ..everything(100, -1)
        })
        .unwrap();
    let inj0 = injected(&a);
    for order in 0..2 {
        let p = a.alloc_pages(GFP_KERNEL, order).expect("below min-order");
        a.free_pages(p, order).unwrap();
    }
    for order in 2..6 {
        assert!(a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, order).is_none());
    }
    assert_eq!(injected(&a) - inj0, 4);
    // __GFP_NOFAIL (valid for orders 0 and 1 only) is never failed on purpose, even at or
    // above min-order.
    a.fail_page_alloc().set_min_order(0).unwrap();
    for order in 0..2 {
        let p = a
            .alloc_pages(GFP_KERNEL | Gfp::NOFAIL, order)
            .expect("NOFAIL");
        a.free_pages(p, order).unwrap();
    }
    assert_eq!(injected(&a) - inj0, 4, "no NOFAIL request was failed");
    a.fail_page_alloc().disable();
    mig_common::check(&a);
}

#[test]
fn ignore_gfp_wait_and_highmem_are_respected() {
    let a = mig_common::machine(64, 1);
    let f = a.fail_page_alloc();
    f.set_attrs(FailAttrs {
        ignore_gfp_wait: true,
        ignore_gfp_highmem: true,
        ..everything(100, -1)
    })
    .unwrap();
    let inj0 = injected(&a);
    // May reclaim: spared. May not: failed.
    let p = a.alloc_pages(GFP_KERNEL, 1).expect("GFP_KERNEL spared");
    a.free_pages(p, 1).unwrap();
    assert!(a.alloc_pages(GFP_NOWAIT | Gfp::NOWARN, 1).is_none());
    assert!(a.alloc_pages(GFP_ATOMIC | Gfp::NOWARN, 0).is_none());
    // Highmem (movable user pages), even without reclaim: spared.
    let p = a
        .alloc_pages(
            (GFP_HIGHUSER_MOVABLE - Gfp::DIRECT_RECLAIM) | Gfp::NOWARN,
            0,
        )
        .expect("highmem spared");
    a.free_pages(p, 0).unwrap();
    assert_eq!(injected(&a) - inj0, 2);
    f.set_ignore_gfp_wait(false);
    assert!(a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 1).is_none());
    f.set_ignore_gfp_highmem(false);
    assert!(
        a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN, 0)
            .is_none()
    );
    // Ours: the migratetype mask (Movable cleared).
    f.set_migratetype_mask(0b101).unwrap();
    let p = a
        .alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
        .expect("movable spared");
    a.free_pages(p, 0).unwrap();
    assert!(a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0).is_none());
    assert_eq!(injected(&a) - inj0, 5);
    f.disable();
    mig_common::check(&a);
}

/// A random workload (orders 0-4, several gfp classes, single and bulk allocations,
/// NOFAIL now and then) under 10%, 20% and 30% injection on a machine that never runs
/// short: every failure seen is an injected one, counted once; NOFAIL never fails; the
/// invariant checker stays clean; everything freed, free pages are back to the start.
#[test]
fn random_workload_under_injection_leaks_nothing() {
    for (seed, probability) in [(1u64, 10u64), (2, 20), (3, 30)] {
        let a = mig_common::machine(128, 1);
        let start = mig_common::free_pages(&a);
        let (inj0, fail0) = (injected(&a), failed(&a));
        a.fail_page_alloc()
            .set_attrs(everything(probability, -1))
            .unwrap();
        a.fail_page_alloc().set_seed(seed);
        let mut rng = compaction_common::Rng::new(seed);
        let gfps = [
            GFP_KERNEL,
            GFP_NOWAIT,
            GFP_ATOMIC,
            GFP_HIGHUSER_MOVABLE,
            GFP_KERNEL | Gfp::RECLAIMABLE,
            GFP_DMA32,
        ];
        let mut held: Vec<(&Page, u32)> = Vec::new();
        let (mut tries, mut fails) = (0u64, 0u64);
        for step in 0..20_000 {
            let r = rng.below(100);
            if held.len() < 2_000 && (r < 55 || held.is_empty()) {
                let gfp = gfps[rng.below(gfps.len() as u64) as usize] | Gfp::NOWARN;
                let order = if rng.below(4) == 0 {
                    rng.below(5) as u32
                } else {
                    0
                };
                if rng.below(50) == 0 {
                    let order = order.min(1);
                    let p = a
                        .alloc_pages(GFP_KERNEL | Gfp::NOFAIL, order)
                        .expect("NOFAIL never injected");
                    held.push((p, order));
                    continue;
                }
                let i0 = injected(&a);
                if rng.below(20) == 0 {
                    // A refused batch falls back to one single allocation, which may be
                    // refused in turn: then, and only then, nothing comes back.
                    let mut out = [None; 16];
                    let n = a.alloc_pages_bulk(gfp, 16, &mut out);
                    tries += 1;
                    fails += (n == 0) as u64;
                    assert_eq!(injected(&a) - i0, (n == 0) as u64, "step {step}: bulk");
                    held.extend(out.iter().flatten().map(|&p| (p, 0)));
                    continue;
                }
                tries += 1;
                let p = a.alloc_pages(gfp, order);
                assert_eq!(injected(&a) - i0, p.is_none() as u64, "step {step}");
                match p {
                    Some(p) => held.push((p, order)),
                    None => fails += 1,
                }
            } else if r < 97 {
                let i = rng.below(held.len() as u64) as usize;
                let (p, o) = held.swap_remove(i);
                a.free_pages(p, o).unwrap();
            } else {
                a.drain_all_pages();
            }
            if step % 2_000 == 0 {
                compaction_common::check(&a);
            }
        }
        let inj = injected(&a) - inj0;
        assert_eq!(
            inj,
            failed(&a) - fail0,
            "seed {seed}: only injected failures"
        );
        assert_eq!(
            fails, inj,
            "seed {seed}: each failure seen was counted once"
        );
        let share = fails * 100 / tries;
        assert!(
            share + 6 >= probability && share <= probability + 6,
            "seed {seed}: {share}% failed at probability {probability}"
        );
        a.fail_page_alloc().disable();
        for (p, o) in held {
            a.free_pages(p, o).unwrap();
        }
        assert_eq!(
            mig_common::free_pages(&a),
            start,
            "seed {seed}: pages leaked"
        );
        compaction_common::check(&a);
    }
}

/// Compaction whose migration targets are refused by injection: it stops on its
/// `-ENOMEM` path, every isolated page goes back mapped and intact, no page is lost, and
/// once injection is off compaction works again on the same machine.
#[test]
fn compaction_with_failing_targets_ends_cleanly() {
    let a = compaction_common::machine(128, 1);
    let sc = compaction_common::fragmented(&a, 7);
    let free0 = mig_common::free_pages(&a);
    let inj0 = injected(&a);
    // Movable order-0 requests only: the compaction targets.
    let attrs = FailAttrs {
        migratetype_mask: 0b010,
        ..everything(100, -1)
    };
    a.fail_page_alloc().set_attrs(attrs).unwrap();
    let s = a.compact_memory();
    assert_eq!(s.migrated, 0, "{s:?}");
    assert!(
        s.isolated > 0,
        "the migration scanner did isolate pages: {s:?}"
    );
    let refused = injected(&a) - inj0;
    assert!(refused > 0, "targets were refused");
    a.fail_page_alloc().disable();
    assert_eq!(mig_common::free_pages(&a), free0, "no page lost");
    sc.verify_all(&a);
    compaction_common::check(&a);

    // Exactly `times` targets refused (one: it ends the first zone's run), then
    // compaction goes on in the other zone.
    a.fail_page_alloc()
        .set_attrs(FailAttrs { times: 1, ..attrs })
        .unwrap();
    let inj1 = injected(&a);
    let s = a.compact_memory();
    a.fail_page_alloc().disable();
    assert_eq!(injected(&a) - inj1, 1);
    assert!(s.migrated > 0, "{s:?}");
    assert_eq!(
        mig_common::free_pages(&a),
        free0,
        "migration moves, never loses"
    );
    sc.verify_all(&a);
    compaction_common::check(&a);
    sc.teardown(&a);
    compaction_common::check(&a);
}

fn migrate(a: &SimAllocator, list: &mut PageList) -> (Result<u64, MigrateError>, u64) {
    let got = Cell::new(0);
    let r = a.migrate_pages(
        list,
        &mut |_src: &Page| {
            let p = a.alloc_page(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN);
            got.set(got.get() + p.is_some() as u64);
            p
        },
        &mut |p: &Page| a.free_pages(p, 0).unwrap(),
        MigrateMode::SyncLight,
        MigrateReason::Syscall,
    );
    (r, got.get())
}

/// Anon pages under injection: faults that cannot get a page report `NoMemory` and map
/// nothing; migration whose target allocation fails returns `NoMemory` with every page
/// still mapped (moved or not) and intact; nothing leaks.
#[test]
fn anon_faults_and_migration_with_failing_allocations() {
    const TAG: u64 = 0x6661_696c_0000_0000;
    let a = mig_common::machine(64, 1);
    let start = mig_common::free_pages(&a);
    let f = a.fail_page_alloc();

    // Faults: every third anon page allocation fails.
    let n = 96u64;
    let r = a.anon_region_create(n).unwrap();
    let (va, _) = a.anon_region_span(r).unwrap();
    f.set_attrs(FailAttrs {
        interval: 3,
        ..everything(100, -1)
    })
    .unwrap();
    let mut mapped = Vec::new();
    for i in 0..n {
        match a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
            Ok(_) => mapped.push(i),
            Err(RegionError::NoMemory) => {}
            Err(e) => panic!("populate {i}: {e:?}"),
        }
    }
    f.disable();
    assert_eq!(mapped.len() as u64, n - n / 3);
    assert_eq!(a.anon_region_nr_mapped(r).unwrap(), mapped.len() as u64);
    for &i in &mapped {
        mig_common::stamp(&a, va + i * PAGE_SIZE, TAG, i, 0);
    }

    // Migration: every target refused.
    let before = mig_common::region_pfns(&a, r);
    f.set_attrs(everything(100, -1)).unwrap();
    let mut list = mig_common::isolate_region(&a, r);
    let (res, got) = migrate(&a, &mut list);
    f.disable();
    assert_eq!(res, Err(MigrateError::NoMemory));
    assert_eq!(got, 0);
    assert!(list.is_empty(), "every page put back");
    assert_eq!(mig_common::region_pfns(&a, r), before, "nothing moved");

    // Migration: the 6th target refused: five pages move, the rest stay.
    f.set_attrs(FailAttrs {
        interval: 6,
        times: 1,
        ..everything(100, -1)
    })
    .unwrap();
    let mut list = mig_common::isolate_region(&a, r);
    let (res, got) = migrate(&a, &mut list);
    f.disable();
    assert_eq!(res, Err(MigrateError::NoMemory));
    assert_eq!(got, 5);
    assert!(list.is_empty());
    let after = mig_common::region_pfns(&a, r);
    let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
    assert_eq!(moved, 5);
    for &i in &mapped {
        mig_common::verify(&a, va + i * PAGE_SIZE, TAG, i, 0).unwrap();
    }
    assert_eq!(a.anon_region_check(r).unwrap(), mapped.len() as u64);
    mig_common::check(&a);
    a.anon_region_destroy(r).unwrap();
    assert_eq!(mig_common::free_pages(&a), start, "pages leaked");
    mig_common::check(&a);
}
