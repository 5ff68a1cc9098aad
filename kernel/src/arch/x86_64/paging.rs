//! The kernel's page tables: mapping, unmapping and translating through the direct map.
//!
//! The bootloader leaves us a 4-level hierarchy with all physical memory mapped at
//! [`crate::PHYS_OFFSET`]; page-table pages are reached through that direct map, which is
//! what the x86_64 crate's `OffsetPageTable` expects. New mappings (the uncached local APIC
//! window, stack guard pages, later the movable "user memory" region that page migration
//! rewrites) need page-table pages of their own. Those come from a [`FrameSource`]: an early
//! pool of frames inside the kernel image until the page allocator is up, then the
//! allocator itself.
//!
//! Mapping and unmapping happen under one lock, [`KERNEL_PT`], taken with interrupts
//! disabled: page tables are shared by every CPU, and an interrupt handler that touched them
//! while this CPU held the lock would deadlock. Leaf entries of the movable window are also
//! rewritten without that lock, by page migration's atomic compare-exchange
//! ([`pte_cmpxchg`]); so everything that reads the live tables without the lock
//! ([`leaf_pte`], [`translate`], the page-fault path) reads one entry at a time atomically
//! and never holds a reference to a whole table.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use x86_64::{
    PhysAddr, VirtAddr,
    registers::control::Cr3,
    structures::paging::{
        FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame,
        Size4KiB, mapper::MapToError,
    },
};

use crate::PHYS_OFFSET;

/// Somewhere page-table pages come from.
pub trait FrameSource {
    /// A zeroed 4 KiB frame, or `None` when exhausted.
    fn alloc_frame(&mut self) -> Option<PhysFrame>;
}

/// Frames reserved inside the kernel image for page tables created before the page
/// allocator exists (a handful of tables: the LAPIC window, guard pages, the trampoline).
const EARLY_POOL_FRAMES: usize = 32;

#[repr(C, align(4096))]
struct EarlyPool([[u8; 4096]; EARLY_POOL_FRAMES]);

static mut EARLY_POOL: EarlyPool = EarlyPool([[0; 4096]; EARLY_POOL_FRAMES]);

/// The early pool, handing out its frames in order.
pub struct EarlyFrames {
    next: usize,
    /// Physical address of each pool frame, computed once by [`init`] so that handing out
    /// a frame never walks the page tables while a mapper is live.
    phys: [u64; EARLY_POOL_FRAMES],
}

/// The single early pool.
static EARLY: Mutex<EarlyFrames> = Mutex::new(EarlyFrames {
    next: 0,
    phys: [0; EARLY_POOL_FRAMES],
});

/// Record the early pool's physical frames. Call once at boot, before any mapping.
pub fn init() {
    let mut pool = EARLY.lock();
    for i in 0..EARLY_POOL_FRAMES {
        // SAFETY: taking the address of a pool frame creates no reference to its contents.
        let va = unsafe { core::ptr::addr_of!(EARLY_POOL.0[i]) as u64 };
        pool.phys[i] = translate(VirtAddr::new(va)).map_or(0, |pa| pa.as_u64());
    }
}

impl FrameSource for EarlyFrames {
    fn alloc_frame(&mut self) -> Option<PhysFrame> {
        while self.next < EARLY_POOL_FRAMES {
            let pa = self.phys[self.next];
            // Each index is handed out once: `next` only grows, under EARLY's lock. The
            // frames are zero (static memory never written by anyone else).
            self.next += 1;
            if pa != 0 {
                return PhysFrame::from_start_address(PhysAddr::new(pa)).ok();
            }
        }
        None
    }
}

/// Adapter from [`FrameSource`] to the x86_64 crate's allocator trait.
struct Adapter<'a>(&'a mut dyn FrameSource);

// SAFETY: every frame comes from a FrameSource, whose contract is to return unused, zeroed
// frames that nobody else will hand out.
unsafe impl FrameAllocator<Size4KiB> for Adapter<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.0.alloc_frame()
    }
}

/// Lock serialising every change to the kernel page tables.
pub static KERNEL_PT: Mutex<()> = Mutex::new(());

