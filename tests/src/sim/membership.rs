//! Membership changes in the simulator: node slots that are not (yet) members, and the
//! configuration changer, an operator that changes the cluster's membership while it runs
//! (TinyKV's `confchanger` in `GenericTest`, and more).
//!
//! # Node slots
//!
//! With a [`ConfChangePlan`] the simulation has up to 5 node *slots* (ids `1..=slots`). The
//! first `initial_voters` start as the voters of a new cluster; the others start *joining*:
//! with an empty disk and no configuration (`Config::bootstrap` empty), following whoever
//! leads once a configuration change adds them. Clients know every slot, as TinyKV's clients
//! know every store.
//!
//! # What the changer does
//!
//! Every few ticks of a round's safety phase, through the current leader, it issues one random
//! valid change to the leader's configuration: add a learner, add a voter, promote a learner,
//! demote a voter, remove a voter (the leader too) or a learner, replace a voter, or change two
//! voters at once (joint consensus); single-voter changes go through a joint configuration on
//! some draws (`ConfChangeMode::Joint`). It keeps the number of voters within
//! `voters_min..=voters_max`, retries what core refuses as retryable (`Pending`, `InJoint`,
//! `NotLeader`, `Transferring`, `Full`), and counts any other refusal as a failure (it
//! computes each change from the leader's own configuration, so core must accept it). Now and
//! then it hands leadership to another voter instead.
//!
//! It usually waits for a change to be *resolved* before the next (now and then it does not,
//! and core must refuse the second while the first is not applied): some leader has applied
//! its index (it took effect, or another entry won that index), or a leader of a later term
//! has applied an entry of its own term (then the change can never commit: a log holding it is
//! less up to date than that committed entry). Its bookkeeping waits until every change it
//! proposed is resolved, and only moves forward with the applied index it reads, so a stale
//! leader cannot make it forget a change.
//!
//! # Removed nodes, and re-adding them
//!
//! A removed node may keep running (it must not disrupt the cluster: it no longer campaigns
//! once it has applied its removal, and members ignore its vote requests), until the changer
//! *retires* it: it stops it, as an operator decommissions a server, but only once no node
//! needs it any more (see [`ConfChanger::may_retire`]): a voter that has not applied the
//! change may still need its vote, and a removed leader leads on until it has handed over to
//! a voter of the new configuration, as it may be the only node that can tell the new voters
//! that they are voters. A retired node never comes back with its
//! old state (Raft gives no guarantee to a removed node that returns with it): its slot comes
//! back only with a wiped disk, as a new, joining node that a later change adds.
//!
//! Usually that new node gets a **new id** (`old + ID_STRIDE`), as etcd requires of a member
//! added again and as TinyKV's tests do with a new peer id: the log may still hold
//! configurations that counted the old node, and a node that replays them under the old id
//! would take them for its own. (The simulator found that with the same id: the wiped node,
//! catching up from index 1, applied a configuration of the past in which it was the only
//! voter, and elected itself with half a log.) The same id is reused only when that cannot
//! happen, which an operator can also check: every node that holds state (running or down, not
//! retired) has compacted its log past the point where the old node left, so a new node catches
//! up from a snapshot whose configuration no longer counts it; every such node has applied
//! and made durable a commit index covering that point, so none will campaign in or lead a
//! configuration that counts the old node; and [`WIPE_QUIET_TICKS`] have passed since, so no
//! message to the old node is still in flight. `careless_id_reuse` breaks that rule on purpose,
//! to show that the checks catch it.
//!
//! A node outside every configuration since its disk was last wiped must receive no log entry:
//! that is checked every tick.

use tinyraft::fault::{FaultRng, SplitMix64};
use tinyraft::{ConfChange, ConfChangeError, ConfChangeMode, Index, Membership, NodeId, Term};

use super::scenario::{Sim, ID_STRIDE};
use super::STEPS_PER_TICK;

