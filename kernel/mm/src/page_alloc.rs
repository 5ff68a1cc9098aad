//! The zoned page allocator: the allocation and free paths, per-CPU lists, watermarks and
//! reserves (Linux: `mm/page_alloc.c`).
//!
//! # The allocation path
//!
//! ```text
//! alloc_pages(gfp, order)
//!   __alloc_pages
//!     alloc_page_fast            order 0: the first zone's step below, with the class's
//!                                answers computed once (fastpath.rs); when the pcp list
//!                                cannot serve it, nothing changed and the rest follows
//!     prepare_alloc_pages        gfp -> highest zone, migratetype, zonelist (or an error)
//!     get_page_from_freelist     fast path: WMARK_LOW, ALLOC_NOFRAGMENT when it pays
//!       for each zone of the zonelist up to the highest allowed:
//!         zone_watermark_fast    enough free pages above the mark + lowmem_reserve?
//!         rmqueue
//!           rmqueue_pcplist      orders 0-3 and 9: this CPU's list, refilled by
//!                                rmqueue_bulk (one zone-lock hold per batch)
//!           rmqueue_buddy        everything else: __rmqueue under the zone lock
//!         prep_new_page          refcount 1, order tag, __GFP_ZERO, __GFP_COMP
//!     __alloc_pages_slowpath     wake kcompactd (order > 0), WMARK_MIN with the reserves
//!                                the gfp earns, async direct compaction for costly
//!                                orders, pcp drain as reclaim, direct compaction with
//!                                capture and escalating priority, highatomic unreserve,
//!                                warn_alloc, pgalloc_fail
//! ```
//!
//! The common case, an order-0 allocation that hits the CPU's pcp list, touches only the
//! zone's read-mostly lines (watermarks, free counters, for the check) and this CPU's
//! per-CPU block: no zone lock, no write to a line another CPU writes.
//!
//! # The free path
//!
//! `__free_pages(page, order)` drops a reference; the last one frees. Before anything is
//! changed the request is checked (the pfn is ours, not reserved, not already free, the
//! order is the one the block was allocated with); after the last reference is gone the
//! page state is checked ([`crate::bad_page`]; for a single page that is one branch, and
//! the reason is only worked out for a page that fails it). Orders 0-3 and 9 go to this
//! CPU's pcp list (drained in a batch when it reaches `high`), the rest straight
//! to the buddy lists (`free_one_page`). Freed pages go to the free list of their
//! pageblock's current type.
//!
//! # Reference counts
//!
//! An allocation returns its head page with a reference count of 1. [`PageAllocator::get_page`]
//! and [`PageAllocator::put_page`] take and drop references; `put_page` on a tail page of a
//! compound page works on the head. [`PageAllocator::free_pages_page`] is Linux's
//! `__free_pages`: it drops one reference, and if that was not the last one and the block
//! is not compound, the other holders keep only the first page: the rest is freed in
//! chunks of decreasing order (`page + 2^(order-1)` at `order - 1`, down to `page + 1` at
//! order 0).
//!
//! # Pages on pcp lists are not free
//!
//! `NR_FREE_PAGES` counts the buddy free lists only, as in Linux. A page on a CPU's pcp
//! list has already left the buddy allocator: only that CPU can hand it out, so counting it
//! as free would let a watermark check on another CPU pass on memory it cannot reach.
//! [`PageAllocator::nr_pcp_pages`] reports them separately; `drain_all_pages` returns them.
//!
//! # What is not here (yet)
//!
//! There is no page reclaim in this kernel (no page cache, no slab shrinkers): direct
//! reclaim can only return the pages parked on pcp lists, which is what
//! `PageAllocator::__perform_reclaim` does, and kswapd's boosted pass has nothing to
//! reclaim, so waking it resets the boost at once; for the same reason kcompactd is woken
//! straight from the slow path rather than by kswapd. Direct compaction
//! (`PageAllocator::__alloc_pages_direct_compact`, [`crate::compaction`]) is the slow
//! path's real weapon against high-order failures. There is no OOM killer: an allocation
//! that cannot be satisfied fails, loudly, and is counted.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::bad_page::{
    self, BadPage, BadPageReason, ReportLimit, page_bad_reason, page_ok_at_alloc, page_ok_at_free,
};
use crate::buddy::{Buddy, BuddyEvents, RmqueueMode, migratetype_is_mergeable};
use crate::compaction::{CaptureSlots, CompactPriority, CompactResult};
use crate::gfp::{
    AllocFlags, Gfp, GfpError, alloc_flags_nofragment, gfp_pfmemalloc_flags, gfp_to_alloc_flags,
    gfp_to_alloc_flags_cma, validate,
};
use crate::list::PageList;
use crate::memblock::MemblockError;
use crate::mm_init::MemoryModel;
use crate::mmzone::{
    MAX_NR_ZONES, MAX_NUMNODES, MAX_PAGE_ORDER, Migratetype, PAGE_ALLOC_COSTLY_ORDER, PAGE_SHIFT,
    PAGE_SIZE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PAGES_PER_SECTION, ZoneType,
};
use crate::page::{PAGE_LINKS_MASK, Page, PageFlags};
use crate::pageblock::{MIGRATETYPE_MASK, usemap_get};
use crate::pcp::{
    NR_PCP_LISTS, PcpLists, nr_pcp_alloc, nr_pcp_free, order_to_pindex, pageset_high_and_batch,
    pcp_allowed_order, pindex_to_order,
};
use crate::percpu::{PerCpu, PerCpuHeader};
use crate::platform::{LocalIrqGuard, Platform};
use crate::sparse::{MemSection, SparseMem};
use crate::sync::SpinLock;
use crate::sysctl::{SysctlError, VmSysctl};
use crate::vmstat::{NR_VM_EVENT_ITEMS, VmEvent};
use crate::watermark::{self, ZoneManaged, setup_zone_lowmem_reserve, zone_watermark_ok};
use crate::zone::{ZONE_BOOSTED_WATERMARK, Zone, counter_add};

/// Reclaim retries without progress before giving up (`MAX_RECLAIM_RETRIES`).
pub const MAX_RECLAIM_RETRIES: u32 = 16;
/// Extra rounds a `__GFP_NOFAIL` request retries (with part of the min reserve) before it
/// fails anyway. Linux loops forever; with no reclaim and no OOM killer that would only
/// hang the caller, so the promise is kept as far as memory allows and then broken loudly.
pub const NOFAIL_RETRIES: u32 = 16;

/// Zonelist entries: every zone of every node.
const MAX_ZONELIST: usize = MAX_NUMNODES * MAX_NR_ZONES;
/// `ZoneRef::slot` of a zone without pcp lists.
const NO_SLOT: u16 = u16::MAX;

/// Why the allocator could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The platform reports no CPUs.
    NoCpus,
    /// No memory for the per-CPU areas.
    PerCpu(MemblockError),
    /// No zone has managed pages.
    NoManagedZone,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::NoCpus => f.write_str("page allocator: the platform reports 0 CPUs"),
            InitError::PerCpu(e) => write!(f, "page allocator: no memory for per-CPU areas: {e}"),
            InitError::NoManagedZone => f.write_str("page allocator: no zone has pages to manage"),
        }
    }
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The request is impossible (bad GFP combination, order too large, ...). Nothing was
    /// changed.
    Invalid(GfpError),
    /// No memory could be found for it.
    NoMemory,
}

impl core::fmt::Display for AllocError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AllocError::Invalid(e) => write!(f, "invalid allocation request: {e}"),
            AllocError::NoMemory => f.write_str("out of memory"),
        }
    }
}

/// A zone as the allocator's tables refer to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ZoneRef {
    pub(crate) zone: *const Zone,
    /// Index of the zone's pcp in every CPU's per-CPU block, or [`NO_SLOT`].
    pub(crate) slot: u16,
    pub(crate) nid: u8,
    pub(crate) zone_idx: u8,
}

const NO_ZONE: ZoneRef = ZoneRef {
    zone: ptr::null(),
    slot: NO_SLOT,
    nid: 0,
    zone_idx: 0,
};

/// The zones an allocation on one node tries, in order (`struct zonelist`), as indices
/// into the allocator's zone table (`nid * MAX_NR_ZONES + zone index`). One list per node
/// and highest usable zone, so the walk never skips entries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Zonelist {
    idx: [u8; MAX_ZONELIST],
    len: u8,
}

