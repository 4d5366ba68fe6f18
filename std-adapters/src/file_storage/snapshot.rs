//! Snapshot files: naming, byte layout, the streaming writer, and the check
//! [`super::FileStorage::open`] makes before trusting one.
//!
//! A snapshot is written to `snapshot-GEN.snap.tmp` as it arrives (header first, then the data
//! straight from the caller's slices, with a running CRC), so memory stays bounded by the
//! caller's chunk whatever the snapshot's size. Finishing rewrites the header with the first
//! log segment the snapshot still needs (only known then), appends the trailer, fdatasyncs,
//! renames to `snapshot-GEN.snap` and fsyncs the directory. A snapshot file under its final
//! name is therefore complete: if it fails its checks, it was damaged after it was written.
//!
//! The metadata is in the header *and* in the trailer, each under its own CRC. Then a truncated
//! file (trailer gone) or a damaged header still says which entries the snapshot covered, which
//! open needs to decide whether the previous snapshot plus the log can replace it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tinyraft::limits::{PEERS_MAX, VOTERS_MAX};
use tinyraft::{Membership, SnapshotMeta};

use super::error::FileStorageError;
use super::fault::FaultInjector;
use super::hard_state::{push_ids, sync_dir, take_ids, u64_at, AtomicWriteError, TMP_SUFFIX};
use super::FileStorageStats;

const NAME_PREFIX: &str = "snapshot-";
const NAME_SUFFIX: &str = ".snap";
/// Digits of the generation in a snapshot file name.
const GEN_DIGITS: usize = 20;
/// Appended to the name of a snapshot that open refused and replaced by the previous one, so
/// it is kept for inspection but never taken for a snapshot again.
pub(crate) const REFUSED_SUFFIX: &str = ".corrupt";

const HEADER_MAGIC: [u8; 8] = *b"tnyrfsnh";
const TRAILER_MAGIC: [u8; 8] = *b"tnyrfsnt";
/// Version of the snapshot file layout; another version is refused, not guessed at. Version 2
/// added the outgoing voters of a joint configuration.
const VERSION: u32 = 2;

/// Metadata bytes without membership: index, term, first segment.
const BODY_FIXED_LEN: usize = 8 + 8 + 8;
/// Metadata bytes at most: the fixed part, three counts, and the ids of voters and outgoing
/// voters (`VOTERS_MAX` each) and learners (`PEERS_MAX`).
const BODY_LEN_MAX: usize = BODY_FIXED_LEN + 3 + 8 * (2 * VOTERS_MAX + PEERS_MAX);
/// Header bytes before the metadata: magic, version, generation.
const HEADER_PREFIX_LEN: usize = 8 + 4 + 8;
/// Largest header: prefix, metadata, crc.
const HEADER_LEN_MAX: usize = HEADER_PREFIX_LEN + BODY_LEN_MAX + 4;
/// Trailer bytes before the metadata: magic, generation.
const TRAILER_PREFIX_LEN: usize = 8 + 8;
/// Trailer bytes after the metadata: data length, data crc, trailer length, crc.
const TRAILER_SUFFIX_LEN: usize = 8 + 4 + 4 + 4;
const TRAILER_LEN_MIN: usize = TRAILER_PREFIX_LEN + BODY_FIXED_LEN + 2 + TRAILER_SUFFIX_LEN;
const TRAILER_LEN_MAX: usize = TRAILER_PREFIX_LEN + BODY_LEN_MAX + TRAILER_SUFFIX_LEN;

/// Largest snapshot index accepted: far beyond any real log, and low enough that index
/// arithmetic (first index, last index + 1) cannot overflow.
pub(crate) const INDEX_MAX: u64 = u64::MAX / 4;

/// Bytes read at a time while checking a snapshot's CRC: the memory open needs for a snapshot
/// of any size.
const CHECK_BUFFER_BYTES: usize = 64 * 1024;

/// The file name of snapshot generation `gen`, zero-padded so names sort like numbers.
pub(crate) fn snapshot_file_name(gen: u64) -> String {
    format!(
        "{NAME_PREFIX}{gen:0width$}{NAME_SUFFIX}",
        width = GEN_DIGITS
    )
}

