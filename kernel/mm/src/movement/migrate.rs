//! Page migration (Linux: mm/migrate.c).
//!
//! Compaction frees a large block by moving the in-use pages out of it, and a page can only
//! be moved if whoever uses it can be made to use a copy instead. Three kinds of page can:
//!
//! - **anon pages** ([`crate::movement::rmap`]): mapped by exactly one PTE that the reverse map finds
//!   in O(1). Migration replaces that PTE with a *migration entry*, flushes TLBs, copies
//!   the contents, and installs the new frame; a CPU that touches the page meanwhile faults
//!   on the entry and waits (the platform's fault handler, see [`crate::port::platform`]).
//! - **movable_operations pages**: kernel memory whose owner registered callbacks
//!   ([`MovableOperations`], [`set_page_movable`]) that move contents and the owner's
//!   references itself ([`crate::movement::zpool`] is the user in this kernel).
//! - **page-cache pages** ([`crate::reclaim::filemap`]): found through their file's index.
//!   They are isolated from their LRU list ([`PageAllocator::isolate_lru_page`], the same
//!   protocol reclaim uses), moved under the file's tree lock with their count frozen (a
//!   reader's reference makes it `Again`), and the new page is put on the LRU. A cache
//!   page mapped into file windows ([`crate::reclaim::mmap`]) goes through the anon path's
//!   entry dance as well: every entry that maps it becomes a migration entry in the unmap
//!   phase (found by the file reverse map), is flushed with the batch, and points at the
//!   new frame once the index entry was replaced.
//!
//! # Protocol
//!
//! ```text
//!   isolate_migratepage    reference + PG_isolated; the lru links become the caller's
//!        │
//!   migrate_pages          up to 10 passes over the list, in batches:
//!        │  unmap phase      per page: target from get_new, lock src (+dst),
//!        │                   anon: PTE Present(src) -> Migration(src)
//!        │  one TLB flush    over the whole batch's unmapped range
//!        │  move phase       anon: freeze refcount (pins -> Again, PTE restored), copy,
//!        │                   move mapping/index/mapcount/flags, PTE -> Present(dst)
//!        │                   movable: ops.migrate_page(dst, src)
//!        │                   src loses its owner and is freed by the normal free path
//!        └─ failures        Again: next pass; others (and Again after 10 passes): put back
//! ```
//!
//! Installing the new PTE needs no flush (the migration entry it replaces was never
//! present, so no TLB can hold it); the one flush per batch is the only shootdown,
//! which is the point of unmapping a whole batch first.
//!
//! # Locks
//!
//! Page locks are taken with no spinlock held and interrupts enabled (the batch flushes
//! TLBs while holding them). A batch holds several page locks at once, so to stay free of
//! lock-order deadlocks against another migrating CPU it only ever *waits* for a page lock
//! when it holds none: in the synchronous modes, a page whose lock is busy ends the
//! current batch and starts the next one, where it may be waited for (Linux reaches the
//! same end by retrying a failed asynchronous batch one page at a time). Puts-back, which
//! lock movable pages, run after a batch has released its locks.
//!
//! # Out of targets
//!
//! When `get_new` has no page, Linux's `migrate_pages` moves the pages of the current
//! batch that are already unmapped, stops, and returns `-ENOMEM`; its caller puts the rest
//! back. Here the rest is put back before returning `Err(MigrateError::NoMemory)`, so the
//! list is empty on every return, as for the other outcomes.

use core::ptr::NonNull;

use crate::model::list::PageList;
use crate::model::mmzone::{PAGE_SHIFT, PAGE_SIZE};
use crate::model::page::{PAGE_MAPPING_ANON, PAGE_MAPPING_MOVABLE, Page, PageFlags};
use crate::movement::rmap::{clear_anon_metadata, lock_page};
use crate::page_alloc::PageAllocator;
use crate::port::platform::{Platform, Pte};
use crate::report::vmstat::VmEvent;