/// The active top-level table as an `OffsetPageTable`.
///
/// # Safety
/// The caller must hold [`KERNEL_PT`] (or be the only CPU running) for as long as it uses
/// the returned value to change mappings, and must not create a second live instance.
unsafe fn active() -> OffsetPageTable<'static> {
    let (frame, _) = Cr3::read();
    let va = PHYS_OFFSET + frame.start_address().as_u64();
    // SAFETY: the bootloader maps all physical memory at PHYS_OFFSET, so the top-level
    // table is reachable there; exclusivity is the caller's obligation (see above).
    unsafe { OffsetPageTable::new(&mut *(va as *mut PageTable), VirtAddr::new(PHYS_OFFSET)) }
}

/// Physical address behind `va` in the current page tables, if mapped (by a 4 KiB, 2 MiB
/// or 1 GiB page).
///
/// Runs at any time on any CPU, without [`KERNEL_PT`]: other CPUs change entries meanwhile
/// (page migration rewrites leaf entries with atomic compare-exchanges; `map_page` fills
/// empty ones). So, like [`leaf_pte`], this reads one entry at a time as an atomic word and
/// never forms a reference to a whole table, which would claim that nobody writes it. The
/// answer is the mapping at some instant during the walk; it can be stale by the time the
/// caller looks at it unless the caller owns `va`'s mapping.
pub fn translate(va: VirtAddr) -> Option<PhysAddr> {
    let (root, _) = Cr3::read();
    let mut table = root.start_address().as_u64();
    let indices = [va.p4_index(), va.p3_index(), va.p2_index(), va.p1_index()];
    for (level, index) in indices.iter().enumerate() {
        let slot = (PHYS_OFFSET + table + u64::from(*index) * 8) as *const AtomicU64;
        // SAFETY: `table` is the physical address of a page table (CR3 or a present
        // non-huge entry above), mapped in the direct map; the entry is 8-byte aligned and
        // page tables are never freed, and it is only read atomically (see above).
        let v = unsafe { &*slot }.load(Ordering::Acquire);
        if v & PTE_PRESENT == 0 {
            return None;
        }
        // Bytes mapped by one entry at this level: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
        let size = 1u64 << (12 + 9 * (3 - level));
        if level == 3 || (level > 0 && v & PTE_HUGE != 0) {
            // (A huge entry's bit 12 is PAT, not address: masking by the page size drops it.)
            let base = v & PTE_ADDR_MASK & !(size - 1);
            return Some(PhysAddr::new(base | (va.as_u64() & (size - 1))));
        }
        table = v & PTE_ADDR_MASK;
    }
    None
}

/// Why a mapping operation failed.
#[derive(Debug)]
pub enum MapError {
    /// No frame for an intermediate table.
    OutOfFrames,
    /// The address is already mapped (maybe by a huge page).
    AlreadyMapped,
    /// The address lies inside a huge page, which we do not split.
    HugePage,
    /// The page is not mapped.
    NotMapped,
}

/// Map the 4 KiB page at `va` to `pa` with `flags` (PRESENT is added), using `frames` for
/// any intermediate table. Flushes the local TLB entry; other CPUs never cached a
/// translation for an unmapped page.
///
/// # Safety
/// The caller must own `pa` (mapping it must not alias memory that Rust code treats as
/// exclusive) and `va` must be an address the caller reserved for this purpose.
pub unsafe fn map_page(
    va: VirtAddr,
    pa: PhysAddr,
    flags: PageTableFlags,
    frames: &mut dyn FrameSource,
) -> Result<(), MapError> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _guard = KERNEL_PT.lock();
        // SAFETY: KERNEL_PT is held for the whole use of the mapper.
        let mut pt = unsafe { active() };
        let page = Page::<Size4KiB>::containing_address(va);
        let frame = PhysFrame::containing_address(pa);
        let parent = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        // SAFETY: the caller guarantees `pa` and `va` are theirs to map (see # Safety).
        let result = unsafe {
            pt.map_to_with_table_flags(
                page,
                frame,
                flags | PageTableFlags::PRESENT,
                parent,
                &mut Adapter(frames),
            )
        };
        match result {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err(MapError::OutOfFrames),
            Err(MapToError::PageAlreadyMapped(_)) => Err(MapError::AlreadyMapped),
            Err(MapToError::ParentEntryHugePage) => Err(MapError::HugePage),
        }
    })
}

