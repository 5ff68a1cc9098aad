//! Boot hand-off and sizing: every free page enters the buddy lists, then the zones'
//! watermarks, lowmem reserves and per-CPU list sizes are computed from what they manage
//! (Linux: `memblock_free_all`, `init_per_zone_wmark_min`, `zone_pcp_update`). The
//! zonelists are built by [`super::zonelist`].

use super::*;

/// `va - pa` of the platform's direct map if it is linear over the managed memory (checked
/// at its first and last free pfn), for `virt_to_page`.
pub(super) fn direct_map_offset<P: Platform + ?Sized>(
    model: &MemoryModel,
    platform: &P,
) -> Option<u64> {
    let first = model.free_pfn_ranges().next()?;
    let last = model.free_pfn_ranges().last()?;
    let pa0 = first.start_pfn << PAGE_SHIFT;
    let pa1 = (last.end_pfn - 1) << PAGE_SHIFT;
    let off0 = (platform.phys_to_virt(pa0) as u64).wrapping_sub(pa0);
    let off1 = (platform.phys_to_virt(pa1) as u64).wrapping_sub(pa1);
    (off0 == off1).then_some(off0)
}

impl<P: Platform> PageAllocator<P> {
    // ---------------------------------------------------------------------------------
    // Boot hand-off and sizing.
    // ---------------------------------------------------------------------------------

    /// Hand every free page to the buddy lists in the largest naturally aligned blocks
    /// that fit (`memblock_free_all` -> `__free_pages_core`), at the tail of the lists.
    pub(super) fn memblock_free_all(&self) {
        let mut freed = 0;
        for r in self.model.free_pfn_ranges() {
            let Some(zr) = self.zone_ref(r.nid, r.zone.index()) else {
                continue;
            };
            let zone = self.zone(zr);
            let mut pfn = r.start_pfn;
            while pfn < r.end_pfn {
                let fit = 63 - (r.end_pfn - pfn).leading_zeros();
                let order = MAX_PAGE_ORDER.min(pfn.trailing_zeros()).min(fit);
                let nr = 1u64 << order;
                for p in pfn..pfn + nr {
                    if let Some(page) = self.mem().pfn_to_page(p) {
                        page.set_refcount(0);
                    }
                }
                let mut g = zone.lock.lock_irqsave(&self.platform);
                self.buddy(zone, &mut g).free_pages_range(pfn, order, true);
                drop(g);
                freed += nr;
                pfn += nr;
            }
        }
        self.count_vm_events(VmEvent::Pgfree, freed);
    }

