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
//!   managed pages -= pages taken; watermarks, lowmem reserves and pcp sizes recomputed
//!     (init_per_zone_wmark_min)
//! ```
//!
//! The pageblocks stay MIGRATE_ISOLATE while offline (as in Linux) but no longer count
//! in the zone's isolated-pageblock counter: nothing of theirs is on any list.
//!
//! This model keeps each section's memmap (and usemap) inside the section, at its end
//! (`memmap_on_memory` placement, [`crate::model::sparse`]). Those pages describe the block
//! itself, so as with Linux's `memmap_on_memory` they are not part of what is offlined:
//! the offline range stops where the block's own metadata begins.
//!
//! `present_pages` stays as the memory model fixed it (it is not an atomic in this model's
//! `Zone`); `managed_pages`, which every watermark computation uses, follows the block.
//!
//! # Online
//!
//! The reverse: the offline pages are freed to the Isolate lists of their (still
//! isolated) pageblocks, managed pages grow back, the range is given back as
//! MIGRATE_MOVABLE (Linux onlines into the movable type) and the watermarks are
//! recomputed, so the counts return exactly to what they were.

use core::fmt;

use crate::model::mmzone::{Migratetype, PAGEBLOCK_NR_PAGES};
use crate::model::page::PageFlags;
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

impl<P: Platform> PageAllocator<P> {
    /// Pages in a memory block (one SPARSEMEM section).
    pub fn memory_block_pages(&self) -> u64 {
        self.model().sparse().pages_per_section()
    }

    /// The part of block `block` that can go offline, `[start, end)`, and its zone: the
    /// whole block but its own memmap/usemap when they live at its end.
    fn memory_block_range(&self, block: u64) -> Result<(u64, u64, &Zone), HotplugError> {
        let block_pages = self.memory_block_pages();
        let start = block
            .checked_mul(block_pages)
            .ok_or(HotplugError::NoBlock(block))?;
        let mut end = start + block_pages;
        let mem = self.model().sparse();
        let first = mem.pfn_to_page(start).ok_or(HotplugError::NoBlock(block))?;
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
        let zone = first
            .zone_type()
            .and_then(|zt| self.zone_of(first.nid(), zt))
            .filter(|z| z.managed_zone())
            .ok_or(HotplugError::MixedZones(block))?;
        if start < zone.zone_start_pfn || end > zone.zone_end_pfn() {
            return Err(HotplugError::MixedZones(block));
        }
        Ok((start, end, zone))
    }

    /// Whether block `block` is online or offline.
    pub fn memory_block_state(&self, block: u64) -> Result<BlockState, HotplugError> {
        let (start, _, _) = self.memory_block_range(block)?;
        let offline = self
            .pfn_to_page(start)
            .is_some_and(|p| p.test_flag(PageFlags::OFFLINE));
        Ok(if offline {
            BlockState::Offline
        } else {
            BlockState::Online
        })
    }

    /// Take memory block `block` offline (`offline_pages`): see the module documentation.
    /// Returns the migration figures; on error the block is online and nothing stays
    /// isolated.
    pub fn offline_memory_block(&self, block: u64) -> Result<ContigStats, HotplugError> {
        let (start, end, zone) = self.memory_block_range(block)?;
        if self.memory_block_state(block)? == BlockState::Offline {
            return Err(HotplugError::AlreadyOffline(block));
        }
        let flags = IsolateFlags::MEMORY_OFFLINE | IsolateFlags::REPORT_FAILURE;
        self.start_isolate_page_range(start, end, Migratetype::Movable, flags)
            .map_err(HotplugError::Isolate)?;
        let mut stats = ContigStats {
            pageblocks: (end - start).div_ceil(PAGEBLOCK_NR_PAGES),
            ..ContigStats::default()
        };
        if let Err(e) = self.contig_migrate_range(start, end, flags, &mut stats) {
            let _ = self.undo_isolate_page_range(start, end, Migratetype::Movable);
            return Err(e.into());
        }
        let taken = self.offline_isolated_pages(zone, start, end);
        zone.adjust_managed_page_count(-(taken as i64));
        self.init_per_zone_wmark_min();
        log::info!(
            "memory{block}: offline, {taken} pages withdrawn ({} migrated)",
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

    /// Bring memory block `block` back online (`online_pages`): its pages return to the
    /// allocator as MIGRATE_MOVABLE and the zone's counts and watermarks are what they
    /// were before the offline. Returns the pages onlined.
    pub fn online_memory_block(&self, block: u64) -> Result<u64, HotplugError> {
        let (start, end, zone) = self.memory_block_range(block)?;
        let mem = self.model().sparse();
        if let Some(pfn) = (start..end).find(|&p| {
            !mem.pfn_to_page(p)
                .is_some_and(|pg| pg.test_flag(PageFlags::OFFLINE))
        }) {
            return Err(HotplugError::NotOffline { pfn });
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
        let _ = self.undo_isolate_page_range(start, end, Migratetype::Movable);
        self.init_per_zone_wmark_min();
        log::info!("memory{block}: online, {onlined} pages");
        Ok(onlined)
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
        let (_, _, zone) = self.memory_block_range(block)?;
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
            writeln!(w, "valid_zones: {}", zone.name())?;
            writeln!(w, "removable: 1")
        })())
    }
}
