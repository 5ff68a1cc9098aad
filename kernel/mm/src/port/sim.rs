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
//! - **A software MMU** for movable memory ([`crate::movement::rmap`]): the movable window
//!   [`MovableMapping::movable_va_range`] (at [`SIM_MOVABLE_VA_BASE`], by default four times the
//!   simulated RAM and at least 1 GiB) has one atomic leaf entry per page, in an array that
//!   is itself a `MAP_NORESERVE` mapping, so an unused window costs nothing. Threads touch
//!   movable memory only through virtual addresses ([`SimPlatform::read_u64`],
//!   [`SimPlatform::write_u64`], [`SimPlatform::with_page`]), and every access behaves like
//!   a CPU: it "fills its TLB" from the entry, faults on a migration entry (waits until the
//!   migration is over, counts a migration fault, retries) and gets [`SimFault::NotMapped`]
//!   (the segfault analogue) where nothing is mapped.
//! - **TLB shootdown** by per-CPU sequence counts: an access makes its CPU's count odd for
//!   exactly as long as it may use the translation it read, and
//!   [`MovableMapping::flush_tlb_range`] waits until every other CPU's count is even or has moved
//!   on. When the flush returns, no CPU can still be using a translation read before it
//!   began, which is the guarantee migration and zap rely on before they copy or free a
//!   frame. A fault is handled *outside* the counted section, as a real CPU takes the fault
//!   with interrupts enabled and so still answers shootdown IPIs: otherwise an access
//!   waiting for a migration would wait for the very flush that waits for it.
//! - **A barrier on another CPU** ([`Platform::cpu_barrier`], which lets the pcp lists'
//!   owner take them with plain stores, see [`crate::port::pcp_lock`]) is the host's
//!   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: a full fence on every core running a
//!   thread of this process. Without it (a host that refuses the call, or
//!   [`SimPlatform::without_cpu_barrier`]) the owner uses an atomic exchange.
//! - **kcompactd** is whatever thread calls [`SimPlatform::kcompactd_wait`]: a wake-up
//!   ([`Platform::wake_kcompactd`]) sets a per-node flag and signals a condition variable.
//!
//! One host thread is bound to a CPU id at a time (as the pcp lists already require): the
//! per-CPU sequence count would otherwise be moved by two threads at once.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use std::vec::Vec;

use std::boxed::Box;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::Deref;
use std::ptr::NonNull;

use crate::InitError;
use crate::model::memmap::{FirmwareRange, MapError, MemoryMap, RangeKind};
use crate::model::mm_init::{MemoryModel, ModelParams};
use crate::model::mmzone::{MAX_NUMNODES, MAX_PHYSMEM_BITS, PAGE_SHIFT, PAGE_SIZE};
use crate::page_alloc::PageAllocator;
use crate::port::platform::{IrqState, MovableMapping, Platform, Pte, PteError};

static NEXT_PLATFORM_ID: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    /// (platform id, cpu id) this thread is bound to; platform id 0: unbound.
    static CPU: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
    /// Local interrupts disabled on this thread ("CPU").
    static IRQS_DISABLED: Cell<bool> = const { Cell::new(false) };
    /// Nesting depth of movable-memory accesses on this thread (only the outermost one
    /// moves the CPU's TLB sequence count).
    static ACCESS_DEPTH: Cell<u32> = const { Cell::new(0) };
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
    /// The memory model could not be built or the page allocator could not start (the
    /// crate's own init error, as a kernel sees it).
    Init(InitError),
}

impl From<InitError> for SimError {
    fn from(e: InitError) -> SimError {
        SimError::Init(e)
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Map(e) => write!(f, "sim: {e}"),
            SimError::Mmap(errno) => write!(f, "sim: mmap/mprotect failed, errno {errno}"),
            SimError::BadGeometry => {
                f.write_str("sim: bad geometry (size, alignment or CPU count)")
            }
            SimError::Init(e) => write!(f, "sim: {e}"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Map(e) => Some(e),
            SimError::Init(e) => Some(e),
            SimError::Mmap(_) | SimError::BadGeometry => None,
        }
    }
}

/// Where the simulated movable window starts (a canonical lower-half address, far from
/// anything the host maps; only the simulated page table knows it).
pub const SIM_MOVABLE_VA_BASE: u64 = 0x7e00_0000_0000;
/// The smallest default movable window.
pub const SIM_MOVABLE_VA_MIN: u64 = 1 << 30;

/// Why a simulated access to movable memory failed (a fault that is not a migration
/// entry, which is waited out instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimFault {
    /// Nothing is mapped at this address (the segfault analogue).
    NotMapped(u64),
    /// The address is outside the movable window.
    OutOfRange(u64),
    /// A `u64` access that is not 8-byte aligned.
    Misaligned(u64),
    /// A write through a read-only entry (a file mapping).
    ReadOnly(u64),
}

