//! Per-CPU areas: each CPU's event counters and its pcp lists for every populated zone
//! (Linux: the per-CPU `vm_event_states` and `zone->per_cpu_pageset`).
//!
//! The order-0 fast path must not write a cache line that another CPU writes, or every
//! allocation would pay a cache-line transfer. So everything the fast path writes lives in
//! memory that belongs to one CPU: one block per CPU, cache-line aligned and padded, holding
//!
//! - the CPU's [`VmEvent`] counters: `pgalloc_*`, `pgfree`, refills, ... Only the owning
//!   CPU writes them, with interrupts disabled, as a plain load and store (what Linux's
//!   `__count_vm_events` compiles to); readers of `/proc/vmstat` fold the CPUs' values,
//!   racily, which is fine for statistics;
//! - one [`PerCpuPages`] per populated zone, in a fixed slot order;
//! - per populated zone, the CPU's [`NumaEvent`] counters (Linux's per-CPU
//!   `vm_numa_event`), written by the owning CPU only, like the event counters.
//!
//! The blocks are allocated from memblock before the buddy allocator takes over (nothing
//! else exists that early), one contiguous run of `nr_cpus` equal strides, sized by
//! `Platform::nr_cpus()`. They are never freed: CPUs are not hot-unplugged here.

use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::memblock::MemblockError;
use crate::model::mm_init::MemoryModel;
use crate::page_alloc::pcp::{PcpLists, PerCpuPages};
use crate::port::pcp_lock::PcpOwnerGuard;
use crate::port::platform::{LocalIrqGuard, Platform};
use crate::report::vmstat::{NR_VM_EVENT_ITEMS, NR_VM_NUMA_EVENT_ITEMS, NumaEvent, VmEvent};

/// The counters at the start of every per-CPU block.
#[repr(C, align(64))]
pub struct PerCpuHeader {
    events: [AtomicU64; NR_VM_EVENT_ITEMS],
}

impl PerCpuHeader {
    const fn new() -> PerCpuHeader {
        PerCpuHeader {
            events: [const { AtomicU64::new(0) }; NR_VM_EVENT_ITEMS],
        }
    }

    /// Count `n` events on this CPU (`__count_vm_events`). Must run on the owning CPU with
    /// interrupts disabled: the update is a plain load and store.
    #[inline]
    #[doc(alias = "__count_vm_events")]
    pub fn count_vm_events_irqs_off(&self, ev: VmEvent, n: u64) {
        let c = &self.events[ev.index()];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// This CPU's count of `ev`.
    #[inline]
    pub fn event(&self, ev: VmEvent) -> u64 {
        self.events[ev.index()].load(Ordering::Relaxed)
    }
}

/// All CPUs' blocks: `nr_cpus` strides from `base`.
pub struct PerCpu {
    base: *const u8,
    stride: usize,
    nr_cpus: usize,
    nr_slots: usize,
}

// SAFETY: the blocks are memblock-reserved memory owned by the allocator for its whole
// life; everything in them is an atomic or behind a lock (each pcp's `PcpLock`, whose
// owner path is `unsafe` and reached only through `lock_this_cpu`), so references may be
// shared and sent between threads.
unsafe impl Send for PerCpu {}
// SAFETY: as above.
unsafe impl Sync for PerCpu {}

/// One zone's NUMA counters on one CPU.
pub type NumaCounters = [AtomicU64; NR_VM_NUMA_EVENT_ITEMS];

/// Bytes of one zone's NUMA counters.
const NUMA_BYTES: usize = size_of::<NumaCounters>();

/// Bytes of the header, rounded to whole cache lines.
const HEADER_BYTES: usize = size_of::<PerCpuHeader>().next_multiple_of(64);

impl PerCpu {
    /// Allocate and initialise the blocks of `nr_cpus` CPUs with `nr_slots` pcp each, from
    /// the model's memblock (which recounts managed pages). Every pcp starts with `high`
    /// 0 and `batch` 1, i.e. passing every page straight through, until the zone sizes are
    /// set.
    pub fn alloc<P: Platform + ?Sized>(
        model: &mut MemoryModel,
        platform: &P,
        nr_cpus: usize,
        nr_slots: usize,
    ) -> Result<PerCpu, MemblockError> {
        let stride = (HEADER_BYTES + nr_slots * (size_of::<PerCpuPages>() + NUMA_BYTES))
            .next_multiple_of(64);
        let total = (stride * nr_cpus) as u64;
        let pa = model.memblock_alloc_late(platform, total, 64)?;
        let base = platform.phys_to_virt(pa);
        for cpu in 0..nr_cpus {
            // SAFETY: `[pa, pa + total)` was just reserved for us and is reached through
            // the direct map; each block lies inside it at a 64-byte aligned offset
            // (`base` is 64-aligned: `pa` is, and the direct map preserves alignment within
            // a page); nothing else refers to this memory yet, so plain writes initialise
            // it.
            unsafe {
                let block = base.add(cpu * stride);
                (block as *mut PerCpuHeader).write(PerCpuHeader::new());
                for slot in 0..nr_slots {
                    let p = block.add(HEADER_BYTES + slot * size_of::<PerCpuPages>());
                    (p as *mut PerCpuPages).write(PerCpuPages::new(cpu as u32, 0, 1));
                }
                let numa = block.add(HEADER_BYTES + nr_slots * size_of::<PerCpuPages>());
                for slot in 0..nr_slots {
                    (numa.add(slot * NUMA_BYTES) as *mut NumaCounters)
                        .write([const { AtomicU64::new(0) }; NR_VM_NUMA_EVENT_ITEMS]);
                }
            }
        }
        debug_assert_eq!(base as usize % align_of::<PerCpuPages>(), 0);
        Ok(PerCpu {
            base,
            stride,
            nr_cpus,
            nr_slots,
        })
    }

