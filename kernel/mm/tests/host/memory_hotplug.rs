//! Memory blocks offline and online: a 128 MiB block full of scattered movable pages goes
//! offline with its data intact and the zone's counts and watermarks follow; online
//! restores them exactly; a block with an unmovable page refuses with the pfn and stays
//! online with nothing isolated. Present pages and spans follow the block (hand-worked:
//! a 128 MiB block is 32768 pages), /proc/zoneinfo comes back byte for byte, and the
//! online types place the block as Linux's rules say (`valid_zones`, moving a DMA32 block
//! into ZONE_MOVABLE and back, refusals that would overlap zones).

use crate::compaction_common::{self as cc, Rng};

use zonebuddy::model::mmzone::{Migratetype, PAGEBLOCK_NR_PAGES, ZoneType};
use zonebuddy::model::pageblock::get_pageblock_migratetype;
use zonebuddy::movement::isolation::IsolateError;
use zonebuddy::movement::memory_hotplug::{BlockState, HotplugError, OnlineStats, OnlineType};
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

/// `/proc/zoneinfo` with the pcp lists drained: the text a user compares.
fn zoneinfo(a: &SimAllocator) -> String {
    a.drain_all_pages();
    let mut s = String::new();
    a.write_zoneinfo(&mut s).unwrap();
    s
}

/// (start, spanned, present, managed) of zone `zt` of node 0.
fn sizes(a: &SimAllocator, zt: ZoneType) -> (u64, u64, u64, u64) {
    let z = a.zone_of(0, zt).unwrap();
    (
        z.zone_start_pfn(),
        z.spanned_pages(),
        z.present_pages(),
        z.managed_pages(),
    )
}

fn valid_zones(a: &SimAllocator, block: u64) -> String {
    a.memory_block_valid_zones(block).unwrap().to_string()
}

/// A block in the middle of DMA32 (512 MiB machine, block 2 = [256 MiB, 384 MiB), no
/// reserved page in it): present pages fall by the block's 32768 pages and the span
/// stays (a hole in the middle, as Linux); online gives back the same /proc/zoneinfo,
/// byte for byte, and the node's present pages.
#[test]
fn offline_subtracts_present_pages_and_online_restores_zoneinfo() {
    let a = cc::machine(512, 1);
    let block = 2;
    let per = a.memory_block_pages();
    assert_eq!(per, 32768);
    let info0 = zoneinfo(&a);
    let (s0, sp0, p0, m0) = sizes(&a, ZoneType::Dma32);
    let node0 = a.model().node(0).unwrap().node_present_pages();
    a.offline_memory_block(block).unwrap();
    let (s1, sp1, p1, m1) = sizes(&a, ZoneType::Dma32);
    assert_eq!((s1, sp1), (s0, sp0), "a middle block leaves the span");
    assert_eq!(p0 - p1, 32768, "present pages");
    assert_eq!(m0 - m1, 32768, "managed pages");
    assert_eq!(
        a.model().node(0).unwrap().node_present_pages(),
        node0 - 32768
    );
    let info1 = zoneinfo(&a);
    assert!(
        info1.contains(&format!("        present  {}\n", p0 - 32768)),
        "{info1}"
    );
    assert!(
        info1.contains(&format!("        managed  {}\n", m0 - 32768)),
        "{info1}"
    );
    check(&a);
    assert_eq!(valid_zones(&a, block), "DMA32");
    assert_eq!(
        a.online_memory_block_as(block, OnlineType::Online),
        Ok(OnlineStats {
            pages: 32768,
            zone: ZoneType::Dma32
        })
    );
    assert_eq!(sizes(&a, ZoneType::Dma32), (s0, sp0, p0, m0));
    assert_eq!(a.model().node(0).unwrap().node_present_pages(), node0);
    assert_eq!(zoneinfo(&a), info0);
    check(&a);
}

