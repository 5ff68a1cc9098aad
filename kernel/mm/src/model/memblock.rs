//! memblock: the boot-time allocator that exists before `struct page` does (Linux:
//! `mm/memblock.c`).
//!
//! The memory model needs memory to describe memory: the `mem_section` roots, a memmap per
//! present section, the pageblock usemaps, the node descriptors. None of that can come from
//! the buddy allocator, which is built *on* those structures. memblock is the answer Linux
//! gives, and this module keeps its semantics:
//!
//! - two sorted arrays of disjoint regions: `memory` (all RAM, each region tagged with its
//!   node) and `reserved` (everything that must never be handed to the buddy allocator:
//!   firmware-owned RAM, the kernel and boot data, frame 0, the architecture's low range
//!   (the first MiB on x86), the SMP trampoline when asked for, and every
//!   allocation memblock itself made);
//! - "free" means in `memory` and not in `reserved`; allocation finds a free range,
//!   top-down by default (so that early allocations stay away from the scarce low memory
//!   that DMA-limited users need), optionally constrained to a pfn window and a node;
//! - at the end of boot the free ranges are exactly what the buddy allocator receives
//!   ([`Memblock::free_ranges`]).
//!
//! Both arrays start in storage held inline ([`INIT_MEMBLOCK_REGIONS`] regions) and double
//! themselves into memory allocated from memblock when they fill up, as Linux's
//! `memblock_double_array` does: a large machine with a memmap placed inside each of its
//! sections needs one reserved region per section. Growing needs the direct map, which is
//! why the mutating methods take the [`Platform`]. A replaced array that lived in allocated
//! memory stays reserved (a few KiB at most, once per doubling) rather than being freed:
//! freeing could split a reserved region at the very moment the array is being replaced.

use core::fmt;
use core::mem::{MaybeUninit, size_of};

use crate::model::memmap::PHYSMEM_LIMIT;
use crate::model::mmzone::{MAX_NUMNODES, PAGE_SHIFT, PAGE_SIZE, pfn_to_phys};
use crate::port::platform::Platform;

/// Regions each array holds before it has to grow.
pub const INIT_MEMBLOCK_REGIONS: usize = 128;

/// One memblock region: `[base, base + size)` on node `nid`.
///
/// In the `reserved` array `nid` is the node of the memory the reservation was made for,
/// informational only; regions of different nodes are never merged in `memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemblockRegion {
    /// First byte.
    pub base: u64,
    /// Length in bytes, never 0.
    pub size: u64,
    /// Node id.
    pub nid: u8,
}

impl MemblockRegion {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
}

const EMPTY_REGION: MemblockRegion = MemblockRegion {
    base: 0,
    size: 0,
    nid: 0,
};

/// Which allocations a request accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocConstraint {
    /// Lowest acceptable pfn (the allocation starts at or above `min_pfn << PAGE_SHIFT`).
    pub min_pfn: u64,
    /// First unacceptable pfn (the allocation ends at or below `max_pfn << PAGE_SHIFT`).
    pub max_pfn: u64,
    /// The node the memory should come from; `None` for any node.
    pub nid: Option<usize>,
    /// With a node given: fail rather than fall back to another node.
    pub exact_nid: bool,
}

impl AllocConstraint {
    /// Anywhere below the current limit (and the physical limit), any node.
    pub const ANYWHERE: AllocConstraint = AllocConstraint {
        min_pfn: 0,
        max_pfn: u64::MAX >> PAGE_SHIFT,
        nid: None,
        exact_nid: false,
    };

    /// Inside `[min_pfn, max_pfn)`, any node.
    pub const fn pfn_range(min_pfn: u64, max_pfn: u64) -> AllocConstraint {
        AllocConstraint {
            min_pfn,
            max_pfn,
            nid: None,
            exact_nid: false,
        }
    }

    /// Inside SPARSEMEM section `section_nr` of sections of `1 << pfn_section_shift` pages
    /// (for a memmap that describes the section it lives in), any node.
    pub const fn in_section(section_nr: u64, pfn_section_shift: u32) -> AllocConstraint {
        AllocConstraint::pfn_range(
            section_nr << pfn_section_shift,
            (section_nr + 1) << pfn_section_shift,
        )
    }

    /// Prefer node `nid`; `exact` forbids falling back to other nodes.
    pub const fn on_node(self, nid: usize, exact: bool) -> AllocConstraint {
        AllocConstraint {
            nid: Some(nid),
            exact_nid: exact,
            ..self
        }
    }
}

