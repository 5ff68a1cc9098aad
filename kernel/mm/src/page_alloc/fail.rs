//! Fault injection for the page allocator (Linux: `mm/fail_page_alloc.c` on top of
//! `lib/fault-inject.c`): make a chosen share of allocations fail, so that the error paths
//! of their callers run on demand instead of only when memory really runs out.
//!
//! # The attributes
//!
//! Their meaning is Linux's (`Documentation/fault-injection/fault-injection.rst`), and so
//! are their defaults: injection is off until `probability` is made non-zero.
//!
//! | attribute | default | meaning |
//! | --- | --- | --- |
//! | `probability` | 0 | percent of the eligible requests that fail (0 to 100) |
//! | `interval` | 1 | only every `interval`-th eligible request may fail (0 and 1: each) |
//! | `times` | 1 | failures left to inject; -1: no limit. Counts down to 0, then no more |
//! | `space` | 0 | the first `space` pages asked for (sum of `2^order`) are spared |
//! | `ignore-gfp-highmem` | Y | `__GFP_HIGHMEM` requests are never failed |
//! | `ignore-gfp-wait` | Y | requests that may reclaim (`__GFP_DIRECT_RECLAIM`) are never failed |
//! | `min-order` | 1 | requests below this order are never failed |
//! | `migratetype-mask` | 7 | ours: bit 0 Unmovable, 1 Movable, 2 Reclaimable; only requests whose migratetype has its bit set may fail |
//!
//! A request is eligible when its order, flags and migratetype pass the filters (in
//! Linux's order: `min-order`, `__GFP_NOFAIL`, highmem, reclaim, then our mask).
//! `__GFP_NOFAIL` requests are never failed. For an eligible request the checks run as in
//! `should_fail_ex`: no failure left (`times` 0), `space` still covering the request
//! (which uses it up), not the `interval`-th request, or the die roll above
//! `probability`, each spares it; otherwise it fails and `times` counts down. Two CPUs
//! racing for the last failure cannot both take it: `times` is decremented by a
//! compare-and-swap that refuses to go below zero, so `times = N` means exactly `N`
//! failures.
//!
//! # Where it acts
//!
//! `__alloc_pages` asks once per request, after the request is validated (an impossible
//! request is still refused as such) and before any free list is looked at, as Linux's
//! `prepare_alloc_pages` does; `alloc_pages_bulk` asks once per batch and, refused, falls
//! back to single allocations, which ask again. A refused request returns
//! [`AllocError::NoMemory`](crate::page_alloc::AllocError::NoMemory), is counted in
//! `pgalloc_fail_injected` and in `pgalloc_fail`, and is reported (rate-limited, with the
//! allocator's other failure reports, on a budget of its own) unless `__GFP_NOWARN`. The full `warn_alloc` dump
//! is skipped: memory is not short.
//!
//! Ours, beyond Linux: compaction's migration targets come from its free scanner, not
//! from `alloc_pages`, so Linux's injection never reaches them. Here `compaction_alloc`
//! asks too, as an order-0 `GFP_HIGHUSER_MOVABLE` request (what Linux's
//! `alloc_migration_target` asks for a movable page), so with `min-order` 0 and
//! `ignore-gfp-highmem` N the target allocation of compaction fails on demand and its
//! `-ENOMEM` path runs. Such a refusal is counted like the others.
//!
//! # Cost when off
//!
//! The allocation path reads one flag, [`FailPageAlloc::armed`] (`probability != 0`),
//! with a relaxed load; everything else is behind it, out of line and `#[cold]`.
//!
//! # The random source
//!
//! No `std`, no entropy: the die is a global SplitMix64 sequence. Each roll is one
//! relaxed `fetch_add` of the golden-ratio increment on a shared state word followed by
//! SplitMix64's output mix, reduced to `0..100` by a multiply-high. The sequence is fixed
//! by the seed ([`FailPageAlloc::set_seed`], default [`DEFAULT_SEED`]): a single CPU
//! replaying the same requests sees the same failures; several CPUs share one sequence,
//! so which of them gets which roll depends on timing, but no roll is lost or repeated.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use crate::model::mmzone::Migratetype;
use crate::page_alloc::bad_page::ReportLimit;
use crate::page_alloc::gfp::{Gfp, gfp_migratetype};

