//! A leader writes its log in parallel with replicating it (Raft dissertation §10.2.1):
//! `RawNode::early_messages` hands out its appends and heartbeats before the round is
//! persisted, while everything that reveals state needing durability (votes, answers to a
//! leader, vote requests) still waits for `persist`.
//!
//! What these tests pin down:
//! - a leader's appends leave before its sync, but its own entries count toward a commit only
//!   once synced (§10.2.1: "the leader counts itself ... once its entries are durable");
//! - a follower's append response, a voter's vote and a candidate's vote requests never leave
//!   early (§5.1, Figure 2: persistent state is updated on stable storage before responding);
//! - a leader whose term (and vote for itself) is not durable yet sends nothing early: after a
//!   crash it could be elected again in that term and write different entries at the same
//!   indexes;
//! - every message is handed out exactly once, also when persisting fails after the early
//!   send;
//! - a leader that crashes between its early send and its sync loses nothing that was
//!   acknowledged, and the cluster converges.

mod harness;
use harness::*;

use tinyraft::{
    Body, Entry, HardState, Index, InitialState, MemStorageError, NodeId, RawNode, Role,
    SnapshotMeta, Storage, StorageErrorKind, Term,
};

fn collect<'a>(it: impl Iterator<Item = (NodeId, &'a [u8])>) -> Vec<Sent> {
    it.map(|(to, b)| Sent {
        to,
        bytes: b.to_vec(),
    })
    .collect()
}

/// What one ready round handed out, split by when.
#[derive(Debug, Default)]
struct SplitRound {
    early: Vec<Sent>,
    after: Vec<Sent>,
    /// `Ready::messages` of the round.
    counted: usize,
}

/// One ready round that takes the early messages, persists, then takes the rest.
fn split_round(n: &mut TestNode) -> SplitRound {
    let rd = n.ready();
    let counted = rd.messages;
    let early = collect(n.early_messages(&rd));
    let p = n.persist(rd).expect("MemStorage persist");
    let after = collect(n.messages(&p));
    n.committed_entries(&p, &mut |_| {}).unwrap();
    n.advance(p);
    SplitRound {
        early,
        after,
        counted,
    }
}

fn appends_to(msgs: &[Sent], to: NodeId) -> Vec<Sent> {
    msgs.iter()
        .filter(|s| s.to == to && is_append(s))
        .cloned()
        .collect()
}

/// The last entry index an append carries (`prev_index` if it carries none).
fn last_carried(s: &Sent) -> Index {
    match s.msg().body {
        Body::Append {
            prev_index,
            ref entries,
            ..
        } => entries.last().map_or(prev_index, |e| e.index),
        _ => panic!("not an append"),
    }
}

/// Node 1 leading a 3-voter cluster, its no-op committed, nothing ready.
fn steady_leader() -> TestNode {
    let mut n = node(1, &[1, 2, 3]);
    make_leader(&mut n);
    let noop = n.last_index();
    let term = n.term();
    step_ok(&mut n, &append_ok(2, 1, term, noop));
    step_ok(&mut n, &append_ok(3, 1, term, noop));
    drain(&mut n);
    assert_eq!(n.committed(), noop);
    assert!(!n.has_ready());
    n
}

/// §10.2.1: the leader's appends for a new entry are available before `persist`, and its own
/// unsynced copy does not count: one follower's acknowledgement plus the leader's unsynced
/// entry is not a majority until the leader's sync.
#[test]
fn a_leaders_appends_leave_before_its_sync_but_its_own_entry_counts_only_after() {
    let mut n = steady_leader();
    let term = n.term();
    let committed = n.committed();
    let index = n.propose(b"x").unwrap();
    let rd = n.ready();
    assert!(rd.must_sync);
    let early = collect(n.early_messages(&rd));
    assert_eq!(early.len(), 2, "one append per follower: {early:?}");
    for to in [2, 3] {
        let a = appends_to(&early, to);
        assert_eq!(a.len(), 1);
        assert_eq!(last_carried(&a[0]), index);
    }
    assert!(
        n.storage().last_index() < index,
        "not written before persist"
    );

    // A follower answers before the leader's sync is done: not a majority yet.
    step_ok(&mut n, &append_ok(2, 1, term, index));
    assert_eq!(
        n.committed(),
        committed,
        "the leader's own entry is not durable"
    );

    let p = n.persist(rd).unwrap();
    assert_eq!(n.committed(), index, "durable on the leader and on node 2");
    assert!(p.committed_range().contains(&index));
    let after = collect(n.messages(&p));
    assert!(
        after.is_empty(),
        "everything was sent early already: {after:?}"
    );
    n.advance(p);
}

