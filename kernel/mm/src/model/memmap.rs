//! The firmware memory map, sanitised (Linux: `arch/x86/kernel/e820.c`).
//!
//! Every later stage of the memory model trusts this map: memblock takes its RAM from it,
//! SPARSEMEM decides which sections are present from it, zone `present_pages` are counted
//! from it. Firmware maps are not trustworthy, so nothing downstream reads the raw input:
//!
//! - BIOS E820 tables arrive unsorted, with overlapping entries of different kinds, with
//!   zero-length entries, and with RAM ending mid-page (`0x9fc00`).
//! - UEFI maps arrive as hundreds of small adjacent descriptors of the same kind.
//! - Anything may claim addresses beyond what 4-level paging can map.
//!
//! [`MemoryMap::sanitize`] turns such input into a sorted list of disjoint ranges in which
//! adjacent ranges of one kind are merged, overlaps are resolved in favour of the kind that
//! says "not free RAM" (so a reservation can never be lost to a usable entry that overlaps
//! it; the order is Linux's: the higher e820 type wins), everything at or above
//! `1 << MAX_PHYSMEM_BITS` is clipped, and RAM ranges are trimmed inward to whole pages (a
//! page that is only partly RAM cannot be handed out). Each anomaly is logged once with
//! `log::warn!` and recorded in the result, so a test (or a curious user) can see exactly
//! what was changed.
//!
//! The result lives in fixed-capacity storage: at this point of boot there is no heap worth
//! the name, and the capacity ([`MAX_MAP_ENTRIES`] ranges after merging) is far above what
//! real firmware produces. The algorithm is a sweep over range boundaries that needs no
//! scratch memory: at each boundary the winning kind is recomputed from the input, which
//! costs O(n²) for n input ranges — a few million steps for the largest UEFI maps, which is
//! nothing next to initialising a memmap, and input is capped at [`MAX_FIRMWARE_RANGES`].

use core::fmt;

use crate::model::mmzone::{MAX_PHYSMEM_BITS, PAGE_SIZE};

/// Most ranges a sanitised map can hold (after merging).
pub const MAX_MAP_ENTRIES: usize = 256;
/// Most ranges accepted as input (UEFI maps of real machines have a few hundred).
pub const MAX_FIRMWARE_RANGES: usize = 4096;
/// Most anomalies recorded in [`MemoryMap::warnings`]; later ones are still logged and
/// counted in [`MemoryMap::dropped_warnings`].
pub const MAX_MAP_WARNINGS: usize = 32;

/// First physical address that is never managed.
pub const PHYSMEM_LIMIT: u64 = 1 << MAX_PHYSMEM_BITS;

/// What the firmware (or the bootloader) says a physical range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// Free RAM (E820 type 1, UEFI conventional and boot-services memory).
    Usable,
    /// Reserved by the firmware: not RAM the kernel may use (E820 type 2).
    Reserved,
    /// ACPI tables; reclaimable once parsed, but kept reserved here (E820 type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage: must be preserved across sleep (E820 type 4).
    AcpiNvs,
    /// RAM that failed testing (E820 type 5).
    Unusable,
    /// Present RAM that holds live data placed by the bootloader (page tables, boot info,
    /// the kernel image): it counts as present memory but is reserved.
    Bootloader,
    /// A type code this crate does not know; treated as reserved.
    Unknown(u32),
}

impl RangeKind {
    /// The kind for an E820 type code.
    pub const fn from_e820_type(code: u32) -> RangeKind {
        match code {
            1 => RangeKind::Usable,
            2 => RangeKind::Reserved,
            3 => RangeKind::AcpiReclaimable,
            4 => RangeKind::AcpiNvs,
            5 => RangeKind::Unusable,
            other => RangeKind::Unknown(other),
        }
    }

    /// True for kinds that are RAM present in the machine (Linux: in `memblock.memory`).
    /// Only [`RangeKind::Usable`] is free; [`RangeKind::Bootloader`] RAM is present but
    /// reserved.
    pub const fn is_ram(self) -> bool {
        matches!(self, RangeKind::Usable | RangeKind::Bootloader)
    }

    /// Which kind wins when two ranges overlap: the larger value. Free RAM loses to
    /// everything, bootloader RAM to every firmware reservation, and bad RAM wins over all.
    const fn priority(self) -> (u8, u32) {
        match self {
            RangeKind::Usable => (0, 0),
            RangeKind::Bootloader => (1, 0),
            RangeKind::Reserved => (2, 0),
            RangeKind::AcpiReclaimable => (3, 0),
            RangeKind::AcpiNvs => (4, 0),
            RangeKind::Unknown(code) => (5, code),
            RangeKind::Unusable => (6, 0),
        }
    }

    fn wins_over(self, other: RangeKind) -> bool {
        self.priority() > other.priority()
    }
}

