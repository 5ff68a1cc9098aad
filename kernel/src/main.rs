//! memkernel: a freestanding x86_64 kernel built around a Linux-style page allocator.
//!
//! Boot order matters and is spelled out in [`kmain`]: serial first (so everything after can
//! report), then descriptor tables and exception handlers (so a bug reports instead of
//! triple-faulting), the boot heap, the logger and the command line, and only then the
//! memory model and whatever mode the command line selects.
//!
//! # Locking
//!
//! Every kernel spinlock, what may take it, and the order in which they nest (a lock may
//! only be taken while holding locks listed *above* it):
//!
//! 1. `scenario::CURRENT` (the console's fragmentation scenario): thread context,
//!    interrupts enabled; held while its movable pages are verified or released, which
//!    may fault and wait on migration entries, shoot down TLBs and call into `mm`.
//! 2. `smp` mailbox locks (one per CPU and mailbox): thread context only, held while
//!    waiting for the target CPU, interrupts enabled (the waiter must keep answering IPIs);
//!    several are taken in ascending CPU id order.
//! 3. `smp::SHOOTDOWN`: thread context only, interrupts enabled while waiting, for the
//!    same reason.
//! 4. `heap` region lock: interrupts disabled; calls into `mm` to grow by a block of
//!    `GROW_ORDER` pages while held (never waiting: no compaction). The heap's large path
//!    (whole page blocks, vmalloc) runs after dropping it.
//! 5. `vmalloc::AREAS`: interrupts disabled; held only to reserve, find or release a
//!    virtual range, nothing taken inside. `vmalloc` maps and `vfree` unmaps, shoots down
//!    TLBs (2) and frees pages outside it, and `vfree` with interrupts disabled defers the
//!    shootdown to a later call (see `vmalloc`), so the heap never waits on other CPUs with
//!    interrupts off. Area bookkeeping is a fixed array: vmalloc never allocates from the
//!    heap.
//! 6. `paging::EARLY` (the early frame pool), then `paging::KERNEL_PT`: `with_early_frames`
//!    takes the pool and `map_page`/`unmap_page` then take KERNEL_PT with interrupts
//!    disabled. Page-table pages for the movable window are allocated from `mm` *before*
//!    KERNEL_PT is taken (`platform::Prealloc`), so nothing calls `mm` under it.
//! 7. `mm`'s per-CPU page-list locks, then `mm`'s zone locks (the order inside `mm` is
//!    documented there): local interrupts disabled. `mm` never allocates from the heap and
//!    never maps memory, so it takes nothing above.
//! 8. `serial::PORT`: interrupts disabled; innermost (anything may log). The crash path
//!    breaks it after stopping every other use.
//!
//! Interrupt handlers and what they lock:
//! - the timer tick takes `smp`'s timer-hook list with `try_lock` (a tick that finds it
//!   busy skips the hooks; it is otherwise taken with interrupts disabled);
//! - the remote-call IPI runs the function lent to it (`smp::call_on_cpu`), which may take
//!   `mm`'s pcp and zone locks (the pcp drain); every other holder takes those with
//!   interrupts disabled, so the handler never finds its own CPU holding one;
//! - the shootdown and wake IPIs take no lock;
//! - exception handlers (the page fault's migration wait included) take no lock, except
//!   that a fatal one reports through `crash::die`, which breaks the serial lock first.
//!
//! Waits for another CPU are bounded (`smp::wait_timeout_ms`): a CPU that does not answer
//! is named in an error or a panic instead of hanging the machine silently.

#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]

extern crate alloc;

#[macro_use]
pub mod arch;
pub mod bench;
pub mod boot_info;
pub mod cmdline;
pub mod console;
pub mod crash;
pub mod fault;
pub mod heap;
pub mod kcompactd;
pub mod kstack;
pub mod kswapd;
pub mod ktest;
pub mod ktests;
pub mod logger;
pub mod memory;
pub mod platform;
pub mod procfs;
pub mod ramdisk;
pub mod rdfs;
pub mod scenario;
pub mod vmalloc;

use bootloader_api::{BootInfo, BootloaderConfig, config::Mapping, entry_point};

/// Where the kernel image is mapped: Linux's `__START_KERNEL_map`, so addresses in reports
/// look familiar and `make gdb` can load symbols at a fixed offset.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Where all physical memory is mapped: Linux's `PAGE_OFFSET` (the direct map).
pub const PHYS_OFFSET: u64 = 0xffff_8880_0000_0000;

