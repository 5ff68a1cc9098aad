//! Page reclaim in the kernel: the page cache over the boot ramdisk, kswapd, direct
//! reclaim, `drop_caches`, and reclaim racing compaction and readers.
//!
//! These are issue 15's acceptance scenarios. The host tests (kernel/mm/tests/host) prove
//! the policy on simulated RAM; here the same code runs on real CPUs, with kswapd as an
//! idle-time worker on another CPU and the files coming from the ramdisk the bootloader
//! loaded. Without a ramdisk (every configuration but the one `make test` boots with
//! `--ramdisk`) the tests report `skipped` with that reason.
//!
//! - [`read_whole_image_under_pressure`]: the whole image is read through the cache once
//!   with memory to spare, then again after the test has taken all but a few MiB of the
//!   free memory, so the image cannot fit and every page read past that point needs a
//!   page reclaimed. kswapd must keep the zones above their low watermark most of the
//!   time (the share is printed, not asserted: it depends on the host), every file must
//!   read back with its checksum, and no allocation (the cache's own, and kernel
//!   allocations interleaved with the read) may fail while clean cache pages exist.
//! - [`reclaim_compaction_and_readers_race`]: readers verify every byte they read against
//!   the generator, one CPU compacts (migrating the very cache pages they read), one
//!   drops and shrinks the cache: no stale read, no page lost (the cache's count, the LRU
//!   lists and the free count all agree afterwards), invariants clean.

use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zonebuddy::{
    model::mmzone::{MAX_NR_ZONES, PAGE_SIZE, ZoneType},
    page_alloc::gfp::{GFP_KERNEL, Gfp},
    report::vmstat::VmEvent,
};

use crate::{
    arch::{percpu, smp, time},
    kassert, kassert_eq, ktest,
    ktest::TestResult,
    memory::allocator,
    ramdisk::{self, Ramdisk},
    rdfs,
};

/// How long the race runs.
const RACE_NS: u64 = 3_000_000_000;

pub(super) fn check_invariants() -> Result<(), String> {
    zonebuddy::report::debug::check(allocator()).map_err(|v| format!("invariant violated: {v}"))
}

/// Pages the kernel heap took from the page allocator since `before` (grown regions and
/// whole-page blocks: the test's own vectors and strings).
fn heap_growth_pages(before: crate::heap::Usage) -> u64 {
    let now = crate::heap::usage();
    ((now.grown + now.large).saturating_sub(before.grown + before.large)) as u64 / PAGE_SIZE
}

pub(super) fn ev(e: VmEvent) -> u64 {
    allocator().vm_event(e)
}

/// The ramdisk, or the reason the test is skipped.
pub(super) fn ramdisk_or_skip() -> Result<&'static Ramdisk, TestResult> {
    ramdisk::get().ok_or_else(|| crate::ktest::skip(ramdisk::absent_reason()))
}

/// kswapd on for the test's duration; the previous setting comes back on drop.
pub(super) struct KswapdOn(bool);

impl KswapdOn {
    pub(super) fn new() -> KswapdOn {
        KswapdOn(crate::kswapd::set_enabled(true))
    }
}

impl Drop for KswapdOn {
    fn drop(&mut self) {
        crate::kswapd::set_enabled(self.0);
    }
}

/// Blocks the test holds to take memory away from the cache; freed on drop.
pub(super) struct Occupied(Vec<(u64, u32)>);

impl Occupied {
    /// Allocate (unmovable kernel memory, no kswapd wake-ups: kswapd is off then) until
    /// no more than `target` pages are free.
    fn down_to(target: u64) -> Occupied {
        let a = allocator();
        let mut held = Vec::with_capacity(4096);
        let gfp = GFP_KERNEL | Gfp::NOWARN;
        let mut order = 9u32;
        loop {
            a.drain_all_pages();
            let free = a.nr_free_pages();
            if free <= target {
                break;
            }
            while order > 0 && (1u64 << order) > free - target {
                order -= 1;
            }
            // High orders without direct reclaim or compaction: a failure just means the
            // next order down.
            let gfp = if order > 0 {
                gfp.difference(Gfp::DIRECT_RECLAIM)
            } else {
                gfp
            };
            match a.alloc_pages(gfp, order) {
                Some(p) => held.push((a.page_to_pfn(p), order)),
                None if order > 0 => order -= 1,
                None => break,
            }
        }
        Occupied(held)
    }

