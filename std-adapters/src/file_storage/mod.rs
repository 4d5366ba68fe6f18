//! `FileStorage`: a durable, file-backed [`tinyraft::Storage`].
//!
//! The log is a directory of append-only segment files plus two small files replaced
//! atomically. Writes are buffered in memory until [`Storage::sync`], which writes everything
//! appended since the previous sync as one *batch* with one `write` and makes it durable with
//! one `fdatasync` (group commit). Reads are served from an in-memory index (term and file
//! position of every live entry), so [`Storage::term`] never touches the disk, and entries are
//! read with `pread` through a small reusable window.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian. CRC means CRC32C (Castagnoli).
//!
//! ```text
//! DIR/
//!   00000000000000000001.log   segment 1 (20-digit sequence number; names sort by number)
//!   00000000000000000002.log   ...
//!   hard-state                 term, vote, commit (replaced atomically)
//!   snapshot-meta              compaction point and first needed segment (replaced atomically)
//!   *.tmp                      an atomic replacement that never completed: deleted on open
//!   anything else              ignored
//! ```
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
//! never done in place. Entries at or below the compacted index carry no live data.
//!
//! **`hard-state`** (40 bytes): magic "tnyrfhst" | version u32 | term u64 | vote u64 (0 =
//! none) | commit u64 | crc u32 of everything before it.
//!
//! **`snapshot-meta`**: magic "tnyrfsnp" | version u32 | index u64 | term u64 |
//! first_segment_seq u64 | voter count u8 | voters u64... | learner count u8 | learners u64...
//! | crc u32. Segments numbered below `first_segment_seq` are no longer needed.
//!
//! Both small files are replaced by write to `NAME.tmp`, fsync, rename, fsync of the directory.
//! `hard-state` is rewritten only when term or vote change; the commit index travels in every
//! batch header (covered by the batch's `fdatasync`), and on open the commit index is the
//! larger of the two, capped at the last index. Persisting the commit index is an
//! optimisation, not a safety need, so a sync whose only news is a higher commit index does no
//! I/O at all: the value goes to disk with the next batch. (Otherwise a follower would pay an
//! `fdatasync` for every commit advance a heartbeat brings.)
//!
//! # Durability and recovery
//!
//! A sync first replaces `hard-state` if term or vote changed, then writes and syncs the batch,
//! so a crash can leave a new term with an old log, never the reverse. Because nothing is
//! written after a sync until that sync succeeded, the existence of later data proves earlier
//! data was synced. On open:
//!
//! - A batch is applied only once all its records were read: recovery is all-or-nothing per
//!   `sync` call.
//! - Damage (short record, bad CRC, bad length) in the **last batch of the last segment**, or
//!   where the next batch header should be with no valid batch header anywhere after it, is a
//!   torn write: the file is cut there and the cut is synced ([`RecoveryReport::torn_tail`]).
//! - Damage anywhere else (in a segment that is not the last, or followed by later data) is
//!   refused with [`FileStorageError::Corrupt`] naming the file and byte offset: acknowledged
//!   entries are never silently dropped. So is a record with a valid CRC but an impossible
//!   content, a missing segment, or a bad segment header.
//! - Limitation: damage confined to the last batch cannot be told apart from a write the
//!   crash interrupted, so it is treated as torn, even if that batch had been synced.
//!
//! # Failures
//!
//! A failed `fsync`/`fdatasync` **poisons** the storage: every later `append`,
//! `set_hard_state`, `sync` and `compact` fails with [`FileStorageError::Poisoned`]. The
//! kernel may already have dropped the dirty pages and marked them clean, so retrying the sync
//! could "succeed" without the data ever reaching the disk. The only safe continuation is to
//! drop the storage and open the directory again, which reads what is really there. A failed
//! *write* (before any sync) is rolled back by truncating the segment to its synced length and
//! does not poison; out of space is reported as [`tinyraft::StorageErrorKind::Full`].
//!
//! One process at a time may open a directory; this is not enforced (no lock file yet).

