//! The port surface: everything the allocator needs from the kernel that hosts it.
//!
//! Linux reaches these services through global functions (`smp_processor_id()`,
//! `local_irq_save()`, `__va()`). A portable crate cannot: the same code must run inside the
//! x86_64 kernel and inside the host simulation ([`crate::port::sim`]), so the services are the
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
//! # Page tables and TLBs
//!
//! Page migration moves a page that is mapped into the kernel's own page tables (this
//! kernel's "user memory", see [`crate::movement::rmap`]). The allocator never walks page tables
//! itself: it names a virtual address inside the range the platform reserves for movable
//! memory ([`MovableMapping::movable_va_range`]) and asks the platform to read, map or
//! compare-and-exchange the one leaf entry for it ([`Pte`]), and to invalidate TLBs on every
//! CPU. A migration entry ([`Pte::Migration`]) is a non-present entry that remembers the old
//! frame; a CPU touching it must fault, wait for the page lock of that frame, and retry.
//!
//! kcompactd is a per-node background worker; how it runs (a thread, a CPU's idle loop) is
//! the platform's business, so the allocator only asks for it to be woken.

#![deny(unsafe_code)]

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

    /// True if local interrupts are disabled on this CPU (`irqs_disabled()`). It must tell
    /// the truth: debug builds assert with it that per-CPU structures are touched only with
    /// interrupts off, and the allocation slow path never compacts directly when it is
    /// true (migration waits for other CPUs).
    fn irqs_disabled(&self) -> bool;

    /// True if [`Platform::cpu_barrier`] works. The pcp lists' lock then costs its owner
    /// CPU plain stores instead of an atomic exchange per hold
    /// ([`crate::port::pcp_lock`]). The default is false. It should be a constant: the
    /// order-0 fast path asks it on every allocation and free.
    fn has_cpu_barrier(&self) -> bool {
        false
    }

    /// Run a full memory barrier on CPU `cpu` and wait for it (an asymmetric fence: the
    /// `membarrier` system call on a host, an IPI whose handler returns in a kernel; Linux
    /// uses the same for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`). When it returns,
    /// every store `cpu` made before some point is visible to the caller, and every load
    /// `cpu` makes after that point sees the caller's stores from before the call. A CPU
    /// that is not running (never started, offline) needs nothing and returns at once.
    ///
    /// Called only if [`Platform::has_cpu_barrier`] is true, rarely (another CPU's pcp
    /// lists taken for a drain or an update), never for the caller's own CPU, and with
    /// local interrupts as the allocator's caller had them: enabled, if that caller keeps
    /// the rule for taking other CPUs' lists ([`crate::port::pcp_lock`]). The default does
    /// nothing.
    fn cpu_barrier(&self, cpu: usize) {
        let _ = cpu;
    }

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

    /// Wake node `nid`'s kcompactd (`wakeup_kcompactd`): the allocator has recorded why
    /// (see [`crate::movement::compaction`]); the platform makes the worker run soon. A platform
    /// that runs no kcompactd leaves this empty and compaction then happens only directly
    /// and on request.
    fn wake_kcompactd(&self, nid: usize) {
        let _ = nid;
    }

    /// Does this port run a kswapd worker per node that calls
    /// [`PageAllocator::kswapd_run`](crate::PageAllocator::kswapd_run)? The default, no,
    /// keeps the allocator as it is without background reclaim: kcompactd is woken straight
    /// from the allocation slow path, and watermark boosts are dropped when handed over
    /// (see [`crate::reclaim::kswapd`]).
    fn has_kswapd(&self) -> bool {
        false
    }

    /// Wake node `nid`'s kswapd (`wakeup_kswapd`): the allocator has recorded the order and
    /// zone asked for; the platform makes the worker call `kswapd_run` soon. Only called
    /// when [`Platform::has_kswapd`] is true.
    fn wake_kswapd(&self, nid: usize) {
        let _ = nid;
    }

    /// The optional capability to migrate pages mapped in the kernel's own page tables
    /// ([`MovableMapping`]). The default, `None`, is right for a port that does not want
    /// mapped movable memory: it still gets the whole allocator, and compaction of
    /// kernel-owned movable objects (`movable_operations`, such as
    /// [`crate::movement::zpool`]); creating an anon region then fails with
    /// `RegionError::NoMovableMapping`. A port that implements [`MovableMapping`] returns
    /// `Some(self)`.
    fn movable_mapping(&self) -> Option<&dyn MovableMapping> {
        None
    }
}

