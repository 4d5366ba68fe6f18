//! The KV store's snapshot stream: written and restored in pieces of any size, on both maps,
//! with client sessions; a damaged stream is refused, never half-restored silently.

use tinyraft::kv::{ArenaMap, Command, KvError, KvMap, KvStore, Request, Response};
use tinyraft::{Membership, SnapshotError, SnapshotMeta, StateMachine};

fn req(client: u64, seq: u64, command: Command<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = Request {
        client_id: client,
        seq,
        command,
    }
    .encode(&mut buf)
    .unwrap();
    buf.truncate(n);
    buf
}

fn fill<M: KvMap>(s: &mut KvStore<M, 8>) -> u64 {
    let mut index = 0;
    for i in 0..200u64 {
        index += 1;
        let key = format!("key{:04}", i * 7 % 150);
        let value = "v".repeat((i % 40) as usize);
        let put = Command::Put {
            key: key.as_bytes(),
            value: value.as_bytes(),
        };
        s.apply_entry(index, &req(1 + i % 5, 1 + i / 5, put));
    }
    index += 1;
    s.apply_entry(index, &req(99, 1, Command::Delete { key: b"key0007" }));
    index
}

fn dump<M: StateMachine>(s: &M) -> Vec<u8> {
    let mut out = Vec::new();
    s.write_snapshot(&mut |p| {
        out.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    out
}

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term: 1,
        membership: Membership::from_voters(&[1]).unwrap(),
    }
}

fn restore<M: KvMap>(
    s: &mut KvStore<M, 8>,
    data: &[u8],
    piece: usize,
    index: u64,
) -> Result<(), SnapshotError> {
    s.restore_begin()?;
    for c in data.chunks(piece.max(1)) {
        s.restore_chunk(c)?;
    }
    s.restore_end(&meta(index))
}

fn pairs<M: KvMap>(s: &KvStore<M, 8>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<_> = s
        .map()
        .iter_from(&[])
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    v.sort();
    v
}

fn roundtrip_with<M: KvMap>(mut make: impl FnMut() -> M) {
    let mut a: KvStore<M, 8> = KvStore::new(make());
    let index = fill(&mut a);
    let data = dump(&a);
    for piece in [1, 2, 7, 100, data.len()] {
        // Start from a store with other contents: a restore replaces everything.
        let mut b: KvStore<M, 8> = KvStore::new(make());
        b.apply_entry(
            1,
            &req(
                500,
                1,
                Command::Put {
                    key: b"stale",
                    value: b"x",
                },
            ),
        );
        restore(&mut b, &data, piece, index).unwrap();
        assert_eq!(pairs(&b), pairs(&a), "piece size {piece}");
        assert_eq!(b.applied_index(), index);
        assert_eq!(b.get(b"stale"), None);
        assert_eq!(
            b.sessions().iter().collect::<Vec<_>>(),
            a.sessions().iter().collect::<Vec<_>>()
        );
        // Sessions survived: a retransmission of client 99's delete is answered from the
        // table (not applied again) and an older seq is stale.
        let dup = b.apply_entry(index + 1, &req(99, 1, Command::Delete { key: b"key0007" }));
        assert_eq!(dup, Response::Deleted { existed: true });
        let put = Command::Put {
            key: b"k",
            value: b"v",
        };
        assert_eq!(
            b.apply_entry(index + 2, &req(5, 1, put)),
            Response::Err(KvError::Stale)
        );
    }
}

#[test]
fn roundtrip_over_the_arena_map_in_any_piece_size() {
    roundtrip_with(ArenaMap::<256, 16384>::new);
}

#[cfg(feature = "alloc")]
#[test]
fn roundtrip_over_the_hash_map_in_any_piece_size() {
    roundtrip_with(|| tinyraft::kv::HashKvMap::with_capacity(256));
}

#[test]
fn truncated_or_damaged_streams_are_refused() {
    let mut a: KvStore<ArenaMap<256, 16384>, 8> = KvStore::new(ArenaMap::new());
    let index = fill(&mut a);
    let data = dump(&a);
    let fresh = || KvStore::<ArenaMap<256, 16384>, 8>::new(ArenaMap::new());
    // Every truncation is refused (the end record carries the counts).
    for cut in (0..data.len()).step_by(37) {
        let mut b = fresh();
        assert!(
            restore(&mut b, &data[..cut], 64, index).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
    // A snapshot whose metadata says an index below the state it holds is refused. One
    // above is fine: the entries in between were no-ops the store never saw (see
    // core/tests/snapshot_noop.rs).
    assert!(restore(&mut fresh(), &data, 64, index - 1).is_err());
    assert!(restore(&mut fresh(), &data, 64, index + 1).is_ok());
    // Flipped bytes never panic; most are refused (a flip inside a value is undetectable
    // here — the storage's CRC covers that).
    for at in (0..data.len()).step_by(11) {
        let mut bad = data.clone();
        bad[at] ^= 0x5a;
        let _ = restore(&mut fresh(), &bad, 50, index);
    }
    // Garbage.
    assert!(restore(&mut fresh(), &[0xff; 300], 7, index).is_err());
}

#[test]
fn a_snapshot_larger_than_the_map_is_refused_as_full() {
    let mut a: KvStore<ArenaMap<256, 16384>, 8> = KvStore::new(ArenaMap::new());
    let index = fill(&mut a);
    let data = dump(&a);
    let mut small: KvStore<ArenaMap<16, 16384>, 8> = KvStore::new(ArenaMap::new());
    small.restore_begin().unwrap();
    assert_eq!(small.restore_chunk(&data), Err(SnapshotError::Full));
    let _ = index;
}
