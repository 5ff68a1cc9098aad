//! Memory compaction (Linux: mm/compaction.c).
//!
//! SKELETON: the public API below is fixed; bodies are being written.

use crate::page_alloc::PageAllocator;
use crate::platform::Platform;
use crate::sysctl::SysctlError;

/// How hard direct compaction tries (`enum compact_priority`); lower is harder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactPriority {
    /// Synchronous, whole zone, ignores skip bits (`COMPACT_PRIO_SYNC_FULL`).
    SyncFull = 0,
    /// Synchronous light (`COMPACT_PRIO_SYNC_LIGHT`, the default).
    SyncLight = 1,
    /// Asynchronous (`COMPACT_PRIO_ASYNC`, the first try).
    Async = 2,
}

/// Outcome of a compaction run (`enum compact_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactResult {
    /// Compaction did not run: not enough free memory (`COMPACT_SKIPPED`).
    Skipped,
    /// Deferred after recent failures (`COMPACT_DEFERRED`).
    Deferred,
    /// Not attempted: the order is not high enough (`COMPACT_NOT_SUITABLE_ZONE`).
    NotSuitableZone,
    /// More work possible; ran out of time or hit contention (`COMPACT_CONTINUE`).
    Continue,
    /// Scanners met after scanning the whole zone (`COMPACT_COMPLETE`).
    Complete,
    /// Scanners met, but the zone was not scanned fully (`COMPACT_PARTIAL_SKIPPED`).
    PartialSkipped,
    /// Stopped early because of lock contention or a fatal condition (`COMPACT_CONTENDED`).
    Contended,
    /// A suitable page is now free (`COMPACT_SUCCESS`).
    Success,
}

/// What a manual or daemon compaction run did, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Pages the migration scanner looked at.
    pub migrate_scanned: u64,
    /// Pages the free scanner looked at.
    pub free_scanned: u64,
    /// Pages isolated by either scanner.
    pub isolated: u64,
    /// Pages migrated.
    pub migrated: u64,
    /// Pages that failed to migrate.
    pub failed: u64,
}

impl<P: Platform + 'static> PageAllocator<P> {
    /// Compact every zone of every node, synchronously and completely
    /// (`echo 1 > /proc/sys/vm/compact_memory`).
    pub fn compact_memory(&self) -> CompactStats {
        todo!()
    }

    /// Compact every zone of node `nid` (`echo 1 > /sys/devices/system/node/nodeN/compact`).
    /// None if there is no such node.
    pub fn compact_node(&self, nid: usize) -> Option<CompactStats> {
        let _ = nid;
        todo!()
    }

    /// Record that an allocation of `order` failed on node `nid` and wake its kcompactd
    /// (`wakeup_kcompactd`), through [`Platform::wake_kcompactd`].
    pub fn wakeup_kcompactd(&self, nid: usize, order: u32, highest_zoneidx: usize) {
        let _ = (nid, order, highest_zoneidx);
        todo!()
    }

    /// One round of node `nid`'s kcompactd at time `now_ms` (milliseconds, monotonic):
    /// serve a pending wake-up (`kcompactd_do_work`), or, when the proactive timer has
    /// expired, compact proactively by fragmentation score with Linux's back-off. Returns
    /// how many milliseconds the worker may sleep before its next round unless woken.
    pub fn kcompactd_run(&self, nid: usize, now_ms: u64) -> u64 {
        let _ = (nid, now_ms);
        todo!()
    }

    /// Node `nid`'s fragmentation score (`fragmentation_score_node`), 0..=100.
    pub fn fragmentation_score_node(&self, nid: usize) -> u32 {
        let _ = nid;
        todo!()
    }

    /// `vm.compaction_proactiveness`, 0..=100.
    pub fn set_compaction_proactiveness(&self, v: u64) -> Result<(), SysctlError> {
        let _ = v;
        todo!()
    }

    /// `vm.extfrag_threshold`, 0..=1000.
    pub fn set_extfrag_threshold(&self, v: u64) -> Result<(), SysctlError> {
        let _ = v;
        todo!()
    }

    /// `vm.compact_unevictable_allowed`, 0 or 1.
    pub fn set_compact_unevictable_allowed(&self, v: u64) -> Result<(), SysctlError> {
        let _ = v;
        todo!()
    }

    /// Per-zone compaction state, one line per populated zone:
    /// `Node %d, zone %8s considered %u defer_shift %u order_failed %u` plus the cached
    /// scanner positions. Exposed by the kernel as /sys/kernel/debug/compaction/zones.
    pub fn write_compaction_state(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let _ = out;
        todo!()
    }
}