mod error;
mod fault;
mod hard_state;
mod record;
mod segment;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tinyraft::limits::ENTRY_DATA_BYTES_MAX;
use tinyraft::{
    Entry, HardState, Index, InitialState, Membership, NodeId, SnapshotMeta, Storage, Term,
};

pub use error::FileStorageError;
pub use fault::{flip_bit, overwrite, set_file_len, FaultInjector};

use fault::WriteFault;
use hard_state::{
    decode_hard_state, decode_meta, encode_hard_state, encode_meta, read_small, sync_dir,
    write_atomic, AtomicWriteError, MetaFile, HARD_STATE_FILE, SNAPSHOT_META_FILE, TMP_SUFFIX,
};
use record::{
    decode, encode_batch, encode_entry, encode_segment_header, BatchHeader, Decoded, Record,
    BATCH_RECORD_LEN, ENTRY_RECORD_OVERHEAD, SEGMENT_HEADER_LEN,
};
use segment::{
    parse_segment_file_name, segment_file_name, Loc, Replay, Segment, Window, SEGMENT_SEQ_MAX,
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
    /// a segment overshoots by at most one batch. Compaction frees space in whole segments, so
    /// smaller segments free space sooner at the cost of more files.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// The membership of a new cluster. Persisted (in `snapshot-meta`, as a snapshot at index 0)
    /// only when the directory holds no state yet; ignored when it does.
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
    /// fsyncs of `hard-state`, `snapshot-meta` and the directory: two each time term or vote
    /// change, two per compaction, one per new segment.
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
    /// Segments deleted by compaction.
    pub segments_deleted: u64,
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
    /// Leftovers deleted: temp files of interrupted atomic writes and segments an interrupted
    /// compaction had not yet deleted.
    pub leftovers_removed: usize,
}