    pub(super) fn pages(&self) -> u64 {
        self.0.iter().map(|&(_, o)| 1u64 << o).sum()
    }
}

impl Drop for Occupied {
    fn drop(&mut self) {
        let a = allocator();
        for &(pfn, order) in &self.0 {
            if let Some(p) = a.pfn_to_page(pfn)
                && let Err(e) = a.free_pages(p, order)
            {
                log::error!("reclaim test: freeing pfn {pfn:#x}: {e}");
            }
        }
    }
}

/// Take memory away until 2 MiB are left above the high watermarks of the zones the cache
/// can use: far less than the image. ZONE_DMA is left alone (lowmem_reserve keeps the
/// cache's GFP_HIGHUSER_MOVABLE allocations out of most of it), and not counted as free.
/// Returns the held blocks and the pages left free outside ZONE_DMA.
pub(super) fn squeeze() -> (Occupied, u64) {
    let a = allocator();
    a.drain_all_pages();
    let dma_free = || {
        a.model()
            .nodes()
            .flat_map(|n| n.populated_zones())
            .filter(|z| z.zone_type == ZoneType::Dma)
            .map(|z| z.nr_free_pages())
            .sum::<u64>()
    };
    let mut keep = 2 * 1024 * 1024 / PAGE_SIZE;
    for n in a.model().nodes() {
        for z in n.populated_zones().filter(|z| z.zone_type != ZoneType::Dma) {
            keep += z.watermarks().high_wmark_pages();
        }
    }
    let occupied = Occupied::down_to(keep + dma_free());
    a.drain_all_pages();
    let free = a.nr_free_pages().saturating_sub(dma_free());
    (occupied, free)
}

/// Per-zone samples: how often free memory was above the low watermark.
#[derive(Default)]
pub(super) struct WmarkSamples {
    above: [u64; MAX_NR_ZONES],
    total: [u64; MAX_NR_ZONES],
}

impl WmarkSamples {
    pub(super) fn sample(&mut self) {
        let a = allocator();
        for n in a.model().nodes() {
            for z in n.populated_zones() {
                let i = z.zone_type.index();
                self.total[i] += 1;
                if z.nr_free_pages() > z.watermarks().low_wmark_pages() {
                    self.above[i] += 1;
                }
            }
        }
    }

    pub(super) fn report(&self) -> String {
        let mut s = String::new();
        for zt in ZoneType::ALL {
            let i = zt.index();
            if let Some(pct) = (self.above[i] * 100).checked_div(self.total[i]) {
                s.push_str(&format!(
                    "{}{} {}% of {} samples",
                    if s.is_empty() { "" } else { ", " },
                    zt.name(),
                    pct,
                    self.total[i]
                ));
            }
        }
        s
    }
}

/// What reading the whole image once did.
#[derive(Default)]
pub(super) struct ReadPass {
    pub(super) bytes: u64,
    /// Nanoseconds spent inside `page_cache_read` (or copying from a file window) (checksumming excluded).
    pub(super) read_ns: u64,
    /// Files whose checksum did not match, by name.
    pub(super) bad: Vec<String>,
    /// Read errors (out of memory, I/O), with the file.
    pub(super) errors: Vec<String>,
    /// Kernel allocations interleaved with the read that failed.
    pub(super) alloc_failures: u64,
}

impl ReadPass {
    pub(super) fn mib_per_s(&self) -> u64 {
        self.bytes * 1_000_000_000 / self.read_ns.max(1) / (1 << 20)
    }
}

