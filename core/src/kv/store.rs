//! [`KvStore`]: the command logic, written once over any [`KvMap`].

use heapless::Vec;

use super::command::{Command, Request, Response, ScanPage, Value};
use super::map::{KvMap, MapFull};
use super::session::{Admit, Outcome, SessionTable};
use super::snapshot::{emit, Reassembler, Record, VERSION};
use super::{KvError, SCAN_PAIRS_MAX};
use crate::state_machine::{SnapshotError, StateMachine};
use crate::types::{Entry, Index, SnapshotMeta};

/// The replicated key-value state machine: a map `M` plus a table of at most `SESSIONS` client
/// sessions.
///
/// # Driving it
///
/// - Give it every committed normal entry exactly once, in log order, through
///   [`StateMachine::apply`] (or [`KvStore::apply_entry`]); send the response to the client if
///   this node proposed the entry. An entry whose index is not above
///   [`KvStore::applied_index`] is refused with [`KvError::AlreadyApplied`] and changes
///   nothing.
/// - For a linearizable read without a log entry, run a ReadIndex round, wait until the
///   applied index reaches the read index, then call [`KvStore::query`] (or
///   [`KvStore::get`] / [`KvStore::scan`]). Queries take `&self` and never touch sessions.
///
/// Every answer depends only on the applied entries, so all nodes answer alike (given the same
/// `M` capacities and `SESSIONS`; see [`crate::kv`]).
#[derive(Clone, Debug)]
pub struct KvStore<M, const SESSIONS: usize> {
    map: M,
    sessions: SessionTable<SESSIONS>,
    /// Index of the last entry applied (0 before any). Invariant: only grows, except when a
    /// snapshot replaces the whole state.
    applied: Index,
    /// A restore from a snapshot in progress, if `restore.begun`. Not an `Option`: `None`
    /// would be stored in a spare value of one of its `bool`s (a niche), so an empty store
    /// would not be all zero bytes, and a `static` holding one would go to `.data`, copied
    /// from flash at reset, instead of `.bss`.
    restore: Restore,
}

/// Progress of a restore: the partial record and what the stream has said so far.
#[derive(Clone, Debug, Default)]
struct Restore {
    /// `restore_begin` was called and `restore_end` not yet.
    begun: bool,
    records: Reassembler,
    header: Option<Index>,
    pairs: u64,
    sessions: u64,
    ended: bool,
}

impl Restore {
    const fn new() -> Self {
        Self {
            begun: false,
            records: Reassembler::new(),
            header: None,
            pairs: 0,
            sessions: 0,
            ended: false,
        }
    }
}

impl<M: KvMap + Default, const SESSIONS: usize> Default for KvStore<M, SESSIONS> {
    fn default() -> Self {
        Self::new(M::default())
    }
}

impl<M: KvMap, const SESSIONS: usize> KvStore<M, SESSIONS> {
    /// A store over `map` (which should be empty: its pairs count as applied before index 1),
    /// with no session and nothing applied.
    pub const fn new(map: M) -> Self {
        Self {
            map,
            sessions: SessionTable::new(),
            applied: 0,
            restore: Restore::new(),
        }
    }

