//! The fragmentation scenario: movable memory carrying checksums, interleaved with
//! unmovable allocations, then half of the movable pages freed, scattered.
//!
//! This is the situation compaction exists for. Movable pages fill most of memory and are
//! freed one in two, so free memory is plentiful but no 2 MiB block is free: an order-9
//! allocation fails unless something moves pages. About one allocation in nine is
//! unmovable (kernel memory); the allocator's anti-fragmentation rules collect those in
//! their own pageblocks, which compaction can never empty ("pinned" pageblocks below).
//!
//! Every movable page lives in one anon region (`zonebuddy::movement::rmap`) and is only ever touched
//! through its virtual address there. Each carries a version number and eight check
//! words spread over the page, all derived from its index and version, so a page that
//! moved to the wrong frame, was copied partially, or was read while half-copied fails
//! [`Scenario::verify_page`]. After compaction every page must also still satisfy the
//! reverse map: its PTE names a frame whose `mapping`/`index` point back to it.
//!
//! The same scenario serves the in-kernel tests, the `make run` demo, the console's
//! `frag` command and the guest benchmark.

use alloc::{boxed::Box, vec::Vec};
use core::fmt::Write;

use spin::{Mutex, Once};
use zonebuddy::{
    model::mmzone::{NR_PAGE_ORDERS, PAGE_SIZE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType},
    movement::rmap::RegionId,
    movement::zpool::{ZError, ZHandle, ZPOOL_MAX_OBJECT, ZPool},
    page_alloc::gfp::{GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT, Gfp},
};

use crate::{memory::allocator, platform::KernelPlatform};

/// Bytes between two check words: eight per page.
const STRIDE: u64 = 512;
/// Byte offset of the version word (inside the first stride, after the first check word).
const VERSION_OFF: u64 = 8;

/// What [`fragment`] built.
#[derive(Clone, Copy, Debug, Default)]
pub struct FragSummary {
    /// Movable pages mapped (after the scattered frees).
    pub movable_pages: u64,
    /// Unmovable pages held.
    pub unmovable_pages: u64,
    /// Free pages after fragmenting.
    pub free_pages: u64,
    /// Free order-9-or-larger blocks after fragmenting.
    pub free_order9_blocks: u64,
}

/// A built scenario: the region, which of its pages are mapped, and the unmovable pages.
pub struct Scenario {
    /// The anon region holding every movable page.
    pub region: RegionId,
    /// First virtual address of the region.
    pub start: u64,
    /// Pages in the region (mapped or not).
    pub nr_pages: u64,
    /// The indices still mapped after fragmenting, ascending.
    pub kept: Vec<u64>,
    /// Direct-map addresses of the unmovable order-0 pages.
    unmovable: Vec<u64>,
    /// Direct-map addresses of order-9 blocks held so that none is left free.
    held_order9: Vec<u64>,
    seed: u64,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: cheap and good enough to make every word distinct.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Scenario {
    /// The check word `k` of page `index` at `version`.
    fn word(&self, index: u64, version: u64, k: u64) -> u64 {
        mix(self.seed ^ (index << 20) ^ (version << 4) ^ k)
    }

    /// Virtual address of page `index`.
    pub fn va(&self, index: u64) -> u64 {
        self.start + index * PAGE_SIZE
    }

    /// Write page `index` at `version` (version word and check words).
    ///
    /// Movable memory is touched with interrupts enabled only: a CPU that meets a
    /// migration entry waits in the page-fault handler for the migrating CPU, which may
    /// need this CPU to answer its TLB shootdown.
    pub fn write_page(&self, index: u64, version: u64) {
        let va = self.va(index);
        for k in 0..PAGE_SIZE / STRIDE {
            // SAFETY: `va` is a mapped page of this scenario's region (callers only pass
            // kept indices), owned by the scenario; the offsets stay inside the page.
            unsafe { ((va + k * STRIDE) as *mut u64).write_volatile(self.word(index, version, k)) };
        }
        // SAFETY: as above.
        unsafe { ((va + VERSION_OFF) as *mut u64).write_volatile(version) };
    }

    /// Check page `index`: its version word and every check word for that version.
    /// Returns the version.
    pub fn verify_page(&self, index: u64) -> Result<u64, &'static str> {
        let va = self.va(index);
        // SAFETY: as in write_page.
        let version = unsafe { ((va + VERSION_OFF) as *const u64).read_volatile() };
        for k in 0..PAGE_SIZE / STRIDE {
            // SAFETY: as in write_page.
            let w = unsafe { ((va + k * STRIDE) as *const u64).read_volatile() };
            if w != self.word(index, version, k) {
                return Err("movable page content corrupted (check word mismatch)");
            }
        }
        Ok(version)
    }

