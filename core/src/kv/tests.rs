//! Tests of the KV state machine. Behaviour that must not depend on the map runs over both
//! maps through `for_each_map!`; entries go through the encoder and `StateMachine::apply`, as
//! they do in a node.

extern crate std;

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::limits::ENTRY_DATA_BYTES_MAX;
use crate::state_machine::StateMachine;
use crate::types::{Entry, EntryKind};

/// Key capacity of the maps used by the shared tests (the same for both, so both refuse the
/// same insertions).
const KEYS: usize = 16;

/// Defines `mod $name` with one test per map type, each running `$body::<M>(make_map)`.
macro_rules! for_each_map {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn arena_map() {
                super::$body(super::ArenaMap::<{ super::KEYS }, 16384>::new);
            }

            #[cfg(feature = "alloc")]
            #[test]
            fn hash_map() {
                super::$body(|| super::HashKvMap::with_capacity(super::KEYS));
            }
        }
    };
}

const SESSIONS: usize = 4;

/// A store fed through encoded entries, with a default client whose seq advances by itself.
struct Harness<M> {
    store: KvStore<M, SESSIONS>,
    index: u64,
    seq: u64,
}

const CLIENT: u64 = 7;

impl<M: KvMap> Harness<M> {
    fn new(map: M) -> Self {
        Self {
            store: KvStore::new(map),
            index: 0,
            seq: 0,
        }
    }

    /// Applies `data` as the next committed entry.
    fn entry(&mut self, data: &[u8]) -> Response {
        self.index += 1;
        self.store.apply(&Entry {
            term: 1,
            index: self.index,
            kind: EntryKind::Normal,
            data,
        })
    }

    /// Applies a request of `client` with `seq`.
    fn req(&mut self, client_id: u64, seq: u64, command: Command<'_>) -> Response {
        let mut buf = [0u8; ENTRY_DATA_BYTES_MAX];
        let n = Request {
            client_id,
            seq,
            command,
        }
        .encode(&mut buf)
        .expect("request fits an entry");
        self.entry(&buf[..n])
    }

    /// Applies a request of the default client with its next seq.
    fn cmd(&mut self, command: Command<'_>) -> Response {
        self.seq += 1;
        self.req(CLIENT, self.seq, command)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Response {
        self.cmd(Command::Put { key, value })
    }

    fn get(&mut self, key: &[u8]) -> Response {
        self.cmd(Command::Get { key })
    }

    fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.get(key).map(|v| v.to_vec())
    }
}

fn some(v: &[u8]) -> Response {
    Response::Value(Some(Value::from_slice(v).unwrap()))
}

fn pairs(page: &ScanPage) -> Vec<(Vec<u8>, Vec<u8>)> {
    page.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn page_of(r: Response) -> ScanPage {
    match r {
        Response::Page(p) => p,
        other => panic!("expected a page, got {other:?}"),
    }
}

// ---- Commands ----------------------------------------------------------------------------

fn get_put_delete<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    assert_eq!(h.get(b"k"), Response::Value(None));
    assert_eq!(h.put(b"k", b"one"), Response::Ok);
    assert_eq!(h.get(b"k"), some(b"one"));
    // Longer, shorter and empty values replace the old one in place.
    assert_eq!(h.put(b"k", b"a longer value"), Response::Ok);
    assert_eq!(h.get(b"k"), some(b"a longer value"));
    assert_eq!(h.put(b"k", b""), Response::Ok);
    assert_eq!(h.get(b"k"), some(b""));
    // The empty key is a key like any other.
    assert_eq!(h.put(b"", b"empty key"), Response::Ok);
    assert_eq!(h.get(b""), some(b"empty key"));
    assert_eq!(
        h.cmd(Command::Delete { key: b"k" }),
        Response::Deleted { existed: true }
    );
    assert_eq!(
        h.cmd(Command::Delete { key: b"k" }),
        Response::Deleted { existed: false }
    );
    assert_eq!(h.get(b"k"), Response::Value(None));
    assert_eq!(h.get(b""), some(b"empty key"));
    assert_eq!(h.store.map().len(), 1);
}
for_each_map!(commands_get_put_delete, get_put_delete);

