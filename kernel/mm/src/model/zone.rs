//! Zones: address-constrained slices of a node (Linux: `struct zone` in `mmzone.h`, zone
//! sizing in `mm/mm_init.c`).
//!
//! Devices that can only address 24 or 32 bits need their memory below 16 MiB or 4 GiB, so
//! that memory is kept in its own zones (DMA, DMA32) and handed out to others only as a last
//! resort. ZONE_MOVABLE is different: it has no address limit of its own but is carved from
//! the top of the highest zone on request (`kernelcore=` / `movablecore=`) and accepts only
//! movable allocations, so it can always be emptied by compaction or offlining.
//!
//! Three sizes describe a zone, with Linux's exact meanings:
//!
//! - `spanned_pages` = `zone_end_pfn - zone_start_pfn`: the span, holes included;
//! - `present_pages` = spanned minus holes (pfns that are not RAM);
//! - `managed_pages` = present minus the pages reserved at boot: what the buddy allocator
//!   receives. It is an atomic because it changes after boot (pages freed late, memory
//!   offlined, ballooning) while readers (watermark calculation, /proc) take no lock; the
//!   other two are fixed once the zone is set up and stay plain integers.
//!
//! Besides that identity and sizing, a zone carries the allocator's per-zone state, laid
//! out by who writes it, so that the hot read-mostly fields do not share a cache line with
//! fields every refill rewrites (Linux's `ZONE_PADDING`):
//!
//! - [`ZoneWatermarkState`]: watermarks, boost, `lowmem_reserve`, the pcp `high`/`batch`
//!   and zone flags. Read on every allocation, written only when tunables change (and the
//!   boost on fragmenting fallbacks).
//! - [`ZoneCounters`]: `NR_FREE_PAGES` and friends, the highatomic counts and a summary of
//!   which free lists are non-empty. Written only under the zone lock, read locklessly by
//!   the watermark checks.
//! - `lock`: the zone lock and the buddy free areas it protects ([`crate::page_alloc::buddy`]).
//! - [`ZoneCompaction`]: what compaction remembers between runs (cached scanner
//!   positions, deferral), written only by compaction ([`crate::movement::compaction`]).

#![deny(unsafe_code)]

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::model::arch::ArchParams;
use crate::model::free_area::FreeAreas;
use crate::model::memblock::MemblockRegion;
use crate::model::mmzone::NR_WMARK;
use crate::model::mmzone::{
    MAX_NR_ZONES, MAX_NUMNODES, MAX_ORDER_NR_PAGES, Migratetype, NR_PAGE_ORDERS, PAGE_SHIFT,
    ZoneType,
};
use crate::page_alloc::watermark::{Watermarks, ZoneFreeState};
use crate::port::sync::SpinLock;
use crate::report::fragmentation::CompactDefer;
use crate::report::vmstat::{NR_VM_ZONE_STAT_ITEMS, ZoneStatItem};

/// Zone flag: a fragmenting fallback boosted the watermarks and kswapd should be woken
/// (`ZONE_BOOSTED_WATERMARK`).
pub const ZONE_BOOSTED_WATERMARK: u64 = 1 << 0;

/// The read-mostly allocator state of a zone (one cache line).
#[derive(Debug)]
#[repr(C, align(64))]
pub struct ZoneWatermarkState {
    /// Unboosted min, low, high (`_watermark[]`).
    pub(crate) wmark: [AtomicU64; NR_WMARK],
    /// `watermark_boost`: written under the zone lock.
    pub(crate) boost: AtomicU64,
    /// `lowmem_reserve[]`, indexed by the request's highest zone.
    pub(crate) lowmem_reserve: [AtomicU64; MAX_NR_ZONES],
    /// pcp `high` of every CPU's pageset for this zone.
    pub(crate) pageset_high: AtomicU64,
    /// pcp `batch`.
    pub(crate) pageset_batch: AtomicU64,
    /// `ZONE_*` flag bits.
    pub(crate) flags: AtomicU64,
}

