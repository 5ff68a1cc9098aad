//! kcompactd hosted by a simulated CPU: a thread calls `kcompactd_run` and sleeps in
//! `SimPlatform::kcompactd_wait` for as long as it is told (capped, so the test never
//! waits long). A failed high-order allocation wakes it and it compacts until the order is
//! available; with `compaction_proactiveness` enabled it brings the node's fragmentation
//! score below the high watermark on its own.
//!
//! Nothing here asserts on time: the waits only bound how long a broken kcompactd can keep
//! the test from failing.

use crate::compaction_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use compaction_common::*;
use zonebuddy::model::mmzone::PAGEBLOCK_ORDER;
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::platform::Platform;
use zonebuddy::report::fragmentation::fragmentation_score_wmark;
use zonebuddy::report::vmstat::VmEvent;

/// Poll `cond` every 5 ms for up to 30 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "gave up waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kcompactd_woken_and_proactive() {
    let a = machine(256, 2);
    // Phase 1 without proactive compaction: only a wake-up makes kcompactd work.
    a.set_compaction_proactiveness(0).unwrap();
    let sc = fragmented(&a, 5);
    let plat = a.sim_platform();
    let stop = AtomicBool::new(false);
    let score0 = a.fragmentation_score_node(0);
    let high = fragmentation_score_wmark(20, false);
    assert!(
        score0 > high,
        "fragmentation score {score0} not above {high}"
    );

    std::thread::scope(|s| {
        s.spawn(|| {
            plat.bind_current_thread(1);
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let sleep = a.kcompactd_run(0, t0.elapsed().as_millis() as u64);
                plat.kcompactd_wait(0, Duration::from_millis(sleep.min(20)));
            }
        });

        let wake0 = a.vm_event(VmEvent::CompactDaemonWake);
        let nodirect = (GFP_KERNEL | Gfp::MOVABLE | Gfp::NOWARN).difference(Gfp::DIRECT_RECLAIM);
        let stall0 = a.vm_event(VmEvent::CompactStall);
        assert!(a.alloc_pages(nodirect, PAGEBLOCK_ORDER).is_none());
        let mut got = None;
        wait_for("kcompactd to make an order-9 block", || {
            got = a.alloc_pages(nodirect, PAGEBLOCK_ORDER);
            got.is_some()
        });
        let wakes = a.vm_event(VmEvent::CompactDaemonWake) - wake0;
        assert!(wakes > 0, "kcompactd never woke");
        assert_eq!(
            a.vm_event(VmEvent::CompactStall),
            stall0,
            "no direct compaction"
        );
        assert!(a.vm_event(VmEvent::CompactDaemonMigrateScanned) > 0);
        a.free_pages(got.unwrap(), PAGEBLOCK_ORDER).unwrap();
        let score1 = a.fragmentation_score_node(0);
        eprintln!(
            "woken: compact_daemon_wake +{wakes}, daemon migrate/free scanned {}/{}, score {score0} -> {score1}",
            a.vm_event(VmEvent::CompactDaemonMigrateScanned),
            a.vm_event(VmEvent::CompactDaemonFreeScanned)
        );

        // Phase 2: proactive compaction at the default proactiveness.
        a.set_compaction_proactiveness(20).unwrap();
        wait_for("the score to drop below the high watermark", || {
            a.fragmentation_score_node(0) <= high
        });
        let score2 = a.fragmentation_score_node(0);
        eprintln!("proactive: score {score1} -> {score2} (high {high})");

        stop.store(true, Ordering::Relaxed);
        plat.wake_kcompactd(0);
    });
    assert!(a.vm_event(VmEvent::CompactDaemonFreeScanned) > 0);
    sc.verify_all(&a);
    check(&a);
    sc.teardown(&a);
    check(&a);
}
