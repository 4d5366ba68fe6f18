//! Run-time configuration of a node. Every interval is counted in logical ticks.

use crate::error::Error;
use crate::limits::{
    INFLIGHT_MAX, MESSAGE_BYTES_MAX, MESSAGE_BYTES_MIN, SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX,
};
use crate::types::{Membership, NodeId};

/// Configuration of one node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Membership to start with when storage has none persisted (a new cluster).
    pub bootstrap: Membership,
    /// Base election timeout `T`: a follower campaigns after a random timeout in `[T, 2T)`
    /// ticks without hearing from a leader (§5.2).
    pub election_ticks: u32,
    /// A leader sends heartbeats every this many ticks. Must be below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round before a real election, so a partitioned node cannot disrupt the
    /// cluster with a higher term when it rejoins (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down, and
    /// followers ignore vote requests while they hear from a leader (dissertation §6.2).
    pub check_quorum: bool,
    /// Append messages in flight per follower in replicate state (at most [`INFLIGHT_MAX`]).
    pub inflight_max: usize,
    /// Largest encoded message, in bytes (at least `MESSAGE_BYTES_MIN`, at most the outbox).
    pub message_bytes_max: usize,
    /// Entries appended but not yet committed above which proposals are refused with `Full`
    /// (backpressure; the unstable ring bounds their bytes).
    pub uncommitted_entries_max: u64,
    /// Most committed entries handed out for applying per ready round.
    pub apply_entries_max: u64,
    /// Serve reads from the leader lease instead of a heartbeat round (needs `check_quorum`).
    /// Assumes clocks tick at the same rate within a factor well below `election_ticks /
    /// (election_ticks - 1)`; see `RawNode::read_index`. A node with this set ignores vote
    /// requests for its first `election_ticks` ticks after starting, since it may have granted
    /// a lease just before a restart.
    pub lease_reads: bool,
    /// Take a snapshot and compact the log once this many entries were applied since the last
    /// snapshot (0: never). The log then holds at most about twice this many entries.
    pub compact_after: u64,
    /// Bytes of snapshot data per chunk message when catching up a follower (stop-and-wait,
    /// one chunk in flight). Capped at `message_bytes_max - SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX`
    /// so a chunk always fits one message.
    pub snapshot_chunk_bytes: usize,
    /// Seed of the PRNG that randomizes election timeouts. Give each node a different seed.
    pub seed: u64,
}

impl Config {
    /// A configuration with the defaults (election after 10–19 ticks, heartbeat every 2,
    /// pre-vote and check-quorum on) for node `id` of a cluster of `voters`.
    pub fn new(id: NodeId, voters: &[NodeId]) -> Result<Self, Error> {
        let cfg = Self {
            id,
            bootstrap: Membership::from_voters(voters)?,
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            inflight_max: INFLIGHT_MAX,
            message_bytes_max: 16 * 1024,
            uncommitted_entries_max: 4096,
            apply_entries_max: 4096,
            lease_reads: false,
            compact_after: 0,
            snapshot_chunk_bytes: 8 * 1024,
            seed: id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        cfg.validate(usize::MAX)?;
        Ok(cfg)
    }

    /// The placeholder of a node that has not started: all zero bytes (so a `static` holding
    /// such a node can live in `.bss`) and invalid (id 0), never used to run a node.
    pub(crate) const fn unset() -> Self {
        Self {
            id: 0,
            bootstrap: Membership::EMPTY,
            election_ticks: 0,
            heartbeat_ticks: 0,
            pre_vote: false,
            check_quorum: false,
            inflight_max: 0,
            message_bytes_max: 0,
            uncommitted_entries_max: 0,
            apply_entries_max: 0,
            lease_reads: false,
            compact_after: 0,
            snapshot_chunk_bytes: 0,
            seed: 0,
        }
    }

    /// The chunk size actually used: `snapshot_chunk_bytes`, capped so a chunk fits a message.
    pub fn effective_snapshot_chunk_bytes(&self) -> usize {
        self.snapshot_chunk_bytes
            .min(self.message_bytes_max - SNAPSHOT_CHUNK_OVERHEAD_BYTES_MAX)
    }

    /// Checks the rules between fields; `outbox_bytes` is the node's outbox capacity.
    pub fn validate(&self, outbox_bytes: usize) -> Result<(), Error> {
        let rule = |ok: bool, why| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidConfig(why))
            }
        };
        rule(self.id != 0, "id must be non-zero")?;
        rule(
            self.heartbeat_ticks >= 1,
            "heartbeat_ticks must be at least 1",
        )?;
        rule(
            self.election_ticks > self.heartbeat_ticks,
            "election_ticks must exceed heartbeat_ticks",
        )?;
        rule(
            (1..=INFLIGHT_MAX).contains(&self.inflight_max),
            "inflight_max must be in 1..=INFLIGHT_MAX",
        )?;
        rule(
            (MESSAGE_BYTES_MIN..=MESSAGE_BYTES_MAX).contains(&self.message_bytes_max),
            "message_bytes_max must be in MESSAGE_BYTES_MIN..=MESSAGE_BYTES_MAX",
        )?;
        rule(
            self.message_bytes_max <= outbox_bytes,
            "message_bytes_max must fit in the outbox",
        )?;
        rule(
            self.apply_entries_max >= 1,
            "apply_entries_max must be at least 1",
        )?;
        rule(
            self.snapshot_chunk_bytes >= 1,
            "snapshot_chunk_bytes must be at least 1",
        )?;
        self.bootstrap.validate().map_err(Error::InvalidConfig)?;
        rule(
            !self.lease_reads || self.check_quorum,
            "lease_reads needs check_quorum",
        )
    }
}
