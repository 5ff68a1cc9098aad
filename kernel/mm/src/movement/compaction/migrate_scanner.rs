//! The migration scanner: from the bottom of the zone up, isolate movable pages to move
//! (Linux: `isolate_migratepages`, `isolate_migratepages_block`,
//! `fast_find_migrateblock`).

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // The migration scanner.
    // ---------------------------------------------------------------------------------

    /// `isolate_migratepages_block`: isolate the movable pages of `[low_pfn, end_pfn)`
    /// (inside one pageblock) onto `cc.migratepages`, stopping after
    /// [`COMPACT_CLUSTER_MAX`]. Free blocks are stepped over by their order, compound,
    /// pinned, locked (async), reserved and unmovable pages are left alone
    /// ([`PageAllocator::isolate_migratepage`] decides). Async direct compaction gives up
    /// on an order-aligned block at its first failure: that block cannot become free.
    pub(super) fn isolate_migratepages_block(
        &self,
        cc: &mut CompactControl<'_>,
        mut low_pfn: u64,
        end_pfn: u64,
    ) {
        let zone = cc.zone;
        cc.migrate_pfn = low_pfn;
        let mut nr_scanned = 0u64;
        let mut nr_isolated = 0u64;
        let skip_on_failure = cc.direct_compaction && cc.mode == MigrateMode::Async && cc.order > 0;
        let order = cc.order.max(0) as u32;
        let mut next_skip_pfn = if skip_on_failure {
            block_end_pfn(low_pfn, order)
        } else {
            0
        };
        let mut valid_pfn: Option<u64> = None;
        let mut skip_updated = false;

        while low_pfn < end_pfn {
            if skip_on_failure && low_pfn >= next_skip_pfn {
                // Everything isolated so far came from one order-aligned block that may
                // now become free: migrate it before looking further.
                if nr_isolated != 0 {
                    break;
                }
                next_skip_pfn = block_end_pfn(low_pfn, order);
            }
            nr_scanned += 1;
            let page = self.page_in_zone(zone, low_pfn);
            if valid_pfn.is_none()
                && (pageblock_aligned(low_pfn) || low_pfn == zone.zone_start_pfn())
                && page.is_some()
            {
                if !self.isolation_suitable(cc, low_pfn) {
                    low_pfn = end_pfn;
                    break;
                }
                valid_pfn = Some(low_pfn);
            }
            let failed = match page {
                None => true,
                Some(page) if page.is_buddy() => {
                    // Read without the zone lock: a stale order only makes us skip a bit
                    // too much or too little.
                    let o = page.buddy_order();
                    if o > 0 && o <= MAX_PAGE_ORDER {
                        low_pfn += (1u64 << o) - 1;
                        nr_scanned += (1u64 << o) - 1;
                    }
                    low_pfn += 1;
                    continue;
                }
                Some(page) if page.is_head() || page.is_tail() => {
                    if page.is_head() {
                        let o = self.compound_order_at(low_pfn);
                        if o <= MAX_PAGE_ORDER && o > 0 {
                            low_pfn += (1u64 << o) - 1;
                            nr_scanned += (1u64 << o) - 1;
                        }
                    }
                    true
                }
                Some(page)
                    if (page.mapping_flags() == 0 && !page.is_lru())
                        || page.refcount() <= 0
                        || page.test_flag(PageFlags::ISOLATED) =>
                {
                    true
                }
                Some(page) => {
                    // The first candidate of the block: claim the block so concurrent
                    // compactors pass it by.
                    if !skip_updated && let Some(v) = valid_pfn {
                        skip_updated = true;
                        if self.test_and_set_skip(cc, v) && !cc.finish_pageblock {
                            low_pfn = end_pfn;
                            break;
                        }
                    }
                    if self.isolate_migratepage(page, cc.mode) {
                        // SAFETY: the page was just isolated: it holds our reference, is
                        // marked PG_isolated and its lru links are free; it is a memmap
                        // descriptor; the list is this compaction's private list.
                        unsafe { cc.migratepages.push_back(page) };
                        cc.nr_migratepages += 1;
                        nr_isolated += 1;
                        low_pfn += 1;
                        if cc.nr_migratepages >= COMPACT_CLUSTER_MAX
                            && !cc.finish_pageblock
                            && !cc.contended
                        {
                            break;
                        }
                        continue;
                    }
                    true
                }
            };
            debug_assert!(failed);
            if !skip_on_failure {
                low_pfn += 1;
                continue;
            }
            // This order-aligned block cannot become free: release what was isolated
            // from it and move on to the next one.
            if nr_isolated != 0 {
                self.putback_movable_pages(&mut cc.migratepages);
                cc.nr_migratepages = 0;
                nr_isolated = 0;
            }
            if low_pfn < next_skip_pfn {
                low_pfn = next_skip_pfn - 1;
                next_skip_pfn += 1u64 << order;
            }
            low_pfn += 1;
        }
        if low_pfn > end_pfn {
            low_pfn = end_pfn;
        }
        // The whole block was scanned: mark it if nothing came of it, and let the next
        // run start after it.
        if low_pfn == end_pfn && (nr_isolated == 0 || cc.finish_pageblock) {
            if !cc.ignore_skip_hint
                && let Some(v) = valid_pfn
                && !skip_updated
            {
                let _ = set_pageblock_skip(self.model().sparse(), v);
            }
            self.update_cached_migrate(cc, low_pfn);
        }
        cc.total_migrate_scanned += nr_scanned;
        if nr_isolated != 0 {
            cc.stats.isolated += nr_isolated;
            self.count_vm_events(VmEvent::CompactIsolated, nr_isolated);
        }
        cc.migrate_pfn = low_pfn;
    }

    /// `suitable_migration_source`: async direct compaction only takes pages from blocks
    /// of the request's own type (movable requests: movable or CMA blocks), so it does not
    /// spread a movable allocation's work over unmovable blocks it cannot empty anyway.
    pub(super) fn suitable_migration_source(
        &self,
        cc: &CompactControl<'_>,
        page: &Page,
        pfn: u64,
    ) -> bool {
        if self.pageblock_skip_persistent(page, pfn) {
            return false;
        }
        if cc.mode != MigrateMode::Async || !cc.direct_compaction {
            return true;
        }
        let mt = crate::model::pageblock::get_pageblock_migratetype(self.model().sparse(), pfn)
            .unwrap_or(Migratetype::Unmovable);
        if cc.migratetype == Migratetype::Movable {
            matches!(mt, Migratetype::Movable | Migratetype::Cma)
        } else {
            mt == cc.migratetype
        }
    }

    /// `freelist_scan_limit`: how many free-list entries a fast search may look at; it
    /// shrinks with every fast search that found nothing.
    pub(super) fn freelist_scan_limit(cc: &CompactControl<'_>) -> u64 {
        (COMPACT_CLUSTER_MAX >> cc.fast_search_fail.min(63)) + 1
    }

    /// `fast_find_migrateblock`: for a costly movable request, start the migration scanner
    /// in a movable pageblock that already has a free block of high order (fewer pages to
    /// move before it is free), found near the head of the free lists, in the lower part of
    /// the remaining scan range. Unlike Linux, a block below the scanner is not chosen, so
    /// the scanner never moves backwards.
    pub(super) fn fast_find_migrateblock(&self, cc: &mut CompactControl<'_>) -> u64 {
        let zone = cc.zone;
        let mut pfn = cc.migrate_pfn;
        if cc.ignore_skip_hint || cc.finish_pageblock {
            return pfn;
        }
        if pfn != zone.zone_start_pfn() && pfn != pageblock_start_pfn(pfn) {
            return pfn;
        }
        if cc.order <= PAGE_ALLOC_COSTLY_ORDER as i32 {
            return pfn;
        }
        if cc.direct_compaction && cc.migratetype != Migratetype::Movable {
            return pfn;
        }
        let mut distance = cc.free_pfn.saturating_sub(cc.migrate_pfn) >> 1;
        if cc.migrate_pfn != zone.zone_start_pfn() {
            distance >>= 2;
        }
        let high_pfn = pageblock_start_pfn(cc.migrate_pfn + distance);
        let low_bound = pageblock_start_pfn(cc.migrate_pfn);
        let limit = Self::freelist_scan_limit(cc);
        let mut nr_scanned = 0u64;
        let mut found = false;
        let mem = self.model().sparse();
        let mut order = cc.order - 1;
        while order >= PAGE_ALLOC_COSTLY_ORDER as i32 && !found && nr_scanned < limit {
            let o = order as u32;
            order -= 1;
            if !zone.has_free_block(o, Migratetype::Movable) {
                continue;
            }
            let mut lock = self.compact_lock(zone, cc);
            let mut b = self.buddy(zone, &mut lock.guard);
            let mut rotate_at: Option<&Page> = None;
            for freepage in b.free_list_iter(o, Migratetype::Movable) {
                let scanned = nr_scanned;
                nr_scanned += 1;
                if scanned >= limit {
                    rotate_at = Some(freepage);
                    break;
                }
                let free_pfn = self.page_to_pfn(freepage);
                if free_pfn < high_pfn && free_pfn >= low_bound {
                    if get_pageblock_skip(mem, free_pfn).unwrap_or(false) {
                        continue;
                    }
                    rotate_at = Some(freepage);
                    if cc.fast_start_pfn != u64::MAX {
                        cc.fast_start_pfn = if cc.fast_start_pfn == 0 {
                            free_pfn
                        } else {
                            cc.fast_start_pfn.min(free_pfn)
                        };
                    }
                    pfn = pageblock_start_pfn(free_pfn).max(zone.zone_start_pfn());
                    cc.fast_search_fail = 0;
                    found = true;
                    break;
                }
            }
            if let Some(p) = rotate_at {
                b.move_freelist_tail(o, Migratetype::Movable, p);
            }
        }
        cc.total_migrate_scanned += nr_scanned;
        if !found {
            cc.fast_search_fail += 1;
            // `reinit_migrate_pfn`: restart the linear scan at the lowest block an earlier
            // fast search found, once.
            if cc.fast_start_pfn != 0 && cc.fast_start_pfn != u64::MAX {
                cc.migrate_pfn = pageblock_start_pfn(cc.fast_start_pfn).max(cc.migrate_pfn);
                cc.fast_start_pfn = u64::MAX;
            }
            pfn = cc.migrate_pfn;
        }
        pfn
    }

    /// `isolate_migratepages`: from the migration scanner's position (or the block the fast
    /// search chose), find the first suitable pageblock below the free scanner and isolate
    /// its movable pages.
    pub(super) fn isolate_migratepages(&self, cc: &mut CompactControl<'_>) -> IsolateMigrate {
        let zone = cc.zone;
        let mut low_pfn = self.fast_find_migrateblock(cc);
        let mut block_start = pageblock_start_pfn(low_pfn).max(zone.zone_start_pfn());
        let mut fast_find_block = low_pfn != cc.migrate_pfn && cc.fast_search_fail == 0;
        let mut block_end = pageblock_end_pfn(low_pfn);
        while block_end <= cc.free_pfn {
            'block: {
                let Some(page) = self.pageblock_pfn_to_page(block_start, block_end, zone) else {
                    break 'block;
                };
                if (pageblock_aligned(low_pfn) || low_pfn == zone.zone_start_pfn())
                    && !fast_find_block
                    && !self.isolation_suitable(cc, block_start)
                {
                    break 'block;
                }
                if !self.suitable_migration_source(cc, page, block_start) {
                    self.update_cached_migrate(cc, block_end);
                    break 'block;
                }
                self.isolate_migratepages_block(cc, low_pfn, block_end);
                return if cc.nr_migratepages != 0 {
                    IsolateMigrate::Success
                } else {
                    IsolateMigrate::None
                };
            }
            fast_find_block = false;
            low_pfn = block_end;
            cc.migrate_pfn = block_end;
            block_start = block_end;
            block_end += PAGEBLOCK_NR_PAGES;
        }
        if cc.nr_migratepages != 0 {
            IsolateMigrate::Success
        } else {
            IsolateMigrate::None
        }
    }
}
