//! Many NUMA nodes (issue 13): up to `MAX_NUMNODES` = 64 node ids, dense (a 16-node server)
//! or sparse (nodes 0, 5 and 63), built through the simulation from a firmware map and SRAT
//! ranges. Each node's present pages, its zonelists (local node first, then every other
//! node), allocation with a node preference, and the invariant checker; node id 64 is
//! refused with a clear error; a single-node machine does not pay for the 64-node bound.

use std::collections::BTreeSet;
use std::mem::{MaybeUninit, size_of};

use zonebuddy::model::memmap::{FirmwareRange, RangeKind};
use zonebuddy::model::mm_init::{MemoryModel, ModelError, ModelParams};
use zonebuddy::model::mmzone::{MAX_NUMNODES, PAGE_SIZE, ZoneType};
use zonebuddy::model::node::NumaRange;
use zonebuddy::page_alloc::gfp::{GFP_HIGHUSER_MOVABLE, GFP_KERNEL, Gfp};
use zonebuddy::port::sim::{SimAllocator, SimMachine, SimPlatform};
use zonebuddy::{PageAllocator, check};

use crate::common;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A 16-node server: 128 MiB per node, nodes 0-7 below 1 GiB (node 0 also holds DMA),
/// nodes 8-15 from 4 GiB (ZONE_NORMAL).
fn sixteen_node_map() -> (Vec<FirmwareRange>, Vec<NumaRange>) {
    let map = vec![
        FirmwareRange::new(MIB, GIB, RangeKind::Usable),
        FirmwareRange::new(4 * GIB, 5 * GIB, RangeKind::Usable),
    ];
    let numa = (0..16u64)
        .map(|i| {
            let start = if i < 8 {
                i * 128 * MIB
            } else {
                4 * GIB + (i - 8) * 128 * MIB
            };
            NumaRange {
                start,
                end: start + 128 * MIB,
                nid: i as usize,
            }
        })
        .collect();
    (map, numa)
}

/// Nodes 0, 5 and 63, 256 MiB each: node 0 low (DMA, DMA32), 5 and 63 high (Normal).
fn sparse_map() -> (Vec<FirmwareRange>, Vec<NumaRange>) {
    let map = vec![
        FirmwareRange::new(MIB, 256 * MIB, RangeKind::Usable),
        FirmwareRange::new(4 * GIB, 4 * GIB + 256 * MIB, RangeKind::Usable),
        FirmwareRange::new(8 * GIB, 8 * GIB + 256 * MIB, RangeKind::Usable),
    ];
    let numa = vec![
        NumaRange {
            start: 0,
            end: 256 * MIB,
            nid: 0,
        },
        NumaRange {
            start: 4 * GIB,
            end: 4 * GIB + 256 * MIB,
            nid: 5,
        },
        NumaRange {
            start: 8 * GIB,
            end: 8 * GIB + 256 * MIB,
            nid: 63,
        },
    ];
    (map, numa)
}

fn build(map: &[FirmwareRange], numa: &[NumaRange], cpus: usize) -> SimAllocator {
    let params = ModelParams {
        numa,
        ..ModelParams::default()
    };
    SimAllocator::build(map, &[], &params, cpus).unwrap_or_else(|e| panic!("{e}"))
}

/// Present pages per node, from the map and the SRAT ranges alone.
fn expected_present(map: &[FirmwareRange], numa: &[NumaRange], nid: usize) -> u64 {
    let ram = common::ram_intervals(map);
    common::node_ram_pages(&ram, numa, nid, 0, u64::MAX)
}

