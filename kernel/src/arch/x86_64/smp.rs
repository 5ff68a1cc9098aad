//! Bringing up the other CPUs, and making them work for us.
//!
//! **Start-up.** An application processor (AP) wakes in 16-bit real mode at the page named
//! by the startup IPI, so the trampoline below is copied to a page under 1 MiB (reserved by
//! the early allocator). It climbs to protected mode and then to long mode on a temporary
//! page table that identity-maps the low 2 MiB (where it is executing) and shares the
//! kernel's upper half (where it jumps to). That table's root must sit below 4 GiB because
//! CR3 is loaded from 32-bit code. In Rust, the AP switches to the kernel's own CR3, loads
//! its GDT/TSS/IDT, points GS at its per-CPU block, enables its local APIC and timer, and
//! idles. The boot CPU starts APs one at a time with INIT, SIPI, SIPI and waits for each;
//! one that does not answer is reported, abandoned (it can never claim its slot later), and
//! the kernel continues with the others.
//!
//! **Work.** Two mailboxes per CPU. [`call_on_cpu`] runs a short function in the target's
//! IPI handler (interrupts off; e.g. draining its per-CPU page lists), and [`run_on_cpus`]
//! hands a function to idle CPUs' idle loops, where it runs with interrupts on for as long
//! as it likes (stress tests, kernel threads). [`tlb_shootdown`] invalidates a virtual range
//! on every online CPU and returns when all have done so.
//!
//! **Rule:** the waiting functions here must be called with interrupts enabled and holding
//! no spinlock that an IPI handler takes. Two CPUs waiting on each other with interrupts off
//! would deadlock; with interrupts on, each still answers the other's IPIs while it waits.
//!
//! **Bounded waits.** Every wait for another CPU here has a deadline ([`wait_timeout_ms`],
//! generous: seconds, far above anything a healthy CPU takes even under TCG). A CPU that
//! never answers is a bug elsewhere (interrupts left off, a lock never released); instead
//! of hanging silently, the waiter names the CPU and what it waited for. Where the request
//! can still be withdrawn (a remote call the target has not started) the wait returns a
//! [`WaitTimeout`] error; where it cannot (a shootdown some CPU has not acknowledged, a
//! remote call already running) the kernel panics with that message, which the crash path
//! prints and turns into a failed test.

use alloc::{boxed::Box, vec::Vec};
use core::{
    arch::global_asm,
    fmt,
    sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
};

use x86_64::{
    PhysAddr, VirtAddr,
    registers::control::{Cr3, Cr3Flags},
    structures::{
        idt::InterruptStackFrame,
        paging::{PageTable, PageTableFlags, PhysFrame},
    },
};

use super::{
    acpi::Topology,
    apic,
    gdt::CpuTables,
    paging,
    percpu::{self, MAX_CPUS, PerCpu},
    time,
};
use crate::PHYS_OFFSET;

/// IPI vector: run the function in the target's call mailbox.
pub const CALL_VECTOR: u8 = 0xf0;
/// IPI vector: flush the TLB range in [`SHOOTDOWN`].
pub const SHOOTDOWN_VECTOR: u8 = 0xf1;
/// IPI vector: wake an idle CPU to look at its work mailbox.
pub const WAKE_VECTOR: u8 = 0xf2;

/// Timer frequency on every CPU.
pub const TIMER_HZ: u64 = 100;

// Offsets inside the trampoline page. The code sits at 0; the parameter block at PARAMS.
const PARAMS: usize = 0xf00;
const P_GDTR: usize = PARAMS; // u16 limit + u32 base
const P_FAR32: usize = PARAMS + 0x08; // u32 offset + u16 selector
const P_FAR64: usize = PARAMS + 0x10; // u32 offset + u16 selector
const P_CR3: usize = PARAMS + 0x18; // u32
const P_ENTRY: usize = PARAMS + 0x20; // u64
const P_STACK: usize = PARAMS + 0x28; // u64
const P_ARG: usize = PARAMS + 0x30; // u64
const P_GDT: usize = PARAMS + 0x40; // 4 descriptors