/// The generation of a snapshot file name, or `None` for any other name.
pub(crate) fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != GEN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a snapshot file says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotHeader {
    /// Generation, from the file name (and checked against header and trailer). A later
    /// snapshot has a higher generation, whatever its index.
    pub(crate) gen: u64,
    pub(crate) meta: SnapshotMeta,
    /// The first log segment needed after this snapshot: every record in a lower one is at or
    /// below `meta.index`, or belongs to a log this snapshot replaced.
    pub(crate) first_segment_seq: u64,
}

/// A snapshot file that passed every check, open for reading its data.
#[derive(Debug)]
pub(crate) struct SnapshotFile {
    pub(crate) header: SnapshotHeader,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Where the data starts in the file (the header's length).
    pub(crate) data_off: u64,
    pub(crate) data_len: u64,
}

/// Why a snapshot file was refused, with what it covered if that much could be read.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: FileStorageError,
    /// The metadata from whichever of header and trailer is intact (`None` if neither is, or
    /// if they disagree).
    pub(crate) header: Option<SnapshotHeader>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn encode_body(out: &mut Vec<u8>, h: &SnapshotHeader) {
    out.extend_from_slice(&h.meta.index.to_le_bytes());
    out.extend_from_slice(&h.meta.term.to_le_bytes());
    out.extend_from_slice(&h.first_segment_seq.to_le_bytes());
    push_ids(out, &h.meta.membership.voters);
    push_ids(out, &h.meta.membership.learners);
    push_ids(out, &h.meta.membership.outgoing);
}

/// Decodes the metadata at the start of `c` and advances `c` past it.
fn decode_body(c: &mut &[u8], gen: u64) -> Result<SnapshotHeader, &'static str> {
    if c.len() < BODY_FIXED_LEN {
        return Err("snapshot metadata truncated");
    }
    let (index, term, first_segment_seq) = (u64_at(c, 0), u64_at(c, 8), u64_at(c, 16));
    if index > INDEX_MAX {
        return Err("snapshot index out of range");
    }
    *c = &c[BODY_FIXED_LEN..];
    let membership = Membership {
        voters: take_ids(c)?,
        learners: take_ids(c)?,
        outgoing: take_ids(c)?,
    };
    membership.validate()?;
    Ok(SnapshotHeader {
        gen,
        meta: SnapshotMeta {
            index,
            term,
            membership,
        },
        first_segment_seq,
    })
}

pub(crate) fn encode_header(h: &SnapshotHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN_MAX);
    b.extend_from_slice(&HEADER_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&h.gen.to_le_bytes());
    encode_body(&mut b, h);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes the header at the start of `bytes` (which may hold more after it). Returns it and
/// its length.
fn decode_header(bytes: &[u8]) -> Result<(SnapshotHeader, usize), &'static str> {
    if bytes.len() < HEADER_PREFIX_LEN {
        return Err("file shorter than a snapshot header");
    }
    if bytes[0..8] != HEADER_MAGIC {
        return Err("not a tinyraft snapshot (bad magic)");
    }
    let mut rest = &bytes[HEADER_PREFIX_LEN..];
    let header = decode_body(&mut rest, u64_at(bytes, 12))?;
    let crc_at = bytes.len() - rest.len();
    if rest.len() < 4 {
        return Err("snapshot header truncated");
    }
    if crc32c::crc32c(&bytes[..crc_at]) != u32_at(bytes, crc_at) {
        return Err("snapshot header CRC mismatch");
    }
    if u32_at(bytes, 8) != VERSION {
        return Err("unsupported snapshot format version");
    }
    Ok((header, crc_at + 4))
}

