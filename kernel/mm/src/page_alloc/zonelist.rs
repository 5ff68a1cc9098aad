//! The allocator's per-node state, kept in the node's own descriptor: each zone's pcp
//! slot, the node's zonelists (Linux: `pglist_data::node_zonelists`, built by
//! `build_zonelists`) and the order-0 fast path's plans ([`super::fastpath`]).
//!
//! # Why in the node
//!
//! Up to [`MAX_NUMNODES`] (64) nodes are supported, but a machine pays only for the nodes
//! it has. Tables indexed by node id inside [`PageAllocator`] would grow with the bound
//! (64 nodes × 4 zonelists × 256 entries, 64 × 32 fast plans) even on a single-node
//! machine; the node descriptor, allocated from memblock on its node at boot
//! ([`crate::model::mm_init`]), holds them instead, and the allocator reaches them through
//! the model's `NODE_DATA` table in O(1). The CPUs of a node read their node's plans from
//! node-local memory.
//!
//! A zonelist's entries are zone indices `nid * MAX_NR_ZONES + zone` (one byte: 64 nodes
//! × 4 zones fit). Its length is at most the number of zones of the online nodes, so the
//! entries live in storage trailing the descriptor, sized when the model is built:
//! [`MAX_NR_ZONES`] lists of `nr_online_nodes * MAX_NR_ZONES` bytes each (16 bytes on a
//! single-node machine, 1 KiB per node on a 64-node one).

use super::*;

// Zone indices of zonelist entries fit in a byte.
const _: () = assert!(MAX_NUMNODES * MAX_NR_ZONES <= u8::MAX as usize + 1);

/// The page allocator's state of one node, a field of its [`crate::model::node::Node`]:
/// written once while the allocator is built (with the model held exclusively), read-only
/// afterwards.
#[derive(Debug)]
pub(crate) struct NodeAlloc {
    /// Each zone's pcp slot in every CPU's per-CPU block, [`NO_SLOT`] for a zone that
    /// manages nothing.
    pub(super) slots: [u16; MAX_NR_ZONES],
    /// Start of the zonelist storage trailing the descriptor: [`MAX_NR_ZONES`] lists of
    /// `zonelist_cap` bytes. Null until the model sets it.
    zonelist_base: *mut u8,
    /// Capacity of each list.
    zonelist_cap: u16,
    /// Length of each list, per highest usable zone.
    zonelist_len: [u16; MAX_NR_ZONES],
    /// Per gfp class, what an order-0 request resolves to.
    pub(super) fast_plans: [FastPlan; NR_GFP_CLASSES],
}

// SAFETY: the zonelist storage and the plans' zone pointers are written only while the
// allocator is built, through `&mut` access to the model that owns the node; afterwards
// they are only read. The storage is memblock memory reserved for the model's life.
unsafe impl Send for NodeAlloc {}
// SAFETY: as above.
unsafe impl Sync for NodeAlloc {}

impl NodeAlloc {
    /// No zonelist storage, no slots, no plans.
    pub(crate) const fn new() -> NodeAlloc {
        NodeAlloc {
            slots: [NO_SLOT; MAX_NR_ZONES],
            zonelist_base: ptr::null_mut(),
            zonelist_cap: 0,
            zonelist_len: [0; MAX_NR_ZONES],
            fast_plans: [FastPlan::NONE; NR_GFP_CLASSES],
        }
    }

    /// Bytes of zonelist storage a node needs on a machine of `nr_nodes` nodes.
    pub(crate) const fn zonelist_bytes(nr_nodes: usize) -> usize {
        MAX_NR_ZONES * nr_nodes * MAX_NR_ZONES
    }

    /// Give the node its zonelist storage: [`NodeAlloc::zonelist_bytes`]`(nr_nodes)` bytes
    /// at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be valid for reads and writes of that many bytes for as long as the
    /// node lives, and used by nothing else.
    pub(crate) unsafe fn set_zonelist_storage(&mut self, base: *mut u8, nr_nodes: usize) {
        self.zonelist_base = base;
        self.zonelist_cap = (nr_nodes * MAX_NR_ZONES) as u16;
        self.zonelist_len = [0; MAX_NR_ZONES];
    }

    /// The zonelist for requests whose highest zone is `highest`.
    #[inline]
    pub(super) fn zonelist(&self, highest: usize) -> &[u8] {
        let Some(&len) = self.zonelist_len.get(highest) else {
            return &[];
        };
        if len == 0 {
            return &[];
        }
        // SAFETY: a non-zero length was set by `build_zonelists`, which requires storage;
        // list `highest` occupies `zonelist_cap` bytes from `highest * zonelist_cap`, of
        // which the first `len` are written, and the storage is only read after the
        // allocator is built (`&self` here is a shared borrow of the node).
        unsafe {
            core::slice::from_raw_parts(
                self.zonelist_base
                    .add(highest * self.zonelist_cap as usize)
                    .cast_const(),
                len as usize,
            )
        }
    }