/// The SplitMix64 increment (2^64 / golden ratio).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
/// The seed the random source starts from.
pub const DEFAULT_SEED: u64 = 0x6661_696c_5f70_6167;
/// Every migratetype a request can have (Unmovable, Movable, Reclaimable).
pub const MIGRATETYPE_MASK_ALL: u32 = 0b111;
/// Largest value of the integer attributes (Linux keeps `times` and `space` in an `int`).
pub const FAIL_ATTR_MAX: i64 = i32::MAX as i64;

/// The attributes as one value (what the tunables show and what the command line sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailAttrs {
    /// Percent of eligible requests that fail, 0 to 100; 0 turns injection off.
    pub probability: u64,
    /// Only every `interval`-th eligible request may fail (0 and 1: every one).
    pub interval: u64,
    /// Failures left; -1 for no limit.
    pub times: i64,
    /// Pages spared before the first failure.
    pub space: i64,
    /// Never fail `__GFP_HIGHMEM` requests.
    pub ignore_gfp_highmem: bool,
    /// Never fail requests that may reclaim (`__GFP_DIRECT_RECLAIM`).
    pub ignore_gfp_wait: bool,
    /// Never fail requests below this order.
    pub min_order: u32,
    /// Ours: migratetypes that may fail (bit per [`Migratetype`] 0..=2).
    pub migratetype_mask: u32,
}

impl Default for FailAttrs {
    /// Linux's defaults: off (probability 0), interval 1, times 1, space 0, both ignore
    /// flags set, min-order 1; every migratetype.
    fn default() -> Self {
        FailAttrs {
            probability: 0,
            interval: 1,
            times: 1,
            space: 0,
            ignore_gfp_highmem: true,
            ignore_gfp_wait: true,
            min_order: 1,
            migratetype_mask: MIGRATETYPE_MASK_ALL,
        }
    }
}

/// An attribute value outside its accepted range. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailAttrError {
    /// The attribute's file name (`probability`, `times`, ...).
    pub name: &'static str,
    /// The value given.
    pub value: i64,
    /// What is accepted.
    pub accepted: &'static str,
}

impl core::fmt::Display for FailAttrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "fail_page_alloc/{} = {}: invalid value, accepted: {}",
            self.name, self.value, self.accepted
        )
    }
}

impl core::error::Error for FailAttrError {}

/// Why a `fail_page_alloc=` command-line value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailCmdlineError {
    /// Not four comma-separated integers.
    Format,
    /// A field is out of its range.
    Attr(FailAttrError),
}

impl core::fmt::Display for FailCmdlineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FailCmdlineError::Format => f.write_str(
                "expected <interval>,<probability>,<space>,<times> (four integers, times -1 for no limit)",
            ),
            FailCmdlineError::Attr(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for FailCmdlineError {}

fn check(
    name: &'static str,
    v: i64,
    lo: i64,
    hi: i64,
    accepted: &'static str,
) -> Result<(), FailAttrError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(FailAttrError {
            name,
            value: v,
            accepted,
        })
    }
}

impl FailAttrs {
    /// Check every field's range.
    pub fn validate(&self) -> Result<(), FailAttrError> {
        check_probability(self.probability as i64)?;
        check_interval(self.interval as i64)?;
        check_times(self.times)?;
        check_space(self.space)?;
        check_min_order(self.min_order as i64)?;
        check_migratetype_mask(self.migratetype_mask as i64)
    }

