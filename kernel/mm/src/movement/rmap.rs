//! Movable "user memory" and its reverse map (Linux: anonymous VMAs and `anon_vma` rmap).
//!
//! Compaction can only move a page if it can find and rewrite every page-table entry that
//! maps it. This kernel has no processes, so its "user memory" is a set of *anon regions*:
//! ranges of the platform's movable virtual window ([`MovableMapping::movable_va_range`](crate::port::platform::MovableMapping::movable_va_range)) whose
//! pages are allocated with a movable GFP (normally `GFP_HIGHUSER_MOVABLE`) and mapped one
//! 4 KiB PTE each. Every such page records its owner in `mapping` (the region's descriptor,
//! tagged [`crate::model::page::PAGE_MAPPING_ANON`]) and its page offset in `index`, so the one
//! virtual address that maps it is `region.start + index * PAGE_SIZE`: the reverse map is
//! O(1), exactly as Linux's `vma_address()` for an anon page with a single mapping.
//! `mapcount` counts that mapping (1 while mapped), `refcount` holds the mapping's
//! reference plus any temporary ones (isolation, pins); the page lock serialises zap and
//! migration.
//!
//! # The region table
//!
//! Region descriptors live in a fixed table inside the allocator (no heap in this crate),
//! so a descriptor's address is stable for as long as the allocator lives *and does not
//! move*: the kernel's allocator is a static, and [`crate::port::sim::SimAllocator`] boxes its
//! allocator for the same reason. The reverse map never dereferences a page's `mapping`
//! blindly: it turns the pointer back into a slot number by address arithmetic and checks
//! that it lands on a descriptor of this table, so even a page of a moved allocator reads
//! as "not anon" rather than as someone else's memory.
//!
//! A handle ([`RegionId`]) is a slot plus a generation. Each slot has one atomic state
//! word holding the generation, a "live" bit, a "dying" bit and a count of operations in
//! progress. Operations on a region (populate, zap, pfn, check) enter it like a reader of
//! Linux's `mmap_lock`; [`PageAllocator::anon_region_destroy`] is the writer: it marks the
//! region dying (new operations get [`RegionError::Stale`]), waits for the operations in
//! progress, zaps every page and only then frees the slot. Because the generation is in
//! the same word as the counts, a stale handle can never enter a reused slot (no ABA).
//! Creating a region and freeing a slot take the table's spinlock, which also makes the
//! first-fit search for virtual space race-free.
//!
//! # Cooperation with migration
//!
//! Populate, zap and migration each hold the page lock while they change a page's PTE
//! and its `mapping`/`index`/`mapcount` together, so under the page lock the metadata and
//! the PTE agree. A zap that meets a migration entry waits until migration has installed
//! the new page and zaps that one instead; a migration that finds the extra reference of
//! a zap in progress backs off and retries ([`crate::movement::migrate`]).

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::mmzone::PAGE_SIZE;
use crate::model::page::{PAGE_MAPPING_ANON, PAGE_MAPPING_FLAGS, Page, PageFlags};
use crate::page_alloc::PageAllocator;
use crate::page_alloc::gfp::{Gfp, validate};
use crate::port::platform::{Platform, Pte, PteError};
use crate::port::sync::SpinLock;
use crate::report::vmstat::VmEvent;

/// Most anon regions that can exist at once.
pub const MAX_ANON_REGIONS: usize = 256;

/// A handle to an anon region: a slot in the region table plus a generation, so a stale
/// handle is an error rather than a reference to someone else's region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionId {
    /// Slot in the table.
    pub slot: u16,
    /// Generation of the slot when the handle was made.
    pub generation: u32,
}

/// Why a region operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// All [`MAX_ANON_REGIONS`] slots are in use, or no virtual range of that size is free.
    NoSpace,
    /// Zero pages requested, or more than the window holds.
    BadSize,
    /// The handle names no live region (destroyed, or never made).
    Stale,
    /// Index outside the region.
    BadIndex(u64),
    /// The gfp mask is not movable (must include `__GFP_MOVABLE`) or is impossible.
    BadGfp,
    /// The page at that index is already mapped.
    AlreadyMapped(u64),
    /// No memory for the page or for a page-table page (counted like any failed allocation).
    NoMemory,
    /// The platform refused a page-table operation.
    Pte(crate::port::platform::PteError),
    /// The platform offers no [`MovableMapping`](crate::port::platform::MovableMapping)
    /// (see [`Platform::movable_mapping`]), so there is nowhere to map movable memory.
    NoMovableMapping,
}

