//! Building the memory model and the page allocator from what the bootloader reported.
//!
//! This is the only place where bootloader_api's region kinds meet `mm`'s: BIOS regions
//! carry E820 type numbers, UEFI regions carry UEFI memory types (the bootloader has already
//! folded conventional and boot-services memory into `Usable`), and `Bootloader` regions are
//! RAM holding the kernel, its page tables and the boot information. The allocator is built
//! once, in place in a static slot (`PageAllocator::init_in`, the crate's front door, as
//! the example kernel in kernel/mm/examples does), lives for the rest of the kernel's life,
//! and immediately becomes the source of the kernel heap's growth and of new page-table
//! pages.

use alloc::vec::Vec;
use core::{cell::UnsafeCell, mem::MaybeUninit};

use spin::Once;
use x86_64::{PhysAddr, structures::paging::PhysFrame};
use zonebuddy::{
    FirmwareRange, GFP_ATOMIC, GFP_KERNEL, Gfp, MemoryModel, ModelParams, PageAllocator,
    model::mmzone::{MIGRATE_TYPES, PAGEBLOCK_NR_PAGES},
    model::pageblock::get_pageblock_migratetype,
};

use crate::{
    arch::paging::FrameSource,
    boot_info, cmdline,
    heap::{self, PageSource},
    platform::{KernelPlatform, PLATFORM},
};

/// Where the memory model and the allocator are built, in place (they are tens of KiB:
/// never on the boot stack).
struct AllocatorSlot(UnsafeCell<MaybeUninit<PageAllocator<KernelPlatform>>>);

// SAFETY: the slot is written only inside `ALLOCATOR.call_once`, which runs its closure
// once, on one CPU, before any reference to the allocator exists; afterwards it is only
// read, through the shared reference `ALLOCATOR` holds.
unsafe impl Sync for AllocatorSlot {}

static SLOT: AllocatorSlot = AllocatorSlot(UnsafeCell::new(MaybeUninit::uninit()));

static ALLOCATOR: Once<&'static PageAllocator<KernelPlatform>> = Once::new();

/// Pageblocks of each migratetype when the memory model was complete, before the page
/// allocator took over (and started claiming blocks for other types).
pub static INITIAL_PAGEBLOCKS: Once<[u64; MIGRATE_TYPES]> = Once::new();

fn record_initial_pageblocks(model: &MemoryModel) {
    let mut counts = [0u64; MIGRATE_TYPES];
    for z in model.nodes().flat_map(|n| n.populated_zones()) {
        let mut pfn = z.zone_start_pfn() & !(PAGEBLOCK_NR_PAGES - 1);
        while pfn < z.zone_end_pfn() {
            if let Ok(mt) = get_pageblock_migratetype(model.sparse(), pfn) {
                counts[mt.index()] += 1;
            }
            pfn += PAGEBLOCK_NR_PAGES;
        }
    }
    INITIAL_PAGEBLOCKS.call_once(|| counts);
}

/// zonebuddy's kind for a bootloader region kind (BIOS and UEFI numberings).
pub use zonebuddy::bootloader::range_kind;

/// The firmware map in `mm`'s terms.
pub fn firmware_ranges() -> Vec<FirmwareRange> {
    boot_info::facts()
        .regions
        .iter()
        .map(|r| FirmwareRange {
            start: r.start,
            end: r.end,
            kind: range_kind(r.kind),
        })
        .collect()
}

fn heap_alloc(order: u32, may_wait: bool) -> Option<usize> {
    let gfp = if may_wait { GFP_KERNEL } else { GFP_ATOMIC };
    allocator()
        .get_free_pages(gfp | Gfp::NOWARN, order)
        .map(|a| a as usize)
}

fn heap_free(addr: usize, order: u32) {
    if let Err(e) = allocator().free_pages_virt(addr as u64, order) {
        log::error!("heap: returning {addr:#x} (order {order}) to the page allocator failed: {e}");
    }
}

