//! Building the memory model from the firmware map, up to the hand-off to the buddy
//! allocator (Linux: `setup_arch`'s e820/memblock steps, `sparse_init`, `free_area_init`,
//! `memmap_init`, and the counting half of `memblock_free_all`).
//!
//! [`MemoryModel::init`] runs the stages in Linux's order, each consuming only what the
//! previous one produced:
//!
//! 0. check the architecture parameters ([`ArchParams`]: section size, physical address
//!    width, DMA zone limits, reserved low memory; x86_64's by default);
//! 1. sanitise the firmware map ([`crate::model::memmap`]), clipped at the physical limit;
//! 2. feed its RAM to memblock, split by node, and reserve what must never be handed out:
//!    bootloader RAM, frame 0, the caller's extra ranges, when asked one page below 1 MiB
//!    for the SMP trampoline, and the architecture's low memory
//!    ([`ArchParams::reserve_low`], the first MiB on x86_64) ([`crate::model::memblock`]);
//! 3. size ZONE_MOVABLE from `kernelcore=` / `movablecore=` ([`crate::model::zone`]);
//! 4. build `mem_section`s and allocate a memmap and usemap per present section
//!    ([`crate::model::sparse`]);
//! 5. allocate and size each node and its zones ([`crate::model::node`]);
//! 6. initialise every `struct Page` — zone, node, section, `PG_reserved` for every frame
//!    that is a hole or reserved — and mark every pageblock Movable (`memmap_init`);
//! 7. count, per zone, the free pages memblock will hand over: `managed_pages`.
//!
//! It stops there, at the hand-off point: no page is on any free list yet. The buddy
//! allocator takes over with [`MemoryModel::free_pfn_ranges`], which yields exactly the
//! pages counted in `managed_pages`, already split by node and zone.
//!
//! All reservations are made before step 6, so `PG_reserved` in the memmap is final: a
//! frame is reserved exactly when memblock would not hand it out.
//!
//! # Holding the model
//!
//! `MemoryModel` is `Send + Sync` (everything reachable from `&MemoryModel` is either
//! immutable after init or atomic) and about 14 KiB, the bulk being the sanitised map and
//! memblock's initial region arrays; the memmaps, roots and nodes live in the memory they
//! describe. [`MemoryModel::init_in`] builds it in place (the map and memblock's arrays
//! element by element), so building it needs only a few KiB of stack;
//! [`crate::PageAllocator::init_in`] builds it that way inside the allocator. The by-value
//! [`MemoryModel::init`] needs the stack to hold several copies of it while it returns.

use core::fmt;
use core::mem::MaybeUninit;

use crate::model::arch::{ArchError, ArchParams};
use crate::model::memblock::{AllocConstraint, Memblock, MemblockError, MemblockRegion};
use crate::model::memmap::{FirmwareRanges, MapError, MemoryMap, RangeKind};
use crate::model::mmzone::{MAX_NUMNODES, PAGE_SHIFT, PAGE_SIZE, ZoneType};
use crate::model::node::{Node, NumaRange};
use crate::model::page::{Page, PageFlags, page_links};
use crate::model::sparse::{SparseError, SparseMem};
use crate::model::zone::{
    CoreOption, CoreSize, ParamError, Zone, ZoneLimits, find_zone_movable_pfns_for_nodes,
    parse_kernelcore, parse_movablecore,
};
use crate::page_alloc::zonelist::NodeAlloc;
use crate::port::platform::Platform;

/// The SMP trampoline page must lie below this address (real-mode startup IPI vector).
pub const TRAMPOLINE_LIMIT: u64 = 1 << 20;

/// Boot parameters of the memory model.
#[derive(Clone, Copy, Debug)]
pub struct ModelParams<'a> {
    /// `kernelcore=`: memory kept out of ZONE_MOVABLE.
    pub kernelcore: Option<CoreSize>,
    /// `movablecore=`: memory put in ZONE_MOVABLE.
    pub movablecore: Option<CoreSize>,
    /// Node of each RAM range (ACPI SRAT). RAM not covered is on node 0. Empty: all node 0.
    pub numa: &'a [NumaRange],
    /// Distances between nodes (ACPI SLIT), row-major: `n * n` entries for node ids
    /// `0..n`, `numa_distance[a * n + b]` the distance from `a` to `b`; 10 on the
    /// diagonal, more elsewhere. Empty: 10 local, 20 remote (Linux's defaults). They
    /// order each node's zonelists (nearest node first, as Linux's `build_zonelists`).
    pub numa_distance: &'a [u8],
    /// Values rejected while parsing (the options were ignored), reported at init.
    pub errors: [Option<ParamError>; 2],
    /// Apply the PC's low-memory rules to the firmware map (Linux: `trim_bios_range`): page
    /// 0 is not RAM, and RAM the firmware claims in the legacy BIOS area 0xa0000-0xfffff is
    /// removed, so that nothing (the SMP trampoline page included) is placed there. On by
    /// default (x86_64); turn it off for an architecture without a legacy BIOS area. See
    /// [`MemoryMap::sanitize_with`].
    pub trim_bios_range: bool,
    /// Reserve one page below 1 MiB (below 0xa0000 with [`ModelParams::trim_bios_range`])
    /// for a real-mode SMP trampoline ([`MemoryModel::trampoline_phys`]), as an x86 kernel
    /// that starts its application processors with INIT/SIPI needs. Off by default: only a
    /// kernel that has such a trampoline asks for it (then the page is chosen before the
    /// low range [`ArchParams::reserve_low`] is reserved, and may lie inside it, as Linux's
    /// `reserve_real_mode` picks its page before reserving the first MiB). Off, no low page
    /// is taken and nothing is warned.
    pub reserve_trampoline: bool,
    /// Place each section's memmap and usemap inside that section (Linux's
    /// `memory_hotplug.memmap_on_memory`, there for hot-added blocks) rather than at the
    /// top of its node (Linux's boot-time placement, the default). Inside, the metadata
    /// of a memory block travels with it, but every section keeps a reserved 2 MiB run, so
    /// no range larger than a section can ever be emptied (no gigantic pages); at the
    /// top, the node's other sections hold no reserved page. See
    /// [`crate::model::sparse`].
    pub memmap_on_memory: bool,
    /// The architecture facts: section size, physical address width, DMA zone limits,
    /// reserved low memory. x86_64's by default; see [`ArchParams`] for what a port to
    /// another architecture sets.
    pub arch: ArchParams,
    /// `cma=SIZE[@START]`: a CMA area the page allocator declares when it starts
    /// ([`crate::movement::cma`]).
    pub cma: Option<crate::movement::cma::CmaSpec>,
}

