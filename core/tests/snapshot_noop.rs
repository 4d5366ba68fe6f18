//! Snapshot regressions found by the deterministic simulator (tests/src/sim).

mod harness;
use harness::*;

use tinyraft::kv::{ArenaMap, Command, KvStore, Request};
use tinyraft::{Role, SnapshotError, SnapshotMeta, StateMachine, Storage};

type Kv = KvStore<ArenaMap<64, 4096>, 8>;

fn restore(meta: &SnapshotMeta, bytes: &[u8]) -> Result<Kv, SnapshotError> {
    let mut kv = Kv::new(ArenaMap::new());
    kv.restore_begin()?;
    for piece in bytes.chunks(7) {
        kv.restore_chunk(piece)?;
    }
    kv.restore_end(meta)?;
    Ok(kv)
}

/// Runs ready rounds until there is nothing left, applying all but no-ops to `kv` (as the
/// runtime and `Node` do).
fn drive(n: &mut TestNode, kv: &mut Kv) {
    for _ in 0..20 {
        if !n.has_ready() {
            return;
        }
        let rd = n.ready();
        let p = n.persist(rd).unwrap();
        n.committed_entries(&p, &mut |e| {
            if !e.is_noop() {
                kv.apply(&e);
            }
        })
        .unwrap();
        n.advance(p);
    }
}

/// The state machine never sees no-op entries (`StateMachine::apply` is only given
/// application entries), so when the last applied entry is a new leader's no-op, the
/// snapshot `RawNode::take_snapshot` writes carries the store's own last index, one below the
/// snapshot's index. Restoring it must work.
///
/// Found by the simulator: every 2C scenario, e.g. one_snapshot_2c seed 0 ("restoring a
/// snapshot failed: invalid snapshot: snapshot taken at another index than its metadata").
/// The node runtime skips no-ops the same way, so a node receiving such a snapshot stopped
/// with a snapshot error.
#[test]
fn a_snapshot_taken_right_after_a_noop_restores() {
    let mut cfg = config(1, &[1]);
    cfg.compact_after = 1;
    let mut n = node_with(cfg, TestStorage::new());
    let mut kv = Kv::new(ArenaMap::new());
    let mut data = [0u8; 64];
    let put = Request {
        client_id: 7,
        seq: 1,
        command: Command::Put {
            key: b"k",
            value: b"v",
        },
    };
    let len = put.encode(&mut data).unwrap();
    n.campaign();
    drive(&mut n, &mut kv);
    n.propose(&data[..len]).unwrap();
    drive(&mut n, &mut kv);
    assert_eq!(kv.applied_index(), 2, "the put is entry 2, after the no-op");
    // Restart (a fresh state machine replays the log) and lead again: the new term's no-op
    // is applied last.
    let storage = std::mem::replace(n.storage_mut(), TestStorage::new());
    let mut cfg = config(1, &[1]);
    cfg.compact_after = 1;
    let mut n = node_with(cfg, storage);
    let mut kv = Kv::new(ArenaMap::new());
    n.campaign();
    drive(&mut n, &mut kv);
    assert_eq!(n.role(), Role::Leader);
    assert!(n.applied() > kv.applied_index(), "a no-op was applied last");
    assert!(n.wants_snapshot());
    n.take_snapshot(&kv).unwrap();
    let meta = n.storage().snapshot_meta();
    assert_eq!(meta.index, n.applied());
    let mut bytes = vec![0u8; n.storage().snapshot_len() as usize];
    let read = n.storage().read_snapshot(0, &mut bytes).unwrap();
    assert_eq!(read, bytes.len());
    let restored = restore(&meta, &bytes).expect("a snapshot taken after a no-op restores");
    assert_eq!(restored.get(b"k"), Some(&b"v"[..]));
    assert_eq!(restored.applied_index(), meta.index);
    // A snapshot claiming an *earlier* index than the state it holds is still refused.
    let behind = SnapshotMeta {
        index: 1,
        ..meta.clone()
    };
    assert!(restore(&behind, &bytes).is_err());
}
