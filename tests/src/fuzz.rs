//! Bodies of the fuzz targets in `fuzz/`, here so that the fuzzer and the corpus replay test
//! (`tests/tests/fuzz_corpus.rs`, run by `cargo test` without cargo-fuzz) call the very same
//! code. Each function panics when the property it checks is broken; any other input is fine.

use std::path::Path;

use tinyraft::fault::{FaultRng, SplitMix64};
use tinyraft::{
    Config, Entry, EntryKind, Index, MemStorage, Message, NodeId, RawNode, Role, Storage, Term,
};
use tinyraft_std::file_storage::{FileStorage, FileStorageOptions};

use crate::sim::scenario::{Scenario, Sim};

// ----- message_decode_step ---------------------------------------------------------------

type FuzzStorage = MemStorage<{ 64 * 1024 }, 1024>;
type FuzzNode = RawNode<FuzzStorage, { 32 * 1024 }, { 32 * 1024 }>;

struct Mini {
    nodes: Vec<Box<FuzzNode>>,
    in_flight: Vec<(NodeId, Vec<u8>)>,
    /// Highest commit and term each node has shown (they must never go back).
    marks: Vec<(Index, Term)>,
}

impl Mini {
    fn new() -> Self {
        let ids = [1, 2, 3];
        let nodes = ids
            .iter()
            .map(|&id| {
                let mut cfg = Config::new(id, &ids).expect("config");
                cfg.seed = 0xf022 + id;
                cfg.message_bytes_max = 16 * 1024;
                Box::new(FuzzNode::new(cfg, FuzzStorage::new()).expect("node"))
            })
            .collect();
        Self {
            nodes,
            in_flight: Vec::new(),
            marks: vec![(0, 0); 3],
        }
    }

    /// Runs every node's ready rounds and delivers what they sent, `rounds` times.
    fn settle(&mut self, rounds: usize) {
        for _ in 0..rounds {
            for i in 0..self.nodes.len() {
                let n = &mut self.nodes[i];
                while n.has_ready() {
                    let rd = n.ready();
                    let p = n.persist(rd).expect("MemStorage never fails here");
                    for (to, bytes) in n.messages(&p) {
                        assert!(
                            Message::decode(bytes).is_ok(),
                            "node {} sent a message that does not decode: {bytes:?}",
                            i + 1
                        );
                        self.in_flight.push((to, bytes.to_vec()));
                    }
                    n.committed_entries(&p, &mut |_| {}).expect("read log");
                    n.advance(p);
                }
            }
            for (to, bytes) in std::mem::take(&mut self.in_flight) {
                if let Some(n) = self.nodes.get_mut((to as usize).wrapping_sub(1)) {
                    let _ = n.step_bytes(&bytes);
                }
            }
            self.check();
        }
    }

    fn tick(&mut self) {
        for n in &mut self.nodes {
            n.tick();
        }
    }

    fn check(&mut self) {
        for (i, n) in self.nodes.iter().enumerate() {
            let (commit, term) = (n.committed(), n.term());
            assert!(
                n.applied() <= commit,
                "node {}: applied above commit",
                i + 1
            );
            assert!(commit <= n.last_index(), "node {}: commit above log", i + 1);
            assert!(n.first_index() <= n.last_index() + 1);
            let (c0, t0) = self.marks[i];
            assert!(commit >= c0, "node {}: commit went back", i + 1);
            assert!(term >= t0, "node {}: term went back", i + 1);
            self.marks[i] = (commit, term);
            if n.role() == Role::Leader {
                assert_eq!(n.leader(), Some(n.id()), "a leader that names another");
            }
        }
    }
}

