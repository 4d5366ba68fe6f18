//! Pre-vote and check-quorum: the dissertation's defences against nodes that would disrupt a
//! healthy cluster, and against leaders that no longer lead anyone.
//!
//! Section numbers refer to Ongaro's dissertation ("Consensus: Bridging Theory and Practice",
//! 2014): §9.6 pre-vote, §4.2.3 disruptive servers (the leader lease that makes followers
//! ignore vote requests), §6.2 (a leader steps down when it loses its majority).

mod harness;
use harness::*;
use tinyraft::{Body, HardState, NodeId, Role, Term};

fn prevote_net(n: u64) -> Network {
    Network::with_config(n, |c| c.pre_vote = true)
}

fn check_quorum_net(n: u64, pre_vote: bool) -> Network {
    Network::with_config(n, |c| {
        c.check_quorum = true;
        c.pre_vote = pre_vote;
    })
}

/// The single vote response in `sent`, as (term, pre, granted).
fn only_vote_response(sent: &[Sent]) -> (Term, bool, bool) {
    assert_eq!(sent.len(), 1, "expected exactly one message, got {sent:?}");
    let m = sent[0].msg();
    match m.body {
        Body::VoteResponse { pre, granted } => (m.term, pre, granted),
        ref b => panic!("expected a vote response, got {b:?}"),
    }
}

/// Ticks only the listed nodes (once each), then settles.
fn tick_only(net: &mut Network, ids: &[NodeId]) {
    for &id in ids {
        net.node_mut(id).tick();
    }
    net.settle();
}

/// Ticks `ids` until one of them leads; returns it.
fn elect_among(net: &mut Network, ids: &[NodeId]) -> NodeId {
    for _ in 0..200 {
        if let Some(&l) = ids.iter().find(|&&i| net.node(i).role() == Role::Leader) {
            return l;
        }
        tick_only(net, ids);
    }
    panic!("no leader among {ids:?}");
}

/// Dissertation §9.6: with pre-vote, a node first asks whether it could win; only with a
/// majority of pre-votes does it start a real election. Without one it stays a pre-candidate
/// and its term does not move.
#[test]
fn prevote_election_needs_a_majority_before_the_term_moves() {
    // (cluster size, nodes that are down, role of node 1, its term)
    let cases: &[(u64, &[NodeId], Role, Term)] = &[
        (1, &[], Role::Leader, 1),
        (3, &[], Role::Leader, 1),
        (3, &[3], Role::Leader, 1),
        (3, &[2, 3], Role::PreCandidate, 0),
        (4, &[2, 3], Role::PreCandidate, 0),
        (5, &[2, 3], Role::Leader, 1),
    ];
    for (i, &(size, down, role, term)) in cases.iter().enumerate() {
        let mut net = prevote_net(size);
        for &d in down {
            net.crash(d);
        }
        net.campaign(1);
        assert_eq!(net.state(1), (role, term), "case {i}");
        assert_eq!(net.node(1).vote(), (term == 1).then_some(1), "case {i}");
    }
}

