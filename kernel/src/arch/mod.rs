//! Architecture support. Only x86_64 exists; the directory name follows the design guide,
//! and `imp` avoids clashing with the `x86_64` crate's name.

#[macro_use]
#[path = "x86_64/mod.rs"]
mod imp;

pub use imp::*;
