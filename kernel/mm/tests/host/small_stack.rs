//! Init and every public entry point run on a 32 KiB stack (issue 12: "No stack or lifetime
//! traps"). The work runs on a thread created with a 32 KiB stack; a stack overflow aborts
//! the test process, which fails the test. The stack high-water mark is measured by painting
//! the unused part of the stack and reading it back after the work, both through
//! `/proc/self/mem` (accesses made by the kernel, so no Rust object is read or written that
//! does not exist).

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::unix::fs::FileExt;

use zonebuddy::port::sim::SimPlatform;
use zonebuddy::{
    FirmwareRange, GFP_KERNEL, MAX_PAGE_ORDER, ModelParams, PAGE_SIZE, PageAllocator, RangeKind,
};

const RANGES: [FirmwareRange; 3] = [
    FirmwareRange::new(0x0010_0000, 0x0410_0000, RangeKind::Usable),
    FirmwareRange::new(0x0410_0000, 0x0420_0000, RangeKind::Reserved),
    FirmwareRange::new(0x0420_0000, 0x0820_0000, RangeKind::Usable),
];
const STACK: usize = 32 * 1024;
const PAINT: u8 = 0x5a;

/// The lowest address of the calling thread's stack (glibc reports it above the guard).
fn stack_low() -> usize {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut addr: *mut libc::c_void = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: `pthread_getattr_np` initialises `attr` for the calling thread;
    // `pthread_attr_getstack` only reads it, and it is destroyed once, after use.
    unsafe {
        assert_eq!(
            libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()),
            0
        );
        assert_eq!(
            libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size),
            0
        );
        libc::pthread_attr_destroy(attr.as_mut_ptr());
    }
    addr as usize
}

/// Fill the unused stack below the caller, `[low, caller's frame - 1 KiB)`, with `PAINT`.
/// The write goes through `/proc/self/mem`, so it is made by the kernel into memory that no
/// live Rust object occupies (below the stack pointer, past any red zone); whatever a later
/// frame finds there it treats as uninitialised anyway.
#[inline(never)]
fn paint(low: usize) {
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let high = sp - 1024;
    let mem = File::options()
        .write(true)
        .open("/proc/self/mem")
        .expect("open /proc/self/mem for writing");
    mem.write_all_at(&vec![PAINT; high - low], low as u64)
        .expect("paint the stack through /proc/self/mem");
}

/// The lowest address in `[low, high)` whose byte is no longer `PAINT`.
fn lowest_touched(low: usize, high: usize) -> usize {
    let mem = File::open("/proc/self/mem").expect("open /proc/self/mem");
    let mut buf = vec![0u8; high - low];
    mem.read_exact_at(&mut buf, low as u64)
        .expect("read the stack through /proc/self/mem");
    low + buf.iter().position(|&b| b != PAINT).unwrap_or(buf.len())
}

/// Build the model and the allocator and call every public entry point; returns the stack
/// bytes used below `entry` by init and by the rest.
fn work(platform: &SimPlatform, entry: usize, low: usize) -> (usize, usize) {
    platform.bind_current_thread(0);
    // Where the allocator lives: on the host a heap slot, in a kernel a static.
    let mut slot = Box::new(MaybeUninit::<PageAllocator<&SimPlatform>>::uninit());

    paint(low);
    let pages = PageAllocator::init_in(&mut slot, platform, RANGES, &[], &ModelParams::default())
        .expect("memory model and page allocator");
    let init_used = entry - lowest_touched(low, entry);

    paint(low);
    for order in [0, 3, 9, MAX_PAGE_ORDER] {
        let block = pages
            .alloc_pages(GFP_KERNEL, order)
            .expect("a free block of this order");
        let va = pages.page_address(block) as *mut u8;
        // SAFETY: the block at `va` (direct map) is ours until it is freed.
        unsafe { va.write_bytes(0xa5, (PAGE_SIZE as usize) << order) };
        pages.free_pages(block, order).expect("free");
    }
    pages.drain_all_pages();
    zonebuddy::report::debug::check(pages).expect("invariants");
    let mut text = String::new();
    pages.write_buddyinfo(&mut text).unwrap();
    pages.write_zoneinfo(&mut text).unwrap();
    pages.write_pagetypeinfo(&mut text).unwrap();
    assert!(text.contains("Node 0, zone   Normal") || text.contains("zone    DMA32"));
    let rest_used = entry - lowest_touched(low, entry);
    (init_used, rest_used)
}

#[test]
fn init_and_entry_points_fit_in_32k() {
    // The simulated machine is test scaffolding, not part of a port: set it up here. The
    // small-stack thread becomes its CPU 0 and does all of the allocator's work.
    let platform = SimPlatform::for_map(&RANGES, &[], 1).expect("simulated machine");
    let (init_used, rest_used) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("small-stack".into())
            .stack_size(STACK)
            .spawn_scoped(s, || {
                let marker = 0u8;
                let entry = std::hint::black_box(&marker) as *const u8 as usize;
                let low = stack_low();
                work(&platform, entry, low)
            })
            .expect("spawn")
            .join()
            .expect("the small-stack thread completed")
    });
    eprintln!(
        "small_stack: stack high-water below the thread's entry: init {init_used} bytes, \
         alloc/free/drain/check/reports {rest_used} bytes (thread stack {STACK} bytes)"
    );
    assert!(init_used < STACK && rest_used < STACK);
}