fn compare_and_swap<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    let cas = |expected, new| Command::CompareAndSwap {
        key: b"lock",
        expected,
        new,
    };
    // Expected absent, key absent: creates it.
    assert_eq!(h.cmd(cas(None, Some(b"alice"))), Response::Ok);
    assert_eq!(h.value(b"lock").as_deref(), Some(&b"alice"[..]));
    // Expected absent, key present: no change.
    assert_eq!(h.cmd(cas(None, Some(b"bob"))), Response::CasMismatch);
    // Wrong expected value (also a prefix of the right one): no change.
    assert_eq!(
        h.cmd(cas(Some(b"bob"), Some(b"carol"))),
        Response::CasMismatch
    );
    assert_eq!(
        h.cmd(cas(Some(b"alic"), Some(b"carol"))),
        Response::CasMismatch
    );
    assert_eq!(h.value(b"lock").as_deref(), Some(&b"alice"[..]));
    // Right expected value: swaps.
    assert_eq!(h.cmd(cas(Some(b"alice"), Some(b"bob"))), Response::Ok);
    assert_eq!(h.value(b"lock").as_deref(), Some(&b"bob"[..]));
    // `new: None` removes the key when it matches.
    assert_eq!(h.cmd(cas(Some(b"alice"), None)), Response::CasMismatch);
    assert_eq!(h.cmd(cas(Some(b"bob"), None)), Response::Ok);
    assert_eq!(h.value(b"lock"), None);
    // Expected present, key absent: no change.
    assert_eq!(h.cmd(cas(Some(b"bob"), Some(b"x"))), Response::CasMismatch);
    assert_eq!(h.value(b"lock"), None);
    // Empty value is present, not absent.
    assert_eq!(h.cmd(cas(None, Some(b""))), Response::Ok);
    assert_eq!(h.cmd(cas(None, Some(b"x"))), Response::CasMismatch);
    assert_eq!(h.cmd(cas(Some(b""), Some(b"x"))), Response::Ok);
    assert_eq!(h.value(b"lock").as_deref(), Some(&b"x"[..]));
}
for_each_map!(commands_compare_and_swap, compare_and_swap);

// ---- Limits ------------------------------------------------------------------------------

fn limit_errors<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    let long_key = [b'k'; KEY_BYTES_MAX + 1];
    let max_key = [b'k'; KEY_BYTES_MAX];
    let long_value = [b'v'; VALUE_BYTES_MAX + 1];
    let max_value = [b'v'; VALUE_BYTES_MAX];
    let key_err = Response::Err(KvError::KeyTooLong);
    let value_err = Response::Err(KvError::ValueTooLong);

    assert_eq!(h.put(&long_key, b"v"), key_err);
    assert_eq!(h.get(&long_key), key_err);
    assert_eq!(h.cmd(Command::Delete { key: &long_key }), key_err);
    let cas = |key, expected, new| Command::CompareAndSwap { key, expected, new };
    assert_eq!(h.cmd(cas(&long_key[..], None, Some(&b"v"[..]))), key_err);
    let scan = |prefix, start_after| Command::Scan {
        prefix,
        start_after,
        limit: 0,
    };
    assert_eq!(h.cmd(scan(&long_key[..], None)), key_err);
    assert_eq!(h.cmd(scan(&b""[..], Some(&long_key[..]))), key_err);
    assert_eq!(h.put(b"k", &long_value), value_err);
    assert_eq!(
        h.cmd(cas(&b"k"[..], None, Some(&long_value[..]))),
        value_err
    );
    assert_eq!(
        h.cmd(cas(&b"k"[..], Some(&long_value[..]), None)),
        value_err
    );
    assert!(
        h.store.map().is_empty(),
        "a refused request changed the map"
    );

    // Exactly at the limits is fine.
    assert_eq!(h.put(&max_key, &max_value), Response::Ok);
    assert_eq!(h.get(&max_key), some(&max_value));
    assert_eq!(h.put(&max_key, &long_value), value_err);
    assert_eq!(
        h.get(&max_key),
        some(&max_value),
        "a refused put changed the value"
    );

    // The key count.
    while h.store.map().len() < KEYS {
        let k = [b'a' + h.store.map().len() as u8];
        assert_eq!(h.put(&k, b"x"), Response::Ok);
    }
    assert_eq!(
        h.put(b"one too many", b"x"),
        Response::Err(KvError::KeysFull)
    );
    assert_eq!(
        h.cmd(cas(&b"one too many"[..], None, Some(&b"x"[..]))),
        Response::Err(KvError::KeysFull)
    );
    assert_eq!(h.get(b"one too many"), Response::Value(None));
    // Updates and deletes still work when full; a delete makes room.
    assert_eq!(h.put(b"b", b"updated"), Response::Ok);
    assert_eq!(
        h.cmd(Command::Delete { key: b"c" }),
        Response::Deleted { existed: true }
    );
    assert_eq!(h.put(b"one too many", b"x"), Response::Ok);
    assert_eq!(h.store.map().len(), KEYS);
}
for_each_map!(limits_key_value_count, limit_errors);

