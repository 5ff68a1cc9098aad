//! What a port must give the allocator: stack and memory, measured on the host simulation.
//!
//! docs/PORTING.md quotes the figures this test prints. Run it with
//! `cargo test -p zonebuddy --test host port_stack -- --nocapture` (test profile) and with
//! `--release` added (release profile).
//!
//! # How the stack is measured
//!
//! On a thread with a generous stack, the stack below the current stack pointer is painted
//! with a pattern; a phase (memory model + allocator start, or a round of allocations and
//! frees) then runs below that point, and afterwards the lowest word that no longer holds
//! the pattern is the phase's high-water mark. This counts bytes *written*: a frame's bytes
//! that were reserved but never written (stack probes only read-modify-write one word per
//! page) are not seen, so the figures are a lower bound, good to within a few hundred
//! bytes of the deepest frame. The bound test then runs the whole port on a thread of
//! [`STACK_BOUND`] bytes: an overflow there hits the guard page and aborts the test
//! binary, so that test passing is the proof.

use std::hint::black_box;
use std::mem::size_of;

use zonebuddy::port::sim::{SimPlatform, qemu_e820};
use zonebuddy::{
    FirmwareRange, GFP_KERNEL, Gfp, InitError, MemoryModel, ModelParams, PAGE_SIZE, PageAllocator,
    ZoneType,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Stack of the thread the measurements run on: far more than any phase needs.
const MEASURE_STACK: usize = 8 << 20;
/// Bytes painted below a phase's starting point (must stay inside [`MEASURE_STACK`]).
const PAINT_DEPTH: usize = 4 << 20;
/// Room left unpainted right below the painter's own frame, for the frames of the
/// measuring functions themselves.
const GAP: usize = 4096;
const PATTERN: u64 = 0x5a17_c0de_5a17_c0de;

/// The smallest power-of-two stack, with at least an eighth to spare over the measured
/// need in the test profile (opt-level 2 with debug assertions in this workspace), on
/// which the whole port runs: init with the allocator held by value, then allocations and
/// frees. The release profile needs less (it passes 128 KiB, but with almost nothing to
/// spare), so the same bound is asserted in both. Issue 12 asks for 32 KiB, which cannot
/// be met while `MemoryModel` (~14 KiB) and `PageAllocator` (~31 KiB) are returned by
/// value and built through several temporaries.
const STACK_BOUND: usize = 256 << 10;

/// An address inside the caller's next frame: a stand-in for the stack pointer.
#[inline(never)]
fn stack_pointer() -> usize {
    let marker = 0u8;
    black_box(&marker) as *const u8 as usize
}

/// Paint `[top - PAINT_DEPTH, top)` with [`PATTERN`], `top` lying [`GAP`] bytes below the
/// stack pointer; returns `top`.
#[inline(never)]
fn paint() -> usize {
    let top = (stack_pointer() - GAP) & !7;
    let bottom = top - PAINT_DEPTH;
    let mut a = bottom;
    while a < top {
        // SAFETY: `[bottom, top)` lies below every live frame of this thread (below this
        // function's callee's frame, minus GAP) and above the thread's guard page: the
        // thread was spawned with MEASURE_STACK bytes and this runs in its first few KiB,
        // while PAINT_DEPTH + GAP is far less than MEASURE_STACK. Nothing lives there, so
        // writing it cannot clobber any object; the writes are volatile so that they are
        // not removed as dead stores.
        unsafe { (a as *mut u64).write_volatile(PATTERN) };
        a += 8;
    }
    top
}

/// The lowest address in `[bottom, top)` whose word no longer holds [`PATTERN`] (`top` if
/// none did).
#[inline(never)]
fn lowest_written(bottom: usize, top: usize) -> usize {
    let mut a = bottom;
    while a < top {
        // SAFETY: the same range `paint` wrote, still inside this thread's stack mapping and
        // below every live frame (this function's frame is smaller than GAP); reading it is
        // a plain load of initialised memory.
        if unsafe { (a as *const u64).read_volatile() } != PATTERN {
            return a;
        }
        a += 8;
    }
    top
}

/// Run `phase` below a painted stack and return the bytes of stack it used (from the
/// stack pointer at the call to its deepest written word).
#[inline(never)]
fn stack_used(phase: &mut dyn FnMut()) -> usize {
    let top = paint();
    let bottom = top - PAINT_DEPTH;
    // Hidden from the optimiser, so the phase cannot be inlined into this frame (whose
    // size was fixed before the paint).
    let phase = black_box(phase);
    let base = stack_pointer();
    phase();
    let low = lowest_written(bottom, top);
    assert!(
        low > bottom,
        "the phase used all {PAINT_DEPTH} painted bytes"
    );
    base - low
}

/// The 64 MiB machine of the README's example, as a QEMU-like BIOS map.
fn small_map() -> Vec<FirmwareRange> {
    qemu_e820(64 * MIB)
}

/// Build the model and start the allocator, the way a port's init function does.
fn bring_up<'p>(
    platform: &'p SimPlatform,
    ranges: &[FirmwareRange],
) -> Result<PageAllocator<&'p SimPlatform>, InitError> {
    let model = MemoryModel::init(platform, ranges, &[], &ModelParams::default())?;
    Ok(PageAllocator::new(model, platform)?)
}

