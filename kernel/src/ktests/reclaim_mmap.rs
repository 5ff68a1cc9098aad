//! The page cache read through file mappings (`zonebuddy::reclaim::mmap`) on real CPUs:
//! issue 15's mapped-file scenarios, next to the read-by-copy ones of
//! [`super::reclaim`] (same ramdisk, same pressure set-up; skipped without a ramdisk).
//!
//! - [`read_image_through_mappings_under_pressure`]: every file of the image is mapped and
//!   read through its window, so every first touch is a page fault that fills the page
//!   from the ramdisk (`crate::fault` → `filemap_fault`). Once with memory to spare, once
//!   with all but a few MiB taken: the image cannot fit, so reclaim must unmap mapped
//!   pages (through the reverse map, with TLB shootdowns on 4 CPUs) to make room, and the
//!   reads fault them back in. Checksums must match. kswapd runs, and the share of
//!   samples in which the node's free memory was above the sum of its zones' low
//!   watermarks is printed and must be at least half. The per-zone shares are printed
//!   too, and tell a different story on a 1 GiB machine: ZONE_DMA32 spends most samples
//!   below its own low watermark. That is Linux's rule, kept on purpose:
//!   `pgdat_balanced` calls the node balanced when *any* eligible zone meets its high
//!   watermark plus `lowmem_reserve`, and ZONE_DMA sits right at that line (the cache's
//!   allocations fall back into it down to its low watermark plus the reserve, which the
//!   printed minimum shows, and the cache pages reclaim frees there bring it back above),
//!   so kswapd stops while DMA32 lies between its min and low watermarks; allocations
//!   still succeed there at the min watermark, and direct reclaim covers the rest.
//! - [`mapped_readers_reclaim_and_compaction_race`]: readers on two or more CPUs read
//!   through shared mappings, checking every byte, while one CPU compacts (migrating the
//!   mapped pages: their entries become migration entries the readers fault on) and one
//!   reclaims (unmapping them): no stale read, no lost page, invariants clean.

use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use zonebuddy::{
    model::mmzone::{MAX_NR_ZONES, PAGE_SIZE, ZoneType},
    reclaim::mmap::{FileMapping, MmapError},
    report::vmstat::VmEvent,
};

use super::reclaim::{
    KswapdOn, ReadPass, WmarkSamples, check_invariants, ev, race_setup, ramdisk_or_skip, run_race,
    squeeze,
};
use crate::{arch::time, kassert, kassert_eq, ktest, memory::allocator, ramdisk::Ramdisk, rdfs};

/// Copy `buf.len()` bytes at `va` of a file window into `buf`, as a user process reads
/// mapped memory: a page not mapped faults and is filled (`crate::fault`), a page under
/// migration faults and is waited for, and the copy restarts.
fn copy_from_window(m: &FileMapping, off: u64, buf: &mut [u8]) {
    assert!(off + buf.len() as u64 <= m.nr_pages() * PAGE_SIZE);
    let va = m.start() + off;
    // SAFETY: `[va, va + len)` lies inside the live window `m` (checked above; the window
    // is not unmapped while `m` is borrowed), whose entries map read-only page-cache pages
    // or fault into `filemap_fault`; the file's contents never change, so whichever frame
    // backs a byte when it is read holds the file's byte. Interrupts are enabled (the
    // fault may wait for other CPUs). `buf` is ours and does not overlap the window.
    unsafe { core::ptr::copy_nonoverlapping(va as *const u8, buf.as_mut_ptr(), buf.len()) };
}

/// How often the node's free memory was above the sum of its zones' low watermarks, and
/// each zone's above its own.
#[derive(Default)]
struct NodeSamples {
    above: u64,
    total: u64,
    zones: WmarkSamples,
    /// ZONE_DMA's smallest free count seen, and its low watermark plus the
    /// lowmem_reserve a GFP_HIGHUSER_MOVABLE allocation must leave there: whether the
    /// cache's allocations do fall back into it as far as Linux's rule lets them.
    dma_min_free: Option<u64>,
    dma_floor: u64,
}

impl NodeSamples {
    fn sample(&mut self) {
        self.zones.sample();
        for n in allocator().model().nodes() {
            if let Some(z) = n.populated_zones().find(|z| z.zone_type == ZoneType::Dma) {
                let free = z.nr_free_pages();
                self.dma_min_free = Some(self.dma_min_free.map_or(free, |m| m.min(free)));
                self.dma_floor =
                    z.watermarks().low_wmark_pages() + z.lowmem_reserve()[MAX_NR_ZONES - 1];
            }
            let (free, low) = n.populated_zones().fold((0, 0), |(f, l), z| {
                (f + z.nr_free_pages(), l + z.watermarks().low_wmark_pages())
            });
            self.total += 1;
            if free > low {
                self.above += 1;
            }
        }
    }

    fn share(&self) -> u64 {
        (self.above * 100).checked_div(self.total).unwrap_or(100)
    }
}

