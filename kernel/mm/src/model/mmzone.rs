//! The shared vocabulary of the allocator: sizes, migratetypes and zone types.
//!
//! Linux keeps these in `include/linux/mmzone.h` and `pageblock-flags.h`. They live in one
//! small module here because every other module (the memory model, the buddy lists, the
//! /proc formatters) must agree on them bit for bit: a migratetype's number is stored in the
//! pageblock bitmap and its name is printed in /proc/pagetypeinfo, and a zone's index is
//! stored in every `struct Page`.

#![deny(unsafe_code)]

/// log2 of the page size.
pub const PAGE_SHIFT: u32 = 12;
/// Bytes in a base page.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// The largest buddy order: blocks of up to `1 << MAX_PAGE_ORDER` pages (4 MiB).
pub const MAX_PAGE_ORDER: u32 = 10;
/// Number of orders with a free area (0..=MAX_PAGE_ORDER).
pub const NR_PAGE_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;
/// Pages in the largest buddy block.
pub const MAX_ORDER_NR_PAGES: u64 = 1 << MAX_PAGE_ORDER;

/// Orders above this are "costly": they may need compaction, and the pcp lists hold only
/// orders up to it (plus `PAGEBLOCK_ORDER`).
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;

/// A pageblock is the unit of mobility grouping: 2 MiB, one huge page.
pub const PAGEBLOCK_ORDER: u32 = 9;
/// Pages in a pageblock.
pub const PAGEBLOCK_NR_PAGES: u64 = 1 << PAGEBLOCK_ORDER;

/// x86_64's default log2 of the SPARSEMEM section size (128 MiB). The model uses the
/// run-time [`crate::model::arch::ArchParams::section_size_bits`]; this is only its default.
pub const SECTION_SIZE_BITS: u32 = 27;
/// Pages in a section with the x86_64 default [`SECTION_SIZE_BITS`] (the run-time value is
/// [`crate::model::sparse::SparseMem::pages_per_section`]).
pub const PAGES_PER_SECTION: u64 = 1 << (SECTION_SIZE_BITS - PAGE_SHIFT);
/// x86_64's default physical address width (4-level paging): addresses above
/// `1 << MAX_PHYSMEM_BITS` are never managed. The model uses the run-time
/// [`crate::model::arch::ArchParams::max_physmem_bits`]; this is only its default.
pub const MAX_PHYSMEM_BITS: u32 = 46;
/// Number of possible sections below `1 << MAX_PHYSMEM_BITS` with the x86_64 defaults.
pub const NR_MEM_SECTIONS: u64 = 1 << (MAX_PHYSMEM_BITS - SECTION_SIZE_BITS);

/// Flag bits stored per pageblock: 3 migratetype bits, the compaction skip bit and, while
/// the block is isolated, the 3 bits of the migratetype it had before (rounded up to a
/// power of two so a block's bits never straddle a usemap word, as Linux 6.x rounds its
/// five bits up to 8).
pub const NR_PAGEBLOCK_BITS: u32 = 8;

/// Upper bound on NUMA nodes this crate supports: node ids are `0..MAX_NUMNODES`
/// (Linux's x86_64 default, `NODES_SHIFT` 6). Per-node state lives in each node's
/// descriptor, allocated on that node at boot, so a machine pays for the nodes it has;
/// what stays sized by this bound is one pointer (`NODE_DATA`) and one bit per node.
pub const MAX_NUMNODES: usize = 64;

/// The mobility class of a pageblock and of the free lists that hold its pages.
///
/// The numbering is Linux's and is stored in the pageblock bitmap, so it must not change.
/// Only the first [`MIGRATE_PCPTYPES`] types have per-CPU lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Migratetype {
    /// Kernel allocations that can never move (page tables, slab of most kinds).
    Unmovable = 0,
    /// Pages whose contents can be migrated by rewriting the PTE that maps them.
    Movable = 1,
    /// Kernel allocations that can be freed on demand (caches).
    Reclaimable = 2,
    /// Blocks reserved for high-order atomic allocations.
    HighAtomic = 3,
    /// Contiguous memory allocator areas: movable allocations only.
    Cma = 4,
    /// Blocks being isolated (for compaction capture or offlining): never allocated from.
    Isolate = 5,
}

/// Number of migratetypes (the length of every per-type array).
pub const MIGRATE_TYPES: usize = 6;
/// Number of migratetypes that have per-CPU lists (Unmovable, Movable, Reclaimable).
pub const MIGRATE_PCPTYPES: usize = 3;

impl Migratetype {
    /// Every migratetype, in numeric order.
    pub const ALL: [Migratetype; MIGRATE_TYPES] = [
        Migratetype::Unmovable,
        Migratetype::Movable,
        Migratetype::Reclaimable,
        Migratetype::HighAtomic,
        Migratetype::Cma,
        Migratetype::Isolate,
    ];

