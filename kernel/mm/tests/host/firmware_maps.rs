//! Firmware maps through the whole memory model: the cases where Linux's e820 handling and
//! ours used to differ (issue 13), each on a short map shaped like a real machine's.

use crate::common;

use zonebuddy::model::memmap::{
    BIOS_BEGIN, FirmwareRange, MAX_MAP_ENTRIES, MapAnomaly, RangeKind::*,
};
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{PAGE_SIZE, ZoneType};
use zonebuddy::port::sim::{SimMachine, qemu_e820};

const MIB: u64 = 1 << 20;

fn build(map: &[FirmwareRange], params: &ModelParams) -> SimMachine {
    SimMachine::build(map, &[], params, 1).unwrap_or_else(|e| panic!("{e}"))
}

/// A hypervisor's map that calls the whole first MiB usable (one real map had the SMP
/// trampoline placed at 0xff000, in the BIOS ROM window). With the x86_64 default the
/// legacy BIOS area is not RAM, so the trampoline lands in conventional memory, and the
/// zone counts are Linux's: frame 0 and 0xa0000-0xfffff are not present.
#[test]
fn trampoline_lands_below_the_legacy_bios_area() {
    let map = [
        FirmwareRange::new(0, 0x100000, Usable),
        FirmwareRange::new(0x100000, 64 * MIB, Usable),
        FirmwareRange::new(0xfeff_c000, 0xff00_0000, Reserved),
    ];
    let with_trampoline = ModelParams {
        reserve_trampoline: true,
        ..ModelParams::default()
    };
    let m = build(&map, &with_trampoline);
    common::check_model(&m.model, &map, &[], &[], None, None);
    let t = m.model.trampoline_phys().expect("a trampoline page");
    assert!(t < BIOS_BEGIN, "trampoline at {t:#x}");
    let dma = m.model.zone(0, ZoneType::Dma).unwrap();
    assert_eq!(dma.zone_start_pfn(), 1);
    assert_eq!(dma.spanned_pages(), 4095);
    assert_eq!(dma.present_pages(), 4095 - 0x60);
    assert!(m.model.pfn_to_page(0xff).unwrap().is_reserved());

    // The rule is a parameter: without it (an architecture with no legacy BIOS area) the
    // firmware's word stands, and the top page below 1 MiB is taken.
    let params = ModelParams {
        trim_bios_range: false,
        ..with_trampoline
    };
    let m = build(&map, &params);
    assert_eq!(m.model.trampoline_phys(), Some(0xff000));
    let dma = m.model.zone(0, ZoneType::Dma).unwrap();
    assert_eq!((dma.zone_start_pfn(), dma.present_pages()), (0, 4096));
}

/// QEMU's own BIOS map: DMA present is 3998 pages, as Linux reports for this machine
/// (pfns 1..0x9f and 0x100..0x1000), and the only anomaly is RAM ending mid-page.
#[test]
fn qemu_present_pages_are_linux_figures() {
    let map = qemu_e820(128 * MIB);
    let m = build(&map, &ModelParams::default());
    let dma = m.model.zone(0, ZoneType::Dma).unwrap();
    assert_eq!(
        (
            dma.zone_start_pfn(),
            dma.spanned_pages(),
            dma.present_pages()
        ),
        (1, 4095, 3998)
    );
    let w = m.model.memory_map().warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].anomaly, MapAnomaly::Trimmed);
}

/// A map with more reservations between RAM than the sanitised map can hold no longer
/// stops the boot: the model is built on the lowest ranges and the caller can read why
/// the rest is missing.
#[test]
fn oversized_map_builds_a_model_and_says_what_was_dropped() {
    let mut map = vec![FirmwareRange::new(0x1000, 0x9f000, Usable)];
    let base = 16 * MIB;
    // RAM pieces large enough for a section's memmap (2 MiB).
    const PITCH: u64 = 4 * MIB;
    for i in 0..MAX_MAP_ENTRIES as u64 {
        map.push(FirmwareRange::new(
            base + i * PITCH,
            base + (i + 1) * PITCH - PAGE_SIZE,
            Usable,
        ));
        map.push(FirmwareRange::new(
            base + (i + 1) * PITCH - PAGE_SIZE,
            base + (i + 1) * PITCH,
            AcpiReclaimable,
        ));
    }
    let m = build(&map, &ModelParams::default());
    let mm = m.model.memory_map();
    assert_eq!(mm.entries().len(), MAX_MAP_ENTRIES);
    let w = mm.warnings().last().unwrap();
    // 1 + 512 input ranges, 256 kept: 257 dropped, 128 of them RAM.
    assert_eq!(
        w.anomaly,
        MapAnomaly::MapTruncated {
            dropped: 257,
            dropped_ram: 128 * (PITCH - PAGE_SIZE)
        }
    );
    assert!(format!("{w}").contains("the 257 highest"), "{w}");
    assert_eq!(m.model.ram_bytes(), mm.ram_bytes());
}
