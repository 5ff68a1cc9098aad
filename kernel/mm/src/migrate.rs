//! Page migration (Linux: mm/migrate.c).
//!
//! SKELETON: the public API below is fixed; bodies are being written.

use crate::list::PageList;
use crate::page::Page;
use crate::page_alloc::PageAllocator;
use crate::platform::Platform;

/// How hard migration may try (`enum migrate_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateMode {
    /// Never block: skip locked pages and pages that would need waiting.
    Async,
    /// May block on page locks, but not on anything slow (`MIGRATE_SYNC_LIGHT`).
    SyncLight,
    /// May block on anything (`MIGRATE_SYNC`).
    Sync,
}

/// Why pages are being migrated (`enum migrate_reason`); kept for statistics and tracing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateReason {
    /// Memory compaction.
    Compaction,
    /// An explicit request (tests, the console).
    Syscall,
}

/// Why one page did not migrate (Linux's errno values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateError {
    /// Transient: try again in a later pass (`-EAGAIN`).
    Again,
    /// No target page: abort the whole call (`-ENOMEM`).
    NoMemory,
    /// Permanent for this page (`-EBUSY`, `-EINVAL`, ...): it is put back.
    Busy,
}

/// Callbacks for kernel-owned movable pages that are not anon memory
/// (`struct movable_operations`). A page opts in with [`set_page_movable`].
pub trait MovableOperations: Sync {
    /// Take the page off the owner's structures so it can be migrated; false refuses.
    fn isolate_page(&self, page: &Page, mode: MigrateMode) -> bool;
    /// Move the contents and the owner's references from `src` to `dst` (both locked;
    /// `dst` is a fresh page). On success the owner no longer uses `src`.
    fn migrate_page(&self, dst: &Page, src: &Page, mode: MigrateMode) -> Result<(), MigrateError>;
    /// Give back a page that was isolated but not migrated.
    fn putback_page(&self, page: &Page);
}

/// A `'static` home for a `&dyn MovableOperations`, so `page.mapping` can hold a thin
/// pointer to it (tagged `PAGE_MAPPING_MOVABLE`).
pub struct MovableOps(pub &'static dyn MovableOperations);

/// Mark `page` (locked by the caller) as owned by `ops` (`__SetPageMovable`).
pub fn set_page_movable(page: &Page, ops: &'static MovableOps) {
    let _ = (page, ops);
    todo!()
}

/// Undo [`set_page_movable`] (`__ClearPageMovable`), before the owner frees the page.
pub fn clear_page_movable(page: &Page) {
    let _ = page;
    todo!()
}

impl<P: Platform + 'static> PageAllocator<P> {
    /// Try to isolate an in-use page for migration (`isolate_movable_page` for
    /// movable_operations pages and `folio_isolate_lru` for anon pages): on success the page
    /// holds an extra reference, is marked `PG_isolated`, and its `lru` links are free for
    /// the caller's list. Fails (no side effects) for free, unmovable, reserved, compound,
    /// pinned (refcount above what its mappings explain), already isolated, and, in
    /// [`MigrateMode::Async`], locked pages.
    pub fn isolate_migratepage(&self, page: &Page, mode: MigrateMode) -> bool {
        let _ = (page, mode);
        todo!()
    }

    /// Return every page on `list` to its owner and drop the isolation reference
    /// (`putback_movable_pages`).
    pub fn putback_movable_pages(&self, list: &mut PageList) {
        let _ = list;
        todo!()
    }

    /// Migrate the isolated pages on `from` (`migrate_pages`). For each page, `get_new`
    /// supplies a target (None counts as `-ENOMEM` and aborts) and `put_new` takes back a
    /// target that was not used. Up to 10 passes; pages failing with Again are retried,
    /// other failures are put back. Returns the number of pages not migrated; migrated
    /// pages have left `from` and failed ones were put back, so `from` is empty on return.
    pub fn migrate_pages<'a>(
        &'a self,
        from: &mut PageList,
        get_new: &mut dyn FnMut(&Page) -> Option<&'a Page>,
        put_new: &mut dyn FnMut(&'a Page),
        mode: MigrateMode,
        reason: MigrateReason,
    ) -> Result<u64, MigrateError> {
        let _ = (from, get_new, put_new, mode, reason);
        todo!()
    }
}