#[test]
fn arena_map_refuses_what_its_bytes_cannot_hold() {
    let mut h = Harness::new(ArenaMap::<8, 64>::new());
    assert_eq!(h.put(b"a", &[1; 40]), Response::Ok);
    assert_eq!(h.put(b"b", &[2; 20]), Response::Ok);
    assert_eq!(h.store.map().bytes_used(), 62);
    assert_eq!(h.put(b"c", &[3; 2]), Response::Err(KvError::NoSpace));
    assert_eq!(h.put(b"a", &[1; 43]), Response::Err(KvError::NoSpace));
    assert_eq!(
        h.value(b"a"),
        Some(vec![1; 40]),
        "a refused update changed the value"
    );
    assert_eq!(h.value(b"c"), None);
    // Shrinking one value makes room for another key; the neighbours keep their bytes.
    assert_eq!(h.put(b"a", &[1; 10]), Response::Ok);
    assert_eq!(h.put(b"c", &[3; 30]), Response::Ok);
    assert_eq!(h.value(b"a"), Some(vec![1; 10]));
    assert_eq!(h.value(b"b"), Some(vec![2; 20]));
    assert_eq!(h.value(b"c"), Some(vec![3; 30]));
    assert_eq!(h.store.map().bytes_used(), 63);
}

// ---- Scan --------------------------------------------------------------------------------

const SCAN_KEYS: [&[u8]; 9] = [
    b"b", b"ab", b"\xff", b"a", b"abc", b"ac", b"", b"ba", b"a\x00",
];

fn scan_order_and_prefix<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    for k in SCAN_KEYS {
        assert_eq!(h.put(k, &[k.len() as u8]), Response::Ok);
    }
    let keys = |r: Response| -> Vec<Vec<u8>> {
        let p = page_of(r);
        assert!(!p.more());
        p.iter().map(|(k, _)| k.to_vec()).collect()
    };
    let scan = |prefix, start_after| Command::Scan {
        prefix,
        start_after,
        limit: 0,
    };
    let mut sorted: Vec<Vec<u8>> = SCAN_KEYS.iter().map(|k| k.to_vec()).collect();
    sorted.sort();
    assert_eq!(keys(h.cmd(scan(&b""[..], None))), sorted);
    let v = |s: &[&[u8]]| s.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        keys(h.cmd(scan(&b"a"[..], None))),
        v(&[b"a", b"a\x00", b"ab", b"abc", b"ac"])
    );
    assert_eq!(keys(h.cmd(scan(&b"ab"[..], None))), v(&[b"ab", b"abc"]));
    assert_eq!(keys(h.cmd(scan(&b"abcd"[..], None))), v(&[]));
    assert_eq!(keys(h.cmd(scan(&b"\xff"[..], None))), v(&[b"\xff"]));
    // `start_after` is exclusive, need not be a key, and may lie outside the prefix.
    assert_eq!(
        keys(h.cmd(scan(&b"a"[..], Some(&b"ab"[..])))),
        v(&[b"abc", b"ac"])
    );
    assert_eq!(
        keys(h.cmd(scan(&b"a"[..], Some(&b"aa"[..])))),
        v(&[b"ab", b"abc", b"ac"])
    );
    assert_eq!(
        keys(h.cmd(scan(&b"a"[..], Some(&b""[..])))),
        v(&[b"a", b"a\x00", b"ab", b"abc", b"ac"])
    );
    assert_eq!(keys(h.cmd(scan(&b"a"[..], Some(&b"b"[..])))), v(&[]));
    assert_eq!(
        keys(h.cmd(scan(&b""[..], Some(&b"b"[..])))),
        v(&[b"ba", b"\xff"])
    );
    // Values come with their keys.
    let p = page_of(h.cmd(scan(&b"ab"[..], None)));
    assert_eq!(
        pairs(&p),
        vec![(b"ab".to_vec(), vec![2]), (b"abc".to_vec(), vec![3])]
    );
}
for_each_map!(scan_order_and_prefix_test, scan_order_and_prefix);

fn scan_pagination<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    // Insert in an order unrelated to the key order.
    let mut expect = Vec::new();
    for i in [9u8, 3, 14, 0, 7, 11, 1, 12, 5, 15, 2, 8, 13, 4, 10, 6] {
        let k = [b'p', i];
        assert_eq!(h.put(&k, &[i; 3]), Response::Ok);
        expect.push((k.to_vec(), vec![i; 3]));
    }
    expect.sort();
    for limit in [1u16, 3, 5, 15, 16, 17] {
        let mut got = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = page_of(h.cmd(Command::Scan {
                prefix: b"p",
                start_after: after.as_deref(),
                limit,
            }));
            assert!(page.len() <= usize::from(limit));
            got.extend(pairs(&page));
            if !page.more() {
                break;
            }
            // `more` is exact: a full page is followed by at least one more key.
            assert_eq!(page.len(), usize::from(limit));
            after = page.last_key().map(|k| k.to_vec());
        }
        assert_eq!(got, expect, "limit {limit}");
    }
    // Exactly `limit` matching keys left: `more` is false.
    let p = page_of(h.cmd(Command::Scan {
        prefix: b"p",
        start_after: Some(&[b'p', 11]),
        limit: 4,
    }));
    assert_eq!(p.len(), 4);
    assert!(!p.more());
}
for_each_map!(scan_pagination_test, scan_pagination);

