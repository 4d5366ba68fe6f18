//! Segment files: naming, positional reads, and the recovery scan that rebuilds the in-memory
//! index and decides between "torn tail" (truncate) and "corruption" (refuse).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use tinyraft::{Index, Term};

use super::error::FileStorageError;
use super::record::{
    decode, decode_segment_header, is_batch_header_at, BatchHeader, Decoded, Record,
    BATCH_RECORD_LEN, RECORD_LEN_MAX, SEGMENT_HEADER_LEN,
};
use super::TornTail;

/// Suffix of segment file names.
const SEGMENT_SUFFIX: &str = ".log";
/// Digits of the sequence number in a segment file name.
const SEGMENT_NAME_DIGITS: usize = 20;
/// Largest segment sequence number: [`Loc`] stores it in a `u32` to keep the index small, and
/// `u32::MAX` marks entries not yet written.
pub(crate) const SEGMENT_SEQ_MAX: u64 = u32::MAX as u64 - 1;

/// Bytes read at a time while recovering.
const REPLAY_WINDOW_BYTES: usize = 1 << 20;

/// The file name of segment `seq`: its number, zero-padded so names sort like numbers.
pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_NAME_DIGITS)
}

/// The sequence number of a segment file name, or `None` for any other name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One open segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Sequence number, from the file name (and checked against the header).
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Bytes written and synced. Invariant: records below `len` never change.
    pub(crate) len: u64,
    /// Highest entry index of any record in the segment, superseded ones included (0 if none):
    /// the segment may be deleted once the log is compacted up to it.
    pub(crate) max_index: Index,
}

/// Where the record of a live entry is. 24 bytes per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) term: Term,
    /// Byte offset of the record: in the segment file, or in the write buffer if pending.
    pub(crate) off: u64,
    /// Segment sequence number, or [`Loc::PENDING`].
    pub(crate) seg: u32,
    pub(crate) data_len: u32,
}

impl Loc {
    /// `seg` of an entry still in the write buffer.
    pub(crate) const PENDING: u32 = u32::MAX;

    pub(crate) fn is_pending(&self) -> bool {
        self.seg == Self::PENDING
    }
}

/// A window of one segment's bytes kept in memory, so that a run of reads costs one `pread`.
#[derive(Debug)]
pub(crate) struct Window {
    seg: u64,
    start: u64,
    buf: Vec<u8>,
}

impl Window {
    pub(crate) fn new() -> Self {
        Self {
            seg: u64::MAX,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// The bytes of `seg` from `off` to the end of the window, at least `need` of them. Reads
    /// `want` bytes (at least `need`, at most to `file_len`) when the window misses. The caller
    /// guarantees `off + need <= file_len`. Segment bytes below `file_len` never change, so a
    /// window stays valid for as long as its segment exists.
    pub(crate) fn get(
        &mut self,
        seg: &Segment,
        file_len: u64,
        off: u64,
        need: usize,
        want: usize,
    ) -> io::Result<&[u8]> {
        let end = off + need as u64;
        let hit =
            self.seg == seg.seq && off >= self.start && end <= self.start + self.buf.len() as u64;
        if !hit {
            let len = (want.max(need) as u64).min(file_len.saturating_sub(off)) as usize;
            if len < need {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of a segment",
                ));
            }
            // Invalidate first, so a failed read leaves no stale window behind.
            self.seg = u64::MAX;
            self.buf.resize(len, 0);
            seg.file.read_exact_at(&mut self.buf, off)?;
            self.seg = seg.seq;
            self.start = off;
        }
        Ok(&self.buf[(off - self.start) as usize..])
    }
}

/// The in-memory state rebuilt by replaying the segments in order.
#[derive(Debug)]
pub(crate) struct Replay {
    /// Index the log is compacted to; records at or below it carry no live entry.
    pub(crate) snapshot_index: Index,
    /// Index of the last entry record applied. Below `snapshot_index` after a record that
    /// truncated into the compacted part.
    last: Index,
    /// Live entries. Invariant: `locs[k]` is entry `snapshot_index + 1 + k`.
    pub(crate) locs: VecDeque<Loc>,
    /// Sequence number of the last complete batch.
    pub(crate) batch_seq: Option<u64>,
    /// Commit index of the last complete batch.
    pub(crate) commit: Index,
    /// Where the last segment was truncated, if it ended in a torn write.
    pub(crate) torn: Option<TornTail>,
}

