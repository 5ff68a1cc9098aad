//! Rule-by-rule tests of the page allocator through its public API, on simulated machines:
//! GFP placement, zeroing, compound pages, reference counts and Linux's non-compound
//! `__free_pages` rule, every bad-page reason, OOM, impossible requests, watermark,
//! lowmem_reserve and pcp arithmetic on real zones, ALLOC_NOFRAGMENT zone spreading,
//! watermark boosting, the views. (Rules that need the zone lock, like the claim
//! threshold, are unit tests next to the code: `buddy::tests`, `page_alloc::tests`.)

use crate::alloc_common;

use alloc_common::*;
use zonebuddy::model::memmap::{FirmwareRange, RangeKind};
use zonebuddy::model::mm_init::ModelParams;
use zonebuddy::model::mmzone::{
    MAX_PAGE_ORDER, Migratetype, PAGE_SIZE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
};
use zonebuddy::model::page::{Page, PageFlags};
use zonebuddy::page_alloc::AllocError;
use zonebuddy::page_alloc::bad_page::{BadPageReason, PageChecks};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::page_alloc::pcp::{zone_batchsize, zone_highsize};
use zonebuddy::port::platform::Platform;
use zonebuddy::port::sim::{SimAllocator, qemu_e820};
use zonebuddy::report::vmstat::VmEvent;

fn check(a: &SimAllocator) {
    if let Err(v) = zonebuddy::report::debug::check(a) {
        panic!("{v}");
    }
}

fn pfn(a: &SimAllocator, p: &Page) -> u64 {
    a.page_to_pfn(p)
}

/// Every free page accounted for after a full drain.
fn all_free(a: &SimAllocator, leaked: u64) {
    a.drain_all_pages();
    assert_eq!(a.nr_pcp_pages(), 0);
    assert_eq!(a.nr_free_pages() + leaked, a.totalram_pages());
    check(a);
}

#[test]
fn gfp_dma_and_dma32_land_in_their_zones() {
    let a = machine_zoned(1);
    for _ in 0..200 {
        let p = a.alloc_pages(GFP_KERNEL | Gfp::DMA, 0).unwrap();
        assert_eq!(p.zone_type(), Some(ZoneType::Dma));
        assert!(pfn(&a, p) < 4096);
        let q = a.alloc_pages(GFP_KERNEL | Gfp::DMA32, 2).unwrap();
        assert_eq!(
            q.zone_type(),
            Some(ZoneType::Dma32),
            "DMA32 preferred over DMA"
        );
        assert!(pfn(&a, q) < 1 << 20);
        let n = a.alloc_pages(GFP_KERNEL, 0).unwrap();
        assert_eq!(n.zone_type(), Some(ZoneType::Normal));
        let m = a.alloc_pages(GFP_HIGHUSER_MOVABLE, 0).unwrap();
        assert_eq!(m.zone_type(), Some(ZoneType::Movable));
        let k = a.alloc_pages(GFP_KERNEL | Gfp::MOVABLE, 0).unwrap();
        assert_eq!(
            k.zone_type(),
            Some(ZoneType::Normal),
            "no __GFP_HIGHMEM: not ZONE_MOVABLE"
        );
        for (p, o) in [(p, 0), (q, 2), (n, 0), (m, 0), (k, 0)] {
            a.free_pages(p, o).unwrap();
        }
    }
    all_free(&a, 0);
    // The zonelist: Movable, Normal, DMA32, DMA.
    let order: Vec<_> = a.zonelist_order(0).collect();
    assert_eq!(
        order,
        [
            (0, ZoneType::Movable),
            (0, ZoneType::Normal),
            (0, ZoneType::Dma32),
            (0, ZoneType::Dma)
        ]
    );
    // GFP_DMA on a machine whose DMA zone is exhausted fails rather than using DMA32.
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::DMA | Gfp::NOWARN, 0) {
        assert!(pfn(&a, p) < 4096);
        held.push(p);
    }
    assert!(!held.is_empty());
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    all_free(&a, 0);
}

#[test]
fn zeroing_and_addresses() {
    let a = machine_small(1);
    let p = a.alloc_page(GFP_KERNEL).unwrap();
    let va = a.page_address(p);
    assert_eq!(va, a.platform().phys_to_virt(pfn(&a, p) * PAGE_SIZE) as u64);
    // SAFETY: the page is ours.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0xa5, PAGE_SIZE as usize) };
    assert!(std::ptr::eq(a.virt_to_page(va).unwrap(), p));
    a.free_pages_virt(va, 0).unwrap();
    // The same page comes back first (pcp lists are LIFO), zeroed this time.
    let z = a.get_zeroed_page(GFP_KERNEL).unwrap();
    assert_eq!(z, va, "pcp hands back the hottest page");
    // SAFETY: ours again.
    let bytes = unsafe { core::slice::from_raw_parts(z as *const u8, PAGE_SIZE as usize) };
    assert!(bytes.iter().all(|&b| b == 0));
    // Higher orders are zeroed whole.
    let big = a.get_free_pages(GFP_KERNEL | Gfp::ZERO, 4).unwrap();
    // SAFETY: ours.
    let bytes = unsafe { core::slice::from_raw_parts(big as *const u8, (PAGE_SIZE << 4) as usize) };
    assert!(bytes.iter().all(|&b| b == 0));
    a.free_pages_virt(big, 4).unwrap();
    a.free_pages_virt(z, 0).unwrap();
    // free_pages(0) is a no-op, as in Linux.
    a.free_pages_virt(0, 3).unwrap();
    // Not a page address: refused.
    assert_eq!(
        a.free_pages_virt(z + 8, 0).unwrap_err().reason,
        BadPageReason::UnknownPfn
    );
    all_free(&a, 0);
}

