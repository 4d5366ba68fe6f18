//! Membership changes: single-server steps, joint consensus with automatic leave, learners and
//! their promotion, a removed leader stepping down, capacity errors, and the configuration
//! surviving restarts and snapshots (TinyKV 3A's add/remove behaviours and more).

mod harness;
use harness::*;

use tinyraft::{
    ConfChange, ConfChangeError, ConfChangeMode, Membership, NodeId, Role, Storage, TransferError,
};

use ConfChange::{AddLearner, AddVoter, Remove};

fn voters(net: &Network, id: NodeId) -> Vec<NodeId> {
    let mut v = net.node(id).membership().voters.to_vec();
    v.sort_unstable();
    v
}

fn joint_change(net: &mut Network, id: NodeId, changes: &[ConfChange]) {
    net.node_mut(id)
        .propose_conf_change(changes, ConfChangeMode::Auto, b"")
        .expect("accepted");
    net.settle();
}

/// A joining node (no configuration) added as a voter gets the whole log, learns the
/// configuration from it, and from then on counts: with four voters, two down block commits.
#[test]
fn add_a_voter() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    let l = net.elect(100).unwrap();
    net.propose(l, b"before");
    net.conf_change(l, &[AddVoter(4)]);
    for id in 1..=4 {
        assert_eq!(voters(&net, id), vec![1, 2, 3, 4], "node {id}");
    }
    let last = net.node(l).last_index();
    assert_eq!(net.node(4).committed(), last);
    assert_eq!(net.node(4).applied(), last);
    // Quorum is now 3 of 4: with two followers cut off the leader cannot commit.
    let cut: Vec<NodeId> = (1..=4).filter(|&i| i != l).take(2).collect();
    for &c in &cut {
        net.isolate(c);
    }
    let i = net.propose(l, b"needs three");
    assert!(net.node(l).committed() < i);
    net.recover();
    net.tick();
    assert!(net.node(l).committed() >= i);
}

/// TinyKV TestCommitAfterRemoveNode3A: an entry proposed while the removal of the other voter
/// of a two-voter cluster is pending commits with the leader alone once the removal applies.
#[test]
fn commit_after_removing_a_node() {
    let mut n = node(1, &[1, 2]);
    make_leader(&mut n);
    let term = n.term();
    // The leader's first entry must be applied before a change is accepted.
    let noop = n.last_index();
    n.step_bytes(&append_ok(2, 1, term, noop)).unwrap();
    round(&mut n);
    let rm = n
        .propose_conf_change(&[Remove(2)], ConfChangeMode::Auto, b"")
        .unwrap();
    assert!(round(&mut n).committed.is_empty(), "nothing commits alone");
    let hello = n.propose(b"hello").unwrap();
    assert!(round(&mut n).committed.is_empty());
    // Node 2 acknowledges up to the removal only: that commits it, and applying it shrinks
    // the quorum to the leader itself.
    n.step_bytes(&append_ok(2, 1, term, rm)).unwrap();
    let r = round(&mut n);
    assert_eq!(r.committed.last().map(|e| e.index), Some(rm));
    assert_eq!(n.membership().voters.as_slice(), &[1]);
    let r = round(&mut n);
    let data: Vec<&[u8]> = r.committed.iter().map(|e| &e.data[..]).collect();
    assert_eq!(r.committed.first().map(|e| e.index), Some(hello));
    assert_eq!(data, vec![&b"hello"[..]]);
}

/// §4.2.2: a leader that removes itself steps down once the change commits, and hands over at
/// once (no election timeout): a new leader exists before any tick.
#[test]
fn removed_leader_steps_down_and_hands_over() {
    let (mut net, l) = Network::guarded_three();
    net.propose(l, b"x");
    let term = net.node(l).term();
    net.conf_change(l, &[Remove(l)]);
    assert_ne!(net.node(l).role(), Role::Leader);
    assert!(!net.node(l).membership().contains(l));
    let heir = net.leader().expect("a successor without waiting");
    assert_ne!(heir, l);
    assert!(net.node(heir).term() > term);
    let i = net.propose(heir, b"two voters");
    net.isolate(l);
    assert!(net.node(heir).committed() >= i);
    // The removed node never campaigns.
    let campaigns = net.node(l).stats().campaigns;
    net.ticks(50);
    assert_eq!(net.node(l).stats().campaigns, campaigns);
}

