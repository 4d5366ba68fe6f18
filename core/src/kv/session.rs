//! Client sessions: exactly-once application of retried requests (Raft dissertation §6.3).
//!
//! A client that gets no answer resends its request. The first copy may have been committed
//! already (the answer was lost, or the leader crashed after committing), so without help a
//! `Put` could be applied twice and overwrite a later write. The store therefore remembers, per
//! client, the `seq` of the last request it applied and a compact [`Outcome`] of it, in a table
//! of at most `N` sessions. Applying a request with session `(client_id, seq)`:
//!
//! | table holds for `client_id` | `seq`            | result                                        |
//! |-----------------------------|------------------|-----------------------------------------------|
//! | (either)                    | 0, or client 0   | [`KvError::InvalidSession`], not applied       |
//! | nothing                     | 1                | applied; opens the session                    |
//! | nothing                     | > 1              | [`KvError::SessionExpired`], not applied       |
//! | `last_seq`                  | > `last_seq`     | applied; the session now remembers `seq`      |
//! | `last_seq`                  | == `last_seq`    | answered from the table, **not** re-applied   |
//! | `last_seq`                  | < `last_seq`     | [`KvError::Stale`], not applied                |
//!
//! The table does not compare commands: a retransmission must be the same request, byte for
//! byte, as the client's rules in [`crate::kv::Request`] require.
//!
//! A retransmitted read (`Get`, `Scan`) is the exception to "answered from the table": its
//! outcome is [`Outcome::Read`] and it is executed again. A read changes nothing, and its new
//! answer reflects a state within the request's lifetime, so it is still linearizable; this
//! keeps a session slot small (no value or page stored).
//!
//! # Eviction
//!
//! When a new client arrives (seq 1) and the table is full, the session **least recently used
//! by log index** is evicted: the one whose last request (applied or answered from the table)
//! has the lowest entry index. This depends only on the log, so every node evicts the same
//! session. The evicted client's next request gets [`KvError::SessionExpired`] and is not
//! applied; it must start over with a fresh `client_id`. Size the table for the number of
//! clients active at once: a burst of more new clients than `N` expires the quietest ones.
//!
//! One gap remains, as in the dissertation: if a client's *first* request (seq 1) is applied,
//! its session is evicted, and the request is then resent, it looks like a new client and is
//! applied again. That needs `N` other new clients between the two copies.
//!
//! Sessions are kept sorted by `client_id`, so [`SessionTable::iter`] is the same on every
//! node (a snapshot can write it out as is).

use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::command::Response;
use super::KvError;
use crate::types::Index;

/// What a session remembers of its last applied request: enough to answer a retransmission
/// exactly as the original was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Answered [`Response::Ok`].
    Ok,
    /// Answered [`Response::Deleted`].
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// Answered [`Response::CasMismatch`].
    CasMismatch,
    /// A read-only command: a retransmission is executed again (see the module docs).
    Read,
    /// Answered [`Response::Err`].
    Err(KvError),
}

impl Outcome {
    /// The response this outcome stands for; `None` for [`Outcome::Read`], which must be
    /// executed again.
    pub fn response(self) -> Option<Response> {
        Some(match self {
            Outcome::Ok => Response::Ok,
            Outcome::Deleted { existed } => Response::Deleted { existed },
            Outcome::CasMismatch => Response::CasMismatch,
            Outcome::Read => return None,
            Outcome::Err(e) => Response::Err(e),
        })
    }
}

/// One client's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The client.
    pub client_id: u64,
    /// `seq` of the last request applied for this client.
    pub last_seq: u64,
    /// Index of the entry that last used this session (applied it or answered a
    /// retransmission from it): the eviction order.
    pub last_index: Index,
    /// How that request was answered.
    pub outcome: Outcome,
}

/// What the table says about an incoming request that it lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A new request: execute it, then [`SessionTable::record`] it.
    Apply,
    /// A retransmission of the last request; answer from this outcome.
    Duplicate(Outcome),
}

/// At most `N` client sessions. RAM: 32 bytes per session slot plus a word.
#[derive(Clone, Debug)]
pub struct SessionTable<const N: usize> {
    /// Invariant: strictly ascending by `client_id`; no `client_id` or `last_seq` is 0.
    sessions: Vec<Session, N>,
}

