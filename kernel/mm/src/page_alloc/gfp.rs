//! GFP ("get free pages") flags: what a caller asks of the allocator, and what that request
//! means to the allocator's policy.
//!
//! A caller never names a zone or a free list. It describes its *constraints* and its
//! *situation* in one word of flags, exactly as Linux does, and the allocator derives
//! everything else from that word:
//!
//! - **Zone modifiers** (`__GFP_DMA`, `__GFP_DMA32`, `__GFP_HIGHMEM`, `__GFP_MOVABLE`) say
//!   which physical addresses the caller can live with. [`gfp_zone`] turns them into the
//!   *highest* zone the allocation may use; the zonelist walk then falls back downwards
//!   from there. Only some combinations make sense (a page cannot be both below 16 MiB and
//!   "anywhere below 4 GiB"); Linux encodes the answer in `GFP_ZONE_TABLE` and so do we,
//!   but a bad combination is an error value here instead of a `BUG()`.
//! - **Mobility hints** (`__GFP_MOVABLE`, `__GFP_RECLAIMABLE`) choose the migratetype of
//!   the free lists the page comes from ([`gfp_migratetype`]). This is what keeps
//!   unmovable kernel allocations out of pageblocks that compaction could otherwise empty.
//! - **Watermark modifiers** (`__GFP_HIGH`, `__GFP_MEMALLOC`, `__GFP_NOMEMALLOC`) and the
//!   **reclaim modifiers** (`__GFP_DIRECT_RECLAIM`, `__GFP_KSWAPD_RECLAIM`, ...) decide how
//!   deep into the zone's reserves the request may dig. [`gfp_to_alloc_flags`] converts
//!   them into the allocator-internal [`AllocFlags`] the slow path uses: a caller that
//!   cannot sleep (no `__GFP_DIRECT_RECLAIM`) gets a little more of the min reserve because
//!   it has no other way to make progress, and a `__GFP_HIGH` caller gets more still.
//!
//! Bit values are Linux's (`include/linux/gfp_types.h`), so a mode printed by our
//! allocation-failure reports (`mode:0xcc0(GFP_KERNEL)`) reads exactly like Linux's, and the
//! [`core::fmt::Display`] impl of [`Gfp`] prints the same `GFP_KERNEL|__GFP_ZERO` names,
//! combinations first, as Linux's `%pGg` does.

#![deny(unsafe_code)]

use core::fmt;

use bitflags::bitflags;

use crate::model::mmzone::WatermarkKind;
use crate::model::mmzone::{MAX_PAGE_ORDER, Migratetype, ZoneType};

bitflags! {
    /// A GFP mask: the flags of one allocation request (Linux's `gfp_t`).
    ///
    /// The individual bits carry Linux's values; the useful combinations are the
    /// module-level constants [`GFP_KERNEL`], [`GFP_ATOMIC`], ...
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Gfp: u32 {
        /// `__GFP_DMA`: the page must lie in ZONE_DMA (below 16 MiB on x86_64; an
        /// architecture without ZONE_DMA has no such memory).
        const DMA = 0x01;
        /// `__GFP_HIGHMEM`: highmem is acceptable. Without highmem (64-bit) it means Normal,
        /// and together with `__GFP_MOVABLE` it allows ZONE_MOVABLE.
        const HIGHMEM = 0x02;
        /// `__GFP_DMA32`: the page must lie in ZONE_DMA32 or lower (below 4 GiB on x86_64).
        const DMA32 = 0x04;
        /// `__GFP_MOVABLE`: the page can be migrated by compaction (migratetype Movable);
        /// with `__GFP_HIGHMEM` it may also come from ZONE_MOVABLE.
        const MOVABLE = 0x08;
        /// `__GFP_RECLAIMABLE`: the page can be freed on demand (migratetype Reclaimable).
        const RECLAIMABLE = 0x10;
        /// `__GFP_HIGH`: high priority; may use half of the min watermark reserve.
        const HIGH = 0x20;
        /// `__GFP_IO`: the caller may start physical I/O to reclaim memory.
        const IO = 0x40;
        /// `__GFP_FS`: the caller may call into filesystems to reclaim memory.
        const FS = 0x80;
        /// `__GFP_ZERO`: return zero-filled memory.
        const ZERO = 0x100;
        /// `__GFP_DIRECT_RECLAIM`: the caller may sleep and reclaim or compact memory itself.
        const DIRECT_RECLAIM = 0x400;
        /// `__GFP_KSWAPD_RECLAIM`: wake the background reclaimer when below the low watermark.
        const KSWAPD_RECLAIM = 0x800;
        /// `__GFP_WRITE`: the caller intends to dirty the page (a page-cache hint).
        const WRITE = 0x1000;
        /// `__GFP_NOWARN`: do not print an allocation-failure report.
        const NOWARN = 0x2000;
        /// `__GFP_RETRY_MAYFAIL`: retry reclaim/compaction harder, but failure is allowed.
        const RETRY_MAYFAIL = 0x4000;
        /// `__GFP_NOFAIL`: the caller cannot handle failure. Linux retries forever, because
        /// reclaim and the OOM killer can always free something; this allocator has
        /// neither, so looping would only hang the caller. It retries
        /// `NOFAIL_RETRIES` (16) extra rounds with part of the min reserve (`page_alloc`),
        /// then fails with an error message (the request still returns `None`/`Err`).
        const NOFAIL = 0x8000;
        /// `__GFP_NORETRY`: try only lightweight reclaim/compaction, then fail.
        const NORETRY = 0x10000;
        /// `__GFP_MEMALLOC`: may use all memory reserves (ignore watermarks).
        const MEMALLOC = 0x20000;
        /// `__GFP_COMP`: set up compound-page metadata for a multi-page allocation.
        const COMP = 0x40000;
        /// `__GFP_NOMEMALLOC`: never use the emergency reserves (beats `__GFP_MEMALLOC`).
        const NOMEMALLOC = 0x80000;
        /// `__GFP_HARDWALL`: enforce the cpuset memory policy.
        const HARDWALL = 0x100000;
        /// `__GFP_THISNODE`: allocate from the requested node only, no fallback.
        const THISNODE = 0x200000;
        /// `__GFP_ACCOUNT`: account the allocation to the memory cgroup.
        const ACCOUNT = 0x400000;
    }
}

