//! The Ready/persist/advance interface, after TinyKV's `rawnode_test.go` (from etcd raft):
//! starting, proposing, restarting from storage and from a snapshot, plus the persistence
//! contract that tinyraft's API enforces with its `Persisted` token.
//!
//! Differences from TinyKV that shape these tests:
//! - tinyraft has no configuration-change proposals yet (`EntryKind::Config` is reserved), so
//!   TinyKV's two 3A tests become their plain-proposal equivalents;
//! - the leader counts an entry towards commitment only once it is durable, so the commit
//!   index a round discovers while persisting is itself recorded by one more, cheap round
//!   (no entries, no messages, no sync). TinyKV expects no Ready at all after that round.

mod harness;

use harness::*;
use tinyraft::{
    Body, EntryKind, Error, HardState, Index, Membership, ProposeError, ProposeErrorKind, Ready,
    Role, SnapshotMeta, SoftState, Storage,
};

/// A single-voter cluster's node 1 (it can elect itself without any network).
fn single() -> TestNode {
    node(1, &[1])
}

/// Makes a single-voter node leader and finishes the rounds that follow; returns the index
/// of its no-op.
fn lead_alone(n: &mut TestNode) -> Index {
    n.campaign();
    assert_eq!(n.role(), Role::Leader);
    drain(n);
    assert!(!n.has_ready());
    n.last_index()
}

/// Runs the round that only records a commit index the previous round discovered: it must
/// write nothing but the hard state, sync nothing, send and apply nothing, and leave the node
/// with nothing ready.
fn commit_only_round(n: &mut TestNode) {
    assert!(n.has_ready(), "the new commit index is not yet recorded");
    let want = Ready {
        soft_state: None,
        hard_state: Some(n.hard_state()),
        entries: 0,
        messages: 0,
        must_sync: false,
    };
    let rd = n.ready();
    assert_eq!(rd, want);
    let syncs = n.storage().sync_count();
    let p = n.persist(rd).unwrap();
    assert_eq!(
        n.storage().sync_count(),
        syncs,
        "a commit index alone needs no sync"
    );
    assert_eq!(n.storage().hard_state(), n.hard_state());
    assert!(p.committed_range().is_empty(), "nothing new to apply");
    n.advance(p);
    assert!(!n.has_ready());
}

/// The payloads of the log entries `lo..=hi`.
fn payloads(n: &TestNode, lo: Index, hi: Index) -> Vec<(EntryKind, Vec<u8>)> {
    let mut v = Vec::new();
    n.entries(lo, hi + 1, &mut |e| v.push((e.kind, e.data.to_vec())));
    v
}

/// §5.3: the leader appends each client command to its log as a new entry. Through the
/// interface: on the leader, `propose` makes the data the next entries, in order, each at the
/// index it returned; elsewhere it is refused with the data handed back and the known leader.
/// (TinyKV also proposes a configuration change here; tinyraft has none to propose.)
#[test]
fn propose_appends_the_data_to_the_leaders_log() {
    let mut n = single();
    assert!(
        !n.has_ready(),
        "a fresh node has nothing to persist or send"
    );

    n.campaign();
    let rd = n.ready();
    assert_eq!(
        rd.soft_state,
        Some(SoftState {
            leader: Some(1),
            role: Role::Leader
        })
    );
    let p = n.persist(rd).unwrap();
    n.advance(p);
    drain(&mut n);

    let first = n.propose(b"somedata").unwrap();
    let second = n.propose(b"otherdata").unwrap();
    assert_eq!((first, second), (n.last_index() - 1, n.last_index()));
    assert_eq!(
        payloads(&n, first, second),
        vec![
            (EntryKind::Normal, b"somedata".to_vec()),
            (EntryKind::Normal, b"otherdata".to_vec()),
        ]
    );

    let mut follower = node(2, &[1, 2, 3]);
    follower
        .step_bytes(&append_msg(1, 2, 1, (0, 0), 0, &[]))
        .unwrap();
    assert_eq!(
        follower.propose(b"x"),
        Err(ProposeError {
            kind: ProposeErrorKind::NotLeader { leader: Some(1) },
            data: b"x",
        })
    );
    assert_eq!(
        follower.last_index(),
        0,
        "a refused proposal leaves no trace"
    );
}

