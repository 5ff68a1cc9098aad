//! The order-0 pcp fast paths: an allocation that the CPU's pcp list can serve and a free
//! that the CPU's pcp list can take, without the general path's per-call set-up.
//!
//! # Why a separate path
//!
//! Most page allocations are single pages and most of them hit the pcp list. The general
//! path (`__alloc_pages` → `get_page_from_freelist` → `rmqueue` → `rmqueue_pcplist`) does
//! for every call work whose answer only depends on the request's *class*: validating the
//! gfp bits, mapping them to a highest zone and a migratetype, finding the preferred zone
//! in the node's zonelist, deciding `ALLOC_NOFRAGMENT`, setting up the zonelist walk. Here
//! the answers are computed once, when the allocator is built, into a [`FastPlan`] per
//! node and gfp class (the zonelists never change afterwards). That halved the
//! instructions of an order-0 alloc+free pair (563 to 354 under callgrind).
//!
//! # Same rules, fewer steps
//!
//! The fast path is not a second allocator. It does exactly what the general path does
//! for the *first* zone of the walk when that zone's order-0 watermark check passes and its
//! pcp list holds a page: the same watermark arithmetic, the same `free_factor` decay, the
//! same `check_new_page`, the same counters, the same `prep_new_page`. Anything else (a
//! gfp bit it does not model, a failed watermark, an empty or busy list, a bad page)
//! returns `None` *before* changing any state, and the caller falls through to the general
//! path, which decides. (A bad page found on the list is the one exception: it is
//! reported and dropped, exactly as the general path would, before falling through.)
//! `fast_path_agrees_with_the_general_path` runs twin machines, one with the fast paths
//! and one without, through the same random operations and requires the same pfn at every
//! step and the same counters at the end; `plans_follow_prepare_alloc_pages` checks every
//! plan against the general path's own answer.
//!
//! The free side is the order-0 tail of `free_block` + `free_unref_page` with the
//! pageblock type lookup and the pcp push in one function; a page whose state is bad
//! takes the general path, which reports it.

use super::*;

/// The gfp bits that only select the zone and migratetype: a request's class.
pub(super) const GFP_CLASS_MASK: u32 = Gfp::ZONEMASK.bits() | Gfp::MOVABLE_MASK.bits();
/// Number of gfp classes.
pub(super) const NR_GFP_CLASSES: usize = (GFP_CLASS_MASK as usize) + 1;

/// Gfp bits the fast path handles: the class bits, and bits that change nothing for an
/// order-0 allocation served from a pcp list (they matter in the slow path, which the
/// general path reaches). `__GFP_ZERO`, `__GFP_COMP` (nothing to build at order 0) and
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

/// What an order-0 request of one gfp class on one node resolves to: its preferred zone
/// (the first of its zonelist), the pcp list index, the highest zone index (for
/// `lowmem_reserve`) and the fast path's `ALLOC_*` flags without `ALLOC_KSWAPD` (which
/// depends on a bit outside the class).
#[derive(Clone, Copy, Debug)]
pub(super) struct FastPlan {
    /// The preferred zone; null when the class is invalid or the node has no zone for it.
    zone: *const Zone,
    /// The zone's pcp slot.
    slot: u16,
    /// The pcp list for the class's migratetype at order 0.
    pindex: u8,
    /// `ac->highest_zoneidx`.
    highest: u8,
    /// `ALLOC_WMARK_LOW`, plus `ALLOC_CMA` and `ALLOC_NOFRAGMENT` as the general path
    /// would set them.
    alloc_flags: AllocFlags,
}

impl FastPlan {
    pub(super) const NONE: FastPlan = FastPlan {
        zone: ptr::null(),
        slot: NO_SLOT,
        pindex: 0,
        highest: 0,
        alloc_flags: AllocFlags::empty(),
    };
}

