//! The allocation fast path: a request of a pcp order (0-3 and 9) that the first zone of
//! its zonelist can serve through this CPU's pcp list, without the general path's
//! per-call set-up.
//!
//! # Why a separate entry
//!
//! Most page allocations are single pages, most higher-order ones are of the few orders
//! with pcp lists (THP-sized blocks among them), and most of either hit the pcp list or
//! refill it from the first zone. The general path (`__alloc_pages` →
//! `get_page_from_freelist` → `rmqueue` → `rmqueue_pcplist`) does for every call work
//! whose answer only depends on the request's *class*: validating the gfp bits, mapping
//! them to a highest zone and a migratetype, finding the preferred zone in the node's
//! zonelist, deciding `ALLOC_NOFRAGMENT`, setting up the zonelist walk. Here the answers
//! are computed once, when the allocator is built, into a [`FastPlan`] per node and gfp
//! class, kept in the node's descriptor ([`super::zonelist`]; the zonelists never change
//! afterwards), and the request goes straight to the first zone's pcp list. Together
//! with a free path whose order-0 case is one branch of checks (`free_block`), that took
//! an order-0 alloc+free pair from 563 to about 350 instructions under callgrind; taking
//! order 9 here too, with [`zone_watermark_quick`] reading the zone's bitmap of
//! non-empty free lists in one load per order, took an order-9 allocation from about
//! 710 to about 490 instructions in bulk and from 450 to 230 when the block is cached.
//!
//! # Same rules, same code
//!
//! The fast path is not a second allocator: it is the first zone of the zonelist walk,
//! through the general path's own pieces: `zone_watermark_fast` (which starts with
//! [`zone_watermark_quick`]), `rmqueue_pcplist` (the same lock, refill by `rmqueue_bulk`
//! with the same `ALLOC_*` flags, `check_new_pages` and counters), the same
//! boosted-watermark hand-off and `prep_new_page`. Anything else (an order without pcp
//! lists, a gfp bit it does not model, a failed watermark check, a busy list or one that
//! cannot be refilled) returns `None` with nothing changed, and the caller goes on with
//! the general path, which decides: a refill that finds nothing moves no page, and
//! `rmqueue_pcplist` leaves the list's `free_factor` alone when it fails here, so the
//! general path's own attempt at the same zone decays it once, as it would alone. (A bad
//! page popped from the list is the one exception: it is reported and dropped, exactly
//! as the general path does, before falling through.)
//!
//! `fast_path_agrees_with_the_general_path` runs twin machines, one with the fast path
//! and one without, through the same random operations at every pcp order and two
//! others, and requires the same pfn at every step, the same pcp counts and
//! `free_factor`s after every step and the same counters at the end;
//! `quick_watermark_check_implies_the_full_one` checks the quick comparison against the
//! full one; `plans_follow_prepare_alloc_pages` checks every plan against the general
//! path's own answer.

#![deny(unsafe_code)]

use super::*;

/// The gfp bits that only select the zone and migratetype: a request's class.
pub(super) const GFP_CLASS_MASK: u32 = Gfp::ZONEMASK.bits() | Gfp::MOVABLE_MASK.bits();
/// Number of gfp classes.
pub(super) const NR_GFP_CLASSES: usize = (GFP_CLASS_MASK as usize) + 1;

/// Gfp bits the fast path handles: the class bits, and bits that change nothing for an
/// allocation served from the first zone's pcp list (they matter in the slow path, which the
/// general path reaches). `__GFP_ZERO`, `__GFP_COMP` (built by `prep_new_page`) and
/// `__GFP_KSWAPD_RECLAIM` are handled here. Not here: `__GFP_NOFAIL` (validated by the
/// general path), `__GFP_THISNODE` (changes the zonelist walk) and unknown bits (refused
/// by the general path).
const GFP_FAST_MASK: u32 = GFP_CLASS_MASK
    | Gfp::HIGH.bits()
    | Gfp::IO.bits()
    | Gfp::FS.bits()
    | Gfp::ZERO.bits()
    | Gfp::DIRECT_RECLAIM.bits()
    | Gfp::KSWAPD_RECLAIM.bits()
    | Gfp::WRITE.bits()
    | Gfp::NOWARN.bits()
    | Gfp::RETRY_MAYFAIL.bits()
    | Gfp::NORETRY.bits()
    | Gfp::MEMALLOC.bits()
    | Gfp::NOMEMALLOC.bits()
    | Gfp::COMP.bits()
    | Gfp::HARDWALL.bits()
    | Gfp::ACCOUNT.bits();

