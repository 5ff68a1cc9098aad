//! Nodes: `pglist_data`, one per NUMA node (Linux: `include/linux/mmzone.h`,
//! `calculate_node_totalpages` in `mm/mm_init.c`).
//!
//! A node is a set of CPUs and the memory closest to them; allocation prefers the local
//! node's zones. Node ids are below [`MAX_NUMNODES`] (64) and may be sparse (nodes 0, 5
//! and 63, say); nothing assumes that node 0 is the only one: the node of each RAM range
//! is an input to the memory model ([`NumaRange`], from ACPI SRAT when the kernel parses
//! it; node 0 when there is none). What is kept per node lives in the node's descriptor
//! (its zones, its ZONE_MOVABLE start, its compactor's state, the page allocator's
//! zonelists and fast-path plans), so memory grows with the nodes a machine has, not with
//! [`MAX_NUMNODES`]; only `NODE_DATA` (one pointer per possible node) and node masks (one
//! bit) are sized by the bound.
//!
//! A node's span is from its lowest to its highest RAM pfn; its zones partition that span
//! by the architectural limits (on x86_64 DMA < 16 MiB ≤ DMA32 < 4 GiB ≤ Normal; see
//! [`crate::model::arch::ArchParams`]) and by the
//! ZONE_MOVABLE start chosen for the node. Spans of different nodes may interleave (one
//! node's RAM in another's hole), which is why present pages are counted per node rather
//! than derived from spans.
//!
//! The kernel keeps each `Node` in memory allocated from memblock on that node (Linux's
//! `NODE_DATA(nid)`), not inside the model object: the zones will grow free areas, locks
//! and per-CPU pointers, and a node descriptor should be local to its node's CPUs.
//!
//! Besides its zones a node carries the state of its background compactor
//! ([`KcompactdState`], driven by [`crate::movement::kcompactd`]): what failed allocations asked it
//! to do, and when its next proactive check is due.

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::model::memblock::MemblockRegion;
use crate::model::mmzone::{MAX_NR_ZONES, MAX_NUMNODES, PAGE_SHIFT, ZoneType};
use crate::model::zone::{MovableLayout, Zone, ZoneLimits};

/// RAM `[start, end)` (bytes) belongs to node `nid` (an SRAT memory affinity entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumaRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Node id, below [`MAX_NUMNODES`].
    pub nid: usize,
}

/// Distance of a node to itself (ACPI, Linux's `LOCAL_DISTANCE`).
pub const LOCAL_DISTANCE: u8 = 10;
/// Distance between two nodes when the firmware gives none (Linux's `REMOTE_DISTANCE`).
pub const REMOTE_DISTANCE: u8 = 20;

/// The first entry of an `n * n` row-major distance table that breaks ACPI's rules (10 on
/// the diagonal, more than 10 elsewhere; Linux's `slit_valid`), as `(from, to, value)`.
/// `matrix` must hold at least `n * n` entries.
pub fn first_bad_distance(matrix: &[u8], n: usize) -> Option<(usize, usize, u8)> {
    (0..n)
        .flat_map(|from| (0..n).map(move |to| (from, to)))
        .map(|(from, to)| (from, to, matrix[from * n + to]))
        .find(|&(from, to, value)| {
            if from == to {
                value != LOCAL_DISTANCE
            } else {
                value <= LOCAL_DISTANCE
            }
        })
}

/// One node (`pglist_data`).
#[derive(Debug)]
pub struct Node {
    /// Node id.
    pub node_id: usize,
    /// First pfn of the node's span.
    pub node_start_pfn: u64,
    /// Pfns spanned, holes included (sum of the zones' spans).
    pub node_spanned_pages: u64,
    /// Spanned pfns that are RAM and online: [`Node::node_present_pages`] (memory
    /// hotplug changes it with the zones' present pages).
    pub(crate) node_present_pages: AtomicU64,
    /// The zones, indexed by [`ZoneType::index`].
    pub node_zones: [Zone; MAX_NR_ZONES],
    /// One past the highest populated zone index (`nr_zones`).
    pub nr_zones: usize,
    /// First pfn of the node's ZONE_MOVABLE as `kernelcore=`/`movablecore=` placed it, 0
    /// for none (Linux: `zone_movable_pfn[nid]`).
    pub zone_movable_pfn: u64,
    /// The node's background compactor ([`crate::movement::compaction`]).
    pub(crate) kcompactd: KcompactdState,
    /// The node's LRU lists (`lruvec`, [`crate::reclaim::lru`]).
    pub(crate) lruvec: crate::reclaim::lru::Lruvec,
    /// The node's background reclaimer ([`crate::reclaim::kswapd`]).
    pub(crate) kswapd: crate::reclaim::kswapd::KswapdState,
    /// Distance from this node to each node id (ACPI SLIT units: 10 local, 20 the default
    /// remote; [`crate::ModelParams::numa_distance`]). Orders the zonelists.
    pub distance: [u8; MAX_NUMNODES],
    /// The page allocator's tables for this node (`node_zonelists` and more;
    /// [`crate::page_alloc`]), filled when the allocator is built.
    pub(crate) alloc: crate::page_alloc::zonelist::NodeAlloc,
}

