//! minimal-kernel: the smallest bootloader-0.11 kernel that runs the zonebuddy page
//! allocator, using only the crate's public API. It is what a hobby OS needs to adopt the
//! allocator, and `make test` boots it under BIOS and UEFI (tests/example_kernel.rs).
//!
//! Glue: 75 lines, counted as non-blank, non-comment lines from the first "glue" banner
//! below to "the example proper": serial, QEMU exit, panic handler, logger, the `Platform` impl, region conversion
//! (through `zonebuddy::bootloader`, feature `bootloader_api`) and building the allocator
//! in place. Everything it takes from zonebuddy comes from the crate root (the front door).
//!
//! What it does, in order: build the memory model from the bootloader's memory regions,
//! start the page allocator, allocate orders 0, 3 and 9 with GFP_KERNEL, write a pattern
//! through the direct map and read it back, free them, print `/proc/buddyinfo`, run the
//! invariant checker, and leave QEMU through isa-debug-exit: 0x10 (status 33) when every
//! step succeeded, 0x11 (status 35) on the first error or a panic, which is printed first.
//!
//! Single CPU, interrupts never enabled, no IDT, no heap (the allocator keeps its metadata
//! in the RAM it manages), the bootloader's default configuration except that physical
//! memory is mapped, at an offset the bootloader chooses.
//!
//! The boot stack is the bootloader's default (80 KiB): the memory model and the allocator
//! are built in place in a static slot (`PageAllocator::init_in`), never on the stack.

#![no_std]
#![no_main]

use core::fmt::{self, Write};
use core::mem::MaybeUninit;

use bootloader_api::{BootInfo, BootloaderConfig, config::Mapping, entry_point};
use uart_16550::{Config, Uart16550, Uart16550Tty};
use x86_64::instructions::{hlt, interrupts, port::Port};
use zonebuddy::{GFP_KERNEL, IrqState, ModelParams, PAGE_SIZE, PageAllocator, Platform};

/// The default configuration, plus a direct map of all physical memory (zonebuddy reaches
/// every page it manages through it: `Platform::phys_to_virt`).
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config
};

entry_point!(kmain, config = &BOOTLOADER_CONFIG);

// ---- glue: serial (COM1), QEMU exit, panic handler, logger ----

/// COM1 as a `fmt::Write`. `kmain` initialises the UART once; writers only send.
struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: 0x3f8..0x3ff are COM1's registers on every PC QEMU emulates. This kernel
        // runs on one CPU with interrupts off, so two writers never overlap.
        let uart = unsafe { Uart16550::new_port(0x3f8) }.map_err(|_| fmt::Error)?;
        Uart16550Tty::from_inner(uart).write_str(s)
    }
}

macro_rules! println {
    ($($arg:tt)*) => {{ let _ = writeln!(Serial, $($arg)*); }};
}

/// Values for QEMU's isa-debug-exit (iobase 0xf4): QEMU exits with status `2 * v + 1`.
const EXIT_SUCCESS: u32 = 0x10;
const EXIT_FAILURE: u32 = 0x11;

fn exit_qemu(code: u32) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device the runner attaches; where there is
    // none the write goes nowhere and we halt below.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    loop {
        hlt();
    }
}

/// Print the error and leave QEMU with failure.
fn fail(what: &str, error: &dyn fmt::Display) -> ! {
    println!("minimal-kernel: FAILED: {what}: {error}");
    exit_qemu(EXIT_FAILURE)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("minimal-kernel: panic: {info}");
    exit_qemu(EXIT_FAILURE)
}

