//! The buddy free areas of a zone: splitting, merging, and the migratetype fallback rules
//! (Linux: `free_area`, `expand`, `__free_one_page`, `__rmqueue*`, `move_freepages_block`
//! in `mm/page_alloc.c`).
//!
//! # Why buddies
//!
//! Free memory is kept as naturally aligned blocks of `2^order` pages, one free list per
//! order. A block of order `o` at pfn `p` has exactly one *buddy*, the block at
//! `p ^ (1 << o)`; when both are free they are merged into one block of order `o + 1`. That
//! makes freeing O(`MAX_PAGE_ORDER`) with no search: whether the buddy is free is written in
//! the buddy's own `struct Page` (`PG_buddy` and its order in `private`), and unlinking it
//! from its list is O(1) because the list links live in the page too. Splitting a large
//! block for a small request ([`Buddy::expand`]) puts the unused halves back one per order.
//!
//! # Why one list per migratetype
//!
//! Each order has a free list per migratetype, and a free block sits on the list of its
//! *pageblock's* type (2 MiB granules whose type lives in the pageblock bitmap). Unmovable
//! and reclaimable allocations are thus packed into their own pageblocks, and the movable
//! pageblocks stay movable as a whole, which is what lets compaction assemble huge pages
//! later. The type of a free block's list always equals the type of every pageblock it
//! covers: whoever repaints a pageblock moves its free pages in the same zone-lock hold
//! ([`Buddy::move_freepages_block`], [`Buddy::change_pageblock_range`]); `zonebuddy::debug` checks
//! it.
//!
//! # Falling back
//!
//! When the requested type has nothing free, [`Buddy::rmqueue`] (`__rmqueue`) borrows from the other
//! types, in Linux's order:
//!
//! 1. CMA pageblocks, for movable requests (CMA only needs its pages to be movable);
//! 2. *claim* ([`Buddy::rmqueue_claim`] (`__rmqueue_claim`)): take the largest free block of a fallback type,
//!    scanning orders from the top, and convert its whole pageblock to the requested type
//!    when that is cheap to justify: the block spans whole pageblocks, or at least half of
//!    the pageblock (256 pages) is free or already holds pages of a compatible kind. The
//!    threshold is half because repainting a block that is mostly foreign would only
//!    misfile the pages already allocated there, while leaving a mostly-free block foreign
//!    would make every later request of this type steal again, spreading its pages over
//!    many blocks. Small movable requests do not claim at all (they are cheap to move out
//!    later); unmovable and reclaimable ones always try, since they pollute a block for
//!    good;
//! 3. *steal* ([`Buddy::rmqueue_steal`] (`__rmqueue_steal`)): take the smallest fitting block of a fallback
//!    type without repainting anything (not under `ALLOC_NOFRAGMENT`).
//!
//! A fragmenting fallback also boosts the zone's watermarks ([`crate::page_alloc::watermark`]) so that
//! reclaim and compaction start before the damage spreads.
//!
//! # Merging across pageblock types
//!
//! Merging at orders below a pageblock never crosses a pageblock boundary. At pageblock
//! order and above it does, and Linux's rule applies: two blocks whose pageblocks have
//! different types merge only if both types are "mergeable" (the three pcp types); the
//! merged block takes the freed block's type and the buddy's pageblock is repainted.
//! HighAtomic, CMA and Isolate pageblocks never merge with a block of another type, so
//! their accounting stays exact and an isolated range stays isolated.
//!
//! Everything here runs under the zone lock: a [`Buddy`] can only be built from the
//! `&mut FreeAreas` the zone lock guards.

use core::sync::atomic::{AtomicU64, Ordering};

use core::ptr::NonNull;

use crate::model::free_area::FreeAreas;
use crate::model::mmzone::{
    MAX_PAGE_ORDER, Migratetype, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
};
use crate::model::page::Page;
use crate::model::pageblock::{
    MIGRATETYPE_MASK, get_pageblock_migratetype, set_pageblock_migratetype, usemap_get,
};
use crate::model::sparse::SparseMem;
use crate::model::zone::{ZONE_BOOSTED_WATERMARK, Zone, counter_add};
use crate::page_alloc::capture::CaptureControl;
use crate::page_alloc::gfp::AllocFlags;
use crate::page_alloc::watermark::{boost_watermark, zone_watermark_ok};
use crate::report::vmstat::ZoneStatItem;

/// Where [`Buddy::rmqueue`] (`__rmqueue`) found pages last time, so a batch refill does not rescan
/// empty levels (`enum rmqueue_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RmqueueMode {
    /// The requested type's own lists.
    Normal,
    /// CMA pageblocks.
    Cma,
    /// Claiming a foreign pageblock.
    Claim,
    /// Stealing single blocks.
    Steal,
}

/// Result of [`Buddy::find_suitable_fallback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// A fallback type has a free block of this order.
    Found(Migratetype),
    /// No fallback type has a free block of this order.
    Empty,
    /// Claiming is not worth it at this order (and any lower one).
    NoClaim,
}

/// Fallback events seen during one zone-lock hold, folded into the per-CPU counters by the
/// caller after the lock is dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuddyEvents {
    /// Allocations served from a foreign pageblock (claims and steals).
    pub fallback: u64,
    /// Pageblocks repainted by a claim.
    pub claim: u64,
    /// Watermark boosts.
    pub boost: u64,
}

/// True for the types whose blocks may merge with blocks of another type (`
/// migratetype_is_mergeable`): the pcp types.
#[inline]
pub const fn migratetype_is_mergeable(mt: Migratetype) -> bool {
    mt.is_pcptype()
}

