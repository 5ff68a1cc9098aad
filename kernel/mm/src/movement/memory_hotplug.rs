//! Memory blocks taken offline and back online (Linux: `offline_pages`, `online_pages` in
//! `mm/memory_hotplug.c`, the memory block devices of `drivers/base/memory.c`).
//!
//! # Why
//!
//! Removing a DIMM, shrinking a virtual machine's memory, or fencing off a range that
//! reports errors all need a block of memory emptied and withdrawn from the allocator
//! while the system runs. The block is a SPARSEMEM section (128 MiB on x86_64, Linux's
//! `memory_block_size_bytes` on machines of this size; the architecture's section size,
//! [`crate::model::arch::ArchParams`]), numbered by its pfn: block `N` is
//! `[N * pages_per_section, (N + 1) * pages_per_section)`.
//!
//! # Offline
//!
//! ```text
//!   start_isolate_page_range(MEMORY_OFFLINE)   refuse at once on an unmovable page
//!   migrate everything movable out, drain pcp, test_pages_isolated; up to
//!     OFFLINE_PASSES passes (Linux loops until a signal; a bound keeps this a value)
//!   take every free block of the range off the Isolate lists; every page PG_offline
//!   managed pages -= pages taken; present pages (zone and node) -= the block's RAM;
//!   the zone's span shrunk if the block was at its edge (shrink_zone_span)
//!   watermarks, lowmem reserves and pcp sizes recomputed (init_per_zone_wmark_min)
//! ```
//!
//! The pageblocks stay MIGRATE_ISOLATE while offline (as in Linux) but no longer count
//! in the zone's isolated-pageblock counter: nothing of theirs is on any list.
//!
//! When the model keeps a section's memmap (and usemap) inside the section, at its end
//! (`memmap_on_memory` placement, [`crate::model::sparse`]), those pages describe the block
//! itself, so as with Linux's `memmap_on_memory` they are not part of what is offlined:
//! the offline range stops where the block's own metadata begins.
//!
//! The block then leaves its zone (`remove_pfn_range_from_zone`,
//! `adjust_present_page_count`): the zone's (and the node's) present pages lose the block's RAM pages
//! (its own memmap with it, as Linux's `memmap_on_memory` accounts the vmemmap pages to
//! the block), and when the block is at an edge of the zone's span the span shrinks to the
//! nearest block still online in the zone (`shrink_zone_span`; a block in the middle
//! leaves a hole in the span, as in Linux).
//!
//! # Online, and which zone
//!
//! `echo online_kernel`, `echo online_movable` or `echo online` (Linux's `MMOP_ONLINE_*`)
//! give the block to a zone ([`OnlineType`], [`PageAllocator::zone_for_pfn_range`]):
//!
//! - online_kernel: the kernel zone the block intersects, or else the kernel zone whose
//!   address limits hold it (DMA32 below 4 GiB, Normal above: Linux's
//!   `default_kernel_zone_for_pfn` falls back to ZONE_NORMAL, which on this model would
//!   take GFP_DMA32 memory out of DMA32);
//! - online_movable: ZONE_MOVABLE;
//! - online (`default_zone_for_pfn`): the zone among those two the block intersects, if
//!   it intersects exactly one (an offline block in the middle of a span keeps its zone);
//!   otherwise the kernel zone (Linux's default without `movable_node`).
//!
//! Zones in this model do not overlap (the compaction scanners, isolation and the
//! invariant checker walk spans), so a type whose zone would then overlap another zone of
//! the node is refused, as Linux refused it before zones could overlap: online_kernel of a
//! block in the middle of ZONE_MOVABLE, online_movable of a block in the middle of
//! ZONE_NORMAL. A zone that has no place in the zonelists (it had no memory at boot, and
//! zonelists are built once) is refused too. `valid_zones` of an offline block lists the
//! zones it may go to, the default first (Linux's format); of an online block, its zone.
//!
//! Onlining is `move_pfn_range_to_zone` then the free: the zone's span grows over the block
//! (`resize_zone_range`), its pages are linked to the zone in their flags, present pages
//! grow back, every pageblock is recorded as going back MIGRATE_MOVABLE (Linux onlines
//! into the movable type whichever zone), the pages are freed to the Isolate lists and the
//! isolation is undone, and the watermarks, reserves and pcp sizes are recomputed: offline
//! then online into the same zone gives back exactly the counts of before.
//!
//! One block operation runs at a time, on every allocator (Linux's `mem_hotplug_lock`): a
//! flag spun on with interrupts enabled, since offline migrates pages.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::model::mmzone::{MAX_NR_ZONES, Migratetype, PAGE_SHIFT, PAGEBLOCK_NR_PAGES, ZoneType};
use crate::model::page::PageFlags;
use crate::model::pageblock::save_pageblock_migratetype;
use crate::model::zone::{Zone, counter_add};
use crate::movement::contig::{ContigError, ContigStats, free_pfn_range};
use crate::movement::isolation::{IsolateError, IsolateFlags, free_block_containing};
use crate::page_alloc::PageAllocator;
use crate::port::platform::Platform;

