//! Core throughput: tinyraft against raft-rs (tikv `raft` 0.7) and `noraft` 0.7, same
//! workload, same binary, same invocation.
//!
//! Each system runs an in-process cluster (3 or 5 nodes) with in-memory storage and no I/O.
//! The bench drives it in rounds, the same way for every system:
//!
//! 1. the leader gets up to `--batch` new proposals of `entry_bytes` bytes each, as long as
//!    fewer than `--window` of its proposals are uncommitted (the same backpressure for all);
//! 2. every node runs its ready/action cycle: persists (to memory), sends (into the
//!    destination's inbox), applies committed entries;
//! 3. every node handles the messages in its inbox.
//!
//! Throughput is the number of proposals the leader applied per second. Each system is driven
//! the way its documentation shows: tinyraft through `RawNode` (ready → early messages →
//! persist → messages → committed entries → advance), raft-rs through `RawNode` (ready → messages → committed
//! entries → append → hard state → persisted messages → advance → light ready →
//! advance_apply, as in its `five_mem_node` example), noraft through `Node` and its
//! `Actions` iterator. Every system gets the same batching and the same per-message byte cap;
//! all three compact their logs (or payload stores) once every node has applied far enough.
//!
//! A counting global allocator measures allocations per committed entry in a separate,
//! counted pass after the timed ones (the count is off while timing).
//!
//! Flags: `--duration 2s` (per system and run; `ms` and plain seconds work too), `--runs 3`,
//! `--batch 64`, `--window 256`, `--quick` (only the headline configuration). The environment
//! variable `TINYRAFT_BENCH_DURATION` sets the default duration (CI uses a tiny one).
//!
//! Output: per configuration a header line, one line per system (median entries/s, the range
//! over runs, allocations per entry), the ratios of each run pair, then the lines
//! `ratio tinyraft/raft-rs: X.XX` and `ratio tinyraft/noraft: X.XX` (ratios of the medians).
//! The headline configuration (3 nodes, 64-byte entries) runs last, so the last two lines are
//! its ratios.

// A global allocator implements an unsafe trait; this one only forwards to the system's.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ----- allocation counting ---------------------------------------------------------------

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn note_allocation() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// contract of `GlobalAlloc` is `System`'s; the bookkeeping only touches two atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ----- the workload, common to every system ------------------------------------------------

/// Entries every node must have applied beyond its log's first index before the bench
/// compacts (all systems alike).
const COMPACT_SLACK: u64 = 4096;

/// A cluster under test. `round` runs one round of the workload (see the module docs).
trait Cluster {
    fn name(&self) -> &'static str;
    /// One round: propose (respecting the window), run every node's ready cycle, deliver.
    fn round(&mut self, payload: &[u8], batch: usize, window: u64);
    /// Proposals the leader has applied so far.
    fn applied(&self) -> u64;
    /// Stops proposing, lets the leader tell everyone its commit index, and returns every
    /// node's applied index (they must agree: a check that the bench replicated for real).
    fn settle(&mut self) -> Vec<u64>;
}

#[derive(Clone, Copy, Debug)]
struct Workload {
    nodes: usize,
    entry_bytes: usize,
}

#[derive(Clone, Debug)]
struct Opts {
    duration: Duration,
    runs: usize,
    batch: usize,
    window: u64,
    quick: bool,
    /// Run only this system (for profiling one at a time).
    only: Option<String>,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<f64>()
            .ok()
            .map(|v| Duration::from_secs_f64(v / 1000.0));
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>().ok().map(Duration::from_secs_f64)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        duration: std::env::var("TINYRAFT_BENCH_DURATION")
            .ok()
            .and_then(|v| parse_duration(&v))
            .unwrap_or(Duration::from_secs(2)),
        runs: 3,
        batch: 64,
        window: 256,
        quick: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--duration" => {
                let v = value("--duration");
                o.duration = parse_duration(&v).unwrap_or_else(|| panic!("bad duration {v}"));
            }
            "--runs" => o.runs = value("--runs").parse().expect("--runs N"),
            "--batch" => o.batch = value("--batch").parse().expect("--batch N"),
            "--window" => o.window = value("--window").parse().expect("--window N"),
            "--quick" => o.quick = true,
            "--only" => o.only = Some(value("--only")),
            // `cargo bench` passes `--bench`; filters and other harness flags are ignored.
            _ => {}
        }
    }
    o.runs = o.runs.max(1);
    o.batch = o.batch.max(1);
    o.window = o.window.max(o.batch as u64);
    o
}

