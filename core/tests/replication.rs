//! Log replication and commitment: how entries reach followers, when they count as committed,
//! and what followers do with appends and heartbeats.
//!
//! Section numbers refer to the Raft paper (Ongaro & Ousterhout, 2014).

mod harness;
use harness::*;
use tinyraft::{Body, HardState, Index, NodeId, ProposeError, ProposeErrorKind, Role, Term};

/// Index and term of every entry of `n`'s log.
fn terms_of(n: &TestNode) -> Vec<(Index, Term)> {
    log_of(n).iter().map(|e| (e.index, e.term)).collect()
}

/// Payloads of the committed, non-empty entries of `n`.
fn committed_data(n: &TestNode) -> Vec<Vec<u8>> {
    log_of(n)
        .into_iter()
        .filter(|e| e.index <= n.committed() && !e.data.is_empty())
        .map(|e| e.data)
        .collect()
}

/// §5.3: a leader appends a proposal, replicates it, and once a majority holds it every node
/// commits and applies it — also after leadership moved to another node.
#[test]
fn proposals_replicate_and_commit_everywhere() {
    // One leader, one proposal.
    let mut net = Network::new(3);
    net.campaign(1);
    net.propose(1, b"somedata");
    for id in net.ids() {
        let n = net.node(id);
        assert_eq!(n.committed(), 2, "node {id}");
        assert_eq!(n.applied(), 2, "node {id} applied what committed");
        assert_eq!(committed_data(n), vec![b"somedata".to_vec()], "node {id}");
    }

    // A proposal on each of two successive leaders.
    let mut net = Network::new(3);
    net.campaign(1);
    net.propose(1, b"first");
    net.campaign(2);
    net.propose(2, b"second");
    for id in net.ids() {
        let n = net.node(id);
        assert_eq!(n.committed(), 4, "node {id}");
        assert_eq!(n.applied(), 4, "node {id}");
        assert_eq!(
            committed_data(n),
            vec![b"first".to_vec(), b"second".to_vec()],
            "node {id}"
        );
    }
}

/// §5.3: a single-node cluster is its own majority: each proposal commits as soon as the
/// leader has persisted it.
#[test]
fn single_node_commits_on_persist() {
    let mut net = Network::new(1);
    net.campaign(1);
    net.propose(1, b"some data");
    net.propose(1, b"some data");
    assert_eq!(net.node(1).committed(), 3);

    // Not before: the leader's own acknowledgement counts only once the entry is durable.
    let n = net.node_mut(1);
    let i = n.propose(b"more").unwrap();
    assert_eq!(n.committed(), 3);
    let r = round(n);
    assert_eq!(n.committed(), i);
    assert_eq!(r.committed.len(), 1);
    assert_eq!(r.committed[0].data, b"more");
}

/// §5.4.2: a leader never commits an entry of an earlier term by counting replicas, even once
/// a majority holds it; it commits it only indirectly, with an entry of its own term.
#[test]
fn old_term_entry_on_a_majority_is_not_committed_by_counting() {
    // Node 1 holds an entry of term 2 at index 2 that the term-2 leader did not commit.
    let hs = HardState {
        term: 2,
        vote: None,
        commit: 1,
    };
    let mut n = node_with(config(1, &[1, 2, 3]), storage_with(&[1, 2], hs));
    make_leader(&mut n);
    assert_eq!(n.term(), 3);
    assert_eq!(n.last_index(), 3, "the no-op of term 3");

    // Node 2 reports holding index 2: a majority (1 and 2) has it, but it is of term 2.
    step_ok(&mut n, &append_ok(2, 1, 3, 2));
    drain(&mut n);
    assert_eq!(n.committed(), 1);

    // Once the no-op of term 3 is on a majority, it commits and index 2 with it.
    step_ok(&mut n, &append_ok(2, 1, 3, 3));
    let r = round(&mut n);
    assert_eq!(n.committed(), 3);
    let applied: Vec<_> = r.committed.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(applied, vec![(2, 2), (3, 3)]);
}

