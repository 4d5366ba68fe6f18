//! [`FaultyStorage`]: any [`Storage`] with a page cache that a crash can lose.

use crate::limits::{UNSTABLE_BYTES_DEFAULT, UNSTABLE_ENTRIES_MAX};
use crate::ring::EntryRing;
use crate::storage::{Storage, StorageError, StorageErrorKind};
use crate::types::{Entry, HardState, Index, InitialState, SnapshotMeta, Term};

use super::{FaultRng, Ppm};

/// Errors of a [`FaultyStorage`]: the wrapped storage's, or an injected one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultyStorageError<E> {
    /// The wrapped storage failed.
    Inner(E),
    /// The index asked for is outside the log (as [`StorageErrorKind`] says).
    Range(StorageErrorKind),
    /// An injected sync failure: the machine "died" during the sync. Every later call fails
    /// the same way until [`FaultyStorage::crash`] models the restart.
    Crashed,
}

impl<E: StorageError> StorageError for FaultyStorageError<E> {
    fn kind(&self) -> StorageErrorKind {
        match self {
            FaultyStorageError::Inner(e) => e.kind(),
            FaultyStorageError::Range(k) => *k,
            FaultyStorageError::Crashed => StorageErrorKind::Io,
        }
    }
}

/// What a simulated crash kept and lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Entries written but not synced when the crash came.
    pub unsynced_entries: usize,
    /// How many of them reached the disk anyway (a prefix, in log order).
    pub kept_entries: usize,
    /// The entry whose record was torn half-way: its checksum fails on recovery, so it and
    /// everything after it are gone.
    pub torn: Option<Index>,
    /// An un-synced hard state was pending: `Some(true)` if it reached the disk anyway.
    pub hard_state_kept: Option<bool>,
}

/// Counters of a [`FaultyStorage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultyStorageStats {
    /// Successful syncs.
    pub syncs: u64,
    /// Syncs that failed on purpose.
    pub failed_syncs: u64,
    /// Simulated crashes.
    pub crashes: u64,
    /// Un-synced entries that crashes lost (torn ones included).
    pub entries_lost: u64,
    /// Un-synced entries that crashes kept.
    pub entries_kept: u64,
    /// Records torn by crashes.
    pub torn_writes: u64,
    /// Times the journal filled and un-synced entries were written back early.
    pub early_writebacks: u64,
}

/// A [`Storage`] wrapper that holds every write since the last `sync` in a bounded journal
/// (the "page cache") and hands it to the wrapped storage (the "disk") only when synced.
///
/// Reads see the journal, so the node above cannot tell the difference until a crash:
/// [`FaultyStorage::crash`] decides, with the caller's PRNG, which un-synced writes reached the
/// disk anyway. That is exactly the freedom the [`Storage`] contract leaves a real device:
/// synced data survives; un-synced data may survive in part or not at all. Concretely a crash
///
/// - keeps a prefix of the un-synced entries (write-back is in log order within a file),
/// - may tear the record after that prefix: a store with per-record checksums (FileStorage's
///   CRC32C) discards a torn record and everything after it on recovery, so it is lost,
/// - keeps or loses an un-synced hard state independently of the entries, because the hard
///   state lives in another file whose write-back order is unrelated.
///
/// [`FaultyStorage::fail_next_sync`] makes the next `sync` fail as if power went out during
/// it: nothing of the round is acknowledged, and the storage refuses everything until
/// `crash` is called.
///
/// The journal holds `BYTES` bytes of entries (13 bytes of overhead each) and at most
/// `ENTRIES` entries; the defaults hold one full unstable log of a default `RawNode`. Should
/// it fill before a sync, its oldest part is written back early, as a page cache under
/// pressure does (counted in [`FaultyStorageStats::early_writebacks`]); that is still within
/// the contract.
pub struct FaultyStorage<
    S,
    const BYTES: usize = { UNSTABLE_BYTES_DEFAULT + 16 * UNSTABLE_ENTRIES_MAX },
    const ENTRIES: usize = UNSTABLE_ENTRIES_MAX,