/// Unmap the 4 KiB page at `va` (used for stack guard pages). Flushes the local TLB only:
/// callers use it before any other CPU could have touched the page.
///
/// # Safety
/// Nothing may rely on `va` being mapped afterwards.
pub unsafe fn unmap_page(va: VirtAddr) -> Result<PhysAddr, MapError> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _guard = KERNEL_PT.lock();
        // SAFETY: KERNEL_PT is held for the whole use of the mapper.
        let mut pt = unsafe { active() };
        let page = Page::<Size4KiB>::containing_address(va);
        match pt.unmap(page) {
            Ok((frame, flush)) => {
                flush.flush();
                Ok(frame.start_address())
            }
            Err(x86_64::structures::paging::mapper::UnmapError::ParentEntryHugePage) => {
                Err(MapError::HugePage)
            }
            Err(_) => Err(MapError::NotMapped),
        }
    })
}

/// Run `f` with the early frame pool (page tables made before the page allocator exists).
pub fn with_early_frames<R>(f: impl FnOnce(&mut dyn FrameSource) -> R) -> R {
    let mut pool = EARLY.lock();
    f(&mut *pool)
}

/// A software bit of non-present PTEs: set in a *migration entry*, which stands in for the
/// PTE of a page while page migration copies it. Bits 12..52 keep the old frame number, so
/// a CPU that faults on it knows which page to wait for.
pub const MIGRATION_ENTRY_BIT: u64 = 1 << 11;
const PTE_PRESENT: u64 = 1;
const PTE_HUGE: u64 = 1 << 7;
const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The PTE value of a migration entry for frame `pfn`: not present, marked, frame kept.
pub const fn make_migration_entry(pfn: u64) -> u64 {
    ((pfn << 12) & PTE_ADDR_MASK) | MIGRATION_ENTRY_BIT
}

/// The frame a migration entry stands for, if `pte` is one.
pub const fn migration_entry_pfn(pte: u64) -> Option<u64> {
    if pte & PTE_PRESENT == 0 && pte & MIGRATION_ENTRY_BIT != 0 {
        Some((pte & PTE_ADDR_MASK) >> 12)
    } else {
        None
    }
}

/// The leaf (4 KiB) page-table entry for `va`, as an atomic word, if every upper level is
/// present and none maps a huge page.
///
/// Entries are reached through the direct map and read and written atomically, without
/// creating references to whole tables: page migration changes single PTEs of pages it has
/// locked while other CPUs walk and use the same tables.
pub fn leaf_pte(va: VirtAddr) -> Option<&'static AtomicU64> {
    let (root, _) = Cr3::read();
    let mut table = root.start_address().as_u64();
    let indices = [va.p4_index(), va.p3_index(), va.p2_index(), va.p1_index()];
    for (level, index) in indices.iter().enumerate() {
        let slot = (PHYS_OFFSET + table + u64::from(*index) * 8) as *const AtomicU64;
        // SAFETY: `table` is the physical address of a page table (CR3 or a present
        // non-huge entry above), mapped in the direct map; entries are 8-byte aligned and
        // page tables are never freed while the kernel runs, so the reference stays valid.
        let entry: &'static AtomicU64 = unsafe { &*slot };
        if level == 3 {
            return Some(entry);
        }
        let v = entry.load(Ordering::Acquire);
        if v & PTE_PRESENT == 0 || v & PTE_HUGE != 0 {
            return None;
        }
        table = v & PTE_ADDR_MASK;
    }
    None
}

/// The virtual window reserved for movable "user memory" (`zonebuddy::movement::rmap` anon regions): one
/// top-level slot's worth (512 GiB), mapped by 4 KiB leaf entries only. All CPUs share the
/// kernel's root table, so a table created here by one CPU is seen by every other.
pub const MOVABLE_START: u64 = 0xffff_b000_0000_0000;
/// End of the movable window (exclusive).
pub const MOVABLE_END: u64 = MOVABLE_START + (1 << 39);

const PTE_WRITABLE: u64 = 1 << 1;
/// The accessed bit: set by the CPU's page walk when it uses the entry.
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Bits the CPU sets by itself (accessed, dirty): ignored when comparing entries.
const PTE_HW_BITS: u64 = PTE_ACCESSED | (1 << 6);
/// A software bit of migration entries: the present entry it replaced was read-only (a
/// file mapping), so the entry that replaces it is read-only too (Linux's readable
/// versus writable migration entries).
pub const MIGRATION_READONLY_BIT: u64 = 1 << 10;

