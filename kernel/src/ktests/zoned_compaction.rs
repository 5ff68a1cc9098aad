//! Compaction and migration of pages living in ZONE_NORMAL above 4 GiB and in
//! ZONE_MOVABLE (`movablecore=`), on the kernel's real page tables, in bounded time.
//!
//! `ktests::compaction` fills and compacts most of memory, which takes minutes under TCG
//! on the large configurations, so those run without it (`test=-ktests::compaction`);
//! this suite's name avoids that text so it runs there. Each test works on a fixed amount
//! of anon memory in the zone movable allocations land in first (Movable when
//! `movablecore=`/`kernelcore=` made one, else Normal), fragmented by zapping every
//! other page ([`Scenario::build_in_zone`]):
//!
//! - `compaction_moves_pages_within_the_zone`: `compact_node_zone` on that zone moves
//!   pages to other frames of the same zone, every pageblock they leave that nothing
//!   else pins becomes a free order-9 block, every checksum and reverse map holds, and a
//!   write through each page's virtual address lands in the frame the reverse map names;
//! - `migrate_pages_within_the_zone`: `migrate_pages` of every page to targets allocated
//!   in the same zone, with the same checks.
//!
//! On a machine with neither zone (128 MiB, 1 GiB without `movablecore=`) both report
//! themselves skipped.

use alloc::{collections::BTreeSet, format, vec::Vec};
use core::cell::Cell;

use zonebuddy::{
    model::{
        list::PageList,
        mmzone::{
            MAX_PAGE_ORDER, PAGE_SHIFT, PAGE_SIZE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType,
        },
        page::Page,
    },
    movement::migrate::{MigrateMode, MigrateReason},
    page_alloc::gfp::{GFP_HIGHUSER_MOVABLE, Gfp},
    report::vmstat::VmEvent,
};

use crate::{kassert, kassert_eq, ktest, ktest::TestResult, memory::allocator, scenario::Scenario};

/// Anon pages the migration test maps in the zone (8 MiB; half are zapped); the
/// compaction test maps at least this many, and enough to fill a few whole pageblocks.
const PAGES: u64 = 2048;
/// At most this many (128 MiB) for the compaction test.
const MAX_PAGES: u64 = 32768;
/// First frame above 4 GiB.
const PFN_4G: u64 = (4 << 30) >> PAGE_SHIFT;

/// The zone movable allocations land in first, if it is one this suite is about: the
/// highest zone with managed memory, when that is Movable or Normal.
fn zone_under_test() -> Option<ZoneType> {
    let a = allocator();
    [ZoneType::Movable, ZoneType::Normal]
        .into_iter()
        .find(|&zt| {
            a.model()
                .nodes()
                .any(|n| n.zone(zt).populated() && n.zone(zt).managed_zone())
        })
}

fn skip(test: &str) -> TestResult {
    crate::ktest::skip(format!(
        "{test}: no ZONE_NORMAL or ZONE_MOVABLE on this machine"
    ))
}

fn check_invariants() -> TestResult {
    zonebuddy::report::debug::check(allocator()).map_err(|v| format!("invariant violated: {v}"))
}

fn frame_of(s: &Scenario, index: u64) -> Result<u64, &'static str> {
    allocator()
        .anon_region_pfn(s.region, index)
        .map_err(|_| "region handle went stale")?
        .ok_or("a kept page is not mapped")
}

/// Frames of the kept pages, in `s.kept` order.
fn frames(s: &Scenario) -> Result<Vec<u64>, &'static str> {
    s.kept.iter().map(|&i| frame_of(s, i)).collect()
}

