//! The Contiguous Memory Allocator: areas set aside at boot for large physically
//! contiguous buffers, lent to movable allocations meanwhile (Linux: `mm/cma.c`).
//!
//! # Why
//!
//! A device that needs a 32 MiB physically contiguous buffer at some point cannot count on
//! [`crate::movement::contig`] finding one: an unmovable kernel page in every stretch of
//! memory ends that hope, and grouping by mobility only makes such a page unlikely, not
//! impossible. Reserving the memory outright would waste it while the device is idle. A
//! CMA area is the middle way: its pageblocks are MIGRATE_CMA, which only *movable*
//! allocations may use (there is no fallback from any other type to CMA), so everything
//! in the area can always be migrated out when [`PageAllocator::cma_alloc`] wants it.
//!
//! # Balancing
//!
//! Movable allocations use CMA memory in `__rmqueue` ([`crate::page_alloc::buddy`]): first
//! their own Movable lists, then CMA; but when more than half of a zone's free memory is
//! CMA they take from CMA first, so that the ordinary free memory, which unmovable
//! requests need, is not used up while CMA memory sits idle. The watermark checks do not
//! count free CMA pages for requests that may not use them.
//!
//! # Areas
//!
//! Up to [`MAX_CMA_AREAS`] areas are declared with [`PageAllocator::cma_declare_contiguous`]
//! (at boot through `cma=SIZE[@START]` in [`crate::ModelParams`], or by the kernel's own
//! code): a range of whole MAX_ORDER blocks inside one zone, placed where asked, or else as
//! high in memory as a range is found that can be emptied. Declaring runs the contiguous
//! allocator over the range with the CMA type (so pages already in use there are migrated
//! out, and an unmovable page refuses the range), then frees it: the pages land on the CMA
//! free lists.
//!
//! Each area keeps a bitmap of what `cma_alloc` handed out, one bit per `1 << order_per_bit`
//! pages (the bitmap has a fixed size, so a large area uses coarser bits). `cma_alloc`
//! reserves a run of clear bits under the area lock, drops the lock, and empties the range
//! with [`PageAllocator::alloc_contig_range`]; if a page there is busy (pinned, or being
//! allocated right now) the bits are cleared and the next run is tried, as in Linux.

use core::fmt;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::mmzone::{
    MAX_ORDER_NR_PAGES, MAX_PAGE_ORDER, Migratetype, PAGE_SHIFT, PAGE_SIZE, ZoneType,
};
use crate::model::page::Page;
use crate::model::zone::{CoreOption, CoreSize, ParamError, parse_core_size};
use crate::movement::contig::{ContigError, ContigStats};
use crate::page_alloc::PageAllocator;
use crate::page_alloc::gfp::{GFP_KERNEL, Gfp};
use crate::port::platform::Platform;
use crate::port::sync::SpinLock;

/// How many areas can be declared (Linux's `CONFIG_CMA_AREAS` default).
pub const MAX_CMA_AREAS: usize = 8;
/// Largest order of the pages holding an area's bitmap (32 KiB: one bit per page for up to
/// 1 GiB; larger areas use coarser bits).
const CMA_BITMAP_MAX_ORDER: u32 = 3;
const CMA_BITMAP_MAX_BITS: u64 = (PAGE_SIZE << CMA_BITMAP_MAX_ORDER) * 8;
/// Bytes of an area name kept.
pub const CMA_NAME_LEN: usize = 16;

/// A `cma=` request: the size in bytes and, optionally, where the area must start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmaSpec {
    /// Bytes.
    pub size: u64,
    /// Physical start address (`@START`), or anywhere.
    pub base: Option<u64>,
}

/// Why a `cma=` value was rejected (the option is then ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaParamError {
    /// Not `SIZE[KMGT]` or `SIZE[KMGT]@START[KMGT]`.
    Malformed,
    /// A number does not fit in 64 bits.
    Overflow,
    /// The size is zero.
    Zero,
}

impl fmt::Display for CmaParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmaParamError::Malformed => "cma=: expected SIZE or SIZE@START (like 64M@0x40000000)",
            CmaParamError::Overflow => "cma=: value too large",
            CmaParamError::Zero => "cma=: size is zero",
        })?;
        f.write_str("; option ignored")
    }
}

impl core::error::Error for CmaParamError {}