    /// Managed pages of the zones that can hold kernel allocations, over all nodes
    /// ([`watermark::lowmem_pages`], zone by zone: no table of every zone on the stack).
    fn lowmem_pages(&self) -> u64 {
        self.all_zones()
            .map(|zr| {
                let z = self.zone(zr);
                watermark::lowmem_pages(&[ZoneManaged {
                    zone: z.zone_type,
                    managed: z.managed_pages(),
                }])
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Compute `min_free_kbytes` from the low memory size (unless a user value is higher)
    /// and everything derived from it (`init_per_zone_wmark_min`).
    pub fn init_per_zone_wmark_min(&self) {
        let lowmem_kbytes = self.lowmem_pages().saturating_mul(1 << (PAGE_SHIFT - 10));
        let computed = watermark::min_free_kbytes(lowmem_kbytes);
        {
            let mut s = self.sysctl.lock_irqsave(&self.platform);
            s.min_free_kbytes = match s.user_min_free_kbytes {
                Some(user) if user >= computed => {
                    log::warn!(
                        "min_free_kbytes is not updated to {computed} because user defined value {user} is preferred"
                    );
                    user
                }
                _ => computed,
            };
        }
        self.setup_per_zone_wmarks();
        self.setup_per_zone_lowmem_reserve();
    }

    /// Recompute every zone's min/low/high from `min_free_kbytes` and
    /// `watermark_scale_factor`, reset the boosts, then resize the pcp lists
    /// (`setup_per_zone_wmarks`).
    pub fn setup_per_zone_wmarks(&self) {
        let s = self.sysctl();
        // `watermark::setup_per_zone_wmarks`, zone by zone.
        let pages_min = s.min_free_kbytes >> (PAGE_SHIFT - 10);
        let lowmem = self.lowmem_pages();
        for zr in self.all_zones() {
            let z = self.zone(zr);
            let wm = watermark::zone_wmarks(
                z.zone_type,
                z.managed_pages(),
                pages_min,
                lowmem,
                s.watermark_scale_factor,
            );
            let _g = z.lock.lock_irqsave(&self.platform);
            z.wm.wmark[0].store(wm.min, Ordering::Relaxed);
            z.wm.wmark[1].store(wm.low, Ordering::Relaxed);
            z.wm.wmark[2].store(wm.high, Ordering::Relaxed);
            z.wm.boost.store(0, Ordering::Relaxed);
        }
        self.zone_pcp_update();
    }

    /// Recompute every zone's `lowmem_reserve` from `lowmem_reserve_ratio`
    /// (`setup_per_zone_lowmem_reserve`).
    pub fn setup_per_zone_lowmem_reserve(&self) {
        let ratio = self.sysctl().lowmem_reserve_ratio;
        for n in self.model.nodes() {
            let managed = core::array::from_fn(|i| n.node_zones[i].managed_pages());
            let reserve = setup_zone_lowmem_reserve(&managed, &ratio);
            for (z, r) in n.node_zones.iter().zip(reserve) {
                for (slot, v) in z.wm.lowmem_reserve.iter().zip(r) {
                    slot.store(v, Ordering::Relaxed);
                }
            }
        }
    }

    /// CPUs whose node is `nid`; all CPUs if none is (a node without CPUs is served by
    /// everybody).
    pub(super) fn nr_cpus_of_node(&self, nid: usize) -> u64 {
        let n = (0..self.percpu.nr_cpus())
            .filter(|&c| self.platform.cpu_to_node(c) == nid)
            .count();
        if n == 0 {
            self.percpu.nr_cpus() as u64
        } else {
            n as u64
        }
    }

    /// Recompute every zone's pcp `high` and `batch` and apply them to every CPU's lists
    /// (`zone_pcp_update`).
    pub fn zone_pcp_update(&self) {
        let fraction = self.sysctl().percpu_pagelist_high_fraction;
        for zr in self.all_zones() {
            let z = self.zone(zr);
            let sizing = pageset_high_and_batch(
                z.managed_pages(),
                z.watermarks().low_wmark_pages(),
                self.nr_cpus_of_node(z.nid),
                fraction,
            );
            z.wm.pageset_high.store(sizing.high, Ordering::Relaxed);
            z.wm.pageset_batch.store(sizing.batch, Ordering::Relaxed);
            if zr.slot == NO_SLOT {
                continue;
            }
            for cpu in 0..self.percpu.nr_cpus() {
                if let Some(pcp) = self.percpu.pcp(cpu, zr.slot as usize) {
                    let mut l = pcp.lock.lock(&self.platform);
                    l.high = sizing.high;
                    l.batch = sizing.batch;
                }
            }
        }
    }

    /// The current tunables.
    pub fn sysctl(&self) -> VmSysctl {
        *self.sysctl.lock_irqsave(&self.platform)
    }

    /// Set `vm.min_free_kbytes` and recompute the watermarks. The value is remembered as
    /// the user's, so a later recomputation from the memory size never lowers it.
    pub fn set_min_free_kbytes(&self, kbytes: u64) -> Result<(), SysctlError> {
        VmSysctl::check_min_free_kbytes(kbytes)?;
        {
            let mut s = self.sysctl.lock_irqsave(&self.platform);
            s.min_free_kbytes = kbytes;
            s.user_min_free_kbytes = Some(kbytes);
        }
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Set `vm.watermark_scale_factor` and recompute the watermarks.
    pub fn set_watermark_scale_factor(&self, factor: u64) -> Result<(), SysctlError> {
        VmSysctl::check_watermark_scale_factor(factor)?;
        self.sysctl
            .lock_irqsave(&self.platform)
            .watermark_scale_factor = factor;
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Set `vm.watermark_boost_factor` (0 disables boosting).
    pub fn set_watermark_boost_factor(&self, factor: u64) -> Result<(), SysctlError> {
        VmSysctl::check_watermark_boost_factor(factor)?;
        self.sysctl
            .lock_irqsave(&self.platform)
            .watermark_boost_factor = factor;
        self.boost_factor.store(factor, Ordering::Relaxed);
        Ok(())
    }

    /// Set `vm.percpu_pagelist_high_fraction` and resize the pcp lists.
    pub fn set_percpu_pagelist_high_fraction(&self, fraction: u64) -> Result<(), SysctlError> {
        VmSysctl::check_percpu_pagelist_high_fraction(fraction)?;
        self.sysctl
            .lock_irqsave(&self.platform)
            .percpu_pagelist_high_fraction = fraction;
        self.zone_pcp_update();
        Ok(())
    }

    /// Set `vm.lowmem_reserve_ratio` and recompute the reserves.
    pub fn set_lowmem_reserve_ratio(&self, ratio: [u64; MAX_NR_ZONES]) -> Result<(), SysctlError> {
        VmSysctl::check_lowmem_reserve_ratio(&ratio)?;
        self.sysctl
            .lock_irqsave(&self.platform)
            .lowmem_reserve_ratio = ratio;
        self.setup_per_zone_lowmem_reserve();
        Ok(())
    }
}