impl<P: Platform + 'static> PageAllocator<P> {
    /// The plan of every gfp class on every node, computed with the general path's own
    /// functions so the two cannot disagree.
    pub(super) fn build_fast_plans(&self) -> [[FastPlan; NR_GFP_CLASSES]; MAX_NUMNODES] {
        core::array::from_fn(|nid| core::array::from_fn(|class| self.fast_plan_of(nid, class)))
    }

    fn fast_plan_of(&self, nid: usize, class: usize) -> FastPlan {
        if nid >= MAX_NUMNODES || !self.online[nid] {
            return FastPlan::NONE;
        }
        let gfp = Gfp::from_bits_truncate(class as u32);
        let mut alloc_flags = AllocFlags::WMARK_LOW;
        let Ok(ac) = self.prepare_alloc_pages(gfp, 0, nid, &mut alloc_flags) else {
            return FastPlan::NONE;
        };
        let Some(pref) = ac.preferred else {
            return FastPlan::NONE;
        };
        if ac.thisnode {
            return FastPlan::NONE;
        }
        let zr = self.zones[pref.nid as usize * MAX_NR_ZONES + pref.zone_idx as usize];
        let Some(pindex) = order_to_pindex(ac.migratetype, 0) else {
            return FastPlan::NONE;
        };
        if zr.zone.is_null() || zr.slot == NO_SLOT {
            return FastPlan::NONE;
        }
        let pref_type = ZoneType::from_index(pref.zone_idx as usize).unwrap_or(ZoneType::Normal);
        alloc_flags |= alloc_flags_nofragment(
            gfp,
            pref_type,
            self.dma32_populated[pref.nid as usize],
            self.nr_online_nodes,
        );
        FastPlan {
            zone: zr.zone,
            slot: zr.slot,
            pindex: pindex as u8,
            highest: ac.highest_zoneidx.index() as u8,
            alloc_flags,
        }
    }

    /// Allocate one page from this CPU's pcp list of the request's preferred zone, or
    /// `None` with nothing changed when the general path must decide.
    #[inline(always)]
    pub(super) fn alloc_page_fast(&self, gfp: Gfp, nid: usize) -> Option<&Page> {
        #[cfg(test)]
        if self.fast_paths_off.load(Ordering::Relaxed) {
            return None;
        }
        let bits = gfp.bits();
        if bits & !GFP_FAST_MASK != 0 {
            return None;
        }
        let plan = self
            .fast_plans
            .get(nid)?
            .get((bits & GFP_CLASS_MASK) as usize)?;
        if plan.zone.is_null() {
            return None;
        }
        // SAFETY: a non-null plan zone is one of `self.zones`, which point into node
        // descriptors owned by `self.model` and live as long as `self`.
        let zone = unsafe { &*plan.zone };
        let mut alloc_flags = plan.alloc_flags;
        if bits & Gfp::KSWAPD_RECLAIM.bits() != 0 {
            alloc_flags |= AllocFlags::KSWAPD;
        }
        if !zone_watermark_order0(zone, plan.highest as usize, alloc_flags) {
            return None;
        }
        let page = {
            let _irq = LocalIrqGuard::new(self.platform);
            let cpu = self.platform.cpu_id();
            let (hdr, pcp) = self.percpu.header_and_pcp(cpu, plan.slot as usize)?;
            let mut lists = pcp.lock.try_lock()?;
            let pindex = plan.pindex as usize;
            let page = self.page_ref(lists.pop_front(pindex)?);
            lists.count -= 1;
            if lists.free_factor != 0 {
                lists.free_factor >>= 1;
            }
            if !page_ok_at_alloc(page) {
                // Out of circulation, as the general path does; it then takes over.
                drop(lists);
                self.bad_page_at_alloc(page);
                return None;
            }
            drop(lists);
            hdr.__count_vm_events(VmEvent::pgalloc(zone.zone_type), 1);
            page
        };
        if alloc_flags.contains(AllocFlags::KSWAPD) && zone.test_flag(ZONE_BOOSTED_WATERMARK) {
            zone.wm
                .flags
                .fetch_and(!ZONE_BOOSTED_WATERMARK, Ordering::Relaxed);
            self.wakeup_kswapd(zone);
        }
        self.prep_new_page(page, 0, gfp);
        Some(page)
    }

    /// Free an order-0 page whose last reference is gone to this CPU's pcp list, or
    /// return false with nothing changed so that the general path (`free_block`) handles
    /// it: a bad or poisoned page, a page of an isolated pageblock, a busy list.
    #[inline(always)]
    pub(super) fn free_page_fast(
        &self,
        page: &Page,
        pfn: u64,
        zr: ZoneRef,
        ms: &MemSection,
    ) -> bool {
        #[cfg(test)]
        if self.fast_paths_off.load(Ordering::Relaxed) {
            return false;
        }
        let flags = page.flags_word();
        if flags & FREE_FAST_REFUSE != 0 || !page_ok_at_free(page, flags) {
            return false;
        }
        if zr.slot == NO_SLOT {
            return false;
        }
        let Some(u) = ms.usemap() else {
            return false;
        };
        // The pageblock's type, read without the zone lock as in `free_unref_page`;
        // HighAtomic and CMA pages ride on the Movable list, Isolate pages (and a
        // corrupt type) are for the general path.
        let Some(pindex) = Migratetype::from_bits(usemap_get(u, pfn, MIGRATETYPE_MASK) as u8)
            .and_then(|mt| order_to_pindex(mt, 0))
        else {
            return false;
        };
        let zone = self.zone(zr);
        let _irq = LocalIrqGuard::new(self.platform);
        let cpu = self.platform.cpu_id();
        let Some((hdr, pcp)) = self.percpu.header_and_pcp(cpu, zr.slot as usize) else {
            return false;
        };
        let Some(mut lists) = pcp.lock.try_lock() else {
            return false;
        };
        page.set_flags_word_exclusive(flags & PAGE_LINKS_MASK);
        page.set_index(0);
        // SAFETY: the page's last reference is gone and it passed the free checks, so it
        // is on no list; it is a memmap descriptor; we hold the pcp lock with interrupts
        // disabled.
        unsafe { lists.push_front(pindex, page) };
        lists.count += 1;
        if lists.count >= lists.high {
            self.free_unref_page_over_high(zone, &mut lists, pindex, hdr);
        }
        drop(lists);
        hdr.__count_vm_events(VmEvent::Pgfree, 1);
        true
    }
}