impl Default for ModelParams<'_> {
    /// No `kernelcore=` / `movablecore=`, one node, the x86_64 architecture facts and
    /// low-memory rules, no SMP trampoline page.
    fn default() -> Self {
        ModelParams {
            kernelcore: None,
            movablecore: None,
            numa: &[],
            numa_distance: &[],
            errors: [None; 2],
            trim_bios_range: true,
            reserve_trampoline: false,
            memmap_on_memory: false,
            arch: ArchParams::X86_64,
            cma: None,
        }
    }
}

impl<'a> ModelParams<'a> {
    /// Apply a `kernelcore=` value. A bad value is returned, recorded, and ignored.
    pub fn set_kernelcore(&mut self, value: &str) -> Result<(), ParamError> {
        let r = parse_kernelcore(value);
        self.apply(CoreOption::Kernelcore, r)
    }

    /// Apply a `movablecore=` value. A bad value is returned, recorded, and ignored.
    pub fn set_movablecore(&mut self, value: &str) -> Result<(), ParamError> {
        let r = parse_movablecore(value);
        self.apply(CoreOption::Movablecore, r)
    }

    /// Apply a `cma=` value (`SIZE` or `SIZE@START`). A bad value is returned, logged,
    /// and ignored.
    pub fn set_cma(&mut self, value: &str) -> Result<(), crate::movement::cma::CmaParamError> {
        match crate::movement::cma::parse_cma(value) {
            Ok(spec) => {
                self.cma = Some(spec);
                Ok(())
            }
            Err(e) => {
                log::warn!("{e}");
                Err(e)
            }
        }
    }

    fn apply(&mut self, o: CoreOption, r: Result<CoreSize, ParamError>) -> Result<(), ParamError> {
        let (slot, err) = match o {
            CoreOption::Kernelcore => (&mut self.kernelcore, &mut self.errors[0]),
            CoreOption::Movablecore => (&mut self.movablecore, &mut self.errors[1]),
        };
        match r {
            Ok(v) => {
                *slot = Some(v);
                *err = None;
                Ok(())
            }
            Err(e) => {
                log::warn!("{e}");
                *err = Some(e);
                Err(e)
            }
        }
    }

    /// Pick `kernelcore=`, `movablecore=` and `cma=` out of a kernel command line (later
    /// occurrences override earlier ones, as with Linux's `early_param`). Other words are
    /// ignored. Bad values are recorded in [`ModelParams::errors`].
    pub fn parse_cmdline(&mut self, cmdline: &str) {
        for word in cmdline.split_ascii_whitespace() {
            if let Some(v) = word.strip_prefix("kernelcore=") {
                let _ = self.set_kernelcore(v);
            } else if let Some(v) = word.strip_prefix("movablecore=") {
                let _ = self.set_movablecore(v);
            } else if let Some(v) = word.strip_prefix("cma=") {
                let _ = self.set_cma(v);
            }
        }
    }
}

