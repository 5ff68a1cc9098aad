//! File mappings: page-cache pages mapped read-only into the movable window (Linux:
//! `mm/mmap.c` for a file VMA, `filemap_fault`, `zap_pte_range`, and the file half of
//! `mm/rmap.c`: `folio_referenced`, `try_to_unmap`, `rmap_walk_file`).
//!
//! Reading a file by copy ([`PageAllocator::page_cache_read`]) never lets anyone hold a
//! cache page's physical address for long. A *mapping* does: the page's frame sits in a
//! page-table entry that any CPU may use at any moment. That is what makes reclaim and
//! compaction of the page cache honest work here: before a mapped page can be dropped,
//! every entry that maps it must be found and cleared and every TLB flushed; before it
//! can be moved, every entry must become a migration entry and later point at the copy.
//!
//! # Windows
//!
//! [`PageAllocator::filemap_mmap`] reserves a **file window**: as many pages of the
//! platform's movable virtual range as the file has, in the same slot table as the anon
//! regions of [`crate::movement::rmap`] (one first-fit search, one generation protocol),
//! with the slot's `file` naming the file. A window maps its file from offset 0, so the
//! address of page `index` in it is `start + index * PAGE_SIZE` (Linux's
//! `vma_address()` with `vm_pgoff` 0). Nothing is mapped up front: the first touch of an
//! address faults, and [`PageAllocator::filemap_fault`] finds or reads the cache page (the
//! same lookup and fill path as a read) and maps it with a new **read-only** entry
//! ([`MovableMapping::pte_map_readonly`](crate::port::platform::MovableMapping::pte_map_readonly)).
//! [`PageAllocator::filemap_munmap`] clears every entry with a compare-exchange, flushes the
//! TLBs once per batch and drops the mappings' references.
//!
//! # Reverse map
//!
//! A file page may be mapped by several windows of its file. Linux finds them in the
//! file's `i_mmap` interval tree; here the walk (`file_rmap_replace`)
//! scans the fixed slot table for live windows of the page's file, which is bounded
//! ([`crate::movement::rmap::MAX_ANON_REGIONS`] slots) and needs no heap.
//!
//! # Counts and locks
//!
//! - `mapcount` (Linux's `_mapcount`) counts the entries that map the page; each holds a
//!   reference, so a mapped cache page has `1 + mapcount` references at rest (the cache's
//!   and the mappings').
//! - Every change of a file page's entries happens under its **page lock**: the fault
//!   maps under it, munmap and reclaim unmap under it, migration turns entries into
//!   migration entries and back under it. So under the page lock `mapcount` equals the
//!   number of entries, and a walk that holds it sees every mapping. The fault takes the
//!   page lock only after it holds a reference, so an eviction that froze the count
//!   first wins and the fault reads the page again; a fault that got its reference
//!   first makes the eviction's freeze fail and the page stays (a page whose entry was
//!   re-established concurrently is never freed).
//! - A fault holds its window (the slot's operation count) while it maps, so munmap,
//!   which waits for the operations in progress, never misses an entry being added.
//!
//! A migration entry in a file window is waited out like an anon one: the fault sees it,
//! waits until migration replaced it, and retries.

#![deny(unsafe_code)]

use core::sync::atomic::Ordering;

use crate::model::mmzone::PAGE_SIZE;
use crate::model::page::Page;
use crate::movement::rmap::{
    AnonRegion, DYING, LIVE, NO_FILE, RegionError, RegionId, RegionRef, ZAP_BATCH, generation_of,
    lock_page, wait_migration_entry,
};
use crate::page_alloc::PageAllocator;
use crate::port::platform::{Platform, Pte, PteError};
use crate::reclaim::filemap::{CacheError, MAX_FILE_PAGES};
use crate::report::vmstat::VmEvent;

/// A file mapped into the movable window: what [`PageAllocator::filemap_mmap`] returns
/// and [`PageAllocator::filemap_munmap`] consumes (so a mapping cannot be unmapped
/// twice). Share it by reference between the CPUs that read through it.
#[derive(Debug, PartialEq, Eq)]
pub struct FileMapping {
    id: RegionId,
    file: u32,
    start: u64,
    nr_pages: u64,
}

impl FileMapping {
    /// The mapped file.
    pub fn file(&self) -> u32 {
        self.file
    }

    /// First virtual address of the window.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Size of the window in pages (the file's size, rounded up).
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages
    }

    /// The virtual address of page `index` of the file, if the window covers it.
    pub fn va(&self, index: u64) -> Option<u64> {
        (index < self.nr_pages).then(|| self.start + index * PAGE_SIZE)
    }
}