/// Linux's `memparse` (decimal or `0x` hexadecimal, a binary suffix), shared with
/// `kernelcore=` ([`parse_core_size`]); percentages are not sizes here.
fn memparse(s: &str) -> Result<u64, CmaParamError> {
    // `parse_core_size` calls a zero (or sub-page) amount an error; an address may be 0.
    if s.trim_start_matches("0x")
        .trim_start_matches("0X")
        .bytes()
        .all(|b| b == b'0')
        && !s.is_empty()
    {
        return Ok(0);
    }
    match parse_core_size(s, CoreOption::Movablecore) {
        Ok(CoreSize::Bytes(b)) => Ok(b),
        Ok(CoreSize::Percent(_)) => Err(CmaParamError::Malformed),
        Err(ParamError::Overflow(_)) => Err(CmaParamError::Overflow),
        Err(ParamError::Zero(_)) => Err(CmaParamError::Zero),
        Err(_) => Err(CmaParamError::Malformed),
    }
}

/// Parse a `cma=` value: `SIZE` or `SIZE@START` (Linux's `early_cma`, without the
/// `-END` limit).
pub fn parse_cma(value: &str) -> Result<CmaSpec, CmaParamError> {
    let v = value.trim();
    let (size, base) = match v.split_once('@') {
        Some((s, b)) => (memparse(s)?, Some(memparse(b)?)),
        None => (memparse(v)?, None),
    };
    if size == 0 {
        return Err(CmaParamError::Zero);
    }
    Ok(CmaSpec { size, base })
}

/// Why an area could not be declared or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaError {
    /// [`MAX_CMA_AREAS`] areas exist already.
    TooManyAreas,
    /// The size is zero or not a whole number of pages.
    BadSize {
        /// Bytes asked for.
        size: u64,
    },
    /// A fixed base is not aligned to a MAX_ORDER block (4 MiB).
    Misaligned {
        /// The base asked for.
        base: u64,
    },
    /// No range of that size in one zone could be emptied.
    NoRange {
        /// Pages asked for.
        pages: u64,
    },
    /// The fixed range could not be emptied.
    Range(ContigError),
    /// No such area.
    NoArea(usize),
    /// No memory for the area's allocation bitmap.
    NoBitmap,
    /// `count` is 0, or larger than the area, or `align_order` above the area's reach.
    BadRequest {
        /// Pages asked for.
        count: u64,
    },
    /// No free run of the area could be emptied; the last error met, if any.
    AllocFailed {
        /// Pages asked for.
        count: u64,
        /// The last contiguous-allocation error (None: no free run in the bitmap).
        last: Option<ContigError>,
    },
    /// `cma_release` of pages that are not a whole allocation of this area.
    NotOurs {
        /// The first pfn given.
        pfn: u64,
    },
}

impl fmt::Display for CmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CmaError::TooManyAreas => write!(f, "cma: all {MAX_CMA_AREAS} areas are in use"),
            CmaError::BadSize { size } => write!(f, "cma: bad area size {size:#x}"),
            CmaError::Misaligned { base } => {
                write!(f, "cma: base {base:#x} is not aligned to 4 MiB")
            }
            CmaError::NoRange { pages } => {
                write!(
                    f,
                    "cma: no range of {pages} pages in one zone can be reserved"
                )
            }
            CmaError::Range(e) => write!(f, "cma: {e}"),
            CmaError::NoArea(i) => write!(f, "cma: no area {i}"),
            CmaError::NoBitmap => f.write_str("cma: no memory for the area bitmap"),
            CmaError::BadRequest { count } => write!(f, "cma: bad request of {count} pages"),
            CmaError::AllocFailed { count, last } => {
                write!(f, "cma: allocation of {count} pages failed")?;
                match last {
                    Some(e) => write!(f, ": {e}"),
                    None => f.write_str(": no free run in the area"),
                }
            }
            CmaError::NotOurs { pfn } => {
                write!(f, "cma: pfn {pfn:#x} is not an allocation of this area")
            }
        }
    }
}

impl core::error::Error for CmaError {}

/// One area. The bitmap lives in pages allocated when the area is declared (Linux's
/// `bitmap_zalloc` in `cma_activate_area`) and never freed (areas are permanent); it is
/// changed only under the table lock, so its words are atomics only to be shared.
#[derive(Clone, Copy)]
struct CmaArea {
    name: [u8; CMA_NAME_LEN],
    name_len: u8,
    base_pfn: u64,
    count: u64,
    order_per_bit: u32,
    nid: usize,
    zone: ZoneType,
    bitmap: *const AtomicU64,
    bitmap_words: usize,
}

