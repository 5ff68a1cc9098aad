//! The page cache over read-only files (Linux: `mm/filemap.c`: `filemap_get_folio`,
//! `filemap_add_folio`, `filemap_read`, `__remove_mapping`, `invalidate_mapping_pages`).
//!
//! Reclaim is only real if there is memory whose contents can be rebuilt. A cache of file
//! pages is exactly that: a clean page can be dropped at any moment and read again from
//! the file on the next access. The files come from the port through [`Backing`]: a
//! kernel serves them from the ramdisk its bootloader loaded; the host simulation from a
//! deterministic in-memory image. The backing store is read-only, so no cache page is ever
//! dirty and reclaim never writes anything back.
//!
//! # Pages
//!
//! A cache page is an order-0 page allocated with `GFP_HIGHUSER_MOVABLE` (from
//! ZONE_MOVABLE or Normal, as the allocator decides), filled from the backing store, then
//! inserted into its file's index and put on the inactive LRU list. As in Linux, its
//! `mapping` points at its file's descriptor ([`AddressSpace`]) **without tag bits**, which
//! is what tells a file page from an anon page (`PAGE_MAPPING_ANON`) or a driver page
//! (`PAGE_MAPPING_MOVABLE`), and `index` is its page offset in the file. The descriptors
//! live in a fixed table inside the allocator, so a `mapping` is validated by address
//! arithmetic before it is trusted (as [`crate::movement::rmap`] does for anon regions).
//! Cache pages are read with a copy ([`PageAllocator::page_cache_read`]) or mapped
//! read-only into a file window of the movable range on a fault
//! ([`crate::reclaim::mmap`]); both paths find and fill pages here.
//!
//! # The index
//!
//! Each file's index (Linux's `i_pages` xarray) is a two-level radix tree built from pages
//! of this allocator: a directory page of 512 slots pointing at leaf pages of 512 slots,
//! each holding a `&Page`. That covers [`MAX_FILE_PAGES`] pages (1 GiB) per file with no
//! heap. Tree pages are unmovable kernel pages, allocated on demand and kept while the
//! allocator lives (Linux frees empty xarray nodes; a file's tree costs 1/512 of the
//! file's size at most).
//!
//! # References and the tree lock
//!
//! The cache holds one reference per page, and each page-table entry that maps it one
//! more. Under the file's tree lock an indexed page's reference count is never zero: the
//! two operations that freeze it (eviction, `PageAllocator::remove_mapping`, and
//! migration) do so under that lock and replace or remove the entry before they release
//! it. So a lookup takes its reference with a plain increment under the lock, and a
//! reader that holds a reference blocks both eviction and migration (their freeze expects
//! exactly the cache's, the isolator's and, for migration, the mappings' references;
//! eviction unmaps a mapped page first).

#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::mmzone::{PAGE_SHIFT, PAGE_SIZE};
use crate::model::page::{PAGE_MAPPING_FLAGS, Page, PageFlags};
use crate::movement::migrate::MigrateError;
use crate::page_alloc::PageAllocator;
use crate::page_alloc::gfp::{GFP_HIGHUSER_MOVABLE, GFP_KERNEL, Gfp};
use crate::port::platform::{Platform, Pte};
use crate::port::sync::SpinLock;
use crate::reclaim::lru::LRU_PAGE_FLAGS;
use crate::report::vmstat::VmEvent;

/// Most files the cache serves (file ids `0..MAX_CACHE_FILES`).
pub const MAX_CACHE_FILES: usize = 128;
/// Slots per tree page.
const SLOTS: u64 = PAGE_SIZE / 8;
/// Largest file the cache serves, in pages (two tree levels of 512 slots: 1 GiB).
pub const MAX_FILE_PAGES: u64 = SLOTS * SLOTS;

/// Why a backing store could not deliver a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingError {
    /// No such file.
    NoFile,
    /// The store failed to read (a media error, a truncated image).
    Io,
}

/// A read-only store of files: what a port gives the page cache (a filesystem image in a
/// ramdisk, say). Files are numbered `0..nr_files()`; their contents never change while
/// the cache uses them.
pub trait Backing: Sync {
    /// How many files there are.
    fn nr_files(&self) -> u32;
    /// The size of `file` in bytes, or `None` if there is no such file.
    fn file_size(&self, file: u32) -> Option<u64>;
    /// Fill `buf` (one page, [`PAGE_SIZE`] bytes) with page `index` of `file`: the bytes
    /// from `index * PAGE_SIZE` on. Bytes past the end of the file may be left as they
    /// are; the cache zeroes them.
    fn read_page(&self, file: u32, index: u64, buf: &mut [u8]) -> Result<(), BackingError>;
}

