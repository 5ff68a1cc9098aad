//! vmalloc: virtually contiguous kernel memory built from physically scattered pages.
//!
//! The buddy allocator hands out at most `2^MAX_PAGE_ORDER` contiguous pages (4 MiB), and
//! on a fragmented machine far less. Kernel bookkeeping that grows with memory (the demo's
//! page lists on a 6 GiB machine, a 24 MiB `Vec`) needs more than that, and does not need
//! it physically contiguous. As Linux's `kvmalloc` falls back to `vmalloc`, the heap's
//! large-allocation path falls back to this module: reserve a range of kernel virtual
//! addresses in [`VMALLOC_START`]..[`VMALLOC_END`], take order-0 pages one by one, and map
//! each with a 4 KiB PTE in the kernel's page tables (shared by every CPU).
//!
//! - Every area is followed by one unmapped guard page, so running off its end faults
//!   instead of scribbling over the next area.
//! - The pages of an area are not recorded anywhere but in its PTEs: [`vfree`] reads them
//!   back while unmapping. So the bookkeeping is a fixed array of `(start, pages)` and never
//!   allocates from the heap, which calls into here (no recursion, no lock cycle).
//! - [`vfree`] unmaps, then shoots the range down from every CPU's TLB, and only then frees
//!   the pages and the virtual range: another CPU may still hold a translation, and must
//!   not reach a page after it has a new owner. A TLB shootdown waits for the other CPUs
//!   with interrupts enabled; a `vfree` called with interrupts disabled therefore defers
//!   the area (Linux's lazy vunmap): it stays mapped and reserved, and the next `vmalloc`
//!   or `vfree` called with interrupts enabled (or [`purge_lazy`]) frees it.
//! - Page-table pages created for the range are kept (kernel page tables are never freed,
//!   see `paging::leaf_pte`); the range is reused first-fit, so they serve the next areas.
//! - Out of memory is a `None` (counted in [`Usage::failures`]), with every page already
//!   taken given back; a request larger than all managed memory fails before taking any.
//!
//! Locking: [`AREAS`] is taken with interrupts disabled, only to reserve, look up or release
//! a range; nothing else is taken while it is held (see the lock order in `main.rs`).

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use x86_64::{
    PhysAddr, VirtAddr,
    structures::paging::{PageTableFlags, PhysFrame},
};
use zonebuddy::page_alloc::gfp::{GFP_ATOMIC, GFP_KERNEL, Gfp};

use crate::{
    arch::{
        paging::{self, FrameSource},
        smp,
    },
    memory::{BuddyFrames, allocator},
};

/// First address of the vmalloc range (one top-level slot, 512 GiB, between the stacks of
/// the other CPUs and the fixed device mappings; see the layout in main.rs).
pub const VMALLOC_START: u64 = 0xffff_e000_0000_0000;
/// End of the vmalloc range (exclusive).
pub const VMALLOC_END: u64 = VMALLOC_START + (1 << 39);
const PAGE: u64 = 4096;
/// Areas that may exist at once.
const MAX_AREAS: usize = 256;
/// Pages unmapped per TLB shootdown when freeing (their frames wait on the stack).
const FREE_BATCH: usize = 512;

#[derive(Clone, Copy, Debug)]
struct Area {
    start: u64,
    /// Mapped pages (the guard page after them is not counted).
    pages: u64,
    /// Freed with interrupts disabled: waits for [`purge_lazy`].
    lazy: bool,
    /// Being freed by some CPU (so a second vfree of it is refused).
    dying: bool,
}

impl Area {
    /// End of the area's reservation, guard page included.
    fn end(&self) -> u64 {
        self.start + (self.pages + 1) * PAGE
    }
}

struct Areas {
    /// Sorted by start.
    list: [Area; MAX_AREAS],
    len: usize,
}

static AREAS: Mutex<Areas> = Mutex::new(Areas {
    list: [Area {
        start: 0,
        pages: 0,
        lazy: false,
        dying: false,
    }; MAX_AREAS],
    len: 0,
});

static USED_BYTES: AtomicU64 = AtomicU64::new(0);
static LAZY_BYTES: AtomicU64 = AtomicU64::new(0);
static FAILURES: AtomicU64 = AtomicU64::new(0);
static PT_PAGES: AtomicU64 = AtomicU64::new(0);

