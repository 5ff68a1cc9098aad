//! The kernel heap behind `alloc`.
//!
//! Boot code needs `Vec` and `String` before the page allocator exists (the firmware map
//! must be sorted and printed, the MADT parsed), so the heap starts as a static region
//! inside the kernel image. Once the buddy allocator is up, the heap grows from it:
//!
//! - Requests of a page or more (with at most page alignment) go straight to the page
//!   allocator as one block of the smallest order that fits, like Linux's `kmalloc_large`;
//!   freeing them returns the block. There is no point carving pages out of a list heap.
//!   When no such block exists (the order is above `MAX_PAGE_ORDER`, 4 MiB, or memory is
//!   too fragmented), the request falls back to [`crate::vmalloc`], as Linux's `kvmalloc`
//!   does: scattered pages mapped contiguously. Freeing and reallocating recognise those
//!   addresses by their range.
//! - Smaller requests are served from a set of linked-list heap regions; when none can
//!   serve a request, a new region of [`GROW_ORDER`] pages is taken from the page allocator.
//!
//! Regions are never returned (a simple, bounded choice: small objects are few and
//! long-lived in this kernel).
//!
//! So the heap registers no reclaim shrinker: it keeps no cache of spare pages to give
//! back (whole-page requests return their block to the page allocator on free, and a
//! region, once grown, stays in use by the small objects inside it). A heap that kept free
//! regions would register one (`PageAllocator::register_shrinker`, count = free regions'
//! pages, scan = return them). The heap takes one lock with interrupts disabled; nothing in
//! the page allocator allocates from the heap, so growing while holding it cannot recurse.

use core::{
    alloc::{GlobalAlloc, Layout},
    ptr::NonNull,
};

use linked_list_allocator::Heap;
use spin::Mutex;

/// Bytes in the static boot region.
pub const BOOT_HEAP_SIZE: usize = 4 << 20;
/// Order of the page blocks a growing heap takes (2^6 pages, 256 KiB).
pub const GROW_ORDER: u32 = 6;
/// At most this many regions (boot region included).
const MAX_REGIONS: usize = 128;
const PAGE: usize = 4096;

#[repr(align(4096))]
struct HeapArea([u8; BOOT_HEAP_SIZE]);

static mut BOOT_HEAP: HeapArea = HeapArea([0; BOOT_HEAP_SIZE]);

/// Where pages come from once the page allocator runs: allocate `2^order` contiguous pages
/// and return their direct-map address, or free them.
#[derive(Clone, Copy)]
pub struct PageSource {
    /// Allocate a zero-initialised-or-not block of `2^order` pages. `may_wait` is false
    /// when the caller runs with interrupts disabled or holds the heap lock: the page
    /// allocator must then not compact (compaction migrates pages, which needs TLB
    /// shootdowns answered by other CPUs, with interrupts enabled here).
    pub alloc: fn(order: u32, may_wait: bool) -> Option<usize>,
    /// Free a block returned by `alloc`.
    pub free: fn(addr: usize, order: u32),
}

struct Regions {
    heaps: [Heap; MAX_REGIONS],
    /// `[start, end)` of each region, for finding the owner on dealloc.
    spans: [(usize, usize); MAX_REGIONS],
    len: usize,
    source: Option<PageSource>,
    /// Bytes handed out as whole page blocks.
    large_bytes: usize,
    /// Bytes of regions taken from the page allocator (never returned).
    grown_bytes: usize,
}

impl Regions {
    fn region_of(&self, ptr: usize) -> Option<usize> {
        self.spans[..self.len]
            .iter()
            .position(|&(s, e)| ptr >= s && ptr < e)
    }

    fn try_small(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.heaps[..self.len]
            .iter_mut()
            .find_map(|h| h.allocate_first_fit(layout).ok())
    }

    fn grow(&mut self, layout: Layout) -> bool {
        let Some(source) = self.source else {
            return false;
        };
        if self.len == MAX_REGIONS {
            return false;
        }
        let need = layout.size() + layout.align();
        let mut order = GROW_ORDER;
        while (PAGE << order) < need {
            order += 1;
        }
        let Some(addr) = (source.alloc)(order, false) else {
            return false;
        };
        let size = PAGE << order;
        // SAFETY: the page allocator just gave us `size` bytes at `addr` (direct map) that
        // nothing else references; the region is owned by the heap from now on.
        unsafe { self.heaps[self.len].init(addr as *mut u8, size) };
        self.spans[self.len] = (addr, addr + size);
        self.len += 1;
        self.grown_bytes += size;
        true
    }
}

/// The global allocator.
pub struct KernelHeap(Mutex<Regions>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Regions {
    heaps: [const { Heap::empty() }; MAX_REGIONS],
    spans: [(0, 0); MAX_REGIONS],
    len: 0,
    source: None,
    large_bytes: 0,
    grown_bytes: 0,
}));