    /// Check every kept page's content and reverse map. Returns the pages checked.
    pub fn verify(&self) -> Result<u64, &'static str> {
        let a = allocator();
        let mapped = a
            .anon_region_check(self.region)
            .map_err(|_| "anon region check failed (reverse map inconsistent)")?;
        let mut n = 0;
        for &index in &self.kept {
            self.verify_page(index)?;
            let pfn = a
                .anon_region_pfn(self.region, index)
                .map_err(|_| "region handle went stale")?
                .ok_or("a kept page is not mapped")?;
            let page = a.pfn_to_page(pfn).ok_or("mapped pfn has no struct page")?;
            if a.page_anon_address(page) != Some(self.va(index)) {
                return Err("reverse map of a mapped page does not point back to its address");
            }
            n += 1;
        }
        if n != mapped {
            return Err("region maps pages the scenario did not keep");
        }
        Ok(n)
    }

    /// Build the scenario: fill at least `movable_pct`% of free memory with movable pages,
    /// allocating one unmovable page after every `unmovable_every` movable ones, and go on
    /// filling until no free block of order >= 9 is left; then, when `zap_half`, zap the
    /// movable pages chosen by a coin toss on their frame number (about half, scattered
    /// with no pattern: a 2 MiB block becomes free only if all of its pages are zapped,
    /// which never happens in practice). A regular pattern (say every odd pfn) would be
    /// adversarial to the free scanner, which samples pfns at a growing stride after
    /// blocks without free pages, exactly as Linux's does.
    ///
    /// Filling can stop at the watermark with a few 2 MiB blocks still free (the
    /// allocator keeps its reserve in whatever blocks it has, and lowmem_reserve keeps
    /// movable requests out of the DMA zone). Those blocks are then taken as unmovable
    /// order-9 allocations, so that afterwards no order-9 block is free and only moving
    /// pages can make one.
    pub fn build(
        movable_pct: u64,
        unmovable_every: u64,
        zap_half: bool,
        seed: u64,
    ) -> Result<Scenario, &'static str> {
        let a = allocator();
        a.drain_all_pages();
        let free = a.nr_free_pages();
        let target = free * movable_pct / 100;
        let (region, start) = new_region(free)?;
        let mut s = Scenario {
            region,
            start,
            nr_pages: 0,
            // Room for every page the fill can map, taken now: once memory is full, the
            // heap could not grow (the zap below pushes while memory is at the watermark).
            kept: Vec::with_capacity(free as usize),
            unmovable: Vec::with_capacity((free / unmovable_every.max(1)) as usize + 64),
            held_order9: Vec::new(),
            seed,
        };
        let no_order9_free = || {
            free_blocks_per_order()[PAGEBLOCK_ORDER as usize..]
                .iter()
                .all(|&n| n == 0)
        };
        let mut index = 0;
        while index < free {
            if index >= target && index.is_multiple_of(PAGEBLOCK_NR_PAGES) && no_order9_free() {
                break;
            }
            if a.anon_region_populate(region, index, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN)
                .is_err()
            {
                break;
            }
            s.nr_pages = index + 1;
            if unmovable_every > 0 && index % unmovable_every == unmovable_every - 1 {
                match a.get_free_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
                    Some(addr) => s.unmovable.push(addr),
                    None => break,
                }
            }
            index += 1;
        }
        if s.nr_pages < target {
            s.release();
            return Err("out of memory before 80% of free memory was filled");
        }
        // Pages still on per-CPU lists are invisible to the buddy lists the fill loop
        // looked at; back in the buddy they can complete a 2 MiB block.
        a.drain_all_pages();
        s.hold_free_order9();
        let mut kept = core::mem::take(&mut s.kept);
        if let Err(_e) = a.anon_region_zap_range(region, 0, s.nr_pages, &mut |index, pfn| {
            let zap = zap_half && mix(seed ^ pfn.rotate_left(32)) & 1 == 1;
            if !zap {
                kept.push(index);
            }
            zap
        }) {
            s.release();
            return Err("zapping movable pages failed");
        }
        s.kept = kept;
        for &index in &s.kept {
            s.write_page(index, 0);
        }
        a.drain_all_pages();
        // A pageblock whose few movable pages were all zapped is whole again (rare, but the
        // odds are not nil for a block the fill left mostly free): hold it too.
        s.hold_free_order9();
        Ok(s)
    }

    /// Take every free block of order >= 9 as an unmovable GFP_ATOMIC allocation. Each
    /// zone is asked with its own gfp, so lowmem_reserve (which keeps the lower zones from
    /// movable requests) does not hide a free block.
    fn hold_free_order9(&mut self) {
        self.hold_free_order9_with(Gfp::empty());
    }

    /// [`Scenario::hold_free_order9`] with `extra` gfp bits added to every request.
    fn hold_free_order9_with(&mut self, extra: Gfp) -> u64 {
        let a = allocator();
        let before = self.held_order9.len();
        for zone_gfp in [Gfp::empty(), Gfp::DMA32, Gfp::DMA] {
            while let Some(addr) =
                a.get_free_pages(GFP_ATOMIC | extra | zone_gfp | Gfp::NOWARN, PAGEBLOCK_ORDER)
            {
                self.held_order9.push(addr);
            }
        }
        (self.held_order9.len() - before) as u64
    }

    /// Order-9 blocks taken as unmovable: left free where filling stopped at the watermark,
    /// or made whole again by the zap.
    pub fn held_order9_blocks(&self) -> u64 {
        self.held_order9.len() as u64
    }

    /// Movable pages still mapped.
    pub fn movable_pages(&self) -> u64 {
        self.kept.len() as u64
    }

    /// Unmovable pages held.
    pub fn unmovable_pages(&self) -> u64 {
        self.unmovable.len() as u64
    }

    /// Free everything.
    pub fn release(&mut self) {
        let a = allocator();
        let _ = a.anon_region_destroy(self.region);
        for addr in self.unmovable.drain(..) {
            let _ = a.free_pages_virt(addr, 0);
        }
        for addr in self.held_order9.drain(..) {
            let _ = a.free_pages_virt(addr, PAGEBLOCK_ORDER);
        }
    }
}

