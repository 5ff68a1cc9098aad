//! File mappings (`zonebuddy::reclaim::mmap`): faults map cache pages read-only, the
//! accessed bits of their entries drive LRU aging (hand-worked sequences), reclaim
//! unmaps with one TLB flush per batch before dropping, compaction moves mapped pages
//! with their entries, munmap, the error cases, and readers racing reclaim and
//! compaction. The invariant checker (which verifies the windows against the pages'
//! mapcounts) runs after every step.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zonebuddy::model::list::PageList;
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::PAGE_SIZE;
use zonebuddy::model::page::Page;
use zonebuddy::movement::migrate::{MigrateMode, MigrateReason};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::platform::{MovableMapping, Pte};
use zonebuddy::port::sim::{SimAllocator, SimFault, SimPlatform, qemu_e820};
use zonebuddy::reclaim::filemap::{CacheError, MAX_FILE_PAGES};
use zonebuddy::reclaim::mmap::{FileMapping, MmapError};
use zonebuddy::reclaim::vmscan::{PageReferences, mapped_page_references};
use zonebuddy::report::vmstat::VmEvent;

use crate::reclaim::{check, direct_sc, image, image_byte, machine};

const MIB: u64 = 1 << 20;

/// The word of `file` at byte offset `off` (8-aligned) as the image defines it.
fn want_word(file: u32, off: u64, size: u64) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        let o = off + i as u64;
        *x = if o < size { image_byte(file, o) } else { 0 };
    }
    u64::from_le_bytes(b)
}

