//! Bad page states: what a freed page must look like, and the report when it does not
//! (Linux: `page_bad_reason`, `bad_page`, `free_page_is_bad` in `mm/page_alloc.c`).
//!
//! A page that goes back to the free lists in a state its next owner does not expect
//! (still mapped, still owned by a mapping, still referenced, still locked) is how memory
//! corruption spreads from the guilty code to an innocent one. Every free is therefore
//! checked, always, not only in debug builds: the checks read the one cache line of the
//! `struct Page` the free path touches anyway. Which descriptors of a multi-page block are
//! read is [`PageChecks`]' business: the head always, every tail with `page_checks=full`
//! (see the [`crate::page_alloc`] documentation). A bad page is reported, counted
//! (`pgfree_rejected`) and *taken out of circulation*: it is not put on any free list, so
//! the lists stay consistent and the page is simply lost, as Linux does.
//!
//! Errors found before the last reference is dropped (a pfn we do not manage, a reserved
//! page, a double free, an order that does not match the allocation) change nothing at
//! all: the caller gets the error and the page stays as it was.
//!
//! The reason strings of the state checks are Linux's, so a report reads like a Linux
//! "BUG: Bad page state" line; the checks Linux does not make (it trusts the order and
//! cannot name a double free) have plain-English reasons.

#![deny(unsafe_code)]

use core::fmt;
use core::sync::atomic::Ordering;

use crate::model::page::{Page, PageFlags};
use crate::page_alloc::PageAllocator;
use crate::port::platform::Platform;

/// How much of a block the free and allocation paths check (Linux: the
/// `check_pages_enabled` static key, on with `CONFIG_DEBUG_VM`, `init_on_alloc`/`init_on_free`
/// or `debug_pagealloc`). See "Which descriptors are checked" in the [`crate::page_alloc`]
/// documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PageChecks {
    /// The default: the head descriptor of every block (and every descriptor of a
    /// compound page, whose tails the allocator itself wrote) is checked and reset at free
    /// and checked at allocation; the tails of a non-compound block are left as they are.
    /// O(1) descriptors per operation whatever the order.
    #[default]
    Head,
    /// Every descriptor of every block is checked and reset at free and checked again when
    /// the block is handed out (`page_checks=full`): for tests and debug runs, at the cost
    /// of 512 descriptors (32 KiB of metadata) per 2 MiB block on each side.
    Full,
}

impl PageChecks {
    /// Parse the boot-parameter value: `head` or `full` (`on`/`off` are accepted too,
    /// as for Linux's `debug_pagealloc`).
    pub fn parse(value: &str) -> Option<PageChecks> {
        match value {
            "head" | "off" => Some(PageChecks::Head),
            "full" | "on" => Some(PageChecks::Full),
            _ => None,
        }
    }

    /// The boot-parameter spelling.
    pub const fn name(self) -> &'static str {
        match self {
            PageChecks::Head => "head",
            PageChecks::Full => "full",
        }
    }
}

/// Flags that must be clear when a page is freed (`PAGE_FLAGS_CHECK_AT_FREE`; Linux's
/// `PG_reserved` has its own reason here, [`BadPageReason::Reserved`]). The page-type
/// bits (slab, page table, buddy) are included: Linux keeps them in a field whose
/// non-default value is reported as a bad mapcount. A `PG_buddy` page inside a block being
/// freed is a free block's head: freeing over it would corrupt the free lists.
pub const PAGE_FLAGS_CHECK_AT_FREE: PageFlags = PageFlags::BUDDY
    .union(PageFlags::LRU)
    .union(PageFlags::LOCKED)
    .union(PageFlags::PRIVATE)
    .union(PageFlags::WRITEBACK)
    .union(PageFlags::ACTIVE)
    .union(PageFlags::SLAB)
    .union(PageFlags::ISOLATED)
    .union(PageFlags::PGTABLE)
    .union(PageFlags::OFFLINE)
    .union(PageFlags::GUARD);

/// Flags that must be clear on a page taken off a free list (`PAGE_FLAGS_CHECK_AT_PREP`):
/// every `PG_*` bit.
pub const PAGE_FLAGS_CHECK_AT_PREP: PageFlags = PageFlags::all();

