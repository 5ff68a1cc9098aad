//! The movable object store: objects survive by handle while every page of the pool is
//! migrated (alone and while another CPU keeps loading, storing and freeing), errors are
//! values, and the pool gives all its pages back when emptied.

use crate::mig_common;

use std::collections::HashMap;

use mig_common::*;
use zonebuddy::model::list::PageList;
use zonebuddy::model::page::Page;
use zonebuddy::movement::migrate::{MigrateMode, MigrateReason};
use zonebuddy::movement::zpool::{ZError, ZHandle, ZPOOL_MAX_OBJECT, ZPool};
use zonebuddy::port::sim::{SimAllocator, SimPlatform};
use zonebuddy::report::vmstat::VmEvent;

type Pool = ZPool<'static, &'static SimPlatform, 8192>;

fn leaked(mib: u64, cpus: usize) -> (&'static SimAllocator, &'static Pool) {
    let a: &'static SimAllocator = Box::leak(Box::new(machine(mib, cpus)));
    let pool: &'static Pool = Box::leak(Box::new(ZPool::new(a)));
    (a, pool)
}

/// The bytes of object `key`, `len` long.
fn object(key: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (key.wrapping_mul(31).wrapping_add((i as u64) * 7) >> 3) as u8)
        .collect()
}

fn check_object(pool: &Pool, h: ZHandle, key: u64, len: usize) {
    let mut buf = [0u8; 4096];
    assert_eq!(pool.load(h, &mut buf), Ok(len), "object {key}");
    assert_eq!(&buf[..len], &object(key, len)[..], "object {key} contents");
}

/// Every page that belongs to a movable_operations owner (only the pool, here).
fn pool_pages(a: &SimAllocator) -> Vec<&Page> {
    (0..((64 * MIB) >> 12))
        .filter_map(|pfn| a.pfn_to_page(pfn))
        .filter(|p| p.is_movable_ops())
        .collect()
}

fn migrate_pool_pages(a: &SimAllocator) -> (u64, u64) {
    let mut list = PageList::new();
    let mut isolated = 0;
    for p in pool_pages(a) {
        if a.isolate_migratepage(p, MigrateMode::SyncLight) {
            // SAFETY: just isolated.
            unsafe { list.push_back(p) };
            isolated += 1;
        }
    }
    let failed = a
        .migrate_pages(
            &mut list,
            &mut |_| {
                a.alloc_page(
                    zonebuddy::page_alloc::gfp::GFP_KERNEL
                        | zonebuddy::page_alloc::gfp::Gfp::MOVABLE,
                )
            },
            &mut |p| a.free_pages(p, 0).unwrap(),
            MigrateMode::Sync,
            MigrateReason::Compaction,
        )
        .unwrap();
    (isolated, failed)
}

#[test]
fn store_load_free_and_errors() {
    let (a, pool) = leaked(64, 1);
    let free0 = free_pages(a);
    let mut buf = [0u8; 4096];
    let h0 = pool.store(&[]).unwrap();
    assert_eq!(pool.load(h0, &mut buf), Ok(0));
    let h1 = pool.store(&object(1, 100)).unwrap();
    check_object(pool, h1, 1, 100);
    let big = pool.store(&object(2, ZPOOL_MAX_OBJECT)).unwrap();
    check_object(pool, big, 2, ZPOOL_MAX_OBJECT);
    assert_eq!(
        pool.store(&object(3, ZPOOL_MAX_OBJECT + 1)),
        Err(ZError::TooLarge(ZPOOL_MAX_OBJECT + 1))
    );
    assert_eq!(
        pool.load(h1, &mut buf[..99]),
        Err(ZError::BufferTooSmall(100))
    );
    pool.free(h1).unwrap();
    assert_eq!(pool.free(h1), Err(ZError::BadHandle));
    assert_eq!(pool.load(h1, &mut buf), Err(ZError::BadHandle));
    // The entry is reused with a new generation; the old handle stays dead.
    let h3 = pool.store(&object(3, 10)).unwrap();
    assert_ne!(h3, h1);
    assert_eq!(pool.load(h1, &mut buf), Err(ZError::BadHandle));
    check_object(pool, h3, 3, 10);
    for h in [h0, big, h3] {
        pool.free(h).unwrap();
    }
    assert_eq!(pool.stats().objects, 0);
    pool.shrink();
    assert_eq!(pool.stats().pages, 0);
    assert_eq!(free_pages(a), free0);
    check(a);
}

#[test]
fn handle_table_runs_out() {
    let a: &'static SimAllocator = Box::leak(Box::new(machine(64, 1)));
    let pool: &'static ZPool<'static, &'static SimPlatform, 16> =
        Box::leak(Box::new(ZPool::new(a)));
    let hs: Vec<ZHandle> = (0..16)
        .map(|i| pool.store(&object(i, 8)).unwrap())
        .collect();
    assert_eq!(pool.store(b"x"), Err(ZError::NoHandles));
    pool.free(hs[3]).unwrap();
    let h = pool.store(b"y").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(pool.load(h, &mut buf), Ok(1));
    assert_eq!(&buf[..1], b"y");
}