/// Everything a machine with nodes `nids` must satisfy.
fn check_machine(a: &SimAllocator, map: &[FirmwareRange], numa: &[NumaRange], nids: &[usize]) {
    // The model against the independent oracle, page by page, at the hand-off point (on a
    // twin machine: the oracle expects no page handed out yet).
    let params = ModelParams {
        numa,
        ..ModelParams::default()
    };
    let twin = SimMachine::build(map, &[], &params, 1).unwrap();
    common::check_model(&twin.model, map, &[], numa, None, None);
    drop(twin);
    a.sim_platform().bind_current_thread(0);
    let model = a.model();
    let online: Vec<usize> = model.nodes().map(|n| n.node_id).collect();
    assert_eq!(online, nids, "online nodes");
    for nid in 0..MAX_NUMNODES {
        assert_eq!(model.node(nid).is_some(), nids.contains(&nid), "node {nid}");
    }
    for &nid in nids {
        let node = model.node(nid).unwrap();
        assert_eq!(node.node_id, nid);
        assert_eq!(
            node.node_present_pages(),
            expected_present(map, numa, nid),
            "node {nid} present pages"
        );
        assert!(node.managed_pages() > 0, "node {nid} manages pages");
    }
    // Every managed zone of every node, exactly once, in each node's zonelist; the node's
    // own zones first (highest first), then the other nodes in Linux's order.
    let managed: BTreeSet<(usize, ZoneType)> = model
        .nodes()
        .flat_map(|n| n.populated_zones().filter(|z| z.managed_zone()))
        .map(|z| (z.nid, z.zone_type))
        .collect();
    for &nid in nids {
        let order: Vec<(usize, ZoneType)> = a.zonelist_order(nid).collect();
        assert_eq!(order.len(), managed.len(), "node {nid}: zonelist length");
        let set: BTreeSet<_> = order.iter().copied().collect();
        assert_eq!(set, managed, "node {nid}: zonelist covers every zone once");
        assert_eq!(
            order[0].0, nid,
            "node {nid}: zonelist starts with the local node"
        );
        let mut node_order: Vec<usize> = order.iter().map(|e| e.0).collect();
        node_order.dedup();
        // Linux's order with every distance 20: the node itself, then the nodes above it,
        // then those below, each group ascending, nodes with CPUs after CPU-less ones in
        // each group (here every CPU is on node 0).
        let mut want: Vec<usize> = nids.iter().copied().filter(|&n| n != nid).collect();
        want.sort_by_key(|&n| (n < nid, n == 0, n));
        want.insert(0, nid);
        assert_eq!(node_order, want, "node {nid}: node order");
        for w in order.windows(2).filter(|w| w[0].0 == w[1].0) {
            assert!(
                w[0].1 > w[1].1,
                "node {nid}: own zones highest first: {order:?}"
            );
        }
    }
    // Allocation preferring a node comes from it, with and without __GFP_THISNODE, at
    // order 0 (the fast path) and above.
    for &nid in nids {
        let mut held = Vec::new();
        for (gfp, order) in [
            (GFP_KERNEL, 0),
            (GFP_KERNEL, 3),
            (GFP_KERNEL | Gfp::THISNODE, 0),
            (GFP_KERNEL | Gfp::THISNODE, 9),
        ] {
            let p = a
                .alloc_pages_node(nid, gfp, order)
                .unwrap_or_else(|| panic!("node {nid}: {gfp} order {order}"));
            assert_eq!(p.nid(), nid, "node {nid}: {gfp} order {order}");
            let pa = a.page_to_pfn(p) * PAGE_SIZE;
            assert!(
                numa.iter()
                    .any(|r| r.nid == nid && r.start <= pa && pa < r.end),
                "node {nid}: {pa:#x} is not in the node's SRAT ranges"
            );
            held.push((p, order));
        }
        for (p, order) in held {
            a.free_pages(p, order).unwrap();
        }
    }
    a.drain_all_pages();
    check(a).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(
        a.totalram_pages(),
        model.nodes().map(|n| n.managed_pages()).sum::<u64>()
    );
}

#[test]
fn sixteen_nodes_like_a_real_server() {
    let (map, numa) = sixteen_node_map();
    let a = build(&map, &numa, 2);
    let nids: Vec<usize> = (0..16).collect();
    check_machine(&a, &map, &numa, &nids);
    // Node 0 holds DMA and DMA32, nodes 1-7 DMA32, nodes 8-15 Normal.
    let model = a.model();
    assert!(model.zone(0, ZoneType::Dma).unwrap().managed_zone());
    assert!(model.zone(7, ZoneType::Dma32).unwrap().managed_zone());
    assert!(!model.zone(7, ZoneType::Normal).unwrap().populated());
    assert!(model.zone(15, ZoneType::Normal).unwrap().managed_zone());
    // A DMA request from a high node falls back to node 0, the only node with DMA.
    let p = a.alloc_pages_node(12, Gfp::DMA, 0).expect("DMA page");
    assert_eq!((p.nid(), p.zone_type()), (0, Some(ZoneType::Dma)));
    a.free_pages(p, 0).unwrap();
    // Memory of a whole node can be taken through its preference, then spills to others.
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages_node(9, GFP_KERNEL | Gfp::THISNODE | Gfp::NOWARN, 0) {
        assert_eq!(p.nid(), 9);
        held.push(p);
    }
    assert!(!held.is_empty());
    let spill = a
        .alloc_pages_node(9, GFP_KERNEL, 0)
        .expect("other nodes have memory");
    assert_ne!(spill.nid(), 9);
    a.free_pages(spill, 0).unwrap();
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    a.drain_all_pages();
    check(&a).unwrap_or_else(|v| panic!("{v}"));
    // Every node compacts.
    for nid in 0..16 {
        assert!(a.compact_node(nid).is_some(), "compact node {nid}");
    }
}

