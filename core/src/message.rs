//! Messages between nodes and their wire form.
//!
//! The wire form of a message is the postcard encoding of [`Message`]. Entries are borrowed
//! from the buffer being decoded, so decoding allocates nothing and copies no payload.
//!
//! Append messages are encoded by `AppendWriter` one entry at a time, straight from storage
//! into the outbox. That relies on two facts of postcard's format, checked by the tests below:
//! a struct or tuple is the concatenation of its fields, and a sequence is a varint count
//! followed by its elements (the count is one byte because
//! [`ENTRIES_PER_MESSAGE_MAX`] < 128, asserted in `limits`). `AppendWriter` writes each entry
//! in postcard's form by hand, and [`Message::decode`] reads append messages by hand before
//! falling back to postcard: both are the hot paths of replication, and tests hold them to
//! postcard's exact bytes and results.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::limits::{ENTRIES_PER_MESSAGE_MAX, ENTRY_DATA_BYTES_MAX, MESSAGE_BYTES_MAX};
use crate::types::{Entry, EntryKind, Index, NodeId, SnapshotMeta, Term};

/// A message from one node to another, for one term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    #[serde(borrow)]
    pub body: Body<'a>,
}

/// The kinds of message. New kinds are only ever added at the end, so old encodings keep
/// their meaning.
// The append variant holds its entry table inline (about 2.5 KiB): a decoded message lives
// briefly on the stack, and boxing it would need an allocator.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body<'a> {
    /// Leader → follower: entries after `prev_index` (§5.3). Must stay the first variant: the
    /// incremental encoder writes its tag (0) by hand.
    Append {
        /// Index of the entry just before `entries`.
        prev_index: Index,
        /// Term of that entry (the consistency check).
        prev_term: Term,
        /// Leader's commit index.
        commit: Index,
        /// The entries, consecutive from `prev_index + 1`.
        #[serde(borrow)]
        entries: Vec<Entry<'a>, ENTRIES_PER_MESSAGE_MAX>,
    },
    /// Follower → leader: the answer to an append.
    AppendResponse {
        /// True if the entries now match up to `index`.
        success: bool,
        /// On success, the last index known to match; on rejection, the `prev_index` rejected.
        index: Index,
        /// On rejection, the fast-backtracking hint: the leader should retry at or below
        /// `hint_index`, and skip all of its entries of `hint_term` after it (0 = no term hint).
        hint_index: Index,
        /// See `hint_index`.
        hint_term: Term,
    },
    /// Candidate → all: a vote request (§5.2) or, with `pre`, a pre-vote request (§9.6).
    Vote {
        /// Pre-vote round: nobody changes term or vote.
        pre: bool,
        /// Index of the candidate's last entry (§5.4.1).
        last_index: Index,
        /// Term of the candidate's last entry.
        last_term: Term,
        /// Sent because of a leadership transfer: receivers ignore their leader lease.
        transfer: bool,
        /// Index of the configuration entry the candidate's configuration comes from (the
        /// index of its snapshot if it came with one; 0 for the initial configuration). A
        /// voter refuses a candidate whose configuration is older than the one before its own:
        /// configurations take effect when applied, so such a candidate does not know of two
        /// later changes, and the majorities of configurations two changes apart need not
        /// overlap.
        config_index: Index,
    },
    /// The answer to a vote or pre-vote request.
    VoteResponse {
        /// Answer to a pre-vote request.
        pre: bool,
        /// The vote is granted.
        granted: bool,
    },
    /// Leader → follower: I am still leader; here is the commit index (§5.2, as TinyKV keeps
    /// heartbeats separate from appends). `context` tags a ReadIndex confirmation round.
    Heartbeat {
        /// Leader's commit index, capped by what the follower is known to hold.
        commit: Index,
        /// ReadIndex round this heartbeat confirms (0 = none).
        context: u64,
    },
    /// Follower → leader: heartbeat acknowledged.
    HeartbeatResponse {
        /// Echo of the heartbeat's `context`.
        context: u64,
        /// Follower's last log index, so the leader can notice a follower that fell behind.
        last_index: Index,
    },
    /// Leader → transfer target: campaign now, without waiting for an election timeout (§3.10).
    TimeoutNow,
    /// Leader → lagging follower: one chunk of the leader's snapshot (§7), for a follower whose
    /// next entry was compacted away. The tag (7) is written by hand by the chunk encoder.
    Snapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Length of the whole snapshot's data.
        total_len: u64,
        /// Where `data` starts in it.
        offset: u64,
        /// The chunk (must stay the last field: the encoder writes it straight from storage).
        #[serde(borrow)]
        data: &'a [u8],
    },
    /// Follower → leader: how far a snapshot transfer got.
    SnapshotResponse {
        /// Index of the snapshot this answers.
        index: Index,
        /// Term of the snapshot this answers.
        term: Term,
        /// The offset the follower expects next (0: start over).
        next_offset: u64,
        /// The whole snapshot is installed and durable.
        done: bool,
    },
    /// Voter → candidate, with a refusal when the candidate's configuration is older than the
    /// voter's: the entries up to `index` are committed, and the one at `index` has `term`. A
    /// fact about the log that any node may report: a receiver whose entry at `index` has the
    /// same term holds the same entries up to there (Log Matching) and may commit them,
    /// whatever the message's term. Configurations take effect when applied, and only leaders
    /// tell commit indexes otherwise, so without this a candidate that never learned a change
    /// committed could be left campaigning for ever in a configuration that needs the vote of
    /// a node that will not give it.
    Committed {
        /// The highest index the sender knows to be committed.
        index: Index,
        /// The term of the entry there.
        term: Term,
    },
}

