//! Two machine-readable debug views for pictures and scripts, beside Linux's own:
//!
//! - `/sys/kernel/debug/mm/pageblock_map`: one character per pageblock, one row per
//!   populated zone, so a plot (or a human with a wide terminal) can see where the
//!   unmovable blocks sit among the movable ones and which blocks are entirely free.
//!   /proc/pagetypeinfo only counts blocks; fragmentation is about where they are.
//! - `/sys/kernel/debug/mm/fragmentation_score`: each zone's and each node's score as
//!   proactive compaction computes it (Linux keeps these numbers internal; a plot of them
//!   over time shows kcompactd at work).
//!
//! Row format (`pfn` is the first pfn of the first pageblock of the row):
//!
//! ```text
//! Node 0, zone    DMA32 pfn 4096 UUMMMFFFFMMR..MM
//! ```
//!
//! Characters: `U` Unmovable, `M` Movable, `R` Reclaimable, `H` HighAtomic, `C` CMA, `I`
//! Isolate (the type in the pageblock bitmap), `F` a pageblock whose every page is in the
//! buddy free lists, `.` a pageblock with no page the allocator manages (a hole, firmware,
//! the kernel image, or the first pages of a zone that starts mid-block and belong to the
//! zone below).
//!
//! The map is read without the zone lock: each page's flags and order are single atomic
//! words, so a block being split or merged at that moment may show either way, but
//! nothing read can be out of bounds (orders are clamped) and nothing is written.

#![deny(unsafe_code)]

use core::fmt::{self, Write};

use crate::model::mmzone::{MAX_PAGE_ORDER, Migratetype, PAGEBLOCK_NR_PAGES, ZoneType};
use crate::model::pageblock::get_pageblock_migratetype;
use crate::model::zone::Zone;
use crate::page_alloc::PageAllocator;
use crate::port::platform::Platform;
use crate::report::fragmentation::{fragmentation_score_node, fragmentation_score_zone};

/// What one pageblock looks like in the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    /// No managed page in it.
    Hole,
    /// Every page free in the buddy lists.
    Free,
    /// In use (at least partly), with the migratetype of its bitmap entry.
    Typed(Migratetype),
}

impl BlockState {
    /// The map character.
    pub const fn symbol(self) -> char {
        match self {
            BlockState::Hole => '.',
            BlockState::Free => 'F',
            BlockState::Typed(Migratetype::Unmovable) => 'U',
            BlockState::Typed(Migratetype::Movable) => 'M',
            BlockState::Typed(Migratetype::Reclaimable) => 'R',
            BlockState::Typed(Migratetype::HighAtomic) => 'H',
            BlockState::Typed(Migratetype::Cma) => 'C',
            BlockState::Typed(Migratetype::Isolate) => 'I',
        }
    }

    /// The state a map character stands for (for parsers of the map).
    pub const fn from_symbol(c: char) -> Option<BlockState> {
        Some(match c {
            '.' => BlockState::Hole,
            'F' => BlockState::Free,
            'U' => BlockState::Typed(Migratetype::Unmovable),
            'M' => BlockState::Typed(Migratetype::Movable),
            'R' => BlockState::Typed(Migratetype::Reclaimable),
            'H' => BlockState::Typed(Migratetype::HighAtomic),
            'C' => BlockState::Typed(Migratetype::Cma),
            'I' => BlockState::Typed(Migratetype::Isolate),
            _ => return None,
        })
    }
}

/// One row of the map: `Node N, zone NAME pfn START ` and the blocks' symbols.
pub fn pageblock_map_row<W: Write + ?Sized>(
    w: &mut W,
    nid: usize,
    zone: ZoneType,
    first_pfn: u64,
    blocks: impl IntoIterator<Item = BlockState>,
) -> fmt::Result {
    write!(
        w,
        "Node {}, zone {:>8} pfn {} ",
        nid,
        zone.name(),
        first_pfn
    )?;
    for b in blocks {
        w.write_char(b.symbol())?;
    }
    w.write_char('\n')
}

/// One zone's fragmentation-score line: `Node N, zone NAME SCORE` (score `%3u`).
pub fn fragmentation_score_zone_line<W: Write + ?Sized>(
    w: &mut W,
    nid: usize,
    zone: ZoneType,
    score: u32,
) -> fmt::Result {
    writeln!(w, "Node {}, zone {:>8} {:3}", nid, zone.name(), score)
}