/// Map every file, read each through its window in 64 KiB chunks with checksums, keep all
/// windows until the end (so mapped pages pile up and reclaim has to unmap them), then
/// unmap them all. Returns the pass and the entries mapped when the last file was read.
fn map_read_image(
    r: &Ramdisk,
    mut samples: Option<&mut NodeSamples>,
    buf: &mut [u8],
) -> (ReadPass, u64) {
    let a = allocator();
    let mut pass = ReadPass::default();
    let mut maps = Vec::new();
    for file in 0..r.image().nr_files() {
        let Some(e) = r.image().entry(file) else {
            continue;
        };
        let m = match a.filemap_mmap(file) {
            Ok(m) => m,
            Err(MmapError::EmptyFile(_)) => continue,
            Err(err) => {
                pass.errors.push(format!("mmap {}: {err}", e.name()));
                continue;
            }
        };
        let mut sum = rdfs::FNV_OFFSET;
        let mut pos = 0u64;
        while pos < e.size {
            let n = (e.size - pos).min(buf.len() as u64) as usize;
            let t0 = time::now_ns();
            copy_from_window(&m, pos, &mut buf[..n]);
            pass.read_ns += time::now_ns() - t0;
            sum = rdfs::fnv1a(sum, &buf[..n]);
            pos += n as u64;
            if let Some(s) = samples.as_deref_mut() {
                s.sample();
            }
        }
        pass.bytes += pos;
        if sum != e.checksum {
            pass.bad.push(String::from(e.name()));
        }
        maps.push(m);
    }
    let mapped_at_end = a.file_mapped_pages();
    for m in maps {
        if let Err(err) = a.filemap_munmap(m) {
            pass.errors.push(format!("munmap: {err}"));
        }
    }
    (pass, mapped_at_end)
}