/// The wire tag of [`Body::Snapshot`].
const SNAPSHOT_TAG: u32 = 7;

impl<'a> Message<'a> {
    /// Decodes a message from `bytes`, borrowing entry payloads from them.
    ///
    /// Refuses (never panics on) anything longer than [`MESSAGE_BYTES_MAX`], anything that is
    /// not exactly one well-formed message, and messages that break a bound: a zero sender, an
    /// entry larger than [`ENTRY_DATA_BYTES_MAX`], or entries that are not consecutive from
    /// `prev_index + 1`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MESSAGE_BYTES_MAX {
            return Err(DecodeError::TooLong);
        }
        let msg = match decode_append(bytes) {
            Some(msg) => msg,
            None => Self::decode_postcard(bytes)?,
        };
        msg.validate()?;
        Ok(msg)
    }

    /// The reference decoder: postcard, exactly one message, no trailing bytes.
    fn decode_postcard(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (msg, rest): (Message<'a>, _) =
            postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        Ok(msg)
    }

    fn validate(&self) -> Result<(), DecodeError> {
        if self.from == 0 || self.to == 0 {
            return Err(DecodeError::Invalid("node id 0"));
        }
        if let Body::Snapshot {
            meta,
            total_len,
            offset,
            data,
        } = &self.body
        {
            meta.membership.validate().map_err(DecodeError::Invalid)?;
            let end = offset.checked_add(data.len() as u64);
            if end.is_none_or(|end| end > *total_len) {
                return Err(DecodeError::Invalid(
                    "snapshot chunk past the snapshot's end",
                ));
            }
        }
        if let Body::Append {
            prev_index,
            entries,
            ..
        } = &self.body
        {
            for (i, e) in entries.iter().enumerate() {
                if e.data.len() > ENTRY_DATA_BYTES_MAX {
                    return Err(DecodeError::Invalid(
                        "entry larger than ENTRY_DATA_BYTES_MAX",
                    ));
                }
                if Some(e.index) != prev_index.checked_add(i as u64 + 1) {
                    return Err(DecodeError::Invalid("entries not consecutive"));
                }
                if e.term > self.term {
                    return Err(DecodeError::Invalid("entry term above message term"));
                }
            }
        }
        Ok(())
    }

    /// Encodes the message into `buf`, returning the number of bytes written, or `None` if
    /// it does not fit.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        postcard::to_slice(self, buf).ok().map(|b| b.len())
    }
}

