//! The Raft protocol proper: roles, elections, replication, commitment and ReadIndex.
//!
//! `Raft` reacts to three inputs — a tick, a message, a proposal — by changing its state and
//! queueing messages in its outbox. It never performs I/O; [`crate::RawNode`] decides when the
//! queued state is persisted and the messages released.

use heapless::{Deque, Vec};

use crate::config::Config;
use crate::error::{Error, ProposeError, ProposeErrorKind};
use crate::limits::{CONF_CONTEXT_BYTES_MAX, ENTRY_DATA_BYTES_MAX, PEERS_MAX, READS_PENDING_MAX};
use crate::log::RaftLog;
use crate::membership::{
    ConfChange, ConfChangeError, ConfChangeMode, ConfigEntry, CONFIG_ENTRY_BYTES_MAX,
};
use crate::message::{encode_snapshot_chunk, AppendWriter, Body, Message};
use crate::outbox::Outbox;
use crate::progress::{Progress, ProgressState};
use crate::quorum::{joint_majority_index, joint_vote_result, VoteResult};
use crate::rng::Rng;
use crate::storage::{Storage, StorageErrorKind};
use crate::types::{
    EntryKind, HardState, Index, Membership, NodeId, Role, SnapshotMeta, SoftState, Term,
};

/// A linearizable read that may now be served: once the state machine has applied
/// `index`, reading it reflects every write acknowledged before the read was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's id for the read request.
    pub request: u64,
    /// Apply at least up to here before serving the read.
    pub index: Index,
}

/// Why a read request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Only the leader serves reads; this is the one this node knows of.
    NotLeader {
        /// The known leader, if any.
        leader: Option<NodeId>,
    },
    /// [`READS_PENDING_MAX`] reads are already waiting.
    Full,
}

/// Why a leadership transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader can hand leadership over; this is the one this node knows of.
    NotLeader {
        /// The known leader, if any.
        leader: Option<NodeId>,
    },
    /// The target is not a voter of the current configuration.
    NotVoter(NodeId),
}

/// Counters of things the node did not do, for operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages not queued because the outbox was full (treated as lost on the network).
    pub outbox_dropped: u64,
    /// Received messages ignored: stale, from a non-member, addressed elsewhere, or invalid.
    pub messages_ignored: u64,
    /// Elections (including pre-vote rounds) this node started.
    pub campaigns: u64,
    /// Committed configuration entries that did not decode (corruption); skipped.
    pub bad_config_entries: u64,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    request: u64,
    index: Index,
    /// Heartbeat context current when the read arrived; a quorum must ack a later one.
    after: u64,
}

/// The protocol state of one node.
pub(crate) struct Raft<S, const OUT: usize, const UNSTABLE: usize> {
    pub(crate) cfg: Config,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog<S, UNSTABLE>,
    pub(crate) membership: Membership,
    /// One entry per member (self included) while leader; empty otherwise.
    pub(crate) progress: Vec<Progress, PEERS_MAX>,
    votes: Vec<(NodeId, bool), PEERS_MAX>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: Rng,
    pub(crate) outbox: Outbox<OUT>,
    /// New entries wait to be packed into appends at the next `ready()` (proposal batching).
    broadcast_pending: bool,
    /// Logical clock: ticks since start.
    ticks: u64,
    /// Heartbeat rounds started within the current tick (low 16 bits of a context).
    round_seq: u16,
    /// Context of the latest heartbeat round: `ticks << 16 | round_seq`, strictly increasing.
    last_context: u64,
    pending_reads: Deque<PendingRead, READS_PENDING_MAX>,
    pub(crate) read_states: Vec<ReadState, READS_PENDING_MAX>,
    pub(crate) stats: Stats,
    /// A snapshot being received from the leader: which one, and the next byte expected.
    incoming: Option<(Index, Term, u64)>,
    /// An installed snapshot the state machine has yet to be restored from.
    pub(crate) pending_restore: Option<SnapshotMeta>,
    /// Leader: the voter leadership is being handed to (§3.10); proposals wait meanwhile.
    pub(crate) transfer_target: Option<NodeId>,
    /// Ticks since the transfer began; it is abandoned after an election timeout.
    transfer_elapsed: u32,
    /// Leader: index of the latest configuration entry it appended (or of its first entry of
    /// the term); no new change until this is applied.
    pending_conf_index: Index,
    /// Leader: the latest configuration entry in its log that it has not applied (appended by
    /// it, or inherited) removes or demotes it. It takes no more proposals, so that whoever
    /// takes over can hold its whole log: once it has stopped leading for any reason (a crash,
    /// a later term), a longer log would make it refuse its vote to the new voters.
    leaving: bool,
    /// A `TimeoutNow` arrived while a committed configuration entry waited to be applied:
    /// campaign once it is. Cleared on any change of term or role.
    timeout_now_pending: bool,
    /// Index of the configuration entry `membership` comes from; for one that came with a
    /// snapshot, the snapshot's index (an upper bound: it is the configuration as of there).
    config_index: Index,
    /// `config_index` is the entry's own index (not a snapshot's).
    config_exact: bool,
    /// The exact index of the configuration entry before the current one, if known: we vote
    /// for no candidate whose configuration is older (see `handle_vote_request`).
    prev_config_index: Option<Index>,
}

impl<S: Storage, const OUT: usize, const UNSTABLE: usize> Raft<S, OUT, UNSTABLE> {
    /// A node over `storage` that has neither a configuration nor read its storage yet. Every
    /// byte of it is zero apart from the storage's own, so that a `static` holding one lives
    /// in `.bss`. [`Raft::start`] must run before anything else.
    pub(crate) const fn unstarted(storage: S) -> Self {
        Self {
            term: 0,
            vote: None,
            role: Role::Follower,
            leader: None,
            log: RaftLog::unstarted(storage),
            membership: Membership::EMPTY,
            progress: Vec::new(),
            votes: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            rng: Rng::new(0),
            outbox: Outbox::new(),
            broadcast_pending: false,
            ticks: 0,
            round_seq: 0,
            last_context: 0,
            pending_reads: Deque::new(),
            read_states: Vec::new(),
            stats: Stats {
                outbox_dropped: 0,
                messages_ignored: 0,
                campaigns: 0,
                bad_config_entries: 0,
            },
            incoming: None,
            pending_restore: None,
            transfer_target: None,
            transfer_elapsed: 0,
            pending_conf_index: 0,
            leaving: false,
            timeout_now_pending: false,
            config_index: 0,
            // Zero bytes, like every field here (`start` sets both).
            config_exact: false,
            prev_config_index: None,
            cfg: Config::unset(),
        }
    }

