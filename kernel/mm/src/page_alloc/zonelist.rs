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

/// Build node `nid`'s zonelists (`build_zonelists`). For each highest usable zone: the
/// node's own zones highest first (Movable, Normal, DMA32, DMA), then the other nodes' in
/// increasing distance, which without a distance table is increasing node id after `nid`,
/// wrapping around. Zones above `highest` and zones that manage nothing are left out.
pub(super) fn build_zonelists(model: &mut MemoryModel, online: u64, nid: usize) {
    for highest in 0..MAX_NR_ZONES {
        // The entries are computed from shared borrows first, then written: at most
        // 256 bytes on the stack.
        let mut buf = [0u8; MAX_NUMNODES * MAX_NR_ZONES];
        let mut len = 0;
        for k in 0..MAX_NUMNODES {
            let n = (nid + k) % MAX_NUMNODES;
            if online & (1 << n) == 0 {
                continue;
            }
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
