//! The memory model: from the firmware's memory map to zones full of `struct page`s.
//!
//! Linux builds this in `arch/x86/kernel/e820.c`, `mm/memblock.c`, `mm/sparse.c` and
//! `mm/mm_init.c` before the buddy allocator exists; here it is one folder, in boot order:
//! [`memmap`] sanitises the firmware ranges, [`memblock`] hands out early memory, [`sparse`]
//! lays out `mem_section`s with a memmap ([`page`]) and a pageblock usemap ([`pageblock`])
//! for each present section, and [`mm_init`] sizes the [`node`]s and [`zone`]s. The shared
//! vocabulary of every layer above (orders, migratetypes, zone types, free areas, watermark
//! kinds) lives in [`mmzone`], as it does in Linux's `include/linux/mmzone.h`. The
//! architecture facts (section size, physical address width, DMA zone limits, reserved low
//! memory) are run-time parameters with x86_64 defaults, in [`arch`].

pub mod arch;
pub mod free_area;
pub mod list;
pub mod memblock;
pub mod memmap;
pub mod mm_init;
pub mod mmzone;
pub mod node;
pub mod page;
pub mod pageblock;
pub mod sparse;
pub mod zone;
