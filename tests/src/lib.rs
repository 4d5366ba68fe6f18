//! Shared helpers for tinyraft cluster tests.
