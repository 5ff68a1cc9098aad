//! Fault injection (`fail_page_alloc`) inside the kernel: with failures injected through
//! the same setters the `/sys/kernel/debug/fail_page_alloc/` files use, the kernel's own
//! allocation users take their error paths cleanly: heap growth, pcp refill, page-table
//! allocation when mapping anon pages, migration and compaction target allocation. Each
//! test checks the error it expects, that no page leaked (free pages back to the start,
//! pcp lists drained), and the invariant checker; injection is switched off at the end of
//! every test, whatever happened (a guard does it on every return path).

use alloc::{format, string::String, vec::Vec};

use zonebuddy::{
    model::{list::PageList, mmzone::PAGE_SIZE, page::Page},
    movement::{
        migrate::{MigrateError, MigrateMode, MigrateReason},
        rmap::{RegionError, RegionId},
    },
    page_alloc::{
        fail::FailAttrs,
        gfp::{GFP_HIGHUSER_MOVABLE, GFP_KERNEL, Gfp},
    },
    report::vmstat::VmEvent,
};

use crate::{kassert, kassert_eq, ktest, ktest::TestResult, memory::allocator};

/// Injection on for the guard's lifetime; off (Linux's defaults) when it drops.
struct Injecting;

impl Injecting {
    fn on(attrs: FailAttrs) -> Result<Injecting, String> {
        // The tunables' own setter path: validate, then set (all or nothing).
        allocator()
            .fail_page_alloc()
            .set_attrs(attrs)
            .map_err(|e| format!("{e}"))?;
        Ok(Injecting)
    }
}

impl Drop for Injecting {
    fn drop(&mut self) {
        let f = allocator().fail_page_alloc();
        f.disable();
        let _ = f.set_attrs(FailAttrs::default());
    }
}

/// Every request may fail: order 0 up, reclaiming or not, highmem or not.
fn everything(probability: u64, times: i64) -> FailAttrs {
    FailAttrs {
        probability,
        times,
        min_order: 0,
        ignore_gfp_wait: false,
        ignore_gfp_highmem: false,
        ..FailAttrs::default()
    }
}

fn settled_free() -> u64 {
    let a = allocator();
    a.drain_all_pages();
    a.nr_free_pages()
}

fn injected() -> u64 {
    allocator().vm_event(VmEvent::PgallocFailInjected)
}

fn check_invariants() -> TestResult {
    zonebuddy::report::debug::check(allocator()).map_err(|v| format!("invariant violated: {v}"))
}

/// Free pages plus the page-table pages vmalloc keeps for its range once taken.
fn settled_free_plus_pt() -> u64 {
    settled_free() + crate::vmalloc::usage().pt_pages
}

fn stamp(va: u64, seed: u64) {
    for k in 0..PAGE_SIZE / 8 {
        // SAFETY: `va` is a page of an anon region this test mapped and owns; movable
        // memory is touched with interrupts enabled (a migration entry would be waited
        // for in the fault handler).
        unsafe { ((va + k * 8) as *mut u64).write_volatile(seed ^ k) };
    }
}

fn intact(va: u64, seed: u64) -> bool {
    // SAFETY: as in `stamp`.
    (0..PAGE_SIZE / 8).all(|k| unsafe { ((va + k * 8) as *const u64).read_volatile() } == seed ^ k)
}

/// A region of `n` mapped, stamped pages.
fn stamped_region(n: u64, seed: u64) -> Result<(RegionId, u64), String> {
    let a = allocator();
    let r = a
        .anon_region_create(n)
        .map_err(|e| format!("create: {e:?}"))?;
    let (start, _) = a.anon_region_span(r).map_err(|e| format!("{e:?}"))?;
    for i in 0..n {
        if let Err(e) = a.anon_region_populate(r, i, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
            let _ = a.anon_region_destroy(r);
            return Err(format!("populate {i}: {e:?}"));
        }
        stamp(start + i * PAGE_SIZE, seed ^ i);
    }
    Ok((r, start))
}

fn region_intact(r: RegionId, start: u64, n: u64, seed: u64) -> TestResult {
    let a = allocator();
    for i in 0..n {
        kassert!(
            intact(start + i * PAGE_SIZE, seed ^ i),
            "page {} corrupted",
            i
        );
    }
    let mapped = a
        .anon_region_check(r)
        .map_err(|e| format!("reverse map: {e:?}"))?;
    kassert_eq!(mapped, n);
    Ok(())
}