impl fmt::Display for RangeKind {
    /// Linux's words from `e820_print_type`; bootloader RAM prints as `bootloader`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeKind::Usable => f.write_str("usable"),
            RangeKind::Reserved => f.write_str("reserved"),
            RangeKind::AcpiReclaimable => f.write_str("ACPI data"),
            RangeKind::AcpiNvs => f.write_str("ACPI NVS"),
            RangeKind::Unusable => f.write_str("unusable"),
            RangeKind::Bootloader => f.write_str("bootloader"),
            RangeKind::Unknown(code) => write!(f, "type {code}"),
        }
    }
}

/// One entry of a firmware memory map: `[start, end)` in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FirmwareRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte (exclusive).
    pub end: u64,
    /// What the range is.
    pub kind: RangeKind,
}

impl FirmwareRange {
    /// A range `[start, end)` of `kind`.
    pub const fn new(start: u64, end: u64, kind: RangeKind) -> FirmwareRange {
        FirmwareRange { start, end, kind }
    }

    /// Length in bytes (0 for an inverted range).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True for a zero-length or inverted range.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for FirmwareRange {
    /// `[mem 0x0000000000000000-0x000000000009fbff] usable`: Linux's form, inclusive end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[mem {:#018x}-{:#018x}] {}",
            self.start,
            self.end.wrapping_sub(1),
            self.kind
        )
    }
}

/// What sanitising changed about one input range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapAnomaly {
    /// The range has `end <= start`; it was dropped.
    Empty,
    /// The range starts at or above `1 << MAX_PHYSMEM_BITS`; it was dropped.
    BeyondPhysmem,
    /// The range crosses `1 << MAX_PHYSMEM_BITS`; the part above was clipped.
    Clipped,
    /// Part of the range is overlapped by a range of a kind that wins over it.
    Overridden {
        /// The kind that took that part.
        by: RangeKind,
    },
    /// A RAM range (after merging) did not start or end on a page boundary; it was trimmed
    /// inward to whole pages.
    Trimmed,
    /// A RAM range (after merging) holds no whole page; it was dropped.
    TooSmall,
}

/// An anomaly and the range it concerns (as given, or as merged for trimming).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapWarning {
    /// The range concerned.
    pub range: FirmwareRange,
    /// What was wrong with it.
    pub anomaly: MapAnomaly,
}

impl fmt::Display for MapWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e820: {} ", self.range)?;
        match self.anomaly {
            MapAnomaly::Empty => f.write_str("is empty or inverted: ignored"),
            MapAnomaly::BeyondPhysmem => write!(
                f,
                "lies above the {MAX_PHYSMEM_BITS}-bit physical limit: ignored"
            ),
            MapAnomaly::Clipped => write!(
                f,
                "crosses the {MAX_PHYSMEM_BITS}-bit physical limit: clipped at {PHYSMEM_LIMIT:#x}"
            ),
            MapAnomaly::Overridden { by } => write!(f, "overlaps a {by} range, which wins"),
            MapAnomaly::Trimmed => f.write_str("is not page aligned: trimmed to whole pages"),
            MapAnomaly::TooSmall => f.write_str("holds no whole page: ignored"),
        }
    }
}

/// Why a firmware map was rejected as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// More input ranges than [`MAX_FIRMWARE_RANGES`].
    TooManyInputRanges {
        /// Ranges given.
        given: usize,
        /// The limit.
        capacity: usize,
    },
    /// The sanitised map needs more than [`MAX_MAP_ENTRIES`] entries.
    TooManyRanges {
        /// The limit.
        capacity: usize,
    },
    /// After sanitising, not one whole page of usable RAM is left.
    NoUsableRam,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::TooManyInputRanges { given, capacity } => write!(
                f,
                "firmware memory map has {given} ranges, more than the {capacity} supported"
            ),
            MapError::TooManyRanges { capacity } => write!(
                f,
                "firmware memory map needs more than {capacity} distinct ranges after merging"
            ),
            MapError::NoUsableRam => {
                f.write_str("firmware memory map has no usable RAM (not one whole page)")
            }
        }
    }
}

/// A sanitised memory map: sorted, disjoint, merged, clipped, RAM page-aligned.
#[derive(Clone)]
pub struct MemoryMap {
    entries: [FirmwareRange; MAX_MAP_ENTRIES],
    len: usize,
    warnings: [MapWarning; MAX_MAP_WARNINGS],
    nr_warnings: usize,
    dropped_warnings: usize,
}

const EMPTY_RANGE: FirmwareRange = FirmwareRange::new(0, 0, RangeKind::Reserved);
const EMPTY_WARNING: MapWarning = MapWarning {
    range: EMPTY_RANGE,
    anomaly: MapAnomaly::Empty,
};

