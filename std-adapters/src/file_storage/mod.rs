//! `FileStorage`: a durable, file-backed [`tinyraft::Storage`].
//!
//! The log is a directory of append-only segment files, a small `hard-state` file replaced
//! atomically, and snapshot files. Writes are buffered in memory until [`Storage::sync`], which
//! writes everything appended since the previous sync as one *batch* with one `write` and makes
//! it durable with one `fdatasync` (group commit). Reads are served from an in-memory index
//! (term and file position of every live entry), so [`Storage::term`] never touches the disk,
//! and entries are read with `pread` through a small reusable window. Snapshots are streamed:
//! written from the caller's slices straight to a file and read back with `pread` into the
//! caller's buffer, so memory does not grow with the snapshot's size.
//!
//! # On-disk format (version 2)
//!
//! All integers are little-endian. CRC means CRC32C (Castagnoli).
//!
//! ```text
//! DIR/
//!   00000000000000000001.log              segment 1 (20-digit sequence number; names sort by number)
//!   00000000000000000002.log              ...
//!   hard-state                            term, vote, commit (replaced atomically)
//!   snapshot-00000000000000000007.snap    snapshot generation 7: the current one (highest)
//!   snapshot-00000000000000000006.snap    the previous one, kept as a fallback
//!   snapshot-<gen>.snap.corrupt           a snapshot open refused and replaced (kept for inspection)
//!   *.tmp                                 a file whose writing never completed: deleted on open
//!   anything else                         ignored
//! ```
//!
//! Version 2 changed only how snapshots are stored: version 1's `snapshot-meta` file (a
//! compaction point without data) is converted on open into a snapshot file with no data.
//!
//! **Segment** = 32-byte header, then batches.
//!
//! ```text
//! header:  magic "tnyrflog" (8) | version u32 = 1 | 0u32 | seq u64 | 0u32 | crc u32 of bytes 0..28
//! record:  len u32 | crc u32 | body[len]        crc = CRC32C(len bytes ++ body), 1 <= len <= 4114
//! bodies:  batch header  = 1u8 | seq u64 | batch_len u64 | commit u64            (len = 25)
//!          entry         = 2u8 | index u64 | term u64 | kind u8 | data[len - 18]
//! batch:   one batch-header record, then the entry records appended since the last sync;
//!          batch_len counts every byte of the batch, its header included.
//! ```
//!
//! Batch sequence numbers increase by one across all segments; a segment is never split
//! inside a batch. A segment is created by writing its header and first batch to
//! `NAME.log.tmp`, `fdatasync`, rename to `NAME.log`, fsync of the directory, so a segment is
//! never seen half-created. The log rolls to a new segment when a sync finds the current one at
//! or past [`FileStorageOptions::segment_bytes`] (so segments overshoot by at most one batch).
//!
//! An entry record whose index is at or below the last index replaces the suffix from that
//! index on, exactly as [`Storage::append`] does: conflict truncation is itself appended,
//! never done in place. Entries at or below the snapshot index carry no live data.
//!
//! **`hard-state`** (40 bytes): magic "tnyrfhst" | version u32 | term u64 | vote u64 (0 =
//! none) | commit u64 | crc u32 of everything before it. Replaced by write to
//! `hard-state.tmp`, fsync, rename, fsync of the directory. It is rewritten only when term or
//! vote change; the commit index travels in every batch header (covered by the batch's
//! `fdatasync`), and on open the commit index is the largest of the two and the snapshot index,
//! capped at the last index. Persisting the commit index is an optimisation, not a safety need,
//! so a sync whose only news is a higher commit index does no I/O at all: the value goes to
//! disk with the next batch. (Otherwise a follower would pay an `fdatasync` for every commit
//! advance a heartbeat brings.)
//!
//! **Snapshot file** `snapshot-GEN.snap` (GEN: 20 digits; a later snapshot has a higher
//! generation, whatever its index) = header | data | trailer.
//!
//! ```text
//! meta:    index u64 | term u64 | first_segment_seq u64
//!          | voter count u8 | voters u64... | learner count u8 | learners u64...
//! header:  magic "tnyrfsnh" (8) | version u32 = 1 | gen u64 | meta | crc u32 of the header before it
//! data:    the snapshot's bytes, as given to write_snapshot
//! trailer: magic "tnyrfsnt" (8) | gen u64 | meta | data_len u64 | data_crc u32
//!          | trailer_len u32 | crc u32 of the trailer before it
//! ```
//!
//! The file's length must be exactly header + `data_len` + `trailer_len`; `data_crc` covers the
//! data. The metadata is in both header and trailer so that a truncated file or a damaged
//! header still tells open which entries the snapshot covered. `first_segment_seq` is the first
//! segment the log after this snapshot needs: lower segments hold only records at or below its
//! index, or (when the snapshot replaced the whole log) records of a log it superseded.
//!
//! A snapshot is written as `snapshot-GEN.snap.tmp`: the header at `begin_snapshot`, the data
//! at each `write_snapshot` (straight from the caller's slice; a running CRC is the only
//! state), then at `finish_snapshot` the header again (now with `first_segment_seq`), the
//! trailer, `fdatasync`, rename to `snapshot-GEN.snap`, fsync of the directory. Only then is
//! the log cut:
//!
//! - if the log holds the snapshot's index with the snapshot's term, the entries after it are
//!   kept (pending appends are synced first, so a conflict truncation still in memory cannot
//!   be lost behind a durable snapshot); `first_segment_seq` is the first segment holding a
//!   record above the index (the last segment if none does);
//! - otherwise the whole log is discarded, pending appends included, the next append must be
//!   `index + 1`, and `first_segment_seq` is a segment not yet created: the next sync starts it.
//!
//! Then the previous snapshot's predecessor and the segments only it needed are deleted. The
//! previous snapshot stays as the fallback, and so do the segments it needs, as long as they
//! can still serve it (after a snapshot that replaced the log they cannot, and go at once; with
//! no previous snapshot there is nothing to keep them for). So the disk holds two snapshots and
//! the log back to the older one.
//!
//! # Durability and recovery
//!
//! A sync first replaces `hard-state` if term or vote changed, then writes and syncs the batch,
//! so a crash can leave a new term with an old log, never the reverse. Because nothing is
//! written after a sync until that sync succeeded, the existence of later data proves earlier
//! data was synced. On open:
//!
//! - The newest snapshot file is checked completely (header, trailer, their agreement, the
//!   length, and the data CRC, read in 64 KiB pieces) and becomes current. Segments from its
//!   `first_segment_seq` on are replayed.
//! - A snapshot file that fails a check was damaged after it was written (it appeared under its
//!   name only once complete and durable), so it is refused with
//!   [`FileStorageError::Corrupt`] naming the file. Open then falls back to the previous
//!   snapshot only if that one passes every check **and** the log replayed after it holds the
//!   refused snapshot's index with its term (read from whichever of header and trailer is
//!   intact): then the previous snapshot plus the log rebuild exactly the refused snapshot's
//!   state. The refused file is renamed to `NAME.corrupt` and reported in
//!   [`RecoveryReport::refused_snapshot`]. Otherwise open fails with the first error, saying
//!   why the fallback was impossible: acknowledged entries are never silently dropped.
//! - An I/O error reading the newest snapshot is returned as it is (no fallback).
//! - A batch is applied only once all its records were read: recovery is all-or-nothing per
//!   `sync` call.
//! - Damage (short record, bad CRC, bad length) in the **last batch of the last segment**, or
//!   where the next batch header should be with no valid batch header anywhere after it, is a
//!   torn write: the file is cut there and the cut is synced ([`RecoveryReport::torn_tail`]).
//! - Damage anywhere else (in a segment that is not the last, or followed by later data) is
//!   refused with [`FileStorageError::Corrupt`] naming the file and byte offset: acknowledged
//!   entries are never silently dropped. So is a record with a valid CRC but an impossible
//!   content, a missing segment, or a bad segment header.
//! - Temp files are deleted unread. Snapshots older than the fallback, and segments neither the
//!   current snapshot nor the fallback needs, are deleted once everything else checked out.
//! - Limitation: damage confined to the last batch cannot be told apart from a write the
//!   crash interrupted, so it is treated as torn, even if that batch had been synced.
//! - Limitation: only open checks a snapshot's CRC; [`Storage::read_snapshot`] returns what
//!   the disk returns.
//!
//! # Failures
//!
//! A failed `fsync`/`fdatasync` **poisons** the storage: every later `append`,
//! `set_hard_state`, `sync`, `begin_snapshot`, `write_snapshot` and `finish_snapshot` fails
//! with [`FileStorageError::Poisoned`]. The kernel may already have dropped the dirty pages and
//! marked them clean, so retrying the sync could "succeed" without the data ever reaching the
//! disk. The only safe continuation is to drop the storage and open the directory again, which
//! reads what is really there. A failed *write* (before any sync) is rolled back by truncating
//! the segment to its synced length and does not poison; out of space is reported as
//! [`tinyraft::StorageErrorKind::Full`]. A failed write of a snapshot abandons that snapshot
//! (its temp file is deleted; the current snapshot is untouched) and does not poison either.
//!
//! One process at a time may open a directory; this is not enforced (no lock file yet).

