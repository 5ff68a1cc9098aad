//! In-kernel integration tests, run over serial.
//!
//! Tests are plain functions registered with [`ktest!`], which places a [`KernelTest`]
//! descriptor in the `ktests` linker section; the linker brackets that section with
//! `__start_ktests` / `__stop_ktests`, so the runner finds every test in every module
//! without a central list and without the unstable custom test framework.
//!
//! Output is the contract with the host runner (`boot/`): one `suite NAME: N tests` line per
//! module, one `test NAME ... ok` or `test NAME ... FAILED: reason` line per test, and a
//! closing `N passed, N failed` line; then QEMU exits with success or failure. A test that
//! panics or faults is reported as FAILED by [`crate::crash`] through
//! [`fail_running_test`], and the run ends there as failed.
//!
//! Tests marked `explicit` (the harness's own deliberately failing test) run only when the
//! pattern names them, never as part of a full run.

use alloc::{string::String, vec::Vec};
use core::{
    fmt,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};

use crate::arch::qemu::{ExitCode, exit};

/// What a test returns: `Err(reason)` fails it.
pub type TestResult = Result<(), String>;

/// A registered test.
pub struct KernelTest {
    /// Full path, e.g. `kernel::ktests::boot::heap_vec`.
    pub path: &'static str,
    /// The test body.
    pub func: fn() -> TestResult,
    /// Run only when a pattern selects it.
    pub explicit: bool,
}

impl KernelTest {
    /// Name without the crate prefix: `ktests::boot::heap_vec`.
    pub fn name(&self) -> &'static str {
        self.path.strip_prefix("kernel::").unwrap_or(self.path)
    }

    /// The suite (module) the test belongs to: `ktests::boot`.
    pub fn suite(&self) -> &'static str {
        let name = self.name();
        name.rfind("::").map_or(name, |i| &name[..i])
    }
}

/// Register a test function: `ktest! { fn name() -> TestResult { ... } }`.
/// Prefix with `explicit` for a test that only runs when selected by pattern.
#[macro_export]
macro_rules! ktest {
    (@entry $name:ident, $explicit:expr) => {
        const _: () = {
            #[used]
            #[unsafe(link_section = "ktests")]
            static ENTRY: $crate::ktest::KernelTest = $crate::ktest::KernelTest {
                path: concat!(module_path!(), "::", stringify!($name)),
                func: $name,
                explicit: $explicit,
            };
        };
    };
    (explicit fn $name:ident() -> TestResult $body:block) => {
        fn $name() -> $crate::ktest::TestResult $body
        $crate::ktest!(@entry $name, true);
    };
    ($(fn $name:ident() -> TestResult $body:block)+) => {
        $(
            fn $name() -> $crate::ktest::TestResult $body
            $crate::ktest!(@entry $name, false);
        )+
    };
}

/// Fail the test with a formatted reason unless `cond` holds.
#[macro_export]
macro_rules! kassert {
    ($cond:expr) => {
        if !$cond {
            return Err(alloc::format!("assertion failed: {} at {}:{}", stringify!($cond), file!(), line!()));
        }
    };
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(alloc::format!("{} at {}:{}", format_args!($($fmt)+), file!(), line!()));
        }
    };
}

/// Fail the test unless the two values are equal, showing both.
#[macro_export]
macro_rules! kassert_eq {
    ($left:expr, $right:expr $(,)?) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(alloc::format!(
                "{} == {} failed: left {:?}, right {:?} at {}:{}",
                stringify!($left),
                stringify!($right),
                l,
                r,
                file!(),
                line!()
            ));
        }
    }};
}

// Declared as bytes: only their addresses are used, and they bracket `KernelTest` values.
unsafe extern "C" {
    static __start_ktests: u8;
    static __stop_ktests: u8;
}

