//! Quick end-to-end checks of the harness and the protocol: a cluster elects one leader and
//! replicates proposals to every node.

mod harness;
use harness::*;
use tinyraft::Role;

#[test]
fn three_nodes_elect_and_replicate() {
    let mut net = Network::new(3);
    let l = net.elect(100).expect("a leader");
    for i in 0..20u8 {
        net.propose(l, &[i; 10]);
    }
    net.ticks(3);
    let last = net.node(l).last_index();
    assert_eq!(last, 21, "no-op + 20 proposals");
    for id in net.ids() {
        let n = net.node(id);
        assert_eq!(n.committed(), last, "node {id} committed");
        assert_eq!(log_of(n), log_of(net.node(l)));
    }
    let leaders = net
        .ids()
        .iter()
        .filter(|&&i| net.node(i).role() == Role::Leader)
        .count();
    assert_eq!(leaders, 1);
}

#[test]
fn five_nodes_with_prevote_and_check_quorum_survive_leader_isolation() {
    let mut net = Network::with_config(5, |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    let l1 = net.elect(100).expect("a leader");
    net.propose(l1, b"a");
    net.isolate(l1);
    net.ticks(40);
    let l2 = net
        .ids()
        .into_iter()
        .filter(|&i| i != l1 && net.node(i).role() == Role::Leader)
        .max_by_key(|&i| net.node(i).term())
        .expect("new leader");
    assert_ne!(l1, l2);
    assert_ne!(
        net.node(l1).role(),
        Role::Leader,
        "check-quorum stepped the old leader down"
    );
    net.propose(l2, b"b");
    net.recover();
    net.ticks(20);
    let c = net.node(l2).committed();
    for id in net.ids() {
        assert_eq!(net.node(id).committed(), c);
    }
}