mod error;
mod fault;
mod hard_state;
mod record;
mod segment;
mod snapshot;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::mem;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tinyraft::limits::ENTRY_DATA_BYTES_MAX;
use tinyraft::{
    Entry, HardState, Index, InitialState, Membership, NodeId, SnapshotMeta, Storage, StorageError,
    StorageErrorKind, Term,
};

pub use error::FileStorageError;
pub use fault::{flip_bit, overwrite, set_file_len, FaultInjector};

use fault::WriteFault;
use hard_state::{
    decode_hard_state, decode_meta, encode_hard_state, read_small, sync_dir, write_atomic,
    AtomicWriteError, HARD_STATE_FILE, SNAPSHOT_META_FILE, TMP_SUFFIX,
};
use record::{
    decode, encode_batch, encode_entry, encode_segment_header, BatchHeader, Decoded, Record,
    BATCH_RECORD_LEN, ENTRY_RECORD_OVERHEAD, SEGMENT_HEADER_LEN,
};
use segment::{
    parse_segment_file_name, segment_file_name, Loc, Replay, Segment, Window, SEGMENT_SEQ_MAX,
};
use snapshot::{
    parse_snapshot_file_name, snapshot_file_name, Refused, SnapshotFile, SnapshotHeader,
    SnapshotWriter, REFUSED_SUFFIX,
};

/// Default [`FileStorageOptions::segment_bytes`]: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Bytes read at once when serving [`Storage::entries`] from a segment.
const READ_WINDOW_BYTES: usize = 64 * 1024;
/// A write buffer grown past this by a large batch is given back after the batch is written.
const WRITE_BUFFER_KEEP_BYTES: usize = 1 << 20;

/// How to open a [`FileStorage`].
#[derive(Clone, Debug)]
pub struct FileStorageOptions {
    segment_bytes: u64,
    bootstrap_membership: Option<Membership>,
    faults: Option<FaultInjector>,
}

impl Default for FileStorageOptions {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            bootstrap_membership: None,
            faults: None,
        }
    }
}

impl FileStorageOptions {
    /// Default options: 64 MiB segments, no bootstrap membership, no fault injection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Size at which a segment is closed and the next sync starts a new one. Must be at least 1;
    /// a segment overshoots by at most one batch. Snapshots free log space in whole segments,
    /// so smaller segments free space sooner at the cost of more files.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// The membership of a new cluster. Persisted (as a snapshot at index 0 with no data) only
    /// when the directory holds no state yet; ignored when it does.
    pub fn bootstrap_membership(mut self, membership: Membership) -> Self {
        self.bootstrap_membership = Some(membership);
        self
    }

    /// Hooks for tests that make writes and syncs fail (see [`FaultInjector`]).
    pub fn faults(mut self, faults: FaultInjector) -> Self {
        self.faults = Some(faults);
        self
    }
}

/// Counters for benchmarks and tests. Cumulative since [`FileStorage::open`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStorageStats {
    /// `sync` calls that had something to make durable. A sync with nothing new (or only a
    /// higher commit index) does no I/O.
    pub syncs: u64,
    /// `fdatasync` calls on log segments: exactly one per sync that wrote a batch, however
    /// many entries it held.
    pub log_fsyncs: u64,
    /// fsyncs of `hard-state` and of the directory: two each time term or vote change, one per
    /// new segment, one per finished snapshot.
    pub meta_fsyncs: u64,
    /// Bytes written to log segments (records and segment headers).
    pub log_bytes_written: u64,
    /// Entries written by syncs (an entry replaced by a conflicting append before its sync is
    /// never written, so it is not counted).
    pub entries_written: u64,
    /// Batches written.
    pub batches_written: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments deleted because no kept snapshot needs them any more.
    pub segments_deleted: u64,
    /// `fdatasync` calls on snapshot files: one per finished snapshot.
    pub snapshot_fsyncs: u64,
    /// Bytes written to snapshot files (data, headers and trailers).
    pub snapshot_bytes_written: u64,
    /// Snapshots made durable and current by `finish_snapshot`.
    pub snapshots_finished: u64,
    /// Snapshot files deleted after a newer one became durable.
    pub snapshot_files_deleted: u64,
}

