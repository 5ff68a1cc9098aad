//! The per-node LRU lists of file pages and the page flags that age them (Linux:
//! `struct lruvec`, `mm/swap.c`: `folio_add_lru`, `folio_mark_accessed`,
//! `folio_isolate_lru`, `folio_putback_lru`).
//!
//! Reclaim must guess which cache pages will not be needed again. Linux's answer, kept
//! here, is two lists per node: new pages enter the head of the **inactive** list; a page
//! referenced twice while inactive is promoted to the **active** list; the active list is
//! trimmed from its tail back onto the inactive list when it grows too large (see
//! [`crate::reclaim::vmscan`]), and reclaim only ever frees pages from the inactive tail.
//! A page read once and never again (a streaming read of a large file) therefore goes
//! through the inactive list only and cannot push the working set out.
//!
//! ```text
//!   fill ──> inactive head ···> inactive tail ──> evicted (clean: dropped)
//!               ▲   │ 2nd access                     │ in use: rotated to the head
//!   deactivate  │   ▼ (PG_referenced set)
//!            active head ···> active tail
//! ```
//!
//! # Flags
//!
//! - `PG_lru`: the page is on one of the node's lists. It is only changed under the node's
//!   LRU lock, and clearing it is what *isolation* means: whoever clears it (reclaim taking
//!   a batch, or compaction's migrate scanner through
//!   [`PageAllocator::isolate_lru_page`]) owns the page's `lru` links until it puts the
//!   page back. Two isolators can never both win, because both test `PG_lru` under the
//!   same lock. Compaction additionally sets `PG_isolated`, its own marker.
//! - `PG_active`: which list (kept while isolated, so a put-back goes to the right one).
//! - `PG_referenced`: accessed since it last moved (`mark_page_accessed`).
//!
//! # References
//!
//! A page on an LRU list always holds its cache reference. Isolation takes one more
//! reference (the isolator's); putting back drops it.
//!
//! Linux batches LRU additions per CPU (`folio_batch`) to spare the lock; this crate adds
//! under the lock at once, which keeps the invariant checker exact at the cost of one lock
//! round trip per cache fill.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::list::PageList;
use crate::model::mmzone::{MAX_NR_ZONES, ZoneType};
use crate::model::page::{Page, PageFlags};
use crate::page_alloc::PageAllocator;
use crate::port::platform::Platform;
use crate::port::sync::SpinLock;
use crate::report::vmstat::VmEvent;

/// The LRU lists this crate keeps (Linux's `enum lru_list`, file half: anonymous memory
/// here is never reclaimed, there is no swap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LruList {
    /// `LRU_INACTIVE_FILE`.
    InactiveFile = 0,
    /// `LRU_ACTIVE_FILE`.
    ActiveFile = 1,
}

/// Number of LRU lists.
pub const NR_LRU_LISTS: usize = 2;

impl LruList {
    /// The list a page with these flags belongs on (`folio_lru_list`).
    pub fn of(page: &Page) -> LruList {
        if page.is_active() {
            LruList::ActiveFile
        } else {
            LruList::InactiveFile
        }
    }
}

/// The lists themselves, under the node's LRU lock.
pub struct LruLists {
    pub(crate) lists: [PageList; NR_LRU_LISTS],
}

impl LruLists {
    /// One list, by kind.
    pub(crate) fn list(&mut self, lru: LruList) -> &mut PageList {
        &mut self.lists[lru as usize]
    }
}

/// One node's LRU lists and their sizes (`struct lruvec` + the `NR_ZONE_*_FILE` and
/// `NR_FILE_PAGES` counters).
pub struct Lruvec {
    pub(crate) lock: SpinLock<LruLists>,
    /// Pages per list and zone: written under the lock, read without it.
    zone_size: [[AtomicU64; NR_LRU_LISTS]; MAX_NR_ZONES],
    /// Pages of the page cache on this node, on a list or isolated (`NR_FILE_PAGES`).
    pub(crate) nr_file_pages: AtomicU64,
    /// Those of them mapped by at least one page-table entry (`NR_FILE_MAPPED`), moved
    /// when a page's mapcount leaves or reaches zero ([`crate::reclaim::mmap`]).
    pub(crate) nr_mapped: AtomicU64,
}

