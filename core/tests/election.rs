//! Leader election and role changes: who wins, who steps down, and which votes are granted.
//!
//! Section numbers refer to the Raft paper (Ongaro & Ousterhout, "In Search of an
//! Understandable Consensus Algorithm", 2014) unless they say "dissertation".

mod harness;
use harness::*;
use tinyraft::{Body, HardState, NodeId, Role, SoftState, Term};

/// Index and term of every entry of `n`'s log.
fn terms_of(n: &TestNode) -> Vec<(u64, Term)> {
    log_of(n).iter().map(|e| (e.index, e.term)).collect()
}

/// The single vote response in `sent`, as (to, term, granted).
fn only_vote_response(sent: &[Sent]) -> (NodeId, Term, bool) {
    assert_eq!(sent.len(), 1, "expected exactly one message, got {sent:?}");
    let m = sent[0].msg();
    match m.body {
        Body::VoteResponse {
            pre: false,
            granted,
        } => (sent[0].to, m.term, granted),
        ref b => panic!("expected a vote response, got {b:?}"),
    }
}

/// §5.2: a candidate wins only with votes from a majority of the whole cluster; nodes that are
/// down count against it, and without a majority it stays a candidate in the same term.
#[test]
fn election_needs_a_majority_of_the_whole_cluster() {
    // (cluster size, nodes that are down, role node 1 ends in)
    let cases: &[(u64, &[NodeId], Role)] = &[
        (1, &[], Role::Leader),
        (3, &[], Role::Leader),
        (3, &[3], Role::Leader),
        (3, &[2, 3], Role::Candidate),
        (4, &[2, 3], Role::Candidate),
        (5, &[2, 3], Role::Leader),
        (5, &[2, 3, 4], Role::Candidate),
    ];
    for (i, &(size, down, want)) in cases.iter().enumerate() {
        let mut net = Network::new(size);
        for &d in down {
            net.crash(d);
        }
        net.campaign(1);
        assert_eq!(net.state(1), (want, 1), "case {i}");
    }
}

/// §5.2: elections keep working after the first one: every node in turn can campaign and win,
/// and everybody else follows it in the new term.
#[test]
fn every_node_can_lead_in_turn() {
    let mut net = Network::new(3);
    for c in 1..=3u64 {
        net.campaign(c);
        for id in net.ids() {
            let n = net.node(id);
            let want = if id == c {
                Role::Leader
            } else {
                Role::Follower
            };
            assert_eq!(n.role(), want, "after node {c} campaigned, node {id}");
            assert_eq!(n.term(), c, "node {id} term");
            assert_eq!(n.leader(), Some(c), "node {id} knows the leader");
        }
    }
}

/// §5.4.1 and §5.3: a candidate whose log lacks the newest-term entry can still win if its log
/// is as up to date as a majority's; the winner's entries then replace the newer-term but
/// uncommitted entry on the node that had it.
#[test]
fn new_leader_overwrites_uncommitted_newer_term_entries() {
    // Node 1 led term 1 and gave its entry to node 2 only. Node 3 won term 2 with the votes of
    // nodes 4 and 5, wrote one entry and crashed before sending it.
    let voters = ids(5);
    let hs = |term, vote| HardState {
        term,
        vote,
        commit: 0,
    };
    let storages = [
        storage_with(&[1], hs(1, Some(1))),
        storage_with(&[1], hs(1, Some(1))),
        storage_with(&[2], hs(2, Some(3))),
        storage_with(&[], hs(2, Some(3))),
        storage_with(&[], hs(2, Some(3))),
    ];
    let nodes = storages
        .into_iter()
        .zip(&voters)
        .map(|(s, &id)| node_with(config(id, &voters), s))
        .collect();
    let mut net = Network::from_nodes(nodes);

    // Three of five already know term 2: node 1 loses, but learns the term.
    net.campaign(1);
    assert_eq!(net.state(1), (Role::Follower, 2));

    // In term 3 nodes 2, 4 and 5 find node 1's log at least as up to date as theirs.
    net.campaign(1);
    assert_eq!(net.state(1), (Role::Leader, 3));
    net.tick();
    for id in net.ids() {
        let n = net.node(id);
        assert_eq!(terms_of(n), vec![(1, 1), (2, 3)], "node {id} log");
        assert_eq!(n.committed(), 2, "node {id} committed");
    }
}

