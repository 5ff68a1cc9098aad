//! LLFree's three workloads (Wrenger et al., ATC'23) on our allocator and on
//! `buddy_system_allocator` in the same process, with the ratio ours/theirs beside the goal
//! of issue 14. Figures, never assertions (benchmarks are not tests).
//!
//! - **bulk**: each thread allocates its share of half of memory at one order, then frees
//!   it last-in first-out;
//! - **repeat**: each thread fills its share of half of memory, then allocates and frees
//!   one block over and over;
//! - **rand**: the threads allocate half of memory, the blocks are shuffled across the
//!   threads, and each frees its part in that order.
//!
//! Each runs at orders 0 and 9 with 1 and 2 threads. Ours is the host simulation with
//! `GFP_KERNEL`, one simulated CPU per thread; the peer is `FrameAllocator` for one thread
//! and `LockedFrameAllocator` (its spin-locked form, as a kernel shares it) for two. Then
//! the mixed-order working set and the order-0 pcp pair of the `page_alloc` bench, and the
//! scaling of bulk order-0 allocation from one thread to two.
//!
//! `cargo bench -p zonebuddy --bench llfree_workloads`. Environment: `MM_BENCH_MIB` (memory
//! at 4 GiB, default 1024), `MM_BENCH_RUNS` (runs per workload, the median is printed;
//! default 5), `MM_BENCH_ONLY=ours` (skip the peer and the extras: for
//! `valgrind --tool=callgrind`, whose inclusive costs of `bulk_alloc`, `bulk_free`,
//! `rand_alloc`, `rand_free` and `repeat_phase` divided by the printed operation counts
//! are instructions per operation; `benches/callgrind.sh` does exactly that for orders 0
//! and 9), `MM_BENCH_ORDER` and `MM_BENCH_THREADS` (run only that order, that
//! thread count), `MM_BENCH_PAIRS` (cap on the repeat pairs).

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use buddy_system_allocator::{FrameAllocator, LockedFrameAllocator};
use common::{
    Rng, baseline, baseline_locked, best_of, machine_mib, mixed_baseline, mixed_orders, mixed_ours,
    ns, pair_baseline, pair_baseline_locked, pair_ours,
};
use zonebuddy::model::page::Page;
use zonebuddy::page_alloc::gfp::GFP_KERNEL;
use zonebuddy::port::sim::SimAllocator;

/// One thread's way into an allocator.
trait Handle: Send {
    /// An allocated block.
    type Block: Copy + Send;
    fn alloc(&mut self, order: u32) -> Option<Self::Block>;
    fn free(&mut self, b: Self::Block, order: u32);
    /// Called first on the thread that will use this handle as `cpu`.
    fn bind(&self, _cpu: usize) {}
}

impl<'a> Handle for &'a SimAllocator {
    type Block = &'a Page;
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<&'a Page> {
        self.alloc_pages(GFP_KERNEL, order)
    }
    #[inline(always)]
    fn free(&mut self, b: &'a Page, order: u32) {
        let _ = self.free_pages(b, order);
    }
    fn bind(&self, cpu: usize) {
        self.sim_platform().bind_current_thread(cpu);
    }
}

impl Handle for &mut FrameAllocator<33> {
    type Block = usize;
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        FrameAllocator::alloc(self, 1 << order)
    }
    #[inline(always)]
    fn free(&mut self, b: usize, order: u32) {
        self.dealloc(b, 1 << order);
    }
}

impl Handle for &LockedFrameAllocator<33> {
    type Block = usize;
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        self.lock().alloc(1 << order)
    }
    #[inline(always)]
    fn free(&mut self, b: usize, order: u32) {
        self.lock().dealloc(b, 1 << order);
    }
}

