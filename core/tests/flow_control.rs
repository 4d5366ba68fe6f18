//! Flow control between the leader and each follower: probing, pipelining within a bounded
//! inflight window, the per-message byte cap, and fast backtracking after a rejection.
//!
//! Section numbers: the Raft paper (2014) §5.3 for nextIndex and its optimisation, and
//! Ongaro's dissertation §10.2.2 ("Batching and pipelining") for sending appends without
//! waiting for each acknowledgement.

mod harness;
use std::cell::Cell;
use std::rc::Rc;

use harness::*;
use tinyraft::limits::{ENTRIES_PER_MESSAGE_MAX, ENTRY_DATA_BYTES_MAX, MESSAGE_BYTES_MIN};
use tinyraft::{Body, Config, HardState, ProgressState, Term};

/// Node 1 of three, made leader (term 1, its no-op at index 1), with `tweak` applied.
fn leader(tweak: impl Fn(&mut Config)) -> TestNode {
    let mut c = config(1, &[1, 2, 3]);
    tweak(&mut c);
    let mut n = node_with(c, TestStorage::new());
    make_leader(&mut n);
    n
}

/// The appends to `to` in `sent`.
fn appends_to(sent: &[Sent], to: u64) -> Vec<&Sent> {
    sent.iter().filter(|s| s.to == to && is_append(s)).collect()
}

/// Index of the first entry an append carries and how many it carries.
fn span(s: &Sent) -> (u64, usize) {
    match s.msg().body {
        Body::Append {
            prev_index,
            ref entries,
            ..
        } => (prev_index + 1, entries.len()),
        ref b => panic!("not an append: {b:?}"),
    }
}

/// Proposes one entry per ready round, `k` times; returns everything sent.
fn propose_rounds(n: &mut TestNode, k: usize) -> Vec<Sent> {
    let mut sent = Vec::new();
    for i in 0..k {
        n.propose(&[i as u8]).unwrap();
        sent.extend(drain(n));
    }
    sent
}

/// §5.3 ("after a rejection, the leader decrements nextIndex and retries"), as a probe: while
/// the leader does not know where a follower's log matches, it keeps one append outstanding
/// and waits for the answer instead of streaming entries that may all be rejected.
#[test]
fn probing_leader_keeps_one_append_outstanding() {
    let mut n = leader(|_| {});
    let p = n.progress(2).unwrap();
    assert_eq!(p.state, ProgressState::Probe);
    assert!(p.probe_sent, "the no-op went out as the probe");

    let sent = propose_rounds(&mut n, 3);
    assert!(appends_to(&sent, 2).is_empty(), "{sent:?}");
    assert!(appends_to(&sent, 3).is_empty());

    // The answer to the probe switches node 2 to streaming; node 3 still waits.
    step_ok(&mut n, &append_ok(2, 1, 1, 1));
    let sent = drain(&mut n);
    let to2 = appends_to(&sent, 2);
    assert_eq!(to2.len(), 1);
    assert_eq!(span(to2[0]), (2, 3), "the three proposals in one append");
    assert!(appends_to(&sent, 3).is_empty());
    assert_eq!(n.progress(2).unwrap().state, ProgressState::Replicate);
}

/// §5.3: each heartbeat response ends a probe's wait, so a lost probe is resent within one
/// heartbeat interval rather than never.
#[test]
fn heartbeat_response_ends_a_probe_wait() {
    let mut n = leader(|_| {});
    propose_rounds(&mut n, 2);
    assert!(n.progress(2).unwrap().is_paused(n.config().inflight_max));
    step_ok(&mut n, &heartbeat_resp(2, 1, 1, 0));
    let sent = drain(&mut n);
    assert_eq!(appends_to(&sent, 2).len(), 1);
    assert!(n.progress(2).unwrap().probe_sent, "and it waits again");
}

/// Node 1 as leader with node 2 streaming and its window of `window` appends full, with two
/// more proposals waiting to be sent.
fn leader_with_full_window(window: usize) -> TestNode {
    let mut n = leader(|c| c.inflight_max = window);
    step_ok(&mut n, &append_ok(2, 1, 1, 1));
    drain(&mut n);
    let sent = propose_rounds(&mut n, window + 2);
    let to2 = appends_to(&sent, 2);
    assert_eq!(
        to2.len(),
        window,
        "one append per round until the window is full"
    );
    for (k, s) in to2.iter().enumerate() {
        assert_eq!(span(s), (2 + k as u64, 1));
    }
    let p = n.progress(2).unwrap();
    assert_eq!(p.inflights.len(), window);
    assert!(p.is_paused(window));
    n
}

