//! Time: the TSC, calibrated once against the legacy PIT.
//!
//! Starting application processors needs real delays (10 ms after INIT, 200 µs between
//! SIPIs) and the local APIC timer needs a known rate. The PIT ticks at a fixed
//! 1.193182 MHz on every PC, so counting TSC cycles across a PIT interval gives the TSC rate
//! without trusting CPUID leaves that TCG may not fill. Under emulation the figures are
//! virtual time; they are still consistent, which is all delays need.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;

/// TSC ticks per second (0 until [`calibrate`]).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measure the TSC rate over `ms` milliseconds of PIT channel 2 (gate via port 0x61).
pub fn calibrate(ms: u64) -> u64 {
    let count = (PIT_HZ * ms / 1000).min(0xffff) as u16;
    let mut ctrl = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x42/0x43/0x61 are the PIT and its gate on every PC; channel 2 drives
    // only the (absent) speaker, so reprogramming it disturbs nothing else.
    let (start, end) = unsafe {
        let gate = ctrl.read();
        // Gate high, speaker off.
        ctrl.write((gate & !0x02) | 0x01);
        // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
        cmd.write(0b1011_0000);
        ch2.write((count & 0xff) as u8);
        ch2.write((count >> 8) as u8);
        // Restart the count by toggling the gate.
        let g = ctrl.read();
        ctrl.write(g & !0x01);
        ctrl.write(g | 0x01);
        let start = rdtsc();
        // OUT2 (bit 5) goes high at terminal count.
        let mut spins: u64 = 0;
        while ctrl.read() & 0x20 == 0 {
            spins += 1;
            if spins > 500_000_000 {
                break;
            }
        }
        (start, rdtsc())
    };
    let elapsed_ticks = u64::from(count);
    let hz = (end - start).saturating_mul(PIT_HZ) / elapsed_ticks.max(1);
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    hz
}

/// TSC ticks per second (calibrated at boot).
pub fn tsc_hz() -> u64 {
    match TSC_HZ.load(Ordering::Relaxed) {
        0 => calibrate(10),
        hz => hz,
    }
}

/// Nanoseconds since an arbitrary origin.
pub fn now_ns() -> u64 {
    let hz = tsc_hz();
    ((rdtsc() as u128) * 1_000_000_000 / hz as u128) as u64
}

/// Busy-wait for `us` microseconds.
pub fn udelay(us: u64) {
    let hz = tsc_hz();
    let target = rdtsc() + hz / 1_000_000 * us + (hz % 1_000_000) * us / 1_000_000;
    while rdtsc() < target {
        core::hint::spin_loop();
    }
}
