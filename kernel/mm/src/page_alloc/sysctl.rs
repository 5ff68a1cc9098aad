//! The allocator's tunables in one place (Linux: the `vm.*` sysctls of `mm/page_alloc.c`:
//! `min_free_kbytes`, `watermark_scale_factor`, `watermark_boost_factor`,
//! `percpu_pagelist_high_fraction`, `lowmem_reserve_ratio`; and of `mm/compaction.c`:
//! `compaction_proactiveness`, `extfrag_threshold`, `compact_unevictable_allowed`).
//!
//! The values only matter through what is derived from them: every zone's watermarks,
//! `lowmem_reserve` and pcp `high`/`batch`. Changing one therefore goes through the
//! allocator ([`crate::page_alloc::PageAllocator::set_min_free_kbytes`] and friends), which
//! validates it here, stores it, and reruns the recomputation Linux's sysctl handlers run
//! (`setup_per_zone_wmarks`, `setup_per_zone_lowmem_reserve`, `zone_pcp_update`). A later
//! issue exposes them as `/proc/sys/vm/*` files; the ranges accepted are Linux's, so the
//! same values are refused with the same reasons.

#![deny(unsafe_code)]

use core::fmt;

use crate::model::mmzone::MAX_NR_ZONES;
use crate::page_alloc::pcp::MIN_PERCPU_PAGELIST_HIGH_FRACTION;
use crate::page_alloc::watermark::{
    LOWMEM_RESERVE_RATIO, WATERMARK_BOOST_FACTOR, WATERMARK_SCALE_FACTOR,
};
use crate::report::fragmentation::{COMPACTION_PROACTIVENESS, EXTFRAG_THRESHOLD};

/// Largest `watermark_scale_factor` (30% of a zone between marks).
pub const WATERMARK_SCALE_FACTOR_MAX: u64 = 3000;
/// Largest value of any integer sysctl here (Linux stores them in an `int`).
pub const SYSCTL_INT_MAX: u64 = i32::MAX as u64;

/// The `vm.*` tunables of the page allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmSysctl {
    /// `vm.min_free_kbytes`: the system-wide min watermark in KiB.
    pub min_free_kbytes: u64,
    /// The value a user wrote to `min_free_kbytes`, if any. While set, recomputing from the
    /// memory size never lowers `min_free_kbytes` below it (`user_min_free_kbytes`).
    pub user_min_free_kbytes: Option<u64>,
    /// `vm.watermark_scale_factor`, in 1/10000 of a zone.
    pub watermark_scale_factor: u64,
    /// `vm.watermark_boost_factor`, in 1/10000 of the high mark; 0 disables boosting.
    pub watermark_boost_factor: u64,
    /// `vm.percpu_pagelist_high_fraction`: 0 sizes pcp `high` from the low watermark,
    /// otherwise each zone's CPUs together may hold `managed / fraction` pages.
    pub percpu_pagelist_high_fraction: u64,
    /// `vm.lowmem_reserve_ratio`, per zone.
    pub lowmem_reserve_ratio: [u64; MAX_NR_ZONES],
    /// `vm.compaction_proactiveness`, 0 to 100: how hard kcompactd keeps the fragmentation
    /// score down in the background; 0 disables proactive compaction.
    pub compaction_proactiveness: u64,
    /// `vm.extfrag_threshold`, 0 to 1000: fragmentation indices at or below it make a
    /// costly-order failure "lack of memory", which compaction does not try to fix.
    pub extfrag_threshold: u64,
    /// `vm.compact_unevictable_allowed`, 0 or 1: may compaction move unevictable
    /// (mlocked) pages? This kernel has no mlock, hence no unevictable pages: the value is
    /// kept and reported but changes nothing yet.
    pub compact_unevictable_allowed: u64,
}

impl Default for VmSysctl {
    fn default() -> Self {
        VmSysctl {
            min_free_kbytes: 0,
            user_min_free_kbytes: None,
            watermark_scale_factor: WATERMARK_SCALE_FACTOR,
            watermark_boost_factor: WATERMARK_BOOST_FACTOR,
            percpu_pagelist_high_fraction: 0,
            lowmem_reserve_ratio: LOWMEM_RESERVE_RATIO,
            compaction_proactiveness: COMPACTION_PROACTIVENESS as u64,
            extfrag_threshold: EXTFRAG_THRESHOLD as u64,
            compact_unevictable_allowed: 1,
        }
    }
}

/// A tunable value outside its accepted range. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysctlError {
    /// The sysctl's name (`vm.` omitted).
    pub name: &'static str,
    /// The value given.
    pub value: u64,
    /// What is accepted.
    pub accepted: &'static str,
}

impl fmt::Display for SysctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vm.{} = {}: invalid value, accepted: {}",
            self.name, self.value, self.accepted
        )
    }
}

impl VmSysctl {
    /// Validate a `min_free_kbytes` value: 0 to `INT_MAX`.
    pub fn check_min_free_kbytes(v: u64) -> Result<(), SysctlError> {
        if v > SYSCTL_INT_MAX {
            return Err(SysctlError {
                name: "min_free_kbytes",
                value: v,
                accepted: "0 to 2147483647",
            });
        }
        Ok(())
    }

