//! What the bootloader told us, kept for the rest of boot.
//!
//! bootloader_api types stop here: the memory model in `mm` takes a plain list of ranges, so
//! this module is the only place that knows how the bootloader names memory kinds (E820 type
//! numbers under BIOS, UEFI memory types under UEFI).

use bootloader_api::{BootInfo, info::MemoryRegionKind};
use spin::Once;

/// The facts from BootInfo that later stages need.
#[derive(Debug)]
pub struct BootFacts {
    /// Virtual address at which all physical memory is mapped.
    pub physical_memory_offset: u64,
    /// ACPI RSDP physical address, when the firmware gave one.
    pub rsdp_addr: Option<u64>,
    /// Firmware memory map as received.
    pub regions: &'static [bootloader_api::info::MemoryRegion],
    /// Physical address and length of the kernel image.
    pub kernel: (u64, u64),
    /// Virtual address and length of the ramdisk, when the bootloader loaded one.
    pub ramdisk: Option<(u64, u64)>,
}

static FACTS: Once<BootFacts> = Once::new();

/// Keep what we need from `info`.
pub fn record(info: &'static mut BootInfo) {
    let Some(offset) = info.physical_memory_offset.into_option() else {
        crate::crash::die(format_args!(
            "the bootloader did not map physical memory (BOOTLOADER_CONFIG asks for it)"
        ));
    };
    let rsdp_addr = info.rsdp_addr.into_option();
    let kernel = (info.kernel_addr, info.kernel_len);
    let ramdisk = info
        .ramdisk_addr
        .into_option()
        .filter(|_| info.ramdisk_len > 0)
        .map(|a| (a, info.ramdisk_len));
    let regions: &'static [bootloader_api::info::MemoryRegion] = &info.memory_regions;
    FACTS.call_once(|| BootFacts {
        physical_memory_offset: offset,
        rsdp_addr,
        regions,
        kernel,
        ramdisk,
    });
}

/// The recorded facts. Panics only if called before [`record`], which `kmain` runs first.
pub fn facts() -> &'static BootFacts {
    FACTS
        .get()
        .expect("boot_info::record runs at the start of kmain")
}

/// The firmware's own type number for a region kind, when it has one (E820 or UEFI).
fn firmware_type(kind: MemoryRegionKind) -> Option<u32> {
    match kind {
        MemoryRegionKind::UnknownBios(t) | MemoryRegionKind::UnknownUefi(t) => Some(t),
        _ => None,
    }
}

fn human_size(bytes: u64) -> (u64, &'static str) {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut value = bytes;
    while unit + 1 < UNITS.len() && value >= 1024 && value % 1024 == 0 {
        value /= 1024;
        unit += 1;
    }
    (value, UNITS[unit])
}

/// Print the firmware memory map as received: start, end (exclusive), size, kind.
pub fn print_firmware_map() {
    let facts = facts();
    kprintln!("firmware memory map: {} regions", facts.regions.len());
    let mut usable = 0u64;
    for r in facts.regions {
        // One table maps firmware kinds (crate::memory::range_kind); the raw type number is
        // kept in parentheses so nothing the firmware said is lost.
        let name = crate::memory::range_kind(r.kind);
        let ty = firmware_type(r.kind);
        let size = r.end.saturating_sub(r.start);
        if r.kind == MemoryRegionKind::Usable {
            usable += size;
        }
        let (v, unit) = human_size(size);
        match ty {
            Some(t) => kprintln!(
                "  [{:#014x}-{:#014x}) {:>6} {:<3} {} ({})",
                r.start,
                r.end,
                v,
                unit,
                name,
                t
            ),
            None => kprintln!(
                "  [{:#014x}-{:#014x}) {:>6} {:<3} {}",
                r.start,
                r.end,
                v,
                unit,
                name
            ),
        }
    }
    kprintln!("firmware reports {} KiB usable", usable / 1024);
}