    /// Number of CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    /// Number of pcp slots per CPU.
    pub fn nr_slots(&self) -> usize {
        self.nr_slots
    }

    /// Bytes of one CPU's block.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// CPU `cpu`'s counters.
    #[inline]
    pub fn header(&self, cpu: usize) -> Option<&PerCpuHeader> {
        if cpu >= self.nr_cpus {
            return None;
        }
        // SAFETY: `cpu < nr_cpus`, so the block is inside the allocation and was
        // initialised in `alloc`; it lives as long as `self`.
        Some(unsafe { &*(self.base.add(cpu * self.stride) as *const PerCpuHeader) })
    }

    /// CPU `cpu`'s pcp for slot `slot`.
    #[inline]
    pub fn pcp(&self, cpu: usize, slot: usize) -> Option<&PerCpuPages> {
        if cpu >= self.nr_cpus || slot >= self.nr_slots {
            return None;
        }
        // SAFETY: both indices are in range, so the pcp is inside the allocation and was
        // initialised in `alloc`; it lives as long as `self`.
        Some(unsafe {
            &*(self
                .base
                .add(cpu * self.stride + HEADER_BYTES + slot * size_of::<PerCpuPages>())
                as *const PerCpuPages)
        })
    }

    /// CPU `cpu`'s NUMA counters for the zone of slot `slot`.
    #[inline]
    pub fn numa_events(&self, cpu: usize, slot: usize) -> Option<&NumaCounters> {
        if cpu >= self.nr_cpus || slot >= self.nr_slots {
            return None;
        }
        // SAFETY: both indices are in range, so the counters are inside the allocation
        // (after the block's pcps) and were zeroed in `alloc`; they live as long as `self`.
        Some(unsafe {
            &*(self.base.add(
                cpu * self.stride
                    + HEADER_BYTES
                    + self.nr_slots * size_of::<PerCpuPages>()
                    + slot * NUMA_BYTES,
            ) as *const NumaCounters)
        })
    }

    /// The sum of NUMA counter `ev` of slot `slot` over all CPUs.
    pub fn sum_numa_event(&self, slot: usize, ev: NumaEvent) -> u64 {
        (0..self.nr_cpus)
            .filter_map(|c| self.numa_events(c, slot))
            .fold(0u64, |a, n| {
                a.wrapping_add(n[ev.index()].load(Ordering::Relaxed))
            })
    }

    /// CPU `cpu`'s counters and its pcp for slot `slot`, together: what the pcp paths
    /// need once they know their CPU.
    #[inline]
    pub fn header_and_pcp(&self, cpu: usize, slot: usize) -> Option<(&PerCpuHeader, &PerCpuPages)> {
        Some((self.header(cpu)?, self.pcp(cpu, slot)?))
    }

    /// The calling CPU, its counters, and its pcp lists for slot `slot` held through the
    /// owner's fast path
    /// ([`PcpLock::try_lock_owner`](crate::port::pcp_lock::PcpLock::try_lock_owner)); None if the slot does not exist or
    /// another CPU holds or claims the lists (the caller falls back to the buddy lists).
    /// The interrupt guard must outlive the hold: interrupts stay off, so the CPU read here
    /// stays the caller's, which is what makes the caller the lists' owner.
    #[inline(always)]
    pub fn lock_this_cpu<'s, P: Platform + ?Sized>(
        &'s self,
        irq: &'s LocalIrqGuard<'_, P>,
        slot: usize,
    ) -> Option<(usize, &'s PerCpuHeader, PcpOwnerGuard<'s, PcpLists>)> {
        let platform = irq.platform();
        let cpu = platform.cpu_id();
        let (hdr, pcp) = self.header_and_pcp(cpu, slot)?;
        // SAFETY: `pcp` is CPU `cpu`'s, and `cpu` was read with interrupts disabled by
        // `irq`, which outlives the returned hold: this thread runs as the lists' owner
        // (the platform's promise for `cpu_id` and `local_irq_save`) until it ends.
        let lists = unsafe { pcp.lock.try_lock_owner(platform) }?;
        Some((cpu, hdr, lists))
    }

    /// The sum of `ev` over all CPUs (`sum_vm_event`).
    pub fn sum_event(&self, ev: VmEvent) -> u64 {
        (0..self.nr_cpus)
            .filter_map(|c| self.header(c))
            .fold(0u64, |a, h| a.wrapping_add(h.event(ev)))
    }
}