impl ZoneWatermarkState {
    const fn new() -> ZoneWatermarkState {
        ZoneWatermarkState {
            wmark: [const { AtomicU64::new(0) }; NR_WMARK],
            boost: AtomicU64::new(0),
            lowmem_reserve: [const { AtomicU64::new(0) }; MAX_NR_ZONES],
            pageset_high: AtomicU64::new(0),
            pageset_batch: AtomicU64::new(1),
            flags: AtomicU64::new(0),
        }
    }
}

/// The counters of a zone that change with every buddy operation (one cache line). Each
/// is written only under the zone lock (a load and a store, no atomic read-modify-write)
/// and read without it.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct ZoneCounters {
    /// `vm_stat[]`, indexed by [`ZoneStatItem::index`]. `NR_FREE_PAGES` counts pages on
    /// the buddy free lists only: pages on pcp lists are not free in this sense.
    pub(crate) vm_stat: [AtomicU64; NR_VM_ZONE_STAT_ITEMS],
    /// Free pages in MIGRATE_HIGHATOMIC pageblocks (`nr_free_highatomic`).
    pub(crate) nr_free_highatomic: AtomicU64,
    /// Pages in pageblocks reserved as MIGRATE_HIGHATOMIC (`nr_reserved_highatomic`).
    pub(crate) nr_reserved_highatomic: AtomicU64,
    /// Pageblocks currently MIGRATE_ISOLATE (`nr_isolate_pageblock`), see
    /// [`crate::movement::isolation`].
    pub(crate) nr_isolate_pageblock: AtomicU64,
    /// Per order, bit `mt` set when `free_area[order].free_list[mt]` is non-empty: lets the
    /// lockless watermark check ask "is a block of this order free" without the lock.
    pub(crate) free_nonempty: [AtomicU8; NR_PAGE_ORDERS],
}

impl ZoneCounters {
    const fn new() -> ZoneCounters {
        ZoneCounters {
            vm_stat: [const { AtomicU64::new(0) }; NR_VM_ZONE_STAT_ITEMS],
            nr_free_highatomic: AtomicU64::new(0),
            nr_reserved_highatomic: AtomicU64::new(0),
            nr_isolate_pageblock: AtomicU64::new(0),
            free_nonempty: [const { AtomicU8::new(0) }; NR_PAGE_ORDERS],
        }
    }
}

/// Add a signed delta to a counter only one CPU writes at a time (under a lock): a load and
/// a store, which is all the exclusion the lock leaves to do.
#[inline]
pub(crate) fn counter_add(c: &AtomicU64, delta: i64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(delta as u64),
        Ordering::Relaxed,
    );
}

/// What compaction remembers about a zone between runs (Linux: the `compact_*` fields of
/// `struct zone`), on its own cache line: only compaction writes it.
///
/// The scanner positions are hints, read and written without a lock (a stale value only
/// makes a scanner start somewhere less useful, as in Linux); `0` in the `init` positions
/// means "not set up yet" and is replaced by the zone's ends on first use. The deferral
/// state is a read-modify-write of three numbers, so it sits behind a leaf spinlock that
/// is never held while taking another lock.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct ZoneCompaction {
    /// Where the free scanner restarts (`compact_cached_free_pfn`), a pageblock start.
    pub(crate) cached_free_pfn: AtomicU64,
    /// Where the migration scanner restarts, for async `[0]` and sync `[1]` runs
    /// (`compact_cached_migrate_pfn[]`).
    pub(crate) cached_migrate_pfn: [AtomicU64; 2],
    /// Where a restarted migration scanner begins (`compact_init_migrate_pfn`).
    pub(crate) init_migrate_pfn: AtomicU64,
    /// Where a restarted free scanner begins (`compact_init_free_pfn`).
    pub(crate) init_free_pfn: AtomicU64,
    /// A direct compaction met the scanners: the skip bits should be cleared when the
    /// background worker next goes to sleep (`compact_blockskip_flush`).
    pub(crate) blockskip_flush: AtomicBool,
    /// `compact_considered`, `compact_defer_shift`, `compact_order_failed`.
    pub(crate) defer: SpinLock<CompactDefer>,
}

impl ZoneCompaction {
    const fn new() -> ZoneCompaction {
        ZoneCompaction {
            cached_free_pfn: AtomicU64::new(0),
            cached_migrate_pfn: [AtomicU64::new(0), AtomicU64::new(0)],
            init_migrate_pfn: AtomicU64::new(0),
            init_free_pfn: AtomicU64::new(0),
            blockskip_flush: AtomicBool::new(false),
            defer: SpinLock::new(CompactDefer::new()),
        }
    }
}

