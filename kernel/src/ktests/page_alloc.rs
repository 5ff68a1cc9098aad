//! The buddy allocator inside the kernel: every order, every zone modifier, zeroing,
//! compound pages, bad frees, exhaustion and exact recovery of the free count.

use alloc::{boxed::Box, format, vec::Vec};

use zonebuddy::{
    model::mmzone::{MAX_PAGE_ORDER, PAGE_SIZE, ZoneType},
    model::page::PageFlags,
    page_alloc::AllocError,
    page_alloc::gfp::{GFP_DMA, GFP_DMA32, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, Gfp},
};

use crate::{kassert, kassert_eq, ktest, memory::allocator};

/// Free pages with every pcp list drained: the count that must come back exactly.
fn settled_free() -> u64 {
    let a = allocator();
    a.drain_all_pages();
    a.nr_free_pages()
}

fn fill(addr: u64, bytes: u64, seed: u64) {
    let p = addr as *mut u64;
    for i in 0..bytes / 8 {
        // SAFETY: the caller owns [addr, addr + bytes), freshly allocated from the buddy.
        unsafe { p.add(i as usize).write_volatile(seed ^ i) };
    }
}

fn verify(addr: u64, bytes: u64, seed: u64) -> bool {
    let p = addr as *const u64;
    // SAFETY: as in `fill`.
    (0..bytes / 8).all(|i| unsafe { p.add(i as usize).read_volatile() } == seed ^ i)
}

/// Zeroed allocations `gfp_zero_returns_zeroed_memory` makes at most, per order, waiting for
/// the dirtied block to come back.
const ZERO_TRIES: usize = 32;

/// A block of `order` (as its pfn) that, once freed, stays a free block of exactly that
/// order until it is allocated again: below MAX_PAGE_ORDER its buddy is allocated as well
/// and returned (pfn, direct-map address) for the caller to free afterwards, so freeing the
/// block cannot merge it. Every other block taken while looking is freed before returning.
fn block_with_held_buddy(order: u32) -> Result<(u64, Option<(u64, u64)>), alloc::string::String> {
    let a = allocator();
    let mut held: Vec<(u64, u64)> = Vec::with_capacity(64);
    let mut pair = None;
    while pair.is_none() && held.len() < held.capacity() {
        let Some(page) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, order) else {
            break;
        };
        let (pfn, addr) = (a.page_to_pfn(page), a.page_address(page));
        if order == MAX_PAGE_ORDER {
            return Ok((pfn, None));
        }
        let buddy = pfn ^ (1 << order);
        pair = held
            .iter()
            .position(|&(p, _)| p == buddy)
            .map(|i| (pfn, held.swap_remove(i)));
        if pair.is_none() {
            held.push((pfn, addr));
        }
    }
    for (_, addr) in held {
        a.free_pages_virt(addr, order).map_err(|e| format!("{e}"))?;
    }
    let (pfn, buddy) =
        pair.ok_or_else(|| format!("no two buddies among the order-{order} blocks allocated"))?;
    Ok((pfn, Some(buddy)))
}

fn check_invariants() -> Result<(), alloc::string::String> {
    zonebuddy::report::debug::check(allocator()).map_err(|v| format!("invariant violated: {v}"))
}