/// Why a memblock operation failed. The allocator is left unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemblockError {
    /// No free range satisfies the request.
    NoMemory {
        /// Bytes requested.
        size: u64,
        /// Alignment requested.
        align: u64,
        /// The constraint.
        constraint: AllocConstraint,
    },
    /// A zero-byte allocation.
    ZeroSize,
    /// Alignment is not a power of two.
    BadAlign(u64),
    /// `base + size` overflows or exceeds the physical address limit.
    BadRange {
        /// Base address given.
        base: u64,
        /// Size given.
        size: u64,
    },
    /// A node id not below [`MAX_NUMNODES`].
    BadNode(usize),
    /// A region array is full and no memory could be found to grow it.
    ArrayFull {
        /// Regions the array held.
        regions: usize,
    },
}

impl fmt::Display for MemblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemblockError::NoMemory {
                size,
                align,
                constraint,
            } => {
                write!(
                    f,
                    "memblock: cannot allocate {size:#x} bytes aligned to {align:#x} in pfns [{:#x}, {:#x})",
                    constraint.min_pfn, constraint.max_pfn
                )?;
                match constraint.nid {
                    Some(nid) => write!(f, " on node {nid}"),
                    None => Ok(()),
                }
            }
            MemblockError::ZeroSize => f.write_str("memblock: zero-sized allocation"),
            MemblockError::BadAlign(a) => {
                write!(f, "memblock: alignment {a:#x} is not a power of two")
            }
            MemblockError::BadRange { base, size } => write!(
                f,
                "memblock: range base {base:#x} size {size:#x} overflows the physical address space"
            ),
            MemblockError::BadNode(nid) => write!(f, "memblock: node {nid} out of range"),
            MemblockError::ArrayFull { regions } => write!(
                f,
                "memblock: region array of {regions} entries is full and cannot grow"
            ),
        }
    }
}

/// A sorted array of disjoint regions, inline at first, later in allocated memory.
struct RegionArray {
    inline: [MemblockRegion; INIT_MEMBLOCK_REGIONS],
    /// Direct-map address of the grown array, or null while `inline` is in use.
    external: *mut MemblockRegion,
    cap: usize,
    cnt: usize,
    /// Whether adjacent regions of different nodes may merge (reserved: yes).
    merge_across_nodes: bool,
}

impl RegionArray {
    const fn new(merge_across_nodes: bool) -> RegionArray {
        RegionArray {
            inline: [EMPTY_REGION; INIT_MEMBLOCK_REGIONS],
            external: core::ptr::null_mut(),
            cap: INIT_MEMBLOCK_REGIONS,
            cnt: 0,
            merge_across_nodes,
        }
    }

    /// [`RegionArray::new`] written in place, region by region (no array temporary).
    ///
    /// # Safety
    ///
    /// `p` must be valid for writes of a `RegionArray` and suitably aligned.
    unsafe fn init_at(p: *mut RegionArray, merge_across_nodes: bool) {
        // SAFETY: the caller guarantees `p` is valid for writes; each field is written once.
        unsafe {
            let inline = core::ptr::addr_of_mut!((*p).inline).cast::<MemblockRegion>();
            for i in 0..INIT_MEMBLOCK_REGIONS {
                inline.add(i).write(EMPTY_REGION);
            }
            core::ptr::addr_of_mut!((*p).external).write(core::ptr::null_mut());
            core::ptr::addr_of_mut!((*p).cap).write(INIT_MEMBLOCK_REGIONS);
            core::ptr::addr_of_mut!((*p).cnt).write(0);
            core::ptr::addr_of_mut!((*p).merge_across_nodes).write(merge_across_nodes);
        }
    }

    fn storage(&self) -> &[MemblockRegion] {
        if self.external.is_null() {
            &self.inline
        } else {
            // SAFETY: `external` points to `cap` regions in memory memblock allocated (and
            // keeps reserved) for this array in `double`, reached through the direct map;
            // nothing else aliases it, and `&self` guarantees no concurrent mutation.
            unsafe { core::slice::from_raw_parts(self.external, self.cap) }
        }
    }

    fn storage_mut(&mut self) -> &mut [MemblockRegion] {
        if self.external.is_null() {
            &mut self.inline
        } else {
            // SAFETY: as in `storage`; `&mut self` makes this the only reference.
            unsafe { core::slice::from_raw_parts_mut(self.external, self.cap) }
        }
    }

    fn regions(&self) -> &[MemblockRegion] {
        &self.storage()[..self.cnt]
    }

