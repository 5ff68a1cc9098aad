//! Suitability: is compaction worth trying for this order in this zone, and has a run
//! finished (Linux: `compaction_suitable`, `__compact_finished`)?

#![deny(unsafe_code)]

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Suitability.
    // ---------------------------------------------------------------------------------

    /// Free blocks per order of `zone`, read under its lock.
    pub(crate) fn zone_nr_free(&self, zone: &Zone) -> [u64; NR_PAGE_ORDERS] {
        let g = zone.lock.lock_irqsave(self.platform());
        core::array::from_fn(|o| g.area(o as u32).map_or(0, |a| a.nr_free()))
    }

    /// `compaction_suitable`: is compacting `zone` for `order` worth it now? The zone must
    /// have room for the targets (order-0 watermark plus [`crate::report::fragmentation::compact_gap`]),
    /// and for costly orders the failure must be due to fragmentation, not lack of memory
    /// (fragmentation index above `vm.extfrag_threshold`).
    pub(crate) fn compaction_suitable(
        &self,
        zone: &Zone,
        order: u32,
        highest_zoneidx: ZoneType,
        extfrag_threshold: i32,
    ) -> bool {
        let mark = compaction_watermark(order, &zone.watermarks());
        let ok = zone_watermark_ok(
            &zone.free_state(),
            0,
            mark,
            highest_zoneidx,
            AllocFlags::CMA,
            |o, mt| zone.has_free_block(o, mt),
        );
        let fragindex = if ok && order > PAGE_ALLOC_COSTLY_ORDER {
            fragmentation_index(order, &self.zone_nr_free(zone)).unwrap_or(-1000)
        } else {
            -1000
        };
        crate::report::fragmentation::compaction_suitable(order, ok, fragindex, extfrag_threshold)
            == CompactSuitable::Continue
    }
}