pub(crate) fn encode_trailer(h: &SnapshotHeader, data_len: u64, data_crc: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(TRAILER_LEN_MAX);
    b.extend_from_slice(&TRAILER_MAGIC);
    b.extend_from_slice(&h.gen.to_le_bytes());
    encode_body(&mut b, h);
    b.extend_from_slice(&data_len.to_le_bytes());
    b.extend_from_slice(&data_crc.to_le_bytes());
    let len = (b.len() + 8) as u32;
    b.extend_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The trailer, as decoded from exactly its bytes.
struct Trailer {
    header: SnapshotHeader,
    data_len: u64,
    data_crc: u32,
    len: u64,
}

fn decode_trailer(bytes: &[u8]) -> Result<Trailer, &'static str> {
    // The caller found `bytes` through the length field, which is inside the CRC.
    if bytes.len() < TRAILER_LEN_MIN {
        return Err("snapshot trailer too short");
    }
    let crc_at = bytes.len() - 4;
    if crc32c::crc32c(&bytes[..crc_at]) != u32_at(bytes, crc_at) {
        return Err("snapshot trailer CRC mismatch (file truncated or damaged at its end)");
    }
    if bytes[0..8] != TRAILER_MAGIC {
        return Err("snapshot trailer has a bad magic");
    }
    let mut rest = &bytes[TRAILER_PREFIX_LEN..crc_at];
    let header = decode_body(&mut rest, u64_at(bytes, 8))?;
    if rest.len() != TRAILER_SUFFIX_LEN - 4 {
        return Err("snapshot trailer of the wrong length");
    }
    Ok(Trailer {
        header,
        data_len: u64_at(rest, 0),
        data_crc: u32_at(rest, 8),
        len: bytes.len() as u64,
    })
}

/// Reads and decodes the header of `file` (`file_len` bytes long). Errors are (offset, reason).
fn read_header(
    file: &File,
    file_len: u64,
    gen: u64,
) -> io::Result<Result<(SnapshotHeader, usize), (u64, String)>> {
    let mut buf = vec![0u8; (HEADER_LEN_MAX as u64).min(file_len) as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(match decode_header(&buf) {
        Ok((h, _)) if h.gen != gen => Err((
            HEADER_PREFIX_LEN as u64 - 8,
            format!(
                "header names snapshot generation {}, file name says {gen}",
                h.gen
            ),
        )),
        Ok(ok) => Ok(ok),
        Err(why) => Err((0, format!("snapshot header: {why}"))),
    })
}

/// Reads and decodes the trailer at the end of `file`. Errors are (offset, reason).
fn read_trailer(
    file: &File,
    file_len: u64,
    gen: u64,
) -> io::Result<Result<Trailer, (u64, String)>> {
    let missing = |off| {
        Ok(Err((
            off,
            "snapshot trailer missing or damaged (file truncated?)".to_owned(),
        )))
    };
    if file_len < 8 {
        return missing(0);
    }
    let mut tail = [0u8; 8];
    file.read_exact_at(&mut tail, file_len - 8)?;
    let len = u64::from(u32_at(&tail, 0));
    if !(TRAILER_LEN_MIN as u64..=TRAILER_LEN_MAX as u64).contains(&len) || len > file_len {
        return missing(file_len - 8);
    }
    let at = file_len - len;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, at)?;
    Ok(match decode_trailer(&buf) {
        Ok(t) if t.header.gen != gen => Err((
            at + 8,
            format!(
                "trailer names snapshot generation {}, file name says {gen}",
                t.header.gen
            ),
        )),
        Ok(t) => Ok(t),
        Err(why) => Err((at, why.to_owned())),
    })
}

/// Reads only the header of the snapshot file at `path`: enough to know which segments it
/// needs, without reading its data.
pub(crate) fn peek(path: &Path, gen: u64) -> Option<SnapshotHeader> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    read_header(&file, len, gen).ok()?.ok().map(|(h, _)| h)
}

