//! kswapd, the per-node background reclaimer (Linux: `kswapd`, `wakeup_kswapd`,
//! `balance_pgdat`, `kswapd_try_to_sleep`, `prepare_kswapd_sleep`, `pgdat_balanced` in
//! `mm/vmscan.c`).
//!
//! Direct reclaim makes an allocating task wait; kswapd frees memory before anyone has
//! to. An allocation that finds a zone below its **low** watermark wakes the node's kswapd
//! ([`PageAllocator::wakeup_kswapd`]) with the order and highest zone it asked for; so does
//! the allocation that finds a **watermark boost** raised by a fragmenting fallback.
//! kswapd then reclaims until some eligible zone of the node is above its **high**
//! watermark (plus boost) for that order (`balance_pgdat`), starting at
//! [`DEF_PRIORITY`] and lowering the priority while too little is freed; a boosted run
//! resets the boosts and wakes kcompactd to repair the fragmentation that raised them.
//! When the node is balanced, kswapd hands high-order work to kcompactd, naps briefly,
//! and sleeps until woken unless the node dipped again during the nap
//! (`kswapd_low_wmark_hit_quickly` if woken during the nap, `kswapd_high_wmark_hit_quickly`
//! if the node was unbalanced when the nap ended). After [`MAX_RECLAIM_RETRIES`] runs
//! without progress the node is "hopeless": kswapd sleeps and wake-ups are ignored until
//! a reclaim frees something on the node again (`kswapd_failures`).
//!
//! # Running it
//!
//! As for kcompactd, how the worker runs is the port's business: its worker calls
//! [`PageAllocator::kswapd_run`] with the current time, sleeps for the returned number of
//! milliseconds unless woken through [`Platform::wake_kswapd`], and calls it again. A port
//! declares that it runs kswapd with [`Platform::has_kswapd`]; one that does not keeps the
//! behaviour of a kernel without kswapd: kcompactd is woken straight from the allocation
//! slow path and boosts are dropped when handed over.

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::model::mmzone::{MAX_NR_ZONES, PAGEBLOCK_ORDER, ZoneType};
use crate::page_alloc::gfp::{AllocFlags, GFP_KERNEL, Gfp};
use crate::page_alloc::watermark::zone_watermark_ok;
use crate::page_alloc::{MAX_RECLAIM_RETRIES, PageAllocator};
use crate::port::platform::Platform;
use crate::reclaim::vmscan::ScanControl;
use crate::reclaim::{DEF_PRIORITY, SWAP_CLUSTER_MAX};
use crate::report::vmstat::VmEvent;

/// [`PageAllocator::kswapd_run`]: sleep until woken.
pub const KSWAPD_SLEEP_FOREVER: u64 = u64::MAX;
/// The short nap before kswapd sleeps for good (`HZ / 10`), in milliseconds.
pub const KSWAPD_NAP_MS: u64 = 100;
/// "No request": the zone index recorded when nothing asked (Linux: `MAX_NR_ZONES`).
const NO_ZONEIDX: usize = MAX_NR_ZONES;

#[derive(Debug)]
/// One node's kswapd state (the `kswapd_*` fields of `pg_data_t`, plus what Linux keeps
/// on the thread's stack across its short nap).
pub struct KswapdState {
    /// Highest order asked for since the last run (`kswapd_order`).
    order: AtomicU32,
    /// Highest zone index asked for since the last run (`kswapd_highest_zoneidx`).
    highest_zoneidx: AtomicUsize,
    /// Runs in a row that freed nothing (`kswapd_failures`).
    failures: AtomicU32,
    /// The last run ended in a nap that ends at `nap_until`.
    napping: AtomicBool,
    nap_until: AtomicU64,
    /// Order and zone index the last run balanced for.
    last_order: AtomicU32,
    last_zoneidx: AtomicUsize,
}

impl Default for KswapdState {
    fn default() -> Self {
        KswapdState::new()
    }
}

impl KswapdState {
    /// Idle: nothing asked, no failures.
    pub const fn new() -> KswapdState {
        KswapdState {
            order: AtomicU32::new(0),
            highest_zoneidx: AtomicUsize::new(NO_ZONEIDX),
            failures: AtomicU32::new(0),
            napping: AtomicBool::new(false),
            nap_until: AtomicU64::new(0),
            last_order: AtomicU32::new(0),
            last_zoneidx: AtomicUsize::new(NO_ZONEIDX),
        }
    }
}

/// Pages compaction needs free to succeed at `order` (`compact_gap`).
pub const fn compact_gap(order: u32) -> u64 {
    2u64 << order
}

impl<P: Platform> PageAllocator<P> {
    fn kswapd_state(&self, nid: usize) -> Option<&KswapdState> {
        self.model().node(nid).map(|n| &n.kswapd)
    }

    /// `kswapd_failures` of node `nid`.
    pub fn kswapd_failures(&self, nid: usize) -> u32 {
        self.kswapd_state(nid)
            .map_or(0, |s| s.failures.load(Ordering::Relaxed))
    }

