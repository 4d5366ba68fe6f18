//! Errors of the core. Every fallible call says what went wrong; a full buffer hands the value
//! back to the caller instead of dropping it.

use core::fmt;

use crate::types::NodeId;

/// Errors of configuration and driving that are not about one proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E = ()> {
    /// The configuration breaks a rule; the text says which.
    InvalidConfig(&'static str),
    /// The storage failed; the node made no progress past what was durable before.
    Storage(E),
    /// A message could not be decoded or does not fit the bounds.
    Decode(DecodeError),
    /// The message comes from a node that is not a member.
    UnknownPeer(NodeId),
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Error::Storage(e) => write!(f, "storage error: {e:?}"),
            Error::Decode(e) => write!(f, "undecodable message: {e}"),
            Error::UnknownPeer(id) => write!(f, "message from unknown node {id}"),
        }
    }
}

/// Why a byte string is not a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than [`crate::limits::MESSAGE_BYTES_MAX`].
    TooLong,
    /// Not a postcard encoding of a message (or trailing bytes after one).
    Malformed,
    /// Well formed, but breaks a bound or a rule (entry too large, indexes not consecutive, ...).
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLong => f.write_str("message longer than MESSAGE_BYTES_MAX"),
            DecodeError::Malformed => f.write_str("malformed encoding"),
            DecodeError::Invalid(why) => write!(f, "invalid message: {why}"),
        }
    }
}

/// Why a proposal was refused. The proposal's bytes come back with the error, so nothing is
/// lost: the caller may retry, redirect to `leader`, or report the failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposeError<'a> {
    /// Why.
    pub kind: ProposeErrorKind,
    /// The refused payload.
    pub data: &'a [u8],
}

/// The reasons a proposal can be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeErrorKind {
    /// This node is not the leader; `leader` is the one it knows of, if any.
    NotLeader {
        /// The known leader.
        leader: Option<NodeId>,
    },
    /// The uncommitted/unstable buffer is full: backpressure, try again after `ready()` cycles.
    Full,
    /// The payload is larger than [`crate::limits::ENTRY_DATA_BYTES_MAX`].
    TooLarge,
    /// A leadership transfer is under way; proposals resume when it ends.
    Transferring,
}

impl fmt::Display for ProposeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeErrorKind::NotLeader { leader: Some(l) } => {
                write!(f, "not the leader (try {l})")
            }
            ProposeErrorKind::NotLeader { leader: None } => {
                f.write_str("not the leader (none known)")
            }
            ProposeErrorKind::Full => f.write_str("proposal buffer full"),
            ProposeErrorKind::TooLarge => f.write_str("payload larger than ENTRY_DATA_BYTES_MAX"),
            ProposeErrorKind::Transferring => f.write_str("leadership transfer in progress"),
        }
    }
}
