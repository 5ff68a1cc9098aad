//! Model-based tests of the page allocator: random operation sequences (allocations and
//! frees of every order and GFP class, bulk, compound, references, exhaustion to OOM and
//! back, drains, bad frees, impossible requests, tunable changes, isolating ranges and
//! allocating them with `alloc_contig_range`) run against the real
//! allocator on simulated RAM and against a reference model of what is allocated, with
//! `zonebuddy::report::debug::check` and the accounting identities verified after every step.
//!
//! Deterministic: sequence `i` uses seed `MM_MODEL_SEED + i` (default base 0x5eed).
//! `MM_MODEL_CASES` sequences (default 1000) run per `cargo test`, 60% on a small machine
//! (DMA + DMA32), 30% on one with all four zones, 10% on one big enough for a highatomic
//! reserve; set it to millions to soak offline. A failing seed is appended to
//! `tests/regressions/page_alloc_model.seeds`, and every seed listed there is replayed
//! first on each run (`MM_MODEL_SEED=<n> MM_MODEL_CASES=1` replays one).

use crate::alloc_common;

use std::fs::OpenOptions;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use alloc_common::*;
use zonebuddy::model::mmzone::{
    MAX_PAGE_ORDER, Migratetype, PAGE_SIZE, PAGEBLOCK_NR_PAGES, ZoneType,
};
use zonebuddy::model::page::Page;
use zonebuddy::model::pageblock::get_pageblock_migratetype;
use zonebuddy::movement::isolation::IsolateFlags;
use zonebuddy::page_alloc::AllocError;
use zonebuddy::page_alloc::bad_page::{BadPageReason, PageChecks};
use zonebuddy::page_alloc::gfp::*;
use zonebuddy::port::sim::SimAllocator;
use zonebuddy::report::vmstat::VmEvent;

/// Isolations and contiguous allocations that succeeded (the sequences must reach both).
static ISOLATE_OK: AtomicU64 = AtomicU64::new(0);
static CONTIG_OK: AtomicU64 = AtomicU64::new(0);

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/regressions/page_alloc_model.seeds"
);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            v.strip_prefix("0x")
                .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(default)
}

fn regression_seeds(machine: &str) -> Vec<u64> {
    std::fs::read_to_string(REGRESSIONS)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == machine).then_some(())?;
            w.next()?.parse().ok()
        })
        .collect()
}

fn record_failure(machine: &str, seed: u64) {
    if regression_seeds(machine).contains(&seed) {
        return;
    }
    if let Ok(mut f) = OpenOptions::new()
        .append(true)
        .create(true)
        .open(REGRESSIONS)
    {
        let _ = writeln!(f, "{machine} {seed}");
    }
}

const GFP_CLASSES: &[Gfp] = &[
    GFP_KERNEL,
    GFP_KERNEL,
    GFP_KERNEL.union(Gfp::ZERO),
    GFP_ATOMIC,
    GFP_NOWAIT,
    GFP_HIGHUSER_MOVABLE,
    GFP_HIGHUSER_MOVABLE,
    GFP_HIGHUSER_MOVABLE.union(Gfp::ZERO),
    GFP_USER.union(Gfp::RECLAIMABLE),
    GFP_KERNEL.union(Gfp::RECLAIMABLE),
    GFP_KERNEL.union(Gfp::DMA),
    GFP_KERNEL.union(Gfp::DMA32),
    GFP_ATOMIC.union(Gfp::DMA32),
    Gfp::HIGH.union(Gfp::DIRECT_RECLAIM),
    GFP_KERNEL.union(Gfp::NORETRY),
    GFP_KERNEL.union(Gfp::RETRY_MAYFAIL),
    GFP_KERNEL.union(Gfp::MEMALLOC),
    GFP_KERNEL.union(Gfp::COMP),
    GFP_HIGHUSER_MOVABLE.union(Gfp::COMP),
    GFP_TRANSHUGE_LIGHT,
];

fn random_order(r: &mut Rng) -> u32 {
    match r.below(100) {
        0..50 => 0,
        50..70 => 1 + r.below(3) as u32,
        70..80 => 4 + r.below(5) as u32,
        80..92 => 9,
        _ => MAX_PAGE_ORDER,
    }
}

