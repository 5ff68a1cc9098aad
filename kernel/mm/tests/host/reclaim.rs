//! Reclaim: the page cache over a deterministic image, LRU aging against hand-worked
//! sequences, direct reclaim, kswapd, shrinkers, and compaction of cache pages. The
//! invariant checker (which covers the LRU lists) runs after every step.

use std::sync::Mutex;

use zonebuddy::model::list::PageList;
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{PAGE_SIZE, ZoneType};
use zonebuddy::model::page::Page;
use zonebuddy::movement::migrate::{MigrateMode, MigrateReason};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::{SimAllocator, qemu_e820};
use zonebuddy::reclaim::filemap::{Backing, BackingError};
use zonebuddy::reclaim::shrinker::{ShrinkControl, Shrinker, do_shrink_slab};
use zonebuddy::reclaim::vmscan::{ScanControl, inactive_is_low, int_sqrt};
use zonebuddy::report::vmstat::VmEvent;

const MIB: u64 = 1 << 20;

pub(crate) fn machine(mib: u64) -> SimAllocator {
    SimAllocator::build(&qemu_e820(mib * MIB), &[], &ModelParams::default(), 1)
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn check(a: &SimAllocator) {
    if let Err(v) = zonebuddy::report::debug::check(&**a) {
        panic!("debug::check: {v}");
    }
}

/// A deterministic read-only image: file `f` has `sizes[f]` bytes, byte `o` is
/// [`image_byte`].
pub(crate) struct Image {
    sizes: Vec<u64>,
}

pub(crate) fn image_byte(file: u32, off: u64) -> u8 {
    let mut x = ((file as u64) << 48) ^ (off / 8);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> ((off % 8) * 8)) as u8
}

impl Backing for Image {
    fn nr_files(&self) -> u32 {
        self.sizes.len() as u32
    }
    fn file_size(&self, file: u32) -> Option<u64> {
        self.sizes.get(file as usize).copied()
    }
    fn read_page(&self, file: u32, index: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        let size = self.file_size(file).ok_or(BackingError::NoFile)?;
        let start = index * PAGE_SIZE;
        for (i, b) in buf.iter_mut().enumerate() {
            let o = start + i as u64;
            *b = if o < size { image_byte(file, o) } else { 0xee };
        }
        Ok(())
    }
}

pub(crate) fn image(sizes: &[u64]) -> &'static Image {
    Box::leak(Box::new(Image {
        sizes: sizes.to_vec(),
    }))
}

/// Read one whole page of `file` through the cache and check every byte.
fn read_page(a: &SimAllocator, file: u32, index: u64) {
    let mut buf = vec![0u8; PAGE_SIZE as usize];
    let n = a
        .page_cache_read(file, index * PAGE_SIZE, &mut buf)
        .unwrap_or_else(|e| panic!("read {file}:{index}: {e}"));
    for (i, b) in buf[..n].iter().enumerate() {
        assert_eq!(
            *b,
            image_byte(file, index * PAGE_SIZE + i as u64),
            "file {file} page {index} byte {i}"
        );
    }
}

fn cached(a: &SimAllocator, file: u32, index: u64) -> Option<(bool, bool)> {
    let p = a.find_get_page(file, index)?;
    let r = (p.is_active(), p.is_referenced());
    a.put_page(p).unwrap();
    Some(r)
}

pub(crate) fn direct_sc() -> ScanControl {
    ScanControl::new(u64::MAX, ZoneType::Movable.index(), 0, false, GFP_KERNEL)
}

#[test]
fn inactive_ratio_follows_sqrt_rule() {
    assert_eq!(
        [0, 1, 3, 4, 9, 10, 99, 100].map(int_sqrt),
        [0, 1, 1, 2, 3, 3, 9, 10]
    );
    // Below 1 GiB the ratio is 1: inactive must not be smaller than active.
    assert!(!inactive_is_low(100, 100));
    assert!(inactive_is_low(100, 101));
    // 1 GiB in all (262144 pages): ratio int_sqrt(10) = 3.
    assert!(!inactive_is_low(65536, 196608));
    assert!(inactive_is_low(65535, 196609));
    // 10 GiB: ratio 10.
    let total = 10 * 262_144;
    assert!(!inactive_is_low(total / 11 + 1, total - (total / 11 + 1)));
    assert!(inactive_is_low(total / 12, total - total / 12));
}

