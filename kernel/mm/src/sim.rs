//! The host platform: simulated physical RAM, threads as CPUs (feature `std`).
//!
//! The allocator's claim to correctness rests on running the very same code on the host,
//! under property tests, that runs in the kernel. This module provides what the kernel's
//! `Platform` provides, with host means:
//!
//! - **Physical RAM** is one large anonymous mapping made with `MAP_NORESERVE`: a 64 GiB
//!   "machine" costs only the pages actually touched (memmaps, roots, test data), so it fits
//!   on a 24 GiB host. `phys_to_virt(pa)` is `mapping + (pa - base)`.
//! - **Only usable RAM is accessible.** [`SimPlatform::for_map`] maps the whole span of a
//!   firmware map with no access and then opens only the usable ranges, minus the caller's
//!   extra reservations. Firmware-reserved ranges, holes, bootloader RAM and reserved
//!   ranges fault on access, so the memory model touching memory it must not touch is a
//!   crash in the test, not a silent pass.
//! - **CPUs** are threads: a thread is bound to a CPU id of one platform
//!   ([`SimPlatform::bind_current_thread`]; the creating thread is CPU 0), and
//!   [`SimPlatform::run_on_cpus`] runs a closure on one scoped thread per CPU.
//! - **Local interrupts** are a per-thread "disabled" flag: nothing interrupts a host thread,
//!   but code that must run with interrupts off can be checked to do so.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

use std::boxed::Box;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;

use crate::memmap::{FirmwareRange, MapError, MemoryMap, RangeKind};
use crate::mm_init::{InitError, MemoryModel, ModelParams};
use crate::mmzone::PAGE_SIZE;
use crate::page_alloc::{self, PageAllocator};
use crate::platform::{IrqState, Platform};

static NEXT_PLATFORM_ID: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    /// (platform id, cpu id) this thread is bound to; platform id 0: unbound.
    static CPU: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
    /// Local interrupts disabled on this thread ("CPU").
    static IRQS_DISABLED: Cell<bool> = const { Cell::new(false) };
}

/// Why a simulated machine could not be set up.
#[derive(Debug, PartialEq, Eq)]
pub enum SimError {
    /// The firmware map was rejected.
    Map(MapError),
    /// `mmap`/`mprotect` failed with this errno.
    Mmap(i32),
    /// The requested geometry is unusable (zero size, misaligned, zero CPUs).
    BadGeometry,
    /// The memory model could not be built.
    Init(InitError),
    /// The page allocator could not be set up.
    Alloc(page_alloc::InitError),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Map(e) => write!(f, "sim: {e}"),
            SimError::Mmap(errno) => write!(f, "sim: mmap/mprotect failed, errno {errno}"),
            SimError::BadGeometry => {
                f.write_str("sim: bad geometry (size, alignment or CPU count)")
            }
            SimError::Init(e) => write!(f, "sim: memory model init failed: {e}"),
            SimError::Alloc(e) => write!(f, "sim: {e}"),
        }
    }
}

impl std::error::Error for SimError {}

/// The host implementation of [`Platform`]. See the module documentation.
pub struct SimPlatform {
    id: u64,
    base: u64,
    size: u64,
    mapping: *mut u8,
    nr_cpus: usize,
}

// SAFETY: the mapping is process-wide memory owned by this object until drop; the platform
// itself only hands out addresses into it. Who may access which simulated physical memory is
// governed by the same rules as real physical memory (memblock / buddy ownership).
unsafe impl Send for SimPlatform {}
// SAFETY: as above; all methods take `&self` and mutate only thread-local state.
unsafe impl Sync for SimPlatform {}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl SimPlatform {
    /// Simulated RAM covering physical `[base, base + size)`, all of it accessible, with
    /// `nr_cpus` CPUs. The calling thread becomes CPU 0.
    pub fn new(base: u64, size: u64, nr_cpus: usize) -> Result<SimPlatform, SimError> {
        let p = Self::reserve(base, size, nr_cpus)?;
        p.protect(base, base + size, true)?;
        Ok(p)
    }

