//! Tests of the test harness itself.
//!
//! Three `explicit` tests fail on purpose, each in a different way (an error value, a
//! panic, a CPU exception), and a fourth skips on purpose. They never run in a full run;
//! the host integration tests select each by its own pattern and check that the run ends
//! as failed and names the test (the skip: reported as skipped, never as passed), which
//! proves that a broken kernel can not pass by accident.

use alloc::{string::String, vec::Vec};

use crate::ktest::{KernelTest, TestResult, Verdict, all_tests, selected, verdict};
use crate::{kassert, kassert_eq, ktest};

fn noop() -> TestResult {
    Ok(())
}

ktest! {
    fn registry_finds_tests() -> TestResult {
        let tests = all_tests();
        kassert!(tests.len() >= 3, "only {} tests registered", tests.len());
        kassert!(tests.iter().any(|t| t.name() == "ktests::harness::registry_finds_tests"));
        Ok(())
    }

    fn explicit_tests_are_excluded_by_default() -> TestResult {
        // The selection rules on a registry built here: a plain and an explicit test in one
        // suite, a plain one in another.
        let registry = [
            KernelTest { path: "kernel::ktests::a::plain", func: noop, explicit: false },
            KernelTest { path: "kernel::ktests::a::deliberate", func: noop, explicit: true },
            KernelTest { path: "kernel::ktests::b::other", func: noop, explicit: false },
        ];
        let pick = |pattern: Option<&str>| -> Vec<&str> {
            registry.iter().filter(|t| selected(t, pattern)).map(|t| t.name()).collect()
        };
        let everything = ["ktests::a::plain", "ktests::b::other"];
        kassert_eq!(pick(None), everything);
        kassert_eq!(pick(Some("")), everything);
        kassert_eq!(pick(Some("-deliberate")), everything);
        kassert_eq!(pick(Some("-ktests::b")), ["ktests::a::plain"]);
        kassert_eq!(pick(Some("deliberate")), ["ktests::a::deliberate"]);
        kassert_eq!(pick(Some("ktests::a")), ["ktests::a::plain", "ktests::a::deliberate"]);
        kassert_eq!(pick(Some("nothing-matches")), Vec::<&str>::new());
        // The real registry: the four deliberate harness tests are its explicit ones; a
        // full run (or an exclusion) selects none of them, their own names select each.
        let explicit: Vec<&str> = all_tests().iter().filter(|t| t.explicit).map(|t| t.name()).collect();
        kassert!(explicit.len() == 4, "explicit tests: {:?}", explicit);
        for t in all_tests().iter().filter(|t| t.explicit) {
            kassert!(t.name().starts_with("ktests::harness::deliberate_"), "{} is explicit", t.name());
            kassert!(!selected(t, None) && !selected(t, Some("-ktests::compaction")), "{} selected by a full run", t.name());
            kassert!(selected(t, Some(t.name())), "{} not selected by its own name", t.name());
        }
        Ok(())
    }

    fn a_skip_is_neither_a_pass_nor_hides_a_failure() -> TestResult {
        let reason = || Some(String::from("needs two CPUs"));
        kassert_eq!(verdict(Ok(()), None), Verdict::Passed);
        kassert_eq!(verdict(Ok(()), reason()), Verdict::Skipped(String::from("needs two CPUs")));
        kassert_eq!(verdict(Err(String::from("broken")), reason()), Verdict::Failed(String::from("broken")));
        kassert_eq!(verdict(Err(String::from("broken")), None), Verdict::Failed(String::from("broken")));
        Ok(())
    }
}

ktest! {
    explicit fn deliberate_skip() -> TestResult {
        crate::ktest::skip("this test skips on purpose to prove a skip is reported as such")
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
