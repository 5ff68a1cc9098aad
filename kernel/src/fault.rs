//! Page faults that are not bugs: waiting for a page under migration, and filling a file
//! mapping.
//!
//! A not-present fault inside a file window of the movable range
//! (`zonebuddy::reclaim::mmap`) is a page-cache fault: the page is found in the cache or
//! read from the ramdisk, mapped read-only by `filemap_fault`, and the access retried
//! (Linux's `do_read_fault`). It runs with interrupts enabled when the faulting code had
//! them enabled, since it may allocate, reclaim and wait for a page lock. A write to a
//! read-only file mapping is a protection fault and stays a bug.
//!
//! Page migration replaces the PTE of the page it moves with a *migration entry* (a
//! non-present PTE that remembers the old frame) and holds the page lock while it copies.
//! A CPU that touches the page meanwhile faults here, recognises the entry, waits for the
//! page lock to be released, and returns so the access is retried: it then sees the new
//! PTE (or the old one, if migration gave up). No access ever reads a half-copied page.
//!
//! The wait runs with interrupts enabled when the faulting code had them enabled: the
//! migrating CPU may be waiting for this CPU to acknowledge a TLB shootdown. Movable memory
//! is therefore only touched with interrupts enabled.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::{VirtAddr, structures::idt::PageFaultErrorCode};

use crate::arch::{
    paging::{leaf_pte, migration_entry_pfn},
    smp,
};

/// Faults resolved by waiting for a migration to finish.
pub static MIGRATION_WAITS: AtomicU64 = AtomicU64::new(0);

/// Faults resolved by mapping a page-cache page into a file window.
pub static FILE_FAULTS: AtomicU64 = AtomicU64::new(0);

/// A not-present fault at `addr` whose entry is empty: a file-window fault, or a bug.
fn file_fault(addr: u64, interrupts_were_enabled: bool) -> bool {
    let in_window =
        (crate::arch::paging::MOVABLE_START..crate::arch::paging::MOVABLE_END).contains(&addr);
    let Some(alloc) = crate::memory::try_allocator().filter(|_| in_window) else {
        return false;
    };
    if !interrupts_were_enabled {
        // Filling a page may wait for other CPUs; movable memory is only touched with
        // interrupts enabled (module docs of zonebuddy::reclaim::mmap).
        return false;
    }
    x86_64::instructions::interrupts::enable();
    let r = alloc.filemap_fault(addr);
    x86_64::instructions::interrupts::disable();
    match r {
        Ok(_) => {
            FILE_FAULTS.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(zonebuddy::reclaim::mmap::MmapError::NotInWindow(_)) => false,
        Err(e) => {
            log::error!("page fault at {addr:#x}: {e}");
            false
        }
    }
}

/// Try to resolve a page fault at `addr`. Returns true when the access should be retried,
/// false when the fault is a genuine bug.
pub fn handle_page_fault(
    addr: u64,
    error: PageFaultErrorCode,
    interrupts_were_enabled: bool,
) -> bool {
    if error.contains(PageFaultErrorCode::PROTECTION_VIOLATION) {
        return false;
    }
    let Ok(va) = VirtAddr::try_new(addr) else {
        return false;
    };
    let Some(pte) = leaf_pte(va) else {
        return file_fault(addr, interrupts_were_enabled);
    };
    let raw = pte.load(Ordering::Acquire);
    if raw & 1 != 0 {
        // Not-present fault, but the entry is present now: the CPU saw a migration entry
        // that the migrating CPU replaced before we got here. Non-present entries are
        // never cached in the TLB, so retrying the access sees the new entry.
        MIGRATION_WAITS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let Some(pfn) = migration_entry_pfn(raw) else {
        return raw == 0 && file_fault(addr, interrupts_were_enabled);
    };
    let Some(model) = crate::memory::try_model() else {
        return false;
    };
    let Some(page) = model.pfn_to_page(pfn) else {
        return false;
    };
    if interrupts_were_enabled {
        x86_64::instructions::interrupts::enable();
    }
    // The migrating CPU holds the page lock from before it installs the entry until after
    // it has replaced it; waiting for the unlock is waiting for the new PTE. A migration
    // that never ends is a hang elsewhere: report it rather than spin forever. (Which CPU
    // migrates is not recorded; the page lock has no owner field.)
    let waited = smp::wait_for_cpu(smp::NO_CPU, "to finish migrating the page", || {
        !page.is_locked() || migration_entry_pfn(pte.load(Ordering::Acquire)) != Some(pfn)
    });
    if let Err(t) = waited {
        panic!("page fault at {addr:#x} on a migration entry for pfn {pfn:#x}: {t}");
    }
    x86_64::instructions::interrupts::disable();
    MIGRATION_WAITS.fetch_add(1, Ordering::Relaxed);
    true
}
