//! Page isolation: fencing a range of pageblocks off from every allocation path while its
//! pages are emptied (Linux: `mm/page_isolation.c`).
//!
//! # Why
//!
//! A contiguous allocation ([`crate::movement::contig`]), a CMA allocation
//! ([`crate::movement::cma`]) or a memory block going offline needs every page of a range
//! free *at the same time*. Migrating the used pages out is not enough on its own: the
//! moment a page of the range is freed, any CPU could allocate it again, and the range
//! would never be whole. So first the range's pageblocks are repainted MIGRATE_ISOLATE:
//!
//! - their free pages move to the Isolate free lists, which no allocation path reads
//!   (`__rmqueue` has no fallback to Isolate, the pcp lists have no Isolate list, the
//!   compaction free scanner skips isolated blocks, capture refuses them);
//! - a page freed inside the range later goes straight to the Isolate lists: the free
//!   path reads the pageblock type and bypasses the pcp lists for Isolate (Linux's
//!   `is_migrate_isolate` check in `free_unref_page`); the pcp lists are drained once
//!   after the repaint so no page of the range is left there;
//! - isolated pages are not counted as free (`NR_FREE_PAGES` leaves the Isolate lists
//!   out), so watermark checks do not promise memory nobody can have.
//!
//! Then the owner migrates the used pages away, checks with [`PageAllocator::test_pages_isolated`]
//! that the whole range sits free on the Isolate lists, takes it, and repaints the blocks
//! with [`PageAllocator::undo_isolate_page_range`].
//!
//! # Refusals
//!
//! Isolating a range that can never become free would only waste the migration work, so
//! each pageblock's pages inside the range are looked at first (`has_unmovable_pages`),
//! under the zone lock, in the same hold that repaints the block: a reserved page, a page
//! the kernel owns without a movable owner (slab, page table, compound, plain kernel
//! allocation), a hardware-poisoned page, or an anon page with more references than
//! mappings (pinned: someone holds its physical address) refuses the whole range with an
//! [`IsolateError`] naming the pfn and the reason, and every pageblock isolated so far is
//! given back. A pageblock that is already isolated (by a concurrent contiguous
//! allocation), a HighAtomic reserve, and a CMA pageblock asked to become anything but CMA
//! again are refused too. Pages of CMA pageblocks are not inspected: only movable
//! allocations ever land there (Linux's CMA mode).
//!
//! # Free blocks larger than a pageblock
//!
//! A free block of order 10 spans two pageblocks, and a free block's list must match the
//! type of every pageblock it covers. When only one of the two is repainted the block is
//! taken off its list first and its two halves are freed again each onto the list of its
//! own pageblock's type (Linux's `split_large_buddy`); halves of the same type merge back.
//! After each repaint the pageblock's free block is offered to its neighbour again
//! ([`Buddy::remerge_pageblock`]) so that two free buddies never stay unmerged.
//!
//! # State machine of a pageblock
//!
//! ```text
//!   Movable/Unmovable/Reclaimable/CMA ── start_isolate_page_range ──▶ Isolate
//!           ▲                                                            │
//!           └────────────── undo_isolate_page_range ◀────────────────────┘
//!              (each block repainted the type it had, free pages moved to its lists)
//! ```
//!
//! The type a block had before isolation is remembered in its pageblock bits
//! ([`crate::model::pageblock`], as Linux 6.x keeps isolation apart from the migratetype),
//! so one range may mix types: a CMA block comes back CMA, an Unmovable block Unmovable,
//! whatever the caller isolated the range for. Memory onlining is the one caller that
//! chooses the type instead (onlined memory comes back Movable, as in Linux): it records
//! it with [`crate::model::pageblock::save_pageblock_migratetype`] before the undo.

use bitflags::bitflags;
use core::fmt;

use crate::model::mmzone::{MAX_PAGE_ORDER, Migratetype, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::model::page::{PAGE_MAPPING_ANON, PAGE_MAPPING_MOVABLE, Page, PageFlags};
use crate::model::pageblock::{get_pageblock_saved_migratetype, save_pageblock_migratetype};
use crate::model::sparse::SparseMem;
use crate::model::zone::{Zone, counter_add};
use crate::page_alloc::PageAllocator;
use crate::page_alloc::buddy::Buddy;
use crate::port::platform::Platform;

bitflags! {
    /// How an isolation is done (Linux's `isolate_flags`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IsolateFlags: u32 {
        /// Log a refusal (`REPORT_FAILURE`).
        const REPORT_FAILURE = 1 << 0;
        /// The range is being taken offline (`MEMORY_OFFLINE`): hardware-poisoned and
        /// offline pages will never be used again and do not stand in the way.
        const MEMORY_OFFLINE = 1 << 1;
    }
}

