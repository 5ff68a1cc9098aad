//! Shrinking the LRU lists and direct reclaim (Linux: `mm/vmscan.c`: `isolate_lru_folios`,
//! `shrink_inactive_list`, `shrink_folio_list`, `shrink_active_list`, `inactive_is_low`,
//! `shrink_lruvec`, `shrink_node`, `do_try_to_free_pages`).
//!
//! # Aging
//!
//! Reclaim scans a list from its **tail** (its oldest pages), in batches of
//! [`SWAP_CLUSTER_MAX`], `size >> priority` pages per list and pass: priority starts at
//! [`DEF_PRIORITY`] (1/4096 of the list) and falls towards 0 (the whole list) while too
//! little is freed, so light pressure touches few pages and heavy pressure sees them all.
//!
//! - `shrink_inactive_list` isolates a batch from the inactive tail and tries to free each
//!   page: a clean, unmapped file page is dropped from its file (`__remove_mapping`) unless
//!   someone holds a reference (a reader), in which case it is rotated back to the head of
//!   the inactive list. As in Linux, `PG_referenced` alone does not save an *unmapped*
//!   page here (it is cleared and the page goes): protection comes from promotion on the
//!   second access ([`PageAllocator::mark_page_accessed`]), which is what keeps a
//!   streaming read from evicting the working set.
//! - A *mapped* page (one mapped into a file window, [`crate::reclaim::mmap`]) is judged
//!   by its page-table entries, as Linux's `folio_check_references` does for file folios:
//!   with the page locked (a busy lock keeps the page), the accessed bits of all its
//!   entries are tested and cleared (`folio_referenced`), and `PG_referenced` is tested
//!   and cleared:
//!
//!   | accessed entries | `PG_referenced` | outcome                                    |
//!   |------------------|-----------------|--------------------------------------------|
//!   | 0                | any             | reclaim: unmap, drop                       |
//!   | 1                | clear           | keep (rotate), set `PG_referenced`         |
//!   | 1                | set             | activate, set `PG_referenced`              |
//!   | 2 or more        | any             | activate, set `PG_referenced`              |
//!
//!   So a mapped page touched once since the last scan survives one more trip through
//!   the inactive list, and one touched again by then is promoted. (Linux also activates
//!   on one accessed entry of an executable mapping; no window here is executable.)
//!   A page to reclaim is unmapped through the reverse map while locked: every entry is
//!   compare-exchanged to none, counted in `pgunmap_reclaim`, and its count and reference
//!   dropped; one TLB shootdown covers the whole batch; only then is the count frozen and
//!   the page removed from the cache. A fault that took a reference to the page in the
//!   meantime (it then waits for the page lock) makes the freeze fail, and the page is
//!   put back rather than freed.
//! - `shrink_active_list` isolates a batch from the active tail and moves it to the head
//!   of the inactive list (`pgdeactivate`), keeping `PG_referenced`, so a page still in
//!   use is promoted again by its next access. The accessed bits of mapped pages are
//!   cleared on the way, as Linux's `folio_referenced` call there does: an entry must be
//!   touched again after deactivation to count. Linux rotates only referenced
//!   *executable* mapped pages back to the active list; there are none here.
//! - The active list is only shrunk while the inactive list is too small
//!   ([`inactive_is_low`]): the inactive list must be large enough that a page gets a fair
//!   chance of a second access before it reaches the tail, and the larger the memory, the
//!   smaller the inactive share needs to be (Linux's `sqrt(10 * GiB)` ratio).
//!
//! # Direct reclaim
//!
//! An allocation that fails its watermarks reclaims for itself
//! ([`PageAllocator::try_to_free_pages`]): every node of its zonelist is shrunk, along with
//! the registered [`crate::reclaim::shrinker`]s, at falling priority until
//! [`SWAP_CLUSTER_MAX`] pages were freed. Pages of zones above the request's highest zone
//! are skipped during isolation: freeing them would not help.

#![allow(unsafe_code)]

use crate::model::list::PageList;
use crate::model::mmzone::PAGE_SHIFT;
use crate::model::page::Page;
use crate::page_alloc::PageAllocator;
use crate::page_alloc::gfp::Gfp;
use crate::port::platform::Platform;
use crate::reclaim::lru::{LruList, Lruvec};
use crate::reclaim::{DEF_PRIORITY, SWAP_CLUSTER_MAX};
use crate::report::vmstat::VmEvent;