// The rest of the kernel half of the address space:
//   0xffff_c000_0000_0000 .. 0xffff_d000_0000_0000  bootloader's own mappings (boot info,
//                                                    boot stack, framebuffer)
//   0xffff_d000_0000_0000 ..                         kernel stacks of the other CPUs
//   0xffff_e000_0000_0000 .. 0xffff_e080_0000_0000  vmalloc areas (`vmalloc`)
//   0xffff_fe00_0000_0000 ..                         fixed device mappings (local APIC)
//   0xffff_ffff_8000_0000 ..                         the kernel image

/// Ask the bootloader for a direct map of all physical memory at [`PHYS_OFFSET`] (the
/// allocator reaches every frame through it), the kernel at [`KERNEL_BASE`], its other
/// mappings in the upper half, and a roomier boot stack.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::FixedAddress(PHYS_OFFSET));
    config.mappings.kernel_base = Mapping::FixedAddress(KERNEL_BASE);
    config.mappings.dynamic_range_start = Some(0xffff_c000_0000_0000);
    config.mappings.dynamic_range_end = Some(0xffff_cfff_ffff_f000);
    config.kernel_stack_size = 512 * 1024;
    config
};

entry_point!(kmain, config = &BOOTLOADER_CONFIG);

/// Adapts a `write_*` view method (taking `&mut dyn fmt::Write`) to `Display`.
pub struct ViewText<F: Fn(&mut dyn core::fmt::Write) -> core::fmt::Result>(pub F);

impl<F: Fn(&mut dyn core::fmt::Write) -> core::fmt::Result> core::fmt::Display for ViewText<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (self.0)(f)
    }
}

fn kmain(boot_info: &'static mut BootInfo) -> ! {
    arch::serial::init();
    arch::init_bsp();
    heap::init();
    logger::init();
    kprintln!(
        "memkernel {}: a Linux-style physical page allocator",
        env!("CARGO_PKG_VERSION")
    );

    let cmdline = cmdline::init();
    if let Some(level) = cmdline.get("loglevel") {
        match logger::parse_level(level) {
            Some(l) => log::set_max_level(l),
            None => log::warn!(
                "loglevel={level}: expected off, error, warn, info, debug or trace; keeping info"
            ),
        }
    }
    if !cmdline.raw().is_empty() {
        kprintln!("command line: {}", cmdline.raw());
    }

    boot_info::record(boot_info);
    boot_info::print_firmware_map();

    let topo = arch::discover_cpus(boot_info::facts().rsdp_addr);
    let alloc = memory::init();
    ramdisk::init();
    kprint!("{}", ViewText(|w| alloc.write_buddyinfo(w)));
    kprint!("{}", ViewText(|w| alloc.write_pagetypeinfo(w)));
    arch::start_cpus(&topo, alloc.model().trampoline_phys(), &mut |cpu| {
        kstack::alloc(cpu).map(|s| (s.guard, s.top))
    });

    kcompactd::start(kcompactd::enabled_at_boot(
        cmdline.has("test") || cmdline.has("bench"),
        cmdline.get("kcompactd"),
    ));
    kswapd::start(kswapd::enabled_at_boot(
        cmdline.has("test") || cmdline.has("bench"),
        ramdisk::get().is_some(),
        cmdline.get("kswapd"),
    ));
    procfs::apply_cmdline(cmdline);

    if cmdline.has("bench") {
        bench::run();
    }
    if cmdline.has("test") {
        ktest::run(cmdline.get("test"));
    }
    // A script replaces the demo (it can run `frag` and `compact` itself).
    let script = console::script_from_fw_cfg();
    if script.is_none() && !cmdline.has("test") && !cmdline.has("bench") {
        let mut out = scenario::SerialOut;
        if let Err(e) = scenario::demo(&mut out) {
            kprintln!("fragmentation demo: {e}");
        }
    }
    // Only an explicit `console=1` waits for input: tests and scripts must never hang.
    let interactive = cmdline.get("console") == Some("1");
    if let Some(script) = script {
        console::run_script(&script, interactive);
    }
    if interactive {
        kprintln!("demo finished");
        console::interactive();
    }
    kprintln!("demo finished; powering off");
    arch::qemu::exit(arch::qemu::ExitCode::Success)
}
