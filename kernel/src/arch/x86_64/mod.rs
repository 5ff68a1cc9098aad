//! Everything specific to x86_64 and the PC platform QEMU emulates.
//!
//! The rest of the kernel, and all of `mm`, reach the hardware only through this module, so
//! porting to another architecture means replacing it and nothing else.

#[macro_use]
pub mod serial;
pub mod fw_cfg;
pub mod gdt;
pub mod idt;
pub mod qemu;

/// Halt this CPU for good, with interrupts off.
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}

/// Bring up the boot CPU's descriptor tables and exception handlers.
pub fn init_bsp() {
    gdt::init_bsp();
    idt::load();
}
