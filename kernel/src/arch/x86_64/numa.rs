//! The machine's NUMA topology, from ACPI's SRAT (memory and CPU affinity) and SLIT
//! (distances), parsed by zonebuddy's `port::acpi_numa`.
//!
//! Read once at boot, after the MADT and before the memory model, which gets the node of
//! every RAM range ([`NumaInfo::ranges`]) and the distances between nodes. Tables that
//! are absent or malformed never stop the boot: the machine is one node, and a log line
//! says why (as Linux's `numa_init` falls back to `dummy_numa_init`).
//!
//! CPUs: the allocator asks for the node of a CPU index ([`cpu_to_node`]). CPU indices are
//! handed out by `smp::start_aps` (the boot CPU 0, then the MADT's CPUs in order); the
//! table here is filled with that plan before the allocator is built, and corrected as
//! each AP comes online. A CPU whose node has no memory allocates from the nearest node
//! that has some (Linux's `numa_mem_id`); [`cpu_home_node`] still names its own node.

use alloc::{format, string::String, vec, vec::Vec};
use core::sync::atomic::{AtomicU8, Ordering};

use spin::Once;
use zonebuddy::{
    NumaRange,
    port::acpi_numa::{LOCAL_DISTANCE, PxmMap, REMOTE_DISTANCE, Slit, Srat},
};

use super::{acpi, percpu::MAX_CPUS};

/// What the firmware says about nodes.
#[derive(Clone, Debug)]
pub struct NumaInfo {
    /// Node ids in use: `0..nr_nodes`, memory-less ones included.
    pub nr_nodes: usize,
    /// RAM ranges and their nodes (empty: one node).
    pub ranges: Vec<NumaRange>,
    /// `nr_nodes * nr_nodes` distances, row-major (SLIT, or 10/20 without one).
    pub distances: Vec<u8>,
    /// Does node `n` have memory?
    pub has_memory: Vec<bool>,
    /// Ranges the SRAT marks hot-pluggable.
    pub hotpluggable: Vec<(u64, u64)>,
    /// Where the distances came from.
    pub slit: bool,
}

impl NumaInfo {
    /// One node, no ranges: every RAM range is node 0.
    fn single() -> NumaInfo {
        NumaInfo {
            nr_nodes: 1,
            ranges: Vec::new(),
            distances: vec![LOCAL_DISTANCE],
            has_memory: vec![true],
            hotpluggable: Vec::new(),
            slit: false,
        }
    }

    /// Distance between nodes `a` and `b`.
    pub fn distance(&self, a: usize, b: usize) -> u8 {
        if a < self.nr_nodes && b < self.nr_nodes {
            self.distances[a * self.nr_nodes + b]
        } else if a == b {
            LOCAL_DISTANCE
        } else {
            REMOTE_DISTANCE
        }
    }

    /// The node with memory nearest to `nid` (itself when it has memory; ties go to the
    /// lower id).
    pub fn nearest_memory_node(&self, nid: usize) -> usize {
        (0..self.nr_nodes)
            .filter(|&n| self.has_memory[n])
            .min_by_key(|&n| (self.distance(nid, n), n))
            .unwrap_or(0)
    }
}

static INFO: Once<NumaInfo> = Once::new();

/// Node of each CPU index as the allocator sees it (nearest node with memory).
static CPU_MEM_NODE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Node of each CPU index as the firmware says (possibly memory-less).
static CPU_HOME_NODE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Node of each xAPIC id (ids are below 255 in xAPIC mode).
static APIC_NODE: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];

/// The topology ([`discover`] ran), one node before that.
pub fn info() -> &'static NumaInfo {
    INFO.call_once(NumaInfo::single)
}

/// The node CPU `cpu` allocates from: its own, or the nearest one with memory.
pub fn cpu_to_node(cpu: usize) -> usize {
    CPU_MEM_NODE
        .get(cpu)
        .map_or(0, |n| n.load(Ordering::Relaxed) as usize)
}

/// The node the firmware puts CPU `cpu` in (may have no memory).
pub fn cpu_home_node(cpu: usize) -> usize {
    CPU_HOME_NODE
        .get(cpu)
        .map_or(0, |n| n.load(Ordering::Relaxed) as usize)
}

/// Record that CPU index `cpu` is the one with APIC id `apic_id` (called as each CPU
/// comes online; the boot-time plan may have been off if an earlier AP failed to start).
pub fn cpu_online(cpu: usize, apic_id: u32) {
    if cpu < MAX_CPUS {
        let home = APIC_NODE
            .get(apic_id as usize)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        let mem = info().nearest_memory_node(home as usize) as u8;
        CPU_HOME_NODE[cpu].store(home, Ordering::Relaxed);
        CPU_MEM_NODE[cpu].store(mem, Ordering::Relaxed);
    }
}

