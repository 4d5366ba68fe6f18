//! The replicated key-value state machine, with client sessions for exactly-once writes.
//!
//! The same code runs on desktop and firmware nodes; only the map behind it differs.
//!
//! # Layers
//!
//! - [`command`]: the wire types. A client sends a [`Request`] (its `client_id`, its `seq` and
//!   one [`Command`]); the leader proposes the encoded request as a log entry; every node
//!   applies it and the proposing node sends the [`Response`] back. Keys and values are
//!   borrowed from the entry, so decoding copies nothing.
//! - [`map`]: the [`KvMap`] trait and its two implementations: [`ArenaMap`], which packs all
//!   pairs into one byte arena (no allocator, a few bytes of overhead per key), and, behind the
//!   `alloc` feature, `HashKvMap`, a hashbrown table sized once up front.
//! - [`session`]: the bounded table of client sessions (Raft dissertation §6.3) that turns
//!   at-least-once delivery into exactly-once application.
//! - [`store`]: [`KvStore`], the one implementation of the command logic over any [`KvMap`].
//!   It implements [`crate::StateMachine`] and offers read-only queries for ReadIndex reads.
//!
//! # Example
//!
//! ```
//! use tinyraft::kv::{ArenaMap, Command, KvStore, Request, Response, REQUEST_BYTES_MAX};
//! use tinyraft::{Entry, EntryKind, StateMachine};
//!
//! // At most 64 keys in 4 KiB of pairs, and 16 client sessions: about 5 KiB, no allocator.
//! let mut store: KvStore<ArenaMap<64, 4096>, 16> = KvStore::new(ArenaMap::new());
//!
//! // A client's first request (seq 1), as the leader would propose it.
//! let put = Request { client_id: 42, seq: 1, command: Command::Put { key: b"k", value: b"v" } };
//! let mut buf = [0u8; REQUEST_BYTES_MAX];
//! let n = put.encode(&mut buf).unwrap();
//!
//! // Every node applies the committed entry; the proposer sends the response back.
//! let entry = Entry { term: 1, index: 1, kind: EntryKind::Normal, data: &buf[..n] };
//! assert_eq!(store.apply(&entry), Response::Ok);
//!
//! // After a ReadIndex round, reads need no log entry.
//! assert_eq!(store.get(b"k"), Some(&b"v"[..]));
//! assert!(Command::Get { key: b"k" }.is_read_only());
//! ```
//!
//! # Determinism
//!
//! Every node must give the same answer to the same entry. Results therefore depend only on the
//! map's contents and the log: a scan returns keys in ascending byte order whatever order the
//! map keeps them in, and session eviction looks only at log indexes. Over-limit requests get
//! error responses, decided by the limits below and by the map's capacity. **Every replica of a
//! cluster must use the same map type and capacities and the same session capacity**; otherwise
//! a write could succeed on one node and fail with [`KvError::KeysFull`] on another.

pub mod command;
pub mod map;
pub mod session;
mod snapshot;
pub mod store;

#[cfg(test)]
mod tests;

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::ENTRY_DATA_BYTES_MAX;

pub use command::{Command, Request, Response, ScanPage, Value};
#[cfg(feature = "alloc")]
pub use map::HashKvMap;
pub use map::{ArenaMap, KvMap, MapFull};
pub use session::{Outcome, Session, SessionTable};
pub use store::KvStore;

/// Longest key, in bytes. Also bounds a scan's `prefix` and `start_after`.
pub const KEY_BYTES_MAX: usize = 128;

/// Longest value, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024;

/// Most pairs one scan page returns (a request asking for more, or for 0, gets this many).
pub const SCAN_PAIRS_MAX: usize = 32;

/// Most key and value bytes (summed over its pairs) one scan page returns. At least one pair of
/// the largest size, so a scan always makes progress.
pub const SCAN_PAGE_BYTES_MAX: usize = 2048;

/// Bytes postcard needs for the varint of `n`.
const fn varint_bytes(mut n: usize) -> usize {
    let mut bytes = 1;
    while n >= 0x80 {
        n >>= 7;
        bytes += 1;
    }
    bytes
}

/// Bytes of a `u64` varint at its largest.
const U64_VARINT_BYTES_MAX: usize = 10;

