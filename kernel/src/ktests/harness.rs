//! Tests of the test harness itself.

use crate::{kassert, kassert_eq, ktest};
use crate::ktest::all_tests;

ktest! {
    fn registry_finds_tests() -> TestResult {
        let tests = all_tests();
        kassert!(tests.len() >= 3, "only {} tests registered", tests.len());
        kassert!(tests.iter().any(|t| t.name() == "ktests::harness::registry_finds_tests"));
        Ok(())
    }

    fn explicit_tests_are_excluded_by_default() -> TestResult {
        let explicit: usize = all_tests().iter().filter(|t| t.explicit).count();
        kassert_eq!(explicit, 1);
        Ok(())
    }
}

// The harness must be able to fail: the host integration tests select this one by its own
// pattern and expect the run to end as failed, naming it. It never runs in a full run.
ktest! {
    explicit fn deliberate_failure() -> TestResult {
        Err(alloc::string::String::from("this test fails on purpose to prove the harness reports failures"))
    }
}