/// A reference to a platform is a platform: a kernel that keeps its platform in a static
/// hands the allocator `&PLATFORM`, one that builds it at run time hands it over by value.
impl<T: Platform + ?Sized> Platform for &T {
    #[inline]
    fn cpu_id(&self) -> usize {
        (**self).cpu_id()
    }

    #[inline]
    fn nr_cpus(&self) -> usize {
        (**self).nr_cpus()
    }

    #[inline]
    fn local_irq_save(&self) -> IrqState {
        (**self).local_irq_save()
    }

    #[inline]
    fn local_irq_restore(&self, state: IrqState) {
        (**self).local_irq_restore(state)
    }

    #[inline]
    fn irqs_disabled(&self) -> bool {
        (**self).irqs_disabled()
    }

    #[inline]
    fn has_cpu_barrier(&self) -> bool {
        (**self).has_cpu_barrier()
    }

    #[inline]
    fn cpu_barrier(&self, cpu: usize) {
        (**self).cpu_barrier(cpu)
    }

    #[inline]
    fn cpu_to_node(&self, cpu: usize) -> usize {
        (**self).cpu_to_node(cpu)
    }

    #[inline]
    fn phys_to_virt(&self, pa: u64) -> *mut u8 {
        (**self).phys_to_virt(pa)
    }

    #[inline]
    fn wake_kcompactd(&self, nid: usize) {
        (**self).wake_kcompactd(nid)
    }

    #[inline]
    fn has_kswapd(&self) -> bool {
        (**self).has_kswapd()
    }

    #[inline]
    fn wake_kswapd(&self, nid: usize) {
        (**self).wake_kswapd(nid)
    }

    #[inline]
    fn movable_mapping(&self) -> Option<&dyn MovableMapping> {
        (**self).movable_mapping()
    }
}

/// The capability to move pages that are mapped in the kernel's own page tables: this
/// kernel's "user memory" ([`crate::movement::rmap`]) lives in a virtual window the port
/// reserves, one 4 KiB leaf entry per page, and migration rewrites those entries.
///
/// Optional: a port offers it through [`Platform::movable_mapping`]. Every method is
/// called with interrupts enabled or disabled as noted, never with a zone lock held.
pub trait MovableMapping: Sync {
    /// The virtual range `[start, end)` reserved for movable memory ([`crate::movement::rmap`]):
    /// page aligned, mapped by 4 KiB leaf entries only, and used for nothing else.
    fn movable_va_range(&self) -> (u64, u64);

    /// The leaf entry for page-aligned `va` inside [`MovableMapping::movable_va_range`]
    /// ([`Pte::None`] when no page table covers it).
    fn pte_read(&self, va: u64) -> Pte;

    /// Map `pfn` at `va` (present, writable, not executable) where nothing is mapped,
    /// allocating page-table pages as needed (those are unmovable kernel memory). Does not
    /// flush any TLB: a previously non-present entry cannot be cached.
    fn pte_map(&self, va: u64, pfn: u64) -> Result<(), PteError>;

    /// Atomically replace the entry for `va` with `new` if it currently equals `old`;
    /// true if it did. This one primitive is how entries are cleared (`Present → None`),
    /// turned into migration entries (`Present(p) → Migration(p)`), and restored or
    /// re-pointed (`Migration(p) → Present(q)`). It never flushes a TLB; the caller
    /// decides when [`MovableMapping::flush_tlb_range`] is needed (after a present entry
    /// changed).
    ///
    /// The comparison ignores the accessed bit and the write permission (a [`Pte`] does
    /// not carry them). A port that implements [`MovableMapping::pte_map_readonly`] must
    /// carry the permission along: `Present → Migration → Present` keeps a read-only
    /// entry read-only (Linux's readable vs writable migration entries), so that a file
    /// page moved by compaction is mapped exactly as it was.
    fn pte_cmpxchg(&self, va: u64, old: Pte, new: Pte) -> bool;

