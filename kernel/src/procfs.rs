//! `/proc` and `/sys` for the serial console: reading views and tunables, writing tunables
//! and triggers.
//!
//! There is no VFS. The tree of paths (what exists, what is a directory, what each file is)
//! is data in the host-tested `console::fs`; this module only connects each file to the
//! allocator: a view to its `write_*` formatter in `mm`, a tunable to its getter and
//! setter. Values are parsed by `console::tunable` (pure, property-tested) before anything
//! is touched, and then go through `mm`'s setters, which check the range again and rerun
//! Linux's recomputations (watermarks, lowmem_reserve, pcp high/batch). Either refusal
//! leaves the old value in place and comes back as a [`ProcError`] the console prints.
//!
//! The same write path serves the kernel command line ([`apply_cmdline`]), so
//! `min_free_kbytes=4096` at boot and `echo 4096 > /proc/sys/vm/min_free_kbytes` later are
//! one code path with one set of error messages.

use alloc::{format, string::String, vec::Vec};
use core::fmt::{self, Write};

use console::{
    fs::{self, BlockFile, CmaFile, File, Node, NodeView, View},
    tunable::{self, Kind, ListText, MAX_LIST, Tunable, Value},
};
use zonebuddy::{
    model::mmzone::{MAX_NR_ZONES, PAGE_SIZE},
    movement::memory_hotplug::{HotplugError, OnlineType},
    page_alloc::PageAllocator,
};

use crate::{cmdline::Cmdline, memory::allocator, platform::KernelPlatform};

/// Why a read or write failed. The message is complete ("Permission denied", the accepted
/// range, ...); the console prefixes the command and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcError(pub String);

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> ProcError {
    ProcError(msg.into())
}

/// Bit N set when node N exists (the `nodeN` directories): every node the firmware
/// describes, memory-less ones included, as in Linux's sysfs.
pub fn node_mask() -> u64 {
    let with_memory = allocator()
        .model()
        .nodes()
        .filter(|n| n.node_id < fs::MAX_NODES)
        .fold(0, |m, n| m | 1 << n.node_id);
    let described =
        (0..crate::arch::numa::info().nr_nodes.min(fs::MAX_NODES)).fold(0u64, |m, n| m | 1 << n);
    with_memory | described
}

/// What exists beyond the fixed tree right now: nodes, memory blocks, CMA areas.
pub struct Tree {
    nodes: u64,
    blocks: [u64; fs::MAX_MEMORY_BLOCKS / 64],
    cma: Vec<String>,
    ramdisk: Vec<&'static str>,
}

impl Tree {
    /// The machine as it is now.
    pub fn now() -> Tree {
        let a = allocator();
        let mut blocks = [0u64; fs::MAX_MEMORY_BLOCKS / 64];
        let per_block = a.memory_block_pages();
        let end_pfn = a
            .model()
            .nodes()
            .map(|n| n.node_end_pfn())
            .max()
            .unwrap_or(0);
        for b in 0..end_pfn
            .div_ceil(per_block)
            .min(fs::MAX_MEMORY_BLOCKS as u64)
        {
            if a.pfn_to_page(b * per_block).is_some() {
                blocks[b as usize / 64] |= 1 << (b % 64);
            }
        }
        let cma = (0..a.cma_nr_areas().min(fs::MAX_CMA_AREAS))
            .filter_map(|i| a.cma_area(i).map(|s| String::from(s.name())))
            .collect();
        let ramdisk = crate::ramdisk::get()
            .map(|r| {
                (0..r.image().nr_files())
                    .filter_map(|i| r.name(i))
                    .collect()
            })
            .unwrap_or_default();
        Tree {
            nodes: node_mask(),
            blocks,
            cma,
            ramdisk,
        }
    }

    /// The CMA areas' names, for [`Tree::present`].
    pub fn names(&self) -> Vec<&str> {
        self.cma.iter().map(String::as_str).collect()
    }

    /// The tree's view of it, with `names` from [`Tree::names`].
    pub fn present<'a>(&'a self, names: &'a [&'a str]) -> fs::Present<'a> {
        fs::Present {
            nodes: self.nodes,
            blocks: &self.blocks,
            cma: names,
            ramdisk: &self.ramdisk,
        }
    }
}

