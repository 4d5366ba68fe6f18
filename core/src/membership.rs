//! Cluster membership: who votes, who only learns, and how that changes.
//!
//! # Configuration changes are log entries
//!
//! A change is an [`EntryKind::Config`](crate::EntryKind::Config) entry carrying the *whole*
//! new configuration ([`ConfigEntry`]) plus an opaque context (the std runtime puts the new
//! node's address there). Carrying the whole configuration, not a delta, makes applying
//! idempotent and lets a node that joins with an empty configuration learn it from the first
//! configuration entry it applies.
//!
//! A node switches to a configuration when it *applies* the entry (as etcd raft does), so a
//! node's configuration is a function of its applied index and a snapshot at index `i`
//! carries exactly the configuration as of `i`. To keep that safe the leader allows one change
//! at a time: a change is refused while the previous one is not applied, and until the
//! leader's first entry of its term is applied (that closes the single-server-change hazard
//! found after the dissertation was published). A node does not campaign while a committed
//! configuration entry waits to be applied.
//!
//! # Two ways to change
//!
//! * **Single step**: at most one voter is added or removed. Any majority of the old voters
//!   overlaps any majority of the new ones, so the cluster moves in one entry.
//! * **Joint consensus** (dissertation §4.3): the entry moves the cluster to `C_old,new`, in
//!   which elections and commitment need a majority of *both* voter sets. Once the leader has
//!   applied it, it appends the entry that leaves to `C_new` by itself (automatic leave).
//!
//! Learners receive the log but neither vote nor count towards a quorum; adding a node as a
//! learner first and promoting it once it has caught up keeps the cluster available while the
//! new node copies the log (dissertation §4.2.1).

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::limits::{CONF_CONTEXT_BYTES_MAX, PEERS_MAX, VOTERS_MAX};
use crate::types::NodeId;

/// The voters and learners of the cluster.
///
/// Outside a joint configuration `outgoing` is empty. A node may be in `outgoing` and in
/// `learners` at once: a voter being demoted keeps voting in the old half of a joint
/// configuration until the cluster leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Voters of the (incoming) configuration.
    pub voters: Vec<NodeId, VOTERS_MAX>,
    /// Voters of the outgoing configuration while joint (`C_old` of `C_old,new`); else empty.
    pub outgoing: Vec<NodeId, VOTERS_MAX>,
    /// Nodes that receive the log but do not vote.
    pub learners: Vec<NodeId, PEERS_MAX>,
}

/// One change to a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChange {
    /// Make the node a voter: a new node, or a learner's promotion.
    AddVoter(NodeId),
    /// Make the node a learner: a new node, or a voter's demotion.
    AddLearner(NodeId),
    /// Remove the node, voter or learner.
    Remove(NodeId),
}

/// How a set of changes moves the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChangeMode {
    /// One step when at most one voter changes, joint consensus otherwise.
    #[default]
    Auto,
    /// Always through a joint configuration, even for a single voter.
    Joint,
}

/// Why a configuration change was refused. Nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeError {
    /// Only the leader changes the configuration; this is the one this node knows of.
    NotLeader {
        /// The known leader, if any.
        leader: Option<NodeId>,
    },
    /// The previous change (or the leader's first entry of its term) is not applied yet; try
    /// again shortly.
    Pending,
    /// A leadership transfer is under way.
    Transferring,
    /// The cluster is in a joint configuration; it leaves it by itself, try again after.
    InJoint,
    /// No change was given.
    Empty,
    /// The changes leave the configuration as it is (e.g. adding a voter that already votes).
    Unchanged,
    /// Node id 0 is reserved.
    InvalidNode,
    /// The node to remove is not a member.
    NotMember(NodeId),
    /// More voters than [`VOTERS_MAX`].
    TooManyVoters,
    /// More members (both voter sets and learners together) than [`PEERS_MAX`].
    TooManyMembers,
    /// The change would leave no voter.
    NoVoters,
    /// The context is longer than [`CONF_CONTEXT_BYTES_MAX`].
    ContextTooLarge,
    /// The log buffer is full: backpressure, try again after a few ready rounds.
    Full,
}