/// Arbitrary bytes are decoded as messages and stepped into a live 3-node cluster.
///
/// Input: records of `[control u8][length u16 LE][bytes]`. The control's low two bits pick
/// the node (1–3), bit 2 ticks every node afterwards, bit 3 makes the leader propose the
/// bytes, bit 4 makes it propose a configuration change read from the first bytes (nodes 4
/// and 5 do not exist: what is sent to them is lost). The bytes are also decoded as a
/// configuration entry. Checks: nothing panics; bytes that do not decode are refused and change nothing;
/// what decodes encodes back to bytes that decode to the same message; every message a node
/// sends decodes; commit and term never go back; applied ≤ commit ≤ last index.
pub fn message_decode_step(data: &[u8]) {
    let mut c = Mini::new();
    // Elect a leader and commit a few entries, so inputs meet a cluster with a log.
    for _ in 0..30 {
        c.tick();
        c.settle(2);
    }
    if let Some(l) = c.nodes.iter_mut().find(|n| n.role() == Role::Leader) {
        for p in [&b"a"[..], b"bc", b""] {
            let _ = l.propose(p);
        }
    }
    c.settle(4);
    let mut rest = data;
    let mut scratch = vec![0u8; 70 * 1024];
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let take = len.min(rest.len() - 3);
        let bytes = &rest[3..3 + take];
        rest = &rest[3 + take..];
        let target = usize::from(ctl & 3) % 3;
        let n = &mut c.nodes[target];
        match Message::decode(bytes) {
            Ok(m) => {
                let len = m
                    .encode(&mut scratch)
                    .expect("a decoded message re-encodes");
                let again = Message::decode(&scratch[..len]).expect("re-encoded decodes");
                assert_eq!(again, m, "encode/decode round trip changed the message");
                let _ = n.step(&m);
            }
            Err(_) => {
                let before = (n.hard_state(), n.last_index(), n.role(), n.leader());
                assert!(n.step_bytes(bytes).is_err(), "undecodable bytes accepted");
                let after = (n.hard_state(), n.last_index(), n.role(), n.leader());
                assert_eq!(before, after, "undecodable bytes changed the node");
            }
        }
        if ctl & 8 != 0 {
            if let Some(l) = c.nodes.iter_mut().find(|n| n.role() == Role::Leader) {
                let _ = l.propose(&bytes[..bytes.len().min(512)]);
            }
        }
        if let Ok(entry) = tinyraft::ConfigEntry::decode(bytes) {
            let len = entry
                .encode(&mut scratch)
                .expect("a decoded entry re-encodes");
            let again = tinyraft::ConfigEntry::decode(&scratch[..len]).expect("re-encoded");
            assert_eq!(again, entry, "config entry round trip changed it");
        }
        if ctl & 16 != 0 {
            if let Some(l) = c.nodes.iter_mut().find(|n| n.role() == Role::Leader) {
                let changes: Vec<tinyraft::ConfChange> = bytes
                    .iter()
                    .take(3)
                    .map(|&b| {
                        let id = 1 + NodeId::from(b % 5);
                        match (b >> 3) % 3 {
                            0 => tinyraft::ConfChange::AddVoter(id),
                            1 => tinyraft::ConfChange::AddLearner(id),
                            _ => tinyraft::ConfChange::Remove(id),
                        }
                    })
                    .collect();
                let mode = if bytes.len() % 2 == 1 {
                    tinyraft::ConfChangeMode::Joint
                } else {
                    tinyraft::ConfChangeMode::Auto
                };
                let _ = l.propose_conf_change(&changes, mode, b"");
            }
        }
        if ctl & 4 != 0 {
            c.tick();
        }
        c.check();
        c.settle(2);
    }
    for _ in 0..5 {
        c.tick();
        c.settle(2);
    }
}

// ----- file_storage_open -----------------------------------------------------------------

/// Section kinds of the `file_storage_open` input.
pub mod section {
    /// A log segment (numbered 1, 2, ... in order of appearance).
    pub const SEGMENT: u8 = 0;
    /// The `hard-state` file.
    pub const HARD_STATE: u8 = 1;
    /// The `snapshot-meta` file.
    pub const SNAPSHOT_META: u8 = 2;
    /// An unfinished atomic replacement (`hard-state.tmp`).
    pub const TMP: u8 = 3;
    /// A snapshot file (generations 1, 2, ... in order of appearance).
    pub const SNAPSHOT: u8 = 4;
}