/// §10.2.1: a majority of followers can commit an entry the leader has not synced yet; the
/// leader still applies it only from its own durable log, after its sync.
#[test]
fn followers_alone_can_commit_but_the_leader_applies_only_after_its_sync() {
    let mut n = steady_leader();
    let term = n.term();
    let index = n.propose(b"y").unwrap();
    let rd = n.ready();
    let early = collect(n.early_messages(&rd));
    assert_eq!(early.len(), 2);
    step_ok(&mut n, &append_ok(2, 1, term, index));
    step_ok(&mut n, &append_ok(3, 1, term, index));
    assert_eq!(n.committed(), index, "two of three voters hold it durably");
    let p = n.persist(rd).unwrap();
    let mut applied = Vec::new();
    n.committed_entries(&p, &mut |e| applied.push((e.index, e.data.to_vec())))
        .unwrap();
    assert_eq!(applied, vec![(index, b"y".to_vec())]);
    n.advance(p);
}

/// Heartbeats reveal nothing new (the commit index each follower is told is one a majority
/// holds durably), so they leave early too.
#[test]
fn heartbeats_leave_early() {
    let mut n = steady_leader();
    n.tick(); // heartbeat_ticks is 1 in the test configuration
    let r = split_round(&mut n);
    assert_eq!(r.early.iter().filter(|s| is_heartbeat(s)).count(), 2);
    assert!(r.after.is_empty(), "{:?}", r.after);
}

/// Figure 2: a follower persists the entries before answering the append.
#[test]
fn a_followers_append_response_waits_for_persist() {
    let mut n = node(2, &[1, 2, 3]);
    make_follower(&mut n, 1, 1);
    step_ok(&mut n, &append_msg(1, 2, 1, (0, 0), 0, &[(1, 1), (2, 1)]));
    let r = split_round(&mut n);
    assert!(r.early.is_empty(), "{:?}", r.early);
    assert_eq!(r.after.len(), 1);
    assert!(matches!(
        r.after[0].msg().body,
        Body::AppendResponse {
            success: true,
            index: 2,
            ..
        }
    ));
}

/// §5.2: a candidate's new term and its vote for itself are durable before it asks for votes;
/// a voter's vote is durable before it grants it.
#[test]
fn vote_requests_and_votes_wait_for_persist() {
    let mut c = node(1, &[1, 2, 3]);
    c.campaign();
    assert_eq!(c.role(), Role::Candidate);
    let r = split_round(&mut c);
    assert!(r.early.is_empty(), "{:?}", r.early);
    assert_eq!(r.after.len(), 2);

    let mut v = node(2, &[1, 2, 3]);
    step_ok(&mut v, &vote_req(1, 2, 1, false, (0, 0)));
    let r = split_round(&mut v);
    assert!(r.early.is_empty(), "{:?}", r.early);
    assert!(matches!(
        r.after[0].msg().body,
        Body::VoteResponse { granted: true, .. }
    ));
}

/// With pre-vote, the pre-vote requests change no durable state but still wait like every
/// message that is not a leader's append or heartbeat.
#[test]
fn pre_vote_requests_wait_for_persist() {
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.pre_vote = true;
    let mut c = node_with(cfg, TestStorage::new());
    c.campaign();
    assert_eq!(c.role(), Role::PreCandidate);
    let r = split_round(&mut c);
    assert!(r.early.is_empty());
    assert_eq!(r.after.len(), 2);
}

