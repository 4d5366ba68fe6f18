//! Byte layouts of the log: the segment header and the framed records.
//!
//! Every integer is little-endian. A record is `len: u32 | crc: u32 | body[len]`, where `crc`
//! is the CRC32C of the four `len` bytes followed by the body, so a damaged length is caught
//! like damaged data.

use tinyraft::limits::ENTRY_DATA_BYTES_MAX;
use tinyraft::{Entry, EntryKind, Index, Term};

/// First bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"tnyrflog";
/// Version of the on-disk format; a file of another version is refused, not guessed at.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header: magic, version, reserved u32, seq u64, reserved u32, crc u32.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;

/// Bytes of `len` and `crc` before each body.
pub(crate) const FRAME_HEADER_LEN: usize = 8;

const TYPE_BATCH: u8 = 1;
const TYPE_ENTRY: u8 = 2;

/// Body of a batch header: type, seq u64, batch length u64, commit u64.
const BATCH_BODY_LEN: usize = 1 + 8 + 8 + 8;
/// Bytes of a whole batch-header record; a batch starts with one.
pub(crate) const BATCH_RECORD_LEN: usize = FRAME_HEADER_LEN + BATCH_BODY_LEN;

/// Body bytes of an entry record besides its payload: type, index u64, term u64, kind u8.
pub(crate) const ENTRY_BODY_OVERHEAD: usize = 1 + 8 + 8 + 1;
/// Bytes an entry record adds around its payload.
pub(crate) const ENTRY_RECORD_OVERHEAD: usize = FRAME_HEADER_LEN + ENTRY_BODY_OVERHEAD;

/// Largest body any valid record has. A length field above it is damage, which caps what a
/// garbage length can make the reader allocate or read.
pub(crate) const BODY_LEN_MAX: usize = ENTRY_BODY_OVERHEAD + ENTRY_DATA_BYTES_MAX;
/// Largest record of any kind, frame included.
pub(crate) const RECORD_LEN_MAX: usize = FRAME_HEADER_LEN + BODY_LEN_MAX;

const _: () = {
    assert!(BATCH_BODY_LEN <= BODY_LEN_MAX);
    assert!(BODY_LEN_MAX <= u32::MAX as usize);
};

/// The record that opens every batch (the bytes one `sync` writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// Batch number, one more than the previous batch's across all segments.
    pub(crate) seq: u64,
    /// Bytes of the whole batch, this record included.
    pub(crate) len: u64,
    /// The commit index when the batch was written.
    pub(crate) commit: Index,
}

/// A decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Batch(BatchHeader),
    Entry(Entry<'a>),
}