/// An order-`order` block (its pfn) whose buddy is allocated too (returned to be freed by
/// the caller, `None` at MAX_PAGE_ORDER, which has no buddy): freeing the block then cannot
/// merge it, so it stays a free block of exactly this order until it is allocated again.
fn block_with_held_buddy(a: &SimAllocator, gfp: Gfp, order: u32) -> (u64, Option<&Page>) {
    let mut held: Vec<&Page> = Vec::new();
    loop {
        let p = a.alloc_pages(gfp, order).expect("memory for the pair");
        if order == MAX_PAGE_ORDER {
            return (pfn(a, p), None);
        }
        let buddy = pfn(a, p) ^ (1 << order);
        if let Some(i) = held.iter().position(|q| pfn(a, q) == buddy) {
            let b = held.swap_remove(i);
            for q in held {
                a.free_pages(q, order).unwrap();
            }
            return (pfn(a, p), Some(b));
        }
        assert!(
            held.len() < 64,
            "no two buddies among 64 order-{order} blocks"
        );
        held.push(p);
    }
}

/// __GFP_ZERO clears the very block that was dirtied, at every order: the simulated RAM,
/// like QEMU's, starts zeroed, so only a block known to be dirty proves the clearing.
#[test]
fn gfp_zero_clears_the_dirtied_block_at_every_order() {
    let a = machine_small(1);
    for gfp in [GFP_KERNEL, GFP_HIGHUSER_MOVABLE] {
        for order in 0..=MAX_PAGE_ORDER {
            let (dirty, buddy) = block_with_held_buddy(&a, gfp, order);
            let len = (PAGE_SIZE << order) as usize;
            let va = a.page_address(a.pfn_to_page(dirty).unwrap());
            // SAFETY: the block is ours until the free just below.
            unsafe { core::ptr::write_bytes(va as *mut u8, 0xa5, len) };
            a.free_pages_virt(va, order).unwrap();
            // One CPU and no merging: the block comes back first from the pcp list (LIFO)
            // or the head of its free list, or after a few others a drain put before it.
            let mut taken = Vec::new();
            let back = loop {
                let p = a.alloc_pages(gfp | Gfp::ZERO, order).unwrap();
                taken.push(p);
                // SAFETY: ours until freed below.
                let bytes =
                    unsafe { core::slice::from_raw_parts(a.page_address(p) as *const u8, len) };
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "{gfp} order {order}: __GFP_ZERO block at pfn {:#x} not zeroed (the dirtied one: {})",
                    pfn(&a, p),
                    pfn(&a, p) == dirty
                );
                if pfn(&a, p) == dirty {
                    break taken.len();
                }
                assert!(
                    taken.len() < 8,
                    "{gfp} order {order}: the dirtied block did not come back"
                );
            };
            assert!(
                back <= 2,
                "{gfp} order {order}: came back after {back} allocations"
            );
            for p in taken.into_iter().chain(buddy) {
                a.free_pages(p, order).unwrap();
            }
        }
    }
    all_free(&a, 0);
}

#[test]
fn compound_pages() {
    let a = machine_small(1);
    for order in 1..=MAX_PAGE_ORDER {
        let head = a.alloc_pages(GFP_KERNEL | Gfp::COMP, order).unwrap();
        let h = pfn(&a, head);
        assert!(head.is_head());
        assert_eq!(head.refcount(), 1);
        let first = a.pfn_to_page(h + 1).unwrap();
        assert_eq!(
            first.order_field(),
            order,
            "compound order lives in the first tail"
        );
        for i in 1..(1u64 << order) {
            let t = a.pfn_to_page(h + i).unwrap();
            assert!(t.is_tail());
            assert!(std::ptr::eq(t.compound_head(), head));
            assert_eq!(t.refcount(), 0);
        }
        // References through a tail go to the head; the last put through a tail frees the
        // whole compound page.
        let last = a.pfn_to_page(h + (1 << order) - 1).unwrap();
        a.get_page(last);
        assert_eq!(head.refcount(), 2);
        a.put_page(last).unwrap();
        assert_eq!(head.refcount(), 1);
        // A tail cannot be freed on its own.
        assert_eq!(
            a.free_pages(last, 0).unwrap_err().reason,
            BadPageReason::TailPage
        );
        a.put_page(last).unwrap();
        assert!(!head.is_head());
        assert!(!last.is_tail());
        check(&a);
    }
    all_free(&a, 0);
}

/// State a user leaves on a page that the free-time check does not refuse (page-cache
/// flags, the index) is wiped by the free: the next allocation of the page, from the pcp
/// list or the buddy lists, at order 0 or a pcp high order, hands it out clean rather than
/// reporting it as a bad page.
#[test]
fn free_wipes_the_state_the_check_allows() {
    let a = machine_big(256, 1);
    let dirty = PageFlags::REFERENCED | PageFlags::UPTODATE | PageFlags::DIRTY;
    for order in [0, 3, PAGEBLOCK_ORDER] {
        for drain in [false, true] {
            let p = a.alloc_pages(GFP_KERNEL, order).unwrap();
            let at = pfn(&a, p);
            p.set_flag(dirty);
            p.set_index(0x1234);
            a.free_pages(p, order).unwrap();
            if drain {
                a.drain_all_pages();
            }
            // A pcp hit hands back the page just freed; after a drain it is back in the
            // buddy lists, where allocating everything reaches it.
            let mut held = Vec::new();
            while let Some(q) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, order) {
                held.push(q);
                if pfn(&a, q) == at {
                    break;
                }
            }
            let q = held.last().copied().unwrap();
            assert_eq!(
                pfn(&a, q),
                at,
                "order {order}, drain {drain}: page found again"
            );
            assert!(
                (q.flags() & dirty).is_empty(),
                "order {order}, drain {drain}: flags wiped"
            );
            assert_eq!(q.index(), 0, "order {order}, drain {drain}: index wiped");
            for q in held {
                a.free_pages(q, order).unwrap();
            }
        }
    }
    assert_eq!(a.vm_event(VmEvent::PgfreeRejected), 0);
    all_free(&a, 0);
}