/// §5.1 ("if RPC request contains term T > currentTerm: set currentTerm = T, convert to
/// follower") and §5.2: whatever its role, a node that sees a vote request for a later term
/// from an up-to-date candidate adopts the term, becomes follower and grants its vote.
#[test]
fn vote_for_a_later_term_is_granted_from_any_role() {
    for start in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut n = node(1, &[1, 2, 3]);
        match start {
            Role::Follower => {
                make_follower(&mut n, 3, 1);
            }
            Role::Candidate => {
                n.campaign();
                drain(&mut n);
            }
            Role::Leader => {
                make_leader(&mut n);
            }
            Role::PreCandidate => unreachable!(),
        }
        assert_eq!(n.role(), start);
        let term = n.term() + 1;
        step_ok(&mut n, &vote_req(2, 1, term, false, (42, term)));
        let sent = round(&mut n).messages;
        assert_eq!(only_vote_response(&sent), (2, term, true), "from {start:?}");
        assert_eq!(n.role(), Role::Follower, "from {start:?}");
        assert_eq!(n.term(), term, "from {start:?}");
        assert_eq!(n.vote(), Some(2), "from {start:?}");
    }
}

/// §5.2 and §5.4.1: a vote is granted only if the voter has not voted for someone else in this
/// term and the candidate's log is at least as up to date as the voter's (later last term, or
/// same last term and at least as long). Leaders and candidates have voted for themselves.
#[test]
fn vote_request_rules() {
    // The voter's log holds two entries of term 2.
    // (voter role, candidate last index, candidate last term, voter's vote, granted)
    let cases: &[(Role, u64, Term, Option<NodeId>, bool)] = &[
        (Role::Follower, 0, 0, None, false),
        (Role::Follower, 0, 1, None, false),
        (Role::Follower, 0, 2, None, false),
        (Role::Follower, 0, 3, None, true),
        (Role::Follower, 1, 0, None, false),
        (Role::Follower, 1, 1, None, false),
        (Role::Follower, 1, 2, None, false),
        (Role::Follower, 1, 3, None, true),
        (Role::Follower, 2, 0, None, false),
        (Role::Follower, 2, 1, None, false),
        (Role::Follower, 2, 2, None, true),
        (Role::Follower, 2, 3, None, true),
        (Role::Follower, 3, 0, None, false),
        (Role::Follower, 3, 1, None, false),
        (Role::Follower, 3, 2, None, true),
        (Role::Follower, 3, 3, None, true),
        // Already voted: the same candidate may ask again, another may not.
        (Role::Follower, 3, 2, Some(2), true),
        (Role::Follower, 3, 2, Some(3), false),
        (Role::Leader, 3, 3, Some(1), false),
        (Role::Candidate, 3, 3, Some(1), false),
    ];
    for (i, &(role, last_index, last_term, vote, granted)) in cases.iter().enumerate() {
        // The request carries the voter's own term, so only the voting rules decide.
        let term = last_term.max(2);
        let mut n = match role {
            Role::Follower => node_with(
                config(1, &[1, 2, 3]),
                storage_with(
                    &[2, 2],
                    HardState {
                        term,
                        vote,
                        commit: 0,
                    },
                ),
            ),
            _ => {
                let hs = HardState {
                    term: term - 1,
                    vote: None,
                    commit: 0,
                };
                let mut n = node_with(config(1, &[1, 2, 3]), storage_with(&[2, 2], hs));
                if role == Role::Leader {
                    make_leader(&mut n);
                } else {
                    n.campaign();
                    drain(&mut n);
                }
                n
            }
        };
        assert_eq!(
            (n.role(), n.term(), n.vote()),
            (role, term, vote),
            "case {i}"
        );
        step_ok(
            &mut n,
            &vote_req(2, 1, term, false, (last_index, last_term)),
        );
        let sent = round(&mut n).messages;
        let (to, _, got) = only_vote_response(&sent);
        assert_eq!((to, got), (2, granted), "case {i}");
    }
}

