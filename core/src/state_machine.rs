//! The application seam: the deterministic state machine that committed entries are applied to.

use crate::storage::StorageErrorKind;
use crate::types::{Entry, SnapshotMeta};

/// Why a snapshot could not be taken or restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// This state machine does not implement snapshots (so its log cannot be compacted).
    Unsupported,
    /// The storage failed while writing or reading the snapshot.
    Storage(StorageErrorKind),
    /// The snapshot data is not what this state machine writes; the text says what is wrong.
    Invalid(&'static str),
    /// The state does not fit the state machine's bounds.
    Full,
}

impl core::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SnapshotError::Unsupported => {
                f.write_str("the state machine does not support snapshots")
            }
            SnapshotError::Storage(k) => write!(f, "storage failed during a snapshot: {k:?}"),
            SnapshotError::Invalid(why) => write!(f, "invalid snapshot: {why}"),
            SnapshotError::Full => f.write_str("snapshot state does not fit the state machine"),
        }
    }
}

/// A deterministic state machine replicated by Raft.
///
/// Every node applies the same committed entries in the same order, so `apply` must depend on
/// nothing but the state and the entry: no clock, no randomness, no I/O results.
///
/// Snapshots (log compaction, catching up a lagging follower) are optional: the default
/// methods answer [`SnapshotError::Unsupported`]. A state machine that supports them writes its
/// whole state as a byte stream in pieces and reads it back in pieces of any size, so RAM stays
/// bounded by a chunk whatever the state size.
pub trait StateMachine {
    /// What applying an entry answers (routed back to the client that proposed it).
    type Response;

    /// Applies one committed application entry (never a no-op or configuration entry) and
    /// returns the response. Errors of the request itself (a bad key, a failed
    /// compare-and-swap) are responses, not failures.
    fn apply(&mut self, entry: &Entry<'_>) -> Self::Response;

    /// Writes the whole current state, in order, as pieces passed to `out` (each piece may be
    /// any size). The state must not change while this runs.
    fn write_snapshot(
        &self,
        out: &mut dyn FnMut(&[u8]) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        let _ = out;
        Err(SnapshotError::Unsupported)
    }

    /// Starts replacing the state with a snapshot's: discards the current state.
    fn restore_begin(&mut self) -> Result<(), SnapshotError> {
        Err(SnapshotError::Unsupported)
    }

    /// Feeds the next piece of snapshot data (pieces split the stream anywhere).
    fn restore_chunk(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        let _ = data;
        Err(SnapshotError::Unsupported)
    }

    /// Ends a restore: the state now reflects every entry up to `meta.index`.
    fn restore_end(&mut self, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        let _ = meta;
        Err(SnapshotError::Unsupported)
    }
}
