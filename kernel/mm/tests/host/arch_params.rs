//! The architecture facts as parameters (`ModelParams::arch`): a model built for another
//! architecture's layout, every invalid value refused with its own error, and x86's
//! reserved first MiB (present, never handed out) against the layout without it.

use crate::common;

use zonebuddy::model::arch::{ArchError, ArchParams};
use zonebuddy::model::memmap::{FirmwareRange, MapAnomaly, RangeKind::*};
use zonebuddy::model::mm_init::{MemoryModel, ModelError, ModelParams};
use zonebuddy::model::mmzone::{PAGE_SHIFT, ZoneType};
use zonebuddy::page_alloc::gfp::{GFP_KERNEL, Gfp};
use zonebuddy::port::sim::{SimAllocator, SimMachine, SimPlatform, qemu_e820};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// The pfn of physical address `pa`.
const fn pfn(pa: u64) -> u64 {
    pa >> PAGE_SHIFT
}

/// An aarch64-like layout: 1 GiB sections, 40-bit physical addresses, no ZONE_DMA, DMA32
/// below 2 GiB, nothing reserved low, no PC BIOS rules.
fn aarch64_like() -> ModelParams<'static> {
    ModelParams {
        trim_bios_range: false,
        arch: ArchParams {
            section_size_bits: 30,
            max_physmem_bits: 40,
            dma_limit: None,
            dma32_limit: Some(2 * GIB),
            reserve_low: 0,
        },
        ..ModelParams::default()
    }
}

/// RAM from 1 GiB (as on QEMU's `virt` board), a second bank at 2 GiB, and a bank that
/// crosses the 40-bit limit.
fn aarch64_like_map() -> [FirmwareRange; 3] {
    [
        FirmwareRange::new(GIB, GIB + 512 * MIB, Usable),
        FirmwareRange::new(2 * GIB, 2 * GIB + 256 * MIB, Usable),
        FirmwareRange::new(TIB - 32 * MIB, TIB + 32 * MIB, Usable),
    ]
}

#[test]
fn aarch64_like_layout_gives_its_sections_and_zones() {
    let map = aarch64_like_map();
    let params = aarch64_like();
    let m = SimMachine::build(&map, &[], &params, 1).unwrap_or_else(|e| panic!("{e}"));
    let model = &m.model;
    assert_eq!(model.arch(), &params.arch);

    // Sections of 1 GiB: the banks are in sections 1, 2 and 1023.
    let sparse = model.sparse();
    assert_eq!(sparse.section_size_bits(), 30);
    assert_eq!(sparse.pages_per_section(), 1 << 18);
    assert_eq!(sparse.present_sections().collect::<Vec<_>>(), [1, 2, 1023]);
    assert_eq!(sparse.stats().memmap_bytes, 3 * (1 << 18) * 64);
    // 512 pageblocks a section, 8 bits each.
    assert_eq!(sparse.stats().usemap_bytes, 3 * 512);
    let top = (TIB >> PAGE_SHIFT) - 1;
    let page = model.pfn_to_page(top).expect("last pfn below the limit");
    assert_eq!(page.section_nr(), 1023);
    assert_eq!(model.page_to_pfn(page), top);
    assert!(!model.pfn_valid(top + 1));
    assert_eq!(sparse.pfn_to_section_nr(pfn(2 * GIB)), 2);
    assert_eq!(sparse.section_nr_to_pfn(3), pfn(3 * GIB));

    // The bank crossing 1 TiB is clipped at the 40-bit limit, and the warning says so.
    let w = model.memory_map().warnings();
    assert!(
        w.iter().any(|w| w.anomaly
            == MapAnomaly::Clipped {
                max_physmem_bits: 40
            }),
        "{w:?}"
    );
    assert_eq!(model.ram_bytes(), 512 * MIB + 256 * MIB + 32 * MIB);

    // Zones: DMA absent, DMA32 is the first bank (below 2 GiB), Normal the rest.
    let node = model.node(0).unwrap();
    let dma = node.zone(ZoneType::Dma);
    assert_eq!((dma.spanned_pages(), dma.present_pages()), (0, 0));
    let dma32 = node.zone(ZoneType::Dma32);
    assert_eq!(
        (
            dma32.zone_start_pfn(),
            dma32.zone_end_pfn(),
            dma32.present_pages()
        ),
        (GIB >> PAGE_SHIFT, pfn(2 * GIB), pfn(512 * MIB))
    );
    let normal = node.zone(ZoneType::Normal);
    assert_eq!(
        (
            normal.zone_start_pfn(),
            normal.zone_end_pfn(),
            normal.present_pages()
        ),
        (pfn(2 * GIB), TIB >> PAGE_SHIFT, pfn(288 * MIB))
    );
    // No reserved low range: only memblock's own allocations are not managed.
    let c = common::check_model(model, &map, &[], &[], None, None);
    assert_eq!(c.sections, 3);
    let mut report = String::new();
    std::fmt::write(&mut report, format_args!("{}", model.boot_report())).unwrap();
    assert!(
        report.contains("sparse: 3 present sections of 1024 MiB"),
        "{report}"
    );
    assert!(report.contains("  DMA      empty"), "{report}");
}

