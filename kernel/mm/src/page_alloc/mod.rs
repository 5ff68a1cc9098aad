//! The zoned page allocator: the allocation and free paths, per-CPU lists, watermarks and
//! reserves (Linux: `mm/page_alloc.c`).
//!
//! # The allocation path
//!
//! ```text
//! alloc_pages(gfp, order)
//!   __alloc_pages
//!     alloc_pages_fast           orders 0-3 and 9: the first zone's step below, with the
//!                                class's answers computed once (fastpath.rs); when that
//!                                zone's pcp list cannot serve it, nothing changed and the
//!                                rest follows
//!     prepare_alloc_pages        gfp -> highest zone, migratetype, zonelist (or an error)
//!     get_page_from_freelist     fast path: WMARK_LOW, ALLOC_NOFRAGMENT when it pays
//!       for each zone of the zonelist up to the highest allowed:
//!         zone_watermark_fast    enough free pages above the mark + lowmem_reserve?
//!         rmqueue
//!           rmqueue_pcplist      orders 0-3 and 9: this CPU's list, refilled by
//!                                rmqueue_bulk (one zone-lock hold per batch)
//!           rmqueue_buddy        everything else: __rmqueue under the zone lock
//!         prep_new_page          refcount 1, order tag, __GFP_ZERO, __GFP_COMP
//!     __alloc_pages_slowpath     wake kswapd (or kcompactd), WMARK_MIN with the reserves
//!                                the gfp earns, async direct compaction for costly
//!                                orders, direct reclaim + pcp drain, direct compaction with
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
//! page state is checked ([`crate::page_alloc::bad_page`]; for a single page that is one branch, and
//! the reason is only worked out for a page that fails it). Orders 0-3 and 9 go to this
//! CPU's pcp list (drained in a batch when it reaches `high`), the rest straight
//! to the buddy lists (`free_one_page`). Freed pages go to the free list of their
//! pageblock's current type.
//!
//! # Which descriptors are checked
//!
//! A 2 MiB block has 512 `struct Page`s, 32 KiB of metadata: checking and resetting all
//! of them at every free and checking them again at every allocation made an order-9
//! free cost about a hundred times buddy_system_allocator's (a miss stream in bulk, and
//! still some 12,000 instructions when the block stays cached). Linux pays the same only
//! under its `check_pages_enabled` key (`CONFIG_DEBUG_VM`, `init_on_free`,
//! `debug_pagealloc`); by default it still clears every tail's flags at free. We split
//! it the same way and go one step further, with [`bad_page::PageChecks`]:
//!
//! - **By default ([`bad_page::PageChecks::Head`]) a multi-page operation touches O(1)
//!   descriptors.** At free the head is checked ([`bad_page::page_ok_at_free`]: refcount,
//!   mapcount, mapping, private, `PAGE_FLAGS_CHECK_AT_FREE`) and reset; at allocation the
//!   head is checked ([`bad_page::page_ok_at_alloc`]). The tails of a non-compound block
//!   are neither read nor written. This is sound because the allocator itself never
//!   dirties such a tail: splitting ([`buddy::Buddy::expand`]) writes only the heads of
//!   the halves it puts back, merging only unlinks the buddy's head (clearing its
//!   `PG_buddy` and order), `prep_new_page` writes the head's order tag and refcount, and
//!   a freed block's former sub-block heads were reset when they were unlinked. So a tail
//!   is dirty only if the block's owner left it dirty; the owner's contract (Linux's too)
//!   is to return the tails as it got them. Such dirt is not lost: the descriptor is
//!   checked in full the moment it heads a block of its own (a partial free of a shared
//!   non-compound block frees the tails as blocks, each checked; a later split hands it
//!   out as a head and `check_new_page` withholds it).
//! - **Compound pages are always swept.** `__GFP_COMP` made the allocator write every
//!   tail (`PG_tail`, the head pointer, the order in the first tail), so their free walks
//!   the tails anyway to undo that, checking each on the way (the lines are being written
//!   already, so the check is nearly free). That is O(2^order), as in Linux.
//! - **With [`bad_page::PageChecks::Full`] (`page_checks=full`, set at boot or through
//!   [`PageAllocator::set_page_checks`]) every descriptor of every block is checked and
//!   reset at free and checked again at allocation** (`check_new_pages`), so a tail left
//!   dirty by its owner is reported at the free that returns it, naming the page. The host
//!   model tests and the bad-page tests run with it on (the model test also runs one
//!   sequence in four with the default); debug runs should too.
//!
//! The order-0 path is unaffected: a single page is its own head and is always checked.
//!
//! # Reference counts
//!
//! An allocation returns its head page with a reference count of 1. [`PageAllocator::get_page`]
//! and [`PageAllocator::put_page`] take and drop references; `put_page` on a tail page of a
//! compound page works on the head. [`PageAllocator::free_pages`] is Linux's
//! `__free_pages`: it drops one reference, and if that was not the last one and the block
//! is not compound, the other holders keep only the first page: the rest is freed in
//! chunks of decreasing order (`page + 2^(order-1)` at `order - 1`, down to `page + 1` at
//! order 0).
//!
//! Dropping a sole reference costs one atomic operation: a count of exactly 1 is taken to
//! 0 in one compare-and-exchange ([`crate::model::page::Page::ref_freeze`]), which also
//! proves that no other holder exists, since nobody can take a reference from 0. Only
//! when the count is higher does a non-compound multi-page free first clear the head's
//! order tag (a second atomic), so that another holder's last `put_page` frees only the
//! first page. Atomic read-modify-writes are the largest single cost of a free: on the host
//! simulation, the reference drop and a spinlock-style pcp lock took about 10 ns of an
//! order-0 free's 22 (measured by making each one plain, which is unsound and was done
//! only to measure). Linux has both. Here the pcp lock has none on a platform with a
//! cross-CPU barrier ([`crate::port::pcp_lock`]: the owner CPU takes its lists with plain
//! stores, and the rare remote taker pays an IPI), so an order-0 free makes one atomic
//! read-modify-write, the reference drop, which speculative `get_unless_zero` holders
//! (compaction, rmap) make necessary.
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
//! Page reclaim lives in [`crate::reclaim`]: direct reclaim
//! (`PageAllocator::__perform_reclaim`) shrinks the page cache's LRU lists and the
//! shrinkers, then drains the pcp lists; kswapd, on a port that runs it
//! ([`crate::port::platform::Platform::has_kswapd`]), is woken from the slow path and by
//! watermark boosts and wakes kcompactd when done. On a port without kswapd, kcompactd is
//! woken straight from the slow path and boosts are dropped when handed over. Direct compaction
//! (`PageAllocator::__alloc_pages_direct_compact`, [`crate::movement::compaction`]) is the slow
//! path's real weapon against high-order failures. There is no OOM killer: an allocation
//! that cannot be satisfied fails, loudly, and is counted.