/// Should a fallback at `order` try to claim the whole pageblock for `start_mt`
/// (`should_try_claim_block`)? Always for pageblock-sized blocks and for blocks of at least
/// half a pageblock's order (the rest of the block is then likely free too), and always for
/// unmovable and reclaimable requests, which pollute a movable block for good. Small
/// movable requests only steal: they can be moved out again.
pub const fn should_try_claim_block(order: u32, start_mt: Migratetype) -> bool {
    if order >= PAGEBLOCK_ORDER {
        return true;
    }
    if order >= PAGEBLOCK_ORDER / 2 {
        return true;
    }
    matches!(start_mt, Migratetype::Reclaimable | Migratetype::Unmovable)
}

/// The index of `pfn` in `map`, the memmap of its section (whose length, the pages per
/// section, is a power of two and whose first entry is the section's first pfn).
#[inline(always)]
fn section_index(map: &[Page], pfn: u64) -> usize {
    (pfn & (map.len() as u64).wrapping_sub(1)) as usize
}

/// One section's memmap and pageblock bits, looked up once for a run of frees
/// ([`Buddy::free_pcp_block`]).
#[derive(Clone, Copy)]
pub struct SectionCursor<'m> {
    nr: u64,
    start_pfn: u64,
    usemap: Option<&'m [AtomicU64]>,
    map: &'m [Page],
}

impl<'m> SectionCursor<'m> {
    /// The pfn of `page` if it is a descriptor of this section's memmap.
    #[inline(always)]
    fn pfn_of(&self, page: &Page) -> Option<u64> {
        let off = (page as *const Page as usize).wrapping_sub(self.map.as_ptr() as usize)
            / core::mem::size_of::<Page>();
        (off < self.map.len()).then_some(self.start_pfn + off as u64)
    }

    /// Section `nr` of `mem`, if it has a memmap.
    fn new(mem: &'m SparseMem, nr: u64) -> Option<SectionCursor<'m>> {
        let ms = mem.nr_to_section(nr).filter(|ms| ms.has_mem_map())?;
        let start_pfn = mem.section_nr_to_pfn(nr);
        let map = mem.section_memmap(start_pfn)?;
        Some(SectionCursor {
            nr,
            start_pfn,
            usemap: mem.section_usemap(ms),
            map,
        })
    }
}

/// The buddy operations of one zone, valid while its lock is held.
pub struct Buddy<'m, 'g> {
    zone: &'g Zone,
    mem: &'m SparseMem,
    fa: &'g mut FreeAreas,
    boost_factor: u64,
    /// The calling CPU's armed compaction capture for this zone, if any: a block of the
    /// wanted order freed through [`Buddy::__free_one_page`] goes there instead of onto a
    /// free list ([`crate::movement::compaction`]).
    capture: Option<&'m CaptureControl>,
    /// Fallback events since this `Buddy` was made.
    pub events: BuddyEvents,
}

impl<'m, 'g> Buddy<'m, 'g> {
    /// The buddy operations of `zone`, whose lock the caller holds (`fa` is the guarded
    /// data). `boost_factor` is `vm.watermark_boost_factor`.
    pub fn new(
        zone: &'g Zone,
        mem: &'m SparseMem,
        fa: &'g mut FreeAreas,
        boost_factor: u64,
    ) -> Buddy<'m, 'g> {
        Buddy {
            zone,
            mem,
            fa,
            boost_factor,
            capture: None,
            events: BuddyEvents::default(),
        }
    }

    /// The same, with the calling CPU's armed compaction capture for this zone (see
    /// [`crate::movement::compaction`]); the caller has interrupts disabled, so the CPU cannot
    /// change while the `Buddy` lives.
    pub(crate) fn with_capture(mut self, capture: Option<&'m CaptureControl>) -> Buddy<'m, 'g> {
        self.capture = capture;
        self
    }

    /// The zone.
    pub fn zone(&self) -> &'g Zone {
        self.zone
    }

    /// The free areas.
    pub fn free_areas(&self) -> &FreeAreas {
        self.fa
    }

