//! Per-pageblock flags: the migratetype, the compaction skip bit and the migratetype an
//! isolated block had before (Linux: `mm/page_alloc.c`
//! `get_pfnblock_flags_mask`/`set_pfnblock_flags_mask`, `include/linux/pageblock-flags.h`).
//!
//! Anti-fragmentation works on 2 MiB pageblocks, not on pages: the free path puts a page on
//! the free list of its *block's* migratetype, fallback stealing repaints whole blocks, and
//! compaction remembers blocks not worth rescanning. Those bits live in the usemap of the
//! block's section ([`crate::model::sparse`]), at bit
//! `((pfn & (PAGES_PER_SECTION - 1)) >> PAGEBLOCK_ORDER) * NR_PAGEBLOCK_BITS` as in Linux
//! when a section has at least 8 pageblocks (every section of 16 MiB or more; x86_64's has
//! 64). The index is taken from the usemap's length, not from a compile-time section size
//! ([`pfn_to_bitidx`]), because the section size is an architecture parameter.
//!
//! # Layout of a block's 8 bits
//!
//! ```text
//!   bits 0-2  migratetype (MIGRATE_ISOLATE while isolated)     MIGRATETYPE_MASK
//!   bit  3    PB_migrate_skip                                   PB_MIGRATE_SKIP
//!   bits 4-6  the migratetype before isolation (while isolated) PB_SAVED_MIGRATETYPE_MASK
//!   bit  7    unused
//! ```
//!
//! Isolation must give each block back the type it had: a CMA block must come back CMA,
//! an Unmovable block Unmovable, whatever range the caller isolated. Older Linux made the
//! caller name one type for the whole range and lost the rest; Linux 6.x keeps the
//! isolation state in its own bit beside the untouched migratetype bits. This model keeps
//! the same information the other way round: the type bits say Isolate, so every reader of
//! the type (the free fast path reads them with one load and sends the page to the Isolate
//! lists) is unchanged, and the type the block had is kept in bits 4-6 until
//! `undo_isolate_page_range` ([`crate::movement::isolation`]) repaints it.
//!
//! The bits of 8 blocks share one 64-bit word, and different CPUs may repaint neighbouring
//! blocks concurrently (each under its own zone lock, or none for the skip bit), so an
//! update is a compare-exchange loop on the whole word, as in Linux; a read is one relaxed
//! load. The bits of one block never straddle two words (64 is a multiple of 8).

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::mmzone::{Migratetype, NR_PAGEBLOCK_BITS, PAGEBLOCK_ORDER};
use crate::model::sparse::SparseMem;

/// Mask of the migratetype bits (bits 0–2).
pub const MIGRATETYPE_MASK: u64 = 0x7;
/// The compaction skip bit (`PB_migrate_skip`, bit 3).
pub const PB_MIGRATE_SKIP: u64 = 1 << 3;
/// The migratetype an isolated block had before its isolation (bits 4-6).
pub const PB_SAVED_MIGRATETYPE_MASK: u64 = 0x7 << PB_SAVED_MIGRATETYPE_SHIFT;
/// Shift of [`PB_SAVED_MIGRATETYPE_MASK`].
pub const PB_SAVED_MIGRATETYPE_SHIFT: u32 = 4;
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

/// Pageblocks whose bits share one usemap word.
const BLOCKS_PER_WORD: u64 = 64 / NR_PAGEBLOCK_BITS as u64;

/// Bit index of `pfn`'s pageblock inside its section's usemap of `usemap_words` words
/// (`pfn_to_bitidx`; [`crate::model::sparse::usemap_words`] gives the length for a section
/// size).
///
/// The pageblock number modulo the blocks the usemap has room for. With 16 or more
/// pageblocks per section the usemap has room for exactly the section's blocks, and this
/// is Linux's `((pfn & (PAGES_PER_SECTION - 1)) >> pageblock_order) * 4`. A smaller
/// section (4 to 16 MiB) still gets a whole word: its consecutive blocks take distinct
/// slots of it, wherever the section starts.
#[inline]
pub const fn pfn_to_bitidx(pfn: u64, usemap_words: usize) -> u64 {
    let slots = usemap_words as u64 * BLOCKS_PER_WORD;
    debug_assert!(slots.is_power_of_two());
    ((pfn >> PAGEBLOCK_ORDER) & (slots - 1)) * NR_PAGEBLOCK_BITS as u64
}

/// Read the pageblock bits selected by `mask` from the usemap of `pfn`'s section (the
/// word-level primitive).
#[inline]
pub fn usemap_get(usemap: &[AtomicU64], pfn: u64, mask: u64) -> u64 {
    let bitidx = pfn_to_bitidx(pfn, usemap.len());
    let word = usemap[(bitidx / 64) as usize].load(Ordering::Relaxed);
    (word >> (bitidx % 64)) & mask
}

