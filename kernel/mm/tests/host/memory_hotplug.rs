//! Memory blocks offline and online: a 128 MiB block full of scattered movable pages goes
//! offline with its data intact and the zone's counts and watermarks follow; online
//! restores them exactly; a block with an unmovable page refuses with the pfn and stays
//! online with nothing isolated.

use crate::compaction_common::{self as cc, Rng};

use zonebuddy::model::mmzone::ZoneType;
use zonebuddy::movement::isolation::IsolateError;
use zonebuddy::movement::memory_hotplug::{BlockState, HotplugError};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::SimAllocator;

fn check(a: &SimAllocator) {
    if let Err(v) = zonebuddy::report::debug::check(&**a) {
        panic!("debug::check: {v}");
    }
}

/// (managed, watermarks, lowmem reserve, pcp high/batch) of DMA32, and totalram.
fn counts(a: &SimAllocator) -> (u64, String, u64) {
    let z = a.zone_of(0, ZoneType::Dma32).unwrap();
    (
        z.managed_pages(),
        format!(
            "{:?} {:?} {:?}",
            z.watermarks(),
            z.lowmem_reserve(),
            z.pageset_high_batch()
        ),
        a.totalram_pages(),
    )
}

#[test]
fn offline_a_block_full_of_movable_pages_and_online_it_again() {
    let a = cc::machine(512, 1);
    let before = counts(&a);
    let free0 = cc::free_distribution(&a).2;
    let mut sc = cc::fill(&a, 0);
    let mut rng = Rng::new(128);
    sc.zap_scattered(&a, &mut rng, 50);
    check(&a);
    // Block 2: [256 MiB, 384 MiB), inside DMA32.
    let block = 2;
    let start = block * a.memory_block_pages();
    let anon_in = (start..start + a.memory_block_pages())
        .filter(|&p| a.pfn_to_page(p).is_some_and(|pg| pg.is_anon()))
        .count() as u64;
    assert!(
        anon_in > a.memory_block_pages() / 4,
        "anon pages in the block: {anon_in}"
    );
    assert_eq!(a.memory_block_state(block), Ok(BlockState::Online));
    let reserved_in = (start..start + a.memory_block_pages())
        .filter(|&p| a.pfn_to_page(p).is_none_or(|pg| pg.is_reserved()))
        .count() as u64;
    let t = std::time::Instant::now();
    let stats = a
        .offline_memory_block(block)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "offline of a 128 MiB block ({anon_in} anon pages): {stats:?} in {:?}",
        t.elapsed()
    );
    assert!(stats.migrated >= anon_in, "{stats:?}");
    assert_eq!(a.memory_block_state(block), Ok(BlockState::Offline));
    let during = counts(&a);
    // Every managed page of the block left the zone: all of it but the reserved pages
    // inside it (memmaps sit at the top of the node, not in this block, by default).
    let withdrawn = before.0 - during.0;
    assert_eq!(
        withdrawn,
        a.memory_block_pages() - reserved_in,
        "withdrawn {withdrawn}"
    );
    assert_eq!(before.2 - during.2, withdrawn);
    assert_ne!(before.1, during.1, "watermarks recomputed");
    assert_eq!(a.nr_isolate_pageblock(), 0);
    check(&a);
    sc.verify_all(&a);
    // Nothing is handed out from the offline block.
    let mut got = Vec::new();
    while let Some(p) = a.alloc_page(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
        let pfn = a.page_to_pfn(p);
        assert!(
            !(start..start + a.memory_block_pages()).contains(&pfn),
            "offline pfn {pfn:#x} handed out"
        );
        got.push(p);
    }
    for p in got {
        a.free_pages(p, 0).unwrap();
    }
    let mut view = String::new();
    a.write_memory_block(&mut view, block).unwrap().unwrap();
    assert_eq!(
        view,
        "state: offline\nphys_index: 00000002\nvalid_zones: DMA32\nremovable: 1\n"
    );
    assert_eq!(
        a.offline_memory_block(block),
        Err(HotplugError::AlreadyOffline(block))
    );
    check(&a);
    // Online: the counts come back exactly.
    let onlined = a.online_memory_block(block).unwrap();
    assert_eq!(onlined, withdrawn);
    assert_eq!(counts(&a), before);
    assert_eq!(a.memory_block_state(block), Ok(BlockState::Online));
    assert!(matches!(
        a.online_memory_block(block),
        Err(HotplugError::NotOffline { .. })
    ));
    check(&a);
    sc.verify_all(&a);
    sc.teardown(&a);
    assert_eq!(cc::free_distribution(&a).2, free0);
    check(&a);
}

#[test]
fn a_block_with_an_unmovable_page_refuses_offline() {
    let a = cc::machine(512, 1);
    let before = counts(&a);
    // An unmovable page in block 2 (block 3 holds boot-time reservations at the top of
    // memory: it refuses as reserved).
    let mut held = Vec::new();
    let victim = loop {
        let p = a.alloc_page(GFP_KERNEL).expect("memory");
        let pfn = a.page_to_pfn(p);
        if pfn / a.memory_block_pages() == 2 {
            break pfn;
        }
        held.push(p);
    };
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    let e = a.offline_memory_block(2).unwrap_err();
    match e {
        HotplugError::Isolate(IsolateError::Unmovable { pfn, .. }) => assert!(
            pfn / a.memory_block_pages() == 2,
            "refusal names pfn {pfn:#x} (victim {victim:#x})"
        ),
        e => panic!("unexpected: {e}"),
    }
    assert!(e.to_string().contains("unmovable page"), "{e}");
    assert_eq!(a.memory_block_state(2), Ok(BlockState::Online));
    assert_eq!(a.nr_isolate_pageblock(), 0);
    assert_eq!(counts(&a), before);
    check(&a);
    a.free_pages(a.pfn_to_page(victim).unwrap(), 0).unwrap();
    // Blocks 0 and 3 hold reserved memory: refused too. Beyond memory: no block.
    assert!(a.offline_memory_block(0).is_err());
    assert!(matches!(
        a.offline_memory_block(3),
        Err(HotplugError::Isolate(IsolateError::Reserved { .. }))
    ));
    assert_eq!(
        a.offline_memory_block(1 << 20),
        Err(HotplugError::NoBlock(1 << 20))
    );
    assert_eq!(a.nr_isolate_pageblock(), 0);
    // Free, the block goes offline and back.
    a.drain_all_pages();
    a.offline_memory_block(2).unwrap();
    check(&a);
    a.online_memory_block(2).unwrap();
    assert_eq!(counts(&a), before);
    check(&a);
}