/// Why a range could not be isolated, or is not (yet) wholly free and isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsolateError {
    /// `start_pfn >= end_pfn`.
    EmptyRange {
        /// First pfn asked for.
        start_pfn: u64,
        /// One past the last.
        end_pfn: u64,
    },
    /// The pfn has no `struct page` managed by this allocator (a hole, or not RAM).
    NoPage {
        /// The pfn.
        pfn: u64,
    },
    /// The range (rounded out to whole pageblocks) leaves the zone it starts in at `pfn`.
    CrossesZones {
        /// The first pfn outside the zone.
        pfn: u64,
    },
    /// A reserved page (firmware, kernel image, boot-time allocations).
    Reserved {
        /// The page.
        pfn: u64,
    },
    /// A page the kernel uses and nobody can move.
    Unmovable {
        /// The page.
        pfn: u64,
        /// What it is.
        what: &'static str,
    },
    /// An anon page with more references than mappings: its user holds its physical
    /// address, so it cannot move.
    Pinned {
        /// The page.
        pfn: u64,
        /// Its reference count.
        refcount: i32,
        /// Its mapcount.
        mapcount: i32,
    },
    /// The pageblock is already isolated (another isolation owns it).
    AlreadyIsolated {
        /// The pageblock.
        pfn: u64,
    },
    /// The pageblock is a HighAtomic reserve.
    HighAtomic {
        /// The pageblock.
        pfn: u64,
    },
    /// The pageblock belongs to a CMA area and would not be given back as CMA.
    CmaPageblock {
        /// The pageblock.
        pfn: u64,
    },
    /// Blocks cannot be isolated into, or given back as, this type.
    BadMigratetype(Migratetype),
    /// [`PageAllocator::test_pages_isolated`]: the pageblock is not isolated.
    NotIsolated {
        /// The pageblock.
        pfn: u64,
    },
    /// [`PageAllocator::test_pages_isolated`]: the page is not free on an Isolate list
    /// (still in use, or on a pcp list).
    InUse {
        /// The page.
        pfn: u64,
    },
}

impl fmt::Display for IsolateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IsolateError::EmptyRange { start_pfn, end_pfn } => {
                write!(f, "empty pfn range [{start_pfn:#x}, {end_pfn:#x})")
            }
            IsolateError::NoPage { pfn } => {
                write!(f, "pfn {pfn:#x}: no page managed by the allocator")
            }
            IsolateError::CrossesZones { pfn } => {
                write!(f, "pfn {pfn:#x}: the range crosses a zone boundary here")
            }
            IsolateError::Reserved { pfn } => write!(f, "pfn {pfn:#x}: reserved page"),
            IsolateError::Unmovable { pfn, what } => {
                write!(f, "pfn {pfn:#x}: unmovable page ({what})")
            }
            IsolateError::Pinned {
                pfn,
                refcount,
                mapcount,
            } => write!(
                f,
                "pfn {pfn:#x}: pinned page ({refcount} references for {mapcount} mappings)"
            ),
            IsolateError::AlreadyIsolated { pfn } => {
                write!(f, "pageblock {pfn:#x}: already isolated")
            }
            IsolateError::HighAtomic { pfn } => {
                write!(
                    f,
                    "pageblock {pfn:#x}: reserved for high-order atomic allocations"
                )
            }
            IsolateError::CmaPageblock { pfn } => {
                write!(
                    f,
                    "pageblock {pfn:#x}: belongs to a CMA area (use cma_alloc)"
                )
            }
            IsolateError::BadMigratetype(mt) => {
                write!(
                    f,
                    "pageblocks cannot be isolated as or returned to {}",
                    mt.name()
                )
            }
            IsolateError::NotIsolated { pfn } => write!(f, "pageblock {pfn:#x}: not isolated"),
            IsolateError::InUse { pfn } => {
                write!(f, "pfn {pfn:#x}: not free on the isolate lists (in use)")
            }
        }
    }
}

impl core::error::Error for IsolateError {}

/// First pfn of the pageblock holding `pfn`.
#[inline]
pub const fn pageblock_start(pfn: u64) -> u64 {
    pfn & !(PAGEBLOCK_NR_PAGES - 1)
}