/// Why a memory block could not go offline or online.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotplugError {
    /// No such block (no memory there, or beyond the memory map).
    NoBlock(u64),
    /// The block holds pages of two zones (or none the allocator manages).
    MixedZones(u64),
    /// The range could not be isolated (the reason names the pfn).
    Isolate(IsolateError),
    /// A page was still in use after every migration pass.
    Busy {
        /// The first page not free.
        pfn: u64,
    },
    /// No memory to migrate the block's pages to.
    NoMemory,
    /// `online` of a block that is not offline (the first page that is not).
    NotOffline {
        /// The page.
        pfn: u64,
    },
    /// `offline` of a block that is offline already.
    AlreadyOffline(u64),
    /// Onlining into `zone` would make its span overlap `other`'s.
    ZoneOverlap {
        /// The block.
        block: u64,
        /// The zone asked for.
        zone: ZoneType,
        /// The zone it would overlap.
        other: ZoneType,
    },
    /// `zone` is not in the node's zonelists (it had no memory at boot), so nothing
    /// could ever allocate from it.
    NoZonelist {
        /// The block.
        block: u64,
        /// The zone asked for.
        zone: ZoneType,
    },
}

impl fmt::Display for HotplugError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HotplugError::NoBlock(b) => write!(f, "memory{b}: no such memory block"),
            HotplugError::MixedZones(b) => {
                write!(f, "memory{b}: spans several zones (or none)")
            }
            HotplugError::Isolate(e) => write!(f, "offline: {e}"),
            HotplugError::Busy { pfn } => {
                write!(f, "offline: pfn {pfn:#x} still in use after migration")
            }
            HotplugError::NoMemory => f.write_str("offline: no memory to migrate to"),
            HotplugError::NotOffline { pfn } => write!(f, "online: pfn {pfn:#x} is not offline"),
            HotplugError::AlreadyOffline(b) => write!(f, "memory{b}: already offline"),
            HotplugError::ZoneOverlap { block, zone, other } => write!(
                f,
                "memory{block}: cannot online into {}: the zone would overlap {}",
                zone.name(),
                other.name()
            ),
            HotplugError::NoZonelist { block, zone } => write!(
                f,
                "memory{block}: cannot online into {}: the zone had no memory at boot and is in no zonelist",
                zone.name()
            ),
        }
    }
}

impl core::error::Error for HotplugError {}

impl From<ContigError> for HotplugError {
    fn from(e: ContigError) -> HotplugError {
        match e {
            ContigError::Isolate(i) => HotplugError::Isolate(i),
            ContigError::Busy { pfn, .. } => HotplugError::Busy { pfn },
            ContigError::NoMemory => HotplugError::NoMemory,
            ContigError::BadMigratetype(_) | ContigError::Compound => HotplugError::NoMemory,
        }
    }
}

