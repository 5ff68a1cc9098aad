//! SPARSEMEM: `mem_section`s, their memmaps and pageblock usemaps (Linux: `mm/sparse.c`,
//! `include/linux/mmzone.h`).
//!
//! Physical memory is cut into sections of `2^section_size_bits` bytes (an architecture
//! parameter, [`ArchParams::section_size_bits`]: 128 MiB on x86_64, so the figures below
//! are x86_64's). Only sections that contain RAM get a
//! memmap (the array of `struct Page` for the whole section, hole frames included) and a
//! usemap (8 bits per pageblock). A machine with RAM at 0–2 GiB and 1024–1026 GiB thus pays
//! for 4 GiB of descriptors, not 1 TiB, and `pfn_to_page` stays O(1): the section number is
//! the pfn shifted right (by a shift the model holds, read once per lookup), and the section
//! holds the memmap address.
//!
//! # `mem_section` layout
//!
//! Two levels, as Linux's `SPARSEMEM_EXTREME`: a root table of pointers, each root a page
//! of [`SECTIONS_PER_ROOT`] [`MemSection`]s. The root table and every root are allocated from
//! memblock on demand, not held inline: the number of possible sections depends on the
//! architecture parameters, and a full inline table for x86_64's 46-bit physical addresses
//! would be 8 MiB; even the table of root pointers (16 KiB) would bloat the model object
//! that the kernel keeps in a static. The root table is sized to the highest present
//! section, so a small machine pays 8 bytes for it, and a root page is only allocated for a
//! range of 256 sections (32 GiB on x86_64) that holds RAM.
//!
//! # Usemaps
//!
//! A section's usemap holds [`NR_PAGEBLOCK_BITS`] (8) bits per pageblock, at least one 64-bit word; a pageblock's
//! bits are found as [`crate::model::pageblock::pfn_to_bitidx`] says.
//!
//! # The biased memmap pointer
//!
//! A section stores `memmap - section_start_pfn * size_of::<Page>()` (wrapping), exactly as
//! Linux's `sparse_encode_mem_map`: `pfn_to_page(pfn)` is then `biased + pfn * 64` with no
//! subtraction of the section base. The low bits of that word are free (the memmap is page
//! aligned and the bias a multiple of 64) and hold the section state flags.
//!
//! # `page_to_pfn`
//!
//! The memmaps of different sections are not contiguous (each sits inside its own section
//! where possible), so pointer arithmetic from one base cannot work. Each `Page` carries its
//! section number in its flags word (classic SPARSEMEM's `page_to_section`), which leads to
//! the section's biased pointer: `(page - biased) / 64`. Two loads, O(1).
//!
//! # Where memmaps live
//!
//! By default, as Linux's boot-time `sparse_init` does, every section's memmap and usemap
//! come from the top of the section's node (memblock allocates top-down), so they gather
//! in one run at the node's end and the rest of the node holds no reserved page: a
//! gigantic page (1 GiB on x86_64) can only be assembled by `alloc_contig_pages` from a
//! range with no reserved page in it. With [`crate::ModelParams::memmap_on_memory`] each
//! section's metadata is allocated inside that section instead when it has room (what
//! Linux's `memory_hotplug.memmap_on_memory` does for hot-added blocks: the metadata of a
//! range lives in that range, so a block can be removed with its memmap), which pins one
//! 2 MiB run in every section. Either way a memmap that cannot be placed as asked goes on
//! the section's node, otherwise anywhere; every fallback is logged and counted in
//! [`SparseStats::memmaps_not_local`].
//!
//! # Publication invariant
//!
//! A section gets [`SECTION_HAS_MEM_MAP`] only after all [`SparseMem::pages_per_section`]
//! descriptors and
//! its usemap are initialised ([`SparseMem::init_section_memmap`]); every accessor checks that
//! bit before forming a `&Page`, so no reference to uninitialised memory is ever created.

use core::mem::size_of;
use core::ptr;
use core::sync::atomic::AtomicU64;

use crate::model::arch::ArchParams;
use crate::model::memblock::{AllocConstraint, Memblock, MemblockError};
use crate::model::mmzone::{
    Migratetype, NR_PAGEBLOCK_BITS, PAGE_SHIFT, PAGE_SIZE, PAGEBLOCK_ORDER, SECTION_SIZE_BITS,
};
use crate::model::page::Page;
use crate::port::platform::Platform;