impl fmt::Display for SimFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimFault::NotMapped(va) => write!(f, "sim: nothing mapped at {va:#x}"),
            SimFault::OutOfRange(va) => write!(f, "sim: {va:#x} is outside the movable window"),
            SimFault::Misaligned(va) => write!(f, "sim: misaligned access at {va:#x}"),
            SimFault::ReadOnly(va) => write!(f, "sim: write to read-only {va:#x}"),
        }
    }
}

impl std::error::Error for SimFault {}

// Leaf entry encoding of the simulated page table: 0 is "none", bit 0 "present", bit 1
// "migration entry", bit 2 "accessed" (set by an access through a present entry, as the
// x86 A bit), bit 3 "read-only" (kept across a migration entry), the pfn above.
const PTE_PRESENT: u64 = 1;
const PTE_MIGRATION: u64 = 2;
const PTE_YOUNG: u64 = 4;
const PTE_RDONLY: u64 = 8;
const PTE_PFN_SHIFT: u32 = 4;

fn pte_encode(pte: Pte) -> u64 {
    match pte {
        Pte::None => 0,
        Pte::Present(pfn) => (pfn << PTE_PFN_SHIFT) | PTE_PRESENT,
        Pte::Migration(pfn) => (pfn << PTE_PFN_SHIFT) | PTE_MIGRATION,
    }
}

fn pte_decode(raw: u64) -> Pte {
    let pfn = raw >> PTE_PFN_SHIFT;
    if raw & PTE_PRESENT != 0 {
        Pte::Present(pfn)
    } else if raw & PTE_MIGRATION != 0 {
        Pte::Migration(pfn)
    } else {
        Pte::None
    }
}

/// One CPU's TLB state: its access sequence count (odd while an access may be using a
/// translation). Padded to its own cache lines: every access writes it twice.
#[repr(align(128))]
struct CpuTlb {
    seq: AtomicU64,
}

/// The simulated page table of the movable window.
struct SoftMmu {
    va_base: u64,
    nr_pages: u64,
    /// `nr_pages` atomic entries in a `MAP_NORESERVE` mapping of `map_bytes`.
    ptes: *mut AtomicU64,
    map_bytes: usize,
    /// Failures `pte_map` still has to report as "no page-table page" (fault injection).
    inject_map_failures: AtomicU64,
}

/// Counters of the simulated MMU, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimMmuStats {
    /// Accesses that found a migration entry and waited (each retry counts again).
    pub migration_faults: u64,
    /// Accesses that found nothing mapped.
    pub not_mapped_faults: u64,
    /// Completed accesses.
    pub accesses: u64,
    /// `flush_tlb_range` calls.
    pub tlb_flushes: u64,
    /// Other CPUs a flush found inside an access and had to wait for.
    pub tlb_flush_waits: u64,
    /// kcompactd wake-ups requested.
    pub kcompactd_wakes: u64,
}

/// The host implementation of [`Platform`]. See the module documentation.
pub struct SimPlatform {
    id: u64,
    base: u64,
    size: u64,
    mapping: *mut u8,
    nr_cpus: usize,
    mmu: SoftMmu,
    tlb: Box<[CpuTlb]>,
    migration_faults: AtomicU64,
    not_mapped_faults: AtomicU64,
    accesses: AtomicU64,
    tlb_flushes: AtomicU64,
    tlb_flush_waits: AtomicU64,
    kcompactd_wakes: AtomicU64,
    kcompactd: Box<[(Mutex<bool>, Condvar)]>,
    /// Declare a kswapd worker ([`Platform::has_kswapd`]); off unless a test turns it on.
    kswapd: AtomicBool,
    kswapd_wakes: AtomicU64,
    /// Behave as a port without the [`MovableMapping`] capability.
    no_movable_mapping: bool,
    /// Node of each CPU ([`Platform::cpu_to_node`]); all 0 unless set.
    cpu_nodes: Box<[usize]>,
    /// [`Platform::cpu_barrier`] by `membarrier`: true if the host kernel registered this
    /// process for it, unless a test turned it off.
    cpu_barrier: bool,
}

// SAFETY: the mapping is process-wide memory owned by this object until drop; the platform
// itself only hands out addresses into it. Who may access which simulated physical memory is
// governed by the same rules as real physical memory (memblock / buddy ownership).
unsafe impl Send for SimPlatform {}
// SAFETY: as above; all methods take `&self` and mutate only thread-local state.
unsafe impl Sync for SimPlatform {}

