//! Per-pageblock flags: the migratetype and the compaction skip bit (Linux:
//! `mm/page_alloc.c` `get_pfnblock_flags_mask`/`set_pfnblock_flags_mask`,
//! `include/linux/pageblock-flags.h`).
//!
//! Anti-fragmentation works on 2 MiB pageblocks, not on pages: the free path puts a page on
//! the free list of its *block's* migratetype, fallback stealing repaints whole blocks, and
//! compaction remembers blocks not worth rescanning. Those 4 bits per block live in the
//! usemap of the block's section ([`crate::model::sparse`]), at bit
//! `((pfn & (PAGES_PER_SECTION - 1)) >> PAGEBLOCK_ORDER) * NR_PAGEBLOCK_BITS`.
//!
//! The bits of 16 blocks share one 64-bit word, and different CPUs may repaint neighbouring
//! blocks concurrently (each under its own zone lock, or none for the skip bit), so an
//! update is a compare-exchange loop on the whole word, as in Linux; a read is one relaxed
//! load. The 4 bits of one block never straddle two words (64 is a multiple of 4).

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::mmzone::{Migratetype, NR_PAGEBLOCK_BITS, PAGEBLOCK_ORDER, PAGES_PER_SECTION};
use crate::model::sparse::{SparseMem, USEMAP_WORDS};

/// Mask of the migratetype bits (bits 0–2).
pub const MIGRATETYPE_MASK: u64 = 0x7;
/// The compaction skip bit (`PB_migrate_skip`, bit 3).
pub const PB_MIGRATE_SKIP: u64 = 1 << 3;
/// Every pageblock bit.
pub const PAGEBLOCK_FLAGS_MASK: u64 = (1 << NR_PAGEBLOCK_BITS) - 1;

/// A pfn that has no `struct Page`, given to a pageblock accessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPfn(pub u64);

impl core::fmt::Display for InvalidPfn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "pfn {:#x} is not valid (no memmap)", self.0)
    }
}

/// Bit index of `pfn`'s pageblock inside its section's usemap (`pfn_to_bitidx`).
#[inline]
pub const fn pfn_to_bitidx(pfn: u64) -> u64 {
    ((pfn & (PAGES_PER_SECTION - 1)) >> PAGEBLOCK_ORDER) * NR_PAGEBLOCK_BITS as u64
}

/// Read the pageblock bits selected by `mask` from a usemap (the word-level primitive).
#[inline]
pub fn usemap_get(usemap: &[AtomicU64; USEMAP_WORDS], pfn: u64, mask: u64) -> u64 {
    let bitidx = pfn_to_bitidx(pfn);
    let word = usemap[(bitidx / 64) as usize].load(Ordering::Relaxed);
    (word >> (bitidx % 64)) & mask
}

/// Replace the pageblock bits selected by `mask` with `flags` in a usemap, atomically with
/// respect to concurrent updates of other blocks sharing the word.
pub fn usemap_set(usemap: &[AtomicU64; USEMAP_WORDS], pfn: u64, flags: u64, mask: u64) {
    let bitidx = pfn_to_bitidx(pfn);
    let shift = bitidx % 64;
    let word = &usemap[(bitidx / 64) as usize];
    let mask = (mask & PAGEBLOCK_FLAGS_MASK) << shift;
    let flags = (flags << shift) & mask;
    let mut old = word.load(Ordering::Relaxed);
    loop {
        match word.compare_exchange_weak(
            old,
            (old & !mask) | flags,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(cur) => old = cur,
        }
    }
}

/// The pageblock bits of `pfn` selected by `mask` (`get_pfnblock_flags_mask`).
#[inline]
pub fn get_pfnblock_flags_mask(mem: &SparseMem, pfn: u64, mask: u64) -> Result<u64, InvalidPfn> {
    let usemap = mem.usemap(pfn).ok_or(InvalidPfn(pfn))?;
    Ok(usemap_get(usemap, pfn, mask))
}

/// Set the pageblock bits of `pfn` selected by `mask` to `flags` (`set_pfnblock_flags_mask`).
pub fn set_pfnblock_flags_mask(
    mem: &SparseMem,
    pfn: u64,
    flags: u64,
    mask: u64,
) -> Result<(), InvalidPfn> {
    let usemap = mem.usemap(pfn).ok_or(InvalidPfn(pfn))?;
    usemap_set(usemap, pfn, flags, mask);
    Ok(())
}

