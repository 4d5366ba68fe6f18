//! The small file replaced atomically, `hard-state` (term, vote, commit), and the reader of
//! format 1's `snapshot-meta` (what the log was compacted to, and which segments were still
//! needed), which [`super::FileStorage::open`] converts into a snapshot file.
//!
//! `hard-state` is written as `hard-state.tmp`, fsynced, renamed over `hard-state`, and the
//! directory fsynced: at every instant it holds either the old or the new contents, never a
//! mix. A leftover `NAME.tmp` is a write that never completed; open deletes it unread.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use tinyraft::{HardState, Membership, NodeId, SnapshotMeta};

use super::error::FileStorageError;
use super::fault::FaultInjector;

/// File name of the hard state.
pub(crate) const HARD_STATE_FILE: &str = "hard-state";
/// File name of format 1's snapshot metadata, replaced by snapshot files in format 2.
pub(crate) const SNAPSHOT_META_FILE: &str = "snapshot-meta";
/// Suffix of a file being written before it is renamed into place.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

const HARD_STATE_MAGIC: [u8; 8] = *b"tnyrfhst";
const SNAPSHOT_META_MAGIC: [u8; 8] = *b"tnyrfsnp";
const VERSION: u32 = 1;

/// Bytes of the hard-state file: magic, version, term, vote, commit, crc.
const HARD_STATE_LEN: usize = 8 + 4 + 8 + 8 + 8 + 4;
/// Larger than any valid small file; a bigger file is refused without being read whole.
const SMALL_FILE_LEN_MAX: u64 = 4096;

/// The contents of `snapshot-meta`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MetaFile {
    /// The snapshot the log is compacted to (index 0 before any compaction).
    pub(crate) snapshot: SnapshotMeta,
    /// Segments with a lower sequence number are no longer needed: compaction wrote this file
    /// before deleting them, so any still present are leftovers of an interrupted deletion.
    pub(crate) first_segment_seq: u64,
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// Checks magic, version and the trailing CRC; returns the bytes between version and CRC.
fn unseal<'a>(bytes: &'a [u8], magic: &[u8; 8]) -> Result<&'a [u8], &'static str> {
    if bytes.len() < 8 + 4 + 4 {
        return Err("file too short");
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if crc32c::crc32c(content) != u32::from_le_bytes(c) {
        return Err("CRC mismatch");
    }
    if content[0..8] != magic[..] {
        return Err("bad magic");
    }
    if content[8..12] != VERSION.to_le_bytes() {
        return Err("unsupported format version");
    }
    Ok(&content[12..])
}

pub(crate) fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    let mut b = Vec::with_capacity(HARD_STATE_LEN);
    b.extend_from_slice(&HARD_STATE_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&hs.term.to_le_bytes());
    // Node id 0 is never valid, so it stands for "no vote".
    b.extend_from_slice(&hs.vote.unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&hs.commit.to_le_bytes());
    seal(b)
}

pub(crate) fn decode_hard_state(bytes: &[u8]) -> Result<HardState, &'static str> {
    if bytes.len() != HARD_STATE_LEN {
        return Err("hard-state file of the wrong length");
    }
    let c = unseal(bytes, &HARD_STATE_MAGIC)?;
    let vote: NodeId = u64_at(c, 8);
    Ok(HardState {
        term: u64_at(c, 0),
        vote: (vote != 0).then_some(vote),
        commit: u64_at(c, 16),
    })
}

pub(crate) fn push_ids(b: &mut Vec<u8>, ids: &[NodeId]) {
    // At most PEERS_MAX ids, so the count fits a byte.
    b.push(ids.len() as u8);
    for id in ids {
        b.extend_from_slice(&id.to_le_bytes());
    }
}

pub(crate) fn take_ids<const N: usize>(
    c: &mut &[u8],
) -> Result<heapless::Vec<NodeId, N>, &'static str> {
    let (&n, rest) = c.split_first().ok_or("membership truncated")?;
    let n = n as usize;
    if n > N {
        return Err("membership list longer than its capacity");
    }
    if rest.len() < n * 8 {
        return Err("membership truncated");
    }
    let mut ids = heapless::Vec::new();
    for i in 0..n {
        // Cannot fail: n <= N was checked above.
        let _ = ids.push(u64_at(rest, i * 8));
    }
    *c = &rest[n * 8..];
    Ok(ids)
}

/// Format 1 is only read now; tests still write it to check the conversion.
#[cfg(test)]
pub(crate) fn encode_meta(m: &MetaFile) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + 16 * tinyraft::limits::VOTERS_MAX);
    b.extend_from_slice(&SNAPSHOT_META_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&m.snapshot.index.to_le_bytes());
    b.extend_from_slice(&m.snapshot.term.to_le_bytes());
    b.extend_from_slice(&m.first_segment_seq.to_le_bytes());
    push_ids(&mut b, &m.snapshot.membership.voters);
    push_ids(&mut b, &m.snapshot.membership.learners);
    seal(b)
}