global_asm!(
    r#"
    .section .text.ap_trampoline, "ax"
    .global ap_trampoline_start
    .global ap_trampoline_pm32
    .global ap_trampoline_lm64
    .global ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    cld
    xorl %ebx, %ebx
    movw %cs, %bx
    shll $4, %ebx
    movw %cs, %ax
    movw %ax, %ds
    lgdtl {p_gdtr}
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl *{p_far32}
    .code32
ap_trampoline_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0xa0, %eax
    movl %eax, %cr4
    movl {p_cr3}(%ebx), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl *{p_far64}(%ebx)
    .code64
ap_trampoline_lm64:
    movq {p_stack}(%rbx), %rsp
    movq {p_arg}(%rbx), %rdi
    movq {p_entry}(%rbx), %rax
    jmpq *%rax
ap_trampoline_end:
    .text
    "#,
    p_gdtr = const P_GDTR,
    p_far32 = const P_FAR32,
    p_far64 = const P_FAR64,
    p_cr3 = const P_CR3,
    p_stack = const P_STACK,
    p_arg = const P_ARG,
    p_entry = const P_ENTRY,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_pm32: u8;
    static ap_trampoline_lm64: u8;
    static ap_trampoline_end: u8;
}

/// An AP's start-up state: exactly one of the AP (going online) and the boot CPU (giving up
/// after a timeout) wins the transition out of `STARTING`.
const STARTING: u8 = 0;
const ONLINE: u8 = 1;
const ABANDONED: u8 = 2;

/// What the boot CPU hands an AP.
struct ApStart {
    block: *mut PerCpu,
    tables: *mut CpuTables,
    kernel_cr3: u64,
    state: AtomicU8,
}

/// The kernel's CR3 value, for APs to switch to.
static KERNEL_CR3: AtomicU64 = AtomicU64::new(0);

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Build the trampoline's page table (identity map of the low 2 MiB + the kernel's upper
/// half) from early frames; returns the root's physical address, below 4 GiB.
fn trampoline_page_table() -> Result<u64, &'static str> {
    paging::with_early_frames(|frames| {
        let pml4 = frames
            .alloc_frame()
            .ok_or("out of early page-table frames")?;
        let pdpt = frames
            .alloc_frame()
            .ok_or("out of early page-table frames")?;
        let pd = frames
            .alloc_frame()
            .ok_or("out of early page-table frames")?;
        if pml4.start_address().as_u64() >= 1 << 32 {
            return Err("trampoline page table root above 4 GiB");
        }
        let table = |f: PhysFrame| (PHYS_OFFSET + f.start_address().as_u64()) as *mut PageTable;
        let rw = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        share_kernel_half(pml4.start_address().as_u64());
        // SAFETY: the three frames are fresh, zeroed early-pool frames owned by us, reached
        // through the direct map.
        unsafe {
            let root = &mut *table(pml4);
            root[0].set_addr(pdpt.start_address(), rw);
            (&mut *table(pdpt))[0].set_addr(pd.start_address(), rw);
            (&mut *table(pd))[0].set_addr(PhysAddr::new(0), rw | PageTableFlags::HUGE_PAGE);
        }
        Ok(pml4.start_address().as_u64())
    })
}

/// Copy the kernel's upper-half top-level entries into the trampoline's root table at
/// physical `pml4`. Called again before each AP starts: its stack may live in a top-level
/// slot created after the trampoline table was first built.
fn share_kernel_half(pml4: u64) {
    let (cur, _) = Cr3::read();
    let root = (PHYS_OFFSET + pml4) as *mut PageTable;
    let kernel_root = (PHYS_OFFSET + cur.start_address().as_u64()) as *const PageTable;
    // SAFETY: `pml4` is the trampoline's own root (an early-pool frame no one else uses,
    // and no AP is running on it while we write: each AP has switched to the kernel's root
    // before the next one starts); the kernel root is only read.
    unsafe {
        for i in 256..512 {
            (&mut *root)[i] = (&*kernel_root)[i].clone();
        }
    }
}