/// Access patterns against the outcome worked out by hand from Linux's rules.
#[test]
fn lru_aging_hand_worked() {
    let a = machine(32);
    a.page_cache_set_backing(image(&[8 * PAGE_SIZE]));
    let ev = |e| a.vm_event(e);
    // One read each: all referenced, inactive. Inactive head..tail: 7 6 5 4 3 2 1 0.
    for i in 0..8 {
        read_page(&a, 0, i);
        check(&a);
    }
    assert!((0..8).all(|i| cached(&a, 0, i) == Some((false, true))));
    // Second reads of 0 and 1: promoted (referenced cleared). Active: 1 0.
    read_page(&a, 0, 0);
    read_page(&a, 0, 1);
    // A third read of 0 marks it referenced on the active list.
    read_page(&a, 0, 0);
    check(&a);
    assert_eq!(cached(&a, 0, 0), Some((true, true)));
    assert_eq!(cached(&a, 0, 1), Some((true, false)));
    let l = a.lru_sizes(0);
    assert_eq!((l.inactive_file, l.active_file, l.file_pages), (6, 2, 8));
    assert_eq!(ev(VmEvent::Pgactivate), 2);

    // Scan 3 from the inactive tail: 2, 3, 4 go (referenced or not: unmapped pages are
    // only protected by promotion).
    let mut sc = direct_sc();
    assert_eq!(a.shrink_inactive_list(0, 3, &mut sc), 3);
    check(&a);
    assert!((2..5).all(|i| cached(&a, 0, i).is_none()));
    assert!(cached(&a, 0, 5).is_some());
    // Page 5 is in use by a reader: scanning it rotates it to the head (5 7 6).
    let held = a.find_get_page(0, 5).unwrap();
    assert_eq!(a.shrink_inactive_list(0, 1, &mut sc), 0);
    check(&a);
    a.put_page(held).unwrap();
    // The tail is now 6.
    assert_eq!(a.shrink_inactive_list(0, 1, &mut sc), 1);
    assert!(cached(&a, 0, 6).is_none() && cached(&a, 0, 5).is_some());
    // Deactivate one: the active tail is 0, which keeps PG_referenced (inactive: 0 5 7).
    a.shrink_active_list(0, 1, &mut sc);
    check(&a);
    assert_eq!(cached(&a, 0, 0), Some((false, true)));
    assert_eq!((ev(VmEvent::Pgrefill), ev(VmEvent::Pgdeactivate)), (1, 1));
    // Its next access promotes it straight back.
    read_page(&a, 0, 0);
    assert_eq!(cached(&a, 0, 0), Some((true, false)));
    assert_eq!(ev(VmEvent::Pgactivate), 3);
    // Everything inactive goes: 7 then 5.
    assert_eq!(a.shrink_inactive_list(0, 10, &mut sc), 2);
    check(&a);
    let left: Vec<u64> = (0..8).filter(|&i| cached(&a, 0, i).is_some()).collect();
    assert_eq!(left, [0, 1]);
    let l = a.lru_sizes(0);
    assert_eq!((l.inactive_file, l.active_file, l.file_pages), (0, 2, 2));
    assert_eq!(ev(VmEvent::PgscanDirect), 3 + 1 + 1 + 2);
    assert_eq!(ev(VmEvent::PgstealDirect), 3 + 1 + 2);
    assert_eq!(sc.nr_reclaimed, 6);
    // Evicted pages read back identical.
    for i in 0..8 {
        read_page(&a, 0, i);
    }
    check(&a);
    assert_eq!(a.drop_caches(), 8);
    assert_eq!(a.lru_sizes(0).file_pages, 0);
    check(&a);
}