impl core::fmt::Display for RegionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegionError::NoSpace => f.write_str("no free anon region slot or virtual range"),
            RegionError::BadSize => f.write_str("bad anon region size"),
            RegionError::NoMovableMapping => f.write_str(
                "the platform offers no movable mapping capability (Platform::movable_mapping returns None), so anon regions are unavailable",
            ),
            RegionError::Stale => f.write_str("stale anon region handle"),
            RegionError::BadIndex(i) => write!(f, "page index {i} outside the region"),
            RegionError::BadGfp => f.write_str("gfp mask is not movable or is impossible"),
            RegionError::AlreadyMapped(i) => write!(f, "page index {i} is already mapped"),
            RegionError::NoMemory => f.write_str("out of memory"),
            RegionError::Pte(e) => write!(f, "page-table operation refused: {e:?}"),
        }
    }
}

// The state word of a slot: generation in the high half, then flags, then the number of
// operations in progress.
pub(crate) const LIVE: u64 = 1 << 31;
pub(crate) const DYING: u64 = 1 << 30;
pub(crate) const USERS: u64 = DYING - 1;

/// The `file` of a slot that is an anon region rather than a file window.
pub(crate) const NO_FILE: u64 = u64::MAX;

#[inline]
pub(crate) fn generation_of(state: u64) -> u32 {
    (state >> 32) as u32
}

/// One anon region's descriptor (`vm_area_struct` + `anon_vma`, reduced to what a
/// single-mapping anon region needs). Its address is what its pages' `mapping` holds.
///
/// The same slots also describe **file windows** ([`crate::reclaim::mmap`]): `file` then
/// names the page-cache file the window maps from offset 0, so that one table (one
/// first-fit search, one generation protocol) says what every address of the movable
/// window is. Anon operations refuse file windows and the reverse.
#[repr(C, align(8))]
pub struct AnonRegion {
    /// Generation, `LIVE`, `DYING`, operations in progress (see the module docs).
    pub(crate) state: AtomicU64,
    /// First virtual address; written under the table lock before the slot goes live.
    pub(crate) start: AtomicU64,
    /// Size in pages; written with `start`.
    pub(crate) nr_pages: AtomicU64,
    /// Pages mapped right now (statistics, and lets destroy stop early).
    pub(crate) nr_mapped: AtomicU64,
    /// [`NO_FILE`] for an anon region, else the file a file window maps; written with
    /// `start`.
    pub(crate) file: AtomicU64,
}

impl AnonRegion {
    const fn empty() -> AnonRegion {
        AnonRegion {
            state: AtomicU64::new(0),
            start: AtomicU64::new(0),
            nr_pages: AtomicU64::new(0),
            nr_mapped: AtomicU64::new(0),
            file: AtomicU64::new(NO_FILE),
        }
    }
}

/// The allocator's table of anon regions and file windows. See the module documentation.
pub struct RegionTable {
    /// Serialises slot allocation, the virtual-space search and slot release.
    pub(crate) lock: SpinLock<()>,
    pub(crate) regions: [AnonRegion; MAX_ANON_REGIONS],
}

impl Default for RegionTable {
    fn default() -> Self {
        RegionTable::new()
    }
}

impl RegionTable {
    /// An empty table.
    pub const fn new() -> RegionTable {
        RegionTable {
            lock: SpinLock::new(()),
            regions: [const { AnonRegion::empty() }; MAX_ANON_REGIONS],
        }
    }

    /// [`RegionTable::new`] written in place, slot by slot, so that no table-sized
    /// temporary is built on the stack.
    ///
    /// # Safety
    ///
    /// `p` must be valid for writes of a `RegionTable` and suitably aligned.
    // Exempt from the module's `deny(unsafe_code)`: in-place construction, so that init
    // runs on a small stack (issue 12).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn init_at(p: *mut RegionTable) {
        // SAFETY: the caller guarantees `p` is valid for writes; each field (each slot of
        // the array) is written exactly once.
        unsafe {
            core::ptr::addr_of_mut!((*p).lock).write(SpinLock::new(()));
            let regions = core::ptr::addr_of_mut!((*p).regions).cast::<AnonRegion>();
            for i in 0..MAX_ANON_REGIONS {
                regions.add(i).write(AnonRegion::empty());
            }
        }
    }

    /// The slot of the descriptor at address `ptr`, if `ptr` is one of this table's.
    fn slot_of(&self, ptr: usize) -> Option<usize> {
        let base = self.regions.as_ptr() as usize;
        let size = core::mem::size_of::<AnonRegion>();
        let off = ptr.checked_sub(base)?;
        let slot = off / size;
        (off % size == 0 && slot < MAX_ANON_REGIONS).then_some(slot)
    }
}

