//! The architecture facts the memory model depends on, as run-time parameters with x86_64
//! defaults (Linux keeps them in `arch/*/include/asm/`: `sparsemem.h`, `dma.h`,
//! `page_*_types.h`, and the low-memory reservations of `setup_arch`).
//!
//! Linux compiles these in per architecture. A portable crate cannot: a port to aarch64 or
//! RISC-V must be able to say that its physical addresses are 48 bits wide, that it has no
//! ISA DMA zone, or that the first MiB of its RAM is ordinary memory. [`ArchParams`] holds
//! them, [`ArchParams::default`] is the x86_64 answer, and the memory model validates them
//! once at init ([`ArchParams::validate`]) and then reads them from the model wherever
//! they matter:
//!
//! | fact | x86_64 | used by |
//! |------|--------|---------|
//! | [`ArchParams::section_size_bits`] | 27 (128 MiB) | SPARSEMEM: `pfn_to_section_nr`, memmap and usemap size per section, the section number in each `struct Page` |
//! | [`ArchParams::max_physmem_bits`] | 46 | the firmware map is clipped there; memblock never goes above; number of possible sections |
//! | [`ArchParams::dma_limit`] | 16 MiB | end of ZONE_DMA (`MAX_DMA_PFN`) |
//! | [`ArchParams::dma32_limit`] | 4 GiB | end of ZONE_DMA32 (`MAX_DMA32_PFN`) |
//! | [`ArchParams::reserve_low`] | 1 MiB | reserved in memblock: present, never managed |
//!
//! The `SECTION_SIZE_BITS`, `PAGES_PER_SECTION`, `MAX_PHYSMEM_BITS` and `NR_MEM_SECTIONS`
//! constants of [`crate::model::mmzone`] are the x86_64 defaults only; nothing that runs
//! after init reads them.

#![deny(unsafe_code)]

use core::fmt;

use crate::model::mmzone::{
    MAX_PAGE_ORDER, MAX_PHYSMEM_BITS, PAGE_SHIFT, PAGE_SIZE, PAGEBLOCK_ORDER, SECTION_SIZE_BITS,
    ZoneType,
};
use crate::model::page::SECTIONS_WIDTH;

/// The widest physical address any supported architecture has (x86_64 with 5-level paging,
/// aarch64 with 52-bit PA): the upper bound of [`ArchParams::max_physmem_bits`].
pub const MAX_SUPPORTED_PHYSMEM_BITS: u32 = 52;

/// The smallest section: a section must hold a whole largest buddy block (and so a whole
/// pageblock), because a free block's `struct page`s are walked inside one section's memmap
/// (Linux refuses to build with `MAX_PAGE_ORDER + PAGE_SHIFT > SECTION_SIZE_BITS`).
pub const MIN_SECTION_SIZE_BITS: u32 = PAGE_SHIFT
    + if MAX_PAGE_ORDER > PAGEBLOCK_ORDER {
        MAX_PAGE_ORDER
    } else {
        PAGEBLOCK_ORDER
    };

/// End of ZONE_DMA on x86_64 (ISA DMA reaches 16 MiB).
pub const X86_64_DMA_LIMIT: u64 = 16 << 20;
/// End of ZONE_DMA32 on x86_64 (32-bit DMA reaches 4 GiB).
pub const X86_64_DMA32_LIMIT: u64 = 4 << 30;
/// Low memory Linux x86 reserves whatever the firmware says: the first MiB (BIOS data, the
/// EBDA, real-mode code; "x86/setup: Always reserve the first 1M of RAM").
pub const X86_64_RESERVE_LOW: u64 = 1 << 20;

