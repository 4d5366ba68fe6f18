//! Authenticated UDP transport: one socket per node for Raft messages and KV clients alike.
//!
//! A node binds one [`UdpTransport`]. It implements [`tinyraft::Transport`], sending the
//! core's encoded messages to peers, and its [`UdpTransport::recv`] hands the node runtime
//! whatever arrives: Raft messages from peers, requests from clients, and (rarely) client
//! responses from peers. A KV client uses a [`UdpClientSocket`] with the same framing and key.
//! Payloads are opaque bytes here; their formats belong to the core and to the KV layer.
//!
//! # Frames
//!
//! Every datagram is one frame: a header (magic, kind, cluster id, sender id), the payload,
//! and an HMAC-SHA256 tag under the [`ClusterKey`] over everything before it. The byte layout
//! is in the [`frame`] module docs. The key file format and the insecure demo key are in the
//! [`key`] module docs.
//!
//! # What a receiver checks
//!
//! Each datagram read is checked in this order; the first failure drops it and adds one to
//! the named counter of [`UdpStats`] (never a panic, never an allocation):
//!
//! 1. length at most `datagram_bytes_max` — `dropped_oversized`;
//! 2. long enough for a frame, right magic byte, known kind — `dropped_malformed`;
//! 3. tag valid under the cluster key, compared in constant time — `dropped_auth`;
//! 4. cluster id equal to ours — `dropped_wrong_cluster` (same key, another cluster: a
//!    configuration mistake worth its own counter);
//! 5. for frames a node sends (Raft, ClientResponse): the sender id is a configured peer —
//!    `dropped_unknown_peer`; and the datagram comes from the address configured for that
//!    peer — `dropped_wrong_source`. Client requests may come from any address and any
//!    client id: clients are not configured. A client socket takes only ClientResponse
//!    frames — `dropped_unexpected_kind`.
//!
//! Counters past step 3 only ever count authentic frames, so a rising `dropped_auth` means
//! forgery attempts or a key mismatch, while the others mean configuration mistakes.
//!
//! ## Why the source address is checked
//!
//! The tag is what authenticates a frame; source addresses can be spoofed. The address check
//! is cheap defence in depth and a configuration check: a node sends from the one socket
//! bound at its configured address, so genuine frames always pass, while a frame captured
//! from node 2 and re-sent from elsewhere is dropped, as is traffic from a node started with
//! another node's id. The consequence for deployment: each node's configured address must be
//! the address its datagrams come *from*. Binding to a specific address guarantees that;
//! binding to a wildcard (`0.0.0.0`) works when the host has one route to its peers (on
//! loopback, for instance). IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
//!
//! # Replays are harmless, by design of the layers above
//!
//! Frames carry no nonce, counter or timestamp, so a captured datagram replayed later is
//! accepted as authentic (for node frames, only if the replay's source address is the
//! peer's). That is deliberate: Raft is safe on a network that loses, duplicates, delays and
//! reorders messages (§2 of the Raft paper), and a replay is just a late duplicate. A
//! replayed message from an old term is rejected by the term check; a replayed append
//! carries entries the follower already has (Figure 2: a follower truncates only at a
//! conflicting entry, never because an append is shorter than its log); a vote is granted
//! at most once per term, and votes and acknowledgements are counted per node, not per
//! message. (The core must hold to these anyway, since UDP itself duplicates.) Client
//! requests carry a client id and sequence number that the KV session table deduplicates, so
//! a replayed write is applied once and a replayed read is just answered again. The cost of a
//! replay is some work, and a response sent to whatever address the replay came from, the
//! usual reflection caveat of UDP services. There is no confidentiality either: payloads
//! travel in the clear.
//!
//! # Sizes, memory, blocking
//!
//! A datagram is at most `datagram_bytes_max` bytes ([`DATAGRAM_BYTES_MAX_DEFAULT`] = 65,507,
//! the largest UDP payload), so a payload is at most that minus
//! [`frame::FRAME_OVERHEAD_BYTES`] (50). That is a little under
//! [`tinyraft::limits::MESSAGE_BYTES_MAX`] (64 KiB): a node must cap its messages at
//! [`UdpTransport::payload_bytes_max`]; a longer one is refused with
//! [`SendError::TooLarge`].
//!
//! Each socket owns two buffers, allocated once when it is bound: the send buffer every frame
//! is encoded into, and the receive buffer every datagram is read into (one byte longer than
//! the limit, to notice oversized datagrams). Sending and receiving allocate nothing.
//! Received payloads borrow the receive buffer until the next call.
//!
//! Sends never block: the socket is non-blocking, and a full socket buffer (or `ENOBUFS`) is
//! counted in `send_dropped` and otherwise treated as a datagram the network lost. Receives
//! wait up to the timeout the caller gives, which suits a node runtime that blocks in
//! [`UdpTransport::recv`] until its next tick.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tinyraft::Transport;
//! use tinyraft_std::udp::{ClusterKey, Incoming, UdpConfig, UdpTransport};
//!
//! let key = ClusterKey::from_hex(b"000102030405060708090a0b0c0d0e0f")?;
//! let loopback = "127.0.0.1:0".parse()?;
//! let mut a = UdpTransport::bind(UdpConfig::new(1, loopback, 42, key.clone()))?;
//! let mut b = UdpTransport::bind(UdpConfig::new(2, loopback, 42, key))?;
//! a.set_peer(2, b.local_addr()?)?;
//! b.set_peer(1, a.local_addr()?)?;
//!
//! a.send(2, b"encoded raft message")?;
//! match b.recv(Some(Duration::from_secs(5)))? {
//!     Some(Incoming::Raft { from, payload }) => {
//!         assert_eq!((from, payload), (1, &b"encoded raft message"[..]));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod endpoint;
pub mod frame;
pub mod key;
pub mod stats;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tinyraft::NodeId;