/// Passes over the list before pages that keep failing with `Again` are given up
/// (`NR_MAX_MIGRATE_PAGES_RETRY`).
pub const MIGRATE_PASSES: u32 = 10;
/// Pages unmapped together and covered by one TLB flush (Linux batches up to 512; this
/// keeps the batch on the stack).
pub const MIGRATE_BATCH: usize = 32;

/// How hard migration may try (`enum migrate_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateMode {
    /// Never block: skip locked pages and pages that would need waiting.
    Async,
    /// May block on page locks, but not on anything slow (`MIGRATE_SYNC_LIGHT`).
    SyncLight,
    /// May block on anything (`MIGRATE_SYNC`).
    Sync,
}

/// Why pages are being migrated (`enum migrate_reason`); kept for statistics and tracing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateReason {
    /// Memory compaction.
    Compaction,
    /// An explicit request (tests, the console).
    Syscall,
    /// Emptying a range for a contiguous allocation (`MR_CONTIG_RANGE`,
    /// [`crate::movement::contig`]).
    ContigRange,
}

/// Why one page did not migrate (Linux's errno values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateError {
    /// Transient: try again in a later pass (`-EAGAIN`).
    Again,
    /// No target page: abort the whole call (`-ENOMEM`).
    NoMemory,
    /// Permanent for this page (`-EBUSY`, `-EINVAL`, ...): it is put back.
    Busy,
}

impl core::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MigrateError::Again => "migration: try again",
            MigrateError::NoMemory => "migration: no target page",
            MigrateError::Busy => "migration: page cannot be migrated",
        })
    }
}

/// Callbacks for kernel-owned movable pages that are not anon memory
/// (`struct movable_operations`). A page opts in with [`set_page_movable`].
///
/// References: the owner holds one reference to each of its pages. When
/// [`MovableOperations::migrate_page`] succeeds, the owner's reference passes to `dst`
/// (which arrives with exactly the one reference its allocator gave it) and migration
/// drops `src`'s references, freeing it; the owner must not touch `src` again.
pub trait MovableOperations: Sync {
    /// Take the page off the owner's structures so it can be migrated; false refuses.
    /// Called with the page locked and a reference held.
    fn isolate_page(&self, page: &Page, mode: MigrateMode) -> bool;
    /// Move the contents and the owner's references from `src` to `dst` (both locked;
    /// `dst` is a fresh page). On success the owner no longer uses `src`; `dst` may be
    /// marked with [`set_page_movable`] by the callback, otherwise migration gives it
    /// `src`'s ops. On error `dst` must be left exactly as it was given.
    fn migrate_page(&self, dst: &Page, src: &Page, mode: MigrateMode) -> Result<(), MigrateError>;
    /// Give back a page that was isolated but not migrated (called with the page locked).
    fn putback_page(&self, page: &Page);
}

/// A `'static` home for a `&dyn MovableOperations`, so `page.mapping` can hold a thin
/// pointer to it (tagged `PAGE_MAPPING_MOVABLE`).
pub struct MovableOps(pub &'static dyn MovableOperations);

const _: () = assert!(core::mem::align_of::<MovableOps>() > crate::model::page::PAGE_MAPPING_FLAGS);

/// Mark `page` (locked by the caller) as owned by `ops` (`__SetPageMovable`).
pub fn set_page_movable(page: &Page, ops: &'static MovableOps) {
    page.set_mapping_raw(ops as *const MovableOps as usize | PAGE_MAPPING_MOVABLE);
}

/// Undo [`set_page_movable`] (`__ClearPageMovable`), before the owner frees the page.
pub fn clear_page_movable(page: &Page) {
    if page.is_movable_ops() {
        page.set_mapping_raw(0);
    }
}

/// The callbacks of a movable_operations page.
fn movable_ops_of(page: &Page) -> Option<&'static dyn MovableOperations> {
    if !page.is_movable_ops() {
        return None;
    }
    let ops = page.mapping() as *const MovableOps;
    // SAFETY: a `mapping` tagged with PAGE_MAPPING_MOVABLE alone is only ever written by
    // `set_page_movable` from a `&'static MovableOps`, or copied by migration from such a
    // word (`Page::set_mapping` refuses that tag and `set_mapping_raw` is crate-private),
    // so the pointer is a live, aligned `MovableOps` for the rest of the program.
    Some(unsafe { &*ops }.0)
}

