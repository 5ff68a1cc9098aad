//! GFP masks as a user types them: `GFP_KERNEL|__GFP_ZERO`, `GFP_HIGHUSER_MOVABLE`, or a
//! number (`0xcc0`).
//!
//! The names and bit values are Linux's (`include/linux/gfp_types.h`), the same ones the
//! allocator prints in its failure reports, so a user can paste a mode from a report back
//! into `alloc`. This crate does not depend on `mm`; the host tests check, name by name,
//! that `mm`'s `Display` prints exactly the name parsed here. Which combinations make sense
//! (`__GFP_DMA|__GFP_DMA32` does not) is the allocator's call: it refuses them with a
//! reason, so the parser only maps words to bits.

use core::fmt;

const DMA: u32 = 0x01;
const HIGHMEM: u32 = 0x02;
const DMA32: u32 = 0x04;
const MOVABLE: u32 = 0x08;
const RECLAIMABLE: u32 = 0x10;
const HIGH: u32 = 0x20;
const IO: u32 = 0x40;
const FS: u32 = 0x80;
const ZERO: u32 = 0x100;
const DIRECT_RECLAIM: u32 = 0x400;
const KSWAPD_RECLAIM: u32 = 0x800;
const WRITE: u32 = 0x1000;
const NOWARN: u32 = 0x2000;
const RETRY_MAYFAIL: u32 = 0x4000;
const NOFAIL: u32 = 0x8000;
const NORETRY: u32 = 0x10000;
const MEMALLOC: u32 = 0x20000;
const COMP: u32 = 0x40000;
const NOMEMALLOC: u32 = 0x80000;
const HARDWALL: u32 = 0x100000;
const THISNODE: u32 = 0x200000;
const ACCOUNT: u32 = 0x400000;

const RECLAIM: u32 = DIRECT_RECLAIM | KSWAPD_RECLAIM;
/// `GFP_KERNEL`, the mask `alloc` uses when none is given.
pub const GFP_KERNEL: u32 = RECLAIM | IO | FS;
const GFP_USER: u32 = GFP_KERNEL | HARDWALL;
const GFP_HIGHUSER: u32 = GFP_USER | HIGHMEM;
const GFP_HIGHUSER_MOVABLE: u32 = GFP_HIGHUSER | MOVABLE;
const GFP_TRANSHUGE_LIGHT: u32 = (GFP_HIGHUSER_MOVABLE | COMP | NOMEMALLOC | NOWARN) & !RECLAIM;