/// Why [`vfree`] refused an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfreeError {
    /// No area starts at this address.
    NotAnArea(u64),
    /// The area is already being freed.
    AlreadyFreed(u64),
}

impl core::fmt::Display for VfreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VfreeError::NotAnArea(a) => {
                write!(f, "vfree: {a:#x} is not the start of a vmalloc area")
            }
            VfreeError::AlreadyFreed(a) => write!(f, "vfree: area {a:#x} is already being freed"),
        }
    }
}

/// vmalloc figures (Linux's `VmallocUsed` and friends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes mapped in live areas (lazily freed ones included until purged).
    pub used_bytes: u64,
    /// Areas reserved.
    pub areas: usize,
    /// Bytes freed with interrupts off, waiting for a purge.
    pub lazy_bytes: u64,
    /// Requests refused (out of memory, out of address space or of area slots).
    pub failures: u64,
    /// Page-table pages taken for the range so far (kept for reuse).
    pub pt_pages: u64,
}

/// Current figures.
pub fn usage() -> Usage {
    let areas = x86_64::instructions::interrupts::without_interrupts(|| AREAS.lock().len);
    Usage {
        used_bytes: USED_BYTES.load(Ordering::Relaxed),
        areas,
        lazy_bytes: LAZY_BYTES.load(Ordering::Relaxed),
        failures: FAILURES.load(Ordering::Relaxed),
        pt_pages: PT_PAGES.load(Ordering::Relaxed),
    }
}

/// Is `addr` inside the vmalloc range?
pub fn is_vmalloc_addr(addr: u64) -> bool {
    (VMALLOC_START..VMALLOC_END).contains(&addr)
}

/// Mapped bytes of the area starting at `addr`, if there is one.
pub fn area_size(addr: u64) -> Option<u64> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let a = AREAS.lock();
        a.list[..a.len]
            .iter()
            .find(|ar| ar.start == addr && !ar.dying && !ar.lazy)
            .map(|ar| ar.pages * PAGE)
    })
}

/// Reserve `pages` + a guard page of address space, first fit.
fn reserve(pages: u64) -> Option<u64> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut a = AREAS.lock();
        if a.len == MAX_AREAS {
            return None;
        }
        let span = (pages + 1) * PAGE;
        let mut at = VMALLOC_START;
        let mut slot = a.len;
        for (i, ar) in a.list[..a.len].iter().enumerate() {
            if ar.start - at >= span {
                slot = i;
                break;
            }
            at = ar.end();
        }
        if slot == a.len && VMALLOC_END - at < span {
            return None;
        }
        let len = a.len;
        a.list.copy_within(slot..len, slot + 1);
        a.list[slot] = Area {
            start: at,
            pages,
            lazy: false,
            dying: false,
        };
        a.len += 1;
        Some(at)
    })
}

/// Give back the reservation starting at `start`.
fn unreserve(start: u64) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut a = AREAS.lock();
        let len = a.len;
        if let Some(i) = a.list[..len].iter().position(|ar| ar.start == start) {
            a.list.copy_within(i + 1..len, i);
            a.len -= 1;
        }
    })
}

/// Page-table pages for the range, counted.
struct CountingFrames;

impl FrameSource for CountingFrames {
    fn alloc_frame(&mut self) -> Option<PhysFrame> {
        let f = BuddyFrames.alloc_frame()?;
        PT_PAGES.fetch_add(1, Ordering::Relaxed);
        Some(f)
    }
}