/// A learner receives and applies the log but neither votes nor counts towards a quorum; once
/// promoted, it does both.
#[test]
fn learner_replicates_without_voting_then_is_promoted() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    let l = net.elect(100).unwrap();
    net.conf_change(l, &[AddLearner(4)]);
    let i = net.propose(l, b"to the learner");
    assert!(net.node(4).applied() >= i);
    assert!(net.node(l).membership().is_learner(4));
    // Its acks do not make a quorum: cut two voters off and nothing commits.
    let others: Vec<NodeId> = (1..=3).filter(|&v| v != l).collect();
    for &o in &others {
        net.isolate(o);
    }
    let j = net.propose(l, b"no quorum");
    assert!(net.node(4).last_index() >= j, "the learner has it");
    assert!(net.node(l).committed() < j);
    // Cut off from everyone, it never campaigns.
    net.recover();
    net.isolate(4);
    net.ticks(60);
    assert_eq!(net.node(4).stats().campaigns, 0);
    net.recover();
    net.tick();
    let l = net.elect(100).unwrap();
    net.conf_change(l, &[AddVoter(4)]);
    assert!(net.node(4).membership().is_voter(4));
    // Now 4 counts: with 4 and the leader and one more, a commit goes through.
    let cut = (1..=3).find(|&v| v != l).unwrap();
    net.isolate(cut);
    let k = net.propose(l, b"with 4");
    assert!(net.node(l).committed() >= k);
}

/// §4.3: changing two voters at once goes through C_old,new, where both majorities are needed,
/// and the leader leaves it by itself.
#[test]
fn joint_consensus_needs_both_majorities_and_leaves_automatically() {
    let mut net = Network::with_joiners(3, 5, |_| {});
    net.campaign(3);
    assert_eq!(net.leader(), Some(3));
    net.propose(3, b"x");
    // Hold node 3's messages to 4 and 5 back right after the joint entry: the joint entry
    // commits with the old majority only if the new one also has it.
    net.isolate(4);
    net.isolate(5);
    let joint = net
        .node_mut(3)
        .propose_conf_change(
            &[AddVoter(4), AddVoter(5), Remove(1), Remove(2)],
            ConfChangeMode::Auto,
            b"",
        )
        .unwrap();
    net.settle();
    // Old majority {1,2,3} has it: it commits (the old configuration decides), applies, and
    // the leader is now joint.
    let m = net.node(3).membership().clone();
    assert!(m.is_joint(), "{m:?}");
    assert!(net.node(3).committed() >= joint);
    // In C_old,new a new entry needs {3,4,5} too: with 4 and 5 cut off it cannot commit.
    let i = net.node_mut(3).propose(b"needs both").unwrap();
    net.settle();
    assert!(net.node(3).committed() < i);
    net.recover();
    net.tick();
    net.settle();
    assert!(net.node(3).committed() >= i);
    for id in [3, 4, 5] {
        let m = net.node(id).membership();
        assert!(
            !m.is_joint(),
            "node {id} left the joint configuration: {m:?}"
        );
        assert_eq!(voters(&net, id), vec![3, 4, 5], "node {id}");
    }
    // The removed nodes are out: the new configuration commits without them.
    net.isolate(1);
    net.isolate(2);
    let j = net.propose(3, b"new config");
    assert!(net.node(3).committed() >= j);
}

