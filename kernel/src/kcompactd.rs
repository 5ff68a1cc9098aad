//! Where kcompactd runs in this kernel.
//!
//! Linux gives every node a kernel thread that sleeps until an allocation failure wakes it
//! or its 500 ms proactive timer fires, bound to the node's CPUs. This kernel has no
//! scheduler, so each node's thread is an *idle-time worker* hosted by one CPU of that node
//! (its highest online CPU; a node without CPUs is served by the highest CPU of the
//! nearest node that has some, and on a single-CPU machine waits such as the console's
//! input loop call [`poll`]). The host runs a round of `PageAllocator::kcompactd_run(nid)`, which compacts
//! only node `nid`'s zones, whenever it is idle and the node's worker is due or was woken.
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

/// Most nodes (zonebuddy's `MAX_NUMNODES`): one worker each.
const MAX_NODES: usize = zonebuddy::model::mmzone::MAX_NUMNODES;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The CPU hosting each node's worker (`usize::MAX` before [`start`]).
static HOST_CPU: [AtomicUsize; MAX_NODES] = [const { AtomicUsize::new(usize::MAX) }; MAX_NODES];
static WOKEN: [AtomicBool; MAX_NODES] = [const { AtomicBool::new(false) }; MAX_NODES];
static NEXT_MS: [AtomicU64; MAX_NODES] = [const { AtomicU64::new(0) }; MAX_NODES];
/// A round of this node's worker is in progress.
static RUNNING: [AtomicBool; MAX_NODES] = [const { AtomicBool::new(false) }; MAX_NODES];
/// Rounds run, for tests and the console.
pub static ROUNDS: AtomicU64 = AtomicU64::new(0);
/// Rounds run per node.
pub static NODE_ROUNDS: [AtomicU64; MAX_NODES] = [const { AtomicU64::new(0) }; MAX_NODES];

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

/// Choose each node's host CPU (after the APs are up) and set whether the workers run.
pub fn start(enabled: bool) {
    let online = smp::online_ids();
    let fallback = online.iter().copied().max().unwrap_or(0);
    let mut hosts = alloc::vec::Vec::new();
    for (nid, slot) in HOST_CPU.iter().enumerate() {
        // The node's highest CPU; for a CPU-less node, the highest CPU of the nearest
        // node that has CPUs (distance first, then the higher CPU).
        let info = crate::arch::numa::info();
        let host = online
            .iter()
            .copied()
            .min_by_key(|&c| {
                let home = crate::arch::numa::cpu_home_node(c);
                (info.distance(nid, home), core::cmp::Reverse(c))
            })
            .unwrap_or(fallback);
        slot.store(host, Ordering::Relaxed);
        if crate::memory::try_allocator().is_some_and(|a| a.model().node(nid).is_some()) {
            hosts.push(alloc::format!("node {nid} on cpu {host}"));
        }
    }
    ENABLED.store(enabled, Ordering::Release);
    log::info!(
        "kcompactd: {} when idle ({})",
        hosts.join(", "),
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
        for nid in 0..MAX_NODES {
            kick(nid);
        }
        return was;
    }
    let me = crate::arch::percpu::cpu_id();
    for (nid, running) in RUNNING.iter().enumerate() {
        let host = host_cpu(nid);
        // (On the host CPU a round in progress is the caller's own: nothing to wait for.)
        if host == usize::MAX || host == me {
            continue;
        }
        let bound = smp::wait_timeout_ms().saturating_mul(STOP_TIMEOUT_FACTOR);
        if let Err(t) = smp::wait_for_cpu_ms(bound, host, "to finish its kcompactd round", || {
            !running.load(Ordering::SeqCst)
        }) {
            panic!("kcompactd: node {nid}: {t}");
        }
    }
    was
}

/// The CPU that hosts node `nid`'s worker.
pub fn host_cpu(nid: usize) -> usize {
    HOST_CPU
        .get(nid)
        .map_or(usize::MAX, |h| h.load(Ordering::Relaxed))
}

/// `Platform::wake_kcompactd`: make node `nid`'s worker run a round soon.
pub fn wake(nid: usize) {
    if let Some(w) = WOKEN.get(nid) {
        w.store(true, Ordering::Release);
        kick(nid);
    }
}

fn kick(nid: usize) {
    let host = host_cpu(nid);
    if host != usize::MAX && host != crate::arch::percpu::cpu_id() {
        smp::wake_cpu(host);
    }
}

/// Run any due kcompactd round of the nodes whose worker `cpu` hosts. Called with
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
        if nid >= MAX_NODES || host_cpu(nid) != cpu {
            continue;
        }
        // Nested polls (an interrupt-time wait inside a round) must not start another.
        if RUNNING[nid].swap(true, Ordering::SeqCst) {
            continue;
        }
        if !ENABLED.load(Ordering::SeqCst) {
            // Disabled meanwhile: `set_enabled(false)` may already have seen RUNNING clear.
            RUNNING[nid].store(false, Ordering::Release);
            return;
        }
        let now = time::now_ns() / 1_000_000;
        let woken = WOKEN[nid].swap(false, Ordering::AcqRel);
        if woken || now >= NEXT_MS[nid].load(Ordering::Relaxed) {
            let sleep = alloc.kcompactd_run(nid, now);
            NEXT_MS[nid].store(
                (time::now_ns() / 1_000_000).saturating_add(sleep),
                Ordering::Relaxed,
            );
            ROUNDS.fetch_add(1, Ordering::Relaxed);
            NODE_ROUNDS[nid].fetch_add(1, Ordering::Relaxed);
        }
        RUNNING[nid].store(false, Ordering::Release);
    }
}
