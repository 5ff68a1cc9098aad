//! SMP: every CPU online, remote calls, concurrent work, TLB shootdown, per-CPU timers.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::{PhysAddr, VirtAddr, structures::paging::PageTableFlags};

use crate::arch::{paging, percpu, smp, time};
use crate::{kassert, kassert_eq, ktest};

ktest! {
    fn every_firmware_cpu_is_online() -> TestResult {
        let listed = smp::FIRMWARE_CPUS.load(Ordering::Relaxed);
        kassert_eq!(smp::nr_online(), listed);
        let ids = smp::online_ids();
        kassert_eq!(ids, (0..listed).collect::<Vec<_>>());
        // APIC ids are distinct.
        let mut apics: Vec<u64> = percpu::online_cpus().map(|c| c.apic_id.load(Ordering::Relaxed)).collect();
        apics.sort_unstable();
        apics.dedup();
        kassert_eq!(apics.len(), listed);
        Ok(())
    }

    fn call_on_cpu_runs_on_that_cpu() -> TestResult {
        for cpu in smp::online_ids() {
            let seen = AtomicUsize::new(usize::MAX);
            let ran = smp::call_on_cpu(cpu, &|| seen.store(percpu::cpu_id(), Ordering::SeqCst));
            kassert!(ran, "CPU {} not reachable", cpu);
            kassert_eq!(seen.load(Ordering::SeqCst), cpu);
        }
        kassert!(!smp::call_on_cpu(percpu::MAX_CPUS - 1, &|| {}) || smp::nr_online() == percpu::MAX_CPUS);
        Ok(())
    }

    fn run_on_cpus_is_concurrent_and_complete() -> TestResult {
        let ids = smp::online_ids();
        let total = AtomicU64::new(0);
        let arrived = AtomicUsize::new(0);
        let wrong_cpu = AtomicUsize::new(0);
        let ran = smp::run_on_cpus(&ids, &|cpu| {
            if percpu::cpu_id() != cpu {
                wrong_cpu.fetch_add(1, Ordering::SeqCst);
            }
            // Rendezvous: every CPU must be running at the same time to get past this.
            arrived.fetch_add(1, Ordering::SeqCst);
            let deadline = time::now_ns() + 5_000_000_000;
            while arrived.load(Ordering::SeqCst) < ids.len() && time::now_ns() < deadline {
                core::hint::spin_loop();
            }
            for _ in 0..10_000 {
                total.fetch_add(1, Ordering::Relaxed);
            }
        });
        kassert_eq!(ran, ids.len());
        kassert_eq!(wrong_cpu.load(Ordering::SeqCst), 0);
        kassert_eq!(arrived.load(Ordering::SeqCst), ids.len());
        kassert_eq!(total.load(Ordering::SeqCst), 10_000 * ids.len() as u64);
        Ok(())
    }

    fn tlb_shootdown_makes_every_cpu_see_the_new_frame() -> TestResult {
        // Two heap pages with different contents; map a test address to the first, let
        // every CPU read through it (caching the translation), remap it to the second,
        // shoot down, and every CPU must now read the second page's contents.
        let layout = core::alloc::Layout::from_size_align(4096, 4096).unwrap();
        // SAFETY: non-zero size; freed at the end of the test.
        let (a, b) = unsafe { (alloc::alloc::alloc(layout), alloc::alloc::alloc(layout)) };
        kassert!(!a.is_null() && !b.is_null());
        // SAFETY: both are fresh 4 KiB allocations we own.
        unsafe {
            (a as *mut u64).write_volatile(0xaaaa);
            (b as *mut u64).write_volatile(0xbbbb);
        }
        let pa = paging::translate(VirtAddr::from_ptr(a)).unwrap();
        let pb = paging::translate(VirtAddr::from_ptr(b)).unwrap();
        let test_va = VirtAddr::new(crate::arch::apic::LAPIC_VIRT + 0x10_0000);
        let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        paging::with_early_frames(|f| {
            // SAFETY: the test owns both heap pages and this otherwise unused fixmap slot.
            unsafe { paging::map_page(test_va, PhysAddr::new(pa.as_u64()), flags, f) }
        })
        .map_err(|e| alloc::format!("map: {e:?}"))?;
        let ids = smp::online_ids();
        let read_all = |expect: u64| {
            let bad = AtomicUsize::new(0);
            smp::run_on_cpus(&ids, &|_| {
                // SAFETY: test_va is mapped to one of the test's pages for the whole call.
                let v = unsafe { (test_va.as_u64() as *const u64).read_volatile() };
                if v != expect {
                    bad.fetch_add(1, Ordering::SeqCst);
                }
            });
            bad.load(Ordering::SeqCst)
        };
        let first = read_all(0xaaaa);
        let before = smp::SHOOTDOWNS.load(Ordering::Relaxed);
        // SAFETY: the slot is ours; we remap it immediately below.
        unsafe { paging::unmap_page(test_va) }.map_err(|e| alloc::format!("unmap: {e:?}"))?;
        paging::with_early_frames(|f| {
            // SAFETY: as above.
            unsafe { paging::map_page(test_va, PhysAddr::new(pb.as_u64()), flags, f) }
        })
        .map_err(|e| alloc::format!("remap: {e:?}"))?;
        smp::tlb_shootdown(test_va.as_u64(), test_va.as_u64() + 4096);
        let second = read_all(0xbbbb);
        // SAFETY: the slot is ours; nothing reads it after this.
        let _ = unsafe { paging::unmap_page(test_va) };
        smp::tlb_shootdown(test_va.as_u64(), test_va.as_u64() + 4096);
        // SAFETY: allocated above with this layout, no longer mapped elsewhere.
        unsafe {
            alloc::alloc::dealloc(a, layout);
            alloc::alloc::dealloc(b, layout);
        }
        kassert_eq!(first, 0);
        kassert_eq!(second, 0);
        kassert_eq!(smp::SHOOTDOWNS.load(Ordering::Relaxed), before + 2);
        Ok(())
    }

    fn every_cpu_timer_ticks() -> TestResult {
        let start: Vec<u64> = percpu::online_cpus().map(|c| c.ticks.load(Ordering::Relaxed)).collect();
        // Wait for up to 3 seconds of TSC time for each CPU to take a few ticks.
        let deadline = time::now_ns() + 3_000_000_000;
        loop {
            let now: Vec<u64> = percpu::online_cpus().map(|c| c.ticks.load(Ordering::Relaxed)).collect();
            if now.iter().zip(&start).all(|(n, s)| n >= &(s + 3)) {
                return Ok(());
            }
            if time::now_ns() > deadline {
                return Err(alloc::format!("ticks before {start:?}, after {now:?}"));
            }
            x86_64::instructions::hlt();
        }
    }

    fn pcp_lists_drain_by_ipi_and_remotely() -> TestResult {
        let a = crate::memory::allocator();
        let ids = smp::online_ids();
        if ids.len() < 2 {
            return crate::ktest::skip("needs at least 2 CPUs (drains other CPUs' pcp lists)");
        }
        // Leave pages on every other CPU's pcp lists: allocate a batch there, free it there.
        let fill = || {
            smp::run_on_cpus(&ids[1..], &|_| {
                let pages: Vec<u64> = (0..64).filter_map(|_| a.get_free_pages(zonebuddy::page_alloc::gfp::GFP_KERNEL, 0)).collect();
                for p in pages {
                    let _ = a.free_pages_virt(p, 0);
                }
            });
        };
        fill();
        for &cpu in &ids[1..] {
            kassert!(crate::memory::pcp_pages_of(cpu) > 0, "CPU {} has no pcp pages to drain", cpu);
            kassert!(crate::memory::drain_cpu_by_ipi(cpu), "CPU {} unreachable", cpu);
            kassert_eq!(crate::memory::pcp_pages_of(cpu), 0);
        }
        // drain_all_pages from this CPU empties the others' lists under their pcp locks.
        fill();
        a.drain_all_pages();
        for &cpu in &ids {
            kassert_eq!(crate::memory::pcp_pages_of(cpu), 0);
        }
        Ok(())
    }

    fn ap_stacks_have_guard_pages() -> TestResult {
        let guards = smp::STACK_GUARDS.lock().clone();
        kassert_eq!(guards.len(), smp::nr_online() - 1);
        for g in guards {
            kassert!(paging::translate(VirtAddr::new(g)).is_none(), "guard page {:#x} is mapped", g);
        }
        Ok(())
    }
}