/// Allocate `size` bytes of virtually contiguous, page-aligned kernel memory (contents
/// undefined), or `None` when memory, address space or area slots run out.
pub fn vmalloc(size: usize) -> Option<*mut u8> {
    let irqs_on = x86_64::instructions::interrupts::are_enabled();
    if irqs_on {
        purge_lazy();
    }
    let pages = (size as u64).div_ceil(PAGE);
    let a = crate::memory::try_allocator()?;
    if pages == 0 || pages > a.totalram_pages() {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let Some(start) = reserve(pages) else {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    // Order-0 pages never trigger compaction, so GFP_KERNEL is fine with interrupts on;
    // with them off, do not wait for anything.
    let gfp = if irqs_on { GFP_KERNEL } else { GFP_ATOMIC } | Gfp::NOWARN;
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for i in 0..pages {
        let va = start + i * PAGE;
        let mapped = a.get_free_pages(gfp, 0).and_then(|addr| {
            let pa = addr - crate::PHYS_OFFSET;
            // SAFETY: the frame was just allocated for this area alone, and `va` lies in
            // the range `reserve` gave this call exclusively.
            let r = unsafe {
                paging::map_page(
                    VirtAddr::new(va),
                    PhysAddr::new(pa),
                    flags,
                    &mut CountingFrames,
                )
            };
            match r {
                Ok(()) => Some(()),
                Err(_) => {
                    let _ = a.free_pages_virt(addr, 0);
                    None
                }
            }
        });
        if mapped.is_none() {
            // Nobody but this CPU has seen these translations: local flushes suffice.
            unmap_and_free(start, i, false);
            unreserve(start);
            FAILURES.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    }
    USED_BYTES.fetch_add(pages * PAGE, Ordering::Relaxed);
    Some(start as *mut u8)
}

/// Unmap `pages` pages from `start`, then (after a TLB shootdown on every CPU when
/// `shootdown`) free their frames, in batches of [`FREE_BATCH`].
fn unmap_and_free(start: u64, pages: u64, shootdown: bool) {
    let a = allocator();
    let mut frames = [0u64; FREE_BATCH];
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(FREE_BATCH as u64);
        let first = start + done * PAGE;
        let mut got = 0;
        for i in 0..n {
            // SAFETY: the page belongs to an area being torn down; nothing uses it anymore.
            match unsafe { paging::unmap_page(VirtAddr::new(first + i * PAGE)) } {
                Ok(pa) => {
                    frames[got] = pa.as_u64();
                    got += 1;
                }
                Err(e) => log::error!("vmalloc: unmapping {:#x}: {e:?}", first + i * PAGE),
            }
        }
        if shootdown {
            smp::tlb_shootdown(first, first + n * PAGE);
        }
        for &pa in &frames[..got] {
            if let Err(e) = a.free_pages_virt(crate::PHYS_OFFSET + pa, 0) {
                log::error!("vmalloc: freeing frame {pa:#x}: {e}");
            }
        }
        done += n;
    }
}

/// Free the area starting at `addr` (from [`vmalloc`]). With interrupts disabled the area is
/// only marked and freed by the next purge (see the module docs).
pub fn vfree(addr: *mut u8) -> Result<(), VfreeError> {
    let addr = addr as u64;
    let irqs_on = x86_64::instructions::interrupts::are_enabled();
    let pages = x86_64::instructions::interrupts::without_interrupts(|| {
        let mut a = AREAS.lock();
        let len = a.len;
        let ar = a.list[..len]
            .iter_mut()
            .find(|ar| ar.start == addr)
            .ok_or(VfreeError::NotAnArea(addr))?;
        if ar.dying || ar.lazy {
            return Err(VfreeError::AlreadyFreed(addr));
        }
        if irqs_on {
            ar.dying = true;
        } else {
            ar.lazy = true;
            LAZY_BYTES.fetch_add(ar.pages * PAGE, Ordering::Relaxed);
        }
        Ok(ar.pages)
    })?;
    if irqs_on {
        release(addr, pages);
        purge_lazy();
    }
    Ok(())
}

fn release(start: u64, pages: u64) {
    unmap_and_free(start, pages, true);
    unreserve(start);
    USED_BYTES.fetch_sub(pages * PAGE, Ordering::Relaxed);
}

/// Free every area that was vfree'd with interrupts disabled. Needs interrupts enabled (the
/// TLB shootdown waits for the other CPUs); does nothing otherwise.
pub fn purge_lazy() {
    if !x86_64::instructions::interrupts::are_enabled() || LAZY_BYTES.load(Ordering::Relaxed) == 0 {
        return;
    }
    loop {
        let next = x86_64::instructions::interrupts::without_interrupts(|| {
            let mut a = AREAS.lock();
            let len = a.len;
            let ar = a.list[..len].iter_mut().find(|ar| ar.lazy)?;
            ar.lazy = false;
            ar.dying = true;
            LAZY_BYTES.fetch_sub(ar.pages * PAGE, Ordering::Relaxed);
            Some((ar.start, ar.pages))
        });
        let Some((start, pages)) = next else { break };
        release(start, pages);
    }
}