/// How a scenario changes its membership.
#[derive(Clone, Copy, Debug)]
pub struct ConfChangePlan {
    /// Node slots; None: 5 on even seeds, 4 on odd ones.
    pub slots: Option<usize>,
    /// Voters the cluster starts with (ids `1..=initial_voters`); the other slots join.
    pub initial_voters: usize,
    /// The changer never leaves fewer voters than this.
    pub voters_min: usize,
    /// The changer never makes more voters than this.
    pub voters_max: usize,
    /// The changer issues random changes during each round's safety phase (otherwise only a
    /// script changes the configuration).
    pub random: bool,
    /// Breaks the re-adding rule on purpose: a retired node comes back under its old id with
    /// a wiped disk at once. Only for showing that the checks catch it.
    pub careless_id_reuse: bool,
}

impl ConfChangePlan {
    /// Random changes among up to 5 slots, starting from 3 voters, keeping at least
    /// `voters_min`.
    pub const fn random(voters_min: usize) -> Self {
        Self {
            slots: None,
            initial_voters: 3,
            voters_min,
            voters_max: 5,
            random: true,
            careless_id_reuse: false,
        }
    }
}

/// Ticks between the moment no node may still use a configuration that counts a retired node
/// and re-adding it under the same id: longer than any message may be delayed on the wire.
pub const WIPE_QUIET_TICKS: u64 = 10;

/// What the changer did in one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfStats {
    /// Changes accepted by a leader.
    pub accepted: u64,
    /// Of those, through a joint configuration.
    pub joint: u64,
    /// Of those, removing or demoting the leader that accepted it.
    pub leader_out: u64,
    /// Accepted changes that took effect (a leader applied them).
    pub took_effect: u64,
    /// Refused as retryable.
    pub retried: u64,
    /// Nodes retired (stopped after their removal).
    pub retired: u64,
    /// Disks wiped to re-add a node.
    pub wiped: u64,
    /// Of those, re-added under their old id.
    pub same_id: u64,
    /// Leadership transfers asked for.
    pub transfers: u64,
}

impl ConfStats {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ConfStats) {
        self.accepted += other.accepted;
        self.joint += other.joint;
        self.leader_out += other.leader_out;
        self.took_effect += other.took_effect;
        self.retried += other.retried;
        self.retired += other.retired;
        self.wiped += other.wiped;
        self.same_id += other.same_id;
        self.transfers += other.transfers;
    }
}

/// The configuration changer of one run (see the module docs). Its bookkeeping is per node
/// slot (index into `Sim::nodes`); a slot's node id changes when it is re-added under a new id.
pub struct ConfChanger {
    /// The plan.
    pub plan: ConfChangePlan,
    rng: SplitMix64,
    /// The accepted change not yet resolved: its index, the term it was proposed in, and the
    /// configuration it aims at.
    pending: Vec<(Index, Term, Membership)>,
    /// The highest applied index the bookkeeping has read a configuration at.
    seen_applied: Index,
    /// Per slot: in no configuration since its disk was last wiped (or since the start).
    fresh: Vec<bool>,
    /// Per slot: out of the configuration as of this applied index (None: a member, or fresh).
    removed_at: Vec<Option<Index>>,
    /// Per slot: retired, and since this step its id may be reused (see the module docs).
    reusable_since: Vec<Option<u64>>,
    next_at: u64,
    /// Whether the change resolved last took effect.
    last_took_effect: bool,
    /// Counters.
    pub stats: ConfStats,
}

fn is_retryable(e: ConfChangeError) -> bool {
    matches!(
        e,
        ConfChangeError::Pending
            | ConfChangeError::InJoint
            | ConfChangeError::NotLeader { .. }
            | ConfChangeError::Transferring
            | ConfChangeError::Full
    )
}

impl ConfChanger {
    /// The changer of a run with `slots` slots, of which the first `initial` are voters.
    pub fn new(plan: ConfChangePlan, slots: usize, initial: usize, rng: SplitMix64) -> Self {
        Self {
            plan,
            rng,
            pending: Vec::new(),
            seen_applied: 0,
            fresh: (0..slots).map(|i| i >= initial).collect(),
            removed_at: vec![None; slots],
            reusable_since: vec![None; slots],
            next_at: 0,
            last_took_effect: false,
            stats: ConfStats::default(),
        }
    }

