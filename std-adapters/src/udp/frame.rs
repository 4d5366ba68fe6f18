//! The wire format of one datagram, and its MAC.
//!
//! Every datagram the UDP transport sends or accepts is one frame:
//!
//! ```text
//! offset  size  field
//!      0     1  magic      0xA1: high nibble 0xA marks a tinyraft frame, low nibble is
//!                          the format version (1)
//!      1     1  kind       1 = Raft, 2 = ClientRequest, 3 = ClientResponse
//!      2     8  cluster_id big-endian u64
//!     10     8  sender     big-endian u64: the node id for Raft and ClientResponse frames,
//!                          the client id for ClientRequest frames
//!     18     n  payload    opaque bytes (a postcard-encoded Raft message, or a KV request
//!                          or response)
//!   18+n    32  tag        HMAC-SHA256 under the cluster key over bytes 0 .. 18+n
//! ```
//!
//! The tag is the full 32-byte HMAC-SHA256 output. Truncating it to 16 bytes would still
//! leave a forgery chance of 2^-128 per attempt, but 16 bytes per datagram buy nothing here,
//! and a full-length tag is what [`hmac::Mac::verify_slice`] checks, in constant time.
//!
//! The tag covers the header as well as the payload, so a frame cannot be re-labelled: a
//! client request cannot be turned into a Raft message, moved to another cluster, or
//! attributed to another sender without the key. Nothing is encrypted: anyone on the path
//! can read payloads. Replays are not detected here (see the [`super`] module docs for why
//! that is harmless).
//!
//! Decoding checks the cheap structural fields (length, magic, kind) first and the tag
//! second. Checking the cluster id and the sender against the configuration is the
//! transport's job, done only for frames whose tag is valid.

use hmac::Mac;

use super::key::ClusterKey;

/// The first byte of every frame: tinyraft frame format, version 1.
pub const FRAME_MAGIC: u8 = 0xA1;

/// Bytes before the payload: magic, kind, cluster id, sender.
pub const HEADER_BYTES: usize = 1 + 1 + 8 + 8;

/// Bytes of the HMAC-SHA256 tag after the payload.
pub const TAG_BYTES: usize = 32;

/// Bytes a frame adds around its payload.
pub const FRAME_OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;

/// Largest UDP payload over IPv4 (65,535 − 20 bytes of IP header − 8 bytes of UDP header).
pub const UDP_PAYLOAD_BYTES_MAX: usize = 65_507;

/// Largest frame payload that fits in one UDP datagram.
///
/// This is below [`tinyraft::limits::MESSAGE_BYTES_MAX`] (64 KiB), so the node must keep its
/// encoded messages at most this long; it is far above
/// [`tinyraft::limits::MESSAGE_BYTES_MIN`], the size needed for one entry of the largest
/// size (checked at compile time below).
pub const PAYLOAD_BYTES_MAX: usize = UDP_PAYLOAD_BYTES_MAX - FRAME_OVERHEAD_BYTES;

const _: () = {
    assert!(HEADER_BYTES == 18);
    assert!(PAYLOAD_BYTES_MAX >= tinyraft::limits::MESSAGE_BYTES_MIN);
};

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A Raft message between two nodes; the sender is a node id.
    Raft = 1,
    /// A request from a KV client to a node; the sender is the client id.
    ClientRequest = 2,
    /// A node's answer to a client; the sender is the node id.
    ClientResponse = 3,
}

impl FrameKind {
    /// Decodes the kind byte; `None` for bytes no kind uses.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Raft),
            2 => Some(Self::ClientRequest),
            3 => Some(Self::ClientResponse),
            _ => None,
        }
    }
}

/// The fields of a frame before its payload (the magic byte is implied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: FrameKind,
    /// The cluster the frame belongs to.
    pub cluster_id: u64,
    /// Node id (Raft, ClientResponse) or client id (ClientRequest) of the sender.
    pub sender: u64,
}