impl CmaArea {
    const EMPTY: CmaArea = CmaArea {
        name: [0; CMA_NAME_LEN],
        name_len: 0,
        base_pfn: 0,
        count: 0,
        order_per_bit: 0,
        nid: 0,
        zone: ZoneType::Dma,
        bitmap: core::ptr::null(),
        bitmap_words: 0,
    };

    fn words(&self) -> &[AtomicU64] {
        if self.bitmap.is_null() {
            return &[];
        }
        // SAFETY: `bitmap` points to `bitmap_words` zeroed words in pages the allocator
        // handed to this area at declaration and that are never freed; only atomics are
        // formed over them.
        unsafe { core::slice::from_raw_parts(self.bitmap, self.bitmap_words) }
    }
}

/// Operations on an area's bitmap (`bits` bits in `words`).
struct Bitmap<'a> {
    words: &'a [AtomicU64],
    bits: u64,
}

impl Bitmap<'_> {
    fn test(&self, bit: u64) -> bool {
        self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
    }

    fn set_range(&self, start: u64, n: u64, on: bool) {
        for bit in start..start + n {
            let w = &self.words[(bit / 64) as usize];
            if on {
                w.fetch_or(1 << (bit % 64), Ordering::Relaxed);
            } else {
                w.fetch_and(!(1 << (bit % 64)), Ordering::Relaxed);
            }
        }
    }

    /// The first run of `n` clear bits at or after `from` whose start plus `bias` is a
    /// multiple of `mask + 1` (`bitmap_find_next_zero_area_off`: `bias` is where the
    /// area's first bit lies in the alignment, so the pfns come out aligned).
    fn find_zero_area(&self, from: u64, n: u64, mask: u64, bias: u64) -> Option<u64> {
        let align = |bit: u64| ((bit + bias + mask) & !mask) - bias;
        let mut start = align(from);
        while start + n <= self.bits {
            match (start..start + n).find(|&bit| self.test(bit)) {
                // Restart past the busy bit, keeping the alignment.
                Some(busy) => start = align(busy + 1),
                None => return Some(start),
            }
        }
        None
    }

    fn used(&self) -> u64 {
        (0..self.bits).filter(|&b| self.test(b)).count() as u64
    }

    fn max_chunk(&self) -> u64 {
        let (mut best, mut run) = (0, 0);
        for bit in 0..self.bits {
            if self.test(bit) {
                run = 0;
            } else {
                run += 1;
                best = best.max(run);
            }
        }
        best
    }
}

impl CmaArea {
    fn bitmap(&self) -> Bitmap<'_> {
        Bitmap {
            words: self.words(),
            bits: self.count >> self.order_per_bit,
        }
    }
}

/// The table of areas (Linux's `cma_areas[]`), in the page allocator.
pub struct CmaAreas {
    table: SpinLock<CmaTable>,
}

struct CmaTable {
    nr: usize,
    areas: [CmaArea; MAX_CMA_AREAS],
}

// SAFETY: the bitmap pointers lead to pages owned by their areas for the allocator's
// lifetime; the words are atomics, changed only under the table lock.
unsafe impl Send for CmaTable {}

impl CmaAreas {
    /// No areas.
    pub const fn new() -> CmaAreas {
        CmaAreas {
            table: SpinLock::new(CmaTable {
                nr: 0,
                areas: [CmaArea::EMPTY; MAX_CMA_AREAS],
            }),
        }
    }
}

impl Default for CmaAreas {
    fn default() -> Self {
        CmaAreas::new()
    }
}

/// A view of one area's state, for views (`/sys/kernel/debug/cma/<name>/`). The bitmap is
/// read live.
#[derive(Clone, Copy)]
pub struct CmaAreaSnapshot<'a> {
    name: [u8; CMA_NAME_LEN],
    name_len: u8,
    /// First pfn.
    pub base_pfn: u64,
    /// Pages in the area.
    pub count: u64,
    /// log2 of the pages per bitmap bit.
    pub order_per_bit: u32,
    /// Pages handed out by `cma_alloc`.
    pub used: u64,
    /// The largest run of pages not handed out.
    pub maxchunk: u64,
    /// The node.
    pub nid: usize,
    /// The zone.
    pub zone: ZoneType,
    bitmap: &'a [AtomicU64],
}