/// What a request of one gfp class on one node resolves to: its preferred zone
/// (the first of its zonelist), its migratetype, the highest zone index (for
/// `lowmem_reserve`) and the fast path's `ALLOC_*` flags without `ALLOC_KSWAPD` (which
/// depends on a bit outside the class).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastPlan {
    /// The preferred zone; its pointer is null when the class is invalid or the node has
    /// no zone for it.
    zr: ZoneRef,
    /// `ac->migratetype`.
    migratetype: Migratetype,
    /// `ac->highest_zoneidx`.
    highest: ZoneType,
    /// `ALLOC_WMARK_LOW`, plus `ALLOC_CMA` and `ALLOC_NOFRAGMENT` as the general path
    /// would set them.
    alloc_flags: AllocFlags,
}

impl FastPlan {
    pub(super) const NONE: FastPlan = FastPlan {
        zr: NO_ZONE,
        migratetype: Migratetype::Unmovable,
        highest: ZoneType::Dma,
        alloc_flags: AllocFlags::empty(),
    };
}

impl<P: Platform> PageAllocator<P> {
    /// Fill every online node's plans, entry by entry (no table-sized temporary on the
    /// stack).
    pub(super) fn fill_fast_plans(&mut self) {
        for nid in 0..MAX_NUMNODES {
            if !self.node_online(nid) {
                continue;
            }
            for class in 0..NR_GFP_CLASSES {
                let plan = self.fast_plan_of(nid, class);
                if let Some(n) = self.model.node_mut(nid) {
                    n.alloc.fast_plans[class] = plan;
                }
            }
        }
    }

    fn fast_plan_of(&self, nid: usize, class: usize) -> FastPlan {
        if !self.node_online(nid) {
            return FastPlan::NONE;
        }
        let gfp = Gfp::from_bits_truncate(class as u32);
        let Ok(placement) = validate(gfp, 0) else {
            return FastPlan::NONE;
        };
        let ac = self.alloc_context(gfp, placement, nid);
        let Some(pref) = ac.preferred else {
            return FastPlan::NONE;
        };
        if ac.thisnode {
            return FastPlan::NONE;
        }
        let Some(zr) = self.zone_ref(pref.nid as usize, pref.zone_idx as usize) else {
            return FastPlan::NONE;
        };
        if zr.slot == NO_SLOT || order_to_pindex(ac.migratetype, 0).is_none() {
            return FastPlan::NONE;
        }
        FastPlan {
            zr,
            migratetype: ac.migratetype,
            highest: ac.highest_zoneidx,
            alloc_flags: self.first_attempt_alloc_flags(gfp, &ac),
        }
    }

    /// Allocate a block of a pcp order (0-3, 9) from this CPU's pcp list of the request's
    /// preferred zone, refilled from that zone's buddy lists when empty, or `None` with
    /// nothing changed when the general path must decide.
    #[inline(always)]
    pub(super) fn alloc_pages_fast(&self, gfp: Gfp, order: u32, nid: usize) -> Option<&Page> {
        #[cfg(test)]
        if self.fast_path_off.load(Ordering::Relaxed) {
            return None;
        }
        let bits = gfp.bits();
        if bits & !GFP_FAST_MASK != 0 || !pcp_allowed_order(order) {
            return None;
        }
        let plan = self
            .model
            .node(nid)?
            .alloc
            .fast_plans
            .get((bits & GFP_CLASS_MASK) as usize)?;
        if plan.zr.zone.is_null() {
            return None;
        }
        let zone = self.zone(plan.zr);
        let mut alloc_flags = plan.alloc_flags;
        if bits & Gfp::KSWAPD_RECLAIM.bits() != 0 {
            alloc_flags |= AllocFlags::KSWAPD;
        }
        if !self.zone_watermark_fast(zone, order, plan.highest, alloc_flags) {
            return None;
        }
        let page = self.rmqueue_pcplist(
            plan.zr,
            zone,
            order,
            plan.migratetype,
            alloc_flags,
            true,
            nid,
        )?;
        self.rmqueue_boost_check(zone, alloc_flags);
        self.prep_new_page(page, order, gfp);
        Some(page)
    }
}