/// Every name accepted, with its bits.
pub const NAMES: &[(&str, u32)] = &[
    ("GFP_TRANSHUGE", GFP_TRANSHUGE_LIGHT | DIRECT_RECLAIM),
    ("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER),
    ("GFP_KERNEL_ACCOUNT", GFP_KERNEL | ACCOUNT),
    ("GFP_KERNEL", GFP_KERNEL),
    ("GFP_NOFS", RECLAIM | IO),
    ("GFP_ATOMIC", HIGH | KSWAPD_RECLAIM),
    ("GFP_NOIO", RECLAIM),
    ("GFP_NOWAIT", KSWAPD_RECLAIM | NOWARN),
    ("GFP_DMA", DMA),
    ("GFP_DMA32", DMA32),
    ("__GFP_RECLAIM", RECLAIM),
    ("__GFP_DMA", DMA),
    ("__GFP_HIGHMEM", HIGHMEM),
    ("__GFP_DMA32", DMA32),
    ("__GFP_MOVABLE", MOVABLE),
    ("__GFP_RECLAIMABLE", RECLAIMABLE),
    ("__GFP_HIGH", HIGH),
    ("__GFP_IO", IO),
    ("__GFP_FS", FS),
    ("__GFP_ZERO", ZERO),
    ("__GFP_DIRECT_RECLAIM", DIRECT_RECLAIM),
    ("__GFP_KSWAPD_RECLAIM", KSWAPD_RECLAIM),
    ("__GFP_WRITE", WRITE),
    ("__GFP_NOWARN", NOWARN),
    ("__GFP_RETRY_MAYFAIL", RETRY_MAYFAIL),
    ("__GFP_NOFAIL", NOFAIL),
    ("__GFP_NORETRY", NORETRY),
    ("__GFP_MEMALLOC", MEMALLOC),
    ("__GFP_COMP", COMP),
    ("__GFP_NOMEMALLOC", NOMEMALLOC),
    ("__GFP_HARDWALL", HARDWALL),
    ("__GFP_THISNODE", THISNODE),
    ("__GFP_ACCOUNT", ACCOUNT),
];

/// Every bit a name above covers; a number with other bits is refused.
pub const KNOWN_BITS: u32 = 0x7f_fdff;

/// Why a GFP expression was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GfpParseError<'a> {
    /// Nothing between two `|` (or nothing at all).
    Empty,
    /// A word that is neither a known name nor a number.
    Unknown(&'a str),
    /// A number with bits no GFP flag uses.
    UnknownBits(u32),
}

impl fmt::Display for GfpParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GfpParseError::Empty => {
                f.write_str("empty GFP flag (write e.g. GFP_KERNEL|__GFP_ZERO)")
            }
            GfpParseError::Unknown(w) => write!(
                f,
                "'{w}' is not a GFP flag (e.g. GFP_KERNEL, GFP_HIGHUSER_MOVABLE, __GFP_ZERO, or a number)"
            ),
            GfpParseError::UnknownBits(b) => write!(f, "{b:#x}: no GFP flag has these bits"),
        }
    }
}

fn number(word: &str) -> Option<u32> {
    match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

/// Parse `NAME|NAME|0xNN...` into a mask (names are case-sensitive, as in C).
pub fn parse_gfp(text: &str) -> Result<u32, GfpParseError<'_>> {
    let mut mask = 0;
    for word in text.split('|').map(str::trim) {
        if word.is_empty() {
            return Err(GfpParseError::Empty);
        }
        let bits = match NAMES.iter().find(|(n, _)| *n == word) {
            Some(&(_, bits)) => bits,
            None => number(word).ok_or(GfpParseError::Unknown(word))?,
        };
        if bits & !KNOWN_BITS != 0 {
            return Err(GfpParseError::UnknownBits(bits & !KNOWN_BITS));
        }
        mask |= bits;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_gfp("GFP_KERNEL"), Ok(0xcc0));
        assert_eq!(parse_gfp("GFP_KERNEL|__GFP_ZERO"), Ok(0xdc0));
        assert_eq!(parse_gfp(" GFP_ATOMIC | __GFP_NOWARN "), Ok(0x2820));
        assert_eq!(parse_gfp("0xcc0"), Ok(0xcc0));
        assert_eq!(parse_gfp("3264"), Ok(0xcc0));
        assert_eq!(parse_gfp("GFP_DMA|GFP_DMA32"), Ok(0x5));
        assert_eq!(parse_gfp(""), Err(GfpParseError::Empty));
        assert_eq!(parse_gfp("GFP_KERNEL|"), Err(GfpParseError::Empty));
        assert_eq!(
            parse_gfp("gfp_kernel"),
            Err(GfpParseError::Unknown("gfp_kernel"))
        );
        assert_eq!(parse_gfp("0x200"), Err(GfpParseError::UnknownBits(0x200)));
        assert_eq!(
            parse_gfp("0xffffffff"),
            Err(GfpParseError::UnknownBits(0xff80_0200))
        );
        assert_eq!(
            parse_gfp("0x1ffffffff"),
            Err(GfpParseError::Unknown("0x1ffffffff"))
        );
    }

    #[test]
    fn known_bits_are_the_single_flags() {
        let singles = NAMES
            .iter()
            .filter(|(n, b)| n.starts_with("__") && b.count_ones() == 1)
            .fold(0, |acc, (_, b)| acc | b);
        assert_eq!(singles, KNOWN_BITS);
    }
}
