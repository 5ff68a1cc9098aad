//! Spinlocks for the allocator: the zone lock and the other short locks (Linux:
//! `spinlock_t` with `spin_lock_irqsave`). The per-CPU pageset lock has its own type,
//! biased towards its CPU ([`crate::port::pcp_lock`]).
//!
//! The allocator cannot sleep and cannot allocate while it holds a lock, and it is called
//! from interrupt handlers, so its locks are busy-waiting spinlocks taken with local
//! interrupts disabled: an interrupt arriving on a CPU that holds a zone lock and then
//! allocating would otherwise spin forever on a lock its own CPU holds. [`SpinLock`] is a
//! test-and-test-and-set lock on one atomic byte: uncontended acquisition is a single
//! compare-exchange on a line the owner usually already holds, and waiters spin on plain
//! loads so they do not bounce the line while they wait.
//!
//! # Lock order
//!
//! ```text
//!     pcp->lock  (one per CPU per zone, PerCpuPages; a PcpLock)
//!        └─> zone->lock  (one per zone, the buddy free areas)
//! ```
//!
//! A pcp lock may be held while taking a zone lock (refilling a pcp list with
//! `rmqueue_bulk`, draining it with `free_pcppages_bulk`); a zone lock is never held while
//! taking a pcp lock. Two zone locks are never held together, and a CPU holds at most its
//! own pcp lock or, when draining remotely or checking invariants, the pcp locks of one
//! zone in increasing CPU order. Nothing that can block or allocate runs under any of them.
//!
//! # Interrupts
//!
//! [`SpinLock::lock_irqsave`] disables local interrupts through the [`Platform`] and
//! restores them when the guard drops (after the lock is released). [`SpinLock::lock`] and
//! [`SpinLock::try_lock`] are for callers that already run with interrupts disabled, as
//! the pcp paths do when they take the zone lock: they save and restore interrupts once
//! around the whole operation.
//! Using them with interrupts enabled is not memory-unsafe, but can deadlock if an
//! interrupt handler on the same CPU then takes the same lock; callers that have the
//! platform at hand use [`SpinLock::lock_irqs_off`] / [`SpinLock::try_lock_irqs_off`],
//! which check it in debug builds.

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::port::platform::{IrqState, Platform};

/// A busy-waiting mutual-exclusion lock around a `T`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, so sharing the lock between
// threads only ever moves access to `T` between them: `T: Send` suffices, as for
// `std::sync::Mutex`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `value`.
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(value),
        }
    }

    /// Take the lock, spinning while another CPU holds it. The caller must have local
    /// interrupts disabled (see the module documentation).
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinLockGuard { lock: self };
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// Take the lock if it is free (`spin_trylock`). The caller must have local interrupts
    /// disabled.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinLockGuard { lock: self })
    }

    /// [`SpinLock::lock`], checking in debug builds that the caller has local interrupts
    /// disabled, as the lock requires (`lockdep_assert_irqs_disabled`): the proof comes
    /// from the platform that disabled them.
    #[inline]
    #[track_caller]
    pub fn lock_irqs_off<P: Platform + ?Sized>(&self, platform: &P) -> SpinLockGuard<'_, T> {
        debug_assert!(
            platform.irqs_disabled(),
            "SpinLock taken with local interrupts enabled on cpu {}",
            platform.cpu_id()
        );
        self.lock()
    }

    /// [`SpinLock::try_lock`] with the same debug check as [`SpinLock::lock_irqs_off`].
    #[inline]
    #[track_caller]
    pub fn try_lock_irqs_off<P: Platform + ?Sized>(
        &self,
        platform: &P,
    ) -> Option<SpinLockGuard<'_, T>> {
        debug_assert!(
            platform.irqs_disabled(),
            "SpinLock taken with local interrupts enabled on cpu {}",
            platform.cpu_id()
        );
        self.try_lock()
    }

    /// Disable local interrupts, then take the lock (`spin_lock_irqsave`). Dropping the
    /// guard releases the lock and then restores the interrupt state.
    #[inline]
    pub fn lock_irqsave<'a, P: Platform + ?Sized>(
        &'a self,
        platform: &'a P,
    ) -> SpinLockIrqGuard<'a, T, P> {
        let irq = platform.local_irq_save();
        let guard = self.lock();
        // The irq guard takes over releasing the lock.
        core::mem::forget(guard);
        SpinLockIrqGuard {
            lock: self,
            platform,
            irq: Some(irq),
        }
    }

    /// True if some CPU holds the lock (a racy hint, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    /// The protected value, through exclusive access to the lock itself (no locking
    /// needed: `&mut self` proves nobody else can hold it).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock")
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// Holds a [`SpinLock`]; releases it on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this CPU holds the lock, which excludes every
        // other guard, so no `&mut T` to the data exists elsewhere.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference derived from
        // this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// Holds a [`SpinLock`] taken with [`SpinLock::lock_irqsave`]; on drop releases the lock,
/// then restores the saved interrupt state.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinLockIrqGuard<'a, T, P: Platform + ?Sized> {
    lock: &'a SpinLock<T>,
    platform: &'a P,
    irq: Option<IrqState>,
}

impl<T, P: Platform + ?Sized> Deref for SpinLockIrqGuard<'_, T, P> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this CPU holds the lock (taken in
        // `lock_irqsave`, released in `drop`), which excludes every other guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T, P: Platform + ?Sized> DerefMut for SpinLockIrqGuard<'_, T, P> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference derived from
        // this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T, P: Platform + ?Sized> Drop for SpinLockIrqGuard<'_, T, P> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        if let Some(irq) = self.irq.take() {
            self.platform.local_irq_restore(irq);
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::port::sim::SimPlatform;

    #[test]
    fn lock_excludes_and_restores_interrupts() {
        let p = SimPlatform::new(0, 1 << 20, 4).unwrap();
        let l = SpinLock::new(0u64);
        {
            let mut g = l.lock_irqsave(&p);
            assert!(p.irqs_disabled());
            assert!(l.try_lock().is_none());
            *g += 1;
        }
        assert!(!p.irqs_disabled());
        assert!(!l.is_locked());
        p.run_on_cpus(|_| {
            for _ in 0..10_000 {
                *l.lock_irqsave(&p) += 1;
            }
        });
        assert_eq!(*l.lock_irqsave(&p), 40_001);
    }

    #[test]
    fn lock_irqs_off_accepts_disabled_interrupts() {
        let p = SimPlatform::new(0, 1 << 20, 1).unwrap();
        let l = SpinLock::new(1u32);
        let irq = p.local_irq_save();
        assert_eq!(*l.lock_irqs_off(&p), 1);
        assert!(l.try_lock_irqs_off(&p).is_some());
        p.local_irq_restore(irq);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "SpinLock taken with local interrupts enabled")]
    fn lock_irqs_off_with_interrupts_enabled_is_caught() {
        let p = SimPlatform::new(0, 1 << 20, 1).unwrap();
        let l = SpinLock::new(0u32);
        let _g = l.lock_irqs_off(&p);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "SpinLock taken with local interrupts enabled")]
    fn try_lock_irqs_off_with_interrupts_enabled_is_caught() {
        let p = SimPlatform::new(0, 1 << 20, 1).unwrap();
        let l = SpinLock::new(0u32);
        let _g = l.try_lock_irqs_off(&p);
    }
}
