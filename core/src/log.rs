//! The Raft log as the protocol sees it: durable entries in [`Storage`] followed by the
//! unstable entries this node has accepted but not yet persisted.
//!
//! Unstable entries are authoritative: when a follower replaces a conflicting suffix, the new
//! entries start in the unstable ring at an index the storage still holds, and the storage
//! catches up (truncating its stale suffix) on the next persist.

use crate::limits::{ENTRY_DATA_BYTES_MAX, UNSTABLE_ENTRIES_MAX};
use crate::ring::{EntryRing, RingFull};
use crate::storage::{Storage, StorageError, StorageErrorKind};
use crate::types::{Entry, EntryKind, Index, Term};

/// Stable + unstable log with the commit and apply points.
pub(crate) struct RaftLog<S, const UNSTABLE: usize> {
    pub(crate) storage: S,
    /// Invariant: when empty, `unstable.first_index() == storage.last_index() + 1`.
    unstable: EntryRing<UNSTABLE, UNSTABLE_ENTRIES_MAX>,
    /// Invariant: `applied <= committed <= last_index()`.
    pub(crate) committed: Index,
    pub(crate) applied: Index,
    /// Every configuration entry in the log is at or below this index (it may be stale-high
    /// after a truncation; that only costs a scan when applying).
    pub(crate) config_hint: Index,
}

impl<S: Storage, const UNSTABLE: usize> RaftLog<S, UNSTABLE> {
    const FITS_ONE_ENTRY: () = assert!(
        UNSTABLE >= ENTRY_DATA_BYTES_MAX + 13,
        "the unstable log must hold at least one entry of the largest size"
    );

    /// A log over `storage` that has not read it yet: all zero bytes apart from the storage's
    /// own. [`RaftLog::restart`] must run before anything else.
    pub(crate) const fn unstarted(storage: S) -> Self {
        let () = Self::FITS_ONE_ENTRY;
        Self {
            unstable: EntryRing::new(1),
            committed: 0,
            applied: 0,
            config_hint: 0,
            storage,
        }
    }

    /// Starts over from what the storage holds, reusing the unstable ring's buffer.
    pub(crate) fn restart(&mut self, commit: Index) {
        let snapshot = self.storage.first_index() - 1;
        let last = self.storage.last_index();
        self.unstable.reset(last + 1);
        self.committed = commit.clamp(snapshot, last);
        self.applied = snapshot;
        // Not read yet: any entry of the log may be a configuration change.
        self.config_hint = last;
    }

    pub(crate) fn first_index(&self) -> Index {
        self.storage.first_index()
    }

    pub(crate) fn last_index(&self) -> Index {
        if self.unstable.is_empty() {
            self.storage.last_index()
        } else {
            self.unstable.last_index()
        }
    }

    /// Last index that is durable (and not superseded by an unstable entry).
    pub(crate) fn persisted_index(&self) -> Index {
        self.storage
            .last_index()
            .min(self.unstable.first_index() - 1)
    }

    pub(crate) fn term(&self, index: Index) -> Result<Term, StorageErrorKind> {
        if index >= self.unstable.first_index() {
            return self
                .unstable
                .term(index)
                .ok_or(StorageErrorKind::Unavailable);
        }
        // Index 0 is "before the log" only while nothing was compacted; after a snapshot it is
        // as gone as any other compacted index.
        if index == 0 && self.storage.first_index() == 1 {
            return Ok(0);
        }
        self.storage.term(index).map_err(|e| e.kind())
    }

    pub(crate) fn last_term(&self) -> Term {
        self.term(self.last_index()).unwrap_or(0)
    }