/// A file larger than memory, read through the cache on a small machine: every byte
/// matches, no read fails (reclaim frees clean pages in time), and dropping the cache
/// gives the memory back.
#[test]
fn read_file_larger_than_memory() {
    let a = machine(32);
    let size = 48 * MIB + 123;
    a.page_cache_set_backing(image(&[size, 3 * PAGE_SIZE]));
    let free0 = {
        a.drain_all_pages();
        a.nr_free_pages()
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0;
    let mut chunks = 0;
    while pos < size {
        let n = a
            .page_cache_read(0, pos, &mut buf)
            .unwrap_or_else(|e| panic!("at {pos}: {e}"));
        assert!(n > 0);
        for (i, b) in buf[..n].iter().enumerate() {
            if *b != image_byte(0, pos + i as u64) {
                panic!("byte {} differs", pos + i as u64);
            }
        }
        pos += n as u64;
        chunks += 1;
        if chunks % 64 == 0 {
            check(&a);
        }
    }
    assert_eq!(pos, size);
    assert_eq!(a.page_cache_read(0, size, &mut buf), Ok(0));
    check(&a);
    let l = a.lru_sizes(0);
    eprintln!(
        "48 MiB file on 32 MiB: cached {} pages (inactive {}, active {}), pgscan_direct {}, pgsteal_direct {}, allocstall {}",
        l.file_pages,
        l.inactive_file,
        l.active_file,
        a.vm_event(VmEvent::PgscanDirect),
        a.vm_event(VmEvent::PgstealDirect),
        a.vm_event(VmEvent::AllocstallNormal)
            + a.vm_event(VmEvent::AllocstallDma32)
            + a.vm_event(VmEvent::AllocstallMovable)
    );
    assert!(a.vm_event(VmEvent::PgstealDirect) > 0, "no direct reclaim");
    assert!(l.file_pages > 0 && l.file_pages < size / PAGE_SIZE);
    assert_eq!(a.vm_event(VmEvent::PgallocFail), 0);
    let dropped = a.drop_caches();
    assert_eq!(dropped, l.file_pages);
    check(&a);
    a.drain_all_pages();
    // Everything but the index pages (1 directory + 25 leaves) is back.
    assert_eq!(a.nr_free_pages(), free0 - 26);
}

/// An allocation that finds memory full of clean cache reclaims it and succeeds.
#[test]
fn direct_reclaim_makes_allocation_succeed() {
    let a = machine(32);
    a.page_cache_set_backing(image(&[64 * MIB]));
    // Fill the cache until the first direct reclaim: memory is full of clean pages.
    let mut i = 0;
    while a.vm_event(VmEvent::PgstealDirect) == 0 {
        read_page(&a, 0, i);
        i += 1;
    }
    check(&a);
    let cached0 = a.lru_sizes(0).file_pages;
    // Without direct reclaim the allocator must fail at some point...
    let nowait = GFP_NOWAIT;
    let mut held = Vec::new();
    while let Some(p) = a.alloc_page(nowait) {
        held.push(p);
    }
    // ...with it, the same request succeeds, from reclaimed cache pages.
    let steal0 = a.vm_event(VmEvent::PgstealDirect);
    for _ in 0..256 {
        let p = a
            .alloc_page(GFP_KERNEL)
            .expect("direct reclaim should free cache pages");
        held.push(p);
    }
    check(&a);
    assert!(a.vm_event(VmEvent::PgstealDirect) > steal0);
    assert!(a.lru_sizes(0).file_pages < cached0);
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    check(&a);
}

/// kswapd balances a node to the high watermark, resets boosts and hands high orders to
/// kcompactd; its nap and sleep follow `kswapd_try_to_sleep`.
#[test]
fn kswapd_balances_node() {
    let a = machine(64);
    let plat = a.sim_platform();
    plat.set_kswapd(true);
    a.page_cache_set_backing(image(&[128 * MIB]));
    let zt = ZoneType::Dma32;
    let zone = a.zone_of(0, zt).unwrap();
    // Fill memory with cache until the first direct reclaim (kswapd is declared but
    // nobody runs it yet), then take what is left without reclaiming: the zone ends
    // below its min watermark, with allocations having woken kswapd.
    let mut i = 0;
    while a.vm_event(VmEvent::PgstealDirect) == 0 {
        read_page(&a, 0, i);
        i += 1;
    }
    let mut nowait = Vec::new();
    while let Some(p) = a.alloc_page(GFP_NOWAIT) {
        nowait.push(p);
    }
    a.drain_all_pages();
    check(&a);
    assert!(plat.kswapd_wakes() > 0, "kswapd never woken");
    assert!(!a.pgdat_balanced(0, 0, zt.index()));
    let run0 = a.vm_event(VmEvent::Pageoutrun);
    // Ask for an order-3 block too: kswapd must hand it to kcompactd (or pageblock order,
    // if the fill raised a boost: boosted runs hand fragmentation repair over).
    a.wakeup_kswapd(0, GFP_NOWAIT, 3, zt.index());
    let boosted_fill = ZoneType::ALL
        .iter()
        .filter_map(|&z| a.zone_of(0, z))
        .any(|z| z.watermarks().boost > 0);
    assert_eq!(a.kcompactd_pending_order(0), 0);
    let sleep = a.kswapd_run(0, 1_000);
    eprintln!("kswapd ran: {sleep}");
    check(&a);
    assert_eq!(sleep, zonebuddy::reclaim::kswapd::KSWAPD_NAP_MS);
    a.drain_all_pages();
    let w = zone.watermarks();
    assert!(
        zone.nr_free_pages() > w.high_wmark_pages(),
        "free {} not above high {}",
        zone.nr_free_pages(),
        w.high_wmark_pages()
    );
    assert!(a.pgdat_balanced(0, 0, zt.index()));
    assert_eq!(a.vm_event(VmEvent::Pageoutrun), run0 + 1);
    assert!(a.vm_event(VmEvent::PgscanKswapd) > 0);
    assert!(a.vm_event(VmEvent::PgstealKswapd) > 0);
    let expect = if boosted_fill {
        zonebuddy::model::mmzone::PAGEBLOCK_ORDER
    } else {
        3
    };
    assert_eq!(a.kcompactd_pending_order(0), expect);
    for z in ZoneType::ALL.iter().filter_map(|&z| a.zone_of(0, z)) {
        assert_eq!(z.watermarks().boost, 0, "boost left after kswapd");
    }
    // kcompactd serves it.
    a.kcompactd_run(0, 1_000);
    assert_eq!(a.kcompactd_pending_order(0), 0);
    eprintln!(
        "kswapd: pgscan_kswapd {} pgsteal_kswapd {} free {} high {}",
        a.vm_event(VmEvent::PgscanKswapd),
        a.vm_event(VmEvent::PgstealKswapd),
        zone.nr_free_pages(),
        w.high_wmark_pages()
    );
    // Woken during the nap: low watermark hit quickly; a nap that ends balanced: sleep.
    a.wakeup_kswapd(0, GFP_NOWAIT, 0, zt.index());
    assert_eq!(
        a.kswapd_run(0, 1_050),
        zonebuddy::reclaim::kswapd::KSWAPD_NAP_MS
    );
    assert_eq!(a.vm_event(VmEvent::KswapdLowWmarkHitQuickly), 1);
    assert_eq!(
        a.kswapd_run(0, 10_000),
        zonebuddy::reclaim::kswapd::KSWAPD_SLEEP_FOREVER
    );
    assert_eq!(a.vm_event(VmEvent::KswapdHighWmarkHitQuickly), 0);

    // Watermark boost: unmovable allocations that fall back into movable pageblocks
    // boost the zone; the allocation that sees the boost wakes kswapd, which resets it.
    let boost0 = a.vm_event(VmEvent::WatermarkBoost);
    let mut held = Vec::new();
    while a.vm_event(VmEvent::WatermarkBoost) == boost0 && held.len() < 20_000 {
        match a.alloc_page(GFP_KERNEL) {
            Some(p) => held.push(p),
            None => break,
        }
    }
    eprintln!("boost loop: {} held", held.len());
    assert!(
        a.vm_event(VmEvent::WatermarkBoost) > boost0,
        "no boost raised"
    );
    let boosted = ZoneType::ALL
        .iter()
        .filter_map(|&z| a.zone_of(0, z))
        .any(|z| z.watermarks().boost > 0);
    assert!(boosted, "the boost was reset without kswapd");
    a.kswapd_run(0, 20_000);
    check(&a);
    for z in ZoneType::ALL.iter().filter_map(|&z| a.zone_of(0, z)) {
        assert_eq!(z.watermarks().boost, 0, "boost left after kswapd");
    }
    assert_eq!(
        a.kcompactd_pending_order(0),
        zonebuddy::model::mmzone::PAGEBLOCK_ORDER
    );
    for p in held.into_iter().chain(nowait) {
        a.free_pages(p, 0).unwrap();
    }
    check(&a);
}

/// A shrinker whose objects are counters; records each scan request.
struct Counted {
    objects: Mutex<u64>,
    seeks: u32,
    scans: Mutex<Vec<u64>>,
}

impl Shrinker for Counted {
    fn count_objects(&self, _sc: &ShrinkControl) -> u64 {
        *self.objects.lock().unwrap()
    }
    fn scan_objects(&self, sc: &mut ShrinkControl) -> u64 {
        self.scans.lock().unwrap().push(sc.nr_to_scan);
        let mut o = self.objects.lock().unwrap();
        let n = sc.nr_to_scan.min(*o);
        *o -= n;
        n
    }
    fn seeks(&self) -> u32 {
        self.seeks
    }
}

fn counted(objects: u64, seeks: u32) -> &'static Counted {
    Box::leak(Box::new(Counted {
        objects: Mutex::new(objects),
        seeks,
        scans: Mutex::new(Vec::new()),
    }))
}