fn payload(w: Workload) -> Vec<u8> {
    (0..w.entry_bytes).map(|i| (i * 31 + 7) as u8).collect()
}

/// Runs `c` for `duration` (after a warm-up of a tenth of it); entries applied per second.
fn timed(c: &mut dyn Cluster, payload: &[u8], o: &Opts) -> f64 {
    let warm_until = Instant::now() + o.duration / 10;
    while Instant::now() < warm_until {
        c.round(payload, o.batch, o.window);
    }
    let start_applied = c.applied();
    let start = Instant::now();
    let mut rounds = 0u32;
    loop {
        c.round(payload, o.batch, o.window);
        rounds += 1;
        // Reading the clock every round would cost more than a small round itself.
        if rounds.is_multiple_of(16) && start.elapsed() >= o.duration {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = (c.applied() - start_applied) as f64 / secs;
    if std::env::var_os("TINYRAFT_BENCH_VERBOSE").is_some() {
        // For profiling under callgrind, where rates mean nothing: the work done.
        eprintln!("{}: {} entries applied", c.name(), c.applied());
    }
    let applied = c.settle();
    assert!(
        applied.iter().all(|&a| a == applied[0]) && applied[0] > 0,
        "{}: nodes disagree on what they applied: {applied:?}",
        c.name()
    );
    rate
}

/// Allocations per applied entry over a counted stretch of rounds.
fn allocations_per_entry(c: &mut dyn Cluster, payload: &[u8], o: &Opts) -> f64 {
    // Warm up first: buffers that grow to their steady-state size are not per-entry costs.
    for _ in 0..2000 {
        c.round(payload, o.batch, o.window);
    }
    let before = c.applied();
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let target = 50_000;
    let stop = Instant::now() + Duration::from_secs(5);
    while c.applied() - before < target && Instant::now() < stop {
        c.round(payload, o.batch, o.window);
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocs = ALLOCATIONS.load(Ordering::Relaxed);
    allocs as f64 / (c.applied() - before).max(1) as f64
}

// ----- tinyraft ------------------------------------------------------------------------------

mod tiny {
    use super::{Cluster, COMPACT_SLACK};
    use tinyraft::{Config, MemStorage, RawNode, Role, SnapshotMeta, Storage};

    /// 16 MiB of log arena per node: room for a few thousand 1 KiB entries between
    /// compactions.
    type Store = MemStorage<{ 16 << 20 }, 65536>;
    type Node = RawNode<Store, { 512 << 10 }, { 512 << 10 }>;

    /// Encoded messages for one node, laid end to end; reused, so delivery allocates nothing
    /// once it has grown to its working size.
    #[derive(Default)]
    struct Inbox {
        bytes: Vec<u8>,
        ends: Vec<usize>,
    }

    impl Inbox {
        fn push(&mut self, bytes: &[u8]) {
            self.bytes.extend_from_slice(bytes);
            self.ends.push(self.bytes.len());
        }
    }

    pub(crate) struct TinyCluster {
        nodes: Vec<Box<Node>>,
        inboxes: Vec<Inbox>,
        leader: usize,
        applied: u64,
        checksum: u64,
    }

    impl TinyCluster {
        pub(crate) fn new(n: usize) -> Self {
            let voters: Vec<u64> = (1..=n as u64).collect();
            let nodes = voters
                .iter()
                .map(|&id| {
                    let mut cfg = Config::new(id, &voters).expect("config");
                    // Same per-message byte cap as raft-rs gets.
                    cfg.message_bytes_max = super::MESSAGE_BYTES_MAX;
                    Box::new(Node::new(cfg, Store::new()).expect("node"))
                })
                .collect();
            let mut c = Self {
                nodes,
                inboxes: (0..n).map(|_| Inbox::default()).collect(),
                leader: 0,
                applied: 0,
                checksum: 0,
            };
            c.nodes[0].campaign();
            for _ in 0..100 {
                c.cycle();
                if c.nodes[0].role() == Role::Leader {
                    break;
                }
            }
            assert_eq!(
                c.nodes[0].role(),
                Role::Leader,
                "tinyraft elected no leader"
            );
            c
        }

        /// Every node's ready round, then delivery of everything sent.
        fn cycle(&mut self) {
            let leader = self.leader;
            for i in 0..self.nodes.len() {
                let node = &mut self.nodes[i];
                if !node.has_ready() {
                    continue;
                }
                let rd = node.ready();
                // A leader's appends leave before its persist, as raft-rs's
                // `Ready::messages` below and the node runtime do.
                for (to, bytes) in node.early_messages(&rd) {
                    self.inboxes[to as usize - 1].push(bytes);
                }
                let p = node.persist(rd).expect("memory persist");
                for (to, bytes) in node.messages(&p) {
                    self.inboxes[to as usize - 1].push(bytes);
                }
                let (applied, checksum) = (&mut self.applied, &mut self.checksum);
                node.committed_entries(&p, &mut |e| {
                    if i == leader && !e.data.is_empty() {
                        *applied += 1;
                        *checksum = checksum.wrapping_add(u64::from(e.data[0]));
                    }
                })
                .expect("memory read");
                node.advance(p);
            }
            for i in 0..self.nodes.len() {
                let inbox = &mut self.inboxes[i];
                let mut start = 0;
                for &end in &inbox.ends {
                    let _ = self.nodes[i].step_bytes(&inbox.bytes[start..end]);
                    start = end;
                }
                inbox.bytes.clear();
                inbox.ends.clear();
            }
        }

        fn maybe_compact(&mut self) {
            let min_applied = self.nodes.iter().map(|n| n.applied()).min().unwrap_or(0);
            for n in &mut self.nodes {
                if min_applied >= n.first_index() + COMPACT_SLACK {
                    // The bench's state machine is a counter with nothing worth keeping: an
                    // empty snapshot at the cluster's applied point frees the log ring.
                    let meta = SnapshotMeta {
                        index: min_applied,
                        term: n.term_at(min_applied).expect("applied entry is in the log"),
                        membership: n.membership().clone(),
                    };
                    let storage = n.storage_mut();
                    storage.begin_snapshot(&meta).expect("begin snapshot");
                    storage.finish_snapshot().expect("finish snapshot");
                }
            }
        }
    }

    impl Cluster for TinyCluster {
        fn name(&self) -> &'static str {
            "tinyraft"
        }

        fn round(&mut self, payload: &[u8], batch: usize, window: u64) {
            let leader = &mut self.nodes[self.leader];
            let in_flight = leader.last_index() - leader.committed();
            let room = window.saturating_sub(in_flight).min(batch as u64);
            for _ in 0..room {
                if leader.propose(payload).is_err() {
                    break;
                }
            }
            self.cycle();
            self.maybe_compact();
        }

        fn applied(&self) -> u64 {
            std::hint::black_box(self.checksum);
            self.applied
        }

        fn settle(&mut self) -> Vec<u64> {
            for _ in 0..20 {
                // Heartbeats carry the commit index to followers.
                self.nodes[self.leader].tick();
                self.cycle();
            }
            self.nodes.iter().map(|n| n.applied()).collect()
        }
    }
}

// ----- raft-rs -------------------------------------------------------------------------------

mod raftrs {
    use super::{Cluster, COMPACT_SLACK};
    use raft::prelude::*;
    use raft::storage::MemStorage;
    use raft::StateRole;

    pub(crate) struct RaftRsCluster {
        nodes: Vec<RawNode<MemStorage>>,
        inboxes: Vec<Vec<Message>>,
        leader: usize,
        /// Proposals made by the bench that the leader has not applied yet.
        applied: u64,
        checksum: u64,
    }

    impl RaftRsCluster {
        pub(crate) fn new(n: usize) -> Self {
            let logger = slog::Logger::root(slog::Discard, slog::o!());
            let voters: Vec<u64> = (1..=n as u64).collect();
            let nodes = voters
                .iter()
                .map(|&id| {
                    let cfg = Config {
                        id,
                        election_tick: 10,
                        heartbeat_tick: 2,
                        // The default (0) sends one entry per message; give raft-rs the same
                        // byte cap per message as tinyraft.
                        max_size_per_msg: super::MESSAGE_BYTES_MAX as u64,
                        max_inflight_msgs: 256,
                        // Documented batching option: merge appends to the same follower.
                        // Off by default; on, raft-rs is more than twice as fast here.
                        batch_append: true,
                        ..Default::default()
                    };
                    cfg.validate().expect("config");
                    let store = MemStorage::new_with_conf_state((voters.clone(), vec![]));
                    RawNode::new(&cfg, store, &logger).expect("node")
                })
                .collect();
            let mut c = Self {
                nodes,
                inboxes: (0..n).map(|_| Vec::new()).collect(),
                leader: 0,
                applied: 0,
                checksum: 0,
            };
            c.nodes[0].campaign().expect("campaign");
            for _ in 0..100 {
                c.cycle();
                if c.nodes[0].raft.state == StateRole::Leader {
                    break;
                }
            }
            assert_eq!(
                c.nodes[0].raft.state,
                StateRole::Leader,
                "raft-rs elected no leader"
            );
            c
        }

        fn send(inboxes: &mut [Vec<Message>], msgs: Vec<Message>) {
            for m in msgs {
                let to = m.to as usize - 1;
                inboxes[to].push(m);
            }
        }

        /// The ready handling of raft-rs's `five_mem_node` example, then delivery.
        fn cycle(&mut self) {
            let leader = self.leader;
            for i in 0..self.nodes.len() {
                let node = &mut self.nodes[i];
                if !node.has_ready() {
                    continue;
                }
                let store = node.raft.raft_log.store.clone();
                let mut ready = node.ready();
                if !ready.messages().is_empty() {
                    Self::send(&mut self.inboxes, ready.take_messages());
                }
                if !ready.snapshot().is_empty() {
                    store
                        .wl()
                        .apply_snapshot(ready.snapshot().clone())
                        .expect("snapshot");
                }
                let (applied, checksum) = (&mut self.applied, &mut self.checksum);
                let mut apply = |entries: Vec<Entry>| {
                    for e in entries {
                        if i == leader && !e.data.is_empty() {
                            *applied += 1;
                            *checksum = checksum.wrapping_add(u64::from(e.data[0]));
                        }
                    }
                };
                apply(ready.take_committed_entries());
                if !ready.entries().is_empty() {
                    store.wl().append(ready.entries()).expect("append");
                }
                if let Some(hs) = ready.hs() {
                    store.wl().set_hardstate(hs.clone());
                }
                if !ready.persisted_messages().is_empty() {
                    Self::send(&mut self.inboxes, ready.take_persisted_messages());
                }
                let mut light = node.advance(ready);
                if let Some(commit) = light.commit_index() {
                    store.wl().mut_hard_state().set_commit(commit);
                }
                Self::send(&mut self.inboxes, light.take_messages());
                apply(light.take_committed_entries());
                node.advance_apply();
            }
            for i in 0..self.nodes.len() {
                let msgs = std::mem::take(&mut self.inboxes[i]);
                for m in msgs {
                    let _ = self.nodes[i].step(m);
                }
            }
        }

        fn maybe_compact(&mut self) {
            let min_applied = self
                .nodes
                .iter()
                .map(|n| n.raft.raft_log.applied)
                .min()
                .unwrap_or(0);
            for n in &mut self.nodes {
                let store = n.raft.raft_log.store.clone();
                let first = raft::Storage::first_index(&store).expect("first index");
                if min_applied >= first + COMPACT_SLACK {
                    store.wl().compact(min_applied).expect("compact");
                }
            }
        }
    }

    impl Cluster for RaftRsCluster {
        fn name(&self) -> &'static str {
            "raft-rs"
        }

        fn round(&mut self, payload: &[u8], batch: usize, window: u64) {
            let leader = &mut self.nodes[self.leader];
            let log = &leader.raft.raft_log;
            let in_flight = log.last_index() - log.committed;
            let room = window.saturating_sub(in_flight).min(batch as u64);
            for _ in 0..room {
                // The API takes the payload by value: one copy per proposal, as for any user.
                if leader.propose(vec![], payload.to_vec()).is_err() {
                    break;
                }
            }
            self.cycle();
            self.maybe_compact();
        }

        fn applied(&self) -> u64 {
            std::hint::black_box(self.checksum);
            self.applied
        }

        fn settle(&mut self) -> Vec<u64> {
            for _ in 0..20 {
                self.nodes[self.leader].ping();
                self.cycle();
            }
            self.nodes.iter().map(|n| n.raft.raft_log.applied).collect()
        }
    }
}

// ----- noraft --------------------------------------------------------------------------------

mod nora {
    use super::{Cluster, VecDeque, COMPACT_SLACK};
    use noraft::{Action, LogIndex, Message, Node, NodeId};

    /// noraft replicates log positions, not payloads: "It is the user's responsibility to
    /// manage the mapping from each `LogEntry::Command` to an actual command data." This is
    /// that mapping, one owned payload per log index (`None` for non-command entries).
    #[derive(Default)]
    struct Payloads {
        /// Index of `slots[0]`.
        first: u64,
        slots: VecDeque<Option<Vec<u8>>>,
    }

    impl Payloads {
        fn new() -> Self {
            Self {
                first: 1,
                slots: VecDeque::new(),
            }
        }

        fn put(&mut self, index: u64, data: Option<Vec<u8>>) {
            if index < self.first {
                return;
            }
            let slot = (index - self.first) as usize;
            // Writing at `index` replaces whatever suffix followed (a new leader's log).
            self.slots.truncate(slot);
            while self.slots.len() < slot {
                self.slots.push_back(None);
            }
            self.slots.push_back(data);
        }

        fn get(&self, index: u64) -> Option<&[u8]> {
            let slot = index.checked_sub(self.first)? as usize;
            self.slots.get(slot)?.as_deref()
        }

        fn discard_through(&mut self, index: u64) {
            while self.first <= index && !self.slots.is_empty() {
                self.slots.pop_front();
                self.first += 1;
            }
        }
    }

    /// A message on the in-process wire: noraft's message plus, for appends, the payloads of
    /// the command entries it carries (concatenated, with their lengths).
    struct Wire {
        msg: Message,
        data: Vec<u8>,
        lens: Vec<u32>,
    }

    struct Peer {
        node: Node,
        payloads: Payloads,
        applied: u64,
    }

    pub(crate) struct NoraftCluster {
        peers: Vec<Peer>,
        inboxes: Vec<Vec<Wire>>,
        leader: usize,
        applied: u64,
        checksum: u64,
    }

    fn attach(payloads: &Payloads, msg: Message) -> Wire {
        let (mut data, mut lens) = (Vec::new(), Vec::new());
        if let Message::AppendEntriesCall { entries, .. } = &msg {
            let lo = entries.prev_position().index.get() + 1;
            let hi = entries.last_position().index.get();
            for i in lo..=hi {
                match payloads.get(i) {
                    Some(p) => {
                        data.extend_from_slice(p);
                        lens.push(p.len() as u32);
                    }
                    None => lens.push(u32::MAX),
                }
            }
        }
        Wire { msg, data, lens }
    }

    impl NoraftCluster {
        pub(crate) fn new(n: usize) -> Self {
            let ids: Vec<NodeId> = (0..n as u64).map(NodeId::new).collect();
            let mut peers: Vec<Peer> = ids
                .iter()
                .map(|&id| Peer {
                    node: Node::start(id),
                    payloads: Payloads::new(),
                    applied: 0,
                })
                .collect();
            peers[0].node.create_cluster(&ids);
            let mut c = Self {
                peers,
                inboxes: (0..n).map(|_| Vec::new()).collect(),
                leader: 0,
                applied: 0,
                checksum: 0,
            };
            for _ in 0..100 {
                c.cycle();
                if c.peers[0].node.role().is_leader() && c.peers[0].node.commit_index().get() > 0 {
                    break;
                }
            }
            assert!(
                c.peers[0].node.role().is_leader(),
                "noraft elected no leader"
            );
            c
        }

        fn cycle(&mut self) {
            let n = self.peers.len();
            for i in 0..n {
                let peer = &mut self.peers[i];
                for action in peer.node.actions_mut() {
                    match action {
                        // Timers, term and vote: nothing to do in memory with no clock.
                        Action::SetElectionTimeout
                        | Action::SaveCurrentTerm
                        | Action::SaveVotedFor => {}
                        // The node keeps its log positions itself; the payloads were stored
                        // when proposed or received.
                        Action::AppendLogEntries(_) => {}
                        Action::BroadcastMessage(msg) => {
                            for (j, inbox) in self.inboxes.iter_mut().enumerate() {
                                if j != i {
                                    inbox.push(attach(&peer.payloads, msg.clone()));
                                }
                            }
                        }
                        Action::SendMessage(to, msg) => {
                            let wire = attach(&peer.payloads, msg);
                            self.inboxes[to.get() as usize].push(wire);
                        }
                        Action::InstallSnapshot(_) => unreachable!("the bench never snapshots"),
                    }
                }
                let commit = peer.node.commit_index().get();
                while peer.applied < commit {
                    peer.applied += 1;
                    if let Some(p) = peer.payloads.get(peer.applied) {
                        if i == self.leader {
                            self.applied += 1;
                            self.checksum = self.checksum.wrapping_add(u64::from(p[0]));
                        }
                    }
                }
            }
            for i in 0..n {
                let wires = std::mem::take(&mut self.inboxes[i]);
                let peer = &mut self.peers[i];
                for w in wires {
                    if let Message::AppendEntriesCall { entries, .. } = &w.msg {
                        let mut at = 0usize;
                        let mut index = entries.prev_position().index.get();
                        for &len in &w.lens {
                            index += 1;
                            let data = (len != u32::MAX).then(|| {
                                let d = w.data[at..at + len as usize].to_vec();
                                at += len as usize;
                                d
                            });
                            peer.payloads.put(index, data);
                        }
                    }
                    let _ = peer.node.handle_message(&w.msg);
                }
            }
        }

        fn maybe_compact(&mut self) {
            let min_applied = self.peers.iter().map(|p| p.applied).min().unwrap_or(0);
            for p in &mut self.peers {
                if min_applied >= p.payloads.first + COMPACT_SLACK {
                    p.payloads.discard_through(min_applied);
                }
            }
        }
    }

    impl Cluster for NoraftCluster {
        fn name(&self) -> &'static str {
            "noraft"
        }

        fn round(&mut self, payload: &[u8], batch: usize, window: u64) {
            let leader = &mut self.peers[self.leader];
            let last = leader.node.log().last_position().index;
            let in_flight = last.get() - leader.node.commit_index().get();
            let room = window.saturating_sub(in_flight).min(batch as u64);
            for _ in 0..room {
                let pos = leader.node.propose_command();
                if pos.index == LogIndex::ZERO {
                    break;
                }
                leader.payloads.put(pos.index.get(), Some(payload.to_vec()));
            }
            self.cycle();
            self.maybe_compact();
        }

        fn applied(&self) -> u64 {
            std::hint::black_box(self.checksum);
            self.applied
        }

        fn settle(&mut self) -> Vec<u64> {
            for _ in 0..20 {
                self.peers[self.leader].node.heartbeat();
                self.cycle();
            }
            self.peers.iter().map(|p| p.applied).collect()
        }
    }
}

