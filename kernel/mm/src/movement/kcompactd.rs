//! kcompactd, the per-node background compactor (Linux: the `kcompactd` thread of
//! `mm/compaction.c`).
//!
//! Direct compaction makes the allocating task wait. Background compaction does the same
//! work before anyone has to: a node's kcompactd is woken when a high-order allocation on
//! the node fails its fast path ([`PageAllocator::wakeup_kcompactd`]), and compacts the
//! node's zones until a block of that order is free (`kcompactd_do_work`). Independently,
//! every [`HPAGE_FRAG_CHECK_INTERVAL_MSEC`] it looks at the node's *fragmentation score*
//! (the share of free memory in blocks smaller than a pageblock, weighted by zone size) and,
//! if `vm.compaction_proactiveness` is set and the score is above the high threshold,
//! compacts until it is at or below the low one (*proactive compaction*). If a proactive
//! round did not lower the score, the next check waits 64 times longer: fragmentation that
//! compaction cannot fix (unmovable pages everywhere) must not keep a CPU busy.
//!
//! How the worker runs is the platform's business (a kernel thread, a CPU's idle loop, a
//! host thread in the simulation): it calls [`PageAllocator::kcompactd_run`] with the
//! current time, sleeps for the returned number of milliseconds unless woken through
//! [`crate::port::platform::Platform::wake_kcompactd`], and calls it again. The state that Linux
//! keeps on the kthread's stack (the proactive timeout) is therefore kept in the node
//! ([`crate::model::node::KcompactdState`]).
//!
//! As kswapd does in Linux, kcompactd clears the compaction skip hints when it goes to
//! sleep, once a direct compaction has gone through a whole zone (this kernel has no
//! kswapd).

#![deny(unsafe_code)]

use core::sync::atomic::Ordering;

use crate::model::mmzone::{MAX_NR_ZONES, ZoneType};
use crate::model::node::{KCOMPACTD_NO_ZONEIDX, Node};
use crate::movement::compaction::{
    CompactResult, HPAGE_FRAG_CHECK_INTERVAL_MSEC, KCOMPACTD_SLEEP_FOREVER,
};
use crate::page_alloc::PageAllocator;
use crate::page_alloc::gfp::AllocFlags;
use crate::page_alloc::watermark::zone_watermark_ok;
use crate::port::platform::Platform;
use crate::report::fragmentation::{COMPACT_MAX_DEFER_SHIFT, should_proactive_compact_node};
use crate::report::vmstat::VmEvent;

impl<P: Platform> PageAllocator<P> {
    /// Record that an allocation of `order` failed on node `nid` and wake its kcompactd
    /// (`wakeup_kcompactd`), through [`Platform::wake_kcompactd`].
    ///
    /// The request is always recorded (the highest order, the most restrictive zone
    /// index); the platform is only poked if compacting the node can help
    /// (`kcompactd_node_suitable`): a node that lacks memory rather than contiguity would
    /// otherwise wake its worker for nothing on every failed allocation.
    pub fn wakeup_kcompactd(&self, nid: usize, order: u32, highest_zoneidx: usize) {
        if order == 0 {
            return;
        }
        let Some(node) = self.model().node(nid) else {
            return;
        };
        let st = &node.kcompactd;
        st.max_order.fetch_max(order, Ordering::Relaxed);
        st.highest_zoneidx
            .fetch_min(highest_zoneidx.min(MAX_NR_ZONES - 1), Ordering::Relaxed);
        if !self.kcompactd_node_suitable(nid, order, highest_zoneidx) {
            return;
        }
        self.platform().wake_kcompactd(nid);
    }