#[test]
fn non_compound_free_pages_keeps_the_first_page() {
    let a = machine_small(1);
    a.drain_all_pages();
    let free0 = a.nr_free_pages() + a.nr_pcp_pages();
    let p = a.alloc_pages(GFP_KERNEL, 3).unwrap();
    let h = pfn(&a, p);
    assert_eq!(a.nr_free_pages() + a.nr_pcp_pages(), free0 - 8);
    a.get_page(p);
    assert_eq!(p.refcount(), 2);
    // Not the last reference: the other holder keeps page 0; pages 4-7 (order 2), 2-3
    // (order 1) and 1 (order 0) are freed now.
    a.free_pages(p, 3).unwrap();
    assert_eq!(p.refcount(), 1);
    assert_eq!(a.nr_free_pages() + a.nr_pcp_pages(), free0 - 1);
    for i in 1..8 {
        let t = a.pfn_to_page(h + i).unwrap();
        assert_eq!(t.refcount(), 0, "tail {i} freed");
    }
    check(&a);
    // What is left is an order-0 page: freeing it as order 3 is refused...
    let e = a.free_pages(p, 3).unwrap_err();
    assert_eq!(
        e.reason,
        BadPageReason::WrongOrder {
            freed: 3,
            allocated: 0
        }
    );
    // ... as order 0 it is freed.
    a.free_pages(p, 0).unwrap();
    assert_eq!(a.nr_free_pages() + a.nr_pcp_pages(), free0);
    // put_page on a whole non-compound block frees it at its allocation order.
    let q = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    a.put_page(q).unwrap();
    assert_eq!(a.nr_free_pages() + a.nr_pcp_pages(), free0);
    all_free(&a, 0);
}

#[test]
fn every_bad_page_reason() {
    let a = machine_small(1);
    let rejected = || a.vm_event(VmEvent::PgfreeRejected);
    let mut leaked = 0;

    // Double free: nothing changes the second time.
    let p = a.alloc_page(GFP_KERNEL).unwrap();
    a.free_pages(p, 0).unwrap();
    let before = (a.nr_free_pages(), a.nr_pcp_pages(), rejected());
    let e = a.free_pages(p, 0).unwrap_err();
    assert_eq!(e.reason, BadPageReason::DoubleFree);
    assert_eq!(
        e.to_string(),
        format!(
            "bad page pfn:{:#x}: double free: the page is already free",
            pfn(&a, p)
        )
    );
    assert_eq!(
        (a.nr_free_pages(), a.nr_pcp_pages(), rejected()),
        (before.0, before.1, before.2 + 1)
    );
    assert_eq!(a.put_page(p).unwrap_err().reason, BadPageReason::DoubleFree);
    // Double free of a buddy page (after a drain the page is PG_buddy or inside a block).
    a.drain_all_pages();
    assert_eq!(
        a.free_pages(p, 0).unwrap_err().reason,
        BadPageReason::DoubleFree
    );
    check(&a);

    // Wrong order, both ways, and a misaligned order: the page is untouched and can still
    // be freed correctly.
    let q = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    assert_eq!(
        a.free_pages(q, 1).unwrap_err().reason,
        BadPageReason::WrongOrder {
            freed: 1,
            allocated: 2
        }
    );
    let r = a.alloc_pages(GFP_KERNEL, 0).unwrap();
    let e = a.free_pages(r, MAX_PAGE_ORDER).unwrap_err();
    assert!(matches!(
        e.reason,
        BadPageReason::Misaligned { .. } | BadPageReason::WrongOrder { .. }
    ));
    assert!(e.page_untouched());
    // A page at an odd pfn freed at order 1: misaligned, which the check tells before the
    // wrong order (the only way to see the alignment check on its own).
    let mut held = Vec::new();
    let odd = loop {
        let p = a.alloc_pages(GFP_KERNEL, 0).unwrap();
        if a.page_to_pfn(p) % 2 == 1 {
            break p;
        }
        held.push(p);
    };
    let e = a.free_pages(odd, 1).unwrap_err();
    assert_eq!(e.reason, BadPageReason::Misaligned { order: 1 });
    assert!(e.page_untouched());
    a.free_pages(odd, 0).unwrap();
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    assert_eq!(
        a.free_pages(r, MAX_PAGE_ORDER + 1).unwrap_err().reason,
        BadPageReason::OrderTooLarge {
            order: MAX_PAGE_ORDER + 1
        }
    );
    assert_eq!(q.refcount(), 1);
    a.free_pages(q, 2).unwrap();
    a.free_pages(r, 0).unwrap();
    check(&a);

    // Reserved frame and a page that is not ours.
    assert_eq!(
        a.free_pages(a.pfn_to_page(0).unwrap(), 0)
            .unwrap_err()
            .reason,
        BadPageReason::Reserved
    );
    let fake = Page::new(0);
    assert_eq!(
        a.free_pages(&fake, 0).unwrap_err().reason,
        BadPageReason::UnknownPfn
    );
    assert_eq!(
        a.put_page(&fake).unwrap_err().reason,
        BadPageReason::UnknownPfn
    );

    // Bad states at the last put: reported with Linux's reason strings, counted, and taken
    // out of circulation.
    type Spoil = fn(&Page);
    let cases: [(Spoil, BadPageReason, &str); 5] = [
        (
            |p| p.set_mapcount(1),
            BadPageReason::NonzeroMapcount,
            "nonzero mapcount",
        ),
        (
            |p| p.set_mapping(0x2000 as *const (), 0),
            BadPageReason::NonNullMapping,
            "non-NULL mapping",
        ),
        (
            |p| p.set_private(3),
            BadPageReason::NonzeroPrivate,
            "nonzero private",
        ),
        (
            |p| p.set_flag(PageFlags::LOCKED),
            BadPageReason::FlagsCheckAtFree(PageFlags::LOCKED),
            "PAGE_FLAGS_CHECK_AT_FREE flag(s) set",
        ),
        (
            |p| p.set_flag(PageFlags::WRITEBACK),
            BadPageReason::FlagsCheckAtFree(PageFlags::WRITEBACK),
            "PAGE_FLAGS_CHECK_AT_FREE flag(s) set",
        ),
    ];
    for (spoil, reason, text) in cases {
        let p = a.alloc_page(GFP_KERNEL).unwrap();
        spoil(p);
        let before = (a.nr_free_pages(), a.nr_pcp_pages(), rejected());
        let e = a.free_pages(p, 0).unwrap_err();
        assert_eq!(e.reason, reason);
        assert_eq!(e.reason.to_string(), text);
        assert!(!e.page_untouched());
        assert_eq!(
            (a.nr_free_pages(), a.nr_pcp_pages(), rejected()),
            (before.0, before.1, before.2 + 1)
        );
        leaked += 1;
        check(&a);
    }
    // Nonzero refcount: somebody still holds a tail of a non-compound block. Tails are
    // read at free only with full page checks.
    a.set_page_checks(PageChecks::Full);
    let b = a.alloc_pages(GFP_KERNEL, 1).unwrap();
    let tail = a.pfn_to_page(pfn(&a, b) + 1).unwrap();
    tail.set_refcount(1);
    let e = a.free_pages(b, 1).unwrap_err();
    assert_eq!(e.reason, BadPageReason::NonzeroRefcount);
    assert_eq!(e.pfn, Some(pfn(&a, b) + 1));
    leaked += 2;
    check(&a);
    all_free(&a, leaked);
}