/// Splits `data` into sections of `[kind u8][length u16 LE][bytes]`.
pub fn sections(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0] % 5;
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let take = len.min(rest.len() - 3);
        out.push((kind, &rest[3..3 + take]));
        rest = &rest[3 + take..];
    }
    out
}

/// Packs the files of a FileStorage directory into the `file_storage_open` input format (for
/// building the seed corpus).
pub fn pack_dir(dir: &Path) -> Vec<u8> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let kind = if name.ends_with(".log") {
            section::SEGMENT
        } else if name == "hard-state" {
            section::HARD_STATE
        } else if name == "snapshot-meta" {
            section::SNAPSHOT_META
        } else if name.starts_with("snapshot-") && name.ends_with(".snap") {
            section::SNAPSHOT
        } else {
            continue;
        };
        let bytes = std::fs::read(dir.join(&name)).expect("read file");
        let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
        out.push(kind);
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs where there is one: the target fsyncs, and tmpfs makes those free.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("tinyraft-fuzz")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

/// The record FileStorage writes for `e` (see `std-adapters/src/file_storage/mod.rs`).
fn entry_record(e: &Entry<'_>) -> Vec<u8> {
    let mut body = vec![2u8];
    body.extend_from_slice(&e.index.to_le_bytes());
    body.extend_from_slice(&e.term.to_le_bytes());
    body.push(e.kind as u8);
    body.extend_from_slice(e.data);
    let len = (body.len() as u32).to_le_bytes();
    let mut crc_input = len.to_vec();
    crc_input.extend_from_slice(&body);
    let crc = crc32c::crc32c(&crc_input);
    let mut rec = len.to_vec();
    rec.extend_from_slice(&crc.to_le_bytes());
    rec.extend_from_slice(&body);
    rec
}

/// Arbitrary segment, hard-state, snapshot and (version 1) snapshot-meta bytes are written to
/// a directory and opened with `FileStorage::open`.
///
/// Checks: open returns Ok or an error, never panics; if it opens, every entry it yields is
/// one whose exact record, with a valid CRC32C, is in one of the segments given; the commit
/// index is within the log; and the storage accepts an append, syncs it, and reopens with it.
pub fn file_storage_open(data: &[u8]) {
    let dir = scratch_dir();
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut snapshots = 0;
    for (kind, bytes) in sections(data) {
        let name = match kind {
            section::SEGMENT => {
                segments.push(bytes);
                format!("{:020}.log", segments.len())
            }
            section::HARD_STATE => "hard-state".to_string(),
            section::SNAPSHOT_META => "snapshot-meta".to_string(),
            section::SNAPSHOT => {
                snapshots += 1;
                format!("snapshot-{snapshots:020}.snap")
            }
            _ => "hard-state.tmp".to_string(),
        };
        std::fs::write(dir.path().join(name), bytes).expect("write input file");
    }
    let Ok(s) = FileStorage::open(dir.path(), FileStorageOptions::default()) else {
        return;
    };
    let (first, last) = (s.first_index(), s.last_index());
    assert!(
        first >= 1 && first <= last + 1,
        "first {first}, last {last}"
    );
    let mut seen = 0;
    if first <= last {
        s.entries(first, last + 1, usize::MAX, &mut |e| {
            let rec = entry_record(&e);
            let found = segments
                .iter()
                .any(|seg| seg.windows(rec.len()).any(|w| w == rec.as_slice()));
            assert!(
                found,
                "FileStorage yielded entry {} (term {}) with no CRC-valid record in the input",
                e.index, e.term
            );
            assert_eq!(s.term(e.index).ok(), Some(e.term), "term() disagrees");
            seen += 1;
            true
        })
        .expect("entries of an opened log are readable");
        assert_eq!(seen, last + 1 - first, "entries skipped");
    }
    let init = s.initial_state().expect("initial state of an opened log");
    let hs = init.hard_state;
    assert!(hs.commit <= last, "commit {} above last {last}", hs.commit);
    // An opened log must take an append and find it again after reopening.
    let term = hs.term.max(s.term(last).unwrap_or(0)).max(1);
    let mut s = s;
    let e = Entry {
        term,
        index: last + 1,
        kind: EntryKind::Normal,
        data: b"fuzz",
    };
    if s.append(e).is_err() || s.sync().is_err() {
        return;
    }
    drop(s);
    let s = FileStorage::open(dir.path(), FileStorageOptions::default())
        .expect("a log FileStorage itself wrote and synced must reopen");
    assert_eq!(s.last_index(), last + 1, "the synced append was lost");
    assert_eq!(s.term(last + 1).ok(), Some(term));
}