    /// Fill the zonelist of `highest` from `entries` (at most the capacity are kept).
    fn set_zonelist(&mut self, highest: usize, entries: impl Iterator<Item = u8>) {
        if self.zonelist_base.is_null() || highest >= MAX_NR_ZONES {
            return;
        }
        let cap = self.zonelist_cap as usize;
        let mut len = 0;
        for e in entries.take(cap) {
            // SAFETY: `set_zonelist_storage`'s contract: the storage holds `MAX_NR_ZONES`
            // lists of `cap` bytes and `&mut self` gives exclusive access to it.
            unsafe { self.zonelist_base.add(highest * cap + len).write(e) };
            len += 1;
        }
        self.zonelist_len[highest] = len as u16;
    }
}

/// Distance from `a` to `b` as node `a`'s descriptor records it (10 local, 20 remote
/// without a table).
fn node_distance(model: &MemoryModel, a: usize, b: usize) -> u32 {
    match model.node(a) {
        Some(n) => u32::from(n.distance_to(b)),
        None if a == b => u32::from(crate::model::node::LOCAL_DISTANCE),
        None => u32::from(crate::model::node::REMOTE_DISTANCE),
    }
}

/// `find_next_best_node`: the next node for `nid`'s fallback order among the `online`
/// ones not yet `used`: `nid` itself first, then the nearest, ties going to a node above
/// `nid` (Linux "prefers the next node"), then to a node without CPUs (they have the
/// least allocation pressure of their own), then to the least loaded (`node_load`, which
/// the zonelists built so far raised for the first node of each distance group, so that
/// nodes at equal distance take turns being first across the machine).
fn find_next_best_node(
    model: &MemoryModel,
    nid: usize,
    online: u64,
    has_cpus: u64,
    used: u64,
    node_load: &[u32; MAX_NUMNODES],
) -> Option<usize> {
    if online & (1 << nid) != 0 && used & (1 << nid) == 0 {
        return Some(nid);
    }
    (0..MAX_NUMNODES)
        .filter(|&n| online & (1 << n) != 0 && used & (1 << n) == 0)
        .min_by_key(|&n| {
            let mut val = node_distance(model, nid, n) + u32::from(n < nid);
            if has_cpus & (1 << n) != 0 {
                val += 1; // PENALTY_FOR_NODE_WITH_CPUS
            }
            (val * MAX_NUMNODES as u32 + node_load[n], n)
        })
}

/// The node order of `nid`'s zonelists (Linux's `build_zonelists` loop around
/// `find_next_best_node`) into `order`; returns how many nodes. `node_load` is shared by
/// the calls for every node of one build (Linux's static `node_load[]`): the first node
/// of each new distance group gets one more unit of load.
pub(super) fn node_order(
    model: &MemoryModel,
    nid: usize,
    online: u64,
    has_cpus: u64,
    node_load: &mut [u32; MAX_NUMNODES],
    order: &mut [u8; MAX_NUMNODES],
) -> usize {
    let mut used = 0u64;
    let mut len = 0;
    let mut prev = nid;
    while let Some(n) = find_next_best_node(model, nid, online, has_cpus, used, node_load) {
        used |= 1 << n;
        if node_distance(model, nid, n) != node_distance(model, nid, prev) {
            node_load[n] += 1;
        }
        order[len] = n as u8;
        len += 1;
        prev = n;
    }
    len
}

/// Build node `nid`'s zonelists (`build_zonelists`). For each highest usable zone: the
/// nodes in the order of [`node_order`] (the node itself, then by distance), each node's
/// zones highest first (Movable, Normal, DMA32, DMA): Linux's node ordering. Zones above
/// `highest` and zones that manage nothing are left out.
pub(super) fn build_zonelists(
    model: &mut MemoryModel,
    online: u64,
    has_cpus: u64,
    node_load: &mut [u32; MAX_NUMNODES],
    nid: usize,
) {
    let mut order = [0u8; MAX_NUMNODES];
    let nr = node_order(model, nid, online, has_cpus, node_load, &mut order);
    for highest in 0..MAX_NR_ZONES {
        // The entries are computed from shared borrows first, then written: at most
        // 256 bytes on the stack.
        let mut buf = [0u8; MAX_NUMNODES * MAX_NR_ZONES];
        let mut len = 0;
        for &n in &order[..nr] {
            let n = n as usize;
            let Some(node) = model.node(n) else { continue };
            for zt in (0..=highest).rev() {
                if node.node_zones[zt].managed_zone() {
                    buf[len] = (n * MAX_NR_ZONES + zt) as u8;
                    len += 1;
                }
            }
        }
        if let Some(node) = model.node_mut(nid) {
            node.alloc.set_zonelist(highest, buf[..len].iter().copied());
        }
    }
}
