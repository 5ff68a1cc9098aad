//! The per-CPU pageset lock (`pcp->lock`), biased towards the CPU that owns the lists.
//!
//! Almost every hold of a CPU's pcp lists is by that CPU itself, on the order-0 fast path
//! (`rmqueue_pcplist`, `free_unref_page`), a few tens of nanoseconds each. Other CPUs take
//! them rarely: `drain_all_pages` before a contiguous allocation or an offline, a change of
//! `high` and `batch`, a statistics or invariant reader. A plain spinlock makes every fast
//! path pay one atomic read-modify-write to take it, and on the free path that is one of
//! the only two such instructions left (the other drops the page's reference), about a
//! fifth of an order-0 free on the host.
//!
//! Linux had the same trade twice: before 6.0 the lists were protected by disabling
//! interrupts only, and remote drains ran on the owning CPU (work items and IPIs); since
//! 6.0 they have a spinlock that remote CPUs take directly. This lock keeps the second
//! design's interface (any CPU may take any pcp) at the first design's fast-path cost,
//! with an *asymmetric* Dekker protocol:
//!
//! - **The owner** ([`PcpLock::try_lock_owner`], interrupts off) stores `busy = true` with
//!   a plain store, then reads `claimed`: if nobody claims the lists it holds them, and
//!   its release is a plain store of `busy = false`. If a claim is up, it backs off and the
//!   caller takes its fallback (the buddy lists under the zone lock), as Linux's
//!   `pcp_spin_trylock` callers do.
//! - **Everyone else** ([`PcpLock::lock`]) raises `claimed`, asks the platform for a memory
//!   barrier on the owner CPU ([`Platform::cpu_barrier`]: the `membarrier` system call in
//!   the host simulation, an IPI in the kernel), takes the inner spinlock that orders such
//!   holders among themselves, and waits for `busy` to be false.
//!
//! Without a store-load fence, the owner's store of `busy` could still sit in its store
//! buffer when it reads `claimed`: both sides would read the other's flag as clear. The
//! barrier closes that: it runs a full fence on the owner at some point after `claimed`
//! was raised. If the owner's read of `claimed` comes after that point, it sees the claim;
//! if it came before, so did its store of `busy`, which the claimer then sees. The
//! expensive half (a system call or an interrupt, microseconds) is paid by the rare side.
//!
//! A platform that cannot provide the barrier ([`Platform::has_cpu_barrier`] false, the
//! trait's default) gets the symmetric protocol: the owner stores `busy` with an atomic
//! swap, which is a full fence, so the lock costs what a spinlock costs.
//!
//! # Interrupts and deadlock
//!
//! The barrier may need the owner to take an interrupt, so nobody waits for a barrier
//! while the owner might be waiting, with interrupts off, on something the barrier's
//! caller holds: a claimer raises `claimed` and asks for the barrier *before* it takes the
//! inner spinlock, and the owner's fast path never waits at all. Holders of the inner
//! spinlock wait only for `busy`, which the owner clears within its bounded fast path. A
//! claimer spins on the inner lock with interrupts enabled (as the caller had them) and
//! disables them once it holds it, like `spin_lock_irqsave`, so an interrupt handler on its
//! own CPU cannot spin on a lock its CPU holds. What remains is the rule every IPI-based
//! call has: on a platform whose barrier is an interrupt, take another CPU's lists
//! ([`PcpLock::lock`] with another CPU's lock) with interrupts enabled, or two CPUs asking
//! for each other's barrier with interrupts off wait forever.
//!
//! # The owner rule
//!
//! The fast path is sound only if one thread of execution at a time uses it for a given
//! lock: the owner CPU with interrupts disabled, which is what [`Platform::cpu_id`] and
//! [`Platform::local_irq_save`] promise (one host thread per simulated CPU in the
//! simulation). [`PcpLock::try_lock_owner`] is therefore `unsafe`; debug builds check that
//! the caller is the owner and that no other owner hold is in progress.

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, compiler_fence};

use crate::port::platform::{IrqState, Platform};