// ----- sim_schedule ----------------------------------------------------------------------

/// A fault schedule chosen by the fuzzer runs against a 3-node cluster with two clients;
/// every invariant and linearizability must hold, and the liveness phase must end in time.
///
/// Input: 8 bytes of seed (network randomness, election timers), then pairs
/// `[ticks to wait][action]`, at most 60 of them (see `Sim::apply_fault`).
pub fn sim_schedule(data: &[u8]) {
    let mut seed_bytes = [0u8; 8];
    let n = data.len().min(8);
    seed_bytes[..n].copy_from_slice(&data[..n]);
    let seed = u64::from_le_bytes(seed_bytes);
    let scenario = Scenario {
        nodes: Some(3),
        ..Scenario::generic("sim_schedule", 2, false, false, false)
    };
    let mut sim = Sim::new(scenario, seed);
    let schedule: Vec<(u8, u8)> = data
        .get(8..)
        .unwrap_or(&[])
        .chunks_exact(2)
        .take(60)
        .map(|p| (p[0], p[1]))
        .collect();
    if let Err(failure) = sim.run_schedule(&schedule) {
        panic!("\n{failure}\n");
    }
}

/// Seeds for the corpus of `sim_schedule`: a few schedules made from `seed`.
pub fn sim_schedule_seed(seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = seed.to_le_bytes().to_vec();
    for _ in 0..(8 + rng.below(20)) {
        out.push(rng.below(12) as u8);
        out.push(rng.below(256) as u8);
    }
    out
}

// ----- seed corpora ----------------------------------------------------------------------

/// Seed inputs for `message_decode_step`: real traffic of a 3-node cluster (votes, appends
/// with entries, heartbeats, responses), framed as the target reads it.
pub fn message_decode_step_seeds() -> Vec<Vec<u8>> {
    let mut c = Mini::new();
    let mut captured: Vec<(NodeId, Vec<u8>)> = Vec::new();
    for t in 0..40 {
        c.tick();
        if t == 25 {
            if let Some(l) = c.nodes.iter_mut().find(|n| n.role() == Role::Leader) {
                for p in [&b"put k v"[..], b"x", b""] {
                    let _ = l.propose(p);
                }
            }
        }
        for _ in 0..3 {
            let mut sent = Vec::new();
            for n in c.nodes.iter_mut() {
                while n.has_ready() {
                    let rd = n.ready();
                    let p = n.persist(rd).expect("persist");
                    sent.extend(n.messages(&p).map(|(to, b)| (to, b.to_vec())));
                    n.committed_entries(&p, &mut |_| {}).expect("read log");
                    n.advance(p);
                }
            }
            for (to, bytes) in &sent {
                let _ = c.nodes[(*to - 1) as usize].step_bytes(bytes);
            }
            captured.extend(sent);
        }
    }
    // Windows of consecutive real traffic, spread over the run (elections, appends with
    // entries, heartbeats, responses), each message addressed to its real destination.
    let captured: Vec<(NodeId, Vec<u8>)> = captured
        .into_iter()
        .filter(|(_, b)| Message::decode(b).is_ok())
        .collect();
    // Start windows at the interesting messages first (appends carrying entries, votes),
    // then spread the rest over the run.
    let mut starts: Vec<usize> = Vec::new();
    let mut seen_kinds = std::collections::BTreeSet::new();
    for (i, (_, bytes)) in captured.iter().enumerate() {
        let m = Message::decode(bytes).expect("filtered");
        let kind = match &m.body {
            tinyraft::Body::Append { entries, .. } => format!("append{}", entries.len().min(3)),
            other => format!("{:?}", std::mem::discriminant(other)),
        };
        if seen_kinds.insert((kind, m.to)) {
            starts.push(i);
        }
    }
    let spread = 30usize.saturating_sub(starts.len()).min(captured.len());
    for w in 0..spread {
        starts.push(w * captured.len() / spread.max(1));
    }
    starts.truncate(30);
    let mut seeds = Vec::new();
    for at in starts {
        let mut input = Vec::new();
        for (k, (to, bytes)) in captured[at..].iter().take(3).enumerate() {
            let ctl = (*to as u8 - 1) | if k == 2 { 4 } else { 0 };
            input.push(ctl);
            input.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            input.extend_from_slice(bytes);
        }
        seeds.push(input);
    }
    // Configuration changes through the leader: add node 4, a joint change, a removal; and a
    // real configuration entry's bytes.
    let mut input = Vec::new();
    for bytes in [&[3u8][..], &[3, 9, 17], &[0x11]] {
        input.push(16 | 4);
        input.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        input.extend_from_slice(bytes);
    }
    seeds.push(input);
    let entry = tinyraft::ConfigEntry {
        membership: tinyraft::Membership::from_voters(&[1, 2, 3]).expect("voters"),
        context: b"4=127.0.0.1:7004",
    };
    let mut buf = [0u8; tinyraft::membership::CONFIG_ENTRY_BYTES_MAX];
    let n = entry.encode(&mut buf).expect("fits");
    let mut input = vec![0u8];
    input.extend_from_slice(&(n as u16).to_le_bytes());
    input.extend_from_slice(&buf[..n]);
    seeds.push(input);
    seeds
}

