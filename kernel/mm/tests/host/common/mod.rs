//! Shared test oracle: what the memory model must look like, computed independently of the
//! crate's own sanitiser, memblock and zone code, plus a checker comparing a built model to
//! it.
//!
//! The oracle works frame by frame from the *raw* firmware ranges: a frame is RAM of kind K
//! when every byte of it is covered and the winning kind (Linux's rule: the higher e820 type
//! number wins, bootloader RAM counting as 1.5, a known kind beating an unknown code of the
//! same number; type 0 covers nothing) is K everywhere in it, and, as on a PC, it is neither
//! frame 0 nor a frame of the legacy BIOS area 0xa0000-0xfffff. Zones follow the
//! textbook definitions (DMA < 16 MiB ≤ DMA32 < 4 GiB ≤ Normal on x86_64, or the limits of
//! the model's own architecture parameters; ZONE_MOVABLE from kernelcore/movablecore as
//! Linux documents it), spanned/present/managed follow Linux's definitions (the reserved
//! low range is present, not managed), and the checker walks every `struct Page` of every
//! present section, of the section size the model was built with.

#![allow(dead_code)]

use zonebuddy::model::arch::ArchParams;
use zonebuddy::model::memmap::{FirmwareRange, PHYSMEM_LIMIT, RangeKind};
use zonebuddy::model::mm_init::MemoryModel;
use zonebuddy::model::mmzone::{MAX_ORDER_NR_PAGES, Migratetype, PAGE_SHIFT, PAGE_SIZE, ZoneType};
use zonebuddy::model::node::NumaRange;
use zonebuddy::model::pageblock::{get_pageblock_migratetype, get_pageblock_skip};
use zonebuddy::model::zone::CoreSize;

pub const PAGE: u64 = PAGE_SIZE;

/// (e820 type number, rank among kinds of that number: unknown 0, known 1, bootloader 2).
fn prio(k: RangeKind) -> (u32, u8) {
    match k {
        RangeKind::Unknown(c) => (c, 0),
        RangeKind::Usable => (1, 1),
        RangeKind::Bootloader => (1, 2),
        RangeKind::Reserved => (2, 1),
        RangeKind::AcpiReclaimable => (3, 1),
        RangeKind::AcpiNvs => (4, 1),
        RangeKind::Unusable => (5, 1),
    }
}

/// Frames a PC never treats as RAM: frame 0 and the legacy BIOS area (`trim_bios_range`).
pub fn pc_not_ram(pfn: u64) -> bool {
    pfn == 0 || (0xa0..0x100).contains(&pfn)
}

fn valid(r: &FirmwareRange, limit: u64) -> Option<(u64, u64, RangeKind)> {
    let e = r.end.min(limit);
    (r.start < e).then_some((r.start, e, r.kind))
}

/// The kind of frame `pfn`: `Some(Usable | Bootloader)` if it is wholly RAM of that kind
/// (x86_64's physical limit).
pub fn frame_kind(ranges: &[FirmwareRange], pfn: u64) -> Option<RangeKind> {
    frame_kind_below(ranges, pfn, PHYSMEM_LIMIT)
}

/// [`frame_kind`] with the physical address limit `limit`.
pub fn frame_kind_below(ranges: &[FirmwareRange], pfn: u64, limit: u64) -> Option<RangeKind> {
    let valid = |r: &FirmwareRange| valid(r, limit);
    if pc_not_ram(pfn) {
        return None;
    }
    let a = pfn * PAGE;
    let b = a + PAGE;
    let mut cuts = vec![a, b];
    for r in ranges.iter().filter_map(valid) {
        for x in [r.0, r.1] {
            if x > a && x < b {
                cuts.push(x);
            }
        }
    }
    cuts.sort();
    cuts.dedup();
    let mut kind: Option<RangeKind> = None;
    for w in cuts.windows(2) {
        let x = w[0];
        let winner = ranges
            .iter()
            .filter_map(valid)
            .filter(|r| r.0 <= x && x < r.1)
            .map(|r| r.2)
            .max_by_key(|k| prio(*k))?;
        if !matches!(winner, RangeKind::Usable | RangeKind::Bootloader) {
            return None;
        }
        match kind {
            None => kind = Some(winner),
            Some(k) if k == winner => {}
            Some(_) => return None,
        }
    }
    kind
}