/// A leader whose term is not durable yet sends nothing early. A single voter with a learner
/// wins its election on the spot, without sending (so without persisting) anything: were its
/// first appends to leave before the sync and the node crash, it would restart in the old
/// term, win the same term again, and could write a different entry at the same index and
/// term on the learner (§5.3, Log Matching).
#[test]
fn a_leader_whose_term_is_not_durable_sends_nothing_early() {
    let mut cfg = config(1, &[1]);
    cfg.bootstrap.learners.push(2).unwrap();
    let mut n = node_with(cfg, TestStorage::new());
    n.campaign();
    assert_eq!(n.role(), Role::Leader);
    assert_eq!(n.storage().hard_state().term, 0);
    let r = split_round(&mut n);
    assert!(r.early.is_empty(), "term 1 was not durable: {:?}", r.early);
    assert_eq!(appends_to(&r.after, 2).len(), 1);
    assert_eq!(n.storage().hard_state().term, 1);
    let noop = n.last_index();
    step_ok(&mut n, &append_ok(2, 1, 1, noop));
    drain(&mut n);

    // With term 1 and the vote durable, the next appends may go early.
    let index = n.propose(b"z").unwrap();
    let r = split_round(&mut n);
    let early = appends_to(&r.early, 2);
    assert_eq!(early.len(), 1);
    assert_eq!(last_carried(&early[0]), index);
}

/// A leader that just won a contested election: its term and vote were synced before its
/// vote requests left, so its very first appends (the no-op) may leave early.
#[test]
fn a_newly_elected_leaders_first_appends_leave_early() {
    let mut n = node(1, &[1, 2, 3]);
    n.campaign();
    drain(&mut n);
    step_ok(&mut n, &vote_resp(2, 1, 1, false, true));
    assert_eq!(n.role(), Role::Leader);
    let r = split_round(&mut n);
    assert_eq!(r.early.len(), 2, "{:?} / {:?}", r.early, r.after);
    assert!(r.early.iter().all(is_append));
}

/// A leader that steps down before its round runs: its queued heartbeats of the old (durable)
/// term may still go early, but nothing of the new term does: the vote that reveals the new
/// term waits for the sync that makes it durable.
#[test]
fn a_deposed_leader_sends_nothing_of_its_new_term_early() {
    let mut n = steady_leader();
    n.propose(b"w").unwrap();
    n.tick(); // queues heartbeats of the current term
    let term = n.term();
    // A vote request of a higher term arrives (check-quorum is off in the test config).
    step_ok(&mut n, &vote_req(3, 1, term + 1, false, (100, term)));
    assert_eq!(n.role(), Role::Follower);
    let r = split_round(&mut n);
    assert!(!r.early.is_empty(), "the heartbeats of the old term");
    for s in &r.early {
        let m = s.msg();
        assert_eq!(
            m.term, term,
            "only the old term's messages may go early: {m:?}"
        );
        assert!(matches!(
            m.body,
            Body::Append { .. } | Body::Heartbeat { .. }
        ));
    }
    let vote = r
        .after
        .iter()
        .find(|s| matches!(s.msg().body, Body::VoteResponse { .. }))
        .expect("the vote is answered after the sync");
    assert_eq!(vote.msg().term, term + 1);
    assert_eq!(n.storage().hard_state().term, term + 1);
}

/// Every message of a round is handed out once, early or after persisting; asking twice for
/// early messages yields nothing new; and a caller that never asks gets everything after
/// persisting, as before.
#[test]
fn every_message_is_handed_out_exactly_once() {
    let mut a = steady_leader();
    let mut b = steady_leader();
    for n in [&mut a, &mut b] {
        for i in 0..5u8 {
            n.propose(&[i]).unwrap();
        }
        n.tick();
    }
    let rd = a.ready();
    let counted = rd.messages;
    let early = collect(a.early_messages(&rd));
    assert!(
        collect(a.early_messages(&rd)).is_empty(),
        "handed out twice"
    );
    let p = a.persist(rd).unwrap();
    let after = collect(a.messages(&p));
    assert_eq!(early.len() + after.len(), counted);
    a.advance(p);

    // The same node driven without early sends sends the same messages, all after persist.
    let all = round(&mut b).messages;
    let mut split: Vec<Vec<u8>> = early
        .iter()
        .chain(&after)
        .map(|s| s.bytes.clone())
        .collect();
    let mut plain: Vec<Vec<u8>> = all.iter().map(|s| s.bytes.clone()).collect();
    split.sort();
    plain.sort();
    assert_eq!(split, plain);
}