/// A durable [`Storage`] in a directory of append-only segment files. See the
/// [module documentation](self) for the format and the recovery rules.
///
/// Not `Sync`: reads share one buffer through a `RefCell`. Dropping it without `sync` loses
/// what was appended since the last sync, exactly as a crash would.
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
    snapshot: SnapshotMeta,
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
    /// Opens the log in `dir`, creating the directory if needed, and recovers it: reads every
    /// segment, cuts a torn tail off the last one, and refuses corruption anywhere else (see the
    /// [module documentation](self)).
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

        let mut seqs = Vec::new();
        let listing = fs::read_dir(&dir).map_err(|e| FileStorageError::io("list", &dir, e))?;
        for item in listing {
            let item = item.map_err(|e| FileStorageError::io("list", &dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(target) = name.strip_suffix(TMP_SUFFIX) {
                let ours = target == HARD_STATE_FILE
                    || target == SNAPSHOT_META_FILE
                    || parse_segment_file_name(target).is_some();
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
            }
        }
        seqs.sort_unstable();

        let hard_state = read_small(&dir, HARD_STATE_FILE)?
            .map(|b| {
                decode_hard_state(&b)
                    .map_err(|r| FileStorageError::corrupt(dir.join(HARD_STATE_FILE), 0, r))
            })
            .transpose()?;
        let meta_file = read_small(&dir, SNAPSHOT_META_FILE)?
            .map(|b| {
                decode_meta(&b)
                    .map_err(|r| FileStorageError::corrupt(dir.join(SNAPSHOT_META_FILE), 0, r))
            })
            .transpose()?;
        let fresh = hard_state.is_none() && meta_file.is_none() && seqs.is_empty();
        let mut membership = meta_file.as_ref().map(|m| m.snapshot.membership.clone());
        let mut meta = meta_file.unwrap_or(MetaFile {
            snapshot: SnapshotMeta::default(),
            first_segment_seq: 1,
        });
        meta.first_segment_seq = meta.first_segment_seq.max(1);
        if fresh {
            if let Some(m) = options.bootstrap_membership {
                meta.snapshot.membership = m.clone();
                let bytes = encode_meta(&meta);
                write_atomic(
                    &dir,
                    &dir_file,
                    SNAPSHOT_META_FILE,
                    &bytes,
                    faults.as_ref(),
                    &mut stats.meta_fsyncs,
                )
                .map_err(AtomicWriteError::into_inner)?;
                membership = Some(m);
            }
        }

        // Segments below first_segment_seq were to be deleted by a compaction that was cut
        // short: finish its job.
        let keep_from = seqs.partition_point(|&s| s < meta.first_segment_seq);
        for &seq in &seqs[..keep_from] {
            let path = dir.join(segment_file_name(seq));
            fs::remove_file(&path).map_err(|e| FileStorageError::io("remove", path, e))?;
            recovery.leftovers_removed += 1;
        }
        let seqs = &seqs[keep_from..];
        for (i, &seq) in seqs.iter().enumerate() {
            let expected = meta.first_segment_seq + i as u64;
            if seq != expected {
                return Err(FileStorageError::corrupt(
                    dir.join(segment_file_name(expected)),
                    0,
                    "segment file is missing",
                ));
            }
        }
        if seqs.is_empty() && meta.first_segment_seq > 1 {
            return Err(FileStorageError::corrupt(
                dir.join(segment_file_name(meta.first_segment_seq)),
                0,
                "segment file is missing",
            ));
        }

        let mut replay = Replay::new(meta.snapshot.index);
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
        recovery.segments = segments.len();
        recovery.torn_tail = replay.torn.take();

        let hs = hard_state.unwrap_or_default();
        let last_index = meta.snapshot.index + replay.locs.len() as u64;
        let commit = hs
            .commit
            .max(replay.commit)
            .max(meta.snapshot.index)
            .min(last_index);
        let first_segment_seq = segments.front().map_or(meta.first_segment_seq, |s| s.seq);
        Ok(Self {
            dir,
            dir_file,
            segment_bytes: options.segment_bytes,
            faults,
            segments,
            locs: replay.locs,
            first_pending: None,
            snapshot: meta.snapshot,
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

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes of log written and synced, over all segments.
    pub fn log_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Bytes the storage occupies on disk: segments plus the small files (file sizes, not
    /// allocated blocks).
    pub fn disk_usage(&self) -> u64 {
        let small: u64 = [HARD_STATE_FILE, SNAPSHOT_META_FILE]
            .iter()
            .filter_map(|name| fs::metadata(self.dir.join(name)).ok())
            .map(|m| m.len())
            .sum();
        self.log_bytes() + small
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

    /// Syncs pending appends (if any), persists the new compaction point in `snapshot-meta`,
    /// then deletes the oldest segments whose every record is at or below `index` (never the
    /// segment being written).
    fn compact(&mut self, index: Index, meta: &SnapshotMeta) -> Result<(), Self::Error> {
        self.check_poisoned()?;
        if index <= self.snapshot.index {
            return Ok(());
        }
        let term = self.term(index)?;
        if !self.batch.is_empty() {
            // Pending records may differ from the durable log at or below `index` (a conflict
            // truncation not yet synced). Were the compaction point durable and they lost in a
            // crash, recovery would put the new snapshot in front of stale entries. Syncing
            // first rules that out; compaction is rare, so the extra fdatasync is cheap.
            self.sync()?;
        }
        let mut delete = 0;
        while delete + 1 < self.segments.len() && self.segments[delete].max_index <= index {
            delete += 1;
        }
        let first_segment_seq = self
            .segments
            .get(delete)
            .map_or(self.first_segment_seq, |s| s.seq);
        let file = MetaFile {
            snapshot: SnapshotMeta {
                index,
                term,
                membership: meta.membership.clone(),
            },
            first_segment_seq,
        };
        // The new compaction point must be durable before any segment goes, or a crash in
        // between would leave a log with a hole at its start.
        self.replace_small_file(SNAPSHOT_META_FILE, &encode_meta(&file))?;
        let drop_count = (index - self.snapshot.index) as usize;
        self.locs.drain(..drop_count);
        self.snapshot = file.snapshot;
        self.membership = Some(meta.membership.clone());
        self.first_segment_seq = first_segment_seq;
        for seg in self.segments.drain(..delete) {
            // A failed delete only wastes space: the next open deletes segments below
            // first_segment_seq.
            if fs::remove_file(&seg.path).is_ok() {
                self.stats.segments_deleted += 1;
            }
        }
        Ok(())
    }
}