/// What a port does with the allocator once it runs: orders 0, 3 and 9, written through
/// the direct map, freed, drained, checked and reported.
fn exercise(pages: &PageAllocator<&SimPlatform>) {
    for order in [0u32, 3, 9] {
        let block = pages
            .alloc_pages(GFP_KERNEL | Gfp::ZERO, order)
            .unwrap_or_else(|| panic!("order {order}: out of memory"));
        let va = pages.page_address(block) as *mut u8;
        // SAFETY: the 2^order pages at `va` (direct map) are ours until freed below.
        unsafe { va.write_bytes(0xa5, (PAGE_SIZE << order) as usize) };
        pages.free_pages(block, order).expect("free");
    }
    pages.drain_all_pages();
    zonebuddy::report::debug::check(pages).expect("invariants");
    let mut text = String::new();
    pages.write_buddyinfo(&mut text).expect("buddyinfo");
    assert!(text.starts_with("Node 0, zone      DMA"), "{text}");
}

/// Run `f` on a thread with a [`MEASURE_STACK`] stack, bound as CPU 0 of `platform`.
fn on_measuring_thread<R: Send>(platform: &SimPlatform, f: impl FnOnce() -> R + Send) -> R {
    let r = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(MEASURE_STACK)
            .spawn_scoped(s, || {
                platform.bind_current_thread(0);
                f()
            })
            .expect("spawn")
            .join()
            .expect("measuring thread")
    });
    platform.bind_current_thread(0);
    r
}

#[test]
fn stack_high_water_marks() {
    let ranges = small_map();
    let profile = if cfg!(debug_assertions) {
        "test"
    } else {
        "release"
    };
    // The two start-up calls one by one, then a round of use.
    let platform = SimPlatform::for_map(&ranges, &[], 1).expect("sim");
    let (model_init, alloc_new, alloc_free) = on_measuring_thread(&platform, || {
        let mut model = None;
        let model_init = stack_used(&mut || {
            model = Some(
                MemoryModel::init(&platform, &ranges, &[], &ModelParams::default()).expect("model"),
            );
        });
        let mut model = model.take();
        let mut pages = None;
        let alloc_new = stack_used(&mut || {
            pages =
                Some(PageAllocator::new(model.take().expect("model"), &platform).expect("start"));
        });
        let pages = pages.take().expect("allocator");
        let alloc_free = stack_used(&mut || exercise(&pages));
        (model_init, alloc_new, alloc_free)
    });
    drop(platform);
    // Both in one function returning the allocator, as a port's init function does.
    let platform = SimPlatform::for_map(&ranges, &[], 1).expect("sim");
    let init = on_measuring_thread(&platform, || {
        let mut pages = None;
        let init =
            stack_used(&mut || pages = Some(bring_up(&platform, &ranges).expect("bring up")));
        let _ = pages;
        init
    });
    let model = size_of::<MemoryModel>();
    let alloc = size_of::<PageAllocator<&SimPlatform>>();
    println!("port_stack ({profile} profile):");
    println!("  size_of::<MemoryModel>()                       {model:>7} bytes");
    println!("  size_of::<PageAllocator<&SimPlatform>>()       {alloc:>7} bytes");
    println!("  stack high-water, MemoryModel::init             {model_init:>7} bytes");
    println!("  stack high-water, PageAllocator::new            {alloc_new:>7} bytes");
    println!("  stack high-water, init fn (both, returns alloc) {init:>7} bytes");
    println!(
        "  stack high-water, alloc/free orders 0,3,9 + drain + check + buddyinfo {alloc_free:>7} bytes"
    );
    // The objects returned by value are on the stack at least once while init runs.
    assert!(
        init >= alloc,
        "init used {init} bytes, less than the allocator's own size"
    );
    // What a thread that brings the allocator up and then uses it needs: the init
    // figure already holds the allocator in the phase's frame (the returned value); use
    // then runs below the held allocator.
    let need = init.max(alloc + alloc_free);
    println!(
        "  whole port (deeper of init and held + use)     {need:>7} bytes; bound {} KiB ({}% to spare)",
        STACK_BOUND >> 10,
        (STACK_BOUND - need.min(STACK_BOUND)) * 100 / STACK_BOUND
    );
    assert!(
        need * 9 / 8 <= STACK_BOUND,
        "measured {need} bytes: STACK_BOUND ({STACK_BOUND}) has less than an eighth to spare"
    );
}