/// `pfn` rounded up to a pageblock boundary.
#[inline]
pub const fn pageblock_align(pfn: u64) -> u64 {
    (pfn + PAGEBLOCK_NR_PAGES - 1) & !(PAGEBLOCK_NR_PAGES - 1)
}

/// True if `page` is a descriptor of `zone`.
#[inline]
fn page_in_zone(zone: &Zone, page: &Page) -> bool {
    page.nid() == zone.nid && page.zone_idx() == zone.zone_type.index()
}

/// The free block of `zone` holding `pfn`, as `(head_pfn, order)`; the caller holds the
/// zone lock.
pub(crate) fn free_block_containing(mem: &SparseMem, zone: &Zone, pfn: u64) -> Option<(u64, u32)> {
    for k in 0..=MAX_PAGE_ORDER {
        let head = pfn & !((1u64 << k) - 1);
        if let Some(h) = mem.pfn_to_page(head)
            && page_in_zone(zone, h)
            && h.is_buddy()
            && h.buddy_order() >= k
            && head + (1u64 << h.buddy_order()) > pfn
        {
            return Some((head, h.buddy_order()));
        }
    }
    None
}

/// Why an allocated page cannot be isolated, if it cannot (`has_unmovable_pages` for one
/// page). `Ok(n)`: the page (and `n - 1` after it, for a free block) is no obstacle.
pub(crate) fn page_isolation_obstacle(
    pfn: u64,
    page: &Page,
    flags: IsolateFlags,
) -> Result<u64, IsolateError> {
    if page.is_buddy() {
        let o = page.buddy_order().min(MAX_PAGE_ORDER);
        return Ok(1 << o);
    }
    let f = page.flags();
    if f.contains(PageFlags::RESERVED) {
        return Err(IsolateError::Reserved { pfn });
    }
    if f.intersects(PageFlags::HWPOISON | PageFlags::OFFLINE) {
        if flags.contains(IsolateFlags::MEMORY_OFFLINE) {
            return Ok(1);
        }
        let what = if f.contains(PageFlags::HWPOISON) {
            "hardware-poisoned"
        } else {
            "offline page"
        };
        return Err(IsolateError::Unmovable { pfn, what });
    }
    // No reference: on a pcp list, or a tail of a free or non-compound block.
    if page.refcount() <= 0 {
        return Ok(1);
    }
    // Being migrated already (compaction holds it): it is on its way out.
    if f.contains(PageFlags::ISOLATED) {
        return Ok(1);
    }
    let what = if f.intersects(PageFlags::HEAD | PageFlags::TAIL) {
        "compound page"
    } else if f.contains(PageFlags::SLAB) {
        "slab page"
    } else if f.contains(PageFlags::PGTABLE) {
        "page table"
    } else {
        match page.mapping_flags() {
            PAGE_MAPPING_ANON => {
                let (refcount, mapcount) = (page.refcount(), page.mapcount());
                if mapcount >= 1 && refcount <= mapcount {
                    return Ok(1);
                }
                return Err(IsolateError::Pinned {
                    pfn,
                    refcount,
                    mapcount,
                });
            }
            PAGE_MAPPING_MOVABLE => return Ok(1),
            _ => "kernel allocation without a movable owner",
        }
    };
    Err(IsolateError::Unmovable { pfn, what })
}

impl<P: Platform> PageAllocator<P> {
    /// The zone holding `[start_pfn, end_pfn)` rounded out to whole pageblocks, or why
    /// there is none.
    pub(crate) fn isolation_zone(
        &self,
        start_pfn: u64,
        end_pfn: u64,
    ) -> Result<&Zone, IsolateError> {
        if start_pfn >= end_pfn {
            return Err(IsolateError::EmptyRange { start_pfn, end_pfn });
        }
        let page = self
            .pfn_to_page(start_pfn)
            .ok_or(IsolateError::NoPage { pfn: start_pfn })?;
        let zone = self
            .zone_of(
                page.nid(),
                page.zone_type()
                    .ok_or(IsolateError::NoPage { pfn: start_pfn })?,
            )
            .filter(|z| z.managed_zone())
            .ok_or(IsolateError::NoPage { pfn: start_pfn })?;
        let (iso_start, iso_end) = (pageblock_start(start_pfn), pageblock_align(end_pfn));
        if iso_start < zone.zone_start_pfn() {
            return Err(IsolateError::CrossesZones { pfn: iso_start });
        }
        if iso_end > zone.zone_end_pfn() {
            return Err(IsolateError::CrossesZones {
                pfn: zone.zone_end_pfn(),
            });
        }
        Ok(zone)
    }

