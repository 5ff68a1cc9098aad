//! Reporting: counters, the `/proc` and `/sys` text views, fragmentation indices and the
//! invariant checker.
//!
//! Nothing here changes allocator state (the checker only reads it under the zone locks),
//! so a port may leave all of it unused. Linux: `mm/vmstat.c`, `mm/show_mem.c`,
//! `mm/debug.c`.

pub mod cma;
pub mod debug;
pub mod fragmentation;
pub mod node;
pub mod pageblock_map;
pub mod show_mem;
pub mod vmstat;