/// A batch being read: its records take effect only once all of them were read, so a torn
/// batch is dropped whole (recovery is all-or-nothing per `sync`).
struct OpenBatch {
    start: u64,
    end: u64,
    header: BatchHeader,
    /// (index, where, offset for error messages)
    entries: Vec<(Index, Loc)>,
}

impl Replay {
    pub(crate) fn new(snapshot_index: Index) -> Self {
        Self {
            snapshot_index,
            last: snapshot_index,
            locs: VecDeque::new(),
            batch_seq: None,
            commit: 0,
            torn: None,
        }
    }

    /// Applies one entry record with `append`'s truncation semantics.
    fn apply(&mut self, index: Index, loc: Loc, seg: &Segment) -> Result<(), FileStorageError> {
        let base = self.last.max(self.snapshot_index);
        if index > base + 1 {
            return Err(FileStorageError::corrupt(
                &seg.path,
                loc.off,
                format!("entry {index} leaves a gap after entry {base}"),
            ));
        }
        if index <= self.snapshot_index {
            // A truncation reaching into the compacted part: every live entry goes.
            self.locs.clear();
        } else {
            self.locs
                .truncate((index - self.snapshot_index - 1) as usize);
            self.locs.push_back(loc);
        }
        self.last = index;
        Ok(())
    }

    fn complete(&mut self, batch: OpenBatch, seg: &mut Segment) -> Result<(), FileStorageError> {
        for (index, loc) in batch.entries {
            self.apply(index, loc, seg)?;
            seg.max_index = seg.max_index.max(index);
        }
        self.batch_seq = Some(batch.header.seq);
        self.commit = batch.header.commit;
        Ok(())
    }

    /// Reads one segment and applies its complete batches. `is_last` allows a torn tail, which
    /// is cut off the file (and the cut synced) before returning.
    pub(crate) fn segment(
        &mut self,
        seg: &mut Segment,
        is_last: bool,
    ) -> Result<(), FileStorageError> {
        let file_len = seg
            .file
            .metadata()
            .map_err(|e| FileStorageError::io("stat", &seg.path, e))?
            .len();
        let mut window = Window::new();
        let path = seg.path.clone();
        let read_err = |e: io::Error| FileStorageError::io("read", path.clone(), e);

        // Segments come into existence atomically (written as a temp file, synced, renamed),
        // so even in the last segment a bad header is corruption, not a torn write.
        if file_len < SEGMENT_HEADER_LEN as u64 {
            return Err(FileStorageError::corrupt(
                &seg.path,
                0,
                "segment shorter than its header",
            ));
        }
        let header = window
            .get(seg, file_len, 0, SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN)
            .map_err(read_err)?;
        let seq = decode_segment_header(header)
            .map_err(|r| FileStorageError::corrupt(&seg.path, 0, r))?;
        if seq != seg.seq {
            return Err(FileStorageError::corrupt(
                &seg.path,
                0,
                format!("header names segment {seq}, file name says {}", seg.seq),
            ));
        }

        let mut pos = SEGMENT_HEADER_LEN as u64;
        let mut batch: Option<OpenBatch> = None;
        loop {
            if batch.as_ref().is_some_and(|b| b.end == pos) {
                if let Some(b) = batch.take() {
                    self.complete(b, seg)?;
                }
            }
            if pos == file_len {
                if batch.is_some() {
                    return self.damage(
                        seg,
                        file_len,
                        pos,
                        batch,
                        "segment ends inside a batch",
                        is_last,
                    );
                }
                break;
            }
            let need = (RECORD_LEN_MAX as u64).min(file_len - pos) as usize;
            let bytes = window
                .get(seg, file_len, pos, need, REPLAY_WINDOW_BYTES)
                .map_err(read_err)?;
            let (record, len) = match decode(&bytes[..need]) {
                Decoded::Record(r, len) => (r, len as u64),
                Decoded::Short => {
                    return self.damage(seg, file_len, pos, batch, "record cut short", is_last)
                }
                Decoded::Damaged(why) => {
                    return self.damage(seg, file_len, pos, batch, why, is_last)
                }
                Decoded::Malformed(why) => {
                    return Err(FileStorageError::corrupt(&seg.path, pos, why));
                }
            };
            let misplaced = |why: &str| FileStorageError::corrupt(&seg.path, pos, why.to_owned());
            match (record, batch.as_mut()) {
                (Record::Batch(h), None) => {
                    if let Some(prev) = self.batch_seq {
                        if h.seq != prev.wrapping_add(1) {
                            return Err(misplaced(&format!(
                                "batch {} follows batch {prev}",
                                h.seq
                            )));
                        }
                    }
                    if h.len < BATCH_RECORD_LEN as u64 {
                        return Err(misplaced("batch shorter than its header"));
                    }
                    let Some(end) = pos.checked_add(h.len) else {
                        return Err(misplaced("batch length out of range"));
                    };
                    batch = Some(OpenBatch {
                        start: pos,
                        end,
                        header: h,
                        entries: Vec::new(),
                    });
                }
                (Record::Batch(_), Some(_)) => {
                    return Err(misplaced("batch header inside a batch"))
                }
                (Record::Entry(_), None) => return Err(misplaced("entry record outside a batch")),
                (Record::Entry(e), Some(b)) => {
                    if pos + len > b.end {
                        return Err(misplaced("record crosses the end of its batch"));
                    }
                    b.entries.push((
                        e.index,
                        Loc {
                            term: e.term,
                            off: pos,
                            // Checked against SEGMENT_SEQ_MAX when the directory was listed.
                            seg: seg.seq as u32,
                            data_len: e.data.len() as u32,
                        },
                    ));
                }
            }
            pos += len;
        }
        seg.len = file_len;
        Ok(())
    }

