//! Every fixed capacity of the core, in one place.
//!
//! Capacities that decide the size of a struct are either named here (`*_MAX`, units last) or
//! are const generic parameters whose defaults are named here (`*_DEFAULT`). The relations that
//! the code relies on are checked at compile time at the bottom of this file, so changing one
//! number cannot silently break another.
//!
//! # The `small-limits` profile
//!
//! The defaults suit a desktop or server. The cargo feature `small-limits` swaps in smaller
//! tables for a microcontroller running a small cluster (each constant below shows both
//! values). With buffers sized to the limits, the firmware example's node shrinks from about
//! 17 KiB to under 10 KiB (see the README's size budget):
//!
//! | limit | default | `small-limits` |
//! |---|---:|---:|
//! | [`VOTERS_MAX`] / [`PEERS_MAX`] | 7 / 9 | 3 / 4 |
//! | [`ENTRY_DATA_BYTES_MAX`] | 4096 | 2304 (still above `kv::REQUEST_BYTES_MAX`) |
//! | [`ENTRIES_PER_MESSAGE_MAX`] | 64 | 16 |
//! | [`INFLIGHT_MAX`] | 16 | 4 |
//! | [`UNSTABLE_ENTRIES_MAX`] | 512 | 64 |
//! | [`OUTBOX_MESSAGES_MAX`] | 64 | 16 |
//! | [`READS_PENDING_MAX`] | 32 | 4 |
//!
//! The profile changes what a node accepts (at most 3 voters; larger entries are refused and
//! messages with them do not decode), so every node of a cluster must use the same profile.
//! Unlike most features it is not additive: enable it only in a final binary (firmware),
//! never in a library that others depend on. The test suite runs with the defaults.

/// True with the `small-limits` profile (see the module docs).
const SMALL: bool = cfg!(feature = "small-limits");

/// Most voters a configuration may have (old and new configuration each, during joint consensus).
pub const VOTERS_MAX: usize = if SMALL { 3 } else { 7 };

/// Most peers (voters of both configurations plus learners, self included) a node tracks.
pub const PEERS_MAX: usize = if SMALL { 4 } else { 9 };

/// Largest payload of one log entry, in bytes. A proposal above this is refused.
pub const ENTRY_DATA_BYTES_MAX: usize = if SMALL { 2304 } else { 4096 };

/// Most entries carried by one append message.
///
/// Kept below 128 so that the entry count is a one-byte varint on the wire (see `message`).
pub const ENTRIES_PER_MESSAGE_MAX: usize = if SMALL { 16 } else { 64 };

/// Hard cap on the size of one encoded message, in bytes. Decoding refuses anything larger,
/// whatever the configuration says.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Worst-case bytes a message adds around its entries (header fields as varints).
pub const MESSAGE_OVERHEAD_BYTES_MAX: usize = 96;

/// Worst-case bytes one entry adds around its payload on the wire (term, index, kind, length).
pub const ENTRY_OVERHEAD_BYTES_MAX: usize = 24;

/// Worst-case bytes a snapshot chunk message adds around its data (header, snapshot metadata
/// with a full joint membership and learners, offsets).
pub const SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX: usize = 64 + (2 * VOTERS_MAX + PEERS_MAX) * 10;

/// Largest context of a configuration change (opaque to the core; the std runtime carries the
/// added node's address in it).
pub const CONF_CONTEXT_BYTES_MAX: usize = 256;

/// Bytes read from storage per piece when restoring a state machine from its snapshot (a
/// stack buffer).
pub const RESTORE_CHUNK_BYTES: usize = 512;

/// Capacity of the per-follower inflight window (append messages sent but not acknowledged).
/// `Config::inflight_max` may lower it at run time, never raise it.
pub const INFLIGHT_MAX: usize = if SMALL { 4 } else { 16 };

/// Most entries the unstable (not yet persisted) log holds, whatever their size.
pub const UNSTABLE_ENTRIES_MAX: usize = if SMALL { 64 } else { 512 };

/// Most messages waiting in the outbox between two `ready()` calls.
pub const OUTBOX_MESSAGES_MAX: usize = if SMALL { 16 } else { 64 };

/// Most linearizable read requests waiting for their ReadIndex confirmation at once.
pub const READS_PENDING_MAX: usize = if SMALL { 4 } else { 32 };

/// Default outbox capacity in bytes (`RawNode`'s `OUTBOX_BYTES` parameter).
pub const OUTBOX_BYTES_DEFAULT: usize = 64 * 1024;

/// Default unstable-log capacity in bytes (`RawNode`'s `UNSTABLE_BYTES` parameter).
pub const UNSTABLE_BYTES_DEFAULT: usize = 64 * 1024;

/// Smallest message size that still carries one entry of the largest size.
pub const MESSAGE_BYTES_MIN: usize =
    ENTRY_DATA_BYTES_MAX + ENTRY_OVERHEAD_BYTES_MAX + MESSAGE_OVERHEAD_BYTES_MAX;

const _: () = {
    assert!(
        ENTRIES_PER_MESSAGE_MAX < 128,
        "entry count must be a one-byte varint"
    );
    assert!(VOTERS_MAX <= PEERS_MAX);
    assert!(MESSAGE_BYTES_MIN <= MESSAGE_BYTES_MAX);
    assert!(SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX < MESSAGE_BYTES_MIN);
    assert!(INFLIGHT_MAX >= 1);
    assert!(OUTBOX_BYTES_DEFAULT >= MESSAGE_BYTES_MIN);
    assert!(UNSTABLE_BYTES_DEFAULT >= ENTRY_DATA_BYTES_MAX);
    assert!(ENTRY_DATA_BYTES_MAX <= u32::MAX as usize);
    assert!(crate::membership::CONFIG_ENTRY_BYTES_MAX <= ENTRY_DATA_BYTES_MAX);
    assert!(MESSAGE_BYTES_MAX <= u32::MAX as usize);
};