/// Dissertation §10.2.2 (pipelining): once a follower's match point is known the leader sends
/// appends without waiting for acknowledgements, up to `inflight_max` outstanding, and then
/// pauses; an acknowledgement frees the slots it covers and the waiting entries go out together.
#[test]
fn replicating_leader_pipelines_up_to_the_window() {
    let mut n = leader_with_full_window(3);
    // Entries 2, 3, 4 are in flight; 5 and 6 wait. The ack for 2 frees one slot.
    step_ok(&mut n, &append_ok(2, 1, 1, 2));
    let sent = drain(&mut n);
    let to2 = appends_to(&sent, 2);
    assert_eq!(to2.len(), 1);
    assert_eq!(span(to2[0]), (5, 2));
    assert_eq!(n.progress(2).unwrap().inflights.len(), 3);

    // An ack for everything frees the whole window; nothing is left to send.
    step_ok(&mut n, &append_ok(2, 1, 1, 6));
    drain(&mut n);
    let p = n.progress(2).unwrap();
    assert!(p.inflights.is_empty());
    assert_eq!((p.matched, p.next), (6, 7));
}

/// Dissertation §10.2.2: a follower whose acknowledgements are lost would leave the window
/// full forever; a heartbeat response shows it is alive, so the leader frees one slot and
/// sends one more append.
#[test]
fn heartbeat_response_frees_one_inflight_slot() {
    let mut n = leader_with_full_window(3);
    step_ok(&mut n, &heartbeat_resp(2, 1, 1, 0));
    let sent = drain(&mut n);
    let to2 = appends_to(&sent, 2);
    assert_eq!(to2.len(), 1, "{sent:?}");
    assert_eq!(span(to2[0]), (5, 2));
    let p = n.progress(2).unwrap();
    assert_eq!(p.inflights.len(), 3, "full again");

    // Nothing more waits: another heartbeat response frees a slot but sends no entries.
    step_ok(&mut n, &heartbeat_resp(2, 1, 1, 0));
    let sent = drain(&mut n);
    assert!(appends_to(&sent, 2).iter().all(|s| span(s).1 == 0));
    assert_eq!(n.progress(2).unwrap().inflights.len(), 2);
}

/// §5.3: a rejection while streaming means the follower's log is not what the leader assumed:
/// it goes back to probing from just after the match point, with one append. Rejections of
/// indexes already known to match are stale and change nothing.
#[test]
fn rejection_while_replicating_falls_back_to_probe() {
    let mut n = leader_with_full_window(3);
    let reject = |index| {
        encode(&msg(
            2,
            1,
            1,
            Body::AppendResponse {
                success: false,
                index,
                hint_index: index - 1,
                hint_term: 0,
            },
        ))
    };
    // Stale: index 1 is known to match.
    step_ok(&mut n, &reject(1));
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.progress(2).unwrap().state, ProgressState::Replicate);

    step_ok(&mut n, &reject(3));
    let sent = drain(&mut n);
    let p = n.progress(2).unwrap();
    assert_eq!(p.state, ProgressState::Probe);
    let to2 = appends_to(&sent, 2);
    assert_eq!(to2.len(), 1);
    assert_eq!(span(to2[0]).0, 2, "resent from just after the match point");
    assert!(p.probe_sent);
}

/// Dissertation §10.2.2 (batching) under a byte budget: however many entries wait, no encoded
/// message exceeds `Config::message_bytes_max` or carries more than ENTRIES_PER_MESSAGE_MAX
/// entries, yet every entry — even one of the largest allowed size — gets through, in order.
#[test]
fn appends_respect_the_message_byte_cap() {
    let cap = MESSAGE_BYTES_MIN;
    let mut net = Network::with_config(3, |c| c.message_bytes_max = cap);
    net.campaign(1);
    net.settle();
    let mut want = Vec::new();
    for i in 0..20u8 {
        let data = vec![i; 1000];
        net.node_mut(1).propose(&data).unwrap();
        want.push(data);
    }
    let big = vec![0xEE; ENTRY_DATA_BYTES_MAX];
    net.node_mut(1).propose(&big).unwrap();
    want.push(big);
    let sent = net.settle_sent();
    let appends: Vec<_> = sent.iter().filter(|(_, s)| is_append(s)).collect();
    assert!(appends.len() >= 2 * 5, "the batch had to be split");
    for (_, s) in &sent {
        assert!(s.bytes.len() <= cap, "{} bytes > {cap}", s.bytes.len());
    }
    for id in net.ids() {
        let n = net.node(id);
        assert_eq!(n.committed(), 22, "node {id}");
        let got: Vec<_> = log_of(n).into_iter().skip(1).map(|e| e.data).collect();
        assert_eq!(got, want, "node {id}");
    }

    // Small entries: the entry count is the limit.
    for i in 0..150u8 {
        net.node_mut(1).propose(&[i]).unwrap();
    }
    let sent = net.settle_sent();
    let max = sent
        .iter()
        .filter(|(_, s)| is_append(s))
        .map(|(_, s)| entry_count(s))
        .max();
    assert_eq!(max, Some(ENTRIES_PER_MESSAGE_MAX));
    for id in net.ids() {
        assert_eq!(net.node(id).committed(), 172, "node {id}");
    }
}