/// Messages queued after `ready` belong to the next round: not handed out early now.
#[test]
fn early_messages_are_those_of_the_round_only() {
    let mut n = steady_leader();
    n.propose(b"a").unwrap();
    let rd = n.ready();
    n.propose(b"b").unwrap();
    n.tick(); // queues heartbeats after `ready`
    let early = collect(n.early_messages(&rd));
    assert_eq!(early.len(), rd.messages);
    let p = n.persist(rd).unwrap();
    assert!(collect(n.messages(&p)).is_empty());
    n.advance(p);
    let r = split_round(&mut n);
    assert!(r.early.iter().any(is_heartbeat), "{:?}", r.early);
    assert_eq!(r.early.len() + r.after.len(), r.counted);
}

/// The sync fails after the early send: the next round must neither resend what already
/// left nor lose what did not. (A real driver stops the node after a failed sync; the core
/// must still hand out every message exactly once if it retries.)
#[test]
fn a_failed_persist_after_an_early_send_resends_nothing() {
    let mut n = FailNode::new(config(1, &[1, 2, 3]), FailOnce::default()).unwrap();
    n.campaign();
    while n.has_ready() {
        let rd = n.ready();
        let p = n.persist(rd).unwrap();
        n.advance(p);
    }
    n.step_bytes(&vote_resp(2, 1, 1, false, true)).unwrap();
    assert_eq!(n.role(), Role::Leader);
    // Node 3 is up to date: a transfer to it queues a TimeoutNow, which must wait.
    let last = n.last_index();
    n.step_bytes(&append_ok(3, 1, 1, last)).unwrap();
    n.transfer_leader(3).unwrap();
    n.storage_mut().fail_next_sync = true;
    let rd = n.ready();
    let counted = rd.messages;
    let early = collect(n.early_messages(&rd));
    assert!(early.iter().any(is_append), "{early:?}");
    assert!(n.persist(rd).is_err());

    let rd = n.ready();
    assert!(rd.messages >= counted);
    assert!(collect(n.early_messages(&rd)).is_empty(), "already sent");
    let p = n.persist(rd).unwrap();
    let after = collect(n.messages(&p));
    assert!(
        after
            .iter()
            .any(|s| matches!(s.msg().body, Body::TimeoutNow)),
        "{after:?}"
    );
    assert_eq!(early.len() + after.len(), counted);
    for e in &early {
        assert!(
            !after.iter().any(|s| s.bytes == e.bytes),
            "sent twice: {:?}",
            e.msg()
        );
    }
    n.advance(p);
}

type FailNode = RawNode<FailOnce, { 32 * 1024 }, { 32 * 1024 }>;

/// A `TestStorage` whose next sync can be made to fail once (and then works again).
#[derive(Default)]
struct FailOnce {
    inner: TestStorage,
    fail_next_sync: bool,
}

impl Storage for FailOnce {
    type Error = MemStorageError;
    fn initial_state(&self) -> Result<InitialState, Self::Error> {
        self.inner.initial_state()
    }
    fn first_index(&self) -> Index {
        self.inner.first_index()
    }
    fn last_index(&self) -> Index {
        self.inner.last_index()
    }
    fn term(&self, index: Index) -> Result<Term, Self::Error> {
        self.inner.term(index)
    }
    fn entries(
        &self,
        lo: Index,
        hi: Index,
        bytes_max: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> bool,
    ) -> Result<(), Self::Error> {
        self.inner.entries(lo, hi, bytes_max, visit)
    }
    fn append(&mut self, entry: Entry<'_>) -> Result<(), Self::Error> {
        self.inner.append(entry)
    }
    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), Self::Error> {
        self.inner.set_hard_state(hard_state)
    }
    fn sync(&mut self) -> Result<(), Self::Error> {
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(MemStorageError(StorageErrorKind::Io));
        }
        self.inner.sync()
    }
    fn snapshot_meta(&self) -> SnapshotMeta {
        self.inner.snapshot_meta()
    }
    fn snapshot_len(&self) -> u64 {
        self.inner.snapshot_len()
    }
    fn read_snapshot(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.inner.read_snapshot(offset, buf)
    }
    fn begin_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), Self::Error> {
        self.inner.begin_snapshot(meta)
    }
    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        self.inner.write_snapshot(data)
    }
    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        self.inner.finish_snapshot()
    }
}

