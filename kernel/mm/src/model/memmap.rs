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
//! adjacent ranges of one kind are merged, overlaps are resolved by Linux's rule (the higher
//! e820 type number wins, see [`RangeKind`]: so a reservation can never be lost to a usable
//! entry that overlaps it, while an entry of type 0, which Linux reads as "no type at all",
//! never takes RAM away), everything at or above `1 << max_physmem_bits` (an architecture
//! parameter, 46 on x86_64: [`crate::model::arch::ArchParams`]) is clipped, and
//! RAM ranges are trimmed inward to whole pages (a page that is only partly RAM cannot be
//! handed out). Each anomaly is logged once with `log::warn!` and recorded in the result
//! ([`MemoryMap::warnings`]), so a test, or a caller without a logger, can see exactly what
//! was changed.
//!
//! On x86 two rules of the PC platform follow (Linux: `trim_bios_range`), unless the caller
//! turns them off ([`MemoryMap::sanitize_with`]; another architecture has no legacy BIOS
//! area): page 0 belongs to the BIOS (its interrupt vectors and data area), so RAM there
//! becomes reserved; and the legacy area `0xa0000-0xfffff` (VGA memory, option ROMs, the
//! BIOS itself) is never RAM, whatever the firmware says: RAM claimed there is removed.
//! Both make the counts of present pages Linux's own (zone DMA starts at pfn 1), and keep
//! boot allocations below 1 MiB, like the SMP trampoline page, in conventional memory.
//!
//! The result lives in fixed-capacity storage: at this point of boot there is no heap worth
//! the name, and the capacity ([`MAX_MAP_ENTRIES`] ranges after merging) is far above what
//! real firmware produces. A map that needs more is not rejected: as Linux does, the ranges
//! that fit are kept (the lowest addresses) and a warning says how many were dropped and how
//! much RAM they held. The algorithm is a sweep over range boundaries that needs no scratch
//! memory: at each boundary the winning kind is recomputed from the input, which costs O(n²)
//! for n input ranges — a few million steps for the largest UEFI maps, which is nothing next
//! to initialising a memmap. To bound that cost only the [`MAX_FIRMWARE_RANGES`] lowest input
//! ranges take part; any beyond are dropped with a warning that counts them.

#![deny(unsafe_code)]

use core::borrow::Borrow;
use core::fmt;

use core::mem::MaybeUninit;

use crate::model::mmzone::{MAX_PHYSMEM_BITS, PAGE_SIZE};

/// Most ranges a sanitised map can hold (after merging); ranges above are dropped with a
/// [`MapAnomaly::MapTruncated`] warning.
pub const MAX_MAP_ENTRIES: usize = 256;
/// Most input ranges used (UEFI maps of real machines have a few hundred): the lowest by
/// start address; the others are dropped with a [`MapAnomaly::InputTruncated`] warning.
pub const MAX_FIRMWARE_RANGES: usize = 4096;
/// Most anomalies recorded in [`MemoryMap::warnings`]; later ones are still logged and
/// counted in [`MemoryMap::dropped_warnings`].
pub const MAX_MAP_WARNINGS: usize = 32;

/// First physical address that is never managed with x86_64's default
/// [`MAX_PHYSMEM_BITS`] (the model uses
/// [`crate::model::arch::ArchParams::physmem_limit`]).
pub const PHYSMEM_LIMIT: u64 = 1 << MAX_PHYSMEM_BITS;

/// Start of the PC's legacy BIOS area (640 KiB): VGA memory, option ROMs, the BIOS.
pub const BIOS_BEGIN: u64 = 0xa0000;
/// End of the legacy BIOS area (1 MiB, exclusive).
pub const BIOS_END: u64 = 0x100000;

/// What the firmware (or the bootloader) says a physical range is.
///
/// Where ranges overlap, the kind with the higher e820 type number wins, as in Linux's
/// `e820__update_table`: usable RAM (1) loses to every type above it, including types this
/// crate does not know (7 is persistent memory, 12 protected RAM, ...), and wins only over
/// type 0, which names no memory at all (an area covered only by type 0 is a hole).
/// [`RangeKind::Bootloader`], which has no e820 number, ranks just above usable RAM (it is
/// RAM, with live data in it) and below type 2. An [`RangeKind::Unknown`] code equal to a
/// known one loses to the known kind.
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

    /// Which kind wins when two ranges overlap: the larger value. It is the e820 type
    /// number times four, plus 2 for a kind this crate knows (so it beats an unknown code
    /// of the same number), plus 3 for bootloader RAM (between usable, 1, and reserved, 2).
    const fn priority(self) -> u64 {
        let (code, known) = match self {
            RangeKind::Usable => (1, 2),
            RangeKind::Bootloader => (1, 3),
            RangeKind::Reserved => (2, 2),
            RangeKind::AcpiReclaimable => (3, 2),
            RangeKind::AcpiNvs => (4, 2),
            RangeKind::Unusable => (5, 2),
            RangeKind::Unknown(code) => (code, 0),
        };
        ((code as u64) << 2) | known
    }

    fn wins_over(self, other: RangeKind) -> bool {
        self.priority() > other.priority()
    }

    /// E820 type 0: Linux's "no type"; it covers nothing.
    const fn is_type_zero(self) -> bool {
        matches!(self, RangeKind::Unknown(0))
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
    /// A range without bytes has no last byte to print: an empty one prints as
    /// `[mem 0x0000000000002000 size 0] usable`, an inverted one as
    /// `[mem 0x0000000000005000 end 0x0000000000004000 inverted] reserved`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end, kind) = (self.start, self.end, self.kind);
        if end == start {
            write!(f, "[mem {start:#018x} size 0] {kind}")
        } else if end < start {
            write!(f, "[mem {start:#018x} end {end:#018x} inverted] {kind}")
        } else {
            write!(f, "[mem {start:#018x}-{:#018x}] {kind}", end - 1)
        }
    }
}