/// Seed inputs for `file_storage_open`: directories FileStorage itself wrote (one or several
/// segments, conflict truncation, compaction), some with a torn or damaged tail.
pub fn file_storage_open_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for variant in 0..12u64 {
        let dir = scratch_dir();
        let path = dir.path().join("log");
        let mut opts = FileStorageOptions::default();
        if variant % 3 == 1 {
            opts = opts.segment_bytes(256);
        }
        let mut s = FileStorage::open(&path, opts).expect("open new log");
        let mut index = 0;
        for batch in 0..(1 + variant % 4) {
            for k in 0..(1 + (variant + batch) % 3) {
                index += 1;
                let data = format!("entry {index} {k}");
                s.append(Entry {
                    term: 1 + batch,
                    index,
                    kind: EntryKind::Normal,
                    data: data.as_bytes(),
                })
                .expect("append");
            }
            s.set_hard_state(&tinyraft::HardState {
                term: 1 + batch,
                vote: Some(1 + variant % 3),
                commit: index.saturating_sub(1),
            })
            .expect("hard state");
            s.sync().expect("sync");
        }
        if variant % 4 == 2 && index >= 2 {
            // A conflicting suffix replaced by a later term.
            s.append(Entry {
                term: 9,
                index: index - 1,
                kind: EntryKind::Normal,
                data: b"replacement",
            })
            .expect("append");
            s.sync().expect("sync");
        }
        if variant % 5 == 3 && s.last_index() >= 2 {
            let meta = tinyraft::SnapshotMeta {
                index: 1,
                term: s.term(1).expect("term of entry 1"),
                membership: tinyraft::Membership::from_voters(&[1, 2, 3]).expect("voters"),
            };
            s.begin_snapshot(&meta).expect("begin snapshot");
            s.write_snapshot(b"state machine bytes")
                .expect("write snapshot");
            s.finish_snapshot().expect("finish snapshot");
        }
        drop(s);
        let mut packed = pack_dir(&path);
        match variant % 6 {
            4 => packed.truncate(packed.len().saturating_sub(5)),
            5 => {
                let at = packed.len() / 2;
                packed[at] ^= 0x40;
            }
            _ => {}
        }
        seeds.push(packed);
    }
    seeds
}

/// Seed inputs for `sim_schedule`.
pub fn sim_schedule_seeds() -> Vec<Vec<u8>> {
    (0..16).map(sim_schedule_seed).collect()
}
