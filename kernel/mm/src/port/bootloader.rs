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

/// Why [`firmware_ranges`] could not convert a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyRegions {
    /// Regions the bootloader reported.
    pub regions: usize,
    /// Room the caller gave.
    pub capacity: usize,
}

impl core::fmt::Display for TooManyRegions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the bootloader reported {} memory regions, room was given for {}",
            self.regions, self.capacity
        )
    }
}

impl core::error::Error for TooManyRegions {}

/// Convert `regions` into `out` and return the filled part, ready for
/// [`MemoryModel::init`](crate::MemoryModel::init). UEFI firmware reports about a hundred
/// regions on a small machine (many adjacent ones, which the sanitiser merges); a few
/// hundred entries of room is plenty, and the error says how many were needed.
pub fn firmware_ranges<'o>(
    regions: &[MemoryRegion],
    out: &'o mut [FirmwareRange],
) -> Result<&'o [FirmwareRange], TooManyRegions> {
    if regions.len() > out.len() {
        return Err(TooManyRegions {
            regions: regions.len(),
            capacity: out.len(),
        });
    }
    for (slot, r) in out.iter_mut().zip(regions) {
        *slot = firmware_range(r);
    }
    Ok(&out[..regions.len()])
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
    fn a_map_converts_and_too_small_a_buffer_is_a_clear_error() {
        let regions = [
            region(0, 0x9f000, MemoryRegionKind::Usable),
            region(0x9f000, 0x100000, MemoryRegionKind::UnknownBios(2)),
            region(0x100000, 0x400000, MemoryRegionKind::Bootloader),
        ];
        let mut out = [FirmwareRange::new(0, 0, RangeKind::Reserved); 4];
        let got = firmware_ranges(&regions, &mut out).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[2],
            FirmwareRange::new(0x100000, 0x400000, RangeKind::Bootloader)
        );
        let mut small = [FirmwareRange::new(0, 0, RangeKind::Reserved); 2];
        let e = firmware_ranges(&regions, &mut small).unwrap_err();
        assert_eq!(
            e,
            TooManyRegions {
                regions: 3,
                capacity: 2
            }
        );
        assert!(e.to_string().contains("3 memory regions"));
    }
}