/// §8: Raft itself may execute a command more than once; deduplication is the client's and
/// the state machine's job. So the core does not deduplicate: the same payload proposed twice
/// is logged and applied twice, and a different proposal after them is unaffected. (TinyKV's
/// version proposes the same "add node" configuration change twice.)
#[test]
fn identical_proposals_are_each_logged_and_applied() {
    let mut n = single();
    let noop = lead_alone(&mut n);
    let mut applied = Vec::new();
    for data in [&b"add 1"[..], b"add 1", b"add 2"] {
        n.propose(data).unwrap();
        applied.extend(round(&mut n).committed);
        commit_only_round(&mut n);
    }
    let data: Vec<&[u8]> = applied.iter().map(|e| &e.data[..]).collect();
    assert_eq!(data, vec![&b"add 1"[..], b"add 1", b"add 2"]);

    let st = n.storage();
    assert_eq!(st.last_index(), noop + 3);
    let mut stored = Vec::new();
    st.entries(noop + 1, noop + 4, usize::MAX, &mut |e| {
        stored.push(e.data.to_vec());
        true
    })
    .unwrap();
    assert_eq!(
        stored,
        vec![b"add 1".to_vec(), b"add 1".to_vec(), b"add 2".to_vec()]
    );
}

/// §5.2–§5.3: a node started on empty storage campaigns, leads, and commits a proposal: the
/// round that persists the entry also hands it out to apply, and afterwards nothing is left to
/// do but record the new commit index.
#[test]
fn started_node_leads_and_commits_a_proposal() {
    let mut n = single();
    n.campaign();
    let rd = n.ready();
    assert_eq!(
        rd,
        Ready {
            soft_state: Some(SoftState {
                leader: Some(1),
                role: Role::Leader
            }),
            hard_state: Some(HardState {
                term: 1,
                vote: Some(1),
                commit: 0
            }),
            entries: 1,
            messages: 0,
            must_sync: true,
        }
    );
    let p = n.persist(rd).unwrap();
    let mut first = Vec::new();
    n.committed_entries(&p, &mut |e| first.push((e.index, e.is_noop())))
        .unwrap();
    assert_eq!(
        first,
        vec![(1, true)],
        "the leader's no-op commits once durable"
    );
    n.advance(p);
    commit_only_round(&mut n);

    assert_eq!(n.propose(b"foo"), Ok(2));
    let rd = n.ready();
    assert_eq!((rd.entries, rd.must_sync, rd.hard_state), (1, true, None));
    let p = n.persist(rd).unwrap();
    let mut applied = Vec::new();
    n.committed_entries(&p, &mut |e| applied.push(OwnedEntry::from(e)))
        .unwrap();
    assert_eq!(
        applied,
        vec![OwnedEntry {
            term: 1,
            index: 2,
            kind: EntryKind::Normal,
            data: b"foo".to_vec()
        }]
    );
    n.advance(p);
    assert_eq!(n.applied(), 2);
    commit_only_round(&mut n);
}

/// Figure 2 and §5.3: a node restarted on storage that holds a log and a hard state keeps its
/// term and hands out, in log order, exactly the entries the hard state records as committed;
/// it has nothing to persist or send, and then is quiet.
#[test]
fn restarted_node_applies_what_storage_records_as_committed() {
    let hs = HardState {
        term: 1,
        vote: None,
        commit: 1,
    };
    let mut st = storage_with(&[1], hs);
    st.append(tinyraft::Entry {
        term: 1,
        index: 2,
        kind: EntryKind::Normal,
        data: b"foo",
    })
    .unwrap();
    let mut n = node_with(config(1, &[1]), st);
    assert!(n.has_ready());
    let rd = n.ready();
    assert_eq!(
        rd,
        Ready {
            soft_state: None,
            hard_state: None,
            entries: 0,
            messages: 0,
            must_sync: false,
        }
    );
    let p = n.persist(rd).unwrap();
    let mut applied = Vec::new();
    n.committed_entries(&p, &mut |e| applied.push(OwnedEntry::from(e)))
        .unwrap();
    assert_eq!(
        applied,
        vec![OwnedEntry {
            term: 1,
            index: 1,
            kind: EntryKind::Normal,
            data: vec![]
        }]
    );
    n.advance(p);
    assert_eq!((n.applied(), n.committed(), n.last_index()), (1, 1, 2));
    assert_eq!((n.term(), n.role()), (1, Role::Follower));
    assert!(!n.has_ready());
}

