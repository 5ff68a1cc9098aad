//! The highatomic reserve: pageblocks set aside for high-order atomic allocations, and
//! given back when an allocation would otherwise fail (Linux: `reserve_highatomic_pageblock`,
//! `unreserve_highatomic_pageblock`).

#![deny(unsafe_code)]

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // The highatomic reserve.
    // ---------------------------------------------------------------------------------

    /// Set the pageblock of a successful high-order atomic allocation aside for such
    /// allocations (`reserve_highatomic_pageblock`), up to about 1% of the zone
    /// (`ALIGN(managed / 100, pageblock_nr_pages)`); zones too small for one pageblock at
    /// 1% keep no reserve.
    #[cold]
    pub(crate) fn reserve_highatomic_pageblock(&self, zone: &Zone, pfn: u64, order: u32) {
        let one_percent = zone.managed_pages() / 100;
        if one_percent < PAGEBLOCK_NR_PAGES {
            return;
        }
        let max_managed = one_percent.next_multiple_of(PAGEBLOCK_NR_PAGES);
        if zone.nr_reserved_highatomic() >= max_managed {
            return;
        }
        let mut g = zone.lock.lock_irqsave(&self.platform);
        if zone.nr_reserved_highatomic() >= max_managed {
            return;
        }
        let mut b = self.buddy(zone, &mut g);
        let mt = b.pageblock_mt(pfn);
        // Only blocks of the ordinary types: they can merge with others.
        if !migratetype_is_mergeable(mt) {
            return;
        }
        let added = if order < PAGEBLOCK_ORDER {
            if b.move_freepages_block(pfn, mt, Migratetype::HighAtomic)
                .is_none()
            {
                return;
            }
            PAGEBLOCK_NR_PAGES
        } else {
            b.change_pageblock_range(pfn, order, Migratetype::HighAtomic);
            1 << order
        };
        counter_add(&zone.counters.nr_reserved_highatomic, added as i64);
        self.count_vm_events_irqs_off(self.this_cpu_header(), VmEvent::HighatomicReserve, 1);
    }

    /// Give one highatomic pageblock back to the request's type
    /// (`unreserve_highatomic_pageblock`), keeping at least one per zone unless `force`.
    /// True if a block was converted.
    pub(crate) fn unreserve_highatomic_pageblock(&self, ac: &AllocContext, force: bool) -> bool {
        for zr in self.zonelist(ac) {
            let zone = self.zone(zr);
            if !force && zone.nr_reserved_highatomic() <= PAGEBLOCK_NR_PAGES {
                continue;
            }
            if zone.nr_reserved_highatomic() == 0 {
                continue;
            }
            let mut g = zone.lock.lock_irqsave(&self.platform);
            let mut b = self.buddy(zone, &mut g);
            for order in 0..=MAX_PAGE_ORDER {
                let Some(page) = b.get_page_from_free_area(order, Migratetype::HighAtomic) else {
                    continue;
                };
                let pfn = self.mem().page_to_pfn(page);
                let size = PAGEBLOCK_NR_PAGES
                    .max(1 << order)
                    .min(zone.nr_reserved_highatomic());
                counter_add(&zone.counters.nr_reserved_highatomic, -(size as i64));
                // Convert to the caller's type without the claim heuristics: the caller
                // needs the pages now.
                let moved = if order < PAGEBLOCK_ORDER {
                    b.move_freepages_block(pfn, Migratetype::HighAtomic, ac.migratetype)
                } else {
                    b.move_to_free_list(page, order, Migratetype::HighAtomic, ac.migratetype);
                    b.change_pageblock_range(pfn, order, ac.migratetype);
                    Some(1)
                };
                // The block is an ordinary one again: it may merge with its neighbour.
                b.remerge_pageblock(pfn);
                if moved.is_some_and(|m| m > 0) {
                    drop(g);
                    self.count_vm_events(VmEvent::HighatomicUnreserve, 1);
                    return true;
                }
            }
        }
        false
    }
}