    /// Simulated RAM for a firmware map: spans its RAM, but only usable RAM not covered by
    /// `extra_reserved` is accessible (see the module documentation). The calling thread
    /// becomes CPU 0.
    pub fn for_map(
        ranges: &[FirmwareRange],
        extra_reserved: &[(u64, u64)],
        nr_cpus: usize,
    ) -> Result<SimPlatform, SimError> {
        let map = MemoryMap::sanitize(ranges).map_err(SimError::Map)?;
        let base = map.ram().map(|r| r.start).min().unwrap_or(0);
        let end = map.ram().map(|r| r.end).max().unwrap_or(0);
        let p = Self::reserve(base, end - base, nr_cpus)?;
        for r in map.entries().iter().filter(|r| r.kind == RangeKind::Usable) {
            p.protect(r.start, r.end, true)?;
        }
        for &(s, e) in extra_reserved {
            let s = (s & !(PAGE_SIZE - 1)).max(base);
            let e = e.next_multiple_of(PAGE_SIZE).min(end);
            if s < e {
                p.protect(s, e, false)?;
            }
        }
        Ok(p)
    }

    fn reserve(base: u64, size: u64, nr_cpus: usize) -> Result<SimPlatform, SimError> {
        if size == 0
            || !base.is_multiple_of(PAGE_SIZE)
            || !size.is_multiple_of(PAGE_SIZE)
            || nr_cpus == 0
        {
            return Err(SimError::BadGeometry);
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing;
        // no existing memory is affected.
        let mapping = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(SimError::Mmap(errno()));
        }
        let p = SimPlatform {
            id: NEXT_PLATFORM_ID.fetch_add(1, Ordering::Relaxed),
            base,
            size,
            mapping: mapping as *mut u8,
            nr_cpus,
        };
        p.bind_current_thread(0);
        Ok(p)
    }

    /// Make simulated physical `[start, end)` (page aligned, inside the RAM span) accessible
    /// or not.
    pub fn protect(&self, start: u64, end: u64, accessible: bool) -> Result<(), SimError> {
        if !start.is_multiple_of(PAGE_SIZE)
            || !end.is_multiple_of(PAGE_SIZE)
            || start < self.base
            || end > self.base + self.size
            || start > end
        {
            return Err(SimError::BadGeometry);
        }
        if start == end {
            return Ok(());
        }
        let prot = if accessible {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_NONE
        };
        // SAFETY: the range lies inside this platform's own mapping (checked above).
        let rc = unsafe {
            libc::mprotect(
                self.mapping.add((start - self.base) as usize) as *mut libc::c_void,
                (end - start) as usize,
                prot,
            )
        };
        if rc != 0 {
            return Err(SimError::Mmap(errno()));
        }
        Ok(())
    }

    /// First simulated physical address.
    pub fn phys_base(&self) -> u64 {
        self.base
    }

    /// Bytes of simulated physical address space.
    pub fn phys_size(&self) -> u64 {
        self.size
    }

    /// Bind the calling thread to CPU `cpu` of this platform.
    ///
    /// # Panics
    ///
    /// If `cpu >= nr_cpus()`: a test set-up bug.
    pub fn bind_current_thread(&self, cpu: usize) {
        assert!(
            cpu < self.nr_cpus,
            "sim: cpu {cpu} >= nr_cpus {}",
            self.nr_cpus
        );
        CPU.with(|c| c.set((self.id, cpu)));
        IRQS_DISABLED.with(|d| d.set(false));
    }

    /// Run `f(cpu)` on one scoped thread per CPU, each bound to its CPU, and wait for all.
    pub fn run_on_cpus<F>(&self, f: F)
    where
        F: Fn(usize) + Sync,
    {
        std::thread::scope(|s| {
            for cpu in 0..self.nr_cpus {
                let f = &f;
                s.spawn(move || {
                    self.bind_current_thread(cpu);
                    f(cpu);
                });
            }
        });
    }
}