/// Page flags that send an order-0 free to the general path besides those the free-time
/// check refuses: a poisoned page (withheld) and a compound head (a corrupt order-0 free).
const FREE_FAST_REFUSE: u64 = PageFlags::HWPOISON.bits() | PageFlags::HEAD.bits();

/// The order-0 watermark comparison `zone_watermark_fast` starts with: free pages above
/// the mark, the boost and the lowmem reserve, not counting reserves the request may not
/// use. False does not mean failure, only that the full check must decide.
#[inline(always)]
pub(super) fn zone_watermark_order0(zone: &Zone, highest: usize, alloc_flags: AllocFlags) -> bool {
    let c = &zone.counters;
    let w = &zone.wm;
    let mut unusable = 0;
    if !alloc_flags.intersects(AllocFlags::RESERVES) {
        unusable += c.nr_free_highatomic.load(Ordering::Relaxed);
    }
    if !alloc_flags.contains(AllocFlags::CMA) {
        unusable += zone.zone_page_state(crate::vmstat::ZoneStatItem::NrFreeCmaPages);
    }
    let mark = w.wmark[alloc_flags.wmark() as usize].load(Ordering::Relaxed)
        + w.boost.load(Ordering::Relaxed)
        + w.lowmem_reserve
            .get(highest)
            .map_or(0, |r| r.load(Ordering::Relaxed));
    zone.nr_free_pages() > unusable.saturating_add(mark)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::gfp::{
        GFP_ATOMIC, GFP_DMA, GFP_DMA32, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT, GFP_USER,
    };
    use crate::memmap::{FirmwareRange, RangeKind};
    use crate::mm_init::ModelParams;
    use crate::sim::SimAllocator;

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
    /// with the fast paths and one without: every step must hand out the same pfn (or
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
            slow.fast_paths_off.store(true, Ordering::Relaxed);
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut held: Vec<(&Page, &Page, u32)> = Vec::new();
            for step in 0..steps {
                let r = below(&mut rng, 100);
                if r < alloc_pct || held.is_empty() {
                    let gfp = gfps[below(&mut rng, gfps.len() as u64) as usize];
                    let order = if below(&mut rng, 10) == 0 {
                        below(&mut rng, 4) as u32
                    } else {
                        0
                    };
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
                            on(&fast).free_pages_page(pa, order),
                            on(&slow).free_pages_page(pb, order)
                        );
                    }
                } else if r == 98 {
                    // A double free: refused alike.
                    if let Some(&(pa, pb, order)) = held.first() {
                        on(&fast).free_pages_page(pa, order).unwrap();
                        on(&slow).free_pages_page(pb, order).unwrap();
                        held.swap_remove(0);
                        let ea = on(&fast).free_pages_page(pa, order);
                        let eb = on(&slow).free_pages_page(pb, order);
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
            crate::debug::check(&fast).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
            crate::debug::check(&slow).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
            // The fast path did serve most order-0 requests here.
            assert!(on(&fast).vm_event(VmEvent::pgalloc(ZoneType::Normal)) > 0);
            for (pa, pb, order) in held {
                on(&fast).free_pages_page(pa, order).unwrap();
                on(&slow).free_pages_page(pb, order).unwrap();
            }
        }
    }

    /// The plans are what the general path's own functions say, class by class: the first
    /// zone of the zonelist, the migratetype's list, and no plan for an invalid class.
    #[test]
    fn plans_follow_prepare_alloc_pages() {
        let a = machine(256);
        for class in 0..NR_GFP_CLASSES {
            let gfp = Gfp::from_bits_truncate(class as u32);
            let plan = a.fast_plans[0][class];
            let mut flags = AllocFlags::WMARK_LOW;
            match a.prepare_alloc_pages(gfp, 0, 0, &mut flags) {
                Err(_) => assert!(plan.zone.is_null(), "class {class:#x} is invalid"),
                Ok(ac) => {
                    let pref = ac.preferred.unwrap();
                    let zr = a.zones[pref.nid as usize * MAX_NR_ZONES + pref.zone_idx as usize];
                    assert_eq!(plan.zone, zr.zone, "class {class:#x}");
                    assert_eq!(plan.slot, zr.slot);
                    assert_eq!(
                        Some(plan.pindex as usize),
                        order_to_pindex(ac.migratetype, 0)
                    );
                    assert_eq!(plan.highest as usize, ac.highest_zoneidx.index());
                    assert!(plan.alloc_flags.contains(flags));
                }
            }
        }
        // Offline nodes have no plans: such requests take the general path.
        assert!(a.fast_plans[1].iter().all(|p| p.zone.is_null()));
    }
}