    /// Parse Linux's boot syntax `<interval>,<probability>,<space>,<times>` (decimal;
    /// `times` may be -1) over `self`: the four fields change, the filters keep their
    /// values. All or nothing.
    pub fn with_cmdline(mut self, text: &str) -> Result<FailAttrs, FailCmdlineError> {
        let mut f = text.trim().split(',');
        let mut next = || -> Result<i64, FailCmdlineError> {
            f.next()
                .and_then(|w| w.trim().parse::<i64>().ok())
                .ok_or(FailCmdlineError::Format)
        };
        let (interval, probability, space, times) = (next()?, next()?, next()?, next()?);
        if f.next().is_some() {
            return Err(FailCmdlineError::Format);
        }
        let attr = FailCmdlineError::Attr;
        check_interval(interval).map_err(attr)?;
        check_probability(probability).map_err(attr)?;
        check_space(space).map_err(attr)?;
        check_times(times).map_err(attr)?;
        self.interval = interval as u64;
        self.probability = probability as u64;
        self.space = space;
        self.times = times;
        Ok(self)
    }
}

/// `probability`: 0 to 100.
pub fn check_probability(v: i64) -> Result<(), FailAttrError> {
    check("probability", v, 0, 100, "0 to 100")
}
/// `interval`: 0 to 2^31-1 (0 and 1 both mean every request).
pub fn check_interval(v: i64) -> Result<(), FailAttrError> {
    check("interval", v, 0, FAIL_ATTR_MAX, "0 to 2147483647")
}
/// `times`: -1 (no limit) or 0 to 2^31-1.
pub fn check_times(v: i64) -> Result<(), FailAttrError> {
    check(
        "times",
        v,
        -1,
        FAIL_ATTR_MAX,
        "-1 (no limit), or 0 to 2147483647",
    )
}
/// `space`: 0 to 2^31-1 pages.
pub fn check_space(v: i64) -> Result<(), FailAttrError> {
    check("space", v, 0, FAIL_ATTR_MAX, "0 to 2147483647")
}
/// `min-order`: 0 to 2^31-1 (orders above the largest simply never fail).
pub fn check_min_order(v: i64) -> Result<(), FailAttrError> {
    check("min-order", v, 0, FAIL_ATTR_MAX, "0 to 2147483647")
}
/// `migratetype-mask`: 0 to 7.
pub fn check_migratetype_mask(v: i64) -> Result<(), FailAttrError> {
    check(
        "migratetype-mask",
        v,
        0,
        MIGRATETYPE_MASK_ALL as i64,
        "0 to 7 (bit 0 Unmovable, 1 Movable, 2 Reclaimable)",
    )
}

/// The live fault-injection state of one allocator (Linux keeps one global
/// `fail_page_alloc`; here each allocator has its own, so host tests running side by
/// side do not disturb each other). Every field is atomic: the attributes may be changed
/// while other CPUs allocate.
#[derive(Debug)]
pub struct FailPageAlloc {
    /// `probability != 0`: the one thing the allocation path reads when injection is off.
    armed: AtomicBool,
    probability: AtomicU64,
    interval: AtomicU64,
    times: AtomicI64,
    space: AtomicI64,
    ignore_gfp_highmem: AtomicBool,
    ignore_gfp_wait: AtomicBool,
    min_order: AtomicU32,
    migratetype_mask: AtomicU32,
    /// Eligible requests seen, for `interval`.
    count: AtomicU64,
    /// The SplitMix64 state.
    rng: AtomicU64,
    /// Reports of injected failures are thinned out on their own budget (10, then one
    /// in a thousand), so that they never use up the one real failures are reported on.
    pub(crate) report_limit: ReportLimit,
}

impl Default for FailPageAlloc {
    fn default() -> Self {
        FailPageAlloc::new()
    }
}

