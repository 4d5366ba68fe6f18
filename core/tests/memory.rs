//! The crate docs state how much RAM one node takes with the default capacities; this checks
//! the figure against the compiler's own `size_of`, so the docs cannot drift.

use core::mem::size_of;
use tinyraft::{MemStorage, RawNode};

/// The figure in `core/src/lib.rs` ("one `RawNode` takes about N KiB").
const DOCUMENTED_RAWNODE_KIB: usize = 135;

#[test]
fn default_rawnode_size_matches_the_documented_figure() {
    // The storage is the caller's and sized by the caller; use a tiny one to measure the node.
    let bytes = size_of::<RawNode<MemStorage<16, 1>>>() - size_of::<MemStorage<16, 1>>();
    let kib = bytes.div_ceil(1024);
    assert!(
        kib.abs_diff(DOCUMENTED_RAWNODE_KIB) <= 2,
        "RawNode with default capacities is {kib} KiB ({bytes} bytes); update lib.rs docs"
    );
}

#[test]
fn capacities_scale_the_node() {
    // A firmware-sized node: 4 KiB outbox, 6 KiB unstable ring.
    let small = size_of::<RawNode<MemStorage<16, 1>, 4096, 6144>>();
    assert!(small < 20 * 1024, "small node is {small} bytes");
}