struct Run<'a> {
    a: &'a SimAllocator,
    m: Model,
    r: Rng,
    boot_pgfree: u64,
    recently_freed: Vec<(u64, u32)>,
    log: Vec<String>,
    /// Bulk phases (exhaustion, final frees) do not log each free.
    quiet: bool,
    /// The allocator sweeps every descriptor (`page_checks=full`); otherwise only heads are
    /// checked and bad states are planted on heads only.
    full_checks: bool,
    /// Pages handed out by `alloc_contig_range`, which (as in Linux) counts no pgalloc.
    contig_pages: u64,
}

impl<'a> Run<'a> {
    fn page(&self, pfn: u64) -> &'a Page {
        self.a.pfn_to_page(pfn).expect("pfn has a page")
    }

    fn after_step(&self) {
        if let Err(v) = zonebuddy::report::debug::check(self.a) {
            panic!("invariant violated: {v}");
        }
        check_accounting(self.a, &self.m);
        let pgfree = self.a.vm_event(VmEvent::Pgfree) - self.boot_pgfree;
        assert_eq!(
            pgalloc_total(self.a) + self.contig_pages - pgfree,
            self.m.allocated_pages + self.m.leaked,
            "pgalloc - pgfree != pages held"
        );
    }

    fn record_alloc(&mut self, page: &Page, gfp: Gfp, order: u32) -> u64 {
        let pfn = self.a.page_to_pfn(page);
        assert_eq!(pfn & ((1 << order) - 1), 0, "block not aligned");
        let zt = zone_of_page(page);
        assert!(
            allowed_zone(gfp, zt),
            "{gfp} allocation landed in zone {}",
            zt.name()
        );
        if gfp_zone(gfp) == Ok(ZoneType::Dma) {
            assert!(pfn + (1 << order) <= 4096, "GFP_DMA page above 16 MiB");
        }
        if gfp.contains(Gfp::DMA32) {
            assert!(pfn + (1 << order) <= 1 << 20, "GFP_DMA32 page above 4 GiB");
        }
        assert_eq!(page.refcount(), 1);
        let compound = gfp.contains(Gfp::COMP) && order > 0;
        assert_eq!(page.is_head(), compound);
        if compound {
            let t = self.page(pfn + 1);
            assert!(t.is_tail());
            assert_eq!(t.order_field(), order);
            assert!(std::ptr::eq(t.compound_head(), page));
            let last = self.page(pfn + (1 << order) - 1);
            assert!(std::ptr::eq(last.compound_head(), page));
        }
        stamp(self.a, pfn, order, gfp.contains(Gfp::ZERO));
        self.m.insert(
            pfn,
            Block {
                order,
                compound,
                refs: 1,
                gfp,
            },
        );
        pfn
    }

    fn alloc_one(&mut self) {
        let gfp = self.r.pick(GFP_CLASSES);
        let order = random_order(&mut self.r);
        // __GFP_NOFAIL is only valid up to order 1; the classes here avoid it.
        self.note(|| format!("alloc {gfp} order {order}"));
        match self.a.try_alloc_pages(gfp, order) {
            Ok(page) => {
                self.record_alloc(page, gfp, order);
            }
            Err(AllocError::NoMemory) => assert_oom_justified(self.a, gfp, order),
            Err(AllocError::Invalid(e)) => panic!("valid request refused: {e}"),
        }
    }

    fn alloc_bulk(&mut self) {
        let gfp = self.r.pick(&[
            GFP_KERNEL,
            GFP_HIGHUSER_MOVABLE,
            GFP_ATOMIC,
            GFP_KERNEL.union(Gfp::DMA32),
        ]);
        let n = 1 + self.r.below(80) as usize;
        let pre = self.r.below(3) as usize;
        self.note(|| format!("bulk {gfp} n {n} pre {pre}"));
        let mut out: Vec<Option<&Page>> = vec![None; n + 2];
        // Pre-populated slots must be kept.
        let mut prefilled = Vec::new();
        for slot in out.iter_mut().take(pre.min(n)) {
            if let Some(p) = self.a.alloc_page(GFP_KERNEL) {
                *slot = Some(p);
                prefilled.push(p as *const Page);
                self.record_alloc(p, GFP_KERNEL, 0);
            }
        }
        let got = self.a.alloc_pages_bulk(gfp, n, &mut out);
        assert_eq!(got, out[..n].iter().filter(|p| p.is_some()).count());
        assert!(out[n..].iter().all(|p| p.is_none()), "bulk wrote past nr");
        for (i, slot) in out.iter().enumerate().take(n) {
            let Some(p) = slot else { continue };
            if i < prefilled.len() && std::ptr::eq(*p, prefilled[i]) {
                continue;
            }
            self.record_alloc(p, gfp, 0);
        }
    }

    fn pick_block(&mut self) -> Option<(u64, Block)> {
        if self.m.blocks.is_empty() {
            return None;
        }
        let i = self.r.below(self.m.blocks.len() as u64) as usize;
        self.m.blocks.iter().nth(i).map(|(&p, &b)| (p, b))
    }

    /// Free (or drop a reference to) a random block by one of the three entry points.
    fn free_one(&mut self) {
        let Some((pfn, b)) = self.pick_block() else {
            return;
        };
        self.free_block(pfn, b);
    }

    fn note(&mut self, f: impl FnOnce() -> String) {
        if self.quiet {
            return;
        }
        if self.log.len() >= 32 {
            self.log.remove(0);
        }
        self.log.push(f());
    }

    fn free_block(&mut self, pfn: u64, b: Block) {
        verify_stamp(self.a, pfn, b.order);
        let head = self.page(pfn);
        let how = self.r.below(10);
        self.note(|| format!("free {pfn:#x} {b:?} how {how}"));
        if how < 2 && b.refs == 1 {
            // put_page, possibly through a tail of a compound page.
            let off = if b.compound {
                self.r.below(1 << b.order)
            } else {
                0
            };
            let target = self.page(pfn + off);
            self.a.put_page(target).expect("put_page");
            self.release(pfn, b);
            return;
        }
        let result = if how < 4 {
            let addr = self.a.page_address(head);
            self.a.free_pages_virt(addr, b.order)
        } else {
            self.a.free_pages(head, b.order)
        };
        result.unwrap_or_else(|e| panic!("free of {pfn:#x} {b:?} failed: {e}"));
        if b.refs == 1 {
            self.release(pfn, b);
        } else if b.compound || b.order == 0 {
            self.m.blocks.get_mut(&pfn).unwrap().refs -= 1;
        } else {
            // The other holders keep the first page only.
            self.m.remove(pfn);
            self.m.insert(
                pfn,
                Block {
                    order: 0,
                    refs: b.refs - 1,
                    ..b
                },
            );
        }
    }

    fn release(&mut self, pfn: u64, b: Block) {
        self.m.remove(pfn);
        self.recently_freed.push((pfn, b.order));
        if self.recently_freed.len() > 16 {
            self.recently_freed.remove(0);
        }
    }

    fn get_page(&mut self) {
        let Some((pfn, b)) = self.pick_block() else {
            return;
        };
        if b.refs > 3 {
            return;
        }
        self.note(|| format!("get {pfn:#x}"));
        let off = if b.compound {
            self.r.below(1 << b.order)
        } else {
            0
        };
        let target = self.page(pfn + off);
        self.a.get_page(target);
        self.m.blocks.get_mut(&pfn).unwrap().refs += 1;
        assert_eq!(self.page(pfn).refcount() as u32, b.refs + 1);
    }

    /// Allocate until the allocator says no, check the "no" was justified, then give back
    /// a random share.
    fn exhaust(&mut self) {
        let order = self.r.pick(&[0, 0, 2, 9]);
        let gfp = self.r.pick(&[
            GFP_KERNEL,
            GFP_HIGHUSER_MOVABLE,
            GFP_ATOMIC,
            GFP_KERNEL.union(Gfp::DMA32),
        ]) | Gfp::NOWARN;
        self.note(|| format!("exhaust {gfp} order {order}"));
        let limit = (self.a.totalram_pages() >> order) + 64;
        let mut got = Vec::new();
        for _ in 0..limit {
            match self.a.alloc_pages(gfp, order) {
                Some(p) => got.push(self.record_alloc(p, gfp, order)),
                None => {
                    assert_oom_justified(self.a, gfp, order);
                    break;
                }
            }
        }
        assert!(got.len() < limit as usize, "never ran out of memory");
        let fail_before = self.a.vm_event(VmEvent::PgallocFail);
        assert!(self.a.alloc_pages(gfp, order).is_none() || order > 0 || gfp.contains(Gfp::HIGH));
        assert!(self.a.vm_event(VmEvent::PgallocFail) >= fail_before);
        let keep = self.r.below(100);
        self.quiet = true;
        for pfn in got {
            if self.r.below(100) >= keep
                && let Some(&b) = self.m.blocks.get(&pfn)
            {
                self.free_block(pfn, b);
            }
        }
        self.quiet = false;
    }

    fn drain(&mut self) {
        self.note(|| "drain".into());
        if self.r.chance(50) {
            self.a.drain_local_pages();
        } else {
            self.a.drain_all_pages();
            assert_eq!(self.a.nr_pcp_pages(), 0);
        }
    }

    /// Frees that must be refused, each leaving everything unchanged (or, for bad page
    /// states, taking the block out of circulation).
    fn bad_free(&mut self) {
        let rejected = self.a.vm_event(VmEvent::PgfreeRejected);
        let kind = self.r.below(8);
        self.note(|| format!("bad free kind {kind}"));
        let before = (self.a.nr_free_pages(), self.a.nr_pcp_pages());
        let untouched = |s: &Self| {
            assert_eq!((s.a.nr_free_pages(), s.a.nr_pcp_pages()), before);
            assert_eq!(s.a.vm_event(VmEvent::PgfreeRejected), rejected + 1);
        };
        match kind {
            0 => {
                // Double free of a block freed earlier and not handed out again.
                let Some(&(pfn, order)) = self.recently_freed.last() else {
                    return;
                };
                if self.m.overlaps(pfn, order).is_some() {
                    return;
                }
                let e = self.a.free_pages(self.page(pfn), order).unwrap_err();
                assert_eq!(e.reason, BadPageReason::DoubleFree, "{e}");
                untouched(self);
            }
            1 => {
                // Wrong order.
                let Some((pfn, b)) = self.pick_block() else {
                    return;
                };
                let wrong = if b.order == MAX_PAGE_ORDER || (b.order > 0 && self.r.chance(50)) {
                    b.order - 1
                } else {
                    b.order + 1
                };
                let e = self.a.free_pages(self.page(pfn), wrong).unwrap_err();
                assert!(
                    matches!(
                        e.reason,
                        BadPageReason::WrongOrder { .. } | BadPageReason::Misaligned { .. }
                    ),
                    "{e}"
                );
                untouched(self);
            }
            2 => {
                // A tail page of a compound page.
                let Some((pfn, b)) = self
                    .m
                    .blocks
                    .iter()
                    .find(|(_, b)| b.compound)
                    .map(|(&p, &b)| (p, b))
                else {
                    return;
                };
                let e = self
                    .a
                    .free_pages(self.page(pfn + (1 << b.order) - 1), 0)
                    .unwrap_err();
                assert_eq!(e.reason, BadPageReason::TailPage);
                untouched(self);
            }
            3 => {
                // Frame 0 is reserved.
                let e = self.a.free_pages(self.page(0), 0).unwrap_err();
                assert_eq!(e.reason, BadPageReason::Reserved);
                untouched(self);
            }
            4 => {
                // Not a page of this memmap; not a direct-map address.
                let fake = Page::new(0);
                let e = self.a.free_pages(&fake, 0).unwrap_err();
                assert_eq!(e.reason, BadPageReason::UnknownPfn);
                untouched(self);
                let e = self.a.free_pages_virt(0x1234_5677, 0).unwrap_err();
                assert_eq!(e.reason, BadPageReason::UnknownPfn);
                assert_eq!(self.a.vm_event(VmEvent::PgfreeRejected), rejected + 2);
            }
            _ => {
                // A bad page state at the last put: reported, counted, leaked.
                let Some((pfn, b)) = self.pick_block() else {
                    return;
                };
                if b.refs != 1 {
                    return;
                }
                // By default a non-compound block's tails are not read at free (the owner
                // returns them as it got them); with full checks any page is.
                let sub = if b.compound || !self.full_checks {
                    0
                } else {
                    self.r.below(1 << b.order)
                };
                let victim = self.page(pfn + sub);
                let expect = match self.r.below(5) {
                    0 => {
                        victim.set_mapcount(1);
                        BadPageReason::NonzeroMapcount
                    }
                    1 => {
                        victim.set_mapping(0x1000 as *const (), 0);
                        BadPageReason::NonNullMapping
                    }
                    2 if sub != 0 => {
                        victim.set_refcount(1);
                        BadPageReason::NonzeroRefcount
                    }
                    3 => {
                        victim.set_private(7);
                        BadPageReason::NonzeroPrivate
                    }
                    _ => {
                        victim.set_lru();
                        BadPageReason::FlagsCheckAtFree(zonebuddy::model::page::PageFlags::LRU)
                    }
                };
                let e = self.a.free_pages(self.page(pfn), b.order).unwrap_err();
                assert_eq!(e.reason, expect);
                assert_eq!(e.pfn, Some(pfn + sub));
                self.m.remove(pfn);
                self.m.leaked += 1 << b.order;
                assert_eq!(self.a.vm_event(VmEvent::PgfreeRejected), rejected + 1);
                // Taken out of circulation: nothing came back.
                assert_eq!((self.a.nr_free_pages(), self.a.nr_pcp_pages()), before);
            }
        }
    }

    fn invalid(&mut self) {
        let (gfp, order) = self.r.pick(&[
            (GFP_KERNEL | Gfp::DMA | Gfp::DMA32, 0),
            (GFP_KERNEL | Gfp::MOVABLE | Gfp::RECLAIMABLE, 0),
            (GFP_KERNEL, MAX_PAGE_ORDER + 1),
            (GFP_KERNEL | Gfp::NOFAIL, 2),
            (GFP_ATOMIC | Gfp::NOFAIL, 0),
            (Gfp::from_bits_retain(0x200), 0),
        ]);
        self.note(|| format!("invalid {gfp} {order}"));
        let before = (self.a.nr_free_pages(), self.a.nr_pcp_pages());
        let inv = self.a.vm_event(VmEvent::PgallocInvalid);
        assert!(matches!(
            self.a.try_alloc_pages(gfp, order),
            Err(AllocError::Invalid(_))
        ));
        assert_eq!((self.a.nr_free_pages(), self.a.nr_pcp_pages()), before);
        assert_eq!(self.a.vm_event(VmEvent::PgallocInvalid), inv + 1);
        if order == 0 && validate(gfp, 0).is_err() {
            let mut out = [None; 4];
            assert_eq!(self.a.alloc_pages_bulk(gfp, 4, &mut out), 0);
            assert_eq!((self.a.nr_free_pages(), self.a.nr_pcp_pages()), before);
        }
    }

    fn tune(&mut self) {
        let choice = self.r.below(4);
        self.note(|| format!("tune {choice}"));
        match choice {
            0 => self
                .a
                .set_min_free_kbytes(128 + self.r.below(2048))
                .unwrap(),
            1 => self
                .a
                .set_watermark_scale_factor(1 + self.r.below(300))
                .unwrap(),
            2 => self
                .a
                .set_percpu_pagelist_high_fraction(self.r.pick(&[0, 8, 64]))
                .unwrap(),
            _ => self
                .a
                .set_watermark_boost_factor(self.r.pick(&[0, 15_000]))
                .unwrap(),
        }
    }

    /// Isolate a random range (then allocate while it is isolated, and give it back) or
    /// allocate it with `alloc_contig_range`. Refusals must leave nothing isolated; while
    /// isolated, no allocation may return a page of the range.
    fn isolate_or_contig(&mut self) {
        let zones: Vec<ZoneType> = ZoneType::ALL
            .into_iter()
            .filter(|&z| self.a.zone_of(0, z).is_some_and(|z| z.managed_zone()))
            .collect();
        let zt = self.r.pick(&zones);
        let z = self.a.zone_of(0, zt).unwrap();
        let len = 1 + self.r.below(3 * PAGEBLOCK_NR_PAGES);
        if z.spanned_pages() <= len {
            return;
        }
        let start = z.zone_start_pfn() + self.r.below(z.spanned_pages() - len);
        let end = start + len;
        let contig = self.r.chance(50);
        self.note(|| {
            format!(
                "{} [{start:#x}, {end:#x})",
                if contig { "contig" } else { "isolate" }
            )
        });
        if contig {
            match self.a.alloc_contig_range(
                start,
                end,
                Migratetype::Movable,
                GFP_KERNEL | Gfp::NOWARN,
            ) {
                Ok(_) => {
                    for pfn in start..end {
                        assert_eq!(self.page(pfn).refcount(), 1, "contig pfn {pfn:#x}");
                        self.m.insert(
                            pfn,
                            Block {
                                order: 0,
                                compound: false,
                                refs: 1,
                                gfp: GFP_KERNEL,
                            },
                        );
                        stamp(self.a, pfn, 0, false);
                    }
                    self.contig_pages += len;
                    CONTIG_OK.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => assert_eq!(self.a.nr_isolate_pageblock(), 0, "after {e}"),
            }
            return;
        }
        let (is, ie) = (
            start & !(PAGEBLOCK_NR_PAGES - 1),
            end.next_multiple_of(PAGEBLOCK_NR_PAGES),
        );
        // Each pageblock's type before: the undo must give every one its own back.
        let types_before: Vec<_> = (is..ie)
            .step_by(PAGEBLOCK_NR_PAGES as usize)
            .map(|pb| get_pageblock_migratetype(self.a.model().sparse(), pb))
            .collect();
        if let Err(e) =
            self.a
                .start_isolate_page_range(start, end, Migratetype::Movable, IsolateFlags::empty())
        {
            assert_eq!(
                (is..ie)
                    .step_by(PAGEBLOCK_NR_PAGES as usize)
                    .map(|pb| get_pageblock_migratetype(self.a.model().sparse(), pb))
                    .collect::<Vec<_>>(),
                types_before,
                "types after a refused isolation ({e})"
            );
            assert_eq!(self.a.nr_isolate_pageblock(), 0, "after {e}");
            return;
        }
        ISOLATE_OK.fetch_add(1, Ordering::Relaxed);
        if let Err(v) = zonebuddy::report::debug::check(self.a) {
            panic!("invariant violated while isolated: {v}");
        }
        for _ in 0..8 {
            let gfp = self.r.pick(GFP_CLASSES);
            let order = random_order(&mut self.r);
            if let Ok(page) = self.a.try_alloc_pages(gfp | Gfp::NOWARN, order) {
                let pfn = self.a.page_to_pfn(page);
                assert!(
                    pfn + (1 << order) <= is || pfn >= ie,
                    "isolated pfn {pfn:#x} order {order} handed out"
                );
                self.record_alloc(page, gfp, order);
            }
        }
        // Frees into the range go to the isolate lists.
        if self.r.chance(50) {
            self.free_one();
        }
        if let Err(v) = zonebuddy::report::debug::check(self.a) {
            panic!("invariant violated while isolated: {v}");
        }
        let _ = self
            .a
            .test_pages_isolated(start, end, IsolateFlags::empty());
        self.a.undo_isolate_page_range(start, end);
        assert_eq!(self.a.nr_isolate_pageblock(), 0);
        assert_eq!(
            (is..ie)
                .step_by(PAGEBLOCK_NR_PAGES as usize)
                .map(|pb| get_pageblock_migratetype(self.a.model().sparse(), pb))
                .collect::<Vec<_>>(),
            types_before,
            "each pageblock's type after undo_isolate_page_range [{is:#x}, {ie:#x})"
        );
    }

    fn step(&mut self) {
        match self.r.below(100) {
            0..35 => self.alloc_one(),
            35..65 => self.free_one(),
            65..71 => self.alloc_bulk(),
            71..76 => self.get_page(),
            76..79 => self.exhaust(),
            79..84 => self.drain(),
            84..93 => self.bad_free(),
            93..96 => self.invalid(),
            96..98 => self.isolate_or_contig(),
            _ => self.tune(),
        }
    }

    /// Free everything and check every page came back.
    fn finish(&mut self) {
        let mut blocks: Vec<(u64, Block)> = self.m.blocks.iter().map(|(&p, &b)| (p, b)).collect();
        // Free in random order.
        for i in (1..blocks.len()).rev() {
            let j = self.r.below(i as u64 + 1) as usize;
            blocks.swap(i, j);
        }
        let every = (blocks.len() / 16).max(32);
        self.quiet = true;
        for (n, (pfn, b)) in blocks.into_iter().enumerate() {
            let mut b = b;
            loop {
                let refs = b.refs;
                self.free_block(pfn, b);
                if refs == 1 {
                    break;
                }
                b = self.m.blocks[&pfn];
            }
            if n % every == 0 {
                self.after_step();
            }
        }
        self.a.drain_all_pages();
        assert_eq!(
            self.a.nr_free_pages() + self.m.leaked,
            self.a.totalram_pages()
        );
        self.after_step();
    }
}

