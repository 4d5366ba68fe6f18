//! Scenarios, the simulation world, the nemesis, and seed sweeps.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::Instant;

use tinyraft::fault::{FaultRng, FaultyTransport, LinkFaults, SplitMix64};
use tinyraft::{Membership, NodeId, Role};

use super::checker::{check_linearizable, Invariants, Op};
use super::client::{ClientCtx, ClientTimeouts, Cmd, Phase, SimClient};
use super::cluster::{port, NodeCtx, NodeSettings, SimNode, SimRaw};
use super::membership::{ConfChangePlan, ConfChanger, ConfStats};
use super::network::{Addr, Payload, SharedWire, Wire};
use super::storage::{LogRegistry, SharedRegistry};
use super::STEPS_PER_TICK;

/// A custom script run instead of the generic rounds (e.g. TinyKV's OnePartition2B).
pub type Script = fn(&mut Sim) -> Result<(), String>;

/// What a scenario does. The TinyKV matrix sets `clients`, `unreliable`, `crash`,
/// `partitions` and (for 2C) `log_limit`.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name, as the `#[test]` is named (used in the replay command).
    pub name: &'static str,
    /// Nodes; None: 5 on even seeds, 3 on odd ones.
    pub nodes: Option<usize>,
    /// Concurrent clients.
    pub clients: usize,
    /// Lossy, duplicating, reordering network.
    pub unreliable: bool,
    /// Crash-restarts during rounds, failed syncs, and every node restarted after each round.
    pub crash: bool,
    /// Re-partition every election timeout or so: random splits, leader isolation, one-way
    /// links.
    pub partitions: bool,
    /// Log compaction limit (TinyKV's `maxraftlog`): nodes snapshot and compact after this
    /// many applied entries, and `applied - truncated <= 2 * limit` is checked every step.
    pub log_limit: Option<u64>,
    /// Rounds.
    pub rounds: u32,
    /// Ticks of the safety phase of each round.
    pub round_ticks: u64,
    /// Runs this instead of the generic rounds.
    pub script: Option<Script>,
    /// Forces check-quorum on or off (None: chosen by the seed, on 80% of the time).
    pub check_quorum: Option<bool>,
    /// Breaks the storage contract on purpose: a crash also loses a few *synced* entries.
    /// Only for showing that the checks catch it.
    pub lying_disk: bool,
    /// Membership changes: node slots outside the configuration, and a configuration changer
    /// (see [`super::membership`]). Overrides `nodes`.
    pub conf_change: Option<ConfChangePlan>,
    /// The integration test file that runs the scenario (`cargo test --test <this>`), for
    /// the replay command.
    pub test_file: &'static str,
}

impl Scenario {
    /// A TinyKV `GenericTest` scenario with the given switches (3 rounds of 100 ticks).
    pub const fn generic(
        name: &'static str,
        clients: usize,
        unreliable: bool,
        crash: bool,
        partitions: bool,
    ) -> Self {
        Self {
            name,
            nodes: None,
            clients,
            unreliable,
            crash,
            partitions,
            log_limit: None,
            rounds: 3,
            round_ticks: 100,
            script: None,
            check_quorum: None,
            lying_disk: false,
            conf_change: None,
            test_file: "scenarios",
        }
    }
}

/// Node ids of one slot's incarnations are this far apart (at most this many slots).
pub const ID_STRIDE: NodeId = 10;

/// Ticks after the faults stop within which a leader must exist and every client operation
/// in progress must finish.
pub const LIVENESS_TICKS: u64 = 150;
/// Ticks allowed per scripted end-of-round operation (scan pages and deletes).
pub const TICKS_PER_CHECK_OP: u64 = 6;

/// What a successful run did.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Steps simulated.
    pub steps: u64,
    /// Operations answered, given up unknown, given up definitely failed.
    pub ops: (u64, u64, u64),
    /// Distinct (term, leader) pairs seen.
    pub elections: u64,
    /// Node crashes (including failed syncs).
    pub crashes: u64,
    /// Packets put on the wire.
    pub packets: u64,
    /// Entries committed.
    pub committed: u64,
    /// Snapshots taken and restored.
    pub snapshots: (u64, u64),
    /// What the configuration changer did.
    pub conf: ConfStats,
}

/// A failed run: what broke, the seed, and how to replay it.
#[derive(Debug)]
pub struct SimFailure {
    /// Scenario name.
    pub scenario: &'static str,
    /// The integration test file that runs it.
    pub test_file: &'static str,
    /// Seed.
    pub seed: u64,
    /// What broke.
    pub reason: String,
    /// The last events before it.
    pub trace: Vec<String>,
}