/// Replacing the leader through a joint change: it leads through C_old,new (it is still an
/// old voter) and steps down when the leave entry applies.
#[test]
fn joint_change_removing_the_leader() {
    let mut net = Network::with_joiners(3, 5, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    net.campaign(1);
    joint_change(
        &mut net,
        1,
        &[AddVoter(4), AddVoter(5), Remove(1), Remove(2)],
    );
    let l = net.elect(100).expect("a leader of the new configuration");
    assert!([3, 4, 5].contains(&l), "leader {l}");
    assert_ne!(net.node(1).role(), Role::Leader);
    for id in [3, 4, 5] {
        assert_eq!(voters(&net, id), vec![3, 4, 5]);
        assert!(!net.node(id).membership().is_joint());
    }
}

/// One change at a time, and not before the new leader's first entry is applied.
#[test]
fn one_change_at_a_time() {
    let mut net = Network::with_joiners(3, 5, |_| {});
    net.node_mut(1).campaign();
    // Elected, but its first entry is not committed yet.
    for _ in 0..3 {
        let msgs = round(net.node_mut(1)).messages;
        for id in [2, 3] {
            let n = net.node_mut(id);
            for m in msgs.iter().filter(|m| m.to == id) {
                n.step_bytes(&m.bytes).unwrap();
            }
            let replies = round(n).messages;
            for r in replies {
                net.node_mut(1).step_bytes(&r.bytes).unwrap();
            }
        }
        if net.node(1).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(
        net.node_mut(1)
            .propose_conf_change(&[AddVoter(4)], ConfChangeMode::Auto, b""),
        Err(ConfChangeError::Pending)
    );
    net.settle();
    net.node_mut(1)
        .propose_conf_change(&[AddVoter(4)], ConfChangeMode::Auto, b"")
        .unwrap();
    assert_eq!(
        net.node_mut(1)
            .propose_conf_change(&[AddVoter(5)], ConfChangeMode::Auto, b""),
        Err(ConfChangeError::Pending)
    );
    net.settle();
    net.conf_change(1, &[AddVoter(5)]);
    assert_eq!(voters(&net, 1), vec![1, 2, 3, 4, 5]);
}

#[test]
fn refusals() {
    let mut net = Network::new(3);
    net.campaign(1);
    assert_eq!(
        net.node_mut(2)
            .propose_conf_change(&[AddVoter(4)], ConfChangeMode::Auto, b""),
        Err(ConfChangeError::NotLeader { leader: Some(1) })
    );
    let n = net.node_mut(1);
    let too_long = [0u8; tinyraft::limits::CONF_CONTEXT_BYTES_MAX + 1];
    assert_eq!(
        n.propose_conf_change(&[AddVoter(4)], ConfChangeMode::Auto, &too_long),
        Err(ConfChangeError::ContextTooLarge)
    );
    assert_eq!(
        n.propose_conf_change(&[Remove(9)], ConfChangeMode::Auto, b""),
        Err(ConfChangeError::NotMember(9))
    );
    assert_eq!(
        n.propose_conf_change(&[AddVoter(2)], ConfChangeMode::Auto, b""),
        Err(ConfChangeError::Unchanged)
    );
    // Beyond VOTERS_MAX.
    let many: Vec<ConfChange> = (4..=8).map(AddVoter).collect();
    assert_eq!(
        n.propose_conf_change(&many, ConfChangeMode::Auto, b""),
        Err(ConfChangeError::TooManyVoters)
    );
    // Nothing was appended by any refusal.
    let last = n.last_index();
    assert_eq!(n.committed(), last);
    // A transfer blocks changes; a removed node cannot be a transfer target.
    n.transfer_leader(3).unwrap();
    assert_eq!(
        n.propose_conf_change(&[AddVoter(4)], ConfChangeMode::Auto, b""),
        Err(ConfChangeError::Transferring)
    );
    net.settle();
    let l = net.leader().unwrap();
    assert_eq!(l, 3);
    net.conf_change(3, &[Remove(2)]);
    assert_eq!(
        net.node_mut(3).transfer_leader(2),
        Err(TransferError::NotVoter(2))
    );
}

/// The configuration survives a restart: from the log (replayed on apply), and from a
/// snapshot's metadata once the log was compacted.
#[test]
fn configuration_survives_restart_and_compaction() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    let l = net.elect(100).unwrap();
    net.conf_change(l, &[AddVoter(4)]);
    let f = (1..=3).find(|&i| i != l).unwrap();
    net.crash(f);
    net.restart(f);
    net.settle();
    assert_eq!(voters(&net, f), vec![1, 2, 3, 4], "replayed from the log");

    // Compact everything (snapshot at applied), restart: the snapshot carries it.
    for id in 1..=4 {
        let n = net.nodes[id - 1].as_mut().unwrap();
        let sm = &mut net.sms[id - 1];
        n.take_snapshot(&**sm).unwrap();
        assert!(n.storage().snapshot_meta().membership.is_voter(4));
    }
    net.crash(4);
    net.restart(4);
    net.settle();
    assert_eq!(
        voters(&net, 4),
        vec![1, 2, 3, 4],
        "restored from the snapshot"
    );
}

/// A node does not campaign while a committed configuration entry waits to be applied: it
/// could be campaigning in a configuration the cluster has left.
#[test]
fn no_campaign_with_an_unapplied_configuration() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    let l = net.elect(100).unwrap();
    net.conf_change(l, &[AddVoter(4)]);
    net.tick(); // tells followers the commit index in a heartbeat
    let f = (1..=3).find(|&i| i != l).unwrap();
    net.crash(f);
    net.restart(f);
    // Restarted: the committed configuration entry is in its log, not applied yet.
    let n = net.node_mut(f);
    assert!(n.committed() > n.applied());
    let before = n.stats().campaigns;
    n.campaign();
    assert_eq!(n.stats().campaigns, before, "refused to campaign");
    net.settle();
    let n = net.node_mut(f);
    n.campaign();
    assert_eq!(n.stats().campaigns, before + 1, "campaigns once applied");
}