/// What sanitising changed about one input range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapAnomaly {
    /// The range has `end <= start`; it was dropped.
    Empty,
    /// The range starts at or above `1 << max_physmem_bits`; it was dropped.
    BeyondPhysmem {
        /// The physical address width in force.
        max_physmem_bits: u32,
    },
    /// The range crosses `1 << max_physmem_bits`; the part above was clipped.
    Clipped {
        /// The physical address width in force.
        max_physmem_bits: u32,
    },
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
    /// The range has e820 type 0, which names no memory: it covers nothing (Linux's rule).
    TypeZero,
    /// RAM (after merging) inside the legacy BIOS area [`BIOS_BEGIN`]..[`BIOS_END`]; it was
    /// removed (Linux: `trim_bios_range`).
    LegacyBiosArea,
    /// More input ranges (non-empty, starting below the physical limit) than
    /// [`MAX_FIRMWARE_RANGES`]: only the lowest by start address were used, ties kept in
    /// input order. The warning's range is the first one dropped.
    InputTruncated {
        /// Ranges given that count: non-empty and starting below the physical limit.
        given: usize,
        /// Ranges dropped: those above the first [`MAX_FIRMWARE_RANGES`].
        dropped: usize,
    },
    /// The sanitised map needed more than [`MAX_MAP_ENTRIES`] ranges: the lowest were kept.
    /// The warning's range is the first one dropped.
    MapTruncated {
        /// Ranges (after merging) dropped.
        dropped: usize,
        /// Bytes of RAM in them.
        dropped_ram: u64,
    },
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
        match self.anomaly {
            MapAnomaly::InputTruncated { given, dropped } => {
                return write!(
                    f,
                    "e820: firmware memory map has {given} non-empty ranges, more than the \
                     {MAX_FIRMWARE_RANGES} supported: the {dropped} highest, from {} up, are ignored",
                    self.range
                );
            }
            MapAnomaly::MapTruncated {
                dropped,
                dropped_ram,
            } => {
                return write!(
                    f,
                    "e820: memory map needs more than {MAX_MAP_ENTRIES} ranges after merging: \
                     the {dropped} highest, from {} up, are ignored ({} KiB of RAM lost)",
                    self.range,
                    dropped_ram / 1024
                );
            }
            _ => {}
        }
        write!(f, "e820: {} ", self.range)?;
        match self.anomaly {
            MapAnomaly::Empty => f.write_str("is empty or inverted: ignored"),
            MapAnomaly::BeyondPhysmem { max_physmem_bits } => write!(
                f,
                "lies above the {max_physmem_bits}-bit physical limit: ignored"
            ),
            MapAnomaly::Clipped { max_physmem_bits } => write!(
                f,
                "crosses the {max_physmem_bits}-bit physical limit: clipped at {:#x}",
                1u64 << max_physmem_bits
            ),
            MapAnomaly::Overridden { by } => write!(f, "overlaps a {by} range, which wins"),
            MapAnomaly::Trimmed => f.write_str("is not page aligned: trimmed to whole pages"),
            MapAnomaly::TooSmall => f.write_str("holds no whole page: ignored"),
            MapAnomaly::TypeZero => f.write_str("has no memory type (0): ignored"),
            MapAnomaly::LegacyBiosArea => write!(
                f,
                "lies in the legacy BIOS area [mem {BIOS_BEGIN:#x}-{:#x}], which is never RAM: removed",
                BIOS_END - 1
            ),
            MapAnomaly::InputTruncated { .. } | MapAnomaly::MapTruncated { .. } => Ok(()),
        }
    }
}