/// Why a page could not be freed (or, for [`BadPageReason::BadStateAtAlloc`], handed out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPageReason {
    /// The page or address is not one this allocator manages (no memmap, or a zone with no
    /// managed pages, or a `Page` that is not in the memmap at all).
    UnknownPfn,
    /// The page is `PG_reserved`: firmware, kernel image, memmaps; never the allocator's.
    Reserved,
    /// The page is already free (on a free list, or its reference count is 0).
    DoubleFree,
    /// A tail page of a compound page was freed on its own; free the head.
    TailPage,
    /// The order passed to the free does not match the order the block was allocated with.
    WrongOrder {
        /// Order given to the free.
        freed: u32,
        /// Order recorded at allocation.
        allocated: u32,
    },
    /// The pfn is not aligned to the order given, so it cannot head such a block.
    Misaligned {
        /// Order given to the free.
        order: u32,
    },
    /// An order above `MAX_PAGE_ORDER`.
    OrderTooLarge {
        /// Order given to the free.
        order: u32,
    },
    /// `_mapcount` is not -1: the page is still mapped.
    NonzeroMapcount,
    /// `mapping` is set: the page still belongs to a file, anon_vma or driver.
    NonNullMapping,
    /// `_refcount` is not 0 on a page that should have no references left (a tail page
    /// of a multi-page block somebody still holds).
    NonzeroRefcount,
    /// One of [`PAGE_FLAGS_CHECK_AT_FREE`] is set.
    FlagsCheckAtFree(PageFlags),
    /// `private` is not 0.
    NonzeroPrivate,
    /// A compound page's tails do not point at its head, or its order is not recorded.
    CorruptCompound,
    /// A page on a free list was found in use when it was about to be handed out.
    BadStateAtAlloc,
}

impl fmt::Display for BadPageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadPageReason::UnknownPfn => f.write_str("pfn is not managed by this allocator"),
            BadPageReason::Reserved => {
                f.write_str("PG_reserved set: the page was never given to the page allocator")
            }
            BadPageReason::DoubleFree => f.write_str("double free: the page is already free"),
            BadPageReason::TailPage => {
                f.write_str("tail page of a compound page freed on its own (free the head)")
            }
            BadPageReason::WrongOrder { freed, allocated } => write!(
                f,
                "wrong order: freed with order {freed}, allocated with order {allocated}"
            ),
            BadPageReason::Misaligned { order } => {
                write!(f, "wrong order: pfn is not aligned to order {order}")
            }
            BadPageReason::OrderTooLarge { order } => {
                write!(f, "wrong order: order {order} is above MAX_PAGE_ORDER")
            }
            BadPageReason::NonzeroMapcount => f.write_str("nonzero mapcount"),
            BadPageReason::NonNullMapping => f.write_str("non-NULL mapping"),
            BadPageReason::NonzeroRefcount => f.write_str("nonzero _refcount"),
            BadPageReason::FlagsCheckAtFree(_) => {
                f.write_str("PAGE_FLAGS_CHECK_AT_FREE flag(s) set")
            }
            BadPageReason::NonzeroPrivate => f.write_str("nonzero private"),
            BadPageReason::CorruptCompound => f.write_str("corrupted compound page"),
            BadPageReason::BadStateAtAlloc => {
                f.write_str("page on a free list is in use (PAGE_FLAGS_CHECK_AT_PREP)")
            }
        }
    }
}

/// A rejected free: which page and why. Returned by every free entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPage {
    /// The offending page's pfn (for a multi-page block, the first bad page), if known.
    pub pfn: Option<u64>,
    /// Why.
    pub reason: BadPageReason,
}

impl BadPage {
    /// A rejection of `pfn` for `reason`.
    pub const fn new(pfn: Option<u64>, reason: BadPageReason) -> BadPage {
        BadPage { pfn, reason }
    }

    /// True for the rejections that happen before the last reference is dropped: the page
    /// was left untouched. The others took the page out of circulation.
    pub const fn page_untouched(&self) -> bool {
        matches!(
            self.reason,
            BadPageReason::UnknownPfn
                | BadPageReason::Reserved
                | BadPageReason::DoubleFree
                | BadPageReason::TailPage
                | BadPageReason::WrongOrder { .. }
                | BadPageReason::Misaligned { .. }
                | BadPageReason::OrderTooLarge { .. }
        )
    }
}