ktest! {
    fn every_order_allocates_aligned_writable_blocks() -> TestResult {
        let a = allocator();
        let before = settled_free();
        for order in 0..=MAX_PAGE_ORDER {
            let page = a.alloc_pages(GFP_KERNEL, order).ok_or_else(|| format!("order {order} failed"))?;
            let pfn = a.page_to_pfn(page);
            kassert!(pfn.is_multiple_of(1 << order), "order {} block at pfn {:#x} is misaligned", order, pfn);
            let addr = a.page_address(page);
            let bytes = PAGE_SIZE << order;
            fill(addr, bytes, 0x5eed_0000 + u64::from(order));
            kassert!(verify(addr, bytes, 0x5eed_0000 + u64::from(order)), "order {} pattern lost", order);
            a.free_pages(page, order).map_err(|e| format!("free order {order}: {e}"))?;
        }
        kassert_eq!(settled_free(), before);
        check_invariants()
    }

    fn zone_modifiers_land_in_their_zones() -> TestResult {
        let a = allocator();
        let before = settled_free();
        let dma = a.alloc_pages(GFP_DMA, 0).ok_or("GFP_DMA failed")?;
        kassert_eq!(dma.zone_type(), Some(ZoneType::Dma));
        kassert!(a.page_to_pfn(dma) < 4096);
        let dma32 = a.alloc_pages(GFP_DMA32, 2).ok_or("GFP_DMA32 failed")?;
        kassert!(matches!(dma32.zone_type(), Some(ZoneType::Dma32 | ZoneType::Dma)));
        kassert!(a.page_to_pfn(dma32) + 4 <= 1 << 20);
        let movable = a.alloc_pages(GFP_HIGHUSER_MOVABLE, 0).ok_or("GFP_HIGHUSER_MOVABLE failed")?;
        a.free_pages(dma, 0).map_err(|e| format!("{e}"))?;
        a.free_pages(dma32, 2).map_err(|e| format!("{e}"))?;
        a.free_pages(movable, 0).map_err(|e| format!("{e}"))?;
        kassert_eq!(settled_free(), before);
        Ok(())
    }

    fn gfp_zero_returns_zeroed_memory() -> TestResult {
        // QEMU's RAM starts zeroed, so a zeroed block proves nothing unless it is one that
        // was dirty: for every order, dirty a block, free it, and allocate with __GFP_ZERO
        // until that very block (same pfn) comes back; it must be all zeros.
        let a = allocator();
        let before = settled_free();
        let mut tries_per_order = Vec::new();
        for order in 0..=MAX_PAGE_ORDER {
            let (pfn, buddy) = block_with_held_buddy(order)?;
            let addr = a.page_address(a.pfn_to_page(pfn).ok_or("dirty block has no page")?);
            fill(addr, PAGE_SIZE << order, 0xdead_beef);
            a.free_pages_virt(addr, order).map_err(|e| format!("{e}"))?;
            // Same CPU, and the block cannot merge (its buddy is held): orders kept on pcp
            // lists come back first (LIFO), the others from the head of their free list;
            // a few tries cover a block a drain put behind others of its order.
            let mut taken: Vec<u64> = Vec::with_capacity(ZERO_TRIES);
            let mut dirty_words = None;
            let mut other_dirty = None;
            while taken.len() < ZERO_TRIES {
                let Some(page) = a.alloc_pages(GFP_KERNEL | Gfp::ZERO | Gfp::NOWARN, order) else {
                    break;
                };
                let p = a.page_address(page) as *const u64;
                // SAFETY: the block is ours until freed below.
                let nonzero = (0..(PAGE_SIZE << order) / 8).filter(|&i| unsafe { p.add(i as usize).read_volatile() } != 0).count();
                taken.push(a.page_address(page));
                if a.page_to_pfn(page) == pfn {
                    dirty_words = Some(nonzero);
                    break;
                }
                if nonzero != 0 {
                    other_dirty = Some((a.page_to_pfn(page), nonzero));
                }
            }
            let tries = taken.len();
            for b in taken.into_iter().chain(buddy.map(|b| b.1)) {
                a.free_pages_virt(b, order).map_err(|e| format!("{e}"))?;
            }
            kassert!(other_dirty.is_none(), "order {}: a __GFP_ZERO block came back dirty (pfn, nonzero words): {:?}", order, other_dirty);
            let words = dirty_words.ok_or_else(|| format!("order {order}: the dirtied block at pfn {pfn:#x} did not come back in {tries} zeroed allocations"))?;
            kassert!(words == 0, "order {}: the dirtied block at pfn {:#x} came back with {} nonzero words despite __GFP_ZERO", order, pfn, words);
            tries_per_order.push(tries);
        }
        kprintln!("gfp_zero: allocations until the dirtied block came back, orders 0..={}: {:?}", MAX_PAGE_ORDER, tries_per_order);
        let z = a.get_zeroed_page(GFP_KERNEL).ok_or("get_zeroed_page failed")?;
        // SAFETY: the page is ours until freed below.
        kassert!((0..512).all(|i| unsafe { (z as *const u64).add(i).read_volatile() } == 0));
        a.free_pages_virt(z, 0).map_err(|e| format!("{e}"))?;
        kassert_eq!(settled_free(), before);
        check_invariants()
    }

    fn compound_pages_have_head_and_tails() -> TestResult {
        let a = allocator();
        let order = 4;
        let head = a.alloc_pages(GFP_KERNEL | Gfp::COMP, order).ok_or("compound alloc failed")?;
        kassert!(head.test_flag(PageFlags::HEAD), "head lacks PG_head");
        let pfn = a.page_to_pfn(head);
        for i in 1..(1u64 << order) {
            let tail = a.pfn_to_page(pfn + i).ok_or("tail without page")?;
            kassert!(core::ptr::eq(tail.compound_head(), head), "tail {} does not point to its head", i);
        }
        a.free_pages(head, order).map_err(|e| format!("{e}"))?;
        check_invariants()
    }

    fn refcounted_free_keeps_pages_until_the_last_put() -> TestResult {
        let a = allocator();
        let before = settled_free();
        let page = a.alloc_pages(GFP_KERNEL, 0).ok_or("alloc failed")?;
        a.get_page(page);
        kassert_eq!(page.refcount(), 2);
        a.put_page(page).map_err(|e| format!("{e}"))?;
        kassert_eq!(page.refcount(), 1);
        kassert!(!page.test_flag(PageFlags::BUDDY));
        a.put_page(page).map_err(|e| format!("{e}"))?;
        kassert_eq!(settled_free(), before);
        Ok(())
    }

    fn double_free_is_caught_and_harmless() -> TestResult {
        let a = allocator();
        let page = a.alloc_pages(GFP_KERNEL, 2).ok_or("alloc failed")?;
        a.free_pages(page, 2).map_err(|e| format!("first free: {e}"))?;
        let before = settled_free();
        let second = a.free_pages(page, 2);
        kassert!(second.is_err(), "double free was accepted");
        kassert_eq!(settled_free(), before);
        check_invariants()
    }

    fn wrong_order_free_is_caught() -> TestResult {
        let a = allocator();
        let page = a.alloc_pages(GFP_KERNEL | Gfp::COMP, 3).ok_or("alloc failed")?;
        let bad = a.free_pages(page, 2);
        kassert!(bad.is_err(), "freeing an order-3 compound page as order 2 was accepted");
        check_invariants()
    }

    fn invalid_requests_are_errors() -> TestResult {
        let a = allocator();
        let before = settled_free();
        let both = a.try_alloc_pages(Gfp::MOVABLE | Gfp::RECLAIMABLE | GFP_KERNEL, 0);
        kassert!(matches!(both, Err(AllocError::Invalid(_))), "MOVABLE|RECLAIMABLE accepted");
        let zones = a.try_alloc_pages(Gfp::DMA | Gfp::DMA32 | GFP_KERNEL, 0);
        kassert!(matches!(zones, Err(AllocError::Invalid(_))), "DMA|DMA32 accepted");
        let order = a.try_alloc_pages(GFP_KERNEL, MAX_PAGE_ORDER + 1);
        kassert!(matches!(order, Err(AllocError::Invalid(_))), "order 11 accepted");
        kassert!(a.free_pages_virt(0x1234, 0).is_err(), "freeing a non-direct-map address was accepted");
        kassert_eq!(settled_free(), before);
        check_invariants()
    }

    fn exhaustion_returns_none_and_everything_comes_back() -> TestResult {
        let a = allocator();
        let before = settled_free();
        for gfp in [GFP_DMA, GFP_DMA32, GFP_KERNEL] {
            let gfp = gfp | Gfp::NOWARN;
            // Reserve bookkeeping first: the heap must not need to grow while memory is gone.
            let mut held: Vec<(u64, u32)> = Vec::with_capacity(8192 + (before >> 9) as usize);
            for order in (0..=MAX_PAGE_ORDER).rev() {
                while held.len() < held.capacity() {
                    match a.alloc_pages(gfp, order) {
                        Some(p) => held.push((a.page_address(p), order)),
                        None => break,
                    }
                }
            }
            let got: u64 = held.iter().map(|&(_, o)| 1u64 << o).sum();
            kassert!(got > 0, "nothing allocated with {}", gfp);
            kassert!(a.alloc_pages(gfp, 0).is_none(), "{} still succeeds after exhaustion", gfp);
            for (addr, order) in held {
                a.free_pages_virt(addr, order).map_err(|e| format!("{e}"))?;
            }
            kassert_eq!(settled_free(), before);
            check_invariants()?;
        }
        Ok(())
    }

    fn heap_grows_from_buddy_pages() -> TestResult {
        let start = crate::heap::usage();
        // More small objects than the 4 MiB boot region holds.
        let boxes: Vec<Box<[u64; 64]>> = (0..12_000u64).map(|i| Box::new([i; 64])).collect();
        let big: Vec<u8> = alloc::vec![7u8; 3 << 20];
        let grown = crate::heap::usage();
        kassert!(grown.regions > start.regions, "heap did not grow: {:?}", grown);
        kassert!(grown.large >= 3 << 20, "large allocation not page-backed: {:?}", grown);
        kassert!(boxes.iter().enumerate().all(|(i, b)| b[63] == i as u64));
        kassert!(big.iter().all(|&b| b == 7));
        drop(big);
        drop(boxes);
        kassert_eq!(crate::heap::usage().large, start.large);
        Ok(())
    }

    fn invariants_hold_after_boot() -> TestResult {
        check_invariants()
    }
}