/// An operation in progress on a live region (a read hold of its state word); dropping
/// it lets a destroy proceed.
pub(crate) struct RegionRef<'a> {
    pub(crate) region: &'a AnonRegion,
    pub(crate) start: u64,
    pub(crate) nr_pages: u64,
}

impl Drop for RegionRef<'_> {
    fn drop(&mut self) {
        self.region.state.fetch_sub(1, Ordering::Release);
    }
}

impl RegionRef<'_> {
    fn va(&self, index: u64) -> Result<u64, RegionError> {
        if index >= self.nr_pages {
            return Err(RegionError::BadIndex(index));
        }
        Ok(self.start + index * PAGE_SIZE)
    }
}

/// Pages unmapped per TLB shootdown when zapping a range.
pub const ZAP_BATCH: usize = 64;

/// Spins after which a wait below gives up and panics with what it waited for. The crate
/// has no clock, so the bound is in iterations: each is at least a load and a pause, so
/// 2^32 of them last seconds natively and minutes under emulation, far beyond any page
/// lock hold or migration (a batch is milliseconds). Reaching it means a lost unlock or
/// a deadlock, which is better named in a panic than left as a silent hang.
pub const MAX_WAIT_SPINS: u64 = 1 << 32;

/// Take the page lock, waiting for it (`lock_page`). The holders of page locks never wait
/// for anything held by a CPU that waits here with a page lock of its own (see
/// [`crate::movement::migrate`] for how migration batches avoid that), so spinning is enough; a
/// wait beyond [`MAX_WAIT_SPINS`] panics naming the page.
#[track_caller]
pub(crate) fn lock_page(page: &Page) {
    let mut spins = 0u64;
    while !page.trylock() {
        while page.is_locked() {
            spins += 1;
            if spins >= MAX_WAIT_SPINS {
                panic!(
                    "lock_page: page {:p} (mapping {:#x}, index {}) still locked after {spins} spins",
                    page,
                    page.mapping_raw(),
                    page.index()
                );
            }
            core::hint::spin_loop();
        }
    }
}

/// Wait while `va` holds the migration entry for `pfn` (`migration_entry_wait`): the
/// migrating CPU replaces it, under the page lock, before it unlocks. A wait beyond
/// [`MAX_WAIT_SPINS`] panics naming the CPU, the address and the frame.
#[track_caller]
pub(crate) fn wait_migration_entry<P: Platform + ?Sized>(platform: &P, va: u64, pfn: u64) {
    let mut spins = 0u64;
    while crate::port::platform::movable_mapping_of(platform).pte_read(va) == Pte::Migration(pfn) {
        spins += 1;
        if spins >= MAX_WAIT_SPINS {
            panic!(
                "cpu {}: migration entry for pfn {pfn:#x} at {va:#x} still there after {spins} spins",
                platform.cpu_id()
            );
        }
        core::hint::spin_loop();
    }
}

/// Ranges up to this many pages are flushed page by page, larger ones by flushing the
/// whole TLB (Linux's x86 `tlb_single_page_flush_ceiling`); only the counters see it.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: u64 = 33;

impl<P: Platform> PageAllocator<P> {
    /// Shoot down `[start, end)` of the movable window on every CPU
    /// ([`MovableMapping::flush_tlb_range`]) and count it as Linux's x86 `flush_tlb_mm_range`
    /// does: `nr_tlb_local_flush_one` per page (or one `nr_tlb_local_flush_all` above the
    /// ceiling), and with other CPUs one `nr_tlb_remote_flush` plus one
    /// `nr_tlb_remote_flush_received` per other CPU (counted here, on the sender: the
    /// platform cannot reach the counters). Interrupts enabled, no spinlock held.
    pub(crate) fn flush_tlb_movable_range(&self, start: u64, end: u64) {
        let pages = end.saturating_sub(start).div_ceil(PAGE_SIZE);
        if pages <= TLB_SINGLE_PAGE_FLUSH_CEILING {
            self.count_vm_events(VmEvent::NrTlbLocalFlushOne, pages);
        } else {
            self.count_vm_events(VmEvent::NrTlbLocalFlushAll, 1);
        }
        let others = self.platform().nr_cpus().saturating_sub(1) as u64;
        if others > 0 {
            self.count_vm_events(VmEvent::NrTlbRemoteFlush, 1);
            self.count_vm_events(VmEvent::NrTlbRemoteFlushReceived, others);
        }
        self.mapping().flush_tlb_range(start, end);
    }