/// Writes an append message into a buffer one entry at a time.
pub(crate) struct AppendWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    count_at: usize,
    count: usize,
}

impl<'b> AppendWriter<'b> {
    /// Starts an append message; `None` if even the header does not fit.
    pub(crate) fn begin(
        buf: &'b mut [u8],
        head: (NodeId, NodeId, Term),
        prev_index: Index,
        prev_term: Term,
        commit: Index,
    ) -> Option<Self> {
        // Variant tag 0 is `Body::Append`.
        let fields = (head.0, head.1, head.2, 0u32, prev_index, prev_term, commit);
        let len = postcard::to_slice(&fields, &mut *buf).ok()?.len();
        if len >= buf.len() {
            return None;
        }
        buf[len] = 0;
        Some(Self {
            buf,
            len: len + 1,
            count_at: len,
            count: 0,
        })
    }

    /// Adds one entry; `false` (and nothing written) if it does not fit or the message already
    /// holds [`ENTRIES_PER_MESSAGE_MAX`] entries.
    ///
    /// The entry is written by hand in postcard's form of [`Entry`] (the fields in order: term
    /// and index as varints, the kind's variant index as a varint, the payload as a varint
    /// length and its bytes), which the tests check against postcard itself. This is the
    /// hottest loop of a leader, and the generic serializer costs several times more.
    pub(crate) fn push(&mut self, e: &Entry<'_>) -> bool {
        if self.count >= ENTRIES_PER_MESSAGE_MAX {
            return false;
        }
        let out = &mut self.buf[self.len..];
        // Worst case: three 10-byte varints, the kind, and the payload.
        if out.len() < 31 + e.data.len() {
            // Too close to the end for the fast path: measure exactly.
            let need = varint_len(e.term)
                + varint_len(e.index)
                + 1
                + varint_len(e.data.len() as u64)
                + e.data.len();
            if out.len() < need {
                return false;
            }
        }
        let mut at = put_varint(out, 0, e.term);
        at = put_varint(out, at, e.index);
        // `EntryKind`'s discriminants are its variant indices (0 and 1): one-byte varints.
        out[at] = e.kind as u8;
        at = put_varint(out, at + 1, e.data.len() as u64);
        out[at..at + e.data.len()].copy_from_slice(e.data);
        self.len += at + e.data.len();
        self.count += 1;
        self.buf[self.count_at] = self.count as u8;
        true
    }

    /// Entries written so far.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Finishes the message; returns its length.
    pub(crate) fn finish(self) -> usize {
        self.len
    }
}

/// Encodes a snapshot chunk message into `buf`, letting `fill` read the `len` data bytes
/// straight into place (from storage), so no chunk-sized buffer is needed anywhere else.
/// `fill` returns how many bytes it wrote; anything but `len` abandons the message.
pub(crate) fn encode_snapshot_chunk(
    buf: &mut [u8],
    head: (NodeId, NodeId, Term),
    meta: &SnapshotMeta,
    total_len: u64,
    offset: u64,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> usize,
) -> Option<usize> {
    let fields = (
        head.0,
        head.1,
        head.2,
        SNAPSHOT_TAG,
        meta,
        total_len,
        offset,
        len as u64,
    );
    let n = postcard::to_slice(&fields, &mut *buf).ok()?.len();
    let end = n.checked_add(len)?;
    let dst = buf.get_mut(n..end)?;
    (fill(dst) == len).then_some(end)
}