/// Build (or rebuild, reusing the simulated RAM) the machine for one sequence.
fn fresh_machine(machine: &str, old: Option<SimAllocator>) -> SimAllocator {
    let (map, params) = match machine {
        "small" => (
            zonebuddy::port::sim::qemu_e820(64 * MIB),
            zonebuddy::model::mm_init::ModelParams::default(),
        ),
        // A Normal zone big enough (over 200 MiB) for a highatomic reserve.
        "big" => (
            zoned_map(224),
            zonebuddy::model::mm_init::ModelParams::default(),
        ),
        _ => (
            zoned_map(96),
            zonebuddy::model::mm_init::ModelParams {
                movablecore: Some(zonebuddy::model::zone::CoreSize::Bytes(32 * MIB)),
                ..Default::default()
            },
        ),
    };
    match old {
        Some(a) => a
            .rebuild(&map, &[], &params)
            .unwrap_or_else(|e| panic!("{e}")),
        None => SimAllocator::build(&map, &[], &params, 1).unwrap_or_else(|e| panic!("{e}")),
    }
}

fn run_sequence(a: &SimAllocator, machine: &str, seed: u64) {
    // Three sequences in four run with full page checks (bad states planted anywhere in a
    // block), one with the default head-only checks.
    let full_checks = seed % 4 != 3;
    a.set_page_checks(if full_checks {
        PageChecks::Full
    } else {
        PageChecks::Head
    });
    let mut run = Run {
        a,
        m: Model::default(),
        r: Rng::new(seed),
        boot_pgfree: a.vm_event(VmEvent::Pgfree),
        recently_freed: Vec::new(),
        log: Vec::new(),
        quiet: false,
        full_checks,
        contig_pages: 0,
    };
    run.after_step();
    let steps = 20 + run.r.below(50);
    let result = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..steps {
            run.step();
            run.after_step();
        }
        run.finish();
    }));
    if let Err(e) = result {
        eprintln!("machine {machine} seed {seed} failed; last operations:");
        for l in run.log.iter().rev().take(12).rev() {
            eprintln!("  {l}");
        }
        resume_unwind(e);
    }
}