/// Where free memory is, pageblock by pageblock (pcp lists drained first).
#[derive(Clone, Copy, Debug, Default)]
pub struct FreeLayout {
    /// Free pages in total.
    pub free: u64,
    /// Free pages in blocks of order >= pageblock_order.
    pub free_in_order9: u64,
    /// Free order >= 9 blocks, counted in pageblocks.
    pub order9_blocks: u64,
    /// Free pages in pageblocks that hold an unmovable or reserved page (compaction cannot
    /// empty those).
    pub free_in_pinned: u64,
    /// Pageblocks holding an unmovable or reserved page.
    pub pinned_blocks: u64,
}

impl FreeLayout {
    /// Free pages compaction could gather into order-9 blocks.
    pub fn eligible(&self) -> u64 {
        self.free - self.free_in_pinned
    }

    /// The fraction (in thousandths) of eligible free memory that is in order-9 blocks.
    pub fn order9_permille(&self) -> u64 {
        (self.free_in_order9 * 1000)
            .checked_div(self.eligible())
            .unwrap_or(0)
    }
}

/// Walk every populated zone's pageblocks and classify free memory. Reads page flags
/// without the zone lock: call it when nothing else allocates (tests, the demo).
pub fn free_layout() -> FreeLayout {
    let a = allocator();
    a.drain_all_pages();
    let mut l = FreeLayout::default();
    for z in a.model().nodes().flat_map(|n| n.populated_zones()) {
        let mut block = z.zone_start_pfn() & !(PAGEBLOCK_NR_PAGES - 1);
        while block < z.zone_end_pfn() {
            let (mut free, mut pinned, mut pfn) = (0, false, block);
            while pfn < block + PAGEBLOCK_NR_PAGES {
                let Some(page) = a.pfn_to_page(pfn).filter(|_| z.zone_spans_pfn(pfn)) else {
                    pfn += 1;
                    continue;
                };
                if page.test_flag(zonebuddy::model::page::PageFlags::BUDDY) {
                    let order = page.buddy_order();
                    let n = 1u64 << order;
                    free += n.min(block + PAGEBLOCK_NR_PAGES - pfn);
                    if order >= PAGEBLOCK_ORDER && pfn == block {
                        l.free_in_order9 += n.min(PAGEBLOCK_NR_PAGES);
                        l.order9_blocks += 1;
                    }
                    pfn += n;
                    continue;
                }
                if !page.is_anon() {
                    pinned = true;
                }
                pfn += 1;
            }
            l.free += free;
            if pinned {
                l.free_in_pinned += free;
                l.pinned_blocks += 1;
            }
            block += PAGEBLOCK_NR_PAGES;
        }
    }
    l
}

