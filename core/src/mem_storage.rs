//! `MemStorage`: a bounded in-memory [`Storage`] that needs no allocator.
//!
//! Entries are packed into an [`EntryRing`] of `BYTES` bytes holding at most `ENTRIES` entries.
//! When the ring is full, `append` fails with [`StorageErrorKind::Full`] until [`Storage::compact`]
//! frees the front of the log. Being memory, it is "durable" for as long as the value lives;
//! `sync` only counts calls (tests use the count to check group commit).

use crate::ring::EntryRing;
use crate::storage::{Storage, StorageError, StorageErrorKind};
use crate::types::{Entry, HardState, Index, InitialState, Membership, SnapshotMeta, Term};

/// The error of [`MemStorage`]: only its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStorageError(pub StorageErrorKind);

impl StorageError for MemStorageError {
    fn kind(&self) -> StorageErrorKind {
        self.0
    }
}

/// Bounded in-memory log and hard state.
pub struct MemStorage<const BYTES: usize, const ENTRIES: usize> {
    log: EntryRing<BYTES, ENTRIES>,
    hard_state: HardState,
    snapshot: SnapshotMeta,
    membership: Option<Membership>,
    syncs: u64,
}

impl<const BYTES: usize, const ENTRIES: usize> Default for MemStorage<BYTES, ENTRIES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize, const ENTRIES: usize> MemStorage<BYTES, ENTRIES> {
    /// An empty log with no hard state; it can live in a `static`.
    pub const fn new() -> Self {
        Self {
            log: EntryRing::new(1),
            hard_state: HardState {
                term: 0,
                vote: None,
                commit: 0,
            },
            snapshot: SnapshotMeta {
                index: 0,
                term: 0,
                membership: Membership {
                    voters: heapless::Vec::new(),
                    learners: heapless::Vec::new(),
                },
            },
            membership: None,
            syncs: 0,
        }
    }

    /// An empty log that starts with the given membership persisted (a new cluster's
    /// bootstrap configuration).
    pub fn with_membership(membership: Membership) -> Self {
        let mut s = Self::new();
        s.membership = Some(membership);
        s
    }

    /// Number of `sync` calls so far.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Arena bytes in use.
    pub fn bytes_used(&self) -> usize {
        self.log.bytes_used()
    }

    /// The current hard state (as last set).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Replaces the whole log with an empty one starting after `meta` (a snapshot was
    /// installed); the hard state's commit is raised to the snapshot index.
    pub fn reset_to_snapshot(&mut self, meta: &SnapshotMeta) {
        self.log.reset(meta.index + 1);
        self.snapshot = meta.clone();
        self.membership = Some(meta.membership.clone());
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
    }
}

impl<const BYTES: usize, const ENTRIES: usize> Storage for MemStorage<BYTES, ENTRIES> {
    type Error = MemStorageError;

    fn initial_state(&self) -> Result<InitialState, Self::Error> {
        Ok(InitialState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
        })
    }

    fn first_index(&self) -> Index {
        self.log.first_index()
    }

    fn last_index(&self) -> Index {
        self.log.last_index()
    }

    fn term(&self, index: Index) -> Result<Term, Self::Error> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.snapshot.index {
            return Err(MemStorageError(StorageErrorKind::Compacted));
        }
        self.log
            .term(index)
            .ok_or(MemStorageError(StorageErrorKind::Unavailable))
    }

    fn entries(
        &self,
        lo: Index,
        hi: Index,
        bytes_max: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> bool,
    ) -> Result<(), Self::Error> {
        if lo < self.log.first_index() {
            return Err(MemStorageError(StorageErrorKind::Compacted));
        }
        if hi > self.log.last_index() + 1 {
            return Err(MemStorageError(StorageErrorKind::Unavailable));
        }
        let mut bytes = 0usize;
        for e in self.log.iter(lo, hi) {
            bytes += e.data.len();
            if !visit(e) || bytes > bytes_max {
                break;
            }
        }
        Ok(())
    }

    fn append(&mut self, entry: Entry<'_>) -> Result<(), Self::Error> {
        if entry.index <= self.snapshot.index || entry.index > self.log.last_index() + 1 {
            return Err(MemStorageError(StorageErrorKind::Unavailable));
        }
        self.log.truncate_from(entry.index);
        self.log
            .push(entry.term, entry.kind, entry.data)
            .map_err(|_| MemStorageError(StorageErrorKind::Full))
    }

    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), Self::Error> {
        self.hard_state = *hard_state;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.syncs += 1;
        Ok(())
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot.clone()
    }

    fn compact(&mut self, index: Index, meta: &SnapshotMeta) -> Result<(), Self::Error> {
        if index <= self.snapshot.index {
            return Ok(());
        }
        let term = self.term(index)?;
        self.log.discard_through(index);
        self.snapshot = SnapshotMeta {
            index,
            term,
            membership: meta.membership.clone(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;

    fn e(index: Index, term: Term, data: &[u8]) -> Entry<'_> {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data,
        }
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut s: MemStorage<1024, 16> = MemStorage::new();
        for i in 1..=5 {
            s.append(e(i, 1, b"a")).unwrap();
        }
        s.append(e(3, 2, b"b")).unwrap();
        assert_eq!(s.last_index(), 3);
        assert_eq!(s.term(3), Ok(2));
        assert_eq!(s.term(4).unwrap_err().kind(), StorageErrorKind::Unavailable);
        assert_eq!(
            s.append(e(9, 2, b"")).unwrap_err().kind(),
            StorageErrorKind::Unavailable
        );
    }

    #[test]
    fn full_until_compacted() {
        let mut s: MemStorage<64, 16> = MemStorage::new();
        let mut i = 1;
        while s.append(e(i, 1, b"x")).is_ok() {
            i += 1;
        }
        assert_eq!(
            s.append(e(i, 1, b"x")).unwrap_err().kind(),
            StorageErrorKind::Full
        );
        let meta = s.snapshot_meta();
        s.compact(2, &meta).unwrap();
        s.append(e(i, 1, b"x")).unwrap();
        assert_eq!(s.first_index(), 3);
        assert_eq!(s.term(2), Ok(1));
        assert_eq!(s.term(1).unwrap_err().kind(), StorageErrorKind::Compacted);
    }

    #[test]
    fn entries_respects_byte_limit_but_returns_one() {
        let mut s: MemStorage<1024, 16> = MemStorage::new();
        for i in 1..=5 {
            s.append(e(i, 1, b"0123456789")).unwrap();
        }
        let mut n = 0;
        s.entries(1, 6, 0, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 1);
        n = 0;
        s.entries(2, 6, 25, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 3);
    }
}
