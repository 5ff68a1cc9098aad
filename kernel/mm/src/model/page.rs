//! `struct Page`: the 64-byte descriptor of one physical frame (Linux: `struct page`,
//! `include/linux/mm_types.h`, `page-flags.h`).
//!
//! Every frame of every present section has one, so its size is the dominant cost of the
//! memory model: 64 bytes per 4 KiB frame is 1.5625% of RAM, and one descriptor is exactly
//! one cache line (the struct is 64-byte aligned), so touching a page's metadata costs one
//! line, never two. The size is checked at compile time.
//!
//! # Layout
//!
//! | bytes | field | use |
//! |-------|-------|-----|
//! | 0–7   | `flags`         | `PG_*` bits (low 24 bits), order field (bits 24–27), zone, node and section number (high bits) |
//! | 8–23  | `lru`           | intrusive list links: buddy free lists, pcp lists, LRU |
//! | 24–31 | `mapping`       | owner pointer with tag bits 0–1 (`PAGE_MAPPING_ANON`, `_MOVABLE`) |
//! | 32–39 | `index`         | offset within the mapping (migration needs it); free-list migratetype while `PG_buddy` |
//! | 40–47 | `private`       | buddy order while `PG_buddy`; owner's use otherwise |
//! | 48–51 | `_mapcount`     | page-table mappings minus one (−1: unmapped), as in Linux |
//! | 52–55 | `_refcount`     | references; 0 means free |
//! | 56–63 | `compound_head` | tail pages: head page address + 1 |
//!
//! # Why every field is an atomic
//!
//! A `Page` is shared by all CPUs: the buddy allocator rewrites `lru` and `private` under the
//! zone lock while another CPU may read `flags` or take a reference through `_refcount`
//! without any lock, exactly as in Linux. Making every field an atomic (with `Relaxed`
//! ordering where Linux uses plain accesses under a lock) keeps all of that free of data
//! races at no cost on x86_64, where relaxed loads and stores are ordinary moves, and it
//! lets `&Page` be handed out freely with no `unsafe` at the use site. Initialisation of a
//! fresh memmap writes whole descriptors with plain stores instead (see
//! [`crate::model::sparse`]), which is sound because nothing can observe them yet.
//!
//! # Flags word
//!
//! The zone, node and section number are stored in the top bits of `flags`, as Linux's
//! classic SPARSEMEM does (`set_page_links`): the section number is what makes
//! `page_to_pfn` O(1) without a virtually contiguous memmap, and the zone and node are what
//! the free path needs to find the right free lists.
//!
//! Between the `PG_*` bits and the zone sits a 4-bit **order field** ([`Page::order_field`]).
//! In the first tail page of a compound page it holds the compound order, as Linux keeps
//! the folio order in the low byte of the first tail's flags (`folio->_flags_1`). In the
//! head page of every allocated block it holds the order the block was allocated with:
//! Linux trusts the caller of `__free_pages(page, order)` to pass the order back
//! correctly, and a wrong order silently corrupts the free lists; recording it lets the
//! free path reject a wrong order (see [`crate::page_alloc::bad_page`]) before touching anything.
//!
//! # Who writes what, and when
//!
//! While a page is free (on a buddy or pcp list, refcount 0) only the allocator touches it,
//! under the lock of the list it is on, so the buddy bookkeeping (`PG_buddy`, `private`,
//! `index`, the order field) uses plain load/store pairs rather than atomic
//! read-modify-writes, as Linux's non-atomic `__SetPageBuddy` does. Once a page is handed
//! out (refcount 1, published with release ordering) its flags are only changed with
//! atomic operations, because other holders of references may flip bits concurrently.

use core::fmt;
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::model::mmzone::{
    MAX_NR_ZONES, MAX_NUMNODES, MAX_PHYSMEM_BITS, SECTION_SIZE_BITS, ZoneType,
};