fn scan_bounds<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    // A limit of 0 or above SCAN_PAIRS_MAX means SCAN_PAIRS_MAX; with KEYS < SCAN_PAIRS_MAX
    // that is every key.
    for i in 0..KEYS as u8 {
        assert_eq!(h.put(&[i], b""), Response::Ok);
    }
    for limit in [0, u16::MAX] {
        let p = page_of(h.cmd(Command::Scan {
            prefix: b"",
            start_after: None,
            limit,
        }));
        assert_eq!(p.len(), KEYS);
        assert!(!p.more());
    }
    // Pages stop at SCAN_PAGE_BYTES_MAX key and value bytes, whatever the limit.
    let value = [7u8; 600];
    let fit = SCAN_PAGE_BYTES_MAX / (1 + value.len());
    assert!(fit > 1 && fit < KEYS);
    for i in 0..KEYS as u8 {
        assert_eq!(h.put(&[i], &value), Response::Ok);
    }
    let mut after: Option<Vec<u8>> = None;
    let mut seen = 0;
    loop {
        let p = page_of(h.cmd(Command::Scan {
            prefix: b"",
            start_after: after.as_deref(),
            limit: 0,
        }));
        assert!(p.bytes_len() <= SCAN_PAGE_BYTES_MAX);
        assert!(!p.is_empty(), "a page must make progress");
        seen += p.len();
        if !p.more() {
            assert!(p.len() <= fit);
            break;
        }
        assert_eq!(p.len(), fit);
        after = p.last_key().map(|k| k.to_vec());
    }
    assert_eq!(seen, KEYS);
    // The largest pair always fits a page on its own.
    assert_eq!(
        h.cmd(Command::Delete { key: &[0] }),
        Response::Deleted { existed: true }
    );
    let max_key = [0xffu8; KEY_BYTES_MAX];
    let big = [7u8; VALUE_BYTES_MAX];
    assert_eq!(h.put(&max_key, &big), Response::Ok);
    let p = page_of(h.cmd(Command::Scan {
        prefix: &[0xff],
        start_after: None,
        limit: 0,
    }));
    assert_eq!(pairs(&p), vec![(max_key.to_vec(), big.to_vec())]);
}
for_each_map!(scan_bounds_test, scan_bounds);

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Short keys over a tiny alphabet, so prefixes and collisions are common.
    fn key(&mut self) -> Vec<u8> {
        let len = self.below(4) as usize;
        (0..len).map(|_| b'a' + self.below(3) as u8).collect()
    }
}

/// Random operations against a `BTreeMap` model: every answer must match the model, whatever
/// the map.
fn matches_model<M: KvMap>(make: impl Fn() -> M) {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut h = Harness::new(make());
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for step in 0..400 {
            let key = rng.key();
            let value: Vec<u8> = vec![rng.below(256) as u8; rng.below(5) as usize];
            let ctx = |what: &str| std::format!("seed {seed} step {step}: {what}");
            match rng.below(6) {
                0 => {
                    let expect = if model.len() >= KEYS && !model.contains_key(&key) {
                        Response::Err(KvError::KeysFull)
                    } else {
                        model.insert(key.clone(), value.clone());
                        Response::Ok
                    };
                    assert_eq!(h.put(&key, &value), expect, "{}", ctx("put"));
                }
                1 => {
                    let expect = Response::Deleted {
                        existed: model.remove(&key).is_some(),
                    };
                    assert_eq!(
                        h.cmd(Command::Delete { key: &key }),
                        expect,
                        "{}",
                        ctx("delete")
                    );
                }
                2 => {
                    let expect = model.get(&key).map_or(Response::Value(None), |v| some(v));
                    assert_eq!(h.get(&key), expect, "{}", ctx("get"));
                }
                3 => {
                    let expected =
                        (rng.below(2) == 0).then(|| model.get(&key).cloned().unwrap_or_default());
                    let new = (rng.below(4) != 0).then(|| value.clone());
                    let current = model.get(&key).cloned();
                    let expect = if current != expected {
                        Response::CasMismatch
                    } else if let Some(n) = &new {
                        if current.is_none() && model.len() >= KEYS {
                            Response::Err(KvError::KeysFull)
                        } else {
                            model.insert(key.clone(), n.clone());
                            Response::Ok
                        }
                    } else {
                        model.remove(&key);
                        Response::Ok
                    };
                    let got = h.cmd(Command::CompareAndSwap {
                        key: &key,
                        expected: expected.as_deref(),
                        new: new.as_deref(),
                    });
                    assert_eq!(got, expect, "{}", ctx("cas"));
                }
                _ => {
                    let prefix = rng.key();
                    let after = (rng.below(2) == 0).then(|| rng.key());
                    let limit = rng.below(5) as u16;
                    let want = if limit == 0 {
                        SCAN_PAIRS_MAX
                    } else {
                        usize::from(limit)
                    };
                    let matching: Vec<_> = model
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let p = page_of(h.cmd(Command::Scan {
                        prefix: &prefix,
                        start_after: after.as_deref(),
                        limit,
                    }));
                    let n = matching.len().min(want);
                    assert_eq!(pairs(&p), matching[..n], "{}", ctx("scan"));
                    assert_eq!(p.more(), matching.len() > n, "{}", ctx("scan more"));
                }
            }
        }
        let all: Vec<_> = model.into_iter().collect();
        assert_eq!(
            pairs(&h.store.scan(b"", None, 0).unwrap()),
            all,
            "seed {seed}: final"
        );
    }
}
for_each_map!(model_check, matches_model);