/// One zone of one node.
#[derive(Debug)]
pub struct Zone {
    /// Which zone this is (`zone_idx`).
    pub zone_type: ZoneType,
    /// The node it belongs to (`zone_to_nid`).
    pub nid: usize,
    /// First pfn of the span (0 for an empty zone, as Linux): [`Zone::zone_start_pfn`].
    /// Set by the memory model, then changed only by memory hotplug (under its mutex,
    /// [`crate::movement::memory_hotplug`]); readers take one relaxed load, as Linux's
    /// readers of the plain field do.
    pub(crate) zone_start_pfn: AtomicU64,
    /// Pfns spanned, holes included: [`Zone::spanned_pages`].
    pub(crate) spanned_pages: AtomicU64,
    /// Spanned pfns that are RAM and online: [`Zone::present_pages`].
    pub(crate) present_pages: AtomicU64,
    /// Present pages handed to (or held by) the buddy allocator.
    pub managed_pages: AtomicU64,
    /// Watermarks, reserves, pcp sizes, flags.
    pub(crate) wm: ZoneWatermarkState,
    /// Free page counters.
    pub(crate) counters: ZoneCounters,
    /// `zone->lock` and the free areas it protects.
    pub(crate) lock: SpinLock<FreeAreas>,
    /// Compaction's per-zone memory: cached scanner positions, deferral, skip-flush flag.
    pub(crate) compact: ZoneCompaction,
}

impl Zone {
    /// An empty zone.
    pub const fn new(zone_type: ZoneType, nid: usize) -> Zone {
        Zone {
            zone_type,
            nid,
            zone_start_pfn: AtomicU64::new(0),
            spanned_pages: AtomicU64::new(0),
            present_pages: AtomicU64::new(0),
            managed_pages: AtomicU64::new(0),
            wm: ZoneWatermarkState::new(),
            counters: ZoneCounters::new(),
            lock: SpinLock::new(FreeAreas::new()),
            compact: ZoneCompaction::new(),
        }
    }