#[test]
fn shrinker_proportional_scanning() {
    let sc0 = ShrinkControl {
        gfp: GFP_KERNEL,
        nid: 0,
        nr_to_scan: 0,
        nr_scanned: 0,
        pages_freed: 0,
    };
    // 10000 objects at priority 2: delta = (10000 >> 2) * 4 / 2 = 5000, scanned in 39
    // batches of 128 (4992); the 8 left over are deferred.
    let s = counted(10_000, 2);
    let mut sc = sc0;
    let r = do_shrink_slab(s, &mut sc, 2, 0);
    assert_eq!((r.freed, r.scanned, r.next_deferred), (4992, 4992, 8));
    assert_eq!(s.scans.lock().unwrap().len(), 39);
    // 5008 left at priority 12: delta = (5008 >> 12) * 4 / 2 = 2; total 2 < batch: no scan,
    // deferred 8 + 2.
    let r = do_shrink_slab(s, &mut sc, 12, r.next_deferred);
    assert_eq!((r.scanned, r.next_deferred), (0, 10));
    // seeks 1 doubles the pressure; seeks 0 scans half the cache.
    let r = do_shrink_slab(counted(4096, 1), &mut sc, 4, 0);
    assert_eq!((r.scanned, r.next_deferred), (1024, 0));
    let r = do_shrink_slab(counted(1000, 0), &mut sc, 12, 0);
    assert_eq!((r.scanned, r.next_deferred), (384, 500 - 384));
    // The deferred count never exceeds twice the cache.
    let r = do_shrink_slab(counted(100, 2), &mut sc, 12, 10_000);
    assert_eq!(r.next_deferred, 200);
    // A cache smaller than a batch: delta = 50 * 4 / 2 = 100 >= freeable, so one call
    // of 100 (Linux asks for more than there is, too).
    let r = do_shrink_slab(counted(50, 2), &mut sc, 0, 0);
    assert_eq!((r.scanned, r.freed, r.next_deferred), (100, 50, 0));

    // Through the registry: node reclaim calls it and keeps its deferred work.
    let a = machine(32);
    let s = counted(10_000, 2);
    let id = a.register_shrinker(s).unwrap();
    assert_eq!(a.shrink_slab(GFP_KERNEL, 0, 2), 0);
    assert_eq!(a.vm_event(VmEvent::SlabsScanned), 4992);
    assert_eq!(a.shrinker_nr_deferred(id), 8);
    assert_eq!(*s.objects.lock().unwrap(), 10_000 - 4992);
    a.unregister_shrinker(id);
    a.shrink_slab(GFP_KERNEL, 0, 0);
    assert_eq!(a.vm_event(VmEvent::SlabsScanned), 4992);
}