/// State of a memory block (`/sys/devices/system/memory/memoryN/state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    /// Managed by the allocator.
    Online,
    /// Withdrawn by [`PageAllocator::offline_memory_block`].
    Offline,
}

/// How a block is onlined (Linux's `MMOP_ONLINE`, `MMOP_ONLINE_KERNEL`,
/// `MMOP_ONLINE_MOVABLE`): the words written to `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnlineType {
    /// `online`: the default zone ([`PageAllocator::zone_for_pfn_range`]).
    Online,
    /// `online_kernel`: a kernel zone (DMA, DMA32 or Normal).
    Kernel,
    /// `online_movable`: ZONE_MOVABLE.
    Movable,
}

impl OnlineType {
    /// The type a `state` write names, if it names one.
    pub fn parse(word: &str) -> Option<OnlineType> {
        match word {
            "online" => Some(OnlineType::Online),
            "online_kernel" => Some(OnlineType::Kernel),
            "online_movable" => Some(OnlineType::Movable),
            _ => None,
        }
    }
}

/// What onlining a block did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnlineStats {
    /// Pages given to the allocator.
    pub pages: u64,
    /// The zone they went to.
    pub zone: ZoneType,
}

/// One memory block operation at a time, on every allocator (Linux's `mem_hotplug_lock`):
/// offline and online read and rewrite zone spans and present counts that nothing else
/// writes after boot. A flag spun on with interrupts enabled, not a spinlock: offline
/// migrates pages, which may wait for other CPUs.
static HOTPLUG_LOCK: AtomicBool = AtomicBool::new(false);

/// Holds [`HOTPLUG_LOCK`] until dropped.
struct HotplugGuard;

fn mem_hotplug_begin() -> HotplugGuard {
    while HOTPLUG_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    HotplugGuard
}

impl Drop for HotplugGuard {
    fn drop(&mut self) {
        HOTPLUG_LOCK.store(false, Ordering::Release);
    }
}

/// True if `[start, end)` meets the span of `zone` (`zone_intersects`).
fn zone_intersects(zone: &Zone, start: u64, end: u64) -> bool {
    !zone.is_empty() && start < zone.zone_end_pfn() && zone.zone_start_pfn() < end
}

impl<P: Platform> PageAllocator<P> {
    /// Pages in a memory block (one SPARSEMEM section).
    pub fn memory_block_pages(&self) -> u64 {
        self.model().sparse().pages_per_section()
    }

    /// The pfns of block `block`: `(start, end, block_end)`, where `[start, end)` is what
    /// goes offline (the whole block but its own memmap/usemap when they live at its end)
    /// and `[start, block_end)` the whole block.
    fn memory_block_pfns(&self, block: u64) -> Result<(u64, u64, u64), HotplugError> {
        let block_pages = self.memory_block_pages();
        let start = block
            .checked_mul(block_pages)
            .ok_or(HotplugError::NoBlock(block))?;
        let block_end = start + block_pages;
        let mut end = block_end;
        let mem = self.model().sparse();
        mem.pfn_to_page(start).ok_or(HotplugError::NoBlock(block))?;
        // The block's own metadata: the memmap's first page, if it is in the block.
        if let Some(map) = mem.section_memmap(start)
            && let Some(meta) = self.virt_to_page(map.as_ptr() as u64)
        {
            let meta_pfn = self.page_to_pfn(meta);
            if (start..end).contains(&meta_pfn)
                && (meta_pfn..end).all(|p| mem.pfn_to_page(p).is_some_and(|pg| pg.is_reserved()))
            {
                end = meta_pfn;
            }
        }
        Ok((start, end, block_end))
    }

