//! `MemStorage`: a bounded in-memory [`Storage`] that needs no allocator.
//!
//! Entries are packed into an [`EntryRing`] of `BYTES` bytes holding at most `ENTRIES` entries.
//! When the ring is full, `append` fails with [`StorageErrorKind::Full`] until a snapshot
//! ([`Storage::finish_snapshot`]) frees the front of the log. Snapshots live in two buffers of
//! `SNAPSHOT_BYTES` each: the current one, and the one being written (so an unfinished
//! transfer never damages the current snapshot). Being memory, it is "durable" for as long as
//! the value lives; `sync` only counts calls (tests use the count to check group commit).

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

/// Bounded in-memory log, hard state and snapshot.
///
/// `SNAPSHOT_BYTES` bounds one snapshot's data; 0 (the default) means this storage cannot
/// hold snapshots, so its log can never be compacted.
#[derive(Clone)]
pub struct MemStorage<const BYTES: usize, const ENTRIES: usize, const SNAPSHOT_BYTES: usize = 0> {
    log: EntryRing<BYTES, ENTRIES>,
    hard_state: HardState,
    snapshot: SnapshotMeta,
    membership: Option<Membership>,
    syncs: u64,
    /// `snap_data[active]` is the current snapshot (`snap_len[active]` bytes); the other buffer
    /// receives the one being written.
    snap_data: [[u8; SNAPSHOT_BYTES]; 2],
    snap_len: [usize; 2],
    active: usize,
    /// Metadata of the snapshot being written, if one was begun.
    incoming: Option<SnapshotMeta>,
}

impl<const BYTES: usize, const ENTRIES: usize, const SNAPSHOT_BYTES: usize> Default
    for MemStorage<BYTES, ENTRIES, SNAPSHOT_BYTES>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize, const ENTRIES: usize, const SNAPSHOT_BYTES: usize>
    MemStorage<BYTES, ENTRIES, SNAPSHOT_BYTES>
{
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
                membership: Membership::EMPTY,
            },
            membership: None,
            syncs: 0,
            snap_data: [[0; SNAPSHOT_BYTES]; 2],
            snap_len: [0; 2],
            active: 0,
            incoming: None,
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
}

impl<const BYTES: usize, const ENTRIES: usize, const SNAPSHOT_BYTES: usize> Storage
    for MemStorage<BYTES, ENTRIES, SNAPSHOT_BYTES>
{
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

    fn snapshot_len(&self) -> u64 {
        self.snap_len[self.active] as u64
    }

    fn read_snapshot(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let data = &self.snap_data[self.active][..self.snap_len[self.active]];
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn begin_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), Self::Error> {
        self.incoming = Some(meta.clone());
        self.snap_len[1 - self.active] = 0;
        Ok(())
    }

    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        if self.incoming.is_none() {
            return Err(MemStorageError(StorageErrorKind::Unavailable));
        }
        let slot = 1 - self.active;
        let at = self.snap_len[slot];
        if data.len() > SNAPSHOT_BYTES - at {
            return Err(MemStorageError(StorageErrorKind::Full));
        }
        self.snap_data[slot][at..at + data.len()].copy_from_slice(data);
        self.snap_len[slot] += data.len();
        Ok(())
    }

    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        let meta = self
            .incoming
            .take()
            .ok_or(MemStorageError(StorageErrorKind::Unavailable))?;
        if self.log.term(meta.index) == Some(meta.term) {
            self.log.discard_through(meta.index);
        } else {
            self.log.reset(meta.index + 1);
        }
        self.active = 1 - self.active;
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.membership = Some(meta.membership.clone());
        self.snapshot = meta;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EntryKind, Membership};

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

    fn snapshot(s: &mut MemStorage<64, 16, 32>, index: Index, term: Term, data: &[u8]) {
        let meta = SnapshotMeta {
            index,
            term,
            membership: Membership::default(),
        };
        s.begin_snapshot(&meta).unwrap();
        s.write_snapshot(data).unwrap();
        s.finish_snapshot().unwrap();
    }

    #[test]
    fn full_until_a_snapshot_frees_the_front() {
        let mut s: MemStorage<64, 16, 32> = MemStorage::new();
        let mut i = 1;
        while s.append(e(i, 1, b"x")).is_ok() {
            i += 1;
        }
        assert_eq!(
            s.append(e(i, 1, b"x")).unwrap_err().kind(),
            StorageErrorKind::Full
        );
        snapshot(&mut s, 2, 1, b"state");
        s.append(e(i, 1, b"x")).unwrap();
        assert_eq!(s.first_index(), 3);
        assert_eq!(s.term(2), Ok(1));
        assert_eq!(s.term(1).unwrap_err().kind(), StorageErrorKind::Compacted);
        let mut buf = [0u8; 3];
        assert_eq!(s.read_snapshot(2, &mut buf), Ok(3));
        assert_eq!(&buf, b"ate");
        assert_eq!(s.snapshot_len(), 5);
    }

    #[test]
    fn a_snapshot_that_does_not_match_the_log_replaces_it() {
        let mut s: MemStorage<256, 16, 32> = MemStorage::new();
        for i in 1..=5 {
            s.append(e(i, 1, b"a")).unwrap();
        }
        let meta = SnapshotMeta {
            index: 7,
            term: 3,
            membership: Membership::from_voters(&[1, 2]).unwrap(),
        };
        s.begin_snapshot(&meta).unwrap();
        s.write_snapshot(b"abc").unwrap();
        // Unfinished: the old (empty) snapshot is still current.
        assert_eq!(s.snapshot_len(), 0);
        s.finish_snapshot().unwrap();
        assert_eq!((s.first_index(), s.last_index()), (8, 7));
        assert_eq!(s.term(7), Ok(3));
        assert_eq!(s.initial_state().unwrap().membership, Some(meta.membership));
        assert_eq!(s.hard_state().commit, 7);
        s.append(e(8, 3, b"b")).unwrap();
    }

    #[test]
    fn snapshot_larger_than_its_buffer_is_refused() {
        let mut s: MemStorage<64, 16, 4> = MemStorage::new();
        s.begin_snapshot(&SnapshotMeta::default()).unwrap();
        assert_eq!(
            s.write_snapshot(b"12345").unwrap_err().kind(),
            StorageErrorKind::Full
        );
        s.write_snapshot(b"1234").unwrap();
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
