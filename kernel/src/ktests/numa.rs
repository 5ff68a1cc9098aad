//! NUMA: the nodes the SRAT describes are the nodes the allocator has, each CPU allocates
//! from its own node (the nearest node with memory for a CPU of a memory-less node),
//! `__GFP_THISNODE` stays on the node asked for, and each node's kcompactd runs on one
//! of that node's CPUs.
//!
//! On a machine without an SRAT (one node) every test reports itself skipped; `make test`
//! boots several NUMA layouts (tests/qemu.rs) where they run.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use zonebuddy::{GFP_KERNEL, Gfp, PAGE_SHIFT, model::mmzone::PAGEBLOCK_ORDER};

use crate::arch::{numa, percpu, smp};
use crate::ktest::TestResult;
use crate::memory::allocator;
use crate::{kassert, kassert_eq, ktest};

fn single_node(test: &str) -> Option<TestResult> {
    (numa::info().nr_nodes < 2)
        .then(|| crate::ktest::skip(alloc::format!("{test}: one node (no SRAT)")))
}

/// Pages of `[s, e)` (bytes) that are whole pages.
fn whole_pages(s: u64, e: u64) -> u64 {
    let s = s.div_ceil(1 << PAGE_SHIFT);
    let e = e >> PAGE_SHIFT;
    e.saturating_sub(s)
}