impl fmt::Display for BadPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pfn {
            Some(pfn) => write!(f, "bad page pfn:{pfn:#x}: {}", self.reason),
            None => write!(f, "bad page: {}", self.reason),
        }
    }
}

impl core::error::Error for BadPage {}

/// What is wrong with a page about to be freed, if anything (`page_bad_reason`): the
/// reference count must already be 0, the page unmapped, without owner, `private` clear,
/// and none of [`PAGE_FLAGS_CHECK_AT_FREE`] set. As in Linux, when several things are
/// wrong the last check wins: flags, then private, refcount, mapping, mapcount.
#[inline]
pub fn page_bad_reason(page: &Page) -> Option<BadPageReason> {
    let mut reason = None;
    if page.mapcount() != 0 {
        reason = Some(BadPageReason::NonzeroMapcount);
    }
    if page.mapping_raw() != 0 {
        reason = Some(BadPageReason::NonNullMapping);
    }
    if page.refcount() != 0 {
        reason = Some(BadPageReason::NonzeroRefcount);
    }
    if page.private() != 0 {
        reason = Some(BadPageReason::NonzeroPrivate);
    }
    let bad_flags = page.flags() & PAGE_FLAGS_CHECK_AT_FREE;
    if !bad_flags.is_empty() {
        reason = Some(BadPageReason::FlagsCheckAtFree(bad_flags));
    }
    reason
}

/// True exactly when [`page_bad_reason`] finds nothing, decided with one branch: the
/// free paths run it on every descriptor of a block (512 for a 2 MiB block) and only ask
/// for the reason when it fails. `flags` is the page's flags word as the caller read it.
#[inline(always)]
pub fn page_ok_at_free(page: &Page, flags: u64) -> bool {
    (page.mapcount() as u32 as u64
        | page.mapping_raw() as u64
        | page.refcount() as u32 as u64
        | page.private()
        | (flags & PAGE_FLAGS_CHECK_AT_FREE.bits()))
        == 0
}

/// Is a page taken off a free list fit to hand out (`check_new_page`)? Free pages have no
/// references, no mappings, no owner and no flags.
#[inline]
pub fn page_ok_at_alloc(page: &Page) -> bool {
    page.refcount() == 0
        && page.mapcount() == 0
        && page.mapping_raw() == 0
        && (page.flags() & PAGE_FLAGS_CHECK_AT_PREP).is_empty()
}

/// A burst limit for reports that can come in floods (bad pages, allocation failures): the
/// first `burst` are printed, then one in every `burst * 100`, each saying how many were
/// suppressed. Linux rate-limits the same reports by time; the allocator has no clock, so
/// it limits by count.
#[derive(Debug)]
pub struct ReportLimit {
    seen: core::sync::atomic::AtomicU64,
    burst: u64,
}

impl ReportLimit {
    /// A limit letting `burst` reports through before thinning them out.
    pub const fn new(burst: u64) -> ReportLimit {
        ReportLimit {
            seen: core::sync::atomic::AtomicU64::new(0),
            burst,
        }
    }

    /// Count one report; `Some(suppressed)` if it should be printed, with the number of
    /// reports suppressed since the last printed one.
    pub fn allow(&self) -> Option<u64> {
        let n = self
            .seen
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        if n < self.burst {
            return Some(0);
        }
        let every = self.burst.max(1) * 100;
        (n - self.burst)
            .is_multiple_of(every)
            .then_some(if n == self.burst { 0 } else { every - 1 })
    }
}

/// Report a bad page (`bad_page`): one "BUG: Bad page state" line plus the page's state.
pub fn report(bad: &BadPage, page: Option<&Page>) {
    match page {
        Some(p) => log::error!(
            "BUG: Bad page state: {bad}\npage: refcount:{} mapcount:{} mapping:{:#x} index:{:#x} private:{:#x} flags: {:?}",
            p.refcount(),
            p.mapcount(),
            p.mapping_raw(),
            p.index(),
            p.private(),
            p.flags()
        ),
        None => log::error!("BUG: Bad page state: {bad}"),
    }
}