impl<const N: usize> Default for SessionTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SessionTable<N> {
    const HAS_ROOM: () = assert!(N >= 1, "a session table needs at least one slot");

    /// An empty table.
    pub const fn new() -> Self {
        let () = Self::HAS_ROOM;
        Self {
            sessions: Vec::new(),
        }
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True if no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Most sessions the table holds (`N`).
    pub fn capacity(&self) -> usize {
        N
    }

    /// The session of `client_id`, if open.
    pub fn get(&self, client_id: u64) -> Option<&Session> {
        self.find(client_id).ok().map(|i| &self.sessions[i])
    }

    /// The open sessions in ascending `client_id` order.
    pub fn iter(&self) -> impl Iterator<Item = &Session> + '_ {
        self.sessions.iter()
    }

    fn find(&self, client_id: u64) -> Result<usize, usize> {
        self.sessions
            .binary_search_by_key(&client_id, |s| s.client_id)
    }

    /// Decides what to do with request `(client_id, seq)` carried by entry `index` (see the
    /// table in the module docs). A retransmission counts as a use of the session.
    pub(crate) fn admit(
        &mut self,
        client_id: u64,
        seq: u64,
        index: Index,
    ) -> Result<Admit, KvError> {
        if client_id == 0 || seq == 0 {
            return Err(KvError::InvalidSession);
        }
        match self.find(client_id) {
            Err(_) if seq == 1 => Ok(Admit::Apply),
            Err(_) => Err(KvError::SessionExpired),
            Ok(i) => {
                let s = &mut self.sessions[i];
                if seq > s.last_seq {
                    Ok(Admit::Apply)
                } else if seq == s.last_seq {
                    s.last_index = index;
                    Ok(Admit::Duplicate(s.outcome))
                } else {
                    Err(KvError::Stale)
                }
            }
        }
    }

    /// Remembers that request `(client_id, seq)` of entry `index` was applied with `outcome`,
    /// opening the session if needed. If the table is full, the least recently used session is
    /// evicted first; its client id is returned.
    pub(crate) fn record(
        &mut self,
        client_id: u64,
        seq: u64,
        index: Index,
        outcome: Outcome,
    ) -> Option<u64> {
        debug_assert!(client_id != 0 && seq != 0);
        let session = Session {
            client_id,
            last_seq: seq,
            last_index: index,
            outcome,
        };
        let mut evicted = None;
        match self.find(client_id) {
            Ok(i) => self.sessions[i] = session,
            Err(mut i) => {
                if self.sessions.is_full() {
                    // Ties cannot happen (each entry index is used by one request), but break
                    // them by client id anyway so the choice never depends on table layout.
                    let lru = self
                        .sessions
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| (s.last_index, s.client_id))
                        .map(|(j, _)| j);
                    if let Some(j) = lru {
                        evicted = Some(self.sessions.remove(j).client_id);
                        if j < i {
                            i -= 1;
                        }
                    }
                }
                // Cannot fail: there is room now (N >= 1).
                let inserted = self.sessions.insert(i, session).is_ok();
                debug_assert!(inserted);
            }
        }
        debug_assert!(self.invariants_hold());
        evicted
    }

    /// Empties the table (a snapshot is about to replace it).
    pub(crate) fn clear(&mut self) {
        self.sessions.clear();
    }

    /// Adds a session read from a snapshot. Sessions must come in ascending client id order,
    /// as [`SessionTable::iter`] writes them; anything else (or a full table) is refused.
    pub(crate) fn push_restored(&mut self, s: Session) -> Result<(), ()> {
        let ascending = self
            .sessions
            .last()
            .is_none_or(|l| l.client_id < s.client_id);
        if !ascending || s.client_id == 0 || s.last_seq == 0 {
            return Err(());
        }
        self.sessions.push(s).map_err(|_| ())
    }

    fn invariants_hold(&self) -> bool {
        self.sessions
            .windows(2)
            .all(|w| w[0].client_id < w[1].client_id)
            && self
                .sessions
                .iter()
                .all(|s| s.client_id != 0 && s.last_seq != 0)
    }
}
