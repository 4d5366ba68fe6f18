//! The simulated disk: an unbounded, heap-backed [`Storage`] that also feeds the log-matching
//! check.
//!
//! It is the "disk" under core's [`tinyraft::fault::FaultyStorage`], which keeps un-synced
//! writes away from it until they are synced (or a crash lets part of them through). So every
//! entry this storage ever holds is one the node made durable, and every append is a chance to
//! check the Raft paper's Log Matching Property (§5.3) across the whole cluster at O(1) cost:
//! each stored entry carries a hash chained over all entries before it, and two entries with
//! the same index and term must have the same chain hash, on any node, at any time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tinyraft::{
    Entry, EntryKind, HardState, Index, InitialState, Membership, SnapshotMeta, Storage,
    StorageError, StorageErrorKind, Term,
};

/// The error of [`SimStorage`]: only its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimStorageError(pub StorageErrorKind);

impl StorageError for SimStorageError {
    fn kind(&self) -> StorageErrorKind {
        self.0
    }
}

/// FNV-1a over a few fields: a fixed, fast hash, so runs are reproducible.
pub fn hash_entry(prev: u64, term: Term, kind: EntryKind, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ prev.rotate_left(17);
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for b in term.to_le_bytes() {
        eat(b);
    }
    eat(kind as u8);
    for &b in data {
        eat(b);
    }
    h
}

/// Every durable `(index, term)` any node ever stored, with its chain hash.
#[derive(Default, Debug)]
pub struct LogRegistry {
    chains: HashMap<(Index, Term), u64>,
    /// Breaches of log matching, in the order found.
    pub violations: Vec<String>,
}

/// A handle to the registry shared by the disks of one simulation.
pub type SharedRegistry = Rc<RefCell<LogRegistry>>;

#[derive(Clone, Debug)]
struct Stored {
    term: Term,
    kind: EntryKind,
    data: Vec<u8>,
    chain: u64,
}

/// Heap-backed storage for one simulated node.
#[derive(Debug)]
pub struct SimStorage {
    node: u64,
    /// Entry `first + i` is `entries[i]`.
    entries: Vec<Stored>,
    first: Index,
    snapshot: SnapshotMeta,
    snapshot_chain: u64,
    snapshot_data: Vec<u8>,
    /// A snapshot being written: its meta and data so far.
    incoming: Option<(SnapshotMeta, Vec<u8>)>,
    hard_state: HardState,
    membership: Option<Membership>,
    registry: Option<SharedRegistry>,
    /// Syncs so far.
    pub syncs: u64,
}

impl Default for SimStorage {
    /// An empty disk outside any cluster (no membership, no registry).
    fn default() -> Self {
        Self {
            node: 0,
            entries: Vec::new(),
            first: 1,
            snapshot: SnapshotMeta::default(),
            snapshot_chain: 0,
            snapshot_data: Vec::new(),
            incoming: None,
            hard_state: HardState::default(),
            membership: None,
            registry: None,
            syncs: 0,
        }
    }
}

impl SimStorage {
    /// An empty disk for node `node`, reporting to `registry`: of a new cluster of
    /// `membership`, or with None of a node that joins an existing cluster (it learns the
    /// configuration from the leader's log or snapshot).
    pub fn new(node: u64, membership: Option<Membership>, registry: SharedRegistry) -> Self {
        Self {
            node,
            entries: Vec::new(),
            first: 1,
            snapshot: SnapshotMeta::default(),
            snapshot_chain: 0,
            snapshot_data: Vec::new(),
            incoming: None,
            hard_state: HardState::default(),
            membership,
            registry: Some(registry),
            syncs: 0,
        }
    }

    /// The hard state on disk.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Drops every entry after `index`, synced or not: a disk that breaks its promise. Only for
    /// checking that the simulator notices (see `Scenario::lying_disk`).
    pub fn forget_after(&mut self, index: Index) {
        if index + 1 >= self.first {
            self.entries.truncate((index + 1 - self.first) as usize);
        }
    }

    /// The chain hash of the entry at `index` (of the snapshot point for `first_index() - 1`).
    pub fn chain(&self, index: Index) -> Option<u64> {
        if index + 1 == self.first {
            return Some(self.snapshot_chain);
        }
        let i = index.checked_sub(self.first)?;
        self.entries.get(i as usize).map(|e| e.chain)
    }
}