/// §5.3 ("the follower can include the term of the conflicting entry and the first index it
/// stores for that term ... one AppendEntries RPC will be required for each term with
/// conflicting entries, rather than one RPC per entry"): a follower whose log diverges for
/// many entries is repaired in about one round trip per divergent term.
#[test]
fn fast_backtracking_skips_a_term_per_round_trip() {
    // (leader's log terms, follower's log terms, rejections expected)
    type Case = (Vec<Term>, Vec<Term>, usize);
    let cases: Vec<Case> = vec![
        // A long tail of an older term on the follower.
        (
            [vec![1, 1, 1], vec![3; 10]].concat(),
            [vec![1, 1, 1], vec![2; 9]].concat(),
            1,
        ),
        // The follower is missing entries.
        (vec![1; 5], vec![1, 1], 1),
        // The follower holds entries of a later term than the leader's.
        (vec![1, 1, 2, 2], vec![1, 1, 3, 3, 3], 1),
        // Thirty conflicting entries, one term.
        (
            [vec![1], vec![3; 5]].concat(),
            [vec![1], vec![2; 30]].concat(),
            1,
        ),
        // Two divergent terms on each side.
        (vec![1, 3, 3, 3, 5, 5], vec![1, 2, 2, 2, 4, 4, 4], 2),
    ];
    for (i, (lead, follow, want)) in cases.into_iter().enumerate() {
        let voters = ids(3);
        let last = |t: &[Term]| *t.last().unwrap();
        let hs = |term| HardState {
            term,
            vote: None,
            commit: 1,
        };
        // Node 3 copies the leader so that the leader wins even when node 2's log is newer.
        let nodes = vec![
            node_with(config(1, &voters), storage_with(&lead, hs(last(&lead)))),
            node_with(config(2, &voters), storage_with(&follow, hs(last(&follow)))),
            node_with(config(3, &voters), storage_with(&lead, hs(last(&lead)))),
        ];
        let mut net = Network::from_nodes(nodes);
        let rejections = Rc::new(Cell::new(0));
        let counter = rejections.clone();
        net.filter = Some(Box::new(move |s, from| {
            if from == 2 {
                if let Body::AppendResponse { success: false, .. } = s.msg().body {
                    counter.set(counter.get() + 1);
                }
            }
            true
        }));
        net.campaign(1);
        assert_eq!(net.node(1).role(), tinyraft::Role::Leader, "case {i}");
        net.tick();
        assert_eq!(log_of(net.node(2)), log_of(net.node(1)), "case {i}");
        assert_eq!(rejections.get(), want, "case {i}: round trips");
    }
}

/// §5.3 (followers learn the commit index from later AppendEntries): a follower that was paused
/// — its probe still unanswered — when the commit index advanced missed that broadcast; its
/// acknowledgement is answered with the commit index at once, not only at the next heartbeat.
#[test]
fn paused_follower_is_told_the_commit_index_when_it_answers() {
    let mut n = leader(|_| {});
    step_ok(&mut n, &append_ok(2, 1, 1, 1));
    let sent = drain(&mut n);
    assert_eq!(n.committed(), 1);
    assert!(
        appends_to(&sent, 3).is_empty(),
        "node 3 is still being probed"
    );

    step_ok(&mut n, &append_ok(3, 1, 1, 1));
    let sent = drain(&mut n);
    let to3 = appends_to(&sent, 3);
    assert_eq!(to3.len(), 1, "{sent:?}");
    match to3[0].msg().body {
        Body::Append {
            commit,
            ref entries,
            ..
        } => assert_eq!((commit, entries.len()), (1, 0)),
        ref b => panic!("{b:?}"),
    };
}