/// Every registered test, in link order.
pub fn all_tests() -> &'static [KernelTest] {
    // SAFETY: the linker defines __start_ktests/__stop_ktests around the `ktests` section,
    // which contains only `KernelTest` statics emitted by `ktest!` (same type, so same size
    // and alignment, laid out back to back). The section is never written.
    unsafe {
        let start = (&raw const __start_ktests).cast::<KernelTest>();
        let stop = (&raw const __stop_ktests).cast::<KernelTest>();
        let len = (stop as usize - start as usize) / core::mem::size_of::<KernelTest>();
        core::slice::from_raw_parts(start, len)
    }
}

static RUNNING: AtomicPtr<KernelTest> = AtomicPtr::new(core::ptr::null_mut());
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

/// Called on the crash path: report the running test (if any) as failed and close the run.
pub fn fail_running_test(reason: fmt::Arguments<'_>) {
    let running = RUNNING.load(Ordering::SeqCst);
    if running.is_null() {
        return;
    }
    // SAFETY: RUNNING only ever holds pointers into the static `ktests` section.
    let test = unsafe { &*running };
    kprintln!("test {} ... FAILED: {}", test.name(), reason);
    kprintln!(
        "{} passed, {} failed",
        PASSED.load(Ordering::SeqCst),
        FAILED.load(Ordering::SeqCst) + 1
    );
}

/// Does `test` run under `pattern`? `None` (or empty): the whole suite; `-TEXT`: the
/// whole suite except tests whose name contains TEXT; `TEXT`: tests whose name contains
/// it, explicit ones included. Comma-separated patterns select the union
/// (`ktests::stress,ktests::compaction`).
fn selected(test: &KernelTest, pattern: Option<&str>) -> bool {
    match pattern {
        None | Some("") => !test.explicit,
        Some(p) if p.contains(',') => p
            .split(',')
            .filter(|one| !one.is_empty())
            .any(|one| selected(test, Some(one))),
        Some(p) => match p.strip_prefix('-') {
            Some(excluded) => !test.explicit && !test.name().contains(excluded),
            None => test.name().contains(p),
        },
    }
}

/// Run the selected tests and exit QEMU with the result.
pub fn run(pattern: Option<&str>) -> ! {
    let mut tests: Vec<&'static KernelTest> = all_tests()
        .iter()
        .filter(|t| selected(t, pattern))
        .collect();
    tests.sort_by_key(|t| t.name());

    kprintln!(
        "running {} tests (pattern: {})",
        tests.len(),
        pattern.unwrap_or("<all>")
    );
    let mut suites: Vec<(&str, usize)> = Vec::new();
    for t in &tests {
        match suites.last_mut() {
            Some((s, n)) if *s == t.suite() => *n += 1,
            _ => suites.push((t.suite(), 1)),
        }
    }
    for (suite, n) in &suites {
        kprintln!("suite {}: {} tests", suite, n);
    }

    for t in tests {
        RUNNING.store(t as *const KernelTest as *mut KernelTest, Ordering::SeqCst);
        let t0 = crate::arch::time::now_ns();
        let result = (t.func)();
        RUNNING.store(core::ptr::null_mut(), Ordering::SeqCst);
        kprintln!(
            "time: {} {} ms",
            t.name(),
            (crate::arch::time::now_ns() - t0) / 1_000_000
        );
        match result {
            Ok(()) => {
                PASSED.fetch_add(1, Ordering::SeqCst);
                kprintln!("test {} ... ok", t.name());
            }
            Err(reason) => {
                FAILED.fetch_add(1, Ordering::SeqCst);
                kprintln!("test {} ... FAILED: {}", t.name(), reason);
            }
        }
    }
    let (passed, failed) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    // Background work done meanwhile (a run with kcompactd=on checks it ran).
    kprintln!(
        "kcompactd: {} rounds",
        crate::kcompactd::ROUNDS.load(Ordering::Relaxed)
    );
    kprintln!("{} passed, {} failed", passed, failed);
    exit(if failed == 0 && passed > 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