/// The migratetype of `pfn`'s pageblock (`get_pageblock_migratetype`). A stored value that
/// names no migratetype (only possible through corruption) reads as `Unmovable`, the type
/// that is never handed out as movable.
#[inline]
pub fn get_pageblock_migratetype(mem: &SparseMem, pfn: u64) -> Result<Migratetype, InvalidPfn> {
    let bits = get_pfnblock_flags_mask(mem, pfn, MIGRATETYPE_MASK)?;
    Ok(Migratetype::from_bits(bits as u8).unwrap_or(Migratetype::Unmovable))
}

/// Repaint `pfn`'s pageblock (`set_pageblock_migratetype`); the skip bit is kept.
pub fn set_pageblock_migratetype(
    mem: &SparseMem,
    pfn: u64,
    mt: Migratetype,
) -> Result<(), InvalidPfn> {
    set_pfnblock_flags_mask(mem, pfn, mt as u64, MIGRATETYPE_MASK)
}

/// The compaction skip bit of `pfn`'s pageblock (`get_pageblock_skip`).
pub fn get_pageblock_skip(mem: &SparseMem, pfn: u64) -> Result<bool, InvalidPfn> {
    Ok(get_pfnblock_flags_mask(mem, pfn, PB_MIGRATE_SKIP)? != 0)
}

/// Set the compaction skip bit of `pfn`'s pageblock (`set_pageblock_skip`).
pub fn set_pageblock_skip(mem: &SparseMem, pfn: u64) -> Result<(), InvalidPfn> {
    set_pfnblock_flags_mask(mem, pfn, PB_MIGRATE_SKIP, PB_MIGRATE_SKIP)
}

/// Clear the compaction skip bit of `pfn`'s pageblock (`clear_pageblock_skip`).
pub fn clear_pageblock_skip(mem: &SparseMem, pfn: u64) -> Result<(), InvalidPfn> {
    set_pfnblock_flags_mask(mem, pfn, 0, PB_MIGRATE_SKIP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mmzone::PAGEBLOCK_NR_PAGES;

    #[test]
    fn bit_index_and_isolation() {
        assert_eq!(pfn_to_bitidx(0), 0);
        assert_eq!(pfn_to_bitidx(PAGEBLOCK_NR_PAGES - 1), 0);
        assert_eq!(pfn_to_bitidx(PAGEBLOCK_NR_PAGES), 4);
        assert_eq!(
            pfn_to_bitidx(PAGES_PER_SECTION + PAGEBLOCK_NR_PAGES * 17),
            68
        );
        let map: [AtomicU64; USEMAP_WORDS] = core::array::from_fn(|_| AtomicU64::new(0));
        for block in 0..(PAGES_PER_SECTION / PAGEBLOCK_NR_PAGES) {
            let pfn = block * PAGEBLOCK_NR_PAGES + 3;
            usemap_set(&map, pfn, block % 6, MIGRATETYPE_MASK);
            if block % 3 == 0 {
                usemap_set(&map, pfn, PB_MIGRATE_SKIP, PB_MIGRATE_SKIP);
            }
        }
        for block in 0..(PAGES_PER_SECTION / PAGEBLOCK_NR_PAGES) {
            let pfn = block * PAGEBLOCK_NR_PAGES;
            assert_eq!(usemap_get(&map, pfn, MIGRATETYPE_MASK), block % 6);
            assert_eq!(usemap_get(&map, pfn, PB_MIGRATE_SKIP) != 0, block % 3 == 0);
        }
    }

    #[test]
    fn concurrent_updates_of_one_word_do_not_lose_bits() {
        let map: [AtomicU64; USEMAP_WORDS] = core::array::from_fn(|_| AtomicU64::new(0));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let map = &map;
                s.spawn(move || {
                    for i in 0..2000u64 {
                        let block = t * 4 + (i % 4);
                        usemap_set(
                            map,
                            block * PAGEBLOCK_NR_PAGES,
                            (i + t) % 6,
                            MIGRATETYPE_MASK,
                        );
                        usemap_set(map, block * PAGEBLOCK_NR_PAGES, block % 6, MIGRATETYPE_MASK);
                    }
                });
            }
        });
        for block in 0..16 {
            assert_eq!(
                usemap_get(&map, block * PAGEBLOCK_NR_PAGES, MIGRATETYPE_MASK),
                block % 6
            );
        }
    }
}
