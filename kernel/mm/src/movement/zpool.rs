//! A movable object store: the in-kernel user of `movable_operations` (Linux's closest
//! relative is zsmalloc).
//!
//! Kernel memory is normally unmovable: whoever allocated a page holds its physical (or
//! direct-map) address, so compaction must work around it, and a few such pages scattered
//! over memory are enough to keep every 2 MiB block fragmented. An object store can do
//! better, because its users never hold addresses: they hold *handles*, and the store
//! translates a handle to an address only for the duration of a [`ZPool::load`] or
//! [`ZPool::store`]. Its pages can therefore be allocated `__GFP_MOVABLE` and handed to
//! migration through [`MovableOperations`]: moving a page means copying it and rewriting
//! the handles that point into it, under the pool's lock.
//!
//! # Layout
//!
//! Objects are kept in size classes of 64 to 2048 bytes ([`ZPOOL_CLASS_SIZES`]); each pool
//! page holds slots of one class only. A slot starts with an 8-byte header naming the
//! handle that owns it (so migration can find the handles of a page without searching the
//! table), followed by the object. Per-page state lives in the page's own descriptor, which
//! the owner of a page may use: `private` is the bitmap of used slots (at most 64 slots a
//! page) and `index` holds the class and two list bits. Pages with a free slot are on
//! their class's partial list through `page.lru`; full pages and pages isolated for
//! migration are on no list.
//!
//! The handle table is a fixed array of `N` entries inside the pool (the crate has no
//! heap): `N` is the most objects the pool can hold at once. A handle carries the entry's
//! generation, so using a freed handle is an error, not an access to someone else's object.
//!
//! # Locks
//!
//! One spinlock (taken with interrupts off) protects the table, the partial lists, the
//! per-page state and every byte of object memory: loads, stores and the migration copy
//! all run under it, so a reader never sees a page half-copied. Migration calls in with
//! the page locks held, so the order is *page lock → pool lock*; the pool never waits for
//! a page lock while holding its own (it only `trylock`s, to free an empty page), and it
//! allocates and frees pages with its lock dropped (an allocation may compact, and
//! compaction may call back into this pool).
//!
//! # 'static
//!
//! A page's `mapping` points at a `&'static MovableOps`, which points at the pool, so the
//! operations that make pages movable ([`ZPool::store`]) need `&'static self`: in the
//! kernel the pool is a static (or leaked); host tests `Box::leak` it. A pool is never
//! torn down while it has pages; [`ZPool::shrink`] returns its empty pages.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::model::list::PageList;
use crate::model::mmzone::{PAGE_SHIFT, PAGE_SIZE};
use crate::model::page::Page;
use crate::movement::migrate::{MigrateError, MigrateMode, MovableOperations, MovableOps};
use crate::movement::migrate::{clear_page_movable, set_page_movable};
use crate::page_alloc::PageAllocator;
use crate::page_alloc::gfp::{GFP_KERNEL, Gfp};
use crate::port::platform::Platform;
use crate::port::sync::SpinLock;

/// The slot sizes of the size classes, header included.
pub const ZPOOL_CLASS_SIZES: [usize; 6] = [64, 128, 256, 512, 1024, 2048];
/// Bytes of each slot taken by its header.
pub const ZPOOL_HEADER: usize = 8;
/// The largest object a pool stores.
pub const ZPOOL_MAX_OBJECT: usize = ZPOOL_CLASS_SIZES[NR_CLASSES - 1] - ZPOOL_HEADER;
const NR_CLASSES: usize = ZPOOL_CLASS_SIZES.len();

// `page.index` of a pool page: class in the low byte, then the list bits.
const CLASS_MASK: u64 = 0xff;
/// On its class's partial list.
const ON_LIST: u64 = 1 << 8;
/// Taken off the lists by `isolate_page` (migration owns its `lru`).
const ISOLATED: u64 = 1 << 9;

const NO_HANDLE: u32 = u32::MAX;

/// A stored object's name. Valid from [`ZPool::store`] to [`ZPool::free`], across any
/// number of migrations of the page it lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZHandle {
    index: u32,
    generation: u32,
}