/// Checks the snapshot file at `path` completely: header, trailer, that they agree, that the
/// length adds up, and the CRC of the data, read in pieces of [`CHECK_BUFFER_BYTES`].
pub(crate) fn check(path: &Path, gen: u64) -> Result<SnapshotFile, Box<Refused>> {
    let io_err = |op, e| {
        Box::new(Refused {
            error: FileStorageError::io(op, path, e),
            header: None,
        })
    };
    let file = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| io_err("open", e))?;
    let file_len = file.metadata().map_err(|e| io_err("stat", e))?.len();
    let header = read_header(&file, file_len, gen).map_err(|e| io_err("read", e))?;
    let trailer = read_trailer(&file, file_len, gen).map_err(|e| io_err("read", e))?;
    let known = match (&header, &trailer) {
        (Ok((h, _)), Ok(t)) => (*h == t.header).then(|| h.clone()),
        (Ok((h, _)), Err(_)) => Some(h.clone()),
        (Err(_), Ok(t)) => Some(t.header.clone()),
        (Err(_), Err(_)) => None,
    };
    let refuse = |offset, reason: String| {
        Box::new(Refused {
            error: FileStorageError::corrupt(path, offset, reason),
            header: known.clone(),
        })
    };
    let (header, header_len) = header.map_err(|(off, why)| refuse(off, why))?;
    let trailer = trailer.map_err(|(off, why)| refuse(off, why))?;
    if header != trailer.header {
        return Err(refuse(0, "snapshot header and trailer disagree".to_owned()));
    }
    let data_off = header_len as u64;
    let expected = data_off
        .checked_add(trailer.data_len)
        .and_then(|n| n.checked_add(trailer.len));
    if expected != Some(file_len) {
        return Err(refuse(
            data_off,
            format!(
                "trailer says {} data bytes, but the file holds {}",
                trailer.data_len,
                file_len.saturating_sub(data_off + trailer.len)
            ),
        ));
    }
    let mut buf = vec![0u8; CHECK_BUFFER_BYTES];
    let mut crc = 0u32;
    let mut done = 0u64;
    while done < trailer.data_len {
        let n = (buf.len() as u64).min(trailer.data_len - done) as usize;
        file.read_exact_at(&mut buf[..n], data_off + done)
            .map_err(|e| io_err("read", e))?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        done += n as u64;
    }
    if crc != trailer.data_crc {
        return Err(refuse(
            data_off,
            format!(
                "snapshot data CRC mismatch over bytes {data_off}..{}",
                data_off + trailer.data_len
            ),
        ));
    }
    Ok(SnapshotFile {
        header,
        path: path.to_path_buf(),
        file,
        data_off,
        data_len: trailer.data_len,
    })
}

/// Writes `bytes` at `off`, obeying an armed snapshot write fault.
fn write_at(file: &File, bytes: &[u8], off: u64, faults: Option<&FaultInjector>) -> io::Result<()> {
    match faults.and_then(FaultInjector::take_snapshot_write_failure) {
        Some(e) => Err(e),
        None => file.write_all_at(bytes, off),
    }
}

/// A snapshot being written to its temp file.
#[derive(Debug)]
pub(crate) struct SnapshotWriter {
    header: SnapshotHeader,
    tmp: PathBuf,
    path: PathBuf,
    file: File,
    header_len: u64,
    data_len: u64,
    /// CRC32C of the data written so far.
    crc: u32,
}

