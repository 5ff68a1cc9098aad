//! The port surface: what a host kernel provides ([`platform`]), the interrupt-safe locks
//! built on it ([`sync`]), and the host simulation that implements it for tests
//! ([`sim`], feature `std`), and the conversion of bootloader 0.11's memory map
//! (`bootloader`, feature `bootloader_api`), and the NUMA topology from ACPI's SRAT and
//! SLIT ([`acpi_numa`]).

pub mod acpi_numa;
#[cfg(feature = "bootloader_api")]
pub mod bootloader;
pub mod pcp_lock;
pub mod platform;
#[cfg(feature = "std")]
pub mod sim;
pub mod sync;
