//! Movable "user memory" and its reverse map (Linux: anonymous VMAs and `anon_vma` rmap).
//!
//! SKELETON: the public API below is fixed; bodies are being written.
//!
//! Compaction can only move a page if it can find and rewrite every page-table entry that
//! maps it. This kernel has no processes, so its "user memory" is a set of *anon regions*:
//! ranges of the platform's movable virtual window ([`Platform::movable_va_range`]) whose
//! pages are allocated with a movable GFP (normally `GFP_HIGHUSER_MOVABLE`) and mapped one
//! 4 KiB PTE each. Every such page records its owner in `mapping` (the region's descriptor,
//! tagged [`crate::page::PAGE_MAPPING_ANON`]) and its page offset in `index`, so the one
//! virtual address that maps it is `region.start + index * PAGE_SIZE`: the reverse map is
//! O(1), exactly as Linux's `vma_address()` for an anon page with a single mapping.
//! `mapcount` counts that mapping (1 while mapped), `refcount` holds the mapping's
//! reference plus any temporary ones (isolation, pins); the page lock serialises zap and
//! migration.
//!
//! Region descriptors live in a fixed table inside the allocator (no heap in this crate),
//! so a descriptor's address is stable for as long as the allocator lives.

use crate::gfp::Gfp;
use crate::page::Page;
use crate::page_alloc::PageAllocator;
use crate::platform::Platform;

/// Most anon regions that can exist at once.
pub const MAX_ANON_REGIONS: usize = 256;

/// A handle to an anon region: a slot in the region table plus a generation, so a stale
/// handle is an error rather than a reference to someone else's region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionId {
    /// Slot in the table.
    pub slot: u16,
    /// Generation of the slot when the handle was made.
    pub generation: u32,
}

/// Why a region operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// All [`MAX_ANON_REGIONS`] slots are in use, or no virtual range of that size is free.
    NoSpace,
    /// Zero pages requested, or more than the window holds.
    BadSize,
    /// The handle names no live region (destroyed, or never made).
    Stale,
    /// Index outside the region.
    BadIndex(u64),
    /// The gfp mask is not movable (must include `__GFP_MOVABLE`) or is impossible.
    BadGfp,
    /// The page at that index is already mapped.
    AlreadyMapped(u64),
    /// No memory for the page or for a page-table page (counted like any failed allocation).
    NoMemory,
    /// The platform refused a page-table operation.
    Pte(crate::platform::PteError),
}

impl<P: Platform + 'static> PageAllocator<P> {
    /// Reserve `nr_pages` of movable virtual space; nothing is mapped yet.
    pub fn anon_region_create(&self, nr_pages: u64) -> Result<RegionId, RegionError> {
        let _ = nr_pages;
        todo!()
    }

    /// First virtual address and size in pages of a live region.
    pub fn anon_region_span(&self, r: RegionId) -> Result<(u64, u64), RegionError> {
        let _ = r;
        todo!()
    }

    /// Allocate one page with `gfp` (must be movable), zero it, and map it at `index`
    /// (`do_anonymous_page`). Returns the pfn.
    pub fn anon_region_populate(
        &self,
        r: RegionId,
        index: u64,
        gfp: Gfp,
    ) -> Result<u64, RegionError> {
        let _ = (r, index, gfp);
        todo!()
    }

    /// Unmap the page at `index`, flush TLBs, and drop the mapping's reference
    /// (`zap_pte_range` for one page). Ok(false) if nothing was mapped there.
    pub fn anon_region_zap(&self, r: RegionId, index: u64) -> Result<bool, RegionError> {
        let _ = (r, index);
        todo!()
    }

    /// Zap every page and release the region's slot and virtual range.
    pub fn anon_region_destroy(&self, r: RegionId) -> Result<(), RegionError> {
        let _ = r;
        todo!()
    }

    /// The pfn mapped at `index` right now (None if unmapped; waits out a migration entry).
    pub fn anon_region_pfn(&self, r: RegionId, index: u64) -> Result<Option<u64>, RegionError> {
        let _ = (r, index);
        todo!()
    }

    /// The reverse map: the virtual address that maps anon page `page`, if it is one
    /// (`page_address_in_vma`), in O(1) from `mapping` and `index`.
    pub fn page_anon_address(&self, page: &Page) -> Option<u64> {
        let _ = page;
        todo!()
    }

    /// Check a region from scratch: every mapped index's PTE names a page whose
    /// mapping is this region, whose index is that index, with mapcount 1 and a refcount
    /// of at least 1. Returns the number of mapped pages.
    pub fn anon_region_check(&self, r: RegionId) -> Result<u64, RmapError> {
        let _ = r;
        todo!()
    }
}

/// An inconsistency found by [`PageAllocator::anon_region_check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmapError {
    /// The handle is stale.
    Stale,
    /// The PTE at this index names a pfn with no struct page.
    UnknownPfn { index: u64, pfn: u64 },
    /// The page mapped at `index` does not point back to this region and index.
    WrongBackPointer { index: u64, pfn: u64 },
    /// The page mapped at `index` has a mapcount other than 1.
    BadMapcount { index: u64, pfn: u64, mapcount: i32 },
}