/// §5.4.2 and §8 (a new leader commits a blank no-op entry at the start of its term): entries a
/// deposed leader replicated to only a minority stay uncommitted; the next leader's no-op
/// commits them without any new proposal.
#[test]
fn new_leader_commits_earlier_entries_through_its_noop() {
    let mut net = Network::new(5);
    net.campaign(1);
    net.cut(1, 3);
    net.cut(1, 4);
    net.cut(1, 5);
    net.propose(1, b"some data");
    net.propose(1, b"some data");
    assert_eq!(net.node(1).committed(), 1, "only nodes 1 and 2 hold them");

    net.recover();
    net.campaign(2);
    assert_eq!(net.state(2), (Role::Leader, 2));
    for id in net.ids() {
        let n = net.node(id);
        assert_eq!(n.committed(), 4, "node {id}");
        assert_eq!(
            terms_of(n),
            vec![(1, 1), (2, 1), (3, 1), (4, 2)],
            "node {id}"
        );
    }
}

/// §5.4.2: while the new leader cannot replicate its no-op, nothing commits, even though the
/// entries of the earlier term already sit on a majority.
#[test]
fn nothing_commits_until_the_new_term_entry_replicates() {
    let mut net = Network::new(5);
    net.campaign(1);
    net.cut(1, 3);
    net.cut(1, 4);
    net.cut(1, 5);
    net.propose(1, b"some data");
    net.propose(1, b"some data");
    assert_eq!(net.node(1).committed(), 1);

    net.recover();
    net.filter = Some(Box::new(|s, _| !is_append(s)));
    net.campaign(2);
    net.ticks(3);
    assert_eq!(net.state(2), (Role::Leader, 2));
    assert_eq!(net.node(2).committed(), 1);

    net.recover();
    net.ticks(3);
    net.propose(2, b"new");
    for id in net.ids() {
        assert_eq!(net.node(id).committed(), 5, "node {id}");
    }
}

/// §5.1 ("if a server receives a request with a stale term number, it rejects the request"):
/// an append from a leader of an earlier term changes nothing; the current leader's log wins.
#[test]
fn appends_from_an_earlier_term_are_ignored() {
    let mut net = Network::new(3);
    net.campaign(1);
    net.campaign(2);
    net.campaign(1);
    assert_eq!(net.state(1), (Role::Leader, 3));

    // Node 2 as the leader of term 2 it once was, trying to overwrite index 3.
    let stale = append_msg(2, 1, 2, (2, 2), 3, &[(3, 2)]);
    net.deliver(
        2,
        vec![Sent {
            to: 1,
            bytes: stale,
        }],
    );
    net.propose(1, b"somedata");

    for id in net.ids() {
        let n = net.node(id);
        assert_eq!(
            terms_of(n),
            vec![(1, 1), (2, 2), (3, 3), (4, 3)],
            "node {id}"
        );
        assert_eq!(n.committed(), 4, "node {id}");
        assert_eq!(committed_data(n), vec![b"somedata".to_vec()]);
    }
}

/// §5.3: a proposal commits only if the leader can reach a majority; with too many nodes down
/// no leader is elected and the proposal is refused with its data handed back.
#[test]
fn proposal_commits_only_with_a_majority() {
    // (cluster size, nodes that are down, proposal commits)
    let cases: &[(u64, &[NodeId], bool)] = &[
        (3, &[], true),
        (3, &[3], true),
        (3, &[2, 3], false),
        (4, &[2, 3], false),
        (5, &[2, 3], true),
    ];
    for (i, &(size, down, ok)) in cases.iter().enumerate() {
        let mut net = Network::new(size);
        for &d in down {
            net.crash(d);
        }
        net.campaign(1);
        let data = b"somedata";
        let r = net.node_mut(1).propose(data);
        net.settle();
        if ok {
            assert_eq!(r, Ok(2), "case {i}");
            for id in (1..=size).filter(|id| !down.contains(id)) {
                let n = net.node(id);
                assert_eq!(terms_of(n), vec![(1, 1), (2, 1)], "case {i} node {id}");
                assert_eq!(n.committed(), 2, "case {i} node {id}");
            }
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.kind, ProposeErrorKind::NotLeader { leader: None });
            assert!(
                std::ptr::eq(e.data, &data[..]),
                "case {i}: data handed back"
            );
            assert!(log_of(net.node(1)).is_empty(), "case {i}");
        }
        assert_eq!(net.node(1).term(), 1, "case {i}");
    }
}