#[test]
fn page_checks_head_by_default_full_when_switched_on() {
    let a = machine_small(1);
    let rejected = || a.vm_event(VmEvent::PgfreeRejected);
    let mut leaked = 0;
    assert_eq!(a.page_checks(), PageChecks::Head);

    // Head (the default): the head of a multi-page block is checked at free...
    let b = a.alloc_pages(GFP_KERNEL, PAGEBLOCK_ORDER).unwrap();
    b.set_mapping(0x3000 as *const (), 0);
    let e = a.free_pages(b, PAGEBLOCK_ORDER).unwrap_err();
    assert_eq!(e.reason, BadPageReason::NonNullMapping);
    assert_eq!(e.pfn, Some(pfn(&a, b)));
    leaked += 1 << PAGEBLOCK_ORDER;
    // ... and so is every page of a compound page (the allocator wrote its tails).
    let c = a.alloc_pages(GFP_KERNEL | Gfp::COMP, 3).unwrap();
    let ct = a.pfn_to_page(pfn(&a, c) + 5).unwrap();
    ct.set_private(9);
    let e = a.free_pages(c, 3).unwrap_err();
    assert_eq!(e.reason, BadPageReason::NonzeroPrivate);
    assert_eq!(e.pfn, Some(pfn(&a, c) + 5));
    leaked += 8;
    // A compound tail that lost its head is caught too.
    let c = a.alloc_pages(GFP_KERNEL | Gfp::COMP, 2).unwrap();
    a.pfn_to_page(pfn(&a, c) + 2).unwrap().clear_compound_head();
    let e = a.free_pages(c, 2).unwrap_err();
    assert_eq!(e.reason, BadPageReason::CorruptCompound);
    assert_eq!(e.pfn, Some(pfn(&a, c) + 2));
    leaked += 4;
    // So is a compound head whose first tail no longer records the order.
    let c = a.alloc_pages(GFP_KERNEL | Gfp::COMP, 3).unwrap();
    a.pfn_to_page(pfn(&a, c) + 1).unwrap().set_order_field(2);
    let e = a.free_pages(c, 3).unwrap_err();
    assert_eq!(e.reason, BadPageReason::CorruptCompound);
    assert_eq!(e.pfn, Some(pfn(&a, c)));
    leaked += 8;
    // A page dirtied while it sat on a free list (here this CPU's pcp list, last in first
    // out) is not handed out: the allocation checks the head and takes another page.
    let p = a.alloc_pages(GFP_KERNEL, 0).unwrap();
    a.free_pages(p, 0).unwrap();
    p.set_mapcount(1);
    let q = a.alloc_pages(GFP_KERNEL, 0).unwrap();
    assert!(
        !std::ptr::eq(p, q),
        "a page in use on a free list was handed out"
    );
    a.free_pages(q, 0).unwrap();
    leaked += 1;
    // The same for the head of a multi-page block, at the default checks.
    let b = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    a.free_pages(b, 2).unwrap();
    b.set_mapping(0x5000 as *const (), 0);
    let q = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    assert!(
        !std::ptr::eq(b, q),
        "a block in use on a free list was handed out"
    );
    a.free_pages(q, 2).unwrap();
    leaked += 4;
    // A tail of a non-compound block is not read at free: the block goes back whole, and
    // comes back whole (the pcp list is last-in first-out) with the dirty tail unseen. The
    // dirty descriptor is caught as soon as it heads a block of its own.
    let b = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    let h = pfn(&a, b);
    a.pfn_to_page(h + 1).unwrap().set_mapcount(1);
    let before = rejected();
    a.free_pages(b, 2).unwrap();
    assert_eq!(rejected(), before);
    let again = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    assert!(std::ptr::eq(again, b));
    a.get_page(b);
    // Not the last reference: pages 2-3 and 1 are freed now, page 1 on its own.
    let e = a.free_pages(b, 2).unwrap_err();
    assert_eq!(e.reason, BadPageReason::NonzeroMapcount);
    assert_eq!(e.pfn, Some(h + 1));
    a.free_pages(b, 0).unwrap();
    leaked += 1;
    all_free(&a, leaked);

    // Full: the same dirty tail is caught at free, the whole block withheld.
    a.set_page_checks(PageChecks::Full);
    assert_eq!(a.page_checks(), PageChecks::Full);
    let b = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    let tail = a.pfn_to_page(pfn(&a, b) + 3).unwrap();
    tail.set_mapcount(1);
    let e = a.free_pages(b, 2).unwrap_err();
    assert_eq!(e.reason, BadPageReason::NonzeroMapcount);
    assert_eq!(e.pfn, Some(pfn(&a, b) + 3));
    leaked += 4;
    // A block freed under head checks with a dirty tail is caught when it is handed out
    // whole under full checks.
    a.set_page_checks(PageChecks::Head);
    let b = a.alloc_pages(GFP_KERNEL, MAX_PAGE_ORDER).unwrap();
    let h = pfn(&a, b);
    let tail = a.pfn_to_page(h + 100).unwrap();
    tail.set_lru();
    a.free_pages(b, MAX_PAGE_ORDER).unwrap();
    a.set_page_checks(PageChecks::Full);
    // The freed block is first on its list: the next request of its order and type takes
    // it, finds the dirty tail, drops the block and takes another.
    if let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, MAX_PAGE_ORDER) {
        let q = pfn(&a, p);
        assert!(!(q..q + (1 << MAX_PAGE_ORDER)).contains(&(h + 100)));
        a.free_pages(p, MAX_PAGE_ORDER).unwrap();
    }
    leaked += 1 << MAX_PAGE_ORDER;
    all_free(&a, leaked);
}