impl MemoryMap {
    /// Sanitise a firmware map (see the module documentation for the rules).
    pub fn sanitize(input: &[FirmwareRange]) -> Result<MemoryMap, MapError> {
        if input.len() > MAX_FIRMWARE_RANGES {
            return Err(MapError::TooManyInputRanges {
                given: input.len(),
                capacity: MAX_FIRMWARE_RANGES,
            });
        }
        let mut map = MemoryMap {
            entries: [EMPTY_RANGE; MAX_MAP_ENTRIES],
            len: 0,
            warnings: [EMPTY_WARNING; MAX_MAP_WARNINGS],
            nr_warnings: 0,
            dropped_warnings: 0,
        };

        // Pass 1: report empty and out-of-range input once each.
        for r in input {
            if r.is_empty() {
                map.warn(*r, MapAnomaly::Empty);
            } else if r.start >= PHYSMEM_LIMIT {
                map.warn(*r, MapAnomaly::BeyondPhysmem);
            } else if r.end > PHYSMEM_LIMIT {
                map.warn(*r, MapAnomaly::Clipped);
            }
        }

        // Pass 2: sweep the boundaries in increasing order; each elementary interval gets
        // the winning kind of the ranges covering it.
        let mut cur = match input.iter().filter_map(clipped).map(|(s, _, _)| s).min() {
            Some(s) => s,
            None => return Err(MapError::NoUsableRam),
        };
        loop {
            let mut best: Option<RangeKind> = None;
            let mut next = u64::MAX;
            for (s, e, kind) in input.iter().filter_map(clipped) {
                if s > cur {
                    next = next.min(s);
                } else if e > cur {
                    next = next.min(e);
                    best = match best {
                        Some(b) if !kind.wins_over(b) => Some(b),
                        _ => Some(kind),
                    };
                }
            }
            if next == u64::MAX {
                break;
            }
            if let Some(kind) = best {
                map.push(FirmwareRange::new(cur, next, kind))?;
            }
            cur = next;
        }

        // Pass 3: name every input range that lost part of itself to another kind.
        for r in input {
            if let Some((s, e, kind)) = clipped(r) {
                let by = map
                    .entries()
                    .iter()
                    .filter(|x| x.start < e && x.end > s && x.kind != kind)
                    .map(|x| x.kind)
                    .next();
                if let Some(by) = by {
                    map.warn(*r, MapAnomaly::Overridden { by });
                }
            }
        }

        // Pass 4: RAM to whole pages. Done after merging, so that adjacent RAM pieces that
        // only together fill a page are not lost, and after overlap resolution, so that a
        // page partly covered by a reservation is not RAM.
        let mut out = 0;
        for i in 0..map.len {
            let r = map.entries[i];
            if r.kind.is_ram() {
                let start = r.start.next_multiple_of(PAGE_SIZE);
                let end = r.end & !(PAGE_SIZE - 1);
                if start >= end {
                    map.warn(r, MapAnomaly::TooSmall);
                    continue;
                }
                if start != r.start || end != r.end {
                    map.warn(r, MapAnomaly::Trimmed);
                }
                map.entries[out] = FirmwareRange::new(start, end, r.kind);
            } else {
                map.entries[out] = r;
            }
            out += 1;
        }
        map.len = out;

        if map.usable_bytes() == 0 {
            return Err(MapError::NoUsableRam);
        }
        Ok(map)
    }

    fn push(&mut self, r: FirmwareRange) -> Result<(), MapError> {
        if let Some(last) = self.entries[..self.len].last_mut()
            && last.kind == r.kind
            && last.end == r.start
        {
            last.end = r.end;
            return Ok(());
        }
        if self.len == MAX_MAP_ENTRIES {
            return Err(MapError::TooManyRanges {
                capacity: MAX_MAP_ENTRIES,
            });
        }
        self.entries[self.len] = r;
        self.len += 1;
        Ok(())
    }

    fn warn(&mut self, range: FirmwareRange, anomaly: MapAnomaly) {
        let w = MapWarning { range, anomaly };
        log::warn!("{w}");
        if self.nr_warnings < MAX_MAP_WARNINGS {
            self.warnings[self.nr_warnings] = w;
            self.nr_warnings += 1;
        } else {
            self.dropped_warnings += 1;
        }
    }

    /// The sanitised ranges, sorted by address and disjoint.
    pub fn entries(&self) -> &[FirmwareRange] {
        &self.entries[..self.len]
    }