/// `MemSection`s per root page.
pub const SECTIONS_PER_ROOT: u64 = PAGE_SIZE / size_of::<MemSection>() as u64;

/// 64-bit words in the usemap of a section of `1 << pfn_section_shift` pages (8 bits per
/// pageblock, at least one word).
pub const fn usemap_words(pfn_section_shift: u32) -> usize {
    (((1u64 << pfn_section_shift) >> PAGEBLOCK_ORDER) * NR_PAGEBLOCK_BITS as u64).div_ceil(64)
        as usize
}

/// The section contains RAM (`SECTION_MARKED_PRESENT`).
pub const SECTION_MARKED_PRESENT: usize = 1 << 0;
/// The section's memmap and usemap are initialised (`SECTION_HAS_MEM_MAP`).
pub const SECTION_HAS_MEM_MAP: usize = 1 << 1;
const SECTION_MAP_MASK: usize = !0x3f;

const _: () = assert!(size_of::<MemSection>() == 16);
const _: () = assert!(SECTIONS_PER_ROOT.is_power_of_two());
const _: () = assert!(64 % NR_PAGEBLOCK_BITS == 0);

/// One section's descriptor (`struct mem_section`).
#[repr(C)]
pub struct MemSection {
    /// Biased memmap address | state flags.
    section_mem_map: usize,
    /// The usemap: pageblock flags words.
    usemap: *const AtomicU64,
}

impl MemSection {
    /// True if the section contains RAM.
    #[inline]
    pub fn present(&self) -> bool {
        self.section_mem_map & SECTION_MARKED_PRESENT != 0
    }

    /// True if the section's memmap is initialised.
    #[inline]
    pub fn has_mem_map(&self) -> bool {
        self.section_mem_map & SECTION_HAS_MEM_MAP != 0
    }

    #[inline]
    fn biased_map(&self) -> usize {
        self.section_mem_map & SECTION_MAP_MASK
    }
}

/// What the SPARSEMEM metadata costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseStats {
    /// Sections containing RAM.
    pub present_sections: usize,
    /// Bytes of the root pointer table.
    pub root_table_bytes: u64,
    /// Bytes of root pages.
    pub root_bytes: u64,
    /// Bytes of memmaps.
    pub memmap_bytes: u64,
    /// Bytes of usemaps.
    pub usemap_bytes: u64,
    /// Memmaps that could not be placed where asked (inside their own section with
    /// `memmap_on_memory`, else on their node) and went to the fallback.
    pub memmaps_not_local: usize,
    /// Whether each memmap was asked to live inside its own section
    /// ([`crate::ModelParams::memmap_on_memory`]) rather than at the top of its node.
    pub memmap_on_memory: bool,
}

impl SparseStats {
    /// All metadata bytes.
    pub fn total_bytes(&self) -> u64 {
        self.root_table_bytes + self.root_bytes + self.memmap_bytes + self.usemap_bytes
    }
}

/// The `mem_section` array and everything it points to.
pub struct SparseMem {
    /// Direct-map address of the root table (`nr_roots` pointers), null when empty.
    roots: *mut *mut MemSection,
    nr_roots: u64,
    /// `PFN_SECTION_SHIFT`: `section_size_bits - PAGE_SHIFT`, from the architecture
    /// parameters.
    pfn_section_shift: u32,
    /// Words of every section's usemap ([`usemap_words`] of the shift).
    usemap_words: usize,
    stats: SparseStats,
}

// SAFETY: the pointers lead to memblock-reserved memory owned by this structure for its whole
// life. After construction, sections are only read, and the pages and usemap words they
// lead to are atomics, so sharing `&SparseMem` between CPUs is race-free.
unsafe impl Send for SparseMem {}
// SAFETY: as above.
unsafe impl Sync for SparseMem {}

impl Default for SparseMem {
    fn default() -> Self {
        SparseMem::new()
    }
}

impl SparseMem {
    /// No sections at all: every pfn is invalid. (Sections of x86_64's default size.)
    pub const fn new() -> SparseMem {
        SparseMem::empty(SECTION_SIZE_BITS - PAGE_SHIFT)
    }

    const fn empty(pfn_section_shift: u32) -> SparseMem {
        SparseMem {
            roots: ptr::null_mut(),
            nr_roots: 0,
            pfn_section_shift,
            usemap_words: usemap_words(pfn_section_shift),
            stats: SparseStats {
                present_sections: 0,
                root_table_bytes: 0,
                root_bytes: 0,
                memmap_bytes: 0,
                usemap_bytes: 0,
                memmaps_not_local: 0,
                memmap_on_memory: false,
            },
        }
    }