impl core::fmt::Display for ConfChangeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader (try {l})"),
            Self::NotLeader { leader: None } => f.write_str("not the leader (none known)"),
            Self::Pending => f.write_str("a configuration change is still being applied"),
            Self::Transferring => f.write_str("leadership transfer in progress"),
            Self::InJoint => f.write_str("the cluster is leaving a joint configuration"),
            Self::Empty => f.write_str("no change given"),
            Self::Unchanged => f.write_str("the configuration already is so"),
            Self::InvalidNode => f.write_str("node id 0 is reserved"),
            Self::NotMember(id) => write!(f, "node {id} is not a member"),
            Self::TooManyVoters => write!(f, "more than {VOTERS_MAX} voters"),
            Self::TooManyMembers => write!(f, "more than {PEERS_MAX} members"),
            Self::NoVoters => f.write_str("the change would leave no voter"),
            Self::ContextTooLarge => write!(f, "context above {CONF_CONTEXT_BYTES_MAX} bytes"),
            Self::Full => f.write_str("log buffer full"),
        }
    }
}

impl Membership {
    /// The configuration of a node that has none yet (it is joining and learns its
    /// configuration from the leader's log).
    pub const EMPTY: Self = Self {
        voters: Vec::new(),
        outgoing: Vec::new(),
        learners: Vec::new(),
    };

    /// A membership of the given voters; `Err` when it holds more than [`VOTERS_MAX`] ids, a
    /// zero id or a duplicate.
    pub fn from_voters(ids: &[NodeId]) -> Result<Self, crate::Error> {
        let mut voters = Vec::new();
        for &id in ids {
            if id == 0 || voters.contains(&id) {
                return Err(crate::Error::InvalidConfig(
                    "voter ids must be non-zero and distinct",
                ));
            }
            voters
                .push(id)
                .map_err(|_| crate::Error::InvalidConfig("more voters than VOTERS_MAX"))?;
        }
        Ok(Self {
            voters,
            ..Self::EMPTY
        })
    }

    /// True while in a joint configuration.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// True if `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// True if `id` is a voter (of either half) or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// True if `id` is a learner and not (still) a voter.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) && !self.is_voter(id)
    }

    /// Every member once: voters, outgoing voters, then learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let voters = self.voters.iter().copied();
        let outgoing = self.outgoing.iter().copied();
        let out_only = outgoing.filter(move |id| !self.voters.contains(id));
        let learners = self.learners.iter().copied();
        let learners_only = learners.filter(move |&id| !self.is_voter(id));
        voters.chain(out_only).chain(learners_only)
    }

    /// Every voter once (both halves of a joint configuration).
    pub fn all_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        let out_only = self
            .outgoing
            .iter()
            .copied()
            .filter(move |id| !self.voters.contains(id));
        self.voters.iter().copied().chain(out_only)
    }

    /// Votes needed for a majority of the (incoming) voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The configuration `changes` lead to from this one, or why they are refused. A joint
    /// result has `outgoing` set to the current voters.
    pub fn apply(
        &self,
        changes: &[ConfChange],
        mode: ConfChangeMode,
    ) -> Result<Membership, ConfChangeError> {
        if self.is_joint() {
            return Err(ConfChangeError::InJoint);
        }
        if changes.is_empty() {
            return Err(ConfChangeError::Empty);
        }
        let mut next = self.clone();
        for &change in changes {
            match change {
                ConfChange::AddVoter(id) | ConfChange::AddLearner(id) | ConfChange::Remove(id)
                    if id == 0 =>
                {
                    return Err(ConfChangeError::InvalidNode)
                }
                ConfChange::AddVoter(id) => {
                    next.learners.retain(|&l| l != id);
                    if !next.voters.contains(&id) {
                        next.voters
                            .push(id)
                            .map_err(|_| ConfChangeError::TooManyVoters)?;
                    }
                }
                ConfChange::AddLearner(id) => {
                    next.voters.retain(|&v| v != id);
                    if !next.learners.contains(&id) {
                        next.learners
                            .push(id)
                            .map_err(|_| ConfChangeError::TooManyMembers)?;
                    }
                }
                ConfChange::Remove(id) => {
                    if !next.contains(id) {
                        return Err(ConfChangeError::NotMember(id));
                    }
                    next.voters.retain(|&v| v != id);
                    next.learners.retain(|&l| l != id);
                }
            }
        }
        if next == *self {
            return Err(ConfChangeError::Unchanged);
        }
        if next.voters.is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        let changed_voters = next
            .voters
            .iter()
            .filter(|v| !self.voters.contains(v))
            .count()
            + self
                .voters
                .iter()
                .filter(|v| !next.voters.contains(v))
                .count();
        if mode == ConfChangeMode::Joint || changed_voters > 1 {
            next.outgoing = self.voters.clone();
        }
        if next.members().count() > PEERS_MAX {
            return Err(ConfChangeError::TooManyMembers);
        }
        Ok(next)
    }

    /// The configuration after leaving a joint one: the incoming half alone.
    pub fn leave_joint(&self) -> Membership {
        Membership {
            outgoing: Vec::new(),
            ..self.clone()
        }
    }

    /// Checks the rules a configuration from the network or a disk must follow: non-zero,
    /// distinct ids in each list; a learner that votes only as a demoted outgoing voter; at
    /// most [`PEERS_MAX`] members.
    pub fn validate(&self) -> Result<(), &'static str> {
        fn distinct_nonzero(ids: &[NodeId]) -> bool {
            ids.iter()
                .enumerate()
                .all(|(i, &id)| id != 0 && !ids[..i].contains(&id))
        }
        if !distinct_nonzero(&self.voters)
            || !distinct_nonzero(&self.outgoing)
            || !distinct_nonzero(&self.learners)
        {
            return Err("membership ids must be non-zero and distinct");
        }
        if self.learners.iter().any(|l| self.voters.contains(l)) {
            return Err("a node cannot be a voter and a learner");
        }
        if self.members().count() > PEERS_MAX {
            return Err("more members than PEERS_MAX");
        }
        Ok(())
    }
}