/// Why a pool operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZError {
    /// The object is larger than [`ZPOOL_MAX_OBJECT`].
    TooLarge(usize),
    /// Every handle of the table is in use.
    NoHandles,
    /// No page could be allocated.
    NoMemory,
    /// The handle was freed, or never made by this pool.
    BadHandle,
    /// The caller's buffer is shorter than the object (its length is given).
    BufferTooSmall(usize),
}

impl core::fmt::Display for ZError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ZError::TooLarge(n) => write!(f, "zpool: {n}-byte object is too large"),
            ZError::NoHandles => f.write_str("zpool: handle table full"),
            ZError::NoMemory => f.write_str("zpool: out of memory"),
            ZError::BadHandle => f.write_str("zpool: stale or foreign handle"),
            ZError::BufferTooSmall(n) => write!(f, "zpool: buffer too small for {n} bytes"),
        }
    }
}

/// Pool statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZPoolStats {
    /// Pages the pool holds.
    pub pages: u64,
    /// Objects stored.
    pub objects: u64,
    /// Pages moved by migration.
    pub migrated: u64,
}

#[derive(Clone, Copy)]
struct HandleEntry {
    /// Frame of the object, while live.
    pfn: u64,
    /// Slot in that frame.
    slot: u16,
    /// Object length.
    len: u16,
    generation: u32,
    live: bool,
    /// Next free entry, while free.
    next_free: u32,
}

const EMPTY_HANDLE: HandleEntry = HandleEntry {
    pfn: 0,
    slot: 0,
    len: 0,
    generation: 0,
    live: false,
    next_free: NO_HANDLE,
};

struct Inner<const N: usize> {
    handles: [HandleEntry; N],
    free_head: u32,
    /// Entries never used yet (`handles[next_unused..]`): the table needs no set-up pass.
    next_unused: u32,
    partial: [PageList; NR_CLASSES],
    stats: ZPoolStats,
}

/// A movable object store holding at most `N` objects. See the module documentation.
pub struct ZPool<'a, P: Platform + 'static, const N: usize> {
    alloc: &'a PageAllocator<P>,
    inner: SpinLock<Inner<N>>,
    ops_ready: AtomicBool,
    ops: UnsafeCell<Option<MovableOps>>,
}

// SAFETY: `ops` is written once, under the pool lock, before `ops_ready` is published with
// release ordering, and only read after an acquire of `ops_ready`; everything else is
// behind the spinlock or immutable.
unsafe impl<P: Platform + 'static, const N: usize> Sync for ZPool<'_, P, N> {}
// SAFETY: moving the pool moves plain data; its pages only point at it once it is
// `'static` (and so can no longer move).
unsafe impl<P: Platform + 'static, const N: usize> Send for ZPool<'_, P, N> {}

fn class_of(len: usize) -> Option<usize> {
    ZPOOL_CLASS_SIZES
        .iter()
        .position(|&size| size - ZPOOL_HEADER >= len)
}

fn slots_per_page(class: usize) -> u32 {
    (PAGE_SIZE as usize / ZPOOL_CLASS_SIZES[class]) as u32
}

