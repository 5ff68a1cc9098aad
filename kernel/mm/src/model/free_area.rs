//! A zone's free areas: one free list per migratetype for each order (Linux's
//! `struct free_area`, declared in `mmzone.h` beside the zone that holds it).
//!
//! Only the type lives here, so that a zone can hold its free areas without the memory
//! model depending on the buddy allocator; splitting, merging and fallback, everything
//! that changes these lists, is [`crate::page_alloc::buddy`]'s.

#![deny(unsafe_code)]

use crate::model::list::PageList;
use crate::model::mmzone::{MIGRATE_TYPES, Migratetype, NR_PAGE_ORDERS};

/// One order's free lists (`struct free_area`).
#[derive(Debug)]
pub struct FreeArea {
    pub(crate) free_list: [PageList; MIGRATE_TYPES],
    pub(crate) nr_free: u64,
}

impl FreeArea {
    pub(crate) const fn new() -> FreeArea {
        FreeArea {
            free_list: [const { PageList::new() }; MIGRATE_TYPES],
            nr_free: 0,
        }
    }

    /// Free blocks of this order over all migratetypes (`nr_free`).
    pub fn nr_free(&self) -> u64 {
        self.nr_free
    }

    /// The free list of migratetype `mt`.
    pub fn free_list(&self, mt: Migratetype) -> &PageList {
        &self.free_list[mt.index()]
    }
}

/// A zone's free areas: what the zone lock protects (`zone->free_area[]`).
#[derive(Debug)]
pub struct FreeAreas {
    pub(crate) area: [FreeArea; NR_PAGE_ORDERS],
}

impl Default for FreeAreas {
    fn default() -> Self {
        FreeAreas::new()
    }
}

impl FreeAreas {
    /// Empty free areas.
    pub const fn new() -> FreeAreas {
        FreeAreas {
            area: [const { FreeArea::new() }; NR_PAGE_ORDERS],
        }
    }

    /// The free area of `order`, if it exists.
    pub fn area(&self, order: u32) -> Option<&FreeArea> {
        self.area.get(order as usize)
    }

    /// Free blocks per migratetype and order (list lengths): what /proc/pagetypeinfo
    /// prints.
    pub fn nr_free_by_type(&self) -> [[u64; NR_PAGE_ORDERS]; MIGRATE_TYPES] {
        let mut out = [[0; NR_PAGE_ORDERS]; MIGRATE_TYPES];
        for (order, area) in self.area.iter().enumerate() {
            for mt in Migratetype::ALL {
                out[mt.index()][order] = area.free_list[mt.index()].len() as u64;
            }
        }
        out
    }
}
