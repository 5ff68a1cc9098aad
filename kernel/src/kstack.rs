//! Kernel stacks for the other CPUs, with guard pages.
//!
//! Each CPU's stack is a block of buddy pages mapped into its own slot of the stack area
//! ([`STACKS_BASE`]); the lowest page of the slot is left unmapped, so running off the end
//! of a stack faults (and, through the double-fault IST stack, reports) instead of silently
//! overwriting whatever memory lies below. The direct map cannot provide this: it uses huge
//! pages and every frame is mapped there.

use x86_64::{PhysAddr, VirtAddr, structures::paging::PageTableFlags};
use zonebuddy::page_alloc::gfp::GFP_KERNEL;

use crate::{
    arch::paging,
    memory::{BuddyFrames, allocator},
};

/// Start of the stack area (see the address-space layout in main.rs).
pub const STACKS_BASE: u64 = 0xffff_d000_0000_0000;
/// Order of each stack block (2^5 pages, 128 KiB).
pub const STACK_ORDER: u32 = 5;
/// Bytes of usable stack.
pub const STACK_SIZE: u64 = 4096 << STACK_ORDER;
/// Virtual bytes per slot: the guard page, the stack, and room to spare.
const SLOT: u64 = 2 * STACK_SIZE;

/// A mapped stack.
#[derive(Clone, Copy, Debug)]
pub struct KernelStack {
    /// The unmapped guard page's address.
    pub guard: u64,
    /// One past the highest stack byte (16-byte aligned).
    pub top: u64,
}

/// Allocate and map the stack for CPU `cpu`.
pub fn alloc(cpu: usize) -> Result<KernelStack, &'static str> {
    let a = allocator();
    let page = a
        .alloc_pages(GFP_KERNEL, STACK_ORDER)
        .ok_or("no memory for a kernel stack")?;
    let pa = a.page_to_pfn(page) << 12;
    let guard = STACKS_BASE + cpu as u64 * SLOT;
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    for i in 0..(1u64 << STACK_ORDER) {
        // SAFETY: the frames are the block just allocated for this stack alone, and the
        // slot belongs to CPU `cpu`, which gets exactly one stack.
        unsafe {
            paging::map_page(
                VirtAddr::new(guard + 4096 * (i + 1)),
                PhysAddr::new(pa + 4096 * i),
                flags,
                &mut BuddyFrames,
            )
        }
        .map_err(|_| "mapping a kernel stack page failed")?;
    }
    Ok(KernelStack {
        guard,
        top: guard + 4096 + STACK_SIZE,
    })
}
