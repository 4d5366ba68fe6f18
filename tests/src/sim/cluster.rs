//! Simulated nodes: the real `RawNode` and the real `KvStore`, driven like the node runtime
//! drives them, over the simulated disk and network.
//!
//! The request routing is the runtime's (`tinyraft_std::runtime`): a follower redirects; the
//! leader proposes writes and remembers them by log index, answers them when that index is
//! applied (or redirects with "not proposed" if another entry took the index), serves reads by
//! ReadIndex once the apply point reaches the read index, and on losing leadership tells every
//! waiting client to go elsewhere, marking writes as "maybe proposed".
//!
//! One refinement over the runtime: a node remembers, per client session, the latest write it
//! proposed in this incarnation, and never answers "not proposed" (a redirect saying so, or
//! "busy") to a copy of that write. The network may duplicate a request: one copy proposed and
//! applied (its answer lost) and another answered "not proposed" would otherwise let the client
//! count an applied write as definitely failed. (Found by the membership simulator: a leader
//! handing over proposed one copy, then answered "busy" to the duplicate.)

use std::collections::BTreeMap;

use tinyraft::fault::{FaultyStorage, LinkFaults, SplitMix64};
use tinyraft::kv::{ArenaMap, KvStore, Request};
use tinyraft::{
    Config, ConfigEntry, EntryKind, Index, Membership, Message, NodeId, ProposeErrorKind, RawNode,
    ReadError, Role,
};

use super::checker::Invariants;
use super::network::{
    send_client_packet, Addr, NetPort, NodeTransport, Payload, Reply, SharedWire,
};
use super::storage::{hash_entry, SharedRegistry, SimStorage};

/// A node's storage: core's fault middleware over the simulated disk.
pub type NodeStorage = FaultyStorage<SimStorage>;
/// The Raft node the simulation runs.
pub type SimRaw = RawNode<NodeStorage>;
/// The state machine the simulation runs (sorted arena map, 64 sessions).
pub type SimKv = KvStore<ArenaMap<4096, { 256 * 1024 }>, 64>;

/// Client requests a leader keeps waiting at once before answering "busy".
pub const PENDING_MAX: usize = 256;

#[derive(Clone, Copy, Debug)]
struct PendingWrite {
    client: usize,
    nonce: u64,
    client_id: u64,
    seq: u64,
}

#[derive(Clone, Debug)]
struct PendingRead {
    client: usize,
    nonce: u64,
    request: Vec<u8>,
}

/// How nodes are configured in one run.
#[derive(Clone, Copy, Debug)]
pub struct NodeSettings {
    /// Pre-vote (dissertation §9.6).
    pub pre_vote: bool,
    /// Check-quorum (§6.2).
    pub check_quorum: bool,
    /// Lease reads (§6.4.1); needs check-quorum.
    pub lease_reads: bool,
    /// Election timeout base, in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// Append messages in flight per follower (flow control).
    pub inflight_max: usize,
    /// Uncommitted entries above which proposals are refused (backpressure).
    pub uncommitted_entries_max: u64,
    /// Committed entries handed out per ready round.
    pub apply_entries_max: u64,
    /// Snapshot and compact the log after this many applied entries (0: never).
    pub compact_after: u64,
}

/// One simulated node.
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    /// The voters it starts a new cluster with; empty: it joins an existing cluster (it starts
    /// with no configuration and learns one from the leader).
    bootstrap: Vec<NodeId>,
    /// The running node; None while crashed.
    pub raw: Option<Box<SimRaw>>,
    /// The disk while the node is down.
    disk: Option<NodeStorage>,
    /// Outgoing Raft traffic (survives crashes: what it holds is already "in flight").
    pub transport: Box<NodeTransport>,
    kv: Box<SimKv>,
    writes: BTreeMap<Index, PendingWrite>,
    /// Per client session: the latest write sequence number proposed in this incarnation.
    proposed_seq: BTreeMap<u64, u64>,
    reads: BTreeMap<u64, PendingRead>,
    confirmed: Vec<(Index, PendingRead)>,
    next_read_id: u64,
    was_leader: bool,
    /// Ticks happen when `(step + tick_phase) % steps_per_tick == 0`.
    pub tick_phase: u64,
    /// Crashes so far.
    pub crashes: u64,
    /// Sync failures injected so far.
    pub sync_failures: u64,
    /// Last index this incarnation applied (to check applying is in order, without gaps).
    last_applied: Index,
    /// Snapshots taken (log compactions).
    pub snapshots_taken: u64,
    /// Snapshots restored (at start or received from the leader).
    pub snapshots_restored: u64,
}

