//! Building the memory model from what the bootloader reported.
//!
//! This is the only place where bootloader_api's region kinds meet `mm`'s: BIOS regions
//! carry E820 type numbers, UEFI regions carry UEFI memory types (the bootloader has already
//! folded conventional and boot-services memory into `Usable`), and `Bootloader` regions are
//! RAM holding the kernel, its page tables and the boot information. The model is built
//! once and kept in a static for the rest of the kernel's life.

use alloc::vec::Vec;

use bootloader_api::info::MemoryRegionKind;
use mm::{
    memmap::{FirmwareRange, RangeKind},
    mm_init::{MemoryModel, ModelParams},
};
use spin::Once;

use crate::{boot_info, cmdline, platform::PLATFORM};

static MODEL: Once<MemoryModel> = Once::new();

/// `mm`'s kind for a bootloader region kind.
pub fn range_kind(kind: MemoryRegionKind) -> RangeKind {
    match kind {
        MemoryRegionKind::Usable => RangeKind::Usable,
        MemoryRegionKind::Bootloader => RangeKind::Bootloader,
        MemoryRegionKind::UnknownBios(t) => RangeKind::from_e820_type(t),
        // UEFI memory types: 8 unusable, 9 ACPI reclaim, 10 ACPI NVS; the rest left here
        // (reserved, runtime services, MMIO, PAL code, persistent) must not be used.
        MemoryRegionKind::UnknownUefi(8) => RangeKind::Unusable,
        MemoryRegionKind::UnknownUefi(9) => RangeKind::AcpiReclaimable,
        MemoryRegionKind::UnknownUefi(10) => RangeKind::AcpiNvs,
        MemoryRegionKind::UnknownUefi(_) => RangeKind::Reserved,
        _ => RangeKind::Reserved,
    }
}

/// The firmware map in `mm`'s terms.
pub fn firmware_ranges() -> Vec<FirmwareRange> {
    boot_info::facts()
        .regions
        .iter()
        .map(|r| FirmwareRange { start: r.start, end: r.end, kind: range_kind(r.kind) })
        .collect()
}

/// Build the memory model (once) and print its boot report. A map the model rejects is
/// fatal: there is no memory to run on.
pub fn init() -> &'static MemoryModel {
    MODEL.call_once(|| {
        let ranges = firmware_ranges();
        let facts = boot_info::facts();
        let kernel = (facts.kernel.0, facts.kernel.0 + facts.kernel.1);
        let mut params = ModelParams::default();
        params.parse_cmdline(cmdline::get().raw());
        match MemoryModel::init(&PLATFORM, &ranges, &[kernel], &params) {
            Ok(model) => model,
            Err(e) => crate::crash::die(format_args!("memory model: {e}")),
        }
    })
}

/// The memory model. Panics if called before [`init`], which kmain runs before any user.
pub fn model() -> &'static MemoryModel {
    MODEL.get().expect("memory::init runs during boot")
}