/// Page flags that make a page unmovable whatever its owner says.
const UNMOVABLE_FLAGS: PageFlags = PageFlags::BUDDY
    .union(PageFlags::RESERVED)
    .union(PageFlags::HEAD)
    .union(PageFlags::TAIL)
    .union(PageFlags::SLAB)
    .union(PageFlags::PGTABLE)
    .union(PageFlags::OFFLINE)
    .union(PageFlags::GUARD)
    .union(PageFlags::HWPOISON);

/// Flags that travel with the contents of an anon page (`folio_migrate_flags`).
const MIGRATE_FLAGS: PageFlags = PageFlags::UPTODATE
    .union(PageFlags::DIRTY)
    .union(PageFlags::REFERENCED)
    .union(PageFlags::ACTIVE);

#[derive(Clone, Copy)]
enum Kind {
    /// Unmapped: its PTE at `va` is a migration entry.
    Anon {
        va: u64,
    },
    Movable(&'static dyn MovableOperations),
    /// A page-cache page ([`crate::reclaim::filemap`]); `mapped` entries of it were made
    /// migration entries.
    File {
        mapped: u32,
    },
}

/// A page of the current batch: src and dst locked, src unmapped if anon.
#[derive(Clone, Copy)]
struct Entry<'a> {
    src: &'a Page,
    dst: &'a Page,
    kind: Kind,
}

/// What the unmap phase made of one page.
enum Unmap<'a> {
    /// Nothing to move: the owner let go of the page meanwhile; it has been released.
    Released,
    /// Locked and unmapped: part of the batch.
    Batched(Entry<'a>),
    /// Transient failure: retry in the next pass.
    Again,
    /// Its lock is busy and the batch already holds locks: start a new batch with it.
    WouldBlock,
    /// Permanent failure: put back.
    Fail,
    /// No target page.
    NoMemory,
}

/// Outcomes of one call, for the event counters.
#[derive(Default)]
struct Tally {
    succeeded: u64,
    failed: u64,
}

impl<P: Platform> PageAllocator<P> {
    /// Try to isolate an in-use page for migration (`isolate_movable_page` for
    /// movable_operations pages and `folio_isolate_lru` for anon pages): on success the page
    /// holds an extra reference, is marked `PG_isolated`, and its `lru` links are free for
    /// the caller's list. Fails (no side effects) for free, unmovable, reserved, compound,
    /// pinned (refcount above what its mappings explain), already isolated, and, in
    /// [`MigrateMode::Async`], locked pages.
    pub fn isolate_migratepage(&self, page: &Page, mode: MigrateMode) -> bool {
        // Cheap filters first, without a reference (the page may be freed under us: these
        // reads only decide whether to look closer).
        if page
            .flags()
            .intersects(UNMOVABLE_FLAGS | PageFlags::ISOLATED)
            || (page.mapping_flags() == 0 && !page.is_lru())
            || page.order_field() != 0
        {
            return false;
        }
        if !page.get_unless_zero() {
            return false;
        }
        // Under the reference the page cannot be freed; it may have been freed and reused
        // before we took it, so everything is checked again.
        if self.isolate_held(page, mode) {
            return true;
        }
        if let Err(bad) = self.put_page(page) {
            log::error!("isolate_migratepage: dropping the probe reference: {bad}");
        }
        false
    }

