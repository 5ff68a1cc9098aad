//! Firmware ranges from bootloader 0.11's memory map (feature `bootloader_api`).
//!
//! The bootloader hands a kernel `MemoryRegions`: usable RAM, its own allocations (page
//! tables, boot info, the kernel image), and every other firmware region as the raw type
//! code it found, an E820 type under BIOS or a UEFI memory type under UEFI. The two
//! numberings differ (UEFI type 7 is conventional RAM, E820 type 7 is persistent memory),
//! so a port that converts them itself has to know which firmware booted it; this module
//! knows both, so a port does not.

#![deny(unsafe_code)]

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};

use crate::model::memmap::{FirmwareRange, RangeKind};

/// zonebuddy's kind for a bootloader region kind.
///
/// BIOS regions carry E820 types ([`RangeKind::from_e820_type`]). UEFI regions that are
/// RAM the kernel may use (conventional, boot-services code and data, loader memory)
/// arrive as `Usable`; of the rest, unusable memory (type 8), ACPI reclaimable (9) and
/// ACPI NVS (10) keep their meaning, and everything else (reserved, runtime services,
/// MMIO, PAL code, persistent memory, types newer than this code) is reserved.
pub fn range_kind(kind: MemoryRegionKind) -> RangeKind {
    match kind {
        MemoryRegionKind::Usable => RangeKind::Usable,
        MemoryRegionKind::Bootloader => RangeKind::Bootloader,
        MemoryRegionKind::UnknownBios(e820_type) => RangeKind::from_e820_type(e820_type),
        MemoryRegionKind::UnknownUefi(8) => RangeKind::Unusable,
        MemoryRegionKind::UnknownUefi(9) => RangeKind::AcpiReclaimable,
        MemoryRegionKind::UnknownUefi(10) => RangeKind::AcpiNvs,
        _ => RangeKind::Reserved,
    }
}

/// One bootloader region as a firmware range.
pub fn firmware_range(region: &MemoryRegion) -> FirmwareRange {
    FirmwareRange::new(region.start, region.end, range_kind(region.kind))
}

/// The bootloader's memory map as firmware ranges, ready for
/// [`PageAllocator::init_in`](crate::PageAllocator::init_in) or
/// [`MemoryModel::init`](crate::MemoryModel::init): an iterator over `regions` that can be
/// cloned (init walks the map several times), so no buffer has to be sized for a map
/// whose length is only known at boot (UEFI firmware reports about a hundred regions on
/// a small machine; the sanitiser merges the adjacent ones).
pub fn firmware_ranges(
    regions: &[MemoryRegion],
) -> impl Iterator<Item = FirmwareRange> + Clone + '_ {
    regions.iter().map(firmware_range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, end: u64, kind: MemoryRegionKind) -> MemoryRegion {
        MemoryRegion { start, end, kind }
    }

    #[test]
    fn bios_and_uefi_kinds_convert() {
        assert_eq!(range_kind(MemoryRegionKind::Usable), RangeKind::Usable);
        assert_eq!(
            range_kind(MemoryRegionKind::Bootloader),
            RangeKind::Bootloader
        );
        assert_eq!(
            range_kind(MemoryRegionKind::UnknownBios(2)),
            RangeKind::Reserved
        );
        assert_eq!(
            range_kind(MemoryRegionKind::UnknownBios(3)),
            RangeKind::AcpiReclaimable
        );
        assert_eq!(
            range_kind(MemoryRegionKind::UnknownBios(4)),
            RangeKind::AcpiNvs
        );
        assert_eq!(
            range_kind(MemoryRegionKind::UnknownBios(5)),
            RangeKind::Unusable
        );
        assert_eq!(
            range_kind(MemoryRegionKind::UnknownUefi(8)),
            RangeKind::Unusable
        );
        assert_eq!(
            range_kind(MemoryRegionKind::UnknownUefi(9)),
            RangeKind::AcpiReclaimable
        );
        assert_eq!(
            range_kind(MemoryRegionKind::UnknownUefi(10)),
            RangeKind::AcpiNvs
        );
        // UEFI runtime services data and MMIO are not RAM the kernel may take; E820 type 7
        // and UEFI type 7 mean different things and must not be confused.
        for t in [0, 5, 6, 11, 12, 14, 0x7000_0000] {
            assert_eq!(
                range_kind(MemoryRegionKind::UnknownUefi(t)),
                RangeKind::Reserved,
                "uefi {t}"
            );
        }
        assert_ne!(
            range_kind(MemoryRegionKind::UnknownBios(1)),
            RangeKind::Reserved
        );
    }

    #[test]
    fn a_map_converts_and_sanitises_without_a_buffer() {
        let regions = [
            region(0x1000, 0x9f000, MemoryRegionKind::Usable),
            region(0x9f000, 0x100000, MemoryRegionKind::UnknownBios(2)),
            region(0x100000, 0x400000, MemoryRegionKind::Bootloader),
            region(0x400000, 0x800000, MemoryRegionKind::UnknownUefi(7)),
        ];
        let got: std::vec::Vec<_> = firmware_ranges(&regions).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[2],
            FirmwareRange::new(0x100000, 0x400000, RangeKind::Bootloader)
        );
        // UEFI type 7 outside `Usable`: the bootloader keeps it for itself.
        assert_eq!(got[3].kind, RangeKind::Reserved);
        let map = crate::model::memmap::MemoryMap::sanitize(firmware_ranges(&regions)).unwrap();
        assert_eq!(
            map.ram().map(|r| r.end - r.start).sum::<u64>(),
            0x9e000 + 0x300000
        );
    }
}
