//! Wire types of the KV service: what a client asks ([`Request`], [`Command`]) and what it is
//! told ([`Response`]).
//!
//! Both travel as postcard. A request is the payload of one log entry, so its keys and values
//! are borrowed from the entry when it is decoded. A response is fixed-size (heapless), so a
//! node can build and send one without an allocator; [`crate::kv::RESPONSE_BYTES_MAX`] bounds
//! its encoding.
//!
//! Decoding never trusts its input: malformed or trailing bytes, and responses that break a
//! bound, are refused with a [`DecodeError`].

use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::{KvError, KEY_BYTES_MAX, SCAN_PAGE_BYTES_MAX, SCAN_PAIRS_MAX, VALUE_BYTES_MAX};
use crate::error::DecodeError;
use crate::limits::ENTRY_DATA_BYTES_MAX;

/// A value as returned by `Get`.
pub type Value = Vec<u8, VALUE_BYTES_MAX>;

/// One client request: the command plus the session fields that make it exactly-once.
///
/// # Sessions
///
/// `client_id` names the client; it must be unique among live clients (a random `u64` is the
/// usual choice) and non-zero. `seq` numbers the client's requests: **the first request of a
/// client carries `seq` 1, which opens its session**, and every later request carries a larger
/// `seq` (normally the previous one plus 1). A client keeps at most one request outstanding:
/// it resends the same request, with the same `seq`, until it gets an answer, and only then
/// moves on to `seq + 1`. See [`crate::kv::session`] for what the store does with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request<'a> {
    /// The client (non-zero).
    pub client_id: u64,
    /// The client's request number (starts at 1).
    pub seq: u64,
    /// What to do.
    #[serde(borrow)]
    pub command: Command<'a>,
}

impl<'a> Request<'a> {
    /// Encodes the request into `buf`; returns the bytes written, or `None` if it does not fit.
    /// A request within the key and value limits needs at most
    /// [`crate::kv::REQUEST_BYTES_MAX`] bytes.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        postcard::to_slice(self, buf).ok().map(|b| b.len())
    }

    /// Decodes one request from exactly `bytes`, borrowing keys and values from them.
    ///
    /// Refuses (never panics on) input longer than an entry, malformed input and trailing
    /// bytes. Keys and values longer than the limits decode fine: applying them answers
    /// [`KvError::KeyTooLong`] or [`KvError::ValueTooLong`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > ENTRY_DATA_BYTES_MAX {
            return Err(DecodeError::Invalid(
                "request larger than ENTRY_DATA_BYTES_MAX",
            ));
        }
        let (req, rest): (Request<'a>, _) =
            postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        Ok(req)
    }

    /// True if the command only reads (see [`Command::is_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.command.is_read_only()
    }
}

/// The operations of the store. New variants are only ever added at the end, so old encodings
/// keep their meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command<'a> {
    /// Reads one key. Answer: [`Response::Value`].
    Get {
        /// The key.
        #[serde(borrow)]
        key: &'a [u8],
    },
    /// Sets a key to a value, creating it if absent. Answer: [`Response::Ok`].
    Put {
        /// The key.
        #[serde(borrow)]
        key: &'a [u8],
        /// The new value.
        #[serde(borrow)]
        value: &'a [u8],
    },
    /// Removes a key. Answer: [`Response::Deleted`], saying whether it existed.
    Delete {
        /// The key.
        #[serde(borrow)]
        key: &'a [u8],
    },
    /// Sets (or removes) a key only if its current value is `expected`. Answer:
    /// [`Response::Ok`] if it was, [`Response::CasMismatch`] (and no change) if not.
    CompareAndSwap {
        /// The key.
        #[serde(borrow)]
        key: &'a [u8],
        /// The value the key must have; `None` means the key must be absent.
        #[serde(borrow)]
        expected: Option<&'a [u8]>,
        /// The value to set; `None` removes the key.
        #[serde(borrow)]
        new: Option<&'a [u8]>,
    },
    /// Lists, in ascending byte order, the keys that start with `prefix` and come after
    /// `start_after`, with their values. Answer: [`Response::Page`], holding at most `limit`
    /// pairs (0, or anything above [`SCAN_PAIRS_MAX`], means [`SCAN_PAIRS_MAX`]) and at most
    /// [`SCAN_PAGE_BYTES_MAX`] key and value bytes. To read the next page, repeat the scan with
    /// `start_after` set to the page's [`ScanPage::last_key`] while [`ScanPage::more`] is true.
    Scan {
        /// Only keys starting with these bytes (empty: all keys).
        #[serde(borrow)]
        prefix: &'a [u8],
        /// Only keys strictly greater than this one (`None`: from the first key).
        #[serde(borrow)]
        start_after: Option<&'a [u8]>,
        /// Most pairs wanted.
        limit: u16,
    },
}

