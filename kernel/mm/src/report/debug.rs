//! The invariant checker: everything the buddy and pcp bookkeeping promises, verified
//! from scratch (Linux has pieces of this under `CONFIG_DEBUG_VM`; here it is one
//! function the tests call after every step).
//!
//! For every zone, with all its pcp locks and then its zone lock held (the documented lock
//! order), [`check`] verifies:
//!
//! 1. **Lists.** Every page on `free_area[o].free_list[t]` is a descriptor of this zone,
//!    has `PG_buddy`, order `o` in `private`, and records list type `t`; its block is
//!    aligned to `o` and lies inside the zone span; `nr_free[o]` is the sum of the list
//!    lengths; the lockless "non-empty" hints match the lists.
//! 2. **Membership.** Walking the zone pfn by pfn, the `PG_buddy` heads found are exactly
//!    the listed blocks, per order and type, and no `PG_buddy` page lies inside another
//!    free block (no overlapping free blocks).
//! 3. **Merging.** No free block has a free buddy of the same order in the same zone,
//!    except across pageblocks where Linux forbids the merge (a HighAtomic, CMA or Isolate
//!    block next to a block of another type).
//! 4. **Types.** A free block's list type equals the type of every pageblock it covers;
//!    every pageblock holds a valid type; `nr_reserved_highatomic` is 512 times the
//!    number of HighAtomic pageblocks; `nr_isolate_pageblock` is the number of Isolate
//!    pageblocks that are not offline memory.
//! 5. **Counters.** `NR_FREE_PAGES` is Σ `len << order` over every list but Isolate's;
//!    `NR_FREE_CMA` and `nr_free_highatomic` are those of the CMA and HighAtomic lists.
//! 6. **pcp.** Each CPU's `count` is Σ `len << order` of its lists; every pcp page is a
//!    descriptor of the zone, aligned to its list's order, not `PG_buddy`, with no
//!    references, inside no free buddy block and no other pcp block, and not in an
//!    isolated pageblock (isolation drains the pcp lists and later frees bypass them).
//! 7. **LRU** (per node, under its LRU lock, see [`crate::reclaim::lru`]). Every page on
//!    a list is a page-cache page of this node with `PG_lru`, `PG_active` matching its
//!    list, a reference, and no `PG_buddy`/`PG_isolated`; the per-zone list sizes equal
//!    the list lengths; the pages with `PG_lru` found walking the node's zones are exactly
//!    the listed ones among the page-cache pages, and no free page has `PG_lru` (so no
//!    free page is on an LRU, and no LRU page is lost).
//! 8. **File mappings** ([`crate::reclaim::mmap`]): every entry of a file window maps a
//!    cache page of the window's file at that index that is not free, is on an LRU list
//!    (or isolated) and holds a reference per mapping; each mapped page's `mapcount`
//!    equals the entries found for it by the reverse map; each window's count equals its
//!    entries; and the mapcounts of all cache pages add up to the entries of all windows
//!    (no page counts a mapping that is gone); each node's `nr_mapped` is the number of
//!    its cache pages with a mapcount.
//!
//! The walk is O(pages in the zone); it is a test and debugging tool, not something to run
//! on a production fast path.

use core::fmt;
use core::ptr::NonNull;