/// Dissertation §9.6: a pre-vote round changes no durable state — not the pre-candidate's term
/// or vote, not the voter's — so it needs no sync; the request names the term the candidate
/// would campaign in.
#[test]
fn prevote_changes_neither_term_nor_vote() {
    let hs = HardState {
        term: 2,
        vote: Some(3),
        commit: 0,
    };
    let mut c = config(1, &[1, 2, 3]);
    c.pre_vote = true;
    let mut n = node_with(c, storage_with(&[1, 2], hs));

    // As a pre-candidate.
    n.campaign();
    assert_eq!(n.role(), Role::PreCandidate);
    let rd = n.ready();
    assert_eq!(rd.hard_state, None);
    assert!(!rd.must_sync);
    let p = n.persist(rd).unwrap();
    let requests: Vec<_> = n.messages(&p).map(|(to, b)| (to, b.to_vec())).collect();
    n.advance(p);
    assert_eq!(requests.len(), 2);
    for (_, bytes) in &requests {
        let m = tinyraft::Message::decode(bytes).unwrap();
        assert_eq!(m.term, 3);
        assert_eq!(
            m.body,
            Body::Vote {
                pre: true,
                last_index: 2,
                last_term: 2,
                transfer: false,
                config_index: 0,
            }
        );
    }
    assert_eq!((n.term(), n.vote()), (2, Some(3)));

    // As a voter: it grants, answering in the asked-for term, and stays where it was.
    let hs = HardState {
        term: 2,
        vote: Some(3),
        commit: 0,
    };
    let mut v = node_with(config(2, &[1, 2, 3]), storage_with(&[1, 2], hs));
    step_ok(&mut v, &requests[0].1);
    let rd = v.ready();
    assert_eq!(rd.hard_state, None);
    assert_eq!(rd.soft_state, None);
    let p = v.persist(rd).unwrap();
    let answer: Vec<_> = v.messages(&p).map(|(to, b)| (to, b.to_vec())).collect();
    v.advance(p);
    let m = tinyraft::Message::decode(&answer[0].1).unwrap();
    assert_eq!((answer.len(), answer[0].0, m.term), (1, 1, 3));
    assert_eq!(
        m.body,
        Body::VoteResponse {
            pre: true,
            granted: true
        }
    );
    assert_eq!((v.role(), v.term(), v.vote()), (Role::Follower, 2, Some(3)));
}

/// Dissertation §9.6: a pre-vote is granted only to a candidate whose log is at least as up to
/// date as the voter's (the paper's §5.4.1 comparison). One for a later term is granted even by
/// a node that already voted in its own term; one for a term not above the voter's is refused.
#[test]
fn prevote_is_granted_only_to_an_up_to_date_log() {
    // The voter is at term 2, voted for node 3, and its log ends at (2, term 2).
    // (request term, candidate last index, candidate last term, granted)
    let cases: &[(Term, u64, Term, bool)] = &[
        (3, 0, 0, false),
        (3, 1, 2, false),
        (3, 5, 1, false),
        (3, 2, 2, true),
        (3, 3, 2, true),
        (3, 1, 3, true),
        // Not a later term: the voter's vote for node 3 stands.
        (2, 2, 2, false),
        (1, 9, 9, false),
    ];
    for (i, &(term, li, lt, granted)) in cases.iter().enumerate() {
        let hs = HardState {
            term: 2,
            vote: Some(3),
            commit: 0,
        };
        let mut v = node_with(config(1, &[1, 2, 3]), storage_with(&[1, 2], hs));
        step_ok(&mut v, &vote_req(2, 1, term, true, (li, lt)));
        let sent = round(&mut v).messages;
        let (_, pre, got) = only_vote_response(&sent);
        assert!(pre, "case {i}");
        assert_eq!(got, granted, "case {i}");
        assert_eq!((v.term(), v.vote()), (2, Some(3)), "case {i}");
    }
}

/// Dissertation §9.6: granting a pre-vote commits the voter to nothing: in the real election
/// that may follow it can still vote for a different candidate.
#[test]
fn granting_a_prevote_does_not_spend_the_vote() {
    let mut v = node(1, &[1, 2, 3]);
    step_ok(&mut v, &vote_req(2, 1, 1, true, (0, 0)));
    assert_eq!(only_vote_response(&round(&mut v).messages), (1, true, true));
    assert_eq!((v.term(), v.vote()), (0, None));

    step_ok(&mut v, &vote_req(3, 1, 1, false, (0, 0)));
    assert_eq!(
        only_vote_response(&round(&mut v).messages),
        (1, false, true)
    );
    assert_eq!((v.term(), v.vote()), (1, Some(3)));
}