/// A node's fragmentation-score line: `Node N, node score SCORE` (score `%3u`).
pub fn fragmentation_score_node_line<W: Write + ?Sized>(
    w: &mut W,
    nid: usize,
    score: u32,
) -> fmt::Result {
    writeln!(w, "Node {nid}, node score {score:3}")
}

impl<P: Platform> PageAllocator<P> {
    /// Is page `pfn` a managed page of `zone` (in the zone, not reserved)?
    fn managed_page_of(&self, zone: &Zone, pfn: u64) -> bool {
        self.model().pfn_to_page(pfn).is_some_and(|p| {
            p.zone_idx() == zone.zone_type.index() && p.nid() == zone.nid && !p.is_reserved()
        })
    }

    /// The state of the pageblock starting at `start` in `zone`.
    fn pageblock_state(&self, zone: &Zone, start: u64) -> BlockState {
        let end = start + PAGEBLOCK_NR_PAGES;
        if !(start..end).any(|pfn| self.managed_page_of(zone, pfn)) {
            return BlockState::Hole;
        }
        // Wholly free: covered by one free block of order >= pageblock_order whose head
        // is at or before `start`, or by consecutive free blocks inside it.
        let covering = (crate::model::mmzone::PAGEBLOCK_ORDER..=MAX_PAGE_ORDER).any(|order| {
            let head = start & !((1u64 << order) - 1);
            self.model()
                .pfn_to_page(head)
                .is_some_and(|p| p.is_buddy() && p.buddy_order().min(MAX_PAGE_ORDER) >= order)
        });
        let mut free = covering;
        if !free {
            let mut pfn = start;
            free = true;
            while pfn < end {
                match self.model().pfn_to_page(pfn) {
                    Some(p) if p.is_buddy() => {
                        pfn += 1u64 << p.buddy_order().min(MAX_PAGE_ORDER);
                    }
                    _ => {
                        free = false;
                        break;
                    }
                }
            }
        }
        if free {
            return BlockState::Free;
        }
        match get_pageblock_migratetype(self.model().sparse(), start) {
            Ok(mt) => BlockState::Typed(mt),
            Err(_) => BlockState::Hole,
        }
    }

    /// `/sys/kernel/debug/mm/pageblock_map`: see the module documentation.
    pub fn write_pageblock_map(&self, w: &mut dyn Write) -> fmt::Result {
        for n in self.model().nodes() {
            for z in n.populated_zones() {
                let first = z.zone_start_pfn() & !(PAGEBLOCK_NR_PAGES - 1);
                let blocks = (first..z.zone_end_pfn())
                    .step_by(PAGEBLOCK_NR_PAGES as usize)
                    .map(|pfn| self.pageblock_state(z, pfn));
                pageblock_map_row(w, n.node_id, z.zone_type, first, blocks)?;
            }
        }
        Ok(())
    }

    /// Each populated zone's fragmentation score and each node's (weighted by zone size,
    /// as proactive compaction weighs them), from one snapshot per zone.
    pub fn fragmentation_scores(&self, nid: usize) -> Option<([Option<u32>; 4], u32)> {
        let node = self.model().node(nid)?;
        let mut zones = [None; 4];
        let mut weighted = [(0u64, 0u32); 4];
        for zt in ZoneType::ALL {
            let Some(s) = self.zone_snapshot(nid, zt) else {
                continue;
            };
            if s.populated() {
                let score = fragmentation_score_zone(&s.nr_free_per_order());
                zones[zt.index()] = Some(score);
                weighted[zt.index()] = (s.present, score);
            }
        }
        Some((
            zones,
            fragmentation_score_node(node.node_present_pages(), weighted),
        ))
    }

    /// `/sys/kernel/debug/mm/fragmentation_score`: per populated zone its score, then the
    /// node's.
    pub fn write_fragmentation_score(&self, w: &mut dyn Write) -> fmt::Result {
        for n in self.model().nodes() {
            let Some((zones, node)) = self.fragmentation_scores(n.node_id) else {
                continue;
            };
            for zt in ZoneType::ALL {
                if let Some(score) = zones[zt.index()] {
                    fragmentation_score_zone_line(w, n.node_id, zt, score)?;
                }
            }
            fragmentation_score_node_line(w, n.node_id, node)?;
        }
        Ok(())
    }
}