    /// Isolate the pageblocks covering `[start_pfn, end_pfn)` (`start_isolate_page_range`):
    /// see the module documentation. Pages of the range itself are checked for obstacles
    /// (the rest of the first and last pageblock is isolated but not inspected: it is not
    /// asked for). `migratetype` is what the caller isolates for (Movable, Unmovable,
    /// Reclaimable, or CMA: only a CMA caller may isolate CMA pageblocks). On error nothing
    /// stays isolated: the pageblocks isolated by this call get their own types back. On
    /// success the pcp lists have been drained, so no page of the range is left on one.
    pub fn start_isolate_page_range(
        &self,
        start_pfn: u64,
        end_pfn: u64,
        migratetype: Migratetype,
        flags: IsolateFlags,
    ) -> Result<(), IsolateError> {
        if !(migratetype.is_pcptype() || migratetype == Migratetype::Cma) {
            return Err(IsolateError::BadMigratetype(migratetype));
        }
        let zone = self.isolation_zone(start_pfn, end_pfn)?;
        let (iso_start, iso_end) = (pageblock_start(start_pfn), pageblock_align(end_pfn));
        let mut pb = iso_start;
        while pb < iso_end {
            let check = (start_pfn.max(pb), end_pfn.min(pb + PAGEBLOCK_NR_PAGES));
            if let Err(e) = self.set_migratetype_isolate(zone, pb, check, migratetype, flags) {
                self.undo_isolate_page_range(iso_start, pb);
                if flags.contains(IsolateFlags::REPORT_FAILURE) {
                    log::warn!("isolation of pfn range [{start_pfn:#x}, {end_pfn:#x}) failed: {e}");
                }
                return Err(e);
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
        // Pages of the range freed before the repaint may sit on pcp lists, where any CPU
        // could hand them out again.
        self.drain_all_pages();
        Ok(())
    }

    /// Give each isolated pageblock covering `[start_pfn, end_pfn)` back the type it had
    /// before its isolation (`undo_isolate_page_range`), moving its free pages to that
    /// type's lists. Blocks that are not isolated are left alone.
    pub fn undo_isolate_page_range(&self, start_pfn: u64, end_pfn: u64) {
        if start_pfn >= end_pfn {
            return;
        }
        let mut pb = pageblock_start(start_pfn);
        while pb < end_pfn {
            if let Some(page) = self.pfn_to_page(pb)
                && let Some(zt) = page.zone_type()
                && let Some(zone) = self.zone_of(page.nid(), zt)
            {
                self.unset_migratetype_isolate(zone, pb);
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
    }

    /// Check that every page of `[start_pfn, end_pfn)` is free on an Isolate list
    /// (`test_pages_isolated`); with [`IsolateFlags::MEMORY_OFFLINE`], hardware-poisoned
    /// and offline pages pass too. The first pageblock that is not isolated or the first
    /// page that is not free is named in the error.
    pub fn test_pages_isolated(
        &self,
        start_pfn: u64,
        end_pfn: u64,
        flags: IsolateFlags,
    ) -> Result<(), IsolateError> {
        let zone = self.isolation_zone(start_pfn, end_pfn)?;
        let mem = self.model().sparse();
        let mut pb = pageblock_start(start_pfn);
        while pb < end_pfn {
            if crate::model::pageblock::get_pageblock_migratetype(mem, pb)
                != Ok(Migratetype::Isolate)
            {
                return Err(IsolateError::NotIsolated { pfn: pb });
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
        let _g = zone.lock.lock_irqsave(self.platform());
        let mut pfn = start_pfn;
        while pfn < end_pfn {
            let Some(page) = mem.pfn_to_page(pfn) else {
                return Err(IsolateError::NoPage { pfn });
            };
            if let Some((head, order)) = free_block_containing(mem, zone, pfn) {
                let head_page = mem.pfn_to_page(head).unwrap_or(page);
                if head_page.buddy_list_mt() != Migratetype::Isolate as u8 {
                    return Err(IsolateError::NotIsolated { pfn: head });
                }
                pfn = head + (1u64 << order);
                continue;
            }
            if flags.contains(IsolateFlags::MEMORY_OFFLINE)
                && page
                    .flags()
                    .intersects(PageFlags::HWPOISON | PageFlags::OFFLINE)
            {
                pfn += 1;
                continue;
            }
            return Err(IsolateError::InUse { pfn });
        }
        Ok(())
    }

    /// Isolated pageblocks of every zone.
    pub fn nr_isolate_pageblock(&self) -> u64 {
        self.model()
            .nodes()
            .flat_map(|n| n.node_zones.iter())
            .map(|z| z.nr_isolate_pageblock())
            .sum()
    }

    /// Isolate one pageblock (`set_migratetype_isolate`) after checking the pages of
    /// `check` (a part of it) for obstacles, all in one zone-lock hold.
    fn set_migratetype_isolate(
        &self,
        zone: &Zone,
        pb: u64,
        check: (u64, u64),
        migratetype: Migratetype,
        flags: IsolateFlags,
    ) -> Result<(), IsolateError> {
        let mem = self.model().sparse();
        let mut g = zone.lock.lock_irqsave(self.platform());
        let mut b = self.buddy(zone, &mut g);
        let old = b.pageblock_mt(pb);
        match old {
            Migratetype::Isolate => return Err(IsolateError::AlreadyIsolated { pfn: pb }),
            Migratetype::HighAtomic => return Err(IsolateError::HighAtomic { pfn: pb }),
            Migratetype::Cma if migratetype != Migratetype::Cma => {
                return Err(IsolateError::CmaPageblock { pfn: pb });
            }
            _ => {}
        }
        if old != Migratetype::Cma {
            let mut pfn = check.0;
            while pfn < check.1 {
                let Some(page) = mem.pfn_to_page(pfn) else {
                    pfn += 1;
                    continue;
                };
                if !page_in_zone(zone, page) {
                    return Err(IsolateError::CrossesZones { pfn });
                }
                pfn += page_isolation_obstacle(pfn, page, flags)?;
            }
        }
        // Remembered for the undo (under the zone lock, before the type bits say Isolate).
        let _ = save_pageblock_migratetype(mem, pb, old);
        let large = take_large_block_over(&mut b, mem, zone, pb);
        if b.move_freepages_block(pb, old, Migratetype::Isolate)
            .is_none()
        {
            refree_large_block(&mut b, large);
            return Err(IsolateError::CrossesZones { pfn: pb });
        }
        refree_large_block(&mut b, large);
        b.remerge_pageblock(pb);
        counter_add(&zone.counters.nr_isolate_pageblock, 1);
        Ok(())
    }

    /// Give one isolated pageblock back its remembered type (`unset_migratetype_isolate`).
    fn unset_migratetype_isolate(&self, zone: &Zone, pb: u64) {
        let mem = self.model().sparse();
        let mut g = zone.lock.lock_irqsave(self.platform());
        let mut b = self.buddy(zone, &mut g);
        if b.pageblock_mt(pb) != Migratetype::Isolate {
            return;
        }
        let mt = get_pageblock_saved_migratetype(mem, pb).unwrap_or(Migratetype::Movable);
        let large = take_large_block_over(&mut b, mem, zone, pb);
        let moved = b.move_freepages_block(pb, Migratetype::Isolate, mt);
        refree_large_block(&mut b, large);
        if moved.is_some() {
            b.remerge_pageblock(pb);
            counter_add(&zone.counters.nr_isolate_pageblock, -1);
        }
    }
}

/// If a free block larger than a pageblock covers the pageblock at `pb`, take it off its
/// list (its counters with it) and return `(head, order)`, so the pageblock can be
/// repainted alone; [`refree_large_block`] frees it again pageblock by pageblock.
fn take_large_block_over(
    b: &mut Buddy<'_, '_>,
    mem: &SparseMem,
    zone: &Zone,
    pb: u64,
) -> Option<(u64, u32)> {
    for order in PAGEBLOCK_ORDER + 1..=MAX_PAGE_ORDER {
        let head = pb & !((1u64 << order) - 1);
        let Some(page) = mem.pfn_to_page(head) else {
            continue;
        };
        if page_in_zone(zone, page) && page.is_buddy() && page.buddy_order() == order {
            let on = Migratetype::from_bits(page.buddy_list_mt())
                .unwrap_or_else(|| b.pageblock_mt(head));
            b.del_page_from_free_list(page, order, on);
            return Some((head, order));
        }
    }
    None
}

/// Free a block taken by [`take_large_block_over`] again, each pageblock onto the lists of
/// its own (possibly new) type; pageblocks of the same type merge back.
fn refree_large_block(b: &mut Buddy<'_, '_>, large: Option<(u64, u32)>) {
    let Some((head, order)) = large else {
        return;
    };
    let mut p = head;
    while p < head + (1u64 << order) {
        let mt = b.pageblock_mt(p);
        b.free_one_page(p, PAGEBLOCK_ORDER, mt, false);
        p += PAGEBLOCK_NR_PAGES;
    }
}