/// Why the memory model could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// An architecture parameter ([`ModelParams::arch`]) is out of range or inconsistent.
    Arch(ArchError),
    /// The firmware map was rejected.
    Map(MapError),
    /// A NUMA range is inverted or names a node `>= MAX_NUMNODES`.
    BadNumaRange(NumaRange),
    /// The distance table's length is not the square of a node count up to
    /// `MAX_NUMNODES`.
    NumaDistanceShape(usize),
    /// A distance table entry is not 10 on the diagonal, or is 10 or less elsewhere.
    BadNumaDistance {
        /// Row (from).
        from: usize,
        /// Column (to).
        to: usize,
        /// The value found.
        value: u8,
    },
    /// An extra reservation is inverted or beyond the physical address limit.
    BadReservation {
        /// Start given.
        start: u64,
        /// End given.
        end: u64,
    },
    /// memblock failed (a region array could not grow).
    Memblock(MemblockError),
    /// SPARSEMEM could not allocate its metadata.
    Sparse(SparseError),
    /// No memory for a node descriptor.
    NodeData {
        /// The node.
        nid: usize,
        /// The allocation failure.
        error: MemblockError,
    },
    /// After every reservation not one page is left for the buddy allocator.
    NoFreeMemory,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Arch(e) => write!(f, "{e}"),
            ModelError::Map(e) => write!(f, "{e}"),
            ModelError::BadNumaRange(r) => write!(
                f,
                "NUMA range [{:#x}, {:#x}) on node {} is inverted or the node is not below {MAX_NUMNODES}",
                r.start, r.end, r.nid
            ),
            ModelError::NumaDistanceShape(len) => write!(
                f,
                "NUMA distance table of {len} entries is not the square of a node count up to {MAX_NUMNODES}"
            ),
            ModelError::BadNumaDistance { from, to, value } => write!(
                f,
                "NUMA distance {from}->{to} is {value} (10 on the diagonal, more than 10 elsewhere)"
            ),
            ModelError::BadReservation { start, end } => write!(
                f,
                "reservation [{start:#x}, {end:#x}) is inverted or beyond the physical address limit"
            ),
            ModelError::Memblock(e) => write!(f, "{e}"),
            ModelError::Sparse(e) => write!(f, "{e}"),
            ModelError::NodeData { nid, error } => {
                write!(f, "no memory for the descriptor of node {nid}: {error}")
            }
            ModelError::NoFreeMemory => {
                f.write_str("no free page is left for the buddy allocator after boot reservations")
            }
        }
    }
}

impl core::error::Error for ModelError {}

impl From<ArchError> for ModelError {
    fn from(e: ArchError) -> Self {
        ModelError::Arch(e)
    }
}

impl From<MapError> for ModelError {
    fn from(e: MapError) -> Self {
        ModelError::Map(e)
    }
}

impl From<MemblockError> for ModelError {
    fn from(e: MemblockError) -> Self {
        ModelError::Memblock(e)
    }
}

impl From<SparseError> for ModelError {
    fn from(e: SparseError) -> Self {
        ModelError::Sparse(e)
    }
}

/// A run of free pages handed to the buddy allocator: `[start_pfn, end_pfn)`, all in one
/// zone of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoffRange {
    /// Node.
    pub nid: usize,
    /// Zone.
    pub zone: ZoneType,
    /// First pfn.
    pub start_pfn: u64,
    /// One past the last pfn.
    pub end_pfn: u64,
}

/// The memory model at the hand-off point. See the module documentation.
pub struct MemoryModel {
    map: MemoryMap,
    memblock: Memblock,
    sparse: SparseMem,
    /// `NODE_DATA(nid)`: direct-map addresses of node descriptors, null for offline nodes
    /// (the one table sized by [`MAX_NUMNODES`]; everything else per node lives in the
    /// descriptor, on its node).
    nodes: [*const Node; MAX_NUMNODES],
    node_data_bytes: u64,
    limits: ZoneLimits,
    arch: ArchParams,
    param_errors: [Option<ParamError>; 4],
    trampoline: Option<u64>,
    /// [`ModelParams::reserve_trampoline`] as given.
    trampoline_requested: bool,
    handoff_pages: u64,
}

// SAFETY: the raw node pointers lead to memblock-reserved memory that the model owns for its
// whole life and never frees; after `init` returns, nodes are reached only as `&Node`, whose
// mutable state is atomic. `Memblock` and `SparseMem` are themselves `Send + Sync`.
unsafe impl Send for MemoryModel {}
// SAFETY: as above.
unsafe impl Sync for MemoryModel {}

impl MemoryModel {
    /// Build the memory model from a firmware map; see the module documentation.
    ///
    /// `extra_reserved` are `[start, end)` byte ranges the kernel needs kept (its image,
    /// boot data it still uses, ...); any page they touch is reserved. Bad `kernelcore=` /
    /// `movablecore=` values do not fail init: they are ignored and reported by
    /// [`MemoryModel::param_errors`] and the boot report.
    ///
    /// The model is returned by value and is about 14 KiB; building it this way needs a
    /// stack several times that. On a small boot stack use [`MemoryModel::init_in`] (or
    /// [`crate::PageAllocator::init_in`], which builds the model inside the allocator).
    pub fn init<P: Platform + ?Sized>(
        platform: &P,
        ranges: impl FirmwareRanges,
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
    ) -> Result<MemoryModel, ModelError> {
        let mut slot = MaybeUninit::uninit();
        Self::init_in(&mut slot, platform, ranges, extra_reserved, params)?;
        // SAFETY: `init_in` returned `Ok`, so it initialised every field of `slot`.
        Ok(unsafe { slot.assume_init() })
    }