    /// Build the section array from memblock's RAM (`memblocks_present` + `sparse_init`):
    /// mark present every section holding RAM and give each a memmap and usemap, allocated
    /// from memblock (which reserves them). The memmaps are not initialised yet: the
    /// caller runs [`SparseMem::init_section_memmap`] on every present section once every
    /// boot reservation is known.
    ///
    /// Sections are `arch.section_size_bits` wide; `arch` must be valid
    /// ([`ArchParams::validate`]) and memblock's RAM below `arch.physmem_limit()`, as the
    /// memory model ensures.
    pub fn init<P: Platform + ?Sized>(
        platform: &P,
        memblock: &mut Memblock,
        arch: &ArchParams,
        memmap_on_memory: bool,
    ) -> Result<SparseMem, SparseError> {
        let mut sparse = SparseMem::empty(arch.pfn_section_shift());
        sparse.stats.memmap_on_memory = memmap_on_memory;
        let Some(last) = memblock.memory().last() else {
            return Ok(sparse);
        };
        let max_section = sparse.pfn_to_section_nr((last.end() - 1) >> PAGE_SHIFT);
        debug_assert!(max_section < arch.nr_mem_sections());
        // Sized from the highest present section, not from NR_MEM_SECTIONS.
        let nr_roots = max_section / SECTIONS_PER_ROOT + 1;
        let table_bytes = nr_roots * size_of::<*mut MemSection>() as u64;
        let first_nid = memblock.memory()[0].nid as usize;
        let table = memblock
            .alloc_zeroed(
                platform,
                table_bytes,
                size_of::<usize>() as u64,
                AllocConstraint::ANYWHERE.on_node(first_nid, false),
            )
            .map_err(SparseError::RootTable)?;
        sparse.roots = platform.phys_to_virt(table) as *mut *mut MemSection;
        sparse.nr_roots = nr_roots;
        sparse.stats.root_table_bytes = table_bytes;

        // Mark present sections, allocating roots on first use. Regions are sorted, so
        // sections come in increasing order and each is visited at most once per region.
        let mut i = 0;
        while let Some(r) = memblock.memory().get(i).copied() {
            let first = sparse.pfn_to_section_nr(r.base >> PAGE_SHIFT);
            let last = sparse.pfn_to_section_nr((r.end() - 1) >> PAGE_SHIFT);
            for nr in first..=last {
                let ms = sparse.section_slot(platform, memblock, nr, r.nid as usize)?;
                // SAFETY: `ms` points into a zeroed root page owned by `sparse`; no reference
                // to it exists yet.
                unsafe { (*ms).section_mem_map |= SECTION_MARKED_PRESENT };
            }
            i += 1;
        }

        // Allocate memmaps and usemaps.
        for nr in 0..=max_section {
            let Some(ms) = sparse.section_ptr(nr) else {
                continue;
            };
            // SAFETY: `ms` is a slot in a root page owned by `sparse`; single-threaded.
            if unsafe { (*ms).section_mem_map } & SECTION_MARKED_PRESENT == 0 {
                continue;
            }
            let start_pfn = sparse.section_nr_to_pfn(nr);
            let nid = memblock
                .memory()
                .iter()
                .find(|r| (r.end() >> PAGE_SHIFT) > start_pfn)
                .map_or(0, |r| r.nid as usize);
            let memmap_bytes = sparse.section_memmap_bytes();
            let usemap_bytes = sparse.usemap_bytes();
            let size = memmap_bytes + usemap_bytes;
            let local = if memmap_on_memory {
                AllocConstraint::in_section(nr, sparse.pfn_section_shift).on_node(nid, true)
            } else {
                AllocConstraint::ANYWHERE.on_node(nid, true)
            };
            let phys = match memblock.alloc(platform, size, PAGE_SIZE, local) {
                Ok(phys) => phys,
                Err(_) => {
                    sparse.stats.memmaps_not_local += 1;
                    log::info!(
                        "sparse: section {nr:#x} has no room for its memmap; placing it on node {nid} or elsewhere"
                    );
                    memblock
                        .alloc(
                            platform,
                            size,
                            PAGE_SIZE,
                            AllocConstraint::ANYWHERE.on_node(nid, false),
                        )
                        .map_err(|e| SparseError::Memmap {
                            section: nr,
                            bytes: size,
                            error: e,
                        })?
                }
            };
            let map = platform.phys_to_virt(phys) as usize;
            let biased = map.wrapping_sub((start_pfn as usize).wrapping_mul(size_of::<Page>()));
            debug_assert_eq!(biased & !SECTION_MAP_MASK, 0);
            // SAFETY: as above; the memmap is recorded but not published (no
            // SECTION_HAS_MEM_MAP) until `init_section_memmap` has initialised it.
            unsafe {
                (*ms).section_mem_map = biased | SECTION_MARKED_PRESENT;
                (*ms).usemap = (map + memmap_bytes as usize) as *const AtomicU64;
            }
            sparse.stats.present_sections += 1;
            sparse.stats.memmap_bytes += memmap_bytes;
            sparse.stats.usemap_bytes += usemap_bytes;
        }
        Ok(sparse)
    }