    /// True while an accepted change is not resolved.
    pub fn pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// True if slot `i` was seen out of the configuration (and is not fresh).
    pub fn is_removed(&self, i: usize) -> bool {
        self.removed_at[i].is_some()
    }

    /// True if slot `i` is in no configuration since its disk was last wiped.
    pub fn is_fresh(&self, i: usize) -> bool {
        self.fresh[i]
    }

    /// True if retired slot `i` may come back under its old id now.
    pub fn may_reuse_id(&self, i: usize, now: u64) -> bool {
        self.reusable_since[i].is_some_and(|t| now >= t + WIPE_QUIET_TICKS * STEPS_PER_TICK)
    }

    /// The leader's view, if it is not behind what was read already: its slot, term, applied
    /// index and configuration.
    fn leader_view(&self, sim: &Sim) -> Option<(usize, Term, Index, Membership)> {
        let raw = sim.leader_node()?;
        if raw.applied() < self.seen_applied {
            return None;
        }
        let l = sim.slot(raw.id())?;
        Some((l, raw.term(), raw.applied(), raw.membership().clone()))
    }

    /// Bookkeeping, every tick, faults or not: resolves the pending change, records who left
    /// the configuration, and checks that nodes outside every configuration receive nothing.
    pub fn observe(&mut self, sim: &mut Sim) {
        for (i, n) in sim.nodes.iter().enumerate() {
            let Some(raw) = n.raw.as_deref() else {
                continue;
            };
            if self.fresh[i] && (raw.last_index() > 0 || *raw.membership() != Membership::EMPTY) {
                sim.violations.push(format!(
                    "node {} is in no configuration yet holds entries up to {} and \
                     configuration {:?}",
                    n.id,
                    raw.last_index(),
                    raw.membership()
                ));
            }
        }
        let Some((l, term, applied, m)) = self.leader_view(sim) else {
            return;
        };
        let raw = sim.nodes[l].raw.as_deref().expect("up");
        let own_term_applied = raw.term_at(applied) == Some(term);
        let mut notes = Vec::new();
        self.pending.retain(|(index, proposed_in, target)| {
            if applied < *index && !(term > *proposed_in && own_term_applied) {
                return true;
            }
            let effect = applied >= *index && (m == *target || m == target.leave_joint());
            notes.push((*index, effect));
            false
        });
        for (index, effect) in notes {
            self.stats.took_effect += u64::from(effect);
            self.last_took_effect = effect;
            let what = if effect { "took effect" } else { "was lost" };
            sim.note(format!("configuration change at {index} {what}"));
        }
        if !self.pending.is_empty() {
            return;
        }
        self.seen_applied = applied;
        if m.is_joint() {
            return;
        }
        for i in 0..self.fresh.len() {
            let id = sim.ids[i];
            if m.contains(id) {
                self.removed_at[i] = None;
            } else if !self.fresh[i] && self.removed_at[i].is_none() {
                self.removed_at[i] = Some(applied);
                sim.note(format!(
                    "node {id} is out of the configuration as of {applied}"
                ));
            }
            if let Some(r) = self.removed_at[i] {
                if sim.retired[i] && self.reusable_since[i].is_none() && self.id_reusable(sim, i, r)
                {
                    self.reusable_since[i] = Some(sim.now);
                }
            }
        }
    }

    /// True if removed slot `x` may be stopped for good: every other node that holds state
    /// has left behind every configuration that counts it (a running node's configuration no
    /// longer contains it — durably so, as a configuration is applied only once synced — and a
    /// stopped one's durable commit index covers the point where it left). Until then a voter
    /// may still need its vote or, in a joint configuration, its acknowledgement; and a removed
    /// leader may be the only node that can tell the new voters they are voters. That is what
    /// an operator checks with `tinyraft status` before decommissioning a removed server.
    pub fn may_retire(&self, sim: &Sim, x: usize) -> bool {
        let Some(r) = self.removed_at[x] else {
            return false;
        };
        let id = sim.ids[x];
        !sim.retired[x]
            && sim.nodes.iter().enumerate().all(|(i, n)| {
                i == x
                    || sim.retired[i]
                    || self.fresh[i]
                    || match n.raw.as_deref() {
                        Some(raw) => !raw.membership().contains(id),
                        None => n.durable_commit() >= r,
                    }
            })
    }