impl Drop for SimPlatform {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `reserve` with this size and is unmapped once;
        // everything that pointed into it (a `MemoryModel`) must be gone by now, which
        // `SimMachine` guarantees by field order.
        unsafe { libc::munmap(self.mapping as *mut libc::c_void, self.size as usize) };
    }
}

impl Platform for SimPlatform {
    /// The CPU the calling thread is bound to.
    ///
    /// # Panics
    ///
    /// If the thread is not bound to a CPU of this platform: a test set-up bug.
    #[inline]
    fn cpu_id(&self) -> usize {
        let (id, cpu) = CPU.with(|c| c.get());
        assert!(
            id == self.id,
            "sim: this thread is not a CPU of this SimPlatform (use bind_current_thread)"
        );
        cpu
    }

    #[inline]
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    #[inline]
    fn local_irq_save(&self) -> IrqState {
        let was = IRQS_DISABLED.with(|d| d.replace(true));
        IrqState::from_raw(was as u64)
    }

    #[inline]
    fn local_irq_restore(&self, state: IrqState) {
        IRQS_DISABLED.with(|d| d.set(state.into_raw() != 0));
    }

    #[inline]
    fn irqs_disabled(&self) -> bool {
        IRQS_DISABLED.with(|d| d.get())
    }

    /// # Panics
    ///
    /// If `pa` is outside the simulated physical span: the allocator computed an address
    /// that is not RAM, which is a bug to catch, not to paper over.
    #[inline]
    fn phys_to_virt(&self, pa: u64) -> *mut u8 {
        assert!(
            pa >= self.base && pa <= self.base + self.size,
            "sim: physical address {pa:#x} outside simulated RAM [{:#x}, {:#x})",
            self.base,
            self.base + self.size
        );
        // SAFETY: in bounds of the mapping (or one past its end), checked above.
        unsafe { self.mapping.add((pa - self.base) as usize) }
    }
}

/// A whole simulated machine: platform plus memory model, built in one call.
pub struct SimMachine {
    /// The memory model. Declared first so it is dropped before the RAM it lives in.
    pub model: MemoryModel,
    /// The platform.
    pub platform: SimPlatform,
}

impl SimMachine {
    /// Simulate a machine with firmware map `ranges` and `nr_cpus` CPUs, and build its
    /// memory model with `extra_reserved` and `params`.
    pub fn build(
        ranges: &[FirmwareRange],
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
        nr_cpus: usize,
    ) -> Result<SimMachine, SimError> {
        let platform = SimPlatform::for_map(ranges, extra_reserved, nr_cpus)?;
        let model =
            MemoryModel::init(&platform, ranges, extra_reserved, params).map_err(SimError::Init)?;
        Ok(SimMachine { model, platform })
    }
}

/// A simulated machine with its page allocator running: what host tests and benchmarks
/// allocate from. Dereferences to the [`PageAllocator`].
///
/// The allocator needs a `&'static` platform (the kernel's is a static); here the platform
/// is boxed and owned by this value, and the allocator, the only holder of the reference,
/// is dropped first. [`PageAllocator::platform`] only lends the platform for the
/// allocator's own lifetime, so the reference cannot escape.
pub struct SimAllocator {
    alloc: ManuallyDrop<PageAllocator<SimPlatform>>,
    platform: NonNull<SimPlatform>,
}

// SAFETY: the allocator is `Send + Sync`, and the platform it points to is `Sync` and owned
// by this value.
unsafe impl Send for SimAllocator {}
// SAFETY: as above.
unsafe impl Sync for SimAllocator {}

