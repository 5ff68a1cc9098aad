//! The run: the two scanners move toward each other until they meet or the order is
//! satisfied (Linux: `compact_zone`, `compact_finished`).

#![deny(unsafe_code)]

use super::*;

/// Why a `migrate_pages` call did not move every page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MigrateFailure {
    /// `-ENOMEM`: the free scanner ran out of targets.
    NoTarget,
    /// Some pages failed and were put back.
    SomeFailed,
}

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // The run.
    // ---------------------------------------------------------------------------------

    /// `compact_scanners_met`.
    #[inline]
    pub(super) fn compact_scanners_met(cc: &CompactControl<'_>) -> bool {
        (cc.free_pfn >> PAGEBLOCK_ORDER) <= (cc.migrate_pfn >> PAGEBLOCK_ORDER)
    }

    /// Has this CPU's armed capture got its block?
    pub(super) fn capture_pending(&self) -> bool {
        let _irq = LocalIrqGuard::new(self.platform());
        self.capture_slots()
            .slot(self.platform().cpu_id())
            .is_some_and(|s| s.page_pfn.load(Ordering::Relaxed) != NO_CAPTURE)
    }

    /// `__compact_finished`: stop when the scanners met, when proactive compaction reached
    /// its low score, or (direct and daemon compaction, at a pageblock boundary so the
    /// current block is left as empty as possible) when a free block of the wanted order
    /// exists on a list the request may use, directly or through a claimable fallback.
    pub(super) fn compact_finished(&self, cc: &mut CompactControl<'_>) -> CompactResult {
        let zone = cc.zone;
        if Self::compact_scanners_met(cc) {
            self.reset_cached_positions(zone);
            if cc.direct_compaction {
                zone.compact.blockskip_flush.store(true, Ordering::Relaxed);
            }
            return if cc.whole_zone {
                CompactResult::Complete
            } else {
                CompactResult::PartialSkipped
            };
        }
        if cc.proactive_compaction {
            let score = fragmentation_score_zone(&self.zone_nr_free(zone));
            return if score > cc.proactive_wmark_low {
                if cc.contended {
                    CompactResult::Contended
                } else {
                    CompactResult::Continue
                }
            } else {
                CompactResult::Success
            };
        }
        if cc.is_via_compact_memory() {
            return CompactResult::Continue;
        }
        if !pageblock_aligned(cc.migrate_pfn) {
            return CompactResult::Continue;
        }
        let mt = cc.migratetype;
        for order in cc.order as u32..=MAX_PAGE_ORDER {
            if zone.has_free_block(order, mt) {
                return CompactResult::Success;
            }
            if mt == Migratetype::Movable && zone.has_free_block(order, Migratetype::Cma) {
                return CompactResult::Success;
            }
            if crate::page_alloc::buddy::should_try_claim_block(order, mt)
                && mt
                    .fallbacks()
                    .iter()
                    .any(|&fb| zone.has_free_block(order, fb))
            {
                return CompactResult::Success;
            }
        }
        if cc.contended {
            CompactResult::Contended
        } else {
            CompactResult::Continue
        }
    }

    /// `compact_zone`: one run of the two scanners over `cc.zone`. See the module
    /// documentation.
    pub(super) fn compact_zone(&self, cc: &mut CompactControl<'_>) -> CompactResult {
        debug_assert!(
            !self.platform().irqs_disabled(),
            "compaction with interrupts disabled"
        );
        let zone = cc.zone;
        let start_pfn = zone.zone_start_pfn();
        let end_pfn = zone.zone_end_pfn();
        let sync = cc.mode != MigrateMode::Async;
        if end_pfn <= start_pfn {
            return CompactResult::Skipped;
        }
        if !cc.is_via_compact_memory() {
            let order = cc.order as u32;
            let mark = zone.watermarks().wmark_pages(cc.alloc_flags.wmark());
            if zone_watermark_ok(
                &zone.free_state(),
                order,
                mark,
                cc.highest_zoneidx,
                cc.alloc_flags,
                |o, mt| zone.has_free_block(o, mt),
            ) {
                return CompactResult::Success;
            }
            if !self.compaction_suitable(zone, order, cc.highest_zoneidx, cc.extfrag_threshold) {
                return CompactResult::Skipped;
            }
        }
        self.ensure_compact_init(zone);
        if self.compaction_restarting(zone, cc.order) {
            self.__reset_isolation_suitable(zone);
        }

        let c = &zone.compact;
        cc.fast_start_pfn = 0;
        if cc.whole_zone {
            cc.migrate_pfn = start_pfn;
            cc.free_pfn = pageblock_start_pfn(end_pfn - 1);
        } else {
            cc.migrate_pfn = c.cached_migrate_pfn[sync as usize].load(Ordering::Relaxed);
            cc.free_pfn = c.cached_free_pfn.load(Ordering::Relaxed);
            if cc.free_pfn < start_pfn || cc.free_pfn >= end_pfn {
                cc.free_pfn = pageblock_start_pfn(end_pfn - 1);
                c.cached_free_pfn.store(cc.free_pfn, Ordering::Relaxed);
            }
            if cc.migrate_pfn < start_pfn || cc.migrate_pfn >= end_pfn {
                cc.migrate_pfn = start_pfn;
                c.cached_migrate_pfn[0].store(start_pfn, Ordering::Relaxed);
                c.cached_migrate_pfn[1].store(start_pfn, Ordering::Relaxed);
            }
            if cc.migrate_pfn <= c.init_migrate_pfn.load(Ordering::Relaxed) {
                cc.whole_zone = true;
            }
        }
        let mut last_migrated_pfn = 0u64;
        // Until a block with candidates is found, keep the async and sync positions
        // together so neither rescans blocks the other found empty.
        let mut update_cached = !sync
            && c.cached_migrate_pfn[0].load(Ordering::Relaxed)
                == c.cached_migrate_pfn[1].load(Ordering::Relaxed);
        // Manual and proactive runs have no order; they drain freed pages per pageblock.
        let drain_order = if cc.order > 0 {
            cc.order as u32
        } else {
            PAGEBLOCK_ORDER
        };
        let capturing = cc.direct_compaction;

        let mut ret;
        'run: loop {
            ret = self.compact_finished(cc);
            if ret != CompactResult::Continue {
                break;
            }
            if capturing && self.capture_pending() {
                ret = CompactResult::Success;
                break;
            }
            let iteration_start_pfn = cc.migrate_pfn;
            // A second pass over the same block in a row must finish it (and mark it).
            cc.finish_pageblock =
                pageblock_start_pfn(last_migrated_pfn) == pageblock_start_pfn(iteration_start_pfn);
            'rescan: loop {
                match self.isolate_migratepages(cc) {
                    IsolateMigrate::None => {
                        if update_cached {
                            let v = c.cached_migrate_pfn[0].load(Ordering::Relaxed);
                            c.cached_migrate_pfn[1].store(v, Ordering::Relaxed);
                        }
                        break 'rescan;
                    }
                    IsolateMigrate::Success => {
                        update_cached = false;
                        last_migrated_pfn =
                            start_pfn.max(pageblock_start_pfn(cc.migrate_pfn.saturating_sub(1)));
                    }
                }
                let nr = cc.nr_migratepages;
                let err = self.compact_migrate(cc);
                cc.nr_migratepages = 0;
                let migrated = cc.targets_taken - cc.targets_returned;
                cc.stats.migrated += migrated;
                cc.stats.failed += nr.saturating_sub(migrated);
                if let Some(e) = err {
                    if e == MigrateFailure::NoTarget && !Self::compact_scanners_met(cc) {
                        ret = CompactResult::Contended;
                        break 'run;
                    }
                    // Some pages of this block failed: finish scanning the block so it is
                    // marked and not picked again by the fast search soon.
                    if !pageblock_aligned(cc.migrate_pfn)
                        && !cc.ignore_skip_hint
                        && !cc.finish_pageblock
                        && cc.mode != MigrateMode::Sync
                    {
                        cc.finish_pageblock = true;
                        if cc.order == PAGEBLOCK_ORDER as i32 {
                            last_migrated_pfn = 0;
                        }
                        continue 'rescan;
                    }
                }
                if capturing && self.capture_pending() {
                    ret = CompactResult::Success;
                    break 'run;
                }
                break 'rescan;
            }
            // `check_drain`: once the scanner left the block it migrated from, push this
            // CPU's freed pages to the buddy lists so they merge (and may be captured).
            if last_migrated_pfn != 0 {
                let current_block_start = cc.migrate_pfn & !((1u64 << drain_order) - 1);
                if last_migrated_pfn < current_block_start {
                    self.drain_local_pages();
                    last_migrated_pfn = 0;
                }
            }
        }

        // Give back unused targets and let the next run's free scanner start no lower than
        // the highest one (the cached pfn may already have been reset to the zone's end).
        if cc.nr_freepages != 0 || !cc.freepages.is_empty() {
            let high = self.release_freepages(cc);
            if high != 0 {
                c.cached_free_pfn
                    .fetch_max(pageblock_start_pfn(high), Ordering::Relaxed);
            }
        }
        if !cc.migratepages.is_empty() {
            self.putback_movable_pages(&mut cc.migratepages);
            cc.nr_migratepages = 0;
        }
        cc.stats.migrate_scanned += cc.total_migrate_scanned;
        cc.stats.free_scanned += cc.total_free_scanned;
        self.count_vm_events(VmEvent::CompactMigrateScanned, cc.total_migrate_scanned);
        self.count_vm_events(VmEvent::CompactFreeScanned, cc.total_free_scanned);
        ret
    }

    /// Migrate `cc.migratepages` with compaction's target callbacks. Returns why not every
    /// page moved, if that is so; the source list is empty on return either way.
    pub(super) fn compact_migrate(&self, cc: &mut CompactControl<'_>) -> Option<MigrateFailure> {
        let mut sources = core::mem::take(&mut cc.migratepages);
        let mode = cc.mode;
        cc.targets_taken = 0;
        cc.targets_returned = 0;
        let result = {
            let cell = RefCell::new(&mut *cc);
            let mut get_new = |_src: &Page| -> Option<&Page> {
                let mut c = cell.borrow_mut();
                self.compaction_alloc(&mut c)
            };
            let mut put_new = |p: &Page| {
                let mut c = cell.borrow_mut();
                self.compaction_free(&mut c, p);
            };
            self.migrate_pages(
                &mut sources,
                &mut get_new,
                &mut put_new,
                mode,
                MigrateReason::Compaction,
            )
        };
        if !sources.is_empty() {
            self.putback_movable_pages(&mut sources);
        }
        match result {
            Ok(0) => None,
            Ok(_) => Some(MigrateFailure::SomeFailed),
            Err(crate::movement::migrate::MigrateError::NoMemory) => Some(MigrateFailure::NoTarget),
            Err(_) => Some(MigrateFailure::SomeFailed),
        }
    }
}
