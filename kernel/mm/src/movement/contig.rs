//! Contiguous allocations larger than the buddy allocator's largest block: a 32 MiB DMA
//! buffer, a 1 GiB gigantic page (Linux: `alloc_contig_range`, `alloc_contig_pages`,
//! `free_contig_range` in `mm/page_alloc.c`).
//!
//! # Why a separate path
//!
//! The buddy lists stop at order 10 (4 MiB), and even a free order-10 block exists only
//! where nothing was ever allocated. Beyond that, contiguity has to be *made*: choose a
//! range, fence it off ([`crate::movement::isolation`]), move every page in use out of it
//! ([`crate::movement::migrate`]), and take what is then a wholly free range. That only
//! works if the pages in the range can move, which is what grouping by mobility
//! (movable pageblocks, ZONE_MOVABLE, CMA areas) arranges.
//!
//! # alloc_contig_range
//!
//! ```text
//!   start_isolate_page_range     pageblocks covering the range -> MIGRATE_ISOLATE,
//!                                refused at once on an unmovable/pinned/reserved page;
//!                                pcp lists drained
//!   up to CONTIG_PASSES passes   (__alloc_contig_migrate_range)
//!     scan the range: isolate in-use pages (anon, movable_operations) in clusters of
//!     32, migrate each cluster to pages allocated outside (the range is isolated, so no
//!     allocation can land in it); the freed sources go to the Isolate lists
//!     drain pcp lists; test_pages_isolated -> done when the whole range is free
//!   take the free blocks off the Isolate lists (isolate_freepages_range): the parts of
//!     a block outside the range go back to the lists; every page of the range becomes an
//!     order-0 page with one reference
//!   undo_isolate_page_range      each block repainted the type it had (for a CMA range:
//!                                CMA, which makes a new area's blocks CMA)
//! ```
//!
//! Every failure undoes the isolation, so the pages are back where they were (migrated
//! pages stay migrated: they are equally good elsewhere). A page still in use after the
//! last pass fails the call with [`ContigError::Busy`] naming it; running out of
//! migration targets fails with [`ContigError::NoMemory`].
//!
//! The range comes back as `end - start` separate order-0 pages with one reference each
//! (Linux without `__GFP_COMP`): they can be freed one by one, or all at once with
//! [`PageAllocator::free_contig_range`].
//!
//! # alloc_contig_pages
//!
//! Finds a range itself: for each zone the request may use (the zonelist of `nid`),
//! candidate ranges aligned to the request's size (rounded up to a power of two) are
//! checked cheaply without locks ([`PageAllocator::pfn_range_valid_contig`]: every pfn is
//! RAM of the zone, nothing reserved, unmovable or pinned, no isolated, HighAtomic or CMA
//! pageblock) and [`PageAllocator::alloc_contig_range`] is tried on each that passes. A
//! 1 GiB gigantic page is `alloc_contig_pages(1 << 18, ..)`; it needs a 1 GiB run without
//! reserved pages, which a memory model that keeps each 128 MiB section's memmap inside
//! the section ([`crate::model::sparse`]) does not have: there the largest possible range
//! is just under 126 MiB, and a gigantic request fails cleanly.

use core::fmt;

use crate::model::list::PageList;
use crate::model::mmzone::{Migratetype, PAGEBLOCK_NR_PAGES};
use crate::model::page::Page;
use crate::model::pageblock::{get_pageblock_migratetype, save_pageblock_migratetype};
use crate::model::zone::Zone;
use crate::movement::isolation::{
    IsolateError, IsolateFlags, free_block_containing, page_isolation_obstacle, pageblock_align,
    pageblock_start,
};
use crate::movement::migrate::{MigrateError, MigrateMode, MigrateReason};
use crate::page_alloc::PageAllocator;
use crate::page_alloc::bad_page::{BadPage, BadPageReason};
use crate::page_alloc::gfp::{GFP_HIGHUSER_MOVABLE, Gfp, gfp_zone};
use crate::port::platform::Platform;

/// Passes over the range before a page that stays in use fails the allocation (Linux
/// retries a cluster 5 times in `__alloc_contig_migrate_range`).
pub const CONTIG_PASSES: u32 = 5;

/// Pages isolated and migrated together (`COMPACT_CLUSTER_MAX`).
const CONTIG_CLUSTER: u64 = 32;

