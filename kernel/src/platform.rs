//! The kernel's implementation of `mm`'s port surface.
//!
//! Everything the allocator asks of the machine comes through here: which CPU is running
//! (a GS-relative load), how many CPUs there can be (the MADT, read before any per-CPU
//! array is sized), interrupt masking (RFLAGS.IF), and the direct map at
//! [`crate::PHYS_OFFSET`].

use mm::platform::{IrqState, Platform, Pte, PteError};
use x86_64::{instructions::interrupts, registers::rflags::RFlags};

use crate::arch::{percpu, smp};

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
    fn phys_to_virt(&self, pa: u64) -> *mut u8 {
        (crate::PHYS_OFFSET + pa) as *mut u8
    }

    fn movable_va_range(&self) -> (u64, u64) {
        todo!("movable range: being written")
    }

    fn pte_read(&self, va: u64) -> Pte {
        let _ = va;
        todo!("being written")
    }

    fn pte_map(&self, va: u64, pfn: u64) -> Result<(), PteError> {
        let _ = (va, pfn);
        todo!("being written")
    }

    fn pte_cmpxchg(&self, va: u64, old: Pte, new: Pte) -> bool {
        let _ = (va, old, new);
        todo!("being written")
    }

    fn flush_tlb_range(&self, start: u64, end: u64) {
        smp::tlb_shootdown(start, end);
    }
}