impl CmaAreaSnapshot<'_> {
    /// The area's name.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("cma")
    }

    /// Bits in the allocation bitmap.
    pub fn bitmap_bits(&self) -> u64 {
        self.count >> self.order_per_bit
    }

    /// The allocation bitmap as 32-bit words (as debugfs shows it), only the words that
    /// hold bits of the area.
    pub fn bitmap_u32(&self) -> impl Iterator<Item = u32> + '_ {
        let words = self.bitmap_bits().div_ceil(32) as usize;
        (0..words).map(|i| {
            let w = self
                .bitmap
                .get(i / 2)
                .map_or(0, |w| w.load(Ordering::Relaxed));
            (w >> ((i % 2) * 32)) as u32
        })
    }
}

impl fmt::Debug for CmaAreaSnapshot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CmaAreaSnapshot")
            .field("name", &self.name())
            .field("base_pfn", &self.base_pfn)
            .field("count", &self.count)
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

/// The bitmap granularity for an area of `count` pages: one bit per page when the bitmap
/// fits in [`CMA_BITMAP_MAX_ORDER`] pages, coarser otherwise.
fn order_per_bit_for(count: u64) -> u32 {
    let mut o = 0;
    while count >> o > CMA_BITMAP_MAX_BITS {
        o += 1;
    }
    o
}

impl<P: Platform> PageAllocator<P> {
    /// Declare a CMA area of `size` bytes, at physical address `base` or wherever a range
    /// can be emptied, highest memory first (`cma_declare_contiguous` +
    /// `cma_activate_area`); see the module documentation. The size is rounded up to whole
    /// 4 MiB blocks. Returns the area's index for [`PageAllocator::cma_alloc`].
    pub fn cma_declare_contiguous(
        &self,
        size: u64,
        base: Option<u64>,
        name: &str,
    ) -> Result<usize, CmaError> {
        if size == 0 || !size.is_multiple_of(1 << PAGE_SHIFT) {
            return Err(CmaError::BadSize { size });
        }
        if self.cma.table.lock_irqsave(self.platform()).nr >= MAX_CMA_AREAS {
            return Err(CmaError::TooManyAreas);
        }
        let pages = (size >> PAGE_SHIFT).next_multiple_of(MAX_ORDER_NR_PAGES);
        if let Some(b) = base
            && (!(b >> PAGE_SHIFT).is_multiple_of(MAX_ORDER_NR_PAGES)
                || !b.is_multiple_of(1 << PAGE_SHIFT))
        {
            return Err(CmaError::Misaligned { base: b });
        }
        let quiet = GFP_KERNEL | Gfp::NOWARN;
        // The bitmap first: an unmovable page, so the range search below steps around it.
        let order_per_bit = order_per_bit_for(pages);
        let words = (pages >> order_per_bit).div_ceil(64) as usize;
        let bytes = (words * 8) as u64;
        let bitmap_order = (bytes.div_ceil(PAGE_SIZE))
            .next_power_of_two()
            .trailing_zeros();
        let bitmap_page = self
            .alloc_pages(GFP_KERNEL | Gfp::ZERO | Gfp::NOWARN, bitmap_order)
            .ok_or(CmaError::NoBitmap)?;
        let taken = match base {
            Some(b) => {
                let pfn = b >> PAGE_SHIFT;
                self.alloc_contig_range(pfn, pfn + pages, Migratetype::Cma, quiet)
                    .map(|_| pfn)
                    .map_err(CmaError::Range)
            }
            None => self
                .cma_find_and_take(pages)
                .ok_or(CmaError::NoRange { pages }),
        };
        let base_pfn = match taken {
            Ok(pfn) => pfn,
            Err(e) => {
                let _ = self.free_pages(bitmap_page, bitmap_order);
                return Err(e);
            }
        };
        // The range is ours and its pageblocks are CMA: giving it back puts it on the CMA
        // lists, lent to movable allocations until cma_alloc wants it.
        let page = self.pfn_to_page(base_pfn);
        let (nid, zone) = page
            .map(|p| (p.nid(), p.zone_type().unwrap_or(ZoneType::Normal)))
            .unwrap_or((0, ZoneType::Normal));
        let mut area = CmaArea {
            base_pfn,
            count: pages,
            order_per_bit,
            nid,
            zone,
            bitmap: self.page_address(bitmap_page) as *const AtomicU64,
            bitmap_words: words,
            ..CmaArea::EMPTY
        };
        let n = name.len().min(CMA_NAME_LEN);
        let mut cut = n;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        area.name[..cut].copy_from_slice(&name.as_bytes()[..cut]);
        area.name_len = cut as u8;
        let idx = {
            let mut t = self.cma.table.lock_irqsave(self.platform());
            if t.nr >= MAX_CMA_AREAS {
                None
            } else {
                let i = t.nr;
                t.areas[i] = area;
                t.nr += 1;
                Some(i)
            }
        };
        if self.free_contig_range(base_pfn, pages).is_err() {
            log::error!("cma: freeing the new area {name} met a bad page");
        }
        let idx = idx.ok_or(CmaError::TooManyAreas)?;
        log::info!(
            "cma: reserved {} MiB at {:#x} for {name}",
            (pages << PAGE_SHIFT) >> 20,
            base_pfn << PAGE_SHIFT
        );
        Ok(idx)
    }