/// Why a contiguous allocation failed. Nothing stays isolated after any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContigError {
    /// The range could not be isolated (the reason names the pfn).
    Isolate(IsolateError),
    /// Only Movable and CMA ranges can be allocated this way.
    BadMigratetype(Migratetype),
    /// `__GFP_COMP` is not supported: the range comes back as order-0 pages.
    Compound,
    /// A page of the range was still in use after every migration pass.
    Busy {
        /// The first page not free.
        pfn: u64,
        /// Passes made.
        passes: u32,
    },
    /// No page was left to migrate to.
    NoMemory,
}

impl fmt::Display for ContigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ContigError::Isolate(e) => write!(f, "contiguous range: {e}"),
            ContigError::BadMigratetype(mt) => {
                write!(f, "contiguous range: cannot allocate as {}", mt.name())
            }
            ContigError::Compound => {
                f.write_str("contiguous range: __GFP_COMP is not supported (order-0 pages only)")
            }
            ContigError::Busy { pfn, passes } => write!(
                f,
                "contiguous range: pfn {pfn:#x} still in use after {passes} migration passes"
            ),
            ContigError::NoMemory => f.write_str("contiguous range: no memory to migrate to"),
        }
    }
}

impl core::error::Error for ContigError {}

impl From<IsolateError> for ContigError {
    fn from(e: IsolateError) -> ContigError {
        ContigError::Isolate(e)
    }
}

/// What one successful contiguous allocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContigStats {
    /// Pages migrated out of the range.
    pub migrated: u64,
    /// Pages that failed a migration attempt (and were retried in a later pass).
    pub migrate_failed: u64,
    /// Passes over the range (1 when the first one emptied it).
    pub passes: u32,
    /// Pageblocks isolated.
    pub pageblocks: u64,
}

impl<P: Platform> PageAllocator<P> {
    /// Allocate the pfn range `[start, end)` (`alloc_contig_range`): see the module
    /// documentation. `migratetype` is Movable (any movable range) or Cma (inside a CMA
    /// area: [`crate::movement::cma`]); afterwards a Cma range's pageblocks are CMA, a Movable
    /// range's each have the type they had before.
    /// `gfp` may ask for zeroed pages (`__GFP_ZERO`) and silence (`__GFP_NOWARN`). Every
    /// page of the range then has one reference; free them with
    /// [`PageAllocator::free_contig_range`] or one by one.
    ///
    /// Must be called with interrupts enabled and no spinlock held (it migrates).
    pub fn alloc_contig_range(
        &self,
        start: u64,
        end: u64,
        migratetype: Migratetype,
        gfp: Gfp,
    ) -> Result<ContigStats, ContigError> {
        if !matches!(migratetype, Migratetype::Movable | Migratetype::Cma) {
            return Err(ContigError::BadMigratetype(migratetype));
        }
        if gfp.contains(Gfp::COMP) {
            return Err(ContigError::Compound);
        }
        let flags = if gfp.contains(Gfp::NOWARN) {
            IsolateFlags::empty()
        } else {
            IsolateFlags::REPORT_FAILURE
        };
        let zone = self.isolation_zone(start, end)?;
        // Every pfn must be RAM of the zone: a hole can never be handed out.
        for pfn in start..end {
            match self.pfn_to_page(pfn) {
                Some(p) if p.nid() == zone.nid && p.zone_idx() == zone.zone_type.index() => {}
                Some(_) => return Err(IsolateError::CrossesZones { pfn }.into()),
                None => return Err(IsolateError::NoPage { pfn }.into()),
            }
        }
        self.start_isolate_page_range(start, end, migratetype, flags)?;
        let mut stats = ContigStats {
            pageblocks: (pageblock_align(end) - pageblock_start(start)) / PAGEBLOCK_NR_PAGES,
            ..ContigStats::default()
        };
        let result = self
            .contig_migrate_range(start, end, IsolateFlags::empty(), &mut stats)
            .and_then(|()| self.isolate_freepages_range(zone, start, end, gfp));
        if result.is_ok() && migratetype == Migratetype::Cma {
            // A range taken for a CMA area (`cma_declare_contiguous`) becomes CMA; one
            // taken by `cma_alloc` is CMA already. A failure leaves every block its own.
            let mem = self.model().sparse();
            let mut pb = pageblock_start(start);
            while pb < end {
                let _ = save_pageblock_migratetype(mem, pb, Migratetype::Cma);
                pb += PAGEBLOCK_NR_PAGES;
            }
        }
        self.undo_isolate_page_range(start, end);
        match result {
            Ok(()) => Ok(stats),
            Err(e) => {
                if !gfp.contains(Gfp::NOWARN) {
                    log::info!("alloc_contig_range [{start:#x}, {end:#x}) failed: {e}");
                }
                Err(e)
            }
        }
    }