/// A torn write found and cut off when the storage was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment that was cut (always the last).
    pub path: PathBuf,
    /// Its new length: where the torn batch began.
    pub offset: u64,
    /// Bytes removed.
    pub bytes_dropped: u64,
}

/// What [`FileStorage::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read.
    pub segments: usize,
    /// The torn write cut off the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Leftovers deleted: temp files of interrupted writes, and snapshot files and segments
    /// that an interrupted `finish_snapshot` had not yet deleted.
    pub leftovers_removed: usize,
    /// The newest snapshot, if it failed its checks and the previous one replaced it.
    pub refused_snapshot: Option<RefusedSnapshot>,
}

/// A damaged snapshot that open set aside because the previous snapshot and the log could
/// stand in for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedSnapshot {
    /// Where it was.
    pub path: PathBuf,
    /// Where it is now (`NAME.corrupt`), kept for inspection.
    pub moved_to: PathBuf,
    /// What was wrong with it (the text of the [`FileStorageError::Corrupt`] naming the file).
    pub reason: String,
    /// The snapshot used instead.
    pub replaced_by: PathBuf,
}

/// The snapshot kept as a fallback: what open needs to know about it without reading it.
#[derive(Debug)]
struct Fallback {
    path: PathBuf,
    first_segment_seq: u64,
}

/// What open decided about the snapshot files.
struct ChosenSnapshot {
    /// The current snapshot (`None` if there is no snapshot file).
    current: Option<SnapshotFile>,
    /// Its position in the newest-first list of generations.
    pos: usize,
    /// The newest snapshot, if it was refused and `current` is the one before it.
    refused: Option<(PathBuf, Box<Refused>)>,
}

/// A durable [`Storage`] in a directory of append-only segment files. See the
/// [module documentation](self) for the format and the recovery rules.
///
/// Not `Sync`: reads share one buffer through a `RefCell`. Dropping it without `sync` loses
/// what was appended since the last sync, and a snapshot begun but not finished, exactly as a
/// crash would (open deletes the unfinished snapshot's temp file).
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    dir_file: File,
    segment_bytes: u64,
    faults: Option<FaultInjector>,
    /// Open segments, consecutive sequence numbers. Only the last one is written to.
    segments: VecDeque<Segment>,
    /// Live entries. Invariant: `locs[k]` is entry `snapshot.index + 1 + k`; the pending ones
    /// (in `batch`, not yet written) form a suffix.
    locs: VecDeque<Loc>,
    /// Index of the first pending entry, if any entry is pending.
    first_pending: Option<Index>,
    /// Metadata of the current snapshot (all zero and empty without one).
    snapshot: SnapshotMeta,
    /// The current snapshot's file, open for `read_snapshot` (`None` if there is no snapshot).
    snapshot_file: Option<SnapshotFile>,
    /// The previous snapshot, kept until the next one is durable.
    fallback: Option<Fallback>,
    /// Segments below `first_segment_seq` kept only because the fallback needs them (not open).
    /// Invariant: every one is below `first_segment_seq`.
    retained: Vec<PathBuf>,
    /// The snapshot being written, if one was begun.
    incoming: Option<SnapshotWriter>,
    /// Generation of the next snapshot begun (`None` once the numbers are exhausted).
    next_snapshot_gen: Option<u64>,
    /// The first segment the log after the current snapshot needs; the next segment created
    /// gets this number when `segments` is empty.
    first_segment_seq: u64,
    membership: Option<Membership>,
    /// The hard state as last set.
    hard_state: HardState,
    /// Term and vote in the durable `hard-state` file.
    durable_term_vote: (Term, Option<NodeId>),
    /// Records appended since the last sync. Empty, or the first `BATCH_RECORD_LEN` bytes are
    /// reserved for the batch header, filled in at sync.
    batch: Vec<u8>,
    /// Highest entry index among the records in `batch` (an upper bound after a cut).
    batch_max_index: Index,
    next_batch_seq: u64,
    read_window: RefCell<Window>,
    /// Why the storage refuses writes, if it does.
    poisoned: Option<String>,
    stats: FileStorageStats,
    recovery: RecoveryReport,
}

