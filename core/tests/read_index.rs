//! Linearizable reads without writing to the log: ReadIndex and leader-lease reads.
//!
//! Section numbers refer to Ongaro's dissertation (2014): §6.4 ("Processing read-only queries
//! more efficiently") and §6.4.1 ("Using clocks to reduce messaging for read-only queries").

mod harness;
use harness::*;
use tinyraft::limits::READS_PENDING_MAX;
use tinyraft::{ReadError, ReadState, Role};

fn rs(request: u64, index: u64) -> ReadState {
    ReadState { request, index }
}

/// Dissertation §6.4 steps 1–3: the leader records its commit index as the read index, then
/// confirms it is still leader with a round of heartbeats; only when a majority acknowledges
/// that round is the read answered, with the index recorded when it was asked.
#[test]
fn read_is_answered_after_a_quorum_acknowledges_a_heartbeat() {
    let mut net = Network::new(3);
    net.campaign(1);
    assert_eq!(net.node(1).committed(), 1);

    let n = net.node_mut(1);
    n.read_index(7).unwrap();
    // A write arriving after the read does not move the read's index.
    n.propose(b"later").unwrap();
    let r = round(n);
    assert!(r.reads.is_empty(), "not before the heartbeat round");
    assert_eq!(r.messages.iter().filter(|s| is_heartbeat(s)).count(), 2);

    let mut reads = Vec::new();
    net.deliver_observing(1, r.messages, &mut |id, r| {
        reads.extend(r.reads.iter().map(|&x| (id, x)))
    });
    assert_eq!(reads, vec![(1, rs(7, 1))]);
}

/// Dissertation §6.4: reads are answered in the order they were asked, each with the commit
/// index of the moment it was asked.
#[test]
fn several_reads_are_answered_in_order() {
    let mut net = Network::new(3);
    net.campaign(1);
    net.node_mut(1).read_index(1).unwrap();
    net.node_mut(1).read_index(2).unwrap();
    net.node_mut(1).propose(b"x").unwrap();
    net.node_mut(1).read_index(3).unwrap();
    let mut reads = net.settle_reads();
    net.node_mut(1).read_index(4).unwrap();
    reads.extend(net.settle_reads());
    let want = vec![rs(1, 1), rs(2, 1), rs(3, 1), rs(4, 2)];
    assert_eq!(reads, want.into_iter().map(|r| (1, r)).collect::<Vec<_>>());
}

/// Dissertation §6.4 step 3: a leader cut off from the majority cannot confirm its
/// leadership, so it answers no read — however long it tries; once it reaches a majority again
/// the read is answered.
#[test]
fn no_read_is_answered_without_a_quorum() {
    let mut net = Network::new(5);
    net.campaign(1);
    net.cut(1, 3);
    net.cut(1, 4);
    net.cut(1, 5);
    net.node_mut(1).read_index(9).unwrap();
    let mut reads = net.settle_reads();
    for _ in 0..5 {
        for id in net.ids() {
            net.node_mut(id).tick();
        }
        reads.extend(net.settle_reads());
    }
    assert!(reads.is_empty(), "{reads:?}");
    assert_eq!(
        net.node(1).role(),
        Role::Leader,
        "without check-quorum it still leads"
    );

    // Two of five followers are enough with the leader itself.
    net.recover();
    net.cut(1, 4);
    net.cut(1, 5);
    net.node_mut(1).tick();
    let reads = net.settle_reads();
    assert_eq!(reads, vec![(1, rs(9, 1))]);
}

/// Dissertation §6.4 step 1 ("if the leader has not yet marked an entry from its current term
/// committed, it waits until it has done so"): a new leader's commit index may lag entries its
/// predecessor committed, so its read index is its no-op's index, and a read is served only
/// once that no-op has committed and applied.
#[test]
fn new_leaders_read_waits_for_its_noop() {
    let mut net = Network::new(3);
    net.campaign(1);
    net.propose(1, b"committed by node 1");
    assert_eq!(net.node(2).committed(), 2);

    net.filter = Some(Box::new(|s, _| !is_append(s)));
    net.campaign(2);
    assert_eq!(net.state(2), (Role::Leader, 2));
    let noop = net.node(2).last_index();
    assert_eq!(noop, 3);
    assert_eq!(net.node(2).committed(), 2, "the no-op has not replicated");

    net.node_mut(2).read_index(4).unwrap();
    let reads = net.settle_reads();
    assert_eq!(reads, vec![(2, rs(4, noop))]);
    assert!(net.node(2).applied() < noop, "the read must wait");

    net.recover();
    net.tick();
    assert!(
        net.node(2).applied() >= noop,
        "and can be served once the no-op applies"
    );
}