pub use client::{Response, UdpClientConfig, UdpClientSocket};
pub use frame::FrameKind;
pub use key::{ClusterKey, KeyError};
pub use stats::UdpStats;

use endpoint::{canonical, Endpoint};
use stats::DropReason;

/// Default for `datagram_bytes_max`: the largest UDP payload over IPv4.
pub const DATAGRAM_BYTES_MAX_DEFAULT: usize = frame::UDP_PAYLOAD_BYTES_MAX;

/// How a node's [`UdpTransport`] is set up.
#[derive(Clone, Debug)]
pub struct UdpConfig {
    /// This node's id (not 0). Raft frames are sent with it as sender.
    pub node_id: NodeId,
    /// Address to bind, e.g. `127.0.0.1:7001`. Peers must know this node by the address its
    /// datagrams come from (see the module docs).
    pub bind: SocketAddr,
    /// The other nodes and their addresses. Ids must be unique and not 0; an entry for
    /// `node_id` itself is allowed (so every node can be given the same list) and ignored.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// The cluster id every frame carries; frames with another one are dropped.
    pub cluster_id: u64,
    /// The key every frame is authenticated with.
    pub key: ClusterKey,
    /// Longest datagram sent or accepted, frame overhead included; between
    /// [`frame::FRAME_OVERHEAD_BYTES`] and [`frame::UDP_PAYLOAD_BYTES_MAX`].
    pub datagram_bytes_max: usize,
}

impl UdpConfig {
    /// A configuration with no peers yet and the default `datagram_bytes_max`.
    pub fn new(node_id: NodeId, bind: SocketAddr, cluster_id: u64, key: ClusterKey) -> Self {
        Self {
            node_id,
            bind,
            peers: Vec::new(),
            cluster_id,
            key,
            datagram_bytes_max: DATAGRAM_BYTES_MAX_DEFAULT,
        }
    }
}