    /// [`MemoryModel::init`], building the model in place in `slot` (the sanitised map and
    /// memblock's region arrays included) instead of returning it by value, so that init
    /// runs on a small stack. On error `slot` is left partly written; it needs no drop.
    pub fn init_in<'m, P: Platform + ?Sized>(
        slot: &'m mut MaybeUninit<MemoryModel>,
        platform: &P,
        ranges: impl FirmwareRanges,
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
    ) -> Result<&'m mut MemoryModel, ModelError> {
        let arch = params.arch;
        arch.validate()?;
        let physmem_limit = arch.physmem_limit();
        let p = slot.as_mut_ptr();
        // SAFETY: `p` points to `slot`; its `map` and `memblock` fields are disjoint places
        // valid for writes, viewed as `MaybeUninit` (same layout) until built in place below.
        // Nothing else refers to them until `slot` is read as initialised at the end, after
        // the last use of these references.
        let (map_slot, memblock_slot) = unsafe {
            (
                &mut *core::ptr::addr_of_mut!((*p).map).cast::<MaybeUninit<MemoryMap>>(),
                &mut *core::ptr::addr_of_mut!((*p).memblock).cast::<MaybeUninit<Memblock>>(),
            )
        };
        let map: &MemoryMap = MemoryMap::sanitize_in(
            map_slot,
            ranges,
            params.trim_bios_range,
            arch.max_physmem_bits,
        )?;
        for r in params.numa {
            if r.start >= r.end || r.nid >= MAX_NUMNODES {
                return Err(ModelError::BadNumaRange(*r));
            }
        }
        let nr_dist = check_numa_distance(params.numa_distance)?;
        for &(start, end) in extra_reserved {
            if start > end || end > physmem_limit {
                return Err(ModelError::BadReservation { start, end });
            }
        }

        // memblock: RAM by node, then the reservations.
        let memblock = Memblock::init_in(memblock_slot, physmem_limit);
        let mut uncovered = false;
        for r in map.ram() {
            let mut cur = r.start;
            while cur < r.end {
                let (end, nid) = numa_piece(params.numa, cur, r.end);
                if nid.is_none() && !params.numa.is_empty() {
                    uncovered = true;
                }
                memblock.add_node(platform, cur, end - cur, nid.unwrap_or(0))?;
                cur = end;
            }
        }
        if uncovered {
            log::warn!("NUMA: some RAM is not covered by any node range; placed on node 0");
        }
        for r in map
            .entries()
            .iter()
            .filter(|r| r.kind == RangeKind::Bootloader)
        {
            memblock.reserve(platform, r.start, r.len())?;
        }
        memblock.reserve(platform, 0, PAGE_SIZE)?;
        for &(start, end) in extra_reserved.iter().filter(|r| r.0 < r.1) {
            // Whole pages: the caller's data may be accessed through any mapping of the
            // page, so no other boot allocation may share it.
            let start = start & !(PAGE_SIZE - 1);
            let end = end.next_multiple_of(PAGE_SIZE).min(physmem_limit);
            memblock.reserve(platform, start, end - start)?;
        }
        let trampoline = if !params.reserve_trampoline {
            None
        } else {
            match memblock.alloc(
                platform,
                PAGE_SIZE,
                PAGE_SIZE,
                AllocConstraint::pfn_range(0, TRAMPOLINE_LIMIT >> PAGE_SHIFT),
            ) {
                Ok(pa) => Some(pa),
                Err(_) => {
                    log::warn!("no free page below 1 MiB for the SMP trampoline");
                    None
                }
            }
        };
        // The architecture's low memory (x86: the first MiB, which firmware and real-mode
        // code may still use): present, never managed. After the trampoline, which may be
        // placed inside it.
        if arch.reserve_low > 0 {
            memblock.reserve(platform, 0, arch.reserve_low.min(physmem_limit))?;
        }

        // Zone limits and ZONE_MOVABLE.
        let mem = memblock.memory();
        let min_pfn = mem.first().map_or(0, |r| r.base >> PAGE_SHIFT);
        let max_pfn = mem.last().map_or(0, |r| r.end() >> PAGE_SHIFT);
        let limits = ZoneLimits::new(min_pfn, max_pfn, &arch);
        let movable = find_zone_movable_pfns_for_nodes(
            mem,
            &limits,
            params.kernelcore.filter(|_| params.errors[0].is_none()),
            params.movablecore.filter(|_| params.errors[1].is_none()),
        );
        let mut param_errors = [params.errors[0], params.errors[1], None, None];
        param_errors[2] = movable.errors[0];
        param_errors[3] = movable.errors[1];
        for e in movable.errors.iter().flatten() {
            log::warn!("{e}");
        }

        // SPARSEMEM metadata.
        let mut sparse = SparseMem::init(platform, memblock, &arch, params.memmap_on_memory)?;

        // Node descriptors, on their nodes, each followed by its zonelist storage (sized
        // by the number of nodes; see `page_alloc::zonelist`).
        let has_memory =
            |mb: &Memblock, nid: usize| mb.memory().iter().any(|r| r.nid as usize == nid);
        let nr_nodes = (0..MAX_NUMNODES)
            .filter(|&nid| has_memory(memblock, nid))
            .count();
        let zonelist_bytes = NodeAlloc::zonelist_bytes(nr_nodes);
        let mut nodes = [core::ptr::null::<Node>(); MAX_NUMNODES];
        let mut node_data_bytes = 0;
        for (nid, slot) in nodes.iter_mut().enumerate() {
            if !has_memory(memblock, nid) {
                continue;
            }
            let size = (core::mem::size_of::<Node>() + zonelist_bytes) as u64;
            let pa = memblock
                .alloc(
                    platform,
                    size,
                    core::mem::align_of::<Node>().max(64) as u64,
                    AllocConstraint::ANYWHERE.on_node(nid, false),
                )
                .map_err(|error| ModelError::NodeData { nid, error })?;
            let p = platform.phys_to_virt(pa) as *mut Node;
            // SAFETY: `[pa, pa + size)` was just allocated (and reserved) for this node, is
            // RAM reached through the direct map, and is aligned for `Node`; nothing else
            // refers to it. The descriptor is built there, not on the stack and moved.
            let node = unsafe {
                Node::init_at(p, nid);
                &mut *p
            };
            if nid < nr_dist {
                for (to, d) in node.distance.iter_mut().enumerate().take(nr_dist) {
                    *d = params.numa_distance[nid * nr_dist + to];
                }
            }
            node.calculate_node_totalpages(memblock.memory(), &limits, &movable);
            // SAFETY: the `zonelist_bytes` after the descriptor are part of the allocation
            // just made for this node, reserved for the model's life, and used by nothing
            // but this node's zonelists.
            unsafe {
                node.alloc
                    .set_zonelist_storage(p.add(1).cast::<u8>(), nr_nodes)
            };
            *slot = p;
            node_data_bytes += size;
        }
        // SAFETY: every non-null entry was initialised just above and is never freed.
        let node_refs: [Option<&Node>; MAX_NUMNODES] = nodes.map(|p| unsafe { p.as_ref() });

        // memmap_init: every struct page of every present section.
        let classifier = Classifier {
            mem: memblock.memory(),
            res: memblock.reserved(),
            nodes: &node_refs,
            pfn_section_shift: sparse.pfn_section_shift(),
        };
        let mut nr = 0;
        let last_section = memblock
            .memory()
            .last()
            .map_or(0, |r| sparse.pfn_to_section_nr((r.end() - 1) >> PAGE_SHIFT));
        while nr <= last_section {
            if sparse.nr_to_section(nr).is_some_and(|ms| ms.present()) {
                sparse.init_section_memmap(nr, |pfn| classifier.classify(nr, pfn));
            }
            nr += 1;
        }

        // Managed pages: what memblock will hand over, per zone.
        let mut handoff_pages = 0;
        for r in handoff_ranges(memblock, &nodes) {
            let z = &node_refs[r.nid]
                .expect("free RAM is on an online node")
                .node_zones[r.zone.index()];
            z.adjust_managed_page_count((r.end_pfn - r.start_pfn) as i64);
            handoff_pages += r.end_pfn - r.start_pfn;
        }
        if handoff_pages == 0 {
            return Err(ModelError::NoFreeMemory);
        }

        // SAFETY: `p` points to `slot`; `map` and `memblock` were built in place above (the
        // references to them are no longer used) and every other field is written once
        // here, so `slot` is then fully initialised.
        unsafe {
            use core::ptr::addr_of_mut;
            addr_of_mut!((*p).sparse).write(sparse);
            addr_of_mut!((*p).nodes).write(nodes);
            addr_of_mut!((*p).node_data_bytes).write(node_data_bytes);
            addr_of_mut!((*p).limits).write(limits);
            addr_of_mut!((*p).arch).write(arch);
            addr_of_mut!((*p).param_errors).write(param_errors);
            addr_of_mut!((*p).trampoline).write(trampoline);
            addr_of_mut!((*p).trampoline_requested).write(params.reserve_trampoline);
            addr_of_mut!((*p).handoff_pages).write(handoff_pages);
            Ok(slot.assume_init_mut())
        }
    }

    /// The sanitised firmware map.
    pub fn memory_map(&self) -> &MemoryMap {
        &self.map
    }

    /// memblock as left at the hand-off point.
    pub fn memblock(&self) -> &Memblock {
        &self.memblock
    }

    /// The SPARSEMEM sections.
    pub fn sparse(&self) -> &SparseMem {
        &self.sparse
    }

    /// Node `nid` (`NODE_DATA`), if it has memory.
    #[inline]
    pub fn node(&self, nid: usize) -> Option<&Node> {
        // SAFETY: non-null entries point to node descriptors initialised in `init` and
        // reserved in memblock for the life of the model.
        self.nodes.get(nid).and_then(|p| unsafe { p.as_ref() })
    }

    /// Node `nid`, to fill in the page allocator's per-node tables while it is built.
    pub(crate) fn node_mut(&mut self, nid: usize) -> Option<&mut Node> {
        // SAFETY: as in `node`; the descriptors are owned by the model (the pointers come
        // from `phys_to_virt` of memory reserved for it), so `&mut self` excludes every
        // other reference to them.
        self.nodes
            .get(nid)
            .and_then(|p| unsafe { p.cast_mut().as_mut() })
    }

    /// The online nodes (those with memory), by id.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        (0..MAX_NUMNODES).filter_map(move |nid| self.node(nid))
    }

    /// Zone `zt` of node `nid`.
    pub fn zone(&self, nid: usize, zt: ZoneType) -> Option<&Zone> {
        self.node(nid).map(|n| n.zone(zt))
    }

    /// The zone a page belongs to (`page_zone`).
    pub fn page_zone(&self, page: &Page) -> Option<&Zone> {
        self.zone(page.nid(), page.zone_type()?)
    }

    /// The architectural zone limits used.
    pub fn zone_limits(&self) -> &ZoneLimits {
        &self.limits
    }

    /// The architecture parameters the model was built with.
    pub fn arch(&self) -> &ArchParams {
        &self.arch
    }

    /// The first pfn of node `nid`'s ZONE_MOVABLE (0: none, or no such node).
    pub fn zone_movable_pfn(&self, nid: usize) -> u64 {
        self.node(nid).map_or(0, |n| n.zone_movable_pfn)
    }

    /// `kernelcore=` / `movablecore=` values that were rejected and ignored.
    pub fn param_errors(&self) -> impl Iterator<Item = &ParamError> + '_ {
        self.param_errors.iter().flatten()
    }

    /// Physical address of the page reserved below 1 MiB for the SMP trampoline, if one was
    /// asked for ([`ModelParams::reserve_trampoline`]) and could be found. The page is
    /// reserved (never handed out) whether or not it lies in the reserved low range.
    pub fn trampoline_phys(&self) -> Option<u64> {
        self.trampoline
    }

    /// True if `pfn` has a `struct Page`.
    #[inline]
    pub fn pfn_valid(&self, pfn: u64) -> bool {
        self.sparse.pfn_valid(pfn)
    }

    /// The descriptor of `pfn`, if valid.
    #[inline]
    pub fn pfn_to_page(&self, pfn: u64) -> Option<&Page> {
        self.sparse.pfn_to_page(pfn)
    }

    /// The pfn a descriptor of this memmap describes.
    #[inline]
    pub fn page_to_pfn(&self, page: &Page) -> u64 {
        self.sparse.page_to_pfn(page)
    }

    /// Pages the buddy allocator receives: the sum of every zone's `managed_pages`.
    pub fn handoff_pages(&self) -> u64 {
        self.handoff_pages
    }

    /// The free page ranges to hand to the buddy allocator, in address order, split at
    /// zone boundaries. Their pages are exactly those counted in `managed_pages`.
    pub fn free_pfn_ranges(&self) -> impl Iterator<Item = HandoffRange> + '_ {
        handoff_ranges(&self.memblock, &self.nodes)
    }

    /// Allocate `size` bytes aligned to `align` from memblock after the model is built,
    /// for the page allocator's own boot-time structures (the per-CPU areas), and keep
    /// every count consistent: the pages become `PG_reserved` (so a stray free of one is
    /// refused), and each zone's `managed_pages` and the hand-off total are recounted from
    /// the free ranges that remain.
    pub fn memblock_alloc_late<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        size: u64,
        align: u64,
    ) -> Result<u64, MemblockError> {
        let reserved_before = self.memblock.reserved_size();
        let pa = self
            .memblock
            .alloc(platform, size, align, AllocConstraint::ANYWHERE)?;
        if self.memblock.reserved_size() - reserved_before > size {
            // memblock grew its reserved array: mark everything it reserves, which covers
            // the new array wherever it went.
            let mut i = 0;
            while let Some(r) = self.memblock.reserved().get(i).copied() {
                self.mark_reserved(r.base, r.end());
                i += 1;
            }
        } else {
            self.mark_reserved(pa, pa + size);
        }
        self.recount_managed();
        Ok(pa)
    }

    /// Set `PG_reserved` on every page overlapping `[start, end)` bytes.
    fn mark_reserved(&self, start: u64, end: u64) {
        for pfn in (start >> PAGE_SHIFT)..end.div_ceil(PAGE_SIZE) {
            if let Some(p) = self.sparse.pfn_to_page(pfn) {
                p.set_reserved();
            }
        }
    }

    /// Recount `managed_pages` of every zone and the hand-off total from memblock's free
    /// ranges.
    fn recount_managed(&mut self) {
        for n in self.nodes() {
            for z in &n.node_zones {
                z.managed_pages
                    .store(0, core::sync::atomic::Ordering::Relaxed);
            }
        }
        let mut total = 0;
        for r in self.free_pfn_ranges() {
            if let Some(z) = self.zone(r.nid, r.zone) {
                z.adjust_managed_page_count((r.end_pfn - r.start_pfn) as i64);
            }
            total += r.end_pfn - r.start_pfn;
        }
        self.handoff_pages = total;
    }

    /// Bytes of RAM present (usable and bootloader RAM).
    pub fn ram_bytes(&self) -> u64 {
        self.memblock.phys_mem_size()
    }

    /// Bytes of memory-model metadata: section roots, memmaps, usemaps, node descriptors.
    pub fn metadata_bytes(&self) -> u64 {
        self.sparse.stats().total_bytes() + self.node_data_bytes
    }

    /// Metadata as thousandths of a percent of RAM (1568 means 1.568%).
    pub fn metadata_permille_percent(&self) -> u64 {
        let ram = self.ram_bytes().max(1);
        (self.metadata_bytes() as u128 * 100_000 / ram as u128) as u64
    }

    /// The boot report: sanitised map, node and zone ranges, /proc/zoneinfo headers,
    /// sections and metadata overhead, hand-off count. Use with `write!`/`{}`.
    pub fn boot_report(&self) -> BootReport<'_> {
        BootReport { model: self }
    }
}