#[test]
fn whole_port_runs_on_a_bounded_stack() {
    let ranges = small_map();
    let platform = SimPlatform::for_map(&ranges, &[], 1).expect("sim");
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(STACK_BOUND)
            .spawn_scoped(s, || {
                platform.bind_current_thread(0);
                // Held by value in this frame, as a port's init function would hold it
                // before moving it into a static.
                let pages = bring_up(&platform, &ranges).expect("bring up");
                exercise(&pages);
            })
            .expect("spawn")
            .join()
            .expect("a thread with a STACK_BOUND stack ran the whole port");
    });
    platform.bind_current_thread(0);
}

/// Metadata the allocator takes from the RAM it manages, for `ram` bytes and `cpus` CPUs:
/// (RAM present, memory-model metadata, per-CPU and other start-up areas), in bytes.
fn overhead(ram: u64, cpus: usize) -> (u64, u64, u64) {
    let ranges = qemu_e820(ram);
    let platform = SimPlatform::for_map(&ranges, &[], cpus).expect("sim");
    let model = MemoryModel::init(&platform, &ranges, &[], &ModelParams::default()).expect("model");
    let (present, metadata, handoff) = (
        model.ram_bytes(),
        model.metadata_bytes(),
        model.handoff_pages(),
    );
    let pages = PageAllocator::new(model, &platform).expect("allocator");
    let started = (handoff - pages.model().handoff_pages()) * PAGE_SIZE;
    for zt in [ZoneType::Dma, ZoneType::Dma32, ZoneType::Normal] {
        if let Some((high, batch)) = pages.with_pcp(0, 0, zt, |l| (l.high, l.batch)) {
            println!(
                "    {} MiB, {cpus} CPU(s), zone {zt:?}: pcp high {high} batch {batch} (pages)",
                ram / MIB
            );
        }
    }
    let _ = pages;
    (present, metadata, started)
}

#[test]
fn memory_needs() {
    println!(
        "memory needs (struct page is {} bytes):",
        size_of::<zonebuddy::Page>()
    );
    assert_eq!(size_of::<zonebuddy::Page>(), 64);
    for (ram, cpus) in [(GIB, 1), (GIB, 4), (GIB, 64), (4 * GIB, 1)] {
        let (present, metadata, started) = overhead(ram, cpus);
        let pct = metadata as f64 * 100.0 / present as f64;
        println!(
            "  {:>4} MiB RAM present, {cpus} CPU(s): memory model {metadata} bytes \
             ({pct:.3}% of RAM, {:.2} MiB per GiB); per-CPU and start-up areas {started} bytes",
            present / MIB,
            metadata as f64 / (present as f64 / GIB as f64) / MIB as f64,
        );
        assert!(pct <= 1.6, "metadata {pct:.3}% of RAM");
    }
}