/// Copy the trampoline to `page` (physical, < 1 MiB) and fill its constant parameters.
fn install_trampoline(page: u64, cr3: u64) {
    let start = sym(unsafe_ref(&raw const ap_trampoline_start));
    let end = sym(unsafe_ref(&raw const ap_trampoline_end));
    let len = (end - start) as usize;
    assert!(len <= PARAMS, "trampoline code overlaps its parameters");
    let dst = (PHYS_OFFSET + page) as *mut u8;
    let put = |off: usize, bytes: &[u8]| {
        // SAFETY: `page` is the reserved trampoline page, mapped through the direct map,
        // and every offset written is inside it.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(off), bytes.len()) }
    };
    // SAFETY: the trampoline code is `len` bytes of the kernel's text.
    put(0, unsafe {
        core::slice::from_raw_parts(start as *const u8, len)
    });
    let gdt: [u64; 4] = [
        0,
        0x00cf_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0x00af_9a00_0000_ffff,
    ];
    for (i, d) in gdt.iter().enumerate() {
        put(P_GDT + 8 * i, &d.to_le_bytes());
    }
    put(P_GDTR, &(31u16).to_le_bytes());
    put(P_GDTR + 2, &((page as u32) + P_GDT as u32).to_le_bytes());
    let pm32 = sym(unsafe_ref(&raw const ap_trampoline_pm32)) - start;
    let lm64 = sym(unsafe_ref(&raw const ap_trampoline_lm64)) - start;
    put(P_FAR32, &((page + pm32) as u32).to_le_bytes());
    put(P_FAR32 + 4, &0x08u16.to_le_bytes());
    put(P_FAR64, &((page + lm64) as u32).to_le_bytes());
    put(P_FAR64 + 4, &0x18u16.to_le_bytes());
    put(P_CR3, &(cr3 as u32).to_le_bytes());
    put(P_ENTRY, &(ap_entry as *const () as u64).to_le_bytes());
}

fn unsafe_ref(p: *const u8) -> &'static u8 {
    // SAFETY: only used on linker-defined labels inside the kernel image.
    unsafe { &*p }
}

/// CPUs the firmware listed as usable (MADT), recorded once by [`record_topology`] before
/// the allocator sizes its per-CPU arrays from it; starting CPUs never changes it.
pub static FIRMWARE_CPUS: AtomicUsize = AtomicUsize::new(1);

/// Possible CPUs: the length of every per-CPU array (`num_possible_cpus()`). Known once the
/// MADT was read ([`record_topology`]), before the allocator sizes anything per CPU.
pub fn possible_cpus() -> usize {
    FIRMWARE_CPUS.load(Ordering::Relaxed).clamp(1, MAX_CPUS)
}

/// Record how many CPUs the firmware lists, before anything sizes per-CPU arrays.
pub fn record_topology(topo: &Topology) {
    FIRMWARE_CPUS.store(topo.cpus.len().max(1), Ordering::Relaxed);
}

