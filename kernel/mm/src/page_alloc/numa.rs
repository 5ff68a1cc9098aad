//! NUMA allocation statistics (Linux: `zone_statistics`) and interleaved allocation
//! (the interleave memory policy's `alloc_page_interleave`).
//!
//! Every successful allocation is classified twice: hit or miss (did it come from the
//! node the request preferred: the CPU's node, or the one `alloc_pages_node` named?) and
//! local or other (is the zone on the allocating CPU's node?). A miss is also a foreign
//! allocation charged to the preferred node, so `numa_foreign` of node A counts what A
//! wanted and B served. The counters live in the allocating CPU's per-CPU block, one set
//! per zone ([`super::percpu`]), and are bumped with interrupts off as plain stores, so the
//! order-0 fast path writes nothing shared; readers sum them over CPUs.

#![deny(unsafe_code)]

use super::*;
use crate::page_alloc::percpu::NumaCounters;
use crate::report::vmstat::{NR_VM_NUMA_EVENT_ITEMS, NumaEvent, VmEvent};

#[inline]
fn bump(c: &NumaCounters, ev: NumaEvent, n: u64) {
    let a = &c[ev.index()];
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl<P: Platform> PageAllocator<P> {
    /// Count an allocation of `nr` pages from `zr` by CPU `cpu` that preferred node
    /// `pref_nid` (`zone_statistics`). Interrupts must be off (the counters are the CPU's
    /// own, updated with a plain load and store).
    #[inline]
    pub(super) fn zone_statistics_irqs_off(
        &self,
        cpu: usize,
        pref_nid: usize,
        zr: ZoneRef,
        nr: u64,
    ) {
        // One node: every allocation is a hit and local, which is exactly what the
        // `pgalloc_*` events counted at the same sites say; the sums are derived from them
        // when read ([`PageAllocator::node_numa_events`]), so the single-node fast path
        // pays one predictable branch here, not two counter updates.
        if self.nr_online_nodes == 1 {
            return;
        }
        let Some(c) = self.percpu.numa_events(cpu, zr.slot as usize) else {
            return;
        };
        let z_nid = zr.nid as usize;
        if z_nid == pref_nid {
            bump(c, NumaEvent::NumaHit, nr);
        } else {
            bump(c, NumaEvent::NumaMiss, nr);
            // Charged to the preferred node's zone of the same type, or the highest one
            // below it (the zone the request would have used there).
            if let Some(node) = self.model().node(pref_nid) {
                let slot = (0..=zr.zone_idx as usize)
                    .rev()
                    .map(|zt| node.alloc.slots[zt])
                    .find(|&s| s != NO_SLOT);
                if let Some(f) = slot.and_then(|s| self.percpu.numa_events(cpu, s as usize)) {
                    bump(f, NumaEvent::NumaForeign, nr);
                }
            }
        }
        if z_nid == self.platform.cpu_to_node(cpu) {
            bump(c, NumaEvent::NumaLocal, nr);
        } else {
            bump(c, NumaEvent::NumaOther, nr);
        }
    }

    /// [`PageAllocator::zone_statistics_irqs_off`] with interrupts on.
    pub(super) fn zone_statistics(&self, pref_nid: usize, zr: ZoneRef, nr: u64) {
        let _irq = LocalIrqGuard::new(&self.platform);
        self.zone_statistics_irqs_off(self.platform.cpu_id(), pref_nid, zr, nr);
    }

    /// Count an interleaved allocation that got the node it asked for (`numa_interleave`).
    pub(super) fn count_interleave_hit(&self, zr: ZoneRef, nr: u64) {
        let _irq = LocalIrqGuard::new(&self.platform);
        if let Some(c) = self
            .percpu
            .numa_events(self.platform.cpu_id(), zr.slot as usize)
        {
            bump(c, NumaEvent::NumaInterleave, nr);
        }
    }

    /// Allocate from the online nodes in turn (Linux's interleave policy, e.g. for a
    /// large table that every CPU reads): the next node after the last one used, with
    /// that node preferred as [`PageAllocator::alloc_pages_node`] prefers it (it may
    /// fall back to the nearest node; with `__GFP_THISNODE` it may not). An allocation
    /// that got its node counts as `numa_interleave` (`interleave_hit`).
    pub fn alloc_pages_interleave(&self, gfp: Gfp, order: u32) -> Option<&Page> {
        let nid = self.next_interleave_node();
        let page = self.alloc_pages_node(nid, gfp, order)?;
        if page.nid() == nid
            && let Some(zr) = page
                .zone_type()
                .and_then(|zt| self.zone_ref(nid, zt.index()))
        {
            self.count_interleave_hit(zr, 1 << order);
        }
        Some(page)
    }

    /// The node after the rotor's, among the online ones (`interleave_nodes`).
    fn next_interleave_node(&self) -> usize {
        let mut cur = self.interleave_next.load(Ordering::Relaxed);
        loop {
            let next = (1..=MAX_NUMNODES)
                .map(|k| (cur + k) % MAX_NUMNODES)
                .find(|&n| self.node_online(n))
                .unwrap_or(self.first_online_node);
            match self.interleave_next.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(now) => cur = now,
            }
        }
    }

    /// Node `nid`'s NUMA counters, summed over its zones and every CPU.
    pub fn node_numa_events(&self, nid: usize) -> [u64; NR_VM_NUMA_EVENT_ITEMS] {
        let mut out = [0u64; NR_VM_NUMA_EVENT_ITEMS];
        let Some(node) = self.model().node(nid) else {
            return out;
        };
        for &slot in node.alloc.slots.iter().filter(|&&s| s != NO_SLOT) {
            for ev in NumaEvent::ALL {
                out[ev.index()] += self.percpu.sum_numa_event(slot as usize, ev);
            }
        }
        if self.nr_online_nodes == 1 {
            // Not counted one by one on a single node (see `zone_statistics_irqs_off`):
            // every page allocated from its zones was a local hit.
            let pages: u64 = node
                .populated_zones()
                .map(|z| self.vm_event(VmEvent::pgalloc(z.zone_type)))
                .sum();
            out[NumaEvent::NumaHit.index()] += pages;
            out[NumaEvent::NumaLocal.index()] += pages;
        }
        out
    }

    /// The NUMA counters of the whole machine (the `numa_*` lines of `/proc/vmstat`).
    pub fn global_numa_events(&self) -> [u64; NR_VM_NUMA_EVENT_ITEMS] {
        let mut out = [0u64; NR_VM_NUMA_EVENT_ITEMS];
        for n in self.model().nodes() {
            let e = self.node_numa_events(n.node_id);
            for i in 0..NR_VM_NUMA_EVENT_ITEMS {
                out[i] += e[i];
            }
        }
        out
    }
}