    /// Index of the first region ending after `addr`.
    fn first_ending_after(&self, addr: u64) -> usize {
        self.regions().partition_point(|r| r.end() <= addr)
    }

    /// How many new entries inserting `[base, end)` can need at most.
    fn pieces_needed(&self, base: u64, end: u64) -> usize {
        let first = self.first_ending_after(base);
        let overlapping = self.regions()[first..]
            .iter()
            .take_while(|r| r.base < end)
            .count();
        overlapping + 1
    }

    /// Insert the parts of `[base, end)` not already covered, then merge neighbours.
    /// The caller guarantees room for [`RegionArray::pieces_needed`] more entries.
    fn insert(&mut self, base: u64, end: u64, nid: u8) {
        let mut cur = base;
        let mut i = self.first_ending_after(base);
        while cur < end {
            let next_base = self.regions().get(i).map_or(u64::MAX, |r| r.base);
            if next_base > cur {
                let piece_end = end.min(next_base);
                self.insert_at(
                    i,
                    MemblockRegion {
                        base: cur,
                        size: piece_end - cur,
                        nid,
                    },
                );
                i += 1;
                cur = piece_end;
            } else {
                cur = cur.max(self.regions()[i].end());
                i += 1;
            }
        }
        self.merge();
    }

    fn insert_at(&mut self, i: usize, r: MemblockRegion) {
        debug_assert!(self.cnt < self.cap);
        let cnt = self.cnt;
        let s = self.storage_mut();
        s.copy_within(i..cnt, i + 1);
        s[i] = r;
        self.cnt += 1;
    }

    fn merge(&mut self) {
        let cnt = self.cnt;
        let across = self.merge_across_nodes;
        let s = self.storage_mut();
        let mut out = 0;
        for i in 0..cnt {
            let r = s[i];
            if out > 0 {
                let prev = &mut s[out - 1];
                if prev.end() == r.base && (across || prev.nid == r.nid) {
                    prev.size += r.size;
                    continue;
                }
            }
            s[out] = r;
            out += 1;
        }
        self.cnt = out;
    }

    /// Remove `[base, end)`, splitting regions that straddle its ends. The caller guarantees
    /// room for one more entry.
    fn remove(&mut self, base: u64, end: u64) {
        let mut i = self.first_ending_after(base);
        while i < self.cnt {
            let r = self.regions()[i];
            if r.base >= end {
                break;
            }
            let keep_low = (r.base < base).then(|| MemblockRegion {
                size: base - r.base,
                ..r
            });
            let keep_high = (r.end() > end).then(|| MemblockRegion {
                base: end,
                size: r.end() - end,
                nid: r.nid,
            });
            match (keep_low, keep_high) {
                (Some(lo), Some(hi)) => {
                    self.storage_mut()[i] = lo;
                    self.insert_at(i + 1, hi);
                    return;
                }
                (Some(lo), None) => {
                    self.storage_mut()[i] = lo;
                    i += 1;
                }
                (None, Some(hi)) => {
                    self.storage_mut()[i] = hi;
                    return;
                }
                (None, None) => {
                    let cnt = self.cnt;
                    self.storage_mut().copy_within(i + 1..cnt, i);
                    self.cnt -= 1;
                }
            }
        }
    }

    fn contains(&self, addr: u64) -> bool {
        let i = self.first_ending_after(addr);
        self.regions().get(i).is_some_and(|r| r.base <= addr)
    }

    fn overlaps(&self, base: u64, end: u64) -> bool {
        let i = self.first_ending_after(base);
        self.regions().get(i).is_some_and(|r| r.base < end)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Memory,
    Reserved,
}

/// The early allocator. See the module documentation.
pub struct Memblock {
    memory: RegionArray,
    reserved: RegionArray,
    bottom_up: bool,
    current_limit: u64,
    /// First physical address memblock never accepts (`1 << max_physmem_bits`).
    phys_limit: u64,
}

// SAFETY: the raw pointers inside point to region arrays in memory memblock reserved for
// itself; they are only dereferenced through `&self`/`&mut self`, so Rust's aliasing rules
// on the `Memblock` value carry over to them. Nothing in them is tied to a thread.
unsafe impl Send for Memblock {}
// SAFETY: as above; `&Memblock` only reads.
unsafe impl Sync for Memblock {}

impl Default for Memblock {
    fn default() -> Self {
        Memblock::new()
    }
}

impl Memblock {
    /// An empty memblock: no memory, nothing reserved, top-down, no limit but x86_64's
    /// default physical one ([`PHYSMEM_LIMIT`]).
    pub const fn new() -> Memblock {
        Memblock {
            memory: RegionArray::new(false),
            reserved: RegionArray::new(true),
            bottom_up: false,
            current_limit: PHYSMEM_LIMIT,
            phys_limit: PHYSMEM_LIMIT,
        }
    }