    /// The map.
    pub fn map(&self) -> &M {
        &self.map
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable<SESSIONS> {
        &self.sessions
    }

    /// Index of the last entry applied (0 before any).
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// Applies entry `index` carrying `data`, an encoded [`Request`]. Data that does not decode
    /// is answered with [`KvError::Malformed`] (and still counts as applied): entries come from
    /// the network and must never make a node panic.
    pub fn apply_entry(&mut self, index: Index, data: &[u8]) -> Response {
        match Request::decode(data) {
            Ok(req) => self.apply_request(index, &req),
            Err(_) => match self.advance(index) {
                Ok(()) => Response::Err(KvError::Malformed),
                Err(e) => Response::Err(e),
            },
        }
    }

    /// Applies an already decoded request carried by entry `index`, with exactly-once
    /// semantics (see [`crate::kv::session`]).
    pub fn apply_request(&mut self, index: Index, req: &Request<'_>) -> Response {
        if let Err(e) = self.advance(index) {
            return Response::Err(e);
        }
        match self.sessions.admit(req.client_id, req.seq, index) {
            Err(e) => Response::Err(e),
            Ok(Admit::Duplicate(outcome)) => match outcome.response() {
                Some(r) => r,
                None => self.query(&req.command),
            },
            Ok(Admit::Apply) => {
                let (response, outcome) = self.execute(&req.command);
                self.sessions.record(req.client_id, req.seq, index, outcome);
                response
            }
        }
    }

    fn advance(&mut self, index: Index) -> Result<(), KvError> {
        if index <= self.applied {
            return Err(KvError::AlreadyApplied);
        }
        self.applied = index;
        Ok(())
    }

    /// Runs a command against the map; returns the answer and what the session remembers.
    fn execute(&mut self, cmd: &Command<'_>) -> (Response, Outcome) {
        if cmd.is_read_only() {
            return (self.query(cmd), Outcome::Read);
        }
        let outcome = match cmd.check_limits() {
            Err(e) => Outcome::Err(e),
            Ok(()) => match *cmd {
                Command::Put { key, value } => self.put(key, value),
                Command::Delete { key } => Outcome::Deleted {
                    existed: self.map.remove(key),
                },
                Command::CompareAndSwap { key, expected, new } => {
                    if self.map.get(key) != expected {
                        Outcome::CasMismatch
                    } else if let Some(value) = new {
                        self.put(key, value)
                    } else {
                        self.map.remove(key);
                        Outcome::Ok
                    }
                }
                // Read-only commands were handled above.
                Command::Get { .. } | Command::Scan { .. } => Outcome::Read,
            },
        };
        // `Read` never reaches here, so there is always a response.
        let response = outcome
            .response()
            .unwrap_or(Response::Err(KvError::NotReadOnly));
        (response, outcome)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Outcome {
        match self.map.insert(key, value) {
            Ok(()) => Outcome::Ok,
            Err(MapFull::Keys) => Outcome::Err(KvError::KeysFull),
            Err(MapFull::Bytes) => Outcome::Err(KvError::NoSpace),
        }
    }

    /// Answers a read-only command from the current state, without touching sessions or the
    /// applied index: for reads served through ReadIndex. A command that writes gets
    /// [`KvError::NotReadOnly`].
    pub fn query(&self, cmd: &Command<'_>) -> Response {
        if let Err(e) = cmd.check_limits() {
            return Response::Err(e);
        }
        match *cmd {
            Command::Get { key } => match self.get(key) {
                None => Response::Value(None),
                // Cannot fail: the store never accepts a value above the limit.
                Some(v) => match Value::from_slice(v) {
                    Ok(v) => Response::Value(Some(v)),
                    Err(_) => Response::Err(KvError::ValueTooLong),
                },
            },
            Command::Scan {
                prefix,
                start_after,
                limit,
            } => match self.scan(prefix, start_after, limit) {
                Ok(page) => Response::Page(page),
                Err(e) => Response::Err(e),
            },
            Command::Put { .. } | Command::Delete { .. } | Command::CompareAndSwap { .. } => {
                Response::Err(KvError::NotReadOnly)
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key)
    }

    /// One page of the keys starting with `prefix` and strictly after `start_after`, in
    /// ascending byte order, with their values (see [`Command::Scan`] for `limit` and the page
    /// bounds). The result does not depend on the map's internal order.
    ///
    /// Cost: with a sorted map, a binary search plus the page; otherwise one pass over all keys
    /// keeping the `limit + 1` smallest candidates (so also usable to walk the whole store in
    /// order, page by page, for a snapshot).
    pub fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u16,
    ) -> Result<ScanPage, KvError> {
        Command::Scan {
            prefix,
            start_after,
            limit,
        }
        .check_limits()?;
        let want = match usize::from(limit) {
            0 => SCAN_PAIRS_MAX,
            n => n.min(SCAN_PAIRS_MAX),
        };
        // One candidate more than the page needs tells whether more keys follow.
        let keep = want + 1;
        let mut best: Vec<(&[u8], &[u8]), { SCAN_PAIRS_MAX + 1 }> = Vec::new();
        let from = match start_after {
            Some(after) if after > prefix => after,
            _ => prefix,
        };
        for (k, v) in self.map.iter_from(from) {
            if start_after.is_some_and(|after| k <= after) {
                continue;
            }
            if !k.starts_with(prefix) {
                // In a sorted walk from `prefix` or later, the first key past the prefix's
                // range ends it.
                if M::SORTED && k > prefix {
                    break;
                }
                continue;
            }
            if best.len() == keep {
                if M::SORTED {
                    break;
                }
                if best.last().is_some_and(|&(largest, _)| k >= largest) {
                    continue;
                }
                best.pop();
            }
            // Keys are unique, so the search never finds `k`; `Err` is the insertion point.
            let at = best
                .binary_search_by(|&(x, _)| x.cmp(k))
                .unwrap_or_else(|i| i);
            // Cannot fail: there is room for one more (checked above).
            let _ = best.insert(at, (k, v));
        }
        let mut page = ScanPage::new();
        let mut taken = 0;
        for &(k, v) in best.iter().take(want) {
            if !page.push(k, v) {
                break;
            }
            taken += 1;
        }
        page.set_more(taken < best.len());
        Ok(page)
    }
}

impl<M: KvMap, const SESSIONS: usize> StateMachine for KvStore<M, SESSIONS> {
    type Response = Response;

    fn apply(&mut self, entry: &Entry<'_>) -> Response {
        self.apply_entry(entry.index, entry.data)
    }

    fn write_snapshot(
        &self,
        out: &mut dyn FnMut(&[u8]) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        let header = Record::Header {
            version: VERSION,
            applied: self.applied,
        };
        emit(&header, out)?;
        let mut pairs = 0u64;
        // Every pair, in whatever order the map keeps them: restoring inserts them one by one,
        // so order does not matter.
        for (key, value) in self.map.iter_from(&[]) {
            emit(&Record::Pair { key, value }, out)?;
            pairs += 1;
        }
        let mut sessions = 0u64;
        for s in self.sessions.iter() {
            emit(&Record::Session(*s), out)?;
            sessions += 1;
        }
        emit(&Record::End { pairs, sessions }, out)
    }

    fn restore_begin(&mut self) -> Result<(), SnapshotError> {
        self.map.clear();
        self.sessions.clear();
        self.applied = 0;
        self.restore = Restore {
            begun: true,
            ..Restore::new()
        };
        Ok(())
    }

    fn restore_chunk(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        if !self.restore.begun {
            return Err(SnapshotError::Invalid(
                "restore_chunk without restore_begin",
            ));
        }
        let r = &mut self.restore;
        let (map, sessions) = (&mut self.map, &mut self.sessions);
        let Restore {
            begun: _,
            records,
            header,
            pairs,
            sessions: session_count,
            ended,
        } = r;
        records.feed(data, &mut |record| {
            if *ended {
                return Err(SnapshotError::Invalid("data after the end record"));
            }
            match record {
                Record::Header { version, applied } => {
                    if version != VERSION || header.is_some() {
                        return Err(SnapshotError::Invalid("bad or repeated header"));
                    }
                    *header = Some(applied);
                }
                _ if header.is_none() => return Err(SnapshotError::Invalid("no header first")),
                Record::Pair { key, value } => {
                    map.insert(key, value).map_err(|_| SnapshotError::Full)?;
                    *pairs += 1;
                }
                Record::Session(s) => {
                    sessions.push_restored(s).map_err(|()| {
                        SnapshotError::Invalid("session out of order or table full")
                    })?;
                    *session_count += 1;
                }
                Record::End {
                    pairs: p,
                    sessions: n,
                } => {
                    if (p, n) != (*pairs, *session_count) {
                        return Err(SnapshotError::Invalid("counts do not match the records"));
                    }
                    *ended = true;
                }
            }
            Ok(())
        })
    }

    fn restore_end(&mut self, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        if !self.restore.begun {
            return Err(SnapshotError::Invalid("restore_end without restore_begin"));
        }
        let r = core::mem::replace(&mut self.restore, Restore::new());
        if !r.ended || !r.records.is_empty() {
            return Err(SnapshotError::Invalid("snapshot stream is truncated"));
        }
        // The store never sees no-op and configuration entries (`StateMachine::apply` is
        // only given application entries), so a snapshot taken when the last applied entry
        // was one of those records the store's own last index, below the snapshot's index.
        // The entries in between changed nothing here. A state *ahead* of the snapshot's index
        // is impossible and refused.
        if r.header.is_none_or(|h| h > meta.index) {
            return Err(SnapshotError::Invalid(
                "snapshot taken at another index than its metadata",
            ));
        }
        self.applied = meta.index;
        Ok(())
    }
}
