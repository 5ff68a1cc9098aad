//! Compaction under load: CPU 0 compacts memory again and again (at least 10,000 pages
//! migrated in total) while CPUs 1-3 keep verifying, rewriting, zapping and repopulating
//! their checksummed anon pages through the simulated MMU, and CPU 0 runs the invariant
//! checker between rounds. Every page must always read back what its owner last wrote, and
//! at the end the reverse maps, the invariants and the page count must be intact.

use crate::compaction_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use compaction_common::*;
use zonebuddy::report::vmstat::VmEvent;

const CPUS: usize = 4;

#[test]
fn compaction_while_pages_are_in_use() {
    let target: u64 = std::env::var("MM_COMPACTION_SMP_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let a = machine(256, CPUS);
    let mut sc = fragmented(&a, 6);
    let free0 = {
        let (_, _, f) = free_distribution(&a);
        f
    };
    let mapped0 = sc.anon_pages();
    // Hand the regions to the accessor CPUs, round robin.
    let groups: Vec<Mutex<Vec<Region>>> = (1..CPUS).map(|_| Mutex::new(Vec::new())).collect();
    for (i, r) in sc.regions.drain(..).enumerate() {
        groups[i % (CPUS - 1)].lock().unwrap().push(r);
    }
    let done = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let migrated = AtomicU64::new(0);
    let rounds = AtomicU64::new(0);
    let ops = AtomicU64::new(0);
    let plat = a.sim_platform();
    let faults0 = plat.migration_faults();

    plat.run_on_cpus(|cpu| {
        if cpu == 0 {
            let mut r = 0;
            // Enough pages, and the accessors must have met pages in flight (bounded, so a
            // broken MMU fails the test rather than hanging it).
            while (migrated.load(Ordering::Relaxed) < target
                || r < 2
                || plat.migration_faults() == faults0)
                && r < 50
            {
                let s = a.compact_memory();
                migrated.fetch_add(s.migrated, Ordering::Relaxed);
                r += 1;
                if let Err(v) = zonebuddy::report::debug::check(&*a) {
                    errors.lock().unwrap().push(format!("debug::check: {v:?}"));
                    break;
                }
                if !errors.lock().unwrap().is_empty() {
                    break;
                }
            }
            rounds.store(r, Ordering::Relaxed);
            done.store(true, Ordering::Relaxed);
            return;
        }
        let mut mine = groups[cpu - 1].lock().unwrap();
        let mut rng = Rng::new(100 + cpu as u64);
        let mut n = 0u64;
        while !done.load(Ordering::Relaxed) {
            let ri = rng.below(mine.len() as u64) as usize;
            let r = &mut mine[ri];
            let i = rng.below(REGION_PAGES);
            let slot = r.id.slot as u64;
            match r.pages[i as usize] {
                Some(v) => {
                    if let Err(e) = verify(&a, r.va(i), slot, i, v) {
                        errors.lock().unwrap().push(e);
                        break;
                    }
                    if rng.below(8) == 0 {
                        match a.anon_region_zap(r.id, i) {
                            Ok(true) => r.pages[i as usize] = None,
                            other => {
                                errors.lock().unwrap().push(format!("zap: {other:?}"));
                                break;
                            }
                        }
                    } else {
                        stamp(&a, r.va(i), slot, i, v + 1);
                        r.pages[i as usize] = Some(v + 1);
                    }
                }
                None => {
                    // Repopulating (as often as zapping, so about half the pages stay
                    // mapped) allocates wherever the allocator likes: fresh
                    // fragmentation for the next round.
                    if rng.below(8) == 0 {
                        populate(&a, r, i);
                    }
                }
            }
            n += 1;
        }
        ops.fetch_add(n, Ordering::Relaxed);
    });

    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {}",
        errors.len(),
        errors[0]
    );
    for g in groups {
        sc.regions.extend(g.into_inner().unwrap());
    }
    let faults = plat.migration_faults() - faults0;
    eprintln!(
        "{} rounds, {} pages migrated, {} accessor operations, {} migration faults, pgmigrate_fail {}; mapped {mapped0} -> {}",
        rounds.load(Ordering::Relaxed),
        migrated.load(Ordering::Relaxed),
        ops.load(Ordering::Relaxed),
        faults,
        a.vm_event(VmEvent::PgmigrateFail),
        sc.anon_pages()
    );
    assert!(migrated.load(Ordering::Relaxed) >= target);
    assert!(faults > 0, "no accessor ever met a page under migration");
    assert!(ops.load(Ordering::Relaxed) > 0);
    sc.verify_all(&a);
    check(&a);
    // Nothing lost or created: free pages changed exactly by the anon pages' balance.
    let (_, _, free1) = free_distribution(&a);
    assert_eq!(
        free1 as i64 - free0 as i64,
        mapped0 as i64 - sc.anon_pages() as i64
    );
    sc.teardown(&a);
    check(&a);
}
