//! Everything specific to x86_64 and the PC platform QEMU emulates.
//!
//! The rest of the kernel, and all of `mm`, reach the hardware only through this module, so
//! porting to another architecture means replacing it and nothing else.

#[macro_use]
pub mod serial;
pub mod acpi;
pub mod apic;
pub mod fw_cfg;
pub mod gdt;
pub mod idt;
pub mod numa;
pub mod paging;
pub mod percpu;
pub mod qemu;
pub mod smp;
pub mod time;

/// Halt this CPU for good, with interrupts off.
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}

/// Bring up the boot CPU's descriptor tables, exception handlers and per-CPU block.
pub fn init_bsp() {
    gdt::init_bsp();
    idt::load();
    percpu::init_bsp();
    paging::init();
}

/// Read the MADT, map and enable this CPU's local APIC, calibrate the TSC and the APIC
/// timer. Runs before the memory model, which needs the number of possible CPUs.
pub fn discover_cpus(rsdp: Option<u64>) -> acpi::Topology {
    apic::disable_legacy_pic();
    let topo = match acpi::topology(rsdp) {
        Ok(t) => t,
        Err(e) => {
            log::error!("ACPI MADT unavailable ({e:?}); running on the boot CPU only");
            acpi::Topology {
                cpus: alloc::vec::Vec::new(),
                lapic_phys: 0xfee0_0000,
                ioapics: alloc::vec::Vec::new(),
            }
        }
    };
    smp::record_topology(&topo);
    if let Err(e) = apic::map(topo.lapic_phys) {
        crate::crash::die(format_args!(
            "cannot map the local APIC at {:#x}: {e:?}",
            topo.lapic_phys
        ));
    }
    apic::enable();
    // CPU indices as `smp::start_aps` will hand them out: this CPU first, then the MADT's.
    let bsp = apic::id();
    let plan: alloc::vec::Vec<u32> = core::iter::once(bsp)
        .chain(topo.cpus.iter().map(|c| c.apic_id).filter(|&a| a != bsp))
        .take(percpu::MAX_CPUS)
        .collect();
    numa::discover(rsdp, &plan);
    let tsc_hz = time::calibrate(10);
    let apic_per_ms = apic::calibrate_timer();
    kprintln!(
        "smp: {} CPU(s) in MADT, local APIC at {:#x}, {} I/O APIC(s){}; TSC {} MHz, APIC timer {} ticks/ms",
        topo.cpus.len(),
        topo.lapic_phys,
        topo.ioapics.len(),
        topo.ioapics
            .first()
            .map_or(alloc::string::String::new(), |io| alloc::format!(
                " (id {} at {:#x}, GSI base {})",
                io.id,
                io.address,
                io.gsi_base
            )),
        tsc_hz / 1_000_000,
        apic_per_ms
    );
    topo
}

/// Start the application processors through the trampoline page `page` (physical, below
/// 1 MiB, reserved by the early allocator) on stacks from `stack(cpu)`, start every CPU's
/// timer and enable interrupts.
/// Returns the number of CPUs online.
pub fn start_cpus(
    topo: &acpi::Topology,
    page: Option<u64>,
    stack: &mut dyn FnMut(usize) -> Result<(u64, u64), &'static str>,
) -> usize {
    let online = match page {
        Some(page) => smp::start_aps(topo, page, stack),
        None => {
            log::error!("no trampoline page below 1 MiB was reserved; staying on one CPU");
            smp::start_aps(
                &acpi::Topology {
                    cpus: alloc::vec::Vec::new(),
                    ..topo.clone()
                },
                0,
                stack,
            )
        }
    };
    apic::start_timer(smp::TIMER_HZ);
    x86_64::instructions::interrupts::enable();
    kprintln!("smp: {online} CPU(s) online");
    online
}