/// A node added after the log was compacted catches up by snapshot, and learns the
/// configuration from its metadata.
#[test]
fn a_new_node_catches_up_by_snapshot() {
    let mut net = Network::with_joiners(3, 4, |c| c.compact_after = 5);
    let l = net.elect(100).unwrap();
    for i in 0..20u8 {
        net.propose(l, &[b'k', i]);
    }
    assert!(net.node(l).first_index() > 1, "compacted");
    net.conf_change(l, &[AddLearner(4)]);
    net.tick();
    assert_eq!(net.node(4).applied(), net.node(l).applied());
    assert!(net.node(4).membership().is_learner(4));
    assert_eq!(
        net.sms[3].applied_index(),
        net.sms[l as usize - 1].applied_index()
    );
}

/// A node follows a leader its configuration does not know (it is joining, or behind the
/// change that added the leader), but a voter that has a leader ignores a stranger's vote
/// request, so a removed node that never learned it was removed cannot disrupt it.
#[test]
fn strangers_are_followed_but_cannot_disrupt() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    net.campaign(1);
    let hb = heartbeat(1, 4, net.node(1).term(), 0, 0);
    net.node_mut(4).step_bytes(&hb).unwrap();
    assert_eq!(net.node(4).leader(), Some(1));
    assert_eq!(*net.node(4).membership(), Membership::EMPTY);
    let term = net.node(2).term();
    let req = vote_req(4, 2, term + 1, false, (100, 100));
    assert!(matches!(
        net.node_mut(2).step_bytes(&req),
        Err(tinyraft::Error::UnknownPeer(4))
    ));
    assert_eq!(
        net.node(2).term(),
        term,
        "a stranger's vote request changed nothing"
    );
    let hb = heartbeat(4, 2, term + 1, 0, 0);
    net.node_mut(2).step_bytes(&hb).unwrap();
    assert_eq!(net.node(2).leader(), Some(4));
}

/// A learner that hears from its leader ignores a stranger's vote request too (§4.2.3), so a
/// removed node that never learned it was removed cannot raise its term and cut it off from the
/// leader. (Regression, found by the membership simulator without pre-vote and check-quorum:
/// the learner's term jumped past its leader's, it stopped accepting its appends, and the
/// leader, needing it no more than its other voter, never heard why.) Without a leader for an
/// election timeout it answers: it may have been promoted by a change it has not applied.
#[test]
fn a_learner_with_a_leader_ignores_strangers() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    net.campaign(1);
    net.conf_change(1, &[AddLearner(4)]);
    net.tick();
    assert_eq!(net.node(4).leader(), Some(1));
    let term = net.node(4).term();
    let req = vote_req(9, 4, term + 5, false, (100, 100));
    assert!(net.node_mut(4).step_bytes(&req).is_err());
    assert_eq!(net.node(4).term(), term);
    net.isolate(4);
    net.ticks(10);
    net.node_mut(4).step_bytes(&req).unwrap();
    assert_eq!(net.node(4).term(), term + 5);
}

/// In C_old,new the old majority is needed too: with the removed voters receiving nothing past
/// the joint entry, the leave entry (acknowledged by the whole new half) does not commit.
#[test]
fn joint_configuration_needs_the_old_majority_too() {
    let mut net = Network::with_joiners(3, 5, |_| {});
    net.campaign(3);
    net.propose(3, b"x");
    let joint = net.node(3).last_index() + 1;
    net.filter = Some(Box::new(move |s, _| {
        let past_joint = matches!(s.msg().body,
            tinyraft::Body::Append { ref entries, .. } if entries.iter().any(|e| e.index > joint));
        !(matches!(s.to, 1 | 2) && past_joint)
    }));
    joint_change(
        &mut net,
        3,
        &[AddVoter(4), AddVoter(5), Remove(1), Remove(2)],
    );
    net.ticks(3);
    let m = net.node(3).membership().clone();
    assert!(m.is_joint(), "still joint: {m:?}");
    let leave = joint + 1;
    assert!(net.node(4).last_index() >= leave && net.node(5).last_index() >= leave);
    assert_eq!(
        net.node(3).committed(),
        joint,
        "the new half alone does not commit"
    );
    net.recover();
    net.tick();
    assert!(net.node(3).committed() >= leave);
    assert!(!net.node(3).membership().is_joint());
}