/// A file of `/sys/devices/system/memory/memoryN/`: Linux's values. A block that spans
/// two zones (block 0 holds DMA and DMA32) cannot go offline: its `valid_zones` is
/// `none`, as in Linux, and `removable` 0.
fn read_block_file(
    a: &PageAllocator<KernelPlatform>,
    f: BlockFile,
    block: u64,
    out: &mut dyn Write,
) -> fmt::Result {
    let mut text = String::new();
    let lines = match a.write_memory_block(&mut text, block) {
        Ok(r) => {
            r?;
            text.as_str()
        }
        Err(HotplugError::MixedZones(_)) => {
            "state: online\nphys_index: -\nvalid_zones: none\nremovable: 0\n"
        }
        Err(e) => return writeln!(out, "{e}"),
    };
    let key = match f {
        BlockFile::State => "state",
        BlockFile::PhysIndex => return writeln!(out, "{block:08x}"),
        BlockFile::ValidZones => "valid_zones",
        BlockFile::Removable => "removable",
    };
    let value = lines
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or("?");
    writeln!(out, "{value}")
}

/// `echo offline|online|online_kernel|online_movable > /sys/devices/system/memory/memoryN/state`:
/// do it, and say what it took (and, onlining, which zone the block went to); a refusal is
/// the allocator's reason (which pfn, which zone, why).
fn write_block_state(block: u64, value: &str, out: &mut dyn Write) -> Result<(), ProcError> {
    let a = allocator();
    let start = crate::arch::time::now_ns();
    let ms = || (crate::arch::time::now_ns() - start) / 1_000_000;
    match value.trim() {
        "offline" => {
            let st = a
                .offline_memory_block(block)
                .map_err(|e| err(format!("{e}")))?;
            let _ = writeln!(
                out,
                "memory{block}: offline in {} ms; {} pages migrated ({} failed attempts, {} passes)",
                ms(),
                st.migrated,
                st.migrate_failed,
                st.passes
            );
            Ok(())
        }
        word => {
            let Some(t) = OnlineType::parse(word) else {
                return Err(err(format!(
                    "'{word}': expected offline, online, online_kernel or online_movable"
                )));
            };
            let st = a
                .online_memory_block_as(block, t)
                .map_err(|e| err(format!("{e}")))?;
            let _ = writeln!(
                out,
                "memory{block}: online in {} ms; {} pages into {}",
                ms(),
                st.pages,
                st.zone.name()
            );
            Ok(())
        }
    }
}

/// A file of `/sys/kernel/debug/cma/<name>/` (Linux's debugfs names and formats).
fn read_cma_file(
    a: &PageAllocator<KernelPlatform>,
    f: CmaFile,
    area: usize,
    out: &mut dyn Write,
) -> Result<fmt::Result, ProcError> {
    let s = a
        .cma_area(area)
        .ok_or_else(|| err(format!("cma: no area {area}")))?;
    Ok(match f {
        CmaFile::BasePfn => writeln!(out, "{}", s.base_pfn),
        CmaFile::Count => writeln!(out, "{}", s.count),
        CmaFile::Used => writeln!(out, "{}", s.used),
        CmaFile::Maxchunk => writeln!(out, "{}", s.maxchunk),
        CmaFile::OrderPerBit => writeln!(out, "{}", s.order_per_bit),
        CmaFile::Bitmap => (|| {
            for (i, w) in s.bitmap_u32().enumerate() {
                if i > 0 {
                    out.write_char(' ')?;
                }
                write!(out, "{w}")?;
            }
            out.write_char('\n')
        })(),
    })
}

/// A file of `/sys/devices/system/node/nodeN/`.
fn read_node_view(
    a: &PageAllocator<KernelPlatform>,
    v: NodeView,
    nid: usize,
    out: &mut dyn Write,
) -> fmt::Result {
    let info = crate::arch::numa::info();
    match v {
        NodeView::Cpulist => {
            let cpus: alloc::vec::Vec<usize> = crate::arch::smp::online_ids()
                .into_iter()
                .filter(|&c| crate::arch::numa::cpu_home_node(c) == nid)
                .collect();
            writeln!(out, "{}", crate::arch::numa::cpulist(&cpus))
        }
        NodeView::Distance => {
            let nodes = info.nr_nodes.max(1);
            for to in 0..nodes {
                if to > 0 {
                    out.write_char(' ')?;
                }
                write!(out, "{}", info.distance(nid, to))?;
            }
            out.write_char('\n')
        }
        NodeView::Meminfo => a.write_node_meminfo(nid, out),
        NodeView::Numastat => a.write_node_numastat(nid, out),
        NodeView::Vmstat => a.write_node_vmstat(nid, out),
    }
}