    /// The name used in /proc files.
    pub const fn name(&self) -> &'static str {
        self.zone_type.name()
    }

    /// First pfn of the span (`zone->zone_start_pfn`; 0 for an empty zone).
    #[inline]
    pub fn zone_start_pfn(&self) -> u64 {
        self.zone_start_pfn.load(Ordering::Relaxed)
    }

    /// Pfns spanned, holes included (`zone->spanned_pages`).
    #[inline]
    pub fn spanned_pages(&self) -> u64 {
        self.spanned_pages.load(Ordering::Relaxed)
    }

    /// Spanned pfns that are RAM and online (`zone->present_pages`): offlining a memory
    /// block subtracts its pages, onlining adds them.
    #[inline]
    pub fn present_pages(&self) -> u64 {
        self.present_pages.load(Ordering::Relaxed)
    }

    /// Set the span to `[start, start + spanned)` (an empty span is `(0, 0)`, as Linux):
    /// the memory model's initialisation and memory hotplug (`resize_zone_range`,
    /// `shrink_zone_span`). A concurrent reader may see the old start with the new
    /// length for a moment, as in Linux without the span seqlock; every user of the span
    /// checks each pfn's own zone link as well.
    pub(crate) fn set_span(&self, start: u64, spanned: u64) {
        let start = if spanned == 0 { 0 } else { start };
        self.zone_start_pfn.store(start, Ordering::Relaxed);
        self.spanned_pages.store(spanned, Ordering::Relaxed);
    }

    /// Add `delta` (possibly negative) present pages (`adjust_present_page_count`).
    pub(crate) fn adjust_present_page_count(&self, delta: i64) {
        self.present_pages
            .fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// One past the last spanned pfn (`zone_end_pfn`).
    #[inline]
    pub fn zone_end_pfn(&self) -> u64 {
        self.zone_start_pfn() + self.spanned_pages()
    }

    /// True if `pfn` lies in the span (`zone_spans_pfn`).
    #[inline]
    pub fn zone_spans_pfn(&self, pfn: u64) -> bool {
        self.zone_start_pfn() <= pfn && pfn < self.zone_end_pfn()
    }

    /// True if the zone spans nothing (`zone_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.spanned_pages() == 0
    }

    /// True if the zone has RAM (`populated_zone`).
    pub fn populated(&self) -> bool {
        self.present_pages() != 0
    }

    /// Pages managed by the buddy allocator (`zone_managed_pages`).
    #[inline]
    pub fn managed_pages(&self) -> u64 {
        self.managed_pages.load(Ordering::Relaxed)
    }

    /// True if the buddy allocator manages any page of the zone (`managed_zone`).
    #[inline]
    pub fn managed_zone(&self) -> bool {
        self.managed_pages() != 0
    }

    /// Add `delta` (possibly negative) managed pages (`adjust_managed_page_count`).
    pub fn adjust_managed_page_count(&self, delta: i64) {
        self.managed_pages
            .fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// A zone counter (`zone_page_state`), read without the lock.
    #[inline]
    pub fn zone_page_state(&self, item: ZoneStatItem) -> u64 {
        self.counters.vm_stat[item.index()].load(Ordering::Relaxed)
    }

    /// Free pages on the buddy lists (`NR_FREE_PAGES`; pcp pages are not counted).
    #[inline]
    pub fn nr_free_pages(&self) -> u64 {
        self.zone_page_state(ZoneStatItem::NrFreePages)
    }

    /// Free pages in MIGRATE_HIGHATOMIC pageblocks.
    #[inline]
    pub fn nr_free_highatomic(&self) -> u64 {
        self.counters.nr_free_highatomic.load(Ordering::Relaxed)
    }

    /// Pages in pageblocks reserved as MIGRATE_HIGHATOMIC.
    #[inline]
    pub fn nr_reserved_highatomic(&self) -> u64 {
        self.counters.nr_reserved_highatomic.load(Ordering::Relaxed)
    }

    /// Pageblocks of the zone that are isolated (MIGRATE_ISOLATE) right now.
    #[inline]
    pub fn nr_isolate_pageblock(&self) -> u64 {
        self.counters.nr_isolate_pageblock.load(Ordering::Relaxed)
    }

    /// The watermarks and the current boost.
    #[inline]
    pub fn watermarks(&self) -> Watermarks {
        Watermarks {
            min: self.wm.wmark[0].load(Ordering::Relaxed),
            low: self.wm.wmark[1].load(Ordering::Relaxed),
            high: self.wm.wmark[2].load(Ordering::Relaxed),
            boost: self.wm.boost.load(Ordering::Relaxed),
        }
    }

    /// `lowmem_reserve[]` (printed as `protection` in /proc/zoneinfo).
    #[inline]
    pub fn lowmem_reserve(&self) -> [u64; MAX_NR_ZONES] {
        core::array::from_fn(|i| self.wm.lowmem_reserve[i].load(Ordering::Relaxed))
    }

    /// The pcp `(high, batch)` every CPU's pageset for this zone uses.
    #[inline]
    pub fn pageset_high_batch(&self) -> (u64, u64) {
        (
            self.wm.pageset_high.load(Ordering::Relaxed),
            self.wm.pageset_batch.load(Ordering::Relaxed),
        )
    }

    /// True if the zone flag bit(s) `flag` are set.
    #[inline]
    pub fn test_flag(&self, flag: u64) -> bool {
        self.wm.flags.load(Ordering::Relaxed) & flag != 0
    }

    /// The inputs of the watermark check, read without the lock.
    #[inline]
    pub fn free_state(&self) -> ZoneFreeState {
        ZoneFreeState {
            free_pages: self.nr_free_pages(),
            nr_free_highatomic: self.nr_free_highatomic(),
            nr_free_cma: self.zone_page_state(ZoneStatItem::NrFreeCmaPages),
            lowmem_reserve: self.lowmem_reserve(),
        }
    }

    /// True if `free_area[order].free_list[mt]` was non-empty when last changed (a
    /// lockless hint, exact under the zone lock).
    #[inline]
    pub fn has_free_block(&self, order: u32, mt: Migratetype) -> bool {
        match self.counters.free_nonempty.get(order as usize) {
            Some(bits) => bits.load(Ordering::Relaxed) & (1 << mt as u8) != 0,
            None => false,
        }
    }
}

