//! `RawNode`: the Ready/advance driving interface (etcd raft's RawNode, TinyKV PartA 2AC).
//!
//! # The driving loop and the persistence contract
//!
//! ```text
//!   tick() / step(msg) / propose(data) / read_index(id)      any number, any order
//!   if has_ready():
//!       rd = ready()                  what is pending (entries, hard state, messages, ...)
//!       early_messages(&rd)           → optional: hand each to the transport now
//!       p  = persist(rd)?             entries + hard state written and synced: ONE sync
//!       messages(&p)                  → hand each to the transport (all but the early ones)
//!       committed_entries(&p, f)?     → apply each to the state machine
//!       read_states(&p)               → serve reads once applied >= index
//!       advance(p)                    → release what was handed out
//! ```
//!
//! Raft is only safe if a node never tells anyone about state it could still lose: a vote,
//! a term or an appended entry must be durable before the message that reveals it leaves.
//! The API enforces this: messages can only be read through a [`Persisted`] token, and the
//! only way to get one is [`RawNode::persist`], which syncs the storage first.
//!
//! The one exception is [`RawNode::early_messages`]: a leader's appends and heartbeats, which
//! may leave *before* the leader's own log is durable, so that the leader's sync overlaps the
//! followers' (Raft dissertation §10.2.1). That is safe because the leader counts itself
//! toward a commit only with entries durable on its own disk, and it is offered only once the
//! term those messages carry, and the leader's vote for itself in it, are durable. A caller
//! that never asks for early messages gets every message after persisting, as before; one
//! that does sends the leader's appends, then syncs, then sends the rest, and the commit of a
//! lone write waits for one sync instead of two in a row.

use crate::config::Config;
use crate::error::{Error, ProposeError};
use crate::limits::{OUTBOX_BYTES_DEFAULT, RESTORE_CHUNK_BYTES, UNSTABLE_BYTES_DEFAULT};
use crate::membership::{ConfChange, ConfChangeError, ConfChangeMode};
use crate::message::Message;
use crate::progress::Progress;
use crate::raft::{Raft, ReadError, ReadState, Stats, TransferError};
use crate::state_machine::{SnapshotError, StateMachine};
use crate::storage::Storage;
use crate::storage::StorageError;
use crate::types::{
    Entry, HardState, Index, Membership, NodeId, Role, SnapshotMeta, SoftState, Term,
};

/// What a ready round has to do, taken by [`RawNode::ready`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a Ready must be persisted and advanced, or the node stalls"]
pub struct Ready {
    /// Leader or role changed since the previous ready round.
    pub soft_state: Option<SoftState>,
    /// The hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Number of unstable entries to persist.
    pub entries: usize,
    /// Number of messages the round releases: after persisting, or (a leader's appends and
    /// heartbeats) before, through [`RawNode::early_messages`].
    pub messages: usize,
    /// True if storage must be synced (entries, term or vote changed, or a configuration
    /// entry is to be applied past the synced commit index).
    pub must_sync: bool,
}

/// Proof that a ready round's state is durable; unlocks its messages and committed entries.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "pass the token to advance() after handling its messages and entries"]
pub struct Persisted {
    messages: usize,
    apply_from: Index,
    apply_to: Index,
    reads: usize,
    snapshot: Option<SnapshotMeta>,
}

impl Persisted {
    /// Indexes of the committed entries to apply this round (empty if `start > end`).
    pub fn committed_range(&self) -> core::ops::RangeInclusive<Index> {
        self.apply_from..=self.apply_to
    }

    /// The snapshot the state machine must be restored from this round, if any (see
    /// [`RawNode::restore_snapshot`]).
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }
}

/// A Raft node without I/O: the caller drives time, the network, storage and applying.
///
/// `OUTBOX_BYTES` bounds the encoded messages waiting between two ready rounds and
/// `UNSTABLE_BYTES` the entries accepted but not yet persisted.
///
/// Call order: any inputs, then `ready` → (`early_messages`, optional) → `persist` →
/// (`messages`, `committed_entries`, `read_states`) → `advance`. Inputs may also arrive
/// between `ready` and `advance`; what they produce waits for the next round.
pub struct RawNode<
    S: Storage,
    const OUTBOX_BYTES: usize = OUTBOX_BYTES_DEFAULT,
    const UNSTABLE_BYTES: usize = UNSTABLE_BYTES_DEFAULT,