/// Compaction isolates cache pages from the LRU, migrates them, and puts the new pages
/// back; a page reclaim has isolated is never isolated by compaction too.
#[test]
fn compaction_migrates_lru_cache_pages() {
    let a = machine(64);
    a.page_cache_set_backing(image(&[8 * MIB, 8 * MIB]));
    // Interleave two files, then drop one: holes every other page.
    for i in 0..2048 {
        read_page(&a, 0, i);
        read_page(&a, 1, i);
    }
    check(&a);
    assert_eq!(a.invalidate_mapping_pages(1), 2048);
    check(&a);

    // One page by hand: isolate, migrate, and find it on the LRU at a new frame.
    let p = a.find_get_page(0, 7).unwrap();
    let old_pfn = a.page_to_pfn(p);
    let was_active = p.is_active();
    a.put_page(p).unwrap();
    // Reclaim isolates it first: compaction must not get it.
    let p = a.find_get_page(0, 7).unwrap();
    assert!(a.isolate_lru_page(p));
    assert!(!a.isolate_migratepage(p, MigrateMode::Sync));
    a.putback_lru_page(p);
    check(&a);
    assert!(a.isolate_migratepage(p, MigrateMode::Sync));
    assert!(!a.isolate_lru_page(p), "isolated twice");
    assert!(p.is_isolated() && !p.is_lru());
    let mut list = PageList::new();
    // SAFETY: the page was just isolated for us.
    unsafe { list.push_back(p) };
    let mut get_new = |_: &Page| a.alloc_page(GFP_HIGHUSER_MOVABLE);
    let mut put_new = |q: &Page| a.free_pages(q, 0).unwrap();
    let left = a
        .migrate_pages(
            &mut list,
            &mut get_new,
            &mut put_new,
            MigrateMode::Sync,
            MigrateReason::Syscall,
        )
        .unwrap();
    assert_eq!(left, 0);
    check(&a);
    let q = a.find_get_page(0, 7).unwrap();
    assert_ne!(a.page_to_pfn(q), old_pfn);
    assert!(q.is_lru() && !q.is_isolated());
    assert_eq!(q.is_active(), was_active);
    a.put_page(q).unwrap();
    read_page(&a, 0, 7);

    // A reader's reference makes migration back off (Again) and put the page back.
    let p = a.find_get_page(0, 9).unwrap();
    assert!(
        !a.isolate_migratepage(p, MigrateMode::Sync),
        "pinned page isolated"
    );
    a.put_page(p).unwrap();

    // Whole-node compaction over the holes.
    let mig0 = a.vm_event(VmEvent::PgmigrateSuccess);
    a.compact_memory();
    check(&a);
    let migrated = a.vm_event(VmEvent::PgmigrateSuccess) - mig0;
    eprintln!("compaction of cache pages: pgmigrate_success {migrated}");
    assert!(migrated > 0, "no cache page migrated");
    let l = a.lru_sizes(0);
    assert_eq!(l.file_pages, 2048);
    assert_eq!(l.inactive_file + l.active_file, 2048);
    for i in 0..2048 {
        read_page(&a, 0, i);
    }
    check(&a);
}