/// Why a file-mapping operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmapError {
    /// The port cannot map file pages: no movable mapping capability, or no
    /// [`MovableMapping::pte_map_readonly`](crate::port::platform::MovableMapping::pte_map_readonly).
    Unsupported,
    /// No free slot in the window table or no free virtual range that large.
    NoSpace,
    /// The file is empty: there is nothing to map.
    EmptyFile(u32),
    /// The page cache refused (no backing, no such file, too large, out of memory, I/O).
    Cache(CacheError),
    /// The faulting address lies in no file window (a bug in the caller: the segfault
    /// analogue).
    NotInWindow(u64),
    /// The mapping is gone (already unmapped).
    Stale,
    /// The platform refused a page-table operation.
    Pte(PteError),
}

impl core::fmt::Display for MmapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmapError::Unsupported => {
                f.write_str("file mappings: the port cannot map pages read-only")
            }
            MmapError::NoSpace => f.write_str("file mappings: no free window slot or range"),
            MmapError::EmptyFile(n) => write!(f, "file mappings: file {n} is empty"),
            MmapError::Cache(e) => write!(f, "file mappings: {e}"),
            MmapError::NotInWindow(va) => write!(f, "file mappings: {va:#x} is in no window"),
            MmapError::Stale => f.write_str("file mappings: the mapping is gone"),
            MmapError::Pte(e) => write!(f, "file mappings: page-table operation refused: {e}"),
        }
    }
}

impl core::error::Error for MmapError {}

impl From<CacheError> for MmapError {
    fn from(e: CacheError) -> Self {
        MmapError::Cache(e)
    }
}

/// An inconsistency between the file windows and the pages they map, found by
/// [`PageAllocator::file_mappings_check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapCheckError {
    /// The virtual address (0 for a total).
    pub va: u64,
    /// The frame involved (0 if none).
    pub pfn: u64,
    /// What is wrong.
    pub what: &'static str,
}

impl core::fmt::Display for MapCheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "file mapping at {:#x} (pfn {:#x}): {}",
            self.va, self.pfn, self.what
        )
    }
}

/// Pages unmapped by one [`PageAllocator::filemap_munmap`] batch, with their locks held
/// until the batch's TLB flush.
struct ZapBatch<'a> {
    pages: [Option<&'a Page>; ZAP_BATCH],
    n: usize,
    lo: u64,
    hi: u64,
}

impl<P: Platform> PageAllocator<P> {
    /// Map `file` into a new window of the movable range (`mmap(PROT_READ, MAP_SHARED)`
    /// of the whole file). Nothing is mapped until it is touched.
    pub fn filemap_mmap(&self, file: u32) -> Result<FileMapping, MmapError> {
        if self.platform().movable_mapping().is_none() {
            return Err(MmapError::Unsupported);
        }
        let size = self.page_cache_file_size(file)?;
        let nr_pages = size.div_ceil(PAGE_SIZE);
        if nr_pages > MAX_FILE_PAGES {
            return Err(MmapError::Cache(CacheError::TooLarge(file)));
        }
        if nr_pages == 0 {
            return Err(MmapError::EmptyFile(file));
        }
        let id = self
            .reserve_window(nr_pages, file as u64)
            .map_err(|e| match e {
                RegionError::NoMovableMapping => MmapError::Unsupported,
                _ => MmapError::NoSpace,
            })?;
        let region = &self.region_table().regions[id.slot as usize];
        Ok(FileMapping {
            id,
            file,
            start: region.start.load(Ordering::Relaxed),
            nr_pages,
        })
    }

    /// Enter the live file window that contains `va`, with its file and the page index.
    fn file_window_of(&self, va: u64) -> Option<(RegionRef<'_>, u32, u64)> {
        for (slot, r) in self.region_table().regions.iter().enumerate() {
            let s = r.state.load(Ordering::Acquire);
            if s & LIVE == 0 || s & DYING != 0 || r.file.load(Ordering::Relaxed) == NO_FILE {
                continue;
            }
            // A cheap look at the span first (published before the slot went live), so a
            // fault enters only the window it lies in.
            let (start, nr) = (
                r.start.load(Ordering::Relaxed),
                r.nr_pages.load(Ordering::Relaxed),
            );
            if va < start || va >= start + nr * PAGE_SIZE {
                continue;
            }
            let id = RegionId {
                slot: slot as u16,
                generation: generation_of(s),
            };
            let Ok(g) = self.region_enter(id) else {
                continue;
            };
            // Entered with the generation read above: the span is that window's.
            let file = r.file.load(Ordering::Relaxed);
            if file == NO_FILE || va < g.start || va >= g.start + g.nr_pages * PAGE_SIZE {
                continue;
            }
            let index = (va - g.start) / PAGE_SIZE;
            return Some((g, file as u32, index));
        }
        None
    }