/// Runs `percent`% of the `MM_MODEL_CASES` sequences (default 1000) on `machine`.
/// Run `percent` % of the model cases on `machine`, the share `part` of `parts` (case `i`
/// runs in part `i % parts`; the recorded regression seeds in part 0), so that one
/// machine's cases can be split between tests that run in parallel.
fn run_machine(machine: &str, percent: u64, part: u64, parts: u64) {
    let base = env_u64("MM_MODEL_SEED", 0x5eed);
    let cases = (env_u64("MM_MODEL_CASES", 1000) * percent).div_ceil(100);
    let regressions = if part == 0 {
        regression_seeds(machine)
    } else {
        Vec::new()
    };
    let seeds = regressions.into_iter().chain(
        (0..cases)
            .filter(|i| i % parts == part)
            .map(|i| base.wrapping_add(i)),
    );
    let mut a = None;
    for seed in seeds {
        let m = fresh_machine(machine, a.take());
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| run_sequence(&m, machine, seed))) {
            record_failure(machine, seed);
            eprintln!("failing seed recorded: {machine} {seed}");
            resume_unwind(e);
        }
        a = Some(m);
    }
    if machine == "small" && cases >= 100 {
        let (iso, contig) = (
            ISOLATE_OK.load(Ordering::Relaxed),
            CONTIG_OK.load(Ordering::Relaxed),
        );
        eprintln!("{machine}: {iso} ranges isolated, {contig} contiguous ranges allocated");
        assert!(
            iso > 0 && contig > 0,
            "isolate/contig steps never succeeded"
        );
    }
}

/// Most sequences run on the small machine, whose checks are cheapest.
#[test]
fn model_small_machine() {
    run_machine("small", 60, 0, 1);
}

/// The zoned machine's cases take the longest: split in two tests, so that they run on
/// two cores (the test harness runs tests in parallel).
#[test]
fn model_zoned_machine_even_cases() {
    run_machine("zoned", 30, 0, 2);
}

#[test]
fn model_zoned_machine_odd_cases() {
    run_machine("zoned", 30, 1, 2);
}

/// Each check of the big machine walks four times the pages.
#[test]
fn model_big_machine() {
    run_machine("big", 10, 0, 1);
}

#[test]
fn page_size_is_4k() {
    assert_eq!(PAGE_SIZE, 4096);
}