    /// One round of node `nid`'s kcompactd at time `now_ms` (milliseconds, monotonic):
    /// serve a pending wake-up (`kcompactd_do_work`), or, when the proactive timer has
    /// expired, compact proactively by fragmentation score with Linux's back-off. Returns
    /// how many milliseconds the worker may sleep before its next round unless woken.
    ///
    /// [`KCOMPACTD_SLEEP_FOREVER`] means "until woken": there is no such node, or
    /// proactive compaction is disabled.
    pub fn kcompactd_run(&self, nid: usize, now_ms: u64) -> u64 {
        let Some(node) = self.model().node(nid) else {
            return KCOMPACTD_SLEEP_FOREVER;
        };
        let st = &node.kcompactd;
        let proactiveness = self.sysctl().compaction_proactiveness as u32;
        let trigger = st.proactive_trigger.swap(false, Ordering::Relaxed);
        if st.max_order.load(Ordering::Relaxed) > 0 && !trigger {
            self.kcompactd_do_work(node);
            // As Linux: after serving a request the proactive timer starts over.
            st.proactive_timeout_ms
                .store(HPAGE_FRAG_CHECK_INTERVAL_MSEC, Ordering::Relaxed);
            st.next_proactive_ms.store(
                now_ms.saturating_add(HPAGE_FRAG_CHECK_INTERVAL_MSEC),
                Ordering::Relaxed,
            );
        } else if trigger || now_ms >= st.next_proactive_ms.load(Ordering::Relaxed) {
            let mut timeout = HPAGE_FRAG_CHECK_INTERVAL_MSEC;
            let prev_score = self.fragmentation_score_node(nid);
            if should_proactive_compact_node(prev_score, proactiveness) {
                self.proactive_compact_node(node);
                let score = self.fragmentation_score_node(nid);
                if score >= prev_score {
                    // No progress: back off.
                    timeout = HPAGE_FRAG_CHECK_INTERVAL_MSEC << COMPACT_MAX_DEFER_SHIFT;
                }
            }
            st.proactive_timeout_ms.store(timeout, Ordering::Relaxed);
            st.next_proactive_ms
                .store(now_ms.saturating_add(timeout), Ordering::Relaxed);
        }
        // Going to sleep: forget the skip hints of zones a direct compaction went through
        // completely (kswapd's job in Linux).
        self.reset_isolation_suitable(nid);
        if st.max_order.load(Ordering::Relaxed) > 0 {
            // Woken again while working.
            return 0;
        }
        if proactiveness == 0 {
            return KCOMPACTD_SLEEP_FOREVER;
        }
        st.next_proactive_ms
            .load(Ordering::Relaxed)
            .saturating_sub(now_ms)
    }

    /// `kcompactd_do_work`: compact the node's zones up to the requested zone index for the
    /// requested order, at SYNC_LIGHT, honouring deferral and skip hints; zones that can
    /// already satisfy the order, or where compaction cannot help, are left alone.
    fn kcompactd_do_work(&self, node: &Node) {
        let st = &node.kcompactd;
        let order = st.max_order.load(Ordering::Relaxed);
        let highest = match st.highest_zoneidx.load(Ordering::Relaxed) {
            KCOMPACTD_NO_ZONEIDX => node.nr_zones.saturating_sub(1),
            z => z,
        }
        .min(MAX_NR_ZONES - 1);
        self.count_vm_events(VmEvent::CompactDaemonWake, 1);
        let threshold = self.sysctl().extfrag_threshold as i32;
        for zt in ZoneType::ALL.into_iter().take(highest + 1) {
            let zone = node.zone(zt);
            if !zone.managed_zone() {
                continue;
            }
            if self.compaction_deferred(zone, order) {
                continue;
            }
            if zone_watermark_ok(
                &zone.free_state(),
                order,
                zone.watermarks().min_wmark_pages(),
                zt,
                AllocFlags::empty(),
                |o, mt| zone.has_free_block(o, mt),
            ) {
                continue;
            }
            if !self.compaction_suitable(zone, order, zt, threshold) {
                continue;
            }
            let highest_zt = ZoneType::from_index(highest).unwrap_or(zt);
            let (status, _) = self.kcompactd_compact_zone(zone, order as i32, highest_zt, false);
            match status {
                CompactResult::Success => self.compaction_defer_reset(zone, order, false),
                CompactResult::PartialSkipped | CompactResult::Complete => {
                    // Freed pages may be stranded on pcp lists; the deferral below limits
                    // how often this is paid.
                    self.drain_all_pages();
                    self.defer_compaction(zone, order);
                }
                _ => {}
            }
        }
        // Done until woken again, but keep a request that arrived meanwhile and asked for
        // more (a higher order or a lower zone).
        let m = st.max_order.load(Ordering::Relaxed);
        if m <= order {
            let _ = st
                .max_order
                .compare_exchange(m, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        let z = st.highest_zoneidx.load(Ordering::Relaxed);
        if z >= highest {
            let _ = st.highest_zoneidx.compare_exchange(
                z,
                KCOMPACTD_NO_ZONEIDX,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// `proactive_compact_node`: compact every zone of the node until its own score is at
    /// or below the low threshold (or its scanners meet).
    fn proactive_compact_node(&self, node: &Node) {
        for zt in ZoneType::ALL {
            let zone = node.zone(zt);
            if !zone.managed_zone() {
                continue;
            }
            self.kcompactd_compact_zone(zone, -1, zt, true);
        }
        self.drain_all_pages();
    }
}