fn full_mask(class: usize) -> u64 {
    let n = slots_per_page(class);
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

impl<'a, P: Platform + 'static, const N: usize> ZPool<'a, P, N> {
    /// An empty pool on `alloc`. It allocates nothing until the first store.
    pub const fn new(alloc: &'a PageAllocator<P>) -> Self {
        const { assert!(N > 0 && N < NO_HANDLE as usize, "ZPool: N out of range") };
        ZPool {
            alloc,
            inner: SpinLock::new(Inner {
                handles: [EMPTY_HANDLE; N],
                free_head: NO_HANDLE,
                next_unused: 0,
                partial: [const { PageList::new() }; NR_CLASSES],
                stats: ZPoolStats {
                    pages: 0,
                    objects: 0,
                    migrated: 0,
                },
            }),
            ops_ready: AtomicBool::new(false),
            ops: UnsafeCell::new(None),
        }
    }

    /// Pages, objects and migrations so far.
    pub fn stats(&self) -> ZPoolStats {
        self.inner.lock_irqsave(self.alloc.platform()).stats
    }

    /// Direct-map address of frame `pfn`.
    fn frame(&self, pfn: u64) -> *mut u8 {
        self.alloc.platform().phys_to_virt(pfn << PAGE_SHIFT)
    }

    /// The live entry of `h`.
    fn entry(inner: &mut Inner<N>, h: ZHandle) -> Result<&mut HandleEntry, ZError> {
        match inner.handles.get_mut(h.index as usize) {
            Some(e) if e.live && e.generation == h.generation => Ok(e),
            _ => Err(ZError::BadHandle),
        }
    }

    /// Copy the object named by `h` into `buf`; returns its length.
    pub fn load(&self, h: ZHandle, buf: &mut [u8]) -> Result<usize, ZError> {
        let mut inner = self.inner.lock_irqsave(self.alloc.platform());
        let e = *Self::entry(&mut inner, h)?;
        let len = e.len as usize;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(ZError::BufferTooSmall(len));
        };
        let class = self.page_class(e.pfn);
        let off = e.slot as usize * ZPOOL_CLASS_SIZES[class] + ZPOOL_HEADER;
        // SAFETY: the slot lies inside a page this pool owns (the handle is live), its
        // bytes are only touched under the pool lock, which we hold, and `dst` is the
        // caller's distinct buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(self.frame(e.pfn).add(off), dst.as_mut_ptr(), len)
        };
        Ok(len)
    }

    fn page_class(&self, pfn: u64) -> usize {
        let class = self
            .alloc
            .pfn_to_page(pfn)
            .map_or(0, |p| (p.index() & CLASS_MASK) as usize);
        class.min(NR_CLASSES - 1)
    }

    /// The pool's `&'static MovableOps`, made on first use.
    fn ops(&'static self) -> &'static MovableOps
    where
        Self: MovableOperations,
    {
        if !self.ops_ready.load(Ordering::Acquire) {
            let _g = self.inner.lock_irqsave(self.alloc.platform());
            if !self.ops_ready.load(Ordering::Relaxed) {
                // SAFETY: written once, under the lock, before publication (see the
                // `Sync` impl); no reader exists before `ops_ready` is set.
                unsafe { *self.ops.get() = Some(MovableOps(self)) };
                self.ops_ready.store(true, Ordering::Release);
            }
        }
        // SAFETY: published above or by an earlier call; never written again.
        match unsafe { &*self.ops.get() } {
            Some(ops) => ops,
            None => unreachable!("ops published before ops_ready"),
        }
    }

    /// Store a copy of `data` and return its handle (`zs_malloc` + `zs_obj_write`).
    pub fn store(&'static self, data: &[u8]) -> Result<ZHandle, ZError>
    where
        Self: MovableOperations,
    {
        let class = class_of(data.len()).ok_or(ZError::TooLarge(data.len()))?;
        loop {
            {
                let mut inner = self.inner.lock_irqsave(self.alloc.platform());
                if inner.free_head == NO_HANDLE && inner.next_unused as usize >= N {
                    return Err(ZError::NoHandles);
                }
                if let Some(first) = inner.partial[class].first() {
                    // SAFETY: pages on the partial lists are pool pages in the memmap.
                    let page = unsafe { first.as_ref() };
                    return Ok(self.store_in(&mut inner, page, class, data));
                }
            }
            // No room: add a page, with the lock dropped (allocating may compact, and
            // compaction may call back into this pool).
            self.grow(class)?;
        }
    }

    /// Allocate a page for `class` and put it on the partial list.
    fn grow(&'static self, class: usize) -> Result<(), ZError>
    where
        Self: MovableOperations,
    {
        let page = self
            .alloc
            .alloc_page(GFP_KERNEL | Gfp::MOVABLE)
            .ok_or(ZError::NoMemory)?;
        // Locked until it is on our list with its state, so that migration cannot
        // isolate a half-made pool page.
        if !page.trylock() {
            crate::movement::rmap::lock_page(page);
        }
        page.set_private(0);
        page.set_index(class as u64 | ON_LIST);
        set_page_movable(page, self.ops());
        {
            let mut inner = self.inner.lock_irqsave(self.alloc.platform());
            // SAFETY: a fresh page, on no list; the partial lists are under the lock.
            unsafe { inner.partial[class].push_back(page) };
            inner.stats.pages += 1;
        }
        page.unlock();
        Ok(())
    }

    /// Put `data` into a free slot of `page` (on the partial list of `class`).
    fn store_in(&self, inner: &mut Inner<N>, page: &Page, class: usize, data: &[u8]) -> ZHandle {
        let used = page.private();
        let slot = (!used).trailing_zeros();
        let index = if inner.free_head != NO_HANDLE {
            let i = inner.free_head;
            inner.free_head = inner.handles[i as usize].next_free;
            i
        } else {
            inner.next_unused += 1;
            inner.next_unused - 1
        };
        let pfn = self.alloc.page_to_pfn(page);
        let e = &mut inner.handles[index as usize];
        e.generation = e.generation.wrapping_add(1);
        *e = HandleEntry {
            pfn,
            slot: slot as u16,
            len: data.len() as u16,
            live: true,
            next_free: NO_HANDLE,
            ..*e
        };
        let generation = e.generation;
        let off = slot as usize * ZPOOL_CLASS_SIZES[class];
        // SAFETY: the slot is free and inside a page this pool owns; object memory is only
        // touched under the pool lock, which the caller holds; `data` is the caller's.
        unsafe {
            let at = self.frame(pfn).add(off);
            (at as *mut u64).write_unaligned(index as u64);
            core::ptr::copy_nonoverlapping(data.as_ptr(), at.add(ZPOOL_HEADER), data.len());
        }
        let used = used | 1 << slot;
        page.set_private(used);
        if used == full_mask(class) {
            // SAFETY: the page is on this class's partial list (ON_LIST); lock held.
            unsafe { inner.partial[class].remove(page) };
            page.set_index(page.index() & !ON_LIST);
        }
        inner.stats.objects += 1;
        ZHandle { index, generation }
    }

    /// Forget the object named by `h` (`zs_free`). A page left empty is given back to the
    /// allocator unless migration holds it.
    pub fn free(&self, h: ZHandle) -> Result<(), ZError> {
        let mut release = None;
        {
            let mut inner = self.inner.lock_irqsave(self.alloc.platform());
            let free_head = inner.free_head;
            let e = Self::entry(&mut inner, h)?;
            e.live = false;
            e.next_free = free_head;
            let (pfn, slot) = (e.pfn, e.slot);
            inner.free_head = h.index;
            inner.stats.objects -= 1;
            let Some(page) = self.alloc.pfn_to_page(pfn) else {
                return Ok(());
            };
            let class = (page.index() & CLASS_MASK) as usize;
            let used = page.private() & !(1u64 << slot);
            page.set_private(used);
            let state = page.index();
            if state & (ON_LIST | ISOLATED) == 0 {
                // Was full: has room again.
                // SAFETY: a full, non-isolated pool page is on no list; lock held.
                unsafe { inner.partial[class].push_back(page) };
                page.set_index(state | ON_LIST);
            }
            // Never wait for a page lock under the pool lock: if migration has this page
            // locked, the empty page stays and `shrink` or a later store deals with it.
            if used == 0 && page.index() & ON_LIST != 0 && page.trylock() {
                // SAFETY: ON_LIST: on this class's partial list; lock held.
                unsafe { inner.partial[class].remove(page) };
                page.set_index(0);
                clear_page_movable(page);
                inner.stats.pages -= 1;
                page.unlock();
                release = Some(page);
            }
        }
        if let Some(page) = release
            && let Err(bad) = self.alloc.put_page(page)
        {
            log::error!("zpool: freeing an empty page: {bad}");
        }
        Ok(())
    }

    /// Give every empty page that migration does not hold back to the allocator; returns
    /// how many.
    pub fn shrink(&self) -> u64 {
        let mut freed = 0;
        loop {
            let mut release = None;
            {
                let mut inner = self.inner.lock_irqsave(self.alloc.platform());
                'classes: for class in 0..NR_CLASSES {
                    // SAFETY: the partial lists are stable under the lock we hold.
                    let empty = unsafe { inner.partial[class].iter() }
                        // SAFETY: pages on the partial lists are pool pages in the memmap.
                        .map(|p| unsafe { p.as_ref() })
                        .find(|page| page.private() == 0 && page.trylock());
                    if let Some(page) = empty {
                        // SAFETY: on this list; lock held.
                        unsafe { inner.partial[class].remove(page) };
                        page.set_index(0);
                        clear_page_movable(page);
                        inner.stats.pages -= 1;
                        page.unlock();
                        release = Some(page);
                        break 'classes;
                    }
                }
            }
            let Some(page) = release else {
                return freed;
            };
            if let Err(bad) = self.alloc.put_page(page) {
                log::error!("zpool: freeing an empty page: {bad}");
            }
            freed += 1;
        }
    }
}

impl<P: Platform + 'static, const N: usize> MovableOperations for ZPool<'static, P, N> {
    fn isolate_page(&self, page: &Page, _mode: MigrateMode) -> bool {
        let mut inner = self.inner.lock_irqsave(self.alloc.platform());
        let state = page.index();
        if state & ISOLATED != 0 {
            return false;
        }
        if state & ON_LIST != 0 {
            let class = (state & CLASS_MASK) as usize;
            // SAFETY: ON_LIST: on this class's partial list; lock held.
            unsafe { inner.partial[class].remove(page) };
        }
        page.set_index((state & !ON_LIST) | ISOLATED);
        true
    }

    fn migrate_page(&self, dst: &Page, src: &Page, _mode: MigrateMode) -> Result<(), MigrateError> {
        let mut inner = self.inner.lock_irqsave(self.alloc.platform());
        let state = src.index();
        if state & ISOLATED == 0 {
            return Err(MigrateError::Busy);
        }
        let class = (state & CLASS_MASK) as usize;
        let (src_pfn, dst_pfn) = (self.alloc.page_to_pfn(src), self.alloc.page_to_pfn(dst));
        // SAFETY: both are whole frames: src is ours, dst is a fresh page handed to us
        // locked; object memory is only touched under the pool lock, which we hold.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.frame(src_pfn) as *const u8,
                self.frame(dst_pfn),
                PAGE_SIZE as usize,
            )
        };
        let used = src.private();
        let mut bits = used;
        while bits != 0 {
            let slot = bits.trailing_zeros();
            bits &= bits - 1;
            let off = slot as usize * ZPOOL_CLASS_SIZES[class];
            // SAFETY: a used slot's header, inside the frame we just wrote; lock held.
            let index = unsafe { (self.frame(dst_pfn).add(off) as *const u64).read_unaligned() };
            match inner.handles.get_mut(index as usize) {
                Some(e) if e.live && e.pfn == src_pfn && u32::from(e.slot) == slot => {
                    e.pfn = dst_pfn;
                }
                _ => log::error!("zpool: slot {slot} of pfn {src_pfn:#x} has a bad header"),
            }
        }
        dst.set_private(used);
        src.set_private(0);
        src.set_index(0);
        if used != full_mask(class) {
            // SAFETY: dst is fresh and on no list; lock held.
            unsafe { inner.partial[class].push_back(dst) };
            dst.set_index(class as u64 | ON_LIST);
        } else {
            dst.set_index(class as u64);
        }
        inner.stats.migrated += 1;
        // dst is left without an owner word: migration gives it src's, which is ours.
        Ok(())
    }

    fn putback_page(&self, page: &Page) {
        let mut inner = self.inner.lock_irqsave(self.alloc.platform());
        let state = page.index();
        if state & ISOLATED == 0 {
            return;
        }
        let class = (state & CLASS_MASK) as usize;
        if page.private() != full_mask(class) {
            // SAFETY: an isolated page is on none of our lists; lock held.
            unsafe { inner.partial[class].push_back(page) };
            page.set_index(class as u64 | ON_LIST);
        } else {
            page.set_index(class as u64);
        }
    }
}

impl core::error::Error for ZError {}
