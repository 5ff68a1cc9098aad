//! Skip hints and cached scanner positions: pageblocks that recently yielded nothing are
//! skipped until the hints are reset, and each scanner resumes where it stopped (Linux:
//! `isolation_suitable`, `update_pageblock_skip`, `__reset_isolation_suitable`); and the
//! small page helpers the scanners share.

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Skip hints and cached positions.
    // ---------------------------------------------------------------------------------

    /// `reset_cached_positions`: the next run starts at the zone's ends.
    pub(super) fn reset_cached_positions(&self, zone: &Zone) {
        let c = &zone.compact;
        c.cached_migrate_pfn[0].store(zone.zone_start_pfn(), Ordering::Relaxed);
        c.cached_migrate_pfn[1].store(zone.zone_start_pfn(), Ordering::Relaxed);
        c.cached_free_pfn.store(
            pageblock_start_pfn(zone.zone_end_pfn() - 1),
            Ordering::Relaxed,
        );
    }

    /// Set up a zone's restart positions on first use.
    pub(super) fn ensure_compact_init(&self, zone: &Zone) {
        let c = &zone.compact;
        if c.init_free_pfn.load(Ordering::Relaxed) == 0 {
            c.init_migrate_pfn
                .store(zone.zone_start_pfn(), Ordering::Relaxed);
            c.init_free_pfn.store(
                pageblock_start_pfn(zone.zone_end_pfn() - 1),
                Ordering::Relaxed,
            );
            self.reset_cached_positions(zone);
        }
    }

    /// Is `page` a candidate source, as the reset samples see it (Linux: `PageLRU`)?
    #[inline]
    pub(super) fn page_looks_movable(page: &Page) -> bool {
        !page.is_buddy() && page.mapping_flags() != 0 && page.refcount() > 0
    }

    /// `__reset_isolation_pfn`: clear the skip bit of `pfn`'s pageblock if a sample of its
    /// pages (every eighth) finds a movable page (`check_source`) or a free one
    /// (`check_target`). True if the block would serve as a restart point.
    pub(super) fn __reset_isolation_pfn(
        &self,
        zone: &Zone,
        pfn: u64,
        check_source: bool,
        check_target: bool,
    ) -> bool {
        let mem = self.model().sparse();
        let Some(page) = self.page_in_zone(zone, pfn) else {
            return false;
        };
        if self.pageblock_skip_persistent(page, pfn) {
            return false;
        }
        if check_source && check_target && !get_pageblock_skip(mem, pfn).unwrap_or(false) {
            return true;
        }
        if !check_source
            && check_target
            && crate::model::pageblock::get_pageblock_migratetype(mem, pfn).ok()
                != Some(Migratetype::Movable)
        {
            return false;
        }
        let start = pageblock_start_pfn(pfn).max(zone.zone_start_pfn());
        let end = (pageblock_end_pfn(pfn) - 1).min(zone.zone_end_pfn() - 1);
        if self.page_in_zone(zone, end).is_none() {
            return false;
        }
        let mut p = start;
        while p <= end {
            if let Some(page) = self.page_in_zone(zone, p)
                && ((check_source && Self::page_looks_movable(page))
                    || (check_target && page.is_buddy()))
            {
                let _ = clear_pageblock_skip(mem, p);
                return true;
            }
            p += 1 << PAGE_ALLOC_COSTLY_ORDER;
        }
        false
    }

    /// `__reset_isolation_suitable`: after a direct compaction went through the whole zone
    /// (`compact_blockskip_flush`), clear the skip bits of the blocks worth scanning again,
    /// walking from both ends, and restart the scanners at the outermost such blocks.
    pub(crate) fn __reset_isolation_suitable(&self, zone: &Zone) {
        let c = &zone.compact;
        if !c.blockskip_flush.swap(false, Ordering::Relaxed) {
            return;
        }
        self.ensure_compact_init(zone);
        let mut migrate_pfn = zone.zone_start_pfn();
        let mut free_pfn = zone.zone_end_pfn() - 1;
        let mut reset_migrate = free_pfn;
        let mut reset_free = migrate_pfn;
        let mut source_set = false;
        let mut free_set = false;
        while migrate_pfn < free_pfn {
            if self.__reset_isolation_pfn(zone, migrate_pfn, true, source_set)
                && migrate_pfn < reset_migrate
            {
                source_set = true;
                reset_migrate = migrate_pfn;
                c.init_migrate_pfn.store(reset_migrate, Ordering::Relaxed);
                c.cached_migrate_pfn[0].store(reset_migrate, Ordering::Relaxed);
                c.cached_migrate_pfn[1].store(reset_migrate, Ordering::Relaxed);
            }
            if self.__reset_isolation_pfn(zone, free_pfn, free_set, true) && free_pfn > reset_free {
                free_set = true;
                reset_free = free_pfn;
                c.init_free_pfn
                    .store(pageblock_start_pfn(reset_free).max(1), Ordering::Relaxed);
                c.cached_free_pfn
                    .store(pageblock_start_pfn(reset_free), Ordering::Relaxed);
            }
            migrate_pfn += PAGEBLOCK_NR_PAGES;
            free_pfn = free_pfn.saturating_sub(PAGEBLOCK_NR_PAGES);
        }
        if reset_migrate >= reset_free {
            c.cached_migrate_pfn[0].store(migrate_pfn, Ordering::Relaxed);
            c.cached_migrate_pfn[1].store(migrate_pfn, Ordering::Relaxed);
            c.cached_free_pfn
                .store(pageblock_start_pfn(free_pfn), Ordering::Relaxed);
        }
    }

    /// `reset_isolation_suitable`: the hints of every zone of node `nid` that a direct
    /// compaction went through completely.
    pub fn reset_isolation_suitable(&self, nid: usize) {
        let Some(node) = self.model().node(nid) else {
            return;
        };
        for zone in node.node_zones.iter().filter(|z| z.managed_zone()) {
            if zone.compact.blockskip_flush.load(Ordering::Relaxed) {
                self.__reset_isolation_suitable(zone);
            }
        }
    }

    /// Forget every compaction hint of node `nid`: clear all pageblock skip bits and put
    /// the cached scanner positions back at the zone ends, as on a freshly booted zone.
    /// Deferral state is kept. Linux has no single call for this (skip bits are cleared
    /// selectively when kswapd sleeps); tests use it so that one scenario does not inherit
    /// the hints another left behind.
    pub fn reset_compaction_hints(&self, nid: usize) {
        let Some(node) = self.model().node(nid) else {
            return;
        };
        let mem = self.model().sparse();
        for zone in node.node_zones.iter().filter(|z| z.managed_zone()) {
            self.ensure_compact_init(zone);
            let mut pfn = pageblock_start_pfn(zone.zone_start_pfn());
            while pfn < zone.zone_end_pfn() {
                let _ = crate::model::pageblock::clear_pageblock_skip(mem, pfn);
                pfn += PAGEBLOCK_NR_PAGES;
            }
            let c = &zone.compact;
            c.blockskip_flush.store(false, Ordering::Relaxed);
            c.cached_migrate_pfn[0].store(zone.zone_start_pfn(), Ordering::Relaxed);
            c.cached_migrate_pfn[1].store(zone.zone_start_pfn(), Ordering::Relaxed);
            c.cached_free_pfn.store(
                pageblock_start_pfn(zone.zone_end_pfn() - 1),
                Ordering::Relaxed,
            );
        }
    }

    /// `isolation_suitable`: may `pfn`'s pageblock be scanned?
    #[inline]
    pub(super) fn isolation_suitable(&self, cc: &CompactControl<'_>, pfn: u64) -> bool {
        cc.ignore_skip_hint || !get_pageblock_skip(self.model().sparse(), pfn).unwrap_or(false)
    }

    /// `test_and_set_skip`: claim `pfn`'s block for this compactor; true if another had
    /// already claimed (or given up on) it.
    pub(super) fn test_and_set_skip(&self, cc: &CompactControl<'_>, pfn: u64) -> bool {
        if cc.ignore_skip_hint {
            return false;
        }
        let mem = self.model().sparse();
        let skip = get_pageblock_skip(mem, pfn).unwrap_or(false);
        if !skip {
            let _ = set_pageblock_skip(mem, pfn);
        }
        skip
    }

    /// `update_cached_migrate`: the migration scanner is done below `pfn` (rounded up to a
    /// pageblock; Linux rounds a block end up to the *next* block's end, skipping one).
    pub(super) fn update_cached_migrate(&self, cc: &CompactControl<'_>, pfn: u64) {
        let pfn = (pfn + PAGEBLOCK_NR_PAGES - 1) & !(PAGEBLOCK_NR_PAGES - 1);
        let c = &cc.zone.compact;
        c.cached_migrate_pfn[0].fetch_max(pfn, Ordering::Relaxed);
        if cc.mode != MigrateMode::Async {
            c.cached_migrate_pfn[1].fetch_max(pfn, Ordering::Relaxed);
        }
    }

    /// `update_pageblock_skip`: the free scanner found nothing more in `block_pfn`'s block;
    /// a later run starts its free scanner no higher than `cached`.
    pub(super) fn update_pageblock_skip(&self, block_pfn: u64, cached: u64, zone: &Zone) {
        let _ = set_pageblock_skip(self.model().sparse(), block_pfn);
        zone.compact
            .cached_free_pfn
            .fetch_min(cached, Ordering::Relaxed);
    }

    // ---------------------------------------------------------------------------------
    // Page helpers.
    // ---------------------------------------------------------------------------------

    /// The page of `pfn` if it has a memmap and belongs to `zone`.
    #[inline]
    pub(super) fn page_in_zone(&self, zone: &Zone, pfn: u64) -> Option<&Page> {
        let page = self.pfn_to_page(pfn)?;
        (page.zone_idx() == zone.zone_type.index() && page.nid() == zone.nid).then_some(page)
    }

    /// `pageblock_pfn_to_page`: the first page of `[start, end)` if both ends lie in `zone`.
    pub(super) fn pageblock_pfn_to_page(&self, start: u64, end: u64, zone: &Zone) -> Option<&Page> {
        if end <= start {
            return None;
        }
        let page = self.page_in_zone(zone, start)?;
        self.page_in_zone(zone, end - 1)?;
        Some(page)
    }

    /// The order of the compound page headed by `head` at `pfn` (from its first tail).
    pub(super) fn compound_order_at(&self, pfn: u64) -> u32 {
        self.pfn_to_page(pfn + 1).map_or(0, |t| t.order_field())
    }

    /// `pageblock_skip_persistent`: a compound page of pageblock order or more starts here;
    /// its blocks hold no free pages and compacting it is pointless.
    pub(super) fn pageblock_skip_persistent(&self, page: &Page, pfn: u64) -> bool {
        page.is_head() && self.compound_order_at(pfn) >= PAGEBLOCK_ORDER
    }

    /// A descriptor from one of compaction's private lists.
    #[inline]
    pub(super) fn list_page(&self, p: NonNull<Page>) -> &Page {
        // SAFETY: compaction's lists only ever hold descriptors of this allocator's memmap,
        // which lives as long as `&self`.
        unsafe { &*p.as_ptr() }
    }

    /// Take the zone lock for a scanner (`compact_lock_irqsave`): async compaction notes
    /// contention (and stops at the next check) instead of waiting quietly.
    pub(super) fn compact_lock<'a>(
        &'a self,
        zone: &'a Zone,
        cc: &mut CompactControl<'_>,
    ) -> CompactLock<'a, P> {
        let irq = LocalIrqGuard::new(self.platform());
        let guard = if cc.mode == MigrateMode::Async && !cc.contended {
            match zone.lock.try_lock_irqs_off(self.platform()) {
                Some(g) => g,
                None => {
                    cc.contended = true;
                    zone.lock.lock_irqs_off(self.platform())
                }
            }
        } else {
            zone.lock.lock_irqs_off(self.platform())
        };
        CompactLock { guard, _irq: irq }
    }
}