    /// The part of online block `block` that can go offline, `[start, end)`, and its zone.
    fn memory_block_range(&self, block: u64) -> Result<(u64, u64, &Zone), HotplugError> {
        let (start, end, _) = self.memory_block_pfns(block)?;
        let first = self
            .pfn_to_page(start)
            .ok_or(HotplugError::NoBlock(block))?;
        let zone = first
            .zone_type()
            .and_then(|zt| self.zone_of(first.nid(), zt))
            .filter(|z| z.managed_zone())
            .ok_or(HotplugError::MixedZones(block))?;
        if start < zone.zone_start_pfn() || end > zone.zone_end_pfn() {
            return Err(HotplugError::MixedZones(block));
        }
        Ok((start, end, zone))
    }

    /// RAM pages (present pages) in `[start, end)`, from the memory map.
    fn ram_pages_in(&self, start: u64, end: u64) -> u64 {
        self.model()
            .memblock()
            .memory()
            .iter()
            .map(|r| {
                let (b, e) = (r.base >> PAGE_SHIFT, r.end() >> PAGE_SHIFT);
                e.min(end).saturating_sub(b.max(start))
            })
            .sum()
    }

    /// Whether block `block` is online or offline.
    pub fn memory_block_state(&self, block: u64) -> Result<BlockState, HotplugError> {
        let (start, _, _) = self.memory_block_pfns(block)?;
        let offline = self
            .pfn_to_page(start)
            .is_some_and(|p| p.test_flag(PageFlags::OFFLINE));
        Ok(if offline {
            BlockState::Offline
        } else {
            BlockState::Online
        })
    }

    /// True if block `block` is online and has a page of `zone` (what keeps it in the
    /// zone's span: Linux's online-section test of `find_smallest_section_pfn`).
    fn block_online_in_zone(&self, block: u64, zone: &Zone) -> bool {
        if self.memory_block_state(block) != Ok(BlockState::Online) {
            return false;
        }
        let per = self.memory_block_pages();
        (block * per..(block + 1) * per).any(|p| {
            self.pfn_to_page(p)
                .is_some_and(|pg| pg.nid() == zone.nid && pg.zone_idx() == zone.zone_type.index())
        })
    }

    /// Shrink `zone`'s span after the block `[start, end)` left it (`shrink_zone_span`):
    /// at the start edge the span begins at the next block still online in the zone, at
    /// the end edge it ends after the previous one; a block in the middle changes nothing.
    fn shrink_zone_span(&self, zone: &Zone, start: u64, end: u64) {
        let per = self.memory_block_pages();
        let (zs, ze) = (zone.zone_start_pfn(), zone.zone_end_pfn());
        if start <= zs {
            let next =
                (end.div_ceil(per)..ze.div_ceil(per)).find(|&b| self.block_online_in_zone(b, zone));
            match next {
                Some(b) => {
                    let s = (b * per).max(zs);
                    zone.set_span(s, ze - s);
                }
                None => zone.set_span(0, 0),
            }
        } else if end >= ze {
            let prev = (zs / per..start / per)
                .rev()
                .find(|&b| self.block_online_in_zone(b, zone));
            match prev {
                Some(b) => {
                    let e = ((b + 1) * per).min(ze);
                    zone.set_span(zs, e - zs);
                }
                None => zone.set_span(0, 0),
            }
        }
    }

    /// Grow `zone`'s span over `[start, end)` (`resize_zone_range`).
    fn resize_zone_range(zone: &Zone, start: u64, end: u64) {
        if zone.is_empty() {
            zone.set_span(start, end - start);
        } else {
            let s = zone.zone_start_pfn().min(start);
            let e = zone.zone_end_pfn().max(end);
            zone.set_span(s, e - s);
        }
    }