/// The pfn range `[cur, ..)` of RAM ending at `end` that lies on one node: its end and the
/// node (`None`: not covered by any NUMA range).
/// The node count of a distance table (0 for an empty one), or why it is refused.
fn check_numa_distance(d: &[u8]) -> Result<usize, ModelError> {
    let n = d.len().isqrt();
    if n * n != d.len() || n > MAX_NUMNODES {
        return Err(ModelError::NumaDistanceShape(d.len()));
    }
    if let Some((from, to, value)) = crate::model::node::first_bad_distance(d, n) {
        return Err(ModelError::BadNumaDistance { from, to, value });
    }
    Ok(n)
}

fn numa_piece(numa: &[NumaRange], cur: u64, end: u64) -> (u64, Option<usize>) {
    if let Some(r) = numa.iter().find(|r| r.start <= cur && cur < r.end) {
        return (end.min(r.end), Some(r.nid));
    }
    let next = numa
        .iter()
        .filter(|r| r.start > cur)
        .map(|r| r.start)
        .min()
        .unwrap_or(end);
    (end.min(next), None)
}

/// The free pfn ranges of `memblock`, split at the zone boundaries of their node.
/// `nodes` is `NODE_DATA`: null or initialised descriptors that outlive `'a`.
fn handoff_ranges<'a>(
    memblock: &'a Memblock,
    nodes: &'a [*const Node; MAX_NUMNODES],
) -> HandoffIter<'a, impl Iterator<Item = (u64, u64, usize)> + 'a> {
    HandoffIter {
        free: memblock.free_pfn_ranges(),
        nodes,
        cur: None,
    }
}

