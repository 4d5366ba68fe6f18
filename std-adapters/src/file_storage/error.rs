//! The error type of [`super::FileStorage`].

use std::fmt;
use std::io;
use std::path::PathBuf;

use tinyraft::{Index, StorageError, StorageErrorKind};

/// Everything that can go wrong in [`super::FileStorage`].
///
/// [`StorageError::kind`] tells the core what to do; [`fmt::Display`] tells a person what
/// happened, naming the file (and, for corruption, the byte offset) involved.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileStorageError {
    /// An operating-system call failed. Kind [`StorageErrorKind::Io`].
    Io {
        /// What was being done (`"fdatasync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error the OS reported.
        source: io::Error,
    },
    /// The device is out of space. Nothing was made durable by the failed call and the storage
    /// is still usable: freeing space (for example by finishing a snapshot, see
    /// [`tinyraft::Storage::finish_snapshot`]) and calling `sync` again retries. A snapshot
    /// being written when its write fails this way is abandoned: begin it again. Kind [`StorageErrorKind::Full`].
    Full {
        /// The file being written.
        path: PathBuf,
        /// The error the OS reported.
        source: io::Error,
    },
    /// Stored data failed an integrity check (CRC, framing, sequence, or a snapshot that does
    /// not match its own length or checksum). The storage refuses to guess: data that was
    /// acknowledged as durable may be damaged. Kind [`StorageErrorKind::Corrupt`].
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// The index is below the first index: compacted away. Kind [`StorageErrorKind::Compacted`].
    Compacted {
        /// The index asked for.
        index: Index,
        /// The first index still held.
        first_index: Index,
    },
    /// The index is beyond the end of the log (or, for `append`, would leave a gap or overwrite
    /// the snapshot). Kind [`StorageErrorKind::Unavailable`].
    Unavailable {
        /// The index asked for.
        index: Index,
        /// The last index held.
        last_index: Index,
    },
    /// An entry's payload exceeds [`tinyraft::limits::ENTRY_DATA_BYTES_MAX`]. The core never
    /// produces one, so this is a caller bug. Kind [`StorageErrorKind::Io`].
    EntryTooLarge {
        /// The payload length.
        len: usize,
    },
    /// An earlier failure left the storage in a state it cannot vouch for, so it refuses every
    /// write and sync. The process should drop the storage and open it again (which
    /// re-reads what is really on disk). Kind [`StorageErrorKind::Io`].
    Poisoned {
        /// The failure that poisoned the storage.
        cause: String,
    },
    /// A [`super::FileStorageOptions`] value is out of range. Kind [`StorageErrorKind::Io`].
    InvalidOptions(&'static str),
    /// `write_snapshot` or `finish_snapshot` without a snapshot being written: none was begun,
    /// it was finished already, or a failed write abandoned it. Kind
    /// [`StorageErrorKind::Unavailable`], as in [`tinyraft::MemStorage`].
    NoSnapshotBegun,
}

impl FileStorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Adds `more` to the reason of a [`FileStorageError::Corrupt`]; other errors are returned
    /// as they are.
    pub(crate) fn explain(self, more: impl std::fmt::Display) -> Self {
        match self {
            Self::Corrupt {
                path,
                offset,
                reason,
            } => Self::Corrupt {
                path,
                offset,
                reason: format!("{reason}; {more}"),
            },
            other => other,
        }
    }

    /// A write error: out of space is [`FileStorageError::Full`], the rest [`FileStorageError::Io`].
    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull {
            Self::Full {
                path: path.into(),
                source,
            }
        } else {
            Self::io("write", path, source)
        }
    }
}

impl StorageError for FileStorageError {
    fn kind(&self) -> StorageErrorKind {
        match self {
            Self::Io { .. }
            | Self::EntryTooLarge { .. }
            | Self::Poisoned { .. }
            | Self::InvalidOptions(_) => StorageErrorKind::Io,
            Self::Full { .. } => StorageErrorKind::Full,
            Self::Corrupt { .. } => StorageErrorKind::Corrupt,
            Self::Compacted { .. } => StorageErrorKind::Compacted,
            Self::Unavailable { .. } | Self::NoSnapshotBegun => StorageErrorKind::Unavailable,
        }
    }
}

impl fmt::Display for FileStorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => {
                write!(f, "{op} failed on {}: {source}", path.display())
            }
            Self::Full { path, source } => {
                write!(f, "no space left writing {}: {source}", path.display())
            }
            Self::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt raft storage: {} at byte offset {offset}: {reason}",
                path.display()
            ),
            Self::Compacted { index, first_index } => write!(
                f,
                "log index {index} was compacted (first index held is {first_index})"
            ),
            Self::Unavailable { index, last_index } => write!(
                f,
                "log index {index} is not available (last index is {last_index})"
            ),
            Self::EntryTooLarge { len } => write!(
                f,
                "entry payload of {len} bytes exceeds ENTRY_DATA_BYTES_MAX ({})",
                tinyraft::limits::ENTRY_DATA_BYTES_MAX
            ),
            Self::Poisoned { cause } => write!(
                f,
                "storage is poisoned by an earlier failure and refuses writes until reopened: \
                 {cause}"
            ),
            Self::InvalidOptions(why) => write!(f, "invalid file storage options: {why}"),
            Self::NoSnapshotBegun => write!(
                f,
                "no snapshot is being written (begin_snapshot first; a failed write abandons it)"
            ),
        }
    }
}

impl std::error::Error for FileStorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::Full { source, .. } => Some(source),
            _ => None,
        }
    }
}
