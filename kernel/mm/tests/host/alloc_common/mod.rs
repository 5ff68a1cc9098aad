//! Shared pieces of the page allocator tests: simulated machines, a deterministic RNG,
//! the reference model of what is allocated, and page stamping.

#![allow(dead_code)]

use std::collections::BTreeMap;

use zonebuddy::model::memmap::{FirmwareRange, RangeKind};
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{MAX_PAGE_ORDER, Migratetype, PAGE_SIZE, ZoneType};
use zonebuddy::model::page::Page;
use zonebuddy::model::zone::CoreSize;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::page_alloc::watermark::zone_watermark_ok;
use zonebuddy::port::platform::Platform;
use zonebuddy::port::sim::SimPageAllocator;
use zonebuddy::port::sim::{SimAllocator, SimPlatform, qemu_e820};
use zonebuddy::report::vmstat::VmEvent;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// xorshift64*: small, fast, deterministic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef_cafe_f00d | 1)
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
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// 64 MiB QEMU-like machine: DMA and DMA32 only.
pub fn machine_small(cpus: usize) -> SimAllocator {
    SimAllocator::build(&qemu_e820(64 * MIB), &[], &ModelParams::default(), cpus)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A map with all four zones: DMA, DMA32 (up to 48 MiB), Normal at 4 GiB with
/// `normal_mib`, of which `movable_mib` becomes ZONE_MOVABLE.
pub fn zoned_map(normal_mib: u64) -> Vec<FirmwareRange> {
    vec![
        FirmwareRange::new(0, 0x9fc00, RangeKind::Usable),
        FirmwareRange::new(0x9fc00, 0x100000, RangeKind::Reserved),
        FirmwareRange::new(0x100000, 48 * MIB, RangeKind::Usable),
        FirmwareRange::new(4 * GIB, 4 * GIB + normal_mib * MIB, RangeKind::Usable),
    ]
}

/// DMA, DMA32, Normal and Movable.
pub fn machine_zoned(cpus: usize) -> SimAllocator {
    let params = ModelParams {
        movablecore: Some(CoreSize::Bytes(32 * MIB)),
        ..ModelParams::default()
    };
    SimAllocator::build(&zoned_map(96), &[], &params, cpus).unwrap_or_else(|e| panic!("{e}"))
}

/// A machine with `mib` MiB of RAM at 4 GiB besides the low 48 MiB (big zones: pcp batch
/// 63, highatomic reserve possible).
pub fn machine_big(normal_mib: u64, cpus: usize) -> SimAllocator {
    SimAllocator::build(&zoned_map(normal_mib), &[], &ModelParams::default(), cpus)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`machine_big`] on a platform without `Platform::cpu_barrier`: the pcp lists' owner
/// takes its lock with an atomic exchange (the symmetric protocol of `port::pcp_lock`).
pub fn machine_big_without_cpu_barrier(normal_mib: u64, cpus: usize) -> SimAllocator {
    let map = zoned_map(normal_mib);
    let platform = SimPlatform::for_map(&map, &[], cpus)
        .unwrap_or_else(|e| panic!("{e}"))
        .without_cpu_barrier();
    SimAllocator::build_on(platform, &map, &[], &ModelParams::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One allocated block in the reference model.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub order: u32,
    pub compound: bool,
    pub refs: u32,
    pub gfp: Gfp,
}

/// What the test believes is allocated.
#[derive(Default, Debug)]
pub struct Model {
    pub blocks: BTreeMap<u64, Block>,
    pub leaked: u64,
    pub allocated_pages: u64,
}

impl Model {
    pub fn overlaps(&self, pfn: u64, order: u32) -> Option<(u64, Block)> {
        let end = pfn + (1 << order);
        if let Some((&p, &b)) = self.blocks.range(..end).next_back()
            && p + (1 << b.order) > pfn
        {
            return Some((p, b));
        }
        None
    }

    pub fn insert(&mut self, pfn: u64, b: Block) {
        if let Some((p, o)) = self.overlaps(pfn, b.order) {
            panic!(
                "allocator handed out pfn {pfn:#x} order {} overlapping allocated {p:#x} {o:?}",
                b.order
            );
        }
        self.allocated_pages += 1 << b.order;
        self.blocks.insert(pfn, b);
    }

    pub fn remove(&mut self, pfn: u64) -> Block {
        let b = self.blocks.remove(&pfn).expect("block in model");
        self.allocated_pages -= 1 << b.order;
        b
    }
}

/// Which pfns a gfp may land in, by zone type.
pub fn allowed_zone(gfp: Gfp, zt: ZoneType) -> bool {
    match gfp_zone(gfp) {
        Ok(high) => zt <= high,
        Err(_) => false,
    }
}

pub fn zone_of_page(page: &Page) -> ZoneType {
    page.zone_type().expect("page has a zone")
}

/// Write the pfn into the first and last word of every page of a block (detects two
/// owners of one page, and checks zeroing first when asked).
pub fn stamp(a: &SimPageAllocator, pfn: u64, order: u32, expect_zero: bool) {
    let base = a.platform().phys_to_virt(pfn * PAGE_SIZE) as *mut u64;
    for i in 0..(1u64 << order) {
        // SAFETY: the block is allocated to this test and is simulated RAM.
        unsafe {
            let p = base.add((i * PAGE_SIZE / 8) as usize);
            if expect_zero {
                for w in 0..(PAGE_SIZE / 8) as usize {
                    assert_eq!(
                        *p.add(w),
                        0,
                        "__GFP_ZERO page pfn {:#x} not zero at word {w}",
                        pfn + i
                    );
                }
            }
            *p = pfn + i;
            *p.add(PAGE_SIZE as usize / 8 - 1) = !(pfn + i);
        }
    }
}

pub fn verify_stamp(a: &SimPageAllocator, pfn: u64, order: u32) {
    let base = a.platform().phys_to_virt(pfn * PAGE_SIZE) as *const u64;
    let n = 1u64 << order;
    // Every page of small blocks; the ends and a sample of large ones.
    for i in (0..n).filter(|&i| n <= 16 || i < 8 || i >= n - 8 || i % 61 == 0) {
        // SAFETY: as in `stamp`.
        unsafe {
            let p = base.add((i * PAGE_SIZE / 8) as usize);
            assert_eq!(
                *p,
                pfn + i,
                "page pfn {:#x} was overwritten by another owner",
                pfn + i
            );
            assert_eq!(*p.add(PAGE_SIZE as usize / 8 - 1), !(pfn + i));
        }
    }
}

/// Pages the allocator owns but has not handed out, plus what the model holds, must add up
/// to everything it manages.
pub fn check_accounting(a: &SimPageAllocator, m: &Model) {
    let free = a.nr_free_pages();
    let pcp = a.nr_pcp_pages();
    let total = a.totalram_pages();
    assert_eq!(
        free + pcp + m.allocated_pages + m.leaked,
        total,
        "free {free} + pcp {pcp} + allocated {} + leaked {} != managed {total}",
        m.allocated_pages,
        m.leaked
    );
}

/// Sum of pgalloc over zones.
pub fn pgalloc_total(a: &SimPageAllocator) -> u64 {
    ZoneType::ALL
        .iter()
        .map(|&z| a.vm_event(VmEvent::pgalloc(z)))
        .sum()
}

/// After a failed allocation: no allowed zone may pass the check the slow path made (the
/// min watermark with the request's reserves, and a free block of the order), or the
/// failure was not justified.
pub fn assert_oom_justified(a: &SimPageAllocator, gfp: Gfp, order: u32) {
    let Ok(high) = gfp_zone(gfp) else { return };
    let flags = gfp_to_alloc_flags(gfp, order);
    let memalloc = !gfp_pfmemalloc_flags(gfp).is_empty();
    for zt in ZoneType::ALL.iter().copied().filter(|&z| z <= high) {
        let Some(z) = a.zone_of(0, zt) else { continue };
        if !z.managed_zone() {
            continue;
        }
        let has = |o: u32, mt: Migratetype| z.has_free_block(o, mt);
        let ok = if memalloc {
            (order..=MAX_PAGE_ORDER).any(|o| {
                has(o, Migratetype::Unmovable)
                    || has(o, Migratetype::Movable)
                    || has(o, Migratetype::Reclaimable)
            })
        } else {
            zone_watermark_ok(
                &z.free_state(),
                order,
                z.watermarks().min_wmark_pages(),
                high,
                flags,
                has,
            )
        };
        assert!(
            !ok,
            "allocation order {order} {gfp} failed although zone {} passes: free {} wmarks {:?} reserve {:?}",
            zt.name(),
            z.nr_free_pages(),
            z.watermarks(),
            z.lowmem_reserve()
        );
    }
}