/// Why a page-cache operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// No backing store was given ([`PageAllocator::page_cache_set_backing`]).
    NoBacking,
    /// No such file (or its id is past [`MAX_CACHE_FILES`]).
    NoFile(u32),
    /// The file is larger than [`MAX_FILE_PAGES`] pages.
    TooLarge(u32),
    /// The page is past the end of the file.
    BeyondEof(u64),
    /// No memory for the page or the index, even after reclaim.
    NoMemory,
    /// The backing store failed.
    Io,
}

impl core::fmt::Display for CacheError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CacheError::NoBacking => f.write_str("page cache: no backing store"),
            CacheError::NoFile(n) => write!(f, "page cache: no file {n}"),
            CacheError::TooLarge(n) => write!(f, "page cache: file {n} is larger than 1 GiB"),
            CacheError::BeyondEof(i) => write!(f, "page cache: page {i} is past the end"),
            CacheError::NoMemory => f.write_str("page cache: out of memory"),
            CacheError::Io => f.write_str("page cache: read error in the backing store"),
        }
    }
}

impl core::error::Error for CacheError {}

/// One file's cache (`struct address_space`): its index and page count. Its address is
/// what its pages' `mapping` holds.
#[repr(C, align(8))]
pub struct AddressSpace {
    /// Virtual address of the directory page (0: none yet), under the tree lock.
    tree: SpinLock<u64>,
    /// Pages in the index (`nrpages`).
    nrpages: AtomicU64,
}

const _: () = assert!(core::mem::align_of::<AddressSpace>() > PAGE_MAPPING_FLAGS);

impl AddressSpace {
    const fn new() -> AddressSpace {
        AddressSpace {
            tree: SpinLock::new(0),
            nrpages: AtomicU64::new(0),
        }
    }

    /// Pages of this file in the cache.
    pub fn nrpages(&self) -> u64 {
        self.nrpages.load(Ordering::Relaxed)
    }
}

/// The page cache: the backing store and one [`AddressSpace`] per file.
pub struct PageCache {
    backing: SpinLock<Option<&'static dyn Backing>>,
    spaces: [AddressSpace; MAX_CACHE_FILES],
}

impl Default for PageCache {
    fn default() -> Self {
        PageCache::new()
    }
}

impl PageCache {
    /// No backing, nothing cached.
    pub const fn new() -> PageCache {
        PageCache {
            backing: SpinLock::new(None),
            spaces: [const { AddressSpace::new() }; MAX_CACHE_FILES],
        }
    }

    /// [`PageCache::new`] in place.
    ///
    /// # Safety
    ///
    /// `p` must be valid for writes of a `PageCache` and suitably aligned.
    pub(crate) unsafe fn init_at(p: *mut PageCache) {
        // SAFETY: the caller guarantees `p` is valid for writes; each field and element is
        // written once.
        unsafe {
            core::ptr::addr_of_mut!((*p).backing).write(SpinLock::new(None));
            let s = core::ptr::addr_of_mut!((*p).spaces).cast::<AddressSpace>();
            for i in 0..MAX_CACHE_FILES {
                s.add(i).write(AddressSpace::new());
            }
        }
    }

    /// The file whose descriptor is at `ptr`, if `ptr` is one of this cache's.
    fn file_of(&self, ptr: usize) -> Option<usize> {
        let base = self.spaces.as_ptr() as usize;
        let size = core::mem::size_of::<AddressSpace>();
        let off = ptr.checked_sub(base)?;
        let i = off / size;
        (off % size == 0 && i < MAX_CACHE_FILES).then_some(i)
    }
}

/// A tree page's slots.
///
/// # Safety
///
/// `va` must be the direct-map address of a page owned by a file's tree.
unsafe fn slots<'a>(va: u64) -> &'a [AtomicU64; SLOTS as usize] {
    // SAFETY: the caller guarantees a live, page-aligned tree page; atomics make shared
    // access sound, and the tree lock orders it.
    unsafe { &*(va as *const [AtomicU64; SLOTS as usize]) }
}

