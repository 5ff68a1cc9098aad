//! Shrinkers: caches that are not LRU pages give memory back under pressure (Linux:
//! `mm/shrinker.c`, `do_shrink_slab`, `shrink_slab`, `struct shrinker`).
//!
//! A kernel keeps caches the LRU lists do not know about: a heap's free-page cache, a
//! pool's spare pages, lookup caches. Each registers a [`Shrinker`]: `count_objects`
//! says how many objects could be freed, `scan_objects` frees up to a given number.
//! Reclaim calls them on every node it shrinks ([`PageAllocator::shrink_slab`]), asking
//! each for a share proportional to the pressure on the LRU lists, expressed by the
//! reclaim priority (Linux since 4.16):
//!
//! ```text
//!   delta      = (freeable >> priority) * 4 / seeks        (seeks 0: freeable / 2)
//!   total_scan = (nr_deferred >> priority) + delta, at most 2 * freeable
//!   scan in batches of batch_size (SHRINK_BATCH = 128) while
//!       total_scan >= batch_size or total_scan >= freeable
//!   nr_deferred = min(max(nr_deferred + delta - scanned, 0), 2 * freeable)
//! ```
//!
//! `seeks` is the cost of re-creating an object relative to re-reading a page
//! ([`DEFAULT_SEEKS`] = 2): a cheap object (seeks 1) is scanned twice as hard. Work that
//! could not be done (the cache was smaller than a batch, or `scan_objects` stopped) is
//! *deferred* to the next call, so small caches are still trimmed over time.
//!
//! # For a porting kernel
//!
//! Implement [`Shrinker`] on a `'static` object and register it with
//! [`PageAllocator::register_shrinker`]. The callbacks run from reclaim with no allocator
//! lock held and may free pages back to the allocator (report them in
//! [`ShrinkControl::pages_freed`] so reclaim counts them as progress), but must not wait
//! for anything that may be allocating, and must not allocate with direct reclaim.
//! Unregistering waits until no reclaim is inside any shrinker.

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use crate::page_alloc::PageAllocator;
use crate::page_alloc::gfp::Gfp;
use crate::port::platform::Platform;
use crate::port::sync::SpinLock;
use crate::report::vmstat::VmEvent;

/// Most shrinkers registered at once.
pub const MAX_SHRINKERS: usize = 16;
/// Default cost of re-creating an object (`DEFAULT_SEEKS`).
pub const DEFAULT_SEEKS: u32 = 2;
/// Default scan batch (`SHRINK_BATCH`).
pub const SHRINK_BATCH: u64 = 128;
/// [`Shrinker::scan_objects`]: "stop, I cannot make progress now" (`SHRINK_STOP`).
pub const SHRINK_STOP: u64 = u64::MAX;
/// [`Shrinker::count_objects`]: "the cache is empty" (`SHRINK_EMPTY`), as opposed to 0,
/// "nothing freeable right now".
pub const SHRINK_EMPTY: u64 = u64::MAX - 1;

/// What a shrinker callback is asked (`struct shrink_control`).
#[derive(Clone, Copy, Debug)]
pub struct ShrinkControl {
    /// The allocation's flags.
    pub gfp: Gfp,
    /// The node being reclaimed.
    pub nid: usize,
    /// Objects to scan in this call.
    pub nr_to_scan: u64,
    /// Objects actually scanned; preset to `nr_to_scan`, a shrinker may lower it.
    pub nr_scanned: u64,
    /// Whole pages the shrinker gave back to the page allocator (Linux's
    /// `reclaim_state->reclaimed`): counted as reclaim progress.
    pub pages_freed: u64,
}

/// A cache that can give memory back (`struct shrinker`). See the module documentation.
pub trait Shrinker: Sync {
    /// Objects that could be freed now, 0 if none, [`SHRINK_EMPTY`] if the cache is empty.
    fn count_objects(&self, sc: &ShrinkControl) -> u64;
    /// Free up to `sc.nr_to_scan` objects; returns how many were freed, or
    /// [`SHRINK_STOP`].
    fn scan_objects(&self, sc: &mut ShrinkControl) -> u64;
    /// Cost of re-creating an object ([`DEFAULT_SEEKS`]; 0 scans half the cache each time).
    fn seeks(&self) -> u32 {
        DEFAULT_SEEKS
    }
    /// Scan batch (0: [`SHRINK_BATCH`]).
    fn batch(&self) -> u64 {
        0
    }
}

/// A registered shrinker's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShrinkerId(pub usize);

/// Why registration failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShrinkerError {
    /// All [`MAX_SHRINKERS`] slots are in use.
    Full,
}

impl core::fmt::Display for ShrinkerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("shrinker registry full")
    }
}

impl core::error::Error for ShrinkerError {}