/// The same writes give byte-identical scan responses on both maps (as they must on nodes that
/// use different maps).
#[cfg(feature = "alloc")]
#[test]
fn both_maps_encode_identical_scans() {
    let mut a = Harness::new(ArenaMap::<64, 8192>::new());
    let mut b = Harness::new(HashKvMap::with_capacity(64));
    let mut rng = Rng(42);
    for _ in 0..300 {
        let key = rng.key();
        let value = vec![rng.below(256) as u8; rng.below(9) as usize];
        if rng.below(3) == 0 {
            assert_eq!(h_del(&mut a, &key), h_del(&mut b, &key));
        } else {
            assert_eq!(a.put(&key, &value), b.put(&key, &value));
        }
        let prefix = rng.key();
        let scan = Command::Scan {
            prefix: &prefix,
            start_after: None,
            limit: 3,
        };
        let (ra, rb) = (a.cmd(scan), b.cmd(scan));
        let mut ba = [0u8; RESPONSE_BYTES_MAX];
        let mut bb = [0u8; RESPONSE_BYTES_MAX];
        let na = ra.encode(&mut ba).unwrap();
        let nb = rb.encode(&mut bb).unwrap();
        assert_eq!(ba[..na], bb[..nb]);
    }

    fn h_del<M: KvMap>(h: &mut Harness<M>, key: &[u8]) -> Response {
        h.cmd(Command::Delete { key })
    }
}

// ---- Sessions (Raft dissertation §6.3) ---------------------------------------------------

const A: u64 = 100;
const B: u64 = 200;
const C: u64 = 300;

fn put<'a>(key: &'a [u8], value: &'a [u8]) -> Command<'a> {
    Command::Put { key, value }
}

fn retransmit_is_answered_from_the_table<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    assert_eq!(h.req(A, 1, put(b"k", b"from A")), Response::Ok);
    assert_eq!(h.req(B, 1, put(b"k", b"from B")), Response::Ok);
    // A's put is committed a second time (the client resent it): it must not overwrite B's.
    assert_eq!(h.req(A, 1, put(b"k", b"from A")), Response::Ok);
    assert_eq!(h.value(b"k").as_deref(), Some(&b"from B"[..]));

    // A delete's answer is the original one, though the key is gone by now.
    assert_eq!(
        h.req(A, 2, Command::Delete { key: b"k" }),
        Response::Deleted { existed: true }
    );
    assert_eq!(
        h.req(A, 2, Command::Delete { key: b"k" }),
        Response::Deleted { existed: true }
    );
    // A compare-and-swap that succeeded answers Ok again, and does not swap again.
    let cas = Command::CompareAndSwap {
        key: b"n",
        expected: None,
        new: Some(b"1"),
    };
    assert_eq!(h.req(B, 2, cas), Response::Ok);
    assert_eq!(h.req(A, 3, put(b"n", b"2")), Response::Ok);
    assert_eq!(h.req(B, 2, cas), Response::Ok);
    assert_eq!(h.value(b"n").as_deref(), Some(&b"2"[..]));
    // A refusal is remembered too: the retransmission of a put refused for the key count is
    // refused again even once there is room, so the client sees one consistent answer.
    let mut i = 0u8;
    while h.store.map().len() < h.store.map().keys_max() {
        assert_eq!(h.req(C, u64::from(i) + 1, put(&[i], b"")), Response::Ok);
        i += 1;
    }
    let seq = u64::from(i) + 1;
    assert_eq!(
        h.req(C, seq, put(b"new", b"x")),
        Response::Err(KvError::KeysFull)
    );
    assert_eq!(
        h.req(A, 4, Command::Delete { key: &[0] }),
        Response::Deleted { existed: true }
    );
    assert_eq!(
        h.req(C, seq, put(b"new", b"x")),
        Response::Err(KvError::KeysFull)
    );
    assert_eq!(h.value(b"new"), None);
    // A retransmitted read runs again (it changes nothing).
    assert_eq!(h.req(B, 3, Command::Get { key: b"n" }), some(b"2"));
    assert_eq!(h.req(A, 5, put(b"n", b"3")), Response::Ok);
    assert_eq!(h.req(B, 3, Command::Get { key: b"n" }), some(b"3"));
    assert_eq!(h.store.sessions().get(B).map(|s| s.last_seq), Some(3));
}
for_each_map!(session_dedup, retransmit_is_answered_from_the_table);