    /// Resolve a fault at `va` in a file window (`filemap_fault` + `finish_fault`): find
    /// the page in the cache or read it from the backing store, and map it read-only.
    /// Returns the frame now mapped there (someone else's mapping if another CPU won the
    /// race). A migration entry is waited out. Must be called with interrupts enabled and
    /// no spinlock held (it may allocate, reclaim and wait for a page lock).
    pub fn filemap_fault(&self, va: u64) -> Result<u64, MmapError> {
        let va = va & !(PAGE_SIZE - 1);
        let (g, file, index) = self.file_window_of(va).ok_or(MmapError::NotInWindow(va))?;
        loop {
            match self.mapping().pte_read(va) {
                Pte::Present(pfn) => return Ok(pfn),
                Pte::Migration(pfn) => {
                    wait_migration_entry(self.platform(), va, pfn);
                    continue;
                }
                Pte::None => {}
            }
            let (page, major) = self.read_cache_page_major(file, index)?;
            lock_page(page);
            // Evicted or migrated between the lookup and the lock: look again (Linux
            // checks `folio->mapping` after `lock_page` for the same reason).
            let still_cached =
                self.page_cache_file(page).is_some_and(|(f, _)| f == file) && page.index() == index;
            if !still_cached || self.mapping().pte_read(va) != Pte::None {
                page.unlock();
                self.put_page_logged(page, "filemap_fault (raced)");
                continue;
            }
            let pfn = self.page_to_pfn(page);
            // The count goes up before the entry appears, so no walk under the page lock
            // can see an entry its count does not explain; the lookup reference becomes
            // the mapping's.
            self.page_add_file_rmap(page);
            return match self.mapping().pte_map_readonly(va, pfn) {
                Ok(()) => {
                    g.region.nr_mapped.fetch_add(1, Ordering::Relaxed);
                    page.unlock();
                    self.count_vm_events(VmEvent::Pgfault, 1);
                    if major {
                        self.count_vm_events(VmEvent::Pgmajfault, 1);
                    }
                    Ok(pfn)
                }
                Err(e) => {
                    self.page_remove_file_rmap(page);
                    page.unlock();
                    self.put_page_logged(page, "filemap_fault (not mapped)");
                    Err(match e {
                        PteError::Unsupported => MmapError::Unsupported,
                        PteError::NoMemory => MmapError::Cache(CacheError::NoMemory),
                        e => MmapError::Pte(e),
                    })
                }
            };
        }
    }

    /// Unmap a file window (`munmap`): wait for faults in progress, clear every entry
    /// (compare-exchange under the page lock), flush the TLBs once per batch of up to
    /// [`ZAP_BATCH`] pages, drop the mappings' references, and free the window. The pages
    /// stay in the cache. Returns the pages that were mapped.
    pub fn filemap_munmap(&self, m: FileMapping) -> Result<u64, MmapError> {
        let region = self.region_kill(m.id, true).map_err(|_| MmapError::Stale)?;
        let mut b = ZapBatch {
            pages: [None; ZAP_BATCH],
            n: 0,
            lo: u64::MAX,
            hi: 0,
        };
        let mut zapped = 0;
        for index in 0..m.nr_pages {
            if region.nr_mapped.load(Ordering::Relaxed) == 0 {
                break;
            }
            let va = m.start + index * PAGE_SIZE;
            loop {
                let pfn = match self.mapping().pte_read(va) {
                    Pte::None => break,
                    Pte::Migration(pfn) => {
                        zapped += self.zap_finish(region, &mut b);
                        wait_migration_entry(self.platform(), va, pfn);
                        continue;
                    }
                    Pte::Present(pfn) => pfn,
                };
                let Some(page) = self.pfn_to_page(pfn).filter(|p| p.get_unless_zero()) else {
                    // The entry changed under us (a mapped page always has references).
                    core::hint::spin_loop();
                    continue;
                };
                // Wait for a page lock only while holding none (see crate::movement::migrate).
                if !page.trylock() {
                    zapped += self.zap_finish(region, &mut b);
                    lock_page(page);
                }
                if !self.mapping().pte_cmpxchg(va, Pte::Present(pfn), Pte::None) {
                    page.unlock();
                    self.put_page_logged(page, "filemap_munmap (raced)");
                    continue;
                }
                b.pages[b.n] = Some(page);
                b.n += 1;
                b.lo = b.lo.min(va);
                b.hi = b.hi.max(va + PAGE_SIZE);
                if b.n == ZAP_BATCH {
                    zapped += self.zap_finish(region, &mut b);
                }
                break;
            }
        }
        zapped += self.zap_finish(region, &mut b);
        self.region_release(region, m.id);
        Ok(zapped)
    }