use crate::model::mmzone::{
    MAX_PAGE_ORDER, MIGRATE_TYPES, Migratetype, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER, ZoneType,
};
use crate::model::page::{Page, PageFlags};
use crate::model::pageblock::{MIGRATETYPE_MASK, get_pfnblock_flags_mask};
use crate::model::sparse::SparseMem;
use crate::model::zone::Zone;
use crate::page_alloc::PageAllocator;
use crate::page_alloc::buddy::migratetype_is_mergeable;
use crate::page_alloc::pcp::{NR_PCP_LISTS, PcpLists, pindex_to_order};
use crate::port::pcp_lock::PcpLockGuard;
use crate::port::platform::{LocalIrqGuard, Platform};
use crate::report::vmstat::ZoneStatItem;

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// A list entry is not a descriptor of this allocator's memmap.
    ForeignPage {
        /// Order of the list.
        order: u32,
        /// Type of the list.
        mt: Migratetype,
    },
    /// A list entry lacks `PG_buddy`.
    NotBuddy {
        /// The block's pfn.
        pfn: u64,
        /// Order of the list.
        order: u32,
    },
    /// A list entry's recorded order is not the list's.
    OrderMismatch {
        /// The block's pfn.
        pfn: u64,
        /// Order of the list.
        list_order: u32,
        /// Order in `private`.
        page_order: u64,
    },
    /// A list entry records another list type than the one it is on.
    ListTypeMismatch {
        /// The block's pfn.
        pfn: u64,
        /// Type of the list.
        list_mt: Migratetype,
        /// Type recorded in the page.
        recorded: u8,
    },
    /// A free block (or pcp page) does not lie wholly in this zone.
    OutsideZone {
        /// The block's pfn.
        pfn: u64,
        /// Its order.
        order: u32,
    },
    /// A free block's pfn is not aligned to its order.
    Misaligned {
        /// The block's pfn.
        pfn: u64,
        /// Its order.
        order: u32,
    },
    /// A `PG_buddy` page lies inside another free block, or a pcp page inside a free
    /// block or another pcp block.
    Overlap {
        /// The enclosing block.
        pfn: u64,
        /// Its order.
        order: u32,
        /// The page found inside.
        inner_pfn: u64,
    },
    /// Two free buddies of the same order were left unmerged.
    Unmerged {
        /// The block.
        pfn: u64,
        /// Its free buddy.
        buddy_pfn: u64,
        /// Their order.
        order: u32,
    },
    /// `nr_free` differs from the list lengths.
    NrFree {
        /// The order.
        order: u32,
        /// `nr_free`.
        nr_free: u64,
        /// Σ list lengths.
        listed: u64,
    },
    /// The `PG_buddy` heads found in the zone differ from the listed blocks.
    Membership {
        /// The order.
        order: u32,
        /// The type.
        mt: Migratetype,
        /// Heads found by walking the zone.
        heads: u64,
        /// Blocks on the list.
        listed: u64,
    },
    /// A list is corrupt: walking it does not end after `len` entries, or its hint bit is
    /// wrong.
    CorruptList {
        /// The order.
        order: u32,
        /// The type.
        mt: Migratetype,
    },
    /// A free block sits on a list whose type differs from its pageblock's.
    PageblockType {
        /// The block.
        pfn: u64,
        /// Its order.
        order: u32,
        /// Type of its list.
        list_mt: Migratetype,
        /// Type of the pageblock at `pageblock_pfn`.
        pageblock_mt: Migratetype,
        /// The offending pageblock.
        pageblock_pfn: u64,
    },
    /// A pageblock's bitmap holds a value that names no migratetype.
    BadPageblockBits {
        /// The pageblock.
        pfn: u64,
        /// The bits.
        bits: u64,
    },
    /// A free counter differs from the lists.
    Counter {
        /// Which counter.
        name: &'static str,
        /// Its value.
        counter: u64,
        /// What the lists add up to.
        computed: u64,
    },
    /// A pcp `count` differs from its lists.
    PcpCount {
        /// The CPU.
        cpu: usize,
        /// `count`.
        count: u64,
        /// Σ `len << order`.
        listed: u64,
    },
    /// The LRU lists of the node disagree with the pages or their counters.
    Lru {
        /// The page, or 0 for a count mismatch.
        pfn: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A file window and the pages it maps disagree (invariant 8).
    FileMapping {
        /// The virtual address (0 for a total).
        va: u64,
        /// The page (0 for a total).
        pfn: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A page on a pcp list is in a state no pcp page may be in.
    PcpPage {
        /// The CPU.
        cpu: usize,
        /// The page.
        pfn: u64,
        /// What is wrong.
        what: &'static str,
    },
}

/// An invariant violation in one zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The node.
    pub nid: usize,
    /// The zone.
    pub zone: ZoneType,
    /// What is wrong.
    pub kind: ViolationKind,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} zone {}: ", self.nid, self.zone.name())?;
        match self.kind {
            ViolationKind::ForeignPage { order, mt } => write!(
                f,
                "free list order {order} type {} holds a page that is not in the memmap",
                mt.name()
            ),
            ViolationKind::NotBuddy { pfn, order } => write!(
                f,
                "pfn {pfn:#x} is on an order-{order} free list without PG_buddy"
            ),
            ViolationKind::OrderMismatch {
                pfn,
                list_order,
                page_order,
            } => write!(
                f,
                "pfn {pfn:#x} is on the order-{list_order} free list but records order {page_order}"
            ),
            ViolationKind::ListTypeMismatch {
                pfn,
                list_mt,
                recorded,
            } => write!(
                f,
                "pfn {pfn:#x} is on the {} free list but records type {recorded}",
                list_mt.name()
            ),
            ViolationKind::OutsideZone { pfn, order } => write!(
                f,
                "block pfn {pfn:#x} order {order} does not lie wholly inside the zone"
            ),
            ViolationKind::Misaligned { pfn, order } => {
                write!(
                    f,
                    "free block pfn {pfn:#x} is not aligned to its order {order}"
                )
            }
            ViolationKind::Overlap {
                pfn,
                order,
                inner_pfn,
            } => write!(
                f,
                "pfn {inner_pfn:#x} is free again inside the free block pfn {pfn:#x} order {order}"
            ),
            ViolationKind::Unmerged {
                pfn,
                buddy_pfn,
                order,
            } => write!(
                f,
                "free buddies pfn {pfn:#x} and {buddy_pfn:#x} of order {order} were not merged"
            ),
            ViolationKind::NrFree {
                order,
                nr_free,
                listed,
            } => write!(
                f,
                "order {order}: nr_free is {nr_free} but the lists hold {listed} blocks"
            ),
            ViolationKind::Membership {
                order,
                mt,
                heads,
                listed,
            } => write!(
                f,
                "order {order} type {}: {heads} PG_buddy heads in the zone but {listed} blocks on the list",
                mt.name()
            ),
            ViolationKind::CorruptList { order, mt } => write!(
                f,
                "free list order {order} type {} is corrupt (length or non-empty hint)",
                mt.name()
            ),
            ViolationKind::PageblockType {
                pfn,
                order,
                list_mt,
                pageblock_mt,
                pageblock_pfn,
            } => write!(
                f,
                "free block pfn {pfn:#x} order {order} is on the {} list but pageblock {pageblock_pfn:#x} is {}",
                list_mt.name(),
                pageblock_mt.name()
            ),
            ViolationKind::BadPageblockBits { pfn, bits } => {
                write!(
                    f,
                    "pageblock {pfn:#x} holds invalid migratetype bits {bits}"
                )
            }
            ViolationKind::Counter {
                name,
                counter,
                computed,
            } => write!(
                f,
                "{name} is {counter} but the free lists add up to {computed}"
            ),
            ViolationKind::PcpCount { cpu, count, listed } => write!(
                f,
                "cpu {cpu}: pcp count is {count} but its lists hold {listed} pages"
            ),
            ViolationKind::PcpPage { cpu, pfn, what } => {
                write!(f, "cpu {cpu}: pcp page pfn {pfn:#x}: {what}")
            }
            ViolationKind::Lru { pfn, what } => write!(f, "LRU: pfn {pfn:#x}: {what}"),
            ViolationKind::FileMapping { va, pfn, what } => {
                write!(f, "file mapping at {va:#x}: pfn {pfn:#x}: {what}")
            }
        }
    }
}