/// A node promoted by a configuration it has not applied yet still answers a candidate that
/// counts on its vote (otherwise a cluster that needs it could not elect anyone meanwhile).
#[test]
fn a_non_voter_answers_vote_requests() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    net.campaign(1);
    let term = net.node(4).term();
    let req = vote_req(2, 4, term + 1, false, (100, 100));
    net.node_mut(4).step_bytes(&req).unwrap();
    let sent = drain(net.node_mut(4));
    assert!(sent.iter().any(|s| s.to == 2
        && matches!(
            s.msg().body,
            tinyraft::Body::VoteResponse { granted: true, .. }
        )));
    // A voter still refuses a stranger.
    let req = vote_req(4, 2, net.node(2).term() + 1, false, (100, 100));
    assert!(net.node_mut(2).step_bytes(&req).is_err());
}

/// §4.2.2 under load: a leader that has proposed its own removal takes no more proposals, so
/// when it applies the removal a voter already holds its whole log and it hands over at once.
/// (Regressions: the heir had to match the leader's last entry while writes kept coming, so
/// under load the cluster waited for an election timeout; and an entry past the removal that
/// no voter had made the removed leader refuse its vote to all of them if it stopped leading
/// before handing over.)
#[test]
fn removed_leader_takes_no_proposals_and_hands_over_at_once() {
    let (mut net, l) = Network::guarded_three();
    net.propose(l, b"x");
    let term = net.node(l).term();
    net.node_mut(l).propose(b"in flight").unwrap();
    net.node_mut(l)
        .propose_conf_change(&[Remove(l)], ConfChangeMode::Auto, b"")
        .unwrap();
    let refused = net.node_mut(l).propose(b"after the removal");
    assert!(matches!(
        refused.map_err(|e| e.kind),
        Err(tinyraft::ProposeErrorKind::Transferring)
    ));
    net.settle();
    assert!(!net.node(l).membership().contains(l), "the removal applied");
    let heir = net.leader().expect("a successor without waiting");
    assert_ne!(heir, l);
    assert!(net.node(heir).term() > term);
    assert_ne!(net.node(l).role(), Role::Leader);
}

/// The heir may receive `TimeoutNow` after learning that the leader's removal is committed but
/// before applying it (both can arrive in one batch of datagrams); it campaigns once it has
/// applied it. (Regression: it ignored the `TimeoutNow`, as it must not campaign with a
/// configuration entry unapplied, and the cluster waited for an election timeout.)
#[test]
fn heir_campaigns_once_it_has_applied_the_removal() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let (mut net, l) = Network::guarded_three();
    net.propose(l, b"x");
    let removal = net.node(l).last_index() + 1;
    // Hold back what tells the followers the removal is committed, and the TimeoutNow.
    let held: Rc<RefCell<Vec<Sent>>> = Rc::default();
    let hold = held.clone();
    net.filter = Some(Box::new(move |s, from| {
        let tells = match s.msg().body {
            tinyraft::Body::Append { commit, .. } | tinyraft::Body::Heartbeat { commit, .. } => {
                commit >= removal
            }
            tinyraft::Body::TimeoutNow => true,
            _ => false,
        };
        if from == l && tells {
            hold.borrow_mut().push(s.clone());
            return false;
        }
        true
    }));
    net.conf_change(l, &[Remove(l)]);
    assert!(net.node(l).transfer_target().is_some(), "handing over");
    let held = held.take();
    assert!(held
        .iter()
        .any(|s| matches!(s.msg().body, tinyraft::Body::TimeoutNow)));
    assert_eq!(net.leader(), Some(l));
    // Both arrive before the follower's next ready round: it learns the commit, then is told
    // to campaign, with the removal not applied yet.
    net.filter = None;
    for s in &held {
        let _ = net.node_mut(s.to).step_bytes(&s.bytes);
    }
    net.settle();
    let heir = net
        .leader()
        .expect("the heir campaigned once it applied the removal");
    assert_ne!(heir, l);
    net.tick();
    assert_ne!(net.node(l).role(), Role::Leader, "told it was replaced");
}