/// The current scenario (console and demo).
static CURRENT: Mutex<Option<Scenario>> = Mutex::new(None);

/// Free order-N blocks summed over every zone, per order.
pub fn free_blocks_per_order() -> [u64; NR_PAGE_ORDERS] {
    free_blocks_per_order_below(zonebuddy::ZoneType::Movable, true)
}

/// Free blocks per order in the zones up to `highest` (inclusive or not): what requests
/// of that reach can find. Kernel allocations never reach ZONE_MOVABLE, so a test about
/// them counts `free_blocks_per_order_below(ZoneType::Movable, false)`.
pub fn free_blocks_per_order_below(
    highest: zonebuddy::ZoneType,
    inclusive: bool,
) -> [u64; NR_PAGE_ORDERS] {
    let a = allocator();
    let mut out = [0; NR_PAGE_ORDERS];
    for n in a.model().nodes() {
        for zt in n
            .populated_zones()
            .map(|z| z.zone_type)
            .filter(|&zt| zt < highest || (inclusive && zt == highest))
            .collect::<Vec<_>>()
        {
            if let Some(s) = a.zone_snapshot(n.node_id, zt) {
                for (o, slot) in out.iter_mut().enumerate() {
                    *slot += s.nr_free.iter().map(|t| t[o]).sum::<u64>();
                }
            }
        }
    }
    out
}

/// A fresh anon region of `pages` pages and its first virtual address.
fn new_region(pages: u64) -> Result<(RegionId, u64), &'static str> {
    let a = allocator();
    let region = a
        .anon_region_create(pages)
        .map_err(|_| "no room for the scenario's anon region")?;
    let (start, _) = a
        .anon_region_span(region)
        .map_err(|_| "fresh region went stale")?;
    Ok((region, start))
}

/// Build the scenario (replacing any earlier one), printing progress to `out`.
pub fn fragment(out: &mut dyn Write) -> Result<FragSummary, &'static str> {
    release();
    let _ = writeln!(
        out,
        "frag: filling free memory with movable pages (at least 80%; 1 unmovable page per 8) until no 2 MiB block is free, then freeing every other movable page"
    );
    // kcompactd would undo the fragmentation while it is being built (its proactive
    // rounds run on another CPU): it is paused for the build and resumes afterwards, so
    // whatever follows (`compact`, kcompactd's own rounds) starts from the fragmented state.
    let was_enabled = crate::kcompactd::set_enabled(false);
    let built = Scenario::build(80, 8, true, crate::arch::time::rdtsc());
    let l = free_layout();
    crate::kcompactd::set_enabled(was_enabled);
    let s = built?;
    let summary = FragSummary {
        movable_pages: s.movable_pages(),
        unmovable_pages: s.unmovable_pages(),
        free_pages: l.free,
        free_order9_blocks: l.order9_blocks,
    };
    let _ = writeln!(
        out,
        "frag: {} movable pages mapped, {} unmovable pages held, {} pages free, {} free order-9 blocks",
        summary.movable_pages,
        summary.unmovable_pages,
        summary.free_pages,
        summary.free_order9_blocks
    );
    *CURRENT.lock() = Some(s);
    Ok(summary)
}

/// Verify every checksum and reverse map of the current scenario; the number of pages
/// checked, or what was wrong.
pub fn verify() -> Result<u64, &'static str> {
    CURRENT
        .lock()
        .as_ref()
        .ok_or("no scenario built (run frag first)")?
        .verify()
}

/// Free everything the scenario holds.
pub fn release() {
    if let Some(mut s) = CURRENT.lock().take() {
        s.release();
    }
}

/// Free memory the demo's scenario works over, at most: 512 MiB, the default `make run`
/// machine. Filling and compacting all of a 6 GiB machine takes many minutes under QEMU's
/// emulation, and tells the same story.
pub const DEMO_MAX_FREE_PAGES: u64 = (512 << 20) / PAGE_SIZE;

