//! Scenario tests of the memory model on fixed machines: QEMU-like BIOS and UEFI maps,
//! memory far above 4 GiB, degenerate maps, ZONE_MOVABLE options, NUMA, and the boot report.

use crate::common;

use zonebuddy::model::memmap::{FirmwareRange, MapAnomaly, MapError, RangeKind::*};
use zonebuddy::model::mm_init::{MemoryModel, ModelError, ModelParams};
use zonebuddy::model::mmzone::{MAX_ORDER_NR_PAGES, PAGE_SIZE, PAGES_PER_SECTION, ZoneType};
use zonebuddy::model::node::NumaRange;
use zonebuddy::model::zone::{BadValue, CoreOption, CoreSize, ParamError};
use zonebuddy::port::platform::Platform;
use zonebuddy::port::sim::{SimError, SimMachine, SimPlatform, qemu_e820, uefi_fragmented};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn build(map: &[FirmwareRange], extra: &[(u64, u64)], params: &ModelParams) -> SimMachine {
    SimMachine::build(map, extra, params, 2).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn qemu_bios_machines() {
    for ram in [128 * MIB, 512 * MIB, 3 * GIB, 5 * GIB] {
        let map = qemu_e820(ram);
        let extra = [(0x100000, 0x100000 + 3 * MIB + 77)];
        let m = build(&map, &extra, &ModelParams::default());
        let c = common::check_model(&m.model, &map, &extra, &[], None, None);
        assert!(
            m.model.metadata_permille_percent() <= 1600,
            "{} MiB: overhead {}",
            ram >> 20,
            m.model.metadata_permille_percent()
        );
        assert_eq!(m.model.sparse().stats().memmaps_not_local, 0);
        // The trampoline page is opt-in (ModelParams::reserve_trampoline).
        assert!(m.model.trampoline_phys().is_none());
        assert!(c.zone_present[ZoneType::Dma.index()] > 0);
        assert_eq!(c.zone_present[ZoneType::Normal.index()] > 0, ram > 2 * GIB);
        // The only anomaly of a QEMU map is low RAM ending mid-page.
        let w = m.model.memory_map().warnings();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].anomaly, MapAnomaly::Trimmed);
    }
}

#[test]
fn uefi_fragmented_maps_come_through_cleanly() {
    for seed in [1, 2] {
        let map = uefi_fragmented(GIB + 256 * MIB, seed);
        assert!(
            map.len() > 300,
            "the generator should make a fragmented map"
        );
        let m = build(&map, &[], &ModelParams::default());
        assert!(m.model.memory_map().warnings().is_empty());
        assert!(m.model.memory_map().entries().len() < 200);
        common::check_model(&m.model, &map, &[], &[], None, None);
        assert!(m.model.metadata_permille_percent() <= 1600);
    }
}

#[test]
fn memory_far_above_4g_and_64g() {
    let map = [
        FirmwareRange::new(0x1000, 0x9f000, Usable),
        FirmwareRange::new(0x100000, 256 * MIB, Usable),
        FirmwareRange::new(100 * GIB, 100 * GIB + 200 * MIB, Usable),
        FirmwareRange::new(1024 * GIB - 128 * MIB, 1024 * GIB, Usable),
        FirmwareRange::new(1024 * GIB - 64 * MIB, 1024 * GIB - 60 * MIB, Bootloader),
    ];
    let m = build(&map, &[], &ModelParams::default());
    let c = common::check_model(&m.model, &map, &[], &[], None, None);
    assert_eq!(c.sections, 2 + 2 + 1);
    let sec = |addr: u64| addr / PAGE_SIZE / PAGES_PER_SECTION;
    assert!(m.model.pfn_valid(100 * GIB / PAGE_SIZE));
    assert!(!m.model.pfn_valid(64 * GIB / PAGE_SIZE));
    assert!(!m.model.pfn_valid((sec(100 * GIB) + 2) * PAGES_PER_SECTION));
    // Three distinct roots (sections 0-1, 800-801, 8191): 3 root pages.
    assert_eq!(m.model.sparse().stats().root_bytes, 3 * PAGE_SIZE);
    // As in Linux, ZONE_NORMAL spans from 4 GiB even though its RAM starts at 100 GiB.
    let normal = m.model.zone(0, ZoneType::Normal).unwrap();
    assert_eq!(normal.zone_start_pfn(), 4 * GIB / PAGE_SIZE);
    assert_eq!(normal.present_pages(), (200 * MIB + 128 * MIB) / PAGE_SIZE);
    assert_eq!(normal.zone_end_pfn(), 1024 * GIB / PAGE_SIZE);
}