    /// True if the old id of retired slot `x`, out of the configuration as of `r`, can come
    /// back on a wiped disk (see the module docs): every node holding state has applied, made
    /// durable a commit covering, and compacted its log past `r`.
    fn id_reusable(&self, sim: &Sim, x: usize, r: Index) -> bool {
        sim.nodes.iter().enumerate().all(|(i, n)| {
            let compacted = tinyraft::Storage::first_index(n.disk().inner()) > r;
            let applied = n.raw.as_deref().is_none_or(|raw| raw.applied() >= r);
            i == x
                || sim.retired[i]
                || self.fresh[i]
                || (compacted && applied && n.durable_commit() >= r)
        })
    }

    /// Retires removed slot `i`: stops it for good (until it is re-added on a wiped disk).
    fn retire(&mut self, sim: &mut Sim, i: usize) {
        self.stats.retired += 1;
        sim.note(format!("node {} retires (removed)", sim.ids[i]));
        sim.retire(i);
    }

    /// Wipes retired slot `i` and starts it again as a new, joining node: under its old id
    /// if that is safe (and the draw says so) or the plan is careless, else under a new one.
    /// Returns the id.
    fn wipe(&mut self, sim: &mut Sim, i: usize, prefer_same_id: bool) -> NodeId {
        let old = sim.ids[i];
        let same = self.plan.careless_id_reuse || (prefer_same_id && self.may_reuse_id(i, sim.now));
        let id = if same { old } else { old + ID_STRIDE };
        self.stats.wiped += 1;
        if same {
            self.stats.same_id += 1;
        }
        self.fresh[i] = true;
        self.removed_at[i] = None;
        self.reusable_since[i] = None;
        sim.note(format!(
            "node {old} comes back with a wiped disk as node {id}, joining"
        ));
        sim.wipe_and_start(i, id);
        id
    }

    /// Proposes `changes` through the current leader. `Ok(None)`: no leader to ask.
    pub fn propose(
        &mut self,
        sim: &mut Sim,
        changes: &[ConfChange],
        mode: ConfChangeMode,
    ) -> Result<Option<Index>, ConfChangeError> {
        let Some(l) = sim.leader().and_then(|l| sim.slot(l)) else {
            return Ok(None);
        };
        let raw = sim.nodes[l].raw.as_deref_mut().expect("up");
        let (id, before, term) = (raw.id(), raw.membership().clone(), raw.term());
        match raw.propose_conf_change(changes, mode, b"") {
            Ok(index) => {
                let target = before.apply(changes, mode).expect("core accepted it");
                self.stats.accepted += 1;
                if target.is_joint() {
                    self.stats.joint += 1;
                }
                if !target.leave_joint().is_voter(id) {
                    self.stats.leader_out += 1;
                }
                for c in changes {
                    if let ConfChange::AddVoter(a) | ConfChange::AddLearner(a) = *c {
                        if let Some(i) = sim.slot(a) {
                            self.fresh[i] = false;
                        }
                    }
                }
                sim.note(format!(
                    "leader {id} accepted {changes:?} ({mode:?}) at {index}: {target:?}"
                ));
                self.pending.push((index, term, target));
                Ok(Some(index))
            }
            Err(e) => {
                if is_retryable(e) {
                    self.stats.retried += 1;
                }
                sim.note(format!("leader {id} refused {changes:?} ({mode:?}): {e}"));
                Err(e)
            }
        }
    }