/// Dissertation §6.4.1: with leader leases a leader that recently heard from a majority
/// answers reads at once, without a heartbeat round. The lease runs out before any follower
/// could vote for a new leader (one election timeout after it last heard from this one), so a
/// cut-off leader stops answering at once while it still believes it leads.
#[test]
fn lease_reads_are_answered_at_once_only_while_the_lease_holds() {
    let election_ticks = 10;
    let mut net = Network::with_config(3, |c| {
        c.check_quorum = true;
        c.lease_reads = true;
        c.election_ticks = election_ticks;
    });
    // Elected by timeouts, as a running cluster would be.
    let l = net.elect(100).expect("a leader");
    let committed = net.node(l).committed();

    // Before any acknowledged heartbeat there is no lease: a heartbeat round is needed.
    net.node_mut(l).read_index(1).unwrap();
    let r = round(net.node_mut(l));
    assert!(r.reads.is_empty());
    assert!(r.messages.iter().any(is_heartbeat));
    net.deliver(l, r.messages);

    // After a tick's heartbeats are acknowledged, reads are answered in the same round.
    net.ticks(2);
    net.node_mut(l).read_index(2).unwrap();
    let r = round(net.node_mut(l));
    assert!(r.reads.contains(&rs(2, committed)));
    assert!(r.messages.is_empty(), "no messages needed");

    // Cut off, the leader keeps answering from its lease for election_ticks - 1 ticks past
    // the last acknowledged heartbeat (one tick of margin for clock drift), then stops.
    net.isolate(l);
    for k in 1..election_ticks {
        net.tick_node(l);
        net.node_mut(l).read_index(100 + k as u64).unwrap();
        let r = round(net.node_mut(l));
        let answered = r.reads.iter().any(|x| x.request == 100 + k as u64);
        assert_eq!(answered, k < election_ticks - 1, "after {k} ticks cut off");
    }
    assert_eq!(
        net.node(l).role(),
        Role::Leader,
        "it still believes it leads"
    );
    let mut reads = Vec::new();
    for _ in 0..5 {
        net.node_mut(l).tick();
        reads.extend(net.settle_reads());
    }
    assert!(
        reads.is_empty(),
        "the unconfirmed reads stay unanswered: {reads:?}"
    );
}

/// Dissertation §6.4: a single-node cluster is its own majority; reads are answered at once.
#[test]
fn single_voter_answers_reads_at_once() {
    let mut net = Network::new(1);
    net.campaign(1);
    net.node_mut(1).read_index(3).unwrap();
    let r = round(net.node_mut(1));
    assert_eq!(r.reads, vec![rs(3, 1)]);
}

/// Dissertation §6.4: only the leader serves reads. Others refuse, naming the leader they
/// know; a leader that loses its leadership drops reads it had not confirmed.
#[test]
fn reads_need_a_leader_and_die_with_its_leadership() {
    let mut net = Network::new(3);
    net.campaign(1);
    assert_eq!(
        net.node_mut(2).read_index(1),
        Err(ReadError::NotLeader { leader: Some(1) })
    );
    assert_eq!(
        node(1, &[1, 2, 3]).read_index(1),
        Err(ReadError::NotLeader { leader: None })
    );

    net.isolate(1);
    net.node_mut(1).read_index(5).unwrap();
    assert!(net.settle_reads().is_empty());
    // A later term deposes node 1 before the read was confirmed.
    step_ok(net.node_mut(1), &heartbeat(2, 1, 2, 0, 0));
    assert_eq!(net.node(1).role(), Role::Follower);
    net.recover();
    net.campaign(1);
    assert_eq!(net.state(1), (Role::Leader, 3));
    net.ticks(3);
    let reads = net.settle_reads();
    assert!(reads.is_empty(), "the old read was dropped: {reads:?}");
}

/// Bounded memory: at most READS_PENDING_MAX reads wait for confirmation; one more is refused
/// with `Full` rather than dropping an older one.
#[test]
fn pending_reads_are_bounded() {
    let mut net = Network::new(3);
    net.campaign(1);
    net.isolate(1);
    for i in 0..READS_PENDING_MAX as u64 {
        net.node_mut(1).read_index(i).unwrap();
    }
    assert_eq!(net.node_mut(1).read_index(999), Err(ReadError::Full));
    net.settle();

    net.recover();
    net.node_mut(1).tick();
    let reads = net.settle_reads();
    let ids: Vec<u64> = reads.iter().map(|(_, r)| r.request).collect();
    assert_eq!(ids, (0..READS_PENDING_MAX as u64).collect::<Vec<_>>());
}

/// Dissertation §6.4.1 with §4.2.3: a lease holds because the followers that acknowledged it
/// will not vote for anyone else for an election timeout. A follower that restarts has
/// forgotten when it last heard from the leader, so for its first election timeout it ignores
/// vote requests as if in a lease; otherwise a candidate the leader cannot reach could win with
/// its vote and commit writes while the old leader still answers reads from its lease.
#[test]
fn restarted_follower_keeps_honouring_a_lease_it_may_have_granted() {
    let mut net = Network::with_config(3, |c| {
        c.check_quorum = true;
        c.lease_reads = true;
    });
    let l = net.elect(100).expect("a leader");
    net.ticks(2);
    let others: Vec<u64> = net.ids().into_iter().filter(|&i| i != l).collect();
    let (x, y) = (others[0], others[1]);

    // x cannot hear the leader; y restarts right after acknowledging its heartbeats.
    net.cut(l, x);
    net.crash(y);
    net.restart(y);
    net.campaign(x);
    assert_ne!(net.node(x).role(), Role::Leader, "y must not vote yet");
    assert_eq!(net.state(l).0, Role::Leader);

    // The leader's lease read is therefore not stale.
    net.node_mut(l).read_index(1).unwrap();
    let r = round(net.node_mut(l));
    assert_eq!(r.reads.len(), 1, "answered from the lease");
    let newest = net.ids().iter().map(|&i| net.node(i).committed()).max();
    assert!(Some(r.reads[0].index) >= newest);

    // The restart lease ends after one election timeout: without the old leader, x and y
    // elect one of them.
    net.crash(l);
    let mut leader = None;
    for _ in 0..60 {
        net.tick_node(x);
        net.tick_node(y);
        leader = [x, y]
            .into_iter()
            .find(|&i| net.node(i).role() == Role::Leader);
        if leader.is_some() {
            break;
        }
    }
    assert!(leader.is_some(), "x and y elect a leader");
}