/// RAM frames as sorted, coalesced intervals `(start_pfn, end_pfn, kind)` (x86_64's
/// physical limit).
pub fn ram_intervals(ranges: &[FirmwareRange]) -> Vec<(u64, u64, RangeKind)> {
    ram_intervals_below(ranges, PHYSMEM_LIMIT)
}

/// [`ram_intervals`] with the physical address limit `limit`.
pub fn ram_intervals_below(ranges: &[FirmwareRange], limit: u64) -> Vec<(u64, u64, RangeKind)> {
    let valid = |r: &FirmwareRange| valid(r, limit);
    let mut bounds = vec![1, 0xa0, 0x100];
    for r in ranges.iter().filter_map(valid) {
        for x in [r.0, r.1] {
            bounds.push(x / PAGE);
            bounds.push(x.div_ceil(PAGE));
        }
    }
    bounds.sort();
    bounds.dedup();
    let mut out: Vec<(u64, u64, RangeKind)> = Vec::new();
    for w in bounds.windows(2) {
        if let Some(k) = frame_kind_below(ranges, w[0], limit) {
            match out.last_mut() {
                Some(last) if last.1 == w[0] && last.2 == k => last.1 = w[1],
                _ => out.push((w[0], w[1], k)),
            }
        }
    }
    out
}

/// The RAM kind of `pfn` according to sorted `intervals`.
pub fn kind_at(intervals: &[(u64, u64, RangeKind)], pfn: u64) -> Option<RangeKind> {
    let i = intervals.partition_point(|r| r.1 <= pfn);
    intervals.get(i).filter(|r| r.0 <= pfn).map(|r| r.2)
}

/// Expected zone spans `[start, end)` per zone type for a single-node machine whose
/// architecture has ZONE_DMA below `arch.dma_limit` and ZONE_DMA32 below
/// `arch.dma32_limit` (an absent zone ends at 0).
pub fn expected_zone_spans(
    ram: &[(u64, u64, RangeKind)],
    kernelcore: Option<CoreSize>,
    movablecore: Option<CoreSize>,
    arch: &ArchParams,
) -> [(u64, u64); 4] {
    let min = ram.first().unwrap().0;
    let max = ram.last().unwrap().1;
    let dma = arch.dma_limit.unwrap_or(0) / PAGE;
    // DMA32 begins where DMA ends; without DMA32 it is empty there.
    let dma32 = arch.dma32_limit.map_or(dma, |l| l / PAGE).max(dma);
    let mut spans = [
        (min, dma.min(max).max(min)),
        (dma.max(min).min(max), dma32.min(max).max(min)),
        (dma32.max(min).min(max), max),
        (0, 0),
    ];
    for s in spans.iter_mut() {
        if s.0 >= s.1 {
            *s = (0, 0);
        }
    }
    // Architectural start of the zone ZONE_MOVABLE is carved from.
    let arch_low = [
        min,
        dma.min(max).max(min),
        dma32.min(max).max(dma.min(max).max(min)),
    ];
    let arch_high = [
        dma.min(max).max(min),
        dma32.min(max).max(dma.min(max).max(min)),
        max.max(dma32.min(max).max(dma.min(max).max(min))),
    ];
    let mz = (0..3)
        .rev()
        .find(|&z| arch_high[z] > arch_low[z])
        .unwrap_or(0);
    let u = arch_low[mz];

    let total: u64 = ram.iter().map(|r| r.1 - r.0).sum();
    let pages = |c: CoreSize| match c {
        CoreSize::Bytes(b) => b >> PAGE_SHIFT,
        CoreSize::Percent(p) => (total as u128 * p as u128 / 100) as u64,
    };
    let mut kc = kernelcore
        .map(pages)
        .filter(|&p| p > 0 && p < total)
        .unwrap_or(0);
    if let Some(m) = movablecore.map(pages).filter(|&p| p > 0) {
        let m = m.next_multiple_of(MAX_ORDER_NR_PAGES);
        if m < total {
            kc = kc.max(total - m);
        }
    }
    if kc == 0 || kc >= total {
        return spans;
    }
    let below: u64 = ram.iter().map(|r| r.1.min(u).saturating_sub(r.0)).sum();
    let zmp0 = if kc <= below {
        ram.iter().find(|r| r.1 > u).map(|r| r.0.max(u))
    } else {
        let mut need = kc - below;
        let mut at = None;
        for r in ram.iter().filter(|r| r.1 > u) {
            let s = r.0.max(u);
            if r.1 - s >= need {
                at = Some(s + need);
                break;
            }
            need -= r.1 - s;
        }
        at
    };
    let Some(zmp0) = zmp0 else { return spans };
    let zmp = zmp0.next_multiple_of(MAX_ORDER_NR_PAGES);
    if zmp >= max {
        return spans;
    }
    for s in spans.iter_mut().take(3) {
        if s.1 > zmp {
            s.1 = zmp;
        }
        if s.0 >= s.1 {
            *s = (0, 0);
        }
    }
    spans[3] = (zmp, max);
    spans
}

