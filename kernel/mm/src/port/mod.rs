//! The port surface: what a host kernel provides ([`platform`]), the interrupt-safe locks
//! built on it ([`sync`]), and the host simulation that implements it for tests
//! ([`sim`], feature `std`).

pub mod platform;
#[cfg(feature = "std")]
pub mod sim;
pub mod sync;
