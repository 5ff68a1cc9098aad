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
        kassert!(crate::cmdline::get().has("test"));
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