    #[inline]
    fn page(&self, pfn: u64) -> Option<&'m Page> {
        self.mem.pfn_to_page(pfn)
    }

    #[inline]
    fn pfn_of(&self, page: &Page) -> u64 {
        self.mem.page_to_pfn(page)
    }

    /// The migratetype of `pfn`'s pageblock.
    #[inline]
    pub fn pageblock_mt(&self, pfn: u64) -> Migratetype {
        get_pageblock_migratetype(self.mem, pfn).unwrap_or(Migratetype::Unmovable)
    }

    #[inline]
    fn set_pageblock_mt(&self, pfn: u64, mt: Migratetype) {
        // Every pfn handled here has a memmap, hence a usemap.
        let _ = set_pageblock_migratetype(self.mem, pfn, mt);
    }

    /// True if `page` and `other` are in the same zone of the same node (`page_zone_id`).
    #[inline]
    fn same_zone(page: &Page, other: &Page) -> bool {
        page.zone_idx() == other.zone_idx() && page.nid() == other.nid()
    }

    /// True if `page` belongs to this zone.
    #[inline]
    fn in_zone(&self, page: &Page) -> bool {
        page.zone_idx() == self.zone.zone_type.index() && page.nid() == self.zone.nid
    }

    /// Adjust the free counters for `nr` pages (possibly negative) entering or leaving free
    /// lists of type `mt` (`account_freepages`). Isolated pages are not free: nobody may
    /// allocate them.
    #[inline]
    pub fn account_freepages(&self, nr: i64, mt: Migratetype) {
        let c = &self.zone.counters;
        match mt {
            Migratetype::Isolate => return,
            Migratetype::Cma => counter_add(&c.vm_stat[ZoneStatItem::NrFreeCmaPages.index()], nr),
            Migratetype::HighAtomic => counter_add(&c.nr_free_highatomic, nr),
            _ => {}
        }
        counter_add(&c.vm_stat[ZoneStatItem::NrFreePages.index()], nr);
    }

    #[inline]
    fn set_nonempty(&self, order: u32, mt: Migratetype, nonempty: bool) {
        let bits = &self.zone.counters.free_nonempty[order as usize];
        let old = bits.load(Ordering::Relaxed);
        let new = if nonempty {
            old | (1 << mt as u8)
        } else {
            old & !(1 << mt as u8)
        };
        bits.store(new, Ordering::Relaxed);
    }

    /// Link a free block head of `order` on the `mt` list (`__add_to_free_list` with
    /// `set_buddy_order`), at the tail if `tail`. Counters are the caller's business.
    fn add_to_free_list(&mut self, page: &'m Page, order: u32, mt: Migratetype, tail: bool) {
        debug_assert!(!page.is_buddy(), "page already on a free list");
        page.set_buddy_exclusive(order, mt as u8);
        let area = &mut self.fa.area[order as usize];
        let list = &mut area.free_list[mt.index()];
        let was_empty = list.is_empty();
        // SAFETY: the page is a descriptor of this zone's memmap, which lives as long as
        // the model; it was on no list (it was allocated, or just unlinked by the caller:
        // PG_buddy was clear); the caller holds the zone lock (it has `&mut FreeAreas`).
        unsafe {
            if tail {
                list.push_back(page);
            } else {
                list.push_front(page);
            }
        }
        area.nr_free += 1;
        if was_empty {
            self.set_nonempty(order, mt, true);
        }
    }

    /// Unlink a free block head (`__del_page_from_free_list`, counters untouched) and
    /// clear its buddy marks. Returns the type of the list it was on.
    fn unlink(&mut self, page: &Page, order: u32, mt: Migratetype) -> Migratetype {
        // The list the page is on is the one recorded when it was linked. It normally is
        // `mt` (the pageblock's type); if a pageblock was repainted behind the allocator's
        // back the recorded type still names the right list, so the unlink stays sound,
        // and `zonebuddy::debug::check` reports the type mismatch.
        let on = Migratetype::from_bits(page.buddy_list_mt()).unwrap_or(mt);
        debug_assert!(page.is_buddy() && page.buddy_order() == order);
        let area = &mut self.fa.area[order as usize];
        let list = &mut area.free_list[on.index()];
        // SAFETY: PG_buddy with order `order` and recorded type `on` means the page is
        // linked on exactly `free_area[order].free_list[on]` of this zone, whose lock the
        // caller holds.
        unsafe { list.remove(page) };
        let now_empty = list.is_empty();
        area.nr_free -= 1;
        page.clear_buddy_exclusive();
        if now_empty {
            self.set_nonempty(order, on, false);
        }
        on
    }

    /// Unlink a free block and take it out of the free counters
    /// (`del_page_from_free_list`).
    pub fn del_page_from_free_list(&mut self, page: &Page, order: u32, mt: Migratetype) {
        let on = self.unlink(page, order, mt);
        self.account_freepages(-(1i64 << order), on);
    }

    /// Move a free block to the `new` list of its order (`move_to_free_list`), at the
    /// tail, fixing the counters.
    pub fn move_to_free_list(
        &mut self,
        page: &'m Page,
        order: u32,
        old: Migratetype,
        new: Migratetype,
    ) {
        let on = self.unlink(page, order, old);
        self.add_to_free_list(page, order, new, true);
        self.account_freepages(-(1i64 << order), on);
        self.account_freepages(1i64 << order, new);
    }

    /// The first block on `free_area[order].free_list[mt]` (`get_page_from_free_area`).
    pub fn get_page_from_free_area(&self, order: u32, mt: Migratetype) -> Option<&'m Page> {
        let p = self.fa.area.get(order as usize)?.free_list[mt.index()].first()?;
        // SAFETY: pages on this zone's free lists are descriptors of the memmap, which
        // lives as long as `'m` (the model).
        Some(unsafe { &*p.as_ptr() })
    }

    /// Split a free block of order `high` at `pfn` (already unlinked) down to order `low`,
    /// putting the upper halves on the `mt` lists (`expand`). Returns the pages put back.
    pub fn expand(&mut self, pfn: u64, low: u32, high: u32, mt: Migratetype) -> u64 {
        let mut added = 0;
        let mut order = high;
        while order > low {
            order -= 1;
            let size = 1u64 << order;
            if let Some(half) = self.page(pfn + size) {
                self.add_to_free_list(half, order, mt, false);
                added += size;
            }
        }
        added
    }

    /// Unlink a block of order `high`, keep `1 << low` pages of it, free the rest
    /// (`page_del_and_expand`).
    pub fn page_del_and_expand(
        &mut self,
        page: &Page,
        pfn: u64,
        low: u32,
        high: u32,
        mt: Migratetype,
    ) {
        let on = self.unlink(page, high, mt);
        let added = self.expand(pfn, low, high, on);
        self.account_freepages(-((1i64 << high) - added as i64), on);
    }

    /// Would the block of order `order` at `pfn` (whose buddy at that order is `buddy_pfn`)
    /// probably merge further soon (`buddy_merge_likely`)? True when the buddy of the
    /// next-higher block is free: then this block goes to the tail of its list, so it is
    /// handed out last and has time to merge. `map` is the memmap of `pfn`'s section.
    #[inline]
    fn buddy_merge_likely(map: &[Page], pfn: u64, buddy_pfn: u64, order: u32) -> bool {
        if order >= MAX_PAGE_ORDER - 1 {
            return false;
        }
        let higher = pfn & buddy_pfn;
        let higher_buddy = higher ^ (1 << (order + 1));
        match (
            map.get(section_index(map, higher)),
            map.get(section_index(map, higher_buddy)),
        ) {
            (Some(h), Some(b)) => {
                b.is_buddy() && b.buddy_order() == order + 1 && Self::same_zone(h, b)
            }
            _ => false,
        }
    }

    /// Free a block of `order` at `pfn` onto the `mt` lists, merging with free buddies
    /// (`__free_one_page`). `to_tail` is `FPI_TO_TAIL` (boot hand-off).
    #[doc(alias = "__free_one_page")]
    pub fn free_one_page(&mut self, pfn: u64, order: u32, mt: Migratetype, to_tail: bool) {
        // A block and all its buddies up to MAX_PAGE_ORDER lie in one section (sections
        // are aligned and larger): look the section up once, then index its memmap.
        let Some(map) = self.mem.section_memmap(pfn) else {
            return;
        };
        self.free_one_page_in(map, pfn, order, mt, to_tail);
    }

    /// [`Buddy::free_one_page`] with the memmap of `pfn`'s section already looked up.
    #[inline]
    fn free_one_page_in(
        &mut self,
        map: &'m [Page],
        pfn: u64,
        order: u32,
        mt: Migratetype,
        to_tail: bool,
    ) {
        let Some(mut page) = map.get(section_index(map, pfn)) else {
            return;
        };
        let mut pfn = pfn;
        let mut order = order;
        self.account_freepages(1i64 << order, mt);
        // Read once: nothing below arms a capture, and a capture ends the free.
        let capture = self.capture;
        while order < MAX_PAGE_ORDER {
            // A direct compaction on this CPU waits for exactly this: hand the block over
            // before it merges any further (`compaction_capture`). It leaves the free
            // counters as it would by being allocated.
            if let Some(capc) = capture
                && capc.try_capture(pfn, order, mt)
            {
                self.capture = None;
                self.account_freepages(-(1i64 << order), mt);
                return;
            }
            let buddy_pfn = pfn ^ (1 << order);
            let Some(buddy) = map.get(section_index(map, buddy_pfn)) else {
                break;
            };
            if !(buddy.is_buddy() && buddy.buddy_order() == order && Self::same_zone(page, buddy)) {
                break;
            }
            let mut buddy_mt = mt;
            if order >= PAGEBLOCK_ORDER {
                // The buddy lies in another pageblock: only blocks of mergeable types may
                // merge across types, so that HighAtomic, CMA and Isolate counts stay exact.
                buddy_mt = Migratetype::from_bits(buddy.buddy_list_mt()).unwrap_or(mt);
                if buddy_mt != mt
                    && (!migratetype_is_mergeable(mt) || !migratetype_is_mergeable(buddy_mt))
                {
                    break;
                }
            }
            self.unlink(buddy, order, buddy_mt);
            if buddy_mt != mt {
                // Both types are accounted alike (plain free pages); only the buddy's
                // pageblocks must match the merged block's list from now on.
                self.change_pageblock_range(buddy_pfn, order, mt);
            }
            pfn &= buddy_pfn;
            order += 1;
            page = match map.get(section_index(map, pfn)) {
                Some(p) => p,
                None => return,
            };
        }
        let to_tail = to_tail || Self::buddy_merge_likely(map, pfn, pfn ^ (1 << order), order);
        self.add_to_free_list(page, order, mt, to_tail);
    }

    /// Free a block of order `order` whose head descriptor is `page`, onto the lists of its
    /// pageblock's type (the pcp drain's step). `cursor` remembers the last section seen,
    /// so a run of frees from one section (the common case: a pcp list holds pages freed
    /// together) finds the pfn, the pageblock type and the buddies without a section
    /// lookup.
    #[inline]
    pub fn free_pcp_block(
        &mut self,
        page: &Page,
        order: u32,
        cursor: &mut Option<SectionCursor<'m>>,
    ) {
        let Some(c) = self.section_at(page.section_nr(), cursor) else {
            return;
        };
        // `None`: not a descriptor of the section its flags name, nothing a pcp list holds.
        if let Some(pfn) = c.pfn_of(page) {
            self.free_in_section(c, pfn, order);
        }
    }

    /// Section `nr` through `cursor`: the remembered one if it is `nr`, else looked up and
    /// remembered.
    #[inline(always)]
    fn section_at(
        &self,
        nr: u64,
        cursor: &mut Option<SectionCursor<'m>>,
    ) -> Option<SectionCursor<'m>> {
        match *cursor {
            Some(c) if c.nr == nr => Some(c),
            _ => {
                let c = SectionCursor::new(self.mem, nr)?;
                *cursor = Some(c);
                Some(c)
            }
        }
    }

    /// The pfn of `page`, a block taken off a pcp list, through `cursor` (see
    /// [`Buddy::free_pcp_block`]); `None` for a descriptor outside its section's memmap.
    #[inline]
    pub fn pcp_page_pfn(&self, page: &Page, cursor: &mut Option<SectionCursor<'m>>) -> Option<u64> {
        self.section_at(page.section_nr(), cursor)?.pfn_of(page)
    }

    /// True when a compaction capture is armed for this zone on this CPU: then every
    /// order a freed block passes through must be offered to it, and frees go page by
    /// page.
    #[inline]
    pub fn capture_armed(&self) -> bool {
        self.capture.is_some()
    }

    /// Free `len` order-0 pages at `pfn..pfn + len`, taken off a pcp list one after the
    /// other (a run the drain found in the list's order, rising or falling): as the
    /// largest aligned blocks the run holds, which then merge with their free buddies as
    /// any freed block does. The result is the one page-by-page frees reach (every pair of
    /// free buddies merged) at a fraction of the work: a run of 32 pages is one block put
    /// on a list, not 32 pages each merged level by level. Not with a capture armed (it
    /// must see every order a block passes through): see [`Buddy::capture_armed`]. A run
    /// that crosses a zone boundary (consecutive pfns, two zones) is freed page by page.
    pub fn free_pcp_run(&mut self, pfn: u64, len: u64, cursor: &mut Option<SectionCursor<'m>>) {
        let Some(c) = self.section_at(self.mem.pfn_to_section_nr(pfn), cursor) else {
            return;
        };
        let last = pfn + len - 1;
        let one_zone = match (
            c.map.get(section_index(c.map, pfn)),
            c.map.get(section_index(c.map, last)),
        ) {
            (Some(a), Some(b)) => Self::same_zone(a, b),
            _ => false,
        };
        let (mut pfn, mut left) = (pfn, len);
        while left > 0 {
            // The largest block that starts at `pfn` (aligned) and fits in the run, never
            // more than a pageblock (one pageblock type, one section).
            let order = if one_zone {
                pfn.trailing_zeros()
                    .min(63 - left.leading_zeros())
                    .min(PAGEBLOCK_ORDER)
            } else {
                0
            };
            self.free_in_section(c, pfn, order);
            pfn += 1 << order;
            left -= 1 << order;
        }
    }

    /// Free the block of `order` at `pfn` in section `c` (within one pageblock) onto the
    /// lists of its pageblock's type, merging it with its free buddies.
    #[inline(always)]
    fn free_in_section(&mut self, c: SectionCursor<'m>, pfn: u64, order: u32) {
        let mt = c
            .usemap
            .and_then(|u| Migratetype::from_bits(usemap_get(u, pfn, MIGRATETYPE_MASK) as u8))
            .unwrap_or(Migratetype::Unmovable);
        self.free_one_page_in(c.map, pfn, order, mt, false);
    }

    /// Free a block of any order (`split_large_buddy` + `__free_one_page`): blocks larger
    /// than a pageblock are freed pageblock by pageblock, each onto the lists of its own
    /// pageblock's type, and merge again where the types allow.
    pub fn free_pages_range(&mut self, pfn: u64, order: u32, to_tail: bool) {
        if order <= PAGEBLOCK_ORDER {
            let mt = self.pageblock_mt(pfn);
            self.free_one_page(pfn, order, mt, to_tail);
            return;
        }
        let end = pfn + (1u64 << order);
        let mut p = pfn;
        while p < end {
            let mt = self.pageblock_mt(p);
            self.free_one_page(p, PAGEBLOCK_ORDER, mt, to_tail);
            p += PAGEBLOCK_NR_PAGES;
        }
    }

    /// After a pageblock changed type, merge its free block with the neighbouring
    /// pageblock's if the two may now merge (`pfn` is any pfn of the block). Only a
    /// pageblock that is entirely free is concerned: its free pages then form one block of
    /// pageblock order or more, whose buddy lies in the neighbouring pageblock and may have
    /// been kept apart by the old type. (Linux leaves such a pair unmerged until one of
    /// them is allocated; merging at once keeps "no two free buddies unmerged" an invariant
    /// everywhere the merge rule allows.)
    pub fn remerge_pageblock(&mut self, pfn: u64) {
        let start = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        for head in [start, start & !((1u64 << MAX_PAGE_ORDER) - 1)] {
            let Some(page) = self.page(head) else {
                continue;
            };
            if !page.is_buddy() || !self.in_zone(page) {
                continue;
            }
            let order = page.buddy_order();
            if !(PAGEBLOCK_ORDER..MAX_PAGE_ORDER).contains(&order) || head + (1 << order) <= start {
                continue;
            }
            let mt = Migratetype::from_bits(page.buddy_list_mt()).unwrap_or(Migratetype::Movable);
            let on = self.unlink(page, order, mt);
            self.account_freepages(-(1i64 << order), on);
            self.free_one_page(head, order, on, false);
            return;
        }
    }

    /// Take a free block off its list for compaction's free scanner (`__isolate_free_page`):
    /// the block stops being free (counters adjusted) and becomes the caller's, with
    /// `PG_buddy` cleared. As if it were allocated, the zone must stay above its min
    /// watermark plus the block (blocks in isolated pageblocks, which are not counted as
    /// free, are exempt). Taking half a pageblock or more repaints its pageblocks movable,
    /// so the rest of their free pages are not handed to an unmovable request and the
    /// migrated pages land in a movable block. Returns the pages taken, 0 if refused.
    pub fn isolate_free_page(&mut self, page: &'m Page, order: u32) -> u64 {
        debug_assert!(page.is_buddy() && page.buddy_order() == order);
        let pfn = self.pfn_of(page);
        let mt = self.pageblock_mt(pfn);
        if mt != Migratetype::Isolate {
            let zone = self.zone;
            let mark = zone.watermarks().min_wmark_pages() + (1u64 << order);
            if !zone_watermark_ok(
                &zone.free_state(),
                0,
                mark,
                ZoneType::Dma,
                AllocFlags::CMA,
                |o, t| zone.has_free_block(o, t),
            ) {
                return 0;
            }
        }
        self.del_page_from_free_list(page, order, mt);
        if order + 1 >= PAGEBLOCK_ORDER {
            let end = pfn + (1u64 << order);
            let mut p = pfn & !(PAGEBLOCK_NR_PAGES - 1);
            while p < end {
                let block_mt = self.pageblock_mt(p);
                if migratetype_is_mergeable(block_mt) && block_mt != Migratetype::Movable {
                    let _ = self.move_freepages_block(p, block_mt, Migratetype::Movable);
                }
                p += PAGEBLOCK_NR_PAGES;
            }
        }
        1u64 << order
    }

    /// The blocks of `free_area[order].free_list[mt]`, first to last.
    pub fn free_list_iter(
        &self,
        order: u32,
        mt: Migratetype,
    ) -> impl Iterator<Item = &'m Page> + '_ {
        let list = self
            .fa
            .area
            .get(order as usize)
            .map(|a| &a.free_list[mt.index()]);
        let mut cur = list.and_then(|l| l.first());
        core::iter::from_fn(move || {
            let p = cur?;
            // SAFETY: `p` is linked on a free list of this zone, which cannot change while
            // `&self` (hence the zone lock) is held; list pages are memmap descriptors
            // that live as long as `'m`.
            let page: &'m Page = unsafe { &*p.as_ptr() };
            cur = NonNull::new(page.lru.next.load(Ordering::Relaxed));
            Some(page)
        })
    }

    /// The blocks of `free_area[order].free_list[mt]`, last to first.
    pub fn free_list_iter_rev(
        &self,
        order: u32,
        mt: Migratetype,
    ) -> impl Iterator<Item = &'m Page> + '_ {
        let list = self
            .fa
            .area
            .get(order as usize)
            .map(|a| &a.free_list[mt.index()]);
        let mut cur = list.and_then(|l| l.last());
        core::iter::from_fn(move || {
            let p = cur?;
            // SAFETY: as in `free_list_iter`.
            let page: &'m Page = unsafe { &*p.as_ptr() };
            cur = NonNull::new(page.lru.prev.load(Ordering::Relaxed));
            Some(page)
        })
    }

    /// Rotate `free_area[order].free_list[mt]` so that `page` (on it) comes first and the
    /// blocks that were before it go to the end (`move_freelist_head`): the free scanner's
    /// next search starts with blocks it has not looked at.
    pub fn move_freelist_head(&mut self, order: u32, mt: Migratetype, page: &Page) {
        self.rotate_free_list(order, mt, page, false);
    }

    /// Rotate `free_area[order].free_list[mt]` so that the blocks after `page` come first
    /// and `page` with everything before it goes to the end (`move_freelist_tail`): the
    /// migration scanner's fast search then skips the blocks it just used.
    pub fn move_freelist_tail(&mut self, order: u32, mt: Migratetype, page: &Page) {
        self.rotate_free_list(order, mt, page, true);
    }

    /// Rotate a free list so `page` ends up first (`inclusive == false`) or last. The cost
    /// is the distance from `page` to the end of the list that moves (the end the caller
    /// just scanned), not the list length: the order-0 lists can be very long.
    fn rotate_free_list(&mut self, order: u32, mt: Migratetype, page: &Page, inclusive: bool) {
        // Only rotate if the page is really on this list (it was found on it under the
        // same lock hold; this is a cheap guard against a caller's mistake).
        if !page.is_buddy() || page.buddy_order() != order || page.buddy_list_mt() != mt as u8 {
            return;
        }
        let Some(area) = self.fa.area.get_mut(order as usize) else {
            return;
        };
        let list = &mut area.free_list[mt.index()];
        // How many entries move: `page` and those after it (to the front), or `page` and
        // those before it (to the back).
        let mut moving = 1usize;
        let mut cur = if inclusive {
            page.lru.prev.load(Ordering::Relaxed)
        } else {
            page.lru.next.load(Ordering::Relaxed)
        };
        while let Some(p) = NonNull::new(cur) {
            moving += 1;
            // SAFETY: `p` is linked on this list, which the zone lock (held: we have
            // `&mut FreeAreas`) keeps unchanged while we walk it.
            let p = unsafe { p.as_ref() };
            cur = if inclusive {
                p.lru.prev.load(Ordering::Relaxed)
            } else {
                p.lru.next.load(Ordering::Relaxed)
            };
        }
        if moving >= list.len() && !inclusive {
            return;
        }
        for _ in 0..moving {
            // SAFETY: we hold the zone lock; each page taken off one end of this list is
            // relinked at the other end at once, so list membership does not change.
            unsafe {
                if inclusive {
                    let Some(p) = list.pop_front() else { return };
                    list.push_back(p.as_ref());
                } else {
                    let Some(p) = list.pop_back() else { return };
                    list.push_front(p.as_ref());
                }
            }
        }
    }

    /// Take the smallest free block of type `mt` and order at least `order`, splitting it
    /// (`__rmqueue_smallest`).
    #[doc(alias = "__rmqueue_smallest")]
    pub fn rmqueue_smallest(&mut self, order: u32, mt: Migratetype) -> Option<&'m Page> {
        for current in order..NR_PAGE_ORDERS as u32 {
            let Some(page) = self.get_page_from_free_area(current, mt) else {
                continue;
            };
            let pfn = self.pfn_of(page);
            self.page_del_and_expand(page, pfn, order, current, mt);
            return Some(page);
        }
        None
    }

    /// [`Buddy::rmqueue_smallest`] for a batch of up to `want` blocks of `order`: take the
    /// smallest free block of type `mt` and order at least `order`, and keep as many
    /// blocks of `order` from its start as the largest power of two not above `want` that
    /// it holds, splitting only the rest back. Returns the first page and the order of the
    /// chunk kept (its blocks of `order` are consecutive). The free lists end up exactly
    /// as after taking the same blocks one [`Buddy::rmqueue_smallest`] at a time (each
    /// takes the lowest half the previous split put back), with one unlink and one split
    /// instead of one per block.
    pub fn rmqueue_smallest_batch(
        &mut self,
        order: u32,
        mt: Migratetype,
        want: u64,
    ) -> Option<(&'m Page, u32)> {
        for current in order..NR_PAGE_ORDERS as u32 {
            let Some(page) = self.get_page_from_free_area(current, mt) else {
                continue;
            };
            let pfn = self.pfn_of(page);
            let extra = (u64::BITS - 1 - want.max(1).leading_zeros()).min(current - order);
            self.page_del_and_expand(page, pfn, order + extra, current, mt);
            return Some((page, order + extra));
        }
        None
    }

    /// Is there a fallback type with a free block at `order` for a `mt` request
    /// (`find_suitable_fallback`)? With `claimable`, first ask whether a claim at this
    /// order is worth it at all.
    pub fn find_suitable_fallback(&self, order: u32, mt: Migratetype, claimable: bool) -> Fallback {
        if claimable && !should_try_claim_block(order, mt) {
            return Fallback::NoClaim;
        }
        let Some(area) = self.fa.area.get(order as usize) else {
            return Fallback::Empty;
        };
        if area.nr_free == 0 {
            return Fallback::Empty;
        }
        for &fb in mt.fallbacks() {
            if !area.free_list[fb.index()].is_empty() {
                return Fallback::Found(fb);
            }
        }
        Fallback::Empty
    }

    /// Retype every pageblock of the block of `order` at `pfn` (`change_pageblock_range`).
    pub fn change_pageblock_range(&self, pfn: u64, order: u32, mt: Migratetype) {
        if order < PAGEBLOCK_ORDER {
            self.set_pageblock_mt(pfn, mt);
            return;
        }
        let mut p = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let end = pfn + (1u64 << order);
        while p < end {
            self.set_pageblock_mt(p, mt);
            p += PAGEBLOCK_NR_PAGES;
        }
    }

    /// Raise the zone's watermark boost after a fragmenting fallback (`boost_watermark`).
    fn boost_watermark(&mut self) -> bool {
        let w = &self.zone.wm;
        let boost = w.boost.load(Ordering::Relaxed);
        let high = w.wmark[2].load(Ordering::Relaxed);
        match boost_watermark(boost, high, self.zone.managed_pages(), self.boost_factor) {
            Some(b) => {
                w.boost.store(b, Ordering::Relaxed);
                self.events.boost += 1;
                true
            }
            None => false,
        }
    }

    /// Check that `pfn`'s pageblock lies wholly inside this zone and count its free pages
    /// and the allocated pages that look movable (`prep_move_freepages_block`). Returns
    /// `(start_pfn, free_pages, movable_pages)`, or `None` for a block that straddles the
    /// zone boundary (it cannot be repainted under this zone's lock alone).
    pub fn prep_move_freepages_block(&self, pfn: u64) -> Option<(u64, u64, u64)> {
        let start = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let end = start + PAGEBLOCK_NR_PAGES;
        if !self.zone.zone_spans_pfn(start) || !self.zone.zone_spans_pfn(end - 1) {
            return None;
        }
        let mut free = 0;
        let mut movable = 0;
        let mut p = start;
        while p < end {
            let Some(page) = self.page(p) else {
                p += 1;
                continue;
            };
            if page.is_buddy() && self.in_zone(page) {
                let nr = 1u64 << page.buddy_order();
                free += nr;
                p += nr;
                continue;
            }
            // Pages that compaction could isolate count as movable; trying to isolate them
            // would be too expensive here.
            if page.is_lru() || page.is_movable_ops() {
                movable += 1;
            }
            p += 1;
        }
        Some((start, free, movable))
    }

    /// Move every free block of the pageblock at `start_pfn` to the `new` lists
    /// (`__move_freepages_block`); returns the pages moved.
    fn __move_freepages_block(
        &mut self,
        start_pfn: u64,
        old: Migratetype,
        new: Migratetype,
    ) -> u64 {
        let end = start_pfn + PAGEBLOCK_NR_PAGES;
        let mut moved = 0;
        let mut p = start_pfn;
        while p < end {
            let Some(page) = self.page(p) else {
                p += 1;
                continue;
            };
            if !page.is_buddy() || !self.in_zone(page) {
                p += 1;
                continue;
            }
            let order = page.buddy_order();
            let on = Migratetype::from_bits(page.buddy_list_mt()).unwrap_or(old);
            self.move_to_free_list(page, order, on, new);
            p += 1 << order;
            moved += 1 << order;
        }
        moved
    }

    /// Repaint `pfn`'s pageblock from `old` to `new` together with its free pages
    /// (`move_freepages_block`). `None` if the block straddles the zone boundary.
    pub fn move_freepages_block(
        &mut self,
        pfn: u64,
        old: Migratetype,
        new: Migratetype,
    ) -> Option<u64> {
        let (start, _, _) = self.prep_move_freepages_block(pfn)?;
        let moved = self.__move_freepages_block(start, old, new);
        self.set_pageblock_mt(start, new);
        Some(moved)
    }

    /// Try to convert the foreign block `page` (order `current_order` on the `block_type`
    /// list) to `start_type` and allocate `order` from it (`try_to_claim_block`).
    fn try_to_claim_block(
        &mut self,
        page: &'m Page,
        current_order: u32,
        order: u32,
        start_type: Migratetype,
        block_type: Migratetype,
        alloc_flags: AllocFlags,
    ) -> Option<&'m Page> {
        let pfn = self.pfn_of(page);
        if current_order >= PAGEBLOCK_ORDER {
            // The whole pageblock (or several) is free: take ownership outright.
            let on = self.unlink(page, current_order, block_type);
            self.account_freepages(-(1i64 << current_order), on);
            self.change_pageblock_range(pfn, current_order, start_type);
            let added = self.expand(pfn, order, current_order, start_type);
            self.account_freepages(added as i64, start_type);
            self.events.claim += 1;
            return Some(page);
        }
        // Mixing types inside a pageblock: boost the watermarks so reclaim and compaction
        // start early, and wake kswapd on the way out if the caller allows it.
        if self.boost_watermark() && alloc_flags.contains(AllocFlags::KSWAPD) {
            self.zone
                .wm
                .flags
                .fetch_or(ZONE_BOOSTED_WATERMARK, Ordering::Relaxed);
        }
        let (start_pfn, free_pages, movable_pages) = self.prep_move_freepages_block(pfn)?;
        let alike_pages = if start_type == Migratetype::Movable {
            movable_pages
        } else if block_type == Migratetype::Movable {
            // A non-movable request falling back to a movable block: every allocated page
            // that does not look movable is counted as compatible. Between unmovable and
            // reclaimable nothing can be told apart, so nothing counts.
            PAGEBLOCK_NR_PAGES.saturating_sub(free_pages + movable_pages)
        } else {
            0
        };
        if free_pages + alike_pages >= 1 << (PAGEBLOCK_ORDER - 1) {
            self.__move_freepages_block(start_pfn, block_type, start_type);
            self.set_pageblock_mt(start_pfn, start_type);
            self.events.claim += 1;
            return self.rmqueue_smallest(order, start_type);
        }
        None
    }

    /// Claim a whole foreign pageblock, scanning from the largest order down
    /// (`__rmqueue_claim`). Under `ALLOC_NOFRAGMENT` only blocks of at least pageblock
    /// order are considered, so no pageblock ends up mixed.
    #[doc(alias = "__rmqueue_claim")]
    pub fn rmqueue_claim(
        &mut self,
        order: u32,
        start_mt: Migratetype,
        alloc_flags: AllocFlags,
    ) -> Option<&'m Page> {
        let min_order = if order < PAGEBLOCK_ORDER && alloc_flags.contains(AllocFlags::NOFRAGMENT) {
            PAGEBLOCK_ORDER
        } else {
            order
        };
        let mut current = MAX_PAGE_ORDER as i64;
        while current >= min_order as i64 {
            let co = current as u32;
            current -= 1;
            match self.find_suitable_fallback(co, start_mt, true) {
                Fallback::Empty => continue,
                Fallback::NoClaim => break,
                Fallback::Found(fb) => {
                    let Some(page) = self.get_page_from_free_area(co, fb) else {
                        continue;
                    };
                    if let Some(p) =
                        self.try_to_claim_block(page, co, order, start_mt, fb, alloc_flags)
                    {
                        self.events.fallback += 1;
                        return Some(p);
                    }
                }
            }
        }
        None
    }

    /// Take the smallest fitting block of a fallback type without repainting anything
    /// (`__rmqueue_steal`).
    #[doc(alias = "__rmqueue_steal")]
    pub fn rmqueue_steal(&mut self, order: u32, start_mt: Migratetype) -> Option<&'m Page> {
        for current in order..NR_PAGE_ORDERS as u32 {
            let Fallback::Found(fb) = self.find_suitable_fallback(current, start_mt, false) else {
                continue;
            };
            let Some(page) = self.get_page_from_free_area(current, fb) else {
                continue;
            };
            let pfn = self.pfn_of(page);
            self.page_del_and_expand(page, pfn, order, current, fb);
            self.events.fallback += 1;
            return Some(page);
        }
        None
    }

    /// Take a block of `order` for a `mt` request, falling back as described in the module
    /// documentation (`__rmqueue`). `mode` remembers the level that produced pages so a
    /// batch refill does not rescan empty levels.
    #[doc(alias = "__rmqueue")]
    pub fn rmqueue(
        &mut self,
        order: u32,
        mt: Migratetype,
        alloc_flags: AllocFlags,
        mode: &mut RmqueueMode,
    ) -> Option<&'m Page> {
        let cma = alloc_flags.contains(AllocFlags::CMA);
        // Balance movable allocations between CMA and the rest: use CMA first once it holds
        // more than half of the zone's free memory.
        if cma
            && self.zone.zone_page_state(ZoneStatItem::NrFreeCmaPages)
                > self.zone.nr_free_pages() / 2
            && let Some(p) = self.rmqueue_smallest(order, Migratetype::Cma)
        {
            return Some(p);
        }
        let start = *mode;
        if start == RmqueueMode::Normal
            && let Some(p) = self.rmqueue_smallest(order, mt)
        {
            return Some(p);
        }
        if start <= RmqueueMode::Cma
            && cma
            && let Some(p) = self.rmqueue_smallest(order, Migratetype::Cma)
        {
            *mode = RmqueueMode::Cma;
            return Some(p);
        }
        if start <= RmqueueMode::Claim
            && let Some(p) = self.rmqueue_claim(order, mt, alloc_flags)
        {
            // The claimed block replenished the preferred lists.
            *mode = RmqueueMode::Normal;
            return Some(p);
        }
        if !alloc_flags.contains(AllocFlags::NOFRAGMENT)
            && let Some(p) = self.rmqueue_steal(order, mt)
        {
            *mode = RmqueueMode::Steal;
            return Some(p);
        }
        None
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