#[test]
fn stale_and_invalid_requests_are_not_applied() {
    let mut h = Harness::new(ArenaMap::<8, 256>::new());
    assert_eq!(h.req(A, 1, put(b"k", b"1")), Response::Ok);
    // Seqs may skip (only "larger" matters).
    assert_eq!(h.req(A, 5, put(b"k", b"5")), Response::Ok);
    assert_eq!(h.req(A, 3, put(b"k", b"3")), Response::Err(KvError::Stale));
    assert_eq!(h.req(A, 1, put(b"k", b"1")), Response::Err(KvError::Stale));
    assert_eq!(h.value(b"k").as_deref(), Some(&b"5"[..]));
    // A stale request does not touch the session: a retransmit of seq 5 still answers Ok.
    assert_eq!(h.store.sessions().get(A).map(|s| s.last_seq), Some(5));
    assert_eq!(h.req(A, 5, put(b"k", b"5")), Response::Ok);

    assert_eq!(
        h.req(0, 1, put(b"k", b"0")),
        Response::Err(KvError::InvalidSession)
    );
    assert_eq!(
        h.req(A, 0, put(b"k", b"0")),
        Response::Err(KvError::InvalidSession)
    );
    // A client the store never saw, starting above seq 1.
    assert_eq!(
        h.req(B, 2, put(b"k", b"B")),
        Response::Err(KvError::SessionExpired)
    );
    assert!(h.store.sessions().get(B).is_none());
    assert!(h.store.sessions().get(0).is_none());
    assert_eq!(h.value(b"k").as_deref(), Some(&b"5"[..]));
}

#[test]
fn full_table_evicts_the_least_recently_used_session() {
    let mut h = Harness::new(ArenaMap::<8, 256>::new());
    // SESSIONS = 4: A, B, C and D (client 400) fill the table at indexes 1..=4.
    for (i, c) in [A, B, C, 400].into_iter().enumerate() {
        assert_eq!(h.req(c, 1, put(&[i as u8], b"")), Response::Ok);
    }
    assert_eq!(h.store.sessions().len(), SESSIONS);
    // A is used again by a new request, B by a retransmission: both are now recent.
    assert_eq!(h.req(A, 2, put(b"a", b"")), Response::Ok);
    assert_eq!(h.req(B, 1, put(&[1], b"")), Response::Ok);
    // A new client evicts C, the least recently used (index 3).
    assert_eq!(h.req(500, 1, put(b"e", b"")), Response::Ok);
    assert!(h.store.sessions().get(C).is_none());
    assert_eq!(h.store.sessions().len(), SESSIONS);
    // C's next request is refused and not applied.
    assert_eq!(
        h.req(C, 2, put(b"c", b"")),
        Response::Err(KvError::SessionExpired)
    );
    assert_eq!(h.value(b"c"), None);
    // The others carry on; the next eviction takes D (index 4).
    assert_eq!(h.req(A, 3, put(b"a", b"3")), Response::Ok);
    assert_eq!(h.req(B, 2, put(b"b", b"2")), Response::Ok);
    assert_eq!(h.req(600, 1, put(b"f", b"")), Response::Ok);
    assert!(h.store.sessions().get(400).is_none());
    let ids: Vec<u64> = h.store.sessions().iter().map(|s| s.client_id).collect();
    assert_eq!(
        ids,
        vec![A, B, 500, 600],
        "sessions iterate in client id order"
    );
    assert_eq!(
        h.req(400, 2, put(b"d", b"")),
        Response::Err(KvError::SessionExpired)
    );
    assert_eq!(h.value(b"d"), None);
}

/// A store can be built at compile time, so firmware can place it in a `static`.
static _STATIC_STORE: KvStore<ArenaMap<4, 64>, 2> = KvStore::new(ArenaMap::new());

#[test]
fn session_slots_stay_small() {
    assert_eq!(core::mem::size_of::<Session>(), 32);
    assert_eq!(
        core::mem::size_of::<SessionTable<16>>(),
        16 * 32 + core::mem::size_of::<usize>()
    );
    // A key costs an 8-byte slot plus its bytes.
    assert!(core::mem::size_of::<ArenaMap<64, 4096>>() <= 4096 + 64 * 8 + 2 * 8);
}

// ---- Malformed entries and the apply order ----------------------------------------------

