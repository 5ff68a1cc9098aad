//! `mm`: a physical page allocator in the shape of Linux's `mm/`.
//!
//! The crate is portable: it contains no inline assembly and knows nothing of any boot
//! protocol. Everything it needs from a kernel comes through [`platform::Platform`]; the
//! x86_64 kernel in this repository implements that trait, and so does the host simulation
//! in [`sim`] (feature `std`), which is why the very same allocator code is exercised by host
//! property tests and by in-kernel tests under QEMU.
//!
//! Module map (Linux's vocabulary, one concept per file):
//! - [`mmzone`]: constants and the shared enums (migratetypes, zone types).
//! - [`memmap`]: the firmware memory map, sanitised.
//! - [`memblock`]: the early boot allocator.
//! - [`sparse`]: SPARSEMEM `mem_section`s, memmaps and pageblock usemaps.
//! - [`page`]: the 64-byte `struct Page` and its flags.
//! - [`list`]: intrusive doubly-linked page lists through `page.lru`.
//! - [`pageblock`]: per-pageblock flag bits (migratetype, compaction skip).
//! - [`zone`] and [`node`]: zones and `pglist_data`.
//! - [`mm_init`]: the memory model built from the firmware map, up to the buddy hand-off.
//! - [`gfp`]: GFP flags and what they map to.
//! - [`watermark`]: min_free_kbytes, per-zone watermarks, lowmem_reserve.
//! - [`pcp`]: per-CPU page lists.
//! - [`fragmentation`]: fragmentation and unusable-free indices, compaction score.
//! - [`vmstat`]: counters and the /proc text formats.

#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
extern crate std;

pub mod fragmentation;
pub mod gfp;
pub mod list;
pub mod memblock;
pub mod memmap;
pub mod mm_init;
pub mod mmzone;
pub mod node;
pub mod page;
pub mod pageblock;
pub mod pcp;
pub mod platform;
#[cfg(feature = "std")]
pub mod sim;
pub mod sparse;
pub mod vmstat;
pub mod watermark;
pub mod zone;
