//! The memory model against the firmware map this boot actually received.
//!
//! These tests recompute what the model should say from the raw bootloader regions (not
//! from the model's own sanitised map) and compare: zone boundaries, present and managed
//! page counts, the memmap's round trip, reserved flags, pageblock types, overhead.

use alloc::{format, vec::Vec};

use bootloader_api::info::MemoryRegionKind;
use zonebuddy::{
    model::mmzone::{Migratetype, PAGE_SHIFT, PAGEBLOCK_NR_PAGES, ZoneType},
    model::page::PageFlags,
    model::pageblock::get_pageblock_migratetype,
};

use crate::{boot_info, kassert, kassert_eq, ktest, memory::model};

const PAGE: u64 = 1 << PAGE_SHIFT;

/// Frames a PC never counts as RAM, whatever the firmware says (Linux's `trim_bios_range`):
/// frame 0 and the legacy BIOS area 0xa0000-0xfffff, as `[start_pfn, end_pfn)`.
const PC_NOT_RAM: [(u64, u64); 2] = [(0, 1), (0xa0, 0x100)];

/// Page-granular RAM ranges from the raw firmware map: `(start_pfn, end_pfn, usable)`,
/// usable ranges trimmed inward, bootloader ranges outward (they are present RAM), without
/// the frames of [`PC_NOT_RAM`].
fn raw_ram() -> Vec<(u64, u64, bool)> {
    let mut v: Vec<(u64, u64, bool)> = boot_info::facts()
        .regions
        .iter()
        .filter_map(|r| match r.kind {
            MemoryRegionKind::Usable => {
                let (s, e) = (r.start.div_ceil(PAGE), r.end / PAGE);
                (e > s).then_some((s, e, true))
            }
            MemoryRegionKind::Bootloader => {
                let (s, e) = (r.start / PAGE, r.end.div_ceil(PAGE));
                (e > s).then_some((s, e, false))
            }
            _ => None,
        })
        .collect();
    for (hs, he) in PC_NOT_RAM {
        v = v
            .into_iter()
            .flat_map(|(s, e, u)| [(s, e.min(hs), u), (s.max(he), e, u)])
            .filter(|&(s, e, _)| s < e)
            .collect();
    }
    v.sort_unstable();
    v
}

/// Pages of `ranges` inside `[lo, hi)`.
fn overlap(ranges: &[(u64, u64, bool)], lo: u64, hi: u64) -> u64 {
    ranges
        .iter()
        .map(|&(s, e, _)| e.min(hi).saturating_sub(s.max(lo)))
        .sum()
}

/// Is `pfn` reserved by a non-RAM firmware range (which wins over usable on overlap)? E820
/// type 0 names no memory: it never wins over RAM (Linux: the higher type number wins).
fn firmware_reserved(pfn: u64) -> bool {
    let (a, b) = (pfn * PAGE, (pfn + 1) * PAGE);
    boot_info::facts().regions.iter().any(|r| {
        !matches!(
            r.kind,
            MemoryRegionKind::Usable
                | MemoryRegionKind::Bootloader
                | MemoryRegionKind::UnknownBios(0)
        ) && r.start < b
            && r.end > a
    })
}