/// What one reclaim run wants and has done (`struct scan_control`).
#[derive(Clone, Copy, Debug)]
pub struct ScanControl {
    /// Pages to free before stopping early.
    pub nr_to_reclaim: u64,
    /// Highest zone index whose pages are worth freeing.
    pub reclaim_idx: usize,
    /// Allocation order on whose behalf reclaim runs.
    pub order: u32,
    /// Current priority ([`DEF_PRIORITY`] down to 0).
    pub priority: u32,
    /// Pages scanned so far.
    pub nr_scanned: u64,
    /// Pages freed so far.
    pub nr_reclaimed: u64,
    /// kswapd (true) or direct reclaim: selects the `pgscan`/`pgsteal` counters.
    pub kswapd: bool,
    /// The active list may be shrunk in this pass (`may_deactivate`).
    pub may_deactivate: bool,
    /// The allocation's flags, handed to shrinkers.
    pub gfp: Gfp,
}

impl ScanControl {
    /// A run at [`DEF_PRIORITY`] with nothing done yet.
    pub fn new(nr_to_reclaim: u64, reclaim_idx: usize, order: u32, kswapd: bool, gfp: Gfp) -> Self {
        ScanControl {
            nr_to_reclaim,
            reclaim_idx,
            order,
            priority: DEF_PRIORITY,
            nr_scanned: 0,
            nr_reclaimed: 0,
            kswapd,
            may_deactivate: false,
            gfp,
        }
    }
}

/// What reclaim does with a mapped inactive page (`enum folio_references`, file half).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageReferences {
    /// Unmap and drop it (`FOLIOREF_RECLAIM`).
    Reclaim,
    /// Rotate it to the inactive head (`FOLIOREF_KEEP`).
    Keep,
    /// Promote it to the active list (`FOLIOREF_ACTIVATE`).
    Activate,
}

/// The decision of `folio_check_references` for a mapped file page, from the number of
/// its entries that were accessed and whether `PG_referenced` was set (table in the
/// module documentation). Pure, so it is tested against the hand-worked cases.
pub const fn mapped_page_references(referenced_ptes: u32, referenced_page: bool) -> PageReferences {
    if referenced_ptes == 0 {
        PageReferences::Reclaim
    } else if referenced_page || referenced_ptes > 1 {
        PageReferences::Activate
    } else {
        PageReferences::Keep
    }
}

/// Integer square root (`int_sqrt`).
pub const fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    // Newton's iteration from above, in u128 so `r + x / r` cannot overflow.
    let x = x as u128;
    let mut r = x;
    let mut y = (r + x / r) / 2;
    while y < r {
        r = y;
        y = (r + x / r) / 2;
    }
    r as u64
}

/// Is the inactive list too small against the active one (`inactive_is_low`)? With
/// `total` the pages on both lists, in GiB, the inactive list should hold at least
/// `1 / (1 + sqrt(10 * GiB))` of them (half below 1 GiB, a quarter at 1 GiB, ...).
pub const fn inactive_is_low(inactive: u64, active: u64) -> bool {
    let gb = (inactive + active) >> (30 - PAGE_SHIFT);
    let ratio = if gb > 0 { int_sqrt(10 * gb) } else { 1 };
    inactive * ratio < active
}

impl<P: Platform> PageAllocator<P> {
    /// Take up to `nr_to_scan` pages from the tail of `lru` onto `dst` (`isolate_lru_folios`),
    /// each with an isolation reference and `PG_lru` cleared. Pages of zones above
    /// `sc.reclaim_idx` are passed over and stay on the list. Returns the pages scanned.
    fn isolate_lru_pages(
        &self,
        lv: &Lruvec,
        lru: LruList,
        nr_to_scan: u64,
        sc: &ScanControl,
        dst: &mut PageList,
    ) -> u64 {
        let mut skipped = PageList::new();
        let mut scanned = 0;
        let mut g = lv.lock.lock_irqsave(self.platform());
        while scanned < nr_to_scan {
            // SAFETY: the lock protects the list; its pages are memmap pages.
            let Some(p) = (unsafe { g.list(lru).pop_back() }) else {
                break;
            };
            let page = self.page_ref(p);
            if page.zone_idx() > sc.reclaim_idx {
                // SAFETY: just unlinked; the skipped list is ours and goes back below.
                unsafe { skipped.push_back(page) };
                continue;
            }
            scanned += 1;
            lv.update_size(page, lru, -1);
            page.clear_lru();
            // A listed page holds the cache's reference, so the count is not zero.
            page.ref_inc();
            // SAFETY: just unlinked from the LRU; `dst` is the caller's private list.
            unsafe { dst.push_back(page) };
        }
        // Passed-over pages go back to the head, as Linux splices them.
        // SAFETY: `skipped` holds pages we unlinked above, under the same lock.
        while let Some(p) = unsafe { skipped.pop_back() } {
            // SAFETY: as above; they never lost PG_lru and their sizes were not changed.
            unsafe { g.list(lru).push_front(self.page_ref(p)) };
        }
        scanned
    }