/// The slot of `index` in the tree rooted at `dir`, if the leaf exists.
///
/// # Safety
///
/// `dir` is 0 or a tree's directory page, and the tree lock is held.
unsafe fn leaf_slot<'a>(dir: u64, index: u64) -> Option<&'a AtomicU64> {
    if dir == 0 || index >= MAX_FILE_PAGES {
        return None;
    }
    // SAFETY: per the contract.
    let leaf = unsafe { slots(dir) }[(index / SLOTS) as usize].load(Ordering::Relaxed);
    if leaf == 0 {
        return None;
    }
    // SAFETY: directory slots hold tree leaf pages.
    Some(&unsafe { slots(leaf) }[(index % SLOTS) as usize])
}

impl<P: Platform> PageAllocator<P> {
    /// Give the cache its files (a kernel: its ramdisk image). Replacing a store drops
    /// every clean page first; pages in use by a reader at that moment stay cached.
    pub fn page_cache_set_backing(&self, backing: &'static dyn Backing) {
        for file in 0..MAX_CACHE_FILES as u32 {
            self.invalidate_mapping_pages(file);
        }
        *self.reclaim.cache.backing.lock_irqsave(self.platform()) = Some(backing);
    }

    fn backing(&self) -> Result<&'static dyn Backing, CacheError> {
        self.reclaim
            .cache
            .backing
            .lock_irqsave(self.platform())
            .ok_or(CacheError::NoBacking)
    }

    /// The descriptor of `file`.
    pub fn address_space(&self, file: u32) -> Option<&AddressSpace> {
        self.reclaim.cache.spaces.get(file as usize)
    }

    /// The file and descriptor a page belongs to, if it is a page-cache page
    /// (`folio_mapping` for file pages).
    pub fn page_cache_file(&self, page: &Page) -> Option<(u32, &AddressSpace)> {
        let raw = page.mapping_raw();
        if raw == 0 || raw & PAGE_MAPPING_FLAGS != 0 {
            return None;
        }
        let i = self.reclaim.cache.file_of(raw)?;
        Some((i as u32, &self.reclaim.cache.spaces[i]))
    }

    /// Find a cached page and take a reference (`filemap_get_folio`); drop it with
    /// [`PageAllocator::put_page`]. No read from the backing store.
    pub fn find_get_page(&self, file: u32, index: u64) -> Option<&Page> {
        let space = self.address_space(file)?;
        let g = space.tree.lock_irqsave(self.platform());
        // SAFETY: the tree lock is held; `*g` is 0 or the directory page.
        let slot = unsafe { leaf_slot(*g, index) }?;
        let p = slot.load(Ordering::Relaxed);
        if p == 0 {
            return None;
        }
        // SAFETY: leaf slots hold memmap pages of this allocator that the cache
        // references; under the tree lock their count is not zero (module docs).
        let page = unsafe { &*(p as *const Page) };
        page.ref_inc();
        Some(page)
    }

    /// The size of `file` in bytes.
    pub fn page_cache_file_size(&self, file: u32) -> Result<u64, CacheError> {
        if file as usize >= MAX_CACHE_FILES {
            return Err(CacheError::NoFile(file));
        }
        self.backing()?
            .file_size(file)
            .ok_or(CacheError::NoFile(file))
    }

    /// Page `index` of `file`, from the cache or read into it (`read_cache_folio`), with a
    /// reference the caller drops with [`PageAllocator::put_page`]. The page is uptodate
    /// and its contents never change while the reference is held.
    pub fn read_cache_page(&self, file: u32, index: u64) -> Result<&Page, CacheError> {
        self.read_cache_page_major(file, index).map(|(p, _)| p)
    }

    /// [`PageAllocator::read_cache_page`], also telling whether the page had to be read
    /// from the backing store (a major fault, for a fault).
    pub(crate) fn read_cache_page_major(
        &self,
        file: u32,
        index: u64,
    ) -> Result<(&Page, bool), CacheError> {
        let size = self.page_cache_file_size(file)?;
        let nr = size.div_ceil(PAGE_SIZE);
        if nr > MAX_FILE_PAGES {
            return Err(CacheError::TooLarge(file));
        }
        if index >= nr {
            return Err(CacheError::BeyondEof(index));
        }
        if let Some(p) = self.find_get_page(file, index) {
            return Ok((p, false));
        }
        let backing = self.backing()?;
        let page = self
            .alloc_page(GFP_HIGHUSER_MOVABLE)
            .ok_or(CacheError::NoMemory)?;
        let pa = self.page_to_pfn(page) << PAGE_SHIFT;
        // SAFETY: a fresh order-0 page of RAM that only we know about.
        let buf = unsafe {
            core::slice::from_raw_parts_mut(self.platform().phys_to_virt(pa), PAGE_SIZE as usize)
        };
        if backing.read_page(file, index, buf).is_err() {
            self.free_unused_cache_page(page);
            return Err(CacheError::Io);
        }
        let valid = size - index * PAGE_SIZE;
        if valid < PAGE_SIZE {
            buf[valid as usize..].fill(0);
        }
        page.set_uptodate();
        match self.add_to_page_cache(page, file, index) {
            Ok(p) => Ok((p, core::ptr::eq(p, page))),
            Err(e) => {
                self.free_unused_cache_page(page);
                Err(e)
            }
        }
    }

    /// Free a page that was filled but never entered the cache.
    fn free_unused_cache_page(&self, page: &Page) {
        page.clear_flag(LRU_PAGE_FLAGS);
        if let Err(bad) = self.put_page(page) {
            log::error!("page cache: freeing an unused page: {bad}");
        }
    }

    /// Insert a filled page (`filemap_add_folio` + `folio_add_lru`). Returns the page now
    /// cached at that index with a reference for the caller: `page` itself, or the page
    /// another reader inserted first (then `page` is the caller's to free).
    fn add_to_page_cache<'a>(
        &'a self,
        page: &'a Page,
        file: u32,
        index: u64,
    ) -> Result<&'a Page, CacheError> {
        let space = self.address_space(file).ok_or(CacheError::NoFile(file))?;
        // Tree pages are allocated before the lock is taken (the allocator may reclaim).
        let mut spare: [Option<&Page>; 2] = [None, None];
        let result = loop {
            let g = space.tree.lock_irqsave(self.platform());
            let dir = *g;
            let mut need = 0;
            if dir == 0 {
                need = 2;
            // SAFETY: tree lock held, `dir` is the directory page.
            } else if unsafe { slots(dir) }[(index / SLOTS) as usize].load(Ordering::Relaxed) == 0 {
                need = 1;
            }
            let have = spare.iter().filter(|s| s.is_some()).count();
            if have < need {
                drop(g);
                for s in spare.iter_mut().filter(|s| s.is_none()) {
                    match self.alloc_page(GFP_KERNEL | Gfp::ZERO) {
                        Some(p) => *s = Some(p),
                        None => break,
                    }
                }
                if spare.iter().filter(|s| s.is_some()).count() < need {
                    break Err(CacheError::NoMemory);
                }
                continue;
            }
            let mut g = g;
            let mut take = || {
                let p = spare.iter_mut().find_map(|s| s.take());
                p.map(|p| self.page_address(p)).unwrap_or(0)
            };
            if *g == 0 {
                *g = take();
            }
            // SAFETY: tree lock held; `*g` is the directory page.
            let d = &unsafe { slots(*g) }[(index / SLOTS) as usize];
            if d.load(Ordering::Relaxed) == 0 {
                d.store(take(), Ordering::Relaxed);
            }
            // SAFETY: tree lock held; the leaf exists now.
            let slot = unsafe { leaf_slot(*g, index) }.expect("leaf just installed");
            let cur = slot.load(Ordering::Relaxed);
            if cur != 0 {
                // SAFETY: an indexed page, count not zero under the lock (module docs).
                let other = unsafe { &*(cur as *const Page) };
                other.ref_inc();
                break Ok(other);
            }
            page.set_index(index);
            page.set_mapping(space as *const AddressSpace as *const (), 0);
            slot.store(page as *const Page as u64, Ordering::Relaxed);
            space.nrpages.fetch_add(1, Ordering::Relaxed);
            // The cache's reference is the one alloc gave; this one is the caller's.
            page.ref_inc();
            break Ok(page);
        };
        for p in spare.into_iter().flatten() {
            if let Err(bad) = self.put_page(p) {
                log::error!("page cache: freeing a spare tree page: {bad}");
            }
        }
        let p = result?;
        if core::ptr::eq(p, page) {
            self.lruvec(page.nid())
                .nr_file_pages
                .fetch_add(1, Ordering::Relaxed);
            self.lru_add(page);
            Ok(page)
        } else {
            self.free_unused_cache_page(page);
            Ok(p)
        }
    }

    /// Copy bytes of `file` from offset `pos` into `buf` through the cache (`filemap_read`),
    /// reading missing pages from the backing store and marking each page accessed. Returns
    /// the bytes copied: less than `buf.len()` only at the end of the file.
    pub fn page_cache_read(
        &self,
        file: u32,
        pos: u64,
        buf: &mut [u8],
    ) -> Result<usize, CacheError> {
        let size = self.page_cache_file_size(file)?;
        if pos >= size {
            return Ok(0);
        }
        let total = (buf.len() as u64).min(size - pos) as usize;
        let mut done = 0usize;
        while done < total {
            let at = pos + done as u64;
            let index = at / PAGE_SIZE;
            let off = (at % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - off).min(total - done);
            let page = self.read_cache_page(file, index)?;
            self.mark_page_accessed(page);
            let pa = self.page_to_pfn(page) << PAGE_SHIFT;
            // SAFETY: the page is uptodate and referenced, so it is neither migrated nor
            // evicted, and the cache never writes it again; `off + n <= PAGE_SIZE`.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.platform().phys_to_virt(pa).add(off),
                    buf[done..].as_mut_ptr(),
                    n,
                );
            }
            if let Err(bad) = self.put_page(page) {
                log::error!("page_cache_read: {bad}");
            }
            done += n;
        }
        Ok(done)
    }

    /// Remove an isolated, clean cache page from its file and free it
    /// (`__remove_mapping`). The caller holds the isolation reference; it is consumed on
    /// success. Fails, leaving everything as it was, if anyone else holds a reference.
    pub(crate) fn remove_mapping(&self, page: &Page) -> bool {
        self.remove_mapping_unlock(page, false)
    }

    /// [`PageAllocator::remove_mapping`] for a page the caller locked (reclaim unmapping
    /// a mapped page): on success the lock is released before the page is freed; on
    /// failure the page stays locked.
    pub(crate) fn remove_mapping_unlock(&self, page: &Page, locked: bool) -> bool {
        // Isolated, unmapped pages only: a listed page must leave its list first, and a
        // mapped page must lose its entries (their references would fail the freeze
        // anyway).
        if page.is_lru() || page.mapcount() != 0 {
            return false;
        }
        let Some((_, space)) = self.page_cache_file(page) else {
            return false;
        };
        {
            let g = space.tree.lock_irqsave(self.platform());
            // The cache's reference and the isolator's: nothing else may be held.
            if !page.ref_freeze(2) {
                return false;
            }
            // SAFETY: tree lock held.
            if let Some(slot) = unsafe { leaf_slot(*g, page.index()) } {
                slot.store(0, Ordering::Relaxed);
            }
            space.nrpages.fetch_sub(1, Ordering::Relaxed);
        }
        self.detach_cache_page(page, None);
        if locked {
            page.unlock();
        }
        if let Err(bad) = self.put_page(page) {
            log::error!("remove_mapping: freeing the page: {bad}");
        }
        true
    }

    /// Drop every clean cache page nobody is using (`drop_caches` with 1,
    /// `invalidate_mapping_pages` over every file). Pages being read, or isolated by
    /// reclaim or compaction at that moment, stay. Returns the pages freed.
    pub fn drop_caches(&self) -> u64 {
        let mut freed = 0;
        for file in 0..MAX_CACHE_FILES as u32 {
            freed += self.invalidate_mapping_pages(file);
        }
        self.count_vm_events(VmEvent::DropPagecache, 1);
        freed
    }

    /// Drop the clean, unused pages of one file (`invalidate_mapping_pages`).
    pub fn invalidate_mapping_pages(&self, file: u32) -> u64 {
        let Some(space) = self.address_space(file) else {
            return 0;
        };
        if space.nrpages() == 0 {
            return 0;
        }
        let mut freed = 0;
        for leaf in 0..SLOTS {
            let present = {
                let g = space.tree.lock_irqsave(self.platform());
                // SAFETY: tree lock held.
                *g != 0 && unsafe { slots(*g) }[leaf as usize].load(Ordering::Relaxed) != 0
            };
            if !present {
                continue;
            }
            for index in leaf * SLOTS..(leaf + 1) * SLOTS {
                let Some(page) = self.find_get_page(file, index) else {
                    continue;
                };
                // Our lookup reference becomes the isolation reference.
                if self.isolate_lru_page(page) {
                    if self.remove_mapping(page) {
                        freed += 1;
                    } else {
                        self.putback_lru_page(page);
                    }
                } else if let Err(bad) = self.put_page(page) {
                    log::error!("invalidate_mapping_pages: {bad}");
                }
            }
        }
        freed
    }

    /// Move an isolated cache page's contents and index entry to `dst` (the file half of
    /// `migrate_folio`, called by [`crate::movement::migrate`] with both pages locked).
    /// `dst` is a fresh page with one reference, which becomes the cache's; on success the
    /// caller puts `dst` on the LRU once it is unlocked (it goes to the list `src` was on,
    /// by `PG_active`) and drops the isolation reference of `src`, the last one, which
    /// frees it. `Again` if someone holds a reference to `src`.
    ///
    /// `mapped` entries of `src` were turned into migration entries by the caller (see
    /// [`crate::reclaim::mmap`]); their references are expected in the freeze, move to
    /// `dst` with the mapcount, and the entries are pointed at `dst` before `src` leaves
    /// the cache. On `Again` the entries are left as migration entries for the caller to
    /// restore.
    pub(crate) fn migrate_cache_page(
        &self,
        dst: &Page,
        src: &Page,
        mapped: u32,
    ) -> Result<(), MigrateError> {
        let Some((file, space)) = self.page_cache_file(src) else {
            return Err(MigrateError::Busy);
        };
        {
            let g = space.tree.lock_irqsave(self.platform());
            if !src.ref_freeze(2 + mapped as i32) {
                return Err(MigrateError::Again);
            }
            // SAFETY: tree lock held.
            let Some(slot) = (unsafe { leaf_slot(*g, src.index()) }) else {
                src.ref_unfreeze(2 + mapped as i32);
                return Err(MigrateError::Busy);
            };
            let (sp, dp) = (
                self.page_to_pfn(src) << PAGE_SHIFT,
                self.page_to_pfn(dst) << PAGE_SHIFT,
            );
            // SAFETY: src is frozen (no reader holds it, none can start), dst is fresh and
            // ours; both are whole distinct pages of RAM.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.platform().phys_to_virt(sp) as *const u8,
                    self.platform().phys_to_virt(dp),
                    PAGE_SIZE as usize,
                );
            }
            dst.set_index(src.index());
            dst.set_flag(
                src.flags() & (PageFlags::UPTODATE | PageFlags::REFERENCED | PageFlags::ACTIVE),
            );
            dst.set_mapping(space as *const AddressSpace as *const (), 0);
            // The mappings' references and count travel with the entries.
            for _ in 0..mapped {
                dst.ref_inc();
                self.page_add_file_rmap(dst);
            }
            slot.store(dst as *const Page as u64, Ordering::Relaxed);
        }
        if mapped > 0 {
            let (sp, dp) = (self.page_to_pfn(src), self.page_to_pfn(dst));
            // Migration entries were never present: installing the new frame needs no
            // flush.
            let moved = self.file_rmap_replace(
                file,
                src.index(),
                Pte::Migration(sp),
                Pte::Present(dp),
                &mut None,
            );
            if moved != mapped {
                log::error!(
                    "migrate_cache_page: {moved} of {mapped} migration entries of pfn {sp:#x} found"
                );
            }
            for _ in 0..mapped {
                self.page_remove_file_rmap(src);
            }
            self.count_vm_events(VmEvent::PgmigrateFileMapped, 1);
        }
        self.detach_cache_page(src, Some(dst));
        Ok(())
    }

    /// A frozen page that just left its file's index (dropped, or replaced by `moved_to`):
    /// move the node's `NR_FILE_PAGES` along, forget owner, index and cache flags, and
    /// leave one reference (the isolator's) for the caller to drop.
    fn detach_cache_page(&self, page: &Page, moved_to: Option<&Page>) {
        if moved_to.is_none_or(|d| d.nid() != page.nid()) {
            self.lruvec(page.nid())
                .nr_file_pages
                .fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(d) = moved_to.filter(|d| d.nid() != page.nid()) {
            self.lruvec(d.nid())
                .nr_file_pages
                .fetch_add(1, Ordering::Relaxed);
        }
        page.set_mapping(core::ptr::null(), 0);
        page.set_index(0);
        page.clear_flag(LRU_PAGE_FLAGS);
        page.ref_unfreeze(1);
    }
}