impl core::error::Error for Violation {}

/// A value no allocator writes into a free page's `private`: marks pcp pages during the
/// pcp overlap check.
const PCP_MARK: u64 = 0x7063_705f_6d61_726b;

/// Verify every invariant listed in the module documentation, zone by zone. Returns the
/// first violation found.
pub fn check<P: Platform>(alloc: &PageAllocator<P>) -> Result<(), Violation> {
    for zr in alloc.all_zones() {
        let zone = alloc.zone(zr);
        // Lock order: the zone's pcp locks in CPU order, then the zone lock. The pcp locks
        // are taken with interrupts as the caller has them: another CPU's lists may need a
        // barrier on that CPU (an IPI in the kernel).
        let nr_cpus = alloc.percpu().nr_cpus();
        let guards = PcpGuards::lock(alloc, zr.slot as usize, nr_cpus);
        let irq = LocalIrqGuard::new(alloc.platform());
        let fa = zone.lock.lock_irqs_off(alloc.platform());
        let v = Checker {
            mem: alloc.model().sparse(),
            zone,
        };
        let result = v
            .check_lists(&fa)
            .and_then(|listed| v.walk_zone(&listed))
            .and_then(|_| v.check_counters(&fa))
            .and_then(|_| v.check_pcp(&guards));
        // Released in the reverse order of taking: each restores the state it found.
        drop(fa);
        drop(irq);
        drop(guards);
        result.map_err(|kind| Violation {
            nid: zone.nid,
            zone: zone.zone_type,
            kind,
        })?;
    }
    let mut mapcounts = 0u64;
    for nid in alloc.online_nodes() {
        check_lru(alloc, nid, &mut mapcounts).map_err(|(zone, kind)| Violation {
            nid,
            zone,
            kind,
        })?;
    }
    let file_violation = |va, pfn, what| Violation {
        nid: 0,
        zone: ZoneType::Normal,
        kind: ViolationKind::FileMapping { va, pfn, what },
    };
    let entries = alloc
        .file_mappings_check()
        .map_err(|e| file_violation(e.va, e.pfn, e.what))?;
    if entries != mapcounts {
        return Err(file_violation(
            0,
            0,
            "cache pages' mapcounts differ from the entries of the file windows",
        ));
    }
    Ok(())
}