/// The outcome of decoding the bytes at a position.
#[derive(Debug)]
pub(crate) enum Decoded<'a> {
    /// A valid record of the given total length (frame included).
    Record(Record<'a>, usize),
    /// The bytes end before the record does (or before its frame header does).
    Short,
    /// The frame is invalid: length out of range or CRC mismatch. A torn write looks like this.
    Damaged(&'static str),
    /// The CRC matches but the body is not a record of this format. A torn write never looks
    /// like this, so it is corruption (or a newer format) wherever it appears.
    Malformed(&'static str),
}

fn checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Appends an entry record to `out`.
pub(crate) fn encode_entry(out: &mut Vec<u8>, e: &Entry<'_>) {
    debug_assert!(e.data.len() <= ENTRY_DATA_BYTES_MAX);
    let start = out.len();
    let body_len = (ENTRY_BODY_OVERHEAD + e.data.len()) as u32;
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(TYPE_ENTRY);
    out.extend_from_slice(&e.index.to_le_bytes());
    out.extend_from_slice(&e.term.to_le_bytes());
    out.push(e.kind as u8);
    out.extend_from_slice(e.data);
    let crc = checksum(&out[start..start + 4], &out[start + FRAME_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Writes a batch-header record into `out`, which must be [`BATCH_RECORD_LEN`] bytes.
pub(crate) fn encode_batch(out: &mut [u8], h: &BatchHeader) {
    debug_assert_eq!(out.len(), BATCH_RECORD_LEN);
    out[0..4].copy_from_slice(&(BATCH_BODY_LEN as u32).to_le_bytes());
    out[8] = TYPE_BATCH;
    out[9..17].copy_from_slice(&h.seq.to_le_bytes());
    out[17..25].copy_from_slice(&h.len.to_le_bytes());
    out[25..33].copy_from_slice(&h.commit.to_le_bytes());
    let crc = checksum(&out[0..4], &out[FRAME_HEADER_LEN..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `bytes` (which may hold more after it, or less).
pub(crate) fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Decoded::Short;
    }
    let body_len = u32_at(bytes, 0) as usize;
    if body_len == 0 || body_len > BODY_LEN_MAX {
        return Decoded::Damaged("record length out of range");
    }
    let total = FRAME_HEADER_LEN + body_len;
    if bytes.len() < total {
        return Decoded::Short;
    }
    let body = &bytes[FRAME_HEADER_LEN..total];
    if checksum(&bytes[0..4], body) != u32_at(bytes, 4) {
        return Decoded::Damaged("record CRC mismatch");
    }
    let record = match body[0] {
        TYPE_BATCH => {
            if body_len != BATCH_BODY_LEN {
                return Decoded::Malformed("batch header of the wrong length");
            }
            Record::Batch(BatchHeader {
                seq: u64_at(body, 1),
                len: u64_at(body, 9),
                commit: u64_at(body, 17),
            })
        }
        TYPE_ENTRY => {
            if body_len < ENTRY_BODY_OVERHEAD {
                return Decoded::Malformed("entry record too short");
            }
            let Some(kind) = EntryKind::from_u8(body[17]) else {
                return Decoded::Malformed("unknown entry kind");
            };
            let index: Index = u64_at(body, 1);
            let term: Term = u64_at(body, 9);
            if index == 0 {
                return Decoded::Malformed("entry with index 0");
            }
            Record::Entry(Entry {
                term,
                index,
                kind,
                data: &body[ENTRY_BODY_OVERHEAD..],
            })
        }
        _ => return Decoded::Malformed("unknown record type"),
    };
    Decoded::Record(record, total)
}

/// True if `bytes` starts with a valid batch-header record. Cheap enough to try at every byte
/// offset: it looks at the fixed length and type before computing a CRC over 25 bytes.
pub(crate) fn is_batch_header_at(bytes: &[u8]) -> bool {
    bytes.len() >= BATCH_RECORD_LEN
        && u32_at(bytes, 0) as usize == BATCH_BODY_LEN
        && bytes[FRAME_HEADER_LEN] == TYPE_BATCH
        && matches!(decode(bytes), Decoded::Record(Record::Batch(_), _))
}

/// The header at the start of segment `seq`.
pub(crate) fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header and returns its sequence number.
pub(crate) fn decode_segment_header(h: &[u8]) -> Result<u64, &'static str> {
    if h.len() < SEGMENT_HEADER_LEN {
        return Err("segment shorter than its header");
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Err("not a tinyraft log segment (bad magic)");
    }
    if crc32c::crc32c(&h[0..28]) != u32_at(h, 28) {
        return Err("segment header CRC mismatch");
    }
    if u32_at(h, 8) != FORMAT_VERSION {
        return Err("unsupported segment format version");
    }
    Ok(u64_at(h, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_roundtrip_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        let e = Entry {
            term: 7,
            index: 42,
            kind: EntryKind::Config,
            data: b"hello",
        };
        encode_entry(&mut buf, &e);
        assert_eq!(buf.len(), ENTRY_RECORD_OVERHEAD + 5);
        match decode(&buf) {
            Decoded::Record(Record::Entry(d), n) => {
                assert_eq!(d, e);
                assert_eq!(n, buf.len());
            }
            other => panic!("{other:?}"),
        }
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&b), Decoded::Record(..)),
                "flip of bit {bit} went unnoticed"
            );
        }
        for cut in 0..buf.len() {
            assert!(matches!(
                decode(&buf[..cut]),
                Decoded::Short | Decoded::Damaged(_)
            ));
        }
    }

    #[test]
    fn batch_header_roundtrip() {
        let mut b = [0u8; BATCH_RECORD_LEN];
        let h = BatchHeader {
            seq: 3,
            len: 1000,
            commit: 9,
        };
        encode_batch(&mut b, &h);
        assert!(is_batch_header_at(&b));
        assert!(
            matches!(decode(&b), Decoded::Record(Record::Batch(d), BATCH_RECORD_LEN) if d == h)
        );
        assert!(!is_batch_header_at(&[0u8; 64]));
    }

    #[test]
    fn huge_length_is_damage_not_an_allocation() {
        let mut b = [0xffu8; 16];
        b[8] = TYPE_ENTRY;
        assert!(matches!(decode(&b), Decoded::Damaged(_)));
        assert!(matches!(decode(&[0u8; 16]), Decoded::Damaged(_)));
    }

    #[test]
    fn segment_header_roundtrip() {
        let h = encode_segment_header(5);
        assert_eq!(decode_segment_header(&h), Ok(5));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(decode_segment_header(&bad).is_err());
        assert!(decode_segment_header(&h[..10]).is_err());
    }
}