/// The payload of an [`EntryKind::Config`](crate::EntryKind::Config) entry: the whole new
/// configuration and the proposer's context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry<'a> {
    /// The configuration the cluster moves to.
    pub membership: Membership,
    /// Opaque to the core (at most [`CONF_CONTEXT_BYTES_MAX`] bytes); the std runtime puts
    /// the address of an added node here.
    #[serde(borrow)]
    pub context: &'a [u8],
}

/// Largest encoded [`ConfigEntry`]: three id lists of varint ids, the context, lengths.
pub const CONFIG_ENTRY_BYTES_MAX: usize =
    (2 * VOTERS_MAX + PEERS_MAX) * 10 + CONF_CONTEXT_BYTES_MAX + 16;

impl<'a> ConfigEntry<'a> {
    /// Encodes into `buf`, returning the length, or `None` if it does not fit.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        postcard::to_slice(self, buf).ok().map(|b| b.len())
    }

    /// Decodes and checks an entry's payload (it comes from the network or a disk, so it is
    /// untrusted: nothing here panics).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (entry, rest): (Self, _) =
            postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        entry.membership.validate().map_err(DecodeError::Invalid)?;
        if entry.membership.voters.is_empty() {
            return Err(DecodeError::Invalid("configuration without voters"));
        }
        if entry.context.len() > CONF_CONTEXT_BYTES_MAX {
            return Err(DecodeError::Invalid("context above CONF_CONTEXT_BYTES_MAX"));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(voters: &[NodeId]) -> Membership {
        Membership::from_voters(voters).unwrap()
    }

    #[test]
    fn one_voter_changes_in_one_step() {
        let next = m(&[1, 2, 3])
            .apply(&[ConfChange::AddVoter(4)], ConfChangeMode::Auto)
            .unwrap();
        assert_eq!(next.voters.as_slice(), &[1, 2, 3, 4]);
        assert!(!next.is_joint());
        let next = next
            .apply(&[ConfChange::Remove(1)], ConfChangeMode::Auto)
            .unwrap();
        assert_eq!(next.voters.as_slice(), &[2, 3, 4]);
        assert!(!next.is_joint());
    }

    #[test]
    fn several_voters_or_joint_mode_go_through_a_joint_configuration() {
        let old = m(&[1, 2, 3]);
        let changes = [ConfChange::AddVoter(4), ConfChange::Remove(1)];
        let joint = old.apply(&changes, ConfChangeMode::Auto).unwrap();
        assert_eq!(joint.voters.as_slice(), &[2, 3, 4]);
        assert_eq!(joint.outgoing.as_slice(), &[1, 2, 3]);
        assert!(joint.is_voter(1) && joint.is_voter(4));
        assert_eq!(
            joint.apply(&[ConfChange::AddVoter(5)], ConfChangeMode::Auto),
            Err(ConfChangeError::InJoint)
        );
        assert_eq!(joint.leave_joint().outgoing.len(), 0);
        let forced = old
            .apply(&[ConfChange::AddVoter(4)], ConfChangeMode::Joint)
            .unwrap();
        assert!(forced.is_joint());
    }

    #[test]
    fn learners_are_added_promoted_and_demoted() {
        let with_learner = m(&[1, 2, 3])
            .apply(&[ConfChange::AddLearner(4)], ConfChangeMode::Auto)
            .unwrap();
        assert!(with_learner.is_learner(4) && !with_learner.is_voter(4));
        let promoted = with_learner
            .apply(&[ConfChange::AddVoter(4)], ConfChangeMode::Auto)
            .unwrap();
        assert!(promoted.is_voter(4) && !promoted.learners.contains(&4));
        // Demotion in a joint change: still an outgoing voter until the cluster leaves.
        let joint = promoted
            .apply(&[ConfChange::AddLearner(1)], ConfChangeMode::Joint)
            .unwrap();
        assert!(joint.is_voter(1) && joint.learners.contains(&1) && !joint.is_learner(1));
        assert!(joint.validate().is_ok());
        let left = joint.leave_joint();
        assert!(left.is_learner(1));
        assert_eq!(joint.members().count(), 4);
    }

    #[test]
    fn refusals_say_why() {
        let old = m(&[1, 2, 3]);
        let auto = ConfChangeMode::Auto;
        assert_eq!(old.apply(&[], auto), Err(ConfChangeError::Empty));
        assert_eq!(
            old.apply(&[ConfChange::AddVoter(2)], auto),
            Err(ConfChangeError::Unchanged)
        );
        assert_eq!(
            old.apply(&[ConfChange::Remove(9)], auto),
            Err(ConfChangeError::NotMember(9))
        );
        assert_eq!(
            old.apply(&[ConfChange::AddVoter(0)], auto),
            Err(ConfChangeError::InvalidNode)
        );
        let all = [
            ConfChange::Remove(1),
            ConfChange::Remove(2),
            ConfChange::Remove(3),
        ];
        assert_eq!(old.apply(&all, auto), Err(ConfChangeError::NoVoters));
        let full = m(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            full.apply(&[ConfChange::AddVoter(8)], auto),
            Err(ConfChangeError::TooManyVoters)
        );
        // Replacing all seven voters would track fourteen members at once.
        let replace: [ConfChange; 14] = core::array::from_fn(|i| {
            if i < 7 {
                ConfChange::Remove(i as NodeId + 1)
            } else {
                ConfChange::AddVoter(i as NodeId + 1)
            }
        });
        assert_eq!(
            full.apply(&replace, auto),
            Err(ConfChangeError::TooManyMembers)
        );
    }

    #[test]
    fn config_entries_round_trip_and_bad_ones_are_refused() {
        let entry = ConfigEntry {
            membership: m(&[1, 2, 3])
                .apply(
                    &[ConfChange::AddVoter(4), ConfChange::Remove(1)],
                    ConfChangeMode::Auto,
                )
                .unwrap(),
            context: b"127.0.0.1:7004",
        };
        let mut buf = [0u8; CONFIG_ENTRY_BYTES_MAX];
        let n = entry.encode(&mut buf).unwrap();
        assert_eq!(ConfigEntry::decode(&buf[..n]).unwrap(), entry);
        assert!(ConfigEntry::decode(&buf[..n - 1]).is_err());
        let dup = ConfigEntry {
            membership: Membership {
                voters: Vec::from_slice(&[1, 1]).unwrap(),
                ..Membership::EMPTY
            },
            context: b"",
        };
        let n = dup.encode(&mut buf).unwrap();
        assert!(matches!(
            ConfigEntry::decode(&buf[..n]),
            Err(DecodeError::Invalid(_))
        ));
        // The largest configuration fits the documented bound.
        let big = ConfigEntry {
            membership: Membership {
                voters: (1..=VOTERS_MAX as u64).map(|i| u64::MAX - i).collect(),
                outgoing: (1..=VOTERS_MAX as u64)
                    .map(|i| u64::MAX - 100 - i)
                    .collect(),
                learners: (1..=PEERS_MAX as u64).map(|i| u64::MAX - 200 - i).collect(),
            },
            context: &[7; CONF_CONTEXT_BYTES_MAX],
        };
        assert!(big.encode(&mut buf).is_some());
    }
}