/// A decoded, authenticated frame, borrowing its payload from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header fields.
    pub header: FrameHeader,
    /// The payload, between the header and the tag.
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// Shorter than [`FRAME_OVERHEAD_BYTES`].
    TooShort,
    /// The first byte is not [`FRAME_MAGIC`] (another protocol, or another format version).
    BadMagic(u8),
    /// The kind byte names no [`FrameKind`].
    UnknownKind(u8),
    /// The tag does not match: the datagram was altered, truncated, or made with another key.
    BadTag,
}

impl FrameError {
    /// True if the frame is well-formed but fails authentication.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::BadTag)
    }
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort => write!(f, "datagram shorter than {FRAME_OVERHEAD_BYTES} bytes"),
            Self::BadMagic(b) => write!(f, "bad magic byte {b:#04x} (expected {FRAME_MAGIC:#04x})"),
            Self::UnknownKind(b) => write!(f, "unknown frame kind {b}"),
            Self::BadTag => f.write_str("authentication tag does not match"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes a frame for `payload` into `buf` and returns its length, or `None` (and `buf` in an
/// unspecified state) if it does not fit.
///
/// Allocates nothing: the caller owns and reuses `buf`.
pub fn encode(
    key: &ClusterKey,
    header: &FrameHeader,
    payload: &[u8],
    buf: &mut [u8],
) -> Option<usize> {
    let body_len = HEADER_BYTES.checked_add(payload.len())?;
    let frame_len = body_len.checked_add(TAG_BYTES)?;
    let frame = buf.get_mut(..frame_len)?;
    frame[0] = FRAME_MAGIC;
    frame[1] = header.kind as u8;
    frame[2..10].copy_from_slice(&header.cluster_id.to_be_bytes());
    frame[10..18].copy_from_slice(&header.sender.to_be_bytes());
    frame[HEADER_BYTES..body_len].copy_from_slice(payload);
    let (body, tag) = frame.split_at_mut(body_len);
    let mut mac = key.mac();
    mac.update(body);
    tag.copy_from_slice(&mac.finalize().into_bytes());
    Some(frame_len)
}

/// Decodes and authenticates one datagram.
///
/// Never panics and allocates nothing, whatever `datagram` holds. The returned header is
/// authentic, but its cluster id and sender are not checked against any configuration.
pub fn decode<'a>(key: &ClusterKey, datagram: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    if datagram.len() < FRAME_OVERHEAD_BYTES {
        return Err(FrameError::TooShort);
    }
    if datagram[0] != FRAME_MAGIC {
        return Err(FrameError::BadMagic(datagram[0]));
    }
    let kind = FrameKind::from_u8(datagram[1]).ok_or(FrameError::UnknownKind(datagram[1]))?;
    let (body, tag) = datagram.split_at(datagram.len() - TAG_BYTES);
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| FrameError::BadTag)?;
    let header = FrameHeader {
        kind,
        cluster_id: u64::from_be_bytes(read8(&body[2..10])),
        sender: u64::from_be_bytes(read8(&body[10..18])),
    };
    Ok(Frame {
        header,
        payload: &body[HEADER_BYTES..],
    })
}

