//! The serial console: an interactive shell on COM1 after the demo, and a batch mode that
//! runs a script handed over by QEMU.
//!
//! Input handling (line editing, command parsing, path lookup, value parsing) is the
//! host-fuzzed `console` crate; this module only executes the commands it returns, so the
//! bytes a user types never reach code that was not fuzzed. Commands report failure as
//! text and carry on: nothing typed here may take the kernel down. (A bug in the allocator
//! that a command exposes still panics, and the crash handler reports it as usual.)
//!
//! Batch mode (`make run SCRIPT='frag; cat /proc/buddyinfo; compact'`): the runner puts the
//! script in the fw_cfg file [`SCRIPT_FILE`]; each command is echoed after the prompt
//! marker [`PROMPT`] at the start of a line, so a transcript splits into (command, output)
//! pairs, and the machine powers off at the end with success only if every command
//! succeeded. The interactive console runs only when the command line says `console=1`
//! (`make run` does): a test run or a script must never sit waiting for input.
//!
//! End of input is Ctrl-D (0x04) on an empty line: the console powers off with success,
//! as `poweroff` does. A terminal sends it when the user types it; the host runner sends it
//! when its input is not a terminal (a pipe, a file, `/dev/null`) and has ended, so a
//! scripted `make run < commands.txt` ends instead of waiting forever.
//!
//! Reading input polls the UART's line status register; between polls the CPU halts until
//! the next timer tick, so an idle console costs the host next to nothing.

use alloc::{format, string::String, vec::Vec};
use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicU64, Ordering},
};

use console::{
    CmaCmd, Command, ContigCmd, Event, FreeWhat, LineEditor, fs as cfs,
    gfp::{GFP_KERNEL, parse_gfp},
    parse::COMMANDS,
    split_script,
};
use zonebuddy::{
    model::mmzone::{NR_PAGE_ORDERS, PAGE_SIZE, PAGEBLOCK_ORDER, ZoneType},
    page_alloc::gfp::{GFP_HIGHUSER_MOVABLE, Gfp},
    report::vmstat::VmEvent,
};

use crate::{
    arch::{
        self,
        qemu::{ExitCode, exit},
        smp, time,
    },
    memory::allocator,
    procfs,
};

/// The prompt, and the marker that starts every echoed script command.
pub const PROMPT: &str = "memkernel# ";

/// End of input (Ctrl-D): on an empty line, powers off like `poweroff`.
pub const CTRL_D: u8 = 0x04;

/// The fw_cfg file carrying a batch script.
pub const SCRIPT_FILE: &str = "opt/memkernel/script";

/// Largest script read (anything longer is cut, with a warning).
const MAX_SCRIPT: usize = 64 * 1024;

/// Serial output as a `fmt::Write`: each piece is written under the serial lock on its own,
/// so a long view does not keep other CPUs from logging for its whole length.
pub struct SerialOut;

impl Write for SerialOut {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        kprint!("{s}");
        Ok(())
    }
}

/// What running a command line led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Poweroff,
}

/// A block `alloc` handed out and the console still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// First frame of the block.
    pub pfn: u64,
    /// Its order.
    pub order: u32,
}

/// A contiguous range `cma alloc` (from area `area`) or `contig` (`area` None) took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeldRange {
    area: Option<usize>,
    pfn: u64,
    pages: u64,
}

/// The console's state: the blocks `alloc` took, the ranges `cma alloc` and `contig` took.
#[derive(Default)]
struct Shell {
    held: Vec<Held>,
    ranges: Vec<HeldRange>,
}

/// The script QEMU passed, if any.
pub fn script_from_fw_cfg() -> Option<String> {
    let (_, size) = arch::fw_cfg::read_file(SCRIPT_FILE, &mut [])?;
    let mut buf = alloc::vec![0u8; size.min(MAX_SCRIPT)];
    let (n, size) = arch::fw_cfg::read_file(SCRIPT_FILE, &mut buf)?;
    if size > n {
        log::warn!("script is {size} bytes; only the first {n} are run");
    }
    buf.truncate(n);
    let text = String::from_utf8_lossy(&buf).into_owned();
    Some(String::from(text.trim_end_matches('\0')))
}