    fn isolate_held(&self, page: &Page, mode: MigrateMode) -> bool {
        if page.flags().intersects(UNMOVABLE_FLAGS) || page.order_field() != 0 {
            return false;
        }
        if mode == MigrateMode::Async && page.is_locked() {
            return false;
        }
        match page.mapping_flags() {
            PAGE_MAPPING_ANON => {
                let mapcount = page.mapcount();
                // One reference per mapping plus ours: anything more is a pin, and a pinned
                // page cannot be moved (its user holds the physical address).
                if mapcount < 1 || page.refcount() != mapcount + 1 {
                    return false;
                }
                !page.test_and_set_flag(PageFlags::ISOLATED)
            }
            PAGE_MAPPING_MOVABLE => {
                // The owner changes its pages under their lock; never wait for it here.
                if !page.trylock() {
                    return false;
                }
                let ok = match movable_ops_of(page) {
                    Some(ops) => {
                        if page.test_and_set_flag(PageFlags::ISOLATED) {
                            false
                        } else if ops.isolate_page(page, mode) {
                            true
                        } else {
                            page.clear_isolated();
                            false
                        }
                    }
                    None => false,
                };
                page.unlock();
                ok
            }
            // A page-cache page on the LRU (crate::reclaim): taken off its list under the
            // LRU lock, so reclaim and compaction never both isolate it.
            0 => {
                // The cache's reference, one per mapping, and ours: more is a reader.
                if self.page_cache_file(page).is_none()
                    || page.refcount() != page.mapcount() + 2
                    || !self.isolate_lru_page(page)
                {
                    return false;
                }
                page.set_isolated();
                true
            }
            _ => false,
        }
    }

    /// Return every page on `list` to its owner and drop the isolation reference
    /// (`putback_movable_pages`).
    pub fn putback_movable_pages(&self, list: &mut PageList) {
        // SAFETY: the caller's list holds isolated pages of this allocator's memmap, whose
        // links belong to the list's owner (us, through `&mut`).
        while let Some(p) = unsafe { list.pop_front() } {
            // SAFETY: memmap pages live as long as the allocator.
            self.putback_one(unsafe { p.as_ref() });
        }
    }

    /// Put one isolated page back (`putback_movable_folio` / `folio_putback_lru`).
    fn putback_one(&self, page: &Page) {
        if page.is_movable_ops() {
            lock_page(page);
            if let Some(ops) = movable_ops_of(page) {
                ops.putback_page(page);
            }
            page.clear_isolated();
            page.unlock();
        } else if self.page_cache_file(page).is_some() {
            // Back on its LRU list; the isolation reference is dropped below.
            page.clear_isolated();
            self.lru_add(page);
        } else {
            page.clear_isolated();
        }
        if let Err(bad) = self.put_page(page) {
            log::error!("putback_movable_pages: {bad}");
        }
    }

    /// Drop the isolation reference of a page whose owner let go of it meanwhile.
    fn release_isolated(&self, page: &Page) {
        page.clear_isolated();
        if let Err(bad) = self.put_page(page) {
            log::error!("migrate_pages: releasing a page freed under migration: {bad}");
        }
    }

    /// Migrate the isolated pages on `from` (`migrate_pages`). For each page, `get_new`
    /// supplies a target (None counts as `-ENOMEM` and aborts) and `put_new` takes back a
    /// target that was not used. Up to 10 passes; pages failing with Again are retried,
    /// other failures are put back. Returns the number of pages not migrated; migrated
    /// pages have left `from` and failed ones were put back, so `from` is empty on return.
    ///
    /// Targets must be order-0 pages as `alloc_page` returns them (one reference, no
    /// owner, unlocked); unused ones go back to `put_new` in that state. A page whose
    /// owner let go of it meanwhile is released and counts as migrated, as in Linux. On
    /// `Err(NoMemory)` the pages already unmapped in the current batch are still moved;
    /// everything left is put back (see the module documentation). Must be called with
    /// interrupts enabled and no spinlock held: it waits for page locks and flushes TLBs.
    pub fn migrate_pages<'a>(
        &'a self,
        from: &mut PageList,
        get_new: &mut dyn FnMut(&Page) -> Option<&'a Page>,
        put_new: &mut dyn FnMut(&'a Page),
        mode: MigrateMode,
        reason: MigrateReason,
    ) -> Result<u64, MigrateError> {
        let _ = reason;
        debug_assert!(
            !self.platform().irqs_disabled(),
            "migrate_pages with interrupts disabled"
        );
        let mut tally = Tally::default();
        let mut retry = PageList::new();
        let mut failed = PageList::new();
        let mut nomem = false;
        for _pass in 0..MIGRATE_PASSES {
            while !from.is_empty() && !nomem {
                nomem = self.migrate_batch(
                    from,
                    &mut retry,
                    &mut failed,
                    get_new,
                    put_new,
                    mode,
                    &mut tally,
                );
                // Put-backs may take page locks: only now that the batch holds none.
                tally.failed += failed.len() as u64;
                self.putback_movable_pages(&mut failed);
            }
            if nomem {
                break;
            }
            core::mem::swap(from, &mut retry);
            if from.is_empty() {
                break;
            }
        }
        // Pages still failing with Again after the last pass, and on NoMemory everything
        // not yet tried.
        tally.failed += (from.len() + retry.len()) as u64;
        self.putback_movable_pages(from);
        self.putback_movable_pages(&mut retry);
        if tally.succeeded > 0 {
            self.count_vm_events(VmEvent::PgmigrateSuccess, tally.succeeded);
        }
        if tally.failed > 0 {
            self.count_vm_events(VmEvent::PgmigrateFail, tally.failed);
        }
        if nomem {
            Err(MigrateError::NoMemory)
        } else {
            Ok(tally.failed)
        }
    }