#[test]
fn malformed_entries_are_answered_not_applied() {
    let mut h = Harness::new(ArenaMap::<8, 256>::new());
    let malformed = Response::Err(KvError::Malformed);
    assert_eq!(h.entry(&[]), malformed);
    assert_eq!(h.entry(&[0xff; 32]), malformed);
    // Command tag out of range.
    assert_eq!(h.entry(&[1, 1, 9, 0]), malformed);
    // A length that runs past the end.
    assert_eq!(h.entry(&[1, 1, 1, 50, b'k']), malformed);
    let mut buf = [0u8; 64];
    let n = Request {
        client_id: A,
        seq: 1,
        command: put(b"key", b"value"),
    }
    .encode(&mut buf)
    .unwrap();
    for cut in 0..n {
        assert_eq!(h.entry(&buf[..cut]), malformed, "prefix of {cut} bytes");
    }
    let mut long = [0u8; 65];
    long[..n].copy_from_slice(&buf[..n]);
    assert_eq!(h.entry(&long[..n + 1]), malformed, "trailing byte");
    assert_eq!(h.entry(&[0u8; ENTRY_DATA_BYTES_MAX + 1]), malformed);
    assert!(h.store.map().is_empty());
    assert!(h.store.sessions().is_empty());
    // Each one still counted as applied, and the whole request applies once.
    assert_eq!(h.store.applied_index(), h.index);
    assert_eq!(h.entry(&buf[..n]), Response::Ok);
    assert_eq!(h.value(b"key").as_deref(), Some(&b"value"[..]));
}

#[test]
fn an_entry_is_applied_once_in_log_order() {
    let mut store: KvStore<ArenaMap<8, 256>, 4> = KvStore::new(ArenaMap::new());
    let r = Request {
        client_id: A,
        seq: 1,
        command: put(b"k", b"v"),
    };
    assert_eq!(
        store.apply_request(0, &r),
        Response::Err(KvError::AlreadyApplied)
    );
    assert_eq!(store.apply_request(5, &r), Response::Ok);
    let later = Request {
        client_id: B,
        seq: 1,
        command: put(b"k", b"w"),
    };
    assert_eq!(
        store.apply_request(5, &later),
        Response::Err(KvError::AlreadyApplied)
    );
    assert_eq!(
        store.apply_request(4, &later),
        Response::Err(KvError::AlreadyApplied)
    );
    assert_eq!(
        store.apply_entry(3, b"junk"),
        Response::Err(KvError::AlreadyApplied)
    );
    assert_eq!(store.get(b"k"), Some(&b"v"[..]));
    assert_eq!(store.applied_index(), 5);
}

// ---- Read-only queries -------------------------------------------------------------------

fn queries_read_without_applying<M: KvMap>(make: impl Fn() -> M) {
    let mut h = Harness::new(make());
    assert_eq!(h.put(b"x1", b"a"), Response::Ok);
    assert_eq!(h.put(b"x2", b"b"), Response::Ok);
    let (applied, sessions) = (h.store.applied_index(), h.store.sessions().len());
    let get = Command::Get { key: b"x1" };
    let scan = Command::Scan {
        prefix: b"x",
        start_after: None,
        limit: 1,
    };
    assert!(get.is_read_only() && scan.is_read_only());
    assert_eq!(h.store.query(&get), some(b"a"));
    let p = page_of(h.store.query(&scan));
    assert_eq!(pairs(&p), vec![(b"x1".to_vec(), b"a".to_vec())]);
    assert!(p.more());
    assert_eq!(p.last_key(), Some(&b"x1"[..]));
    assert_eq!(
        h.store.query(&Command::Get { key: b"nope" }),
        Response::Value(None)
    );
    assert_eq!(
        h.store.query(&Command::Get {
            key: &[0; KEY_BYTES_MAX + 1]
        }),
        Response::Err(KvError::KeyTooLong)
    );
    // The same commands through the log answer the same.
    assert_eq!(h.cmd(get), h.store.query(&get));
    assert_eq!(h.cmd(scan), h.store.query(&scan));
    let (applied, sessions) = (applied + 2, sessions);
    // Writes are refused by `query` and change nothing.
    let writes = [
        put(b"x1", b"z"),
        Command::Delete { key: b"x1" },
        Command::CompareAndSwap {
            key: b"x1",
            expected: Some(b"a"),
            new: None,
        },
    ];
    for w in writes {
        assert!(!w.is_read_only());
        assert!(!Request {
            client_id: 1,
            seq: 1,
            command: w
        }
        .is_read_only());
        assert_eq!(h.store.query(&w), Response::Err(KvError::NotReadOnly));
    }
    assert_eq!(h.store.get(b"x1"), Some(&b"a"[..]));
    assert_eq!(h.store.applied_index(), applied);
    assert_eq!(h.store.sessions().len(), sessions);
}
for_each_map!(read_only_queries, queries_read_without_applying);

// ---- Wire forms --------------------------------------------------------------------------