/// What the nodes share: the wire, the RNG for client-link faults, the invariants.
pub struct NodeCtx<'a> {
    /// The network.
    pub wire: &'a SharedWire,
    /// Randomness for client-link faults.
    pub rng: &'a mut SplitMix64,
    /// Faults of client links.
    pub client_faults: LinkFaults,
    /// Safety properties.
    pub inv: &'a mut Invariants,
}

fn reply(ctx: &mut NodeCtx<'_>, client: usize, nonce: u64, reply: Reply) {
    let payload = Payload::Reply { nonce, reply };
    send_client_packet(
        ctx.wire,
        ctx.rng,
        ctx.client_faults,
        Addr::Client(client),
        payload,
    );
}

fn entry_hash(term: u64, kind: EntryKind, data: &[u8]) -> u64 {
    hash_entry(0, term, kind, data)
}

impl SimNode {
    /// A new node with an empty disk, of a new cluster of `voters`, or joining one if
    /// `voters` is empty.
    pub fn new(
        id: NodeId,
        voters: &[NodeId],
        registry: SharedRegistry,
        transport: NodeTransport,
        tick_phase: u64,
    ) -> Self {
        Self {
            id,
            bootstrap: voters.to_vec(),
            raw: None,
            disk: Some(Self::empty_disk(id, voters, registry)),
            transport: Box::new(transport),
            kv: Box::new(SimKv::new(ArenaMap::new())),
            writes: BTreeMap::new(),
            proposed_seq: BTreeMap::new(),
            reads: BTreeMap::new(),
            confirmed: Vec::new(),
            next_read_id: 1,
            was_leader: false,
            tick_phase,
            crashes: 0,
            sync_failures: 0,
            last_applied: 0,
            snapshots_taken: 0,
            snapshots_restored: 0,
        }
    }

    fn empty_disk(id: NodeId, voters: &[NodeId], registry: SharedRegistry) -> NodeStorage {
        let membership =
            (!voters.is_empty()).then(|| Membership::from_voters(voters).expect("valid voters"));
        NodeStorage::new(SimStorage::new(id, membership, registry))
    }

    /// True if it started without a configuration (joining), rather than as one of the voters
    /// of a new cluster.
    pub fn is_joiner(&self) -> bool {
        self.bootstrap.is_empty()
    }

    /// Replaces the disk of this stopped node by an empty one, as an operator re-adding a
    /// server on a fresh machine: it will start as a joining node, as node `id` (with
    /// `transport` if the id changes). Returns false (and does nothing) if the node is running.
    pub fn wipe(
        &mut self,
        id: NodeId,
        registry: SharedRegistry,
        transport: Option<NodeTransport>,
    ) -> bool {
        if self.raw.is_some() {
            return false;
        }
        self.id = id;
        if let Some(t) = transport {
            *self.transport = t;
        }
        self.bootstrap.clear();
        self.disk = Some(Self::empty_disk(self.id, &[], registry));
        *self.kv = SimKv::new(ArenaMap::new());
        self.last_applied = 0;
        true
    }

    /// The highest index this node's disk records as committed (its synced hard state, or its
    /// snapshot): a restart re-applies at least up to here before it may campaign.
    pub fn durable_commit(&self) -> Index {
        let inner = self.disk().inner();
        let snapshot = tinyraft::Storage::first_index(inner) - 1;
        inner.hard_state().commit.max(snapshot)
    }

    /// True while running.
    pub fn is_up(&self) -> bool {
        self.raw.is_some()
    }

    /// The state machine.
    pub fn kv(&self) -> &SimKv {
        &self.kv
    }

    /// The disk, up or down.
    pub fn disk(&self) -> &NodeStorage {
        match (&self.raw, &self.disk) {
            (Some(raw), _) => raw.storage(),
            (None, Some(d)) => d,
            (None, None) => unreachable!("a node always has its disk"),
        }
    }

