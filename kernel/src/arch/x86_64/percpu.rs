//! Per-CPU data, reached through the GS base register.
//!
//! Each CPU's [`PerCpu`] block starts with a pointer to itself and the CPU's dense id, so
//! `this_cpu()` and `cpu_id()` are a single GS-relative load, with no shared cache line and
//! no lock: exactly what the allocator's order-0 fast path needs to find its own pcp lists.
//! Blocks are created once (the boot CPU's is static, each AP's is leaked from the heap) and
//! never freed, so `&'static PerCpu` is sound.

use core::{
    arch::asm,
    cell::UnsafeCell,
    sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
};

use x86_64::{VirtAddr, registers::model_specific::GsBase};

/// Most CPUs the kernel manages.
pub const MAX_CPUS: usize = 64;

/// A function lent to another CPU for the duration of a call (the lender waits).
pub(super) type LentFn = *const (dyn Fn() + Sync);

/// A one-at-a-time mailbox for functions run on this CPU by another.
pub(super) struct Mailbox {
    /// Serialises senders to this CPU.
    pub(super) lock: spin::Mutex<()>,
    /// Set by the sender after storing `func`, cleared by the receiver before running it.
    pub(super) pending: AtomicBool,
    /// Set by the receiver when the function returned.
    pub(super) done: AtomicBool,
    /// The function, valid while `pending` or until `done` (the sender keeps it alive).
    pub(super) func: UnsafeCell<Option<LentFn>>,
}

impl Mailbox {
    const fn new() -> Self {
        Mailbox {
            lock: spin::Mutex::new(()),
            pending: AtomicBool::new(false),
            done: AtomicBool::new(false),
            func: UnsafeCell::new(None),
        }
    }
}

/// One CPU's private block. `repr(C)`: the first two fields are read GS-relative.
#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    /// Dense CPU id: 0 for the boot CPU, then in start order.
    pub cpu: usize,
    /// Local APIC id.
    pub apic_id: AtomicU64,
    /// Set once the CPU runs kernel code with its own tables.
    pub online: AtomicBool,
    /// Local APIC timer interrupts taken.
    pub ticks: AtomicU64,
    /// Functions to run in interrupt context (short, must not block).
    pub(super) call: Mailbox,
    /// Work to run from the idle loop, interrupts enabled (may run long).
    pub(super) work: Mailbox,
}

// SAFETY: the only non-Sync field is the mailboxes' UnsafeCell, whose access is governed by
// the pending/done protocol in smp.rs (one writer while !pending, one reader while pending).
unsafe impl Sync for PerCpu {}
// SAFETY: as above; the raw self pointer always points at the block itself.
unsafe impl Send for PerCpu {}

impl PerCpu {
    /// A fresh block for CPU `cpu`.
    pub const fn new(cpu: usize) -> Self {
        PerCpu {
            self_ptr: core::ptr::null(),
            cpu,
            apic_id: AtomicU64::new(0),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            call: Mailbox::new(),
            work: Mailbox::new(),
        }
    }
}

static BSP: UnsafeCellSync<PerCpu> = UnsafeCellSync(UnsafeCell::new(PerCpu::new(0)));

struct UnsafeCellSync<T>(UnsafeCell<T>);
// SAFETY: the boot CPU's block is mutated only in `init_bsp`, before anything can read it.
unsafe impl<T> Sync for UnsafeCellSync<T> {}

/// Every CPU's block by dense id (null until that CPU is set up).
static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
/// Number of CPUs whose block is registered (ids are dense: 0..count).
static NR_CPUS: AtomicUsize = AtomicUsize::new(0);

/// Point GS at `block` on the current CPU and register it.
///
/// # Safety
/// `block` must be 'static, not yet registered, and its `cpu` id must equal the number of
/// CPUs registered so far (ids are handed out densely).
pub(super) unsafe fn install(block: &'static mut PerCpu) {
    block.self_ptr = block as *const PerCpu;
    let id = block.cpu;
    GsBase::write(VirtAddr::from_ptr(block as *const PerCpu));
    CPUS[id].store(block as *mut PerCpu, Ordering::Release);
    NR_CPUS.fetch_max(id + 1, Ordering::AcqRel);
}

/// Set up the boot CPU's block. Call first thing at boot.
pub fn init_bsp() {
    // SAFETY: runs once on the boot CPU before any reader exists; BSP has id 0, the first.
    unsafe { install(&mut *BSP.0.get()) };
}

/// The current CPU's block.
#[inline]
pub fn this_cpu() -> &'static PerCpu {
    let p: *const PerCpu;
    // SAFETY: GS base points at this CPU's PerCpu block (installed before any caller runs),
    // whose first field is its own address.
    unsafe { asm!("mov {}, gs:[0]", out(reg) p, options(nostack, preserves_flags, readonly)) };
    // SAFETY: blocks are 'static and never freed.
    unsafe { &*p }
}

/// The current CPU's dense id.
#[inline]
pub fn cpu_id() -> usize {
    let id: usize;
    // SAFETY: as in `this_cpu`; the second field of the block is the CPU id.
    unsafe { asm!("mov {}, gs:[8]", out(reg) id, options(nostack, preserves_flags, readonly)) };
    id
}

/// The block of CPU `id`, if it exists.
pub fn cpu(id: usize) -> Option<&'static PerCpu> {
    let p = CPUS.get(id)?.load(Ordering::Acquire);
    // SAFETY: registered blocks are 'static and never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Number of registered CPUs (online or starting).
pub fn nr_cpus() -> usize {
    NR_CPUS.load(Ordering::Acquire)
}

/// Iterate over the online CPUs' blocks.
pub fn online_cpus() -> impl Iterator<Item = &'static PerCpu> {
    (0..nr_cpus())
        .filter_map(cpu)
        .filter(|c| c.online.load(Ordering::Acquire))
}