/// Read the word at `va` like a CPU: a fault on an unmapped address goes to
/// `filemap_fault` and the access is retried. Returns the word and the faults taken.
fn touch(a: &SimAllocator, va: u64) -> (u64, u32) {
    let mut faults = 0;
    loop {
        match a.read_u64(va) {
            Ok(v) => return (v, faults),
            Err(SimFault::NotMapped(_)) => {
                a.filemap_fault(va)
                    .unwrap_or_else(|e| panic!("fault at {va:#x}: {e}"));
                faults += 1;
                assert!(faults < 1000, "fault at {va:#x} never resolved");
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Touch page `index` of `m` and check its first and last words.
fn touch_page(a: &SimAllocator, m: &FileMapping, index: u64, size: u64) {
    let va = m.va(index).unwrap();
    for off in [0, PAGE_SIZE - 8] {
        let (v, _) = touch(a, va + off);
        assert_eq!(
            v,
            want_word(m.file(), index * PAGE_SIZE + off, size),
            "file {} page {index} offset {off}",
            m.file()
        );
    }
}

fn pte(a: &SimAllocator, va: u64) -> Pte {
    a.sim_platform().pte_read(va)
}

fn young(a: &SimAllocator, va: u64) -> bool {
    a.sim_platform().pte_young_readonly(va).0
}

fn flushes(a: &SimAllocator) -> u64 {
    a.sim_platform().mmu_stats().tlb_flushes
}

/// (active, referenced, mapcount) of a cached page, None if not cached.
fn state(a: &SimAllocator, file: u32, index: u64) -> Option<(bool, bool, i32)> {
    let p = a.find_get_page(file, index)?;
    let r = (p.is_active(), p.is_referenced(), p.mapcount());
    a.put_page(p).unwrap();
    Some(r)
}

fn pfn_of(a: &SimAllocator, file: u32, index: u64) -> u64 {
    let p = a.find_get_page(file, index).unwrap();
    let pfn = a.page_to_pfn(p);
    a.put_page(p).unwrap();
    pfn
}

#[test]
fn fault_maps_readonly_and_munmap_unmaps() {
    let a = machine(32);
    let size = 5 * PAGE_SIZE + 100;
    a.page_cache_set_backing(image(&[size]));
    let m = a.filemap_mmap(0).unwrap();
    assert_eq!(m.nr_pages(), 6);
    assert_eq!(m.va(6), None);
    // Nothing mapped up front.
    for i in 0..6 {
        assert_eq!(pte(&a, m.va(i).unwrap()), Pte::None);
    }
    assert_eq!(a.file_mapped_pages(), 0);
    check(&a);
    // Every word of every page, the tail past EOF reading as zeroes.
    for i in 0..6 {
        let va = m.va(i).unwrap();
        for w in 0..512 {
            let (v, faults) = touch(&a, va + w * 8);
            assert_eq!(
                v,
                want_word(0, i * PAGE_SIZE + w * 8, size),
                "page {i} word {w}"
            );
            assert_eq!(faults, u32::from(w == 0), "page {i} word {w}: faults");
        }
        check(&a);
    }
    assert_eq!(a.vm_event(VmEvent::Pgfault), 6);
    assert_eq!(a.vm_event(VmEvent::Pgmajfault), 6);
    assert_eq!(a.file_mapped_pages(), 6);
    assert_eq!(a.lru_sizes(0).mapped, 6);
    let mut mi = String::new();
    a.write_meminfo(&mut mi).unwrap();
    assert!(mi.contains("\nMapped:               24 kB\n"), "{mi}");
    for i in 0..6 {
        let va = m.va(i).unwrap();
        let p = a.find_get_page(0, i).unwrap();
        assert_eq!(pte(&a, va), Pte::Present(a.page_to_pfn(p)));
        // The cache's reference, the mapping's, ours.
        assert_eq!((p.mapcount(), p.refcount()), (1, 3));
        assert!(p.is_lru() && !p.is_active() && !p.is_referenced());
        a.put_page(p).unwrap();
        let (y, ro) = a.sim_platform().pte_young_readonly(va);
        assert!(y && ro, "page {i}: young {y} read-only {ro}");
        assert_eq!(a.write_u64(va, 1), Err(SimFault::ReadOnly(va)));
    }

    // A second mapping of the same file shares the cache page: a minor fault.
    let m2 = a.filemap_mmap(0).unwrap();
    assert_ne!(m2.start(), m.start());
    touch_page(&a, &m2, 2, size);
    assert_eq!(a.vm_event(VmEvent::Pgfault), 7);
    assert_eq!(a.vm_event(VmEvent::Pgmajfault), 6);
    assert_eq!(pte(&a, m2.va(2).unwrap()), pte(&a, m.va(2).unwrap()));
    assert_eq!(state(&a, 0, 2).unwrap().2, 2);
    // Entries count per window, pages once in nr_mapped.
    assert_eq!((a.file_mapped_pages(), a.lru_sizes(0).mapped), (7, 6));
    check(&a);
    // A fault where another CPU already mapped the page changes nothing.
    let pfn = a.filemap_fault(m2.va(2).unwrap()).unwrap();
    assert_eq!(pte(&a, m2.va(2).unwrap()), Pte::Present(pfn));
    assert_eq!(a.vm_event(VmEvent::Pgfault), 7);
    check(&a);

    let f0 = flushes(&a);
    assert_eq!(a.filemap_munmap(m2).unwrap(), 1);
    assert_eq!(flushes(&a) - f0, 1);
    assert_eq!(state(&a, 0, 2).unwrap().2, 1);
    check(&a);

    let start = m.start();
    let f0 = flushes(&a);
    assert_eq!(a.filemap_munmap(m).unwrap(), 6);
    assert_eq!(flushes(&a) - f0, 1, "one flush for the batch of six");
    assert_eq!(a.file_mapped_pages(), 0);
    assert_eq!(a.lru_sizes(0).mapped, 0);
    check(&a);
    // The pages stay cached, unmapped, with the cache's reference only.
    assert_eq!(a.address_space(0).unwrap().nrpages(), 6);
    for i in 0..6 {
        let p = a.find_get_page(0, i).unwrap();
        assert_eq!((p.mapcount(), p.refcount()), (0, 2));
        a.put_page(p).unwrap();
    }
    assert_eq!(a.read_u64(start), Err(SimFault::NotMapped(start)));
    assert_eq!(a.filemap_fault(start), Err(MmapError::NotInWindow(start)));
    // Unmapped cache pages drop as before.
    assert_eq!(a.drop_caches(), 6);
    check(&a);
}

#[test]
fn mmap_errors() {
    let a = machine(32);
    assert_eq!(
        a.filemap_mmap(0),
        Err(MmapError::Cache(CacheError::NoBacking))
    );
    let huge = MAX_FILE_PAGES * PAGE_SIZE + 1;
    a.page_cache_set_backing(image(&[3 * PAGE_SIZE, huge, 0]));
    assert_eq!(
        a.filemap_mmap(7),
        Err(MmapError::Cache(CacheError::NoFile(7)))
    );
    assert_eq!(
        a.filemap_mmap(500),
        Err(MmapError::Cache(CacheError::NoFile(500)))
    );
    assert_eq!(
        a.filemap_mmap(1),
        Err(MmapError::Cache(CacheError::TooLarge(1)))
    );
    assert_eq!(a.filemap_mmap(2), Err(MmapError::EmptyFile(2)));
    // Faults outside any file window: below the window, in an anon region, past the end
    // of a file window.
    let (wstart, _) = a.sim_platform().movable_va_range();
    assert_eq!(a.filemap_fault(wstart), Err(MmapError::NotInWindow(wstart)));
    let r = a.anon_region_create(4).unwrap();
    let (rstart, _) = a.anon_region_span(r).unwrap();
    assert_eq!(a.filemap_fault(rstart), Err(MmapError::NotInWindow(rstart)));
    let m = a.filemap_mmap(0).unwrap();
    let past = m.start() + 3 * PAGE_SIZE;
    assert_eq!(a.filemap_fault(past), Err(MmapError::NotInWindow(past)));
    // A file window is no anon region: anon operations on its pages are refused, and a
    // region handle does not reach the window.
    touch_page(&a, &m, 0, 3 * PAGE_SIZE);
    let p = a.find_get_page(0, 0).unwrap();
    assert_eq!(a.page_anon_address(p), None);
    a.put_page(p).unwrap();
    a.anon_region_destroy(r).unwrap();
    check(&a);
    a.filemap_munmap(m).unwrap();
    check(&a);

    // No room: a window smaller than the file.
    let ranges = qemu_e820(32 * MIB);
    let plat = SimPlatform::for_map(&ranges, &[], 1)
        .unwrap()
        .with_movable_window(2 * PAGE_SIZE)
        .unwrap();
    let b = SimAllocator::build_on(plat, &ranges, &[], &ModelParams::default()).unwrap();
    b.page_cache_set_backing(image(&[3 * PAGE_SIZE, PAGE_SIZE]));
    assert_eq!(b.filemap_mmap(0), Err(MmapError::NoSpace));
    let one = b.filemap_mmap(1).unwrap();
    let two = b.filemap_mmap(1).unwrap();
    assert_eq!(b.filemap_mmap(1), Err(MmapError::NoSpace));
    b.filemap_munmap(one).unwrap();
    b.filemap_munmap(two).unwrap();

    // A port without the movable mapping capability.
    let plat = SimPlatform::for_map(&ranges, &[], 1)
        .unwrap()
        .without_movable_mapping();
    let c = SimAllocator::build_on(plat, &ranges, &[], &ModelParams::default()).unwrap();
    c.page_cache_set_backing(image(&[PAGE_SIZE]));
    assert_eq!(c.filemap_mmap(0), Err(MmapError::Unsupported));
}

/// A port that implements `MovableMapping` without the two new methods gets the
/// defaults: no read-only mapping, never young.
#[test]
fn movable_mapping_defaults() {
    struct Bare;
    impl MovableMapping for Bare {
        fn movable_va_range(&self) -> (u64, u64) {
            (0, 0)
        }
        fn pte_read(&self, _va: u64) -> Pte {
            Pte::None
        }
        fn pte_map(&self, _va: u64, _pfn: u64) -> Result<(), zonebuddy::PteError> {
            Ok(())
        }
        fn pte_cmpxchg(&self, _va: u64, _old: Pte, _new: Pte) -> bool {
            false
        }
        fn flush_tlb_range(&self, _start: u64, _end: u64) {}
    }
    assert_eq!(
        Bare.pte_map_readonly(0x1000, 1),
        Err(zonebuddy::PteError::Unsupported)
    );
    assert!(!Bare.pte_test_and_clear_young(0x1000));
}

#[test]
fn check_references_table() {
    use PageReferences::*;
    assert_eq!(mapped_page_references(0, false), Reclaim);
    assert_eq!(mapped_page_references(0, true), Reclaim);
    assert_eq!(mapped_page_references(1, false), Keep);
    assert_eq!(mapped_page_references(1, true), Activate);
    assert_eq!(mapped_page_references(2, false), Activate);
    assert_eq!(mapped_page_references(3, true), Activate);
}

/// The accessed bits against the outcome worked out by hand from
/// `folio_check_references` (see `vmscan`'s table).
#[test]
fn accessed_bit_drives_aging_hand_worked() {
    let a = machine(32);
    let size = 4 * PAGE_SIZE;
    a.page_cache_set_backing(image(&[size]));
    let m = a.filemap_mmap(0).unwrap();
    let va = |i| m.va(i).unwrap();
    let mut sc = direct_sc();
    // Fault all four: young entries, inactive, PG_referenced clear (a fault does not
    // mark the page accessed; the access sets the entry's accessed bit).
    for i in 0..4 {
        touch_page(&a, &m, i, size);
    }
    assert!((0..4).all(|i| state(&a, 0, i) == Some((false, false, 1)) && young(&a, va(i))));
    check(&a);

    // Scan 1: one young entry each, not referenced -> keep, PG_referenced set, accessed
    // bits consumed. Nothing freed, nothing flushed.
    let f0 = flushes(&a);
    assert_eq!(a.shrink_inactive_list(0, 4, &mut sc), 0);
    check(&a);
    assert!((0..4).all(|i| state(&a, 0, i) == Some((false, true, 1))));
    assert!(
        (0..4).all(|i| !young(&a, va(i))),
        "accessed bits not cleared"
    );
    assert_eq!(flushes(&a), f0);
    assert_eq!(a.vm_event(VmEvent::Pgactivate), 0);

    // Touch 0 and 2 again. Scan 2: 0 and 2 (young, referenced) -> activate; 1 and 3
    // (not young; PG_referenced alone does not save a page) -> unmapped and dropped,
    // with one TLB flush for the batch.
    touch_page(&a, &m, 0, size);
    touch_page(&a, &m, 2, size);
    let f0 = flushes(&a);
    assert_eq!(a.shrink_inactive_list(0, 4, &mut sc), 2);
    check(&a);
    assert_eq!(state(&a, 0, 0), Some((true, true, 1)));
    assert_eq!(state(&a, 0, 2), Some((true, true, 1)));
    assert_eq!(state(&a, 0, 1), None);
    assert_eq!(state(&a, 0, 3), None);
    assert_eq!(pte(&a, va(1)), Pte::None);
    assert_eq!(pte(&a, va(3)), Pte::None);
    assert_eq!(flushes(&a) - f0, 1, "one flush per batch");
    assert_eq!(a.vm_event(VmEvent::PgunmapReclaim), 2);
    assert_eq!(a.vm_event(VmEvent::Pgactivate), 2);
    assert_eq!(a.file_mapped_pages(), 2);

    // A dropped mapped page faults back in with the same contents (a major fault).
    let maj = a.vm_event(VmEvent::Pgmajfault);
    touch_page(&a, &m, 1, size);
    assert_eq!(a.vm_event(VmEvent::Pgmajfault), maj + 1);
    check(&a);

    // Two young entries activate even without PG_referenced: page 1 is fresh (not
    // referenced), touched through two windows.
    let m2 = a.filemap_mmap(0).unwrap();
    touch_page(&a, &m2, 1, size);
    assert_eq!(state(&a, 0, 1), Some((false, false, 2)));
    assert_eq!(a.shrink_inactive_list(0, 4, &mut sc), 0);
    assert_eq!(state(&a, 0, 1), Some((true, true, 2)));
    check(&a);

    // shrink_active_list deactivates all three and consumes the accessed bits on the
    // way: page 0, touched now, must be touched again after deactivation to count.
    touch_page(&a, &m, 0, size);
    assert!(young(&a, va(0)));
    a.shrink_active_list(0, 4, &mut sc);
    check(&a);
    assert!(!young(&a, va(0)), "shrink_active_list left an accessed bit");
    assert_eq!(state(&a, 0, 0), Some((false, true, 1)));
    // Scan: 0 and 2 not young -> dropped; 1 not young in either window -> dropped.
    let f0 = flushes(&a);
    assert_eq!(a.shrink_inactive_list(0, 4, &mut sc), 3);
    assert_eq!(flushes(&a) - f0, 1);
    assert_eq!(a.vm_event(VmEvent::PgunmapReclaim), 2 + 4);
    assert_eq!(a.file_mapped_pages(), 0);
    check(&a);
    for i in 0..4 {
        touch_page(&a, &m, i, size);
        touch_page(&a, &m2, i, size);
    }
    check(&a);
    a.filemap_munmap(m).unwrap();
    a.filemap_munmap(m2).unwrap();
    check(&a);
}

/// Reclaim of a batch of mapped pages: every entry cleared, one flush for the batch,
/// every page re-faults with its contents; a page someone holds (a fault between its
/// lookup and its page lock) is unmapped but not freed.
#[test]
fn reclaim_unmaps_flushes_and_refaults() {
    let a = machine(32);
    let size = 100 * PAGE_SIZE;
    a.page_cache_set_backing(image(&[size]));
    let m = a.filemap_mmap(0).unwrap();
    for i in 0..100 {
        touch_page(&a, &m, i, size);
    }
    let mut sc = direct_sc();
    // First pass keeps them all (young once), the second drops them all.
    assert_eq!(a.shrink_inactive_list(0, 100, &mut sc), 0);
    let f0 = flushes(&a);
    let tlb_all = a.vm_event(VmEvent::NrTlbLocalFlushAll);
    assert_eq!(a.shrink_inactive_list(0, 100, &mut sc), 100);
    assert_eq!(flushes(&a) - f0, 1);
    // 100 pages are above the single-page flush ceiling: counted as one full flush.
    assert_eq!(a.vm_event(VmEvent::NrTlbLocalFlushAll) - tlb_all, 1);
    assert_eq!(a.vm_event(VmEvent::PgunmapReclaim), 100);
    assert_eq!(a.lru_sizes(0).file_pages, 0);
    assert!((0..100).all(|i| pte(&a, m.va(i).unwrap()) == Pte::None));
    check(&a);
    let maj = a.vm_event(VmEvent::Pgmajfault);
    for i in 0..100 {
        touch_page(&a, &m, i, size);
    }
    assert_eq!(a.vm_event(VmEvent::Pgmajfault) - maj, 100);
    check(&a);

    // A held page: unmapped, flushed, but its count does not freeze: put back.
    assert_eq!(a.shrink_inactive_list(0, 100, &mut sc), 0);
    let held = a.find_get_page(0, 42).unwrap();
    let held_pfn = a.page_to_pfn(held);
    assert_eq!(a.shrink_inactive_list(0, 100, &mut sc), 99);
    check(&a);
    assert_eq!(pte(&a, m.va(42).unwrap()), Pte::None);
    assert_eq!((held.mapcount(), held.refcount()), (0, 2));
    assert!(held.is_lru());
    a.put_page(held).unwrap();
    touch_page(&a, &m, 42, size);
    assert_eq!(pte(&a, m.va(42).unwrap()), Pte::Present(held_pfn));
    check(&a);
    a.filemap_munmap(m).unwrap();
    check(&a);
}

fn migrate_one(a: &SimAllocator, p: &Page) -> u64 {
    let mut list = PageList::new();
    // SAFETY: the page was isolated for us by isolate_migratepage.
    unsafe { list.push_back(p) };
    let mut get_new = |_: &Page| a.alloc_page(GFP_HIGHUSER_MOVABLE);
    let mut put_new = |q: &Page| a.free_pages(q, 0).unwrap();
    a.migrate_pages(
        &mut list,
        &mut get_new,
        &mut put_new,
        MigrateMode::Sync,
        MigrateReason::Syscall,
    )
    .unwrap()
}

/// Compaction moves a mapped cache page: its entries (in two windows) become migration
/// entries, are flushed once, and point at the new frame, read-only still.
#[test]
fn migration_moves_mapped_cache_pages() {
    let a = machine(64);
    let size = 64 * PAGE_SIZE;
    a.page_cache_set_backing(image(&[size, 8 * MIB]));
    let m = a.filemap_mmap(0).unwrap();
    let m2 = a.filemap_mmap(0).unwrap();
    touch_page(&a, &m, 7, size);
    touch_page(&a, &m2, 7, size);
    touch_page(&a, &m, 8, size);
    check(&a);
    let old = pfn_of(&a, 0, 7);
    let p = a.pfn_to_page(old).unwrap();
    assert!(a.isolate_migratepage(p, MigrateMode::Sync));
    let f0 = flushes(&a);
    assert_eq!(migrate_one(&a, p), 0);
    assert_eq!(
        flushes(&a) - f0,
        1,
        "one flush for the batch's migration entries"
    );
    check(&a);
    let new = pfn_of(&a, 0, 7);
    assert_ne!(new, old);
    for mm in [&m, &m2] {
        let va = mm.va(7).unwrap();
        assert_eq!(pte(&a, va), Pte::Present(new));
        assert!(a.sim_platform().pte_young_readonly(va).1, "lost read-only");
    }
    assert_eq!(state(&a, 0, 7).unwrap().2, 2);
    assert_eq!(a.vm_event(VmEvent::PgmigrateFileMapped), 1);
    touch_page(&a, &m, 7, size);
    touch_page(&a, &m2, 7, size);

    // A reference held by someone else: Again, every pass; the entries go back to the
    // old frame.
    let old8 = pfn_of(&a, 0, 8);
    let p = a.pfn_to_page(old8).unwrap();
    assert!(a.isolate_migratepage(p, MigrateMode::Sync));
    let reader = a.find_get_page(0, 8).unwrap();
    assert_eq!(migrate_one(&a, p), 1);
    a.put_page(reader).unwrap();
    check(&a);
    assert_eq!(pte(&a, m.va(8).unwrap()), Pte::Present(old8));
    touch_page(&a, &m, 8, size);

    // Whole-memory compaction over interleaved files, every page of file 0 mapped.
    for i in 0..64 {
        touch_page(&a, &m, i, size);
        let mut buf = [0u8; 8];
        for j in 0..32 {
            a.page_cache_read(1, (i * 32 + j) * PAGE_SIZE, &mut buf)
                .unwrap();
        }
    }
    a.invalidate_mapping_pages(1);
    check(&a);
    let moved0 = a.vm_event(VmEvent::PgmigrateFileMapped);
    a.compact_memory();
    check(&a);
    let moved = a.vm_event(VmEvent::PgmigrateFileMapped) - moved0;
    eprintln!("compaction: {moved} mapped cache pages migrated");
    assert!(moved > 0, "compaction moved no mapped page");
    for i in 0..64 {
        let va = m.va(i).unwrap();
        assert_eq!(pte(&a, va), Pte::Present(pfn_of(&a, 0, i)));
        touch_page(&a, &m, i, size);
    }
    a.filemap_munmap(m).unwrap();
    a.filemap_munmap(m2).unwrap();
    check(&a);
}

/// Readers through two mappings, reclaim, and compaction on four CPUs over the same
/// cache pages of a file larger than the machine: every word read is the image's (no
/// stale read, no lost page), and the invariants hold afterwards.
#[test]
fn readers_reclaim_and_compaction_race() {
    let a = SimAllocator::build(&qemu_e820(32 * MIB), &[], &ModelParams::default(), 4)
        .unwrap_or_else(|e| panic!("{e}"));
    let size = 40 * MIB + 24;
    a.page_cache_set_backing(image(&[size]));
    let m = a.filemap_mmap(0).unwrap();
    let m2 = a.filemap_mmap(0).unwrap();
    let pages = m.nr_pages();
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let readers = AtomicU64::new(2);
    a.sim_platform().run_on_cpus(|cpu| match cpu {
        0 | 1 => {
            // However the reader ends (a failed assertion included), the others stop.
            struct Last<'a>(&'a AtomicU64, &'a AtomicBool);
            impl Drop for Last<'_> {
                fn drop(&mut self) {
                    if self.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                        self.1.store(true, Ordering::Release);
                    }
                }
            }
            let _last = Last(&readers, &done);
            let mm = if cpu == 0 { &m } else { &m2 };
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ cpu as u64;
            for round in 0..20000u64 {
                // Half sequential sweeps, half a hot set of 64 pages.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let index = if round % 2 == 0 {
                    (round * 13) % pages
                } else {
                    x % 64
                };
                let off = (x >> 20) % 512 * 8;
                let va = mm.va(index).unwrap() + off;
                let (v, _) = touch(&a, va);
                assert_eq!(
                    v,
                    want_word(0, index * PAGE_SIZE + off, size),
                    "cpu {cpu}: stale read at page {index} offset {off}"
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }
        2 => {
            while !done.load(Ordering::Acquire) {
                let mut sc = direct_sc();
                a.shrink_inactive_list(0, 64, &mut sc);
                a.shrink_active_list(0, 32, &mut sc);
                a.try_to_free_pages(GFP_KERNEL, 0, 0, 3);
            }
        }
        _ => {
            while !done.load(Ordering::Acquire) {
                a.compact_memory();
            }
        }
    });
    check(&a);
    eprintln!(
        "race: {} reads, pgfault {} pgmajfault {} pgunmap_reclaim {} pgmigrate_file_mapped {} migration faults {} tlb flushes {}",
        reads.load(Ordering::Relaxed),
        a.vm_event(VmEvent::Pgfault),
        a.vm_event(VmEvent::Pgmajfault),
        a.vm_event(VmEvent::PgunmapReclaim),
        a.vm_event(VmEvent::PgmigrateFileMapped),
        a.sim_platform().migration_faults(),
        flushes(&a)
    );
    assert!(
        a.vm_event(VmEvent::PgunmapReclaim) > 0,
        "reclaim never unmapped"
    );
    let l = a.lru_sizes(0);
    assert_eq!(
        l.file_pages,
        l.inactive_file + l.active_file,
        "pages left isolated"
    );
    a.filemap_munmap(m).unwrap();
    a.filemap_munmap(m2).unwrap();
    assert_eq!(a.file_mapped_pages(), 0);
    check(&a);
    a.drop_caches();
    assert_eq!(a.lru_sizes(0).file_pages, 0);
    check(&a);
}

/// A fault on a migration entry waits until the entry is replaced, then returns the frame
/// now mapped (`filemap_fault`'s retry), and a read through the entry waits the same way.
#[test]
fn fault_on_migration_entry_waits() {
    let a = SimAllocator::build(&qemu_e820(32 * MIB), &[], &ModelParams::default(), 2)
        .unwrap_or_else(|e| panic!("{e}"));
    let size = 2 * PAGE_SIZE;
    a.page_cache_set_backing(image(&[size]));
    let m = a.filemap_mmap(0).unwrap();
    touch_page(&a, &m, 1, size);
    let va = m.va(1).unwrap();
    let pfn = pfn_of(&a, 0, 1);
    let page = a.pfn_to_page(pfn).unwrap();
    // Play migration: lock the page and turn its entry into a migration entry.
    assert!(page.trylock());
    assert!(
        a.sim_platform()
            .pte_cmpxchg(va, Pte::Present(pfn), Pte::Migration(pfn))
    );
    let faulted = AtomicBool::new(false);
    let read = AtomicBool::new(false);
    a.sim_platform().run_on_cpus(|cpu| {
        if cpu == 1 {
            assert_eq!(a.filemap_fault(va), Ok(pfn));
            faulted.store(true, Ordering::Release);
            let (v, _) = touch(&a, va);
            assert_eq!(v, want_word(0, PAGE_SIZE, size));
            read.store(true, Ordering::Release);
        } else {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let early = faulted.load(Ordering::Acquire);
            // Finish the "migration" first, so that a failure cannot leave the other CPU
            // waiting forever.
            assert!(
                a.sim_platform()
                    .pte_cmpxchg(va, Pte::Migration(pfn), Pte::Present(pfn))
            );
            page.unlock();
            assert!(!early, "fault went past a migration entry");
        }
    });
    assert!(faulted.load(Ordering::Acquire) && read.load(Ordering::Acquire));
    // The entry kept its permission across the migration entry.
    assert!(a.sim_platform().pte_young_readonly(va).1);
    check(&a);
    a.filemap_munmap(m).unwrap();
    check(&a);
}