#[test]
fn physmem_limit_clips() {
    let limit = 1u64 << 46;
    let map = [
        FirmwareRange::new(0, 64 * MIB, Usable),
        FirmwareRange::new(limit - 128 * MIB, limit + GIB, Usable),
        FirmwareRange::new(limit + 2 * GIB, limit + 3 * GIB, Usable),
    ];
    let m = build(&map, &[], &ModelParams::default());
    let anomalies: Vec<_> = m
        .model
        .memory_map()
        .warnings()
        .iter()
        .map(|w| w.anomaly)
        .collect();
    assert!(anomalies.contains(&MapAnomaly::Clipped {
        max_physmem_bits: 46
    }));
    assert!(anomalies.contains(&MapAnomaly::BeyondPhysmem {
        max_physmem_bits: 46
    }));
    assert_eq!(m.model.memory_map().entries().last().unwrap().end, limit);
    common::check_model(&m.model, &map, &[], &[], None, None);
}

#[test]
fn adversarial_hand_written_map() {
    // Unsorted, overlapping, zero-length, inverted, unaligned, a hole inside a section,
    // unknown types and bad RAM.
    let map = [
        FirmwareRange::new(300 * MIB, 600 * MIB, Usable),
        FirmwareRange::new(0x2000, 0x2000, Usable),
        FirmwareRange::new(0x1000 + 17, 200 * MIB - 5, Usable),
        FirmwareRange::new(150 * MIB, 151 * MIB, Unusable),
        FirmwareRange::new(150 * MIB + 4096, 150 * MIB + 8192, Usable),
        FirmwareRange::new(400 * MIB, 300 * MIB, Reserved),
        FirmwareRange::new(500 * MIB + 3, 500 * MIB + 9000, Unknown(20)),
        FirmwareRange::new(199 * MIB, 301 * MIB, Usable),
        FirmwareRange::new(250 * MIB, 260 * MIB, AcpiNvs),
    ];
    let m = build(&map, &[], &ModelParams::default());
    let w = m.model.memory_map().warnings();
    let has = |a: MapAnomaly| w.iter().filter(|x| x.anomaly == a).count();
    assert_eq!(has(MapAnomaly::Empty), 2);
    assert_eq!(has(MapAnomaly::Overridden { by: Unusable }), 2);
    // [0x1011, ..) merged with its overlapping usable neighbour, and the usable ranges on
    // both sides of the unaligned Unknown(20) range.
    assert_eq!(has(MapAnomaly::Trimmed), 3);
    common::check_model(&m.model, &map, &[], &[], None, None);
    let entries = m.model.memory_map().entries();
    assert!(entries.windows(2).all(|p| p[0].end <= p[1].start));
    assert!(
        entries
            .windows(2)
            .all(|p| p[0].end < p[1].start || p[0].kind != p[1].kind)
    );
}

#[test]
fn no_usable_ram_is_a_clear_error() {
    let p = SimPlatform::new(0, 16 * MIB, 1).unwrap();
    for map in [
        vec![],
        vec![FirmwareRange::new(0, 16 * MIB, Reserved)],
        vec![FirmwareRange::new(0, 16 * MIB, Bootloader)],
        vec![FirmwareRange::new(0x1003, 0x1fff, Usable)],
        vec![
            FirmwareRange::new(0, 16 * MIB, Usable),
            FirmwareRange::new(0, 16 * MIB, Unusable),
        ],
    ] {
        let err = MemoryModel::init(&p, &map, &[], &ModelParams::default()).err();
        assert_eq!(err, Some(ModelError::Map(MapError::NoUsableRam)));
        assert!(!format!("{}", err.unwrap()).is_empty());
    }
}

