//! Early boot: heap, command line, boot facts.

use alloc::{collections::BTreeMap, string::String, vec::Vec};

use crate::{boot_info, cmdline::Cmdline, kassert, kassert_eq, ktest};

ktest! {
    fn heap_vec_and_map() -> TestResult {
        let v: Vec<u64> = (0..10_000).collect();
        kassert_eq!(v.iter().sum::<u64>(), 49_995_000);
        let mut m = BTreeMap::new();
        for i in 0..1000u32 {
            m.insert(i, String::from("x"));
        }
        kassert_eq!(m.len(), 1000);
        let u = crate::heap::usage();
        kassert!(u.used > 0 && u.free > 0 && u.regions >= 1);
        Ok(())
    }

    fn cmdline_parses_keys_and_values() -> TestResult {
        let c = Cmdline::parse("  test=alloc  loglevel=debug kernelcore=512M  bogus ");
        kassert_eq!(c.get("test"), Some("alloc"));
        kassert_eq!(c.get("loglevel"), Some("debug"));
        kassert!(c.has("bogus"));
        kassert_eq!(c.get("bogus"), None);
        let unknown: Vec<&str> = c.unknown_keys().collect();
        kassert_eq!(unknown, alloc::vec!["bogus"]);
        kassert!(Cmdline::parse("").unknown_keys().next().is_none());
        Ok(())
    }

    fn running_cmdline_selected_tests() -> TestResult {
        // This boot's own command line against the run in progress: the runner got the
        // `test=` pattern of the command line, and ran exactly the registered tests that
        // pattern names by the documented rules (bare `test`: every test not marked
        // explicit; `test=-TEXT`: those, minus names containing TEXT; `test=TEXT`: every
        // name containing TEXT; comma-separated patterns: the union).
        let line = crate::cmdline::get();
        kassert!(line.has("test"), "a test run without `test` on the command line");
        let pattern = line.get("test").filter(|p| !p.is_empty());
        let plan = crate::ktest::plan().ok_or("the runner recorded no plan")?;
        kassert_eq!(plan.pattern.as_deref().filter(|p| !p.is_empty()), pattern);
        kassert!(plan.names.contains(&"ktests::boot::running_cmdline_selected_tests"));
        kassert!(plan.names.is_sorted(), "tests not run in name order");
        // One pattern by the rules above; a comma-separated list selects the union.
        let one = |t: &crate::ktest::KernelTest, p: &str| match p.strip_prefix('-') {
            Some(excluded) => !t.explicit && !t.name().contains(excluded),
            None => t.name().contains(p),
        };
        for t in crate::ktest::all_tests() {
            let expected = match pattern {
                None => !t.explicit,
                Some(p) => p.split(',').filter(|q| !q.is_empty()).any(|q| one(t, q)),
            };
            let runs = plan.names.iter().filter(|n| **n == t.name()).count();
            kassert_eq!((t.name(), runs), (t.name(), usize::from(expected)));
        }
        Ok(())
    }

    fn firmware_map_is_sane() -> TestResult {
        let facts = boot_info::facts();
        kassert!(!facts.regions.is_empty());
        let usable: u64 = facts
            .regions
            .iter()
            .filter(|r| r.kind == bootloader_api::info::MemoryRegionKind::Usable)
            .map(|r| r.end - r.start)
            .sum();
        kassert!(usable >= 32 << 20, "only {} bytes usable", usable);
        for r in facts.regions {
            kassert!(r.start <= r.end, "inverted region {:#x}-{:#x}", r.start, r.end);
        }
        kassert!(facts.physical_memory_offset % 4096 == 0);
        Ok(())
    }
}