/// zonebuddy reports map anomalies and bad frees through `log`: show them on serial.
struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            println!("[{}] {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

// ---- glue: the platform ----

/// One CPU, interrupts off throughout, the bootloader's direct map. The allocator owns it.
struct MiniPlatform {
    /// Where the bootloader mapped physical address 0; known only at run time.
    phys_offset: u64,
}

impl Platform for MiniPlatform {
    fn cpu_id(&self) -> usize {
        0
    }
    fn nr_cpus(&self) -> usize {
        1
    }
    fn local_irq_save(&self) -> IrqState {
        let was_enabled = interrupts::are_enabled();
        interrupts::disable();
        IrqState::from_raw(was_enabled as u64)
    }
    fn local_irq_restore(&self, state: IrqState) {
        if state.into_raw() != 0 {
            interrupts::enable();
        }
    }
    fn irqs_disabled(&self) -> bool {
        !interrupts::are_enabled()
    }
    // One CPU: whoever takes the pcp lists is their owner, so `cpu_barrier` is never
    // called, and the owner takes them without an atomic instruction.
    fn has_cpu_barrier(&self) -> bool {
        true
    }
    fn phys_to_virt(&self, pa: u64) -> *mut u8 {
        (self.phys_offset + pa) as *mut u8
    }
    // No `movable_mapping`: without it zonebuddy refuses anon regions (mapped movable
    // memory), and everything else works.
}

// ---- glue: region conversion (zonebuddy::bootloader knows the BIOS and UEFI kinds) ----

/// Most regions a map may have here (OVMF at 256 MiB reports about 100).
/// Build the memory model and start the allocator, in place in a static slot.
fn start(info: &BootInfo, platform: MiniPlatform) -> &'static PageAllocator<MiniPlatform> {
    static mut SLOT: MaybeUninit<PageAllocator<MiniPlatform>> = MaybeUninit::uninit();
    // The bootloader's regions, converted as init walks them (no buffer to size).
    let ranges = zonebuddy::bootloader::firmware_ranges(&info.memory_regions);
    // The kernel's ELF file stays in use (the bootloader maps segments from it).
    let kernel = (info.kernel_addr, info.kernel_addr + info.kernel_len);
    // The x86_64 defaults; one CPU, so no real-mode trampoline page is asked for.
    let params = ModelParams::default();
    // SAFETY: `start` runs once, on the only CPU, so this is the only reference to SLOT.
    let slot = unsafe { &mut *core::ptr::addr_of_mut!(SLOT) };
    PageAllocator::init_in(slot, platform, ranges, &[kernel], &params)
        .unwrap_or_else(|e| fail("memory model and page allocator", &e))
}

// ---- the example proper ----

/// The pattern word `i` of a block of order `order` holds.
fn pattern(order: u32, i: usize) -> u64 {
    0x5a5a_0000_0000_0000 ^ ((order as u64) << 40) ^ i as u64
}

fn kmain(info: &'static mut BootInfo) -> ! {
    // SAFETY: as in `Serial::write_str`: COM1 is ours, one CPU, interrupts off.
    if unsafe { Uart16550Tty::new_port(0x3f8, Config::default()) }.is_err() {
        exit_qemu(EXIT_FAILURE); // nowhere to say why
    }
    static LOGGER: SerialLogger = SerialLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    println!(
        "minimal-kernel: zonebuddy on one CPU, {} memory regions",
        info.memory_regions.len()
    );
    let Some(offset) = info.physical_memory_offset.into_option() else {
        fail("boot info", &"the bootloader did not map physical memory")
    };
    let platform = MiniPlatform {
        phys_offset: offset,
    };

    let pages = start(info, platform);
    println!(
        "minimal-kernel: page allocator up, {} pages free",
        pages.nr_free_pages()
    );

    // Allocate all three blocks, then write all, then check all: a block that overlapped
    // another would show up as a corrupted pattern.
    const ORDERS: [u32; 3] = [0, 3, 9];
    let blocks = ORDERS.map(|order| match pages.alloc_pages(GFP_KERNEL, order) {
        Some(page) => page,
        None => fail(
            "alloc_pages",
            &format_args!("order {order} with GFP_KERNEL: out of memory"),
        ),
    });
    for (&order, page) in ORDERS.iter().zip(blocks) {
        let words = (PAGE_SIZE << order) as usize / 8;
        let va = pages.page_address(page) as *mut u64;
        for i in 0..words {
            // SAFETY: the allocator gave us these 2^order pages; the direct map maps them
            // at `va`, writable, and nothing else uses them until we free them.
            unsafe { va.add(i).write_volatile(pattern(order, i)) };
        }
    }
    for (&order, page) in ORDERS.iter().zip(blocks) {
        let words = (PAGE_SIZE << order) as usize / 8;
        let va = pages.page_address(page) as *const u64;
        // SAFETY: as above; the pages are still ours.
        let bad = (0..words).find(|&i| unsafe { va.add(i).read_volatile() } != pattern(order, i));
        if let Some(i) = bad {
            fail(
                "direct map",
                &format_args!("order {order} at {va:p}: word {i} changed"),
            );
        }
        let pfn = pages.page_to_pfn(page);
        println!(
            "minimal-kernel: order {order}: pfn {pfn:#x} at {va:p}, {} bytes written and read back through the direct map",
            words * 8
        );
    }
    for (&order, page) in ORDERS.iter().zip(blocks) {
        if let Err(e) = pages.free_pages(page, order) {
            fail("free_pages", &e);
        }
    }
    // Order-0..3 frees wait on this CPU's pcp lists; drain them so buddyinfo shows them.
    pages.drain_local_pages();
    println!("minimal-kernel: freed; /proc/buddyinfo:");
    if pages.write_buddyinfo(&mut Serial).is_err() {
        fail("buddyinfo", &"the serial writer failed");
    }
    if let Err(v) = zonebuddy::check(pages) {
        fail("invariant checker", &v);
    }
    println!("minimal-kernel: invariant checker: clean");
    println!("minimal-kernel: all checks passed");
    exit_qemu(EXIT_SUCCESS)
}
