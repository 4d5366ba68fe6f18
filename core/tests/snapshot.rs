//! Log compaction and snapshots (Raft paper §7; TinyKV's 2C raft-level tests): the policy
//! bounds the log, a lagging follower catches up from chunked snapshot messages, stale
//! snapshots are ignored, and a restarted node rebuilds its state from its snapshot.

mod harness;
use harness::*;

use tinyraft::kv::{ArenaMap, Command, KvMap, Request};
use tinyraft::{Body, Membership, Role, SnapshotMeta, StateMachine, Storage};

fn put(client: u64, seq: u64, key: &str, value: &str) -> Vec<u8> {
    let req = Request {
        client_id: client,
        seq,
        command: Command::Put {
            key: key.as_bytes(),
            value: value.as_bytes(),
        },
    };
    let mut buf = vec![0u8; 4096];
    let n = req.encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Every pair of node `id`'s state machine, in key order.
fn contents(net: &Network, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    net.sms[id as usize - 1]
        .map()
        .iter_from(&[])
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn compacting(n: u64, limit: u64, chunk: usize) -> Network {
    Network::with_config(n, |c| {
        c.compact_after = limit;
        c.snapshot_chunk_bytes = chunk;
    })
}

/// §7 / TinyKV's log GC: with a compaction limit, every node's log stays within twice the limit
/// however much is written, and every state machine ends the same.
#[test]
fn compaction_keeps_every_log_bounded() {
    let limit = 10;
    let mut net = compacting(3, limit, 4096);
    let l = net.elect(100).unwrap();
    for i in 0..300u64 {
        net.propose(l, &put(7, i + 1, &format!("k{}", i % 13), &format!("v{i}")));
        for id in net.ids() {
            let n = net.node(id);
            assert!(
                n.applied() - (n.first_index() - 1) <= 2 * limit,
                "node {id}: applied {} first {}",
                n.applied(),
                n.first_index()
            );
        }
    }
    net.ticks(3);
    assert!(net.node(l).first_index() > 250, "the leader compacted");
    let want = contents(&net, l);
    assert_eq!(want.len(), 13);
    for id in net.ids() {
        assert_eq!(contents(&net, id), want, "node {id}");
    }
}

/// §7 (TinyKV ProvideSnap, SlowNodeRestore): a follower that missed entries the leader has
/// compacted away is sent the snapshot, installs it, and then follows the log again.
#[test]
fn lagging_follower_catches_up_by_snapshot() {
    let mut net = compacting(3, 10, 4096);
    let l = net.elect(100).unwrap();
    let lagging = net.ids().into_iter().find(|&i| i != l).unwrap();
    net.propose(l, &put(1, 1, "a", "0"));
    net.isolate(lagging);
    for i in 2..=100u64 {
        net.propose(l, &put(1, i, &format!("k{}", i % 7), &format!("v{i}")));
    }
    let behind = net.node(lagging).last_index();
    assert!(
        net.node(l).first_index() > behind + 1,
        "leader compacted past the follower"
    );
    net.recover();
    net.ticks(5);
    let f = net.node(lagging);
    assert!(f.first_index() > 1, "the follower installed a snapshot");
    assert_eq!(f.committed(), net.node(l).committed());
    assert_eq!(contents(&net, lagging), contents(&net, l));
    // And it follows the log normally afterwards.
    net.propose(l, &put(1, 101, "after", "x"));
    net.ticks(2);
    assert_eq!(contents(&net, lagging), contents(&net, l));
}

/// Chunked transfer under loss (PartC: "resumption or restart after loss"): with tiny chunks
/// and a third of all messages dropped, while the leader keeps writing and compacting (so the
/// snapshot being sent is replaced mid-transfer), the follower still converges.
#[test]
fn chunked_snapshot_survives_loss_and_a_moving_snapshot() {
    let mut net = compacting(3, 8, 64);
    let l = net.elect(100).unwrap();
    let lagging = net.ids().into_iter().find(|&i| i != l).unwrap();
    net.isolate(lagging);
    for i in 1..=60u64 {
        net.propose(
            l,
            &put(2, i, &format!("key-{i:03}"), "some value of moderate size"),
        );
    }
    net.recover();
    net.set_drop_rate(0.3);
    let mut seq = 61;
    for round in 0..400 {
        if round % 10 == 0 && net.node(l).role() == Role::Leader {
            let _ = net
                .node_mut(l)
                .propose(&put(2, seq, "moving", &seq.to_string()));
            seq += 1;
        }
        net.tick();
    }
    net.recover();
    net.ticks(30);
    let leader = net.leader().unwrap();
    assert!(
        net.node(lagging).first_index() > 1,
        "caught up through a snapshot"
    );
    assert_eq!(contents(&net, lagging), contents(&net, leader));
}

/// §7 (TinyKV RestoreIgnoreSnapshot): a snapshot no newer than what the follower has committed
/// is not installed; the follower says how far it is instead.
#[test]
fn stale_snapshot_is_ignored() {
    let mut net = Network::new(3);
    let l = net.elect(100).unwrap();
    for i in 1..=5u64 {
        net.propose(l, &put(3, i, "k", &i.to_string()));
    }
    let f = net.ids().into_iter().find(|&i| i != l).unwrap();
    let committed = net.node(f).committed();
    let first = net.node(f).first_index();
    let term = net.node(f).term();
    let meta = SnapshotMeta {
        index: committed - 1,
        term,
        membership: net.membership(),
    };
    let m = msg(
        l,
        f,
        term,
        Body::Snapshot {
            meta,
            total_len: 3,
            offset: 0,
            data: b"abc",
        },
    );
    net.node_mut(f).step_bytes(&encode(&m)).unwrap();
    let out = round(net.node_mut(f));
    assert_eq!(net.node(f).first_index(), first, "nothing installed");
    let answers: Vec<_> = out.messages.iter().map(|s| s.msg().body).collect();
    assert!(
        answers.iter().any(|b| matches!(b, Body::AppendResponse { success: true, index, .. } if *index == committed)),
        "{answers:?}"
    );
}

/// §7 (TinyKV RestoreFromSnapMsg): a follower with an older, conflicting log receives a
/// snapshot in several chunks, installs it (discarding its log) and restores its state machine
/// from it; chunks out of order are answered with the offset it expects.
#[test]
fn snapshot_message_replaces_a_conflicting_log() {
    // The snapshot: a store that applied three puts, written out as the leader would.
    let mut source = TestKv::new(ArenaMap::new());
    for (i, (k, v)) in [("x", "1"), ("y", "2"), ("z", "3")].iter().enumerate() {
        let e = put(9, i as u64 + 1, k, v);
        source.apply_entry(i as u64 + 1, &e);
    }
    // Move its applied index to 11, the snapshot's index.
    source.apply_entry(11, &put(9, 4, "x", "4"));
    let mut data = Vec::new();
    source
        .write_snapshot(&mut |piece| {
            data.extend_from_slice(piece);
            Ok(())
        })
        .unwrap();
    let members = Membership::from_voters(&[1, 2, 3]).unwrap();
    let meta = SnapshotMeta {
        index: 11,
        term: 11,
        membership: members,
    };

    // Node 2 has a log of term 1 that the snapshot's term-11 history replaced.
    let mut st = storage_with(&[1, 1, 1], Default::default());
    st.set_hard_state(&tinyraft::HardState {
        term: 11,
        vote: None,
        commit: 0,
    })
    .unwrap();
    let mut n = node_with(config(2, &[1, 2, 3]), st);
    let mut sm = TestKv::new(ArenaMap::new());
    let total = data.len() as u64;
    let mid = data.len() / 2;
    let chunk = |offset: usize, end: usize| {
        encode(&msg(
            1,
            2,
            11,
            Body::Snapshot {
                meta: meta.clone(),
                total_len: total,
                offset: offset as u64,
                data: &data[offset..end],
            },
        ))
    };
    n.step_bytes(&chunk(0, mid)).unwrap();
    // A chunk from the wrong offset: refused with where to continue.
    n.step_bytes(&chunk(mid + 1, data.len())).unwrap();
    let out = round_sm(&mut n, &mut sm);
    let offsets: Vec<(u64, bool)> = out
        .messages
        .iter()
        .filter_map(|s| match s.msg().body {
            Body::SnapshotResponse {
                next_offset, done, ..
            } => Some((next_offset, done)),
            _ => None,
        })
        .collect();
    assert_eq!(offsets, vec![(mid as u64, false), (mid as u64, false)]);
    n.step_bytes(&chunk(mid, data.len())).unwrap();
    let out = round_sm(&mut n, &mut sm);
    assert!(out
        .messages
        .iter()
        .any(|s| matches!(s.msg().body, Body::SnapshotResponse { done: true, .. })));
    assert_eq!(
        (n.first_index(), n.last_index(), n.committed(), n.applied()),
        (12, 11, 11, 11)
    );
    assert_eq!(n.term_at(11), Some(11));
    assert_eq!(sm.get(b"x"), Some(&b"4"[..]));
    assert_eq!(sm.get(b"z"), Some(&b"3"[..]));
    assert_eq!(sm.applied_index(), 11);
    assert_eq!(n.storage().snapshot_meta(), meta);
}

/// §7 (TinyKV RawNodeRestartFromSnapshot): a node that crashes after compacting restarts from
/// its snapshot plus the rest of its log and ends with the same state as the others.
#[test]
fn restarted_node_rebuilds_its_state_from_snapshot_and_log() {
    let mut net = compacting(3, 10, 4096);
    let l = net.elect(100).unwrap();
    for i in 1..=57u64 {
        net.propose(l, &put(4, i, &format!("k{}", i % 9), &format!("v{i}")));
    }
    let f = net.ids().into_iter().find(|&i| i != l).unwrap();
    assert!(net.node(f).first_index() > 1, "the follower compacted too");
    let before = contents(&net, f);
    net.crash(f);
    net.restart(f);
    net.ticks(3);
    assert_eq!(contents(&net, f), before);
    assert_eq!(contents(&net, f), contents(&net, l));
    assert_eq!(
        net.sms[f as usize - 1].applied_index(),
        net.node(f).applied()
    );
}

/// A follower cut off before it received a single entry (its `next` is still 1) is caught up by
/// snapshot too: index 0 is compacted like any other once the leader has a snapshot.
#[test]
fn follower_that_never_received_an_entry_catches_up_by_snapshot() {
    let mut net = compacting(3, 10, 4096);
    net.isolate(3);
    net.campaign(1);
    assert_eq!(net.leader(), Some(1));
    for i in 1..=40u64 {
        net.propose(1, &put(5, i, &format!("k{}", i % 4), "v"));
    }
    assert_eq!(net.node(3).last_index(), 0);
    assert!(net.node(1).first_index() > 1);
    net.recover();
    net.ticks(5);
    assert!(net.node(3).first_index() > 1, "installed a snapshot");
    assert_eq!(contents(&net, 3), contents(&net, 1));
}

/// A follower whose storage was wiped (a deleted data directory) restarts empty; the leader
/// notices from its heartbeat answer that it has less than it once acknowledged, and catches it
/// up again — here by snapshot, as the log it needs is compacted.
#[test]
fn wiped_follower_rejoins_by_snapshot() {
    let mut net = compacting(3, 10, 4096);
    let l = net.elect(100).unwrap();
    for i in 1..=40u64 {
        net.propose(l, &put(6, i, &format!("k{}", i % 5), &format!("v{i}")));
    }
    let f = net.ids().into_iter().find(|&i| i != l).unwrap();
    assert!(net.node(f).applied() >= 40);
    net.crash(f);
    net.stopped[f as usize - 1] = Some(TestStorage::new());
    net.restart(f);
    net.ticks(6);
    assert_eq!(net.node(f).committed(), net.node(l).committed());
    assert_eq!(contents(&net, f), contents(&net, l));
}
