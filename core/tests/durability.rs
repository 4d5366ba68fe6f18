//! Crash-safety regressions found by the deterministic simulator (tests/src/sim).

mod harness;
use harness::*;

use tinyraft::fault::{FaultyStorage, SplitMix64};
use tinyraft::{Config, HardState, RawNode, Storage};

type Faulty = FaultyStorage<TestStorage>;
type FaultyNode = RawNode<Faulty, { 32 * 1024 }, { 32 * 1024 }>;

fn follower_config() -> Config {
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    cfg
}

/// A follower whose durable log ends with entries 2 and 3 of term 1 that the leader of term 2
/// replaces. The hard state of that round must not claim entries 2 and 3 committed: they are
/// not durable *as the leader's* until the round's sync, and a store that writes the hard state
/// first (FileStorage does, when the term changes) can crash in between.
fn stale_follower() -> TestStorage {
    storage_with(
        &[1, 1, 1],
        HardState {
            term: 1,
            vote: Some(2),
            commit: 1,
        },
    )
}

#[test]
fn a_round_never_persists_a_commit_index_above_what_was_durable_before_it() {
    let mut n = node_with(follower_config(), stale_follower());
    drain(&mut n);
    step_ok(&mut n, &append_msg(2, 1, 2, (1, 1), 3, &[(2, 2), (3, 2)]));
    assert_eq!(n.committed(), 3);
    let r = round(&mut n);
    let hs = r.hard_state.expect("the term changed");
    assert_eq!(hs.term, 2);
    assert!(
        hs.commit <= 1,
        "commit {} covers entries of this very round",
        hs.commit
    );
    assert!(n.storage().hard_state().commit <= 1);
    // The next round, with the entries durable, records the commit index.
    drain(&mut n);
    assert_eq!(n.storage().hard_state().commit, 3);
}

/// The same, end to end: the sync of that round fails and the crash keeps the new hard state
/// but none of the new entries. After the restart the node must not apply its stale entries
/// 2 and 3 of term 1 as committed (State Machine Safety).
///
/// Found by the simulator: persist_partition_unreliable_2b seed 231 ("state machine safety:
/// node 3 applied a different entry at index 14").
#[test]
fn a_crash_between_hard_state_and_entries_does_not_commit_stale_entries() {
    let mut found = false;
    for seed in 0..64 {
        let mut n = FaultyNode::new(follower_config(), Faulty::new(stale_follower())).unwrap();
        while n.has_ready() {
            let rd = n.ready();
            let p = n.persist(rd).unwrap();
            n.advance(p);
        }
        n.step_bytes(&append_msg(2, 1, 2, (1, 1), 3, &[(2, 2), (3, 2)]))
            .unwrap();
        n.storage_mut().fail_next_sync();
        let rd = n.ready();
        assert!(n.persist(rd).is_err());
        let mut disk = std::mem::replace(n.storage_mut(), Faulty::new(TestStorage::new()));
        drop(n);
        let report = disk.crash(&mut SplitMix64::new(seed)).unwrap();
        if report.kept_entries != 0 || report.hard_state_kept != Some(true) {
            continue;
        }
        found = true;
        assert_eq!(disk.initial_state().unwrap().hard_state.term, 2);
        let mut n = FaultyNode::new(follower_config(), disk).unwrap();
        let mut applied = Vec::new();
        while n.has_ready() {
            let rd = n.ready();
            let p = n.persist(rd).unwrap();
            n.committed_entries(&p, &mut |e| applied.push((e.index, e.term)))
                .unwrap();
            n.advance(p);
        }
        assert!(
            applied.iter().all(|&(index, term)| index < 2 || term != 1),
            "stale entries applied as committed: {applied:?}"
        );
        assert!(
            n.committed() <= 1,
            "commit {} after the crash",
            n.committed()
        );
    }
    assert!(found, "no seed produced the crash this test needs");
}