/// The comparison `zone_watermark_fast` starts with, for any order: usable free pages
/// above the unlowered mark, the boost and the lowmem reserve, and (above order 0) a
/// free block of at least `order` on a list the request may use, read from the zone's
/// per-order bitmap of non-empty lists in one load per order. True means the full check
/// ([`watermark::zone_watermark_ok`]) passes too: it subtracts the same unusable pages
/// and only lowers the mark for reserve flags. False does not mean failure, only that
/// the full check must decide.
#[inline(always)]
pub(super) fn zone_watermark_quick(
    zone: &Zone,
    order: u32,
    highest: usize,
    alloc_flags: AllocFlags,
) -> bool {
    let c = &zone.counters;
    let w = &zone.wm;
    let mut unusable = (1u64 << order) - 1;
    if !alloc_flags.intersects(AllocFlags::RESERVES) {
        unusable += c.nr_free_highatomic.load(Ordering::Relaxed);
    }
    if !alloc_flags.contains(AllocFlags::CMA) {
        unusable += zone.zone_page_state(crate::report::vmstat::ZoneStatItem::NrFreeCmaPages);
    }
    let mark = w.wmark[alloc_flags.wmark() as usize].load(Ordering::Relaxed)
        + w.boost.load(Ordering::Relaxed)
        + w.lowmem_reserve
            .get(highest)
            .map_or(0, |r| r.load(Ordering::Relaxed));
    if zone.nr_free_pages() <= unusable.saturating_add(mark) {
        return false;
    }
    if order == 0 {
        return true;
    }
    let mut lists = (1u8 << Migratetype::Unmovable as u8)
        | (1 << Migratetype::Movable as u8)
        | (1 << Migratetype::Reclaimable as u8);
    if alloc_flags.contains(AllocFlags::CMA) {
        lists |= 1 << Migratetype::Cma as u8;
    }
    if alloc_flags.intersects(AllocFlags::HIGHATOMIC | AllocFlags::OOM) {
        lists |= 1 << Migratetype::HighAtomic as u8;
    }
    c.free_nonempty
        .get(order as usize..)
        .is_some_and(|o| o.iter().any(|b| b.load(Ordering::Relaxed) & lists != 0))
}

