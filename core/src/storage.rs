//! The durable-log seam: what the core needs from persistent storage.
//!
//! The core never writes to storage on its own initiative: it writes only inside
//! [`crate::RawNode::persist`], which appends the unstable entries, saves the hard state and
//! calls [`Storage::sync`] once (group commit) before any message of that round may be sent
//! (but a leader's appends and heartbeats, which may leave before: see
//! [`crate::RawNode::early_messages`]).

use crate::types::{Entry, HardState, Index, InitialState, SnapshotMeta, Term};

/// What kind of failure a storage error is, so the core can act on it without knowing the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The index is below the first index: the entries were compacted into a snapshot.
    Compacted,
    /// The index is above the last index.
    Unavailable,
    /// No room for more entries until the log is compacted.
    Full,
    /// The device failed (read, write or sync). After a failed sync nothing since the last
    /// good sync may be assumed durable.
    Io,
    /// Stored data failed its integrity check.
    Corrupt,
}

/// Errors a [`Storage`] returns.
pub trait StorageError: core::fmt::Debug {
    /// The kind of failure.
    fn kind(&self) -> StorageErrorKind;
}

/// Durable log plus hard state.
///
/// Invariants an implementation keeps:
/// - entries are stored for every index in `first_index()..=last_index()`, consecutive;
/// - `term(first_index() - 1)` answers the term of the snapshot (or 0 for an empty log);
/// - nothing written is durable until [`Storage::sync`] returns `Ok`; after that it survives a
///   crash.
pub trait Storage {
    /// The error type.
    type Error: StorageError;

    /// The persisted hard state and membership, read when a node starts.
    fn initial_state(&self) -> Result<InitialState, Self::Error>;

    /// Index of the first entry still held (snapshot index + 1; 1 for a log never compacted).
    fn first_index(&self) -> Index;

    /// Index of the last entry held (the snapshot index if the log is empty).
    fn last_index(&self) -> Index;

    /// Term of the entry at `index`, for `first_index() - 1 <= index <= last_index()`.
    fn term(&self, index: Index) -> Result<Term, Self::Error>;

    /// Calls `visit` with entries `lo..hi` in order. Stops early when `visit` returns `false`, or
    /// after the entry that brings the payload bytes visited above `bytes_max` (at least one
    /// entry is always visited when `lo < hi`). Entries below `first_index()` give
    /// [`StorageErrorKind::Compacted`].
    fn entries(
        &self,
        lo: Index,
        hi: Index,
        bytes_max: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> bool,
    ) -> Result<(), Self::Error>;

    /// Appends one entry. If `entry.index <= last_index()` the entries from `entry.index` on
    /// are discarded first (a conflicting suffix); `entry.index` must be at most
    /// `last_index() + 1` and above the snapshot index. Not durable until `sync`.
    fn append(&mut self, entry: Entry<'_>) -> Result<(), Self::Error>;

    /// Records the hard state. Not durable until `sync`.
    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), Self::Error>;

    /// Makes every earlier `append` and `set_hard_state` durable (one fsync for all of them).
    fn sync(&mut self) -> Result<(), Self::Error>;

    /// Metadata of the current snapshot (index and term 0 if there is none).
    fn snapshot_meta(&self) -> SnapshotMeta;

    /// Length in bytes of the current snapshot's data (0 if there is none).
    fn snapshot_len(&self) -> u64;

    /// Reads the current snapshot's data from `offset` into `buf`; returns the bytes read
    /// (0 at or past the end). RAM stays bounded by `buf`: nothing else is buffered.
    fn read_snapshot(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// Starts writing a new snapshot described by `meta`: from the local state machine
    /// (compaction) or as received from the leader. An unfinished earlier one is discarded;
    /// the current snapshot stays current until [`Storage::finish_snapshot`].
    fn begin_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), Self::Error>;

    /// Appends `data` to the snapshot being written.
    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), Self::Error>;

    /// Makes the snapshot being written durable and current (it is durable when this returns,
    /// no `sync` needed), then discards the log entries it covers: if the log holds the entry
    /// at the snapshot's index with the snapshot's term, the entries after it are kept;
    /// otherwise the whole log is discarded and the next entry appended is `index + 1`. The
    /// previous snapshot's space is released only after the new one is durable.
    fn finish_snapshot(&mut self) -> Result<(), Self::Error>;
}