/// Dissertation §9.6 and §5.2 of the paper: a pre-candidate that hears from a leader of its
/// term (or a later one) gives up and follows it.
#[test]
fn precandidate_follows_a_leader_it_hears_from() {
    for (term, via_append) in [(1, false), (1, true), (4, false), (4, true)] {
        let mut c = config(1, &[1, 2, 3]);
        c.pre_vote = true;
        let mut n = node_with(c, TestStorage::new());
        make_follower(&mut n, 2, 1);
        n.campaign();
        drain(&mut n);
        assert_eq!((n.role(), n.term()), (Role::PreCandidate, 1));
        let bytes = if via_append {
            append_msg(3, 1, term, (0, 0), 0, &[])
        } else {
            heartbeat(3, 1, term, 0, 0)
        };
        step_ok(&mut n, &bytes);
        assert_eq!(n.role(), Role::Follower, "term {term}, append {via_append}");
        assert_eq!(n.term(), term);
        assert_eq!(n.leader(), Some(3));
    }
}

/// Dissertation §9.6 (with §4.2.3's motivation): a follower whose timer fires while the
/// leader's heartbeats are only delayed becomes a pre-candidate, not a candidate, so when the
/// heartbeat does arrive it simply follows again and nobody's term moves.
#[test]
fn delayed_heartbeat_does_not_let_a_prevoting_follower_disrupt() {
    let mut net = prevote_net(3);
    net.campaign(1);
    assert_eq!(net.state(1), (Role::Leader, 1));
    for _ in 0..100 {
        if net.node(3).role() == Role::PreCandidate {
            break;
        }
        net.node_mut(3).tick();
    }
    assert_eq!(net.state(3), (Role::PreCandidate, 1));
    // Its pre-votes are lost; the leader's heartbeat gets through.
    drain(net.node_mut(3));
    net.tick_node(1);
    for id in net.ids() {
        assert_eq!(net.node(id).term(), 1, "node {id}");
    }
    assert_eq!(net.state(1), (Role::Leader, 1));
    assert_eq!(net.state(3), (Role::Follower, 1));
    assert_eq!(net.node(3).leader(), Some(1));
}

/// Dissertation §9.6: a pre-candidate that is behind in terms learns the current term from the
/// rejections it gets, and becomes a follower in it.
#[test]
fn precandidate_learns_the_later_term_from_a_rejection() {
    let mut c = config(1, &[1, 2, 3]);
    c.pre_vote = true;
    let mut n = node_with(c, TestStorage::new());
    n.campaign();
    drain(&mut n);
    step_ok(&mut n, &vote_resp(2, 1, 5, true, false));
    assert_eq!((n.role(), n.term(), n.leader()), (Role::Follower, 5, None));
}

/// Dissertation §9.6: a node cut off from the cluster keeps pre-campaigning but never raises
/// its term, because it never gathers a majority of pre-votes. When the partition heals its
/// log is behind, so it cannot win either: the leader and the term are undisturbed and the
/// node catches up.
#[test]
fn rejoining_node_with_prevote_does_not_disturb_the_cluster() {
    let mut net = prevote_net(3);
    net.campaign(1);
    net.isolate(3);
    net.propose(1, b"while 3 is away");
    net.ticks(60);
    assert_eq!(net.node(3).term(), 1);
    assert!(net.node(3).stats().campaigns >= 2, "it kept trying");

    net.recover();
    net.ticks(60);
    for id in net.ids() {
        assert_eq!(net.node(id).term(), 1, "node {id}");
    }
    assert_eq!(net.state(1), (Role::Leader, 1));
    assert_eq!(log_of(net.node(3)), log_of(net.node(1)));
    assert_eq!(net.node(3).committed(), net.node(1).committed());
}

/// Dissertation §9.6 (the problem pre-vote solves): without it, the cut-off node raises its
/// term on every timeout, and when it rejoins the leader sees that term and is deposed.
#[test]
fn rejoining_node_without_prevote_raises_the_term() {
    let mut net = Network::new(3);
    net.campaign(1);
    net.isolate(3);
    net.propose(1, b"while 3 is away");
    net.ticks(60);
    let away = net.node(3).term();
    assert!(away > 1, "the cut-off node's term rose to {away}");

    net.recover();
    net.ticks(60);
    let l = net.leader().expect("a leader");
    assert!(
        net.node(l).term() >= away,
        "the cluster had to adopt term {away}"
    );
}