#[test]
fn single_usable_page() {
    // Alone: there is no room for the metadata; a clear error, no panic.
    let map = [FirmwareRange::new(0x5000, 0x6000, Usable)];
    let p = SimPlatform::for_map(&map, &[], 1).unwrap();
    let err = MemoryModel::init(&p, map, &[], &ModelParams::default())
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::Sparse(_)), "{err}");
    assert!(format!("{err}").contains("no memory"));

    // Next to real RAM: its section is present, its memmap lives elsewhere on the node
    // (at the node's top, like every memmap by default; asked to live inside its section,
    // it cannot, and that fallback is counted).
    let map = [
        FirmwareRange::new(0, 256 * MIB, Usable),
        FirmwareRange::new(2 * GIB + 0x5000, 2 * GIB + 0x6000, Usable),
    ];
    let in_section = ModelParams {
        memmap_on_memory: true,
        ..ModelParams::default()
    };
    let m = build(&map, &[], &in_section);
    assert_eq!(m.model.sparse().stats().memmaps_not_local, 1);
    let m = build(&map, &[], &ModelParams::default());
    assert_eq!(m.model.sparse().stats().memmaps_not_local, 0);
    common::check_model(&m.model, &map, &[], &[], None, None);
    let pfn = (2 * GIB + 0x5000) / PAGE_SIZE;
    assert!(m.model.pfn_valid(pfn));
    assert!(m.model.pfn_to_page(pfn + 1).unwrap().is_reserved());
    assert_eq!(
        m.model.zone(0, ZoneType::Dma32).unwrap().zone_end_pfn(),
        pfn + 1
    );
}

#[test]
fn bad_reservation_and_numa_inputs_are_errors() {
    let map = qemu_e820(128 * MIB);
    let p = SimPlatform::for_map(&map, &[], 1).unwrap();
    let err = MemoryModel::init(&p, &map, &[(0x5000, 0x4000)], &ModelParams::default()).err();
    assert_eq!(
        err,
        Some(ModelError::BadReservation {
            start: 0x5000,
            end: 0x4000
        })
    );
    let numa = [NumaRange {
        start: 0,
        end: GIB,
        nid: 99,
    }];
    let params = ModelParams {
        numa: &numa,
        ..ModelParams::default()
    };
    assert!(matches!(
        MemoryModel::init(&p, &map, &[], &params),
        Err(ModelError::BadNumaRange(_))
    ));
}

fn movable(m: &SimMachine) -> u64 {
    m.model.zone(0, ZoneType::Movable).unwrap().present_pages()
}

