//! The free path: a reference dropped, the request and the page checked, the block handed
//! to this CPU's list or merged into the buddy lists (Linux: `__free_pages`,
//! `free_unref_page`, `free_one_page`).

use super::*;
use crate::page_alloc::bad_page::PageChecks;

/// Free the run of order-0 pages a pcp drain took off a list one after the other, from
/// descriptor `lo` to `hi` (consecutive pfns in one section): one page by its descriptor,
/// more as blocks ([`Buddy::free_pcp_run`]).
#[inline(always)]
fn free_run<'m>(
    b: &mut Buddy<'m, '_>,
    lo: &Page,
    hi: &Page,
    cursor: &mut Option<crate::page_alloc::buddy::SectionCursor<'m>>,
) {
    if ptr::eq(lo, hi) {
        b.free_pcp_block(lo, 0, cursor);
        return;
    }
    let len = (hi as *const Page as usize - lo as *const Page as usize) / size_of::<Page>() + 1;
    if let Some(pfn) = b.pcp_page_pfn(lo, cursor) {
        b.free_pcp_run(pfn, len as u64, cursor);
    }
}

/// The checks made before a reference is dropped: anything that fails here leaves the page
/// untouched.
#[inline]
pub(super) fn check_free_request(page: &Page, pfn: u64, order: u32) -> Result<(), BadPageReason> {
    if order > MAX_PAGE_ORDER {
        return Err(BadPageReason::OrderTooLarge { order });
    }
    let word = page.flags_word();
    let flags = PageFlags::from_bits_truncate(word);
    if flags.intersects(PageFlags::RESERVED | PageFlags::TAIL | PageFlags::BUDDY) {
        if flags.contains(PageFlags::RESERVED) {
            return Err(BadPageReason::Reserved);
        }
        if flags.contains(PageFlags::TAIL) {
            return Err(BadPageReason::TailPage);
        }
        return Err(BadPageReason::DoubleFree);
    }
    if page.refcount() <= 0 {
        return Err(BadPageReason::DoubleFree);
    }
    // (Order 0 is always aligned: skip the mask, on the path most frees take.)
    if order != 0 && pfn & ((1u64 << order) - 1) != 0 {
        return Err(BadPageReason::Misaligned { order });
    }
    let allocated = Page::order_field_of(word);
    if allocated != order {
        return Err(BadPageReason::WrongOrder {
            freed: order,
            allocated,
        });
    }
    Ok(())
}