impl FileStorage {
    /// Opens the storage in `dir`, creating the directory if needed, and recovers it: checks
    /// the newest snapshot (falling back to the previous one only when that loses nothing),
    /// reads every segment the log after it needs, cuts a torn tail off the last one, and
    /// refuses corruption anywhere else (see the [module documentation](self)).
    pub fn open(
        dir: impl AsRef<Path>,
        options: FileStorageOptions,
    ) -> Result<Self, FileStorageError> {
        let dir = dir.as_ref().to_path_buf();
        if options.segment_bytes == 0 {
            return Err(FileStorageError::InvalidOptions(
                "segment_bytes must be at least 1",
            ));
        }
        let faults = options.faults.clone();
        let mut recovery = RecoveryReport::default();
        let mut stats = FileStorageStats::default();
        if !dir.exists() {
            fs::create_dir_all(&dir)
                .map_err(|e| FileStorageError::io("create directory", &dir, e))?;
            // The new directory's entry in its parent must be durable too, or a crash could
            // take the whole log with it.
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let parent_file = File::open(parent)
                .map_err(|e| FileStorageError::io("open directory", parent, e))?;
            sync_dir(
                parent,
                &parent_file,
                faults.as_ref(),
                &mut stats.meta_fsyncs,
            )?;
        }
        let dir_file =
            File::open(&dir).map_err(|e| FileStorageError::io("open directory", &dir, e))?;

        let Listing {
            seqs,
            mut gens,
            mut next_gen,
        } = list_dir(&dir, &mut recovery)?;

        let hard_state = read_small(&dir, HARD_STATE_FILE)?
            .map(|b| {
                decode_hard_state(&b)
                    .map_err(|r| FileStorageError::corrupt(dir.join(HARD_STATE_FILE), 0, r))
            })
            .transpose()?;

        // Format 1 kept the compaction point, without data, in `snapshot-meta`: it becomes a
        // snapshot file with no data, durable before the old file goes.
        if let Some(bytes) = read_small(&dir, SNAPSHOT_META_FILE)? {
            let old = dir.join(SNAPSHOT_META_FILE);
            let legacy = decode_meta(&bytes).map_err(|r| FileStorageError::corrupt(&old, 0, r))?;
            if gens.is_empty() {
                let gen = take_gen(&mut next_gen)?;
                let header = SnapshotHeader {
                    gen,
                    meta: legacy.snapshot,
                    first_segment_seq: legacy.first_segment_seq,
                };
                write_empty_snapshot(&dir, &dir_file, header, faults.as_ref(), &mut stats)?;
                gens.push(gen);
            }
            fs::remove_file(&old).map_err(|e| FileStorageError::io("remove", &old, e))?;
            sync_dir(&dir, &dir_file, faults.as_ref(), &mut stats.meta_fsyncs)?;
        }
        let fresh = hard_state.is_none() && gens.is_empty() && seqs.is_empty();
        if let (true, Some(membership)) = (fresh, options.bootstrap_membership) {
            let gen = take_gen(&mut next_gen)?;
            let header = SnapshotHeader {
                gen,
                meta: SnapshotMeta {
                    index: 0,
                    term: 0,
                    membership,
                },
                first_segment_seq: 1,
            };
            write_empty_snapshot(&dir, &dir_file, header, faults.as_ref(), &mut stats)?;
            gens.push(gen);
        }
        gens.sort_unstable_by(|a, b| b.cmp(a));

        let chosen = choose_snapshot(&dir, &gens)?;
        let (snapshot, first_segment_seq) = chosen.current.as_ref().map_or_else(
            || (SnapshotMeta::default(), 1),
            |f| (f.header.meta.clone(), f.header.first_segment_seq.max(1)),
        );
        let live_from = seqs.partition_point(|&s| s < first_segment_seq);
        let replayed = replay_segments(&dir, &seqs[live_from..], first_segment_seq, snapshot.index);
        let mut refused_report = None;
        let (segments, mut replay) = match (chosen.refused, &chosen.current) {
            (Some((path, refused)), Some(used)) => {
                // The previous snapshot plus the log must rebuild exactly the state of the
                // refused one, or acknowledged entries would be lost.
                let reason = refused.error.to_string();
                let want = refused.header.as_ref().map(|h| (h.meta.index, h.meta.term));
                let because = |why: String| {
                    refused.error.explain(format!(
                        "the previous snapshot {} cannot replace it: {why}",
                        used.path.display()
                    ))
                };
                let (segments, replay) = match replayed {
                    Ok(r) => r,
                    Err(e) if e.kind() == StorageErrorKind::Corrupt => {
                        return Err(because(e.to_string()))
                    }
                    Err(e) => return Err(e),
                };
                let have = want.and_then(|(index, _)| {
                    if index == snapshot.index {
                        Some(snapshot.term)
                    } else {
                        let k = index.checked_sub(snapshot.index + 1)?;
                        replay.locs.get(usize::try_from(k).ok()?).map(|l| l.term)
                    }
                });
                match want {
                    Some((_, term)) if have == Some(term) => {}
                    Some((index, term)) => {
                        let last = snapshot.index + replay.locs.len() as u64;
                        return Err(because(format!(
                            "the log after it does not hold entry {index} of term {term} (it \
                             covers {}..={last})",
                            snapshot.index + 1
                        )));
                    }
                    None => return Err(because("its metadata is unreadable".to_owned())),
                }
                refused_report = Some((path, reason, used.path.clone()));
                (segments, replay)
            }
            _ => replayed?,
        };

        // Everything checked out: delete what neither the current snapshot nor the fallback
        // needs, and set the refused snapshot aside.
        let fallback = gens.get(chosen.pos + 1).and_then(|&gen| {
            let path = dir.join(snapshot_file_name(gen));
            snapshot::peek(&path, gen).map(|h| Fallback {
                path,
                first_segment_seq: h.first_segment_seq,
            })
        });
        for &gen in gens.iter().skip(chosen.pos + 2) {
            let path = dir.join(snapshot_file_name(gen));
            fs::remove_file(&path).map_err(|e| FileStorageError::io("remove", &path, e))?;
            recovery.leftovers_removed += 1;
        }
        let floor = fallback.as_ref().map_or(first_segment_seq, |f| {
            f.first_segment_seq.min(first_segment_seq)
        });
        let mut retained = Vec::new();
        for &seq in &seqs[..live_from] {
            let path = dir.join(segment_file_name(seq));
            if seq < floor {
                fs::remove_file(&path).map_err(|e| FileStorageError::io("remove", &path, e))?;
                recovery.leftovers_removed += 1;
            } else {
                retained.push(path);
            }
        }
        if let Some((path, reason, replaced_by)) = refused_report {
            let mut moved_to = path.clone().into_os_string();
            moved_to.push(REFUSED_SUFFIX);
            let moved_to = PathBuf::from(moved_to);
            fs::rename(&path, &moved_to).map_err(|e| FileStorageError::io("rename", &path, e))?;
            sync_dir(&dir, &dir_file, faults.as_ref(), &mut stats.meta_fsyncs)?;
            recovery.refused_snapshot = Some(RefusedSnapshot {
                path,
                moved_to,
                reason,
                replaced_by,
            });
        }
        recovery.segments = segments.len();
        recovery.torn_tail = replay.torn.take();

        let hs = hard_state.unwrap_or_default();
        let last_index = snapshot.index + replay.locs.len() as u64;
        let commit = hs
            .commit
            .max(replay.commit)
            .max(snapshot.index)
            .min(last_index);
        let membership = chosen
            .current
            .as_ref()
            .map(|f| f.header.meta.membership.clone());
        Ok(Self {
            dir,
            dir_file,
            segment_bytes: options.segment_bytes,
            faults,
            segments,
            locs: replay.locs,
            first_pending: None,
            snapshot,
            snapshot_file: chosen.current,
            fallback,
            retained,
            incoming: None,
            next_snapshot_gen: next_gen,
            first_segment_seq,
            membership,
            hard_state: HardState { commit, ..hs },
            durable_term_vote: (hs.term, hs.vote),
            batch: Vec::new(),
            batch_max_index: 0,
            next_batch_seq: replay.batch_seq.map_or(1, |s| s.wrapping_add(1)),
            read_window: RefCell::new(Window::new()),
            poisoned: None,
            stats,
            recovery,
        })
    }