/// A tunable's current value (`None` for a write-only trigger).
pub fn tunable_value(t: &Tunable) -> Option<TunableValue> {
    let s = allocator().sysctl();
    Some(TunableValue::Int(match t.name {
        "compact_unevictable_allowed" => s.compact_unevictable_allowed,
        "compaction_proactiveness" => s.compaction_proactiveness,
        "extfrag_threshold" => s.extfrag_threshold,
        "min_free_kbytes" => s.min_free_kbytes,
        "percpu_pagelist_high_fraction" => s.percpu_pagelist_high_fraction,
        "watermark_boost_factor" => s.watermark_boost_factor,
        "watermark_scale_factor" => s.watermark_scale_factor,
        "lowmem_reserve_ratio" => return Some(TunableValue::List(s.lowmem_reserve_ratio)),
        _ => return None,
    }))
}

/// A tunable's value as `cat` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunableValue {
    /// `%d\n`
    Int(u64),
    /// Tab-separated, one entry per zone.
    List([u64; MAX_NR_ZONES]),
}

impl fmt::Display for TunableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunableValue::Int(v) => writeln!(f, "{v}"),
            TunableValue::List(l) => write!(f, "{}", ListText(l)),
        }
    }
}

/// Print `path` to `out`.
pub fn read(path: &str, out: &mut dyn Write) -> Result<(), ProcError> {
    let tree = Tree::now();
    let names = tree.names();
    let file = match fs::lookup_in(path, &tree.present(&names)).map_err(|e| err(format!("{e}")))? {
        Node::Dir => return Err(err("Is a directory (try ls)")),
        Node::File(f) => f,
    };
    if !file.readable() {
        return Err(err("Permission denied (write-only trigger: echo 1 > it)"));
    }
    let a = allocator();
    let r = match file {
        File::View(v) => read_view(a, v, out),
        File::Tunable(t) => match tunable_value(t) {
            Some(v) => write!(out, "{v}"),
            None => return Err(err("Permission denied")),
        },
        File::NodeCompact(_) => return Err(err("Permission denied")),
        File::NodeView(v, nid) => read_node_view(a, v, nid, out),
        File::FaultAttr(t) => writeln!(out, "{}", fault_attr_text(a, t)),
        File::BlockSizeBytes => writeln!(out, "{:x}", a.memory_block_pages() * PAGE_SIZE),
        File::Block(f, b) => read_block_file(a, f, b as u64, out),
        File::Cma(f, i) => read_cma_file(a, f, i, out)?,
        File::Ramdisk(i) => return crate::ramdisk::cat(i as u32, out).map_err(err),
    };
    r.map_err(|_| err("output error"))
}

fn read_view(a: &PageAllocator<KernelPlatform>, v: View, out: &mut dyn Write) -> fmt::Result {
    match v {
        View::Buddyinfo => a.write_buddyinfo(out),
        View::Meminfo => a.write_meminfo(out),
        View::Pagetypeinfo => a.write_pagetypeinfo(out),
        View::Uptime => write_uptime(out),
        View::Vmstat => a.write_vmstat(out),
        View::Zoneinfo => a.write_zoneinfo(out),
        View::CompactionZones => a.write_compaction_state(out),
        View::ExtfragIndex => a.write_extfrag_index(out),
        View::UnusableIndex => a.write_unusable_index(out),
        View::FragmentationScore => a.write_fragmentation_score(out),
        View::PageblockMap => a.write_pageblock_map(out),
    }
}

/// `/proc/uptime`: seconds since the TSC started (machine reset) with two decimals, then the
/// idle time summed over CPUs, which this kernel does not account (printed as 0.00).
fn write_uptime(out: &mut dyn Write) -> fmt::Result {
    let cs = crate::arch::time::now_ns() / 10_000_000;
    writeln!(out, "{}.{:02} 0.00", cs / 100, cs % 100)
}

/// Write `value` to `path`. Progress of an action (compaction) is printed to `out`.
pub fn write(path: &str, value: &str, out: &mut dyn Write) -> Result<(), ProcError> {
    let tree = Tree::now();
    let names = tree.names();
    let file = match fs::lookup_in(path, &tree.present(&names)).map_err(|e| err(format!("{e}")))? {
        Node::Dir => return Err(err("Is a directory")),
        Node::File(f) => f,
    };
    match file {
        File::View(_)
        | File::NodeView(..)
        | File::BlockSizeBytes
        | File::Cma(..)
        | File::Ramdisk(_) => Err(err("Permission denied (read-only)")),
        File::Block(BlockFile::State, b) => write_block_state(b as u64, value, out),
        File::Block(..) => Err(err("Permission denied (read-only)")),
        File::Tunable(t) => write_tunable(t, value, out),
        File::FaultAttr(t) => write_fault_attr(t, value),
        File::NodeCompact(nid) => {
            tunable::parse_value(Kind::Trigger, value).map_err(|e| err(format!("{e}")))?;
            crate::console::compact_with_report(Some(nid), out);
            Ok(())
        }
    }
}

