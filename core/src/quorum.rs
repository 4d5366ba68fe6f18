//! Quorum arithmetic, kept apart from progress tracking so joint consensus is "two majorities"
//! rather than a rewrite.

use heapless::Vec;

use crate::limits::VOTERS_MAX;
use crate::types::{Index, Membership, NodeId};

/// The largest index acknowledged by a majority of `voters`, given each voter's acknowledged
/// index. An empty voter set acknowledges everything (it cannot block a joint majority).
pub(crate) fn majority_index(voters: &[NodeId], mut acked: impl FnMut(NodeId) -> Index) -> Index {
    if voters.is_empty() {
        return Index::MAX;
    }
    let mut idx: Vec<Index, VOTERS_MAX> = Vec::new();
    for &v in voters {
        // Cannot overflow: `voters` is bounded by the same capacity.
        let _ = idx.push(acked(v));
    }
    idx.sort_unstable_by(|a, b| b.cmp(a));
    idx[voters.len() / 2]
}

/// [`majority_index`] of a configuration: while joint, the smaller of the two halves' (both
/// majorities must have it).
pub(crate) fn joint_majority_index(
    m: &Membership,
    mut acked: impl FnMut(NodeId) -> Index,
) -> Index {
    let incoming = majority_index(&m.voters, &mut acked);
    incoming.min(majority_index(&m.outgoing, &mut acked))
}

/// [`vote_result`] of a configuration: while joint, won only if both halves are won, lost if
/// either is lost.
pub(crate) fn joint_vote_result(
    m: &Membership,
    mut vote: impl FnMut(NodeId) -> Option<bool>,
) -> VoteResult {
    match (
        vote_result(&m.voters, &mut vote),
        vote_result(&m.outgoing, &mut vote),
    ) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// Outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Counts votes of `voters`; `vote(id)` is `Some(granted)` for the ones that answered.
pub(crate) fn vote_result(
    voters: &[NodeId],
    mut vote: impl FnMut(NodeId) -> Option<bool>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut yes, mut missing) = (0, 0);
    for &v in voters {
        match vote(v) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let q = voters.len() / 2 + 1;
    if yes >= q {
        VoteResult::Won
    } else if yes + missing >= q {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_of_odd_and_even_sets() {
        let acked = |id: NodeId| [0, 5, 3, 9, 1, 7][id as usize];
        assert_eq!(majority_index(&[1, 2, 3], acked), 5);
        assert_eq!(majority_index(&[1, 2, 3, 4], acked), 3);
        assert_eq!(majority_index(&[1, 2, 3, 4, 5], acked), 5);
        assert_eq!(majority_index(&[4], acked), 1);
    }

    #[test]
    fn votes() {
        let v = [1, 2, 3, 4, 5];
        assert_eq!(
            vote_result(&v, |id| (id <= 3).then_some(true)),
            VoteResult::Won
        );
        assert_eq!(
            vote_result(&v, |id| (id <= 2).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(vote_result(&v, |id| Some(id == 1)), VoteResult::Lost);
    }

    #[test]
    fn joint_needs_both_majorities() {
        let joint = Membership {
            voters: Vec::from_slice(&[3, 4, 5]).unwrap(),
            outgoing: Vec::from_slice(&[1, 2, 3]).unwrap(),
            learners: Vec::new(),
        };
        // 1, 2 and 3 have 9; 4 and 5 have 2: the old half commits 9, the new only 2.
        let acked = |id: NodeId| if id <= 3 { 9 } else { 2 };
        assert_eq!(joint_majority_index(&joint, acked), 2);
        // And the other way round.
        let acked = |id: NodeId| if id >= 3 { 9 } else { 2 };
        assert_eq!(joint_majority_index(&joint, acked), 2);
        assert_eq!(
            joint_majority_index(&Membership::from_voters(&[1, 2, 3]).unwrap(), acked),
            2
        );
        // Votes from 1 and 2 win the old half only.
        assert_eq!(
            joint_vote_result(&joint, |id| (id <= 2).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(
            joint_vote_result(&joint, |id| (id <= 4).then_some(true)),
            VoteResult::Won
        );
        assert_eq!(
            joint_vote_result(&joint, |id| Some(id <= 3)),
            VoteResult::Lost
        );
    }
}
