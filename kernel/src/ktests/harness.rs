//! Tests of the test harness itself.
//!
//! The three `explicit` tests fail on purpose, each in a different way (an error value, a
//! panic, a CPU exception). They never run in a full run; the host integration tests select
//! each by its own pattern and check that the run ends as failed and names the test, which
//! proves that a broken kernel can not pass by accident.

use crate::ktest::all_tests;
use crate::{kassert, kassert_eq, ktest};

ktest! {
    fn registry_finds_tests() -> TestResult {
        let tests = all_tests();
        kassert!(tests.len() >= 3, "only {} tests registered", tests.len());
        kassert!(tests.iter().any(|t| t.name() == "ktests::harness::registry_finds_tests"));
        Ok(())
    }

    fn explicit_tests_are_excluded_by_default() -> TestResult {
        let explicit: usize = all_tests().iter().filter(|t| t.explicit).count();
        kassert_eq!(explicit, 3);
        Ok(())
    }
}

ktest! {
    explicit fn deliberate_failure() -> TestResult {
        Err(alloc::string::String::from("this test fails on purpose to prove the harness reports failures"))
    }
}

ktest! {
    explicit fn deliberate_panic() -> TestResult {
        let v: alloc::vec::Vec<u32> = alloc::vec::Vec::new();
        // Index out of bounds: a real panic, not a call to panic!().
        let i = core::hint::black_box(3);
        kassert!(v[i] == 0);
        Ok(())
    }
}

ktest! {
    explicit fn deliberate_page_fault() -> TestResult {
        // Nothing is mapped in the first page of the lower half.
        let p = core::hint::black_box(0x10usize) as *const u64;
        // SAFETY: this is deliberately unsound: the access must fault, and the harness must
        // report the fault as this test's failure. The test only runs when selected by name.
        let v = unsafe { core::ptr::read_volatile(p) };
        kassert!(v == 0);
        Ok(())
    }
}
