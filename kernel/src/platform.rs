//! The kernel's implementation of `mm`'s port surface.
//!
//! Everything the allocator asks of the machine comes through here: which CPU is running
//! (a GS-relative load), how many CPUs there can be (the MADT, read before any per-CPU
//! array is sized), interrupt masking (RFLAGS.IF), and the direct map at
//! [`crate::PHYS_OFFSET`].

use x86_64::{instructions::interrupts, registers::rflags::RFlags};
use zonebuddy::port::platform::{IrqState, MovableMapping, Platform, Pte, PteError};

use core::sync::atomic::Ordering;

use x86_64::{
    PhysAddr, VirtAddr,
    structures::paging::{PageTableFlags, PhysFrame},
};
use zonebuddy::page_alloc::gfp::{GFP_KERNEL, Gfp};

use crate::arch::{paging, percpu, smp};

/// The x86_64 kernel as an `mm` platform.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelPlatform;

/// The one platform instance.
pub static PLATFORM: KernelPlatform = KernelPlatform;

impl Platform for KernelPlatform {
    #[inline]
    fn cpu_id(&self) -> usize {
        percpu::cpu_id()
    }

    fn nr_cpus(&self) -> usize {
        smp::possible_cpus()
    }

    fn cpu_to_node(&self, cpu: usize) -> usize {
        crate::arch::numa::cpu_to_node(cpu)
    }

    #[inline]
    fn local_irq_save(&self) -> IrqState {
        let flags = x86_64::registers::rflags::read_raw();
        interrupts::disable();
        IrqState::from_raw(flags)
    }

    #[inline]
    fn local_irq_restore(&self, state: IrqState) {
        if state.into_raw() & RFlags::INTERRUPT_FLAG.bits() != 0 {
            interrupts::enable();
        }
    }

    #[inline]
    fn irqs_disabled(&self) -> bool {
        !interrupts::are_enabled()
    }

    #[inline]
    fn has_cpu_barrier(&self) -> bool {
        true
    }

    /// An IPI whose function does nothing, waited for: the target takes the interrupt,
    /// and its handler's atomic exchange on the call mailbox drains its store buffer before
    /// it reports completion, so its stores from before the interrupt are visible to us
    /// once we see the completion, and its loads after the handler see our stores from
    /// before the IPI. The current CPU runs the empty function inline. A CPU that is not
    /// online runs nothing (an AP going online makes atomic exchanges on its mailbox before
    /// it first allocates, so it sees a claim made before). A CPU that does not take the
    /// IPI within the wait bound (stuck with interrupts off, or waiting for our barrier
    /// while we wait for its) is a bug worth the diagnostic, as for every remote call.
    fn cpu_barrier(&self, cpu: usize) {
        match smp::try_call_on_cpu(cpu, &|| {}) {
            Ok(()) | Err(smp::CallError::Offline(_)) => {}
            Err(e) => panic!("cpu_barrier: {e}"),
        }
    }

    #[inline]
    fn phys_to_virt(&self, pa: u64) -> *mut u8 {
        (crate::PHYS_OFFSET + pa) as *mut u8
    }

    fn wake_kcompactd(&self, nid: usize) {
        crate::kcompactd::wake(nid);
    }

    fn has_kswapd(&self) -> bool {
        crate::kswapd::enabled()
    }

    fn wake_kswapd(&self, nid: usize) {
        crate::kswapd::wake(nid);
    }

    fn movable_mapping(&self) -> Option<&dyn MovableMapping> {
        Some(self)
    }
}

/// Mapped movable memory: the window at [`paging::MOVABLE_START`], rewritten by migration.
impl MovableMapping for KernelPlatform {
    fn movable_va_range(&self) -> (u64, u64) {
        (paging::MOVABLE_START, paging::MOVABLE_END)
    }

    fn pte_read(&self, va: u64) -> Pte {
        match VirtAddr::try_new(va).ok().and_then(paging::leaf_pte) {
            Some(slot) if in_window(va) => paging::decode_pte(slot.load(Ordering::Acquire)),
            _ => Pte::None,
        }
    }

    fn pte_map(&self, va: u64, pfn: u64) -> Result<(), PteError> {
        map_leaf(va, pfn, false)
    }

    fn pte_cmpxchg(&self, va: u64, old: Pte, new: Pte) -> bool {
        in_window(va) && paging::pte_cmpxchg(va, old, new)
    }

    fn flush_tlb_range(&self, start: u64, end: u64) {
        smp::tlb_shootdown(start, end);
    }

    fn pte_map_readonly(&self, va: u64, pfn: u64) -> Result<(), PteError> {
        map_leaf(va, pfn, true)
    }

    fn pte_test_and_clear_young(&self, va: u64) -> bool {
        in_window(va) && paging::pte_test_and_clear_young(va)
    }
}

/// Map `pfn` at `va` of the movable window, writable or read-only, where nothing is
/// mapped (see `MovableMapping::pte_map`).
fn map_leaf(va: u64, pfn: u64, readonly: bool) -> Result<(), PteError> {
    {
        if !in_window(va) {
            return Err(PteError::OutOfRange);
        }
        // Fast path: the leaf table exists, so mapping is one atomic store into it.
        if let Some(done) = paging::pte_install(va, pfn, readonly) {
            return if done { Ok(()) } else { Err(PteError::Busy) };
        }
        // Page tables are missing. Their frames are allocated here, with interrupts enabled
        // and no page-table lock held, because an allocation may have to wait (drain other
        // CPUs' lists, compact); `map_page` then only takes what it needs from them.
        let mut frames = Prealloc::new().ok_or(PteError::NoMemory)?;
        let flags = if readonly {
            PageTableFlags::PRESENT
        } else {
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE
        };
        // SAFETY: `va` lies in the movable window, which nothing but anon regions and
        // file windows use, and `pfn` is a page the caller (zonebuddy::movement::rmap or
        // zonebuddy::reclaim::mmap) maps there exactly once.
        let r = unsafe {
            paging::map_page(
                VirtAddr::new(va),
                PhysAddr::new(pfn << 12),
                flags,
                &mut frames,
            )
        };
        frames.release();
        match r {
            Ok(()) => Ok(()),
            Err(paging::MapError::OutOfFrames) => Err(PteError::NoMemory),
            Err(_) => Err(PteError::Busy),
        }
    }
}

fn in_window(va: u64) -> bool {
    (paging::MOVABLE_START..paging::MOVABLE_END).contains(&va) && va & 0xfff == 0
}

/// Up to three zeroed page-table frames allocated before `map_page` takes the page-table
/// lock (a 4 KiB mapping needs at most a PDPT, a PD and a PT); unused ones go back.
struct Prealloc {
    frames: [Option<PhysFrame>; 3],
}

impl Prealloc {
    fn new() -> Option<Prealloc> {
        let a = crate::memory::allocator();
        let mut p = Prealloc { frames: [None; 3] };
        for i in 0..3 {
            let Some(page) = a.alloc_pages(GFP_KERNEL | Gfp::ZERO, 0) else {
                p.release();
                return None;
            };
            p.frames[i] =
                PhysFrame::from_start_address(PhysAddr::new(a.page_to_pfn(page) << 12)).ok();
        }
        Some(p)
    }

    fn release(self) {
        let a = crate::memory::allocator();
        for f in self.frames.into_iter().flatten() {
            let _ = a.free_pages_virt(crate::PHYS_OFFSET + f.start_address().as_u64(), 0);
        }
    }
}

impl paging::FrameSource for Prealloc {
    fn alloc_frame(&mut self) -> Option<PhysFrame> {
        self.frames.iter_mut().find_map(Option::take)
    }
}