impl Storage for SimStorage {
    type Error = SimStorageError;

    fn initial_state(&self) -> Result<InitialState, Self::Error> {
        Ok(InitialState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
        })
    }

    fn first_index(&self) -> Index {
        self.first
    }

    fn last_index(&self) -> Index {
        self.first + self.entries.len() as Index - 1
    }

    fn term(&self, index: Index) -> Result<Term, Self::Error> {
        if index + 1 == self.first {
            return Ok(self.snapshot.term);
        }
        if index < self.first {
            return Err(SimStorageError(StorageErrorKind::Compacted));
        }
        self.entries
            .get((index - self.first) as usize)
            .map(|e| e.term)
            .ok_or(SimStorageError(StorageErrorKind::Unavailable))
    }

    fn entries(
        &self,
        lo: Index,
        hi: Index,
        bytes_max: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> bool,
    ) -> Result<(), Self::Error> {
        if lo < self.first {
            return Err(SimStorageError(StorageErrorKind::Compacted));
        }
        if hi > self.last_index() + 1 {
            return Err(SimStorageError(StorageErrorKind::Unavailable));
        }
        let mut bytes = 0usize;
        for index in lo..hi {
            let e = &self.entries[(index - self.first) as usize];
            bytes += e.data.len();
            let entry = Entry {
                term: e.term,
                index,
                kind: e.kind,
                data: &e.data,
            };
            if !visit(entry) || bytes > bytes_max {
                break;
            }
        }
        Ok(())
    }

    fn append(&mut self, entry: Entry<'_>) -> Result<(), Self::Error> {
        if entry.index < self.first || entry.index > self.last_index() + 1 {
            return Err(SimStorageError(StorageErrorKind::Unavailable));
        }
        self.entries.truncate((entry.index - self.first) as usize);
        let prev = self.chain(entry.index - 1).unwrap_or(0);
        let chain = hash_entry(prev, entry.term, entry.kind, entry.data);
        if let Some(reg) = &self.registry {
            let mut reg = reg.borrow_mut();
            let known = *reg.chains.entry((entry.index, entry.term)).or_insert(chain);
            if known != chain {
                let v = format!(
                    "log matching (§5.3): node {} stored entry {} of term {} whose log differs \
                     from another node's entry {} of term {} (chain hash {chain:x} vs {known:x})",
                    self.node, entry.index, entry.term, entry.index, entry.term
                );
                reg.violations.push(v);
            }
        }
        self.entries.push(Stored {
            term: entry.term,
            kind: entry.kind,
            data: entry.data.to_vec(),
            chain,
        });
        Ok(())
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
        self.snapshot_data.len() as u64
    }

    fn read_snapshot(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let data = &self.snapshot_data;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn begin_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), Self::Error> {
        self.incoming = Some((meta.clone(), Vec::new()));
        Ok(())
    }

    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        match &mut self.incoming {
            Some((_, buf)) => {
                buf.extend_from_slice(data);
                Ok(())
            }
            None => Err(SimStorageError(StorageErrorKind::Unavailable)),
        }
    }

    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        let (meta, data) = self
            .incoming
            .take()
            .ok_or(SimStorageError(StorageErrorKind::Unavailable))?;
        let index = meta.index;
        if index + 1 < self.first {
            return Err(SimStorageError(StorageErrorKind::Compacted));
        }
        // The chain hash at the snapshot point: ours if we hold the entry, otherwise the one
        // the node that stored it registered (a snapshot only covers committed entries).
        let chain = if self.term(index).ok() == Some(meta.term) {
            let chain = self.chain(index).unwrap_or(0);
            self.entries.drain(..(index + 1 - self.first) as usize);
            chain
        } else {
            self.entries.clear();
            self.registry
                .as_ref()
                .and_then(|r| r.borrow().chains.get(&(index, meta.term)).copied())
                .unwrap_or(0)
        };
        self.first = index + 1;
        self.snapshot_chain = chain;
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.membership = Some(meta.membership.clone());
        self.snapshot = meta;
        self.snapshot_data = data;
        Ok(())
    }
}
