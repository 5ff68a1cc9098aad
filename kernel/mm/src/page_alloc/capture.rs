//! Capture: a direct compactor's claim on the block its own migration frees, so another
//! CPU's allocation cannot take it between the free and the retry (Linux:
//! `struct capture_control`, `compaction_capture`).
//!
//! The buddy free path consults it on every merge, compaction arms and disarms it: it
//! lives with the allocator so that the buddy code does not depend on compaction.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::model::memblock::MemblockError;
use crate::model::mm_init::MemoryModel;
use crate::model::mmzone::{Migratetype, PAGEBLOCK_ORDER};
use crate::model::zone::Zone;
use crate::port::platform::Platform;

// -------------------------------------------------------------------------------------
// Capture.
// -------------------------------------------------------------------------------------

/// No page captured yet.
pub(crate) const NO_CAPTURE: u64 = u64::MAX;

/// One CPU's capture slot (`struct capture_control`, hung off the CPU rather than the task;
/// see the module documentation). Touched only by its CPU with interrupts disabled, so the
/// atomics are for the type system, not for cross-CPU ordering; it sits on its own cache
/// line.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct CaptureControl {
    /// Address of the zone being compacted; 0 when the slot is not armed.
    pub(crate) zone: AtomicUsize,
    /// The order wanted.
    pub(crate) order: AtomicU32,
    /// The migratetype of the request.
    pub(crate) migratetype: AtomicU8,
    /// The pfn of the captured block, or [`NO_CAPTURE`].
    pub(crate) page_pfn: AtomicU64,
}

impl CaptureControl {
    pub(crate) const fn new() -> CaptureControl {
        CaptureControl {
            zone: AtomicUsize::new(0),
            order: AtomicU32::new(0),
            migratetype: AtomicU8::new(0),
            page_pfn: AtomicU64::new(NO_CAPTURE),
        }
    }

    /// Is this slot waiting for a block of `zone`?
    #[inline]
    pub(crate) fn armed_for(&self, zone: &Zone) -> bool {
        self.zone.load(Ordering::Acquire) == zone as *const Zone as usize
            && self.page_pfn.load(Ordering::Relaxed) == NO_CAPTURE
    }

    /// The free path's question (`compaction_capture`): take the block of `order` at `pfn`
    /// on the way to the `mt` free lists? Isolated and CMA blocks are never taken (they
    /// must not leak to an ordinary allocation), nor a movable block smaller than a
    /// pageblock for a non-movable request (that would pollute a movable pageblock, which
    /// ordinary fallback would avoid).
    pub(crate) fn try_capture(&self, pfn: u64, order: u32, mt: Migratetype) -> bool {
        if self.zone.load(Ordering::Acquire) == 0
            || self.page_pfn.load(Ordering::Relaxed) != NO_CAPTURE
            || self.order.load(Ordering::Relaxed) != order
        {
            return false;
        }
        if matches!(mt, Migratetype::Cma | Migratetype::Isolate) {
            return false;
        }
        let want = Migratetype::from_bits(self.migratetype.load(Ordering::Relaxed))
            .unwrap_or(Migratetype::Unmovable);
        if order < PAGEBLOCK_ORDER && mt == Migratetype::Movable && want != Migratetype::Movable {
            return false;
        }
        self.page_pfn.store(pfn, Ordering::Relaxed);
        true
    }
}

/// Every CPU's [`CaptureControl`], allocated from memblock like the per-CPU areas (the
/// crate has no heap), plus a count of armed slots so the free path pays one shared,
/// read-mostly load when no compaction is running.
pub(crate) struct CaptureSlots {
    pub(crate) base: *const CaptureControl,
    pub(crate) nr: usize,
    pub(crate) nr_armed: AtomicUsize,
}

// SAFETY: the slots are memblock memory owned by the allocator for its whole life and hold
// only atomics; each is written only by its own CPU.
unsafe impl Send for CaptureSlots {}
// SAFETY: as above.
unsafe impl Sync for CaptureSlots {}

impl CaptureSlots {
    /// Allocate and initialise `nr_cpus` slots from the model's memblock.
    pub(crate) fn alloc<P: Platform + ?Sized>(
        model: &mut MemoryModel,
        platform: &P,
        nr_cpus: usize,
    ) -> Result<CaptureSlots, MemblockError> {
        let size = (size_of::<CaptureControl>() * nr_cpus.max(1)) as u64;
        let pa = model.memblock_alloc_late(platform, size, 64)?;
        let base = platform.phys_to_virt(pa) as *mut CaptureControl;
        for cpu in 0..nr_cpus {
            // SAFETY: `[pa, pa + size)` was just reserved for us and is reached through the
            // direct map at a 64-byte aligned address (memblock honoured the alignment and
            // the direct map preserves it within a page); slot `cpu` lies inside it and
            // nothing else refers to this memory yet.
            unsafe { base.add(cpu).write(CaptureControl::new()) };
        }
        Ok(CaptureSlots {
            base,
            nr: nr_cpus,
            nr_armed: AtomicUsize::new(0),
        })
    }

    /// CPU `cpu`'s slot.
    #[inline]
    pub(crate) fn slot(&self, cpu: usize) -> Option<&CaptureControl> {
        if cpu >= self.nr {
            return None;
        }
        // SAFETY: `cpu < nr`: the slot is inside the allocation, initialised in `alloc`,
        // and lives as long as `self`.
        Some(unsafe { &*self.base.add(cpu) })
    }

    /// The slot of `cpu` if it is armed for `zone` and still waiting (called by the free
    /// path with interrupts disabled on `cpu`).
    #[inline]
    pub(crate) fn armed_for(&self, cpu: usize, zone: &Zone) -> Option<&CaptureControl> {
        if self.nr_armed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.slot(cpu).filter(|s| s.armed_for(zone))
    }
}