    /// Unmap up to [`MIGRATE_BATCH`] pages from the front of `from`, flush once, move them.
    /// Again pages go to `retry`, permanent failures to `failed`. True if targets ran out.
    #[allow(clippy::too_many_arguments)]
    fn migrate_batch<'a>(
        &'a self,
        from: &mut PageList,
        retry: &mut PageList,
        failed: &mut PageList,
        get_new: &mut dyn FnMut(&Page) -> Option<&'a Page>,
        put_new: &mut dyn FnMut(&'a Page),
        mode: MigrateMode,
        tally: &mut Tally,
    ) -> bool {
        let mut batch: [Option<Entry<'a>>; MIGRATE_BATCH] = [None; MIGRATE_BATCH];
        let mut len = 0;
        let mut nomem = false;
        let mut flush: Option<(u64, u64)> = None;
        while len < MIGRATE_BATCH {
            // SAFETY: `from` holds isolated pages whose links are ours (`&mut`).
            let Some(p) = (unsafe { from.pop_front() }) else {
                break;
            };
            let src: &'a Page = self.memmap_page(p);
            match self.migrate_unmap(src, get_new, put_new, mode, len == 0, &mut flush) {
                Unmap::Released => tally.succeeded += 1,
                Unmap::Batched(e) => {
                    if let Kind::Anon { va } = e.kind {
                        flush = Some(match flush {
                            None => (va, va + PAGE_SIZE),
                            Some((s, end)) => (s.min(va), end.max(va + PAGE_SIZE)),
                        });
                    }
                    batch[len] = Some(e);
                    len += 1;
                }
                // SAFETY: `src` was just unlinked from `from` and is on no list; the lists
                // are ours.
                Unmap::Again => unsafe { retry.push_back(src) },
                // SAFETY: as above.
                Unmap::Fail => unsafe { failed.push_back(src) },
                Unmap::WouldBlock => {
                    // SAFETY: as above: `src` goes back where it came from.
                    unsafe { from.push_front(src) };
                    break;
                }
                Unmap::NoMemory => {
                    // SAFETY: as above.
                    unsafe { from.push_front(src) };
                    nomem = true;
                    break;
                }
            }
        }
        if let Some((start, end)) = flush {
            // Every unmapped page of the batch at once: after this no CPU can still write
            // through an old translation, so the copies below are complete.
            self.flush_tlb_movable_range(start, end);
        }
        for e in batch.iter().take(len).flatten() {
            match self.migrate_move(e, put_new, mode) {
                Ok(()) => tally.succeeded += 1,
                // SAFETY: `e.src` is on no list (it left `from` above); the lists are ours.
                Err(MigrateError::Again) => unsafe { retry.push_back(e.src) },
                // SAFETY: as above.
                Err(_) => unsafe { failed.push_back(e.src) },
            }
        }
        nomem
    }

    /// A page of a caller's list as a reference for the allocator's lifetime.
    fn memmap_page(&self, p: NonNull<Page>) -> &Page {
        // SAFETY: pages on migration lists were isolated by `isolate_migratepage`, so they
        // are descriptors in this allocator's memmap, which lives as long as `self`.
        unsafe { p.as_ref() }
    }

    /// The unmap phase for one page (`migrate_folio_unmap`).
    fn migrate_unmap<'a>(
        &'a self,
        src: &'a Page,
        get_new: &mut dyn FnMut(&Page) -> Option<&'a Page>,
        put_new: &mut dyn FnMut(&'a Page),
        mode: MigrateMode,
        may_block: bool,
        flush: &mut Option<(u64, u64)>,
    ) -> Unmap<'a> {
        if src.refcount() == 1 {
            // Only our isolation reference is left: the owner freed it. Nothing to move.
            self.release_isolated(src);
            return Unmap::Released;
        }
        let Some(dst) = get_new(src) else {
            return Unmap::NoMemory;
        };
        if core::ptr::eq(dst, src) || dst.mapping_raw() != 0 {
            log::error!("migrate_pages: get_new returned an unusable target");
            put_new(dst);
            return Unmap::Fail;
        }
        if !src.trylock() {
            if mode == MigrateMode::Async {
                put_new(dst);
                return Unmap::Again;
            }
            if !may_block {
                put_new(dst);
                return Unmap::WouldBlock;
            }
            lock_page(src);
        }
        if !dst.trylock() {
            src.unlock();
            put_new(dst);
            return Unmap::Again;
        }
        if src.refcount() == 1 {
            dst.unlock();
            src.unlock();
            put_new(dst);
            self.release_isolated(src);
            return Unmap::Released;
        }
        let kind = if src.is_anon() {
            let Some(va) = self.page_anon_address(src) else {
                dst.unlock();
                src.unlock();
                put_new(dst);
                return Unmap::Fail;
            };
            let pfn = self.page_to_pfn(src);
            // Under the page lock only we change this entry; the flush comes once per batch.
            if !self
                .mapping()
                .pte_cmpxchg(va, Pte::Present(pfn), Pte::Migration(pfn))
            {
                dst.unlock();
                src.unlock();
                put_new(dst);
                return Unmap::Again;
            }
            Kind::Anon { va }
        } else if let Some(ops) = movable_ops_of(src) {
            Kind::Movable(ops)
        } else if let Some((file, _)) = self.page_cache_file(src) {
            // Under the page lock the mapcount is the number of entries (rmap docs).
            let want = src.mapcount().max(0) as u32;
            let mapped = if want > 0 {
                let pfn = self.page_to_pfn(src);
                let mut range = None;
                let n = self.file_rmap_replace(
                    file,
                    src.index(),
                    Pte::Present(pfn),
                    Pte::Migration(pfn),
                    &mut range,
                );
                if n != want {
                    // An entry we cannot see: put back what we changed and try later.
                    self.restore_file_entries(src);
                    dst.unlock();
                    src.unlock();
                    put_new(dst);
                    return Unmap::Again;
                }
                if let Some(r) = range {
                    *flush = Some(match *flush {
                        None => r,
                        Some((s, e)) => (s.min(r.0), e.max(r.1)),
                    });
                }
                n
            } else {
                0
            };
            Kind::File { mapped }
        } else {
            // Neither anon nor movable any more: the owner let go of it (zapped, or
            // released with clear_page_movable) while others still hold references.
            dst.unlock();
            src.unlock();
            put_new(dst);
            self.release_isolated(src);
            return Unmap::Released;
        };
        Unmap::Batched(Entry { src, dst, kind })
    }