/// Invariant 7: the node's LRU lists against its pages and counters.
fn check_lru<P: Platform>(
    alloc: &PageAllocator<P>,
    nid: usize,
    mapcounts: &mut u64,
) -> Result<(), (ZoneType, ViolationKind)> {
    use crate::model::mmzone::MAX_NR_ZONES;
    use crate::reclaim::lru::{LruList, NR_LRU_LISTS};
    let lv = alloc.lruvec(nid);
    let mut g = lv.lock.lock_irqsave(alloc.platform());
    let mut counted = [[0u64; NR_LRU_LISTS]; MAX_NR_ZONES];
    let mut listed = 0u64;
    for lru in [LruList::InactiveFile, LruList::ActiveFile] {
        let list = g.list(lru);
        // SAFETY: the LRU lock is held; listed pages are memmap pages.
        for p in unsafe { list.iter() } {
            let page = alloc.page_ref(p);
            let pfn = alloc.page_to_pfn(page);
            let zt = page.zone_type().unwrap_or(ZoneType::Normal);
            let bad = |what| Err((zt, ViolationKind::Lru { pfn, what }));
            if page.nid() != nid {
                return bad("on another node's LRU list");
            }
            if !page.is_lru() {
                return bad("listed without PG_lru");
            }
            if page.is_active() != (lru == LruList::ActiveFile) {
                return bad("PG_active does not match its list");
            }
            if page.is_buddy() || page.is_isolated() {
                return bad("listed while free or isolated");
            }
            if page.refcount() < 1 {
                return bad("listed without a reference");
            }
            if alloc.page_cache_file(page).is_none() {
                return bad("listed but not a page-cache page");
            }
            counted[zt.index()][lru as usize] += 1;
            listed += 1;
        }
    }
    for zt in ZoneType::ALL {
        for lru in [LruList::InactiveFile, LruList::ActiveFile] {
            if lv.zone_lru_size(lru, zt) != counted[zt.index()][lru as usize] {
                return Err((
                    zt,
                    ViolationKind::Lru {
                        pfn: 0,
                        what: "list size counter differs from the list length",
                    },
                ));
            }
        }
    }
    let mut flagged = 0u64;
    let mut mapped_pages = 0u64;
    if let Some(node) = alloc.model().node(nid) {
        for zt in ZoneType::ALL {
            let zone = node.zone(zt);
            for pfn in zone.zone_start_pfn()..zone.zone_end_pfn() {
                if let Some(page) = alloc.pfn_to_page(pfn)
                    && page.is_lru()
                {
                    if page.is_buddy() {
                        return Err((
                            zt,
                            ViolationKind::Lru {
                                pfn,
                                what: "PG_lru on a free page",
                            },
                        ));
                    }
                    // Only the cache's pages are ours to count: a kernel (or a test) may
                    // use the flag bits of pages it owns.
                    if alloc.page_cache_file(page).is_some() {
                        flagged += 1;
                    }
                }
                if let Some(page) = alloc.pfn_to_page(pfn)
                    && !page.is_buddy()
                    && alloc.page_cache_file(page).is_some()
                {
                    *mapcounts += page.mapcount().max(0) as u64;
                    if page.mapcount() > 0 {
                        mapped_pages += 1;
                    }
                }
            }
        }
    }
    drop(g);
    if mapped_pages != lv.nr_mapped.load(core::sync::atomic::Ordering::Relaxed) {
        return Err((
            ZoneType::Normal,
            ViolationKind::Lru {
                pfn: 0,
                what: "nr_mapped differs from the cache pages with a mapcount",
            },
        ));
    }
    if flagged != listed {
        return Err((
            ZoneType::Normal,
            ViolationKind::Lru {
                pfn: 0,
                what: "pages with PG_lru differ from the pages on the lists",
            },
        ));
    }
    Ok(())
}