#[test]
fn sparse_node_ids_up_to_63() {
    let (map, numa) = sparse_map();
    let a = build(&map, &numa, 1);
    check_machine(&a, &map, &numa, &[0, 5, 63]);
    // Linux's order at equal distances: nodes above first, then below, CPU nodes last in
    // each group (the one CPU is on node 0): 63 -> 5 -> 0.
    let nodes_of = |nid| {
        let mut v: Vec<usize> = a.zonelist_order(nid).map(|e| e.0).collect();
        v.dedup();
        v
    };
    assert_eq!(nodes_of(63), [63, 5, 0]);
    assert_eq!(nodes_of(5), [5, 63, 0]);
    // No zonelist for nodes without memory; a preference for one means the local node.
    assert_eq!(a.zonelist_order(7).count(), 0);
    let p = a.alloc_pages_node(7, GFP_KERNEL, 0).unwrap();
    assert_eq!(
        p.nid(),
        0,
        "the CPU's node (0) serves an offline preference"
    );
    a.free_pages(p, 0).unwrap();
    assert!(a.compact_node(63).is_some());
    assert!(a.compact_node(62).is_none());
}

#[test]
fn node_64_is_refused_with_a_clear_error() {
    let map = [FirmwareRange::new(MIB, 256 * MIB, RangeKind::Usable)];
    for (nid, ok) in [(63, true), (MAX_NUMNODES, false), (1000, false)] {
        let numa = [NumaRange {
            start: 0,
            end: 256 * MIB,
            nid,
        }];
        let params = ModelParams {
            numa: &numa,
            ..ModelParams::default()
        };
        let p = SimPlatform::for_map(&map, &[], 1).unwrap();
        match MemoryModel::init(&p, map, &[], &params) {
            Ok(m) => {
                assert!(ok, "node {nid} accepted");
                assert_eq!(m.nodes().map(|n| n.node_id).collect::<Vec<_>>(), [nid]);
            }
            Err(e) => {
                assert!(!ok, "node {nid} refused: {e}");
                assert_eq!(e, ModelError::BadNumaRange(numa[0]));
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("node {nid}")) && msg.contains("not below 64"),
                    "{msg}"
                );
            }
        }
    }
    assert_eq!(MAX_NUMNODES, 64);
}

/// The sizes of the objects a port holds for a single-node machine, measured before the
/// node bound went from 8 to 64 (debug and release alike, x86_64): `MemoryModel` 14472
/// bytes (14544 once the model kept its `ArchParams`, 72 bytes that have nothing to do
/// with nodes), `PageAllocator<&SimPlatform>` 31056. The bound moved per-node tables into the
/// node descriptors (allocated at boot on each node); what is left sized by the bound is
/// `NODE_DATA` (8 bytes per possible node). Neither object may grow by more than
/// [`SLACK`] over those figures.
const MODEL_BYTES_WITH_8_NODES: usize = 14544;
const ALLOC_BYTES_WITH_8_NODES: usize = 31056;
const SLACK: usize = 384;