/// Start every usable CPU in `topo` other than this one, using the trampoline page `page`.
/// `stack(cpu)` provides each AP's kernel stack as `(guard page, top)`. Returns the number
/// of CPUs online afterwards (including this one).
pub fn start_aps(
    topo: &Topology,
    page: u64,
    stack: &mut dyn FnMut(usize) -> Result<(u64, u64), &'static str>,
) -> usize {
    KERNEL_CR3.store(Cr3::read().0.start_address().as_u64(), Ordering::SeqCst);
    let bsp_apic = apic::id();
    percpu::this_cpu()
        .apic_id
        .store(u64::from(bsp_apic), Ordering::Relaxed);
    percpu::this_cpu().online.store(true, Ordering::Release);

    if topo.cpus.len() <= 1 {
        return 1;
    }
    if page >= 0x100000 || page % 4096 != 0 {
        log::error!("trampoline page {page:#x} is not a page below 1 MiB; staying on one CPU");
        return 1;
    }
    let cr3 = match trampoline_page_table() {
        Ok(cr3) => cr3,
        Err(e) => {
            log::error!("cannot build the AP trampoline page table: {e}; staying on one CPU");
            return 1;
        }
    };
    install_trampoline(page, cr3);

    let mut next_id = 1;
    for entry in topo.cpus.iter().filter(|c| c.apic_id != bsp_apic) {
        if next_id >= MAX_CPUS {
            log::warn!(
                "more than {MAX_CPUS} CPUs; ignoring APIC id {}",
                entry.apic_id
            );
            continue;
        }
        let block = Box::leak(Box::new(PerCpu::new(next_id)));
        block
            .apic_id
            .store(u64::from(entry.apic_id), Ordering::Relaxed);
        let tables = Box::leak(Box::new(CpuTables::new()));
        let start = Box::leak(Box::new(ApStart {
            block,
            tables,
            kernel_cr3: KERNEL_CR3.load(Ordering::SeqCst),
            state: AtomicU8::new(STARTING),
        }));
        let stack_top = match stack(next_id) {
            Ok((guard, top)) => {
                STACK_GUARDS.lock().push(guard);
                top
            }
            Err(e) => {
                log::error!(
                    "smp: no stack for CPU with APIC id {}: {e}; not starting it",
                    entry.apic_id
                );
                continue;
            }
        };
        share_kernel_half(cr3);
        let dst = (PHYS_OFFSET + page) as *mut u8;
        // SAFETY: the trampoline page is ours (see install_trampoline); the previous AP has
        // left it (it went online or was abandoned) before we rewrite its parameters.
        unsafe {
            // The entry is jumped to, not called: leave the slot a call would have pushed.
            (dst.add(P_STACK) as *mut u64).write_volatile(stack_top - 8);
            (dst.add(P_ARG) as *mut u64).write_volatile(start as *mut ApStart as u64);
        }

        apic::send_init(entry.apic_id);
        time::udelay(10_000);
        apic::send_sipi(entry.apic_id, (page >> 12) as u8);
        time::udelay(200);
        if start.state.load(Ordering::Acquire) == STARTING {
            apic::send_sipi(entry.apic_id, (page >> 12) as u8);
        }
        // TCG can be slow to get a new vCPU going: allow up to two seconds.
        let deadline = time::now_ns() + 2_000_000_000;
        while start.state.load(Ordering::Acquire) == STARTING && time::now_ns() < deadline {
            core::hint::spin_loop();
        }
        match start
            .state
            .compare_exchange(STARTING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Err(ONLINE) => {
                // Wait until it has registered (it does right after winning).
                while percpu::cpu(next_id).is_none_or(|c| !c.online.load(Ordering::Acquire)) {
                    core::hint::spin_loop();
                }
                kprintln!("smp: CPU {} (APIC id {}) online", next_id, entry.apic_id);
                super::numa::cpu_online(next_id, entry.apic_id);
                next_id += 1;
            }
            _ => log::error!(
                "smp: CPU with APIC id {} did not start; continuing without it",
                entry.apic_id
            ),
        }
    }
    next_id
}

/// Guard page of every AP stack (for tests: each must be unmapped).
pub static STACK_GUARDS: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());

/// Rust entry of an AP, reached from the trampoline on the AP's own stack.
extern "C" fn ap_entry(start: *mut ApStart) -> ! {
    // SAFETY: `start` is the leaked ApStart the boot CPU prepared for this AP.
    let start = unsafe { &*start };
    // SAFETY: the kernel's root table maps everything the trampoline's did in the upper half
    // (the latter was copied from it), and we run from the upper half.
    unsafe {
        Cr3::write(
            PhysFrame::containing_address(PhysAddr::new(start.kernel_cr3)),
            Cr3Flags::empty(),
        );
    }
    if start
        .state
        .compare_exchange(STARTING, ONLINE, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // The boot CPU gave up on us and may have reused our id: stay out of the way.
        super::halt_forever();
    }
    // SAFETY: the tables and block were leaked for this AP alone, and we won the start race.
    unsafe {
        (*start.tables).load();
        super::idt::load();
        percpu::install(&mut *start.block);
    }
    apic::enable();
    apic::start_timer(TIMER_HZ);
    percpu::this_cpu().online.store(true, Ordering::Release);
    idle_loop()
}

/// An idle CPU: sleep until an interrupt, run any work posted to it, repeat.
fn idle_loop() -> ! {
    let me = percpu::this_cpu();
    loop {
        // Idle-time kernel work (kcompactd) runs here, with interrupts enabled, when due.
        crate::kcompactd::poll(me.cpu);
        crate::kswapd::poll(me.cpu);
        x86_64::instructions::interrupts::disable();
        if !me.work.pending.load(Ordering::Acquire) {
            // STI's one-instruction shadow makes "enable then halt" atomic: a wake IPI that
            // arrives after the check above still ends the halt.
            x86_64::instructions::interrupts::enable_and_hlt();
            continue;
        }
        x86_64::instructions::interrupts::enable();
        run_mailbox(&me.work);
    }
}

