//! Every fixed capacity of the core, in one place.
//!
//! Capacities that decide the size of a struct are either named here (`*_MAX`, units last) or
//! are const generic parameters whose defaults are named here (`*_DEFAULT`). The relations that
//! the code relies on are checked at compile time at the bottom of this file, so changing one
//! number cannot silently break another.

/// Most voters a configuration may have (old and new configuration each, during joint consensus).
pub const VOTERS_MAX: usize = 7;

/// Most peers (voters of both configurations plus learners, self included) a node tracks.
pub const PEERS_MAX: usize = 9;

/// Largest payload of one log entry, in bytes. A proposal above this is refused.
pub const ENTRY_DATA_BYTES_MAX: usize = 4096;

/// Most entries carried by one append message.
///
/// Kept below 128 so that the entry count is a one-byte varint on the wire (see `message`).
pub const ENTRIES_PER_MESSAGE_MAX: usize = 64;

/// Hard cap on the size of one encoded message, in bytes. Decoding refuses anything larger,
/// whatever the configuration says.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Worst-case bytes a message adds around its entries (header fields as varints).
pub const MESSAGE_OVERHEAD_BYTES_MAX: usize = 96;

/// Worst-case bytes one entry adds around its payload on the wire (term, index, kind, length).
pub const ENTRY_OVERHEAD_BYTES_MAX: usize = 24;

/// Worst-case bytes a snapshot chunk message adds around its data (header, snapshot metadata
/// with a full membership, offsets).
pub const SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX: usize = 64 + 2 * VOTERS_MAX * 10;

/// Bytes read from storage per piece when restoring a state machine from its snapshot (a
/// stack buffer).
pub const RESTORE_CHUNK_BYTES: usize = 512;

/// Capacity of the per-follower inflight window (append messages sent but not acknowledged).
/// `Config::inflight_max` may lower it at run time, never raise it.
pub const INFLIGHT_MAX: usize = 16;

/// Most entries the unstable (not yet persisted) log holds, whatever their size.
pub const UNSTABLE_ENTRIES_MAX: usize = 512;

/// Most messages waiting in the outbox between two `ready()` calls.
pub const OUTBOX_MESSAGES_MAX: usize = 64;

/// Most linearizable read requests waiting for their ReadIndex confirmation at once.
pub const READS_PENDING_MAX: usize = 32;

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
    assert!(MESSAGE_BYTES_MAX <= u32::MAX as usize);
};
