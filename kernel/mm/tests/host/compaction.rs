//! Compaction's bookkeeping through real runs: the tunables, the per-zone state report,
//! deferral after failures (and its reset by a success), and the pageblock skip hints.
//!
//! The failing scenario pins every pageblock with one unmovable page: memory is first
//! filled with unmovable pages, all but one per pageblock are freed, anon pages fill the
//! rest (the movable allocations claim the mostly-free blocks back), and half of them are
//! zapped. Plenty of memory is free, compaction is suitable, but no order-9 block can
//! ever be assembled until the unmovable pages go.

use crate::compaction_common;

use std::collections::BTreeMap;

use compaction_common::*;
use zonebuddy::model::mmzone::{PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType};
use zonebuddy::movement::compaction::CompactPriority;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::SimAllocator;
use zonebuddy::report::vmstat::VmEvent;

/// Every pageblock of every zone holds one unmovable page; anon pages fill memory and
/// half of them are then zapped.
fn pinned_everywhere(a: &SimAllocator, seed: u64) -> Scenario {
    let mut all = Vec::new();
    while let Some(p) = a.alloc_page(GFP_KERNEL | Gfp::NOWARN) {
        all.push(a.page_to_pfn(p));
    }
    let mut keep: BTreeMap<u64, u64> = BTreeMap::new();
    for &pfn in &all {
        keep.entry(pfn / PAGEBLOCK_NR_PAGES).or_insert(pfn);
    }
    for &pfn in &all {
        if keep.get(&(pfn / PAGEBLOCK_NR_PAGES)) != Some(&pfn) {
            a.free_pages(a.pfn_to_page(pfn).unwrap(), 0).unwrap();
        }
    }
    a.drain_all_pages();
    let mut sc = fill(a, 0);
    sc.unmovable.extend(keep.values().map(|&pfn| (pfn, 0)));
    let mut rng = Rng::new(seed);
    sc.zap_scattered(a, &mut rng, 50);
    assert!(!has_free_at_least(a, PAGEBLOCK_ORDER));
    sc
}

fn dma32(a: &SimAllocator) -> zonebuddy::movement::compaction::ZoneCompactState {
    a.compaction_state(0, ZoneType::Dma32).unwrap()
}

const HUGE: Gfp = GFP_KERNEL.union(Gfp::MOVABLE).union(Gfp::NOWARN);

#[test]
fn tunables_are_range_checked_and_kept() {
    let a = machine(64, 1);
    let s = a.sysctl();
    assert_eq!(
        (
            s.compaction_proactiveness,
            s.extfrag_threshold,
            s.compact_unevictable_allowed
        ),
        (20, 500, 1)
    );
    a.set_compaction_proactiveness(0).unwrap();
    a.set_compaction_proactiveness(100).unwrap();
    let e = a.set_compaction_proactiveness(101).unwrap_err();
    assert_eq!(e.name, "compaction_proactiveness");
    assert_eq!(a.sysctl().compaction_proactiveness, 100);
    a.set_extfrag_threshold(0).unwrap();
    a.set_extfrag_threshold(1000).unwrap();
    assert!(a.set_extfrag_threshold(1001).is_err());
    assert!(a.set_extfrag_threshold(u64::MAX).is_err());
    assert_eq!(a.sysctl().extfrag_threshold, 1000);
    a.set_compact_unevictable_allowed(0).unwrap();
    assert!(a.set_compact_unevictable_allowed(2).is_err());
    assert_eq!(a.sysctl().compact_unevictable_allowed, 0);
    assert_eq!(
        e.to_string(),
        "vm.compaction_proactiveness = 101: invalid value, accepted: 0 to 100"
    );
}