/// Build the topology from the tables rooted at `rsdp`, for CPUs with APIC ids `apics` in
/// the order they will get CPU indices (boot CPU first). Prints what it found; never
/// fails (falls back to one node).
pub fn discover(rsdp: Option<u64>, apics: &[u32]) -> &'static NumaInfo {
    let info = INFO.call_once(|| match read(rsdp, apics) {
        Ok(Some(info)) => info,
        Ok(None) => {
            kprintln!("numa: no SRAT; one node");
            NumaInfo::single()
        }
        Err(e) => {
            log::warn!("numa: {e}; falling back to one node");
            NumaInfo::single()
        }
    });
    for (cpu, &apic) in apics.iter().enumerate().take(MAX_CPUS) {
        cpu_online(cpu, apic);
    }
    if info.nr_nodes > 1 {
        for nid in 0..info.nr_nodes {
            let cpus: Vec<usize> = (0..apics.len().min(MAX_CPUS))
                .filter(|&c| cpu_home_node(c) == nid)
                .collect();
            let mem: u64 = info
                .ranges
                .iter()
                .filter(|r| r.nid == nid)
                .map(|r| r.end - r.start)
                .sum();
            kprintln!(
                "numa: node {nid}: {} MiB, CPUs {}, distances {:?}{}",
                mem >> 20,
                cpulist(&cpus),
                (0..info.nr_nodes)
                    .map(|o| info.distance(nid, o))
                    .collect::<Vec<_>>(),
                if info.has_memory[nid] {
                    String::new()
                } else {
                    format!(
                        " (no memory: allocates from node {})",
                        info.nearest_memory_node(nid)
                    )
                }
            );
        }
    }
    info
}

/// CPU indices as Linux prints a cpulist ("0-3,6").
pub fn cpulist(cpus: &[usize]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !s.is_empty() {
            s.push(',');
        }
        if end == start {
            s += &format!("{start}");
        } else {
            s += &format!("{start}-{end}");
        }
        i += 1;
    }
    s
}

fn read(rsdp: Option<u64>, apics: &[u32]) -> Result<Option<NumaInfo>, String> {
    let acpi::NumaTables { srat, slit } =
        acpi::numa_tables(rsdp).map_err(|e| format!("ACPI tables: {e:?}"))?;
    let Some(srat) = srat else {
        return Ok(None);
    };
    let srat = Srat::parse(&srat).map_err(|e| format!("{e}"))?;
    let mut pxms = PxmMap::new();
    let mut ranges = vec![
        NumaRange {
            start: 0,
            end: 0,
            nid: 0
        };
        256
    ];
    let n = srat
        .memory_ranges(&mut pxms, &mut ranges)
        .map_err(|e| format!("{e}"))?;
    ranges.truncate(n);
    if ranges.is_empty() {
        return Err(String::from("SRAT has no enabled memory affinity entry"));
    }
    // Overlapping ranges of different nodes make the table meaningless (Linux refuses them
    // in `numa_meminfo_cleanup`/`numa_cleanup_meminfo` too).
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| r.start);
    if let Some(w) = sorted
        .windows(2)
        .find(|w| w[1].start < w[0].end && w[0].nid != w[1].nid)
    {
        return Err(format!(
            "SRAT ranges [{:#x}-{:#x}) (node {}) and [{:#x}-{:#x}) (node {}) overlap",
            w[0].start, w[0].end, w[0].nid, w[1].start, w[1].end, w[1].nid
        ));
    }
    let memory_nodes = pxms.nr_nodes();
    for &apic in apics {
        let nid = match srat.cpu_node(apic, &mut pxms) {
            Some(Ok(nid)) => nid,
            Some(Err(e)) => return Err(format!("{e}")),
            None => {
                log::warn!("numa: APIC id {apic} is not in the SRAT; putting it on node 0");
                0
            }
        };
        if let Some(slot) = APIC_NODE.get(apic as usize) {
            slot.store(nid as u8, Ordering::Relaxed);
        }
    }
    let nr_nodes = pxms.nr_nodes();
    let mut has_memory = vec![false; nr_nodes];
    for r in &ranges {
        has_memory[r.nid] = true;
    }
    debug_assert!(has_memory[..memory_nodes].iter().all(|&m| m));
    let slit = match slit.as_deref().map(Slit::parse) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            log::warn!("numa: SLIT refused ({e}); distances 10 local, 20 remote");
            None
        }
        None => None,
    };
    let mut distances = vec![0u8; nr_nodes * nr_nodes];
    for a in 0..nr_nodes {
        for b in 0..nr_nodes {
            distances[a * nr_nodes + b] = match &slit {
                Some(s) => s.node_distance(&pxms, a, b),
                None if a == b => LOCAL_DISTANCE,
                None => REMOTE_DISTANCE,
            };
        }
    }
    let hotpluggable = srat
        .entries()
        .filter_map(|e| match e {
            zonebuddy::port::acpi_numa::SratEntry::Memory {
                start,
                end,
                enabled: true,
                hotpluggable: true,
                ..
            } => Some((start, end)),
            _ => None,
        })
        .collect();
    kprintln!(
        "numa: SRAT: {} memory range(s), {nr_nodes} node(s){}",
        ranges.len(),
        if slit.is_some() {
            ", SLIT distances"
        } else {
            ""
        }
    );
    Ok(Some(NumaInfo {
        nr_nodes,
        ranges,
        distances,
        has_memory,
        hotpluggable,
        slit: slit.is_some(),
    }))
}