/// Run the function waiting in `mb`, if any, and signal completion.
fn run_mailbox(mb: &percpu::Mailbox) {
    if mb.pending.swap(false, Ordering::AcqRel) {
        // SAFETY: `pending` was set after `func` was stored, and the sender keeps the
        // function alive and the slot untouched until we set `done`.
        let f = unsafe { (*mb.func.get()).take() };
        if let Some(f) = f {
            // SAFETY: see above: the pointee outlives this call.
            unsafe { (*f)() };
        }
        mb.done.store(true, Ordering::Release);
    }
}

/// Post `f` to `mb` (which must belong to an online CPU), kick it with `vector`, and
/// return the mailbox guard; the caller waits on `done` and then drops the guard.
fn post<'a>(
    target: &'a PerCpu,
    mb: &'a percpu::Mailbox,
    f: &(dyn Fn() + Sync),
    vector: u8,
) -> spin::MutexGuard<'a, ()> {
    let guard = mb.lock.lock();
    mb.done.store(false, Ordering::Relaxed);
    // SAFETY: we hold the mailbox lock and `pending` is false, so the receiver does not
    // touch `func`. The lifetime is erased, but callers wait for `done` before `f` dies.
    unsafe {
        let f: *const (dyn Fn() + Sync + '_) = f;
        *mb.func.get() = Some(core::mem::transmute::<
            *const (dyn Fn() + Sync + '_),
            percpu::LentFn,
        >(f));
    }
    mb.pending.store(true, Ordering::Release);
    apic::send_ipi(target.apic_id.load(Ordering::Relaxed) as u32, vector);
    guard
}

/// Default bound of every wait for another CPU, in milliseconds of TSC time.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 20_000;

/// The bound in force (tests lower it to provoke a timeout; see [`set_wait_timeout_ms`]).
static WAIT_TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_WAIT_TIMEOUT_MS);

/// How long a CPU waits for another before it reports it, in milliseconds.
pub fn wait_timeout_ms() -> u64 {
    WAIT_TIMEOUT_MS.load(Ordering::Relaxed)
}

/// Set the bound of waits for other CPUs (at least 1 ms); returns the previous one.
/// Only tests change it, to make a timeout happen quickly; nothing asserts on time.
pub fn set_wait_timeout_ms(ms: u64) -> u64 {
    WAIT_TIMEOUT_MS.swap(ms.max(1), Ordering::Relaxed)
}

/// [`WaitTimeout::cpu`] when the awaited CPU is not known (a page lock has no owner).
pub const NO_CPU: usize = usize::MAX;

/// A wait for another CPU that hit its bound: who waited, for which CPU, for what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeout {
    /// The CPU that waited.
    pub waiter: usize,
    /// The CPU that did not answer.
    pub cpu: usize,
    /// What was awaited, e.g. "to take a remote call (IPI)".
    pub what: &'static str,
    /// How long the waiter waited, in milliseconds.
    pub waited_ms: u64,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPU {} waited {} ms for ", self.waiter, self.waited_ms)?;
        if self.cpu == NO_CPU {
            write!(f, "another CPU")?;
        } else {
            write!(f, "CPU {}", self.cpu)?;
        }
        write!(
            f,
            " {}; it did not answer (interrupts left off, or stuck?)",
            self.what
        )
    }
}

/// Spin until `done()` holds or the wait bound passes; on timeout, the error names `cpu`
/// and `what`.
pub fn wait_for_cpu(
    cpu: usize,
    what: &'static str,
    done: impl FnMut() -> bool,
) -> Result<(), WaitTimeout> {
    wait_for_cpu_ms(wait_timeout_ms(), cpu, what, done)
}

/// [`wait_for_cpu`] with an explicit bound in milliseconds.
pub fn wait_for_cpu_ms(
    bound_ms: u64,
    cpu: usize,
    what: &'static str,
    mut done: impl FnMut() -> bool,
) -> Result<(), WaitTimeout> {
    let start = time::now_ns();
    let deadline = start.saturating_add(bound_ms.saturating_mul(1_000_000));
    loop {
        // Check the time only every so often: reading it is far slower than the flag.
        for _ in 0..256 {
            if done() {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        let now = time::now_ns();
        if now >= deadline {
            return Err(WaitTimeout {
                waiter: percpu::cpu_id(),
                cpu,
                what,
                waited_ms: (now - start) / 1_000_000,
            });
        }
    }
}

/// Why [`try_call_on_cpu`] did not run the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The CPU is not online.
    Offline(usize),
    /// The CPU did not take the call within the bound; the call was withdrawn and will
    /// never run.
    Timeout(WaitTimeout),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Offline(cpu) => write!(f, "CPU {cpu} is not online"),
            CallError::Timeout(t) => write!(f, "{t}; the call was withdrawn"),
        }
    }
}