impl SimAllocator {
    /// Simulate a machine ([`SimMachine::build`]) and start its page allocator. The calling
    /// thread is CPU 0.
    pub fn build(
        ranges: &[FirmwareRange],
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
        nr_cpus: usize,
    ) -> Result<SimAllocator, SimError> {
        let platform = Box::new(SimPlatform::for_map(ranges, extra_reserved, nr_cpus)?);
        let raw = NonNull::from(Box::leak(platform));
        Self::assemble(raw, ranges, extra_reserved, params)
    }

    /// Build the memory model and allocator on the leaked platform `raw`; on failure the
    /// platform is reclaimed.
    fn assemble(
        raw: NonNull<SimPlatform>,
        ranges: &[FirmwareRange],
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
    ) -> Result<SimAllocator, SimError> {
        // SAFETY: `raw` comes from a leaked box, so it is valid until we free it in `drop`,
        // which happens only after the allocator (the one holder of this reference) is
        // gone; see the type documentation.
        let p: &'static SimPlatform = unsafe { &*raw.as_ptr() };
        let built = MemoryModel::init(p, ranges, extra_reserved, params)
            .map_err(SimError::Init)
            .and_then(|model| PageAllocator::new(model, p).map_err(SimError::Alloc));
        match built {
            Ok(alloc) => Ok(SimAllocator {
                alloc: ManuallyDrop::new(alloc),
                platform: raw,
            }),
            Err(e) => {
                // SAFETY: nothing refers to the platform any more (model and allocator
                // construction failed and dropped everything); the box is reclaimed once.
                drop(unsafe { Box::from_raw(raw.as_ptr()) });
                Err(e)
            }
        }
    }

    /// Throw the allocator away and build a new memory model and allocator on the same
    /// simulated RAM (which keeps its host pages: a rebuilt machine does not pay the
    /// host's page faults again). The platform's CPU count is kept.
    pub fn rebuild(
        self,
        ranges: &[FirmwareRange],
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
    ) -> Result<SimAllocator, SimError> {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped (ManuallyDrop), so the allocator is dropped exactly
        // once, here, and nothing borrowed from it survives (`self` was moved in).
        unsafe { ManuallyDrop::drop(&mut me.alloc) };
        Self::assemble(me.platform, ranges, extra_reserved, params)
    }

    /// The simulated platform.
    pub fn sim_platform(&self) -> &SimPlatform {
        // SAFETY: valid until `drop` (see the type documentation).
        unsafe { self.platform.as_ref() }
    }
}

impl Deref for SimAllocator {
    type Target = PageAllocator<SimPlatform>;

    fn deref(&self) -> &Self::Target {
        &self.alloc
    }
}

impl Drop for SimAllocator {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; nothing borrowed from it can outlive `self`.
        unsafe { ManuallyDrop::drop(&mut self.alloc) };
        // SAFETY: the allocator, the only holder of a reference to the platform, is gone;
        // the box is reclaimed once.
        drop(unsafe { Box::from_raw(self.platform.as_ptr()) });
    }
}

/// A QEMU-like BIOS E820 map for `ram_bytes` of RAM (`-m`): 639 KiB of low memory, the
/// EBDA/VGA/BIOS hole, RAM from 1 MiB up to 2 GiB (or less), the PCI hole up to 4 GiB,
/// the rest above 4 GiB, and QEMU's small reservations.
pub fn qemu_e820(ram_bytes: u64) -> Vec<FirmwareRange> {
    use RangeKind::*;
    let low_limit = 2u64 << 30;
    let below = ram_bytes.min(low_limit);
    let mut v = std::vec![
        FirmwareRange::new(0, 0x9fc00, Usable),
        FirmwareRange::new(0x9fc00, 0xa0000, Reserved),
        FirmwareRange::new(0xf0000, 0x100000, Reserved),
        FirmwareRange::new(0x100000, below - 0x20000, Usable),
        FirmwareRange::new(below - 0x20000, below, Reserved),
        FirmwareRange::new(0xb000_0000, 0xc000_0000, Reserved),
        FirmwareRange::new(0xfed1c000, 0xfed20000, Reserved),
        FirmwareRange::new(0xfeffc000, 0xff000000, Reserved),
        FirmwareRange::new(0xfffc0000, 0x1_0000_0000, Reserved),
    ];
    if ram_bytes > low_limit {
        v.push(FirmwareRange::new(
            1 << 32,
            (1 << 32) + (ram_bytes - low_limit),
            Usable,
        ));
    }
    v
}