const EMPTY_ZONELIST: Zonelist = Zonelist {
    idx: [0; MAX_ZONELIST],
    len: 0,
};

impl Zonelist {
    #[inline]
    fn entries(&self) -> &[u8] {
        &self.idx[..self.len as usize]
    }
}

/// The first zone of a request's zonelist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreferredZone {
    pub(crate) nid: u8,
    pub(crate) zone_idx: u8,
}

/// What an allocation request resolved to (`struct alloc_context`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AllocContext {
    /// The node whose zonelist is walked.
    pub(crate) nid: usize,
    /// Highest zone the request may use.
    pub(crate) highest_zoneidx: ZoneType,
    /// Free-list type.
    pub(crate) migratetype: Migratetype,
    /// The first usable zone of the zonelist (`preferred_zoneref`).
    pub(crate) preferred: Option<PreferredZone>,
    /// `__GFP_THISNODE`: zones of other nodes are skipped.
    pub(crate) thisnode: bool,
}

/// The page allocator. See the module documentation.
pub struct PageAllocator<P: Platform + 'static> {
    model: MemoryModel,
    platform: &'static P,
    /// Every zone of every node, at `nid * MAX_NR_ZONES + zone index`.
    zones: [ZoneRef; MAX_ZONELIST],
    /// Per node, per highest usable zone.
    zonelists: [[Zonelist; MAX_NR_ZONES]; MAX_NUMNODES],
    online: [bool; MAX_NUMNODES],
    /// Per node: ZONE_DMA32 is populated (for `alloc_flags_nofragment`).
    dma32_populated: [bool; MAX_NUMNODES],
    nr_online_nodes: usize,
    first_online_node: usize,
    percpu: PerCpu,
    sysctl: SpinLock<VmSysctl>,
    boost_factor: AtomicU64,
    direct_map_offset: Option<u64>,
    /// Events counted by a CPU whose id is outside `0..nr_cpus` (a platform bug, counted
    /// rather than lost).
    stray_events: [AtomicU64; NR_VM_EVENT_ITEMS],
    /// Floods of bad-page reports are thinned out (Linux allows bursts of 60).
    bad_page_limit: ReportLimit,
    /// Floods of allocation-failure and refusal reports are thinned out (Linux: 10 per 5 s).
    warn_limit: ReportLimit,
    /// Every CPU's compaction capture slot ([`crate::compaction`]).
    capture: CaptureSlots,
    /// Anon regions (movable "user memory") and their descriptors ([`crate::rmap`]).
    pub(crate) anon_regions: crate::rmap::RegionTable,
    /// Per node and gfp class, what an order-0 request resolves to ([`fastpath`]).
    fast_plans: [[FastPlan; NR_GFP_CLASSES]; MAX_NUMNODES],
    /// Unit tests run a twin machine with the fast path off to compare the two.
    #[cfg(test)]
    fast_path_off: core::sync::atomic::AtomicBool,
}

// SAFETY: the raw zone pointers lead into node descriptors owned by `model` (memblock
// memory never freed while the model lives), whose mutable state is atomic or behind
// spinlocks; `PerCpu` and `MemoryModel` are `Send + Sync`; `P: Sync` makes `&P` shareable.
unsafe impl<P: Platform + 'static> Send for PageAllocator<P> {}
// SAFETY: as above.
unsafe impl<P: Platform + 'static> Sync for PageAllocator<P> {}

