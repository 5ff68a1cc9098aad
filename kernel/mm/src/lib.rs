#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
extern crate std;

// The subsystems. A port needs only the re-exports below; these are the advanced surface:
// the allocator's internals by Linux's names, for views, tests and kernels that want more
// (anon regions, migration, compaction control, tunables, counters).
pub mod model;
pub mod movement;
pub mod page_alloc;
pub mod port;
pub mod reclaim;
pub mod report;

// ---------------------------------------------------------------------------------------
// The front door: what a port needs, in one place.
// ---------------------------------------------------------------------------------------

pub use model::arch::{ArchError, ArchParams};
pub use model::memmap::{FirmwareRange, MapAnomaly, MapError, RangeKind};
pub use model::mm_init::{MemoryModel, ModelError, ModelParams};
pub use model::mmzone::{MAX_PAGE_ORDER, Migratetype, PAGE_SHIFT, PAGE_SIZE, ZoneType};
pub use model::node::NumaRange;
pub use model::page::Page;
pub use model::zone::CoreSize;
pub use page_alloc::bad_page::BadPage;
pub use page_alloc::gfp::{
    GFP_ATOMIC, GFP_DMA, GFP_DMA32, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT, GFP_USER, Gfp,
};
pub use page_alloc::{AllocError, PageAllocator, StartError};
#[cfg(feature = "bootloader_api")]
pub use port::bootloader;
pub use port::platform::{IrqState, MovableMapping, Platform, Pte, PteError};
pub use reclaim::filemap::{Backing, BackingError, CacheError};
pub use reclaim::shrinker::{ShrinkControl, Shrinker};
pub use report::debug::{Violation, check};

/// Why bringing the allocator up failed: building the memory model or starting the page
/// allocator. Both layers' errors convert into it, so a port's init function can use `?`
/// on [`MemoryModel::init`] and [`PageAllocator::new`] alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The memory model could not be built (a bad firmware map, no memory for metadata).
    Model(ModelError),
    /// The page allocator could not start (no CPUs, no memory for per-CPU areas).
    Start(StartError),
}

impl From<ModelError> for InitError {
    fn from(e: ModelError) -> InitError {
        InitError::Model(e)
    }
}

impl From<StartError> for InitError {
    fn from(e: StartError) -> InitError {
        InitError::Start(e)
    }
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::Model(e) => write!(f, "memory model: {e}"),
            InitError::Start(e) => write!(f, "page allocator: {e}"),
        }
    }
}

impl core::error::Error for InitError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            InitError::Model(e) => Some(e),
            InitError::Start(e) => Some(e),
        }
    }
}