impl Gfp {
    /// `__GFP_RECLAIM`: both direct and background reclaim allowed.
    pub const RECLAIM: Gfp = Gfp::DIRECT_RECLAIM.union(Gfp::KSWAPD_RECLAIM);
    /// `GFP_ZONEMASK`: the zone modifier bits.
    pub const ZONEMASK: Gfp = Gfp::DMA
        .union(Gfp::HIGHMEM)
        .union(Gfp::DMA32)
        .union(Gfp::MOVABLE);
    /// `GFP_MOVABLE_MASK`: the mobility bits that select the migratetype.
    pub const MOVABLE_MASK: Gfp = Gfp::RECLAIMABLE.union(Gfp::MOVABLE);
}

/// `GFP_ATOMIC`: cannot sleep, must succeed if at all possible; dips into reserves.
pub const GFP_ATOMIC: Gfp = Gfp::HIGH.union(Gfp::KSWAPD_RECLAIM);
/// `GFP_KERNEL`: ordinary kernel allocation, may sleep, reclaim and do I/O.
pub const GFP_KERNEL: Gfp = Gfp::RECLAIM.union(Gfp::IO).union(Gfp::FS);
/// `GFP_KERNEL_ACCOUNT`: `GFP_KERNEL` charged to the memory cgroup.
pub const GFP_KERNEL_ACCOUNT: Gfp = GFP_KERNEL.union(Gfp::ACCOUNT);
/// `GFP_NOWAIT`: cannot sleep and gets no reserve access; failure is expected and quiet
/// (recent Linux includes `__GFP_NOWARN` in it; older kernels had only the kswapd bit).
pub const GFP_NOWAIT: Gfp = Gfp::KSWAPD_RECLAIM.union(Gfp::NOWARN);
/// `GFP_NOIO`: may reclaim, but must not start physical I/O.
pub const GFP_NOIO: Gfp = Gfp::RECLAIM;
/// `GFP_NOFS`: may reclaim and do I/O, but must not recurse into filesystems.
pub const GFP_NOFS: Gfp = Gfp::RECLAIM.union(Gfp::IO);
/// `GFP_USER`: user-space allocation the kernel also accesses directly; cpuset enforced.
pub const GFP_USER: Gfp = Gfp::RECLAIM
    .union(Gfp::IO)
    .union(Gfp::FS)
    .union(Gfp::HARDWALL);
/// `GFP_DMA`: legacy ISA DMA memory (below 16 MiB).
pub const GFP_DMA: Gfp = Gfp::DMA;
/// `GFP_DMA32`: memory below 4 GiB.
pub const GFP_DMA32: Gfp = Gfp::DMA32;
/// `GFP_HIGHUSER`: user-space memory that need not be directly mapped by the kernel.
pub const GFP_HIGHUSER: Gfp = GFP_USER.union(Gfp::HIGHMEM);
/// `GFP_HIGHUSER_MOVABLE`: user-space memory that can be migrated (may use ZONE_MOVABLE).
/// Linux also sets `__GFP_SKIP_KASAN`, which is zero without KASAN hardware tags.
pub const GFP_HIGHUSER_MOVABLE: Gfp = GFP_HIGHUSER.union(Gfp::MOVABLE);
/// `GFP_TRANSHUGE_LIGHT`: huge-page allocation that never reclaims or wakes kswapd.
pub const GFP_TRANSHUGE_LIGHT: Gfp = GFP_HIGHUSER_MOVABLE
    .union(Gfp::COMP)
    .union(Gfp::NOMEMALLOC)
    .union(Gfp::NOWARN)
    .difference(Gfp::RECLAIM);
/// `GFP_TRANSHUGE`: huge-page allocation that may direct-reclaim and compact.
pub const GFP_TRANSHUGE: Gfp = GFP_TRANSHUGE_LIGHT.union(Gfp::DIRECT_RECLAIM);