pub(crate) fn decode_meta(bytes: &[u8]) -> Result<MetaFile, &'static str> {
    let c = unseal(bytes, &SNAPSHOT_META_MAGIC)?;
    if c.len() < 24 {
        return Err("snapshot-meta file too short");
    }
    let mut rest = &c[24..];
    let voters = take_ids(&mut rest)?;
    let learners = take_ids(&mut rest)?;
    if !rest.is_empty() {
        return Err("trailing bytes in snapshot-meta file");
    }
    Ok(MetaFile {
        snapshot: SnapshotMeta {
            index: u64_at(c, 0),
            term: u64_at(c, 8),
            membership: Membership {
                voters,
                learners,
                ..Membership::EMPTY
            },
        },
        first_segment_seq: u64_at(c, 16),
    })
}

/// Reads a small file; `Ok(None)` if it does not exist.
pub(crate) fn read_small(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, FileStorageError> {
    let path = dir.join(name);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileStorageError::io("open", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| FileStorageError::io("stat", &path, e))?
        .len();
    if len > SMALL_FILE_LEN_MAX {
        return Err(FileStorageError::corrupt(
            path,
            0,
            "file far larger than its format allows",
        ));
    }
    let bytes = fs::read(&path).map_err(|e| FileStorageError::io("read", &path, e))?;
    Ok(Some(bytes))
}

/// Replaces `dir/name` with `bytes` atomically and durably. Counts two fsyncs in `meta_syncs`.
///
/// An error from an fsync leaves the caller unable to tell what is on disk, so the caller must
/// poison itself; an error before the first fsync changed nothing visible.
pub(crate) fn write_atomic(
    dir: &Path,
    dir_file: &File,
    name: &str,
    bytes: &[u8],
    faults: Option<&FaultInjector>,
    meta_syncs: &mut u64,
) -> Result<(), AtomicWriteError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let path = dir.join(name);
    let mut f = File::create(&tmp)
        .map_err(|e| AtomicWriteError::Clean(FileStorageError::write(&tmp, e)))?;
    if let Err(e) = f.write_all(bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(AtomicWriteError::Clean(FileStorageError::write(&tmp, e)));
    }
    *meta_syncs += 1;
    let synced = match faults.and_then(|f| f.take_meta_sync_failure()) {
        Some(e) => Err(e),
        None => f.sync_all(),
    };
    if let Err(e) = synced {
        // The temp file never replaced anything, so the old contents still stand; but the
        // kernel may have dropped dirty pages of the directory, so poison anyway.
        let _ = fs::remove_file(&tmp);
        return Err(AtomicWriteError::Poison(FileStorageError::io(
            "fsync", tmp, e,
        )));
    }
    drop(f);
    fs::rename(&tmp, &path)
        .map_err(|e| AtomicWriteError::Poison(FileStorageError::io("rename", &path, e)))?;
    sync_dir(dir, dir_file, faults, meta_syncs).map_err(AtomicWriteError::Poison)
}

/// Makes renames, creations and deletions in the directory durable.
pub(crate) fn sync_dir(
    dir: &Path,
    dir_file: &File,
    faults: Option<&FaultInjector>,
    meta_syncs: &mut u64,
) -> Result<(), FileStorageError> {
    *meta_syncs += 1;
    let r = match faults.and_then(|f| f.take_meta_sync_failure()) {
        Some(e) => Err(e),
        None => dir_file.sync_all(),
    };
    r.map_err(|e| FileStorageError::io("fsync of directory", dir, e))
}

/// How an atomic write failed.
#[derive(Debug)]
pub(crate) enum AtomicWriteError {
    /// Nothing changed; the storage may go on.
    Clean(FileStorageError),
    /// An fsync or rename failed: the storage must poison itself.
    Poison(FileStorageError),
}

impl AtomicWriteError {
    /// The error, for callers that stop at any failure.
    pub(crate) fn into_inner(self) -> FileStorageError {
        match self {
            Self::Clean(e) | Self::Poison(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_state_roundtrip() {
        for hs in [
            HardState::default(),
            HardState {
                term: 9,
                vote: Some(3),
                commit: 77,
            },
        ] {
            assert_eq!(decode_hard_state(&encode_hard_state(&hs)), Ok(hs));
        }
        let mut b = encode_hard_state(&HardState::default());
        b[13] ^= 4;
        assert!(decode_hard_state(&b).is_err());
        assert!(decode_hard_state(&b[..7]).is_err());
    }

    #[test]
    fn meta_roundtrip_and_garbage() {
        let m = MetaFile {
            snapshot: SnapshotMeta {
                index: 10,
                term: 2,
                membership: Membership::from_voters(&[1, 2, 3]).unwrap(),
            },
            first_segment_seq: 4,
        };
        let b = encode_meta(&m);
        assert_eq!(decode_meta(&b), Ok(m));
        for cut in 0..b.len() {
            assert!(decode_meta(&b[..cut]).is_err());
        }
        // A forged count larger than VOTERS_MAX with a valid CRC is still refused.
        let mut forged = b[..b.len() - 4].to_vec();
        forged[36] = 200;
        assert!(decode_meta(&seal(forged)).is_err());
    }
}
