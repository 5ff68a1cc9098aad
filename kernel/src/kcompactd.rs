//! Where kcompactd runs in this kernel.
//!
//! Linux gives every node a kernel thread that sleeps until an allocation failure wakes it
//! or its 500 ms proactive timer fires. This kernel has no scheduler, so the thread is an
//! *idle-time worker*: one CPU (the highest online one, or the boot CPU on a single-CPU
//! machine, where waits such as the console's input loop call [`poll`]) runs a round of
//! `PageAllocator::kcompactd_run` whenever it is idle and the worker is due or was woken.
//! Work posted to that CPU still runs first; a round is bounded by compaction's own
//! stopping rules, like a kthread that does not yield mid-round.
//!
//! In test and bench modes the worker starts disabled, so suites that count free pages
//! exactly are not disturbed by proactive compaction in the background; the compaction
//! suite turns it on for the tests that are about it. `kcompactd=on` on the command line
//! keeps it on from boot in any mode (and `kcompactd=off` keeps it off), so a test run can
//! exercise background compaction while the other CPUs allocate, migrate and fault. At the
//! end of a test run the runner prints [`ROUNDS`] (`kcompactd: N rounds`).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::{smp, time};

/// Node ids the worker serves (one worker per node, all on the host CPU): every id the
/// allocator accepts.
const MAX_NODES: usize = zonebuddy::model::mmzone::MAX_NUMNODES;

static ENABLED: AtomicBool = AtomicBool::new(false);
static HOST_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);
static WOKEN: [AtomicBool; MAX_NODES] = [const { AtomicBool::new(false) }; MAX_NODES];
static NEXT_MS: [AtomicU64; MAX_NODES] = [const { AtomicU64::new(0) }; MAX_NODES];
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Rounds run, for tests and the console.
pub static ROUNDS: AtomicU64 = AtomicU64::new(0);

/// Whether the worker starts enabled: off in test and bench modes, on otherwise, unless
/// the command line says `kcompactd=on|1` or `kcompactd=off|0` (a bad value is reported
/// and the mode's default kept).
pub fn enabled_at_boot(test_or_bench: bool, option: Option<&str>) -> bool {
    match option {
        None => !test_or_bench,
        Some("on" | "1") => true,
        Some("off" | "0") => false,
        Some(v) => {
            log::warn!("kcompactd={v}: expected on, off, 1 or 0; ignored");
            !test_or_bench
        }
    }
}

/// Choose the host CPU (after the APs are up) and set whether the worker runs.
pub fn start(enabled: bool) {
    let host = smp::online_ids().into_iter().max().unwrap_or(0);
    HOST_CPU.store(host, Ordering::Relaxed);
    ENABLED.store(enabled, Ordering::Release);
    log::info!(
        "kcompactd: runs on cpu {host} when idle ({})",
        if enabled {
            "enabled"
        } else {
            "disabled (a test enables it; kcompactd=on keeps it on)"
        }
    );
}

/// How many ordinary wait bounds ([`smp::wait_timeout_ms`]) turning the worker off waits
/// for a round in progress: a round is bounded by compaction's own stopping rules, but a
/// whole-node round over gigabytes under TCG takes tens of seconds.
pub const STOP_TIMEOUT_FACTOR: u64 = 6;

/// Turn the worker on or off; returns the previous setting. Turning it off waits for a
/// round in progress on the host CPU to finish, so that when this returns the daemon no
/// longer touches memory (a proactive round can take seconds under TCG). A round that
/// does not finish within [`STOP_TIMEOUT_FACTOR`] wait bounds is a hang: the kernel panics
/// naming the host CPU rather than spinning forever.
pub fn set_enabled(on: bool) -> bool {
    // SeqCst pairs with `poll`: it publishes RUNNING and then rereads ENABLED, so either
    // it sees the worker disabled or this sees the round running.
    let was = ENABLED.swap(on, Ordering::SeqCst);
    if on {
        kick();
    } else if crate::arch::percpu::cpu_id() != host_cpu() {
        // (On the host CPU a round in progress is the caller's own: nothing to wait for.)
        let bound = smp::wait_timeout_ms().saturating_mul(STOP_TIMEOUT_FACTOR);
        if let Err(t) =
            smp::wait_for_cpu_ms(bound, host_cpu(), "to finish its kcompactd round", || {
                !RUNNING.load(Ordering::SeqCst)
            })
        {
            panic!("kcompactd: {t}");
        }
    }
    was
}

/// The CPU that hosts the worker.
pub fn host_cpu() -> usize {
    HOST_CPU.load(Ordering::Relaxed)
}

/// `Platform::wake_kcompactd`: make node `nid`'s worker run a round soon.
pub fn wake(nid: usize) {
    if let Some(w) = WOKEN.get(nid) {
        w.store(true, Ordering::Release);
        kick();
    }
}

fn kick() {
    let host = host_cpu();
    if host != usize::MAX && host != crate::arch::percpu::cpu_id() {
        smp::wake_cpu(host);
    }
}

/// Run any due kcompactd round if `cpu` hosts the worker. Called with interrupts enabled
/// from the host CPU's idle loop (and from waits on a single-CPU machine).
pub fn poll(cpu: usize) {
    if cpu != host_cpu() || !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let Some(alloc) = crate::memory::try_allocator() else {
        return;
    };
    // Nested polls (an interrupt-time wait inside a round) must not start another round.
    if RUNNING.swap(true, Ordering::SeqCst) {
        return;
    }
    if !ENABLED.load(Ordering::SeqCst) {
        // Disabled meanwhile: `set_enabled(false)` may already have seen RUNNING clear.
        RUNNING.store(false, Ordering::Release);
        return;
    }
    let now = time::now_ns() / 1_000_000;
    // Node ids may be sparse (0, 5, 63): walk the online nodes, not `0..count`.
    for nid in alloc
        .model()
        .nodes()
        .map(|n| n.node_id)
        .filter(|&nid| nid < MAX_NODES)
    {
        let woken = WOKEN[nid].swap(false, Ordering::AcqRel);
        if woken || now >= NEXT_MS[nid].load(Ordering::Relaxed) {
            let sleep = alloc.kcompactd_run(nid, now);
            NEXT_MS[nid].store(
                (time::now_ns() / 1_000_000).saturating_add(sleep),
                Ordering::Relaxed,
            );
            ROUNDS.fetch_add(1, Ordering::Relaxed);
        }
    }
    RUNNING.store(false, Ordering::Release);
}