    /// The platform's [`MovableMapping`](crate::port::platform::MovableMapping) (an empty
    /// one when the port offers none: no region can be created then).
    #[inline]
    pub(crate) fn mapping(&self) -> &dyn crate::port::platform::MovableMapping {
        crate::port::platform::movable_mapping_of(self.platform())
    }

    pub(crate) fn region_table(&self) -> &RegionTable {
        &self.anon_regions
    }

    /// Enter live anon region `r` for one operation.
    fn region_get(&self, r: RegionId) -> Result<RegionRef<'_>, RegionError> {
        let g = self.region_enter(r)?;
        if g.region.file.load(Ordering::Relaxed) != NO_FILE {
            return Err(RegionError::Stale);
        }
        Ok(g)
    }

    /// Enter live slot `r` (an anon region or a file window) for one operation.
    pub(crate) fn region_enter(&self, r: RegionId) -> Result<RegionRef<'_>, RegionError> {
        let region = self
            .region_table()
            .regions
            .get(r.slot as usize)
            .ok_or(RegionError::Stale)?;
        let mut s = region.state.load(Ordering::Acquire);
        loop {
            if generation_of(s) != r.generation || s & LIVE == 0 || s & DYING != 0 {
                return Err(RegionError::Stale);
            }
            if s & USERS == USERS {
                // 2^30 operations in progress: wait for one to finish rather than overflow.
                core::hint::spin_loop();
                s = region.state.load(Ordering::Acquire);
                continue;
            }
            match region
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        Ok(RegionRef {
            region,
            start: region.start.load(Ordering::Relaxed),
            nr_pages: region.nr_pages.load(Ordering::Relaxed),
        })
    }

    /// The movable window, page aligned inwards, in pages.
    pub(crate) fn movable_window(&self) -> (u64, u64) {
        let (s, e) = self.mapping().movable_va_range();
        let s = s.next_multiple_of(PAGE_SIZE);
        let e = e & !(PAGE_SIZE - 1);
        (s, e.max(s))
    }

    /// Reserve `nr_pages` of movable virtual space; nothing is mapped yet.
    pub fn anon_region_create(&self, nr_pages: u64) -> Result<RegionId, RegionError> {
        self.reserve_window(nr_pages, NO_FILE)
    }

    /// Reserve `nr_pages` of movable virtual space in a free slot, for an anon region
    /// (`file` is [`NO_FILE`]) or a file window.
    pub(crate) fn reserve_window(&self, nr_pages: u64, file: u64) -> Result<RegionId, RegionError> {
        if self.platform().movable_mapping().is_none() {
            return Err(RegionError::NoMovableMapping);
        }
        let (wstart, wend) = self.movable_window();
        let window_pages = (wend - wstart) / PAGE_SIZE;
        if nr_pages == 0 || nr_pages > window_pages {
            return Err(RegionError::BadSize);
        }
        let len = nr_pages * PAGE_SIZE;
        let table = self.region_table();
        let _guard = table.lock.lock_irqsave(self.platform());
        let slot = table
            .regions
            .iter()
            .position(|r| r.state.load(Ordering::Acquire) & LIVE == 0)
            .ok_or(RegionError::NoSpace)?;
        // First fit: slide the candidate past every live region it overlaps. Each move
        // passes at least one region, so this ends after at most MAX_ANON_REGIONS moves.
        let mut start = wstart;
        'search: loop {
            if wend - start < len {
                return Err(RegionError::NoSpace);
            }
            for r in &table.regions {
                if r.state.load(Ordering::Acquire) & LIVE == 0 {
                    continue;
                }
                let rs = r.start.load(Ordering::Relaxed);
                let re = rs + r.nr_pages.load(Ordering::Relaxed) * PAGE_SIZE;
                if rs < start + len && start < re {
                    start = re;
                    continue 'search;
                }
            }
            break;
        }
        let region = &table.regions[slot];
        let old = region.state.load(Ordering::Relaxed);
        let mut generation = generation_of(old).wrapping_add(1);
        if generation == 0 {
            generation = 1;
        }
        region.start.store(start, Ordering::Relaxed);
        region.nr_pages.store(nr_pages, Ordering::Relaxed);
        region.nr_mapped.store(0, Ordering::Relaxed);
        region.file.store(file, Ordering::Relaxed);
        // Publish: whoever enters the region with an acquire on the state sees the span.
        region
            .state
            .store(((generation as u64) << 32) | LIVE, Ordering::Release);
        Ok(RegionId {
            slot: slot as u16,
            generation,
        })
    }

    /// First virtual address and size in pages of a live region.
    pub fn anon_region_span(&self, r: RegionId) -> Result<(u64, u64), RegionError> {
        let g = self.region_get(r)?;
        Ok((g.start, g.nr_pages))
    }

    /// Pages of a live region that are mapped right now.
    pub fn anon_region_nr_mapped(&self, r: RegionId) -> Result<u64, RegionError> {
        let g = self.region_get(r)?;
        Ok(g.region.nr_mapped.load(Ordering::Relaxed))
    }

    /// Allocate one page with `gfp` (must be movable), zero it, and map it at `index`
    /// (`do_anonymous_page`). Returns the pfn.
    pub fn anon_region_populate(
        &self,
        r: RegionId,
        index: u64,
        gfp: Gfp,
    ) -> Result<u64, RegionError> {
        let g = self.region_get(r)?;
        let va = g.va(index)?;
        if !gfp.contains(Gfp::MOVABLE) || validate(gfp, 0).is_err() {
            return Err(RegionError::BadGfp);
        }
        if self.mapping().pte_read(va) != Pte::None {
            return Err(RegionError::AlreadyMapped(index));
        }
        let page = self
            .alloc_pages(gfp | Gfp::ZERO, 0)
            .ok_or(RegionError::NoMemory)?;
        let pfn = self.page_to_pfn(page);
        // Metadata and PTE change together under the page lock, so a migration that
        // isolated the fresh page in between (its scanner works by pfn) sees either
        // nothing of the mapping or all of it.
        lock_page(page);
        page.set_index(index);
        page.set_mapping(
            g.region as *const AnonRegion as *const (),
            PAGE_MAPPING_ANON,
        );
        page.set_mapcount(1);
        page.set_uptodate();
        match self.mapping().pte_map(va, pfn) {
            Ok(()) => {
                g.region.nr_mapped.fetch_add(1, Ordering::Relaxed);
                page.unlock();
                Ok(pfn)
            }
            Err(e) => {
                clear_anon_metadata(page);
                page.unlock();
                if let Err(bad) = self.put_page(page) {
                    log::error!("anon_region_populate: freeing unmapped page: {bad}");
                }
                Err(match e {
                    PteError::Busy => RegionError::AlreadyMapped(index),
                    PteError::NoMemory => RegionError::NoMemory,
                    PteError::OutOfRange | PteError::Unsupported => RegionError::Pte(e),
                })
            }
        }
    }

    /// Unmap the page at `index`, flush TLBs, and drop the mapping's reference
    /// (`zap_pte_range` for one page). Ok(false) if nothing was mapped there.
    pub fn anon_region_zap(&self, r: RegionId, index: u64) -> Result<bool, RegionError> {
        let g = self.region_get(r)?;
        let va = g.va(index)?;
        Ok(self.zap_one(g.region, va))
    }

    /// Zap the page mapped at `va` of `region`, if any. Must be called with interrupts
    /// enabled and no spinlock held (it flushes TLBs).
    fn zap_one(&self, region: &AnonRegion, va: u64) -> bool {
        let platform = self.platform();
        loop {
            let pfn = match crate::port::platform::movable_mapping_of(platform).pte_read(va) {
                Pte::None => return false,
                Pte::Migration(pfn) => {
                    wait_migration_entry(platform, va, pfn);
                    continue;
                }
                Pte::Present(pfn) => pfn,
            };
            let page = match self.pfn_to_page(pfn) {
                Some(p) if p.get_unless_zero() => p,
                _ => {
                    if crate::port::platform::movable_mapping_of(platform).pte_read(va)
                        == Pte::Present(pfn)
                    {
                        // A present entry naming no live page: nothing to give back, but
                        // the entry must go.
                        log::error!("anon zap: {va:#x} maps pfn {pfn:#x}, which is not in use");
                        if crate::port::platform::movable_mapping_of(platform).pte_cmpxchg(
                            va,
                            Pte::Present(pfn),
                            Pte::None,
                        ) {
                            self.flush_tlb_movable_range(va, va + PAGE_SIZE);
                            region.nr_mapped.fetch_sub(1, Ordering::Relaxed);
                            return true;
                        }
                    }
                    continue;
                }
            };
            lock_page(page);
            // Under the lock the entry can only be changed by its lock holder: if it still
            // maps this page, it is ours to clear.
            if !crate::port::platform::movable_mapping_of(platform).pte_cmpxchg(
                va,
                Pte::Present(pfn),
                Pte::None,
            ) {
                page.unlock();
                self.put_page_logged(page, "anon zap (raced)");
                continue;
            }
            self.flush_tlb_movable_range(va, va + PAGE_SIZE);
            clear_anon_metadata(page);
            region.nr_mapped.fetch_sub(1, Ordering::Relaxed);
            page.unlock();
            self.put_page_logged(page, "anon zap");
            self.put_page_logged(page, "anon zap");
            return true;
        }
    }

    /// Zap every mapped page of `[start, end)` for which `zap(index, pfn)` says so, with one
    /// TLB shootdown per batch of up to [`ZAP_BATCH`] pages instead of one per page
    /// (Linux's `mmu_gather`). Returns the number of pages zapped.
    ///
    /// Within a batch, pages are locked with trylock only; a page whose lock is busy ends
    /// the batch (flushed and released) before this CPU waits for it, so it never waits
    /// for a page lock while holding another.
    pub fn anon_region_zap_range(
        &self,
        r: RegionId,
        start: u64,
        end: u64,
        zap: &mut dyn FnMut(u64, u64) -> bool,
    ) -> Result<u64, RegionError> {
        let g = self.region_get(r)?;
        if start > end || end > g.nr_pages {
            return Err(RegionError::BadIndex(end));
        }
        Ok(self.zap_batched(g.region, g.start, start, end, zap))
    }

    fn zap_batched(
        &self,
        region: &AnonRegion,
        base: u64,
        start: u64,
        end: u64,
        zap: &mut dyn FnMut(u64, u64) -> bool,
    ) -> u64 {
        let platform = self.platform();
        let mut batch: [Option<&Page>; ZAP_BATCH] = [None; ZAP_BATCH];
        let (mut n, mut lo, mut hi) = (0usize, u64::MAX, 0u64);
        let single = core::cell::Cell::new(0u64);
        let batched = core::cell::Cell::new(0u64);
        let finish =
            |batch: &mut [Option<&Page>; ZAP_BATCH], n: &mut usize, lo: &mut u64, hi: &mut u64| {
                if *n == 0 {
                    return;
                }
                crate::port::platform::movable_mapping_of(platform).flush_tlb_range(*lo, *hi);
                for slot in batch.iter_mut().take(*n) {
                    if let Some(page) = slot.take() {
                        clear_anon_metadata(page);
                        region.nr_mapped.fetch_sub(1, Ordering::Relaxed);
                        page.unlock();
                        self.put_page_logged(page, "anon zap");
                        self.put_page_logged(page, "anon zap");
                    }
                }
                batched.set(batched.get() + *n as u64);
                (*n, *lo, *hi) = (0, u64::MAX, 0);
            };
        let mut index = start;
        while index < end {
            if region.nr_mapped.load(Ordering::Relaxed) == 0 {
                break;
            }
            let va = base + index * PAGE_SIZE;
            let pfn = match crate::port::platform::movable_mapping_of(platform).pte_read(va) {
                Pte::None => {
                    index += 1;
                    continue;
                }
                Pte::Migration(pfn) => {
                    finish(&mut batch, &mut n, &mut lo, &mut hi);
                    wait_migration_entry(platform, va, pfn);
                    continue;
                }
                Pte::Present(pfn) => pfn,
            };
            if !zap(index, pfn) {
                index += 1;
                continue;
            }
            let Some(page) = self.pfn_to_page(pfn).filter(|p| p.get_unless_zero()) else {
                // Raced with a change of the entry, or a broken entry: the one-page path
                // handles both.
                finish(&mut batch, &mut n, &mut lo, &mut hi);
                if self.zap_one(region, va) {
                    single.set(single.get() + 1);
                }
                index += 1;
                continue;
            };
            if !page.trylock() {
                finish(&mut batch, &mut n, &mut lo, &mut hi);
                lock_page(page);
            }
            if !crate::port::platform::movable_mapping_of(platform).pte_cmpxchg(
                va,
                Pte::Present(pfn),
                Pte::None,
            ) {
                // Migrated (or zapped) before we locked it: look at the entry again.
                page.unlock();
                self.put_page_logged(page, "anon zap (raced)");
                continue;
            }
            batch[n] = Some(page);
            n += 1;
            lo = lo.min(va);
            hi = hi.max(va + PAGE_SIZE);
            if n == ZAP_BATCH {
                finish(&mut batch, &mut n, &mut lo, &mut hi);
            }
            index += 1;
        }
        finish(&mut batch, &mut n, &mut lo, &mut hi);
        single.get() + batched.get()
    }

    pub(crate) fn put_page_logged(&self, page: &Page, what: &str) {
        if let Err(bad) = self.put_page(page) {
            log::error!("{what}: {bad}");
        }
    }

    /// Zap every page and release the region's slot and virtual range.
    pub fn anon_region_destroy(&self, r: RegionId) -> Result<(), RegionError> {
        let region = self.region_kill(r, false)?;
        let start = region.start.load(Ordering::Relaxed);
        let nr_pages = region.nr_pages.load(Ordering::Relaxed);
        self.zap_batched(region, start, 0, nr_pages, &mut |_, _| true);
        self.region_release(region, r);
        Ok(())
    }

    /// The first half of tearing down slot `r` (an anon region, or a file window if
    /// `file`): mark it dying, so new operations get [`RegionError::Stale`], and wait for
    /// the operations in progress, like munmap taking `mmap_lock` for writing. The caller
    /// then unmaps its pages and calls [`PageAllocator::region_release`].
    pub(crate) fn region_kill(&self, r: RegionId, file: bool) -> Result<&AnonRegion, RegionError> {
        let region = self
            .region_table()
            .regions
            .get(r.slot as usize)
            .ok_or(RegionError::Stale)?;
        if (region.file.load(Ordering::Relaxed) != NO_FILE) != file {
            return Err(RegionError::Stale);
        }
        let mut s = region.state.load(Ordering::Acquire);
        loop {
            if generation_of(s) != r.generation || s & LIVE == 0 || s & DYING != 0 {
                return Err(RegionError::Stale);
            }
            match region.state.compare_exchange_weak(
                s,
                s | DYING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        // Bounded like every wait here: an operation never finishing is a hang.
        let mut spins = 0u64;
        while region.state.load(Ordering::Acquire) & USERS != 0 {
            spins += 1;
            if spins >= MAX_WAIT_SPINS {
                panic!(
                    "cpu {}: region {} still has {} operations in progress after {spins} spins",
                    self.platform().cpu_id(),
                    r.slot,
                    region.state.load(Ordering::Acquire) & USERS
                );
            }
            core::hint::spin_loop();
        }
        Ok(region)
    }

    /// Free the slot of a region killed by [`PageAllocator::region_kill`] whose pages are
    /// all unmapped, with its virtual range.
    pub(crate) fn region_release(&self, region: &AnonRegion, r: RegionId) {
        let _guard = self.region_table().lock.lock_irqsave(self.platform());
        region.file.store(NO_FILE, Ordering::Relaxed);
        region
            .state
            .store((r.generation as u64) << 32, Ordering::Release);
    }

    /// The pfn mapped at `index` right now (None if unmapped; waits out a migration entry).
    pub fn anon_region_pfn(&self, r: RegionId, index: u64) -> Result<Option<u64>, RegionError> {
        let g = self.region_get(r)?;
        let va = g.va(index)?;
        loop {
            match self.mapping().pte_read(va) {
                Pte::None => return Ok(None),
                Pte::Present(pfn) => return Ok(Some(pfn)),
                Pte::Migration(pfn) => wait_migration_entry(self.platform(), va, pfn),
            }
        }
    }

    /// The region and index an anon page belongs to, from its `mapping` alone (no
    /// dereference of anything but this allocator's table).
    fn anon_slot_of(&self, page: &Page) -> Option<(&AnonRegion, u64)> {
        let raw = page.mapping_raw();
        if raw & PAGE_MAPPING_FLAGS != PAGE_MAPPING_ANON {
            return None;
        }
        let table = self.region_table();
        let slot = table.slot_of(raw & !PAGE_MAPPING_FLAGS)?;
        let region = &table.regions[slot];
        if region.state.load(Ordering::Acquire) & LIVE == 0 {
            return None;
        }
        Some((region, page.index()))
    }

    /// The reverse map: the virtual address that maps anon page `page`, if it is one
    /// (`page_address_in_vma`), in O(1) from `mapping` and `index`.
    pub fn page_anon_address(&self, page: &Page) -> Option<u64> {
        let (region, index) = self.anon_slot_of(page)?;
        if index >= region.nr_pages.load(Ordering::Relaxed) {
            return None;
        }
        Some(region.start.load(Ordering::Relaxed) + index * PAGE_SIZE)
    }

    /// The handle of the live region anon page `page` belongs to, if any.
    pub fn page_anon_region(&self, page: &Page) -> Option<RegionId> {
        let (region, _) = self.anon_slot_of(page)?;
        let slot = self
            .region_table()
            .slot_of(region as *const AnonRegion as usize)?;
        Some(RegionId {
            slot: slot as u16,
            generation: generation_of(region.state.load(Ordering::Acquire)),
        })
    }

    /// Check a region from scratch: every mapped index's PTE names a page whose
    /// mapping is this region, whose index is that index, with mapcount 1 and a refcount
    /// of at least 1. Returns the number of mapped pages.
    pub fn anon_region_check(&self, r: RegionId) -> Result<u64, RmapError> {
        let g = self.region_get(r).map_err(|_| RmapError::Stale)?;
        let want = g.region as *const AnonRegion as usize | PAGE_MAPPING_ANON;
        let mut mapped = 0;
        for index in 0..g.nr_pages {
            let va = g.start + index * PAGE_SIZE;
            let pfn = loop {
                match self.mapping().pte_read(va) {
                    Pte::None => break None,
                    Pte::Present(pfn) => break Some(pfn),
                    Pte::Migration(pfn) => wait_migration_entry(self.platform(), va, pfn),
                }
            };
            let Some(pfn) = pfn else { continue };
            let Some(page) = self.pfn_to_page(pfn) else {
                return Err(RmapError::UnknownPfn { index, pfn });
            };
            if page.mapping_raw() != want || page.index() != index {
                return Err(RmapError::WrongBackPointer { index, pfn });
            }
            if page.mapcount() != 1 {
                return Err(RmapError::BadMapcount {
                    index,
                    pfn,
                    mapcount: page.mapcount(),
                });
            }
            if page.refcount() < 1 {
                return Err(RmapError::BadRefcount {
                    index,
                    pfn,
                    refcount: page.refcount(),
                });
            }
            mapped += 1;
        }
        Ok(mapped)
    }
}

/// Forget that `page` was mapped anon memory (the caller holds the page lock and has
/// removed the PTE).
pub(crate) fn clear_anon_metadata(page: &Page) {
    page.set_mapping(core::ptr::null(), 0);
    page.set_mapcount(0);
    page.set_index(0);
    page.clear_flag(PageFlags::UPTODATE | PageFlags::DIRTY | PageFlags::REFERENCED);
}

/// An inconsistency found by [`PageAllocator::anon_region_check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmapError {
    /// The handle is stale.
    Stale,
    /// The PTE at this index names a pfn with no struct page.
    UnknownPfn {
        /// The page index in the region.
        index: u64,
        /// The frame mapped there.
        pfn: u64,
    },
    /// The page mapped at `index` does not point back to this region and index.
    WrongBackPointer {
        /// The page index in the region.
        index: u64,
        /// The frame mapped there.
        pfn: u64,
    },
    /// The page mapped at `index` has a mapcount other than 1.
    BadMapcount {
        /// The page index in the region.
        index: u64,
        /// The frame mapped there.
        pfn: u64,
        /// Its mapcount.
        mapcount: i32,
    },
    /// The page mapped at `index` has no reference (it is free, yet mapped).
    BadRefcount {
        /// The page index in the region.
        index: u64,
        /// The frame mapped there.
        pfn: u64,
        /// Its refcount.
        refcount: i32,
    },
}

impl core::fmt::Display for RmapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RmapError::Stale => f.write_str("stale anon region handle"),
            RmapError::UnknownPfn { index, pfn } => {
                write!(
                    f,
                    "page {index} maps pfn {pfn:#x}, which has no struct page"
                )
            }
            RmapError::WrongBackPointer { index, pfn } => write!(
                f,
                "page {index} maps pfn {pfn:#x}, whose reverse map points elsewhere"
            ),
            RmapError::BadMapcount {
                index,
                pfn,
                mapcount,
            } => write!(
                f,
                "page {index} maps pfn {pfn:#x} with mapcount {mapcount} (expected 1)"
            ),
            RmapError::BadRefcount {
                index,
                pfn,
                refcount,
            } => write!(
                f,
                "page {index} maps pfn {pfn:#x} with refcount {refcount} (free, yet mapped)"
            ),
        }
    }
}

impl core::error::Error for RmapError {}

impl core::error::Error for RegionError {}