#[test]
fn oom_is_none_and_counted() {
    let a = machine_small(1);
    let fails = a.vm_event(VmEvent::PgallocFail);
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, MAX_PAGE_ORDER) {
        held.push((p, MAX_PAGE_ORDER));
    }
    assert_eq!(a.vm_event(VmEvent::PgallocFail), fails + 1);
    assert_oom_justified(&a, GFP_KERNEL, MAX_PAGE_ORDER);
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
        held.push((p, 0));
    }
    assert_eq!(a.vm_event(VmEvent::PgallocFail), fails + 2);
    assert_oom_justified(&a, GFP_KERNEL, 0);
    assert_eq!(
        a.try_alloc_pages(GFP_KERNEL, 0).unwrap_err(),
        AllocError::NoMemory
    );
    // The stall was counted: GFP_KERNEL may reclaim.
    assert!(a.vm_event(VmEvent::AllocstallNormal) > 0);
    // GFP_ATOMIC digs deeper into the reserve than GFP_KERNEL could.
    let atomic = a.alloc_pages(GFP_ATOMIC, 0).expect("atomic reserve");
    held.push((atomic, 0));
    check(&a);
    for (p, o) in held {
        a.free_pages(p, o).unwrap();
    }
    all_free(&a, 0);
    // __GFP_NOFAIL at OOM: bounded retries, then a failure (no OOM killer here).
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_KERNEL | Gfp::NOWARN, 0) {
        held.push(p);
    }
    let nofail = a.alloc_pages(GFP_KERNEL | Gfp::NOFAIL, 0);
    if let Some(p) = nofail {
        held.push(p);
    }
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    all_free(&a, 0);
}

#[test]
fn invalid_requests_are_errors_and_change_nothing() {
    let a = machine_small(1);
    let mut text_before = String::new();
    a.write_buddyinfo(&mut text_before).unwrap();
    let before = (a.nr_free_pages(), a.nr_pcp_pages());
    let bad = [
        (GFP_KERNEL | Gfp::DMA | Gfp::DMA32, 0),
        (GFP_KERNEL | Gfp::MOVABLE | Gfp::RECLAIMABLE, 0),
        (GFP_KERNEL, 11),
        (GFP_KERNEL, u32::MAX),
        (GFP_KERNEL | Gfp::NOFAIL, 2),
        (GFP_NOWAIT | Gfp::NOFAIL, 0),
        (Gfp::from_bits_retain(1 << 30), 0),
    ];
    for (i, (gfp, order)) in bad.into_iter().enumerate() {
        match a.try_alloc_pages(gfp, order) {
            Err(AllocError::Invalid(e)) => assert_eq!(Err(e), validate(gfp, order).map(|_| ())),
            other => panic!("{gfp} order {order}: {other:?}"),
        }
        assert!(a.alloc_pages(gfp, order).is_none());
        assert_eq!(a.get_free_pages(gfp, order), None);
        assert_eq!(a.vm_event(VmEvent::PgallocInvalid), 3 * (i as u64 + 1));
    }
    let mut text_after = String::new();
    a.write_buddyinfo(&mut text_after).unwrap();
    assert_eq!(text_before, text_after);
    assert_eq!((a.nr_free_pages(), a.nr_pcp_pages()), before);
    assert_eq!(a.vm_event(VmEvent::PgallocFail), 0);
    check(&a);
}

/// Linux's formulas, computed here independently of `zonebuddy::page_alloc::watermark`.
#[test]
fn watermarks_and_lowmem_reserve_on_real_zones() {
    let a = machine_zoned(2);
    let managed: Vec<u64> = ZoneType::ALL
        .iter()
        .map(|&z| a.zone_of(0, z).unwrap().managed_pages())
        .collect();
    let lowmem: u64 = managed[..3].iter().sum();
    let isqrt = |x: u64| (x as f64).sqrt() as u64;
    let mfk = isqrt(lowmem * 4 * 16).clamp(128, 262_144);
    assert_eq!(a.sysctl().min_free_kbytes, mfk);
    let expect = |mfk: u64, scale: u64| -> Vec<(u64, u64, u64)> {
        let pages_min = mfk / 4;
        ZoneType::ALL
            .iter()
            .map(|&z| {
                let m = managed[z.index()];
                let tmp = pages_min * m / lowmem;
                let min = if z == ZoneType::Movable {
                    (m / 1024).clamp(32, 128)
                } else {
                    tmp
                };
                let gap = (tmp / 4).max(m * scale / 10_000);
                (min, min + gap, min + 2 * gap)
            })
            .collect()
    };
    let actual = || -> Vec<(u64, u64, u64)> {
        ZoneType::ALL
            .iter()
            .map(|&z| {
                let w = a.zone_of(0, z).unwrap().watermarks();
                (w.min, w.low, w.high)
            })
            .collect()
    };
    assert_eq!(actual(), expect(mfk, 10));
    // lowmem_reserve[j] of zone i = managed(i+1..=j) / ratio[i].
    let ratio = [256u64, 256, 32, 0];
    for i in 0..4 {
        let r = a.zone_of(0, ZoneType::ALL[i]).unwrap().lowmem_reserve();
        for j in 0..4 {
            let want = if j <= i || ratio[i] == 0 || managed[i] == 0 {
                0
            } else {
                managed[i + 1..=j].iter().sum::<u64>() / ratio[i]
            };
            assert_eq!(r[j], want, "zone {i} protection towards {j}");
        }
    }
    // Runtime changes recompute.
    a.set_min_free_kbytes(8192).unwrap();
    a.set_watermark_scale_factor(200).unwrap();
    assert_eq!(actual(), expect(8192, 200));
    a.set_lowmem_reserve_ratio([32, 32, 8, 0]).unwrap();
    let r = a.zone_of(0, ZoneType::Dma32).unwrap().lowmem_reserve();
    assert_eq!(r[2], managed[2] / 32);
    assert!(a.set_watermark_scale_factor(0).is_err());
    assert!(a.set_percpu_pagelist_high_fraction(3).is_err());
    assert_eq!(
        a.sysctl().watermark_scale_factor,
        200,
        "a refused value changes nothing"
    );
    // The user's min_free_kbytes survives a recomputation from the memory size.
    a.init_per_zone_wmark_min();
    assert_eq!(a.sysctl().min_free_kbytes, 8192);
    check(&a);
}