/// Flags that make an order-0 free more than a clean hand-back besides those the free-time
/// check refuses: a poisoned page (withheld) and a compound head (a corrupt order-0 free).
pub(super) const ORDER0_FREE_REFUSE: u64 = PageFlags::HWPOISON.bits() | PageFlags::HEAD.bits();

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Freeing.
    // ---------------------------------------------------------------------------------

    /// Linux's `__free_pages(page, order)`: drop one reference to a block of `2^order`
    /// pages allocated with that order; the last reference frees it. If other references
    /// remain and the block is not compound, their holders keep only the first page and
    /// the rest is freed now (see the module documentation).
    ///
    /// Errors: the page is not ours, reserved, already free, a tail page, or `order` is not
    /// the allocation order (nothing changed); or the page is in a bad state when its last
    /// reference goes (reported, counted, and taken out of circulation).
    #[doc(alias = "__free_pages")]
    #[inline]
    pub fn free_pages(&self, page: &Page, order: u32) -> Result<(), BadPage> {
        let (pfn, zr, ms) = match self.lookup(page) {
            Ok(v) => v,
            Err(bad) => return self.reject(bad, None),
        };
        if let Err(reason) = check_free_request(page, pfn, order) {
            return self.reject(BadPage::new(Some(pfn), reason), Some(page));
        }
        // The common case: ours is the only reference. Taking the count from 1 to 0 in one
        // step proves it (nobody can take a reference from 0: `get_unless_zero` fails), so
        // the whole block is ours to free at its order, with one atomic operation. The
        // order tag below needs no clearing then: no other holder can see it.
        if page.ref_freeze(1) {
            return self.free_block(page, pfn, zr, ms, order);
        }
        let compound = page.is_head();
        // A non-compound multi-page block: the tails belong to whoever drops a reference
        // first without it being the last. Clear the order tag before dropping, so a
        // concurrent last `put` by another holder frees only the first page.
        let owns_tails = !compound && order > 0 && page.take_order_field() == order;
        match page.ref_dec_if_positive() {
            None => self.reject(
                BadPage::new(Some(pfn), BadPageReason::DoubleFree),
                Some(page),
            ),
            Some(1) => {
                let free_order = if compound || owns_tails { order } else { 0 };
                self.free_block(page, pfn, zr, ms, free_order)
            }
            Some(_) => {
                if !owns_tails {
                    return Ok(());
                }
                let mut result = Ok(());
                let mut o = order;
                while o > 0 {
                    o -= 1;
                    let tail_pfn = pfn + (1 << o);
                    if let Some(tail) = self.mem().pfn_to_page(tail_pfn)
                        && let Err(e) = self.free_block(tail, tail_pfn, zr, ms, o)
                        && result.is_ok()
                    {
                        result = Err(e);
                    }
                }
                result
            }
        }
    }

    /// Free by direct-map address (`free_pages`). Address 0 is ignored, as in Linux.
    #[doc(alias = "free_pages")]
    pub fn free_pages_virt(&self, addr: u64, order: u32) -> Result<(), BadPage> {
        if addr == 0 {
            return Ok(());
        }
        match self.virt_to_page(addr) {
            Some(page) => self.free_pages(page, order),
            None => self.reject(BadPage::new(None, BadPageReason::UnknownPfn), None),
        }
    }

    /// Take a reference (`get_page`); on a tail page of a compound page, on its head.
    /// Taking a reference to a free page is refused with a warning.
    pub fn get_page(&self, page: &Page) {
        let Ok((pfn, _, _)) = self.lookup(page) else {
            log::warn!("get_page: page is not managed by this allocator");
            return;
        };
        let head = match self.compound_head_of(page, pfn) {
            Some((h, _)) => h,
            None => page,
        };
        if !head.get_unless_zero() {
            log::warn!("get_page: pfn {pfn:#x} is free; reference not taken");
        }
    }

    /// Drop a reference (`put_page`); on a tail page of a compound page, from its head.
    /// The last reference frees the whole block at the order it was allocated with.
    pub fn put_page(&self, page: &Page) -> Result<(), BadPage> {
        let (pfn, zr, ms) = match self.lookup(page) {
            Ok(v) => v,
            Err(bad) => return self.reject(bad, None),
        };
        let (head, head_pfn) = if page.is_tail() {
            match self.compound_head_of(page, pfn) {
                Some(h) => h,
                None => {
                    return self.reject(
                        BadPage::new(Some(pfn), BadPageReason::CorruptCompound),
                        Some(page),
                    );
                }
            }
        } else {
            (page, pfn)
        };
        if head.is_reserved() {
            return self.reject(
                BadPage::new(Some(head_pfn), BadPageReason::Reserved),
                Some(head),
            );
        }
        if head.is_buddy() {
            return self.reject(
                BadPage::new(Some(head_pfn), BadPageReason::DoubleFree),
                Some(head),
            );
        }
        match head.ref_dec_if_positive() {
            None => self.reject(
                BadPage::new(Some(head_pfn), BadPageReason::DoubleFree),
                Some(head),
            ),
            Some(1) => {
                let order = head.order_field().min(MAX_PAGE_ORDER);
                self.free_block(head, head_pfn, zr, ms, order)
            }
            Some(_) => Ok(()),
        }
    }

    /// The head of the compound page `page` (at `pfn`) belongs to, found by pfn
    /// arithmetic (never by trusting the stored pointer): `None` if `page` is not a tail.
    pub(super) fn compound_head_of(&self, page: &Page, pfn: u64) -> Option<(&Page, u64)> {
        if !page.is_tail() {
            return None;
        }
        let target = page.compound_head();
        for k in 1..=MAX_PAGE_ORDER {
            let hpfn = pfn & !((1u64 << k) - 1);
            if let Some(h) = self.mem().pfn_to_page(hpfn)
                && ptr::eq(h, target)
                && h.is_head()
            {
                return Some((h, hpfn));
            }
        }
        None
    }

    /// Free a block whose last reference is gone: check it, then put it on a pcp list or
    /// the buddy lists.
    #[inline(always)]
    pub(super) fn free_block(
        &self,
        page: &Page,
        pfn: u64,
        zr: ZoneRef,
        ms: &MemSection,
        order: u32,
    ) -> Result<(), BadPage> {
        if order == 0 {
            // The common case, without loops: the page itself is the whole block, and one
            // branch tells a clean page from one that needs a closer look. The reset is
            // written once the pcp lock is held (see `free_unref_page`).
            let flags = page.flags_word();
            if flags & ORDER0_FREE_REFUSE != 0 || !page_ok_at_free(page, flags) {
                return self.free_order0_unclean(page, pfn, flags);
            }
            self.free_unref_page(pfn, page, zr, ms, order, Some(flags & PAGE_LINKS_MASK));
        } else {
            self.free_pages_prepare(page, pfn, order)?;
            self.free_unref_page(pfn, page, zr, ms, order, None);
        }
        Ok(())
    }

    /// An order-0 page that failed the one-branch check: a poisoned page is withheld (it
    /// must never be handed out again, as in Linux); anything else is reported.
    #[cold]
    #[inline(never)]
    pub(super) fn free_order0_unclean(
        &self,
        page: &Page,
        pfn: u64,
        flags: u64,
    ) -> Result<(), BadPage> {
        if flags & PageFlags::HWPOISON.bits() != 0 {
            return Ok(());
        }
        let reason = page_bad_reason(page).unwrap_or(BadPageReason::CorruptCompound);
        self.reject(BadPage::new(Some(pfn), reason), Some(page))
    }

    /// Check a block whose last reference is gone and reset it for the free lists
    /// (`free_pages_prepare`). A bad block is reported, counted and left out of the free
    /// lists. By default only the head of a non-compound block is read and written (see
    /// "Which descriptors are checked" in the module documentation); a compound page, or
    /// any block under [`PageChecks::Full`], is swept page by page. (Out of line: the
    /// order-0 free, which never calls it, stays smaller.)
    #[inline(never)]
    pub(super) fn free_pages_prepare(
        &self,
        page: &Page,
        pfn: u64,
        order: u32,
    ) -> Result<(), BadPage> {
        let w = page.flags_word();
        if w & PageFlags::HEAD.bits() == 0 && self.page_checks() == PageChecks::Head {
            if !page_ok_at_free(page, w) {
                let reason = page_bad_reason(page).unwrap_or(BadPageReason::CorruptCompound);
                return self.reject(BadPage::new(Some(pfn), reason), Some(page));
            }
            page.set_flags_word_exclusive(w & PAGE_LINKS_MASK);
            page.set_index(0);
            return Ok(());
        }
        self.free_pages_sweep(page, pfn, order)
    }

    /// [`Self::free_pages_prepare`] over every descriptor of the block (compound pages,
    /// and every block under [`PageChecks::Full`]).
    #[inline(never)]
    pub(super) fn free_pages_sweep(
        &self,
        page: &Page,
        pfn: u64,
        order: u32,
    ) -> Result<(), BadPage> {
        let nr = 1usize << order;
        // A block never crosses a section (sections are aligned and larger than any block),
        // so its descriptors are consecutive in the section's memmap.
        let Some(map) = self.mem().section_memmap(pfn) else {
            return self.reject(
                BadPage::new(Some(pfn), BadPageReason::UnknownPfn),
                Some(page),
            );
        };
        let first = (pfn & (self.mem().pages_per_section() - 1)) as usize;
        let Some(block) = map.get(first..first + nr) else {
            return self.reject(
                BadPage::new(Some(pfn), BadPageReason::UnknownPfn),
                Some(page),
            );
        };
        let mut bad: Option<BadPage> = None;
        let mut note = |b: BadPage| {
            if bad.is_none() {
                bad = Some(b);
            }
        };
        if page.is_head() {
            if order == 0 || block[1].order_field() != order {
                note(BadPage::new(Some(pfn), BadPageReason::CorruptCompound));
            }
            for (i, tail) in block.iter().enumerate().skip(1) {
                if !tail.is_tail() || !ptr::eq(tail.compound_head(), page) {
                    note(BadPage::new(
                        Some(pfn + i as u64),
                        BadPageReason::CorruptCompound,
                    ));
                }
                tail.clear_compound_head_exclusive();
            }
        }
        // One pass over the descriptors (a 2 MiB block has 512 of them, a cache line
        // each): check a page and, if it is clean, reset it for the free lists. When a
        // later page turns out bad the whole block is withheld anyway, so resetting the
        // good ones first is harmless, and the bad ones keep their state for the report.
        for (i, p) in block.iter().enumerate() {
            let w = p.flags_word();
            if !page_ok_at_free(p, w)
                && let Some(reason) = page_bad_reason(p)
            {
                note(BadPage::new(Some(pfn + i as u64), reason));
                continue;
            }
            if w & !PAGE_LINKS_MASK != 0 {
                p.set_flags_word_exclusive(w & PAGE_LINKS_MASK);
            }
            if p.index() != 0 {
                p.set_index(0);
            }
        }
        if let Some(b) = bad {
            let culprit = b.pfn.and_then(|p| self.mem().pfn_to_page(p));
            return self.reject(b, culprit);
        }
        Ok(())
    }

    /// Free a checked block (`free_unref_page`): pcp orders to this CPU's list, draining it
    /// in a batch when it reaches `high`; other orders, isolated pageblocks, and a pcp busy
    /// being drained by another CPU straight to the buddy lists.
    ///
    /// `reset`, if given, is the flags word the page gets (and its index is cleared) before
    /// it is linked, written once the lists are held (or, if they are not, right before
    /// the page goes to the buddy lists), so the stores follow the reference drop's atomic
    /// operation and the page's line is written once.
    #[inline(always)]
    pub(super) fn free_unref_page(
        &self,
        pfn: u64,
        page: &Page,
        zr: ZoneRef,
        ms: &MemSection,
        order: u32,
        reset: Option<u64>,
    ) {
        let prepare = || {
            if let Some(w) = reset {
                page.set_flags_word_exclusive(w);
                page.set_index(0);
            }
        };
        let zone = self.zone(zr);
        let nr = 1u64 << order;
        if pcp_allowed_order(order) && zr.slot != NO_SLOT {
            // The pageblock's type, read without the zone lock as Linux does: a race with a
            // repaint only files the page on another pcp list; the drain rereads it.
            let mt = self
                .mem()
                .section_usemap(ms)
                .and_then(|u| Migratetype::from_bits(usemap_get(u, pfn, MIGRATETYPE_MASK) as u8))
                .unwrap_or(Migratetype::Unmovable);
            let pcp_mt = match mt {
                Migratetype::Isolate => None,
                m if m.is_pcptype() => Some(m),
                _ => Some(Migratetype::Movable),
            };
            if let Some(pindex) = pcp_mt.and_then(|m| order_to_pindex(m, order)) {
                let irq = LocalIrqGuard::new(&self.platform);
                if let Some((_, hdr, mut lists)) = self.percpu.lock_this_cpu(&irq, zr.slot as usize)
                {
                    prepare();
                    // SAFETY: the page's last reference is gone and it passed the free
                    // checks, so it is on no list; it is a memmap descriptor; we hold the
                    // pcp lock with interrupts disabled.
                    unsafe { lists.push_front(pindex, page) };
                    lists.count += nr;
                    // A free ends a run of allocations: refills scale back down.
                    lists.alloc_factor >>= 1;
                    if lists.count >= lists.high {
                        self.free_unref_page_over_high(zone, &mut lists, pindex, hdr);
                    }
                    drop(lists);
                    hdr.count_vm_events_irqs_off(VmEvent::Pgfree, nr);
                    return;
                }
            }
        }
        prepare();
        self.free_one_page(zone, pfn, order);
        self.count_vm_events(VmEvent::Pgfree, nr);
    }

    /// The pcp list reached `high` after a free: give back a batch, growing with each
    /// consecutive drain (`free_factor`) so a CPU that frees a lot drains in bigger bites.
    #[inline(never)]
    pub(super) fn free_unref_page_over_high(
        &self,
        zone: &Zone,
        lists: &mut PcpLists,
        pindex: usize,
        hdr: &PerCpuHeader,
    ) {
        let to_free = nr_pcp_free(lists.high, lists.batch, lists.free_factor);
        if lists.free_factor < 63
            && lists.batch.saturating_mul(1 << lists.free_factor)
                < lists.high.saturating_sub(lists.batch)
        {
            lists.free_factor += 1;
        }
        self.free_pcppages_bulk(zone, to_free, lists, pindex, Some(hdr));
    }

    /// Free a block straight to the buddy lists (`free_one_page`).
    #[inline(never)]
    pub(super) fn free_one_page(&self, zone: &Zone, pfn: u64, order: u32) {
        let mut g = zone.lock.lock_irqsave(&self.platform);
        self.buddy(zone, &mut g).free_pages_range(pfn, order, false);
    }

    /// Return `count` base pages from a pcp to the buddy lists in one zone-lock hold
    /// (`free_pcppages_bulk`): lists are visited round-robin starting at `pindex`, each
    /// drained from its tail (its coldest pages) until the count is met or it is empty.
    /// Order-0 pages that come off the list as a run of consecutive pfns (rising or
    /// falling) are freed as the largest aligned blocks the run holds
    /// ([`Buddy::free_pcp_run`]): pages freed together (a buffer, a process's memory) were
    /// mostly allocated together, and merging them as a block costs one list insertion
    /// instead of one per page and level. Interrupts must be disabled and the pcp lock held.
    #[inline(never)]
    pub(super) fn free_pcppages_bulk(
        &self,
        zone: &Zone,
        count: u64,
        lists: &mut PcpLists,
        pindex: usize,
        hdr: Option<&PerCpuHeader>,
    ) {
        let mut remaining = count.min(lists.count) as i64;
        if remaining <= 0 {
            return;
        }
        let mut freed = 0u64;
        let mut g = zone.lock.lock_irqs_off(&self.platform);
        let mut b = self.buddy(zone, &mut g);
        let mut cursor = None;
        let mut idx = (pindex + NR_PCP_LISTS - 1) % NR_PCP_LISTS;
        'outer: while remaining > 0 {
            let mut tries = 0;
            loop {
                idx = (idx + 1) % NR_PCP_LISTS;
                if !lists.list(idx).is_empty() {
                    break;
                }
                tries += 1;
                if tries >= NR_PCP_LISTS {
                    // `count` claimed pages no list holds: trust the lists.
                    lists.count = 0;
                    break 'outer;
                }
            }
            let order = pindex_to_order(idx).unwrap_or(0);
            let nr = 1u64 << order;
            if order == 0 && !b.capture_armed() {
                let taken = self.drain_order0_runs(&mut b, lists, idx, remaining, &mut cursor);
                remaining -= taken as i64;
                freed += taken;
                continue;
            }
            while let Some(p) = lists.pop_back(idx) {
                let page = self.page_ref(p);
                remaining -= nr as i64;
                lists.count = lists.count.saturating_sub(nr);
                freed += nr;
                b.free_pcp_block(page, order, &mut cursor);
                if remaining <= 0 {
                    break;
                }
            }
        }
        drop(g);
        self.count_vm_events_irqs_off(hdr, VmEvent::PcpDrain, 1);
        self.count_vm_events_irqs_off(hdr, VmEvent::PcpDrainPages, freed);
    }

    /// The order-0 list `idx` of a drain ([`Self::free_pcppages_bulk`]): up to `remaining`
    /// pages, the runs among them freed as blocks. Returns the pages taken. (Out of line,
    /// so the drain of the other orders keeps its code.)
    #[inline(never)]
    fn drain_order0_runs<'m>(
        &self,
        b: &mut Buddy<'m, '_>,
        lists: &mut PcpLists,
        idx: usize,
        remaining: i64,
        cursor: &mut Option<crate::page_alloc::buddy::SectionCursor<'m>>,
    ) -> u64 {
        // Runs of pages with consecutive descriptors in one section (consecutive pfns),
        // rising or falling, in the order they come off the list. Told apart by address
        // and section number, both read with the links: the pfn is looked up once per
        // run, when it is freed.
        let taken = lists.drain_back_runs(
            idx,
            remaining.max(0) as usize,
            |lower, upper| lower.section_nr() == upper.section_nr(),
            |lo, hi| free_run(b, self.page_ref(lo), self.page_ref(hi), cursor),
        ) as u64;
        lists.count = lists.count.saturating_sub(taken);
        taken
    }

    /// Drain CPU `cpu`'s pcp lists of every zone (`drain_pages`); returns the pages given
    /// back. Another CPU may do this: it takes the pcp lock ([`PcpLock::lock`]), which
    /// the owner holds only with interrupts disabled for a bounded time. On a platform
    /// whose cross-CPU barrier is an interrupt, call it with interrupts enabled.
    ///
    /// [`PcpLock::lock`]: crate::port::pcp_lock::PcpLock::lock
    pub(super) fn drain_pages(&self, cpu: usize) -> u64 {
        let hdr = self.this_cpu_header();
        let mut freed = 0;
        for zr in self.all_zones() {
            if zr.slot == NO_SLOT {
                continue;
            }
            let Some(pcp) = self.percpu.pcp(cpu, zr.slot as usize) else {
                continue;
            };
            // Interrupts are disabled while the lists are held.
            let mut lists = pcp.lock.lock(&self.platform);
            if lists.count == 0 {
                continue;
            }
            let count = lists.count;
            self.free_pcppages_bulk(self.zone(zr), count, &mut lists, 0, hdr);
            freed += count - lists.count;
        }
        freed
    }

    /// Return this CPU's pcp pages to the buddy lists (`drain_local_pages`); returns the
    /// pages given back.
    pub fn drain_local_pages(&self) -> u64 {
        let cpu = {
            let _irq = LocalIrqGuard::new(&self.platform);
            self.platform.cpu_id()
        };
        self.drain_pages(cpu)
    }

    /// Return every CPU's pcp pages to the buddy lists (`drain_all_pages`), draining the
    /// other CPUs' lists remotely under their locks; returns the pages given back. On a
    /// platform whose cross-CPU barrier is an interrupt (the kernel's IPI), call it with
    /// interrupts enabled, as Linux's `drain_all_pages` (which sleeps) is.
    pub fn drain_all_pages(&self) -> u64 {
        let me = {
            let _irq = LocalIrqGuard::new(&self.platform);
            self.platform.cpu_id()
        };
        let mut freed = 0;
        for cpu in 0..self.percpu.nr_cpus() {
            let n = self.drain_pages(cpu);
            if cpu != me && n > 0 {
                self.count_vm_events(VmEvent::PcpDrainRemote, 1);
            }
            freed += n;
        }
        freed
    }

    pub(super) fn pcp_count_of_cpu(&self, cpu: usize) -> u64 {
        self.all_zones()
            .filter(|zr| zr.slot != NO_SLOT)
            .filter_map(|zr| self.percpu.pcp(cpu, zr.slot as usize))
            .map(|pcp| pcp.lock.lock(&self.platform).count)
            .sum()
    }
}