impl SimFailure {
    /// The one command that replays this failure.
    pub fn replay_command(&self) -> String {
        format!(
            "SIM_SEED={} cargo test -p tinyraft-tests --test {} {} -- --exact",
            self.seed, self.test_file, self.scenario
        )
    }
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "last events:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        writeln!(
            f,
            "scenario {} FAILED at seed {}: {}",
            self.scenario, self.seed, self.reason
        )?;
        write!(f, "reproduce with: {}", self.replay_command())
    }
}

/// The simulated world.
pub struct Sim {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// Node ids.
    pub ids: Vec<NodeId>,
    /// The nodes.
    pub nodes: Vec<SimNode>,
    /// The clients.
    pub clients: Vec<SimClient>,
    /// Per node slot: stopped for good after its removal, until its disk is wiped.
    pub retired: Vec<bool>,
    /// The configuration changer (with a `conf_change` plan).
    pub changer: Option<ConfChanger>,
    wire: SharedWire,
    registry: SharedRegistry,
    inv: Invariants,
    rng: SplitMix64,
    net_rng: SplitMix64,
    settings: NodeSettings,
    raft_faults: LinkFaults,
    client_faults: LinkFaults,
    /// The history for the linearizability check.
    pub history: Vec<Op>,
    clock: u64,
    /// Failures found outside the per-step invariants (clients' checks, the changer).
    pub violations: Vec<String>,
    trace: VecDeque<String>,
    /// The current step.
    pub now: u64,
    round: u64,
    faults_on: bool,
    next_partition: u64,
    restart_at: Vec<Option<u64>>,
    last_leader: Option<(u64, NodeId)>,
    /// `SIM_VERBOSE=1`: print every event and the nodes' state every 10 ticks.
    verbose: bool,
}

const TRACE_LINES: usize = 60;
/// Most ready rounds a node runs in one step.
const READY_ROUNDS_PER_STEP: usize = 16;

fn unreliable_faults() -> LinkFaults {
    LinkFaults {
        loss_ppm: 100_000,
        duplicate_ppm: 50_000,
        delay_ppm: 300_000,
        delay_ticks_max: (3 * STEPS_PER_TICK) as u32,
    }
}

fn reliable_faults() -> LinkFaults {
    // A reliable network still has some jitter: order is not guaranteed.
    LinkFaults {
        delay_ppm: 100_000,
        delay_ticks_max: 2,
        ..LinkFaults::default()
    }
}