/// The architectural pfn limits of each zone (`arch_zone_lowest_possible_pfn` /
/// `arch_zone_highest_possible_pfn`), before ZONE_MOVABLE is carved out. ZONE_MOVABLE's
/// entry is empty: it has no architectural range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneLimits {
    /// First pfn each zone may hold.
    pub lowest: [u64; MAX_NR_ZONES],
    /// One past the last pfn each zone may hold.
    pub highest: [u64; MAX_NR_ZONES],
}

impl ZoneLimits {
    /// Limits for RAM spanning pfns `[min_pfn, max_pfn)`: DMA up to `arch.dma_limit` (16
    /// MiB on x86_64), DMA32 up to `arch.dma32_limit` (4 GiB), Normal up to `max_pfn`, each
    /// starting where the previous ended (as `free_area_init` lays them out). A zone the
    /// architecture does not have (limit `None`) is empty.
    pub fn new(min_pfn: u64, max_pfn: u64, arch: &ArchParams) -> ZoneLimits {
        let mut lowest = [0; MAX_NR_ZONES];
        let mut highest = [0; MAX_NR_ZONES];
        let mut start = min_pfn;
        for zt in [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal] {
            // As x86's zone_sizes_init: every limit is capped by the end of RAM.
            let limit = arch.zone_max_pfn(zt).map_or(max_pfn, |l| l.min(max_pfn));
            let end = limit.max(start);
            lowest[zt.index()] = start;
            highest[zt.index()] = end;
            start = end;
        }
        ZoneLimits { lowest, highest }
    }

    /// The zone ZONE_MOVABLE is carved from: the highest non-movable zone with a non-empty
    /// range (`find_usable_zone_for_movable`).
    pub fn movable_zone(&self) -> ZoneType {
        [ZoneType::Normal, ZoneType::Dma32, ZoneType::Dma]
            .into_iter()
            .find(|z| self.highest[z.index()] > self.lowest[z.index()])
            .unwrap_or(ZoneType::Dma)
    }
}

/// A `kernelcore=` / `movablecore=` amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreSize {
    /// A size in bytes (`nn[KMGTPE]`).
    Bytes(u64),
    /// A percentage of all RAM (`nn%`), 1 to 100.
    Percent(u32),
}