/// Iterator behind [`MemoryModel::free_pfn_ranges`].
struct HandoffIter<'a, I> {
    free: I,
    nodes: &'a [*const Node; MAX_NUMNODES],
    cur: Option<(u64, u64, usize)>,
}

impl<I: Iterator<Item = (u64, u64, usize)>> Iterator for HandoffIter<'_, I> {
    type Item = HandoffRange;

    fn next(&mut self) -> Option<HandoffRange> {
        loop {
            let (s, e, nid) = match self.cur.take() {
                Some(c) => c,
                None => self.free.next()?,
            };
            if s >= e {
                continue;
            }
            // SAFETY: `handoff_ranges`' contract: non-null entries are initialised
            // descriptors that outlive the iterator.
            let node = self.nodes.get(nid).and_then(|p| unsafe { p.as_ref() });
            let zone = node.and_then(|n| {
                n.node_zones
                    .iter()
                    .find(|z| !z.is_empty() && z.zone_spans_pfn(s))
            });
            match zone {
                Some(z) => {
                    let piece_end = e.min(z.zone_end_pfn());
                    if piece_end < e {
                        self.cur = Some((piece_end, e, nid));
                    }
                    return Some(HandoffRange {
                        nid,
                        zone: z.zone_type,
                        start_pfn: s,
                        end_pfn: piece_end,
                    });
                }
                None => {
                    // Free RAM outside every zone of its node cannot happen (zones partition
                    // the node span, which covers all its RAM); skip a page defensively.
                    debug_assert!(false, "free pfn {s:#x} on node {nid} is in no zone");
                    self.cur = Some((s + 1, e, nid));
                }
            }
        }
    }
}

