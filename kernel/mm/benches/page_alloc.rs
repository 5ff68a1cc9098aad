//! Page allocator figures on simulated RAM, printed, never asserted (benchmarks are not
//! tests): the order-0 alloc+free pair on a pcp hit; allocating then freeing half of
//! memory at order 0 and at order 9; a mixed-order workload; the same workloads against
//! `buddy_system_allocator`'s `FrameAllocator` (same frames, same sizes, same binary) with
//! the ratio (also against `LockedFrameAllocator`, the spin-locked form a kernel shares);
//! and the pcp fast path with one and two threads (CPUs) and its scaling, beside a shared
//! `LockedFrameAllocator` driven by as many threads.
//!
//! `cargo bench -p zonebuddy --bench page_alloc`. The machine has 1 GiB at 4 GiB plus 48 MiB of
//! low memory. `MM_BENCH_ONLY=pair` runs only the pair loop (for a profiler);
//! `MM_BENCH_ONLY=threads<N>` only the fast-path throughput with N CPUs.

mod common;

use std::hint::black_box;
use std::time::Instant;

use buddy_system_allocator::{FrameAllocator, LockedFrameAllocator};
use common::{
    baseline, baseline_locked, best_of, machine, mixed_baseline, mixed_orders, mixed_ours, ns,
    pair_baseline, pair_baseline_locked, pair_ours,
};
use zonebuddy::model::page::Page;
use zonebuddy::page_alloc::gfp::GFP_KERNEL;
use zonebuddy::port::sim::SimAllocator;

/// The atomic read-modify-writes of an order-0 pair, alone, uncontended, in the same loop
/// shape: the reference-count drop on free (which races with speculative references, so
/// no allocator with Linux's rules can drop it) and, with `pcp_locks`, the pcp lock taken
/// on allocation and on free as a spinlock would (what a port without
/// `Platform::cpu_barrier` pays; with the barrier, the owner takes its lists with plain
/// stores, see `port::pcp_lock`).
#[inline(never)]
fn pair_atomics_floor(n: u64, pcp_locks: bool) -> f64 {
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    let lock = AtomicBool::new(false);
    let refcount = AtomicI32::new(0);
    let t = Instant::now();
    let take = |l: &AtomicBool| {
        if pcp_locks {
            while l
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {}
        } else {
            l.store(true, Ordering::Relaxed);
        }
        l.store(false, Ordering::Release);
    };
    for _ in 0..n {
        take(black_box(&lock));
        black_box(&refcount).store(1, Ordering::Release);
        take(black_box(&lock));
        black_box(&refcount).fetch_sub(1, Ordering::AcqRel);
    }
    ns(t, n)
}

/// Allocate half of memory in blocks of `order`, then free it all; ns per block for
/// each phase.
fn half_ours(a: &SimAllocator, order: u32) -> (f64, f64) {
    let blocks = (a.totalram_pages() / 2) >> order;
    let mut held: Vec<&Page> = Vec::with_capacity(blocks as usize);
    let t = Instant::now();
    for _ in 0..blocks {
        held.push(a.alloc_pages(GFP_KERNEL, order).unwrap());
    }
    let alloc = ns(t, blocks);
    let t = Instant::now();
    for p in held {
        let _ = a.free_pages(p, order);
    }
    (alloc, ns(t, blocks))
}

fn half_baseline(f: &mut FrameAllocator<33>, total: u64, order: u32) -> (f64, f64) {
    let blocks = (total / 2) >> order;
    let mut held = Vec::with_capacity(blocks as usize);
    let t = Instant::now();
    for _ in 0..blocks {
        held.push(f.alloc(1 << order).unwrap());
    }
    let alloc = ns(t, blocks);
    let t = Instant::now();
    for p in held {
        f.dealloc(p, 1 << order);
    }
    (alloc, ns(t, blocks))
}

/// Pairs per second over all threads, each thread a CPU doing `n` order-0 pairs.
fn throughput(a: &SimAllocator, n: u64) -> f64 {
    let plat = a.sim_platform();
    let t = Instant::now();
    plat.run_on_cpus(|_| {
        // Warm the pcp list, then measure pairs.
        for _ in 0..n {
            let p = a.alloc_page(GFP_KERNEL).unwrap();
            let _ = a.free_pages(black_box(p), 0);
        }
    });
    let secs = t.elapsed().as_secs_f64();
    (n * plat_cpus(a)) as f64 / secs
}

/// Pairs per second over `threads` threads sharing one `LockedFrameAllocator`.
fn throughput_locked(f: &LockedFrameAllocator<33>, threads: usize, n: u64) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..n {
                    let p = f.lock().alloc(1).unwrap();
                    f.lock().dealloc(black_box(p), 1);
                }
            });
        }
    });
    (n * threads as u64) as f64 / t.elapsed().as_secs_f64()
}

fn plat_cpus(a: &SimAllocator) -> u64 {
    use zonebuddy::port::platform::Platform;
    a.sim_platform().nr_cpus() as u64
}

