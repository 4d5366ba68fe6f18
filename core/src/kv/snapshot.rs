//! The KV store's snapshot: its whole state as a stream of length-prefixed records.
//!
//! ```text
//! record  = len: u16 LE, postcard(Record)      (len <= RECORD_BYTES_MAX)
//! stream  = Header, Pair*, Session*, End
//! ```
//!
//! Records are small (one pair at most) and self-delimiting, so the stream can be written in
//! pieces as the map is walked and read back in pieces of any size: RAM is one record on
//! either side, whatever the store's size. `End` carries the counts, so a truncated stream is
//! detected rather than restored as a smaller store.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::session::Session;
use super::{KEY_BYTES_MAX, VALUE_BYTES_MAX};
use crate::state_machine::SnapshotError;
use crate::types::Index;

/// Format version written in the header.
pub(crate) const VERSION: u8 = 1;

/// Largest encoded record: a pair of the largest key and value plus varints and the tag.
pub(crate) const RECORD_BYTES_MAX: usize = KEY_BYTES_MAX + VALUE_BYTES_MAX + 16;

const _: () = assert!(RECORD_BYTES_MAX <= u16::MAX as usize);

/// One record of the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record<'a> {
    /// First: the format and the index the state reflects.
    Header {
        /// [`VERSION`].
        version: u8,
        /// Last entry index applied to the state.
        applied: Index,
    },
    /// One key and its value.
    Pair {
        /// The key.
        #[serde(borrow)]
        key: &'a [u8],
        /// The value.
        #[serde(borrow)]
        value: &'a [u8],
    },
    /// One client session, in ascending client id order.
    Session(Session),
    /// Last: how many pairs and sessions came before.
    End {
        /// Pairs written.
        pairs: u64,
        /// Sessions written.
        sessions: u64,
    },
}

/// Encodes `record` with its length prefix and hands it to `out`.
pub(crate) fn emit(
    record: &Record<'_>,
    out: &mut dyn FnMut(&[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let mut buf = [0u8; RECORD_BYTES_MAX + 2];
    let n = postcard::to_slice(record, &mut buf[2..])
        .map_err(|_| SnapshotError::Invalid("record larger than RECORD_BYTES_MAX"))?
        .len();
    buf[..2].copy_from_slice(&(n as u16).to_le_bytes());
    out(&buf[..n + 2])
}

/// Reassembles records from pieces of the stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reassembler {
    buf: Vec<u8, { RECORD_BYTES_MAX + 2 }>,
}

impl Reassembler {
    /// Feeds `data`; calls `record` with each complete record, in order.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        record: &mut dyn FnMut(Record<'_>) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        while !data.is_empty() {
            let want = if self.buf.len() < 2 {
                2
            } else {
                let n = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
                if n > RECORD_BYTES_MAX {
                    return Err(SnapshotError::Invalid(
                        "record length above RECORD_BYTES_MAX",
                    ));
                }
                2 + n
            };
            let take = (want - self.buf.len()).min(data.len());
            // Cannot overflow: `want <= RECORD_BYTES_MAX + 2`, the buffer's capacity.
            self.buf
                .extend_from_slice(&data[..take])
                .map_err(|_| SnapshotError::Invalid("record overflow"))?;
            data = &data[take..];
            if self.buf.len() == want && want > 2 {
                let (r, rest) = postcard::take_from_bytes::<Record<'_>>(&self.buf[2..])
                    .map_err(|_| SnapshotError::Invalid("undecodable record"))?;
                if !rest.is_empty() {
                    return Err(SnapshotError::Invalid("trailing bytes in a record"));
                }
                record(r)?;
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// True if no partial record is waiting for more bytes.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