    /// The directory this storage lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters of I/O done since open.
    pub fn stats(&self) -> FileStorageStats {
        self.stats
    }

    /// What open found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The hard state as last set (after open: as recovered, commit capped at the last index).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Number of open segments: those the log after the current snapshot needs.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes of log written and synced, over all segments.
    pub fn log_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Bytes the storage occupies on disk (file sizes, not allocated blocks): segments, those
    /// kept for the fallback snapshot included, `hard-state`, and the current and fallback
    /// snapshot files. A snapshot being written is not counted.
    pub fn disk_usage(&self) -> u64 {
        let others = self
            .retained
            .iter()
            .chain(self.snapshot_file.as_ref().map(|f| &f.path))
            .chain(self.fallback.as_ref().map(|f| &f.path))
            .cloned()
            .chain([self.dir.join(HARD_STATE_FILE)])
            .filter_map(|path| fs::metadata(path).ok())
            .map(|m| m.len())
            .sum::<u64>();
        self.log_bytes() + others
    }

    /// Number of segment files on disk: the open ones plus those kept only for the fallback
    /// snapshot.
    pub fn segment_files(&self) -> usize {
        self.segments.len() + self.retained.len()
    }

    /// The current snapshot's file, if there is a snapshot.
    pub fn snapshot_path(&self) -> Option<&Path> {
        self.snapshot_file.as_ref().map(|f| f.path.as_path())
    }

    /// The previous snapshot's file, kept as a fallback until the next snapshot is durable.
    pub fn fallback_snapshot_path(&self) -> Option<&Path> {
        self.fallback.as_ref().map(|f| f.path.as_path())
    }

    /// Why the storage refuses writes, if an earlier failure poisoned it.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn check_poisoned(&self) -> Result<(), FileStorageError> {
        match &self.poisoned {
            Some(cause) => Err(FileStorageError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records `e` as the reason to refuse every later write, and hands it back.
    fn poison(&mut self, e: FileStorageError) -> FileStorageError {
        if self.poisoned.is_none() {
            self.poisoned = Some(e.to_string());
        }
        e
    }

    fn segment(&self, seq: u32) -> Option<&Segment> {
        let first = self.segments.front()?.seq;
        let k = u64::from(seq).checked_sub(first)?;
        self.segments.get(usize::try_from(k).ok()?)
    }

    fn pending_entry(&self, index: Index, loc: &Loc) -> Result<Entry<'_>, FileStorageError> {
        match self.batch.get(loc.off as usize..).map(decode) {
            Some(Decoded::Record(Record::Entry(e), _)) if e.index == index => Ok(e),
            _ => Err(FileStorageError::corrupt(
                self.dir.join("<write buffer>"),
                loc.off,
                "pending entry not found in the write buffer",
            )),
        }
    }

    fn stored_entry<'w>(
        &self,
        window: &'w mut Window,
        index: Index,
        loc: &Loc,
    ) -> Result<Entry<'w>, FileStorageError> {
        let Some(seg) = self.segment(loc.seg) else {
            return Err(FileStorageError::corrupt(
                self.dir.join(segment_file_name(loc.seg.into())),
                loc.off,
                "segment of a live entry is gone",
            ));
        };
        let need = ENTRY_RECORD_OVERHEAD + loc.data_len as usize;
        let bytes = window
            .get(seg, seg.len, loc.off, need, READ_WINDOW_BYTES)
            .map_err(|e| FileStorageError::io("read", &seg.path, e))?;
        match decode(&bytes[..need]) {
            Decoded::Record(Record::Entry(e), _) if e.index == index && e.term == loc.term => Ok(e),
            Decoded::Record(..) => Err(FileStorageError::corrupt(
                &seg.path,
                loc.off,
                format!("expected the record of entry {index} here"),
            )),
            Decoded::Short | Decoded::Damaged(_) | Decoded::Malformed(_) => {
                Err(FileStorageError::corrupt(
                    &seg.path,
                    loc.off,
                    "record damaged since it was written",
                ))
            }
        }
    }

    /// Writes the batch and makes it durable with one `fdatasync`.
    fn write_batch(&mut self) -> Result<(), FileStorageError> {
        debug_assert!(self.batch.len() >= BATCH_RECORD_LEN);
        let header = BatchHeader {
            seq: self.next_batch_seq,
            len: self.batch.len() as u64,
            commit: self.hard_state.commit,
        };
        encode_batch(&mut self.batch[..BATCH_RECORD_LEN], &header);
        let roll = self
            .segments
            .back()
            .is_none_or(|s| s.len >= self.segment_bytes);
        let (seq, base) = if roll {
            self.write_new_segment()?
        } else {
            self.write_last_segment()?
        };

        let batch_len = self.batch.len() as u64;
        if let Some(seg) = self.segments.back_mut() {
            seg.len = base + batch_len;
            seg.max_index = seg.max_index.max(self.batch_max_index);
        }
        let mut entries = 0;
        for loc in self.locs.iter_mut().rev() {
            if !loc.is_pending() {
                break;
            }
            loc.seg = seq;
            loc.off += base;
            entries += 1;
        }
        self.stats.log_fsyncs += 1;
        self.stats.log_bytes_written += batch_len;
        self.stats.batches_written += 1;
        self.stats.entries_written += entries;
        self.next_batch_seq = self.next_batch_seq.wrapping_add(1);
        self.batch.clear();
        if self.batch.capacity() > WRITE_BUFFER_KEEP_BYTES {
            self.batch.shrink_to(WRITE_BUFFER_KEEP_BYTES);
        }
        self.batch_max_index = 0;
        self.first_pending = None;
        Ok(())
    }

    /// Writes `bytes` at `off` of `file`, obeying an armed write fault. `Err(true)` means the
    /// injected "crash" happened and nothing may be cleaned up.
    fn write_at(&self, file: &File, bytes: &[u8], off: u64) -> Result<(), (io::Error, bool)> {
        match self
            .faults
            .as_ref()
            .and_then(FaultInjector::take_write_fault)
        {
            Some(WriteFault::Fail(kind)) => {
                Err((io::Error::new(kind, "injected write failure"), false))
            }
            Some(WriteFault::Crash(keep)) => {
                let keep = keep.min(bytes.len());
                let r = file.write_all_at(&bytes[..keep], off);
                Err((
                    r.err()
                        .unwrap_or_else(|| io::Error::other("injected crash during write")),
                    true,
                ))
            }
            None => file.write_all_at(bytes, off).map_err(|e| (e, false)),
        }
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        match self
            .faults
            .as_ref()
            .and_then(FaultInjector::take_log_sync_failure)
        {
            Some(e) => Err(e),
            None => file.sync_data(),
        }
    }

    /// Appends the batch to the last segment. Returns (segment seq, offset of the batch).
    fn write_last_segment(&mut self) -> Result<(u32, u64), FileStorageError> {
        let Some(seg) = self.segments.back() else {
            return Err(FileStorageError::InvalidOptions("no segment to write to"));
        };
        let base = seg.len;
        if let Err((e, crashed)) = self.write_at(&seg.file, &self.batch, base) {
            let path = seg.path.clone();
            if crashed {
                return Err(self.poison(FileStorageError::io("write", path, e)));
            }
            // A failed write changed only the page cache: cut the file back to its synced
            // length and the storage is as before (the batch stays buffered for a retry).
            return match seg.file.set_len(base) {
                Ok(()) => Err(FileStorageError::write(path, e)),
                Err(e2) => Err(self.poison(FileStorageError::io(
                    "truncate after failed write",
                    path,
                    e2,
                ))),
            };
        }
        if let Err(e) = self.sync_data(&seg.file) {
            let path = seg.path.clone();
            return Err(self.poison(FileStorageError::io("fdatasync", path, e)));
        }
        Ok((seg.seq as u32, base))
    }

    /// Creates the next segment holding the batch: temp file, fdatasync, rename, directory
    /// fsync. Returns (segment seq, offset of the batch).
    fn write_new_segment(&mut self) -> Result<(u32, u64), FileStorageError> {
        let seq = self
            .segments
            .back()
            .map_or(self.first_segment_seq, |s| s.seq + 1);
        if seq > SEGMENT_SEQ_MAX {
            return Err(self.poison(FileStorageError::InvalidOptions(
                "segment numbers exhausted (use larger segments)",
            )));
        }
        let path = self.dir.join(segment_file_name(seq));
        let tmp = self
            .dir
            .join(format!("{}{TMP_SUFFIX}", segment_file_name(seq)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| FileStorageError::write(&tmp, e))?;
        let base = SEGMENT_HEADER_LEN as u64;
        let written = file
            .write_all_at(&encode_segment_header(seq), 0)
            .map_err(|e| (e, false))
            .and_then(|()| self.write_at(&file, &self.batch, base));
        if let Err((e, crashed)) = written {
            if crashed {
                return Err(self.poison(FileStorageError::io("write", tmp, e)));
            }
            let _ = fs::remove_file(&tmp);
            return Err(FileStorageError::write(tmp, e));
        }
        if let Err(e) = self.sync_data(&file) {
            return Err(self.poison(FileStorageError::io("fdatasync", tmp, e)));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            return Err(self.poison(FileStorageError::io("rename", path, e)));
        }
        let synced = sync_dir(
            &self.dir,
            &self.dir_file,
            self.faults.as_ref(),
            &mut self.stats.meta_fsyncs,
        );
        if let Err(e) = synced {
            return Err(self.poison(e));
        }
        self.stats.log_bytes_written += base;
        self.stats.segments_created += 1;
        self.segments.push_back(Segment {
            seq,
            path,
            file,
            len: base,
            max_index: 0,
        });
        Ok((seq as u32, base))
    }

    fn replace_small_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), FileStorageError> {
        let r = write_atomic(
            &self.dir,
            &self.dir_file,
            name,
            bytes,
            self.faults.as_ref(),
            &mut self.stats.meta_fsyncs,
        );
        match r {
            Ok(()) => Ok(()),
            Err(AtomicWriteError::Clean(e)) => Err(e),
            Err(AtomicWriteError::Poison(e)) => Err(self.poison(e)),
        }
    }
}