pub mod bad_page;
pub mod buddy;
pub mod capture;
pub mod fail;
pub mod gfp;
pub mod pcp;
pub mod percpu;
pub mod sysctl;
pub mod watermark;

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::model::list::PageList;
use crate::model::memblock::MemblockError;
use core::mem::MaybeUninit;

use crate::InitError;
use crate::model::memmap::FirmwareRanges;
use crate::model::mm_init::{MemoryModel, ModelParams};
use crate::model::mmzone::{
    MAX_NR_ZONES, MAX_NUMNODES, MAX_PAGE_ORDER, Migratetype, PAGE_ALLOC_COSTLY_ORDER, PAGE_SHIFT,
    PAGE_SIZE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
};
use crate::model::page::{PAGE_LINKS_MASK, Page, PageFlags};
use crate::model::pageblock::{MIGRATETYPE_MASK, usemap_get};
use crate::model::sparse::{MemSection, SparseMem};
use crate::model::zone::{ZONE_BOOSTED_WATERMARK, Zone, counter_add};
use crate::movement::compaction::{CompactPriority, CompactResult};
use crate::page_alloc::bad_page::{
    BadPage, BadPageReason, ReportLimit, page_bad_reason, page_ok_at_free,
};
use crate::page_alloc::buddy::{Buddy, BuddyEvents, RmqueueMode, migratetype_is_mergeable};
use crate::page_alloc::capture::CaptureSlots;
use crate::page_alloc::gfp::{
    AllocFlags, Gfp, GfpError, alloc_flags_nofragment, gfp_pfmemalloc_flags, gfp_to_alloc_flags,
    gfp_to_alloc_flags_cma, validate,
};
use crate::page_alloc::pcp::{
    NR_PCP_LISTS, PcpLists, nr_pcp_alloc, nr_pcp_free, order_to_pindex, pageset_high_and_batch,
    pcp_allowed_order, pindex_to_order,
};
use crate::page_alloc::percpu::{PerCpu, PerCpuHeader};
use crate::page_alloc::sysctl::{SysctlError, VmSysctl};
use crate::page_alloc::watermark::{ZoneManaged, setup_zone_lowmem_reserve, zone_watermark_ok};
use crate::port::platform::{LocalIrqGuard, Platform};
use crate::port::sync::SpinLock;
use crate::report::vmstat::{NR_VM_EVENT_ITEMS, VmEvent};