ktest! {
    fn read_image_through_mappings_under_pressure() -> TestResult {
        let r = match ramdisk_or_skip() {
            Ok(r) => r,
            Err(skip) => return skip,
        };
        let a = allocator();
        let image_pages = r.image().len().div_ceil(PAGE_SIZE);
        let mut buf = alloc::vec![0u8; 64 * 1024];
        a.drop_caches();
        let (faults0, maj0) = (ev(VmEvent::Pgfault), ev(VmEvent::Pgmajfault));

        let (relaxed, _) = map_read_image(r, None, &mut buf);
        kassert!(relaxed.errors.is_empty(), "errors without pressure: {:?}", relaxed.errors);
        kassert!(relaxed.bad.is_empty(), "checksum mismatch without pressure: {:?}", relaxed.bad);
        kassert_eq!(a.file_mapped_pages(), 0);
        let relaxed_faults = ev(VmEvent::Pgfault) - faults0;
        kassert!(
            relaxed_faults >= relaxed.bytes / PAGE_SIZE,
            "{} faults for {} bytes",
            relaxed_faults,
            relaxed.bytes
        );
        check_invariants()?;
        a.drop_caches();

        let (occupied, free) = squeeze();
        kassert!(free < image_pages, "{} pages free for a {}-page image", free, image_pages);
        let ev0 = [
            VmEvent::PgscanKswapd,
            VmEvent::PgstealKswapd,
            VmEvent::PgscanDirect,
            VmEvent::PgstealDirect,
            VmEvent::PgunmapReclaim,
            VmEvent::PgmigrateFileMapped,
            VmEvent::Pgfault,
            VmEvent::Pgmajfault,
            VmEvent::NrTlbRemoteFlush,
        ]
        .map(|e| (e, ev(e)));
        let d = |i: usize| ev(ev0[i].0) - ev0[i].1;
        let mut samples = NodeSamples::default();
        let (pressed, mapped_at_end) = {
            let _kswapd = KswapdOn::new();
            map_read_image(r, Some(&mut samples), &mut buf)
        };
        kprintln!(
            "reclaim mmap: image {} KiB through mappings, {} pages free of {} held; read {} MiB/s without pressure, {} MiB/s under pressure",
            r.image().len() / 1024,
            free,
            occupied.pages(),
            relaxed.mib_per_s(),
            pressed.mib_per_s()
        );
        kprintln!(
            "reclaim mmap: faults {} (major {}) without pressure, {} (major {}) under pressure; {} pages mapped at the end; {} unmapped by reclaim; {} migrated while mapped; {} remote TLB flushes",
            relaxed_faults,
            ev0[7].1 - maj0,
            d(6),
            d(7),
            mapped_at_end,
            d(4),
            d(5),
            d(8)
        );
        kprintln!(
            "reclaim mmap: pgscan_kswapd {} pgsteal_kswapd {} pgscan_direct {} pgsteal_direct {}",
            d(0),
            d(1),
            d(2),
            d(3)
        );
        kprintln!(
            "reclaim mmap: node free above the sum of the low watermarks in {}% of {} samples; per zone: {}",
            samples.share(),
            samples.total,
            samples.zones.report()
        );
        kprintln!(
            "reclaim mmap: ZONE_DMA free at least {} during the read; its low watermark + lowmem_reserve[Movable] {}",
            samples.dma_min_free.unwrap_or(0),
            samples.dma_floor
        );
        drop(occupied);
        a.drop_caches();
        a.drain_all_pages();
        kassert!(pressed.errors.is_empty(), "errors under pressure: {:?}", pressed.errors);
        kassert!(pressed.bad.is_empty(), "checksum mismatch under pressure: {:?}", pressed.bad);
        kassert_eq!(pressed.bytes, relaxed.bytes);
        kassert!(d(4) > 0, "reclaim unmapped nothing reading {} pages into {} free", image_pages, free);
        kassert!(
            d(7) >= pressed.bytes / PAGE_SIZE,
            "{} major faults for {} bytes read from a dropped cache",
            d(7),
            pressed.bytes
        );
        kassert!(
            samples.share() >= 50,
            "kswapd kept the node above its low watermarks in only {}% of samples",
            samples.share()
        );
        kassert_eq!(a.file_mapped_pages(), 0);
        kassert_eq!(a.global_lru_sizes().file_pages, 0);
        check_invariants()
    }

    fn mapped_readers_reclaim_and_compaction_race() -> TestResult {
        let a = allocator();
        let (r, me, others, files) = match race_setup() {
            Ok(s) => s,
            Err(t) => return t,
        };
        a.drop_caches();
        let maps: Vec<FileMapping> = files
            .iter()
            .map(|&f| a.filemap_mmap(f))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("mmap: {e}"))?;
        let readers = &others[1..];
        let stale = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let ev0 = [
            VmEvent::PgunmapReclaim,
            VmEvent::PgmigrateFileMapped,
            VmEvent::Pgfault,
            VmEvent::PgmigrateSuccess,
        ]
        .map(|e| (e, ev(e)));
        let d = |i: usize| ev(ev0[i].0) - ev0[i].1;
        let waits0 = crate::fault::MIGRATION_WAITS.load(Ordering::Relaxed);
        let (compactions, rounds, dropped, shrunk) =
            (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        // The reclaimer drops what is unmapped; its direct reclaim unmaps the rest.
        run_race(me, &others, 500, [&rounds, &dropped, &shrunk, &compactions], &|slot, stop| {
            let mut buf = [0u8; 3 * 4096 + 100];
            let mut round = slot;
            while !stop.load(Ordering::Acquire) {
                let (f, m) = (files[round % files.len()], &maps[round % files.len()]);
                round += 1;
                let size = r.image().entry(f).map_or(0, |e| e.size);
                let mut pos = (round as u64 * 777) % 4096;
                while pos < size && !stop.load(Ordering::Relaxed) {
                    let n = (size - pos).min(buf.len() as u64) as usize;
                    copy_from_window(m, pos, &mut buf[..n]);
                    if !r.matches(f, pos, &buf[..n]) {
                        stale.fetch_add(1, Ordering::Relaxed);
                    }
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                    pos += n as u64;
                }
            }
        });
        let mapped = a.file_mapped_pages();
        kprintln!(
            "reclaim mmap race: {} readers read {} KiB through mappings ({} stale); {} faults, {} migration-entry waits; {} compaction passes migrated {} pages, {} of them mapped; {} reclaim rounds dropped {} + reclaimed {} pages, unmapping {}; {} pages mapped at the end",
            readers.len(),
            bytes.load(Ordering::Relaxed) / 1024,
            stale.load(Ordering::Relaxed),
            d(2),
            crate::fault::MIGRATION_WAITS.load(Ordering::Relaxed) - waits0,
            compactions.load(Ordering::Relaxed),
            d(3),
            d(1),
            rounds.load(Ordering::Relaxed),
            dropped.load(Ordering::Relaxed),
            shrunk.load(Ordering::Relaxed),
            d(0),
            mapped
        );
        kassert_eq!(stale.load(Ordering::Relaxed), 0);
        kassert!(bytes.load(Ordering::Relaxed) > 0, "the readers read nothing");
        kassert!(d(0) > 0, "reclaim never unmapped a mapped page");
        let sizes = a.global_lru_sizes();
        let indexed: u64 = (0..r.image().nr_files())
            .filter_map(|f| a.address_space(f))
            .map(|s| s.nrpages())
            .sum();
        kassert_eq!(sizes.file_pages, indexed);
        kassert_eq!(sizes.inactive_file + sizes.active_file, sizes.file_pages);
        // With the windows still mapped: the entries agree with the pages' mapcounts.
        check_invariants()?;
        for m in maps {
            a.filemap_munmap(m).map_err(|e| format!("munmap: {e}"))?;
        }
        kassert_eq!(a.file_mapped_pages(), 0);
        a.drop_caches();
        kassert_eq!(a.global_lru_sizes().file_pages, 0);
        check_invariants()
    }
}
