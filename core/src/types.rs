//! Plain data shared by every layer: ids, terms, indexes, log entries, hard state, membership.

use serde::{Deserialize, Serialize};

pub use crate::membership::Membership;

/// Identifies a node. Zero is never a valid id (it stands for "nobody" on the wire).
pub type NodeId = u64;
/// A Raft term (§5.1).
pub type Term = u64;
/// A position in the replicated log; the first entry has index 1, index 0 is "before the log".
pub type Index = u64;

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum EntryKind {
    /// Application data for the state machine. An empty one is the leader's no-op (§5.4.2).
    Normal = 0,
    /// A configuration change: a [`crate::membership::ConfigEntry`]. Applications skip it
    /// (the node applies it itself) or read its context.
    Config = 1,
}

impl EntryKind {
    /// Decodes the one-byte form used by storage formats; `None` for unknown bytes.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Normal),
            1 => Some(Self::Config),
            _ => None,
        }
    }
}

/// A log entry, borrowing its payload from wherever it lives (a storage arena, a received
/// datagram, the unstable log). Nothing in the core copies payloads except into its bounded
/// buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<'a> {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position in the log.
    pub index: Index,
    /// What the payload means.
    pub kind: EntryKind,
    /// The payload (at most [`crate::limits::ENTRY_DATA_BYTES_MAX`] bytes).
    // Serialized as bytes, not as a sequence of `u8`: in postcard both are a varint length
    // and the raw bytes, but the sequence form goes through the serializer once per byte.
    #[serde(borrow, serialize_with = "serialize_payload")]
    pub data: &'a [u8],
}

fn serialize_payload<S: serde::Serializer>(data: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(data)
}

impl Entry<'_> {
    /// True for the empty entry a new leader appends to commit entries of earlier terms.
    pub fn is_noop(&self) -> bool {
        self.kind == EntryKind::Normal && self.data.is_empty()
    }
}

/// The state a node must persist before it answers a message (§5, Figure 2 "persistent state").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// Latest term this node has seen.
    pub term: Term,
    /// Candidate voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// Highest index known committed. Persisting it is an optimisation (faster apply after
    /// restart), not a safety requirement.
    pub commit: Index,
}

/// Describes a snapshot: the last log position it covers and the membership at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub index: Index,
    /// Term of that entry.
    pub term: Term,
    /// Membership as of `index`.
    pub membership: Membership,
}

/// What a node has in durable storage when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The persisted hard state.
    pub hard_state: HardState,
    /// The membership from the latest snapshot or configuration entry, if any was persisted.
    pub membership: Option<Membership>,
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes (dissertation §9.6); has not bumped its term.
    PreCandidate,
    /// Asking for votes in a term it started.
    Candidate,
    /// Leads the current term.
    Leader,
}

/// State that changes often and need not be persisted: who leads and in what role we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this node knows of, if any.
    pub leader: Option<NodeId>,
    /// This node's role.
    pub role: Role,
}