impl Sim {
    /// Builds the world for `scenario` and `seed`; nodes are started, nothing has run yet.
    ///
    /// With `log_limit`, every node compacts its log (a snapshot of its `KvStore`) after
    /// that many applied entries, and lagging followers catch up by snapshot.
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        let name_hash = scenario
            .name
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        let mut rng = SplitMix64::new(seed ^ name_hash);
        let even = seed.is_multiple_of(2);
        let plan = scenario.conf_change;
        let n = match plan {
            Some(p) => p.slots.unwrap_or(if even { 5 } else { 4 }),
            None => scenario.nodes.unwrap_or(if even { 5 } else { 3 }),
        };
        assert!(n as NodeId <= ID_STRIDE, "at most {ID_STRIDE} node slots");
        let ids: Vec<NodeId> = (1..=n as NodeId).collect();
        // With a plan, the first slots are the cluster and the others start joining.
        let initial: Vec<NodeId> = match plan {
            Some(p) => ids[..p.initial_voters.min(n)].to_vec(),
            None => ids.clone(),
        };
        let check_quorum = rng.chance(800_000);
        let check_quorum = scenario.check_quorum.unwrap_or(check_quorum);
        let settings = NodeSettings {
            pre_vote: rng.chance(800_000),
            check_quorum,
            lease_reads: check_quorum && rng.chance(250_000),
            election_ticks: 10,
            heartbeat_ticks: 2,
            // Small windows and batches on some seeds reach flow control, backpressure and
            // partial applying.
            inflight_max: if rng.chance(300_000) {
                1 + rng.below(4) as usize
            } else {
                tinyraft::limits::INFLIGHT_MAX
            },
            uncommitted_entries_max: if rng.chance(300_000) {
                4 + rng.below(28)
            } else {
                4096
            },
            apply_entries_max: if rng.chance(300_000) {
                1 + rng.below(8)
            } else {
                4096
            },
            // TinyKV's limit, or on some seeds a half or a quarter of it, so that lagging
            // followers need snapshots more often.
            compact_after: scenario.log_limit.map_or(0, |l| (l >> rng.below(3)).max(2)),
        };
        let wire: SharedWire = Rc::new(RefCell::new(Wire::default()));
        let registry: SharedRegistry = Rc::new(RefCell::new(LogRegistry::default()));
        let raft_faults = if scenario.unreliable {
            unreliable_faults()
        } else {
            reliable_faults()
        };
        let client_faults = raft_faults;
        let mut nodes = Vec::new();
        for &id in &ids {
            let t = FaultyTransport::new(
                port(id, &wire),
                SplitMix64::new(rng.next_u64()),
                raft_faults,
            );
            let phase = rng.below(STEPS_PER_TICK);
            let voters: &[NodeId] = if initial.contains(&id) { &initial } else { &[] };
            nodes.push(SimNode::new(id, voters, registry.clone(), t, phase));
        }
        let attempt = (5 + rng.below(16)) * STEPS_PER_TICK;
        // KvClient gives an operation many attempts (10 s against 300 ms); here 3 to 20, so
        // some operations still end with unknown outcomes, but not most under loss.
        let op = if rng.chance(330_000) {
            None
        } else {
            Some(attempt * (3 + rng.below(18)))
        };
        let timeouts = ClientTimeouts {
            attempt,
            op,
            backoff: 1 + rng.below(2 * STEPS_PER_TICK),
        };
        let clients = (0..scenario.clients)
            .map(|i| SimClient::new(i, rng.next_u64(), timeouts, n))
            .collect();
        let net_rng = SplitMix64::new(rng.next_u64());
        let changer =
            plan.map(|p| ConfChanger::new(p, n, initial.len(), SplitMix64::new(rng.next_u64())));
        let restart_at = vec![None; n];
        let initial = Membership::from_voters(&initial).expect("valid voters");
        let mut sim = Self {
            scenario,
            seed,
            ids,
            nodes,
            clients,
            retired: vec![false; n],
            changer,
            wire,
            registry,
            inv: Invariants::new(initial),
            rng,
            net_rng,
            settings,
            raft_faults,
            client_faults,
            history: Vec::new(),
            clock: 0,
            violations: Vec::new(),
            trace: VecDeque::new(),
            now: 0,
            round: 0,
            faults_on: false,
            next_partition: 0,
            restart_at,
            last_leader: None,
            verbose: std::env::var_os("SIM_VERBOSE").is_some(),
        };
        sim.note(format!(
            "{} nodes, {} clients, {:?}, client timeouts {:?}, membership {:?}",
            n, sim.scenario.clients, sim.settings, timeouts, sim.scenario.conf_change
        ));
        for i in 0..n {
            sim.start_node(i);
        }
        if sim.scenario.script.is_some() {
            // Scripted scenarios drive their clients by hand.
            for c in &mut sim.clients {
                c.phase = Phase::Draining;
            }
        }
        sim
    }

    /// Adds a line to the trace (printed as it happens with `SIM_VERBOSE`).
    pub fn note(&mut self, line: String) {
        if self.verbose {
            eprintln!("[tick {}] {line}", self.now / STEPS_PER_TICK);
        }
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        let tick = self.now / STEPS_PER_TICK;
        self.trace.push_back(format!("[tick {tick}] {line}"));
    }

    fn start_node(&mut self, i: usize) {
        self.restart_at[i] = None;
        if self.retired[i] {
            return;
        }
        let seed = self.rng.next_u64();
        self.nodes[i].start(self.settings, seed);
    }

    /// Stops slot `i` for good (a removed node decommissioned): it comes back only through
    /// [`Sim::wipe_and_start`].
    pub fn retire(&mut self, i: usize) {
        if self.nodes[i].is_up() {
            self.crash_node(i);
        }
        self.retired[i] = true;
        self.restart_at[i] = None;
    }

    /// Gives retired slot `i` an empty disk and starts it as a new node joining the cluster,
    /// with id `id`: its old one, or a new one (`ids[i] + ID_STRIDE`) with a new transport.
    pub fn wipe_and_start(&mut self, i: usize, id: NodeId) {
        assert!(self.retired[i], "only a retired node is wiped");
        assert!(
            id == self.ids[i] || id == self.ids[i] + ID_STRIDE,
            "a slot keeps its id or takes the next one"
        );
        let transport = (id != self.ids[i]).then(|| {
            let rng = SplitMix64::new(self.rng.next_u64());
            FaultyTransport::new(port(id, &self.wire), rng, self.raft_faults)
        });
        let wiped = self.nodes[i].wipe(id, self.registry.clone(), transport);
        assert!(wiped, "a retired node is down");
        self.ids[i] = id;
        self.retired[i] = false;
        self.start_node(i);
    }

    /// Crashes node `id` (un-synced writes lost or kept as the RNG says) and starts it again
    /// from its disk.
    pub fn crash_and_restart(&mut self, id: NodeId) {
        let i = self.slot(id).expect("a current node id");
        self.crash_node(i);
        self.note(format!("node {id} restarts"));
        self.start_node(i);
    }

    fn crash_node(&mut self, i: usize) {
        let line = self.nodes[i].crash(&mut self.rng, &mut self.inv);
        self.note(line);
        if self.scenario.lying_disk {
            let n = 1 + self.rng.below(5);
            let lost = self.nodes[i].lose_synced_tail(n);
            self.note(format!(
                "node {}'s disk lied: {lost} synced entries lost",
                self.ids[i]
            ));
        }
    }

    /// The slot of node `id`, if a slot runs (or ran) a node with this id in its current
    /// incarnation. A slot's node gets a new id when it is re-added after a wipe (see
    /// [`super::membership`]): ids are `slot + 1 + ID_STRIDE * k`.
    pub fn slot(&self, id: NodeId) -> Option<usize> {
        let i = (id.checked_sub(1)? % ID_STRIDE) as usize;
        (self.ids.get(i) == Some(&id)).then_some(i)
    }

    /// The running node that leads the highest term, if any.
    pub fn leader_node(&self) -> Option<&SimRaw> {
        let i = self.slot(self.leader()?)?;
        self.nodes[i].raw.as_deref()
    }

    /// The leader of the highest term among running nodes.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.raw.as_deref())
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(|r| r.id())
    }

    /// The value of `key` in node `id`'s state machine (a local read, not linearizable).
    pub fn node_value(&self, id: NodeId, key: &[u8]) -> Option<Vec<u8>> {
        let n = &self.nodes[self.slot(id)?];
        n.kv().get(key).map(|v| v.to_vec())
    }

    /// Cuts the network into `groups`: links inside a group work, links between groups are
    /// cut both ways.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        let group_of = |id: NodeId| groups.iter().position(|g| g.contains(&id));
        let ids = self.ids.clone();
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids {
                if a != b {
                    let cut = group_of(a) != group_of(b);
                    let _ = self.nodes[i].transport.set_cut(b, cut);
                }
            }
        }
        self.note(format!("partition {groups:?}"));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.transport.heal();
        }
        self.note("heal".into());
    }

    fn set_faults(&mut self, raft: LinkFaults, client: LinkFaults) {
        self.raft_faults = raft;
        self.client_faults = client;
        for n in &mut self.nodes {
            n.transport.set_faults(raft);
        }
    }

    /// Queues a scripted operation for client `c` (run before any random one).
    pub fn push_script(&mut self, c: usize, cmd: Cmd) {
        self.clients[c].push_script(cmd);
    }

    fn fail(&self, reason: String) -> SimFailure {
        SimFailure {
            scenario: self.scenario.name,
            test_file: self.scenario.test_file,
            seed: self.seed,
            reason,
            trace: self.trace.iter().cloned().collect(),
        }
    }

    /// One step of the world: deliver what is due, tick, run ready rounds, let clients act,
    /// inject faults, check invariants.
    pub fn step(&mut self) -> Result<(), String> {
        self.now += 1;
        self.wire.borrow_mut().now = self.now;
        let nodes_n = self.ids.len();
        // Deliver.
        loop {
            let packet = self.wire.borrow_mut().pop_due();
            let Some(p) = packet else { break };
            match p.to {
                Addr::Node(id) => {
                    // A packet for a node id no slot has any more (a retired node's) is lost.
                    let Some(i) = self.slot(id) else { continue };
                    let mut ctx = NodeCtx {
                        wire: &self.wire,
                        rng: &mut self.net_rng,
                        client_faults: self.client_faults,
                        inv: &mut self.inv,
                    };
                    self.nodes[i].receive(p.payload, &mut ctx);
                }
                Addr::Client(c) => {
                    if let Payload::Reply { nonce, reply } = p.payload {
                        let mut ctx = ClientCtx {
                            wire: &self.wire,
                            net_rng: &mut self.net_rng,
                            faults: self.client_faults,
                            clock: &mut self.clock,
                            history: &mut self.history,
                            violations: &mut self.violations,
                            nodes: &self.ids,
                            now: self.now,
                            round: self.round,
                        };
                        self.clients[c].on_reply(nonce, reply, &mut ctx);
                    }
                }
            }
        }
        // Tick, then run ready rounds.
        for i in 0..nodes_n {
            self.nodes[i].transport.tick();
            if (self.now + self.nodes[i].tick_phase).is_multiple_of(STEPS_PER_TICK) {
                self.nodes[i].tick();
            }
            let mut ctx = NodeCtx {
                wire: &self.wire,
                rng: &mut self.net_rng,
                client_faults: self.client_faults,
                inv: &mut self.inv,
            };
            // A node runs ready rounds while it has work (bounded): with a small
            // `apply_entries_max` a restarted node replays its log a few entries per round.
            for _ in 0..READY_ROUNDS_PER_STEP {
                if !self.nodes[i].process_ready(&mut ctx) {
                    self.note(format!("node {} died in a sync", self.ids[i]));
                    self.crash_node(i);
                    self.restart_at[i] = Some(self.now + self.downtime());
                    break;
                }
                if !self.nodes[i].has_ready() {
                    break;
                }
            }
        }
        // Clients.
        for c in 0..self.clients.len() {
            let mut ctx = ClientCtx {
                wire: &self.wire,
                net_rng: &mut self.net_rng,
                faults: self.client_faults,
                clock: &mut self.clock,
                history: &mut self.history,
                violations: &mut self.violations,
                nodes: &self.ids,
                now: self.now,
                round: self.round,
            };
            self.clients[c].act(&mut ctx);
        }
        if self.now.is_multiple_of(STEPS_PER_TICK) {
            if let Some(mut changer) = self.changer.take() {
                changer.observe(self);
                if self.faults_on && changer.plan.random {
                    changer.act(self);
                }
                self.changer = Some(changer);
            }
        }
        if self.faults_on && self.now.is_multiple_of(STEPS_PER_TICK) {
            self.nemesis();
        }
        for i in 0..nodes_n {
            if self.restart_at[i].is_some_and(|t| self.now >= t) {
                self.note(format!("node {} restarts", self.ids[i]));
                self.start_node(i);
            }
        }
        if self.verbose && self.now.is_multiple_of(10 * STEPS_PER_TICK) {
            let states: Vec<String> = self
                .nodes
                .iter()
                .map(|n| match n.raw.as_deref() {
                    Some(r) => format!(
                        "{}:{:?}/t{}/v{:?}/l{:?}/c{}/last{}",
                        r.id(),
                        r.role(),
                        r.term(),
                        r.vote(),
                        r.leader(),
                        r.committed(),
                        r.last_index()
                    ),
                    None => format!("{}:down", n.id),
                })
                .collect();
            self.note(states.join(" "));
        }
        // Invariants.
        for n in &self.nodes {
            n.observe(&mut self.inv);
        }
        if self.scenario.log_limit.is_some() {
            let limit = self.settings.compact_after;
            // TinyKV 2C: applied_index - truncated_index <= 2 * maxraftlog on every server.
            for r in self.nodes.iter().filter_map(|n| n.raw.as_deref()) {
                let truncated = r.first_index() - 1;
                if r.applied() - truncated > 2 * limit {
                    return Err(format!(
                        "log compaction: node {} applied {} with the log truncated at {}                          (limit {limit})",
                        r.id(),
                        r.applied(),
                        truncated
                    ));
                }
            }
        }
        if let Some(l) = self.leader() {
            let term = self.leader_node().map_or(0, |r| r.term());
            if self.last_leader != Some((term, l)) {
                self.last_leader = Some((term, l));
                self.note(format!("node {l} leads term {term}"));
            }
        }
        let reg = self.registry.borrow();
        if let Some(v) = reg
            .violations
            .first()
            .or(self.inv.violations.first())
            .or(self.violations.first())
        {
            return Err(v.clone());
        }
        Ok(())
    }

    fn downtime(&mut self) -> u64 {
        (5 + self.rng.below(40)) * STEPS_PER_TICK
    }

    /// Runs `ticks` ticks.
    pub fn run_ticks(&mut self, ticks: u64) -> Result<(), String> {
        for _ in 0..ticks * STEPS_PER_TICK {
            self.step()?;
        }
        Ok(())
    }

    /// Steps until `done` holds, failing with `what` after `ticks` ticks.
    pub fn run_until(
        &mut self,
        ticks: u64,
        what: &str,
        done: impl Fn(&Sim) -> bool,
    ) -> Result<(), String> {
        let deadline = self.now + ticks * STEPS_PER_TICK;
        while !done(self) {
            if self.now >= deadline {
                let clients: Vec<String> = self.clients.iter().map(|c| c.describe()).collect();
                let nodes = if self.changer.is_some() {
                    format!("; nodes: {}", self.describe_memberships())
                } else {
                    String::new()
                };
                return Err(format!(
                    "liveness: {what} within {ticks} ticks; clients: {}{nodes}",
                    clients.join("; ")
                ));
            }
            self.step()?;
        }
        Ok(())
    }

    /// Fault injection, once per tick during the safety phase.
    fn nemesis(&mut self) {
        let n = self.ids.len();
        if self.scenario.partitions && self.now >= self.next_partition {
            let election = u64::from(self.settings.election_ticks);
            self.next_partition = self.now + (election + self.rng.below(5)) * STEPS_PER_TICK;
            self.repartition();
        }
        if self.scenario.crash && self.rng.chance(1_000_000 / 40) {
            let retired = &self.retired;
            let down = (0..n)
                .filter(|&i| !retired[i] && !self.nodes[i].is_up())
                .count();
            // Usually keep a majority up so the round makes progress; sometimes not.
            let allowed = if self.rng.chance(100_000) { n } else { n / 2 };
            let i = self.rng.below(n as u64) as usize;
            if down < allowed && self.nodes[i].is_up() {
                if self.rng.chance(500_000) {
                    self.note(format!("node {} will die in its next sync", self.ids[i]));
                    self.nodes[i].arm_sync_failure();
                } else {
                    self.crash_node(i);
                    self.restart_at[i] = Some(self.now + self.downtime());
                }
            }
        }
    }

    fn repartition(&mut self) {
        let n = self.ids.len();
        let mut ids = self.ids.clone();
        match self.rng.below(100) {
            0..=49 => {
                // TinyKV: two random non-empty groups.
                for i in (1..n).rev() {
                    let j = self.rng.below(i as u64 + 1) as usize;
                    ids.swap(i, j);
                }
                let k = 1 + self.rng.below(n as u64 - 1) as usize;
                let (a, b) = ids.split_at(k);
                self.partition(&[a.to_vec(), b.to_vec()]);
            }
            50..=69 => {
                let leader = self.leader().unwrap_or(ids[0]);
                let rest: Vec<NodeId> = ids.into_iter().filter(|&x| x != leader).collect();
                self.note(format!("isolate leader {leader}"));
                self.partition(&[vec![leader], rest]);
            }
            70..=84 => {
                let mut cuts = Vec::new();
                for i in 0..n {
                    for j in 0..n {
                        let cut = i != j && self.rng.chance(300_000);
                        let _ = self.nodes[i].transport.set_cut(self.ids[j], cut);
                        if cut {
                            cuts.push((self.ids[i], self.ids[j]));
                        }
                    }
                }
                self.note(format!("one-way cuts {cuts:?}"));
            }
            _ => self.heal(),
        }
    }

    fn stop_faults(&mut self) {
        self.faults_on = false;
        self.heal();
        self.set_faults(reliable_faults(), reliable_faults());
        for i in 0..self.ids.len() {
            if !self.nodes[i].is_up() && !self.retired[i] {
                self.note(format!("node {} restarts (faults over)", self.ids[i]));
                self.start_node(i);
            }
        }
    }

    /// One TinyKV round: faults while clients run, then the liveness phase and the checks.
    fn round(&mut self, round: u64) -> Result<(), String> {
        self.round = round;
        self.note(format!("round {round} starts"));
        for c in &mut self.clients {
            c.new_round();
        }
        let (raft, client) = if self.scenario.unreliable {
            (unreliable_faults(), unreliable_faults())
        } else {
            (reliable_faults(), reliable_faults())
        };
        self.set_faults(raft, client);
        self.faults_on = true;
        self.next_partition = self.now;
        self.run_ticks(self.scenario.round_ticks)?;
        self.liveness_and_checks()
    }

    /// The end of a round: faults stop, every node runs; within [`LIVENESS_TICKS`] a leader
    /// must exist and every operation finish; then the clients check and delete their keys.
    pub fn liveness_and_checks(&mut self) -> Result<(), String> {
        self.note("faults stop".into());
        self.stop_faults();
        for c in &mut self.clients {
            c.phase = Phase::Draining;
        }
        self.run_until(
            LIVENESS_TICKS,
            "a leader and every operation finished",
            |s| s.leader().is_some() && s.clients.iter().all(|c| c.settled()),
        )?;
        if self.scenario.crash {
            // TinyKV restarts every server after each round.
            self.note("crash and restart every node".into());
            for i in 0..self.ids.len() {
                if !self.retired[i] {
                    self.crash_node(i);
                }
            }
            for i in 0..self.ids.len() {
                self.start_node(i);
            }
        }
        for c in &mut self.clients {
            c.start_checking();
        }
        let budget = LIVENESS_TICKS + TICKS_PER_CHECK_OP * (20 + self.max_own_keys());
        self.run_until(budget, "the end-of-round scans and deletes", |s| {
            s.clients
                .iter()
                .all(|c| c.phase == Phase::Idle && !c.busy())
        })
    }

    /// Runs a fuzzer-chosen fault schedule (pairs of `[ticks to wait][action]`), then the
    /// liveness phase, the clients' checks, convergence and linearizability.
    pub fn run_schedule(&mut self, schedule: &[(u8, u8)]) -> Result<(), SimFailure> {
        let result = (|| {
            self.note("schedule starts".into());
            for c in &mut self.clients {
                c.new_round();
            }
            for &(wait, action) in schedule {
                self.run_ticks(u64::from(wait % 16))?;
                self.apply_fault(action);
            }
            self.run_ticks(10)?;
            self.liveness_and_checks()?;
            self.finish()
        })();
        result.map_err(|reason| self.fail(reason))
    }

    /// One fault of a fuzzer schedule: `action % 12` picks the kind, `action / 12` the node or
    /// the shape.
    pub fn apply_fault(&mut self, action: u8) {
        let n = self.ids.len();
        let who = usize::from(action / 12) % n;
        match action % 12 {
            0 => self.crash_node(who),
            1 if !self.nodes[who].is_up() => {
                self.note(format!("node {} restarts", self.ids[who]));
                self.start_node(who);
            }
            2 => {
                self.note(format!("node {} will die in its next sync", self.ids[who]));
                self.nodes[who].arm_sync_failure();
            }
            3 => {
                let cut = self.ids[who];
                let rest: Vec<NodeId> = self.ids.iter().copied().filter(|&x| x != cut).collect();
                self.partition(&[vec![cut], rest]);
            }
            4 => {
                if let Some(l) = self.leader() {
                    let rest: Vec<NodeId> = self.ids.iter().copied().filter(|&x| x != l).collect();
                    self.partition(&[vec![l], rest]);
                }
            }
            5 => {
                let to = self.ids[(who + 1 + usize::from(action / 36) % (n - 1)) % n];
                let _ = self.nodes[who].transport.set_cut(to, true);
                self.note(format!("cut {} -> {to}", self.ids[who]));
            }
            6 => self.heal(),
            7 => {
                self.note("network unreliable".into());
                self.set_faults(unreliable_faults(), unreliable_faults());
            }
            8 => {
                self.note("network reliable".into());
                self.set_faults(reliable_faults(), reliable_faults());
            }
            9 => {
                self.note("crash and restart every node".into());
                for i in 0..n {
                    self.crash_node(i);
                }
                for i in 0..n {
                    self.start_node(i);
                }
            }
            10 => {
                if let Some(i) = self.leader().and_then(|l| self.slot(l)) {
                    self.crash_node(i);
                }
            }
            _ => {}
        }
    }

    fn max_own_keys(&self) -> u64 {
        self.clients.iter().map(|c| c.own_keys()).max().unwrap_or(0)
    }

    /// Waits until every node has applied the same log and holds the same pairs.
    fn converge(&mut self) -> Result<(), String> {
        self.stop_faults();
        let members: Vec<usize> = if self.changer.is_some() {
            self.settle_configuration()?
        } else {
            (0..self.nodes.len()).collect()
        };
        let what = "all members applying the same log";
        self.run_until(LIVENESS_TICKS, what, |s| {
            let running = || members.iter().filter_map(|&i| s.nodes[i].raw.as_deref());
            let commit = running().map(|r| r.committed()).max().unwrap_or(0);
            running().count() == members.len() && running().all(|r| r.applied() == commit)
        })?;
        let dump = |n: &SimNode| -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut out = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = n
                    .kv()
                    .scan(b"", after.as_deref(), 0)
                    .expect("scan of everything");
                out.extend(page.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
                if !page.more() || page.is_empty() {
                    return out;
                }
                after = page.last_key().map(|k| k.to_vec());
            }
        };
        let first = dump(&self.nodes[members[0]]);
        for &i in &members[1..] {
            if dump(&self.nodes[i]) != first {
                return Err(format!(
                    "state machine safety: node {} and node {} applied the same log but hold \
                     different pairs",
                    self.ids[i], self.ids[members[0]]
                ));
            }
        }
        Ok(())
    }

    /// With membership changes, the end of a run: no change in flight, not joint, and every
    /// member (all running) on the leader's configuration. Returns the members' slots.
    fn settle_configuration(&mut self) -> Result<Vec<usize>, String> {
        let what = "the configuration settling (a leader, no change in flight, not joint, \
                    every member running with the leader's configuration)";
        if let Err(e) = self.run_until(LIVENESS_TICKS, what, |s| s.settled_members().is_some()) {
            return Err(format!(
                "{e}\n  memberships: {}",
                self.describe_memberships()
            ));
        }
        let members = self.settled_members().expect("settled");
        self.note(format!(
            "configuration settled: members {:?}",
            members.iter().map(|&i| self.ids[i]).collect::<Vec<_>>()
        ));
        Ok(members)
    }

    /// The slots of the members of the leader's configuration, if it is settled: no change in
    /// flight, not joint, every member running with the leader's configuration.
    pub fn settled_members(&self) -> Option<Vec<usize>> {
        let m = self.leader_node()?.membership();
        if m.is_joint() || self.changer.as_ref().is_some_and(|c| c.pending()) {
            return None;
        }
        let members: Vec<usize> = m.members().map(|id| self.slot(id)).collect::<Option<_>>()?;
        let agree = members.iter().all(|&i| {
            self.nodes[i]
                .raw
                .as_deref()
                .is_some_and(|r| r.membership() == m)
        });
        agree.then_some(members)
    }

    /// Every node's role, applied index and configuration, for failure reports.
    pub fn describe_memberships(&self) -> String {
        let lines: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match n.raw.as_deref() {
                Some(r) => format!(
                    "{}: {:?} t{} leader {:?} last {} commit {} applied {} {:?}",
                    n.id,
                    r.role(),
                    r.term(),
                    r.leader(),
                    r.last_index(),
                    r.committed(),
                    r.applied(),
                    r.membership()
                ),
                None if self.retired[i] => format!("{}: retired", n.id),
                None => format!("{}: down", n.id),
            })
            .collect();
        lines.join("; ")
    }

    fn report(&self) -> SimReport {
        let ops = self.clients.iter().fold((0, 0, 0), |a, c| {
            (
                a.0 + c.ops_answered,
                a.1 + c.ops_unknown,
                a.2 + c.ops_failed,
            )
        });
        SimReport {
            steps: self.now,
            ops,
            elections: self.inv.elections,
            crashes: self.nodes.iter().map(|n| n.crashes).sum(),
            packets: self.wire.borrow().packets,
            committed: self.inv.committed_max(),
            snapshots: (
                self.nodes.iter().map(|n| n.snapshots_taken).sum(),
                self.nodes.iter().map(|n| n.snapshots_restored).sum(),
            ),
            conf: self.changer.as_ref().map(|c| c.stats).unwrap_or_default(),
        }
    }

    fn run_all(&mut self) -> Result<(), String> {
        if let Some(script) = self.scenario.script {
            script(self)?;
        } else {
            for round in 0..u64::from(self.scenario.rounds) {
                self.round(round)?;
            }
        }
        self.finish()
    }

    /// The end of every run: all nodes converge to the same state, and the history is
    /// linearizable.
    pub fn finish(&mut self) -> Result<(), String> {
        self.converge()?;
        check_linearizable(&self.history).map_err(|e| {
            let verdict = if e.undecided {
                "could not be decided within the search budget"
            } else {
                "is not linearizable"
            };
            format!(
                "the history of key {:?} {verdict}:\n    {}",
                e.key,
                e.ops.join("\n    ")
            )
        })
    }
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(scenario.clone(), seed);
    match sim.run_all() {
        Ok(()) => Ok(sim.report()),
        Err(reason) => Err(sim.fail(reason)),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `scenario` over a range of seeds and panics, with the seed and the replay command,
/// on the first failure (a panic inside the core counts as a failure).
///
/// - `SIM_SEED=S`: run only seed `S` (the replay).
/// - `SIM_SEEDS=N`: run `N` seeds (default `default_seeds`), from `SIM_SEED_START` (default
///   0). Each scenario mixes its name into the seed, so scenarios explore different runs.
pub fn sweep(scenario: &Scenario, default_seeds: u64) -> SimReport {
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(s) => vec![s],
        None => {
            let start = env_u64("SIM_SEED_START").unwrap_or(0);
            let n = env_u64("SIM_SEEDS").unwrap_or(default_seeds);
            (start..start + n).collect()
        }
    };
    let began = Instant::now();
    let mut total = SimReport::default();
    for &seed in &seeds {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(scenario, seed)));
        let report = match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(failure)) => panic!("\n{failure}\n"),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let failure = SimFailure {
                    scenario: scenario.name,
                    test_file: scenario.test_file,
                    seed,
                    reason: format!("panic: {what}"),
                    trace: Vec::new(),
                };
                panic!("\n{failure}\n");
            }
        };
        total.steps += report.steps;
        total.ops.0 += report.ops.0;
        total.ops.1 += report.ops.1;
        total.ops.2 += report.ops.2;
        total.elections += report.elections;
        total.crashes += report.crashes;
        total.packets += report.packets;
        total.committed += report.committed;
        total.snapshots.0 += report.snapshots.0;
        total.snapshots.1 += report.snapshots.1;
        total.conf.add(&report.conf);
    }
    eprintln!(
        "{}: {} seeds ({}..={}) passed in {:.1?}: {} ticks, {} ops answered, {} unknown, {} \
         failed, {} elections, {} crashes, {} entries committed, {} snapshots taken, {} \
         restored",
        scenario.name,
        seeds.len(),
        seeds.first().unwrap_or(&0),
        seeds.last().unwrap_or(&0),
        began.elapsed(),
        total.steps / STEPS_PER_TICK,
        total.ops.0,
        total.ops.1,
        total.ops.2,
        total.elections,
        total.crashes,
        total.committed,
        total.snapshots.0,
        total.snapshots.1,
    );
    if scenario.conf_change.is_some() {
        let c = total.conf;
        eprintln!(
            "{}: configuration changes: {} accepted ({} joint, {} removing or demoting the \
             leader), {} took effect, {} retried; {} nodes retired, {} disks wiped and re-added \
             ({} under their old id), {} leadership transfers",
            scenario.name,
            c.accepted,
            c.joint,
            c.leader_out,
            c.took_effect,
            c.retried,
            c.retired,
            c.wiped,
            c.same_id,
            c.transfers
        );
    }
    total
}
