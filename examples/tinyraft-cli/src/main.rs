//! The `tinyraft` binary (arrives with the PartB issue).

fn main() {}