    /// Validate a `watermark_scale_factor` value: 1 to 3000.
    pub fn check_watermark_scale_factor(v: u64) -> Result<(), SysctlError> {
        if !(1..=WATERMARK_SCALE_FACTOR_MAX).contains(&v) {
            return Err(SysctlError {
                name: "watermark_scale_factor",
                value: v,
                accepted: "1 to 3000",
            });
        }
        Ok(())
    }

    /// Validate a `watermark_boost_factor` value: 0 to `INT_MAX`.
    pub fn check_watermark_boost_factor(v: u64) -> Result<(), SysctlError> {
        if v > SYSCTL_INT_MAX {
            return Err(SysctlError {
                name: "watermark_boost_factor",
                value: v,
                accepted: "0 to 2147483647",
            });
        }
        Ok(())
    }

    /// Validate a `percpu_pagelist_high_fraction` value: 0, or 8 to `INT_MAX` (no CPU may
    /// be allowed to hoard more than an eighth of a zone).
    pub fn check_percpu_pagelist_high_fraction(v: u64) -> Result<(), SysctlError> {
        if (v != 0 && v < MIN_PERCPU_PAGELIST_HIGH_FRACTION) || v > SYSCTL_INT_MAX {
            return Err(SysctlError {
                name: "percpu_pagelist_high_fraction",
                value: v,
                accepted: "0, or 8 to 2147483647",
            });
        }
        Ok(())
    }

    /// Validate a `compaction_proactiveness` value: 0 to 100.
    pub fn check_compaction_proactiveness(v: u64) -> Result<(), SysctlError> {
        if v > 100 {
            return Err(SysctlError {
                name: "compaction_proactiveness",
                value: v,
                accepted: "0 to 100",
            });
        }
        Ok(())
    }

    /// Validate an `extfrag_threshold` value: 0 to 1000 (the range of the index).
    pub fn check_extfrag_threshold(v: u64) -> Result<(), SysctlError> {
        if v > 1000 {
            return Err(SysctlError {
                name: "extfrag_threshold",
                value: v,
                accepted: "0 to 1000",
            });
        }
        Ok(())
    }

    /// Validate a `compact_unevictable_allowed` value: 0 or 1.
    pub fn check_compact_unevictable_allowed(v: u64) -> Result<(), SysctlError> {
        if v > 1 {
            return Err(SysctlError {
                name: "compact_unevictable_allowed",
                value: v,
                accepted: "0 or 1",
            });
        }
        Ok(())
    }

    /// Validate `lowmem_reserve_ratio` values: 0 (no reserve) to `INT_MAX` each.
    pub fn check_lowmem_reserve_ratio(v: &[u64; MAX_NR_ZONES]) -> Result<(), SysctlError> {
        match v.iter().find(|&&r| r > SYSCTL_INT_MAX) {
            Some(&bad) => Err(SysctlError {
                name: "lowmem_reserve_ratio",
                value: bad,
                accepted: "0 to 2147483647 per zone",
            }),
            None => Ok(()),
        }
    }
}

impl core::error::Error for SysctlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_linux_ranges() {
        assert!(VmSysctl::check_watermark_scale_factor(0).is_err());
        assert!(VmSysctl::check_watermark_scale_factor(1).is_ok());
        assert!(VmSysctl::check_watermark_scale_factor(3000).is_ok());
        assert!(VmSysctl::check_watermark_scale_factor(3001).is_err());
        assert!(VmSysctl::check_percpu_pagelist_high_fraction(0).is_ok());
        assert!(VmSysctl::check_percpu_pagelist_high_fraction(7).is_err());
        assert!(VmSysctl::check_percpu_pagelist_high_fraction(8).is_ok());
        assert!(VmSysctl::check_min_free_kbytes(1 << 31).is_err());
        assert!(VmSysctl::check_watermark_boost_factor(0).is_ok());
        assert!(VmSysctl::check_lowmem_reserve_ratio(&[0, 1, 2, u64::MAX]).is_err());
        let e = VmSysctl::check_watermark_scale_factor(0).unwrap_err();
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            e.to_string(),
            "vm.watermark_scale_factor = 0: invalid value, accepted: 1 to 3000"
        );
        let d = VmSysctl::default();
        assert_eq!(d.watermark_scale_factor, 10);
        assert_eq!(d.watermark_boost_factor, 15_000);
        assert_eq!(d.lowmem_reserve_ratio, [256, 256, 32, 0]);
        assert_eq!(d.compaction_proactiveness, 20);
        assert_eq!(d.extfrag_threshold, 500);
        assert_eq!(d.compact_unevictable_allowed, 1);
    }

    #[test]
    fn compaction_ranges() {
        assert!(VmSysctl::check_compaction_proactiveness(0).is_ok());
        assert!(VmSysctl::check_compaction_proactiveness(100).is_ok());
        assert!(VmSysctl::check_compaction_proactiveness(101).is_err());
        assert!(VmSysctl::check_extfrag_threshold(0).is_ok());
        assert!(VmSysctl::check_extfrag_threshold(1000).is_ok());
        assert!(VmSysctl::check_extfrag_threshold(1001).is_err());
        assert!(VmSysctl::check_compact_unevictable_allowed(1).is_ok());
        assert!(VmSysctl::check_compact_unevictable_allowed(2).is_err());
        assert!(VmSysctl::check_compact_unevictable_allowed(u64::MAX).is_err());
    }
}