> {
    inner: S,
    /// Un-synced entries, consecutive. Invariant: when not empty, `journal.first_index()` is
    /// above the snapshot index and at most `inner.last_index() + 1`; the entries of `inner`
    /// from `journal.first_index()` on are superseded (a conflicting suffix being replaced).
    journal: EntryRing<BYTES, ENTRIES>,
    /// Un-synced hard state.
    hard_state: Option<HardState>,
    fail_next_sync: bool,
    crashed: bool,
    /// Chance that a crash tears the record after the kept prefix.
    tear_ppm: Ppm,
    stats: FaultyStorageStats,
}

impl<S: Storage, const BYTES: usize, const ENTRIES: usize> FaultyStorage<S, BYTES, ENTRIES> {
    /// Wraps `inner`, whose current contents count as durable.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            journal: EntryRing::new(1),
            hard_state: None,
            fail_next_sync: false,
            crashed: false,
            tear_ppm: 500_000,
            stats: FaultyStorageStats {
                syncs: 0,
                failed_syncs: 0,
                crashes: 0,
                entries_lost: 0,
                entries_kept: 0,
                torn_writes: 0,
                early_writebacks: 0,
            },
        }
    }

    /// Sets the chance that a crash tears the record after the kept prefix (default: half).
    pub fn set_tear_ppm(&mut self, ppm: Ppm) {
        self.tear_ppm = ppm;
    }

    /// The wrapped storage: what is on "disk".
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped storage, mutably. Writing through it bypasses the journal.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the storage, dropping whatever was not synced (a crash that kept nothing).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Counters.
    pub fn stats(&self) -> FaultyStorageStats {
        self.stats
    }

    /// Entries written since the last sync.
    pub fn unsynced_entries(&self) -> usize {
        self.journal.len()
    }

    /// True if an injected sync failure happened and [`FaultyStorage::crash`] was not yet
    /// called: the "machine" is down.
    pub fn is_crashed(&self) -> bool {
        self.crashed
    }

    /// Makes the next `sync` fail as if the machine died during it. Its writes stay
    /// un-synced; every later call fails until [`FaultyStorage::crash`].
    pub fn fail_next_sync(&mut self) {
        self.fail_next_sync = true;
    }

    /// Simulates a crash and the restart after it: decides with `rng` what of the un-synced
    /// writes reached the disk (see the type docs), makes that durable in the wrapped storage,
    /// and forgets the rest. Afterwards the storage works again and holds exactly what a
    /// node restarting on this disk would find.
    pub fn crash(&mut self, rng: &mut impl FaultRng) -> Result<CrashReport, S::Error> {
        let pending = self.journal.len();
        // Half the time nothing was written back; otherwise any prefix may have been.
        let mut keep = if rng.chance(500_000) {
            0
        } else {
            rng.below(pending as u64 + 1) as usize
        };
        let mut torn = None;
        if keep > 0 && rng.chance(self.tear_ppm) {
            keep -= 1;
            torn = Some(self.journal.first_index() + keep as Index);
        }
        let hard_state_kept = self.hard_state.map(|_| rng.chance(500_000));
        let first = self.journal.first_index();
        for e in self.journal.iter(first, first + keep as Index) {
            self.inner.append(e)?;
        }
        if let (Some(hs), Some(true)) = (self.hard_state, hard_state_kept) {
            self.inner.set_hard_state(&hs)?;
        }
        self.inner.sync()?;
        self.journal.reset(self.inner.last_index() + 1);
        self.hard_state = None;
        self.fail_next_sync = false;
        self.crashed = false;
        self.stats.crashes += 1;
        self.stats.entries_kept += keep as u64;
        self.stats.entries_lost += (pending - keep) as u64;
        self.stats.torn_writes += u64::from(torn.is_some());
        Ok(CrashReport {
            unsynced_entries: pending,
            kept_entries: keep,
            torn,
            hard_state_kept,
        })
    }

    fn alive(&self) -> Result<(), FaultyStorageError<S::Error>> {
        if self.crashed {
            Err(FaultyStorageError::Crashed)
        } else {
            Ok(())
        }
    }

    /// Writes the journal's entries to the wrapped storage (not synced) and empties it.
    fn write_back(&mut self) -> Result<(), S::Error> {
        let first = self.journal.first_index();
        for e in self.journal.iter(first, Index::MAX) {
            self.inner.append(e)?;
        }
        self.journal.reset(self.inner.last_index() + 1);
        Ok(())
    }

    fn journal_holds(&self, index: Index) -> bool {
        !self.journal.is_empty() && index >= self.journal.first_index()
    }
}

