//! A small in-memory network for protocol tests: real `RawNode`s over `MemStorage`, messages
//! delivered as encoded bytes (so every test also exercises the wire format), with drop and
//! isolate filters. Deterministic: all randomness is seeded.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashSet, VecDeque};

use tinyraft::kv::{ArenaMap, KvStore};
use tinyraft::{
    Body, Config, Entry, EntryKind, HardState, Index, MemStorage, Membership, Message, NodeId,
    RawNode, ReadState, Role, StateMachine, Storage, Term,
};

mod drive;
// Not every test file drives single nodes by hand.
#[allow(unused_imports)]
pub use drive::*;

pub type TestStorage = MemStorage<{ 128 * 1024 }, 4096, { 32 * 1024 }>;
/// The state machine every network node applies to (the real KV store, no allocator).
pub type TestKv = KvStore<ArenaMap<256, { 16 * 1024 }>, 16>;
pub type TestNode = RawNode<TestStorage, { 32 * 1024 }, { 32 * 1024 }>;

/// An encoded message captured from a node's ready round.
#[derive(Clone, Debug)]
pub struct Sent {
    pub to: NodeId,
    pub bytes: Vec<u8>,
}

impl Sent {
    pub fn msg(&self) -> Message<'_> {
        Message::decode(&self.bytes).expect("nodes only send decodable messages")
    }
}

/// An owned copy of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    pub term: Term,
    pub index: Index,
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

impl From<Entry<'_>> for OwnedEntry {
    fn from(e: Entry<'_>) -> Self {
        Self {
            term: e.term,
            index: e.index,
            kind: e.kind,
            data: e.data.to_vec(),
        }
    }
}

/// The configuration tests use unless they say otherwise: TinyKV's (election 10, heartbeat 1),
/// with pre-vote and check-quorum off so the paper's basic behaviour is visible.
pub fn config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut c = Config::new(id, voters).unwrap();
    c.election_ticks = 10;
    c.heartbeat_ticks = 1;
    c.pre_vote = false;
    c.check_quorum = false;
    c.seed = 0x5eed ^ id;
    c
}

pub fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).collect()
}

/// A storage holding `terms[i]` as the term of entry `i + 1` and the given hard state.
pub fn storage_with(terms: &[Term], hs: HardState) -> TestStorage {
    let mut s = TestStorage::new();
    for (i, &t) in terms.iter().enumerate() {
        s.append(Entry {
            term: t,
            index: i as u64 + 1,
            kind: EntryKind::Normal,
            data: b"",
        })
        .unwrap();
    }
    s.set_hard_state(&hs).unwrap();
    s
}

pub fn node(id: NodeId, voters: &[NodeId]) -> TestNode {
    TestNode::new(config(id, voters), TestStorage::new()).unwrap()
}

pub fn node_with(cfg: Config, storage: TestStorage) -> TestNode {
    TestNode::new(cfg, storage).unwrap()
}

/// What one ready round produced.
#[derive(Debug, Default)]
pub struct Round {
    pub messages: Vec<Sent>,
    pub committed: Vec<OwnedEntry>,
    pub reads: Vec<ReadState>,
    pub hard_state: Option<HardState>,
    pub entries: usize,
}

/// Runs one full ready round on `n` (persist, collect messages, apply, advance).
pub fn round(n: &mut TestNode) -> Round {
    let mut out = Round::default();
    if !n.has_ready() {
        return out;
    }
    let rd = n.ready();
    out.hard_state = rd.hard_state;
    out.entries = rd.entries;
    let p = n.persist(rd).expect("MemStorage persist");
    out.messages = n
        .messages(&p)
        .map(|(to, b)| Sent {
            to,
            bytes: b.to_vec(),
        })
        .collect();
    n.committed_entries(&p, &mut |e| out.committed.push(e.into()))
        .unwrap();
    out.reads = n.read_states(&p).to_vec();
    n.advance(p);
    out
}

/// Like [`round`], with a state machine: restores it from an installed snapshot, applies the
/// committed entries to it, and takes a snapshot when the compaction policy asks.
pub fn round_sm(n: &mut TestNode, sm: &mut TestKv) -> Round {
    let mut out = Round::default();
    if !n.has_ready() {
        return out;
    }
    let rd = n.ready();
    out.hard_state = rd.hard_state;
    out.entries = rd.entries;
    let p = n.persist(rd).expect("MemStorage persist");
    n.restore_snapshot(&p, sm).expect("restore from snapshot");
    out.messages = n
        .messages(&p)
        .map(|(to, b)| Sent {
            to,
            bytes: b.to_vec(),
        })
        .collect();
    n.committed_entries(&p, &mut |e| {
        if e.kind == EntryKind::Normal && !e.is_noop() {
            sm.apply(&e);
        }
        out.committed.push(e.into())
    })
    .unwrap();
    out.reads = n.read_states(&p).to_vec();
    n.advance(p);
    if n.wants_snapshot() {
        n.take_snapshot(sm).expect("take snapshot");
    }
    out
}