impl SnapshotWriter {
    /// Creates the temp file and writes the header (its first segment still unknown). Nothing
    /// is left behind on failure.
    pub(crate) fn create(
        dir: &Path,
        header: SnapshotHeader,
        faults: Option<&FaultInjector>,
        stats: &mut FileStorageStats,
    ) -> Result<Self, FileStorageError> {
        let name = snapshot_file_name(header.gen);
        let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| FileStorageError::write(&tmp, e))?;
        let bytes = encode_header(&header);
        if let Err(e) = write_at(&file, &bytes, 0, faults) {
            let _ = fs::remove_file(&tmp);
            return Err(FileStorageError::write(tmp, e));
        }
        stats.snapshot_bytes_written += bytes.len() as u64;
        Ok(Self {
            header,
            tmp,
            path: dir.join(name),
            file,
            header_len: bytes.len() as u64,
            data_len: 0,
            crc: 0,
        })
    }

    pub(crate) fn meta(&self) -> &SnapshotMeta {
        &self.header.meta
    }

    /// Appends `data`. On failure the caller abandons the writer: what reached the file is
    /// unknown.
    pub(crate) fn write(
        &mut self,
        data: &[u8],
        faults: Option<&FaultInjector>,
        stats: &mut FileStorageStats,
    ) -> Result<(), FileStorageError> {
        write_at(&self.file, data, self.header_len + self.data_len, faults)
            .map_err(|e| FileStorageError::write(&self.tmp, e))?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.data_len += data.len() as u64;
        stats.snapshot_bytes_written += data.len() as u64;
        Ok(())
    }

    /// Deletes the temp file.
    pub(crate) fn abandon(self) {
        let _ = fs::remove_file(&self.tmp);
    }

    /// Completes the file and makes it durable under its final name: final header, trailer,
    /// fdatasync, rename, fsync of the directory. `Clean` errors happened before anything could
    /// have become visible (the temp file is gone); `Poison` errors leave the outcome unknown.
    pub(crate) fn finish(
        mut self,
        first_segment_seq: u64,
        dir: &Path,
        dir_file: &File,
        faults: Option<&FaultInjector>,
        stats: &mut FileStorageStats,
    ) -> Result<SnapshotFile, AtomicWriteError> {
        self.header.first_segment_seq = first_segment_seq;
        let header = encode_header(&self.header);
        // Same metadata, so the same length: the data does not move.
        debug_assert_eq!(header.len() as u64, self.header_len);
        let trailer = encode_trailer(&self.header, self.data_len, self.crc);
        let written = write_at(&self.file, &header, 0, faults).and_then(|()| {
            write_at(
                &self.file,
                &trailer,
                self.header_len + self.data_len,
                faults,
            )
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&self.tmp);
            return Err(AtomicWriteError::Clean(FileStorageError::write(
                &self.tmp, e,
            )));
        }
        stats.snapshot_bytes_written += (header.len() + trailer.len()) as u64;
        stats.snapshot_fsyncs += 1;
        let synced = match faults.and_then(FaultInjector::take_snapshot_sync_failure) {
            Some(e) => Err(e),
            None => self.file.sync_data(),
        };
        if let Err(e) = synced {
            // Never renamed, so the previous snapshot stands; but the kernel may have dropped
            // dirty pages it will not write again, so the caller poisons itself.
            let _ = fs::remove_file(&self.tmp);
            return Err(AtomicWriteError::Poison(FileStorageError::io(
                "fdatasync",
                &self.tmp,
                e,
            )));
        }
        fs::rename(&self.tmp, &self.path)
            .map_err(|e| AtomicWriteError::Poison(FileStorageError::io("rename", &self.path, e)))?;
        sync_dir(dir, dir_file, faults, &mut stats.meta_fsyncs)
            .map_err(AtomicWriteError::Poison)?;
        Ok(SnapshotFile {
            header: self.header,
            path: self.path,
            file: self.file,
            data_off: self.header_len,
            data_len: self.data_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            gen: 3,
            meta: SnapshotMeta {
                index: 10,
                term: 2,
                membership: Membership::from_voters(&[1, 2, 3]).unwrap(),
            },
            first_segment_seq: 4,
        }
    }

    #[test]
    fn names_roundtrip_and_reject_strangers() {
        assert_eq!(snapshot_file_name(7), "snapshot-00000000000000000007.snap");
        assert_eq!(parse_snapshot_file_name(&snapshot_file_name(7)), Some(7));
        for name in [
            "snapshot-7.snap",
            "snapshot-00000000000000000007.snap.tmp",
            "snapshot-00000000000000000007.snap.corrupt",
            "snapshot-99999999999999999999.snap",
            "00000000000000000007.log",
        ] {
            assert_eq!(parse_snapshot_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn header_and_trailer_roundtrip_and_refuse_every_cut_and_flip() {
        let h = header();
        let b = encode_header(&h);
        assert_eq!(decode_header(&b), Ok((h.clone(), b.len())));
        let mut longer = b.clone();
        longer.extend_from_slice(b"data follows");
        assert_eq!(decode_header(&longer), Ok((h.clone(), b.len())));
        for cut in 0..b.len() {
            assert!(decode_header(&b[..cut]).is_err(), "cut at {cut}");
        }
        for bit in 0..b.len() * 8 {
            let mut x = b.clone();
            x[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_header(&x).map(|(d, _)| d) != Ok(h.clone()),
                "flip of bit {bit} went unnoticed"
            );
        }

        let t = encode_trailer(&h, 1234, 0xdead_beef);
        let d = decode_trailer(&t).unwrap();
        assert_eq!((d.header, d.data_len, d.data_crc), (h, 1234, 0xdead_beef));
        assert_eq!(d.len, t.len() as u64);
        for bit in 0..t.len() * 8 {
            let mut x = t.clone();
            x[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_trailer(&x).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..HEADER_LEN_MAX + 8 {
            for fill in [0u8, 0xff, 7] {
                let b = vec![fill; len];
                assert!(decode_header(&b).is_err());
                assert!(decode_trailer(&b).is_err());
            }
        }
    }
}
