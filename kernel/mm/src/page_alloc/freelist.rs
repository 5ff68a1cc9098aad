//! Allocation's first attempt: walk the zonelist, check each zone's watermark and take a
//! block from its per-CPU list or its buddy lists (Linux: `get_page_from_freelist`,
//! `rmqueue`, `rmqueue_pcplist`, `rmqueue_buddy`, `prep_new_page`).

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Allocation: the fast path.
    // ---------------------------------------------------------------------------------

    /// Allocate `2^order` pages (`alloc_pages`). `None` when no memory can be found or the
    /// request is invalid; both are warned about (unless `__GFP_NOWARN` for the former)
    /// and counted.
    #[inline]
    pub fn alloc_pages(&self, gfp: Gfp, order: u32) -> Option<&Page> {
        self.try_alloc_pages(gfp, order).ok()
    }

    /// Allocate one page (`alloc_page`).
    #[inline]
    pub fn alloc_page(&self, gfp: Gfp) -> Option<&Page> {
        self.alloc_pages(gfp, 0)
    }

    /// [`PageAllocator::alloc_pages`] with the reason for a failure.
    #[inline]
    pub fn try_alloc_pages(&self, gfp: Gfp, order: u32) -> Result<&Page, AllocError> {
        self.__alloc_pages(gfp, order, self.numa_node_id())
    }

    /// Allocate preferring node `nid` (`alloc_pages_node`); with `__GFP_THISNODE` only
    /// from that node. An offline node means the local one.
    pub fn alloc_pages_node(&self, nid: usize, gfp: Gfp, order: u32) -> Option<&Page> {
        let nid = if self.node_online(nid) {
            nid
        } else {
            self.numa_node_id()
        };
        self.__alloc_pages(gfp, order, nid).ok()
    }

    /// Allocate `2^order` pages and return their direct-map address (`__get_free_pages`).
    pub fn get_free_pages(&self, gfp: Gfp, order: u32) -> Option<u64> {
        let page = self.alloc_pages(gfp.difference(Gfp::HIGHMEM), order)?;
        Some(self.page_address(page))
    }

    /// Allocate one zeroed page and return its direct-map address (`get_zeroed_page`).
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Option<u64> {
        self.get_free_pages(gfp | Gfp::ZERO, 0)
    }

    /// The heart of the allocator (`__alloc_pages`).
    #[inline]
    pub(super) fn __alloc_pages(
        &self,
        gfp: Gfp,
        order: u32,
        preferred_nid: usize,
    ) -> Result<&Page, AllocError> {
        // Fault injection off: one relaxed load and a branch in front of the fast path.
        // On, a request is first validated (an invalid one is refused as such, never
        // counted as injected), then possibly failed, then served as usual.
        if self.fail.armed() {
            if let Err(e) = validate(gfp, order) {
                return Err(self.refuse(gfp, order, e));
            }
            if self.fail.should_fail_alloc_page(gfp, order) {
                return Err(self.fail_injected(gfp, order));
            }
        }
        if let Some(page) = self.alloc_pages_fast(gfp, order, preferred_nid) {
            return Ok(page);
        }
        let placement = match validate(gfp, order) {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(gfp, order, e)),
        };
        let ac = self.alloc_context(gfp, placement, preferred_nid);
        let alloc_flags = self.first_attempt_alloc_flags(gfp, &ac);
        if let Some(page) = self.get_page_from_freelist(gfp, order, alloc_flags, &ac) {
            return Ok(page);
        }
        self.__alloc_pages_slowpath(gfp, order, ac)
    }

    /// The `ALLOC_*` flags of the first, fast attempt (`__alloc_pages`): the low mark,
    /// `ALLOC_CMA` for movable requests, and `ALLOC_NOFRAGMENT` (with `ALLOC_KSWAPD` when
    /// the gfp allows waking it) where it pays.
    #[inline]
    pub(super) fn first_attempt_alloc_flags(&self, gfp: Gfp, ac: &AllocContext) -> AllocFlags {
        let mut alloc_flags = gfp_to_alloc_flags_cma(gfp, AllocFlags::WMARK_LOW);
        if let Some(pref) = ac.preferred {
            let pref_type =
                ZoneType::from_index(pref.zone_idx as usize).unwrap_or(ZoneType::Normal);
            alloc_flags |= alloc_flags_nofragment(
                gfp,
                pref_type,
                self.model
                    .zone(pref.nid as usize, ZoneType::Dma32)
                    .is_some_and(|z| z.populated()),
                self.nr_online_nodes,
            );
        }
        alloc_flags
    }

    /// The fault-injection settings and state ([`crate::page_alloc::fail`]): set them
    /// through this (the kernel's tunables and command line do).
    pub fn fail_page_alloc(&self) -> &crate::page_alloc::fail::FailPageAlloc {
        &self.fail
    }

    /// Report (rate-limited on its own budget, unless `__GFP_NOWARN`) and count a failure
    /// injected by
    /// [`crate::page_alloc::fail`]: `pgalloc_fail_injected` and `pgalloc_fail`.
    #[cold]
    #[inline(never)]
    pub(crate) fn fail_injected(&self, gfp: Gfp, order: u32) -> AllocError {
        if !gfp.contains(Gfp::NOWARN)
            && let Some(suppressed) = self.fail.report_limit.allow()
        {
            let a = self.fail.attrs();
            log::warn!(
                "FAULT_INJECTION: forcing a failure: fail_page_alloc order:{order}, mode:{:#x}({gfp}); interval {}, probability {}, space {}, times {}{}",
                gfp.bits(),
                a.interval,
                a.probability,
                a.space,
                a.times,
                if suppressed != 0 {
                    " (earlier reports suppressed)"
                } else {
                    ""
                },
            );
        }
        self.count_vm_events(VmEvent::PgallocFailInjected, 1);
        self.count_vm_events(VmEvent::PgallocFail, 1);
        AllocError::NoMemory
    }

    /// Report and count an impossible request.
    #[cold]
    #[inline(never)]
    pub(super) fn refuse(&self, gfp: Gfp, order: u32, e: GfpError) -> AllocError {
        if self.warn_limit.allow().is_some() {
            log::warn!(
                "page allocation refused: order:{order}, mode:{:#x}({gfp}): {e}",
                gfp.bits()
            );
        }
        self.count_vm_events(VmEvent::PgallocInvalid, 1);
        AllocError::Invalid(e)
    }

    /// The allocation context of a validated request.
    #[inline]
    pub(super) fn alloc_context(
        &self,
        gfp: Gfp,
        placement: crate::page_alloc::gfp::GfpPlacement,
        nid: usize,
    ) -> AllocContext {
        let nid = nid.min(MAX_NUMNODES - 1);
        let thisnode = gfp.contains(Gfp::THISNODE);
        let zl = self.node_zonelist(nid, placement.highest_zoneidx.index());
        let first = if thisnode {
            zl.iter()
                .copied()
                .find(|&i| i as usize / MAX_NR_ZONES == nid)
        } else {
            zl.first().copied()
        };
        AllocContext {
            nid,
            highest_zoneidx: placement.highest_zoneidx,
            migratetype: placement.migratetype,
            preferred: first.map(|i| PreferredZone {
                nid: i / MAX_NR_ZONES as u8,
                zone_idx: i % MAX_NR_ZONES as u8,
            }),
            thisnode,
        }
    }

    /// Validate the request and resolve it (`prepare_alloc_pages`).
    pub(crate) fn prepare_alloc_pages(
        &self,
        gfp: Gfp,
        order: u32,
        preferred_nid: usize,
        alloc_flags: &mut AllocFlags,
    ) -> Result<AllocContext, GfpError> {
        let placement = validate(gfp, order)?;
        *alloc_flags = gfp_to_alloc_flags_cma(gfp, *alloc_flags);
        Ok(self.alloc_context(gfp, placement, preferred_nid))
    }

    /// The zones `ac` may use, in zonelist order (`for_each_zone_zonelist`).
    #[inline]
    pub(crate) fn zonelist(&self, ac: &AllocContext) -> impl Iterator<Item = ZoneRef> + '_ {
        let zl = self.node_zonelist(ac.nid, ac.highest_zoneidx.index());
        let thisnode = ac.thisnode;
        let nid = ac.nid as u8;
        zl.iter()
            .filter_map(|&i| self.zonelist_zone(i))
            .filter(move |zr| !thisnode || zr.nid == nid)
    }

    /// The watermark check of the fast path (`zone_watermark_fast`).
    #[inline]
    pub(super) fn zone_watermark_fast(
        &self,
        zone: &Zone,
        order: u32,
        highest: ZoneType,
        alloc_flags: AllocFlags,
    ) -> bool {
        // The cheap comparison that passes most requests, reading only the counters it
        // needs (`watermark::zone_watermark_fast` starts with it at order 0).
        if zone_watermark_quick(zone, order, highest.index(), alloc_flags) {
            return true;
        }
        watermark::zone_watermark_fast(
            &zone.free_state(),
            order,
            &zone.watermarks(),
            highest,
            alloc_flags,
            |o, mt| zone.has_free_block(o, mt),
        )
    }

    /// Walk the zonelist for a zone that passes its watermark and has the pages
    /// (`get_page_from_freelist`).
    pub(crate) fn get_page_from_freelist(
        &self,
        gfp: Gfp,
        order: u32,
        mut alloc_flags: AllocFlags,
        ac: &AllocContext,
    ) -> Option<&Page> {
        'retry: loop {
            // ALLOC_NOFRAGMENT: rather than mix pageblocks in the preferred zone, try the
            // other local zones; if all fail, walk again allowing fragmentation.
            let no_fallback = alloc_flags.contains(AllocFlags::NOFRAGMENT);
            let zl = self.node_zonelist(ac.nid, ac.highest_zoneidx.index());
            for &i in zl {
                let Some(zr) = self.zonelist_zone(i) else {
                    continue;
                };
                if ac.thisnode && zr.nid as usize != ac.nid {
                    continue;
                }
                let zone = self.zone(zr);
                if no_fallback
                    && self.nr_online_nodes > 1
                    && let Some(pref) = ac.preferred
                    && zr.nid != pref.nid
                {
                    // Remote zones come after fragmenting the local ones.
                    alloc_flags.remove(AllocFlags::NOFRAGMENT);
                    continue 'retry;
                }
                if !self.zone_watermark_fast(zone, order, ac.highest_zoneidx, alloc_flags)
                    && !alloc_flags.contains(AllocFlags::NO_WATERMARKS)
                {
                    continue;
                }
                if let Some(page) =
                    self.rmqueue(zr, zone, order, alloc_flags, ac.migratetype, ac.nid)
                {
                    self.prep_new_page(page, order, gfp);
                    if alloc_flags.contains(AllocFlags::HIGHATOMIC) {
                        self.reserve_highatomic_pageblock(
                            zone,
                            self.mem().page_to_pfn(page),
                            order,
                        );
                    }
                    return Some(page);
                }
            }
            if no_fallback {
                alloc_flags.remove(AllocFlags::NOFRAGMENT);
                continue;
            }
            return None;
        }
    }

    /// Take `2^order` pages from `zone` (`rmqueue`).
    #[inline]
    pub(super) fn rmqueue(
        &self,
        zr: ZoneRef,
        zone: &Zone,
        order: u32,
        alloc_flags: AllocFlags,
        mt: Migratetype,
        pref_nid: usize,
    ) -> Option<&Page> {
        let mut page = None;
        if pcp_allowed_order(order) {
            page = self.rmqueue_pcplist(zr, zone, order, mt, alloc_flags, false, pref_nid);
        }
        if page.is_none() {
            page = self.rmqueue_buddy(zr, zone, order, alloc_flags, mt, pref_nid);
        }
        let page = page?;
        self.rmqueue_boost_check(zone, alloc_flags);
        Some(page)
    }

    /// After a successful `rmqueue`: a watermark boost raised by a fragmenting fallback
    /// is handed to kswapd by the first allocation allowed to wake it.
    #[inline]
    pub(super) fn rmqueue_boost_check(&self, zone: &Zone, alloc_flags: AllocFlags) {
        if alloc_flags.contains(AllocFlags::KSWAPD) && zone.test_flag(ZONE_BOOSTED_WATERMARK) {
            zone.wm
                .flags
                .fetch_and(!ZONE_BOOSTED_WATERMARK, Ordering::Relaxed);
            self.wakeup_kswapd_boosted(zone);
        }
    }

    /// Wake the background reclaimer after a watermark boost (`wakeup_kswapd`).
    ///
    /// kswapd, woken here, reclaims until the zone is above its boosted high mark, then
    /// resets the boost and wakes kcompactd ([`crate::reclaim::kswapd`]). On a port that
    /// runs no kswapd nothing would ever reset the boost, so it is reset here.
    #[cold]
    pub(super) fn wakeup_kswapd_boosted(&self, zone: &Zone) {
        if self.platform.has_kswapd() {
            self.wakeup_kswapd(zone.nid, Gfp::empty(), 0, zone.zone_type.index());
            return;
        }
        let _g = zone.lock.lock_irqsave(&self.platform);
        zone.wm.boost.store(0, Ordering::Relaxed);
    }

    /// Take a page from this CPU's pcp list for `zone` (`rmqueue_pcplist`), refilling an
    /// empty list from the buddy lists. `None` if the list is busy (being drained by
    /// another CPU) or cannot be refilled. With `quiet_failure` (the fast path, whose
    /// failure is followed by the general path's own attempt at the same zone) a failure
    /// changes nothing: the list's `free_factor` is decayed only when a page is taken, so
    /// the pair of attempts decays it once, as the one attempt of the general path does
    /// (a failed refill moves no page). `pref_nid` is the node the request preferred (for
    /// the NUMA counters).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rmqueue_pcplist(
        &self,
        zr: ZoneRef,
        zone: &Zone,
        order: u32,
        mt: Migratetype,
        alloc_flags: AllocFlags,
        quiet_failure: bool,
        pref_nid: usize,
    ) -> Option<&Page> {
        let pindex = order_to_pindex(mt, order)?;
        let irq = LocalIrqGuard::new(&self.platform);
        let (cpu, hdr, mut lists) = self.percpu.lock_this_cpu(&irq, zr.slot as usize)?;
        let page =
            self.__rmqueue_pcplist(zone, order, mt, alloc_flags, &mut lists, pindex, Some(hdr));
        // The decay Linux applies on entry; free_factor is read only by frees (under this
        // lock), so applying it after the pop is the same.
        if lists.free_factor != 0 && (page.is_some() || !quiet_failure) {
            lists.free_factor >>= 1;
        }
        drop(lists);
        if page.is_some() {
            hdr.count_vm_events_irqs_off(VmEvent::pgalloc(zone.zone_type), 1 << order);
            self.zone_statistics_irqs_off(cpu, pref_nid, zr, 1 << order);
        }
        page
    }

    /// Pop a page from pcp list `pindex`, refilling it first if empty
    /// (`__rmqueue_pcplist`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn __rmqueue_pcplist(
        &self,
        zone: &Zone,
        order: u32,
        mt: Migratetype,
        alloc_flags: AllocFlags,
        lists: &mut PcpLists,
        pindex: usize,
        hdr: Option<&PerCpuHeader>,
    ) -> Option<&Page> {
        loop {
            if lists.list(pindex).is_empty() {
                let (batch, alloc_factor) = nr_pcp_alloc(
                    lists.count,
                    lists.high,
                    lists.batch,
                    order,
                    lists.alloc_factor,
                );
                let n = self.rmqueue_bulk(zone, order, batch, lists, pindex, mt, alloc_flags, hdr);
                lists.count += n << order;
                // Only a refill that moved pages scales the next one (Linux raises the
                // factor before trying): so a refill that finds nothing changes nothing,
                // and the fast path's failed attempt leaves the list as it was.
                if n != 0 {
                    lists.alloc_factor = alloc_factor;
                }
                if lists.list(pindex).is_empty() {
                    return None;
                }
            }
            let page = self.page_ref(lists.pop_front(pindex)?);
            lists.count -= 1 << order;
            if self.check_new_pages(page, order) {
                return Some(page);
            }
        }
    }

    /// A page found in use on a free list is reported and dropped: handing it out would
    /// give one page to two owners (`check_new_pages`).
    #[cold]
    pub(crate) fn bad_page_at_alloc(&self, page: &Page) {
        let pfn = self.mem().try_page_to_pfn(page);
        bad_page::report(
            &BadPage::new(pfn, BadPageReason::BadStateAtAlloc),
            Some(page),
        );
    }

    /// Move up to `count` blocks of `order` from the buddy lists to pcp list `pindex` in
    /// one zone-lock hold (`rmqueue_bulk`). Returns the blocks moved. Runs of consecutive
    /// blocks are taken whole ([`Buddy::rmqueue_smallest_batch`]): one unlink and one
    /// split per run instead of per block, so the lock is held for less time per page,
    /// which is what lets two CPUs refill at once.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn rmqueue_bulk(
        &self,
        zone: &Zone,
        order: u32,
        count: u64,
        lists: &mut PcpLists,
        pindex: usize,
        mt: Migratetype,
        alloc_flags: AllocFlags,
        hdr: Option<&PerCpuHeader>,
    ) -> u64 {
        let mut g = zone.lock.lock_irqs_off(&self.platform);
        let mut b = self.buddy(zone, &mut g);
        let mut mode = RmqueueMode::Normal;
        let mut i = 0;
        // While the requested type's own lists serve (and CMA balancing does not apply),
        // take runs of consecutive blocks in one unlink and one split; the lists end up as
        // they would block by block (`Buddy::rmqueue_smallest_batch`): `rmqueue` in
        // `Normal` mode starts with exactly that `rmqueue_smallest`. When they run dry, one
        // block comes through `rmqueue`'s fallbacks; a claim fills the own lists again and
        // returns to `Normal`, and the runs resume.
        let batch_ok = !alloc_flags.contains(AllocFlags::CMA);
        while i < count {
            if batch_ok
                && mode == RmqueueMode::Normal
                && let Some((first, chunk)) = b.rmqueue_smallest_batch(order, mt, count - i)
            {
                let pfn = self.mem().page_to_pfn(first);
                let map = self.mem().section_memmap(pfn).unwrap_or(&[]);
                let at = (pfn & (map.len() as u64).wrapping_sub(1)) as usize;
                let pages = map.get(at..at + (1usize << chunk)).unwrap_or(&[]);
                if pages.is_empty() {
                    break;
                }
                for page in pages.iter().step_by(1 << order) {
                    // SAFETY: the chunk was just unlinked from a buddy list as one block,
                    // so none of its block heads is on any list; they are memmap
                    // descriptors; we hold the pcp lock (`lists`) with interrupts disabled.
                    unsafe { lists.push_back(pindex, page) };
                    i += 1;
                }
                continue;
            }
            let Some(page) = b.rmqueue(order, mt, alloc_flags, &mut mode) else {
                break;
            };
            // SAFETY: `page` was just unlinked from a buddy list (PG_buddy cleared), so it
            // is on no list; it is a memmap descriptor; we hold the pcp lock (`lists`) with
            // interrupts disabled.
            unsafe { lists.push_back(pindex, page) };
            i += 1;
        }
        let ev = b.events;
        drop(g);
        if i > 0 {
            self.count_vm_events_irqs_off(hdr, VmEvent::PcpRefill, 1);
            self.count_vm_events_irqs_off(hdr, VmEvent::PcpRefillPages, i << order);
        }
        self.count_buddy_events(hdr, ev);
        i
    }

    /// Take a block straight from the buddy lists (`rmqueue_buddy`), including the
    /// highatomic reserve for the requests that may use it.
    #[inline(never)]
    pub(super) fn rmqueue_buddy(
        &self,
        zr: ZoneRef,
        zone: &Zone,
        order: u32,
        alloc_flags: AllocFlags,
        mt: Migratetype,
        pref_nid: usize,
    ) -> Option<&Page> {
        loop {
            let mut g = zone.lock.lock_irqsave(&self.platform);
            let mut b = self.buddy(zone, &mut g);
            let mut page = None;
            if alloc_flags.contains(AllocFlags::HIGHATOMIC) {
                page = b.rmqueue_smallest(order, Migratetype::HighAtomic);
            }
            if page.is_none() {
                let mut mode = RmqueueMode::Normal;
                page = b.rmqueue(order, mt, alloc_flags, &mut mode);
                // Failing now is worse than failing a high-order atomic allocation later:
                // OOM handling and non-blocking requests may use the highatomic reserve.
                if page.is_none() && alloc_flags.intersects(AllocFlags::OOM | AllocFlags::NON_BLOCK)
                {
                    page = b.rmqueue_smallest(order, Migratetype::HighAtomic);
                }
            }
            let ev = b.events;
            let hdr = self.this_cpu_header();
            self.count_buddy_events(hdr, ev);
            let page = page?;
            self.count_vm_events_irqs_off(hdr, VmEvent::pgalloc(zone.zone_type), 1 << order);
            // Interrupts are off under the zone lock.
            self.zone_statistics_irqs_off(self.platform.cpu_id(), pref_nid, zr, 1 << order);
            drop(g);
            if self.check_new_pages(page, order) {
                return Some(page);
            }
        }
    }

    /// Make a block ready for its new owner (`prep_new_page`): the allocation order is
    /// recorded, the memory zeroed for `__GFP_ZERO`, the compound metadata built for
    /// `__GFP_COMP`, and the reference count set to 1 last, publishing the page.
    #[inline]
    pub(crate) fn prep_new_page(&self, page: &Page, order: u32, gfp: Gfp) {
        if order > 0 {
            page.set_order_field_exclusive(order);
        }
        if gfp.intersects(Gfp::ZERO | Gfp::COMP) {
            let pfn = self.mem().page_to_pfn(page);
            if gfp.contains(Gfp::ZERO) {
                self.clear_pages(pfn, order);
            }
            if gfp.contains(Gfp::COMP) && order > 0 {
                self.prep_compound_page(page, pfn, order);
            }
        }
        page.set_refcounted();
    }

    /// Zero `2^order` pages at `pfn` through the direct map (`clear_highpage`).
    pub(super) fn clear_pages(&self, pfn: u64, order: u32) {
        let va = self.platform.phys_to_virt(pfn << PAGE_SHIFT);
        // SAFETY: the block was just taken off a free list, so no one else owns or maps
        // it; it is RAM the direct map covers (the allocator only manages usable RAM), and
        // the range stays inside the block.
        unsafe { core::ptr::write_bytes(va, 0, (PAGE_SIZE << order) as usize) };
    }

    /// Build compound-page metadata (`prep_compound_page`): `PG_head` on the head, every
    /// tail pointing at it, the order in the first tail.
    pub(super) fn prep_compound_page(&self, head: &Page, pfn: u64, order: u32) {
        head.set_flags_word_exclusive(head.flags_word() | PageFlags::HEAD.bits());
        let Some(map) = self.mem().section_memmap(pfn) else {
            return;
        };
        // A block never crosses a section, so its descriptors are consecutive.
        let first = (pfn & (self.mem().pages_per_section() - 1)) as usize;
        let tails = map.get(first + 1..first + (1usize << order)).unwrap_or(&[]);
        for tail in tails {
            tail.set_compound_head_exclusive(head);
        }
        if let Some(t) = tails.first() {
            t.set_order_field_exclusive(order);
        }
    }
}