/// A movable-window PTE as the allocator sees it.
pub fn decode_pte(v: u64) -> zonebuddy::port::platform::Pte {
    use zonebuddy::port::platform::Pte;
    if v & PTE_PRESENT != 0 {
        Pte::Present((v & PTE_ADDR_MASK) >> 12)
    } else if let Some(pfn) = migration_entry_pfn(v) {
        Pte::Migration(pfn)
    } else {
        Pte::None
    }
}

/// The PTE value for `pte` (present entries are writable, not global).
pub fn encode_pte(pte: zonebuddy::port::platform::Pte) -> u64 {
    use zonebuddy::port::platform::Pte;
    match pte {
        Pte::None => 0,
        Pte::Present(pfn) => ((pfn << 12) & PTE_ADDR_MASK) | PTE_PRESENT | PTE_WRITABLE,
        Pte::Migration(pfn) => make_migration_entry(pfn),
    }
}

/// Is the entry, present or migration, read-only?
const fn pte_is_readonly(v: u64) -> bool {
    if v & PTE_PRESENT != 0 {
        v & PTE_WRITABLE == 0
    } else {
        v & MIGRATION_ENTRY_BIT != 0 && v & MIGRATION_READONLY_BIT != 0
    }
}

/// The raw value for `pte`, read-only if `readonly` (present and migration entries).
fn encode_pte_prot(pte: zonebuddy::port::platform::Pte, readonly: bool) -> u64 {
    use zonebuddy::port::platform::Pte;
    match pte {
        Pte::None => 0,
        Pte::Present(_) if readonly => encode_pte(pte) & !PTE_WRITABLE,
        Pte::Migration(_) if readonly => encode_pte(pte) | MIGRATION_READONLY_BIT,
        _ => encode_pte(pte),
    }
}

/// Install a present entry for `pfn` at `va` where the leaf table exists and the entry
/// is empty (writable or read-only). False if the entry is in use; None if no leaf
/// table covers `va` yet.
pub fn pte_install(va: u64, pfn: u64, readonly: bool) -> Option<bool> {
    use zonebuddy::port::platform::Pte;
    let slot = VirtAddr::try_new(va).ok().and_then(leaf_pte)?;
    let raw = encode_pte_prot(Pte::Present(pfn), readonly);
    Some(
        slot.compare_exchange(0, raw, Ordering::AcqRel, Ordering::Acquire)
            .is_ok(),
    )
}

/// Clear the accessed bit of the present leaf entry for `va`; true if it was set
/// (`ptep_test_and_clear_young`). No TLB flush, as on Linux/x86: a CPU that still caches
/// the entry does not set the bit again until the entry leaves its TLB, an inaccuracy
/// aging accepts.
pub fn pte_test_and_clear_young(va: u64) -> bool {
    let Some(slot) = VirtAddr::try_new(va).ok().and_then(leaf_pte) else {
        return false;
    };
    let v = slot.load(Ordering::Acquire);
    if v & PTE_PRESENT == 0 || v & PTE_ACCESSED == 0 {
        return false;
    }
    slot.fetch_and(!PTE_ACCESSED, Ordering::AcqRel) & PTE_ACCESSED != 0
}

/// Compare-and-exchange the leaf entry for `va` (see `Platform::pte_cmpxchg`). Hardware
/// may set the accessed/dirty bits of a present entry at any moment, so the comparison
/// decodes the entry and retries when only those bits changed under us. The write
/// permission travels from the old entry to the new one through migration entries
/// ([`MIGRATION_READONLY_BIT`]); a new present entry starts with the accessed bit clear.
pub fn pte_cmpxchg(
    va: u64,
    old: zonebuddy::port::platform::Pte,
    new: zonebuddy::port::platform::Pte,
) -> bool {
    let Some(slot) = VirtAddr::try_new(va).ok().and_then(leaf_pte) else {
        return old == zonebuddy::port::platform::Pte::None
            && new == zonebuddy::port::platform::Pte::None;
    };
    let new_raw = encode_pte(new);
    let mut cur = slot.load(Ordering::Acquire);
    loop {
        if decode_pte(cur) != old
            || (cur & PTE_PRESENT == 0
                && cur & !(PTE_HW_BITS | MIGRATION_READONLY_BIT) != encode_pte(old))
        {
            return false;
        }
        let new_raw = if new_raw == 0 {
            0
        } else {
            encode_pte_prot(new, pte_is_readonly(cur))
        };
        match slot.compare_exchange_weak(cur, new_raw, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(v) => cur = v,
        }
    }
}