#[test]
fn kernelcore_and_movablecore_carve_zone_movable() {
    let map = qemu_e820(4 * GIB);
    let total = common::ram_intervals(&map)
        .iter()
        .map(|r| r.1 - r.0)
        .sum::<u64>();
    let cases: [(&str, &str); 6] = [
        ("kernelcore=1G", ""),
        ("kernelcore=25%", ""),
        ("movablecore=512M", ""),
        ("movablecore=30%", ""),
        ("kernelcore=3G", "movablecore=2G"),
        ("kernelcore=1G", "movablecore=512M"),
    ];
    for (a, b) in cases {
        let mut params = ModelParams::default();
        params.parse_cmdline(&format!("quiet {a} console=ttyS0 {b}"));
        assert!(params.errors.iter().all(|e| e.is_none()));
        let m = build(&map, &[], &params);
        common::check_model(
            &m.model,
            &map,
            &[],
            &[],
            params.kernelcore,
            params.movablecore,
        );
        let mv = movable(&m);
        assert!(mv > 0, "{a} {b}: no Movable zone");
        let z = m.model.zone(0, ZoneType::Movable).unwrap();
        assert_eq!(z.zone_start_pfn() % MAX_ORDER_NR_PAGES, 0);
        assert_eq!(m.model.zone_movable_pfn(0), z.zone_start_pfn());
        // When movablecore=N decides (kernelcore absent or smaller than what N leaves),
        // ZONE_MOVABLE is N rounded up to MAX_ORDER pages, less what aligning its start up
        // to MAX_ORDER costs. kernelcore=N leaves at least N to the kernel zones.
        if let Some(CoreSize::Bytes(b)) = params.movablecore {
            let want = (b / PAGE_SIZE).next_multiple_of(MAX_ORDER_NR_PAGES);
            let decides = params
                .kernelcore
                .is_none_or(|k| matches!(k, CoreSize::Bytes(kb) if kb / PAGE_SIZE <= total - want));
            if decides {
                assert!(
                    mv <= want && mv + MAX_ORDER_NR_PAGES > want,
                    "{a} {b}: {mv}"
                );
            }
        }
        if let Some(CoreSize::Bytes(k)) = params.kernelcore {
            assert!(total - mv >= k / PAGE_SIZE);
        }
    }
    // Both given: the larger kernel requirement wins (kernelcore=3G beats movablecore=2G).
    let mut p1 = ModelParams::default();
    p1.parse_cmdline("kernelcore=3G movablecore=2G");
    let mut p2 = ModelParams::default();
    p2.parse_cmdline("kernelcore=3G");
    assert_eq!(
        movable(&build(&map, &[], &p1)),
        movable(&build(&map, &[], &p2))
    );
}

#[test]
fn bad_core_values_are_rejected_and_ignored() {
    let map = qemu_e820(GIB);
    let bad: [(&str, ParamError); 6] = [
        ("kernelcore=mirror", ParamError::MirrorUnsupported),
        (
            "kernelcore=banana",
            ParamError::Malformed(CoreOption::Kernelcore, BadValue::new("banana")),
        ),
        ("kernelcore=0", ParamError::Zero(CoreOption::Kernelcore)),
        ("movablecore=0%", ParamError::Zero(CoreOption::Movablecore)),
        (
            "movablecore=120%",
            ParamError::PercentTooLarge(CoreOption::Movablecore, 120),
        ),
        (
            "movablecore=12Q",
            ParamError::Malformed(CoreOption::Movablecore, BadValue::new("12Q")),
        ),
    ];
    for (opt, want) in bad {
        let mut params = ModelParams::default();
        params.parse_cmdline(opt);
        assert!(params.errors.contains(&Some(want)), "{opt}");
        let m = build(&map, &[], &params);
        assert_eq!(movable(&m), 0, "{opt} must be ignored");
        assert_eq!(m.model.param_errors().count(), 1);
        assert!(format!("{}", m.model.param_errors().next().unwrap()).contains("ignored"));
    }
    // Larger than memory: known only at init.
    for opt in [
        "kernelcore=64G",
        "kernelcore=100%",
        "movablecore=2G",
        "movablecore=100%",
    ] {
        let mut params = ModelParams::default();
        params.parse_cmdline(opt);
        assert!(params.errors.iter().all(|e| e.is_none()), "{opt} parses");
        let m = build(&map, &[], &params);
        assert_eq!(movable(&m), 0, "{opt}");
        let errs: Vec<_> = m.model.param_errors().collect();
        assert!(
            matches!(errs[..], [ParamError::TooLarge { .. }]),
            "{opt}: {errs:?}"
        );
    }
}

