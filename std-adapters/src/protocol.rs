//! What clients and nodes say to each other inside authenticated UDP frames.
//!
//! A client sends a [`ClientRequest`] in a `ClientRequest` frame and gets exactly one
//! [`ClientReply`] per request it sends (replies can be lost, like any datagram; the client
//! retries). Both are postcard-encoded.
//!
//! A KV request travels as the postcard bytes of [`tinyraft::kv::Request`]: the leader proposes
//! those very bytes as the log entry, so a request is encoded once, by the client.
//!
//! `nonce` is the client's tag for one operation (all retries of it share the nonce); a reply
//! echoes it, so a client never mistakes a late reply to an earlier operation for the current
//! one.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tinyraft::kv::Response;
use tinyraft::limits::{PEERS_MAX, VOTERS_MAX};
use tinyraft::{Index, NodeId, Role, Term};

/// Most bytes a client message or reply takes on the wire (a KV request or response plus a
/// little framing).
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 8 * 1024;

/// A client's message to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest<'a> {
    /// A KV operation.
    Kv {
        /// Echoed in the reply.
        nonce: u64,
        /// The postcard encoding of a [`tinyraft::kv::Request`].
        #[serde(borrow)]
        request: &'a [u8],
    },
    /// Asks for the node's [`NodeStatus`]. Any node answers.
    Status {
        /// Echoed in the reply.
        nonce: u64,
    },
}

/// A node's answer to a [`ClientRequest`].
// `Kv` holds a fixed-size response (about 2 KiB); replies are short-lived values, encoded and
// dropped at once, so boxing would only add an allocation per reply.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// The operation was applied (writes) or read linearizably (reads); here is its answer.
    Kv {
        /// The request's nonce.
        nonce: u64,
        /// What the state machine answered.
        response: Response,
    },
    /// This node cannot serve the request: retry at the leader it names, if any.
    Redirect {
        /// The request's nonce.
        nonce: u64,
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// That leader's address.
        leader_addr: Option<SocketAddr>,
        /// True if this node had proposed the request before it lost leadership: its outcome
        /// is unknown (it may still commit). False: it was not proposed here.
        proposed: bool,
    },
    /// The leader is saturated and did not propose the request (backpressure); retry later.
    Busy {
        /// The request's nonce.
        nonce: u64,
    },
    /// The request could not be understood; it was not proposed.
    Invalid {
        /// The request's nonce (0 if even that could not be read).
        nonce: u64,
        /// Why.
        reason: String,
    },
    /// The node's status.
    Status {
        /// The request's nonce.
        nonce: u64,
        /// The status.
        status: NodeStatus,
    },
}

impl ClientReply {
    /// The nonce the reply answers.
    pub fn nonce(&self) -> u64 {
        match self {
            ClientReply::Kv { nonce, .. }
            | ClientReply::Redirect { nonce, .. }
            | ClientReply::Busy { nonce }
            | ClientReply::Invalid { nonce, .. }
            | ClientReply::Status { nonce, .. } => *nonce,
        }
    }
}

/// One node's view of the cluster, for `tinyraft status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: Index,
    /// Applied index.
    pub applied: Index,
    /// First index still in its log.
    pub first_index: Index,
    /// Last index of its log.
    pub last_index: Index,
    /// Voters of the current configuration. (Fixed capacity, so that publishing a status
    /// allocates nothing; the wire form is the same as a `Vec`'s.)
    pub voters: heapless::Vec<NodeId, VOTERS_MAX>,
    /// Voters of the outgoing configuration while joint (empty otherwise).
    pub outgoing: heapless::Vec<NodeId, VOTERS_MAX>,
    /// Learners of the current configuration.
    pub learners: heapless::Vec<NodeId, PEERS_MAX>,
    /// Keys in its state machine.
    pub keys: u64,
    /// Ready rounds the node's runtime has run since it started.
    pub ready_rounds: u64,
    /// Ready rounds that had to make state durable (new entries, term or vote).
    pub syncs: u64,
    /// `fdatasync` calls on the log since the node started: one per synced round that wrote
    /// entries, however many entries (from however many clients) it held.
    pub log_fsyncs: u64,
    /// Entries the node has applied to its state machine since it started.
    pub applied_entries: u64,
}

/// Encodes `value` into `buf`; `None` if it does not fit.
pub fn encode<T: Serialize>(value: &T, buf: &mut [u8]) -> Option<usize> {
    postcard::to_slice(value, buf).ok().map(|b| b.len())
}

/// Decodes exactly one `T` from `bytes` (trailing bytes are an error).
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let mut buf = [0u8; 256];
        let r = ClientRequest::Kv {
            nonce: 7,
            request: b"abc",
        };
        let n = encode(&r, &mut buf).unwrap();
        assert_eq!(decode::<ClientRequest<'_>>(&buf[..n]), Some(r));
        assert_eq!(decode::<ClientRequest<'_>>(&buf[..n - 1]), None);
        let reply = ClientReply::Redirect {
            nonce: 9,
            leader: Some(2),
            leader_addr: Some("127.0.0.1:7002".parse().unwrap()),
            proposed: true,
        };
        let n = encode(&reply, &mut buf).unwrap();
        assert_eq!(decode::<ClientReply>(&buf[..n]), Some(reply));
        for junk in [&[0xffu8; 9][..], &[], &[5, 1, 2]] {
            assert!(decode::<ClientReply>(junk).is_none());
        }
    }
}
