//! vmalloc and the heap's fallback to it: large kernel allocations work, come back whole,
//! survive fragmented memory, and fail as values.

use alloc::{format, vec::Vec};

use zonebuddy::{
    model::mmzone::{MAX_PAGE_ORDER, PAGE_SIZE},
    page_alloc::gfp::{GFP_ATOMIC, Gfp},
};

use crate::{
    kassert, kassert_eq, ktest,
    memory::allocator,
    vmalloc::{self, VMALLOC_END, VMALLOC_START, is_vmalloc_addr, vfree},
};

fn settled_free() -> u64 {
    let a = allocator();
    a.drain_all_pages();
    a.nr_free_pages()
}

/// Free pages, counting page-table pages vmalloc kept for its range as free: those are
/// taken once and reused, so a round trip must give back everything else.
fn settled_free_plus_pt() -> u64 {
    settled_free() + vmalloc::usage().pt_pages
}

fn fill(p: *mut u8, bytes: usize, seed: u64) {
    for i in 0..bytes / 8 {
        // SAFETY: the caller owns `bytes` bytes at `p`, 8-byte aligned.
        unsafe { (p as *mut u64).add(i).write_volatile(seed ^ i as u64) };
    }
}

fn check(p: *const u8, bytes: usize, seed: u64) -> bool {
    // SAFETY: as in `fill`.
    (0..bytes / 8).all(|i| unsafe { (p as *const u64).add(i).read_volatile() } == seed ^ i as u64)
}

fn check_invariants() -> Result<(), alloc::string::String> {
    zonebuddy::report::debug::check(allocator()).map_err(|v| format!("invariant violated: {v}"))
}

