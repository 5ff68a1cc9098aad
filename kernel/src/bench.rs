//! In-guest benchmarks (`CMDLINE=bench`): figures, never assertions.
//!
//! Under TCG the absolute numbers measure the emulator as much as the allocator, so they
//! are for shape: the cost of a pcp hit against a refill, order 0 against order 9, and how
//! throughput moves from 1 to 2 to 4 CPUs. Cycles come from RDTSC, wall time from the TSC
//! rate calibrated against the PIT at boot.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use zonebuddy::page_alloc::gfp::{GFP_KERNEL, Gfp};

use crate::{
    arch::{smp, time},
    memory::allocator,
};

fn cycles_per<F: FnMut()>(iters: u64, mut f: F) -> u64 {
    let start = time::rdtsc();
    for _ in 0..iters {
        f();
    }
    (time::rdtsc() - start) / iters.max(1)
}

/// What the emulator charges for the primitives the allocator's fast path is made of, so
/// the allocator's own figures can be read against them.
fn calibrate() {
    use zonebuddy::port::platform::Platform;
    let p = &crate::platform::PLATFORM;
    let x = AtomicU64::new(0);
    let n = 1_000_000;
    let plain = cycles_per(n, || {
        core::hint::black_box(x.load(Ordering::Relaxed).wrapping_add(1));
    });
    let atomic = cycles_per(n, || {
        x.fetch_add(1, Ordering::AcqRel);
    });
    let irq = cycles_per(n, || {
        let s = p.local_irq_save();
        p.local_irq_restore(s);
    });
    let cpu = cycles_per(n, || {
        core::hint::black_box(p.cpu_id());
    });
    kprintln!(
        "bench: calibration: loop {} cycles, atomic RMW {} cycles, irq save/restore {} cycles, cpu_id {} cycles",
        plain,
        atomic,
        irq,
        cpu
    );
}

/// Run every benchmark and print its figure.
pub fn run() {
    let a = allocator();
    kprintln!("bench: in-guest figures (TCG: compare shapes, not absolute values)");
    calibrate();

    // Order-0 alloc+free pair on a pcp hit: the first pair warms the list.
    let warm = a.alloc_pages(GFP_KERNEL, 0);
    if let Some(p) = warm {
        let _ = a.free_pages(p, 0);
    }
    let c = cycles_per(200_000, || {
        if let Some(p) = a.alloc_pages(GFP_KERNEL, 0) {
            let _ = a.free_pages(p, 0);
        }
    });
    kprintln!("bench: order-0 alloc+free pair (pcp hit): {} cycles", c);

    // Bulk: take 50% of free memory at order 0, then free it; same at order 9.
    for order in [0u32, 9] {
        a.drain_all_pages();
        let target = (a.nr_free_pages() / 2) >> order;
        let mut held: Vec<u64> = Vec::with_capacity(target as usize);
        let t0 = time::rdtsc();
        for _ in 0..target {
            match a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, order) {
                Some(p) => held.push(a.page_address(p)),
                None => break,
            }
        }
        let t1 = time::rdtsc();
        let n = held.len() as u64;
        for addr in held {
            let _ = a.free_pages_virt(addr, order);
        }
        let t2 = time::rdtsc();
        kprintln!(
            "bench: bulk order-{} over 50% of memory ({} blocks): alloc {} cycles/block, free {} cycles/block",
            order,
            n,
            (t1 - t0) / n.max(1),
            (t2 - t1) / n.max(1)
        );
    }

    // Mixed orders with a small working set.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut live: Vec<(u64, u32)> = Vec::with_capacity(64);
    let c = cycles_per(100_000, || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if live.len() < 64 && rng & 1 == 0 {
            let order = [0, 0, 0, 0, 1, 1, 2, 3][(rng >> 8) as usize % 8];
            if let Some(p) = a.alloc_pages(GFP_KERNEL, order) {
                live.push((a.page_address(p), order));
            }
        } else if let Some((addr, order)) = live.pop() {
            let _ = a.free_pages_virt(addr, order);
        }
    });
    for (addr, order) in live.drain(..) {
        let _ = a.free_pages_virt(addr, order);
    }
    kprintln!("bench: mixed orders 0-3, 64 live: {} cycles/operation", c);

    // Scaling of the order-0 fast path: the same per-CPU work on 1, 2 and 4 CPUs.
    let online = smp::online_ids();
    let per_cpu: u64 = 100_000;
    let mut base = 0u64;
    for n in [1usize, 2, 4] {
        if n > online.len() {
            kprintln!(
                "bench: scaling at {} CPUs skipped ({} online)",
                n,
                online.len()
            );
            continue;
        }
        let done = AtomicU64::new(0);
        let t0 = time::now_ns();
        smp::run_on_cpus(&online[..n], &|_| {
            for _ in 0..per_cpu {
                if let Some(p) = a.alloc_pages(GFP_KERNEL, 0) {
                    let _ = a.free_pages(p, 0);
                }
            }
            done.fetch_add(per_cpu * 2, Ordering::Relaxed);
        });
        let ns = (time::now_ns() - t0).max(1);
        let ops_per_s = done.load(Ordering::Relaxed) * 1_000_000_000 / ns;
        if n == 1 {
            base = ops_per_s;
        }
        kprintln!(
            "bench: order-0 pairs on {} CPU(s): {} ops/s ({}.{:02}x of 1 CPU)",
            n,
            ops_per_s,
            ops_per_s * 100 / base.max(1) / 100,
            ops_per_s * 100 / base.max(1) % 100
        );
    }

    migration();
}

/// Compaction of the fragmentation scenario: pages migrated per second, cycles per
/// migrated page, and the share of eligible free memory in order-9 blocks before and
/// after. Under `-icount` (the runner's `--icount`), QEMU advances the TSC by instruction
/// count, so "cycles" then read as instructions.
fn migration() {
    let a = allocator();
    let mut s = match crate::scenario::Scenario::build(80, 8, true, 0xbe9c) {
        Ok(s) => s,
        Err(e) => {
            kprintln!("bench: migration skipped: {e}");
            return;
        }
    };
    let before = crate::scenario::free_layout();
    let migrated0 = a.vm_event(zonebuddy::report::vmstat::VmEvent::PgmigrateSuccess);
    let (c0, t0) = (time::rdtsc(), time::now_ns());
    let stats = a.compact_memory();
    let (c1, t1) = (time::rdtsc(), time::now_ns());
    let after = crate::scenario::free_layout();
    let migrated = a.vm_event(zonebuddy::report::vmstat::VmEvent::PgmigrateSuccess) - migrated0;
    let ns = (t1 - t0).max(1);
    kprintln!(
        "bench: compact_memory migrated {} pages in {} ms: {} pages/s, {} cycles/page (migrate scanner {} pages, free scanner {} pages)",
        migrated,
        ns / 1_000_000,
        migrated * 1_000_000_000 / ns,
        (c1 - c0) / migrated.max(1),
        stats.migrate_scanned,
        stats.free_scanned
    );
    kprintln!(
        "bench: eligible free memory in order-9 blocks: {}.{}% before, {}.{}% after compaction",
        before.order9_permille() / 10,
        before.order9_permille() % 10,
        after.order9_permille() / 10,
        after.order9_permille() % 10
    );
    s.release();
}