/// Every kept page: its frame is in zone `zt` (above 4 GiB for Normal), and after a new
/// version is written through its virtual address, the frame the reverse map names (read
/// through the direct map) holds exactly what the virtual address shows: the page table
/// entry points at that frame, not at a stale copy. Then `Scenario::verify`.
fn verify_frames(s: &Scenario, zt: ZoneType, version: u64) -> TestResult {
    let a = allocator();
    for &index in &s.kept {
        let pfn = frame_of(s, index)?;
        let page = a.pfn_to_page(pfn).ok_or("mapped pfn has no struct page")?;
        kassert_eq!(page.zone_type(), Some(zt));
        kassert!(
            zt != ZoneType::Normal || pfn >= PFN_4G,
            "Normal pfn {:#x} below 4 GiB",
            pfn
        );
        s.write_page(index, version);
        let direct = a.page_address(page);
        for w in 0..PAGE_SIZE / 8 {
            // SAFETY: `s.va(index)` is a mapped page of the scenario's region, and
            // `direct` the direct-map address of a frame of RAM; both are 4 KiB pages
            // and `w * 8` stays inside them. Nothing else writes them meanwhile (the
            // test's CPU owns the scenario; kcompactd is off in test mode).
            let (via_pte, via_frame) = unsafe {
                (
                    ((s.va(index) + w * 8) as *const u64).read_volatile(),
                    ((direct + w * 8) as *const u64).read_volatile(),
                )
            };
            kassert!(
                via_pte == via_frame,
                "index {index}: word {w} reads {via_pte:#x} through the PTE but frame {pfn:#x} holds {via_frame:#x}"
            );
        }
        kassert_eq!(s.verify_page(index), Ok(version));
    }
    let checked = s.verify()?;
    kassert_eq!(checked, s.movable_pages());
    Ok(())
}

/// Pages held while the compaction test maps its pages (32 MiB).
const BALLAST_PAGES: usize = 8192;

/// Up to `n` movable order-0 pages of zone `zt`, allocated without compaction: they come
/// from where the scenario's pages would have come from.
fn take_ballast(zt: ZoneType, n: usize) -> Vec<&'static Page> {
    let a = allocator();
    let gfp = (GFP_HIGHUSER_MOVABLE | Gfp::NOWARN).difference(Gfp::DIRECT_RECLAIM);
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let Some(page) = a.alloc_pages(gfp, 0) else {
            break;
        };
        if page.zone_type() != Some(zt) {
            let _ = a.free_pages(page, 0);
            break;
        }
        held.push(page);
    }
    held
}

/// Free pages in buddy blocks starting in `[start, end)` (the machine is quiet).
fn free_pages_in(start: u64, end: u64) -> u64 {
    let a = allocator();
    a.drain_all_pages();
    let (mut pfn, mut free) = (start, 0);
    while pfn < end {
        match a.pfn_to_page(pfn) {
            Some(p) if p.is_buddy() => {
                free += 1u64 << p.buddy_order();
                pfn += 1u64 << p.buddy_order();
            }
            _ => pfn += 1,
        }
    }
    free
}

/// Is pageblock `block` (its first pfn) inside a free buddy block?
fn pageblock_free(block: u64) -> bool {
    let a = allocator();
    (PAGEBLOCK_ORDER..=MAX_PAGE_ORDER).any(|o| {
        let head = block & !((1u64 << o) - 1);
        a.pfn_to_page(head).is_some_and(|p: &Page| {
            p.is_buddy()
                && p.buddy_order() >= PAGEBLOCK_ORDER
                && head + (1u64 << p.buddy_order()) > block
        })
    })
}

fn pageblocks(pfns: &[u64]) -> BTreeSet<u64> {
    pfns.iter().map(|p| p & !(PAGEBLOCK_NR_PAGES - 1)).collect()
}

/// Pages to map so that, after the free blocks smaller than a pageblock in zone `zt`
/// (which the allocator hands out first: on a fresh 6 GiB machine, one such pageblock
/// per memory section, pinned by a reserved page) are used up, about `whole` pageblocks
/// hold nothing but scenario pages; at least `min`, at most `max`.
fn pages_past_fragments(zt: ZoneType, whole: u64, min: u64, max: u64) -> u64 {
    let a = allocator();
    a.drain_all_pages();
    let mut small = 0;
    for n in a.model().nodes() {
        if let Some(snap) = a.zone_snapshot(n.node_id, zt) {
            for o in 0..PAGEBLOCK_ORDER as usize {
                small += snap.nr_free.iter().map(|t| t[o]).sum::<u64>() << o;
            }
        }
    }
    (small + whole * PAGEBLOCK_NR_PAGES).clamp(min, max)
}