    /// (Re)starts this node in place from what its storage holds, as a follower, with
    /// `cfg`: every other field is reset and the buffers are reused, so a node never has to
    /// be built on the stack and moved. On error the node is left unusable until a `start`
    /// succeeds.
    pub(crate) fn start(&mut self, cfg: Config) -> Result<(), Error<S::Error>> {
        cfg.validate(OUT).map_err(|e| match e {
            Error::InvalidConfig(w) => Error::InvalidConfig(w),
            _ => Error::InvalidConfig("configuration"),
        })?;
        let init = self.log.storage.initial_state().map_err(Error::Storage)?;
        let membership = init.membership.unwrap_or_else(|| cfg.bootstrap.clone());
        let HardState { term, vote, commit } = init.hard_state;
        self.term = term;
        self.vote = vote;
        self.role = Role::Follower;
        self.leader = None;
        self.log.restart(commit);
        self.membership = membership;
        self.progress.clear();
        self.votes.clear();
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout = cfg.election_ticks;
        self.rng = Rng::new(cfg.seed);
        self.outbox.clear();
        self.broadcast_pending = false;
        self.ticks = 0;
        self.round_seq = 0;
        self.last_context = 0;
        self.pending_reads.clear();
        self.read_states.clear();
        self.stats = Stats::default();
        self.incoming = None;
        self.pending_restore = None;
        self.transfer_target = None;
        self.transfer_elapsed = 0;
        self.pending_conf_index = 0;
        // The configuration came with the snapshot, if any (else it is the initial one); the
        // log replayed on apply brings any later one.
        self.config_index = self.log.first_index() - 1;
        self.config_exact = self.config_index == 0;
        self.prev_config_index = self.config_exact.then_some(0);
        self.cfg = cfg;
        self.become_follower(term, None);
        Ok(())
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// A voter may campaign; a learner or a removed node may not.
    fn promotable(&self) -> bool {
        self.membership.is_voter(self.id())
    }

    pub(crate) fn has_pending_broadcast(&self) -> bool {
        self.broadcast_pending
    }

    /// True if this node may start an election: it votes, and no committed configuration
    /// entry waits to be applied (it could be campaigning under a configuration the cluster
    /// already left).
    fn can_campaign(&self) -> bool {
        self.promotable() && !self.has_unapplied_config()
    }

    fn has_unapplied_config(&self) -> bool {
        let (applied, committed) = (self.log.applied, self.log.committed);
        if self.log.config_hint <= applied || committed <= applied {
            return false;
        }
        let mut found = false;
        let _ = self
            .log
            .visit(applied + 1, committed + 1, usize::MAX, &mut |e| {
                found = e.kind == EntryKind::Config;
                !found
            });
        found
    }

    /// Campaigns now (a voter that is not leader), with pre-vote if configured.
    pub(crate) fn start_campaign(&mut self) {
        if self.can_campaign() && self.role != Role::Leader {
            let pre = self.cfg.pre_vote;
            self.campaign(pre, false);
        }
    }

    // ----- role changes -------------------------------------------------------------------

    fn reset(&mut self, term: Term) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout = self
            .rng
            .range(self.cfg.election_ticks, 2 * self.cfg.election_ticks);
        self.votes.clear();
        self.progress.clear();
        self.pending_reads.clear();
        self.broadcast_pending = false;
        self.transfer_target = None;
        self.timeout_now_pending = false;
        self.leaving = false;
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        // A pre-candidate changes neither its term nor its vote (§9.6).
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        let term = self.term + 1;
        self.reset(term);
        self.vote = Some(self.id());
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id());
        let next = self.log.last_index() + 1;
        for id in self.membership.members() {
            let mut pr = Progress::new(id, next);
            if id == self.cfg.id {
                pr.matched = self.log.persisted_index();
                pr.become_replicate();
                pr.recent_active = true;
            }
            // Capacity: a valid membership has at most PEERS_MAX members.
            let _ = self.progress.push(pr);
        }
        self.leaving = self.unapplied_config_removes_me();
        // §5.4.2: commit entries of earlier terms by committing one of our own.
        let noop_fits = self.log.append(self.term, EntryKind::Normal, &[]).is_ok();
        debug_assert!(noop_fits || self.log.unstable_len() > 0);
        // No configuration change until that entry is applied: it commits (and so settles)
        // every change an earlier leader may have left in flight.
        self.pending_conf_index = self.log.last_index();
        self.broadcast_pending = true;
        self.maybe_commit();
    }

    /// True if the latest configuration entry past the applied index removes or demotes us.
    fn unapplied_config_removes_me(&self) -> bool {
        let (applied, last) = (self.log.applied, self.log.last_index());
        if self.log.config_hint <= applied {
            return false;
        }
        let me = self.id();
        let mut removes = false;
        let _ = self.log.visit(applied + 1, last + 1, usize::MAX, &mut |e| {
            if e.kind == EntryKind::Config {
                if let Ok(c) = ConfigEntry::decode(e.data) {
                    removes = !c.membership.leave_joint().is_voter(me);
                }
            }
            true
        });
        removes
    }

    fn campaign(&mut self, pre: bool, transfer: bool) {
        self.stats.campaigns += 1;
        let msg_term = if pre {
            self.become_pre_candidate();
            self.term + 1
        } else {
            self.become_candidate();
            self.term
        };
        let me = self.id();
        if self.record_vote(me, true) == VoteResult::Won {
            return self.won(pre);
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId, PEERS_MAX> = self.membership.all_voters().collect();
        for &to in voters.iter().filter(|&&v| v != me) {
            let body = Body::Vote {
                pre,
                last_index,
                last_term,
                transfer,
                config_index: self.config_index,
            };
            self.send_with_term(to, msg_term, body);
        }
    }

    fn won(&mut self, pre: bool) {
        if pre {
            self.campaign(false, false);
        } else {
            self.become_leader();
        }
    }

    fn record_vote(&mut self, from: NodeId, granted: bool) -> VoteResult {
        if !self.votes.iter().any(|&(id, _)| id == from) {
            let _ = self.votes.push((from, granted));
        }
        let votes = &self.votes;
        joint_vote_result(&self.membership, |id| {
            votes.iter().find(|&&(v, _)| v == id).map(|&(_, g)| g)
        })
    }

    // ----- inputs -------------------------------------------------------------------------

    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
        self.round_seq = 0;
        self.election_elapsed += 1;
        if self.role == Role::Leader {
            self.heartbeat_elapsed += 1;
            if self.election_elapsed >= self.cfg.election_ticks {
                self.election_elapsed = 0;
                // A leader that is no longer a voter stays until its heir takes over (see
                // `hand_over`): it may be the only node that can tell the new voters they are
                // voters. It serves no lease reads meanwhile (it is transferring).
                if self.cfg.check_quorum && !self.quorum_recently_active() && self.promotable() {
                    let term = self.term;
                    self.become_follower(term, None);
                    return;
                }
            }
            if self.transfer_target.is_some() {
                self.transfer_elapsed += 1;
                if self.transfer_elapsed >= self.cfg.election_ticks {
                    // §3.10: the target did not take over within an election timeout (down,
                    // cut off, or too far behind); keep leading and accept proposals again,
                    // unless we are no longer a voter: then hand over again.
                    self.transfer_target = None;
                    if !self.promotable() {
                        self.hand_over();
                    }
                }
            }
            if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                self.heartbeat_elapsed = 0;
                self.broadcast_heartbeat();
            }
            // Retry a leave that found the log full.
            self.maybe_leave_joint();
        } else if self.election_elapsed >= self.randomized_timeout && self.can_campaign() {
            self.election_elapsed = 0;
            let pre = self.cfg.pre_vote;
            self.campaign(pre, false);
        }
    }

    /// Check-quorum: did a quorum of voters talk to us since the last check? Clears the marks.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.id();
        let progress = &self.progress;
        let active = joint_vote_result(&self.membership, |id| {
            Some(id == me || progress.iter().any(|p| p.id == id && p.recent_active))
        });
        for pr in self.progress.iter_mut().filter(|p| p.id != me) {
            pr.recent_active = false;
        }
        active == VoteResult::Won
    }

    pub(crate) fn propose<'a>(&mut self, data: &'a [u8]) -> Result<Index, ProposeError<'a>> {
        let fail = |kind| Err(ProposeError { kind, data });
        if self.role != Role::Leader {
            return fail(ProposeErrorKind::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer_target.is_some() || self.leaving {
            return fail(ProposeErrorKind::Transferring);
        }
        if data.len() > ENTRY_DATA_BYTES_MAX {
            return fail(ProposeErrorKind::TooLarge);
        }
        let uncommitted = self.log.last_index() - self.log.committed;
        if uncommitted >= self.cfg.uncommitted_entries_max || !self.log.fits(data.len()) {
            return fail(ProposeErrorKind::Full);
        }
        match self.log.append(self.term, EntryKind::Normal, data) {
            Ok(index) => {
                self.broadcast_pending = true;
                Ok(index)
            }
            Err(_) => fail(ProposeErrorKind::Full),
        }
    }

    pub(crate) fn read_index(&mut self, request: u64) -> Result<(), ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        // §6.4: until an entry of this term commits, our commit index may be behind entries
        // earlier leaders committed; our last index is not.
        let committed_in_term = self.log.term(self.log.committed) == Ok(self.term);
        let index = if committed_in_term {
            self.log.committed
        } else {
            self.log.last_index()
        };
        let alone = self.membership.voters.as_slice() == [self.id()] && !self.membership.is_joint();
        if alone || (self.cfg.lease_reads && self.lease_valid()) {
            return self
                .read_states
                .push(ReadState { request, index })
                .map_err(|_| ReadError::Full);
        }
        let read = PendingRead {
            request,
            index,
            after: self.last_context,
        };
        self.pending_reads
            .push_back(read)
            .map_err(|_| ReadError::Full)?;
        self.broadcast_heartbeat();
        Ok(())
    }

    /// Leader lease (dissertation §6.4.1): a quorum acknowledged a heartbeat sent at tick `s`,
    /// and none of them will grant a vote before `s + election_ticks` on its own clock, so no
    /// other leader can exist before then. One tick of margin covers clock-rate drift.
    fn lease_valid(&self) -> bool {
        // A transfer lets the target win an election at once, ignoring the followers' leases.
        let sent_tick = self.quorum_context() >> 16;
        self.transfer_target.is_none()
            && sent_tick > 0
            && self.ticks < sent_tick + u64::from(self.cfg.election_ticks) - 1
    }

    /// §3.10: hands leadership to `target`. Proposals are refused meanwhile; the target is
    /// brought up to date, then told to campaign at once (`TimeoutNow`). If it has not taken
    /// over within an election timeout, the transfer is abandoned. Asking again for the same
    /// target changes nothing; asking for another restarts the transfer for that one; asking
    /// for this node does nothing.
    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id() {
            // A leader that is no longer a voter keeps handing over.
            if self.promotable() {
                self.transfer_target = None;
            }
            return Ok(());
        }
        if !self.membership.voters.contains(&target) {
            return Err(TransferError::NotVoter(target));
        }
        if self.transfer_target == Some(target) {
            return Ok(());
        }
        self.transfer_target = Some(target);
        self.transfer_elapsed = 0;
        self.maybe_send_timeout_now(target);
        if self.transfer_target.is_some() {
            self.send_append(target, true);
        }
        Ok(())
    }

    /// Sends `TimeoutNow` to the transfer target once its log matches ours.
    fn maybe_send_timeout_now(&mut self, from: NodeId) {
        if self.transfer_target != Some(from) {
            return;
        }
        let last = self.log.last_index();
        if self
            .progress
            .iter()
            .any(|p| p.id == from && p.matched == last)
        {
            self.send(from, Body::TimeoutNow);
        }
    }

    // ----- configuration changes ----------------------------------------------------------

    /// Appends a configuration change (see [`crate::membership`]). One at a time: refused
    /// while the previous change, or this leader's first entry, is not applied.
    pub(crate) fn propose_conf_change(
        &mut self,
        changes: &[ConfChange],
        mode: ConfChangeMode,
        context: &[u8],
    ) -> Result<Index, ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer_target.is_some() || self.leaving {
            return Err(ConfChangeError::Transferring);
        }
        if context.len() > CONF_CONTEXT_BYTES_MAX {
            return Err(ConfChangeError::ContextTooLarge);
        }
        if self.pending_conf_index > self.log.applied {
            return Err(if self.membership.is_joint() {
                ConfChangeError::InJoint
            } else {
                ConfChangeError::Pending
            });
        }
        let next = self.membership.apply(changes, mode)?;
        self.append_config(next, context)
    }

    fn append_config(
        &mut self,
        membership: Membership,
        context: &[u8],
    ) -> Result<Index, ConfChangeError> {
        let mut buf = [0u8; CONFIG_ENTRY_BYTES_MAX];
        let leaving = !membership.leave_joint().is_voter(self.id());
        let entry = ConfigEntry {
            membership,
            context,
        };
        let n = entry
            .encode(&mut buf)
            .ok_or(ConfChangeError::ContextTooLarge)?;
        let index = self
            .log
            .append(self.term, EntryKind::Config, &buf[..n])
            .map_err(|_| ConfChangeError::Full)?;
        self.pending_conf_index = index;
        self.leaving = leaving;
        self.broadcast_pending = true;
        Ok(index)
    }

    /// Entries `(from, to]` were applied: switch to the latest configuration among them.
    pub(crate) fn on_applied(&mut self, from: Index, to: Index) {
        if to > from && self.log.config_hint > from {
            let mut latest = None;
            let (mut current, mut exact) = (self.config_index, self.config_exact);
            let mut previous = self.prev_config_index;
            let mut bad = 0;
            let _ = self.log.visit(from + 1, to + 1, usize::MAX, &mut |e| {
                if e.kind == EntryKind::Config {
                    match ConfigEntry::decode(e.data) {
                        Ok(c) => {
                            latest = Some(c.membership);
                            previous = exact.then_some(current);
                            (current, exact) = (e.index, true);
                        }
                        Err(_) => bad += 1,
                    }
                }
                true
            });
            self.stats.bad_config_entries += bad;
            if let Some(m) = latest {
                self.config_index = current;
                self.config_exact = true;
                self.prev_config_index = previous;
                self.switch_membership(m);
            }
        }
        self.maybe_leave_joint();
        if self.timeout_now_pending && !self.has_unapplied_config() {
            self.timeout_now_pending = false;
            if self.can_campaign() && self.role != Role::Leader {
                self.campaign(false, true);
            }
        }
    }

    fn switch_membership(&mut self, membership: Membership) {
        self.membership = membership;
        if matches!(self.role, Role::Candidate | Role::PreCandidate) && !self.promotable() {
            // A campaign learned (from `Committed`) of a change that took our vote away.
            let term = self.term;
            self.become_follower(term, None);
            return;
        }
        if self.role != Role::Leader {
            return;
        }
        let membership = &self.membership;
        self.progress.retain(|p| membership.contains(p.id));
        let next = self.log.last_index() + 1;
        let mut added: Vec<NodeId, PEERS_MAX> = Vec::new();
        for id in self.membership.members() {
            if !self.progress.iter().any(|p| p.id == id) {
                let mut pr = Progress::new(id, next);
                // A check-quorum round's grace: it has not had a chance to answer yet.
                pr.recent_active = true;
                let _ = self.progress.push(pr);
                let _ = added.push(id);
            }
        }
        if let Some(target) = self.transfer_target {
            if !self.membership.voters.contains(&target) {
                self.transfer_target = None;
            }
        }
        // The quorum changed: what commits may have changed too.
        if self.maybe_commit() {
            self.broadcast_append(true);
        } else {
            for id in added {
                self.send_append(id, true);
            }
        }
        if !self.promotable() {
            self.hand_over();
        }
    }

    /// §4.2.2: a leader removed from (or demoted in) the configuration hands leadership to the
    /// voter that holds the most of its log, as a leadership transfer (§3.10): it takes no more
    /// proposals, brings the heir up to date, tells it to campaign at once, and steps down when
    /// it does. Until then it keeps leading the new configuration (its own acknowledgements no
    /// longer count), and if the heir has not taken over within an election timeout it tries
    /// again. Stepping down at once would strand a cluster whose new voters lack the leader's
    /// last entries or do not know the change committed (so do not count themselves voters
    /// yet), if the messages handing over were lost: nobody else could win an election.
    fn hand_over(&mut self) {
        let voters = &self.membership.voters;
        let heir = self
            .progress
            .iter()
            .filter(|p| voters.contains(&p.id))
            .max_by_key(|p| p.matched)
            .map(|p| p.id);
        if let Some(heir) = heir {
            // Appends first: they tell the heir the commit index, which it may need to count
            // itself a voter, and bring it what it lacks, before the TimeoutNow.
            self.send_append(heir, true);
            self.send_appends(heir);
            let _ = self.transfer_leader(heir);
        }
    }

    /// Leader: once a joint configuration is applied, append the entry that leaves it.
    fn maybe_leave_joint(&mut self) {
        if self.role == Role::Leader
            && self.membership.is_joint()
            && self.pending_conf_index <= self.log.applied
        {
            let next = self.membership.leave_joint();
            // A full log is retried on the next tick.
            let _ = self.append_config(next, &[]);
        }
    }

    fn quorum_context(&self) -> u64 {
        let me = self.id();
        let last = self.last_context;
        let progress = &self.progress;
        joint_majority_index(&self.membership, |id| {
            if id == me {
                last
            } else {
                progress
                    .iter()
                    .find(|p| p.id == id)
                    .map_or(0, |p| p.acked_round)
            }
        })
    }

    /// Moves pending reads whose confirmation round a quorum has acknowledged to `read_states`.
    fn release_reads(&mut self) {
        let confirmed = self.quorum_context();
        while let Some(r) = self.pending_reads.front().copied() {
            if r.after >= confirmed || self.read_states.is_full() {
                break;
            }
            self.pending_reads.pop_front();
            let _ = self.read_states.push(ReadState {
                request: r.request,
                index: r.index,
            });
        }
    }

    /// Handles one message. Errors only for messages that cannot be from a correct peer.
    pub(crate) fn step(&mut self, m: &Message<'_>) -> Result<(), Error<S::Error>> {
        if m.to != self.id() {
            self.stats.messages_ignored += 1;
            return Ok(());
        }
        if let Body::Committed { index, term } = m.body {
            // A fact about the log, not a claim to lead: no term rules (see the message).
            if index > self.log.committed && self.log.term(index) == Ok(term) {
                self.log.commit_to(index);
            } else {
                self.stats.messages_ignored += 1;
            }
            return Ok(());
        }
        if !self.membership.contains(m.from) {
            // Our configuration may be behind the sender's: we are joining (we learn the
            // configuration from the log), or lagging (the leader was added by a change we
            // have not applied yet), or were removed. Whoever leads, we follow: the term
            // rules still apply, and it is how we catch up.
            let from_leader = matches!(
                m.body,
                Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. }
            );
            // We may be a voter of the candidate's configuration by a change we have not
            // applied (a promoted learner, a joining node, a voter behind): answer a candidate
            // that counts on us (its vote is only counted by a configuration in which we vote,
            // and a vote is once per term as always) — unless we heard from a leader within an
            // election timeout (dissertation §4.2.3), so that a removed node that never learned
            // it was removed cannot raise our term and cut us off from the leader.
            let heard_leader =
                self.leader.is_some() && self.election_elapsed < self.cfg.election_ticks;
            let ballot = matches!(m.body, Body::Vote { .. }) && !heard_leader;
            // A leader that removed itself hands over with TimeoutNow as it leaves.
            let handover = matches!(m.body, Body::TimeoutNow)
                && m.term == self.term
                && self.leader == Some(m.from);
            if !(handover || ballot || from_leader) {
                self.stats.messages_ignored += 1;
                return Err(Error::UnknownPeer(m.from));
            }
        }
        if m.term > self.term {
            if let Body::Vote { transfer, .. } = m.body {
                // After a restart we cannot know whether we acknowledged a leader's heartbeat
                // just before going down; with lease reads that leader may be serving reads
                // from a lease our acknowledgement granted, so honour it for one election
                // timeout after starting.
                let just_started =
                    self.cfg.lease_reads && self.ticks < u64::from(self.cfg.election_ticks);
                let in_lease = self.cfg.check_quorum
                    && ((self.leader.is_some() && self.election_elapsed < self.cfg.election_ticks)
                        || just_started);
                if in_lease && !transfer {
                    // §6.2 / §9.6: a leader we heard from recently is alive; do not let a
                    // disruptive candidate raise our term.
                    self.stats.messages_ignored += 1;
                    return Ok(());
                }
            }
            match m.body {
                Body::Vote { pre: true, .. } => {}
                Body::VoteResponse {
                    pre: true,
                    granted: true,
                } => {}
                Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } => {
                    self.become_follower(m.term, Some(m.from))
                }
                Body::Vote { .. } => {
                    // Figure 2: a follower's timer restarts when it hears from the leader or
                    // grants a vote (handle_vote_request does that), not when a candidate
                    // merely raises its term. Otherwise candidates with stale logs, taking
                    // turns, could keep the one node able to win from ever timing out.
                    let elapsed = self.election_elapsed;
                    self.become_follower(m.term, None);
                    self.election_elapsed = elapsed;
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. }
                    if self.cfg.check_quorum
                        || self.cfg.pre_vote
                        || !self.membership.contains(m.from) =>
                {
                    // A stale leader cut off by a partition: tell it our term so it steps down
                    // (without this, pre-vote could leave it leading a term nobody follows).
                    // A leader we no longer count handed over to us or another voter: nobody
                    // else would ever send it a later term.
                    let body = Body::AppendResponse {
                        success: false,
                        index: 0,
                        hint_index: 0,
                        hint_term: 0,
                    };
                    self.send(m.from, body);
                }
                Body::Vote { pre: true, .. } => {
                    let body = Body::VoteResponse {
                        pre: true,
                        granted: false,
                    };
                    self.send(m.from, body);
                }
                _ => self.stats.messages_ignored += 1,
            }
            return Ok(());
        }

        match m.body {
            Body::Vote {
                pre,
                last_index,
                last_term,
                config_index,
                ..
            } => self.handle_vote_request(m, pre, last_index, last_term, config_index),
            Body::VoteResponse { pre, granted } => self.handle_vote_response(m.from, pre, granted),
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. }
                if self.role != Role::Leader =>
            {
                if self.role != Role::Follower {
                    // A leader exists in our term (§5.2: a candidate recognizes it).
                    self.become_follower(m.term, Some(m.from));
                }
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                if let Body::Append { .. } = m.body {
                    self.handle_append(m)?;
                } else if let Body::Snapshot { .. } = m.body {
                    self.handle_snapshot_chunk(m)?;
                } else if let Body::Heartbeat { commit, context } = m.body {
                    self.log.commit_to(commit);
                    let last_index = self.log.last_index();
                    self.send(
                        m.from,
                        Body::HeartbeatResponse {
                            context,
                            last_index,
                        },
                    );
                }
            }
            Body::AppendResponse {
                success,
                index,
                hint_index,
                hint_term,
            } if self.role == Role::Leader => {
                self.handle_append_response(m.from, success, index, hint_index, hint_term)
            }
            Body::HeartbeatResponse {
                context,
                last_index,
            } if self.role == Role::Leader => {
                self.handle_heartbeat_response(m.from, context, last_index)
            }
            Body::SnapshotResponse {
                index,
                term,
                next_offset,
                done,
            } if self.role == Role::Leader => {
                self.handle_snapshot_response(m.from, index, term, next_offset, done)
            }
            Body::TimeoutNow if self.can_campaign() && self.role != Role::Leader => {
                // §3.10: the leader chose us; campaign at once, skipping pre-vote.
                self.campaign(false, true);
            }
            Body::TimeoutNow if self.promotable() && self.role != Role::Leader => {
                // A committed configuration entry is not applied yet: typically a leader's
                // own removal, which it applied (and so handed over) before we did. Campaign
                // as soon as it is applied, unless a new term comes first.
                self.timeout_now_pending = true;
            }
            _ => self.stats.messages_ignored += 1,
        }
        Ok(())
    }

    fn handle_vote_request(
        &mut self,
        m: &Message<'_>,
        pre: bool,
        last_index: Index,
        last_term: Term,
        config_index: Index,
    ) {
        // §5.2: one vote per term, first come first served; a pre-vote for a later term is
        // only a question and commits us to nothing.
        let can_vote = self.vote == Some(m.from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre && m.term > self.term);
        // Configurations take effect when applied, so a candidate may campaign in one the
        // cluster has left. One change behind is safe (the majorities of consecutive
        // configurations overlap, and a joint one needs both), and is how an heir that has not
        // yet learned that its leader's removal committed gets elected. Two or more behind is
        // not: the candidate may lack entries committed by a majority of the current
        // configuration, and find a majority of its own among nodes that stopped hearing from
        // the cluster — a removed node, typically (found by the membership simulator). A node
        // not yet told that it was added or promoted still votes: such a candidate is ahead.
        // Without the exact index of our previous configuration (we started from a snapshot,
        // or installed one, since: a snapshot records the configuration as of its index, not
        // the index of the entry it came from), we answer as before: refusing could leave an
        // heir one change behind without the vote it needs.
        let recent_config = self
            .prev_config_index
            .is_none_or(|previous| config_index >= previous);
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term) && recent_config;
        if granted && !pre {
            self.election_elapsed = 0;
            self.vote = Some(m.from);
        }
        let term = if granted { m.term } else { self.term };
        self.send_with_term(m.from, term, Body::VoteResponse { pre, granted });
        if !granted && config_index < self.config_index {
            // The candidate does not know a configuration we have applied: tell it how far the
            // log is committed, which may be all it lacks to count itself, or us out.
            let index = self.log.committed;
            if let Ok(term) = self.log.term(index) {
                self.send(m.from, Body::Committed { index, term });
            }
        }
    }

    fn handle_vote_response(&mut self, from: NodeId, pre: bool, granted: bool) {
        let expected = if pre {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected {
            self.stats.messages_ignored += 1;
            return;
        }
        match self.record_vote(from, granted) {
            VoteResult::Won => self.won(pre),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, None);
            }
            VoteResult::Pending => {}
        }
    }

    fn handle_append(&mut self, m: &Message<'_>) -> Result<(), Error<S::Error>> {
        let Body::Append {
            prev_index,
            prev_term,
            commit,
            ref entries,
        } = m.body
        else {
            return Ok(());
        };
        let committed = self.log.committed;
        if prev_index < committed {
            // Everything up to our commit index already matches; say so and let the leader
            // resend from there.
            self.send_append_response(m.from, true, committed, 0, 0);
            return Ok(());
        }
        if !self.log.matches(prev_index, prev_term) {
            // §5.3 consistency check failed; hint where our logs may agree so the leader can
            // skip a whole term per round trip instead of one entry.
            let probe = prev_index.min(self.log.last_index());
            let (hint_index, hint_term) = self.log.find_conflict_by_term(probe, prev_term);
            self.send_append_response(m.from, false, prev_index, hint_index, hint_term);
            return Ok(());
        }
        match self.log.accept(prev_index, entries) {
            Ok(matched) => {
                self.log.commit_to(commit.min(matched));
                self.send_append_response(m.from, true, matched, 0, 0);
                Ok(())
            }
            Err(()) => {
                self.stats.messages_ignored += 1;
                Err(Error::Decode(crate::DecodeError::Invalid(
                    "append would overwrite a committed entry",
                )))
            }
        }
    }

    fn send_append_response(
        &mut self,
        to: NodeId,
        success: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    ) {
        let body = Body::AppendResponse {
            success,
            index,
            hint_index,
            hint_term,
        };
        self.send(to, body);
    }

    fn progress_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.iter_mut().find(|p| p.id == id)
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    ) {
        let hint = if hint_term > 0 {
            self.log.find_conflict_by_term(hint_index, hint_term).0
        } else {
            hint_index
        };
        let inflight_max = self.cfg.inflight_max;
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        pr.recent_active = true;
        // A paused follower is skipped when a commit is broadcast; remember that it may have
        // missed one.
        let was_paused = pr.is_paused(inflight_max);
        if !success {
            if pr.maybe_decrease_to(index, hint) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from, true);
            }
            return;
        }
        if !pr.maybe_update(index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot { index: snap } if pr.matched >= snap => pr.become_probe(),
            ProgressState::Replicate => pr.free_inflights_to(index),
            ProgressState::Snapshot { .. } => {}
        }
        self.maybe_send_timeout_now(from);
        if self.maybe_commit() {
            self.broadcast_append(true);
        } else {
            if was_paused {
                // Tell it the commit index now (with entries, if any are due), instead of
                // leaving it to the next heartbeat.
                self.send_append(from, true);
            }
            self.send_appends(from);
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, context: u64, follower_last: Index) {
        let inflight_max = self.cfg.inflight_max;
        let last = self.log.last_index();
        let context = context.min(self.last_context);
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        pr.recent_active = true;
        pr.acked_round = pr.acked_round.max(context);
        if follower_last < pr.matched {
            // The follower has less than it acknowledged: it lost its storage (a wiped data
            // directory) and restarted empty. Find its log again from what it has now. (A
            // delayed response can trigger this too; the cost is one probe round.)
            pr.matched = follower_last;
            pr.become_probe();
        }
        pr.on_heartbeat_response(inflight_max);
        if let ProgressState::Snapshot { .. } = pr.state {
            // No answer to the last chunk may have come: send it (again).
            self.send_snapshot_chunk(from);
        } else if pr.matched < last {
            self.send_append(from, true);
            self.send_appends(from);
        }
        self.release_reads();
    }

    // ----- leader output ------------------------------------------------------------------

    /// §5.4.2: commit the highest index a quorum has, if it is of the current term.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let me = self.id();
        let persisted = self.log.persisted_index();
        let progress = &self.progress;
        let index = joint_majority_index(&self.membership, |id| {
            if id == me {
                persisted
            } else {
                progress
                    .iter()
                    .find(|p| p.id == id)
                    .map_or(0, |p| p.matched)
            }
        });
        if index > self.log.committed && self.log.term(index) == Ok(self.term) {
            self.log.commit_to(index)
        } else {
            false
        }
    }

    /// The leader's own entries became durable.
    pub(crate) fn on_persisted(&mut self) {
        let persisted = self.log.persisted_index();
        let me = self.id();
        if let Some(pr) = self.progress_mut(me) {
            pr.maybe_update(persisted);
        }
        if self.maybe_commit() {
            self.broadcast_append(true);
        }
    }

    /// Packs pending proposals into appends to every follower (once per ready round).
    pub(crate) fn flush_broadcast(&mut self) {
        if self.broadcast_pending {
            self.broadcast_pending = false;
            self.broadcast_append(false);
        }
    }

    fn broadcast_append(&mut self, allow_empty: bool) {
        let me = self.id();
        for i in 0..self.progress.len() {
            let to = self.progress[i].id;
            if to != me {
                self.send_append(to, allow_empty);
                self.send_appends(to);
            }
        }
    }

    /// Streams appends to `to` while it is not paused and there is something new to send.
    fn send_appends(&mut self, to: NodeId) {
        while self.send_append(to, false) {}
    }

    /// Sends one append to `to`, carrying as many entries from its `next` as fit. Returns true
    /// if a message carrying entries was queued.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let inflight_max = self.cfg.inflight_max;
        let Some(pos) = self.progress.iter().position(|p| p.id == to) else {
            return false;
        };
        let pr = &self.progress[pos];
        let last = self.log.last_index();
        if pr.is_paused(inflight_max) || (pr.next > last && !allow_empty) {
            return false;
        }
        let prev_index = pr.next - 1;
        let prev_term = match self.log.term(prev_index) {
            Ok(t) => t,
            Err(StorageErrorKind::Compacted) => {
                // The follower needs entries we no longer have: it needs a snapshot (§7).
                let meta = self.log.storage.snapshot_meta();
                self.progress[pos].become_snapshot(meta.index, meta.term);
                self.send_snapshot_chunk(to);
                return false;
            }
            Err(_) => return false,
        };
        let next = pr.next;
        let (head, commit) = ((self.cfg.id, to, self.term), self.log.committed);
        let bytes_max = self.cfg.message_bytes_max;
        let log = &self.log;
        let mut sent_last = prev_index;
        let mut carried = 0;
        // An append may leave before this round is persisted (see `send_early`).
        let queued = self.outbox.push_early_with(to, head.2, bytes_max, |buf| {
            let mut w = AppendWriter::begin(buf, head, prev_index, prev_term, commit)?;
            if next <= last {
                let read = log.visit(next, last + 1, bytes_max, &mut |e| {
                    let ok = w.push(&e);
                    if ok {
                        sent_last = e.index;
                    }
                    ok
                });
                if read.is_err() {
                    return None; // compacted meanwhile: handled below as a snapshot case
                }
            }
            carried = w.count();
            Some(w.finish())
        });
        if !queued {
            if next < self.log.first_index() {
                let meta = self.log.storage.snapshot_meta();
                self.progress[pos].become_snapshot(meta.index, meta.term);
                self.send_snapshot_chunk(to);
            } else {
                self.stats.outbox_dropped += 1;
            }
            return false;
        }
        self.progress[pos].sent(sent_last, carried > 0);
        carried > 0
    }

    /// Sends the next chunk of the current snapshot to `to` (in snapshot state), one chunk in
    /// flight at a time. If the snapshot changed since the transfer began (a newer compaction),
    /// the transfer starts over with the new one.
    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(pos) = self.progress.iter().position(|p| p.id == to) else {
            return;
        };
        let ProgressState::Snapshot { index } = self.progress[pos].state else {
            return;
        };
        if self.progress[pos].probe_sent {
            return;
        }
        let storage = &self.log.storage;
        let meta = storage.snapshot_meta();
        let total = storage.snapshot_len();
        if (meta.index, meta.term) != (index, self.progress[pos].snapshot_term) {
            self.progress[pos].become_snapshot(meta.index, meta.term);
        }
        let offset = self.progress[pos].snapshot_offset.min(total);
        let len = (total - offset).min(self.cfg.effective_snapshot_chunk_bytes() as u64) as usize;
        let head = (self.cfg.id, to, self.term);
        let queued = self
            .outbox
            .push_with(to, self.cfg.message_bytes_max, |buf| {
                encode_snapshot_chunk(buf, head, &meta, total, offset, len, |dst| {
                    storage.read_snapshot(offset, dst).unwrap_or(0)
                })
            });
        if queued {
            self.progress[pos].probe_sent = true;
        } else {
            self.stats.outbox_dropped += 1;
        }
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: Index,
        term: Term,
        next_offset: u64,
        done: bool,
    ) {
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        pr.recent_active = true;
        let ProgressState::Snapshot { index: sending } = pr.state else {
            return;
        };
        if (sending, pr.snapshot_term) != (index, term) {
            return; // about a snapshot we no longer send
        }
        pr.probe_sent = false;
        if done {
            pr.maybe_update(index);
            pr.become_probe();
            self.send_append(from, true);
        } else {
            pr.snapshot_offset = next_offset;
            self.send_snapshot_chunk(from);
        }
    }

    /// Follower: one chunk of the leader's snapshot (§7). Chunks must arrive in order; the
    /// answer tells the leader where to continue. The last chunk installs the snapshot.
    fn handle_snapshot_chunk(&mut self, m: &Message<'_>) -> Result<(), Error<S::Error>> {
        let Body::Snapshot {
            ref meta,
            total_len,
            offset,
            data,
        } = m.body
        else {
            return Ok(());
        };
        let committed = self.log.committed;
        if meta.index <= committed {
            // We already have everything it covers (stale or duplicate).
            self.send_append_response(m.from, true, committed, 0, 0);
            return Ok(());
        }
        if self.log.matches(meta.index, meta.term) {
            // Our log already holds the snapshot's last entry, so it holds everything before
            // it too (log matching): no need for the data.
            self.log.commit_to(meta.index);
            self.send_append_response(m.from, true, meta.index, 0, 0);
            return Ok(());
        }
        let id = (meta.index, meta.term);
        if offset == 0 {
            self.log
                .storage
                .begin_snapshot(meta)
                .map_err(Error::Storage)?;
            self.incoming = Some((id.0, id.1, 0));
        }
        let expected = match self.incoming {
            Some((i, t, next)) if (i, t) == id => next,
            _ => 0,
        };
        if offset != expected || self.incoming.is_none() {
            let body = Body::SnapshotResponse {
                index: id.0,
                term: id.1,
                next_offset: expected,
                done: false,
            };
            self.send(m.from, body);
            return Ok(());
        }
        if let Err(e) = self.log.storage.write_snapshot(data) {
            // Start over from scratch next time (e.g. the snapshot does not fit our storage).
            self.incoming = None;
            return Err(Error::Storage(e));
        }
        let next = expected + data.len() as u64;
        self.incoming = Some((id.0, id.1, next));
        let done = next == total_len;
        if done {
            self.incoming = None;
            self.log.storage.finish_snapshot().map_err(Error::Storage)?;
            self.log.installed_snapshot(meta.index);
            self.membership = meta.membership.clone();
            // The snapshot may skip changes: what came before its configuration is unknown.
            self.config_index = meta.index;
            self.config_exact = false;
            self.prev_config_index = None;
            self.pending_restore = Some(meta.clone());
        }
        let body = Body::SnapshotResponse {
            index: id.0,
            term: id.1,
            next_offset: next,
            done,
        };
        self.send(m.from, body);
        Ok(())
    }

    /// Local compaction: `meta` describes a snapshot the caller is about to write at the
    /// applied index.
    pub(crate) fn snapshot_meta_at_applied(&self) -> Option<SnapshotMeta> {
        let index = self.log.applied;
        let term = self.log.term(index).ok()?;
        Some(SnapshotMeta {
            index,
            term,
            membership: self.membership.clone(),
        })
    }

    fn broadcast_heartbeat(&mut self) {
        let Some(seq) = self.round_seq.checked_add(1) else {
            // 65535 rounds this tick already; pending reads wait for the next tick's round.
            return;
        };
        self.round_seq = seq;
        self.last_context = (self.ticks << 16) | u64::from(seq);
        let me = self.id();
        for i in 0..self.progress.len() {
            let pr = &self.progress[i];
            if pr.id == me {
                continue;
            }
            let (to, commit) = (pr.id, pr.matched.min(self.log.committed));
            let context = self.last_context;
            self.send_early(to, Body::Heartbeat { commit, context });
        }
        self.release_reads();
    }

    fn send(&mut self, to: NodeId, body: Body<'_>) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    /// Queues a leader's message that may leave before the round is persisted (dissertation
    /// §10.2.1): appends and heartbeats reveal the leader's log and commit index, and the
    /// leader counts itself toward a commit only with what is durable on its own disk
    /// (`maybe_commit`). A crash may lose entries it already sent, but it cannot become leader
    /// of this term again to write others in their place, provided the term and its vote for
    /// itself are durable; `RawNode::early_messages` checks that.
    fn send_early(&mut self, to: NodeId, body: Body<'_>) {
        let msg = Message {
            from: self.cfg.id,
            to,
            term: self.term,
            body,
        };
        if !self
            .outbox
            .push_early_with(to, msg.term, self.cfg.message_bytes_max, |buf| {
                msg.encode(buf)
            })
        {
            self.stats.outbox_dropped += 1;
        }
    }

    fn send_with_term(&mut self, to: NodeId, term: Term, body: Body<'_>) {
        let msg = Message {
            from: self.cfg.id,
            to,
            term,
            body,
        };
        if !self
            .outbox
            .push_with(to, self.cfg.message_bytes_max, |buf| msg.encode(buf))
        {
            self.stats.outbox_dropped += 1;
        }
    }

    /// Checks the invariants that must hold between any two inputs.
    pub(crate) fn invariants_hold(&self) -> bool {
        let log = &self.log;
        log.applied <= log.committed
            && log.committed <= log.last_index()
            && (self.role != Role::Leader || self.leader == Some(self.cfg.id))
            && (self.role != Role::Candidate || self.vote == Some(self.cfg.id))
            && self.progress.iter().all(|p| p.matched < p.next)
    }
}
