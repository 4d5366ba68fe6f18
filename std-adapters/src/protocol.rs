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
//!
//! # Administration
//!
//! [`ClientRequest::ChangeMembers`], [`ClientRequest::TransferLeader`] and
//! [`ClientRequest::LeaderView`] are served by the leader only (others answer with a
//! [`ClientReply::Redirect`]). A membership change is answered once its configuration entry is
//! *applied* on the leader — for a change that goes through a joint configuration, once the
//! cluster has left it — with [`ClientReply::Members`], or refused at once with
//! [`ClientReply::AdminRefused`]. A transfer is answered as soon as it starts; the client
//! watches the nodes' status to see the target take over.
//!
//! New variants go at the end of each enum: postcard encodes the variant's position, so
//! clients and nodes of different versions still understand each other's older variants.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tinyraft::kv::Response;
use tinyraft::limits::{PEERS_MAX, VOTERS_MAX};
use tinyraft::{ConfChange, Index, Membership, NodeId, Role, Term};

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
    /// Changes the cluster's membership (leader only). Answered with [`ClientReply::Members`]
    /// once applied, or [`ClientReply::AdminRefused`].
    ChangeMembers {
        /// Echoed in the reply. A retry with the same nonce while the change is still pending
        /// on the leader waits for it instead of proposing it again.
        nonce: u64,
        /// The changes, applied together (one step if at most one voter changes, else
        /// through a joint configuration).
        changes: Vec<ConfChange>,
        /// Addresses of the nodes being added. Every node learns them from the configuration
        /// entry when it applies it. A node the leader already has an address for (from its
        /// `--peers`) may be left out.
        addrs: Vec<(NodeId, SocketAddr)>,
    },
    /// Hands leadership to a voter (leader only). Answered with
    /// [`ClientReply::TransferStarted`] or [`ClientReply::AdminRefused`].
    TransferLeader {
        /// Echoed in the reply.
        nonce: u64,
        /// The voter to hand over to.
        to: NodeId,
    },
    /// Asks the leader for its view of the members' replication progress
    /// ([`ClientReply::LeaderView`]).
    LeaderView {
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
    /// A membership change was applied on the leader; here is the configuration it led to
    /// (never joint: a joint change is answered once the cluster has left it).
    Members {
        /// The request's nonce.
        nonce: u64,
        /// Index of the configuration entry that is now in force.
        index: Index,
        /// The configuration.
        members: MembersView,
    },
    /// The leader refused an administrative request; nothing was proposed.
    AdminRefused {
        /// The request's nonce.
        nonce: u64,
        /// What kind of refusal (retry or give up).
        refusal: Refusal,
        /// Why, for people.
        message: String,
    },
    /// The leader started handing leadership over (or already is the target).
    TransferStarted {
        /// The request's nonce.
        nonce: u64,
    },
    /// The leader's view of the cluster.
    LeaderView {
        /// The request's nonce.
        nonce: u64,
        /// The view.
        view: LeaderView,
    },
}

/// Why an administrative request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Another change (or the new leader's first entry) is still being applied, the cluster
    /// is leaving a joint configuration, a transfer is under way, or the log is full: retry
    /// shortly.
    Retry,
    /// The configuration already is as asked.
    Unchanged,
    /// The node to remove or promote is not a member.
    NotMember,
    /// Anything else (a limit, a bad address, a transfer to a non-voter): retrying will not
    /// help.
    Refused,
}

/// A configuration: who votes, who learns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    /// Voters (of the incoming configuration while joint), ascending.
    pub voters: Vec<NodeId>,
    /// Voters of the outgoing configuration while joint (empty otherwise), ascending.
    pub outgoing: Vec<NodeId>,
    /// Learners, ascending.
    pub learners: Vec<NodeId>,
}

impl MembersView {
    /// The view of a core [`Membership`], lists sorted.
    pub fn of(m: &Membership) -> Self {
        let sorted = |ids: &[NodeId]| {
            let mut v = ids.to_vec();
            v.sort_unstable();
            v
        };
        Self {
            voters: sorted(&m.voters),
            outgoing: sorted(&m.outgoing),
            learners: sorted(&m.learners),
        }
    }

    /// True if `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// True if `id` is a learner and not (still) a voter.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) && !self.is_voter(id)
    }
}

