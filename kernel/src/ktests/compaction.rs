//! Page migration and compaction inside the kernel, on the real page tables.
//!
//! These are the acceptance scenarios: the fragmentation story (the scenario fills
//! memory until no order-9 block is free and holds any left, so an order-9 allocation fails
//! without compaction by construction; `compact_memory` then makes at least 90% of the free memory that is not
//! pinned by unmovable pages available as order-9 blocks, with every checksum and reverse
//! map intact), migration under concurrent access from the other CPUs, direct
//! compaction with capture, deferral on a zone that cannot be compacted, kcompactd, and a
//! port of Linux's `compaction_test` selftest.
//!
//! Movable memory is only touched through its virtual addresses in the movable window, and
//! only with interrupts enabled (see `crate::fault`).

use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zonebuddy::{
    model::mmzone::{PAGE_SIZE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER},
    page_alloc::gfp::{GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT, Gfp},
    report::vmstat::VmEvent,
};

use crate::{
    arch::{percpu, smp, time},
    kassert, kassert_eq, kcompactd, ktest,
    ktest::TestResult,
    memory::allocator,
    scenario::{Scenario, free_layout},
};

fn check_invariants() -> Result<(), String> {
    zonebuddy::report::debug::check(allocator()).map_err(|v| format!("invariant violated: {v}"))
}

/// Start from a fresh compaction state: no skip hints, scanners at the zone ends.
/// (kcompactd is off in test mode, so nothing would clear the hints an earlier test's
/// failed compactions left behind; deferral state is kept.)
fn fresh_compaction_state() {
    let a = allocator();
    // Node ids may be sparse: the online nodes, not `0..count`.
    for nid in a.model().nodes().map(|n| n.node_id) {
        a.reset_compaction_hints(nid);
    }
}

fn ev(e: VmEvent) -> u64 {
    allocator().vm_event(e)
}

/// `defer_shift` of every populated zone, read from the compaction state view.
/// Each zone's `defer_shift`, keyed `"N/ZONE"` (node and zone: a NUMA machine has a
/// DMA32 on several nodes).
fn defer_shifts() -> Vec<(String, u32)> {
    let mut text = String::new();
    let _ = allocator().write_compaction_state(&mut text);
    text.lines()
        .filter_map(|l| {
            let node = l.strip_prefix("Node ")?.split(',').next()?.trim();
            let zone = alloc::format!(
                "{node}/{}",
                l.split("zone").nth(1)?.split_whitespace().next()?
            );
            let mut words = l.split_whitespace();
            words.find(|w| *w == "defer_shift")?;
            Some((zone, words.next()?.parse().ok()?))
        })
        .collect()
}

/// Wait (polling kcompactd when this CPU hosts it) until `cond` holds or `secs` pass.
/// The deadline only guards against a hang; nothing is asserted about time.
fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = time::now_ns() + secs * 1_000_000_000;
    while time::now_ns() < deadline {
        if cond() {
            return true;
        }
        kcompactd::poll(percpu::cpu_id());
        time::udelay(1000);
    }
    cond()
}