fn read8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit};
    use sha2::Sha256;

    const KEY: &[u8] = b"0123456789abcdef-test-key";

    fn key() -> ClusterKey {
        ClusterKey::from_bytes(KEY).unwrap()
    }

    fn header() -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Raft,
            cluster_id: 0x0102_0304_0506_0708,
            sender: 3,
        }
    }

    fn encoded(payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; payload.len() + FRAME_OVERHEAD_BYTES];
        let n = encode(&key(), &header(), payload, &mut buf).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn roundtrip_every_kind() {
        for kind in [
            FrameKind::Raft,
            FrameKind::ClientRequest,
            FrameKind::ClientResponse,
        ] {
            let h = FrameHeader {
                kind,
                cluster_id: u64::MAX,
                sender: 0xdead_beef,
            };
            let mut buf = [0u8; 128];
            let n = encode(&key(), &h, b"payload", &mut buf).unwrap();
            assert_eq!(n, 7 + FRAME_OVERHEAD_BYTES);
            let f = decode(&key(), &buf[..n]).unwrap();
            assert_eq!(f.header, h);
            assert_eq!(f.payload, b"payload");
        }
    }

    #[test]
    fn empty_payload_roundtrips() {
        let buf = encoded(b"");
        assert_eq!(buf.len(), FRAME_OVERHEAD_BYTES);
        assert_eq!(decode(&key(), &buf).unwrap().payload, b"");
    }

    /// Pins the byte layout described in the module docs, so a change to it cannot go
    /// unnoticed, and checks that the tag is plain HMAC-SHA256 over header and payload.
    #[test]
    fn layout_matches_the_docs() {
        let buf = encoded(b"xyz");
        assert_eq!(
            &buf[..HEADER_BYTES + 3],
            &[0xA1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 3, b'x', b'y', b'z']
        );
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).unwrap();
        mac.update(&buf[..HEADER_BYTES + 3]);
        assert_eq!(&buf[HEADER_BYTES + 3..], &mac.finalize().into_bytes()[..]);
    }

    #[test]
    fn too_small_buffer_is_refused() {
        let mut buf = [0u8; FRAME_OVERHEAD_BYTES + 4];
        assert_eq!(encode(&key(), &header(), b"12345", &mut buf), None);
        assert_eq!(
            encode(&key(), &header(), b"1234", &mut buf),
            Some(buf.len())
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        let buf = encoded(b"some payload bytes");
        for len in 0..buf.len() {
            let err = decode(&key(), &buf[..len]).unwrap_err();
            if len < FRAME_OVERHEAD_BYTES {
                assert_eq!(err, FrameError::TooShort, "len {len}");
            } else {
                assert_eq!(err, FrameError::BadTag, "len {len}");
            }
        }
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let buf = encoded(b"flip me");
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let err = decode(&key(), &bad).unwrap_err();
            match i / 8 {
                0 => assert_eq!(err, FrameError::BadMagic(bad[0])),
                // Flipping a kind bit either leaves no kind or names another kind whose tag
                // then fails.
                1 => assert!(matches!(
                    err,
                    FrameError::UnknownKind(_) | FrameError::BadTag
                )),
                _ => assert_eq!(err, FrameError::BadTag, "bit {i}"),
            }
        }
    }

    #[test]
    fn extra_trailing_byte_is_rejected() {
        let mut buf = encoded(b"abc");
        buf.push(0);
        assert_eq!(decode(&key(), &buf), Err(FrameError::BadTag));
    }

    #[test]
    fn wrong_key_is_rejected() {
        let buf = encoded(b"abc");
        let other = ClusterKey::from_bytes(b"another key, 16+ bytes").unwrap();
        assert_eq!(decode(&other, &buf), Err(FrameError::BadTag));
        assert!(FrameError::BadTag.is_auth());
    }

    #[test]
    fn unknown_kind_and_magic_are_reported() {
        let mut buf = encoded(b"abc");
        buf[1] = 9;
        assert_eq!(decode(&key(), &buf), Err(FrameError::UnknownKind(9)));
        buf[0] = 0xA2;
        assert_eq!(decode(&key(), &buf), Err(FrameError::BadMagic(0xA2)));
        assert!(!FrameError::BadMagic(0).is_auth());
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator stands in for a fuzzer here.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = [0u8; 200];
        for round in 0..2000 {
            let len = round % buf.len();
            for b in buf[..len].iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Make some rounds look like frames so the tag check is exercised too.
            if round % 2 == 0 && len > 1 {
                buf[0] = FRAME_MAGIC;
                buf[1] = 1 + (round % 3) as u8;
            }
            assert!(decode(&key(), &buf[..len]).is_err());
        }
    }
}
