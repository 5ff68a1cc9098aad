//! Page migration, one CPU: checksummed anon pages move to new frames with their metadata,
//! the old frames are freed, the counters count, one TLB flush covers a batch; pinned,
//! locked (in async mode) and unisolatable pages are refused or put back; running out of
//! targets aborts cleanly; unused targets go back through `put_new`.

use crate::mig_common;

use std::cell::Cell;
use std::collections::HashSet;

use mig_common::*;
use zonebuddy::model::list::PageList;
use zonebuddy::model::mmzone::PAGE_SIZE;
use zonebuddy::model::page::Page;
use zonebuddy::movement::migrate::{MIGRATE_BATCH, MigrateError, MigrateMode, MigrateReason};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::platform::{MovableMapping, Pte};
use zonebuddy::port::sim::SimAllocator;
use zonebuddy::report::vmstat::VmEvent;

const TAG: u64 = 0x6d69_6772_6174_6500;

/// Migrate `list` to fresh movable pages; returns (result, targets handed out, targets
/// given back).
fn migrate(
    a: &SimAllocator,
    list: &mut PageList,
    mode: MigrateMode,
) -> (Result<u64, MigrateError>, u64, u64) {
    let got = Cell::new(0);
    let back = Cell::new(0);
    let r = a.migrate_pages(
        list,
        &mut |_src: &Page| {
            got.set(got.get() + 1);
            a.alloc_page(GFP_HIGHUSER_MOVABLE)
        },
        &mut |p: &Page| {
            back.set(back.get() + 1);
            a.free_pages(p, 0).unwrap();
        },
        mode,
        MigrateReason::Syscall,
    );
    (r, got.get(), back.get())
}

fn verify_region(a: &SimAllocator, r: zonebuddy::movement::rmap::RegionId, ver: u64) {
    let (start, n) = a.anon_region_span(r).unwrap();
    for i in 0..n {
        verify(a, start + i * PAGE_SIZE, TAG, i, ver).unwrap();
    }
}

