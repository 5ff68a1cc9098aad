//! The fragmentation scenario: movable memory with checksums interleaved with unmovable
//! allocations, then half the movable pages freed, scattered.
//!
//! SKELETON: the API is fixed; the body is being written.

use core::fmt::Write;

/// What [`fragment`] built.
#[derive(Clone, Copy, Debug, Default)]
pub struct FragSummary {
    /// Movable pages mapped (after the scattered frees).
    pub movable_pages: u64,
    /// Unmovable pages held.
    pub unmovable_pages: u64,
    /// Free pages after fragmenting.
    pub free_pages: u64,
    /// Free order-9-or-larger blocks after fragmenting.
    pub free_order9_blocks: u64,
}

/// Build the scenario (replacing any earlier one), printing progress to `out`.
pub fn fragment(out: &mut dyn Write) -> Result<FragSummary, &'static str> {
    let _ = out;
    todo!()
}

/// Verify every checksum and reverse map of the current scenario; the number of pages
/// checked, or what was wrong.
pub fn verify() -> Result<u64, &'static str> {
    todo!()
}

/// Free everything the scenario holds.
pub fn release() {
    todo!()
}