impl Default for Lruvec {
    fn default() -> Self {
        Lruvec::new()
    }
}

impl Lruvec {
    /// Empty lists.
    pub const fn new() -> Lruvec {
        Lruvec {
            lock: SpinLock::new(LruLists {
                lists: [const { PageList::new() }; NR_LRU_LISTS],
            }),
            zone_size: [const { [const { AtomicU64::new(0) }; NR_LRU_LISTS] }; MAX_NR_ZONES],
            nr_file_pages: AtomicU64::new(0),
            nr_mapped: AtomicU64::new(0),
        }
    }

    /// Pages on `lru` in zones up to `max_zone` (`lruvec_lru_size`).
    pub fn lru_size(&self, lru: LruList, max_zone: usize) -> u64 {
        self.zone_size
            .iter()
            .take(max_zone.min(MAX_NR_ZONES - 1) + 1)
            .map(|z| z[lru as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// Pages on `lru` in zone `zt` (`NR_ZONE_INACTIVE_FILE` / `NR_ZONE_ACTIVE_FILE`).
    pub fn zone_lru_size(&self, lru: LruList, zt: ZoneType) -> u64 {
        self.zone_size[zt.index()][lru as usize].load(Ordering::Relaxed)
    }

    /// Account `page` on `lru`; called under the lock with the page linked or unlinked.
    pub(crate) fn update_size(&self, page: &Page, lru: LruList, delta: i64) {
        let c = &self.zone_size[page.zone_idx().min(MAX_NR_ZONES - 1)][lru as usize];
        if delta >= 0 {
            c.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            c.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// The LRU sizes of a node, in pages (for `/proc/meminfo`, `/proc/vmstat` and reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LruSizes {
    /// `nr_inactive_file` / `Inactive(file)`.
    pub inactive_file: u64,
    /// `nr_active_file` / `Active(file)`.
    pub active_file: u64,
    /// `nr_file_pages` / `Cached`: every page of the page cache, listed or isolated,
    /// mapped or not.
    pub file_pages: u64,
    /// `nr_mapped` / `Mapped`: the cache pages mapped into a file window.
    pub mapped: u64,
}

impl core::ops::Add for LruSizes {
    type Output = LruSizes;
    fn add(self, o: LruSizes) -> LruSizes {
        LruSizes {
            inactive_file: self.inactive_file + o.inactive_file,
            active_file: self.active_file + o.active_file,
            file_pages: self.file_pages + o.file_pages,
            mapped: self.mapped + o.mapped,
        }
    }
}

impl<P: Platform> PageAllocator<P> {
    /// Node `nid`'s LRU lists (in its descriptor). A node id without a descriptor reads
    /// as empty lists; no page of such a node exists to be put on them.
    pub(crate) fn lruvec(&self, nid: usize) -> &Lruvec {
        static NO_NODE: Lruvec = Lruvec::new();
        self.model().node(nid).map_or(&NO_NODE, |n| &n.lruvec)
    }

    /// The LRU sizes of node `nid`.
    pub fn lru_sizes(&self, nid: usize) -> LruSizes {
        let l = self.lruvec(nid);
        LruSizes {
            inactive_file: l.lru_size(LruList::InactiveFile, MAX_NR_ZONES - 1),
            active_file: l.lru_size(LruList::ActiveFile, MAX_NR_ZONES - 1),
            file_pages: l.nr_file_pages.load(Ordering::Relaxed),
            mapped: l.nr_mapped.load(Ordering::Relaxed),
        }
    }

    /// The LRU sizes summed over all online nodes.
    pub fn global_lru_sizes(&self) -> LruSizes {
        self.online_nodes()
            .map(|nid| self.lru_sizes(nid))
            .fold(LruSizes::default(), |a, b| a + b)
    }

    /// File pages on the LRU lists of one zone (`zone_reclaimable_pages`): what reclaim
    /// could still free there, as far as `should_reclaim_retry` can tell.
    pub fn zone_reclaimable_pages(&self, nid: usize, zt: ZoneType) -> u64 {
        let l = self.lruvec(nid);
        l.zone_lru_size(LruList::InactiveFile, zt) + l.zone_lru_size(LruList::ActiveFile, zt)
    }

    /// Put a page that holds its cache reference and is on no list at the head of the
    /// list its `PG_active` selects (`lruvec_add_folio`), setting `PG_lru`.
    pub(crate) fn lru_add(&self, page: &Page) {
        let lv = self.lruvec(page.nid());
        let lru = LruList::of(page);
        let mut g = lv.lock.lock_irqsave(self.platform());
        debug_assert!(!page.is_lru());
        // SAFETY: the page is on no list (its links are its owner's, ours), it is a memmap
        // page that outlives its membership, and the lock is held.
        unsafe { g.list(lru).push_front(page) };
        page.set_lru();
        lv.update_size(page, lru, 1);
    }

    /// Take a page off its LRU list for the caller (`folio_isolate_lru`), who must hold a
    /// reference to it: that reference becomes the isolation reference. False if the page
    /// is not on a list (already isolated by reclaim or compaction, or not an LRU page).
    pub fn isolate_lru_page(&self, page: &Page) -> bool {
        if !page.is_lru() {
            return false;
        }
        let lv = self.lruvec(page.nid());
        let mut g = lv.lock.lock_irqsave(self.platform());
        if !page.is_lru() {
            return false;
        }
        let lru = LruList::of(page);
        // SAFETY: PG_lru is set and only changes under this lock, so the page is on `lru`
        // of this node, which the lock protects.
        unsafe { g.list(lru).remove(page) };
        page.clear_lru();
        lv.update_size(page, lru, -1);
        true
    }

    /// Give an isolated page back to the LRU and drop the isolation reference
    /// (`folio_putback_lru`).
    pub fn putback_lru_page(&self, page: &Page) {
        self.lru_add(page);
        if let Err(bad) = self.put_page(page) {
            log::error!("putback_lru_page: {bad}");
        }
    }

    /// Note an access to a cache page (`folio_mark_accessed`): an unreferenced page becomes
    /// referenced; a referenced inactive page is promoted to the active list (if it is on
    /// the LRU; an isolated page only loses the mark, as in Linux when the page is not in
    /// a per-CPU batch) and loses the mark.
    pub fn mark_page_accessed(&self, page: &Page) {
        if !page.is_referenced() {
            page.set_referenced();
        } else if !page.is_active() {
            self.activate_page(page);
            page.clear_referenced();
        }
    }

    /// Move an inactive LRU page to the head of the active list (`folio_activate`),
    /// counting `pgactivate`.
    fn activate_page(&self, page: &Page) {
        let lv = self.lruvec(page.nid());
        let mut g = lv.lock.lock_irqsave(self.platform());
        if !page.is_lru() || page.is_active() {
            return;
        }
        // SAFETY: PG_lru under the lock: the page is on this node's inactive list.
        unsafe { g.list(LruList::InactiveFile).remove(page) };
        lv.update_size(page, LruList::InactiveFile, -1);
        page.set_active();
        // SAFETY: just unlinked; the lock is held.
        unsafe { g.list(LruList::ActiveFile).push_front(page) };
        lv.update_size(page, LruList::ActiveFile, 1);
        drop(g);
        self.count_vm_events(VmEvent::Pgactivate, 1);
    }
}

/// Flags an LRU page carries that must be gone before it is freed.
pub(crate) const LRU_PAGE_FLAGS: PageFlags = PageFlags::LRU
    .union(PageFlags::ACTIVE)
    .union(PageFlags::REFERENCED)
    .union(PageFlags::UPTODATE)
    .union(PageFlags::ISOLATED);

impl core::fmt::Debug for Lruvec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lruvec")
            .field(
                "inactive_file",
                &self.lru_size(LruList::InactiveFile, MAX_NR_ZONES - 1),
            )
            .field(
                "active_file",
                &self.lru_size(LruList::ActiveFile, MAX_NR_ZONES - 1),
            )
            .field("nr_file_pages", &self.nr_file_pages.load(Ordering::Relaxed))
            .finish()
    }
}
