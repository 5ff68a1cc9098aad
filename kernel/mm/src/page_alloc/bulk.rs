//! Bulk allocation: many order-0 pages under one lock hold (Linux: `alloc_pages_bulk`).

#![deny(unsafe_code)]

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Bulk allocation.
    // ---------------------------------------------------------------------------------

    /// Fill the empty (`None`) slots among the first `nr` of `out` with order-0 pages
    /// (`alloc_pages_bulk`), from one zone's pcp list under one pcp-lock hold. Returns how
    /// many of the first `nr` slots hold a page afterwards (including those that already
    /// did). Falls back to a single `alloc_pages` when the pcp path cannot serve even one
    /// page; an invalid request fills nothing.
    pub fn alloc_pages_bulk<'a>(
        &'a self,
        gfp: Gfp,
        nr: usize,
        out: &mut [Option<&'a Page>],
    ) -> usize {
        let nr = nr.min(out.len());
        let mut nr_populated = 0;
        while nr_populated < nr && out[nr_populated].is_some() {
            nr_populated += 1;
        }
        if nr_populated == nr {
            return nr_populated;
        }
        let populated_total =
            |out: &[Option<&Page>]| out[..nr].iter().filter(|p| p.is_some()).count();
        if nr - populated_total(out) == 1 {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        }
        let mut alloc_flags = AllocFlags::WMARK_LOW;
        let preferred_nid = self.numa_node_id();
        let ac = match self.prepare_alloc_pages(gfp, 0, preferred_nid, &mut alloc_flags) {
            Ok(ac) => ac,
            Err(e) => {
                self.refuse(gfp, 0, e);
                return populated_total(out);
            }
        };
        // Refused by fault injection: single allocations, which ask again (Linux's
        // `goto failed`).
        if self.fail.armed() && self.fail.should_fail_alloc_page(gfp, 0) {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        }
        let want = (nr - nr_populated) as u64;
        // The first local zone that stays above its watermark after the whole batch.
        let mut chosen = None;
        for zr in self.zonelist(&ac) {
            let z = self.zone(zr);
            if self.nr_online_nodes > 1 && ac.preferred.is_some_and(|p| p.nid != zr.nid) {
                break;
            }
            let mark = z.watermarks().wmark_pages(alloc_flags.wmark()) + want;
            if zone_watermark_ok(
                &z.free_state(),
                0,
                mark,
                ac.highest_zoneidx,
                alloc_flags,
                |o, mt| z.has_free_block(o, mt),
            ) {
                chosen = Some(zr);
                break;
            }
        }
        let Some(zr) = chosen else {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        };
        let zone = self.zone(zr);
        let Some(pindex) = order_to_pindex(ac.migratetype, 0) else {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        };
        let mut nr_account = 0u64;
        {
            let irq = LocalIrqGuard::new(&self.platform);
            let Some((cpu, hdr, mut lists)) = self.percpu.lock_this_cpu(&irq, zr.slot as usize)
            else {
                drop(irq);
                return self.bulk_fallback(gfp, nr, out, nr_populated);
            };
            while nr_populated < nr {
                if out[nr_populated].is_some() {
                    nr_populated += 1;
                    continue;
                }
                let Some(page) = self.__rmqueue_pcplist(
                    zone,
                    0,
                    ac.migratetype,
                    alloc_flags,
                    &mut lists,
                    pindex,
                    Some(hdr),
                ) else {
                    break;
                };
                self.prep_new_page(page, 0, gfp);
                out[nr_populated] = Some(page);
                nr_populated += 1;
                nr_account += 1;
            }
            drop(lists);
            hdr.count_vm_events_irqs_off(VmEvent::pgalloc(zone.zone_type), nr_account);
            self.zone_statistics_irqs_off(cpu, ac.nid, zr, nr_account);
        }
        if nr_account == 0 {
            return self.bulk_fallback(gfp, nr, out, nr_populated);
        }
        populated_total(out)
    }

    /// One page through the normal path into the next empty slot.
    pub(super) fn bulk_fallback<'a>(
        &'a self,
        gfp: Gfp,
        nr: usize,
        out: &mut [Option<&'a Page>],
        from: usize,
    ) -> usize {
        if let Some(slot) = out[from..nr].iter().position(|p| p.is_none())
            && let Some(page) = self.alloc_pages(gfp, 0)
        {
            out[from + slot] = Some(page);
        }
        out[..nr].iter().filter(|p| p.is_some()).count()
    }
}