#[test]
fn single_node_objects_do_not_grow_with_the_node_bound() {
    let model = size_of::<MemoryModel>();
    let alloc = size_of::<PageAllocator<&SimPlatform>>();
    eprintln!(
        "size_of MemoryModel {model} (was {MODEL_BYTES_WITH_8_NODES}), PageAllocator {alloc} (was {ALLOC_BYTES_WITH_8_NODES})"
    );
    assert!(
        model <= MODEL_BYTES_WITH_8_NODES + SLACK,
        "MemoryModel is {model} bytes"
    );
    assert!(
        alloc <= ALLOC_BYTES_WITH_8_NODES + SLACK,
        "PageAllocator is {alloc} bytes"
    );
    // And the memory a single-node machine gives its node descriptor stays small: the
    // zonelist storage is sized by the nodes present, not by the bound.
    let map = [FirmwareRange::new(MIB, 256 * MIB, RangeKind::Usable)];
    let a = SimAllocator::build(&map, &[], &ModelParams::default(), 1).unwrap();
    let (sixteen, numa16) = sixteen_node_map();
    let b = build(&sixteen, &numa16, 1);
    let per_node_1 = node_descriptor_bytes(&a);
    let per_node_16 = node_descriptor_bytes(&b) / 16;
    eprintln!("node descriptor bytes: 1 node {per_node_1}, 16 nodes {per_node_16} each");
    assert!(per_node_16 > per_node_1);
    assert!(
        per_node_1 - size_of::<zonebuddy::model::node::Node>() <= 64,
        "single node: {per_node_1}"
    );
}

/// Metadata beyond SPARSEMEM's: the node descriptors with their zonelist storage.
fn node_descriptor_bytes(a: &SimAllocator) -> usize {
    let m = a.model();
    (m.metadata_bytes() - m.sparse().stats().total_bytes()) as usize
}

/// A 16-node machine comes up in place, and serves every node, on a 32 KiB stack.
#[test]
fn sixteen_nodes_on_a_small_stack() {
    let (map, numa) = sixteen_node_map();
    let platform = SimPlatform::for_map(&map, &[], 1).unwrap();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(32 * 1024)
            .spawn_scoped(s, || {
                platform.bind_current_thread(0);
                let mut slot = Box::new(MaybeUninit::<PageAllocator<&SimPlatform>>::uninit());
                let params = ModelParams {
                    numa: &numa,
                    ..ModelParams::default()
                };
                let a = PageAllocator::init_in(&mut slot, &platform, &map, &[], &params)
                    .expect("init in place");
                for nid in 0..16 {
                    let p = a.alloc_pages_node(nid, GFP_KERNEL, 0).unwrap();
                    assert_eq!(p.nid(), nid);
                    a.free_pages(p, 0).unwrap();
                }
                a.drain_all_pages();
                check(a).unwrap_or_else(|v| panic!("{v}"));
            })
            .unwrap()
            .join()
            .unwrap();
    });
}

// ---- zonelist order against hand-worked distance tables (Linux's build_zonelists) ----

/// Four nodes of 128 MiB below 512 MiB, CPU `i` on node `cpu_nodes[i]`, distances `dist`
/// (row-major); the node order of each node's zonelist.
fn zonelist_orders(dist: &[u8], cpu_nodes: &[usize]) -> Vec<Vec<usize>> {
    let map = vec![FirmwareRange::new(MIB, 512 * MIB, RangeKind::Usable)];
    let numa: Vec<NumaRange> = (0..4u64)
        .map(|i| NumaRange {
            start: i * 128 * MIB,
            end: (i + 1) * 128 * MIB,
            nid: i as usize,
        })
        .collect();
    let params = ModelParams {
        numa: &numa,
        numa_distance: dist,
        ..ModelParams::default()
    };
    let platform = SimPlatform::for_map(&map, &[], cpu_nodes.len())
        .unwrap()
        .with_cpu_nodes(cpu_nodes)
        .unwrap();
    let a = SimAllocator::build_on(platform, &map, &[], &params).unwrap_or_else(|e| panic!("{e}"));
    for n in a.model().nodes() {
        for to in 0..4 {
            assert_eq!(
                usize::from(n.distance_to(to)),
                usize::from(dist[n.node_id * 4 + to])
            );
        }
    }
    (0..4)
        .map(|nid| {
            let mut order: Vec<usize> = a.zonelist_order(nid).map(|e| e.0).collect();
            order.dedup();
            order
        })
        .collect()
}

/// Nearest first: a chain 0-1-2-3 (the 4-node QEMU configuration's table). Nodes at equal
/// distance go to the one above the local node first ("prefer the next node").
#[test]
fn zonelists_follow_distances() {
    let chain = [
        10, 20, 30, 40, 20, 10, 20, 30, 30, 20, 10, 20, 40, 30, 20, 10,
    ];
    let orders = zonelist_orders(&chain, &[0, 1, 2, 3]);
    assert_eq!(orders[0], [0, 1, 2, 3]);
    // Node 1: nodes 0 and 2 are both at 20; 2 is above 1, so it comes first.
    assert_eq!(orders[1], [1, 2, 0, 3]);
    assert_eq!(orders[2], [2, 3, 1, 0]);
    assert_eq!(orders[3], [3, 2, 1, 0]);
}