/// §5.1: any server — follower, candidate or leader — that sees a later term adopts it and
/// becomes (or stays) follower. A vote request does not name a leader; an append does.
#[test]
fn all_servers_step_down_on_a_later_term() {
    for start in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut n = node(1, &[1, 2, 3]);
        match start {
            Role::Follower => {
                make_follower(&mut n, 3, 1);
            }
            Role::Candidate => {
                n.campaign();
                drain(&mut n);
            }
            _ => {
                make_leader(&mut n);
            }
        }
        // Only the leader appended something: its no-op.
        let last = if start == Role::Leader { 1 } else { 0 };
        let vote = vote_req(2, 1, 3, false, (0, 3));
        let append = append_msg(2, 1, 3, (0, 0), 0, &[]);
        for (what, bytes, leader) in [("vote", vote, None), ("append", append, Some(2))] {
            step_ok(&mut n, &bytes);
            drain(&mut n);
            assert_eq!(n.role(), Role::Follower, "{start:?} after {what}");
            assert_eq!(n.term(), 3, "{start:?} after {what}");
            assert_eq!(n.leader(), leader, "{start:?} after {what}");
            assert_eq!(n.last_index(), last, "{start:?} after {what}");
            assert_eq!(log_of(&n).len() as u64, last, "{start:?} after {what}");
        }
    }
}

/// §5.1: a leader that receives any message carrying a later term — a request or a response —
/// learns that it is stale and steps down to follower in that term.
#[test]
fn leader_steps_down_on_any_message_with_a_later_term() {
    let bodies: Vec<(&str, Body<'static>, Option<NodeId>)> = vec![
        (
            "append",
            Body::Append {
                prev_index: 0,
                prev_term: 0,
                commit: 0,
                entries: heapless::Vec::new(),
            },
            Some(2),
        ),
        (
            "heartbeat",
            Body::Heartbeat {
                commit: 0,
                context: 0,
            },
            Some(2),
        ),
        (
            "vote",
            Body::Vote {
                pre: false,
                last_index: 0,
                last_term: 0,
                transfer: false,
                config_index: 0,
            },
            None,
        ),
        (
            "vote response",
            Body::VoteResponse {
                pre: false,
                granted: false,
            },
            None,
        ),
        (
            "append response",
            Body::AppendResponse {
                success: false,
                index: 0,
                hint_index: 0,
                hint_term: 0,
            },
            None,
        ),
        (
            "heartbeat response",
            Body::HeartbeatResponse {
                context: 0,
                last_index: 0,
            },
            None,
        ),
    ];
    for (what, body, leader) in bodies {
        let mut n = node(1, &[1, 2, 3]);
        make_leader(&mut n);
        assert_eq!(n.term(), 1);
        step(&mut n, msg(2, 1, 5, body)).unwrap();
        assert_eq!(n.role(), Role::Follower, "{what}");
        assert_eq!(n.term(), 5, "{what}");
        assert_eq!(n.leader(), leader, "{what}");
    }
}