fn cat(path: &str) -> Result<String, String> {
    let mut out = String::new();
    crate::procfs::read(path, &mut out).map_err(|e| format!("cat {path}: {e}"))?;
    Ok(out)
}

fn echo(value: &str, path: &str) -> Result<(), String> {
    let mut out = String::new();
    crate::procfs::write(path, value, &mut out).map_err(|e| format!("{e}"))
}

const DIR: &str = "/sys/kernel/debug/fail_page_alloc";

ktest! {
    // The debugfs files: Linux's defaults, values written as text read back, bad values
    // refused with the accepted range and nothing changed; probability 0 disarms.
    fn tunables_read_write_and_refuse() -> TestResult {
        let f = allocator().fail_page_alloc();
        let _off = Injecting;
        let _ = f.set_attrs(FailAttrs::default());
        for (name, want) in [
            ("probability", "0\n"), ("interval", "1\n"), ("times", "1\n"), ("space", "0\n"),
            ("ignore-gfp-wait", "Y\n"), ("ignore-gfp-highmem", "Y\n"), ("min-order", "1\n"),
            ("migratetype-mask", "7\n"),
        ] {
            kassert_eq!(cat(&format!("{DIR}/{name}"))?, want);
        }
        echo("-1", &format!("{DIR}/times"))?;
        echo("N", &format!("{DIR}/ignore-gfp-wait"))?;
        echo("0", &format!("{DIR}/min-order"))?;
        echo("0x0a", &format!("{DIR}/interval"))?;
        kassert!(!f.armed());
        echo("25", &format!("{DIR}/probability"))?;
        kassert!(f.armed());
        let a = f.attrs();
        kassert_eq!((a.times, a.ignore_gfp_wait, a.min_order, a.interval, a.probability), (-1, false, 0, 10, 25));
        kassert_eq!(cat(&format!("{DIR}/times"))?, "-1\n");
        kassert_eq!(cat(&format!("{DIR}/ignore-gfp-wait"))?, "N\n");
        for (value, name, why) in [
            ("101", "probability", "out of range"),
            ("-2", "times", "out of range"),
            ("-1", "space", "negative"),
            ("maybe", "ignore-gfp-highmem", "not Y or N"),
            ("8", "migratetype-mask", "out of range"),
            ("", "interval", "empty"),
        ] {
            let e = echo(value, &format!("{DIR}/{name}")).err();
            kassert!(e.as_deref().is_some_and(|e| e.contains(why)), "echo {:?} > {}: {:?}", value, name, e);
        }
        kassert!(f.attrs() == a, "a refused write changed something");
        echo("0", &format!("{DIR}/probability"))?;
        kassert!(!f.armed());
        Ok(())
    }

    // Heap growth: a 1 MiB Vec needs a new page block (or vmalloc's scattered pages).
    // With every allocation failing, try_reserve reports the error and nothing leaks;
    // with only the first failing, the heap falls back to vmalloc and the Vec works.
    fn heap_growth_fails_cleanly_under_injection() -> TestResult {
        const BYTES: usize = 1 << 20;
        let before = settled_free_plus_pt();
        let inj0 = injected();
        {
            let _on = Injecting::on(everything(100, -1))?;
            let mut v: Vec<u8> = Vec::new();
            let r = v.try_reserve_exact(BYTES);
            kassert!(r.is_err(), "a 1 MiB reservation succeeded with every allocation failing");
            kassert_eq!(v.capacity(), 0);
        }
        let refused = injected() - inj0;
        kassert!(refused >= 1, "no allocation was refused ({})", refused);
        kassert_eq!(settled_free_plus_pt(), before);
        {
            // Only the block allocation fails: vmalloc serves the request page by page.
            let _on = Injecting::on(FailAttrs { min_order: 1, ..everything(100, 1) })?;
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(BYTES).map_err(|e| format!("fallback to vmalloc failed: {e}"))?;
            kassert!(
                crate::vmalloc::is_vmalloc_addr(v.as_ptr() as u64),
                "1 MiB Vec at {:p} is not vmalloc-backed though its block allocation failed",
                v.as_ptr()
            );
            v.resize(BYTES, 0x5a);
            kassert!(v.iter().all(|&b| b == 0x5a));
        }
        kassert_eq!(settled_free_plus_pt(), before);
        check_invariants()
    }

    // pcp refill: after draining, order-0 requests are refused before the list is
    // refilled; exactly `times` of them, then the list refills and serves the rest.
    fn pcp_refill_after_injected_failures() -> TestResult {
        let a = allocator();
        let before = settled_free();
        let (inj0, fail0, refill0) = (injected(), a.vm_event(VmEvent::PgallocFail), a.vm_event(VmEvent::PcpRefill));
        let refilled0 = a.vm_event(VmEvent::PcpRefillPages);
        let mut held: Vec<&Page> = Vec::with_capacity(64);
        let mut outcome = [false; 64];
        {
            let _on = Injecting::on(everything(100, 8))?;
            a.drain_all_pages();
            for slot in outcome.iter_mut() {
                if let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
                    held.push(p);
                    *slot = true;
                }
            }
        }
        let refilled = a.vm_event(VmEvent::PcpRefillPages) - refilled0;
        for p in held.drain(..) {
            a.free_pages(p, 0).map_err(|e| format!("free: {e}"))?;
        }
        kassert!(outcome[..8].iter().all(|&ok| !ok), "the first 8 must fail: {:?}", &outcome[..8]);
        kassert!(outcome[8..].iter().all(|&ok| ok), "the rest must succeed");
        kassert_eq!(injected() - inj0, 8);
        kassert_eq!(a.vm_event(VmEvent::PgallocFail) - fail0, 8);
        kassert!(a.vm_event(VmEvent::PcpRefill) > refill0, "the pcp list was not refilled");
        // The 56 that succeeded came through refilled lists (whether a page is left on
        // the list afterwards depends on how the batch divides 56, i.e. on memory size).
        kassert!(refilled >= 56, "only {} pages refilled for 56 allocations", refilled);
        kassert_eq!(settled_free(), before);
        check_invariants()
    }

    // Page-table allocation when mapping anon pages: with unmovable requests failing
    // (page-table frames are GFP_KERNEL; anon pages are movable and spared), every fault
    // that needs a new page table fails with NoMemory, gives back its anon page and the
    // table frame it got before the refusal; faults under existing tables succeed.
    fn page_table_allocation_failure_when_mapping() -> TestResult {
        let a = allocator();
        // Start past every address an earlier test may have mapped: a spacer region
        // twice the size of RAM, never populated.
        let spacer_pages = (a.totalram_pages() * 2).next_multiple_of(1 << 18);
        let spacer = a.anon_region_create(spacer_pages).map_err(|e| format!("spacer: {e:?}"))?;
        const TABLES: u64 = 16;
        let r = match a.anon_region_create(TABLES * 512) {
            Ok(r) => r,
            Err(e) => {
                let _ = a.anon_region_destroy(spacer);
                return Err(format!("create: {e:?}"));
            }
        };
        let before = settled_free();
        let inj0 = injected();
        let (mut ok, mut refused) = (0u64, 0u64);
        let mut other = None;
        {
            // Every second unmovable request fails: the mapping takes its three table
            // frames up front, so the first is granted and the second refused, and the
            // granted one must go back.
            let _on = Injecting::on(FailAttrs { migratetype_mask: 0b001, interval: 2, ..everything(100, -1) });
            for t in 0..TABLES {
                match a.anon_region_populate(r, t * 512, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN) {
                    Ok(_) => ok += 1,
                    Err(RegionError::NoMemory) => refused += 1,
                    Err(e) => other = Some(e),
                }
            }
        }
        let after = settled_free();
        let inj = injected() - inj0;
        // With injection off, the same faults succeed.
        let mut retry_err = None;
        for t in 0..TABLES {
            if a.anon_region_pfn(r, t * 512).ok().flatten().is_none()
                && let Err(e) = a.anon_region_populate(r, t * 512, GFP_HIGHUSER_MOVABLE | Gfp::NOWARN)
            {
                retry_err = Some(e);
            }
        }
        let mapped = a.anon_region_nr_mapped(r).unwrap_or(0);
        let _ = a.anon_region_destroy(r);
        let _ = a.anon_region_destroy(spacer);
        kassert!(other.is_none(), "unexpected error {:?}", other);
        kassert!(refused > 0, "no fault needed a new page table ({} mapped)", ok);
        kassert_eq!(inj, refused);
        // Each success took its anon page only (its table existed); each refusal gave
        // back its anon page and any table frame it had taken.
        kassert_eq!(before - after, ok);
        kassert!(retry_err.is_none(), "mapping after injection: {:?}", retry_err);
        kassert_eq!(mapped, TABLES);
        check_invariants()
    }

    // Migration whose target allocation fails: NoMemory, every page put back, mapped,
    // intact; with the 9th target refused, eight pages move and the rest stay.
    fn migration_target_allocation_fails_cleanly() -> TestResult {
        const N: u64 = 64;
        const SEED: u64 = 0xfa11_0000;
        let a = allocator();
        let before = settled_free();
        let (r, start) = stamped_region(N, SEED)?;
        let pfns = |r| (0..N).map(|i| a.anon_region_pfn(r, i).ok().flatten()).collect::<Vec<_>>();
        let isolate = |r| -> PageList {
            let mut list = PageList::new();
            for pfn in pfns(r).into_iter().flatten() {
                if let Some(p) = a.pfn_to_page(pfn)
                    && a.isolate_migratepage(p, MigrateMode::SyncLight)
                {
                    // SAFETY: just isolated: its list links belong to us.
                    unsafe { list.push_back(p) };
                }
            }
            list
        };
        let migrate = |list: &mut PageList| {
            a.migrate_pages(
                list,
                &mut |_src: &Page| a.alloc_page(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN),
                &mut |p: &Page| {
                    let _ = a.free_pages(p, 0);
                },
                MigrateMode::SyncLight,
                MigrateReason::Syscall,
            )
        };
        let result = (|| -> TestResult {
            let p0 = pfns(r);
            let mut list = isolate(r);
            kassert_eq!(list.len() as u64, N);
            let res = {
                let _on = Injecting::on(everything(100, -1))?;
                migrate(&mut list)
            };
            kassert_eq!(res, Err(MigrateError::NoMemory));
            kassert!(list.is_empty(), "pages left isolated");
            kassert!(pfns(r) == p0, "pages moved though every target was refused");
            region_intact(r, start, N, SEED)?;

            let mut list = isolate(r);
            let res = {
                let _on = Injecting::on(FailAttrs { interval: 9, ..everything(100, 1) })?;
                migrate(&mut list)
            };
            kassert_eq!(res, Err(MigrateError::NoMemory));
            kassert!(list.is_empty(), "pages left isolated");
            let moved = pfns(r).iter().zip(&p0).filter(|(x, y)| x != y).count();
            kassert_eq!(moved, 8);
            region_intact(r, start, N, SEED)
        })();
        let _ = a.anon_region_destroy(r);
        result?;
        kassert_eq!(settled_free(), before);
        check_invariants()
    }

    // Compaction whose migration targets are refused: it ends on its -ENOMEM path with
    // nothing migrated, every page mapped and intact, no page lost.
    fn compaction_target_allocation_fails_cleanly() -> TestResult {
        const N: u64 = 1024;
        const SEED: u64 = 0xc0_fa11;
        let a = allocator();
        let (r, start) = stamped_region(N, SEED)?;
        let result = (|| -> TestResult {
            // Every other page zapped: holes for compaction to close.
            for i in (1..N).step_by(2) {
                a.anon_region_zap(r, i).map_err(|e| format!("zap: {e:?}"))?;
            }
            let before = settled_free();
            let (inj0, mig0) = (injected(), a.vm_event(VmEvent::PgmigrateSuccess));
            let stats = {
                let _on = Injecting::on(FailAttrs { migratetype_mask: 0b010, ..everything(100, -1) })?;
                a.compact_memory()
            };
            let refused = injected() - inj0;
            kprintln!(
                "fault injection: compaction with every target refused: {} isolated, {} migrated, {} targets refused",
                stats.isolated, stats.migrated, refused
            );
            kassert!(refused > 0, "no target was asked for ({:?})", stats);
            kassert_eq!(stats.migrated, 0);
            kassert_eq!(a.vm_event(VmEvent::PgmigrateSuccess) - mig0, 0);
            kassert_eq!(settled_free(), before);
            for i in (0..N).step_by(2) {
                kassert!(intact(start + i * PAGE_SIZE, SEED ^ i), "page {} corrupted", i);
            }
            let mapped = a.anon_region_check(r).map_err(|e| format!("reverse map: {e:?}"))?;
            kassert_eq!(mapped, N / 2);
            Ok(())
        })();
        let _ = a.anon_region_destroy(r);
        result?;
        check_invariants()
    }
}
