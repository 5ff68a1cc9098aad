//! The serial console's input side: a line editor, a command parser, the `/proc` and `/sys`
//! path tree, and the parsers for tunable values and GFP masks.
//!
//! They live in their own `no_std` crate, apart from the kernel, for one reason: whatever
//! bytes arrive on the serial line must never crash or hang the kernel, and that is only
//! believable if the code that eats those bytes is fuzzed. Here it runs on the host under
//! property tests; the kernel feeds it bytes and executes the [`Command`]s it returns.

#![cfg_attr(not(test), no_std)]

pub mod editor;
pub mod fs;
pub mod gfp;
pub mod parse;
pub mod tunable;

pub use editor::{Event, LineEditor, MAX_LINE};
pub use parse::{CmaCmd, Command, ContigCmd, FreeWhat, ParseError, parse, split_script};