/// Decides each frame's flags word during `memmap_init`.
struct Classifier<'a> {
    mem: &'a [MemblockRegion],
    res: &'a [MemblockRegion],
    nodes: &'a [Option<&'a Node>; MAX_NUMNODES],
    /// `PFN_SECTION_SHIFT` of the model.
    pfn_section_shift: u32,
}

impl Classifier<'_> {
    /// The flags word of `pfn` (in section `nr`) and the end of the run of pfns sharing it.
    fn classify(&self, nr: u64, pfn: u64) -> (u64, u64) {
        let addr = pfn << PAGE_SHIFT;
        let section_end = (nr + 1) << self.pfn_section_shift;
        let mi = self.mem.partition_point(|r| r.end() <= addr);
        let in_mem = self.mem.get(mi).filter(|r| r.base <= addr);
        if let Some(m) = in_mem {
            let nid = m.nid as usize;
            if let Some(z) =
                self.nodes[nid].and_then(|n| n.node_zones.iter().find(|z| z.zone_spans_pfn(pfn)))
            {
                let mut end = (m.end() >> PAGE_SHIFT)
                    .min(z.zone_end_pfn())
                    .min(section_end);
                let ri = self.res.partition_point(|r| r.end() <= addr);
                let reserved = match self.res.get(ri) {
                    Some(r) if r.base < addr + PAGE_SIZE => {
                        end = end.min(r.end().div_ceil(PAGE_SIZE));
                        true
                    }
                    Some(r) => {
                        end = end.min(r.base >> PAGE_SHIFT);
                        false
                    }
                    None => false,
                };
                let mut flags = page_links(z.zone_type, nid, nr);
                if reserved {
                    flags |= PageFlags::RESERVED.bits();
                }
                return (flags, end.max(pfn + 1));
            }
        }
        // A hole (or, defensively, RAM outside its node's zones): reserved, attributed to
        // the zone spanning it, else the zone above it, else the highest zone, of the node
        // spanning it, else of the node owning the nearest RAM.
        let next_mem = self
            .mem
            .get(mi)
            .map_or(section_end, |r| (r.base >> PAGE_SHIFT).max(pfn + 1));
        let nid = self
            .nodes
            .iter()
            .flatten()
            .find(|n| n.node_start_pfn <= pfn && pfn < n.node_end_pfn())
            .map(|n| n.node_id)
            .or_else(|| self.mem.get(mi).or(self.mem.last()).map(|r| r.nid as usize))
            .unwrap_or(0);
        let mut end = next_mem.min(section_end);
        let mut zone = ZoneType::Normal;
        if let Some(n) = self.nodes[nid] {
            let spanning = n.node_zones.iter().find(|z| z.zone_spans_pfn(pfn));
            let above = n
                .node_zones
                .iter()
                .filter(|z| !z.is_empty() && z.zone_start_pfn() > pfn)
                .min_by_key(|z| z.zone_start_pfn());
            let highest = n.node_zones.iter().rev().find(|z| !z.is_empty());
            if let Some(z) = spanning.or(above).or(highest) {
                zone = z.zone_type;
            }
            // Stop the run at every zone boundary of any node so attribution stays exact.
            for z in self
                .nodes
                .iter()
                .flatten()
                .flat_map(|n| n.node_zones.iter())
            {
                for b in [z.zone_start_pfn(), z.zone_end_pfn()] {
                    if b > pfn {
                        end = end.min(b);
                    }
                }
            }
        }
        let flags = page_links(zone, nid, nr) | PageFlags::RESERVED.bits();
        (flags, end.max(pfn + 1))
    }
}

