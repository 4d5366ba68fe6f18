//! Liveness regressions found by the deterministic simulator (tests/src/sim).

mod harness;
use harness::*;

use tinyraft::{HardState, Role};

/// Raft paper, Figure 2 ("Rules for Servers", followers): the election timer restarts when
/// the follower hears from the current leader or *grants* a vote. A vote request it refuses,
/// because the candidate's log is behind, only moves it to the higher term.
///
/// Found by the simulator (one_partition_2b, seed 211, pre-vote off): after a partition, the
/// majority side held one node with the longest log and two with shorter logs. The two kept
/// campaigning in turn; each refused request reset the third node's timer, so the only node
/// that could win never timed out, and no leader was elected while the partition lasted.
#[test]
fn refused_vote_requests_do_not_hold_back_an_up_to_date_node() {
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    let hs = HardState {
        term: 1,
        vote: None,
        commit: 1,
    };
    let mut n = node_with(cfg, storage_with(&[1, 1], hs));
    drain(&mut n);
    let mut term = 1;
    let mut campaigned = false;
    // A stale candidate asks every 5 ticks, well inside the 10-tick minimum timeout.
    for t in 1..=60 {
        n.tick();
        if n.role() == Role::Candidate {
            campaigned = true;
            break;
        }
        if t % 5 == 0 {
            term += 1;
            step_ok(&mut n, &vote_req(2, 1, term, false, (1, 1)));
            assert_eq!(n.term(), term);
            assert_eq!(n.vote(), None, "the stale candidate must not get the vote");
        }
        drain(&mut n);
    }
    assert!(
        campaigned,
        "the up-to-date node never campaigned (term {})",
        n.term()
    );
}

/// Granting a vote does restart the timer (Figure 2), so a node that voted waits for the
/// candidate it voted for instead of campaigning against it.
#[test]
fn granting_a_vote_restarts_the_election_timer() {
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    let mut n = node_with(cfg, storage_with(&[], HardState::default()));
    for _ in 0..9 {
        n.tick();
    }
    step_ok(&mut n, &vote_req(2, 1, 1, false, (0, 0)));
    assert_eq!(n.vote(), Some(2));
    drain(&mut n);
    for _ in 0..9 {
        n.tick();
        assert_eq!(n.role(), Role::Follower);
    }
}
