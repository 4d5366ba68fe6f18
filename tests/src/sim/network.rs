//! The simulated network: one queue of packets ordered by delivery step.
//!
//! Raft traffic leaves each node through core's [`FaultyTransport`] (loss, duplication,
//! delay, cut links), whose wrapped transport is a [`NetPort`] that puts the bytes on this
//! queue one step later. Client traffic (requests and replies) has no `Transport` of its own in
//! the real system either (it is a separate protocol), so the network applies the same kinds
//! of faults to it directly, with the simulation's RNG.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;

use tinyraft::fault::{FaultRng, FaultyTransport, LinkFaults, SplitMix64};
use tinyraft::kv::Response;
use tinyraft::{NodeId, Transport};

/// A node's outgoing Raft transport: the fault middleware over a port into the network.
pub type NodeTransport = FaultyTransport<NetPort, SplitMix64, 65536, 64>;

/// What a node answers a client (as the runtime's `ClientReply`, without the wire format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The store's answer (boxed: a scan page is large).
    Kv(Box<Response>),
    /// Not the leader (or no longer). `proposed`: this attempt may still commit.
    Redirect {
        /// The leader the node knows of.
        leader: Option<NodeId>,
        /// The request was proposed before leadership was lost.
        proposed: bool,
    },
    /// Too many requests waiting; retry later.
    Busy,
}

/// What travels.
#[derive(Clone, Debug)]
pub enum Payload {
    /// An encoded Raft message from node `from`.
    Raft {
        /// Sender.
        from: NodeId,
        /// The bytes, as the sender's `RawNode` encoded them.
        bytes: Vec<u8>,
    },
    /// A client's request: an encoded `tinyraft::kv::Request`.
    Request {
        /// Sending client.
        client: usize,
        /// The client's operation number (its replies carry it back).
        nonce: u64,
        /// Encoded request.
        bytes: Vec<u8>,
    },
    /// A node's reply to a client.
    Reply {
        /// The operation number it answers.
        nonce: u64,
        /// The answer.
        reply: Reply,
    },
}

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Addr {
    /// A node.
    Node(NodeId),
    /// A client (index into the simulation's clients).
    Client(usize),
}

/// A packet in flight.
#[derive(Debug)]
pub struct Packet {
    /// Step at which it arrives.
    pub at: u64,
    /// Tie-breaker: the order packets were put on the wire.
    pub seq: u64,
    /// Destination.
    pub to: Addr,
    /// Contents.
    pub payload: Payload,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Packet {}
impl PartialOrd for Packet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Packet {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The packets in flight and the current step.
#[derive(Debug, Default)]
pub struct Wire {
    queue: BinaryHeap<Reverse<Packet>>,
    seq: u64,
    /// The current step.
    pub now: u64,
    /// Packets ever put on the wire.
    pub packets: u64,
}

impl Wire {
    /// Puts a packet on the wire, arriving `delay` steps from now (at least one).
    pub fn put(&mut self, to: Addr, payload: Payload, delay: u64) {
        self.seq += 1;
        self.packets += 1;
        let at = self.now + delay.max(1);
        self.queue.push(Reverse(Packet {
            at,
            seq: self.seq,
            to,
            payload,
        }));
    }

    /// The next packet due by now, if any.
    pub fn pop_due(&mut self) -> Option<Packet> {
        if self.queue.peek().is_some_and(|p| p.0.at <= self.now) {
            self.queue.pop().map(|p| p.0)
        } else {
            None
        }
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

/// The wire, shared by every port.
pub type SharedWire = Rc<RefCell<Wire>>;

/// The transport a node's fault middleware wraps: puts Raft messages on the wire.
pub struct NetPort {
    from: NodeId,
    wire: SharedWire,
}

impl NetPort {
    /// The port of node `from`.
    pub fn new(from: NodeId, wire: SharedWire) -> Self {
        Self { from, wire }
    }
}

impl Transport for NetPort {
    type Error = ();

    fn send(&mut self, to: NodeId, message: &[u8]) -> Result<(), ()> {
        let payload = Payload::Raft {
            from: self.from,
            bytes: message.to_vec(),
        };
        self.wire.borrow_mut().put(Addr::Node(to), payload, 1);
        Ok(())
    }
}

/// Sends a client packet with `faults` applied (loss, duplication, delay in steps).
pub fn send_client_packet(
    wire: &SharedWire,
    rng: &mut SplitMix64,
    faults: LinkFaults,
    to: Addr,
    payload: Payload,
) {
    if rng.chance(faults.loss_ppm) {
        return;
    }
    let copies = 1 + usize::from(rng.chance(faults.duplicate_ppm));
    let mut w = wire.borrow_mut();
    for _ in 0..copies {
        let delay = if faults.delay_ticks_max > 0 && rng.chance(faults.delay_ppm) {
            1 + rng.below(u64::from(faults.delay_ticks_max))
        } else {
            1
        };
        w.put(to, payload.clone(), delay);
    }
}