    /// The slot of section `nr`, allocating its root page if needed.
    fn section_slot<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        memblock: &mut Memblock,
        nr: u64,
        nid: usize,
    ) -> Result<*mut MemSection, SparseError> {
        let root = nr / SECTIONS_PER_ROOT;
        debug_assert!(root < self.nr_roots);
        // SAFETY: `root < nr_roots`, the table's length; the table is owned by `self`.
        let slot = unsafe { self.roots.add(root as usize) };
        // SAFETY: `slot` is in bounds (above) and initialised (zeroed or set here).
        if unsafe { *slot }.is_null() {
            let phys = memblock
                .alloc_zeroed(
                    platform,
                    PAGE_SIZE,
                    PAGE_SIZE,
                    AllocConstraint::ANYWHERE.on_node(nid, false),
                )
                .map_err(|e| SparseError::Root { root, error: e })?;
            // SAFETY: as above.
            unsafe { *slot = platform.phys_to_virt(phys) as *mut MemSection };
            self.stats.root_bytes += PAGE_SIZE;
        }
        // SAFETY: the root page holds SECTIONS_PER_ROOT sections; the index is below that.
        Ok(unsafe { (*slot).add((nr % SECTIONS_PER_ROOT) as usize) })
    }

    /// Raw pointer to section `nr`'s descriptor, if its root exists.
    #[inline]
    fn section_ptr(&self, nr: u64) -> Option<*mut MemSection> {
        let root = nr / SECTIONS_PER_ROOT;
        if root >= self.nr_roots {
            return None;
        }
        // SAFETY: `root < nr_roots`, the length of the table owned by `self`.
        let root_page = unsafe { *self.roots.add(root as usize) };
        if root_page.is_null() {
            return None;
        }
        // SAFETY: a root page holds SECTIONS_PER_ROOT sections; the index is below that.
        Some(unsafe { root_page.add((nr % SECTIONS_PER_ROOT) as usize) })
    }

    /// Section `nr`'s descriptor (`__nr_to_section`), if its root exists.
    #[inline]
    pub fn nr_to_section(&self, nr: u64) -> Option<&MemSection> {
        // SAFETY: section slots are initialised (zeroed) when their root is allocated and
        // only written during construction, before any `&self` exists.
        self.section_ptr(nr).map(|p| unsafe { &*p })
    }

    #[inline]
    fn section_with_map(&self, pfn: u64) -> Option<&MemSection> {
        self.nr_to_section(self.pfn_to_section_nr(pfn))
            .filter(|ms| ms.has_mem_map())
    }

    /// The section number of `pfn` (`pfn_to_section_nr`).
    #[inline]
    pub fn pfn_to_section_nr(&self, pfn: u64) -> u64 {
        pfn >> self.pfn_section_shift
    }

    /// The first pfn of section `nr` (`section_nr_to_pfn`).
    #[inline]
    pub fn section_nr_to_pfn(&self, nr: u64) -> u64 {
        nr << self.pfn_section_shift
    }

    /// Shift from a pfn to its section number (`PFN_SECTION_SHIFT`).
    #[inline]
    pub fn pfn_section_shift(&self) -> u32 {
        self.pfn_section_shift
    }

    /// log2 of the section size in bytes (`SECTION_SIZE_BITS`).
    #[inline]
    pub fn section_size_bits(&self) -> u32 {
        self.pfn_section_shift + PAGE_SHIFT
    }

    /// Pages in a section (`PAGES_PER_SECTION`).
    #[inline]
    pub fn pages_per_section(&self) -> u64 {
        1 << self.pfn_section_shift
    }

    /// Bytes of one section's memmap.
    #[inline]
    pub fn section_memmap_bytes(&self) -> u64 {
        self.pages_per_section() * size_of::<Page>() as u64
    }

    /// Bytes of one section's usemap.
    #[inline]
    pub fn usemap_bytes(&self) -> u64 {
        (self.usemap_words * size_of::<AtomicU64>()) as u64
    }

    /// Write the memmap of present section `nr` and publish it (`memmap_init` for one
    /// section). `classify(pfn)` returns the flags word for `pfn` and the end of the run of
    /// pfns sharing that word (at least `pfn + 1`); runs are written with plain stores.
    /// Every pageblock is marked [`Migratetype::Movable`].
    ///
    /// Does nothing (returns false) if the section is not present or already published.
    pub fn init_section_memmap(
        &mut self,
        nr: u64,
        mut classify: impl FnMut(u64) -> (u64, u64),
    ) -> bool {
        let Some(ms) = self.section_ptr(nr) else {
            return false;
        };
        // SAFETY: `&mut self`: no `&MemSection` or `&Page` derived from `self` is alive.
        let ms = unsafe { &mut *ms };
        if !ms.present() || ms.has_mem_map() || ms.usemap.is_null() {
            return false;
        }
        let start = self.section_nr_to_pfn(nr);
        let end = start + self.pages_per_section();
        let base = ms.biased_map();
        let mut pfn = start;
        while pfn < end {
            let (flags, run_end) = classify(pfn);
            let run_end = run_end.clamp(pfn + 1, end);
            let first = base.wrapping_add(pfn as usize * size_of::<Page>()) as *mut Page;
            for i in 0..(run_end - pfn) as usize {
                // SAFETY: `first + i` is the descriptor of a pfn inside this section, whose
                // memmap (pages_per_section descriptors, reserved in memblock) the section
                // owns. The section is not published, so no reference to any of these
                // descriptors exists and a plain, non-atomic write is sound: this is the
                // write that makes the atomics inside valid in the first place.
                unsafe { first.add(i).write(Page::new(flags)) };
            }
            pfn = run_end;
        }
        let movable = movable_usemap_word();
        for w in 0..self.usemap_words {
            // SAFETY: the usemap (usemap_words words, reserved with the memmap) is owned by
            // this unpublished section; nothing else refers to it.
            unsafe {
                (ms.usemap as *mut AtomicU64)
                    .add(w)
                    .write(AtomicU64::new(movable))
            };
        }
        ms.section_mem_map |= SECTION_HAS_MEM_MAP;
        true
    }

    /// True if `pfn` has a `struct Page` (`pfn_valid`).
    #[inline]
    pub fn pfn_valid(&self, pfn: u64) -> bool {
        self.section_with_map(pfn).is_some()
    }

    /// The descriptor of `pfn` (`pfn_to_page`), or `None` if `pfn` is not valid.
    #[inline]
    pub fn pfn_to_page(&self, pfn: u64) -> Option<&Page> {
        let ms = self.section_with_map(pfn)?;
        let p = ms
            .biased_map()
            .wrapping_add((pfn as usize).wrapping_mul(size_of::<Page>()));
        // SAFETY: the section has SECTION_HAS_MEM_MAP, so its memmap holds initialised
        // descriptors for every pfn of the section, and `pfn` is in it (same section
        // number). The memmap is reserved for the life of `self`.
        Some(unsafe { &*(p as *const Page) })
    }

    /// The whole memmap of the section holding `pfn` (its [`SparseMem::pages_per_section`]
    /// descriptors, the first describing the section's first pfn), if it has one. Lets a
    /// walk over many pfns look the section up once; `pfn`'s own descriptor is at index
    /// `pfn & (pages_per_section - 1)`.
    pub fn section_memmap(&self, pfn: u64) -> Option<&[Page]> {
        let start = self.section_nr_to_pfn(self.pfn_to_section_nr(pfn));
        let first = self.pfn_to_page(start)?;
        // SAFETY: the section has SECTION_HAS_MEM_MAP (`pfn_to_page` succeeded), so its
        // memmap holds pages_per_section initialised, contiguous descriptors starting with
        // `first`, reserved for the life of `self`.
        Some(unsafe {
            core::slice::from_raw_parts(first as *const Page, self.pages_per_section() as usize)
        })
    }

    /// The pfn described by `page` (`page_to_pfn`), using the section number in its flags.
    ///
    /// `page` must be a descriptor from this memmap (every `&Page` obtained from
    /// [`SparseMem::pfn_to_page`] is); for any other `Page` the result is meaningless (but
    /// computing it is harmless). [`SparseMem::try_page_to_pfn`] checks.
    #[inline]
    pub fn page_to_pfn(&self, page: &Page) -> u64 {
        let biased = self
            .nr_to_section(page.section_nr())
            .map_or(0, |ms| ms.biased_map());
        ((page as *const Page as usize).wrapping_sub(biased) / size_of::<Page>()) as u64
    }

    /// [`SparseMem::page_to_pfn`], checked: `None` unless `page` is the descriptor of a
    /// valid pfn of this memmap.
    ///
    /// One section lookup: the section named in the page's flags must have a memmap, and
    /// the pfn computed from it must lie in that same section. Then `page` is exactly the
    /// descriptor of that pfn, because both the memmap base and every `Page` are 64-byte
    /// aligned, so the offset from the base is a whole number of descriptors.
    #[inline]
    pub fn try_page_to_pfn(&self, page: &Page) -> Option<u64> {
        self.page_to_pfn_section(page).map(|(pfn, _)| pfn)
    }

    /// [`SparseMem::try_page_to_pfn`] together with the page's section, so that a caller
    /// needing the pageblock bits too does the section lookup once.
    #[inline]
    pub fn page_to_pfn_section(&self, page: &Page) -> Option<(u64, &MemSection)> {
        let nr = page.section_nr();
        let ms = self.nr_to_section(nr).filter(|ms| ms.has_mem_map())?;
        let pfn = ((page as *const Page as usize).wrapping_sub(ms.biased_map()) / size_of::<Page>())
            as u64;
        (self.pfn_to_section_nr(pfn) == nr).then_some((pfn, ms))
    }

    /// The usemap words of the section holding `pfn`, if it has a memmap.
    #[inline]
    pub fn usemap(&self, pfn: u64) -> Option<&[AtomicU64]> {
        self.section_usemap(self.section_with_map(pfn)?)
    }

    /// The pageblock usemap of section `ms` (one of this memmap's sections), if its memmap
    /// is published.
    #[inline]
    pub fn section_usemap<'a>(&'a self, ms: &'a MemSection) -> Option<&'a [AtomicU64]> {
        if !ms.has_mem_map() {
            return None;
        }
        // SAFETY: a published section's usemap holds `usemap_words` initialised atomics
        // (every section of one `SparseMem` has the same size), reserved for as long as the
        // `SparseMem` this section belongs to, which `&self` borrows.
        Some(unsafe { core::slice::from_raw_parts(ms.usemap, self.usemap_words) })
    }

    /// Numbers of the sections that are present (contain RAM), in increasing order.
    pub fn present_sections(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.nr_roots * SECTIONS_PER_ROOT)
            .filter(move |&nr| self.nr_to_section(nr).is_some_and(|ms| ms.present()))
    }

    /// Metadata cost figures.
    pub fn stats(&self) -> SparseStats {
        self.stats
    }
}