/// Cuts node 3 off, then replaces voters 1 and 2 by 4 and 5, and stops 1 and 2: the cluster
/// is {3, 4, 5} while node 3 still has {1, 2, 3}. Returns the leader (4 or 5).
fn leave_node_3_behind(net: &mut Network) -> NodeId {
    net.campaign(1);
    net.isolate(3);
    net.conf_change(1, &[AddVoter(4)]);
    net.conf_change(1, &[AddVoter(5)]);
    net.conf_change(1, &[Remove(2)]);
    net.conf_change(1, &[Remove(1)]);
    net.crash(1);
    net.crash(2);
    let l = net.elect(100).expect("a leader of {3, 4, 5}");
    assert!([4, 5].contains(&l), "leader {l}");
    assert_eq!(voters(net, l), vec![3, 4, 5]);
    assert_eq!(voters(net, 3), vec![1, 2, 3], "node 3 is behind");
    l
}

/// A member whose configuration is behind follows a leader it does not know yet: that is how
/// it catches up. (Regression, found by the membership simulator: it refused the leader as a
/// stranger, and so could never learn the configuration that made the leader a member.)
#[test]
fn a_member_behind_follows_a_leader_it_does_not_know_yet() {
    let mut net = Network::with_joiners(3, 5, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    let l = leave_node_3_behind(&mut net);
    net.recover();
    net.ticks(3);
    assert_eq!(voters(&net, 3), vec![3, 4, 5]);
    assert_eq!(net.node(3).applied(), net.node(l).applied());
}

/// A voter that is behind and has no leader answers a candidate it does not know yet: the
/// candidate's configuration may need its vote. (Regression, found by the membership
/// simulator: with the leader of {3, 4, 5} down, node 4 or 5 needs node 3's vote, which node 3,
/// still on {1, 2, 3}, refused to a stranger, while its own candidacy in {1, 2, 3} was refused
/// by nodes whose logs are ahead: no leader, ever.)
#[test]
fn a_voter_behind_votes_for_a_candidate_it_does_not_know_yet() {
    let mut net = Network::with_joiners(3, 5, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    let l = leave_node_3_behind(&mut net);
    let other = if l == 4 { 5 } else { 4 };
    net.crash(l);
    net.recover();
    let l2 = net.elect(200).expect("a leader, with node 3's vote");
    assert_eq!(l2, other);
    net.tick();
    assert_eq!(voters(&net, 3), vec![3, 4, 5]);
}

/// §4.2.2 with the heir forgetting: the only voter is replaced through a joint configuration.
/// The new node acknowledges the joint entry and the entry leaving it, which commits the old
/// leader's removal, but crashes before it has made a commit index durable: restarted, it does
/// not count itself a voter, and the old leader, removed, does not campaign. So the removed
/// leader keeps leading, telling it the commit index, until it takes over. (Regression, found
/// by the membership simulator: it stepped down at once and the cluster never had a leader
/// again.)
#[test]
fn a_removed_leader_leads_on_until_its_heir_takes_over() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut net = Network::with_joiners(1, 2, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    net.campaign(1);
    net.propose(1, b"x");
    let joint = net.node(1).last_index() + 1;
    // Node 2 runs one ready round per batch of messages from node 1, by hand.
    let held: Rc<RefCell<Vec<Sent>>> = Rc::default();
    let hold = held.clone();
    net.filter = Some(Box::new(move |s, from| {
        if from == 1 && s.to == 2 {
            hold.borrow_mut().push(s.clone());
            return false;
        }
        true
    }));
    net.node_mut(1)
        .propose_conf_change(&[AddVoter(2), Remove(1)], ConfChangeMode::Auto, b"")
        .unwrap();
    net.settle();
    for _ in 0..10 {
        for m in held.take() {
            let _ = net.node_mut(2).step_bytes(&m.bytes);
        }
        let replies = round(net.node_mut(2)).messages;
        if net.node(2).last_index() == net.node(1).last_index() {
            // Node 2 has everything and acknowledges it, then crashes before its next round.
            net.crash(2);
            net.deliver(2, replies);
            break;
        }
        net.deliver(2, replies);
    }
    let m1 = net.node(1).membership().clone();
    assert!(!m1.is_joint() && m1.voters.as_slice() == [2], "{m1:?}");
    // What node 1 sent it meanwhile is lost.
    held.take();
    net.filter = None;
    net.restart(2);
    assert!(
        net.node(2).committed() < joint,
        "the commit index was not durable yet"
    );
    assert!(
        !net.node(2).membership().is_voter(2),
        "node 2 does not know it votes"
    );
    let l = (0..100)
        .find_map(|_| {
            net.tick();
            net.leader().filter(|&l| l == 2)
        })
        .expect("node 2 takes over");
    assert_eq!(voters(&net, l), vec![2]);
    assert_ne!(net.node(1).role(), Role::Leader);
}

/// A removed leader that stops leading before handing over (here it crashes) leaves a log no
/// longer than its heir's, so the heir wins with its vote. (Regression, found by the
/// membership simulator: the removed leader had taken a proposal past its removal that the
/// remaining voter never got, and, restarted, refused that voter its vote for good.)
#[test]
fn a_removed_leader_that_crashes_before_handing_over_leaves_no_entry_the_heir_lacks() {
    let mut net = Network::with_config(2, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    net.campaign(1);
    net.propose(1, b"x");
    net.node_mut(1)
        .propose_conf_change(&[Remove(1)], ConfChangeMode::Auto, b"")
        .unwrap();
    // Node 2 gets the removal and acknowledges it; that commits it on node 1, which is asked
    // for one more proposal before its next round applies the removal; then it crashes.
    for m in round(net.node_mut(1)).messages {
        net.node_mut(2).step_bytes(&m.bytes).unwrap();
    }
    for m in round(net.node_mut(2)).messages {
        net.node_mut(1).step_bytes(&m.bytes).unwrap();
    }
    let _ = net.node_mut(1).propose(b"past the removal");
    let _lost = round(net.node_mut(1)).messages;
    assert_eq!(
        voters(&net, 1),
        vec![2],
        "the removal committed and applied"
    );
    net.crash(1);
    net.restart(1);
    let l = (0..100)
        .find_map(|_| {
            net.tick();
            net.leader()
        })
        .expect("node 2 takes over");
    assert_eq!(l, 2);
    assert_eq!(voters(&net, 2), vec![2]);
}

/// A node never applies a configuration entry that a restart could take back: the commit
/// index covering it is synced first. (A commit index alone is written without a sync, so a
/// crash may lose it. Regression, found by the membership simulator: a new sole voter that
/// crashed fell back, on restart, to the configuration before it was added, in which it does
/// not vote, while the old voter had left: nobody could ever campaign.)
#[test]
fn a_restart_never_takes_back_an_applied_configuration() {
    use tinyraft::fault::{FaultRng, FaultyStorage};
    type Disk = FaultyStorage<TestStorage>;
    type FaultyNode = tinyraft::RawNode<Disk, { 32 * 1024 }, { 32 * 1024 }>;
    /// A crash that keeps nothing that was not synced.
    struct LoseUnsynced;
    impl FaultRng for LoseUnsynced {
        fn next_u64(&mut self) -> u64 {
            999_999
        }
    }
    fn drain(n: &mut FaultyNode) {
        while n.has_ready() {
            let rd = n.ready();
            let p = n.persist(rd).unwrap();
            n.committed_entries(&p, &mut |_| {}).unwrap();
            n.advance(p);
        }
    }
    let mut n = FaultyNode::new(config(1, &[1]), Disk::new(TestStorage::new())).unwrap();
    n.campaign();
    drain(&mut n);
    assert_eq!(n.role(), Role::Leader);
    n.propose_conf_change(&[AddLearner(2)], ConfChangeMode::Auto, b"")
        .unwrap();
    drain(&mut n);
    assert!(n.membership().is_learner(2));
    let mut disk = std::mem::replace(n.storage_mut(), Disk::new(TestStorage::new()));
    drop(n);
    disk.crash(&mut LoseUnsynced).unwrap();
    let mut n = FaultyNode::new(config(1, &[1]), disk).unwrap();
    drain(&mut n);
    assert!(
        n.membership().is_learner(2),
        "restarted with {:?}",
        n.membership()
    );
}

/// Without pre-vote and check-quorum a follower ignores a stale leader's heartbeats (an
/// election's vote requests tell it the new term), but a removed leader gets no vote request
/// from an heir that no longer counts it. Nodes answer it with their term instead, so it stops
/// leading (and stops answering clients that it is busy handing over).
#[test]
fn a_removed_leader_learns_it_was_replaced_without_pre_vote_or_check_quorum() {
    let mut net = Network::new(3);
    let l = net.elect(100).unwrap();
    net.propose(l, b"x");
    net.conf_change(l, &[Remove(l)]);
    let heir = net.elect(100).expect("a successor");
    net.ticks(3);
    assert_ne!(net.node(l).role(), Role::Leader, "node {heir} leads");
    assert!(net.node(l).term() >= net.node(heir).term());
}

/// Configurations take effect when applied, so a candidate may campaign in a configuration the
/// cluster has left. A node refuses its vote to one two or more changes behind its own (here
/// before the joint configuration that removed node 3; node 3, removed, and node 1 both
/// refuse), and grants one at most one change behind (the joint one: it needs the new
/// majority too) or ahead. (Regression, found by the membership simulator: a node restarted
/// knowing nothing past the configuration before a joint change won an election with the
/// vote of a node that the change had removed, and lacked entries the new configuration had
/// committed.)
#[test]
fn no_vote_for_a_candidate_two_configurations_behind() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    net.campaign(1);
    let joint = net.node(1).last_index() + 1;
    net.conf_change(1, &[AddVoter(4), Remove(3)]);
    let leave = joint + 1;
    assert_eq!(voters(&net, 3), vec![1, 2, 4], "node 3 applied its removal");
    assert!(!net.node(1).membership().is_joint());
    let last = (net.node(1).last_index() + 1, net.node(1).term());
    for voter in [3, 1] {
        let term = net.node(voter).term() + 1;
        for (config_index, expected) in [(0, false), (joint, true), (leave, true)] {
            let req = vote_req_in(2, voter, term, true, last, config_index);
            net.node_mut(voter).step_bytes(&req).unwrap();
            let granted = drain(net.node_mut(voter)).iter().any(|s| {
                s.to == 2
                    && matches!(
                        s.msg().body,
                        tinyraft::Body::VoteResponse { granted: true, .. }
                    )
            });
            assert_eq!(
                granted, expected,
                "node {voter}, candidate configuration at {config_index}"
            );
        }
    }
}

/// Only leaders tell commit indexes, and configurations take effect when applied, so a node
/// that never learned that a change committed may campaign for ever in a configuration that
/// needs a vote it will not get (found by the membership simulator: the new sole voter of a
/// joint replacement, restarted in the joint configuration, needed the removed node's vote,
/// which that node refused since its log was longer; and the removed node cannot campaign).
/// A node refusing a candidate whose configuration is older than its own tells it how far the
/// log is committed (`Committed`), and a node adopts that when its entry there has the same
/// term, whatever the message's term.
#[test]
fn a_candidate_behind_learns_the_commit_index_from_a_refusal() {
    let mut net = Network::with_joiners(3, 4, |_| {});
    net.campaign(1);
    net.conf_change(1, &[AddVoter(4), Remove(3)]);
    let (committed, term) = (net.node(1).committed(), net.node(1).term());
    // A candidate with the initial configuration and a shorter log: refused, and told.
    let req = vote_req_in(2, 1, term + 1, true, (1, 1), 0);
    net.node_mut(1).step_bytes(&req).unwrap();
    let sent = drain(net.node_mut(1));
    assert!(sent.iter().any(|s| s.to == 2
        && s.msg().body
            == tinyraft::Body::Committed {
                index: committed,
                term
            }));
    // A node whose entry there matches adopts the commit index; one whose does not, ignores it.
    let mut follower = node(8, &[9, 8]);
    follower
        .step_bytes(&append_msg(9, 8, 2, (0, 0), 0, &[(1, 2), (2, 2)]))
        .unwrap();
    round(&mut follower);
    assert_eq!(follower.committed(), 0);
    let wrong = encode(&msg(
        7,
        8,
        0,
        tinyraft::Body::Committed { index: 2, term: 3 },
    ));
    follower.step_bytes(&wrong).unwrap();
    assert_eq!(follower.committed(), 0, "a different entry there");
    let right = encode(&msg(
        7,
        8,
        0,
        tinyraft::Body::Committed { index: 2, term: 2 },
    ));
    follower.step_bytes(&right).unwrap();
    assert_eq!(follower.committed(), 2);
}