/// Read every file of the image through the cache, in 64 KiB chunks, checksumming each
/// file. With `samples`, sample the zones' free memory every 64 KiB and interleave an
/// order-0 kernel allocation (kept in a ring of 32, so a few are always held) every
/// 256 KiB: none of them may fail while clean cache pages exist.
fn read_image(r: &Ramdisk, mut samples: Option<&mut WmarkSamples>, buf: &mut [u8]) -> ReadPass {
    let a = allocator();
    let mut pass = ReadPass::default();
    let mut ring: [Option<u64>; 32] = [None; 32];
    let mut chunks = 0u64;
    for file in 0..r.image().nr_files() {
        let Some(e) = r.image().entry(file) else {
            continue;
        };
        let mut sum = rdfs::FNV_OFFSET;
        let mut pos = 0u64;
        loop {
            let t0 = time::now_ns();
            let n = match a.page_cache_read(file, pos, buf) {
                Ok(n) => n,
                Err(err) => {
                    pass.errors.push(format!("{} at {pos}: {err}", e.name()));
                    break;
                }
            };
            pass.read_ns += time::now_ns() - t0;
            if n == 0 {
                break;
            }
            sum = rdfs::fnv1a(sum, &buf[..n]);
            pos += n as u64;
            chunks += 1;
            if let Some(s) = samples.as_deref_mut() {
                s.sample();
                if chunks % 4 == 0 {
                    let slot = &mut ring[(chunks / 4 % 32) as usize];
                    if let Some(pfn) = slot.take()
                        && let Some(p) = a.pfn_to_page(pfn)
                    {
                        let _ = a.free_pages(p, 0);
                    }
                    match a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
                        Some(p) => *slot = Some(a.page_to_pfn(p)),
                        None => pass.alloc_failures += 1,
                    }
                }
            }
        }
        pass.bytes += pos;
        if pos != e.size || sum != e.checksum {
            pass.bad
                .push(format!("{} ({pos} of {} bytes)", e.name(), e.size));
        }
    }
    for pfn in ring.into_iter().flatten() {
        if let Some(p) = a.pfn_to_page(pfn) {
            let _ = a.free_pages(p, 0);
        }
    }
    pass
}

