//! The per-area CMA view, as Linux's debugfs shows it under `/sys/kernel/debug/cma/<name>/`
//! (`mm/cma_debug.c`): one file per value there, one `file: value` line per file here, so
//! a console or a test reads the whole area at once.
//!
//! ```text
//! cma reserved
//! base_pfn: 0x1bc000
//! count: 16384
//! order_per_bit: 0
//! used: 8192
//! maxchunk: 8192
//! bitmap: 4294967295 4294967295 ... 0 0
//! ```
//!
//! `bitmap` is the allocation bitmap as Linux's `debugfs_create_u32_array` prints it:
//! decimal 32-bit words separated by spaces, bit 0 of the first word being the area's
//! first `1 << order_per_bit` pages.

#![deny(unsafe_code)]

use core::fmt::{self, Write};

use crate::movement::cma::CmaAreaSnapshot;
use crate::page_alloc::PageAllocator;
use crate::port::platform::Platform;

/// Render one area.
pub fn cma_area<W: Write + ?Sized>(w: &mut W, a: &CmaAreaSnapshot) -> fmt::Result {
    writeln!(w, "cma {}", a.name())?;
    writeln!(w, "base_pfn: {:#x}", a.base_pfn)?;
    writeln!(w, "count: {}", a.count)?;
    writeln!(w, "order_per_bit: {}", a.order_per_bit)?;
    writeln!(w, "used: {}", a.used)?;
    writeln!(w, "maxchunk: {}", a.maxchunk)?;
    w.write_str("bitmap:")?;
    for word in a.bitmap_u32() {
        write!(w, " {word}")?;
    }
    w.write_char('\n')
}

impl<P: Platform> PageAllocator<P> {
    /// Every CMA area ([`cma_area`]), separated by blank lines.
    pub fn write_cma_areas(&self, w: &mut dyn Write) -> fmt::Result {
        for i in 0..self.cma_nr_areas() {
            if let Some(a) = self.cma_area(i) {
                if i > 0 {
                    w.write_char('\n')?;
                }
                cma_area(w, &a)?;
            }
        }
        Ok(())
    }
}