/// A lock around one CPU's pcp lists, cheap for that CPU (see the module documentation).
pub struct PcpLock<T> {
    /// True while the owner holds the lists through its fast path.
    busy: AtomicBool,
    /// Holders other than the owner's fast path that have announced themselves and not yet
    /// released.
    claimed: AtomicU32,
    /// Orders those holders among themselves.
    inner: AtomicBool,
    /// The CPU whose lists these are.
    owner: u32,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time (an owner hold excludes the
// claimers through `busy`/`claimed`, claimers exclude each other through `inner`), so
// sharing it only moves access to `T` between threads: `T: Send` suffices.
unsafe impl<T: Send> Sync for PcpLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for PcpLock<T> {}

impl<T> PcpLock<T> {
    /// An unheld lock for CPU `owner`'s lists `value`.
    pub const fn new(owner: u32, value: T) -> PcpLock<T> {
        PcpLock {
            busy: AtomicBool::new(false),
            claimed: AtomicU32::new(0),
            inner: AtomicBool::new(false),
            owner,
            data: UnsafeCell::new(value),
        }
    }

    /// The CPU whose lists these are.
    pub fn owner(&self) -> usize {
        self.owner as usize
    }

    /// The owner's fast path (`pcp_spin_trylock`): hold the lists unless another CPU has
    /// claimed them, in which case the caller falls back to the buddy lists. Never waits.
    ///
    /// # Safety
    ///
    /// The caller runs as CPU [`PcpLock::owner`] (`platform.cpu_id()`) with local
    /// interrupts disabled, so that no other owner hold of this lock can be in progress:
    /// the hold is a plain store, not an atomic exchange, and two owner holds at once
    /// would both get the lists.
    #[inline(always)]
    pub unsafe fn try_lock_owner<P: Platform + ?Sized>(
        &self,
        platform: &P,
    ) -> Option<PcpOwnerGuard<'_, T>> {
        debug_assert!(
            platform.irqs_disabled() && platform.cpu_id() == self.owner(),
            "pcp owner path taken by cpu {} (interrupts disabled: {}) on cpu {}'s lists",
            platform.cpu_id(),
            platform.irqs_disabled(),
            self.owner
        );
        // A second hold by the owner while it holds the lists (only the owner writes
        // `busy`, so a plain load tells) gets nothing, as a spinlock's trylock would.
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        if platform.has_cpu_barrier() {
            // A plain store: a claimer's barrier orders it against our read of `claimed`.
            self.busy.store(true, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
        } else {
            // No barrier to rely on: the swap is the store-load fence.
            self.busy.swap(true, Ordering::SeqCst);
        }
        if self.claimed.load(Ordering::SeqCst) != 0 {
            self.busy.store(false, Ordering::Release);
            return None;
        }
        Some(PcpOwnerGuard { lock: self })
    }

    /// Hold the lists from any CPU, the owner included, waiting as long as it takes
    /// (`pcp_spin_lock` for a remote drain or an update of `high`). Interrupts are
    /// disabled while the guard lives and restored to the caller's state when it drops.
    ///
    /// On a platform whose barrier is an interrupt, call it with interrupts enabled when
    /// the lists are another CPU's (see the module documentation).
    pub fn lock<'a, P: Platform + ?Sized>(&'a self, platform: &'a P) -> PcpLockGuard<'a, T, P> {
        // Raised with interrupts off, so the CPU read with it is the one that raised it: if
        // that is the owner, no owner hold is in progress (it would be us) and the owner's
        // next one comes after the claim in its own program order, barrier or not.
        let on_owner = {
            let irq = platform.local_irq_save();
            self.claimed.fetch_add(1, Ordering::SeqCst);
            let me = platform.cpu_id();
            platform.local_irq_restore(irq);
            me == self.owner()
        };
        // The owner waiting below for its own fast-path hold to end would wait forever.
        debug_assert!(
            !(on_owner && self.busy.load(Ordering::Relaxed)),
            "cpu {}'s pcp lists taken by their owner inside its own fast-path hold",
            self.owner
        );
        if !on_owner && platform.has_cpu_barrier() {
            platform.cpu_barrier(self.owner());
        }
        let irq = loop {
            let irq = platform.local_irq_save();
            if self
                .inner
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break irq;
            }
            platform.local_irq_restore(irq);
            while self.inner.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        };
        // The owner's fast path ends within a bounded time and cannot start again while
        // `claimed` is up.
        while self.busy.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        PcpLockGuard {
            lock: self,
            platform,
            irq: Some(irq),
        }
    }

    /// True if some CPU holds or claims the lists (a racy hint, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.busy.load(Ordering::Relaxed) || self.claimed.load(Ordering::Relaxed) != 0
    }
}

impl<T> fmt::Debug for PcpLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcpLock")
            .field("owner", &self.owner)
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// The owner's fast-path hold of a [`PcpLock`]; released on drop with a plain store.
#[must_use = "the lists are released as soon as the guard is dropped"]
pub struct PcpOwnerGuard<'a, T> {
    lock: &'a PcpLock<T>,
}

impl<T> Deref for PcpOwnerGuard<'_, T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the owner holds the lists (`busy` set, no
        // claim seen), which excludes every claimer, and the owner rule excludes a second
        // owner hold.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for PcpOwnerGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference derived from
        // this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for PcpOwnerGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.busy.store(false, Ordering::Release);
    }
}

/// A hold of a [`PcpLock`] by [`PcpLock::lock`]: releases it, then restores interrupts.
#[must_use = "the lists are released as soon as the guard is dropped"]
pub struct PcpLockGuard<'a, T, P: Platform + ?Sized> {
    lock: &'a PcpLock<T>,
    platform: &'a P,
    irq: Option<IrqState>,
}