impl fmt::Display for CoreSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreSize::Bytes(b) => write!(f, "{b}"),
            CoreSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Which option a [`ParamError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreOption {
    /// `kernelcore=`
    Kernelcore,
    /// `movablecore=`
    Movablecore,
}

impl CoreOption {
    /// The option name as written on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            CoreOption::Kernelcore => "kernelcore",
            CoreOption::Movablecore => "movablecore",
        }
    }
}

/// Why a `kernelcore=` / `movablecore=` value was rejected. The option is then ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamError {
    /// Not a number with an optional size suffix or `%` (the text given, truncated).
    Malformed(CoreOption, BadValue),
    /// The amount does not fit in 64 bits.
    Overflow(CoreOption),
    /// Zero bytes, 0%, or less than one page.
    Zero(CoreOption),
    /// A percentage above 100.
    PercentTooLarge(CoreOption, u64),
    /// `kernelcore=mirror` (address-range mirroring) is not supported.
    MirrorUnsupported,
    /// The amount leaves nothing for the other kind of memory.
    TooLarge {
        /// The option.
        option: CoreOption,
        /// Pages it asked for.
        pages: u64,
        /// Pages of RAM in the machine.
        total_pages: u64,
    },
}

/// A copy of a rejected command-line value, so the error can name it without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BadValue {
    bytes: [u8; BadValue::CAP],
    len: u8,
    truncated: bool,
}

impl BadValue {
    const CAP: usize = 24;

    /// Keep up to 24 bytes of `value` (cut at a character boundary).
    pub fn new(value: &str) -> BadValue {
        let mut end = value.len().min(Self::CAP);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; Self::CAP];
        bytes[..end].copy_from_slice(&value.as_bytes()[..end]);
        BadValue {
            bytes,
            len: end as u8,
            truncated: end < value.len(),
        }
    }

    /// The kept text.
    pub fn as_str(&self) -> &str {
        // The bytes were copied from a &str up to a character boundary.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.truncated {
            f.write_str("...")
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParamError::Malformed(o, v) => write!(
                f,
                "{}={v}: expected a size like 512M or a percentage like 20%; option ignored",
                o.name()
            ),
            ParamError::Overflow(o) => write!(f, "{}=: value too large; option ignored", o.name()),
            ParamError::Zero(o) => write!(
                f,
                "{}=: size is zero (or under one page); option ignored",
                o.name()
            ),
            ParamError::PercentTooLarge(o, p) => {
                write!(f, "{}={p}%: more than 100%; option ignored", o.name())
            }
            ParamError::MirrorUnsupported => {
                f.write_str("kernelcore=mirror: memory mirroring is not supported; option ignored")
            }
            ParamError::TooLarge {
                option,
                pages,
                total_pages,
            } => write!(
                f,
                "{}=: {pages} pages leaves no room in {total_pages} pages of RAM; option ignored",
                option.name()
            ),
        }
    }
}

/// Parse a `kernelcore=` value: `nn[KMGTPE]`, `nn%`, or `mirror` (rejected as
/// unsupported).
pub fn parse_kernelcore(value: &str) -> Result<CoreSize, ParamError> {
    if value.trim() == "mirror" {
        return Err(ParamError::MirrorUnsupported);
    }
    parse_core_size(value, CoreOption::Kernelcore)
}

/// Parse a `movablecore=` value: `nn[KMGTPE]` or `nn%`.
pub fn parse_movablecore(value: &str) -> Result<CoreSize, ParamError> {
    parse_core_size(value, CoreOption::Movablecore)
}

/// Parse `nn[KMGTPE]` (Linux's `memparse`: decimal or `0x` hexadecimal, binary suffixes,
/// either case) or `nn%`.
pub fn parse_core_size(value: &str, option: CoreOption) -> Result<CoreSize, ParamError> {
    let s = value.trim();
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    let split = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let (num, suffix) = digits.split_at(split);
    if num.is_empty() {
        return Err(ParamError::Malformed(option, BadValue::new(value)));
    }
    let n = u64::from_str_radix(num, radix).map_err(|_| ParamError::Overflow(option))?;
    if suffix == "%" {
        return match n {
            0 => Err(ParamError::Zero(option)),
            1..=100 => Ok(CoreSize::Percent(n as u32)),
            _ => Err(ParamError::PercentTooLarge(option, n)),
        };
    }
    let shift = match suffix {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        "p" | "P" => 50,
        "e" | "E" => 60,
        _ => return Err(ParamError::Malformed(option, BadValue::new(value))),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or(ParamError::Overflow(option))?;
    if bytes >> PAGE_SHIFT == 0 {
        return Err(ParamError::Zero(option));
    }
    Ok(CoreSize::Bytes(bytes))
}

fn core_pages(size: CoreSize, total_pages: u64) -> u64 {
    match size {
        CoreSize::Bytes(b) => b >> PAGE_SHIFT,
        CoreSize::Percent(p) => (total_pages as u128 * p as u128 / 100) as u64,
    }
}

/// The result of sizing ZONE_MOVABLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MovableLayout {
    /// Per node, the first pfn of ZONE_MOVABLE, or 0 for none (`zone_movable_pfn`).
    pub zone_movable_pfn: [u64; MAX_NUMNODES],
    /// Options that were rejected (and ignored) for this machine.
    pub errors: [Option<ParamError>; 2],
}

impl Default for MovableLayout {
    fn default() -> Self {
        MovableLayout {
            zone_movable_pfn: [0; MAX_NUMNODES],
            errors: [None; 2],
        }
    }
}

/// Find where ZONE_MOVABLE starts on each node (`find_zone_movable_pfns_for_nodes`).
///
/// `mem` holds the RAM regions (memblock's `memory`, page aligned) in address order. Kernel memory
/// (what `kernelcore=` asks for, or all but what `movablecore=` asks for, whichever leaves
/// more to the kernel when both are given) is spread evenly over the nodes that have RAM,
/// counted upwards from the lowest RAM; memory below the zone ZONE_MOVABLE is carved from
/// always counts as kernel memory. Each node's movable start is then aligned up to
/// `MAX_ORDER_NR_PAGES` so buddy blocks never straddle the zone boundary.
pub fn find_zone_movable_pfns_for_nodes(
    mem: &[MemblockRegion],
    limits: &ZoneLimits,
    kernelcore: Option<CoreSize>,
    movablecore: Option<CoreSize>,
) -> MovableLayout {
    let mut out = MovableLayout::default();
    let mem = || {
        mem.iter()
            .map(|r| (r.base >> PAGE_SHIFT, r.end() >> PAGE_SHIFT, r.nid as usize))
    };
    let total: u64 = mem().map(|(s, e, _)| e - s).sum();
    let mut nodes_with_memory = [false; MAX_NUMNODES];
    for (s, e, nid) in mem() {
        if e > s && nid < MAX_NUMNODES {
            nodes_with_memory[nid] = true;
        }
    }
    let mut usable_nodes = nodes_with_memory.iter().filter(|&&b| b).count() as u64;
    if usable_nodes == 0 {
        return out;
    }

    let mut required_kernelcore = 0;
    if let Some(kc) = kernelcore {
        let pages = core_pages(kc, total);
        if pages == 0 {
            out.errors[0] = Some(ParamError::Zero(CoreOption::Kernelcore));
        } else if pages >= total {
            out.errors[0] = Some(ParamError::TooLarge {
                option: CoreOption::Kernelcore,
                pages,
                total_pages: total,
            });
        } else {
            required_kernelcore = pages;
        }
    }
    if let Some(mc) = movablecore {
        let pages = core_pages(mc, total);
        // Round up so ZONE_MOVABLE is at least as large as requested.
        let rounded = pages.next_multiple_of(MAX_ORDER_NR_PAGES);
        if pages == 0 {
            out.errors[1] = Some(ParamError::Zero(CoreOption::Movablecore));
        } else if rounded >= total {
            out.errors[1] = Some(ParamError::TooLarge {
                option: CoreOption::Movablecore,
                pages,
                total_pages: total,
            });
        } else {
            required_kernelcore = required_kernelcore.max(total - rounded);
        }
    }
    if required_kernelcore == 0 || required_kernelcore >= total {
        return out;
    }

    let movable_zone = limits.movable_zone();
    let usable_startpfn = limits.lowest[movable_zone.index()];
    let zmp = &mut out.zone_movable_pfn;
    loop {
        // Spread kernel memory evenly over the nodes that still have room.
        let mut kernelcore_node = required_kernelcore / usable_nodes;
        for nid in (0..MAX_NUMNODES).filter(|&n| nodes_with_memory[n]) {
            if required_kernelcore < kernelcore_node {
                kernelcore_node = required_kernelcore / usable_nodes;
            }
            let mut remaining = kernelcore_node;
            for (s, e, _) in mem().filter(|r| r.2 == nid) {
                let mut start = s.max(zmp[nid]);
                if start >= e {
                    continue;
                }
                if start < usable_startpfn {
                    // Memory below the movable-capable zone is kernel memory regardless.
                    let kernel_pages = e.min(usable_startpfn) - start;
                    remaining -= kernel_pages.min(remaining);
                    required_kernelcore -= kernel_pages.min(required_kernelcore);
                    if e <= usable_startpfn {
                        zmp[nid] = e;
                        continue;
                    }
                    start = usable_startpfn;
                }
                let size = (e - start).min(remaining);
                zmp[nid] = start + size;
                required_kernelcore -= size.min(required_kernelcore);
                remaining -= size;
                if remaining == 0 {
                    break;
                }
            }
        }
        usable_nodes -= 1;
        if usable_nodes == 0 || required_kernelcore <= usable_nodes {
            break;
        }
    }

    for nid in (0..MAX_NUMNODES).filter(|&n| nodes_with_memory[n]) {
        let node_end = mem().filter(|r| r.2 == nid).map(|r| r.1).max().unwrap_or(0);
        zmp[nid] = zmp[nid].next_multiple_of(MAX_ORDER_NR_PAGES);
        if zmp[nid] >= node_end {
            zmp[nid] = 0;
        }
    }
    out
}

impl core::error::Error for ParamError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sizes_like_memparse() {
        let k = CoreOption::Kernelcore;
        assert_eq!(parse_core_size("512M", k), Ok(CoreSize::Bytes(512 << 20)));
        assert_eq!(parse_core_size("2g", k), Ok(CoreSize::Bytes(2 << 30)));
        assert_eq!(parse_core_size("0x100000", k), Ok(CoreSize::Bytes(1 << 20)));
        assert_eq!(parse_core_size("4096", k), Ok(CoreSize::Bytes(4096)));
        assert_eq!(parse_core_size("1E", k), Ok(CoreSize::Bytes(1 << 60)));
        assert_eq!(parse_core_size("30%", k), Ok(CoreSize::Percent(30)));
        assert_eq!(parse_core_size("100%", k), Ok(CoreSize::Percent(100)));
        assert_eq!(
            parse_core_size("101%", k),
            Err(ParamError::PercentTooLarge(k, 101))
        );
        assert_eq!(parse_core_size("0%", k), Err(ParamError::Zero(k)));
        assert_eq!(parse_core_size("0", k), Err(ParamError::Zero(k)));
        assert_eq!(parse_core_size("1K", k), Err(ParamError::Zero(k)));
        assert_eq!(
            parse_core_size("", k),
            Err(ParamError::Malformed(k, BadValue::new("")))
        );
        assert_eq!(
            parse_core_size("abc", k),
            Err(ParamError::Malformed(k, BadValue::new("abc")))
        );
        assert_eq!(
            parse_core_size("12X", k),
            Err(ParamError::Malformed(k, BadValue::new("12X")))
        );
        assert_eq!(
            parse_core_size("12MB", k),
            Err(ParamError::Malformed(k, BadValue::new("12MB")))
        );
        assert_eq!(
            parse_core_size("-5M", k),
            Err(ParamError::Malformed(k, BadValue::new("-5M")))
        );
        assert_eq!(parse_core_size("16E", k), Err(ParamError::Overflow(k)));
        assert_eq!(
            parse_core_size("99999999999999999999999", k),
            Err(ParamError::Overflow(k))
        );
        assert_eq!(
            parse_kernelcore("mirror"),
            Err(ParamError::MirrorUnsupported)
        );
        assert_eq!(
            parse_movablecore("mirror"),
            Err(ParamError::Malformed(
                CoreOption::Movablecore,
                BadValue::new("mirror")
            ))
        );
    }

    #[test]
    fn zone_limits_low_memory_machine() {
        let x86 = ArchParams::X86_64;
        let l = ZoneLimits::new(1, 0x8000, &x86);
        assert_eq!(l.lowest[0], 1);
        assert_eq!(l.highest[0], 4096);
        assert_eq!(l.highest[1], 0x8000);
        assert_eq!(l.lowest[2], 0x8000);
        assert_eq!(l.highest[2], 0x8000);
        assert_eq!(l.movable_zone(), ZoneType::Dma32);
        let l = ZoneLimits::new(0x140000, 0x200000, &x86);
        assert_eq!(l.movable_zone(), ZoneType::Normal);
        assert_eq!(l.lowest[2], 0x140000);
    }

    #[test]
    fn zone_limits_follow_the_arch_params() {
        // No ZONE_DMA, DMA32 below 2 GiB: DMA is empty at the bottom, DMA32 starts at RAM.
        let arch = ArchParams {
            dma_limit: None,
            dma32_limit: Some(2 << 30),
            ..ArchParams::X86_64
        };
        let l = ZoneLimits::new(0x100, 0x100000, &arch);
        assert_eq!((l.lowest[0], l.highest[0]), (0x100, 0x100));
        assert_eq!((l.lowest[1], l.highest[1]), (0x100, 0x80000));
        assert_eq!((l.lowest[2], l.highest[2]), (0x80000, 0x100000));
        // No DMA32 either: everything is Normal.
        let arch = ArchParams {
            dma32_limit: None,
            ..arch
        };
        let l = ZoneLimits::new(0x100, 0x100000, &arch);
        assert_eq!(l.highest[1], 0x100);
        assert_eq!((l.lowest[2], l.highest[2]), (0x100, 0x100000));
        assert_eq!(l.movable_zone(), ZoneType::Normal);
    }
}