/// The ramdisk, this CPU, the other CPUs and the shared files of a race.
pub(super) type RaceCast = (&'static Ramdisk, usize, Vec<usize>, Vec<u32>);

/// A race's cast: this CPU (the reclaimer), the other online CPUs (at least two: a
/// compactor and readers), and the files the readers share: a few MiB, small ones with
/// partial last pages too, with the ramdisk. A skip without a ramdisk or with fewer
/// CPUs, a failure without the files.
pub(super) fn race_setup() -> Result<RaceCast, TestResult> {
    let r = ramdisk_or_skip()?;
    let me = percpu::cpu_id();
    let others: Vec<usize> = smp::online_ids().into_iter().filter(|&c| c != me).collect();
    if others.len() < 2 {
        return Err(crate::ktest::skip(
            "needs at least 3 CPUs (readers, compaction, reclaim)",
        ));
    }
    let files: Vec<u32> = [
        "data07.bin",
        "data09.bin",
        "data10.bin",
        "small1.bin",
        "small3.bin",
        "hello.txt",
    ]
    .iter()
    .filter_map(|n| r.image().find(n))
    .collect();
    if files.is_empty() {
        return Err(Err(String::from("no shared files in the image")));
    }
    Ok((r, me, others, files))
}

/// Run a race on `me` and `others`: `me` reclaims ([`race_reclaimer`], every `delay_us`,
/// for [`RACE_NS`]), `others[0]` compacts, and every other CPU runs `reader(slot, stop)`
/// (its index among the readers) until `stop` is raised. `counts`: reclaim rounds, pages
/// dropped, pages reclaimed, compaction passes.
pub(super) fn run_race(
    me: usize,
    others: &[usize],
    delay_us: u64,
    counts: [&AtomicU64; 4],
    reader: &(dyn Fn(usize, &AtomicBool) + Sync),
) {
    let stop = AtomicBool::new(false);
    let mut all = others.to_vec();
    all.push(me);
    smp::run_on_cpus(&all, &|cpu| {
        if cpu == me {
            race_reclaimer(RACE_NS, delay_us, &stop, [counts[0], counts[1], counts[2]]);
        } else if cpu == others[0] {
            race_compactor(&stop, counts[3]);
        } else {
            let slot = others[1..].iter().position(|&c| c == cpu).unwrap_or(0);
            reader(slot, &stop);
        }
    });
}

/// A race's reclaimer: drop the clean cache, then direct reclaim on every node, every
/// `delay_us`, for `ns` (the deadline only bounds the test; nothing is timed); then raise
/// `stop`. Counts rounds, pages dropped and pages reclaimed into `counts`.
pub(super) fn race_reclaimer(ns: u64, delay_us: u64, stop: &AtomicBool, counts: [&AtomicU64; 3]) {
    let a = allocator();
    let deadline = time::now_ns() + ns;
    while time::now_ns() < deadline {
        counts[1].fetch_add(a.drop_caches(), Ordering::Relaxed);
        for n in a.model().nodes() {
            counts[2].fetch_add(
                a.try_to_free_pages(GFP_KERNEL, 0, n.node_id, MAX_NR_ZONES - 1),
                Ordering::Relaxed,
            );
        }
        counts[0].fetch_add(1, Ordering::Relaxed);
        time::udelay(delay_us);
    }
    stop.store(true, Ordering::Release);
}

/// A race's compactor: compact every node until `stop`, counting passes.
pub(super) fn race_compactor(stop: &AtomicBool, passes: &AtomicU64) {
    let a = allocator();
    while !stop.load(Ordering::Acquire) {
        for n in a.model().nodes() {
            let _ = a.compact_node(n.node_id);
        }
        passes.fetch_add(1, Ordering::Relaxed);
    }
}

ktest! {
    fn read_whole_image_under_pressure() -> TestResult {
        let r = match ramdisk_or_skip() {
            Ok(r) => r,
            Err(skip) => return skip,
        };
        let a = allocator();
        let image_pages = r.image().len().div_ceil(PAGE_SIZE);
        let mut buf = alloc::vec![0u8; 64 * 1024];
        a.drop_caches();

        // Without pressure: every page is a miss, memory to spare.
        let relaxed = read_image(r, None, &mut buf);
        kassert!(relaxed.errors.is_empty(), "read errors without pressure: {:?}", relaxed.errors);
        kassert!(relaxed.bad.is_empty(), "checksum mismatch without pressure: {:?}", relaxed.bad);
        a.drop_caches();

        let (occupied, free) = squeeze();
        kassert!(
            free < image_pages,
            "{} pages free (outside ZONE_DMA) for a {}-page image",
            free,
            image_pages
        );

        let ev0 = [
            ev(VmEvent::PgscanKswapd),
            ev(VmEvent::PgstealKswapd),
            ev(VmEvent::PgscanDirect),
            ev(VmEvent::PgstealDirect),
        ];
        let rounds0 = crate::kswapd::ROUNDS.load(Ordering::Relaxed);
        let mut samples = WmarkSamples::default();
        let pressed = {
            let _kswapd = KswapdOn::new();
            read_image(r, Some(&mut samples), &mut buf)
        };
        let d = |i: usize, e: VmEvent| ev(e) - ev0[i];
        let (scan_k, steal_k, scan_d, steal_d) = (
            d(0, VmEvent::PgscanKswapd),
            d(1, VmEvent::PgstealKswapd),
            d(2, VmEvent::PgscanDirect),
            d(3, VmEvent::PgstealDirect),
        );
        let cached = a.global_lru_sizes().file_pages;
        kprintln!(
            "reclaim: image {} KiB, {} pages free of {} held by the test; read {} MiB/s without pressure, {} MiB/s under pressure",
            r.image().len() / 1024,
            free,
            occupied.pages(),
            relaxed.mib_per_s(),
            pressed.mib_per_s()
        );
        kprintln!(
            "reclaim: pgscan_kswapd {} pgsteal_kswapd {} pgscan_direct {} pgsteal_direct {}; kswapd {} rounds; {} pages cached at the end",
            scan_k,
            steal_k,
            scan_d,
            steal_d,
            crate::kswapd::ROUNDS.load(Ordering::Relaxed) - rounds0,
            cached
        );
        kprintln!("reclaim: free above the low watermark: {}", samples.report());
        drop(occupied);
        a.drop_caches();
        a.drain_all_pages();
        kassert!(pressed.errors.is_empty(), "read errors under pressure: {:?}", pressed.errors);
        kassert!(pressed.bad.is_empty(), "checksum mismatch under pressure: {:?}", pressed.bad);
        kassert_eq!(pressed.alloc_failures, 0);
        kassert_eq!(pressed.bytes, relaxed.bytes);
        kassert!(steal_k + steal_d > 0, "nothing was reclaimed reading {} pages into {} free", image_pages, free);
        kassert_eq!(a.global_lru_sizes().file_pages, 0);
        check_invariants()
    }

    fn drop_caches_frees_every_clean_page() -> TestResult {
        let r = match ramdisk_or_skip() {
            Ok(r) => r,
            Err(skip) => return skip,
        };
        let a = allocator();
        a.drop_caches();
        a.drain_all_pages();
        let free0 = a.nr_free_pages();
        let heap0 = crate::heap::usage();
        let file = r.image().find("data05.bin").unwrap_or(0);
        let size = r.image().entry(file).map_or(0, |e| e.size);
        let read = ramdisk::read_through_cache(file, |pos, chunk| {
            if r.matches(file, pos, chunk) { Ok(()) } else { Err(format!("stale data at {pos}")) }
        })?;
        kassert_eq!(read, size);
        let cached = a.address_space(file).map_or(0, |s| s.nrpages());
        kassert_eq!(cached, size.div_ceil(PAGE_SIZE));
        let mut out = String::new();
        crate::procfs::write("/proc/sys/vm/drop_caches", "1", &mut out).map_err(|e| format!("{e}"))?;
        kprint!("{out}");
        a.drain_all_pages();
        kassert_eq!(a.address_space(file).map_or(0, |s| s.nrpages()), 0);
        kassert_eq!(a.global_lru_sizes().file_pages, 0);
        // The file's index pages stay (as xarray nodes of a live inode would): at most a
        // directory and its leaves.
        let tree_pages = 1 + size.div_ceil(PAGE_SIZE).div_ceil(512);
        let heap_pages = heap_growth_pages(heap0);
        kassert!(
            a.nr_free_pages() + tree_pages + heap_pages >= free0,
            "free {} -> {} (heap grew by {} pages)",
            free0,
            a.nr_free_pages(),
            heap_pages
        );
        check_invariants()
    }

    fn reclaim_compaction_and_readers_race() -> TestResult {
        let a = allocator();
        let (r, me, others, files) = match race_setup() {
            Ok(s) => s,
            Err(t) => return t,
        };
        // Warm every index page once, so the free count below does not move by them.
        for &f in &files {
            ramdisk::read_through_cache(f, |_, _| Ok(()))?;
        }
        a.drop_caches();
        a.drain_all_pages();
        let heap0 = crate::heap::usage();
        let free0 = a.nr_free_pages();
        let readers = &others[1..];
        let stale = AtomicU64::new(0);
        let errors = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let (compactions, migrated0) = (AtomicU64::new(0), ev(VmEvent::PgmigrateSuccess));
        let (drops, dropped, shrunk) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        run_race(me, &others, 1000, [&drops, &dropped, &shrunk, &compactions], &|slot, stop| {
            let mut buf = [0u8; 3 * 4096 + 100];
            let mut round = slot;
            while !stop.load(Ordering::Acquire) {
                let f = files[round % files.len()];
                round += 1;
                let size = r.image().entry(f).map_or(0, |e| e.size);
                // Odd-sized reads from a moving offset: chunks straddle page boundaries.
                let mut pos = (round as u64 * 777) % 4096;
                while pos < size && !stop.load(Ordering::Relaxed) {
                    match a.page_cache_read(f, pos, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if !r.matches(f, pos, &buf[..n]) {
                                stale.fetch_add(1, Ordering::Relaxed);
                            }
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                            pos += n as u64;
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        });
        let migrated = ev(VmEvent::PgmigrateSuccess) - migrated0;
        let sizes = a.global_lru_sizes();
        let indexed: u64 = (0..r.image().nr_files())
            .filter_map(|f| a.address_space(f))
            .map(|s| s.nrpages())
            .sum();
        kprintln!(
            "reclaim race: {} readers read {} KiB ({} stale, {} errors); {} compaction passes migrated {} pages; {} drop/shrink rounds freed {} + {} pages; {} pages cached at the end",
            readers.len(),
            bytes.load(Ordering::Relaxed) / 1024,
            stale.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
            compactions.load(Ordering::Relaxed),
            migrated,
            drops.load(Ordering::Relaxed),
            dropped.load(Ordering::Relaxed),
            shrunk.load(Ordering::Relaxed),
            sizes.file_pages
        );
        kassert_eq!(stale.load(Ordering::Relaxed), 0);
        kassert_eq!(errors.load(Ordering::Relaxed), 0);
        kassert!(bytes.load(Ordering::Relaxed) > 0, "the readers read nothing");
        // No page lost: every cached page is indexed and listed (nothing stays isolated).
        kassert_eq!(sizes.file_pages, indexed);
        kassert_eq!(sizes.inactive_file + sizes.active_file, sizes.file_pages);
        check_invariants()?;
        // ... and dropping them gives back every page the race took (what the heap grew by
        // meanwhile aside, and index pages of files other than the shared ones: none).
        a.drop_caches();
        a.drain_all_pages();
        kassert_eq!(a.global_lru_sizes().file_pages, 0);
        let heap_pages = heap_growth_pages(heap0);
        kassert_eq!(a.nr_free_pages() + heap_pages, free0);
        check_invariants()
    }
}