impl Storage for FileStorage {
    type Error = FileStorageError;

    fn initial_state(&self) -> Result<InitialState, Self::Error> {
        Ok(InitialState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
        })
    }

    fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> Index {
        self.snapshot.index + self.locs.len() as u64
    }

    fn term(&self, index: Index) -> Result<Term, Self::Error> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.snapshot.index {
            return Err(FileStorageError::Compacted {
                index,
                first_index: self.first_index(),
            });
        }
        usize::try_from(index - self.snapshot.index - 1)
            .ok()
            .and_then(|k| self.locs.get(k))
            .map(|loc| loc.term)
            .ok_or(FileStorageError::Unavailable {
                index,
                last_index: self.last_index(),
            })
    }

    fn entries(
        &self,
        lo: Index,
        hi: Index,
        bytes_max: usize,
        visit: &mut dyn FnMut(Entry<'_>) -> bool,
    ) -> Result<(), Self::Error> {
        let first = self.first_index();
        let last = self.last_index();
        if lo < first {
            return Err(FileStorageError::Compacted {
                index: lo,
                first_index: first,
            });
        }
        if hi > last + 1 {
            return Err(FileStorageError::Unavailable {
                index: hi - 1,
                last_index: last,
            });
        }
        // `visit` may itself read from this storage; then the shared window is taken and this
        // call reads through a window of its own rather than panicking.
        let mut shared;
        let mut own;
        let window: &mut Window = match self.read_window.try_borrow_mut() {
            Ok(w) => {
                shared = w;
                &mut shared
            }
            Err(_) => {
                own = Window::new();
                &mut own
            }
        };
        let mut bytes = 0usize;
        for index in lo..hi {
            let loc = self.locs[(index - first) as usize];
            let entry = if loc.is_pending() {
                self.pending_entry(index, &loc)?
            } else {
                self.stored_entry(window, index, &loc)?
            };
            bytes = bytes.saturating_add(entry.data.len());
            if !visit(entry) || bytes > bytes_max {
                break;
            }
        }
        Ok(())
    }

    fn append(&mut self, entry: Entry<'_>) -> Result<(), Self::Error> {
        self.check_poisoned()?;
        if entry.data.len() > ENTRY_DATA_BYTES_MAX {
            return Err(FileStorageError::EntryTooLarge {
                len: entry.data.len(),
            });
        }
        let last = self.last_index();
        if entry.index <= self.snapshot.index || entry.index > last + 1 {
            return Err(FileStorageError::Unavailable {
                index: entry.index,
                last_index: last,
            });
        }
        if entry.index <= last {
            // Conflict: the suffix from entry.index goes. Pending records of removed entries
            // are cut out of the buffer (everything after the first of them in the buffer was
            // appended later and concerns only higher indexes); synced ones stay on disk and
            // are superseded on replay by the record appended below.
            if let Some(p) = self.first_pending {
                let q = p.max(entry.index);
                if q <= last {
                    let cut = self.locs[(q - self.first_index()) as usize].off as usize;
                    self.batch.truncate(cut);
                }
                if p >= entry.index {
                    self.first_pending = None;
                }
            }
            self.locs
                .truncate((entry.index - self.first_index()) as usize);
        }
        if self.batch.is_empty() {
            self.batch.resize(BATCH_RECORD_LEN, 0);
        }
        let off = self.batch.len() as u64;
        encode_entry(&mut self.batch, &entry);
        self.locs.push_back(Loc {
            term: entry.term,
            off,
            seg: Loc::PENDING,
            data_len: entry.data.len() as u32,
        });
        self.first_pending.get_or_insert(entry.index);
        self.batch_max_index = self.batch_max_index.max(entry.index);
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), Self::Error> {
        self.check_poisoned()?;
        self.hard_state = *hard_state;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.check_poisoned()?;
        let hs = self.hard_state;
        let mut wrote = false;
        if (hs.term, hs.vote) != self.durable_term_vote {
            self.replace_small_file(HARD_STATE_FILE, &encode_hard_state(&hs))?;
            self.durable_term_vote = (hs.term, hs.vote);
            wrote = true;
        }
        // A commit index alone is not worth an fdatasync; it rides with the next batch.
        if !self.batch.is_empty() {
            self.write_batch()?;
            wrote = true;
        }
        if wrote {
            self.stats.syncs += 1;
        }
        Ok(())
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot.clone()
    }

    fn snapshot_len(&self) -> u64 {
        self.snapshot_file.as_ref().map_or(0, |f| f.data_len)
    }

    /// Reads with one `pread` straight into `buf`: nothing is buffered, whatever the snapshot's
    /// size.
    fn read_snapshot(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(f) = &self.snapshot_file else {
            return Ok(0);
        };
        if offset >= f.data_len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(f.data_len - offset) as usize;
        f.file
            .read_exact_at(&mut buf[..n], f.data_off + offset)
            .map_err(|e| FileStorageError::io("read", &f.path, e))?;
        Ok(n)
    }

    /// Creates `snapshot-GEN.snap.tmp` and writes its header. An unfinished earlier snapshot's
    /// temp file is deleted.
    fn begin_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), Self::Error> {
        self.check_poisoned()?;
        if let Some(old) = self.incoming.take() {
            old.abandon();
        }
        if meta.index > snapshot::INDEX_MAX {
            return Err(FileStorageError::Unavailable {
                index: meta.index,
                last_index: self.last_index(),
            });
        }
        let header = SnapshotHeader {
            gen: take_gen(&mut self.next_snapshot_gen)?,
            meta: meta.clone(),
            // Known only at finish, when the log is cut.
            first_segment_seq: 0,
        };
        let writer =
            SnapshotWriter::create(&self.dir, header, self.faults.as_ref(), &mut self.stats)?;
        self.incoming = Some(writer);
        Ok(())
    }

    /// Writes `data` to the temp file at once (no buffering). A failed write abandons the
    /// snapshot.
    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        self.check_poisoned()?;
        let Some(writer) = self.incoming.as_mut() else {
            return Err(FileStorageError::NoSnapshotBegun);
        };
        let written = writer.write(data, self.faults.as_ref(), &mut self.stats);
        if written.is_err() {
            if let Some(w) = self.incoming.take() {
                w.abandon();
            }
        }
        written
    }

    /// Makes the snapshot durable under its final name, then cuts the log, then releases the
    /// previous fallback snapshot and the segments only it needed (see the
    /// [module documentation](self)).
    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        self.check_poisoned()?;
        let Some(writer) = self.incoming.take() else {
            return Err(FileStorageError::NoSnapshotBegun);
        };
        let meta = writer.meta().clone();
        let keep_log = self.term(meta.index).is_ok_and(|t| t == meta.term);
        if keep_log && !self.batch.is_empty() {
            // Pending records may differ from the durable log at or below the snapshot's index
            // (a conflict truncation not yet synced). Were the snapshot durable and they lost in
            // a crash, recovery would put stale entries behind it.
            if let Err(e) = self.sync() {
                self.incoming = Some(writer);
                return Err(e);
            }
        }
        let first_segment_seq = if keep_log {
            self.segments
                .iter()
                .find(|s| s.max_index > meta.index)
                .or(self.segments.back())
                .map_or(self.first_segment_seq, |s| s.seq)
        } else {
            // A segment not yet created: nothing written so far belongs to the new log.
            self.segments
                .back()
                .map_or(self.first_segment_seq, |s| s.seq + 1)
        };
        let finished = writer.finish(
            first_segment_seq,
            &self.dir,
            &self.dir_file,
            self.faults.as_ref(),
            &mut self.stats,
        );
        let file = match finished {
            Ok(f) => f,
            Err(AtomicWriteError::Clean(e)) => return Err(e),
            Err(AtomicWriteError::Poison(e)) => return Err(self.poison(e)),
        };

        // The snapshot is durable and current: cut the log.
        if keep_log {
            self.locs
                .drain(..(meta.index - self.snapshot.index) as usize);
        } else {
            self.locs.clear();
            self.batch.clear();
            self.batch_max_index = 0;
            self.first_pending = None;
        }
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.membership = Some(meta.membership.clone());
        self.snapshot = meta;
        let previous = self.snapshot_file.replace(file).map(|f| Fallback {
            path: f.path,
            first_segment_seq: f.header.first_segment_seq,
        });
        let retain = keep_log && previous.is_some();
        let released = mem::replace(&mut self.fallback, previous);

        // The segments the old fallback needed go; those only the new fallback needs stay,
        // unless there is no fallback, or the log was replaced, which leaves the fallback
        // unusable anyway (the log cannot cover the new snapshot's index and term).
        let mut doomed = mem::take(&mut self.retained);
        while self
            .segments
            .front()
            .is_some_and(|s| s.seq < first_segment_seq)
        {
            if let Some(seg) = self.segments.pop_front() {
                if retain {
                    self.retained.push(seg.path);
                } else {
                    doomed.push(seg.path);
                }
            }
        }
        self.first_segment_seq = first_segment_seq;
        // A failed delete only wastes space: the next open deletes what no kept snapshot needs.
        for path in doomed {
            if fs::remove_file(&path).is_ok() {
                self.stats.segments_deleted += 1;
            }
        }
        if let Some(old) = released {
            if fs::remove_file(&old.path).is_ok() {
                self.stats.snapshot_files_deleted += 1;
            }
        }
        self.stats.snapshots_finished += 1;
        Ok(())
    }
}