/// The architecture facts of the memory model (see the module documentation). A field of
/// [`crate::ModelParams`] (`params.arch`); [`ArchParams::default`] gives x86_64's values.
///
/// An aarch64-like port with 48-bit physical addresses, 512 MiB sections, no ISA DMA zone
/// and a DMA32 zone below 4 GiB, and no reserved low memory:
///
/// ```
/// use zonebuddy::model::arch::ArchParams;
///
/// let arch = ArchParams {
///     section_size_bits: 29,
///     max_physmem_bits: 48,
///     dma_limit: None,
///     dma32_limit: Some(4 << 30),
///     reserve_low: 0,
/// };
/// assert_eq!(arch.validate(), Ok(()));
/// assert_eq!(arch.pages_per_section(), 1 << 17);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArchParams {
    /// log2 of the SPARSEMEM section size in bytes (`SECTION_SIZE_BITS`; x86_64: 27, 128
    /// MiB; arm64 with 4 KiB pages: 27, powerpc: 24, s390: 28). At least
    /// [`MIN_SECTION_SIZE_BITS`] (22) and at most [`ArchParams::max_physmem_bits`]. Every
    /// present section costs a memmap of `2^section_size_bits / 4096 * 64` bytes, holes
    /// included: large sections waste memmap on sparse machines, small ones cost more
    /// section roots.
    pub section_size_bits: u32,
    /// Width of a physical address (`MAX_PHYSMEM_BITS`; x86_64 4-level paging: 46, with
    /// 5-level: 52; arm64: 48 or 52). RAM at or above `1 << max_physmem_bits` is clipped
    /// from the firmware map. At most [`MAX_SUPPORTED_PHYSMEM_BITS`], and
    /// `max_physmem_bits - section_size_bits` must fit the section field of the page flags
    /// ([`SECTIONS_WIDTH`] bits).
    pub max_physmem_bits: u32,
    /// First physical address above ZONE_DMA (`MAX_DMA_PFN << PAGE_SHIFT`; x86_64: 16 MiB).
    /// `None`: the architecture has no ZONE_DMA (it stays empty, and `GFP_DMA` requests
    /// find no memory). Page aligned, not above [`ArchParams::dma32_limit`].
    pub dma_limit: Option<u64>,
    /// First physical address above ZONE_DMA32 (`MAX_DMA32_PFN << PAGE_SHIFT`; x86_64:
    /// 4 GiB). `None`: no ZONE_DMA32 (it stays empty; memory above ZONE_DMA is Normal).
    /// Page aligned.
    pub dma32_limit: Option<u64>,
    /// Bytes of RAM from physical address 0 that are reserved in memblock: counted present,
    /// never handed to the buddy allocator (Linux x86 reserves the first MiB, which
    /// firmware and real-mode code may still use). x86_64: 1 MiB; 0: nothing. Page
    /// aligned. An SMP trampoline ([`crate::ModelParams::reserve_trampoline`]) is still
    /// placed below 1 MiB, inside this range.
    pub reserve_low: u64,
}

impl ArchParams {
    /// The x86_64 values (Linux's defaults with 4-level paging).
    pub const X86_64: ArchParams = ArchParams {
        section_size_bits: SECTION_SIZE_BITS,
        max_physmem_bits: MAX_PHYSMEM_BITS,
        dma_limit: Some(X86_64_DMA_LIMIT),
        dma32_limit: Some(X86_64_DMA32_LIMIT),
        reserve_low: X86_64_RESERVE_LOW,
    };

    /// Check every value and their relations; the first problem found is returned.
    pub const fn validate(&self) -> Result<(), ArchError> {
        let (sbits, pbits) = (self.section_size_bits, self.max_physmem_bits);
        if pbits > MAX_SUPPORTED_PHYSMEM_BITS {
            return Err(ArchError::PhysmemBitsTooLarge {
                max_physmem_bits: pbits,
            });
        }
        if sbits < MIN_SECTION_SIZE_BITS {
            return Err(ArchError::SectionTooSmall {
                section_size_bits: sbits,
            });
        }
        if sbits > pbits {
            return Err(ArchError::SectionLargerThanPhysmem {
                section_size_bits: sbits,
                max_physmem_bits: pbits,
            });
        }
        if pbits - sbits > SECTIONS_WIDTH {
            return Err(ArchError::TooManySections {
                section_size_bits: sbits,
                max_physmem_bits: pbits,
            });
        }
        if let Some(limit) = self.dma_limit
            && !limit.is_multiple_of(PAGE_SIZE)
        {
            return Err(ArchError::Unaligned {
                what: "dma_limit",
                value: limit,
            });
        }
        if let Some(limit) = self.dma32_limit
            && !limit.is_multiple_of(PAGE_SIZE)
        {
            return Err(ArchError::Unaligned {
                what: "dma32_limit",
                value: limit,
            });
        }
        if let (Some(dma), Some(dma32)) = (self.dma_limit, self.dma32_limit)
            && dma > dma32
        {
            return Err(ArchError::DmaAboveDma32 {
                dma_limit: dma,
                dma32_limit: dma32,
            });
        }
        if !self.reserve_low.is_multiple_of(PAGE_SIZE) {
            return Err(ArchError::Unaligned {
                what: "reserve_low",
                value: self.reserve_low,
            });
        }
        Ok(())
    }

    /// First physical address never managed: `1 << max_physmem_bits`.
    #[inline]
    pub const fn physmem_limit(&self) -> u64 {
        1 << self.max_physmem_bits
    }

    /// Shift from a pfn to its section number (`PFN_SECTION_SHIFT`).
    #[inline]
    pub const fn pfn_section_shift(&self) -> u32 {
        self.section_size_bits - PAGE_SHIFT
    }

    /// Pages in a section (`PAGES_PER_SECTION`).
    #[inline]
    pub const fn pages_per_section(&self) -> u64 {
        1 << self.pfn_section_shift()
    }

    /// Number of possible sections below the physical limit (`NR_MEM_SECTIONS`).
    #[inline]
    pub const fn nr_mem_sections(&self) -> u64 {
        1 << (self.max_physmem_bits - self.section_size_bits)
    }