    /// Take memory block `block` offline (`offline_pages`): see the module documentation.
    /// Returns the migration figures; on error the block is online and nothing stays
    /// isolated.
    pub fn offline_memory_block(&self, block: u64) -> Result<ContigStats, HotplugError> {
        let _hotplug = mem_hotplug_begin();
        if self.memory_block_state(block)? == BlockState::Offline {
            return Err(HotplugError::AlreadyOffline(block));
        }
        let (start, end, zone) = self.memory_block_range(block)?;
        let (_, _, block_end) = self.memory_block_pfns(block)?;
        let flags = IsolateFlags::MEMORY_OFFLINE | IsolateFlags::REPORT_FAILURE;
        self.start_isolate_page_range(start, end, Migratetype::Movable, flags)
            .map_err(HotplugError::Isolate)?;
        let mut stats = ContigStats {
            pageblocks: (end - start).div_ceil(PAGEBLOCK_NR_PAGES),
            ..ContigStats::default()
        };
        if let Err(e) = self.contig_migrate_range(start, end, flags, &mut stats) {
            self.undo_isolate_page_range(start, end);
            return Err(e.into());
        }
        let taken = self.offline_isolated_pages(zone, start, end);
        zone.adjust_managed_page_count(-(taken as i64));
        // remove_pfn_range_from_zone: the whole block, its own memmap included.
        let present = self.ram_pages_in(start, block_end);
        zone.adjust_present_page_count(-(present as i64));
        if let Some(node) = self.model().node(zone.nid) {
            node.adjust_node_present_pages(-(present as i64));
        }
        self.shrink_zone_span(zone, start, block_end);
        self.init_per_zone_wmark_min();
        log::info!(
            "memory{block}: offline, {taken} pages withdrawn, {present} present pages left {} ({} migrated)",
            zone.name(),
            stats.migrated
        );
        Ok(stats)
    }

    /// Take every free page of the isolated, tested range off the Isolate lists and mark
    /// it PG_offline (`__offline_isolated_pages`); the pageblocks stop counting as
    /// isolated. Returns the pages taken.
    fn offline_isolated_pages(&self, zone: &Zone, start: u64, end: u64) -> u64 {
        let mem = self.model().sparse();
        let mut taken = 0;
        let mut g = zone.lock.lock_irqsave(self.platform());
        let mut b = self.buddy(zone, &mut g);
        let mut pfn = start;
        while pfn < end {
            let Some((head, order)) = free_block_containing(mem, zone, pfn) else {
                // Poisoned or already offline pages: nothing to take.
                if let Some(p) = mem.pfn_to_page(pfn) {
                    p.set_flag(PageFlags::OFFLINE);
                }
                pfn += 1;
                continue;
            };
            let block_end = head + (1u64 << order);
            if let Some(page) = mem.pfn_to_page(head) {
                let on =
                    Migratetype::from_bits(page.buddy_list_mt()).unwrap_or(Migratetype::Isolate);
                b.del_page_from_free_list(page, order, on);
            }
            // A free block never crosses the range's ends here: the range is whole
            // pageblocks except at the metadata, which is reserved (never free).
            free_pfn_range(&mut b, head, start.max(head));
            free_pfn_range(&mut b, end.min(block_end), block_end);
            for p in pfn.max(head)..end.min(block_end) {
                if let Some(page) = mem.pfn_to_page(p) {
                    page.set_flag(PageFlags::OFFLINE);
                    taken += 1;
                }
            }
            pfn = block_end;
        }
        let blocks = (end - start).div_ceil(PAGEBLOCK_NR_PAGES) as i64;
        counter_add(&zone.counters.nr_isolate_pageblock, -blocks);
        taken
    }

    /// The kernel zone for `[start, end)` on node `nid` (`default_kernel_zone_for_pfn`):
    /// the first kernel zone whose span meets it, else the kernel zone whose address
    /// limits hold `start`.
    fn default_kernel_zone_for_pfn(&self, nid: usize, start: u64, end: u64) -> ZoneType {
        let kernel = [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal];
        if let Some(zt) = kernel.into_iter().find(|&zt| {
            self.zone_of(nid, zt)
                .is_some_and(|z| zone_intersects(z, start, end))
        }) {
            return zt;
        }
        let limits = self.model().zone_limits();
        kernel
            .into_iter()
            .find(|zt| (limits.lowest[zt.index()]..limits.highest[zt.index()]).contains(&start))
            .unwrap_or(ZoneType::Normal)
    }

