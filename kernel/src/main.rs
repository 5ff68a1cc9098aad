//! memkernel: a freestanding x86_64 kernel built around a Linux-style page allocator.
//!
//! Boot order matters and is spelled out in [`kmain`]: serial first (so everything after can
//! report), then descriptor tables and exception handlers (so a bug reports instead of
//! triple-faulting), the boot heap, the logger and the command line, and only then the
//! memory model and whatever mode the command line selects.

#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]

extern crate alloc;

#[macro_use]
pub mod arch;
pub mod boot_info;
pub mod cmdline;
pub mod crash;
pub mod heap;
pub mod ktest;
pub mod ktests;
pub mod logger;
pub mod memory;
pub mod platform;

use bootloader_api::{
    BootInfo, BootloaderConfig,
    config::Mapping,
    entry_point,
};

/// Where the kernel image is mapped: Linux's `__START_KERNEL_map`, so addresses in reports
/// look familiar and `make gdb` can load symbols at a fixed offset.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Where all physical memory is mapped: Linux's `PAGE_OFFSET` (the direct map).
pub const PHYS_OFFSET: u64 = 0xffff_8880_0000_0000;

// The rest of the kernel half of the address space:
//   0xffff_c000_0000_0000 .. 0xffff_d000_0000_0000  bootloader's own mappings (boot info,
//                                                    boot stack, framebuffer)
//   0xffff_d000_0000_0000 ..                         kernel stacks of the other CPUs
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

fn kmain(boot_info: &'static mut BootInfo) -> ! {
    arch::serial::init();
    arch::init_bsp();
    heap::init();
    logger::init();
    kprintln!("memkernel {}: a Linux-style physical page allocator", env!("CARGO_PKG_VERSION"));

    let cmdline = cmdline::init();
    if let Some(level) = cmdline.get("loglevel") {
        match logger::parse_level(level) {
            Some(l) => log::set_max_level(l),
            None => log::warn!("loglevel={level}: expected off, error, warn, info, debug or trace; keeping info"),
        }
    }
    if !cmdline.raw().is_empty() {
        kprintln!("command line: {}", cmdline.raw());
    }

    boot_info::record(boot_info);
    boot_info::print_firmware_map();

    let topo = arch::discover_cpus(boot_info::facts().rsdp_addr);
    let model = memory::init();
    kprint!("{}", model.boot_report());
    arch::start_cpus(&topo, model.trampoline_phys());

    if cmdline.has("test") {
        ktest::run(cmdline.get("test"));
    }
    kprintln!("demo finished; powering off");
    arch::qemu::exit(arch::qemu::ExitCode::Success)
}
