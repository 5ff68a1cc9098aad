//! Per-node views: `/sys/devices/system/node/nodeN/meminfo`, `vmstat` and `numastat`.
//!
//! Linux keeps most counters per zone and sums them per node for these files; so do we.
//! The NUMA allocation counters (`numa_hit`, `numa_miss`, ...) are per CPU and per zone
//! ([`crate::page_alloc::percpu`]), summed here over CPUs and the node's zones: a
//! `numastat`-style table is the same sums laid out by node.

#![deny(unsafe_code)]

use core::fmt::{self, Write};

use crate::model::mmzone::PAGE_SHIFT;
use crate::page_alloc::PageAllocator;
use crate::port::platform::Platform;
use crate::report::vmstat::{
    MeminfoSnapshot, NR_VM_NUMA_EVENT_ITEMS, NR_VM_ZONE_STAT_ITEMS, NumaEvent, ZoneStatItem,
};

impl<P: Platform> PageAllocator<P> {
    /// The inputs of node `nid`'s meminfo lines; None for a node without memory.
    pub fn node_meminfo_snapshot(&self, nid: usize) -> Option<MeminfoSnapshot> {
        self.model().node(nid)?;
        let snaps = crate::model::mmzone::ZoneType::ALL.map(|zt| self.zone_snapshot(nid, zt));
        let mut m = MeminfoSnapshot::default();
        for s in snaps.iter().flatten() {
            let one = MeminfoSnapshot::from_zones(core::slice::from_ref(s));
            m.totalram_pages += one.totalram_pages;
            m.free_pages += one.free_pages;
            m.totalreserve_pages += one.totalreserve_pages;
        }
        Some(m)
    }

    /// `/sys/devices/system/node/nodeN/meminfo`: `Node N MemTotal:`, `MemFree:` and
    /// `MemUsed:` in kB, Linux's layout (`node_read_meminfo`).
    pub fn write_node_meminfo(&self, nid: usize, w: &mut dyn Write) -> fmt::Result {
        let Some(m) = self.node_meminfo_snapshot(nid) else {
            return Ok(());
        };
        let kb = |pages: u64| pages << (PAGE_SHIFT - 10);
        for (label, pages) in [
            ("MemTotal:", m.totalram_pages),
            ("MemFree:", m.free_pages),
            ("MemUsed:", m.totalram_pages.saturating_sub(m.free_pages)),
        ] {
            writeln!(w, "Node {nid} {label:<15} {:>8} kB", kb(pages))?;
        }
        Ok(())
    }

    /// Node `nid`'s zone counters, summed over its zones.
    pub fn node_zone_page_state(&self, nid: usize) -> [u64; NR_VM_ZONE_STAT_ITEMS] {
        let mut out = [0u64; NR_VM_ZONE_STAT_ITEMS];
        if let Some(node) = self.model().node(nid) {
            for z in node.populated_zones() {
                for item in ZoneStatItem::ALL {
                    out[item.index()] += z.zone_page_state(item);
                }
            }
        }
        out
    }

    /// `/sys/devices/system/node/nodeN/vmstat`: the node's zone counters, then its NUMA
    /// allocation counters, one `name value` per line.
    pub fn write_node_vmstat(&self, nid: usize, w: &mut dyn Write) -> fmt::Result {
        let zone = self.node_zone_page_state(nid);
        for item in ZoneStatItem::ALL {
            writeln!(w, "{} {}", item.name(), zone[item.index()])?;
        }
        let numa = self.node_numa_events(nid);
        for ev in NumaEvent::ALL {
            writeln!(w, "{} {}", ev.name(), numa[ev.index()])?;
        }
        Ok(())
    }

    /// `/sys/devices/system/node/nodeN/numastat`: Linux's six lines (`numa_hit`,
    /// `numa_miss`, `numa_foreign`, `interleave_hit`, `local_node`, `other_node`).
    pub fn write_node_numastat(&self, nid: usize, w: &mut dyn Write) -> fmt::Result {
        let n = self.node_numa_events(nid);
        for ev in NumaEvent::ALL {
            writeln!(w, "{} {}", ev.numastat_name(), n[ev.index()])?;
        }
        Ok(())
    }

    /// The `numastat` command's table: one column per node with memory, one row per
    /// counter (in pages, as the sysfs files count them).
    pub fn write_numastat(&self, w: &mut dyn Write) -> fmt::Result {
        write!(w, "{:<16}", "")?;
        for n in self.model().nodes() {
            write_node_header(w, n.node_id, 16)?;
        }
        writeln!(w)?;
        let sums: [[u64; NR_VM_NUMA_EVENT_ITEMS]; crate::model::mmzone::MAX_NUMNODES] =
            core::array::from_fn(|nid| self.node_numa_events(nid));
        for ev in NumaEvent::ALL {
            write!(w, "{:<16}", ev.numastat_name())?;
            for n in self.model().nodes() {
                write!(w, "{:>16}", sums[n.node_id][ev.index()])?;
            }
            writeln!(w)?;
        }
        Ok(())
    }
}

/// `nodeN` right-aligned in `width` columns.
fn write_node_header(w: &mut dyn Write, nid: usize, width: usize) -> fmt::Result {
    let digits = nid.checked_ilog10().unwrap_or(0) as usize + 1;
    for _ in 4 + digits..width {
        w.write_char(' ')?;
    }
    write!(w, "node{nid}")
}