/// 768 MiB with `movablecore=384M`: DMA32 ends and ZONE_MOVABLE begins at 384 MiB
/// (block 3); blocks 1 and 2 are DMA32, 3, 4 and 5 Movable (5 holds the memmaps).
fn movable_machine() -> SimAllocator {
    let mut params = zonebuddy::ModelParams::default();
    params.parse_cmdline("movablecore=384M");
    let a = SimAllocator::build(&zonebuddy::port::sim::qemu_e820(768 << 20), &[], &params, 2)
        .unwrap_or_else(|e| panic!("{e}"));
    let per = a.memory_block_pages();
    let (ms, msp, _, _) = sizes(&a, ZoneType::Movable);
    assert_eq!(ms, 3 * per, "ZONE_MOVABLE starts at block 3");
    assert_eq!(
        a.zone_of(0, ZoneType::Dma32).unwrap().zone_end_pfn(),
        3 * per
    );
    assert!(ms + msp > 5 * per);
    a
}

/// The edge block of DMA32 goes offline (the span shrinks to end at block 2), is onlined
/// into ZONE_MOVABLE (which grows down over it: zone links, present, managed, pageblocks
/// Movable), goes offline again (ZONE_MOVABLE shrinks back) and online_kernel returns it
/// to DMA32: every count and /proc/zoneinfo as at boot.
#[test]
fn online_movable_moves_a_dma32_block_and_online_kernel_brings_it_back() {
    let a = movable_machine();
    let per = a.memory_block_pages();
    let info0 = zoneinfo(&a);
    let dma32_0 = sizes(&a, ZoneType::Dma32);
    let movable_0 = sizes(&a, ZoneType::Movable);
    let block = 2;
    let (start, end) = (block * per, (block + 1) * per);
    assert_eq!(valid_zones(&a, block), "DMA32");
    a.offline_memory_block(block).unwrap();
    let dma32_1 = sizes(&a, ZoneType::Dma32);
    assert_eq!(dma32_1.0, dma32_0.0);
    assert_eq!(
        dma32_1.0 + dma32_1.1,
        start,
        "DMA32 now ends at block 2's start"
    );
    assert_eq!(dma32_0.2 - dma32_1.2, per);
    assert_eq!(dma32_0.3 - dma32_1.3, per);
    // Between DMA32 and ZONE_MOVABLE, meeting neither: the kernel zone by default.
    assert_eq!(valid_zones(&a, block), "DMA32 Movable");
    check(&a);
    let st = a
        .online_memory_block_as(block, OnlineType::Movable)
        .unwrap();
    assert_eq!(
        st,
        OnlineStats {
            pages: per,
            zone: ZoneType::Movable
        }
    );
    let movable_2 = sizes(&a, ZoneType::Movable);
    assert_eq!(movable_2.0, start, "ZONE_MOVABLE grew down over the block");
    assert_eq!(movable_2.0 + movable_2.1, movable_0.0 + movable_0.1);
    assert_eq!(movable_2.2, movable_0.2 + per);
    assert_eq!(movable_2.3, movable_0.3 + per);
    assert_eq!(sizes(&a, ZoneType::Dma32), dma32_1);
    for pfn in (start..end).step_by(4099) {
        let page = a.pfn_to_page(pfn).unwrap();
        assert_eq!(page.zone_type(), Some(ZoneType::Movable), "pfn {pfn:#x}");
    }
    for pb in (start..end).step_by(PAGEBLOCK_NR_PAGES as usize) {
        assert_eq!(
            get_pageblock_migratetype(a.model().sparse(), pb),
            Ok(Migratetype::Movable)
        );
    }
    assert_eq!(valid_zones(&a, block), "Movable");
    check(&a);
    // Kernel allocations stay out of it; movable ones may use it.
    let mut got = Vec::new();
    while let Some(p) = a.alloc_page(GFP_KERNEL | Gfp::NOWARN) {
        assert!(
            !(start..end).contains(&a.page_to_pfn(p)),
            "GFP_KERNEL in ZONE_MOVABLE"
        );
        got.push(p);
    }
    for p in got {
        a.free_pages(p, 0).unwrap();
    }
    check(&a);
    // And back.
    a.offline_memory_block(block).unwrap();
    assert_eq!(
        sizes(&a, ZoneType::Movable),
        movable_0,
        "ZONE_MOVABLE shrank back"
    );
    assert_eq!(valid_zones(&a, block), "DMA32 Movable");
    let st = a.online_memory_block_as(block, OnlineType::Kernel).unwrap();
    assert_eq!(st.zone, ZoneType::Dma32);
    assert_eq!(sizes(&a, ZoneType::Dma32), dma32_0);
    assert_eq!(sizes(&a, ZoneType::Movable), movable_0);
    assert_eq!(zoneinfo(&a), info0);
    check(&a);
}