    /// Find the highest range of `pages` pages (aligned to a MAX_ORDER block) in one zone
    /// that can be emptied, and take it as CMA pageblocks.
    fn cma_find_and_take(&self, pages: u64) -> Option<u64> {
        let quiet = GFP_KERNEL | Gfp::NOWARN;
        // Highest node first: CMA areas go high, away from the memory DMA32 users need.
        for n in (0..crate::model::mmzone::MAX_NUMNODES).rev() {
            if self.model().node(n).is_none() {
                continue;
            }
            for zt in [ZoneType::Normal, ZoneType::Dma32, ZoneType::Dma] {
                let Some(zone) = self.zone_of(n, zt).filter(|z| z.managed_zone()) else {
                    continue;
                };
                let lowest = zone.zone_start_pfn().next_multiple_of(MAX_ORDER_NR_PAGES);
                let Some(mut pfn) = zone
                    .zone_end_pfn()
                    .checked_sub(pages)
                    .map(|p| p & !(MAX_ORDER_NR_PAGES - 1))
                else {
                    continue;
                };
                while pfn >= lowest {
                    if self.pfn_range_valid_contig(zone, pfn, pages)
                        && self
                            .alloc_contig_range(pfn, pfn + pages, Migratetype::Cma, quiet)
                            .is_ok()
                    {
                        return Some(pfn);
                    }
                    if pfn < MAX_ORDER_NR_PAGES {
                        break;
                    }
                    pfn -= MAX_ORDER_NR_PAGES;
                }
            }
        }
        None
    }

    /// Declare the area a `cma=` option asked for; failures are logged (the allocator
    /// runs without the area, as Linux boots without it).
    pub(crate) fn cma_init_from_params(&self, spec: Option<CmaSpec>) {
        if let Some(s) = spec
            && let Err(e) = self.cma_declare_contiguous(
                s.size.next_multiple_of(1 << PAGE_SHIFT),
                s.base,
                "reserved",
            )
        {
            log::warn!("cma: failed to reserve {} MiB: {e}", s.size >> 20);
        }
    }

    /// `(base_pfn, order_per_bit, count)` of area `area`.
    fn cma_geometry(&self, area: usize) -> Result<(u64, u32, u64), CmaError> {
        let t = self.cma.table.lock_irqsave(self.platform());
        let a = t.areas[..t.nr].get(area).ok_or(CmaError::NoArea(area))?;
        Ok((a.base_pfn, a.order_per_bit, a.count))
    }