    /// The move phase for one page of a batch (`migrate_folio_move`). On error everything
    /// is as before the unmap: src locked state released, PTE restored, dst given back.
    fn migrate_move<'a>(
        &'a self,
        e: &Entry<'a>,
        put_new: &mut dyn FnMut(&'a Page),
        mode: MigrateMode,
    ) -> Result<(), MigrateError> {
        let (src, dst) = (e.src, e.dst);
        match e.kind {
            Kind::Anon { va } => {
                let platform = self.platform();
                let src_pfn = self.page_to_pfn(src);
                let dst_pfn = self.page_to_pfn(dst);
                // The mapping's reference and ours, nothing else: freeze it so that nobody
                // can take a new one while the page changes hands (folio_ref_freeze).
                if !src.ref_freeze(2) {
                    // Pinned meanwhile (or a zap is waiting for the lock): undo the unmap. A
                    // non-present entry becoming present needs no flush.
                    let restored = crate::port::platform::movable_mapping_of(platform).pte_cmpxchg(
                        va,
                        Pte::Migration(src_pfn),
                        Pte::Present(src_pfn),
                    );
                    debug_assert!(restored, "migration entry changed under the page lock");
                    dst.unlock();
                    src.unlock();
                    put_new(dst);
                    return Err(MigrateError::Again);
                }
                // SAFETY: both frames are whole order-0 pages of RAM: src is unmapped,
                // flushed and frozen (nobody reads or writes it), dst is fresh, locked and
                // known to nobody else; they are distinct frames.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        platform.phys_to_virt(src_pfn << PAGE_SHIFT) as *const u8,
                        platform.phys_to_virt(dst_pfn << PAGE_SHIFT),
                        PAGE_SIZE as usize,
                    );
                }
                dst.set_index(src.index());
                dst.set_mapcount(1);
                dst.set_flag(src.flags() & MIGRATE_FLAGS);
                dst.set_mapping_raw(src.mapping_raw());
                // dst keeps the reference alloc gave it: that is now the mapping's.
                let installed = crate::port::platform::movable_mapping_of(platform).pte_cmpxchg(
                    va,
                    Pte::Migration(src_pfn),
                    Pte::Present(dst_pfn),
                );
                if !installed {
                    log::error!(
                        "migrate_pages: migration entry at {va:#x} changed under the page lock"
                    );
                }
                clear_anon_metadata(src);
                src.clear_flag(MIGRATE_FLAGS | PageFlags::ISOLATED);
                dst.unlock();
                src.unlock();
                // Back to the isolation reference alone, then free it the normal way.
                src.ref_unfreeze(1);
                if let Err(bad) = self.put_page(src) {
                    log::error!("migrate_pages: freeing the old page: {bad}");
                }
                Ok(())
            }
            Kind::File { mapped } => match self.migrate_cache_page(dst, src, mapped) {
                Ok(()) => {
                    dst.unlock();
                    src.unlock();
                    self.lru_add(dst);
                    // Only the isolation reference is left: the old page is freed.
                    if let Err(bad) = self.put_page(src) {
                        log::error!("migrate_pages: freeing the old cache page: {bad}");
                    }
                    Ok(())
                }
                Err(err) => {
                    if mapped > 0 {
                        // Frozen by someone's reference: the entries go back.
                        self.restore_file_entries(src);
                    }
                    dst.unlock();
                    src.unlock();
                    put_new(dst);
                    Err(err)
                }
            },
            Kind::Movable(ops) => match ops.migrate_page(dst, src, mode) {
                Ok(()) => {
                    if dst.mapping_raw() == 0 {
                        dst.set_mapping_raw(src.mapping_raw());
                    }
                    clear_page_movable(src);
                    src.clear_isolated();
                    dst.unlock();
                    src.unlock();
                    // The owner's reference passed to dst; drop src's owner reference and
                    // the isolation reference (the last one frees it).
                    for _ in 0..2 {
                        if let Err(bad) = self.put_page(src) {
                            log::error!("migrate_pages: freeing the old movable page: {bad}");
                        }
                    }
                    Ok(())
                }
                Err(err) => {
                    dst.unlock();
                    src.unlock();
                    put_new(dst);
                    Err(if err == MigrateError::NoMemory {
                        MigrateError::Busy
                    } else {
                        err
                    })
                }
            },
        }
    }
}

impl core::error::Error for MigrateError {}
