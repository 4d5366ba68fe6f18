//! Quorum arithmetic, kept apart from progress tracking so joint consensus is "two majorities"
//! rather than a rewrite.

use heapless::Vec;

use crate::limits::VOTERS_MAX;
use crate::types::{Index, NodeId};

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
}