/// A frame accepted by [`UdpTransport::recv`]. The payload borrows the transport's receive
/// buffer, so it must be used (or copied) before the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A Raft message from a configured peer, from that peer's address.
    Raft {
        /// The peer's node id.
        from: NodeId,
        /// The encoded message (see [`tinyraft::Message::decode`]). The runtime should check
        /// that the decoded `from` equals this `from`.
        payload: &'a [u8],
    },
    /// A request from a KV client.
    ClientRequest {
        /// The client id the frame carries (authenticated, but any client id is accepted).
        client_id: u64,
        /// Where the request came from: answer there with [`UdpTransport::send_client`].
        addr: SocketAddr,
        /// The request, in the KV layer's format.
        payload: &'a [u8],
    },
    /// A response to a client, sent by a configured peer from its address (for a runtime
    /// that has peers answer on its behalf).
    ClientResponse {
        /// The peer's node id.
        from: NodeId,
        /// The peer's address.
        addr: SocketAddr,
        /// The response, in the KV layer's format.
        payload: &'a [u8],
    },
}

/// Why a frame was not sent. Every one of these is also counted in
/// [`UdpStats::send_dropped`].
///
/// A full socket buffer is not an error: it is counted and reported as success, like a
/// datagram the network lost.
#[derive(Debug)]
pub enum SendError {
    /// No address is configured for this node id.
    UnknownPeer(NodeId),
    /// The payload does not fit in one datagram.
    TooLarge {
        /// Payload length.
        bytes: usize,
        /// Largest payload the socket sends.
        max: usize,
    },
    /// The operating system refused the datagram (e.g. no route to the host).
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPeer(id) => write!(f, "no address configured for node {id}"),
            Self::TooLarge { bytes, max } => write!(
                f,
                "payload of {bytes} bytes exceeds the {max} bytes one datagram can carry"
            ),
            Self::Io(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A node's socket: sends Raft messages to peers and client responses to clients, and
/// receives all of them. See the [module docs](self) for what it checks.
///
/// Single-threaded: every method takes `&mut self` or `&self`, and the counters are plain
/// integers.
pub struct UdpTransport {
    endpoint: Endpoint,
    node_id: NodeId,
    /// Invariant: ids unique, none is 0 or `node_id`. Small (a cluster has at most
    /// [`tinyraft::limits::PEERS_MAX`] members), so a linear search is the fastest lookup.
    peers: Vec<(NodeId, SocketAddr)>,
}

impl UdpTransport {
    /// Binds the socket and allocates its two buffers.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] if the configuration is invalid (node id 0,
    /// a peer id 0 or repeated, `datagram_bytes_max` out of range), or with the bind error.
    pub fn bind(config: UdpConfig) -> io::Result<Self> {
        if config.node_id == 0 {
            return Err(invalid("node id 0 is reserved"));
        }
        let mut peers: Vec<(NodeId, SocketAddr)> = Vec::with_capacity(config.peers.len());
        for &(id, addr) in &config.peers {
            if id == 0 {
                return Err(invalid("peer id 0 is reserved"));
            }
            if peers.iter().any(|&(other, _)| other == id) {
                return Err(invalid(&format!("peer {id} is listed twice")));
            }
            if id != config.node_id {
                peers.push((id, addr));
            }
        }
        let endpoint = Endpoint::bind(
            config.bind,
            config.cluster_id,
            config.key,
            config.datagram_bytes_max,
        )?;
        Ok(Self {
            endpoint,
            node_id: config.node_id,
            peers,
        })
    }

    /// The address the socket is bound to (with the actual port if the config said 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.endpoint.cluster_id()
    }

    /// The configured peers (never this node itself).
    pub fn peers(&self) -> &[(NodeId, SocketAddr)] {
        &self.peers
    }

    /// The address configured for a peer.
    pub fn peer_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.peers
            .iter()
            .find(|&&(peer, _)| peer == id)
            .map(|&(_, addr)| addr)
    }