/// Does pageblock `block` hold a page no compaction can move: reserved, or allocated and
/// not anon? (Read without locks: the machine is quiet.)
fn pageblock_pinned(block: u64) -> bool {
    let a = allocator();
    (block..block + PAGEBLOCK_NR_PAGES).any(|pfn| {
        a.pfn_to_page(pfn)
            .is_none_or(|p| p.is_reserved() || (!p.is_buddy() && p.refcount() > 0 && !p.is_anon()))
    })
}

ktest! {
    fn compaction_moves_pages_within_the_zone() -> TestResult {
        let Some(zt) = zone_under_test() else {
            return skip("compaction_moves_pages_within_the_zone");
        };
        let a = allocator();
        let pages = pages_past_fragments(zt, 8, PAGES, MAX_PAGES);
        // Where the pages land depends on what ran before: on a fresh machine at the
        // bottom of the zone, after other suites often at its very top, where compaction
        // (which moves pages up) has nowhere to put them. Pages taken first and freed
        // once the scenario is mapped leave free memory next to it on the side the
        // allocator serves first, so there is room above it either way.
        let ballast = take_ballast(zt, BALLAST_PAGES);
        let built = Scenario::build_in_zone(zt, pages, 0x2013_c0de);
        for &page in &ballast {
            let _ = a.free_pages(page, 0);
        }
        a.drain_all_pages();
        kprintln!(
            "zoned_compaction: mapped {pages} pages in {} with {} pages held meanwhile",
            zt.name(),
            ballast.len()
        );
        let mut s = built?;
        let result = (|| -> TestResult {
            let before = frames(&s)?;
            let nid = a.pfn_to_page(before[0]).map_or(0, |p| p.nid());
            let z = a.model().zone(nid, zt).ok_or("zone vanished")?;
            verify_frames(&s, zt, 0)?;
            let blocks0 = pageblocks(&before);
            kassert!(blocks0.iter().all(|&b| !pageblock_free(b)));
            // The pageblocks compaction can empty into free order-9 blocks.
            let unpinned: Vec<u64> = blocks0.iter().copied().filter(|&b| !pageblock_pinned(b)).collect();
            let top = before.iter().copied().max().unwrap_or(0);
            let free_above = free_pages_in(top + 1, z.zone_end_pfn());
            let migrated0 = a.vm_event(VmEvent::PgmigrateSuccess);
            let stats = a
                .compact_node_zone(nid, zt)
                .ok_or("compact_node_zone refused a populated zone")?;
            let migrated = a.vm_event(VmEvent::PgmigrateSuccess) - migrated0;
            let after = frames(&s)?;
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as u64;
            let blocks1 = pageblocks(&after);
            let emptied = blocks0.iter().filter(|&&b| !blocks1.contains(&b)).count();
            let freed = blocks0.iter().filter(|&&b| pageblock_free(b)).count();
            let left_unfreed: Vec<u64> = unpinned
                .iter()
                .copied()
                .filter(|b| !blocks1.contains(b) && !pageblock_free(*b))
                .collect();
            kprintln!(
                "zoned_compaction: {free_above} free pages above the highest page {top:#x} before compacting; compaction state after: {:?}",
                a.compaction_state(nid, zt)
            );
            kprintln!(
                "zoned_compaction: zone {} node {nid} [{:#x}, {:#x}): {} kept pages in pfns [{:#x}, {:#x}] ({} pageblocks, {} unpinned) -> [{:#x}, {:#x}] ({} pageblocks); {moved} moved, pgmigrate_success +{migrated}; {emptied} pageblocks emptied, {freed} now free order-9; {:?}",
                zt.name(),
                z.zone_start_pfn(),
                z.zone_end_pfn(),
                s.movable_pages(),
                before.iter().min().unwrap_or(&0),
                before.iter().max().unwrap_or(&0),
                blocks0.len(),
                unpinned.len(),
                after.iter().min().unwrap_or(&0),
                after.iter().max().unwrap_or(&0),
                blocks1.len(),
                stats
            );
            verify_frames(&s, zt, 1)?;
            kassert!(moved > 0, "no page of {} moved", zt.name());
            kassert!(moved <= migrated && migrated == stats.migrated, "{} moved, {} migrated, {:?}", moved, migrated, stats);
            kassert!(!unpinned.is_empty(), "the scenario filled no pageblock of its own ({} pages mapped)", pages);
            // Every pageblock the pages left that nothing else pins is a free order-9
            // block now.
            kassert!(
                left_unfreed.is_empty(),
                "pageblocks emptied of movable pages but not free: {:x?}",
                left_unfreed
            );
            // And compaction packs them: the kept pages fit in `need` pageblocks, so up to
            // `unpinned - need` of the unpinned ones can be emptied; at least half of that
            // must be. (Compaction takes targets only from partly used movable pageblocks,
            // never from a free one or one of another migratetype, as in Linux; the
            // scenario's own pageblocks are such targets.) With a regular zap pattern
            // (every odd pfn) this failed after the other suites had run: the free
            // scanner, sampling every 32nd pfn after many empty blocks as Linux's does,
            // saw only kept pages and compaction stopped after 32 pages.
            let need = s.movable_pages().div_ceil(PAGEBLOCK_NR_PAGES) as usize;
            let possible = unpinned.len().saturating_sub(need);
            kassert!(
                freed * 2 >= possible,
                "only {} of the {} pageblocks compaction could empty are free order-9 blocks",
                freed,
                possible
            );
            check_invariants()
        })();
        s.release();
        result
    }

    fn migrate_pages_within_the_zone() -> TestResult {
        let Some(zt) = zone_under_test() else {
            return skip("migrate_pages_within_the_zone");
        };
        let a = allocator();
        let mut s = Scenario::build_in_zone(zt, PAGES, 0x2013_3a9e)?;
        let result = (|| -> TestResult {
            let before = frames(&s)?;
            let mut list = PageList::new();
            for &pfn in &before {
                let page = a.pfn_to_page(pfn).ok_or("mapped pfn has no struct page")?;
                kassert!(a.isolate_migratepage(page, MigrateMode::Sync), "pfn {:#x} not isolated", pfn);
                // SAFETY: just isolated: its list links belong to us; it is a memmap page.
                unsafe { list.push_back(page) };
            }
            let outside = Cell::new(0u64);
            let migrated0 = a.vm_event(VmEvent::PgmigrateSuccess);
            let res = a.migrate_pages(
                &mut list,
                &mut |_src: &Page| {
                    let p = a.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN, 0)?;
                    if p.zone_type() != Some(zt) {
                        outside.set(outside.get() + 1);
                    }
                    Some(p)
                },
                &mut |p: &Page| {
                    let _ = a.free_pages(p, 0);
                },
                MigrateMode::Sync,
                MigrateReason::Syscall,
            );
            let migrated = a.vm_event(VmEvent::PgmigrateSuccess) - migrated0;
            let after = frames(&s)?;
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as u64;
            kprintln!(
                "zoned_compaction: migrate_pages in zone {}: {} pages from pfns [{:#x}, {:#x}] to [{:#x}, {:#x}]; {moved} moved, {} targets outside the zone, {:?}",
                zt.name(),
                before.len(),
                before.iter().min().unwrap_or(&0),
                before.iter().max().unwrap_or(&0),
                after.iter().min().unwrap_or(&0),
                after.iter().max().unwrap_or(&0),
                outside.get(),
                res
            );
            kassert_eq!(res, Ok(0));
            kassert!(list.is_empty());
            kassert_eq!(outside.get(), 0);
            kassert_eq!(moved, s.movable_pages());
            kassert_eq!(migrated, moved);
            verify_frames(&s, zt, 1)?;
            check_invariants()
        })();
        s.release();
        result
    }
}
