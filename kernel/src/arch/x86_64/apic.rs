//! The local APIC (xAPIC, memory-mapped) and the legacy PIC it replaces.
//!
//! Every CPU has a local APIC at the same physical address; each CPU sees its own. We map
//! that page once, uncached (PCD|PWT), at a fixed kernel address: device registers must not
//! be cached or write-combined, and the direct map the bootloader built uses write-back
//! memory. The APIC sends inter-processor interrupts (INIT/SIPI to start CPUs, fixed IPIs
//! for remote calls and TLB shootdowns) and provides each CPU's periodic timer.
//!
//! The 8259 PIC is remapped away from the exception vectors and masked: its lines would
//! otherwise arrive as "exceptions" 8..15 the moment interrupts are enabled.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::{PhysAddr, VirtAddr, instructions::port::Port, structures::paging::PageTableFlags};

use super::{paging, time};

/// Fixed virtual address of the local APIC window.
pub const LAPIC_VIRT: u64 = 0xffff_fe00_0000_0000;

const REG_ID: usize = 0x20;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CUR: usize = 0x390;
const REG_TIMER_DIV: usize = 0x3e0;

/// Spurious-interrupt vector (also enables the APIC through the SVR).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Local APIC timer vector.
pub const TIMER_VECTOR: u8 = 0x20;

/// APIC timer ticks per millisecond at divide-by-16 (measured on the boot CPU).
static TIMER_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

fn reg(offset: usize) -> *mut u32 {
    (LAPIC_VIRT as usize + offset) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: LAPIC_VIRT maps the local APIC's register page (see `map`), every offset used
    // here is a defined 32-bit register, and APIC registers need volatile access.
    unsafe { reg(offset).read_volatile() }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; writes to these registers only affect this CPU's APIC state or
    // send the IPI the caller asked for.
    unsafe { reg(offset).write_volatile(value) }
}

/// Remap the 8259 PICs to vectors 0x30..0x3f and mask every line.
pub fn disable_legacy_pic() {
    let mut m_cmd = Port::<u8>::new(0x20);
    let mut m_data = Port::<u8>::new(0x21);
    let mut s_cmd = Port::<u8>::new(0xa0);
    let mut s_data = Port::<u8>::new(0xa1);
    // SAFETY: the standard ICW1..ICW4 initialisation of the two 8259s, then a full mask;
    // nothing in the kernel uses the PIC.
    unsafe {
        m_cmd.write(0x11);
        s_cmd.write(0x11);
        m_data.write(0x30);
        s_data.write(0x38);
        m_data.write(4);
        s_data.write(2);
        m_data.write(1);
        s_data.write(1);
        m_data.write(0xff);
        s_data.write(0xff);
    }
}

/// Map the local APIC registers at [`LAPIC_VIRT`] (uncached). Call once, on the boot CPU.
pub fn map(phys: u64) -> Result<(), paging::MapError> {
    let flags = PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    paging::with_early_frames(|frames| {
        // SAFETY: LAPIC_VIRT is reserved for this window (see the layout in main.rs) and the
        // physical page is the APIC's MMIO page, which no RAM allocation can alias.
        unsafe {
            paging::map_page(
                VirtAddr::new(LAPIC_VIRT),
                PhysAddr::new(phys),
                flags,
                frames,
            )
        }
    })
}

/// Enable this CPU's local APIC: software-enable through the SVR and accept all priorities.
pub fn enable() {
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_TPR, 0);
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Signal end of interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

fn wait_icr_idle() {
    // Bit 12: delivery status (send pending).
    while read(REG_ICR_LOW) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

fn send_icr(apic_id: u32, low: u32) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        wait_icr_idle();
        write(REG_ICR_HIGH, apic_id << 24);
        write(REG_ICR_LOW, low);
        wait_icr_idle();
    });
}

/// Send a fixed IPI with `vector` to `apic_id`.
pub fn send_ipi(apic_id: u32, vector: u8) {
    send_icr(apic_id, u32::from(vector) | (1 << 14));
}

/// INIT IPI (assert, edge) to `apic_id`.
pub fn send_init(apic_id: u32) {
    send_icr(apic_id, 0x0000_4500);
}

/// Startup IPI to `apic_id`, starting it at physical `page << 12` in real mode.
pub fn send_sipi(apic_id: u32, page: u8) {
    send_icr(apic_id, 0x0000_4600 | u32::from(page));
}

/// Measure the APIC timer rate against the TSC (boot CPU, once).
pub fn calibrate_timer() -> u64 {
    write(REG_TIMER_DIV, 0b0011); // divide by 16
    write(REG_LVT_TIMER, 1 << 16); // masked, one-shot
    write(REG_TIMER_INIT, u32::MAX);
    time::udelay(10_000);
    let elapsed = u32::MAX - read(REG_TIMER_CUR);
    write(REG_TIMER_INIT, 0);
    let per_ms = (u64::from(elapsed) / 10).max(1);
    TIMER_TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
    per_ms
}

/// Start this CPU's periodic timer at `hz` interrupts per second on [`TIMER_VECTOR`].
pub fn start_timer(hz: u64) {
    let per_ms = TIMER_TICKS_PER_MS.load(Ordering::Relaxed).max(1);
    let count = (per_ms * 1000 / hz.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
    write(REG_TIMER_DIV, 0b0011);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR) | (1 << 17)); // periodic
    write(REG_TIMER_INIT, count);
}
