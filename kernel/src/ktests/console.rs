//! The serial console's commands that keep state between lines (`alloc`, `free`).

use alloc::{vec, vec::Vec};

use console::FreeWhat;
use zonebuddy::page_alloc::gfp::GFP_KERNEL;

use crate::{
    console::{Held, free_block, free_held},
    kassert, kassert_eq, ktest,
    memory::allocator,
};

ktest! {
    fn free_all_keeps_the_blocks_it_could_not_free() -> TestResult {
        let a = allocator();
        a.drain_all_pages();
        let free0 = a.nr_free_pages();
        let take = || -> Result<Held, alloc::string::String> {
            let page = a.try_alloc_pages(GFP_KERNEL, 0).map_err(|e| alloc::format!("alloc: {e}"))?;
            Ok(Held { pfn: a.page_to_pfn(page), order: 0 })
        };
        let (first, last) = (take()?, take()?);
        // A block whose free fails: a frame far beyond any memory has no page.
        let bad = Held { pfn: 1 << 40, order: 0 };
        kassert!(a.pfn_to_page(bad.pfn).is_none());
        let mut held = vec![first, bad, last];
        let err = free_held(&mut held, FreeWhat::All, &mut free_block);
        // The first block was freed; the failing one and the one after it are still held,
        // and the message names both.
        kassert_eq!(held.clone(), vec![bad, last]);
        let msg = err.err().unwrap_or_default();
        kassert!(msg.contains("pfn 0x10000000000") && msg.contains(&alloc::format!("pfn {:#x}", last.pfn)), "message: {}", msg);
        // `free last` on a failing newest block keeps it.
        held.swap(0, 1);
        kassert!(free_held(&mut held, FreeWhat::Last, &mut free_block).is_err());
        kassert_eq!(held.clone(), vec![last, bad]);
        held.pop();
        kassert!(free_held(&mut held, FreeWhat::All, &mut free_block).is_ok());
        kassert_eq!(held, Vec::<Held>::new());
        a.drain_all_pages();
        kassert_eq!(a.nr_free_pages(), free0);
        Ok(())
    }
}