    /// Migrate every in-use page out of the isolated range until it is wholly free
    /// (`__alloc_contig_migrate_range` followed by `test_pages_isolated` with `flags`).
    pub(crate) fn contig_migrate_range(
        &self,
        start: u64,
        end: u64,
        flags: IsolateFlags,
        stats: &mut ContigStats,
    ) -> Result<(), ContigError> {
        let mut last = IsolateError::InUse { pfn: start };
        for _ in 0..CONTIG_PASSES {
            stats.passes += 1;
            let mut list = PageList::new();
            let mut pfn = start;
            while pfn < end {
                let Some(page) = self.pfn_to_page(pfn) else {
                    pfn += 1;
                    continue;
                };
                if page.is_buddy() {
                    // Read without the zone lock: a stale order only skips too little.
                    let o = page.buddy_order().min(crate::model::mmzone::MAX_PAGE_ORDER);
                    pfn += 1u64 << o;
                    continue;
                }
                if page.refcount() > 0 && self.isolate_migratepage(page, MigrateMode::Sync) {
                    // SAFETY: the page was just isolated: its links are ours, it is a
                    // memmap descriptor, and `list` is private to this call.
                    unsafe { list.push_back(page) };
                }
                pfn += 1;
                if list.len() as u64 >= CONTIG_CLUSTER || (pfn >= end && !list.is_empty()) {
                    self.contig_migrate_list(&mut list, stats)?;
                }
            }
            if !list.is_empty() {
                self.contig_migrate_list(&mut list, stats)?;
            }
            // Sources freed on other CPUs may still sit on their pcp lists only if they
            // were freed before the repaint; the drain is cheap next to the migration.
            self.drain_all_pages();
            match self.test_pages_isolated(start, end, flags) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(match last {
            IsolateError::InUse { pfn } | IsolateError::NotIsolated { pfn } => ContigError::Busy {
                pfn,
                passes: stats.passes,
            },
            e => ContigError::Isolate(e),
        })
    }

    /// Migrate one cluster to pages allocated outside the isolated range.
    fn contig_migrate_list(
        &self,
        list: &mut PageList,
        stats: &mut ContigStats,
    ) -> Result<(), ContigError> {
        let n = list.len() as u64;
        let r = self.migrate_pages(
            list,
            &mut |_src: &Page| self.alloc_page(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN),
            &mut |dst: &Page| {
                if let Err(bad) = self.free_pages(dst, 0) {
                    log::error!("alloc_contig_range: unused migration target: {bad}");
                }
            },
            MigrateMode::Sync,
            MigrateReason::ContigRange,
        );
        match r {
            Ok(failed) => {
                stats.migrated += n - failed.min(n);
                stats.migrate_failed += failed;
                Ok(())
            }
            Err(MigrateError::NoMemory) => Err(ContigError::NoMemory),
            Err(_) => Ok(()),
        }
    }

    /// Take every free block of the isolated, tested range off the Isolate lists and hand
    /// each page of `[start, end)` out as an order-0 page (`isolate_freepages_range` +
    /// `split_free_pages`); parts of a block outside the range go back to the lists.
    fn isolate_freepages_range(
        &self,
        zone: &Zone,
        start: u64,
        end: u64,
        gfp: Gfp,
    ) -> Result<(), ContigError> {
        let mem = self.model().sparse();
        let mut pfn = start;
        while pfn < end {
            let mut g = zone.lock.lock_irqsave(self.platform());
            let mut b = self.buddy(zone, &mut g);
            let Some((head, order)) = free_block_containing(mem, zone, pfn) else {
                drop(g);
                // Cannot happen after a successful test under isolation; give back what
                // was taken rather than hand out a range with a hole.
                let _ = self.free_contig_range(start, pfn - start);
                return Err(ContigError::Busy { pfn, passes: 0 });
            };
            let block_end = head + (1u64 << order);
            let Some(page) = mem.pfn_to_page(head) else {
                return Err(IsolateError::NoPage { pfn: head }.into());
            };
            let on = Migratetype::from_bits(page.buddy_list_mt()).unwrap_or(Migratetype::Isolate);
            b.del_page_from_free_list(page, order, on);
            free_pfn_range(&mut b, head, start.max(head));
            free_pfn_range(&mut b, end.min(block_end), block_end);
            drop(g);
            for p in pfn.max(head)..end.min(block_end) {
                if let Some(page) = mem.pfn_to_page(p) {
                    self.prep_new_page(page, 0, gfp & Gfp::ZERO);
                }
            }
            pfn = block_end;
        }
        Ok(())
    }

    /// Free `nr_pages` order-0 pages from `pfn` on (`free_contig_range`), as
    /// [`PageAllocator::alloc_contig_range`] hands them out: each drops one reference.
    /// Every page is tried; the first rejection is returned.
    pub fn free_contig_range(&self, pfn: u64, nr_pages: u64) -> Result<(), BadPage> {
        let mut result = Ok(());
        for p in pfn..pfn + nr_pages {
            let r = match self.pfn_to_page(p) {
                Some(page) => self.free_pages(page, 0),
                None => Err(BadPage::new(Some(p), BadPageReason::UnknownPfn)),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Is `[start, start + nr_pages)` worth an [`PageAllocator::alloc_contig_range`]
    /// (`pfn_range_valid_contig`)? Read without locks: every pfn is RAM of `zone`, no page
    /// is reserved, unmovable or pinned, and no pageblock is isolated, HighAtomic or CMA.
    pub fn pfn_range_valid_contig(&self, zone: &Zone, start: u64, nr_pages: u64) -> bool {
        let end = start + nr_pages;
        if start < zone.zone_start_pfn() || end > zone.zone_end_pfn() {
            return false;
        }
        let mem = self.model().sparse();
        let mut pb = pageblock_start(start);
        while pb < end {
            if !matches!(
                get_pageblock_migratetype(mem, pb),
                Ok(Migratetype::Movable | Migratetype::Unmovable | Migratetype::Reclaimable)
            ) {
                return false;
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
        let mut pfn = start;
        while pfn < end {
            let Some(page) = mem.pfn_to_page(pfn) else {
                return false;
            };
            if page.nid() != zone.nid || page.zone_idx() != zone.zone_type.index() {
                return false;
            }
            match page_isolation_obstacle(pfn, page, IsolateFlags::empty()) {
                Ok(n) => pfn += n,
                Err(_) => return false,
            }
        }
        true
    }

    /// Find and allocate `nr_pages` contiguous pages on node `nid`'s zones that `gfp` allows
    /// (`alloc_contig_pages`): see the module documentation. Returns the first page; every
    /// page of the range has one reference. `None` when no candidate range could be
    /// emptied (or `nr_pages` is 0, or `gfp` is invalid).
    pub fn alloc_contig_pages(&self, nr_pages: u64, gfp: Gfp, nid: usize) -> Option<&Page> {
        if nr_pages == 0 {
            return None;
        }
        let highest = gfp_zone(gfp).ok()?;
        let align = nr_pages.checked_next_power_of_two()?;
        let quiet = gfp | Gfp::NOWARN;
        for (n, zt) in self.zonelist_order(nid) {
            if zt > highest {
                continue;
            }
            let Some(zone) = self.zone_of(n, zt) else {
                continue;
            };
            let mut pfn = zone.zone_start_pfn().next_multiple_of(align);
            while pfn + nr_pages <= zone.zone_end_pfn() {
                if self.pfn_range_valid_contig(zone, pfn, nr_pages)
                    && self
                        .alloc_contig_range(pfn, pfn + nr_pages, Migratetype::Movable, quiet)
                        .is_ok()
                {
                    return self.pfn_to_page(pfn);
                }
                pfn += align;
            }
        }
        if !gfp.contains(Gfp::NOWARN) {
            log::warn!("alloc_contig_pages: no range of {nr_pages} pages could be emptied");
        }
        None
    }
}

/// Free `[from, to)` to the buddy lists of its pageblocks' types, in the largest aligned
/// blocks that fit (the caller holds the zone lock).
pub(crate) fn free_pfn_range(
    b: &mut crate::page_alloc::buddy::Buddy<'_, '_>,
    mut from: u64,
    to: u64,
) {
    while from < to {
        let fit = 63 - (to - from).leading_zeros();
        let order = crate::model::mmzone::MAX_PAGE_ORDER
            .min(from.trailing_zeros())
            .min(fit);
        b.free_pages_range(from, order, false);
        from += 1u64 << order;
    }
}