/// Reclaim retries without progress before giving up (`MAX_RECLAIM_RETRIES`).
pub const MAX_RECLAIM_RETRIES: u32 = 16;
/// Extra rounds a `__GFP_NOFAIL` request retries (with part of the min reserve) before it
/// fails anyway. Linux loops forever; with no reclaim and no OOM killer that would only
/// hang the caller, so the promise is kept as far as memory allows and then broken loudly.
pub const NOFAIL_RETRIES: u32 = 16;

/// `ZoneRef::slot` of a zone without pcp lists.
const NO_SLOT: u16 = u16::MAX;

/// Why the allocator could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The platform reports no CPUs.
    NoCpus,
    /// No memory for the per-CPU areas.
    PerCpu(MemblockError),
    /// No zone has managed pages.
    NoManagedZone,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::NoCpus => f.write_str("page allocator: the platform reports 0 CPUs"),
            StartError::PerCpu(e) => write!(f, "page allocator: no memory for per-CPU areas: {e}"),
            StartError::NoManagedZone => f.write_str("page allocator: no zone has pages to manage"),
        }
    }
}

impl core::error::Error for StartError {}

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

impl core::error::Error for AllocError {}

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
pub struct PageAllocator<P: Platform> {
    model: MemoryModel,
    /// The port, owned: a kernel whose platform data is known only at run time (a
    /// physical-memory offset, say) passes it by value; one that shares a static passes
    /// `&'static` it (references to platforms are platforms too).
    platform: P,
    /// Bit `nid` set for every online node (one with memory). The per-node tables (pcp
    /// slots, zonelists, fast-path plans) are in each node's descriptor ([`zonelist`]).
    online: u64,
    nr_online_nodes: usize,
    first_online_node: usize,
    /// The interleave rotor: the last node [`PageAllocator::alloc_pages_interleave`] used.
    interleave_next: AtomicUsize,
    percpu: PerCpu,
    sysctl: SpinLock<VmSysctl>,
    boost_factor: AtomicU64,
    direct_map_offset: Option<u64>,
    /// Events counted by a CPU whose id is outside `0..nr_cpus` (a platform bug, counted
    /// rather than lost).
    stray_events: [AtomicU64; NR_VM_EVENT_ITEMS],
    /// Floods of bad-page reports are thinned out (Linux allows bursts of 60).
    bad_page_limit: ReportLimit,
    /// [`bad_page::PageChecks`] as a `u8` (0 head, 1 full): read on every multi-page
    /// free and allocation.
    page_checks: core::sync::atomic::AtomicU8,
    /// Floods of allocation-failure and refusal reports are thinned out (Linux: 10 per 5 s).
    warn_limit: ReportLimit,
    /// Every CPU's compaction capture slot ([`crate::movement::compaction`]).
    capture: CaptureSlots,
    /// Anon regions (movable "user memory") and their descriptors ([`crate::movement::rmap`]).
    pub(crate) anon_regions: crate::movement::rmap::RegionTable,
    /// The CMA areas ([`crate::movement::cma`]).
    pub(crate) cma: crate::movement::cma::CmaAreas,
    /// Fault injection ([`fail`]): off unless asked for.
    fail: fail::FailPageAlloc,
    /// LRU lists, page cache, shrinkers, kswapd ([`crate::reclaim`]).
    pub(crate) reclaim: crate::reclaim::ReclaimState,
    /// Unit tests run a twin machine with the fast path off to compare the two.
    #[cfg(test)]
    fast_path_off: core::sync::atomic::AtomicBool,
}

// SAFETY: the raw zone pointers lead into node descriptors owned by `model` (memblock
// memory never freed while the model lives), whose mutable state is atomic or behind
// spinlocks; `PerCpu` and `MemoryModel` are `Send + Sync`; `P: Sync` makes `&P` shareable.
unsafe impl<P: Platform> Send for PageAllocator<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for PageAllocator<P> {}

