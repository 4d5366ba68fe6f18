//! What the leader knows about each follower's log, and the flow control built on it.

use heapless::Deque;

use crate::limits::INFLIGHT_MAX;
use crate::types::{Index, NodeId, Term};

/// How the leader is currently sending to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's match point is unknown: send one append at a time and wait for the
    /// answer (or a heartbeat response) before sending the next.
    Probe,
    /// The follower is known to match up to `matched`: stream appends optimistically, at most
    /// the inflight window at a time.
    Replicate,
    /// The follower needs a snapshot (its next entry was compacted away); appends are paused.
    Snapshot {
        /// Index of the snapshot being sent.
        index: Index,
    },
}

/// A bounded window of append messages in flight to one follower; each slot holds the last
/// index the message carried.
#[derive(Clone, Debug, Default)]
pub struct Inflights {
    last_indexes: Deque<Index, INFLIGHT_MAX>,
}

impl Inflights {
    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.last_indexes.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }

    fn add(&mut self, last: Index) -> bool {
        self.last_indexes.push_back(last).is_ok()
    }

    /// Frees every message whose last index is `<= index` (they were acknowledged).
    fn free_to(&mut self, index: Index) {
        while self.last_indexes.front().is_some_and(|&l| l <= index) {
            self.last_indexes.pop_front();
        }
    }

    fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }

    fn clear(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's view of one peer (self included).
#[derive(Clone, Debug)]
pub struct Progress {
    /// The peer.
    pub id: NodeId,
    /// Highest index known to be replicated on the peer. Invariant: `matched < next`.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Sending mode.
    pub state: ProgressState,
    /// In probe state: an append was sent and no answer has come since.
    pub probe_sent: bool,
    /// Appends in flight (replicate state).
    pub inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Highest heartbeat round this peer has acknowledged (ReadIndex and lease).
    pub acked_round: u64,
    /// In snapshot state: term of the snapshot being sent.
    pub snapshot_term: Term,
    /// In snapshot state: the next byte of the snapshot to send.
    pub snapshot_offset: u64,
}

impl Progress {
    pub(crate) fn new(id: NodeId, next: Index) -> Self {
        Self {
            id,
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::default(),
            recent_active: false,
            acked_round: 0,
            snapshot_term: 0,
            snapshot_offset: 0,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot, resume right after it; otherwise right after the match point.
        self.next = match self.state {
            ProgressState::Snapshot { index } => (self.matched + 1).max(index + 1),
            _ => self.matched + 1,
        };
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub(crate) fn become_snapshot(&mut self, index: Index, term: Term) {
        self.state = ProgressState::Snapshot { index };
        self.snapshot_term = term;
        self.snapshot_offset = 0;
        self.probe_sent = false;
        self.inflights.clear();
    }

    /// True if the leader must not send appends to this peer now.
    pub fn is_paused(&self, inflight_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.len() >= inflight_max,
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records an acknowledgement up to `index`; false if it told nothing new.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        updated
    }

    /// Records that an append ending at `last` was sent.
    pub(crate) fn sent(&mut self, last: Index, carried_entries: bool) {
        match self.state {
            ProgressState::Replicate if carried_entries => {
                self.next = last + 1;
                let _ = self.inflights.add(last);
            }
            ProgressState::Probe => self.probe_sent = true,
            _ => {}
        }
    }

    /// An acknowledgement freed inflight slots.
    pub(crate) fn free_inflights_to(&mut self, index: Index) {
        self.inflights.free_to(index);
    }

    /// A heartbeat response came back: let one more message through a full window, and end a
    /// probe wait.
    pub(crate) fn on_heartbeat_response(&mut self, inflight_max: usize) {
        self.probe_sent = false;
        if self.state == ProgressState::Replicate && self.inflights.len() >= inflight_max {
            self.inflights.free_first();
        }
    }

    /// The follower rejected an append at `rejected`; `hint` is where the leader's and the
    /// follower's logs may match (fast backtracking). False if the rejection is stale.
    pub(crate) fn maybe_decrease_to(&mut self, rejected: Index, hint: Index) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next.checked_sub(1) != Some(rejected) {
            return false;
        }
        self.next = rejected.min(hint + 1).max(self.matched + 1);
        self.probe_sent = false;
        true
    }
}