    /// Flush the batch's range, then forget each page's mapping: mapcount, the lock, our
    /// probe reference and the mapping's.
    fn zap_finish(&self, region: &AnonRegion, b: &mut ZapBatch<'_>) -> u64 {
        if b.n == 0 {
            return 0;
        }
        self.flush_tlb_movable_range(b.lo, b.hi);
        let n = b.n as u64;
        for slot in b.pages.iter_mut().take(b.n) {
            if let Some(page) = slot.take() {
                self.page_remove_file_rmap(page);
                region.nr_mapped.fetch_sub(1, Ordering::Relaxed);
                page.unlock();
                self.put_page_logged(page, "filemap_munmap");
                self.put_page_logged(page, "filemap_munmap");
            }
        }
        (b.n, b.lo, b.hi) = (0, u64::MAX, 0);
        n
    }

    /// The reverse map of a file page (`rmap_walk_file`): for every live window of `file`
    /// (dying ones included: their entries are still there), compare-exchange the entry
    /// for page `index` from `old` to `new`, widening `range` by each changed address.
    /// An entry cleared to [`Pte::None`] leaves its window's count. Returns the entries
    /// changed. The caller holds the page lock (see the module documentation).
    pub(crate) fn file_rmap_replace(
        &self,
        file: u32,
        index: u64,
        old: Pte,
        new: Pte,
        range: &mut Option<(u64, u64)>,
    ) -> u32 {
        let mut n = 0;
        self.for_each_file_va(file, index, &mut |region, va| {
            if self.mapping().pte_cmpxchg(va, old, new) {
                n += 1;
                if new == Pte::None {
                    region.nr_mapped.fetch_sub(1, Ordering::Relaxed);
                }
                *range = Some(match *range {
                    None => (va, va + PAGE_SIZE),
                    Some((s, e)) => (s.min(va), e.max(va + PAGE_SIZE)),
                });
            }
        });
        n
    }

    /// Point the migration entries of a locked cache page back at it (migration gave up;
    /// non-present to present needs no flush). Returns the entries restored.
    pub(crate) fn restore_file_entries(&self, page: &Page) -> u32 {
        let Some((file, _)) = self.page_cache_file(page) else {
            return 0;
        };
        let pfn = self.page_to_pfn(page);
        self.file_rmap_replace(
            file,
            page.index(),
            Pte::Migration(pfn),
            Pte::Present(pfn),
            &mut None,
        )
    }

    /// Call `f` with each live window of `file` that covers page `index`, and the address
    /// of that page in it.
    fn for_each_file_va(&self, file: u32, index: u64, f: &mut dyn FnMut(&AnonRegion, u64)) {
        for r in &self.region_table().regions {
            if r.state.load(Ordering::Acquire) & LIVE == 0
                || r.file.load(Ordering::Relaxed) != file as u64
            {
                continue;
            }
            let (start, nr) = (
                r.start.load(Ordering::Relaxed),
                r.nr_pages.load(Ordering::Relaxed),
            );
            if index < nr {
                f(r, start + index * PAGE_SIZE);
            }
        }
    }

    /// How many entries mapping cache page `page` were accessed since last asked, clearing
    /// their accessed bits (`folio_referenced` for a file folio). The caller holds the
    /// page lock, so the entries found are exactly the page's.
    pub(crate) fn page_referenced_ptes(&self, page: &Page) -> u32 {
        let Some((file, _)) = self.page_cache_file(page) else {
            return 0;
        };
        let pfn = self.page_to_pfn(page);
        let mut young = 0;
        self.for_each_file_va(file, page.index(), &mut |_, va| {
            if self.mapping().pte_read(va) == Pte::Present(pfn)
                && self.mapping().pte_test_and_clear_young(va)
            {
                young += 1;
            }
        });
        young
    }