impl<T, P: Platform + ?Sized> Deref for PcpLockGuard<'_, T, P> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds `inner` (no other claimer holds the lists) and saw `busy`
        // false after raising `claimed` and the barrier (no owner hold is in progress or
        // can start): see the module documentation.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T, P: Platform + ?Sized> DerefMut for PcpLockGuard<'_, T, P> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference derived from
        // this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T, P: Platform + ?Sized> Drop for PcpLockGuard<'_, T, P> {
    #[inline]
    fn drop(&mut self) {
        self.lock.inner.store(false, Ordering::Release);
        self.lock.claimed.fetch_sub(1, Ordering::Release);
        if let Some(irq) = self.irq.take() {
            self.platform.local_irq_restore(irq);
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::port::platform::LocalIrqGuard;
    use crate::port::sim::SimPlatform;
    use std::sync::atomic::AtomicU64;

    /// CPU 0 takes its own lists on the fast path, over and over until the other CPUs
    /// are done, while they take them with `lock`; every hold adds one to a counter that
    /// is not atomic (read, then written back), and the sums must come out exact, with and
    /// without the platform's barrier.
    fn owner_and_claimers_exclude_each_other(p: SimPlatform) {
        const CLAIMS: u64 = 2_000;
        let l = PcpLock::new(0, (0u64, 0u64));
        let (owner_holds, fallbacks, done) =
            (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let claimers = p.nr_cpus() as u64 - 1;
        p.run_on_cpus(|cpu| {
            if cpu == 0 {
                while done.load(Ordering::Relaxed) < claimers {
                    let _irq = LocalIrqGuard::new(&p);
                    // SAFETY: this thread is CPU 0, the lock's owner, with interrupts off.
                    match unsafe { l.try_lock_owner(&p) } {
                        Some(mut g) => {
                            // A hold long enough for a claimer that does not wait to
                            // land inside it.
                            let v = core::hint::black_box(g.0);
                            for _ in 0..50 {
                                core::hint::spin_loop();
                            }
                            g.0 = v + 1;
                            owner_holds.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            fallbacks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            } else {
                for _ in 0..CLAIMS {
                    let mut g = l.lock(&p);
                    assert!(p.irqs_disabled());
                    let (v, w) = core::hint::black_box((g.0, g.1));
                    g.0 = v + 1;
                    g.1 = w + 1;
                }
                assert!(!p.irqs_disabled());
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
        let g = l.lock(&p);
        let claims = CLAIMS * claimers;
        assert_eq!(g.1, claims, "claimer holds lost");
        assert_eq!(
            g.0,
            owner_holds.load(Ordering::Relaxed) + claims,
            "holds lost or doubled ({} owner fallbacks)",
            fallbacks.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn owner_fast_path_and_remote_holds_exclude_each_other_with_the_barrier() {
        let p = SimPlatform::new(0, 1 << 20, 3).unwrap();
        if !p.has_cpu_barrier() {
            // A host without membarrier (a seccomp filter, not Linux): the simulation then
            // runs the symmetric protocol, which the next test covers anyway.
            eprintln!("the host refused membarrier: testing the symmetric protocol");
        }
        owner_and_claimers_exclude_each_other(p);
    }

    #[test]
    fn owner_fast_path_and_remote_holds_exclude_each_other_without_the_barrier() {
        let p = SimPlatform::new(0, 1 << 20, 3)
            .unwrap()
            .without_cpu_barrier();
        assert!(!p.has_cpu_barrier());
        owner_and_claimers_exclude_each_other(p);
    }

    #[test]
    fn a_claim_makes_the_owner_fall_back_and_its_release_ends_that() {
        let p = SimPlatform::new(0, 1 << 20, 2).unwrap();
        let l = PcpLock::new(0, 5u32);
        let _irq = LocalIrqGuard::new(&p);
        {
            // SAFETY: this thread is CPU 0, the owner, with interrupts off.
            let g = unsafe { l.try_lock_owner(&p) }.expect("unclaimed lists");
            assert_eq!(*g, 5);
            assert!(l.is_locked());
            // A second owner hold while the first lives gets nothing.
            // SAFETY: as above.
            assert!(unsafe { l.try_lock_owner(&p) }.is_none());
            assert_eq!(*g, 5);
        }
        assert!(!l.is_locked());
        l.claimed.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as above.
        assert!(unsafe { l.try_lock_owner(&p) }.is_none());
        assert!(
            !l.busy.load(Ordering::Relaxed),
            "a failed attempt leaves busy set"
        );
        l.claimed.fetch_sub(1, Ordering::SeqCst);
        {
            let mut g = l.lock(&p);
            *g = 6;
        }
        assert_eq!(l.claimed.load(Ordering::Relaxed), 0);
        // SAFETY: as above.
        assert_eq!(unsafe { l.try_lock_owner(&p) }.map(|g| *g), Some(6));
    }
}