/// Why a firmware map was rejected as a whole. (A map too large for the fixed storage is
/// not rejected: what fits is kept, see [`MapAnomaly::InputTruncated`] and
/// [`MapAnomaly::MapTruncated`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// After sanitising, not one whole page of usable RAM is left.
    NoUsableRam,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
    /// Ranges the sweep produced beyond [`MAX_MAP_ENTRIES`]: the last one (still growing by
    /// merging), how many, the first, and their RAM bytes.
    overflow: Option<Overflow>,
}

/// What [`MemoryMap::push`] counted once the entry array was full.
#[derive(Clone, Copy)]
struct Overflow {
    first: FirmwareRange,
    last: FirmwareRange,
    ranges: usize,
    ram_bytes: u64,
}

const EMPTY_RANGE: FirmwareRange = FirmwareRange::new(0, 0, RangeKind::Reserved);
const EMPTY_WARNING: MapWarning = MapWarning {
    range: EMPTY_RANGE,
    anomaly: MapAnomaly::Empty,
};

/// A firmware map as the sanitiser (and init) take it: anything that yields
/// [`FirmwareRange`]s, or references to them, and can be iterated more than once: a slice,
/// a `Vec`, an array, or an adapter over the boot protocol's own map such as
/// `regions.iter().map(convert)` (no buffer to size). The sanitiser makes several passes
/// over it and copies nothing.
pub trait FirmwareRanges: IntoIterator<IntoIter: Clone, Item: Borrow<FirmwareRange>> {}

impl<T> FirmwareRanges for T where T: IntoIterator<IntoIter: Clone, Item: Borrow<FirmwareRange>> {}

/// Which input ranges take part in the sweep: those of [`clipped`], and when there are more
/// than [`MAX_FIRMWARE_RANGES`] of them, only the first [`MAX_FIRMWARE_RANGES`] in address
/// order (ties by position in the input).
#[derive(Clone, Copy)]
struct InputCut {
    /// Ranges starting below this address are kept...
    start: u64,
    /// ...and those starting at it whose index is at most this.
    last_index: usize,
    /// The physical limit ranges are clipped at.
    limit: u64,
}