    /// Shrink the inactive list by up to `nr_to_scan` pages (`shrink_inactive_list` +
    /// `shrink_folio_list`). Returns the pages freed.
    pub fn shrink_inactive_list(&self, nid: usize, nr_to_scan: u64, sc: &mut ScanControl) -> u64 {
        let lv = self.lruvec(nid);
        let mut list = PageList::new();
        let scanned = self.isolate_lru_pages(lv, LruList::InactiveFile, nr_to_scan, sc, &mut list);
        if scanned == 0 {
            return 0;
        }
        sc.nr_scanned += scanned;
        let mut reclaimed = 0;
        // Unmapped pages waiting for the batch's TLB flush, still locked.
        let mut unmapped = PageList::new();
        let mut flush: Option<(u64, u64)> = None;
        let mut nr_unmapped = 0u64;
        let mut activated = 0u64;
        // SAFETY: `list` holds the pages isolated above; their links are ours.
        while let Some(p) = unsafe { list.pop_front() } {
            let page = self.page_ref(p);
            if page.mapcount() > 0 {
                if !page.trylock() {
                    // Someone works on it (a fault, migration): keep it.
                    self.putback_lru_page(page);
                    continue;
                }
                match self.check_mapped_references(page) {
                    PageReferences::Activate => {
                        page.set_active();
                        activated += 1;
                        page.unlock();
                        self.putback_lru_page(page);
                    }
                    PageReferences::Keep => {
                        page.unlock();
                        self.putback_lru_page(page);
                    }
                    PageReferences::Reclaim => {
                        nr_unmapped += u64::from(self.try_to_unmap_file(page, &mut flush));
                        // SAFETY: the page left `list` above and is on no other list.
                        unsafe { unmapped.push_back(page) };
                    }
                }
                continue;
            }
            // folio_check_references for an unmapped file page: the referenced bit is
            // consumed and the page reclaimed (FOLIOREF_RECLAIM_CLEAN).
            page.clear_referenced();
            if self.remove_mapping(page) {
                reclaimed += 1;
            } else {
                // In use: rotate it to the head of the inactive list.
                self.putback_lru_page(page);
            }
        }
        if let Some((start, end)) = flush {
            // One shootdown for the batch: after it no CPU can still read a page through
            // an entry cleared above, so the pages may be freed.
            self.flush_tlb_movable_range(start, end);
        }
        // SAFETY: `unmapped` holds pages taken off `list` above; their links are ours.
        while let Some(p) = unsafe { unmapped.pop_front() } {
            let page = self.page_ref(p);
            if self.remove_mapping_unlock(page, true) {
                reclaimed += 1;
            } else {
                // A fault holds a reference (and waits for the lock to map it again), or
                // an entry could not be cleared: not freed.
                page.unlock();
                self.putback_lru_page(page);
            }
        }
        if nr_unmapped > 0 {
            self.count_vm_events(VmEvent::PgunmapReclaim, nr_unmapped);
        }
        if activated > 0 {
            self.count_vm_events(VmEvent::Pgactivate, activated);
        }
        let (scan_ev, steal_ev) = if sc.kswapd {
            (VmEvent::PgscanKswapd, VmEvent::PgstealKswapd)
        } else {
            (VmEvent::PgscanDirect, VmEvent::PgstealDirect)
        };
        self.count_vm_events(scan_ev, scanned);
        if reclaimed > 0 {
            self.count_vm_events(steal_ev, reclaimed);
        }
        sc.nr_reclaimed += reclaimed;
        reclaimed
    }

    /// Judge a locked, mapped, isolated page by its accessed bits and `PG_referenced`,
    /// consuming both; a page with accessed entries leaves with `PG_referenced` set.
    fn check_mapped_references(&self, page: &Page) -> PageReferences {
        let ptes = self.page_referenced_ptes(page);
        let was_referenced = page.test_and_clear_flag(crate::model::page::PageFlags::REFERENCED);
        if ptes > 0 {
            page.set_referenced();
        }
        mapped_page_references(ptes, was_referenced)
    }

    /// Move up to `nr_to_scan` pages from the active tail to the inactive head
    /// (`shrink_active_list`), counting `pgrefill` and `pgdeactivate`.
    pub fn shrink_active_list(&self, nid: usize, nr_to_scan: u64, sc: &mut ScanControl) {
        let lv = self.lruvec(nid);
        let mut list = PageList::new();
        let scanned = self.isolate_lru_pages(lv, LruList::ActiveFile, nr_to_scan, sc, &mut list);
        if scanned == 0 {
            return;
        }
        self.count_vm_events(VmEvent::Pgrefill, scanned);
        let mut deactivated = 0;
        // SAFETY: `list` holds the pages isolated above; their links are ours.
        while let Some(p) = unsafe { list.pop_front() } {
            let page: &Page = self.page_ref(p);
            // folio_referenced clears the accessed bits; with no executable mappings the
            // answer does not change the outcome. A busy page lock skips the walk.
            if page.mapcount() > 0 && page.trylock() {
                self.page_referenced_ptes(page);
                page.unlock();
            }
            page.clear_active();
            deactivated += 1;
            self.putback_lru_page(page);
        }
        self.count_vm_events(VmEvent::Pgdeactivate, deactivated);
    }

