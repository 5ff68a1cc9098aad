//! Page movement: the reverse map, migration and compaction.
//!
//! A page can move only if whoever uses it can be told: [`rmap`] finds the one kernel PTE
//! that maps an anonymous page, [`migrate`] swaps a page for a copy behind a migration
//! entry (or asks a `movable_operations` owner such as [`zpool`] to move its object), and
//! [`compaction`] chooses what to move and where, directly in the allocation slow path or
//! in the background ([`kcompactd`]). Beyond the buddy allocator's largest block,
//! [`isolation`] fences ranges off so [`contig`] can empty and allocate them, for [`cma`]
//! areas and for memory blocks going offline ([`memory_hotplug`]). Linux: `mm/rmap.c`,
//! `mm/migrate.c`, `mm/compaction.c`, `mm/page_isolation.c`, `mm/cma.c`,
//! `mm/memory_hotplug.c`.

pub mod cma;
pub mod compaction;
pub mod contig;
pub mod isolation;
pub mod kcompactd;
pub mod memory_hotplug;
pub mod migrate;
pub mod rmap;
pub mod zpool;
