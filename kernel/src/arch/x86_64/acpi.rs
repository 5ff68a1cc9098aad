//! ACPI: which CPUs and interrupt controllers the machine has (MADT), and the raw NUMA
//! tables (SRAT, SLIT) for `arch::numa`.
//!
//! The MADT lists every local APIC (one per CPU) with an "enabled" flag, the I/O APICs, and
//! possibly an override of the local APIC address. The `acpi` crate parses tables in its
//! no-alloc build; we give it a handler that reads physical memory through the direct map,
//! so "mapping" a table is just adding [`crate::PHYS_OFFSET`].

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::{
    AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping,
    madt::{Madt, MadtEntry},
    sdt::{SdtHeader, Signature},
};

use crate::PHYS_OFFSET;

/// Reads ACPI tables through the direct map.
#[derive(Clone, Copy, Debug)]
pub struct DirectMapHandler;

impl AcpiHandler for DirectMapHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = (PHYS_OFFSET as usize + physical_address) as *mut T;
        // SAFETY: the bootloader maps all physical memory (and at least the first 4 GiB,
        // where firmware tables live) at PHYS_OFFSET, so `virt` is mapped and non-null; the
        // caller guarantees a valid T lives there. Nothing needs undoing on unmap.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new_unchecked(virt),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// One processor from the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuEntry {
    /// ACPI processor UID.
    pub processor_uid: u32,
    /// Its local APIC id.
    pub apic_id: u32,
}

/// One I/O APIC from the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// I/O APIC id.
    pub id: u8,
    /// MMIO base.
    pub address: u32,
    /// First global system interrupt it serves.
    pub gsi_base: u32,
}

/// What the MADT says about interrupt controllers and CPUs.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Usable processors (enabled or online-capable), in MADT order.
    pub cpus: Vec<CpuEntry>,
    /// Physical address of the local APIC window.
    pub lapic_phys: u64,
    /// I/O APICs (noted; the kernel drives no devices through them yet).
    pub ioapics: Vec<IoApic>,
}

/// Why the topology could not be read.
#[derive(Debug)]
pub enum AcpiError {
    /// The bootloader did not pass an RSDP.
    NoRsdp,
    /// The tables are malformed or the MADT is missing.
    Tables(acpi::AcpiError),
}

/// Read the MADT from the tables rooted at the RSDP at `rsdp_phys`.
pub fn topology(rsdp_phys: Option<u64>) -> Result<Topology, AcpiError> {
    let rsdp = rsdp_phys.ok_or(AcpiError::NoRsdp)?;
    // SAFETY: the bootloader got this RSDP address from the firmware; the crate validates
    // the signature and checksums before trusting anything it points to.
    let tables = unsafe { AcpiTables::from_rsdp(DirectMapHandler, rsdp as usize) }
        .map_err(AcpiError::Tables)?;
    let madt = tables.find_table::<Madt>().map_err(AcpiError::Tables)?;
    let mut topo = Topology {
        cpus: Vec::new(),
        lapic_phys: u64::from(madt.get().local_apic_address),
        ioapics: Vec::new(),
    };
    // Flags bit 0: enabled; bit 1: online capable (may be enabled by the OS).
    let usable = |flags: u32| flags & 0b11 != 0;
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                let flags = e.flags;
                if usable(flags) {
                    topo.cpus.push(CpuEntry {
                        processor_uid: u32::from(e.processor_id),
                        apic_id: u32::from(e.apic_id),
                    });
                }
            }
            MadtEntry::LocalX2Apic(e) => {
                let (flags, apic_id, uid) = (e.flags, e.x2apic_id, e.processor_uid);
                // xAPIC mode addresses 8-bit ids only; larger ids would need x2APIC.
                if usable(flags)
                    && apic_id < 0xff
                    && !topo.cpus.iter().any(|c| c.apic_id == apic_id)
                {
                    topo.cpus.push(CpuEntry {
                        processor_uid: uid,
                        apic_id,
                    });
                }
            }
            MadtEntry::IoApic(e) => topo.ioapics.push(IoApic {
                id: e.io_apic_id,
                address: e.io_apic_address,
                gsi_base: e.global_system_interrupt_base,
            }),
            MadtEntry::LocalApicAddressOverride(e) => topo.lapic_phys = e.local_apic_address,
            _ => {}
        }
    }
    Ok(topo)
}

/// A table this kernel reads as bytes (SRAT, SLIT): just the standard header, so that the
/// `acpi` crate finds, maps and checksums it; the bytes are parsed by zonebuddy's
/// `port::acpi_numa`.
#[repr(C, packed)]
struct RawTable<const SRAT: bool> {
    header: SdtHeader,
}

// SAFETY: the struct is exactly the standard SDT header every ACPI table starts with, and
// the signature names the table kind it is used for.
unsafe impl<const SRAT: bool> AcpiTable for RawTable<SRAT> {
    const SIGNATURE: Signature = if SRAT {
        Signature::SRAT
    } else {
        Signature::SLIT
    };

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// Copy of table `T` (as long as its header says), if the firmware has one.
fn table_bytes<const SRAT: bool>(tables: &AcpiTables<DirectMapHandler>) -> Option<Vec<u8>> {
    let m = tables.find_table::<RawTable<SRAT>>().ok()?;
    let len = (m.get().header.length as usize).min(m.mapped_length());
    // SAFETY: the crate mapped (through the direct map) and checksummed `mapped_length`
    // bytes at `virtual_start`, the whole table; `len` is at most that. Firmware tables are
    // never written while we copy them.
    let bytes =
        unsafe { core::slice::from_raw_parts(m.virtual_start().as_ptr().cast::<u8>(), len) };
    Some(bytes.to_vec())
}

/// The NUMA tables' bytes, copied; each None when the firmware has none.
pub struct NumaTables {
    /// System Resource Affinity Table.
    pub srat: Option<Vec<u8>>,
    /// System Locality Distance Information Table.
    pub slit: Option<Vec<u8>>,
}

/// The NUMA tables (see [`NumaTables`]).
pub fn numa_tables(rsdp_phys: Option<u64>) -> Result<NumaTables, AcpiError> {
    let rsdp = rsdp_phys.ok_or(AcpiError::NoRsdp)?;
    // SAFETY: as in `topology`: the crate validates the RSDP and the tables it reaches.
    let tables = unsafe { AcpiTables::from_rsdp(DirectMapHandler, rsdp as usize) }
        .map_err(AcpiError::Tables)?;
    Ok(NumaTables {
        srat: table_bytes::<true>(&tables),
        slit: table_bytes::<false>(&tables),
    })
}