/// Take free memory above [`DEMO_MAX_FREE_PAGES`] out of play, so the demo's scenario and
/// compaction cover a bounded amount of memory: every free block of order >= 9 is taken
/// (past the watermarks, so no reserve block stays free), highest zones first as any
/// kernel allocation would, then the last ones taken (the lowest zones) are given back
/// until the bound is free again. Returns the blocks kept aside.
fn set_aside_excess(out: &mut dyn Write) -> Vec<(u64, u32)> {
    let a = allocator();
    a.drain_all_pages();
    let free = a.nr_free_pages();
    let mut held = Vec::new();
    if free <= DEMO_MAX_FREE_PAGES {
        return held;
    }
    held.reserve((free >> PAGEBLOCK_ORDER) as usize + 64);
    let gfp = GFP_NOWAIT | Gfp::MEMALLOC | Gfp::NOWARN;
    for order in [zonebuddy::model::mmzone::MAX_PAGE_ORDER, PAGEBLOCK_ORDER] {
        for zone in [Gfp::empty(), Gfp::DMA32, Gfp::DMA] {
            while held.len() < held.capacity() {
                match a.get_free_pages(gfp | zone, order) {
                    Some(addr) => held.push((addr, order)),
                    None => break,
                }
            }
        }
    }
    // Give back the lowest blocks, the bound's worth. What was left free (pieces below
    // order 9, the DMA zone) comes on top: much of it is out of movable requests' reach
    // (lowmem_reserve, watermarks), and the scenario fills 80% of all free memory.
    // In place: a stable sort takes a scratch buffer from the heap, and with every block
    // of order >= 9 held the heap cannot grow (that failed the 6 GiB demo as soon as the
    // memmaps moved to the node's top and the heap had no slack left).
    held.sort_unstable_by_key(|&(addr, order)| {
        (core::cmp::Reverse(order), core::cmp::Reverse(addr))
    });
    let mut given_back = 0u64;
    while given_back < DEMO_MAX_FREE_PAGES {
        let Some((addr, order)) = held.pop() else {
            break;
        };
        let _ = a.free_pages_virt(addr, order);
        given_back += 1 << order;
    }
    a.drain_all_pages();
    let mib = |pages: u64| (pages * PAGE_SIZE) >> 20;
    let _ = writeln!(
        out,
        "demo: bounded to keep it short under emulation: {} MiB of the {} MiB free set aside (held as blocks of order >= 9 from the highest addresses down); the scenario and compaction work over the other {} MiB",
        mib(held.iter().map(|&(_, o)| 1u64 << o).sum()),
        mib(free),
        mib(a.nr_free_pages())
    );
    held
}

/// The fragmentation story for `make run`: fragment, show that an order-9 allocation
/// fails without compaction, compact, show the result, verify every page, clean up.
/// On a machine with more than [`DEMO_MAX_FREE_PAGES`] free, the excess is set aside first
/// (and the output says so).
pub fn demo(out: &mut dyn Write) -> Result<(), &'static str> {
    let set_aside = set_aside_excess(out);
    let result = demo_bounded(out, !set_aside.is_empty());
    let a = allocator();
    for (addr, order) in set_aside {
        let _ = a.free_pages_virt(addr, order);
    }
    result
}