/// Bits of the section number field: room for `max_physmem_bits - section_size_bits` up
/// to 25 (52-bit physical addresses with 128 MiB sections);
/// [`crate::model::arch::ArchParams::validate`] refuses wider section numbers.
pub const SECTIONS_WIDTH: u32 = 25;
/// Bits of the node id field.
pub const NODES_WIDTH: u32 = 6;
/// Bits of the zone index field.
pub const ZONES_WIDTH: u32 = 3;
/// Shift of the section number in the flags word.
pub const SECTIONS_PGSHIFT: u32 = 64 - SECTIONS_WIDTH;
/// Shift of the node id in the flags word.
pub const NODES_PGSHIFT: u32 = SECTIONS_PGSHIFT - NODES_WIDTH;
/// Shift of the zone index in the flags word.
pub const ZONES_PGSHIFT: u32 = NODES_PGSHIFT - ZONES_WIDTH;
/// Bits of the order field (orders 0 to 15; `MAX_PAGE_ORDER` is 10).
pub const ORDER_WIDTH: u32 = 4;
/// Shift of the order field in the flags word.
pub const ORDER_PGSHIFT: u32 = 24;
/// Bits available for `PG_*` flags: everything below the order field.
pub const NR_PAGEFLAG_BITS: u32 = ORDER_PGSHIFT;
const ORDER_MASK: u64 = (1 << ORDER_WIDTH) - 1;
/// The flag-word bits that describe where a page is (`set_page_links`): section, node and
/// zone. Everything else is per-use state, cleared when the page is freed.
pub const PAGE_LINKS_MASK: u64 = !((1u64 << ZONES_PGSHIFT) - 1);

const SECTIONS_MASK: u64 = (1 << SECTIONS_WIDTH) - 1;
const NODES_MASK: u64 = (1 << NODES_WIDTH) - 1;
const ZONES_MASK: u64 = (1 << ZONES_WIDTH) - 1;

const _: () = {
    assert!(core::mem::size_of::<Page>() == 64);
    assert!(core::mem::align_of::<Page>() == 64);
    // The x86_64 defaults fit; other values are checked at init (ArchParams::validate).
    assert!(SECTIONS_WIDTH >= MAX_PHYSMEM_BITS - SECTION_SIZE_BITS);
    assert!(MAX_NUMNODES as u64 <= 1 << NODES_WIDTH);
    assert!(MAX_NR_ZONES as u64 <= 1 << ZONES_WIDTH);
    assert!(PageFlags::all().bits() >> NR_PAGEFLAG_BITS == 0);
    assert!(ORDER_PGSHIFT + ORDER_WIDTH <= ZONES_PGSHIFT);
    assert!(crate::model::mmzone::MAX_PAGE_ORDER as u64 <= ORDER_MASK);
};

bitflags::bitflags! {
    /// The `PG_*` page flags (the low bits of the flags word).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PageFlags: u64 {
        /// Page lock (`PG_locked`): held during migration and I/O; waiters retry.
        const LOCKED = 1 << 0;
        /// Recently accessed (`PG_referenced`).
        const REFERENCED = 1 << 1;
        /// Contents valid (`PG_uptodate`).
        const UPTODATE = 1 << 2;
        /// Contents modified (`PG_dirty`).
        const DIRTY = 1 << 3;
        /// On an LRU list (`PG_lru`).
        const LRU = 1 << 4;
        /// On the active LRU list (`PG_active`).
        const ACTIVE = 1 << 5;
        /// First page of a compound page (`PG_head`).
        const HEAD = 1 << 6;
        /// Non-first page of a compound page (Linux encodes this in `compound_head` bit 0).
        const TAIL = 1 << 7;
        /// Owned by the slab allocator (`PG_slab`).
        const SLAB = 1 << 8;
        /// Never handed to the buddy allocator: firmware, kernel, memmap, holes
        /// (`PG_reserved`).
        const RESERVED = 1 << 9;
        /// `private` holds owner data (`PG_private`).
        const PRIVATE = 1 << 10;
        /// Under writeback (`PG_writeback`).
        const WRITEBACK = 1 << 11;
        /// Free and on a buddy free list; `private` is the order (Linux: page type
        /// `PGTY_buddy`).
        const BUDDY = 1 << 12;
        /// Taken off its list by compaction or migration (`PG_isolated`).
        const ISOLATED = 1 << 13;
        /// A page-table page (`PGTY_table`).
        const PGTABLE = 1 << 14;
        /// Logically offline (`PGTY_offline`).
        const OFFLINE = 1 << 15;
        /// A debug guard page (`PGTY_guard`).
        const GUARD = 1 << 16;
        /// Memory error detected (`PG_hwpoison`).
        const HWPOISON = 1 << 17;
    }
}

