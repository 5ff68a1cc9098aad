//! The free scanner: from the top of the zone down, isolate free pages to move into
//! (Linux: `isolate_freepages`, `isolate_freepages_block`, `fast_isolate_freepages`,
//! `split_map_pages`).

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // The free scanner.
    // ---------------------------------------------------------------------------------

    /// `split_map_pages`: turn the isolated free blocks on `heads` (order in `private`)
    /// into order-0 pages that look freshly allocated (reference count 1), ready to be
    /// migration targets, at the end of `cc.freepages`.
    pub(super) fn split_map_pages(&self, cc: &mut CompactControl<'_>, heads: &mut PageList) {
        // SAFETY: `heads` is a private list of blocks this compaction isolated.
        while let Some(p) = unsafe { heads.pop_front() } {
            let head = self.list_page(p);
            let order = (head.private() as u32).min(MAX_PAGE_ORDER);
            head.set_private(0);
            let pfn = self.page_to_pfn(head);
            for i in 0..(1u64 << order) {
                let Some(page) = self.pfn_to_page(pfn + i) else {
                    cc.nr_freepages = cc.nr_freepages.saturating_sub(1);
                    continue;
                };
                if !page_ok_at_alloc(page) {
                    // In use while on a free list: a bug elsewhere. Never hand it out.
                    self.bad_page_at_alloc(page);
                    cc.nr_freepages = cc.nr_freepages.saturating_sub(1);
                    continue;
                }
                self.prep_new_page(page, 0, Gfp::empty());
                // SAFETY: the page was part of a free block we took off the buddy lists,
                // so it is on no list; it is a memmap descriptor; the list is private.
                unsafe { cc.freepages.push_back(page) };
            }
        }
    }

    /// `isolate_freepages_block`: take the free blocks of `[*start_pfn, end_pfn)` off the
    /// buddy lists, every `stride`-th pfn, until there are as many targets as sources
    /// (unless `strict`). Leaves `*start_pfn` where the scan stopped. Returns the pages
    /// isolated.
    pub(super) fn isolate_freepages_block(
        &self,
        cc: &mut CompactControl<'_>,
        start_pfn: &mut u64,
        end_pfn: u64,
        stride: u64,
        strict: bool,
    ) -> u64 {
        let zone = cc.zone;
        let stride = if strict { 1 } else { stride.max(1) };
        let mut nr_scanned = 0u64;
        let mut total_isolated = 0u64;
        let mut blockpfn = *start_pfn;
        let mut heads = PageList::new();
        let mut lock: Option<CompactLock<'_, P>> = None;
        while blockpfn < end_pfn {
            if blockpfn.is_multiple_of(COMPACT_CLUSTER_MAX) {
                // Let interrupts and other CPUs in now and then.
                lock = None;
            }
            nr_scanned += 1;
            let page = match self.page_in_zone(zone, blockpfn) {
                Some(p) => p,
                None => {
                    if strict {
                        break;
                    }
                    blockpfn += stride;
                    continue;
                }
            };
            if page.is_head() {
                let o = self.compound_order_at(blockpfn);
                if o <= MAX_PAGE_ORDER && o > 0 {
                    blockpfn += (1u64 << o) - 1;
                    nr_scanned += (1u64 << o) - 1;
                }
                if strict {
                    break;
                }
                blockpfn += stride;
                continue;
            }
            if !page.is_buddy() {
                if strict {
                    break;
                }
                blockpfn += stride;
                continue;
            }
            if lock.is_none() {
                lock = Some(self.compact_lock(zone, cc));
            }
            let l = lock.as_mut().expect("just locked");
            // Recheck under the lock: the block may have been allocated or merged.
            if !page.is_buddy() {
                if strict {
                    break;
                }
                blockpfn += stride;
                continue;
            }
            let order = page.buddy_order();
            let mut b = self.buddy(zone, &mut l.guard);
            // The block may have been isolated since its pageblock was judged suitable:
            // the isolate lists are never a migration target (checked under the lock).
            if b.pageblock_mt(blockpfn) == Migratetype::Isolate {
                break;
            }
            let isolated = b.isolate_free_page(page, order);
            if isolated == 0 {
                break;
            }
            page.set_private(order as u64);
            // SAFETY: the block was just taken off its free list (PG_buddy cleared), so it
            // is on no list; `heads` is private to this call.
            unsafe { heads.push_back(page) };
            nr_scanned += isolated - 1;
            total_isolated += isolated;
            cc.nr_freepages += isolated;
            if !strict && cc.nr_migratepages <= cc.nr_freepages {
                blockpfn += isolated;
                break;
            }
            blockpfn += isolated - 1 + stride;
        }
        drop(lock);
        if blockpfn > end_pfn {
            blockpfn = end_pfn;
        }
        *start_pfn = blockpfn;
        self.split_map_pages(cc, &mut heads);
        cc.total_free_scanned += nr_scanned;
        if total_isolated != 0 {
            cc.stats.isolated += total_isolated;
            self.count_vm_events(VmEvent::CompactIsolated, total_isolated);
        }
        total_isolated
    }

    /// `suitable_migration_target`: free pages are taken from movable and CMA pageblocks
    /// (any block at full priority), never from a block that is free as a whole (that is
    /// what compaction is trying to create).
    pub(super) fn suitable_migration_target(
        &self,
        cc: &CompactControl<'_>,
        page: &Page,
        pfn: u64,
    ) -> bool {
        if page.is_buddy() && page.buddy_order() >= PAGEBLOCK_ORDER {
            return false;
        }
        // An isolated pageblock's free pages belong to whoever isolated it (a contiguous
        // allocation, an offline): not even a full-priority run may take them.
        if crate::model::pageblock::get_pageblock_migratetype(self.model().sparse(), pfn)
            == Ok(Migratetype::Isolate)
        {
            return false;
        }
        if cc.ignore_block_suitable {
            return true;
        }
        matches!(
            crate::model::pageblock::get_pageblock_migratetype(self.model().sparse(), pfn),
            Ok(Migratetype::Movable | Migratetype::Cma)
        )
    }

    /// `next_search_order`: orders below the wanted one, round robin from where the last
    /// search succeeded; -1 once it wrapped around.
    pub(super) fn next_search_order(cc: &mut CompactControl<'_>, order: i32) -> i32 {
        let mut order = order - 1;
        if order < 0 {
            order = cc.order - 1;
        }
        if order == cc.search_order {
            cc.search_order -= 1;
            if cc.search_order < 0 {
                cc.search_order = cc.order - 1;
            }
            return -1;
        }
        order
    }

    /// `fast_isolate_around`: after the fast search picked `pfn`, take the other free pages
    /// of its pageblock too (not in async direct compaction, which stays minimal).
    pub(super) fn fast_isolate_around(&self, cc: &mut CompactControl<'_>, pfn: u64) {
        if cc.nr_freepages >= cc.nr_migratepages {
            return;
        }
        if cc.direct_compaction && cc.mode == MigrateMode::Async {
            return;
        }
        let zone = cc.zone;
        let mut start = pageblock_start_pfn(pfn).max(zone.zone_start_pfn());
        let end = pageblock_end_pfn(pfn).min(zone.zone_end_pfn());
        if self.pageblock_pfn_to_page(start, end, zone).is_none() {
            return;
        }
        let block = start;
        self.isolate_freepages_block(cc, &mut start, end, 1, false);
        if start == end && !cc.ignore_skip_hint {
            let _ = set_pageblock_skip(self.model().sparse(), block);
        }
    }

    /// `fast_isolate_freepages`: search the movable free lists below the wanted order for
    /// a block high in the zone (the top quarter of the remaining range, or failing that
    /// the top half), rather than scanning pageblocks one by one.
    pub(super) fn fast_isolate_freepages(&self, cc: &mut CompactControl<'_>) {
        if cc.order <= 0 {
            return;
        }
        let zone = cc.zone;
        let mut limit = (Self::freelist_scan_limit(cc) >> 1).max(1);
        let mut scan_start = false;
        if cc.free_pfn >= zone.compact.init_free_pfn.load(Ordering::Relaxed) {
            limit = PAGEBLOCK_NR_PAGES >> 1;
            scan_start = true;
        }
        let distance = cc.free_pfn.saturating_sub(cc.migrate_pfn);
        let mut low_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 2));
        let min_pfn = pageblock_start_pfn(cc.free_pfn - (distance >> 1));
        if min_pfn > low_pfn {
            low_pfn = min_pfn;
        }
        cc.search_order = cc.search_order.min(cc.order - 1);
        let mut nr_scanned = 0u64;
        let mut highest = 0u64;
        let mut page_pfn: Option<u64> = None;
        let mut heads = PageList::new();
        let mut order = cc.search_order;
        while page_pfn.is_none() && order >= 0 {
            let o = order as u32;
            let mut order_scanned = 0u64;
            if zone.has_free_block(o, Migratetype::Movable) {
                let mut lock = self.compact_lock(zone, cc);
                let mut b = self.buddy(zone, &mut lock.guard);
                let mut high_pfn = 0u64;
                let mut candidate: Option<&Page> = None;
                let mut cursor: Option<&Page> = None;
                for freepage in b.free_list_iter_rev(o, Migratetype::Movable) {
                    order_scanned += 1;
                    nr_scanned += 1;
                    let pfn = self.page_to_pfn(freepage);
                    if pfn >= highest {
                        highest = pageblock_start_pfn(pfn).max(zone.zone_start_pfn());
                    }
                    if pfn >= low_pfn {
                        cc.fast_search_fail = 0;
                        cc.search_order = order;
                        candidate = Some(freepage);
                        cursor = Some(freepage);
                        break;
                    }
                    if pfn >= min_pfn && pfn > high_pfn {
                        high_pfn = pfn;
                        // A usable candidate: shorten the search.
                        limit >>= 1;
                    }
                    if order_scanned >= limit {
                        cursor = Some(freepage);
                        break;
                    }
                }
                if candidate.is_none() && high_pfn != 0 {
                    candidate = self.pfn_to_page(high_pfn);
                    cursor = candidate;
                }
                if let Some(c) = cursor {
                    b.move_freelist_head(o, Migratetype::Movable, c);
                }
                if let Some(p) = candidate {
                    if p.is_buddy() && p.buddy_order() == o && b.isolate_free_page(p, o) != 0 {
                        p.set_private(o as u64);
                        // SAFETY: just taken off its free list; `heads` is private.
                        unsafe { heads.push_back(p) };
                        let nr = 1u64 << o;
                        nr_scanned += nr - 1;
                        cc.nr_freepages += nr;
                        cc.stats.isolated += nr;
                        self.count_vm_events(VmEvent::CompactIsolated, nr);
                        page_pfn = Some(self.page_to_pfn(p));
                    } else {
                        // Isolation refused (watermark): end the search.
                        order = cc.search_order + 1;
                    }
                }
                drop(lock);
            }
            if cc.nr_freepages >= cc.nr_migratepages {
                break;
            }
            if order_scanned >= limit {
                limit = (limit >> 1).max(1);
            }
            order = Self::next_search_order(cc, order);
        }
        let mut around = page_pfn;
        if page_pfn.is_none() {
            cc.fast_search_fail += 1;
            if scan_start {
                // Use the highest block seen above the minimum; failing that, be
                // pessimistic for direct compaction and start at the minimum.
                if highest >= min_pfn && highest != 0 {
                    cc.free_pfn = highest;
                    around = Some(highest);
                } else if cc.direct_compaction
                    && self
                        .pageblock_pfn_to_page(
                            min_pfn,
                            pageblock_end_pfn(min_pfn).min(zone.zone_end_pfn()),
                            zone,
                        )
                        .is_some()
                {
                    cc.free_pfn = min_pfn;
                    around = Some(min_pfn);
                }
            }
        }
        let cached = &zone.compact.cached_free_pfn;
        if highest != 0 && highest >= cached.load(Ordering::Relaxed) {
            cached.store(
                highest.saturating_sub(PAGEBLOCK_NR_PAGES),
                Ordering::Relaxed,
            );
        }
        cc.total_free_scanned += nr_scanned;
        self.split_map_pages(cc, &mut heads);
        if let Some(pfn) = around {
            self.fast_isolate_around(cc, pfn);
        }
    }

    /// `isolate_freepages`: refill `cc.freepages`, first from the fast search, then by
    /// scanning pageblocks downwards from the free scanner's position until there are as
    /// many targets as isolated sources or the migration scanner is reached.
    pub(super) fn isolate_freepages(&self, cc: &mut CompactControl<'_>) {
        self.fast_isolate_freepages(cc);
        if cc.nr_freepages != 0 {
            return;
        }
        let zone = cc.zone;
        let mut isolate_start_pfn = cc.free_pfn;
        let mut block_start = pageblock_start_pfn(isolate_start_pfn) as i64;
        let mut block_end = (block_start as u64 + PAGEBLOCK_NR_PAGES).min(zone.zone_end_pfn());
        let low_pfn = pageblock_end_pfn(cc.migrate_pfn) as i64;
        let mut stride = if cc.mode == MigrateMode::Async {
            COMPACT_CLUSTER_MAX
        } else {
            1
        };
        let nr = PAGEBLOCK_NR_PAGES as i64;
        while block_start >= low_pfn {
            let bs = block_start as u64;
            'block: {
                let Some(page) = self.pageblock_pfn_to_page(bs, block_end, zone) else {
                    break 'block;
                };
                if !self.suitable_migration_target(cc, page, bs) {
                    break 'block;
                }
                if !self.isolation_suitable(cc, bs) {
                    break 'block;
                }
                let nr_isolated = self.isolate_freepages_block(
                    cc,
                    &mut isolate_start_pfn,
                    block_end,
                    stride,
                    false,
                );
                if isolate_start_pfn == block_end && !cc.ignore_skip_hint {
                    self.update_pageblock_skip(bs, bs.saturating_sub(PAGEBLOCK_NR_PAGES), zone);
                }
                if cc.nr_freepages >= cc.nr_migratepages {
                    if isolate_start_pfn >= block_end {
                        // Restart at the block below next time.
                        isolate_start_pfn = bs.saturating_sub(PAGEBLOCK_NR_PAGES);
                    }
                    cc.free_pfn = isolate_start_pfn;
                    return;
                } else if isolate_start_pfn < block_end {
                    // Isolation stopped early (watermark): do not go on needlessly.
                    cc.free_pfn = isolate_start_pfn;
                    return;
                }
                if nr_isolated != 0 {
                    stride = 1;
                } else {
                    stride = (stride << 1).min(COMPACT_CLUSTER_MAX);
                }
            }
            block_end = bs;
            block_start -= nr;
            isolate_start_pfn = block_start.max(0) as u64;
        }
        // The scanners met: leave the free scanner below the migration scanner.
        cc.free_pfn = if block_start < 0 {
            0
        } else {
            isolate_start_pfn
        };
    }

    /// `compaction_alloc`: the migration target callback. Refills from the free scanner
    /// when the private list is empty; None (migration aborts with `-ENOMEM`) when the free
    /// scanner has met the migration scanner.
    pub(super) fn compaction_alloc<'a>(&'a self, cc: &mut CompactControl<'_>) -> Option<&'a Page> {
        // Fault injection reaches migration targets too (ours; see page_alloc::fail).
        if self.fail_page_alloc().armed()
            && self
                .fail_page_alloc()
                .should_fail_alloc_page(crate::page_alloc::gfp::GFP_HIGHUSER_MOVABLE, 0)
        {
            self.fail_injected(
                crate::page_alloc::gfp::GFP_HIGHUSER_MOVABLE | crate::page_alloc::gfp::Gfp::NOWARN,
                0,
            );
            return None;
        }
        if cc.freepages.is_empty() {
            self.isolate_freepages(cc);
            if cc.freepages.is_empty() {
                return None;
            }
        }
        // SAFETY: the list is this compaction's private list.
        let p = unsafe { cc.freepages.pop_front() }?;
        cc.nr_freepages = cc.nr_freepages.saturating_sub(1);
        cc.targets_taken += 1;
        Some(self.list_page(p))
    }

    /// `compaction_free`: take back a target migration did not use.
    pub(super) fn compaction_free(&self, cc: &mut CompactControl<'_>, page: &Page) {
        // SAFETY: the page is a target this compaction handed out and got back unused: it
        // is on no list; the list is private.
        unsafe { cc.freepages.push_front(page) };
        cc.nr_freepages += 1;
        cc.targets_returned += 1;
    }

    /// `release_freepages`: return every unused target to the buddy lists. Returns the
    /// highest pfn released (0 if none).
    pub(super) fn release_freepages(&self, cc: &mut CompactControl<'_>) -> u64 {
        let high = self.free_isolated_pages(cc.zone, &mut cc.freepages);
        cc.nr_freepages = 0;
        high
    }
}