/// Ties broken by CPUs: with every distance 20 and the only CPUs on node 0, node 0 comes
/// last in every other node's list (Linux prefers CPU-less nodes, which have no local
/// allocations of their own).
#[test]
fn zonelists_prefer_cpuless_nodes_on_ties() {
    let flat = [
        10, 20, 20, 20, 20, 10, 20, 20, 20, 20, 10, 20, 20, 20, 20, 10,
    ];
    let orders = zonelist_orders(&flat, &[0, 0]);
    assert_eq!(orders[0], [0, 1, 2, 3]);
    assert_eq!(orders[1], [1, 2, 3, 0]);
    assert_eq!(orders[2], [2, 3, 1, 0]);
    assert_eq!(orders[3], [3, 1, 2, 0]);
    // CPUs everywhere: plain "above first, then below", ascending.
    let orders = zonelist_orders(&flat, &[0, 1, 2, 3]);
    assert_eq!(orders[2], [2, 3, 0, 1]);
    assert_eq!(orders[3], [3, 0, 1, 2]);
}

/// Ties broken by node load: the first node of each distance group in a zonelist gets a
/// unit of load, and later zonelists prefer the less loaded of two equally distant nodes.
/// Worked by hand (asymmetric table; CPUs on every node):
/// - node 0: 0, 1 (load[1] = 1), 2, 3;
/// - node 1: 1, 0 at 15 (load[0] = 1), 2 at 20 (load[2] = 1), 3;
/// - node 2: 2, 0 at 15 (load[0] = 2), 3 at 20 above 1 (load[3] = 1), 1;
/// - node 3: 0 and 1 both at 20 and both below 3: load[1] = 1 < load[0] = 2, so 1 first
///   although its id is higher.
#[test]
fn zonelists_break_remaining_ties_by_node_load() {
    let d = [
        10, 20, 20, 20, 15, 10, 20, 20, 15, 20, 10, 20, 20, 20, 30, 10,
    ];
    let orders = zonelist_orders(&d, &[0, 1, 2, 3]);
    assert_eq!(orders[0], [0, 1, 2, 3]);
    assert_eq!(orders[1], [1, 0, 2, 3]);
    assert_eq!(orders[2], [2, 0, 3, 1]);
    assert_eq!(orders[3], [3, 1, 0, 2]);
}