impl InputCut {
    /// The cut for `input`, with the number of ranges it drops and the first one dropped.
    /// Found without scratch memory: a binary search on the start address (64 scans of the
    /// input at most), then one scan for the ties.
    fn new<I: Iterator<Item = FirmwareRange> + Clone>(
        input: I,
        limit: u64,
    ) -> (InputCut, usize, Option<FirmwareRange>) {
        let all = InputCut {
            start: u64::MAX,
            last_index: usize::MAX,
            limit,
        };
        let clipped = |r: &FirmwareRange| clipped(r, limit);
        let valid = input.clone().filter(|r| clipped(r).is_some()).count();
        if valid <= MAX_FIRMWARE_RANGES {
            return (all, 0, None);
        }
        let starting_at_or_below = |a: u64| {
            input
                .clone()
                .filter_map(|r| clipped(&r))
                .filter(|r| r.0 <= a)
                .count()
        };
        // The smallest start address at or below which MAX_FIRMWARE_RANGES ranges start;
        // every valid range starts below the limit, so the search space holds it.
        let (mut lo, mut hi) = (0, limit - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if starting_at_or_below(mid) >= MAX_FIRMWARE_RANGES {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let below = input
            .clone()
            .filter_map(|r| clipped(&r))
            .filter(|r| r.0 < lo)
            .count();
        // `below < MAX_FIRMWARE_RANGES <= below + (ranges starting at lo)`, so the
        // (MAX_FIRMWARE_RANGES - below)th range starting at `lo` exists.
        let last_index = input
            .clone()
            .enumerate()
            .filter(|(_, r)| clipped(r).is_some_and(|c| c.0 == lo))
            .nth(MAX_FIRMWARE_RANGES - below - 1)
            .map_or(usize::MAX, |(i, _)| i);
        let cut = InputCut {
            start: lo,
            last_index,
            limit,
        };
        let first_dropped = input
            .enumerate()
            .filter(|&(i, r)| clipped(&r).is_some() && !cut.keeps(i, &r))
            .min_by_key(|&(i, r)| (r.start, i))
            .map(|(_, r)| r);
        (cut, valid - MAX_FIRMWARE_RANGES, first_dropped)
    }

    fn keeps(&self, i: usize, r: &FirmwareRange) -> bool {
        r.start < self.start || (r.start == self.start && i <= self.last_index)
    }

    /// The kept input ranges, clipped.
    fn ranges<I: Iterator<Item = FirmwareRange>>(
        &self,
        input: I,
    ) -> impl Iterator<Item = (u64, u64, RangeKind)> {
        input
            .enumerate()
            .filter(|&(i, r)| self.keeps(i, &r))
            .filter_map(|(_, r)| clipped(&r, self.limit))
    }
}

impl MemoryMap {
    /// Sanitise a firmware map with the x86_64 rules (see the module documentation):
    /// [`MemoryMap::sanitize_with`] with `trim_bios_range` on and the default 46-bit
    /// physical limit ([`MAX_PHYSMEM_BITS`]).
    pub fn sanitize(input: impl FirmwareRanges) -> Result<MemoryMap, MapError> {
        Self::sanitize_with(input, true, MAX_PHYSMEM_BITS)
    }

    /// Sanitise a firmware map (see the module documentation for the rules).
    ///
    /// `trim_bios_range` applies the PC's low-memory rules (Linux: `trim_bios_range`): page
    /// 0 is reserved, not RAM, and RAM in [`BIOS_BEGIN`]..[`BIOS_END`] is removed. Turn it
    /// off on an architecture without a legacy BIOS area. Everything at or above
    /// `1 << max_physmem_bits` is clipped (at most 52 bits: see
    /// [`crate::model::arch::ArchParams::max_physmem_bits`]).
    // Exempt from the module's `deny(unsafe_code)`: in-place construction, so that init
    // runs on a small stack (issue 12).
    #[allow(unsafe_code)]
    pub fn sanitize_with(
        input: impl FirmwareRanges,
        trim_bios_range: bool,
        max_physmem_bits: u32,
    ) -> Result<MemoryMap, MapError> {
        let mut slot = MaybeUninit::uninit();
        Self::sanitize_in(&mut slot, input, trim_bios_range, max_physmem_bits)?;
        // SAFETY: `sanitize_in` returned `Ok`, so it initialised every field of `slot`.
        Ok(unsafe { slot.assume_init() })
    }

    /// [`MemoryMap::sanitize_with`], building the map in place in `slot` rather than
    /// returning it by value (the map is several KiB; the memory model builds it this way
    /// so that init runs on a small stack). On error `slot` may be partly written; it needs
    /// no drop either way.
    // Exempt from the module's `deny(unsafe_code)`: in-place construction, so that init
    // runs on a small stack (issue 12).
    #[allow(unsafe_code)]
    pub fn sanitize_in(
        slot: &mut MaybeUninit<MemoryMap>,
        input: impl FirmwareRanges,
        trim_bios_range: bool,
        max_physmem_bits: u32,
    ) -> Result<&mut MemoryMap, MapError> {
        // Every pass below iterates the input again (no copy is made: see the module
        // documentation), hence the `Clone` iterator.
        let input = input.into_iter().map(|r| *r.borrow());
        debug_assert!(max_physmem_bits <= crate::model::arch::MAX_SUPPORTED_PHYSMEM_BITS);
        let limit = 1u64 << max_physmem_bits;
        let p = slot.as_mut_ptr();
        // SAFETY: `p` points to `slot`, valid for writes of a `MemoryMap`; every field is
        // written exactly once through raw pointers (the arrays element by element, so no
        // array-sized temporary is built on the stack) before `slot` is read as initialised.
        let map = unsafe {
            let entries = core::ptr::addr_of_mut!((*p).entries).cast::<FirmwareRange>();
            for i in 0..MAX_MAP_ENTRIES {
                entries.add(i).write(EMPTY_RANGE);
            }
            let warnings = core::ptr::addr_of_mut!((*p).warnings).cast::<MapWarning>();
            for i in 0..MAX_MAP_WARNINGS {
                warnings.add(i).write(EMPTY_WARNING);
            }
            core::ptr::addr_of_mut!((*p).len).write(0);
            core::ptr::addr_of_mut!((*p).nr_warnings).write(0);
            core::ptr::addr_of_mut!((*p).dropped_warnings).write(0);
            core::ptr::addr_of_mut!((*p).overflow).write(None);
            slot.assume_init_mut()
        };

        // Too many input ranges: keep the lowest, say so first.
        let (cut, dropped, first_dropped) = InputCut::new(input.clone(), limit);
        if let Some(first) = first_dropped {
            let given = dropped + MAX_FIRMWARE_RANGES;
            map.warn_always(first, MapAnomaly::InputTruncated { given, dropped });
        }

        // Pass 1: report empty, out-of-range and typeless input once each.
        for r in input.clone() {
            if r.is_empty() {
                map.warn(r, MapAnomaly::Empty);
            } else if r.start >= limit {
                map.warn(r, MapAnomaly::BeyondPhysmem { max_physmem_bits });
            } else if r.kind.is_type_zero() {
                map.warn(r, MapAnomaly::TypeZero);
            } else if r.end > limit {
                map.warn(r, MapAnomaly::Clipped { max_physmem_bits });
            }
        }

        // Pass 2: sweep the boundaries in increasing order; each elementary interval gets
        // the winning kind of the ranges covering it (type 0 alone: a hole). With
        // `trim_bios_range`, the PC's low-memory boundaries cut intervals too, so that an
        // interval lies wholly inside or outside page 0 and the legacy BIOS area.
        let trim_cuts: &[u64] = if trim_bios_range {
            &[PAGE_SIZE, BIOS_BEGIN, BIOS_END]
        } else {
            &[]
        };
        let mut cur = match cut.ranges(input.clone()).map(|(s, _, _)| s).min() {
            Some(s) => s,
            None => return Err(MapError::NoUsableRam),
        };
        let mut legacy: Option<FirmwareRange> = None;
        loop {
            let mut best: Option<RangeKind> = None;
            let mut next = u64::MAX;
            for (s, e, kind) in cut.ranges(input.clone()) {
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
            if let Some(&b) = trim_cuts.iter().find(|&&b| b > cur && b < next) {
                next = b;
            }
            match best {
                Some(kind) if kind.is_ram() && trim_bios_range && cur < PAGE_SIZE => {
                    map.push(FirmwareRange::new(cur, next, RangeKind::Reserved));
                }
                Some(kind)
                    if kind.is_ram()
                        && trim_bios_range
                        && (BIOS_BEGIN..BIOS_END).contains(&cur) =>
                {
                    // Removed; one warning per run of RAM of one kind.
                    let piece = FirmwareRange::new(cur, next, kind);
                    legacy = match legacy {
                        Some(l) if l.end == cur && l.kind == kind => {
                            Some(FirmwareRange::new(l.start, next, kind))
                        }
                        Some(l) => {
                            map.warn(l, MapAnomaly::LegacyBiosArea);
                            Some(piece)
                        }
                        None => Some(piece),
                    };
                }
                Some(kind) if !kind.is_type_zero() => map.push(FirmwareRange::new(cur, next, kind)),
                _ => {}
            }
            cur = next;
        }
        if let Some(l) = legacy {
            map.warn(l, MapAnomaly::LegacyBiosArea);
        }
        if let Some(o) = map.overflow {
            map.warn_always(
                o.first,
                MapAnomaly::MapTruncated {
                    dropped: o.ranges,
                    dropped_ram: o.ram_bytes,
                },
            );
        }

        // Pass 3: name every input range that lost part of itself to another kind. Page 0
        // turned reserved by `trim_bios_range` is the platform's rule, not an overlap.
        for (i, r) in input.enumerate() {
            if !cut.keeps(i, &r) || r.kind.is_type_zero() {
                continue;
            }
            if let Some((s, e, kind)) = clipped(&r, limit) {
                let by = map
                    .entries()
                    .iter()
                    .filter(|x| x.start < e && x.end > s && x.kind != kind)
                    .filter(|x| {
                        !(trim_bios_range
                            && kind.is_ram()
                            && x.kind == RangeKind::Reserved
                            && x.end.min(e) <= PAGE_SIZE)
                    })
                    .map(|x| x.kind)
                    .next();
                if let Some(by) = by {
                    map.warn(r, MapAnomaly::Overridden { by });
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

    /// Append `r` (above every entry), merging it with the last entry when they touch and
    /// are of one kind. Past [`MAX_MAP_ENTRIES`] the range is only counted.
    fn push(&mut self, r: FirmwareRange) {
        if let Some(o) = self.overflow.as_mut() {
            if o.last.kind == r.kind && o.last.end == r.start {
                o.last.end = r.end;
            } else {
                o.last = r;
                o.ranges += 1;
            }
            if r.kind.is_ram() {
                o.ram_bytes += r.len();
            }
            return;
        }
        if let Some(last) = self.entries[..self.len].last_mut()
            && last.kind == r.kind
            && last.end == r.start
        {
            last.end = r.end;
            return;
        }
        if self.len == MAX_MAP_ENTRIES {
            self.overflow = Some(Overflow {
                first: r,
                last: r,
                ranges: 1,
                ram_bytes: if r.kind.is_ram() { r.len() } else { 0 },
            });
            return;
        }
        self.entries[self.len] = r;
        self.len += 1;
    }

    /// [`MemoryMap::warn`] for an anomaly the caller must see: when the warning storage is
    /// full, it takes the place of the last warning recorded (which is then counted as
    /// dropped).
    fn warn_always(&mut self, range: FirmwareRange, anomaly: MapAnomaly) {
        if self.nr_warnings == MAX_MAP_WARNINGS {
            self.nr_warnings -= 1;
            self.dropped_warnings += 1;
        }
        self.warn(range, anomaly);
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

    /// Anomalies logged but not recorded because [`MapWarning`] storage was full. (The
    /// truncation warnings, [`MapAnomaly::InputTruncated`] and [`MapAnomaly::MapTruncated`],
    /// are always recorded.)
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

/// The part of `r` the sweep considers: non-empty and clipped below the physical `limit`.
fn clipped(r: &FirmwareRange, limit: u64) -> Option<(u64, u64, RangeKind)> {
    let end = r.end.min(limit);
    (r.start < end).then_some((r.start, end, r.kind))
}

impl core::error::Error for MapError {}

#[cfg(test)]
// The maps are written as borrowed array literals, as a port passes a slice.
#[allow(clippy::needless_borrows_for_generic_args)]
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
        let mut lines = s.lines();
        // Page 0 is the BIOS's (trim_bios_range), as in Linux's "e820: update" of it.
        assert_eq!(
            lines.next().unwrap(),
            "BIOS-e820: [mem 0x0000000000000000-0x0000000000000fff] reserved"
        );
        assert_eq!(
            lines.next().unwrap(),
            "BIOS-e820: [mem 0x0000000000001000-0x000000000009efff] usable"
        );
        assert!(s.contains("BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved"));
        // Page 0 turned reserved is the platform's rule, not an anomaly of the map.
        assert_eq!(map.warnings().len(), 1);
        assert_eq!(map.warnings()[0].anomaly, MapAnomaly::Trimmed);
        assert_eq!(map.warnings()[0].range, r(0x1000, 0x9fc00, Usable));
    }

    #[test]
    fn reserved_wins_and_loser_is_named_once() {
        // Without the PC's low-memory rules, which would also change [0, 1 MiB).
        let map = MemoryMap::sanitize_with(
            &[
                r(0, 0x10_0000, Usable),
                r(0x4000, 0x6000, Reserved),
                r(0x8000, 0x9000, AcpiNvs),
            ],
            false,
            MAX_PHYSMEM_BITS,
        )
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

    fn text(w: &MapWarning) -> std::string::String {
        std::format!("{w}")
    }

    /// A server map (shape of a real one) on which the firmware left entries of type 0 and
    /// of types this crate does not know. Linux's rule: the higher type number wins.
    #[test]
    fn higher_e820_type_wins_and_type_zero_covers_nothing() {
        const GIB: u64 = 1 << 30;
        let map = MemoryMap::sanitize(&[
            r(0, 0x9d000, Usable),
            r(0x9d000, 0xa0000, Reserved),
            r(0xe0000, 0x100000, Reserved),
            r(0x100000, 0x7a28_f000, Usable),
            // Type 0 over usable RAM: the RAM stays.
            r(0x1000_0000, 0x1020_0000, Unknown(0)),
            r(0x7a28_f000, 0x7b00_0000, Reserved),
            r(0x7b00_0000, 0x7b80_0000, AcpiNvs),
            // Type 0 alone: a hole, not a range of "type 0".
            r(0xfed0_0000, 0xfed0_1000, Unknown(0)),
            r(0x1_0000_0000, 8 * GIB, Usable),
            // Persistent memory (7) inside usable RAM takes it.
            r(6 * GIB, 7 * GIB, Unknown(7)),
            // Type 12 over bad RAM (5): 12 is higher.
            r(0x7b80_0000, 0x7c00_0000, Unusable),
            r(0x7bc0_0000, 0x7c00_0000, Unknown(12)),
            // An unknown code equal to usable's loses to the known kind.
            r(0x200_0000, 0x300_0000, Unknown(1)),
        ])
        .unwrap();
        let e = map.entries();
        assert!(e.iter().all(|x| x.kind != Unknown(0)), "{e:?}");
        assert!(e.contains(&r(0x1000, 0x9d000, Usable)));
        // The type-0 entry did not cut the usable range.
        assert!(e.contains(&r(0x100000, 0x7a28_f000, Usable)), "{e:?}");
        assert!(
            !e.iter()
                .any(|x| x.start <= 0xfed0_0000 && x.end > 0xfed0_0000)
        );
        assert!(e.contains(&r(4 * GIB, 6 * GIB, Usable)));
        assert!(e.contains(&r(6 * GIB, 7 * GIB, Unknown(7))));
        assert!(e.contains(&r(7 * GIB, 8 * GIB, Usable)));
        assert!(e.contains(&r(0x7b80_0000, 0x7bc0_0000, Unusable)));
        assert!(e.contains(&r(0x7bc0_0000, 0x7c00_0000, Unknown(12))));
        assert_eq!(
            map.usable_bytes(),
            (0x9d000 - 0x1000) + (0x7a28_f000 - 0x100000) + 3 * GIB
        );
        let w = map.warnings();
        assert_eq!(
            w.iter()
                .filter(|x| x.anomaly == MapAnomaly::TypeZero)
                .count(),
            2
        );
        assert_eq!(
            text(&w[0]),
            "e820: [mem 0x0000000010000000-0x00000000101fffff] type 0 has no memory type (0): ignored"
        );
        let over: std::vec::Vec<_> = w
            .iter()
            .filter_map(|x| match x.anomaly {
                MapAnomaly::Overridden { by } => Some((x.range, by)),
                _ => None,
            })
            .collect();
        assert_eq!(
            over,
            [
                (r(4 * GIB, 8 * GIB, Usable), Unknown(7)),
                (r(0x7b80_0000, 0x7c00_0000, Unusable), Unknown(12)),
                (r(0x200_0000, 0x300_0000, Unknown(1)), Usable),
            ]
        );
    }

    /// A hypervisor map that calls all of the first MiB but a VGA window usable (a real
    /// one had the trampoline placed at 0xff000): the legacy BIOS area is never RAM.
    #[test]
    fn legacy_bios_area_and_page_0_are_not_ram() {
        let input = [
            r(0, 0xa0000, Usable),
            r(0xa0000, 0xc0000, Reserved),
            r(0xc0000, 0x100000, Usable),
            r(0x100000, 0x4000_0000, Usable),
            r(0xe0000, 0xe8000, Bootloader),
        ];
        let map = MemoryMap::sanitize(&input).unwrap();
        assert_eq!(
            &map.entries()[..4],
            &[
                r(0, 0x1000, Reserved),
                r(0x1000, 0xa0000, Usable),
                r(0xa0000, 0xc0000, Reserved),
                r(0x100000, 0x4000_0000, Usable),
            ]
        );
        assert!(
            map.ram()
                .all(|x| x.start >= 0x1000 && (x.end <= BIOS_BEGIN || x.start >= BIOS_END))
        );
        let legacy: std::vec::Vec<_> = map
            .warnings()
            .iter()
            .filter(|x| x.anomaly == MapAnomaly::LegacyBiosArea)
            .collect();
        // Three runs: usable, bootloader, usable.
        assert_eq!(legacy.len(), 3, "{:?}", map.warnings());
        assert_eq!(legacy[0].range, r(0xc0000, 0xe0000, Usable));
        assert_eq!(legacy[1].range, r(0xe0000, 0xe8000, Bootloader));
        assert_eq!(
            text(legacy[2]),
            "e820: [mem 0x00000000000e8000-0x00000000000fffff] usable lies in the legacy BIOS \
             area [mem 0xa0000-0xfffff], which is never RAM: removed"
        );
        // Page 0 is not reported as overridden: it is the platform's rule.
        assert!(
            !map.warnings()
                .iter()
                .any(|x| matches!(x.anomaly, MapAnomaly::Overridden { .. })),
            "{:?}",
            map.warnings()
        );

        // An architecture without a legacy BIOS area keeps what the firmware says.
        let map = MemoryMap::sanitize_with(&input, false, MAX_PHYSMEM_BITS).unwrap();
        assert_eq!(map.entries()[0], r(0, 0xa0000, Usable));
        assert_eq!(map.entries()[2], r(0xc0000, 0xe0000, Usable));
        assert!(
            map.warnings()
                .iter()
                .all(|x| x.anomaly != MapAnomaly::LegacyBiosArea)
        );
    }

    /// The physical limit is the architecture's: with 40 bits, RAM crossing 1 TiB is
    /// clipped there and RAM above it dropped, and the warnings say "40-bit".
    #[test]
    fn physical_limit_is_a_parameter() {
        const TIB: u64 = 1 << 40;
        let input = [
            r(0x100000, 0x200000, Usable),
            r(TIB - 0x2000, TIB + 0x2000, Usable),
            r(2 * TIB, 2 * TIB + 0x1000, Usable),
        ];
        let map = MemoryMap::sanitize_with(&input, false, 40).unwrap();
        assert_eq!(map.entries().last().unwrap(), &r(TIB - 0x2000, TIB, Usable));
        let w = map.warnings();
        assert_eq!(
            w[0].anomaly,
            MapAnomaly::Clipped {
                max_physmem_bits: 40
            }
        );
        assert_eq!(
            w[1].anomaly,
            MapAnomaly::BeyondPhysmem {
                max_physmem_bits: 40
            }
        );
        let text = std::format!("{}", w[0]);
        assert!(
            text.contains("40-bit physical limit: clipped at 0x10000000000"),
            "{text}"
        );
        // The x86_64 default keeps all three.
        let map = MemoryMap::sanitize(&input).unwrap();
        assert_eq!(map.ram().count(), 3);
    }

    /// A UEFI map of 4100 descriptors (firmware that leaves boot-services memory in
    /// thousands of pieces), given highest first: the lowest 4096 are used, four dropped.
    #[test]
    fn more_input_ranges_than_supported_keep_the_lowest() {
        let n = MAX_FIRMWARE_RANGES as u64 + 4;
        let base = 0x100000;
        let mut input: std::vec::Vec<_> = (0..n)
            .rev()
            .map(|i| {
                let kind = if i % 64 == 63 { Reserved } else { Usable };
                r(base + i * 0x2000, base + (i + 1) * 0x2000, kind)
            })
            .collect();
        // Two descriptors that do not count: empty, and beyond the physical limit.
        input.push(r(0x5000, 0x5000, Usable));
        input.push(r(PHYSMEM_LIMIT, PHYSMEM_LIMIT + 0x1000, Usable));
        let map = MemoryMap::sanitize(&input).unwrap();
        let kept_end = base + MAX_FIRMWARE_RANGES as u64 * 0x2000;
        assert_eq!(map.entries().last().unwrap().end, kept_end);
        assert_eq!(map.entries()[0].start, base);
        let w = map.warnings();
        assert_eq!(
            w[0].anomaly,
            MapAnomaly::InputTruncated {
                given: MAX_FIRMWARE_RANGES + 4,
                dropped: 4
            }
        );
        assert_eq!(w[0].range, r(kept_end, kept_end + 0x2000, Usable));
        assert_eq!(
            text(&w[0]),
            "e820: firmware memory map has 4100 non-empty ranges, more than the 4096 supported: the 4 \
             highest, from [mem 0x0000000002100000-0x0000000002101fff] usable up, are ignored"
        );
        // Ties at the cut are broken by position: the first given is kept.
        let mut tied: std::vec::Vec<_> = (0..MAX_FIRMWARE_RANGES as u64 - 1)
            .map(|i| r(base + i * 0x1000, base + (i + 1) * 0x1000, Usable))
            .collect();
        let top = base + (MAX_FIRMWARE_RANGES as u64 - 1) * 0x1000;
        tied.push(r(top, top + 0x3000, Usable));
        tied.push(r(top, top + 0x1000, Reserved));
        let map = MemoryMap::sanitize(&tied).unwrap();
        assert_eq!(
            map.entries().last().unwrap(),
            &r(base, top + 0x3000, Usable)
        );
        assert_eq!(map.warnings()[0].range, r(top, top + 0x1000, Reserved));
    }

    /// A map whose reservations interleave with RAM more than 256 times after merging
    /// (seen on machines with many small ACPI and reserved holes): the lowest 256 ranges
    /// are kept, and the warning counts the rest and their RAM.
    #[test]
    fn more_merged_ranges_than_supported_keep_the_lowest() {
        let n = MAX_MAP_ENTRIES as u64 + 44;
        let base = 0x100000;
        let input: std::vec::Vec<_> = (0..n)
            .map(|i| {
                let kind = if i % 2 == 0 { Usable } else { AcpiNvs };
                r(base + i * 0x10000, base + (i + 1) * 0x10000, kind)
            })
            .collect();
        let map = MemoryMap::sanitize(&input).unwrap();
        assert_eq!(map.entries().len(), MAX_MAP_ENTRIES);
        assert_eq!(map.entries(), &input[..MAX_MAP_ENTRIES]);
        let w = map.warnings();
        assert_eq!(
            w.last().unwrap().anomaly,
            MapAnomaly::MapTruncated {
                dropped: 44,
                dropped_ram: 22 * 0x10000
            }
        );
        assert_eq!(w.last().unwrap().range, input[MAX_MAP_ENTRIES]);
        assert_eq!(
            text(w.last().unwrap()),
            "e820: memory map needs more than 256 ranges after merging: the 44 highest, from \
             [mem 0x0000000001100000-0x000000000110ffff] usable up, are ignored (1408 KiB of RAM lost)"
        );
        assert_eq!(map.usable_bytes(), 128 * 0x10000);
    }

    /// The truncation warnings are recorded even when the warning storage is full.
    #[test]
    fn truncation_is_reported_past_a_full_warning_store() {
        let mut input: std::vec::Vec<_> = (0..MAX_MAP_WARNINGS as u64 + 5)
            .map(|i| r(i * 0x1000, i * 0x1000, Usable))
            .collect();
        let base = 0x100000;
        input.extend((0..MAX_MAP_ENTRIES as u64 + 2).map(|i| {
            let kind = if i % 2 == 0 { Usable } else { Reserved };
            r(base + i * 0x10000, base + (i + 1) * 0x10000, kind)
        }));
        let map = MemoryMap::sanitize(&input).unwrap();
        assert_eq!(map.warnings().len(), MAX_MAP_WARNINGS);
        assert!(matches!(
            map.warnings().last().unwrap().anomaly,
            MapAnomaly::MapTruncated { dropped: 2, .. }
        ));
        assert_eq!(map.dropped_warnings(), 6);
    }

    /// Empty and inverted ranges have no last byte: they do not print one.
    #[test]
    fn empty_and_inverted_ranges_print_sensibly() {
        let map = MemoryMap::sanitize(&[
            r(0, 0, Usable),
            r(0x5000, 0x4000, Reserved),
            r(0x8000, 0, Usable),
            r(0x100000, 0x200000, Usable),
        ])
        .unwrap();
        let w: std::vec::Vec<_> = map.warnings().iter().map(text).collect();
        assert_eq!(
            w,
            [
                "e820: [mem 0x0000000000000000 size 0] usable is empty or inverted: ignored",
                "e820: [mem 0x0000000000005000 end 0x0000000000004000 inverted] reserved is \
                 empty or inverted: ignored",
                "e820: [mem 0x0000000000008000 end 0x0000000000000000 inverted] usable is empty \
                 or inverted: ignored",
            ]
        );
    }
}