impl<S: Storage, const BYTES: usize, const ENTRIES: usize> Storage
    for FaultyStorage<S, BYTES, ENTRIES>
{
    type Error = FaultyStorageError<S::Error>;

    fn initial_state(&self) -> Result<InitialState, Self::Error> {
        let mut init = self
            .inner
            .initial_state()
            .map_err(FaultyStorageError::Inner)?;
        if let Some(hs) = self.hard_state {
            init.hard_state = hs;
        }
        Ok(init)
    }

    fn first_index(&self) -> Index {
        self.inner.first_index()
    }

    fn last_index(&self) -> Index {
        if self.journal.is_empty() {
            self.inner.last_index()
        } else {
            self.journal.last_index()
        }
    }

    fn term(&self, index: Index) -> Result<Term, Self::Error> {
        if self.journal_holds(index) {
            return self
                .journal
                .term(index)
                .ok_or(FaultyStorageError::Range(StorageErrorKind::Unavailable));
        }
        self.inner.term(index).map_err(FaultyStorageError::Inner)
    }

    fn entries(
        &self,
        lo: Index,
        hi: Index,
        bytes_max: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> bool,
    ) -> Result<(), Self::Error> {
        if hi > self.last_index() + 1 {
            return Err(FaultyStorageError::Range(StorageErrorKind::Unavailable));
        }
        let split = if self.journal.is_empty() {
            Index::MAX
        } else {
            self.journal.first_index()
        };
        let mut bytes = 0usize;
        let mut going = true;
        if lo < split {
            self.inner
                .entries(lo, hi.min(split), bytes_max, &mut |e| {
                    bytes += e.data.len();
                    going = visit(e) && bytes <= bytes_max;
                    going
                })
                .map_err(FaultyStorageError::Inner)?;
        }
        if split != Index::MAX {
            for e in self.journal.iter(lo.max(split), hi) {
                if !going {
                    break;
                }
                bytes += e.data.len();
                going = visit(e) && bytes <= bytes_max;
            }
        }
        Ok(())
    }

    fn append(&mut self, entry: Entry<'_>) -> Result<(), Self::Error> {
        self.alive()?;
        let snapshot = self.inner.first_index() - 1;
        if entry.index <= snapshot || entry.index > self.last_index() + 1 {
            return Err(FaultyStorageError::Range(StorageErrorKind::Unavailable));
        }
        if self.journal_holds(entry.index) {
            self.journal.truncate_from(entry.index);
        } else {
            // Below the journal (or it is empty): the new entry supersedes the wrapped
            // storage's entries from its index on; they are replaced when the journal is
            // written to the disk.
            self.journal.reset(entry.index);
        }
        if self
            .journal
            .push(entry.term, entry.kind, entry.data)
            .is_err()
        {
            // Journal full: write the older part back early, then start a new journal.
            self.stats.early_writebacks += 1;
            self.journal.truncate_from(entry.index);
            self.write_back().map_err(FaultyStorageError::Inner)?;
            self.journal.reset(entry.index);
            self.journal
                .push(entry.term, entry.kind, entry.data)
                .map_err(|_| FaultyStorageError::Range(StorageErrorKind::Full))?;
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), Self::Error> {
        self.alive()?;
        self.hard_state = Some(*hard_state);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.alive()?;
        if self.fail_next_sync {
            self.fail_next_sync = false;
            self.crashed = true;
            self.stats.failed_syncs += 1;
            return Err(FaultyStorageError::Crashed);
        }
        self.write_back().map_err(FaultyStorageError::Inner)?;
        if let Some(hs) = self.hard_state.take() {
            self.inner
                .set_hard_state(&hs)
                .map_err(FaultyStorageError::Inner)?;
        }
        self.inner.sync().map_err(FaultyStorageError::Inner)?;
        self.stats.syncs += 1;
        Ok(())
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        self.inner.snapshot_meta()
    }

    fn snapshot_len(&self) -> u64 {
        self.inner.snapshot_len()
    }

    fn read_snapshot(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.inner
            .read_snapshot(offset, buf)
            .map_err(FaultyStorageError::Inner)
    }

    fn begin_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), Self::Error> {
        self.alive()?;
        self.inner
            .begin_snapshot(meta)
            .map_err(FaultyStorageError::Inner)
    }

    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        self.alive()?;
        self.inner
            .write_snapshot(data)
            .map_err(FaultyStorageError::Inner)
    }

    /// Durable when it returns, as the contract says. Un-synced entries are written back
    /// first, so the wrapped storage decides which of them the snapshot keeps.
    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        self.alive()?;
        self.write_back().map_err(FaultyStorageError::Inner)?;
        self.inner
            .finish_snapshot()
            .map_err(FaultyStorageError::Inner)?;
        self.journal.reset(self.inner.last_index() + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::SplitMix64;
    use crate::mem_storage::MemStorage;
    use crate::types::EntryKind;

    type Disk = MemStorage<4096, 64>;
    type Faulty = FaultyStorage<Disk, 512, 8>;

    fn e(index: Index, term: Term, data: &[u8]) -> Entry<'_> {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data,
        }
    }

    fn terms(s: &impl Storage) -> heapless::Vec<Term, 64> {
        let mut v = heapless::Vec::new();
        for i in s.first_index()..=s.last_index() {
            v.push(s.term(i).unwrap()).unwrap();
        }
        v
    }

    fn hs(term: Term) -> HardState {
        HardState {
            term,
            vote: Some(1),
            commit: 0,
        }
    }

    #[test]
    fn synced_writes_survive_any_crash() {
        for seed in 0..200 {
            let mut s = Faulty::new(Disk::new());
            for i in 1..=3 {
                s.append(e(i, 1, b"abc")).unwrap();
            }
            s.set_hard_state(&hs(1)).unwrap();
            s.sync().unwrap();
            for i in 4..=6 {
                s.append(e(i, 2, b"d")).unwrap();
            }
            s.set_hard_state(&hs(2)).unwrap();
            assert_eq!(s.last_index(), 6);
            assert_eq!(
                s.inner().last_index(),
                3,
                "nothing reaches the disk before sync"
            );
            let r = s.crash(&mut SplitMix64::new(seed)).unwrap();
            assert_eq!(r.unsynced_entries, 3);
            assert_eq!(s.last_index(), 3 + r.kept_entries as Index);
            assert_eq!(&terms(&s)[..3], &[1, 1, 1]);
            let term = s.initial_state().unwrap().hard_state.term;
            assert_eq!(
                term,
                if r.hard_state_kept == Some(true) {
                    2
                } else {
                    1
                }
            );
            if let Some(t) = r.torn {
                assert_eq!(t, 4 + r.kept_entries as Index);
            }
        }
    }

    #[test]
    fn crashes_cover_every_outcome() {
        let (mut kept, mut torn, mut hs_kept) = ([false; 4], false, [false; 2]);
        for seed in 0..500 {
            let mut s = Faulty::new(Disk::new());
            for i in 1..=3 {
                s.append(e(i, 1, b"x")).unwrap();
            }
            s.set_hard_state(&hs(1)).unwrap();
            let r = s.crash(&mut SplitMix64::new(seed)).unwrap();
            kept[r.kept_entries] = true;
            torn |= r.torn.is_some();
            hs_kept[usize::from(r.hard_state_kept.unwrap())] = true;
        }
        assert_eq!(kept, [true; 4]);
        assert!(torn);
        assert_eq!(hs_kept, [true; 2]);
    }

    #[test]
    fn conflicting_suffix_is_replaced_only_when_synced() {
        let mut s = Faulty::new(Disk::new());
        for i in 1..=4 {
            s.append(e(i, 1, b"old")).unwrap();
        }
        s.sync().unwrap();
        s.append(e(3, 2, b"new")).unwrap();
        assert_eq!(terms(&s).as_slice(), &[1, 1, 2]);
        let mut seen = heapless::Vec::<u8, 16>::new();
        s.entries(1, 4, usize::MAX, &mut |e| {
            seen.extend_from_slice(&e.data[..1]).unwrap();
            true
        })
        .unwrap();
        assert_eq!(seen.as_slice(), b"oon");
        // A crash that keeps nothing leaves the old suffix: the truncation was never written.
        let mut rng = SplitMix64::new(0);
        loop {
            let mut t = Faulty::new(Disk::new());
            for i in 1..=4 {
                t.append(e(i, 1, b"old")).unwrap();
            }
            t.sync().unwrap();
            t.append(e(3, 2, b"new")).unwrap();
            if t.crash(&mut rng).unwrap().kept_entries == 0 {
                assert_eq!(terms(&t).as_slice(), &[1, 1, 1, 1]);
                break;
            }
        }
        s.sync().unwrap();
        assert_eq!(terms(s.inner()).as_slice(), &[1, 1, 2]);
    }

    #[test]
    fn failed_sync_refuses_everything_until_the_crash() {
        let mut s = Faulty::new(Disk::new());
        s.append(e(1, 1, b"a")).unwrap();
        s.fail_next_sync();
        assert_eq!(s.sync(), Err(FaultyStorageError::Crashed));
        assert!(s.is_crashed());
        assert_eq!(
            s.append(e(2, 1, b"b")).unwrap_err().kind(),
            StorageErrorKind::Io
        );
        assert_eq!(s.sync(), Err(FaultyStorageError::Crashed));
        s.crash(&mut SplitMix64::new(3)).unwrap();
        assert!(!s.is_crashed());
        s.append(e(s.last_index() + 1, 1, b"c")).unwrap();
        s.sync().unwrap();
        assert_eq!(s.stats().failed_syncs, 1);
    }

    #[test]
    fn a_full_journal_writes_back_early() {
        let mut s = Faulty::new(Disk::new());
        for i in 1..=20 {
            s.append(e(i, 1, b"0123456789")).unwrap();
        }
        assert!(s.stats().early_writebacks > 0);
        assert_eq!(terms(&s).len(), 20);
        s.sync().unwrap();
        assert_eq!(s.inner().last_index(), 20);
    }

    #[test]
    fn reads_respect_the_byte_limit_across_the_split() {
        let mut s = Faulty::new(Disk::new());
        for i in 1..=3 {
            s.append(e(i, 1, b"0123456789")).unwrap();
        }
        s.sync().unwrap();
        for i in 4..=6 {
            s.append(e(i, 1, b"0123456789")).unwrap();
        }
        let mut n = 0;
        s.entries(2, 7, 25, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 3);
        n = 0;
        s.entries(1, 7, usize::MAX, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 6);
        assert!(s.entries(1, 8, usize::MAX, &mut |_| true).is_err());
    }
}