/// `mapping` tag bit: the mapping is an anon_vma (`PAGE_MAPPING_ANON`).
pub const PAGE_MAPPING_ANON: usize = 0x1;
/// `mapping` tag bit: the page has `movable_operations` (`PAGE_MAPPING_MOVABLE`).
pub const PAGE_MAPPING_MOVABLE: usize = 0x2;
/// Both tag bits (`PAGE_MAPPING_FLAGS`).
pub const PAGE_MAPPING_FLAGS: usize = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE;

/// Intrusive doubly-linked list links (`page->lru`), used by [`crate::model::list::PageList`].
///
/// Null-terminated rather than circular, so a list head holds no pointer to itself and can
/// be moved freely before use.
#[repr(C)]
pub struct ListLinks {
    pub(crate) next: AtomicPtr<Page>,
    pub(crate) prev: AtomicPtr<Page>,
}

/// The descriptor of one physical frame. See the module documentation for the layout.
#[repr(C, align(64))]
pub struct Page {
    flags: AtomicU64,
    pub(crate) lru: ListLinks,
    mapping: AtomicUsize,
    index: AtomicU64,
    private: AtomicU64,
    mapcount: AtomicI32,
    refcount: AtomicI32,
    compound_head: AtomicUsize,
}

/// Compose the non-flag part of a flags word (`set_page_links`).
pub const fn page_links(zone: ZoneType, nid: usize, section_nr: u64) -> u64 {
    ((section_nr & SECTIONS_MASK) << SECTIONS_PGSHIFT)
        | ((nid as u64 & NODES_MASK) << NODES_PGSHIFT)
        | ((zone as u64 & ZONES_MASK) << ZONES_PGSHIFT)
}

macro_rules! page_flag_accessors {
    ($($flag:ident: $test:ident, $set:ident, $clear:ident;)*) => {
        $(
            #[doc = concat!("Test `PG_", stringify!($flag), "` (Linux `Page…()` test).")]
            #[inline]
            pub fn $test(&self) -> bool {
                self.test_flag(PageFlags::$flag)
            }
            #[doc = concat!("Atomically set `PG_", stringify!($flag), "`.")]
            #[inline]
            pub fn $set(&self) {
                self.set_flag(PageFlags::$flag)
            }
            #[doc = concat!("Atomically clear `PG_", stringify!($flag), "`.")]
            #[inline]
            pub fn $clear(&self) {
                self.clear_flag(PageFlags::$flag)
            }
        )*
    };
}

impl Page {
    /// A descriptor as memmap initialisation leaves it (`__init_single_page`): the given
    /// flags word, one reference (the boot allocator's; freeing to the buddy drops it),
    /// unmapped, no owner, unlinked.
    pub const fn new(flags: u64) -> Page {
        Page {
            flags: AtomicU64::new(flags),
            lru: ListLinks {
                next: AtomicPtr::new(core::ptr::null_mut()),
                prev: AtomicPtr::new(core::ptr::null_mut()),
            },
            mapping: AtomicUsize::new(0),
            index: AtomicU64::new(0),
            private: AtomicU64::new(0),
            mapcount: AtomicI32::new(-1),
            refcount: AtomicI32::new(1),
            compound_head: AtomicUsize::new(0),
        }
    }

    /// The whole flags word.
    #[inline]
    pub fn flags_word(&self) -> u64 {
        self.flags.load(Ordering::Relaxed)
    }