    /// Wipes the retired slots `changes` adds, giving the changes their new ids.
    fn wipe_added(&mut self, sim: &mut Sim, changes: &mut [ConfChange], prefer_same_id: bool) {
        for c in changes.iter_mut() {
            if let ConfChange::AddVoter(a) | ConfChange::AddLearner(a) = c {
                let i = sim.slot(*a).expect("a slot's id");
                if sim.retired[i] {
                    *a = self.wipe(sim, i, prefer_same_id);
                }
            }
        }
    }

    /// One random action, every few ticks of a safety phase.
    pub fn act(&mut self, sim: &mut Sim) {
        if sim.now < self.next_at {
            return;
        }
        self.next_at = sim.now + (1 + self.rng.below(6)) * STEPS_PER_TICK;
        // Now and then an impatient operator does not wait for the last change: core must
        // refuse a second one while the first is not applied (one change at a time).
        if !self.pending.is_empty() && !self.rng.chance(250_000) {
            return;
        }
        // Removed nodes run on for a while, then are decommissioned, once no node needs them.
        for i in 0..self.fresh.len() {
            if self.may_retire(sim, i) && self.rng.chance(150_000) {
                self.retire(sim, i);
            }
        }
        let Some((l, _, _, m)) = self.leader_view(sim) else {
            return;
        };
        if m.is_joint() {
            return;
        }
        if self.rng.chance(50_000) {
            let lid = sim.ids[l];
            let others: Vec<NodeId> = m.voters.iter().copied().filter(|&v| v != lid).collect();
            if !others.is_empty() {
                let to = self.pick(&others);
                let raw = sim.nodes[l].raw.as_deref_mut().expect("up");
                self.stats.transfers += 1;
                let r = raw.transfer_leader(to);
                sim.note(format!("leader {lid} hands over to {to}: {r:?}"));
                return;
            }
        }
        let Some((mut changes, mode)) = self.choose(sim, &m) else {
            return;
        };
        let prefer_same_id = self.rng.chance(500_000);
        self.wipe_added(sim, &mut changes, prefer_same_id);
        match self.propose(sim, &changes, mode) {
            Ok(_) => {}
            Err(e) if is_retryable(e) => {}
            Err(e) => sim.violations.push(format!(
                "the leader refused {changes:?} ({mode:?}), computed from its own \
                 configuration {m:?}: {e}"
            )),
        }
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.rng.below(from.len() as u64) as usize]
    }

    /// A random valid change of `m` (not joint), or None if the draw found nothing to do. A
    /// retired slot it adds still has its old id; [`ConfChanger::wipe_added`] gives it its
    /// new one.
    fn choose(&mut self, sim: &Sim, m: &Membership) -> Option<(Vec<ConfChange>, ConfChangeMode)> {
        use ConfChange::{AddLearner, AddVoter, Remove};
        let voters: Vec<NodeId> = m.voters.to_vec();
        let learners: Vec<NodeId> = m.learners.to_vec();
        // New nodes: joining slots, and retired ones (they come back wiped).
        let addable: Vec<NodeId> = (0..self.fresh.len())
            .filter(|&i| self.fresh[i] || sim.retired[i])
            .map(|i| sim.ids[i])
            .collect();
        let (nv, min, max) = (voters.len(), self.plan.voters_min, self.plan.voters_max);
        let mut options: Vec<Vec<ConfChange>> = Vec::new();
        if !addable.is_empty() {
            options.push(vec![AddLearner(self.pick(&addable))]);
            if nv < max {
                options.push(vec![AddVoter(self.pick(&addable))]);
            }
            // Replace a voter (joint: two voters change).
            let (a, v) = (self.pick(&addable), self.pick(&voters));
            options.push(vec![AddVoter(a), Remove(v)]);
        }
        if !learners.is_empty() {
            if nv < max {
                options.push(vec![AddVoter(self.pick(&learners))]);
            }
            options.push(vec![Remove(self.pick(&learners))]);
        }
        if nv > min {
            let v = self.pick(&voters);
            options.push(vec![Remove(v)]);
            options.push(vec![AddLearner(v)]);
        }
        if nv >= min + 2 {
            let (a, b) = (self.pick(&voters), self.pick(&voters));
            if a != b {
                options.push(vec![Remove(a), Remove(b)]);
            }
        }
        let promotable: Vec<NodeId> = addable.iter().chain(&learners).copied().collect();
        if nv + 2 <= max && promotable.len() >= 2 {
            let (a, b) = (self.pick(&promotable), self.pick(&promotable));
            if a != b {
                options.push(vec![AddVoter(a), AddVoter(b)]);
            }
        }
        if options.is_empty() {
            return None;
        }
        let i = self.rng.below(options.len() as u64) as usize;
        let changes = options.swap_remove(i);
        let mode = if self.rng.chance(250_000) {
            ConfChangeMode::Joint
        } else {
            ConfChangeMode::Auto
        };
        Some((changes, mode))
    }
}