/// §5.2: "if the leader's term is at least as large as the candidate's current term, then the
/// candidate recognizes the leader as legitimate and returns to follower state". A node that
/// timed out alone rejoins a cluster whose leader is in a later term: the leader's first
/// heartbeat or append brings it back as a follower in the leader's term.
#[test]
fn isolated_candidate_follows_leader_of_later_term() {
    for via_append in [false, true] {
        let mut net = Network::new(3);
        net.campaign(1);
        net.isolate(3);
        net.campaign(2);
        net.campaign(1);
        assert_eq!(net.state(1), (Role::Leader, 3));
        assert_eq!(net.state(2), (Role::Follower, 3));

        for _ in 0..100 {
            if net.node(3).role() == Role::Candidate {
                break;
            }
            net.tick_node(3);
        }
        assert_eq!(net.state(3), (Role::Candidate, 2));

        net.recover();
        if via_append {
            // The leader's probe to node 3 was lost and it waits for an answer before sending
            // another, so hand node 3 an append from it directly.
            let bytes = append_msg(1, 3, 3, (1, 1), 0, &[]);
            net.deliver(1, vec![Sent { to: 3, bytes }]);
        } else {
            net.tick_node(1);
        }
        let n3 = net.node(3);
        assert_eq!(n3.role(), Role::Follower, "via append: {via_append}");
        assert_eq!(n3.term(), 3, "via append: {via_append}");
        assert_eq!(n3.leader(), Some(1), "via append: {via_append}");
        assert_eq!(net.state(1), (Role::Leader, 3));
    }
}

/// §5.2 ("each server will vote for at most one candidate in a given term") and §5.4.1: two
/// candidates compete; the one a majority can reach wins. The loser then campaigns in a later
/// term, which unseats the leader, but its log is behind, so nobody votes for it and it ends
/// as a follower; no entry is lost.
#[test]
fn duelling_candidates() {
    let mut net = Network::new(3);
    net.cut(1, 3);
    net.campaign(1);
    net.campaign(3);
    // Node 2 voted for node 1 in term 1; node 3 got only its own vote.
    assert_eq!(net.state(1), (Role::Leader, 1));
    assert_eq!(net.state(3), (Role::Candidate, 1));

    net.recover();
    net.campaign(3);
    for (id, log, committed) in [(1, vec![(1, 1)], 1), (2, vec![(1, 1)], 1), (3, vec![], 0)] {
        let n = net.node(id);
        assert_eq!((n.role(), n.term()), (Role::Follower, 2), "node {id}");
        assert_eq!(terms_of(n), log, "node {id} log");
        assert_eq!(n.committed(), committed, "node {id} committed");
    }
}

/// §5.2: a candidate that learns of a leader of its own term concedes: it becomes a follower
/// of that leader and receives its log.
#[test]
fn candidate_concedes_to_a_leader_of_the_same_term() {
    let mut net = Network::new(3);
    net.isolate(1);
    net.campaign(1);
    net.campaign(3);
    assert_eq!(net.state(1), (Role::Candidate, 1));
    assert_eq!(net.state(3), (Role::Leader, 1));

    net.recover();
    net.tick_node(3);
    net.propose(3, b"force follower");
    net.tick_node(3);

    assert_eq!(net.state(1), (Role::Follower, 1));
    assert_eq!(net.node(1).leader(), Some(3));
    for id in net.ids() {
        let n = net.node(id);
        let log = log_of(n);
        assert_eq!(
            log.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 1)],
            "node {id}"
        );
        assert_eq!(log[1].data, b"force follower");
        assert_eq!(n.committed(), 2, "node {id}");
    }
}

/// §5.2: a single-node cluster is its own majority: campaigning makes it leader at once.
#[test]
fn single_node_candidate_becomes_leader() {
    let mut net = Network::new(1);
    net.campaign(1);
    assert_eq!(net.state(1), (Role::Leader, 1));
}

/// §5.2: campaigning is what a follower or candidate does when its timer fires; asking a
/// leader to campaign changes nothing (no new term, no lost leadership).
#[test]
fn campaign_while_leader_is_ignored() {
    for size in [1, 3] {
        let mut net = Network::new(size);
        net.campaign(1);
        assert_eq!(net.state(1), (Role::Leader, 1));
        net.campaign(1);
        assert_eq!(net.state(1), (Role::Leader, 1), "size {size}");
        assert_eq!(net.node(1).stats().campaigns, 1, "size {size}");
    }
}