/// Runs ready rounds until there is nothing left; returns all messages.
pub fn drain(n: &mut TestNode) -> Vec<Sent> {
    let mut all = Vec::new();
    for _ in 0..100 {
        if !n.has_ready() {
            break;
        }
        all.extend(round(n).messages);
    }
    all
}

/// Every log entry of `n`, durable or not.
pub fn log_of(n: &TestNode) -> Vec<OwnedEntry> {
    let mut v = Vec::new();
    n.entries(n.first_index(), n.last_index() + 1, &mut |e| {
        v.push(e.into())
    });
    v
}

/// Encodes a message for `step_bytes`.
pub fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 70 * 1024];
    let n = m.encode(&mut buf).expect("fits");
    buf.truncate(n);
    buf
}

pub fn msg(from: NodeId, to: NodeId, term: Term, body: Body<'_>) -> Message<'_> {
    Message {
        from,
        to,
        term,
        body,
    }
}

/// An append message; `entries` are (index, term) pairs with empty payloads.
pub fn append_msg(
    from: NodeId,
    to: NodeId,
    term: Term,
    prev: (Index, Term),
    commit: Index,
    entries: &[(Index, Term)],
) -> Vec<u8> {
    let mut es = heapless::Vec::new();
    for &(index, t) in entries {
        es.push(Entry {
            term: t,
            index,
            kind: EntryKind::Normal,
            data: b"",
        })
        .unwrap();
    }
    encode(&msg(
        from,
        to,
        term,
        Body::Append {
            prev_index: prev.0,
            prev_term: prev.1,
            commit,
            entries: es,
        },
    ))
}

/// Decides per message (and its sender) whether it is delivered.
pub type Filter = Box<dyn FnMut(&Sent, NodeId) -> bool>;

/// A cluster on a simulated network.
pub struct Network {
    /// `nodes[id - 1]`; `None` while a node is down.
    pub nodes: Vec<Option<TestNode>>,
    /// Storage kept for nodes that are down, to restart them from it.
    pub stopped: Vec<Option<TestStorage>>,
    pub configs: Vec<Config>,
    cut: HashSet<(NodeId, NodeId)>,
    drop_rate: f64,
    rng: u64,
    pub delivered: u64,
    /// Called on every message before delivery; returning false drops it.
    pub filter: Option<Filter>,
    /// Each node's KV state machine (`sms[id - 1]`).
    pub sms: Vec<Box<TestKv>>,
}

impl Network {
    pub fn new(n: u64) -> Self {
        Self::with_config(n, |_| {})
    }

    pub fn with_config(n: u64, tweak: impl Fn(&mut Config)) -> Self {
        let voters = ids(n);
        let configs: Vec<Config> = voters
            .iter()
            .map(|&id| {
                let mut c = config(id, &voters);
                tweak(&mut c);
                c
            })
            .collect();
        let nodes = configs
            .iter()
            .map(|c| TestNode::new(c.clone(), TestStorage::new()).unwrap())
            .collect();
        Self::from_nodes(nodes)
    }

    /// Nodes `1..=voters` form the cluster; nodes after them up to `total` start with no
    /// configuration (they are joining: only a configuration change makes them members).
    pub fn with_joiners(voters: u64, total: u64, tweak: impl Fn(&mut Config)) -> Self {
        let members = ids(voters);
        let nodes = (1..=total)
            .map(|id| {
                let mut c = config(id, &members);
                if id > voters {
                    c.bootstrap = Membership::EMPTY;
                }
                tweak(&mut c);
                TestNode::new(c, TestStorage::new()).unwrap()
            })
            .collect();
        Self::from_nodes(nodes)
    }

    /// Proposes a configuration change on `id` and settles; panics if `id` refuses.
    pub fn conf_change(&mut self, id: NodeId, changes: &[tinyraft::ConfChange]) -> Index {
        let i = self
            .node_mut(id)
            .propose_conf_change(changes, tinyraft::ConfChangeMode::Auto, b"")
            .expect("configuration change accepted");
        self.settle();
        i
    }

    /// Three nodes with pre-vote and check-quorum on (as a production cluster runs), with a
    /// leader elected; returns the network and the leader.
    pub fn guarded_three() -> (Self, NodeId) {
        let mut net = Self::with_config(3, |c| {
            c.pre_vote = true;
            c.check_quorum = true;
        });
        let l = net.elect(100).expect("leader");
        (net, l)
    }

    /// A network of the given nodes (ids must be 1..=n in order).
    pub fn from_nodes(nodes: Vec<TestNode>) -> Self {
        let configs = nodes.iter().map(|n| n.config().clone()).collect();
        let n = nodes.len();
        Self {
            nodes: nodes.into_iter().map(Some).collect(),
            stopped: (0..n).map(|_| None).collect(),
            configs,
            cut: HashSet::new(),
            drop_rate: 0.0,
            rng: 0x1234_5678,
            delivered: 0,
            filter: None,
            sms: (0..n)
                .map(|_| Box::new(TestKv::new(ArenaMap::new())))
                .collect(),
        }
    }

    pub fn node(&self, id: NodeId) -> &TestNode {
        self.nodes[id as usize - 1].as_ref().expect("node is up")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut TestNode {
        self.nodes[id as usize - 1].as_mut().expect("node is up")
    }

    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as u64).collect()
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Drops every message between `a` and `b`, both ways.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Drops messages from `a` to `b` only.
    pub fn cut_one_way(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
    }

    /// Cuts `id` off from everyone.
    pub fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.cut(id, other);
            }
        }
    }

    /// Splits the cluster into the given groups (no traffic across groups).
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g.iter() {
                    for &b in h.iter() {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Heals every cut and stops dropping.
    pub fn recover(&mut self) {
        self.cut.clear();
        self.drop_rate = 0.0;
        self.filter = None;
    }

    /// Drops each message with probability `rate`.
    pub fn set_drop_rate(&mut self, rate: f64) {
        self.drop_rate = rate;
    }

    fn blocked(&mut self, from: NodeId, s: &Sent) -> bool {
        if self.cut.contains(&(from, s.to))
            || self
                .nodes
                .get(s.to as usize - 1)
                .is_none_or(|n| n.is_none())
        {
            return true;
        }
        if self.drop_rate > 0.0 && self.random() < self.drop_rate {
            return true;
        }
        if let Some(f) = self.filter.as_mut() {
            return !f(s, from);
        }
        false
    }

    /// Delivers `msgs` (sent by `from`) and everything they cause, until the network is quiet.
    pub fn deliver(&mut self, from: NodeId, msgs: Vec<Sent>) {
        let mut queue: VecDeque<(NodeId, Sent)> = msgs.into_iter().map(|m| (from, m)).collect();
        let mut steps = 0;
        loop {
            while let Some((from, m)) = queue.pop_front() {
                steps += 1;
                assert!(steps < 1_000_000, "network did not quiesce");
                if self.blocked(from, &m) {
                    continue;
                }
                self.delivered += 1;
                let to = m.to;
                let n = self.node_mut(to);
                let _ = n.step_bytes(&m.bytes);
            }
            let mut any = false;
            for id in self.ids() {
                if let Some(n) = self.nodes[id as usize - 1].as_mut() {
                    if n.has_ready() {
                        any = true;
                        for m in round_sm(n, &mut self.sms[id as usize - 1]).messages {
                            queue.push_back((id, m));
                        }
                    }
                }
            }
            if !any && queue.is_empty() {
                break;
            }
        }
    }

    /// Lets the network settle (delivers whatever is pending).
    pub fn settle(&mut self) {
        self.deliver(0, Vec::new());
    }

    /// Ticks every live node once, then settles.
    pub fn tick(&mut self) {
        for n in self.nodes.iter_mut().flatten() {
            n.tick();
        }
        self.settle();
    }

    pub fn ticks(&mut self, k: usize) {
        for _ in 0..k {
            self.tick();
        }
    }

    /// Makes `id` campaign now and settles.
    pub fn campaign(&mut self, id: NodeId) {
        self.node_mut(id).campaign();
        self.settle();
    }

    /// Proposes on `id` and settles; panics if `id` refuses.
    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> Index {
        let i = self.node_mut(id).propose(data).expect("proposal accepted");
        self.settle();
        i
    }

    /// The leader among live nodes, if exactly one node claims it in the highest term.
    pub fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<_> = self
            .nodes
            .iter()
            .flatten()
            .filter(|n| n.role() == Role::Leader)
            .map(|n| (n.term(), n.id()))
            .collect();
        leaders.iter().max().map(|&(_, id)| id)
    }

    /// Ticks until some node leads (at most `limit` ticks).
    pub fn elect(&mut self, limit: usize) -> Option<NodeId> {
        for _ in 0..limit {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            self.tick();
        }
        self.leader()
    }

    /// Stops node `id`, keeping its storage (everything persisted survives).
    pub fn crash(&mut self, id: NodeId) {
        let n = self.nodes[id as usize - 1].take().expect("node is up");
        self.stopped[id as usize - 1] = Some(into_storage(n));
    }

    /// Restarts node `id` from its storage.
    pub fn restart(&mut self, id: NodeId) {
        let s = self.stopped[id as usize - 1].take().expect("node is down");
        let cfg = self.configs[id as usize - 1].clone();
        self.nodes[id as usize - 1] = Some(TestNode::new(cfg, s).unwrap());
        // The state machine lived in memory: it restarts empty and is rebuilt from the
        // snapshot and the log.
        *self.sms[id as usize - 1] = TestKv::new(ArenaMap::new());
    }

    pub fn membership(&self) -> Membership {
        Membership::from_voters(&self.ids()).unwrap()
    }
}

/// Takes the storage out of a node (a crash: unstable state is lost; everything `persist`
/// wrote was synced).
pub fn into_storage(n: TestNode) -> TestStorage {
    n.storage().clone()
}