    /// The zone `online_type` puts offline block `block` in (`zone_for_pfn_range`), or why
    /// it cannot go there: see the module documentation.
    pub fn zone_for_pfn_range(
        &self,
        block: u64,
        online_type: OnlineType,
    ) -> Result<ZoneType, HotplugError> {
        let (start, _, block_end) = self.memory_block_pfns(block)?;
        let nid = self
            .pfn_to_page(start)
            .ok_or(HotplugError::NoBlock(block))?
            .nid();
        let kernel = self.default_kernel_zone_for_pfn(nid, start, block_end);
        let zt = match online_type {
            OnlineType::Kernel => kernel,
            OnlineType::Movable => ZoneType::Movable,
            OnlineType::Online => {
                // default_zone_for_pfn
                let meets = |zt| {
                    self.zone_of(nid, zt)
                        .is_some_and(|z| zone_intersects(z, start, block_end))
                };
                if meets(ZoneType::Movable) && !meets(kernel) {
                    ZoneType::Movable
                } else {
                    kernel
                }
            }
        };
        if !self.zonelist_order(nid).any(|(n, z)| n == nid && z == zt) {
            return Err(HotplugError::NoZonelist { block, zone: zt });
        }
        let zone = self
            .zone_of(nid, zt)
            .ok_or(HotplugError::NoZonelist { block, zone: zt })?;
        let (s, e) = if zone.is_empty() {
            (start, block_end)
        } else {
            (
                zone.zone_start_pfn().min(start),
                zone.zone_end_pfn().max(block_end),
            )
        };
        for other in (0..MAX_NR_ZONES).filter_map(ZoneType::from_index) {
            if other != zt
                && self
                    .zone_of(nid, other)
                    .is_some_and(|o| zone_intersects(o, s, e))
            {
                return Err(HotplugError::ZoneOverlap {
                    block,
                    zone: zt,
                    other,
                });
            }
        }
        Ok(zt)
    }

    /// Bring memory block `block` back online the default way (`echo online`); returns
    /// the pages onlined. See [`PageAllocator::online_memory_block_as`].
    pub fn online_memory_block(&self, block: u64) -> Result<u64, HotplugError> {
        self.online_memory_block_as(block, OnlineType::Online)
            .map(|s| s.pages)
    }