impl Command<'_> {
    /// True for commands that change nothing (`Get`, `Scan`). The node runtime may answer
    /// these with [`crate::kv::KvStore::query`] after a ReadIndex round instead of writing them
    /// to the log.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Command::Get { .. } | Command::Scan { .. })
    }

    /// Checks the key and value lengths against [`KEY_BYTES_MAX`] and [`VALUE_BYTES_MAX`]; the
    /// error is what the store answers. A client can call this to refuse a request before
    /// sending it.
    pub fn check_limits(&self) -> Result<(), KvError> {
        let key_ok = |k: &[u8]| {
            if k.len() <= KEY_BYTES_MAX {
                Ok(())
            } else {
                Err(KvError::KeyTooLong)
            }
        };
        let value_ok = |v: &[u8]| {
            if v.len() <= VALUE_BYTES_MAX {
                Ok(())
            } else {
                Err(KvError::ValueTooLong)
            }
        };
        match *self {
            Command::Get { key } | Command::Delete { key } => key_ok(key),
            Command::Put { key, value } => {
                key_ok(key)?;
                value_ok(value)
            }
            Command::CompareAndSwap { key, expected, new } => {
                key_ok(key)?;
                expected.map_or(Ok(()), value_ok)?;
                new.map_or(Ok(()), value_ok)
            }
            Command::Scan {
                prefix,
                start_after,
                ..
            } => {
                key_ok(prefix)?;
                start_after.map_or(Ok(()), key_ok)
            }
        }
    }
}

/// The answer to a [`Request`]. Fixed-size: about `SCAN_PAGE_BYTES_MAX` plus 200 bytes, so
/// hold it in a static or a long-lived buffer on small targets rather than in deep call chains.
///
/// New variants are only ever added at the end, so old encodings keep their meaning.
// Boxing the large variants would need an allocator; a fixed size is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A `Put` was applied, or a `CompareAndSwap` matched and was applied.
    Ok,
    /// A `Delete` was applied; `existed` says whether the key was there.
    Deleted {
        /// The key existed (and is now gone).
        existed: bool,
    },
    /// A `CompareAndSwap` did not match; nothing changed. (The current value is not included,
    /// so that a retransmitted request can be answered from the session table; `Get` it.)
    CasMismatch,
    /// The answer to a `Get`: the value, or `None` if the key is absent.
    Value(Option<Value>),
    /// The answer to a `Scan`.
    Page(ScanPage),
    /// The request was refused; nothing changed.
    Err(KvError),
}

impl Response {
    /// Encodes the response into `buf`; returns the bytes written, or `None` if it does not
    /// fit. A buffer of [`crate::kv::RESPONSE_BYTES_MAX`] bytes always suffices.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        postcard::to_slice(self, buf).ok().map(|b| b.len())
    }

    /// Decodes one response from exactly `bytes`. Refuses (never panics on) malformed input,
    /// trailing bytes, values or pages beyond the limits, and inconsistent pages.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (resp, rest): (Response, _) =
            postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        Ok(resp)
    }
}

/// The lengths of one pair of a [`ScanPage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PairLens {
    key: u16,
    value: u16,
}