/// A bad table is refused with the entry at fault, and one that is not square by its
/// length; nothing is built.
#[test]
fn bad_distance_tables_are_refused() {
    let map = vec![FirmwareRange::new(MIB, 512 * MIB, RangeKind::Usable)];
    for (table, want) in [
        (vec![10u8, 20, 20], "not the square"),
        (vec![10, 20, 20, 9], "1->1 is 9"),
        (vec![10, 10, 20, 10], "0->1 is 10"),
    ] {
        let params = ModelParams {
            numa_distance: &table,
            ..ModelParams::default()
        };
        let e = match SimAllocator::build(&map, &[], &params, 1) {
            Ok(_) => panic!("{table:?} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{table:?}: {e}");
    }
}

// ---- NUMA counters (zone_statistics) ----

/// Two nodes of 128 MiB, CPU 0 on node 0 and CPU 1 on node 1; the calling thread is CPU 0.
fn two_node_machine() -> SimAllocator {
    let map = vec![FirmwareRange::new(MIB, 256 * MIB, RangeKind::Usable)];
    let numa = [
        NumaRange {
            start: 0,
            end: 128 * MIB,
            nid: 0,
        },
        NumaRange {
            start: 128 * MIB,
            end: 256 * MIB,
            nid: 1,
        },
    ];
    let params = ModelParams {
        numa: &numa,
        ..ModelParams::default()
    };
    let platform = SimPlatform::for_map(&map, &[], 2)
        .unwrap()
        .with_cpu_nodes(&[0, 1])
        .unwrap();
    let a = SimAllocator::build_on(platform, &map, &[], &params).unwrap_or_else(|e| panic!("{e}"));
    a.sim_platform().bind_current_thread(0);
    a
}

/// Counter deltas of node `nid` since `before`.
fn numa_delta(a: &SimAllocator, nid: usize, before: &[u64; 6]) -> [u64; 6] {
    let now = a.node_numa_events(nid);
    core::array::from_fn(|i| now[i] - before[i])
}

const HIT: usize = 0;
const MISS: usize = 1;
const FOREIGN: usize = 2;
const INTERLEAVE: usize = 3;
const LOCAL: usize = 4;
const OTHER: usize = 5;

/// Linux's classification, checked step by step: a local allocation is a hit and local;
/// one preferring the other node is a hit there and "other"; one that wanted node 0 but got
/// node 1 (node 0 full) is a miss on node 1 and foreign on node 0; interleaved ones that
/// got their node count as `numa_interleave`. `/proc/vmstat` sums the nodes, and the
/// numastat table shows each.
#[test]
fn numa_counters_classify_every_allocation() {
    use zonebuddy::report::vmstat::NumaEvent;
    assert_eq!(
        [
            NumaEvent::NumaHit,
            NumaEvent::NumaMiss,
            NumaEvent::NumaForeign,
            NumaEvent::NumaInterleave,
            NumaEvent::NumaLocal,
            NumaEvent::NumaOther
        ]
        .map(|e| e.index()),
        [HIT, MISS, FOREIGN, INTERLEAVE, LOCAL, OTHER]
    );
    let a = two_node_machine();
    let mut held = Vec::new();
    // 1. Ten local order-0 allocations and one order-3: hits and local on node 0.
    let (b0, b1) = (a.node_numa_events(0), a.node_numa_events(1));
    for _ in 0..10 {
        held.push((a.alloc_pages(GFP_KERNEL, 0).unwrap(), 0));
    }
    held.push((a.alloc_pages(GFP_KERNEL, 3).unwrap(), 3));
    assert_eq!(numa_delta(&a, 0, &b0), [18, 0, 0, 0, 18, 0]);
    assert_eq!(numa_delta(&a, 1, &b1), [0; 6]);
    // 2. Preferring node 1 from CPU 0: hits on node 1, but not local there.
    let (b0, b1) = (a.node_numa_events(0), a.node_numa_events(1));
    for _ in 0..5 {
        let p = a.alloc_pages_node(1, GFP_KERNEL, 0).unwrap();
        assert_eq!(p.nid(), 1);
        held.push((p, 0));
    }
    assert_eq!(numa_delta(&a, 1, &b1), [5, 0, 0, 0, 0, 5]);
    assert_eq!(numa_delta(&a, 0, &b0), [0; 6]);
    // 3. Node 0 full (THISNODE until refused): the next allocation wanted node 0 and got
    //    node 1: a miss on node 1, foreign on node 0, and "other" (CPU 0 is on node 0).
    let mut filled = 0u64;
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::THISNODE | Gfp::NOWARN, 0) {
        assert_eq!(p.nid(), 0);
        held.push((p, 0));
        filled += 1;
    }
    let (b0, b1) = (a.node_numa_events(0), a.node_numa_events(1));
    let p = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0).unwrap();
    assert_eq!(
        p.nid(),
        1,
        "node 0 is full: the zonelist's next node serves"
    );
    held.push((p, 0));
    assert_eq!(numa_delta(&a, 1, &b1), [0, 1, 0, 0, 0, 1]);
    assert_eq!(numa_delta(&a, 0, &b0), [0, 0, 1, 0, 0, 0]);
    assert!(filled > 20_000, "node 0 took {filled} pages");
    for (p, o) in held.drain(..) {
        a.free_pages(p, o).unwrap();
    }
    // 4. Interleaving alternates the nodes; each got its node.
    let (b0, b1) = (a.node_numa_events(0), a.node_numa_events(1));
    let mut nodes = Vec::new();
    for _ in 0..6 {
        let p = a.alloc_pages_interleave(GFP_KERNEL, 0).unwrap();
        nodes.push(p.nid());
        held.push((p, 0));
    }
    assert!(nodes.windows(2).all(|w| w[0] != w[1]), "{nodes:?}");
    assert_eq!(numa_delta(&a, 0, &b0)[INTERLEAVE], 3);
    assert_eq!(numa_delta(&a, 1, &b1)[INTERLEAVE], 3);
    // The views: /proc/vmstat sums the nodes; the numastat table has a column per node.
    let mut vmstat = String::new();
    a.write_vmstat(&mut vmstat).unwrap();
    let total: u64 = (0..2).map(|n| a.node_numa_events(n)[HIT]).sum();
    assert!(vmstat.contains(&format!("numa_hit {total}\n")), "{vmstat}");
    let mut table = String::new();
    a.write_numastat(&mut table).unwrap();
    let header = table.lines().next().unwrap();
    assert!(
        header.trim_start().starts_with("node0") && header.ends_with("node1"),
        "{table}"
    );
    let foreign: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("numa_foreign"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(foreign[1], a.node_numa_events(0)[FOREIGN].to_string());
    let mut node_file = String::new();
    a.write_node_numastat(1, &mut node_file).unwrap();
    assert!(
        node_file.starts_with("numa_hit ") && node_file.contains("\nother_node "),
        "{node_file}"
    );
    let mut meminfo = String::new();
    a.write_node_meminfo(1, &mut meminfo).unwrap();
    assert!(meminfo.starts_with("Node 1 MemTotal:"), "{meminfo}");
    for (p, o) in held {
        a.free_pages(p, o).unwrap();
    }
    a.drain_all_pages();
    check(&a).unwrap_or_else(|v| panic!("{v}"));
}