#[test]
fn objects_survive_migration_of_every_pool_page() {
    let (a, pool) = leaked(64, 1);
    let free0 = free_pages(a);
    let mut objs: HashMap<u64, (ZHandle, usize)> = HashMap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for key in 0..4000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % (ZPOOL_MAX_OBJECT as u64 + 1)) as usize;
        objs.insert(key, (pool.store(&object(key, len)).unwrap(), len));
    }
    // Free some, so that pages are partial, full and mixed.
    for key in (0..4000).step_by(3) {
        let (h, _) = objs.remove(&key).unwrap();
        pool.free(h).unwrap();
    }
    let pages_before: Vec<u64> = pool_pages(a).iter().map(|p| a.page_to_pfn(p)).collect();
    let stats0 = pool.stats();
    assert_eq!(pages_before.len() as u64, stats0.pages);
    let ok0 = a.vm_event(VmEvent::PgmigrateSuccess);
    let (isolated, failed) = migrate_pool_pages(a);
    assert_eq!(isolated, stats0.pages, "every pool page isolates");
    assert_eq!(failed, 0);
    assert_eq!(a.vm_event(VmEvent::PgmigrateSuccess) - ok0, isolated);
    let stats = pool.stats();
    assert_eq!(stats.pages, stats0.pages);
    assert_eq!(stats.objects, stats0.objects);
    assert_eq!(stats.migrated - stats0.migrated, isolated);
    for pfn in &pages_before {
        let p = a.pfn_to_page(*pfn).unwrap();
        assert!(
            !p.is_movable_ops() || p.refcount() == 1,
            "old page {pfn:#x} released"
        );
    }
    for (&key, &(h, len)) in &objs {
        check_object(pool, h, key, len);
    }
    // The pool keeps working on its new pages: stores fill them, frees empty them.
    for key in 4000..4500u64 {
        objs.insert(key, (pool.store(&object(key, 77)).unwrap(), 77));
    }
    let (_, failed) = migrate_pool_pages(a);
    assert_eq!(failed, 0);
    for (&key, &(h, len)) in &objs {
        check_object(pool, h, key, len);
        pool.free(h).unwrap();
    }
    pool.shrink();
    assert_eq!(pool.stats().pages, 0);
    assert_eq!(pool_pages(a).len(), 0);
    assert_eq!(free_pages(a), free0);
    check(a);
}

#[test]
fn isolated_pages_put_back_rejoin_the_pool() {
    let (a, pool) = leaked(64, 1);
    let hs: Vec<ZHandle> = (0..200)
        .map(|k| pool.store(&object(k, 300)).unwrap())
        .collect();
    let mut list = PageList::new();
    for p in pool_pages(a) {
        assert!(a.isolate_migratepage(p, MigrateMode::Async));
        assert!(!a.isolate_migratepage(p, MigrateMode::Async), "not twice");
        // SAFETY: just isolated.
        unsafe { list.push_back(p) };
    }
    let pages = pool.stats().pages;
    // While isolated, loads and frees work; new objects go to new pages.
    pool.free(hs[0]).unwrap();
    check_object(pool, hs[1], 1, 300);
    let extra = pool.store(&object(999, 300)).unwrap();
    assert_eq!(pool.stats().pages, pages + 1);
    a.putback_movable_pages(&mut list);
    for p in pool_pages(a) {
        assert!(!p.is_isolated());
        assert_eq!(p.refcount(), 1);
    }
    for (k, &h) in hs.iter().enumerate().skip(1) {
        check_object(pool, h, k as u64, 300);
        pool.free(h).unwrap();
    }
    pool.free(extra).unwrap();
    pool.shrink();
    assert_eq!(pool.stats().pages, 0);
    check(a);
}

#[test]
fn migration_while_another_cpu_uses_the_pool() {
    let (a, pool) = leaked(64, 2);
    let free0 = free_pages(a);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut moved = 0;
    std::thread::scope(|s| {
        let user = s.spawn(|| {
            a.sim_platform().bind_current_thread(1);
            let mut live: Vec<(u64, ZHandle, usize)> = Vec::new();
            let mut key = 0u64;
            let mut ops = 0u64;
            while ops < 30_000 {
                key += 1;
                let len = (key * 37 % 900) as usize;
                if live.len() < 1500 && key % 4 != 0 {
                    live.push((key, pool.store(&object(key, len)).unwrap(), len));
                } else if !live.is_empty() {
                    let i = (key as usize * 7919) % live.len();
                    let (k, h, l) = live.swap_remove(i);
                    check_object(pool, h, k, l);
                    pool.free(h).unwrap();
                }
                if let Some(&(k, h, l)) = live.get(key as usize % live.len().max(1)) {
                    check_object(pool, h, k, l);
                }
                ops += 1;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for (k, h, l) in live {
                check_object(pool, h, k, l);
                pool.free(h).unwrap();
            }
        });
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (isolated, failed) = migrate_pool_pages(a);
            moved += isolated - failed;
        }
        user.join().unwrap();
    });
    eprintln!("zpool: {moved} pool pages migrated while another CPU used the pool");
    assert!(moved > 100, "only {moved} pool pages migrated");
    assert_eq!(pool.stats().objects, 0);
    pool.shrink();
    assert_eq!(pool.stats().pages, 0);
    assert_eq!(free_pages(a), free0);
    check(a);
}