impl FailPageAlloc {
    /// Injection off, Linux's defaults, the default seed.
    pub const fn new() -> FailPageAlloc {
        FailPageAlloc {
            armed: AtomicBool::new(false),
            probability: AtomicU64::new(0),
            interval: AtomicU64::new(1),
            times: AtomicI64::new(1),
            space: AtomicI64::new(0),
            ignore_gfp_highmem: AtomicBool::new(true),
            ignore_gfp_wait: AtomicBool::new(true),
            min_order: AtomicU32::new(1),
            migratetype_mask: AtomicU32::new(MIGRATETYPE_MASK_ALL),
            count: AtomicU64::new(0),
            rng: AtomicU64::new(DEFAULT_SEED),
            report_limit: ReportLimit::new(10),
        }
    }

    /// Is injection on (`probability != 0`)? One relaxed load: the allocation path's
    /// whole cost while injection is off.
    #[inline(always)]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// The current attributes.
    pub fn attrs(&self) -> FailAttrs {
        FailAttrs {
            probability: self.probability.load(Ordering::Relaxed),
            interval: self.interval.load(Ordering::Relaxed),
            times: self.times.load(Ordering::Relaxed),
            space: self.space.load(Ordering::Relaxed),
            ignore_gfp_highmem: self.ignore_gfp_highmem.load(Ordering::Relaxed),
            ignore_gfp_wait: self.ignore_gfp_wait.load(Ordering::Relaxed),
            min_order: self.min_order.load(Ordering::Relaxed),
            migratetype_mask: self.migratetype_mask.load(Ordering::Relaxed),
        }
    }