    /// Shrink one node's lists at `sc.priority` (`shrink_lruvec` with `get_scan_count` for
    /// file pages only): scan `size >> priority` of each list in batches, the active list
    /// only when [`inactive_is_low`] allowed it, and stop once `nr_to_reclaim` is met.
    pub(crate) fn shrink_lruvec(&self, nid: usize, sc: &mut ScanControl) {
        let lv = self.lruvec(nid);
        let mut nr = [
            lv.lru_size(LruList::InactiveFile, sc.reclaim_idx) >> sc.priority,
            lv.lru_size(LruList::ActiveFile, sc.reclaim_idx) >> sc.priority,
        ];
        let start = sc.nr_reclaimed;
        while nr[0] > 0 || nr[1] > 0 {
            for (i, lru) in [LruList::InactiveFile, LruList::ActiveFile]
                .into_iter()
                .enumerate()
            {
                if nr[i] == 0 {
                    continue;
                }
                let n = nr[i].min(SWAP_CLUSTER_MAX);
                nr[i] -= n;
                match lru {
                    LruList::InactiveFile => {
                        self.shrink_inactive_list(nid, n, sc);
                    }
                    LruList::ActiveFile if sc.may_deactivate => self.shrink_active_list(nid, n, sc),
                    LruList::ActiveFile => {}
                }
            }
            // Linux scales the remaining scan down proportionally once the target is met;
            // with one pair of lists that is simply stopping.
            if sc.nr_reclaimed - start >= sc.nr_to_reclaim {
                break;
            }
        }
    }

    /// Shrink a node (`shrink_node`): its LRU lists and the shrinkers. A node where
    /// something was freed is no longer "hopeless" for kswapd. Returns the pages freed.
    pub fn shrink_node(&self, nid: usize, sc: &mut ScanControl) -> u64 {
        let before = sc.nr_reclaimed;
        let lv = self.lruvec(nid);
        // prepare_scan_control: deactivate only while the inactive list is too small.
        sc.may_deactivate = inactive_is_low(
            lv.lru_size(LruList::InactiveFile, sc.reclaim_idx),
            lv.lru_size(LruList::ActiveFile, sc.reclaim_idx),
        );
        self.shrink_lruvec(nid, sc);
        sc.nr_reclaimed += self.shrink_slab(sc.gfp, nid, sc.priority);
        let freed = sc.nr_reclaimed - before;
        if freed > 0 {
            self.reset_kswapd_failures(nid);
        }
        freed
    }

    /// Direct reclaim (`try_to_free_pages` / `do_try_to_free_pages`): shrink every node of
    /// the request's zonelist at falling priority until [`SWAP_CLUSTER_MAX`] pages were
    /// freed or priority 0 was tried. Returns the pages freed.
    pub fn try_to_free_pages(
        &self,
        gfp: Gfp,
        order: u32,
        nid: usize,
        highest_zoneidx: usize,
    ) -> u64 {
        let mut sc = ScanControl::new(SWAP_CLUSTER_MAX, highest_zoneidx, order, false, gfp);
        let nodes = self.reclaim_nodes(nid, highest_zoneidx);
        loop {
            sc.nr_scanned = 0;
            for n in 0..crate::model::mmzone::MAX_NUMNODES {
                if nodes & (1 << n) != 0 {
                    self.shrink_node(n, &mut sc);
                }
            }
            if sc.nr_reclaimed >= sc.nr_to_reclaim || sc.priority == 0 {
                break;
            }
            sc.priority -= 1;
        }
        sc.nr_reclaimed
    }

    /// The nodes of `nid`'s zonelist up to `highest_zoneidx`, as a bit mask
    /// (`shrink_zones` visits each node once).
    fn reclaim_nodes(&self, nid: usize, highest_zoneidx: usize) -> u64 {
        let mut mask = 0u64;
        for &i in self.node_zonelist(nid, highest_zoneidx) {
            let n = i as usize / crate::model::mmzone::MAX_NR_ZONES;
            if n < 64 {
                mask |= 1 << n;
            }
        }
        if mask == 0 && nid < 64 {
            mask = 1 << nid;
        }
        mask
    }
}