ktest! {
    // 24 MiB is six times the largest buddy block: only vmalloc can serve it.
    fn large_vec_is_vmalloc_backed_and_every_page_comes_back() -> TestResult {
        const BYTES: usize = 24 << 20;
        let used_before = vmalloc::usage().used_bytes;
        let before = settled_free_plus_pt();
        let mut v: Vec<u8> = Vec::with_capacity(BYTES);
        let p = v.as_mut_ptr();
        kassert!(is_vmalloc_addr(p as u64), "24 MiB Vec at {:p}, outside vmalloc", p);
        kassert_eq!(p as u64 % PAGE_SIZE, 0);
        let during = vmalloc::usage();
        kassert_eq!(during.used_bytes - used_before, BYTES as u64);
        kassert_eq!(crate::heap::usage().vmalloc as u64, during.used_bytes);
        let taken = before - settled_free_plus_pt();
        kassert_eq!(taken, (BYTES as u64) / PAGE_SIZE);
        // Every page written and read back, a word per 8 bytes (byte by byte would take
        // seconds under emulation).
        v.resize(BYTES, 0);
        fill(p, BYTES, 0x5eed);
        kassert!(check(p, BYTES, 0x5eed), "pattern lost");
        // Shrinking a little keeps the area (realloc in place)...
        v.truncate(BYTES - 4096);
        v.shrink_to_fit();
        kassert_eq!(v.as_ptr(), p as *const u8);
        kassert_eq!(vmalloc::area_size(p as u64), Some(BYTES as u64));
        // ...growing past it copies everything into a new, larger area.
        v.reserve_exact(8192);
        kassert!(is_vmalloc_addr(v.as_ptr() as u64) && !core::ptr::eq(v.as_ptr(), p));
        kassert!(check(v.as_ptr(), BYTES - 4096, 0x5eed), "pattern lost by realloc");
        kassert!(vfree(p).is_err(), "the old area is still there after realloc moved");
        drop(v);
        kassert_eq!(vmalloc::usage().used_bytes, used_before);
        kassert_eq!(settled_free_plus_pt(), before);
        check_invariants()
    }

    fn vmalloc_maps_scattered_pages_with_a_guard_between_areas() -> TestResult {
        let before = settled_free_plus_pt();
        let a = vmalloc::vmalloc(3 * 4096).ok_or("vmalloc of 3 pages failed")?;
        let b = vmalloc::vmalloc(5 * 4096 + 1).ok_or("vmalloc of 6 pages failed")?;
        kassert!((VMALLOC_START..VMALLOC_END).contains(&(a as u64)));
        kassert!(b as u64 >= a as u64 + 4 * 4096, "no guard page: {:p} {:p}", a, b);
        let guard = crate::arch::paging::leaf_pte(x86_64::VirtAddr::new(a as u64 + 3 * 4096));
        kassert!(
            guard.is_none_or(|pte| pte.load(core::sync::atomic::Ordering::Relaxed) & 1 == 0),
            "guard page after the area is mapped"
        );
        fill(a, 3 * 4096, 1);
        fill(b, 6 * 4096, 2);
        kassert!(check(a, 3 * 4096, 1) && check(b, 6 * 4096, 2));
        kassert_eq!(vmalloc::area_size(b as u64), Some(6 * 4096));
        kassert!(vfree(a).is_ok());
        kassert_eq!(vfree(a), Err(vmalloc::VfreeError::NotAnArea(a as u64)));
        kassert!(vfree(b.wrapping_add(4096)).is_err(), "vfree inside an area accepted");
        kassert!(vfree(b).is_ok());
        kassert_eq!(settled_free_plus_pt(), before);
        Ok(())
    }

    // vfree with interrupts disabled cannot wait for a TLB shootdown: the area stays
    // mapped and reserved until the next purge, which frees every page.
    fn vfree_with_interrupts_off_is_deferred_then_purged() -> TestResult {
        let before = settled_free_plus_pt();
        let p = vmalloc::vmalloc(16 * 4096).ok_or("vmalloc of 16 pages failed")?;
        fill(p, 16 * 4096, 3);
        let r = x86_64::instructions::interrupts::without_interrupts(|| vfree(p));
        kassert!(r.is_ok(), "{:?}", r);
        let u = vmalloc::usage();
        kassert_eq!(u.lazy_bytes, 16 * 4096);
        kassert!(u.used_bytes >= 16 * 4096);
        kassert!(check(p, 16 * 4096, 3), "a lazily freed area was unmapped before its purge");
        kassert_eq!(vfree(p), Err(vmalloc::VfreeError::AlreadyFreed(p as u64)));
        kassert_eq!(settled_free_plus_pt(), before - 16);
        vmalloc::purge_lazy();
        kassert_eq!(vmalloc::usage().lazy_bytes, 0);
        kassert_eq!(settled_free_plus_pt(), before);
        Ok(())
    }

    // Fragment a bounded part of memory so that no free block of order >= 4 is left, with
    // thousands of free order-0 pages none of which can merge, then ask for far more than
    // any free contiguous block: vmalloc directly, and the heap (which first tries one
    // contiguous block and must fall back).
    fn vmalloc_succeeds_where_no_contiguous_block_is_free() -> TestResult {
        let a = allocator();
        // Warm up: the page tables of the range's first megabytes exist afterwards.
        let w = vmalloc::vmalloc(4 << 20).ok_or("warm-up vmalloc failed")?;
        kassert!(vfree(w).is_ok());
        let before = settled_free_plus_pt();
        let gfp = GFP_ATOMIC | Gfp::NOWARN;
        // Every Vec this test needs is allocated up front: once memory is taken, the heap
        // could not grow.
        let mut held: Vec<(u64, u32)> = Vec::with_capacity(16384 + (before >> 4) as usize);
        a.drain_all_pages();
        // Past the watermarks (MEMALLOC): a reserve block left free would be contiguous.
        // Each zone asked with its own gfp, so lowmem_reserve hides no block.
        for zone in [Gfp::empty(), Gfp::DMA32, Gfp::DMA] {
            for order in (4..=MAX_PAGE_ORDER).rev() {
                while let Some(addr) = a.get_free_pages(gfp | zone | Gfp::MEMALLOC, order) {
                    held.push((addr, order));
                }
            }
        }
        // Give back 64 MiB of the largest blocks, then take it again page by page and free
        // every page whose buddy stays held: lots of free memory, none of it contiguous.
        held.sort_unstable_by_key(|&(_, order)| order);
        let mut released = 0u64;
        while released < 16384 {
            let Some((addr, order)) = held.pop() else { break };
            a.free_pages_virt(addr, order).map_err(|e| format!("{e}"))?;
            released += 1 << order;
        }
        kassert!(released >= 4096, "only {} pages held in blocks of order >= 4", released);
        // Every free page is taken (room for all of them reserved first): a page left
        // free, say on a per-CPU list, could merge into a larger block.
        a.drain_all_pages();
        let rest = (a.nr_free_pages() + a.nr_pcp_pages()) as usize + 1024;
        let mut singles: Vec<u64> = Vec::with_capacity(rest);
        let mut keep = Vec::with_capacity(rest);
        a.drain_all_pages();
        while singles.len() < singles.capacity() {
            match a.get_free_pages(gfp | Gfp::MEMALLOC, 0) {
                Some(addr) => singles.push(addr),
                None => break,
            }
        }
        singles.sort_unstable();
        let mut freed = 0u64;
        for (i, &addr) in singles.iter().enumerate() {
            let pfn = (addr - crate::PHYS_OFFSET) / PAGE_SIZE;
            let buddy_held = pfn & 1 == 0 && singles.get(i + 1) == Some(&(addr + PAGE_SIZE));
            if buddy_held {
                a.free_pages_virt(addr, 0).map_err(|e| format!("{e}"))?;
                freed += 1;
            } else {
                keep.push(addr);
            }
        }
        a.drain_all_pages();
        // Only what these kernel allocations can reach: ZONE_MOVABLE (movablecore=) keeps
        // its free blocks, and no kernel allocation could use them anyway.
        let per_order =
            crate::scenario::free_blocks_per_order_below(zonebuddy::ZoneType::Movable, false);
        let largest = (0..per_order.len()).rev().find(|&o| per_order[o] > 0).unwrap_or(0);
        let result = (|| -> crate::ktest::TestResult {
            // A few small blocks may stay free where order-0 requests cannot reach them
            // (pageblocks the high-order atomic requests turned into the HIGHATOMIC
            // reserve); everything else free is an isolated page.
            let in_blocks: u64 = per_order.iter().enumerate().skip(1).map(|(o, n)| n << o).sum();
            kassert!(largest < 8, "a free order-{} block is left: {:?}", largest, per_order);
            kassert!(freed >= 2048, "only {} isolated free pages", freed);
            // 4 MiB (1024 pages): more than every free block of order >= 1 together, so
            // only scattered single pages can serve it.
            let bytes = 4 << 20;
            kassert!(in_blocks < 1024, "{} pages free in blocks: {:?}", in_blocks, per_order);
            let v = vmalloc::vmalloc(bytes).ok_or("vmalloc on fragmented memory failed")?;
            fill(v, bytes, 7);
            let ok = check(v, bytes, 7);
            kassert!(vfree(v).is_ok());
            kassert!(ok, "pattern lost");
            // From the heap, one order more than the largest free block: the contiguous
            // attempt fails, and the heap falls back.
            let words = (PAGE_SIZE << (largest + 1)) as usize / 8;
            let mut h: Vec<u64> = Vec::with_capacity(words);
            kassert!(
                is_vmalloc_addr(h.as_ptr() as u64),
                "heap did not fall back to vmalloc for order {}: {:p}",
                largest + 1,
                h.as_ptr()
            );
            h.extend(0..words as u64);
            kassert!(h.iter().enumerate().all(|(i, &x)| x == i as u64));
            Ok(())
        })();
        drop(singles);
        for addr in keep {
            a.free_pages_virt(addr, 0).map_err(|e| format!("{e}"))?;
        }
        for (addr, order) in held {
            a.free_pages_virt(addr, order).map_err(|e| format!("{e}"))?;
        }
        result?;
        kassert_eq!(settled_free_plus_pt(), before);
        check_invariants()
    }

    fn vmalloc_out_of_memory_is_none_and_gives_everything_back() -> TestResult {
        let a = allocator();
        let failures = vmalloc::usage().failures;
        let total = a.totalram_pages();
        kassert!(vmalloc::vmalloc(((total + 1) * PAGE_SIZE) as usize).is_none());
        kassert!(vmalloc::vmalloc(usize::MAX).is_none());
        kassert!(vmalloc::vmalloc(0).is_none());
        kassert_eq!(vmalloc::usage().failures, failures + 3);
        // Within RAM but more than is free: take every free page (past the watermarks),
        // give 1024 back, and ask for 2048. vmalloc fails part way and must give back
        // every page it took.
        a.drain_all_pages();
        let mut held: Vec<(u64, u32)> =
            Vec::with_capacity(8192 + (a.nr_free_pages() >> 9) as usize);
        let gfp = GFP_ATOMIC | Gfp::MEMALLOC | Gfp::NOWARN;
        for order in (0..=MAX_PAGE_ORDER).rev() {
            while held.len() < held.capacity() {
                match a.get_free_pages(gfp, order) {
                    Some(addr) => held.push((addr, order)),
                    None => break,
                }
            }
        }
        let mut back = 0u64;
        while back < 1024 {
            let Some((addr, order)) = held.pop() else { break };
            a.free_pages_virt(addr, order).map_err(|e| format!("{e}"))?;
            back += 1 << order;
        }
        let before = settled_free_plus_pt();
        let used = vmalloc::usage().used_bytes;
        let failed = vmalloc::vmalloc(((back + 1024) * PAGE_SIZE) as usize).is_none();
        let after = settled_free_plus_pt();
        for (addr, order) in held {
            a.free_pages_virt(addr, order).map_err(|e| format!("{e}"))?;
        }
        kassert!(failed, "vmalloc of {} pages with {} free succeeded", back + 1024, before);
        kassert_eq!(vmalloc::usage().failures, failures + 4);
        kassert_eq!(vmalloc::usage().used_bytes, used);
        kassert_eq!(after, before);
        check_invariants()
    }
}