    /// Set every attribute at once (checked first: all or nothing). The `interval`
    /// count restarts. Setting [`FailAttrs::default`] turns injection off.
    pub fn set_attrs(&self, a: FailAttrs) -> Result<(), FailAttrError> {
        a.validate()?;
        // Off while the filters change, so no request sees half of the new setting.
        self.armed.store(false, Ordering::Relaxed);
        self.interval.store(a.interval, Ordering::Relaxed);
        self.times.store(a.times, Ordering::Relaxed);
        self.space.store(a.space, Ordering::Relaxed);
        self.ignore_gfp_highmem
            .store(a.ignore_gfp_highmem, Ordering::Relaxed);
        self.ignore_gfp_wait
            .store(a.ignore_gfp_wait, Ordering::Relaxed);
        self.min_order.store(a.min_order, Ordering::Relaxed);
        self.migratetype_mask
            .store(a.migratetype_mask, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.set_probability(a.probability)
    }

    /// Turn injection off (probability 0); the other attributes stay.
    pub fn disable(&self) {
        self.probability.store(0, Ordering::Relaxed);
        self.armed.store(false, Ordering::Release);
    }

    /// `probability`: 0 to 100; non-zero turns injection on.
    pub fn set_probability(&self, v: u64) -> Result<(), FailAttrError> {
        check_probability(v.min(i64::MAX as u64) as i64)?;
        self.probability.store(v, Ordering::Relaxed);
        self.armed.store(v != 0, Ordering::Release);
        Ok(())
    }

    /// `interval`.
    pub fn set_interval(&self, v: u64) -> Result<(), FailAttrError> {
        check_interval(v.min(i64::MAX as u64) as i64)?;
        self.interval.store(v, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// `times`: -1 or 0 to 2^31-1.
    pub fn set_times(&self, v: i64) -> Result<(), FailAttrError> {
        check_times(v)?;
        self.times.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// `space`.
    pub fn set_space(&self, v: i64) -> Result<(), FailAttrError> {
        check_space(v)?;
        self.space.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// `ignore-gfp-highmem`.
    pub fn set_ignore_gfp_highmem(&self, v: bool) {
        self.ignore_gfp_highmem.store(v, Ordering::Relaxed);
    }

    /// `ignore-gfp-wait`.
    pub fn set_ignore_gfp_wait(&self, v: bool) {
        self.ignore_gfp_wait.store(v, Ordering::Relaxed);
    }

    /// `min-order`.
    pub fn set_min_order(&self, v: u64) -> Result<(), FailAttrError> {
        check_min_order(v.min(i64::MAX as u64) as i64)?;
        self.min_order.store(v as u32, Ordering::Relaxed);
        Ok(())
    }

    /// `migratetype-mask` (ours).
    pub fn set_migratetype_mask(&self, v: u64) -> Result<(), FailAttrError> {
        check_migratetype_mask(v.min(i64::MAX as u64) as i64)?;
        self.migratetype_mask.store(v as u32, Ordering::Relaxed);
        Ok(())
    }

    /// Restart the random sequence from `seed`.
    pub fn set_seed(&self, seed: u64) {
        self.rng.store(seed, Ordering::Relaxed);
    }

    /// A roll of the die: 0 to 99.
    fn roll_percent(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((u128::from(z) * 100) >> 64) as u64
    }

    /// Should this request fail (`should_fail_alloc_page`)? The filters, then
    /// [`FailPageAlloc::should_fail`] with the request's size in pages.
    #[cold]
    #[inline(never)]
    pub fn should_fail_alloc_page(&self, gfp: Gfp, order: u32) -> bool {
        if order < self.min_order.load(Ordering::Relaxed) {
            return false;
        }
        if gfp.contains(Gfp::NOFAIL) {
            return false;
        }
        if self.ignore_gfp_highmem.load(Ordering::Relaxed) && gfp.contains(Gfp::HIGHMEM) {
            return false;
        }
        if self.ignore_gfp_wait.load(Ordering::Relaxed) && gfp.contains(Gfp::DIRECT_RECLAIM) {
            return false;
        }
        let mt = match gfp_migratetype(gfp) {
            Ok(mt) => mt,
            Err(_) => return false,
        };
        if mt as u32 >= 32 || self.migratetype_mask.load(Ordering::Relaxed) & (1 << mt as u32) == 0
        {
            return false;
        }
        debug_assert!(matches!(
            mt,
            Migratetype::Unmovable | Migratetype::Movable | Migratetype::Reclaimable
        ));
        self.should_fail(1i64 << order.min(62))
    }

    /// The generic decision for an eligible request of `size` pages (`should_fail_ex`).
    pub fn should_fail(&self, size: i64) -> bool {
        let probability = self.probability.load(Ordering::Relaxed);
        if probability == 0 {
            return false;
        }
        if self.times.load(Ordering::Relaxed) == 0 {
            return false;
        }
        // `space` spares requests while it lasts, shrinking by each one's size.
        let spared = update(&self.space, |s| (s > size).then_some(s - size));
        if spared {
            return false;
        }
        let interval = self.interval.load(Ordering::Relaxed);
        if interval > 1 {
            let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            if !n.is_multiple_of(interval) {
                return false;
            }
        }
        if probability <= self.roll_percent() {
            return false;
        }
        // Take one failure from `times`, never below zero: a CPU that lost the race for
        // the last one lets its request through.
        update(&self.times, |t| match t {
            -1 => Some(-1),
            t if t > 0 => Some(t - 1),
            _ => None,
        })
    }
}

/// Replace `v` by `f(v)` atomically while `f` gives a value; false if it gave none.
fn update(a: &AtomicI64, f: impl Fn(i64) -> Option<i64>) -> bool {
    let mut cur = a.load(Ordering::Relaxed);
    loop {
        let Some(new) = f(cur) else {
            return false;
        };
        match a.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_alloc::gfp::{GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT};

    fn on(a: FailAttrs) -> FailPageAlloc {
        let f = FailPageAlloc::new();
        f.set_attrs(a).unwrap();
        f
    }

    #[test]
    fn linux_defaults_and_off() {
        let f = FailPageAlloc::new();
        assert!(!f.armed());
        assert_eq!(f.attrs(), FailAttrs::default());
        assert!(!f.should_fail_alloc_page(GFP_NOWAIT, 3));
    }

    #[test]
    fn filters() {
        let f = on(FailAttrs {
            probability: 100,
            times: -1,
            ..FailAttrs::default()
        });
        // min-order 1, ignore reclaim, ignore highmem by default.
        assert!(!f.should_fail_alloc_page(GFP_NOWAIT, 0));
        assert!(f.should_fail_alloc_page(GFP_NOWAIT, 1));
        assert!(f.should_fail_alloc_page(GFP_ATOMIC, 2));
        assert!(!f.should_fail_alloc_page(GFP_KERNEL, 2));
        assert!(!f.should_fail_alloc_page(GFP_NOWAIT | Gfp::HIGHMEM, 2));
        assert!(!f.should_fail_alloc_page(GFP_NOWAIT | Gfp::NOFAIL, 2));
        f.set_ignore_gfp_wait(false);
        assert!(f.should_fail_alloc_page(GFP_KERNEL, 2));
        assert!(!f.should_fail_alloc_page(GFP_KERNEL | Gfp::NOFAIL, 2));
        f.set_ignore_gfp_highmem(false);
        assert!(f.should_fail_alloc_page(GFP_HIGHUSER_MOVABLE, 2));
        f.set_migratetype_mask(0b101).unwrap();
        assert!(!f.should_fail_alloc_page(GFP_HIGHUSER_MOVABLE, 2));
        assert!(f.should_fail_alloc_page(GFP_KERNEL, 2));
        assert!(f.should_fail_alloc_page(GFP_KERNEL | Gfp::RECLAIMABLE, 2));
    }

    #[test]
    fn times_space_interval() {
        let f = on(FailAttrs {
            probability: 100,
            times: 3,
            space: 5,
            interval: 2,
            min_order: 0,
            ..FailAttrs::default()
        });
        // Space 5: order-0 requests spared while space > 1 (5 -> 4 -> 3 -> 2 -> 1).
        for _ in 0..4 {
            assert!(!f.should_fail(1));
        }
        // Then every second request fails, three times.
        let got: [bool; 8] = core::array::from_fn(|_| f.should_fail(1));
        assert_eq!(got, [false, true, false, true, false, true, false, false]);
        assert_eq!(f.attrs().times, 0);
    }

    #[test]
    fn probability_is_roughly_kept_and_seeded() {
        let f = on(FailAttrs {
            probability: 25,
            times: -1,
            min_order: 0,
            ..FailAttrs::default()
        });
        let a: u32 = (0..10_000).map(|_| f.should_fail(1) as u32).sum();
        assert!((2_200..2_800).contains(&a), "{a}");
        f.set_seed(DEFAULT_SEED);
        let b: u32 = (0..10_000).map(|_| f.should_fail(1) as u32).sum();
        assert_eq!(a, b, "the same seed replays the same failures");
    }

    #[test]
    fn ranges_and_cmdline() {
        assert!(check_probability(101).is_err());
        assert!(check_times(-2).is_err());
        assert!(check_times(-1).is_ok());
        assert!(check_space(-1).is_err());
        assert!(check_migratetype_mask(8).is_err());
        let a = FailAttrs::default().with_cmdline("10,20,4096,-1").unwrap();
        assert_eq!(
            (a.interval, a.probability, a.space, a.times),
            (10, 20, 4096, -1)
        );
        assert_eq!(a.min_order, 1);
        assert_eq!(
            FailAttrs::default().with_cmdline("1,20,0"),
            Err(FailCmdlineError::Format)
        );
        assert_eq!(
            FailAttrs::default().with_cmdline("1,20,0,5,6"),
            Err(FailCmdlineError::Format)
        );
        assert!(matches!(
            FailAttrs::default().with_cmdline("1,200,0,5"),
            Err(FailCmdlineError::Attr(FailAttrError {
                name: "probability",
                ..
            }))
        ));
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            check_times(-5).unwrap_err().to_string(),
            "fail_page_alloc/times = -5: invalid value, accepted: -1 (no limit), or 0 to 2147483647"
        );
    }
}