#[test]
fn pcp_batch_and_high_for_several_zone_sizes() {
    for (map, cpus) in [
        (qemu_e820(64 * MIB), 1),
        (qemu_e820(512 * MIB), 2),
        (qemu_e820(2 * GIB), 4),
        (zoned_map(1024), 3),
    ] {
        let a = SimAllocator::build(&map, &[], &ModelParams::default(), cpus).unwrap();
        for zt in ZoneType::ALL {
            let z = a.zone_of(0, zt).unwrap();
            if !z.managed_zone() {
                continue;
            }
            let m = z.managed_pages();
            // batch = rounddown_pow_of_two(min(m >> 12, 64) * 3 / 2) - 1, at least 1.
            let b0 = (m >> 12).min(64);
            let batch = if b0 <= 1 {
                1
            } else {
                (1u64 << (63 - (b0 + b0 / 2).leading_zeros())) - 1
            };
            let high = (z.watermarks().low_wmark_pages() / cpus as u64).max(4 * batch);
            assert_eq!(batch, zone_batchsize(m));
            assert_eq!(
                high,
                zone_highsize(m, z.watermarks().low_wmark_pages(), cpus as u64, batch, 0)
            );
            assert_eq!(z.pageset_high_batch(), (high, batch), "{} MiB zone", m >> 8);
            for cpu in 0..cpus {
                let ps = a.pageset_snapshot(cpu, 0, zt).unwrap();
                assert_eq!((ps.high, ps.batch, ps.count), (high, batch, 0));
            }
        }
        // percpu_pagelist_high_fraction: managed / fraction / cpus.
        a.set_percpu_pagelist_high_fraction(8).unwrap();
        let z = a.zone_of(0, ZoneType::Dma32).unwrap();
        let (h, b) = z.pageset_high_batch();
        assert_eq!(h, (z.managed_pages() / 8 / cpus as u64).max(4 * b));
    }
}

#[test]
fn pcp_refill_and_drain_move_batches() {
    let a = machine_big(1024, 2);
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    let (high, batch) = z.pageset_high_batch();
    assert_eq!(batch, 63);
    let refills = a.vm_event(VmEvent::PcpRefill);
    let p = a.alloc_page(GFP_KERNEL).unwrap();
    assert_eq!(a.vm_event(VmEvent::PcpRefill), refills + 1);
    assert_eq!(a.vm_event(VmEvent::PcpRefillPages), batch);
    assert_eq!(
        a.pageset_snapshot(0, 0, ZoneType::Normal).unwrap().count,
        batch - 1
    );
    // The rest of the batch is served without another refill.
    let mut held = vec![p];
    for _ in 1..batch {
        held.push(a.alloc_page(GFP_KERNEL).unwrap());
    }
    assert_eq!(a.vm_event(VmEvent::PcpRefill), refills + 1);
    // pages on pcp lists are not free pages.
    let free = a.nr_free_pages();
    for p in held.drain(..) {
        a.free_pages(p, 0).unwrap();
    }
    assert_eq!(
        a.nr_free_pages(),
        free,
        "freed pages sit on the pcp list, not in NR_FREE_PAGES"
    );
    assert_eq!(a.nr_pcp_pages(), batch);
    // Filling up to high drains a batch from the tail, in one zone-lock hold.
    let drains = a.vm_event(VmEvent::PcpDrain);
    let n = high + 10;
    for _ in 0..n {
        held.push(a.alloc_page(GFP_KERNEL).unwrap());
    }
    for p in held.drain(..) {
        a.free_pages(p, 0).unwrap();
        assert!(a.nr_pcp_pages() < high + 1);
    }
    assert!(a.vm_event(VmEvent::PcpDrain) > drains);
    check(&a);
    // Order 9 pages ride on their own pcp list.
    let thp = a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::COMP, 9).unwrap();
    a.free_pages(thp, 9).unwrap();
    check(&a);
    a.drain_local_pages();
    assert_eq!(a.nr_pcp_pages(), 0);
    all_free(&a, 0);
}

/// Refills without frees in between take twice the previous refill each time (Linux's
/// `alloc_factor`, at most `batch << 5`), within the room below `high`; a free halves
/// the factor.
#[test]
fn pcp_refills_scale_up_until_a_free() {
    let a = machine_big(1024, 1);
    let z = a.zone_of(0, ZoneType::Normal).unwrap();
    let (high, batch) = z.pageset_high_batch();
    assert!(
        high >= 8 * batch,
        "high {high} leaves room to scale batch {batch}"
    );
    // The list is empty at each refill, so the room is high - batch.
    let room = (high - batch).max(batch);
    let mut factor = 0u32;
    let expect = |factor: u32| (batch << factor).min(room);
    let mut held = Vec::new();
    // Allocate until a refill happens; its size.
    fn refill<'a>(a: &'a SimAllocator, held: &mut Vec<&'a Page>) -> u64 {
        let (n, pages) = (
            a.vm_event(VmEvent::PcpRefill),
            a.vm_event(VmEvent::PcpRefillPages),
        );
        while a.vm_event(VmEvent::PcpRefill) == n {
            held.push(a.alloc_page(GFP_KERNEL).unwrap());
        }
        a.vm_event(VmEvent::PcpRefillPages) - pages
    }
    let mut sizes = Vec::new();
    for _ in 0..7 {
        let got = refill(&a, &mut held);
        sizes.push(got);
        assert_eq!(got, expect(factor), "refills so far {sizes:?}");
        if batch << factor <= room && factor < 5 {
            factor += 1;
        }
    }
    assert_eq!(sizes[1], 2 * batch, "the second refill doubles: {sizes:?}");
    assert!(sizes.windows(2).all(|w| w[1] >= w[0]), "{sizes:?}");
    // Drain what the last refill left, so the next allocation refills; then one free
    // halves the factor before the refill after it.
    a.drain_local_pages();
    let p = held.pop().unwrap();
    a.free_pages(p, 0).unwrap();
    factor >>= 1;
    held.push(a.alloc_page(GFP_KERNEL).unwrap());
    assert_eq!(
        refill(&a, &mut held),
        expect(factor),
        "after a free, {sizes:?}"
    );
    for p in held {
        a.free_pages(p, 0).unwrap();
    }
    all_free(&a, 0);
}

