//! The kernel heap behind `alloc`.
//!
//! Boot code needs `Vec` and `String` before the page allocator exists (the memory model is
//! built from a firmware map the kernel has to sort and print first), so the heap starts as
//! a static region inside the kernel image. The buddy allocator feeds it real pages later.

use linked_list_allocator::LockedHeap;

/// Bytes in the boot heap.
pub const BOOT_HEAP_SIZE: usize = 4 << 20;

#[repr(align(4096))]
struct HeapArea([u8; BOOT_HEAP_SIZE]);

static mut BOOT_HEAP: HeapArea = HeapArea([0; BOOT_HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hand the static boot region to the allocator. Call once, before any allocation.
pub fn init() {
    // SAFETY: BOOT_HEAP is used for nothing else; this runs once on the boot CPU, so the
    // region is handed to the allocator exactly once and is valid for 'static.
    unsafe {
        let start = core::ptr::addr_of_mut!(BOOT_HEAP.0) as *mut u8;
        ALLOCATOR.lock().init(start, BOOT_HEAP_SIZE);
    }
}

/// (used, free) bytes in the heap.
pub fn usage() -> (usize, usize) {
    let heap = ALLOCATOR.lock();
    (heap.used(), heap.free())
}