/// Build the memory model and the page allocator (once), print the boot report, and let
/// the heap grow from the allocator. A map the model rejects is fatal: there is no memory
/// to run on.
pub fn init() -> &'static PageAllocator<KernelPlatform> {
    let a = *ALLOCATOR.call_once(|| {
        let ranges = firmware_ranges();
        let facts = boot_info::facts();
        let kernel = (facts.kernel.0, facts.kernel.0 + facts.kernel.1);
        let mut params = ModelParams {
            // The application processors start in real mode from a page below 1 MiB.
            reserve_trampoline: true,
            // Memmaps at the top of the node (the crate's default, Linux's boot-time
            // placement), so no 2 MiB memmap interrupts every 128 MiB section and a
            // 1 GiB range can be allocated whole on a large machine.
            ..ModelParams::default()
        };
        let numa = crate::arch::numa::info();
        params.numa = &numa.ranges;
        params.numa_distance = &numa.distances;
        params.parse_cmdline(cmdline::get().raw());
        // SAFETY: `call_once` runs this closure once, so this is the only reference to
        // the slot ever made mutable; nothing reads it before the closure returns.
        let slot = unsafe { &mut *SLOT.0.get() };
        let a = match PageAllocator::init_in(slot, PLATFORM, &ranges, &[kernel], &params) {
            Ok(a) => a,
            Err(e) => crate::crash::die(format_args!("memory model and page allocator: {e}")),
        };
        // Reported once the allocator runs: starting it only handed free memory to the
        // buddy lists; nothing was allocated and no pageblock was repainted yet.
        kprint!("{}", a.model().boot_report());
        record_initial_pageblocks(a.model());
        a
    });
    heap::set_page_source(PageSource {
        alloc: heap_alloc,
        free: heap_free,
    });
    a
}

/// The page allocator. Panics if called before [`init`], which kmain runs before any user.
pub fn allocator() -> &'static PageAllocator<KernelPlatform> {
    ALLOCATOR.get().expect("memory::init runs during boot")
}

/// The page allocator, if it exists yet.
pub fn try_allocator() -> Option<&'static PageAllocator<KernelPlatform>> {
    ALLOCATOR.get().copied()
}

/// Page-table pages from the buddy allocator (zeroed, unmovable kernel memory).
pub struct BuddyFrames;

impl FrameSource for BuddyFrames {
    fn alloc_frame(&mut self) -> Option<PhysFrame> {
        let a = allocator();
        let page = a.alloc_pages(GFP_KERNEL | Gfp::ZERO, 0)?;
        PhysFrame::from_start_address(PhysAddr::new(a.page_to_pfn(page) << 12)).ok()
    }
}

/// The memory model the allocator was built from.
pub fn model() -> &'static MemoryModel {
    allocator().model()
}

/// The memory model, if the allocator exists yet (the page-fault path may run before).
pub fn try_model() -> Option<&'static MemoryModel> {
    ALLOCATOR.get().map(|a| a.model())
}

/// Ask CPU `cpu` to drain its own per-CPU page lists, by IPI (the "pcp drain request").
/// `drain_all_pages` reaches remote lists under their pcp lock instead; this is the path for
/// a caller that wants the owning CPU to do the work. Returns false if `cpu` is offline.
pub fn drain_cpu_by_ipi(cpu: usize) -> bool {
    crate::arch::smp::call_on_cpu(cpu, &|| {
        allocator().drain_local_pages();
    })
}

/// Pages sitting on CPU `cpu`'s per-CPU lists, over every zone.
pub fn pcp_pages_of(cpu: usize) -> u64 {
    let a = allocator();
    a.model()
        .nodes()
        .flat_map(|n| n.populated_zones().map(move |z| (n.node_id, z.zone_type)))
        .filter_map(|(nid, zt)| a.with_pcp(cpu, nid, zt, |l| l.count))
        .sum()
}
