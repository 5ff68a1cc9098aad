//! Compaction and migration on zoned machines: anon pages living in ZONE_NORMAL above
//! 4 GiB, and in ZONE_MOVABLE carved by `movablecore=` (above 4 GiB, and below it as in
//! the QEMU `movablecore=256M` configuration).
//!
//! The other compaction tests use machines of at most 512 MiB, which have only DMA and
//! DMA32: frames above 4 GiB and the Movable zone never move there. Here each test fills
//! one zone with checksummed anon pages (and, where the zone takes them, unmovable pages),
//! asserting that every frame is in that zone, fragments it, and compacts it:
//!
//! - `compact_zone_normal_above_4g` / `compact_zone_movable_above_4g` /
//!   `compact_zone_movable_below_4g`: `compact_node_zone` on the zone moves pages only
//!   inside it (new frames in the same zone, the other zones' free blocks untouched), the
//!   PTE of every page names its new frame, every checksum read through the virtual
//!   address is intact, every reverse map points back, `debug::check` is clean, and at
//!   least 90% of the zone's free memory outside pinned pageblocks is in order-9+ blocks
//!   (none was before). Then the pages left are fragmented again and `compact_memory`
//!   does the same.
//! - `migrate_pages_within_zone_normal` / `migrate_pages_within_zone_movable`:
//!   `migrate_pages` of pages in the zone to targets in the same zone.

use crate::compaction_common;

use std::cell::Cell;
use std::collections::BTreeMap;

use compaction_common::*;
use zonebuddy::model::list::PageList;
use zonebuddy::model::memmap::{FirmwareRange, RangeKind};
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{
    MAX_PAGE_ORDER, PAGE_SHIFT, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
};
use zonebuddy::model::page::Page;
use zonebuddy::movement::migrate::{MigrateMode, MigrateReason};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::platform::{MovableMapping, Pte};
use zonebuddy::port::sim::SimAllocator;
use zonebuddy::report::vmstat::VmEvent;

const GIB: u64 = 1 << 30;
/// First frame above 4 GiB.
const PFN_4G: u64 = (4 * GIB) >> PAGE_SHIFT;

/// A PC-like firmware map: `low_mib` MiB of RAM below 4 GiB (639 KiB of low memory, the
/// legacy BIOS hole, RAM from 1 MiB with a small reservation at its top), the PCI hole up
/// to 4 GiB, and `high_mib` MiB of RAM from 4 GiB up. The simulated RAM is what is usable;
/// the hole costs nothing.
fn split_e820(low_mib: u64, high_mib: u64) -> Vec<FirmwareRange> {
    use RangeKind::*;
    let low = low_mib * MIB;
    let mut v = vec![
        FirmwareRange::new(0, 0x9fc00, Usable),
        FirmwareRange::new(0x9fc00, 0xa0000, Reserved),
        FirmwareRange::new(0xf0000, 0x10_0000, Reserved),
        FirmwareRange::new(0x10_0000, low - 0x2_0000, Usable),
        FirmwareRange::new(low - 0x2_0000, low, Reserved),
        FirmwareRange::new(0xfec0_0000, 0xfec0_1000, Reserved),
        FirmwareRange::new(0xfffc_0000, 4 * GIB, Reserved),
    ];
    if high_mib > 0 {
        v.push(FirmwareRange::new(
            4 * GIB,
            4 * GIB + high_mib * MIB,
            Usable,
        ));
    }
    v
}