/// What node's kcompactd has been asked to do and when it last compacted proactively
/// (Linux: `kcompactd_max_order`, `kcompactd_highest_zoneidx`,
/// `proactive_compact_trigger` in `pglist_data`, plus the worker's timeout, which Linux
/// keeps on the kthread's stack and which lives here because the worker is a function
/// the platform calls, [`crate::page_alloc::PageAllocator::kcompactd_run`]).
///
/// Everything is an atomic: allocating CPUs record wake-ups while the worker reads them.
#[derive(Debug)]
pub struct KcompactdState {
    /// Highest order a failed allocation asked for since the worker last ran; 0: none.
    pub(crate) max_order: AtomicU32,
    /// Lowest "highest zone index" among those requests; [`KCOMPACTD_NO_ZONEIDX`]: none.
    pub(crate) highest_zoneidx: AtomicUsize,
    /// `vm.compaction_proactiveness` was written: check the score at the next round.
    pub(crate) proactive_trigger: AtomicBool,
    /// When (platform milliseconds) the next proactive check is due; 0: at the first round.
    pub(crate) next_proactive_ms: AtomicU64,
    /// The interval chosen at the last proactive check (500 ms, or 500 << 6 after a round
    /// that did not lower the score).
    pub(crate) proactive_timeout_ms: AtomicU64,
}

/// [`KcompactdState::highest_zoneidx`] when no request is pending.
pub(crate) const KCOMPACTD_NO_ZONEIDX: usize = usize::MAX;

impl KcompactdState {
    /// Nothing requested, the first proactive check due at once.
    pub const fn new() -> KcompactdState {
        KcompactdState {
            max_order: AtomicU32::new(0),
            highest_zoneidx: AtomicUsize::new(KCOMPACTD_NO_ZONEIDX),
            proactive_trigger: AtomicBool::new(false),
            next_proactive_ms: AtomicU64::new(0),
            proactive_timeout_ms: AtomicU64::new(0),
        }
    }
}

impl Default for KcompactdState {
    fn default() -> Self {
        KcompactdState::new()
    }
}

impl Node {
    /// Spanned pfns that are RAM and online (`node_present_pages`).
    #[inline]
    pub fn node_present_pages(&self) -> u64 {
        self.node_present_pages.load(Ordering::Relaxed)
    }

    /// Add `delta` (possibly negative) present pages (memory hotplug's
    /// `adjust_present_page_count`, node side).
    pub(crate) fn adjust_node_present_pages(&self, delta: i64) {
        self.node_present_pages
            .fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// A node with no memory.
    pub const fn new(nid: usize) -> Node {
        Node {
            node_id: nid,
            node_start_pfn: 0,
            node_spanned_pages: 0,
            node_present_pages: AtomicU64::new(0),
            node_zones: [
                Zone::new(ZoneType::Dma, nid),
                Zone::new(ZoneType::Dma32, nid),
                Zone::new(ZoneType::Normal, nid),
                Zone::new(ZoneType::Movable, nid),
            ],
            nr_zones: 0,
            zone_movable_pfn: 0,
            distance: [REMOTE_DISTANCE; MAX_NUMNODES],
            kcompactd: KcompactdState::new(),
            lruvec: crate::reclaim::lru::Lruvec::new(),
            kswapd: crate::reclaim::kswapd::KswapdState::new(),
            alloc: crate::page_alloc::zonelist::NodeAlloc::new(),
        }
    }

    /// [`Node::new`] written in place: node 0 is copied from a read-only template (a
    /// `memcpy` from static data, so no node-sized temporary is built on the stack), then
    /// given its id.
    ///
    /// # Safety
    ///
    /// `p` must be valid for writes of a `Node` and aligned for it.
    // Exempt from the module's `deny(unsafe_code)`: in-place construction, so that init
    // runs on a small stack (issue 12).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn init_at(p: *mut Node, nid: usize) {
        /// Never referred to except by the copy below: nothing ever mutates it, so its
        /// atomics and locks stay in their initial state.
        static TEMPLATE: Node = Node::new(0);
        // SAFETY: the caller guarantees `p` is valid for writes and aligned. `Node` owns
        // nothing (no heap, no `Drop`) and `TEMPLATE` is never mutated or used otherwise,
        // so a bitwise copy of it is a fresh `Node::new(0)`; nothing else refers to `*p`.
        unsafe {
            core::ptr::copy_nonoverlapping(&TEMPLATE, p, 1);
            let node = &mut *p;
            node.node_id = nid;
            node.distance[nid] = LOCAL_DISTANCE;
            for z in &mut node.node_zones {
                z.nid = nid;
            }
        }
    }

