//! Allocation's slow path: wake kcompactd, retry with the reserves the GFP flags earn,
//! compact directly, drain per-CPU lists, give up with a warning (Linux:
//! `__alloc_pages_slowpath`).

#![deny(unsafe_code)]

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Allocation: the slow path.
    // ---------------------------------------------------------------------------------

    /// The slow path (`__alloc_pages_slowpath`): wake kcompactd for high orders, retry at
    /// the min watermark with the reserves the request earns, try async compaction first
    /// for costly orders, then loop over "reclaim" (drain the pcp lists) and direct
    /// compaction at rising priority while retrying looks worthwhile, release the
    /// highatomic reserve, then give up with a report.
    #[cold]
    #[inline(never)]
    pub(super) fn __alloc_pages_slowpath(
        &self,
        gfp: Gfp,
        order: u32,
        ac: AllocContext,
    ) -> Result<&Page, AllocError> {
        let can_direct_reclaim = gfp.contains(Gfp::DIRECT_RECLAIM);
        let costly_order = order > PAGE_ALLOC_COSTLY_ORDER;
        let mut alloc_flags = gfp_to_alloc_flags(gfp, order);
        let mut ac = ac;
        let mut compact_result = CompactResult::Skipped;
        let mut compact_priority = CompactPriority::DEF;
        let mut compaction_retries = 0u32;

        if ac.preferred.is_some() {
            // Wake kswapd, which wakes kcompactd when it is done (on a port without
            // kswapd, kcompactd is woken directly for high orders).
            if alloc_flags.contains(AllocFlags::KSWAPD) {
                self.wake_all_kswapds(gfp, order, &ac);
            }
            if let Some(p) = self.get_page_from_freelist(gfp, order, alloc_flags, &ac) {
                return Ok(p);
            }

            // Costly orders, and high orders that would fragment, try compaction before
            // reclaim, optimistically (async).
            if can_direct_reclaim
                && (costly_order || (order > 0 && ac.migratetype != Migratetype::Movable))
                && gfp_pfmemalloc_flags(gfp).is_empty()
            {
                if let Some(p) = self.__alloc_pages_direct_compact(
                    gfp,
                    order,
                    alloc_flags,
                    &ac,
                    CompactPriority::INIT,
                    &mut compact_result,
                ) {
                    return Ok(p);
                }
                if costly_order && gfp.contains(Gfp::NORETRY) {
                    // Compaction was refused for lack of memory or recently failed here:
                    // a caller that asked not to retry gets no more effort.
                    if matches!(
                        compact_result,
                        CompactResult::Skipped | CompactResult::Deferred
                    ) {
                        return self.nopage(gfp, order, &ac);
                    }
                    compact_priority = CompactPriority::INIT;
                }
            }

            let reserve_flags = gfp_pfmemalloc_flags(gfp);
            if !reserve_flags.is_empty() {
                alloc_flags =
                    gfp_to_alloc_flags_cma(gfp, reserve_flags) | (alloc_flags & AllocFlags::KSWAPD);
                // Any node will do for a request allowed to use the reserves.
                ac.thisnode = false;
            }

            let mut no_progress_loops = 0;
            loop {
                // Linux wakes kswapd again on every retry, so it does not go to sleep
                // while we struggle.
                if alloc_flags.contains(AllocFlags::KSWAPD) && self.platform().has_kswapd() {
                    self.wake_all_kswapds(gfp, order, &ac);
                }
                if let Some(p) = self.get_page_from_freelist(gfp, order, alloc_flags, &ac) {
                    return Ok(p);
                }
                if !can_direct_reclaim {
                    break;
                }
                let (page, progress) =
                    self.__alloc_pages_direct_reclaim(gfp, order, alloc_flags, &ac);
                if let Some(p) = page {
                    return Ok(p);
                }
                if let Some(p) = self.__alloc_pages_direct_compact(
                    gfp,
                    order,
                    alloc_flags,
                    &ac,
                    compact_priority,
                    &mut compact_result,
                ) {
                    return Ok(p);
                }
                if gfp.contains(Gfp::NORETRY) {
                    break;
                }
                if costly_order && !gfp.contains(Gfp::RETRY_MAYFAIL) {
                    break;
                }
                if self.should_reclaim_retry(
                    order,
                    &ac,
                    alloc_flags,
                    progress,
                    &mut no_progress_loops,
                ) {
                    continue;
                }
                // Linux retries compaction only after reclaim made progress; the only
                // reclaim here is the pcp drain, so compaction's own verdict decides.
                if self.should_compact_retry(
                    order,
                    compact_result,
                    &mut compact_priority,
                    &mut compaction_retries,
                ) {
                    continue;
                }
                // Where Linux would invoke the OOM killer, first exhaust the highatomic
                // reserve: failing now is worse than failing a high-order atomic
                // allocation later.
                if self.unreserve_highatomic_pageblock(&ac, true) {
                    continue;
                }
                break;
            }

            if gfp.contains(Gfp::NOFAIL) {
                // Help a non-failing request with part of the min reserve, and retry
                // while something may still come free.
                let nofail_flags = alloc_flags | AllocFlags::MIN_RESERVE;
                for _ in 0..NOFAIL_RETRIES {
                    if let Some(p) = self.get_page_from_freelist(gfp, order, nofail_flags, &ac) {
                        return Ok(p);
                    }
                    self.drain_all_pages();
                    core::hint::spin_loop();
                }
                log::error!(
                    "__GFP_NOFAIL allocation failed: order:{order}, mode:{:#x}({gfp}): no memory left and nothing to reclaim",
                    gfp.bits()
                );
            }
        }
        self.nopage(gfp, order, &ac)
    }

    /// The end of a failed allocation: report (unless `__GFP_NOWARN`) and count.
    #[cold]
    pub(super) fn nopage(
        &self,
        gfp: Gfp,
        order: u32,
        ac: &AllocContext,
    ) -> Result<&Page, AllocError> {
        if !gfp.contains(Gfp::NOWARN) {
            self.warn_alloc(gfp, order, ac);
        }
        self.count_vm_events(VmEvent::PgallocFail, 1);
        Err(AllocError::NoMemory)
    }

    /// Wake the kswapd of every node the request may use, once per node
    /// (`wake_all_kswapds`; on a port without kswapd, the kcompactds for high orders).
    pub(super) fn wake_all_kswapds(&self, gfp: Gfp, order: u32, ac: &AllocContext) {
        let mut woken = 0u64;
        for zr in self.zonelist(ac) {
            let nid = zr.nid as usize;
            if woken & (1 << nid) == 0 {
                woken |= 1 << nid;
                self.wakeup_kswapd(nid, gfp, order, ac.highest_zoneidx.index());
            }
        }
    }

    /// Direct reclaim (`__alloc_pages_direct_reclaim`): reclaim, then retry; if that
    /// fails, release the highatomic reserve and drain the pcp lists once more and retry.
    /// Returns the page, if any, and whether reclaim made progress.
    pub(super) fn __alloc_pages_direct_reclaim(
        &self,
        gfp: Gfp,
        order: u32,
        alloc_flags: AllocFlags,
        ac: &AllocContext,
    ) -> (Option<&Page>, bool) {
        let progress = self.__perform_reclaim(gfp, order, ac);
        if progress == 0 {
            return (None, false);
        }
        if let Some(p) = self.get_page_from_freelist(gfp, order, alloc_flags, ac) {
            return (Some(p), true);
        }
        self.unreserve_highatomic_pageblock(ac, false);
        self.drain_all_pages();
        (
            self.get_page_from_freelist(gfp, order, alloc_flags, ac),
            true,
        )
    }

    /// Reclaim on behalf of an allocation (`__perform_reclaim`): counts an allocation
    /// stall, shrinks the LRU lists and shrinkers of the zonelist's nodes
    /// ([`PageAllocator::try_to_free_pages`]) and returns the pages freed.
    ///
    /// The pages parked on the CPUs' pcp lists are drained too and count as progress:
    /// memory given back by a drain is as good as memory reclaimed for a request that
    /// failed on watermarks (Linux drains only after a reclaim that freed something).
    pub(crate) fn __perform_reclaim(&self, gfp: Gfp, order: u32, ac: &AllocContext) -> u64 {
        self.count_vm_events(VmEvent::allocstall(ac.highest_zoneidx), 1);
        let reclaimed = self.try_to_free_pages(gfp, order, ac.nid, ac.highest_zoneidx.index());
        reclaimed + self.drain_all_pages()
    }

    /// Direct compaction (`__alloc_pages_direct_compact`): compact the zonelist at `prio`
    /// for `order` ([`crate::movement::compaction`]), then take the block a capture handed over or
    /// retry the free lists. Counts `compact_stall` for every run that was not skipped,
    /// then `compact_success` or `compact_fail`; a success clears the zone's deferral.
    pub(crate) fn __alloc_pages_direct_compact(
        &self,
        gfp: Gfp,
        order: u32,
        alloc_flags: AllocFlags,
        ac: &AllocContext,
        prio: CompactPriority,
        compact_result: &mut CompactResult,
    ) -> Option<&Page> {
        if order == 0 {
            return None;
        }
        if self.platform().irqs_disabled() {
            // Migration shoots down TLBs, which needs the other CPUs to answer while this
            // one waits with interrupts enabled. A caller that may sleep but runs with
            // interrupts off (a gfp bug) gets no compaction rather than a deadlock.
            *compact_result = CompactResult::Skipped;
            log::warn!(
                "direct compaction skipped: order-{order} {gfp:?} request with interrupts disabled"
            );
            return None;
        }
        let (result, captured) = self.try_to_compact_pages(gfp, order, alloc_flags, ac, prio);
        *compact_result = result;
        if result == CompactResult::Skipped && captured.is_none() {
            return None;
        }
        self.count_vm_events(VmEvent::CompactStall, 1);
        let mut page = None;
        if let Some(p) = captured {
            // The captured block left the free lists in the free path: prepare it like
            // any block taken from them.
            if self.check_new_pages(p, order) {
                self.prep_new_page(p, order, gfp);
                if let Some(zt) = p.zone_type() {
                    self.count_vm_events(VmEvent::pgalloc(zt), 1 << order);
                    if let Some(zr) = self.zone_ref(p.nid(), zt.index()) {
                        self.zone_statistics(ac.nid, zr, 1 << order);
                    }
                }
                page = Some(p);
            }
        }
        let page = page.or_else(|| self.get_page_from_freelist(gfp, order, alloc_flags, ac));
        match page {
            Some(p) => {
                self.compaction_success(p, order);
                self.count_vm_events(VmEvent::CompactSuccess, 1);
                Some(p)
            }
            None => {
                self.count_vm_events(VmEvent::CompactFail, 1);
                None
            }
        }
    }

    /// Is another reclaim round worth it (`should_reclaim_retry`)? Only while some zone
    /// could pass its min watermark with the free pages it has plus the pages reclaim could
    /// still free there (`zone_reclaimable_pages`), less a share that grows with every
    /// round without progress, and not after
    /// [`MAX_RECLAIM_RETRIES`] rounds without progress; before giving up for good the
    /// highatomic reserve is released (and a release earns one more round).
    pub(super) fn should_reclaim_retry(
        &self,
        order: u32,
        ac: &AllocContext,
        alloc_flags: AllocFlags,
        did_some_progress: bool,
        no_progress_loops: &mut u32,
    ) -> bool {
        if did_some_progress && order <= PAGE_ALLOC_COSTLY_ORDER {
            *no_progress_loops = 0;
        } else {
            *no_progress_loops += 1;
        }
        if *no_progress_loops > MAX_RECLAIM_RETRIES {
            return self.unreserve_highatomic_pageblock(ac, true);
        }
        // Free plus reclaimable, the reclaimable part discounted by the rounds that made no
        // progress (pcp pages were just drained, so they are not counted). With nothing
        // reclaimable the free pages alone decide: another CPU may have freed some.
        let loops = *no_progress_loops as u64;
        self.zonelist(ac).any(|zr| {
            let z = self.zone(zr);
            let mut state = z.free_state();
            let zt = ZoneType::from_index(zr.zone_idx as usize).unwrap_or(ZoneType::Normal);
            let reclaimable = self.zone_reclaimable_pages(zr.nid as usize, zt);
            if reclaimable != 0 {
                let available = state.free_pages + reclaimable;
                state.free_pages =
                    available - (loops * available).div_ceil(MAX_RECLAIM_RETRIES as u64);
            }
            zone_watermark_ok(
                &state,
                order,
                z.watermarks().min_wmark_pages(),
                ac.highest_zoneidx,
                alloc_flags,
                |o, mt| z.has_free_block(o, mt),
            )
        })
    }

    /// The allocation-failure report (`warn_alloc` + `show_free_areas`).
    #[cold]
    pub(super) fn warn_alloc(&self, gfp: Gfp, order: u32, ac: &AllocContext) {
        let Some(suppressed) = self.warn_limit.allow() else {
            return;
        };
        if suppressed != 0 {
            log::warn!("warn_alloc: {suppressed} callbacks suppressed");
        }
        log::warn!(
            "page allocation failure: order:{order}, mode:{:#x}({gfp}), nodemask=(null)",
            gfp.bits()
        );
        self.show_free_areas(ac.highest_zoneidx);
    }
}
