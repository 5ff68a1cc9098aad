//! What the page allocator benches share: the bench machine, the `buddy_system_allocator`
//! baseline holding the same frames, a small random generator, timing helpers, and the
//! two workloads both benches print (the order-0 pcp pair and the mixed-order working set).

// Each bench uses part of this module.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Instant;

use buddy_system_allocator::{FrameAllocator, LockedFrameAllocator};
use zonebuddy::model::memmap::{FirmwareRange, RangeKind};
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::page::Page;
use zonebuddy::page_alloc::gfp::GFP_KERNEL;
use zonebuddy::port::sim::SimAllocator;

/// One MiB.
pub const MIB: u64 = 1 << 20;

/// The bench machine: 48 MiB of low memory plus `mib` MiB at 4 GiB, `cpus` CPUs.
pub fn machine_mib(cpus: usize, mib: u64) -> SimAllocator {
    let map = [
        FirmwareRange::new(0x100000, 48 * MIB, RangeKind::Usable),
        FirmwareRange::new(4 << 30, (4 << 30) + mib * MIB, RangeKind::Usable),
    ];
    SimAllocator::build(&map, &[], &ModelParams::default(), cpus).expect("bench machine")
}

/// The bench machine with 1 GiB at 4 GiB.
pub fn machine(cpus: usize) -> SimAllocator {
    machine_mib(cpus, 1024)
}

/// A FrameAllocator holding the same free pfn ranges as our allocator.
pub fn baseline(a: &SimAllocator) -> FrameAllocator<33> {
    let mut f = FrameAllocator::<33>::new();
    for r in a.model().free_pfn_ranges() {
        f.add_frame(r.start_pfn as usize, r.end_pfn as usize);
    }
    f
}

/// A LockedFrameAllocator (spin mutex around the frame allocator, as a kernel shares it)
/// holding the same free pfn ranges as our allocator.
pub fn baseline_locked(a: &SimAllocator) -> LockedFrameAllocator<33> {
    let f = LockedFrameAllocator::<33>::new();
    for r in a.model().free_pfn_ranges() {
        f.lock().add_frame(r.start_pfn as usize, r.end_pfn as usize);
    }
    f
}

/// xorshift64.
pub struct Rng(pub u64);
impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Nanoseconds per operation since `t` for `n` operations.
pub fn ns(t: Instant, n: u64) -> f64 {
    t.elapsed().as_nanos() as f64 / n.max(1) as f64
}

/// The smallest of `runs` measurements.
pub fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(f64::MAX, f64::min)
}

/// `n` order-0 alloc+free pairs on a pcp hit; ns per pair.
#[inline(never)]
pub fn pair_ours(a: &SimAllocator, n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let p = a.alloc_page(GFP_KERNEL).unwrap();
        let _ = a.free_pages(black_box(p), 0);
    }
    ns(t, n)
}

/// The same pairs on `buddy_system_allocator`'s `LockedFrameAllocator`, the form a kernel
/// shares between CPUs (a spin mutex around the frame allocator).
#[inline(never)]
pub fn pair_baseline_locked(f: &LockedFrameAllocator<33>, n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let p = f.lock().alloc(1).unwrap();
        f.lock().dealloc(black_box(p), 1);
    }
    ns(t, n)
}

/// The same pairs on the unlocked `FrameAllocator`.
#[inline(never)]
pub fn pair_baseline(f: &mut FrameAllocator<33>, n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let p = f.alloc(1).unwrap();
        f.dealloc(black_box(p), 1);
    }
    ns(t, n)
}

/// Orders 0 (60%), 1-3 (25%), 4-8 (10%), 9-10 (5%) for the mixed workload.
pub fn mixed_orders(steps: u64) -> Vec<u32> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    (0..steps)
        .map(|_| match r.next() % 100 {
            0..60 => 0,
            60..85 => 1 + (r.next() % 3) as u32,
            85..95 => 4 + (r.next() % 5) as u32,
            _ => 9 + (r.next() % 2) as u32,
        })
        .collect()
}

/// Over a working set of 2048 blocks, each step frees a random block and allocates a new
/// one of the next order in `orders`. ns per step.
#[inline(never)]
pub fn mixed_ours(a: &SimAllocator, orders: &[u32]) -> f64 {
    let mut r = Rng(42);
    let mut set: Vec<(&Page, u32)> = Vec::with_capacity(2048);
    let t = Instant::now();
    for &o in orders {
        if set.len() >= 2048 {
            let i = (r.next() % set.len() as u64) as usize;
            let (p, po) = set.swap_remove(i);
            let _ = a.free_pages(p, po);
        }
        if let Some(p) = a.alloc_pages(GFP_KERNEL, o) {
            set.push((p, o));
        }
    }
    let v = ns(t, orders.len() as u64);
    for (p, o) in set {
        let _ = a.free_pages(p, o);
    }
    v
}

/// [`mixed_ours`] on the unlocked `FrameAllocator`.
#[inline(never)]
pub fn mixed_baseline(f: &mut FrameAllocator<33>, orders: &[u32]) -> f64 {
    let mut r = Rng(42);
    let mut set: Vec<(usize, u32)> = Vec::with_capacity(2048);
    let t = Instant::now();
    for &o in orders {
        if set.len() >= 2048 {
            let i = (r.next() % set.len() as u64) as usize;
            let (p, po) = set.swap_remove(i);
            f.dealloc(p, 1 << po);
        }
        if let Some(p) = f.alloc(1 << o) {
            set.push((p, o));
        }
    }
    let v = ns(t, orders.len() as u64);
    for (p, o) in set {
        f.dealloc(p, 1 << o);
    }
    v
}