    /// Unmap every entry of a locked cache page (`try_to_unmap` for a file folio): each
    /// entry is cleared, its count and reference dropped, and its address added to
    /// `range`, which the caller flushes once for the whole batch **before** the page can
    /// be freed (the cache's and the caller's references keep it alive until then).
    /// Returns the entries cleared.
    pub(crate) fn try_to_unmap_file(&self, page: &Page, range: &mut Option<(u64, u64)>) -> u32 {
        let Some((file, _)) = self.page_cache_file(page) else {
            return 0;
        };
        let pfn = self.page_to_pfn(page);
        let n = self.file_rmap_replace(file, page.index(), Pte::Present(pfn), Pte::None, range);
        for _ in 0..n {
            self.page_remove_file_rmap(page);
            self.put_page_logged(page, "try_to_unmap_file");
        }
        n
    }

    /// Count one more entry mapping cache page `page` (`folio_add_file_rmap_pte`); its
    /// first makes the page count in its node's `nr_mapped`.
    pub(crate) fn page_add_file_rmap(&self, page: &Page) {
        if page.mapcount_inc() {
            self.lruvec(page.nid())
                .nr_mapped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count one entry less (`folio_remove_rmap_pte`); the last takes the page out of
    /// its node's `nr_mapped`.
    pub(crate) fn page_remove_file_rmap(&self, page: &Page) {
        if page.mapcount_dec() {
            self.lruvec(page.nid())
                .nr_mapped
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Entries of every file window mapped right now (Linux's `NR_FILE_MAPPED`,
    /// `Mapped:` in `/proc/meminfo`, counted per entry).
    pub fn file_mapped_pages(&self) -> u64 {
        self.region_table()
            .regions
            .iter()
            .filter(|r| {
                r.state.load(Ordering::Acquire) & LIVE != 0
                    && r.file.load(Ordering::Relaxed) != NO_FILE
            })
            .map(|r| r.nr_mapped.load(Ordering::Relaxed))
            .sum()
    }

    /// Check every file window against the pages it maps, from scratch (part of
    /// [`crate::report::debug::check`]; call it when no mapping changes): each entry maps a
    /// page of the cache that belongs to the window's file at that index, is not free,
    /// is on an LRU list (or isolated), and holds a reference per mapping besides the
    /// cache's; each window's count equals its entries; and each mapped page's
    /// `mapcount` equals the entries found for it. Returns the entries counted.
    pub fn file_mappings_check(&self) -> Result<u64, MapCheckError> {
        let mut total = 0;
        for r in &self.region_table().regions {
            let file = r.file.load(Ordering::Relaxed);
            if r.state.load(Ordering::Acquire) & LIVE == 0 || file == NO_FILE {
                continue;
            }
            let (start, nr) = (
                r.start.load(Ordering::Relaxed),
                r.nr_pages.load(Ordering::Relaxed),
            );
            let mut in_window = 0;
            for index in 0..nr {
                let va = start + index * PAGE_SIZE;
                let pfn = match self.mapping().pte_read(va) {
                    Pte::None => continue,
                    Pte::Present(pfn) | Pte::Migration(pfn) => pfn,
                };
                let bad = |what| Err(MapCheckError { va, pfn, what });
                let Some(page) = self.pfn_to_page(pfn) else {
                    return bad("maps a frame without a struct page");
                };
                if page.is_buddy() || page.refcount() < 1 {
                    return bad("maps a free page");
                }
                if self.page_cache_file(page).map(|(f, _)| f as u64) != Some(file)
                    || page.index() != index
                {
                    return bad("maps a page that is not its file's page at that index");
                }
                if !page.is_lru() && !page.is_isolated() {
                    return bad("maps a cache page that is on no LRU list");
                }
                let m = page.mapcount();
                if m < 1 || page.refcount() < 1 + m {
                    return bad("mapped page without a mapcount or a reference per mapping");
                }
                let mut found = 0;
                self.for_each_file_va(file as u32, index, &mut |_, v| {
                    if matches!(self.mapping().pte_read(v), Pte::Present(p) | Pte::Migration(p) if p == pfn)
                    {
                        found += 1;
                    }
                });
                if found != m {
                    return bad("mapcount differs from the entries that map the page");
                }
                in_window += 1;
            }
            if in_window != r.nr_mapped.load(Ordering::Relaxed) {
                return Err(MapCheckError {
                    va: start,
                    pfn: 0,
                    what: "window's mapped count differs from its entries",
                });
            }
            total += in_window;
        }
        Ok(total)
    }
}
