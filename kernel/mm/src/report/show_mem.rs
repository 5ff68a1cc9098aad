//! Reporting the allocator's state: zone snapshots and the `/proc` views built from them,
//! and the free-memory summary an allocation failure prints (Linux: the show halves of
//! `mm/vmstat.c`, `show_free_areas` in `mm/show_mem.c`).
//!
//! A view never formats text while holding a lock. Each zone is copied into a
//! [`ZoneSnapshot`] in one short zone-lock hold (the free list lengths must be read under
//! the lock to be consistent with each other and with `NR_FREE_PAGES`); the pageblock
//! counts, which cost a walk of the zone's pageblock bitmap, are read without it; each
//! CPU's pcp counts are read under that pcp's lock, one at a time. The text is then
//! produced by the formatters of [`crate::report::vmstat`], so its layout is Linux's, column for
//! column. Nothing is allocated: snapshots are built one node (at most four zones) at a
//! time on the stack.

#![deny(unsafe_code)]

use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use crate::model::mmzone::{
    MAX_NR_ZONES, MIGRATE_TYPES, Migratetype, PAGE_SHIFT, PAGEBLOCK_NR_PAGES, ZoneType,
};
use crate::model::pageblock::get_pageblock_migratetype;
use crate::model::zone::Zone;
use crate::port::platform::Platform;
use crate::report::vmstat::{
    self, MeminfoSnapshot, NR_VM_ZONE_STAT_ITEMS, PagesetSnapshot, ZoneSnapshot, ZoneStatItem,
};

use crate::page_alloc::PageAllocator;

impl<P: Platform> PageAllocator<P> {
    /// Pageblocks of each migratetype in `zone`, by the type in the pageblock bitmap
    /// (`pagetypeinfo_showblockcount`): every pageblock met stepping from the zone's first
    /// pfn whose first page belongs to the zone.
    fn count_pageblocks(&self, zone: &Zone) -> [u64; MIGRATE_TYPES] {
        let mut count = [0u64; MIGRATE_TYPES];
        let mut pfn = zone.zone_start_pfn();
        while pfn < zone.zone_end_pfn() {
            if let Some(page) = self.model().pfn_to_page(pfn)
                && page.zone_idx() == zone.zone_type.index()
                && page.nid() == zone.nid
                && let Ok(mt) = get_pageblock_migratetype(self.model().sparse(), pfn)
            {
                count[mt.index()] += 1;
            }
            pfn += PAGEBLOCK_NR_PAGES;
        }
        count
    }