/// Dissertation §9.6 together with §4.2.3: with check-quorum, followers that hear from their
/// leader ignore pre-votes too, so even a rejoining node whose log is fully up to date cannot
/// start an election.
#[test]
fn rejoining_up_to_date_node_is_ignored_while_the_leader_is_alive() {
    let mut net = check_quorum_net(3, true);
    net.campaign(1);
    net.isolate(3);
    net.ticks(60);
    assert_eq!(net.node(3).term(), 1);
    assert_eq!(
        log_of(net.node(3)),
        log_of(net.node(1)),
        "nothing was missed"
    );

    net.recover();
    net.ticks(60);
    for id in net.ids() {
        assert_eq!(net.node(id).term(), 1, "node {id}");
    }
    assert_eq!(net.state(1), (Role::Leader, 1));
}

/// Dissertation §6.2: a leader steps down when an election timeout passes without hearing from
/// a majority; while it hears from one it stays leader indefinitely.
#[test]
fn check_quorum_leader_steps_down_without_a_majority() {
    let mut net = check_quorum_net(3, false);
    net.campaign(1);
    net.ticks(50);
    assert_eq!(net.state(1), (Role::Leader, 1), "a connected leader stays");

    net.isolate(1);
    let mut stepped_down_after = None;
    for k in 1..=40 {
        net.tick_node(1);
        if net.node(1).role() != Role::Leader {
            stepped_down_after = Some(k);
            break;
        }
    }
    let k = stepped_down_after.expect("the isolated leader stepped down");
    // The check runs once per election timeout, so it takes one or two of them.
    assert!(k <= 2 * 10, "stepped down after {k} ticks");
    assert_eq!(
        net.state(1),
        (Role::Follower, 1),
        "same term: nobody told it a later one"
    );
    assert_eq!(net.node(1).leader(), None);
}

/// Dissertation §6.2: "a majority" counts the leader itself; in a five-node cluster a leader
/// that hears from two followers keeps leading, and steps down when only one is left.
#[test]
fn check_quorum_counts_a_bare_majority() {
    let mut net = check_quorum_net(5, false);
    net.campaign(1);
    net.cut(1, 4);
    net.cut(1, 5);
    for _ in 0..40 {
        net.tick_node(1);
    }
    assert_eq!(net.state(1), (Role::Leader, 1));

    net.cut(1, 3);
    for _ in 0..20 {
        net.tick_node(1);
    }
    assert_eq!(net.state(1), (Role::Follower, 1));
}

/// Dissertation §4.2.3 ("if a server receives a RequestVote request within the minimum election
/// timeout of hearing from a current leader, it does not update its term or grant its vote"):
/// a node that campaigns while the leader is alive is ignored by everyone; once followers have
/// not heard from a leader for an election timeout, they vote again.
#[test]
fn followers_in_a_leader_lease_ignore_vote_requests() {
    let mut net = check_quorum_net(3, false);
    net.campaign(1);
    let ignored = net.node(2).stats().messages_ignored;
    net.campaign(3);
    assert_eq!(net.state(3), (Role::Candidate, 2));
    assert_eq!(net.state(2), (Role::Follower, 1), "node 2 kept its term");
    assert_eq!(net.node(2).vote(), Some(1));
    assert_eq!(net.state(1), (Role::Leader, 1), "the leader ignored it too");
    assert!(net.node(2).stats().messages_ignored > ignored);

    // The leader goes away; after the lease runs out node 2 votes again.
    net.isolate(1);
    let l = elect_among(&mut net, &[2, 3]);
    assert!(net.node(l).term() > 2);
}