/// One page of a scan: up to [`SCAN_PAIRS_MAX`] pairs in ascending key order, packed into
/// [`SCAN_PAGE_BYTES_MAX`] bytes (so small pairs do not each cost the largest size).
///
/// Invariant: the pair lengths add up to the packed bytes, each within the key and value
/// limits, and the keys strictly ascend. Decoding checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScanPageWire")]
pub struct ScanPage {
    more: bool,
    lens: Vec<PairLens, SCAN_PAIRS_MAX>,
    bytes: Vec<u8, SCAN_PAGE_BYTES_MAX>,
}

/// The encoded form of [`ScanPage`], checked before it becomes one.
#[derive(Deserialize)]
struct ScanPageWire {
    more: bool,
    lens: Vec<PairLens, SCAN_PAIRS_MAX>,
    bytes: Vec<u8, SCAN_PAGE_BYTES_MAX>,
}

impl TryFrom<ScanPageWire> for ScanPage {
    type Error = &'static str;

    fn try_from(w: ScanPageWire) -> Result<Self, Self::Error> {
        let mut total = 0usize;
        for l in &w.lens {
            if usize::from(l.key) > KEY_BYTES_MAX || usize::from(l.value) > VALUE_BYTES_MAX {
                return Err("scan pair beyond the key or value limit");
            }
            total += usize::from(l.key) + usize::from(l.value);
        }
        if total != w.bytes.len() {
            return Err("scan pair lengths do not match the page bytes");
        }
        if w.more && w.lens.is_empty() {
            return Err("empty scan page claims more pairs");
        }
        let page = ScanPage {
            more: w.more,
            lens: w.lens,
            bytes: w.bytes,
        };
        let mut prev: Option<&[u8]> = None;
        for (k, _) in page.iter() {
            if prev.is_some_and(|p| p >= k) {
                return Err("scan keys not in ascending order");
            }
            prev = Some(k);
        }
        Ok(page)
    }
}

impl ScanPage {
    /// An empty page with `more` false.
    pub const fn new() -> Self {
        Self {
            more: false,
            lens: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// Appends a pair; `false` (and no change) if the page already holds [`SCAN_PAIRS_MAX`]
    /// pairs, if the pair does not fit in the remaining bytes, or if it breaks a limit.
    /// Callers add keys in ascending order.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> bool {
        if key.len() > KEY_BYTES_MAX
            || value.len() > VALUE_BYTES_MAX
            || self.lens.is_full()
            || self.bytes.len() + key.len() + value.len() > SCAN_PAGE_BYTES_MAX
        {
            return false;
        }
        debug_assert!(self.last_key().is_none_or(|last| last < key));
        // Cannot fail: both were checked above. The lengths fit u16 by the asserts in `kv`.
        let pushed = self.bytes.extend_from_slice(key).is_ok()
            && self.bytes.extend_from_slice(value).is_ok()
            && self
                .lens
                .push(PairLens {
                    key: key.len() as u16,
                    value: value.len() as u16,
                })
                .is_ok();
        debug_assert!(pushed);
        pushed
    }

    pub(crate) fn set_more(&mut self, more: bool) {
        self.more = more;
    }

    /// True if more matching keys follow the last one of this page.
    pub fn more(&self) -> bool {
        self.more
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True if the page holds no pair.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Key and value bytes held, summed over the pairs.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    /// The pairs, in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut at = 0usize;
        self.lens.iter().map(move |l| {
            let k = at;
            let v = k + usize::from(l.key);
            at = v + usize::from(l.value);
            (&self.bytes[k..v], &self.bytes[v..at])
        })
    }

    /// The last (largest) key of the page: the `start_after` of the next page.
    pub fn last_key(&self) -> Option<&[u8]> {
        let l = self.lens.last()?;
        let end = self.bytes.len() - usize::from(l.value);
        Some(&self.bytes[end - usize::from(l.key)..end])
    }
}