/// What the directory holds, by name.
struct Listing {
    /// Segment sequence numbers, ascending.
    seqs: Vec<u64>,
    /// Snapshot generations (unordered).
    gens: Vec<u64>,
    /// The generation for the next snapshot: above every snapshot name seen, refused and temp
    /// ones included, so a name is never reused. `None` once exhausted.
    next_gen: Option<u64>,
}

/// Lists `dir`, deleting the temp files of writes that never completed.
fn list_dir(dir: &Path, recovery: &mut RecoveryReport) -> Result<Listing, FileStorageError> {
    let mut seqs = Vec::new();
    let mut gens = Vec::new();
    let mut gen_max = None;
    let listing = fs::read_dir(dir).map_err(|e| FileStorageError::io("list", dir, e))?;
    for item in listing {
        let item = item.map_err(|e| FileStorageError::io("list", dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(target) = name.strip_suffix(TMP_SUFFIX) {
            let snap = parse_snapshot_file_name(target);
            gen_max = gen_max.max(snap);
            let ours = target == HARD_STATE_FILE
                || target == SNAPSHOT_META_FILE
                || parse_segment_file_name(target).is_some()
                || snap.is_some();
            if ours {
                let path = item.path();
                fs::remove_file(&path).map_err(|e| FileStorageError::io("remove", path, e))?;
                recovery.leftovers_removed += 1;
            }
        } else if let Some(seq) = parse_segment_file_name(name) {
            if seq == 0 || seq > SEGMENT_SEQ_MAX {
                return Err(FileStorageError::corrupt(
                    item.path(),
                    0,
                    "segment number out of range",
                ));
            }
            seqs.push(seq);
        } else if let Some(gen) = parse_snapshot_file_name(name) {
            gen_max = gen_max.max(Some(gen));
            gens.push(gen);
        } else if let Some(gen) = name
            .strip_suffix(REFUSED_SUFFIX)
            .and_then(parse_snapshot_file_name)
        {
            gen_max = gen_max.max(Some(gen));
        }
    }
    seqs.sort_unstable();
    Ok(Listing {
        seqs,
        gens,
        next_gen: gen_max.map_or(Some(1), |g: u64| g.checked_add(1)),
    })
}

/// Hands out the next snapshot generation.
fn take_gen(next: &mut Option<u64>) -> Result<u64, FileStorageError> {
    let gen = next.ok_or(FileStorageError::InvalidOptions(
        "snapshot generation numbers exhausted",
    ))?;
    *next = gen.checked_add(1);
    Ok(gen)
}

/// Writes a complete snapshot without data (a new cluster's membership, or format 1's
/// compaction point), durably.
fn write_empty_snapshot(
    dir: &Path,
    dir_file: &File,
    header: SnapshotHeader,
    faults: Option<&FaultInjector>,
    stats: &mut FileStorageStats,
) -> Result<(), FileStorageError> {
    let first_segment_seq = header.first_segment_seq;
    SnapshotWriter::create(dir, header, faults, stats)?
        .finish(first_segment_seq, dir, dir_file, faults, stats)
        .map(drop)
        .map_err(AtomicWriteError::into_inner)
}

/// Picks the current snapshot among the generations `gens` (newest first): the newest if it
/// passes every check; else the one before it, if that one does and the newest's metadata can
/// still be read (the caller then checks that the log covers the newest). Anything else is an
/// error naming the newest file.
fn choose_snapshot(dir: &Path, gens: &[u64]) -> Result<ChosenSnapshot, FileStorageError> {
    let Some(&newest) = gens.first() else {
        return Ok(ChosenSnapshot {
            current: None,
            pos: 0,
            refused: None,
        });
    };
    let path = dir.join(snapshot_file_name(newest));
    let refused = match snapshot::check(&path, newest) {
        Ok(f) => {
            return Ok(ChosenSnapshot {
                current: Some(f),
                pos: 0,
                refused: None,
            })
        }
        // Not damage: nothing to fall back from.
        Err(r) if r.error.kind() != StorageErrorKind::Corrupt => return Err(r.error),
        Err(r) => r,
    };
    let Some(&older) = gens.get(1) else {
        return Err(refused
            .error
            .explain("no previous snapshot is kept to fall back to"));
    };
    let older_path = dir.join(snapshot_file_name(older));
    if refused.header.is_none() {
        return Err(refused.error.explain(format!(
            "its metadata is unreadable, so whether the previous snapshot {} and the log cover \
             it cannot be checked",
            older_path.display()
        )));
    }
    match snapshot::check(&older_path, older) {
        Ok(f) => Ok(ChosenSnapshot {
            current: Some(f),
            pos: 1,
            refused: Some((path, refused)),
        }),
        Err(r) => Err(refused.error.explain(format!(
            "the previous snapshot cannot replace it: {}",
            r.error
        ))),
    }
}

/// Opens and replays the segments `seqs`, which must be `first`, `first + 1`, ...
fn replay_segments(
    dir: &Path,
    seqs: &[u64],
    first: u64,
    snapshot_index: Index,
) -> Result<(VecDeque<Segment>, Replay), FileStorageError> {
    for (i, &seq) in seqs.iter().enumerate() {
        // `seq` is at most SEGMENT_SEQ_MAX and at least `first + i`, so this cannot overflow.
        let expected = first + i as u64;
        if seq != expected {
            return Err(FileStorageError::corrupt(
                dir.join(segment_file_name(expected)),
                0,
                "segment file is missing",
            ));
        }
    }
    let mut replay = Replay::new(snapshot_index);
    let mut segments = VecDeque::with_capacity(seqs.len());
    for (i, &seq) in seqs.iter().enumerate() {
        let path = dir.join(segment_file_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| FileStorageError::io("open", &path, e))?;
        let mut seg = Segment {
            seq,
            path,
            file,
            len: 0,
            max_index: 0,
        };
        replay.segment(&mut seg, i + 1 == seqs.len())?;
        segments.push_back(seg);
    }
    Ok((segments, replay))
}