fn large_order(layout: Layout) -> Option<u32> {
    (layout.size() >= PAGE && layout.align() <= PAGE).then(|| {
        layout
            .size()
            .div_ceil(PAGE)
            .next_power_of_two()
            .trailing_zeros()
    })
}

// SAFETY: allocations come from disjoint heap regions or from the page allocator; every
// pointer returned is valid for `layout`, and dealloc returns memory to where it came from
// (the region containing it, or the page allocator for large blocks outside all regions).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Large blocks come straight from the page allocator, outside the heap lock and
        // with the caller's interrupt state, so a high-order request may compact.
        let may_wait = x86_64::instructions::interrupts::are_enabled();
        let source = x86_64::instructions::interrupts::without_interrupts(|| self.0.lock().source);
        if let (Some(order), Some(source)) = (large_order(layout), source) {
            if order <= zonebuddy::model::mmzone::MAX_PAGE_ORDER
                && let Some(addr) = (source.alloc)(order, may_wait)
            {
                x86_64::instructions::interrupts::without_interrupts(|| {
                    self.0.lock().large_bytes += PAGE << order;
                });
                return addr as *mut u8;
            }
            // Too large for one buddy block, or no block free: scattered pages.
            if let Some(p) = crate::vmalloc::vmalloc(layout.size()) {
                return p;
            }
            return core::ptr::null_mut();
        }
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut r = self.0.lock();
            if let Some(p) = r.try_small(layout) {
                return p.as_ptr();
            }
            if r.grow(layout)
                && let Some(p) = r.try_small(layout)
            {
                return p.as_ptr();
            }
            core::ptr::null_mut()
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if crate::vmalloc::is_vmalloc_addr(ptr as u64) {
            if let Err(e) = crate::vmalloc::vfree(ptr) {
                log::error!("heap: {e}");
            }
            return;
        }
        let _ = x86_64::instructions::interrupts::without_interrupts(|| {
            let mut r = self.0.lock();
            let addr = ptr as usize;
            match r.region_of(addr) {
                Some(i) => {
                    // SAFETY: `ptr` came from this region's heap with this layout (the
                    // GlobalAlloc contract), so handing it back is sound.
                    unsafe { r.heaps[i].deallocate(NonNull::new_unchecked(ptr), layout) };
                }
                None => {
                    // Outside every region: a large block straight from the page allocator
                    // (freed after the heap lock is dropped).
                    if let (Some(order), Some(source)) = (large_order(layout), r.source) {
                        r.large_bytes -= PAGE << order;
                        return Some((source, order));
                    }
                }
            }
            None
        })
        .map(|(source, order)| (source.free)(ptr as usize, order));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A vmalloc area that already maps enough pages, and would not be mostly wasted,
        // keeps its place (a growing Vec over 4 MiB would otherwise copy at every step).
        if crate::vmalloc::is_vmalloc_addr(ptr as u64)
            && let Some(mapped) = crate::vmalloc::area_size(ptr as u64)
            && new_size as u64 <= mapped
            && new_size as u64 > mapped / 2
        {
            return ptr;
        }
        // SAFETY: the caller's contract (GlobalAlloc::realloc) makes `layout` with
        // `new_size` a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (realloc's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and are
            // distinct allocations; `ptr` came from this allocator with `layout`.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Hand the static boot region to the heap. Call once, before any allocation.
pub fn init() {
    let mut r = HEAP.0.lock();
    // SAFETY: BOOT_HEAP is used for nothing else; this runs once on the boot CPU, so the
    // region is handed to the heap exactly once and is valid for 'static.
    let start = unsafe { core::ptr::addr_of_mut!(BOOT_HEAP.0) as *mut u8 };
    // SAFETY: as above.
    unsafe { r.heaps[0].init(start, BOOT_HEAP_SIZE) };
    r.spans[0] = (start as usize, start as usize + BOOT_HEAP_SIZE);
    r.len = 1;
}

/// Let the heap grow from the page allocator from now on.
pub fn set_page_source(source: PageSource) {
    x86_64::instructions::interrupts::without_interrupts(|| HEAP.0.lock().source = Some(source));
}

/// Heap usage figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Bytes in use in the list regions.
    pub used: usize,
    /// Bytes free in the list regions.
    pub free: usize,
    /// Number of regions (the boot region included).
    pub regions: usize,
    /// Bytes handed out as whole page blocks.
    pub large: usize,
    /// Bytes of heap regions taken from the page allocator.
    pub grown: usize,
    /// Bytes in vmalloc areas (heap fallbacks and direct `vmalloc` users).
    pub vmalloc: usize,
}

/// Current usage.
pub fn usage() -> Usage {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let r = HEAP.0.lock();
        let (mut used, mut free) = (0, 0);
        for h in &r.heaps[..r.len] {
            used += h.used();
            free += h.free();
        }
        Usage {
            used,
            free,
            regions: r.len,
            large: r.large_bytes,
            grown: r.grown_bytes,
            vmalloc: crate::vmalloc::usage().used_bytes as usize,
        }
    })
}