    /// Adds a peer or changes its address (e.g. when the membership changes).
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] for id 0 or this node's own id.
    pub fn set_peer(&mut self, id: NodeId, addr: SocketAddr) -> io::Result<()> {
        if id == 0 || id == self.node_id {
            return Err(invalid("a peer id must be neither 0 nor this node's id"));
        }
        match self.peers.iter_mut().find(|(peer, _)| *peer == id) {
            Some(entry) => entry.1 = addr,
            None => self.peers.push((id, addr)),
        }
        Ok(())
    }

    /// Forgets a peer; frames from it are dropped from now on. Returns its address.
    pub fn remove_peer(&mut self, id: NodeId) -> Option<SocketAddr> {
        let at = self.peers.iter().position(|&(peer, _)| peer == id)?;
        Some(self.peers.swap_remove(at).1)
    }

    /// Largest payload one frame can carry: `datagram_bytes_max` minus
    /// [`frame::FRAME_OVERHEAD_BYTES`].
    pub fn payload_bytes_max(&self) -> usize {
        self.endpoint.payload_bytes_max()
    }

    /// Waits for the next valid frame, at most `timeout` (`None`: as long as it takes;
    /// `Some(Duration::ZERO)`: only what is already queued).
    ///
    /// Invalid datagrams are counted in [`UdpStats`] and skipped; they never end the wait
    /// early. Returns `Ok(None)` when the time is up. Once the time is up, at most a bounded
    /// number of further queued invalid datagrams are examined, so a flood cannot hold the
    /// caller much past its deadline. Errors are those of the socket itself.
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Option<Incoming<'_>>> {
        let peers = &self.peers;
        let admit = |h: &frame::FrameHeader, addr: SocketAddr| match h.kind {
            FrameKind::ClientRequest => Ok(()),
            FrameKind::Raft | FrameKind::ClientResponse => {
                let (_, configured) = peers
                    .iter()
                    .find(|&&(id, _)| id == h.sender)
                    .ok_or(DropReason::UnknownPeer)?;
                if canonical(addr) == canonical(*configured) {
                    Ok(())
                } else {
                    Err(DropReason::WrongSource)
                }
            }
        };
        let Some(got) = self.endpoint.recv_frame(timeout, admit)? else {
            return Ok(None);
        };
        let payload = self.endpoint.payload(&got);
        let from = got.header.sender;
        Ok(Some(match got.header.kind {
            FrameKind::Raft => Incoming::Raft { from, payload },
            FrameKind::ClientRequest => Incoming::ClientRequest {
                client_id: from,
                addr: got.addr,
                payload,
            },
            FrameKind::ClientResponse => Incoming::ClientResponse {
                from,
                addr: got.addr,
                payload,
            },
        }))
    }

    /// Sends a ClientResponse frame (sender: this node) to a client, normally to the `addr`
    /// of the [`Incoming::ClientRequest`] it answers. Never blocks.
    pub fn send_client(&mut self, addr: SocketAddr, payload: &[u8]) -> Result<(), SendError> {
        self.endpoint
            .send_frame(addr, FrameKind::ClientResponse, self.node_id, payload)
    }

    /// The counters so far.
    pub fn stats(&self) -> UdpStats {
        self.endpoint.stats
    }
}

impl fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpTransport")
            .field("node_id", &self.node_id)
            .field("local_addr", &self.local_addr().ok())
            .field("peers", &self.peers)
            .field("stats", &self.endpoint.stats)
            .finish_non_exhaustive()
    }
}

impl tinyraft::Transport for UdpTransport {
    type Error = SendError;

    /// Sends a Raft frame to peer `to`. Never blocks; a full socket buffer counts as a lost
    /// datagram (`Ok`, counted in `send_dropped`).
    fn send(&mut self, to: NodeId, message: &[u8]) -> Result<(), SendError> {
        let Some(addr) = self.peer_addr(to) else {
            self.endpoint.stats.send_dropped += 1;
            return Err(SendError::UnknownPeer(to));
        };
        self.endpoint
            .send_frame(addr, FrameKind::Raft, self.node_id, message)
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_owned())
}