    /// The RAM ranges ([`RangeKind::is_ram`]): usable and bootloader RAM.
    pub fn ram(&self) -> impl Iterator<Item = &FirmwareRange> + '_ {
        self.entries().iter().filter(|r| r.kind.is_ram())
    }

    /// The anomalies found while sanitising (at most [`MAX_MAP_WARNINGS`]).
    pub fn warnings(&self) -> &[MapWarning] {
        &self.warnings[..self.nr_warnings]
    }

    /// Anomalies logged but not recorded because [`MapWarning`] storage was full.
    pub fn dropped_warnings(&self) -> usize {
        self.dropped_warnings
    }

    /// Bytes of [`RangeKind::Usable`] RAM.
    pub fn usable_bytes(&self) -> u64 {
        self.entries()
            .iter()
            .filter(|r| r.kind == RangeKind::Usable)
            .map(|r| r.len())
            .sum()
    }

    /// Bytes of RAM present in the machine (usable and bootloader).
    pub fn ram_bytes(&self) -> u64 {
        self.ram().map(|r| r.len()).sum()
    }
}

impl fmt::Display for MemoryMap {
    /// One `BIOS-e820: [mem 0x…-0x…] kind` line per range, as Linux prints it at boot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.entries() {
            writeln!(f, "BIOS-e820: {r}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryMap")
            .field("entries", &self.entries())
            .field("warnings", &self.warnings())
            .finish()
    }
}

/// The part of `r` the sweep considers: non-empty and clipped below the physical limit.
fn clipped(r: &FirmwareRange) -> Option<(u64, u64, RangeKind)> {
    let end = r.end.min(PHYSMEM_LIMIT);
    (r.start < end).then_some((r.start, end, r.kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeKind::*;

    fn r(start: u64, end: u64, kind: RangeKind) -> FirmwareRange {
        FirmwareRange::new(start, end, kind)
    }

    #[test]
    fn qemu_bios_map_prints_like_linux() {
        let map = MemoryMap::sanitize(&[
            r(0x100000, 0x7fe0000, Usable),
            r(0, 0x9fc00, Usable),
            r(0x9fc00, 0xa0000, Reserved),
            r(0xf0000, 0x100000, Reserved),
            r(0x7fe0000, 0x8000000, Reserved),
            r(0xfffc0000, 0x1_0000_0000, Reserved),
        ])
        .unwrap();
        let mut s = std::string::String::new();
        core::fmt::write(&mut s, format_args!("{map}")).unwrap();
        let first = s.lines().next().unwrap();
        assert_eq!(
            first,
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009efff] usable"
        );
        assert!(s.contains("BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved"));
        assert_eq!(map.warnings().len(), 1);
        assert_eq!(map.warnings()[0].anomaly, MapAnomaly::Trimmed);
        assert_eq!(map.warnings()[0].range, r(0, 0x9fc00, Usable));
    }

    #[test]
    fn reserved_wins_and_loser_is_named_once() {
        let map = MemoryMap::sanitize(&[
            r(0, 0x10_0000, Usable),
            r(0x4000, 0x6000, Reserved),
            r(0x8000, 0x9000, AcpiNvs),
        ])
        .unwrap();
        assert_eq!(
            map.entries(),
            &[
                r(0, 0x4000, Usable),
                r(0x4000, 0x6000, Reserved),
                r(0x6000, 0x8000, Usable),
                r(0x8000, 0x9000, AcpiNvs),
                r(0x9000, 0x10_0000, Usable),
            ]
        );
        assert_eq!(map.warnings().len(), 1);
        assert_eq!(map.warnings()[0].range, r(0, 0x10_0000, Usable));
    }

    #[test]
    fn unknown_and_display_words() {
        assert_eq!(
            std::format!("{}", r(0x1000, 0x2000, Unknown(12))),
            "[mem 0x0000000000001000-0x0000000000001fff] type 12"
        );
        assert_eq!(std::format!("{}", AcpiReclaimable), "ACPI data");
        assert_eq!(RangeKind::from_e820_type(4), AcpiNvs);
    }

    #[test]
    fn no_ram_is_an_error() {
        assert_eq!(MemoryMap::sanitize(&[]).unwrap_err(), MapError::NoUsableRam);
        assert_eq!(
            MemoryMap::sanitize(&[r(0, 0x1000, Reserved), r(0x2000, 0x2800, Usable)]).unwrap_err(),
            MapError::NoUsableRam
        );
        assert_eq!(
            MemoryMap::sanitize(&[r(0, 0x10000, Bootloader)]).unwrap_err(),
            MapError::NoUsableRam
        );
    }

    #[test]
    fn too_many_distinct_ranges() {
        let many: std::vec::Vec<_> = (0..(MAX_MAP_ENTRIES as u64 + 1))
            .map(|i| {
                let kind = if i % 2 == 0 { Usable } else { Reserved };
                r(i * 0x1000, (i + 1) * 0x1000, kind)
            })
            .collect();
        assert_eq!(
            MemoryMap::sanitize(&many).unwrap_err(),
            MapError::TooManyRanges {
                capacity: MAX_MAP_ENTRIES
            }
        );
    }
}
