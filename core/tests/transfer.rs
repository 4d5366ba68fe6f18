//! Leadership transfer (Raft dissertation §3.10; TinyKV's 3A transfer tests).

mod harness;
use harness::*;

use tinyraft::{ProposeErrorKind, Role, TransferError};

fn others(net: &Network, l: u64) -> Vec<u64> {
    net.ids().into_iter().filter(|&i| i != l).collect()
}

/// §3.10: an up-to-date target is told to campaign at once and wins, in a later term, even
/// though every follower is within its leader lease (check-quorum) — a transfer vote ignores
/// leases.
#[test]
fn transfer_to_an_up_to_date_follower() {
    let (mut net, l) = Network::guarded_three();
    net.propose(l, b"x");
    let target = others(&net, l)[0];
    let term = net.node(l).term();
    net.node_mut(l).transfer_leader(target).unwrap();
    net.settle();
    assert_eq!(net.leader(), Some(target));
    assert_eq!(net.node(l).role(), Role::Follower);
    assert!(net.node(target).term() > term);
    assert_eq!(net.node(l).transfer_target(), None);
}

/// §3.10: a lagging target is first brought up to date, then takes over; nothing committed is
/// lost on the way.
#[test]
fn transfer_to_a_lagging_follower_catches_it_up_first() {
    let (mut net, l) = Network::guarded_three();
    let target = others(&net, l)[0];
    net.isolate(target);
    for i in 0..20u8 {
        net.propose(l, &[i]);
    }
    let committed = net.node(l).committed();
    net.recover();
    net.node_mut(l).transfer_leader(target).unwrap();
    // The leader was waiting on a probe to the cut-off node; the next heartbeat round resumes
    // replication, and the handover follows within the election timeout.
    for _ in 0..net.configs[0].election_ticks {
        if net.leader() == Some(target) {
            break;
        }
        net.tick();
    }
    assert_eq!(net.leader(), Some(target));
    assert!(net.node(target).committed() >= committed);
    assert_eq!(
        log_of(net.node(target))[..committed as usize],
        log_of(net.node(l))[..committed as usize]
    );
}

/// Transferring to itself does nothing; to a node outside the configuration is refused; a
/// follower cannot transfer.
#[test]
fn transfer_to_self_non_member_or_from_a_follower() {
    let (mut net, l) = Network::guarded_three();
    net.node_mut(l).transfer_leader(l).unwrap();
    assert_eq!(net.node(l).transfer_target(), None);
    assert_eq!(
        net.node_mut(l).transfer_leader(9),
        Err(TransferError::NotVoter(9))
    );
    let f = others(&net, l)[0];
    assert_eq!(
        net.node_mut(f).transfer_leader(l),
        Err(TransferError::NotLeader { leader: Some(l) })
    );
    net.settle();
    assert_eq!(net.leader(), Some(l));
    net.propose(l, b"still leading");
}

/// §3.10: while a transfer is under way proposals are refused (data handed back); a target
/// that cannot take over (cut off) makes the leader abandon the transfer after an election
/// timeout and accept proposals again.
#[test]
fn unreachable_target_times_out_and_proposals_resume() {
    let (mut net, l) = Network::guarded_three();
    let target = others(&net, l)[0];
    net.isolate(target);
    net.node_mut(l).transfer_leader(target).unwrap();
    let data = b"held".to_vec();
    let err = net.node_mut(l).propose(&data).unwrap_err();
    assert_eq!(err.kind, ProposeErrorKind::Transferring);
    assert!(std::ptr::eq(err.data, &data[..]));
    let timeout = net.configs[l as usize - 1].election_ticks as usize;
    for _ in 0..timeout - 1 {
        net.tick();
        assert_eq!(
            net.node(l).transfer_target(),
            Some(target),
            "abandoned too early"
        );
    }
    net.tick();
    assert_eq!(
        net.node(l).transfer_target(),
        None,
        "abandoned after an election timeout"
    );
    assert_eq!(net.leader(), Some(l));
    net.propose(l, b"accepted again");
}

/// A second request for the same target changes nothing; one for another target redirects the
/// transfer to it.
#[test]
fn second_transfer_request() {
    let (mut net, l) = Network::guarded_three();
    let o = others(&net, l);
    net.isolate(o[0]);
    net.node_mut(l).transfer_leader(o[0]).unwrap();
    net.ticks(3);
    net.node_mut(l).transfer_leader(o[0]).unwrap();
    assert_eq!(net.node(l).transfer_target(), Some(o[0]));
    net.recover();
    net.isolate(o[0]);
    net.node_mut(l).transfer_leader(o[1]).unwrap();
    net.settle();
    assert_eq!(net.leader(), Some(o[1]));
}

/// §6.4.1: a leader handing over may not serve lease reads: the target can win at once.
#[test]
fn no_lease_reads_during_a_transfer() {
    let mut net = Network::with_config(3, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
        c.lease_reads = true;
    });
    // With lease reads, fresh nodes refuse votes for one election timeout; elect by ticking.
    let l = net.elect(200).expect("leader");
    net.ticks(5);
    let target = others(&net, l)[0];
    net.isolate(target);
    net.node_mut(l).read_index(1).unwrap();
    let first = round(net.node_mut(l));
    assert_eq!(
        first.reads.len(),
        1,
        "lease read answered at once before the transfer"
    );
    net.node_mut(l).transfer_leader(target).unwrap();
    net.node_mut(l).read_index(2).unwrap();
    let r = round(net.node_mut(l));
    assert!(r.reads.is_empty(), "lease read answered during a transfer");
}