fn demo_bounded(out: &mut dyn Write, bounded: bool) -> Result<(), &'static str> {
    let a = allocator();
    let _ = writeln!(out, "\n== fragmentation and compaction ==");
    // Kernel objects that compaction may move too: a zpool, thinned out and spread over
    // memory before the scenario fills around it.
    let pool = zpool();
    let pool_migrated0 = pool.stats().migrated;
    let objects = zpool_fill_and_thin(pool, ZPOOL_OBJECTS, 80, 0x2b00).unwrap_or_default();
    // kcompactd stays paused until the order-9 attempt below: that line is about memory
    // without compaction, and kcompactd (woken by the failure, on another CPU) would
    // otherwise race it.
    let kcompactd_was = crate::kcompactd::set_enabled(false);
    let summary = fragment(out);
    let summary = summary.inspect_err(|_| {
        crate::kcompactd::set_enabled(kcompactd_was);
    })?;
    if bounded {
        // With memory set aside, a zone can sit near its watermark with a free order-9
        // block that GFP_ATOMIC may not take: take those past the watermarks, so that no
        // order-9 block is free, as the scenario intends.
        let extra = CURRENT
            .lock()
            .as_mut()
            .map_or(0, |s| s.hold_free_order9_with(Gfp::MEMALLOC));
        if extra > 0 {
            let _ = writeln!(
                out,
                "demo: {extra} more free order-9 blocks held (past the watermarks)"
            );
        }
    }
    let _ = writeln!(out, "buddyinfo after fragmenting:");
    let _ = a.write_buddyinfo(out);
    let before = free_layout();
    let failed = a
        .alloc_pages(GFP_NOWAIT | Gfp::MOVABLE, PAGEBLOCK_ORDER)
        .map(|p| {
            let _ = a.free_pages(p, PAGEBLOCK_ORDER);
        })
        .is_none();
    crate::kcompactd::set_enabled(kcompactd_was);
    // The scenario filled memory until no order-9 block was free and took any left as
    // unmovable allocations, so this fails by construction: say so rather than present
    // it as a finding.
    let held = CURRENT
        .lock()
        .as_ref()
        .map_or(0, Scenario::held_order9_blocks);
    let _ = writeln!(
        out,
        "order-9 allocation without compaction: {} (by construction: the scenario fills memory until no order-9 block is free and holds those left ({held}), so only moving pages can make one)",
        if failed { "fails" } else { "succeeded" }
    );
    // (After the check above: kcompactd runs again once `fragment` returns, so the
    // check comes first.)
    let pool_pages0 = movable_ops_pfns();
    let _ = writeln!(
        out,
        "zpool: {} objects kept by handle in {} movable pages",
        objects.len(),
        pool_pages0.len()
    );
    let t0 = crate::arch::time::now_ns();
    let stats = a.compact_memory();
    let us = (crate::arch::time::now_ns() - t0) / 1000;
    let after = free_layout();
    let _ = writeln!(
        out,
        "compact_memory: {} pages migrated ({} failed) in {} ms; migrate scanner {} pages, free scanner {} pages",
        stats.migrated,
        stats.failed,
        us / 1000,
        stats.migrate_scanned,
        stats.free_scanned
    );
    let _ = writeln!(out, "buddyinfo after compaction:");
    let _ = a.write_buddyinfo(out);
    let _ = writeln!(
        out,
        "free memory in order-9 blocks: {} of {} eligible pages before, {} of {} after ({}.{}%; {} pages sit in {} pageblocks pinned by unmovable pages)",
        before.free_in_order9,
        before.eligible(),
        after.free_in_order9,
        after.eligible(),
        after.order9_permille() / 10,
        after.order9_permille() % 10,
        after.free_in_pinned,
        after.pinned_blocks
    );
    let checked = verify()?;
    let _ = writeln!(
        out,
        "verified {checked} movable pages: checksums intact, every reverse map points back ({} movable, {} unmovable pages held)",
        summary.movable_pages, summary.unmovable_pages
    );
    release();
    let pool_pages1 = movable_ops_pfns();
    let moved = pool_pages0
        .iter()
        .filter(|p| pool_pages1.binary_search(p).is_err())
        .count();
    let pool_checked = zpool_verify(pool, &objects);
    let left = zpool_release(pool, objects);
    let _ = writeln!(
        out,
        "zpool: compaction moved {} pool pages through movable_operations ({} of its {} frames changed); {} objects read back intact by handle; {} pages left after freeing them",
        pool.stats().migrated - pool_migrated0,
        moved,
        pool_pages0.len(),
        pool_checked?,
        left
    );
    Ok(())
}

// ---- The movable object store under compaction ----
//
// `zonebuddy::movement::zpool` is the kernel's user of `movable_operations`: objects are named by handles,
// so compaction may move the pages holding them (copying each page and rewriting its
// handles under the pool's lock). The demo and the compaction suite store objects,
// thin them out (so the pool's pages are scattered and partly empty), compact, and check
// that pages moved and every object still reads back intact through its handle.

/// Objects the kernel's pool can hold at once. The handle table (24 bytes an entry) is
/// part of the pool, which `Box::new` builds on the stack before moving it to the heap,
/// so it stays small.
pub const ZPOOL_OBJECTS: usize = 1024;
/// The kernel's movable object store.
pub type KernelZPool = ZPool<'static, KernelPlatform, ZPOOL_OBJECTS>;

static ZPOOL: Once<&'static KernelZPool> = Once::new();

/// The kernel's pool, created (and leaked: pool pages point at it) on first use.
pub fn zpool() -> &'static KernelZPool {
    ZPOOL.call_once(|| Box::leak(Box::new(ZPool::new(allocator()))))
}

/// One stored object: its handle and what it must read back as.
#[derive(Clone, Copy, Debug)]
pub struct ZObject {
    /// The object's handle.
    pub handle: ZHandle,
    /// Seed of its bytes.
    pub key: u64,
    /// Its length.
    pub len: usize,
}