    pub(crate) fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Ok(term)
    }

    /// §5.4.1: is a log ending at (`last_index`, `last_term`) at least as up to date as ours?
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Visits entries `lo..hi` from storage then the unstable ring, stopping as `Storage::entries`
    /// documents (byte limit, or `visit` returning false).
    pub(crate) fn visit(
        &self,
        lo: Index,
        hi: Index,
        bytes_max: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> bool,
    ) -> Result<(), StorageErrorKind> {
        let split = self.unstable.first_index();
        let mut bytes = 0usize;
        let mut going = true;
        if lo < split {
            let stable_hi = hi.min(split);
            self.storage
                .entries(lo, stable_hi, bytes_max, &mut |e| {
                    bytes += e.data.len();
                    going = visit(e) && bytes <= bytes_max;
                    going
                })
                .map_err(|e| e.kind())?;
        }
        for e in self.unstable.iter(lo.max(split), hi) {
            if !going {
                break;
            }
            bytes += e.data.len();
            going = visit(e) && bytes <= bytes_max;
        }
        Ok(())
    }

    /// Leader: appends a new entry of `term`, returning its index.
    pub(crate) fn append(
        &mut self,
        term: Term,
        kind: EntryKind,
        data: &[u8],
    ) -> Result<Index, RingFull> {
        self.unstable.push(term, kind, data)?;
        let index = self.unstable.last_index();
        if kind == EntryKind::Config {
            self.config_hint = index;
        }
        Ok(index)
    }

    /// True if an entry with `len` payload bytes fits in the unstable ring now.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.unstable.fits(len)
    }

    /// Follower: adds `entries` (consecutive, starting at or before `last_index() + 1`),
    /// skipping the ones already present and replacing a conflicting suffix. Returns the index
    /// of the last entry now known to match the leader (fewer than all if the ring filled up),
    /// or `Err` if a committed entry would be overwritten (a faulty leader).
    pub(crate) fn accept(&mut self, prev_index: Index, entries: &[Entry<'_>]) -> Result<Index, ()> {
        let mut matched = prev_index;
        for e in entries {
            if self.matches(e.index, e.term) {
                matched = e.index;
                continue;
            }
            // First conflicting or new entry.
            if e.index <= self.committed {
                return Err(());
            }
            if e.index <= self.last_index() {
                self.truncate_from(e.index);
            }
            if self.unstable.push(e.term, e.kind, e.data).is_err() {
                break;
            }
            if e.kind == EntryKind::Config {
                self.config_hint = self.config_hint.max(e.index);
            }
            matched = e.index;
        }
        Ok(matched)
    }

    fn truncate_from(&mut self, index: Index) {
        if index <= self.unstable.first_index() {
            // The new suffix replaces durable entries; storage truncates them on persist.
            self.unstable.reset(index);
        } else {
            self.unstable.truncate_from(index);
        }
    }

    /// Follower: the largest index `<= index` whose term is `<= term` (for the rejection hint).
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> (Index, Term) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > 0 => i -= 1,
                Ok(t) => return (i, t),
                Err(_) => return (i, 0),
            }
        }
    }

    /// The storage installed a snapshot up to `index` (keeping or discarding the entries after
    /// it): drop unstable entries, and move the commit point (the apply point follows when the
    /// state machine is restored).
    pub(crate) fn installed_snapshot(&mut self, index: Index) {
        self.unstable.reset(self.storage.last_index() + 1);
        self.committed = self.committed.max(index);
    }

    pub(crate) fn commit_to(&mut self, index: Index) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Writes the unstable entries to storage (not synced).
    pub(crate) fn write_unstable(&mut self) -> Result<(), S::Error> {
        for e in self.unstable.iter(0, Index::MAX) {
            self.storage.append(e)?;
        }
        Ok(())
    }

    /// The unstable entries were synced: drop them from the ring.
    pub(crate) fn mark_persisted(&mut self) {
        let last = self.unstable.last_index();
        self.unstable.discard_through(last);
    }

    pub(crate) fn unstable_len(&self) -> usize {
        self.unstable.len()
    }

    pub(crate) fn unstable_entries(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.unstable.iter(0, Index::MAX)
    }
}
