//! Where kswapd runs in this kernel.
//!
//! Linux's kswapd is a per-node kernel thread that sleeps until an allocation finds a zone
//! below its low watermark (or a fragmenting fallback raises a watermark boost), then
//! reclaims until the node is balanced at the high watermark and goes back to sleep by
//! `kswapd_try_to_sleep`'s rules. The policy is zonebuddy's
//! (`PageAllocator::kswapd_run`, in `reclaim::kswapd`); this module is only the thread.
//! As for [`crate::kcompactd`], this kernel has no scheduler, so each node's kswapd is an
//! *idle-time worker* on the very CPU that hosts the node's kcompactd (the node's
//! highest CPU, or the nearest node's for a CPU-less node; see
//! [`crate::kcompactd::host_cpu`]): its idle loop runs a round whenever the worker was
//! woken ([`wake`], from `Platform::wake_kswapd`) or its nap timer expired, and sleeps
//! for what `kswapd_run` returns (the 100 ms nap, or until woken).
//!
//! The allocator only wakes kswapd while it runs: [`enabled`] is what the kernel's
//! `Platform::has_kswapd` answers, so with the worker off the allocator behaves exactly as
//! without background reclaim (boosts reset on the way out of the allocation, kcompactd
//! woken directly). The worker starts on when there is something for it to reclaim (a
//! ramdisk backs the page cache) outside test and bench modes; without one it would only
//! move the boost reset out of the allocation path, so the kernel keeps the behaviour it
//! had before kswapd existed. In test and bench modes it starts off, like kcompactd, so
//! suites that count free pages exactly are undisturbed; the reclaim suite turns it on,
//! and `kswapd=on|off` on the command line decides in any mode. At the end of a test run
//! the runner prints [`ROUNDS`] (`kswapd: N rounds`).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zonebuddy::reclaim::kswapd::KSWAPD_SLEEP_FOREVER;

use crate::arch::{smp, time};

/// Most nodes (zonebuddy's `MAX_NUMNODES`): one worker each.
const MAX_NODES: usize = zonebuddy::model::mmzone::MAX_NUMNODES;

static ENABLED: AtomicBool = AtomicBool::new(false);
static WOKEN: [AtomicBool; MAX_NODES] = [const { AtomicBool::new(false) }; MAX_NODES];
/// When the node's nap ends (milliseconds); `u64::MAX`: asleep until woken.
static NEXT_MS: [AtomicU64; MAX_NODES] = [const { AtomicU64::new(u64::MAX) }; MAX_NODES];
/// A round of this node's worker is in progress.
static RUNNING: [AtomicBool; MAX_NODES] = [const { AtomicBool::new(false) }; MAX_NODES];
/// Rounds run, for tests and the console.
pub static ROUNDS: AtomicU64 = AtomicU64::new(0);
/// Wake-ups requested by the allocator.
pub static WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// Whether the worker starts enabled: on when there is a page cache to reclaim
/// (`has_cache`) outside test and bench modes, off otherwise, unless the command line says
/// `kswapd=on|1` or `kswapd=off|0` (a bad value is reported and the default kept).
pub fn enabled_at_boot(test_or_bench: bool, has_cache: bool, option: Option<&str>) -> bool {
    let default = !test_or_bench && has_cache;
    match option {
        None => default,
        Some("on" | "1") => true,
        Some("off" | "0") => false,
        Some(v) => {
            log::warn!("kswapd={v}: expected on, off, 1 or 0; ignored");
            default
        }
    }
}

/// Set whether the workers run (after [`crate::kcompactd::start`] chose the host CPUs).
pub fn start(enabled: bool) {
    ENABLED.store(enabled, Ordering::Release);
    log::info!(
        "kswapd: on the kcompactd CPUs when idle ({})",
        if enabled {
            "enabled"
        } else {
            "disabled (on by default with a ramdisk outside test mode; the reclaim suite enables it; kswapd=on keeps it on)"
        }
    );
}

/// Is the worker on (`Platform::has_kswapd`)?
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Turn the worker on or off; returns the previous setting. Turning it off waits for a
/// round in progress on a host CPU to finish, so that when this returns kswapd no longer
/// reclaims (a hang there panics naming the CPU, as for kcompactd).
pub fn set_enabled(on: bool) -> bool {
    let was = ENABLED.swap(on, Ordering::SeqCst);
    if on {
        return was;
    }
    let me = crate::arch::percpu::cpu_id();
    for (nid, running) in RUNNING.iter().enumerate() {
        let host = crate::kcompactd::host_cpu(nid);
        if host == usize::MAX || host == me {
            continue;
        }
        let bound = smp::wait_timeout_ms().saturating_mul(crate::kcompactd::STOP_TIMEOUT_FACTOR);
        if let Err(t) = smp::wait_for_cpu_ms(bound, host, "to finish its kswapd round", || {
            !running.load(Ordering::SeqCst)
        }) {
            panic!("kswapd: node {nid}: {t}");
        }
    }
    was
}

/// `Platform::wake_kswapd`: make node `nid`'s worker run a round soon.
pub fn wake(nid: usize) {
    if let Some(w) = WOKEN.get(nid) {
        WAKEUPS.fetch_add(1, Ordering::Relaxed);
        // Already woken: the host CPU has been kicked and will see it.
        if w.swap(true, Ordering::AcqRel) {
            return;
        }
        let host = crate::kcompactd::host_cpu(nid);
        if host != usize::MAX && host != crate::arch::percpu::cpu_id() {
            smp::wake_cpu(host);
        }
    }
}

/// Run any due kswapd round of the nodes whose worker `cpu` hosts. Called with
/// interrupts enabled from the CPU's idle loop (and from waits on a single-CPU machine).
pub fn poll(cpu: usize) {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let Some(alloc) = crate::memory::try_allocator() else {
        return;
    };
    for node in alloc.model().nodes() {
        let nid = node.node_id;
        if nid >= MAX_NODES || crate::kcompactd::host_cpu(nid) != cpu {
            continue;
        }
        if RUNNING[nid].swap(true, Ordering::SeqCst) {
            continue;
        }
        if !ENABLED.load(Ordering::SeqCst) {
            RUNNING[nid].store(false, Ordering::Release);
            return;
        }
        let now = time::now_ns() / 1_000_000;
        let woken = WOKEN[nid].swap(false, Ordering::AcqRel);
        if woken || now >= NEXT_MS[nid].load(Ordering::Relaxed) {
            let sleep = alloc.kswapd_run(nid, now);
            let next = if sleep == KSWAPD_SLEEP_FOREVER {
                u64::MAX
            } else {
                (time::now_ns() / 1_000_000).saturating_add(sleep)
            };
            NEXT_MS[nid].store(next, Ordering::Relaxed);
            ROUNDS.fetch_add(1, Ordering::Relaxed);
        }
        RUNNING[nid].store(false, Ordering::Release);
    }
}