// ----- main ----------------------------------------------------------------------------------

/// Per-message byte cap given to every system that has one.
const MESSAGE_BYTES_MAX: usize = 64 * 1024;

const SYSTEMS: [&str; 3] = ["tinyraft", "raft-rs", "noraft"];

fn build(system: &str, w: Workload) -> Box<dyn Cluster> {
    match system {
        "tinyraft" => Box::new(tiny::TinyCluster::new(w.nodes)),
        "raft-rs" => Box::new(raftrs::RaftRsCluster::new(w.nodes)),
        _ => Box::new(nora::NoraftCluster::new(w.nodes)),
    }
}

struct Outcome {
    /// Entries per second of each run.
    rates: Vec<f64>,
    allocs_per_entry: f64,
}

impl Outcome {
    fn median(&self) -> f64 {
        let mut v = self.rates.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

fn run_config(w: Workload, o: &Opts) -> [Outcome; 3] {
    let payload = payload(w);
    let mut results: [Outcome; 3] = std::array::from_fn(|_| Outcome {
        rates: Vec::new(),
        allocs_per_entry: 0.0,
    });
    // Runs interleave the systems, so a burst of load from another process hurts all three
    // rather than one.
    let wanted = |s: &str| o.only.as_deref().is_none_or(|only| only == s);
    for _ in 0..o.runs {
        for (k, system) in SYSTEMS.iter().enumerate() {
            if !wanted(system) {
                continue;
            }
            let mut c = build(system, w);
            results[k].rates.push(timed(c.as_mut(), &payload, o));
        }
    }
    for (k, system) in SYSTEMS.iter().enumerate() {
        if !wanted(system) || std::env::var_os("TINYRAFT_BENCH_VERBOSE").is_some() {
            continue;
        }
        let mut c = build(system, w);
        results[k].allocs_per_entry = allocations_per_entry(c.as_mut(), &payload, o);
        assert_eq!(c.name(), *system);
    }
    results
}

fn report(w: Workload, o: &Opts, results: &[Outcome; 3]) {
    println!(
        "== config: {} nodes, {}-byte entries, batch {}, window {}, {} run(s) of {:.2} s ==",
        w.nodes,
        w.entry_bytes,
        o.batch,
        o.window,
        o.runs,
        o.duration.as_secs_f64()
    );
    for (system, r) in SYSTEMS.iter().zip(results) {
        if r.rates.is_empty() {
            continue;
        }
        let (lo, hi) = r
            .rates
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "{system:<9} {:>12.0} entries/s (runs {:.0}..{:.0})  {:>7.2} allocs/entry",
            r.median(),
            lo,
            hi,
            r.allocs_per_entry
        );
    }
    if results.iter().any(|r| r.rates.is_empty()) {
        return;
    }
    // Run k of each system ran back to back, under the same load from elsewhere: the spread
    // of the per-run ratios says how much the medians' ratio can be trusted.
    for (k, other) in [(1, "raft-rs"), (2, "noraft")] {
        let per_run: Vec<String> = results[0]
            .rates
            .iter()
            .zip(&results[k].rates)
            .map(|(t, o)| format!("{:.2}", t / o))
            .collect();
        println!("per-run ratios tinyraft/{other}: {}", per_run.join(" "));
    }
    let tiny = results[0].median();
    println!("ratio tinyraft/raft-rs: {:.2}", tiny / results[1].median());
    println!("ratio tinyraft/noraft: {:.2}", tiny / results[2].median());
}

fn main() {
    let o = parse_opts();
    // The tinyraft nodes are fixed-size values of several MiB (their log arenas live inline):
    // build and run everything on a thread with room for them on the stack.
    let worker = std::thread::Builder::new()
        .name("bench".into())
        .stack_size(256 << 20)
        .spawn(move || {
            let headline = Workload {
                nodes: 3,
                entry_bytes: 64,
            };
            let mut configs = Vec::new();
            if !o.quick {
                configs.push(Workload {
                    nodes: 5,
                    entry_bytes: 64,
                });
                configs.push(Workload {
                    nodes: 3,
                    entry_bytes: 1024,
                });
            }
            configs.push(headline);
            for w in configs {
                let results = run_config(w, &o);
                report(w, &o, &results);
            }
        })
        .expect("spawn the bench thread");
    worker.join().expect("the bench panicked");
}