/// The bytes of object `key`: every byte derived from the key and its offset.
fn zobject_bytes(key: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (mix(key ^ (i as u64 / 8)) >> ((i % 8) * 8)) as u8;
    }
}

/// Most filler pages [`zpool_fill_and_thin`] holds at once (1 GiB: its list of them must
/// fit the heap's largest block).
const ZPOOL_MAX_FILLER: u64 = 1 << 18;

/// Store `count` objects of 24 to 2000 bytes in `pool`, then free three in four of
/// them, so the pool's pages are left partly used; returns the survivors.
///
/// Between stores, movable filler pages are allocated (and all freed at the end), about
/// `spread_pct`% of free memory in all: the pool's pages are then spread over that much
/// memory instead of sitting in one or two pageblocks wherever the allocator had room,
/// so compaction's migration scanner, which moves pages from the bottom of a zone to
/// its top, meets some of them whatever the allocator's placement.
pub fn zpool_fill_and_thin(
    pool: &'static KernelZPool,
    count: usize,
    spread_pct: u64,
    seed: u64,
) -> Result<Vec<ZObject>, ZError> {
    let a = allocator();
    let filler_total = (a.nr_free_pages() * spread_pct / 100).min(ZPOOL_MAX_FILLER);
    let per_object = filler_total / count.max(1) as u64;
    let mut filler: Vec<u64> = Vec::with_capacity(filler_total as usize);
    let mut buf = [0u8; ZPOOL_MAX_OBJECT];
    let mut all = Vec::with_capacity(count);
    let mut result = Ok(());
    for i in 0..count as u64 {
        let key = mix(seed ^ i);
        let len = 24 + (key % 1977) as usize;
        zobject_bytes(key, &mut buf[..len]);
        match pool.store(&buf[..len]) {
            Ok(handle) => all.push(ZObject { handle, key, len }),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        for _ in 0..per_object {
            match a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN, 0) {
                Some(p) => filler.push(a.page_to_pfn(p)),
                None => break,
            }
        }
    }
    for pfn in filler {
        if let Some(p) = a.pfn_to_page(pfn) {
            let _ = a.free_pages(p, 0);
        }
    }
    if let Err(e) = result {
        for o in all {
            let _ = pool.free(o.handle);
        }
        return Err(e);
    }
    let mut kept = Vec::with_capacity(count / 4 + 1);
    for o in all {
        if mix(o.key ^ seed) % 4 == 0 {
            kept.push(o);
        } else {
            pool.free(o.handle)?;
        }
    }
    Ok(kept)
}

/// Read every object back through its handle; the number checked, or the first bad one.
pub fn zpool_verify(pool: &KernelZPool, objects: &[ZObject]) -> Result<u64, &'static str> {
    let (mut got, mut want) = ([0u8; ZPOOL_MAX_OBJECT], [0u8; ZPOOL_MAX_OBJECT]);
    for o in objects {
        let len = pool
            .load(o.handle, &mut got)
            .map_err(|_| "a zpool handle went bad")?;
        zobject_bytes(o.key, &mut want[..o.len]);
        if len != o.len || got[..len] != want[..len] {
            return Err("a zpool object changed");
        }
    }
    Ok(objects.len() as u64)
}

/// Frames owned by a `movable_operations` user (the pool's pages), ascending.
pub fn movable_ops_pfns() -> Vec<u64> {
    let a = allocator();
    let mut out = Vec::new();
    for z in a.model().nodes().flat_map(|n| n.populated_zones()) {
        for pfn in z.zone_start_pfn()..z.zone_end_pfn() {
            if a.pfn_to_page(pfn).is_some_and(|p| p.is_movable_ops()) {
                out.push(pfn);
            }
        }
    }
    out
}

/// Free every object and give the empty pages back; the pages the pool still holds.
pub fn zpool_release(pool: &KernelZPool, objects: Vec<ZObject>) -> u64 {
    for o in objects {
        let _ = pool.free(o.handle);
    }
    pool.shrink();
    pool.stats().pages
}

/// `core::fmt::Write` onto the serial console (what [`demo`] prints through at boot).
pub struct SerialOut;

impl Write for SerialOut {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        kprint!("{s}");
        Ok(())
    }
}