    /// [`Memblock::new`], built in place in `slot` instead of returned by value (memblock
    /// is several KiB; the memory model builds it this way so that init runs on a small
    /// stack). `slot` needs no drop. Nothing at or above `phys_limit` (the architecture's
    /// `1 << max_physmem_bits`) is ever added, reserved or allocated.
    pub fn init_in(slot: &mut MaybeUninit<Memblock>, phys_limit: u64) -> &mut Memblock {
        let p = slot.as_mut_ptr();
        // SAFETY: `p` points to `slot`, valid for writes of a `Memblock`; every field is
        // written exactly once through raw pointers before `slot` is read as initialised.
        unsafe {
            RegionArray::init_at(core::ptr::addr_of_mut!((*p).memory), false);
            RegionArray::init_at(core::ptr::addr_of_mut!((*p).reserved), true);
            core::ptr::addr_of_mut!((*p).bottom_up).write(false);
            core::ptr::addr_of_mut!((*p).current_limit).write(phys_limit);
            core::ptr::addr_of_mut!((*p).phys_limit).write(phys_limit);
            slot.assume_init_mut()
        }
    }

    fn array(&mut self, which: Which) -> &mut RegionArray {
        match which {
            Which::Memory => &mut self.memory,
            Which::Reserved => &mut self.reserved,
        }
    }

    fn check_range(&self, base: u64, size: u64) -> Result<u64, MemblockError> {
        match base.checked_add(size) {
            Some(end) if end <= self.phys_limit => Ok(end),
            _ => Err(MemblockError::BadRange { base, size }),
        }
    }

    /// Register RAM `[base, base + size)` on node `nid` (`memblock_add_node`). The range is
    /// trimmed inward to whole pages; parts already registered are left as they are.
    pub fn add_node<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        base: u64,
        size: u64,
        nid: usize,
    ) -> Result<(), MemblockError> {
        if nid >= MAX_NUMNODES {
            return Err(MemblockError::BadNode(nid));
        }
        let end = self.check_range(base, size)?;
        let base = base.next_multiple_of(PAGE_SIZE);
        let end = end & !(PAGE_SIZE - 1);
        if base >= end {
            return Ok(());
        }
        self.add_range(platform, Which::Memory, base, end, nid as u8)
    }

