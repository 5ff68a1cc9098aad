//! Compaction figures on simulated RAM, printed, never asserted (benchmarks are not
//! tests): how fast `compact_memory` migrates on a fragmented machine (pages/s and ns per
//! migrated page, scanners and copies included), how much of the free memory is in
//! order-9+ blocks before and after, and the latency of an order-9 allocation served by
//! direct compaction (with capture).
//!
//! `cargo bench -p zonebuddy --bench compaction`. The machine has 512 MiB and 2 CPUs; memory is
//! filled with checksummed anon pages and every tenth allocation is an unmovable page, then
//! half of the anon pages are zapped at random (the scenario of the compaction tests).
//! `MM_BENCH_RUNS` (default 3) sets how many fresh machines are measured.

#[path = "../tests/host/compaction_common/mod.rs"]
mod compaction_common;

use std::time::Instant;

use compaction_common::*;
use zonebuddy::model::mmzone::PAGEBLOCK_ORDER;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::report::vmstat::VmEvent;

fn pct(a: u64, b: u64) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

fn main() {
    let runs: u64 = std::env::var("MM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("compaction bench: 512 MiB, 2 CPUs, {runs} runs");
    let mut rates = Vec::new();
    let mut ns_per_page = Vec::new();
    for run in 0..runs {
        let a = machine(512, 2);
        let t = Instant::now();
        let sc = fragmented(&a, 1000 + run);
        let setup = t.elapsed();
        let (outside0, big0, free0) = free_distribution(&a);
        let t = Instant::now();
        let s = a.compact_memory();
        let dt = t.elapsed();
        let (outside1, big1, free1) = free_distribution(&a);
        let rate = s.migrated as f64 / dt.as_secs_f64();
        let ns = dt.as_nanos() as f64 / s.migrated.max(1) as f64;
        rates.push(rate);
        ns_per_page.push(ns);
        println!(
            "run {run}: setup {:.2?}; compact_memory {:.2?}: migrated {} (failed {}), scanned migrate/free {}/{}, isolated {}",
            setup, dt, s.migrated, s.failed, s.migrate_scanned, s.free_scanned, s.isolated
        );
        println!(
            "  {:.0} pages/s, {:.0} ns/page; free {} -> {} pages; in order-9+ blocks: {:.1}% -> {:.1}% of all free, {:.1}% -> {:.1}% of free outside pinned blocks",
            rate,
            ns,
            free0,
            free1,
            pct(big0, free0),
            pct(big1, free1),
            pct(big0, outside0),
            pct(big1, outside1)
        );
        sc.teardown(&a);
    }
    rates.sort_by(f64::total_cmp);
    ns_per_page.sort_by(f64::total_cmp);
    let mid = rates.len() / 2;
    println!(
        "compact_memory median: {:.0} pages/s, {:.0} ns/page",
        rates[mid], ns_per_page[mid]
    );

    // Direct compaction: order-9 allocations on a freshly fragmented machine.
    let a = machine(512, 2);
    let sc = fragmented(&a, 77);
    let n = 32;
    let capture0 = a.vm_event(VmEvent::CompactCapture);
    let migrated0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let scanned0 = (
        a.vm_event(VmEvent::CompactMigrateScanned),
        a.vm_event(VmEvent::CompactFreeScanned),
    );
    let mut held = Vec::new();
    let mut lat = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let p = a.alloc_pages(GFP_KERNEL | Gfp::MOVABLE | Gfp::NOWARN, PAGEBLOCK_ORDER);
        lat.push(t.elapsed());
        match p {
            Some(p) => held.push(p),
            None => break,
        }
    }
    let got = held.len();
    lat.sort();
    println!(
        "direct compaction: {got}/{n} order-9 allocations; latency median {:.2?}, max {:.2?}; compact_stall {} success {} fail {}; captured blocks {}; pages migrated {}; scanned migrate/free {}/{}",
        lat[lat.len() / 2],
        lat[lat.len() - 1],
        a.vm_event(VmEvent::CompactStall),
        a.vm_event(VmEvent::CompactSuccess),
        a.vm_event(VmEvent::CompactFail),
        (a.vm_event(VmEvent::CompactCapture) - capture0) >> PAGEBLOCK_ORDER,
        a.vm_event(VmEvent::PgmigrateSuccess) - migrated0,
        a.vm_event(VmEvent::CompactMigrateScanned) - scanned0.0,
        a.vm_event(VmEvent::CompactFreeScanned) - scanned0.1
    );
    for p in held {
        a.free_pages(p, PAGEBLOCK_ORDER).unwrap();
    }
    sc.teardown(&a);
}