/// A machine with that map, `cmdline` parsed for `kernelcore=`/`movablecore=`, 2 CPUs.
fn zoned_machine(low_mib: u64, high_mib: u64, cmdline: &str) -> SimAllocator {
    let mut params = ModelParams::default();
    params.parse_cmdline(cmdline);
    assert!(params.errors.iter().all(|e| e.is_none()), "{cmdline}");
    SimAllocator::build(&split_e820(low_mib, high_mib), &[], &params, 2)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The zone of frame `pfn`.
fn zone_at(a: &SimAllocator, pfn: u64) -> ZoneType {
    a.pfn_to_page(pfn)
        .and_then(|p| p.zone_type())
        .unwrap_or_else(|| panic!("pfn {pfn:#x} has no zone"))
}

/// Free buddy blocks (pfn, order) of zone `zt` (the caller keeps the machine quiet).
fn zone_free_blocks(a: &SimAllocator, zt: ZoneType) -> Vec<(u64, u32)> {
    free_blocks(a)
        .into_iter()
        .filter(|&(pfn, _)| zone_at(a, pfn) == zt)
        .collect()
}

/// Where zone `zt`'s free memory is: (free pages outside pageblocks holding a page that is
/// allocated and not anon, or reserved; of those, the pages in free blocks of pageblock
/// order or more; all free pages of the zone). Drains the pcp lists first.
fn zone_free_distribution(a: &SimAllocator, zt: ZoneType) -> (u64, u64, u64) {
    a.drain_all_pages();
    let z = a.zone_of(0, zt).expect("zone");
    let pinned = |block: u64| {
        (block..block + PAGEBLOCK_NR_PAGES).any(|pfn| match a.pfn_to_page(pfn) {
            Some(p) => p.is_reserved() || (!p.is_buddy() && p.refcount() > 0 && !p.is_anon()),
            None => true,
        })
    };
    let (mut outside, mut big, mut total) = (0, 0, 0);
    let mut pinned_cache = BTreeMap::new();
    for (pfn, o) in zone_free_blocks(a, zt) {
        assert!(z.zone_spans_pfn(pfn));
        let n = 1u64 << o;
        total += n;
        if o >= PAGEBLOCK_ORDER {
            outside += n;
            big += n;
        } else {
            let block = pfn & !(PAGEBLOCK_NR_PAGES - 1);
            if !*pinned_cache.entry(block).or_insert_with(|| pinned(block)) {
                outside += n;
            }
        }
    }
    (outside, big, total)
}

/// Fill zone `zt` with checksummed anon pages (GFP_HIGHUSER_MOVABLE), and after every
/// `unmovable_every`-th anon page an unmovable GFP_KERNEL page when that lands in the
/// zone too (0: none), until an anon page lands outside the zone (it is zapped again) or
/// memory runs out. Every anon page kept is in `zt`.
fn fill_zone(a: &SimAllocator, zt: ZoneType, unmovable_every: u64) -> Scenario {
    let mut sc = Scenario {
        regions: Vec::new(),
        unmovable: Vec::new(),
    };
    let new_region = || {
        let id = a.anon_region_create(REGION_PAGES).expect("region");
        let (start, _) = a.anon_region_span(id).unwrap();
        Region {
            id,
            start,
            pages: vec![None; REGION_PAGES as usize],
        }
    };
    let mut r = new_region();
    let mut i = 0u64;
    let mut n = 0u64;
    loop {
        if i == REGION_PAGES {
            sc.regions.push(std::mem::replace(&mut r, new_region()));
            i = 0;
        }
        if !populate(a, &mut r, i) {
            break;
        }
        let pfn = a.anon_region_pfn(r.id, i).unwrap().expect("just mapped");
        if zone_at(a, pfn) != zt {
            assert!(a.anon_region_zap(r.id, i).unwrap());
            r.pages[i as usize] = None;
            break;
        }
        i += 1;
        n += 1;
        if unmovable_every != 0 && n.is_multiple_of(unmovable_every) {
            let Some(p) = a.alloc_page(GFP_KERNEL | Gfp::NOWARN) else {
                break;
            };
            let pfn = a.page_to_pfn(p);
            sc.unmovable.push((pfn, 0));
            if zone_at(a, pfn) != zt {
                break;
            }
        }
    }
    sc.regions.push(r);
    a.drain_all_pages();
    sc
}

/// Take every free block of pageblock order or more left in zone `zt` as an allocation
/// nobody can move, so that only compaction can make one. The gfp lists say how to ask
/// for that zone first (no direct reclaim: no compaction either).
fn hold_free_pageblocks(a: &SimAllocator, zt: ZoneType, sc: &mut Scenario) {
    let gfps = [
        GFP_ATOMIC,
        (GFP_HIGHUSER_MOVABLE | Gfp::HIGH).difference(Gfp::DIRECT_RECLAIM),
    ];
    for order in (PAGEBLOCK_ORDER..=MAX_PAGE_ORDER).rev() {
        for gfp in gfps {
            while zone_free_blocks(a, zt).iter().any(|&(_, o)| o >= order) {
                let Some(p) = a.alloc_pages(gfp | Gfp::NOWARN, order) else {
                    break;
                };
                let pfn = a.page_to_pfn(p);
                if zone_at(a, pfn) != zt {
                    a.free_pages(p, order).unwrap();
                    break;
                }
                sc.unmovable.push((pfn, order));
            }
        }
    }
    a.drain_all_pages();
}

/// Every mapped page of `sc` by (region slot, index): its frame.
fn frames(a: &SimAllocator, sc: &Scenario) -> BTreeMap<(u16, u64), u64> {
    let mut m = BTreeMap::new();
    for r in &sc.regions {
        for (i, v) in r.pages.iter().enumerate() {
            if v.is_some() {
                let pfn = a.anon_region_pfn(r.id, i as u64).unwrap().expect("mapped");
                m.insert((r.id.slot, i as u64), pfn);
            }
        }
    }
    m
}

/// Every mapped page: its frame is in `zt` (and above 4 GiB if `high`), the PTE names it,
/// its metadata and reverse map point back to its region, index and address; then every
/// checksum and each region's rmap (`Scenario::verify_all`).
fn verify_in_zone(a: &SimAllocator, sc: &Scenario, zt: ZoneType, high: bool) {
    for r in &sc.regions {
        for (i, v) in r.pages.iter().enumerate() {
            if v.is_none() {
                continue;
            }
            let va = r.va(i as u64);
            let pfn = a.anon_region_pfn(r.id, i as u64).unwrap().expect("mapped");
            assert_eq!(
                zone_at(a, pfn),
                zt,
                "region {} index {i}: pfn {pfn:#x}",
                r.id.slot
            );
            assert!(!high || pfn >= PFN_4G, "pfn {pfn:#x} below 4 GiB");
            assert_eq!(
                a.platform().pte_read(va),
                Pte::Present(pfn),
                "PTE of {va:#x}"
            );
            let p = a.pfn_to_page(pfn).unwrap();
            assert!(p.is_anon() && !p.is_isolated() && !p.is_locked());
            assert_eq!((p.refcount(), p.mapcount()), (1, 1), "pfn {pfn:#x}");
            assert_eq!(p.index(), i as u64);
            assert_eq!(a.page_anon_region(p), Some(r.id));
            assert_eq!(a.page_anon_address(p), Some(va));
        }
    }
    sc.verify_all(a);
}

/// Free block lists of every zone other than `zt`.
fn other_zones_free(a: &SimAllocator, zt: ZoneType) -> Vec<(u64, u32)> {
    a.drain_all_pages();
    free_blocks(a)
        .into_iter()
        .filter(|&(pfn, _)| zone_at(a, pfn) != zt)
        .collect()
}

/// After a compaction: every page still in `zt`, `moved` of them on new frames (as many
/// as were migrated), and the zone's free memory outside pinned pageblocks at least 90%
/// in order-9+ blocks.
fn assert_compacted(
    a: &SimAllocator,
    sc: &Scenario,
    zt: ZoneType,
    high: bool,
    before: &BTreeMap<(u16, u64), u64>,
    migrated: u64,
    what: &str,
) {
    let after = frames(a, sc);
    let moved = before
        .iter()
        .filter(|(k, pfn)| after.get(k) != Some(pfn))
        .count() as u64;
    let (outside, big, free) = zone_free_distribution(a, zt);
    eprintln!(
        "{what} {}: {} anon pages, {moved} on new frames, pgmigrate_success +{migrated}; zone free {free}, outside pinned {outside}, in order-9+ {big} ({:.1}%)",
        zt.name(),
        after.len(),
        100.0 * big as f64 / outside.max(1) as f64
    );
    assert_eq!(after.len(), before.len());
    assert!(moved > 0, "{what}: no page of {} moved", zt.name());
    assert_eq!(moved, migrated, "{what}: pages on new frames vs migrations");
    verify_in_zone(a, sc, zt, high);
    assert!(big > 0, "{what}: no order-9 block free in {}", zt.name());
    assert!(
        big * 10 >= outside * 9,
        "{what}: only {big} of {outside} free pages of {} outside pinned blocks are in order-9+ blocks",
        zt.name()
    );
    check(a);
}

/// The whole story on zone `zt` of machine `a`.
fn compact_zone_story(a: &SimAllocator, zt: ZoneType, high: bool, unmovable_every: u64) {
    let z = a.zone_of(0, zt).expect("zone");
    let managed = z.managed_pages();
    let mut sc = fill_zone(a, zt, unmovable_every);
    let anon = sc.anon_pages();
    let unmovable_in_zone = sc
        .unmovable
        .iter()
        .filter(|&&(pfn, _)| zone_at(a, pfn) == zt)
        .count() as u64;
    eprintln!(
        "{}: [{:#x}, {:#x}) managed {managed}: {anon} anon pages, {unmovable_in_zone} unmovable",
        zt.name(),
        z.zone_start_pfn(),
        z.zone_end_pfn()
    );
    assert!(
        (anon + unmovable_in_zone) * 10 >= managed * 8,
        "filled too little of {}",
        zt.name()
    );
    assert_eq!(unmovable_in_zone > 0, unmovable_every > 0);
    verify_in_zone(a, &sc, zt, high);

    let mut rng = Rng::new(zt.index() as u64 + 7);
    sc.zap_scattered(a, &mut rng, 50);
    hold_free_pageblocks(a, zt, &mut sc);
    let (outside0, big0, free0) = zone_free_distribution(a, zt);
    assert_eq!(big0, 0, "a free pageblock left in {}", zt.name());
    assert!(
        outside0 * 4 >= anon,
        "zapping freed too little ({outside0} of {anon})"
    );
    check(a);

    // Compact that zone only: nothing moves in or out of the others.
    let others0 = other_zones_free(a, zt);
    let before = frames(a, &sc);
    let ok0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let stats = a.compact_node_zone(0, zt).expect("populated zone");
    let migrated = a.vm_event(VmEvent::PgmigrateSuccess) - ok0;
    eprintln!("compact_node_zone({}): {stats:?}", zt.name());
    assert_eq!(stats.migrated, migrated);
    assert_eq!(
        other_zones_free(a, zt),
        others0,
        "another zone's free blocks changed"
    );
    assert_eq!(
        zone_free_distribution(a, zt).2,
        free0,
        "free pages of the zone changed"
    );
    assert_compacted(a, &sc, zt, high, &before, migrated, "compact_node_zone");

    // The order-9 block is usable: a movable request without compaction gets one here.
    let nodirect = (GFP_HIGHUSER_MOVABLE | Gfp::NOWARN).difference(Gfp::DIRECT_RECLAIM);
    let p = a
        .alloc_pages(nodirect, PAGEBLOCK_ORDER)
        .expect("order-9 after compaction");
    assert_eq!(zone_at(a, a.page_to_pfn(p)), zt);
    a.free_pages(p, PAGEBLOCK_ORDER).unwrap();

    // Fragment what is left and compact everything (compact_memory).
    sc.zap_scattered(a, &mut rng, 50);
    hold_free_pageblocks(a, zt, &mut sc);
    assert_eq!(zone_free_distribution(a, zt).1, 0);
    let before = frames(a, &sc);
    let ok0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let stats = a.compact_memory();
    let migrated = a.vm_event(VmEvent::PgmigrateSuccess) - ok0;
    eprintln!("compact_memory: {stats:?}");
    assert_compacted(a, &sc, zt, high, &before, migrated, "compact_memory");

    sc.teardown(a);
    check(a);
}

/// 256 MiB below 4 GiB, 512 MiB above: ZONE_NORMAL is all above 4 GiB.
#[test]
fn compact_zone_normal_above_4g() {
    let a = zoned_machine(256, 512, "");
    assert!(
        a.zone_of(0, ZoneType::Movable)
            .is_none_or(|z| !z.managed_zone())
    );
    assert_eq!(
        a.compact_node_zone(0, ZoneType::Movable),
        None,
        "no Movable zone here"
    );
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    assert_eq!(z.zone_start_pfn(), PFN_4G);
    compact_zone_story(&a, ZoneType::Normal, true, 10);
}

/// The same map with `movablecore=256M`: ZONE_MOVABLE is the top 256 MiB, above 4 GiB.
#[test]
fn compact_zone_movable_above_4g() {
    let a = zoned_machine(256, 512, "movablecore=256M");
    let z = a.zone_of(0, ZoneType::Movable).expect("Movable");
    assert!(z.managed_zone() && z.zone_start_pfn() > PFN_4G);
    assert!(a.zone_of(0, ZoneType::Normal).unwrap().managed_zone());
    compact_zone_story(&a, ZoneType::Movable, true, 0);
}

/// 512 MiB below 4 GiB only, `movablecore=128M`: ZONE_MOVABLE carved from DMA32, as in
/// the QEMU `movablecore=` configuration.
#[test]
fn compact_zone_movable_below_4g() {
    let a = zoned_machine(512, 0, "movablecore=128M");
    let z = a.zone_of(0, ZoneType::Movable).expect("Movable");
    assert!(z.managed_zone() && z.zone_end_pfn() <= PFN_4G);
    compact_zone_story(&a, ZoneType::Movable, false, 0);
}

/// `migrate_pages` of `n` pages of zone `zt` to targets in the same zone.
fn migrate_within_zone(a: &SimAllocator, zt: ZoneType, n: u64) {
    let mut sc = fill_zone_pages(a, zt, n);
    let free0 = {
        a.drain_all_pages();
        a.nr_free_pages()
    };
    let before = frames(a, &sc);
    let r = &sc.regions[0];
    let mut list = PageList::new();
    for i in 0..n {
        let pfn = a.anon_region_pfn(r.id, i).unwrap().unwrap();
        let p = a.pfn_to_page(pfn).unwrap();
        assert!(a.isolate_migratepage(p, MigrateMode::Sync), "isolate {i}");
        // SAFETY: just isolated: its list links are ours; it lives in the memmap.
        unsafe { list.push_back(p) };
    }
    let outside = Cell::new(0u64);
    let ok0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let res = a.migrate_pages(
        &mut list,
        &mut |_src: &Page| {
            let p = a.alloc_page(GFP_HIGHUSER_MOVABLE)?;
            if zone_at(a, a.page_to_pfn(p)) != zt {
                outside.set(outside.get() + 1);
            }
            Some(p)
        },
        &mut |p: &Page| a.free_pages(p, 0).unwrap(),
        MigrateMode::Sync,
        MigrateReason::Syscall,
    );
    assert_eq!(res, Ok(0));
    assert!(list.is_empty());
    assert_eq!(outside.get(), 0, "targets outside {}", zt.name());
    assert_eq!(a.vm_event(VmEvent::PgmigrateSuccess) - ok0, n);
    let after = frames(a, &sc);
    for (k, old) in &before {
        assert_ne!(after[k], *old, "{k:?} did not move");
    }
    let high = a.zone_of(0, zt).unwrap().zone_start_pfn() >= PFN_4G;
    verify_in_zone(a, &sc, zt, high);
    a.drain_all_pages();
    assert_eq!(a.nr_free_pages(), free0, "as many pages free as before");
    // And the pages keep working through their addresses at their new frames.
    let r = &mut sc.regions[0];
    for i in 0..n {
        stamp(a, r.va(i), r.id.slot as u64, i, 1);
        r.pages[i as usize] = Some(1);
    }
    sc.verify_all(a);
    check(a);
    sc.teardown(a);
    check(a);
}

/// One region of `n` checksummed anon pages, every one of them in zone `zt`.
fn fill_zone_pages(a: &SimAllocator, zt: ZoneType, n: u64) -> Scenario {
    let id = a.anon_region_create(n).expect("region");
    let (start, _) = a.anon_region_span(id).unwrap();
    let mut r = Region {
        id,
        start,
        pages: vec![None; n as usize],
    };
    for i in 0..n {
        assert!(populate(a, &mut r, i), "out of memory");
        let pfn = a.anon_region_pfn(id, i).unwrap().unwrap();
        assert_eq!(zone_at(a, pfn), zt, "index {i}: pfn {pfn:#x}");
    }
    Scenario {
        regions: vec![r],
        unmovable: Vec::new(),
    }
}

#[test]
fn migrate_pages_within_zone_normal() {
    let a = zoned_machine(256, 512, "");
    migrate_within_zone(&a, ZoneType::Normal, 1024);
}

#[test]
fn migrate_pages_within_zone_movable() {
    let a = zoned_machine(256, 512, "movablecore=256M");
    migrate_within_zone(&a, ZoneType::Movable, 1024);
    let a = zoned_machine(512, 0, "movablecore=128M");
    migrate_within_zone(&a, ZoneType::Movable, 1024);
}