/// §5.2 ("randomized election timeouts ... split votes are rare"): two followers time out at
/// once and split the vote; neither wins. The next election, in a later term, has a winner.
#[test]
fn split_vote_is_resolved_in_a_later_term() {
    let mut net = Network::new(3);
    net.campaign(1);
    net.isolate(1);
    net.node_mut(2).campaign();
    net.node_mut(3).campaign();
    net.settle();
    assert_eq!(net.state(2), (Role::Candidate, 2));
    assert_eq!(net.state(3), (Role::Candidate, 2));

    net.campaign(2);
    assert_eq!(net.state(2), (Role::Leader, 3));
    assert_eq!(net.state(3), (Role::Follower, 3));
}

/// §5.2 ("leaders send periodic heartbeats ... to all followers"): a leader sends one
/// heartbeat per follower every heartbeat interval, carrying a commit index no higher than
/// what that follower is known to hold; followers and candidates send none.
#[test]
fn only_leaders_send_heartbeats_on_tick() {
    let mut leader = node(1, &[1, 2, 3]);
    make_leader(&mut leader);
    // Node 2 holds the no-op, node 3 nothing yet.
    step_ok(&mut leader, &append_ok(2, 1, 1, 1));
    drain(&mut leader);
    assert_eq!(leader.committed(), 1);
    leader.tick();
    let sent = drain(&mut leader);
    assert_eq!(sent.len(), 2, "{sent:?}");
    for s in &sent {
        let commit = match s.msg().body {
            Body::Heartbeat { commit, .. } => commit,
            ref b => panic!("expected a heartbeat, got {b:?}"),
        };
        let want = if s.to == 2 { 1 } else { 0 };
        assert_eq!(commit, want, "heartbeat to {}", s.to);
    }
    let mut to: Vec<_> = sent.iter().map(|s| s.to).collect();
    to.sort();
    assert_eq!(to, vec![2, 3]);

    let mut follower = node(1, &[1, 2, 3]);
    make_follower(&mut follower, 2, 1);
    follower.tick();
    assert!(drain(&mut follower).is_empty());

    let mut candidate = node(1, &[1, 2, 3]);
    candidate.campaign();
    drain(&mut candidate);
    candidate.tick();
    assert!(drain(&mut candidate).iter().all(|s| !is_heartbeat(s)));
}

