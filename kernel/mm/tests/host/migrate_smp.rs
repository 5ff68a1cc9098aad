//! Migration under load: three simulated CPUs keep reading, verifying and rewriting
//! checksummed anon pages through the simulated MMU while CPU 0 migrates those same pages
//! again and again (20,000 migrations by default). Every page must always read back exactly
//! what its owner last wrote (a lost write or a half-copied page shows up as a bad
//! checksum), and the accessors must actually have run into migration entries, or the
//! test proves nothing. `MM_MIGRATE_SMP_PAGES` raises the number of migrations.

use crate::mig_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mig_common::*;
use zonebuddy::model::mmzone::PAGE_SIZE;
use zonebuddy::movement::migrate::{MigrateMode, MigrateReason};
use zonebuddy::movement::rmap::RegionId;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::report::vmstat::VmEvent;

const CPUS: usize = 4;
const PAGES_PER_CPU: u64 = 128;
const TAG: u64 = 0x736d_705f_6d69_6700;

/// xorshift: each accessor's own deterministic sequence of pages.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn accessors_never_see_a_page_in_flight() {
    let target: u64 = std::env::var("MM_MIGRATE_SMP_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let a = machine(128, CPUS);
    let free0 = free_pages(&a);
    let regions: Vec<RegionId> = (1..CPUS)
        .map(|cpu| filled_region(&a, PAGES_PER_CPU, TAG ^ cpu as u64))
        .collect();
    let stop = AtomicBool::new(false);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let iterations = AtomicU64::new(0);
    let migrated = AtomicU64::new(0);
    let not_migrated = AtomicU64::new(0);
    let rounds = AtomicU64::new(0);
    let ok0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let plat = a.sim_platform();
    let stats0 = plat.mmu_stats();
    let t0 = std::time::Instant::now();

    plat.run_on_cpus(|cpu| {
        if cpu == 0 {
            // The migrator: whole regions per round, until enough pages moved and the
            // accessors have met migration entries (bounded, so a broken MMU fails).
            let limit = target * 20;
            while migrated.load(Ordering::Relaxed) < target
                || (plat.migration_faults() == stats0.migration_faults
                    && migrated.load(Ordering::Relaxed) < limit)
            {
                if !errors.lock().unwrap().is_empty() {
                    break;
                }
                for &r in &regions {
                    let mut list = isolate_region(&a, r);
                    let n = list.len() as u64;
                    let res = a.migrate_pages(
                        &mut list,
                        &mut |_| a.alloc_page(GFP_HIGHUSER_MOVABLE),
                        &mut |p| a.free_pages(p, 0).unwrap(),
                        MigrateMode::Sync,
                        MigrateReason::Compaction,
                    );
                    let failed = res.expect("targets never run out on this machine");
                    not_migrated.fetch_add(failed, Ordering::Relaxed);
                    migrated.fetch_add(n - failed, Ordering::Relaxed);
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            stop.store(true, Ordering::Relaxed);
            return;
        }
        let r = regions[cpu - 1];
        let tag = TAG ^ cpu as u64;
        let (start, n) = a.anon_region_span(r).unwrap();
        let mut ver = vec![0u64; n as usize];
        let mut x = 0x1234_5678_9abc_def1 ^ cpu as u64;
        let mut count = 0;
        while !stop.load(Ordering::Relaxed) {
            let i = next(&mut x) % n;
            let va = start + i * PAGE_SIZE;
            if let Err(e) = verify(&a, va, tag, i, ver[i as usize]) {
                errors.lock().unwrap().push(format!("cpu {cpu}: {e}"));
                break;
            }
            ver[i as usize] += 1;
            stamp(&a, va, tag, i, ver[i as usize]);
            // And a single word, read back at once.
            let w = (next(&mut x) % 512) * 8;
            match a.read_u64(va + w) {
                Ok(v) if v == pattern(tag, i, ver[i as usize], (w / 8) as usize) => {}
                other => {
                    errors
                        .lock()
                        .unwrap()
                        .push(format!("cpu {cpu}: word {w} of index {i}: {other:?}"));
                    break;
                }
            }
            count += 1;
        }
        iterations.fetch_add(count, Ordering::Relaxed);
        // Leave the final versions for the main thread to check.
        for i in 0..n {
            if let Err(e) = verify(&a, start + i * PAGE_SIZE, tag, i, ver[i as usize]) {
                errors.lock().unwrap().push(format!("cpu {cpu} final: {e}"));
            }
        }
    });

    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {}",
        errors.len(),
        errors[0]
    );
    let stats = plat.mmu_stats();
    let faults = stats.migration_faults - stats0.migration_faults;
    let migrated = migrated.load(Ordering::Relaxed);
    eprintln!(
        "migrate_smp: {migrated} pages migrated in {} rounds ({} not migrated), {} accessor \
         iterations, {} accesses, {faults} migration faults, {} TLB flushes ({} waited for \
         a CPU), {:?}",
        rounds.load(Ordering::Relaxed),
        not_migrated.load(Ordering::Relaxed),
        iterations.load(Ordering::Relaxed),
        stats.accesses - stats0.accesses,
        stats.tlb_flushes - stats0.tlb_flushes,
        stats.tlb_flush_waits - stats0.tlb_flush_waits,
        t0.elapsed()
    );
    assert!(migrated >= target, "only {migrated} pages migrated");
    assert_eq!(
        not_migrated.load(Ordering::Relaxed),
        0,
        "nothing pins these pages"
    );
    assert!(
        faults > 0,
        "no access ever met a migration entry: the test proved nothing"
    );
    assert!(iterations.load(Ordering::Relaxed) > 0);
    assert_eq!(a.vm_event(VmEvent::PgmigrateSuccess) - ok0, migrated);
    for &r in &regions {
        assert_eq!(a.anon_region_check(r), Ok(PAGES_PER_CPU));
        a.anon_region_destroy(r).unwrap();
    }
    assert_eq!(free_pages(&a), free0, "every page came back");
    check(&a);
}