    /// The `PG_*` flags currently set.
    #[inline]
    pub fn flags(&self) -> PageFlags {
        PageFlags::from_bits_truncate(self.flags_word())
    }

    /// True if every flag in `f` is set.
    #[inline]
    pub fn test_flag(&self, f: PageFlags) -> bool {
        self.flags_word() & f.bits() == f.bits()
    }

    /// Atomically set the flags in `f` (`set_bit`).
    #[inline]
    pub fn set_flag(&self, f: PageFlags) {
        self.flags.fetch_or(f.bits(), Ordering::Relaxed);
    }

    /// Atomically clear the flags in `f` (`clear_bit`).
    #[inline]
    pub fn clear_flag(&self, f: PageFlags) {
        self.flags.fetch_and(!f.bits(), Ordering::Relaxed);
    }

    /// Atomically set `f`, returning whether all of it was already set (`test_and_set_bit`).
    #[inline]
    pub fn test_and_set_flag(&self, f: PageFlags) -> bool {
        self.flags.fetch_or(f.bits(), Ordering::AcqRel) & f.bits() == f.bits()
    }

    /// Atomically clear `f`, returning whether any of it was set (`test_and_clear_bit`).
    #[inline]
    pub fn test_and_clear_flag(&self, f: PageFlags) -> bool {
        self.flags.fetch_and(!f.bits(), Ordering::AcqRel) & f.bits() != 0
    }

    page_flag_accessors! {
        RESERVED: is_reserved, set_reserved, clear_reserved;
        BUDDY: is_buddy, set_buddy, clear_buddy;
        HEAD: is_head, set_head, clear_head;
        TAIL: is_tail, set_tail, clear_tail;
        LRU: is_lru, set_lru, clear_lru;
        ACTIVE: is_active, set_active, clear_active;
        SLAB: is_slab, set_slab, clear_slab;
        PRIVATE: is_private, set_private_flag, clear_private_flag;
        ISOLATED: is_isolated, set_isolated, clear_isolated;
        PGTABLE: is_pgtable, set_pgtable, clear_pgtable;
        OFFLINE: is_offline, set_offline, clear_offline;
        GUARD: is_guard, set_guard, clear_guard;
        HWPOISON: is_hwpoison, set_hwpoison, clear_hwpoison;
        DIRTY: is_dirty, set_dirty, clear_dirty;
        REFERENCED: is_referenced, set_referenced, clear_referenced;
        UPTODATE: is_uptodate, set_uptodate, clear_uptodate;
        WRITEBACK: is_writeback, set_writeback, clear_writeback;
    }