    /// Distance to node `to` (`node_distance`).
    pub fn distance_to(&self, to: usize) -> u8 {
        self.distance.get(to).copied().unwrap_or(REMOTE_DISTANCE)
    }

    /// One past the last spanned pfn (`pgdat_end_pfn`).
    pub const fn node_end_pfn(&self) -> u64 {
        self.node_start_pfn + self.node_spanned_pages
    }

    /// The zone of type `zt`.
    pub fn zone(&self, zt: ZoneType) -> &Zone {
        &self.node_zones[zt.index()]
    }

    /// The zones with RAM, lowest first.
    pub fn populated_zones(&self) -> impl Iterator<Item = &Zone> {
        self.node_zones.iter().filter(|z| z.populated())
    }

    /// Pages managed by the buddy allocator over all zones.
    pub fn managed_pages(&self) -> u64 {
        self.node_zones.iter().map(|z| z.managed_pages()).sum()
    }

    /// Size the node and its zones (`calculate_node_totalpages`). `mem` holds all RAM
    /// regions of the machine (memblock's `memory`, page aligned) in address order; only
    /// this node's are counted.
    // Exempt from the module's `deny(unsafe_code)`: in-place construction, so that init
    // runs on a small stack (issue 12).
    #[allow(unsafe_code)]
    pub fn calculate_node_totalpages(
        &mut self,
        mem: &[MemblockRegion],
        limits: &ZoneLimits,
        movable: &MovableLayout,
    ) {
        let nid = self.node_id;
        let mine = || {
            mem.iter()
                .filter(move |r| r.nid as usize == nid)
                .map(|r| (r.base >> PAGE_SHIFT, r.end() >> PAGE_SHIFT))
                .filter(|r| r.1 > r.0)
        };
        let (node_start, node_end) = match (mine().map(|r| r.0).min(), mine().map(|r| r.1).max()) {
            (Some(s), Some(e)) => (s, e),
            _ => {
                // SAFETY: `self` is valid for writes and aligned; `Node` has no `Drop`, so
                // overwriting it in place (rather than assigning a stack temporary) loses
                // nothing.
                unsafe { Node::init_at(self, nid) };
                return;
            }
        };
        let movable_zone = limits.movable_zone();
        let zmp = movable.zone_movable_pfn.get(nid).copied().unwrap_or(0);
        let mut spanned_total = 0;
        let mut present_total = 0;
        self.nr_zones = 0;
        for zt in ZoneType::ALL {
            let i = zt.index();
            let (mut start, mut end) = if zt == ZoneType::Movable {
                (0, 0)
            } else {
                (
                    node_start.clamp(limits.lowest[i], limits.highest[i]),
                    node_end.clamp(limits.lowest[i], limits.highest[i]),
                )
            };
            // adjust_zone_range_for_zone_movable
            if zmp != 0 {
                if zt == ZoneType::Movable {
                    start = zmp;
                    end = node_end.min(limits.highest[movable_zone.index()]);
                } else if start < zmp && end > zmp {
                    end = zmp;
                } else if start >= zmp {
                    start = end;
                }
            }
            let spanned = if end < node_start || start > node_end {
                0
            } else {
                end = end.min(node_end);
                start = start.max(node_start);
                end.saturating_sub(start)
            };
            let present: u64 = mine()
                .map(|r| r.1.min(start + spanned).saturating_sub(r.0.max(start)))
                .sum();
            let z = &mut self.node_zones[i];
            z.set_span(start, spanned);
            *z.present_pages.get_mut() = present;
            spanned_total += spanned;
            present_total += present;
            if present != 0 {
                self.nr_zones = i + 1;
            }
        }
        self.zone_movable_pfn = zmp;
        self.node_start_pfn = node_start;
        self.node_spanned_pages = spanned_total;
        *self.node_present_pages.get_mut() = present_total;
    }
}

const _: () = assert!(MAX_NUMNODES <= u8::MAX as usize);