impl<P: Platform> PageAllocator<P> {
    /// Take over the memory model: allocate the per-CPU areas from memblock, build the
    /// zonelists, hand every free page to the buddy lists (`memblock_free_all`) and size
    /// watermarks, reserves and pcp lists (`init_per_zone_wmark_min`).
    ///
    /// The allocator is returned by value and is large (tens of KiB, see
    /// [`core::mem::size_of`]), and building it this way needs a stack several times its
    /// size. A kernel on a small boot stack uses [`PageAllocator::init_in`] instead, which
    /// builds the model and the allocator in place.
    pub fn new(model: MemoryModel, platform: P) -> Result<Self, StartError> {
        let mut slot = MaybeUninit::<Self>::uninit();
        let p = slot.as_mut_ptr();
        // SAFETY: `p` points to `slot`, valid for writes of `Self`.
        unsafe { core::ptr::addr_of_mut!((*p).model).write(model) };
        // SAFETY: the model field was initialised just above; `p` is valid for writes.
        unsafe { Self::start_at(p, platform)? };
        // SAFETY: `start_at` returned `Ok`, so every field of `slot` is initialised.
        Ok(unsafe { slot.assume_init() })
    }

    /// Build the memory model and the allocator in place in `slot` and hand back a
    /// reference: [`MemoryModel::init`] followed by [`PageAllocator::new`], without ever
    /// holding the model or the allocator by value. Init then runs on a small stack (the
    /// crate's tests run it, and every public entry point, on a 32 KiB stack).
    ///
    /// `slot` is typically a `static` (wrapped so that it can be handed out once) or, on the
    /// host, a `Box<MaybeUninit<_>>`. The allocator lives as long as the `slot` borrow:
    /// with a `&'static mut` slot it is `&'static`. Nothing in it is ever dropped (an
    /// allocator's memory is never handed back), so the platform `P` is not dropped either.
    /// The memory the allocator manages must stay mapped, through `platform`, for as long
    /// as the returned reference is used. On error `slot` is left partly written; it needs
    /// no drop and may be reused.
    pub fn init_in<'a>(
        slot: &'a mut MaybeUninit<Self>,
        platform: P,
        ranges: impl FirmwareRanges,
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
    ) -> Result<&'a Self, InitError> {
        let p = slot.as_mut_ptr();
        // SAFETY: `p` points to `slot`, so the `model` field is valid for writes as a
        // `MaybeUninit<MemoryModel>` (same layout as `MemoryModel`), and nothing else
        // refers to it while this reference lives.
        let model_slot =
            unsafe { &mut *core::ptr::addr_of_mut!((*p).model).cast::<MaybeUninit<MemoryModel>>() };
        MemoryModel::init_in(model_slot, &platform, ranges, extra_reserved, params)?;
        // SAFETY: the model field was initialised by `init_in` (it returned `Ok`); `p` is
        // valid for writes.
        unsafe { Self::start_at(p, platform)? };
        // SAFETY: `start_at` returned `Ok`, so every field of `*slot` is initialised.
        let alloc = unsafe { slot.assume_init_ref() };
        alloc.cma_init_from_params(params.cma);
        Ok(alloc)
    }

    /// The body of [`PageAllocator::new`]: initialise every field of `*p` but the model, in
    /// place (large tables element by element, so that no table-sized temporary is built
    /// on the stack).
    ///
    /// # Safety
    ///
    /// `p` must be valid for writes of `Self` and aligned, with its `model` field already
    /// initialised. On `Ok` every field is initialised; on `Err` only the model is (and
    /// `platform` has been dropped).
    unsafe fn start_at(p: *mut Self, platform: P) -> Result<(), StartError> {
        // SAFETY: the caller guarantees the model field is initialised, and nothing else
        // refers to `*p` while this reference lives.
        let model = unsafe { &mut *core::ptr::addr_of_mut!((*p).model) };
        let nr_cpus = platform.nr_cpus();
        if nr_cpus == 0 {
            return Err(StartError::NoCpus);
        }
        // pcp slots for every zone that has pages to manage, kept in the node.
        let mut nr_slots = 0;
        let mut online = 0u64;
        for nid in 0..MAX_NUMNODES {
            let Some(n) = model.node_mut(nid) else {
                continue;
            };
            online |= 1 << nid;
            for zt in 0..MAX_NR_ZONES {
                n.alloc.slots[zt] = if n.node_zones[zt].managed_zone() {
                    nr_slots += 1;
                    nr_slots as u16 - 1
                } else {
                    NO_SLOT
                };
            }
        }
        if nr_slots == 0 {
            return Err(StartError::NoManagedZone);
        }
        let percpu =
            PerCpu::alloc(model, &platform, nr_cpus, nr_slots).map_err(StartError::PerCpu)?;
        let capture = CaptureSlots::alloc(model, &platform, nr_cpus).map_err(StartError::PerCpu)?;

        // Nodes some CPU allocates from (`build_zonelists` prefers CPU-less nodes on ties).
        let has_cpus = (0..nr_cpus)
            .map(|cpu| platform.cpu_to_node(cpu))
            .filter(|&n| n < MAX_NUMNODES)
            .fold(0u64, |m, n| m | 1 << n);
        let mut node_load = [0u32; MAX_NUMNODES];
        for nid in 0..MAX_NUMNODES {
            if online & (1 << nid) != 0 {
                zonelist::build_zonelists(model, online, has_cpus, &mut node_load, nid);
            }
        }
        let nr_online_nodes = online.count_ones() as usize;
        let first_online_node = online.trailing_zeros() as usize;
        let direct_map_offset = direct_map_offset(model, &platform);

        // SAFETY: the caller guarantees `p` is valid for writes of `Self`; every field but
        // the (already initialised) model is written exactly once below, the tables entry
        // by entry, before `*p` is read as a whole.
        unsafe {
            use core::ptr::addr_of_mut;
            addr_of_mut!((*p).platform).write(platform);
            addr_of_mut!((*p).online).write(online);
            addr_of_mut!((*p).nr_online_nodes).write(nr_online_nodes);
            addr_of_mut!((*p).first_online_node).write(first_online_node);
            addr_of_mut!((*p).interleave_next).write(AtomicUsize::new(first_online_node));
            addr_of_mut!((*p).percpu).write(percpu);
            addr_of_mut!((*p).sysctl).write(SpinLock::new(VmSysctl::default()));
            addr_of_mut!((*p).boost_factor)
                .write(AtomicU64::new(VmSysctl::default().watermark_boost_factor));
            addr_of_mut!((*p).direct_map_offset).write(direct_map_offset);
            let stray = addr_of_mut!((*p).stray_events).cast::<AtomicU64>();
            for i in 0..NR_VM_EVENT_ITEMS {
                stray.add(i).write(AtomicU64::new(0));
            }
            addr_of_mut!((*p).bad_page_limit).write(ReportLimit::new(60));
            addr_of_mut!((*p).page_checks).write(core::sync::atomic::AtomicU8::new(0));
            addr_of_mut!((*p).warn_limit).write(ReportLimit::new(10));
            addr_of_mut!((*p).capture).write(capture);
            crate::movement::rmap::RegionTable::init_at(addr_of_mut!((*p).anon_regions));
            addr_of_mut!((*p).cma).write(crate::movement::cma::CmaAreas::new());
            addr_of_mut!((*p).fail).write(fail::FailPageAlloc::new());
            crate::reclaim::ReclaimState::init_at(addr_of_mut!((*p).reclaim));
            #[cfg(test)]
            addr_of_mut!((*p).fast_path_off).write(core::sync::atomic::AtomicBool::new(false));
        }
        // SAFETY: every field was initialised above; nothing else refers to `*p`.
        let alloc = unsafe { &mut *p };
        alloc.fill_fast_plans();
        alloc.memblock_free_all();
        alloc.init_per_zone_wmark_min();
        Ok(())
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
        &self.platform
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

    /// The zone `nid`/`zt` as the allocator's tables refer to it, if the node is online
    /// (every zone of an online node exists, maybe empty). O(1): `NODE_DATA(nid)`, then
    /// the node's own table.
    #[inline]
    pub(crate) fn zone_ref(&self, nid: usize, zt: usize) -> Option<ZoneRef> {
        let node = self.model.node(nid)?;
        Some(ZoneRef {
            zone: node.node_zones.get(zt)?,
            slot: node.alloc.slots[zt],
            nid: nid as u8,
            zone_idx: zt as u8,
        })
    }

    /// The zone of a zonelist entry (`nid * MAX_NR_ZONES + zone index`).
    #[inline]
    fn zonelist_zone(&self, i: u8) -> Option<ZoneRef> {
        self.zone_ref(i as usize / MAX_NR_ZONES, i as usize % MAX_NR_ZONES)
    }

    /// Every existing zone, node by node, lowest zone first.
    pub(crate) fn all_zones(&self) -> impl Iterator<Item = ZoneRef> + '_ {
        self.online_nodes()
            .flat_map(move |nid| (0..MAX_NR_ZONES).filter_map(move |zt| self.zone_ref(nid, zt)))
    }

    /// True if node `nid` is online (has memory).
    #[inline]
    pub(crate) fn node_online(&self, nid: usize) -> bool {
        nid < MAX_NUMNODES && self.online & (1 << nid) != 0
    }

    /// Node `nid`'s zonelist for requests whose highest zone is `highest`, as zone
    /// indices; empty for an offline node.
    #[inline]
    pub(crate) fn node_zonelist(&self, nid: usize, highest: usize) -> &[u8] {
        self.model
            .node(nid)
            .map_or(&[], |n| n.alloc.zonelist(highest))
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
        if self.node_online(nid) {
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
    fn count_vm_events_irqs_off(&self, hdr: Option<&PerCpuHeader>, ev: VmEvent, n: u64) {
        match hdr {
            Some(h) => h.count_vm_events_irqs_off(ev, n),
            None => {
                self.stray_events[ev.index()].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Count `n` events (`count_vm_events`).
    pub(crate) fn count_vm_events(&self, ev: VmEvent, n: u64) {
        let _irq = LocalIrqGuard::new(&self.platform);
        self.count_vm_events_irqs_off(self.this_cpu_header(), ev, n);
    }

    fn count_buddy_events(&self, hdr: Option<&PerCpuHeader>, ev: BuddyEvents) {
        if ev.fallback != 0 {
            self.count_vm_events_irqs_off(hdr, VmEvent::PgallocFallback, ev.fallback);
        }
        if ev.claim != 0 {
            self.count_vm_events_irqs_off(hdr, VmEvent::PageblockClaim, ev.claim);
        }
        if ev.boost != 0 {
            self.count_vm_events_irqs_off(hdr, VmEvent::WatermarkBoost, ev.boost);
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
    /// to this CPU's armed compaction capture ([`crate::movement::compaction`]).
    #[inline]
    pub(crate) fn buddy<'m, 'g>(
        &'m self,
        zone: &'g Zone,
        fa: &'g mut crate::model::free_area::FreeAreas,
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
        (0..MAX_NUMNODES).filter(|&n| self.node_online(n))
    }

    /// Change tunables that need no recomputation (the compaction ones).
    pub(crate) fn update_sysctl(&self, f: impl FnOnce(&mut VmSysctl)) {
        f(&mut self.sysctl.lock_irqsave(&self.platform));
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
        let mut g = zone.lock.lock_irqsave(&self.platform);
        let mut b = self.buddy(zone, &mut g);
        // SAFETY: as above.
        while let Some(p) = unsafe { ok.pop_front() } {
            let pfn = self.mem().page_to_pfn(self.page_ref(p));
            let mt = b.pageblock_mt(pfn);
            b.free_one_page(pfn, 0, mt, false);
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

    /// The zone order of node `nid`'s zonelist, as `(nid, zone)` pairs (empty for an
    /// offline node).
    pub fn zonelist_order(&self, nid: usize) -> impl Iterator<Item = (usize, ZoneType)> + '_ {
        self.node_zonelist(nid, MAX_NR_ZONES - 1)
            .iter()
            .filter_map(|&i| self.zonelist_zone(i))
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
        let l = pcp.lock.lock(&self.platform);
        Some(f(&l))
    }
}

impl<P: Platform> core::fmt::Debug for PageAllocator<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageAllocator")
            .field("nr_free_pages", &self.nr_free_pages())
            .field("totalram_pages", &self.totalram_pages())
            .field("nr_cpus", &self.percpu.nr_cpus())
            .finish_non_exhaustive()
    }
}

mod bulk;
mod fastpath;
mod free;
mod freelist;
mod highatomic;
mod init;
mod numa;
use init::direct_map_offset;
mod slowpath;
use fastpath::{FastPlan, NR_GFP_CLASSES, zone_watermark_quick};
pub(crate) mod zonelist;

#[cfg(all(test, feature = "std"))]
mod tests;