#[test]
fn aarch64_like_layout_runs_the_allocator() {
    let map = aarch64_like_map();
    let a = SimAllocator::build(&map, &[], &aarch64_like(), 2).unwrap_or_else(|e| panic!("{e}"));
    let dma32_end = pfn(2 * GIB);
    let mut held = Vec::new();
    for order in [0, 1, 3, 9, 10] {
        for gfp in [
            GFP_KERNEL,
            GFP_KERNEL | Gfp::DMA32,
            GFP_KERNEL | Gfp::MOVABLE,
        ] {
            let p = a.alloc_pages(gfp, order).expect("memory for every order");
            let pfn = a.page_to_pfn(p);
            assert_eq!(pfn & ((1 << order) - 1), 0);
            // A block never crosses a section.
            assert_eq!(pfn >> 18, (pfn + (1 << order) - 1) >> 18);
            if gfp.contains(Gfp::DMA32) {
                assert!(pfn + (1 << order) <= dma32_end, "DMA32 block at {pfn:#x}");
            } else {
                assert!(pfn >= dma32_end, "{gfp} block at {pfn:#x} not in Normal");
            }
            held.push((p, order));
        }
    }
    // No ZONE_DMA: a GFP_DMA request finds no memory.
    assert!(
        a.alloc_pages(GFP_KERNEL | Gfp::DMA | Gfp::NOWARN, 0)
            .is_none()
    );
    zonebuddy::check(&a).unwrap_or_else(|v| panic!("{v}"));
    for (p, order) in held {
        a.free_pages(p, order).unwrap();
    }
    a.drain_all_pages();
    zonebuddy::check(&a).unwrap_or_else(|v| panic!("{v}"));
    // Everything came back: the free count is the hand-off again.
    assert_eq!(a.nr_free_pages(), a.model().handoff_pages());
}

/// Each bad value is refused before anything is built, with an error naming it.
#[test]
fn invalid_arch_params_are_refused() {
    let map = qemu_e820(64 * MIB);
    let p = SimPlatform::for_map(&map, &[], 1).unwrap();
    let x86 = ArchParams::X86_64;
    let cases: [(ArchParams, ArchError, &str); 9] = [
        (
            ArchParams {
                section_size_bits: 21,
                ..x86
            },
            ArchError::SectionTooSmall {
                section_size_bits: 21,
            },
            "section_size_bits 21",
        ),
        (
            ArchParams {
                section_size_bits: 47,
                ..x86
            },
            ArchError::SectionLargerThanPhysmem {
                section_size_bits: 47,
                max_physmem_bits: 46,
            },
            "section_size_bits 47 is above max_physmem_bits 46",
        ),
        (
            ArchParams {
                max_physmem_bits: 53,
                ..x86
            },
            ArchError::PhysmemBitsTooLarge {
                max_physmem_bits: 53,
            },
            "max_physmem_bits 53",
        ),
        (
            // 52 - 26 = 26 bits of section number; struct page holds 25.
            ArchParams {
                max_physmem_bits: 52,
                section_size_bits: 26,
                ..x86
            },
            ArchError::TooManySections {
                section_size_bits: 26,
                max_physmem_bits: 52,
            },
            "needs 26-bit section numbers",
        ),
        (
            ArchParams {
                dma_limit: Some(16 * MIB + 0x800),
                ..x86
            },
            ArchError::Unaligned {
                what: "dma_limit",
                value: 16 * MIB + 0x800,
            },
            "dma_limit 0x1000800",
        ),
        (
            ArchParams {
                dma32_limit: Some(4 * GIB - 1),
                ..x86
            },
            ArchError::Unaligned {
                what: "dma32_limit",
                value: 4 * GIB - 1,
            },
            "dma32_limit 0xffffffff",
        ),
        (
            ArchParams {
                dma_limit: Some(4 * GIB),
                dma32_limit: Some(2 * GIB),
                ..x86
            },
            ArchError::DmaAboveDma32 {
                dma_limit: 4 * GIB,
                dma32_limit: 2 * GIB,
            },
            "dma_limit 0x100000000 is above dma32_limit 0x80000000",
        ),
        (
            ArchParams {
                reserve_low: 0x800,
                ..x86
            },
            ArchError::Unaligned {
                what: "reserve_low",
                value: 0x800,
            },
            "reserve_low 0x800",
        ),
        (
            ArchParams {
                section_size_bits: 0,
                ..x86
            },
            ArchError::SectionTooSmall {
                section_size_bits: 0,
            },
            "below 22",
        ),
    ];
    for (arch, error, text) in cases {
        assert_eq!(arch.validate(), Err(error));
        let params = ModelParams {
            arch,
            ..ModelParams::default()
        };
        let err = MemoryModel::init(&p, &map, &[], &params).err();
        assert_eq!(err, Some(ModelError::Arch(error)), "{arch:?}");
        let msg = err.unwrap().to_string();
        assert!(msg.contains(text), "{msg:?} does not say {text:?}");
    }
    // The bounds themselves are accepted: 52-bit addresses with 128 MiB sections, the
    // smallest section, and a machine without either DMA zone.
    for arch in [
        ArchParams {
            max_physmem_bits: 52,
            ..x86
        },
        ArchParams {
            section_size_bits: 22,
            ..x86
        },
        ArchParams {
            dma_limit: None,
            dma32_limit: None,
            ..x86
        },
    ] {
        assert_eq!(arch.validate(), Ok(()), "{arch:?}");
        let params = ModelParams {
            arch,
            ..ModelParams::default()
        };
        let m = MemoryModel::init(&p, &map, &[], &params).unwrap_or_else(|e| panic!("{e}"));
        common::check_model(&m, &map, &[], &[], None, None);
    }
}