#[test]
fn checksummed_pages_migrate_with_their_metadata() {
    let a = machine(64, 2);
    let n = 256;
    let r = filled_region(&a, n, TAG);
    for i in (0..n).step_by(3) {
        page_at(&a, r, i).set_dirty();
    }
    let before = region_pfns(&a, r);
    let free0 = free_pages(&a);
    let ok0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let fail0 = a.vm_event(VmEvent::PgmigrateFail);
    let flush0 = a.sim_platform().mmu_stats().tlb_flushes;
    let remote0 = a.vm_event(VmEvent::NrTlbRemoteFlush);
    let received0 = a.vm_event(VmEvent::NrTlbRemoteFlushReceived);
    let one0 = a.vm_event(VmEvent::NrTlbLocalFlushOne);

    let mut list = isolate_region(&a, r);
    assert_eq!(list.len(), n as usize);
    let (res, got, back) = migrate(&a, &mut list, MigrateMode::SyncLight);
    assert_eq!(res, Ok(0));
    assert!(list.is_empty());
    assert_eq!((got, back), (n, 0));

    let after = region_pfns(&a, r);
    let old: HashSet<u64> = before.iter().map(|p| p.unwrap()).collect();
    for (i, pfn) in after.iter().enumerate() {
        let pfn = pfn.unwrap();
        assert!(
            !old.contains(&pfn) || before[i] != Some(pfn),
            "index {i} did not move"
        );
        let p = a.pfn_to_page(pfn).unwrap();
        assert_eq!(p.refcount(), 1, "index {i}: the mapping's reference only");
        assert_eq!(p.mapcount(), 1);
        assert!(!p.is_isolated() && !p.is_locked());
        assert_eq!(p.index(), i as u64);
        assert_eq!(p.is_dirty(), i % 3 == 0, "index {i}: PG_dirty moved");
        assert!(p.is_uptodate());
        assert_eq!(a.page_anon_region(p), Some(r));
    }
    // The old frames went back to the allocator (those not reused as targets).
    let new: HashSet<u64> = after.iter().map(|p| p.unwrap()).collect();
    for pfn in old.difference(&new) {
        let p = a.pfn_to_page(*pfn).unwrap();
        assert_eq!(p.refcount(), 0, "old pfn {pfn:#x} freed");
        assert_eq!(p.mapping_raw(), 0);
    }
    verify_region(&a, r, 0);
    assert_eq!(a.anon_region_check(r), Ok(n));
    assert_eq!(free_pages(&a), free0, "as many pages free as before");
    assert_eq!(a.vm_event(VmEvent::PgmigrateSuccess) - ok0, n);
    assert_eq!(a.vm_event(VmEvent::PgmigrateFail) - fail0, 0);
    // One shootdown per batch of unmapped pages.
    let flushes = a.sim_platform().mmu_stats().tlb_flushes - flush0;
    assert_eq!(flushes, n.div_ceil(MIGRATE_BATCH as u64));
    assert_eq!(a.vm_event(VmEvent::NrTlbRemoteFlush) - remote0, flushes);
    assert_eq!(
        a.vm_event(VmEvent::NrTlbRemoteFlushReceived) - received0,
        flushes
    );
    assert_eq!(a.vm_event(VmEvent::NrTlbLocalFlushOne) - one0, n);
    // And the pages keep working through their addresses.
    let (start, _) = a.anon_region_span(r).unwrap();
    for i in 0..n {
        stamp(&a, start + i * PAGE_SIZE, TAG, i, 1);
    }
    verify_region(&a, r, 1);
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

#[test]
fn pinned_pages_are_refused_or_put_back() {
    let a = machine(64, 1);
    let r = filled_region(&a, 4, TAG);
    let p0 = page_at(&a, r, 0);
    // Pinned before isolation: refused.
    a.get_page(p0);
    assert!(!a.isolate_migratepage(p0, MigrateMode::Sync));
    assert_eq!(p0.refcount(), 2);
    assert!(!p0.is_isolated());
    a.put_page(p0).unwrap();

    // Pinned after isolation: every pass fails with Again, then it is put back.
    let p1 = page_at(&a, r, 1);
    let pfn1 = a.page_to_pfn(p1);
    let fail0 = a.vm_event(VmEvent::PgmigrateFail);
    let mut list = PageList::new();
    assert!(a.isolate_migratepage(p1, MigrateMode::Sync));
    // SAFETY: just isolated.
    unsafe { list.push_back(p1) };
    a.get_page(p1);
    let (res, got, back) = migrate(&a, &mut list, MigrateMode::Sync);
    assert_eq!(res, Ok(1));
    assert!(list.is_empty());
    assert_eq!(got, back, "every target came back through put_new");
    assert_eq!(got, u64::from(zonebuddy::movement::migrate::MIGRATE_PASSES));
    assert_eq!(a.vm_event(VmEvent::PgmigrateFail) - fail0, 1);
    assert!(!p1.is_isolated() && !p1.is_locked());
    assert_eq!(p1.refcount(), 2, "mapping + pin");
    assert_eq!(a.anon_region_pfn(r, 1), Ok(Some(pfn1)));
    let (start, _) = a.anon_region_span(r).unwrap();
    assert_eq!(a.platform().pte_read(start + PAGE_SIZE), Pte::Present(pfn1));
    verify_region(&a, r, 0);
    a.put_page(p1).unwrap();
    // Unpinned, it migrates.
    let mut list = PageList::new();
    assert!(a.isolate_migratepage(p1, MigrateMode::Sync));
    // SAFETY: just isolated.
    unsafe { list.push_back(p1) };
    assert_eq!(migrate(&a, &mut list, MigrateMode::Sync).0, Ok(0));
    assert_ne!(a.anon_region_pfn(r, 1), Ok(Some(pfn1)));
    verify_region(&a, r, 0);
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

#[test]
fn async_mode_skips_locked_pages() {
    let a = machine(64, 1);
    let r = filled_region(&a, 3, TAG);
    let p = page_at(&a, r, 0);
    assert!(p.trylock());
    assert!(
        !a.isolate_migratepage(p, MigrateMode::Async),
        "locked: async refuses"
    );
    assert!(a.isolate_migratepage(p, MigrateMode::SyncLight));
    let mut list = PageList::new();
    // SAFETY: just isolated.
    unsafe { list.push_back(p) };
    let q = page_at(&a, r, 1);
    assert!(a.isolate_migratepage(q, MigrateMode::Async));
    // SAFETY: just isolated.
    unsafe { list.push_back(q) };
    let qpfn = a.page_to_pfn(q);
    let (res, got, back) = migrate(&a, &mut list, MigrateMode::Async);
    assert_eq!(res, Ok(1), "the locked page is not migrated");
    assert_eq!(got - back, 1, "one target used");
    assert_ne!(a.anon_region_pfn(r, 1), Ok(Some(qpfn)));
    assert!(!p.is_isolated());
    assert!(p.is_locked(), "still ours");
    p.unlock();
    verify_region(&a, r, 0);
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

#[test]
fn running_out_of_targets_aborts_and_puts_the_rest_back() {
    let a = machine(64, 1);
    let n = 100u64;
    let r = filled_region(&a, n, TAG);
    let before = region_pfns(&a, r);
    let pool: Vec<&Page> = (0..40)
        .map(|_| a.alloc_page(GFP_HIGHUSER_MOVABLE).unwrap())
        .collect();
    let next = Cell::new(0);
    let back = Cell::new(0);
    let fail0 = a.vm_event(VmEvent::PgmigrateFail);
    let mut list = isolate_region(&a, r);
    let res = a.migrate_pages(
        &mut list,
        &mut |_| {
            let i = next.get();
            next.set(i + 1);
            pool.get(i).copied()
        },
        &mut |p| {
            back.set(back.get() + 1);
            a.free_pages(p, 0).unwrap();
        },
        MigrateMode::Sync,
        MigrateReason::Compaction,
    );
    assert_eq!(res, Err(MigrateError::NoMemory));
    assert!(list.is_empty(), "everything not migrated was put back");
    assert_eq!(back.get(), 0);
    let after = region_pfns(&a, r);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert_eq!(moved, 40, "the batch already unmapped is still moved");
    assert_eq!(a.vm_event(VmEvent::PgmigrateFail) - fail0, n - 40);
    for i in 0..n {
        let p = page_at(&a, r, i);
        assert!(!p.is_isolated() && !p.is_locked());
        assert_eq!(p.refcount(), 1);
    }
    verify_region(&a, r, 0);
    assert_eq!(a.anon_region_check(r), Ok(n));
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

#[test]
fn a_page_freed_under_isolation_is_just_released() {
    let a = machine(64, 1);
    let r = filled_region(&a, 2, TAG);
    let p = page_at(&a, r, 0);
    let mut list = PageList::new();
    assert!(a.isolate_migratepage(p, MigrateMode::Sync));
    // SAFETY: just isolated.
    unsafe { list.push_back(p) };
    assert_eq!(a.anon_region_zap(r, 0), Ok(true));
    assert_eq!(p.refcount(), 1, "only the isolation reference");
    let ok0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let (res, got, _) = migrate(&a, &mut list, MigrateMode::Sync);
    assert_eq!(res, Ok(0));
    assert_eq!(got, 0, "no target needed");
    assert_eq!(p.refcount(), 0, "freed");
    assert_eq!(a.vm_event(VmEvent::PgmigrateSuccess) - ok0, 1);
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

#[test]
fn only_movable_in_use_pages_isolate() {
    let a = machine(64, 1);
    let r = filled_region(&a, 2, TAG);
    let p = page_at(&a, r, 0);
    // Kernel memory, a compound page, a free page, a reserved page.
    let k = a.alloc_page(GFP_KERNEL).unwrap();
    assert!(!a.isolate_migratepage(k, MigrateMode::Sync));
    let c = a.alloc_pages(GFP_KERNEL | Gfp::COMP, 2).unwrap();
    assert!(!a.isolate_migratepage(c, MigrateMode::Sync));
    let f = a.alloc_page(GFP_HIGHUSER_MOVABLE).unwrap();
    a.free_pages(f, 0).unwrap();
    a.drain_all_pages();
    assert!(!a.isolate_migratepage(f, MigrateMode::Sync));
    assert_eq!(f.refcount(), 0, "no reference left behind on a free page");
    let reserved = (0..1u64 << 16)
        .filter_map(|pfn| a.pfn_to_page(pfn))
        .find(|p| p.is_reserved())
        .expect("a reserved page");
    assert!(!a.isolate_migratepage(reserved, MigrateMode::Sync));
    // Anon: once, not twice.
    assert!(a.isolate_migratepage(p, MigrateMode::Async));
    assert!(!a.isolate_migratepage(p, MigrateMode::Sync));
    assert_eq!(p.refcount(), 2);
    let mut list = PageList::new();
    // SAFETY: just isolated.
    unsafe { list.push_back(p) };
    a.putback_movable_pages(&mut list);
    assert!(list.is_empty());
    assert!(!p.is_isolated());
    assert_eq!(p.refcount(), 1);
    assert!(
        a.isolate_migratepage(p, MigrateMode::Async),
        "isolatable again"
    );
    let mut list = PageList::new();
    // SAFETY: just isolated.
    unsafe { list.push_back(p) };
    a.putback_movable_pages(&mut list);
    a.free_pages(k, 0).unwrap();
    a.free_pages(c, 2).unwrap();
    a.anon_region_destroy(r).unwrap();
    check(&a);
}

#[test]
fn zap_waits_out_a_migration_and_destroy_frees_the_new_page() {
    // Migrate one page while another CPU zaps it: whichever wins, no page leaks and the
    // region stays consistent.
    let a = machine(64, 2);
    let free0 = free_pages(&a);
    for round in 0..50u64 {
        let r = filled_region(&a, 8, TAG);
        let mut list = isolate_region(&a, r);
        std::thread::scope(|s| {
            s.spawn(|| {
                a.sim_platform().bind_current_thread(1);
                for i in 0..8 {
                    if (i + round) % 2 == 0 {
                        assert_eq!(a.anon_region_zap(r, i), Ok(true));
                    }
                }
            });
            let (res, _, _) = migrate(&a, &mut list, MigrateMode::Sync);
            assert_eq!(res, Ok(0));
        });
        assert_eq!(a.anon_region_check(r), Ok(4));
        a.anon_region_destroy(r).unwrap();
    }
    assert_eq!(free_pages(&a), free0);
    check(&a);
}

/// A toy movable_operations owner whose answers the test chooses.
struct Toy {
    /// 0: migrate succeeds; 1: Again; 2: Busy; 3: refuse isolation.
    mode: std::sync::atomic::AtomicU8,
    isolated: std::sync::atomic::AtomicU64,
    migrated: std::sync::atomic::AtomicU64,
    putback: std::sync::atomic::AtomicU64,
    last_dst: std::sync::atomic::AtomicU64,
}

use std::sync::atomic::Ordering::Relaxed;

impl zonebuddy::movement::migrate::MovableOperations for Toy {
    fn isolate_page(&self, page: &Page, _mode: MigrateMode) -> bool {
        assert!(page.is_locked());
        if self.mode.load(Relaxed) == 3 {
            return false;
        }
        self.isolated.fetch_add(1, Relaxed);
        true
    }
    fn migrate_page(&self, dst: &Page, src: &Page, _mode: MigrateMode) -> Result<(), MigrateError> {
        assert!(dst.is_locked() && src.is_locked());
        match self.mode.load(Relaxed) {
            1 => Err(MigrateError::Again),
            2 => Err(MigrateError::Busy),
            _ => {
                self.migrated.fetch_add(1, Relaxed);
                self.last_dst.store(dst as *const Page as u64, Relaxed);
                Ok(())
            }
        }
    }
    fn putback_page(&self, page: &Page) {
        assert!(page.is_locked());
        self.putback.fetch_add(1, Relaxed);
    }
}

static TOY: Toy = Toy {
    mode: std::sync::atomic::AtomicU8::new(0),
    isolated: std::sync::atomic::AtomicU64::new(0),
    migrated: std::sync::atomic::AtomicU64::new(0),
    putback: std::sync::atomic::AtomicU64::new(0),
    last_dst: std::sync::atomic::AtomicU64::new(0),
};
static TOY_OPS: zonebuddy::movement::migrate::MovableOps =
    zonebuddy::movement::migrate::MovableOps(&TOY);

#[test]
fn movable_operations_are_dispatched_and_their_answers_respected() {
    let a = machine(64, 1);
    let free0 = free_pages(&a);
    let toy_page = || {
        let p = a.alloc_page(GFP_KERNEL | Gfp::MOVABLE).unwrap();
        assert!(p.trylock());
        zonebuddy::movement::migrate::set_page_movable(p, &TOY_OPS);
        p.unlock();
        assert!(p.is_movable_ops());
        p
    };
    let release = |p: &Page| {
        assert!(p.trylock());
        zonebuddy::movement::migrate::clear_page_movable(p);
        p.unlock();
        a.free_pages(p, 0).unwrap();
    };
    let one = |p: &Page| {
        let mut l = PageList::new();
        // SAFETY: the caller just isolated `p`.
        unsafe { l.push_back(p) };
        l
    };

    // The owner refuses isolation: nothing changes.
    let p = toy_page();
    TOY.mode.store(3, Relaxed);
    assert!(!a.isolate_migratepage(p, MigrateMode::Sync));
    assert!(!p.is_isolated());
    assert_eq!(p.refcount(), 1);

    // Busy: put back at once through putback_page, the target goes back.
    TOY.mode.store(2, Relaxed);
    assert!(a.isolate_migratepage(p, MigrateMode::Sync));
    let (res, got, back) = migrate(&a, &mut one(p), MigrateMode::Sync);
    assert_eq!(res, Ok(1));
    assert_eq!((got, back), (1, 1));
    assert_eq!(TOY.putback.load(Relaxed), 1);
    assert!(!p.is_isolated() && p.is_movable_ops());
    assert_eq!(p.refcount(), 1);

    // Again: every pass, then put back.
    TOY.mode.store(1, Relaxed);
    assert!(a.isolate_migratepage(p, MigrateMode::Sync));
    let (res, got, back) = migrate(&a, &mut one(p), MigrateMode::Sync);
    assert_eq!(res, Ok(1));
    assert_eq!((got, back), (10, 10));
    assert_eq!(TOY.putback.load(Relaxed), 2);

    // Success: the owner now has dst, which inherits the ops; src is freed.
    TOY.mode.store(0, Relaxed);
    assert!(a.isolate_migratepage(p, MigrateMode::Async));
    let (res, got, back) = migrate(&a, &mut one(p), MigrateMode::Async);
    assert_eq!(res, Ok(0));
    assert_eq!((got, back), (1, 0));
    assert_eq!(p.refcount(), 0, "src freed");
    assert_eq!(p.mapping_raw(), 0);
    // SAFETY: the toy recorded the address of a memmap page that is still allocated.
    let dst = unsafe { &*(TOY.last_dst.load(Relaxed) as *const Page) };
    assert!(dst.is_movable_ops() && !dst.is_isolated() && !dst.is_locked());
    assert_eq!(dst.refcount(), 1);

    // Released by its owner while isolated: migration just drops its reference.
    assert!(a.isolate_migratepage(dst, MigrateMode::Sync));
    assert!(dst.trylock());
    zonebuddy::movement::migrate::clear_page_movable(dst);
    dst.unlock();
    a.free_pages(dst, 0).unwrap();
    assert_eq!(dst.refcount(), 1);
    let (res, got, _) = migrate(&a, &mut one(dst), MigrateMode::Sync);
    assert_eq!(res, Ok(0));
    assert_eq!(got, 0);
    assert_eq!(dst.refcount(), 0);

    let q = toy_page();
    release(q);
    assert_eq!(free_pages(&a), free0);
    check(&a);
}