/// `membarrier(2)` commands (linux/membarrier.h).
#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Register the process for expedited private `membarrier` once; true if the host kernel
/// has it (Linux 4.14 and later, unless a seccomp filter refuses the call).
fn membarrier_registered() -> bool {
    #[cfg(target_os = "linux")]
    {
        static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *REGISTERED.get_or_init(|| {
            // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
            unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                    0,
                ) == 0
            }
        })
    }
    #[cfg(not(target_os = "linux"))]
    false
}

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
        // Without the x86 low-memory trimming: the simulated RAM is what the firmware calls
        // usable, whatever rules the model built on it applies. Clipped at x86_64's 46-bit
        // limit: a model with a wider limit simulates no RAM above 64 TiB.
        let map =
            MemoryMap::sanitize_with(ranges, false, MAX_PHYSMEM_BITS).map_err(SimError::Map)?;
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
        let window = size
            .saturating_mul(4)
            .max(SIM_MOVABLE_VA_MIN)
            .next_multiple_of(PAGE_SIZE);
        let mmu = match SoftMmu::new(SIM_MOVABLE_VA_BASE, window / PAGE_SIZE) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: the RAM mapping was just made with this size and nothing uses it.
                unsafe { libc::munmap(mapping, size as usize) };
                return Err(e);
            }
        };
        let p = SimPlatform {
            id: NEXT_PLATFORM_ID.fetch_add(1, Ordering::Relaxed),
            base,
            size,
            mapping: mapping as *mut u8,
            nr_cpus,
            mmu,
            tlb: (0..nr_cpus)
                .map(|_| CpuTlb {
                    seq: AtomicU64::new(0),
                })
                .collect(),
            migration_faults: AtomicU64::new(0),
            not_mapped_faults: AtomicU64::new(0),
            accesses: AtomicU64::new(0),
            tlb_flushes: AtomicU64::new(0),
            tlb_flush_waits: AtomicU64::new(0),
            kcompactd_wakes: AtomicU64::new(0),
            kswapd: AtomicBool::new(false),
            kswapd_wakes: AtomicU64::new(0),
            no_movable_mapping: false,
            cpu_nodes: std::vec![0; nr_cpus].into_boxed_slice(),
            cpu_barrier: membarrier_registered(),
            kcompactd: (0..MAX_NUMNODES)
                .map(|_| (Mutex::new(false), Condvar::new()))
                .collect(),
        };
        p.bind_current_thread(0);
        Ok(p)
    }

    /// Replace the movable window by one of `bytes` (rounded up to whole pages) at
    /// [`SIM_MOVABLE_VA_BASE`]. Only before anything is mapped (the old table is dropped):
    /// for tests that want a small window.
    pub fn with_movable_window(mut self, bytes: u64) -> Result<SimPlatform, SimError> {
        if bytes == 0 {
            return Err(SimError::BadGeometry);
        }
        self.mmu = SoftMmu::new(SIM_MOVABLE_VA_BASE, bytes.div_ceil(PAGE_SIZE))?;
        Ok(self)
    }

    /// Put CPU `i` on node `nodes[i]` (one entry per CPU), as an SRAT's processor affinity
    /// would; before the allocator is built (it sizes pcp lists and orders zonelists by
    /// which nodes have CPUs).
    pub fn with_cpu_nodes(mut self, nodes: &[usize]) -> Result<SimPlatform, SimError> {
        if nodes.len() != self.nr_cpus || nodes.iter().any(|&n| n >= MAX_NUMNODES) {
            return Err(SimError::BadGeometry);
        }
        self.cpu_nodes = nodes.into();
        Ok(self)
    }

    /// Declare (or stop declaring) a kswapd worker: with it, allocations wake kswapd
    /// ([`Platform::wake_kswapd`], counted by [`SimPlatform::kswapd_wakes`]) instead of
    /// kcompactd, and the test plays the worker by calling
    /// [`PageAllocator::kswapd_run`](crate::PageAllocator::kswapd_run).
    pub fn set_kswapd(&self, on: bool) {
        self.kswapd.store(on, Ordering::Relaxed);
    }

    /// kswapd wake-ups requested so far.
    pub fn kswapd_wakes(&self) -> u64 {
        self.kswapd_wakes.load(Ordering::Relaxed)
    }

    /// Behave as a port that offers no [`MovableMapping`] ([`Platform::movable_mapping`]
    /// returns `None`): the allocator must work without it, and anon regions must be
    /// refused with a clear error.
    pub fn without_movable_mapping(mut self) -> SimPlatform {
        self.no_movable_mapping = true;
        self
    }

    /// Behave as a port without [`Platform::cpu_barrier`]: the pcp lists' owner then takes
    /// its lock with an atomic exchange, the symmetric protocol ([`crate::port::pcp_lock`]).
    /// The host tests run both.
    pub fn without_cpu_barrier(mut self) -> SimPlatform {
        self.cpu_barrier = false;
        self
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

impl SoftMmu {
    fn new(va_base: u64, nr_pages: u64) -> Result<SoftMmu, SimError> {
        let map_bytes = (nr_pages as usize)
            .checked_mul(core::mem::size_of::<AtomicU64>())
            .ok_or(SimError::BadGeometry)?
            .next_multiple_of(PAGE_SIZE as usize);
        // SAFETY: a fresh anonymous private mapping; zero-filled pages are valid
        // `AtomicU64`s holding 0, the "none" entry.
        let ptes = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptes == libc::MAP_FAILED {
            return Err(SimError::Mmap(errno()));
        }
        Ok(SoftMmu {
            va_base,
            nr_pages,
            ptes: ptes as *mut AtomicU64,
            map_bytes,
            inject_map_failures: AtomicU64::new(0),
        })
    }

    /// The entry for `va` (rounded down to its page), if `va` is in the window.
    #[inline]
    fn entry(&self, va: u64) -> Option<&AtomicU64> {
        let i = va.checked_sub(self.va_base)? >> PAGE_SHIFT;
        if i >= self.nr_pages {
            return None;
        }
        // SAFETY: `i < nr_pages`, the mapping holds `nr_pages` initialised atomics and
        // lives as long as `self`.
        Some(unsafe { &*self.ptes.add(i as usize) })
    }
}

impl Drop for SoftMmu {
    fn drop(&mut self) {
        // SAFETY: made by `SoftMmu::new` with this size; every reference into it borrowed
        // `self`, so none survives.
        unsafe { libc::munmap(self.ptes as *mut libc::c_void, self.map_bytes) };
    }
}

/// Spin a little, then give the host CPU away: how a simulated CPU waits for another one
/// that may not be running right now.
#[inline]
fn backoff(spins: &mut u32) {
    if *spins < 64 {
        *spins += 1;
        core::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl SimPlatform {
    /// The thread's CPU if it is bound to this platform.
    fn this_cpu(&self) -> Option<usize> {
        let (id, cpu) = CPU.with(|c| c.get());
        (id == self.id).then_some(cpu)
    }

    /// Enter an access: make this CPU's sequence count odd (outermost access only).
    /// SeqCst so that the store is ordered before the entry is read, against a flusher
    /// that changes the entry and then reads the count (store-buffering pattern).
    fn access_begin(&self, cpu: usize) {
        let depth = ACCESS_DEPTH.with(|d| {
            let v = d.get();
            d.set(v + 1);
            v
        });
        if depth == 0 {
            self.tlb[cpu].seq.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Leave an access: release ordering publishes what the access did to a flusher that
    /// sees the count move.
    fn access_end(&self, cpu: usize) {
        let depth = ACCESS_DEPTH.with(|d| {
            let v = d.get() - 1;
            d.set(v);
            v
        });
        if depth == 0 {
            self.tlb[cpu].seq.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Touch the page that maps `va` like a CPU would: translate through the simulated page
    /// table, run `f` on the frame's words while the translation is "in the TLB", fault on
    /// a migration entry (call `wait(va, pfn)`, count it, retry), fail where nothing is
    /// mapped.
    ///
    /// # Panics
    ///
    /// If the thread is not a CPU of this platform or has interrupts disabled (a fault may
    /// wait, and waiting with interrupts off is the bug the kernel's `might_sleep` catches).
    pub fn access_with<R>(
        &self,
        va: u64,
        f: impl FnOnce(&[AtomicU64; 512]) -> R,
        wait: &dyn Fn(u64, u64),
    ) -> Result<R, SimFault> {
        self.access_mode(va, false, f, wait)
    }

    /// [`SimPlatform::access_with`] for a read (`write` false) or a write, which faults
    /// with [`SimFault::ReadOnly`] on a read-only entry. Either sets the entry's accessed
    /// bit, as a CPU's page walk does.
    pub fn access_mode<R>(
        &self,
        va: u64,
        write: bool,
        f: impl FnOnce(&[AtomicU64; 512]) -> R,
        wait: &dyn Fn(u64, u64),
    ) -> Result<R, SimFault> {
        let cpu = self.cpu_id();
        assert!(
            !self.irqs_disabled(),
            "sim: movable memory touched with interrupts disabled"
        );
        let Some(entry) = self.mmu.entry(va) else {
            self.not_mapped_faults.fetch_add(1, Ordering::Relaxed);
            return Err(SimFault::OutOfRange(va));
        };
        let mut f = Some(f);
        loop {
            self.access_begin(cpu);
            let raw = entry.load(Ordering::SeqCst);
            match pte_decode(raw) {
                Pte::Present(_) if write && raw & PTE_RDONLY != 0 => {
                    self.access_end(cpu);
                    return Err(SimFault::ReadOnly(va));
                }
                Pte::Present(pfn) => {
                    if raw & PTE_YOUNG == 0 {
                        // The page walk sets the accessed bit of the entry it used (only
                        // if the entry is still the one read: a cleared entry stays clear).
                        let _ = entry.compare_exchange(
                            raw,
                            raw | PTE_YOUNG,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
                    let frame = self.phys_to_virt(pfn << PAGE_SHIFT) as *const [AtomicU64; 512];
                    // SAFETY: a present entry names a frame of simulated RAM (rmap only maps
                    // allocated pages), page aligned, and `AtomicU64` has the layout of
                    // `u64`. The frame cannot be freed or rewritten by migration while this
                    // CPU's count is odd: whoever clears or replaces the entry flushes TLBs
                    // first, and the flush waits for this access to end.
                    let words = unsafe { &*frame };
                    let r = (f.take().expect("access closure runs once"))(words);
                    self.access_end(cpu);
                    self.accesses.fetch_add(1, Ordering::Relaxed);
                    return Ok(r);
                }
                Pte::Migration(pfn) => {
                    self.access_end(cpu);
                    self.migration_faults.fetch_add(1, Ordering::Relaxed);
                    wait(va, pfn);
                }
                Pte::None => {
                    self.access_end(cpu);
                    self.not_mapped_faults.fetch_add(1, Ordering::Relaxed);
                    return Err(SimFault::NotMapped(va));
                }
            }
        }
    }

    /// Wait until the migration entry `Migration(pfn)` at `va` is gone
    /// (`migration_entry_wait`). Migration replaces the entry before it unlocks the page,
    /// so this is the same as waiting for the page lock; [`SimAllocator::with_page`] waits
    /// on the lock itself.
    pub fn migration_entry_wait(&self, va: u64, pfn: u64) {
        let mut spins = 0;
        while self.pte_read(va & !(PAGE_SIZE - 1)) == Pte::Migration(pfn) {
            backoff(&mut spins);
        }
    }

    /// Run `f` on the words of the page mapping `va`, through the simulated MMU (see
    /// [`SimPlatform::access_with`]).
    pub fn with_page<R>(
        &self,
        va: u64,
        f: impl FnOnce(&[AtomicU64; 512]) -> R,
    ) -> Result<R, SimFault> {
        self.access_with(va, f, &|va, pfn| self.migration_entry_wait(va, pfn))
    }

    /// Read the `u64` at movable virtual address `va` (8-byte aligned).
    pub fn read_u64(&self, va: u64) -> Result<u64, SimFault> {
        if !va.is_multiple_of(8) {
            return Err(SimFault::Misaligned(va));
        }
        let i = ((va & (PAGE_SIZE - 1)) / 8) as usize;
        self.with_page(va, |w| w[i].load(Ordering::Relaxed))
    }

    /// Write the `u64` at movable virtual address `va` (8-byte aligned).
    pub fn write_u64(&self, va: u64, v: u64) -> Result<(), SimFault> {
        if !va.is_multiple_of(8) {
            return Err(SimFault::Misaligned(va));
        }
        let i = ((va & (PAGE_SIZE - 1)) / 8) as usize;
        self.access_mode(
            va,
            true,
            |w| w[i].store(v, Ordering::Relaxed),
            &|va, pfn| self.migration_entry_wait(va, pfn),
        )
    }

    /// Make the next `n` calls of `pte_map` fail with [`PteError::NoMemory`], as if no
    /// page-table page could be allocated (fault injection for error-path tests).
    pub fn inject_pte_map_failures(&self, n: u64) {
        self.mmu.inject_map_failures.store(n, Ordering::Relaxed);
    }

    /// The accessed and read-only bits of the entry for `va` (false, false where nothing
    /// is mapped), read without changing them: for tests.
    pub fn pte_young_readonly(&self, va: u64) -> (bool, bool) {
        let raw = self.mmu.entry(va).map_or(0, |e| e.load(Ordering::SeqCst));
        (raw & PTE_YOUNG != 0, raw & PTE_RDONLY != 0)
    }

    /// The MMU, TLB and kcompactd counters so far.
    pub fn mmu_stats(&self) -> SimMmuStats {
        SimMmuStats {
            migration_faults: self.migration_faults.load(Ordering::Relaxed),
            not_mapped_faults: self.not_mapped_faults.load(Ordering::Relaxed),
            accesses: self.accesses.load(Ordering::Relaxed),
            tlb_flushes: self.tlb_flushes.load(Ordering::Relaxed),
            tlb_flush_waits: self.tlb_flush_waits.load(Ordering::Relaxed),
            kcompactd_wakes: self.kcompactd_wakes.load(Ordering::Relaxed),
        }
    }

    /// Accesses that hit a migration entry so far.
    pub fn migration_faults(&self) -> u64 {
        self.migration_faults.load(Ordering::Relaxed)
    }

    /// Sleep as node `nid`'s kcompactd until woken ([`Platform::wake_kcompactd`]) or until
    /// `timeout` passes; true if woken (the wake-up is consumed). An unknown node never
    /// wakes.
    pub fn kcompactd_wait(&self, nid: usize, timeout: Duration) -> bool {
        let Some((flag, cv)) = self.kcompactd.get(nid) else {
            std::thread::sleep(timeout);
            return false;
        };
        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = cv
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(|e| e.into_inner());
        core::mem::replace(&mut *guard, false)
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
    fn cpu_to_node(&self, cpu: usize) -> usize {
        self.cpu_nodes.get(cpu).copied().unwrap_or(0)
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

    #[inline]
    fn has_cpu_barrier(&self) -> bool {
        self.cpu_barrier
    }

    /// A full barrier on every CPU running one of this process's threads
    /// (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`), which covers the thread bound to `cpu`.
    ///
    /// # Panics
    ///
    /// If the host refuses the call after registering: the pcp lock would lose its
    /// exclusion, so this is not an error to go on from.
    fn cpu_barrier(&self, _cpu: usize) {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: as in `membarrier_registered`.
            let r =
                unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) };
            assert!(r == 0, "sim: membarrier failed (errno {})", errno());
        }
        #[cfg(not(target_os = "linux"))]
        unreachable!("sim: no cpu barrier on this host");
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

    fn wake_kcompactd(&self, nid: usize) {
        self.kcompactd_wakes.fetch_add(1, Ordering::Relaxed);
        if let Some((flag, cv)) = self.kcompactd.get(nid) {
            *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
    }

    fn has_kswapd(&self) -> bool {
        self.kswapd.load(Ordering::Relaxed)
    }

    fn wake_kswapd(&self, _nid: usize) {
        self.kswapd_wakes.fetch_add(1, Ordering::Relaxed);
    }

    fn movable_mapping(&self) -> Option<&dyn MovableMapping> {
        if self.no_movable_mapping {
            None
        } else {
            Some(self)
        }
    }
}

impl MovableMapping for SimPlatform {
    fn movable_va_range(&self) -> (u64, u64) {
        (
            self.mmu.va_base,
            self.mmu.va_base + self.mmu.nr_pages * PAGE_SIZE,
        )
    }

    fn pte_read(&self, va: u64) -> Pte {
        match self.mmu.entry(va) {
            Some(e) => pte_decode(e.load(Ordering::SeqCst)),
            None => Pte::None,
        }
    }

    fn pte_map(&self, va: u64, pfn: u64) -> Result<(), PteError> {
        if !va.is_multiple_of(PAGE_SIZE) {
            return Err(PteError::OutOfRange);
        }
        let e = self.mmu.entry(va).ok_or(PteError::OutOfRange)?;
        let inject = &self.mmu.inject_map_failures;
        let mut n = inject.load(Ordering::Relaxed);
        while n > 0 {
            match inject.compare_exchange_weak(n, n - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Err(PteError::NoMemory),
                Err(cur) => n = cur,
            }
        }
        e.compare_exchange(
            0,
            pte_encode(Pte::Present(pfn)),
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .map(|_| ())
        .map_err(|_| PteError::Busy)
    }

    /// Compares decoded entries (the accessed bit and the permission are not part of a
    /// [`Pte`]); the read-only bit is carried into the new entry unless it is `None`, and
    /// the accessed bit starts clear.
    fn pte_cmpxchg(&self, va: u64, old: Pte, new: Pte) -> bool {
        if !va.is_multiple_of(PAGE_SIZE) {
            return false;
        }
        let Some(e) = self.mmu.entry(va) else {
            return false;
        };
        let mut cur = e.load(Ordering::SeqCst);
        loop {
            if pte_decode(cur) != old {
                return false;
            }
            let keep = if new == Pte::None {
                0
            } else {
                cur & PTE_RDONLY
            };
            match e.compare_exchange_weak(
                cur,
                pte_encode(new) | keep,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    fn pte_map_readonly(&self, va: u64, pfn: u64) -> Result<(), PteError> {
        if !va.is_multiple_of(PAGE_SIZE) {
            return Err(PteError::OutOfRange);
        }
        let e = self.mmu.entry(va).ok_or(PteError::OutOfRange)?;
        e.compare_exchange(
            0,
            pte_encode(Pte::Present(pfn)) | PTE_RDONLY,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .map(|_| ())
        .map_err(|_| PteError::Busy)
    }

    fn pte_test_and_clear_young(&self, va: u64) -> bool {
        let Some(e) = self.mmu.entry(va) else {
            return false;
        };
        let mut cur = e.load(Ordering::SeqCst);
        loop {
            if cur & PTE_PRESENT == 0 || cur & PTE_YOUNG == 0 {
                return false;
            }
            match e.compare_exchange_weak(cur, cur & !PTE_YOUNG, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    /// Wait until no other CPU can still use a translation read before the call: every
    /// CPU whose sequence count is odd now is waited for until the count moves. The range
    /// is not looked at (a full flush, as Linux does above a ceiling). The calling CPU is
    /// not waited for: its own access, if it is inside one, is its business.
    ///
    /// # Panics
    ///
    /// If called with interrupts disabled: on hardware the IPIs of a concurrent shootdown
    /// would never be answered.
    fn flush_tlb_range(&self, start: u64, end: u64) {
        let _ = (start, end);
        assert!(
            !self.irqs_disabled(),
            "sim: flush_tlb_range with interrupts disabled"
        );
        self.tlb_flushes.fetch_add(1, Ordering::Relaxed);
        let me = self.this_cpu();
        for (cpu, tlb) in self.tlb.iter().enumerate() {
            if Some(cpu) == me {
                continue;
            }
            let seen = tlb.seq.load(Ordering::SeqCst);
            if seen & 1 == 0 {
                continue;
            }
            self.tlb_flush_waits.fetch_add(1, Ordering::Relaxed);
            let mut spins = 0;
            while tlb.seq.load(Ordering::SeqCst) == seen {
                backoff(&mut spins);
            }
        }
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
        let model = MemoryModel::init(&platform, ranges, extra_reserved, params)
            .map_err(|e| SimError::Init(InitError::Model(e)))?;
        Ok(SimMachine { model, platform })
    }
}

/// The page allocator the simulation runs: it borrows its [`SimPlatform`] for the life
/// of the [`SimAllocator`] that owns both.
pub type SimPageAllocator = PageAllocator<&'static SimPlatform>;

/// A simulated machine with its page allocator running: what host tests and benchmarks
/// allocate from. Dereferences to the [`PageAllocator`].
///
/// The allocator needs a `&'static` platform (the kernel's is a static); here the platform
/// is boxed and owned by this value, and the allocator, the only holder of the reference,
/// is dropped first. [`PageAllocator::platform`] only lends the platform for the
/// allocator's own lifetime, so the reference cannot escape.
///
/// The allocator is boxed too, so that it never moves while this value is moved around:
/// anon pages point at region descriptors inside it ([`crate::movement::rmap`]), as they point into
/// the kernel's static allocator.
pub struct SimAllocator {
    alloc: NonNull<SimPageAllocator>,
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
        let platform = SimPlatform::for_map(ranges, extra_reserved, nr_cpus)?;
        Self::build_on(platform, ranges, extra_reserved, params)
    }

    /// [`SimAllocator::build`] on a platform the caller made (for example with
    /// [`SimPlatform::with_movable_window`]); `platform` must come from
    /// [`SimPlatform::for_map`] with the same `ranges` and `extra_reserved`.
    pub fn build_on(
        platform: SimPlatform,
        ranges: &[FirmwareRange],
        extra_reserved: &[(u64, u64)],
        params: &ModelParams<'_>,
    ) -> Result<SimAllocator, SimError> {
        let raw = NonNull::from(Box::leak(Box::new(platform)));
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
        // Built in place in its final heap slot (the allocator is tens of KiB).
        let mut slot = Box::new(MaybeUninit::<PageAllocator<&'static SimPlatform>>::uninit());
        let built = PageAllocator::init_in(&mut slot, p, ranges, extra_reserved, params)
            .map(|_| ())
            .map_err(SimError::Init);
        match built {
            Ok(()) => Ok(SimAllocator {
                // The slot is initialised (`init_in` returned Ok); the allocator is never
                // dropped in place, as `drop` documents.
                alloc: NonNull::from(Box::leak(slot)).cast(),
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
        let me = ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped (ManuallyDrop), so the allocator box is reclaimed
        // exactly once, here, and nothing borrowed from it survives (`self` was moved in).
        drop(unsafe { Box::from_raw(me.alloc.as_ptr()) });
        Self::assemble(me.platform, ranges, extra_reserved, params)
    }

    /// The simulated platform.
    pub fn sim_platform(&self) -> &SimPlatform {
        // SAFETY: valid until `drop` (see the type documentation).
        unsafe { self.platform.as_ref() }
    }

    /// Wait for a migration entry like Linux's `migration_entry_wait`: until the page
    /// lock of `pfn` is released (or the entry is already gone).
    fn wait_on_migration(&self, va: u64, pfn: u64) {
        let plat = self.sim_platform();
        let page = self.pfn_to_page(pfn);
        let mut spins = 0;
        while plat.pte_read(va & !(PAGE_SIZE - 1)) == Pte::Migration(pfn)
            && page.is_some_and(|p| p.is_locked())
        {
            backoff(&mut spins);
        }
    }

    /// [`SimPlatform::with_page`], with faults on migration entries waiting for the page
    /// lock of the page under migration.
    pub fn with_page<R>(
        &self,
        va: u64,
        f: impl FnOnce(&[AtomicU64; 512]) -> R,
    ) -> Result<R, SimFault> {
        self.sim_platform()
            .access_with(va, f, &|va, pfn| self.wait_on_migration(va, pfn))
    }

    /// [`SimPlatform::read_u64`], waiting on page locks as [`SimAllocator::with_page`].
    pub fn read_u64(&self, va: u64) -> Result<u64, SimFault> {
        if !va.is_multiple_of(8) {
            return Err(SimFault::Misaligned(va));
        }
        let i = ((va & (PAGE_SIZE - 1)) / 8) as usize;
        self.with_page(va, |w| w[i].load(Ordering::Relaxed))
    }

    /// [`SimPlatform::write_u64`], waiting on page locks as [`SimAllocator::with_page`].
    pub fn write_u64(&self, va: u64, v: u64) -> Result<(), SimFault> {
        if !va.is_multiple_of(8) {
            return Err(SimFault::Misaligned(va));
        }
        let i = ((va & (PAGE_SIZE - 1)) / 8) as usize;
        self.sim_platform().access_mode(
            va,
            true,
            |w| w[i].store(v, Ordering::Relaxed),
            &|va, pfn| self.wait_on_migration(va, pfn),
        )
    }
}

impl Deref for SimAllocator {
    type Target = SimPageAllocator;

    fn deref(&self) -> &Self::Target {
        // SAFETY: the box lives until `drop` and is only ever shared.
        unsafe { self.alloc.as_ref() }
    }
}

impl Drop for SimAllocator {
    fn drop(&mut self) {
        // SAFETY: reclaimed exactly once, here; nothing borrowed from it can outlive `self`.
        drop(unsafe { Box::from_raw(self.alloc.as_ptr()) });
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
    use crate::port::platform::LocalIrqGuard;

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
    fn soft_mmu_maps_reads_and_faults() {
        let p = SimPlatform::new(0, 1 << 20, 2).unwrap();
        let (start, end) = p.movable_va_range();
        assert_eq!(start, SIM_MOVABLE_VA_BASE);
        assert!(end - start >= SIM_MOVABLE_VA_MIN);
        let va = start + 3 * PAGE_SIZE;
        assert_eq!(p.read_u64(va), Err(SimFault::NotMapped(va)));
        assert_eq!(p.read_u64(end), Err(SimFault::OutOfRange(end)));
        assert_eq!(p.read_u64(va + 1), Err(SimFault::Misaligned(va + 1)));
        assert_eq!(p.pte_map(va + 1, 5), Err(PteError::OutOfRange));
        assert_eq!(p.pte_map(end, 5), Err(PteError::OutOfRange));
        p.pte_map(va, 5).unwrap();
        assert_eq!(p.pte_map(va, 6), Err(PteError::Busy));
        assert_eq!(p.pte_read(va), Pte::Present(5));
        p.write_u64(va + 16, 0xabcd).unwrap();
        // SAFETY: frame 5 is accessible simulated RAM, read on this thread only.
        let direct = unsafe { (p.phys_to_virt(5 * PAGE_SIZE + 16) as *const u64).read() };
        assert_eq!(direct, 0xabcd);
        assert!(p.pte_cmpxchg(va, Pte::Present(5), Pte::Migration(5)));
        assert!(!p.pte_cmpxchg(va, Pte::Present(5), Pte::None));
        // A migration entry is waited out: another CPU finishes the "migration".
        std::thread::scope(|s| {
            s.spawn(|| {
                p.bind_current_thread(1);
                std::thread::sleep(Duration::from_millis(20));
                assert!(p.pte_cmpxchg(va, Pte::Migration(5), Pte::Present(6)));
            });
            assert_eq!(p.read_u64(va + 16), Ok(0));
        });
        assert!(p.migration_faults() >= 1);
        p.inject_pte_map_failures(1);
        assert_eq!(p.pte_map(va + PAGE_SIZE, 7), Err(PteError::NoMemory));
        p.pte_map(va + PAGE_SIZE, 7).unwrap();
        p.flush_tlb_range(va, va + PAGE_SIZE);
        assert_eq!(p.mmu_stats().tlb_flushes, 1);
    }

    #[test]
    fn flush_waits_for_an_access_in_progress() {
        use std::sync::atomic::AtomicBool;
        let p = SimPlatform::new(0, 1 << 20, 2).unwrap();
        let va = SIM_MOVABLE_VA_BASE;
        p.pte_map(va, 9).unwrap();
        let inside = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                p.bind_current_thread(1);
                p.with_page(va, |_| {
                    inside.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    done.store(true, Ordering::SeqCst);
                })
                .unwrap();
            });
            while !inside.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            assert!(p.pte_cmpxchg(va, Pte::Present(9), Pte::None));
            p.flush_tlb_range(va, va + PAGE_SIZE);
            // The flush returned: the access that used the old translation is over.
            assert!(done.load(Ordering::SeqCst));
        });
        assert_eq!(p.mmu_stats().tlb_flush_waits, 1);
    }

    #[test]
    fn kcompactd_wake_and_timeout() {
        let p = SimPlatform::new(0, 1 << 20, 1).unwrap();
        assert!(!p.kcompactd_wait(0, Duration::from_millis(1)));
        p.wake_kcompactd(0);
        assert!(p.kcompactd_wait(0, Duration::from_secs(60)));
        assert!(!p.kcompactd_wait(0, Duration::from_millis(1)));
        p.wake_kcompactd(MAX_NUMNODES + 3);
        assert!(!p.kcompactd_wait(MAX_NUMNODES + 3, Duration::from_millis(1)));
        assert_eq!(p.mmu_stats().kcompactd_wakes, 2);
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