/// The pcp locks of one zone, all CPUs, taken in CPU order and released in reverse (each
/// guard restores the interrupt state it found).
struct PcpGuards<'a, P: Platform> {
    guards: [Option<PcpLockGuard<'a, PcpLists, P>>; MAX_CHECKED_CPUS],
    n: usize,
}

/// CPUs whose pcp lists are checked (their locks are all held at once, in a fixed array:
/// the checker allocates nothing). The lists of CPUs beyond it are not checked.
pub const MAX_CHECKED_CPUS: usize = 256;

impl<P: Platform> Drop for PcpGuards<'_, P> {
    fn drop(&mut self) {
        for g in self.guards[..self.n].iter_mut().rev() {
            drop(g.take());
        }
    }
}

impl<'a, P: Platform> PcpGuards<'a, P> {
    fn lock(alloc: &'a PageAllocator<P>, slot: usize, nr_cpus: usize) -> PcpGuards<'a, P> {
        let mut guards: [Option<PcpLockGuard<'a, PcpLists, P>>; MAX_CHECKED_CPUS] =
            [const { None }; MAX_CHECKED_CPUS];
        let n = nr_cpus.min(MAX_CHECKED_CPUS);
        for (cpu, g) in guards.iter_mut().enumerate().take(n) {
            *g = alloc
                .percpu()
                .pcp(cpu, slot)
                .map(|p| p.lock.lock(alloc.platform()));
        }
        PcpGuards { guards, n }
    }
}

/// The checks of one zone, with its locks held by the caller.
struct Checker<'a> {
    mem: &'a SparseMem,
    zone: &'a Zone,
}

/// Blocks per order and type found on the lists.
type Listed = [[u64; MIGRATE_TYPES]; NR_PAGE_ORDERS];

impl Checker<'_> {
    fn in_zone(&self, page: &Page) -> bool {
        page.zone_idx() == self.zone.zone_type.index() && page.nid() == self.zone.nid
    }

    fn block_in_zone(&self, pfn: u64, order: u32) -> bool {
        let end = pfn + (1u64 << order);
        self.zone.zone_spans_pfn(pfn) && end <= self.zone.zone_end_pfn()
    }

    fn pageblock_mt(&self, pfn: u64) -> Result<Migratetype, ViolationKind> {
        let bits = get_pfnblock_flags_mask(self.mem, pfn, MIGRATETYPE_MASK).unwrap_or(0);
        Migratetype::from_bits(bits as u8).ok_or(ViolationKind::BadPageblockBits {
            pfn: pfn & !(PAGEBLOCK_NR_PAGES - 1),
            bits,
        })
    }