    /// Bring memory block `block` online into the zone `online_type` chooses
    /// (`online_pages`): its pages return to the allocator as MIGRATE_MOVABLE, and the
    /// zone's span, present and managed pages, watermarks, reserves and pcp sizes follow.
    /// On error nothing changed.
    pub fn online_memory_block_as(
        &self,
        block: u64,
        online_type: OnlineType,
    ) -> Result<OnlineStats, HotplugError> {
        let _hotplug = mem_hotplug_begin();
        let (start, end, block_end) = self.memory_block_pfns(block)?;
        let mem = self.model().sparse();
        if let Some(pfn) = (start..end).find(|&p| {
            !mem.pfn_to_page(p)
                .is_some_and(|pg| pg.test_flag(PageFlags::OFFLINE))
        }) {
            return Err(HotplugError::NotOffline { pfn });
        }
        let zt = self.zone_for_pfn_range(block, online_type)?;
        let nid = mem.pfn_to_page(start).map_or(0, |p| p.nid());
        let zone = self
            .zone_of(nid, zt)
            .ok_or(HotplugError::NoZonelist { block, zone: zt })?;
        // move_pfn_range_to_zone: span, links, present pages, pageblocks Movable-to-be.
        Self::resize_zone_range(zone, start, block_end);
        for p in start..block_end {
            if let Some(pg) = mem.pfn_to_page(p) {
                pg.set_page_zone(zt);
            }
        }
        let present = self.ram_pages_in(start, block_end);
        zone.adjust_present_page_count(present as i64);
        if let Some(node) = self.model().node(nid) {
            node.adjust_node_present_pages(present as i64);
        }
        let mut pb = start;
        while pb < end {
            let _ = save_pageblock_migratetype(mem, pb, Migratetype::Movable);
            pb += PAGEBLOCK_NR_PAGES;
        }
        let blocks = (end - start).div_ceil(PAGEBLOCK_NR_PAGES) as i64;
        let mut onlined = 0u64;
        {
            let mut g = zone.lock.lock_irqsave(self.platform());
            // The blocks are isolated again until the free pages are in place.
            counter_add(&zone.counters.nr_isolate_pageblock, blocks);
            let mut b = self.buddy(zone, &mut g);
            let mut run: Option<u64> = None;
            for p in start..=end {
                let usable = p < end
                    && mem.pfn_to_page(p).is_some_and(|pg| {
                        let poisoned = pg.test_flag(PageFlags::HWPOISON);
                        pg.clear_flag(PageFlags::OFFLINE);
                        !poisoned
                    });
                match (usable, run) {
                    (true, None) => run = Some(p),
                    (false, Some(s)) => {
                        free_pfn_range(&mut b, s, p);
                        onlined += p - s;
                        run = None;
                    }
                    _ => {}
                }
            }
        }
        zone.adjust_managed_page_count(onlined as i64);
        self.undo_isolate_page_range(start, end);
        self.init_per_zone_wmark_min();
        log::info!(
            "memory{block}: online, {onlined} pages into {}",
            zone.name()
        );
        Ok(OnlineStats {
            pages: onlined,
            zone: zt,
        })
    }

    /// `valid_zones` of block `block` (Linux's format): the zone of an online block; for
    /// an offline block the zones it may be onlined into, the default first, space
    /// separated (`none` if there are none).
    pub fn memory_block_valid_zones(&self, block: u64) -> Result<ValidZones, HotplugError> {
        if self.memory_block_state(block)? == BlockState::Online {
            let (_, _, zone) = self.memory_block_range(block)?;
            return Ok(ValidZones {
                zones: [Some(zone.zone_type), None],
            });
        }
        let default = self.zone_for_pfn_range(block, OnlineType::Online).ok();
        let mut zones = [default, None];
        for t in [OnlineType::Kernel, OnlineType::Movable] {
            if let Ok(zt) = self.zone_for_pfn_range(block, t)
                && zones[0] != Some(zt)
            {
                if zones[0].is_none() {
                    zones[0] = Some(zt);
                } else if zones[1].is_none() {
                    zones[1] = Some(zt);
                }
            }
        }
        Ok(ValidZones { zones })
    }

    /// The memory block files of block `block`, as
    /// `/sys/devices/system/memory/memoryN/` shows them (`state`, `phys_index`,
    /// `valid_zones`, `removable`), one `file: value` line each.
    pub fn write_memory_block(
        &self,
        w: &mut dyn fmt::Write,
        block: u64,
    ) -> Result<fmt::Result, HotplugError> {
        let state = self.memory_block_state(block)?;
        let zones = self.memory_block_valid_zones(block)?;
        Ok((|| {
            writeln!(
                w,
                "state: {}",
                match state {
                    BlockState::Online => "online",
                    BlockState::Offline => "offline",
                }
            )?;
            writeln!(w, "phys_index: {block:08x}")?;
            writeln!(w, "valid_zones: {zones}")?;
            writeln!(w, "removable: 1")
        })())
    }
}

/// The zones a block may be in, as `valid_zones` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidZones {
    /// At most two (a kernel zone and ZONE_MOVABLE), the default first.
    pub zones: [Option<ZoneType>; 2],
}

impl fmt::Display for ValidZones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for zt in self.zones.iter().flatten() {
            if any {
                f.write_str(" ")?;
            }
            f.write_str(zt.name())?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}