    /// A snapshot of zone `zt` of node `nid` (without per-CPU pagesets), or `None` if the
    /// node has no memory.
    pub fn zone_snapshot(&self, nid: usize, zt: ZoneType) -> Option<ZoneSnapshot<'static>> {
        let z = self.model().node(nid)?.zone(zt);
        let mut s = ZoneSnapshot::new(nid as u32, zt);
        s.zone_start_pfn = z.zone_start_pfn();
        s.spanned = z.spanned_pages();
        s.present = z.present_pages();
        s.managed = z.managed_pages();
        s.watermarks = z.watermarks();
        s.protection = z.lowmem_reserve();
        {
            let g = z.lock.lock_irqsave(self.platform());
            s.nr_free = g.nr_free_by_type();
            s.vm_stat = core::array::from_fn(|i| z.counters.vm_stat[i].load(Ordering::Relaxed));
            s.nr_reserved_highatomic = z.nr_reserved_highatomic();
            s.nr_free_highatomic = z.nr_free_highatomic();
        }
        s.nr_pageblocks = self.count_pageblocks(z);
        s.cma = s.nr_pageblocks[Migratetype::Cma.index()] * PAGEBLOCK_NR_PAGES;
        Some(s)
    }

    /// Snapshots of the four zones of node `nid`.
    fn node_snapshots(&self, nid: usize) -> Option<[ZoneSnapshot<'static>; MAX_NR_ZONES]> {
        self.model().node(nid)?;
        let mut out = [ZoneSnapshot::new(0, ZoneType::Dma); MAX_NR_ZONES];
        for zt in ZoneType::ALL {
            out[zt.index()] = self.zone_snapshot(nid, zt)?;
        }
        Some(out)
    }

    fn for_each_node_snapshots(
        &self,
        mut f: impl FnMut(&[ZoneSnapshot<'static>]) -> fmt::Result,
    ) -> fmt::Result {
        for n in self.model().nodes() {
            if let Some(snaps) = self.node_snapshots(n.node_id) {
                f(&snaps)?;
            }
        }
        Ok(())
    }

    /// `/proc/buddyinfo`.
    pub fn write_buddyinfo(&self, w: &mut dyn Write) -> fmt::Result {
        self.for_each_node_snapshots(|s| vmstat::buddyinfo(w, s))
    }

    /// `/proc/pagetypeinfo`.
    pub fn write_pagetypeinfo(&self, w: &mut dyn Write) -> fmt::Result {
        self.for_each_node_snapshots(|s| vmstat::pagetypeinfo(w, s))
    }

    /// `/sys/kernel/debug/extfrag/extfrag_index`.
    pub fn write_extfrag_index(&self, w: &mut dyn Write) -> fmt::Result {
        self.for_each_node_snapshots(|s| vmstat::extfrag_index(w, s))
    }

    /// `/sys/kernel/debug/extfrag/unusable_index`.
    pub fn write_unusable_index(&self, w: &mut dyn Write) -> fmt::Result {
        self.for_each_node_snapshots(|s| vmstat::unusable_index(w, s))
    }

    /// CPU `cpu`'s pageset for zone `nid`/`zt`, as zoneinfo shows it.
    pub fn pageset_snapshot(
        &self,
        cpu: usize,
        nid: usize,
        zt: ZoneType,
    ) -> Option<PagesetSnapshot> {
        self.with_pcp(cpu, nid, zt, |l| PagesetSnapshot {
            cpu: cpu as u32,
            count: l.count,
            high: l.high,
            batch: l.batch,
            stat_threshold: None,
        })
    }

    /// `/proc/zoneinfo`: every zone of every node, with every CPU's pageset.
    pub fn write_zoneinfo(&self, w: &mut dyn Write) -> fmt::Result {
        for n in self.model().nodes() {
            for zt in ZoneType::ALL {
                let Some(s) = self.zone_snapshot(n.node_id, zt) else {
                    continue;
                };
                let nid = n.node_id;
                let cpus = 0..self.percpu().nr_cpus();
                vmstat::zoneinfo_zone_with(
                    w,
                    &s,
                    cpus.filter_map(|c| self.pageset_snapshot(c, nid, zt)),
                )?;
            }
        }
        Ok(())
    }

    /// Zone counters summed over all zones (`global_zone_page_state`).
    pub fn global_zone_page_state(&self) -> [u64; NR_VM_ZONE_STAT_ITEMS] {
        let mut out = [0u64; NR_VM_ZONE_STAT_ITEMS];
        for zr in self.all_zones() {
            let z = self.zone(zr);
            for item in ZoneStatItem::ALL {
                out[item.index()] += z.zone_page_state(item);
            }
        }
        out
    }

    /// `/proc/vmstat`: zone counters summed over zones, events summed over CPUs.
    pub fn write_vmstat(&self, w: &mut dyn Write) -> fmt::Result {
        vmstat::vmstat_with_lru(
            w,
            &self.global_zone_page_state(),
            &self.global_numa_events(),
            &self.global_lru_sizes(),
            &self.vm_events(),
        )
    }

    /// The inputs of the meminfo lines, summed over every zone.
    pub fn meminfo_snapshot(&self) -> MeminfoSnapshot {
        let mut total = MeminfoSnapshot::default();
        for n in self.model().nodes() {
            if let Some(snaps) = self.node_snapshots(n.node_id) {
                let m = MeminfoSnapshot::from_zones(&snaps);
                total.totalram_pages += m.totalram_pages;
                total.free_pages += m.free_pages;
                total.totalreserve_pages += m.totalreserve_pages;
                total.cma_total += m.cma_total;
                total.cma_free += m.cma_free;
                total.wmark_low += m.wmark_low;
            }
        }
        let lru = self.global_lru_sizes();
        total.file_lru_pages = lru.active_file + lru.inactive_file;
        total
    }

    /// The `MemTotal`, `MemFree`, `MemAvailable`, `Cached`, `Active(file)` and
    /// `Inactive(file)` lines of `/proc/meminfo`.
    pub fn write_meminfo(&self, w: &mut dyn Write) -> fmt::Result {
        vmstat::meminfo(w, &self.meminfo_snapshot())?;
        vmstat::meminfo_lru(w, &self.global_lru_sizes())
    }

    /// The free-memory summary of an allocation failure (`show_free_areas`): per zone up
    /// to `highest`, the free pages and marks in KiB, the reserves, and the buddyinfo line.
    pub(crate) fn show_free_areas(&self, highest: ZoneType) {
        let kb = |pages: u64| pages << (PAGE_SHIFT - 10);
        // The LRU sizes (crate::reclaim): what reclaim could still have freed.
        let g = self.global_lru_sizes();
        log::warn!(
            "active_file:{} inactive_file:{} file_pages:{} free:{}",
            g.active_file,
            g.inactive_file,
            g.file_pages,
            self.nr_free_pages()
        );
        for n in self.model().nodes() {
            let l = self.lru_sizes(n.node_id);
            log::warn!(
                "Node {} active_file:{}kB inactive_file:{}kB file_pages:{}kB kswapd_failures:{}",
                n.node_id,
                kb(l.active_file),
                kb(l.inactive_file),
                kb(l.file_pages),
                self.kswapd_failures(n.node_id)
            );
        }
        for n in self.model().nodes() {
            for zt in ZoneType::ALL.iter().filter(|z| **z <= highest) {
                let Some(s) = self.zone_snapshot(n.node_id, *zt) else {
                    continue;
                };
                if !s.populated() {
                    continue;
                }
                let w = &s.watermarks;
                log::warn!(
                    "Node {} {} free:{}kB boost:{}kB min:{}kB low:{}kB high:{}kB reserved_highatomic:{}KB present:{}kB managed:{}kB",
                    s.node,
                    zt.name(),
                    kb(s.free_pages()),
                    kb(w.boost),
                    kb(w.min_wmark_pages()),
                    kb(w.low_wmark_pages()),
                    kb(w.high_wmark_pages()),
                    kb(s.nr_reserved_highatomic),
                    kb(s.present),
                    kb(s.managed)
                );
                log::warn!(
                    "lowmem_reserve[]: {} {} {} {}",
                    s.protection[0],
                    s.protection[1],
                    s.protection[2],
                    s.protection[3]
                );
                log::warn!("{}", BuddyLine(&s));
            }
        }
    }
}

/// One zone's buddyinfo line, formatted on demand (for a log message).
struct BuddyLine<'a>(&'a ZoneSnapshot<'a>);

impl fmt::Display for BuddyLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = *self.0;
        s.pagesets = &[];
        let mut line = LineTrim { inner: f };
        vmstat::buddyinfo(&mut line, core::slice::from_ref(&s))
    }
}

/// Drops newlines, so a formatter's line becomes part of a log message.
struct LineTrim<'a, 'b> {
    inner: &'a mut fmt::Formatter<'b>,
}

impl Write for LineTrim<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.inner.write_str(s.trim_end_matches('\n'))
    }
}