/// Parse `text` for tunable `t` and apply it through `mm`'s setter.
pub fn write_tunable(t: &Tunable, text: &str, out: &mut dyn Write) -> Result<(), ProcError> {
    let value = tunable::parse_value(t.kind, text).map_err(|e| err(format!("{e}")))?;
    let a = allocator();
    let int = match value {
        Value::Int(v) => v,
        Value::Trigger => {
            crate::console::compact_with_report(None, out);
            return Ok(());
        }
        Value::Signed(_) => return Err(err("unexpected value")),
        Value::List { .. } => {
            let current = a.sysctl().lowmem_reserve_ratio;
            let mut cur = [0u64; MAX_LIST];
            cur[..MAX_NR_ZONES].copy_from_slice(&current);
            let merged = value.merged(cur);
            let mut ratio = [0u64; MAX_NR_ZONES];
            ratio.copy_from_slice(&merged[..MAX_NR_ZONES]);
            return a
                .set_lowmem_reserve_ratio(ratio)
                .map_err(|e| err(format!("{e}")));
        }
    };
    let r = match t.name {
        "drop_caches" => {
            drop_caches(int, out);
            return Ok(());
        }
        "compact_unevictable_allowed" => a.set_compact_unevictable_allowed(int),
        "compaction_proactiveness" => a.set_compaction_proactiveness(int),
        "extfrag_threshold" => a.set_extfrag_threshold(int),
        "min_free_kbytes" => a.set_min_free_kbytes(int),
        "percpu_pagelist_high_fraction" => a.set_percpu_pagelist_high_fraction(int),
        "watermark_boost_factor" => a.set_watermark_boost_factor(int),
        "watermark_scale_factor" => a.set_watermark_scale_factor(int),
        other => return Err(err(format!("{other}: no setter"))),
    };
    r.map_err(|e| err(format!("{e}")))
}

/// `echo N > /proc/sys/vm/drop_caches` (Linux's `drop_caches_sysctl_handler`): bit 0
/// drops every clean, unused page-cache page; bit 1 runs the registered shrinkers until
/// they free nothing more (`drop_slab`). Prints what was freed, as a line per part.
pub fn drop_caches(mode: u64, out: &mut dyn Write) {
    let a = allocator();
    if mode & 1 != 0 {
        let before = a.nr_free_pages();
        let freed = a.drop_caches();
        a.drain_all_pages();
        let _ = writeln!(
            out,
            "drop_caches: {freed} page-cache pages dropped ({} KiB); free pages {before} -> {}",
            freed * PAGE_SIZE / 1024,
            a.nr_free_pages()
        );
    }
    if mode & 2 != 0 {
        // drop_slab: call every shrinker at the most urgent priority, node by node, until
        // a pass frees (almost) nothing.
        let mut total = 0;
        for _ in 0..10 {
            let mut pass = 0;
            for n in a.model().nodes() {
                pass += a.shrink_slab(zonebuddy::GFP_KERNEL, n.node_id, 0);
            }
            total += pass;
            if pass <= 10 {
                break;
            }
        }
        let _ = writeln!(out, "drop_caches: shrinkers gave back {total} pages");
    }
}

/// A fault-injection attribute as `cat` prints it (booleans as `Y`/`N`, as debugfs does).
pub fn fault_attr_text(a: &PageAllocator<KernelPlatform>, t: &Tunable) -> String {
    let v = a.fail_page_alloc().attrs();
    let yn = |b: bool| String::from(if b { "Y" } else { "N" });
    match t.name {
        "ignore-gfp-highmem" => yn(v.ignore_gfp_highmem),
        "ignore-gfp-wait" => yn(v.ignore_gfp_wait),
        "interval" => format!("{}", v.interval),
        "migratetype-mask" => format!("{}", v.migratetype_mask),
        "min-order" => format!("{}", v.min_order),
        "probability" => format!("{}", v.probability),
        "space" => format!("{}", v.space),
        "times" => format!("{}", v.times),
        other => format!("{other}: unknown"),
    }
}