    /// Mark `[base, base + size)` reserved (`memblock_reserve`). Reserving what is not RAM,
    /// or what is already reserved, is allowed and harmless.
    pub fn reserve<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        base: u64,
        size: u64,
    ) -> Result<(), MemblockError> {
        let end = self.check_range(base, size)?;
        if size == 0 {
            return Ok(());
        }
        let nid = self.nid_of(base).unwrap_or(0) as u8;
        self.add_range(platform, Which::Reserved, base, end, nid)
    }

    /// Release a reservation (`memblock_phys_free`): `[base, base + size)` becomes free again
    /// where it is RAM.
    pub fn free<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        base: u64,
        size: u64,
    ) -> Result<(), MemblockError> {
        let end = self.check_range(base, size)?;
        if size == 0 {
            return Ok(());
        }
        self.ensure_room(platform, Which::Reserved, 1)?;
        self.reserved.remove(base, end);
        Ok(())
    }

    fn add_range<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        which: Which,
        base: u64,
        end: u64,
        nid: u8,
    ) -> Result<(), MemblockError> {
        let needed = self.array(which).pieces_needed(base, end);
        self.ensure_room(platform, which, needed)?;
        self.array(which).insert(base, end, nid);
        Ok(())
    }

    fn ensure_room<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        which: Which,
        needed: usize,
    ) -> Result<(), MemblockError> {
        let arr = self.array(which);
        if arr.cnt + needed <= arr.cap {
            return Ok(());
        }
        self.double(platform, which, needed)
    }

    /// Grow an array into memory allocated from memblock (`memblock_double_array`).
    fn double<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        which: Which,
        needed: usize,
    ) -> Result<(), MemblockError> {
        // The new array's own reservation needs one entry in `reserved`; make sure that
        // entry exists before choosing memory, so the choice cannot be invalidated.
        if which == Which::Memory {
            self.ensure_room(platform, Which::Reserved, 1)?;
        }
        let arr = self.array(which);
        let (old_cnt, old_cap) = (arr.cnt, arr.cap);
        let mut new_cap = old_cap * 2;
        while new_cap < old_cnt + needed + 1 {
            new_cap *= 2;
        }
        let bytes = ((new_cap * size_of::<MemblockRegion>()) as u64).next_multiple_of(PAGE_SIZE);
        let phys = self
            .find_in_range(bytes, PAGE_SIZE, &AllocConstraint::ANYWHERE)
            .ok_or(MemblockError::ArrayFull { regions: old_cap })?;
        let new = platform.phys_to_virt(phys) as *mut MemblockRegion;
        let arr = self.array(which);
        // SAFETY: `[phys, phys + bytes)` is free RAM (in `memory`, not in `reserved`), so no
        // one else uses it; `phys_to_virt` gives its direct-map address, page aligned and
        // so aligned for `MemblockRegion`. `new_cap` regions fit in `bytes`. The old
        // storage is a different allocation (it is reserved, or inline), so the ranges
        // do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(arr.storage().as_ptr(), new, old_cnt);
        }
        arr.external = new;
        arr.cap = new_cap;
        // `reserved` now has room for this entry: either it was just doubled, or room was
        // made above.
        let nid = self.nid_of(phys).unwrap_or(0) as u8;
        let needed = self.reserved.pieces_needed(phys, phys + bytes);
        debug_assert!(self.reserved.cnt + needed <= self.reserved.cap);
        self.reserved.insert(phys, phys + bytes, nid);
        log::debug!(
            "memblock: {} array grown to {new_cap} regions at {phys:#x}",
            if which == Which::Memory {
                "memory"
            } else {
                "reserved"
            }
        );
        Ok(())
    }

    /// Allocate `size` bytes aligned to `align` satisfying `constraint`
    /// (`memblock_alloc_range_nid`); the range is reserved and its physical address
    /// returned. The memory is not touched (use [`Memblock::alloc_zeroed`] for zeroed
    /// memory). With a node given and `exact_nid` false, other nodes are tried when the
    /// node has no room.
    pub fn alloc<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        size: u64,
        align: u64,
        constraint: AllocConstraint,
    ) -> Result<u64, MemblockError> {
        if size == 0 {
            return Err(MemblockError::ZeroSize);
        }
        if !align.is_power_of_two() {
            return Err(MemblockError::BadAlign(align));
        }
        if let Some(nid) = constraint.nid
            && nid >= MAX_NUMNODES
        {
            return Err(MemblockError::BadNode(nid));
        }
        // Make room for the reservation first: growing the reserved array takes memory,
        // which must not be the range about to be chosen.
        self.ensure_room(platform, Which::Reserved, 2)?;
        let found = self.find_in_range(size, align, &constraint).or_else(|| {
            if constraint.nid.is_some() && !constraint.exact_nid {
                let any = AllocConstraint {
                    nid: None,
                    ..constraint
                };
                self.find_in_range(size, align, &any)
            } else {
                None
            }
        });
        let base = found.ok_or(MemblockError::NoMemory {
            size,
            align,
            constraint,
        })?;
        self.reserve(platform, base, size)?;
        Ok(base)
    }

    /// [`Memblock::alloc`], then zero the memory through the direct map.
    pub fn alloc_zeroed<P: Platform + ?Sized>(
        &mut self,
        platform: &P,
        size: u64,
        align: u64,
        constraint: AllocConstraint,
    ) -> Result<u64, MemblockError> {
        let base = self.alloc(platform, size, align, constraint)?;
        // SAFETY: `[base, base + size)` was free RAM and is now reserved for the caller, so
        // nothing else refers to it; `phys_to_virt` maps it (the direct map covers RAM).
        unsafe { core::ptr::write_bytes(platform.phys_to_virt(base), 0, size as usize) };
        Ok(base)
    }

    /// Find (without reserving) a free, aligned range satisfying `c`.
    fn find_in_range(&self, size: u64, align: u64, c: &AllocConstraint) -> Option<u64> {
        let lo = pfn_to_phys(c.min_pfn.min(self.phys_limit >> PAGE_SHIFT));
        let hi = pfn_to_phys(c.max_pfn.min(self.phys_limit >> PAGE_SHIFT)).min(self.current_limit);
        if lo >= hi || size > hi - lo {
            return None;
        }
        let mems = self.memory.regions();
        let res = self.reserved.regions();
        let node_ok = |m: &MemblockRegion| c.nid.is_none_or(|n| m.nid as usize == n);
        let fit_top = |gap_lo: u64, gap_hi: u64| -> Option<u64> {
            let cand = gap_hi.checked_sub(size)? & !(align - 1);
            (cand >= gap_lo).then_some(cand)
        };
        let fit_bottom = |gap_lo: u64, gap_hi: u64| -> Option<u64> {
            let cand = gap_lo.checked_next_multiple_of(align)?;
            (cand.checked_add(size)? <= gap_hi).then_some(cand)
        };
        if self.bottom_up {
            for m in mems.iter().filter(|m| node_ok(m)) {
                let (m_lo, m_hi) = (m.base.max(lo), m.end().min(hi));
                if m_lo >= m_hi {
                    continue;
                }
                let mut cur = m_lo;
                let mut j = self.reserved.first_ending_after(m_lo);
                while cur < m_hi {
                    let gap_hi = res.get(j).map_or(m_hi, |r| r.base.min(m_hi));
                    if gap_hi > cur
                        && let Some(a) = fit_bottom(cur, gap_hi)
                    {
                        return Some(a);
                    }
                    match res.get(j) {
                        Some(r) if r.base < m_hi => cur = cur.max(r.end()),
                        _ => break,
                    }
                    j += 1;
                }
            }
        } else {
            for m in mems.iter().rev().filter(|m| node_ok(m)) {
                let (m_lo, m_hi) = (m.base.max(lo), m.end().min(hi));
                if m_lo >= m_hi {
                    continue;
                }
                // Reserved regions starting below m_hi, walked downwards.
                let mut j = res.partition_point(|r| r.base < m_hi);
                let mut cur_hi = m_hi;
                loop {
                    let below = if j > 0 { Some(res[j - 1]) } else { None };
                    let gap_lo = below.map_or(m_lo, |r| r.end().max(m_lo));
                    if cur_hi > gap_lo
                        && let Some(a) = fit_top(gap_lo, cur_hi)
                    {
                        return Some(a);
                    }
                    match below {
                        Some(r) if r.end() > m_lo => {
                            cur_hi = cur_hi.min(r.base);
                            if cur_hi <= m_lo {
                                break;
                            }
                            j -= 1;
                        }
                        _ => break,
                    }
                }
            }
        }
        None
    }

    /// Allocate from the bottom up (`memblock_set_bottom_up`) instead of top-down.
    pub fn set_bottom_up(&mut self, enable: bool) {
        self.bottom_up = enable;
    }

    /// True when allocating bottom-up.
    pub fn bottom_up(&self) -> bool {
        self.bottom_up
    }

    /// Never allocate at or above `limit` (`memblock_set_current_limit`), e.g. the end of
    /// the direct map.
    pub fn set_current_limit(&mut self, limit: u64) {
        self.current_limit = limit.min(self.phys_limit);
    }

    /// The current allocation limit.
    pub fn current_limit(&self) -> u64 {
        self.current_limit
    }

    /// The RAM regions, sorted.
    pub fn memory(&self) -> &[MemblockRegion] {
        self.memory.regions()
    }

    /// The reserved regions, sorted.
    pub fn reserved(&self) -> &[MemblockRegion] {
        self.reserved.regions()
    }

    /// Total bytes of RAM (`memblock_phys_mem_size`).
    pub fn phys_mem_size(&self) -> u64 {
        self.memory().iter().map(|r| r.size).sum()
    }

    /// Total bytes reserved (including reservations of non-RAM).
    pub fn reserved_size(&self) -> u64 {
        self.reserved().iter().map(|r| r.size).sum()
    }

    /// True if the byte at `addr` is reserved (`memblock_is_reserved`).
    pub fn is_reserved(&self, addr: u64) -> bool {
        self.reserved.contains(addr)
    }

    /// True if any byte of `[base, base + size)` is reserved (`memblock_is_region_reserved`).
    pub fn is_region_reserved(&self, base: u64, size: u64) -> bool {
        size != 0 && self.reserved.overlaps(base, base.saturating_add(size))
    }

    /// True if the byte at `addr` is RAM (`memblock_is_memory`).
    pub fn is_memory(&self, addr: u64) -> bool {
        self.memory.contains(addr)
    }

    /// The node of the RAM at `addr`, if it is RAM.
    pub fn nid_of(&self, addr: u64) -> Option<usize> {
        let i = self.memory.first_ending_after(addr);
        self.memory()
            .get(i)
            .filter(|r| r.base <= addr)
            .map(|r| r.nid as usize)
    }

    /// The free ranges — RAM minus reservations — in address order, as `(base, end, nid)`
    /// byte ranges (`for_each_free_mem_range`).
    pub fn free_ranges(&self) -> FreeRanges<'_> {
        FreeRanges {
            mem: self.memory(),
            res: self.reserved(),
            mi: 0,
            ri: 0,
            cur: 0,
        }
    }

    /// The whole free pages: [`Memblock::free_ranges`] rounded inward to pfns, as
    /// `(start_pfn, end_pfn, nid)`, empty ranges skipped. These are the pages the buddy
    /// allocator receives.
    pub fn free_pfn_ranges(&self) -> impl Iterator<Item = (u64, u64, usize)> + '_ {
        self.free_ranges().filter_map(|(base, end, nid)| {
            let s = base.div_ceil(PAGE_SIZE);
            let e = end >> PAGE_SHIFT;
            (s < e).then_some((s, e, nid))
        })
    }
}