/// §5.1 ("the leader handles all client requests; if a client contacts a follower, the
/// follower redirects it to the leader"): tinyraft does not forward proposals. A follower
/// refuses, names the leader and hands the data back, so the caller can take it there.
#[test]
fn follower_refuses_proposals_and_names_the_leader() {
    let mut net = Network::new(3);
    net.campaign(1);
    let data = b"somedata".to_vec();
    let refused = net.node_mut(2).propose(&data);
    let ProposeError { kind, data: back } = refused.unwrap_err();
    assert_eq!(kind, ProposeErrorKind::NotLeader { leader: Some(1) });
    assert!(std::ptr::eq(back, &data[..]), "the same bytes come back");
    assert!(
        !net.node(2).has_ready(),
        "a refused proposal leaves no trace"
    );

    // The caller redirects to the named leader.
    net.propose(1, back);
    for id in net.ids() {
        assert_eq!(committed_data(net.node(id)), vec![b"somedata".to_vec()]);
    }
}

/// §5.3 (AppendEntries receiver rules 2–5): reject if the log has no entry at `prev_index`
/// with `prev_term`; otherwise drop a conflicting suffix, append what is new, and commit up to
/// `min(leader commit, index of the last entry the message vouches for)`.
#[test]
fn follower_append_rules() {
    // The follower holds (1, term 1) and (2, term 2).
    // (prev index, prev term, leader commit, entries, last index after, commit after, accepted)
    type Case = (
        Index,
        Term,
        Index,
        &'static [(Index, Term)],
        Index,
        Index,
        bool,
    );
    let cases: &[Case] = &[
        // Rule 2: no matching entry at prev_index.
        (2, 3, 3, &[], 2, 0, false),
        (3, 3, 3, &[], 2, 0, false),
        // Rules 3 and 4: conflicts are replaced, present entries kept, new ones appended.
        (1, 1, 1, &[], 2, 1, true),
        (0, 0, 1, &[(1, 2)], 1, 1, true),
        (2, 2, 3, &[(3, 2), (4, 2)], 4, 3, true),
        (2, 2, 4, &[(3, 2)], 3, 3, true),
        (1, 1, 4, &[(2, 2)], 2, 2, true),
        // Rule 5: commit no further than the message vouches for.
        (1, 1, 3, &[], 2, 1, true),
        (1, 1, 3, &[(2, 2)], 2, 2, true),
        (2, 2, 3, &[], 2, 2, true),
        (2, 2, 4, &[], 2, 2, true),
    ];
    for (i, &(pi, pt, commit, entries, last, committed, accepted)) in cases.iter().enumerate() {
        let hs = HardState {
            term: 2,
            vote: None,
            commit: 0,
        };
        let mut n = node_with(config(1, &[1, 2]), storage_with(&[1, 2], hs));
        step_ok(&mut n, &append_msg(2, 1, 2, (pi, pt), commit, entries));
        assert_eq!(n.last_index(), last, "case {i}: last index");
        assert_eq!(n.committed(), committed, "case {i}: committed");
        let sent = round(&mut n).messages;
        assert_eq!(sent.len(), 1, "case {i}: {sent:?}");
        match sent[0].msg().body {
            Body::AppendResponse { success, .. } => {
                assert_eq!(success, accepted, "case {i}: accepted")
            }
            ref b => panic!("case {i}: expected an append response, got {b:?}"),
        };
    }
}

/// §5.3 ("the leader ... includes [its commit index] in future AppendEntries RPCs (including
/// heartbeats)"): a heartbeat raises the follower's commit index up to what it holds, never
/// lowers it, and is answered with the same context.
#[test]
fn heartbeat_carries_the_commit_index() {
    // (commit before, heartbeat commit, commit after)
    for (before, hb, after) in [(2, 3, 3), (2, 1, 2), (2, 10, 3), (0, 2, 2)] {
        let hs = HardState {
            term: 3,
            vote: None,
            commit: before,
        };
        let mut n = node_with(config(1, &[1, 2]), storage_with(&[1, 2, 3], hs));
        assert_eq!(n.committed(), before);
        step_ok(&mut n, &heartbeat(2, 1, 3, hb, 77));
        assert_eq!(n.committed(), after, "heartbeat commit {hb}");
        let sent = round(&mut n).messages;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, 2);
        assert_eq!(
            sent[0].msg().body,
            Body::HeartbeatResponse {
                context: 77,
                last_index: 3
            }
        );
    }
}

