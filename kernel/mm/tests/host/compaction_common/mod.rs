//! Shared pieces of the compaction tests: simulated machines, memory filled with
//! checksummed anon pages interleaved with unmovable allocations and then fragmented, and
//! measurements of where the free memory is.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{
    MAX_PAGE_ORDER, PAGE_SIZE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
};
use zonebuddy::model::page::Page;
use zonebuddy::movement::rmap::{RegionError, RegionId};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::{SimAllocator, qemu_e820};

pub const MIB: u64 = 1 << 20;
/// Pages per anon region.
pub const REGION_PAGES: u64 = 4096;

/// A QEMU-like machine with `mib` MiB of RAM (zones DMA and DMA32) and `cpus` CPUs.
pub fn machine(mib: u64, cpus: usize) -> SimAllocator {
    SimAllocator::build(&qemu_e820(mib * MIB), &[], &ModelParams::default(), cpus)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// xorshift64*: deterministic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed_0fc0_ffee | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// The word `w` of page `index` of region `slot`, version `ver`.
pub fn pattern(slot: u64, index: u64, ver: u64, w: usize) -> u64 {
    (slot.wrapping_mul(0x0123_4567_89ab_cdef) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(ver.rotate_left(23))
        .wrapping_add(w as u64 * 0x0100_0000_01b3)
}

/// Write version `ver` of the pattern into the page at `va`, through the simulated MMU.
pub fn stamp(a: &SimAllocator, va: u64, slot: u64, index: u64, ver: u64) {
    a.with_page(va, |words| {
        for (w, word) in words.iter().enumerate() {
            word.store(pattern(slot, index, ver, w), Ordering::Relaxed);
        }
    })
    .unwrap_or_else(|e| panic!("stamp va {va:#x}: {e}"));
}

/// Check the page at `va` holds version `ver`; the first bad word if not.
pub fn verify(a: &SimAllocator, va: u64, slot: u64, index: u64, ver: u64) -> Result<(), String> {
    a.with_page(va, |words| {
        for (w, word) in words.iter().enumerate() {
            let got = word.load(Ordering::Relaxed);
            let want = pattern(slot, index, ver, w);
            if got != want {
                return Err(format!(
                    "va {va:#x} region {slot} index {index} word {w}: {got:#x}, want {want:#x}"
                ));
            }
        }
        Ok(())
    })
    .map_err(|e| format!("va {va:#x}: {e}"))?
}

/// One anon region of the scenario: which indices are mapped and at which version.
pub struct Region {
    pub id: RegionId,
    pub start: u64,
    /// `None`: not mapped; `Some(v)`: mapped with version `v`.
    pub pages: Vec<Option<u64>>,
}

impl Region {
    pub fn va(&self, i: u64) -> u64 {
        self.start + i * PAGE_SIZE
    }
    pub fn mapped(&self) -> u64 {
        self.pages.iter().filter(|p| p.is_some()).count() as u64
    }
}

/// Memory filled with anon pages and unmovable allocations.
pub struct Scenario {
    pub regions: Vec<Region>,
    /// Unmovable blocks held: (pfn, order).
    pub unmovable: Vec<(u64, u32)>,
}

impl Scenario {
    pub fn anon_pages(&self) -> u64 {
        self.regions.iter().map(|r| r.mapped()).sum()
    }

    /// Verify every mapped page's checksum, and each region's rmap.
    pub fn verify_all(&self, a: &SimAllocator) {
        for r in &self.regions {
            for (i, v) in r.pages.iter().enumerate() {
                if let Some(v) = v {
                    verify(a, r.va(i as u64), r.id.slot as u64, i as u64, *v)
                        .unwrap_or_else(|e| panic!("checksum: {e}"));
                }
            }
            let n = a
                .anon_region_check(r.id)
                .unwrap_or_else(|e| panic!("anon_region_check: {e:?}"));
            assert_eq!(n, r.mapped(), "region {} mapped pages", r.id.slot);
        }
    }

    /// Zap about `percent`% of the mapped pages, scattered.
    pub fn zap_scattered(&mut self, a: &SimAllocator, rng: &mut Rng, percent: u64) -> u64 {
        let mut zapped = 0;
        for r in &mut self.regions {
            for i in 0..r.pages.len() {
                if r.pages[i].is_some() && rng.below(100) < percent {
                    assert!(a.anon_region_zap(r.id, i as u64).expect("zap"));
                    r.pages[i] = None;
                    zapped += 1;
                }
            }
        }
        a.drain_all_pages();
        zapped
    }

    /// Free the unmovable allocations.
    pub fn free_unmovable(&mut self, a: &SimAllocator) {
        for (pfn, order) in self.unmovable.drain(..) {
            a.free_pages(a.pfn_to_page(pfn).unwrap(), order)
                .expect("free unmovable");
        }
        a.drain_all_pages();
    }

    /// Destroy everything (regions and unmovable allocations).
    pub fn teardown(mut self, a: &SimAllocator) {
        self.free_unmovable(a);
        for r in self.regions.drain(..) {
            a.anon_region_destroy(r.id).expect("destroy");
        }
        a.drain_all_pages();
    }
}

fn new_region(a: &SimAllocator) -> Region {
    let id = a.anon_region_create(REGION_PAGES).expect("region");
    let (start, _) = a.anon_region_span(id).unwrap();
    Region {
        id,
        start,
        pages: vec![None; REGION_PAGES as usize],
    }
}

/// Populate page `i` of `r` with version 0; false when memory ran out.
pub fn populate(a: &SimAllocator, r: &mut Region, i: u64) -> bool {
    match a.anon_region_populate(r.id, i, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
        Ok(_) => {
            stamp(a, r.va(i), r.id.slot as u64, i, 0);
            r.pages[i as usize] = Some(0);
            true
        }
        Err(RegionError::NoMemory) => false,
        Err(e) => panic!("populate: {e:?}"),
    }
}

/// Fill memory until allocations fail: anon pages, and every `unmovable_every`-th
/// allocation an unmovable order-0 page (0: none). Free blocks of pageblock order or more
/// that remain (the allocator hands out small blocks first, so the last free memory is in
/// large blocks) are then taken as unmovable allocations too, so that no such block is
/// free afterwards.
pub fn fill(a: &SimAllocator, unmovable_every: u64) -> Scenario {
    let mut sc = Scenario {
        regions: Vec::new(),
        unmovable: Vec::new(),
    };
    let mut cur = new_region(a);
    let mut idx = 0u64;
    let mut n = 0u64;
    loop {
        n += 1;
        if unmovable_every != 0 && n.is_multiple_of(unmovable_every) {
            match a.alloc_page(GFP_KERNEL | Gfp::NOWARN) {
                Some(p) => sc.unmovable.push((a.page_to_pfn(p), 0)),
                None => break,
            }
            continue;
        }
        if idx == REGION_PAGES {
            sc.regions.push(cur);
            cur = new_region(a);
            idx = 0;
        }
        if !populate(a, &mut cur, idx) {
            break;
        }
        idx += 1;
    }
    sc.regions.push(cur);
    a.drain_all_pages();
    for order in (PAGEBLOCK_ORDER..=MAX_PAGE_ORDER).rev() {
        while has_free_at_least(a, order) {
            match a.alloc_pages(GFP_ATOMIC | Gfp::NOWARN, order) {
                Some(p) => sc.unmovable.push((a.page_to_pfn(p), order)),
                None => break,
            }
        }
    }
    a.drain_all_pages();
    sc
}

/// Every managed zone of node 0.
pub fn zones(a: &SimAllocator) -> Vec<ZoneType> {
    ZoneType::ALL
        .into_iter()
        .filter(|&zt| a.zone_of(0, zt).is_some_and(|z| z.managed_zone()))
        .collect()
}

/// Is a free block of `order` or more on some buddy list?
pub fn has_free_at_least(a: &SimAllocator, order: u32) -> bool {
    free_blocks(a).iter().any(|&(_, o)| o >= order)
}

/// Every free buddy block (pfn, order), found by walking the memmap (the caller keeps
/// the machine quiet).
pub fn free_blocks(a: &SimAllocator) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for zt in zones(a) {
        let z = a.zone_of(0, zt).unwrap();
        let mut pfn = z.zone_start_pfn();
        while pfn < z.zone_end_pfn() {
            match a.pfn_to_page(pfn) {
                Some(p) if p.is_buddy() => {
                    let o = p.buddy_order();
                    out.push((pfn, o));
                    pfn += 1 << o;
                }
                _ => pfn += 1,
            }
        }
    }
    out
}

/// Is `page` one the compaction tests count as pinning its pageblock: allocated and not
/// an anon page (free pages and pcp pages are not allocated).
fn pins(page: &Page) -> bool {
    !page.is_buddy() && page.refcount() > 0 && !page.is_anon()
}

/// Where the free memory is: (free pages outside pageblocks holding an unmovable or
/// reserved page, of those the pages in free blocks of pageblock order or more, all free
/// pages). Drains the pcp lists first; the other CPUs must be quiet.
pub fn free_distribution(a: &SimAllocator) -> (u64, u64, u64) {
    a.drain_all_pages();
    let mut pinned = BTreeSet::new();
    for zt in zones(a) {
        let z = a.zone_of(0, zt).unwrap();
        for pfn in z.zone_start_pfn()..z.zone_end_pfn() {
            match a.pfn_to_page(pfn) {
                Some(p) if pins(p) || p.is_reserved() => {
                    pinned.insert(pfn / PAGEBLOCK_NR_PAGES);
                }
                None => {
                    pinned.insert(pfn / PAGEBLOCK_NR_PAGES);
                }
                _ => {}
            }
        }
    }
    let mut outside = 0;
    let mut big = 0;
    let mut total = 0;
    for (pfn, o) in free_blocks(a) {
        let n = 1u64 << o;
        total += n;
        if o >= PAGEBLOCK_ORDER {
            outside += n;
            big += n;
        } else if !pinned.contains(&(pfn / PAGEBLOCK_NR_PAGES)) {
            outside += n;
        }
    }
    (outside, big, total)
}

/// The invariant checker must pass.
pub fn check(a: &SimAllocator) {
    if let Err(v) = zonebuddy::report::debug::check(&**a) {
        panic!("debug::check: {v:?}");
    }
}

/// The fragmented machine most tests start from: memory filled with checksummed anon pages
/// and every tenth allocation unmovable, then half of the anon pages zapped at random. No
/// free block of pageblock order is left.
pub fn fragmented(a: &SimAllocator, seed: u64) -> Scenario {
    let mut sc = fill(a, 10);
    let mut rng = Rng::new(seed);
    sc.zap_scattered(a, &mut rng, 50);
    assert!(
        !has_free_at_least(a, PAGEBLOCK_ORDER),
        "fragmentation left a free pageblock"
    );
    sc
}