#[test]
fn two_numa_nodes() {
    let map = qemu_e820(6 * GIB);
    let numa = [
        NumaRange {
            start: 0,
            end: GIB,
            nid: 0,
        },
        NumaRange {
            start: GIB,
            end: 4 * GIB,
            nid: 1,
        },
        NumaRange {
            start: 4 * GIB,
            end: 5 * GIB,
            nid: 0,
        },
        NumaRange {
            start: 5 * GIB,
            end: 8 * GIB,
            nid: 1,
        },
    ];
    let params = ModelParams {
        numa: &numa,
        ..ModelParams::default()
    };
    let m = build(&map, &[], &params);
    common::check_model(&m.model, &map, &[], &numa, None, None);
    let n0 = m.model.node(0).unwrap();
    let n1 = m.model.node(1).unwrap();
    assert!(m.model.node(2).is_none());
    assert_eq!(m.model.nodes().count(), 2);
    // Frame 0 is the BIOS's, not RAM: node 0 starts at pfn 1, as in Linux.
    assert_eq!(n0.node_start_pfn, 1);
    assert_eq!(n1.node_start_pfn, GIB / PAGE_SIZE);
    assert!(n0.zone(ZoneType::Dma).present_pages() > 0);
    assert_eq!(n1.zone(ZoneType::Dma).present_pages(), 0);
    assert!(n1.zone(ZoneType::Normal).present_pages() > 0);
    let pfn = 5 * GIB / PAGE_SIZE + 12345;
    let page = m.model.pfn_to_page(pfn).unwrap();
    assert_eq!(page.nid(), 1);
    // Each memmap lives in memory of its section's node: by default gathered at the top of
    // the node (Linux's boot-time placement: the last sections of each node hold them all),
    // with `memmap_on_memory` inside the section itself.
    let memmap_sections = |m: &zonebuddy::port::sim::SimMachine| {
        let base = m.platform.phys_to_virt(m.platform.phys_base()) as usize;
        let mut homes = Vec::new();
        for s in m.model.sparse().present_sections() {
            let first = m.model.pfn_to_page(s * PAGES_PER_SECTION).unwrap();
            let phys = (first as *const _ as usize - base) as u64 + m.platform.phys_base();
            assert_eq!(
                m.model.memblock().nid_of(phys),
                Some(first.nid()),
                "section {s}"
            );
            homes.push((s, phys / PAGE_SIZE / PAGES_PER_SECTION));
        }
        homes
    };
    for (s, home) in memmap_sections(&m) {
        let node = m.model.pfn_to_page(s * PAGES_PER_SECTION).unwrap().nid();
        let top = m
            .model
            .sparse()
            .present_sections()
            .filter(|&t| m.model.pfn_to_page(t * PAGES_PER_SECTION).unwrap().nid() == node)
            .max()
            .unwrap();
        assert!(
            home + 1 >= top && home <= top,
            "memmap of section {s} is in section {home}, not at node {node}'s top ({top})"
        );
    }
    let params = ModelParams {
        numa: &numa,
        memmap_on_memory: true,
        ..ModelParams::default()
    };
    let m = build(&map, &[], &params);
    for (s, home) in memmap_sections(&m) {
        assert_eq!(home, s, "memmap of section {s} is inside it");
    }
}

#[test]
fn pageblock_flags_through_the_model() {
    use zonebuddy::model::mmzone::{Migratetype, PAGEBLOCK_NR_PAGES};
    use zonebuddy::model::pageblock::*;
    let m = build(&qemu_e820(512 * MIB), &[], &ModelParams::default());
    let sp = m.model.sparse();
    let types = Migratetype::ALL;
    for (i, pfn) in (0..4 * PAGES_PER_SECTION)
        .step_by(PAGEBLOCK_NR_PAGES as usize)
        .enumerate()
    {
        set_pageblock_migratetype(sp, pfn, types[i % types.len()]).unwrap();
        if i % 5 == 0 {
            set_pageblock_skip(sp, pfn + 7).unwrap();
        }
    }
    for (i, pfn) in (0..4 * PAGES_PER_SECTION)
        .step_by(PAGEBLOCK_NR_PAGES as usize)
        .enumerate()
    {
        let last = pfn + PAGEBLOCK_NR_PAGES - 1;
        assert_eq!(
            get_pageblock_migratetype(sp, last),
            Ok(types[i % types.len()])
        );
        assert_eq!(get_pageblock_skip(sp, pfn), Ok(i % 5 == 0));
        clear_pageblock_skip(sp, pfn).unwrap();
        assert_eq!(get_pageblock_skip(sp, pfn), Ok(false));
        assert_eq!(
            get_pageblock_migratetype(sp, pfn),
            Ok(types[i % types.len()])
        );
    }
    let beyond = 4 * PAGES_PER_SECTION;
    assert_eq!(
        get_pageblock_migratetype(sp, beyond),
        Err(InvalidPfn(beyond))
    );
    assert_eq!(set_pageblock_skip(sp, beyond), Err(InvalidPfn(beyond)));
}