/// §7: a node restarted on storage that begins with a snapshot takes its membership from the
/// snapshot (not from the bootstrap configuration), starts applying after it, and hands out
/// only the committed entries that follow it.
#[test]
fn restarted_node_resumes_after_its_snapshot() {
    let mut st = TestStorage::new();
    st.set_hard_state(&HardState {
        term: 1,
        vote: None,
        commit: 3,
    })
    .unwrap();
    st.begin_snapshot(&SnapshotMeta {
        index: 2,
        term: 1,
        membership: Membership::from_voters(&[1, 2]).unwrap(),
    })
    .unwrap();
    st.finish_snapshot().unwrap();
    st.append(tinyraft::Entry {
        term: 1,
        index: 3,
        kind: EntryKind::Normal,
        data: b"foo",
    })
    .unwrap();
    // The bootstrap configuration says a single voter; the snapshot's membership wins.
    let mut n = node_with(config(1, &[1]), st);
    assert_eq!(&n.membership().voters[..], &[1, 2]);
    assert_eq!(
        (n.first_index(), n.applied(), n.term_at(2)),
        (3, 2, Some(1))
    );

    let rd = n.ready();
    assert_eq!(
        rd,
        Ready {
            soft_state: None,
            hard_state: None,
            entries: 0,
            messages: 0,
            must_sync: false,
        }
    );
    let p = n.persist(rd).unwrap();
    // The state machine must first be restored from the snapshot it starts after.
    assert_eq!(p.snapshot().map(|m| (m.index, m.term)), Some((2, 1)));
    let mut applied = Vec::new();
    n.committed_entries(&p, &mut |e| applied.push(OwnedEntry::from(e)))
        .unwrap();
    assert_eq!(
        applied,
        vec![OwnedEntry {
            term: 1,
            index: 3,
            kind: EntryKind::Normal,
            data: b"foo".to_vec()
        }]
    );
    n.advance(p);
    assert_eq!(n.applied(), 3);
    assert!(!n.has_ready());
}

/// §5 (Figure 2, "persistent state"): a vote is on stable storage, synced, before the answer
/// that reveals it can leave the node. Storage is untouched until `persist`, and `messages`
/// needs the token only `persist` returns.
#[test]
fn vote_is_durable_before_the_answer_is_released() {
    let mut n = node(1, &[1, 2, 3]);
    let req = msg(
        2,
        1,
        1,
        Body::Vote {
            pre: false,
            last_index: 0,
            last_term: 0,
            transfer: false,
            config_index: 0,
        },
    );
    n.step_bytes(&encode(&req)).unwrap();
    assert_eq!(n.vote(), Some(2));
    assert_eq!(
        n.storage().hard_state(),
        HardState::default(),
        "nothing written yet"
    );

    let rd = n.ready();
    assert_eq!((rd.messages, rd.must_sync), (1, true));
    let syncs = n.storage().sync_count();
    let p = n.persist(rd).unwrap();
    assert_eq!(n.storage().sync_count(), syncs + 1);
    assert_eq!(
        n.storage().hard_state(),
        HardState {
            term: 1,
            vote: Some(2),
            commit: 0
        }
    );
    let out: Vec<(u64, Vec<u8>)> = n.messages(&p).map(|(to, b)| (to, b.to_vec())).collect();
    assert_eq!(out.len(), 1);
    let answer = tinyraft::Message::decode(&out[0].1).unwrap();
    assert_eq!(
        (out[0].0, answer.body),
        (
            2,
            Body::VoteResponse {
                pre: false,
                granted: true
            }
        )
    );
    n.advance(p);
    assert!(!n.has_ready());
}