/// A UEFI-style map for `ram_bytes` of RAM: the same layout as [`qemu_e820`] but with the
/// usable RAM below 4 GiB cut into many small adjacent descriptors (alternating between
/// `Usable` kinds the way boot-services code/data and conventional memory alternate, all
/// usable once boot services exit), some runtime-services and ACPI ranges and bootloader
/// ranges ("page tables and the kernel") among the low descriptors. Deterministic for a
/// given `seed`.
pub fn uefi_fragmented(ram_bytes: u64, seed: u64) -> Vec<FirmwareRange> {
    use RangeKind::*;
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut v = Vec::new();
    let below = ram_bytes.min(2 << 30);
    v.push(FirmwareRange::new(0, 0xa0000, Usable));
    v.push(FirmwareRange::new(0xa0000, 0x100000, Reserved));
    let mut cur = 0x100000u64;
    let end = below - 0x40_0000;
    let mut i = 0;
    while cur < end {
        let pages = 1 + next() % 256;
        let e = (cur + pages * PAGE_SIZE).min(end);
        // Firmware and bootloader ranges sit among the first few hundred descriptors;
        // above them everything is boot-services or conventional memory.
        let kind = match (i < 240, i % 23) {
            (true, 7) => AcpiReclaimable,
            (true, 13) => AcpiNvs,
            (true, 17) => Reserved,
            (true, 19) => Bootloader,
            _ => Usable,
        };
        v.push(FirmwareRange::new(cur, e, kind));
        cur = e;
        i += 1;
    }
    v.push(FirmwareRange::new(end, below, Reserved));
    v.push(FirmwareRange::new(0xffc0_0000, 0x1_0000_0000, Reserved));
    if ram_bytes > 2 << 30 {
        v.push(FirmwareRange::new(
            1 << 32,
            (1 << 32) + (ram_bytes - (2 << 30)),
            Usable,
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::LocalIrqGuard;

    #[test]
    fn cpus_and_interrupts() {
        let p = SimPlatform::new(0, 1 << 20, 4).unwrap();
        assert_eq!(p.cpu_id(), 0);
        assert!(!p.irqs_disabled());
        {
            let _g = LocalIrqGuard::new(&p);
            assert!(p.irqs_disabled());
            let s = p.local_irq_save();
            p.local_irq_restore(s);
            assert!(p.irqs_disabled());
        }
        assert!(!p.irqs_disabled());
        let seen = std::sync::Mutex::new(Vec::new());
        p.run_on_cpus(|cpu| {
            assert_eq!(p.cpu_id(), cpu);
            assert!(!p.irqs_disabled());
            seen.lock().unwrap().push(cpu);
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3]);
    }

    #[test]
    fn memory_is_at_the_physical_base() {
        let p = SimPlatform::new(1 << 32, 1 << 20, 1).unwrap();
        let v = p.phys_to_virt((1 << 32) + 4096);
        // SAFETY: inside the accessible mapping.
        unsafe {
            v.write(7);
            assert_eq!(*p.phys_to_virt((1 << 32) + 4096), 7);
        }
    }

    #[test]
    fn bad_geometry_is_an_error() {
        assert_eq!(
            SimPlatform::new(1, 4096, 1).err(),
            Some(SimError::BadGeometry)
        );
        assert_eq!(SimPlatform::new(0, 0, 1).err(), Some(SimError::BadGeometry));
        assert_eq!(
            SimPlatform::new(0, 4096, 0).err(),
            Some(SimError::BadGeometry)
        );
    }
}