ktest! {
    fn fragmentation_scenario_compacts_to_order9() -> TestResult {
        let a = allocator();
        let free_before = { a.drain_all_pages(); a.nr_free_pages() };
        fresh_compaction_state();
        let mut s = Scenario::build(80, 8, true, 0xc0ffee)?;
        let result = (|| -> TestResult {
            kassert!(
                s.nr_pages * 100 >= free_before * 80,
                "filled only {} of {} free pages with movable memory",
                s.nr_pages,
                free_before
            );
            let before = free_layout();
            kassert!(before.order9_blocks == 0, "order-9 blocks free after the scenario: {:?}", before);
            // Compaction disabled: no direct reclaim/compaction in the gfp. This fails by
            // construction, not by fragmentation alone: the scenario filled memory until
            // no order-9 block was free and took any still free after zapping as unmovable
            // allocations. It checks that set-up; what compaction achieves is measured below.
            let nowait = a.alloc_pages(GFP_NOWAIT | Gfp::MOVABLE, PAGEBLOCK_ORDER);
            kprintln!(
                "scenario: filled until no order-9 block was free, {} held; order-9 GFP_NOWAIT allocation before compaction (fails by construction): {}",
                s.held_order9_blocks(),
                if nowait.is_none() { "fails" } else { "succeeded" }
            );
            kassert!(
                nowait.is_none(),
                "the scenario leaves no order-9 block free, yet one was allocated before compaction: {:?}",
                before
            );
            let migrated0 = ev(VmEvent::PgmigrateSuccess);
            let stats = a.compact_memory();
            let after = free_layout();
            kprintln!(
                "compaction: free {} pages, {} in order-9 blocks ({} blocks), {} in {} pinned pageblocks: {}.{}% of the eligible free memory is order-9; migrated {} (stats {:?})",
                after.free,
                after.free_in_order9,
                after.order9_blocks,
                after.free_in_pinned,
                after.pinned_blocks,
                after.order9_permille() / 10,
                after.order9_permille() % 10,
                ev(VmEvent::PgmigrateSuccess) - migrated0,
                stats
            );
            // In every zone the pageblock where its two scanners meet is necessarily left
            // partly full, so one pageblock per populated zone is allowed on top of the 10%.
            // It only matters on small machines (at 128 MiB the eligible free memory is
            // about 15 pageblocks in two zones; at 1 GiB, 100).
            let zones = a
                .model()
                .nodes()
                .flat_map(|n| n.populated_zones())
                .count() as u64;
            kassert!(
                after.free_in_order9 * 10 + 10 * zones * PAGEBLOCK_NR_PAGES >= after.eligible() * 9,
                "only {} per mille of eligible free memory in order-9 blocks ({} of {} pages); before {:?}, after {:?}, {:?}",
                after.order9_permille(),
                after.free_in_order9,
                after.eligible(),
                before,
                after,
                stats
            );
            let checked = s.verify()?;
            kassert_eq!(checked, s.movable_pages());
            check_invariants()
        })();
        s.release();
        result
    }

    fn direct_compaction_serves_order9_allocations() -> TestResult {
        let a = allocator();
        fresh_compaction_state();
        let mut s = Scenario::build(80, 8, true, 0xd1ec7)?;
        let (stall0, success0) = (ev(VmEvent::CompactStall), ev(VmEvent::CompactSuccess));
        let mut got = Vec::new();
        let result = (|| -> TestResult {
            for i in 0..8 {
                let page = a
                    .alloc_pages(GFP_KERNEL | Gfp::MOVABLE | Gfp::NOWARN, PAGEBLOCK_ORDER)
                    .ok_or_else(|| format!("order-9 allocation {i} failed despite direct compaction"))?;
                got.push(a.page_address(page));
            }
            let (stalls, successes) = (ev(VmEvent::CompactStall) - stall0, ev(VmEvent::CompactSuccess) - success0);
            kprintln!("direct compaction: 8 order-9 blocks, {stalls} stalls, {successes} successes");
            kassert!(stalls > 0, "no allocation went through direct compaction");
            kassert!(successes > 0, "direct compaction never succeeded");
            s.verify()?;
            Ok(())
        })();
        for addr in got {
            a.free_pages_virt(addr, PAGEBLOCK_ORDER).map_err(|e| format!("free: {e}"))?;
        }
        s.release();
        result.and_then(|()| check_invariants())
    }

    fn deferral_engages_on_a_pinned_zone_and_resets_after_success() -> TestResult {
        let a = allocator();
        fresh_compaction_state();
        a.drain_all_pages();
        // Pin every pageblock: take all free memory as order-0 unmovable pages (down into
        // the atomic reserve), then give back three in four, keeping every pfn that is a
        // multiple of 4. Blocks of order >= 9 that the reserves kept free are then taken
        // whole (GFP_ATOMIC never compacts), so only compaction could make a new one.
        let mut held: Vec<u64> = Vec::with_capacity(a.nr_free_pages() as usize + 4096);
        for gfp in [GFP_NOWAIT, GFP_ATOMIC] {
            while held.len() < held.capacity() {
                match a.get_free_pages(gfp | Gfp::NOWARN, 0) {
                    Some(addr) => held.push(addr),
                    None => break,
                }
            }
        }
        held.retain(|&addr| {
            let pfn = (addr - crate::PHYS_OFFSET) / PAGE_SIZE;
            if pfn % 4 == 0 {
                true
            } else {
                let _ = a.free_pages_virt(addr, 0);
                false
            }
        });
        a.drain_all_pages();
        let mut held9 = Vec::new();
        while let Some(addr) = a.get_free_pages(GFP_ATOMIC | Gfp::NOWARN, PAGEBLOCK_ORDER) {
            held9.push(addr);
        }
        let fail0 = ev(VmEvent::CompactFail);
        let mut failed = 0;
        // Without __GFP_NORETRY the slow path escalates to synchronous compaction, whose
        // failures (unlike async ones, as in Linux) defer the zone.
        for _ in 0..2 {
            if let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, PAGEBLOCK_ORDER) {
                let _ = a.free_pages(p, PAGEBLOCK_ORDER);
            } else {
                failed += 1;
            }
        }
        let shifts_failed = defer_shifts();
        let fails = ev(VmEvent::CompactFail) - fail0;
        for addr in held.drain(..) {
            let _ = a.free_pages_virt(addr, 0);
        }
        for addr in held9.drain(..) {
            let _ = a.free_pages_virt(addr, PAGEBLOCK_ORDER);
        }
        kprintln!("deferral: {failed} of 2 order-9 allocations failed, compact_fail +{fails}, defer shifts {shifts_failed:?}");
        kassert_eq!(failed, 2);
        kassert!(fails > 0, "compaction never ran (and failed) on the pinned zones");
        // The zones whose deferral engaged: the reset below is checked on exactly these.
        let deferred: Vec<&String> =
            shifts_failed.iter().filter(|(_, s)| *s > 0).map(|(zone, _)| zone).collect();
        kassert!(
            !deferred.is_empty(),
            "no zone deferred compaction after failures: {:?}",
            shifts_failed
        );
        // Now compaction can succeed: fragment movable memory and allocate order-9 until
        // a direct compaction succeeds, which resets the deferral.
        let mut s = Scenario::build(80, 0, true, 0xdefe)?;
        let success0 = ev(VmEvent::CompactSuccess);
        let mut got = Vec::new();
        // The zone that served the allocation a direct compaction succeeded for: as in
        // Linux, that zone's deferral is the one a success resets.
        let mut success_zone = None;
        for _ in 0..64 {
            let successes = ev(VmEvent::CompactSuccess);
            let page = a.alloc_pages(GFP_KERNEL | Gfp::MOVABLE | Gfp::NOWARN, PAGEBLOCK_ORDER);
            if let Some(p) = page {
                got.push(a.page_address(p));
            }
            if ev(VmEvent::CompactSuccess) > successes {
                success_zone = page
                    .and_then(|p| Some((p.nid(), p.zone_type()?)))
                    .map(|(nid, z)| alloc::format!("{nid}/{}", z.name()));
                break;
            }
        }
        let shifts_ok = defer_shifts();
        for addr in got {
            let _ = a.free_pages_virt(addr, PAGEBLOCK_ORDER);
        }
        s.release();
        kprintln!("deferral: after a success in zone {success_zone:?}, defer shifts {shifts_ok:?}");
        kassert!(ev(VmEvent::CompactSuccess) > success0, "no direct compaction succeeded");
        // The zone the success came from had been deferred, and is back to defer_shift 0
        // (a zone that never deferred would say nothing about the reset; the other
        // deferred zones stay deferred, as in Linux, until a success of their own).
        let zone = success_zone.ok_or("no page came with the compaction success")?;
        let shift = shifts_ok.iter().find(|(z, _)| *z == zone).map(|(_, s)| *s);
        kassert!(
            deferred.contains(&&zone),
            "the success came from zone {} which had not been deferred (deferred: {:?})",
            zone,
            deferred
        );
        kassert!(
            shift == Some(0),
            "a successful compaction in zone {} left its defer_shift at {:?} (before {:?}, now {:?})",
            zone,
            shift,
            shifts_failed,
            shifts_ok
        );
        check_invariants()
    }

    fn migration_under_concurrent_access_loses_nothing() -> TestResult {
        let a = allocator();
        fresh_compaction_state();
        let me = percpu::cpu_id();
        let others: Vec<usize> = smp::online_ids().into_iter().filter(|&c| c != me).collect();
        if others.is_empty() {
            return crate::ktest::skip("needs at least 2 CPUs (the others access pages during migration)");
        }
        let migrated0 = ev(VmEvent::PgmigrateSuccess);
        let waits0 = crate::fault::MIGRATION_WAITS.load(Ordering::Relaxed);
        let errors = AtomicU64::new(0);
        let accesses = AtomicU64::new(0);
        let mut rounds = 0;
        // Rounds go on (at most 8) until 10^4 pages moved and, when other CPUs touch the
        // pages, until at least one of them faulted on a migration entry and waited (at
        // most 3 rounds for that: one round of 10^4+ migrations under millions of accesses
        // gives hundreds): the kernel's fault path (crate::fault) must be shown to run.
        let waited = || crate::fault::MIGRATION_WAITS.load(Ordering::Relaxed) > waits0;
        while rounds < 8
            && (ev(VmEvent::PgmigrateSuccess) - migrated0 < 10_000
                || (!others.is_empty() && !waited() && rounds < 3))
        {
            rounds += 1;
            let mut s = Scenario::build(80, 0, true, 0xacce55 + rounds)?;
            let stop = AtomicBool::new(false);
            let workers = others.len() as u64;
            let mut all = others.clone();
            all.push(me);
            smp::run_on_cpus(&all, &|cpu| {
                if cpu == me {
                    let _ = a.compact_memory();
                    stop.store(true, Ordering::Release);
                    return;
                }
                // Each other CPU owns every `workers`-th kept page: verify, then rewrite it
                // at the next version, until compaction is done.
                let slot = others.iter().position(|&c| c == cpu).unwrap_or(0) as u64;
                let kept = s.movable_pages();
                let mut version = 1;
                while !stop.load(Ordering::Acquire) {
                    let mut k = slot;
                    while k < kept && !stop.load(Ordering::Relaxed) {
                        let index = s.kept[k as usize];
                        match s.verify_page(index) {
                            Ok(_) => s.write_page(index, version),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        accesses.fetch_add(1, Ordering::Relaxed);
                        k += workers;
                    }
                    version += 1;
                }
            });
            let verified = s.verify();
            s.release();
            verified?;
        }
        let migrated = ev(VmEvent::PgmigrateSuccess) - migrated0;
        let waits = crate::fault::MIGRATION_WAITS.load(Ordering::Relaxed) - waits0;
        kprintln!(
            "concurrent: {} CPUs accessing, {} rounds, {} pages migrated, {} accesses, {} migration-entry faults, {} errors",
            others.len(),
            rounds,
            migrated,
            accesses.load(Ordering::Relaxed),
            waits,
            errors.load(Ordering::Relaxed)
        );
        kassert_eq!(errors.load(Ordering::Relaxed), 0);
        kassert!(migrated >= 10_000, "only {} pages migrated in {} rounds", migrated, rounds);
        if !others.is_empty() {
            kassert!(waits > 0, "no CPU faulted on a migration entry in {} rounds ({} accesses)", rounds, accesses.load(Ordering::Relaxed));
        }
        check_invariants()
    }

    fn zpool_objects_survive_compaction_by_handle() -> TestResult {
        // movable_operations in the kernel: a zpool filled with its pages spread over most
        // of memory, then thinned out (three objects in four freed); compaction must move
        // some of the pool's pages (new frames, counted by the pool and by
        // pgmigrate_success) and every object must read back intact through its handle.
        let a = allocator();
        fresh_compaction_state();
        a.drain_all_pages();
        let pool = crate::scenario::zpool();
        let (pool0, migrated0) = (pool.stats(), ev(VmEvent::PgmigrateSuccess));
        let objects = crate::scenario::zpool_fill_and_thin(pool, crate::scenario::ZPOOL_OBJECTS, 80, 0x2b001)
            .map_err(|e| format!("filling the zpool: {e}"))?;
        let before = crate::scenario::movable_ops_pfns();
        let stats = a.compact_memory();
        let after = crate::scenario::movable_ops_pfns();
        let moved_pages = pool.stats().migrated - pool0.migrated;
        let changed = before.iter().filter(|p| after.binary_search(p).is_err()).count();
        let checked = crate::scenario::zpool_verify(pool, &objects);
        let kept = objects.len();
        let left = crate::scenario::zpool_release(pool, objects);
        kprintln!(
            "zpool: {} objects in {} pages; compaction moved {} pool pages ({} of the frames changed), {} pages migrated in all ({:?}); {} pages left after freeing",
            kept,
            before.len(),
            moved_pages,
            changed,
            ev(VmEvent::PgmigrateSuccess) - migrated0,
            stats,
            left
        );
        kassert_eq!(checked?, kept as u64);
        kassert!(moved_pages > 0, "compaction moved no zpool page");
        kassert!(changed > 0, "every zpool page is still on its old frame");
        kassert!(ev(VmEvent::PgmigrateSuccess) - migrated0 >= moved_pages);
        kassert_eq!(left, 0);
        check_invariants()
    }

    fn compaction_test_port_allocates_hugepages() -> TestResult {
        fresh_compaction_state();
        // Linux's tools/testing/selftests/mm/compaction_test: map 80% of free memory in
        // 100 MiB chunks, unmap every other chunk, then ask for as many 2 MiB pages as
        // possible. It passes when they cover at least a quarter of 0.8 x free.
        let a = allocator();
        a.drain_all_pages();
        let free = a.nr_free_pages();
        let chunk = 100 * 1024 * 1024 / PAGE_SIZE;
        let mut fragmentable = free * 8 / 10;
        let mut chunks = Vec::new();
        while fragmentable > 0 {
            let Ok(r) = a.anon_region_create(chunk) else { break };
            let (start, _) = a.anon_region_span(r).map_err(|_| "stale region")?;
            let mut ok = true;
            for i in 0..chunk {
                if a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN).is_err() {
                    ok = false;
                    break;
                }
                let va = start + i * PAGE_SIZE;
                // SAFETY: page `i` of region `r` was just mapped at `va` and is ours.
                unsafe { (va as *mut u64).write_volatile(va) };
            }
            chunks.push((r, start));
            if !ok {
                break;
            }
            fragmentable = fragmentable.saturating_sub(chunk);
        }
        let mut kept = Vec::new();
        for (i, (r, start)) in chunks.into_iter().enumerate() {
            if i % 2 == 0 {
                a.anon_region_destroy(r).map_err(|_| "destroy failed")?;
            } else {
                kept.push((r, start));
            }
        }
        let free_at_request = { a.drain_all_pages(); a.nr_free_pages() };
        let mut huge = Vec::new();
        while let Some(p) = a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN | Gfp::RETRY_MAYFAIL, PAGEBLOCK_ORDER) {
            huge.push(a.page_address(p));
        }
        let mut bad = 0;
        for &(r, start) in &kept {
            for i in 0..chunk {
                if let Ok(Some(_)) = a.anon_region_pfn(r, i) {
                    let va = start + i * PAGE_SIZE;
                    // SAFETY: page `i` of region `r` is mapped (checked above) and ours.
                    if unsafe { (va as *const u64).read_volatile() } != va {
                        bad += 1;
                    }
                }
            }
        }
        let huge_pages = huge.len() as u64 * PAGEBLOCK_NR_PAGES;
        for addr in huge {
            let _ = a.free_pages_virt(addr, PAGEBLOCK_ORDER);
        }
        for (r, _) in kept {
            let _ = a.anon_region_destroy(r);
        }
        let bar = free * 8 / 10;
        kprintln!(
            "compaction_test: {} hugepages = {}.{:03} of 0.8 x free (Linux's bar: 0.250), {}.{:03} of the free memory at the request",
            huge_pages / PAGEBLOCK_NR_PAGES,
            huge_pages * 1000 / bar / 1000,
            huge_pages * 1000 / bar % 1000,
            huge_pages * 1000 / free_at_request / 1000,
            huge_pages * 1000 / free_at_request % 1000
        );
        kassert_eq!(bad, 0);
        kassert!(huge_pages * 4 >= bar, "hugepages cover less than a quarter of 0.8 x free");
        check_invariants()
    }

    fn kcompactd_compacts_proactively_and_wakes_on_failure() -> TestResult {
        let a = allocator();
        fresh_compaction_state();
        let was = kcompactd::set_enabled(false);
        // Proactive: a fragmented node (score near 100) is compacted in the background
        // until its score is at most the high threshold (90 at proactiveness 20).
        let mut s = Scenario::build(80, 8, true, 0x6cd)?;
        let score0 = a.fragmentation_score_node(0);
        let scanned0 = ev(VmEvent::CompactDaemonMigrateScanned);
        kcompactd::set_enabled(true);
        let dropped = wait_until(300, || a.fragmentation_score_node(0) <= 90);
        kcompactd::set_enabled(false);
        let score1 = a.fragmentation_score_node(0);
        let scanned = ev(VmEvent::CompactDaemonMigrateScanned) - scanned0;
        let verified = s.verify();
        s.release();
        verified?;
        // Woken: with proactive compaction off, only a failed high-order allocation can
        // make it run.
        let proactiveness = a.sysctl().compaction_proactiveness;
        a.set_compaction_proactiveness(0).map_err(|e| format!("{e:?}"))?;
        let mut s = Scenario::build(80, 8, true, 0x6ce)?;
        let held = s.held_order9_blocks();
        let wake0 = ev(VmEvent::CompactDaemonWake);
        kcompactd::set_enabled(true);
        let failed = match a.alloc_pages(GFP_NOWAIT | Gfp::NOWARN, PAGEBLOCK_ORDER) {
            Some(p) => {
                let _ = a.free_pages(p, PAGEBLOCK_ORDER);
                false
            }
            None => true,
        };
        let woke = wait_until(300, || ev(VmEvent::CompactDaemonWake) > wake0);
        kcompactd::set_enabled(was);
        a.set_compaction_proactiveness(proactiveness).map_err(|e| format!("{e:?}"))?;
        let verified = s.verify();
        s.release();
        kprintln!(
            "kcompactd: proactive score {score0} -> {score1} with {scanned} pages scanned by the daemon; {} wake-up(s) after a failed order-9 allocation",
            ev(VmEvent::CompactDaemonWake) - wake0
        );
        verified?;
        kassert!(dropped, "kcompactd did not bring the fragmentation score to 90 or below ({} -> {})", score0, score1);
        kassert!(scanned > 0, "kcompactd scanned nothing");
        kassert!(failed, "the order-9 GFP_NOWAIT allocation succeeded on fragmented memory ({} order-9 blocks held by the scenario)", held);
        kassert!(woke, "a failed high-order allocation did not wake kcompactd");
        check_invariants()
    }
}