ktest! {
    fn nodes_follow_the_srat() -> TestResult {
        if let Some(r) = single_node("nodes_follow_the_srat") {
            return r;
        }
        let info = numa::info();
        let a = allocator();
        let model = a.model();
        for nid in 0..info.nr_nodes {
            let node = model.node(nid);
            kassert_eq!(node.is_some(), info.has_memory[nid]);
            let Some(node) = node else {
                kprintln!("numa: node {nid}: no memory");
                continue;
            };
            // Present pages: the RAM of the sanitised map inside the node's SRAT ranges.
            let mut expected = 0;
            for r in info.ranges.iter().filter(|r| r.nid == nid) {
                for ram in model.memory_map().ram() {
                    expected += whole_pages(ram.start.max(r.start), ram.end.min(r.end));
                }
            }
            let managed: u64 = node.populated_zones().map(|z| z.managed_pages()).sum();
            let srat_mib: u64 = info
                .ranges
                .iter()
                .filter(|r| r.nid == nid)
                .map(|r| (r.end - r.start) >> 20)
                .sum();
            kprintln!(
                "numa: node {nid}: SRAT {srat_mib} MiB, present {} pages, managed {managed} pages, zones {:?}",
                node.node_present_pages(),
                node.populated_zones().map(|z| z.zone_type.name()).collect::<Vec<_>>()
            );
            kassert_eq!(node.node_present_pages(), expected);
            kassert!(managed <= node.node_present_pages() && managed > 0);
        }
        // No node the SRAT does not name.
        kassert!(model.nodes().all(|n| n.node_id < info.nr_nodes));
        Ok(())
    }

    fn each_cpu_allocates_from_its_node() -> TestResult {
        if let Some(r) = single_node("each_cpu_allocates_from_its_node") {
            return r;
        }
        let a = allocator();
        for cpu in smp::online_ids() {
            let got = AtomicUsize::new(usize::MAX);
            let order9 = AtomicUsize::new(usize::MAX);
            let ran = smp::call_on_cpu(cpu, &|| {
                if let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
                    got.store(p.nid(), Ordering::SeqCst);
                    let _ = a.free_pages(p, 0);
                }
                if let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, PAGEBLOCK_ORDER) {
                    order9.store(p.nid(), Ordering::SeqCst);
                    let _ = a.free_pages(p, PAGEBLOCK_ORDER);
                }
            });
            kassert!(ran, "CPU {} not reachable", cpu);
            let want = numa::cpu_to_node(cpu);
            kprintln!(
                "numa: cpu {cpu} (node {}, allocates from node {want}): order 0 from node {}, order 9 from node {}",
                numa::cpu_home_node(cpu),
                got.load(Ordering::SeqCst),
                order9.load(Ordering::SeqCst)
            );
            kassert_eq!(got.load(Ordering::SeqCst), want);
            kassert_eq!(order9.load(Ordering::SeqCst), want);
        }
        Ok(())
    }

    fn thisnode_stays_on_its_node() -> TestResult {
        if let Some(r) = single_node("thisnode_stays_on_its_node") {
            return r;
        }
        let a = allocator();
        let me = numa::cpu_to_node(percpu::cpu_id());
        for node in a.model().nodes() {
            let nid = node.node_id;
            for order in [0, 3, PAGEBLOCK_ORDER] {
                let p = a
                    .alloc_pages_node(nid, GFP_KERNEL | Gfp::THISNODE | Gfp::NOWARN, order)
                    .ok_or("THISNODE allocation failed on a node with free memory")?;
                let got = p.nid();
                let _ = a.free_pages(p, order);
                kassert_eq!(got, nid);
            }
            // Without THISNODE a preferred node is only a preference, and it is honoured
            // while it has memory.
            let p = a
                .alloc_pages_node(nid, GFP_KERNEL | Gfp::NOWARN, 0)
                .ok_or("allocation failed")?;
            let got = p.nid();
            let _ = a.free_pages(p, 0);
            kassert_eq!(got, nid);
        }
        kassert!(a.model().node(me).is_some());
        Ok(())
    }

    fn zonelists_follow_the_slit() -> TestResult {
        if let Some(r) = single_node("zonelists_follow_the_slit") {
            return r;
        }
        let a = allocator();
        let info = numa::info();
        for node in a.model().nodes() {
            let nid = node.node_id;
            let mut order: Vec<usize> = a.zonelist_order(nid).map(|e| e.0).collect();
            order.dedup();
            kprintln!("numa: node {nid} zonelist: nodes {:?}", order);
            kassert_eq!(order.first().copied(), Some(nid));
            // Every node with memory, once, nearest first.
            let mut seen = order.clone();
            seen.sort_unstable();
            seen.dedup();
            kassert_eq!(seen.len(), order.len());
            kassert_eq!(seen, a.model().nodes().map(|n| n.node_id).collect::<Vec<_>>());
            kassert!(
                order.windows(2).all(|w| info.distance(nid, w[0]) <= info.distance(nid, w[1])),
                "node {} zonelist {:?} not in distance order",
                nid,
                order
            );
        }
        Ok(())
    }

    fn allocations_spill_to_the_nearest_node() -> TestResult {
        if let Some(r) = single_node("allocations_spill_to_the_nearest_node") {
            return r;
        }
        // The highest CPU fills its node with order-9 blocks until one comes from another
        // node: that node must be the next one in its zonelist (the nearest with memory).
        let a = allocator();
        let cpu = *smp::online_ids().last().ok_or("no CPU")?;
        let local = numa::cpu_to_node(cpu);
        let mut order: Vec<usize> = a.zonelist_order(local).map(|e| e.0).collect();
        order.dedup();
        let Some(&next) = order.get(1) else {
            return crate::ktest::skip("allocations_spill_to_the_nearest_node: one memory node");
        };
        let held = spin::Mutex::new(Vec::new());
        let spilled = AtomicUsize::new(usize::MAX);
        let limit = (a.model().node(local).map_or(0, |n| n.node_present_pages()) >> PAGEBLOCK_ORDER) + 64;
        smp::call_on_cpu(cpu, &|| {
            let mut held = held.lock();
            while (held.len() as u64) < limit {
                let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, PAGEBLOCK_ORDER) else {
                    break;
                };
                held.push(p);
                if p.nid() != local {
                    spilled.store(p.nid(), Ordering::SeqCst);
                    break;
                }
            }
        });
        let held = held.into_inner();
        let n = held.len();
        for p in held {
            let _ = a.free_pages(p, PAGEBLOCK_ORDER);
        }
        a.drain_all_pages();
        let spilled = spilled.load(Ordering::SeqCst);
        kprintln!(
            "numa: cpu {cpu} (node {local}) took {n} order-9 blocks, then spilled to node {spilled}; zonelist nodes {order:?}"
        );
        kassert_eq!(spilled, next);
        zonebuddy::check(a).map_err(|v| alloc::format!("invariant violated: {v}"))
    }

    fn node_sysfs_files_and_counters() -> TestResult {
        if let Some(r) = single_node("node_sysfs_files_and_counters") {
            return r;
        }
        let a = allocator();
        let info = numa::info();
        let read = |path: &str| -> Result<alloc::string::String, alloc::string::String> {
            let mut s = alloc::string::String::new();
            crate::procfs::read(path, &mut s).map_err(|e| alloc::format!("{path}: {e}"))?;
            Ok(s)
        };
        // One local and one remote allocation from this CPU: a hit and local on its node,
        // a hit and "other" on the remote one, as the node files must show.
        let me = numa::cpu_to_node(percpu::cpu_id());
        let remote = a.model().nodes().map(|n| n.node_id).find(|&n| n != me).ok_or("one memory node")?;
        let before = (a.node_numa_events(me), a.node_numa_events(remote));
        // (No scheduler: this test stays on its CPU, and the other CPUs are idle.)
        let p = a.alloc_pages_node(me, GFP_KERNEL | Gfp::THISNODE, 0).ok_or("local allocation failed")?;
        let q = a
            .alloc_pages_node(remote, GFP_KERNEL | Gfp::THISNODE, 0)
            .ok_or("remote allocation failed")?;
        let after = (a.node_numa_events(me), a.node_numa_events(remote));
        let _ = a.free_pages(p, 0);
        let _ = a.free_pages(q, 0);
        // numa_hit, local_node on the CPU's node; numa_hit, other_node on the remote one.
        kassert_eq!((after.0[0] - before.0[0], after.0[4] - before.0[4]), (1, 1));
        kassert_eq!((after.1[0] - before.1[0], after.1[5] - before.1[5]), (1, 1));
        for nid in 0..info.nr_nodes {
            let dir = alloc::format!("/sys/devices/system/node/node{nid}");
            let distance = read(&alloc::format!("{dir}/distance"))?;
            let want: Vec<alloc::string::String> =
                (0..info.nr_nodes).map(|to| alloc::format!("{}", info.distance(nid, to))).collect();
            kassert_eq!(distance.trim_end(), want.join(" "));
            let cpus: Vec<usize> = smp::online_ids().into_iter().filter(|&c| numa::cpu_home_node(c) == nid).collect();
            let cpulist = read(&alloc::format!("{dir}/cpulist"))?;
            kassert_eq!(cpulist.trim_end(), numa::cpulist(&cpus));
            let numastat = read(&alloc::format!("{dir}/numastat"))?;
            let meminfo = read(&alloc::format!("{dir}/meminfo"))?;
            if let Some(node) = a.model().node(nid) {
                let total_kb: u64 = node.populated_zones().map(|z| z.managed_pages() * 4).sum();
                kassert!(
                    meminfo.lines().next().is_some_and(|l| l.starts_with(&alloc::format!("Node {nid} MemTotal:"))
                        && l.split_whitespace().nth(3) == Some(alloc::format!("{total_kb}").as_str())),
                    "node {} meminfo: {}",
                    nid,
                    meminfo
                );
                kassert!(numastat.starts_with("numa_hit ") && numastat.contains("\nother_node "), "{}", numastat);
                kassert!(read(&alloc::format!("{dir}/vmstat"))?.contains("\nnuma_local "));
            }
            kprintln!("numa: node {nid}: distance {} cpulist {:?}", distance.trim_end(), numa::cpulist(&cpus));
        }
        let mut table = alloc::string::String::new();
        a.write_numastat(&mut table).map_err(|_| "numastat output")?;
        kprint!("{table}");
        Ok(())
    }

    fn kcompactd_runs_on_its_nodes_cpus() -> TestResult {
        if let Some(r) = single_node("kcompactd_runs_on_its_nodes_cpus") {
            return r;
        }
        let online = smp::online_ids();
        for node in allocator().model().nodes() {
            let nid = node.node_id;
            let host = crate::kcompactd::host_cpu(nid);
            let has_cpus = online.iter().any(|&c| numa::cpu_home_node(c) == nid);
            kprintln!("numa: node {nid}: kcompactd on cpu {host} (node {})", numa::cpu_home_node(host));
            kassert!(online.contains(&host), "node {} kcompactd host {} is offline", nid, host);
            if has_cpus {
                kassert_eq!(numa::cpu_home_node(host), nid);
            } else {
                // The nearest node with CPUs hosts it.
                let info = numa::info();
                let best = online.iter().map(|&c| info.distance(nid, numa::cpu_home_node(c))).min();
                kassert_eq!(Some(info.distance(nid, numa::cpu_home_node(host))), best);
            }
        }
        Ok(())
    }
}