fn main() {
    if let Ok(v) = std::env::var("MM_BENCH_ONLY")
        && let Some(cpus) = v.strip_prefix("threads")
    {
        let cpus: usize = cpus.parse().unwrap_or(2);
        let m = machine(cpus);
        throughput(&m, 200_000);
        let t = (0..3)
            .map(|_| throughput(&m, 10_000_000))
            .fold(0.0, f64::max);
        println!("{cpus} threads: {:.1} M pairs/s", t / 1e6);
        return;
    }
    let a = machine(1);
    let mut f = baseline(&a);
    let total = a.totalram_pages();
    println!(
        "page_alloc bench: {} MiB managed ({} pages), host-native, simulated RAM",
        total >> 8,
        total
    );

    // Warm up both (host page faults, caches).
    pair_ours(&a, 200_000);
    pair_baseline(&mut f, 200_000);
    // MM_BENCH_N shrinks the pair loop, e.g. for a run under callgrind.
    let n = std::env::var("MM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000u64);
    let ours = best_of(5, || pair_ours(&a, n));
    let theirs = best_of(5, || pair_baseline(&mut f, n));
    println!(
        "order-0 alloc+free pair (pcp hit):   {ours:7.2} ns/pair   buddy_system_allocator {theirs:7.2} ns/pair   ratio {:.3}x",
        ours / theirs
    );
    let floor = best_of(5, || pair_atomics_floor(n, false));
    println!(
        "  of which the pair's atomic RMW alone (the refcount drop; the pcp lock costs its owner plain stores): {floor:5.2} ns = {:.3}x buddy_system_allocator",
        floor / theirs
    );
    let floor3 = best_of(5, || pair_atomics_floor(n, true));
    println!(
        "  the same with spinlock pcp locks (a port without cpu_barrier: 3 atomic RMWs): {floor3:5.2} ns = {:.3}x buddy_system_allocator",
        floor3 / theirs
    );
    let locked = baseline_locked(&a);
    pair_baseline_locked(&locked, 200_000);
    let theirs_locked = best_of(5, || pair_baseline_locked(&locked, n));
    println!(
        "  same pair vs LockedFrameAllocator (spin mutex, as a kernel shares it): {theirs_locked:7.2} ns/pair   ratio {:.3}x",
        ours / theirs_locked
    );
    if std::env::var("MM_BENCH_ONLY").is_ok_and(|v| v == "pair") {
        for _ in 0..20 {
            pair_ours(&a, n);
        }
        return;
    }

    for order in [0u32, 9] {
        let (oa, of) = half_ours(&a, order);
        let (ba, bf) = half_baseline(&mut f, total, order);
        let (oa2, of2) = half_ours(&a, order);
        let (ba2, bf2) = half_baseline(&mut f, total, order);
        let (oa, of, ba, bf) = (oa.min(oa2), of.min(of2), ba.min(ba2), bf.min(bf2));
        println!(
            "50% of memory at order {order}: alloc {oa:8.1} ns/block free {of:8.1} ns/block   buddy_system_allocator alloc {ba:8.1} free {bf:8.1}   ratio alloc {:.3}x free {:.3}x",
            oa / ba,
            of / bf
        );
    }

    let orders = mixed_orders(2_000_000);
    mixed_ours(&a, &orders[..200_000]);
    let mo = best_of(3, || mixed_ours(&a, &orders));
    let mb = best_of(3, || mixed_baseline(&mut f, &orders));
    println!(
        "mixed orders 0-10, 2048-block working set: {mo:7.1} ns/step   buddy_system_allocator {mb:7.1} ns/step   ratio {:.3}x",
        mo / mb
    );
    a.drain_all_pages();
    zonebuddy::report::debug::check(&a).expect("consistent after the benchmark");
    drop(a);

    let n = 10_000_000;
    let one = machine(1);
    throughput(&one, 200_000);
    let t1 = (0..3).map(|_| throughput(&one, n)).fold(0.0, f64::max);
    let two = machine(2);
    throughput(&two, 200_000);
    let t2 = (0..3).map(|_| throughput(&two, n)).fold(0.0, f64::max);
    println!(
        "pcp fast path: 1 thread {:.1} M pairs/s ({:.2} ns/pair), 2 threads {:.1} M pairs/s total ({:.2} ns/pair/thread), scaling {:.2}x",
        t1 / 1e6,
        1e9 / t1,
        t2 / 1e6,
        2e9 / t2,
        t2 / t1
    );
    let l1 = (0..3)
        .map(|_| throughput_locked(&locked, 1, n))
        .fold(0.0, f64::max);
    let l2 = (0..3)
        .map(|_| throughput_locked(&locked, 2, n))
        .fold(0.0, f64::max);
    println!(
        "  LockedFrameAllocator shared: 1 thread {:.1} M pairs/s, 2 threads {:.1} M pairs/s total, scaling {:.2}x; ours/theirs at 2 threads {:.2}x the throughput",
        l1 / 1e6,
        l2 / 1e6,
        l2 / l1,
        t2 / l2
    );
}