    /// First pfn above zone `zt`'s architectural limit: `Some(0)` for a zone the
    /// architecture does not have (DMA or DMA32 set to `None`), `None` for the zones not
    /// limited by address (Normal, Movable).
    #[inline]
    pub const fn zone_max_pfn(&self, zt: ZoneType) -> Option<u64> {
        let limit = match zt {
            ZoneType::Dma => self.dma_limit,
            ZoneType::Dma32 => self.dma32_limit,
            _ => return None,
        };
        match limit {
            Some(l) => Some(l >> PAGE_SHIFT),
            None => Some(0),
        }
    }
}

impl Default for ArchParams {
    /// [`ArchParams::X86_64`].
    fn default() -> Self {
        ArchParams::X86_64
    }
}

/// An [`ArchParams`] value the memory model refuses (reported as
/// [`crate::ModelError::Arch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchError {
    /// `max_physmem_bits` is above [`MAX_SUPPORTED_PHYSMEM_BITS`].
    PhysmemBitsTooLarge {
        /// The value given.
        max_physmem_bits: u32,
    },
    /// `section_size_bits` is below [`MIN_SECTION_SIZE_BITS`]: a largest buddy block would
    /// not fit in one section.
    SectionTooSmall {
        /// The value given.
        section_size_bits: u32,
    },
    /// `section_size_bits` is above `max_physmem_bits`.
    SectionLargerThanPhysmem {
        /// The section size given.
        section_size_bits: u32,
        /// The physical address width given.
        max_physmem_bits: u32,
    },
    /// `max_physmem_bits - section_size_bits` exceeds the [`SECTIONS_WIDTH`]-bit section
    /// field of the page flags: section numbers would not fit in a `struct Page`.
    TooManySections {
        /// The section size given.
        section_size_bits: u32,
        /// The physical address width given.
        max_physmem_bits: u32,
    },
    /// A limit or size that must be a multiple of the page size is not.
    Unaligned {
        /// Which field (`dma_limit`, `dma32_limit`, `reserve_low`).
        what: &'static str,
        /// The value given.
        value: u64,
    },
    /// `dma_limit` is above `dma32_limit`: ZONE_DMA must lie below ZONE_DMA32.
    DmaAboveDma32 {
        /// The DMA limit given.
        dma_limit: u64,
        /// The DMA32 limit given.
        dma32_limit: u64,
    },
}

impl fmt::Display for ArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ArchError::PhysmemBitsTooLarge { max_physmem_bits } => write!(
                f,
                "arch: max_physmem_bits {max_physmem_bits} is above the supported \
                 {MAX_SUPPORTED_PHYSMEM_BITS}"
            ),
            ArchError::SectionTooSmall { section_size_bits } => write!(
                f,
                "arch: section_size_bits {section_size_bits} is below {MIN_SECTION_SIZE_BITS}: \
                 a section must hold an order-{MAX_PAGE_ORDER} block"
            ),
            ArchError::SectionLargerThanPhysmem {
                section_size_bits,
                max_physmem_bits,
            } => write!(
                f,
                "arch: section_size_bits {section_size_bits} is above max_physmem_bits \
                 {max_physmem_bits}"
            ),
            ArchError::TooManySections {
                section_size_bits,
                max_physmem_bits,
            } => write!(
                f,
                "arch: max_physmem_bits {max_physmem_bits} with section_size_bits \
                 {section_size_bits} needs {}-bit section numbers; struct page holds \
                 {SECTIONS_WIDTH}",
                max_physmem_bits - section_size_bits
            ),
            ArchError::Unaligned { what, value } => {
                write!(
                    f,
                    "arch: {what} {value:#x} is not a multiple of the page size"
                )
            }
            ArchError::DmaAboveDma32 {
                dma_limit,
                dma32_limit,
            } => write!(
                f,
                "arch: dma_limit {dma_limit:#x} is above dma32_limit {dma32_limit:#x}"
            ),
        }
    }
}

impl core::error::Error for ArchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_defaults() {
        let a = ArchParams::default();
        assert_eq!(a, ArchParams::X86_64);
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.pages_per_section(), 32768);
        assert_eq!(a.nr_mem_sections(), 1 << 19);
        assert_eq!(a.physmem_limit(), 1 << 46);
        assert_eq!(a.zone_max_pfn(ZoneType::Dma), Some(4096));
        assert_eq!(a.zone_max_pfn(ZoneType::Dma32), Some(1 << 20));
        assert_eq!(a.zone_max_pfn(ZoneType::Normal), None);
        assert_eq!(MIN_SECTION_SIZE_BITS, 22);
    }

    #[test]
    fn absent_zones_end_at_pfn_zero() {
        let a = ArchParams {
            dma_limit: None,
            dma32_limit: None,
            ..ArchParams::X86_64
        };
        assert_eq!(a.validate(), Ok(()));
        assert_eq!(a.zone_max_pfn(ZoneType::Dma), Some(0));
        assert_eq!(a.zone_max_pfn(ZoneType::Dma32), Some(0));
    }
}