/// Online types that would make two zones overlap are refused with the zones named, and
/// change nothing; the default keeps a block in the one zone it meets.
#[test]
fn impossible_online_types_are_refused() {
    let a = movable_machine();
    let info0 = zoneinfo(&a);
    // Block 1, inside DMA32 (block 0 below it holds DMA and the low reservations).
    a.offline_memory_block(1).unwrap();
    assert_eq!(valid_zones(&a, 1), "DMA32");
    let e = a
        .online_memory_block_as(1, OnlineType::Movable)
        .unwrap_err();
    assert_eq!(
        e,
        HotplugError::ZoneOverlap {
            block: 1,
            zone: ZoneType::Movable,
            other: ZoneType::Dma32
        }
    );
    assert_eq!(
        e.to_string(),
        "memory1: cannot online into Movable: the zone would overlap DMA32"
    );
    assert_eq!(a.memory_block_state(1), Ok(BlockState::Offline));
    check(&a);
    // Block 4, in the middle of ZONE_MOVABLE.
    a.offline_memory_block(4).unwrap();
    assert_eq!(valid_zones(&a, 4), "Movable");
    let e = a.online_memory_block_as(4, OnlineType::Kernel).unwrap_err();
    assert_eq!(
        e.to_string(),
        "memory4: cannot online into DMA32: the zone would overlap Movable"
    );
    assert_eq!(a.memory_block_state(4), Ok(BlockState::Offline));
    check(&a);
    assert_eq!(
        a.online_memory_block_as(4, OnlineType::Online)
            .unwrap()
            .zone,
        ZoneType::Movable
    );
    assert_eq!(
        a.online_memory_block_as(1, OnlineType::Online)
            .unwrap()
            .zone,
        ZoneType::Dma32
    );
    assert_eq!(valid_zones(&a, 4), "Movable");
    assert_eq!(valid_zones(&a, 1), "DMA32");
    assert_eq!(zoneinfo(&a), info0);
    // Parsing the words of `state`.
    assert_eq!(
        OnlineType::parse("online_movable"),
        Some(OnlineType::Movable)
    );
    assert_eq!(OnlineType::parse("online_kernel"), Some(OnlineType::Kernel));
    assert_eq!(OnlineType::parse("online"), Some(OnlineType::Online));
    assert_eq!(OnlineType::parse("online_dma"), None);
    check(&a);
}

/// A machine without ZONE_MOVABLE: online_movable is refused (the zone is in no
/// zonelist), the block stays offline, and `online` still works.
#[test]
fn online_movable_without_a_movable_zone_is_refused() {
    let a = cc::machine(512, 1);
    a.offline_memory_block(2).unwrap();
    let e = a
        .online_memory_block_as(2, OnlineType::Movable)
        .unwrap_err();
    assert_eq!(
        e,
        HotplugError::NoZonelist {
            block: 2,
            zone: ZoneType::Movable
        }
    );
    assert!(e.to_string().contains("had no memory at boot"), "{e}");
    assert_eq!(a.memory_block_state(2), Ok(BlockState::Offline));
    assert_eq!(valid_zones(&a, 2), "DMA32");
    check(&a);
    a.online_memory_block(2).unwrap();
    check(&a);
}