#[test]
fn remote_drain_from_another_cpu() {
    let a = machine_big(256, 2);
    let plat = a.sim_platform();
    let barrier = std::sync::Barrier::new(2);
    plat.run_on_cpus(|cpu| {
        if cpu == 1 {
            let p = a.alloc_page(GFP_KERNEL).unwrap();
            a.free_pages(p, 0).unwrap();
            assert!(a.pageset_snapshot(1, 0, ZoneType::Normal).unwrap().count > 0);
        }
        barrier.wait();
        if cpu == 0 {
            let remote = a.vm_event(VmEvent::PcpDrainRemote);
            a.drain_all_pages();
            assert_eq!(a.pageset_snapshot(1, 0, ZoneType::Normal).unwrap().count, 0);
            assert_eq!(a.vm_event(VmEvent::PcpDrainRemote), remote + 1);
        }
        barrier.wait();
    });
    all_free(&a, 0);
}

/// ALLOC_NOFRAGMENT: with Normal preferred and fragmented, an unmovable request goes to
/// DMA32 rather than mixing a Normal pageblock.
#[test]
fn nofragment_spreads_to_the_next_zone() {
    let a = machine_big(256, 1);
    // Fill Normal with movable pages, then free every other one: plenty free, but nothing
    // of pageblock order.
    let mut held = Vec::new();
    loop {
        let p = a.alloc_pages(GFP_KERNEL | Gfp::MOVABLE, 0).unwrap();
        if p.zone_type() != Some(ZoneType::Normal) {
            a.free_pages(p, 0).unwrap();
            break;
        }
        held.push(p);
    }
    let mut keep = Vec::new();
    let mut keep_big = Vec::new();
    for (i, p) in held.into_iter().enumerate() {
        if i % 2 == 0 {
            a.free_pages(p, 0).unwrap();
        } else {
            keep.push(p);
        }
    }
    a.drain_all_pages();
    // Take out whatever whole pageblocks are still free in Normal (an unmovable request
    // could claim those without mixing anything).
    loop {
        let s = a.zone_snapshot(0, ZoneType::Normal).unwrap();
        if s.nr_free_per_order()[9..].iter().all(|&n| n == 0) {
            break;
        }
        let p = a.alloc_pages(GFP_KERNEL | Gfp::MOVABLE, 9).unwrap();
        assert_eq!(p.zone_type(), Some(ZoneType::Normal));
        keep_big.push(p);
    }
    let normal = a.zone_snapshot(0, ZoneType::Normal).unwrap();
    assert!(normal.free_pages() > 1000);
    assert_eq!(normal.nr_pageblocks[Migratetype::Unmovable.index()], 0);
    for _ in 0..100 {
        let u = a.alloc_pages(GFP_KERNEL, 0).unwrap();
        assert_eq!(
            u.zone_type(),
            Some(ZoneType::Dma32),
            "unmovable spread to DMA32"
        );
        keep.push(u);
    }
    let normal = a.zone_snapshot(0, ZoneType::Normal).unwrap();
    assert_eq!(
        normal.nr_pageblocks[Migratetype::Unmovable.index()],
        0,
        "Normal stayed unmixed"
    );
    // Movable requests are not affected.
    let m = a.alloc_pages(GFP_KERNEL | Gfp::MOVABLE, 0).unwrap();
    assert_eq!(m.zone_type(), Some(ZoneType::Normal));
    keep.push(m);
    check(&a);
    for p in keep {
        a.free_pages(p, 0).unwrap();
    }
    for p in keep_big {
        a.free_pages(p, 9).unwrap();
    }
    all_free(&a, 0);
}