    /// 1 and 4 (list side).
    fn check_lists(
        &self,
        fa: &crate::model::free_area::FreeAreas,
    ) -> Result<Listed, ViolationKind> {
        let mut listed: Listed = [[0; MIGRATE_TYPES]; NR_PAGE_ORDERS];
        for order in 0..NR_PAGE_ORDERS as u32 {
            let Some(area) = fa.area(order) else {
                continue;
            };
            let mut total = 0;
            for mt in Migratetype::ALL {
                let list = area.free_list(mt);
                let hint = self.zone.has_free_block(order, mt);
                if hint == list.is_empty() {
                    return Err(ViolationKind::CorruptList { order, mt });
                }
                let mut n = 0u64;
                // SAFETY: the caller holds the zone lock, so the list cannot change.
                for p in unsafe { list.iter() } {
                    n += 1;
                    if n > list.len() as u64 {
                        return Err(ViolationKind::CorruptList { order, mt });
                    }
                    self.check_free_block(p, order, mt)?;
                }
                if n != list.len() as u64 {
                    return Err(ViolationKind::CorruptList { order, mt });
                }
                listed[order as usize][mt.index()] = n;
                total += n;
            }
            if area.nr_free() != total {
                return Err(ViolationKind::NrFree {
                    order,
                    nr_free: area.nr_free(),
                    listed: total,
                });
            }
        }
        Ok(listed)
    }