    /// `PageLocked`.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.test_flag(PageFlags::LOCKED)
    }

    /// Try to take the page lock (`trylock_page`): true if this call took it. Acquire
    /// ordering: what the previous holder wrote before `unlock` is visible.
    #[inline]
    pub fn trylock(&self) -> bool {
        self.flags
            .fetch_or(PageFlags::LOCKED.bits(), Ordering::Acquire)
            & PageFlags::LOCKED.bits()
            == 0
    }

    /// Release the page lock (`unlock_page`), with release ordering.
    #[inline]
    pub fn unlock(&self) {
        self.flags
            .fetch_and(!PageFlags::LOCKED.bits(), Ordering::Release);
    }

    /// The zone index stored in the flags (`page_zonenum`).
    #[inline]
    pub fn zone_idx(&self) -> usize {
        ((self.flags_word() >> ZONES_PGSHIFT) & ZONES_MASK) as usize
    }

    /// The zone type stored in the flags. Only a corrupted flags word can hold an index
    /// past the last zone; that reads as `None`.
    #[inline]
    pub fn zone_type(&self) -> Option<ZoneType> {
        ZoneType::from_index(self.zone_idx())
    }

    /// The node id stored in the flags (`page_to_nid`).
    #[inline]
    pub fn nid(&self) -> usize {
        ((self.flags_word() >> NODES_PGSHIFT) & NODES_MASK) as usize
    }

    /// The SPARSEMEM section number stored in the flags (`page_to_section`).
    #[inline]
    pub fn section_nr(&self) -> u64 {
        (self.flags_word() >> SECTIONS_PGSHIFT) & SECTIONS_MASK
    }

    /// The reference count (`page_ref_count`).
    #[inline]
    pub fn refcount(&self) -> i32 {
        self.refcount.load(Ordering::Relaxed)
    }

    /// Set the reference count (`set_page_count`).
    #[inline]
    pub fn set_refcount(&self, v: i32) {
        self.refcount.store(v, Ordering::Relaxed);
    }

    /// Take a reference (`page_ref_inc`).
    #[inline]
    pub fn ref_inc(&self) {
        self.refcount.fetch_add(1, Ordering::Relaxed);
    }

    /// Drop a reference; true if it was the last (`put_page_testzero`). Release on the
    /// decrement and acquire on reaching zero, so the freeing CPU sees every write made
    /// under the other references.
    #[inline]
    pub fn ref_dec_and_test(&self) -> bool {
        if self.refcount.fetch_sub(1, Ordering::Release) == 1 {
            core::sync::atomic::fence(Ordering::Acquire);
            true
        } else {
            false
        }
    }

    /// Take a reference unless the page is free (`get_page_unless_zero`).
    #[inline]
    pub fn get_unless_zero(&self) -> bool {
        let mut cur = self.refcount.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return false;
            }
            match self.refcount.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    /// Freeze the reference count (`page_ref_freeze`): if it is exactly `expected`, make it
    /// 0 and return true. While frozen, [`Page::get_unless_zero`] fails as for a free page,
    /// so nobody can take a new reference to a page whose contents and owner are being
    /// moved. Undo with [`Page::ref_unfreeze`].
    #[inline]
    pub fn ref_freeze(&self, expected: i32) -> bool {
        self.refcount
            .compare_exchange(expected, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// End a freeze (`page_ref_unfreeze`): the count becomes `count`, with release
    /// ordering so that what was written while frozen is visible to the next reference.
    #[inline]
    pub fn ref_unfreeze(&self, count: i32) {
        self.refcount.store(count, Ordering::Release);
    }

    /// Number of page-table mappings (`page_mapcount`: the stored value plus one).
    #[inline]
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Ordering::Relaxed) + 1
    }

    /// Set the number of page-table mappings.
    #[inline]
    pub fn set_mapcount(&self, n: i32) {
        self.mapcount.store(n - 1, Ordering::Relaxed);
    }

    /// Add a mapping; true if it is the first (`atomic_inc_and_test(&_mapcount)`).
    #[inline]
    pub fn mapcount_inc(&self) -> bool {
        self.mapcount.fetch_add(1, Ordering::Relaxed) == -1
    }

    /// Remove a mapping; true if it was the last.
    #[inline]
    pub fn mapcount_dec(&self) -> bool {
        self.mapcount.fetch_sub(1, Ordering::Relaxed) == 0
    }

    /// The `private` word (`page_private`).
    #[inline]
    pub fn private(&self) -> u64 {
        self.private.load(Ordering::Relaxed)
    }

    /// Set the `private` word (`set_page_private`).
    #[inline]
    pub fn set_private(&self, v: u64) {
        self.private.store(v, Ordering::Relaxed);
    }

    /// The buddy order of a free block head (`buddy_order`); meaningful only while
    /// [`Page::is_buddy`].
    #[inline]
    pub fn buddy_order(&self) -> u32 {
        self.private() as u32
    }

    /// The order field of the flags word (see the module documentation): the compound
    /// order in a compound page's first tail, the allocation order in an allocated block's
    /// head, 0 otherwise.
    #[inline]
    pub fn order_field(&self) -> u32 {
        Self::order_field_of(self.flags_word())
    }

    /// The order field of a flags word read earlier ([`Page::flags_word`]), so that a
    /// check reading flags and order sees one snapshot with one load.
    #[inline]
    pub const fn order_field_of(word: u64) -> u32 {
        ((word >> ORDER_PGSHIFT) & ORDER_MASK) as u32
    }

    /// Atomically replace the order field (values above 15 are truncated), leaving every
    /// other bit as it is even if another CPU changes flags concurrently.
    #[inline]
    pub fn set_order_field(&self, order: u32) {
        let bits = (order as u64 & ORDER_MASK) << ORDER_PGSHIFT;
        let mut old = self.flags.load(Ordering::Relaxed);
        loop {
            let new = (old & !(ORDER_MASK << ORDER_PGSHIFT)) | bits;
            if new == old {
                return;
            }
            match self
                .flags
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(cur) => old = cur,
            }
        }
    }

    /// Link the page to zone `zone` of its node (`set_page_zone`): memory hotplug moving an
    /// offline block into another zone as it onlines it. The other flags are kept.
    pub(crate) fn set_page_zone(&self, zone: ZoneType) {
        let mask = ZONES_MASK << ZONES_PGSHIFT;
        let links = (zone as u64 & ZONES_MASK) << ZONES_PGSHIFT;
        let mut old = self.flags.load(Ordering::Relaxed);
        while let Err(cur) = self.flags.compare_exchange_weak(
            old,
            (old & !mask) | links,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            old = cur;
        }
    }

    /// Replace the whole flags word with a plain store. Only for a page nobody else can
    /// reach: a free page under the lock of its list, or one just taken off a list before
    /// its refcount is published.
    #[inline]
    pub(crate) fn set_flags_word_exclusive(&self, word: u64) {
        self.flags.store(word, Ordering::Relaxed);
    }

    /// Set the order field with a plain store. Exclusive access as for
    /// [`Page::set_flags_word_exclusive`].
    #[inline]
    pub(crate) fn set_order_field_exclusive(&self, order: u32) {
        let w = self.flags.load(Ordering::Relaxed) & !(ORDER_MASK << ORDER_PGSHIFT);
        self.flags.store(
            w | ((order as u64 & ORDER_MASK) << ORDER_PGSHIFT),
            Ordering::Relaxed,
        );
    }

    /// Atomically clear the order field, returning its previous value.
    #[inline]
    pub fn take_order_field(&self) -> u32 {
        let old = self
            .flags
            .fetch_and(!(ORDER_MASK << ORDER_PGSHIFT), Ordering::AcqRel);
        ((old >> ORDER_PGSHIFT) & ORDER_MASK) as u32
    }

    /// Mark a free block head (`__SetPageBuddy` + `set_buddy_order`), recording the
    /// migratetype of the free list it goes on in `index`. Exclusive access as for
    /// [`Page::set_flags_word_exclusive`].
    #[inline]
    pub(crate) fn set_buddy_exclusive(&self, order: u32, list_mt: u8) {
        self.private.store(order as u64, Ordering::Relaxed);
        self.index.store(list_mt as u64, Ordering::Relaxed);
        let w = self.flags.load(Ordering::Relaxed);
        self.flags
            .store(w | PageFlags::BUDDY.bits(), Ordering::Relaxed);
    }

    /// Unmark a free block head (`__ClearPageBuddy` + `set_page_private(page, 0)`).
    /// Exclusive access as for [`Page::set_flags_word_exclusive`].
    #[inline]
    pub(crate) fn clear_buddy_exclusive(&self) {
        self.private.store(0, Ordering::Relaxed);
        self.index.store(0, Ordering::Relaxed);
        let w = self.flags.load(Ordering::Relaxed);
        self.flags
            .store(w & !PageFlags::BUDDY.bits(), Ordering::Relaxed);
    }

    /// The migratetype number recorded by [`Page::set_buddy_exclusive`] for a free block
    /// head: which free list of its order the block is on.
    #[inline]
    pub(crate) fn buddy_list_mt(&self) -> u8 {
        self.index() as u8
    }

    /// Publish a freshly allocated page: its reference count becomes 1 with release
    /// ordering, so a CPU that takes a speculative reference (`get_page_unless_zero`)
    /// sees every write the allocator made before (`set_page_refcounted`).
    #[inline]
    pub(crate) fn set_refcounted(&self) {
        self.refcount.store(1, Ordering::Release);
    }

    /// Drop a reference unless the count is already 0 or below; returns the count before
    /// the decrement, or `None` if it was not positive (a page that is already free: the
    /// count is left alone). The last reference is dropped with acquire-release ordering
    /// like [`Page::ref_dec_and_test`].
    #[inline]
    pub fn ref_dec_if_positive(&self) -> Option<i32> {
        let mut cur = self.refcount.load(Ordering::Relaxed);
        loop {
            if cur <= 0 {
                return None;
            }
            match self.refcount.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if cur == 1 {
                        core::sync::atomic::fence(Ordering::Acquire);
                    }
                    return Some(cur);
                }
                Err(v) => cur = v,
            }
        }
    }

    /// The raw `mapping` word, pointer and tag bits together.
    #[inline]
    pub fn mapping_raw(&self) -> usize {
        self.mapping.load(Ordering::Acquire)
    }

    /// The owner pointer with the tag bits masked off.
    #[inline]
    pub fn mapping(&self) -> *const () {
        (self.mapping_raw() & !PAGE_MAPPING_FLAGS) as *const ()
    }

    /// The tag bits of `mapping`.
    #[inline]
    pub fn mapping_flags(&self) -> usize {
        self.mapping_raw() & PAGE_MAPPING_FLAGS
    }

    /// Set the owner pointer and tag bits. The pointer must be at least 4-byte aligned so
    /// the tags have somewhere to live; a misaligned pointer has its low bits dropped.
    ///
    /// The tag [`PAGE_MAPPING_MOVABLE`] on its own (a `movable_operations` page) is only
    /// set by [`crate::movement::migrate::set_page_movable`], because migration calls through that
    /// pointer: here it is dropped, so a forged owner can never be called.
    #[inline]
    pub fn set_mapping(&self, owner: *const (), tags: usize) {
        let mut tags = tags & PAGE_MAPPING_FLAGS;
        if tags == PAGE_MAPPING_MOVABLE {
            tags = 0;
        }
        self.set_mapping_raw((owner as usize & !PAGE_MAPPING_FLAGS) | tags);
    }

    /// Store the whole `mapping` word, tags included, with release ordering.
    #[inline]
    pub(crate) fn set_mapping_raw(&self, word: usize) {
        self.mapping.store(word, Ordering::Release);
    }

    /// `PageAnon`: mapped anonymous memory.
    #[inline]
    pub fn is_anon(&self) -> bool {
        self.mapping_raw() & PAGE_MAPPING_ANON != 0
    }

    /// `__PageMovable`: a driver page with `movable_operations`.
    #[inline]
    pub fn is_movable_ops(&self) -> bool {
        self.mapping_flags() == PAGE_MAPPING_MOVABLE
    }

    /// The offset within the mapping (`page->index`).
    #[inline]
    pub fn index(&self) -> u64 {
        self.index.load(Ordering::Relaxed)
    }

    /// Set the offset within the mapping.
    #[inline]
    pub fn set_index(&self, v: u64) {
        self.index.store(v, Ordering::Relaxed);
    }

    /// The head page of the compound page this page belongs to (`compound_head`): `self`
    /// unless this is a tail page.
    #[inline]
    pub fn compound_head(&self) -> *const Page {
        let v = self.compound_head.load(Ordering::Acquire);
        if v & 1 != 0 {
            (v & !1) as *const Page
        } else {
            self as *const Page
        }
    }

    /// Make this a tail page of `head` (`set_compound_head` + `PG_tail`).
    #[inline]
    pub fn set_compound_head(&self, head: &Page) {
        self.compound_head
            .store(head as *const Page as usize | 1, Ordering::Release);
        self.set_tail();
    }

    /// [`Page::set_compound_head`] with plain stores, for a page nobody else can reach
    /// (being prepared for its first owner). Exclusive access as for
    /// [`Page::set_flags_word_exclusive`].
    #[inline]
    pub(crate) fn set_compound_head_exclusive(&self, head: &Page) {
        self.compound_head
            .store(head as *const Page as usize | 1, Ordering::Relaxed);
        let w = self.flags.load(Ordering::Relaxed);
        self.flags
            .store(w | PageFlags::TAIL.bits(), Ordering::Relaxed);
    }

    /// [`Page::clear_compound_head`] with plain stores, for a page whose last reference is
    /// gone. Exclusive access as for [`Page::set_flags_word_exclusive`].
    #[inline]
    pub(crate) fn clear_compound_head_exclusive(&self) {
        self.compound_head.store(0, Ordering::Relaxed);
        let w = self.flags.load(Ordering::Relaxed);
        self.flags
            .store(w & !PageFlags::TAIL.bits(), Ordering::Relaxed);
    }

    /// Make this page no longer a tail page (`clear_compound_head`).
    #[inline]
    pub fn clear_compound_head(&self) {
        self.compound_head.store(0, Ordering::Release);
        self.clear_tail();
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("flags", &self.flags())
            .field("zone", &self.zone_idx())
            .field("nid", &self.nid())
            .field("section", &self.section_nr())
            .field("refcount", &self.refcount())
            .field("mapcount", &self.mapcount())
            .field("private", &self.private())
            .field("mapping", &format_args!("{:#x}", self.mapping_raw()))
            .field("index", &self.index())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_flags_round_trip() {
        let p =
            Page::new(page_links(ZoneType::Dma32, 5, (1 << 19) - 1) | PageFlags::RESERVED.bits());
        assert_eq!(p.zone_type(), Some(ZoneType::Dma32));
        assert_eq!(p.nid(), 5);
        assert_eq!(p.section_nr(), (1 << 19) - 1);
        assert!(p.is_reserved());
        p.clear_reserved();
        assert!(!p.is_reserved());
        assert_eq!(p.zone_type(), Some(ZoneType::Dma32));
        assert!(p.trylock());
        assert!(!p.trylock());
        p.unlock();
        assert!(!p.is_locked());
        assert_eq!(p.refcount(), 1);
        p.ref_inc();
        assert!(!p.ref_freeze(1));
        assert!(p.ref_freeze(2));
        assert!(!p.get_unless_zero());
        p.ref_unfreeze(1);
        assert!(p.ref_dec_and_test());
        assert!(!p.get_unless_zero());
        assert_eq!(p.mapcount(), 0);
        assert!(p.mapcount_inc());
        assert!(!p.mapcount_inc());
        assert!(!p.mapcount_dec());
        assert!(p.mapcount_dec());
    }

    #[test]
    fn mapping_tags() {
        let p = Page::new(0);
        let owner = 0x1000usize as *const ();
        p.set_mapping_raw(owner as usize | PAGE_MAPPING_MOVABLE);
        assert_eq!(p.mapping(), owner);
        assert!(p.is_movable_ops());
        assert!(!p.is_anon());
        // Only migrate::set_page_movable may make a movable_operations page.
        p.set_mapping(owner, PAGE_MAPPING_MOVABLE);
        assert!(!p.is_movable_ops());
        assert_eq!(p.mapping_raw(), 0x1000);
        p.set_mapping(owner, PAGE_MAPPING_ANON);
        assert!(p.is_anon());
        assert!(!p.is_movable_ops());
    }

    #[test]
    fn compound_head_of_tail() {
        let head = Page::new(0);
        let tail = Page::new(0);
        assert_eq!(tail.compound_head(), &tail as *const Page);
        tail.set_compound_head(&head);
        assert!(tail.is_tail());
        assert_eq!(tail.compound_head(), &head as *const Page);
        tail.clear_compound_head();
        assert!(!tail.is_tail());
    }
}