    /// Starts the node from its disk (a fresh process: empty state machine, no pending
    /// requests), seeding its election timer with `seed`.
    pub fn start(&mut self, settings: NodeSettings, seed: u64) {
        let Some(disk) = self.disk.take() else {
            return;
        };
        let mut cfg = Config::new(self.id, &self.bootstrap).expect("valid config");
        cfg.pre_vote = settings.pre_vote;
        cfg.check_quorum = settings.check_quorum;
        cfg.lease_reads = settings.lease_reads && settings.check_quorum;
        cfg.election_ticks = settings.election_ticks;
        cfg.heartbeat_ticks = settings.heartbeat_ticks;
        cfg.inflight_max = settings.inflight_max;
        cfg.uncommitted_entries_max = settings.uncommitted_entries_max;
        cfg.apply_entries_max = settings.apply_entries_max;
        cfg.compact_after = settings.compact_after;
        cfg.seed = seed;
        let raw = match SimRaw::new(cfg, disk) {
            Ok(r) => r,
            Err(e) => panic!("node {} cannot start from its disk: {e}", self.id),
        };
        self.raw = Some(Box::new(raw));
        *self.kv = SimKv::new(ArenaMap::new());
        self.writes.clear();
        self.proposed_seq.clear();
        self.reads.clear();
        self.confirmed.clear();
        self.was_leader = false;
        self.last_applied = 0;
    }

    /// Crashes the node: what was not synced is lost or kept as `rng` decides (see
    /// `FaultyStorage::crash`); everything in memory is gone. Returns a line for the trace.
    pub fn crash(&mut self, rng: &mut SplitMix64, inv: &mut Invariants) -> String {
        let Some(mut raw) = self.raw.take() else {
            return format!("node {} already down", self.id);
        };
        let placeholder = NodeStorage::new(SimStorage::default());
        let mut disk = std::mem::replace(raw.storage_mut(), placeholder);
        drop(raw);
        let report = disk.crash(rng).expect("the simulated disk does not fail");
        self.disk = Some(disk);
        self.crashes += 1;
        inv.restarted(self.id);
        self.writes.clear();
        self.reads.clear();
        self.confirmed.clear();
        format!("node {} crashed: {report:?}", self.id)
    }

    /// While the node is down, drops the last `n` entries of its disk even though they were
    /// synced (a disk that lies). Returns how many it dropped.
    pub fn lose_synced_tail(&mut self, n: u64) -> u64 {
        let Some(disk) = self.disk.as_mut() else {
            return 0;
        };
        let inner = disk.inner_mut();
        let last = tinyraft::Storage::last_index(inner);
        let keep = last
            .saturating_sub(n)
            .max(tinyraft::Storage::first_index(inner) - 1);
        inner.forget_after(keep);
        last - keep
    }

    /// Makes the node's next sync fail as if it died during it.
    pub fn arm_sync_failure(&mut self) {
        if let Some(raw) = &mut self.raw {
            raw.storage_mut().fail_next_sync();
            self.sync_failures += 1;
        }
    }

    /// Handles one packet addressed to this node.
    pub fn receive(&mut self, payload: Payload, ctx: &mut NodeCtx<'_>) {
        let Some(raw) = self.raw.as_deref_mut() else {
            return;
        };
        match payload {
            Payload::Raft { from, bytes } => {
                if let Ok(m) = Message::decode(&bytes) {
                    if m.from == from {
                        let _ = raw.step(&m);
                    }
                }
            }
            Payload::Request {
                client,
                nonce,
                bytes,
            } => self.handle_request(client, nonce, bytes, ctx),
            Payload::Reply { .. } => {}
        }
    }

