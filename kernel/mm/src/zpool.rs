//! A movable object store: the in-kernel user of `movable_operations` (Linux's closest
//! relative is zsmalloc).
//!
//! SKELETON: being written.