/// Replace the pageblock bits selected by `mask` with `flags` in a usemap, atomically with
/// respect to concurrent updates of other blocks sharing the word.
pub fn usemap_set(usemap: &[AtomicU64], pfn: u64, flags: u64, mask: u64) {
    let bitidx = pfn_to_bitidx(pfn, usemap.len());
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

/// Record `mt` as the type `pfn`'s pageblock goes back to when its isolation is undone
/// (the caller holds the zone lock and is about to repaint the block Isolate, or it is
/// isolated already: memory onlining chooses the type its pages come back as).
pub fn save_pageblock_migratetype(
    mem: &SparseMem,
    pfn: u64,
    mt: Migratetype,
) -> Result<(), InvalidPfn> {
    set_pfnblock_flags_mask(
        mem,
        pfn,
        (mt as u64) << PB_SAVED_MIGRATETYPE_SHIFT,
        PB_SAVED_MIGRATETYPE_MASK,
    )
}

/// The type `pfn`'s pageblock had before it was isolated (meaningful while it is
/// MIGRATE_ISOLATE). A stored value that names no migratetype, or names Isolate itself
/// (only possible through corruption), reads as `Movable`, the type Linux onlines memory as.
pub fn get_pageblock_saved_migratetype(
    mem: &SparseMem,
    pfn: u64,
) -> Result<Migratetype, InvalidPfn> {
    let bits =
        get_pfnblock_flags_mask(mem, pfn, PB_SAVED_MIGRATETYPE_MASK)? >> PB_SAVED_MIGRATETYPE_SHIFT;
    Ok(match Migratetype::from_bits(bits as u8) {
        Some(Migratetype::Isolate) | None => Migratetype::Movable,
        Some(mt) => mt,
    })
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
    use crate::model::mmzone::{
        PAGE_SHIFT, PAGEBLOCK_NR_PAGES, PAGES_PER_SECTION, SECTION_SIZE_BITS,
    };
    use crate::model::sparse::usemap_words;

    const USEMAP_WORDS: usize = usemap_words(SECTION_SIZE_BITS - PAGE_SHIFT);

    #[test]
    fn bit_index_and_isolation() {
        assert_eq!(USEMAP_WORDS, 8);
        let w = USEMAP_WORDS;
        assert_eq!(pfn_to_bitidx(0, w), 0);
        assert_eq!(pfn_to_bitidx(PAGEBLOCK_NR_PAGES - 1, w), 0);
        assert_eq!(pfn_to_bitidx(PAGEBLOCK_NR_PAGES, w), 8);
        assert_eq!(
            pfn_to_bitidx(PAGES_PER_SECTION + PAGEBLOCK_NR_PAGES * 17, w),
            136
        );
        // Linux's formula, for every block of a few x86_64 sections.
        for pfn in (0..4 * PAGES_PER_SECTION).step_by(PAGEBLOCK_NR_PAGES as usize / 2) {
            assert_eq!(
                pfn_to_bitidx(pfn, w),
                ((pfn & (PAGES_PER_SECTION - 1)) >> PAGEBLOCK_ORDER) * 8
            );
        }
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

    /// The saved type sits beside the type bits and the skip bit without disturbing them.
    #[test]
    fn saved_migratetype_is_independent_of_type_and_skip() {
        let map: [AtomicU64; USEMAP_WORDS] = core::array::from_fn(|_| AtomicU64::new(0));
        for block in 0..16u64 {
            let pfn = block * PAGEBLOCK_NR_PAGES;
            usemap_set(&map, pfn, Migratetype::Isolate as u64, MIGRATETYPE_MASK);
            usemap_set(&map, pfn, PB_MIGRATE_SKIP, PB_MIGRATE_SKIP);
            usemap_set(
                &map,
                pfn,
                (block % 5) << PB_SAVED_MIGRATETYPE_SHIFT,
                PB_SAVED_MIGRATETYPE_MASK,
            );
        }
        for block in 0..16u64 {
            let pfn = block * PAGEBLOCK_NR_PAGES;
            assert_eq!(
                usemap_get(&map, pfn, MIGRATETYPE_MASK),
                Migratetype::Isolate as u64
            );
            assert_eq!(usemap_get(&map, pfn, PB_MIGRATE_SKIP), PB_MIGRATE_SKIP);
            assert_eq!(
                usemap_get(&map, pfn, PB_SAVED_MIGRATETYPE_MASK) >> PB_SAVED_MIGRATETYPE_SHIFT,
                block % 5
            );
        }
    }

    /// Sections of 1 GiB (512 blocks, 32 words) and of 4 MiB (2 blocks, one word): every
    /// block of a section has its own bits, and they stay in the usemap.
    #[test]
    fn other_section_sizes_give_each_block_its_own_bits() {
        for shift in [30 - PAGE_SHIFT, 22 - PAGE_SHIFT] {
            let words = usemap_words(shift);
            assert_eq!(words, if shift == 18 { 64 } else { 1 });
            let pages = 1u64 << shift;
            for section in [0u64, 1, 5, 1023] {
                let start = section * pages;
                let mut seen = std::collections::BTreeSet::new();
                for pfn in (start..start + pages).step_by(PAGEBLOCK_NR_PAGES as usize) {
                    let bit = pfn_to_bitidx(pfn, words);
                    assert!(bit + NR_PAGEBLOCK_BITS as u64 <= words as u64 * 64);
                    assert!(
                        seen.insert(bit),
                        "section {section} shift {shift}: bit {bit} twice"
                    );
                }
            }
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