    fn handle_request(&mut self, client: usize, nonce: u64, bytes: Vec<u8>, ctx: &mut NodeCtx<'_>) {
        let raw = self.raw.as_deref_mut().expect("up");
        let Ok(req) = Request::decode(&bytes) else {
            return;
        };
        // A copy of a write this node already proposed: whatever it answers now, it must not
        // say "not proposed".
        let proposed = !req.is_read_only()
            && self
                .proposed_seq
                .get(&req.client_id)
                .is_some_and(|&s| s >= req.seq);
        let redirect = |raw: &SimRaw| {
            // A node outside its own configuration that has one was removed: it hears from no
            // leader any more, so the leader it remembers may be long gone (and two such nodes
            // could send a client back and forth for ever). It names none.
            let m = raw.membership();
            let current = m.contains(raw.id()) || *m == Membership::EMPTY;
            Reply::Redirect {
                leader: raw.leader().filter(|&l| l != raw.id() && current),
                proposed,
            }
        };
        let busy = if proposed {
            Reply::Redirect {
                leader: None,
                proposed: true,
            }
        } else {
            Reply::Busy
        };
        if raw.role() != Role::Leader {
            return reply(ctx, client, nonce, redirect(raw));
        }
        if self.writes.len() + self.reads.len() + self.confirmed.len() >= PENDING_MAX {
            return reply(ctx, client, nonce, busy);
        }
        if req.is_read_only() {
            let id = self.next_read_id;
            self.next_read_id += 1;
            match raw.read_index(id) {
                Ok(()) => {
                    let read = PendingRead {
                        client,
                        nonce,
                        request: bytes,
                    };
                    self.reads.insert(id, read);
                }
                Err(ReadError::NotLeader { .. }) => reply(ctx, client, nonce, redirect(raw)),
                Err(ReadError::Full) => reply(ctx, client, nonce, Reply::Busy),
            }
            return;
        }
        match raw.propose(&bytes) {
            Ok(index) => {
                let w = PendingWrite {
                    client,
                    nonce,
                    client_id: req.client_id,
                    seq: req.seq,
                };
                self.writes.insert(index, w);
                let seq = self.proposed_seq.entry(req.client_id).or_default();
                *seq = (*seq).max(req.seq);
            }
            Err(e) => match e.kind {
                ProposeErrorKind::NotLeader { .. } => reply(ctx, client, nonce, redirect(raw)),
                _ => reply(ctx, client, nonce, busy),
            },
        }
    }

    /// True if the node is up and has a ready round to run.
    pub fn has_ready(&self) -> bool {
        self.raw.as_ref().is_some_and(|r| r.has_ready())
    }

    /// Advances the node's clock by one tick.
    pub fn tick(&mut self) {
        if let Some(raw) = &mut self.raw {
            raw.tick();
        }
    }