/// Run `body(thread, handle, input, barrier)` on one scoped thread per handle, each bound
/// first; the results in thread order.
fn run<H, I, R, F>(hs: &mut [H], inputs: Vec<I>, body: F) -> Vec<R>
where
    H: Handle,
    I: Send,
    R: Send,
    F: Fn(usize, &mut H, I, &Barrier) -> R + Sync,
{
    let barrier = Barrier::new(hs.len());
    std::thread::scope(|s| {
        let threads: Vec<_> = hs
            .iter_mut()
            .zip(inputs)
            .enumerate()
            .map(|(i, (h, input))| {
                let (body, barrier) = (&body, &barrier);
                s.spawn(move || {
                    h.bind(i);
                    body(i, h, input, barrier)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

#[inline(always)]
fn alloc_phase<H: Handle>(h: &mut H, order: u32, n: u64, out: &mut Vec<H::Block>) {
    for _ in 0..n {
        match h.alloc(order) {
            Some(b) => out.push(b),
            None => break,
        }
    }
}

#[inline(always)]
fn free_phase<H: Handle>(h: &mut H, order: u32, blocks: impl Iterator<Item = H::Block>) {
    for b in blocks {
        h.free(b, order);
    }
}

#[inline(never)]
fn repeat_phase<H: Handle>(h: &mut H, order: u32, n: u64) {
    for _ in 0..n {
        let b = h.alloc(order).expect("repeat: a block was just freed");
        h.free(black_box(b), order);
    }
}

// One function per measured phase, so that callgrind's inclusive cost of each is the cost
// of that phase alone.

#[inline(never)]
fn bulk_alloc<H: Handle>(h: &mut H, order: u32, n: u64, out: &mut Vec<H::Block>) {
    alloc_phase(h, order, n, out)
}

#[inline(never)]
fn bulk_free<H: Handle>(h: &mut H, order: u32, blocks: Vec<H::Block>) {
    free_phase(h, order, blocks.into_iter().rev())
}

#[inline(never)]
fn rand_alloc<H: Handle>(h: &mut H, order: u32, n: u64, out: &mut Vec<H::Block>) {
    // Not the same code as `bulk_alloc`, so identical code folding keeps both symbols.
    black_box(b"rand");
    alloc_phase(h, order, n, out)
}

#[inline(never)]
fn rand_free<H: Handle>(h: &mut H, order: u32, blocks: Vec<H::Block>) {
    free_phase(h, order, blocks.into_iter())
}

/// The median of `v` (the upper one for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The median of `runs` measurements: with two threads the best run can be one where the
/// threads happened not to overlap, so the workloads report the median.
fn median_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    median((0..runs).map(|_| f()).collect())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Blocks per thread for half of `total` pages at `order`.
fn share(total: u64, order: u32, threads: usize) -> u64 {
    ((total / 2) >> order) / threads as u64
}

/// bulk: (alloc, free) ns per block per thread, averaged over the threads.
fn bulk<H: Handle>(hs: &mut [H], total: u64, order: u32) -> (f64, f64) {
    let n = share(total, order, hs.len());
    let r = run(hs, (0..hs.len()).map(|_| ()).collect(), |_, h, (), bar| {
        let mut held = Vec::with_capacity(n as usize);
        bar.wait();
        let t = Instant::now();
        bulk_alloc(h, order, n, &mut held);
        let a = ns(t, held.len() as u64);
        bar.wait();
        let t = Instant::now();
        let k = held.len() as u64;
        bulk_free(h, order, held);
        (a, ns(t, k))
    });
    let (a, f): (Vec<f64>, Vec<f64>) = r.into_iter().unzip();
    (mean(&a), mean(&f))
}

/// repeat: ns per alloc+free pair per thread, with half of memory held.
fn repeat<H: Handle>(hs: &mut [H], total: u64, order: u32, pairs: u64) -> f64 {
    let n = share(total, order, hs.len());
    let r = run(hs, (0..hs.len()).map(|_| ()).collect(), |_, h, (), bar| {
        let mut held = Vec::with_capacity(n as usize);
        alloc_phase(h, order, n, &mut held);
        bar.wait();
        let t = Instant::now();
        repeat_phase(h, order, pairs);
        let v = ns(t, pairs);
        bar.wait();
        free_phase(h, order, held.into_iter().rev());
        v
    });
    mean(&r)
}

/// rand: (alloc, free) ns per block per thread; the frees in an order shuffled across the
/// threads.
fn rand<H: Handle>(hs: &mut [H], total: u64, order: u32, seed: u64) -> (f64, f64) {
    let threads = hs.len();
    let n = share(total, order, threads);
    let r = run(hs, (0..threads).map(|_| ()).collect(), |_, h, (), bar| {
        let mut held = Vec::with_capacity(n as usize);
        bar.wait();
        let t = Instant::now();
        rand_alloc(h, order, n, &mut held);
        (ns(t, held.len() as u64), held)
    });
    let mut all = Vec::new();
    let mut a = Vec::new();
    for (t, held) in r {
        a.push(t);
        all.extend(held);
    }
    let mut rng = Rng(seed | 1);
    for i in (1..all.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        all.swap(i, j);
    }
    let per = all.len().div_ceil(threads);
    let parts: Vec<Vec<H::Block>> = all.chunks(per.max(1)).map(|c| c.to_vec()).collect();
    let f = run(hs, parts, |_, h, part, bar| {
        bar.wait();
        let t = Instant::now();
        let k = part.len() as u64;
        rand_free(h, order, part);
        ns(t, k)
    });
    (mean(&a), mean(&f))
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn goal(g: Option<f64>) -> String {
    match g {
        Some(g) => format!("(goal <= {g:.1}x)"),
        None => "(no goal)".into(),
    }
}

fn row(name: &str, ours: f64, peer: Option<f64>, g: Option<f64>) {
    match peer {
        Some(p) => println!(
            "  {name:<34} ours {ours:8.1} ns  peer {p:8.1} ns  ratio {:6.2}x {}",
            ours / p,
            goal(g)
        ),
        None => println!("  {name:<34} ours {ours:8.1} ns"),
    }
}

/// A row with the ratio to the peer and, when given, to `LockedFrameAllocator` too.
fn row2(name: &str, ours: f64, peer: f64, locked: Option<f64>, g: Option<f64>) {
    match locked {
        Some(l) => println!(
            "  {name:<34} ours {ours:8.1} ns  peer {peer:8.1} ns  ratio {:6.2}x {} [locked peer {l:8.1} ns: {:5.2}x]",
            ours / peer,
            goal(g),
            ours / l
        ),
        None => row(name, ours, Some(peer), g),
    }
}

fn main() {
    let mib = env("MM_BENCH_MIB", 1024);
    let runs = env("MM_BENCH_RUNS", 5) as usize;
    let ours_only = std::env::var("MM_BENCH_ONLY").is_ok_and(|v| v == "ours");
    let one = machine_mib(1, mib);
    let two = machine_mib(2, mib);
    let total = one.totalram_pages();
    println!(
        "LLFree workloads: {} MiB managed ({total} pages), half of it held; ns per operation per thread, median of {runs} runs (order 9: {}), peer = buddy_system_allocator (FrameAllocator for 1 thread, LockedFrameAllocator for 2)",
        total >> 8,
        runs * 4
    );
    let mut frames = baseline(&one);
    let locked = baseline_locked(&one);
    let mut scaling = None;
    let only = |name: &str, v: u64| std::env::var(name).map_or(true, |s| s == v.to_string());
    for order in [0u32, 9] {
        if !only("MM_BENCH_ORDER", order as u64) {
            continue;
        }
        let (ga, gf) = if order == 0 {
            (Some(1.3), Some(1.3))
        } else {
            (Some(2.0), Some(3.0))
        };
        let pairs = if order == 0 { 1_000_000 } else { 100_000 };
        let pairs = pairs.min(env("MM_BENCH_PAIRS", pairs));
        // Half of memory is only a few hundred order-9 blocks, a few microseconds per
        // phase: take the median of four times as many runs.
        let runs = if order == 0 { runs } else { runs * 4 };
        for threads in [1usize, 2] {
            if !only("MM_BENCH_THREADS", threads as u64) {
                continue;
            }
            let (ga, gf) = if threads == 1 { (ga, gf) } else { (None, None) };
            println!("order {order}, {threads} thread(s):");
            let ours: &SimAllocator = if threads == 1 { &one } else { &two };
            let mut o: Vec<&SimAllocator> = vec![ours; threads];
            let med2 = |f: &mut dyn FnMut() -> (f64, f64)| {
                let (a, b): (Vec<f64>, Vec<f64>) = (0..runs).map(|_| f()).unzip();
                (median(a), median(b))
            };
            let ob = med2(&mut || bulk(&mut o, total, order));
            let or = med2(&mut || rand(&mut o, total, order, 7));
            let op = median_of(runs, || repeat(&mut o, total, order, pairs));
            if order == 0 {
                scaling = Some(match scaling {
                    None => (ob.0, 0.0),
                    Some((s1, _)) => (s1, ob.0),
                });
            }
            if ours_only {
                println!(
                    "  ({} blocks per thread per bulk/rand phase, {pairs} repeat pairs, {runs} runs)",
                    share(total, order, threads)
                );
                row("bulk alloc", ob.0, None, None);
                row("bulk free (LIFO)", ob.1, None, None);
                row("rand alloc", or.0, None, None);
                row("rand free (shuffled)", or.1, None, None);
                row("repeat alloc+free pair", op, None, None);
                continue;
            }
            let mut l = vec![&locked; threads];
            let lb = med2(&mut || bulk(&mut l, total, order));
            let lr = med2(&mut || rand(&mut l, total, order, 7));
            let lp = median_of(runs, || repeat(&mut l, total, order, pairs));
            let (pb, pr, pp) = if threads == 1 {
                let mut p = vec![&mut frames];
                let pb = med2(&mut || bulk(&mut p, total, order));
                let pr = med2(&mut || rand(&mut p, total, order, 7));
                let pp = median_of(runs, || repeat(&mut p, total, order, pairs));
                (pb, pr, pp)
            } else {
                (lb, lr, lp)
            };
            // With one thread the peer is the unlocked FrameAllocator; the ratio against
            // its locked form (what a kernel shares between CPUs) follows in brackets.
            let locked_too = |v: f64| (threads == 1).then_some(v);
            row2("bulk alloc", ob.0, pb.0, locked_too(lb.0), ga);
            row2("bulk free (LIFO)", ob.1, pb.1, locked_too(lb.1), gf);
            row2("rand alloc", or.0, pr.0, locked_too(lr.0), ga);
            row2("rand free (shuffled)", or.1, pr.1, locked_too(lr.1), gf);
            let gp = if order == 0 && threads == 1 {
                Some(1.0)
            } else {
                None
            };
            row2("repeat alloc+free pair", op, pp, locked_too(lp), gp);
        }
    }
    if let Some((s1, s2)) = scaling.filter(|s| s.1 > 0.0) {
        println!(
            "bulk order-0 alloc per page, 2 threads vs 1: {s2:.1} ns vs {s1:.1} ns = {:.2}x {}",
            s2 / s1,
            goal(Some(1.2))
        );
    }
    if ours_only {
        return;
    }
    // Building `two` made this thread its CPU 0; the extras run on `one`.
    one.sim_platform().bind_current_thread(0);
    let orders = mixed_orders(1_000_000);
    mixed_ours(&one, &orders[..100_000]);
    let mo = best_of(runs, || mixed_ours(&one, &orders));
    let mb = best_of(runs, || mixed_baseline(&mut frames, &orders));
    println!("mixed orders 0-10, 2048-block working set (ns per free+alloc step):");
    row("mixed", mo, Some(mb), Some(1.5));
    pair_ours(&one, 200_000);
    pair_baseline(&mut frames, 200_000);
    let po = best_of(5, || pair_ours(&one, 2_000_000));
    let pb = best_of(5, || pair_baseline(&mut frames, 2_000_000));
    println!("order-0 pcp pair (alloc+free, pcp hit, nothing else held):");
    row("pcp pair", po, Some(pb), Some(1.0));
    pair_baseline_locked(&locked, 200_000);
    let pl = best_of(5, || pair_baseline_locked(&locked, 2_000_000));
    row("pcp pair vs LockedFrameAllocator", po, Some(pl), Some(1.0));
    one.drain_all_pages();
    zonebuddy::report::debug::check(&one).expect("consistent after the benchmark");
    two.sim_platform().bind_current_thread(0);
    two.drain_all_pages();
    zonebuddy::report::debug::check(&two).expect("consistent after the benchmark");
}