/// Known reservations that must carry PG_reserved: bootloader RAM, frame 0, the
/// architecture's low range (`reserve_low` bytes), extra ranges.
pub fn known_reserved(pfn: u64, kind: RangeKind, extra: &[(u64, u64)], reserve_low: u64) -> bool {
    kind == RangeKind::Bootloader
        || pfn == 0
        || pfn < reserve_low / PAGE
        || extra
            .iter()
            .any(|&(s, e)| s < e && s < (pfn + 1) * PAGE && e > pfn * PAGE)
}

/// Figures the checker gathered, for further assertions by the caller.
#[derive(Debug, Default)]
pub struct Checked {
    pub ram_pages: u64,
    pub reserved_ram_pages: u64,
    pub sections: u64,
    pub zone_present: [u64; 4],
    pub zone_spanned: [u64; 4],
}

fn node_of(numa: &[NumaRange], pfn: u64) -> usize {
    numa.iter()
        .find(|r| r.start <= pfn * PAGE && pfn * PAGE < r.end)
        .map_or(0, |r| r.nid)
}

/// RAM pages of node `nid` inside `[start, end)`.
pub fn node_ram_pages(
    ram: &[(u64, u64, RangeKind)],
    numa: &[NumaRange],
    nid: usize,
    start: u64,
    end: u64,
) -> u64 {
    let mut n = 0;
    for r in ram {
        let (s, e) = (r.0.max(start), r.1.min(end));
        if s >= e {
            continue;
        }
        if numa.is_empty() {
            n += if nid == 0 { e - s } else { 0 };
            continue;
        }
        // Split [s, e) at NUMA boundaries and attribute each piece.
        let mut cuts = vec![s, e];
        for nr in numa {
            for b in [nr.start / PAGE, nr.end / PAGE] {
                if b > s && b < e {
                    cuts.push(b);
                }
            }
        }
        cuts.sort();
        cuts.dedup();
        for w in cuts.windows(2) {
            if node_of(numa, w[0]) == nid {
                n += w[1] - w[0];
            }
        }
    }
    n
}