/// Reads postcard's encoding of a whole message whose body is an append, by hand: the
/// hottest path of a follower, where the generic deserializer costs several times more.
///
/// This is only a shortcut. It accepts a subset of what postcard accepts (varints read
/// exactly as postcard reads them; an entry count and payload lengths in their short forms)
/// and on anything else, including every malformed input, returns `None` so that
/// [`Message::decode`] asks postcard. Whatever it accepts, postcard decodes to the same
/// message (a test compares the two on valid and mutated encodings).
fn decode_append(bytes: &[u8]) -> Option<Message<'_>> {
    let mut r = Reader { bytes, at: 0 };
    let (from, to, term) = (r.varint_u64()?, r.varint_u64()?, r.varint_u64()?);
    // Variant index 0 is `Body::Append`; other bodies are small and rare.
    if r.varint_u32()? != 0 {
        return None;
    }
    let (prev_index, prev_term, commit) = (r.varint_u64()?, r.varint_u64()?, r.varint_u64()?);
    let count = r.byte()?;
    if usize::from(count) > ENTRIES_PER_MESSAGE_MAX {
        return None;
    }
    let mut entries = Vec::new();
    for _ in 0..count {
        let (term, index) = (r.varint_u64()?, r.varint_u64()?);
        let kind = match r.varint_u32()? {
            0 => EntryKind::Normal,
            1 => EntryKind::Config,
            _ => return None,
        };
        let len = r.short_len()?;
        let data = r.bytes.get(r.at..r.at.checked_add(len)?)?;
        r.at += len;
        // Cannot fail: at most ENTRIES_PER_MESSAGE_MAX entries, checked above.
        entries
            .push(Entry {
                term,
                index,
                kind,
                data,
            })
            .ok()?;
    }
    if r.at != bytes.len() {
        return None;
    }
    Some(Message {
        from,
        to,
        term,
        body: Body::Append {
            prev_index,
            prev_term,
            commit,
            entries,
        },
    })
}

/// A cursor over postcard bytes for [`decode_append`].
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// A varint of at most `max` bytes whose last byte is at most `last_max`, accumulated
    /// as postcard does (non-minimal forms included).
    #[inline]
    fn varint(&mut self, max: usize, last_max: u8) -> Option<u64> {
        // Most fields (terms, kinds, short lengths) take one byte.
        match self.bytes.get(self.at) {
            Some(&b) if b < 0x80 => {
                self.at += 1;
                Some(u64::from(b))
            }
            _ => self.varint_long(max, last_max),
        }
    }

    fn varint_long(&mut self, max: usize, last_max: u8) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..max {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return (i + 1 < max || b <= last_max).then_some(out);
            }
        }
        None
    }

    fn varint_u64(&mut self) -> Option<u64> {
        self.varint(10, 0x01)
    }

    fn varint_u32(&mut self) -> Option<u32> {
        self.varint(5, 0x0f).map(|v| v as u32)
    }

    /// A byte length in at most three varint bytes (any message fits well below that); longer
    /// forms, which postcard reads differently on 16-, 32- and 64-bit targets, are left to it.
    fn short_len(&mut self) -> Option<usize> {
        self.varint(3, 0x7f).map(|v| v as usize)
    }
}