/// Take every page ZONE_DMA has (ignoring watermarks) and return their pfns, then give
/// them back.
fn drain_zone_dma(a: &SimAllocator) -> Vec<u64> {
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::DMA | Gfp::MEMALLOC | Gfp::NOWARN, 0) {
        held.push(p);
    }
    let pfns: Vec<u64> = held.iter().map(|p| a.page_to_pfn(p)).collect();
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    a.drain_all_pages();
    zonebuddy::check(a).unwrap_or_else(|v| panic!("{v}"));
    pfns
}

/// x86_64 default: the first MiB is reserved (Linux's `memblock_reserve(0, SZ_1M)`). On
/// QEMU's map ZONE_DMA keeps its 3998 present pages (pfns 1..0x9f and 0x100..0x1000) and
/// manages 3840, the figure Linux's /proc/zoneinfo shows for this zone; no page below 1
/// MiB is ever handed out.
#[test]
fn reserve_low_keeps_the_first_mib_from_the_buddy_allocator() {
    let map = qemu_e820(64 * MIB);
    // The model at the hand-off, checked against the oracle (which counts the low range
    // as present and reserved).
    let m = SimMachine::build(&map, &[], &ModelParams::default(), 1).unwrap();
    common::check_model(&m.model, &map, &[], &[], None, None);
    drop(m);
    let a = SimAllocator::build(&map, &[], &ModelParams::default(), 1).unwrap();
    let model = a.model();
    assert_eq!(model.arch().reserve_low, MIB);
    let dma = model.zone(0, ZoneType::Dma).unwrap();
    assert_eq!((dma.spanned_pages(), dma.present_pages()), (4095, 3998));
    assert_eq!(dma.managed_pages(), 3840);
    for pfn in 1..0x9f {
        let page = model.pfn_to_page(pfn).unwrap();
        assert!(page.is_reserved(), "pfn {pfn:#x} below 1 MiB not reserved");
        assert_eq!(page.zone_type(), Some(ZoneType::Dma));
    }
    assert!(model.free_pfn_ranges().all(|r| r.start_pfn >= 0x100));

    let pfns = drain_zone_dma(&a);
    assert_eq!(pfns.len(), 3840);
    assert!(pfns.iter().all(|&p| (0x100..0x1000).contains(&p)));
}

/// `reserve_low = 0`: the pages below 1 MiB are managed and handed out like any other.
#[test]
fn without_reserve_low_the_low_pages_are_managed() {
    let map = qemu_e820(64 * MIB);
    let mut params = ModelParams::default();
    params.arch.reserve_low = 0;
    let m = SimMachine::build(&map, &[], &params, 1).unwrap();
    common::check_model(&m.model, &map, &[], &[], None, None);
    drop(m);
    let a = SimAllocator::build(&map, &[], &params, 1).unwrap();
    let dma = a.model().zone(0, ZoneType::Dma).unwrap();
    assert_eq!((dma.present_pages(), dma.managed_pages()), (3998, 3998));
    let pfns = drain_zone_dma(&a);
    assert_eq!(pfns.len(), 3998);
    assert_eq!(pfns.iter().filter(|&&p| p < 0x100).count(), 0x9e);
}

/// The SMP trampoline is opt-in; asked for, it is still placed below 1 MiB (inside the
/// reserved low range, which it does not change) and reported.
#[test]
fn trampoline_is_opt_in_and_may_lie_in_the_reserved_low_range() {
    let map = qemu_e820(64 * MIB);
    let m = SimMachine::build(&map, &[], &ModelParams::default(), 1).unwrap();
    assert_eq!(m.model.trampoline_phys(), None);
    let report = m.model.boot_report().to_string();
    assert!(!report.contains("trampoline"), "{report}");
    let params = ModelParams {
        reserve_trampoline: true,
        ..ModelParams::default()
    };
    let m = SimMachine::build(&map, &[], &params, 1).unwrap();
    let t = m.model.trampoline_phys().expect("a trampoline page");
    assert!(t < 0xa0000 && t != 0, "trampoline at {t:#x}");
    assert!(m.model.pfn_to_page(t >> PAGE_SHIFT).unwrap().is_reserved());
    assert_eq!(
        m.model.zone(0, ZoneType::Dma).unwrap().managed_pages(),
        3840
    );
    common::check_model(&m.model, &map, &[], &[], None, None);
    let report = m.model.boot_report().to_string();
    assert!(
        report.contains(&format!("mm: SMP trampoline page at {t:#x}")),
        "{report}"
    );
}
