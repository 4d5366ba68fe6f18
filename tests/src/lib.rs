//! Shared helpers for tinyraft's cluster-level tests.

pub mod fuzz;
pub mod process;
pub mod sim;