/// Check every invariant of a built model against the oracle. Panics with a message naming
/// the first violation.
pub fn check_model(
    model: &MemoryModel,
    ranges: &[FirmwareRange],
    extra: &[(u64, u64)],
    numa: &[NumaRange],
    kernelcore: Option<CoreSize>,
    movablecore: Option<CoreSize>,
) -> Checked {
    let arch = *model.arch();
    let pages_per_section = arch.pages_per_section();
    let low = arch.reserve_low;
    let ram = ram_intervals_below(ranges, arch.physmem_limit());
    let mut c = Checked {
        ram_pages: ram.iter().map(|r| r.1 - r.0).sum(),
        ..Checked::default()
    };
    assert_eq!(model.ram_bytes(), c.ram_pages * PAGE, "RAM size");

    // Sections: present exactly when they hold RAM.
    let mut sections: Vec<u64> = Vec::new();
    for r in &ram {
        for s in (r.0 / pages_per_section)..=((r.1 - 1) / pages_per_section) {
            if sections.last() != Some(&s) {
                sections.push(s);
            }
        }
    }
    c.sections = sections.len() as u64;
    let present: Vec<u64> = model.sparse().present_sections().collect();
    assert_eq!(present, sections, "present sections");
    assert_eq!(model.sparse().stats().present_sections as u64, c.sections);

    // pfn_valid is false between and around present sections.
    for w in sections.windows(2) {
        if w[1] > w[0] + 1 {
            let gap = (w[0] + 1) * pages_per_section;
            assert!(
                !model.pfn_valid(gap),
                "pfn {gap:#x} in a RAM-less section is valid"
            );
            assert!(!model.pfn_valid(w[1] * pages_per_section - 1));
            assert!(model.pfn_to_page(gap).is_none());
        }
    }
    let last = *sections.last().unwrap();
    assert!(!model.pfn_valid((last + 1) * pages_per_section));
    assert!(!model.pfn_valid(u64::MAX >> PAGE_SHIFT));
    if sections[0] > 0 {
        assert!(!model.pfn_valid(sections[0] * pages_per_section - 1));
    }

    // Every struct page.
    let single_node = numa.is_empty();
    let spans = single_node.then(|| expected_zone_spans(&ram, kernelcore, movablecore, &arch));
    let mut managed = [[0u64; 4]; zonebuddy::model::mmzone::MAX_NUMNODES];
    let mut present_count = [[0u64; 4]; zonebuddy::model::mmzone::MAX_NUMNODES];
    for &s in &sections {
        let start = s * pages_per_section;
        for pfn in start..start + pages_per_section {
            let page = model
                .pfn_to_page(pfn)
                .expect("pfn in a present section has a page");
            assert!(model.pfn_valid(pfn));
            assert_eq!(model.page_to_pfn(page), pfn, "page_to_pfn round trip");
            assert_eq!(model.sparse().try_page_to_pfn(page), Some(pfn));
            assert_eq!(page.section_nr(), s);
            let zt = page.zone_type().expect("zone index in range");
            let kind = kind_at(&ram, pfn);
            match kind {
                None => assert!(page.is_reserved(), "hole pfn {pfn:#x} not PG_reserved"),
                Some(k) => {
                    let nid = node_of(numa, pfn);
                    assert_eq!(page.nid(), nid, "nid of pfn {pfn:#x}");
                    let node = model.node(nid).expect("node with RAM is online");
                    let spanning: Vec<ZoneType> = node
                        .node_zones
                        .iter()
                        .filter(|z| z.zone_spans_pfn(pfn))
                        .map(|z| z.zone_type)
                        .collect();
                    assert_eq!(
                        spanning,
                        [zt],
                        "RAM pfn {pfn:#x} must be in exactly its zone"
                    );
                    if let Some(sp) = &spans {
                        let expect = (0..4)
                            .find(|&z| sp[z].0 <= pfn && pfn < sp[z].1)
                            .expect("oracle places every RAM frame in a zone");
                        assert_eq!(zt.index(), expect, "zone of pfn {pfn:#x}");
                    }
                    present_count[nid][zt.index()] += 1;
                    if known_reserved(pfn, k, extra, low) {
                        assert!(
                            page.is_reserved(),
                            "reserved RAM pfn {pfn:#x} not PG_reserved"
                        );
                    }
                    if page.is_reserved() {
                        c.reserved_ram_pages += 1;
                    } else {
                        assert_eq!(k, RangeKind::Usable);
                        managed[nid][zt.index()] += 1;
                    }
                }
            }
            assert_eq!(page.refcount(), 1);
            assert_eq!(page.mapcount(), 0);
            assert!(!page.is_buddy());
            if pfn % zonebuddy::model::mmzone::PAGEBLOCK_NR_PAGES == 0 {
                assert_eq!(
                    get_pageblock_migratetype(model.sparse(), pfn),
                    Ok(Migratetype::Movable)
                );
                assert_eq!(get_pageblock_skip(model.sparse(), pfn), Ok(false));
            }
        }
    }

    // Zone sizes by definition.
    for node in model.nodes() {
        let nid = node.node_id;
        let mut node_present = 0;
        for z in &node.node_zones {
            let i = z.zone_type.index();
            assert_eq!(
                z.present_pages(),
                present_count[nid][i],
                "present of {} node {nid}",
                z.name()
            );
            assert_eq!(
                z.managed_pages(),
                managed[nid][i],
                "managed of {} node {nid}",
                z.name()
            );
            // present = spanned - holes: the node's RAM inside the span, by interval
            // arithmetic on the oracle (NUMA ranges in tests are page aligned).
            let ram_in_span = node_ram_pages(&ram, numa, nid, z.zone_start_pfn(), z.zone_end_pfn());
            assert_eq!(z.present_pages(), ram_in_span, "present = spanned - holes");
            if let Some(sp) = &spans {
                assert_eq!(
                    (z.zone_start_pfn(), z.zone_end_pfn()),
                    sp[i],
                    "span of zone {}",
                    z.name()
                );
            }
            c.zone_present[i] += z.present_pages();
            c.zone_spanned[i] += z.spanned_pages();
            node_present += z.present_pages();
        }
        assert_eq!(node.node_present_pages(), node_present);
    }

    // The hand-off: exactly the unreserved RAM pages, each in the zone its page names.
    let mut handed = 0;
    for r in model.free_pfn_ranges() {
        for pfn in r.start_pfn..r.end_pfn {
            let page = model.pfn_to_page(pfn).expect("handed-off pfn has a page");
            assert!(!page.is_reserved());
            assert_eq!(page.zone_type(), Some(r.zone));
            assert_eq!(page.nid(), r.nid);
        }
        handed += r.end_pfn - r.start_pfn;
    }
    assert_eq!(handed, model.handoff_pages());
    assert_eq!(handed, c.ram_pages - c.reserved_ram_pages);

    // The trampoline page is a reserved usable page below the legacy BIOS area.
    if let Some(t) = model.trampoline_phys() {
        assert!(
            t < 0xa0000 && t % PAGE == 0 && t != 0,
            "trampoline at {t:#x}"
        );
        assert_eq!(kind_at(&ram, t / PAGE), Some(RangeKind::Usable));
        assert!(model.pfn_to_page(t / PAGE).unwrap().is_reserved());
    } else {
        // Only acceptable if no usable page below 1 MiB is free of known reservations.
        let candidates = (1..0xa0u64)
            .filter(|&p| {
                kind_at(&ram, p) == Some(RangeKind::Usable)
                    && !known_reserved(p, RangeKind::Usable, extra, 0)
            })
            .count();
        assert!(candidates == 0 || c.reserved_ram_pages > 0);
    }

    // Metadata: what sparse says it allocated is what the formula says, and at most the
    // reserved RAM beyond the known reservations.
    let st = model.sparse().stats();
    assert_eq!(st.memmap_bytes, c.sections * pages_per_section * 64);
    let known: u64 = ram
        .iter()
        .flat_map(|r| (r.0..r.1).map(move |p| (p, r.2)))
        .filter(|&(p, k)| known_reserved(p, k, extra, low))
        .count() as u64;
    let allocated_pages = model.metadata_bytes().div_ceil(PAGE) + 2 * (c.sections + 8) + 1;
    assert!(
        c.reserved_ram_pages <= known + allocated_pages + 8,
        "reserved {} > known {} + metadata {}",
        c.reserved_ram_pages,
        known,
        allocated_pages
    );
    c
}