/// A 3-node cluster driven with early sends everywhere; the leader crashes between its early
/// send and its sync, losing the entry it just sent. The followers hold it durably, so it may
/// still commit (nobody was told it had), and after the leader restarts every log agrees.
#[test]
fn a_leader_crash_between_early_send_and_sync() {
    let mut net = EarlyNet::new(3);
    net.elect(1);
    let index = net.node(1).last_index() + 1;
    assert_eq!(net.node_mut(1).propose(b"lost?").unwrap(), index);

    // Node 1's round: the appends leave, then the node dies instead of syncing.
    let leader = net.nodes[0].as_mut().unwrap();
    let rd = leader.ready();
    let early = collect(leader.early_messages(&rd));
    assert_eq!(early.len(), 2);
    drop(rd);
    net.crash(1);
    assert!(net.stopped[0].as_ref().unwrap().last_index() < index);
    net.deliver(1, early);
    for id in [2, 3] {
        assert_eq!(net.node(id).last_index(), index, "node {id}");
    }

    // Node 2 takes over; its no-op commits the entry the old leader sent.
    net.node_mut(2).campaign();
    net.settle();
    assert_eq!(net.node(2).role(), Role::Leader);
    assert!(net.node(2).committed() > index);

    // Node 1 comes back with the entry lost and catches up from node 2.
    net.restart(1);
    for _ in 0..3 {
        net.node_mut(2).tick();
        net.settle();
    }
    let log = |n: &TestNode| {
        let mut v = Vec::new();
        n.entries(1, n.last_index() + 1, &mut |e| {
            v.push((e.index, e.term, e.data.to_vec()))
        });
        v
    };
    let want = log(net.node(2));
    assert!(want.contains(&(index, 1, b"lost?".to_vec())), "{want:?}");
    for id in [1, 3] {
        assert_eq!(log(net.node(id)), want, "node {id}");
        assert_eq!(net.node(id).committed(), net.node(2).committed());
    }
}

/// A minimal network whose nodes send early messages before persisting (the harness's
/// `Network` drives the plain loop). Messages are delivered in order, without loss.
struct EarlyNet {
    nodes: Vec<Option<TestNode>>,
    stopped: Vec<Option<TestStorage>>,
}

impl EarlyNet {
    fn new(n: u64) -> Self {
        let voters = ids(n);
        Self {
            nodes: voters.iter().map(|&id| Some(node(id, &voters))).collect(),
            stopped: voters.iter().map(|_| None).collect(),
        }
    }

    fn node(&self, id: NodeId) -> &TestNode {
        self.nodes[id as usize - 1].as_ref().unwrap()
    }

    fn node_mut(&mut self, id: NodeId) -> &mut TestNode {
        self.nodes[id as usize - 1].as_mut().unwrap()
    }

    fn elect(&mut self, id: NodeId) {
        self.node_mut(id).campaign();
        self.settle();
        assert_eq!(self.node(id).role(), Role::Leader);
    }

    /// A crash: what `persist` wrote survives (MemStorage syncs every write), nothing else.
    fn crash(&mut self, id: NodeId) {
        let n = self.nodes[id as usize - 1].take().unwrap();
        self.stopped[id as usize - 1] = Some(into_storage(n));
    }

    fn restart(&mut self, id: NodeId) {
        let s = self.stopped[id as usize - 1].take().unwrap();
        let voters = ids(self.nodes.len() as u64);
        self.nodes[id as usize - 1] = Some(node_with(config(id, &voters), s));
    }

    fn settle(&mut self) {
        self.deliver(0, Vec::new());
    }

    fn deliver(&mut self, from: NodeId, msgs: Vec<Sent>) {
        let mut queue: std::collections::VecDeque<(NodeId, Sent)> =
            msgs.into_iter().map(|m| (from, m)).collect();
        for _ in 0..10_000 {
            while let Some((_, m)) = queue.pop_front() {
                if let Some(n) = self.nodes[m.to as usize - 1].as_mut() {
                    let _ = n.step_bytes(&m.bytes);
                }
            }
            let mut any = false;
            for i in 0..self.nodes.len() {
                let Some(n) = self.nodes[i].as_mut() else {
                    continue;
                };
                if !n.has_ready() {
                    continue;
                }
                any = true;
                let id = n.id();
                let r = split_round(n);
                queue.extend(r.early.into_iter().chain(r.after).map(|m| (id, m)));
            }
            if !any && queue.is_empty() {
                return;
            }
        }
        panic!("network did not quiesce");
    }
}