/// Wait for the receiver of `mb` (CPU `cpu`) to run the posted function. If it has not
/// started within the bound, withdraw the request: the function then never runs and the
/// caller may free it. If it has started, it must finish before the caller's borrow ends,
/// so the wait goes on for another bound and then panics with the diagnostic.
fn wait_done(cpu: usize, mb: &percpu::Mailbox, what: &'static str) -> Result<(), WaitTimeout> {
    let Err(timeout) = wait_for_cpu(cpu, what, || mb.done.load(Ordering::Acquire)) else {
        return Ok(());
    };
    // Whoever clears `pending` owns the request: the receiver (which then runs it) or us.
    if mb.pending.swap(false, Ordering::AcqRel) {
        // SAFETY: we hold the mailbox lock and cleared `pending` ourselves, so the receiver
        // will not read `func`; drop the lent pointer so nothing can run it later.
        unsafe { *mb.func.get() = None };
        return Err(timeout);
    }
    if let Err(t) = wait_for_cpu(cpu, "to finish a function it started", || {
        mb.done.load(Ordering::Acquire)
    }) {
        panic!("{timeout}; then {t}");
    }
    Ok(())
}

/// Run `f` on CPU `cpu` in its IPI handler (interrupts off there: keep `f` short and
/// non-blocking) and wait for it. Runs `f` directly when `cpu` is the current CPU.
/// Returns false when `cpu` is not online; panics with the diagnostic when it does not
/// answer within the bound (see [`try_call_on_cpu`] for the version that returns it).
/// See the module's rule on interrupts.
pub fn call_on_cpu(cpu: usize, f: &(dyn Fn() + Sync)) -> bool {
    match try_call_on_cpu(cpu, f) {
        Ok(()) => true,
        Err(CallError::Offline(_)) => false,
        Err(e) => panic!("call_on_cpu: {e}"),
    }
}

/// [`call_on_cpu`], returning why the call did not run instead of panicking: the target
/// is offline, or did not take the IPI within [`wait_timeout_ms`] (the call is then
/// withdrawn, never runs, and the error names the CPU).
pub fn try_call_on_cpu(cpu: usize, f: &(dyn Fn() + Sync)) -> Result<(), CallError> {
    if cpu == percpu::cpu_id() {
        x86_64::instructions::interrupts::without_interrupts(f);
        return Ok(());
    }
    let Some(target) = percpu::cpu(cpu).filter(|c| c.online.load(Ordering::Acquire)) else {
        return Err(CallError::Offline(cpu));
    };
    let guard = post(target, &target.call, f, CALL_VECTOR);
    let result = wait_done(cpu, &target.call, "to take a remote call (IPI)");
    drop(guard);
    result.map_err(CallError::Timeout)
}

/// How many wait bounds an idle CPU gets to pick up work from [`run_on_cpus`].
pub const RUN_ON_CPUS_START_FACTOR: u64 = 6;