#[test]
fn requests_round_trip_and_the_largest_fits_an_entry() {
    let key = [1u8; KEY_BYTES_MAX];
    let value = [2u8; VALUE_BYTES_MAX];
    let commands = [
        Command::Get { key: &key },
        Command::Put {
            key: &key,
            value: &value,
        },
        Command::Delete { key: &key },
        Command::CompareAndSwap {
            key: &key,
            expected: Some(&value),
            new: Some(&value),
        },
        Command::CompareAndSwap {
            key: b"",
            expected: None,
            new: None,
        },
        Command::Scan {
            prefix: &key,
            start_after: Some(&key),
            limit: u16::MAX,
        },
    ];
    let mut largest = 0;
    for command in commands {
        let r = Request {
            client_id: u64::MAX,
            seq: u64::MAX,
            command,
        };
        let mut buf = [0u8; ENTRY_DATA_BYTES_MAX];
        let n = r.encode(&mut buf).unwrap();
        largest = largest.max(n);
        assert_eq!(Request::decode(&buf[..n]), Ok(r));
        // Too small a buffer is refused, not overrun.
        assert_eq!(r.encode(&mut buf[..n - 1]), None);
    }
    assert!(
        largest <= REQUEST_BYTES_MAX,
        "{largest} > {REQUEST_BYTES_MAX}"
    );
    // The bound is tight: the largest compare-and-swap reaches it.
    assert_eq!(largest, REQUEST_BYTES_MAX);
}

#[test]
fn responses_round_trip_and_the_largest_fits_the_bound() {
    let mut page = ScanPage::new();
    let mut i = 0u8;
    let mut small = ScanPage::new();
    while small.push(&[i], b"") {
        i += 1;
    }
    assert_eq!(small.len(), SCAN_PAIRS_MAX);
    // A full page of maximal bytes: one pair of the largest size, then short ones.
    assert!(page.push(&[0; KEY_BYTES_MAX], &[9; VALUE_BYTES_MAX]));
    let rest = SCAN_PAGE_BYTES_MAX - KEY_BYTES_MAX - VALUE_BYTES_MAX;
    assert!(page.push(&[1], &[8; 200]));
    assert!(page.push(&[2], &vec![7; rest - 200 - 2]));
    assert_eq!(page.bytes_len(), SCAN_PAGE_BYTES_MAX);
    assert!(!page.push(&[3], b""), "a full page takes no more bytes");
    page.set_more(true);
    let responses = [
        Response::Ok,
        Response::Deleted { existed: true },
        Response::CasMismatch,
        Response::Value(None),
        some(&[5; VALUE_BYTES_MAX]),
        Response::Page(ScanPage::new()),
        Response::Page(small),
        Response::Page(page),
        Response::Err(KvError::SessionExpired),
    ];
    for r in responses {
        let mut buf = [0u8; RESPONSE_BYTES_MAX];
        let n = r
            .encode(&mut buf)
            .expect("every response fits RESPONSE_BYTES_MAX");
        assert_eq!(Response::decode(&buf[..n]), Ok(r.clone()));
        for cut in 0..n {
            assert!(
                Response::decode(&buf[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut long = [0u8; RESPONSE_BYTES_MAX + 1];
        long[..n].copy_from_slice(&buf[..n]);
        assert!(
            Response::decode(&long[..n + 1]).is_err(),
            "trailing byte accepted"
        );
    }
}

#[test]
fn inconsistent_pages_are_refused() {
    let mut page = ScanPage::new();
    assert!(page.push(b"a", b"1"));
    assert!(page.push(b"b", b"2"));
    let mut buf = [0u8; 64];
    let n = Response::Page(page).encode(&mut buf).unwrap();
    // [tag 4][more][2 lens: (1,1) (1,1)][4 bytes: a 1 b 2]
    assert_eq!(buf[..n], [4, 0, 2, 1, 1, 1, 1, 4, b'a', b'1', b'b', b'2']);
    assert!(Response::decode(&buf[..n]).is_ok());
    let bad = |edit: &dyn Fn(&mut [u8])| {
        let mut b = buf;
        edit(&mut b[..n]);
        Response::decode(&b[..n])
    };
    // Lengths that do not add up to the bytes.
    assert!(bad(&|b| b[3] = 2).is_err());
    // Keys out of order.
    assert!(bad(&|b| {
        b[8] = b'c';
    })
    .is_err());
    // Equal keys.
    assert!(bad(&|b| b[10] = b'a').is_err());
    // An empty page that claims more would stall a client.
    assert!(Response::decode(&[4, 1, 0, 0]).is_err());
    assert!(Response::decode(&[4, 0, 0, 0]).is_ok());
    // A value longer than VALUE_BYTES_MAX.
    let mut v = [0u8; VALUE_BYTES_MAX + 8];
    v[..5].copy_from_slice(&[3, 1, 0x81, 0x08, 0]);
    assert!(Response::decode(&v[..4 + VALUE_BYTES_MAX + 1]).is_err());
}