/// Per-node kcompactd: a round of node 1's worker compacts node 1 and nothing else.
/// Both nodes hold anon pages with every other one zapped (fragmentation scores near
/// 100); after `kcompactd_run(1)` node 1's pages moved and its score fell, while every
/// page of node 0 is in the frame it was in and node 0's score is what it was.
#[test]
fn kcompactd_of_a_node_compacts_only_that_node() {
    use zonebuddy::report::vmstat::VmEvent;
    let a = two_node_machine();
    let per_node = 8192u64;
    let mut regions = Vec::new();
    for cpu in 0..2 {
        a.sim_platform().bind_current_thread(cpu);
        let r = a.anon_region_create(per_node).unwrap();
        for i in 0..per_node {
            a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE).unwrap();
        }
        for i in (1..per_node).step_by(2) {
            assert!(a.anon_region_zap(r, i).unwrap());
        }
        regions.push(r);
    }
    a.sim_platform().bind_current_thread(0);
    a.drain_all_pages();
    let pfns = |r| -> Vec<u64> {
        (0..per_node)
            .step_by(2)
            .map(|i| a.anon_region_pfn(r, i).unwrap().unwrap())
            .collect()
    };
    let (node0_before, node1_before) = (pfns(regions[0]), pfns(regions[1]));
    assert!(
        node0_before
            .iter()
            .all(|&p| a.pfn_to_page(p).unwrap().nid() == 0)
    );
    assert!(
        node1_before
            .iter()
            .all(|&p| a.pfn_to_page(p).unwrap().nid() == 1)
    );
    let scores = (a.fragmentation_score_node(0), a.fragmentation_score_node(1));
    let migrated0 = a.vm_event(VmEvent::PgmigrateSuccess);
    a.set_compaction_proactiveness(100).unwrap();
    a.kcompactd_run(1, u64::MAX / 2);
    let migrated = a.vm_event(VmEvent::PgmigrateSuccess) - migrated0;
    let node1_after = pfns(regions[1]);
    let moved1 = node1_before
        .iter()
        .zip(&node1_after)
        .filter(|(b, a)| b != a)
        .count();
    eprintln!(
        "kcompactd node 1: {migrated} pages migrated, {moved1} of node 1's kept pages moved; scores {scores:?} -> ({}, {})",
        a.fragmentation_score_node(0),
        a.fragmentation_score_node(1)
    );
    assert!(migrated > 0 && moved1 > 0, "node 1 was not compacted");
    assert!(
        node1_after
            .iter()
            .all(|&p| a.pfn_to_page(p).unwrap().nid() == 1)
    );
    assert_eq!(pfns(regions[0]), node0_before, "node 0's pages moved");
    assert_eq!(a.fragmentation_score_node(0), scores.0);
    assert!(a.fragmentation_score_node(1) < scores.1);
    for r in regions {
        a.anon_region_destroy(r).unwrap();
    }
    a.drain_all_pages();
    check(&a).unwrap_or_else(|v| panic!("{v}"));
}