/// A fragmenting fallback boosts the watermarks; a request allowed to wake kswapd resets
/// the boost on the way out (kswapd has nothing to reclaim here); boosting is off with
/// factor 0 and in zones smaller than four pageblocks.
#[test]
fn watermark_boost_applied_and_skipped() {
    let gfp_no_kswapd = GFP_KERNEL.difference(Gfp::KSWAPD_RECLAIM);
    // An unmovable order-0 request on a fresh small machine (no Normal zone, so no
    // NOFRAGMENT) claims a whole free order-10 block: no boost (not fragmenting).
    let a = machine_small(1);
    let p = a.alloc_pages(gfp_no_kswapd, 0).unwrap();
    let z = a.zone_of(0, p.zone_type().unwrap()).unwrap();
    assert_eq!(z.watermarks().boost, 0);
    assert_eq!(a.vm_event(VmEvent::WatermarkBoost), 0);
    a.free_pages(p, 0).unwrap();
    // Fragment DMA32 with movable pages so that no free block of pageblock order is left,
    // then ask for unmovable memory: the claim is partial and boosts.
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN, 0) {
        held.push(p);
    }
    let mut keep = Vec::new();
    for (i, p) in held.into_iter().enumerate() {
        if i % 4 == 0 {
            a.free_pages(p, 0).unwrap();
        } else {
            keep.push(p);
        }
    }
    a.drain_all_pages();
    let z = a.zone_of(0, ZoneType::Dma32).unwrap();
    let high = z.watermarks().high;
    let mut got = 0;
    let boosts = a.vm_event(VmEvent::WatermarkBoost);
    let z_boost0 = z.watermarks().boost;
    assert_eq!(z_boost0, 0);
    while a.vm_event(VmEvent::WatermarkBoost) == boosts && got < 2000 {
        match a.alloc_pages(gfp_no_kswapd | Gfp::NOWARN | Gfp::DMA32, 0) {
            Some(p) => keep.push(p),
            None => break,
        }
        got += 1;
    }
    assert!(
        a.vm_event(VmEvent::WatermarkBoost) > boosts,
        "fallback boosted"
    );
    let boost = z.watermarks().boost;
    assert_eq!(
        boost,
        PAGEBLOCK_NR_PAGES.min((high * 15_000 / 10_000).max(PAGEBLOCK_NR_PAGES))
    );
    assert!(
        !z.test_flag(zonebuddy::model::zone::ZONE_BOOSTED_WATERMARK),
        "no kswapd wake without __GFP_KSWAPD_RECLAIM"
    );
    // A request that may wake kswapd (and itself falls back) resets the boost.
    let boosts = a.vm_event(VmEvent::WatermarkBoost);
    while a.vm_event(VmEvent::WatermarkBoost) == boosts {
        match a.alloc_pages(GFP_KERNEL | Gfp::NOWARN | Gfp::DMA32, 0) {
            Some(p) => keep.push(p),
            None => break,
        }
    }
    assert_eq!(z.watermarks().boost, 0, "kswapd's pass reset the boost");
    for p in keep {
        a.free_pages(p, 0).unwrap();
    }
    all_free(&a, 0);

    // Factor 0: never boosted.
    let a = machine_small(1);
    a.set_watermark_boost_factor(0).unwrap();
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN, 0) {
        held.push(p);
    }
    for p in held.drain(..).step_by(2) {
        a.free_pages(p, 0).unwrap();
    }
    for _ in 0..200 {
        if let Some(p) = a.alloc_pages(gfp_no_kswapd | Gfp::NOWARN, 0) {
            held.push(p);
        }
    }
    assert!(a.vm_event(VmEvent::PgallocFallback) > 0);
    assert_eq!(a.vm_event(VmEvent::WatermarkBoost), 0);
    assert_eq!(a.zone_of(0, ZoneType::Dma32).unwrap().watermarks().boost, 0);

    // A zone under four pageblocks is never boosted.
    let map = [
        FirmwareRange::new(0x100000, 16 * MIB, RangeKind::Usable),
        FirmwareRange::new(16 * MIB, 16 * MIB + 3 * 2 * MIB, RangeKind::Usable),
    ];
    let a = SimAllocator::build(&map, &[], &ModelParams::default(), 1).unwrap();
    let z = a.zone_of(0, ZoneType::Dma32).unwrap();
    assert!(z.managed_pages() < 4 * PAGEBLOCK_NR_PAGES);
    let mut held = Vec::new();
    while let Some(p) = a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN | Gfp::DMA32, 0) {
        if p.zone_type() == Some(ZoneType::Dma32) {
            held.push(p);
        } else {
            a.free_pages(p, 0).unwrap();
            break;
        }
    }
    for p in held.drain(..).step_by(2) {
        a.free_pages(p, 0).unwrap();
    }
    a.drain_all_pages();
    for _ in 0..50 {
        if let Some(p) = a.alloc_pages(gfp_no_kswapd | Gfp::NOWARN | Gfp::DMA32, 0) {
            held.push(p);
        }
    }
    assert_eq!(z.watermarks().boost, 0);
    check(&a);
}

#[test]
fn views_are_consistent() {
    let a = machine_zoned(2);
    let p = a.alloc_pages(GFP_KERNEL, 3).unwrap();
    let mut buddy = String::new();
    a.write_buddyinfo(&mut buddy).unwrap();
    let lines: Vec<&str> = buddy.lines().collect();
    assert_eq!(lines.len(), 4, "{buddy}");
    assert!(lines[0].starts_with("Node 0, zone      DMA "));
    // buddyinfo's blocks times their sizes are the free pages.
    for (line, zt) in lines.iter().zip(ZoneType::ALL) {
        let counts: Vec<u64> = line
            .split_whitespace()
            .skip(4)
            .map(|x| x.parse().unwrap())
            .collect();
        let pages: u64 = counts.iter().enumerate().map(|(o, n)| n << o).sum();
        assert_eq!(pages, a.zone_of(0, zt).unwrap().nr_free_pages());
    }
    let mut pti = String::new();
    a.write_pagetypeinfo(&mut pti).unwrap();
    assert!(pti.starts_with("Page block order: 9\nPages per block:  512\n\n"));
    let mut zi = String::new();
    a.write_zoneinfo(&mut zi).unwrap();
    assert!(zi.contains("  pagesets\n    cpu: 0\n"));
    assert!(zi.contains("    cpu: 1\n"));
    let mut vm = String::new();
    a.write_vmstat(&mut vm).unwrap();
    let get = |name: &str| -> u64 {
        vm.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(get("nr_free_pages"), a.nr_free_pages());
    assert_eq!(get("pgalloc_normal"), 8);
    let mut mi = String::new();
    a.write_meminfo(&mut mi).unwrap();
    assert!(mi.starts_with(&format!(
        "MemTotal:       {:>8} kB\n",
        a.totalram_pages() * 4
    )));
    let mut ef = String::new();
    a.write_extfrag_index(&mut ef).unwrap();
    assert_eq!(ef.lines().count(), 4);
    let mut ui = String::new();
    a.write_unusable_index(&mut ui).unwrap();
    assert_eq!(ui.lines().count(), 4);
    a.free_pages(p, 3).unwrap();
    all_free(&a, 0);
}

#[test]
fn bulk_allocation_semantics() {
    let a = machine_small(1);
    let mut out: Vec<Option<&Page>> = vec![None; 100];
    let pre = a.alloc_page(GFP_KERNEL).unwrap();
    out[0] = Some(pre);
    out[50] = Some(pre);
    let n = a.alloc_pages_bulk(GFP_KERNEL, 90, &mut out);
    assert_eq!(n, 90);
    assert!(out[90..].iter().all(|p| p.is_none()));
    assert!(std::ptr::eq(out[0].unwrap(), pre) && std::ptr::eq(out[50].unwrap(), pre));
    let mut seen = std::collections::HashSet::new();
    for (i, p) in out.iter().take(90).enumerate() {
        if i == 50 {
            continue;
        }
        assert!(seen.insert(pfn(&a, p.unwrap())), "duplicate page");
    }
    for (i, p) in out.iter().take(90).enumerate() {
        if i != 50 {
            a.free_pages(p.unwrap(), 0).unwrap();
        }
    }
    // Invalid: nothing.
    let mut out2 = [None; 8];
    assert_eq!(
        a.alloc_pages_bulk(GFP_KERNEL | Gfp::DMA | Gfp::DMA32, 8, &mut out2),
        0
    );
    all_free(&a, 0);
}