/// Run `script` (commands separated by `;` or newlines), then power off, or, with
/// `then_interactive`, continue with the interactive console.
pub fn run_script(script: &str, then_interactive: bool) -> ! {
    let mut shell = Shell::default();
    let (mut ran, mut failed) = (0usize, 0usize);
    for line in split_script(script) {
        kprintln!("{PROMPT}{line}");
        ran += 1;
        match shell.execute(line) {
            Outcome::Ok => {}
            Outcome::Failed => failed += 1,
            Outcome::Poweroff => poweroff(failed == 0),
        }
    }
    kprintln!("script: {ran} commands, {failed} failed");
    if then_interactive {
        interactive_with(shell)
    }
    poweroff(failed == 0)
}

fn poweroff(success: bool) -> ! {
    kprintln!("powering off");
    exit(if success {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// The interactive console: never returns (`poweroff` leaves QEMU).
pub fn interactive() -> ! {
    interactive_with(Shell::default())
}

fn interactive_with(mut shell: Shell) -> ! {
    kprintln!("serial console: type 'help' for the commands, 'poweroff' to quit");
    kprint!("{PROMPT}");
    let mut editor = LineEditor::new();
    loop {
        let Some(byte) = arch::serial::try_read_byte() else {
            idle();
            continue;
        };
        // Ctrl-D on an empty line is end of input, as in a Unix shell: power off as
        // `poweroff` does. The runner sends it when its (non-terminal) input ends.
        if byte == CTRL_D {
            if editor.line().is_empty() {
                kprintln!("^D");
                poweroff(true);
            }
            continue;
        }
        match editor.feed(byte) {
            Event::None => {}
            Event::Echo(bytes) => kprint!("{}", core::str::from_utf8(bytes).unwrap_or("")),
            Event::EchoByte(b) => kprint!("{}", char::from(b)),
            Event::Cancel => {
                kprint!("^C\n{PROMPT}");
            }
            Event::Line => {
                kprint!("\n");
                let line = String::from(editor.line());
                editor.clear();
                if shell.execute(&line) == Outcome::Poweroff {
                    poweroff(true);
                }
                kprint!("{PROMPT}");
            }
        }
    }
}

/// Free blocks of order >= pageblock_order, over every zone.
fn free_huge_blocks() -> u64 {
    let a = allocator();
    a.model()
        .nodes()
        .flat_map(|n| ZoneType::ALL.map(|zt| (n.node_id, zt)))
        .filter_map(|(nid, zt)| a.zone_snapshot(nid, zt))
        .map(|s| {
            s.nr_free_per_order()[PAGEBLOCK_ORDER as usize..NR_PAGE_ORDERS]
                .iter()
                .enumerate()
                .map(|(i, n)| n << i)
                .sum::<u64>()
        })
        .sum()
}

/// The fragmentation score of every node, as `node N: S` pairs.
fn scores() -> String {
    let a = allocator();
    let mut s = String::new();
    for n in a.model().nodes() {
        if let Some((_, score)) = a.fragmentation_scores(n.node_id) {
            let _ = write!(
                s,
                "{}node {}: {}",
                if s.is_empty() { "" } else { ", " },
                n.node_id,
                score
            );
        }
    }
    s
}

/// Compact every node (`None`) or one, printing what changed: pageblock-sized free blocks,
/// fragmentation scores, and what the scanners did.
pub fn compact_with_report(nid: Option<usize>, out: &mut dyn Write) {
    let a = allocator();
    a.drain_all_pages();
    let (blocks_before, scores_before) = (free_huge_blocks(), scores());
    let start = time::now_ns();
    let stats = match nid {
        None => Some(a.compact_memory()),
        Some(n) => a.compact_node(n),
    };
    let ms = (time::now_ns() - start) / 1_000_000;
    a.drain_all_pages();
    let Some(st) = stats else {
        let _ = writeln!(out, "compact: no node {}", nid.unwrap_or(0));
        return;
    };
    let _ = writeln!(
        out,
        "compact: {} ms; migrate scanner {} pages, free scanner {} pages, isolated {}, migrated {}, failed {}",
        ms, st.migrate_scanned, st.free_scanned, st.isolated, st.migrated, st.failed
    );
    let _ = writeln!(
        out,
        "compact: free blocks of order >= {PAGEBLOCK_ORDER} (in pageblocks): {} -> {}; fragmentation score {} -> {}",
        blocks_before,
        free_huge_blocks(),
        scores_before,
        scores()
    );
}

impl Shell {
    fn execute(&mut self, line: &str) -> Outcome {
        let cmd = match console::parse(line) {
            Ok(c) => c,
            Err(e) => {
                kprintln!("{e}");
                return Outcome::Failed;
            }
        };
        let mut out = SerialOut;
        let ok = |r: Result<(), String>| match r {
            Ok(()) => Outcome::Ok,
            Err(msg) => {
                kprintln!("{msg}");
                Outcome::Failed
            }
        };
        match cmd {
            Command::Empty => Outcome::Ok,
            Command::Help => {
                help();
                Outcome::Ok
            }
            Command::Ls(path) => ok(ls(path)),
            Command::Cat(_) => {
                let mut result = Outcome::Ok;
                for path in cmd.paths() {
                    if let Err(e) = procfs::read(path, &mut out) {
                        kprintln!("cat: {path}: {e}");
                        result = Outcome::Failed;
                    }
                }
                result
            }
            Command::Echo { value, path } => ok(procfs::write(path, value, &mut out)
                .map_err(|e| format!("echo: {path}: {e}; value unchanged"))),
            Command::Alloc { order, gfp } => ok(self.alloc(order, gfp)),
            Command::Free(what) => ok(self.free(what)),
            Command::Frag => ok(frag()),
            Command::Stress => ok(stress(STRESS_OPS_PER_CPU)),
            Command::Compact => {
                compact_with_report(None, &mut out);
                Outcome::Ok
            }
            Command::DropCaches(mode) => {
                procfs::drop_caches(mode as u64, &mut out);
                Outcome::Ok
            }
            Command::Meminfo => {
                ok(procfs::read("/proc/meminfo", &mut out).map_err(|e| format!("{e}")))
            }
            Command::Cma(c) => ok(self.cma(c)),
            Command::Contig(c) => ok(self.contig(c)),
            Command::Numastat => ok(crate::memory::allocator()
                .write_numastat(&mut out)
                .map_err(|_| String::from("output error"))),
            Command::Sleep(ms) => {
                sleep_ms(ms);
                Outcome::Ok
            }
            Command::Poweroff => Outcome::Poweroff,
        }
    }

    fn alloc(&mut self, order: u32, gfp: Option<&str>) -> Result<(), String> {
        let bits = match gfp {
            None => GFP_KERNEL,
            Some(text) => parse_gfp(text).map_err(|e| format!("alloc: {e}"))?,
        };
        let gfp = Gfp::from_bits(bits).ok_or_else(|| format!("alloc: {bits:#x}: unknown bits"))?;
        let a = allocator();
        let page = a
            .try_alloc_pages(gfp, order)
            .map_err(|e| format!("alloc: order {order} {gfp}: {e}"))?;
        let pfn = a.page_to_pfn(page);
        self.held.push(Held { pfn, order });
        let pages: u64 = self.held.iter().map(|h| 1u64 << h.order).sum();
        kprintln!(
            "allocated order {order} ({gfp}) at pfn {pfn:#x} (phys {:#x}, zone {}); holding {} blocks, {} pages",
            pfn * PAGE_SIZE,
            page.zone_type().map_or("?", |z| z.name()),
            self.held.len(),
            pages
        );
        Ok(())
    }

    fn free(&mut self, what: FreeWhat) -> Result<(), String> {
        free_held(&mut self.held, what, &mut free_block)
    }

    fn cma(&mut self, c: CmaCmd) -> Result<(), String> {
        let a = allocator();
        let nr = a.cma_nr_areas();
        match c {
            CmaCmd::List => {
                if nr == 0 {
                    kprintln!("cma: no CMA area (boot with cma=SIZE[@START], e.g. cma=64M)");
                    return Ok(());
                }
                for i in 0..nr {
                    let Some(s) = a.cma_area(i) else { continue };
                    kprintln!(
                        "{i} {}: base pfn {:#x} (phys {:#x}), {} MiB ({} pages), used {} pages, largest free run {} pages, node {} zone {}",
                        s.name(),
                        s.base_pfn,
                        s.base_pfn * PAGE_SIZE,
                        (s.count * PAGE_SIZE) >> 20,
                        s.count,
                        s.used,
                        s.maxchunk,
                        s.nid,
                        s.zone.name()
                    );
                }
                kprintln!(
                    "CmaTotal {} pages, CmaFree {} pages",
                    a.totalcma_pages(),
                    a.nr_free_cma_pages()
                );
                Ok(())
            }
            CmaCmd::Alloc { area, pages, align } => {
                if nr == 0 {
                    return Err(String::from(
                        "cma alloc: no CMA area (boot with cma=SIZE[@START], e.g. cma=64M)",
                    ));
                }
                let idx = (0..nr)
                    .find(|&i| a.cma_area(i).is_some_and(|s| s.name() == area))
                    .or_else(|| area.parse::<usize>().ok().filter(|&i| i < nr))
                    .ok_or_else(|| {
                        format!(
                            "cma alloc: no area '{area}' (cma lists them; areas 0-{})",
                            nr - 1
                        )
                    })?;
                let start = time::now_ns();
                let (page, st) = a
                    .cma_alloc(idx, pages, align)
                    .map_err(|e| format!("cma alloc: {e}"))?;
                let ms = (time::now_ns() - start) / 1_000_000;
                let pfn = a.page_to_pfn(page);
                self.ranges.push(HeldRange {
                    area: Some(idx),
                    pfn,
                    pages,
                });
                kprintln!(
                    "cma: {pages} pages at pfn [{pfn:#x}, {:#x}) in {ms} ms; {} pages migrated ({} failed attempts, {} passes)",
                    pfn + pages,
                    st.migrated,
                    st.migrate_failed,
                    st.passes
                );
                Ok(())
            }
            CmaCmd::Free => self.free_ranges(true),
        }
    }

    fn contig(&mut self, c: ContigCmd) -> Result<(), String> {
        let pages = match c {
            ContigCmd::Free => return self.free_ranges(false),
            ContigCmd::Alloc(n) => n,
        };
        let a = allocator();
        let nid = arch::numa::cpu_home_node(arch::percpu::cpu_id());
        let migrated0 = a.vm_event(VmEvent::PgmigrateSuccess);
        let start = time::now_ns();
        let page = a.alloc_contig_pages(pages, GFP_HIGHUSER_MOVABLE, nid);
        let ms = (time::now_ns() - start) / 1_000_000;
        let Some(page) = page else {
            return Err(format!(
                "contig: no range of {pages} pages on node {nid} could be emptied ({ms} ms): each candidate holds an unmovable, pinned or reserved page, or its pages could not be migrated (a 128 MiB memory block keeps its memmap at its end, so no range reaches 126 MiB)"
            ));
        };
        let pfn = a.page_to_pfn(page);
        self.ranges.push(HeldRange {
            area: None,
            pfn,
            pages,
        });
        kprintln!(
            "contig: {pages} pages at pfn [{pfn:#x}, {:#x}) on node {nid} in {ms} ms; {} pages migrated",
            pfn + pages,
            a.vm_event(VmEvent::PgmigrateSuccess) - migrated0
        );
        Ok(())
    }

    /// Free the ranges `cma alloc` (`cma`) or `contig` took.
    fn free_ranges(&mut self, cma: bool) -> Result<(), String> {
        let a = allocator();
        let (mut n, mut pages) = (0, 0);
        let mut result = Ok(());
        self.ranges.retain(|r| {
            if r.area.is_some() != cma {
                return true;
            }
            let freed = match r.area {
                Some(i) => a
                    .pfn_to_page(r.pfn)
                    .ok_or_else(|| format!("pfn {:#x} has no page", r.pfn))
                    .and_then(|p| a.cma_release(i, p, r.pages).map_err(|e| format!("{e}"))),
                None => a
                    .free_contig_range(r.pfn, r.pages)
                    .map_err(|e| format!("{e}")),
            };
            match freed {
                Ok(()) => {
                    n += 1;
                    pages += r.pages;
                    false
                }
                Err(e) => {
                    result = Err(format!("free: pfn {:#x}: {e}; still held", r.pfn));
                    true
                }
            }
        });
        let what = if cma { "cma" } else { "contig" };
        kprintln!("{what}: freed {n} ranges ({pages} pages)");
        result
    }
}

/// Give one held block back to the page allocator.
pub fn free_block(h: &Held) -> Result<(), String> {
    let a = allocator();
    let page = a
        .pfn_to_page(h.pfn)
        .ok_or_else(|| format!("free: pfn {:#x} has no page", h.pfn))?;
    a.free_pages(page, h.order)
        .map_err(|e| format!("free: pfn {:#x} order {}: {e}", h.pfn, h.order))
}

/// `free all` / `free last` over `held`, freeing each block with `free_one`. A block
/// leaves `held` only once it was freed: when a free fails, that block and every block
/// not yet tried stay held (a later `free` can retry them), and the error lists them.
pub fn free_held(
    held: &mut Vec<Held>,
    what: FreeWhat,
    free_one: &mut dyn FnMut(&Held) -> Result<(), String>,
) -> Result<(), String> {
    if held.is_empty() {
        kprintln!("free: nothing allocated (use alloc ORDER [GFP])");
        return Ok(());
    }
    // `free last` tries only the newest block; `free all` goes oldest first.
    let first = match what {
        FreeWhat::All => 0,
        FreeWhat::Last => held.len() - 1,
    };
    let (mut blocks, mut pages) = (0usize, 0u64);
    while held.len() > first {
        let h = held[first];
        if let Err(e) = free_one(&h) {
            let kept: Vec<String> = held[first..]
                .iter()
                .map(|h| format!("pfn {:#x} order {}", h.pfn, h.order))
                .collect();
            return Err(format!(
                "{e}; freed {blocks} blocks ({pages} pages) before it; still holding {} blocks, not freed: {}",
                held.len(),
                kept.join(", ")
            ));
        }
        held.remove(first);
        blocks += 1;
        pages += 1 << h.order;
    }
    kprintln!(
        "freed {} blocks ({} pages); holding {} blocks",
        blocks,
        pages,
        held.len()
    );
    Ok(())
}

fn help() {
    kprintln!("commands:");
    for (_, usage, what) in COMMANDS {
        kprintln!("  {usage:<20} {what}");
    }
    kprintln!("files: ls /proc, ls /proc/sys/vm, ls /sys/kernel/debug/extfrag, ...");
    kprintln!("  e.g. cat /proc/buddyinfo; echo 100 > /proc/sys/vm/watermark_scale_factor");
}

fn ls(path: &str) -> Result<(), String> {
    let mut names = Vec::new();
    let tree = procfs::Tree::now();
    let areas = tree.names();
    let present = tree.present(&areas);
    cfs::list_in(path, &present, &mut |n| names.push(n)).map_err(|e| format!("ls: {e}"))?;
    for n in names {
        kprintln!("{n}");
    }
    Ok(())
}

fn frag() -> Result<(), String> {
    // The scenario prints its own progress and summary.
    crate::scenario::fragment(&mut SerialOut)
        .map(|_| ())
        .map_err(|e| format!("frag: {e}"))
}

/// Wait `ms` milliseconds, halting between timer ticks.
fn sleep_ms(ms: u64) {
    let deadline = time::now_ns().saturating_add(ms.saturating_mul(1_000_000));
    while time::now_ns() < deadline {
        idle();
    }
}

/// One idle moment of the console's CPU: on a single-CPU machine it hosts kcompactd, so a
/// due round runs here; then halt until the next interrupt (interrupts are on after SMP
/// start, so the timer tick ends the halt).
fn idle() {
    crate::kcompactd::poll(arch::percpu::cpu_id());
    crate::kswapd::poll(arch::percpu::cpu_id());
    x86_64::instructions::hlt();
}

/// Allocations plus frees each CPU performs in `stress`.
const STRESS_OPS_PER_CPU: u64 = 20_000;

/// A short allocator stress on every online CPU: random orders (mostly small) and
/// migratetypes, a tag written into every page and checked at free, every block freed
/// at the end. Reports what it did and whether the free count came back.
fn stress(ops_per_cpu: u64) -> Result<(), String> {
    let a = allocator();
    let cpus = smp::online_ids();
    a.drain_all_pages();
    let before = a.nr_free_pages();
    let heap_before = crate::heap::usage().grown;
    let (done, refused, bad) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let start = time::now_ns();
    {
        let gfps = [
            GFP_KERNEL,
            GFP_KERNEL | Gfp::MOVABLE.bits() | Gfp::HIGHMEM.bits(),
            GFP_KERNEL | Gfp::RECLAIMABLE.bits(),
        ];
        smp::run_on_cpus(&cpus, &|cpu| {
            let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ (cpu as u64 + 1).wrapping_mul(0x9e37_79b9);
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut live: Vec<(u64, u32, u64)> = Vec::with_capacity(128);
            for _ in 0..ops_per_cpu {
                let r = next();
                if live.len() < 128 && (r & 1 == 0 || live.is_empty()) {
                    let order = match r % 100 {
                        0..=69 => 0,
                        70..=84 => 1,
                        85..=94 => 3,
                        _ => ((r >> 8) % 11) as u32,
                    };
                    let gfp = Gfp::from_bits_truncate(gfps[(r >> 20) as usize % gfps.len()])
                        | Gfp::NOWARN;
                    match a.alloc_pages(gfp, order) {
                        Some(p) => {
                            let addr = a.page_address(p);
                            let tag = next();
                            for i in 0..(1u64 << order) {
                                // SAFETY: the block was just allocated and is ours until
                                // freed below; the direct map covers it.
                                unsafe {
                                    ((addr + i * PAGE_SIZE) as *mut u64).write_volatile(tag ^ i)
                                };
                            }
                            live.push((addr, order, tag));
                        }
                        None => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else {
                    let (addr, order, tag) = live.swap_remove((r >> 8) as usize % live.len());
                    release(addr, order, tag, &bad);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            for (addr, order, tag) in live.drain(..) {
                release(addr, order, tag, &bad);
            }
        });
    }
    a.drain_all_pages();
    let heap_pages = ((crate::heap::usage().grown - heap_before) / PAGE_SIZE as usize) as u64;
    let after = a.nr_free_pages() + heap_pages;
    let ms = (time::now_ns() - start) / 1_000_000;
    kprintln!(
        "stress: {} CPUs, {} operations in {} ms, {} allocations refused, {} bad blocks; free pages before {} after {}",
        cpus.len(),
        done.load(Ordering::Relaxed),
        ms,
        refused.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        before,
        after
    );
    if bad.load(Ordering::Relaxed) != 0 || after != before {
        return Err(String::from("stress: FAILED (see above)"));
    }
    Ok(())
}

fn release(addr: u64, order: u32, tag: u64, bad: &AtomicU64) {
    let intact = (0..(1u64 << order)).all(|i| {
        // SAFETY: still ours until the free below.
        unsafe { ((addr + i * PAGE_SIZE) as *const u64).read_volatile() == tag ^ i }
    });
    if !intact || allocator().free_pages_virt(addr, order).is_err() {
        bad.fetch_add(1, Ordering::Relaxed);
    }
}