#[cfg(all(test, feature = "std"))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::model::memmap::{FirmwareRange, RangeKind};
    use crate::model::mm_init::ModelParams;
    use crate::page_alloc::gfp::{
        GFP_ATOMIC, GFP_DMA, GFP_DMA32, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT, GFP_USER,
    };
    use crate::port::sim::SimAllocator;

    const MIB: u64 = 1 << 20;

    /// DMA, DMA32 and a Normal zone of `normal_mib` MiB.
    fn machine(normal_mib: u64) -> SimAllocator {
        let map = [
            FirmwareRange::new(0x100000, 64 * MIB, RangeKind::Usable),
            FirmwareRange::new(4 << 30, (4 << 30) + normal_mib * MIB, RangeKind::Usable),
        ];
        SimAllocator::build(&map, &[], &ModelParams::default(), 1).unwrap()
    }

    /// xorshift64: a value below `n`.
    fn below(state: &mut u64, n: u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state % n
    }

    /// The two machines of a test take turns on this thread, which must be bound to the
    /// one it calls into.
    fn on(m: &SimAllocator) -> &SimAllocator {
        m.sim_platform().bind_current_thread(0);
        m
    }

    /// Every zone's watermark boost and zone flags (`ZONE_BOOSTED_WATERMARK`).
    fn boosts(m: &SimAllocator) -> Vec<(u64, u64)> {
        m.all_zones()
            .map(|zr| {
                let z = m.zone(zr);
                (
                    z.wm.boost.load(Ordering::Relaxed),
                    z.wm.flags.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Every zone's pcp list on CPU 0: pages held, `free_factor` (how big the next drain
    /// is) and `alloc_factor` (how big the next refill is), so a path that decays or
    /// raises a factor twice shows.
    fn pcp_states(m: &SimAllocator) -> Vec<(u64, u32, u32)> {
        m.all_zones()
            .filter(|zr| zr.slot != NO_SLOT)
            .filter_map(|zr| m.percpu.pcp(0, zr.slot as usize))
            .map(|pcp| {
                let l = pcp.lock.lock(&m.platform);
                (l.count, l.free_factor, l.alloc_factor)
            })
            .collect()
    }

    /// Set `free_factor` and `alloc_factor` of every zone's pcp list on CPU 0.
    fn set_factors(m: &SimAllocator, ff: u32, af: u32) {
        for zr in m.all_zones().filter(|zr| zr.slot != NO_SLOT) {
            if let Some(pcp) = m.percpu.pcp(0, zr.slot as usize) {
                let mut l = pcp.lock.lock(&m.platform);
                l.free_factor = ff;
                l.alloc_factor = af;
            }
        }
    }

    /// Every gfp the twin test draws from: each class alone (the invalid ones too), the
    /// usual combinations, and bits that send requests to the general path.
    fn gfps() -> Vec<Gfp> {
        let mut v: Vec<Gfp> = (0..NR_GFP_CLASSES as u32)
            .map(Gfp::from_bits_truncate)
            .collect();
        v.extend([
            GFP_KERNEL,
            GFP_ATOMIC,
            GFP_NOWAIT,
            GFP_USER,
            GFP_HIGHUSER_MOVABLE,
            GFP_DMA,
            GFP_DMA32,
            GFP_KERNEL | Gfp::ZERO,
            GFP_KERNEL | Gfp::COMP,
            GFP_KERNEL | Gfp::THISNODE,
            GFP_KERNEL | Gfp::NOFAIL,
            GFP_ATOMIC | Gfp::NOFAIL,
            GFP_HIGHUSER_MOVABLE | Gfp::RECLAIMABLE,
            Gfp::from_bits_retain(GFP_KERNEL.bits() | 0x8000_0000),
        ]);
        v
    }

    /// Two identical machines run the same random sequence of allocations and frees, one
    /// with the fast path and one without: every step must hand out the same pfn (or
    /// fail the same way), and at the end the counters, the free pages and the pcp
    /// contents must be equal. The fast path is a shortcut, never a different policy.
    /// Frees go through `__free_pages` and `put_page`; double frees are refused alike.
    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let gfps = gfps();
        for seed in 1..=6u64 {
            // Even seeds: a small Normal zone and more allocations than frees, so the
            // zones run below their watermarks and then out of memory.
            let (normal, steps, alloc_pct) = if seed % 2 == 0 {
                (24, 60_000, 85)
            } else {
                (256, 20_000, 60)
            };
            let fast = machine(normal);
            let slow = machine(normal);
            slow.fast_path_off.store(true, Ordering::Relaxed);
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut held: Vec<(&Page, &Page, u32)> = Vec::new();
            let mut boosted_steps = 0;
            for step in 0..steps {
                // Watermark boosts (raised by fragmenting fallbacks, handed to kswapd by
                // the next allocation that may wake it) must come and go alike.
                let (fb, sb) = (boosts(&fast), boosts(&slow));
                assert_eq!(fb, sb, "seed {seed} step {step}: boosts and boost flags");
                assert_eq!(
                    pcp_states(on(&fast)),
                    pcp_states(on(&slow)),
                    "seed {seed} step {step}: pcp count, free_factor, alloc_factor"
                );
                if fb.iter().any(|&(b, f)| b != 0 || f != 0) {
                    boosted_steps += 1;
                }
                let r = below(&mut rng, 100);
                if r < alloc_pct || held.is_empty() {
                    let gfp = gfps[below(&mut rng, gfps.len() as u64) as usize];
                    // Mostly order 0; then every pcp order (1-3, 9) and two without
                    // pcp lists (4, 10), which only the general path serves.
                    let order = if below(&mut rng, 8) == 0 {
                        [1, 2, 3, 9, 9, 9, 4, 10][below(&mut rng, 8) as usize]
                    } else {
                        0
                    };
                    if below(&mut rng, 4) == 0 {
                        // As if the lists had drained, or been refilled, in growing
                        // bites: an attempt must decay the drain factor and raise the
                        // refill factor exactly as the general path does.
                        let ff = below(&mut rng, 4) as u32 + 1;
                        let af = below(&mut rng, 6) as u32;
                        set_factors(on(&fast), ff, af);
                        set_factors(on(&slow), ff, af);
                    }
                    let a = on(&fast).try_alloc_pages(gfp | Gfp::NOWARN, order);
                    let b = on(&slow).try_alloc_pages(gfp | Gfp::NOWARN, order);
                    match (a, b) {
                        (Ok(pa), Ok(pb)) => {
                            assert_eq!(
                                on(&fast).page_to_pfn(pa),
                                on(&slow).page_to_pfn(pb),
                                "seed {seed} step {step}: {gfp} order {order}"
                            );
                            held.push((pa, pb, order));
                        }
                        (Err(ea), Err(eb)) => assert_eq!(ea, eb, "seed {seed} step {step}"),
                        (a, b) => panic!("seed {seed} step {step}: {gfp}: {a:?} vs {b:?}"),
                    }
                } else if r == 97 && below(&mut rng, 8) == 0 {
                    // A burst of frees: the pcp lists drain in growing bites
                    // (`free_factor`), which the next allocations must decay alike.
                    for _ in 0..held.len().min(40) {
                        let i = below(&mut rng, held.len() as u64) as usize;
                        let (pa, pb, order) = held.swap_remove(i);
                        assert_eq!(
                            on(&fast).free_pages(pa, order),
                            on(&slow).free_pages(pb, order)
                        );
                    }
                } else if r < 98 {
                    let i = below(&mut rng, held.len() as u64) as usize;
                    let (pa, pb, order) = held.swap_remove(i);
                    if order == 0 && r % 3 == 0 {
                        // The last reference dropped by put_page, after an extra one.
                        on(&fast).get_page(pa);
                        on(&slow).get_page(pb);
                        assert_eq!(on(&fast).put_page(pa), on(&slow).put_page(pb));
                        assert_eq!(on(&fast).put_page(pa), on(&slow).put_page(pb));
                    } else {
                        assert_eq!(
                            on(&fast).free_pages(pa, order),
                            on(&slow).free_pages(pb, order)
                        );
                    }
                } else if r == 98 {
                    // A double free: refused alike.
                    if let Some(&(pa, pb, order)) = held.first() {
                        on(&fast).free_pages(pa, order).unwrap();
                        on(&slow).free_pages(pb, order).unwrap();
                        held.swap_remove(0);
                        let ea = on(&fast).free_pages(pa, order);
                        let eb = on(&slow).free_pages(pb, order);
                        assert!(ea.is_err());
                        assert_eq!(ea, eb);
                    }
                } else {
                    on(&fast).drain_all_pages();
                    on(&slow).drain_all_pages();
                }
            }
            assert_eq!(
                on(&fast).vm_events(),
                on(&slow).vm_events(),
                "seed {seed}: vm events"
            );
            assert_eq!(
                on(&fast).nr_free_pages(),
                on(&slow).nr_free_pages(),
                "seed {seed}"
            );
            assert_eq!(
                on(&fast).nr_pcp_pages(),
                on(&slow).nr_pcp_pages(),
                "seed {seed}"
            );
            crate::report::debug::check(on(&fast)).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
            crate::report::debug::check(on(&slow)).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
            // The fast path did serve most order-0 requests here.
            assert!(on(&fast).vm_event(VmEvent::pgalloc(ZoneType::Normal)) > 0);
            if seed % 2 == 0 {
                // The low-memory runs do go through boosted watermarks.
                assert!(
                    boosted_steps > 0,
                    "seed {seed}: no boost seen ({} boost events)",
                    on(&fast).vm_event(VmEvent::WatermarkBoost)
                );
            }
            for (pa, pb, order) in held {
                on(&fast).free_pages(pa, order).unwrap();
                on(&slow).free_pages(pb, order).unwrap();
            }
        }
    }

    /// The quick comparison never passes a request the full check would fail: over zones
    /// filled and fragmented at random, every order, every zone limit and the flag sets
    /// that change the check.
    #[test]
    fn quick_watermark_check_implies_the_full_one() {
        let m = machine(64);
        on(&m);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut held = Vec::new();
        let flag_sets = [
            AllocFlags::WMARK_LOW,
            AllocFlags::WMARK_HIGH,
            AllocFlags::WMARK_MIN,
            AllocFlags::WMARK_LOW | AllocFlags::CMA,
            AllocFlags::WMARK_MIN | AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK,
            AllocFlags::WMARK_MIN | AllocFlags::HIGHATOMIC,
            AllocFlags::WMARK_MIN | AllocFlags::OOM,
        ];
        let (mut quick, mut checked) = (0u64, 0u64);
        for step in 0..3_000 {
            if below(&mut rng, 3) != 0 || held.is_empty() {
                let order = [0, 0, 0, 1, 3, 9][below(&mut rng, 6) as usize];
                let gfp =
                    [GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_ATOMIC][below(&mut rng, 3) as usize];
                if let Some(p) = m.alloc_pages(gfp | Gfp::NOWARN, order) {
                    held.push((p, order));
                }
            } else {
                let (p, order) = held.swap_remove(below(&mut rng, held.len() as u64) as usize);
                m.free_pages(p, order).unwrap();
            }
            if step % 10 != 0 {
                continue;
            }
            for zr in m.all_zones() {
                let zone = m.zone(zr);
                for order in 0..=MAX_PAGE_ORDER {
                    for highest in 0..MAX_NR_ZONES {
                        let hz = ZoneType::from_index(highest).unwrap();
                        for &f in &flag_sets {
                            checked += 1;
                            if !zone_watermark_quick(zone, order, highest, f) {
                                continue;
                            }
                            quick += 1;
                            let full = watermark::zone_watermark_ok(
                                &zone.free_state(),
                                order,
                                zone.watermarks().wmark_pages(f.wmark()),
                                hz,
                                f,
                                |o, mt| zone.has_free_block(o, mt),
                            );
                            assert!(full, "step {step} order {order} highest {highest} {f:?}");
                        }
                    }
                }
            }
        }
        // Both answers occur.
        assert!(quick > 0 && quick < checked, "{quick} of {checked}");
        for (p, order) in held {
            m.free_pages(p, order).unwrap();
        }
    }

    /// The plans are what the general path's own functions say, class by class: the first
    /// zone of the zonelist, the migratetype's list, and no plan for an invalid class.
    #[test]
    fn plans_follow_prepare_alloc_pages() {
        let a = machine(256);
        for class in 0..NR_GFP_CLASSES {
            let gfp = Gfp::from_bits_truncate(class as u32);
            let plan = a.model.node(0).unwrap().alloc.fast_plans[class];
            let mut flags = AllocFlags::WMARK_LOW;
            match a.prepare_alloc_pages(gfp, 0, 0, &mut flags) {
                Err(_) => assert!(plan.zr.zone.is_null(), "class {class:#x} is invalid"),
                Ok(ac) => {
                    let pref = ac.preferred.unwrap();
                    let zr = a
                        .zone_ref(pref.nid as usize, pref.zone_idx as usize)
                        .unwrap();
                    assert_eq!(plan.zr.zone, zr.zone, "class {class:#x}");
                    assert_eq!(plan.zr.slot, zr.slot);
                    assert_eq!(plan.migratetype, ac.migratetype);
                    assert_eq!(plan.highest, ac.highest_zoneidx);
                    assert!(plan.alloc_flags.contains(flags));
                }
            }
        }
        // Offline nodes have no plans (no descriptor at all): such requests take the
        // general path.
        assert!(a.model.node(1).is_none());
        assert!(a.alloc_pages_fast(GFP_KERNEL, 0, 1).is_none());
        // Orders without pcp lists take the general path.
        assert!(a.alloc_pages_fast(GFP_KERNEL, 4, 0).is_none());
        assert!(a.alloc_pages_fast(GFP_KERNEL, 10, 0).is_none());
        assert!(a.alloc_pages_fast(GFP_KERNEL, 9, 0).is_some());
    }
}
