//! The port surface: everything the allocator needs from the kernel that hosts it.
//!
//! Linux reaches these services through global functions (`smp_processor_id()`,
//! `local_irq_save()`, `__va()`). A portable crate cannot: the same code must run inside the
//! x86_64 kernel and inside the host simulation ([`crate::sim`]), so the services are the
//! methods of one trait, and every piece of the allocator that needs one is handed a
//! `&P where P: Platform`.
//!
//! # Object safety
//!
//! The trait is object-safe (every method takes `&self`, none is generic, none returns
//! `Self`), so `&dyn Platform` works. The allocator nevertheless takes the platform as a
//! generic parameter `P: Platform + ?Sized`: hot paths (interrupt save/restore around a pcp
//! list operation, `phys_to_virt` in `pfn_to_page`-like code) then inline to a few
//! instructions in the kernel, and `?Sized` still accepts a trait object where a caller
//! prefers one.
//!
//! # What is not here yet
//!
//! DESIGN.md's port surface also names TLB shootdown, running a function on another CPU
//! and the page-table operations used by migration. They arrive with the issues that need
//! them (migration and compaction). They are deliberately not declared now: a method with
//! no caller and no tested implementation would be a promise the kernel cannot check.
//! Remote pcp draining needs no cross-CPU call: every pcp list has its own lock, and
//! another CPU drains it under that lock.

/// The saved local interrupt state returned by [`Platform::local_irq_save`].
///
/// It is opaque to the allocator: only the platform that produced it knows what the bits mean
/// (on x86_64 it is RFLAGS; in the simulation it is the previous per-thread flag). It is
/// deliberately neither `Clone` nor `Copy`, so that one save is matched by exactly one
/// restore.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "interrupts stay disabled until the state is passed to local_irq_restore"]
pub struct IrqState(u64);

impl IrqState {
    /// Wrap a platform-specific saved state. Only [`Platform`] implementations call this.
    #[inline]
    pub const fn from_raw(raw: u64) -> IrqState {
        IrqState(raw)
    }

    /// The platform-specific bits, for the platform's `local_irq_restore`.
    #[inline]
    pub const fn into_raw(self) -> u64 {
        self.0
    }
}

/// The services the allocator needs from its host kernel.
///
/// Implementations must be `Sync`: one platform object is shared by every CPU.
pub trait Platform: Sync {
    /// The id of the CPU executing the caller, in `0..nr_cpus()` (`smp_processor_id()`).
    ///
    /// The answer is only stable while the caller cannot migrate, which in this kernel means
    /// while local interrupts are disabled or the code is not preemptible.
    fn cpu_id(&self) -> usize;

    /// The number of possible CPUs (`num_possible_cpus()`): the length of every per-CPU
    /// array the allocator keeps.
    fn nr_cpus(&self) -> usize;

    /// Disable local interrupts and return the previous state (`local_irq_save`).
    fn local_irq_save(&self) -> IrqState;

    /// Restore the local interrupt state saved by [`Platform::local_irq_save`]
    /// (`local_irq_restore`). Saves and restores nest.
    fn local_irq_restore(&self, state: IrqState);

    /// True if local interrupts are disabled on this CPU (`irqs_disabled()`); used by debug
    /// checks that a per-CPU structure is touched only with interrupts off.
    fn irqs_disabled(&self) -> bool;

    /// The NUMA node CPU `cpu` belongs to (`cpu_to_node`): the allocator prefers that
    /// node's zones for the CPU's allocations, and splits each zone's pcp `high` between the
    /// CPUs of its node. The default puts every CPU on node 0, which is right for a machine
    /// without SRAT processor affinity.
    fn cpu_to_node(&self, cpu: usize) -> usize {
        let _ = cpu;
        0
    }

    /// The direct-map virtual address of physical address `pa` (`__va`).
    ///
    /// Computing the address is safe; dereferencing it is not, and is only sound for
    /// physical memory the caller owns (memory handed out by memblock or by the buddy
    /// allocator). The allocator only ever asks for addresses inside usable RAM.
    fn phys_to_virt(&self, pa: u64) -> *mut u8;
}

/// Interrupts disabled for as long as the guard lives (`local_irq_save` + `local_irq_restore`
/// on drop), so an early return cannot leave them off.
pub struct LocalIrqGuard<'a, P: Platform + ?Sized> {
    platform: &'a P,
    state: Option<IrqState>,
}

impl<'a, P: Platform + ?Sized> LocalIrqGuard<'a, P> {
    /// Save the local interrupt state and disable interrupts.
    #[inline]
    pub fn new(platform: &'a P) -> Self {
        let state = platform.local_irq_save();
        LocalIrqGuard {
            platform,
            state: Some(state),
        }
    }
}

impl<P: Platform + ?Sized> Drop for LocalIrqGuard<'_, P> {
    #[inline]
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            self.platform.local_irq_restore(state);
        }
    }
}