/// The boot report; see [`MemoryModel::boot_report`].
pub struct BootReport<'a> {
    model: &'a MemoryModel,
}

impl fmt::Display for BootReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.model;
        // Map anomalies and rejected parameters were logged once, when found; the report
        // does not repeat them.
        write!(f, "{}", m.map)?;
        writeln!(f, "Zone ranges:")?;
        for zt in [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal] {
            let (lo, hi) = (m.limits.lowest[zt.index()], m.limits.highest[zt.index()]);
            if hi > lo {
                writeln!(
                    f,
                    "  {:<8} [mem {:#018x}-{:#018x}]",
                    zt.name(),
                    lo << PAGE_SHIFT,
                    (hi << PAGE_SHIFT) - 1
                )?;
            } else {
                writeln!(f, "  {:<8} empty", zt.name())?;
            }
        }
        writeln!(f, "Movable zone start for each node")?;
        for n in m.nodes() {
            let zmp = n.zone_movable_pfn;
            if zmp != 0 {
                writeln!(f, "  Node {}: {:#018x}", n.node_id, zmp << PAGE_SHIFT)?;
            }
        }
        writeln!(f, "Early memory node ranges")?;
        for r in m.memblock.memory() {
            writeln!(
                f,
                "  node {:>3}: [mem {:#018x}-{:#018x}]",
                r.nid,
                r.base,
                r.end() - 1
            )?;
        }
        for n in m.nodes() {
            for z in &n.node_zones {
                writeln!(f, "Node {}, zone {:>8}", n.node_id, z.name())?;
                writeln!(f, "  pages free     {}", 0)?;
                for (name, v) in [
                    ("boost", 0),
                    ("min", 0),
                    ("low", 0),
                    ("high", 0),
                    ("spanned", z.spanned_pages()),
                    ("present", z.present_pages()),
                    ("managed", z.managed_pages()),
                    ("cma", 0),
                ] {
                    writeln!(f, "        {name:<8} {v}")?;
                }
            }
        }
        let st = m.sparse.stats();
        writeln!(
            f,
            "sparse: {} present sections of {} MiB, memmaps {}, {} placed elsewhere for lack of room",
            st.present_sections,
            1u64 << (m.sparse.section_size_bits() - 20),
            if st.memmap_on_memory {
                "inside their sections"
            } else {
                "at the top of their node"
            },
            st.memmaps_not_local
        )?;
        let pm = m.metadata_permille_percent();
        writeln!(
            f,
            "mm: memory model metadata {} bytes ({}.{:03}% of {} bytes RAM)",
            m.metadata_bytes(),
            pm / 1000,
            pm % 1000,
            m.ram_bytes()
        )?;
        match m.trampoline {
            Some(pa) => writeln!(f, "mm: SMP trampoline page at {pa:#x}")?,
            None if m.trampoline_requested => {
                writeln!(f, "mm: no SMP trampoline page below 1 MiB")?
            }
            None => {}
        }
        writeln!(
            f,
            "mm: {} pages ({} KiB) free for the buddy allocator",
            m.handoff_pages,
            m.handoff_pages << (PAGE_SHIFT - 10)
        )
    }
}