#[test]
fn boot_report_has_linux_formats() {
    let map = qemu_e820(128 * MIB);
    let m = build(&map, &[], &ModelParams::default());
    let report = format!("{}", m.model.boot_report());
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines[0],
        "BIOS-e820: [mem 0x0000000000000000-0x0000000000000fff] reserved"
    );
    assert_eq!(
        lines[1],
        "BIOS-e820: [mem 0x0000000000001000-0x000000000009efff] usable"
    );
    assert!(lines.contains(&"BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved"));
    let i = lines
        .iter()
        .position(|l| *l == "Node 0, zone    DMA32")
        .expect("zone header");
    assert_eq!(lines[i + 1], "  pages free     0");
    assert_eq!(lines[i + 2], "        boost    0");
    assert_eq!(lines[i + 3], "        min      0");
    assert_eq!(lines[i + 4], "        low      0");
    assert_eq!(lines[i + 5], "        high     0");
    let z = m.model.zone(0, ZoneType::Dma32).unwrap();
    assert_eq!(
        lines[i + 6],
        format!("        spanned  {}", z.spanned_pages())
    );
    assert_eq!(
        lines[i + 7],
        format!("        present  {}", z.present_pages())
    );
    assert_eq!(
        lines[i + 8],
        format!("        managed  {}", z.managed_pages())
    );
    assert!(lines.contains(&"Node 0, zone      DMA"));
    assert!(lines.contains(&"Node 0, zone  Movable"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sparse: 1 present sections"))
    );
    let pm = m.model.metadata_permille_percent();
    assert!(report.contains(&format!("({}.{:03}% of", pm / 1000, pm % 1000)));
    assert!(report.contains(&format!("mm: {} pages", m.model.handoff_pages())));
}

#[test]
fn model_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MemoryModel>();
    let map = qemu_e820(256 * MIB);
    let m = build(&map, &[], &ModelParams::default());
    let model = &m.model;
    m.platform.run_on_cpus(|cpu| {
        for pfn in (cpu as u64 * 1000)..(cpu as u64 * 1000 + 5000) {
            if let Some(p) = model.pfn_to_page(pfn) {
                assert_eq!(model.page_to_pfn(p), pfn);
            }
        }
    });
}

#[test]
fn sim_rejects_map_without_ram() {
    let r = SimPlatform::for_map(&[FirmwareRange::new(0, MIB, Reserved)], &[], 1);
    assert!(matches!(r, Err(SimError::Map(MapError::NoUsableRam))));
}

#[test]
fn regression_bootloader_only_section_without_room_for_its_memmap() {
    // Found by the property test: bootloader RAM makes a section present, but the only
    // usable run (561 pages) holds one memmap, not two. A clear error, not a panic.
    let map = [
        FirmwareRange::new(3951824896, 3955261440, Unusable),
        FirmwareRange::new(3728429056, 3728531456, Bootloader),
        FirmwareRange::new(14431619, 14540800, Usable),
        FirmwareRange::new(14467072, 14442496, Reserved),
        FirmwareRange::new(34471936, 36769792, Usable),
    ];
    let p = SimPlatform::for_map(&map, &[], 1).unwrap();
    let err = MemoryModel::init(&p, map, &[], &ModelParams::default())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ModelError::Sparse(zonebuddy::model::sparse::SparseError::Memmap { section: 0x1b, .. })
        ),
        "{err}"
    );
}

#[test]
fn model_object_stays_small() {
    // The kernel keeps the model in a static built on the boot stack: keep it modest.
    let size = std::mem::size_of::<MemoryModel>();
    eprintln!("size_of::<MemoryModel>() = {size}");
    assert!(size <= 16 * 1024, "{size}");
}