/// §5.1 (Figure 4, the roles and their transitions) and dissertation §9.6 (the pre-candidate
/// step): each allowed transition happens, is reported once through `Ready::soft_state`, and
/// changes the term only where the figure says; a follower cannot jump straight to leader.
#[test]
fn role_transitions_follow_figure_4() {
    let soft = |role, leader: Option<NodeId>| Some(SoftState { role, leader });
    let mut c = config(1, &[1, 2, 3]);
    c.pre_vote = true;
    let mut n = node_with(c, TestStorage::new());
    assert_eq!(n.soft_state(), soft(Role::Follower, None).unwrap());

    // Follower -> pre-candidate: no new term, nothing to persist.
    n.campaign();
    let rd = n.ready();
    assert_eq!(rd.soft_state, soft(Role::PreCandidate, None));
    assert_eq!(rd.hard_state, None);
    assert!(!rd.must_sync);
    let p = n.persist(rd).unwrap();
    n.advance(p);
    assert_eq!(n.term(), 0);

    // A follower (or pre-candidate) cannot count real votes: they are ignored.
    step_ok(&mut n, &vote_resp(2, 1, 0, false, true));
    step_ok(&mut n, &vote_resp(3, 1, 0, false, true));
    assert_eq!(n.role(), Role::PreCandidate);

    // Pre-candidate -> candidate: now the term rises and the self-vote must be persisted.
    step_ok(&mut n, &vote_resp(2, 1, 1, true, true));
    let rd = n.ready();
    assert_eq!(rd.soft_state, soft(Role::Candidate, None));
    let hs = rd.hard_state.expect("term and vote changed");
    assert_eq!((hs.term, hs.vote), (1, Some(1)));
    assert!(rd.must_sync);
    let p = n.persist(rd).unwrap();
    n.advance(p);

    // Candidate -> leader.
    step_ok(&mut n, &vote_resp(2, 1, 1, false, true));
    assert_eq!(round_soft(&mut n), soft(Role::Leader, Some(1)));
    assert_eq!(n.term(), 1);

    // Leader -> follower, on a later term.
    step_ok(&mut n, &heartbeat(3, 1, 2, 0, 0));
    assert_eq!(round_soft(&mut n), soft(Role::Follower, Some(3)));
    assert_eq!(n.term(), 2);

    // Follower -> pre-candidate -> follower, when the pre-vote is lost (term unchanged).
    n.campaign();
    assert_eq!(round_soft(&mut n), soft(Role::PreCandidate, None));
    step_ok(&mut n, &vote_resp(2, 1, 2, true, false));
    step_ok(&mut n, &vote_resp(3, 1, 2, true, false));
    assert_eq!(round_soft(&mut n), soft(Role::Follower, None));
    assert_eq!(n.term(), 2);

    // Without pre-vote: follower -> candidate -> candidate (a new term each time) -> follower.
    let mut n = node(1, &[1, 2, 3]);
    n.campaign();
    assert_eq!(round_soft(&mut n), soft(Role::Candidate, None));
    assert_eq!(n.term(), 1);
    n.campaign();
    assert_eq!(n.term(), 2);
    assert_eq!(
        round_soft(&mut n),
        None,
        "still a candidate: nothing new to report"
    );
    step_ok(&mut n, &append_msg(3, 1, 2, (0, 0), 0, &[]));
    assert_eq!(round_soft(&mut n), soft(Role::Follower, Some(3)));
    assert_eq!(n.term(), 2);
}

/// Runs one ready round and returns the soft state it reported.
fn round_soft(n: &mut TestNode) -> Option<SoftState> {
    let rd = n.ready();
    let s = rd.soft_state;
    let p = n.persist(rd).unwrap();
    n.advance(p);
    s
}

/// §5.2 with Figure 2 (currentTerm and votedFor are persistent state, "updated on stable
/// storage before responding to RPCs"): a node that voted and then restarts still refuses a
/// second candidate of that term. A vote that was never persisted was never sent either, so a
/// crash before the ready round may leave the node free to vote again.
#[test]
fn a_granted_vote_survives_a_restart() {
    let voters = [1, 2, 3];
    let mut n = node(1, &voters);
    step_ok(&mut n, &vote_req(2, 1, 1, false, (0, 0)));
    assert_eq!(only_vote_response(&round(&mut n).messages), (2, 1, true));
    let mut n = node_with(config(1, &voters), into_storage(n));
    assert_eq!((n.term(), n.vote()), (1, Some(2)));
    step_ok(&mut n, &vote_req(3, 1, 1, false, (0, 0)));
    assert_eq!(only_vote_response(&round(&mut n).messages), (3, 1, false));

    let mut m = node(1, &voters);
    step_ok(&mut m, &vote_req(2, 1, 1, false, (0, 0)));
    assert_eq!(m.vote(), Some(2));
    let mut m = node_with(config(1, &voters), into_storage(m));
    assert_eq!((m.term(), m.vote()), (0, None), "nothing was persisted");
    step_ok(&mut m, &vote_req(3, 1, 1, false, (0, 0)));
    assert_eq!(only_vote_response(&round(&mut m).messages), (3, 1, true));
}
