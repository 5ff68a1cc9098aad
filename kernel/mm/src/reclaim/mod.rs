//! Page reclaim (Linux: `mm/vmscan.c`, `mm/filemap.c`, `mm/swap.c`, `mm/shrinker.c`).
//!
//! Until this subsystem existed, the only memory the allocator could "reclaim" was what sat
//! on the per-CPU lists. Reclaim needs something reclaimable, so it brings its own user:
//!
//! - [`filemap`]: a **page cache** over read-only files that a port supplies through
//!   [`filemap::Backing`] (a kernel backs it with its boot ramdisk; the host simulation
//!   with a deterministic in-memory image). Cache pages are movable, clean, and can be
//!   dropped at any time: the next read fills them again.
//! - [`mmap`]: **file mappings**: a file's cache pages mapped read-only into a window of
//!   the movable range on a fault, unmapped through the reverse map before reclaim drops
//!   them, and followed by their entries when compaction moves them.
//! - [`lru`]: the per-node **LRU lists** (`lruvec`) on which cache pages age: inactive and
//!   active file lists, `PG_lru`, `PG_active`, `PG_referenced`, `mark_page_accessed`, and the
//!   isolation protocol that reclaim and compaction share.
//! - [`vmscan`]: **shrinking** the lists (`shrink_active_list`, `shrink_inactive_list`,
//!   `shrink_lruvec` with the `inactive_is_low` balance) and **direct reclaim**
//!   (`try_to_free_pages`) for the allocation slow path.
//! - [`shrinker`]: caches that are not pages on an LRU (a heap's spare pages, say) register
//!   `count_objects`/`scan_objects` callbacks and are scanned in proportion to LRU pressure.
//! - [`kswapd`]: the per-node **background reclaimer** as a function the port calls from its
//!   worker, woken when an allocation dips below a zone's low watermark or a watermark
//!   boost is raised; it balances the node to the high watermark, resets boosts and hands
//!   high-order work to kcompactd.
//!
//! Per-node state (LRU lists, kswapd) lives in the node descriptors; the rest in one
//! [`ReclaimState`] inside the allocator (fixed tables: this crate has no heap), so that a page's `mapping` can point at its file's descriptor and be
//! validated by address arithmetic, as anon pages point into the region table.
//!
//! # Lock order
//!
//! The LRU lock of a node, a file's tree lock and the shrinker registry lock are leaves:
//! none is held while another is taken, while the page allocator is entered (allocation or
//! free), or while a page lock is waited for.

pub mod filemap;
pub mod kswapd;
pub mod lru;
pub mod mmap;
pub mod shrinker;
pub mod vmscan;

/// What reclaim keeps per allocator (the per-node LRU lists and kswapd state live in each
/// node's descriptor, [`crate::model::node::Node`]).
pub struct ReclaimState {
    /// Registered shrinkers.
    pub(crate) shrinkers: shrinker::ShrinkerRegistry,
    /// The page cache.
    pub(crate) cache: filemap::PageCache,
}

impl ReclaimState {
    /// Empty lists, idle kswapds, no shrinkers, an empty cache without a backing store.
    pub const fn new() -> ReclaimState {
        ReclaimState {
            shrinkers: shrinker::ShrinkerRegistry::new(),
            cache: filemap::PageCache::new(),
        }
    }

    /// [`ReclaimState::new`] written in place (the allocator is built in place on small
    /// boot stacks).
    ///
    /// # Safety
    ///
    /// `p` must be valid for writes of a `ReclaimState` and suitably aligned.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn init_at(p: *mut ReclaimState) {
        // SAFETY: the caller guarantees `p` is valid for writes; each element is written
        // once, in place, so no table-sized temporary is built.
        unsafe {
            core::ptr::addr_of_mut!((*p).shrinkers).write(shrinker::ShrinkerRegistry::new());
            filemap::PageCache::init_at(core::ptr::addr_of_mut!((*p).cache));
        }
    }
}

impl Default for ReclaimState {
    fn default() -> Self {
        ReclaimState::new()
    }
}

/// Pages reclaimed per batch and per direct-reclaim call (`SWAP_CLUSTER_MAX`).
pub const SWAP_CLUSTER_MAX: u64 = 32;
/// The first (gentlest) reclaim priority: scan `size >> priority` pages (`DEF_PRIORITY`).
pub const DEF_PRIORITY: u32 = 12;