/// drop_caches leaves pages in use; the views show the cache.
#[test]
fn drop_caches_and_views() {
    let a = machine(32);
    a.page_cache_set_backing(image(&[16 * PAGE_SIZE + 5]));
    for i in 0..17 {
        read_page(&a, 0, i);
    }
    read_page(&a, 0, 3);
    let held = a.find_get_page(0, 16).unwrap();
    let mut s = String::new();
    a.write_meminfo(&mut s).unwrap();
    assert!(s.contains("Cached:               68 kB\n"), "{s}");
    assert!(s.contains("Active(file):          4 kB\n"), "{s}");
    assert!(s.contains("Inactive(file):       64 kB\n"), "{s}");
    // MemAvailable counts the cache as Linux's si_mem_available does: 17 cached pages,
    // less half of them (8) since the low watermarks are larger, so 9 pages above what
    // free memory less the reserves gives.
    let m = a.meminfo_snapshot();
    assert_eq!(m.file_lru_pages, 17);
    assert!(m.wmark_low > 8, "low watermarks {}", m.wmark_low);
    let available = (m.free_pages - m.totalreserve_pages + 9) * 4;
    assert!(
        s.contains(&format!("MemAvailable:{available:>11} kB\n")),
        "MemAvailable {available} kB expected: {s}"
    );
    let mut v = String::new();
    a.write_vmstat(&mut v).unwrap();
    assert!(v.contains("\nnr_inactive_file 16\nnr_active_file 1\nnr_mapped 0\nnr_file_pages 17\n"));
    assert_eq!(a.drop_caches(), 16);
    check(&a);
    assert_eq!(a.lru_sizes(0).file_pages, 1);
    a.put_page(held).unwrap();
    assert_eq!(a.drop_caches(), 1);
    assert_eq!(a.vm_event(VmEvent::DropPagecache), 2);
    // The tail of the last page reads as zeros past the end of the file.
    let p = a.read_cache_page(0, 16).unwrap();
    a.put_page(p).unwrap();
    let mut buf = [1u8; 16];
    assert_eq!(a.page_cache_read(0, 16 * PAGE_SIZE, &mut buf), Ok(5));
    assert!(a.read_cache_page(0, 17).is_err());
    assert!(a.read_cache_page(1, 0).is_err());
    check(&a);
}

