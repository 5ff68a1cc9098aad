//! Leaving QEMU with a result.
//!
//! QEMU's `isa-debug-exit` device (iobase 0xf4) turns a write of `v` into the process exit
//! status `(v << 1) | 1`. The host runner maps the two codes below to success and failure;
//! any other status (a triple fault with `-no-reboot` exits 0, a timeout is killed) is a
//! failure too, so a kernel that never reaches here can not pass by accident.

use x86_64::instructions::port::Port;

/// Exit codes written to isa-debug-exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Host sees status 33.
    Success = 0x10,
    /// Host sees status 35.
    Failure = 0x11,
}

/// Exit QEMU. If the device is absent (plain `qemu` without it, or real hardware), halt.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the isa-debug-exit device the runner always attaches; on a
    // machine without it the write goes nowhere, and we halt below.
    unsafe { Port::<u32>::new(0xf4).write(code as u32) };
    super::halt_forever()
}