    /// Something was reclaimed on `nid`: it is not hopeless any more.
    pub(crate) fn reset_kswapd_failures(&self, nid: usize) {
        if let Some(s) = self.kswapd_state(nid) {
            s.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Is some eligible zone of the node above its high watermark (plus boost) for
    /// `order` (`pgdat_balanced`)? A node without managed zones up to `highest_zoneidx`
    /// counts as balanced.
    pub fn pgdat_balanced(&self, nid: usize, order: u32, highest_zoneidx: usize) -> bool {
        let Some(node) = self.model().node(nid) else {
            return true;
        };
        let highest = ZoneType::from_index(highest_zoneidx.min(MAX_NR_ZONES - 1))
            .unwrap_or(ZoneType::Movable);
        let mut any = false;
        for zt in ZoneType::ALL.into_iter().take(highest.index() + 1) {
            let zone = node.zone(zt);
            if !zone.managed_zone() {
                continue;
            }
            any = true;
            if zone_watermark_ok(
                &zone.free_state(),
                order,
                zone.watermarks().high_wmark_pages(),
                highest,
                AllocFlags::empty(),
                |o, mt| zone.has_free_block(o, mt),
            ) {
                return true;
            }
        }
        !any
    }

    /// Does some zone up to `highest_zoneidx` carry a watermark boost
    /// (`pgdat_watermark_boosted`)?
    fn pgdat_watermark_boosted(&self, nid: usize, highest_zoneidx: usize) -> bool {
        let Some(node) = self.model().node(nid) else {
            return false;
        };
        ZoneType::ALL
            .into_iter()
            .take(highest_zoneidx.min(MAX_NR_ZONES - 1) + 1)
            .any(|zt| node.zone(zt).watermarks().boost > 0)
    }

    /// Wake node `nid`'s kswapd for an allocation of `order` limited to zones up to
    /// `highest_zoneidx` (`wakeup_kswapd`). The request is recorded (highest order,
    /// highest zone); the port is only poked if the node needs it: not when it is balanced
    /// and unboosted, nor when it is hopeless. In those cases a request that cannot
    /// reclaim directly wakes kcompactd instead, as Linux does.
    ///
    /// On a port without kswapd ([`Platform::has_kswapd`] false) this wakes kcompactd for
    /// high orders, as the allocator did before it had a kswapd.
    pub fn wakeup_kswapd(&self, nid: usize, gfp: Gfp, order: u32, highest_zoneidx: usize) {
        if !self.platform().has_kswapd() {
            if order > 0 {
                self.wakeup_kcompactd(nid, order, highest_zoneidx);
            }
            return;
        }
        let Some(st) = self.kswapd_state(nid) else {
            return;
        };
        let idx = highest_zoneidx.min(MAX_NR_ZONES - 1);
        let cur = st.highest_zoneidx.load(Ordering::Relaxed);
        if cur == NO_ZONEIDX || cur < idx {
            st.highest_zoneidx.store(idx, Ordering::Relaxed);
        }
        st.order.fetch_max(order, Ordering::Relaxed);
        if st.failures.load(Ordering::Relaxed) >= MAX_RECLAIM_RETRIES
            || (self.pgdat_balanced(nid, order, idx) && !self.pgdat_watermark_boosted(nid, idx))
        {
            if !gfp.contains(Gfp::DIRECT_RECLAIM) {
                self.wakeup_kcompactd(nid, order, idx);
            }
            return;
        }
        self.platform().wake_kswapd(nid);
    }

    /// Reclaim on node `nid` until it is balanced for `order` up to `highest_zoneidx`
    /// (`balance_pgdat`); see the module documentation. Returns the order the node was
    /// balanced for: 0 if enough was freed for compaction to form the requested order.
    pub fn balance_pgdat(&self, nid: usize, order: u32, highest_zoneidx: usize) -> u32 {
        let Some(node) = self.model().node(nid) else {
            return order;
        };
        let st = &node.kswapd;
        self.count_vm_events(VmEvent::Pageoutrun, 1);
        let highest = highest_zoneidx.min(MAX_NR_ZONES - 1);
        let eligible = || {
            ZoneType::ALL
                .into_iter()
                .take(highest + 1)
                .map(|zt| node.zone(zt))
        };
        let mut nr_boost_reclaim: u64 = eligible().map(|z| z.watermarks().boost).sum();
        let boosted = nr_boost_reclaim > 0;
        let mut sc = ScanControl::new(0, highest, order, true, GFP_KERNEL);
        'restart: loop {
            sc.priority = DEF_PRIORITY;
            loop {
                sc.reclaim_idx = highest;
                let balanced = self.pgdat_balanced(nid, sc.order, highest);
                if !balanced && nr_boost_reclaim > 0 {
                    // The boost alone cannot be met cheaply: reclaim for real.
                    nr_boost_reclaim = 0;
                    continue 'restart;
                }
                if nr_boost_reclaim == 0 && balanced {
                    break 'restart;
                }
                // Boost reclaim stays gentle.
                let mut raise_priority = !(nr_boost_reclaim > 0 && sc.priority == DEF_PRIORITY - 2);
                // kswapd_shrink_node: reclaim up to the high watermarks.
                sc.nr_to_reclaim = eligible()
                    .filter(|z| z.managed_zone())
                    .map(|z| z.watermarks().high_wmark_pages().max(SWAP_CLUSTER_MAX))
                    .sum();
                sc.nr_scanned = 0;
                let before = sc.nr_reclaimed;
                self.shrink_node(nid, &mut sc);
                if sc.order > 0 && sc.nr_reclaimed >= compact_gap(sc.order) {
                    sc.order = 0;
                }
                if sc.nr_scanned >= sc.nr_to_reclaim {
                    raise_priority = false;
                }
                let nr = sc.nr_reclaimed - before;
                nr_boost_reclaim -= nr_boost_reclaim.min(nr);
                if nr_boost_reclaim > 0 && nr == 0 {
                    break;
                }
                if raise_priority || nr == 0 {
                    sc.priority -= 1;
                }
                if sc.priority < 1 {
                    break;
                }
            }
            if sc.nr_reclaimed == 0 {
                st.failures.fetch_add(1, Ordering::Relaxed);
            }
            break;
        }
        if boosted {
            for z in eligible() {
                let _g = z.lock.lock_irqsave(self.platform());
                z.wm.boost.store(0, Ordering::Relaxed);
            }
            // The boost was raised by fragmentation: let kcompactd repair it.
            self.wakeup_kcompactd(nid, PAGEBLOCK_ORDER, highest);
        }
        sc.order
    }

    /// May kswapd sleep (`prepare_kswapd_sleep`)? Yes if the node is hopeless or balanced.
    pub fn prepare_kswapd_sleep(&self, nid: usize, order: u32, highest_zoneidx: usize) -> bool {
        if self.kswapd_failures(nid) >= MAX_RECLAIM_RETRIES {
            return true;
        }
        self.pgdat_balanced(nid, order, highest_zoneidx)
    }

    /// One round of node `nid`'s kswapd at time `now_ms` (milliseconds, monotonic): take
    /// the recorded request, balance the node (`balance_pgdat`), and decide how long to
    /// sleep (`kswapd_try_to_sleep`). Returns the milliseconds the worker may sleep unless
    /// woken: [`KSWAPD_NAP_MS`] for the short nap after balancing, [`KSWAPD_SLEEP_FOREVER`]
    /// once the nap ended with the node still balanced, 0 to run again at once.
    pub fn kswapd_run(&self, nid: usize, now_ms: u64) -> u64 {
        let Some(node) = self.model().node(nid) else {
            return KSWAPD_SLEEP_FOREVER;
        };
        let st = &node.kswapd;
        let req_order = st.order.swap(0, Ordering::Relaxed);
        let req_idx = st.highest_zoneidx.swap(NO_ZONEIDX, Ordering::Relaxed);
        let highest = match (req_idx, st.last_zoneidx.load(Ordering::Relaxed)) {
            (NO_ZONEIDX, NO_ZONEIDX) => node.nr_zones.saturating_sub(1),
            (NO_ZONEIDX, last) => last,
            (r, _) => r,
        };
        if st.napping.swap(false, Ordering::Relaxed) {
            let woken_early = now_ms < st.nap_until.load(Ordering::Relaxed);
            let last_order = st.last_order.load(Ordering::Relaxed);
            if !woken_early
                && req_idx == NO_ZONEIDX
                && req_order == 0
                && self.prepare_kswapd_sleep(nid, last_order, highest)
            {
                return KSWAPD_SLEEP_FOREVER;
            }
            self.count_vm_events(
                if woken_early {
                    VmEvent::KswapdLowWmarkHitQuickly
                } else {
                    VmEvent::KswapdHighWmarkHitQuickly
                },
                1,
            );
        }
        let reclaim_order = if st.failures.load(Ordering::Relaxed) >= MAX_RECLAIM_RETRIES {
            req_order
        } else {
            self.balance_pgdat(nid, req_order, highest)
        };
        st.last_order.store(reclaim_order, Ordering::Relaxed);
        st.last_zoneidx.store(highest, Ordering::Relaxed);
        if self.prepare_kswapd_sleep(nid, reclaim_order, highest) {
            // Going to sleep: forget the compaction skip hints and hand the order that
            // was asked for to kcompactd.
            self.reset_isolation_suitable(nid);
            self.wakeup_kcompactd(nid, req_order, highest);
            st.napping.store(true, Ordering::Relaxed);
            st.nap_until
                .store(now_ms.saturating_add(KSWAPD_NAP_MS), Ordering::Relaxed);
            return KSWAPD_NAP_MS;
        }
        0
    }
}

impl<P: Platform> PageAllocator<P> {
    /// The order node `nid`'s kcompactd was last asked for and has not served yet (0:
    /// none): what kswapd handed over (for tests and views).
    pub fn kcompactd_pending_order(&self, nid: usize) -> u32 {
        self.model()
            .node(nid)
            .map_or(0, |n| n.kcompactd.max_order.load(Ordering::Relaxed))
    }
}
