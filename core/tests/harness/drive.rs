//! Helpers for driving a single node by hand (stepping crafted messages and reading what it
//! answers) and for watching a `Network`'s ready rounds, which `Network::deliver` discards.

use super::*;

use tinyraft::{Error, MemStorageError};

/// Steps one message into `n`.
pub fn step(n: &mut TestNode, m: Message<'_>) -> Result<(), Error<MemStorageError>> {
    n.step_bytes(&encode(&m))
}

/// Steps encoded bytes into `n`, panicking if the node refuses them.
pub fn step_ok(n: &mut TestNode, bytes: &[u8]) {
    n.step_bytes(bytes).expect("message accepted");
}

/// A heartbeat from `from` to `to`.
pub fn heartbeat(from: NodeId, to: NodeId, term: Term, commit: Index, context: u64) -> Vec<u8> {
    encode(&msg(from, to, term, Body::Heartbeat { commit, context }))
}

/// A vote (or, with `pre`, pre-vote) request from a candidate that knows the latest
/// configuration.
pub fn vote_req(from: NodeId, to: NodeId, term: Term, pre: bool, last: (Index, Term)) -> Vec<u8> {
    vote_req_in(from, to, term, pre, last, Index::MAX)
}

/// A vote (or pre-vote) request from a candidate whose configuration comes from the
/// configuration entry at `config_index`.
pub fn vote_req_in(
    from: NodeId,
    to: NodeId,
    term: Term,
    pre: bool,
    last: (Index, Term),
    config_index: Index,
) -> Vec<u8> {
    encode(&msg(
        from,
        to,
        term,
        Body::Vote {
            pre,
            last_index: last.0,
            last_term: last.1,
            transfer: false,
            config_index,
        },
    ))
}

/// An answer to a vote (or pre-vote) request.
pub fn vote_resp(from: NodeId, to: NodeId, term: Term, pre: bool, granted: bool) -> Vec<u8> {
    encode(&msg(from, to, term, Body::VoteResponse { pre, granted }))
}

/// A successful append response acknowledging entries up to `index`.
pub fn append_ok(from: NodeId, to: NodeId, term: Term, index: Index) -> Vec<u8> {
    encode(&msg(
        from,
        to,
        term,
        Body::AppendResponse {
            success: true,
            index,
            hint_index: 0,
            hint_term: 0,
        },
    ))
}

/// A heartbeat response echoing `context`, from a follower whose log is at least as long as
/// anything the leader sent it (a shorter one would tell the leader it lost its storage).
pub fn heartbeat_resp(from: NodeId, to: NodeId, term: Term, context: u64) -> Vec<u8> {
    encode(&msg(
        from,
        to,
        term,
        Body::HeartbeatResponse {
            context,
            last_index: Index::MAX,
        },
    ))
}

/// True if the message is an append.
pub fn is_append(s: &Sent) -> bool {
    matches!(s.msg().body, Body::Append { .. })
}

/// True if the message is a heartbeat.
pub fn is_heartbeat(s: &Sent) -> bool {
    matches!(s.msg().body, Body::Heartbeat { .. })
}

/// Number of entries an append carries (0 for other messages).
pub fn entry_count(s: &Sent) -> usize {
    match s.msg().body {
        Body::Append { ref entries, .. } => entries.len(),
        _ => 0,
    }
}

/// Campaigns on `n` and feeds it granted votes (and pre-votes) from every other voter until
/// it leads; returns what its rounds sent on the way. Works with pre-vote on or off.
pub fn make_leader(n: &mut TestNode) -> Vec<Sent> {
    let me = n.id();
    let voters: Vec<NodeId> = n.membership().voters.iter().copied().collect();
    n.campaign();
    let mut sent = drain(n);
    for _ in 0..2 {
        if n.role() == Role::Leader {
            break;
        }
        let pre = n.role() == Role::PreCandidate;
        let term = if pre { n.term() + 1 } else { n.term() };
        for &v in voters.iter().filter(|&&v| v != me) {
            if n.role() == Role::Leader {
                break;
            }
            let _ = n.step_bytes(&vote_resp(v, me, term, pre, true));
        }
        sent.extend(drain(n));
    }
    assert_eq!(n.role(), Role::Leader, "node {me} did not become leader");
    sent
}

/// Makes `n` a follower of `leader` in `term` by stepping a heartbeat (commit 0) from it.
pub fn make_follower(n: &mut TestNode, leader: NodeId, term: Term) -> Vec<Sent> {
    let me = n.id();
    step_ok(n, &heartbeat(leader, me, term, 0, 0));
    drain(n)
}

impl Network {
    /// Like `deliver`, but shows every ready round (its node and output) to `observe`.
    pub fn deliver_observing(
        &mut self,
        from: NodeId,
        msgs: Vec<Sent>,
        observe: &mut dyn FnMut(NodeId, &Round),
    ) {
        let mut queue: VecDeque<(NodeId, Sent)> = msgs.into_iter().map(|m| (from, m)).collect();
        let mut steps = 0;
        loop {
            while let Some((from, m)) = queue.pop_front() {
                steps += 1;
                assert!(steps < 1_000_000, "network did not quiesce");
                if self.blocked(from, &m) {
                    continue;
                }
                self.delivered += 1;
                let to = m.to;
                let _ = self.node_mut(to).step_bytes(&m.bytes);
            }
            let mut any = false;
            for id in self.ids() {
                if let Some(n) = self.nodes[id as usize - 1].as_mut() {
                    if n.has_ready() {
                        any = true;
                        let r = round(n);
                        observe(id, &r);
                        queue.extend(r.messages.into_iter().map(|m| (id, m)));
                    }
                }
            }
            if !any && queue.is_empty() {
                break;
            }
        }
    }

    /// Settles the network and returns the read states every node produced, in order.
    pub fn settle_reads(&mut self) -> Vec<(NodeId, ReadState)> {
        let mut reads = Vec::new();
        self.deliver_observing(0, Vec::new(), &mut |id, r| {
            reads.extend(r.reads.iter().map(|&rs| (id, rs)));
        });
        reads
    }

    /// Settles the network and returns every message that was sent (delivered or not), with
    /// its sender.
    pub fn settle_sent(&mut self) -> Vec<(NodeId, Sent)> {
        let mut sent = Vec::new();
        self.deliver_observing(0, Vec::new(), &mut |id, r| {
            sent.extend(r.messages.iter().map(|m| (id, m.clone())));
        });
        sent
    }

    /// Ticks node `id` alone, then settles.
    pub fn tick_node(&mut self, id: NodeId) {
        self.node_mut(id).tick();
        self.settle();
    }

    /// Role and term of node `id`.
    pub fn state(&self, id: NodeId) -> (Role, Term) {
        let n = self.node(id);
        (n.role(), n.term())
    }
}