impl<P: Platform + 'static> PageAllocator<P> {
    /// Take over the memory model: allocate the per-CPU areas from memblock, build the
    /// zonelists, hand every free page to the buddy lists (`memblock_free_all`) and size
    /// watermarks, reserves and pcp lists (`init_per_zone_wmark_min`).
    pub fn new(mut model: MemoryModel, platform: &'static P) -> Result<Self, InitError> {
        let nr_cpus = platform.nr_cpus();
        if nr_cpus == 0 {
            return Err(InitError::NoCpus);
        }
        // pcp slots for every zone that has pages to manage.
        let mut slots = [[NO_SLOT; MAX_NR_ZONES]; MAX_NUMNODES];
        let mut nr_slots = 0;
        for n in model.nodes() {
            for z in &n.node_zones {
                if z.managed_zone() {
                    slots[n.node_id][z.zone_type.index()] = nr_slots as u16;
                    nr_slots += 1;
                }
            }
        }
        if nr_slots == 0 {
            return Err(InitError::NoManagedZone);
        }
        let percpu =
            PerCpu::alloc(&mut model, platform, nr_cpus, nr_slots).map_err(InitError::PerCpu)?;
        let capture =
            CaptureSlots::alloc(&mut model, platform, nr_cpus).map_err(InitError::PerCpu)?;

        let mut zones = [NO_ZONE; MAX_ZONELIST];
        let mut online = [false; MAX_NUMNODES];
        for n in model.nodes() {
            online[n.node_id] = true;
            for z in &n.node_zones {
                zones[n.node_id * MAX_NR_ZONES + z.zone_type.index()] = ZoneRef {
                    zone: z as *const Zone,
                    slot: slots[n.node_id][z.zone_type.index()],
                    nid: n.node_id as u8,
                    zone_idx: z.zone_type.index() as u8,
                };
            }
        }
        let nr_online_nodes = online.iter().filter(|&&o| o).count();
        let dma32_populated = core::array::from_fn(|nid| {
            model
                .zone(nid, ZoneType::Dma32)
                .is_some_and(|z| z.populated())
        });
        let first_online_node = online.iter().position(|&o| o).unwrap_or(0);
        let zonelists = core::array::from_fn(|nid| {
            core::array::from_fn(|highest| build_zonelist(&zones, &online, nid, highest))
        });
        let direct_map_offset = direct_map_offset(&model, platform);

        let mut alloc = PageAllocator {
            model,
            platform,
            zones,
            zonelists,
            online,
            dma32_populated,
            nr_online_nodes,
            first_online_node,
            percpu,
            sysctl: SpinLock::new(VmSysctl::default()),
            boost_factor: AtomicU64::new(VmSysctl::default().watermark_boost_factor),
            direct_map_offset,
            stray_events: [const { AtomicU64::new(0) }; NR_VM_EVENT_ITEMS],
            bad_page_limit: ReportLimit::new(60),
            warn_limit: ReportLimit::new(10),
            capture,
            anon_regions: crate::rmap::RegionTable::new(),
            fast_plans: [[FastPlan::NONE; NR_GFP_CLASSES]; MAX_NUMNODES],
            #[cfg(test)]
            fast_path_off: core::sync::atomic::AtomicBool::new(false),
        };
        alloc.fast_plans = alloc.build_fast_plans();
        alloc.memblock_free_all();
        alloc.init_per_zone_wmark_min();
        Ok(alloc)
    }

    // ---------------------------------------------------------------------------------
    // Small helpers.
    // ---------------------------------------------------------------------------------

    /// The memory model the allocator runs on.
    pub fn model(&self) -> &MemoryModel {
        &self.model
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        self.platform
    }

    #[inline]
    pub(crate) fn mem(&self) -> &SparseMem {
        self.model.sparse()
    }

    #[inline]
    pub(crate) fn zone(&self, zr: ZoneRef) -> &Zone {
        debug_assert!(!zr.zone.is_null());
        // SAFETY: non-null zone pointers in our tables point into node descriptors owned
        // by `self.model`, which outlives `&self` and never frees them.
        unsafe { &*zr.zone }
    }

    /// The zone table entry of `nid`/`zt`, if the zone exists.
    #[inline]
    pub(crate) fn zone_ref(&self, nid: usize, zt: usize) -> Option<ZoneRef> {
        if nid >= MAX_NUMNODES || zt >= MAX_NR_ZONES {
            return None;
        }
        let zr = self.zones[nid * MAX_NR_ZONES + zt];
        (!zr.zone.is_null()).then_some(zr)
    }

    /// Every existing zone, node by node, lowest zone first.
    pub(crate) fn all_zones(&self) -> impl Iterator<Item = ZoneRef> + '_ {
        self.zones.iter().copied().filter(|zr| !zr.zone.is_null())
    }

    /// The per-CPU areas.
    pub(crate) fn percpu(&self) -> &PerCpu {
        &self.percpu
    }

    /// A descriptor taken off one of our lists.
    #[inline]
    pub(crate) fn page_ref(&self, p: NonNull<Page>) -> &Page {
        // SAFETY: every page on a buddy or pcp list is a descriptor in the memmap of
        // `self.model`, which lives as long as `&self`.
        unsafe { &*p.as_ptr() }
    }

    /// The node of the calling CPU (`numa_node_id`), an online one.
    #[inline]
    pub fn numa_node_id(&self) -> usize {
        if self.nr_online_nodes == 1 {
            return self.first_online_node;
        }
        let nid = self.platform.cpu_to_node(self.platform.cpu_id());
        if nid < MAX_NUMNODES && self.online[nid] {
            nid
        } else {
            self.first_online_node
        }
    }

    /// This CPU's counters (interrupts must be off).
    #[inline]
    fn this_cpu_header(&self) -> Option<&PerCpuHeader> {
        self.percpu.header(self.platform.cpu_id())
    }

    /// Count `n` events with interrupts already disabled (`__count_vm_events`).
    #[inline]
    fn __count_vm_events(&self, hdr: Option<&PerCpuHeader>, ev: VmEvent, n: u64) {
        match hdr {
            Some(h) => h.__count_vm_events(ev, n),
            None => {
                self.stray_events[ev.index()].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Count `n` events (`count_vm_events`).
    pub(crate) fn count_vm_events(&self, ev: VmEvent, n: u64) {
        let _irq = LocalIrqGuard::new(self.platform);
        self.__count_vm_events(self.this_cpu_header(), ev, n);
    }

    fn count_buddy_events(&self, hdr: Option<&PerCpuHeader>, ev: BuddyEvents) {
        if ev.fallback != 0 {
            self.__count_vm_events(hdr, VmEvent::PgallocFallback, ev.fallback);
        }
        if ev.claim != 0 {
            self.__count_vm_events(hdr, VmEvent::PageblockClaim, ev.claim);
        }
        if ev.boost != 0 {
            self.__count_vm_events(hdr, VmEvent::WatermarkBoost, ev.boost);
        }
    }

    /// An event count summed over CPUs (`sum_vm_event`).
    pub fn vm_event(&self, ev: VmEvent) -> u64 {
        self.percpu
            .sum_event(ev)
            .wrapping_add(self.stray_events[ev.index()].load(Ordering::Relaxed))
    }

    /// Every event count summed over CPUs (`all_vm_events`).
    pub fn vm_events(&self) -> [u64; NR_VM_EVENT_ITEMS] {
        core::array::from_fn(|i| self.vm_event(VmEvent::ALL[i]))
    }

    /// The buddy operations of `zone`, whose lock the caller holds (`fa` is the guarded
    /// data, so interrupts are off and the CPU is stable). A block freed through it may go
    /// to this CPU's armed compaction capture ([`crate::compaction`]).
    #[inline]
    pub(crate) fn buddy<'m, 'g>(
        &'m self,
        zone: &'g Zone,
        fa: &'g mut crate::buddy::FreeAreas,
    ) -> Buddy<'m, 'g> {
        Buddy::new(
            zone,
            self.mem(),
            fa,
            self.boost_factor.load(Ordering::Relaxed),
        )
        .with_capture(self.capture.armed_for(self.platform.cpu_id(), zone))
    }

    /// Every CPU's compaction capture slot.
    pub(crate) fn capture_slots(&self) -> &CaptureSlots {
        &self.capture
    }

    /// The online nodes, in id order.
    pub(crate) fn online_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_NUMNODES).filter(|&n| self.online[n])
    }

    /// Change tunables that need no recomputation (the compaction ones).
    pub(crate) fn update_sysctl(&self, f: impl FnOnce(&mut VmSysctl)) {
        f(&mut self.sysctl.lock_irqsave(self.platform));
    }

    /// Give order-0 pages this allocator handed out privately (compaction's unused
    /// migration targets, reference count 1, on `list`) straight back to `zone`'s buddy
    /// lists under one zone-lock hold, bypassing the pcp lists so they merge at once and
    /// the free counters are exact as soon as this returns. A page that is still
    /// referenced elsewhere or in a bad state is reported and kept out of circulation.
    /// Returns the highest pfn freed (0 if none).
    pub(crate) fn free_isolated_pages(&self, zone: &Zone, list: &mut PageList) -> u64 {
        let mut ok = PageList::new();
        let mut high = 0;
        // SAFETY: `list` is the caller's private list of pages it owns.
        while let Some(p) = unsafe { list.pop_front() } {
            let page = self.page_ref(p);
            let pfn = self.mem().page_to_pfn(page);
            match page.ref_dec_if_positive() {
                Some(1) => {}
                Some(_) => {
                    log::warn!("compaction: target pfn {pfn:#x} still referenced; leaking it");
                    continue;
                }
                None => {
                    let _ = self.reject(
                        BadPage::new(Some(pfn), BadPageReason::DoubleFree),
                        Some(page),
                    );
                    continue;
                }
            }
            if let Some(reason) = page_bad_reason(page) {
                let _ = self.reject(BadPage::new(Some(pfn), reason), Some(page));
                continue;
            }
            let w = page.flags_word();
            page.set_flags_word_exclusive(w & PAGE_LINKS_MASK);
            page.set_index(0);
            high = high.max(pfn);
            // SAFETY: the page's last reference is gone and it is on no list; `ok` is
            // private to this call.
            unsafe { ok.push_back(page) };
        }
        if ok.is_empty() {
            return high;
        }
        let mut g = zone.lock.lock_irqsave(self.platform);
        let mut b = self.buddy(zone, &mut g);
        // SAFETY: as above.
        while let Some(p) = unsafe { ok.pop_front() } {
            let pfn = self.mem().page_to_pfn(self.page_ref(p));
            let mt = b.pageblock_mt(pfn);
            b.__free_one_page(pfn, 0, mt, false);
        }
        high
    }

    /// The pfn of one of our descriptors, with its zone and section: `UnknownPfn` for a
    /// `Page` that is not in the memmap or whose zone manages nothing. One section lookup.
    #[inline]
    fn lookup<'a>(&'a self, page: &Page) -> Result<(u64, ZoneRef, &'a MemSection), BadPage> {
        let Some((pfn, ms)) = self.mem().page_to_pfn_section(page) else {
            return Err(BadPage::new(None, BadPageReason::UnknownPfn));
        };
        match self.zone_ref(page.nid(), page.zone_idx()) {
            // Zones with a pcp slot are the ones that had pages to manage at hand-off. The
            // span needs no check: memmap init gives a page the zone whose span holds it,
            // except holes, which are PG_reserved and refused by the caller.
            Some(zr) if zr.slot != NO_SLOT => Ok((pfn, zr, ms)),
            _ => Err(BadPage::new(Some(pfn), BadPageReason::UnknownPfn)),
        }
    }

    /// Report and count a rejected free.
    #[cold]
    #[inline(never)]
    fn reject(&self, bad: BadPage, page: Option<&Page>) -> Result<(), BadPage> {
        if let Some(suppressed) = self.bad_page_limit.allow() {
            if suppressed != 0 {
                log::error!("BUG: Bad page state: {suppressed} messages suppressed");
            }
            bad_page::report(&bad, page);
        }
        self.count_vm_events(VmEvent::PgfreeRejected, 1);
        Err(bad)
    }

    // ---------------------------------------------------------------------------------
    // Boot hand-off and sizing.
    // ---------------------------------------------------------------------------------

    /// Hand every free page to the buddy lists in the largest naturally aligned blocks
    /// that fit (`memblock_free_all` -> `__free_pages_core`), at the tail of the lists.
    fn memblock_free_all(&self) {
        let mut freed = 0;
        for r in self.model.free_pfn_ranges() {
            let Some(zr) = self.zone_ref(r.nid, r.zone.index()) else {
                continue;
            };
            let zone = self.zone(zr);
            let mut pfn = r.start_pfn;
            while pfn < r.end_pfn {
                let fit = 63 - (r.end_pfn - pfn).leading_zeros();
                let order = MAX_PAGE_ORDER.min(pfn.trailing_zeros()).min(fit);
                let nr = 1u64 << order;
                for p in pfn..pfn + nr {
                    if let Some(page) = self.mem().pfn_to_page(p) {
                        page.set_refcount(0);
                    }
                }
                let mut g = zone.lock.lock_irqsave(self.platform);
                self.buddy(zone, &mut g).free_pages_range(pfn, order, true);
                drop(g);
                freed += nr;
                pfn += nr;
            }
        }
        self.count_vm_events(VmEvent::Pgfree, freed);
    }

    /// Zones as the watermark computations see them, with their table entries.
    fn zone_managed_list(&self) -> ([ZoneManaged; MAX_ZONELIST], [ZoneRef; MAX_ZONELIST], usize) {
        let mut managed = [ZoneManaged {
            zone: ZoneType::Dma,
            managed: 0,
        }; MAX_ZONELIST];
        let mut refs = [NO_ZONE; MAX_ZONELIST];
        let mut n = 0;
        for zr in self.all_zones() {
            let z = self.zone(zr);
            managed[n] = ZoneManaged {
                zone: z.zone_type,
                managed: z.managed_pages(),
            };
            refs[n] = zr;
            n += 1;
        }
        (managed, refs, n)
    }

    /// Compute `min_free_kbytes` from the low memory size (unless a user value is higher)
    /// and everything derived from it (`init_per_zone_wmark_min`).
    pub fn init_per_zone_wmark_min(&self) {
        let (managed, _, n) = self.zone_managed_list();
        let computed = watermark::min_free_kbytes(watermark::lowmem_kbytes(&managed[..n]));
        {
            let mut s = self.sysctl.lock_irqsave(self.platform);
            s.min_free_kbytes = match s.user_min_free_kbytes {
                Some(user) if user >= computed => {
                    log::warn!(
                        "min_free_kbytes is not updated to {computed} because user defined value {user} is preferred"
                    );
                    user
                }
                _ => computed,
            };
        }
        self.setup_per_zone_wmarks();
        self.setup_per_zone_lowmem_reserve();
    }

    /// Recompute every zone's min/low/high from `min_free_kbytes` and
    /// `watermark_scale_factor`, reset the boosts, then resize the pcp lists
    /// (`setup_per_zone_wmarks`).
    pub fn setup_per_zone_wmarks(&self) {
        let s = self.sysctl();
        let (managed, refs, n) = self.zone_managed_list();
        let marks = watermark::setup_per_zone_wmarks(
            &managed[..n],
            s.min_free_kbytes,
            s.watermark_scale_factor,
        );
        for (zr, wm) in refs[..n].iter().zip(marks) {
            let z = self.zone(*zr);
            let _g = z.lock.lock_irqsave(self.platform);
            z.wm.wmark[0].store(wm.min, Ordering::Relaxed);
            z.wm.wmark[1].store(wm.low, Ordering::Relaxed);
            z.wm.wmark[2].store(wm.high, Ordering::Relaxed);
            z.wm.boost.store(0, Ordering::Relaxed);
        }
        self.zone_pcp_update();
    }

    /// Recompute every zone's `lowmem_reserve` from `lowmem_reserve_ratio`
    /// (`setup_per_zone_lowmem_reserve`).
    pub fn setup_per_zone_lowmem_reserve(&self) {
        let ratio = self.sysctl().lowmem_reserve_ratio;
        for n in self.model.nodes() {
            let managed = core::array::from_fn(|i| n.node_zones[i].managed_pages());
            let reserve = setup_zone_lowmem_reserve(&managed, &ratio);
            for (z, r) in n.node_zones.iter().zip(reserve) {
                for (slot, v) in z.wm.lowmem_reserve.iter().zip(r) {
                    slot.store(v, Ordering::Relaxed);
                }
            }
        }
    }

    /// CPUs whose node is `nid`; all CPUs if none is (a node without CPUs is served by
    /// everybody).
    fn nr_cpus_of_node(&self, nid: usize) -> u64 {
        let n = (0..self.percpu.nr_cpus())
            .filter(|&c| self.platform.cpu_to_node(c) == nid)
            .count();
        if n == 0 {
            self.percpu.nr_cpus() as u64
        } else {
            n as u64
        }
    }

    /// Recompute every zone's pcp `high` and `batch` and apply them to every CPU's lists
    /// (`zone_pcp_update`).
    pub fn zone_pcp_update(&self) {
        let fraction = self.sysctl().percpu_pagelist_high_fraction;
        for zr in self.all_zones() {
            let z = self.zone(zr);
            let sizing = pageset_high_and_batch(
                z.managed_pages(),
                z.watermarks().low_wmark_pages(),
                self.nr_cpus_of_node(z.nid),
                fraction,
            );
            z.wm.pageset_high.store(sizing.high, Ordering::Relaxed);
            z.wm.pageset_batch.store(sizing.batch, Ordering::Relaxed);
            if zr.slot == NO_SLOT {
                continue;
            }
            for cpu in 0..self.percpu.nr_cpus() {
                if let Some(pcp) = self.percpu.pcp(cpu, zr.slot as usize) {
                    let _irq = LocalIrqGuard::new(self.platform);
                    let mut l = pcp.lock.lock_irqs_off(self.platform);
                    l.high = sizing.high;
                    l.batch = sizing.batch;
                }
            }
        }
    }

    /// The current tunables.
    pub fn sysctl(&self) -> VmSysctl {
        *self.sysctl.lock_irqsave(self.platform)
    }

    /// Set `vm.min_free_kbytes` and recompute the watermarks. The value is remembered as
    /// the user's, so a later recomputation from the memory size never lowers it.
    pub fn set_min_free_kbytes(&self, kbytes: u64) -> Result<(), SysctlError> {
        VmSysctl::check_min_free_kbytes(kbytes)?;
        {
            let mut s = self.sysctl.lock_irqsave(self.platform);
            s.min_free_kbytes = kbytes;
            s.user_min_free_kbytes = Some(kbytes);
        }
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Set `vm.watermark_scale_factor` and recompute the watermarks.
    pub fn set_watermark_scale_factor(&self, factor: u64) -> Result<(), SysctlError> {
        VmSysctl::check_watermark_scale_factor(factor)?;
        self.sysctl
            .lock_irqsave(self.platform)
            .watermark_scale_factor = factor;
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Set `vm.watermark_boost_factor` (0 disables boosting).
    pub fn set_watermark_boost_factor(&self, factor: u64) -> Result<(), SysctlError> {
        VmSysctl::check_watermark_boost_factor(factor)?;
        self.sysctl
            .lock_irqsave(self.platform)
            .watermark_boost_factor = factor;
        self.boost_factor.store(factor, Ordering::Relaxed);
        Ok(())
    }

    /// Set `vm.percpu_pagelist_high_fraction` and resize the pcp lists.
    pub fn set_percpu_pagelist_high_fraction(&self, fraction: u64) -> Result<(), SysctlError> {
        VmSysctl::check_percpu_pagelist_high_fraction(fraction)?;
        self.sysctl
            .lock_irqsave(self.platform)
            .percpu_pagelist_high_fraction = fraction;
        self.zone_pcp_update();
        Ok(())
    }

    /// Set `vm.lowmem_reserve_ratio` and recompute the reserves.
    pub fn set_lowmem_reserve_ratio(&self, ratio: [u64; MAX_NR_ZONES]) -> Result<(), SysctlError> {
        VmSysctl::check_lowmem_reserve_ratio(&ratio)?;
        self.sysctl.lock_irqsave(self.platform).lowmem_reserve_ratio = ratio;
        self.setup_per_zone_lowmem_reserve();
        Ok(())
    }

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
        let nid = if nid < MAX_NUMNODES && self.online[nid] {
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
    fn __alloc_pages(
        &self,
        gfp: Gfp,
        order: u32,
        preferred_nid: usize,
    ) -> Result<&Page, AllocError> {
        if order == 0
            && let Some(page) = self.alloc_page_fast(gfp, preferred_nid)
        {
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
    fn first_attempt_alloc_flags(&self, gfp: Gfp, ac: &AllocContext) -> AllocFlags {
        let mut alloc_flags = gfp_to_alloc_flags_cma(gfp, AllocFlags::WMARK_LOW);
        if let Some(pref) = ac.preferred {
            let pref_type =
                ZoneType::from_index(pref.zone_idx as usize).unwrap_or(ZoneType::Normal);
            alloc_flags |= alloc_flags_nofragment(
                gfp,
                pref_type,
                self.dma32_populated[pref.nid as usize],
                self.nr_online_nodes,
            );
        }
        alloc_flags
    }

    /// Report and count an impossible request.
    #[cold]
    #[inline(never)]
    fn refuse(&self, gfp: Gfp, order: u32, e: GfpError) -> AllocError {
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
    fn alloc_context(
        &self,
        gfp: Gfp,
        placement: crate::gfp::GfpPlacement,
        nid: usize,
    ) -> AllocContext {
        let nid = nid.min(MAX_NUMNODES - 1);
        let thisnode = gfp.contains(Gfp::THISNODE);
        let zl = &self.zonelists[nid][placement.highest_zoneidx.index()];
        let first = if thisnode {
            zl.entries()
                .iter()
                .copied()
                .find(|&i| i as usize / MAX_NR_ZONES == nid)
        } else {
            zl.entries().first().copied()
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
        let zl = &self.zonelists[ac.nid.min(MAX_NUMNODES - 1)][ac.highest_zoneidx.index()];
        let thisnode = ac.thisnode;
        let nid = ac.nid as u8;
        zl.entries()
            .iter()
            .map(|&i| self.zones[i as usize])
            .filter(move |zr| !thisnode || zr.nid == nid)
    }

    /// The watermark check of the fast path (`zone_watermark_fast`).
    #[inline]
    fn zone_watermark_fast(
        &self,
        zone: &Zone,
        order: u32,
        highest: ZoneType,
        alloc_flags: AllocFlags,
    ) -> bool {
        // The cheap order-0 comparison `watermark::zone_watermark_fast` starts with,
        // reading only the counters it needs.
        if order == 0 && zone_watermark_order0(zone, highest.index(), alloc_flags) {
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
            let zl = &self.zonelists[ac.nid][ac.highest_zoneidx.index()];
            for &i in zl.entries() {
                let zr = self.zones[i as usize];
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
                if let Some(page) = self.rmqueue(zr, zone, order, alloc_flags, ac.migratetype) {
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
    fn rmqueue(
        &self,
        zr: ZoneRef,
        zone: &Zone,
        order: u32,
        alloc_flags: AllocFlags,
        mt: Migratetype,
    ) -> Option<&Page> {
        let mut page = None;
        if pcp_allowed_order(order) {
            page = self.rmqueue_pcplist(zr, zone, order, mt, alloc_flags, true);
        }
        if page.is_none() {
            page = self.rmqueue_buddy(zone, order, alloc_flags, mt);
        }
        let page = page?;
        self.rmqueue_boost_check(zone, alloc_flags);
        Some(page)
    }

    /// After a successful `rmqueue`: a watermark boost raised by a fragmenting fallback
    /// is handed to kswapd by the first allocation allowed to wake it.
    #[inline]
    fn rmqueue_boost_check(&self, zone: &Zone, alloc_flags: AllocFlags) {
        if alloc_flags.contains(AllocFlags::KSWAPD) && zone.test_flag(ZONE_BOOSTED_WATERMARK) {
            zone.wm
                .flags
                .fetch_and(!ZONE_BOOSTED_WATERMARK, Ordering::Relaxed);
            self.wakeup_kswapd(zone);
        }
    }

    /// Wake the background reclaimer after a watermark boost (`wakeup_kswapd`).
    ///
    /// Linux's kswapd, woken here, reclaims until the zone is above its boosted high mark,
    /// then resets the boost and wakes kcompactd. This kernel has nothing kswapd could
    /// reclaim (no page cache, no shrinkers), so its pass would end at once: the boost is
    /// reset here. When a reclaimer (or kcompactd) exists, this becomes its wake-up.
    #[cold]
    fn wakeup_kswapd(&self, zone: &Zone) {
        let _g = zone.lock.lock_irqsave(self.platform);
        zone.wm.boost.store(0, Ordering::Relaxed);
    }

    /// Take a page from this CPU's pcp list for `zone` (`rmqueue_pcplist`). `None` if the
    /// list is busy (being drained by another CPU) or cannot be refilled. Without
    /// `refill` (the order-0 fast path), an empty list is `None` with nothing changed:
    /// refilling is the general path's business.
    #[inline]
    pub(crate) fn rmqueue_pcplist(
        &self,
        zr: ZoneRef,
        zone: &Zone,
        order: u32,
        mt: Migratetype,
        alloc_flags: AllocFlags,
        refill: bool,
    ) -> Option<&Page> {
        let pindex = order_to_pindex(mt, order)?;
        let _irq = LocalIrqGuard::new(self.platform);
        let cpu = self.platform.cpu_id();
        let (hdr, pcp) = self.percpu.header_and_pcp(cpu, zr.slot as usize)?;
        let mut lists = pcp.lock.try_lock_irqs_off(self.platform)?;
        if !refill && lists.list(pindex).is_empty() {
            return None;
        }
        if lists.free_factor != 0 {
            lists.free_factor >>= 1;
        }
        let page = self.__rmqueue_pcplist(
            zone,
            order,
            mt,
            alloc_flags,
            &mut lists,
            pindex,
            Some(hdr),
            refill,
        );
        drop(lists);
        if page.is_some() {
            hdr.__count_vm_events(VmEvent::pgalloc(zone.zone_type), 1 << order);
        }
        page
    }

    /// Pop a page from pcp list `pindex`, refilling it first if empty and `refill` allows
    /// (`__rmqueue_pcplist`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn __rmqueue_pcplist(
        &self,
        zone: &Zone,
        order: u32,
        mt: Migratetype,
        alloc_flags: AllocFlags,
        lists: &mut PcpLists,
        pindex: usize,
        hdr: Option<&PerCpuHeader>,
        refill: bool,
    ) -> Option<&Page> {
        loop {
            if lists.list(pindex).is_empty() {
                if !refill {
                    return None;
                }
                let batch = nr_pcp_alloc(lists.count, lists.high, lists.batch, order);
                let n = self.rmqueue_bulk(zone, order, batch, lists, pindex, mt, alloc_flags, hdr);
                lists.count += n << order;
                if lists.list(pindex).is_empty() {
                    return None;
                }
            }
            let page = self.page_ref(lists.pop_front(pindex)?);
            lists.count -= 1 << order;
            if page_ok_at_alloc(page) {
                return Some(page);
            }
            self.bad_page_at_alloc(page);
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
    /// one zone-lock hold (`rmqueue_bulk`). Returns the blocks moved.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn rmqueue_bulk(
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
        let mut g = zone.lock.lock_irqs_off(self.platform);
        let mut b = self.buddy(zone, &mut g);
        let mut mode = RmqueueMode::Normal;
        let mut i = 0;
        while i < count {
            let Some(page) = b.__rmqueue(order, mt, alloc_flags, &mut mode) else {
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
        self.__count_vm_events(hdr, VmEvent::PcpRefill, 1);
        self.__count_vm_events(hdr, VmEvent::PcpRefillPages, i << order);
        self.count_buddy_events(hdr, ev);
        i
    }

    /// Take a block straight from the buddy lists (`rmqueue_buddy`), including the
    /// highatomic reserve for the requests that may use it.
    #[inline(never)]
    fn rmqueue_buddy(
        &self,
        zone: &Zone,
        order: u32,
        alloc_flags: AllocFlags,
        mt: Migratetype,
    ) -> Option<&Page> {
        loop {
            let mut g = zone.lock.lock_irqsave(self.platform);
            let mut b = self.buddy(zone, &mut g);
            let mut page = None;
            if alloc_flags.contains(AllocFlags::HIGHATOMIC) {
                page = b.__rmqueue_smallest(order, Migratetype::HighAtomic);
            }
            if page.is_none() {
                let mut mode = RmqueueMode::Normal;
                page = b.__rmqueue(order, mt, alloc_flags, &mut mode);
                // Failing now is worse than failing a high-order atomic allocation later:
                // OOM handling and non-blocking requests may use the highatomic reserve.
                if page.is_none() && alloc_flags.intersects(AllocFlags::OOM | AllocFlags::NON_BLOCK)
                {
                    page = b.__rmqueue_smallest(order, Migratetype::HighAtomic);
                }
            }
            let ev = b.events;
            let hdr = self.this_cpu_header();
            self.count_buddy_events(hdr, ev);
            let page = page?;
            self.__count_vm_events(hdr, VmEvent::pgalloc(zone.zone_type), 1 << order);
            drop(g);
            if page_ok_at_alloc(page) {
                return Some(page);
            }
            self.bad_page_at_alloc(page);
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
    fn clear_pages(&self, pfn: u64, order: u32) {
        let va = self.platform.phys_to_virt(pfn << PAGE_SHIFT);
        // SAFETY: the block was just taken off a free list, so no one else owns or maps
        // it; it is RAM the direct map covers (the allocator only manages usable RAM), and
        // the range stays inside the block.
        unsafe { core::ptr::write_bytes(va, 0, (PAGE_SIZE << order) as usize) };
    }

    /// Build compound-page metadata (`prep_compound_page`): `PG_head` on the head, every
    /// tail pointing at it, the order in the first tail.
    fn prep_compound_page(&self, head: &Page, pfn: u64, order: u32) {
        head.set_flags_word_exclusive(head.flags_word() | PageFlags::HEAD.bits());
        let Some(map) = self.mem().section_memmap(pfn) else {
            return;
        };
        // A block never crosses a section, so its descriptors are consecutive.
        let first = (pfn & (PAGES_PER_SECTION - 1)) as usize;
        let tails = map.get(first + 1..first + (1usize << order)).unwrap_or(&[]);
        for tail in tails {
            tail.set_compound_head_exclusive(head);
        }
        if let Some(t) = tails.first() {
            t.set_order_field_exclusive(order);
        }
    }

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
    fn __alloc_pages_slowpath(
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
            // Linux wakes kswapd here, which wakes kcompactd when it is done; there is no
            // kswapd, so kcompactd is woken directly.
            if order > 0 && alloc_flags.contains(AllocFlags::KSWAPD) {
                self.wake_all_kcompactd(order, &ac);
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
    fn nopage(&self, gfp: Gfp, order: u32, ac: &AllocContext) -> Result<&Page, AllocError> {
        if !gfp.contains(Gfp::NOWARN) {
            self.warn_alloc(gfp, order, ac);
        }
        self.count_vm_events(VmEvent::PgallocFail, 1);
        Err(AllocError::NoMemory)
    }

    /// Wake the kcompactd of every node the request may use (what `wake_all_kswapds`
    /// achieves in Linux through kswapd).
    fn wake_all_kcompactd(&self, order: u32, ac: &AllocContext) {
        let mut woken = [false; MAX_NUMNODES];
        for zr in self.zonelist(ac) {
            let nid = zr.nid as usize;
            if !woken[nid] {
                woken[nid] = true;
                self.wakeup_kcompactd(nid, order, ac.highest_zoneidx.index());
            }
        }
    }

    /// Direct reclaim (`__alloc_pages_direct_reclaim`): reclaim, then retry; if that
    /// fails, release the highatomic reserve and drain the pcp lists once more and retry.
    /// Returns the page, if any, and whether reclaim made progress.
    fn __alloc_pages_direct_reclaim(
        &self,
        gfp: Gfp,
        order: u32,
        alloc_flags: AllocFlags,
        ac: &AllocContext,
    ) -> (Option<&Page>, bool) {
        let progress = self.__perform_reclaim(ac);
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
    /// stall and returns the pages freed.
    ///
    /// This kernel has no page cache and no shrinkers; the one kind of memory that can be
    /// given back without a reclaimer is what sits on the CPUs' pcp lists, so that is
    /// what is reclaimed.
    pub(crate) fn __perform_reclaim(&self, ac: &AllocContext) -> u64 {
        self.count_vm_events(VmEvent::allocstall(ac.highest_zoneidx), 1);
        let before = self.nr_pcp_pages();
        self.drain_all_pages();
        before.saturating_sub(self.nr_pcp_pages())
    }

    /// Direct compaction (`__alloc_pages_direct_compact`): compact the zonelist at `prio`
    /// for `order` ([`crate::compaction`]), then take the block a capture handed over or
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
            if page_ok_at_alloc(p) {
                self.prep_new_page(p, order, gfp);
                if let Some(zt) = p.zone_type() {
                    self.count_vm_events(VmEvent::pgalloc(zt), 1 << order);
                }
                page = Some(p);
            } else {
                self.bad_page_at_alloc(p);
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
    /// could pass its min watermark with the free pages it has, and not after
    /// [`MAX_RECLAIM_RETRIES`] rounds without progress; before giving up for good the
    /// highatomic reserve is released (and a release earns one more round).
    fn should_reclaim_retry(
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
        // Nothing is reclaimable but pcp pages, which were just drained: retry only if a
        // zone has the free pages (e.g. another CPU freed some meanwhile).
        self.zonelist(ac).any(|zr| {
            let z = self.zone(zr);
            zone_watermark_ok(
                &z.free_state(),
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
    fn warn_alloc(&self, gfp: Gfp, order: u32, ac: &AllocContext) {
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
        let mut g = zone.lock.lock_irqsave(self.platform);
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
        self.__count_vm_events(self.this_cpu_header(), VmEvent::HighatomicReserve, 1);
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
            let mut g = zone.lock.lock_irqsave(self.platform);
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

    // ---------------------------------------------------------------------------------
    // Bulk allocation.
    // ---------------------------------------------------------------------------------

    /// Fill the empty (`None`) slots among the first `nr` of `out` with order-0 pages
    /// (`alloc_pages_bulk`), from one zone's pcp list under one pcp-lock hold. Returns how
    /// many of the first `nr` slots hold a page afterwards (including those that already
    /// did). Falls back to a single `alloc_pages` when the pcp path cannot serve even one
    /// page; an invalid request fills nothing.
    pub fn alloc_pages_bulk<'a>(
        &'a self,
        gfp: Gfp,
        nr: usize,
        out: &mut [Option<&'a Page>],
    ) -> usize {
        let nr = nr.min(out.len());
        let mut nr_populated = 0;
        while nr_populated < nr && out[nr_populated].is_some() {
            nr_populated += 1;
        }
        if nr_populated == nr {
            return nr_populated;
        }
        let populated_total =
            |out: &[Option<&Page>]| out[..nr].iter().filter(|p| p.is_some()).count();
        if nr - populated_total(out) == 1 {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        }
        let mut alloc_flags = AllocFlags::WMARK_LOW;
        let preferred_nid = self.numa_node_id();
        let ac = match self.prepare_alloc_pages(gfp, 0, preferred_nid, &mut alloc_flags) {
            Ok(ac) => ac,
            Err(e) => {
                self.refuse(gfp, 0, e);
                return populated_total(out);
            }
        };
        let want = (nr - nr_populated) as u64;
        // The first local zone that stays above its watermark after the whole batch.
        let mut chosen = None;
        for zr in self.zonelist(&ac) {
            let z = self.zone(zr);
            if self.nr_online_nodes > 1 && ac.preferred.is_some_and(|p| p.nid != zr.nid) {
                break;
            }
            let mark = z.watermarks().wmark_pages(alloc_flags.wmark()) + want;
            if zone_watermark_ok(
                &z.free_state(),
                0,
                mark,
                ac.highest_zoneidx,
                alloc_flags,
                |o, mt| z.has_free_block(o, mt),
            ) {
                chosen = Some(zr);
                break;
            }
        }
        let Some(zr) = chosen else {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        };
        let zone = self.zone(zr);
        let Some(pindex) = order_to_pindex(ac.migratetype, 0) else {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        };
        let mut nr_account = 0u64;
        {
            let _irq = LocalIrqGuard::new(self.platform);
            let cpu = self.platform.cpu_id();
            let Some((hdr, pcp)) = self.percpu.header_and_pcp(cpu, zr.slot as usize) else {
                drop(_irq);
                return self.bulk_fallback(gfp, nr, out, nr_populated);
            };
            let Some(mut lists) = pcp.lock.try_lock_irqs_off(self.platform) else {
                drop(_irq);
                return self.bulk_fallback(gfp, nr, out, nr_populated);
            };
            while nr_populated < nr {
                if out[nr_populated].is_some() {
                    nr_populated += 1;
                    continue;
                }
                let Some(page) = self.__rmqueue_pcplist(
                    zone,
                    0,
                    ac.migratetype,
                    alloc_flags,
                    &mut lists,
                    pindex,
                    Some(hdr),
                    true,
                ) else {
                    break;
                };
                self.prep_new_page(page, 0, gfp);
                out[nr_populated] = Some(page);
                nr_populated += 1;
                nr_account += 1;
            }
            drop(lists);
            hdr.__count_vm_events(VmEvent::pgalloc(zone.zone_type), nr_account);
        }
        if nr_account == 0 {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        }
        populated_total(out)
    }

    /// One page through the normal path into the next empty slot.
    fn bulk_fallback<'a>(
        &'a self,
        gfp: Gfp,
        nr: usize,
        out: &mut [Option<&'a Page>],
        from: usize,
    ) -> usize {
        if let Some(slot) = out[from..nr].iter().position(|p| p.is_none())
            && let Some(page) = self.alloc_pages(gfp, 0)
        {
            out[from + slot] = Some(page);
        }
        out[..nr].iter().filter(|p| p.is_some()).count()
    }

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
    #[inline]
    pub fn free_pages_page(&self, page: &Page, order: u32) -> Result<(), BadPage> {
        self.__free_pages(page, order)
    }

    /// Linux's name for [`PageAllocator::free_pages_page`].
    #[inline]
    pub fn __free_pages(&self, page: &Page, order: u32) -> Result<(), BadPage> {
        let (pfn, zr, ms) = match self.lookup(page) {
            Ok(v) => v,
            Err(bad) => return self.reject(bad, None),
        };
        if let Err(reason) = check_free_request(page, pfn, order) {
            return self.reject(BadPage::new(Some(pfn), reason), Some(page));
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
    pub fn free_pages(&self, addr: u64, order: u32) -> Result<(), BadPage> {
        if addr == 0 {
            return Ok(());
        }
        match self.virt_to_page(addr) {
            Some(page) => self.free_pages_page(page, order),
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
    fn compound_head_of(&self, page: &Page, pfn: u64) -> Option<(&Page, u64)> {
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
    fn free_block(
        &self,
        page: &Page,
        pfn: u64,
        zr: ZoneRef,
        ms: &MemSection,
        order: u32,
    ) -> Result<(), BadPage> {
        if order == 0 {
            // The common case, without loops: the page itself is the whole block, and one
            // branch tells a clean page from one that needs a closer look.
            let flags = page.flags_word();
            if flags & ORDER0_FREE_REFUSE != 0 || !page_ok_at_free(page, flags) {
                return self.free_order0_unclean(page, pfn, flags);
            }
            page.set_flags_word_exclusive(flags & PAGE_LINKS_MASK);
            page.set_index(0);
        } else {
            self.free_pages_prepare(page, pfn, order)?;
        }
        self.free_unref_page(pfn, page, zr, ms, order);
        Ok(())
    }

    /// An order-0 page that failed the one-branch check: a poisoned page is withheld (it
    /// must never be handed out again, as in Linux); anything else is reported.
    #[cold]
    #[inline(never)]
    fn free_order0_unclean(&self, page: &Page, pfn: u64, flags: u64) -> Result<(), BadPage> {
        if flags & PageFlags::HWPOISON.bits() != 0 {
            return Ok(());
        }
        let reason = page_bad_reason(page).unwrap_or(BadPageReason::CorruptCompound);
        self.reject(BadPage::new(Some(pfn), reason), Some(page))
    }

    /// Check every page of a block whose last reference is gone and reset it for the free
    /// lists (`free_pages_prepare`). A bad block is reported, counted and left out of the
    /// free lists.
    #[inline(never)]
    fn free_pages_prepare(&self, page: &Page, pfn: u64, order: u32) -> Result<(), BadPage> {
        let nr = 1usize << order;
        // A block never crosses a section (sections are aligned and larger than any block),
        // so its descriptors are consecutive in the section's memmap.
        let Some(map) = self.mem().section_memmap(pfn) else {
            return self.reject(
                BadPage::new(Some(pfn), BadPageReason::UnknownPfn),
                Some(page),
            );
        };
        let first = (pfn & (PAGES_PER_SECTION - 1)) as usize;
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
    #[inline(always)]
    fn free_unref_page(&self, pfn: u64, page: &Page, zr: ZoneRef, ms: &MemSection, order: u32) {
        let zone = self.zone(zr);
        let nr = 1u64 << order;
        if pcp_allowed_order(order) && zr.slot != NO_SLOT {
            // The pageblock's type, read without the zone lock as Linux does: a race with a
            // repaint only files the page on another pcp list; the drain rereads it.
            let mt = ms
                .usemap()
                .and_then(|u| Migratetype::from_bits(usemap_get(u, pfn, MIGRATETYPE_MASK) as u8))
                .unwrap_or(Migratetype::Unmovable);
            let pcp_mt = match mt {
                Migratetype::Isolate => None,
                m if m.is_pcptype() => Some(m),
                _ => Some(Migratetype::Movable),
            };
            if let Some(pindex) = pcp_mt.and_then(|m| order_to_pindex(m, order)) {
                let _irq = LocalIrqGuard::new(self.platform);
                let cpu = self.platform.cpu_id();
                if let Some((hdr, pcp)) = self.percpu.header_and_pcp(cpu, zr.slot as usize)
                    && let Some(mut lists) = pcp.lock.try_lock_irqs_off(self.platform)
                {
                    // SAFETY: the page's last reference is gone and it passed the free
                    // checks, so it is on no list; it is a memmap descriptor; we hold the
                    // pcp lock with interrupts disabled.
                    unsafe { lists.push_front(pindex, page) };
                    lists.count += nr;
                    if lists.count >= lists.high {
                        self.free_unref_page_over_high(zone, &mut lists, pindex, hdr);
                    }
                    drop(lists);
                    hdr.__count_vm_events(VmEvent::Pgfree, nr);
                    return;
                }
            }
        }
        self.free_one_page(zone, pfn, order);
        self.count_vm_events(VmEvent::Pgfree, nr);
    }

    /// The pcp list reached `high` after a free: give back a batch, growing with each
    /// consecutive drain (`free_factor`) so a CPU that frees a lot drains in bigger bites.
    #[inline(never)]
    fn free_unref_page_over_high(
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
    fn free_one_page(&self, zone: &Zone, pfn: u64, order: u32) {
        let mut g = zone.lock.lock_irqsave(self.platform);
        self.buddy(zone, &mut g).free_pages_range(pfn, order, false);
    }

    /// Return `count` base pages from a pcp to the buddy lists in one zone-lock hold
    /// (`free_pcppages_bulk`): lists are visited round-robin starting at `pindex`, each
    /// drained from its tail (its coldest pages) until the count is met or it is empty.
    /// Interrupts must be disabled and the pcp lock held.
    #[inline(never)]
    fn free_pcppages_bulk(
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
        let mut g = zone.lock.lock_irqs_off(self.platform);
        let mut b = self.buddy(zone, &mut g);
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
            while let Some(p) = lists.pop_back(idx) {
                let page = self.page_ref(p);
                let pfn = self.mem().page_to_pfn(page);
                remaining -= nr as i64;
                lists.count = lists.count.saturating_sub(nr);
                freed += nr;
                let mt = b.pageblock_mt(pfn);
                b.__free_one_page(pfn, order, mt, false);
                if remaining <= 0 {
                    break;
                }
            }
        }
        drop(g);
        self.__count_vm_events(hdr, VmEvent::PcpDrain, 1);
        self.__count_vm_events(hdr, VmEvent::PcpDrainPages, freed);
    }

    /// Drain CPU `cpu`'s pcp lists of every zone (`drain_pages`). Another CPU may do this:
    /// it takes the pcp lock, which the owner holds only with interrupts disabled for a
    /// bounded time.
    fn drain_pages(&self, cpu: usize) {
        let hdr = self.this_cpu_header();
        for zr in self.all_zones() {
            if zr.slot == NO_SLOT {
                continue;
            }
            let Some(pcp) = self.percpu.pcp(cpu, zr.slot as usize) else {
                continue;
            };
            let _irq = LocalIrqGuard::new(self.platform);
            let mut lists = pcp.lock.lock_irqs_off(self.platform);
            if lists.count == 0 {
                continue;
            }
            let count = lists.count;
            self.free_pcppages_bulk(self.zone(zr), count, &mut lists, 0, hdr);
        }
    }

    /// Return this CPU's pcp pages to the buddy lists (`drain_local_pages`).
    pub fn drain_local_pages(&self) {
        let cpu = {
            let _irq = LocalIrqGuard::new(self.platform);
            self.platform.cpu_id()
        };
        self.drain_pages(cpu);
    }

    /// Return every CPU's pcp pages to the buddy lists (`drain_all_pages`), draining the
    /// other CPUs' lists remotely under their locks.
    pub fn drain_all_pages(&self) {
        let me = {
            let _irq = LocalIrqGuard::new(self.platform);
            self.platform.cpu_id()
        };
        for cpu in 0..self.percpu.nr_cpus() {
            let remote = cpu != me && self.pcp_count_of_cpu(cpu) > 0;
            self.drain_pages(cpu);
            if remote {
                self.count_vm_events(VmEvent::PcpDrainRemote, 1);
            }
        }
    }

    fn pcp_count_of_cpu(&self, cpu: usize) -> u64 {
        self.all_zones()
            .filter(|zr| zr.slot != NO_SLOT)
            .filter_map(|zr| self.percpu.pcp(cpu, zr.slot as usize))
            .map(|pcp| {
                let _irq = LocalIrqGuard::new(self.platform);
                pcp.lock.lock_irqs_off(self.platform).count
            })
            .sum()
    }

    // ---------------------------------------------------------------------------------
    // Addresses and counts.
    // ---------------------------------------------------------------------------------

    /// The direct-map address of a page's memory (`page_address`); 0 for a `Page` that is
    /// not in the memmap.
    pub fn page_address(&self, page: &Page) -> u64 {
        match self.mem().try_page_to_pfn(page) {
            Some(pfn) => self.platform.phys_to_virt(pfn << PAGE_SHIFT) as u64,
            None => 0,
        }
    }

    /// The pfn of a page (`page_to_pfn`). Meaningful for pages of this allocator's memmap
    /// (all pages it hands out); see [`SparseMem::page_to_pfn`].
    #[inline]
    pub fn page_to_pfn(&self, page: &Page) -> u64 {
        self.mem().page_to_pfn(page)
    }

    /// The page of a pfn (`pfn_to_page`), if it has a memmap.
    #[inline]
    pub fn pfn_to_page(&self, pfn: u64) -> Option<&Page> {
        self.mem().pfn_to_page(pfn)
    }

    /// The page whose direct-map address is `addr` (`virt_to_page`), if it is page
    /// aligned, in the direct map, and a managed pfn.
    pub fn virt_to_page(&self, addr: u64) -> Option<&Page> {
        let off = self.direct_map_offset?;
        let pa = addr.wrapping_sub(off);
        if !pa.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let pfn = pa >> PAGE_SHIFT;
        let page = self.mem().pfn_to_page(pfn)?;
        self.lookup(page).ok()?;
        (self.platform.phys_to_virt(pa) as u64 == addr).then_some(page)
    }

    /// Free pages on the buddy lists of all zones (Σ `NR_FREE_PAGES`; pcp pages are not
    /// included).
    pub fn nr_free_pages(&self) -> u64 {
        self.all_zones()
            .map(|zr| self.zone(zr).nr_free_pages())
            .sum()
    }

    /// Pages on all CPUs' pcp lists.
    pub fn nr_pcp_pages(&self) -> u64 {
        (0..self.percpu.nr_cpus())
            .map(|c| self.pcp_count_of_cpu(c))
            .sum()
    }

    /// Pages managed by the allocator (`totalram_pages`).
    pub fn totalram_pages(&self) -> u64 {
        self.all_zones()
            .map(|zr| self.zone(zr).managed_pages())
            .sum()
    }

    /// The zone `nid`/`zt`, if it exists.
    pub fn zone_of(&self, nid: usize, zt: ZoneType) -> Option<&Zone> {
        self.zone_ref(nid, zt.index()).map(|zr| self.zone(zr))
    }

    /// The zone order of node `nid`'s zonelist, as `(nid, zone)` pairs.
    pub fn zonelist_order(&self, nid: usize) -> impl Iterator<Item = (usize, ZoneType)> + '_ {
        let zl = &self.zonelists[nid.min(MAX_NUMNODES - 1)][MAX_NR_ZONES - 1];
        zl.entries()
            .iter()
            .map(|&i| self.zones[i as usize])
            .map(|zr| {
                (
                    zr.nid as usize,
                    ZoneType::from_index(zr.zone_idx as usize).unwrap_or(ZoneType::Normal),
                )
            })
    }

    /// Run `f` on CPU `cpu`'s pcp lists for zone `nid`/`zt`, under their lock.
    pub fn with_pcp<R>(
        &self,
        cpu: usize,
        nid: usize,
        zt: ZoneType,
        f: impl FnOnce(&PcpLists) -> R,
    ) -> Option<R> {
        let zr = self.zone_ref(nid, zt.index())?;
        let pcp = self.percpu.pcp(cpu, zr.slot as usize)?;
        let _irq = LocalIrqGuard::new(self.platform);
        let l = pcp.lock.lock_irqs_off(self.platform);
        Some(f(&l))
    }
}

/// The checks made before a reference is dropped: anything that fails here leaves the page
/// untouched.
#[inline]
fn check_free_request(page: &Page, pfn: u64, order: u32) -> Result<(), BadPageReason> {
    if order > MAX_PAGE_ORDER {
        return Err(BadPageReason::OrderTooLarge { order });
    }
    let flags = page.flags();
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
    if pfn & ((1u64 << order) - 1) != 0 {
        return Err(BadPageReason::Misaligned { order });
    }
    let allocated = page.order_field();
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
const ORDER0_FREE_REFUSE: u64 = PageFlags::HWPOISON.bits() | PageFlags::HEAD.bits();

/// Node `nid`'s zonelist for requests whose highest zone is `highest` (`build_zonelists`):
/// its own zones highest first (Movable, Normal, DMA32, DMA), then the other nodes' in
/// increasing distance, which without a distance table is increasing node id after `nid`,
/// wrapping around. Zones above `highest` and zones that manage nothing are left out.
fn build_zonelist(
    zones: &[ZoneRef; MAX_ZONELIST],
    online: &[bool; MAX_NUMNODES],
    nid: usize,
    highest: usize,
) -> Zonelist {
    let mut zl = EMPTY_ZONELIST;
    if !online[nid] {
        return zl;
    }
    for k in 0..MAX_NUMNODES {
        let n = (nid + k) % MAX_NUMNODES;
        if !online[n] {
            continue;
        }
        for zt in (0..=highest).rev() {
            let i = n * MAX_NR_ZONES + zt;
            let zr = zones[i];
            // SAFETY: non-null entries point at zones of the model being handed over.
            if !zr.zone.is_null() && unsafe { (*zr.zone).managed_zone() } {
                zl.idx[zl.len as usize] = i as u8;
                zl.len += 1;
            }
        }
    }
    zl
}

/// `va - pa` of the platform's direct map if it is linear over the managed memory (checked
/// at its first and last free pfn), for `virt_to_page`.
fn direct_map_offset<P: Platform + ?Sized>(model: &MemoryModel, platform: &P) -> Option<u64> {
    let first = model.free_pfn_ranges().next()?;
    let last = model.free_pfn_ranges().last()?;
    let pa0 = first.start_pfn << PAGE_SHIFT;
    let pa1 = (last.end_pfn - 1) << PAGE_SHIFT;
    let off0 = (platform.phys_to_virt(pa0) as u64).wrapping_sub(pa0);
    let off1 = (platform.phys_to_virt(pa1) as u64).wrapping_sub(pa1);
    (off0 == off1).then_some(off0)
}

impl<P: Platform + 'static> core::fmt::Debug for PageAllocator<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageAllocator")
            .field("nr_free_pages", &self.nr_free_pages())
            .field("totalram_pages", &self.totalram_pages())
            .field("nr_cpus", &self.percpu.nr_cpus())
            .finish_non_exhaustive()
    }
}

mod fastpath;
use fastpath::{FastPlan, NR_GFP_CLASSES, zone_watermark_order0};

#[cfg(all(test, feature = "std"))]
mod tests;