    /// The name printed in /proc/pagetypeinfo.
    pub const fn name(self) -> &'static str {
        match self {
            Migratetype::Unmovable => "Unmovable",
            Migratetype::Movable => "Movable",
            Migratetype::Reclaimable => "Reclaimable",
            Migratetype::HighAtomic => "HighAtomic",
            Migratetype::Cma => "CMA",
            Migratetype::Isolate => "Isolate",
        }
    }

    /// The type stored as `bits` in a pageblock bitmap, or `None` for an invalid value.
    #[inline]
    pub const fn from_bits(bits: u8) -> Option<Migratetype> {
        match bits {
            0 => Some(Migratetype::Unmovable),
            1 => Some(Migratetype::Movable),
            2 => Some(Migratetype::Reclaimable),
            3 => Some(Migratetype::HighAtomic),
            4 => Some(Migratetype::Cma),
            5 => Some(Migratetype::Isolate),
            _ => None,
        }
    }

    /// Index into per-type arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// True for the types that have per-CPU lists.
    #[inline]
    pub const fn is_pcptype(self) -> bool {
        (self as usize) < MIGRATE_PCPTYPES
    }

    /// The types an allocation of this type may fall back to, in preference order.
    ///
    /// Unmovable and Reclaimable prefer each other before polluting Movable blocks; Movable
    /// prefers Reclaimable. HighAtomic, CMA and Isolate have no fallbacks.
    #[inline]
    pub const fn fallbacks(self) -> &'static [Migratetype] {
        match self {
            Migratetype::Unmovable => &[Migratetype::Reclaimable, Migratetype::Movable],
            Migratetype::Movable => &[Migratetype::Reclaimable, Migratetype::Unmovable],
            Migratetype::Reclaimable => &[Migratetype::Unmovable, Migratetype::Movable],
            _ => &[],
        }
    }
}

/// The zones of a node, lowest first. The index is stored in `struct Page` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ZoneType {
    /// Physical addresses below [`crate::model::arch::ArchParams::dma_limit`] (16 MiB on
    /// x86_64: ISA DMA). Empty on an architecture without it.
    Dma = 0,
    /// Physical addresses below [`crate::model::arch::ArchParams::dma32_limit`] (4 GiB on
    /// x86_64: 32-bit DMA), above ZONE_DMA. Empty on an architecture without it.
    Dma32 = 1,
    /// Everything above the DMA zones.
    Normal = 2,
    /// A virtual zone carved from the top of memory by `kernelcore=`/`movablecore=`:
    /// movable allocations only, so it can always be compacted.
    Movable = 3,
}

/// Number of zone types.
pub const MAX_NR_ZONES: usize = 4;

impl ZoneType {
    /// Every zone type, lowest first.
    pub const ALL: [ZoneType; MAX_NR_ZONES] = [
        ZoneType::Dma,
        ZoneType::Dma32,
        ZoneType::Normal,
        ZoneType::Movable,
    ];

    /// The name printed in /proc files (`%8s`-padded by the formatters).
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::Movable => "Movable",
        }
    }

    /// Index into per-zone arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The zone type with index `idx`, if any.
    #[inline]
    pub const fn from_index(idx: usize) -> Option<ZoneType> {
        match idx {
            0 => Some(ZoneType::Dma),
            1 => Some(ZoneType::Dma32),
            2 => Some(ZoneType::Normal),
            3 => Some(ZoneType::Movable),
            _ => None,
        }
    }
}

/// Convert a physical address to its page frame number.
pub const fn phys_to_pfn(pa: u64) -> u64 {
    pa >> PAGE_SHIFT
}

/// Convert a page frame number to the physical address of its first byte.
pub const fn pfn_to_phys(pfn: u64) -> u64 {
    pfn << PAGE_SHIFT
}

/// Which of a zone's watermarks (Linux's `enum zone_watermarks`). The value is the
/// low-bits encoding used by `AllocFlags` (`crate::page_alloc::gfp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum WatermarkKind {
    /// `WMARK_MIN`.
    Min = 0,
    /// `WMARK_LOW`.
    Low = 1,
    /// `WMARK_HIGH`.
    High = 2,
}

/// Number of watermarks per zone (min, low, high).
pub const NR_WMARK: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migratetype_bits_round_trip() {
        for mt in Migratetype::ALL {
            assert_eq!(Migratetype::from_bits(mt as u8), Some(mt));
        }
        assert_eq!(Migratetype::from_bits(6), None);
        assert_eq!(Migratetype::from_bits(7), None);
    }

    #[test]
    fn fallbacks_match_linux_table() {
        use Migratetype::*;
        assert_eq!(Unmovable.fallbacks(), &[Reclaimable, Movable]);
        assert_eq!(Movable.fallbacks(), &[Reclaimable, Unmovable]);
        assert_eq!(Reclaimable.fallbacks(), &[Unmovable, Movable]);
        assert!(HighAtomic.fallbacks().is_empty());
        assert!(Cma.fallbacks().is_empty());
        assert!(Isolate.fallbacks().is_empty());
    }

    #[test]
    fn sizes() {
        assert_eq!(PAGES_PER_SECTION, 32768);
        assert_eq!(NR_PAGE_ORDERS, 11);
        assert_eq!(NR_MEM_SECTIONS, 1 << 19);
    }
}