/// A usemap word with every pageblock's migratetype Movable and skip bit clear.
const fn movable_usemap_word() -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 64 / NR_PAGEBLOCK_BITS {
        w |= (Migratetype::Movable as u64) << (i * NR_PAGEBLOCK_BITS);
        i += 1;
    }
    w
}

/// Why SPARSEMEM could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseError {
    /// No memory for the root pointer table.
    RootTable(MemblockError),
    /// No memory for a root page.
    Root {
        /// Root index.
        root: u64,
        /// The allocation failure.
        error: MemblockError,
    },
    /// No memory for a section's memmap and usemap.
    Memmap {
        /// Section number.
        section: u64,
        /// Bytes asked for (memmap and usemap).
        bytes: u64,
        /// The allocation failure.
        error: MemblockError,
    },
}

impl core::fmt::Display for SparseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SparseError::RootTable(e) => write!(f, "sparse: no memory for mem_section roots: {e}"),
            SparseError::Root { root, error } => {
                write!(f, "sparse: no memory for mem_section root {root}: {error}")
            }
            SparseError::Memmap {
                section,
                bytes,
                error,
            } => write!(
                f,
                "sparse: no memory for the memmap of section {section:#x} ({} KiB): {error}",
                bytes / 1024
            ),
        }
    }
}

impl core::error::Error for SparseError {}
