//! The one way a run ends badly: panics and fatal CPU exceptions come here.
//!
//! A dying kernel must still tell the host what happened in a form the test runner parses:
//! when an in-kernel test is running, its `test NAME ... FAILED: reason` line and the closing
//! `N passed, N failed` line are printed before QEMU exits with the failure code. Only the
//! first CPU to die reports; any other CPU that dies meanwhile halts quietly so reports never
//! interleave.

use core::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::arch::{
    self,
    qemu::{ExitCode, exit},
};

static DYING: AtomicBool = AtomicBool::new(false);

/// Report `reason`, fail the running test (if any) and exit QEMU with the failure code.
pub fn die(reason: fmt::Arguments<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    if DYING.swap(true, Ordering::SeqCst) {
        arch::halt_forever();
    }
    // SAFETY: we are on the way out (exit below never returns) and DYING makes sure only one
    // CPU gets here, so breaking a lock some other context held cannot be observed later.
    unsafe { arch::serial::force_unlock() };
    kprintln!("FATAL: {}", reason);
    crate::ktest::fail_running_test(reason);
    exit(ExitCode::Failure)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(loc) => die(format_args!(
            "panicked at {}:{}:{}: {}",
            loc.file(),
            loc.line(),
            loc.column(),
            info.message()
        )),
        None => die(format_args!("panicked: {}", info.message())),
    }
}