    /// Decides what damage at `pos` means. A write after a sync only ever happens once that
    /// sync succeeded, so damage followed by data of a later batch (or in a segment that is not
    /// the last) hit data that was acknowledged: refuse. Damage with nothing of a later batch
    /// after it is a write the crash interrupted: truncate.
    fn damage(
        &mut self,
        seg: &mut Segment,
        file_len: u64,
        pos: u64,
        batch: Option<OpenBatch>,
        why: &str,
        is_last: bool,
    ) -> Result<(), FileStorageError> {
        if !is_last {
            return Err(FileStorageError::corrupt(
                &seg.path,
                pos,
                format!("{why}, in a segment that a later segment follows (so it was synced)"),
            ));
        }
        let cut = match batch {
            Some(b) => {
                if file_len > b.end {
                    return Err(FileStorageError::corrupt(
                        &seg.path,
                        pos,
                        format!(
                            "{why}, in batch {} which later data follows (so it was synced)",
                            b.header.seq
                        ),
                    ));
                }
                b.start
            }
            None => {
                if let Some(at) = find_batch_header(seg, file_len, pos + 1)? {
                    return Err(FileStorageError::corrupt(
                        &seg.path,
                        pos,
                        format!(
                            "{why}, but a valid batch starts later at offset {at} (so this is \
                             not a torn write)"
                        ),
                    ));
                }
                pos
            }
        };
        seg.file
            .set_len(cut)
            .map_err(|e| FileStorageError::io("truncate torn tail", &seg.path, e))?;
        seg.file
            .sync_data()
            .map_err(|e| FileStorageError::io("fdatasync", &seg.path, e))?;
        self.torn = Some(TornTail {
            path: seg.path.clone(),
            offset: cut,
            bytes_dropped: file_len - cut,
        });
        seg.len = cut;
        Ok(())
    }
}

/// The offset of the first valid batch header at or after `from`, trying every byte offset.
fn find_batch_header(
    seg: &Segment,
    file_len: u64,
    from: u64,
) -> Result<Option<u64>, FileStorageError> {
    let mut window = Window::new();
    let mut p = from;
    while p + BATCH_RECORD_LEN as u64 <= file_len {
        let bytes = window
            .get(seg, file_len, p, BATCH_RECORD_LEN, REPLAY_WINDOW_BYTES)
            .map_err(|e| FileStorageError::io("read", &seg.path, e))?;
        let last_start = bytes.len() - BATCH_RECORD_LEN;
        if let Some(k) = (0..=last_start).find(|&k| is_batch_header_at(&bytes[k..])) {
            return Ok(Some(p + k as u64));
        }
        p += last_start as u64 + 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_roundtrip_and_reject_strangers() {
        assert_eq!(segment_file_name(7), "00000000000000000007.log");
        assert_eq!(parse_segment_file_name(&segment_file_name(7)), Some(7));
        for name in [
            "7.log",
            "0000000000000000000x.log",
            "00000000000000000007.log.tmp",
            "x",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
        // 20 digits can exceed u64; parse refuses rather than wraps.
        assert_eq!(parse_segment_file_name("99999999999999999999.log"), None);
    }
}