    /// Invalidate `[start, end)` in the TLB of every CPU and return only when every CPU
    /// has done so (TLB shootdown). Called with interrupts enabled and no spinlock held:
    /// the other CPUs may be waiting for something this CPU must answer.
    fn flush_tlb_range(&self, start: u64, end: u64);

    /// Map `pfn` at `va` present and **read-only** where nothing is mapped, as
    /// [`MovableMapping::pte_map`] does otherwise: how page-cache pages are mapped into a
    /// file window ([`crate::reclaim::mmap`]). Optional: the default refuses with
    /// [`PteError::Unsupported`], and then file mappings are unavailable
    /// (`MmapError::Unsupported`) while everything else works.
    fn pte_map_readonly(&self, va: u64, pfn: u64) -> Result<(), PteError> {
        let _ = (va, pfn);
        Err(PteError::Unsupported)
    }

    /// Clear the accessed ("young") bit of the present entry for `va` and return whether
    /// it was set (`ptep_test_and_clear_young`). Reclaim ages mapped page-cache pages by
    /// it ([`crate::reclaim::vmscan`]). No TLB flush is expected: as on Linux/x86, a CPU
    /// whose TLB still caches the entry may touch the page without setting the bit again
    /// until the entry leaves its TLB; aging tolerates that inaccuracy. The default (a
    /// port without accessed bits) answers false: mapped pages then age like unmapped
    /// ones.
    fn pte_test_and_clear_young(&self, va: u64) -> bool {
        let _ = va;
        false
    }
}

/// What a platform without [`MovableMapping`] behaves as: an empty window, nothing
/// mapped, every change refused.
struct NoMovableMapping;

impl MovableMapping for NoMovableMapping {
    fn movable_va_range(&self) -> (u64, u64) {
        (0, 0)
    }

    fn pte_read(&self, _va: u64) -> Pte {
        Pte::None
    }

    fn pte_map(&self, _va: u64, _pfn: u64) -> Result<(), PteError> {
        Err(PteError::OutOfRange)
    }

    fn pte_cmpxchg(&self, _va: u64, _old: Pte, _new: Pte) -> bool {
        false
    }

    fn flush_tlb_range(&self, _start: u64, _end: u64) {}
}

/// `platform`'s [`MovableMapping`], or one with an empty window when it has none (anon
/// regions cannot be created then, so no other entry point reaches it).
pub(crate) fn movable_mapping_of<P: Platform + ?Sized>(platform: &P) -> &dyn MovableMapping {
    platform.movable_mapping().unwrap_or(&NoMovableMapping)
}

/// A leaf page-table entry of the movable range, as the allocator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    /// Nothing mapped.
    None,
    /// A present mapping of this pfn (writable for anon memory, read-only for file
    /// mappings: the permission and the accessed bit are the port's business).
    Present(u64),
    /// A migration entry: not present; the page at this pfn is being migrated, and a CPU
    /// that touches the address waits for that page's lock and retries.
    Migration(u64),
}

/// Why a page-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteError {
    /// The address is not page aligned or not inside [`MovableMapping::movable_va_range`].
    OutOfRange,
    /// A page-table page could not be allocated.
    NoMemory,
    /// The entry is not [`Pte::None`].
    Busy,
    /// The port does not offer this operation (a default method it did not implement).
    Unsupported,
}

impl core::fmt::Display for PteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PteError::OutOfRange => "address not page aligned or outside the movable window",
            PteError::NoMemory => "no memory for a page-table page",
            PteError::Busy => "the page-table entry is already in use",
            PteError::Unsupported => "the port does not offer this page-table operation",
        })
    }
}

impl core::error::Error for PteError {}

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

    /// The platform that disabled interrupts.
    #[inline]
    pub fn platform(&self) -> &'a P {
        self.platform
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
