//! Deferral: after a failed synchronous compaction, skip the next 1, 2, 4 ... 64 attempts
//! for that order (Linux: `defer_compaction`, `compaction_deferred`,
//! `compaction_defer_reset`).

#![deny(unsafe_code)]

use super::*;

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Deferral (per zone, under its leaf lock).
    // ---------------------------------------------------------------------------------

    /// `compaction_deferred`: skip this attempt? Counts it.
    pub(crate) fn compaction_deferred(&self, zone: &Zone, order: u32) -> bool {
        zone.compact
            .defer
            .lock_irqsave(self.platform())
            .compaction_deferred(order)
    }

    /// `defer_compaction`: a run at `order` failed.
    pub(crate) fn defer_compaction(&self, zone: &Zone, order: u32) {
        zone.compact
            .defer
            .lock_irqsave(self.platform())
            .defer_compaction(order);
    }

    /// `compaction_defer_reset`: a run at `order` succeeded (and the allocation too, if
    /// `alloc_success`).
    pub(crate) fn compaction_defer_reset(&self, zone: &Zone, order: u32, alloc_success: bool) {
        zone.compact
            .defer
            .lock_irqsave(self.platform())
            .compaction_defer_reset(order, alloc_success);
    }

    pub(super) fn compaction_restarting(&self, zone: &Zone, order: i32) -> bool {
        order >= 0
            && zone
                .compact
                .defer
                .lock_irqsave(self.platform())
                .compaction_restarting(order as u32)
    }
}
