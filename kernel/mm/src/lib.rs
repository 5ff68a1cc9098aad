//! `mm`: a physical page allocator in the shape of Linux's `mm/`.
//!
//! The crate is portable: it contains no inline assembly and knows nothing of any boot
//! protocol. Everything it needs from a kernel comes through [`platform::Platform`]; the
//! x86_64 kernel in this repository implements that trait, and so does the host simulation
//! in [`sim`] (feature `std`), which is why the very same allocator code is exercised by host
//! property tests and by in-kernel tests under QEMU.
//!
//! # Using it
//!
//! ```text
//! let model = MemoryModel::init(&PLATFORM, &firmware_ranges, &kernel_ranges, &params)?;
//! let pages = PageAllocator::new(model, &PLATFORM)?;   // every free page enters the buddy lists
//! let page = pages.alloc_pages(GFP_KERNEL | Gfp::ZERO, 2).ok_or(Oom)?;
//! let va = pages.page_address(page);                    // direct-map address
//! pages.free_pages(page, 2)?;                      // Err(BadPage) on a bad free
//! zonebuddy::debug::check(&pages)?;                            // every invariant, from scratch
//! pages.write_buddyinfo(&mut console)?;                 // and the other /proc views
//! ```
//!
//! Module map (Linux's vocabulary, one concept per file):
//! - [`mmzone`]: constants and the shared enums (migratetypes, zone types).
//! - [`memmap`]: the firmware memory map, sanitised.
//! - [`memblock`]: the early boot allocator.
//! - [`sparse`]: SPARSEMEM `mem_section`s, memmaps and pageblock usemaps.
//! - [`page`]: the 64-byte `struct Page` and its flags.
//! - [`list`]: intrusive doubly-linked page lists through `page.lru`.
//! - [`pageblock`]: per-pageblock flag bits (migratetype, compaction skip).
//! - [`pageblock_map`]: debug views of where pageblocks sit and of fragmentation scores.
//! - [`zone`] and [`node`]: zones and `pglist_data`.
//! - [`mm_init`]: the memory model built from the firmware map, up to the buddy hand-off.
//! - [`gfp`]: GFP flags and what they map to.
//! - [`watermark`]: min_free_kbytes, per-zone watermarks, lowmem_reserve.
//! - [`sysctl`]: the `vm.*` tunables in one place.
//! - [`sync`]: the irq-safe spinlock, and the lock order.
//! - [`buddy`]: free areas, split and merge, migratetype fallback.
//! - [`pcp`]: per-CPU page lists.
//! - [`percpu`]: per-CPU areas (event counters and pcp lists).
//! - [`bad_page`]: what a freed page must look like.
//! - [`page_alloc`]: the allocator: fast path, slow path, free path, reserves.
//! - [`show_mem`]: zone snapshots and the /proc views.
//! - [`debug`]: the invariant checker.
//! - [`fragmentation`]: fragmentation and unusable-free indices, compaction score.
//! - [`vmstat`]: counters and the /proc text formats.
//! - [`rmap`]: anon regions (movable "user memory") and their O(1) reverse map.
//! - [`migrate`]: page migration and `movable_operations`.
//! - [`zpool`]: a movable object store, the in-kernel user of `movable_operations`.
//! - [`compaction`]: the two scanners, direct compaction, capture, manual compaction.
//! - [`kcompactd`]: the per-node background compactor, woken and proactive.

#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
extern crate std;

pub mod model;
pub mod movement;
pub mod page_alloc;
pub mod port;
pub mod report;