/// Dissertation §10.2.1: the leader may replicate an entry before writing it to its own disk,
/// but counts itself towards the entry's majority only once it is durable. Even a single-voter
/// leader does not commit a proposal before the round that persists it.
#[test]
fn leader_counts_itself_only_for_persisted_entries() {
    let mut n = single();
    n.campaign();
    assert_eq!((n.role(), n.last_index()), (Role::Leader, 1));
    assert_eq!(
        n.committed(),
        0,
        "the no-op is not durable yet, so not committed"
    );
    let rd = n.ready();
    let p = n.persist(rd).unwrap();
    assert_eq!(n.committed(), 1);
    n.advance(p);
    drain(&mut n);

    let index = n.propose(b"a").unwrap();
    assert_eq!(n.committed(), 1, "not durable yet, so not committed");
    let rd = n.ready();
    let p = n.persist(rd).unwrap();
    assert_eq!(n.committed(), index);
    assert_eq!(p.committed_range(), index..=index);
    n.advance(p);
}

/// §5.3 (committed entries are applied in log order), with tinyraft's bound on work per call:
/// applying is limited per round by `apply_entries_max`, so one round's work stays bounded;
/// the rest follows in later rounds, in order, without gaps.
#[test]
fn apply_is_bounded_per_round() {
    let hs = HardState {
        term: 1,
        vote: None,
        commit: 5,
    };
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.apply_entries_max = 2;
    let mut n = node_with(cfg, storage_with(&[1, 1, 1, 1, 1], hs));
    let mut per_round = Vec::new();
    while n.has_ready() {
        let r = round(&mut n);
        per_round.push(r.committed.iter().map(|e| e.index).collect::<Vec<_>>());
        assert!(per_round.len() < 10);
    }
    assert_eq!(per_round, vec![vec![1, 2], vec![3, 4], vec![5]]);
}

/// Beyond the paper, whose §5 assumes every message is well formed and from a member: bytes
/// that do not decode, and answers from a node outside the membership (§6), are refused with
/// an error and change nothing — not even the term, although the stranger's is higher. (A
/// leader or, when we have none, a candidate from outside is another matter: our
/// configuration may be behind theirs; see core/tests/membership.rs.)
#[test]
fn invalid_input_is_refused_without_effect() {
    let mut n = node(1, &[1, 2, 3]);
    assert!(matches!(n.step_bytes(&[0xff; 8]), Err(Error::Decode(_))));
    let stranger: Vec<u8> = append_ok(9, 1, 5, 0);
    assert_eq!(n.step_bytes(&stranger), Err(Error::UnknownPeer(9)));
    assert_eq!(n.stats().messages_ignored, 2);
    assert_eq!((n.term(), n.role(), n.leader()), (0, Role::Follower, None));
    assert!(!n.has_ready());
}

/// A node built in place (`unstarted` then `start`, as firmware does in a `static`) behaves
/// like one from `new`; `start` again restarts it in place from its storage, like a reboot
/// (Figure 2: term, vote and log are persistent state, the rest is volatile).
#[test]
fn node_started_in_place_restarts_from_its_storage() {
    let mut n: Box<TestNode> = Box::new(TestNode::unstarted(TestStorage::new()));
    n.start(config(1, &[1])).unwrap();
    let noop = lead_alone(&mut n);
    let term = n.term();
    let index = n.propose(b"x").unwrap();
    drain(&mut n);
    assert_eq!(n.committed(), index);
    n.start(config(1, &[1])).unwrap();
    assert_eq!(n.role(), Role::Follower);
    assert_eq!((n.term(), n.vote()), (term, Some(1)));
    assert_eq!(n.last_index(), index);
    assert!(noop < index);
    assert_eq!(n.applied(), 0, "volatile state starts over");
    let mut bad = config(1, &[1]);
    bad.heartbeat_ticks = 0;
    assert!(matches!(n.start(bad), Err(Error::InvalidConfig(_))));
}
