//! Direct compaction from the allocation slow path, with capture and escalating priority
//! (Linux: `try_to_compact_pages`, `compact_zone_order`), and the per-node rounds
//! kcompactd runs.

#![deny(unsafe_code)]

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Direct compaction.
    // ---------------------------------------------------------------------------------

    /// `compact_zone_order`: one direct compaction of `zone` for the allocation, with this
    /// CPU's capture armed for the run. Returns the result and the captured block, if any.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn compact_zone_order(
        &self,
        zone: &Zone,
        order: u32,
        gfp: Gfp,
        prio: CompactPriority,
        alloc_flags: AllocFlags,
        highest_zoneidx: ZoneType,
        s: &VmSysctl,
    ) -> (CompactResult, Option<&Page>) {
        let mut cc = CompactControl::new(zone, order as i32, gfp, prio.migrate_mode(), s);
        cc.alloc_flags = alloc_flags;
        cc.highest_zoneidx = highest_zoneidx;
        cc.direct_compaction = true;
        cc.whole_zone = prio == CompactPriority::MIN;
        cc.ignore_skip_hint = prio == CompactPriority::MIN;
        cc.ignore_block_suitable = prio == CompactPriority::MIN;
        let slots = self.capture_slots();
        {
            let _irq = LocalIrqGuard::new(self.platform());
            if let Some(slot) = slots.slot(self.platform().cpu_id()) {
                slot.order.store(order, Ordering::Relaxed);
                slot.migratetype
                    .store(cc.migratetype as u8, Ordering::Relaxed);
                slot.page_pfn.store(NO_CAPTURE, Ordering::Relaxed);
                slot.zone
                    .store(zone as *const Zone as usize, Ordering::Release);
                slots.nr_armed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut ret = self.compact_zone(&mut cc);
        let captured = {
            // Disarm before reading, with interrupts off, so a free in an interrupt
            // handler cannot capture a block nobody would collect.
            let _irq = LocalIrqGuard::new(self.platform());
            match slots.slot(self.platform().cpu_id()) {
                Some(slot) => {
                    slot.zone.store(0, Ordering::Release);
                    slots.nr_armed.fetch_sub(1, Ordering::Relaxed);
                    slot.page_pfn.swap(NO_CAPTURE, Ordering::Relaxed)
                }
                None => NO_CAPTURE,
            }
        };
        let page = if captured != NO_CAPTURE {
            self.pfn_to_page(captured)
        } else {
            None
        };
        if page.is_some() {
            ret = CompactResult::Success;
            self.count_vm_events(VmEvent::CompactCapture, 1u64 << order);
        }
        (ret, page)
    }

    /// `try_to_compact_pages`: direct compaction over the request's zonelist, skipping
    /// deferred zones (except at full priority), stopping at the first zone where the
    /// allocation should now succeed. A failed synchronous run that covered its zone
    /// defers the zone. Returns the overall result and a captured block, unprepared.
    pub(crate) fn try_to_compact_pages(
        &self,
        gfp: Gfp,
        order: u32,
        alloc_flags: AllocFlags,
        ac: &AllocContext,
        prio: CompactPriority,
    ) -> (CompactResult, Option<&Page>) {
        // Migration may need I/O in Linux; GFP_NOIO callers are refused the same way.
        if !gfp.contains(Gfp::IO) || order == 0 {
            return (CompactResult::Skipped, None);
        }
        let s = self.sysctl();
        let mut rc = CompactResult::Skipped;
        for zr in self.zonelist(ac) {
            let zone = self.zone(zr);
            if prio > CompactPriority::MIN && self.compaction_deferred(zone, order) {
                rc = rc.max(CompactResult::Deferred);
                self.count_vm_events(VmEvent::CompactDeferred, 1);
                continue;
            }
            let (status, page) = self.compact_zone_order(
                zone,
                order,
                gfp,
                prio,
                alloc_flags,
                ac.highest_zoneidx,
                &s,
            );
            rc = rc.max(status);
            if page.is_some() {
                self.compaction_defer_reset(zone, order, false);
                return (CompactResult::Success, page);
            }
            if status == CompactResult::Success {
                // Probably good now; the caller confirms with a real allocation.
                self.compaction_defer_reset(zone, order, false);
                break;
            }
            if prio != CompactPriority::Async
                && matches!(
                    status,
                    CompactResult::Complete | CompactResult::PartialSkipped
                )
            {
                self.defer_compaction(zone, order);
            }
        }
        (rc, None)
    }

    /// `should_compact_retry`: after a failed direct compaction in the slow path, is
    /// another round worth it? Rounds that made progress are retried up to
    /// [`MAX_COMPACT_RETRIES`] times (a quarter for costly orders); runs that failed or
    /// backed off raise the priority instead, down to [`CompactPriority::MIN_COSTLY`] for
    /// costly orders and [`CompactPriority::MIN`] otherwise. Skipped runs (too little free
    /// memory) are not retried: this kernel has no reclaim that could make room.
    pub(crate) fn should_compact_retry(
        &self,
        order: u32,
        result: CompactResult,
        priority: &mut CompactPriority,
        retries: &mut u32,
    ) -> bool {
        if order == 0 {
            return false;
        }
        if result == CompactResult::Success {
            *retries += 1;
        }
        match result {
            CompactResult::Skipped | CompactResult::NotSuitableZone => return false,
            CompactResult::Complete
            | CompactResult::Deferred
            | CompactResult::Contended
            | CompactResult::PartialSkipped => {}
            CompactResult::Continue | CompactResult::Success => {
                let max = if order > PAGE_ALLOC_COSTLY_ORDER {
                    MAX_COMPACT_RETRIES / 4
                } else {
                    MAX_COMPACT_RETRIES
                };
                if *retries <= max {
                    return true;
                }
            }
        }
        let min = if order > PAGE_ALLOC_COSTLY_ORDER {
            CompactPriority::MIN_COSTLY
        } else {
            CompactPriority::MIN
        };
        if *priority > min
            && let Some(h) = priority.harder()
        {
            *priority = h;
            *retries = 0;
            return true;
        }
        false
    }

    /// Record a finished direct compaction that produced the allocation (`page`'s zone):
    /// the skip hints stay, the deferral is cleared.
    pub(crate) fn compaction_success(&self, page: &Page, order: u32) {
        if let Some(zone) = page.zone_type().and_then(|zt| self.zone_of(page.nid(), zt)) {
            zone.compact.blockskip_flush.store(false, Ordering::Relaxed);
            self.compaction_defer_reset(zone, order, true);
        }
    }

    /// Is compacting some zone of node `nid` up to `highest_zoneidx` for `order` worth
    /// waking kcompactd for (`kcompactd_node_suitable`)?
    pub(crate) fn kcompactd_node_suitable(
        &self,
        nid: usize,
        order: u32,
        highest_zoneidx: usize,
    ) -> bool {
        let Some(node) = self.model().node(nid) else {
            return false;
        };
        let threshold = self.sysctl().extfrag_threshold as i32;
        let highest = ZoneType::from_index(highest_zoneidx.min(MAX_NR_ZONES - 1))
            .unwrap_or(ZoneType::Movable);
        node.node_zones
            .iter()
            .take(highest.index() + 1)
            .filter(|z| z.managed_zone())
            .any(|z| {
                let ok = zone_watermark_ok(
                    &z.free_state(),
                    order,
                    z.watermarks().min_wmark_pages(),
                    highest,
                    AllocFlags::empty(),
                    |o, mt| z.has_free_block(o, mt),
                );
                !ok && self.compaction_suitable(z, order, highest, threshold)
            })
    }

    /// Compact zone `zone` for kcompactd: `order` (or -1 with `proactive`) at SYNC_LIGHT.
    pub(crate) fn kcompactd_compact_zone(
        &self,
        zone: &Zone,
        order: i32,
        highest_zoneidx: ZoneType,
        proactive: bool,
    ) -> (CompactResult, CompactStats) {
        let s = self.sysctl();
        let mut cc = CompactControl::new(zone, order, GFP_KERNEL, MigrateMode::SyncLight, &s);
        cc.highest_zoneidx = highest_zoneidx;
        if proactive {
            cc.proactive_compaction = true;
            cc.ignore_skip_hint = true;
            cc.whole_zone = true;
        }
        let r = self.compact_zone(&mut cc);
        self.count_vm_events(
            VmEvent::CompactDaemonMigrateScanned,
            cc.total_migrate_scanned,
        );
        self.count_vm_events(VmEvent::CompactDaemonFreeScanned, cc.total_free_scanned);
        (r, cc.stats)
    }
}