/// Scripted membership changes (for scenarios with a [`ConfChangePlan`]).
impl Sim {
    fn with_changer<T>(&mut self, f: impl FnOnce(&mut ConfChanger, &mut Sim) -> T) -> T {
        let mut changer = self
            .changer
            .take()
            .expect("a scenario with a ConfChangePlan");
        let out = f(&mut changer, self);
        self.changer = Some(changer);
        out
    }

    /// Changes the configuration through the current leader, retrying what core refuses as
    /// retryable and what was lost, until a leader has applied it (and left the joint
    /// configuration, if any).
    pub fn change_configuration(
        &mut self,
        changes: &[ConfChange],
        mode: ConfChangeMode,
        ticks: u64,
    ) -> Result<(), String> {
        let deadline = self.now + ticks * STEPS_PER_TICK;
        while self.now < deadline {
            let r = self.with_changer(|c, sim| {
                if c.pending() {
                    return Ok(None);
                }
                c.propose(sim, changes, mode)
            });
            match r {
                Ok(Some(_)) => {
                    let left = deadline.saturating_sub(self.now) / STEPS_PER_TICK;
                    self.run_until(left, "the change being resolved", |s| {
                        s.changer.as_ref().is_some_and(|c| !c.pending())
                            && s.settled_members().is_some()
                    })?;
                    if self.changer.as_ref().is_some_and(|c| c.last_took_effect) {
                        return Ok(());
                    }
                }
                Err(e) if !is_retryable(e) => {
                    return Err(format!("{changes:?} ({mode:?}) refused: {e}"));
                }
                _ => self.run_ticks(1)?,
            }
        }
        Err(format!(
            "{changes:?} ({mode:?}) not done within {ticks} ticks; {}",
            self.describe_memberships()
        ))
    }

    /// Retires node `id` (once it is out of the configuration) and brings its slot back as a
    /// new, joining node with a wiped disk and a new id, which it returns: what an operator
    /// does to replace a removed server's machine.
    pub fn replace_node(&mut self, id: NodeId, ticks: u64) -> Result<NodeId, String> {
        let i = self.slot(id).ok_or(format!("no node {id}"))?;
        let done = |s: &Sim| s.retired[i] || s.changer.as_ref().is_some_and(|c| c.may_retire(s, i));
        let what = "the node being out of every node's configuration";
        self.run_until(ticks, what, done)?;
        Ok(self.with_changer(|c, sim| {
            if !sim.retired[i] {
                c.retire(sim, i);
            }
            c.wipe(sim, i, false)
        }))
    }

    /// Hands leadership to `to` (asking the leader again each tick) until it leads.
    pub fn transfer_leader(&mut self, to: NodeId, ticks: u64) -> Result<(), String> {
        let deadline = self.now + ticks * STEPS_PER_TICK;
        while self.leader() != Some(to) {
            if self.now >= deadline {
                return Err(format!(
                    "node {to} does not lead after {ticks} ticks; {}",
                    self.describe_memberships()
                ));
            }
            if let Some(l) = self.leader().and_then(|l| self.slot(l)) {
                if let Some(raw) = self.nodes[l].raw.as_deref_mut() {
                    let _ = raw.transfer_leader(to);
                }
            }
            self.run_ticks(1)?;
        }
        Ok(())
    }
}