impl std::fmt::Display for MembersView {
    /// `voters=1,2,3 learners=4` (`-` for an empty list), plus ` outgoing=...` while joint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list(f: &mut std::fmt::Formatter<'_>, ids: &[NodeId]) -> std::fmt::Result {
            if ids.is_empty() {
                return f.write_str("-");
            }
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{id}")?;
            }
            Ok(())
        }
        f.write_str("voters=")?;
        list(f, &self.voters)?;
        f.write_str(" learners=")?;
        list(f, &self.learners)?;
        if !self.outgoing.is_empty() {
            f.write_str(" outgoing=")?;
            list(f, &self.outgoing)?;
        }
        Ok(())
    }
}

/// The leader's view of the cluster: its configuration and how far each member's log matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    /// The leader.
    pub id: NodeId,
    /// Its term.
    pub term: Term,
    /// Its commit index.
    pub commit: Index,
    /// Its last log index.
    pub last_index: Index,
    /// The configuration it has applied.
    pub members: MembersView,
    /// One per member (the leader included), in id order.
    pub peers: Vec<PeerView>,
}

/// What the leader knows of one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The member.
    pub id: NodeId,
    /// Highest index known to be in its log (0: nothing known yet).
    pub matched: Index,
    /// The address the leader sends to, if it has one.
    pub addr: Option<SocketAddr>,
}

impl ClientReply {
    /// The nonce the reply answers.
    pub fn nonce(&self) -> u64 {
        match self {
            ClientReply::Kv { nonce, .. }
            | ClientReply::Redirect { nonce, .. }
            | ClientReply::Busy { nonce }
            | ClientReply::Invalid { nonce, .. }
            | ClientReply::Status { nonce, .. }
            | ClientReply::Members { nonce, .. }
            | ClientReply::AdminRefused { nonce, .. }
            | ClientReply::TransferStarted { nonce }
            | ClientReply::LeaderView { nonce, .. } => *nonce,
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

    /// The variants clients of earlier versions know keep their encoding: new ones were added
    /// after them.
    #[test]
    fn old_variants_keep_their_encoding_and_new_ones_round_trip() {
        let mut buf = [0u8; 512];
        let n = encode(&ClientRequest::Status { nonce: 7 }, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[1, 7]);
        let n = encode(&ClientReply::Busy { nonce: 7 }, &mut buf).unwrap();
        assert_eq!(&buf[..n], &[2, 7]);
        let requests = [
            ClientRequest::ChangeMembers {
                nonce: 3,
                changes: vec![ConfChange::AddLearner(4), ConfChange::Remove(1)],
                addrs: vec![(4, "127.0.0.1:7004".parse().unwrap())],
            },
            ClientRequest::TransferLeader { nonce: 4, to: 2 },
            ClientRequest::LeaderView { nonce: 5 },
        ];
        for r in requests {
            let n = encode(&r, &mut buf).unwrap();
            assert_eq!(decode::<ClientRequest<'_>>(&buf[..n]), Some(r));
        }
        let members = MembersView {
            voters: vec![1, 2, 3],
            outgoing: vec![],
            learners: vec![4],
        };
        assert_eq!(members.to_string(), "voters=1,2,3 learners=4");
        let replies = [
            ClientReply::Members {
                nonce: 1,
                index: 9,
                members: members.clone(),
            },
            ClientReply::AdminRefused {
                nonce: 2,
                refusal: Refusal::NotMember,
                message: "node 9 is not a member".into(),
            },
            ClientReply::TransferStarted { nonce: 3 },
            ClientReply::LeaderView {
                nonce: 4,
                view: LeaderView {
                    id: 1,
                    term: 2,
                    commit: 10,
                    last_index: 11,
                    members,
                    peers: vec![PeerView {
                        id: 4,
                        matched: 8,
                        addr: Some("127.0.0.1:7004".parse().unwrap()),
                    }],
                },
            },
        ];
        for r in replies {
            let n = encode(&r, &mut buf).unwrap();
            assert_eq!(decode::<ClientReply>(&buf[..n]).as_ref(), Some(&r));
            assert_eq!(decode::<ClientReply>(&buf[..n]).unwrap().nonce(), r.nonce());
        }
    }
}
