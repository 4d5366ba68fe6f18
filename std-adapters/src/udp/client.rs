//! The client side: a socket that sends ClientRequest frames and receives ClientResponse
//! frames.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tinyraft::NodeId;

use super::endpoint::Endpoint;
use super::stats::{DropReason, UdpStats};
use super::{ClusterKey, FrameKind, SendError, DATAGRAM_BYTES_MAX_DEFAULT};

/// How a [`UdpClientSocket`] is set up.
#[derive(Clone, Debug)]
pub struct UdpClientConfig {
    /// The client id every request carries (the KV session table keys on it).
    pub client_id: u64,
    /// Address to bind; [`UdpClientConfig::new`] uses `0.0.0.0:0` (any IPv4 interface, a
    /// port the system picks). Use an IPv6 address to reach IPv6 nodes.
    pub bind: SocketAddr,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The cluster's key.
    pub key: ClusterKey,
    /// Longest datagram sent or accepted; see [`super::UdpConfig::datagram_bytes_max`].
    pub datagram_bytes_max: usize,
}

impl UdpClientConfig {
    /// A configuration bound to an ephemeral IPv4 port with the default
    /// `datagram_bytes_max`.
    pub fn new(client_id: u64, cluster_id: u64, key: ClusterKey) -> Self {
        Self {
            client_id,
            bind: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            cluster_id,
            key,
            datagram_bytes_max: DATAGRAM_BYTES_MAX_DEFAULT,
        }
    }
}

/// A response received by a [`UdpClientSocket`]; the payload borrows the socket's receive
/// buffer until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// Node id of the responder (authenticated).
    pub from: NodeId,
    /// Address the response came from.
    pub addr: SocketAddr,
    /// The response, in the KV layer's format.
    pub payload: &'a [u8],
}

/// A KV client's socket, framing and authenticating like the nodes' [`super::UdpTransport`].
///
/// It accepts ClientResponse frames from any node id and any address: it is up to the KV
/// client to match a response with its request (the payload identifies the request), since
/// a client need not know the nodes' ids. Other frame kinds are counted in
/// `dropped_unexpected_kind`.
pub struct UdpClientSocket {
    endpoint: Endpoint,
    client_id: u64,
}

impl UdpClientSocket {
    /// Binds the socket and allocates its two buffers. Fails with
    /// [`io::ErrorKind::InvalidInput`] if `datagram_bytes_max` is out of range.
    pub fn bind(config: UdpClientConfig) -> io::Result<Self> {
        let endpoint = Endpoint::bind(
            config.bind,
            config.cluster_id,
            config.key,
            config.datagram_bytes_max,
        )?;
        Ok(Self {
            endpoint,
            client_id: config.client_id,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The client id requests carry.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Largest payload one frame can carry.
    pub fn payload_bytes_max(&self) -> usize {
        self.endpoint.payload_bytes_max()
    }

    /// Sends a ClientRequest frame to the node at `to`. Never blocks; a full socket buffer
    /// counts as a lost datagram (`Ok`, counted in `send_dropped`), so the client must retry
    /// on a timeout as it would for any loss.
    pub fn send_request(&mut self, to: SocketAddr, payload: &[u8]) -> Result<(), SendError> {
        self.endpoint
            .send_frame(to, FrameKind::ClientRequest, self.client_id, payload)
    }

    /// Waits for the next valid response, at most `timeout` (`None`: as long as it takes).
    /// Invalid datagrams are counted and skipped, as in [`super::UdpTransport::recv`].
    pub fn recv_response(&mut self, timeout: Option<Duration>) -> io::Result<Option<Response<'_>>> {
        let admit = |h: &super::frame::FrameHeader, _addr: SocketAddr| match h.kind {
            FrameKind::ClientResponse => Ok(()),
            FrameKind::Raft | FrameKind::ClientRequest => Err(DropReason::UnexpectedKind),
        };
        let Some(got) = self.endpoint.recv_frame(timeout, admit)? else {
            return Ok(None);
        };
        Ok(Some(Response {
            from: got.header.sender,
            addr: got.addr,
            payload: self.endpoint.payload(&got),
        }))
    }

    /// The counters so far.
    pub fn stats(&self) -> UdpStats {
        self.endpoint.stats
    }
}

impl fmt::Debug for UdpClientSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpClientSocket")
            .field("client_id", &self.client_id)
            .field("local_addr", &self.local_addr().ok())
            .field("stats", &self.endpoint.stats)
            .finish_non_exhaustive()
    }
}