impl Scenario {
    /// A bounded scenario confined to one zone, for machines too large to fill: `pages`
    /// movable pages, each of which must land in zone `zone` (an error otherwise), then
    /// about half of them zapped, chosen by a coin toss on their frame number as in
    /// [`Scenario::build`] (not every other page: the faults map consecutive indices to
    /// consecutive frames, and a free page at every odd pfn is invisible to a free scanner
    /// that samples every 32nd pfn after empty blocks), and the others written at version 0. No
    /// unmovable pages are taken. [`Scenario::verify`] and [`Scenario::release`] work as
    /// for [`Scenario::build`].
    pub fn build_in_zone(zone: ZoneType, pages: u64, seed: u64) -> Result<Scenario, &'static str> {
        let a = allocator();
        let mut s = Scenario::empty(pages, seed)?;
        for index in 0..pages {
            let landed = a
                .anon_region_populate(s.region, index, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN)
                .map_err(|_| "out of memory populating the zone scenario")
                .and_then(|pfn| {
                    a.pfn_to_page(pfn)
                        .and_then(|p| p.zone_type())
                        .ok_or("a mapped frame has no zone")
                });
            s.nr_pages = index + 1;
            match landed {
                Ok(zt) if zt == zone => {}
                Ok(_) => {
                    s.release();
                    return Err("a movable page landed outside the zone under test");
                }
                Err(e) => {
                    s.release();
                    return Err(e);
                }
            }
        }
        s.zap_and_write(true)
    }

    /// A scenario with a fresh region of `pages` pages and nothing mapped yet.
    fn empty(pages: u64, seed: u64) -> Result<Scenario, &'static str> {
        let (region, start) = new_region(pages)?;
        Ok(Scenario {
            region,
            start,
            nr_pages: 0,
            kept: Vec::new(),
            unmovable: Vec::new(),
            held_order9: Vec::new(),
            seed,
        })
    }

    /// Zap about half of the mapped pages (all kept unless `zap_half`), chosen by a coin
    /// toss on their frame number, and write the others at version 0.
    fn zap_and_write(mut self, zap_half: bool) -> Result<Scenario, &'static str> {
        let a = allocator();
        let mut kept = Vec::with_capacity(self.nr_pages as usize / 2 + 1);
        let seed = self.seed;
        if a.anon_region_zap_range(self.region, 0, self.nr_pages, &mut |index, pfn| {
            let zap = zap_half && mix(seed ^ pfn.rotate_left(32)) & 1 == 1;
            if !zap {
                kept.push(index);
            }
            zap
        })
        .is_err()
        {
            self.release();
            return Err("zapping movable pages failed");
        }
        self.kept = kept;
        for &index in &self.kept {
            self.write_page(index, 0);
        }
        a.drain_all_pages();
        Ok(self)
    }
}

impl Scenario {
    /// Movable pages spread over the whole of memory, with a chosen density per 4 MiB
    /// block, in bounded time on any machine size: every free MAX_ORDER block that a
    /// movable request can get is taken, then they are given back one at a time, each
    /// followed by `per_block(pfn)` anon page faults (pfn: the block's first frame), which
    /// land mostly in the block just given back. Then, when `zap_half`, about half of the
    /// pages are zapped by a coin toss on their frame number (as in [`Scenario::build`]),
    /// and the others are written at version 0. No unmovable pages are taken.
    pub fn build_spread(
        per_block: &dyn Fn(u64) -> u64,
        zap_half: bool,
        seed: u64,
    ) -> Result<Scenario, &'static str> {
        let a = allocator();
        a.drain_all_pages();
        let free = a.nr_free_pages();
        let mut s = Scenario::empty(free, seed)?;
        let order = zonebuddy::model::mmzone::MAX_PAGE_ORDER;
        let take = (GFP_HIGHUSER_MOVABLE | Gfp::NOWARN).difference(Gfp::DIRECT_RECLAIM);
        let mut held: Vec<(u64, u64)> = Vec::with_capacity((free >> order) as usize + 64);
        while held.len() < held.capacity() {
            let Some(addr) = a.get_free_pages(take, order) else {
                break;
            };
            let pfn = a.virt_to_page(addr).map_or(0, |p| a.page_to_pfn(p));
            held.push((addr, pfn));
        }
        let mut index = 0;
        let mut failed = false;
        for &(addr, pfn) in &held {
            let _ = a.free_pages_virt(addr, order);
            for _ in 0..per_block(pfn) {
                if failed
                    || a.anon_region_populate(s.region, index, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN)
                        .is_err()
                {
                    failed = true;
                    break;
                }
                index += 1;
                s.nr_pages = index;
            }
        }
        if failed {
            s.release();
            return Err("out of memory populating the spread scenario");
        }
        a.drain_all_pages();
        s.zap_and_write(zap_half)
    }
}