    /// Allocate `count` contiguous pages from area `area`, the first aligned to
    /// `1 << align_order` pages (`cma_alloc`): see the module documentation. Every page
    /// has one reference; give them back with [`PageAllocator::cma_release`].
    pub fn cma_alloc(
        &self,
        area: usize,
        count: u64,
        align_order: u32,
    ) -> Result<(&Page, ContigStats), CmaError> {
        let (base_pfn, opb, total) = self.cma_geometry(area)?;
        if count == 0 || count > total || align_order > MAX_PAGE_ORDER + 8 {
            return Err(CmaError::BadRequest { count });
        }
        let mask = if align_order > opb {
            (1u64 << (align_order - opb)) - 1
        } else {
            0
        };
        let nbits = count.div_ceil(1 << opb);
        let mut from = 0;
        let mut last = None;
        loop {
            let bit = {
                let t = self.cma.table.lock_irqsave(self.platform());
                let bm = t.areas[area].bitmap();
                let Some(bit) = bm.find_zero_area(from, nbits, mask, (base_pfn >> opb) & mask)
                else {
                    break;
                };
                bm.set_range(bit, nbits, true);
                bit
            };
            let pfn = base_pfn + (bit << opb);
            match self.alloc_contig_range(
                pfn,
                pfn + count,
                Migratetype::Cma,
                GFP_KERNEL | Gfp::NOWARN,
            ) {
                Ok(stats) => {
                    if let Some(page) = self.pfn_to_page(pfn) {
                        return Ok((page, stats));
                    }
                    last = Some(ContigError::NoMemory);
                }
                Err(e) => last = Some(e),
            }
            self.cma.table.lock_irqsave(self.platform()).areas[area]
                .bitmap()
                .set_range(bit, nbits, false);
            if last == Some(ContigError::NoMemory) {
                break;
            }
            // Linux moves on past the busy run's start, keeping the alignment.
            from = bit + mask + 1;
        }
        Err(CmaError::AllocFailed { count, last })
    }

    /// Give back `count` pages from `pages` allocated by [`PageAllocator::cma_alloc`] on
    /// `area` (`cma_release`): they return to the CMA free lists. Refused, with nothing
    /// freed, if the range is not inside the area.
    pub fn cma_release(&self, area: usize, pages: &Page, count: u64) -> Result<(), CmaError> {
        let pfn = self.page_to_pfn(pages);
        let (base_pfn, opb, total) = self.cma_geometry(area)?;
        if count == 0 || pfn < base_pfn || pfn + count > base_pfn + total {
            return Err(CmaError::NotOurs { pfn });
        }
        if let Err(bad) = self.free_contig_range(pfn, count) {
            log::error!("cma_release: {bad}");
        }
        let bit = (pfn - base_pfn) >> opb;
        self.cma.table.lock_irqsave(self.platform()).areas[area]
            .bitmap()
            .set_range(bit, count.div_ceil(1 << opb), false);
        Ok(())
    }

    /// Number of declared areas.
    pub fn cma_nr_areas(&self) -> usize {
        self.cma.table.lock_irqsave(self.platform()).nr
    }

    /// A view of area `area`'s state (its counts taken now, its bitmap read live).
    pub fn cma_area(&self, area: usize) -> Option<CmaAreaSnapshot<'_>> {
        let t = self.cma.table.lock_irqsave(self.platform());
        if area >= t.nr {
            return None;
        }
        let a = t.areas[area];
        let bm = a.bitmap();
        let (used, maxchunk) = (bm.used(), bm.max_chunk());
        drop(t);
        let words: &[AtomicU64] = if a.bitmap.is_null() {
            &[]
        } else {
            // SAFETY: as in `CmaArea::words`: the bitmap pages belong to the area for the
            // allocator's lifetime, which bounds `&self`.
            unsafe { core::slice::from_raw_parts(a.bitmap, a.bitmap_words) }
        };
        Some(CmaAreaSnapshot {
            name: a.name,
            name_len: a.name_len,
            base_pfn: a.base_pfn,
            count: a.count,
            order_per_bit: a.order_per_bit,
            used: used << a.order_per_bit,
            maxchunk: maxchunk << a.order_per_bit,
            nid: a.nid,
            zone: a.zone,
            bitmap: words,
        })
    }

    /// Pages in all CMA areas (`totalcma_pages`, /proc/meminfo `CmaTotal`).
    pub fn totalcma_pages(&self) -> u64 {
        let t = self.cma.table.lock_irqsave(self.platform());
        t.areas[..t.nr].iter().map(|a| a.count).sum()
    }

    /// Free pages in CMA pageblocks of all zones (vmstat `nr_free_cma`, /proc/meminfo
    /// `CmaFree`).
    pub fn nr_free_cma_pages(&self) -> u64 {
        self.model()
            .nodes()
            .flat_map(|n| n.node_zones.iter())
            .map(|z| z.zone_page_state(crate::report::vmstat::ZoneStatItem::NrFreeCmaPages))
            .sum()
    }
}
