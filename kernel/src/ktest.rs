//! In-kernel integration tests, run over serial.
//!
//! Tests are plain functions registered with [`ktest!`], which places a [`KernelTest`]
//! descriptor in the `ktests` linker section; the linker brackets that section with
//! `__start_ktests` / `__stop_ktests`, so the runner finds every test in every module
//! without a central list and without the unstable custom test framework.
//!
//! Output is the contract with the host runner (`boot/`): one `suite NAME: N tests` line per
//! module, one `test NAME ... ok`, `test NAME ... FAILED: reason` or
//! `test NAME ... skipped: reason` line per test, and a closing
//! `N passed, N failed, N skipped` line (always all three); then QEMU exits with success or
//! failure. A test that panics or faults is reported as FAILED by [`crate::crash`] through
//! [`fail_running_test`], and the run ends there as failed.
//!
//! A test that cannot check what it is about on this machine (a cross-CPU test on one CPU)
//! returns [`skip`] instead of `Ok`: it then says `skipped`, not `ok`, so a run never
//! claims a check it did not make. A skip is never a pass: a run passes only when at least
//! one test passed and none failed, and an `Err` wins over an earlier `skip`.
//!
//! Tests marked `explicit` (the harness's own deliberately failing and skipping tests) run
//! only when the pattern names them, never as part of a full run.

use alloc::{string::String, vec::Vec};
use core::{
    fmt,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};
use spin::{Mutex, Once};

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
static SKIPPED: AtomicUsize = AtomicUsize::new(0);
/// The reason the running test gave to [`skip`], if it did.
static SKIP_REASON: Mutex<Option<String>> = Mutex::new(None);
/// What [`run`] was asked to run, recorded before the first test starts.
static PLAN: Once<RunPlan> = Once::new();

/// The run in progress: the pattern the runner received and the tests it selected, in the
/// order it runs them. Tests read it to check the runner against the command line.
pub struct RunPlan {
    /// The `test=` pattern (`None` for a bare `test`).
    pub pattern: Option<String>,
    /// Names of the selected tests, sorted.
    pub names: Vec<&'static str>,
}

/// The run in progress, once [`run`] has started.
pub fn plan() -> Option<&'static RunPlan> {
    PLAN.get()
}

/// End the running test as skipped: `return ktest::skip("needs at least 2 CPUs")`.
/// Use it when this machine cannot exercise what the test is about; the run then prints
/// `test NAME ... skipped: reason` and counts it apart from the passes.
pub fn skip(reason: impl Into<String>) -> TestResult {
    *SKIP_REASON.lock() = Some(reason.into());
    Ok(())
}

/// How one test ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It returned `Ok` without skipping.
    Passed,
    /// It returned `Err(reason)` (whether or not it also asked to skip).
    Failed(String),
    /// It called [`skip`] and returned `Ok`.
    Skipped(String),
}

/// The verdict of a test that returned `result` after asking to skip with `skip_reason`
/// (if it did). A failure is never hidden by a skip, and a skip is never a pass.
pub fn verdict(result: TestResult, skip_reason: Option<String>) -> Verdict {
    match (result, skip_reason) {
        (Err(reason), _) => Verdict::Failed(reason),
        (Ok(()), Some(reason)) => Verdict::Skipped(reason),
        (Ok(()), None) => Verdict::Passed,
    }
}

fn print_closing_line(extra_failed: usize) {
    kprintln!(
        "{} passed, {} failed, {} skipped",
        PASSED.load(Ordering::SeqCst),
        FAILED.load(Ordering::SeqCst) + extra_failed,
        SKIPPED.load(Ordering::SeqCst)
    );
}

/// Called on the crash path: report the running test (if any) as failed and close the run.
pub fn fail_running_test(reason: fmt::Arguments<'_>) {
    let running = RUNNING.load(Ordering::SeqCst);
    if running.is_null() {
        return;
    }
    // SAFETY: RUNNING only ever holds pointers into the static `ktests` section.
    let test = unsafe { &*running };
    kprintln!("test {} ... FAILED: {}", test.name(), reason);
    print_closing_line(1);
}

/// Does `test` run under `pattern`? `None` (or empty): the whole suite; `-TEXT`: the
/// whole suite except tests whose name contains TEXT; `TEXT`: tests whose name contains
/// it, explicit ones included. Comma-separated patterns select the union
/// (`ktests::stress,ktests::compaction`).
pub fn selected(test: &KernelTest, pattern: Option<&str>) -> bool {
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
    PLAN.call_once(|| RunPlan {
        pattern: pattern.map(String::from),
        names: tests.iter().map(|t| t.name()).collect(),
    });

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
        *SKIP_REASON.lock() = None;
        RUNNING.store(t as *const KernelTest as *mut KernelTest, Ordering::SeqCst);
        let t0 = crate::arch::time::now_ns();
        let result = (t.func)();
        RUNNING.store(core::ptr::null_mut(), Ordering::SeqCst);
        let skip_reason = SKIP_REASON.lock().take();
        kprintln!(
            "time: {} {} ms",
            t.name(),
            (crate::arch::time::now_ns() - t0) / 1_000_000
        );
        match verdict(result, skip_reason) {
            Verdict::Passed => {
                PASSED.fetch_add(1, Ordering::SeqCst);
                kprintln!("test {} ... ok", t.name());
            }
            Verdict::Failed(reason) => {
                FAILED.fetch_add(1, Ordering::SeqCst);
                kprintln!("test {} ... FAILED: {}", t.name(), reason);
            }
            Verdict::Skipped(reason) => {
                SKIPPED.fetch_add(1, Ordering::SeqCst);
                kprintln!("test {} ... skipped: {}", t.name(), reason);
            }
        }
    }
    // Background work done meanwhile (a run with kcompactd=on checks it ran).
    kprintln!(
        "kcompactd: {} rounds",
        crate::kcompactd::ROUNDS.load(Ordering::Relaxed)
    );
    kprintln!(
        "kswapd: {} rounds",
        crate::kswapd::ROUNDS.load(Ordering::Relaxed)
    );
    print_closing_line(0);
    let (passed, failed) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    // Skipped tests proved nothing: a run of skips alone is not a success.
    exit(if failed == 0 && passed > 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