/// Bytes of the postcard varint (LEB128) of `v`.
fn varint_len(v: u64) -> usize {
    // 7 bits per byte; 0 still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes the postcard varint of `v` at `buf[at..]`; returns the index after it. The caller
/// has checked that it fits.
fn put_varint(buf: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: Index, data: &[u8]) -> Entry<'_> {
        Entry {
            term: 3,
            index,
            kind: EntryKind::Normal,
            data,
        }
    }

    #[test]
    fn incremental_append_matches_postcard_encoding() {
        let mut buf = [0u8; 512];
        let mut w = AppendWriter::begin(&mut buf, (1, 2, 3), 7, 2, 5).unwrap();
        assert!(w.push(&entry(8, b"hello")));
        assert!(w.push(&entry(9, b"")));
        let n = w.finish();
        let m = Message::decode(&buf[..n]).unwrap();
        let mut entries = Vec::new();
        entries.push(entry(8, b"hello")).unwrap();
        entries.push(entry(9, b"")).unwrap();
        let expect = Message {
            from: 1,
            to: 2,
            term: 3,
            body: Body::Append {
                prev_index: 7,
                prev_term: 2,
                commit: 5,
                entries,
            },
        };
        assert_eq!(m, expect);
        let mut buf2 = [0u8; 512];
        let n2 = expect.encode(&mut buf2).unwrap();
        assert_eq!(&buf[..n], &buf2[..n2]);
    }

    #[test]
    fn snapshot_chunk_encoding_matches_postcard() {
        let meta = SnapshotMeta {
            index: 9,
            term: 2,
            membership: crate::Membership::from_voters(&[1, 2, 3]).unwrap(),
        };
        let mut buf = [0u8; 256];
        let n = encode_snapshot_chunk(&mut buf, (1, 2, 4), &meta, 100, 40, 5, |d| {
            d.copy_from_slice(b"hello");
            5
        })
        .unwrap();
        let expect = Message {
            from: 1,
            to: 2,
            term: 4,
            body: Body::Snapshot {
                meta: meta.clone(),
                total_len: 100,
                offset: 40,
                data: b"hello",
            },
        };
        assert_eq!(Message::decode(&buf[..n]), Ok(expect.clone()));
        let mut buf2 = [0u8; 256];
        let n2 = expect.encode(&mut buf2).unwrap();
        assert_eq!(&buf[..n], &buf2[..n2]);
        // A chunk claiming to run past the end is refused.
        let n = encode_snapshot_chunk(&mut buf, (1, 2, 4), &meta, 42, 40, 5, |_| 5).unwrap();
        assert!(matches!(
            Message::decode(&buf[..n]),
            Err(DecodeError::Invalid(_))
        ));
        // A short read abandons the message.
        assert!(encode_snapshot_chunk(&mut buf, (1, 2, 4), &meta, 100, 0, 5, |_| 3).is_none());
    }

    #[test]
    fn hand_written_entries_match_postcard_exactly() {
        let payload = [0xa5u8; 300];
        let cases = [
            (0, 1, EntryKind::Normal, &payload[..0]),
            (127, 128, EntryKind::Config, &payload[..1]),
            (u64::MAX, u64::MAX - 1, EntryKind::Normal, &payload[..127]),
            (1 << 35, 1 << 56, EntryKind::Config, &payload[..128]),
            (3, 16_384, EntryKind::Normal, &payload[..]),
        ];
        for (term, index, kind, data) in cases {
            let e = Entry {
                term,
                index,
                kind,
                data,
            };
            let mut want = [0u8; 400];
            let want = postcard::to_slice(&e, &mut want).unwrap();
            assert_eq!(varint_len(term) + varint_len(index), {
                let mut b = [0u8; 20];
                let at = put_varint(&mut b, 0, term);
                put_varint(&mut b, at, index)
            });
            // Every buffer size: exactly the ones with room for the entry accept it.
            for room in 0..want.len() + 40 {
                let mut buf = [0u8; 480];
                let mut w = AppendWriter::begin(&mut buf, (1, 2, 3), 0, 0, 0).unwrap();
                let header = w.len;
                w.buf = &mut core::mem::take(&mut w.buf)[..header + room];
                let ok = w.push(&e);
                assert_eq!(
                    ok,
                    room >= want.len(),
                    "room {room} for {} bytes",
                    want.len()
                );
                if ok {
                    assert_eq!(&w.buf[header..w.len], want);
                } else {
                    assert_eq!(w.len, header);
                }
            }
        }
    }

    /// The hand-written append decoder agrees with postcard on everything it accepts, and
    /// `decode` as a whole answers exactly as the postcard-only decoder did, on valid
    /// encodings of every kind of message and on many mutations of them.
    #[test]
    fn fast_append_decoder_agrees_with_postcard() {
        fn reference(b: &[u8]) -> Result<Message<'_>, DecodeError> {
            if b.len() > MESSAGE_BYTES_MAX {
                return Err(DecodeError::TooLong);
            }
            let m = Message::decode_postcard(b)?;
            m.validate()?;
            Ok(m)
        }
        let mut samples: Vec<([u8; 512], usize), 16> = Vec::new();
        let mut add = |m: &Message<'_>| {
            let mut buf = [0u8; 512];
            let n = m.encode(&mut buf).unwrap();
            samples.push((buf, n)).unwrap();
        };
        let payloads: [&[u8]; 4] = [b"", b"x", &[0x80; 130], &[0xff; 200]];
        for (k, big) in [(1u64, false), (2, true), (5, true)] {
            let mut entries = Vec::new();
            for i in 0..k {
                let index = if big { (1 << 40) + i } else { 7 + i };
                let kind = if i % 2 == 0 {
                    EntryKind::Normal
                } else {
                    EntryKind::Config
                };
                let data = payloads[(i as usize + k as usize) % payloads.len()];
                entries
                    .push(Entry {
                        term: 2,
                        index,
                        kind,
                        data,
                    })
                    .unwrap();
            }
            let prev_index = entries[0].index - 1;
            let body = Body::Append {
                prev_index,
                prev_term: 2,
                commit: prev_index,
                entries,
            };
            add(&Message {
                from: 1,
                to: if big { u64::MAX } else { 2 },
                term: if big { 1 << 62 } else { 3 },
                body,
            });
        }
        let others = [
            Body::Heartbeat {
                commit: 9,
                context: 1 << 40,
            },
            Body::TimeoutNow,
            Body::VoteResponse {
                pre: true,
                granted: false,
            },
            Body::Append {
                prev_index: 0,
                prev_term: 0,
                commit: 0,
                entries: Vec::new(),
            },
        ];
        for body in others {
            add(&Message {
                from: 3,
                to: 1,
                term: 4,
                body,
            });
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut accepted = 0;
        for (buf, n) in &samples {
            for trial in 0..3000 {
                let mut b = *buf;
                let mut len = *n;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x >> 16) as usize % len.max(1);
                match trial % 6 {
                    0 => {} // unmutated
                    1 => b[at] ^= 1 << ((x >> 8) % 8),
                    2 => b[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][(x >> 40) as usize % 5],
                    3 => len = at,
                    4 => len = (len + 1 + (x >> 50) as usize % 3).min(b.len()),
                    _ => {
                        b[at] |= 0x80;
                        b.copy_within(at..len, at + 1);
                        b[at + 1] = 0x00;
                        len = (len + 1).min(b.len());
                    }
                }
                let bytes = &b[..len];
                if let Some(fast) = decode_append(bytes) {
                    accepted += 1;
                    assert_eq!(Message::decode_postcard(bytes), Ok(fast), "{bytes:?}");
                }
                assert_eq!(Message::decode(bytes), reference(bytes), "{bytes:?}");
            }
        }
        assert!(accepted > 1000, "the fast path was hardly exercised");
    }

    #[test]
    fn writer_refuses_what_does_not_fit() {
        let mut buf = [0u8; 24];
        let mut w = AppendWriter::begin(&mut buf, (1, 2, 3), 0, 0, 0).unwrap();
        assert!(!w.push(&entry(1, &[7u8; 32])));
        assert_eq!(w.count(), 0);
        let n = w.finish();
        assert!(Message::decode(&buf[..n]).is_ok());
    }

    #[test]
    fn decode_rejects_bad_input() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Malformed));
        assert_eq!(Message::decode(&[0xff; 40]), Err(DecodeError::Malformed));
        let big = [0u8; MESSAGE_BYTES_MAX + 1];
        assert_eq!(Message::decode(&big), Err(DecodeError::TooLong));
        // Trailing garbage after a valid message.
        let m = Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::TimeoutNow,
        };
        let mut buf = [0u8; 64];
        let n = m.encode(&mut buf).unwrap();
        assert!(Message::decode(&buf[..n]).is_ok());
        assert_eq!(Message::decode(&buf[..n + 1]), Err(DecodeError::Malformed));
        // Non-consecutive entries.
        let mut w = AppendWriter::begin(&mut buf, (1, 2, 3), 0, 0, 0).unwrap();
        assert!(w.push(&entry(1, b"a")));
        assert!(w.push(&entry(3, b"b")));
        let n = w.finish();
        assert!(matches!(
            Message::decode(&buf[..n]),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let mut buf = [0u8; 256];
        let mut w = AppendWriter::begin(&mut buf, (1, 2, 3), 0, 0, 0).unwrap();
        assert!(w.push(&entry(1, b"abc")));
        let n = w.finish();
        for cut in 0..n {
            assert!(
                Message::decode(&buf[..cut]).is_err(),
                "prefix {cut} decoded"
            );
        }
    }
}