ktest! {
    fn zones_follow_linux_boundaries() -> TestResult {
        let m = model();
        let node = m.node(0).ok_or("no node 0")?;
        let dma = node.zone(ZoneType::Dma);
        let dma32 = node.zone(ZoneType::Dma32);
        let normal = node.zone(ZoneType::Normal);
        kassert!(dma.zone_end_pfn() <= 4096, "DMA ends at pfn {:#x}", dma.zone_end_pfn());
        if dma32.populated() {
            kassert!(dma32.zone_start_pfn() >= 4096);
            kassert!(dma32.zone_end_pfn() <= 1 << 20, "DMA32 ends at pfn {:#x}", dma32.zone_end_pfn());
        }
        if normal.populated() {
            kassert!(normal.zone_start_pfn() >= 1 << 20);
        }
        // Zones do not overlap and are in order.
        let spans: Vec<(u64, u64)> = node
            .populated_zones()
            .map(|z| (z.zone_start_pfn(), z.zone_end_pfn()))
            .collect();
        for w in spans.windows(2) {
            kassert!(w[0].1 <= w[1].0, "zones overlap: {:?}", spans);
        }
        Ok(())
    }

    fn present_and_managed_match_the_firmware_map() -> TestResult {
        let m = model();
        let ram = raw_ram();
        let usable: Vec<(u64, u64, bool)> = ram.iter().copied().filter(|r| r.2).collect();
        let mut total_managed = 0;
        for z in m.nodes().flat_map(|n| n.node_zones.iter()) {
            let (lo, hi) = (z.zone_start_pfn(), z.zone_end_pfn());
            let present = overlap(&ram, lo, hi);
            // Present counts RAM frames; reserved firmware holes inside RAM ranges are not RAM.
            let holes = (lo..hi).filter(|&p| firmware_reserved(p) && ram.iter().any(|&(s, e, _)| p >= s && p < e)).count() as u64;
            kassert_eq!(z.present_pages(), present - holes);
            kassert!(z.spanned_pages() >= z.present_pages());
            kassert!(z.managed_pages() <= overlap(&usable, lo, hi), "{} manages more than its usable RAM", z.name());
            let handed: u64 = m
                .free_pfn_ranges()
                .filter(|r| r.nid == z.nid && r.zone == z.zone_type)
                .map(|r| r.end_pfn - r.start_pfn)
                .sum();
            kassert_eq!(z.managed_pages(), handed);
            total_managed += z.managed_pages();
        }
        kassert_eq!(total_managed, m.handoff_pages());
        // All usable RAM except what memblock reserved (metadata, trampoline, frame 0, the
        // reserved low range) is handed over: the model may not lose more than its own
        // metadata besides the low range.
        let usable_pages = overlap(&usable, 0, u64::MAX);
        let low_pages = overlap(&usable, 0, m.arch().reserve_low / PAGE);
        let lost = usable_pages - total_managed;
        let allowance = m.metadata_bytes() / PAGE + low_pages + 64;
        kassert!(lost <= allowance, "{} usable pages not managed (metadata {} pages)", lost, m.metadata_bytes() / PAGE);
        Ok(())
    }

    fn memmap_round_trips_and_flags_are_right() -> TestResult {
        let m = model();
        let mut checked = 0u64;
        for &(s, e, usable) in &raw_ram() {
            // Every 61st pfn plus both ends of each range.
            let mut pfn = s;
            while pfn < e {
                kassert!(m.pfn_valid(pfn), "pfn {:#x} in RAM is not valid", pfn);
                let page = m.pfn_to_page(pfn).ok_or_else(|| format!("no page for pfn {pfn:#x}"))?;
                kassert_eq!(m.page_to_pfn(page), pfn);
                let zone = m.page_zone(page).ok_or_else(|| format!("pfn {pfn:#x} has no zone"))?;
                kassert!(zone.zone_spans_pfn(pfn), "pfn {:#x} flagged in {} which does not span it", pfn, zone.name());
                if !usable {
                    kassert!(page.test_flag(PageFlags::RESERVED), "bootloader pfn {:#x} not reserved", pfn);
                }
                checked += 1;
                pfn = if pfn + 61 < e || pfn == e - 1 { pfn + 61 } else { e - 1 };
            }
        }
        // Frame 0 and the trampoline page are reserved; handed-over frames are not.
        if let Some(p) = m.pfn_to_page(0) {
            kassert!(p.test_flag(PageFlags::RESERVED), "frame 0 not reserved");
        }
        let tramp = m.trampoline_phys().ok_or("no trampoline page")?;
        // Below the legacy BIOS area, which is never RAM: conventional memory.
        kassert!(tramp < 0xa0000, "trampoline page at {:#x}", tramp);
        let tp = m.pfn_to_page(tramp >> PAGE_SHIFT).ok_or("no page for the trampoline")?;
        kassert!(tp.test_flag(PageFlags::RESERVED), "trampoline page not reserved");
        for r in m.free_pfn_ranges().take(64) {
            let p = m.pfn_to_page(r.start_pfn).ok_or("handoff pfn without page")?;
            kassert!(!p.test_flag(PageFlags::RESERVED), "free pfn {:#x} reserved", r.start_pfn);
            kassert!(r.start_pfn != tramp >> PAGE_SHIFT && r.start_pfn != 0);
        }
        // Linux x86 keeps the whole first MiB away from the buddy allocator.
        let low_end = m.arch().reserve_low / PAGE;
        kassert_eq!(low_end, 256);
        if let Some(r) = m.free_pfn_ranges().next() {
            kassert!(r.start_pfn >= low_end, "pfn {:#x} below 1 MiB is handed over", r.start_pfn);
        }
        kassert!(checked > 100, "only {} pfns checked", checked);
        Ok(())
    }

    fn pfn_valid_is_false_outside_sections() -> TestResult {
        let m = model();
        let top = raw_ram().iter().map(|r| r.1).max().unwrap_or(0);
        // First pfn of the section after the last RAM section.
        let beyond = (top + (1 << 15)) & !((1 << 15) - 1);
        kassert!(!m.pfn_valid(beyond), "pfn {:#x} past RAM is valid", beyond);
        kassert!(!m.pfn_valid(1 << 34), "pfn 2^34 is valid");
        kassert!(m.pfn_to_page(u64::MAX >> PAGE_SHIFT).is_none());
        Ok(())
    }

    fn every_pageblock_starts_movable() -> TestResult {
        // As in Linux, every pageblock is Movable when the memory model hands over; the page
        // allocator repaints blocks later, so the census was taken at the hand-off.
        let m = model();
        let mut blocks = 0;
        for z in m.nodes().flat_map(|n| n.populated_zones()) {
            let mut pfn = z.zone_start_pfn() & !(PAGEBLOCK_NR_PAGES - 1);
            while pfn < z.zone_end_pfn() {
                if get_pageblock_migratetype(m.sparse(), pfn).is_ok() {
                    blocks += 1;
                }
                pfn += PAGEBLOCK_NR_PAGES;
            }
        }
        let initial = crate::memory::INITIAL_PAGEBLOCKS.get().ok_or("no census at hand-off")?;
        kassert!(blocks > 0);
        // Blocks of boot-declared CMA areas (`cma=`) are painted CMA before the hand-off,
        // and declaring an area allocates its bitmap (GFP_KERNEL, as Linux's
        // cma_activate_area does), which claims an Unmovable block by fallback on a
        // machine whose blocks are all Movable: at most two per area were seen (1 GiB,
        // `cma=64M`: 2). Without areas, every block is Movable.
        let a = crate::memory::allocator();
        let cma_blocks = a.totalcma_pages() / PAGEBLOCK_NR_PAGES;
        let unmovable_allowed = 2 * a.cma_nr_areas() as u64;
        let (movable, cma, unmovable) = (
            initial[Migratetype::Movable.index()],
            initial[Migratetype::Cma.index()],
            initial[Migratetype::Unmovable.index()],
        );
        kassert!(
            movable + cma + unmovable == blocks && cma == cma_blocks && unmovable <= unmovable_allowed,
            "census at hand-off {:?}: {} pageblocks now, {} of them in CMA areas, at most {} Unmovable allowed",
            initial,
            blocks,
            cma_blocks,
            unmovable_allowed
        );
        kassert_eq!(initial.iter().sum::<u64>(), blocks);
        Ok(())
    }

    fn metadata_overhead_is_bounded() -> TestResult {
        let m = model();
        // SPARSEMEM gives every frame of a present section a 64-byte struct page, holes
        // included (as Linux does), so the invariant is 1.6% of present-section memory.
        // When RAM fills (almost) all of its sections it is also 1.6% of RAM; a small VM
        // whose only section is 5% firmware holes (OVMF at 128 MiB) is the exception.
        let span = m.sparse().present_sections().count() as u64 * (1 << m.sparse().section_size_bits());
        kassert!(
            m.metadata_bytes() * 1000 <= span * 16,
            "metadata {} bytes for {} bytes of present sections",
            m.metadata_bytes(),
            span
        );
        if m.ram_bytes() * 100 >= span * 98 {
            kassert!(
                m.metadata_bytes() * 1000 <= m.ram_bytes() * 16,
                "metadata {} bytes for {} bytes RAM",
                m.metadata_bytes(),
                m.ram_bytes()
            );
        }
        Ok(())
    }

    fn movable_zone_follows_the_command_line() -> TestResult {
        let m = model();
        let node = m.node(0).ok_or("no node 0")?;
        let movable = node.zone(ZoneType::Movable);
        let cmd = crate::cmdline::get();
        match cmd.get("movablecore") {
            // A value the parser rejects is ignored: no ZONE_MOVABLE.
            Some(v) if zonebuddy::model::zone::parse_movablecore(v).is_err() && cmd.get("kernelcore").is_none() => {
                kassert_eq!(movable.present_pages(), 0);
            }
            Some(v) => {
                let requested = zonebuddy::model::zone::parse_movablecore(v).map_err(|e| format!("{e}"))?;
                kassert!(movable.present_pages() > 0, "movablecore={} gave no ZONE_MOVABLE", v);
                kassert!(movable.zone_end_pfn() == node.node_end_pfn(), "ZONE_MOVABLE is not at the top of the node");
                if let zonebuddy::model::zone::CoreSize::Bytes(b) = requested {
                    let want = b >> PAGE_SHIFT;
                    // Linux aligns the movable start to MAX_ORDER_NR_PAGES: within 1024 pages.
                    let got = movable.present_pages();
                    kassert!(got + 1024 >= want && got <= want + 1024, "asked {} pages, got {}", want, got);
                }
            }
            None if cmd.get("kernelcore").is_none() => kassert_eq!(movable.present_pages(), 0),
            None => {}
        }
        Ok(())
    }
}
