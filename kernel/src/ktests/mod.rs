//! In-kernel test suites, one module per subsystem. See [`crate::ktest`] for the harness.

pub mod boot;
pub mod compaction;
pub mod console;
pub mod contig;
pub mod fault_injection;
pub mod harness;
pub mod memory;
pub mod numa;
pub mod page_alloc;
pub mod reclaim;
pub mod reclaim_mmap;
pub mod smp;
pub mod stress;
pub mod tunables;
pub mod vmalloc;
pub mod zoned_compaction;
