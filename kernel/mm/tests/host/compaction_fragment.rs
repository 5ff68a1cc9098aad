//! Compaction against real fragmentation: memory filled with checksummed anon pages and
//! unmovable allocations, half of the anon pages zapped at random, so free memory is
//! plentiful but no pageblock is free.
//!
//! - `compact_memory_assembles_pageblocks`: with compaction unavailable an order-9
//!   allocation fails; after `compact_memory` nearly all free memory that is not in a
//!   pageblock pinned by an unmovable page is in order-9+ blocks, every page still holds
//!   its data, the reverse maps and the allocator's invariants are intact.
//! - `direct_compaction_serves_huge_allocations`: plain `GFP_KERNEL | __GFP_MOVABLE`
//!   order-9 allocations succeed one after the other through direct compaction, and at
//!   least one of them through a capture.

use crate::compaction_common;

use compaction_common::*;
use zonebuddy::model::mmzone::PAGEBLOCK_ORDER;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::report::vmstat::VmEvent;

#[test]
fn compact_memory_assembles_pageblocks() {
    let a = machine(512, 2);
    let total = a.totalram_pages();
    let sc = fragmented(&a, 1);
    let anon = sc.anon_pages();
    let unmovable: u64 = sc.unmovable.iter().map(|&(_, o)| 1u64 << o).sum();
    let (outside0, big0, free0) = free_distribution(&a);
    eprintln!(
        "before: total {total} anon {anon} unmovable {unmovable} free {free0} (outside pinned {outside0}, in order-9+ {big0})"
    );
    // Filled to at least 80% before the zap; no order-9 block free now.
    assert!(
        anon * 2 + unmovable >= total * 8 / 10 - 1024,
        "fill too small"
    );
    assert_eq!(big0, 0);
    check(&a);

    // Compaction not allowed (no direct reclaim): the order-9 request fails.
    let nodirect = (GFP_KERNEL | Gfp::MOVABLE | Gfp::NOWARN).difference(Gfp::DIRECT_RECLAIM);
    let stall0 = a.vm_event(VmEvent::CompactStall);
    assert!(a.alloc_pages(nodirect, PAGEBLOCK_ORDER).is_none());
    assert_eq!(a.vm_event(VmEvent::CompactStall), stall0);

    let migrated0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let stats = a.compact_memory();
    let migrated = a.vm_event(VmEvent::PgmigrateSuccess) - migrated0;
    a.drain_all_pages();
    let (outside, big, free) = free_distribution(&a);
    eprintln!(
        "after: {stats:?}; pgmigrate_success +{migrated}; free {free} (outside pinned {outside}, in order-9+ {big} = {:.1}%)",
        100.0 * big as f64 / outside.max(1) as f64
    );
    assert_eq!(free, free0, "compaction changed the amount of free memory");
    assert!(stats.migrated > 0 && stats.migrated == migrated);
    assert!(stats.isolated >= stats.migrated);
    assert!(
        big * 10 >= outside * 9,
        "only {big} of {outside} free pages outside pinned blocks are in order-9+ blocks"
    );
    sc.verify_all(&a);
    check(&a);

    // The free blocks are usable: the request that failed now succeeds.
    let p = a
        .alloc_pages(nodirect, PAGEBLOCK_ORDER)
        .expect("order-9 after compaction");
    a.free_pages(p, PAGEBLOCK_ORDER).unwrap();
    sc.teardown(&a);
    check(&a);
}

#[test]
fn direct_compaction_serves_huge_allocations() {
    let a = machine(256, 2);
    let sc = fragmented(&a, 2);
    let stall0 = a.vm_event(VmEvent::CompactStall);
    let success0 = a.vm_event(VmEvent::CompactSuccess);
    let capture0 = a.vm_event(VmEvent::CompactCapture);
    let (_, _, free0) = free_distribution(&a);
    let mut held = Vec::new();
    for i in 0..12 {
        let p = a
            .alloc_pages(GFP_KERNEL | Gfp::MOVABLE, PAGEBLOCK_ORDER)
            .unwrap_or_else(|| panic!("order-9 allocation {i} failed"));
        held.push(p);
        check(&a);
    }
    let stalls = a.vm_event(VmEvent::CompactStall) - stall0;
    let successes = a.vm_event(VmEvent::CompactSuccess) - success0;
    let captured = a.vm_event(VmEvent::CompactCapture) - capture0;
    eprintln!(
        "12 order-9 allocations: compact_stall +{stalls}, compact_success +{successes}, compact_fail +{}, captured pages +{captured}, migrated {}",
        a.vm_event(VmEvent::CompactFail),
        a.vm_event(VmEvent::PgmigrateSuccess)
    );
    assert!(stalls >= 12, "every allocation needed direct compaction");
    assert!(successes >= 12);
    assert!(captured >= 1 << PAGEBLOCK_ORDER, "no capture happened");
    sc.verify_all(&a);
    for p in held {
        a.free_pages(p, PAGEBLOCK_ORDER).unwrap();
    }
    a.drain_all_pages();
    let (_, _, free1) = free_distribution(&a);
    assert_eq!(free0, free1, "pages lost or created");
    check(&a);
    sc.teardown(&a);
}