/// The names [`Gfp`]'s `Display` prints, in Linux's `%pGg` order: combinations with the
/// most bits first, so that a mask is described by the fewest, most familiar names; then
/// the single bits in bit order. Each matched name removes its bits from what is left.
const GFP_NAMES: &[(Gfp, &str)] = &[
    (GFP_TRANSHUGE, "GFP_TRANSHUGE"),
    (GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (GFP_HIGHUSER, "GFP_HIGHUSER"),
    (GFP_USER, "GFP_USER"),
    (GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
    (GFP_KERNEL, "GFP_KERNEL"),
    (GFP_NOFS, "GFP_NOFS"),
    (GFP_ATOMIC, "GFP_ATOMIC"),
    (GFP_NOIO, "GFP_NOIO"),
    (GFP_NOWAIT, "GFP_NOWAIT"),
    (GFP_DMA, "GFP_DMA"),
    (GFP_DMA32, "GFP_DMA32"),
    (Gfp::RECLAIM, "__GFP_RECLAIM"),
    (Gfp::DMA, "__GFP_DMA"),
    (Gfp::HIGHMEM, "__GFP_HIGHMEM"),
    (Gfp::DMA32, "__GFP_DMA32"),
    (Gfp::MOVABLE, "__GFP_MOVABLE"),
    (Gfp::RECLAIMABLE, "__GFP_RECLAIMABLE"),
    (Gfp::HIGH, "__GFP_HIGH"),
    (Gfp::IO, "__GFP_IO"),
    (Gfp::FS, "__GFP_FS"),
    (Gfp::ZERO, "__GFP_ZERO"),
    (Gfp::DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (Gfp::KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
    (Gfp::WRITE, "__GFP_WRITE"),
    (Gfp::NOWARN, "__GFP_NOWARN"),
    (Gfp::RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"),
    (Gfp::NOFAIL, "__GFP_NOFAIL"),
    (Gfp::NORETRY, "__GFP_NORETRY"),
    (Gfp::MEMALLOC, "__GFP_MEMALLOC"),
    (Gfp::COMP, "__GFP_COMP"),
    (Gfp::NOMEMALLOC, "__GFP_NOMEMALLOC"),
    (Gfp::HARDWALL, "__GFP_HARDWALL"),
    (Gfp::THISNODE, "__GFP_THISNODE"),
    (Gfp::ACCOUNT, "__GFP_ACCOUNT"),
];

impl fmt::Display for Gfp {
    /// Prints the mask as Linux's `%pGg` does: `GFP_KERNEL|__GFP_ZERO`. Bits no name
    /// covers are printed as one hexadecimal number (`GFP_KERNEL|0x200`); an empty mask
    /// prints `none`, as Linux's tracepoints do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.bits();
        if rest == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for &(mask, name) in GFP_NAMES {
            let m = mask.bits();
            if m != 0 && rest & m == m {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !m;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

/// Why a GFP request cannot be served. Every variant names the offending flags; the
/// `Display` text is what an allocation-failure report prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GfpError {
    /// Bits outside the flags this allocator knows (Linux's unused bit 0x200, or anything
    /// above `__GFP_ACCOUNT`).
    UnknownFlags {
        /// The unknown bits.
        bits: u32,
    },
    /// A combination of zone modifiers that `GFP_ZONE_TABLE` marks BAD (for example
    /// `__GFP_DMA|__GFP_DMA32`).
    BadZoneModifiers {
        /// The request's flags.
        gfp: Gfp,
    },
    /// `__GFP_MOVABLE|__GFP_RECLAIMABLE`: a page cannot be both.
    BadMobility {
        /// The request's flags.
        gfp: Gfp,
    },
    /// `order > MAX_PAGE_ORDER`: no free area holds blocks that large.
    OrderTooLarge {
        /// The requested order.
        order: u32,
    },
    /// `__GFP_NOFAIL` for an order above 1, which Linux refuses to promise.
    NofailOrder {
        /// The requested order.
        order: u32,
    },
    /// `__GFP_NOFAIL` without `__GFP_DIRECT_RECLAIM`: an allocation that may not sleep
    /// cannot wait for memory to be freed, so "never fail" cannot be kept.
    NofailAtomic {
        /// The request's flags.
        gfp: Gfp,
    },
}

impl fmt::Display for GfpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GfpError::UnknownFlags { bits } => {
                write!(f, "unknown GFP flag bits {bits:#x}")
            }
            GfpError::BadZoneModifiers { gfp } => write!(
                f,
                "conflicting GFP zone modifiers in {:#x}({}): __GFP_DMA, __GFP_DMA32 and \
                 __GFP_HIGHMEM exclude each other",
                gfp.bits(),
                gfp & Gfp::ZONEMASK
            ),
            GfpError::BadMobility { gfp } => write!(
                f,
                "conflicting GFP mobility in {:#x}({}): a page cannot be both __GFP_MOVABLE \
                 and __GFP_RECLAIMABLE",
                gfp.bits(),
                gfp
            ),
            GfpError::OrderTooLarge { order } => write!(
                f,
                "order {order} is above MAX_PAGE_ORDER ({MAX_PAGE_ORDER})"
            ),
            GfpError::NofailOrder { order } => write!(
                f,
                "__GFP_NOFAIL cannot be honoured for order {order}: only orders 0 and 1 may \
                 be non-failing"
            ),
            GfpError::NofailAtomic { gfp } => write!(
                f,
                "__GFP_NOFAIL without __GFP_DIRECT_RECLAIM in {:#x}({}): a request that \
                 cannot sleep cannot wait until memory is freed",
                gfp.bits(),
                gfp
            ),
        }
    }
}

impl core::error::Error for GfpError {}

/// The highest zone a request may be served from, as Linux's `GFP_ZONE_TABLE` decides on a
/// 64-bit kernel without highmem (ZONE_DMA and ZONE_DMA32 configured).
///
/// | zone bits                       | zone    |
/// |---------------------------------|---------|
/// | none, `HIGHMEM`, `MOVABLE`      | Normal  |
/// | `DMA` (± `MOVABLE`)             | DMA     |
/// | `DMA32` (± `MOVABLE`)           | DMA32   |
/// | `MOVABLE` + `HIGHMEM`           | Movable |
/// | any two of DMA, DMA32, HIGHMEM  | BAD     |
///
/// `__GFP_MOVABLE` alone means Normal: only a caller that also accepts highmem (one that
/// does not need a permanent kernel mapping) may be placed in ZONE_MOVABLE.
#[inline]
pub fn gfp_zone(gfp: Gfp) -> Result<ZoneType, GfpError> {
    let dma = gfp.contains(Gfp::DMA);
    let dma32 = gfp.contains(Gfp::DMA32);
    let highmem = gfp.contains(Gfp::HIGHMEM);
    let movable = gfp.contains(Gfp::MOVABLE);
    match (dma, dma32, highmem) {
        (false, false, false) => Ok(ZoneType::Normal),
        (true, false, false) => Ok(ZoneType::Dma),
        (false, true, false) => Ok(ZoneType::Dma32),
        (false, false, true) if movable => Ok(ZoneType::Movable),
        (false, false, true) => Ok(ZoneType::Normal),
        _ => Err(GfpError::BadZoneModifiers { gfp }),
    }
}

/// The migratetype whose free lists serve the request (Linux's `gfp_migratetype`).
///
/// `__GFP_MOVABLE|__GFP_RECLAIMABLE` would decode to MIGRATE_HIGHATOMIC in Linux's
/// bit arithmetic, which is never a valid request type; it is an error here.
#[inline]
pub fn gfp_migratetype(gfp: Gfp) -> Result<Migratetype, GfpError> {
    match (gfp.contains(Gfp::MOVABLE), gfp.contains(Gfp::RECLAIMABLE)) {
        (false, false) => Ok(Migratetype::Unmovable),
        (true, false) => Ok(Migratetype::Movable),
        (false, true) => Ok(Migratetype::Reclaimable),
        (true, true) => Err(GfpError::BadMobility { gfp }),
    }
}

/// Where a valid request is placed: the first zone of the zonelist walk and the free-list
/// type. Linux keeps these two in `struct alloc_context`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GfpPlacement {
    /// The highest zone the allocation may use (`ac->highest_zoneidx`).
    pub highest_zoneidx: ZoneType,
    /// The migratetype of the free lists to allocate from (`ac->migratetype`).
    pub migratetype: Migratetype,
}

/// Checks that `gfp` and `order` describe a request the allocator can serve at all, and
/// returns where it goes.
///
/// Rejected: unknown bits; BAD zone modifier combinations; movable *and* reclaimable;
/// `order > MAX_PAGE_ORDER`; `__GFP_NOFAIL` above order 1 (Linux warns in `rmqueue`
/// because it cannot promise such blocks forever); and `__GFP_NOFAIL` without
/// `__GFP_DIRECT_RECLAIM` (Linux warns in the slow path: a caller that cannot sleep
/// cannot wait for memory to be freed). Linux only warns about the last two; here every
/// impossible request is an error value, reported once by the caller.
#[inline]
pub fn validate(gfp: Gfp, order: u32) -> Result<GfpPlacement, GfpError> {
    let unknown = gfp.bits() & !Gfp::all().bits();
    if unknown != 0 {
        return Err(GfpError::UnknownFlags { bits: unknown });
    }
    let highest_zoneidx = gfp_zone(gfp)?;
    let migratetype = gfp_migratetype(gfp)?;
    if order > MAX_PAGE_ORDER {
        return Err(GfpError::OrderTooLarge { order });
    }
    if gfp.contains(Gfp::NOFAIL) {
        if order > 1 {
            return Err(GfpError::NofailOrder { order });
        }
        if !gfp.contains(Gfp::DIRECT_RECLAIM) {
            return Err(GfpError::NofailAtomic { gfp });
        }
    }
    Ok(GfpPlacement {
        highest_zoneidx,
        migratetype,
    })
}

bitflags! {
    /// Allocator-internal flags (Linux's `ALLOC_*` in `mm/internal.h`, v6.x semantics):
    /// which watermark to check and which reserves the request may use.
    ///
    /// The two low bits select the watermark (see [`AllocFlags::wmark`]); `WMARK_MIN` is
    /// the value 0 and is therefore an associated constant rather than a flag.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AllocFlags: u32 {
        /// `ALLOC_WMARK_LOW`: check the low watermark (the fast path's choice).
        const WMARK_LOW = 0x01;
        /// `ALLOC_WMARK_HIGH`: check the high watermark.
        const WMARK_HIGH = 0x02;
        /// `ALLOC_NO_WATERMARKS`: do not check watermarks at all (`__GFP_MEMALLOC`).
        const NO_WATERMARKS = 0x04;
        /// `ALLOC_OOM`: an OOM victim exiting; may use part of the reserves.
        const OOM = 0x08;
        /// `ALLOC_NON_BLOCK` (formerly `ALLOC_HARDER`): the caller cannot block, so with
        /// `ALLOC_MIN_RESERVE` it may dig a further quarter into the min reserve.
        const NON_BLOCK = 0x10;
        /// `ALLOC_MIN_RESERVE`: `__GFP_HIGH`; may use half of the min reserve.
        const MIN_RESERVE = 0x20;
        /// `ALLOC_CPUSET`: check the cpuset (no cpusets here; kept for fidelity).
        const CPUSET = 0x40;
        /// `ALLOC_CMA`: may allocate from CMA pageblocks (movable requests only).
        const CMA = 0x80;
        /// `ALLOC_NOFRAGMENT`: prefer another zone over stealing from a foreign pageblock.
        const NOFRAGMENT = 0x100;
        /// `ALLOC_HIGHATOMIC`: may use MIGRATE_HIGHATOMIC reserves.
        const HIGHATOMIC = 0x200;
        /// `ALLOC_KSWAPD`: wake the background reclaimer (`__GFP_KSWAPD_RECLAIM`).
        const KSWAPD = 0x800;
    }
}

impl AllocFlags {
    /// `ALLOC_WMARK_MIN`: check the min watermark (value 0: no watermark bit set).
    pub const WMARK_MIN: AllocFlags = AllocFlags::empty();
    /// `ALLOC_WMARK_MASK`: the bits that select the watermark.
    pub const WMARK_MASK: AllocFlags = AllocFlags::WMARK_LOW.union(AllocFlags::WMARK_HIGH);
    /// `ALLOC_HARDER`: the pre-v6.3 (and again proposed) name of [`AllocFlags::NON_BLOCK`].
    pub const HARDER: AllocFlags = AllocFlags::NON_BLOCK;
    /// `ALLOC_RESERVES`: every flag that allows allocating below the min watermark.
    pub const RESERVES: AllocFlags = AllocFlags::NON_BLOCK
        .union(AllocFlags::MIN_RESERVE)
        .union(AllocFlags::HIGHATOMIC)
        .union(AllocFlags::OOM);

    /// The watermark these flags ask to be checked. The bit pattern 3 (Linux's
    /// `WMARK_PROMO`, for memory tiering) is not modelled and reads as the high mark.
    #[inline]
    pub const fn wmark(self) -> WatermarkKind {
        match self.bits() & AllocFlags::WMARK_MASK.bits() {
            0 => WatermarkKind::Min,
            1 => WatermarkKind::Low,
            _ => WatermarkKind::High,
        }
    }

    /// These flags with the watermark selection replaced by `kind`.
    #[inline]
    pub const fn with_wmark(self, kind: WatermarkKind) -> AllocFlags {
        let rest = self.bits() & !AllocFlags::WMARK_MASK.bits();
        AllocFlags::from_bits_retain(rest | kind as u32)
    }
}

/// Linux's `gfp_to_alloc_flags_cma`: a movable request may be served from CMA pageblocks,
/// since CMA only needs its pages to be movable when the contiguous range is claimed.
#[inline]
pub fn gfp_to_alloc_flags_cma(gfp: Gfp, alloc_flags: AllocFlags) -> AllocFlags {
    if gfp & Gfp::MOVABLE_MASK == Gfp::MOVABLE {
        alloc_flags | AllocFlags::CMA
    } else {
        alloc_flags
    }
}

/// The slow path's allocation flags for `gfp` and `order` (Linux's `gfp_to_alloc_flags`).
///
/// Start from the min watermark (the fast path tried the low one and failed);
/// `__GFP_HIGH` grants `ALLOC_MIN_RESERVE`; `__GFP_KSWAPD_RECLAIM` grants `ALLOC_KSWAPD`.
/// A request without `__GFP_DIRECT_RECLAIM` cannot wait for reclaim, so (unless it said
/// `__GFP_NOMEMALLOC`) it gets `ALLOC_NON_BLOCK`, and if it is also `__GFP_HIGH` and
/// high-order, `ALLOC_HIGHATOMIC` to reach the high-order atomic reserve; a non-blocking
/// `__GFP_HIGH` request also ignores cpusets rather than fail. Movable requests get
/// `ALLOC_CMA`. (Linux's extra reserve for real-time tasks has no counterpart here.)
pub fn gfp_to_alloc_flags(gfp: Gfp, order: u32) -> AllocFlags {
    let mut flags = AllocFlags::WMARK_MIN | AllocFlags::CPUSET;
    if gfp.contains(Gfp::HIGH) {
        flags |= AllocFlags::MIN_RESERVE;
    }
    if gfp.contains(Gfp::KSWAPD_RECLAIM) {
        flags |= AllocFlags::KSWAPD;
    }
    if !gfp.contains(Gfp::DIRECT_RECLAIM) {
        if !gfp.contains(Gfp::NOMEMALLOC) {
            flags |= AllocFlags::NON_BLOCK;
            if order > 0 && flags.contains(AllocFlags::MIN_RESERVE) {
                flags |= AllocFlags::HIGHATOMIC;
            }
        }
        if flags.contains(AllocFlags::MIN_RESERVE) {
            flags.remove(AllocFlags::CPUSET);
        }
    }
    gfp_to_alloc_flags_cma(gfp, flags)
}

/// The reserve flags a request earns by its GFP mask alone (Linux's
/// `__gfp_pfmemalloc_flags` without the task-state cases): `__GFP_MEMALLOC` ignores
/// watermarks unless `__GFP_NOMEMALLOC` forbids it. Empty means "no special access".
pub fn gfp_pfmemalloc_flags(gfp: Gfp) -> AllocFlags {
    if gfp.contains(Gfp::NOMEMALLOC) {
        AllocFlags::empty()
    } else if gfp.contains(Gfp::MEMALLOC) {
        AllocFlags::NO_WATERMARKS
    } else {
        AllocFlags::empty()
    }
}

/// Linux's `alloc_flags_nofragment`: the fast path's extra flags for a request whose
/// preferred zone is `preferred_zone`.
///
/// `ALLOC_KSWAPD` mirrors `__GFP_KSWAPD_RECLAIM`. When the preferred zone is Normal, the
/// request is asked to avoid fragmenting fallbacks (`ALLOC_NOFRAGMENT`): it is better to
/// take a page from DMA32 than to steal from a foreign pageblock in Normal. Lower zones are
/// too small for that to pay, and on a multi-node machine an unpopulated DMA32 means the
/// next zone would be remote, where locality matters more than fragmentation.
#[inline]
pub fn alloc_flags_nofragment(
    gfp: Gfp,
    preferred_zone: ZoneType,
    dma32_populated: bool,
    nr_online_nodes: usize,
) -> AllocFlags {
    let mut flags = AllocFlags::empty();
    if gfp.contains(Gfp::KSWAPD_RECLAIM) {
        flags |= AllocFlags::KSWAPD;
    }
    if preferred_zone != ZoneType::Normal {
        return flags;
    }
    if nr_online_nodes > 1 && !dma32_populated {
        return flags;
    }
    flags | AllocFlags::NOFRAGMENT
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::ToString;

    use super::*;

    #[test]
    fn linux_bit_values() {
        assert_eq!(Gfp::DMA.bits(), 0x01);
        assert_eq!(Gfp::HIGHMEM.bits(), 0x02);
        assert_eq!(Gfp::DMA32.bits(), 0x04);
        assert_eq!(Gfp::MOVABLE.bits(), 0x08);
        assert_eq!(Gfp::RECLAIMABLE.bits(), 0x10);
        assert_eq!(Gfp::HIGH.bits(), 0x20);
        assert_eq!(Gfp::IO.bits(), 0x40);
        assert_eq!(Gfp::FS.bits(), 0x80);
        assert_eq!(Gfp::ZERO.bits(), 0x100);
        assert_eq!(Gfp::DIRECT_RECLAIM.bits(), 0x400);
        assert_eq!(Gfp::KSWAPD_RECLAIM.bits(), 0x800);
        assert_eq!(Gfp::NOWARN.bits(), 0x2000);
        assert_eq!(Gfp::RETRY_MAYFAIL.bits(), 0x4000);
        assert_eq!(Gfp::NOFAIL.bits(), 0x8000);
        assert_eq!(Gfp::NORETRY.bits(), 0x10000);
        assert_eq!(Gfp::MEMALLOC.bits(), 0x20000);
        assert_eq!(Gfp::COMP.bits(), 0x40000);
        assert_eq!(Gfp::NOMEMALLOC.bits(), 0x80000);
        assert_eq!(Gfp::HARDWALL.bits(), 0x100000);
        assert_eq!(Gfp::THISNODE.bits(), 0x200000);
        assert_eq!(Gfp::ACCOUNT.bits(), 0x400000);
    }

    #[test]
    fn combinations_have_linux_values() {
        // Values as Linux prints them in "mode:%#x" (e.g. GFP_KERNEL is 0xcc0).
        assert_eq!(GFP_KERNEL.bits(), 0xcc0);
        assert_eq!(GFP_ATOMIC.bits(), 0x820);
        assert_eq!(GFP_NOWAIT.bits(), 0x2800);
        assert_eq!(GFP_NOIO.bits(), 0xc00);
        assert_eq!(GFP_NOFS.bits(), 0xc40);
        assert_eq!(GFP_USER.bits(), 0x100cc0);
        assert_eq!(GFP_DMA.bits(), 0x01);
        assert_eq!(GFP_DMA32.bits(), 0x04);
        assert_eq!(GFP_HIGHUSER.bits(), 0x100cc2);
        assert_eq!(GFP_HIGHUSER_MOVABLE.bits(), 0x100cca);
        assert_eq!(GFP_TRANSHUGE_LIGHT.bits(), 0x1c20ca);
        assert_eq!(GFP_TRANSHUGE.bits(), 0x1c24ca);
        assert_eq!(GFP_KERNEL_ACCOUNT.bits(), 0x400cc0);
    }

    #[test]
    fn display_uses_combinations_first() {
        assert_eq!(GFP_KERNEL.to_string(), "GFP_KERNEL");
        assert_eq!(
            (GFP_KERNEL | Gfp::ZERO).to_string(),
            "GFP_KERNEL|__GFP_ZERO"
        );
        assert_eq!(
            (GFP_ATOMIC | Gfp::NOWARN).to_string(),
            "GFP_ATOMIC|__GFP_NOWARN"
        );
        assert_eq!(GFP_HIGHUSER_MOVABLE.to_string(), "GFP_HIGHUSER_MOVABLE");
        assert_eq!(
            (GFP_TRANSHUGE | Gfp::THISNODE).to_string(),
            "GFP_TRANSHUGE|__GFP_THISNODE"
        );
        assert_eq!(GFP_NOWAIT.to_string(), "GFP_NOWAIT");
        assert_eq!((GFP_KERNEL | Gfp::DMA).to_string(), "GFP_KERNEL|GFP_DMA");
        assert_eq!(
            (Gfp::MOVABLE | Gfp::DIRECT_RECLAIM).to_string(),
            "__GFP_MOVABLE|__GFP_DIRECT_RECLAIM"
        );
        assert_eq!(Gfp::empty().to_string(), "none");
        assert_eq!(
            Gfp::from_bits_retain(GFP_KERNEL.bits() | 0x200).to_string(),
            "GFP_KERNEL|0x200"
        );
        assert_eq!(Gfp::from_bits_retain(0x8000_0000).to_string(), "0x80000000");
    }

    #[test]
    fn zone_table() {
        use ZoneType::*;
        let z = |bits: u32| gfp_zone(Gfp::from_bits_retain(bits));
        assert_eq!(z(0x0), Ok(Normal));
        assert_eq!(z(0x1), Ok(Dma));
        assert_eq!(z(0x2), Ok(Normal));
        assert!(z(0x3).is_err());
        assert_eq!(z(0x4), Ok(Dma32));
        assert!(z(0x5).is_err());
        assert!(z(0x6).is_err());
        assert!(z(0x7).is_err());
        assert_eq!(z(0x8), Ok(Normal));
        assert_eq!(z(0x9), Ok(Dma));
        assert_eq!(z(0xa), Ok(Movable));
        assert!(z(0xb).is_err());
        assert_eq!(z(0xc), Ok(Dma32));
        for bad in 0xd..=0xf {
            assert!(z(bad).is_err());
        }
        assert_eq!(gfp_zone(GFP_KERNEL), Ok(Normal));
        assert_eq!(gfp_zone(GFP_HIGHUSER_MOVABLE), Ok(Movable));
        assert_eq!(gfp_zone(GFP_HIGHUSER), Ok(Normal));
        assert_eq!(gfp_zone(GFP_DMA32 | GFP_KERNEL), Ok(Dma32));
    }

    #[test]
    fn migratetypes() {
        assert_eq!(gfp_migratetype(GFP_KERNEL), Ok(Migratetype::Unmovable));
        assert_eq!(
            gfp_migratetype(GFP_HIGHUSER_MOVABLE),
            Ok(Migratetype::Movable)
        );
        assert_eq!(
            gfp_migratetype(GFP_KERNEL | Gfp::RECLAIMABLE),
            Ok(Migratetype::Reclaimable)
        );
        let bad = GFP_KERNEL | Gfp::RECLAIMABLE | Gfp::MOVABLE;
        assert_eq!(
            gfp_migratetype(bad),
            Err(GfpError::BadMobility { gfp: bad })
        );
    }

    #[test]
    fn validate_rejects_impossible_requests() {
        assert_eq!(
            validate(GFP_KERNEL, 0),
            Ok(GfpPlacement {
                highest_zoneidx: ZoneType::Normal,
                migratetype: Migratetype::Unmovable
            })
        );
        assert!(validate(GFP_KERNEL, MAX_PAGE_ORDER).is_ok());
        assert_eq!(
            validate(GFP_KERNEL, MAX_PAGE_ORDER + 1),
            Err(GfpError::OrderTooLarge { order: 11 })
        );
        assert_eq!(
            validate(GFP_KERNEL, u32::MAX),
            Err(GfpError::OrderTooLarge { order: u32::MAX })
        );
        let dd = GFP_KERNEL | Gfp::DMA | Gfp::DMA32;
        assert_eq!(validate(dd, 0), Err(GfpError::BadZoneModifiers { gfp: dd }));
        assert!(validate(GFP_KERNEL | Gfp::MOVABLE | Gfp::RECLAIMABLE, 0).is_err());
        assert!(validate(GFP_KERNEL | Gfp::NOFAIL, 1).is_ok());
        assert_eq!(
            validate(GFP_KERNEL | Gfp::NOFAIL, 2),
            Err(GfpError::NofailOrder { order: 2 })
        );
        assert!(matches!(
            validate(GFP_ATOMIC | Gfp::NOFAIL, 0),
            Err(GfpError::NofailAtomic { .. })
        ));
        assert_eq!(
            validate(Gfp::from_bits_retain(0x200), 0),
            Err(GfpError::UnknownFlags { bits: 0x200 })
        );
        assert_eq!(
            validate(Gfp::from_bits_retain(u32::MAX), 0),
            Err(GfpError::UnknownFlags {
                bits: !Gfp::all().bits()
            })
        );
    }

    #[test]
    fn error_messages_are_clear() {
        let e = validate(GFP_KERNEL | Gfp::DMA | Gfp::DMA32, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "conflicting GFP zone modifiers in 0xcc5(GFP_DMA|GFP_DMA32): \
             __GFP_DMA, __GFP_DMA32 and __GFP_HIGHMEM exclude each other"
        );
        assert_eq!(
            GfpError::OrderTooLarge { order: 12 }.to_string(),
            "order 12 is above MAX_PAGE_ORDER (10)"
        );
        let e = validate(GFP_ATOMIC | Gfp::NOFAIL, 0).unwrap_err();
        assert!(format!("{e}").contains("GFP_ATOMIC|__GFP_NOFAIL"));
    }

    #[test]
    fn alloc_flags_values_and_wmark() {
        assert_eq!(AllocFlags::WMARK_MIN.bits(), 0);
        assert_eq!(AllocFlags::NO_WATERMARKS.bits(), 0x04);
        assert_eq!(AllocFlags::OOM.bits(), 0x08);
        assert_eq!(AllocFlags::NON_BLOCK.bits(), 0x10);
        assert_eq!(AllocFlags::MIN_RESERVE.bits(), 0x20);
        assert_eq!(AllocFlags::CPUSET.bits(), 0x40);
        assert_eq!(AllocFlags::CMA.bits(), 0x80);
        assert_eq!(AllocFlags::NOFRAGMENT.bits(), 0x100);
        assert_eq!(AllocFlags::HIGHATOMIC.bits(), 0x200);
        assert_eq!(AllocFlags::KSWAPD.bits(), 0x800);
        assert_eq!(AllocFlags::RESERVES.bits(), 0x238);
        assert_eq!(AllocFlags::empty().wmark(), WatermarkKind::Min);
        assert_eq!(AllocFlags::WMARK_LOW.wmark(), WatermarkKind::Low);
        assert_eq!(AllocFlags::WMARK_HIGH.wmark(), WatermarkKind::High);
        let f = (AllocFlags::WMARK_LOW | AllocFlags::CMA).with_wmark(WatermarkKind::Min);
        assert_eq!(f, AllocFlags::CMA);
        assert_eq!(
            f.with_wmark(WatermarkKind::High),
            AllocFlags::CMA | AllocFlags::WMARK_HIGH
        );
    }

    #[test]
    fn slow_path_flags() {
        // GFP_KERNEL: min watermark, cpuset, kswapd; no reserves.
        assert_eq!(
            gfp_to_alloc_flags(GFP_KERNEL, 0),
            AllocFlags::CPUSET | AllocFlags::KSWAPD
        );
        // GFP_ATOMIC order 0: non-blocking + min reserve, cpuset ignored.
        assert_eq!(
            gfp_to_alloc_flags(GFP_ATOMIC, 0),
            AllocFlags::MIN_RESERVE | AllocFlags::KSWAPD | AllocFlags::NON_BLOCK
        );
        // GFP_ATOMIC high order: also the highatomic reserve.
        assert_eq!(
            gfp_to_alloc_flags(GFP_ATOMIC, 3),
            AllocFlags::MIN_RESERVE
                | AllocFlags::KSWAPD
                | AllocFlags::NON_BLOCK
                | AllocFlags::HIGHATOMIC
        );
        // GFP_NOWAIT high order: non-blocking but no __GFP_HIGH, so no highatomic.
        assert_eq!(
            gfp_to_alloc_flags(GFP_NOWAIT, 2),
            AllocFlags::CPUSET | AllocFlags::KSWAPD | AllocFlags::NON_BLOCK
        );
        // __GFP_NOMEMALLOC suppresses the non-blocking bonus.
        assert_eq!(
            gfp_to_alloc_flags(GFP_ATOMIC | Gfp::NOMEMALLOC, 2),
            AllocFlags::MIN_RESERVE | AllocFlags::KSWAPD
        );
        // Movable requests may use CMA.
        assert_eq!(
            gfp_to_alloc_flags(GFP_HIGHUSER_MOVABLE, 0),
            AllocFlags::CPUSET | AllocFlags::KSWAPD | AllocFlags::CMA
        );
        // THP light: no reclaim at all, movable.
        assert_eq!(
            gfp_to_alloc_flags(GFP_TRANSHUGE_LIGHT, 9),
            AllocFlags::CPUSET | AllocFlags::CMA
        );
        assert_eq!(
            gfp_to_alloc_flags(GFP_KERNEL, 0).wmark(),
            WatermarkKind::Min
        );
    }

    #[test]
    fn pfmemalloc_and_nofragment() {
        assert_eq!(
            gfp_pfmemalloc_flags(GFP_KERNEL | Gfp::MEMALLOC),
            AllocFlags::NO_WATERMARKS
        );
        assert!(gfp_pfmemalloc_flags(GFP_KERNEL | Gfp::MEMALLOC | Gfp::NOMEMALLOC).is_empty());
        assert!(gfp_pfmemalloc_flags(GFP_KERNEL).is_empty());

        assert_eq!(
            alloc_flags_nofragment(GFP_KERNEL, ZoneType::Normal, true, 1),
            AllocFlags::KSWAPD | AllocFlags::NOFRAGMENT
        );
        assert_eq!(
            alloc_flags_nofragment(GFP_KERNEL, ZoneType::Dma32, true, 1),
            AllocFlags::KSWAPD
        );
        assert_eq!(
            alloc_flags_nofragment(GFP_TRANSHUGE, ZoneType::Normal, false, 2),
            AllocFlags::empty()
        );
        assert_eq!(
            alloc_flags_nofragment(GFP_TRANSHUGE, ZoneType::Normal, false, 1),
            AllocFlags::NOFRAGMENT
        );
        assert_eq!(
            gfp_to_alloc_flags_cma(GFP_KERNEL, AllocFlags::WMARK_LOW),
            AllocFlags::WMARK_LOW
        );
    }
}
