//! The allocator's host tests, one binary: every file is a module, the helpers they share
//! are modules too (`common`: firmware maps and an independent recount of the model;
//! `alloc_common`: the allocator's reference model and checks; `compaction_common`:
//! fragmentation scenarios; `mig_common`: anon regions and checksums). One binary links
//! once instead of once per file.
//!
//! Run one group with a filter, e.g. `cargo test -p zonebuddy --test host page_alloc_model`.

// Shared helpers (each allows dead code: a test module uses only the parts it needs).
mod alloc_common;
mod cma;
mod common;
mod compaction_common;
mod mig_common;

mod arch_params;
mod compaction;
mod compaction_fragment;
mod compaction_kcompactd;
mod compaction_smp;
mod compaction_zones;
mod contig;
mod contig_smp;
mod fail_page_alloc;
mod firmware_maps;
mod memory_hotplug;
mod migrate;
mod migrate_smp;
mod model;
mod numa_nodes;
mod page_alloc_model;
mod page_alloc_rules;
mod page_alloc_smp;
mod port_stack;
mod props;
mod reclaim;
mod reclaim_mmap;
mod rmap;
mod small_stack;
mod views_golden;
mod zpool;