/// Model-based: random page-cache reads (checked byte by byte), pins, file and global
/// drops, direct and kswapd reclaim, compaction, and anonymous allocations competing for
/// memory, with the invariant checker after every step. The reference model is what is
/// known for sure: a pinned page stays cached and readable, a dropped file has only its
/// pinned pages left, the LRU sizes add up to the cached pages, and no read fails while
/// clean cache pages exist.
#[test]
fn model_cache_reads_drops_and_reclaim() {
    #[derive(Debug)]
    enum Op {
        Read(u32, u64),
        Pin(u32, u64),
        Unpin,
        DropFile(u32),
        DropCaches,
        DirectReclaim,
        Kswapd,
        Compact,
        Alloc,
        Free,
    }
    // Anonymous pages never take more than half of the machine, so cache reads always
    // find clean pages to reclaim.
    const ANON_CAP: usize = 3000;
    for seed in [1u64, 7, 42] {
        let a = machine(24);
        a.sim_platform().set_kswapd(seed == 7);
        let sizes = [20 * MIB + 77, 12 * MIB, 3 * PAGE_SIZE];
        a.page_cache_set_backing(image(&sizes));
        let mut rng = crate::compaction_common::Rng::new(seed);
        let mut rnd = move |n: u64| rng.below(n);
        let mut pins: Vec<(u32, u64, &Page)> = Vec::new();
        let mut anon: Vec<&Page> = Vec::new();
        let mut log: Vec<Op> = Vec::new();
        let mut now = 0;
        for step in 0..600 {
            let f = rnd(3) as u32;
            let pages = sizes[f as usize].div_ceil(PAGE_SIZE);
            let op = match rnd(100) {
                0..=49 => Op::Read(f, rnd(pages)),
                50..=57 => Op::Pin(f, rnd(pages)),
                58..=63 => Op::Unpin,
                64..=66 => Op::DropFile(f),
                67 => Op::DropCaches,
                68..=75 => Op::DirectReclaim,
                76..=81 => Op::Kswapd,
                82..=83 => Op::Compact,
                84..=93 => Op::Alloc,
                _ => Op::Free,
            };
            match &op {
                Op::Read(f, i) => {
                    // A run of pages, as a sequential reader would.
                    let n = rnd(32) + 1;
                    let pages = sizes[*f as usize].div_ceil(PAGE_SIZE);
                    for j in *i..(*i + n).min(pages) {
                        read_page(&a, *f, j);
                    }
                }
                Op::Pin(f, i) => {
                    let p = a
                        .read_cache_page(*f, *i)
                        .expect("read failed with cache to reclaim");
                    pins.push((*f, *i, p));
                }
                Op::Unpin => {
                    if let Some((_, _, p)) = pins.pop() {
                        a.put_page(p).unwrap();
                    }
                }
                Op::DropFile(f) => {
                    a.invalidate_mapping_pages(*f);
                    let left = a.address_space(*f).unwrap().nrpages();
                    let pinned: std::collections::BTreeSet<u64> =
                        pins.iter().filter(|p| p.0 == *f).map(|p| p.1).collect();
                    assert_eq!(
                        left,
                        pinned.len() as u64,
                        "seed {seed} step {step}: only pins stay"
                    );
                }
                Op::DropCaches => {
                    a.drop_caches();
                    let pinned: std::collections::BTreeSet<(u32, u64)> =
                        pins.iter().map(|p| (p.0, p.1)).collect();
                    assert_eq!(a.lru_sizes(0).file_pages, pinned.len() as u64);
                }
                Op::DirectReclaim => {
                    a.try_to_free_pages(GFP_KERNEL, 0, 0, ZoneType::Movable.index());
                }
                Op::Kswapd => {
                    // Pressure without direct reclaim first, so kswapd has work; the
                    // pressure goes away again after it ran.
                    let mut tmp = Vec::new();
                    while let Some(p) = a.alloc_page(GFP_NOWAIT) {
                        tmp.push(p);
                    }
                    now += 1_000;
                    a.kswapd_run(0, now);
                    for p in tmp {
                        a.free_pages(p, 0).unwrap();
                    }
                }
                Op::Compact => {
                    a.compact_memory();
                }
                Op::Alloc => {
                    for _ in 0..rnd(256) {
                        if anon.len() >= ANON_CAP {
                            break;
                        }
                        match a.alloc_page(GFP_KERNEL | Gfp::NOWARN) {
                            Some(p) => anon.push(p),
                            None => break,
                        }
                    }
                }
                Op::Free => {
                    for _ in 0..rnd(512) {
                        match anon.pop() {
                            Some(p) => a.free_pages(p, 0).unwrap(),
                            None => break,
                        }
                    }
                }
            }
            log.push(op);
            if let Err(v) = zonebuddy::report::debug::check(&*a) {
                panic!(
                    "seed {seed} step {step}: {v}; last ops {:?}",
                    &log[log.len().saturating_sub(8)..]
                );
            }
            // Pinned pages are cached, at their index, and intact.
            for (f, i, p) in &pins {
                let q = a.find_get_page(*f, *i).expect("pinned page dropped");
                assert!(
                    std::ptr::eq(*p, q),
                    "seed {seed} step {step}: pinned page replaced"
                );
                a.put_page(q).unwrap();
            }
            let l = a.lru_sizes(0);
            let isolated = l.file_pages - l.inactive_file - l.active_file;
            assert_eq!(isolated, 0, "seed {seed} step {step}: pages left isolated");
        }
        eprintln!(
            "model seed {seed}: pgscan d/k {}/{} pgsteal d/k {}/{} pgactivate {} pgdeactivate {} pgmigrate {}",
            a.vm_event(VmEvent::PgscanDirect),
            a.vm_event(VmEvent::PgscanKswapd),
            a.vm_event(VmEvent::PgstealDirect),
            a.vm_event(VmEvent::PgstealKswapd),
            a.vm_event(VmEvent::Pgactivate),
            a.vm_event(VmEvent::Pgdeactivate),
            a.vm_event(VmEvent::PgmigrateSuccess)
        );
        for (_, _, p) in pins {
            a.put_page(p).unwrap();
        }
        for p in anon {
            a.free_pages(p, 0).unwrap();
        }
        a.drop_caches();
        assert_eq!(a.lru_sizes(0).file_pages, 0);
        check(&a);
    }
}