/// §5.3 ("the leader must find the latest log entry where the two logs agree"): a heartbeat
/// only tells a follower how far it may commit up to what the leader knows it holds. A deposed
/// leader whose log has uncommitted entries of the old term is not told to commit them.
#[test]
fn heartbeat_never_commits_entries_the_leader_has_not_matched() {
    for (stale, fresh) in [(1, 1), (5, 3), (5, 10)] {
        let mut net = Network::new(3);
        net.campaign(1);
        net.isolate(1);
        for _ in 0..stale {
            net.propose(1, b"stale");
        }
        assert_eq!(net.node(1).committed(), 1);

        net.campaign(2);
        for _ in 0..fresh {
            net.propose(2, b"fresh");
        }
        let want = 2 + fresh as Index;
        assert_eq!(net.node(2).committed(), want);
        assert_eq!(net.node(3).committed(), want);

        // Node 1 hears the new leader's heartbeats, but no append.
        net.recover();
        net.filter = Some(Box::new(|s, _| !is_append(s)));
        net.tick_node(2);
        assert_eq!(net.state(1), (Role::Follower, 2));
        assert_eq!(net.node(1).committed(), 1, "stale {stale}, fresh {fresh}");

        // With appends flowing again it converges on the leader's log.
        net.recover();
        net.ticks(2);
        assert_eq!(log_of(net.node(1)), log_of(net.node(2)));
        assert_eq!(net.node(1).committed(), want);
    }
}

/// §5.3 ("when a leader first comes to power, it initializes all nextIndex values to the index
/// just after the last one in its log"): after the follower catches up, the leader sends each
/// new entry exactly once, so `next` ends one past the leader's last entry.
#[test]
fn leader_advances_next_past_replicated_entries() {
    let voters = ids(3);
    let hs = HardState {
        term: 1,
        vote: None,
        commit: 0,
    };
    let nodes = vec![
        node_with(config(1, &voters), storage_with(&[1, 1, 1], hs)),
        node(2, &voters),
        node(3, &voters),
    ];
    let mut net = Network::from_nodes(nodes);
    net.campaign(1);
    net.propose(1, b"somedata");
    // Three old entries, the no-op and the proposal.
    let p = net.node(1).progress(2).unwrap();
    assert_eq!((p.matched, p.next), (5, 6));
}

/// §5.3 and the persistence rule of Figure 2 ("updated on stable storage before responding"):
/// the leader counts itself towards a majority only for entries it has persisted, so its own
/// progress trails its log until each ready round is persisted.
#[test]
fn leaders_own_progress_counts_only_persisted_entries() {
    let mut n = node(1, &[1, 2]);
    n.campaign();
    drain(&mut n);
    step_ok(&mut n, &vote_resp(2, 1, 1, false, true));
    assert_eq!(n.role(), Role::Leader);
    assert_eq!(
        n.progress(1).unwrap().matched,
        0,
        "the no-op is not durable yet"
    );
    round(&mut n);
    for i in 1..=5 {
        let me = n.progress(1).unwrap();
        assert_eq!((me.matched, me.next), (i, i + 1));
        n.propose(b"foo").unwrap();
        assert_eq!(
            n.progress(1).unwrap().matched,
            i,
            "proposal {i} not durable yet"
        );
        round(&mut n);
    }
    assert_eq!(n.progress(1).unwrap().matched, 6);
    assert_eq!(n.committed(), 0, "node 2 acknowledged nothing");
}