    fn check_free_block(
        &self,
        p: NonNull<Page>,
        order: u32,
        mt: Migratetype,
    ) -> Result<(), ViolationKind> {
        // SAFETY: list entries are only ever linked by the allocator, from memmap
        // descriptors, which live as long as the model; the zone lock (held) keeps the
        // list unchanged. Whether it is a descriptor of *this* memmap is checked next.
        let page = unsafe { p.as_ref() };
        let pfn = self
            .mem
            .try_page_to_pfn(page)
            .ok_or(ViolationKind::ForeignPage { order, mt })?;
        if !page.is_buddy() {
            return Err(ViolationKind::NotBuddy { pfn, order });
        }
        if page.private() != order as u64 {
            return Err(ViolationKind::OrderMismatch {
                pfn,
                list_order: order,
                page_order: page.private(),
            });
        }
        if page.buddy_list_mt() != mt as u8 {
            return Err(ViolationKind::ListTypeMismatch {
                pfn,
                list_mt: mt,
                recorded: page.buddy_list_mt(),
            });
        }
        if pfn & ((1u64 << order) - 1) != 0 {
            return Err(ViolationKind::Misaligned { pfn, order });
        }
        if !self.in_zone(page) || !self.block_in_zone(pfn, order) {
            return Err(ViolationKind::OutsideZone { pfn, order });
        }
        let mut pb = pfn & !(PAGEBLOCK_NR_PAGES - 1);
        let end = pfn + (1u64 << order);
        while pb < end {
            let pmt = self.pageblock_mt(pb)?;
            if pmt != mt {
                return Err(ViolationKind::PageblockType {
                    pfn,
                    order,
                    list_mt: mt,
                    pageblock_mt: pmt,
                    pageblock_pfn: pb,
                });
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
        Ok(())
    }

    /// 2, 3 and 4 (zone side).
    fn walk_zone(&self, listed: &Listed) -> Result<(), ViolationKind> {
        let mut heads: Listed = [[0; MIGRATE_TYPES]; NR_PAGE_ORDERS];
        let mut highatomic_blocks = 0u64;
        let mut isolate_blocks = 0u64;
        let start = self.zone.zone_start_pfn();
        let end = self.zone.zone_end_pfn();
        // Pageblock types (and the HighAtomic and Isolate counts), stepping as
        // /proc/pagetypeinfo does.
        let mut pb = start;
        while pb < end {
            if let Some(page) = self.mem.pfn_to_page(pb)
                && self.in_zone(page)
            {
                match self.pageblock_mt(pb)? {
                    Migratetype::HighAtomic => highatomic_blocks += 1,
                    // Offline memory keeps its pageblocks Isolate but is not counted.
                    Migratetype::Isolate if !page.test_flag(PageFlags::OFFLINE) => {
                        isolate_blocks += 1
                    }
                    _ => {}
                }
            }
            pb += PAGEBLOCK_NR_PAGES;
        }
        let isolated = self.zone.nr_isolate_pageblock();
        if isolated != isolate_blocks {
            return Err(ViolationKind::Counter {
                name: "nr_isolate_pageblock",
                counter: isolated,
                computed: isolate_blocks,
            });
        }
        let mut pfn = start;
        while pfn < end {
            let pages_per_section = self.mem.pages_per_section();
            let Some(map) = self.mem.section_memmap(pfn) else {
                pfn = (pfn / pages_per_section + 1) * pages_per_section;
                continue;
            };
            let base = pfn & !(pages_per_section - 1);
            let section_end = (base + pages_per_section).min(end);
            while pfn < section_end {
                let page = &map[(pfn - base) as usize];
                if !page.is_buddy() || !self.in_zone(page) {
                    pfn += 1;
                    continue;
                }
                let order = page.buddy_order();
                if order > MAX_PAGE_ORDER {
                    return Err(ViolationKind::OrderMismatch {
                        pfn,
                        list_order: MAX_PAGE_ORDER,
                        page_order: page.private(),
                    });
                }
                if pfn & ((1u64 << order) - 1) != 0 {
                    return Err(ViolationKind::Misaligned { pfn, order });
                }
                let mt =
                    Migratetype::from_bits(page.buddy_list_mt()).unwrap_or(Migratetype::Isolate);
                heads[order as usize][mt.index()] += 1;
                // A block never crosses a section (sections are larger than MAX_ORDER
                // blocks and aligned), so its pages are all in `map`.
                let block_end = (pfn + (1u64 << order)).min(base + pages_per_section);
                for inner in pfn + 1..block_end {
                    if map[(inner - base) as usize].is_buddy() {
                        return Err(ViolationKind::Overlap {
                            pfn,
                            order,
                            inner_pfn: inner,
                        });
                    }
                }
                if order < MAX_PAGE_ORDER {
                    let buddy_pfn = pfn ^ (1u64 << order);
                    let b = &map[(buddy_pfn - base) as usize];
                    if self.in_zone(b) && b.is_buddy() && b.buddy_order() == order {
                        let bmt = Migratetype::from_bits(b.buddy_list_mt())
                            .unwrap_or(Migratetype::Isolate);
                        let forbidden = order >= PAGEBLOCK_ORDER
                            && bmt != mt
                            && (!migratetype_is_mergeable(mt) || !migratetype_is_mergeable(bmt));
                        if !forbidden {
                            return Err(ViolationKind::Unmerged {
                                pfn: pfn.min(buddy_pfn),
                                buddy_pfn: pfn.max(buddy_pfn),
                                order,
                            });
                        }
                    }
                }
                pfn += 1u64 << order;
            }
        }
        for order in 0..NR_PAGE_ORDERS {
            for mt in Migratetype::ALL {
                let (h, l) = (heads[order][mt.index()], listed[order][mt.index()]);
                if h != l {
                    return Err(ViolationKind::Membership {
                        order: order as u32,
                        mt,
                        heads: h,
                        listed: l,
                    });
                }
            }
        }
        let reserved = self.zone.nr_reserved_highatomic();
        if reserved != highatomic_blocks * PAGEBLOCK_NR_PAGES {
            return Err(ViolationKind::Counter {
                name: "nr_reserved_highatomic",
                counter: reserved,
                computed: highatomic_blocks * PAGEBLOCK_NR_PAGES,
            });
        }
        Ok(())
    }

    /// 5.
    fn check_counters(&self, fa: &crate::model::free_area::FreeAreas) -> Result<(), ViolationKind> {
        let by_type = fa.nr_free_by_type();
        let pages = |mt: Migratetype| -> u64 {
            by_type[mt.index()]
                .iter()
                .enumerate()
                .map(|(o, &n)| n << o)
                .sum()
        };
        let free: u64 = Migratetype::ALL
            .iter()
            .filter(|&&m| m != Migratetype::Isolate)
            .map(|&m| pages(m))
            .sum();
        let checks = [
            (
                "NR_FREE_PAGES",
                self.zone.zone_page_state(ZoneStatItem::NrFreePages),
                free,
            ),
            (
                "NR_FREE_CMA_PAGES",
                self.zone.zone_page_state(ZoneStatItem::NrFreeCmaPages),
                pages(Migratetype::Cma),
            ),
            (
                "nr_free_highatomic",
                self.zone.nr_free_highatomic(),
                pages(Migratetype::HighAtomic),
            ),
        ];
        for (name, counter, computed) in checks {
            if counter != computed {
                return Err(ViolationKind::Counter {
                    name,
                    counter,
                    computed,
                });
            }
        }
        Ok(())
    }

    /// The free block containing `pfn`, if any: `(head_pfn, order)`.
    fn free_block_containing(&self, pfn: u64) -> Option<(u64, u32)> {
        for k in 0..=MAX_PAGE_ORDER {
            let head = pfn & !((1u64 << k) - 1);
            if let Some(h) = self.mem.pfn_to_page(head)
                && self.in_zone(h)
                && h.is_buddy()
                && h.buddy_order() >= k
                && head + (1u64 << h.buddy_order()) > pfn
            {
                return Some((head, h.buddy_order()));
            }
        }
        None
    }

    /// 6.
    fn check_pcp<P: Platform>(&self, guards: &PcpGuards<'_, P>) -> Result<(), ViolationKind> {
        let mut result = Ok(());
        'cpus: for (cpu, g) in guards.guards.iter().enumerate().take(guards.n) {
            let Some(lists) = g else {
                continue;
            };
            let mut listed = 0u64;
            for pindex in 0..NR_PCP_LISTS {
                let order = pindex_to_order(pindex).unwrap_or(0);
                let mut n = 0usize;
                for p in lists.iter(pindex) {
                    n += 1;
                    if n > lists.list(pindex).len() {
                        result = Err(ViolationKind::PcpPage {
                            cpu,
                            pfn: 0,
                            what: "pcp list longer than its length (cycle)",
                        });
                        break 'cpus;
                    }
                    // SAFETY: pcp list entries are memmap descriptors put there by the
                    // allocator; the pcp lock (held) keeps the list unchanged.
                    let page = unsafe { p.as_ref() };
                    if let Err(e) = self.check_pcp_page(cpu, page, order) {
                        result = Err(e);
                        break 'cpus;
                    }
                    listed += 1u64 << order;
                }
            }
            if listed != lists.count {
                result = Err(ViolationKind::PcpCount {
                    cpu,
                    count: lists.count,
                    listed,
                });
                break;
            }
        }
        // Clear the overlap marks, whatever happened.
        for g in guards.guards.iter().take(guards.n).flatten() {
            for pindex in 0..NR_PCP_LISTS {
                let order = pindex_to_order(pindex).unwrap_or(0);
                for p in g.iter(pindex) {
                    // SAFETY: as above.
                    let page = unsafe { p.as_ref() };
                    if let Some(pfn) = self.mem.try_page_to_pfn(page) {
                        for i in 0..1u64 << order {
                            if let Some(q) = self.mem.pfn_to_page(pfn + i)
                                && q.private() == PCP_MARK
                            {
                                q.set_private(0);
                            }
                        }
                    }
                }
            }
        }
        result
    }

    fn check_pcp_page(&self, cpu: usize, page: &Page, order: u32) -> Result<(), ViolationKind> {
        let Some(pfn) = self.mem.try_page_to_pfn(page) else {
            return Err(ViolationKind::PcpPage {
                cpu,
                pfn: 0,
                what: "not a descriptor of the memmap",
            });
        };
        let bad = |what| Err(ViolationKind::PcpPage { cpu, pfn, what });
        if !self.in_zone(page) || !self.block_in_zone(pfn, order) {
            return bad("not in this zone");
        }
        if pfn & ((1u64 << order) - 1) != 0 {
            return bad("not aligned to its list's order");
        }
        if page.is_buddy() {
            return bad("PG_buddy set");
        }
        if page.refcount() != 0 {
            return bad("nonzero refcount");
        }
        // Frees into an isolated pageblock bypass the pcp lists and isolation drains them:
        // a pcp page there could be handed out from under the isolation.
        if self.pageblock_mt(pfn)? == Migratetype::Isolate {
            return bad("in an isolated pageblock");
        }
        for i in 0..1u64 << order {
            if let Some((head, o)) = self.free_block_containing(pfn + i) {
                return Err(ViolationKind::Overlap {
                    pfn: head,
                    order: o,
                    inner_pfn: pfn + i,
                });
            }
            if let Some(q) = self.mem.pfn_to_page(pfn + i) {
                if q.private() == PCP_MARK {
                    return bad("on two pcp lists (or inside another pcp block)");
                }
                if q.private() != 0 {
                    return bad("nonzero private");
                }
                q.set_private(PCP_MARK);
            }
        }
        Ok(())
    }
}