impl fmt::Debug for Memblock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memblock")
            .field("memory", &self.memory())
            .field("reserved", &self.reserved())
            .field("bottom_up", &self.bottom_up)
            .finish()
    }
}

/// Iterator over free byte ranges; see [`Memblock::free_ranges`].
pub struct FreeRanges<'a> {
    mem: &'a [MemblockRegion],
    res: &'a [MemblockRegion],
    mi: usize,
    ri: usize,
    cur: u64,
}

impl Iterator for FreeRanges<'_> {
    type Item = (u64, u64, usize);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(m) = self.mem.get(self.mi) {
            let start = self.cur.max(m.base);
            let end = m.end();
            if start >= end {
                self.mi += 1;
                continue;
            }
            while self.res.get(self.ri).is_some_and(|r| r.end() <= start) {
                self.ri += 1;
            }
            match self.res.get(self.ri) {
                Some(r) if r.base <= start => {
                    self.cur = r.end();
                }
                r => {
                    let free_end = r.map_or(end, |r| r.base.min(end));
                    self.cur = free_end;
                    return Some((start, free_end, m.nid as usize));
                }
            }
        }
        None
    }
}

impl core::error::Error for MemblockError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::sim::SimPlatform;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn setup() -> (SimPlatform, Memblock) {
        let p = SimPlatform::new(0, 128 * MIB, 1).unwrap();
        let mut mb = Memblock::new();
        mb.add_node(&p, MIB, 63 * MIB, 0).unwrap();
        mb.add_node(&p, 64 * MIB, 64 * MIB, 1).unwrap();
        (p, mb)
    }

    /// The physical limit is the architecture's: with 32 bits, nothing at or above 4 GiB
    /// is accepted, and allocations stay below it; the default limit accepts it.
    #[test]
    fn physical_limit_is_the_one_given() {
        let p = SimPlatform::new(0, 128 * MIB, 1).unwrap();
        let mut slot = MaybeUninit::uninit();
        let mb = Memblock::init_in(&mut slot, 1 << 32);
        assert_eq!(mb.current_limit(), 1 << 32);
        let high = (1u64 << 32) - MIB;
        assert_eq!(
            mb.add_node(&p, high, 2 * MIB, 0),
            Err(MemblockError::BadRange {
                base: high,
                size: 2 * MIB
            })
        );
        assert!(mb.reserve(&p, 1 << 32, 4096).is_err());
        mb.add_node(&p, MIB, 63 * MIB, 0).unwrap();
        mb.set_current_limit(u64::MAX);
        assert_eq!(mb.current_limit(), 1 << 32);
        let mut wide = Memblock::new();
        assert!(wide.reserve(&p, 1 << 32, 4096).is_ok());
    }

    #[test]
    fn top_down_bottom_up_and_constraints() {
        let (p, mut mb) = setup();
        assert_eq!(mb.memory().len(), 2, "different nodes never merge");
        let a = mb.alloc(&p, 4096, 4096, AllocConstraint::ANYWHERE).unwrap();
        assert_eq!(a, 128 * MIB - 4096);
        let b = mb.alloc(&p, 128, 64, AllocConstraint::ANYWHERE).unwrap();
        assert_eq!(b, 128 * MIB - 4096 - 128);
        assert_eq!(mb.reserved().len(), 1, "adjacent reservations merge");
        let c = mb
            .alloc(
                &p,
                8192,
                2 * MIB,
                AllocConstraint::pfn_range((16 * MIB) >> 12, (32 * MIB) >> 12),
            )
            .unwrap();
        assert_eq!(c, 30 * MIB);
        let d = mb
            .alloc(&p, 4096, 4096, AllocConstraint::ANYWHERE.on_node(0, true))
            .unwrap();
        assert_eq!(d, 64 * MIB - 4096);
        assert!(matches!(
            mb.alloc(&p, 4096, 4096, AllocConstraint::ANYWHERE.on_node(3, true)),
            Err(MemblockError::NoMemory { .. })
        ));
        assert!(
            mb.alloc(&p, 4096, 4096, AllocConstraint::ANYWHERE.on_node(3, false))
                .is_ok()
        );
        mb.set_bottom_up(true);
        assert_eq!(
            mb.alloc(&p, 4096, 4096, AllocConstraint::ANYWHERE).unwrap(),
            MIB
        );
        assert_eq!(
            mb.alloc(&p, 10, 1, AllocConstraint::ANYWHERE).unwrap(),
            MIB + 4096
        );
        assert_eq!(
            mb.alloc(&p, 0, 1, AllocConstraint::ANYWHERE),
            Err(MemblockError::ZeroSize)
        );
        assert_eq!(
            mb.alloc(&p, 1, 3, AllocConstraint::ANYWHERE),
            Err(MemblockError::BadAlign(3))
        );
        assert_eq!(
            mb.alloc(
                &p,
                1,
                1,
                AllocConstraint::ANYWHERE.on_node(MAX_NUMNODES, false)
            ),
            Err(MemblockError::BadNode(MAX_NUMNODES))
        );
        assert!(matches!(
            mb.alloc(&p, 200 * MIB, 4096, AllocConstraint::ANYWHERE),
            Err(MemblockError::NoMemory { .. })
        ));
        assert!(mb.is_reserved(d) && !mb.is_reserved(d - 1));
        assert_eq!(mb.nid_of(70 * MIB), Some(1));
        assert_eq!(mb.nid_of(0), None);
    }

    #[test]
    fn free_ranges_exclude_reservations() {
        let (p, mut mb) = setup();
        mb.reserve(&p, 0, 2 * MIB + 100).unwrap();
        mb.reserve(&p, 10 * MIB, MIB).unwrap();
        mb.reserve(&p, 63 * MIB, 2 * MIB).unwrap();
        let free: Vec<_> = mb.free_ranges().collect();
        assert_eq!(
            free,
            [
                (2 * MIB + 100, 10 * MIB, 0),
                (11 * MIB, 63 * MIB, 0),
                (65 * MIB, 128 * MIB, 1)
            ]
        );
        let pfns: Vec<_> = mb.free_pfn_ranges().collect();
        assert_eq!(pfns[0], (((2 * MIB) >> 12) + 1, (10 * MIB) >> 12, 0));
        // Freeing splits a reservation.
        mb.free(&p, 10 * MIB + 4096, 4096).unwrap();
        assert!(
            mb.free_ranges()
                .any(|r| r == (10 * MIB + 4096, 10 * MIB + 8192, 0))
        );
        assert_eq!(mb.phys_mem_size(), 127 * MIB);
    }

    #[test]
    fn region_arrays_grow() {
        let (p, mut mb) = setup();
        // Every other page of 8 MiB: 1024 disjoint reservations, 8x the inline capacity.
        for i in 0..1024u64 {
            mb.reserve(&p, 2 * MIB + i * 8192, 4096).unwrap();
        }
        let res = mb.reserved();
        assert!(res.len() >= 1024);
        assert!(
            res.windows(2)
                .all(|w| w[0].end() < w[1].base || w[0].end() == w[1].base)
        );
        let free_small = mb
            .free_ranges()
            .filter(|&(s, e, _)| s >= 2 * MIB && e <= 10 * MIB && e - s == 4096)
            .count();
        assert_eq!(free_small, 1023);
        // The grown arrays themselves are reserved, and allocation still works.
        let a = mb.alloc(&p, 4096, 4096, AllocConstraint::ANYWHERE).unwrap();
        assert!(mb.is_reserved(a));
        assert!(mb.reserved_size() >= 1024 * 4096 + 4096);
        // Memory regions grow too.
        for i in 0..300u64 {
            mb.add_node(&p, 200 * MIB + i * 8192, 4096, (i % 2) as usize)
                .unwrap();
        }
        assert_eq!(mb.memory().len(), 302);
    }
}