/// Encoded size of a byte string of at most `n` bytes.
const fn bytes_field(n: usize) -> usize {
    varint_bytes(n) + n
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Largest encoded [`Request`] whose keys and values respect the limits, in bytes: client id,
/// seq, command tag, then the largest command (a compare-and-swap carrying a key and two
/// values). Checked at compile time to fit in one log entry.
pub const REQUEST_BYTES_MAX: usize = 2 * U64_VARINT_BYTES_MAX
    + 1
    + max(
        // CompareAndSwap { key, expected: Some(..), new: Some(..) }
        bytes_field(KEY_BYTES_MAX) + 2 * (1 + bytes_field(VALUE_BYTES_MAX)),
        max(
            // Put { key, value }
            bytes_field(KEY_BYTES_MAX) + bytes_field(VALUE_BYTES_MAX),
            // Scan { prefix, start_after: Some(..), limit: u16 }
            bytes_field(KEY_BYTES_MAX) + 1 + bytes_field(KEY_BYTES_MAX) + 3,
        ),
    );

/// Largest encoded [`Response`], in bytes: a buffer this large always holds an answer. The
/// largest answer is a full scan page (tag, `more`, the pair lengths, the bytes); a `Get`'s
/// value is smaller.
pub const RESPONSE_BYTES_MAX: usize = 1 + max(
    1 + varint_bytes(SCAN_PAIRS_MAX)
        + SCAN_PAIRS_MAX * (varint_bytes(KEY_BYTES_MAX) + varint_bytes(VALUE_BYTES_MAX))
        + bytes_field(SCAN_PAGE_BYTES_MAX),
    1 + bytes_field(VALUE_BYTES_MAX),
);

const _: () = {
    assert!(
        REQUEST_BYTES_MAX <= ENTRY_DATA_BYTES_MAX,
        "a request must fit in one entry"
    );
    assert!(
        KEY_BYTES_MAX + VALUE_BYTES_MAX <= SCAN_PAGE_BYTES_MAX,
        "a page must hold the largest pair, or a scan could stall"
    );
    // Pair lengths travel as u16 (in `PairLen` and in `ArenaMap`'s slots).
    assert!(KEY_BYTES_MAX <= u16::MAX as usize);
    assert!(VALUE_BYTES_MAX <= u16::MAX as usize);
    assert!(SCAN_PAIRS_MAX >= 1 && SCAN_PAIRS_MAX <= u16::MAX as usize);
};

/// Why a request was not carried out. Sent to the client inside [`Response::Err`]; every node
/// decides it the same way, so it is part of the replicated result, not a local failure.
///
/// New variants are only ever added at the end, so old encodings keep their meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvError {
    /// A key (or a scan's prefix or `start_after`) is longer than [`KEY_BYTES_MAX`].
    KeyTooLong,
    /// A value (or a compare-and-swap's expected value) is longer than [`VALUE_BYTES_MAX`].
    ValueTooLong,
    /// The map already holds as many keys as it can; a new key was refused (updates of existing
    /// keys and deletes still work).
    KeysFull,
    /// The map's byte storage cannot hold the new pair or the longer value.
    NoSpace,
    /// The request's `seq` is older than the last one applied for this client: it is a delayed
    /// duplicate of a request already answered, and it was not applied.
    Stale,
    /// The client has no session (it was evicted, or never opened) and `seq` is above 1: the
    /// request was not applied, because it might have been applied before the eviction. The
    /// client must start again with a new `client_id` and `seq` 1.
    SessionExpired,
    /// `client_id` or `seq` is 0; both start at 1.
    InvalidSession,
    /// The entry's data is not an encoded [`Request`].
    Malformed,
    /// [`KvStore::query`] was given a command that writes.
    NotReadOnly,
    /// The entry's index is not above the last applied index, so it was ignored (a bug in the
    /// caller, which must apply each entry once, in log order).
    AlreadyApplied,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvError::KeyTooLong => "key longer than KEY_BYTES_MAX",
            KvError::ValueTooLong => "value longer than VALUE_BYTES_MAX",
            KvError::KeysFull => "store holds its maximum number of keys",
            KvError::NoSpace => "store has no room for the value",
            KvError::Stale => "request older than the last one applied for this client",
            KvError::SessionExpired => "client session expired; start a new one at seq 1",
            KvError::InvalidSession => "client_id and seq must be at least 1",
            KvError::Malformed => "entry is not an encoded request",
            KvError::NotReadOnly => "command writes; it must go through the log",
            KvError::AlreadyApplied => "entry index already applied",
        })
    }
}