/// Run `f(cpu)` on every CPU in `cpus` concurrently (the current CPU included if listed,
/// inline), each in its idle loop with interrupts enabled, and wait for all. CPUs that are
/// not online are skipped. Returns how many CPUs ran `f`.
///
/// `f` may run as long as it likes once started, so only the start is bounded: a CPU that
/// does not pick the work up within [`wait_timeout_ms`] after the current CPU finished its
/// own share (it is not idle: stuck, or interrupts off) is reported, the work withdrawn
/// from it, and it is not counted. The bound is [`RUN_ON_CPUS_START_FACTOR`] times the
/// usual one: the kcompactd host CPU finishes its round before it looks for work, and a
/// round over gigabytes under TCG takes seconds.
pub fn run_on_cpus(cpus: &[usize], f: &(dyn Fn(usize) + Sync)) -> usize {
    let me = percpu::cpu_id();
    // Mailbox locks are taken in ascending CPU order, so two callers can never each hold a
    // lock the other waits for.
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let closures: Vec<(usize, Box<dyn Fn() + Sync + '_>)> = sorted
        .iter()
        .map(|&c| (c, Box::new(move || f(c)) as Box<dyn Fn() + Sync + '_>))
        .collect();
    let mut guards = Vec::new();
    let mut ran = 0;
    for (cpu, g) in &closures {
        if *cpu == me {
            continue;
        }
        if let Some(target) = percpu::cpu(*cpu).filter(|c| c.online.load(Ordering::Acquire)) {
            guards.push((target, post(target, &target.work, &**g, WAKE_VECTOR)));
            ran += 1;
        }
    }
    if let Some((_, g)) = closures.iter().find(|(c, _)| *c == me) {
        g();
        ran += 1;
    }
    for (target, guard) in guards {
        let mb = &target.work;
        let bound = wait_timeout_ms().saturating_mul(RUN_ON_CPUS_START_FACTOR);
        let started = wait_for_cpu_ms(
            bound,
            target.cpu,
            "to start work posted to its idle loop",
            || !mb.pending.load(Ordering::Acquire),
        );
        if let Err(t) = started
            && mb.pending.swap(false, Ordering::AcqRel)
        {
            // SAFETY: we hold the mailbox lock and withdrew the request ourselves.
            unsafe { *mb.func.get() = None };
            log::error!("run_on_cpus: {t}; work withdrawn");
            ran -= 1;
        } else {
            // Started: the function runs for as long as its caller designed it to.
            while !mb.done.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
        }
        drop(guard);
    }
    ran
}

/// Wake CPU `cpu` from its idle halt (it then looks for work and idle-time jobs).
pub fn wake_cpu(cpu: usize) {
    if let Some(target) = percpu::cpu(cpu).filter(|c| c.online.load(Ordering::Acquire)) {
        apic::send_ipi(target.apic_id.load(Ordering::Relaxed) as u32, WAKE_VECTOR);
    }
}

/// Ids of all online CPUs.
pub fn online_ids() -> Vec<usize> {
    percpu::online_cpus().map(|c| c.cpu).collect()
}

/// Number of online CPUs.
pub fn nr_online() -> usize {
    percpu::online_cpus().count()
}

/// The shootdown in progress: serialised by its lock.
static SHOOTDOWN: spin::Mutex<()> = spin::Mutex::new(());
static SD_START: AtomicU64 = AtomicU64::new(0);
static SD_END: AtomicU64 = AtomicU64::new(0);
const _: () = assert!(MAX_CPUS <= 64, "SD_PENDING has one bit per CPU");
/// One bit per CPU that has not yet flushed (CPU ids are below [`MAX_CPUS`] = 64), so a
/// wait that times out can name the CPUs it waited for.
static SD_PENDING: AtomicU64 = AtomicU64::new(0);
/// Number of shootdowns performed (for tests and statistics).
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// Ranges larger than this are flushed with a full CR3 reload instead of page by page.
const FLUSH_ALL_PAGES: u64 = 64;

fn flush_range(start: u64, end: u64) {
    if (end - start) / 4096 > FLUSH_ALL_PAGES {
        x86_64::instructions::tlb::flush_all();
    } else {
        let mut va = start & !0xfff;
        while va < end {
            x86_64::instructions::tlb::flush(VirtAddr::new(va));
            va += 4096;
        }
    }
}

/// A TLB shootdown some CPUs did not acknowledge within the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShootdownTimeout {
    /// The first CPU that did not acknowledge, and how long the initiator waited.
    pub timeout: WaitTimeout,
    /// Every CPU that had not acknowledged, one bit per CPU id.
    pub missing: u64,
}

impl fmt::Display for ShootdownTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLB shootdown: {} (CPUs not done:", self.timeout)?;
        for cpu in (0..64).filter(|c| self.missing & (1u64 << c) != 0) {
            write!(f, " {cpu}")?;
        }
        write!(f, ")")
    }
}

/// Invalidate the virtual range `[start, end)` in every online CPU's TLB and wait until all
/// have done so. See the module's rule on interrupts. A CPU that does not acknowledge
/// within the bound leaves stale translations behind, which nothing can undo: the kernel
/// panics naming it (see [`try_tlb_shootdown`]).
pub fn tlb_shootdown(start: u64, end: u64) {
    if let Err(e) = try_tlb_shootdown(start, end) {
        panic!("{e}");
    }
}

/// [`tlb_shootdown`], returning the CPUs that did not acknowledge within
/// [`wait_timeout_ms`]. They flush when they take the IPI; the next shootdown first
/// waits for them, so acknowledgements never mix between two shootdowns.
pub fn try_tlb_shootdown(start: u64, end: u64) -> Result<(), ShootdownTimeout> {
    let _guard = SHOOTDOWN.lock();
    let me = percpu::cpu_id();
    let pending_cpu = || {
        let m = SD_PENDING.load(Ordering::Acquire);
        (m != 0).then(|| m.trailing_zeros() as usize)
    };
    let timeout = |t: WaitTimeout| ShootdownTimeout {
        timeout: t,
        missing: SD_PENDING.load(Ordering::Acquire),
    };
    // Stragglers of a shootdown that timed out: wait for them before reusing the state.
    if let Some(cpu) = pending_cpu() {
        wait_for_cpu(cpu, "to acknowledge an earlier TLB shootdown", || {
            SD_PENDING.load(Ordering::Acquire) == 0
        })
        .map_err(timeout)?;
    }
    let others: Vec<&PerCpu> = percpu::online_cpus().filter(|c| c.cpu != me).collect();
    SD_START.store(start, Ordering::Relaxed);
    SD_END.store(end, Ordering::Relaxed);
    let mask = others.iter().fold(0u64, |m, c| m | (1u64 << c.cpu));
    SD_PENDING.store(mask, Ordering::Release);
    for c in &others {
        apic::send_ipi(c.apic_id.load(Ordering::Relaxed) as u32, SHOOTDOWN_VECTOR);
    }
    flush_range(start, end);
    let first = pending_cpu().unwrap_or(me);
    wait_for_cpu(first, "to acknowledge a TLB shootdown", || {
        SD_PENDING.load(Ordering::Acquire) == 0
    })
    .map_err(|t| {
        // Name the CPU that is actually missing now, not the first one asked.
        let missing = SD_PENDING.load(Ordering::Acquire);
        ShootdownTimeout {
            timeout: WaitTimeout {
                cpu: if missing != 0 {
                    missing.trailing_zeros() as usize
                } else {
                    t.cpu
                },
                ..t
            },
            missing,
        }
    })?;
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

pub(super) extern "x86-interrupt" fn call_ipi(_frame: InterruptStackFrame) {
    run_mailbox(&percpu::this_cpu().call);
    apic::eoi();
}

pub(super) extern "x86-interrupt" fn shootdown_ipi(_frame: InterruptStackFrame) {
    flush_range(
        SD_START.load(Ordering::Relaxed),
        SD_END.load(Ordering::Relaxed),
    );
    SD_PENDING.fetch_and(!(1u64 << percpu::cpu_id()), Ordering::AcqRel);
    apic::eoi();
}

pub(super) extern "x86-interrupt" fn wake_ipi(_frame: InterruptStackFrame) {
    // Waking from HLT is the whole point; the idle loop looks at the work mailbox.
    apic::eoi();
}

/// Periodic hooks run from every CPU's timer interrupt (interrupts off, keep them short).
static TIMER_HOOKS: spin::Mutex<Vec<fn(usize)>> = spin::Mutex::new(Vec::new());

/// Run `hook(cpu)` on every timer tick of every CPU.
pub fn register_timer_hook(hook: fn(usize)) {
    x86_64::instructions::interrupts::without_interrupts(|| TIMER_HOOKS.lock().push(hook));
}

pub(super) extern "x86-interrupt" fn timer_irq(_frame: InterruptStackFrame) {
    let me = percpu::this_cpu();
    me.ticks.fetch_add(1, Ordering::Relaxed);
    if let Some(hooks) = TIMER_HOOKS.try_lock() {
        for hook in hooks.iter() {
            hook(me.cpu);
        }
    }
    apic::eoi();
}

pub(super) extern "x86-interrupt" fn spurious_irq(_frame: InterruptStackFrame) {
    // Spurious interrupts need no EOI.
}