/// Dissertation §3.10 and §4.2.3: a vote request sent because of a leadership transfer is
/// exempt from the lease: the leader itself asked for it.
#[test]
fn transfer_vote_request_bypasses_the_lease() {
    let mut c = config(1, &[1, 2, 3]);
    c.check_quorum = true;
    let mut n = node_with(c, TestStorage::new());
    make_follower(&mut n, 2, 1);
    let request = |transfer| {
        encode(&msg(
            3,
            1,
            2,
            Body::Vote {
                pre: false,
                last_index: 0,
                last_term: 0,
                transfer,
                config_index: 0,
            },
        ))
    };
    step_ok(&mut n, &request(false));
    assert!(round(&mut n).messages.is_empty(), "ignored: in lease");
    assert_eq!(n.term(), 1);
    step_ok(&mut n, &request(true));
    assert_eq!(
        only_vote_response(&round(&mut n).messages),
        (2, false, true)
    );
    assert_eq!((n.term(), n.vote()), (2, Some(3)));
}

/// §5.1 of the paper and dissertation §4.2.3 / §9.6: a follower whose timer fired while the
/// leader's heartbeats were delayed campaigns in a later term that the lease makes everyone
/// ignore. When the leader's heartbeat reaches it, it answers with its later term, the leader
/// steps down, and the cluster elects a leader in a term all nodes share.
#[test]
fn stuck_candidate_is_freed_by_telling_the_leader_its_term() {
    let mut net = check_quorum_net(3, false);
    net.campaign(1);
    for _ in 0..100 {
        if net.node(3).role() == Role::Candidate {
            break;
        }
        net.node_mut(3).tick();
    }
    net.settle();
    assert_eq!(net.state(3), (Role::Candidate, 2));
    assert_eq!(
        net.state(1),
        (Role::Leader, 1),
        "its vote requests were ignored"
    );

    net.tick_node(1);
    assert_eq!(net.state(1), (Role::Follower, 2));

    let l = net.elect(200).expect("a new leader");
    net.ticks(3);
    let term = net.node(l).term();
    assert!(term >= 3);
    for id in net.ids() {
        assert_eq!(net.node(id).term(), term, "node {id}");
    }
}

/// Dissertation §6.2 / §4.2.3 and §5.1 of the paper: a leader cut off while the others elected
/// a successor keeps sending heartbeats in its old term when it returns. With check-quorum (or
/// pre-vote) the receivers answer them with their later term, which deposes it at once; without
/// either they drop them silently.
#[test]
fn stale_leader_is_told_the_later_term() {
    for (check_quorum, pre_vote, told) in [
        (true, false, true),
        (false, true, true),
        (false, false, false),
    ] {
        let mut net = Network::with_config(3, |c| {
            c.check_quorum = check_quorum;
            c.pre_vote = pre_vote;
        });
        net.campaign(1);
        net.isolate(1);
        let l = elect_among(&mut net, &[2, 3]);
        let term = net.node(l).term();
        assert!(term >= 2);

        // Only node 1's own heartbeats and the answers to them may inform it.
        net.recover();
        net.filter = Some(Box::new(move |s, from| !(from == l && s.to == 1)));
        net.tick_node(1);
        let want = if told {
            (Role::Follower, term)
        } else {
            (Role::Leader, 1)
        };
        assert_eq!(
            net.state(1),
            want,
            "check_quorum {check_quorum}, pre_vote {pre_vote}"
        );
        assert_eq!(
            net.state(l),
            (Role::Leader, term),
            "the new leader is undisturbed"
        );
    }
}

/// Dissertation §9.6 with §4.2.3: a node whose timer fired has given up on its leader, so as a
/// pre-candidate it is not in a lease; it answers another node's pre-vote and vote, letting
/// that node win even though the old leader (still in its own lease) ignores them.
#[test]
fn precandidate_has_no_lease_and_can_elect_another_node() {
    let mut net = check_quorum_net(3, true);
    net.campaign(1);
    net.isolate(3);
    for _ in 0..100 {
        if net.node(3).role() == Role::PreCandidate {
            break;
        }
        net.node_mut(3).tick();
    }
    assert_eq!(net.state(3), (Role::PreCandidate, 1));
    net.settle();
    net.recover();

    net.campaign(2);
    assert_eq!(net.state(2), (Role::Leader, 2));
    assert_eq!(net.state(3), (Role::Follower, 2));
    assert_eq!(
        net.state(1),
        (Role::Follower, 2),
        "deposed by the new leader's appends"
    );
}