#[test]
fn compaction_state_report() {
    let a = machine(64, 1);
    let mut out = String::new();
    a.write_compaction_state(&mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("Node 0, zone      DMA considered 0 defer_shift 0 order_failed 0 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("Node 0, zone    DMA32 considered 0 defer_shift 0 order_failed 0 ")
    );
    assert!(lines[1].contains(" migrate_pfn 0x") && lines[1].contains(" free_pfn 0x"));
    let st = dma32(&a);
    assert!(lines[1].ends_with(&format!(" skip 0/{}", st.pageblocks)));
    assert_eq!(st.pageblocks, (64 - 16) * 256 / 512);
    assert!(a.compaction_state(0, ZoneType::Normal).is_none());
    assert!(a.compaction_state(7, ZoneType::Dma32).is_none());
    assert!(a.compact_node(5).is_none());
    assert_eq!(CompactPriority::INIT, CompactPriority::Async);
}

#[test]
fn deferral_grows_skips_and_resets_on_success() {
    let a = machine(128, 1);
    a.set_compaction_proactiveness(0).unwrap();
    let mut sc = pinned_everywhere(&a, 3);
    let zone_blocks = dma32(&a).pageblocks;

    // Failures: the shift grows, deferred attempts do no scanning.
    let mut saw_skip_without_scan = false;
    let mut shifts = Vec::new();
    for _ in 0..12 {
        let deferred0 = a.vm_event(VmEvent::CompactDeferred);
        let scanned0 = a.vm_event(VmEvent::CompactMigrateScanned);
        assert!(a.alloc_pages(HUGE, PAGEBLOCK_ORDER).is_none());
        let deferred = a.vm_event(VmEvent::CompactDeferred) - deferred0;
        let scanned = a.vm_event(VmEvent::CompactMigrateScanned) - scanned0;
        // Both zones (DMA32, DMA) skipped at both priorities: nothing scanned at all.
        if deferred == 4 && scanned == 0 {
            saw_skip_without_scan = true;
        }
        shifts.push(dma32(&a).defer_shift);
        check(&a);
    }
    let st = dma32(&a);
    eprintln!(
        "after 12 failures: {st:?}; shifts {shifts:?}; compact_stall {} fail {} deferred {} migrated {}",
        a.vm_event(VmEvent::CompactStall),
        a.vm_event(VmEvent::CompactFail),
        a.vm_event(VmEvent::CompactDeferred),
        a.vm_event(VmEvent::PgmigrateSuccess)
    );
    assert!(st.defer_shift >= 3, "defer_shift {}", st.defer_shift);
    assert!(
        shifts.windows(2).all(|w| w[0] <= w[1]),
        "shift never shrinks on failure"
    );
    assert_eq!(st.order_failed, 0);
    assert!(saw_skip_without_scan, "no attempt was deferred outright");
    assert!(a.vm_event(VmEvent::CompactFail) >= 12);
    assert_eq!(a.vm_event(VmEvent::CompactSuccess), 0);
    // Failed runs left skip hints behind.
    assert!(
        st.skip_blocks * 2 >= zone_blocks,
        "skip bits {}/{zone_blocks}",
        st.skip_blocks
    );
    sc.verify_all(&a);

    // Without the unmovable pages compaction can succeed again. The failed runs packed
    // the anon pages upwards, so the pinned blocks at the bottom are free as a whole once
    // the pins go: fragment the packed blocks again and take every whole free block, so
    // the next order-9 block has to come from compaction. Once the deferral has run its
    // course the skip hints are reset and a run assembles one.
    sc.free_unmovable(&a);
    let mut rng = Rng::new(33);
    sc.zap_scattered(&a, &mut rng, 50);
    let nodirect = HUGE.difference(Gfp::DIRECT_RECLAIM);
    let mut taken = Vec::new();
    while let Some(p) = a.alloc_pages(nodirect, PAGEBLOCK_ORDER) {
        taken.push(p);
    }
    assert!(!has_free_at_least(&a, PAGEBLOCK_ORDER));
    let success0 = a.vm_event(VmEvent::CompactSuccess);
    let mut page = None;
    let mut attempts = 0;
    while page.is_none() && attempts < 300 {
        page = a.alloc_pages(HUGE, PAGEBLOCK_ORDER);
        attempts += 1;
    }
    let page = page.expect("no order-9 allocation after the pins were freed");
    let st = dma32(&a);
    eprintln!(
        "success after {attempts} attempts: {st:?}; compact_success {} captured {}",
        a.vm_event(VmEvent::CompactSuccess),
        a.vm_event(VmEvent::CompactCapture)
    );
    assert_eq!(a.vm_event(VmEvent::CompactSuccess), success0 + 1);
    let zt = page.zone_type().unwrap();
    let st = a.compaction_state(0, zt).unwrap();
    assert_eq!((st.considered, st.defer_shift), (0, 0));
    assert_eq!(st.order_failed, PAGEBLOCK_ORDER + 1);
    a.free_pages(page, PAGEBLOCK_ORDER).unwrap();
    for p in taken {
        a.free_pages(p, PAGEBLOCK_ORDER).unwrap();
    }
    sc.verify_all(&a);
    check(&a);
    sc.teardown(&a);
    check(&a);
}

#[test]
fn skip_hints_are_set_by_failures_and_reset_when_kcompactd_sleeps() {
    let a = machine(128, 1);
    a.set_compaction_proactiveness(0).unwrap();
    let sc = pinned_everywhere(&a, 4);
    assert_eq!(dma32(&a).skip_blocks, 0);
    assert!(a.alloc_pages(HUGE, PAGEBLOCK_ORDER).is_none());
    let st = dma32(&a);
    assert!(
        st.skip_blocks * 2 >= st.pageblocks,
        "skip bits {}/{}",
        st.skip_blocks,
        st.pageblocks
    );
    // kcompactd serves the recorded request (deferred or hopeless), then goes to sleep
    // and, since a direct compaction went through the zone, clears the hints of blocks
    // that have free or movable pages: all of them here.
    let wakes0 = a.vm_event(VmEvent::CompactDaemonWake);
    let sleep = a.kcompactd_run(0, 1_000);
    assert_eq!(
        sleep,
        zonebuddy::movement::compaction::KCOMPACTD_SLEEP_FOREVER
    );
    assert_eq!(a.vm_event(VmEvent::CompactDaemonWake), wakes0 + 1);
    let after = dma32(&a);
    eprintln!(
        "skip bits: {} -> {} of {}",
        st.skip_blocks, after.skip_blocks, st.pageblocks
    );
    assert!(
        after.skip_blocks * 10 <= st.pageblocks,
        "skip bits left: {}",
        after.skip_blocks
    );
    // With nothing requested, another round does nothing and resets nothing more.
    assert_eq!(
        a.kcompactd_run(0, 2_000),
        zonebuddy::movement::compaction::KCOMPACTD_SLEEP_FOREVER
    );
    assert_eq!(a.vm_event(VmEvent::CompactDaemonWake), wakes0 + 1);
    check(&a);
    sc.teardown(&a);
}