/// §5.3 and §5.4.2: the leader commits the highest index held by a majority, provided that
/// entry is of its current term; the leader counts its own persisted log.
#[test]
fn commit_index_is_the_majority_match_of_the_current_term() {
    // The leader (node 1, term 3) holds `log` and then its no-op at `log.len() + 1`.
    // (cluster size, log terms before the no-op, acknowledgements (node, index), commit)
    type Case = (u64, &'static [Term], &'static [(NodeId, Index)], Index);
    let cases: &[Case] = &[
        (1, &[], &[], 1),
        (1, &[1, 2], &[], 3),
        (2, &[1], &[], 0),
        (2, &[1], &[(2, 1)], 0),
        (2, &[1], &[(2, 2)], 2),
        (3, &[1, 1], &[], 0),
        (3, &[1, 1], &[(2, 2)], 0),
        (3, &[1, 1], &[(2, 3)], 3),
        (3, &[1, 2], &[(2, 1), (3, 3)], 3),
        (4, &[1, 1], &[(2, 3)], 0),
        (4, &[1, 1], &[(2, 3), (3, 3)], 3),
        (4, &[1, 1], &[(2, 3), (3, 2), (4, 2)], 0),
        (5, &[1, 1], &[(2, 3), (3, 3)], 3),
        (5, &[1, 1], &[(2, 3), (3, 2), (4, 2)], 0),
        (5, &[1, 1], &[(2, 3), (3, 3), (4, 2), (5, 1)], 3),
    ];
    for (i, &(size, log, acks, want)) in cases.iter().enumerate() {
        let hs = HardState {
            term: 2,
            vote: None,
            commit: 0,
        };
        let mut n = node_with(config(1, &ids(size)), storage_with(log, hs));
        make_leader(&mut n);
        assert_eq!(n.term(), 3);
        for &(from, index) in acks {
            step_ok(&mut n, &append_ok(from, 1, 3, index));
        }
        drain(&mut n);
        assert_eq!(n.committed(), want, "case {i}");
    }
}

/// §5.3 ("if followers ... run slowly, the leader retries AppendEntries indefinitely"): each
/// heartbeat response from a follower that lags makes the leader send it an append again,
/// even while it waits for the answer to an earlier one; a caught-up follower gets none.
#[test]
fn heartbeat_response_from_a_lagging_follower_triggers_an_append() {
    let hs = HardState {
        term: 1,
        vote: None,
        commit: 3,
    };
    let mut n = node_with(config(1, &[1, 2, 3]), storage_with(&[1, 1, 1], hs));
    make_leader(&mut n);
    let appends_to_2 = |sent: &[Sent]| sent.iter().filter(|s| s.to == 2 && is_append(s)).count();

    // The first append to node 2 is outstanding; every heartbeat response resends.
    for _ in 0..2 {
        step_ok(&mut n, &heartbeat_resp(2, 1, 2, 0));
        assert_eq!(appends_to_2(&drain(&mut n)), 1);
    }

    // Node 2 catches up; now heartbeat responses cause no appends.
    step_ok(&mut n, &append_ok(2, 1, 2, 4));
    drain(&mut n);
    step_ok(&mut n, &heartbeat_resp(2, 1, 2, 0));
    assert_eq!(appends_to_2(&drain(&mut n)), 0);
}

/// §5.3 ("once a follower learns that a log entry is committed, it applies the entry to its
/// local state machine (in log order)"): every node hands each committed entry out exactly
/// once, in index order, no-ops included and marked.
#[test]
fn committed_entries_are_handed_out_once_in_order() {
    let mut net = Network::new(3);
    let mut applied: Vec<Vec<(Index, bool)>> = vec![Vec::new(); 3];
    let mut settle = |net: &mut Network| {
        net.deliver_observing(0, Vec::new(), &mut |id, r| {
            for e in &r.committed {
                applied[id as usize - 1].push((e.index, e.data.is_empty()));
            }
        })
    };
    net.node_mut(1).campaign();
    settle(&mut net);
    for i in 0..10u8 {
        net.node_mut(1).propose(&[i]).unwrap();
        if i % 3 == 0 {
            settle(&mut net);
        }
    }
    for _ in 0..2 {
        for id in net.ids() {
            net.node_mut(id).tick();
        }
        settle(&mut net);
    }
    let want: Vec<(Index, bool)> = (1..=11).map(|i| (i, i == 1)).collect();
    for id in net.ids() {
        assert_eq!(applied[id as usize - 1], want, "node {id}");
        assert_eq!(net.node(id).applied(), 11, "node {id}");
    }
}
