//! SMP: every CPU online, remote calls, concurrent work, TLB shootdown, per-CPU timers.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

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

    fn waits_for_a_cpu_with_interrupts_off_time_out_and_name_it() -> TestResult {
        // One CPU sits with interrupts off (as a bug would leave it) while this one sends
        // it a remote call and a TLB shootdown under a lowered bound: both must come back
        // as errors naming that CPU, and the withdrawn call must never run.
        let ids = smp::online_ids();
        let me = percpu::cpu_id();
        let Some(&target) = ids.iter().find(|&&c| c != me) else {
            return Ok(());
        };
        let holding = AtomicBool::new(false);
        let release = AtomicBool::new(false);
        let ran = AtomicUsize::new(0);
        let call = spin::Mutex::new(None);
        let shootdown = spin::Mutex::new(None);
        smp::run_on_cpus(&[me, target], &|cpu| {
            if cpu == target {
                x86_64::instructions::interrupts::without_interrupts(|| {
                    holding.store(true, Ordering::SeqCst);
                    // Released by the other side; the deadline only guards against a hang.
                    let deadline = time::now_ns() + 20_000_000_000;
                    while !release.load(Ordering::SeqCst) && time::now_ns() < deadline {
                        core::hint::spin_loop();
                    }
                });
                return;
            }
            while !holding.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            let old = smp::set_wait_timeout_ms(200);
            let c = smp::try_call_on_cpu(target, &|| {
                ran.fetch_add(1, Ordering::SeqCst);
            });
            let sd = smp::try_tlb_shootdown(0, 4096);
            smp::set_wait_timeout_ms(old);
            *call.lock() = Some(c);
            *shootdown.lock() = Some(sd);
            release.store(true, Ordering::SeqCst);
        });
        // The held CPU now takes its pending IPIs: the withdrawn call finds nothing to run,
        // the shootdown is acknowledged late; both paths work normally again.
        kassert!(smp::call_on_cpu(target, &|| {}), "CPU {} unreachable after the test", target);
        smp::tlb_shootdown(0, 4096);
        kassert_eq!(ran.load(Ordering::SeqCst), 0);
        match call.into_inner() {
            Some(Err(smp::CallError::Timeout(t))) => {
                kassert_eq!((t.cpu, t.waiter), (target, me));
                let msg = alloc::format!("{}", smp::CallError::Timeout(t));
                kprintln!("smp: expected diagnostic: {msg}");
                kassert!(msg.contains(&alloc::format!("for CPU {target} to take a remote call")), "message: {}", msg);
            }
            other => return Err(alloc::format!("remote call to a CPU with interrupts off: {other:?}")),
        }
        match shootdown.into_inner() {
            Some(Err(e)) => {
                kassert_eq!(e.timeout.cpu, target);
                kassert!(e.missing & (1 << target) != 0, "missing {:#x}", e.missing);
                let msg = alloc::format!("{e}");
                kprintln!("smp: expected diagnostic: {msg}");
                kassert!(msg.contains("acknowledge a TLB shootdown"), "message: {}", msg);
            }
            other => return Err(alloc::format!("shootdown with a CPU with interrupts off: {other:?}")),
        }
        Ok(())
    }

    fn translate_agrees_with_the_direct_map_on_every_page_size() -> TestResult {
        // translate() walks the live tables lock-free, reading entries atomically. Each
        // answer is checked by reading the same word through the direct map: the kernel
        // image and stacks (4 KiB pages), the direct map itself (huge pages), a movable
        // window page (4 KiB, rewritten by migration), and an unmapped address.
        static MARK: AtomicU64 = AtomicU64::new(0x7a05_1a7e);
        let on_stack = AtomicU64::new(0x57ac_4000_0000_0001);
        let a = crate::memory::allocator();
        let page = a.get_free_pages(zonebuddy::page_alloc::gfp::GFP_KERNEL, 0).ok_or("no page")?;
        // SAFETY: a page we own until the free below.
        unsafe { ((page + 0x678) as *mut u64).write_volatile(0xd1ec_7000) };
        let r = a.anon_region_create(1).map_err(|e| alloc::format!("{e:?}"))?;
        let (movable_va, _) = a.anon_region_span(r).map_err(|e| alloc::format!("{e:?}"))?;
        a.anon_region_populate(r, 0, zonebuddy::page_alloc::gfp::GFP_HIGHUSER_MOVABLE).map_err(|e| alloc::format!("{e:?}"))?;
        // SAFETY: page 0 of region `r` is mapped at `movable_va` and ours.
        unsafe { ((movable_va + 0x10) as *mut u64).write_volatile(0x30ab_1e00) };
        let read_both = |va: u64| -> Result<(u64, u64), alloc::string::String> {
            let pa = paging::translate(VirtAddr::new(va)).ok_or_else(|| alloc::format!("{va:#x} not mapped"))?;
            // SAFETY: `va` is one of the test's live, aligned words and `pa` its frame,
            // which the direct map covers.
            Ok(unsafe { ((va as *const u64).read_volatile(), ((crate::PHYS_OFFSET + pa.as_u64()) as *const u64).read_volatile()) })
        };
        let words = [
            ("static", &raw const MARK as u64),
            ("stack", &raw const on_stack as u64),
            ("direct map", page + 0x678),
            ("movable window", movable_va + 0x10),
        ];
        let mut result = Ok(());
        for (what, va) in words {
            match read_both(va) {
                Ok((via_va, via_pa)) if via_va == via_pa => {}
                Ok((via_va, via_pa)) => result = Err(alloc::format!("{what} {va:#x}: {via_va:#x} there, {via_pa:#x} at the translated address")),
                Err(e) => result = Err(alloc::format!("{what}: {e}")),
            }
        }
        let direct = paging::translate(VirtAddr::new(page + 0x678)).map(|p| p.as_u64());
        let movable = paging::translate(VirtAddr::new(movable_va + 0x10)).map(|p| p.as_u64());
        let movable_pfn = a.anon_region_pfn(r, 0).ok().flatten();
        let _ = a.anon_region_destroy(r);
        let _ = a.free_pages_virt(page, 0);
        result?;
        kassert_eq!(direct, Some(page - crate::PHYS_OFFSET + 0x678));
        kassert_eq!(movable, movable_pfn.map(|pfn| (pfn << 12) + 0x10));
        kassert!(paging::translate(VirtAddr::new(movable_va)).is_none(), "destroyed region still mapped");
        kassert!(MARK.load(Ordering::Relaxed) != 0 && on_stack.load(Ordering::Relaxed) != 0);
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