impl<P: Platform> PageAllocator<P> {
    /// Which descriptors the free and allocation paths check ([`PageChecks`]).
    #[inline(always)]
    pub fn page_checks(&self) -> PageChecks {
        if self.page_checks.load(Ordering::Relaxed) == PageChecks::Full as u8 {
            PageChecks::Full
        } else {
            PageChecks::Head
        }
    }

    /// Switch the tail sweeps on or off (the `page_checks=` boot parameter). Safe at any
    /// time: blocks freed before the switch are checked by the rules in force when they
    /// are handed out.
    pub fn set_page_checks(&self, checks: PageChecks) {
        self.page_checks.store(checks as u8, Ordering::Relaxed);
    }

    /// Is a block taken off a free list fit to hand out (`check_new_pages`)? The head
    /// always; with [`PageChecks::Full`] every page of the block. A bad block is reported
    /// (naming its first bad page) and the caller drops it.
    #[inline(always)]
    pub(crate) fn check_new_pages(&self, page: &Page, order: u32) -> bool {
        if !page_ok_at_alloc(page) {
            self.bad_page_at_alloc(page);
            return false;
        }
        if order == 0 || self.page_checks() == PageChecks::Head {
            return true;
        }
        self.check_new_tails(page, order)
    }

    #[cold]
    #[inline(never)]
    fn check_new_tails(&self, page: &Page, order: u32) -> bool {
        let Some(pfn) = self.mem().try_page_to_pfn(page) else {
            return true;
        };
        for i in 1..1u64 << order {
            if let Some(p) = self.mem().pfn_to_page(pfn + i)
                && !page_ok_at_alloc(p)
            {
                self.bad_page_at_alloc(p);
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn reasons_and_precedence() {
        let p = Page::new(0);
        p.set_refcount(0);
        assert_eq!(page_bad_reason(&p), None);
        p.set_mapcount(1);
        assert_eq!(page_bad_reason(&p), Some(BadPageReason::NonzeroMapcount));
        p.set_mapping(0x1000 as *const (), 0);
        assert_eq!(page_bad_reason(&p), Some(BadPageReason::NonNullMapping));
        p.set_refcount(2);
        assert_eq!(page_bad_reason(&p), Some(BadPageReason::NonzeroRefcount));
        p.set_private(1);
        assert_eq!(page_bad_reason(&p), Some(BadPageReason::NonzeroPrivate));
        p.set_lru();
        assert_eq!(
            page_bad_reason(&p),
            Some(BadPageReason::FlagsCheckAtFree(PageFlags::LRU))
        );
        assert_eq!(
            BadPageReason::NonzeroMapcount.to_string(),
            "nonzero mapcount"
        );
        assert_eq!(
            BadPageReason::NonNullMapping.to_string(),
            "non-NULL mapping"
        );
        assert_eq!(
            BadPageReason::NonzeroRefcount.to_string(),
            "nonzero _refcount"
        );
        assert_eq!(
            BadPageReason::FlagsCheckAtFree(PageFlags::LRU).to_string(),
            "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"
        );
        assert_eq!(BadPageReason::NonzeroPrivate.to_string(), "nonzero private");
        assert_eq!(
            BadPage::new(Some(0x1234), BadPageReason::DoubleFree).to_string(),
            "bad page pfn:0x1234: double free: the page is already free"
        );
        assert!(BadPage::new(None, BadPageReason::UnknownPfn).page_untouched());
        let limit = ReportLimit::new(3);
        let printed: std::vec::Vec<Option<u64>> = (0..610).map(|_| limit.allow()).collect();
        assert_eq!(&printed[..4], &[Some(0), Some(0), Some(0), Some(0)]);
        assert_eq!(printed[4], None);
        assert_eq!(printed[303], Some(299));
        assert_eq!(printed.iter().filter(|p| p.is_some()).count(), 6);
        assert!(!BadPage::new(None, BadPageReason::NonzeroMapcount).page_untouched());
        for c in [PageChecks::Head, PageChecks::Full] {
            assert_eq!(PageChecks::parse(c.name()), Some(c));
        }
        assert_eq!(PageChecks::parse("on"), Some(PageChecks::Full));
        assert_eq!(PageChecks::parse("fulll"), None);
        assert_eq!(PageChecks::default(), PageChecks::Head);
    }
}