/// Parse `text` for fault-injection attribute `t` and apply it through the allocator's
/// fault-injection setters (the ones the in-kernel tests use too).
pub fn write_fault_attr(t: &Tunable, text: &str) -> Result<(), ProcError> {
    let value = tunable::parse_value(t.kind, text).map_err(|e| err(format!("{e}")))?;
    let f = allocator().fail_page_alloc();
    let (int, signed) = match value {
        Value::Int(v) => (v, v as i64),
        Value::Signed(v) => (v.max(0) as u64, v),
        _ => return Err(err("unexpected value")),
    };
    let r = match t.name {
        "ignore-gfp-highmem" => {
            f.set_ignore_gfp_highmem(int != 0);
            Ok(())
        }
        "ignore-gfp-wait" => {
            f.set_ignore_gfp_wait(int != 0);
            Ok(())
        }
        "interval" => f.set_interval(int),
        "migratetype-mask" => f.set_migratetype_mask(int),
        "min-order" => f.set_min_order(int),
        "probability" => f.set_probability(int),
        "space" => f.set_space(signed),
        "times" => f.set_times(signed),
        other => return Err(err(format!("{other}: no setter"))),
    };
    r.map_err(|e| err(format!("{e}")))
}

/// `fail_page_alloc=<interval>,<probability>,<space>,<times>` (Linux's syntax): set the
/// four attributes at boot; a bad value is reported and changes nothing.
fn apply_fail_page_alloc(value: Option<&str>) {
    let f = allocator().fail_page_alloc();
    let Some(value) = value else {
        log::warn!("fail_page_alloc: needs <interval>,<probability>,<space>,<times>; ignored");
        return;
    };
    match f.attrs().with_cmdline(value).map(|a| f.set_attrs(a)) {
        Ok(Ok(())) => {
            let a = f.attrs();
            kprintln!(
                "command line: fail_page_alloc: interval {}, probability {}, space {}, times {} (min-order {}, ignore-gfp-wait {}, ignore-gfp-highmem {})",
                a.interval,
                a.probability,
                a.space,
                a.times,
                a.min_order,
                if a.ignore_gfp_wait { "Y" } else { "N" },
                if a.ignore_gfp_highmem { "Y" } else { "N" },
            );
        }
        Ok(Err(e)) => log::warn!("fail_page_alloc={value}: {e}; ignored"),
        Err(e) => log::warn!("fail_page_alloc={value}: {e}; ignored"),
    }
}

/// `page_checks=full|head`: check every descriptor of a multi-page block at free and at
/// allocation, or only its head (the default; see "Which descriptors are checked" in
/// `zonebuddy::page_alloc`). A bad value is reported and changes nothing.
fn apply_page_checks(value: Option<&str>) {
    match value.and_then(zonebuddy::page_alloc::bad_page::PageChecks::parse) {
        Some(c) => {
            allocator().set_page_checks(c);
            kprintln!("command line: page_checks={}", c.name());
        }
        None => log::warn!("page_checks: needs full or head; ignored"),
    }
}

/// The tunable a command-line key names: `NAME` or Linux's `sysctl.vm.NAME`.
pub fn cmdline_tunable(key: &str) -> Option<&'static Tunable> {
    tunable::find(key.strip_prefix("sysctl.vm.").unwrap_or(key))
}

/// Apply the tunables given on the command line (`min_free_kbytes=4096`,
/// `lowmem_reserve_ratio=256,256,32,0`, `sysctl.vm.watermark_scale_factor=100`). A bad
/// value is reported and ignored; the boot goes on.
pub fn apply_cmdline(line: &Cmdline) {
    for (key, value) in line.words() {
        if key == "fail_page_alloc" {
            apply_fail_page_alloc(value);
            continue;
        }
        if key == "page_checks" {
            apply_page_checks(value);
            continue;
        }
        let Some(t) = cmdline_tunable(key) else {
            continue;
        };
        let Some(value) = value else {
            log::warn!("{key}: needs a value ({key}=VALUE); ignored");
            continue;
        };
        let mut progress = crate::console::SerialOut;
        match write_tunable(t, value, &mut progress) {
            Ok(()) => {
                let now = tunable_value(t).map_or(String::from("done\n"), |v| format!("{v}"));
                kprint!("command line: vm.{} = {}", t.name, now);
            }
            Err(e) => log::warn!("{key}={value}: {e}; ignored"),
        }
    }
}