    /// Runs one ready round if there is one: send early, persist, send the rest, apply,
    /// answer. Returns false if the node died persisting (an injected sync failure); the
    /// caller crashes it.
    pub fn process_ready(&mut self, ctx: &mut NodeCtx<'_>) -> bool {
        let Some(raw) = self.raw.as_deref_mut() else {
            return true;
        };
        if !raw.has_ready() {
            return true;
        }
        let ready = raw.ready();
        if let Some(soft) = ready.soft_state {
            let leader = soft.role == Role::Leader;
            if self.was_leader && !leader {
                // As the runtime: writes already proposed may still commit elsewhere.
                for (_, w) in std::mem::take(&mut self.writes) {
                    let r = Reply::Redirect {
                        leader: None,
                        proposed: true,
                    };
                    reply(ctx, w.client, w.nonce, r);
                }
                let reads = std::mem::take(&mut self.reads).into_values();
                let confirmed = std::mem::take(&mut self.confirmed).into_iter().map(|r| r.1);
                for r in reads.chain(confirmed) {
                    let redirect = Reply::Redirect {
                        leader: None,
                        proposed: false,
                    };
                    reply(ctx, r.client, r.nonce, redirect);
                }
            }
            self.was_leader = leader;
        }
        // As the runtime: a leader's appends and heartbeats leave before its own sync. An
        // injected sync failure below then crashes a leader whose appends are already out,
        // with the entries they carry lost or kept on its own disk as the crash decides.
        for (to, bytes) in raw.early_messages(&ready) {
            let _ = tinyraft::Transport::send(&mut *self.transport, to, bytes);
        }
        let Ok(persisted) = raw.persist(ready) else {
            return false;
        };
        // As the runtime: an installed snapshot replaces the state machine before the entries
        // after it are applied.
        if let Some(meta) = persisted.snapshot() {
            if let Err(e) = raw.restore_snapshot(&persisted, &mut *self.kv) {
                ctx.inv.violations.push(format!(
                    "node {}: restoring a snapshot failed: {e}",
                    self.id
                ));
            }
            self.last_applied = self.last_applied.max(meta.index);
            self.snapshots_restored += 1;
        }
        for (to, bytes) in raw.messages(&persisted) {
            let _ = tinyraft::Transport::send(&mut *self.transport, to, bytes);
        }
        let id = self.id;
        let (kv, writes, inv) = (&mut self.kv, &mut self.writes, &mut *ctx.inv);
        let mut answers = Vec::new();
        let mut last = self.last_applied;
        let mut gap = None;
        let applied = raw.committed_entries(&persisted, &mut |e| {
            if e.index != last + 1 && gap.is_none() {
                gap = Some((last, e.index));
            }
            last = e.index;
            inv.applied(id, e.index, entry_hash(e.term, e.kind, e.data));
            if e.kind == EntryKind::Config {
                match ConfigEntry::decode(e.data) {
                    Ok(c) => inv.config_applied(id, e.index, &c.membership),
                    Err(err) => inv.violations.push(format!(
                        "node {id} applied a configuration entry at {} that does not decode: \
                         {err:?}",
                        e.index
                    )),
                }
            }
            if e.kind != EntryKind::Normal || e.is_noop() {
                return;
            }
            let response = kv.apply_entry(e.index, e.data);
            let Some(w) = writes.remove(&e.index) else {
                return;
            };
            let ours = Request::decode(e.data)
                .map(|r| (r.client_id, r.seq) == (w.client_id, w.seq))
                .unwrap_or(false);
            let r = if ours {
                Reply::Kv(Box::new(response))
            } else {
                Reply::Redirect {
                    leader: None,
                    proposed: false,
                }
            };
            answers.push((w.client, w.nonce, r));
        });
        if let Some((prev, got)) = gap {
            ctx.inv.violations.push(format!(
                "node {id} applied entry {got} right after {prev}: applying skipped or repeated"
            ));
        }
        self.last_applied = last;
        if applied.is_err() {
            ctx.inv
                .violations
                .push(format!("node {id}: reading committed entries failed"));
        }
        for rs in raw.read_states(&persisted) {
            if let Some(read) = self.reads.remove(&rs.request) {
                self.confirmed.push((rs.index, read));
            }
        }
        raw.advance(persisted);
        if raw.wants_snapshot() {
            if let Err(e) = raw.take_snapshot(&*self.kv) {
                ctx.inv
                    .violations
                    .push(format!("node {}: taking a snapshot failed: {e}", self.id));
            }
            self.snapshots_taken += 1;
        }
        for (client, nonce, r) in answers {
            reply(ctx, client, nonce, r);
        }
        // Serve confirmed reads whose index is applied, in confirmation order.
        let applied = raw.applied();
        let mut i = 0;
        while i < self.confirmed.len() {
            if self.confirmed[i].0 > applied {
                i += 1;
                continue;
            }
            let (_, read) = self.confirmed.remove(i);
            if let Ok(req) = Request::decode(&read.request) {
                let response = self.kv.query(&req.command);
                reply(ctx, read.client, read.nonce, Reply::Kv(Box::new(response)));
            }
        }
        true
    }

    /// Records this node's role and indexes with the invariant checker.
    pub fn observe(&self, inv: &mut Invariants) {
        let Some(raw) = self.raw.as_deref() else {
            return;
        };
        let mut hash_at = |i: Index| {
            let mut h = None;
            raw.entries(i, i + 1, &mut |e| {
                h = Some(entry_hash(e.term, e.kind, e.data))
            });
            h
        };
        inv.observe(
            self.id,
            raw.role(),
            raw.term(),
            raw.committed(),
            raw.applied(),
            raw.first_index(),
            &mut hash_at,
        );
        inv.observe_membership(
            self.id,
            raw.role(),
            raw.term(),
            raw.applied(),
            raw.membership(),
            self.is_joiner(),
            raw.transfer_target().is_some(),
        );
    }
}

/// The port a node's transport wraps.
pub fn port(id: NodeId, wire: &SharedWire) -> NetPort {
    NetPort::new(id, wire.clone())
}