/// The registry: slots, deferred work per slot, and the number of reclaimers inside.
pub struct ShrinkerRegistry {
    slots: SpinLock<[Option<&'static dyn Shrinker>; MAX_SHRINKERS]>,
    nr_deferred: [AtomicI64; MAX_SHRINKERS],
    active: AtomicU32,
}

impl Default for ShrinkerRegistry {
    fn default() -> Self {
        ShrinkerRegistry::new()
    }
}

impl ShrinkerRegistry {
    /// No shrinkers.
    pub const fn new() -> ShrinkerRegistry {
        ShrinkerRegistry {
            slots: SpinLock::new([None; MAX_SHRINKERS]),
            nr_deferred: [const { AtomicI64::new(0) }; MAX_SHRINKERS],
            active: AtomicU32::new(0),
        }
    }
}

/// The outcome of one [`do_shrink_slab`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShrinkResult {
    /// Objects freed.
    pub freed: u64,
    /// Objects scanned.
    pub scanned: u64,
    /// Pages given back to the allocator.
    pub pages_freed: u64,
    /// The deferred count left for the next call.
    pub next_deferred: i64,
}

/// One shrinker, one call (`do_shrink_slab`): see the module documentation for the rule.
/// `nr_deferred` is the work deferred by earlier calls; the result says what to keep.
pub fn do_shrink_slab(
    shrinker: &dyn Shrinker,
    sc: &mut ShrinkControl,
    priority: u32,
    nr_deferred: i64,
) -> ShrinkResult {
    let freeable = shrinker.count_objects(sc);
    if freeable == 0 || freeable == SHRINK_EMPTY {
        return ShrinkResult {
            freed: 0,
            scanned: 0,
            pages_freed: 0,
            next_deferred: nr_deferred,
        };
    }
    let batch = match shrinker.batch() {
        0 => SHRINK_BATCH,
        b => b,
    };
    let nr = nr_deferred.max(0) as u64;
    let delta = match shrinker.seeks() {
        0 => freeable / 2,
        s => ((freeable >> priority) * 4) / s as u64,
    };
    let mut total_scan = ((nr >> priority) + delta).min(2 * freeable);
    let (mut freed, mut scanned, mut pages) = (0u64, 0u64, 0u64);
    while total_scan >= batch || total_scan >= freeable {
        let n = batch.min(total_scan);
        sc.nr_to_scan = n;
        sc.nr_scanned = n;
        sc.pages_freed = 0;
        let ret = shrinker.scan_objects(sc);
        pages += sc.pages_freed;
        if ret == SHRINK_STOP {
            break;
        }
        freed += ret;
        let done = sc.nr_scanned.min(total_scan).max(1);
        total_scan -= done;
        scanned += done;
    }
    let next = (nr as i64 + delta as i64 - scanned as i64).max(0);
    ShrinkResult {
        freed,
        scanned,
        pages_freed: pages,
        next_deferred: next.min(2 * freeable as i64),
    }
}

impl<P: Platform> PageAllocator<P> {
    /// Register a shrinker (`register_shrinker`).
    pub fn register_shrinker(&self, s: &'static dyn Shrinker) -> Result<ShrinkerId, ShrinkerError> {
        let reg = &self.reclaim.shrinkers;
        let mut slots = reg.slots.lock_irqsave(self.platform());
        let i = slots
            .iter()
            .position(|s| s.is_none())
            .ok_or(ShrinkerError::Full)?;
        slots[i] = Some(s);
        reg.nr_deferred[i].store(0, Ordering::Relaxed);
        Ok(ShrinkerId(i))
    }

    /// Unregister a shrinker (`shrinker_free`); returns once no reclaim is running any
    /// shrinker, so the object may then go away.
    pub fn unregister_shrinker(&self, id: ShrinkerId) {
        let reg = &self.reclaim.shrinkers;
        if let Some(s) = reg.slots.lock_irqsave(self.platform()).get_mut(id.0) {
            *s = None;
        }
        while reg.active.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
        }
    }

    /// The work deferred for a shrinker (for tests and views).
    pub fn shrinker_nr_deferred(&self, id: ShrinkerId) -> i64 {
        self.reclaim
            .shrinkers
            .nr_deferred
            .get(id.0)
            .map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// Call every shrinker for node `nid` at `priority` (`shrink_slab`), counting
    /// `slabs_scanned`. Returns the pages the shrinkers gave back.
    pub fn shrink_slab(&self, gfp: Gfp, nid: usize, priority: u32) -> u64 {
        let reg = &self.reclaim.shrinkers;
        reg.active.fetch_add(1, Ordering::AcqRel);
        let snapshot = *reg.slots.lock_irqsave(self.platform());
        let mut pages = 0;
        for (i, s) in snapshot.iter().enumerate() {
            let Some(s) = s else { continue };
            let mut sc = ShrinkControl {
                gfp,
                nid,
                nr_to_scan: 0,
                nr_scanned: 0,
                pages_freed: 0,
            };
            let deferred = reg.nr_deferred[i].swap(0, Ordering::AcqRel);
            let r = do_shrink_slab(*s, &mut sc, priority, deferred);
            reg.nr_deferred[i].fetch_add(r.next_deferred, Ordering::AcqRel);
            if r.scanned > 0 {
                self.count_vm_events(VmEvent::SlabsScanned, r.scanned);
            }
            pages += r.pages_freed;
        }
        reg.active.fetch_sub(1, Ordering::AcqRel);
        pages
    }
}