> {
    raft: Raft<S, OUTBOX_BYTES, UNSTABLE_BYTES>,
    persisted_hard_state: HardState,
    /// The commit index of the last synced hard state. Invariant: no configuration entry
    /// above it has been applied.
    synced_commit: Index,
    last_soft_state: SoftState,
}

impl<S: Storage, const OUTBOX_BYTES: usize, const UNSTABLE_BYTES: usize>
    RawNode<S, OUTBOX_BYTES, UNSTABLE_BYTES>
{
    /// Starts a node from what `storage` holds (a new cluster if it holds nothing).
    ///
    /// This builds the node on the stack and returns it by value. A node too big for that
    /// (in firmware, where it lives in a `static`) is built in place instead:
    /// [`RawNode::unstarted`], then [`RawNode::start`].
    pub fn new(config: Config, storage: S) -> Result<Self, Error<S::Error>> {
        let mut node = Self::unstarted(storage);
        node.start(config)?;
        Ok(node)
    }

    /// A node over `storage` that has not started: no configuration, storage not read yet.
    /// Every byte of it is zero apart from the storage's own, so a `static` holding one (with
    /// an all-zero storage such as an empty [`crate::MemStorage`]) lives in `.bss` and costs
    /// no flash. Call [`RawNode::start`] before any other method.
    pub const fn unstarted(storage: S) -> Self {
        Self {
            raft: Raft::unstarted(storage),
            persisted_hard_state: HardState {
                term: 0,
                vote: None,
                commit: 0,
            },
            synced_commit: 0,
            last_soft_state: SoftState {
                leader: None,
                role: Role::Follower,
            },
        }
    }

    /// Starts this node in place from what its storage holds (a new cluster if it holds
    /// nothing), reusing its buffers: what [`RawNode::new`] does, without building a node on
    /// the stack. Anything queued before is forgotten, as after a restart. On error the node
    /// stays unusable until a `start` succeeds.
    pub fn start(&mut self, config: Config) -> Result<(), Error<S::Error>> {
        self.raft.start(config)?;
        // A state machine lives in memory: after a restart it must first be restored from the
        // snapshot the storage holds, if any.
        let meta = self.raft.log.storage.snapshot_meta();
        if meta.index > 0 {
            self.raft.pending_restore = Some(meta);
        }
        self.persisted_hard_state = self.raft.hard_state();
        self.synced_commit = self.persisted_hard_state.commit;
        self.last_soft_state = self.raft.soft_state();
        debug_assert!(self.raft.invariants_hold());
        Ok(())
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Advances the logical clock by one tick (elections, heartbeats, check-quorum).
    pub fn tick(&mut self) {
        self.raft.tick();
        debug_assert!(self.raft.invariants_hold());
    }

    /// Handles a decoded message.
    pub fn step(&mut self, message: &Message<'_>) -> Result<(), Error<S::Error>> {
        let r = self.raft.step(message);
        debug_assert!(self.raft.invariants_hold());
        r
    }

    /// Decodes `bytes` (as a transport received them) and handles the message. Bytes that do
    /// not decode are refused with [`Error::Decode`] and change nothing.
    pub fn step_bytes(&mut self, bytes: &[u8]) -> Result<(), Error<S::Error>> {
        match Message::decode(bytes) {
            Ok(m) => self.step(&m),
            Err(e) => {
                self.raft.stats.messages_ignored += 1;
                Err(Error::Decode(e))
            }
        }
    }

    /// Proposes `data` for the log; returns the index it will have if it commits. Refused
    /// (with the data handed back) when this node is not the leader, the payload is too large,
    /// or the uncommitted buffer is full.
    pub fn propose<'a>(&mut self, data: &'a [u8]) -> Result<Index, ProposeError<'a>> {
        self.raft.propose(data)
    }

    /// Asks for a linearizable read without writing to the log (dissertation §6.4). The
    /// answer comes as a [`ReadState`] with this `request` id in a later ready round: serve the
    /// read once the state machine has applied `index`. With `Config::lease_reads`, a leader
    /// whose lease holds answers at once (safe only under the clock assumption documented on
    /// that field). Pending reads are dropped if leadership is lost; callers time them out.
    pub fn read_index(&mut self, request: u64) -> Result<(), ReadError> {
        self.raft.read_index(request)
    }

    /// Hands leadership to `target` (dissertation §3.10); see [`TransferError`]. Proposals are
    /// refused with `Transferring` until the target takes over or an election timeout passes.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), TransferError> {
        let r = self.raft.transfer_leader(target);
        debug_assert!(self.raft.invariants_hold());
        r
    }

    /// Proposes a configuration change (see [`crate::membership`]): returns the index of its
    /// entry. It takes effect on each node when that node applies the entry; a joint change is
    /// left automatically. `context` (at most [`crate::limits::CONF_CONTEXT_BYTES_MAX`] bytes)
    /// travels with the entry for the application, e.g. the new node's address.
    pub fn propose_conf_change(
        &mut self,
        changes: &[ConfChange],
        mode: ConfChangeMode,
        context: &[u8],
    ) -> Result<Index, ConfChangeError> {
        let r = self.raft.propose_conf_change(changes, mode, context);
        debug_assert!(self.raft.invariants_hold());
        r
    }

    /// The voter leadership is being handed to, if a transfer is under way.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.raft.transfer_target
    }

    /// Campaigns now, as if the election timeout had elapsed (tests and operator tools).
    pub fn campaign(&mut self) {
        self.raft.start_campaign();
        debug_assert!(self.raft.invariants_hold());
    }

    // ----- ready cycle --------------------------------------------------------------------

    /// True if a ready round has work: state to persist, messages to send, entries to apply
    /// or reads to answer.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.outbox.len() > 0
            || r.log.unstable_len() > 0
            || self.durable_hard_state() != self.persisted_hard_state
            || r.soft_state() != self.last_soft_state
            || r.log.committed > r.log.applied
            || !r.read_states.is_empty()
            || r.has_pending_broadcast()
            || r.pending_restore.is_some()
    }

    /// The hard state a round may write: the current one, with the commit index capped at
    /// the last entry that was durable *before* the round. The round's entries and its hard
    /// state are separate writes that a crash can split (a store may well write the hard
    /// state first), and a commit index covering entries that did not survive would make a
    /// restarted node apply whatever its old log holds there, possibly a conflicting suffix
    /// this round was replacing. The capped part is written by the next round.
    fn durable_hard_state(&self) -> HardState {
        let mut hs = self.raft.hard_state();
        hs.commit = hs.commit.min(self.raft.log.persisted_index());
        hs
    }

    /// True if this round must sync the commit index in `hs` before applying: a configuration
    /// entry may be among the entries to apply (`config_hint` may be stale-high: that costs an
    /// extra sync), and a node must never apply a configuration that a restart could take
    /// back: it would return to a configuration it had left, and could find itself unable to
    /// campaign in the one it is in, or campaign in one that is two changes old.
    fn config_sync_due(&self, hs: &HardState) -> bool {
        self.raft.log.config_hint > self.raft.log.applied && hs.commit > self.synced_commit
    }

    /// Takes stock of what is pending. Packs batched proposals into append messages first.
    pub fn ready(&mut self) -> Ready {
        self.raft.flush_broadcast();
        let hs = self.durable_hard_state();
        let soft = self.raft.soft_state();
        let entries = self.raft.log.unstable_len();
        let hard_changed = hs != self.persisted_hard_state;
        let durable_changed =
            hs.term != self.persisted_hard_state.term || hs.vote != self.persisted_hard_state.vote;
        let ready = Ready {
            soft_state: (soft != self.last_soft_state).then_some(soft),
            hard_state: hard_changed.then_some(hs),
            entries,
            messages: self.raft.outbox.len(),
            must_sync: entries > 0 || durable_changed || self.config_sync_due(&hs),
        };
        self.last_soft_state = soft;
        ready
    }

    /// The round's messages that may leave *before* [`RawNode::persist`], as
    /// `(destination, encoded bytes)`: a leader's appends and heartbeats, once the term they
    /// carry and the leader's vote for itself in that term are durable (see the module docs
    /// for why that is safe). Nothing else qualifies: vote requests, votes, a follower's
    /// answers, snapshot chunks and `TimeoutNow` all wait for the round's sync. On a follower,
    /// a candidate, or a leader whose term is not durable yet this yields nothing.
    ///
    /// Optional: a caller that never calls it gets these messages from
    /// [`RawNode::messages`] after persisting. Each message is handed out once: those yielded
    /// here count as sent as soon as this is called, and [`RawNode::messages`] skips them, so
    /// hand every one to the transport (one that is not sent is lost, as on the network, and
    /// Raft retries it). Call it between [`RawNode::ready`] and [`RawNode::persist`]; it only
    /// yields messages of the round `ready` took stock of.
    pub fn early_messages(&mut self, ready: &Ready) -> impl Iterator<Item = (NodeId, &[u8])> + '_ {
        let hs = &self.persisted_hard_state;
        let mask = if hs.vote == Some(self.raft.cfg.id) {
            self.raft.outbox.take_early(ready.messages, hs.term)
        } else {
            0
        };
        self.raft.outbox.iter_selected(ready.messages, mask)
    }

    /// Makes the round's state durable: appends every unstable entry, records the hard state
    /// and syncs the storage once. On error nothing more is released (only what
    /// [`RawNode::early_messages`] handed out has left) and the next round retries.
    pub fn persist(&mut self, ready: Ready) -> Result<Persisted, S::Error> {
        let hs = self.durable_hard_state();
        let config_ahead = self.raft.log.config_hint > self.raft.log.applied;
        let config_sync = self.config_sync_due(&hs);
        let log = &mut self.raft.log;
        let must_sync = log.unstable_len() > 0
            || hs.term != self.persisted_hard_state.term
            || hs.vote != self.persisted_hard_state.vote
            || config_sync;
        log.write_unstable()?;
        if hs != self.persisted_hard_state {
            log.storage.set_hard_state(&hs)?;
        }
        if must_sync || ready.must_sync {
            log.storage.sync()?;
            self.synced_commit = hs.commit;
        }
        log.mark_persisted();
        self.persisted_hard_state = hs;
        self.raft.on_persisted();
        // An installed snapshot replaces everything up to its index: apply after it.
        let snapshot = self.raft.pending_restore.take();
        let log = &self.raft.log;
        let applied = snapshot
            .as_ref()
            .map_or(log.applied, |m| m.index.max(log.applied));
        let mut apply_to = log
            .committed
            .min(log.persisted_index())
            .min(applied + self.raft.cfg.apply_entries_max);
        if config_ahead {
            apply_to = apply_to.min(self.synced_commit.max(applied));
        }
        Ok(Persisted {
            messages: ready.messages,
            apply_from: applied + 1,
            apply_to,
            reads: self.raft.read_states.len(),
            snapshot,
        })
    }

    /// If this round installed a snapshot (received from the leader, or found in storage at
    /// start), restores `state_machine` from it — before [`RawNode::committed_entries`], which
    /// continue right after it. Reads the snapshot in [`RESTORE_CHUNK_BYTES`] pieces.
    pub fn restore_snapshot<M: StateMachine>(
        &self,
        p: &Persisted,
        state_machine: &mut M,
    ) -> Result<(), SnapshotError> {
        let Some(meta) = &p.snapshot else {
            return Ok(());
        };
        let storage = &self.raft.log.storage;
        state_machine.restore_begin()?;
        let mut buf = [0u8; RESTORE_CHUNK_BYTES];
        let mut offset = 0u64;
        loop {
            let n = storage
                .read_snapshot(offset, &mut buf)
                .map_err(|e| SnapshotError::Storage(e.kind()))?;
            if n == 0 {
                break;
            }
            state_machine.restore_chunk(&buf[..n])?;
            offset += n as u64;
        }
        if offset != storage.snapshot_len() {
            return Err(SnapshotError::Invalid(
                "snapshot shorter than its recorded length",
            ));
        }
        state_machine.restore_end(meta)
    }

    /// True when the compaction policy (`Config::compact_after`) says to take a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        let every = self.raft.cfg.compact_after;
        let log = &self.raft.log;
        every > 0 && log.applied.saturating_sub(log.first_index() - 1) >= every
    }

    /// Snapshots `state_machine` (which must have applied exactly up to [`RawNode::applied`])
    /// into storage and discards the log it covers. The state machine writes its state in
    /// pieces straight into the storage: no buffer here.
    pub fn take_snapshot<M: StateMachine>(
        &mut self,
        state_machine: &M,
    ) -> Result<(), SnapshotError> {
        let Some(meta) = self.raft.snapshot_meta_at_applied() else {
            return Ok(());
        };
        if meta.index < self.raft.log.first_index() {
            return Ok(()); // nothing new since the last snapshot
        }
        let storage = &mut self.raft.log.storage;
        let kind = |e: S::Error| SnapshotError::Storage(e.kind());
        storage.begin_snapshot(&meta).map_err(kind)?;
        state_machine.write_snapshot(&mut |piece| storage.write_snapshot(piece).map_err(kind))?;
        storage.finish_snapshot().map_err(kind)?;
        debug_assert!(self.raft.invariants_hold());
        Ok(())
    }

    /// The round's messages, as `(destination, encoded bytes)`, for the transport: all of
    /// them, except those already handed out by [`RawNode::early_messages`].
    pub fn messages<'a>(&'a self, p: &Persisted) -> impl Iterator<Item = (NodeId, &'a [u8])> + 'a {
        self.raft.outbox.iter(p.messages)
    }

    /// Visits the round's committed entries in log order (no-op and configuration entries
    /// included; [`Entry::is_noop`] tells them apart).
    pub fn committed_entries(
        &self,
        p: &Persisted,
        visit: &mut dyn FnMut(Entry<'_>),
    ) -> Result<(), S::Error> {
        if p.apply_from > p.apply_to {
            return Ok(());
        }
        self.raft
            .log
            .storage
            .entries(p.apply_from, p.apply_to + 1, usize::MAX, &mut |e| {
                visit(e);
                true
            })
    }

    /// Reads confirmed by this round: serve each once `applied() >= index`.
    pub fn read_states(&self, p: &Persisted) -> &[ReadState] {
        &self.raft.read_states[..p.reads]
    }

    /// Ends the round: its messages count as sent, its entries as applied, its reads as served.
    pub fn advance(&mut self, p: Persisted) {
        self.raft.outbox.drain_front(p.messages);
        if let Some(meta) = &p.snapshot {
            self.raft.log.applied = self.raft.log.applied.max(meta.index);
        }
        let before = self.raft.log.applied;
        if p.apply_to >= p.apply_from {
            self.raft.log.applied = p.apply_to;
        }
        // Configuration entries take effect once applied.
        self.raft.on_applied(before, self.raft.log.applied);
        let n = p.reads.min(self.raft.read_states.len());
        let rest = self.raft.read_states.len() - n;
        for i in 0..rest {
            self.raft.read_states[i] = self.raft.read_states[i + n];
        }
        self.raft.read_states.truncate(rest);
        debug_assert!(self.raft.invariants_hold());
    }

    // ----- getters ------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.cfg.id
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.raft.term
    }

    /// Who this node voted for in the current term.
    pub fn vote(&self) -> Option<NodeId> {
        self.raft.vote
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.raft.role
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.leader
    }

    /// Highest committed index known.
    pub fn committed(&self) -> Index {
        self.raft.log.committed
    }

    /// Highest index handed out for applying and advanced past.
    pub fn applied(&self) -> Index {
        self.raft.log.applied
    }

    /// Index of the last log entry (persisted or not).
    pub fn last_index(&self) -> Index {
        self.raft.log.last_index()
    }

    /// Index of the first entry still in the log.
    pub fn first_index(&self) -> Index {
        self.raft.log.first_index()
    }

    /// Term of the entry at `index`, if the log holds it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.raft.log.term(index).ok()
    }

    /// Visits entries `lo..hi` of the log, durable or not.
    pub fn entries(&self, lo: Index, hi: Index, visit: &mut dyn FnMut(Entry<'_>)) {
        let _ = self.raft.log.visit(lo, hi, usize::MAX, &mut |e| {
            visit(e);
            true
        });
    }

    /// The entries accepted but not yet persisted.
    pub fn unstable_entries(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.raft.log.unstable_entries()
    }

    /// The hard state as of now (persisted or not).
    pub fn hard_state(&self) -> HardState {
        self.raft.hard_state()
    }

    /// Leader and role.
    pub fn soft_state(&self) -> SoftState {
        self.raft.soft_state()
    }

    /// The current membership.
    pub fn membership(&self) -> &Membership {
        &self.raft.membership
    }

    /// The leader's view of `peer` (only while leader).
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        self.raft.progress.iter().find(|p| p.id == peer)
    }

    /// Counters of ignored and dropped messages.
    pub fn stats(&self) -> Stats {
        self.raft.stats
    }

    /// The storage (read-only; the node writes it only in `persist`).
    pub fn storage(&self) -> &S {
        &self.raft.log.storage
    }

    /// The storage, mutably, for compaction by the caller. Writing log entries or hard state
    /// through this reference breaks the node's invariants.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.log.storage
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.raft.cfg
    }
}
