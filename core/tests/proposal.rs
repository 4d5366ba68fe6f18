//! Proposals: batching between ready rounds, and the bounded buffers that refuse a proposal
//! (handing its data back) instead of growing or dropping it.
//!
//! Section numbers: the Raft paper (2014) §5.3 for how a leader accepts commands, Ongaro's
//! dissertation §10.2.2 for batching, and §6.2 for redirecting clients to the leader.

mod harness;
use harness::*;
use tinyraft::limits::ENTRY_DATA_BYTES_MAX;
use tinyraft::{ProposeError, ProposeErrorKind, Role};

/// Asserts that `r` is a refusal of kind `kind` handing back exactly `data` (the same bytes,
/// not a copy).
fn assert_refused(r: Result<u64, ProposeError<'_>>, kind: ProposeErrorKind, data: &[u8]) {
    let e = r.expect_err("proposal refused");
    assert_eq!(e.kind, kind);
    assert!(std::ptr::eq(e.data, data), "the caller's bytes come back");
}

/// Dissertation §10.2.2 (batching): proposals made between two ready rounds get consecutive
/// indexes and travel to each follower together, in one append.
#[test]
fn proposals_between_rounds_travel_in_one_append() {
    let mut net = Network::new(3);
    net.campaign(1);
    let n = net.node_mut(1);
    let indexes: Vec<u64> = (0..5u8).map(|i| n.propose(&[i]).unwrap()).collect();
    assert_eq!(indexes, vec![2, 3, 4, 5, 6]);
    let sent = round(n).messages;
    assert_eq!(sent.len(), 2, "{sent:?}");
    for s in &sent {
        assert!(is_append(s));
        assert_eq!(entry_count(s), 5, "to {}", s.to);
    }
    net.deliver(1, sent);
    for id in net.ids() {
        assert_eq!(net.node(id).committed(), 6, "node {id}");
    }
}

/// Backpressure on uncommitted entries: once `uncommitted_entries_max` entries wait to commit
/// (the no-op included), proposals are refused with `Full` and their data handed back; when
/// entries commit, proposals are accepted again.
#[test]
fn uncommitted_limit_refuses_with_full() {
    let mut c = config(1, &[1, 2, 3]);
    c.uncommitted_entries_max = 3;
    let mut n = node_with(c, TestStorage::new());
    make_leader(&mut n);
    assert_eq!(n.propose(b"a"), Ok(2));
    assert_eq!(n.propose(b"b"), Ok(3));
    let data = b"c".to_vec();
    assert_refused(n.propose(&data), ProposeErrorKind::Full, &data);
    assert_eq!(n.last_index(), 3, "nothing was appended");

    drain(&mut n);
    step_ok(&mut n, &append_ok(2, 1, 1, 2));
    drain(&mut n);
    assert_eq!(n.committed(), 2);
    assert_eq!(n.propose(&data), Ok(4));
    assert_eq!(n.propose(&data), Ok(5));
    assert_refused(n.propose(&data), ProposeErrorKind::Full, &data);
}

/// Backpressure on memory: proposals fill the fixed-size ring of entries not yet persisted;
/// when it is full they are refused with `Full` (data handed back, nothing appended), and a
/// ready round that persists the ring makes room again.
#[test]
fn unstable_ring_full_refuses_until_persisted() {
    let mut net = Network::new(1);
    net.campaign(1);
    let n = net.node_mut(1);
    let data = vec![7u8; ENTRY_DATA_BYTES_MAX];
    let mut accepted = 0;
    let refused = loop {
        match n.propose(&data) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the ring never filled");
    };
    assert!(accepted >= 2, "accepted {accepted}");
    assert_eq!(refused.kind, ProposeErrorKind::Full);
    assert!(std::ptr::eq(refused.data, &data[..]));
    let last = n.last_index();
    assert_eq!(last, 1 + accepted);

    let r = round(n);
    assert_eq!(
        r.entries as u64, accepted,
        "every accepted entry was persisted"
    );
    assert_eq!(n.propose(&data), Ok(last + 1));
    round(n);
    assert_eq!(n.committed(), last + 1);
}

/// Entries are bounded by ENTRY_DATA_BYTES_MAX: a larger proposal is refused with `TooLarge`
/// and its data handed back; one of exactly the maximum size is accepted.
#[test]
fn oversized_proposal_is_refused_with_too_large() {
    let mut net = Network::new(3);
    net.campaign(1);
    let big = vec![1u8; ENTRY_DATA_BYTES_MAX + 1];
    assert_refused(
        net.node_mut(1).propose(&big),
        ProposeErrorKind::TooLarge,
        &big,
    );
    let max = vec![2u8; ENTRY_DATA_BYTES_MAX];
    let i = net.propose(1, &max);
    for id in net.ids() {
        let n = net.node(id);
        assert!(n.committed() >= i, "node {id}");
        let e = log_of(n).into_iter().find(|e| e.index == i).unwrap();
        assert_eq!(e.data, max);
    }
}

/// §5.1 and dissertation §6.2 ("if a client contacts a follower, the follower redirects it"):
/// only a leader accepts proposals. Everyone else refuses with `NotLeader`, naming the leader
/// it knows (if any), and hands the data back.
#[test]
fn non_leaders_refuse_with_the_leader_they_know() {
    let data = b"somedata".to_vec();

    // A follower of a known leader.
    let mut net = Network::new(3);
    net.campaign(1);
    let r = net.node_mut(3).propose(&data);
    assert_refused(r, ProposeErrorKind::NotLeader { leader: Some(1) }, &data);

    // A node that has heard from nobody.
    let mut n = node(1, &[1, 2, 3]);
    let r = n.propose(&data);
    assert_refused(r, ProposeErrorKind::NotLeader { leader: None }, &data);

    // A candidate, and a pre-candidate.
    n.campaign();
    assert_eq!(n.role(), Role::Candidate);
    let r = n.propose(&data);
    assert_refused(r, ProposeErrorKind::NotLeader { leader: None }, &data);
    let mut c = config(1, &[1, 2, 3]);
    c.pre_vote = true;
    let mut p = node_with(c, TestStorage::new());
    p.campaign();
    assert_eq!(p.role(), Role::PreCandidate);
    let r = p.propose(&data);
    assert_refused(r, ProposeErrorKind::NotLeader { leader: None }, &data);

    // A leader deposed by a later term.
    let mut l = node(1, &[1, 2, 3]);
    make_leader(&mut l);
    step_ok(&mut l, &heartbeat(2, 1, 5, 0, 0));
    let r = l.propose(&data);
    assert_refused(r, ProposeErrorKind::NotLeader { leader: Some(2) }, &data);
    assert!(
        log_of(&l).iter().all(|e| e.data.is_empty()),
        "nothing appended"
    );
}
